//! The device side of one edge: the node's services, the tag directory, the presence bucket
//! and each tenant's watched device settings. Opened by [`crate::server::Edge::bind`].

use super::tags::TagDirectory;
use crate::device_settings::DeviceSettings;
use crate::node::{EdgeError, Node, open_bucket};
use async_nats::jetstream::{self, kv};
use std::sync::Arc;
use tablewire_nats::resource;

/// The device side of one edge.
pub struct DeviceEdge {
    pub(super) node: Arc<Node>,
    /// The RFID tag directory (`tw_device_tags`).
    pub(super) tags: TagDirectory,
    /// Presence of the devices this edge holds (`tw_device_presence`).
    pub(super) presence: kv::Store,
    /// Each tenant's device settings (`tw_device_settings`), watched.
    pub(super) settings: Arc<DeviceSettings>,
}

impl DeviceEdge {
    /// Opens the device buckets and starts watching the settings.
    pub async fn open(node: Arc<Node>) -> Result<Arc<DeviceEdge>, EdgeError> {
        let js = jetstream::new(node.client.clone());
        let tags = open_bucket(&js, resource::DEVICE_TAGS_BUCKET).await?;
        let presence = open_bucket(&js, resource::DEVICE_PRESENCE_BUCKET).await?;
        let settings = open_bucket(&js, resource::DEVICE_SETTINGS_BUCKET).await?;
        let settings = DeviceSettings::start(settings, node.config.bus_timeout)
            .await
            .map_err(|e| EdgeError::Nats(format!("{}: {e}", resource::DEVICE_SETTINGS_BUCKET)))?;
        Ok(Arc::new(DeviceEdge {
            node,
            tags: TagDirectory::new(tags),
            presence,
            settings,
        }))
    }
}
