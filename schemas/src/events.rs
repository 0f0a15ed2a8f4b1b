//! Seed 004 (restaurant events feed): the contract by which other domains (POS orders,
//! collaborative orders, devices) and the HTTP API put events on a tenant's feed, the frame
//! subscribers receive, the socket's other frames and its error frame (shared with the voice
//! socket). The feed is one key per tenant ([`FEED_KEY`]); its handler orders
//! and numbers the events, edges deliver them to that tenant's subscribers only.
//!
//! Other domains send [`Command::Publish`] with `Effects::emit(Domain::Events, tenant,
//! FEED_KEY, …)`; extend this module, do not change that command's shape.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The key of a tenant's event feed.
pub const FEED_KEY: &str = "_";

/// Event names of seed 004, and those tablewire adds for devices.
pub mod event {
    /// A new order.
    pub const ORDER_CREATED: &str = "order:created";
    /// An order's status or details changed.
    pub const ORDER_UPDATED: &str = "order:updated";
    /// An order's status changed (with the previous status).
    pub const ORDER_STATUS: &str = "order:status";
    /// A table's status changed.
    pub const TABLE_UPDATED: &str = "table:updated";
    /// A payment completed.
    pub const PAYMENT_PROCESSED: &str = "payment:processed";
    /// Kitchen display update.
    pub const KDS_UPDATE: &str = "kds:update";
    /// A device connected.
    pub const DEVICE_ONLINE: &str = "device:online";
    /// A device went away (closed, taken over, or silent past its heartbeat).
    pub const DEVICE_OFFLINE: &str = "device:offline";
    /// A device scanned a tag.
    pub const DEVICE_SCAN: &str = "device:scan";
}

/// The longest event name, bytes.
pub const MAX_EVENT_NAME: usize = 64;

/// Whether `name` looks like an event name: `word:word` of lowercase letters and `_`.
pub fn is_event_name(name: &str) -> bool {
    let word = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    name.len() <= MAX_EVENT_NAME
        && name
            .split_once(':')
            .is_some_and(|(a, b)| word(a) && word(b))
}

/// Commands of the events domain, inside the envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Put an event on the tenant's feed.
    Publish {
        /// The event name, e.g. `order:created`.
        event: String,
        /// The event's data, as seed 004 shapes it (e.g. `{"order": {...}}`).
        data: Value,
    },
}

/// What a subscriber receives: seed 004's event shape, plus the feed's sequence number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventFrame {
    /// The event name.
    #[serde(rename = "type")]
    pub kind: String,
    /// The event's data.
    pub data: Value,
    /// When it was accepted, RFC 3339 (UTC).
    pub timestamp: String,
    /// Per-tenant sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// The most subscriptions (event names) one connection may hold.
pub const MAX_SUBSCRIPTIONS: usize = 10;

/// Messages per minute one events connection may send.
pub const MESSAGES_PER_MINUTE: u32 = 100;

/// Filters of a subscription: `{"table_id": "t7"}` delivers only events whose data names that
/// value under that field (at the top of `data`, in an object inside it such as
/// `data.order.table_id`, or as `data.table.id` for `table_id`).
pub type Filters = serde_json::Map<String, Value>;

/// What a client sends on the events socket (`/` and `/ws`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Authenticate with a JWT; the first message, within 5 s, when the token did not come
    /// with the upgrade request.
    Auth {
        /// The JWT.
        token: String,
    },
    /// Receive these events (replacing the filters of any already subscribed). Until the
    /// first `subscribe`, a connection receives every event of its restaurant.
    Subscribe {
        /// Event names, e.g. `order:created`.
        events: Vec<String>,
        /// Only events matching every filter.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filters: Option<Filters>,
    },
    /// Stop receiving these events.
    Unsubscribe {
        /// Event names.
        events: Vec<String>,
    },
    /// Client heartbeat; answered with `pong`.
    Ping,
}

/// The `data` of the `subscribed` and `unsubscribed` acknowledgements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Subscriptions {
    /// Every event name the connection is subscribed to now.
    pub events: Vec<String>,
}

