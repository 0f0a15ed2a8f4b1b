//! The handler runtime: per domain, announce this worker, own a share of the partitions, and
//! run a [`partition`] worker for each owned partition. All I/O around the pure domains lives
//! here: consume, order, dedupe, read state, compare-and-set write within byte bounds
//! (`apply`), publish, park what can never be applied (`park`), ack.

mod apply;
mod direct;
mod follow_up;
mod membership;
mod park;
mod partition;
mod state;

use crate::domain::Domain;
use crate::metrics::{DomainLabel, Metrics};
use async_nats::jetstream;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tablewire_nats::{provision, resource};
use tablewire_schemas::Domain as DomainName;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub(crate) use state::StateStore;

/// What can stop the runtime or one key's batch.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// NATS or JetStream failed; retried with a growing delay, never parked.
    #[error("NATS: {0}")]
    Nats(String),
    /// A stored value cannot be read (the commands of its key are parked).
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A key kept losing compare-and-set writes.
    #[error("too many concurrent writers on {0}")]
    Contended(String),
    /// Resources are missing: run `tablewire provision`.
    #[error("not provisioned: {0} (run `tablewire provision`)")]
    NotProvisioned(String),
}

/// Everything one domain's partition workers share.
pub(crate) struct Shared<D: Domain> {
    pub domain: D,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub stream: jetstream::stream::Stream,
    pub stream_name: String,
    pub state: StateStore,
    pub metrics: Metrics,
    pub label: DomainLabel,
    pub batch_size: usize,
    pub key_concurrency: usize,
}

/// How a handler process runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The domains to work for.
    pub domains: Vec<DomainName>,
    /// This worker's id; a unique one is made up when `None`.
    pub worker_id: Option<String>,
    /// Most commands pulled and applied per batch.
    pub batch_size: usize,
    /// Most keys of one batch applied at the same time.
    pub key_concurrency: usize,
    /// Collaborative order rooms: idle expiry and the per-room rate limit.
    pub collab: crate::collab::Settings,
    /// Collaborative orders: post finalized orders here (off when `None`).
    pub collab_webhook: Option<crate::collab::webhook::Webhook>,
    /// Writes one tenant's POS book accepts (orders, status changes), across all workers.
    pub tenant_orders: crate::rate::WriteRate,
    /// Events one tenant's feed accepts from `POST /api/events`, across all workers.
    pub tenant_events: crate::rate::WriteRate,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            domains: DomainName::ALL.to_vec(),
            worker_id: None,
            batch_size: 256,
            key_concurrency: 64,
            collab: crate::collab::Settings::default(),
            collab_webhook: None,
            tenant_orders: crate::pos::TENANT_RATE,
            tenant_events: crate::events::TENANT_RATE,
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A worker id: host, process and a random part, readable in `tw_workers`.
pub fn new_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".to_string());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

