//! The services every part of one edge uses, whatever the domain: its id and configuration,
//! NATS, publishing, fan-out, live connections, the inbox, credential checks, metrics and the
//! state buckets. Built by [`crate::server::Edge::bind`]; each domain keeps its own state
//! beside an `Arc<Node>`.

use crate::auth::Auth;
use crate::config::Config;
use crate::fanout::Fanout;
use crate::inbox::Inbox;
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::ws;
use async_nats::jetstream::{self, kv};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tablewire_nats::resource;
use tablewire_schemas::{Domain, ErrorBody, ErrorCode};
use tracing::warn;

/// Why an edge cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The TLS files cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The JWT public key cannot be used.
    #[error("auth: {0}")]
    Auth(String),
    /// NATS resources are missing or unreachable.
    #[error("NATS: {0} (is the server up and `tablewire provision` run?)")]
    Nats(String),
}

/// Something a domain does when the NATS connection is back (events published meanwhile are
/// lost to this edge).
pub type ReconnectHook = Box<dyn Fn() + Send + Sync>;

/// The services of one edge that no domain owns.
pub struct Node {
    /// This edge's id.
    pub id: String,
    /// Its configuration.
    pub config: Config,
    /// The NATS client.
    pub client: async_nats::Client,
    /// Publishes commands.
    pub publisher: Publisher,
    /// Fan-out to local clients.
    pub fanout: Arc<Fanout>,
    /// Live WebSocket connections.
    pub conns: Arc<ws::Registry>,
    /// Replies for single senders.
    pub inbox: Arc<Inbox>,
    /// Credential checks (they count their own failures).
    pub auth: Auth,
    /// Metrics.
    pub metrics: Metrics,
    state: HashMap<Domain, kv::Store>,
    /// Parts buckets (`resource::PARTS_DOMAINS`).
    parts: HashMap<Domain, kv::Store>,
    draining: AtomicBool,
    registry: OnceLock<Arc<Registry>>,
    reconnect_hooks: Mutex<Vec<ReconnectHook>>,
}

/// The parts of a [`Node`] made before it (they need the connection and the metrics).
pub struct NodeParts {
    /// This edge's id.
    pub id: String,
    /// Its configuration.
    pub config: Config,
    /// The NATS client.
    pub client: async_nats::Client,
    /// Live WebSocket connections.
    pub conns: Arc<ws::Registry>,
    /// Replies for single senders.
    pub inbox: Arc<Inbox>,
    /// Credential checks.
    pub auth: Auth,
    /// Metrics.
    pub metrics: Metrics,
}

/// Reads one entry of a state or parts bucket (`None` when it has none); a missing bucket or a
/// failed read is `UNAVAILABLE`.
async fn read_entry(
    bucket: Option<&kv::Store>,
    key: &str,
    metrics: &Metrics,
) -> Result<Option<bytes::Bytes>, ErrorBody> {
    let bucket = bucket.ok_or_else(|| ErrorBody::new(ErrorCode::Unavailable))?;
    crate::consistent_read::read(bucket, key, &metrics.leader_read_fallbacks)
        .await
        .map_err(|e| {
            warn!(error = %e, "state read failed");
            ErrorBody::with_message(ErrorCode::Unavailable, "state store unavailable")
        })
}

/// Opens one KV bucket per domain, named by `name`; a missing one stops the edge (run
/// `tablewire provision`).
async fn open_buckets(
    js: &jetstream::Context,
    domains: &[Domain],
    name: fn(Domain) -> String,
) -> Result<HashMap<Domain, kv::Store>, EdgeError> {
    let mut buckets = HashMap::new();
    for &domain in domains {
        buckets.insert(domain, open_bucket(js, &name(domain)).await?);
    }
    Ok(buckets)
}

/// Opens one KV bucket; a missing one stops the edge (run `tablewire provision`).
pub async fn open_bucket(js: &jetstream::Context, bucket: &str) -> Result<kv::Store, EdgeError> {
    js.get_key_value(bucket)
        .await
        .map_err(|e| EdgeError::Nats(format!("{bucket}: {e}")))
}

impl Node {
    /// Opens the state and parts buckets and assembles the node.
    pub async fn open(parts: NodeParts) -> Result<Arc<Node>, EdgeError> {
        let js = jetstream::new(parts.client.clone());
        let state = open_buckets(&js, Domain::ALL, resource::state_bucket).await?;
        let parts_buckets =
            open_buckets(&js, resource::PARTS_DOMAINS, resource::parts_bucket).await?;
        let NodeParts {
            id,
            config,
            client,
            conns,
            inbox,
            auth,
            metrics,
        } = parts;
        Ok(Arc::new(Node {
            id,
            publisher: Publisher::new(client.clone(), metrics.clone()),
            fanout: Fanout::new(client.clone(), metrics.clone(), config.bus_timeout),
            conns,
            inbox,
            auth,
            metrics,
            state,
            parts: parts_buckets,
            draining: AtomicBool::new(false),
            registry: OnceLock::new(),
            reconnect_hooks: Mutex::new(Vec::new()),
            client,
            config,
        }))
    }

    /// The state bucket of a domain.
    pub fn state_bucket(&self, domain: Domain) -> Option<&kv::Store> {
        self.state.get(&domain)
    }

    /// Reads a key's stored state (raw JSON), `None` when it has none.
    pub async fn read_state(
        &self,
        domain: Domain,
        tenant: &str,
        key: &str,
    ) -> Result<Option<bytes::Bytes>, ErrorBody> {
        read_entry(
            self.state_bucket(domain),
            &resource::state_key(tenant, key),
            &self.metrics,
        )
        .await
    }

    /// Reads a part of a key's state kept apart from it (`resource::part_key`), e.g. a POS
    /// order's body.
    pub async fn read_part(
        &self,
        domain: Domain,
        part_key: &str,
    ) -> Result<Option<bytes::Bytes>, ErrorBody> {
        read_entry(self.parts.get(&domain), part_key, &self.metrics).await
    }

    /// Whether the edge is draining.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// From now on the edge is draining: `/healthz` says so and upgrades are refused.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// The metrics registry served on `/metrics`.
    pub fn registry(&self) -> Option<&Arc<Registry>> {
        self.registry.get()
    }

    /// Sets the registry `/metrics` serves (once).
    pub fn serve_registry(&self, registry: Arc<Registry>) {
        let _ = self.registry.set(registry);
    }

    /// Runs `hook` each time the NATS connection is back.
    pub fn on_reconnect(&self, hook: ReconnectHook) {
        self.reconnect_hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(hook);
    }

    /// The NATS connection is back: every keyed fan-out client takes a fresh snapshot, and
    /// each domain's hook runs.
    pub async fn reconnected(&self) {
        self.fanout.resync_all().await;
        for hook in self
            .reconnect_hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            hook();
        }
    }
}
