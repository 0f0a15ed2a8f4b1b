// Reconnect delays: exponential from `baseMs`, capped at `maxMs`, with "equal jitter" (half
// the delay fixed, half random) so a fleet of clients cut at once does not return at once.
// Used by the connection core (connection.ts).
export const defaultBackoff = {
    baseMs: 500,
    maxMs: 30000,
    factor: 2,
    random: Math.random,
};
export class Backoff {
    constructor(options = {}) {
        /** Failed attempts since the last success. */
        this.attempt = 0;
        this.options = { ...defaultBackoff, ...options };
    }
    /** The delay before the next attempt; counts the attempt. */
    next() {
        const { baseMs, maxMs, factor, random } = this.options;
        const exponential = Math.min(maxMs, baseMs * factor ** Math.min(this.attempt, 64));
        this.attempt += 1;
        return Math.round(exponential / 2 + random() * (exponential / 2));
    }
    /** A connection worked: the next failure starts from `baseMs` again. */
    reset() {
        this.attempt = 0;
    }
}
