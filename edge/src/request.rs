//! HTTP writes answered once a handler has applied them, so that every read served afterwards,
//! by any edge, reflects them (read-your-writes): the command goes out with a request id and
//! the handler's answer comes back on this edge's inbox. Used by the display, POS, device and
//! events HTTP endpoints.

use crate::node::Node;
use crate::publish::{Accepted, Command};
use bytes::Bytes;
use serde::Serialize;
use tablewire_schemas::stored::StoredView;
use tablewire_schemas::{Domain, ErrorBody, Origin};

/// What became of a stored write.
pub enum Outcome {
    /// The handler's answer (its reply frame, or its error frame).
    Answered(Bytes),
    /// The message id was stored before (a client's retry): no new answer will come; the
    /// first one's effect is applied once, with the returned sequence.
    Duplicate,
    /// Stored, but no answer within the edge's `reply_timeout`.
    NoAnswer,
}

/// Publishes `cmd` with a fresh request id as its origin (whatever origin it had), waits until
/// it is stored, then for the handler's answer. Fails only when the command could not be
/// stored.
pub async fn write<C: Serialize>(
    node: &Node,
    mut cmd: Command<'_, C>,
) -> Result<(Accepted, Outcome), ErrorBody> {
    let request = uuid::Uuid::now_v7().simple().to_string();
    cmd.origin = Origin {
        edge: node.id.clone(),
        conn: None,
        request: Some(request.clone()),
    };
    let answer = node.inbox.expect(&request);
    let accepted = match node.publisher.publish(cmd).await {
        Ok(accepted) => accepted,
        Err(e) => {
            node.inbox.forget(&request);
            return Err(e);
        }
    };
    if accepted.duplicate {
        node.inbox.forget(&request);
        return Ok((accepted, Outcome::Duplicate));
    }
    match tokio::time::timeout(node.config.reply_timeout, answer).await {
        Ok(Ok(payload)) => Ok((accepted, Outcome::Answered(payload))),
        _ => {
            node.inbox.forget(&request);
            Ok((accepted, Outcome::NoAnswer))
        }
    }
}

/// Publishes `cmd` and answers once the handler applied it (so a read right after sees it), or
/// with the handler's refusal: a refused write is never reported as accepted. A repeat of an
/// earlier write (its message id seen before) is answered once that write is applied; a write
/// not applied within `reply_timeout` is `TIMEOUT` (it stays stored and is applied later).
pub async fn apply<C: Serialize>(node: &Node, cmd: Command<'_, C>) -> Result<Accepted, ErrorBody> {
    let (domain, key) = (cmd.domain, cmd.key.to_string());
    let tenant = cmd.tenant.to_string();
    let (stored, outcome) = write(node, cmd).await?;
    match outcome {
        Outcome::Answered(answer) => match rejection(&answer) {
            Some(refused) => Err(refused),
            None => Ok(stored),
        },
        Outcome::Duplicate => applied(node, domain, &tenant, &key, stored.sequence)
            .await
            .map(|()| stored),
        Outcome::NoAnswer => Err(not_applied_in_time()),
    }
}

/// The error an answer carries, when it is an error frame (`{"type": "error", …}` with the
/// error body at its top level or under `data`).
pub fn rejection(answer: &[u8]) -> Option<ErrorBody> {
    let frame: serde_json::Value = serde_json::from_slice(answer).ok()?;
    if frame.get("type").and_then(|t| t.as_str()) != Some("error") {
        return None;
    }
    let body = match frame.get("data") {
        Some(data) if data.is_object() => data.clone(),
        _ => frame,
    };
    Some(
        serde_json::from_value(body)
            .unwrap_or_else(|_| ErrorBody::new(tablewire_schemas::ErrorCode::Internal)),
    )
}

/// Waits until `key`'s stored state includes the command stored at `sequence` (its `applied`
/// sequence reached it), for a write whose answer will not come (a duplicate). `TIMEOUT` when
/// that does not happen within `reply_timeout`.
pub async fn applied(
    node: &Node,
    domain: Domain,
    tenant: &str,
    key: &str,
    sequence: u64,
) -> Result<(), ErrorBody> {
    let deadline = tokio::time::Instant::now() + node.config.reply_timeout;
    loop {
        if let Some(bytes) = node.read_state(domain, tenant, key).await?
            && serde_json::from_slice::<StoredView<'_>>(&bytes)
                .is_ok_and(|view| view.applied >= sequence)
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(not_applied_in_time());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The answer to a write stored but not known to be applied in time.
pub fn not_applied_in_time() -> ErrorBody {
    ErrorBody::with_message(
        tablewire_schemas::ErrorCode::Timeout,
        "stored, but not applied in time; retry with the same idempotency key to learn the outcome",
    )
}
