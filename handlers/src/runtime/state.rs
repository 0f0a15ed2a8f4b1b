//! Reads and writes one key's [`Stored`] state in the domain's KV bucket, by compare-and-set on
//! the KV revision, optionally with a per-message TTL (the entry then vanishes by itself). Used
//! by the partition workers.

use crate::error::RuntimeError;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind, kv};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;
use tablewire_schemas::stored::Stored;
use tracing::warn;

/// A key's state as last read or written, with the revision a write must expect.
#[derive(Debug, Clone)]
pub(crate) struct Loaded<S> {
    /// The KV revision of the key's last entry (0 when the key never existed).
    pub revision: u64,
    /// The state, `None` when the key has none (never written, or deleted).
    pub stored: Option<Stored<S>>,
}

impl<S> Loaded<S> {
    /// The stream sequence of the last applied command.
    pub fn applied(&self) -> u64 {
        self.stored.as_ref().map_or(0, |s| s.applied)
    }
}

/// The outcome of a compare-and-set write.
pub(crate) enum Written {
    /// Stored under this revision.
    Ok(u64),
    /// Someone else wrote first; read again.
    Conflict,
}

/// Parts sent by [`StateStore::send_parts`], not yet acknowledged.
pub(crate) struct PendingParts {
    acks: Vec<jetstream::context::PublishAckFuture>,
}

impl PendingParts {
    /// Whether every part was stored.
    pub async fn stored(self) -> Result<(), RuntimeError> {
        for ack in self.acks {
            ack.await
                .map_err(|e| RuntimeError::Nats(format!("part not stored: {e}")))?;
        }
        Ok(())
    }
}

/// One domain's state bucket.
#[derive(Clone)]
pub(crate) struct StateStore {
    kv: kv::Store,
    /// The domain's parts bucket, for domains that keep parts apart.
    parts: Option<kv::Store>,
    js: jetstream::Context,
    /// Whether the bucket takes per-message TTLs (provisioned by this version or later).
    ttl_allowed: bool,
}

impl StateStore {
    pub fn new(kv: kv::Store, parts: Option<kv::Store>, js: jetstream::Context) -> Self {
        let ttl_allowed = kv.stream.cached_info().config.allow_message_ttl;
        if !ttl_allowed {
            warn!(
                bucket = %kv.name,
                "state bucket without per-message TTL: keys meant to expire are kept; \
                 run `tablewire provision`"
            );
        }
        StateStore {
            kv,
            parts,
            js,
            ttl_allowed,
        }
    }

    /// Reads a key's state.
    pub async fn load<S: DeserializeOwned>(&self, key: &str) -> Result<Loaded<S>, RuntimeError> {
        let entry = self
            .kv
            .entry(key)
            .await
            .map_err(|e| RuntimeError::Nats(format!("read state {key}: {e}")))?;
        Ok(match entry {
            None => Loaded {
                revision: 0,
                stored: None,
            },
            Some(entry) if entry.operation != kv::Operation::Put => Loaded {
                revision: entry.revision,
                stored: None,
            },
            Some(entry) => {
                let stored = serde_json::from_slice(&entry.value).map_err(|e| {
                    RuntimeError::Corrupt(format!(
                        "state {key} at revision {}: {e}",
                        entry.revision
                    ))
                })?;
                Loaded {
                    revision: entry.revision,
                    stored: Some(stored),
                }
            }
        })
    }