/// What the edge sends on the events socket besides the events themselves ([`EventFrame`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Authentication succeeded; events of the token's restaurant follow.
    Connected {
        /// RFC 3339.
        timestamp: String,
    },
    /// Answer to `ping`.
    Pong {
        /// RFC 3339.
        timestamp: String,
    },
    /// A `subscribe` was accepted.
    Subscribed {
        /// The subscriptions now active.
        data: Subscriptions,
        /// RFC 3339.
        timestamp: String,
    },
    /// An `unsubscribe` was accepted.
    Unsubscribed {
        /// The subscriptions now active.
        data: Subscriptions,
        /// RFC 3339.
        timestamp: String,
    },
    /// Something the client sent was refused; the connection stays open.
    Error {
        /// `code` (catalogue name), `errorCode`, `message`, `retryable`, `retryAfterMs`.
        data: crate::ErrorBody,
        /// RFC 3339.
        timestamp: String,
    },
}

/// The error frame of seed 004's sockets (events and voice), `{"type":"error", data,
/// timestamp}`: the edge (for what it refuses) and the voice handler (for its rejections) both
/// build it here. Seed 004's clients switch on `INVALID_MESSAGE` for any message they got
/// wrong, so malformed JSON and unknown types carry that code, with the catalogue's finer one
/// in `data.detail`.
pub fn error_frame(error: crate::ErrorBody, timestamp: String) -> ServerFrame {
    let data = match error.code {
        crate::ErrorCode::MalformedJson | crate::ErrorCode::UnknownType => {
            error.coarsened(crate::ErrorCode::InvalidMessage)
        }
        _ => error,
    };
    ServerFrame::Error { data, timestamp }
}

/// What the events handler answers a publish once it is on the feed: `{"type":"published"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "published")]
pub struct Published {}

/// `POST /api/events`: a backend publishes an event to its restaurant's feed (service JWT).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PublishRequest {
    /// The event name, e.g. `table:updated`.
    #[serde(rename = "type", alias = "event")]
    pub kind: String,
    /// The event's data in seed 004's shape.
    #[serde(default)]
    pub data: Value,
}

/// The answer to `POST /api/events`: the event is stored and will be delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublishAccepted {
    /// Always true.
    pub success: bool,
    /// The message id (the `Idempotency-Key` when one was sent).
    pub message_id: String,
    /// True when this `Idempotency-Key` was seen before and nothing new was published.
    pub duplicate: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names() {
        for ok in [
            event::ORDER_CREATED,
            event::KDS_UPDATE,
            event::DEVICE_SCAN,
            "a_b:c",
        ] {
            assert!(is_event_name(ok), "{ok}");
        }
        for bad in [
            "order",
            "Order:created",
            "order:",
            ":x",
            "a:b:c",
            "a b:c",
            &"a:".repeat(40),
        ] {
            assert!(!is_event_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_error_frame_coarsens_what_seed_clients_switch_on() {
        use crate::{ErrorBody, ErrorCode};
        let frame = error_frame(ErrorBody::new(ErrorCode::MalformedJson), "t".into());
        let json = serde_json::to_value(&frame).expect("serialize");
        assert_eq!(json["type"], "error");
        assert_eq!(json["data"]["code"], "INVALID_MESSAGE");
        assert_eq!(json["timestamp"], "t");
        let frame = error_frame(ErrorBody::new(ErrorCode::Conflict), "t".into());
        let json = serde_json::to_value(&frame).expect("serialize");
        assert_eq!(json["data"]["code"], "CONFLICT");
        assert_eq!(
            serde_json::to_string(&Published {}).expect("published"),
            r#"{"type":"published"}"#
        );
    }

    #[test]
    fn publish_has_a_stable_shape() {
        let c = Command::Publish {
            event: "order:created".into(),
            data: serde_json::json!({"order": {"id": 1}}),
        };
        assert_eq!(
            serde_json::to_value(&c).expect("serialize"),
            serde_json::json!({"type": "publish", "event": "order:created", "data": {"order": {"id": 1}}})
        );
    }
}
