//! What an operator relies on, checked against real processes: JSON logs that follow one
//! command from the edge through the handler by its id, and a Grafana dashboard
//! (`deploy/grafana/tablewire.json`) whose every metric a real edge and handler export.

mod support;

use serde_json::{Value, json};
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
            .any(|l| l["message"] == "command applied"
                && l["command_id"] == id.as_str()
                && l["outcome"] == "applied"
                && l["key"] == session.as_str()),
        "the handler's log has the id {id}: {handler_lines:?}"
    );
}
