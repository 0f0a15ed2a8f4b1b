//! What an operator relies on, checked against real processes: JSON logs that follow one
//! command from the edge through the handler by its id, and a Grafana dashboard
//! (`deploy/grafana/tablewire.json`) whose every metric a real edge and handler export.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use support::*;

/// A `tablewire` child process whose stdout (its log) goes to `log`.
fn spawn_logged(args: &[&str], log: &Path, filter: &str) -> tokio::process::Child {
    let file = std::fs::File::create(log).expect("log file");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tablewire"))
        .args(args)
        .env("TABLEWIRE_LOG", filter)
        .stdout(file)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn tablewire")
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

/// Every line of a JSON log, each parsed (a line that is not JSON fails the test).
fn json_lines(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// With `--log-format json` every log line is a JSON object, and one write's command id (the
/// envelope's id) is found in the edge's log (published, stored) and in the handler's
/// (applied): one grep follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_command_id_follows_a_write_through_edge_and_handler_json_logs() {
    let nats = nats().await;
    let url = nats.client_url().to_string();
    provision(&url, &test_topology()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (edge_log, handler_log) = (dir.path().join("edge.log"), dir.path().join("handler.log"));
    let filter = "info,tablewire::command=debug";
    let _handler = spawn_logged(
        &[
            "handler",
            "--log-format",
            "json",
            "--nats-url",
            &url,
            "--domain",
            "display",
            "--no-records",
        ],
        &handler_log,
        filter,
    );
    let addr = free_addr();
    let listen = addr.to_string();
    let _edge = spawn_logged(
        &[
            "edge",
            "--log-format",
            "json",
            "--nats-url",
            &url,
            "--listen",
            &listen,
            "--auth-secret",
            AUTH_SECRET,
        ],
        &edge_log,
        filter,
    );
    eventually("edge healthy", || async move {
        get(addr, "/healthz").await.ok().map(|(s, _)| s == 200) == Some(true)
    })
    .await;
    let session = format!("s{}", uuid::Uuid::new_v4().simple());
    update(addr, &session, json!({"i": 1})).await;

    let published = json_lines(&edge_log)
        .into_iter()
        .find(|l| l["message"] == "command published" && l["key"] == session.as_str())
        .unwrap_or_else(|| panic!("the edge logged the command it published"));
    let id = published["command_id"]
        .as_str()
        .expect("command_id")
        .to_string();
    assert_eq!(published["domain"], "display");
    let edge_lines: Vec<Value> = json_lines(&edge_log)
        .into_iter()
        .filter(|l| l.to_string().contains(&id))
        .collect();
    assert!(
        edge_lines.iter().any(|l| l["message"] == "command stored"),
        "{edge_lines:?}"
    );
    // The handler logged it before the edge had its answer.
    let handler_lines: Vec<Value> = json_lines(&handler_log)
        .into_iter()
        .filter(|l| l.to_string().contains(&id))
        .collect();
    assert!(
        handler_lines
            .iter()
            .any(|l| l["message"] == "command handled"
                && l["command_id"] == id.as_str()
                && l["outcome"] == "applied"
                && l["key"] == session.as_str()),
        "the handler's log has the id {id}: {handler_lines:?}"
    );
}

/// The metric names a PromQL expression uses (every `tablewire_…` word).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("tablewire_") {
        let word: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + word.len()..];
        names.push(word);
    }
    names
}

/// Whether a `/metrics` text declares the series `name` (a counter's `_total`, a histogram's
/// `_bucket` / `_sum` / `_count` included).
fn declares(text: &str, name: &str) -> bool {
    let typed = |family: &str, kinds: &[&str]| {
        kinds
            .iter()
            .any(|kind| text.contains(&format!("# TYPE {family} {kind}\n")))
    };
    if typed(name, &["gauge", "counter", "histogram"]) {
        return true;
    }
    if let Some(family) = name.strip_suffix("_total") {
        return typed(family, &["counter"]);
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .is_some_and(|family| typed(family, &["histogram"]))
    })
}

