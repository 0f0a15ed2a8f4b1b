// Restaurant events (seed 004): `GET /ws`. Authenticates with the first message (`auth`), as
// seed 004's `RestaurantWebSocket` does, so a refused token is close 1008 → an `auth` error
// and a new token is asked for. Subscriptions are remembered and sent again on every
// reconnect. The feed has no snapshot: a `seq` gap, a reconnect or `EVENTS_MISSED` is
// reported as `missed` so the application can fetch again what matters to it.

import { Connection, type ConnectionOptions, type Frame } from "./connection.js";
import { request } from "./http.js";
import type { ErrorBody } from "./errors.js";

export interface EventsOptions extends ConnectionOptions {
  /** Event names to receive (default: all of the restaurant's). */
  events?: string[];
  /** `{field: value}` filters, e.g. `{table_id: "T4"}`. */
  filters?: Record<string, unknown>;
  /** Path of the socket: `/ws` (default) or `/` for the events feed. */
  path?: string;
}

export interface EventFrame {
  type: string;
  data: unknown;
  timestamp: string;
  seq?: number;
}

/** The error body of events and voice `error` frames (under `data`). */
export function nestedError(frame: Frame): ErrorBody | undefined {
  const data = frame.data as ErrorBody | undefined;
  return frame.type === "error" && data && typeof data.code === "string" ? data : undefined;
}

const CONTROL = new Set(["connected", "pong", "subscribed", "unsubscribed", "error"]);

export class EventsConnection extends Connection {
  private subscription: { events: string[]; filters?: Record<string, unknown> } | undefined;

  constructor(options: EventsOptions) {
    const path = options.path ?? "/ws";
    let self: EventsConnection | undefined;
    super(
      {
        path: () => path,
        auth: "message",
        snapshots: false,
        eventSeq: (frame) => (typeof frame.seq === "number" ? frame.seq : undefined),
        errorBody: nestedError,
        ping: () => ({ type: "ping" }),
        greeting: () => {
          const subscription = self?.subscription;
          return subscription ? [{ type: "subscribe", ...subscription }] : [];
        },
        answers: (frame, command) =>
          frame.type === (command.frame.type === "subscribe" ? "subscribed" : "unsubscribed"),
      },
      options,
    );
    self = this;
    if (options.events) this.subscription = { events: options.events, filters: options.filters };
    this.on("error", (error) => {
      if (error.code === "EVENTS_MISSED") this.emit("gap", { expected: 0, got: 0, resync: false });
    });
  }

  /** Receives only `events` (matching `filters`) from now on, on this and every later socket. */
  subscribe(events: string[], filters?: Record<string, unknown>): Promise<Frame> {
    this.subscription = { events, filters };
    return this.send({ frame: { type: "subscribe", events, filters }, durable: false });
  }

  unsubscribe(events: string[]): Promise<Frame> {
    if (this.subscription) {
      this.subscription = {
        ...this.subscription,
        events: this.subscription.events.filter((name) => !events.includes(name)),
      };
    }
    return this.send({ frame: { type: "unsubscribe", events }, durable: false });
  }

  /** Registers `listener` for business events only (not `connected`, `pong`, …). */
  onEvent(listener: (event: EventFrame) => void): () => void {
    return this.on("frame", (frame) => {
      if (typeof frame.type === "string" && !CONTROL.has(frame.type)) listener(frame as unknown as EventFrame);
    });
  }

  /** Publishes an event to the token's restaurant (`POST /api/events`; a service JWT). */
  async publish(type: string, data: unknown, options: { idempotencyKey?: string } = {}): Promise<unknown> {
    return (await request(this, "POST", "/api/events", { body: { type, data }, idempotencyKey: options.idempotencyKey }))
      .body;
  }
}
