// RFID readers (seed 003): `GET /ws/device?deviceId=`. `scan` resolves with the server's answer
// (`{success, scan, user}`) or rejects with its error (`TOO_SOON` …); while the socket is down
// it goes by `POST /api/rfid/scan`. `heartbeat` keeps the device online; pushed configs arrive
// as `config` events and are kept in `config`. `DeviceAdmin` pushes a config
// (`PUT /api/devices/{id}/config`, an admin JWT).
import { Connection } from "./connection.js";
import { deliverOrRetry, request } from "./http.js";
/** A device error: `{success: false, error, code, retryable, retryAfterMs}`. */
function deviceError(frame) {
    if (frame.success !== false || typeof frame.code !== "string")
        return undefined;
    return {
        code: frame.code,
        message: typeof frame.error === "string" ? frame.error : undefined,
        // Retrying a refused scan later is the reader's choice, not the client's.
        retryable: false,
        retryAfterMs: typeof frame.retryAfterMs === "number" ? frame.retryAfterMs : undefined,
    };
}
export class DeviceConnection extends Connection {
    constructor(options) {
        const deviceId = options.deviceId;
        super({
            path: () => `/ws/device?deviceId=${encodeURIComponent(deviceId)}`,
            snapshots: false,
            errorBody: deviceError,
            ping: () => ({ action: "heartbeat", timestamp: Date.now() }),
            answers: (frame, command) => command.frame.action === "scan"
                ? frame.success === true && typeof frame.scan === "object"
                : frame.action === "heartbeat",
        }, options);
        this.deviceId = deviceId;
        this.httpFallback = options.httpFallback ?? true;
        this.on("frame", (frame) => {
            if (frame.action === "config") {
                const { action: _action, ...config } = frame;
                this.config = config;
                this.emit("change");
            }
        });
    }
    scan(tagId, location) {
        const frame = { action: "scan", tagId };
        if (location !== undefined)
            frame.location = location;
        return this.send({
            frame,
            durable: false,
            fallback: this.httpFallback
                ? async () => {
                    const body = await deliverOrRetry(() => request(this, "POST", "/api/rfid/scan", { body: { deviceId: this.deviceId, tagId, location } }));
                    if (body === undefined)
                        throw new Error("the server is unreachable");
                    return body;
                }
                : undefined,
        });
    }
    heartbeat() {
        return this.send({ frame: { action: "heartbeat", timestamp: Date.now() }, durable: false });
    }
}
/** Pushes configuration to devices over HTTP (a dashboard; the token is an admin JWT). */
export async function pushDeviceConfig(connection, deviceId, config) {
    const path = `/api/devices/${encodeURIComponent(deviceId)}/config`;
    return (await request(connection, "PUT", path, { body: config })).body;
}
