//! Seed 002 (POS ↔ kitchen display order sync): the frames of `GET /ws/restaurant-pos/{tenantId}`
//! and of the HTTP fallback (`/api/orders`), the orders they carry, the error frame, the records
//! (orders, status changes), the feed's announcements, the pos handler's commands and per-key
//! state, and the order checks both the edge and the handler run.

use crate::Origin;
use crate::text::check_no_markup;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The key of a tenant's order book (numbering, active and recent orders).
pub const TENANT_KEY: &str = "_";
/// Keys of idempotency claims start with this, followed by the client's idempotency key.
pub const IDEMPOTENCY_PREFIX: &str = "idem:";
/// How long an idempotency key keeps returning the same `order_created`, ms (24 h), counted
/// from the submission that claimed it; the claim's KV entry expires then too.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;
/// The longest idempotency key, bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;
/// How many of a tenant's newest orders `sync_state` carries as `recentOrders`.
pub const RECENT_LIMIT: usize = 10;
/// Most active orders a tenant's state keeps. Past this the oldest active order leaves the live
/// state (it stays in SQL): keeps the state, rewritten on every batch, bounded.
pub const ACTIVE_LIMIT: usize = 200;
/// Most items in one cart.
pub const MAX_ITEMS: usize = 200;
/// Order types of seed 002.
pub const ORDER_TYPES: &[&str] = &["dine-in", "takeout", "delivery"];
/// Payment methods of seed 002.
pub const PAYMENT_METHODS: &[&str] = &["cash", "online"];

/// The key an idempotency key is claimed under.
pub fn idempotency_state_key(idempotency_key: &str) -> String {
    format!("{IDEMPOTENCY_PREFIX}{idempotency_key}")
}

/// Checks an idempotency key: 1 to [`MAX_IDEMPOTENCY_KEY`] bytes, no control characters.
pub fn check_idempotency_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || key.chars().any(char::is_control) {
        return Err(format!(
            "idempotencyKey must be 1 to {MAX_IDEMPOTENCY_KEY} bytes without control characters"
        ));
    }
    Ok(())
}

/// Where an order is in the kitchen: `pending → preparing → ready → completed`, or
/// `cancelled` from any status before `completed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Accepted, not started.
    Pending,
    /// Being prepared.
    Preparing,
    /// Ready for pickup or serving.
    Ready,
    /// Done (final).
    Completed,
    /// Cancelled (final).
    Cancelled,
}

impl OrderStatus {
    /// Whether the order is finished (no longer active).
    pub fn is_final(self) -> bool {
        matches!(self, OrderStatus::Completed | OrderStatus::Cancelled)
    }

    /// Whether an order may go from `self` to `next`.
    pub fn can_become(self, next: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, next),
            (Pending, Preparing) | (Preparing, Ready) | (Ready, Completed)
        ) || (next == Cancelled && !self.is_final())
    }

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Preparing => "preparing",
            OrderStatus::Ready => "ready",
            OrderStatus::Completed => "completed",
            OrderStatus::Cancelled => "cancelled",
        }
    }
}

/// The order a POS submits (seed 002's `order`). Fields are loose JSON so that every problem is
/// reported as `VALIDATION_ERROR` by [`OrderInput::check`] rather than as a parse error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderInput {
    /// The tenant as the client knows it; informational: the tenant comes from the path/token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<Value>,
    /// `dine-in`, `takeout` or `delivery`.
    #[serde(default)]
    pub order_type: Option<Value>,
    /// `cash` or `online`.
    #[serde(default)]
    pub payment_method: Option<Value>,
    /// `{name, phone}`.
    #[serde(default)]
    pub customer: Option<Value>,
    /// The cart: `{items: [{name, price, quantity, …}], …}`; other fields are kept as sent.
    #[serde(default)]
    pub cart: Option<Value>,
    /// The POS's status for the order (the seed sends `confirmed`); kept as `posStatus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
    /// Where the order comes from (the seed sends `pos`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Value>,
    /// Every other field the client sent (`tableId`, `notes`, …), kept on the order and in
    /// every frame that carries it, at most [`MAX_EXTRA_BYTES`] of JSON; names the server sets
    /// itself ([`SERVER_FIELDS`]) are dropped.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Most bytes of JSON a client's extra order fields may take.
pub const MAX_EXTRA_BYTES: usize = 4096;

/// Order fields the server sets; a client's fields of these names are not kept.
pub const SERVER_FIELDS: &[&str] = &[
    "id",
    "orderId",
    "orderNumber",
    "tenantId",
    "orderType",
    "paymentMethod",
    "customer",
    "cart",
    "items",
    "status",
    "posStatus",
    "source",
    "idempotencyKey",
    "createdAt",
    "updatedAt",
];

