//! Reads of KV entries that a client's next read must see (a key's state for a snapshot or
//! `GET`, a POS order body): from the bucket's stream leader when the bucket is replicated, as a
//! direct get may be answered by any replica, including one behind the write the client was
//! just told about (read-your-writes across edges). A bucket with one replica has one copy, so
//! there a direct get is as fresh and cheaper. While a replicated stream has no leader (an
//! election after a node died takes nats-server 4–9 s), the leader read gives up after
//! [`LEADER_TIMEOUT`] and a direct get answers instead (counted): available, though possibly
//! behind. Used by `node::Node::read_state` and `read_part`.

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use std::time::Duration;

/// Why an entry could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReadError(String);

/// How long a read waits for the stream leader before a replica answers instead.
pub const LEADER_TIMEOUT: Duration = Duration::from_millis(750);

/// The value of `key`, `None` when it has none (never written, deleted, purged or expired).
/// `fallbacks` counts reads a replica answered because the leader did not.
pub async fn read(
    bucket: &kv::Store,
    key: &str,
    fallbacks: &Counter,
) -> Result<Option<Bytes>, ReadError> {
    let direct = || async { bucket.get(key).await.map_err(|e| ReadError(e.to_string())) };
    if bucket.stream.cached_info().config.num_replicas <= 1 {
        return direct().await;
    }
    let subject = format!("{}{}", bucket.prefix, key);
    let leader = bucket.stream.get_last_raw_message_by_subject(&subject);
    let answer = match tokio::time::timeout(LEADER_TIMEOUT, leader).await {
        Ok(Ok(message)) => message,
        Ok(Err(e)) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
        Ok(Err(_)) | Err(_) => {
            fallbacks.inc();
            return direct().await;
        }
    };
    let headers = &answer.headers;
    let removed = headers
        .get("KV-Operation")
        .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"))
        || headers
            .get(async_nats::header::NATS_MARKER_REASON)
            .is_some();
    Ok((!removed).then_some(answer.payload))
}
