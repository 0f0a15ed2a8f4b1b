//! Seed 000 (customer displays, formerly a Durable Object): the session state object, the
//! frames of `/session/{id}/display`, `/init`, `/update` and `/state` with the seed's names, the
//! display error frame and the session record.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How many entries `transcriptions` and `displayUpdates` keep (the newest).
pub const HISTORY_LIMIT: usize = 100;

/// The record kind of a session given its tenant by `/init` (table `display_sessions`).
pub const SESSION_RECORD: &str = "display_session";

/// The record of a session given its tenant, as the display handler writes it for SQL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    /// The session id.
    pub session_id: String,
    /// The tenant `/init` named.
    pub tenant_id: Option<String>,
    /// When the session was created, ms since the Unix epoch.
    pub started_at: i64,
    /// The stream sequence of the `init` (a later version replaces an earlier row).
    pub version: u64,
}

/// A display session's state, its history entries of type `U`: [`SessionState`] as clients see
/// it, [`StoredSession`] as the handler stores it (the same JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(
    rename = "SessionState",
    description = "The session state, exactly as `initial_state` and `GET /session/{id}/state` show it."
)]
pub struct Session<U> {
    /// The session id from the path.
    pub session_id: String,
    /// The tenant given to `/init`, or null.
    pub tenant_id: Option<String>,
    /// The `displayData` of the last `order_summary` or `order_update`, or null.
    pub current_order: Option<Value>,
    /// The last 100 updates of type `transcription`.
    pub transcriptions: Vec<U>,
    /// The last 100 updates of any type.
    pub display_updates: Vec<U>,
    /// When the session was created, milliseconds since the Unix epoch.
    pub started_at: i64,
}

/// The session state, exactly as `initial_state` and `GET /session/{id}/state` show it.
pub type SessionState = Session<DisplayUpdate>;

/// A session as the display handler stores it: the JSON of [`SessionState`], with each entry of
/// `transcriptions` and `displayUpdates` kept as the JSON it was encoded to when applied, so a
/// write appends one update's bytes instead of encoding the whole history again.
pub type StoredSession = Session<EncodedUpdate>;

impl<U> Session<U> {
    /// A fresh session, as the first display, update or init creates it.
    pub fn new(session_id: impl Into<String>, started_at: i64) -> Self {
        Session {
            session_id: session_id.into(),
            tenant_id: None,
            current_order: None,
            transcriptions: Vec::new(),
            display_updates: Vec::new(),
            started_at,
        }
    }
}

/// A [`DisplayUpdate`] as JSON, encoded once (its `timestamp` set).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EncodedUpdate(Box<serde_json::value::RawValue>);

impl EncodedUpdate {
    /// Encodes an update.
    pub fn new(update: &DisplayUpdate) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(update).map(EncodedUpdate)
    }

    /// The JSON.
    pub fn json(&self) -> &serde_json::value::RawValue {
        &self.0
    }

    /// Its encoded length, bytes.
    pub fn len(&self) -> usize {
        self.0.get().len()
    }

    /// Never true: an update encodes to at least `{}`.
    pub fn is_empty(&self) -> bool {
        self.0.get().is_empty()
    }

    /// The update's `timestamp` (read from the JSON; used only when trimming).
    pub fn timestamp(&self) -> Option<i64> {
        #[derive(Deserialize)]
        struct Stamp {
            timestamp: Option<i64>,
        }
        serde_json::from_str::<Stamp>(self.0.get())
            .ok()
            .and_then(|s| s.timestamp)
    }

    /// The update, decoded.
    pub fn decode(&self) -> Result<DisplayUpdate, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }
}

