//! The value each edge refreshes in the `tw_edges` bucket (written by the edge's presence task,
//! read by `tablewire status`): who it is and how many sockets it holds.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One edge's presence, plain JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgePresence {
    /// The edge's id.
    pub edge: String,
    /// Its process id.
    pub pid: u32,
    /// Open WebSocket connections by endpoint (`display`, `collab`, `pos`, …).
    pub sockets: BTreeMap<String, u64>,
    /// True once it is draining (closing its sockets with 1001).
    #[serde(default)]
    pub draining: bool,
    /// When it wrote this, milliseconds since the Unix epoch.
    pub at: i64,
}

impl EdgePresence {
    /// Every open socket, whatever its endpoint.
    pub fn total_sockets(&self) -> u64 {
        self.sockets.values().sum()
    }
}
