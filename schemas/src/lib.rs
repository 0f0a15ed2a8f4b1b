//! Every wire type of tablewire, and only here.
//!
//! # Layout
//! - [`error`] — the numbered error catalogue ([`ErrorCode`]), the error body every error
//!   frame and HTTP error carries, and the common error frame ([`ErrorFrame`]).
//! - [`envelope`] — the edge→handler envelope and the verified JWT claims inside it.
//! - [`frame`] — a client frame serialized once ([`Frame`]), as domains emit and outboxes keep it,
//!   and [`Sequenced`], a frame with its per-key `seq` first.
//! - [`stored`] — the JSON kept per key in the state buckets, and the records sent to SQL.
//! - [`display`] — seed 000: customer display sessions (`/session/{id}/…`).
//! - [`collab`] — seed 001: collaborative order rooms (`/parties/collaborative_order/{room}`).
//! - [`device`] — seed 003: RFID readers (`/ws/device`, `/api/rfid/scan`, device config).
//! - [`events`] — seed 004: the tenant events feed and how other domains publish to it.
//! - [`pos`] — seed 002: POS ↔ kitchen order sync (`/ws/restaurant-pos/{tenantId}`, `/api/orders`).
//! - [`voice`] — seed 004: voice sessions (`/voice-stream`) and the transcriber contract.
//! - [`presence`] — what each edge announces in the `tw_edges` bucket (its sockets), for
//!   `tablewire status`.
//! - [`text`] — the rule for free text other clients display: no markup (`<`, `>`).
//! - [`json_schemas`] — JSON Schema documents for clients, generated from these types and kept
//!   in `schemas/json/` (a test fails when they are stale; regenerate with
//!   `TABLEWIRE_WRITE_SCHEMAS=1 cargo test -p tablewire-schemas`).
//!
//! Each domain's protocol module ([`display`], [`collab`], [`pos`], [`device`], [`events`],
//! [`voice`]) owns that domain's frames in and out, its error frame (`error_frame`: the edge and
//! the handler both build it there), its records for SQL and what it announces on the events
//! feed. Frames that carry `seq` are [`Sequenced`].

pub mod collab;
pub mod device;
pub mod display;
pub mod envelope;
pub mod error;
pub mod events;
pub mod frame;
pub mod pos;
pub mod presence;
pub mod stored;
pub mod text;
pub mod voice;

pub use envelope::{Claims, Domain, Envelope, Origin};
pub use error::{ErrorBody, ErrorCode, ErrorFrame, HttpError};
pub use frame::{Frame, Sequenced};

/// The JSON Schema documents clients get, as `(file name, document)`.
pub fn json_schemas() -> Vec<(&'static str, serde_json::Value)> {
    fn doc<T: schemars::JsonSchema>() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default()
    }
    vec![
        ("error.json", doc::<error::HttpError>()),
        ("display.client.json", doc::<display::ClientFrame>()),
        ("display.server.json", doc::<display::ServerFrame>()),
        ("display.update.json", doc::<display::DisplayUpdate>()),
        ("display.init.json", doc::<display::InitRequest>()),
        ("display.state.json", doc::<display::SessionState>()),
        ("claims.json", doc::<envelope::Claims>()),
        (
            "envelope.json",
            doc::<envelope::Envelope<serde_json::Value>>(),
        ),
        ("record.json", doc::<stored::Record>()),
        ("events.event.json", doc::<events::EventFrame>()),
        ("collab.client.json", doc::<collab::ClientMessage>()),
        ("collab.state.json", doc::<collab::OrderState>()),
        ("pos.client.json", doc::<pos::ClientFrame>()),
        ("pos.server.json", doc::<pos::ServerFrame>()),
        ("pos.submit.json", doc::<pos::SubmitRequest>()),
        ("pos.settings.json", doc::<pos::Settings>()),
        ("events.client.json", doc::<events::ClientFrame>()),
        ("events.server.json", doc::<events::ServerFrame>()),
        ("events.publish.json", doc::<events::PublishRequest>()),
        ("voice.client.json", doc::<voice::ClientFrame>()),
        (
            "voice.transcribe.request.json",
            doc::<voice::TranscribeRequest>(),
        ),
        (
            "voice.transcribe.reply.json",
            doc::<voice::TranscribeReply>(),
        ),
        ("device.client.json", doc::<device::ClientFrame>()),
        ("device.scan.json", doc::<device::ScanRequest>()),
        ("device.config.json", doc::<device::DeviceConfig>()),
        ("device.settings.json", doc::<device::Settings>()),
        ("device.state.json", doc::<device::DeviceState>()),
    ]
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    #[test]
    fn json_schema_files_are_current() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("json");
        let write = std::env::var_os("TABLEWIRE_WRITE_SCHEMAS").is_some();
        let mut stale = Vec::new();
        for (name, schema) in super::json_schemas() {
            let text = serde_json::to_string_pretty(&schema).expect("schema serializes") + "\n";
            let path = dir.join(name);
            if write {
                std::fs::create_dir_all(&dir).expect("create schemas/json");
                std::fs::write(&path, &text).expect("write schema");
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(name);
            }
        }
        assert!(
            stale.is_empty(),
            "stale JSON Schema files {stale:?}: run TABLEWIRE_WRITE_SCHEMAS=1 cargo test -p tablewire-schemas"
        );
    }
}
