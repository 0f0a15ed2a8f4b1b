//! Tag lookups: what the tag directory (`tw_device_tags`, written by administrators) says of
//! a scanned tag, attached to the scan for the device handler.

use async_nats::jetstream::kv;
use tablewire_nats::resource;
use tablewire_schemas::device::TagEntry;
use tablewire_schemas::{ErrorBody, ErrorCode};

/// The tag directory.
pub struct TagDirectory {
    store: kv::Store,
}

impl TagDirectory {
    /// The directory kept in `store`.
    pub fn new(store: kv::Store) -> Self {
        TagDirectory { store }
    }

    /// Looks a tag up; `None` when the tag is unknown (or its entry unreadable).
    pub async fn lookup(&self, tenant: &str, tag: &str) -> Result<Option<TagEntry>, ErrorBody> {
        let entry = self
            .store
            .get(resource::device_tag_key(tenant, tag))
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "tag directory unavailable");
                ErrorBody::with_message(ErrorCode::Unavailable, "tag directory unavailable")
            })?;
        Ok(entry.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }
}
