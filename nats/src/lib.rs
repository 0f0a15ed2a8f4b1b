//! Every NATS name tablewire uses, how to create them, and how to run a local nats-server.
//!
//! # Layout
//! - [`token`] — ids (sessions, rooms, tenants, devices) as safe subject tokens and KV keys.
//! - [`subject`] — every subject (`tw.in.…`, `tw.out.…`, `tw.edge.…`, `tw.rec.…`, `tw.parked.…`) and header.
//! - [`resource`] — every stream, consumer, priority group and KV bucket name.
//! - [`provision`] — idempotent creation of all of them ([`provision::Topology`] sets the shape).
//! - [`topology`] — the flags of `provision` that shape those resources, and their defaults.
//! - [`server`] — finds a `nats-server` >= 2.11 and runs one (or a 3-node cluster) for `dev`,
//!   the benchmarks and the tests.
//!
//! The server configuration files shipped beside this crate (`nats/config/`) are for running
//! nats-server by hand: `dev.conf` for one server, `cluster/node-{1,2,3}.conf` for a loopback
//! cluster.

pub mod provision;
pub mod resource;
pub mod server;
pub mod subject;
pub mod token;
pub mod topology;

pub use provision::{DEFAULT_PARTITIONS, Topology, provision};
pub use server::{Cluster, NatsServer, ServerOptions};
pub use topology::TopologyArgs;

/// Where every component looks for NATS unless told otherwise.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// Connects to NATS with the options every tablewire component uses: a name that shows in
/// `/connz`, unlimited reconnects, a bounded request timeout, and connection events logged.
/// `urls` may list several servers separated by commas (a cluster); async-nats itself does not
/// split such a list.
pub async fn connect(
    urls: &str,
    name: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    connect_watched(urls, name).await.map(|(client, _)| client)
}

/// [`connect`], plus a counter of reconnections: it increases each time the client connects
/// again after losing its server. Core NATS messages sent while it was away are lost, so a
/// subscriber that must not miss any (an edge's fan-out) resynchronizes when it changes.
pub async fn connect_watched(
    urls: &str,
    name: &str,
) -> Result<(async_nats::Client, tokio::sync::watch::Receiver<u64>), async_nats::ConnectError> {
    let servers: Vec<&str> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    let (reconnects_tx, reconnects) = tokio::sync::watch::channel(0u64);
    let connects = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let component = name.to_string();
    let client = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .request_timeout(Some(std::time::Duration::from_secs(5)))
        .event_callback(move |event| {
            let connects = connects.clone();
            let reconnects_tx = reconnects_tx.clone();
            let component = component.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        let n = connects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if n > 0 {
                            tracing::info!(%component, "reconnected to NATS");
                            reconnects_tx.send_modify(|r| *r += 1);
                        }
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!(%component, "lost the NATS connection; reconnecting")
                    }
                    // The client was drained or dropped on purpose.
                    async_nats::Event::Draining | async_nats::Event::Closed => {
                        tracing::debug!(%component, event = %event, "NATS connection closing")
                    }
                    other => tracing::warn!(%component, event = %other, "NATS"),
                }
            }
        })
        .connect(servers)
        .await?;
    Ok((client, reconnects))
}
