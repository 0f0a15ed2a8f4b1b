//! `tablewire bench floor`: each domain's latency at a fixed rate as a multiple of the bare path
//! the runtime builds on, measured on the same nats-server in the same run. Called by `lib.rs`;
//! the domain benchmarks call [`FloorProbe::measure`] before and after their paced phase.
//!
//! The floor is minimal async-nats code: JetStream publish (acknowledged) → pull consumer →
//! KV compare-and-set → core NATS publish → subscriber, with the input stream, consumer and KV
//! bucket configured as `tablewire_nats::provision` configures the runtime's (file storage,
//! interest retention, explicit acks, the same replicas).

use crate::report::latency_histogram;
use anyhow::Context;
use async_nats::jetstream::{self, consumer, kv, stream};
use clap::{Args, Parser};
use futures::StreamExt;
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Flags of `tablewire bench floor`.
#[derive(Debug, Clone, Args)]
pub struct FloorArgs {
    /// Commands per second, the same for the floor and every domain.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Seconds of each paced phase (each domain's, and each floor phase around it).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Domains to measure, comma separated (collab, pos, devices, events, display).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "collab,pos,devices,events,display"
    )]
    pub domains: Vec<String>,
    /// Bytes of the value the floor writes to KV (its commands and deliveries stay small): 0
    /// writes the command itself (~170 bytes). A fairness check for domains whose state is
    /// large, e.g. `--state-bytes 27000` for a POS book holding 200 active orders.
    #[arg(long, default_value_t = 0)]
    pub state_bytes: usize,
}

/// Keys the floor's commands are spread over (subjects `floor.in.<k>`, KV keys `k<k>`).
const FLOOR_KEYS: u64 = 16;
const FLOOR_STREAM: &str = "FLOOR_IN";
const FLOOR_CONSUMER: &str = "floor";
const FLOOR_BUCKET: &str = "floor_state";
/// About the size of a small command (a collab change, a scan).
const FLOOR_PADDING: usize = 160;

/// Floor phases at one rate, run by a domain benchmark on its own nats-server; the latencies of
/// every phase are merged.
pub struct FloorProbe {
    rate: f64,
    duration: Duration,
    state_bytes: usize,
    latencies: Mutex<Histogram<u64>>,
    sent: Mutex<(u64, u64)>,
}

impl FloorProbe {
    /// A probe pacing `rate` commands per second for `duration` per phase, writing
    /// `state_bytes` to KV per command (0: the command itself).
    pub fn new(rate: f64, duration: Duration, state_bytes: usize) -> FloorProbe {
        FloorProbe {
            rate: rate.max(1.0),
            duration,
            state_bytes,
            latencies: Mutex::new(latency_histogram()),
            sent: Mutex::new((0, 0)),
        }
    }

    /// Runs one floor phase against the nats-server at `nats_url`.
    pub async fn measure(&self, nats_url: &str) -> anyhow::Result<()> {
        let phase = floor_phase(nats_url, self.rate, self.duration, self.state_bytes).await?;
        if let Ok(mut all) = self.latencies.lock() {
            let _ = all.add(&phase.latencies);
        }
        if let Ok(mut sent) = self.sent.lock() {
            sent.0 += phase.sent;
            sent.1 += phase.latencies.len();
        }
        Ok(())
    }

    /// Every phase's latencies, merged.
    pub fn latencies(&self) -> Histogram<u64> {
        self.latencies
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| latency_histogram())
    }

    /// Commands published and delivered over every phase.
    pub fn counts(&self) -> (u64, u64) {
        self.sent.lock().map(|s| *s).unwrap_or((0, 0))
    }
}

struct FloorPhase {
    sent: u64,
    latencies: Histogram<u64>,
}

