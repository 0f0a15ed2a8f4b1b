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
use std::collections::{HashMap, HashSet};
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
    let ids: HashSet<u64> = batch.iter().map(|(id, _)| *id).collect();
    let present = |topic: &Topic| topic.members().iter().any(|m| ids.contains(&m.conn.id));
    let snapshot = {
        let members = topic.members();
        match members.iter().find(|m| ids.contains(&m.conn.id)) {
            Some(m) => m.snapshot.clone(),
            None => return,
        }
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
    for member in members.iter_mut().filter(|m| ids.contains(&m.conn.id)) {
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
mod tests {
    use super::*;
    use crate::ws::Counters;

    /// A fan-out whose NATS client never connects: dispatch and resync do not use it.
    async fn fanout() -> Arc<Fanout> {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect("127.0.0.1:1")
            .await
            .expect("a client that connects later");
        let metrics = Metrics::new(&mut prometheus_client::registry::Registry::default());
        Fanout::new(client, metrics, Duration::from_secs(1))
    }

    fn topic() -> Arc<Topic> {
        Arc::new(Topic::new("tw.out.test".to_string()))
    }

    /// A snapshot at `seq` carrying the frame `snap`.
    fn snapshot_at(seq: u64) -> Snapshot {
        Arc::new(move || Box::pin(async move { Ok((seq, Bytes::from_static(b"snap "))) }))
    }

    /// A snapshot that never comes: a member that must resync stays syncing.
    fn snapshot_never() -> Snapshot {
        Arc::new(|| Box::pin(std::future::pending()))
    }

    fn member(id: u64, phase: Phase, last_seq: u64, snapshot: Snapshot) -> Member {
        Member {
            conn: Arc::new(Conn::new(id, "t", 1 << 20, Counters::default())),
            phase,
            last_seq,
            snapshot,
        }
    }

    /// Events as received: `Some(n)` is sequence `n` with frame `"n "`, `None` an event without
    /// a sequence (frame `"- "`).
    fn events(seqs: &[Option<u64>]) -> Vec<(Option<u64>, Bytes)> {
        seqs.iter()
            .map(|seq| {
                let frame = seq.map_or("- ".to_string(), |s| format!("{s} "));
                (*seq, Bytes::from(frame))
            })
            .collect()
    }

    /// Everything written to a member so far, frames laid end to end.
    fn written(member: &Member) -> String {
        let (frames, _) = member.conn.take_pending();
        frames
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect()
    }

    fn held(member: &Member) -> Option<Vec<Option<u64>>> {
        match &member.phase {
            Phase::Syncing(held) => Some(held.iter().map(|(seq, _)| *seq).collect()),
            Phase::Live => None,
        }
    }

    #[tokio::test]
    async fn a_live_member_gets_each_event_once_in_order_and_resyncs_on_a_gap() {
        struct Case {
            name: &'static str,
            last_seq: u64,
            events: Vec<Option<u64>>,
            written: &'static str,
            last_after: u64,
            /// The events held for a fresh snapshot, when a gap made the member resync.
            held: Option<Vec<Option<u64>>>,
            duplicates: u64,
            gaps: u64,
        }
        let cases = [
            Case {
                name: "consecutive, right after the member (one write)",
                last_seq: 4,
                events: vec![Some(5), Some(6), Some(7)],
                written: "5 6 7 ",
                last_after: 7,
                held: None,
                duplicates: 0,
                gaps: 0,
            },
            Case {
                name: "repeats only (a republished outbox)",
                last_seq: 7,
                events: vec![Some(6), Some(7)],
                written: "",
                last_after: 7,
                held: None,
                duplicates: 2,
                gaps: 0,
            },
            Case {
                name: "repeats, then new events",
                last_seq: 5,
                events: vec![Some(4), Some(5), Some(6), Some(7)],
                written: "6 7 ",
                last_after: 7,
                held: None,
                duplicates: 2,
                gaps: 0,
            },
            Case {
                name: "a repeat inside a burst",
                last_seq: 5,
                events: vec![Some(6), Some(6), Some(7)],
                written: "6 7 ",
                last_after: 7,
                held: None,
                duplicates: 1,
                gaps: 0,
            },
            Case {
                name: "a gap before the burst: nothing written, all held",
                last_seq: 5,
                events: vec![Some(8), Some(9)],
                written: "",
                last_after: 5,
                held: Some(vec![Some(8), Some(9)]),
                duplicates: 0,
                gaps: 1,
            },
            Case {
                name: "a gap inside the burst: what came before it is written",
                last_seq: 5,
                events: vec![Some(6), Some(8), Some(9)],
                written: "6 ",
                last_after: 6,
                held: Some(vec![Some(8), Some(9)]),
                duplicates: 0,
                gaps: 1,
            },
            Case {
                name: "an event without a sequence goes through and moves nothing",
                last_seq: 5,
                events: vec![None, Some(6)],
                written: "- 6 ",
                last_after: 6,
                held: None,
                duplicates: 0,
                gaps: 0,
            },
        ];
        for case in cases {
            let fanout = fanout().await;
            let topic = topic();
            topic
                .members()
                .push(member(1, Phase::Live, case.last_seq, snapshot_never()));
            fanout.dispatch(&topic, &events(&case.events));
            let members = topic.members();
            assert_eq!(written(&members[0]), case.written, "{}: written", case.name);
            assert_eq!(
                members[0].last_seq, case.last_after,
                "{}: last sequence",
                case.name
            );
            assert_eq!(held(&members[0]), case.held, "{}: held", case.name);
            assert_eq!(
                fanout.metrics.fanout_duplicates.get(),
                case.duplicates,
                "{}: duplicates",
                case.name
            );
            assert_eq!(
                fanout.metrics.fanout_gaps.get(),
                case.gaps,
                "{}: gaps",
                case.name
            );
        }
    }

    #[tokio::test]
    async fn members_at_different_places_each_get_what_they_miss() {
        let fanout = fanout().await;
        let topic = topic();
        topic.members().extend([
            member(1, Phase::Live, 4, snapshot_never()),
            member(2, Phase::Live, 6, snapshot_never()),
            member(3, Phase::Syncing(Vec::new()), 0, snapshot_never()),
        ]);
        fanout.dispatch(&topic, &events(&[Some(5), Some(6), Some(7)]));
        let members = topic.members();
        assert_eq!(written(&members[0]), "5 6 7 ");
        assert_eq!(written(&members[1]), "7 ");
        assert_eq!(
            written(&members[2]),
            "",
            "a syncing member gets nothing yet"
        );
        assert_eq!(held(&members[2]), Some(vec![Some(5), Some(6), Some(7)]));
    }

    #[tokio::test]
    async fn after_its_snapshot_a_member_gets_only_the_held_events_past_it() {
        struct Case {
            name: &'static str,
            held: Vec<Option<u64>>,
            snapshot_seq: u64,
            written: &'static str,
            last_after: u64,
        }
        let cases = [
            Case {
                name: "the snapshot includes some held events",
                held: vec![Some(4), Some(5), Some(6)],
                snapshot_seq: 5,
                written: "snap 6 ",
                last_after: 6,
            },
            Case {
                name: "the snapshot includes every held event",
                held: vec![Some(4), Some(5)],
                snapshot_seq: 9,
                written: "snap ",
                last_after: 9,
            },
            Case {
                name: "held repeats are dropped",
                held: vec![Some(6), Some(6), Some(7)],
                snapshot_seq: 5,
                written: "snap 6 7 ",
                last_after: 7,
            },
            Case {
                name: "events without a sequence are all delivered",
                held: vec![None, Some(3)],
                snapshot_seq: 3,
                written: "snap - ",
                last_after: 3,
            },
        ];
        for case in cases {
            let fanout = fanout().await;
            let topic = topic();
            let held_events = events(&case.held);
            topic.members().push(member(
                1,
                Phase::Syncing(held_events),
                0,
                snapshot_at(case.snapshot_seq),
            ));
            fanout.resync(&topic, 1).await;
            let members = topic.members();
            assert_eq!(written(&members[0]), case.written, "{}: written", case.name);
            assert_eq!(
                members[0].last_seq, case.last_after,
                "{}: last sequence",
                case.name
            );
            assert!(
                matches!(members[0].phase, Phase::Live),
                "{}: live",
                case.name
            );
        }
    }

    #[tokio::test]
    async fn members_asking_together_share_one_read_that_starts_after_each_asked() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let fanout = fanout().await;
        let topic = topic();
        // Read n answers sequence n with the frame "snap{n} ", once the gate lets it.
        let reads = Arc::new(AtomicU64::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let snapshot: Snapshot = {
            let (reads, gate) = (reads.clone(), gate.clone());
            Arc::new(move || {
                let (reads, gate) = (reads.clone(), gate.clone());
                Box::pin(async move {
                    let n = reads.fetch_add(1, Ordering::SeqCst) + 1;
                    gate.acquire().await.expect("gate").forget();
                    Ok((n, Bytes::from(format!("snap{n} "))))
                })
            })
        };
        let ask = |id: u64| {
            topic
                .members()
                .push(member(id, Phase::Syncing(Vec::new()), 0, snapshot.clone()));
            let (fanout, topic) = (fanout.clone(), topic.clone());
            tokio::spawn(async move { fanout.resync(&topic, id).await })
        };
        let mut asked = vec![ask(1)];
        while reads.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        // While the first read runs, four more members ask: that read began before they did.
        asked.extend((2..=5).map(ask));
        while topic.reads().waiting.len() < 4 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(10);
        for task in asked {
            task.await.expect("resync");
        }
        assert_eq!(
            reads.load(Ordering::SeqCst),
            2,
            "one read for the first, one for the rest"
        );
        let members = topic.members();
        assert_eq!(written(&members[0]), "snap1 ");
        for member in &members[1..] {
            assert_eq!(
                written(member),
                "snap2 ",
                "member {} is served by a read that started after it asked",
                member.conn.id
            );
            assert_eq!(member.last_seq, 2);
            assert!(matches!(member.phase, Phase::Live));
        }
        assert!(
            !topic.reads().running,
            "the reader stopped once nobody waited"
        );
    }
}