/// Runs handler workers for `config.domains` until `shutdown` resolves; then releases every
/// partition and leaves, so other workers take over at once.
pub async fn run(
    client: async_nats::Client,
    config: Config,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RuntimeError> {
    let worker = config.worker_id.clone().unwrap_or_else(new_worker_id);
    info!(%worker, domains = ?config.domains, "handler starting");
    let mut tasks = Vec::new();
    for &domain in &config.domains {
        let (client, config, metrics, worker, shutdown) = (
            &client,
            &config,
            &metrics,
            worker.as_str(),
            shutdown.clone(),
        );
        // The one place that maps a domain name to its implementation.
        let task = match domain {
            DomainName::Display => {
                spawn_domain(
                    crate::display::Display,
                    client,
                    config,
                    metrics,
                    worker,
                    shutdown,
                )
                .await?
            }
            DomainName::Events => {
                spawn_domain(
                    crate::events::Events {
                        tenant_rate: config.tenant_events,
                    },
                    client,
                    config,
                    metrics,
                    worker,
                    shutdown,
                )
                .await?
            }
            DomainName::Collab => {
                tasks.push(tokio::spawn(crate::collab::expiry::run(
                    client.clone(),
                    config.collab,
                    shutdown.clone(),
                )));
                if let Some(webhook) = &config.collab_webhook {
                    // Before the domain runs: a record finalized earlier would not wait for it.
                    crate::collab::webhook::ensure_consumer(&jetstream::new(client.clone()))
                        .await?;
                    tasks.push(tokio::spawn(crate::collab::webhook::run(
                        client.clone(),
                        webhook.clone(),
                        shutdown.clone(),
                    )));
                }
                spawn_domain(
                    crate::collab::Collab {
                        settings: config.collab,
                    },
                    client,
                    config,
                    metrics,
                    worker,
                    shutdown,
                )
                .await?
            }
            DomainName::Pos => {
                spawn_domain(
                    crate::pos::Pos {
                        tenant_rate: config.tenant_orders,
                    },
                    client,
                    config,
                    metrics,
                    worker,
                    shutdown,
                )
                .await?
            }
            DomainName::Voice => {
                spawn_domain(
                    crate::voice::Voice,
                    client,
                    config,
                    metrics,
                    worker,
                    shutdown,
                )
                .await?
            }
            DomainName::Device => {
                tokio::spawn(crate::device_presence::watch(
                    client.clone(),
                    shutdown.clone(),
                ));
                spawn_domain(
                    crate::device::Device,
                    client,
                    config,
                    metrics,
                    worker,
                    shutdown,
                )
                .await?
            }
        };
        tasks.push(task);
    }
    for task in tasks {
        if let Err(e) = task.await {
            warn!(error = %e, "domain worker ended abnormally");
        }
    }
    info!(%worker, "handler stopped");
    Ok(())
}

async fn spawn_domain<D: Domain>(
    domain: D,
    client: &async_nats::Client,
    config: &Config,
    metrics: &Metrics,
    worker: &str,
    shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, RuntimeError> {
    let js = jetstream::new(client.clone());
    let stream_name = resource::input_stream(D::NAME);
    let stream = js
        .get_stream(&stream_name)
        .await
        .map_err(|e| RuntimeError::NotProvisioned(format!("{stream_name}: {e}")))?;
    let partitions = provision::current_partitions(&js, &stream_name)
        .await
        .ok_or_else(|| {
            RuntimeError::NotProvisioned(format!("{stream_name} has no partition count"))
        })?;
    let bucket = resource::state_bucket(D::NAME);
    let kv = js
        .get_key_value(&bucket)
        .await
        .map_err(|e| RuntimeError::NotProvisioned(format!("{bucket}: {e}")))?;
    let parts = if resource::PARTS_DOMAINS.contains(&D::NAME) {
        let bucket = resource::parts_bucket(D::NAME);
        Some(
            js.get_key_value(&bucket)
                .await
                .map_err(|e| RuntimeError::NotProvisioned(format!("{bucket}: {e}")))?,
        )
    } else {
        None
    };
    js.get_stream(resource::PARKED_STREAM)
        .await
        .map_err(|e| RuntimeError::NotProvisioned(format!("{}: {e}", resource::PARKED_STREAM)))?;
    let workers = js
        .get_key_value(resource::WORKERS_BUCKET)
        .await
        .map_err(|e| RuntimeError::NotProvisioned(format!("{}: {e}", resource::WORKERS_BUCKET)))?;
    let ttl = js
        .get_stream(format!("KV_{}", resource::WORKERS_BUCKET))
        .await
        .map(|s| s.cached_info().config.max_age)
        .unwrap_or(Duration::from_secs(6));
    let shared = Arc::new(Shared {
        domain,
        client: client.clone(),
        js: js.clone(),
        stream,
        stream_name,
        state: StateStore::new(kv, parts, js.clone()),
        metrics: metrics.clone(),
        label: Metrics::domain(D::NAME),
        batch_size: config.batch_size.max(1),
        key_concurrency: config.key_concurrency.max(1),
    });
    let membership = membership::Membership::new(workers, D::NAME, worker.to_string());
    Ok(tokio::spawn(run_domain(
        shared, membership, partitions, ttl, shutdown,
    )))
}

/// Keeps this worker's share of a domain's partitions running as membership changes.
async fn run_domain<D: Domain>(
    shared: Arc<Shared<D>>,
    membership: membership::Membership,
    partitions: u16,
    ttl: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let me = membership_name(&membership);
    let mut running: HashMap<u16, (watch::Sender<bool>, JoinHandle<()>)> = HashMap::new();
    let mut tick = tokio::time::interval((ttl / 3).max(Duration::from_millis(200)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        let live = match membership.announce().await {
            Ok(()) => membership.live().await,
            Err(e) => Err(e),
        };
        let live = match live {
            Ok(live) => live,
            Err(e) => {
                warn!(domain = %D::NAME, error = %e, "membership unavailable; keeping current partitions");
                continue;
            }
        };
        let owned = membership::assign(partitions, &live, &me);
        // A partition worker that ended by itself (it panicked outside a batch) is started
        // again below if the partition is still this worker's.
        running.retain(|partition, (_, handle)| {
            if handle.is_finished() {
                warn!(domain = %D::NAME, partition, "partition worker ended; restarting it");
            }
            !handle.is_finished()
        });
        for &p in &owned {
            running.entry(p).or_insert_with(|| {
                let (stop_tx, stop_rx) = watch::channel(false);
                let handle = tokio::spawn(partition::run(shared.clone(), p, stop_rx));
                (stop_tx, handle)
            });
        }
        let released: Vec<u16> = running
            .keys()
            .copied()
            .filter(|p| !owned.contains(p))
            .collect();
        for p in released {
            if let Some((stop, handle)) = running.remove(&p) {
                let _ = stop.send(true);
                tokio::spawn(async move {
                    let _ = handle.await;
                });
            }
        }
        shared
            .metrics
            .partitions_owned
            .get_or_create(&shared.label)
            .set(running.len() as i64);
    }
    for (stop, _) in running.values() {
        let _ = stop.send(true);
    }
    for (_, (_, handle)) in running {
        let _ = handle.await;
    }
    membership.leave().await;
}

fn membership_name(membership: &membership::Membership) -> String {
    membership.worker_name().to_string()
}
