//! An experiment kept as a test (ignored: minutes long): does a KV compare-and-set in an R3 bucket
//! ever accept two writes based on the same revision, or lose an acknowledged one, when the
//! bucket's leader is killed? Writers read by direct get (any replica answers, as the handlers'
//! reads do) and increment one counter by compare-and-set while the leader is killed and brought
//! back, `CAS_ROUNDS` times (4); every accepted value must be unique. `CAS_MARKERS=1` adds limit
//! markers and per-message TTL writes to other keys, as the pos bucket has. Run:
//! `cargo test --test cas_failover -- --ignored --nocapture`.

mod support;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn leader(js: &jetstream::Context, stream: &str) -> Option<String> {
    let mut s = js.get_stream(stream).await.ok()?;
    let info = s.info().await.ok()?;
    info.cluster.as_ref()?.leader.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "an experiment of minutes: run with --ignored"]
async fn cas_increments_stay_unique_across_leader_kills() {
    let mut cluster = tablewire_nats::Cluster::start(3).await.expect("cluster");
    let urls = cluster.client_urls();
    let js = jetstream::new(support::client(&urls).await);
    js.create_key_value(kv::Config {
        bucket: "cas".into(),
        history: 1,
        num_replicas: 3,
        limit_markers: std::env::var("CAS_MARKERS")
            .ok()
            .map(|_| Duration::from_secs(1)),
        ..Default::default()
    })
    .await
    .expect("bucket");
    let accepted: Arc<Mutex<Vec<(u64, u64, usize)>>> = Arc::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut writers = Vec::new();
    for w in 0..6 {
        let js = jetstream::new(support::client(&urls).await);
        let accepted = accepted.clone();
        let stopped = stopped.clone();
        writers.push(tokio::spawn(async move {
            let Ok(store) = js.get_key_value("cas").await else {
                return;
            };
            while !*stopped.borrow() {
                let read = tokio::time::timeout(Duration::from_secs(2), store.entry("k")).await;
                let (count, revision) = match read {
                    Ok(Ok(Some(e))) => (
                        std::str::from_utf8(&e.value)
                            .ok()
                            .and_then(|s| s.parse::<u64>().ok())
                            .unwrap_or(0),
                        e.revision,
                    ),
                    Ok(Ok(None)) => (0, 0),
                    _ => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let next = count + 1;
                let write = tokio::time::timeout(
                    Duration::from_secs(3),
                    store.update("k", Bytes::from(next.to_string()), revision),
                )
                .await;
                if let Ok(Ok(rev)) = write {
                    accepted.lock().expect("lock").push((next, rev, w));
                }
            }
        }));
    }
    let rounds: usize = std::env::var("CAS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(4);
    if std::env::var("CAS_MARKERS").is_ok() {
        for w in 0..3 {
            let js = jetstream::new(support::client(&urls).await);
            let stopped = stopped.clone();
            writers.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !*stopped.borrow() {
                    n += 1;
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert(async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, "0");
                    headers.insert(async_nats::header::NATS_MESSAGE_TTL, "2");
                    if let Ok(ack) = js
                        .publish_with_headers(
                            format!("$KV.cas.claim{w}-{n}"),
                            headers,
                            Bytes::from("c"),
                        )
                        .await
                    {
                        let _ = tokio::time::timeout(Duration::from_secs(3), ack).await;
                    }
                }
            }));
        }
    }
    for round in 0..rounds {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Some(name) = leader(&js, "KV_cas").await else {
            eprintln!("round {round}: no leader");
            continue;
        };
        let i = cluster.node_index(&name).expect("node");
        eprintln!("round {round}: killing {name}");
        cluster.nodes[i].kill().await;
        tokio::time::sleep(Duration::from_secs(9)).await;
        cluster.nodes[i].restart().await.expect("restart");
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    stop.send(true).ok();
    for w in writers {
        let _ = w.await;
    }
    let accepted = accepted.lock().expect("lock").clone();
    let mut counts: Vec<u64> = accepted.iter().map(|a| a.0).collect();
    counts.sort();
    let total = counts.len();
    counts.dedup();
    let mut by_count = std::collections::BTreeMap::<u64, Vec<(u64, usize)>>::new();
    for (c, r, w) in &accepted {
        by_count.entry(*c).or_default().push((*r, *w));
    }
    let dups: Vec<_> = by_count.iter().filter(|(_, v)| v.len() > 1).collect();
    eprintln!(
        "accepted {total}, distinct {}, duplicates {dups:?}",
        counts.len()
    );
    assert!(dups.is_empty(), "two CAS writes on the same base: {dups:?}");
}
