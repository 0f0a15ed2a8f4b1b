//! `tablewire bench events`: C events-socket connections spread over R restaurants (seed 004),
//! events published with `POST /api/events` (service JWTs) as fast as the system accepts them,
//! then at half that rate for latency. Every connection checks its restaurant feed's sequence
//! numbers, so missing and repeated events are counted exactly.

use crate::client::{self, Poster, StopAll, number_after};
use crate::report::{
    CpuMeter, PhaseHistograms, PhaseSamples, latency_line, pipeline_lines, scrape,
};
use crate::system::{JWT_SECRET, Shape};
use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use fastwebsockets::OpCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tablewire_schemas::{Claims, Domain};
use tokio::sync::oneshot;

/// Flags of `tablewire bench events`.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Restaurants.
    #[arg(long, default_value_t = 50)]
    pub restaurants: usize,
    /// Connections in all (spread evenly over the restaurants).
    #[arg(long, default_value_t = 5000)]
    pub connections: usize,
    /// Seconds of each measured phase.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Concurrent HTTP publishers. Each waits for its event to be stored before the next, so
    /// "as fast as allowed" needs many in flight: 64 left the pipeline idle between events.
    #[arg(long, default_value_t = 256)]
    pub posters: usize,
    /// Handler processes.
    #[arg(long, default_value_t = 1)]
    pub handlers: usize,
    #[command(flatten)]
    pub streams: crate::system::StreamArgs,
    /// Events published per second in the latency phase (default: half of the throughput
    /// phase).
    #[arg(long)]
    pub latency_rate: Option<f64>,
}

#[derive(Default)]
struct Seen {
    last_seq: u64,
    received: [u64; 3],
    duplicates: u64,
    missing: u64,
}

struct Shared {
    start: Instant,
    ready: AtomicUsize,
    received: [AtomicU64; 3],
    last_receive_ns: [AtomicU64; 3],
}

fn now_ns(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

fn token(restaurant: &str, role: &str) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = Claims {
        sub: format!("bench-{role}"),
        tenant: Some(restaurant.to_string()),
        role: Some(role.to_string()),
        exp: now + 3600,
        iat: Some(now),
    };
    Ok(tablewire_edge::mint(JWT_SECRET, &claims)?)
}

