//! Seed 000 against a real nats-server: displays, updates, auth, limits, bad input, ordering
//! through several workers, crashes, and a second edge.

mod support;

use serde_json::{Value, json};
use support::*;

/// One system: nats-server, an in-process edge and in-process handlers.
struct Sys {
    nats: tablewire_nats::NatsServer,
    edge: InProcessEdge,
    handler: InProcessHandler,
}

async fn system() -> Sys {
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let edge = InProcessEdge::start(nats.client_url(), edge_config()).await;
    let handler = InProcessHandler::start(nats.client_url(), None).await;
    Sys {
        nats,
        edge,
        handler,
    }
}

fn session() -> String {
    format!("s{}", uuid::Uuid::new_v4().simple())
}

async fn display(addr: std::net::SocketAddr, session: &str) -> (Ws, Value) {
    let mut ws = Ws::connect(addr, &format!("/session/{session}/display")).await;
    let initial = ws.json().await;
    assert_eq!(initial["type"], "initial_state", "first frame: {initial}");
    (ws, initial)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_displays_see_every_update_in_order() {
    let sys = system().await;
    let s = session();
    let (mut a, ia) = display(sys.edge.addr, &s).await;
    let (mut b, ib) = display(sys.edge.addr, &s).await;
    assert_eq!(ia["state"]["sessionId"], s.as_str());
    assert_eq!(ia["state"]["tenantId"], Value::Null);
    assert!(
        ia["state"]["startedAt"].as_i64().expect("startedAt") > 1_600_000_000_000,
        "ms, not s"
    );
    let base = ia["seq"].as_u64().expect("seq");
    assert_eq!(ib["seq"].as_u64(), Some(base));
    for i in 0..20 {
        update(sys.edge.addr, &s, json!({"i": i})).await;
    }
    for ws in [&mut a, &mut b] {
        for i in 0..20u64 {
            let u = ws.next_of("update").await;
            assert_eq!(u["update"]["displayData"]["i"], i, "in order");
            assert_eq!(u["update"]["type"], "dish_card");
            assert_eq!(
                u["seq"].as_u64(),
                Some(base + i + 1),
                "per-session sequence"
            );
            assert!(u["timestamp"].as_i64().is_some());
        }
    }
    sys.handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_gets_initial_state_with_earlier_updates() {
    let sys = system().await;
    let s = session();
    let (status, _) = post(
        sys.edge.addr,
        &format!("/session/{s}/init"),
        None,
        &json!({"tenantId": "org_xyz"}),
    )
    .await;
    assert_eq!(status, 200);
    let (mut ws, _) = display(sys.edge.addr, &s).await;
    for (kind, data) in [
        ("transcription", json!({"text": "one burger"})),
        ("order_summary", json!({"total": 1200})),
        ("dish_card", json!({"dish": "biryani"})),
    ] {
        let (status, body) = post(
            sys.edge.addr,
            &format!("/session/{s}/update"),
            Some(AUTH_SECRET),
            &json!({"type": kind, "displayData": data}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    for _ in 0..3 {
        ws.next_of("update").await;
    }
    drop(ws);
    let (_, initial) = display(sys.edge.addr, &s).await;
    let state = &initial["state"];
    assert_eq!(state["tenantId"], "org_xyz");
    assert_eq!(state["displayUpdates"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        state["transcriptions"][0]["displayData"]["text"],
        "one burger"
    );
    assert_eq!(state["currentOrder"], json!({"total": 1200}));
    assert_eq!(initial["seq"], 3);
    let (status, http_state) = get(sys.edge.addr, &format!("/session/{s}/state"))
        .await
        .expect("state");
    assert_eq!(status, 200);
    assert_eq!(&http_state, state, "GET /state shows the same state");
    sys.handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_need_the_secret_or_a_service_token() {
    let sys = system().await;
    let s = session();
    let path = format!("/session/{s}/update");
    let body = json!({"type": "dish_card", "displayData": {}});
    for (auth, code) in [
        (None, "UNAUTHORIZED"),
        (Some("wrong-secret".to_string()), "UNAUTHORIZED"),
        (Some(token("t1", "service", -3600)), "TOKEN_EXPIRED"),
        (
            Some(
                tablewire_edge::mint(
                    "forged-key",
                    &tablewire_schemas::Claims {
                        sub: "x".into(),
                        tenant: None,
                        role: Some("service".into()),
                        exp: u64::MAX / 2,
                        iat: None,
                    },
                )
                .expect("mint"),
            ),
            "UNAUTHORIZED",
        ),
    ] {
        let (status, reply) = post(sys.edge.addr, &path, auth.as_deref(), &body).await;
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(reply["error"]["code"], code);
        assert_eq!(
            reply["error"]["errorCode"],
            if code == "TOKEN_EXPIRED" { 2001 } else { 2000 }
        );
    }
    let (status, reply) = post(
        sys.edge.addr,
        &path,
        Some(&token("t1", "customer", 60)),
        &body,
    )
    .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (403, Some("FORBIDDEN"))
    );
    let (status, _) = post(
        sys.edge.addr,
        &path,
        Some(&token("t1", "service", 60)),
        &body,
    )
    .await;
    assert_eq!(status, 200, "a service JWT may post");
    sys.handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_64_kib_closes_with_1009() {
    let sys = system().await;
    let (mut ws, _) = display(sys.edge.addr, &session()).await;
    let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(70 * 1024));
    ws.send_text(&big).await;
    assert_eq!(ws.closed().await, Some(1009));
    // The edge is still healthy and serves others.
    let (_, _) = display(sys.edge.addr, &session()).await;
    sys.handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_error_frames_and_the_connection_stays_open() {
    let sys = system().await;
    let (mut ws, _) = display(sys.edge.addr, &session()).await;
    for (input, code) in [
        ("{not json", "MALFORMED_JSON"),
        (r#"{"type":"dance"}"#, "UNKNOWN_TYPE"),
        (r#"{"no":"type"}"#, "INVALID_MESSAGE"),
        ("[1,2,3]", "INVALID_MESSAGE"),
        ("", "MALFORMED_JSON"),
    ] {
        ws.send_text(input).await;
        let error = ws.json().await;
        assert_eq!(error["type"], "error", "{input:?}");
        assert_eq!(error["code"], code, "{input:?}");
        assert!(error["errorCode"].as_u64().is_some());
        assert_eq!(error["retryable"], false);
    }
    ws.send_json(&json!({"type": "ping"})).await;
    let pong = ws.json().await;
    assert_eq!(pong["type"], "pong");
    assert!(pong["timestamp"].as_i64().is_some());
    // Invalid UTF-8 in a text frame is a protocol matter: close 1007.
    ws.send_frame(fastwebsockets::Frame::text(fastwebsockets::Payload::Owned(
        vec![0xff, 0xfe],
    )))
    .await;
    assert_eq!(ws.closed().await, Some(1007));

    // HTTP: bad JSON, wrong shape, empty type, oversized body, unknown route and method.
    let s = session();
    let auth = format!("Bearer {AUTH_SECRET}");
    let headers = [("Authorization", auth.as_str())];
    let path = format!("/session/{s}/update");
    for (body, status, code) in [
        ("{oops".to_string(), 400, "MALFORMED_JSON"),
        (r#"{"type": 5}"#.to_string(), 400, "INVALID_MESSAGE"),
        (r#"{"type": " "}"#.to_string(), 400, "VALIDATION_ERROR"),
        (
            format!(
                r#"{{"type":"x","displayData":"{}"}}"#,
                "y".repeat(70 * 1024)
            ),
            413,
            "MESSAGE_TOO_BIG",
        ),
    ] {
        let (got, _, reply) = send(sys.edge.addr, "POST", &path, &headers, body).await;
        let reply: Value = serde_json::from_slice(&reply).expect("JSON error body");
        assert_eq!((got, reply["error"]["code"].as_str()), (status, Some(code)));
    }
    let (got, _, _) = send(sys.edge.addr, "GET", "/nowhere", &[], "").await;
    assert_eq!(got, 404);
    let (got, _, _) = send(sys.edge.addr, "DELETE", &path, &[], "").await;
    assert_eq!(got, 405);
    let (got, _, body) = send(
        sys.edge.addr,
        "GET",
        &format!("/session/{s}/display"),
        &[],
        "",
    )
    .await;
    assert_eq!(got, 426, "plain GET on a WebSocket route: {body:?}");
    let (got, _, _) = send(
        sys.edge.addr,
        "GET",
        &format!("/session/{}/state", "x".repeat(200)),
        &[],
        "",
    )
    .await;
    assert_eq!(got, 400, "ids are bounded");
    // Nothing of the above reached the session.
    let (_, state) = get(sys.edge.addr, &format!("/session/{s}/state"))
        .await
        .expect("state");
    assert_eq!(state["displayUpdates"], json!([]));
    sys.handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_health_and_metrics() {
    let sys = system().await;
    let (status, headers, _) = send(
        sys.edge.addr,
        "OPTIONS",
        "/session/x/update",
        &[
            ("Origin", "https://pos.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        "",
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert!(
        headers["access-control-allow-headers"]
            .to_str()
            .expect("ascii")
            .contains("Authorization")
    );
    let (status, health) = get(sys.edge.addr, "/healthz").await.expect("health");
    assert_eq!((status, health["nats"].as_str()), (200, Some("connected")));
    let (_, headers, _) = send(sys.edge.addr, "GET", "/session/x/state", &[], "").await;
    assert_eq!(
        headers["access-control-allow-origin"], "*",
        "CORS on every response"
    );
    let (_ws, _) = display(sys.edge.addr, &session()).await;
    update(sys.edge.addr, &session(), json!({})).await;
    let (status, _, text) = send(sys.edge.addr, "GET", "/metrics", &[], "").await;
    let text = String::from_utf8_lossy(&text);
    assert_eq!(status, 200);
    for line in [
        "tablewire_edge_connections{endpoint=\"display\"} 1",
        "tablewire_edge_publish_latency_seconds_count",
        "tablewire_edge_http_responses_total{route=\"/session/{id}/update\",status=\"200\"} 1",
    ] {
        assert!(text.contains(line), "{line} in /metrics:\n{text}");
    }
    sys.handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_idempotency_key_applies_once() {
    let sys = system().await;
    let s = session();
    let (mut ws, _) = display(sys.edge.addr, &s).await;
    let auth = format!("Bearer {AUTH_SECRET}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Idempotency-Key", "upd-1"),
    ];
    let body = r#"{"type":"dish_card","displayData":{"n":1}}"#;
    let path = format!("/session/{s}/update");
    let (_, _, first) = send(sys.edge.addr, "POST", &path, &headers, body).await;
    let (_, _, second) = send(sys.edge.addr, "POST", &path, &headers, body).await;
    let first: Value = serde_json::from_slice(&first).expect("json");
    let second: Value = serde_json::from_slice(&second).expect("json");
    assert_eq!(first["duplicate"], false);
    assert_eq!(second["duplicate"], true);
    assert_eq!(first["messageId"], second["messageId"]);
    update(sys.edge.addr, &s, json!({"n": 2})).await;
    assert_eq!(ws.next_of("update").await["update"]["displayData"]["n"], 1);
    assert_eq!(
        ws.next_of("update").await["update"]["displayData"]["n"],
        2,
        "no second copy of n=1"
    );
    sys.handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subjects_and_state_are_plain_json_under_documented_names() {
    use futures::StreamExt;
    let sys = system().await;
    let s = session();
    let nc = client(sys.nats.client_url()).await;
    let mut events = nc
        .subscribe(format!("tw.out.display._.{s}"))
        .await
        .expect("sub");
    let mut commands = nc
        .subscribe("tw.in.display._.>".to_string())
        .await
        .expect("sub");
    nc.flush().await.expect("flush");
    update(sys.edge.addr, &s, json!({"x": 1})).await;
    let command = commands.next().await.expect("command");
    let envelope: Value = serde_json::from_slice(&command.payload).expect("command is JSON");
    assert_eq!(envelope["domain"], "display");
    assert_eq!(envelope["key"], s.as_str());
    assert_eq!(envelope["command"]["update"]["displayData"]["x"], 1);
    let event = tokio::time::timeout(TIMEOUT, events.next())
        .await
        .expect("event in time")
        .expect("event");
    let frame: Value = serde_json::from_slice(&event.payload).expect("event is JSON");
    assert_eq!(frame["type"], "update");
    assert_eq!(
        event
            .headers
            .as_ref()
            .and_then(|h| h.get("Tw-Seq"))
            .map(|v| v.to_string()),
        Some("1".into())
    );
    let kv = async_nats::jetstream::new(nc)
        .get_key_value("tw_state_display")
        .await
        .expect("bucket");
    let stored: Value =
        serde_json::from_slice(&kv.get(format!("_.{s}")).await.expect("get").expect("value"))
            .expect("JSON");
    assert_eq!(stored["seq"], 1);
    assert!(
        stored["applied"].as_u64().expect("applied") >= 1,
        "state records the sequence it applied"
    );
    assert_eq!(stored["state"]["displayUpdates"][0]["displayData"]["x"], 1);
    sys.handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_closes_websockets_with_1001() {
    let sys = system().await;
    let (mut ws, _) = display(sys.edge.addr, &session()).await;
    let addr = sys.edge.addr;
    let drained = tokio::spawn(sys.edge.drain());
    assert_eq!(ws.closed().await, Some(1001));
    drained.await.expect("drained");
    assert!(
        Ws::try_connect(addr, "/session/x/display").await.is_err(),
        "no longer accepting"
    );
    sys.handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_is_recorded_in_sql() {
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}/records.db", dir.path().display());
    let edge = InProcessEdge::start(nats.client_url(), edge_config()).await;
    let handler = InProcessHandler::start(nats.client_url(), Some(db.clone())).await;
    let s = session();
    let (status, _) = post(
        edge.addr,
        &format!("/session/{s}/init"),
        None,
        &json!({"tenantId": "org_9"}),
    )
    .await;
    assert_eq!(status, 200);
    let pool = tablewire_handlers::store::connect(&db).await.expect("db");
    eventually("the session row", || {
        let pool = pool.clone();
        let s = s.clone();
        async move {
            sqlx::query_as::<_, (Option<String>,)>(
                "SELECT tenant_id FROM display_sessions WHERE session_id = $1",
            )
            .bind(s)
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
                == Some((Some("org_9".to_string()),))
        }
    })
    .await;
    handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_go_to_postgresql_too() {
    let pg = PostgresDb::create().await;
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let edge = InProcessEdge::start(nats.client_url(), edge_config()).await;
    let handler = InProcessHandler::start(nats.client_url(), Some(pg.url.clone())).await;
    let s = session();
    let (status, _) = post(
        edge.addr,
        &format!("/session/{s}/init"),
        None,
        &json!({"tenantId": "org_pg"}),
    )
    .await;
    assert_eq!(status, 200);
    let pool = tablewire_handlers::store::connect(&pg.url)
        .await
        .expect("postgres");
    eventually("the session row in PostgreSQL", || {
        let pool = pool.clone();
        let s = s.clone();
        async move {
            sqlx::query_as::<_, (Option<String>,)>(
                "SELECT tenant_id FROM display_sessions WHERE session_id = $1",
            )
            .bind(s)
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
                == Some((Some("org_pg".to_string()),))
        }
    })
    .await;
    pool.close().await;
    handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_nats_comes_back_displays_get_a_fresh_snapshot() {
    let mut sys = system().await;
    let s = session();
    let (mut ws, _) = display(sys.edge.addr, &s).await;
    update(sys.edge.addr, &s, json!({"i": 0})).await;
    assert_eq!(ws.next_of("update").await["seq"], 1);
    sys.nats.kill().await;
    sys.nats
        .restart()
        .await
        .expect("nats-server back on the same port");
    // The edge resyncs its displays as soon as it has reconnected.
    let resync = ws.next_of("initial_state").await;
    assert_eq!(resync["seq"], 1);
    assert_eq!(resync["state"]["displayUpdates"][0]["displayData"]["i"], 0);
    // And the pipeline works again end to end.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let (status, _) = post(
            sys.edge.addr,
            &format!("/session/{s}/update"),
            Some(AUTH_SECRET),
            &json!({"type": "dish_card", "displayData": {"i": 1}}),
        )
        .await;
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "updates accepted again"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(ws.next_of("update").await["update"]["displayData"]["i"], 1);
    sys.handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_never_answer_pings_are_closed_and_live_ones_kept() {
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let mut config = edge_config();
    config.heartbeat = std::time::Duration::from_millis(300);
    let edge = InProcessEdge::start(nats.client_url(), config).await;
    let handler = InProcessHandler::start(nats.client_url(), None).await;
    let mut silent =
        Ws::connect_silent(edge.addr, &format!("/session/{}/display", session())).await;
    let (mut live, _) = display(edge.addr, &session()).await;
    // The live client keeps reading (so answers pings) for several intervals meanwhile.
    let live = tokio::spawn(async move {
        live.idle_for(std::time::Duration::from_millis(1500)).await;
        live
    });
    silent.next_of("initial_state").await;
    // Within two intervals of silence the dead peer is closed...
    assert_eq!(silent.closed().await, Some(1001));
    // ...while the one answering pings still works.
    let mut live = live.await.expect("the live client stayed connected");
    live.send_json(&json!({"type": "ping"})).await;
    assert_eq!(live.next_of("pong").await["type"], "pong");
    handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_wait_out_a_database_outage() {
    let pg = PostgresDb::create().await;
    let target: std::net::SocketAddr = "127.0.0.1:5432".parse().expect("addr");
    let proxy = TcpProxy::start(target).await;
    let db_url = proxy.url_for(&pg.url);
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let edge = InProcessEdge::start(nats.client_url(), edge_config()).await;
    let handler = InProcessHandler::start(nats.client_url(), Some(db_url.clone())).await;
    // Wait for the writer to be connected (its first session row), then cut the database off.
    let first = session();
    post(
        edge.addr,
        &format!("/session/{first}/init"),
        None,
        &json!({"tenantId": "t"}),
    )
    .await;
    let pool = tablewire_handlers::store::connect(&pg.url)
        .await
        .expect("direct connection");
    let count = || {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (i64,)>("SELECT COUNT(*) FROM display_sessions")
                .fetch_one(&pool)
                .await
                .map(|r| r.0)
                .unwrap_or(-1)
        }
    };
    eventually("the first row", || async { count().await == 1 }).await;
    proxy.cut();
    for i in 0..20 {
        let (status, _) = post(
            edge.addr,
            &format!("/session/{first}-{i}/init"),
            None,
            &json!({"tenantId": "t"}),
        )
        .await;
        assert_eq!(status, 200, "accepted while the database is down");
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(count().await, 1, "nothing written while it is down");
    proxy.restore();
    eventually("all 21 rows once the database is back", || async {
        count().await == 21
    })
    .await;
    pool.close().await;
    handler.stop().await;
}

/// Seed 000's init is anonymous, so a session's tenant is set once: a second init naming
/// another tenant is refused (409) and changes nothing, and a write the handler refuses is
/// answered with its error, never 2xx (the owner's updates used to answer 200 and be dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_tenant_cannot_be_taken_and_refused_writes_are_not_answered_ok() {
    let sys = system().await;
    let s = session();
    let init = format!("/session/{s}/init");
    let (status, _) = post(sys.edge.addr, &init, None, &json!({"tenantId": "owner"})).await;
    assert_eq!(status, 200);
    let (status, _) = post(sys.edge.addr, &init, None, &json!({"tenantId": "owner"})).await;
    assert_eq!(status, 200, "the same tenant again is fine");
    let (status, reply) = post(sys.edge.addr, &init, None, &json!({"tenantId": "intruder"})).await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (409, Some("CONFLICT")),
        "{reply}"
    );
    let (status, reply) = post(sys.edge.addr, &init, None, &json!({"tenantId": "a\nb"})).await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (400, Some("INVALID_ID"))
    );
    let path = format!("/session/{s}/update");
    let body = json!({"type": "transcription", "displayData": {"text": "mine"}});
    let (status, _) = post(
        sys.edge.addr,
        &path,
        Some(&token("owner", "service", 60)),
        &body,
    )
    .await;
    assert_eq!(status, 200, "the owner's update is applied");
    let (status, reply) = post(
        sys.edge.addr,
        &path,
        Some(&token("intruder", "service", 60)),
        &body,
    )
    .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (403, Some("TENANT_MISMATCH")),
        "{reply}"
    );
    let (_, state) = get(sys.edge.addr, &format!("/session/{s}/state"))
        .await
        .expect("state");
    assert_eq!(state["tenantId"], "owner");
    assert_eq!(state["transcriptions"].as_array().map(Vec::len), Some(1));
}

/// Read-your-writes: once a write is answered, a read on another edge reflects it. 1,000
/// update → state pairs and 200 init → display pairs, alternating two edges; none stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_write_is_seen_by_the_next_read_on_any_edge() {
    let sys = system().await;
    let other = InProcessEdge::start(sys.nats.client_url(), edge_config()).await;
    let edges = [sys.edge.addr, other.addr];
    let s = session();
    let mut stale = Vec::new();
    for i in 0..1000usize {
        let (writer, reader) = (edges[i % 2], edges[(i + 1) % 2]);
        let text = format!("update {i}");
        let body = json!({"type": "transcription", "displayData": {"text": text}});
        let (status, reply) = post(
            writer,
            &format!("/session/{s}/update"),
            Some(AUTH_SECRET),
            &body,
        )
        .await;
        assert_eq!(status, 200, "{reply}");
        let (_, state) = get(reader, &format!("/session/{s}/state"))
            .await
            .expect("state");
        let newest = &state["displayUpdates"]
            .as_array()
            .and_then(|list| list.last())
            .map(|u| u["displayData"]["text"].clone());
        if newest.as_ref().and_then(Value::as_str) != Some(text.as_str()) {
            stale.push(i);
        }
    }
    for i in 0..200usize {
        let (writer, reader) = (edges[i % 2], edges[(i + 1) % 2]);
        let fresh = session();
        let tenant = format!("t{i}");
        let (status, _) = post(
            writer,
            &format!("/session/{fresh}/init"),
            None,
            &json!({"tenantId": tenant}),
        )
        .await;
        assert_eq!(status, 200);
        let (_ws, initial) = display(reader, &fresh).await;
        if initial["state"]["tenantId"] != tenant.as_str() {
            stale.push(1000 + i);
        }
    }
    assert!(stale.is_empty(), "stale reads after writes: {stale:?}");
}
