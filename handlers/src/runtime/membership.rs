//! Which partitions this worker owns, and how it starts one it did not run before.
//!
//! Workers announce themselves in the `tw_workers` bucket (entries expire unless refreshed; the
//! bucket's limit markers announce an expiry) and watch it; every worker assigns each partition
//! to the live worker with the highest rendezvous hash, so all agree without talking to each
//! other and a change of membership moves only the partitions it must.
//!
//! A worker that crashed is known at once, not when its entry expires: every process answers
//! probes on an inbox of its own, named in its entries ([`Liveness`]), and the others probe it
//! every [`PROBE_INTERVAL`]. NATS answers "no responders" as soon as the dead process's
//! connection is gone (the kernel closes it when the process dies), whereas a process that is
//! alive but busy keeps its connection and its subscription and is never taken for dead: a probe
//! it is slow to answer only times out. A process that hangs with its connection open, or is cut
//! off without the server noticing, is caught by its entry's expiry.

use crate::error::RuntimeError;
use async_nats::jetstream::kv;
use async_nats::{Client, RequestErrorKind};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tablewire_nats::resource;
use tablewire_schemas::Domain;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info};

/// How often the processes of the other members are probed: the longest a crash goes unnoticed.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// How long a probe waits for its answer. "No responders" comes back within a round trip; a
/// probe without an answer by then reached a process that is busy, not gone. Shorter than
/// [`PROBE_INTERVAL`], so one slow process never delays the next round.
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);

/// What a worker's entry in `tw_workers` holds (plain JSON).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Announcement {
    worker: String,
    pid: u32,
    /// The inbox the worker's process answers liveness probes on. Entries written by older
    /// versions have none: those workers are known gone when their entries expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    probe: Option<String>,
}

/// This worker's presence in one domain.
pub(crate) struct Membership {
    kv: kv::Store,
    domain: Domain,
    worker: String,
    probe: String,
}

impl Membership {
    /// `probe` is the inbox this process answers liveness probes on ([`Liveness::inbox`]).
    pub fn new(kv: kv::Store, domain: Domain, worker: String, probe: String) -> Self {
        Membership {
            kv,
            domain,
            worker,
            probe,
        }
    }

    /// This worker's id.
    pub fn worker_name(&self) -> &str {
        &self.worker
    }

    /// Announces (or refreshes) this worker.
    pub async fn announce(&self) -> Result<(), RuntimeError> {
        let value = Announcement {
            worker: self.worker.clone(),
            pid: std::process::id(),
            probe: Some(self.probe.clone()),
        };
        let value = serde_json::to_vec(&value)
            .map_err(|e| RuntimeError::Nats(format!("announce worker: {e}")))?;
        self.kv
            .put(
                resource::worker_key(self.domain, &self.worker),
                value.into(),
            )
            .await
            .map_err(|e| RuntimeError::Nats(format!("announce worker: {e}")))?;
        Ok(())
    }

    /// Watches the domain's entries: first each one there is, then every change.
    pub async fn watch(&self) -> Result<kv::Watch, RuntimeError> {
        self.kv
            .watch_with_history(resource::worker_keys(self.domain))
            .await
            .map_err(|e| RuntimeError::Nats(format!("watch workers: {e}")))
    }

    /// Applies one entry of [`watch`](Self::watch) to `roster`; true when it removed this
    /// worker's own entry (it must announce itself again).
    pub fn apply(&self, roster: &mut Roster, entry: &kv::Entry) -> bool {
        let Some(worker) = resource::worker_of_key(self.domain, &entry.key) else {
            return false;
        };
        match entry.operation {
            kv::Operation::Put => {
                roster.put(worker, &entry.value);
                false
            }
            kv::Operation::Delete | kv::Operation::Purge => {
                roster.remove(&worker);
                worker == self.worker
            }
        }
    }

    /// Removes this worker, so the others take its partitions at once.
    pub async fn leave(&self) {
        let _ = self
            .kv
            .purge(resource::worker_key(self.domain, &self.worker))
            .await;
    }
}

/// The members of one domain as this worker last read them from `tw_workers`, with the inbox
/// each one's process answers probes on.
#[derive(Debug, Default, Clone)]
pub(crate) struct Roster {
    members: BTreeMap<String, Option<String>>,
}

impl Roster {
    /// Records `worker`'s entry (an unreadable value, or one naming no usable probe inbox,
    /// still counts as a member, never probed).
    fn put(&mut self, worker: String, value: &[u8]) {
        let probe = serde_json::from_slice::<Announcement>(value)
            .ok()
            .and_then(|a| a.probe)
            .filter(|probe| usable_inbox(probe));
        self.members.insert(worker, probe);
    }

