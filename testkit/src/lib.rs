//! One harness that starts a tablewire system — a nats-server (or a 3-node cluster), provisioning,
//! `tablewire edge` and `tablewire handler` processes, a PostgreSQL database — for the
//! integration tests (tests/support), every benchmark, the chaos soak and `tablewire dev` (its
//! NATS).
//!
//! # Layout
//! - [`nats`] — [`Nats`]: one nats-server or a cluster, started by one function (for
//!   [`System`], the chaos soak and `tablewire dev`), and [`nats::provision`].
//! - [`process`] — [`Launcher`]: edge and handler child processes of the `tablewire` binary,
//!   killed when dropped and when their parent dies, however it dies.
//! - [`system`] — [`System`]: NATS, provisioning, an edge (or more) and handlers (one SQL writer),
//!   started together and stopped when dropped; free ports and health waits.
//! - [`postgres`] — [`PostgresDb`]: a fresh database on a PostgreSQL server, dropped after.
//! - [`client`] — WebSocket and HTTP clients.

pub mod client;
pub mod nats;
pub mod postgres;
pub mod process;
pub mod system;

pub use nats::Nats;
pub use postgres::PostgresDb;
pub use process::Launcher;
pub use system::{Shape, System, free_addr, wait_until_healthy};
