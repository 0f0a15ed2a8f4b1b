//! Commands a handler sends itself or another key (not a client): the one place that builds
//! their envelope and publishes it to the key's input subject with `Nats-Msg-Id`, so JetStream
//! stores one copy however often it is sent. Used by the runtime's outbox and follow-ups,
//! collab's idle sweeper and device presence.

use crate::error::RuntimeError;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishAckFuture};
use bytes::Bytes;
use serde_json::value::RawValue;
use tablewire_nats::subject;
use tablewire_schemas::{Domain as DomainName, Envelope, Origin};

/// The envelope of a command from no client: nobody to answer, no claims.
pub fn envelope(
    domain: DomainName,
    tenant: &str,
    key: &str,
    id: &str,
    at: i64,
    command: Box<RawValue>,
) -> Envelope {
    Envelope {
        tenant: tenant.to_string(),
        domain,
        key: key.to_string(),
        id: id.to_string(),
        origin: Origin {
            edge: String::new(),
            conn: None,
            request: None,
        },
        claims: None,
        at,
        command,
    }
}

/// Publishes `envelope` to its key's input subject, deduplicated by its id; the future it
/// returns resolves once the stream has stored it (or says it had already).
pub async fn publish_command(
    js: &jetstream::Context,
    envelope: &Envelope,
) -> Result<PublishAckFuture, RuntimeError> {
    let payload = serde_json::to_vec(envelope)
        .map_err(|e| RuntimeError::Corrupt(format!("command envelope: {e}")))?;
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, envelope.id.as_str());
    js.publish_with_headers(
        subject::input(envelope.domain, &envelope.tenant, &envelope.key),
        headers,
        Bytes::from(payload),
    )
    .await
    .map_err(|e| RuntimeError::Nats(format!("publish command: {e}")))
}
