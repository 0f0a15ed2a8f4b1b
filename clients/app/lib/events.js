// Restaurant events (seed 004): `GET /ws`. Authenticates with the first message (`auth`), as
// seed 004's `RestaurantWebSocket` does, so a refused token is close 1008 → an `auth` error
// and a new token is asked for. Subscriptions are remembered and sent again on every
// reconnect. The feed has no snapshot: a `seq` gap, a reconnect or `EVENTS_MISSED` is
// reported as `missed` so the application can fetch again what matters to it.
import { Connection } from "./connection.js";
import { request } from "./http.js";
/** The error body of events and voice `error` frames (under `data`). */
export function nestedError(frame) {
    const data = frame.data;
    return frame.type === "error" && data && typeof data.code === "string" ? data : undefined;
}
const CONTROL = new Set(["connected", "pong", "subscribed", "unsubscribed", "error"]);
export class EventsConnection extends Connection {
    constructor(options) {
        const path = options.path ?? "/ws";
        let self;
        super({
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
            answers: (frame, command) => frame.type === (command.frame.type === "subscribe" ? "subscribed" : "unsubscribed"),
        }, options);
        self = this;
        if (options.events)
            this.subscription = { events: options.events, filters: options.filters };
        this.on("error", (error) => {
            if (error.code === "EVENTS_MISSED")
                this.emit("gap", { expected: 0, got: 0, resync: false });
        });
    }
    /** Receives only `events` (matching `filters`) from now on, on this and every later socket. */
    subscribe(events, filters) {
        this.subscription = { events, filters };
        return this.send({ frame: { type: "subscribe", events, filters }, durable: false });
    }
    unsubscribe(events) {
        if (this.subscription) {
            this.subscription = {
                ...this.subscription,
                events: this.subscription.events.filter((name) => !events.includes(name)),
            };
        }
        return this.send({ frame: { type: "unsubscribe", events }, durable: false });
    }
    /** Registers `listener` for business events only (not `connected`, `pong`, …). */
    onEvent(listener) {
        return this.on("frame", (frame) => {
            if (typeof frame.type === "string" && !CONTROL.has(frame.type))
                listener(frame);
        });
    }
    /** Publishes an event to the token's restaurant (`POST /api/events`; a service JWT). */
    async publish(type, data, options = {}) {
        return (await request(this, "POST", "/api/events", { body: { type, data }, idempotencyKey: options.idempotencyKey }))
            .body;
    }
}
