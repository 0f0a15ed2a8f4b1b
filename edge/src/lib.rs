//! tablewire's edge node: holds client WebSockets and serves HTTP, publishes every accepted
//! command to NATS, and fans events out to the clients that care. No business logic: an edge
//! can be added or killed at any time.
//!
//! # Layout
//! - [`server`] — bind, accept (plain or TLS) within the [`admission`] limits, heartbeat, drain;
//!   [`Edge`].
//! - [`node`] — [`node::Node`]: the services every domain uses (NATS, publishing, fan-out,
//!   connections, credentials, metrics, state reads); each domain keeps its own state beside it.
//! - [`app`] — the router: every domain's `routes()`, `/healthz`, `/metrics`; CORS and the
//!   response count as layers keyed by the matched route.
//! - [`api_docs`] — the route table ([`api_docs::endpoints`]) and the OpenAPI and AsyncAPI
//!   documents generated from it, the schemas and the subjects (`/openapi.json`, `/asyncapi.json`).
//! - [`screens`] — the screens of `clients/app/`, embedded in the binary, served at `/app/`.
//! - [`display`] — seed 000 endpoints (`/session/{id}/…`).
//! - [`collab`] — seed 001 room WebSocket (`/parties/collaborative_order/{room}`).
//! - [`pos`] — seed 002 endpoints (`/ws/restaurant-pos/{tenantId}`, `/api/orders`,
//!   `/api/pos/settings`) and the order bodies this edge has read.
//! - [`events`] — seed 004 endpoints: the events socket (`/`, `/ws`) with its per-restaurant
//!   fan-out and subscriptions, and `POST /api/events`.
//! - [`voice`] — seed 004's voice socket (`/voice-stream`): audio chunks to the voice handler.
//! - [`device`] — seed 003 endpoints (`/ws/device`, `/api/rfid/scan`, `/api/devices/{id}/config`,
//!   `/api/devices/settings`): socket, HTTP, identities, tag lookups.
//! - [`device_settings`] — each tenant's device settings, watched from KV, attached to scans.
//! - [`upgrade`] — the WebSocket upgrade as an extractor, served by [`ws`].
//! - [`ws`] — WebSocket frames, connections and the registry of live connections.
//! - [`fanout`] — interest-based subscriptions: snapshot, then ordered events, per client.
//! - [`presence`] — this edge and its socket counts in `tw_edges`, for `tablewire status`.
//! - [`publish`] — commands into the input streams, acknowledged once stored.
//! - [`request`] — HTTP writes answered once a handler applied them (read-your-writes).
//! - [`inbox`] — replies for one sender (`tw.edge.{edge}`).
//! - [`auth`] — the one credential verifier (Bearer secret, JWTs), which counts failures;
//!   development token minting. [`credentials`] — the extractors routes read credentials with.
//! - [`limit`] — per-connection message limits (governor).
//! - [`http`] — JSON responses, the one error type (`ApiError`), bounded JSON bodies, CORS.
//! - [`consistent_read`] — KV reads a client's next read must see (the leader's copy when
//!   replicated).
//! - [`config`], [`tls`], [`metrics`].

pub mod admission;
pub mod api_docs;
pub mod app;
pub mod auth;
pub mod collab;
pub mod config;
pub mod consistent_read;
pub mod credentials;
pub mod device;
pub mod device_settings;
pub mod display;
pub mod events;
pub mod fanout;
pub mod http;
pub mod inbox;
pub mod limit;
pub mod metrics;
pub mod node;
pub mod pos;
pub mod presence;
pub mod publish;
pub mod request;
pub mod screens;
pub mod server;
pub mod tls;
pub mod upgrade;
pub mod voice;
pub mod ws;

pub use auth::{AuthConfig, mint};
pub use config::{Config, DeviceAuth, TlsFiles};
pub use node::EdgeError;
pub use server::Edge;
