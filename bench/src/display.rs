//! `tablewire bench display`: S sessions × C displays; updates posted over HTTP as fast as the
//! system accepts them, then at half that rate for latency; every display checks the per-session
//! sequence numbers, so missing and repeated updates are counted exactly; then N idle displays
//! measure the edge's memory per connection.

use crate::client::{self, Poster, StopAll, number_after};
use crate::report::{
    CpuMeter, PhaseHistograms, PhaseSamples, latency_line, pipeline_lines, scrape,
};
use crate::system::{self, AUTH_SECRET, Shape, System};
use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use fastwebsockets::OpCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tablewire_schemas::Domain;
use tokio::sync::oneshot;

/// Flags of `tablewire bench display`.
#[derive(Debug, Clone, Args)]
pub struct DisplayArgs {
    /// Sessions.
    #[arg(long, default_value_t = 10)]
    pub sessions: usize,
    /// Displays per session.
    #[arg(long, default_value_t = 100)]
    pub displays: usize,
    /// Seconds of each measured phase.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Concurrent HTTP posters.
    #[arg(long, default_value_t = 64)]
    pub posters: usize,
    /// Handler processes.
    #[arg(long, default_value_t = 1)]
    pub handlers: usize,
    #[command(flatten)]
    pub streams: crate::system::StreamArgs,
    /// Updates per second for the latency phase (default: half of the throughput phase).
    #[arg(long)]
    pub latency_rate: Option<f64>,
    /// Idle displays for the memory measurement (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    pub idle: usize,
}

