//! Makes a written state's effects visible, for [`super::key`] and [`super::batch`]: its events
//! and notices fanned out on core NATS, replies to senders, emitted commands stored in their
//! input streams and records in the records stream (both deduplicated by message id). Everything
//! here may run twice for one write (a republished outbox): edges drop repeated sequence numbers
//! and notice places, JetStream repeated message ids.

use super::park;
use super::shared::Shared;
use crate::domain::Domain;
use crate::error::RuntimeError;
use async_nats::HeaderMap;
use bytes::Bytes;
use std::collections::HashMap;
use tablewire_nats::subject;
use tablewire_schemas::stored::{Outbox, Record};
use tablewire_schemas::{Frame, Origin};
use tracing::warn;

/// Fans a write's events out on core NATS (edges drop repeated sequence numbers), then its
/// notices to other keys' subscribers (placed by `applied`, the write's last command, so edges
/// drop a notice published again).
pub(crate) async fn publish_events<D: Domain>(
    shared: &Shared<D>,
    tenant: &str,
    key: &str,
    applied: u64,
    outbox: &Outbox,
) -> Result<(), RuntimeError> {
    if !outbox.events.is_empty() {
        let subject = subject::output(D::NAME, tenant, key);
        for event in &outbox.events {
            let mut headers = HeaderMap::new();
            headers.insert(subject::header::SEQ, event.seq.to_string().as_str());
            let payload = Bytes::copy_from_slice(event.frame.get().as_bytes());
            shared
                .client
                .publish_with_headers(subject.clone(), headers, payload)
                .await
                .map_err(|e| RuntimeError::Nats(format!("publish event: {e}")))?;
        }
        shared
            .metrics
            .events
            .get_or_create(&shared.label)
            .inc_by(outbox.events.len() as u64);
    }
    for (index, notice) in outbox.notices.iter().enumerate() {
        let payload = Bytes::copy_from_slice(notice.frame.get().as_bytes());
        let mut headers = HeaderMap::new();
        let position = subject::header::notice_position(D::NAME, tenant, key, applied, index);
        // Tenant and key were checked when the command was read; a header never panics here.
        let Ok(position) = position.parse::<async_nats::HeaderValue>() else {
            warn!(%position, "a notice position that is no header value; notice dropped");
            continue;
        };
        headers.insert(subject::header::NOTICE, position);
        shared
            .client
            .publish_with_headers(
                subject::output(notice.domain, &notice.tenant, &notice.key),
                headers,
                payload,
            )
            .await
            .map_err(|e| RuntimeError::Nats(format!("publish notice: {e}")))?;
    }
    Ok(())
}

/// Most bytes of records in one message of the records stream (nats-server's default limit for
/// a message is 1 MiB).
const MAX_RECORDS_MESSAGE: usize = 256 * 1024;

/// Records grouped by tenant and kind, in the order each group first appears and each group in
/// the order given, repeats (a republished outbox) left out; a group is cut where it would
/// pass [`MAX_RECORDS_MESSAGE`]. One message of the records stream per group (see
/// [`Record::parse_message`]).
fn group_records(records: &[Record<Frame>]) -> Vec<Vec<&Record<Frame>>> {
    let mut seen = std::collections::HashSet::new();
    // Per group: its records and their size so far.
    let mut groups: Vec<(Vec<&Record<Frame>>, usize)> = Vec::new();
    let mut open: HashMap<(&str, &str), usize> = HashMap::new();
    for record in records {
        if !seen.insert(record.id.as_str()) {
            continue;
        }
        let size = record.data.get().len() + record.id.len() + record.kind.len() + 64;
        let slot = (record.tenant.as_str(), record.kind.as_str());
        match open.get(&slot).copied() {
            Some(g) if groups[g].1 + size <= MAX_RECORDS_MESSAGE => {
                groups[g].0.push(record);
                groups[g].1 += size;
            }
            _ => {
                open.insert(slot, groups.len());
                groups.push((vec![record], size));
            }
        }
    }
    groups.into_iter().map(|(group, _)| group).collect()
}

/// The JetStream message id and payload of one group of records.
fn records_message(group: &[&Record<Frame>]) -> (String, Bytes) {
    match group {
        [record] => (
            record.id.clone(),
            Bytes::from(serde_json::to_vec(record).unwrap_or_default()),
        ),
        _ => (
            format!("{}+{}", group[0].id, group.len()),
            Bytes::from(serde_json::to_vec(group).unwrap_or_default()),
        ),
    }
}

/// Stores records in the records stream, one message per tenant and kind (a batch's scans or
/// orders are one message, not one each), deduplicated by message id, and waits until all are
/// stored.
pub(crate) async fn store_records<D: Domain>(
    shared: &Shared<D>,
    records: &[Record<Frame>],
) -> Result<(), RuntimeError> {
    let messages = group_records(records)
        .into_iter()
        .map(|group| {
            let (id, payload) = records_message(&group);
            let subject = subject::record(D::NAME, &group[0].tenant, &group[0].kind);
            (subject, id, payload)
        })
        .collect();
    store_all(shared, messages, "record").await
}

/// Stores a write's emitted commands in their input streams (deduplicated by their ids), all
/// before waiting, and waits until all are stored.
pub(crate) async fn publish_commands<D: Domain>(
    shared: &Shared<D>,
    outbox: &Outbox,
) -> Result<(), RuntimeError> {
    let mut acks = Vec::with_capacity(outbox.commands.len());
    for emitted in &outbox.commands {
        let envelope = crate::outgoing::envelope(
            emitted.domain,
            &emitted.tenant,
            &emitted.key,
            &emitted.id,
            emitted.at,
            emitted.command.raw().to_owned(),
        );
        acks.push(crate::outgoing::publish_command(&shared.js, &envelope).await?);
    }
    for ack in acks {
        ack.await
            .map_err(|e| RuntimeError::Nats(format!("command not stored: {e}")))?;
    }
    Ok(())
}

