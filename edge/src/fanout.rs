//! Interest-based fan-out: the edge subscribes to a key's event subject when its first local
//! client joins and unsubscribes after the last leaves, and writes each event to those
//! clients. Every member first gets a snapshot (read from KV) and then exactly the events after
//! it, in order: events are held while the snapshot is read, repeats (by `Tw-Seq`) are
//! dropped, and a gap makes the member take a fresh snapshot. Members of one key waiting at
//! once share a read, one that started after each of them asked (read-your-writes).

use crate::metrics::Metrics;
use crate::ws::{Conn, frame};
use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tablewire_nats::subject;
use tablewire_schemas::{ErrorBody, ErrorCode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// What a snapshot gives: the per-key sequence it includes and the frame that carries it (an
/// empty frame when the endpoint only needs to know where to resume).
pub type SnapshotResult = Result<(u64, Bytes), ErrorBody>;
/// Reads a key's state and builds the endpoint's snapshot frame (`initial_state`, `sync`, …).
/// Every member of one subject must give the same snapshot (it depends on the key, not on the
/// connection): one read serves all the members waiting for it.
pub type Snapshot =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = SnapshotResult> + Send>> + Send + Sync>;

/// Most events held for one member while its snapshot is read.
const MAX_HELD: usize = 4096;
/// Most events written to clients in one go.
const MAX_BATCH: usize = 64;
/// How long a client may wait for its snapshot while the state store is unreachable.
const SNAPSHOT_PATIENCE: Duration = Duration::from_secs(15);

/// Waits for the next message on `subscriber`, then takes every one already here, up to `max`,
/// so that each client gets a burst in one write; one yield first lets the NATS reader hand over
/// the rest of a burst. `None` when the subscription has ended. Used by every fan-out loop.
pub(crate) async fn next_burst(
    subscriber: &mut async_nats::Subscriber,
    max: usize,
) -> Option<Vec<async_nats::Message>> {
    let first = subscriber.next().await?;
    tokio::task::yield_now().await;
    let mut burst = vec![first];
    while burst.len() < max {
        match subscriber.next().now_or_never() {
            Some(Some(message)) => burst.push(message),
            _ => break,
        }
    }
    Some(burst)
}

/// Subscribes to `subject` and waits until the server has the subscription, so that nothing
/// published afterwards can be missed; for at most `patience`. While NATS is unreachable the
/// client queues both and would wait for its return, leaving the caller's client with a socket
/// that never hears anything: past `patience` this answers `UNAVAILABLE` instead (the caller
/// closes with 1011). Every fan-out subscribes through this: topics, events feeds, devices.
pub(crate) async fn subscribe_confirmed(
    client: &async_nats::Client,
    subject: &str,
    patience: Duration,
) -> Result<async_nats::Subscriber, ErrorBody> {
    let confirmed = async {
        let subscriber = client
            .subscribe(subject.to_string())
            .await
            .map_err(|e| e.to_string())?;
        client.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(subscriber)
    };
    let error = match tokio::time::timeout(patience, confirmed).await {
        Ok(Ok(subscriber)) => return Ok(subscriber),
        Ok(Err(e)) => e,
        Err(_) => format!("no answer from NATS within {patience:?}"),
    };
    warn!(%subject, %error, "cannot subscribe");
    Err(ErrorBody::with_message(
        ErrorCode::Unavailable,
        "event bus unavailable",
    ))
}

/// An event as received: its sequence number and its encoded frame.
fn event(message: &async_nats::Message) -> (Option<u64>, Bytes) {
    let seq = message
        .headers
        .as_ref()
        .and_then(|h| h.get(subject::header::SEQ))
        .and_then(|v| v.as_str().parse::<u64>().ok());
    (seq, frame::text(&message.payload))
}

/// Frames laid end to end.
fn concat(events: &[(Option<u64>, Bytes)]) -> Bytes {
    if let [(_, only)] = events {
        return only.clone();
    }
    let mut out = BytesMut::with_capacity(events.iter().map(|e| e.1.len()).sum());
    for (_, frame) in events {
        out.extend_from_slice(frame);
    }
    out.freeze()
}

enum Phase {
    /// Waiting for a snapshot; events are held.
    Syncing(Vec<(Option<u64>, Bytes)>),
    /// Receiving events.
    Live,
}

struct Member {
    conn: Arc<Conn>,
    phase: Phase,
    last_seq: u64,
    snapshot: Snapshot,
}

/// A member waiting for a snapshot, and who to tell once it has one (or is gone).
type Waiter = (u64, oneshot::Sender<()>);

/// The snapshot reads of one topic. At most one runs at a time, and it serves every member
/// that asked before it started, never one that asked later: a write answered just before a
/// member asked may be missing from a read that started earlier (read-your-writes). Members
/// that ask while a read runs share the next one, so a burst of clients of one key costs two
/// reads, not one each.
#[derive(Default)]
struct Reads {
    /// A reader task is running.
    running: bool,
    /// Members asking for the next read.
    waiting: Vec<Waiter>,
}

struct Topic {
    subject: String,
    subscribed: tokio::sync::OnceCell<()>,
    members: Mutex<Vec<Member>>,
    reads: Mutex<Reads>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Topic {
    fn new(subject: String) -> Topic {
        Topic {
            subject,
            subscribed: tokio::sync::OnceCell::new(),
            members: Mutex::new(Vec::new()),
            reads: Mutex::new(Reads::default()),
            task: Mutex::new(None),
        }
    }

    fn members(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reads(&self) -> std::sync::MutexGuard<'_, Reads> {
        self.reads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The members asking for the next read, taken; `None` (and the reader stops) when none.
    fn next_batch(&self) -> Option<Vec<Waiter>> {
        let mut reads = self.reads();
        if reads.waiting.is_empty() {
            reads.running = false;
            return None;
        }
        Some(std::mem::take(&mut reads.waiting))
    }
}

/// The fan-out of one edge.
pub struct Fanout {
    client: async_nats::Client,
    /// How long a subscription may take to be confirmed.
    patience: Duration,
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    metrics: Metrics,
}

impl Fanout {
    /// A fan-out receiving through `client`, waiting at most `patience` for a subscription.
    pub fn new(client: async_nats::Client, metrics: Metrics, patience: Duration) -> Arc<Self> {
        Arc::new(Fanout {
            client,
            patience,
            topics: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    fn topics(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Topic>>> {
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many subjects this edge is subscribed to.
    pub fn subscriptions(&self) -> usize {
        self.topics().len()
    }

    /// [`join`](Self::join) for a connection that is useless without its events: when the
    /// event bus cannot be reached, the client gets `error` through `send_error` (each endpoint
    /// frames errors its own way) and the connection is closed with 1011 so it reconnects.
    pub async fn join_or_close(
        self: &Arc<Self>,
        subject: String,
        conn: &Arc<Conn>,
        snapshot: Snapshot,
        send_error: impl FnOnce(ErrorBody),
    ) {
        if let Err(error) = self.join(subject, conn, snapshot).await {
            send_error(error);
            conn.close(frame::close::SERVER_ERROR, "event bus unavailable");
        }
    }

    /// Adds `conn` to the clients of `subject`: subscribes if it is the first, sends the
    /// snapshot, then every later event.
    pub async fn join(
        self: &Arc<Self>,
        subject: String,
        conn: &Arc<Conn>,
        snapshot: Snapshot,
    ) -> Result<(), ErrorBody> {
        let topic = {
            let mut topics = self.topics();
            let topic = topics
                .entry(subject.clone())
                .or_insert_with(|| Arc::new(Topic::new(subject.clone())))
                .clone();
            topic.members().push(Member {
                conn: conn.clone(),
                phase: Phase::Syncing(Vec::new()),
                last_seq: 0,
                snapshot,
            });
            topic
        };
        let subscribed = topic
            .subscribed
            .get_or_try_init(|| self.subscribe(&topic))
            .await;
        if let Err(e) = subscribed {
            self.leave(&subject, conn.id);
            return Err(e);
        }
        self.resync(&topic, conn.id).await;
        Ok(())
    }

    async fn subscribe(self: &Arc<Self>, topic: &Arc<Topic>) -> Result<(), ErrorBody> {
        // The server has the subscription before the snapshot is read, so no event published
        // after the snapshot can be missed.
        let mut subscriber =
            subscribe_confirmed(&self.client, &topic.subject, self.patience).await?;
        let weak_topic = Arc::downgrade(topic);
        let weak_fanout = Arc::downgrade(self);
        let handle = tokio::spawn(async move {
            while let Some(burst) = next_burst(&mut subscriber, MAX_BATCH).await {
                let (Some(topic), Some(fanout)) = (weak_topic.upgrade(), weak_fanout.upgrade())
                else {
                    break;
                };
                let events: Vec<_> = burst.iter().map(event).collect();
                fanout.dispatch(&topic, &events);
            }
        });
        *topic.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(())
    }

    /// Delivers events (in order) to every member, each member getting one write.
    fn dispatch(self: &Arc<Self>, topic: &Arc<Topic>, events: &[(Option<u64>, Bytes)]) {
        self.metrics.fanout_events.inc_by(events.len() as u64);
        let Some(&(first_seq, _)) = events.first() else {
            return;
        };
        // The common case: consecutive sequence numbers, and members right before the first.
        let consecutive = events.windows(2).all(|w| match (w[0].0, w[1].0) {
            (Some(a), Some(b)) => b == a + 1,
            _ => false,
        });
        let last_seq = events.last().and_then(|e| e.0);
        let combined = (consecutive && first_seq.is_some()).then(|| concat(events));
        let mut resync = Vec::new();
        let mut members = topic.members();
        for member in members.iter_mut() {
            if let (Phase::Live, Some(combined), Some(first), Some(last)) =
                (&member.phase, &combined, first_seq, last_seq)
                && first == member.last_seq + 1
            {
                member.last_seq = last;
                member
                    .conn
                    .send_frames(combined.clone(), events.len() as u64);
                continue;
            }
            if self.dispatch_one_by_one(topic, member, events) {
                resync.push(member.conn.id);
            }
        }
        drop(members);
        for conn_id in resync {
            let fanout = self.clone();
            let topic = topic.clone();
            tokio::spawn(async move { fanout.resync(&topic, conn_id).await });
        }
    }

    /// Delivers events to one member, checking each sequence number; true when the member
    /// must take a new snapshot.
    fn dispatch_one_by_one(
        &self,
        topic: &Topic,
        member: &mut Member,
        events: &[(Option<u64>, Bytes)],
    ) -> bool {
        let mut out = BytesMut::new();
        let mut count = 0;
        let mut gap = false;
        for (seq, frame) in events {
            match (&mut member.phase, *seq) {
                (Phase::Syncing(held), _) => {
                    if held.len() < MAX_HELD {
                        held.push((*seq, frame.clone()));
                    } else {
                        member
                            .conn
                            .close(frame::close::TRY_AGAIN_LATER, "too far behind; reconnect");
                    }
                }
                (Phase::Live, Some(s)) if s <= member.last_seq => {
                    self.metrics.fanout_duplicates.inc();
                }
                (Phase::Live, Some(s)) if s != member.last_seq + 1 => {
                    debug!(subject = %topic.subject, expected = member.last_seq + 1, got = s, "gap; resyncing");
                    self.metrics.fanout_gaps.inc();
                    member.phase = Phase::Syncing(vec![(*seq, frame.clone())]);
                    gap = true;
                }
                (Phase::Live, seq) => {
                    if let Some(s) = seq {
                        member.last_seq = s;
                    }
                    out.extend_from_slice(frame);
                    count += 1;
                }
            }
        }
        if count > 0 {
            member.conn.send_frames(out.freeze(), count);
        }
        gap
    }

    /// Gets one member a snapshot and switches it to live events after it; returns once that
    /// is done (or the member is gone). The read is one that starts after this call, shared
    /// with the other members of the topic asking at the same time.
    async fn resync(&self, topic: &Arc<Topic>, conn_id: u64) {
        let (done, served) = oneshot::channel();
        let start = {
            let mut reads = topic.reads();
            reads.waiting.push((conn_id, done));
            !std::mem::replace(&mut reads.running, true)
        };
        if start {
            // A task of its own: a reader cancelled with the connection that started it would
            // leave the others waiting.
            let topic = topic.clone();
            tokio::spawn(async move {
                while let Some(batch) = topic.next_batch() {
                    read_for(&topic, batch).await;
                }
            });
        }
        let _ = served.await;
    }

    /// Makes every client take a fresh snapshot (after a NATS reconnect, when events may have
    /// been missed without a later one to reveal the gap).
    pub async fn resync_all(self: &Arc<Self>) {
        let mut pending = Vec::new();
        for topic in self.topics().values() {
            for member in topic.members().iter_mut() {
                if matches!(member.phase, Phase::Live) {
                    member.phase = Phase::Syncing(Vec::new());
                }
                pending.push((topic.clone(), member.conn.id));
            }
        }
        tracing::info!(
            clients = pending.len(),
            "resyncing every client after a NATS reconnect"
        );
        let mut work = futures::stream::iter(pending)
            .map(|(topic, conn)| async move { self.resync(&topic, conn).await })
            .buffer_unordered(64);
        while work.next().await.is_some() {}
    }

    /// Removes `conn_id` from `subject`'s clients; unsubscribes after the last.
    pub fn leave(&self, subject: &str, conn_id: u64) {
        let mut topics = self.topics();
        let Some(topic) = topics.get(subject).cloned() else {
            return;
        };
        let mut members = topic.members();
        members.retain(|m| m.conn.id != conn_id);
        if members.is_empty() {
            topics.remove(subject);
            if let Some(task) = topic.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
                task.abort();
            }
        }
    }
}

/// Reads one snapshot for the members of `batch` (all asked before it starts) and switches
/// each to live events after it, or, when the state store stays unreachable, closes them.
async fn read_for(topic: &Topic, batch: Vec<Waiter>) {
    // Sorted, not hashed: each member is looked up (SipHash was 5% of a connect burst's CPU).
    let mut ids: Vec<u64> = batch.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    let asked = |m: &Member| ids.binary_search(&m.conn.id).is_ok();
    let present = |topic: &Topic| topic.members().iter().any(asked);
    let snapshot = match topic.members().iter().find(|m| asked(m)) {
        Some(m) => m.snapshot.clone(),
        None => return,
    };
    // The state store may be briefly unreachable (a NATS reconnect, a cluster electing a
    // leader): keep holding events and try again before giving up on the clients.
    let deadline = tokio::time::Instant::now() + SNAPSHOT_PATIENCE;
    let mut backoff = Duration::from_millis(50);
    let result = loop {
        let read = AssertUnwindSafe(snapshot()).catch_unwind().await;
        match read {
            Ok(Ok(ok)) => break Ok(ok),
            Ok(Err(error)) if tokio::time::Instant::now() + backoff < deadline => {
                debug!(subject = %topic.subject, error = %error.message, "snapshot failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                if !present(topic) {
                    return;
                }
            }
            Ok(Err(error)) => break Err(error),
            Err(_) => break Err(ErrorBody::new(ErrorCode::Internal)),
        }
    };
    let mut members = topic.members();
    for member in members.iter_mut().filter(|m| asked(m)) {
        match &result {
            Ok((seq, frame)) => go_live(member, *seq, frame),
            Err(error) => {
                warn!(subject = %topic.subject, error = %error.message, "no snapshot; asking the client to come back");
                member
                    .conn
                    .close(frame::close::TRY_AGAIN_LATER, &error.message);
            }
        }
    }
    drop(members);
    for (_, done) in batch {
        let _ = done.send(());
    }
}

/// Sends `member` its snapshot (`frame`, which includes events up to `seq`), then the events
/// held meanwhile that come after it; from now on it gets events as they come.
fn go_live(member: &mut Member, seq: u64, frame: &Bytes) {
    // An endpoint without a snapshot frame only resumes after `seq`.
    if !frame.is_empty() {
        member.conn.send(frame.clone());
    }
    member.last_seq = seq;
    if let Phase::Syncing(held) = std::mem::replace(&mut member.phase, Phase::Live) {
        for (event_seq, frame) in held {
            match event_seq {
                Some(s) if s <= member.last_seq => {}
                Some(s) => {
                    member.last_seq = s;
                    member.conn.send(frame);
                }
                None => {
                    member.conn.send(frame);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
