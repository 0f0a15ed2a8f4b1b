// RFID readers (seed 003): `GET /ws/device?deviceId=`. `scan` resolves with the server's answer
// (`{success, scan, user}`) or rejects with its error (`TOO_SOON` …); while the socket is down
// it goes by `POST /api/rfid/scan`. `heartbeat` keeps the device online; pushed configs arrive
// as `config` events and are kept in `config`. `DeviceAdmin` pushes a config
// (`PUT /api/devices/{id}/config`, an admin JWT).

import { Connection, type ConnectionOptions, type Frame } from "./connection.js";
import { deliverOrRetry, request } from "./http.js";
import type { ErrorBody } from "./errors.js";
import type { DeviceConfig } from "./generated/device.config.js";

export type { DeviceConfig };

export interface DeviceOptions extends ConnectionOptions {
  deviceId: string;
  /** Use `POST /api/rfid/scan` while the socket is down (default true). */
  httpFallback?: boolean;
}

export interface ScanAnswer {
  success: true;
  scan: { id: string; deviceId: string; tagId: string; location: string | null; timestamp: number; registered: boolean };
  user: unknown;
}

/** A device error: `{success: false, error, code, retryable, retryAfterMs}`. */
function deviceError(frame: Frame): ErrorBody | undefined {
  if (frame.success !== false || typeof frame.code !== "string") return undefined;
  return {
    code: frame.code,
    message: typeof frame.error === "string" ? frame.error : undefined,
    // Retrying a refused scan later is the reader's choice, not the client's.
    retryable: false,
    retryAfterMs: typeof frame.retryAfterMs === "number" ? frame.retryAfterMs : undefined,
  };
}

export class DeviceConnection extends Connection {
  readonly deviceId: string;
  private readonly httpFallback: boolean;
  /** The last config the server pushed. */
  config: DeviceConfig | undefined;

  constructor(options: DeviceOptions) {
    const deviceId = options.deviceId;
    super(
      {
        path: () => `/ws/device?deviceId=${encodeURIComponent(deviceId)}`,
        snapshots: false,
        errorBody: deviceError,
        ping: () => ({ action: "heartbeat", timestamp: Date.now() }),
        answers: (frame, command) =>
          command.frame.action === "scan"
            ? frame.success === true && typeof frame.scan === "object"
            : frame.action === "heartbeat",
      },
      options,
    );
    this.deviceId = deviceId;
    this.httpFallback = options.httpFallback ?? true;
    this.on("frame", (frame) => {
      if (frame.action === "config") {
        const { action: _action, ...config } = frame;
        this.config = config as DeviceConfig;
        this.emit("change");
      }
    });
  }

  scan(tagId: string, location?: string): Promise<ScanAnswer> {
    const frame: Frame = { action: "scan", tagId };
    if (location !== undefined) frame.location = location;
    return this.send<ScanAnswer>({
      frame,
      durable: false,
      fallback: this.httpFallback
        ? async () => {
            const body = await deliverOrRetry(() =>
              request(this, "POST", "/api/rfid/scan", { body: { deviceId: this.deviceId, tagId, location } }),
            );
            if (body === undefined) throw new Error("the server is unreachable");
            return body;
          }
        : undefined,
    });
  }

  heartbeat(): Promise<Frame> {
    return this.send({ frame: { action: "heartbeat", timestamp: Date.now() }, durable: false });
  }
}

/** Pushes configuration to devices over HTTP (a dashboard; the token is an admin JWT). */
export async function pushDeviceConfig(
  connection: Connection,
  deviceId: string,
  config: DeviceConfig,
): Promise<{ success: boolean; deviceId: string; config: DeviceConfig; online: boolean }> {
  const path = `/api/devices/${encodeURIComponent(deviceId)}/config`;
  return (await request(connection, "PUT", path, { body: config })).body as {
    success: boolean;
    deviceId: string;
    config: DeviceConfig;
    online: boolean;
  };
}
