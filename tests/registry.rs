//! Adding a domain is one module and one registry line: a toy counter domain, written here
//! against the public `Domain` trait alone, runs in the real runtime against a real nats-server
//! through one `Registered::new` line. Its commands are applied and stored, and the background
//! task its start hook starts runs until the handler stops. (A domain's name is still a variant
//! of `tablewire_schemas::Domain`, which names its subjects and streams: the toy borrows voice's.)

mod support;

use async_nats::jetstream;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use support::*;
use tablewire_handlers::metrics::Metrics;
use tablewire_handlers::runtime::{self, Registered};
use tablewire_nats::{resource, subject};
use tablewire_schemas::Domain as DomainName;
use tokio::sync::watch;

/// The toy domain: its whole module.
mod toy {
    use super::*;
    use serde::{Deserialize, Serialize};
    use tablewire_handlers::domain::{Background, Context, Domain, Effects, Rejection};
    use tablewire_handlers::error::RuntimeError;
    use tablewire_schemas::ErrorCode;

    /// Adds numbers up per key; its start hook runs a task that notes it is running.
    pub struct Counter {
        /// Set while the background task runs.
        pub running: Arc<AtomicBool>,
    }

    #[derive(Clone, Default, Serialize, Deserialize)]
    pub struct Total {
        pub total: i64,
    }

    #[derive(Deserialize)]
    pub struct Add {
        pub add: i64,
    }

    impl Domain for Counter {
        const NAME: DomainName = DomainName::Voice;
        type State = Total;
        type Command = Add;

        fn new_state(&self, _ctx: &Context<'_>) -> Total {
            Total::default()
        }

        fn apply(
            &self,
            state: &mut Total,
            command: Add,
            _ctx: &Context<'_>,
            effects: &mut Effects,
        ) -> Result<(), Rejection> {
            if command.add < 0 {
                return Err(Rejection::from(ErrorCode::ValidationError));
            }
            state.total += command.add;
            effects.event(json!({"type": "total", "total": state.total}));
            Ok(())
        }

        async fn start(
            &self,
            background: Background,
        ) -> Result<Vec<tokio::task::JoinHandle<()>>, RuntimeError> {
            let running = self.running.clone();
            let mut shutdown = background.shutdown;
            Ok(vec![tokio::spawn(async move {
                running.store(true, Ordering::SeqCst);
                while !*shutdown.borrow() {
                    if shutdown.changed().await.is_err() {
                        break;
                    }
                }
                running.store(false, Ordering::SeqCst);
            })])
        }
    }
}

fn envelope(tenant: &str, key: &str, id: &str, add: i64) -> Vec<u8> {
    let envelope = json!({"tenant": tenant, "domain": "voice", "key": key, "id": id,
        "origin": {"edge": ""}, "at": 1_700_000_000_000i64, "command": {"add": add}});
    serde_json::to_vec(&envelope).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toy_domain_runs_from_one_registry_line() {
    let nats = nats().await;
    let url = nats.client_url().to_string();
    provision(&url, &test_topology()).await;
    let running = Arc::new(AtomicBool::new(false));
    let domains = vec![Registered::new(toy::Counter {
        running: running.clone(),
    })];
    let settings = runtime::Settings {
        worker_id: None,
        batch_size: 64,
        key_concurrency: 8,
    };
    let metrics = Metrics::new(&mut prometheus_client::registry::Registry::default());
    let (stop, shutdown) = watch::channel(false);
    let handler = tokio::spawn(runtime::run(
        client(&url).await,
        settings,
        domains,
        metrics,
        shutdown,
    ));

    let js = jetstream::new(client(&url).await);
    for (id, add) in [("m1", 2), ("m2", 3), ("m2", 3), ("m3", -1), ("m4", 5)] {
        // "m2" twice: the stream keeps one; "m3" is refused by the domain.
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
        js.publish_with_headers(
            subject::input(DomainName::Voice, "t1", "k1"),
            headers,
            envelope("t1", "k1", id, add).into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
    }
    let kv = js
        .get_key_value(resource::state_bucket(DomainName::Voice))
        .await
        .expect("state bucket");
    let state_key = resource::state_key("t1", "k1");
    eventually("the toy's commands applied", || {
        let kv = kv.clone();
        let state_key = state_key.clone();
        async move {
            let Ok(Some(value)) = kv.get(&state_key).await else {
                return false;
            };
            let stored: Value = serde_json::from_slice(&value).unwrap_or_default();
            stored["state"]["total"] == 10
        }
    })
    .await;
    eventually("the start hook's task runs beside the domain", || {
        let running = running.clone();
        async move { running.load(Ordering::SeqCst) }
    })
    .await;

    let _ = stop.send(true);
    handler
        .await
        .expect("joined")
        .expect("runtime ends cleanly");
    assert!(
        !running.load(Ordering::SeqCst),
        "the runtime waited for the start hook's task to end"
    );
}
