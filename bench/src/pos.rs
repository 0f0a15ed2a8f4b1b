//! `tablewire bench pos`: T tenants, each with 2 POS and 3 kitchen WebSockets. POS connections
//! submit orders as fast as they are answered (a window of submits in flight), then at half that
//! rate for latency; every kitchen checks it saw each order of its tenant exactly once.

use crate::client::{self, StopAll, Ws2, number_after};
use crate::report::{
    CpuMeter, PhaseHistograms, PhaseSamples, latency_line, pipeline_lines, scrape,
};
use crate::system::{AUTH_SECRET, Shape, report_rows, wait_for_drained};
use anyhow::{Context, bail};
use clap::Args;
use fastwebsockets::{Frame, OpCode, Payload};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tablewire_schemas::Domain;
use tokio::sync::oneshot;

/// Flags of `tablewire bench pos`.
#[derive(Debug, Clone, Args)]
pub struct PosArgs {
    /// Tenants (each with 2 POS and 3 kitchen connections).
    #[arg(long, default_value_t = 20)]
    pub tenants: usize,
    /// Seconds of each measured phase.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Submits one POS connection keeps in flight in the throughput phase.
    #[arg(long, default_value_t = 32)]
    pub window: usize,
    /// Handler processes.
    #[arg(long, default_value_t = 1)]
    pub handlers: usize,
    #[command(flatten)]
    pub streams: crate::system::StreamArgs,
    /// Orders per second for the latency phase (default: half of the throughput phase).
    #[arg(long)]
    pub latency_rate: Option<f64>,
    /// Where the SQL writer writes the order records (default: a SQLite file in a temporary
    /// directory).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Run no SQL writer: records wait in their stream and are not counted.
    #[arg(long, conflicts_with = "database_url")]
    pub no_records: bool,
}

const POS_PER_TENANT: usize = 2;
const KITCHENS_PER_TENANT: usize = 3;

struct Shared {
    start: Instant,
    ready: AtomicUsize,
    created: [AtomicU64; 3],
    kitchen_seen: AtomicU64,
}