/// Every metric the Grafana dashboard and the Prometheus alerts query is exported by a real
/// edge or handler (`--metrics-listen`) once each has done its ordinary work: sockets, writes,
/// a rejected write, a parked command, a failed authentication, a refused connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_query_is_exported() {
    let dashboard: Value = serde_json::from_str(include_str!("../deploy/grafana/tablewire.json"))
        .expect("the dashboard is JSON");
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            queried.extend(metric_names(expr));
        }
    }
    assert!(queried.len() > 20, "the dashboard queries {queried:?}");
    for line in include_str!("../deploy/prometheus/alerts.yml").lines() {
        if let Some(expr) = line.trim().strip_prefix("expr:") {
            queried.extend(metric_names(expr));
        }
    }

    let nats = nats().await;
    let url = nats.client_url().to_string();
    provision(&url, &test_topology()).await;
    let handler_metrics = free_addr();
    let metrics_listen = handler_metrics.to_string();
    let _handler = Process::spawn(&[
        "handler",
        "--nats-url",
        &url,
        "--domain",
        "all",
        "--no-records",
        "--metrics-listen",
        &metrics_listen,
    ]);
    let addr = free_addr();
    let listen = addr.to_string();
    let _edge = Process::spawn(&[
        "edge",
        "--nats-url",
        &url,
        "--listen",
        &listen,
        "--auth-secret",
        AUTH_SECRET,
        "--max-connections-per-ip",
        "3",
    ]);
    eventually("edge healthy", || async move {
        get(addr, "/healthz").await.ok().map(|(s, _)| s == 200) == Some(true)
    })
    .await;

    let session = format!("s{}", uuid::Uuid::new_v4().simple());
    update(addr, &session, json!({"i": 1})).await;
    let init = |tenant: &'static str| {
        let path = format!("/session/{session}/init");
        async move { post(addr, &path, None, &json!({ "tenantId": tenant })).await }
    };
    init("a").await;
    let (status, body) = init("b").await;
    assert_eq!(
        status, 409,
        "a second tenant is refused by the handler: {body}"
    );
    let (status, _) = post(
        addr,
        &format!("/session/{session}/update"),
        Some("wrong"),
        &json!({"type": "x"}),
    )
    .await;
    assert_eq!(status, 401);
    let poisoned = format!("s{}", uuid::Uuid::new_v4().simple());
    async_nats::jetstream::new(client(&url).await)
        .get_key_value("tw_state_display")
        .await
        .expect("bucket")
        .put(format!("_.{poisoned}"), "not a state".into())
        .await
        .expect("put");
    let (status, _) = post(
        addr,
        &format!("/session/{poisoned}/update"),
        Some(AUTH_SECRET),
        &json!({"type": "x", "displayData": {}}),
    )
    .await;
    assert_eq!(status, 422, "parked");
    {
        let mut sockets = Vec::new();
        for _ in 0..3 {
            let mut ws = Ws::connect(addr, &format!("/session/{session}/display")).await;
            ws.next_of("initial_state").await;
            ws.send_json(&json!({"type": "ping"})).await;
            ws.next_of("pong").await;
            sockets.push(ws);
        }
        // Over the limit the edge still answers /healthz and /metrics, and refuses the rest.
        let refused = get(addr, &format!("/session/{session}/state")).await;
        assert!(
            !matches!(refused, Ok((200, _))),
            "a fourth connection from one address is refused: {refused:?}"
        );
        // A frame over --max-message-bytes: closed with 1009, counted by code.
        let mut last = sockets.pop().expect("a socket");
        last.send_text(&"x".repeat(70_000)).await;
        assert_eq!(last.closed().await, Some(1009));
    }

    // Counted as each socket's task ends: read until every name is there, or the time is up.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let (missing, edge_text, handler_text) = loop {
        let edge_text = metrics(addr).await;
        let handler_text = metrics(handler_metrics).await;
        let missing: Vec<&String> = queried
            .iter()
            .filter(|name| !declares(&edge_text, name) && !declares(&handler_text, name))
            .collect();
        if missing.is_empty() || tokio::time::Instant::now() > deadline {
            break (missing, edge_text, handler_text);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        missing.is_empty(),
        "queried but not exported: {missing:?}\n--- edge\n{edge_text}\n--- handler\n{handler_text}"
    );
}
