//! One partition of one domain's input stream, owned by this worker: pulls its commands,
//! applies them per key in stream order, writes each key's state once per batch by
//! compare-and-set, publishes what the write produced, then acknowledges.
//!
//! Order without trusting delivery: a batch is *trusted* while the consumer sequences this
//! worker receives are contiguous and were preceded by nothing unacknowledged. Otherwise (at
//! start, after a takeover, a redelivery or a failure) the batch is rebuilt from the stream:
//! the input streams keep only unacknowledged commands (interest retention), so reading the
//! partition's subject up to the batch's highest sequence yields, in order, every command not
//! yet acknowledged, including those delivered to a worker that died. Together with the
//! `applied` sequence in each key's state this keeps per-key order and exactly-once effect
//! whatever the delivery did.
//!
//! Bounded: a key's write is measured once (the bytes it encodes anyway); one past its
//! domain's state bound or the server's `max_payload` is redone command by command
//! ([`super::apply::bounded`]), refusing, trimming or cutting the batch into several writes.
//! A command that can never be applied is parked ([`super::park`]) and acknowledged; one that
//! failed for a passing reason (NATS, a timeout, contention) is delivered again after a
//! growing delay. A panic while processing a batch leaves the partition running: the batch
//! comes back.

use super::apply::{self, Limits};
use super::park::{self, Parked, Reason};
use super::state::{Loaded, PartWrite, Written};
use super::{RuntimeError, Shared};
use crate::domain::Domain;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tablewire_nats::{resource, subject, token};
use tablewire_schemas::stored::{Outbox, Record, Stored};
use tablewire_schemas::{Envelope, Frame, Origin};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

/// How often a key's write is retried after losing a compare-and-set.
const MAX_ATTEMPTS: usize = 8;
/// How long a command that failed for a passing reason waits before it is delivered again the
/// first time; each further delivery waits twice as long, up to [`MAX_RETRY_DELAY`].
const RETRY_DELAY: Duration = Duration::from_millis(250);
/// The longest wait before a failed command is delivered again.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(8);
/// Most cached key states per partition before the cache is emptied.
const MAX_CACHED: usize = 20_000;
/// The longest message id an envelope may carry.
const MAX_MESSAGE_ID: usize = 4096;

/// One command to apply: from a delivery (with the message to acknowledge) or read from the
/// stream while rebuilding a batch.
pub(crate) struct Item {
    pub seq: u64,
    pub state_key: String,
    pub envelope: Envelope,
    /// The subject the input stream stored it under.
    pub subject: String,
    /// The message as stored (what parking it keeps).
    pub payload: Bytes,
    pub message: Option<jetstream::Message>,
}

impl Item {
    fn parked(&self, reason: Reason, detail: String) -> Parked {
        Parked {
            seq: self.seq,
            subject: self.subject.clone(),
            payload: self.payload.clone(),
            reason,
            detail,
        }
    }
}

/// A stored command that is no command of this domain's: parked, never applied.
struct Unreadable {
    reason: Reason,
    detail: String,
    /// The envelope, when it read as one (to answer its sender).
    envelope: Option<Box<Envelope>>,
}

/// What this worker keeps for a partition between batches.
struct PartitionState<S> {
    cache: HashMap<String, Loaded<S>>,
    /// The consumer sequence the next delivery must have for the batch to be trusted.
    expected_next: Option<u64>,
}

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
    let mut state = PartitionState::<D::State> {
        cache: HashMap::new(),
        expected_next: None,
    };
    let mut received_any = false;
    let mut backoff = Duration::from_millis(100);
    let mut taking_over = take_over;
    'pull: while !*stop.borrow() {
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
        state.expected_next = None;
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
                        process_guarded(&shared, partition, &mut state, acks, batch, 0).await;
                    }
                    if broken {
                        continue 'pull;
                    }
                }
            }
        }
    }
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

