//! How a partition's commands are acknowledged, and how one that failed for a passing reason
//! is handed back to be delivered again after a growing delay; used by [`super::batch`].

use super::shared::Shared;
use crate::domain::Domain;
use async_nats::jetstream::{self, AckKind};
use std::time::Duration;

/// How long a command that failed for a passing reason waits before it is delivered again the
/// first time; each further delivery waits twice as long, up to [`MAX_RETRY_DELAY`].
const RETRY_DELAY: Duration = Duration::from_millis(250);
/// The longest wait before a failed command is delivered again.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(8);

/// How a partition's commands are acknowledged.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Acks {
    /// `AckPolicy::All` (`Topology::ack_by_batch`): one acknowledgement, of the batch's last
    /// delivery, once every key of the batch is written and its records stored. With a failed
    /// key, of the last delivery before that key's first command (written commands after it
    /// come back and are skipped by their key's `applied` sequence), so a key failing for a
    /// passing reason holds back its partition until it is written (one that can never be
    /// applied is parked).
    Batch,
    /// `AckPolicy::Explicit`, the default: each command once its key is written and the
    /// batch's records stored.
    PerMessage,
}

/// How long a delivery that failed for a passing reason waits before it comes again: longer
/// with every delivery, so a key that keeps failing (NATS away) costs little while it does.
fn retry_delay(delivered: i64) -> Duration {
    let doublings = delivered.saturating_sub(1).clamp(0, 16) as u32;
    RETRY_DELAY
        .saturating_mul(1u32 << doublings)
        .min(MAX_RETRY_DELAY)
}

/// Hands a delivery back to be delivered again after [`retry_delay`].
pub(crate) async fn nak<D: Domain>(shared: &Shared<D>, message: &jetstream::Message) {
    let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
    shared.metrics.retries.get_or_create(&shared.label).inc();
    let _ = message
        .ack_with(AckKind::Nak(Some(retry_delay(delivered))))
        .await;
}

pub(crate) async fn nak_all<'a, D: Domain>(
    shared: &Shared<D>,
    messages: impl Iterator<Item = &'a jetstream::Message>,
) {
    for message in messages {
        nak(shared, message).await;
    }
}
