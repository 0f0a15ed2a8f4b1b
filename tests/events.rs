//! Seed 004 against a real nats-server: the events socket's three auth paths, restaurant
//! isolation, subscriptions and filters, limits and close codes, `POST /api/events`, events
//! emitted into a feed by another domain, and the metrics.

mod support;

use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use support::*;
use tablewire_schemas::Domain;

struct Sys {
    clock: tablewire_edge::limit::LimitClock,
    nats: tablewire_nats::NatsServer,
    edge: InProcessEdge,
    handler: InProcessHandler,
}

async fn system() -> Sys {
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let clock = tablewire_edge::limit::LimitClock::frozen();
    let config = tablewire_edge::Config {
        auth_timeout: Duration::from_millis(300),
        rate_limit_clock: clock.clone(),
        ..edge_config()
    };
    let edge = InProcessEdge::start(nats.client_url(), config).await;
    let handler = InProcessHandler::start(nats.client_url(), None).await;
    Sys {
        clock,
        nats,
        edge,
        handler,
    }
}

fn restaurant() -> String {
    format!("r{}", uuid::Uuid::new_v4().simple())
}

/// An events socket authenticated with a header; returns it after `connected`.
async fn events_socket(addr: SocketAddr, tenant: &str) -> Ws {
    let auth = format!("Bearer {}", token(tenant, "staff", 600));
    let mut ws = Ws::connect_with_headers(addr, "/ws", &[("Authorization", auth.as_str())])
        .await
        .expect("upgrade");
    let connected = ws.json().await;
    assert_eq!(connected["type"], "connected", "{connected}");
    ws
}

async fn publish(addr: SocketAddr, tenant: &str, body: Value) -> (u16, Value) {
    post(
        addr,
        "/api/events",
        Some(&token(tenant, "service", 600)),
        &body,
    )
    .await
}

