//! Reads of KV entries that a client's next read must see (a key's state for a snapshot or
//! `GET`, a POS order body): from the bucket's stream leader when the bucket is replicated, as a
//! direct get may be answered by any replica, including one behind the write the client was
//! just told about (read-your-writes across edges). A bucket with one replica has one copy, so
//! there a direct get is as fresh and cheaper. Used by `server::Shared::read_state` and
//! `read_part`.

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use bytes::Bytes;

/// Why an entry could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReadError(String);

/// The value of `key`, `None` when it has none (never written, deleted, purged or expired).
pub async fn read(bucket: &kv::Store, key: &str) -> Result<Option<Bytes>, ReadError> {
    if bucket.stream.cached_info().config.num_replicas <= 1 {
        return bucket.get(key).await.map_err(|e| ReadError(e.to_string()));
    }
    let subject = format!("{}{}", bucket.prefix, key);
    match bucket
        .stream
        .get_last_raw_message_by_subject(&subject)
        .await
    {
        Ok(message) => {
            let headers = &message.headers;
            let removed = headers
                .get("KV-Operation")
                .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"))
                || headers
                    .get(async_nats::header::NATS_MARKER_REASON)
                    .is_some();
            Ok((!removed).then_some(message.payload))
        }
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(ReadError(e.to_string())),
    }
}
