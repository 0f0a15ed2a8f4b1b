//! The edge's own subject (`tw.edge.{edge}`): replies meant for one sender, routed to the
//! connection (`Tw-Conn`) or to the HTTP request waiting for it (`Tw-Request`).

use crate::ws::{self, frame};
use bytes::Bytes;
use futures::StreamExt;
use std::collections::HashMap;
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
                } else if let Some(conn) = header(subject::header::CONN)
                    .and_then(|c| c.parse().ok())
                    .and_then(|id| conns.get(id))
                {
                    conn.send(frame::text(&message.payload));
                }
            }
        }))
    }
}