fn now_ns(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

fn order(pos: u64, n: u64, phase: u64, sent_ns: u64) -> String {
    format!(
        r#"{{"type":"submit_order","order":{{"orderType":"takeout","paymentMethod":"cash","customer":{{"name":"bench","phone":"555"}},"cart":{{"items":[{{"name":"Dosa","price":120,"quantity":1}}],"total":120,"bp":{pos},"bn":{n},"bph":{phase},"bt":{sent_ns}}},"status":"confirmed","source":"pos"}}}}"#
    )
}

async fn connect(addr: std::net::SocketAddr, tenant: &str, shared: &Shared) -> anyhow::Result<Ws2> {
    let path = format!("/ws/restaurant-pos/{tenant}?token={AUTH_SECRET}");
    let mut ws = client::websocket(addr, &path).await?;
    let frame = ws.read_frame().await?;
    if !frame.payload.starts_with(br#"{"type":"sync_state""#) {
        bail!("first frame is not sync_state");
    }
    shared.ready.fetch_add(1, Ordering::Relaxed);
    Ok(ws)
}

/// An order_created frame's bench fields: (pos, n, phase, sent_ns).
fn created(payload: &[u8]) -> Option<(u64, u64, u64, u64)> {
    // Handlers' frames are JSON maps with sorted keys: `type` is not first.
    memchr::memmem::find(payload, br#""type":"order_created""#)?;
    Some((
        number_after(payload, b"\"bp\":")?,
        number_after(payload, b"\"bn\":")?,
        number_after(payload, b"\"bph\":")?,
        number_after(payload, b"\"bt\":")?,
    ))
}

/// What one POS connection did.
struct PosResult {
    accepted: u64,
    errors: u64,
    samples: PhaseSamples,
}

/// Submits in windows: sends `window` orders, then reads until all of its own came back.
/// With a pace, sends one order per pace instead.
async fn run_pos(
    mut ws: Ws2,
    id: u64,
    shared: Arc<Shared>,
    phases: Vec<(u64, Instant, usize, Option<Duration>)>,
) -> anyhow::Result<PosResult> {
    let mut result = PosResult {
        accepted: 0,
        errors: 0,
        samples: PhaseSamples::default(),
    };
    let mut n = 0u64;
    for (phase, until, window, pace) in phases {
        // Spread the tills over one interval (golden-ratio steps are even for any count), so
        // that paced load arrives evenly, not in bursts.
        let spread = (id as f64 * 0.618_033_988_75).fract();
        let mut next = Instant::now() + pace.map_or(Duration::ZERO, |p| p.mul_f64(spread));
        while Instant::now() < until {
            if let Some(pace) = pace {
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    tokio::time::sleep(wait).await;
                }
                next += pace;
            }
            for _ in 0..window {
                n += 1;
                let text = order(id, n, phase, now_ns(shared.start));
                ws.write_frame(Frame::text(Payload::Owned(text.into_bytes())))
                    .await?;
            }
            let mut outstanding = window;
            while outstanding > 0 {
                let frame = tokio::time::timeout(Duration::from_secs(10), ws.read_frame())
                    .await
                    .context("no answer in 10 s")??;
                match frame.opcode {
                    OpCode::Close => bail!("POS connection closed"),
                    OpCode::Text => {}
                    _ => continue,
                }
                let payload: &[u8] = &frame.payload;
                if memchr::memmem::find(payload, br#""type":"error""#).is_some() {
                    result.errors += 1;
                    outstanding -= 1;
                    continue;
                }
                if let Some((pos, _, ph, sent)) = created(payload)
                    && pos == id
                {
                    let now = now_ns(shared.start);
                    result.samples.record(ph as usize, sent, now);
                    shared.created[(ph as usize).min(2)].fetch_add(1, Ordering::Relaxed);
                    result.accepted += 1;
                    outstanding -= 1;
                }
            }
        }
    }
    Ok(result)
}

/// What one kitchen connection saw.
struct KitchenResult {
    seen: HashSet<(u64, u64)>,
    duplicates: u64,
    samples: PhaseSamples,
}

async fn run_kitchen(
    mut ws: Ws2,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) -> KitchenResult {
    let mut result = KitchenResult {
        seen: HashSet::new(),
        duplicates: 0,
        samples: PhaseSamples::default(),
    };
    loop {
        let frame = tokio::select! {
            biased;
            _ = &mut stop => break,
            frame = ws.read_frame() => match frame {
                Ok(frame) => frame,
                Err(_) => break,
            },
        };
        if frame.opcode == OpCode::Close {
            break;
        }
        if let Some((pos, n, ph, sent)) = created(&frame.payload) {
            let now = now_ns(shared.start);
            if !result.seen.insert((pos, n)) {
                result.duplicates += 1;
                continue;
            }
            shared.kitchen_seen.fetch_add(1, Ordering::Relaxed);
            result.samples.record(ph as usize, sent, now);
        }
    }
    result
}

/// Runs the POS benchmark.
pub async fn run(args: PosArgs) -> anyhow::Result<()> {
    measure(args, None).await.map(|_| ())
}

/// Runs the POS benchmark and returns the paced phase's submit → order_created latencies; with
/// a floor probe, a floor phase runs on the same nats-server before and after that phase.
pub async fn measure(
    args: PosArgs,
    floor: Option<&crate::floor::FloorProbe>,
) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    println!(
        "pos benchmark: {} tenants x ({POS_PER_TENANT} POS + {KITCHENS_PER_TENANT} kitchen) connections, {} s phases, window {}, {} handler process(es)",
        args.tenants, args.duration, args.window, args.handlers
    );
    let tmp = std::env::temp_dir().join(format!("tablewire-bench-pos-{}", std::process::id()));
    let database_url = if args.no_records {
        None
    } else if let Some(url) = &args.database_url {
        Some(url.clone())
    } else {
        std::fs::create_dir_all(&tmp).context("creating the benchmark's database directory")?;
        Some(format!("sqlite://{}", tmp.join("pos.db").display()))
    };
    let system = crate::system::start(&Shape {
        handlers: args.handlers,
        streams: args.streams.clone(),
        domains: vec![Domain::Pos, Domain::Events],
        database_url: database_url.clone(),
    })
    .await?;
    let addr = system.edge_addr;
    let run_id = std::process::id();
    let shared = Arc::new(Shared {
        start: Instant::now(),
        ready: AtomicUsize::new(0),
        created: Default::default(),
        kitchen_seen: AtomicU64::new(0),
    });
    let mut kitchens = Vec::new();
    let mut stop_kitchens = StopAll::default();
    let mut tills = Vec::new();
    for t in 0..args.tenants {
        let tenant = format!("bench-{run_id}-{t}");
        for _ in 0..KITCHENS_PER_TENANT {
            let ws = connect(addr, &tenant, &shared).await?;
            let kitchen = run_kitchen(ws, shared.clone(), stop_kitchens.signal());
            kitchens.push((t, tokio::spawn(kitchen)));
        }
        for _ in 0..POS_PER_TENANT {
            tills.push((t, connect(addr, &tenant, &shared).await?));
        }
    }
    println!(
        "  {} connections got sync_state",
        shared.ready.load(Ordering::Relaxed)
    );

    // Phase 1: as fast as answered.
    let metrics_before = (scrape(addr).await, scrape(system.handler_metrics).await);
    let cpu = CpuMeter::start(&system.pids());
    let phase1_start = Instant::now();
    let until1 = phase1_start + Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    for (i, (t, ws)) in tills.into_iter().enumerate() {
        let phases = vec![(1, until1, args.window.max(1), None)];
        let shared = shared.clone();
        tasks.push((t, tokio::spawn(run_pos(ws, i as u64, shared, phases))));
    }
    // Phase 1 results come back with the connections consumed; phase 2 uses new POS
    // connections of the same tenants.
    let mut results = Vec::new();
    for (t, task) in tasks {
        results.push((t, task.await??));
    }
    let elapsed1 = phase1_start.elapsed().as_secs_f64();
    let cpu_line = cpu.line();
    let created1 = shared.created[1].load(Ordering::Relaxed);
    let rate1 = created1 as f64 / elapsed1;
    let mut pos1 = PhaseHistograms::default();
    for (_, r) in &results {
        pos1.add(&r.samples);
    }
    let errors1: u64 = results.iter().map(|(_, r)| r.errors).sum();
    println!(
        "  throughput: {created1} orders in {elapsed1:.2} s = {rate1:.0} orders/s{}",
        if errors1 > 0 {
            format!(", {errors1} refused")
        } else {
            String::new()
        }
    );
    println!(
        "  throughput-phase submit -> order_created: {}",
        latency_line(pos1.phase(1))
    );
    println!("  {cpu_line}");
    let metrics_after = (scrape(addr).await, scrape(system.handler_metrics).await);
    for line in pipeline_lines(
        (&metrics_before.0, &metrics_after.0),
        (&metrics_before.1, &metrics_after.1),
    ) {
        println!("    {line}");
    }
    // The throughput phase leaves a backlog (the SQL writer falls behind at full rate): the
    // latency phase starts once the input streams and the records stream are empty.
    let nc = tablewire_nats::connect(system.nats.client_url(), "tablewire-bench").await?;
    let js = async_nats::jetstream::new(nc.clone());
    let streams = [
        tablewire_nats::resource::input_stream(Domain::Pos),
        tablewire_nats::resource::input_stream(Domain::Events),
        tablewire_nats::resource::RECORDS_STREAM.to_string(),
    ];
    let streams = if database_url.is_some() {
        &streams[..]
    } else {
        &streams[..2]
    };
    let drained = wait_for_drained(&js, streams, Duration::from_secs(300)).await?;
    println!(
        "  backlog applied{} {:.1} s after the phase",
        if database_url.is_some() {
            " and written to SQL"
        } else {
            ""
        },
        drained.as_secs_f64()
    );
    let metrics_before = (scrape(addr).await, scrape(system.handler_metrics).await);

    // Phase 2: paced at half the rate, one order in flight per POS.
    let rate = args.latency_rate.unwrap_or(rate1 / 2.0).max(1.0);
    let tills_n = args.tenants * POS_PER_TENANT;
    let pace = Duration::from_secs_f64(tills_n as f64 / rate);
    if let Some(floor) = floor {
        floor.measure(system.nats.client_url()).await?;
    }
    let cpu = CpuMeter::start(&system.pids());
    let until2 = Instant::now() + Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    for t in 0..args.tenants {
        let tenant = format!("bench-{run_id}-{t}");
        for p in 0..POS_PER_TENANT {
            let ws = connect(addr, &tenant, &shared).await?;
            let id = (tills_n + t * POS_PER_TENANT + p) as u64;
            let phases = vec![(2, until2, 1, Some(pace))];
            tasks.push((t, tokio::spawn(run_pos(ws, id, shared.clone(), phases))));
        }
    }
    for (t, task) in tasks {
        results.push((t, task.await??));
    }
    let cpu_line2 = cpu.line();
    let metrics_after = (scrape(addr).await, scrape(system.handler_metrics).await);
    if let Some(floor) = floor {
        floor.measure(system.nats.client_url()).await?;
    }
    let created2 = shared.created[2].load(Ordering::Relaxed);

    // Let the kitchens catch up, then count.
    let mut per_tenant = vec![0u64; args.tenants];
    for (t, r) in &results {
        per_tenant[*t] += r.accepted;
    }
    let expected: u64 = per_tenant.iter().sum::<u64>() * KITCHENS_PER_TENANT as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while shared.kitchen_seen.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_kitchens.stop();
    let mut pos2 = PhaseHistograms::default();
    for (_, r) in &results {
        pos2.add(&r.samples);
    }
    let mut kitchen_hist = PhaseHistograms::default();
    let (mut missing, mut duplicates) = (0u64, 0u64);
    for (t, task) in kitchens {
        let r = task.await?;
        kitchen_hist.add(&r.samples);
        duplicates += r.duplicates;
        missing += per_tenant[t].saturating_sub(r.seen.len() as u64);
    }
    println!(
        "  throughput-phase submit -> kitchen delivery: {}",
        latency_line(kitchen_hist.phase(1))
    );
    println!(
        "  latency at {rate:.0} orders/s ({created2} orders): submit -> order_created {}",
        latency_line(pos2.phase(2))
    );
    println!(
        "  latency at {rate:.0} orders/s: submit -> kitchen delivery {}",
        latency_line(kitchen_hist.phase(2))
    );
    println!("  {cpu_line2}");
    for line in pipeline_lines(
        (&metrics_before.0, &metrics_after.0),
        (&metrics_before.1, &metrics_after.1),
    ) {
        println!("    {line}");
    }
    println!("  missing {missing}, duplicates {duplicates}");
    if let Some(url) = &database_url {
        let accepted: u64 = per_tenant.iter().sum();
        let tenants = format!("bench-{run_id}-%");
        let count = "SELECT COUNT(*) FROM pos_orders WHERE tenant_id LIKE $1";
        report_rows(url, count, Some(&tenants), accepted, "orders", "order").await?;
    }
    // Closed before nats-server stops, so it does not log a lost connection.
    let _ = nc.drain().await;
    drop(system);
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(pos2.phase(2).clone())
}
