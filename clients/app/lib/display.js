// Customer displays (seed 000): `GET /session/{id}/display`. Keeps the session's state as the
// server does — `initial_state`, then each `update` appended to `displayUpdates` (and to
// `transcriptions`, or as `currentOrder`), newest 100 — so a display that reconnects (or sees
// a gap and takes a fresh snapshot) shows every update once. `update`, `init` and
// `fetchState` are the HTTP side (`POST /session/{id}/update` wants the auth secret or a
// service JWT as the token).
import { Connection } from "./connection.js";
import { idempotencyKey, request } from "./http.js";
import { topLevelError } from "./pos.js";
/** How many entries the server keeps in each list. */
const KEPT = 100;
export class DisplayConnection extends Connection {
    constructor(options) {
        const sessionId = options.sessionId;
        const seq = (frame) => (typeof frame.seq === "number" ? frame.seq : undefined);
        super({
            path: () => `/session/${encodeURIComponent(sessionId)}/display`,
            auth: "none",
            snapshots: true,
            snapshotSeq: (frame) => (frame.type === "initial_state" ? seq(frame) : undefined),
            eventSeq: (frame) => (frame.type === "update" ? seq(frame) : undefined),
            errorBody: topLevelError,
            ping: () => ({ type: "ping" }),
        }, options);
        this.sessionId = sessionId;
        this.on("frame", (frame) => this.track(frame));
    }
    /** Sends an update (HTTP; the token must be the auth secret or a service JWT). Safe to retry
     * with the same `idempotencyKey`. */
    async update(update, options = {}) {
        const key = options.idempotencyKey ?? idempotencyKey();
        const path = `/session/${encodeURIComponent(this.sessionId)}/update`;
        return (await request(this, "POST", path, { body: update, idempotencyKey: key })).body;
    }
    /** Creates the session for a tenant (HTTP, anonymous as in the seed). */
    async init(tenantId) {
        const path = `/session/${encodeURIComponent(this.sessionId)}/init`;
        return (await request(this, "POST", path, { body: { tenantId } })).body;
    }
    /** The session's state over HTTP. */
    async fetchState() {
        const path = `/session/${encodeURIComponent(this.sessionId)}/state`;
        return (await request(this, "GET", path)).body;
    }
    track(frame) {
        if (frame.type === "initial_state") {
            this.session = frame.state;
        }
        else if (frame.type === "update" && this.session) {
            const update = frame.update;
            const state = { ...this.session };
            state.displayUpdates = [...state.displayUpdates, update].slice(-KEPT);
            if (update.type === "transcription")
                state.transcriptions = [...state.transcriptions, update].slice(-KEPT);
            if (update.type === "order_summary" || update.type === "order_update")
                state.currentOrder = update.displayData;
            this.session = state;
        }
        else {
            return;
        }
        this.emit("change");
    }
}