/// Publishes `(subject, message id, payload)` messages to JetStream, each deduplicated by its
/// `Nats-Msg-Id`, all before waiting, then waits until every one is stored; `what` names them
/// in errors.
async fn store_all<D: Domain>(
    shared: &Shared<D>,
    messages: Vec<(String, String, Bytes)>,
    what: &str,
) -> Result<(), RuntimeError> {
    let mut acks = Vec::with_capacity(messages.len());
    for (subject, id, payload) in messages {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
        let ack = shared
            .js
            .publish_with_headers(subject, headers, payload)
            .await
            .map_err(|e| RuntimeError::Nats(format!("publish {what}: {e}")))?;
        acks.push(ack);
    }
    for ack in acks {
        ack.await
            .map_err(|e| RuntimeError::Nats(format!("{what} not stored: {e}")))?;
    }
    Ok(())
}

/// Answers senders, best effort: commands from other handlers (no edge) and origins whose ids
/// would break a header are not answered.
pub(crate) async fn publish_replies<D: Domain>(shared: &Shared<D>, replies: Vec<(Origin, Frame)>) {
    // Commands emitted by other handlers have no edge: nobody to answer. An origin whose ids
    // would break a header is not answered either.
    for (origin, frame) in replies
        .into_iter()
        .filter(|(o, _)| !o.edge.is_empty() && park::answerable(o))
    {
        let mut headers = HeaderMap::new();
        if let Some(conn) = origin.conn {
            headers.insert(subject::header::CONN, conn.to_string().as_str());
        }
        if let Some(request) = &origin.request {
            headers.insert(subject::header::REQUEST, request.as_str());
        }
        let payload = Bytes::copy_from_slice(frame.get().as_bytes());
        // A reply is best effort: its sender may be gone; state and events are what count.
        let _ = shared
            .client
            .publish_with_headers(subject::edge_inbox(&origin.edge), headers, payload)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &str, id: &str) -> Record<Frame> {
        tenant_record("t1", kind, id, "")
    }

    fn tenant_record(tenant: &str, kind: &str, id: &str, filler: &str) -> Record<Frame> {
        Record {
            kind: kind.to_string(),
            id: id.to_string(),
            tenant: tenant.to_string(),
            data: Frame::new(serde_json::json!({"id": id, "filler": filler})),
        }
    }

    fn ids<'a>(group: &[&'a Record<Frame>]) -> Vec<&'a str> {
        group.iter().map(|r| r.id.as_str()).collect()
    }

    #[test]
    fn records_travel_one_message_per_kind_and_read_back_in_order() {
        let records = vec![
            record("order", "pos:t1._:7:0"),
            record("status", "pos:t1._:8:0"),
            record("order", "pos:t1._:9:0"),
        ];
        let groups = group_records(&records);
        assert_eq!(groups.len(), 2);
        let (id, payload) = records_message(&groups[0]);
        assert_eq!(
            id, "pos:t1._:7:0+2",
            "the same records give the same message id"
        );
        let read = Record::parse_message(&payload).expect("an array of records");
        let ids: Vec<&str> = read.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["pos:t1._:7:0", "pos:t1._:9:0"]);
        assert_eq!(read[1].data["id"], "pos:t1._:9:0");
        // A kind with one record goes as it always did: the record alone, under its own id.
        let (id, payload) = records_message(&groups[1]);
        assert_eq!(id, "pos:t1._:8:0");
        assert!(payload.starts_with(b"{"));
        assert_eq!(Record::parse_message(&payload).map(|r| r.len()), Some(1));
    }

    #[test]
    fn a_batch_of_keys_groups_records_by_tenant_and_drops_repeats() {
        let records = vec![
            tenant_record("a", "scan", "device:a.d1:5:0", ""),
            tenant_record("b", "scan", "device:b.d2:6:0", ""),
            tenant_record("a", "scan", "device:a.d3:7:0", ""),
            // A republished outbox of a key written again in the same batch.
            tenant_record("a", "scan", "device:a.d1:5:0", ""),
        ];
        let groups = group_records(&records);
        let shape: Vec<(&str, Vec<&str>)> = groups
            .iter()
            .map(|g| (g[0].tenant.as_str(), ids(g)))
            .collect();
        assert_eq!(
            shape,
            [
                ("a", vec!["device:a.d1:5:0", "device:a.d3:7:0"]),
                ("b", vec!["device:b.d2:6:0"]),
            ]
        );
    }

    #[test]
    fn a_group_is_cut_before_it_outgrows_one_message() {
        let filler = "x".repeat(100 * 1024);
        let records: Vec<_> = (0..5)
            .map(|i| tenant_record("t1", "order", &format!("pos:t1._:{i}:0"), &filler))
            .collect();
        let groups = group_records(&records);
        let sizes: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        assert_eq!(
            sizes,
            [2, 2, 1],
            "100 KiB records, at most 256 KiB a message"
        );
        let all: Vec<&str> = groups.iter().flat_map(|g| ids(g)).collect();
        let expected: Vec<String> = (0..5).map(|i| format!("pos:t1._:{i}:0")).collect();
        assert_eq!(all, expected, "every record once, in order");
        for group in &groups {
            assert!(records_message(group).1.len() <= MAX_RECORDS_MESSAGE);
        }
    }
}
