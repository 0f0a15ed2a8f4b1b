//! One key's share of a batch: reads its state (or takes the cached one), applies its commands
//! in memory ([`super::apply`]), writes the state by compare-and-set within its byte bounds
//! (command by command when a bound is passed), then publishes what the write produced
//! ([`super::outbox`]); a key whose state does not read has its commands parked. Used by
//! [`super::batch`].

use super::apply::{self, Limits};
use super::item::Item;
use super::outbox::{publish_commands, publish_events, publish_replies, store_records};
use super::park::{self, Parked, Reason};
use super::shared::Shared;
use super::state::{Loaded, Written};
use crate::domain::Domain;
use crate::error::RuntimeError;
use bytes::Bytes;
use std::time::Duration;
use tablewire_nats::resource;
use tablewire_schemas::Frame;
use tablewire_schemas::stored::{Record, Stored};
use tracing::{debug, warn};

/// How often a key's write is retried after losing a compare-and-set.
const MAX_ATTEMPTS: usize = 8;

/// A key's commands applied and written.
pub(crate) struct KeyDone<S> {
    /// The key's state as last written or read, for the partition's cache (`None` when it does
    /// not read: its commands were parked).
    pub loaded: Option<Loaded<S>>,
    /// The records its last write produced, for the batch to store before it acknowledges the
    /// commands (a republished outbox's records, and those of a write the batch was cut after,
    /// are stored before the key is written again).
    pub records: Vec<Record<Frame>>,
}

/// A key's state as read, or the news that it did not read and its commands were parked.
enum Read<S> {
    State(Loaded<S>),
    Parked,
}

/// Reads a key's state; when it does not read as the domain's state (a permanent condition),
/// parks `pending` with that reason and answers their senders instead. The stored value is
/// left as it is.
async fn read_or_park<D: Domain>(
    shared: &Shared<D>,
    partition: u16,
    state_key: &str,
    pending: &[&Item],
) -> Result<Read<D::State>, RuntimeError> {
    let why = match load_state(shared, state_key).await {
        Err(RuntimeError::Corrupt(why)) => why,
        other => return other.map(Read::State),
    };
    let parked: Vec<Parked> = pending
        .iter()
        .map(|item| item.parked(Reason::StateUnreadable, why.clone()))
        .collect();
    park::park(shared, partition, &parked).await?;
    let replies = pending
        .iter()
        .filter_map(|item| {
            park::parked_reply(
                &shared.domain,
                &item.envelope,
                item.seq,
                Reason::StateUnreadable,
            )
        })
        .collect();
    publish_replies(shared, replies).await;
    Ok(Read::Parked)
}

