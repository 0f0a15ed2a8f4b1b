//! `tablewire status` and `tablewire inspect` against a real system (nats-server, edge,
//! handler processes): a parked command, a lagging partition and live edges are reported as
//! they are.

mod support;

use serde_json::{Value, json};
use support::*;
use tablewire_schemas::{Domain, Origin};

fn session() -> String {
    format!("s{}", uuid::Uuid::new_v4().simple())
}

/// Runs the `tablewire` binary to completion; its stdout as JSON.
async fn tablewire_json(args: &[&str]) -> Value {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tablewire"))
        .args(args)
        .env("TABLEWIRE_LOG", "warn")
        .output()
        .await
        .expect("run tablewire");
    assert!(
        out.status.success(),
        "tablewire {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "tablewire {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

async fn status(url: &str) -> Value {
    tablewire_json(&["status", "--json", "--nats-url", url]).await
}

fn domain<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["domains"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["domain"] == name))
        .unwrap_or_else(|| panic!("no domain {name} in {report}"))
}

/// A command whose key's state no longer reads is parked; `status` counts it under its domain
/// and reason and shows the last one, `inspect` shows the unreadable value as it is and a
/// healthy key's state, applied sequence and outbox; the edge is listed with its socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_command_and_a_live_edge_are_reported() {
    let nats = nats().await;
    let url = nats.client_url().to_string();
    provision(&url, &test_topology()).await;
    let _worker = handler_process(&url);
    let edge = InProcessEdge::start(&url, edge_config()).await;

    let healthy = session();
    update(edge.addr, &healthy, json!({"i": 0})).await;
    let poisoned = session();
    park_an_update_to_an_unreadable_display(&url, edge.addr, &poisoned).await;
    let display_socket = Ws::connect(edge.addr, &format!("/session/{healthy}/display")).await;

    eventually("status lists the edge with its display socket", || {
        let url = url.clone();
        async move {
            let report = status(&url).await;
            report["edges"].as_array().is_some_and(|edges| {
                edges
                    .iter()
                    .any(|e| e["sockets"]["display"] == 1 && e["total_sockets"] == 1)
            })
        }
    })
    .await;
    let report = status(&url).await;
    let display = domain(&report, "display");
    assert_eq!(display["parked"]["total"], 1, "{display}");
    assert_eq!(display["parked"]["by_reason"]["state_unreadable"], 1);
    assert_eq!(display["parked"]["last"]["reason"], "state_unreadable");
    assert!(display["parked"]["last"]["input_seq"].as_u64().is_some());
    assert_eq!(domain(&report, "pos")["parked"]["total"], 0);
    assert_eq!(report["parked"]["messages"], 1);
    assert_eq!(
        report["problems"],
        json!([]),
        "everything provisioned reads"
    );
    assert!(
        report["buckets"].as_array().is_some_and(|bs| bs
            .iter()
            .any(|b| b["bucket"] == "tw_edges" && b["values"] == 1)),
        "{report}"
    );
    assert!(
        display["buckets"][0]["values"].as_u64() >= Some(2),
        "both sessions' states are in the bucket: {display}"
    );
    assert_eq!(
        report["edges"][0]["edge"].as_str(),
        Some(edge.id.as_str()),
        "{report}"
    );

    let stuck = tablewire_json(&["inspect", "--nats-url", &url, "display", &poisoned]).await;
    assert_eq!(stuck["unreadable"], "not a state", "{stuck}");
    assert_eq!(stuck["applied"], Value::Null);
    let fine = tablewire_json(&["inspect", "--nats-url", &url, "display", &healthy]).await;
    assert_eq!(fine["seq"], 1, "{fine}");
    assert!(fine["applied"].as_u64() > Some(0), "{fine}");
    assert_eq!(fine["state"]["displayUpdates"][0]["displayData"]["i"], 0);
    assert_eq!(fine["outbox"]["events"][0]["seq"], 1, "{fine}");
    assert_eq!(fine["waiting"], 0, "{fine}");
    // A drained edge takes itself off the list at once, not when its entry expires.
    drop(display_socket);
    edge.drain().await;
    assert_eq!(status(&url).await["edges"], json!([]));
}

/// With no worker running, commands wait: `status` reports them pending on their partitions,
/// with no holder and the age of the oldest, and `inspect` counts the key's waiting commands.
/// Once a worker starts, it holds every partition and the backlog is gone; once it is killed,
/// no partition has a holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_domain_is_reported_as_it_is() {
    let nats = nats().await;
    let url = nats.client_url().to_string();
    provision(&url, &test_topology()).await;
    let mut registry = prometheus_client::registry::Registry::default();
    let publisher = tablewire_edge::publish::Publisher::new(
        client(&url).await,
        tablewire_edge::metrics::Metrics::new(&mut registry),
    );
    let key = session();
    for i in 0..5 {
        publisher
            .publish(tablewire_edge::publish::Command {
                domain: Domain::Display,
                tenant: "_",
                key: &key,
                client_id: None,
                origin: Origin {
                    edge: "test".into(),
                    conn: None,
                    request: None,
                },
                claims: None,
                command: &json!({"type": "update", "update": {"type": "dish_card", "displayData": {"i": i}}}),
            })
            .await
            .expect("stored");
    }

    let report = status(&url).await;
    let display = domain(&report, "display");
    assert_eq!(display["pending"], 5, "{display}");
    assert_eq!(display["unacknowledged"], 0, "{display}");
    assert!(
        display["oldest_unacknowledged_secs"].as_f64().is_some(),
        "{display}"
    );
    let partitions = display["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 4);
    let lagging: Vec<&Value> = partitions.iter().filter(|p| p["pending"] == 5).collect();
    assert_eq!(lagging.len(), 1, "one key, one partition: {display}");
    assert!(lagging[0]["oldest_unacknowledged_seq"].as_u64().is_some());
    assert!(
        partitions.iter().all(|p| p["holder"].is_null()),
        "no worker, no holder: {display}"
    );
    assert_eq!(display["workers"], json!([]));
    let waiting = tablewire_json(&["inspect", "--nats-url", &url, "display", &key]).await;
    assert_eq!(waiting["waiting"], 5, "{waiting}");
    assert_eq!(waiting["revision"], Value::Null, "never applied: {waiting}");

    let mut worker = handler_process(&url);
    eventually(
        "the worker holds every partition and the backlog is gone",
        || {
            let url = url.clone();
            async move {
                let report = status(&url).await;
                let d = domain(&report, "display");
                d["pending"] == 0
                    && d["unacknowledged"] == 0
                    && d["partitions"]
                        .as_array()
                        .is_some_and(|ps| ps.iter().all(|p| p["holder"].is_string()))
            }
        },
    )
    .await;
    let report = status(&url).await;
    let display = domain(&report, "display");
    assert_eq!(display["workers"][0]["alive"], true, "{display}");
    assert_eq!(display["oldest_unacknowledged_secs"], Value::Null);
    let applied = tablewire_json(&["inspect", "--nats-url", &url, "display", &key]).await;
    assert_eq!(applied["seq"], 5, "{applied}");
    assert_eq!(applied["waiting"], 0, "{applied}");

    worker.kill().await;
    eventually("a killed worker holds no partition", || {
        let url = url.clone();
        async move {
            let report = status(&url).await;
            domain(&report, "display")["partitions"]
                .as_array()
                .is_some_and(|ps| ps.iter().all(|p| p["holder"].is_null()))
        }
    })
    .await;
}
