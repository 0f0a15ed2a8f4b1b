//! The events fan-out of one edge: one NATS subscription per restaurant feed with a local
//! client (`tw.out.events.{tenant}._`), taken with the first client and dropped after the
//! last. Each event is parsed once, repeats (by `Tw-Seq`) are dropped once per feed, and each
//! client gets the events its subscriptions and filters want, batched into one write. A client
//! only ever joins the feed of the restaurant in its token.

use super::subscription::{ParsedEvent, Subscriptions};
use crate::fanout::{next_burst, subscribe_confirmed};
use crate::metrics::Metrics;
use crate::ws::{Conn, frame};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tablewire_nats::subject;
use tablewire_schemas::events::FEED_KEY;
use tablewire_schemas::{Domain, ErrorBody};
use tokio::task::JoinHandle;

/// Most events written to clients in one go.
const MAX_BATCH: usize = 64;
// Which events of a batch a member wants is a bit mask.
const _: () = assert!(MAX_BATCH <= 64);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One connection on a feed, with what it wants.
pub struct Member {
    /// The connection.
    pub conn: Arc<Conn>,
    subs: Mutex<Subscriptions>,
    ready: AtomicBool,
}

impl Member {
    /// A member wanting every event until it subscribes.
    pub fn new(conn: Arc<Conn>) -> Arc<Member> {
        Arc::new(Member {
            conn,
            subs: Mutex::new(Subscriptions::default()),
            ready: AtomicBool::new(false),
        })
    }

    /// Changes the subscriptions and sends the acknowledgement `ack` builds, under one lock,
    /// so every event after the acknowledgement is filtered by the new subscriptions.
    pub fn update<T>(
        &self,
        change: impl FnOnce(&mut Subscriptions) -> Result<T, ErrorBody>,
        ack: impl FnOnce(&Subscriptions) -> Bytes,
    ) -> Result<T, ErrorBody> {
        let mut subs = lock(&self.subs);
        let out = change(&mut subs)?;
        self.conn.send(ack(&subs));
        Ok(out)
    }
}