async fn publish_ok(addr: SocketAddr, tenant: &str, kind: &str, data: Value) {
    let (status, reply) = publish(addr, tenant, json!({"type": kind, "data": data})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["success"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_auth_path_accepts_a_good_token_and_refuses_a_bad_one() {
    let sys = system().await;
    let addr = sys.edge.addr;
    let r = restaurant();
    let good = token(&r, "staff", 600);

    // 1. Authorization header, on `/` and on `/ws`.
    for path in ["/", "/ws"] {
        let auth = format!("Bearer {good}");
        let mut ws = Ws::connect_with_headers(addr, path, &[("Authorization", auth.as_str())])
            .await
            .expect("upgrade");
        let connected = ws.json().await;
        assert_eq!(connected["type"], "connected");
        let ts = connected["timestamp"].as_str().expect("timestamp");
        assert!(ts.ends_with('Z') && ts.contains('T'), "RFC 3339: {ts}");
    }
    // 2. `token` query parameter.
    let mut ws = Ws::connect(addr, &format!("/?token={good}")).await;
    assert_eq!(ws.json().await["type"], "connected");
    // 3. First message.
    let mut ws = Ws::connect(addr, "/").await;
    ws.send_json(&json!({"type": "auth", "token": good})).await;
    assert_eq!(ws.json().await["type"], "connected");
    ws.send_json(&json!({"type": "ping"})).await;
    assert_eq!(ws.json().await["type"], "pong");

    // Bad tokens with the request: 401 before the upgrade.
    let expired = token(&r, "staff", -3600);
    let forged = tablewire_edge::mint(
        "forged-key",
        &tablewire_schemas::Claims {
            sub: "x".into(),
            tenant: Some(r.clone()),
            role: Some("staff".into()),
            exp: u64::MAX / 2,
            iat: None,
        },
    )
    .expect("mint");
    let no_restaurant = tablewire_edge::mint(
        JWT_SECRET,
        &tablewire_schemas::Claims {
            sub: "x".into(),
            tenant: None,
            role: Some("staff".into()),
            exp: u64::MAX / 2,
            iat: None,
        },
    )
    .expect("mint");
    for (path, header, code) in [
        ("/ws", Some(format!("Bearer {expired}")), "TOKEN_EXPIRED"),
        ("/ws", Some(format!("Bearer {forged}")), "UNAUTHORIZED"),
        ("/", Some(format!("Bearer {no_restaurant}")), "UNAUTHORIZED"),
        ("/", Some("Basic abc".to_string()), "UNAUTHORIZED"),
        ("/", Some(format!("Bearer {AUTH_SECRET}")), "UNAUTHORIZED"),
        (&format!("/ws?token={forged}"), None, "UNAUTHORIZED"),
        (&format!("/?token={expired}"), None, "TOKEN_EXPIRED"),
    ] {
        let headers: Vec<(&str, &str)> = header
            .as_deref()
            .map(|h| vec![("Authorization", h)])
            .unwrap_or_default();
        let (status, body) = refused_upgrade(addr, path, &headers).await;
        assert_eq!(status, 401, "{path} {header:?}");
        assert_eq!(body["error"]["code"], code, "{path} {header:?}");
    }

    // Bad first messages, and none at all: close 1008 after an error frame.
    for first in [
        Some(json!({"type": "auth", "token": forged})),
        Some(json!({"type": "auth", "token": expired})),
        Some(json!({"type": "subscribe", "events": ["order:created"]})),
        Some(json!("not even an object")),
        None,
    ] {
        let mut ws = Ws::connect(addr, "/ws").await;
        if let Some(first) = &first {
            ws.send_json(first).await;
        }
        let error = ws.json().await;
        assert_eq!(error["type"], "error", "{first:?}");
        let expected = match &first {
            None => "AUTH_TIMEOUT",
            Some(f) if f["token"] == json!(expired) => "TOKEN_EXPIRED",
            Some(_) => "UNAUTHORIZED",
        };
        assert_eq!(error["data"]["code"], expected, "{first:?}");
        assert_eq!(ws.closed().await, Some(1008), "{first:?}");
    }

    let text = metrics(addr).await;
    assert!(
        metric(&text, "tablewire_edge_auth_failures_total") >= 12.0,
        "auth failures counted:\n{text}"
    );
    sys.handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restaurant_sees_only_its_own_events_and_filters_apply_before_delivery() {
    let sys = system().await;
    let addr = sys.edge.addr;
    let (a, b) = (restaurant(), restaurant());
    let mut a_all = events_socket(addr, &a).await;
    let mut b_all = events_socket(addr, &b).await;
    // A client of A subscribing to everything it can name, even with B in its filters, never
    // gets B's events.
    let mut a_nosy = events_socket(addr, &a).await;
    a_nosy
        .send_json(&json!({"type": "subscribe", "events": ["table:updated", "payment:processed"], "filters": {"restaurant_id": b}}))
        .await;
    let ack = a_nosy.json().await;
    assert_eq!(ack["type"], "subscribed", "{ack}");
    let mut a_table = events_socket(addr, &a).await;
    a_table
        .send_json(&json!({"type": "subscribe", "events": ["order:created", "table:updated", "kds:update"], "filters": {"table_id": "t7"}}))
        .await;
    assert_eq!(
        a_table.json().await["data"]["events"],
        json!(["kds:update", "order:created", "table:updated"])
    );
    a_table
        .send_json(&json!({"type": "unsubscribe", "events": ["kds:update"]}))
        .await;
    assert_eq!(a_table.json().await["type"], "unsubscribed");

    publish_ok(
        addr,
        &b,
        "table:updated",
        json!({"table": {"id": "t7", "status": "occupied"}}),
    )
    .await;
    // The body cannot move an event to another restaurant: the token decides.
    let (status, _) = publish(
        addr,
        &a,
        json!({"type": "payment:processed", "restaurant_id": b, "data": {"payment": {"id": "p1", "amount": 2500}}}),
    )
    .await;
    assert_eq!(status, 200);
    publish_ok(
        addr,
        &a,
        "table:updated",
        json!({"table": {"id": "t8", "status": "free"}}),
    )
    .await;
    publish_ok(
        addr,
        &a,
        "table:updated",
        json!({"table": {"id": "t7", "number": "12", "status": "occupied"}}),
    )
    .await;
    publish_ok(
        addr,
        &a,
        "kds:update",
        json!({"orders": [], "table_id": "t7"}),
    )
    .await;
    publish_ok(
        addr,
        &a,
        "order:created",
        json!({"order": {"id": "o1", "table_id": "t7", "total": 2500}}),
    )
    .await;
    publish_ok(
        addr,
        &b,
        "order:created",
        json!({"order": {"id": "ob", "table_id": "t7"}}),
    )
    .await;

    let mut kinds = Vec::new();
    for _ in 0..5 {
        let e = a_all.json().await;
        assert!(e["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert!(e["seq"].as_u64().is_some());
        kinds.push(e["type"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(
        kinds,
        [
            "payment:processed",
            "table:updated",
            "table:updated",
            "kds:update",
            "order:created"
        ]
    );
    let e = a_table.json().await;
    assert_eq!(
        (e["type"].as_str(), &e["data"]["table"]["id"]),
        (Some("table:updated"), &json!("t7"))
    );
    let e = a_table.json().await;
    assert_eq!(
        (e["type"].as_str(), &e["data"]["order"]["id"]),
        (Some("order:created"), &json!("o1"))
    );
    // B's clients get B's two events and nothing of A's.
    assert_eq!(b_all.json().await["data"]["table"]["id"], "t7");
    assert_eq!(b_all.json().await["data"]["order"]["id"], "ob");

    // A sentinel shows nothing else was queued for the filtered and the nosy clients: the
    // next frame each receives is the sentinel.
    publish_ok(
        addr,
        &a,
        "table:updated",
        json!({"table": {"id": "t7", "sentinel": true}}),
    )
    .await;
    assert_eq!(a_table.json().await["data"]["table"]["sentinel"], true);
    // (a_nosy filters on restaurant_id = B, which A's events never carry, so it receives
    // nothing: the pong below is the next thing it sees.)
    a_nosy.send_json(&json!({"type": "ping"})).await;
    assert_eq!(a_nosy.json().await["type"], "pong");
    b_all.send_json(&json!({"type": "ping"})).await;
    assert_eq!(
        b_all.json().await["type"],
        "pong",
        "B received none of A's events"
    );

    // POST /api/events refusals.
    for (auth, body, status, code) in [
        (None, json!({"type": "table:updated"}), 401, "UNAUTHORIZED"),
        (
            Some(AUTH_SECRET.to_string()),
            json!({"type": "table:updated"}),
            403,
            "FORBIDDEN",
        ),
        (
            Some(token(&a, "staff", 600)),
            json!({"type": "table:updated"}),
            403,
            "FORBIDDEN",
        ),
        (
            Some(token(&a, "service", -3600)),
            json!({"type": "table:updated"}),
            401,
            "TOKEN_EXPIRED",
        ),
        (
            Some(token(&a, "service", 600)),
            json!({"type": "Table Updated"}),
            400,
            "VALIDATION_ERROR",
        ),
        (
            Some(token(&a, "service", 600)),
            json!({"data": {}}),
            400,
            "INVALID_MESSAGE",
        ),
    ] {
        let (got, reply) = post(addr, "/api/events", auth.as_deref(), &body).await;
        assert_eq!(
            (got, reply["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    // A retried publish with the same Idempotency-Key is delivered once.
    let auth = format!("Bearer {}", token(&a, "admin", 600));
    let headers = [
        ("Authorization", auth.as_str()),
        ("Idempotency-Key", "kds-1"),
    ];
    let body = r#"{"type":"kds:update","data":{"orders":[{"id":"o1","status":"preparing"}]}}"#;
    for duplicate in [false, true] {
        let (status, _, reply) = send(addr, "POST", "/api/events", &headers, body).await;
        let reply: Value = serde_json::from_slice(&reply).expect("json");
        assert_eq!((status, &reply["duplicate"]), (200, &json!(duplicate)));
    }
    publish_ok(addr, &a, "order:updated", json!({"order": {"id": "o1"}})).await;
    assert_eq!(a_all.json().await["type"], "table:updated"); // the sentinel
    assert_eq!(a_all.json().await["type"], "kds:update");
    assert_eq!(
        a_all.json().await["type"],
        "order:updated",
        "the repeat was not delivered"
    );
    sys.handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_bad_input_close_codes_emitted_events_and_metrics() {
    let sys = system().await;
    let addr = sys.edge.addr;
    let r = restaurant();
    let mut ws = events_socket(addr, &r).await;

    // Bad input: an error frame, the connection stays open.
    // Seed 004's clients switch on INVALID_MESSAGE; the finer code is in `detail`.
    for (input, code, detail) in [
        ("{not json", "INVALID_MESSAGE", Some("MALFORMED_JSON")),
        (
            r#"{"type":"dance"}"#,
            "INVALID_MESSAGE",
            Some("UNKNOWN_TYPE"),
        ),
        (r#"{"no":"type"}"#, "INVALID_MESSAGE", None),
        (
            r#"{"type":"subscribe","events":"order:created"}"#,
            "INVALID_MESSAGE",
            None,
        ),
        (
            r#"{"type":"subscribe","events":["nope"]}"#,
            "VALIDATION_ERROR",
            None,
        ),
    ] {
        ws.send_text(input).await;
        let error = ws.json().await;
        assert_eq!(
            (
                error["type"].as_str(),
                error["data"]["code"].as_str(),
                error["data"]["detail"].as_str()
            ),
            (Some("error"), Some(code), detail),
            "{input}"
        );
        assert!(error["data"]["message"].as_str().is_some());
    }
    // Ten subscriptions, then the eleventh is refused with a code.
    for i in 0..10u8 {
        ws.send_json(
            &json!({"type": "subscribe", "events": [format!("custom:{}", char::from(b'a' + i))]}),
        )
        .await;
        assert_eq!(ws.json().await["type"], "subscribed");
    }
    ws.send_json(&json!({"type": "subscribe", "events": ["order:created"]}))
        .await;
    let refused = ws.json().await;
    assert_eq!(
        refused["data"]["code"], "TOO_MANY_SUBSCRIPTIONS",
        "{refused}"
    );
    // 5 + 11 messages so far; up to 100 pass, the 101st in the minute is refused with a
    // retry-after and the connection stays usable.
    for _ in 16..100 {
        ws.send_json(&json!({"type": "ping"})).await;
        assert_eq!(ws.json().await["type"], "pong");
    }
    ws.send_json(&json!({"type": "ping"})).await;
    let limited = ws.json().await;
    assert_eq!(limited["data"]["code"], "RATE_LIMITED", "{limited}");
    assert!(
        limited["data"]["retryAfterMs"]
            .as_u64()
            .is_some_and(|ms| ms > 0)
    );
    assert_eq!(limited["data"]["retryable"], true);
    publish_ok(addr, &r, "custom:d", json!({"n": 1})).await;
    assert_eq!(
        ws.json().await["type"],
        "custom:d",
        "still receiving events"
    );
    // After the retry-after, one more message is allowed.
    let wait = limited["data"]["retryAfterMs"].as_u64().unwrap_or(0);
    sys.clock.advance(Duration::from_millis(wait));
    ws.send_json(&json!({"type": "ping"})).await;
    assert_eq!(ws.json().await["type"], "pong");

    // A command emitted into the feed by another domain (as the runtime publishes it)
    // reaches the restaurant's clients like an API event.
    let mut all = events_socket(addr, &r).await;
    let nats = client(sys.nats.client_url()).await;
    let js = async_nats::jetstream::new(nats);
    let feed = tablewire_schemas::events::FEED_KEY;
    let envelope = json!({
        "tenant": r, "domain": "events", "key": feed, "id": format!("pos:{r}:1:c0"),
        "origin": {"edge": ""}, "at": 1_758_880_800_000i64,
        "command": {"type": "publish", "event": "order:created", "data": {"order": {"id": "o9", "status": "pending"}}},
    });
    js.publish(
        tablewire_nats::subject::input(Domain::Events, &r, feed),
        envelope.to_string().into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");
    let created = all.json().await;
    assert_eq!(created["type"], "order:created");
    assert_eq!(created["data"]["order"]["id"], "o9");
    assert_eq!(created["timestamp"], "2025-09-26T10:00:00.000Z");
    // An event published again (a handler taking over republishes its outbox) is dropped by
    // its `Tw-Seq`: the next frame is the next event.
    let mut headers = async_nats::HeaderMap::new();
    let seq = created["seq"].as_u64().expect("seq").to_string();
    headers.insert(tablewire_nats::subject::header::SEQ, seq.as_str());
    let raw = client(sys.nats.client_url()).await;
    raw.publish_with_headers(
        tablewire_nats::subject::output(Domain::Events, &r, feed),
        headers,
        serde_json::to_vec(&created).expect("json").into(),
    )
    .await
    .expect("publish");
    raw.flush().await.expect("flush");
    publish_ok(addr, &r, "order:updated", json!({"order": {"id": "o9"}})).await;
    assert_eq!(
        all.json().await["type"],
        "order:updated",
        "the repeat was dropped"
    );

    // A message over 64 KiB closes with 1009; the edge keeps serving.
    let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(70 * 1024));
    all.send_text(&big).await;
    assert_eq!(all.closed().await, Some(1009));
    // A normal close is answered with 1000.
    ws.send_frame(fastwebsockets::Frame::close(1000, b"bye"))
        .await;
    assert_eq!(ws.closed().await, Some(1000));

    // The same user back within a minute counts as a reconnect (once the edge has seen both
    // sockets go: a close frame reaches the client before the edge finishes the connection).
    eventually("both closed sockets are gone", || async move {
        metric(
            &metrics(addr).await,
            "tablewire_edge_connections{endpoint=\"events\"}",
        ) == 0.0
    })
    .await;
    let mut again = events_socket(addr, &r).await;
    again.send_json(&json!({"type": "ping"})).await;
    assert_eq!(again.json().await["type"], "pong");
    eventually("metrics show the events socket", || async move {
        let text = metrics(addr).await;
        metric(&text, "tablewire_edge_connections{endpoint=\"events\"}") == 1.0
            && metric(&text, "tablewire_edge_events_reconnects_total") >= 1.0
    })
    .await;
    let text = metrics(addr).await;
    for name in [
        "tablewire_edge_messages_in_total{endpoint=\"events\"}",
        "tablewire_edge_messages_out_total{endpoint=\"events\"}",
        "tablewire_edge_events_processing_seconds_count",
        "tablewire_edge_errors_total{code=\"RATE_LIMITED\"}",
    ] {
        assert!(metric(&text, name) > 0.0, "{name} in\n{text}");
    }
    sys.handler.stop().await;
}

/// Claims for a staff member of `tenant`, valid for ten minutes.
fn staff_claims(tenant: &str) -> tablewire_schemas::Claims {
    let now = tablewire_edge::auth::now_secs();
    tablewire_schemas::Claims {
        sub: "staff-1".into(),
        tenant: Some(tenant.into()),
        role: Some("staff".into()),
        exp: now + 600,
        iat: Some(now),
    }
}

/// A token for `tenant` signed with `key` by `algorithm`.
fn signed(
    algorithm: jsonwebtoken::Algorithm,
    key: &jsonwebtoken::EncodingKey,
    tenant: &str,
) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(algorithm),
        &staff_claims(tenant),
        key,
    )
    .expect("sign")
}

/// A token is accepted on the events socket's header and query paths when it verifies with the
/// edge's public key, and refused with 401 before the upgrade when another key signed it.
async fn public_key_tokens_are_checked(addr: SocketAddr, good: &str, forged: &[(&str, String)]) {
    let auth = format!("Bearer {good}");
    let mut ws = Ws::connect_with_headers(addr, "/ws", &[("Authorization", auth.as_str())])
        .await
        .expect("upgrade with a token the public key verifies");
    assert_eq!(ws.json().await["type"], "connected");
    let mut ws = Ws::connect(addr, &format!("/?token={good}")).await;
    assert_eq!(ws.json().await["type"], "connected");
    for (what, token) in forged {
        let auth = format!("Bearer {token}");
        let (status, body) =
            refused_upgrade(addr, "/ws", &[("Authorization", auth.as_str())]).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("UNAUTHORIZED")),
            "{what}"
        );
        let (status, _) = refused_upgrade(addr, &format!("/?token={token}"), &[]).await;
        assert_eq!(status, 401, "{what} as a query parameter");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_and_eddsa_tokens_verify_with_the_configured_public_key() {
    use jsonwebtoken::{Algorithm, EncodingKey};
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let r = restaurant();

    // RS256: the public key file goes to a real `tablewire edge` through --jwt-public-key.
    let mut rng = rsa::rand_core::OsRng;
    let rsa_key = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("RSA key");
    let other_rsa_key = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("RSA key");
    let encoding = |key: &rsa::RsaPrivateKey| {
        let pem = key.to_pkcs1_pem(LineEnding::LF).expect("PEM");
        EncodingKey::from_rsa_pem(pem.as_bytes()).expect("RSA signing key")
    };
    let public_pem = rsa_key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("public PEM");
    let dir = tempfile::tempdir().expect("temp dir");
    let public_file = dir.path().join("jwt-public.pem");
    std::fs::write(&public_file, &public_pem).expect("write the public key");
    let public_path = public_file.to_string_lossy().into_owned();
    let (mut edge, addr) =
        edge_process_with(nats.client_url(), &["--jwt-public-key", &public_path]).await;
    let good = signed(Algorithm::RS256, &encoding(&rsa_key), &r);
    // The public key used as an HMAC secret (the algorithm-confusion attack) must not verify.
    let confused = signed(
        Algorithm::HS256,
        &EncodingKey::from_secret(public_pem.as_bytes()),
        &r,
    );
    public_key_tokens_are_checked(
        addr,
        &good,
        &[
            (
                "RS256 signed with another key",
                signed(Algorithm::RS256, &encoding(&other_rsa_key), &r),
            ),
            (
                "PS256 signed with another key",
                signed(Algorithm::PS256, &encoding(&other_rsa_key), &r),
            ),
            ("HS256 keyed with the public key", confused),
        ],
    )
    .await;
    // The HS256 secret keeps working beside the public key.
    let auth = format!("Bearer {}", token(&r, "staff", 600));
    let mut ws = Ws::connect_with_headers(addr, "/ws", &[("Authorization", auth.as_str())])
        .await
        .expect("upgrade with an HS256 token");
    assert_eq!(ws.json().await["type"], "connected");
    edge.terminate().await;

    // EdDSA: an Ed25519 public key in the edge's configuration.
    let ed_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("Ed25519 key");
    let other_ed_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("Ed25519 key");
    let ed_encoding = |key: &rcgen::KeyPair| {
        EncodingKey::from_ed_pem(key.serialize_pem().as_bytes()).expect("Ed25519 signing key")
    };
    let mut config = edge_config();
    config.auth.jwt_public_key_pem = Some(ed_key.public_key_pem());
    let edge = InProcessEdge::start(nats.client_url(), config).await;
    public_key_tokens_are_checked(
        edge.addr,
        &signed(Algorithm::EdDSA, &ed_encoding(&ed_key), &r),
        &[(
            "EdDSA signed with another key",
            signed(Algorithm::EdDSA, &ed_encoding(&other_ed_key), &r),
        )],
    )
    .await;
    edge.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stayed_connected_through_a_nats_outage_is_told_events_may_be_missing() {
    let mut nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let edge = InProcessEdge::start(nats.client_url(), edge_config()).await;
    let r = restaurant();
    let auth = format!("Bearer {}", token(&r, "staff", 600));
    let mut ws = Ws::connect_with_headers(edge.addr, "/ws", &[("Authorization", auth.as_str())])
        .await
        .expect("upgrade");
    assert_eq!(ws.json().await["type"], "connected");

    // Core NATS keeps nothing for a subscriber that was away, and the feed has no snapshot:
    // when the edge is connected again, the client hears that events may be missing.
    nats.stop().await;
    nats.restart().await.expect("NATS restarts");
    let notice = ws.next_of("error").await;
    assert_eq!(notice["data"]["code"], "EVENTS_MISSED", "{notice}");
    assert_eq!(notice["data"]["retryable"], true);
    // The connection stays usable.
    ws.send_json(&json!({"type": "ping"})).await;
    assert_eq!(ws.next_of("pong").await["type"], "pong");
    edge.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_opened_while_nats_is_unreachable_closes_with_1011_and_the_edge_recovers() {
    let mut nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let config = tablewire_edge::Config {
        bus_timeout: Duration::from_millis(300),
        ..edge_config()
    };
    let edge = InProcessEdge::start(nats.client_url(), config).await;
    let r = restaurant();
    let auth = format!("Bearer {}", token(&r, "staff", 600));
    let headers = [("Authorization", auth.as_str())];

    // The edge verifies the token on its own, upgrades, and cannot reach the restaurant's
    // feed: a server fault, said with an error frame and close 1011.
    nats.stop().await;
    let mut ws = Ws::connect_with_headers(edge.addr, "/ws", &headers)
        .await
        .expect("upgrade");
    let error = ws.json().await;
    assert_eq!(
        (error["type"].as_str(), error["data"]["code"].as_str()),
        (Some("error"), Some("UNAVAILABLE")),
        "{error}"
    );
    assert_eq!(error["data"]["retryable"], true);
    assert_eq!(ws.closed().await, Some(1011));

    // With NATS back, the client's reconnect is served (once the edge's own NATS client has
    // reconnected: until then, more 1011s, and the client tries again as 1011 asks).
    nats.restart().await.expect("NATS restarts");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut again = loop {
        let mut ws = Ws::connect_with_headers(edge.addr, "/ws", &headers)
            .await
            .expect("upgrade");
        match ws.json().await {
            connected if connected["type"] == "connected" => break ws,
            error => {
                assert_eq!(error["data"]["code"], "UNAVAILABLE", "{error}");
                assert_eq!(ws.closed().await, Some(1011));
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the edge never recovered"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // (A client that joined in the moment between NATS's return and the edge noticing it may
    // also hear EVENTS_MISSED after `connected`: the notice errs on the side of saying so.
    // Never before it: `connected` is always a client's first frame.)
    again.send_json(&json!({"type": "ping"})).await;
    assert_eq!(again.next_of("pong").await["type"], "pong");
    edge.drain().await;
}
