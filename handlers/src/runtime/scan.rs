//! Reads a partition's commands back from its input stream, in order, to rebuild a batch that
//! cannot be trusted as delivered ([`super::plan`]); used by [`super::batch`].

use super::acks::Acks;
use super::item::{Item, parse_item};
use super::park::{self, Parked};
use super::shared::Shared;
use crate::domain::Domain;
use crate::error::RuntimeError;
use std::time::Duration;
use tablewire_nats::subject;
use tracing::debug;

/// What a scan of the partition read: its commands, and the highest stream sequence it saw
/// (at most the scan's bound).
pub(crate) struct Scan {
    items: Vec<Item>,
    reached: u64,
}

/// How often a scan is read again when the replica that answered was behind the batch.
const SCAN_ATTEMPTS: u32 = 5;

/// [`scan_partition`], read again (after a short wait) while the answer does not reach
/// `max_seq`, the batch's highest delivered sequence. A direct get may be answered by any
/// replica of the input stream, and one that has not stored the batch's last command yet has
/// not stored every command before it either; rebuilding from it would leave out a command that
/// was delivered to a worker that died, and once a later command of its key is applied that
/// one would be skipped as applied: lost. Fails (the batch is retried) when no answer reaches.
pub(crate) async fn scan_until_caught_up<D: Domain>(
    shared: &Shared<D>,
    partition: u16,
    max_seq: u64,
    acks: Acks,
) -> Result<Scan, RuntimeError> {
    let mut attempt = 0;
    loop {
        let scan = scan_partition::<D>(shared, partition, max_seq, acks).await?;
        if scan.reached >= max_seq {
            return Ok(scan);
        }
        attempt += 1;
        shared
            .metrics
            .lagging_scans
            .get_or_create(&shared.label)
            .inc();
        if attempt >= SCAN_ATTEMPTS {
            return Err(RuntimeError::Nats(format!(
                "the stream replica answering reads is behind (at {} of {max_seq})",
                scan.reached
            )));
        }
        debug!(
            partition,
            reached = scan.reached,
            max_seq,
            "scan answered by a lagging replica; reading again"
        );
        tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
    }
}

/// Adds the scanned commands the batch's deliveries did not bring to `items`; returns how many
/// (commands delivered to another worker before, or not yet delivered).
pub(crate) fn merge_scan(items: &mut Vec<Item>, scan: Scan) -> usize {
    let have: std::collections::HashSet<u64> = items.iter().map(|i| i.seq).collect();
    let before = items.len();
    items.extend(scan.items.into_iter().filter(|i| !have.contains(&i.seq)));
    items.len() - before
}

/// Every command still in the stream for `partition` up to `max_seq`, in order. Acknowledging
/// by batch, stored messages that are no command of this domain are parked on the way (again,
/// if they were delivered and parked already: parking is deduplicated), so that the batch's
/// acknowledgement never passes over one unparked; per command, each is parked when it is
/// delivered.
async fn scan_partition<D: Domain>(
    shared: &Shared<D>,
    partition: u16,
    max_seq: u64,
    acks: Acks,
) -> Result<Scan, RuntimeError> {
    let filter = subject::input_partition_filter(D::NAME, partition);
    let mut items = Vec::new();
    let mut unreadable = Vec::new();
    let mut reached = 0;
    let mut next = 1;
    'scan: while next <= max_seq {
        let batch = super::direct::next_batch(shared, &filter, next, 256).await?;
        let Some(last) = batch.last().map(|m| m.seq) else {
            break;
        };
        for message in batch {
            if message.seq > max_seq {
                break 'scan;
            }
            reached = message.seq;
            match parse_item::<D>(&message.subject, message.seq, &message.payload) {
                Ok(item) => items.push(item),
                Err(why) if acks == Acks::PerMessage => {
                    debug!(seq = message.seq, why = %why.detail, "skipping unreadable command in scan");
                }
                Err(why) => unreadable.push(Parked {
                    seq: message.seq,
                    subject: message.subject,
                    payload: message.payload,
                    reason: why.reason,
                    detail: why.detail,
                }),
            }
        }
        next = last + 1;
    }
    park::park(shared, partition, &unreadable).await?;
    Ok(Scan { items, reached })
}