    /// Forgets `worker` (its entry was removed, purged or expired).
    fn remove(&mut self, worker: &str) {
        self.members.remove(worker);
    }

    /// Every member.
    pub fn workers(&self) -> impl Iterator<Item = &String> {
        self.members.keys()
    }

    /// The inboxes to probe: those of every member but `me`.
    pub fn probes(&self, me: &str) -> Vec<String> {
        self.members
            .iter()
            .filter(|(worker, _)| *worker != me)
            .filter_map(|(_, probe)| probe.clone())
            .collect()
    }

    /// The live workers: `me`, and every member whose process was not found gone.
    pub fn live(&self, me: &str, gone: &HashSet<String>) -> Vec<String> {
        let mut live: Vec<String> = self
            .members
            .iter()
            .filter(|(worker, probe)| {
                *worker != me && !probe.as_ref().is_some_and(|p| gone.contains(p))
            })
            .map(|(worker, _)| worker.clone())
            .collect();
        live.push(me.to_string());
        live
    }
}

/// Most bytes of a probe inbox: a client inbox is about 30.
const MAX_PROBE_INBOX: usize = 256;

/// Whether `inbox`, read from another worker's entry, can be published to: a subject of plain
/// tokens (no wildcards, spaces or control characters), short enough for any server.
fn usable_inbox(inbox: &str) -> bool {
    !inbox.is_empty()
        && inbox.len() <= MAX_PROBE_INBOX
        && inbox.split('.').all(|token| {
            !token.is_empty()
                && token != "*"
                && token != ">"
                && !token.chars().any(|c| c.is_whitespace() || c.is_control())
        })
}

/// How a partition this worker did not run before is started.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Start {
    /// Its previous holder is alive: it releases the partition (and the pin) once it sees this
    /// worker, and is waited for.
    HandedOverBy(String),
    /// Its previous holder is gone (or there was none): the pin is cleared at once and what the
    /// holder had been delivered and not acknowledged is applied.
    TakeOver { from: Option<String> },
}

/// How `me` starts `partition`, which it now owns among `live`: its previous holder is the one
/// of the other workers `known` (live, found gone, or live in the last view) that would own it.
pub(crate) fn start_of(partition: u16, known: &[String], live: &[String], me: &str) -> Start {
    let mut others: Vec<String> = known.iter().filter(|w| *w != me).cloned().collect();
    others.sort_unstable();
    others.dedup();
    match owner(partition, &others) {
        Some(holder) if live.contains(holder) => Start::HandedOverBy(holder.clone()),
        holder => Start::TakeOver {
            from: holder.cloned(),
        },
    }
}

/// This process's side of crash detection: answers probes on an inbox of its own (named in
/// every entry it announces), and probes the inboxes of the other members of every domain it
/// works for, once per [`PROBE_INTERVAL`] whatever the number of domains, telling the domains
/// which processes are gone.
pub(crate) struct Liveness {
    client: Client,
    inbox: String,
    /// The inboxes each domain wants probed.
    tracked: Mutex<HashMap<Domain, Vec<String>>>,
    /// The probed inboxes that NATS last answered "no responders" for.
    gone: watch::Sender<HashSet<String>>,
    responder: JoinHandle<()>,
}

impl Drop for Liveness {
    fn drop(&mut self) {
        self.responder.abort();
    }
}

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    /// Answered, or delivered and not answered in time (busy).
    Alive,
    /// Nobody subscribes to the inbox: the process's connection is gone.
    Gone,
    /// The probe itself failed (this process's own connection): nothing learned.
    Unknown,
}