/// The names a client may give an order's table; the events feed carries it as `table_id`.
pub const TABLE_FIELDS: &[&str] = &["tableId", "table_id", "tableNumber"];

fn non_negative(value: Option<&Value>, what: &str) -> Result<(), String> {
    match value {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(n)) if n.as_f64().is_some_and(|f| f >= 0.0 && f.is_finite()) => Ok(()),
        Some(_) => Err(format!("{what} must be a number ≥ 0")),
    }
}

impl OrderInput {
    /// The order type, once checked.
    pub fn order_type(&self) -> &str {
        self.order_type
            .as_ref()
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The cart's items, once checked.
    pub fn items(&self) -> &[Value] {
        self.cart
            .as_ref()
            .and_then(|c| c.get("items"))
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// The client's extra fields the order keeps (those the server sets left out).
    pub fn extra_fields(&self) -> Map<String, Value> {
        self.extra
            .iter()
            .filter(|(k, _)| !SERVER_FIELDS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Checks what seed 002 requires of an order; the message says what is wrong. The customer's
    /// and the items' names, which every POS and kitchen display shows, hold no markup
    /// ([`check_no_markup`]).
    pub fn check(&self) -> Result<(), String> {
        let extra = serde_json::to_vec(&self.extra_fields()).map_or(0, |v| v.len());
        if extra > MAX_EXTRA_BYTES {
            return Err(format!(
                "the order's other fields take {extra} bytes; at most {MAX_EXTRA_BYTES}"
            ));
        }
        let text = |v: &Option<Value>| v.as_ref().and_then(Value::as_str).map(str::to_string);
        match text(&self.order_type) {
            Some(t) if ORDER_TYPES.contains(&t.as_str()) => {}
            _ => return Err(format!("orderType must be one of {ORDER_TYPES:?}")),
        }
        match text(&self.payment_method) {
            Some(p) if PAYMENT_METHODS.contains(&p.as_str()) => {}
            None if self.payment_method.is_none() => {}
            _ => return Err(format!("paymentMethod must be one of {PAYMENT_METHODS:?}")),
        }
        if let Some(customer) = &self.customer
            && !customer.is_object()
            && !customer.is_null()
        {
            return Err("customer must be an object {name, phone}".to_string());
        }
        if let Some(name) = self
            .customer
            .as_ref()
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str)
        {
            check_no_markup("customer.name", name)?;
        }
        let Some(cart) = self.cart.as_ref().filter(|c| c.is_object()) else {
            return Err("cart is required and must be an object".to_string());
        };
        let Some(items) = cart.get("items").and_then(Value::as_array) else {
            return Err("cart.items must be a list of items".to_string());
        };
        if items.is_empty() || items.len() > MAX_ITEMS {
            return Err(format!("cart.items must hold 1 to {MAX_ITEMS} items"));
        }
        for (i, item) in items.iter().enumerate() {
            if !item.is_object() {
                return Err(format!("cart.items[{i}] must be an object"));
            }
            if let Some(name) = item.get("name").and_then(Value::as_str) {
                check_no_markup(&format!("cart.items[{i}].name"), name)?;
            }
            non_negative(item.get("price"), &format!("cart.items[{i}].price"))?;
            match item.get("quantity") {
                None | Some(Value::Null) => {}
                Some(q) if q.as_u64().is_some_and(|q| q >= 1) => {}
                Some(_) => return Err(format!("cart.items[{i}].quantity must be an integer ≥ 1")),
            }
        }
        for field in ["subtotal", "tax", "total", "discount"] {
            non_negative(cart.get(field), &format!("cart.{field}"))?;
        }
        Ok(())
    }
}

/// An order as the server knows it (seed 002's `order`, with `id` and `orderNumber`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// Order id, unique per tenant (`order-{n}`).
    pub id: String,
    /// `ORD-YYYYMMDD-NNN`, numbered per tenant per day in the tenant's time zone.
    pub order_number: String,
    /// The tenant.
    pub tenant_id: String,
    /// `dine-in`, `takeout` or `delivery`.
    pub order_type: String,
    /// `cash` or `online`, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<Value>,
    /// `{name, phone}`, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<Value>,
    /// The cart, as sent.
    pub cart: Value,
    /// The kitchen status.
    pub status: OrderStatus,
    /// The status the POS sent with the order (e.g. `confirmed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos_status: Option<Value>,
    /// Where it came from, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Value>,
    /// The idempotency key it was submitted with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// When it was accepted, ms since the Unix epoch.
    pub created_at: i64,
    /// When its status last changed, ms since the Unix epoch.
    pub updated_at: i64,
    /// The client's other fields, as sent (`tableId`, …; see [`OrderInput::extra`]).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What a kitchen display shows of an order (seed 002's `kitchenOrder`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KitchenOrder {
    /// `kitchen-{n}`, matching the order's `order-{n}`.
    pub id: String,
    /// The order's id.
    pub order_id: String,
    /// The order's number.
    pub order_number: String,
    /// The kitchen status.
    pub status: OrderStatus,
    /// The cart's items.
    pub items: Vec<Value>,
    /// The order type.
    pub order_type: String,
    /// When the order was accepted, ms since the Unix epoch.
    pub created_at: i64,
    /// The client's other fields of the order (`tableId`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Order {
    /// The table the client named (`tableId`, `table_id` or `tableNumber`), if any.
    pub fn table_id(&self) -> Option<&Value> {
        TABLE_FIELDS
            .iter()
            .find_map(|name| self.extra.get(*name))
            .filter(|v| !v.is_null())
    }

    /// The kitchen's view of this order.
    pub fn kitchen(&self) -> KitchenOrder {
        KitchenOrder {
            id: self.id.replacen("order-", "kitchen-", 1),
            order_id: self.id.clone(),
            order_number: self.order_number.clone(),
            status: self.status,
            items: self
                .cart
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            order_type: self.order_type.clone(),
            created_at: self.created_at,
            extra: self.extra.clone(),
        }
    }
}

/// Client → server frames on `/ws/restaurant-pos/{tenantId}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// A POS submits an order.
    SubmitOrder {
        /// The order.
        order: Box<OrderInput>,
        /// Optional client id for this submission: the same key within 24 hours (over the
        /// WebSocket or `POST /api/orders`, on any edge) returns the same `order_created` (same
        /// order id and number) and never makes a second order. The 24 hours run from the
        /// submission that created the order, as the server accepted it; after them the key is
        /// forgotten and makes a new order. Without it, every submission is a new order. 1 to
        /// 128 bytes, no control characters.
        #[serde(
            default,
            rename = "idempotencyKey",
            skip_serializing_if = "Option::is_none"
        )]
        idempotency_key: Option<String>,
    },
    /// A kitchen terminal changes an order's status. Allowed: `pending → preparing → ready →
    /// completed`, and `cancelled` from any status before `completed`; anything else is
    /// rejected with `CONFLICT` (unknown order: `UNKNOWN_RESOURCE`).
    UpdateOrderStatus {
        /// The order's id.
        #[serde(rename = "orderId")]
        order_id: String,
        /// The new status.
        status: OrderStatus,
        /// Who changed it (e.g. `kitchen-terminal-1`).
        #[serde(default, rename = "updatedBy", skip_serializing_if = "Option::is_none")]
        updated_by: Option<String>,
    },
    /// Heartbeat; answered with `pong`.
    Ping,
}

