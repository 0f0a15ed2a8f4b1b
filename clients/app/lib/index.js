// @tablewire/client: the entry point; applications import everything from here.
//
// Layout:
// - connection.ts — the core: reconnect with backoff, token supplier, seq tracking, outbox
// - backoff.ts    — exponential delays with jitter and a cap
// - sequence.ts   — per-key seq: next, duplicate or gap
// - errors.ts     — TablewireError kinds, close codes → errors, error frames → errors
// - socket.ts     — the WebSocket subset used (platform or `ws` passed in)
// - emitter.ts    — typed events
// - http.ts       — HTTP calls beside the sockets (fallbacks, updates), idempotency keys
// - display.ts, collab.ts, pos.ts, events.ts, voice.ts, device.ts — one class per domain
// - generated/    — wire types generated from schemas/json (npm run generate)
export { Connection } from "./connection.js";
export { Backoff, defaultBackoff } from "./backoff.js";
export { SeqTracker } from "./sequence.js";
export { CloseCode, TablewireError, closeError } from "./errors.js";
export { idempotencyKey } from "./http.js";
export { DisplayConnection } from "./display.js";
export { CollabConnection } from "./collab.js";
export { PosConnection, } from "./pos.js";
export { EventsConnection } from "./events.js";
export { VoiceConnection } from "./voice.js";
export { DeviceConnection, pushDeviceConfig } from "./device.js";
