//! The pull loop of one partition of one domain's input stream, owned by this worker (started
//! by the runtime's membership loop): pulls its commands and hands each batch to
//! [`super::batch`]; on a take-over, first applies what the previous holder was delivered and
//! did not acknowledge; clears pins no puller holds; lets the partition go when told to.
//!
//! How a batch is applied, by phase: [`super::plan`] (trusted as delivered, or rebuilt from the
//! stream by [`super::scan`]), [`super::apply`] (pure, in memory), [`super::key`] (the key's
//! compare-and-set write within its byte bounds), [`super::outbox`] (events, replies, commands
//! and records published), [`super::acks`] (acknowledged one batch late, so that the input
//! stream keeps its newest commands, or delivered again after a growing delay). A command
//! that can never be applied is parked ([`super::park`]).

use super::acks::Acks;
use super::batch::{self, PartitionState};
use super::shared::Shared;
use crate::domain::Domain;
use crate::error::RuntimeError;
use async_nats::jetstream;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tablewire_nats::{resource, subject};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// How long a partition worker waits for its consumer's info. While the consumer has no leader
/// (a NATS node replaced) no answer comes; a request sent then would wait out the client's 5 s
/// request timeout even after a new leader is elected a moment later.
const CONSUMER_LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait before a partition worker asks for its consumer or pulls again.
const MAX_PULL_BACKOFF: Duration = Duration::from_secs(1);

/// Runs one partition until `stop` says so, then hands it over. With `take_over` (its previous
/// holder is gone), first clears the pin that holder may still have and applies what it had been
/// delivered and not acknowledged ([`take_over`]).
pub(crate) async fn run<D: Domain>(
    shared: Arc<Shared<D>>,
    partition: u16,
    take_over: bool,
    mut stop: watch::Receiver<bool>,
) {
    let name = resource::partition_consumer(D::NAME, partition);
    let mut state = PartitionState::<D::State>::new();
    let mut received_any = false;
    let mut backoff = Duration::from_millis(100);
    let mut taking_over = take_over;
    'pull: while !*stop.borrow() {
        // Held acknowledgements go before anything else is asked of the partition.
        state.release_held().await;
        let lookup = shared.stream.get_consumer(&name);
        let consumer: jetstream::consumer::PullConsumer =
            match tokio::time::timeout(CONSUMER_LOOKUP_TIMEOUT, lookup).await {
                Ok(Ok(c)) => c,
                failed => {
                    let error = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer in {CONSUMER_LOOKUP_TIMEOUT:?}"),
                    };
                    warn!(consumer = %name, %error, "partition consumer unavailable; retrying");
                    if wait_or_stop(&mut stop, backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(MAX_PULL_BACKOFF);
                    continue;
                }
            };
        let pin_timeout = consumer.cached_info().config.priority_timeout;
        // As the consumer was provisioned (`Topology::ack_by_batch`).
        let acks = match consumer.cached_info().config.ack_policy {
            jetstream::consumer::AckPolicy::All => Acks::Batch,
            _ => Acks::PerMessage,
        };
        if taking_over {
            taking_over = false;
            self::take_over(&shared, partition, &consumer, &mut state, acks).await;
        }
        let expires = (pin_timeout / 3).clamp(Duration::from_millis(600), Duration::from_secs(10));
        let messages = consumer
            .stream()
            .group(resource::WORKER_GROUP)
            .max_messages_per_batch(shared.batch_size)
            .expires(expires)
            .heartbeat(expires / 3)
            .messages()
            .await;
        let messages = match messages {
            Ok(m) => m,
            Err(e) => {
                warn!(consumer = %name, error = %e, "cannot pull; retrying");
                if wait_or_stop(&mut stop, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(MAX_PULL_BACKOFF);
                continue;
            }
        };
        debug!(consumer = %name, "pulling");
        backoff = Duration::from_millis(100);
        // Whatever happened before this pull stream, nothing about it is trusted yet.
        state.forget_deliveries();
        let mut chunks = messages.ready_chunks(shared.batch_size);
        let mut stale_pin = StalePinCheck::new(pin_timeout);
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => break 'pull,
                _ = stale_pin.due() => {
                    stale_pin.checked();
                    clear_stale_pin(&shared, &name).await;
                }
                chunk = chunks.next() => {
                    stale_pin.received();
                    let Some(results) = chunk else { continue 'pull };
                    let mut batch = Vec::with_capacity(results.len());
                    let mut broken = false;
                    for result in results {
                        match result {
                            Ok(message) => batch.push(message),
                            Err(e) => {
                                debug!(consumer = %name, error = %e, "pull stream error");
                                broken = true;
                            }
                        }
                    }
                    if !batch.is_empty() {
                        received_any = true;
                        batch::process(&shared, partition, &mut state, acks, batch, 0).await;
                    }
                    if broken {
                        continue 'pull;
                    }
                }
                _ = state.held_due() => state.release_held().await,
            }
        }
    }
    state.release_held().await;
    if received_any {
        // Hand the partition to its next owner now rather than after the pin times out.
        if let Err(e) = shared
            .stream
            .unpin_consumer(&name, resource::WORKER_GROUP)
            .await
        {
            debug!(consumer = %name, error = %e, "unpin failed; the pin will time out");
        }
    }
    info!(consumer = %name, "released partition");
}