/// Server → client frames on `/ws/restaurant-pos/{tenantId}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// An order was created (to every connection of the tenant; repeated to a sender that
    /// re-submits with the same idempotency key).
    OrderCreated {
        /// The order.
        order: Box<Order>,
        /// Its kitchen view.
        #[serde(rename = "kitchenOrder")]
        kitchen_order: KitchenOrder,
    },
    /// An order's status changed (to every connection of the tenant).
    OrderStatusUpdate {
        /// The order's id.
        #[serde(rename = "orderId")]
        order_id: String,
        /// The order's number.
        #[serde(rename = "orderNumber")]
        order_number: String,
        /// The new status.
        status: OrderStatus,
        /// Who changed it.
        #[serde(rename = "updatedBy")]
        updated_by: String,
    },
    /// Sent on every connect and reconnect.
    SyncState {
        /// Every order not completed or cancelled, as kitchen orders.
        #[serde(rename = "activeOrders")]
        active_orders: Vec<KitchenOrder>,
        /// The tenant's last 10 orders, newest first.
        #[serde(rename = "recentOrders")]
        recent_orders: Vec<Order>,
        /// The event sequence this state includes.
        seq: u64,
    },
    /// Something went wrong: `{message, code}` plus the catalogue's fields.
    Error {
        /// The error.
        #[serde(flatten)]
        error: crate::ErrorBody,
        /// ms since the Unix epoch.
        timestamp: i64,
    },
    /// Answer to `ping`.
    Pong {
        /// ms since the Unix epoch.
        timestamp: i64,
    },
}

/// The error frame of a POS socket and of its HTTP answers ([`ServerFrame::Error`]); the pos
/// handler builds its rejections here.
pub fn error_frame(error: &crate::ErrorBody, timestamp: i64) -> ServerFrame {
    ServerFrame::Error {
        error: error.clone(),
        timestamp,
    }
}

/// What the pos handler answers a `PUT /api/pos/settings` once applied:
/// `{"type":"settings","utcOffsetMinutes":…}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "settings", rename_all = "camelCase")]
pub struct SettingsApplied {
    /// The tenant's offset now.
    pub utc_offset_minutes: i32,
}

