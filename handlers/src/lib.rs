//! tablewire's handlers: stateless workers that apply client commands in order, exactly once,
//! with all state in JetStream KV, and write finished records to SQL.
//!
//! # Layout
//! - [`registry`] — every domain, one line each, and the handler [`Config`]; [`run`] starts a
//!   handler. Adding a domain: its module plus one line there.
//! - [`domain`] — the [`Domain`](domain::Domain) trait: a pure `apply(state, command, ctx)`
//!   returning events, replies and records, or a rejection with a catalogue code; a `start`
//!   hook for what a domain runs beside its commands.
//! - [`collab`] — seed 001: collaborative order rooms, and their idle-expiry sweeper.
//! - [`display`] — seed 000: display sessions.
//! - [`device`] — seed 003: RFID readers (holder, presence, scan interval, config, scans).
//! - [`device_presence`] — turns expired device presence (KV limit markers) into `expire` commands.
//! - [`events`] — seed 004: each tenant's events feed, fed by the other domains and the API.
//! - [`pos`] — seed 002: POS ↔ kitchen orders (numbering, status flow, idempotency claims).
//! - [`voice`] — seed 004: voice sessions, audio reassembled in order for a transcriber.
//! - [`rate`] — write rates kept in a key's own state (GCRA), per room and per tenant.
//! - [`transcriber`] — a `tw.svc.transcribe` service forwarding to an OpenAI-compatible
//!   HTTP transcription endpoint (`tablewire transcriber`).
//! - [`runtime`] — the I/O around domains: partitions, membership, ordering, compare-and-set
//!   state writes within byte bounds, fan-out, acknowledgements, parking commands that can never
//!   be applied, replies kept with the write that made them, and the follow-ups domains ask
//!   for. Knows no domain by name.
//! - [`outgoing`] — commands handlers send themselves or other keys: one envelope, one
//!   publish with `Nats-Msg-Id`.
//! - [`error`] — [`RuntimeError`], what stops the runtime, a batch or a start hook.
//! - [`clock`] — the wall clock in ms.
//! - [`http_client`] — the one outbound HTTP(S) client (rustls with the system's roots), used by
//!   the collab webhook and the transcriber.
//! - [`records`] — the SQL writer that drains the records stream into the database.
//! - [`store`] — the sqlx pool (SQLite file by default, PostgreSQL by URL) and migrations.
//! - [`metrics`] — Prometheus metrics of all of the above.
//! - [`settings`] — the handler's flags and their defaults, and the `Default`s of [`Config`] and
//!   `collab::Settings` built from them.

pub mod clock;
pub mod collab;
pub mod device;
pub mod device_presence;
pub mod display;
pub mod domain;
pub mod error;
pub mod events;
pub mod http_client;
pub mod metrics;
pub mod outgoing;
pub mod pos;
pub mod rate;
pub mod records;
pub mod registry;
pub mod runtime;
pub mod settings;
pub mod store;
pub mod transcriber;
pub mod voice;

pub use error::RuntimeError;
pub use registry::{Config, run};
pub use settings::HandlerSettings;