impl PartialEq for EncodedUpdate {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

/// One display update: the body of `POST /session/{id}/update`, and the `update` of an
/// `update` frame. Fields other than `type`, `displayData` and `timestamp` are kept as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DisplayUpdate {
    /// What to show: `transcription`, `dish_card`, `menu`, `order_summary`, `order_update`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The content for the display.
    #[serde(default)]
    pub display_data: Value,
    /// When the server accepted the update, milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    /// Any other fields, passed through unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The longest update `type` accepted, bytes.
pub const MAX_TYPE_LEN: usize = 64;

impl DisplayUpdate {
    /// Checks what every update must have: a non-empty `type` of at most [`MAX_TYPE_LEN`] bytes.
    pub fn check(&self) -> Result<(), String> {
        if self.kind.trim().is_empty() {
            Err("update type is empty".to_string())
        } else if self.kind.len() > MAX_TYPE_LEN {
            Err(format!("update type is longer than {MAX_TYPE_LEN} bytes"))
        } else {
            Ok(())
        }
    }
}

/// Update types that also go to `transcriptions`.
pub const TRANSCRIPTION: &str = "transcription";
/// Update types that also replace `currentOrder`.
pub const ORDER_TYPES: [&str; 2] = ["order_summary", "order_update"];

/// The body of `POST /session/{id}/init`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitRequest {
    /// The tenant the session belongs to.
    #[serde(default)]
    pub tenant_id: Option<String>,
}

/// Client → server frames on `/session/{id}/display`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Application-level heartbeat; answered with `pong`.
    Ping,
}

/// Server → client frames on `/session/{id}/display`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Sent on connect (and again after a detected gap): the whole state.
    InitialState {
        /// The state.
        state: SessionState,
        /// Server time, ms.
        timestamp: i64,
        /// The per-session event sequence the state includes; updates continue at `seq + 1`.
        seq: u64,
    },
    /// One update, in order.
    Update {
        /// The update.
        update: DisplayUpdate,
        /// Server time, ms.
        timestamp: i64,
        /// Per-session sequence number: gaps and repeats are detectable.
        seq: u64,
    },
    /// Answer to `ping`.
    Pong {
        /// Server time, ms.
        timestamp: i64,
    },
    /// Something the client sent could not be used; the connection stays open.
    Error {
        /// The error.
        #[serde(flatten)]
        error: crate::error::ErrorBody,
        /// Server time, ms.
        timestamp: i64,
    },
}

/// The tenant part of display subjects and keys. Seed 000 addresses a session by its id alone
/// (no tenant in its paths, no credentials on displays), so all sessions share this tenant and
/// the session id is the capability; `tenantId` in the state is data set by `/init`.
pub const SHARED_TENANT: &str = "_";

/// `initial_state` with the state passed through as stored (the edge builds it from KV without
/// parsing the state). Same JSON as [`ServerFrame::InitialState`], `seq` last as it has always
/// been (clients and the benchmarks match the frame's start, `{"type":"initial_state"`).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename = "initial_state")]
pub struct InitialStateRaw<'a> {
    /// The state, as stored.
    pub state: &'a serde_json::value::RawValue,
    /// Server time, ms.
    pub timestamp: i64,
    /// The per-session event sequence the state includes.
    pub seq: u64,
}

/// The `update` frame as the display handler emits it; the runtime adds `seq` (see
/// [`crate::Sequenced`]), which makes it [`ServerFrame::Update`].
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename = "update")]
pub struct UpdateFrame<'a> {
    /// The update, as applied (encoded once, see [`EncodedUpdate`]).
    pub update: &'a serde_json::value::RawValue,
    /// Server time, ms.
    pub timestamp: i64,
}

/// What the display handler answers an HTTP request (`/init`, `/update`) once its write is
/// applied: `{"type":"applied","sequence":…}`; the edge then answers [`Accepted`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "applied")]
pub struct Applied {
    /// The command's input stream sequence.
    pub sequence: u64,
}

/// The error frame of a display socket ([`ServerFrame::Error`]); the edge and the display
/// handler both build it here.
pub fn error_frame(error: &crate::ErrorBody, timestamp: i64) -> ServerFrame {
    ServerFrame::Error {
        error: error.clone(),
        timestamp,
    }
}

/// Commands of the display domain, inside the envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Create the session if it does not exist (a display connected first).
    Open,
    /// `POST /init`: create the session, or set its tenant.
    Init {
        /// The tenant.
        #[serde(rename = "tenantId")]
        tenant_id: Option<String>,
    },
    /// `POST /update`.
    Update {
        /// The update as posted.
        update: DisplayUpdate,
    },
}

