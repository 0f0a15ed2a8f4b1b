//! Runs the I/O a domain asks for after a key's state is written ([`FollowUp`]): a NATS
//! request (the voice domain asks its transcriber) or a wait, then publishes the outcome as a
//! command to the same key, with a message id made from the follow-up's id so that it is
//! applied once. Called by the partition worker after a successful write.

use super::shared::Shared;
use crate::domain::{Domain, FollowUp, FollowUpAction};
use bytes::Bytes;
use std::time::Duration;
use tablewire_schemas::stored::Stored;
use tracing::{debug, warn};

/// Starts the follow-up `after` asks for, unless the state before (whose follow-up had the id
/// `previous`) already asked for the same one.
pub(crate) fn start<D: Domain>(
    shared: &Shared<D>,
    tenant: &str,
    key: &str,
    previous: Option<&str>,
    after: &Stored<D::State>,
) {
    let Some(follow_up) = shared.domain.follow_up(&after.state, tenant, key) else {
        return;
    };
    if previous == Some(follow_up.id.as_str()) {
        return;
    }
    let client = shared.client.clone();
    let js = shared.js.clone();
    let (tenant, key) = (tenant.to_string(), key.to_string());
    tokio::spawn(async move { run::<D>(client, js, tenant, key, follow_up).await });
}

async fn run<D: Domain>(
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    tenant: String,
    key: String,
    follow_up: FollowUp,
) {
    let FollowUp {
        id,
        action,
        outcome,
    } = follow_up;
    let result = match action {
        FollowUpAction::Request {
            subject,
            payload,
            timeout,
        } => match tokio::time::timeout(timeout, client.request(subject, payload)).await {
            Ok(Ok(reply)) => Ok(reply.payload),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no reply in time".to_string()),
        },
        FollowUpAction::Wait(delay) => {
            tokio::time::sleep(delay).await;
            Ok(Bytes::new())
        }
    };
    let command = outcome(result);
    let message_id = format!("{}:{tenant}:{key}:follow-up:{id}", D::NAME);
    let Ok(command) = serde_json::value::to_raw_value(&command) else {
        return;
    };
    // From the runtime itself: nobody to answer.
    let envelope = crate::outgoing::envelope(
        D::NAME,
        &tenant,
        &key,
        &message_id,
        crate::clock::now_ms(),
        command,
    );
    let mut backoff = Duration::from_millis(100);
    for _ in 0..8 {
        let stored = match crate::outgoing::publish_command(&js, &envelope).await {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match stored {
            Ok(()) => {
                debug!(domain = %D::NAME, %key, %id, "follow-up outcome stored");
                return;
            }
            Err(e) => {
                debug!(domain = %D::NAME, %key, error = %e, "follow-up outcome not stored; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    warn!(domain = %D::NAME, %key, %id, "follow-up outcome could not be stored; the next write of the key asks again");
}
