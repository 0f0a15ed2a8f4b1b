//! The edge's own subject (`tw.edge.{edge}`): replies meant for one sender, routed to the
//! connection (`Tw-Conn`) or to the HTTP request waiting for it (`Tw-Request`). A reply a
//! handler taking over sends again (same `Tw-Reply`) reaches a connection once.

use crate::ws::{self, frame};
use bytes::Bytes;
use futures::StreamExt;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use tablewire_nats::subject;
use tokio::sync::oneshot;

/// Waiting HTTP requests, by request id.
#[derive(Default)]
pub struct Inbox {
    waiting: Mutex<HashMap<String, oneshot::Sender<Bytes>>>,
}

impl Inbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Bytes>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a request before its command is published; the reply arrives on the receiver.
    pub fn expect(&self, request: &str) -> oneshot::Receiver<Bytes> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(request.to_string(), tx);
        rx
    }

    /// Stops waiting for a request (it timed out or failed).
    pub fn forget(&self, request: &str) {
        self.lock().remove(request);
    }

    /// Subscribes to this edge's subject and routes replies until the subscription ends.
    pub async fn start(
        self: &Arc<Self>,
        client: &async_nats::Client,
        edge: &str,
        conns: Arc<ws::Registry>,
    ) -> Result<tokio::task::JoinHandle<()>, async_nats::SubscribeError> {
        let mut sub = client.subscribe(subject::edge_inbox(edge)).await?;
        let _ = client.flush().await;
        let inbox = self.clone();
        Ok(tokio::spawn(async move {
            let mut delivered = RecentReplies::default();
            while let Some(message) = sub.next().await {
                let headers = message.headers.as_ref();
                let header = |name: &str| {
                    headers
                        .and_then(|h| h.get(name))
                        .map(|v| v.as_str().to_string())
                };
                if let Some(request) = header(subject::header::REQUEST) {
                    if let Some(tx) = inbox.lock().remove(&request) {
                        let _ = tx.send(message.payload.clone());
                    }
                } else if let Some((id, conn)) = header(subject::header::CONN)
                    .and_then(|c| c.parse::<u64>().ok())
                    .and_then(|id| Some((id, conns.get(id)?)))
                {
                    let repeat = header(subject::header::REPLY)
                        .is_some_and(|place| delivered.is_repeat(format!("{id} {place}")));
                    if !repeat {
                        conn.send(frame::text(&message.payload));
                    }
                }
            }
        }))
    }
}

/// Most reply places [`RecentReplies`] remembers. A repeat comes within seconds of the original
/// (a takeover); this many replies take far longer at any rate an edge serves.
const MAX_RECENT_REPLIES: usize = 16_384;

/// The places (`{conn} {Tw-Reply}`) of the replies last delivered to connections.
#[derive(Default)]
struct RecentReplies {
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl RecentReplies {
    /// Whether the reply at `place` was delivered already; remembers it otherwise.
    fn is_repeat(&mut self, place: String) -> bool {
        if self.seen.contains(&place) {
            return true;
        }
        if self.order.len() >= MAX_RECENT_REPLIES
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(place.clone());
        self.order.push_back(place);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_place_is_delivered_once_and_forgotten_when_old() {
        let mut recent = RecentReplies::default();
        assert!(!recent.is_repeat("1 7.0 device/t/r".into()));
        assert!(recent.is_repeat("1 7.0 device/t/r".into()));
        assert!(
            !recent.is_repeat("2 7.0 device/t/r".into()),
            "another connection"
        );
        for i in 0..MAX_RECENT_REPLIES {
            recent.is_repeat(format!("3 {i}.0 device/t/r"));
        }
        assert!(!recent.is_repeat("1 7.0 device/t/r".into()), "forgotten");
        assert_eq!(recent.order.len(), recent.seen.len());
    }
}
