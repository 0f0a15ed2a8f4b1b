//! Seed 001 (collaborative order rooms, PartyKit protocol at `/parties/collaborative_order/{room}`):
//! the client messages with the seed's field names, the order state every server frame carries,
//! the frames out (`sync`, changes, the error frame), the records (a finalized order, an archived
//! room), the feed's announcement, and the commands edges and the expiry sweeper put in the
//! envelope. Read by `edge` and `handlers`.

use crate::ErrorBody;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The PartyKit party name of collaborative orders (the path segment after `/parties/`).
pub const PARTY: &str = "collaborative_order";

/// Limits on what a room accepts.
pub mod limit {
    /// Longest participant id, characters.
    pub const PARTICIPANT_ID: usize = 128;
    /// Longest participant name, characters (longer names are cut).
    pub const NAME: usize = 64;
    /// Longest dish name, characters.
    pub const DISH_NAME: usize = 120;
    /// Longest dish type, characters.
    pub const DISH_TYPE: usize = 32;
    /// Longest customization, characters (longer ones are cut).
    pub const CUSTOMIZATION: usize = 200;
    /// Longest circle id or phone, characters.
    pub const SHORT_FIELD: usize = 64;
    /// Longest `tenantId` an open-tenant room shows, characters (longer ones are cut).
    pub const TENANT_ID: usize = 128;
    /// Smallest and largest quantity of one item.
    pub const QUANTITY: std::ops::RangeInclusive<u32> = 1..=99;
    /// Largest unit price, minor units.
    pub const PRICE: u64 = 10_000_000;
    /// Most items in one order.
    pub const ITEMS: usize = 200;
    /// Most participants in one room.
    pub const PARTICIPANTS: usize = 50;
}

/// Who sent a client message: the seed's `participantId`, `participantName`, `timestamp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sender {
    /// The participant (seed: `tenant_9876543210`).
    pub participant_id: String,
    /// The participant's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant_name: Option<String>,
    /// The client's clock, ms; informational only (the server uses its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<f64>,
}

/// `join` data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinData {
    /// The circle (group) the order is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circle_id: Option<String>,
    /// The tenant the client believes it is in. Never decides the room's tenant (the token, or
    /// without one the edge's open tenant, does); a tokenless room's first join sets the
    /// `tenantId` the room shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The participant's phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// `add_item` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddItemData {
    /// The dish.
    pub dish_name: String,
    /// e.g. `veg`, `non-veg`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dish_type: Option<String>,
    /// How many, 1..99.
    pub quantity: u32,
    /// Unit price in minor units (integer).
    pub price: u64,
    /// Free text, e.g. "Extra spicy".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customization: Option<String>,
}

/// `remove_item` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemRef {
    /// The server-assigned item id (`item_…`).
    pub item_id: String,
}

/// `update_quantity` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuantityData {
    /// The item.
    pub item_id: String,
    /// The new quantity, 1..99.
    pub quantity: u32,
}

/// How the bill is split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SplitType {
    /// Everyone pays the same; remainder minor units go to the earliest joiners.
    #[default]
    Equal,
    /// Each participant pays for the items they added.
    Itemized,
    /// Amounts supplied by the client; they must sum to the total. Pending (no shares) until
    /// some are supplied; an order is finalized only with amounts that sum to the total.
    Custom,
}

/// `update_split` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SplitData {
    /// The split type.
    pub split_type: SplitType,
    /// For `custom`: participantId → amount in minor units, summing to the total. Without it
    /// the split becomes custom with its amounts pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amounts: Option<BTreeMap<String, u64>>,
}

/// A client message (seed 001). Unknown fields are ignored; wrong types are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Join the order (the first joiner is its initiator).
    Join {
        /// Sender.
        #[serde(flatten)]
        from: Sender,
        /// Circle, phone.
        #[serde(default)]
        data: JoinData,
    },
    /// Add an item.
    AddItem {
        /// Sender.
        #[serde(flatten)]
        from: Sender,
        /// The item.
        data: AddItemData,
    },
    /// Remove an item.
    RemoveItem {
        /// Sender.
        #[serde(flatten)]
        from: Sender,
        /// Which.
        data: ItemRef,
    },
    /// Change an item's quantity.
    UpdateQuantity {
        /// Sender.
        #[serde(flatten)]
        from: Sender,
        /// Which and how many.
        data: QuantityData,
    },
    /// Change the split.
    UpdateSplit {
        /// Sender.
        #[serde(flatten)]
        from: Sender,
        /// The split.
        data: SplitData,
    },
    /// Finalize the order (the initiator, or a staff/service/admin token).
    Finalize {
        /// Sender.
        #[serde(flatten)]
        from: Sender,
    },
    /// Leave the order (the participant's items stay).
    Leave {
        /// Sender.
        #[serde(flatten)]
        from: Sender,
    },
}