/// Takes the partition over from a holder that is gone. Clears the pin it may still hold (the
/// server would keep the partition for it until the pin times out), then applies at once what
/// it had been delivered and not acknowledged, instead of when those commands are delivered
/// again after the ack wait or a later command of the partition rebuilds them: they are read
/// from the stream like a rebuilt batch's, and acknowledged when they come back (then skipped
/// as applied). A failure here only loses the head start.
async fn take_over<D: Domain>(
    shared: &Shared<D>,
    partition: u16,
    consumer: &jetstream::consumer::PullConsumer,
    state: &mut PartitionState<D::State>,
    acks: Acks,
) {
    let info = consumer.cached_info();
    if let Err(e) = shared
        .stream
        .unpin_consumer(&info.name, resource::WORKER_GROUP)
        .await
    {
        warn!(consumer = %info.name, error = %e, "cannot clear the pin; the partition waits for it to time out");
    }
    if info.num_ack_pending == 0 {
        return;
    }
    let through = match last_unacknowledged(shared, partition, info).await {
        Ok(Some(seq)) => seq,
        Ok(None) => return,
        Err(e) => {
            warn!(consumer = %info.name, error = %e, "cannot read what the previous holder was delivered; it comes back after the ack wait");
            return;
        }
    };
    info!(
        consumer = %info.name,
        through,
        unacknowledged = info.num_ack_pending,
        "applying what the previous holder was delivered"
    );
    batch::process(shared, partition, state, acks, Vec::new(), through).await;
}

/// The highest stream sequence of the partition's commands that were delivered and are not
/// acknowledged yet (`None`: there are none), read from the stream's leader. Usually the last
/// delivery itself; otherwise the stream, which keeps only commands not acknowledged yet, is
/// walked from the ack floor, one read per command left.
async fn last_unacknowledged<D: Domain>(
    shared: &Shared<D>,
    partition: u16,
    info: &jetstream::consumer::Info,
) -> Result<Option<u64>, RuntimeError> {
    use jetstream::stream::LastRawMessageErrorKind::NoMessageFound;
    let delivered = info.delivered.stream_sequence;
    let floor = info.ack_floor.stream_sequence;
    if delivered <= floor {
        return Ok(None);
    }
    match shared.stream.get_raw_message(delivered).await {
        Ok(message) if subject::partition_of_stored(&message.subject) == Some(partition) => {
            return Ok(Some(delivered));
        }
        Ok(_) => {}
        Err(e) if e.kind() == NoMessageFound => {}
        Err(e) => return Err(RuntimeError::Nats(format!("read the last delivery: {e}"))),
    }
    let filter = subject::input_partition_filter(D::NAME, partition);
    let mut last = None;
    let mut next = floor + 1;
    // Acknowledged commands may linger a moment before the stream removes them.
    for _ in 0..info.num_ack_pending.saturating_add(64) {
        match shared
            .stream
            .get_first_raw_message_by_subject(&filter, next)
            .await
        {
            Ok(message) if message.sequence <= delivered => {
                last = Some(message.sequence);
                next = message.sequence + 1;
            }
            Ok(_) => break,
            Err(e) if e.kind() == NoMessageFound => break,
            Err(e) => return Err(RuntimeError::Nats(format!("read a delivered command: {e}"))),
        }
    }
    Ok(last)
}

/// When a pull that has received nothing yet looks whether the partition is pinned to a client
/// that does not pull it: after 1 s, then each time twice as long, for as long as a pin could
/// last. nats-server can pin a pull request whose puller has already let go of the partition
/// (it picks the new pin before it checks that the request still has a subscriber), and a
/// worker that let go without having received anything has no pin to clear; the partition
/// would wait for the pin to time out.
struct StalePinCheck {
    started: tokio::time::Instant,
    next: Option<Duration>,
    pin_timeout: Duration,
}

/// The first [`StalePinCheck`], after a pull starts.
const STALE_PIN_FIRST_CHECK: Duration = Duration::from_secs(1);

impl StalePinCheck {
    fn new(pin_timeout: Duration) -> Self {
        StalePinCheck {
            started: tokio::time::Instant::now(),
            next: (STALE_PIN_FIRST_CHECK < pin_timeout).then_some(STALE_PIN_FIRST_CHECK),
            pin_timeout,
        }
    }

    /// Resolves when the next check is due; never once something was received.
    async fn due(&self) {
        match self.next {
            Some(after) => tokio::time::sleep_until(self.started + after).await,
            None => std::future::pending().await,
        }
    }

    fn checked(&mut self) {
        self.next = self
            .next
            .map(|after| after * 2)
            .filter(|after| *after < self.pin_timeout);
    }

    fn received(&mut self) {
        self.next = None;
    }
}

/// Clears the partition's pin if commands are waiting while a client holds it: this worker has
/// received nothing since it started pulling, so the pin is not its own.
async fn clear_stale_pin<D: Domain>(shared: &Shared<D>, name: &str) {
    let Ok(info) = shared.stream.consumer_info(name).await else {
        return;
    };
    let pinned = info
        .priority_groups
        .iter()
        .any(|group| group.pinned_client_id.is_some());
    if pinned && info.num_pending > 0 {
        info!(consumer = %name, waiting = info.num_pending, "commands wait for a client that does not pull; clearing the pin");
        if let Err(e) = shared
            .stream
            .unpin_consumer(name, resource::WORKER_GROUP)
            .await
        {
            debug!(consumer = %name, error = %e, "unpin failed; the pin will time out");
        }
    }
}

/// Sleeps for `delay` unless stopped first; true when stopped.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    tokio::select! {
        _ = stop.changed() => true,
        _ = tokio::time::sleep(delay) => *stop.borrow(),
    }
}
