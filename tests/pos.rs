//! Seed 002 against a real nats-server: POS and kitchen WebSockets of a tenant, isolation from
//! other tenants, sync_state on reconnect, validation, idempotent submits over WebSocket and
//! HTTP across edges and handler restarts, the HTTP fallback, and numbering with two workers.

mod support;

use serde_json::{Value, json};
use support::*;

fn tenant() -> String {
    format!("r{}", uuid::Uuid::new_v4().simple())
}

fn order(name: &str) -> Value {
    json!({"tenantId": "ignored", "orderType": "dine-in", "paymentMethod": "cash",
        "customer": {"name": name, "phone": "555-0100"},
        "cart": {"items": [{"id": "i1", "name": "Masala dosa", "price": 120, "quantity": 2}], "total": 240},
        "status": "confirmed", "source": "pos"})
}

async fn pos(addr: std::net::SocketAddr, tenant: &str) -> (Ws, Value) {
    let path = format!(
        "/ws/restaurant-pos/{tenant}?token={}",
        token(tenant, "staff", 600)
    );
    let mut ws = Ws::connect(addr, &path).await;
    let sync = ws.json().await;
    assert_eq!(sync["type"], "sync_state", "first frame: {sync}");
    (ws, sync)
}

async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    tenant: &str,
    extra: &[(&str, &str)],
    body: &Value,
) -> (u16, Value) {
    let auth = format!("Bearer {}", token(tenant, "staff", 600));
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Authorization", auth.as_str()),
    ];
    headers.extend_from_slice(extra);
    let (status, _, body) = send(addr, method, path, &headers, body.to_string()).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_and_status_reach_every_connection_of_the_tenant_and_no_other() {
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let edge = InProcessEdge::start(nats.client_url(), edge_config()).await;
    let handler = InProcessHandler::start(nats.client_url(), None).await;
    let (a, b) = (tenant(), tenant());
    let (mut till, sync) = pos(edge.addr, &a).await;
    assert_eq!(sync["activeOrders"], json!([]));
    assert_eq!(sync["recentOrders"], json!([]));
    let (mut kitchen, _) = pos(edge.addr, &a).await;
    let (mut other, _) = pos(edge.addr, &b).await;

    // A token of another tenant is refused.
    let wrong = format!("/ws/restaurant-pos/{b}?token={}", token(&a, "staff", 600));
    assert!(Ws::try_connect(edge.addr, &wrong).await.is_err());
    assert!(
        Ws::try_connect(edge.addr, &format!("/ws/restaurant-pos/{a}"))
            .await
            .is_err()
    );

    till.send_json(&json!({"type": "submit_order", "order": order("Ann")}))
        .await;
    let mine = till.next_of("order_created").await;
    let seen = kitchen.next_of("order_created").await;
    let number = mine["order"]["orderNumber"]
        .as_str()
        .expect("number")
        .to_string();
    assert!(
        number.starts_with("ORD-") && number.ends_with("-001"),
        "{number}"
    );
    assert_eq!(number.len(), "ORD-20250106-001".len());
    assert_eq!(seen["order"]["id"], mine["order"]["id"]);
    assert_eq!(seen["kitchenOrder"]["status"], "pending");
    assert_eq!(seen["kitchenOrder"]["orderNumber"], number.as_str());
    assert_eq!(seen["kitchenOrder"]["items"][0]["name"], "Masala dosa");
    assert_eq!(mine["order"]["customer"]["name"], "Ann");
    let id = mine["order"]["id"].as_str().expect("id").to_string();

    // Kitchen moves it on; both see it. A skipped step is refused with a code.
    kitchen
        .send_json(&json!({"type": "update_order_status", "orderId": id, "status": "preparing", "updatedBy": "kitchen-terminal-1"}))
        .await;
    for ws in [&mut till, &mut kitchen] {
        let update = ws.next_of("order_status_update").await;
        assert_eq!(
            update,
            json!({"type": "order_status_update", "orderId": id, "orderNumber": number,
                   "status": "preparing", "updatedBy": "kitchen-terminal-1", "seq": update["seq"]})
        );
    }
    kitchen
        .send_json(&json!({"type": "update_order_status", "orderId": id, "status": "completed"}))
        .await;
    let refused = kitchen.next_of("error").await;
    assert_eq!(refused["code"], "CONFLICT", "{refused}");

    // Invalid orders are refused and store nothing.
    let mut no_cart = order("x");
    no_cart.as_object_mut().expect("object").remove("cart");
    let mut negative = order("x");
    negative["cart"]["items"][0]["price"] = json!(-5);
    let mut unknown_type = order("x");
    unknown_type["orderType"] = json!("drive-thru");
    for bad in [no_cart, negative, unknown_type] {
        till.send_json(&json!({"type": "submit_order", "order": bad}))
            .await;
        let error = till.next_of("error").await;
        assert_eq!(error["code"], "VALIDATION_ERROR", "{error}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    till.send_json(&json!({"type": "submit_order", "order": order("Bo")}))
        .await;
    let second = till.next_of("order_created").await;
    assert!(
        second["order"]["orderNumber"]
            .as_str()
            .expect("n")
            .ends_with("-002"),
        "invalid orders took no number: {second}"
    );

    // The other tenant saw none of it: its first order is its own 001.
    other
        .send_json(&json!({"type": "submit_order", "order": order("Cy")}))
        .await;
    let first_other = other.json().await;
    assert_eq!(first_other["type"], "order_created", "{first_other}");
    assert!(
        first_other["order"]["orderNumber"]
            .as_str()
            .expect("n")
            .ends_with("-001")
    );
    assert_eq!(first_other["order"]["tenantId"], b.as_str());

    // A reconnect gets the active and recent orders.
    drop(till);
    let (_till, sync) = pos(edge.addr, &a).await;
    let active: Vec<&str> = sync["activeOrders"]
        .as_array()
        .expect("active")
        .iter()
        .map(|o| o["orderNumber"].as_str().expect("n"))
        .collect();
    assert_eq!(active.len(), 2);
    assert_eq!(sync["activeOrders"][0]["status"], "preparing");
    // The book stores references; the edge fetched each order's body beside it.
    assert_eq!(
        sync["activeOrders"][0]["items"][0]["name"], "Masala dosa",
        "{sync}"
    );
    assert_eq!(sync["recentOrders"][1]["cart"]["total"], 240, "{sync}");
    assert_eq!(
        sync["recentOrders"][0]["orderNumber"],
        second["order"]["orderNumber"]
    );
    assert_eq!(sync["recentOrders"].as_array().map(Vec::len), Some(2));
    handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_submit_makes_one_order_over_websocket_http_edges_and_restarts() {
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let edge = InProcessEdge::start(nats.client_url(), edge_config()).await;
    let edge2 = InProcessEdge::start(nats.client_url(), edge_config()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite://{}/records.db", dir.path().display());
    let handler = InProcessHandler::start(nats.client_url(), Some(db.clone())).await;
    let t = tenant();
    let (mut till, _) = pos(edge.addr, &t).await;
    let (mut kitchen, _) = pos(edge2.addr, &t).await;
    let submit =
        json!({"type": "submit_order", "idempotencyKey": "till-1:42", "order": order("Ann")});
    for _ in 0..3 {
        till.send_json(&submit).await;
    }
    let mut ids = Vec::new();
    for _ in 0..3 {
        let created = till.next_of("order_created").await;
        ids.push((
            created["order"]["id"].clone(),
            created["order"]["orderNumber"].clone(),
        ));
    }
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    let first = kitchen.next_of("order_created").await;
    assert_eq!(
        (
            first["order"]["id"].clone(),
            first["order"]["orderNumber"].clone()
        ),
        ids[0]
    );
    assert_eq!(first["order"]["idempotencyKey"], "till-1:42");

    // Over HTTP, on the other edge, with the key in the body and in the header.
    let (status, body) = http(
        edge2.addr,
        "POST",
        "/api/orders",
        &t,
        &[],
        &json!({"order": order("Ann"), "idempotencyKey": "till-1:42"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], ids[0].0);
    // After a handler restart, still the same order.
    handler.stop().await;
    let handler = InProcessHandler::start(nats.client_url(), Some(db.clone())).await;
    let (status, body) = http(
        edge.addr,
        "POST",
        "/api/orders",
        &t,
        &[("Idempotency-Key", "till-1:42")],
        &order("Ann"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["orderNumber"], ids[0].1);

    // A new key over HTTP makes a new order that reaches the kitchen like any other.
    let (status, fresh) = http(
        edge.addr,
        "POST",
        "/api/orders",
        &t,
        &[("Idempotency-Key", "till-1:43")],
        &order("Bo"),
    )
    .await;
    assert_eq!(status, 201, "{fresh}");
    assert!(
        fresh["orderNumber"].as_str().expect("n").ends_with("-002"),
        "{fresh}"
    );
    let next = kitchen.next_of("order_created").await;
    assert_eq!(
        next["order"]["id"], fresh["id"],
        "the kitchen saw the first order once"
    );
    let (status, bad) = http(
        edge.addr,
        "POST",
        "/api/orders",
        &t,
        &[],
        &json!({"orderType": "dine-in"}),
    )
    .await;
    assert_eq!(
        (status, bad["error"]["code"].clone()),
        (400, json!("VALIDATION_ERROR"))
    );

    // The rest of the fallback: list active, change status.
    let (status, list) = http(
        edge.addr,
        "GET",
        "/api/orders?status=active",
        &t,
        &[],
        &Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["orders"].as_array().map(Vec::len), Some(2), "{list}");
    assert_eq!(
        list["orders"][0]["cart"]["items"][0]["name"], "Masala dosa",
        "{list}"
    );
    // The first order was made before the restart: the new worker read the book with its
    // orders' bodies, so this change writes the whole order to SQL (checked below).
    let first_path = format!("/api/orders/{}", ids[0].0.as_str().expect("id"));
    let (status, changed) = http(
        edge.addr,
        "PATCH",
        &first_path,
        &t,
        &[],
        &json!({"status": "preparing", "updatedBy": "kitchen"}),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    let update = kitchen.next_of("order_status_update").await;
    assert_eq!(update["orderId"], ids[0].0);
    let path = format!("/api/orders/{}", fresh["id"].as_str().expect("id"));
    let (status, changed) = http(
        edge.addr,
        "PATCH",
        &path,
        &t,
        &[],
        &json!({"status": "cancelled", "updatedBy": "manager"}),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["status"], "cancelled");
    let update = kitchen.next_of("order_status_update").await;
    assert_eq!(update["orderId"], fresh["id"]);
    let (status, again) = http(
        edge.addr,
        "PATCH",
        &path,
        &t,
        &[],
        &json!({"status": "preparing"}),
    )
    .await;
    assert_eq!(
        (status, again["error"]["code"].clone()),
        (409, json!("CONFLICT"))
    );
    let (status, _) = http(
        edge.addr,
        "GET",
        "/api/orders?status=active",
        &tenant(),
        &[],
        &Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = send(edge.addr, "GET", "/api/orders", &[], "").await;
    assert_eq!(status, 401);

    // The tenant's clock: only admins set it; at UTC+14 the local day starts 14 hours earlier.
    let settings = json!({"utcOffsetMinutes": 840});
    let (status, body) = http(edge.addr, "PUT", "/api/pos/settings", &t, &[], &settings).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (403, json!("FORBIDDEN"))
    );
    let admin = format!("Bearer {}", token(&t, "admin", 600));
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", admin.as_str()),
    ];
    let (status, _, _) = send(
        edge.addr,
        "PUT",
        "/api/pos/settings",
        &headers,
        settings.to_string(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, later) = http(edge.addr, "POST", "/api/orders", &t, &[], &order("Cy")).await;
    assert_eq!(status, 201, "{later}");
    let utc_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        / 3600
        % 24;
    let (before, after) = (
        fresh["orderNumber"].as_str().expect("n"),
        later["orderNumber"].as_str().expect("n"),
    );
    if utc_hour >= 10 {
        assert!(
            after > before && after.ends_with("-001"),
            "a new local day: {before} then {after}"
        );
    } else {
        assert_eq!(
            &after[..13],
            &before[..13],
            "same local day: {before} then {after}"
        );
        assert!(after.ends_with("-003"), "{after}");
    }

    // SQL (SQLite here) holds each order once, the repeated one too.
    let pool = tablewire_handlers::store::connect(&db)
        .await
        .expect("sqlite");
    eventually("three orders and two status changes in SQLite", || {
        let (pool, t) = (pool.clone(), t.clone());
        async move {
            let rows = sqlx::query_as::<_, (String, Option<String>, String, String)>(
                "SELECT order_id, idempotency_key, status, data FROM pos_orders \
                 WHERE tenant_id = $1 ORDER BY created_at",
            )
            .bind(&t)
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
            let keys: Vec<Option<&str>> = rows.iter().map(|r| r.1.as_deref()).collect();
            let first: Value = rows
                .first()
                .and_then(|r| serde_json::from_str(&r.3).ok())
                .unwrap_or_default();
            rows.len() == 3
                && keys == [Some("till-1:42"), Some("till-1:43"), None]
                && rows[1].2 == "cancelled"
                && rows[0].2 == "preparing"
                && first["status"] == "preparing"
                && first["cart"]["items"][0]["name"] == "Masala dosa"
        }
    })
    .await;
    handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_number_500_concurrent_orders_consecutively_and_record_them() {
    let pg = PostgresDb::create().await;
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let edge = InProcessEdge::start(nats.client_url(), edge_config()).await;
    let one = InProcessHandler::start(nats.client_url(), Some(pg.url.clone())).await;
    let two = InProcessHandler::start(nats.client_url(), Some(pg.url.clone())).await;
    let t = tenant();
    let mut tasks = Vec::new();
    for i in 0..500 {
        let t = t.clone();
        let addr = edge.addr;
        tasks.push(tokio::spawn(async move {
            let key = format!("k{i}");
            let (status, body) = http(
                addr,
                "POST",
                "/api/orders",
                &t,
                &[("Idempotency-Key", &key)],
                &order("N"),
            )
            .await;
            assert_eq!(status, 201, "{body}");
            body["orderNumber"].as_str().expect("number").to_string()
        }));
    }
    let mut numbers = Vec::new();
    for task in tasks {
        numbers.push(task.await.expect("task"));
    }
    let mut nnn: Vec<u64> = numbers
        .iter()
        .map(|n| {
            n.rsplit('-')
                .next()
                .and_then(|x| x.parse().ok())
                .expect("NNN")
        })
        .collect();
    nnn.sort_unstable();
    assert_eq!(nnn, (1..=500).collect::<Vec<u64>>());

    // Every order and a status change reach SQL once (the oldest left the live state: at most
    // ACTIVE_LIMIT active orders are kept there).
    let (status, changed) = http(
        edge.addr,
        "PATCH",
        "/api/orders/order-500",
        &t,
        &[],
        &json!({"status": "preparing"}),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    let pool = tablewire_handlers::store::connect(&pg.url)
        .await
        .expect("postgres");
    eventually("500 orders and one status change in PostgreSQL", || {
        let (pool, t) = (pool.clone(), t.clone());
        async move {
            let orders = sqlx::query_as::<_, (i64, i64)>(
                "SELECT COUNT(*), COUNT(DISTINCT order_number) FROM pos_orders WHERE tenant_id = $1",
            )
            .bind(&t)
            .fetch_one(&pool)
            .await
            .ok();
            let history = sqlx::query_as::<_, (String, String)>(
                "SELECT h.status, o.status FROM pos_order_status h JOIN pos_orders o \
                 ON o.tenant_id = h.tenant_id AND o.order_id = h.order_id WHERE h.tenant_id = $1",
            )
            .bind(&t)
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
            orders == Some((500, 500))
                && history == vec![("preparing".to_string(), "preparing".to_string())]
        }
    })
    .await;
    one.stop().await;
    two.stop().await;
}

/// The `Nats-TTL` header (seconds) of a pos key's last KV write, `None` without one; `Err` when
/// the key has no entry.
async fn claim_ttl(
    stream: &async_nats::jetstream::stream::Stream,
    tenant: &str,
    key: &str,
) -> Result<Option<u64>, String> {
    let subject = format!(
        "$KV.{}.{}",
        tablewire_nats::resource::state_bucket(tablewire_schemas::Domain::Pos),
        tablewire_nats::resource::state_key(tenant, key)
    );
    let message = stream
        .get_last_raw_message_by_subject(&subject)
        .await
        .map_err(|e| e.to_string())?;
    Ok(message
        .headers
        .get(async_nats::header::NATS_MESSAGE_TTL)
        .and_then(|v| v.as_str().parse().ok()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_claims_expire_from_kv_after_24_hours() {
    use tablewire_schemas::pos::{Command, IDEMPOTENCY_WINDOW_MS, idempotency_state_key};
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let edge = InProcessEdge::start(nats.client_url(), edge_config()).await;
    let handler = InProcessHandler::start(nats.client_url(), None).await;
    let t = tenant();
    let (mut till, _) = pos(edge.addr, &t).await;
    let js = async_nats::jetstream::new(client(nats.client_url()).await);
    let kv_stream = js
        .get_stream(format!(
            "KV_{}",
            tablewire_nats::resource::state_bucket(tablewire_schemas::Domain::Pos)
        ))
        .await
        .expect("pos state stream");

    // A submission today: its claim is written with a 24-hour TTL, the tenant's book without.
    till.send_json(
        &json!({"type": "submit_order", "idempotencyKey": "fresh", "order": order("Ann")}),
    )
    .await;
    let fresh = till.next_of("order_created").await;
    eventually("the claim holds the created order", || async {
        claim_ttl(&kv_stream, &t, &idempotency_state_key("fresh"))
            .await
            .is_ok_and(|ttl| ttl.is_some())
    })
    .await;
    // The last write is the claim's `Created`, a moment after the submission.
    let ttl = claim_ttl(&kv_stream, &t, &idempotency_state_key("fresh"))
        .await
        .expect("claim");
    let day = (IDEMPOTENCY_WINDOW_MS / 1000) as u64;
    assert!(
        ttl.is_some_and(|s| (day - 60..=day).contains(&s)),
        "{ttl:?}"
    );
    assert_eq!(
        claim_ttl(&kv_stream, &t, tablewire_schemas::pos::TENANT_KEY).await,
        Ok(None),
        "the tenant's book does not expire"
    );

    // A submission the edge accepted 24 hours minus 5 seconds ago (the commands' clock; an
    // envelope published as an edge would), then a repeat now: the repeat gets that order, and
    // its write leaves the claim the 5 seconds still left, after which KV drops it.
    let old_key = idempotency_state_key("yesterday");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let command = Command::Submit {
        order: serde_json::from_value(order("Bo")).expect("order"),
        idempotency_key: Some("yesterday".into()),
    };
    let envelope = tablewire_schemas::Envelope {
        tenant: t.clone(),
        domain: tablewire_schemas::Domain::Pos,
        key: old_key.clone(),
        id: format!("test-{}", uuid::Uuid::new_v4().simple()),
        origin: tablewire_schemas::Origin {
            edge: String::new(),
            conn: None,
            request: None,
        },
        claims: None,
        at: now - IDEMPOTENCY_WINDOW_MS + 5_000,
        command: serde_json::value::to_raw_value(&command).expect("command"),
    };
    js.publish(
        tablewire_nats::subject::input(tablewire_schemas::Domain::Pos, &t, &old_key),
        serde_json::to_vec(&envelope).expect("envelope").into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");
    let old = till.next_of("order_created").await;
    assert_eq!(old["order"]["idempotencyKey"], "yesterday");
    eventually("the old claim holds its order", || async {
        claim_ttl(&kv_stream, &t, &old_key)
            .await
            .is_ok_and(|ttl| ttl.is_some_and(|s| s > 60))
    })
    .await;
    till.send_json(
        &json!({"type": "submit_order", "idempotencyKey": "yesterday", "order": order("Bo")}),
    )
    .await;
    let repeat = till.next_of("order_created").await;
    assert_eq!(
        repeat["order"]["id"], old["order"]["id"],
        "within 24 hours: the same order"
    );
    let ttl = claim_ttl(&kv_stream, &t, &old_key).await;
    assert!(
        matches!(ttl, Ok(Some(1..=5)) | Err(_)),
        "the repeat's write keeps the claim only for what is left: {ttl:?}"
    );
    let kv = js
        .get_key_value(tablewire_nats::resource::state_bucket(
            tablewire_schemas::Domain::Pos,
        ))
        .await
        .expect("bucket");
    let state_key = tablewire_nats::resource::state_key(&t, &old_key);
    eventually("the expired claim removed from KV", || async {
        matches!(kv.get(&state_key).await, Ok(None))
    })
    .await;
    // The fresh claim is still there, and still answers with its order.
    assert!(matches!(
        kv.get(tablewire_nats::resource::state_key(
            &t,
            &idempotency_state_key("fresh")
        ))
        .await,
        Ok(Some(_))
    ));
    till.send_json(
        &json!({"type": "submit_order", "idempotencyKey": "fresh", "order": order("Ann")}),
    )
    .await;
    let again = till.next_of("order_created").await;
    assert_eq!(again["order"]["id"], fresh["order"]["id"]);

    // The expired key submitted again now makes a new order.
    till.send_json(
        &json!({"type": "submit_order", "idempotencyKey": "yesterday", "order": order("Bo")}),
    )
    .await;
    let renewed = till.next_of("order_created").await;
    assert_ne!(renewed["order"]["id"], old["order"]["id"]);
    assert_eq!(renewed["order"]["idempotencyKey"], "yesterday");
    handler.stop().await;
}

/// The records stream full (its SQL writer far behind): orders go on being taken, and once
/// there is room again every one of them reaches SQL. The tenant's order book is one key, so
/// each order rewrites it: a write must never replace records that were not stored yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_taken_while_the_records_stream_is_full_all_reach_sql() {
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let js = async_nats::jetstream::new(client(nats.client_url()).await);
    let mut records = js
        .get_stream(tablewire_nats::resource::RECORDS_STREAM)
        .await
        .expect("records stream");
    let mut config = records.info().await.expect("info").config.clone();
    let room = config.max_bytes;
    // Room for two or three order records.
    config.max_bytes = 3_000;
    js.update_stream(config.clone()).await.expect("shrink");
    let edge = InProcessEdge::start(nats.client_url(), edge_config()).await;
    let applier = InProcessHandler::start(nats.client_url(), None).await;
    let t = tenant();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let t = t.clone();
        let addr = edge.addr;
        tasks.push(tokio::spawn(async move {
            let key = format!("full-{i}");
            http(
                addr,
                "POST",
                "/api/orders",
                &t,
                &[("Idempotency-Key", &key)],
                &order("F"),
            )
            .await
        }));
        // Separate batches, each rewriting the book while records wait.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    config.max_bytes = room;
    js.update_stream(config).await.expect("room again");
    for task in tasks {
        // Accepted (stored) either way; the answer may have timed out while records waited.
        let (status, body) = task.await.expect("task");
        assert!(matches!(status, 201 | 504), "{status} {body}");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite://{}/records.db", dir.path().display());
    let writer = InProcessHandler::start(nats.client_url(), Some(db.clone())).await;
    let pool = tablewire_handlers::store::connect(&db)
        .await
        .expect("sqlite");
    eventually("all 12 orders in SQL", || {
        let (pool, t) = (pool.clone(), t.clone());
        async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM pos_orders WHERE tenant_id = $1")
                .bind(&t)
                .fetch_one(&pool)
                .await
                .ok()
                == Some(12)
        }
    })
    .await;
    writer.stop().await;
    applier.stop().await;
}

/// A worker applying a tenant's orders on a book another worker has written since (a replica
/// behind, or a partition moving between workers) loses its compare-and-set and applies them
/// again on the book as it is: nothing of the lost attempt may stay behind. Before, the body
/// it had sent for the order number the other worker took replaced that order's body, the book
/// took that body's idempotency key for the order's, answered the key's submit with the other
/// worker's order, and never made its own: the chaos soak's lost POS order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_applied_on_a_stale_book_neither_replaces_another_orders_body_nor_is_lost() {
    use tablewire_handlers::domain::{Context, Domain as _, Effects};
    use tablewire_nats::resource;
    use tablewire_schemas::pos::{Command, PosState, TENANT_KEY};
    use tablewire_schemas::stored::Stored;

    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let edge = InProcessEdge::start(nats.client_url(), edge_config()).await;
    let handler = InProcessHandler::start(nats.client_url(), None).await;
    let t = tenant();
    let (mut till, _) = pos(edge.addr, &t).await;
    let submit = |key: &str, name: &str| json!({"type": "submit_order", "idempotencyKey": key, "order": order(name)});
    till.send_json(&submit("k-1", "Ann")).await;
    assert_eq!(
        till.next_of("order_created").await["order"]["id"],
        "order-1"
    );

    // Meanwhile another worker makes order-2 (as a worker does: its body, then the book).
    let js = async_nats::jetstream::new(client(nats.client_url()).await);
    let state = js
        .get_key_value(resource::state_bucket(tablewire_schemas::Domain::Pos))
        .await
        .expect("state bucket");
    let parts = js
        .get_key_value(resource::parts_bucket(tablewire_schemas::Domain::Pos))
        .await
        .expect("parts bucket");
    let book_key = resource::state_key(&t, TENANT_KEY);
    let entry = state
        .entry(&book_key)
        .await
        .expect("read the book")
        .expect("a book");
    let mut book: Stored<PosState> = serde_json::from_slice(&entry.value).expect("a book");
    let pos = tablewire_handlers::pos::Pos::DEFAULT;
    let nobody = tablewire_schemas::Origin::default();
    let ctx = Context {
        now_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64,
        stream_seq: book.applied,
        message_id: "another-worker",
        tenant: &t,
        key: TENANT_KEY,
        claims: None,
        origin: &nobody,
    };
    let command = Command::Submit {
        order: serde_json::from_value(order("Bo")).expect("an order"),
        idempotency_key: None,
    };
    pos.apply(&mut book.state, command, &ctx, &mut Effects::default())
        .expect("order-2 made");
    for (name, body) in pos.unwritten_parts(&book.state) {
        parts
            .put(resource::part_key(&book_key, &name), body.into())
            .await
            .expect("body stored");
    }
    pos.parts_written(&mut book.state);
    book.seq += 1;
    book.outbox = Default::default();
    let value = serde_json::to_vec(&book).expect("encode");
    state
        .update(&book_key, value.into(), entry.revision)
        .await
        .expect("the other worker's book written");

    // The handler's worker still holds the book as it wrote it: it makes k-2's order as
    // order-2, loses the compare-and-set, and makes it again on the book as it is. Sent twice,
    // as a terminal does that hears nothing: a repeat is answered from the key's claim.
    till.send_json(&submit("k-2", "Cy")).await;
    till.send_json(&submit("k-2", "Cy")).await;
    let created = till.next_of("order_created").await;
    assert_eq!(created["order"]["idempotencyKey"], "k-2");
    assert_eq!(
        created["order"]["id"], "order-3",
        "k-2 got an order of its own: {created}"
    );
    let body = parts
        .get(resource::part_key(&book_key, "body:order-2"))
        .await
        .expect("read a body")
        .expect("order-2's body");
    let body: Value = serde_json::from_slice(&body).expect("a body");
    assert_eq!(
        body["customer"]["name"], "Bo",
        "order-2's body is still order-2's"
    );
    handler.stop().await;
}
