//! Each tenant's device settings (`tw_device_settings`, key `{tenant}`): stored by
//! `PUT /api/devices/settings` (in [`crate::device`]), held in memory on every edge by a KV watch,
//! and attached to each scan command, so the device handler applies the tenant's scan interval
//! without any read on the scan path.
//!
//! Why the edge attaches the value rather than the handler keeping its own copy: the interval a
//! scan is judged by then travels inside the command, in the input stream. Whichever handler
//! worker applies it — several per domain, one taking over a partition, a redelivery after a
//! crash — decides the same scan the same way, and handlers keep nothing in memory. An edge
//! loads every stored setting before it serves ([`DeviceSettings::start`]) and follows changes
//! as the watch delivers them (milliseconds); the edge that stores a change uses it at once.
//! Until another edge's watch delivers a change, scans through that edge carry the previous
//! value.

use async_nats::jetstream::kv;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;
use tablewire_nats::{resource, token};
use tablewire_schemas::device::Settings;
use tablewire_schemas::{ErrorBody, ErrorCode};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// The edge's copy of every tenant's device settings.
pub struct DeviceSettings {
    bucket: kv::Store,
    by_tenant: RwLock<HashMap<String, Settings>>,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

impl DeviceSettings {
    /// Loads the stored settings (waiting at most `patience` for them) and follows changes
    /// until dropped.
    pub async fn start(bucket: kv::Store, patience: Duration) -> Result<Arc<Self>, String> {
        let settings = Arc::new(DeviceSettings {
            bucket,
            by_tenant: RwLock::new(HashMap::new()),
            watcher: Mutex::new(None),
        });
        let mut entries = settings
            .bucket
            .watch_with_history(">")
            .await
            .map_err(|e| e.to_string())?;
        let stored = settings
            .bucket
            .status()
            .await
            .map_err(|e| e.to_string())?
            .values();
        if stored > 0 {
            let load = async {
                while let Some(Ok(entry)) = entries.next().await {
                    let current = entry.seen_current;
                    settings.apply(&entry);
                    if current {
                        break;
                    }
                }
            };
            if tokio::time::timeout(patience, load).await.is_err() {
                warn!("device settings not all loaded in time; the watch goes on loading them");
            }
        }
        let follower = tokio::spawn(follow(Arc::downgrade(&settings), entries));
        *settings.watcher.lock().unwrap_or_else(|p| p.into_inner()) = Some(follower);
        Ok(settings)
    }

    /// The scan interval `tenant` set, if it set one.
    pub fn scan_interval_ms(&self, tenant: &str) -> Option<u64> {
        self.by_tenant
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            .and_then(|s| s.scan_interval_ms)
    }

    /// `tenant`'s stored settings, read from KV (the defaults when it stored none).
    pub async fn load(&self, tenant: &str) -> Result<Settings, ErrorBody> {
        let stored = self
            .bucket
            .get(resource::device_settings_key(tenant))
            .await
            .map_err(|e| {
                warn!(error = %e, "device settings not read");
                ErrorBody::with_message(ErrorCode::Unavailable, "settings store unavailable")
            })?;
        match stored {
            Some(json) => serde_json::from_slice(&json).map_err(|e| {
                ErrorBody::with_message(ErrorCode::Internal, format!("stored settings: {e}"))
            }),
            None => Ok(Settings::default()),
        }
    }

    /// Stores `tenant`'s settings (already checked) and uses them at once on this edge.
    pub async fn store(&self, tenant: &str, settings: Settings) -> Result<(), ErrorBody> {
        let json = serde_json::to_vec(&settings)
            .map_err(|e| ErrorBody::with_message(ErrorCode::Internal, format!("settings: {e}")))?;
        self.bucket
            .put(resource::device_settings_key(tenant), json.into())
            .await
            .map_err(|e| {
                warn!(error = %e, "device settings not stored");
                ErrorBody::with_message(ErrorCode::Unavailable, "settings store unavailable")
            })?;
        self.set(tenant.to_string(), Some(settings));
        Ok(())
    }

    fn set(&self, tenant: String, settings: Option<Settings>) {
        let mut by_tenant = self.by_tenant.write().unwrap_or_else(|p| p.into_inner());
        match settings {
            Some(settings) => by_tenant.insert(tenant, settings),
            None => by_tenant.remove(&tenant),
        };
    }

    fn apply(&self, entry: &kv::Entry) {
        let Some(tenant) = token::decode(&entry.key) else {
            return debug!(key = %entry.key, "device settings under an unreadable key");
        };
        let settings = match entry.operation {
            kv::Operation::Put => match serde_json::from_slice::<Settings>(&entry.value) {
                Ok(settings) => Some(settings),
                Err(e) => return warn!(%tenant, error = %e, "unreadable device settings"),
            },
            kv::Operation::Delete | kv::Operation::Purge => None,
        };
        self.set(tenant.into_owned(), settings);
    }
}

impl Drop for DeviceSettings {
    fn drop(&mut self) {
        if let Some(watcher) = self.watcher.get_mut().ok().and_then(Option::take) {
            watcher.abort();
        }
    }
}

/// Applies changes until the settings are dropped, watching again (from each key's latest
/// value) when a watch ends.
async fn follow(settings: Weak<DeviceSettings>, mut entries: kv::Watch) {
    loop {
        while let Some(entry) = entries.next().await {
            let Some(settings) = settings.upgrade() else {
                return;
            };
            match entry {
                Ok(entry) => settings.apply(&entry),
                Err(e) => {
                    debug!(error = %e, "device settings watch failed");
                    break;
                }
            }
        }
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let Some(current) = settings.upgrade() else {
                return;
            };
            match current.bucket.watch_with_history(">").await {
                Ok(watch) => {
                    entries = watch;
                    break;
                }
                Err(e) => debug!(error = %e, "device settings watch not restarted; again"),
            }
        }
    }
}