impl ClientMessage {
    /// The sender of any message.
    pub fn sender(&self) -> &Sender {
        match self {
            ClientMessage::Join { from, .. }
            | ClientMessage::AddItem { from, .. }
            | ClientMessage::RemoveItem { from, .. }
            | ClientMessage::UpdateQuantity { from, .. }
            | ClientMessage::UpdateSplit { from, .. }
            | ClientMessage::Finalize { from }
            | ClientMessage::Leave { from } => from,
        }
    }

    /// Every client `type`.
    pub const TYPES: &'static [&'static str] = &[
        "join",
        "add_item",
        "remove_item",
        "update_quantity",
        "update_split",
        "finalize",
        "leave",
    ];
}

/// What the collab handler receives in the envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// A client message, as the edge parsed it.
    Client {
        /// The message.
        message: ClientMessage,
    },
    /// Sent by the expiry sweeper: archive and remove the room if it is still idle.
    Expire,
}

/// One participant of a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    /// Id.
    pub participant_id: String,
    /// Display name.
    pub participant_name: String,
    /// Phone, from `join`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// When they (first) joined, ms.
    pub joined_at: i64,
    /// False after `leave` (until they join again).
    pub active: bool,
}

/// One item of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// Server-assigned id, `item_{n}`.
    pub id: String,
    /// The dish.
    pub dish_name: String,
    /// e.g. `veg`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dish_type: Option<String>,
    /// 1..99.
    pub quantity: u32,
    /// Unit price, minor units.
    pub price: u64,
    /// price × quantity.
    pub subtotal: u64,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customization: Option<String>,
    /// Who added it.
    pub added_by: String,
    /// Their name at the time.
    pub added_by_name: String,
    /// When, ms.
    pub added_at: i64,
}

/// One participant's share of the total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Share {
    /// Who.
    pub participant_id: String,
    /// How much, minor units.
    pub amount: u64,
}

/// A room's status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being edited.
    #[default]
    Active,
    /// Finalized: no more changes.
    Finalized,
}

/// The full order state of a room: the `data` of `sync` and the `orderState` of every change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderState {
    /// The order's id: `{room}-{createdAt}` (a room reused after expiry makes a new order).
    pub order_id: String,
    /// From the first `join`.
    #[serde(default)]
    pub circle_id: Option<String>,
    /// The tenant the room shows: the verified token's, or in a tokenless (open-tenant) room
    /// the `tenantId` its first join named. Display only: the room's key, records and events
    /// use the tenant the edge gave the connection.
    pub tenant_id: String,
    /// The room id.
    pub session_id: String,
    /// The first participant to join.
    #[serde(default)]
    pub initiated_by: Option<String>,
    /// Everyone who joined, in join order.
    pub participants: Vec<Participant>,
    /// The items, in the order they were added.
    pub items: Vec<Item>,
    /// Sum of the items' subtotals, minor units.
    pub total: u64,
    /// How the bill is split.
    pub split_type: SplitType,
    /// Each participant's share, computed by the server.
    pub splits: Vec<Share>,
    /// For `custom` splits: the amounts as supplied (absent while pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_amounts: Option<BTreeMap<String, u64>>,
    /// `active` or `finalized`.
    pub status: Status,
    /// When the room was created, ms.
    pub created_at: i64,
    /// The last accepted change, ms (idle expiry counts from here).
    pub updated_at: i64,
    /// When finalized, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalized_at: Option<i64>,
    /// Who finalized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalized_by: Option<String>,
    /// The number of the next item id.
    pub next_item: u64,
}

impl OrderState {
    /// The state of a room nobody has changed yet.
    pub fn new(tenant: &str, room: &str, now_ms: i64) -> Self {
        OrderState {
            order_id: format!("{room}-{now_ms}"),
            circle_id: None,
            tenant_id: tenant.to_string(),
            session_id: room.to_string(),
            initiated_by: None,
            participants: Vec::new(),
            items: Vec::new(),
            total: 0,
            split_type: SplitType::Equal,
            splits: Vec::new(),
            custom_amounts: None,
            status: Status::Active,
            created_at: now_ms,
            updated_at: now_ms,
            finalized_at: None,
            finalized_by: None,
            next_item: 1,
        }
    }
}