fn count_rejections<D: Domain>(shared: &Shared<D>, codes: &[&'static str]) {
    for code in codes {
        shared
            .metrics
            .rejected
            .get_or_create(&crate::metrics::RejectionLabels {
                domain: D::NAME.as_str().to_string(),
                code: code.to_string(),
            })
            .inc();
    }
}

/// Applies one key's commands (sorted by sequence) and makes their effects durable and visible,
/// all but the records of its last write, which it returns for the batch to store. Usually one
/// write; several when the batch's write would pass a byte bound. Commands that can never be
/// applied are parked; an error means a passing failure, and the commands come back.
pub(crate) async fn apply_key<D: Domain>(
    shared: &Shared<D>,
    partition: u16,
    state_key: &str,
    items: &[Item],
    trusted: bool,
    cached: Option<Loaded<D::State>>,
) -> Result<KeyDone<D::State>, RuntimeError> {
    let parked_done = || KeyDone {
        loaded: None,
        records: Vec::new(),
    };
    // The commands not dealt with yet, in order.
    let mut pending: Vec<&Item> = items.iter().collect();
    let (tenant, key) = match items.first() {
        Some(item) => (item.envelope.tenant.as_str(), item.envelope.key.as_str()),
        None => {
            return Ok(KeyDone {
                loaded: cached,
                records: Vec::new(),
            });
        }
    };
    let mut loaded = match cached {
        Some(loaded) => loaded,
        None => match read_or_park(shared, partition, state_key, &pending).await? {
            Read::State(loaded) => loaded,
            Read::Parked => return Ok(parked_done()),
        },
    };
    // Commands at or below this were applied before the key was removed in this call (its
    // state, and so its `applied` sequence, is gone).
    let mut removed_through = 0;
    // A worker may have died between writing this key and publishing what the write produced:
    // unless delivery is trusted, publish it again (edges drop repeated sequence numbers, SQL
    // drops repeated record ids).
    let mut republish = !trusted;
    // Set once the whole batch's write passed a byte bound or a domain panicked: from then on
    // command by command.
    let mut careful = false;
    let mut conflicts = 0;
    loop {
        let applied_before = loaded.applied().max(removed_through);
        let stale = pending.iter().filter(|i| i.seq <= applied_before).count();
        if stale > 0 {
            shared
                .metrics
                .skipped
                .get_or_create(&shared.label)
                .inc_by(stale as u64);
            pending.retain(|i| i.seq > applied_before);
        }
        if (republish || stale > 0)
            && let Some(stored) = &loaded.stored
        {
            publish_events::<D>(shared, tenant, key, stored.applied, &stored.outbox).await?;
            publish_commands(shared, &stored.outbox).await?;
            // Stored now, not with the batch: a write below replaces this outbox, and should the
            // batch's store then fail, these records would be gone with it.
            store_records::<D>(shared, &stored.outbox.records).await?;
        }
        republish = false;
        if pending.is_empty() {
            return Ok(KeyDone {
                loaded: Some(loaded),
                records: Vec::new(),
            });
        }
        let previous_follow_up = loaded
            .stored
            .as_ref()
            .and_then(|before| shared.domain.follow_up(&before.state, tenant, key))
            .map(|follow_up| follow_up.id);
        let loaded_revision = loaded.revision;
        let limits = limits_of(shared);
        let outcome = if careful {
            shared
                .metrics
                .bounded_batches
                .get_or_create(&shared.label)
                .inc();
            apply::bounded(&shared.domain, loaded.stored.take(), &pending, limits)
        } else {
            apply::all(&shared.domain, loaded.stored.take(), &pending)
        };
        if outcome.panicked {
            // Whatever the batch did to the state is not to be trusted: read it again and go
            // command by command, parking the one that panics.
            careful = true;
            loaded = match read_or_park(shared, partition, state_key, &pending).await? {
                Read::State(loaded) => loaded,
                Read::Parked => return Ok(parked_done()),
            };
            continue;
        }
        let mut stored = match outcome.stored {
            Some(stored) if outcome.changed => stored,
            unchanged => {
                // Every command was refused or parked: nothing to write.
                let parked = parked_items(&pending, &outcome.parked);
                park::park(shared, partition, &parked).await?;
                count_rejections(shared, &outcome.rejections);
                publish_replies(shared, outcome.replies).await;
                let loaded = Loaded {
                    revision: loaded_revision,
                    stored: unchanged,
                };
                return Ok(KeyDone {
                    loaded: Some(loaded),
                    records: Vec::new(),
                });
            }
        };
        // The write is encoded once, and measured: on the common path that is all the size
        // check costs.
        let mut value = match super::state::encode(state_key, &stored) {
            Ok(value) => value,
            // A state that does not serialize (a domain bug): command by command, the command
            // that made it so measures as endless and is refused.
            Err(e) if !careful => {
                warn!(key = state_key, error = %e, "state does not serialize; applying command by command");
                careful = true;
                loaded = match read_or_park(shared, partition, state_key, &pending).await? {
                    Read::State(loaded) => loaded,
                    Read::Parked => return Ok(parked_done()),
                };
                continue;
            }
            Err(e) => return Err(e),
        };
        let over = |value: &Bytes, stored: &Stored<D::State>| {
            !limits.fits_at_a_glance(value.len())
                && (value.len() > limits.write
                    || apply::state_len_in(value.len(), stored) > limits.state)
        };
        if !careful
            && over(&value, &stored)
            && value.len() <= limits.write
            && shared.domain.trim(&mut stored.state, limits.state)
        {
            // Only the state is over, and the domain may drop old entries (a display
            // session's oldest updates): dropped from the batch's state, at the cost of one
            // more encoding, the key keeps its newest entries within its bound as it would
            // command by command (perhaps a few more old ones).
            value = super::state::encode(state_key, &stored)?;
        }
        if !careful && over(&value, &stored) {
            debug!(
                key = state_key,
                bytes = value.len(),
                "write past a bound; applying command by command"
            );
            careful = true;
            loaded = match read_or_park(shared, partition, state_key, &pending).await? {
                Read::State(loaded) => loaded,
                Read::Parked => return Ok(parked_done()),
            };
            continue;
        }
        // Parked commands are stored before the write that passes them by `applied`.
        let parked = parked_items(&pending, &outcome.parked);
        park::park(shared, partition, &parked).await?;
        // Parts first, not awaited before the state write (one round trip less). They go to
        // another stream, so for a moment a reader may find the state naming a part not yet
        // stored (the edge reads a fresh POS order's body again); nothing of this write is
        // published before the parts are acknowledged.
        let parts: Vec<(String, Bytes)> = shared
            .domain
            .unwritten_parts(&stored.state)
            .into_iter()
            .map(|(name, json)| (resource::part_key(state_key, &name), Bytes::from(json)))
            .collect();
        let pending_parts = if parts.is_empty() {
            None
        } else {
            Some(shared.state.send_parts(&parts).await?)
        };
        let ttl = shared.domain.time_to_live(&stored.state, outcome.last_at);
        match shared
            .state
            .write(state_key, value, loaded_revision, ttl)
            .await?
        {
            Written::Ok(revision) => {
                if let Some(sent) = pending_parts {
                    parts_stored(shared, sent, &parts).await?;
                    shared.domain.parts_written(&mut stored.state);
                }
                shared.metrics.writes.get_or_create(&shared.label).inc();
                shared
                    .metrics
                    .applied
                    .get_or_create(&shared.label)
                    .inc_by(outcome.applied);
                count_rejections(shared, &outcome.rejections);
                let now = crate::clock::now_ms();
                for item in pending.iter().filter(|i| i.seq <= outcome.last_seq) {
                    let latency = (now - item.envelope.at).max(0) as f64 / 1000.0;
                    shared.metrics.apply_latency.observe(latency);
                }
                debug!(
                    key = state_key,
                    applied = outcome.applied,
                    rejected = outcome.rejections.len(),
                    "written"
                );
                // Clients first: the write made every effect durable (its outbox is republished
                // if this worker dies before the records and commands below are stored), so
                // the sender need not wait for those JetStream acknowledgements.
                publish_events::<D>(shared, tenant, key, stored.applied, &stored.outbox).await?;
                publish_replies(shared, outcome.replies).await;
                publish_commands(shared, &stored.outbox).await?;
                pending.retain(|i| i.seq > outcome.last_seq);
                if outcome.remove {
                    // Written (with its outbox) and published, its records stored now rather
                    // than with the batch's: once the key goes, no outbox is left to publish
                    // them again. A crash before the removal leaves the state, and the command
                    // comes back to remove it.
                    store_records::<D>(shared, &stored.outbox.records).await?;
                    let revision = shared.state.remove(state_key, revision).await?;
                    removed_through = outcome.last_seq;
                    loaded = Loaded {
                        revision,
                        stored: None,
                    };
                    continue;
                }
                super::follow_up::start(
                    shared,
                    tenant,
                    key,
                    previous_follow_up.as_deref(),
                    &stored,
                );
                if pending.is_empty() {
                    let records = stored.outbox.records.clone();
                    let loaded = Loaded {
                        revision,
                        stored: Some(stored),
                    };
                    return Ok(KeyDone {
                        loaded: Some(loaded),
                        records,
                    });
                }
                // The batch was cut: the next write replaces this outbox, so its records are
                // stored first.
                store_records::<D>(shared, &stored.outbox.records).await?;
                loaded = Loaded {
                    revision,
                    stored: Some(stored),
                };
            }
            Written::Conflict => {
                shared.metrics.conflicts.get_or_create(&shared.label).inc();
                conflicts += 1;
                if conflicts >= MAX_ATTEMPTS {
                    return Err(RuntimeError::Contended(state_key.to_string()));
                }
                loaded = match read_or_park(shared, partition, state_key, &pending).await? {
                    Read::State(loaded) => loaded,
                    Read::Parked => return Ok(parked_done()),
                };
            }
        }
    }
}

/// The commands `parked` names (by sequence), ready to park.
fn parked_items(pending: &[&Item], parked: &[(u64, Reason, String)]) -> Vec<Parked> {
    parked
        .iter()
        .filter_map(|(seq, reason, why)| {
            let item = pending.iter().find(|i| i.seq == *seq)?;
            Some(item.parked(*reason, why.clone()))
        })
        .collect()
}

/// Waits for parts sent before a state that is now written. Should one not be stored (the
/// state after it was), sends them again a few times: the state names them, and this worker
/// holds the only copy.
async fn parts_stored<D: Domain>(
    shared: &Shared<D>,
    pending: super::state::PendingParts,
    parts: &[(String, Bytes)],
) -> Result<(), RuntimeError> {
    let mut outcome = pending.stored().await;
    for _ in 0..3 {
        let Err(e) = &outcome else { break };
        warn!(error = %e, "state parts not stored; sending them again");
        tokio::time::sleep(Duration::from_millis(100)).await;
        outcome = match shared.state.send_parts(parts).await {
            Ok(pending) => pending.stored().await,
            Err(e) => Err(e),
        };
    }
    outcome
}

/// Reads a key's state with the parts it keeps apart (see `Domain::missing_parts`).
async fn load_state<D: Domain>(
    shared: &Shared<D>,
    state_key: &str,
) -> Result<Loaded<D::State>, RuntimeError> {
    let mut loaded = shared.state.load::<D::State>(state_key).await?;
    if let Some(stored) = loaded.stored.as_mut() {
        let names = shared.domain.missing_parts(&stored.state);
        let parts = futures::future::join_all(names.iter().map(|name| {
            let key = resource::part_key(state_key, name);
            async move { shared.state.get_part(&key).await }
        }))
        .await;
        for (name, part) in names.iter().zip(parts) {
            if let Some(json) = part? {
                shared.domain.attach_part(&mut stored.state, name, &json);
            }
        }
    }
    Ok(loaded)
}

/// The bounds of `D`'s writes on this worker's connection (its server's `max_payload`, as the
/// server announced it).
fn limits_of<D: Domain>(shared: &Shared<D>) -> Limits {
    Limits::new(shared.domain.max_state_bytes(), shared.client.max_payload())
}
