//! Announces this edge and its socket counts in the `tw_edges` bucket every few seconds, and
//! removes the entry when the edge stops, so `tablewire status` can list live edges from any
//! machine that reaches NATS. Started by [`Edge::run`](crate::Edge::run).

use crate::node::Node;
use async_nats::jetstream::{self, kv};
use std::collections::BTreeMap;
use std::sync::Arc;
use tablewire_nats::resource;
use tablewire_schemas::presence::EdgePresence;
use tracing::{debug, warn};

/// What this edge announces now.
pub fn current(node: &Node) -> EdgePresence {
    let mut sockets = BTreeMap::new();
    for conn in node.conns.all() {
        *sockets.entry(conn.endpoint.to_string()).or_insert(0u64) += 1;
    }
    EdgePresence {
        edge: node.id.clone(),
        pid: std::process::id(),
        sockets,
        draining: node.draining(),
        at: crate::publish::now_ms(),
    }
}

/// Refreshes the entry every [`resource::EDGE_PRESENCE_INTERVAL`] until aborted. A missing
/// bucket (NATS provisioned by an older version) is reported once and looked for again later;
/// the edge serves either way.
pub async fn run(node: Arc<Node>) {
    let js = jetstream::new(node.client.clone());
    let key = resource::edge_key(&node.id);
    let mut bucket: Option<kv::Store> = None;
    let mut warned = false;
    let mut tick = tokio::time::interval(resource::EDGE_PRESENCE_INTERVAL);
    loop {
        tick.tick().await;
        if bucket.is_none() {
            match js.get_key_value(resource::EDGES_BUCKET).await {
                Ok(store) => bucket = Some(store),
                Err(e) => {
                    if !warned {
                        warn!(error = %e, bucket = resource::EDGES_BUCKET,
                            "edge presence not announced; run `tablewire provision`");
                        warned = true;
                    }
                    continue;
                }
            }
        }
        let Some(store) = &bucket else { continue };
        match serde_json::to_vec(&current(&node)) {
            Ok(value) => {
                if let Err(e) = store.put(&key, value.into()).await {
                    debug!(error = %e, "edge presence not refreshed");
                }
            }
            Err(e) => debug!(error = %e, "edge presence not encoded"),
        }
    }
}

/// Removes this edge's entry (when it stops), so it leaves the list before its entry expires.
pub async fn remove(node: &Node) {
    let js = jetstream::new(node.client.clone());
    if let Ok(store) = js.get_key_value(resource::EDGES_BUCKET).await {
        let _ = store.delete(resource::edge_key(&node.id)).await;
    }
}
