//! The runtime's invariants end to end, with real processes: per-key order through several
//! handler workers, exactly-once effect across handler crashes, any edge serving any session,
//! TLS, and no loss when a node of a 3-node NATS cluster dies.

mod support;

use serde_json::{Value, json};
use std::net::SocketAddr;
use support::*;
use tablewire_schemas::Domain;

fn session() -> String {
    format!("s{}", uuid::Uuid::new_v4().simple())
}

/// Reads updates `0..n` from a display: each in order with contiguous sequence numbers after
/// `base`. When the edge had to resynchronize (a gap it saw, or a NATS reconnect), the display
/// gets a fresh `initial_state` instead of some updates; that snapshot must then contain them.
async fn expect_in_order(ws: &mut Ws, base: u64, n: u64) {
    let mut next = 0;
    while next < n {
        let frame = ws.json().await;
        match frame["type"].as_str() {
            Some("update") => {
                assert_eq!(
                    frame["update"]["displayData"]["i"], next,
                    "update {next} in order: {frame}"
                );
                assert_eq!(
                    frame["seq"].as_u64(),
                    Some(base + next + 1),
                    "sequence of update {next}"
                );
                next += 1;
            }
            Some("initial_state") => {
                let covered = frame["seq"].as_u64().expect("seq") - base;
                assert!(
                    covered >= next,
                    "a snapshot never goes back: {covered} < {next}"
                );
                if covered > next {
                    let updates = frame["state"]["displayUpdates"]
                        .as_array()
                        .expect("updates");
                    let last = updates.last().map(|u| u["displayData"]["i"].clone());
                    assert_eq!(
                        last,
                        Some(json!(covered - 1)),
                        "the snapshot holds what it covers"
                    );
                }
                next = covered;
            }
            _ => panic!("unexpected frame {frame}"),
        }
    }
}