/// Record kinds of the pos domain (tables `pos_orders` and `pos_order_status`).
pub mod record {
    /// A new order: its data is the [`Order`](super::Order).
    pub const ORDER: &str = "pos_order";
    /// A status change: its data is a [`StatusRecord`](super::StatusRecord).
    pub const STATUS: &str = "pos_order_status";
}

/// The record of a status change ([`record::STATUS`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusRecord {
    /// The order.
    pub order_id: String,
    /// Its number.
    pub order_number: String,
    /// The new status.
    pub status: OrderStatus,
    /// The status before.
    pub previous_status: OrderStatus,
    /// Who changed it.
    pub updated_by: String,
    /// When, ms.
    pub at: i64,
    /// The order as it is after the change; `null` when the handler no longer had its body
    /// (only the status history and the row's status change then).
    pub order: Option<Order>,
}

/// An order as the tenant's events feed announces it (`order:created`'s `data.order`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedOrder<'a> {
    /// The order id.
    pub id: &'a str,
    /// Its number.
    pub order_number: &'a str,
    /// The kitchen status.
    pub status: OrderStatus,
    /// The cart's items.
    pub items: Vec<Value>,
    /// The cart's `total`, as sent (or null).
    pub total: Value,
    /// The order type.
    pub order_type: &'a str,
    /// The table, where events clients filter on it (`filters: {table_id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_id: Option<&'a Value>,
}

/// The `data` of `order:created` on the events feed for a POS order.
#[derive(Debug, Serialize)]
pub struct FeedOrderCreated<'a> {
    /// The order.
    pub order: FeedOrder<'a>,
    /// The table, again at the top.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_id: Option<&'a Value>,
}

impl<'a> FeedOrderCreated<'a> {
    /// The announcement of `order`.
    pub fn of(order: &'a Order) -> Self {
        let table_id = order.table_id();
        FeedOrderCreated {
            order: FeedOrder {
                id: &order.id,
                order_number: &order.order_number,
                status: order.status,
                items: order.kitchen().items,
                total: order.cart.get("total").cloned().unwrap_or(Value::Null),
                order_type: &order.order_type,
                table_id,
            },
            table_id,
        }
    }
}

/// The `data` of `order:status` on the events feed (seed 004's snake_case names beside the
/// camelCase ones POS clients know).
#[derive(Debug, Serialize)]
pub struct FeedStatus<'a> {
    /// The order id.
    pub order_id: &'a str,
    /// Its number.
    #[serde(rename = "orderNumber")]
    pub order_number: &'a str,
    /// The new status.
    pub status: OrderStatus,
    /// The status before.
    pub previous_status: OrderStatus,
    /// Who changed it.
    #[serde(rename = "updatedBy")]
    pub updated_by: &'a str,
    /// The table, if the order names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_id: Option<Value>,
}

/// Commands of the pos domain, inside the envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Submit an order: to [`TENANT_KEY`] without an idempotency key, to
    /// [`idempotency_state_key`] with one.
    Submit {
        /// The order.
        order: OrderInput,
        /// The client's idempotency key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
    },
    /// From an idempotency key to the tenant: create the order it claimed, answer `reply_to`.
    Create {
        /// The order.
        order: OrderInput,
        /// The idempotency key that claimed it.
        idempotency_key: String,
        /// When the key was claimed: an order of this key made since then is this claim's
        /// (the claim asked again), one made before belongs to an earlier, expired claim.
        #[serde(default)]
        claimed_at: i64,
        /// The first sender.
        reply_to: Origin,
    },
    /// From the tenant back to an idempotency key: the order it created.
    Created {
        /// The `order_created` frame.
        frame: Value,
    },
    /// From the tenant back to an idempotency key: the order was not made (the tenant's
    /// write rate); the claim is released, so the key can be submitted again.
    Refused {
        /// Why.
        error: crate::ErrorBody,
    },
    /// Change an order's status.
    UpdateStatus {
        /// The order's id.
        order_id: String,
        /// The new status.
        status: OrderStatus,
        /// Who changed it.
        updated_by: String,
    },
    /// Set the tenant's clock for order numbers (admin or service).
    Configure {
        /// Minutes east of UTC of the tenant's local time (e.g. 330 for UTC+05:30).
        utc_offset_minutes: i32,
    },
}