/// [`process_batch`], with a panic caught: not applied, not acknowledged, the batch comes back
/// (rebuilt from the stream) and the partition stays owned.
async fn process_guarded<D: Domain>(
    shared: &Shared<D>,
    partition: u16,
    state: &mut PartitionState<D::State>,
    acks: Acks,
    messages: Vec<jetstream::Message>,
    scan_through: u64,
) {
    let processed = AssertUnwindSafe(process_batch(
        shared,
        partition,
        state,
        acks,
        messages,
        scan_through,
    ))
    .catch_unwind()
    .await;
    if let Err(panic) = processed {
        error!(
            consumer = %resource::partition_consumer(D::NAME, partition),
            panic = %apply::panic_message(panic.as_ref()),
            "a batch panicked; the partition goes on and the batch comes back"
        );
        shared
            .metrics
            .partition_panics
            .get_or_create(&shared.label)
            .inc();
        state.cache.clear();
        state.expected_next = None;
    }
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
    process_guarded(shared, partition, state, acks, Vec::new(), through).await;
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

/// How a partition's commands are acknowledged.
#[derive(Clone, Copy, PartialEq)]
enum Acks {
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

/// Applies a batch of deliveries; with `scan_through` above them, also every command of the
/// partition up to that stream sequence, read from the stream (a take-over's catch-up, which
/// brings no deliveries).
async fn process_batch<D: Domain>(
    shared: &Shared<D>,
    partition: u16,
    pstate: &mut PartitionState<D::State>,
    acks: Acks,
    messages: Vec<jetstream::Message>,
    scan_through: u64,
) {
    if !messages.is_empty() {
        shared.metrics.batch_size.observe(messages.len() as f64);
    }
    let mut trusted = pstate.expected_next.is_some() && scan_through == 0;
    let mut items = Vec::with_capacity(messages.len());
    let mut max_seq = scan_through;
    let mut last_consumer_seq = None;
    // Deliveries that are no command of this domain: parked, then acknowledged.
    let mut unreadable = Vec::new();
    for message in messages {
        let (seq, consumer_seq, delivered) = match message.info() {
            Ok(info) => (info.stream_sequence, info.consumer_sequence, info.delivered),
            Err(e) => {
                warn!(error = %e, subject = %message.subject, "message without JetStream metadata");
                continue;
            }
        };
        if pstate.expected_next != Some(consumer_seq) || delivered > 1 {
            trusted = false;
        }
        pstate.expected_next = Some(consumer_seq + 1);
        last_consumer_seq = Some(consumer_seq);
        max_seq = max_seq.max(seq);
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
                pstate.expected_next = None;
            }
        }
    }
    if !trusted {
        shared
            .metrics
            .untrusted_batches
            .get_or_create(&shared.label)
            .inc();
        match scan_until_caught_up::<D>(shared, partition, max_seq, acks).await {
            Ok(scan) => foreign = merge_scan(&mut items, scan),
            Err(e) => {
                warn!(partition, error = %e, "cannot read the partition to rebuild a batch; retrying");
                nak_all(shared, items.iter().filter_map(|i| i.message.as_ref())).await;
                pstate.expected_next = None;
                return;
            }
        }
        debug!(partition, foreign, "rebuilt batch from the stream");
    }

    // Group by key, each group in stream order.
    items.sort_by_key(|i| i.seq);
    let mut groups: BTreeMap<String, Vec<Item>> = BTreeMap::new();
    for item in items {
        groups.entry(item.state_key.clone()).or_default().push(item);
    }
    if pstate.cache.len() > MAX_CACHED {
        pstate.cache.clear();
    }
    let work: Vec<_> = groups
        .into_iter()
        .map(|(key, items)| {
            let cached = if trusted {
                pstate.cache.remove(&key)
            } else {
                None
            };
            (key, items, cached)
        })
        .collect();
    let work = work.into_iter().map(|(key, items, cached)| async move {
        let result = apply_key(shared, partition, &key, &items, trusted, cached).await;
        (key, items, result)
    });
    let mut all_ok = true;
    let mut records = Vec::new();
    // Commands of written keys, acknowledged (per message) once the batch's records are stored.
    let mut written = Vec::new();
    let mut done = futures::stream::iter(work).buffer_unordered(shared.key_concurrency);
    while let Some((key, items, result)) = done.next().await {
        match result {
            Ok(key_done) => {
                records.extend(key_done.records);
                written.extend(items.into_iter().filter_map(|i| i.message));
                if let Some(loaded) = key_done.loaded {
                    pstate.cache.insert(key, loaded);
                }
            }
            Err(e) => {
                all_ok = false;
                first_failed = items.iter().map(|i| i.seq).fold(first_failed, u64::min);
                warn!(key = %key, error = %e, "could not apply; will retry");
                nak_all(shared, items.iter().filter_map(|i| i.message.as_ref())).await;
            }
        }
    }
    drop(done);
    // Every write's records, stored before any of its commands is acknowledged. Should that
    // fail, the commands come back and their keys' outboxes are published again.
    if let Err(e) = store_records::<D>(shared, &records).await {
        warn!(partition, error = %e, "could not store the batch's records; will retry");
        nak_all(shared, written.iter()).await;
        pstate.expected_next = None;
        return;
    }
    match acks {
        Acks::PerMessage => {
            for message in &written {
                if let Err(e) = message.ack().await {
                    debug!(error = %e, "ack failed; the command will come back and be skipped");
                }
            }
        }
        Acks::Batch => {
            // Acknowledging a delivery acknowledges every command up to its stream sequence,
            // and every command up to the first failed key's was applied or parked: in a
            // trusted batch nothing else was outstanding, an untrusted one read them all from
            // the stream.
            let last = written
                .iter()
                .chain(&unreadable_done)
                .filter_map(|m| Some((m.info().ok()?.stream_sequence, m)))
                .filter(|(seq, _)| *seq < first_failed)
                .max_by_key(|(seq, _)| *seq);
            if let Some((_, message)) = last
                && let Err(e) = message.ack().await
            {
                debug!(error = %e, "ack failed; the batch will come back and be skipped");
            }
        }
    }
    if !all_ok || first_failed != u64::MAX {
        pstate.expected_next = None;
    } else if !trusted {
        // Trust the next batch only if nothing outside this one was waiting.
        pstate.expected_next = if foreign == 0 {
            last_consumer_seq.map(|c| c + 1)
        } else {
            None
        };
    }
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
async fn nak<D: Domain>(shared: &Shared<D>, message: &jetstream::Message) {
    let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
    shared.metrics.retries.get_or_create(&shared.label).inc();
    let _ = message
        .ack_with(AckKind::Nak(Some(retry_delay(delivered))))
        .await;
}

async fn nak_all<'a, D: Domain>(
    shared: &Shared<D>,
    messages: impl Iterator<Item = &'a jetstream::Message>,
) {
    for message in messages {
        nak(shared, message).await;
    }
}

