//! Read-your-writes for every domain with reads, through two edges: once a write is answered
//! (an HTTP status, or the handler's event on the writer's socket), a read or snapshot served
//! by the other edge right after includes it. Display has its own in tests/display.rs (and in
//! a cluster in tests/pipeline.rs); here POS orders (HTTP and socket), collaborative rooms and
//! device configuration.

mod support;

use serde_json::{Value, json};
use support::*;

struct Sys {
    _nats: tablewire_nats::NatsServer,
    edges: [InProcessEdge; 2],
    _handler: InProcessHandler,
}

async fn system() -> Sys {
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let mut config = edge_config();
    config.device_auth = tablewire_edge::DeviceAuth::None {
        tenant: "r1".into(),
    };
    // The room test sends as fast as answers come; the per-socket limit is not under test.
    config.collab_messages_per_second = 100_000;
    let edges = [
        InProcessEdge::start(nats.client_url(), config.clone()).await,
        InProcessEdge::start(nats.client_url(), config).await,
    ];
    let handler = InProcessHandler::start(nats.client_url(), None).await;
    Sys {
        _nats: nats,
        edges,
        _handler: handler,
    }
}

fn tenant() -> String {
    format!("r{}", uuid::Uuid::new_v4().simple())
}

fn order(i: usize) -> Value {
    json!({"orderType": "takeout", "paymentMethod": "cash",
        "customer": {"name": format!("guest {i}"), "phone": "555-0100"},
        "cart": {"items": [{"name": "Tea", "price": 120, "quantity": 1}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pos_orders_answered_on_one_edge_are_listed_and_synced_by_the_other() {
    let sys = system().await;
    let t = tenant();
    let auth = format!("Bearer {}", token(&t, "staff", 600));
    let headers = [("Authorization", auth.as_str())];
    let mut stale = Vec::new();
    for i in 0..1000usize {
        let (writer, reader) = (sys.edges[i % 2].addr, sys.edges[(i + 1) % 2].addr);
        let (status, _, body) = send(
            writer,
            "POST",
            "/api/orders",
            &headers,
            order(i).to_string(),
        )
        .await;
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        let created: Value = serde_json::from_slice(&body).expect("order");
        let (status, _, body) =
            send(reader, "GET", "/api/orders?status=active", &headers, "").await;
        assert_eq!(status, 200);
        let listed: Value = serde_json::from_slice(&body).expect("list");
        let seen = listed["orders"]
            .as_array()
            .is_some_and(|l| l.iter().any(|o| o["id"] == created["id"]));
        if !seen {
            stale.push(i);
        }
    }
    // Over the socket: the order_created a till hears, then a till connecting to the other edge.
    let path = format!("/ws/restaurant-pos/{t}?token={}", token(&t, "staff", 600));
    for i in 0..100usize {
        let (writer, reader) = (sys.edges[i % 2].addr, sys.edges[(i + 1) % 2].addr);
        let mut till = Ws::connect(writer, &path).await;
        assert_eq!(till.json().await["type"], "sync_state");
        till.send_json(&json!({"type": "submit_order", "order": order(i)}))
            .await;
        let created = till.next_of("order_created").await;
        let mut other = Ws::connect(reader, &path).await;
        let synced = other.json().await;
        let seen = synced["recentOrders"]
            .as_array()
            .is_some_and(|l| l.iter().any(|o| o["id"] == created["order"]["id"]));
        if !seen {
            stale.push(1000 + i);
        }
    }
    assert!(
        stale.is_empty(),
        "stale reads after answered writes: {stale:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rooms_change_heard_on_one_edge_is_in_the_sync_of_a_joiner_on_the_other() {
    let sys = system().await;
    let t = tenant();
    let room = format!("room_{}", uuid::Uuid::new_v4().simple());
    let path = format!(
        "/parties/collaborative_order/{room}?token={}",
        token(&t, "customer", 3600)
    );
    let mut host = Ws::connect(sys.edges[0].addr, &path).await;
    assert_eq!(host.json().await["type"], "sync");
    host.send_json(&json!({"type": "join", "participantId": "host",
        "participantName": "Host", "data": {"circleId": "c1"}}))
        .await;
    host.next_of("sync").await;
    let mut stale = Vec::new();
    for i in 0..1000usize {
        host.send_json(&json!({"type": "add_item", "participantId": "host", "data":
            {"dishName": format!("dish {i}"), "quantity": 1, "price": 100}}))
            .await;
        let added = loop {
            let frame = host.json().await;
            assert_ne!(frame["type"], "error", "{frame}");
            if frame["type"] == "item_added" {
                break frame;
            }
        };
        let item = added["data"]["item"]["id"].clone();
        // A new connection on the other edge, right after the change was heard.
        let mut joiner = Ws::connect(sys.edges[(i + 1) % 2].addr, &path).await;
        let sync = joiner.json().await;
        let seen = sync["data"]["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|it| it["id"] == item));
        if !seen {
            stale.push(i);
        }
        // Removed again, so the room stays small.
        host.send_json(&json!({"type": "remove_item", "participantId": "host",
            "data": {"itemId": item}}))
            .await;
        host.next_of("item_removed").await;
    }
    assert!(
        stale.is_empty(),
        "stale syncs after heard changes: {stale:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_config_answered_on_one_edge_is_pushed_by_the_other_on_connect() {
    let sys = system().await;
    let device = format!("reader-{}", uuid::Uuid::new_v4().simple());
    let auth = format!("Bearer {}", token("r1", "admin", 600));
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let mut stale = Vec::new();
    for i in 0..1000usize {
        let (writer, reader) = (sys.edges[i % 2].addr, sys.edges[(i + 1) % 2].addr);
        let config = json!({"registrationMode": i % 2 == 0, "scanIntervalMs": 1000 + i});
        let (status, _, body) = send(
            writer,
            "PUT",
            &format!("/api/devices/{device}/config"),
            &headers,
            config.to_string(),
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let mut reader_ws = Ws::connect(reader, &format!("/ws/device?deviceId={device}")).await;
        let pushed = reader_ws.json().await;
        if pushed["action"] != "config" || pushed["scanIntervalMs"] != config["scanIntervalMs"] {
            stale.push(i);
        }
    }
    assert!(
        stale.is_empty(),
        "stale configs after answered writes: {stale:?}"
    );
}
