//! The domains feeding seed 004's events socket, end to end against a real nats-server: an order
//! submitted over the POS socket (seed 002) arrives as `order:created` and its status change as
//! `order:status` on the restaurant's events socket, and never on another restaurant's.

mod support;

use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use support::*;

fn restaurant() -> String {
    format!("r{}", uuid::Uuid::new_v4().simple())
}

async fn events_socket(addr: SocketAddr, tenant: &str) -> Ws {
    let mut ws = Ws::connect(addr, &format!("/ws?token={}", token(tenant, "staff", 600))).await;
    let connected = ws.json().await;
    assert_eq!(connected["type"], "connected", "{connected}");
    ws
}

async fn pos_socket(addr: SocketAddr, tenant: &str) -> Ws {
    let path = format!(
        "/ws/restaurant-pos/{tenant}?token={}",
        token(tenant, "staff", 600)
    );
    let mut ws = Ws::connect(addr, &path).await;
    assert_eq!(ws.json().await["type"], "sync_state");
    ws
}

fn order() -> Value {
    json!({"tenantId": "ignored", "orderType": "takeout", "paymentMethod": "online",
        "customer": {"name": "Dee", "phone": "555-0199"},
        "cart": {"items": [{"id": "i9", "name": "Idli", "price": 90, "quantity": 3}], "total": 270},
        "status": "confirmed", "source": "pos"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pos_order_and_its_status_reach_the_events_socket_of_its_restaurant_only() {
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let edge = InProcessEdge::start(nats.client_url(), edge_config()).await;
    let _handler = InProcessHandler::start(nats.client_url(), None).await;
    let (mine, other) = (restaurant(), restaurant());
    let mut dashboard = events_socket(edge.addr, &mine).await;
    let mut elsewhere = events_socket(edge.addr, &other).await;
    let mut till = pos_socket(edge.addr, &mine).await;

    till.send_json(&json!({"type": "submit_order", "order": order()}))
        .await;
    let created = till.next_of("order_created").await;
    let id = created["order"]["id"]
        .as_str()
        .expect("order id")
        .to_string();
    let number = created["order"]["orderNumber"].clone();

    let event = dashboard.next_of("order:created").await;
    assert_eq!(event["data"]["order"]["id"], id.as_str(), "{event}");
    assert_eq!(event["data"]["order"]["orderNumber"], number, "{event}");
    let stamp = event["timestamp"].as_str().expect("timestamp");
    assert!(stamp.ends_with('Z'), "RFC 3339 UTC: {stamp}");

    till.send_json(&json!({"type": "update_order_status", "orderId": id, "status": "preparing", "updatedBy": "kitchen-1"}))
        .await;
    till.next_of("order_status_update").await;
    let status = dashboard.next_of("order:status").await;
    assert_eq!(status["data"]["status"], "preparing", "{status}");
    assert_eq!(status["data"]["order_id"], id.as_str(), "{status}");
    assert_eq!(status["data"]["previous_status"], "pending", "{status}");

    // The other restaurant's dashboard saw none of it (both events were delivered above, so
    // anything misrouted would already be waiting).
    let stray = tokio::time::timeout(Duration::from_millis(300), elsewhere.json()).await;
    assert!(stray.is_err(), "another restaurant got {stray:?}");
}

/// A dine-in order keeps the table (and the client's other fields) wherever the order goes:
/// `order_created` (order and kitchenOrder), `sync_state` after a reconnect, `GET
/// /api/orders`, and the events feed as `table_id`, so an events client filtering on a table
/// gets the POS orders of that table and no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dine_in_orders_table_reaches_every_frame_and_the_events_filter() {
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let edge = InProcessEdge::start(nats.client_url(), edge_config()).await;
    let _handler = InProcessHandler::start(nats.client_url(), None).await;
    let r = restaurant();
    let mut table_7 = events_socket(edge.addr, &r).await;
    table_7
        .send_json(
            &json!({"type": "subscribe", "events": ["order:created", "order:status"],
            "filters": {"table_id": "T7"}}),
        )
        .await;
    table_7.next_of("subscribed").await;
    let mut till = pos_socket(edge.addr, &r).await;
    let at = |table: &str| {
        let mut o = order();
        o["orderType"] = json!("dine-in");
        o["tableId"] = json!(table);
        o["notes"] = json!("window seat");
        o["id"] = json!("temp-1");
        o
    };
    till.send_json(&json!({"type": "submit_order", "order": at("T3")}))
        .await;
    till.next_of("order_created").await;
    till.send_json(&json!({"type": "submit_order", "order": at("T7")}))
        .await;
    let created = till.next_of("order_created").await;
    assert_eq!(created["order"]["tableId"], "T7", "{created}");
    assert_eq!(created["order"]["notes"], "window seat");
    assert_ne!(created["order"]["id"], "temp-1", "the server sets the id");
    assert_eq!(created["kitchenOrder"]["tableId"], "T7", "{created}");
    let id = created["order"]["id"].as_str().expect("id").to_string();

    let event = table_7.next_of("order:created").await;
    assert_eq!(
        event["data"]["order"]["id"],
        id.as_str(),
        "only table T7's order: {event}"
    );
    assert_eq!(event["data"]["table_id"], "T7");
    till.send_json(&json!({"type": "update_order_status", "orderId": id,
        "status": "preparing", "updatedBy": "kitchen-1"}))
        .await;
    let status = table_7.next_of("order:status").await;
    assert_eq!(status["data"]["table_id"], "T7", "{status}");

    let (_, synced) = pos(edge.addr, &r).await;
    let recent = synced["recentOrders"].as_array().expect("recent");
    let mine = recent
        .iter()
        .find(|o| o["id"] == id.as_str())
        .expect("in recent");
    assert_eq!(mine["tableId"], "T7", "{synced}");
    let active = synced["activeOrders"].as_array().expect("active");
    let kitchen = active
        .iter()
        .find(|o| o["orderId"] == id.as_str())
        .expect("active");
    assert_eq!(kitchen["tableId"], "T7", "{synced}");
    let auth = format!("Bearer {}", token(&r, "staff", 600));
    let (status, _, body) = send(
        edge.addr,
        "GET",
        "/api/orders?status=active",
        &[("Authorization", auth.as_str())],
        "",
    )
    .await;
    assert_eq!(status, 200);
    let listed: Value = serde_json::from_slice(&body).expect("json");
    let listed = listed["orders"].as_array().expect("orders");
    assert!(
        listed
            .iter()
            .any(|o| o["id"] == id.as_str() && o["tableId"] == "T7"),
        "{listed:?}"
    );
}

async fn pos(addr: SocketAddr, tenant: &str) -> (Ws, Value) {
    let path = format!(
        "/ws/restaurant-pos/{tenant}?token={}",
        token(tenant, "staff", 600)
    );
    let mut ws = Ws::connect(addr, &path).await;
    let synced = ws.json().await;
    assert_eq!(synced["type"], "sync_state");
    (ws, synced)
}
