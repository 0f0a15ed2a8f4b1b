//! `tablewire bench devices`: D RFID readers on one edge, each scanning at a fixed rate (2 per
//! second by default, so under the seed's 1 s rule about half are accepted) with a heartbeat
//! every 30 s. Prints accepted scans/s, scan → reply latency, and at the end the rows in SQL
//! against the scans accepted.

use crate::client::{self, Ws2};
use crate::report::{CpuMeter, latency_histogram, latency_line, pipeline_lines, scrape};
use crate::system::{Shape, report_rows, wait_for_drained};
use anyhow::Context;
use clap::Args;
use fastwebsockets::{Frame, OpCode, Payload};
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tablewire_schemas::Domain;

/// Flags of `tablewire bench devices`.
#[derive(Debug, Clone, Args)]
pub struct DevicesArgs {
    /// Connected devices (each holds one socket here and one in the edge process).
    #[arg(long, default_value_t = 15_000)]
    pub devices: usize,
    /// Scans per second per device.
    #[arg(long, default_value_t = 2.0)]
    pub rate: f64,
    /// Seconds of scanning.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Seconds between heartbeats of one device.
    #[arg(long, default_value_t = 30)]
    pub heartbeat: u64,
    /// Handler processes (the first also runs the SQL writer).
    #[arg(long, default_value_t = 1)]
    pub handlers: usize,
    #[command(flatten)]
    pub streams: crate::system::StreamArgs,
    /// Where scans are written (default: a SQLite file in a temporary directory).
    #[arg(long)]
    pub database_url: Option<String>,
}

#[derive(Default)]
struct Counts {
    accepted: AtomicU64,
    too_soon: AtomicU64,
    other: AtomicU64,
    heartbeats: AtomicU64,
}

async fn send_text(ws: &mut Ws2, text: String) -> anyhow::Result<()> {
    ws.write_frame(Frame::text(Payload::Owned(text.into_bytes())))
        .await
        .context("write")
}