/// A tenant's order book: numbering, active orders and the newest orders. Bounded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantOrders {
    /// Minutes east of UTC of the tenant's local time; days for order numbers start at local
    /// midnight. Default 0 (UTC).
    #[serde(default)]
    pub utc_offset_minutes: i32,
    /// The local day of the last order number, `YYYYMMDD`.
    #[serde(default)]
    pub day: String,
    /// Orders numbered on that day.
    #[serde(default)]
    pub day_count: u64,
    /// Orders ever created (gives order ids).
    #[serde(default)]
    pub total: u64,
    /// Orders not completed or cancelled, oldest first (at most [`ACTIVE_LIMIT`]).
    #[serde(default)]
    #[schemars(with = "Vec<OrderRef>")]
    pub active: Vec<BookOrder>,
    /// The newest orders, newest first (at most [`RECENT_LIMIT`]).
    #[serde(default)]
    #[schemars(with = "Vec<OrderRef>")]
    pub recent: Vec<BookOrder>,
    /// The tenant's write rate: the theoretical arrival time (µs) of its next write. Internal:
    /// no frame carries the book itself.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rate_tat_us: i64,
}

/// How long an order's body ([`BookOrder`]) is kept in KV after its creation, ms (7 days). An
/// order still active after that shows without its cart in `sync_state`.
pub const ORDER_BODY_TTL_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// An order in a [`TenantOrders`] book. The book is written after every batch of its tenant's
/// commands; storing up to 210 whole orders each time had nats-server copy ~80 KB per write, so
/// the book stores each order as its reference ([`OrderRef`]: id, number, status, last
/// change) and the order itself once, as its *body*: a KV entry of its own beside the book
/// ([`TenantOrders::body_name`], sent by the handler just before the book that names it, kept
/// for [`ORDER_BODY_TTL_MS`]). Readers fetch the bodies and [`BookOrder::attach_body`] them; status
/// and last change always come from the reference. Books stored whole by earlier versions read
/// as well (their orders count as bodies not yet written).
#[derive(Debug, Clone)]
pub struct BookOrder {
    order: Order,
    /// Whether `order` holds the whole order (else only the reference's fields).
    has_body: bool,
    /// Whether the body is known to be in KV.
    body_stored: bool,
    /// The reference's JSON, once made (the book is written after every batch; most of its
    /// references have not changed since the last write).
    reference: std::sync::OnceLock<Box<serde_json::value::RawValue>>,
}

/// What a book stores of each order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderRef {
    /// The order's id.
    pub id: String,
    /// Its number.
    pub order_number: String,
    /// Its kitchen status now.
    pub status: OrderStatus,
    /// When its status last changed.
    pub updated_at: i64,
    /// When it was made (0 in books of earlier versions): with [`idempotency_key`](Self::idempotency_key),
    /// what tells its body from another order's stored under the same id.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub created_at: i64,
    /// The idempotency key it was made for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl BookOrder {
    /// A new order, whose body is not stored yet.
    pub fn created(order: Order) -> Self {
        Self {
            order,
            has_body: true,
            body_stored: false,
            reference: std::sync::OnceLock::new(),
        }
    }

    /// The order (only its reference's fields when its body is missing).
    pub fn order(&self) -> &Order {
        &self.order
    }

    /// The order, to change its status.
    pub fn edit(&mut self) -> &mut Order {
        self.reference = std::sync::OnceLock::new();
        &mut self.order
    }

    /// Whether the whole order is here.
    pub fn has_body(&self) -> bool {
        self.has_body
    }

    /// Whether the body must still be written to KV.
    pub fn body_unstored(&self) -> bool {
        self.has_body && !self.body_stored
    }

    /// The body was written.
    pub fn body_written(&mut self) {
        self.body_stored = true;
    }

    /// Puts the stored body in, keeping this reference's status and last change.
    pub fn attach_body(&mut self, body: Order) {
        if !self.is_body(&body) {
            return;
        }
        let (status, updated_at) = (self.order.status, self.order.updated_at);
        self.order = body;
        self.order.status = status;
        self.order.updated_at = updated_at;
        self.has_body = true;
        self.body_stored = true;
    }

    /// Whether `body` is this order's: the same id, and (when the reference says) made at the
    /// same time for the same idempotency key. A worker that applied an order on a book already
    /// past it (and lost its compare-and-set) may have stored a body under an id the book gave
    /// to another order; that body is never this order's.
    pub fn is_body(&self, body: &Order) -> bool {
        body.id == self.order.id
            && (self.order.created_at == 0
                || (body.created_at == self.order.created_at
                    && body.idempotency_key == self.order.idempotency_key))
    }

    /// The order itself.
    pub fn into_order(self) -> Order {
        self.order
    }
}

impl std::ops::Deref for BookOrder {
    type Target = Order;

    fn deref(&self) -> &Order {
        &self.order
    }
}

impl PartialEq for BookOrder {
    fn eq(&self, other: &Self) -> bool {
        self.order == other.order && self.has_body == other.has_body
    }
}

