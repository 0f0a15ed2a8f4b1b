//! Reads and writes one key's [`Stored`] state in the domain's KV bucket, by compare-and-set on
//! the KV revision. Used by the partition workers.

use super::RuntimeError;
use async_nats::jetstream::kv;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tablewire_schemas::stored::Stored;

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

/// One domain's state bucket.
#[derive(Clone)]
pub(crate) struct StateStore {
    kv: kv::Store,
}

impl StateStore {
    pub fn new(kv: kv::Store) -> Self {
        StateStore { kv }
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

    /// Writes a key's state if its last revision is still `expected` (0: if it has none).
    pub async fn write<S: Serialize>(
        &self,
        key: &str,
        stored: &Stored<S>,
        expected: u64,
    ) -> Result<Written, RuntimeError> {
        let value = Bytes::from(
            serde_json::to_vec(stored)
                .map_err(|e| RuntimeError::Corrupt(format!("serialize state {key}: {e}")))?,
        );
        match self.kv.update(key, value, expected).await {
            Ok(revision) => Ok(Written::Ok(revision)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(Written::Conflict),
            Err(e) => Err(RuntimeError::Nats(format!("write state {key}: {e}"))),
        }
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
