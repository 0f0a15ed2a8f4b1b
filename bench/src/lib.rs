//! tablewire's benchmarks, run as `tablewire bench <name>`. Each starts its own nats-server,
//! edge and handler processes, drives them with real clients, and prints throughput, latency
//! percentiles, missing/duplicate counts and resource use.
//!
//! # Layout
//! - [`chaos`] — the soak: a 3-node cluster, two edges, two handlers and PostgreSQL under load
//!   while nodes are killed; lost, duplicated, out of order, stuck, recovery times.
//! - [`collab`] — seed 001: rooms × participants editing orders, latency, consistency with KV.
//! - [`display`] — seed 000: sessions × displays, updates over HTTP, idle memory per display.
//! - [`pos`] — seed 002: tenants × (2 POS + 3 kitchens), orders/s, latency, duplicates/missing.
//! - [`events`] — seed 004: connections × restaurants, events over `POST /api/events`.
//! - [`floor`] — each domain's latency at a fixed rate against the bare JetStream → KV → core
//!   NATS path (the floor), measured on the same nats-server in the same run.
//! - [`devices`] — seed 003: RFID readers scanning over WebSockets, replies and rows in SQL.
//! - [`scale`] — two edges × 15,000 sockets held by load processes of this binary, a fixed rate
//!   of display updates; memory per socket and CPU per message per component, a sizing model.
//! - [`system`] — starting (with the testkit) and measuring the processes under test.
//! - [`client`] — WebSocket and HTTP clients for load (the testkit's, re-exported).
//! - [`report`] — latency histograms and CPU accounting.

pub mod chaos;
pub use tablewire_testkit::client;
pub mod collab;
pub mod devices;
pub mod display;
pub mod events;
pub mod floor;
pub mod pos;
pub mod report;
pub mod scale;
pub mod system;

use clap::{Args, Subcommand};

/// `tablewire bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub bench: Bench,
}

/// The benchmarks.
#[derive(Debug, Clone, Subcommand)]
pub enum Bench {
    /// Customer displays (seed 000): fan-out throughput, latency, idle memory.
    Display(display::DisplayArgs),
    /// Collaborative order rooms (seed 001): applied changes/s, latency, consistency.
    Collab(collab::CollabArgs),
    /// POS ↔ kitchen orders (seed 002): orders/s, submit → order_created and → kitchen latency.
    Pos(pos::PosArgs),
    /// Restaurant events (seed 004): subscribed connections, events over HTTP.
    Events(events::EventsArgs),
    /// RFID readers (seed 003): scans/s, scan → reply latency, rows in SQL vs accepted.
    Devices(devices::DevicesArgs),
    /// The soak: the 3-node cluster under load while edges, handlers and NATS nodes are killed
    /// and PostgreSQL stopped; fails when anything acknowledged is lost, duplicated or stuck.
    Chaos(chaos::ChaosArgs),
    /// Each domain's p50/p99 at a fixed rate as a multiple of the bare path's (JetStream publish
    /// → pull → KV compare-and-set → core publish → subscriber), on the same nats-server.
    Floor(floor::FloorArgs),
    /// Two edges holding 15,000 display and device sockets each against one nats-server: memory
    /// per socket and CPU per delivered message of each component, and a sizing model for 100k
    /// and 1M sockets from them.
    Scale(scale::ScaleArgs),
    /// One load process of `bench scale` (started by it; reads requests on stdin).
    #[command(hide = true)]
    ScaleClient(scale::ClientArgs),
}

/// Runs the chosen benchmark.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.bench {
        Bench::Display(a) => display::run(a).await,
        Bench::Collab(a) => collab::run(a).await,
        Bench::Pos(a) => pos::run(a).await,
        Bench::Events(a) => events::run(a).await,
        Bench::Devices(a) => devices::run(a).await,
        Bench::Chaos(a) => chaos::run(a).await,
        Bench::Floor(a) => floor::run(a).await,
        Bench::Scale(a) => scale::run(a).await,
        Bench::ScaleClient(a) => scale::client_main(a).await,
    }
}
