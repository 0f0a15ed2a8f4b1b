//! Seed 001 against a real nats-server: collaborative order rooms with concurrent participants,
//! every message type and rejection, reconnect sync, tokens and tenants, per-connection limits,
//! finalized orders in SQLite and PostgreSQL (through a database outage) and on the events
//! feed, and idle expiry.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::*;
use tablewire_schemas::Domain;

struct Sys {
    nats: tablewire_nats::NatsServer,
    edge: InProcessEdge,
    handler: InProcessHandler,
}

async fn system(
    database_url: Option<String>,
    edge: tablewire_edge::Config,
    handler: tablewire_handlers::Config,
) -> Sys {
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let edge = InProcessEdge::start(nats.client_url(), edge).await;
    let handler = InProcessHandler::start_with(nats.client_url(), database_url, handler).await;
    Sys {
        nats,
        edge,
        handler,
    }
}

fn room() -> String {
    format!("room_{}", uuid::Uuid::new_v4().simple())
}

fn path(room: &str, token: &str) -> String {
    format!(
        "/parties/collaborative_order/{room}?_pk=client-{}&token={token}",
        uuid::Uuid::new_v4().simple()
    )
}

/// A participant's connection: the frames it received, in order.
struct Client {
    ws: Ws,
    id: String,
    /// Every frame read, in order.
    seen: Vec<Value>,
    /// Frames read but not yet returned by [`Client::until`].
    backlog: std::collections::VecDeque<Value>,
}

impl Client {
    async fn connect(
        addr: std::net::SocketAddr,
        room: &str,
        tenant: &str,
        id: &str,
    ) -> (Client, Value) {
        let mut ws = Ws::connect(addr, &path(room, &token(tenant, "customer", 3600))).await;
        let sync = ws.json().await;
        assert_eq!(sync["type"], "sync", "first frame: {sync}");
        (
            Client {
                ws,
                id: id.to_string(),
                seen: Vec::new(),
                backlog: Default::default(),
            },
            sync,
        )
    }

    async fn send(&mut self, kind: &str, data: Value) {
        let mut message = json!({"type": kind, "participantId": self.id,
            "participantName": format!("Name {}", self.id), "timestamp": 1234567890});
        if !data.is_null() {
            message["data"] = data;
        }
        self.ws.send_json(&message).await;
    }

    /// The earliest frame of `kind` not returned yet (a reply and an event of one command may
    /// arrive in either order), remembering everything read on the way.
    async fn until(&mut self, kind: &str) -> Value {
        if let Some(i) = self.backlog.iter().position(|f| f["type"] == kind) {
            return self.backlog.remove(i).unwrap_or_default();
        }
        loop {
            let frame = self.ws.json().await;
            self.seen.push(frame.clone());
            if frame["type"] == kind {
                return frame;
            }
            self.backlog.push_back(frame);
        }
    }

    async fn error(&mut self) -> Value {
        self.until("error").await
    }

    async fn add(&mut self, dish: &str, price: u64, quantity: u32) {
        self.send(
            "add_item",
            json!({"dishName": dish, "dishType": "veg", "quantity": quantity, "price": price}),
        )
        .await;
    }