/// Checks what of an envelope can reach a subject, a header or a KV key.
fn check_ids(envelope: &Envelope) -> Result<(), String> {
    token::validate_id(&envelope.tenant).map_err(|e| format!("tenant: {e}"))?;
    token::validate_id(&envelope.key).map_err(|e| format!("key: {e}"))?;
    if envelope.id.is_empty()
        || envelope.id.len() > MAX_MESSAGE_ID
        || envelope.id.chars().any(char::is_control)
    {
        return Err(format!(
            "message id: not 1 to {MAX_MESSAGE_ID} bytes without control characters"
        ));
    }
    Ok(())
}

fn parse_item<D: Domain>(
    stored_subject: &str,
    seq: u64,
    payload: &Bytes,
) -> Result<Item, Unreadable> {
    let unreadable = |detail: String, envelope: Option<Envelope>| Unreadable {
        reason: Reason::EnvelopeUnreadable,
        detail,
        envelope: envelope.map(Box::new),
    };
    let envelope: Envelope = serde_json::from_slice(payload)
        .map_err(|e| unreadable(format!("not an envelope: {e}"), None))?;
    if envelope.domain != D::NAME {
        let detail = format!("envelope for domain {} in {}", envelope.domain, D::NAME);
        return Err(unreadable(detail, Some(envelope)));
    }
    if let Err(detail) = check_ids(&envelope) {
        return Err(Unreadable {
            reason: Reason::InvalidId,
            detail,
            envelope: Some(Box::new(envelope)),
        });
    }
    // The subject decides the partition; the envelope must agree with it.
    let mut tokens = stored_subject.rsplit('.');
    let (key_token, tenant_token) = (tokens.next(), tokens.next());
    if key_token != Some(&*token::encode(&envelope.key))
        || tenant_token != Some(&*token::encode(&envelope.tenant))
    {
        let detail = "envelope tenant/key do not match its subject".to_string();
        return Err(unreadable(detail, Some(envelope)));
    }
    Ok(Item {
        seq,
        state_key: resource::state_key(&envelope.tenant, &envelope.key),
        envelope,
        subject: stored_subject.to_string(),
        payload: payload.clone(),
        message: None,
    })
}