/// What the collab handler stores per room (`tw_state_collab`): the order state clients see,
/// plus bookkeeping that stays in the handler. The JSON is the order state's fields with the
/// internal ones beside them; a client frame is built from [`RoomState::order`] only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomState {
    /// The order state, as clients see it.
    #[serde(flatten)]
    pub order: OrderState,
    /// The per-room rate limiter: GCRA theoretical arrival time, µs. Internal.
    #[serde(default)]
    pub rate_tat_us: i64,
}

impl RoomState {
    /// The state of a room nobody has changed yet.
    pub fn new(tenant: &str, room: &str, now_ms: i64) -> Self {
        RoomState {
            order: OrderState::new(tenant, room, now_ms),
            rate_tat_us: 0,
        }
    }
}

/// The `sync` frame: `{type: "sync", data, timestamp}`. The handler answers a `join` with it;
/// an edge sends it on connect with the room's event sequence it includes as `seq`, last (where
/// it has always been: clients and the benchmarks match the frame's start, `{"type":"sync"`).
#[derive(Debug, Serialize)]
pub struct Sync<'a> {
    /// Always `sync`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The order state (never the room's internal fields).
    pub data: &'a OrderState,
    /// Server time, ms.
    pub timestamp: i64,
    /// The room's event sequence this state includes (on connect; not in the `join` answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

impl<'a> Sync<'a> {
    /// The `sync` frame of `data` at `timestamp`.
    pub fn new(data: &'a OrderState, timestamp: i64) -> Self {
        Sync {
            kind: "sync",
            data,
            timestamp,
            seq: None,
        }
    }

    /// The same frame with the event sequence it includes.
    pub fn with_seq(self, seq: u64) -> Self {
        Sync {
            seq: Some(seq),
            ..self
        }
    }
}

/// Change frame types (`type` of a [`Change`]).
pub mod change {
    /// Someone joined (or joined again).
    pub const PARTICIPANT_JOINED: &str = "participant_joined";
    /// Someone left.
    pub const PARTICIPANT_LEFT: &str = "participant_left";
    /// An item was added.
    pub const ITEM_ADDED: &str = "item_added";
    /// An item was removed.
    pub const ITEM_REMOVED: &str = "item_removed";
    /// An item's quantity changed.
    pub const QUANTITY_UPDATED: &str = "quantity_updated";
    /// The split changed.
    pub const SPLIT_UPDATED: &str = "split_updated";
    /// The order was finalized.
    pub const ORDER_FINALIZED: &str = "order_finalized";
}

/// A change frame in the seed's shape: `{type, participantId, participantName, data,
/// timestamp}`, fanned out to every connection of the room. Serialized straight from borrowed
/// parts: every change carries the whole order state.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change<'a, D> {
    /// One of [`change`].
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// Who made the change.
    pub participant_id: &'a str,
    /// Their name.
    pub participant_name: &'a str,
    /// What changed: the order state ([`participant_joined`](change::PARTICIPANT_JOINED),
    /// [`participant_left`](change::PARTICIPANT_LEFT)), an [`ItemChange`], a [`SplitChange`] or
    /// a [`StateChange`].
    pub data: D,
    /// Server time, ms.
    pub timestamp: i64,
}

/// `data` of `item_added`, `item_removed` and `quantity_updated`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemChange<'a> {
    /// The item (as it was, for a removal).
    pub item: &'a Item,
    /// The order after the change.
    pub order_state: &'a OrderState,
}

/// `data` of `split_updated`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SplitChange<'a> {
    /// The new split type.
    pub split_type: SplitType,
    /// The order after the change.
    pub order_state: &'a OrderState,
}

/// `data` of `order_finalized`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateChange<'a> {
    /// The finalized order.
    pub order_state: &'a OrderState,
}

/// The error frame of a room: `{"type":"error", code, errorCode, message, retryable,
/// retryAfterMs?, timestamp}`. The edge (for what it refuses) and the collab handler (for its
/// rejections) both build it with [`error_frame`].
pub use crate::error::ErrorFrame;

/// The error frame of a room (see [`ErrorFrame`]).
pub fn error_frame(error: &ErrorBody, timestamp: i64) -> ErrorFrame {
    ErrorFrame {
        error: error.clone(),
        timestamp,
    }
}

