//! Seed 003 (RFID readers) against a real nats-server and PostgreSQL: scans and their replies,
//! the scan interval across reconnects and edges, takeover between edges, presence, config
//! push, tag lookup and registration, the HTTP fallback, bad input, device auth, and scans
//! surviving a database outage.

mod support;

use futures::StreamExt;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use support::*;
use tablewire_schemas::Domain;
use tablewire_schemas::device::{CLOSE_REPLACED, CLOSE_SILENT, DEFAULT_TENANT};

fn open_edge_config(heartbeat: Duration) -> tablewire_edge::Config {
    tablewire_edge::Config {
        device_auth: tablewire_edge::DeviceAuth::None {
            tenant: DEFAULT_TENANT.into(),
        },
        device_heartbeat: heartbeat,
        ..edge_config()
    }
}

fn device() -> String {
    format!("R{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

async fn connect(addr: SocketAddr, device: &str) -> Ws {
    Ws::connect(addr, &format!("/ws/device?deviceId={device}")).await
}

async fn scan(ws: &mut Ws, tag: &str) -> Value {
    ws.send_json(&json!({"action": "scan", "tagId": tag, "location": "Main Gate"}))
        .await;
    ws.json().await
}

/// Sets a device's configuration as an admin; returns the handler's answer.
async fn configure(addr: SocketAddr, device: &str, config: Value) -> Value {
    let (status, body) = try_configure(addr, device, config).await;
    assert_eq!(status, 200, "config stored: {body}");
    body
}

/// `PUT /api/devices/{device}/config` as an admin: the status and the JSON answer.
async fn try_configure(addr: SocketAddr, device: &str, config: Value) -> (u16, Value) {
    let auth = format!("Bearer {}", token(DEFAULT_TENANT, "admin", 300));
    let (status, _, body) = send(
        addr,
        "PUT",
        &format!("/api/devices/{device}/config"),
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        config.to_string(),
    )
    .await;
    (status, serde_json::from_slice(&body).expect("JSON answer"))
}

async fn upgrade_status(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> u16 {
    let mut all = vec![
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    all.extend_from_slice(headers);
    send(addr, "GET", path, &all, "").await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_scan_take_over_get_config_and_go_offline() {
    let pg = PostgresDb::create().await;
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let a =
        InProcessEdge::start(nats.client_url(), open_edge_config(Duration::from_secs(30))).await;
    let b =
        InProcessEdge::start(nats.client_url(), open_edge_config(Duration::from_secs(30))).await;
    let quick = InProcessEdge::start(
        nats.client_url(),
        open_edge_config(Duration::from_millis(150)),
    )
    .await;
    let handler = InProcessHandler::start(nats.client_url(), Some(pg.url.clone())).await;
    let nc = client(nats.client_url()).await;
    let mut feed = tenant_feed(&nc).await;
    // The dashboard: seed 004's events socket of the tenant, on the other edge.
    let mut dashboard = dashboard(b.addr).await;

    // The seed's wscat session: a scan answers success with the scan and no user.
    let r1 = device();
    let mut on_a = connect(a.addr, &r1).await;
    let reply = scan(&mut on_a, "TEST123").await;
    assert_eq!(reply["success"], true, "{reply}");
    assert_eq!(reply["scan"]["tagId"], "TEST123");
    assert_eq!(reply["scan"]["deviceId"], r1.as_str());
    assert_eq!(reply["scan"]["location"], "Main Gate");
    assert_eq!(reply["user"], Value::Null);
    // The dashboard saw the device come online, then its scan, in seed 004's event shape.
    let online = dashboard.next_of("device:online").await;
    assert_eq!(online["data"]["deviceId"], r1.as_str());
    let scanned = dashboard.next_of("device:scan").await;
    assert_eq!(scanned["data"]["scan"], reply["scan"]);
    assert!(
        scanned["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{scanned}"
    );

    // Bad input gets an error and the connection stays up.
    on_a.send_json(&json!({"action": "scan", "location": "x"}))
        .await;
    assert_eq!(on_a.json().await["code"], "INVALID_MESSAGE");
    let huge = "x".repeat(10 * 1024);
    let reply = scan(&mut on_a, &huge).await;
    assert_eq!(reply["success"], false);
    assert_eq!(reply["code"], "VALIDATION_ERROR");
    on_a.send_text("{not json").await;
    assert_eq!(on_a.json().await["code"], "MALFORMED_JSON");
    on_a.send_json(&json!({"action": "dance"})).await;
    assert_eq!(on_a.json().await["code"], "UNKNOWN_TYPE");
    on_a.send_json(&json!({"action": "heartbeat", "timestamp": 1699000000}))
        .await;
    let ack = on_a.json().await;
    assert_eq!(
        (ack["success"].clone(), ack["action"].clone()),
        (json!(true), json!("heartbeat"))
    );

    // An interval over a minute is refused before anything is stored.
    let (status, refused) = try_configure(a.addr, &r1, json!({"scanIntervalMs": 600_000})).await;
    assert_eq!(
        (status, &refused["error"]["code"]),
        (400, &json!("VALIDATION_ERROR")),
        "{refused}"
    );

    // Config push to the online device: the longest interval, so "too soon" cannot depend on
    // speed.
    let answer = configure(a.addr, &r1, json!({"scanIntervalMs": 60_000})).await;
    assert_eq!(answer["online"], true);
    let pushed = on_a.json().await;
    assert_eq!(
        pushed,
        json!({"action": "config", "registrationMode": false, "scanIntervalMs": 60_000})
    );
    let reply = scan(&mut on_a, "T2").await;
    assert_eq!(reply["code"], "TOO_SOON", "{reply}");
    assert_eq!(reply["error"], "Please wait 60 seconds between scans");

    // Takeover: the same device on edge B; A's socket closes with 4001. The interval holds on
    // B, and B gets the stored config as it connects.
    let mut on_b = connect(b.addr, &r1).await;
    assert_eq!(on_a.closed().await, Some(CLOSE_REPLACED));
    assert_eq!(on_b.json().await["action"], "config");
    let reply = scan(&mut on_b, "T3").await;
    assert_eq!(
        reply["code"], "TOO_SOON",
        "the interval holds across edges: {reply}"
    );

    // Tags: a row in SQL reaches the directory; the scan shows its user. Registration mode
    // registers an unknown tag.
    configure(
        b.addr,
        &r1,
        json!({"scanIntervalMs": 0, "registrationMode": true}),
    )
    .await;
    assert_eq!(on_b.json().await["registrationMode"], true);
    let pool = tablewire_handlers::store::connect(&pg.url)
        .await
        .expect("db");
    sqlx::query(
        "INSERT INTO device_tags (tenant, tag_id, user_id, user_data, updated_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(DEFAULT_TENANT)
    .bind("TAGU")
    .bind("u1")
    .bind(r#"{"id":"u1","name":"Ana"}"#)
    .bind(tablewire_edge::publish::now_ms())
    .execute(&pool)
    .await
    .expect("insert tag");
    let js = async_nats::jetstream::new(nc.clone());
    let tags = js
        .get_key_value(tablewire_nats::resource::DEVICE_TAGS_BUCKET)
        .await
        .expect("tags bucket");
    eventually("the tag reaches the directory", || {
        let tags = tags.clone();
        async move {
            let key = tablewire_nats::resource::device_tag_key(DEFAULT_TENANT, "TAGU");
            matches!(tags.get(key).await, Ok(Some(_)))
        }
    })
    .await;
    let reply = scan(&mut on_b, "TAGU").await;
    assert_eq!(reply["user"]["name"], "Ana", "{reply}");
    assert_eq!(reply["scan"]["registered"], false);
    let reply = scan(&mut on_b, "NEWTAG").await;
    assert_eq!(reply["scan"]["registered"], true, "{reply}");

    // The HTTP fallback, same rules.
    let (status, body) = post(
        a.addr,
        "/api/rfid/scan",
        None,
        &json!({"deviceId": r1, "tagId": "TAGU", "location": "Back door"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["id"], "u1");
    let (status, body) = post(a.addr, "/api/rfid/scan", None, &json!({"deviceId": r1})).await;
    assert_eq!(status, 400, "{body}");

    // A device configured while offline gets its config when it connects.
    let r2 = device();
    let answer = configure(a.addr, &r2, json!({"registrationMode": true})).await;
    assert_eq!(answer["online"], false);
    let mut r2_ws = connect(b.addr, &r2).await;
    assert_eq!(r2_ws.json().await["registrationMode"], true);
    drop(r2_ws);

    // Presence: a device that stops talking is closed and goes offline.
    let r3 = device();
    let mut silent = connect(quick.addr, &r3).await;
    assert_eq!(silent.closed().await, Some(CLOSE_SILENT));

    // Rows: the three accepted WS scans + one HTTP scan of r1; the registered tag.
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (i64,)>(sql)
                .fetch_one(&pool)
                .await
                .map(|r| r.0)
                .unwrap_or(-1)
        }
    };
    eventually("scan rows", || async {
        count("SELECT COUNT(*) FROM device_scans").await == 4
    })
    .await;
    eventually("the registered tag", || async {
        count("SELECT COUNT(*) FROM device_tags WHERE tag_id = 'NEWTAG'").await == 1
    })
    .await;

    // The tenant's feed saw online, scans and offline (r3's silence).
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !(seen.contains("device:online")
        && seen.contains("device:scan")
        && seen.contains(&format!("device:offline:{r3}")))
    {
        let message = tokio::time::timeout_at(deadline, feed.next())
            .await
            .expect("feed events in time")
            .expect("feed open");
        let event: Value = serde_json::from_slice(&message.payload).expect("JSON");
        let kind = event["type"].as_str().unwrap_or_default().to_string();
        if kind == "device:offline" && event["data"]["deviceId"] == r3.as_str() {
            assert_eq!(event["data"]["reason"], "silent");
            seen.insert(format!("{kind}:{r3}"));
        }
        seen.insert(kind);
    }
    pool.close().await;
    handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_certainly_too_soon_is_answered_by_the_edge_as_the_handler_would() {
    let OneNode {
        nats: _nats,
        edge,
        handler,
        nc,
    } = one_node().await;
    // A minute between scans: "too soon" cannot depend on the machine's speed.
    let r = device();
    configure(edge.addr, &r, json!({"scanIntervalMs": 60_000})).await;
    let mut ws = connect(edge.addr, &r).await;
    assert_eq!(
        ws.json().await["action"],
        "config",
        "the stored config on connect"
    );
    let mut input = watch_input(&nc, &r).await;
    assert_eq!(scan(&mut ws, "T1").await["success"], true);
    published_scan(&mut input).await;

    // Until the handler's announcement of T1 reaches the edge the handler refuses, then the
    // edge does: the device cannot tell which.
    let refused_early = "tablewire_edge_device_scans_refused_early_total";
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut sent = 0;
    while metric(&metrics(edge.addr).await, refused_early) < 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "no early refusal");
        let reply = scan(&mut ws, "T2").await;
        sent += 1;
        assert_eq!(reply["code"], "TOO_SOON", "{reply}");
        assert_eq!(reply["error"], "Please wait 60 seconds between scans");
        assert!(
            reply["retryAfterMs"]
                .as_u64()
                .is_some_and(|ms| ms <= 60_000)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let early = metric(&metrics(edge.addr).await, refused_early) as usize;
    // Only the scans the handler answered went through JetStream.
    for _ in 0..(sent - early) {
        assert_eq!(published_scan(&mut input).await["command"]["tagId"], "T2");
    }
    nc.flush().await.expect("flush");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), input.next())
            .await
            .is_err(),
        "a scan the edge refused was published"
    );
    handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_auth_refuses_unknown_devices_before_the_upgrade() {
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let edge = InProcessEdge::start(nats.client_url(), edge_config()).await;
    let handler = InProcessHandler::start(nats.client_url(), None).await;
    let now = tablewire_edge::auth::now_secs();
    let device_token = |sub: &str, secret: &str| {
        let claims = tablewire_schemas::Claims {
            sub: sub.into(),
            tenant: Some("t1".into()),
            role: Some("device".into()),
            exp: now + 300,
            iat: Some(now),
        };
        tablewire_edge::mint(secret, &claims).expect("mint")
    };
    let path = "/ws/device?deviceId=GATE1";
    assert_eq!(upgrade_status(edge.addr, path, &[]).await, 401, "no token");
    let forged = format!("Bearer {}", device_token("GATE1", "not-the-secret"));
    assert_eq!(
        upgrade_status(edge.addr, path, &[("Authorization", &forged)]).await,
        401
    );
    let other = format!("Bearer {}", device_token("GATE2", JWT_SECRET));
    assert_eq!(
        upgrade_status(edge.addr, path, &[("Authorization", &other)]).await,
        401,
        "another device's token"
    );
    let good = device_token("GATE1", JWT_SECRET);
    let mut ws = Ws::try_connect(edge.addr, &format!("{path}&token={good}"))
        .await
        .expect("the device's own token in the query");
    let reply = scan(&mut ws, "T1").await;
    assert_eq!(reply["success"], true, "{reply}");
    let (status, _) = post(
        edge.addr,
        "/api/rfid/scan",
        None,
        &json!({"deviceId": "GATE1", "tagId": "T1"}),
    )
    .await;
    assert_eq!(status, 401, "the HTTP fallback needs the token too");
    handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_scan_is_lost_while_the_database_is_down() {
    let pg = PostgresDb::create().await;
    let target: SocketAddr = "127.0.0.1:5432".parse().expect("addr");
    let proxy = TcpProxy::start(target).await;
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let edge =
        InProcessEdge::start(nats.client_url(), open_edge_config(Duration::from_secs(30))).await;
    let handler = InProcessHandler::start(nats.client_url(), Some(proxy.url_for(&pg.url))).await;
    let pool = tablewire_handlers::store::connect(&pg.url)
        .await
        .expect("db");
    let r = device();
    configure(edge.addr, &r, json!({"scanIntervalMs": 0})).await;
    let mut ws = connect(edge.addr, &r).await;
    assert_eq!(ws.json().await["action"], "config");
    let count = || {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (i64,)>("SELECT COUNT(*) FROM device_configs")
                .fetch_one(&pool)
                .await
                .map(|r| r.0)
                .unwrap_or(-1)
        }
    };
    eventually("the writer is connected", || async { count().await == 1 }).await;
    proxy.cut();
    for i in 0..100 {
        // A reader sends at most 20 messages a second: wait as the edge says when over it.
        let reply = loop {
            let reply = scan(&mut ws, &format!("TAG{i}")).await;
            match reply["retryAfterMs"].as_u64() {
                Some(ms) if reply["code"] == "RATE_LIMITED" => {
                    tokio::time::sleep(Duration::from_millis(ms)).await
                }
                _ => break reply,
            }
        };
        assert_eq!(
            reply["success"], true,
            "accepted and answered while the DB is down: {reply}"
        );
    }
    let scans = || {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (i64,)>("SELECT COUNT(*) FROM device_scans")
                .fetch_one(&pool)
                .await
                .map(|r| r.0)
                .unwrap_or(-1)
        }
    };
    assert_eq!(scans().await, 0, "nothing written while it is down");
    proxy.restore();
    eventually("all 100 scans once the database is back", || async {
        scans().await == 100
    })
    .await;
    pool.close().await;
    handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_notice_published_again_by_a_new_handler_reaches_the_dashboard_once() {
    let OneNode {
        nats,
        edge,
        handler,
        nc,
    } = one_node().await;
    // The feed as the handlers publish it, repeats included.
    let mut feed = tenant_feed(&nc).await;
    let mut dashboard = dashboard(edge.addr).await;

    let r = device();
    configure(edge.addr, &r, json!({"scanIntervalMs": 0})).await;
    let mut ws = connect(edge.addr, &r).await;
    assert_eq!(ws.json().await["action"], "config");
    assert_eq!(scan(&mut ws, "TAG-1").await["success"], true);
    assert_eq!(feed_scan_tag(&mut feed, &r).await, "TAG-1");
    assert_eq!(dashboard_scan_tag(&mut dashboard).await, "TAG-1");

    // A new handler trusts nothing of the device's before it: with the device's next command
    // it publishes the device's last outbox again (the TAG-1 notice), then the new scan's.
    handler.stop().await;
    let handler = InProcessHandler::start(nats.client_url(), None).await;
    assert_eq!(scan(&mut ws, "TAG-2").await["success"], true);
    assert_eq!(
        feed_scan_tag(&mut feed, &r).await,
        "TAG-1",
        "the repeat is published"
    );
    assert_eq!(feed_scan_tag(&mut feed, &r).await, "TAG-2");
    assert_eq!(
        dashboard_scan_tag(&mut dashboard).await,
        "TAG-2",
        "the edge dropped the repeat"
    );
    handler.stop().await;
}

/// A reply is kept with the write that made it: a handler that takes over a device whose last
/// write it did not make sends that write's reply again (a reader whose handler died between the
/// write and the reply is answered after all), and the edge delivers each reply once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_reply_is_sent_again_by_a_new_handler_and_reaches_the_reader_once() {
    let OneNode {
        nats,
        edge,
        handler,
        nc,
    } = one_node().await;
    let r = device();
    configure(edge.addr, &r, json!({"scanIntervalMs": 0})).await;
    let mut ws = connect(edge.addr, &r).await;
    assert_eq!(ws.json().await["action"], "config");
    // The edge's inbox as the handlers publish to it, repeats included.
    let mut replies = nc
        .subscribe(tablewire_nats::subject::edge_inbox(&edge.id))
        .await
        .expect("edge inbox");
    nc.flush().await.expect("flush");
    assert_eq!(scan(&mut ws, "TAG-1").await["scan"]["tagId"], "TAG-1");
    let first = answer(&mut replies).await;
    assert_eq!(first["scan"]["tagId"], "TAG-1");

    // The new handler trusts nothing of the device's: with its next command it sends the last
    // write's outbox again, the TAG-1 reply included, then answers the new scan.
    handler.stop().await;
    let handler = InProcessHandler::start(nats.client_url(), None).await;
    let second = scan(&mut ws, "TAG-2").await;
    assert_eq!(
        second["scan"]["tagId"], "TAG-2",
        "the edge dropped the repeated TAG-1 reply: {second}"
    );
    assert_eq!(
        answer(&mut replies).await,
        first,
        "the new handler sent the kept reply again"
    );
    assert_eq!(answer(&mut replies).await["scan"]["tagId"], "TAG-2");
    handler.stop().await;
}

/// A `tablewire edge` process accepting devices without credentials.
async fn open_edge_process(url: &str) -> (Process, SocketAddr) {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let process = Process::spawn(&[
        "edge",
        "--nats-url",
        url,
        "--listen",
        &addr.to_string(),
        "--device-auth",
        "none",
    ]);
    eventually("edge process healthy", || async move {
        get(addr, "/healthz").await.ok().map(|(s, _)| s == 200) == Some(true)
    })
    .await;
    (process, addr)
}

/// A provisioned nats-server, an edge taking devices without credentials, a handler without
/// SQL, and a NATS client.
struct OneNode {
    nats: tablewire_nats::NatsServer,
    edge: InProcessEdge,
    handler: InProcessHandler,
    nc: async_nats::Client,
}

async fn one_node() -> OneNode {
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let edge =
        InProcessEdge::start(nats.client_url(), open_edge_config(Duration::from_secs(30))).await;
    let handler = InProcessHandler::start(nats.client_url(), None).await;
    let nc = client(nats.client_url()).await;
    OneNode {
        nats,
        edge,
        handler,
        nc,
    }
}

/// The default tenant's events feed as the handlers publish it (a raw NATS subscription).
async fn tenant_feed(nc: &async_nats::Client) -> async_nats::Subscriber {
    let feed = nc
        .subscribe(tablewire_nats::subject::output(
            Domain::Events,
            DEFAULT_TENANT,
            tablewire_schemas::events::FEED_KEY,
        ))
        .await
        .expect("feed");
    nc.flush().await.expect("flush");
    feed
}

/// The tag of the next scan of `device` on the raw feed.
async fn feed_scan_tag(feed: &mut async_nats::Subscriber, device: &str) -> Value {
    feed_event(feed, "device:scan", device).await["scan"]["tagId"].clone()
}

/// The tag of the next scan a dashboard hears of.
async fn dashboard_scan_tag(dashboard: &mut Ws) -> Value {
    dashboard.next_of("device:scan").await["data"]["scan"]["tagId"].clone()
}

/// A dashboard: seed 004's events socket of the default tenant, connected.
async fn dashboard(addr: SocketAddr) -> Ws {
    let token = token(DEFAULT_TENANT, "admin", 300);
    let mut dashboard = Ws::connect(addr, &format!("/ws?token={token}")).await;
    assert_eq!(dashboard.json().await["type"], "connected");
    dashboard
}

/// Reads the feed until an event of `kind` about `device` (`data.deviceId`, or
/// `data.scan.deviceId` for scans); returns its data.
async fn feed_event(feed: &mut async_nats::Subscriber, kind: &str, device: &str) -> Value {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let message = tokio::time::timeout_at(deadline, feed.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} for {device} in time"))
            .expect("feed open");
        let event: Value = serde_json::from_slice(&message.payload).expect("JSON");
        let about =
            event["data"]["deviceId"] == device || event["data"]["scan"]["deviceId"] == device;
        if event["type"] == kind && about {
            return event["data"].clone();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_across_edge_processes_and_offline_when_the_edge_dies() {
    let nats = nats().await;
    let topology = tablewire_nats::Topology {
        device_presence_ttl: Duration::from_secs(1),
        ..test_topology()
    };
    provision(nats.client_url(), &topology).await;
    let handler = InProcessHandler::start(nats.client_url(), None).await;
    let nc = client(nats.client_url()).await;
    let mut feed = tenant_feed(&nc).await;
    let (mut edge_a, a) = open_edge_process(nats.client_url()).await;
    let (mut edge_b, b) = open_edge_process(nats.client_url()).await;

    let r = device();
    let mut on_a = connect(a, &r).await;
    assert_eq!(
        feed_event(&mut feed, "device:online", &r).await["takeover"],
        false
    );
    let mut on_b = connect(b, &r).await;
    assert_eq!(on_a.closed().await, Some(CLOSE_REPLACED), "A lets go");
    assert_eq!(
        feed_event(&mut feed, "device:online", &r).await["takeover"],
        true
    );
    on_b.send_json(&json!({"action": "heartbeat", "timestamp": 1}))
        .await;
    assert_eq!(on_b.json().await["success"], true);

    // B dies without a word: nothing refreshes the device's presence, which expires.
    edge_b.kill().await;
    let offline = feed_event(&mut feed, "device:offline", &r).await;
    assert_eq!(offline["reason"], "expired");
    let js = async_nats::jetstream::new(nc.clone());
    let states = js
        .get_key_value(tablewire_nats::resource::state_bucket(Domain::Device))
        .await
        .expect("state bucket");
    let stored = states
        .get(tablewire_nats::resource::state_key(DEFAULT_TENANT, &r))
        .await
        .expect("read")
        .expect("state");
    let stored: Value = serde_json::from_slice(&stored).expect("JSON");
    assert_eq!(stored["state"]["online"], false);
    assert_eq!(stored["state"]["holder"], Value::Null);
    edge_a.kill().await;
    handler.stop().await;
}

/// `PUT /api/devices/settings` with `token`; returns status and JSON body.
async fn put_settings(addr: SocketAddr, token: Option<&str>, body: &str) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth.as_str()));
    }
    let (status, _, reply) = send(
        addr,
        "PUT",
        "/api/devices/settings",
        &headers,
        body.to_string(),
    )
    .await;
    (
        status,
        serde_json::from_slice(&reply).expect("a JSON answer"),
    )
}

/// Subscribes (confirmed by the server) to what edges publish for `device` of the default tenant.
async fn watch_input(nc: &async_nats::Client, device: &str) -> async_nats::Subscriber {
    let input = nc
        .subscribe(tablewire_nats::subject::input(
            Domain::Device,
            DEFAULT_TENANT,
            device,
        ))
        .await
        .expect("subscribe");
    nc.flush().await.expect("flush");
    input
}

/// The next scan command an edge publishes for `device`, as the handler will read it.
async fn published_scan(input: &mut async_nats::Subscriber) -> Value {
    loop {
        let message = tokio::time::timeout(TIMEOUT, input.next())
            .await
            .expect("a command in time")
            .expect("subscription open");
        let envelope: Value = serde_json::from_slice(&message.payload).expect("JSON envelope");
        if envelope["command"]["type"] == "scan" {
            return envelope;
        }
    }
}

/// The next reply on a test inbox.
async fn answer(replies: &mut async_nats::Subscriber) -> Value {
    let message = tokio::time::timeout(TIMEOUT, replies.next())
        .await
        .expect("a reply in time")
        .expect("inbox open");
    serde_json::from_slice(&message.payload).expect("JSON reply")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_scan_interval_is_stored_attached_by_every_edge_and_applied() {
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let config = || open_edge_config(Duration::from_secs(30));
    let a = InProcessEdge::start(nats.client_url(), config()).await;
    // B runs before the setting exists: it learns it through its watch.
    let b = InProcessEdge::start(nats.client_url(), config()).await;
    let handler = InProcessHandler::start(nats.client_url(), None).await;
    let nc = client(nats.client_url()).await;
    let admin = token(DEFAULT_TENANT, "admin", 300);

    // Refusals, each with a JSON error body; nothing is stored.
    for (auth, body, status, code) in [
        (None, r#"{"scanIntervalMs":3000}"#, 401, "UNAUTHORIZED"),
        (
            Some(token(DEFAULT_TENANT, "staff", 300)),
            r#"{"scanIntervalMs":3000}"#,
            403,
            "FORBIDDEN",
        ),
        (
            Some(admin.clone()),
            r#"{"scanIntervalMs":"3000"}"#,
            400,
            "INVALID_MESSAGE",
        ),
        (
            Some(admin.clone()),
            r#"{"scanIntervalMs":-1}"#,
            400,
            "INVALID_MESSAGE",
        ),
        (
            Some(admin.clone()),
            r#"{"scanInterval":3000}"#,
            400,
            "INVALID_MESSAGE",
        ),
        (Some(admin.clone()), "[3000]", 400, "INVALID_MESSAGE"),
        (Some(admin.clone()), "{nope", 400, "MALFORMED_JSON"),
        (
            Some(admin.clone()),
            r#"{"scanIntervalMs":60001}"#,
            400,
            "VALIDATION_ERROR",
        ),
    ] {
        let (got, reply) = put_settings(a.addr, auth.as_deref(), body).await;
        assert_eq!(
            (got, reply["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {reply}"
        );
    }
    let js = async_nats::jetstream::new(nc.clone());
    let bucket = js
        .get_key_value(tablewire_nats::resource::DEVICE_SETTINGS_BUCKET)
        .await
        .expect("settings bucket");
    let key = tablewire_nats::resource::device_settings_key(DEFAULT_TENANT);
    assert_eq!(bucket.get(&key).await.expect("read"), None);

    let (status, reply) = put_settings(a.addr, Some(&admin), r#"{"scanIntervalMs":3000}"#).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["settings"]["scanIntervalMs"], 3000);
    let stored: Value =
        serde_json::from_slice(&bucket.get(&key).await.expect("read").expect("stored"))
            .expect("JSON");
    assert_eq!(stored["scanIntervalMs"], 3000, "plain JSON in KV");
    // Any edge reads it back; only an admin may.
    let read = |token: String| async move {
        let auth = format!("Bearer {token}");
        let (status, _, body) = send(
            b.addr,
            "GET",
            "/api/devices/settings",
            &[("Authorization", auth.as_str())],
            "",
        )
        .await;
        (
            status,
            serde_json::from_slice::<Value>(&body).expect("JSON"),
        )
    };
    let (status, got) = read(admin.clone()).await;
    assert_eq!(
        (status, &got["settings"]["scanIntervalMs"]),
        (200, &json!(3000))
    );
    let (status, _) = read(token(DEFAULT_TENANT, "staff", 300)).await;
    assert_eq!(status, 403);

    // The edge that stored it attaches it to the next scan at once.
    let r1 = device();
    let mut input = watch_input(&nc, &r1).await;
    let mut ws = connect(a.addr, &r1).await;
    let reply = scan(&mut ws, "T1").await;
    assert_eq!(reply["success"], true, "{reply}");
    let first = published_scan(&mut input).await;
    assert_eq!(first["command"]["tenantScanIntervalMs"], 3000, "{first}");

    // The handler judges by the command's time: the same scan 1.5 s later is refused, 3 s later
    // accepted. (Sent as an HTTP-fallback scan would be, answered on a test inbox.)
    let inbox_edge = format!("test-{}", uuid::Uuid::new_v4().simple());
    let mut replies = nc
        .subscribe(tablewire_nats::subject::edge_inbox(&inbox_edge))
        .await
        .expect("inbox");
    nc.flush().await.expect("flush");
    let at = first["at"].as_i64().expect("at");
    let replay = |later_ms: i64| {
        let mut envelope = first.clone();
        envelope["id"] = json!(format!("replay-{later_ms}"));
        envelope["at"] = json!(at + later_ms);
        envelope["origin"] = json!({"edge": inbox_edge, "request": format!("q{later_ms}")});
        let (js, subject) = (
            js.clone(),
            tablewire_nats::subject::input(Domain::Device, DEFAULT_TENANT, &r1),
        );
        async move {
            js.publish(subject, envelope.to_string().into())
                .await
                .expect("publish")
                .await
                .expect("stored");
        }
    };
    replay(1500).await;
    let refused = answer(&mut replies).await;
    assert_eq!(refused["code"], "TOO_SOON", "{refused}");
    assert_eq!(refused["error"], "Please wait 3 seconds between scans");
    assert_eq!(refused["retryAfterMs"], 1500);
    replay(3000).await;
    assert_eq!(answer(&mut replies).await["success"], true);
    // The device's own interval wins over the tenant's: 200 ms, so 200 ms later is fine.
    configure(a.addr, &r1, json!({"scanIntervalMs": 200})).await;
    replay(3200).await;
    let accepted = answer(&mut replies).await;
    assert_eq!(accepted["success"], true, "{accepted}");

    // B, running all along, attaches it once its watch has delivered it.
    eventually("edge B attaches the tenant interval", || {
        let nc = nc.clone();
        let addr = b.addr;
        async move {
            let id = device();
            let mut input = watch_input(&nc, &id).await;
            let (status, body) = post(
                addr,
                "/api/rfid/scan",
                None,
                &json!({"deviceId": id, "tagId": "T"}),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            published_scan(&mut input).await["command"]["tenantScanIntervalMs"] == 3000
        }
    })
    .await;
    // An edge started afterwards (or restarted) has it before it serves its first scan.
    let c = InProcessEdge::start(nats.client_url(), config()).await;
    let r2 = device();
    let mut input = watch_input(&nc, &r2).await;
    let mut on_c = connect(c.addr, &r2).await;
    assert_eq!(scan(&mut on_c, "T1").await["success"], true);
    assert_eq!(
        published_scan(&mut input).await["command"]["tenantScanIntervalMs"],
        3000
    );

    // Reset: scans carry no tenant interval again (the seed's 1 s applies).
    let (status, reply) = put_settings(a.addr, Some(&admin), r#"{"scanIntervalMs":null}"#).await;
    assert_eq!(
        (status, &reply["settings"]["scanIntervalMs"]),
        (200, &Value::Null)
    );
    let r3 = device();
    let mut input = watch_input(&nc, &r3).await;
    let mut ws3 = connect(a.addr, &r3).await;
    assert_eq!(scan(&mut ws3, "T1").await["success"], true);
    let envelope = published_scan(&mut input).await;
    assert!(
        envelope["command"].get("tenantScanIntervalMs").is_none(),
        "{envelope}"
    );
    handler.stop().await;
}
