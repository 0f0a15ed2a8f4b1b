//! Replies kept with the write that made them (`Outbox::replies`): sent after the write, and
//! sent again by a partition worker that republishes a key's outbox after a takeover, so a
//! sender whose handler died between the write and the reply is still answered. Each carries
//! its place (`Tw-Reply`), by which edges drop a repeat. Called by [`super::key`].

use super::park;
use super::shared::Shared;
use crate::domain::Domain;
use async_nats::HeaderMap;
use bytes::Bytes;
use tablewire_nats::subject;
use tablewire_schemas::stored::{Reply, Stored};
use tablewire_schemas::{Frame, Origin};

/// The replies of a write worth keeping: those with an edge to answer them (commands emitted by
/// other handlers have none) and ids a header can carry.
pub(crate) fn keep(replies: &[(Origin, Frame)]) -> Vec<Reply> {
    replies
        .iter()
        .filter(|(origin, _)| !origin.edge.is_empty() && park::answerable(origin))
        .map(|(origin, frame)| Reply {
            origin: origin.clone(),
            frame: frame.clone(),
        })
        .collect()
}

/// Sends the replies kept in `stored`'s outbox to their edges, each placed by the write's
/// `applied` sequence and its index. Best effort: a sender may be gone; state and events are
/// what count.
pub(crate) async fn publish_kept<D: Domain, S>(
    shared: &Shared<D>,
    tenant: &str,
    key: &str,
    stored: &Stored<S>,
) {
    for (index, reply) in stored.outbox.replies.iter().enumerate() {
        let mut headers = HeaderMap::new();
        if let Some(conn) = reply.origin.conn {
            headers.insert(subject::header::CONN, conn.to_string().as_str());
        }
        if let Some(request) = &reply.origin.request {
            headers.insert(subject::header::REQUEST, request.as_str());
        }
        let position =
            subject::header::notice_position(D::NAME, tenant, key, stored.applied, index);
        // Tenant and key were checked when the command was read; a header never panics here.
        if let Ok(position) = position.parse::<async_nats::HeaderValue>() {
            headers.insert(subject::header::REPLY, position);
        }
        let payload = Bytes::copy_from_slice(reply.frame.get().as_bytes());
        let _ = shared
            .client
            .publish_with_headers(subject::edge_inbox(&reply.origin.edge), headers, payload)
            .await;
    }
}
