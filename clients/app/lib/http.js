// HTTP calls beside the sockets (POS fallback, display updates, device config, events
// publish): the token from the connection's supplier as `Authorization: Bearer`, JSON in and
// out, and an answer sorted into delivered / try again later / refused. Used by the domain
// classes.
import { TablewireError, serverError } from "./errors.js";
/** Sends one request; throws `TablewireError` for an error status (with the catalogue code). */
export async function request(connection, method, path, options = {}) {
    const token = options.token ?? (await connection.token("http"));
    const headers = {};
    if (options.body !== undefined)
        headers["Content-Type"] = "application/json";
    if (token)
        headers.Authorization = `Bearer ${token}`;
    if (options.idempotencyKey)
        headers["Idempotency-Key"] = options.idempotencyKey;
    const response = await connection.fetch(connection.httpBase + path, {
        method,
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
    const text = await response.text();
    let body = undefined;
    try {
        body = text ? JSON.parse(text) : undefined;
    }
    catch {
        body = text;
    }
    if (!response.ok) {
        const error = body?.error;
        throw error && typeof error.code === "string"
            ? serverError(error, response.status)
            : new TablewireError("server", `HTTP ${response.status}`, { status: response.status });
    }
    return { status: response.status, body };
}
/** For an outbox fallback: the answer, `undefined` when it may work later (network down,
 * 5xx, 401 with a token that may be refreshed, 408, 429), or a thrown final refusal. */
export async function deliverOrRetry(attempt) {
    try {
        return (await attempt()).body;
    }
    catch (error) {
        if (!(error instanceof TablewireError) || error.status === undefined)
            return undefined;
        const later = error.status >= 500 || [401, 408, 429].includes(error.status) || error.retryable;
        if (later)
            return undefined;
        throw error;
    }
}
/** A fresh idempotency key. */
export function idempotencyKey() {
    const crypto = globalThis.crypto;
    if (crypto?.randomUUID)
        return crypto.randomUUID();
    return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}-${Math.random().toString(36).slice(2)}`;
}