/// Posts 1,000 updates one after the other to a session served by three handler processes, and
/// checks a display sees them in order and the state applied each exactly once. With
/// `kill_workers`, a worker is killed outright (no release, no acks) and restarted after every
/// 250 updates; over the run every worker dies once, so the one holding the session's partition
/// does too.
async fn thousand_updates_through_three_workers(kill_workers: bool) {
    let nats = nats().await;
    let url = nats.client_url().to_string();
    provision(&url, &test_topology()).await;
    let mut workers: Vec<Process> = (0..3).map(|_| handler_process(&url)).collect();
    let edge = InProcessEdge::start(&url, edge_config()).await;
    let s = session();
    let mut ws = Ws::connect(edge.addr, &format!("/session/{s}/display")).await;
    let base = ws.next_of("initial_state").await["seq"]
        .as_u64()
        .expect("seq");
    let reader = tokio::spawn(async move {
        expect_in_order(&mut ws, base, 1000).await;
        ws
    });
    for i in 0..1000u64 {
        if kill_workers && i > 0 && i % 250 == 0 {
            let k = (i / 250 - 1) as usize;
            workers[k].kill().await;
            workers[k].restart();
        }
        update(edge.addr, &s, json!({"i": i})).await;
    }
    reader.await.expect("display saw all 1000 in order");
    assert_display_applied_once(&url, &s, 1000, 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_updates_through_three_workers_arrive_in_order() {
    thousand_updates_through_three_workers(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_killed_mid_stream_and_restarted_lose_and_repeat_nothing() {
    thousand_updates_through_three_workers(true).await;
}

/// Sends 40 updates to each of 8 sessions (spread over the partitions), then checks each was
/// applied exactly once and the input stream emptied: every command was acknowledged, one by
/// one or by batch as the consumers' ack policy says (interest retention drops a command once
/// its consumer has acknowledged it).
/// Waits until the display input stream holds `left` commands (interest retention: the ones
/// not acknowledged yet); fails after 30 s.
async fn wait_until_unacknowledged(url: &str, left: u64) {
    let js = async_nats::jetstream::new(client(url).await);
    let mut stream = js
        .get_stream(tablewire_nats::resource::input_stream(Domain::Display))
        .await
        .expect("stream");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let now = stream.info().await.expect("stream info").state.messages;
        if now == left {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{now} commands unacknowledged after 30 s, expected {left}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn every_command_is_acknowledged_once_applied(ack_by_batch: bool) {
    let nats = nats().await;
    let url = nats.client_url().to_string();
    let topology = tablewire_nats::Topology {
        ack_by_batch,
        ..test_topology()
    };
    provision(&url, &topology).await;
    let _worker = handler_process(&url);
    let edge = InProcessEdge::start(&url, edge_config()).await;
    let sessions: Vec<String> = (0..8).map(|_| session()).collect();
    for i in 0..40u64 {
        for s in &sessions {
            update(edge.addr, s, json!({"i": i})).await;
        }
    }
    wait_until_unacknowledged(&url, 0).await;
    for s in &sessions {
        let state = stored_display(&url, s).await;
        assert_eq!(
            state["seq"].as_u64(),
            Some(40),
            "{s} applied each update once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_acknowledged_one_by_one() {
    every_command_is_acknowledged_once_applied(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_acknowledged_by_batch_when_provisioned_so() {
    every_command_is_acknowledged_once_applied(true).await;
}

/// A batch's acknowledgement waits for the next batch, or half a second: acknowledged to
/// empty, an input stream (interest retention) has nats-server delete its last block file and
/// create another, inline while the stream is locked, so while commands come the stream keeps
/// its newest one. Nothing waits for that acknowledgement; each update is answered once applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_command_is_acknowledged_with_the_next_batch_or_soon_after() {
    let nats = nats().await;
    let url = nats.client_url().to_string();
    provision(&url, &test_topology()).await;
    let _worker = handler_process(&url);
    let edge = InProcessEdge::start(&url, edge_config()).await;
    let js = async_nats::jetstream::new(client(&url).await);
    let mut stream = js
        .get_stream(tablewire_nats::resource::input_stream(Domain::Display))
        .await
        .expect("stream");
    let s = session();
    for i in 0..3u64 {
        update(edge.addr, &s, json!({"i": i})).await;
        // Answered: applied, and its acknowledgement (were it sent at once) long processed.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let left = stream.info().await.expect("stream info").state.messages;
        assert_eq!(
            left, 1,
            "update {i}: only the newest command is left unacknowledged"
        );
    }
    wait_until_unacknowledged(&url, 0).await;
    assert_eq!(stored_display(&url, &s).await["seq"].as_u64(), Some(3));
}

/// A session whose stored state no longer reads has its command parked (in `TW_PARKED`, with
/// its reason), not retried forever, and holds back no other: with per-command
/// acknowledgements (the default) the sessions sharing its partition, whose commands come
/// after its own, are applied, and every command is acknowledged. The unreadable value is left
/// as it was for an operator to look at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_whose_state_cannot_be_read_has_its_command_parked_and_holds_back_no_other() {
    let nats = nats().await;
    let url = nats.client_url().to_string();
    provision(&url, &test_topology()).await;
    let _worker = handler_process(&url);
    let edge = InProcessEdge::start(&url, edge_config()).await;
    let poisoned = session();
    // Never applied: the answer says it was parked instead of claiming success.
    park_an_update_to_an_unreadable_display(&url, edge.addr, &poisoned).await;
    // 24 sessions over 4 partitions: some share the poisoned one's, after its command.
    let others: Vec<String> = (0..24).map(|_| session()).collect();
    for i in 0..3u64 {
        for s in &others {
            update(edge.addr, s, json!({"i": i})).await;
        }
    }
    wait_until_unacknowledged(&url, 0).await;
    for s in &others {
        assert_eq!(
            stored_display(&url, s).await["seq"].as_u64(),
            Some(3),
            "{s} applied"
        );
    }
    let js = async_nats::jetstream::new(client(&url).await);
    let kv = js
        .get_key_value(tablewire_nats::resource::state_bucket(Domain::Display))
        .await
        .expect("bucket");
    let entry = kv
        .get(format!("_.{poisoned}"))
        .await
        .expect("get")
        .expect("still there");
    assert_eq!(&entry[..], b"not a state", "nothing overwrote it");
    let mut parked = js
        .get_stream(tablewire_nats::resource::PARKED_STREAM)
        .await
        .expect("parked stream");
    assert_eq!(parked.info().await.expect("info").state.messages, 1);
    let message = parked.get_raw_message(1).await.expect("the parked command");
    let header = |name: &str| {
        message
            .headers
            .get(name)
            .map(|v| v.as_str().to_string())
            .unwrap_or_default()
    };
    use tablewire_nats::subject::header::{PARKED_DOMAIN, PARKED_REASON, PARKED_SEQ};
    assert_eq!(
        message.subject.as_str(),
        "tw.parked.display.state_unreadable"
    );
    assert_eq!(header(PARKED_REASON), "state_unreadable");
    assert_eq!(header(PARKED_DOMAIN), "display");
    assert!(header(PARKED_SEQ).parse::<u64>().is_ok());
    let envelope: Value = serde_json::from_slice(&message.payload).expect("the envelope as stored");
    assert_eq!(envelope["key"], poisoned.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_edge_process_serves_the_same_session() {
    let nats = nats().await;
    let url = nats.client_url().to_string();
    provision(&url, &test_topology()).await;
    let _worker = handler_process(&url);
    let (mut edge_a, addr_a) = edge_process(&url).await;
    let (_edge_b, addr_b) = edge_process(&url).await;
    let s = session();
    let mut on_a = Ws::connect(addr_a, &format!("/session/{s}/display")).await;
    let mut on_b = Ws::connect(addr_b, &format!("/session/{s}/display")).await;
    on_a.next_of("initial_state").await;
    on_b.next_of("initial_state").await;
    update(addr_a, &s, json!({"i": 0})).await;
    update(addr_b, &s, json!({"i": 1})).await;
    for ws in [&mut on_a, &mut on_b] {
        assert_eq!(ws.next_of("update").await["update"]["displayData"]["i"], 0);
        assert_eq!(ws.next_of("update").await["update"]["displayData"]["i"], 1);
    }
    // SIGTERM drains edge A: its display is told to go elsewhere (1001) and B keeps serving.
    let status = edge_a.terminate().await.expect("edge A exits");
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    assert_eq!(on_a.closed().await, Some(1001));
    update(addr_b, &s, json!({"i": 2})).await;
    assert_eq!(
        on_b.next_of("update").await["update"]["displayData"]["i"],
        2
    );
    let mut back = Ws::connect(addr_b, &format!("/session/{s}/display")).await;
    let initial = back.next_of("initial_state").await;
    assert_eq!(
        initial["state"]["displayUpdates"].as_array().map(Vec::len),
        Some(3)
    );
}

mod tls {
    use super::*;
    use rustls_pki_types::{CertificateDer, ServerName};
    use std::sync::Arc;
    use tokio::net::TcpStream;
    use tokio_rustls::TlsConnector;

    pub struct Certs {
        pub dir: tempfile::TempDir,
        pub der: CertificateDer<'static>,
    }

    pub fn self_signed() -> Certs {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).expect("write cert");
        std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem())
            .expect("write key");
        Certs {
            der: cert.cert.der().clone(),
            dir,
        }
    }

    pub async fn connect(
        addr: SocketAddr,
        der: &CertificateDer<'static>,
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der.clone()).expect("root");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await.expect("tcp");
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("TLS handshake")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_and_https_serve_the_same_routes() {
    use http_body_util::{BodyExt, Full};
    let nats = nats().await;
    let url = nats.client_url().to_string();
    provision(&url, &test_topology()).await;
    let handler = InProcessHandler::start(&url, None).await;
    let certs = tls::self_signed();
    let mut config = edge_config();
    config.tls = Some(tablewire_edge::TlsFiles {
        cert: certs.dir.path().join("cert.pem"),
        key: certs.dir.path().join("key.pem"),
    });
    let edge = InProcessEdge::start(&url, config).await;
    let s = session();
    let stream = tls::connect(edge.addr, &certs.der).await;
    let mut ws = Ws::over(stream, "localhost", &format!("/session/{s}/display"), &[])
        .await
        .expect("wss");
    assert_eq!(ws.json().await["type"], "initial_state");

    let stream = tls::connect(edge.addr, &certs.der).await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("https");
    tokio::spawn(conn);
    let request = hyper::Request::post(format!("/session/{s}/update"))
        .header("Host", "localhost")
        .header("Authorization", format!("Bearer {AUTH_SECRET}"))
        .body(Full::new(bytes::Bytes::from(
            r#"{"type":"dish_card","displayData":{"i":0}}"#,
        )))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), 200);
    let _ = response.into_body().collect().await;
    assert_eq!(ws.next_of("update").await["update"]["displayData"]["i"], 0);
    // Plain HTTP to a TLS port is refused, not served.
    assert!(get(edge.addr, "/healthz").await.is_err());
    handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_one_node_of_a_three_node_cluster_loses_nothing() {
    let (mut cluster, urls) = replicated_cluster().await;
    let handler = InProcessHandler::start(&urls, None).await;
    let edge = InProcessEdge::start(&urls, edge_config()).await;
    let s = session();
    let mut ws = Ws::connect(edge.addr, &format!("/session/{s}/display")).await;
    let base = ws.next_of("initial_state").await["seq"]
        .as_u64()
        .expect("seq");
    let reader = tokio::spawn(async move {
        expect_in_order(&mut ws, base, 300).await;
        ws
    });
    let auth = format!("Bearer {AUTH_SECRET}");
    for i in 0..300u64 {
        if i == 100 {
            cluster.nodes[0].kill().await;
        }
        // A client retries until acknowledged, with the same key: never twice, never lost.
        let key = format!("{s}-{i}");
        let body = format!(r#"{{"type":"dish_card","displayData":{{"i":{i}}}}}"#);
        let headers = [
            ("Authorization", auth.as_str()),
            ("Idempotency-Key", key.as_str()),
        ];
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let (status, _, _) = send(
                edge.addr,
                "POST",
                &format!("/session/{s}/update"),
                &headers,
                body.clone(),
            )
            .await;
            if status == 200 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "update {i} never accepted (last status {status})"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    reader.await.expect("all 300 in order after losing a node");
    cluster.nodes[0].restart().await.expect("node comes back");
    handler.stop().await;
}

/// A handler (re)started while its streams have no leader — here the cluster has lost two of
/// its three nodes, so nothing has a quorum — waits for them (logging why) instead of exiting
/// with "not provisioned", and works once the nodes are back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_started_while_its_streams_have_no_leader_waits_for_them() {
    let (mut cluster, urls) = replicated_cluster().await;
    let edge = InProcessEdge::start(&urls, edge_config()).await;
    cluster.nodes[1].kill().await;
    cluster.nodes[2].kill().await;
    let handler = InProcessHandler::start(cluster.nodes[0].client_url(), None).await;
    // Longer than a JetStream request's timeout (5 s), after which the handler used to exit.
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    assert!(
        !handler.finished(),
        "the handler exited while its streams had no leader"
    );
    cluster.nodes[1].restart().await.expect("node 2 comes back");
    cluster.nodes[2].restart().await.expect("node 3 comes back");
    let s = session();
    let auth = format!("Bearer {AUTH_SECRET}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Idempotency-Key", "after-the-outage"),
    ];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let (status, _, _) = send(
            edge.addr,
            "POST",
            &format!("/session/{s}/update"),
            &headers,
            r#"{"type":"dish_card","displayData":{"i":1}}"#.to_string(),
        )
        .await;
        if status == 200 {
            break;
        }
        assert!(!handler.finished(), "the handler exited");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the update was never applied (last status {status})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    handler.stop().await;
}

/// Read-your-writes across edges in a 3-node cluster (replicas 3): the two edges talk to
/// different nodes, and a state read after an answered write must not come from a replica that
/// has not caught up with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_an_answered_write_is_seen_by_a_read_through_another_node() {
    let (cluster, urls) = replicated_cluster().await;
    let _handler = InProcessHandler::start(&urls, None).await;
    let edges = [
        InProcessEdge::start(cluster.nodes[0].client_url(), edge_config()).await,
        InProcessEdge::start(cluster.nodes[2].client_url(), edge_config()).await,
    ];
    let s = session();
    let mut stale = Vec::new();
    for i in 0..300usize {
        let (writer, reader) = (edges[i % 2].addr, edges[(i + 1) % 2].addr);
        let text = format!("update {i}");
        let (status, reply) = post(
            writer,
            &format!("/session/{s}/update"),
            Some(AUTH_SECRET),
            &json!({"type": "transcription", "displayData": {"text": text}}),
        )
        .await;
        assert_eq!(status, 200, "{reply}");
        let (_, state) = get(reader, &format!("/session/{s}/state"))
            .await
            .expect("state");
        let newest = state["displayUpdates"]
            .as_array()
            .and_then(|list| list.last())
            .and_then(|u| u["displayData"]["text"].as_str().map(str::to_string));
        if newest.as_deref() != Some(text.as_str()) {
            stale.push(i);
        }
    }
    assert!(stale.is_empty(), "stale reads after writes: {stale:?}");
}