/// Declares the floor's stream, consumer and bucket like the runtime's input stream, partition
/// consumer and state bucket (see `tablewire_nats::provision`).
async fn declare(js: &jetstream::Context) -> anyhow::Result<(consumer::PullConsumer, kv::Store)> {
    let topology = tablewire_nats::Topology::default();
    let stream = js
        .get_or_create_stream(stream::Config {
            name: FLOOR_STREAM.to_string(),
            subjects: vec!["floor.in.*".to_string()],
            retention: stream::RetentionPolicy::Interest,
            discard: stream::DiscardPolicy::New,
            max_bytes: topology.max_backlog_bytes,
            storage: stream::StorageType::File,
            num_replicas: topology.replicas,
            duplicate_window: topology.duplicate_window,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .context("creating the floor stream")?;
    let consumer = stream
        .get_or_create_consumer(
            FLOOR_CONSUMER,
            consumer::pull::Config {
                durable_name: Some(FLOOR_CONSUMER.to_string()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: topology.ack_wait,
                max_deliver: -1,
                max_ack_pending: 10_000,
                num_replicas: topology.replicas,
                ..Default::default()
            },
        )
        .await
        .context("creating the floor consumer")?;
    let store = js
        .create_key_value(kv::Config {
            bucket: FLOOR_BUCKET.to_string(),
            history: 1,
            num_replicas: topology.replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await;
    let store = match store {
        Ok(store) => store,
        Err(_) => js
            .get_key_value(FLOOR_BUCKET)
            .await
            .context("opening the floor bucket")?,
    };
    Ok((consumer, store))
}

/// The worker side: pull, compare-and-set the key's state (the command, or `state_bytes` of
/// it repeated), publish the result, acknowledge.
async fn apply_loop(
    consumer: consumer::PullConsumer,
    store: kv::Store,
    nc: async_nats::Client,
    state_bytes: usize,
) -> anyhow::Result<()> {
    let mut revisions: HashMap<String, u64> = HashMap::new();
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| anyhow::anyhow!("floor consumer: {e}"))?;
        let key = message
            .subject
            .as_str()
            .rsplit('.')
            .next()
            .unwrap_or("0")
            .to_string();
        let kv_key = format!("k{key}");
        let last = match revisions.get(&kv_key) {
            Some(&revision) => revision,
            None => store
                .entry(&kv_key)
                .await
                .ok()
                .flatten()
                .map_or(0, |e| e.revision),
        };
        let state = if state_bytes == 0 {
            message.payload.clone()
        } else {
            message
                .payload
                .iter()
                .copied()
                .cycle()
                .take(state_bytes)
                .collect()
        };
        let revision = store
            .update(&kv_key, state, last)
            .await
            .map_err(|e| anyhow::anyhow!("floor compare-and-set: {e}"))?;
        revisions.insert(kv_key, revision);
        nc.publish(format!("floor.out.{key}"), message.payload.clone())
            .await?;
        message
            .ack()
            .await
            .map_err(|e| anyhow::anyhow!("floor ack: {e}"))?;
    }
    Ok(())
}

/// One paced floor phase: `rate` commands per second for `duration`, each timed from before its
/// JetStream publish to its arrival at the subscriber.
async fn floor_phase(
    nats_url: &str,
    rate: f64,
    duration: Duration,
    state_bytes: usize,
) -> anyhow::Result<FloorPhase> {
    // Two connections, as in the runtime: the edge's (publish, subscribe) and the handler's.
    let edge = tablewire_nats::connect(nats_url, "tablewire-bench-floor-edge").await?;
    let worker = tablewire_nats::connect(nats_url, "tablewire-bench-floor-worker").await?;
    let edge_js = jetstream::new(edge.clone());
    let (consumer, store) = declare(&jetstream::new(worker.clone())).await?;
    let mut deliveries = edge.subscribe("floor.out.*").await?;
    edge.flush().await?;
    let applier = tokio::spawn(apply_loop(consumer, store, worker.clone(), state_bytes));

    let start = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));
    let counted = delivered.clone();
    let collector = tokio::spawn(async move {
        let mut latencies = latency_histogram();
        while let Some(message) = deliveries.next().await {
            let now = start.elapsed().as_nanos() as u64;
            let sent = crate::client::number_after(&message.payload, b"t=");
            if let Some(sent) = sent {
                let _ = latencies.record((now.saturating_sub(sent) / 1000).max(1));
                counted.fetch_add(1, Ordering::Relaxed);
            }
        }
        latencies
    });

    let pace = Duration::from_secs_f64(1.0 / rate);
    let until = Instant::now() + duration;
    let mut next = Instant::now();
    let mut sent = 0u64;
    let padding = "x".repeat(FLOOR_PADDING);
    while Instant::now() < until {
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        next += pace;
        let key = sent % FLOOR_KEYS;
        let payload = format!("t={} {padding}", start.elapsed().as_nanos());
        edge_js
            .publish(format!("floor.in.{key}"), payload.into())
            .await?
            .await
            .map_err(|e| anyhow::anyhow!("floor publish: {e}"))?;
        sent += 1;
    }
    // Let the last commands arrive (a busy machine may take seconds), then close the
    // subscription and collect.
    let deadline = Instant::now() + Duration::from_secs(30);
    while delivered.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    applier.abort();
    let _ = edge.drain().await;
    let _ = worker.drain().await;
    let latencies = tokio::time::timeout(Duration::from_secs(10), collector)
        .await
        .context("the floor's subscriber did not finish")??;
    Ok(FloorPhase { sent, latencies })
}

/// One row of the table: a domain's latency at the rate against the floor's around it.
struct Row {
    domain: String,
    what: &'static str,
    domain_latency: Histogram<u64>,
    floor: Histogram<u64>,
    floor_counts: (u64, u64),
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn ratio(domain: f64, floor: f64) -> f64 {
    if floor > 0.0 { domain / floor } else { 0.0 }
}

/// Parses a domain benchmark's flags from arguments, keeping its other defaults.
fn domain_args<A: Args>(args: &[String]) -> anyhow::Result<A> {
    #[derive(Parser)]
    struct Wrapper<A: Args> {
        #[command(flatten)]
        inner: A,
    }
    let argv = std::iter::once("floor".to_string()).chain(args.iter().cloned());
    Ok(Wrapper::<A>::try_parse_from(argv)?.inner)
}

/// Runs the floor benchmark.
pub async fn run(args: FloorArgs) -> anyhow::Result<()> {
    let rate = args.rate.max(1.0);
    let duration = Duration::from_secs(args.duration.max(1));
    println!(
        "floor benchmark: {rate:.0} commands/s, {} s phases (floor, domain, floor on each domain's nats-server)",
        duration.as_secs()
    );
    let d = args.duration.max(1).to_string();
    let r = format!("{rate}");
    let mut rows = Vec::new();
    for domain in &args.domains {
        let probe = FloorProbe::new(rate, duration, args.state_bytes);
        let (what, latency) = match domain.as_str() {
            "collab" => {
                let flags = ["--rooms", "20", "--participants", "2", "--duration", &d];
                let mut flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
                flags.extend(["--latency-rate".to_string(), r.clone()]);
                let a = domain_args::<crate::collab::CollabArgs>(&flags)?;
                (
                    "change -> each participant",
                    crate::collab::measure(a, Some(&probe)).await?,
                )
            }
            "pos" => {
                let flags = ["--tenants", "10", "--duration", &d, "--latency-rate", &r];
                let flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
                let a = domain_args::<crate::pos::PosArgs>(&flags)?;
                (
                    "submit -> order_created",
                    crate::pos::measure(a, Some(&probe)).await?,
                )
            }
            "devices" => {
                // 200 readers at rate/200 scans/s each.
                let per_device = format!("{}", rate / 200.0);
                let flags = ["--devices", "200", "--rate", &per_device, "--duration", &d];
                let flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
                let a = domain_args::<crate::devices::DevicesArgs>(&flags)?;
                (
                    "scan -> reply",
                    crate::devices::measure(a, Some(&probe)).await?,
                )
            }
            "events" => {
                let flags = [
                    "--restaurants",
                    "10",
                    "--connections",
                    "20",
                    "--duration",
                    &d,
                    "--latency-rate",
                    &r,
                ];
                let flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
                let a = domain_args::<crate::events::EventsArgs>(&flags)?;
                (
                    "POST -> each subscriber",
                    crate::events::measure(a, Some(&probe)).await?,
                )
            }
            "display" => {
                let flags = [
                    "--sessions",
                    "10",
                    "--displays",
                    "2",
                    "--idle",
                    "0",
                    "--duration",
                    &d,
                    "--latency-rate",
                    &r,
                ];
                let flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
                let a = domain_args::<crate::display::DisplayArgs>(&flags)?;
                (
                    "POST -> each display",
                    crate::display::measure(a, Some(&probe)).await?,
                )
            }
            other => {
                anyhow::bail!("unknown domain {other:?} (collab, pos, devices, events, display)")
            }
        };
        rows.push(Row {
            domain: domain.clone(),
            what,
            domain_latency: latency,
            floor: probe.latencies(),
            floor_counts: probe.counts(),
        });
    }
    print_table(rate, args.state_bytes, &rows);
    Ok(())
}

fn print_table(rate: f64, state_bytes: usize, rows: &[Row]) {
    println!();
    let state = match state_bytes {
        0 => String::new(),
        n => format!(" ({n}-byte KV values)"),
    };
    println!(
        "floor at {rate:.0}/s: JetStream publish -> pull -> KV CAS{state} -> core publish -> subscriber"
    );
    println!(
        "| domain | measured | p50 ms | p99 ms | floor p50 ms | floor p99 ms | p50 / floor | p99 / floor | samples |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut json = Vec::new();
    for row in rows {
        let (p50, p99) = (ms(&row.domain_latency, 0.5), ms(&row.domain_latency, 0.99));
        let (f50, f99) = (ms(&row.floor, 0.5), ms(&row.floor, 0.99));
        println!(
            "| {} | {} | {p50:.2} | {p99:.2} | {f50:.2} | {f99:.2} | {:.2} | {:.2} | {} |",
            row.domain,
            row.what,
            ratio(p50, f50),
            ratio(p99, f99),
            row.domain_latency.len()
        );
        json.push(serde_json::json!({
            "domain": row.domain,
            "p50_ms": p50,
            "p99_ms": p99,
            "samples": row.domain_latency.len(),
            "floor_p50_ms": f50,
            "floor_p99_ms": f99,
            "floor_sent": row.floor_counts.0,
            "floor_delivered": row.floor_counts.1,
            "p50_ratio": ratio(p50, f50),
            "p99_ratio": ratio(p99, f99),
        }));
    }
    let line = serde_json::json!({
        "bench": "floor",
        "rate": rate,
        "state_bytes": state_bytes,
        "domains": json,
    });
    println!("{line}");
}