    /// Writes a key's state, as [`encode`] made it, if its last revision is still `expected`
    /// (0: if it has none). With a `ttl` the server removes the entry that long after the
    /// write (rounded up to whole seconds) unless a later write replaces it.
    pub async fn write(
        &self,
        key: &str,
        value: Bytes,
        expected: u64,
        ttl: Option<Duration>,
    ) -> Result<Written, RuntimeError> {
        if let Some(ttl) = ttl.filter(|_| self.ttl_allowed) {
            return self.write_with_ttl(key, value, expected, ttl).await;
        }
        match self.kv.update(key, value, expected).await {
            Ok(revision) => Ok(Written::Ok(revision)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(Written::Conflict),
            Err(e) => Err(RuntimeError::Nats(format!("write state {key}: {e}"))),
        }
    }

    /// What `kv::Store::update` does (one publish to the key's subject, expecting its last
    /// sequence), plus the `Nats-TTL` header, which the KV API only offers for creates.
    async fn write_with_ttl(
        &self,
        key: &str,
        value: Bytes,
        expected: u64,
        ttl: Duration,
    ) -> Result<Written, RuntimeError> {
        let failed =
            |e: &dyn std::fmt::Display| RuntimeError::Nats(format!("write state {key}: {e}"));
        let subject = format!(
            "{}{key}",
            self.kv.put_prefix.as_deref().unwrap_or(&self.kv.prefix)
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            expected.to_string().as_str(),
        );
        headers.insert(
            async_nats::header::NATS_MESSAGE_TTL,
            ttl_seconds(ttl).to_string().as_str(),
        );
        let ack = self
            .js
            .publish_with_headers(subject, headers, value)
            .await
            .map_err(|e| failed(&e))?;
        match ack.await {
            Ok(ack) => Ok(Written::Ok(ack.sequence)),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(Written::Conflict),
            Err(e) => Err(failed(&e)),
        }
    }

    /// Sends parts of a key's state (see `Domain::unwritten_parts`) to the domain's parts
    /// bucket, each under its own key (`resource::part_key`). Sent before the state that names
    /// them but to another stream, so nats-server may store them a moment after it;
    /// [`PendingParts::stored`] waits for their acknowledgements.
    pub async fn send_parts(
        &self,
        parts: &[(String, Bytes)],
    ) -> Result<PendingParts, RuntimeError> {
        let store = self.parts()?;
        let prefix = store.put_prefix.as_deref().unwrap_or(&store.prefix);
        let mut acks = Vec::with_capacity(parts.len());
        for (key, value) in parts {
            let ack = self
                .js
                .publish(format!("{prefix}{key}"), value.clone())
                .await
                .map_err(|e| RuntimeError::Nats(format!("write part {key}: {e}")))?;
            acks.push(ack);
        }
        Ok(PendingParts { acks })
    }

    fn parts(&self) -> Result<&kv::Store, RuntimeError> {
        self.parts.as_ref().ok_or_else(|| {
            RuntimeError::NotProvisioned(format!("no parts bucket beside {}", self.kv.name))
        })
    }

    /// Reads a part of a key's state (`None` when KV has none, or no longer).
    pub async fn get_part(&self, key: &str) -> Result<Option<Bytes>, RuntimeError> {
        self.parts()?
            .get(key)
            .await
            .map_err(|e| RuntimeError::Nats(format!("read part {key}: {e}")))
    }

    /// Deletes a key's state if its last revision is still `expected`; returns the revision of
    /// the delete marker (what the next write must expect).
    pub async fn remove(&self, key: &str, expected: u64) -> Result<u64, RuntimeError> {
        self.kv
            .delete_expect_revision(key, Some(expected))
            .await
            .map_err(|e| RuntimeError::Nats(format!("remove state {key}: {e}")))?;
        match self.kv.entry(key).await {
            Ok(Some(entry)) => Ok(entry.revision),
            Ok(None) => Ok(0),
            Err(e) => Err(RuntimeError::Nats(format!("read state {key}: {e}"))),
        }
    }
}

/// A key's state as JSON, ready for [`StateStore::write`] (and to be measured first).
pub(crate) fn encode<S: Serialize>(key: &str, stored: &Stored<S>) -> Result<Bytes, RuntimeError> {
    serde_json::to_vec(stored)
        .map(Bytes::from)
        .map_err(|e| RuntimeError::Corrupt(format!("serialize state {key}: {e}")))
}

/// A TTL in the whole seconds `Nats-TTL` takes: rounded up, at least one.
fn ttl_seconds(ttl: Duration) -> u64 {
    ttl.as_millis().div_ceil(1000).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_whole_seconds() {
        assert_eq!(ttl_seconds(Duration::ZERO), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(1)), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(ttl_seconds(Duration::from_secs(86_400)), 86_400);
    }
}