/// A finalized order as the tenant's events feed announces it (`order:created`'s
/// `data.order`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedOrder<'a> {
    /// The order id.
    pub id: &'a str,
    /// Always `collaborative`.
    pub source: &'static str,
    /// The room.
    pub session_id: &'a str,
    /// The circle.
    pub circle_id: &'a Option<String>,
    /// The first participant.
    pub initiated_by: &'a Option<String>,
    /// The items.
    pub items: &'a [Item],
    /// Minor units.
    pub total: u64,
    /// The split type.
    pub split_type: SplitType,
    /// The shares.
    pub splits: &'a [Share],
    /// `finalized`.
    pub status: Status,
    /// When, ms.
    pub finalized_at: Option<i64>,
}

impl<'a> FeedOrder<'a> {
    /// The announcement of `state`.
    pub fn of(state: &'a OrderState) -> Self {
        FeedOrder {
            id: &state.order_id,
            source: "collaborative",
            session_id: &state.session_id,
            circle_id: &state.circle_id,
            initiated_by: &state.initiated_by,
            items: &state.items,
            total: state.total,
            split_type: state.split_type,
            splits: &state.splits,
            status: state.status,
            finalized_at: state.finalized_at,
        }
    }
}

/// The `data` of `order:created` on the events feed for a finalized order: `{"order": …}`.
#[derive(Debug, Serialize)]
pub struct FeedOrderCreated<'a> {
    /// The order.
    pub order: FeedOrder<'a>,
}

/// The record of an expired room ([`RECORD_ARCHIVE`]): the order as it was when archived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveRecord {
    /// When the room was archived, ms.
    pub archived_at: i64,
    /// The order.
    pub order: OrderState,
}

/// The record kind of a finalized order (table `collab_orders`): its data is the
/// [`OrderState`].
pub const RECORD_ORDER: &str = "collab_order";
/// The record kind of an archived (expired) room (table `collab_archives`).
pub const RECORD_ARCHIVE: &str = "collab_archive";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seed_messages_parse_and_unknown_fields_are_ignored() {
        let add: ClientMessage = serde_json::from_value(json!({
            "type": "add_item", "participantId": "tenant_1", "participantName": "John",
            "timestamp": 1234567890, "extra": true,
            "data": {"dishName": "Chicken Biryani", "dishType": "non-veg", "quantity": 2,
                     "price": 299, "customization": "Extra spicy", "foo": 1}
        }))
        .expect("add_item");
        assert_eq!(add.sender().participant_id, "tenant_1");
        let ClientMessage::AddItem { data, .. } = add else {
            panic!("add_item")
        };
        assert_eq!((data.quantity, data.price), (2, 299));
        let finalize: ClientMessage = serde_json::from_value(
            json!({"type": "finalize", "participantId": "p", "participantName": "P", "timestamp": 1}),
        )
        .expect("finalize");
        assert!(matches!(finalize, ClientMessage::Finalize { .. }));
        let join: ClientMessage =
            serde_json::from_value(json!({"type": "join", "participantId": "p"})).expect("join");
        assert!(matches!(join, ClientMessage::Join { .. }));
    }

    #[test]
    fn the_rate_limiter_is_stored_beside_the_order_and_never_in_it() {
        let mut room = RoomState::new("r1", "room1", 5);
        room.rate_tat_us = 1_234;
        let stored = serde_json::to_value(&room).expect("stored");
        // The stored JSON keeps the layout rooms were always stored in: one flat object.
        assert_eq!(stored["rateTatUs"], 1_234);
        assert_eq!(stored["sessionId"], "room1");
        assert_eq!(
            serde_json::from_value::<RoomState>(stored.clone()).expect("read back"),
            room
        );
        // What clients get is built from the order state, which has no such field, even when
        // read from the stored JSON.
        let order: OrderState = serde_json::from_value(stored).expect("order from stored");
        let client = serde_json::to_string(&Sync::new(&order, 1).with_seq(0)).expect("sync");
        assert!(!client.contains("rateTatUs"), "{client}");
        assert!(!client.contains("rate_tat_us"), "{client}");
    }

    #[test]
    fn wrong_types_are_rejected() {
        for bad in [
            json!({"type": "add_item", "participantId": "p", "data": {"dishName": "x", "quantity": "2", "price": 1}}),
            json!({"type": "add_item", "participantId": "p", "data": {"dishName": "x", "quantity": 1, "price": 2.5}}),
            json!({"type": "update_split", "participantId": "p", "data": {"splitType": "thirds"}}),
            json!({"type": "leave", "participantId": 7}),
            json!({"type": "remove_item", "participantId": "p"}),
        ] {
            assert!(
                serde_json::from_value::<ClientMessage>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