impl Liveness {
    /// Subscribes to a new inbox and answers every probe sent to it until dropped.
    pub async fn start(client: Client) -> Result<Arc<Liveness>, RuntimeError> {
        let inbox = client.new_inbox();
        let mut probes = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| RuntimeError::Nats(format!("liveness inbox: {e}")))?;
        let answer = client.clone();
        let responder = tokio::spawn(async move {
            while let Some(probe) = probes.next().await {
                if let Some(reply) = probe.reply {
                    let _ = answer.publish(reply, Bytes::new()).await;
                }
            }
        });
        Ok(Arc::new(Liveness {
            client,
            inbox,
            tracked: Mutex::new(HashMap::new()),
            gone: watch::Sender::new(HashSet::new()),
            responder,
        }))
    }

    /// The inbox this process answers probes on.
    pub fn inbox(&self) -> &str {
        &self.inbox
    }

    /// Sets the inboxes `domain` wants probed.
    pub fn track(&self, domain: Domain, probes: Vec<String>) {
        if let Ok(mut tracked) = self.tracked.lock() {
            tracked.insert(domain, probes);
        }
    }

    /// The probed inboxes found gone, updated after every probe.
    pub fn verdicts(&self) -> watch::Receiver<HashSet<String>> {
        self.gone.subscribe()
    }

    /// Probes every tracked inbox every [`PROBE_INTERVAL`] until `shutdown`.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut rounds = tokio::time::interval(PROBE_INTERVAL);
        rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = rounds.tick() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            let tracked: HashSet<String> = match self.tracked.lock() {
                Ok(tracked) => tracked.values().flatten().cloned().collect(),
                Err(_) => return,
            };
            let results = self.probe_all(&tracked).await;
            self.gone
                .send_if_modified(|gone| record(gone, &results, Some(&tracked)));
        }
    }

    /// Probes `inboxes` now, all at once, and records what was found.
    pub async fn probe(&self, inboxes: &[String]) {
        let results = self.probe_all(inboxes).await;
        self.gone
            .send_if_modified(|gone| record(gone, &results, None));
    }

    async fn probe_all<'a>(
        &self,
        inboxes: impl IntoIterator<Item = &'a String>,
    ) -> Vec<(String, Verdict)> {
        futures::future::join_all(
            inboxes
                .into_iter()
                .map(|inbox| async move { (inbox.clone(), probe(&self.client, inbox).await) }),
        )
        .await
    }
}

/// Whether the process behind a worker's probe inbox (the `probe` of its `tw_workers` entry)
/// is alive, as the workers themselves judge it: `Some(false)` when NATS says nobody listens
/// there, `None` when the inbox is not a plain subject or the probe learned nothing. Used by
/// `tablewire status`.
pub async fn probe_worker(client: &Client, inbox: &str) -> Option<bool> {
    if !usable_inbox(inbox) {
        return None;
    }
    match probe(client, inbox).await {
        Verdict::Alive => Some(true),
        Verdict::Gone => Some(false),
        Verdict::Unknown => None,
    }
}

/// Sends one probe to `inbox`.
async fn probe(client: &Client, inbox: &str) -> Verdict {
    let request = client.request(inbox.to_string(), Bytes::new());
    match tokio::time::timeout(PROBE_TIMEOUT, request).await {
        Ok(Ok(_)) | Err(_) => Verdict::Alive,
        Ok(Err(e)) => match e.kind() {
            RequestErrorKind::NoResponders => Verdict::Gone,
            RequestErrorKind::TimedOut => Verdict::Alive,
            RequestErrorKind::Other
            | RequestErrorKind::InvalidSubject
            | RequestErrorKind::MaxPayloadExceeded => {
                debug!(error = %e, "probe failed");
                Verdict::Unknown
            }
        },
    }
}

/// Records probe `results` in the set of gone inboxes; with `tracked` (a round over every
/// tracked inbox), inboxes no longer tracked are forgotten. True when the set changed. A probe
/// that learned nothing leaves its inbox as it was.
fn record(
    gone: &mut HashSet<String>,
    results: &[(String, Verdict)],
    tracked: Option<&HashSet<String>>,
) -> bool {
    let before = gone.clone();
    if let Some(tracked) = tracked {
        gone.retain(|inbox| tracked.contains(inbox));
    }
    for (inbox, verdict) in results {
        match verdict {
            Verdict::Gone => {
                if gone.insert(inbox.clone()) {
                    info!(%inbox, "a worker's process is gone (no responders)");
                }
            }
            Verdict::Alive => {
                gone.remove(inbox);
            }
            Verdict::Unknown => {}
        }
    }
    *gone != before
}

/// FNV-1a, 64 bits: stable across processes and versions, unlike the standard hasher.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for part in parts {
        for &b in *part {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // Finalise (splitmix64) so that similar inputs spread well.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// The worker that owns `partition` among `workers` (the highest rendezvous hash). Also what
/// `tablewire status` reports as a partition's holder.
pub fn owner(partition: u16, workers: &[String]) -> Option<&String> {
    let p = partition.to_be_bytes();
    workers
        .iter()
        .max_by_key(|w| (fnv1a(&[&p, w.as_bytes()]), w.as_str()))
}

/// The partitions `me` owns among `workers`.
pub(crate) fn assign(partitions: u16, workers: &[String], me: &str) -> Vec<u16> {
    (0..partitions)
        .filter(|&p| owner(p, workers).is_some_and(|owner| owner == me))
        .collect()
}

#[cfg(test)]
mod tests;