/// What one display saw.
#[derive(Default)]
struct Seen {
    base_seq: u64,
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

async fn read_display(
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
        if payload.starts_with(br#"{"type":"initial_state""#) {
            let seq = number_after(payload, b"\"seq\":").unwrap_or(0);
            seen.base_seq = seq;
            seen.last_seq = seq;
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

/// One phase of posting: where, to which sessions, how fast, until when.
struct Load {
    addr: std::net::SocketAddr,
    sessions: Arc<Vec<String>>,
    accepted: Arc<Vec<AtomicU64>>,
    shared: Arc<Shared>,
    phase: u8,
    until: Instant,
    /// Time between posts of one poster; none: as fast as answered.
    pace: Option<Duration>,
    /// How many posters share the pace (their first posts are spread over one interval).
    posters: usize,
}

async fn post_loop(load: Arc<Load>, offset: usize) -> anyhow::Result<u64> {
    let mut poster = Poster::connect(load.addr).await?;
    let auth = format!("Bearer {AUTH_SECRET}");
    let mut i = offset;
    let mut failures = 0;
    // Spread the posters over one interval, so that paced load arrives evenly, not in bursts.
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
        let s = i % load.sessions.len();
        i += 1;
        let body = format!(
            r#"{{"type":"bench","displayData":{{"t":{},"p":{}}}}}"#,
            now_ns(load.shared.start),
            load.phase
        );
        let path = format!("/session/{}/update", load.sessions[s]);
        let (status, _) = poster.post(&path, Some(&auth), Bytes::from(body)).await?;
        if status == 200 {
            load.accepted[s].fetch_add(1, Ordering::Relaxed);
        } else {
            failures += 1;
        }
    }
    Ok(failures)
}

/// Runs the display benchmark.
pub async fn run(args: DisplayArgs) -> anyhow::Result<()> {
    measure(args, None).await.map(|_| ())
}

/// Runs the display benchmark and returns the paced phase's POST → each display latencies; with a floor
/// probe, a floor phase runs on the same nats-server before and after that phase.
pub async fn measure(
    args: DisplayArgs,
    floor: Option<&crate::floor::FloorProbe>,
) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    println!(
        "display benchmark: {} sessions x {} displays, {} s phases, {} posters, {} handler process(es)",
        args.sessions, args.displays, args.duration, args.posters, args.handlers
    );
    let system = crate::system::start(&Shape {
        handlers: args.handlers,
        streams: args.streams.clone(),
        domains: vec![Domain::Display],
        database_url: None,
    })
    .await?;
    let addr = system.edge_addr;
    let run_id = std::process::id();
    let sessions: Arc<Vec<String>> = Arc::new(
        (0..args.sessions)
            .map(|i| format!("bench-{run_id}-{i}"))
            .collect(),
    );
    let shared = Arc::new(Shared {
        start: Instant::now(),
        ready: AtomicUsize::new(0),
        received: Default::default(),
        last_receive_ns: Default::default(),
    });

    let mut readers = Vec::new();
    let mut stop_readers = StopAll::default();
    for session in sessions.iter() {
        for _ in 0..args.displays {
            let ws = client::websocket(addr, &format!("/session/{session}/display")).await?;
            let reader = read_display(ws, shared.clone(), stop_readers.signal());
            readers.push((session.clone(), tokio::spawn(reader)));
        }
    }
    let total_displays = sessions.len() * args.displays;
    wait_until(Duration::from_secs(30), || {
        shared.ready.load(Ordering::Relaxed) >= total_displays
    })
    .await
    .context("displays did not all get initial_state")?;
    println!("  {total_displays} displays connected");

    let accepted: Arc<Vec<AtomicU64>> =
        Arc::new((0..sessions.len()).map(|_| AtomicU64::new(0)).collect());

    // Phase 1: as fast as accepted.
    let metrics_before = (scrape(addr).await, scrape(system.handler_metrics).await);
    let cpu = CpuMeter::start(&system.pids());
    let phase1_start = now_ns(shared.start);
    let until = Instant::now() + Duration::from_secs(args.duration);
    let load = Load {
        addr,
        sessions: sessions.clone(),
        accepted: accepted.clone(),
        shared: shared.clone(),
        phase: 1,
        until,
        pace: None,
        posters: args.posters,
    };
    let failures = run_posters(load, args.posters).await?;
    let sent1: u64 = accepted.iter().map(|a| a.load(Ordering::Relaxed)).sum();
    let expected1 = sent1 * args.displays as u64;
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
        "  throughput: {} updates accepted ({:.0}/s), {} messages delivered in {:.2} s = {:.0} messages/s{}{}",
        sent1,
        sent1 as f64 / args.duration as f64,
        delivered1,
        elapsed1,
        rate1,
        if failures > 0 {
            format!(", {failures} posts refused")
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
        .unwrap_or(rate1 / args.displays as f64 / 2.0)
        .max(1.0);
    let posters = args.posters.min(rate.ceil() as usize).max(1);
    let pace = Duration::from_secs_f64(posters as f64 / rate);
    if let Some(floor) = floor {
        floor.measure(system.nats.client_url()).await?;
    }
    let before2: u64 = accepted.iter().map(|a| a.load(Ordering::Relaxed)).sum();
    let until = Instant::now() + Duration::from_secs(args.duration);
    let load = Load {
        addr,
        sessions: sessions.clone(),
        accepted: accepted.clone(),
        shared: shared.clone(),
        phase: 2,
        until,
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
    let expected2 = sent2 * args.displays as u64;
    let _ = wait_until(Duration::from_secs(30), || {
        shared.received[2].load(Ordering::Relaxed) >= expected2
    })
    .await;

    stop_readers.stop();
    let mut hist = PhaseHistograms::default();
    let (mut missing, mut duplicates, mut short) = (0u64, 0u64, 0u64);
    for (s, (session, reader)) in readers.into_iter().enumerate() {
        let (seen, samples) = reader.await?;
        hist.add(&samples);
        let accepted_here = accepted[s / args.displays].load(Ordering::Relaxed);
        let got = seen.received.iter().sum::<u64>();
        duplicates += seen.duplicates;
        missing += seen.missing;
        // Updates accepted but never seen at all (after the last one received).
        if got + seen.missing < accepted_here {
            short += accepted_here - got - seen.missing;
        }
        let _ = (session, seen.base_seq);
    }
    println!(
        "  throughput-phase latency: {}",
        latency_line(hist.phase(1))
    );
    println!(
        "  latency at {:.0} updates/s ({:.0} messages/s): {}{}",
        rate,
        rate * args.displays as f64,
        latency_line(hist.phase(2)),
        if failures2 > 0 {
            format!(", {failures2} posts refused")
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

    if args.idle > 0 {
        idle(&system, args.idle, run_id).await?;
    }
    Ok(hist.phase(2).clone())
}

/// Runs `posters` concurrent posters for one phase; returns how many posts were refused.
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

async fn idle(system: &System, n: usize, run_id: u32) -> anyhow::Result<()> {
    let pid = system.edge_pid().context("no edge process")?;
    let before = system::rss_bytes(pid).context("cannot read the edge's RSS")?;
    let ready = Arc::new(AtomicUsize::new(0));
    let mut held = Vec::with_capacity(n);
    let per_session = 100;
    for i in 0..n {
        let path = format!("/session/idle-{run_id}-{}/display", i / per_session);
        let mut ws = client::websocket(system.edge_addr, &path).await?;
        let ready = ready.clone();
        held.push(tokio::spawn(async move {
            if let Ok(frame) = ws.read_frame().await
                && frame.payload.starts_with(br#"{"type":"initial_state""#)
            {
                ready.fetch_add(1, Ordering::Relaxed);
            }
            // Hold the connection, idle, until the benchmark ends.
            std::future::pending::<()>().await;
            drop(ws);
        }));
    }
    wait_until(Duration::from_secs(60), || {
        ready.load(Ordering::Relaxed) >= n
    })
    .await
    .context("idle displays did not all get initial_state")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = system::rss_bytes(pid).context("cannot read the edge's RSS")?;
    println!(
        "  idle: {n} displays on {} sessions; edge RSS {:.1} MiB -> {:.1} MiB = {:.2} KiB per idle connection",
        n.div_ceil(per_session),
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        (after.saturating_sub(before)) as f64 / n as f64 / 1024.0
    );
    for h in held {
        h.abort();
    }
    Ok(())
}
