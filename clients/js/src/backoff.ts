// Reconnect delays: exponential from `baseMs`, capped at `maxMs`, with "equal jitter" (half
// the delay fixed, half random) so a fleet of clients cut at once does not return at once.
// Used by the connection core (connection.ts).

export interface BackoffOptions {
  /** The first delay, in ms (default 500). */
  baseMs: number;
  /** The largest delay, in ms (default 30 000). */
  maxMs: number;
  /** Each failed attempt multiplies the delay by this (default 2). */
  factor: number;
  /** Random source in [0, 1); tests can pin it. */
  random: () => number;
}

export const defaultBackoff: BackoffOptions = {
  baseMs: 500,
  maxMs: 30_000,
  factor: 2,
  random: Math.random,
};

export class Backoff {
  private readonly options: BackoffOptions;
  /** Failed attempts since the last success. */
  attempt = 0;

  constructor(options: Partial<BackoffOptions> = {}) {
    this.options = { ...defaultBackoff, ...options };
  }

  /** The delay before the next attempt; counts the attempt. */
  next(): number {
    const { baseMs, maxMs, factor, random } = this.options;
    const exponential = Math.min(maxMs, baseMs * factor ** Math.min(this.attempt, 64));
    this.attempt += 1;
    return Math.round(exponential / 2 + random() * (exponential / 2));
  }

  /** A connection worked: the next failure starts from `baseMs` again. */
  reset(): void {
    this.attempt = 0;
  }
}
