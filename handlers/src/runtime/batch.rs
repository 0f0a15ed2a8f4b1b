//! One batch of a partition, for the pull loop ([`super::partition`]): reads the deliveries'
//! metadata, lets [`super::plan`] decide whether the batch is trusted or rebuilt from the stream
//! ([`super::scan`]), parks deliveries that are no command of the domain, applies each key's
//! commands ([`super::key`], several keys at once), stores the batch's records and
//! acknowledges it with the next batch ([`PartitionState::held`]). A panic anywhere in it
//! leaves the partition running: the batch comes back.

use super::acks::{Acks, nak, nak_all};
use super::item::{Item, parse_item};
use super::key::apply_key;
use super::outbox::{publish_replies, store_records};
use super::park::{self, Parked};
use super::plan::{self, Delivery, Plan, Settled};
use super::scan::{merge_scan, scan_until_caught_up};
use super::shared::Shared;
use super::state::Loaded;
use crate::domain::Domain;
use async_nats::jetstream;
use futures::{FutureExt, StreamExt};
use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use tablewire_nats::resource;
use tokio::time::Instant;
use tracing::{debug, error, warn};

/// Most cached key states per partition before the cache is emptied.
const MAX_CACHED: usize = 20_000;

/// Longest a batch's acknowledgement is held back when no later batch comes to send it.
pub(crate) const HOLD_ACK: Duration = Duration::from_millis(500);

/// What this worker keeps for a partition between batches.
pub(crate) struct PartitionState<S> {
    /// Key states as last written or read, used while batches are trusted.
    cache: HashMap<String, Loaded<S>>,
    /// The consumer sequence the next delivery must have for the batch to be trusted.
    expected_next: Option<u64>,
    /// The last batch's acknowledgements, held back until the next batch is applied (or
    /// [`HOLD_ACK`] passes). An input stream (interest retention) whose last command is
    /// acknowledged is empty, and nats-server then deletes its last block file and creates
    /// another, inline in the acknowledgement, while the stream is locked: at a steady rate
    /// that was a file deleted and created for about every other command, the next command's
    /// store waiting for it. Held back one batch, the stream keeps its newest commands.
    /// Acknowledging later changes nothing else: every one of them is applied (a worker
    /// taking over skips them by their key's `applied` sequence).
    held: Vec<jetstream::Message>,
    /// When `held` was last filled.
    held_since: Option<Instant>,
}

impl<S> PartitionState<S> {
    pub fn new() -> Self {
        PartitionState {
            cache: HashMap::new(),
            expected_next: None,
            held: Vec::new(),
            held_since: None,
        }
    }

    /// Resolves when the held acknowledgements are due; never while none are held.
    pub async fn held_due(&self) {
        match self.held_since {
            Some(since) => tokio::time::sleep_until(since + HOLD_ACK).await,
            None => std::future::pending().await,
        }
    }

    /// Sends the held acknowledgements.
    pub async fn release_held(&mut self) {
        self.held_since = None;
        for message in self.held.drain(..) {
            if let Err(e) = message.ack().await {
                debug!(error = %e, "ack failed; the command comes back and is skipped");
            }
        }
    }

    /// Sends the held acknowledgements and holds `next` instead.
    async fn hold(&mut self, next: Vec<jetstream::Message>) {
        self.release_held().await;
        if !next.is_empty() {
            self.held = next;
            self.held_since = Some(Instant::now());
        }
    }

    /// Trusts nothing that came before (a new pull stream starts).
    pub fn forget_deliveries(&mut self) {
        self.expected_next = None;
    }
}

