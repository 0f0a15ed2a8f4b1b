//! The handler runtime: runs the domains it is given ([`Registered`], from
//! `crate::registry`): per domain, its start hook, then announce this worker, own a share of
//! the partitions (taking over at once those of a worker that is gone, see [`membership`]),
//! and run a [`partition`] worker for each owned partition. All I/O around the pure domains
//! lives here. A batch, by phase:
//! - [`partition`] — the pull loop: batches, take-over catch-up, pins.
//! - [`plan`] — pure: trusted as delivered, or rebuilt from the stream ([`scan`]).
//! - [`batch`] — carries a plan out: parks what is no command ([`item`]), applies the keys,
//!   stores records, acknowledges ([`acks`]).
//! - [`key`] — one key: read state ([`state`]), apply in memory ([`apply`], pure over the
//!   domain), compare-and-set write within byte bounds, then [`outbox`] publishing.
//! - [`park`] — commands that can never be applied; [`follow_up`] — I/O domains ask for;
//!   [`direct`] — batched direct gets; [`shared`] — what a domain's workers share.

mod acks;
mod apply;
mod batch;
mod direct;
mod follow_up;
mod item;
mod key;
mod membership;
mod outbox;
mod park;
mod partition;
mod plan;
mod scan;
mod shared;
mod state;

use crate::domain::{Background, Domain};
use crate::metrics::Metrics;
use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use futures::future::BoxFuture;
use shared::Shared;
use state::StateStore;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tablewire_nats::{provision, resource};
use tablewire_schemas::Domain as DomainName;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use crate::error::RuntimeError;
pub use membership::{owner as partition_owner, probe_worker};

/// How this process's workers run, whatever the domain.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This worker's id; a unique one is made up when `None`.
    pub worker_id: Option<String>,
    /// Most commands pulled and applied per batch.
    pub batch_size: usize,
    /// Most keys of one batch applied at the same time.
    pub key_concurrency: usize,
}

/// A domain as the runtime runs it, whatever its types: one line of the registry
/// (`crate::registry::domains`), or of a test's own list.
pub struct Registered {
    name: DomainName,
    launch: Box<dyn Launch>,
}

impl Registered {
    /// `domain`, ready to run.
    pub fn new<D: Domain>(domain: D) -> Registered {
        Registered {
            name: D::NAME,
            launch: Box::new(Launcher(domain)),
        }
    }

    /// The domain's name.
    pub fn name(&self) -> DomainName {
        self.name
    }
}

/// What a [`Registered`] domain needs to start.
struct Start<'a> {
    client: &'a async_nats::Client,
    settings: &'a Settings,
    metrics: &'a Metrics,
    worker: Worker<'a>,
    shutdown: watch::Receiver<bool>,
}

/// Starts one domain of unknown type: its start hook, then its partition workers.
trait Launch: Send {
    fn launch<'a>(
        self: Box<Self>,
        start: Start<'a>,
    ) -> BoxFuture<'a, Result<Vec<JoinHandle<()>>, RuntimeError>>;
}

struct Launcher<D>(D);

impl<D: Domain> Launch for Launcher<D> {
    fn launch<'a>(
        self: Box<Self>,
        start: Start<'a>,
    ) -> BoxFuture<'a, Result<Vec<JoinHandle<()>>, RuntimeError>> {
        Box::pin(async move {
            let domain = self.0;
            let background = Background {
                client: start.client.clone(),
                shutdown: start.shutdown.clone(),
            };
            let mut tasks = domain.start(background).await?;
            tasks.push(spawn_domain(domain, start).await?);
            Ok(tasks)
        })
    }
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

/// Runs handler workers for `domains` until `shutdown` resolves; then releases every partition
/// and leaves, so other workers take over at once.
pub async fn run(
    client: async_nats::Client,
    settings: Settings,
    domains: Vec<Registered>,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RuntimeError> {
    let worker = settings.worker_id.clone().unwrap_or_else(new_worker_id);
    let names: Vec<DomainName> = domains.iter().map(Registered::name).collect();
    info!(%worker, domains = ?names, "handler starting");
    // Answers other workers' probes until every domain below has left; probes theirs.
    let liveness = membership::Liveness::start(client.clone()).await?;
    let mut tasks = Vec::new();
    for domain in domains {
        let start = Start {
            client: &client,
            settings: &settings,
            metrics: &metrics,
            worker: Worker {
                name: worker.as_str(),
                liveness: &liveness,
            },
            shutdown: shutdown.clone(),
        };
        tasks.extend(domain.launch.launch(start).await?);
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

/// Starts the worker that keeps `domain`'s share of partitions running ([`run_domain`]).
async fn spawn_domain<D: Domain>(
    domain: D,
    start: Start<'_>,
) -> Result<JoinHandle<()>, RuntimeError> {
    let Start {
        client,
        settings,
        metrics,
        worker,
        shutdown,
    } = start;
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
        batch_size: settings.batch_size.max(1),
        key_concurrency: settings.key_concurrency.max(1),
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
