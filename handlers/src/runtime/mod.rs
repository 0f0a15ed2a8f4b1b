//! The handler runtime: per domain, announce this worker, own a share of the partitions (taking
//! over at once those of a worker that is gone, see [`membership`]), and run a [`partition`]
//! worker for each owned partition. All I/O around the pure domains lives
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
use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tablewire_nats::{provision, resource};
use tablewire_schemas::Domain as DomainName;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use membership::{owner as partition_owner, probe_worker};
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
    /// Every domain, with the flags' defaults ([`crate::settings::HandlerSettings`]).
    fn default() -> Self {
        crate::settings::HandlerSettings::default().without_webhook(DomainName::ALL.to_vec(), None)
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
    // Answers other workers' probes until every domain below has left; probes theirs.
    let liveness = membership::Liveness::start(client.clone()).await?;
    let mut tasks = Vec::new();
    for &domain in &config.domains {
        let (client, config, metrics, worker, shutdown) = (
            &client,
            &config,
            &metrics,
            Worker {
                name: worker.as_str(),
                liveness: &liveness,
            },
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
    tasks.push(tokio::spawn(liveness.clone().run(shutdown.clone())));
    for task in tasks {
        if let Err(e) = task.await {
            warn!(error = %e, "domain worker ended abnormally");
        }
    }
    info!(%worker, "handler stopped");
    Ok(())
}

/// This worker as its domains know it.
#[derive(Clone, Copy)]
struct Worker<'a> {
    name: &'a str,
    liveness: &'a Arc<membership::Liveness>,
}

async fn spawn_domain<D: Domain>(
    domain: D,
    client: &async_nats::Client,
    config: &Config,
    metrics: &Metrics,
    worker: Worker<'_>,
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
    let membership = membership::Membership::new(
        workers,
        D::NAME,
        worker.name.to_string(),
        worker.liveness.inbox().to_string(),
    );
    Ok(tokio::spawn(run_domain(
        shared,
        membership,
        worker.liveness.clone(),
        partitions,
        ttl,
        shutdown,
    )))
}

/// A partition worker this worker runs.
struct Running {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
    /// The live worker expected to release the partition (and its pin), while that is awaited.
    handed_over_by: Option<String>,
}

/// What woke the membership loop.
enum Event {
    Shutdown,
    Refresh,
    Entry(Option<Result<kv::Entry, kv::WatcherError>>),
    Verdicts,
}

/// Keeps this worker's share of a domain's partitions running as membership changes: refreshes
/// this worker's entry every third of its lifetime, follows the domain's entries in
/// `tw_workers`, hears from [`membership::Liveness`] whose processes are gone, and starts and
/// stops partition workers to match. A partition whose previous holder is gone is taken over
/// at once; one a live worker still holds is left to it until it lets go.
async fn run_domain<D: Domain>(
    shared: Arc<Shared<D>>,
    membership: membership::Membership,
    liveness: Arc<membership::Liveness>,
    partitions: u16,
    ttl: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let me = membership.worker_name().to_string();
    let mut running: HashMap<u16, Running> = HashMap::new();
    let mut refresh = tokio::time::interval((ttl / 3).max(Duration::from_millis(200)));
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut verdicts = liveness.verdicts();
    let mut watch: Option<kv::Watch> = None;
    // What a new watch has read, until it has read every entry there was.
    let mut reading: Option<membership::Roster> = None;
    // The members as last read in full; none before the first full read.
    let mut roster: Option<membership::Roster> = None;
    // The live workers of the last assignment.
    let mut last_live: Vec<String> = Vec::new();
    loop {
        let event = tokio::select! {
            _ = shutdown.changed() => Event::Shutdown,
            _ = refresh.tick() => Event::Refresh,
            entry = next_entry(&mut watch) => Event::Entry(entry),
            _ = verdicts.changed() => Event::Verdicts,
        };
        if matches!(event, Event::Shutdown) || *shutdown.borrow() {
            break;
        }
        match event {
            Event::Shutdown | Event::Verdicts => {}
            Event::Refresh => {
                if let Err(e) = membership.announce().await {
                    warn!(domain = %D::NAME, error = %e, "cannot refresh this worker's entry; keeping current partitions");
                    continue;
                }
                if watch.is_none() {
                    match membership.watch().await {
                        Ok(w) => {
                            watch = Some(w);
                            reading = Some(membership::Roster::default());
                        }
                        Err(e) => {
                            warn!(domain = %D::NAME, error = %e, "membership unavailable; keeping current partitions");
                        }
                    }
                }
                continue;
            }
            Event::Entry(Some(Ok(entry))) => {
                let Some(target) = reading.as_mut().or(roster.as_mut()) else {
                    continue;
                };
                if membership.apply(target, &entry) {
                    // This worker's own entry went (it expired while the process stalled, or
                    // was purged): the others no longer count it.
                    if let Err(e) = membership.announce().await {
                        warn!(domain = %D::NAME, error = %e, "cannot announce this worker again");
                    }
                }
                if let Some(read) = reading.as_ref() {
                    if !entry.seen_current {
                        continue;
                    }
                    // Read in full: before it is used, find out whose processes are gone now
                    // rather than at the next round of probes.
                    liveness.probe(&read.probes(&me)).await;
                    roster = reading.take();
                }
            }
            Event::Entry(ended) => {
                if let Some(Err(e)) = ended {
                    warn!(domain = %D::NAME, error = %e, "membership watch failed; reading again");
                }
                watch = None;
                reading = None;
                refresh.reset_immediately();
                continue;
            }
        }
        let Some(roster) = roster.as_ref() else {
            continue;
        };
        liveness.track(D::NAME, roster.probes(&me));
        let gone = verdicts.borrow_and_update().clone();
        let live = roster.live(&me, &gone);
        let owned = membership::assign(partitions, &live, &me);
        let known: Vec<String> = roster.workers().chain(&last_live).cloned().collect();
        // Partition workers that ended by themselves (one panicked outside a batch; its pin is
        // this worker's own), and those waiting for a holder that is gone since: started again
        // below, taking over.
        let mut ended = Vec::new();
        running.retain(|&partition, r| {
            if r.handle.is_finished() {
                warn!(domain = %D::NAME, partition, "partition worker ended; restarting it");
                ended.push(partition);
                return false;
            }
            let abandoned = r
                .handed_over_by
                .as_ref()
                .is_some_and(|holder| !live.contains(holder));
            if abandoned {
                let _ = r.stop.send(true);
            }
            !abandoned
        });
        for &p in &owned {
            if running.contains_key(&p) {
                continue;
            }
            let start = if ended.contains(&p) {
                membership::Start::TakeOver { from: None }
            } else {
                membership::start_of(p, &known, &live, &me)
            };
            let (take_over, handed_over_by) = match start {
                membership::Start::HandedOverBy(holder) => (false, Some(holder)),
                membership::Start::TakeOver { from } => {
                    if let Some(from) = from {
                        info!(domain = %D::NAME, partition = p, %from, "taking over a partition from a worker that is gone");
                    }
                    (true, None)
                }
            };
            let (stop, stop_rx) = watch::channel(false);
            let handle = tokio::spawn(partition::run(shared.clone(), p, take_over, stop_rx));
            running.insert(
                p,
                Running {
                    stop,
                    handle,
                    handed_over_by,
                },
            );
        }
        let released: Vec<u16> = running
            .keys()
            .copied()
            .filter(|p| !owned.contains(p))
            .collect();
        for p in released {
            if let Some(r) = running.remove(&p) {
                let _ = r.stop.send(true);
                tokio::spawn(async move {
                    let _ = r.handle.await;
                });
            }
        }
        last_live = live;
        shared
            .metrics
            .partitions_owned
            .get_or_create(&shared.label)
            .set(running.len() as i64);
    }
    for r in running.values() {
        let _ = r.stop.send(true);
    }
    for (_, r) in running {
        let _ = r.handle.await;
    }
    membership.leave().await;
}

/// The next entry of `watch`; never, without one.
async fn next_entry(watch: &mut Option<kv::Watch>) -> Option<Result<kv::Entry, kv::WatcherError>> {
    match watch {
        Some(watch) => watch.next().await,
        None => std::future::pending().await,
    }
}
