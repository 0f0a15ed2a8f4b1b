//! The JSON stored in the state buckets (`tw_state_{domain}`): a key's domain state plus what
//! the runtime needs for order and exactly-once effect. Written by handlers, read by edges (for
//! `initial_state`, `sync`, …) and by anyone inspecting a bucket.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One key's stored state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored<S> {
    /// The input stream sequence of the last command applied to this key. A command at or
    /// below it is a redelivery and changes nothing.
    pub applied: u64,
    /// The per-key event sequence: the `seq` of the last event fanned out for this key.
    pub seq: u64,
    /// The domain state.
    pub state: S,
    /// What the last write produced, published again if that write's commands come back.
    #[serde(default)]
    pub outbox: Outbox,
}

/// The events and records of the last write of a key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outbox {
    /// Fan-out frames with their sequence numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<SequencedEvent>,
    /// Records for SQL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<Record<crate::Frame>>,
    /// Commands for other keys or domains (e.g. an order announced on the events feed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<Emitted>,
    /// Frames for another key's live fan-out, without a sequence number there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<Notice>,
}

/// A frame one key's handler fans out on another key's output subject directly (core NATS, no
/// `Tw-Seq`), where a command to that key would cost a JetStream round trip and a write of its
/// state: a device's scans and presence on its tenant's events feed. Published with the
/// `Tw-Notice` header (its place among the sending key's notices), by which edges drop the
/// repeats a handler takeover publishes with the outbox again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// The domain whose output subject carries it.
    pub domain: crate::Domain,
    /// The tenant.
    pub tenant: String,
    /// The key whose subscribers get it.
    pub key: String,
    /// The client frame.
    pub frame: crate::Frame,
}

/// A command one key's handler sends to another key, usually of another domain. Published to
/// that key's input subject with `Nats-Msg-Id` = [`Emitted::id`], so publishing it again after a
/// crash stores it once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Emitted {
    /// Unique per emitted command.
    pub id: String,
    /// The target domain.
    pub domain: crate::Domain,
    /// The target tenant.
    pub tenant: String,
    /// The target key.
    pub key: String,
    /// The command, as the target domain reads it (serialized once, when emitted).
    pub command: crate::Frame,
    /// The emitting command's acceptance time (ms), the target's "now".
    pub at: i64,
}

/// One fan-out frame and its per-key sequence number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequencedEvent {
    /// The sequence number.
    pub seq: u64,
    /// The client frame, `seq` included, as the edges receive it.
    pub frame: crate::Frame,
}

/// A business record on its way to SQL, as published on `tw.rec.{domain}.{tenant}.{kind}`:
/// alone, or in a JSON array with the other records of its tenant and kind from the same handler
/// batch (one JetStream message for a batch's orders or scans; read with
/// [`Record::parse_message`]).
/// Handlers hold its fields as a [`crate::Frame`] (serialized once, copied into the outbox and
/// the publish); the SQL writer reads them as a [`Value`] (the default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Record<D = Value> {
    /// What kind of record: names the table it goes to.
    pub kind: String,
    /// Unique per record: a second write with the same id changes nothing.
    pub id: String,
    /// The tenant.
    #[serde(default)]
    pub tenant: String,
    /// The record's fields.
    pub data: D,
}

impl Record {
    /// The records of one message of the records stream: one record, or an array of them.
    /// `None` when it is neither (the message can never be written).
    pub fn parse_message(payload: &[u8]) -> Option<Vec<Record>> {
        match payload.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => serde_json::from_slice::<Vec<Record>>(payload)
                .ok()
                .filter(|records| !records.is_empty()),
            _ => serde_json::from_slice::<Record>(payload)
                .ok()
                .map(|record| vec![record]),
        }
    }
}

/// What an edge reads of a stored state: the sequence and the domain state, nothing else.
#[derive(Debug, Deserialize)]
pub struct StoredView<'a> {
    /// The input stream sequence of the last command the state includes.
    #[serde(default)]
    pub applied: u64,
    /// The per-key event sequence the state includes.
    pub seq: u64,
    /// The domain state, unparsed.
    #[serde(borrow)]
    pub state: &'a serde_json::value::RawValue,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_records_message_holds_one_record_or_an_array_of_them() {
        let one = br#"{"kind":"order","id":"a","tenant":"t","data":{"x":1}}"#;
        let many = br#" [{"kind":"order","id":"a","data":1},{"kind":"order","id":"b","data":2}]"#;
        let ids = |payload: &[u8]| {
            Record::parse_message(payload)
                .map(|records| records.into_iter().map(|r| r.id).collect::<Vec<_>>())
        };
        assert_eq!(ids(one), Some(vec!["a".to_string()]));
        assert_eq!(ids(many), Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(
            ids(b"[]"),
            None,
            "an empty array is no message a handler sends"
        );
        assert_eq!(ids(b"[{\"id\":1}]"), None);
        assert_eq!(ids(b"not json"), None);
    }

    #[test]
    fn an_edge_reads_seq_and_state_without_the_outbox() {
        let stored = Stored {
            applied: 9,
            seq: 4,
            state: json!({"a": 1}),
            outbox: Outbox {
                events: vec![SequencedEvent {
                    seq: 4,
                    frame: crate::Frame::new(json!({"type":"x","seq":4})),
                }],
                records: vec![],
                commands: vec![],
                notices: vec![],
            },
        };
        let text = serde_json::to_string(&stored).expect("serialize");
        let view: StoredView<'_> = serde_json::from_str(&text).expect("view");
        assert_eq!(view.seq, 4);
        assert_eq!(view.state.get(), r#"{"a":1}"#);
    }
}