async fn read_events(
    mut ws: client::Ws2,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) -> (Seen, PhaseSamples) {
    let mut seen = Seen::default();
    let mut samples = PhaseSamples::default();
    loop {
        let frame = tokio::select! {
            biased;
            _ = &mut stop => break,
            frame = ws.read_frame() => match frame {
                Ok(frame) => frame,
                Err(_) => break,
            },
        };
        if frame.opcode != OpCode::Text {
            if frame.opcode == OpCode::Close {
                break;
            }
            continue;
        }
        let payload: &[u8] = &frame.payload;
        if payload.starts_with(br#"{"type":"connected""#) {
            shared.ready.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let (Some(seq), Some(sent), Some(phase)) = (
            number_after(payload, b"\"seq\":"),
            number_after(payload, b"\"t\":"),
            number_after(payload, b"\"p\":"),
        ) else {
            continue;
        };
        let phase = (phase as usize).min(2);
        let now = now_ns(shared.start);
        if seq <= seen.last_seq {
            seen.duplicates += 1;
            continue;
        }
        seen.missing += seq - seen.last_seq - 1;
        seen.last_seq = seq;
        seen.received[phase] += 1;
        shared.received[phase].fetch_add(1, Ordering::Relaxed);
        shared.last_receive_ns[phase].fetch_max(now, Ordering::Relaxed);
        samples.record(phase, sent, now);
    }
    (seen, samples)
}

struct Load {
    addr: std::net::SocketAddr,
    /// Per restaurant: its `Authorization` header value.
    auth: Arc<Vec<String>>,
    accepted: Arc<Vec<AtomicU64>>,
    shared: Arc<Shared>,
    phase: u8,
    until: Instant,
    pace: Option<Duration>,
    posters: usize,
}

async fn post_loop(load: Arc<Load>, offset: usize) -> anyhow::Result<u64> {
    let mut poster = Poster::connect(load.addr).await?;
    let mut i = offset;
    let mut failures = 0;
    let mut next = Instant::now()
        + load.pace.map_or(Duration::ZERO, |p| {
            p.mul_f64(offset as f64 / load.posters.max(1) as f64)
        });
    while Instant::now() < load.until {
        if let Some(pace) = load.pace {
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
            next += pace;
        }
        let r = i % load.auth.len();
        i += 1;
        let body = format!(
            r#"{{"type":"kds:update","data":{{"t":{},"p":{}}}}}"#,
            now_ns(load.shared.start),
            load.phase
        );
        let (status, _) = poster
            .post("/api/events", Some(&load.auth[r]), Bytes::from(body))
            .await?;
        if status == 200 {
            load.accepted[r].fetch_add(1, Ordering::Relaxed);
        } else {
            failures += 1;
        }
    }
    Ok(failures)
}

async fn run_posters(load: Load, posters: usize) -> anyhow::Result<u64> {
    let load = Arc::new(load);
    let tasks: Vec<_> = (0..posters)
        .map(|i| tokio::spawn(post_loop(load.clone(), i)))
        .collect();
    let mut failures = 0;
    for t in tasks {
        failures += t.await??;
    }
    Ok(failures)
}

async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Runs the events benchmark.
pub async fn run(args: EventsArgs) -> anyhow::Result<()> {
    measure(args, None).await.map(|_| ())
}

/// Runs the events benchmark and returns the paced phase's POST → each subscriber latencies; with a floor
/// probe, a floor phase runs on the same nats-server before and after that phase.
pub async fn measure(
    args: EventsArgs,
    floor: Option<&crate::floor::FloorProbe>,
) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    let restaurants = args.restaurants.max(1);
    let per_restaurant = (args.connections / restaurants).max(1);
    println!(
        "events benchmark: {} connections = {restaurants} restaurants x {per_restaurant}, {} s phases, {} publishers, {} handler process(es)",
        restaurants * per_restaurant,
        args.duration,
        args.posters,
        args.handlers
    );
    let system = crate::system::start(&Shape {
        handlers: args.handlers,
        streams: args.streams.clone(),
        domains: vec![Domain::Events],
        database_url: None,
    })
    .await?;
    let addr = system.edge_addr;
    let run_id = std::process::id();
    let names: Vec<String> = (0..restaurants)
        .map(|i| format!("bench-{run_id}-{i}"))
        .collect();
    let auth: Arc<Vec<String>> = Arc::new(
        names
            .iter()
            .map(|r| token(r, "service").map(|t| format!("Bearer {t}")))
            .collect::<anyhow::Result<_>>()?,
    );
    let shared = Arc::new(Shared {
        start: Instant::now(),
        ready: AtomicUsize::new(0),
        received: Default::default(),
        last_receive_ns: Default::default(),
    });
    let mut readers = Vec::new();
    let mut stop_readers = StopAll::default();
    for (r, name) in names.iter().enumerate() {
        let path = format!("/ws?token={}", token(name, "staff")?);
        for _ in 0..per_restaurant {
            let ws = client::websocket(addr, &path).await?;
            let reader = tokio::spawn(read_events(ws, shared.clone(), stop_readers.signal()));
            readers.push((r, reader));
        }
    }
    let total = readers.len();
    wait_until(Duration::from_secs(60), || {
        shared.ready.load(Ordering::Relaxed) >= total
    })
    .await
    .context("connections did not all get `connected`")?;
    println!("  {total} connections subscribed");

    let accepted: Arc<Vec<AtomicU64>> =
        Arc::new((0..restaurants).map(|_| AtomicU64::new(0)).collect());

    // Phase 1: as fast as accepted.
    let metrics_before = (scrape(addr).await, scrape(system.handler_metrics).await);
    let cpu = CpuMeter::start(&system.pids());
    let phase1_start = now_ns(shared.start);
    let load = Load {
        addr,
        auth: auth.clone(),
        accepted: accepted.clone(),
        shared: shared.clone(),
        phase: 1,
        until: Instant::now() + Duration::from_secs(args.duration),
        pace: None,
        posters: args.posters,
    };
    let failures = run_posters(load, args.posters).await?;
    let sent1: u64 = accepted.iter().map(|a| a.load(Ordering::Relaxed)).sum();
    let expected1 = sent1 * per_restaurant as u64;
    let drained = wait_until(Duration::from_secs(30), || {
        shared.received[1].load(Ordering::Relaxed) >= expected1
    })
    .await;
    let cpu_line = cpu.line();
    let elapsed1 = (shared.last_receive_ns[1]
        .load(Ordering::Relaxed)
        .saturating_sub(phase1_start)) as f64
        / 1e9;
    let delivered1 = shared.received[1].load(Ordering::Relaxed);
    let rate1 = delivered1 as f64 / elapsed1.max(1e-9);
    println!(
        "  throughput: {} events published ({:.0}/s), {} delivered in {:.2} s = {:.0} delivered events/s{}{}",
        sent1,
        sent1 as f64 / args.duration as f64,
        delivered1,
        elapsed1,
        rate1,
        if failures > 0 {
            format!(", {failures} publishes refused")
        } else {
            String::new()
        },
        if drained.is_err() {
            " (not all delivered in 30 s)"
        } else {
            ""
        },
    );
    println!("  {cpu_line}");
    let metrics_after = (scrape(addr).await, scrape(system.handler_metrics).await);
    for line in pipeline_lines(
        (&metrics_before.0, &metrics_after.0),
        (&metrics_before.1, &metrics_after.1),
    ) {
        println!("    {line}");
    }
    let metrics_before = metrics_after;

    // Phase 2: latency at half that rate (or the given rate).
    let rate = args
        .latency_rate
        .unwrap_or(rate1 / per_restaurant as f64 / 2.0)
        .max(1.0);
    let posters = args.posters.min(rate.ceil() as usize).max(1);
    let pace = Duration::from_secs_f64(posters as f64 / rate);
    if let Some(floor) = floor {
        floor.measure(system.nats.client_url()).await?;
    }
    let before2: u64 = accepted.iter().map(|a| a.load(Ordering::Relaxed)).sum();
    let load = Load {
        addr,
        auth: auth.clone(),
        accepted: accepted.clone(),
        shared: shared.clone(),
        phase: 2,
        until: Instant::now() + Duration::from_secs(args.duration),
        pace: Some(pace),
        posters,
    };
    let cpu = CpuMeter::start(&system.pids());
    let failures2 = run_posters(load, posters).await?;
    let cpu_line2 = cpu.line();
    let metrics_after = (scrape(addr).await, scrape(system.handler_metrics).await);
    if let Some(floor) = floor {
        floor.measure(system.nats.client_url()).await?;
    }
    let sent2 = accepted
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .sum::<u64>()
        - before2;
    let expected2 = sent2 * per_restaurant as u64;
    let _ = wait_until(Duration::from_secs(30), || {
        shared.received[2].load(Ordering::Relaxed) >= expected2
    })
    .await;

    stop_readers.stop();
    let mut hist = PhaseHistograms::default();
    let (mut missing, mut duplicates, mut short) = (0u64, 0u64, 0u64);
    for (r, reader) in readers {
        let (seen, samples) = reader.await?;
        hist.add(&samples);
        let accepted_here = accepted[r].load(Ordering::Relaxed);
        let got = seen.received.iter().sum::<u64>();
        duplicates += seen.duplicates;
        missing += seen.missing;
        if got + seen.missing < accepted_here {
            short += accepted_here - got - seen.missing;
        }
    }
    println!(
        "  throughput-phase latency: {}",
        latency_line(hist.phase(1))
    );
    println!(
        "  latency at {:.0} events/s published ({:.0} delivered/s): {}{}",
        rate,
        rate * per_restaurant as f64,
        latency_line(hist.phase(2)),
        if failures2 > 0 {
            format!(", {failures2} publishes refused")
        } else {
            String::new()
        },
    );
    println!("  {cpu_line2}");
    for line in pipeline_lines(
        (&metrics_before.0, &metrics_after.0),
        (&metrics_before.1, &metrics_after.1),
    ) {
        println!("    {line}");
    }
    println!("  missing {}, duplicates {}", missing + short, duplicates);
    Ok(hist.phase(2).clone())
}
