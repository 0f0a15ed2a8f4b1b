// The errors a connection reports: close codes mapped to kinds (1008 → auth, 1009 → too big,
// 1001 → moved to another edge, …) and the server's `error` frames with their catalogue code.
// Raised by connection.ts and the domain classes; applications switch on `kind`.

import type { ErrorCode } from "./generated/error.js";

export type ErrorKind =
  /** The token was refused (close 1008, HTTP 401/403, or an auth error frame). */
  | "auth"
  /** A message was over the server's size limit (close 1009, HTTP 413). */
  | "too_big"
  /** The edge is draining (close 1001): the client reconnects, to the next URL if given. */
  | "going_away"
  /** The server sent an `error` frame or an HTTP error body with a catalogue code. */
  | "server"
  /** The connection closed for another reason (network, 1006, 1011, 1013, …). */
  | "connection_lost"
  /** A command could not be sent: no socket and no fallback. */
  | "not_connected"
  /** No answer to a command in time. */
  | "timeout"
  /** The application closed the client. */
  | "closed";

export class TablewireError extends Error {
  readonly kind: ErrorKind;
  /** The catalogue code (`VALIDATION_ERROR`, …) for `server` and some `auth` errors. */
  readonly code?: ErrorCode | string;
  /** The WebSocket close code, when a close caused it. */
  readonly closeCode?: number;
  /** HTTP status, when an HTTP answer caused it. */
  readonly status?: number;
  /** The server says trying again may succeed. */
  readonly retryable: boolean;
  /** The server says when to try again. */
  readonly retryAfterMs?: number;

  constructor(
    kind: ErrorKind,
    message: string,
    details: {
      code?: string;
      closeCode?: number;
      status?: number;
      retryable?: boolean;
      retryAfterMs?: number;
    } = {},
  ) {
    super(message);
    this.name = "TablewireError";
    this.kind = kind;
    this.code = details.code;
    this.closeCode = details.closeCode;
    this.status = details.status;
    this.retryable = details.retryable ?? false;
    this.retryAfterMs = details.retryAfterMs;
  }
}

/** WebSocket close codes tablewire sends, by name. */
export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  protocolError: 1002,
  invalidUtf8: 1007,
  policy: 1008,
  tooBig: 1009,
  serverError: 1011,
  tryAgainLater: 1013,
  /** Device: replaced by a newer connection of the same device. */
  replaced: 4001,
  /** Device: silent for two heartbeat intervals. */
  silent: 4002,
  /** Sent by this client when it drops a socket to take a fresh snapshot after a gap. */
  resync: 4000,
  /** Reported (not sent) when this client drops a socket that stayed silent past its keepalive. */
  silentServer: 4003,
} as const;

/** The error a close code means, or undefined for a normal close. */
export function closeError(code: number, reason: string): TablewireError | undefined {
  const why = reason ? `: ${reason}` : "";
  switch (code) {
    case CloseCode.normal:
    case CloseCode.resync:
      return undefined;
    case CloseCode.goingAway:
      return new TablewireError("going_away", `the edge is going away (1001)${why}`, {
        closeCode: code,
        retryable: true,
      });
    case CloseCode.policy:
      return new TablewireError("auth", `authentication refused (1008)${why}`, { closeCode: code });
    case CloseCode.tooBig:
      return new TablewireError("too_big", `message too big (1009)${why}`, { closeCode: code });
    default:
      return new TablewireError("connection_lost", `connection closed (${code})${why}`, {
        closeCode: code,
        retryable: true,
      });
  }
}

/** The catalogue codes that mean the credentials are at fault. */
export const authCodes: ReadonlySet<string> = new Set([
  "UNAUTHORIZED",
  "TOKEN_EXPIRED",
  "FORBIDDEN",
  "TENANT_MISMATCH",
  "AUTH_TIMEOUT",
  "TENANT_CLAIMS_DISAGREE",
  "TOKEN_NOT_YET_VALID",
]);

/** An `error` frame's body (POS, collab and display put it at the top, events under `data`). */
export interface ErrorBody {
  code: string;
  message?: string;
  retryable?: boolean;
  retryAfterMs?: number;
}

/** The error an `error` frame (or HTTP error body) reports. */
export function serverError(body: ErrorBody, status?: number): TablewireError {
  const kind =
    authCodes.has(body.code) && body.code !== "FORBIDDEN" ? "auth" : body.code === "MESSAGE_TOO_BIG" ? "too_big" : "server";
  return new TablewireError(kind, body.message ?? body.code, {
    code: body.code,
    status,
    retryable: body.retryable,
    retryAfterMs: body.retryAfterMs,
  });
}