/// Applies a batch of deliveries; with `catch_up_through` above them, also every command of the
/// partition up to that stream sequence, read from the stream (a take-over's catch-up, which
/// brings no deliveries). Then sets what the next batch may expect: the one place that does.
/// A panic is caught: nothing of the batch is acknowledged, it comes back (rebuilt from the
/// stream) and the partition stays owned.
pub(crate) async fn process<D: Domain>(
    shared: &Shared<D>,
    partition: u16,
    pstate: &mut PartitionState<D::State>,
    acks: Acks,
    messages: Vec<jetstream::Message>,
    catch_up_through: u64,
) {
    if !messages.is_empty() {
        shared.metrics.batch_size.observe(messages.len() as f64);
    }
    let mut deliveries = Vec::with_capacity(messages.len());
    let mut received = Vec::with_capacity(messages.len());
    for message in messages {
        match message.info() {
            Ok(info) => deliveries.push(Delivery {
                stream_seq: info.stream_sequence,
                consumer_seq: info.consumer_sequence,
                delivered: info.delivered,
            }),
            Err(e) => {
                warn!(error = %e, subject = %message.subject, "message without JetStream metadata");
                continue;
            }
        }
        received.push(message);
    }
    let plan = plan::plan(pstate.expected_next, &deliveries, catch_up_through);
    let carried_out = AssertUnwindSafe(carry_out(
        shared,
        partition,
        &mut pstate.cache,
        acks,
        received,
        &deliveries,
        plan,
    ))
    .catch_unwind()
    .await;
    let settled = match carried_out {
        Ok((settled, acks)) => {
            pstate.hold(acks).await;
            settled
        }
        Err(panic) => {
            error!(
                consumer = %resource::partition_consumer(D::NAME, partition),
                panic = %super::apply::panic_message(panic.as_ref()),
                "a batch panicked; the partition goes on and the batch comes back"
            );
            shared
                .metrics
                .partition_panics
                .get_or_create(&shared.label)
                .inc();
            pstate.cache.clear();
            pstate.release_held().await;
            Settled::Failed
        }
    };
    pstate.expected_next = plan.next_expected(settled);
}

/// Carries out `plan` for `messages` (each described by the delivery at its index); returns how
/// it settled and the deliveries to acknowledge (held back by the caller, see
/// [`PartitionState::held`]).
async fn carry_out<D: Domain>(
    shared: &Shared<D>,
    partition: u16,
    cache: &mut HashMap<String, Loaded<D::State>>,
    acks: Acks,
    messages: Vec<jetstream::Message>,
    deliveries: &[Delivery],
    plan: Plan,
) -> (Settled, Vec<jetstream::Message>) {
    let mut items = Vec::with_capacity(messages.len());
    // Deliveries that are no command of this domain: parked, then acknowledged.
    let mut unreadable = Vec::new();
    for (message, delivery) in messages.into_iter().zip(deliveries) {
        let seq = delivery.stream_seq;
        let payload = message.payload.clone();
        match parse_item::<D>(&message.subject, seq, &payload) {
            Ok(mut item) => {
                item.message = Some(message);
                items.push(item);
            }
            Err(why) => {
                let parked = Parked {
                    seq,
                    subject: message.subject.to_string(),
                    payload,
                    reason: why.reason,
                    detail: why.detail,
                };
                unreadable.push((parked, why.envelope, message));
            }
        }
    }

    let mut foreign = 0;
    // The lowest stream sequence of a command that could not be applied or parked.
    let mut first_failed = u64::MAX;
    // Parked deliveries waiting for the batch's acknowledgement (by batch only).
    let mut unreadable_done = Vec::new();
    if !unreadable.is_empty() {
        let parked: Vec<Parked> = unreadable.iter().map(|(p, ..)| p.clone()).collect();
        match park::park(shared, partition, &parked).await {
            Ok(()) => {
                let mut replies = Vec::new();
                for (parked, envelope, message) in unreadable {
                    if let Some(reply) = envelope.as_ref().and_then(|envelope| {
                        park::parked_reply(&shared.domain, envelope, parked.seq, parked.reason)
                    }) {
                        replies.push(reply);
                    }
                    match acks {
                        Acks::PerMessage => {
                            if let Err(e) = message.ack().await {
                                debug!(error = %e, "ack failed; the parked command comes back and is parked once");
                            }
                        }
                        // Acknowledged with the batch: an acknowledgement here would also
                        // acknowledge every delivery before it.
                        Acks::Batch => unreadable_done.push(message),
                    }
                }
                publish_replies(shared, replies).await;
            }
            Err(e) => {
                warn!(partition, error = %e, "cannot park unreadable commands; will retry");
                for (parked, _, message) in &unreadable {
                    first_failed = first_failed.min(parked.seq);
                    nak(shared, message).await;
                }
            }
        }
    }
    if !plan.trusted {
        shared
            .metrics
            .untrusted_batches
            .get_or_create(&shared.label)
            .inc();
        match scan_until_caught_up::<D>(shared, partition, plan.read_through, acks).await {
            Ok(scan) => foreign = merge_scan(&mut items, scan),
            Err(e) => {
                warn!(partition, error = %e, "cannot read the partition to rebuild a batch; retrying");
                nak_all(shared, items.iter().filter_map(|i| i.message.as_ref())).await;
                return (Settled::Failed, Vec::new());
            }
        }
        debug!(partition, foreign, "rebuilt batch from the stream");
    }

    let keys = apply_keys(shared, partition, cache, items, plan.trusted).await;
    first_failed = first_failed.min(keys.first_failed);
    // Every write's records, stored before any of its commands is acknowledged. Should that
    // fail, the commands come back and their keys' outboxes are published again.
    if let Err(e) = store_records::<D>(shared, &keys.records).await {
        warn!(partition, error = %e, "could not store the batch's records; will retry");
        nak_all(shared, keys.written.iter()).await;
        return (Settled::Failed, Vec::new());
    }
    let to_ack = match acks {
        Acks::PerMessage => keys.written,
        Acks::Batch => {
            // Acknowledging a delivery acknowledges every command up to its stream sequence,
            // and every command up to the first failed key's was applied or parked: in a
            // trusted batch nothing else was outstanding, an untrusted one read them all from
            // the stream.
            let last = keys
                .written
                .into_iter()
                .chain(unreadable_done)
                .filter_map(|m| {
                    let seq = m.info().ok()?.stream_sequence;
                    Some((seq, m))
                })
                .filter(|(seq, _)| *seq < first_failed)
                .max_by_key(|(seq, _)| *seq);
            last.map(|(_, message)| message).into_iter().collect()
        }
    };
    let settled = if first_failed == u64::MAX {
        Settled::Done { foreign }
    } else {
        Settled::Failed
    };
    (settled, to_ack)
}