impl Serialize for BookOrder {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// [`OrderRef`], borrowed.
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Reference<'a> {
            id: &'a str,
            order_number: &'a str,
            status: OrderStatus,
            updated_at: i64,
            #[serde(skip_serializing_if = "is_zero")]
            created_at: i64,
            #[serde(skip_serializing_if = "Option::is_none")]
            idempotency_key: Option<&'a str>,
        }
        if let Some(json) = self.reference.get() {
            return json.serialize(serializer);
        }
        let reference = Reference {
            id: &self.order.id,
            order_number: &self.order.order_number,
            status: self.order.status,
            updated_at: self.order.updated_at,
            created_at: self.order.created_at,
            idempotency_key: self.order.idempotency_key.as_deref(),
        };
        match serde_json::value::to_raw_value(&reference) {
            Ok(json) => self.reference.get_or_init(|| json).serialize(serializer),
            Err(_) => reference.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for BookOrder {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Whole(Box<Order>),
            Reference(OrderRef),
        }
        Ok(match Stored::deserialize(deserializer)? {
            Stored::Whole(order) => Self {
                order: *order,
                has_body: true,
                body_stored: false,
                reference: std::sync::OnceLock::new(),
            },
            Stored::Reference(r) => Self {
                order: Order {
                    id: r.id,
                    order_number: r.order_number,
                    tenant_id: String::new(),
                    order_type: String::new(),
                    payment_method: None,
                    customer: None,
                    cart: Value::Null,
                    status: r.status,
                    pos_status: None,
                    source: None,
                    idempotency_key: r.idempotency_key,
                    created_at: r.created_at,
                    updated_at: r.updated_at,
                    extra: Map::new(),
                },
                has_body: false,
                body_stored: false,
                reference: std::sync::OnceLock::new(),
            },
        })
    }
}

impl TenantOrders {
    /// The KV entry name of an order's body, beside the book (see [`BookOrder`]).
    pub fn body_name(order_id: &str) -> String {
        format!("body:{order_id}")
    }

    /// The ids of orders whose bodies are missing, each once.
    pub fn missing_bodies(&self) -> Vec<String> {
        self.missing_bodies_changed_since(i64::MIN)
    }

    /// The ids of orders whose bodies are missing and whose status changed at or after
    /// `since_ms`, each once.
    pub fn missing_bodies_changed_since(&self, since_ms: i64) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for o in self.active.iter().chain(&self.recent) {
            if !o.has_body() && o.updated_at >= since_ms && !ids.contains(&o.id) {
                ids.push(o.id.clone());
            }
        }
        ids
    }

    /// Orders whose bodies must still be written, each once.
    pub fn unstored_bodies(&self) -> Vec<&Order> {
        let mut orders: Vec<&Order> = Vec::new();
        for o in self.active.iter().chain(&self.recent) {
            if o.body_unstored() && !orders.iter().any(|x| x.id == o.id) {
                orders.push(o.order());
            }
        }
        orders
    }

    /// Every body is written.
    pub fn bodies_written(&mut self) {
        for o in self.active.iter_mut().chain(self.recent.iter_mut()) {
            if o.has_body() {
                o.body_written();
            }
        }
    }

    /// Puts a fetched body into every reference to it.
    pub fn attach_body(&mut self, body: &Order) {
        for o in self.active.iter_mut().chain(self.recent.iter_mut()) {
            if o.id == body.id && !o.has_body() {
                o.attach_body(body.clone());
            }
        }
    }
}

/// An idempotency key's claim: the first submission's sender and, once created, the
/// `order_created` frame every later submission gets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdempotencyClaim {
    /// When the key was claimed, ms since the Unix epoch (0: never).
    pub claimed_at: i64,
    /// The `order_created` frame, once the tenant created the order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<Value>,
    /// Senders of repeats that arrived before the order was created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<Origin>,
    /// When the order was last asked of the tenant's book (0: at `claimed_at`). A repeat that
    /// finds the order still missing long after asks again; the book answers a key it already
    /// made an order for with that order.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub asked_at: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// The state of one pos key: a tenant's orders, or an idempotency claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PosState {
    /// Key [`TENANT_KEY`].
    Tenant(TenantOrders),
    /// Keys [`idempotency_state_key`].
    Idempotency(IdempotencyClaim),
}

/// `GET /api/orders` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderList {
    /// The orders.
    pub orders: Vec<Order>,
}

/// `PATCH /api/orders/{id}` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusChange {
    /// The new status.
    pub status: OrderStatus,
    /// Who changed it; defaults to the token's subject.
    #[serde(default, rename = "updatedBy", skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
}

/// `PUT /api/pos/settings` body (admin or service token) and answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Minutes east of UTC of the tenant's local time; order numbers' days start at local
    /// midnight. Default 0 (UTC). Within ±840.
    pub utc_offset_minutes: i32,
}