    /// The room events seen so far (sequenced frames), as (seq, type, participant).
    fn events(&self) -> Vec<(u64, String, String)> {
        self.seen
            .iter()
            .filter_map(|f| {
                Some((
                    f["seq"].as_u64()?,
                    f["type"].as_str()?.to_string(),
                    f["participantId"].as_str().unwrap_or_default().to_string(),
                ))
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_edit_together_and_every_message_and_rejection_works() {
    let sys = system(None, edge_config(), Default::default()).await;
    let addr = sys.edge.addr;
    let r = room();
    let (mut a, sync) = Client::connect(addr, &r, "r1", "a").await;
    assert_eq!(sync["data"]["sessionId"], r.as_str());
    assert_eq!(sync["data"]["tenantId"], "r1");
    assert_eq!(sync["data"]["status"], "active");
    assert_eq!(sync["data"]["participants"], json!([]));
    let (mut b, _) = Client::connect(addr, &r, "r1", "b").await;
    let (mut c, _) = Client::connect(addr, &r, "r1", "c").await;

    a.send(
        "join",
        json!({"circleId": "circle_1", "tenantId": "forged", "phone": "99"}),
    )
    .await;
    let joined = a.until("sync").await;
    assert_eq!(joined["data"]["initiatedBy"], "a", "join answers sync");
    for client in [&mut b, &mut c] {
        client.send("join", Value::Null).await;
        client.until("sync").await;
    }
    for client in [&mut a, &mut b, &mut c] {
        loop {
            let j = client.until("participant_joined").await;
            if j["participantId"] == "c" {
                assert_eq!(j["data"]["participants"].as_array().map(Vec::len), Some(3));
                assert_eq!(j["data"]["tenantId"], "r1", "tenant from the token");
                break;
            }
        }
    }

    // Three participants add items at the same time.
    const EACH: u64 = 10;
    for i in 0..EACH {
        a.add(&format!("a{i}"), 100, 1).await;
        b.add(&format!("b{i}"), 10, 2).await;
        c.add(&format!("c{i}"), 1, 3).await;
    }
    let mut finals = Vec::new();
    for client in [&mut a, &mut b, &mut c] {
        let mut last = Value::Null;
        for _ in 0..3 * EACH {
            last = client.until("item_added").await;
            assert!(
                last["data"]["item"]["id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("item_"))
            );
        }
        finals.push(last["data"]["orderState"].clone());
    }
    assert_eq!(
        a.events(),
        b.events(),
        "identical events in identical order"
    );
    assert_eq!(b.events(), c.events());
    let state = &finals[0];
    assert_eq!(finals[1], *state);
    assert_eq!(finals[2], *state);
    assert_eq!(state["items"].as_array().map(Vec::len), Some(30));
    assert_eq!(state["total"], EACH * (100 + 20 + 3));
    let splits: Vec<u64> = state["splits"]
        .as_array()
        .expect("splits")
        .iter()
        .map(|s| s["amount"].as_u64().expect("amount"))
        .collect();
    assert_eq!(splits.iter().sum::<u64>(), EACH * 123);
    assert_eq!(splits, vec![410, 410, 410]);

    // Every other message type, seen by everyone.
    b.send(
        "update_quantity",
        json!({"itemId": "item_2", "quantity": 5}),
    )
    .await;
    let q = a.until("quantity_updated").await;
    assert_eq!(q["data"]["item"]["quantity"], 5);
    assert_eq!(q["participantId"], "b");
    b.send("remove_item", json!({"itemId": "item_2"})).await;
    let removed = c.until("item_removed").await;
    assert_eq!(removed["data"]["item"]["id"], "item_2");
    let total = removed["data"]["orderState"]["total"]
        .as_u64()
        .expect("total");
    let price = removed["data"]["item"]["price"].as_u64().expect("price");
    assert_eq!(removed["data"]["item"]["quantity"], 5);
    let original_quantity = match price {
        100 => 1,
        10 => 2,
        _ => 3,
    };
    assert_eq!(total, EACH * 123 - price * original_quantity);
    a.send("update_split", json!({"splitType": "itemized"}))
        .await;
    let split = b.until("split_updated").await;
    assert_eq!(split["data"]["splitType"], "itemized");
    let shares = &split["data"]["orderState"]["splits"];
    let share = |i: usize| shares[i]["amount"].as_u64().expect("amount");
    assert_eq!(
        share(0) + share(1) + share(2),
        total,
        "itemized shares add up"
    );
    assert!([1000 - 100, 1000].contains(&share(0)) && [200 - 20, 200].contains(&share(1)));

    // Rejections go to the sender only, with catalogue codes; the state does not change.
    a.send(
        "update_split",
        json!({"splitType": "custom", "amounts": {"a": 1, "b": 2}}),
    )
    .await;
    let e = a.error().await;
    assert_eq!(e["code"], "VALIDATION_ERROR");
    for (frame, code) in [
        ("{not json", "MALFORMED_JSON"),
        (r#"{"type":"dance","participantId":"a"}"#, "UNKNOWN_TYPE"),
        (r#"{"participantId":"a"}"#, "INVALID_MESSAGE"),
        (
            r#"{"type":"add_item","participantId":"a","data":{"dishName":"x","quantity":"2","price":1}}"#,
            "INVALID_MESSAGE",
        ),
        (
            r#"{"type":"add_item","participantId":"a","data":{"dishName":"x","quantity":100,"price":1}}"#,
            "VALIDATION_ERROR",
        ),
        (
            r#"{"type":"add_item","participantId":"a","data":{"dishName":"  ","quantity":1,"price":1}}"#,
            "VALIDATION_ERROR",
        ),
        (
            r#"{"type":"remove_item","participantId":"a","data":{"itemId":"item_999"}}"#,
            "UNKNOWN_RESOURCE",
        ),
        (
            r#"{"type":"add_item","participantId":"stranger","data":{"dishName":"x","quantity":1,"price":1}}"#,
            "FORBIDDEN",
        ),
    ] {
        a.ws.send_text(frame).await;
        let e = a.error().await;
        assert_eq!(e["code"], code, "{frame}: {e}");
        assert!(e["errorCode"].as_u64().is_some());
    }
    let custom = json!({"splitType": "custom", "amounts": {"a": total - 100, "b": 60, "c": 40}});
    a.send("update_split", custom).await;
    c.until("split_updated").await; // the itemized one
    let split = c.until("split_updated").await;
    assert_eq!(split["data"]["splitType"], "custom");
    assert_eq!(split["data"]["orderState"]["splits"][2]["amount"], 40);
    assert!(
        c.seen.iter().all(|f| f["type"] != "error"),
        "others never see a sender's errors"
    );
    b.send("finalize", Value::Null).await;
    assert_eq!(
        b.error().await["code"],
        "FORBIDDEN",
        "only the initiator finalizes"
    );

    // Leave keeps the items; reconnecting gets the current state.
    c.send("leave", Value::Null).await;
    let left = a.until("participant_left").await;
    assert_eq!(left["participantId"], "c");
    assert_eq!(left["data"]["participants"][2]["active"], false);
    assert_eq!(left["data"]["items"].as_array().map(Vec::len), Some(29));
    let before = left["data"].clone();
    drop(c);
    let (mut c, sync) = Client::connect(addr, &r, "r1", "c").await;
    assert_eq!(sync["data"], before, "reconnect syncs the current state");
    assert_eq!(sync["seq"], left["seq"]);
    // The room's rate limiter is kept in KV and never sent to a client: not in the edge's sync,
    // not in any frame the handler produced.
    let kv = async_nats::jetstream::new(client(sys.nats.client_url()).await)
        .get_key_value(tablewire_nats::resource::state_bucket(Domain::Collab))
        .await
        .expect("bucket");
    let stored = kv
        .get(tablewire_nats::resource::state_key("r1", &r))
        .await
        .expect("read room")
        .expect("room stored");
    let stored: Value = serde_json::from_slice(&stored).expect("stored JSON");
    assert!(
        stored["state"]["rateTatUs"].as_i64().unwrap_or(0) > 0,
        "{stored}"
    );
    for frame in std::iter::once(&sync).chain(&a.seen).chain(&b.seen) {
        assert!(
            !frame.to_string().contains("rateTatUs"),
            "a client frame carries the limiter: {frame}"
        );
    }
    c.send(
        "add_item",
        json!({"dishName": "x", "quantity": 1, "price": 1}),
    )
    .await;
    assert_eq!(
        c.error().await["code"],
        "FORBIDDEN",
        "a participant who left must join again"
    );

    a.send("finalize", Value::Null).await;
    let done = b.until("order_finalized").await;
    assert_eq!(done["data"]["orderState"]["status"], "finalized");
    assert_eq!(done["data"]["orderState"]["finalizedBy"], "a");
    a.add("late", 1, 1).await;
    assert_eq!(
        a.error().await["code"],
        "CONFLICT",
        "a finalized order takes no changes"
    );

    // Another tenant's room of the same name is another room.
    let (_other, sync) = Client::connect(addr, &r, "r2", "a").await;
    assert_eq!(sync["data"]["tenantId"], "r2");
    assert_eq!(sync["data"]["items"], json!([]));

    // Tokens: required on `edge`, verified, with a tenant.
    let bare = format!("/parties/collaborative_order/{r}");
    for (headers, status) in [
        (vec![], 401),
        (vec![("Authorization", "Bearer nope".to_string())], 401),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, _, _) = send(addr, "GET", &bare, &headers, "").await;
        assert_eq!(s, status);
    }
    let expired = path(&r, &token("r1", "customer", -3600));
    assert_eq!(send(addr, "GET", &expired, &[], "").await.0, 401);
    let header = format!("Bearer {}", token("r1", "customer", 60));
    let mut by_header = Ws::connect_with_headers(addr, &bare, &[("Authorization", &header)])
        .await
        .expect("a token in the Authorization header works too");
    assert_eq!(by_header.json().await["data"]["status"], "finalized");
    assert_eq!(
        send(addr, "GET", "/parties/other_party/x", &[], "").await.0,
        404
    );
    sys.handler.stop().await;
    drop(sys.nats);
}

/// The edge reads a socket's next message while earlier ones wait for their store: what one
/// participant sends back to back must still be applied in the order it was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_participants_messages_sent_back_to_back_apply_in_order() {
    let sys = system(None, edge_config(), Default::default()).await;
    let r = room();
    let (mut a, _) = Client::connect(sys.edge.addr, &r, "r1", "a").await;
    a.send("join", Value::Null).await;
    a.until("sync").await;
    // More than the edge keeps unconfirmed per socket (64), within the per-connection limit.
    const SENT: usize = 90;
    for i in 0..SENT {
        a.add(&format!("dish{i:03}"), 100 + i as u64, 1).await;
    }
    let mut dishes = Vec::new();
    let mut last = Value::Null;
    for _ in 0..SENT {
        last = a.until("item_added").await;
        dishes.push(
            last["data"]["item"]["dishName"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    let sent: Vec<String> = (0..SENT).map(|i| format!("dish{i:03}")).collect();
    assert_eq!(dishes, sent, "item_added in the order sent");
    let state: Vec<String> = last["data"]["orderState"]["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["dishName"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(state, sent, "the room's items in the order sent");
    let total: u64 = (0..SENT as u64).map(|i| 100 + i).sum();
    assert_eq!(last["data"]["orderState"]["total"], total);
    sys.handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_rooms_and_connection_limits() {
    let mut edge = edge_config();
    edge.collab_open_tenant = Some("demo".into());
    edge.collab_messages_per_second = 5;
    let sys = system(None, edge, Default::default()).await;
    let r = room();
    // Seed 001's client sends no token: with open rooms it lands in the configured tenant.
    let mut ws = Ws::connect(
        sys.edge.addr,
        &format!("/parties/collaborative_order/{r}?_pk=abc"),
    )
    .await;
    let sync = ws.json().await;
    assert_eq!(sync["data"]["tenantId"], "demo");
    for i in 0..6 {
        ws.send_json(&json!({"type": "join", "participantId": format!("p{i}")}))
            .await;
    }
    let limited = ws.next_of("error").await;
    assert_eq!(limited["code"], "RATE_LIMITED");
    let wait = limited["retryAfterMs"].as_u64().expect("retryAfterMs");
    assert!((1..=1000).contains(&wait), "{wait}");
    tokio::time::sleep(Duration::from_millis(wait)).await;
    ws.send_json(&json!({"type": "leave", "participantId": "p0"}))
        .await;
    let left = ws.next_of("participant_left").await;
    assert_eq!(
        left["participantId"], "p0",
        "usable again after the retry time"
    );
    sys.handler.stop().await;
}

/// Seed 001's wscat session, tokenless in the open tenant: `sync` shows the `tenantId` the
/// room's first join named (to every later connection too), while the room stays the open
/// tenant's — its KV key, and a token naming that tenant reaches another room — and its idle
/// expiry still finds it. The seed's `update_split {"splitType":"custom"}` is accepted with its
/// amounts pending and finalize waits for them; the seed's markup is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_rooms_echo_the_named_tenant_and_take_the_seeds_own_messages() {
    let mut edge = edge_config();
    edge.collab_open_tenant = Some("demo".into());
    let handler = tablewire_handlers::Config {
        collab: tablewire_handlers::collab::Settings {
            idle_timeout: Duration::from_millis(1500),
            ..Default::default()
        },
        ..Default::default()
    };
    let sys = system(None, edge, handler).await;
    let r = room();
    let open = format!("/parties/collaborative_order/{r}");
    let mut ws = Ws::connect(sys.edge.addr, &open).await;
    assert_eq!(ws.next_of("sync").await["data"]["tenantId"], "demo");
    // The seed's join, as its README sends it with wscat.
    ws.send_json(&json!({"type": "join", "participantId": "test_user",
        "participantName": "Test User", "timestamp": 1234567890,
        "data": {"circleId": "test_circle", "tenantId": "test_tenant", "phone": "1234567890"}}))
        .await;
    let sync = ws.next_of("sync").await;
    assert_eq!(sync["data"]["tenantId"], "test_tenant", "echoed: {sync}");
    assert_eq!(sync["data"]["circleId"], "test_circle");
    let mut later = Ws::connect(sys.edge.addr, &open).await;
    assert_eq!(
        later.next_of("sync").await["data"]["tenantId"],
        "test_tenant",
        "a later connection's sync shows it too"
    );
    let js = async_nats::jetstream::new(client(sys.nats.client_url()).await);
    let kv = js
        .get_key_value(tablewire_nats::resource::state_bucket(Domain::Collab))
        .await
        .expect("bucket");
    let key = tablewire_nats::resource::state_key("demo", &r);
    assert!(
        matches!(kv.get(&key).await, Ok(Some(_))),
        "the room is the open tenant's"
    );
    let mut named = Ws::connect(
        sys.edge.addr,
        &path(&r, &token("test_tenant", "customer", 60)),
    )
    .await;
    let other = named.next_of("sync").await;
    assert_eq!(
        other["data"]["participants"],
        json!([]),
        "the named tenant's own room: {other}"
    );
    assert_eq!(other["data"]["tenantId"], "test_tenant");

    // The seed's markup is refused, and nothing is added.
    ws.send_json(&json!({"type": "add_item", "participantId": "test_user",
        "data": {"dishName": "<img src=x onerror=\"alert(1)\">Biryani", "quantity": 1, "price": 299}}))
        .await;
    let refused = ws.next_of("error").await;
    assert_eq!(refused["code"], "VALIDATION_ERROR", "{refused}");
    ws.send_json(&json!({"type": "add_item", "participantId": "test_user",
        "data": {"dishName": "Chicken Biryani", "quantity": 2, "price": 299}}))
        .await;
    let added = ws.next_of("item_added").await;
    assert_eq!(
        added["data"]["orderState"]["items"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // The seed's update_split: custom without amounts.
    ws.send_json(
        &json!({"type": "update_split", "participantId": "test_user",
        "participantName": "Test User", "timestamp": 1234567890, "data": {"splitType": "custom"}}),
    )
    .await;
    let split = ws.next_of("split_updated").await;
    assert_eq!(split["data"]["splitType"], "custom", "{split}");
    assert_eq!(split["data"]["orderState"]["splits"], json!([]));
    ws.send_json(&json!({"type": "finalize", "participantId": "test_user"}))
        .await;
    assert_eq!(
        ws.next_of("error").await["code"],
        "CONFLICT",
        "amounts pending"
    );
    ws.send_json(
        &json!({"type": "update_split", "participantId": "test_user",
        "data": {"splitType": "custom", "amounts": {"test_user": 598}}}),
    )
    .await;
    ws.next_of("split_updated").await;
    ws.send_json(&json!({"type": "finalize", "participantId": "test_user"}))
        .await;
    let done = ws.next_of("order_finalized").await;
    assert_eq!(done["data"]["orderState"]["tenantId"], "test_tenant");

    // The sweeper finds the idle room under the open tenant, where it lives.
    eventually("the idle open-tenant room removed from KV", || async {
        matches!(kv.get(&key).await, Ok(None))
    })
    .await;
    sys.handler.stop().await;
}

/// An HTTP (or, with an acceptor, HTTPS) server standing in for the backend's webhook: fails
/// the first request with 500, then records each body with its signature and delivery headers.
struct WebhookReceiver {
    url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<(Value, String, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    async fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> WebhookReceiver {
        use http_body_util::BodyExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let url = match tls {
            // The test certificate names `localhost`.
            Some(_) => format!("https://localhost:{port}/orders"),
            None => format!("http://127.0.0.1:{port}/orders"),
        };
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let failed_once = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let store = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (store, failed_once) = (store.clone(), failed_once.clone());
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let (store, failed_once) = (store.clone(), failed_once.clone());
                        async move {
                            let header = |name: &str| {
                                request
                                    .headers()
                                    .get(name)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_string()
                            };
                            let (signature, delivery) = (
                                header("x-tablewire-signature"),
                                header("x-tablewire-delivery"),
                            );
                            let body = request
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let status = if failed_once
                                .swap(true, std::sync::atomic::Ordering::SeqCst)
                            {
                                let value: Value =
                                    serde_json::from_slice(&body).unwrap_or(Value::Null);
                                assert_eq!(
                                    signature,
                                    tablewire_handlers::collab::webhook::sign("hook-secret", &body),
                                    "signed body"
                                );
                                store
                                    .lock()
                                    .expect("lock")
                                    .push((value, signature, delivery));
                                200
                            } else {
                                500
                            };
                            let mut response = hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::new(),
                            ));
                            *response.status_mut() =
                                hyper::StatusCode::from_u16(status).expect("status");
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    },
                );
                let tls = tls.clone();
                tokio::spawn(async move {
                    use hyper_util::rt::TokioIo;
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        WebhookReceiver {
            url,
            received,
            task,
        }
    }

    fn received(&self) -> Vec<(Value, String, String)> {
        self.received.lock().expect("lock").clone()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn finalize_an_order(addr: std::net::SocketAddr, room: &str) -> Value {
    let (mut a, _) = Client::connect(addr, room, "r1", "a").await;
    a.send("join", json!({"circleId": "circle_9"})).await;
    a.until("participant_joined").await;
    a.add("Chicken Biryani", 299, 2).await;
    a.add("Lassi", 101, 1).await;
    a.until("item_added").await;
    a.until("item_added").await;
    a.send("finalize", Value::Null).await;
    let done = a.until("order_finalized").await;
    a.send("finalize", Value::Null).await;
    assert_eq!(
        a.error().await["code"],
        "CONFLICT",
        "a second finalize is refused"
    );
    done["data"]["orderState"].clone()
}

async fn order_rows(url: &str, order_id: &str) -> Option<(i64, i64, i64)> {
    let pool = tablewire_handlers::store::connect(url).await.ok()?;
    let total: Option<(i64,)> =
        sqlx::query_as("SELECT total FROM collab_orders WHERE tenant_id = $1 AND order_id = $2")
            .bind("r1")
            .bind(order_id)
            .fetch_optional(&pool)
            .await
            .ok()?;
    let (items,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM collab_order_items WHERE order_id = $1")
            .bind(order_id)
            .fetch_one(&pool)
            .await
            .ok()?;
    let (splits,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM collab_order_splits WHERE order_id = $1")
            .bind(order_id)
            .fetch_one(&pool)
            .await
            .ok()?;
    pool.close().await;
    total.map(|(t,)| (t, items, splits))
}

/// The next `order:created` on the events feed `feed` is subscribed to (device, POS and collab
/// events reach it as notices, straight on the feed's subject); `None` after 20 s.
async fn next_order_created(feed: &mut async_nats::Subscriber) -> Option<Value> {
    use futures::StreamExt;
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(message) = feed.next().await {
            let event: Value = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
            if event["type"] == "order:created" {
                return Some(event);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalized_orders_reach_sqlite_and_the_events_feed_and_idle_rooms_expire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}/collab.db", dir.path().display());
    let hook = WebhookReceiver::start(None).await;
    let handler = tablewire_handlers::Config {
        collab: tablewire_handlers::collab::Settings {
            idle_timeout: Duration::from_millis(1500),
            ..Default::default()
        },
        collab_webhook: Some(
            tablewire_handlers::collab::webhook::Webhook::new(&hook.url, "hook-secret")
                .expect("webhook URL"),
        ),
        ..Default::default()
    };
    let sys = system(Some(db.clone()), edge_config(), handler).await;
    let nc = client(sys.nats.client_url()).await;
    let mut feed = nc
        .subscribe(tablewire_nats::subject::output(
            Domain::Events,
            "r1",
            tablewire_schemas::events::FEED_KEY,
        ))
        .await
        .expect("subscribe to the feed");
    nc.flush().await.expect("flush");
    let r = room();
    let order = finalize_an_order(sys.edge.addr, &r).await;
    let order_id = order["orderId"].as_str().expect("orderId").to_string();
    assert_eq!(order["total"], 699);
    eventually("the order in SQLite", || {
        let (db, order_id) = (db.clone(), order_id.clone());
        async move { order_rows(&db, &order_id).await == Some((699, 2, 1)) }
    })
    .await;
    let created = next_order_created(&mut feed)
        .await
        .expect("order:created on the tenant's feed");
    assert_eq!(created["data"]["order"]["id"], order_id.as_str());
    assert_eq!(created["data"]["order"]["total"], 699);
    eventually(
        "the webhook got the order after a failed attempt",
        || async { !hook.received().is_empty() },
    )
    .await;
    let (body, _, delivery) = &hook.received()[0];
    assert_eq!(body["type"], "order_finalized");
    assert_eq!(body["tenantId"], "r1");
    assert_eq!(body["order"]["orderId"], order_id.as_str());
    assert_eq!(body["order"]["items"].as_array().map(Vec::len), Some(2));
    assert!(!delivery.is_empty());

    // Idle rooms (this one, finalized and quiet) are archived and their KV entry removed.
    let js = async_nats::jetstream::new(client(sys.nats.client_url()).await);
    let kv = js
        .get_key_value(tablewire_nats::resource::state_bucket(Domain::Collab))
        .await
        .expect("bucket");
    let key = tablewire_nats::resource::state_key("r1", &r);
    eventually("the idle room removed from KV", || async {
        matches!(kv.get(&key).await, Ok(None))
    })
    .await;
    let pool = tablewire_handlers::store::connect(&db).await.expect("db");
    eventually("the room archived", || async {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT status FROM collab_archives WHERE tenant_id = $1 AND order_id = $2",
        )
        .bind("r1")
        .bind(&order_id)
        .fetch_optional(&pool)
        .await
        .ok()
        .flatten();
        row.is_some_and(|(s,)| s == "finalized")
    })
    .await;
    let (_fresh, sync) = Client::connect(sys.edge.addr, &r, "r1", "a").await;
    assert_eq!(
        sync["data"]["status"], "active",
        "an expired room starts afresh"
    );
    assert_eq!(sync["data"]["items"], json!([]));
    assert_eq!(
        order_rows(&db, &order_id).await,
        Some((699, 2, 1)),
        "written once"
    );
    sys.handler.stop().await;
}

/// A TLS acceptor with a fresh self-signed certificate for `localhost`, and that certificate.
fn localhost_tls() -> (
    tokio_rustls::TlsAcceptor,
    rustls_pki_types::CertificateDer<'static>,
) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let der = cert.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![der.clone()], key)
    .expect("server config");
    (
        tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)),
        der,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalized_orders_reach_an_https_webhook() {
    let (acceptor, cert) = localhost_tls();
    let hook = WebhookReceiver::start(Some(acceptor)).await;
    assert!(hook.url.starts_with("https://"));
    let mut webhook =
        tablewire_handlers::collab::webhook::Webhook::new(&hook.url, "hook-secret").expect("URL");
    // The test CA is trusted besides the system's roots.
    webhook.extra_roots.push(cert);
    let handler = tablewire_handlers::Config {
        collab_webhook: Some(webhook),
        ..Default::default()
    };
    let sys = system(None, edge_config(), handler).await;
    let order = finalize_an_order(sys.edge.addr, &room()).await;
    eventually(
        "the https webhook got the order after a failed attempt",
        || async { !hook.received().is_empty() },
    )
    .await;
    let (body, signature, delivery) = &hook.received()[0];
    assert_eq!(body["type"], "order_finalized");
    assert_eq!(body["order"]["orderId"], order["orderId"]);
    assert!(signature.starts_with("sha256="));
    assert!(!delivery.is_empty());
    assert!(
        body["order"].get("rateTatUs").is_none(),
        "the room's limiter stays internal: {body}"
    );
    sys.handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalized_orders_survive_a_postgres_outage() {
    let pg = PostgresDb::create().await;
    let target: std::net::SocketAddr = "127.0.0.1:5432".parse().expect("addr");
    let proxy = TcpProxy::start(target).await;
    let through_proxy = proxy.url_for(&pg.url);
    // Migrate first, so the writer's start is not what the outage interrupts.
    tablewire_handlers::store::connect(&pg.url)
        .await
        .expect("PostgreSQL migrations");
    let sys = system(Some(through_proxy), edge_config(), Default::default()).await;
    proxy.cut();
    let order = finalize_an_order(sys.edge.addr, &room()).await;
    let order_id = order["orderId"].as_str().expect("orderId").to_string();
    assert_eq!(
        order_rows(&pg.url, &order_id).await,
        None,
        "not written while the database is down"
    );
    proxy.restore();
    eventually("the order in PostgreSQL after the outage", || {
        let (url, order_id) = (pg.url.clone(), order_id.clone());
        async move { order_rows(&url, &order_id).await == Some((699, 2, 1)) }
    })
    .await;
    sys.handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partysocket_npm_client_works_unchanged() {
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        js.join("node_modules/partysocket").is_dir(),
        "the partysocket npm package is missing: run `npm ci --prefix tests/js` (scripts/test does)"
    );
    let sys = system(None, edge_config(), Default::default()).await;
    let output = tokio::process::Command::new("node")
        .arg(js.join("partysocket.mjs"))
        .env("TW_HOST", sys.edge.addr.to_string())
        .env("TW_ROOM", room())
        .env("TW_TOKEN", token("r1", "customer", 3600))
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs (Node 20 or newer is required)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "partysocket client failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_str(stdout.trim()).expect("the client's JSON result");
    assert_eq!(result["ok"], true);
    assert_eq!(result["total"], 897);
    sys.handler.stop().await;
}
