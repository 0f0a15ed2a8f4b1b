//! Batched direct gets (nats-server >= 2.11): reads many stored messages of a subject filter in
//! one request. The partition worker uses it to rebuild a batch from the stream.

use super::shared::Shared;
use crate::domain::Domain;
use crate::error::RuntimeError;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use std::time::Duration;

/// One stored message.
pub(crate) struct StoredMessage {
    pub seq: u64,
    pub subject: String,
    pub payload: Bytes,
}

/// Up to `batch` messages matching `filter` from sequence `from` on, in order.
pub(crate) async fn next_batch<D: Domain>(
    shared: &Shared<D>,
    filter: &str,
    from: u64,
    batch: usize,
) -> Result<Vec<StoredMessage>, RuntimeError> {
    let inbox = shared.client.new_inbox();
    let mut replies = shared
        .client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| RuntimeError::Nats(format!("direct get subscribe: {e}")))?;
    let request = json!({"seq": from, "next_by_subj": filter, "batch": batch});
    shared
        .client
        .publish_with_reply(
            format!("$JS.API.DIRECT.GET.{}", shared.stream_name),
            inbox,
            Bytes::from(request.to_string()),
        )
        .await
        .map_err(|e| RuntimeError::Nats(format!("direct get: {e}")))?;
    let mut out = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(5), replies.next()).await;
        let message = match next {
            Ok(Some(message)) => message,
            Ok(None) => return Err(RuntimeError::Nats("direct get: subscription closed".into())),
            Err(_) => return Err(RuntimeError::Nats("direct get: no answer in 5 s".into())),
        };
        if let Some(status) = message.status {
            // 204 ends a batch; 404 means nothing (more) matches.
            return match status.as_u16() {
                204 | 404 => Ok(out),
                code => Err(RuntimeError::Nats(format!(
                    "direct get: status {code} {}",
                    message.description.unwrap_or_default()
                ))),
            };
        }
        let headers = message.headers.as_ref();
        let seq = headers
            .and_then(|h| h.get("Nats-Sequence"))
            .and_then(|v| v.as_str().parse().ok());
        let subject = headers
            .and_then(|h| h.get("Nats-Subject"))
            .map(|v| v.to_string());
        match (seq, subject) {
            (Some(seq), Some(subject)) => out.push(StoredMessage {
                seq,
                subject,
                payload: message.payload,
            }),
            _ => {
                return Err(RuntimeError::Nats(
                    "direct get: reply without sequence".into(),
                ));
            }
        }
        if out.len() >= batch {
            return Ok(out);
        }
    }
}