/// What a scan of the partition read: its commands, and the highest stream sequence it saw
/// (at most the scan's bound).
struct Scan {
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
async fn scan_until_caught_up<D: Domain>(
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
fn merge_scan(items: &mut Vec<Item>, scan: Scan) -> usize {
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

/// A key's commands applied and written.
struct KeyDone<S> {
    /// The key's state as last written or read, for the partition's cache (`None` when it does
    /// not read: its commands were parked).
    loaded: Option<Loaded<S>>,
    /// The records its last write produced, for the batch to store before it acknowledges the
    /// commands (a republished outbox's records, and those of a write the batch was cut after,
    /// are stored before the key is written again).
    records: Vec<Record<Frame>>,
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
async fn apply_key<D: Domain>(
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
            super::reply::publish_kept(shared, tenant, key, stored).await;
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
        let limits = Limits::of(shared);
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
        // Kept with the write: a worker taking over sends them again (see `reply`).
        stored.outbox.replies = super::reply::keep(&outcome.replies);
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
            Some(shared.state.send_parts(&parts, PartWrite::Create).await?)
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
                let now = super::now_ms();
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
                super::reply::publish_kept(shared, tenant, key, &stored).await;
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
/// state after it was, or a worker that lost the compare-and-set to this one stored its own
/// part under the same key first), sends them again a few times, replacing what is there: the
/// state names them, and this worker holds the only copy.
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
        outcome = match shared.state.send_parts(parts, PartWrite::Replace).await {
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

/// Fans a write's events out on core NATS (edges drop repeated sequence numbers), then its
/// notices to other keys' subscribers (placed by `applied`, the write's last command, so edges
/// drop a notice published again).
async fn publish_events<D: Domain>(
    shared: &Shared<D>,
    tenant: &str,
    key: &str,
    applied: u64,
    outbox: &Outbox,
) -> Result<(), RuntimeError> {
    if !outbox.events.is_empty() {
        let subject = subject::output(D::NAME, tenant, key);
        for event in &outbox.events {
            let mut headers = HeaderMap::new();
            headers.insert(subject::header::SEQ, event.seq.to_string().as_str());
            let payload = Bytes::copy_from_slice(event.frame.get().as_bytes());
            shared
                .client
                .publish_with_headers(subject.clone(), headers, payload)
                .await
                .map_err(|e| RuntimeError::Nats(format!("publish event: {e}")))?;
        }
        shared
            .metrics
            .events
            .get_or_create(&shared.label)
            .inc_by(outbox.events.len() as u64);
    }
    for (index, notice) in outbox.notices.iter().enumerate() {
        let payload = Bytes::copy_from_slice(notice.frame.get().as_bytes());
        let mut headers = HeaderMap::new();
        let position = subject::header::notice_position(D::NAME, tenant, key, applied, index);
        // Tenant and key were checked when the command was read; a header never panics here.
        let Ok(position) = position.parse::<async_nats::HeaderValue>() else {
            warn!(%position, "a notice position that is no header value; notice dropped");
            continue;
        };
        headers.insert(subject::header::NOTICE, position);
        shared
            .client
            .publish_with_headers(
                subject::output(notice.domain, &notice.tenant, &notice.key),
                headers,
                payload,
            )
            .await
            .map_err(|e| RuntimeError::Nats(format!("publish notice: {e}")))?;
    }
    Ok(())
}

/// Most bytes of records in one message of the records stream (nats-server's default limit for
/// a message is 1 MiB).
const MAX_RECORDS_MESSAGE: usize = 256 * 1024;

/// Records grouped by tenant and kind, in the order each group first appears and each group in
/// the order given, repeats (a republished outbox) left out; a group is cut where it would
/// pass [`MAX_RECORDS_MESSAGE`]. One message of the records stream per group (see
/// [`Record::parse_message`]).
fn group_records(records: &[Record<Frame>]) -> Vec<Vec<&Record<Frame>>> {
    let mut seen = std::collections::HashSet::new();
    // Per group: its records and their size so far.
    let mut groups: Vec<(Vec<&Record<Frame>>, usize)> = Vec::new();
    let mut open: HashMap<(&str, &str), usize> = HashMap::new();
    for record in records {
        if !seen.insert(record.id.as_str()) {
            continue;
        }
        let size = record.data.get().len() + record.id.len() + record.kind.len() + 64;
        let slot = (record.tenant.as_str(), record.kind.as_str());
        match open.get(&slot).copied() {
            Some(g) if groups[g].1 + size <= MAX_RECORDS_MESSAGE => {
                groups[g].0.push(record);
                groups[g].1 += size;
            }
            _ => {
                open.insert(slot, groups.len());
                groups.push((vec![record], size));
            }
        }
    }
    groups.into_iter().map(|(group, _)| group).collect()
}

/// The JetStream message id and payload of one group of records.
fn records_message(group: &[&Record<Frame>]) -> (String, Bytes) {
    match group {
        [record] => (
            record.id.clone(),
            Bytes::from(serde_json::to_vec(record).unwrap_or_default()),
        ),
        _ => (
            format!("{}+{}", group[0].id, group.len()),
            Bytes::from(serde_json::to_vec(group).unwrap_or_default()),
        ),
    }
}

/// Stores records in the records stream, one message per tenant and kind (a batch's scans or
/// orders are one message, not one each), deduplicated by message id, and waits until all are
/// stored.
async fn store_records<D: Domain>(
    shared: &Shared<D>,
    records: &[Record<Frame>],
) -> Result<(), RuntimeError> {
    let messages = group_records(records)
        .into_iter()
        .map(|group| {
            let (id, payload) = records_message(&group);
            let subject = subject::record(D::NAME, &group[0].tenant, &group[0].kind);
            (subject, id, payload)
        })
        .collect();
    store_all(shared, messages, "record").await
}

/// Stores a write's emitted commands in their input streams (deduplicated by their ids) and
/// waits until all are stored.
async fn publish_commands<D: Domain>(
    shared: &Shared<D>,
    outbox: &Outbox,
) -> Result<(), RuntimeError> {
    let messages = outbox
        .commands
        .iter()
        .map(|emitted| {
            let envelope = Envelope {
                tenant: emitted.tenant.clone(),
                domain: emitted.domain,
                key: emitted.key.clone(),
                id: emitted.id.clone(),
                // Not from a client: nobody to answer.
                origin: tablewire_schemas::Origin {
                    edge: String::new(),
                    conn: None,
                    request: None,
                },
                claims: None,
                at: emitted.at,
                command: emitted.command.raw().to_owned(),
            };
            let payload = Bytes::from(serde_json::to_vec(&envelope).unwrap_or_default());
            let subject = subject::input(emitted.domain, &emitted.tenant, &emitted.key);
            (subject, emitted.id.clone(), payload)
        })
        .collect();
    store_all(shared, messages, "command").await
}

/// Publishes `(subject, message id, payload)` messages to JetStream, each deduplicated by its
/// `Nats-Msg-Id`, all before waiting, then waits until every one is stored; `what` names them
/// in errors.
async fn store_all<D: Domain>(
    shared: &Shared<D>,
    messages: Vec<(String, String, Bytes)>,
    what: &str,
) -> Result<(), RuntimeError> {
    let mut acks = Vec::with_capacity(messages.len());
    for (subject, id, payload) in messages {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
        let ack = shared
            .js
            .publish_with_headers(subject, headers, payload)
            .await
            .map_err(|e| RuntimeError::Nats(format!("publish {what}: {e}")))?;
        acks.push(ack);
    }
    for ack in acks {
        ack.await
            .map_err(|e| RuntimeError::Nats(format!("{what} not stored: {e}")))?;
    }
    Ok(())
}

async fn publish_replies<D: Domain>(shared: &Shared<D>, replies: Vec<(Origin, Frame)>) {
    // Commands emitted by other handlers have no edge: nobody to answer. An origin whose ids
    // would break a header is not answered either.
    for (origin, frame) in replies
        .into_iter()
        .filter(|(o, _)| !o.edge.is_empty() && park::answerable(o))
    {
        let mut headers = HeaderMap::new();
        if let Some(conn) = origin.conn {
            headers.insert(subject::header::CONN, conn.to_string().as_str());
        }
        if let Some(request) = &origin.request {
            headers.insert(subject::header::REQUEST, request.as_str());
        }
        let payload = Bytes::copy_from_slice(frame.get().as_bytes());
        // A reply is best effort: its sender may be gone; state and events are what count.
        let _ = shared
            .client
            .publish_with_headers(subject::edge_inbox(&origin.edge), headers, payload)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &str, id: &str) -> Record<Frame> {
        tenant_record("t1", kind, id, "")
    }

    fn tenant_record(tenant: &str, kind: &str, id: &str, filler: &str) -> Record<Frame> {
        Record {
            kind: kind.to_string(),
            id: id.to_string(),
            tenant: tenant.to_string(),
            data: Frame::new(serde_json::json!({"id": id, "filler": filler})),
        }
    }

    fn ids<'a>(group: &[&'a Record<Frame>]) -> Vec<&'a str> {
        group.iter().map(|r| r.id.as_str()).collect()
    }

    #[test]
    fn records_travel_one_message_per_kind_and_read_back_in_order() {
        let records = vec![
            record("order", "pos:t1._:7:0"),
            record("status", "pos:t1._:8:0"),
            record("order", "pos:t1._:9:0"),
        ];
        let groups = group_records(&records);
        assert_eq!(groups.len(), 2);
        let (id, payload) = records_message(&groups[0]);
        assert_eq!(
            id, "pos:t1._:7:0+2",
            "the same records give the same message id"
        );
        let read = Record::parse_message(&payload).expect("an array of records");
        let ids: Vec<&str> = read.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["pos:t1._:7:0", "pos:t1._:9:0"]);
        assert_eq!(read[1].data["id"], "pos:t1._:9:0");
        // A kind with one record goes as it always did: the record alone, under its own id.
        let (id, payload) = records_message(&groups[1]);
        assert_eq!(id, "pos:t1._:8:0");
        assert!(payload.starts_with(b"{"));
        assert_eq!(Record::parse_message(&payload).map(|r| r.len()), Some(1));
    }

    #[test]
    fn a_batch_of_keys_groups_records_by_tenant_and_drops_repeats() {
        let records = vec![
            tenant_record("a", "scan", "device:a.d1:5:0", ""),
            tenant_record("b", "scan", "device:b.d2:6:0", ""),
            tenant_record("a", "scan", "device:a.d3:7:0", ""),
            // A republished outbox of a key written again in the same batch.
            tenant_record("a", "scan", "device:a.d1:5:0", ""),
        ];
        let groups = group_records(&records);
        let shape: Vec<(&str, Vec<&str>)> = groups
            .iter()
            .map(|g| (g[0].tenant.as_str(), ids(g)))
            .collect();
        assert_eq!(
            shape,
            [
                ("a", vec!["device:a.d1:5:0", "device:a.d3:7:0"]),
                ("b", vec!["device:b.d2:6:0"]),
            ]
        );
    }

    #[test]
    fn a_group_is_cut_before_it_outgrows_one_message() {
        let filler = "x".repeat(100 * 1024);
        let records: Vec<_> = (0..5)
            .map(|i| tenant_record("t1", "order", &format!("pos:t1._:{i}:0"), &filler))
            .collect();
        let groups = group_records(&records);
        let sizes: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        assert_eq!(
            sizes,
            [2, 2, 1],
            "100 KiB records, at most 256 KiB a message"
        );
        let all: Vec<&str> = groups.iter().flat_map(|g| ids(g)).collect();
        let expected: Vec<String> = (0..5).map(|i| format!("pos:t1._:{i}:0")).collect();
        assert_eq!(all, expected, "every record once, in order");
        for group in &groups {
            assert!(records_message(group).1.len() <= MAX_RECORDS_MESSAGE);
        }
    }
}
