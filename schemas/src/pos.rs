//! Seed 002 (POS ↔ kitchen display order sync): the frames of `GET /ws/restaurant-pos/{tenantId}`
//! and of the HTTP fallback (`/api/orders`), the orders they carry, the pos handler's commands
//! and per-key state, and the order checks both the edge and the handler run.

use crate::Origin;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
}

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

    /// Checks what seed 002 requires of an order; the message says what is wrong.
    pub fn check(&self) -> Result<(), String> {
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
}

impl Order {
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
        order: OrderInput,
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
        /// The first sender.
        reply_to: Origin,
    },
    /// From the tenant back to an idempotency key: the order it created.
    Created {
        /// The `order_created` frame.
        frame: Value,
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
    #[schemars(with = "Vec<Order>")]
    pub active: Vec<BookOrder>,
    /// The newest orders, newest first (at most [`RECENT_LIMIT`]).
    #[serde(default)]
    #[schemars(with = "Vec<Order>")]
    pub recent: Vec<BookOrder>,
}

/// An order in a [`TenantOrders`] book, with its JSON kept once made. The book is written on
/// every batch of its tenant's commands; with up to [`ACTIVE_LIMIT`] orders in it, encoding
/// each order again (their carts are free-form JSON) was most of the pos handler's time.
/// Stored exactly as an [`Order`]; reading it goes through `Deref`, changing it through
/// [`BookOrder::edit`], which drops the kept JSON.
#[derive(Debug, Clone)]
pub struct BookOrder {
    order: Order,
    json: std::sync::OnceLock<Box<serde_json::value::RawValue>>,
}

impl BookOrder {
    /// The order, to change: its JSON is made again at the next write.
    pub fn edit(&mut self) -> &mut Order {
        self.json = std::sync::OnceLock::new();
        &mut self.order
    }

    /// The order itself.
    pub fn into_order(self) -> Order {
        self.order
    }
}

impl From<Order> for BookOrder {
    fn from(order: Order) -> Self {
        Self {
            order,
            json: std::sync::OnceLock::new(),
        }
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
        self.order == other.order
    }
}

impl Serialize for BookOrder {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Some(json) = self.json.get() {
            return json.serialize(serializer);
        }
        match serde_json::value::to_raw_value(&self.order) {
            Ok(json) => self.json.get_or_init(|| json).serialize(serializer),
            Err(_) => self.order.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for BookOrder {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Order::deserialize(deserializer).map(Self::from)
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
        let mut pay = good;
        pay["paymentMethod"] = json!("barter");
        assert!(input(pay).check().is_err());
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
    fn a_book_is_stored_as_plain_orders_and_an_edit_is_written() {
        let order: Order = serde_json::from_value(json!({"id": "order-1",
            "orderNumber": "ORD-20261127-001", "tenantId": "t", "orderType": "takeout",
            "cart": {"items": [{"name": "Dosa \"special\"", "price": 120, "quantity": 1}]},
            "status": "pending", "createdAt": 1, "updatedAt": 1}))
        .expect("order");
        let mut book = TenantOrders {
            active: vec![BookOrder::from(order.clone())],
            recent: vec![BookOrder::from(order.clone())],
            ..Default::default()
        };
        let plain = serde_json::to_value(&order).expect("order json");
        let stored = serde_json::to_value(&book).expect("book json");
        assert_eq!(stored["active"][0], plain);
        // Written twice: the second write uses the kept JSON, and must not differ.
        assert_eq!(serde_json::to_value(&book).expect("again"), stored);
        let edited = book.active[0].edit();
        edited.status = OrderStatus::Preparing;
        edited.updated_at = 2;
        let stored = serde_json::to_value(&book).expect("edited json");
        assert_eq!(stored["active"][0]["status"], "preparing");
        assert_eq!(stored["active"][0]["updatedAt"], 2);
        assert_eq!(stored["recent"][0]["status"], "pending");
        let read: PosState =
            serde_json::from_value(json!({"kind": "tenant", "active": [stored["active"][0]]}))
                .expect("read back");
        let PosState::Tenant(read) = read else {
            panic!("a tenant book")
        };
        assert_eq!(read.active[0].status, OrderStatus::Preparing);
        assert_eq!(read.active[0].cart, order.cart);
    }
}
