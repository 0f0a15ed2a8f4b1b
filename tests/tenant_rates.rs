//! Per-tenant write rates, held in the handlers across edges: a restaurant's POS book and its
//! events feed accept a burst and then their sustained rate, whichever edge the writes come
//! through; the writes over it are refused with RATE_LIMITED (never answered as accepted) and
//! another restaurant is not affected. An idempotency key refused this way is released, so the
//! same key sent again later makes its order.

mod support;

use serde_json::{Value, json};
use support::*;
use tablewire_handlers::rate::WriteRate;

fn tenant() -> String {
    format!("r{}", uuid::Uuid::new_v4().simple())
}

fn order() -> Value {
    json!({"orderType": "takeout", "paymentMethod": "cash",
        "customer": {"name": "Ann", "phone": "555-0100"},
        "cart": {"items": [{"name": "Tea", "price": 120, "quantity": 1}]}})
}

/// A sustained rate this slow makes the burst the whole allowance within one test.
const SLOW: WriteRate = WriteRate::new(1, 5);

async fn system() -> (
    tablewire_nats::NatsServer,
    [InProcessEdge; 2],
    InProcessHandler,
) {
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let edges = [
        InProcessEdge::start(nats.client_url(), edge_config()).await,
        InProcessEdge::start(nats.client_url(), edge_config()).await,
    ];
    let config = tablewire_handlers::Config {
        tenant_orders: SLOW,
        tenant_events: SLOW,
        ..handler_config()
    };
    let handler = InProcessHandler::start_with(nats.client_url(), None, config).await;
    (nats, edges, handler)
}

async fn post_order(addr: std::net::SocketAddr, tenant: &str, key: Option<&str>) -> (u16, Value) {
    let auth = format!("Bearer {}", token(tenant, "staff", 600));
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(key) = key {
        headers.push(("Idempotency-Key", key));
    }
    let (status, _, body) = send(addr, "POST", "/api/orders", &headers, order().to_string()).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restaurants_orders_and_events_are_limited_across_edges() {
    let (_nats, edges, _handler) = system().await;
    let (busy, quiet) = (tenant(), tenant());
    let started = std::time::Instant::now();
    let mut answers = Vec::new();
    for i in 0..12usize {
        answers.push(post_order(edges[i % 2].addr, &busy, None).await);
    }
    // The burst, plus one a second for however long a slow machine took to send them.
    let allowed = 5 + started.elapsed().as_secs() as usize + 1;
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    let limited: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 429)
        .map(|(_, b)| b)
        .collect();
    assert!(
        (5..=allowed).contains(&created),
        "the burst, through both edges together: {answers:?}"
    );
    assert_eq!(created + limited.len(), 12, "{answers:?}");
    assert!(limited.iter().all(|b| b["error"]["code"] == "RATE_LIMITED"
        && b["error"]["retryAfterMs"].as_u64().is_some_and(|ms| ms > 0)));
    // The socket is held to the same rate: a refusal comes back as an error frame.
    let path = format!(
        "/ws/restaurant-pos/{busy}?token={}",
        token(&busy, "staff", 600)
    );
    let mut till = Ws::connect(edges[0].addr, &path).await;
    assert_eq!(till.json().await["type"], "sync_state");
    for _ in 0..3 {
        till.send_json(&json!({"type": "submit_order", "order": order()}))
            .await;
    }
    let refused = till.next_of("error").await;
    assert_eq!(
        refused["error"]["code"]
            .as_str()
            .or(refused["code"].as_str()),
        Some("RATE_LIMITED"),
        "{refused}"
    );
    // Another restaurant is not affected.
    assert_eq!(post_order(edges[1].addr, &quiet, None).await.0, 201);

    // Events: the same rule for `POST /api/events`.
    let service = token(&busy, "service", 600);
    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    for i in 0..8usize {
        let (status, _) = post(
            edges[i % 2].addr,
            "/api/events",
            Some(&service),
            &json!({"type": "table:updated", "data": {"table": {"id": i}}}),
        )
        .await;
        statuses.push(status);
    }
    let allowed = 5 + started.elapsed().as_secs() as usize + 1;
    let published = statuses.iter().filter(|s| **s == 200).count();
    assert!((5..=allowed).contains(&published), "{statuses:?}");
    assert_eq!(
        published + statuses.iter().filter(|s| **s == 429).count(),
        8,
        "{statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_refused_for_the_rate_is_released() {
    let (_nats, edges, _handler) = system().await;
    let busy = tenant();
    for i in 0..5usize {
        assert_eq!(post_order(edges[i % 2].addr, &busy, None).await.0, 201);
    }
    let (status, body) = post_order(edges[0].addr, &busy, Some("k-late")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("RATE_LIMITED")),
        "{body}"
    );
    // Once the rate allows one more (1 per second), the same key makes its order.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let (status, body) = post_order(edges[1].addr, &busy, Some("k-late")).await;
        if status == 201 {
            assert_eq!(body["idempotencyKey"], "k-late", "{body}");
            break;
        }
        assert_eq!(status, 429, "{body}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the key was never released"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    // And it is that order from now on.
    let (status, again) = post_order(edges[0].addr, &busy, Some("k-late")).await;
    assert!(status == 201, "{again}");
}
