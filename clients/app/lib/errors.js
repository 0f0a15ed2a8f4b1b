// The errors a connection reports: close codes mapped to kinds (1008 → auth, 1009 → too big,
// 1001 → moved to another edge, …) and the server's `error` frames with their catalogue code.
// Raised by connection.ts and the domain classes; applications switch on `kind`.
export class TablewireError extends Error {
    constructor(kind, message, details = {}) {
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
};
/** The error a close code means, or undefined for a normal close. */
export function closeError(code, reason) {
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
export const authCodes = new Set([
    "UNAUTHORIZED",
    "TOKEN_EXPIRED",
    "FORBIDDEN",
    "TENANT_MISMATCH",
    "AUTH_TIMEOUT",
    "TENANT_CLAIMS_DISAGREE",
    "TOKEN_NOT_YET_VALID",
]);
/** The error an `error` frame (or HTTP error body) reports. */
export function serverError(body, status) {
    const kind = authCodes.has(body.code) && body.code !== "FORBIDDEN" ? "auth" : body.code === "MESSAGE_TOO_BIG" ? "too_big" : "server";
    return new TablewireError(kind, body.message ?? body.code, {
        code: body.code,
        status,
        retryable: body.retryable,
        retryAfterMs: body.retryAfterMs,
    });
}