/// One device: scans at its pace until `until`, measuring each scan's reply. Returns the reply
/// latencies in microseconds: a few dozen per device, where a histogram per device (256 KiB each)
/// made the benchmark client zero gigabytes of pages while it measured.
async fn device(
    mut ws: Ws2,
    id: usize,
    args: Arc<DevicesArgs>,
    counts: Arc<Counts>,
    until: Instant,
) -> Vec<u64> {
    let mut latencies = Vec::new();
    let pace = Duration::from_secs_f64(1.0 / args.rate.max(0.01));
    // Spread the devices over one interval so load arrives evenly.
    let mut next = Instant::now() + pace.mul_f64((id % 1000) as f64 / 1000.0);
    let heartbeat = Duration::from_secs(args.heartbeat.max(1));
    let mut next_heartbeat = Instant::now() + heartbeat.mul_f64((id % 997) as f64 / 997.0);
    let mut n = 0u64;
    while Instant::now() < until {
        let heartbeat_due = next_heartbeat <= next;
        let at = if heartbeat_due { next_heartbeat } else { next };
        // An event due after the run would stretch it by up to one pace and count heartbeats
        // over more time than the scans' rate is divided by.
        if at >= until {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        let text = if heartbeat_due {
            next_heartbeat += heartbeat;
            r#"{"action":"heartbeat","timestamp":0}"#.to_string()
        } else {
            next += pace;
            n += 1;
            format!(r#"{{"action":"scan","tagId":"T{id}-{n}","location":"bench"}}"#)
        };
        let sent = Instant::now();
        if send_text(&mut ws, text).await.is_err() {
            break;
        }
        let reply = loop {
            match ws.read_frame().await {
                Ok(frame) if frame.opcode == OpCode::Text => break Some(frame.payload.to_vec()),
                Ok(frame) if frame.opcode == OpCode::Close => break None,
                Ok(_) => continue,
                Err(_) => break None,
            }
        };
        let Some(reply) = reply else { break };
        if heartbeat_due {
            counts.heartbeats.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        latencies.push((sent.elapsed().as_micros() as u64).max(1));
        if memchr::memmem::find(&reply, br#""success":true"#).is_some() {
            counts.accepted.fetch_add(1, Ordering::Relaxed);
        } else if memchr::memmem::find(&reply, b"TOO_SOON").is_some() {
            counts.too_soon.fetch_add(1, Ordering::Relaxed);
        } else {
            counts.other.fetch_add(1, Ordering::Relaxed);
        }
    }
    let _ = ws.write_frame(Frame::close(1000, b"")).await;
    latencies
}

/// Runs the devices benchmark.
pub async fn run(args: DevicesArgs) -> anyhow::Result<()> {
    measure(args, None).await.map(|_| ())
}

/// Runs the devices benchmark and returns the scan → reply latencies; with a floor probe, a
/// floor phase runs on the same nats-server before and after the scans.
pub async fn measure(
    args: DevicesArgs,
    floor: Option<&crate::floor::FloorProbe>,
) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    println!(
        "devices benchmark: {} devices x {} scans/s for {} s, heartbeat every {} s, {} handler process(es)",
        args.devices, args.rate, args.duration, args.heartbeat, args.handlers
    );
    let tmp = std::env::temp_dir().join(format!("tablewire-bench-devices-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let database_url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", tmp.join("devices.db").display()));
    let heartbeat = args.heartbeat.to_string();
    let system = crate::system::start_with(
        &Shape {
            handlers: args.handlers,
            streams: args.streams.clone(),
            domains: Domain::ALL.to_vec(),
            database_url: Some(database_url.clone()),
        },
        &[
            "--device-auth",
            "none",
            "--device-heartbeat-secs",
            &heartbeat,
        ],
    )
    .await?;
    let addr = system.edge_addr;
    let handler_metrics = system.handler_metrics;
    let nc = tablewire_nats::connect(system.nats.client_url(), "tablewire-bench").await?;
    let js = async_nats::jetstream::new(nc.clone());

    // Connect every device, 256 at a time.
    let started = Instant::now();
    let run_id = std::process::id();
    let sockets: Vec<anyhow::Result<Ws2>> = futures::stream::iter(0..args.devices)
        .map(|i| async move {
            client::websocket(addr, &format!("/ws/device?deviceId=bench-{run_id}-{i}")).await
        })
        .buffered(256)
        .collect()
        .await;
    let sockets = sockets.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    println!(
        "  {} devices connected in {:.1} s",
        sockets.len(),
        started.elapsed().as_secs_f64()
    );
    // Measure scans, not the connections' backlog: wait until every connect command (device
    // holder, presence, the dashboard's online events) has been applied and written to SQL.
    let waited = Instant::now();
    let streams = [
        tablewire_nats::resource::input_stream(Domain::Device),
        tablewire_nats::resource::input_stream(Domain::Events),
        tablewire_nats::resource::RECORDS_STREAM.to_string(),
    ];
    wait_for_drained(&js, &streams, Duration::from_secs(180)).await?;
    println!(
        "  connect backlog applied in {:.1} s more",
        waited.elapsed().as_secs_f64()
    );

    let pids = system.pids();
    if let Some(floor) = floor {
        floor.measure(system.nats.client_url()).await?;
    }
    let cpu = CpuMeter::start(&pids);
    let metrics_before = (scrape(addr).await, scrape(handler_metrics).await);
    let counts = Arc::new(Counts::default());
    let shared_args = Arc::new(args.clone());
    let until = Instant::now() + Duration::from_secs(args.duration);
    let scan_start = Instant::now();
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, ws)| tokio::spawn(device(ws, i, shared_args.clone(), counts.clone(), until)))
        .collect();
    let mut hist = latency_histogram();
    for task in tasks {
        for latency in task.await.unwrap_or_default() {
            let _ = hist.record(latency);
        }
    }
    let elapsed = scan_start.elapsed().as_secs_f64();
    let cpu_line = cpu.line();
    if let Some(floor) = floor {
        floor.measure(system.nats.client_url()).await?;
    }
    let accepted = counts.accepted.load(Ordering::Relaxed);
    let too_soon = counts.too_soon.load(Ordering::Relaxed);
    println!(
        "  scans: {} accepted ({:.0}/s), {} refused as too soon ({:.0}/s), {} other errors, {} heartbeats",
        accepted,
        accepted as f64 / elapsed,
        too_soon,
        too_soon as f64 / elapsed,
        counts.other.load(Ordering::Relaxed),
        counts.heartbeats.load(Ordering::Relaxed),
    );
    println!("  scan -> reply latency: {}", latency_line(&hist));
    println!("  {cpu_line}");
    let metrics_after = (scrape(addr).await, scrape(handler_metrics).await);
    for line in pipeline_lines(
        (&metrics_before.0, &metrics_after.0),
        (&metrics_before.1, &metrics_after.1),
    ) {
        println!("    {line}");
    }
    let (h0, h1) = (&metrics_before.1, &metrics_after.1);
    println!(
        "    handler: device domain {:.0} commands applied in {:.0} state writes, {:.0} rejected",
        h1.counter_since(h0, "tablewire_handler_applied_total{domain=\"device\"}"),
        h1.counter_since(
            h0,
            "tablewire_handler_state_writes_total{domain=\"device\"}"
        ),
        h1.counter_since(
            h0,
            "tablewire_handler_rejected_total{domain=\"device\",code=\"TOO_SOON\"}"
        ),
    );

    // Rows in SQL against accepted scans.
    let count = "SELECT COUNT(*) FROM device_scans";
    report_rows(&database_url, count, None, accepted, "accepted", "scan").await?;
    // Closed before nats-server stops, so it does not log a lost connection.
    let _ = nc.drain().await;
    drop(system);
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(hist)
}