/// What applying a batch's keys left to do for the batch.
struct KeysApplied {
    /// The records of every key's last write, to store before acknowledging.
    records: Vec<tablewire_schemas::stored::Record<tablewire_schemas::Frame>>,
    /// Deliveries of written keys, acknowledged once the records are stored.
    written: Vec<jetstream::Message>,
    /// The lowest stream sequence of a key that failed (`u64::MAX`: none did); its deliveries
    /// were handed back.
    first_failed: u64,
}

/// Groups `items` by key (each group in stream order) and applies the keys, up to
/// `key_concurrency` at once; the cached state of a key is used only in a trusted batch.
async fn apply_keys<D: Domain>(
    shared: &Shared<D>,
    partition: u16,
    cache: &mut HashMap<String, Loaded<D::State>>,
    mut items: Vec<Item>,
    trusted: bool,
) -> KeysApplied {
    items.sort_by_key(|i| i.seq);
    let mut groups: BTreeMap<String, Vec<Item>> = BTreeMap::new();
    for item in items {
        groups.entry(item.state_key.clone()).or_default().push(item);
    }
    if cache.len() > MAX_CACHED {
        cache.clear();
    }
    let work: Vec<_> = groups
        .into_iter()
        .map(|(key, items)| {
            let cached = if trusted { cache.remove(&key) } else { None };
            (key, items, cached)
        })
        .collect();
    let work = work.into_iter().map(|(key, items, cached)| async move {
        let result = apply_key(shared, partition, &key, &items, trusted, cached).await;
        (key, items, result)
    });
    let mut applied = KeysApplied {
        records: Vec::new(),
        written: Vec::new(),
        first_failed: u64::MAX,
    };
    let mut done = futures::stream::iter(work).buffer_unordered(shared.key_concurrency);
    while let Some((key, items, result)) = done.next().await {
        match result {
            Ok(key_done) => {
                applied.records.extend(key_done.records);
                applied
                    .written
                    .extend(items.into_iter().filter_map(|i| i.message));
                if let Some(loaded) = key_done.loaded {
                    cache.insert(key, loaded);
                }
            }
            Err(e) => {
                applied.first_failed = items
                    .iter()
                    .map(|i| i.seq)
                    .fold(applied.first_failed, u64::min);
                warn!(key = %key, error = %e, "could not apply; will retry");
                nak_all(shared, items.iter().filter_map(|i| i.message.as_ref())).await;
            }
        }
    }
    applied
}