/// The answer to a successful `POST /init` or `POST /update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// Always true.
    pub success: bool,
    /// The session.
    pub session_id: String,
    /// The message id the update was stored under (send it again as `Idempotency-Key` to retry safely).
    pub message_id: String,
    /// True when the same message id was already accepted earlier: nothing new was stored.
    pub duplicate: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn state_uses_the_seed_field_names() {
        let state = SessionState::new("abc123", 1234567890);
        let json = serde_json::to_value(&state).expect("serialize");
        assert_eq!(
            json,
            json!({"sessionId":"abc123","tenantId":null,"currentOrder":null,
                   "transcriptions":[],"displayUpdates":[],"startedAt":1234567890})
        );
    }

    #[test]
    fn update_keeps_unknown_fields_and_the_type_tag() {
        let update: DisplayUpdate = serde_json::from_value(
            json!({"type":"dish_card","displayData":{"dish":{"n":1}},"lang":"en"}),
        )
        .expect("parse");
        assert_eq!(update.kind, "dish_card");
        let frame = ServerFrame::Update {
            update,
            timestamp: 7,
            seq: 3,
        };
        let json = serde_json::to_value(&frame).expect("serialize");
        assert_eq!(json["type"], "update");
        assert_eq!(json["update"]["type"], "dish_card");
        assert_eq!(json["update"]["lang"], "en");
        assert_eq!(json["seq"], 3);
    }

    #[test]
    fn the_handlers_update_with_its_seq_reads_as_the_update_frame() {
        let update: DisplayUpdate =
            serde_json::from_value(json!({"type":"dish_card","displayData":1})).expect("parse");
        let encoded = EncodedUpdate::new(&update).expect("encode");
        let emitted = crate::Frame::new(UpdateFrame {
            update: encoded.json(),
            timestamp: 7,
        })
        .with_seq(3);
        let frame: ServerFrame = serde_json::from_str(emitted.get()).expect("update frame");
        assert_eq!(
            frame,
            ServerFrame::Update {
                update,
                timestamp: 7,
                seq: 3
            }
        );
        let state = serde_json::value::to_raw_value(&SessionState::new("s", 1)).expect("raw");
        let initial = InitialStateRaw {
            state: &state,
            timestamp: 2,
            seq: 4,
        };
        let text = serde_json::to_string(&initial).expect("initial");
        let typed = ServerFrame::InitialState {
            state: SessionState::new("s", 1),
            timestamp: 2,
            seq: 4,
        };
        assert_eq!(text, serde_json::to_string(&typed).expect("typed"));
        assert_eq!(
            serde_json::from_str::<ServerFrame>(&text).expect("initial_state"),
            ServerFrame::InitialState {
                state: SessionState::new("s", 1),
                timestamp: 2,
                seq: 4
            }
        );
    }

    #[test]
    fn a_stored_session_reads_and_writes_as_the_session_state() {
        let state: SessionState = serde_json::from_value(json!({
            "sessionId": "s", "tenantId": "t", "currentOrder": {"total": 5},
            "transcriptions": [{"type": "transcription", "displayData": {"text": "hi"},
                                "timestamp": 3, "lang": "en"}],
            "displayUpdates": [{"type": "transcription", "displayData": {"text": "hi"},
                                "timestamp": 3, "lang": "en"},
                               {"type": "dish_card", "displayData": [1, "two"], "timestamp": 4}],
            "startedAt": 1
        }))
        .expect("state");
        let stored: StoredSession =
            serde_json::from_str(&serde_json::to_string(&state).expect("state json"))
                .expect("stored");
        assert_eq!(stored.display_updates.len(), 2);
        assert_eq!(stored.display_updates[1].timestamp(), Some(4));
        assert_eq!(
            stored.transcriptions[0].decode().expect("decode"),
            state.transcriptions[0]
        );
        let back: SessionState =
            serde_json::from_slice(&serde_json::to_vec(&stored).expect("stored json"))
                .expect("back");
        assert_eq!(back, state);
        // An update encoded by itself is the entry the session state would hold.
        let encoded = EncodedUpdate::new(&state.display_updates[1]).expect("encode");
        assert_eq!(encoded, stored.display_updates[1]);
        assert_eq!(
            serde_json::to_value(StoredSession::new("s", 1)).expect("new"),
            serde_json::to_value(SessionState::new("s", 1)).expect("new")
        );
    }

    #[test]
    fn ping_parses_and_other_types_do_not() {
        assert_eq!(
            serde_json::from_str::<ClientFrame>(r#"{"type":"ping"}"#).expect("ping"),
            ClientFrame::Ping
        );
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"pong"}"#).is_err());
    }
}
