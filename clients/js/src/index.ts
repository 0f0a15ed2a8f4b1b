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
export type {
  Command,
  ConnectionEvents,
  ConnectionOptions,
  ConnectionState,
  ConnectionStats,
  Frame,
  Protocol,
  StateChange,
  TokenRequest,
  TokenSupplier,
} from "./connection.js";
export { Backoff, defaultBackoff, type BackoffOptions } from "./backoff.js";
export { SeqTracker, type SeqVerdict } from "./sequence.js";
export { CloseCode, TablewireError, closeError, type ErrorKind } from "./errors.js";
export type { WebSocketConstructor, WebSocketLike } from "./socket.js";
export { idempotencyKey } from "./http.js";
export { DisplayConnection, type DisplayOptions } from "./display.js";
export { CollabConnection, type CollabOptions } from "./collab.js";
export {
  PosConnection,
  type OrderStatus,
  type PosOptions,
  type StatusResult,
  type SubmitResult,
} from "./pos.js";
export { EventsConnection, type EventFrame, type EventsOptions } from "./events.js";
export { VoiceConnection, type Transcript, type VoiceOptions } from "./voice.js";
export { DeviceConnection, pushDeviceConfig, type DeviceOptions, type ScanAnswer } from "./device.js";
export type * from "./generated/index.js";