struct Feed {
    subject: String,
    subscribed: tokio::sync::OnceCell<()>,
    members: Mutex<Vec<Arc<Member>>>,
    last_seq: AtomicU64,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Feed {
    fn new(subject: String) -> Feed {
        Feed {
            subject,
            subscribed: tokio::sync::OnceCell::new(),
            members: Mutex::new(Vec::new()),
            last_seq: AtomicU64::new(0),
            task: Mutex::new(None),
        }
    }

    /// Sends `frame` to each member that has heard `connected` (under the members lock, which
    /// `join` holds while sending `connected` and marking the member ready).
    fn tell_ready(&self, frame: &Bytes) {
        let members = lock(&self.members);
        for member in members.iter().filter(|m| m.ready.load(Ordering::Relaxed)) {
            member.conn.send(frame.clone());
        }
    }
}

/// The events fan-out of one edge.
pub struct Hub {
    client: async_nats::Client,
    /// How long a subscription may take to be confirmed.
    patience: std::time::Duration,
    feeds: Mutex<HashMap<String, Arc<Feed>>>,
    metrics: Metrics,
}

impl Hub {
    /// A hub receiving through `client`, waiting at most `patience` for a subscription.
    pub fn new(
        client: async_nats::Client,
        metrics: Metrics,
        patience: std::time::Duration,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            client,
            patience,
            feeds: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// How many restaurant feeds this edge listens to.
    pub fn feeds(&self) -> usize {
        lock(&self.feeds).len()
    }

    /// Adds `member` to `tenant`'s feed, subscribing when it is the first, and sends `first`
    /// (the `connected` frame) before any event.
    pub async fn join(
        self: &Arc<Self>,
        tenant: &str,
        member: Arc<Member>,
        first: Bytes,
    ) -> Result<(), ErrorBody> {
        let feed = {
            let mut feeds = lock(&self.feeds);
            let feed = feeds
                .entry(tenant.to_string())
                .or_insert_with(|| {
                    Arc::new(Feed::new(subject::output(Domain::Events, tenant, FEED_KEY)))
                })
                .clone();
            // A member from the start (so the feed is not dropped meanwhile), but not ready:
            // it gets no event before `first`.
            lock(&feed.members).push(member.clone());
            feed
        };
        if let Err(e) = feed
            .subscribed
            .get_or_try_init(|| self.subscribe(&feed))
            .await
        {
            self.leave(tenant, member.conn.id);
            return Err(e);
        }
        let _members = lock(&feed.members);
        member.conn.send(first);
        member.ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn subscribe(self: &Arc<Self>, feed: &Arc<Feed>) -> Result<(), ErrorBody> {
        // The server has the subscription before the client hears `connected`.
        let mut subscriber =
            subscribe_confirmed(&self.client, &feed.subject, self.patience).await?;
        let weak = Arc::downgrade(feed);
        let metrics = self.metrics.clone();
        let handle = tokio::spawn(async move {
            let mut notices = NoticeMarks::default();
            while let Some(batch) = next_burst(&mut subscriber, MAX_BATCH).await {
                let Some(feed) = weak.upgrade() else { break };
                dispatch(&feed, &metrics, &mut notices, &batch);
            }
        });
        *lock(&feed.task) = Some(handle);
        Ok(())
    }

    /// Sends `frame` to every member of every feed that has heard `connected` (an
    /// `EVENTS_MISSED` notice after this edge lost NATS: core NATS keeps nothing for a
    /// subscriber that was away). A member still joining was promised no event yet, and its
    /// first frame must be `connected`, so it is not told.
    pub fn tell_everyone(&self, frame: &Bytes) {
        let feeds: Vec<Arc<Feed>> = lock(&self.feeds).values().cloned().collect();
        for feed in feeds {
            feed.tell_ready(frame);
        }
    }

    /// Removes `conn_id` from `tenant`'s feed; unsubscribes after the last client.
    pub fn leave(&self, tenant: &str, conn_id: u64) {
        let Some(feed) = lock(&self.feeds).get(tenant).cloned() else {
            return;
        };
        lock(&feed.members).retain(|m| m.conn.id != conn_id);
        self.drop_if_empty(tenant, &feed);
    }

    fn drop_if_empty(&self, tenant: &str, feed: &Arc<Feed>) {
        let mut feeds = lock(&self.feeds);
        let members = lock(&feed.members);
        if members.is_empty() && feeds.get(tenant).is_some_and(|f| Arc::ptr_eq(f, feed)) {
            feeds.remove(tenant);
            if let Some(task) = lock(&feed.task).take() {
                task.abort();
            }
        }
    }
}

/// Most notice senders a feed remembers; past it, it forgets them all (the next repeat of
/// each, if any, goes through once).
const MAX_NOTICE_SENDERS: usize = 50_000;

/// Where each sender of notices to one feed is (`subject::header::NOTICE`): a sender's notices
/// come in order, so one at or before the last seen is a repeat (its outbox published again
/// after a handler takeover).
#[derive(Default)]
struct NoticeMarks {
    last: HashMap<String, (u64, u64)>,
}

impl NoticeMarks {
    /// Whether the notice with `NOTICE` header `value` was delivered already.
    fn is_repeat(&mut self, value: &str) -> bool {
        let Some((sender, position)) = subject::header::parse_notice_position(value) else {
            return false;
        };
        if let Some(last) = self.last.get_mut(sender) {
            let repeat = position <= *last;
            *last = (*last).max(position);
            return repeat;
        }
        if self.last.len() >= MAX_NOTICE_SENDERS {
            self.last.clear();
        }
        self.last.insert(sender.to_string(), position);
        false
    }
}

/// Delivers a batch of one feed's events to each of its members that wants them.
fn dispatch(
    feed: &Feed,
    metrics: &Metrics,
    notices: &mut NoticeMarks,
    batch: &[async_nats::Message],
) {
    let mut events = Vec::with_capacity(batch.len());
    for message in batch {
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str())
        };
        let seq = header(subject::header::SEQ).and_then(|v| v.parse::<u64>().ok());
        if let Some(seq) = seq {
            // Republished after a handler takeover: already delivered.
            if seq <= feed.last_seq.load(Ordering::Relaxed) {
                metrics.fanout_duplicates.inc();
                continue;
            }
            feed.last_seq.store(seq, Ordering::Relaxed);
        } else if header(subject::header::NOTICE).is_some_and(|v| notices.is_repeat(v)) {
            metrics.fanout_duplicates.inc();
            continue;
        }
        events.push((
            ParsedEvent::parse(&message.payload),
            frame::text(&message.payload),
        ));
    }
    metrics.fanout_events.inc_by(events.len() as u64);
    if events.is_empty() {
        return;
    }
    // Members wanting the same events share one buffer (most want everything): `MAX_BATCH`
    // events fit the bits of a u64.
    let mut shared_frames: HashMap<u64, Bytes> = HashMap::new();
    let members = lock(&feed.members);
    for member in members.iter().filter(|m| m.ready.load(Ordering::Relaxed)) {
        let subs = lock(&member.subs);
        let mask = events
            .iter()
            .enumerate()
            .filter(|(_, (event, _))| subs.wants(event))
            .fold(0u64, |mask, (i, _)| mask | (1 << i));
        if mask == 0 {
            continue;
        }
        let count = u64::from(mask.count_ones());
        let data = shared_frames
            .entry(mask)
            .or_insert_with(|| {
                let mut wanted = events
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, (_, frame))| frame);
                if count == 1 {
                    return wanted.next().cloned().unwrap_or_default();
                }
                let mut out = BytesMut::new();
                for frame in wanted {
                    out.extend_from_slice(frame);
                }
                out.freeze()
            })
            .clone();
        member.conn.send_frames(data, count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::Counters;

    #[test]
    fn a_notice_published_again_is_a_repeat_and_later_ones_are_not() {
        let mut marks = NoticeMarks::default();
        let at = |applied, index, key| {
            subject::header::notice_position(Domain::Device, "t", key, applied, index)
        };
        assert!(!marks.is_repeat(&at(10, 0, "r1")));
        assert!(
            !marks.is_repeat(&at(10, 1, "r1")),
            "the write's second notice"
        );
        assert!(
            !marks.is_repeat(&at(7, 0, "r2")),
            "another sender has its own order"
        );
        assert!(
            marks.is_repeat(&at(10, 0, "r1")),
            "published again after a takeover"
        );
        assert!(marks.is_repeat(&at(10, 1, "r1")));
        assert!(
            !marks.is_repeat(&at(12, 0, "r1")),
            "the sender's next write"
        );
        assert!(marks.is_repeat(&at(7, 0, "r2")));
        assert!(
            !marks.is_repeat("no position"),
            "unreadable values are delivered"
        );
    }

    #[test]
    fn a_notice_reaches_only_members_that_heard_connected() {
        let feed = Feed::new("tw.out.events.t._".to_string());
        let joined = Member::new(Arc::new(Conn::new(1, "t", 1 << 20, Counters::default())));
        let joining = Member::new(Arc::new(Conn::new(2, "t", 1 << 20, Counters::default())));
        joined.ready.store(true, Ordering::Relaxed);
        lock(&feed.members).extend([joined.clone(), joining.clone()]);
        feed.tell_ready(&Bytes::from_static(b"notice"));
        assert_eq!(
            joined.conn.take_pending().0,
            vec![Bytes::from_static(b"notice")]
        );
        assert!(
            joining.conn.take_pending().0.is_empty(),
            "a member still joining must hear `connected` first"
        );
    }
}