/// `POST /api/orders` body: seed 002's order, optionally wrapped as `{order, idempotencyKey}`.
/// The idempotency key may also come in the `Idempotency-Key` header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SubmitRequest {
    /// `{"order": {...}, "idempotencyKey": "..."}`.
    Wrapped {
        /// The order.
        order: OrderInput,
        /// The idempotency key: the same key within 24 hours returns the same order (as for
        /// `submit_order`).
        #[serde(
            default,
            rename = "idempotencyKey",
            skip_serializing_if = "Option::is_none"
        )]
        idempotency_key: Option<String>,
    },
    /// The order itself, with an optional `idempotencyKey` field.
    Bare {
        /// The order.
        #[serde(flatten)]
        order: OrderInput,
        /// The idempotency key: the same key within 24 hours returns the same order (as for
        /// `submit_order`).
        #[serde(
            default,
            rename = "idempotencyKey",
            skip_serializing_if = "Option::is_none"
        )]
        idempotency_key: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: Value) -> OrderInput {
        serde_json::from_value(v).expect("order input")
    }

    #[test]
    fn a_clients_other_order_fields_are_kept_within_a_bound() {
        let sent = json!({"orderType": "dine-in", "cart": {"items": [{"name": "x"}]},
            "tableId": "T7", "notes": "no onions", "id": "temp-1", "orderNumber": "mine"});
        let order = input(sent.clone());
        assert_eq!(order.check(), Ok(()));
        let kept = order.extra_fields();
        assert_eq!(kept.get("tableId"), Some(&json!("T7")));
        assert_eq!(kept.get("notes"), Some(&json!("no onions")));
        assert!(!kept.contains_key("id") && !kept.contains_key("orderNumber"));
        let mut big = sent;
        big["notes"] = json!("n".repeat(MAX_EXTRA_BYTES));
        assert!(
            input(big)
                .check()
                .expect_err("too big")
                .contains("other fields")
        );
        let request: SubmitRequest = serde_json::from_value(json!({"orderType": "takeout",
            "cart": {"items": [{"name": "x"}]}, "idempotencyKey": "k", "tableNumber": 4}))
        .expect("a bare order");
        let SubmitRequest::Bare {
            order,
            idempotency_key,
        } = request
        else {
            panic!("bare")
        };
        assert_eq!(idempotency_key.as_deref(), Some("k"));
        assert_eq!(order.extra_fields().get("tableNumber"), Some(&json!(4)));
    }

    #[test]
    fn order_checks_report_what_is_wrong() {
        let good = json!({"orderType": "dine-in", "paymentMethod": "cash",
            "customer": {"name": "A", "phone": "1"}, "cart": {"items": [{"name": "x", "price": 3.5, "quantity": 2}]},
            "status": "confirmed", "source": "pos"});
        assert_eq!(input(good.clone()).check(), Ok(()));
        let mut no_cart = good.clone();
        no_cart["cart"] = Value::Null;
        assert!(input(no_cart).check().expect_err("cart").contains("cart"));
        let mut negative = good.clone();
        negative["cart"]["items"][0]["price"] = json!(-1);
        assert!(
            input(negative)
                .check()
                .expect_err("price")
                .contains("price")
        );
        let mut kind = good.clone();
        kind["orderType"] = json!("drive-thru");
        assert!(input(kind).check().expect_err("type").contains("orderType"));
        let mut pay = good.clone();
        pay["paymentMethod"] = json!("barter");
        assert!(input(pay).check().is_err());
        // Names every POS and kitchen display shows never carry markup.
        let mut customer = good.clone();
        customer["customer"]["name"] = json!("<img src=x onerror=\"alert(1)\">Asha");
        assert!(
            input(customer)
                .check()
                .expect_err("customer markup")
                .contains("customer.name")
        );
        let mut item = good;
        item["cart"]["items"][0]["name"] = json!("Dosa</td><script>alert(1)</script>");
        assert!(
            input(item)
                .check()
                .expect_err("item markup")
                .contains("cart.items[0].name")
        );
    }

    #[test]
    fn transitions_follow_the_kitchen_flow() {
        use OrderStatus::*;
        assert!(Pending.can_become(Preparing));
        assert!(Ready.can_become(Completed));
        assert!(Preparing.can_become(Cancelled));
        assert!(!Pending.can_become(Ready));
        assert!(!Completed.can_become(Cancelled));
        assert!(!Ready.can_become(Pending));
        assert!(!Cancelled.can_become(Preparing));
    }

    #[test]
    fn submit_frames_read_as_the_seed_writes_them() {
        let frame: ClientFrame = serde_json::from_value(json!({"type": "submit_order",
            "idempotencyKey": "k1", "order": {"orderType": "takeout", "cart": {"items": []}}}))
        .expect("frame");
        assert!(
            matches!(frame, ClientFrame::SubmitOrder { idempotency_key: Some(k), .. } if k == "k1")
        );
        let bare: SubmitRequest =
            serde_json::from_value(json!({"orderType": "takeout", "idempotencyKey": "k2"}))
                .expect("bare");
        assert!(matches!(bare, SubmitRequest::Bare { idempotency_key: Some(k), .. } if k == "k2"));
        let wrapped: SubmitRequest =
            serde_json::from_value(json!({"order": {"orderType": "takeout"}})).expect("wrapped");
        assert!(matches!(wrapped, SubmitRequest::Wrapped { .. }));
    }

    #[test]
    fn a_book_stores_references_and_takes_bodies_back() {
        let order: Order = serde_json::from_value(json!({"id": "order-1",
            "orderNumber": "ORD-20261127-001", "tenantId": "t", "orderType": "takeout",
            "cart": {"items": [{"name": "Dosa", "price": 120, "quantity": 1}]},
            "status": "pending", "createdAt": 1, "updatedAt": 1}))
        .expect("order");
        let made = BookOrder::created(order.clone());
        let mut book = TenantOrders {
            active: vec![made.clone()],
            recent: vec![made],
            ..Default::default()
        };
        // A new order's body is to be written once, though the book names it twice.
        assert_eq!(book.unstored_bodies(), vec![&order]);
        book.bodies_written();
        assert!(book.unstored_bodies().is_empty());
        // Written once (references' JSON kept), then changed: the change must be written.
        let first = serde_json::to_value(&book).expect("first write");
        assert_eq!(first["active"][0]["status"], "pending");
        let edited = book.active[0].edit();
        edited.status = OrderStatus::Preparing;
        edited.updated_at = 2;
        let stored = serde_json::to_value(&book).expect("book json");
        assert_eq!(
            stored["active"][0],
            json!({"id": "order-1", "orderNumber": "ORD-20261127-001",
                   "status": "preparing", "updatedAt": 2, "createdAt": 1})
        );
        assert!(stored["active"][0].get("cart").is_none());
        // Read back: references without bodies until the stored body comes (as created: the
        // status stays the reference's).
        let mut read: TenantOrders = serde_json::from_value(stored).expect("read back");
        assert_eq!(read.missing_bodies(), vec!["order-1".to_string()]);
        assert!(!read.active[0].has_body());
        read.attach_body(&order);
        assert!(read.missing_bodies().is_empty());
        assert_eq!(read.active[0].status, OrderStatus::Preparing);
        assert_eq!(read.active[0].updated_at, 2);
        assert_eq!(read.active[0].cart, order.cart);
        assert_eq!(read.recent[0].status, OrderStatus::Pending);
        assert!(
            read.unstored_bodies().is_empty(),
            "attached bodies are stored"
        );
        // A book stored whole by an earlier version reads with its bodies, still to be written.
        let legacy: PosState = serde_json::from_value(json!({"kind": "tenant",
            "active": [serde_json::to_value(&order).expect("order json")]}))
        .expect("legacy book");
        let PosState::Tenant(legacy) = legacy else {
            panic!("a tenant book")
        };
        assert!(legacy.missing_bodies().is_empty());
        assert_eq!(legacy.unstored_bodies(), vec![&order]);
    }

    /// A body stored under an order's id by a worker that lost the book's compare-and-set (it
    /// made another order with that id) is not that order's, and is never attached to it.
    #[test]
    fn a_body_of_another_order_with_the_same_id_is_not_attached() {
        let body = |key: &str, at: i64| -> Order {
            serde_json::from_value(json!({"id": "order-2", "orderNumber": "ORD-20261205-002",
                "tenantId": "t", "orderType": "takeout", "cart": {"total": 1},
                "status": "pending", "idempotencyKey": key, "createdAt": at, "updatedAt": at}))
            .expect("order")
        };
        let book = TenantOrders {
            active: vec![BookOrder::created(body("k-1", 10))],
            ..Default::default()
        };
        let stored = serde_json::to_value(&book).expect("book json");
        assert_eq!(stored["active"][0]["idempotencyKey"], "k-1");
        let read = |stored: &Value| -> TenantOrders {
            serde_json::from_value(stored.clone()).expect("read back")
        };
        for other in [body("k-2", 10), body("k-1", 11)] {
            let mut book = read(&stored);
            book.attach_body(&other);
            assert!(!book.active[0].has_body(), "{other:?} attached");
        }
        let mut book = read(&stored);
        book.attach_body(&body("k-1", 10));
        assert!(book.active[0].has_body());
        // References of earlier versions name neither: any body with the id fits them.
        let mut legacy = stored.clone();
        legacy["active"][0] = json!({"id": "order-2", "orderNumber": "ORD-20261205-002",
            "status": "pending", "updatedAt": 10});
        let mut book = read(&legacy);
        book.attach_body(&body("k-2", 10));
        assert!(book.active[0].has_body());
    }
}
