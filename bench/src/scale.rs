//! `tablewire bench scale`: one nats-server, handlers and two (or more) edges holding thousands of
//! display and device sockets each, opened by load processes of this same binary
//! (`tablewire bench scale-client`, see [`client_main`]); a fixed rate of display updates fanned
//! out to every display; memory per socket and CPU per delivered message of each component, and
//! from them a sizing model for 100k and 1M connected sockets ([`model`]).

use crate::client::{self, Poster, number_after};
use crate::system::{self, AUTH_SECRET, Shape, System};
use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use fastwebsockets::OpCode;
use futures::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tablewire_schemas::Domain;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// Flags of `tablewire bench scale`.
#[derive(Debug, Clone, Args)]
pub struct ScaleArgs {
    /// Edge processes, each holding `--displays` and `--devices` sockets.
    #[arg(long, default_value_t = 2)]
    pub edges: usize,
    /// Display sockets per edge.
    #[arg(long, default_value_t = 12_000)]
    pub displays: usize,
    /// Device sockets per edge (idle: connected, registered, silent).
    #[arg(long, default_value_t = 3_000)]
    pub devices: usize,
    /// Displays of one session on each edge (a session has this many on every edge); divides
    /// `--displays`.
    #[arg(long, default_value_t = 5)]
    pub session_size: usize,
    /// Display updates per second (posted over HTTP, alternately to each edge).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Seconds of updates.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Seconds the sockets are held idle while CPU is measured, before the updates.
    #[arg(long, default_value_t = 10)]
    pub idle_secs: u64,
    /// Most sockets one load process opens (each process stays under its file limit).
    #[arg(long, default_value_t = 10_000)]
    pub per_client: usize,
    /// Handler processes.
    #[arg(long, default_value_t = 1)]
    pub handlers: usize,
    #[command(flatten)]
    pub streams: crate::system::StreamArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// The assumptions of the sizing model [`model`] (printed with its table).
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Share of the connected sockets that are displays (the rest are devices).
    #[arg(long, default_value_t = 0.5)]
    pub model_display_share: f64,
    /// Messages per second each display receives, averaged over a day of service.
    #[arg(long, default_value_t = 0.1)]
    pub model_display_rate: f64,
    /// Messages per second each device sends (heartbeat every 30 s, scans), costed as a
    /// delivered message on the edge.
    #[arg(long, default_value_t = 0.05)]
    pub model_device_rate: f64,
    /// Cores of one edge machine.
    #[arg(long, default_value_t = 4.0)]
    pub model_edge_cores: f64,
    /// Memory of one edge machine, GiB.
    #[arg(long, default_value_t = 8.0)]
    pub model_edge_gib: f64,
    /// Cores of one NATS node.
    #[arg(long, default_value_t = 4.0)]
    pub model_nats_cores: f64,
    /// Memory of one NATS node, GiB.
    #[arg(long, default_value_t = 8.0)]
    pub model_nats_gib: f64,
    /// Share of cores and memory a sized machine may use (the rest is headroom for peaks and
    /// for taking over a failed machine's sockets).
    #[arg(long, default_value_t = 0.5)]
    pub model_usable: f64,
}

/// Hidden flags of `tablewire bench scale-client`: one load process.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The edge to connect to.
    #[arg(long)]
    pub edge: SocketAddr,
    /// Session ids are `{run}-{n}`; device ids `{run}-e{edge_index}-d{n}`.
    #[arg(long)]
    pub run: String,
    /// Which edge this is (for device ids).
    #[arg(long)]
    pub edge_index: usize,
    /// First session (inclusive).
    #[arg(long)]
    pub first_session: usize,
    /// Last session (exclusive).
    #[arg(long)]
    pub end_session: usize,
    /// Displays per session.
    #[arg(long)]
    pub per_session: usize,
    /// First device number.
    #[arg(long)]
    pub first_device: usize,
    /// Devices.
    #[arg(long)]
    pub devices: usize,
}

/// Files each process needs besides its sockets (runtime, pipes, NATS, listeners, headroom);
/// the edge itself reserves [`tablewire_edge::admission::FILE_RESERVE`] from its limit.
const OTHER_FILES: u64 = 256;

/// How a load process's answers start on its stdout (where its log lines go too).
const ANSWER: &str = "@scale-client ";

/// What one load process saw.
#[derive(Default)]
struct Counts {
    ready: AtomicU64,
    received: AtomicU64,
    gaps: AtomicU64,
    duplicates: AtomicU64,
    closed: AtomicU64,
    devices: AtomicU64,
    devices_closed: AtomicU64,
}

/// The load process: opens its displays, says `ready N`, then answers one line per line read on
/// stdin: `devices` (open the devices, answer `devices N`), `count` (answer `count N`, updates
/// received), `report` (answer a JSON object of its counts and exit).
pub async fn client_main(args: ClientArgs) -> anyhow::Result<()> {
    let sockets = (args.end_session.saturating_sub(args.first_session))
        .checked_mul(args.per_session)
        .and_then(|d| d.checked_add(args.devices))
        .context("too many sockets")?;
    system::raise_file_limit(sockets as u64 + OTHER_FILES)?;
    let counts = Arc::new(Counts::default());
    let addr = args.edge;
    let paths: Vec<String> = (args.first_session..args.end_session)
        .flat_map(|s| {
            let path = format!("/session/{}-{s}/display", args.run);
            std::iter::repeat_n(path, args.per_session)
        })
        .collect();
    let wanted = paths.len() as u64;
    let mut opened = futures::stream::iter(paths)
        .map(|path| async move { client::websocket(addr, &path).await })
        .buffer_unordered(128);
    while let Some(ws) = opened.next().await {
        tokio::spawn(display(ws?, counts.clone()));
    }
    wait_for(Duration::from_secs(120), || {
        counts.ready.load(Ordering::Relaxed) >= wanted
    })
    .await
    .context("displays did not all get initial_state")?;
    let mut stdout = tokio::io::stdout();
    stdout
        .write_all(format!("{ANSWER}ready {wanted}\n").as_bytes())
        .await?;
    stdout.flush().await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let answer = match line.trim() {
            "devices" => {
                let ids = (args.first_device..args.first_device + args.devices)
                    .map(|n| format!("/ws/device?deviceId={}-e{}-d{n}", args.run, args.edge_index));
                let mut opened = futures::stream::iter(ids)
                    .map(|path| async move { client::websocket(addr, &path).await })
                    .buffer_unordered(128);
                while let Some(ws) = opened.next().await {
                    counts.devices.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(device(ws?, counts.clone()));
                }
                format!("devices {}", counts.devices.load(Ordering::Relaxed))
            }
            "count" => format!("count {}", counts.received.load(Ordering::Relaxed)),
            "report" => {
                let report = serde_json::json!({
                    "displays": wanted,
                    "received": counts.received.load(Ordering::Relaxed),
                    "gaps": counts.gaps.load(Ordering::Relaxed),
                    "duplicates": counts.duplicates.load(Ordering::Relaxed),
                    "closed": counts.closed.load(Ordering::Relaxed),
                    "devices": counts.devices.load(Ordering::Relaxed),
                    "devices_closed": counts.devices_closed.load(Ordering::Relaxed),
                });
                stdout
                    .write_all(format!("{ANSWER}{report}\n").as_bytes())
                    .await?;
                stdout.flush().await?;
                return Ok(());
            }
            other => bail!("unknown request {other:?}"),
        };
        stdout
            .write_all(format!("{ANSWER}{answer}\n").as_bytes())
            .await?;
        stdout.flush().await?;
    }
    Ok(())
}

/// One display: counts `initial_state`, then checks that update sequence numbers follow one
/// another; a socket closed before the process ends counts as closed.
async fn display(mut ws: client::Ws2, counts: Arc<Counts>) {
    let mut last = None;
    loop {
        let frame = match ws.read_frame().await {
            Ok(frame) => frame,
            Err(_) => break,
        };
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text => {}
            _ => continue,
        }
        let payload: &[u8] = &frame.payload;
        let Some(seq) = number_after(payload, b"\"seq\":") else {
            continue;
        };
        if payload.starts_with(br#"{"type":"initial_state""#) {
            if last.is_none() {
                counts.ready.fetch_add(1, Ordering::Relaxed);
            }
            last = Some(seq);
            continue;
        }
        let Some(previous) = last else { continue };
        if seq <= previous {
            counts.duplicates.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        counts.gaps.fetch_add(seq - previous - 1, Ordering::Relaxed);
        counts.received.fetch_add(1, Ordering::Relaxed);
        last = Some(seq);
    }
    counts.closed.fetch_add(1, Ordering::Relaxed);
}

/// One idle device: reads (and so answers pings) until the process ends.
async fn device(mut ws: client::Ws2, counts: Arc<Counts>) {
    while let Ok(frame) = ws.read_frame().await {
        if frame.opcode == OpCode::Close {
            break;
        }
    }
    counts.devices_closed.fetch_add(1, Ordering::Relaxed);
}

async fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A load process as the benchmark sees it: which sessions it holds, and a line protocol.
struct LoadProcess {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    edge: usize,
    sessions: std::ops::Range<usize>,
}

impl LoadProcess {
    /// The next answer; log lines before it are passed on to stderr.
    async fn read(&mut self, limit: Duration) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let line = self.next_line(deadline).await?;
            match line.strip_prefix(ANSWER) {
                Some(answer) => return Ok(answer.to_string()),
                None => eprintln!("load process of edge {}: {line}", self.edge + 1),
            }
        }
    }

    async fn next_line(&mut self, deadline: tokio::time::Instant) -> anyhow::Result<String> {
        match tokio::time::timeout_at(deadline, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => bail!(
                "a load process of edge {} ended early ({:?})",
                self.edge + 1,
                self.child.try_wait()
            ),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => bail!("a load process of edge {} did not answer", self.edge + 1),
        }
    }

    async fn ask(&mut self, request: &str, limit: Duration) -> anyhow::Result<String> {
        self.stdin
            .write_all(format!("{request}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        self.read(limit).await
    }
}

/// Memory (RSS, bytes) and CPU (seconds) of each measured process, by role.
#[derive(Debug, Clone)]
struct Sample {
    rss: Vec<u64>,
    cpu: Vec<f64>,
}

fn sample(pids: &[(String, u32)]) -> Sample {
    Sample {
        rss: pids
            .iter()
            .map(|(_, p)| system::rss_bytes(*p).unwrap_or(0))
            .collect(),
        cpu: pids
            .iter()
            .map(|(_, p)| system::cpu_seconds(*p).unwrap_or(0.0))
            .collect(),
    }
}

/// Runs the scale benchmark; fails when a delivery is missing or repeated, or a socket closed.
pub async fn run(args: ScaleArgs) -> anyhow::Result<()> {
    if args.edges == 0 || args.session_size == 0 || !args.displays.is_multiple_of(args.session_size)
    {
        bail!(
            "--edges and --session-size must be at least 1, and --session-size divide --displays"
        );
    }
    let per_edge = args
        .displays
        .checked_add(args.devices)
        .context("too many sockets")?;
    // The edges inherit this process's limit; the load processes hold at most --per-client.
    let files = (per_edge.max(args.per_client) as u64)
        .saturating_add(tablewire_edge::admission::FILE_RESERVE as u64)
        .saturating_add(OTHER_FILES);
    let limit = system::raise_file_limit(files)?;
    let sessions = args.displays / args.session_size;
    let per_session = args.session_size * args.edges;
    println!(
        "scale benchmark: {} edges x ({} displays + {} devices), {} sessions of {} displays ({} per edge), {} updates/s for {} s; open files {limit}",
        args.edges,
        args.displays,
        args.devices,
        sessions,
        per_session,
        args.session_size,
        args.rate,
        args.duration,
    );
    let edge_flags = ["--device-auth", "none", "--device-heartbeat-secs", "3600"];
    let mut system = system::start_with(
        &Shape {
            handlers: args.handlers,
            streams: args.streams.clone(),
            domains: vec![Domain::Display, Domain::Device],
            database_url: None,
        },
        &edge_flags,
    )
    .await?;
    let mut edges = vec![system.edge_addr];
    for _ in 1..args.edges {
        edges.push(system::start_edge(&mut system, &edge_flags).await?);
    }
    let pids = roles(&system);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = sample(&pids);

    // Load processes: each edge's sessions split into chunks of at most --per-client sockets.
    let run_id = format!("scale-{}", std::process::id());
    let launcher = system::launcher("warn")?;
    let mut loads = Vec::new();
    let clients_per_edge = per_edge.div_ceil(args.per_client.max(1)).max(1);
    let sessions_per_client = sessions.div_ceil(clients_per_edge).max(1);
    let started = Instant::now();
    for (e, addr) in edges.iter().enumerate() {
        for c in 0..clients_per_edge {
            let first = c * sessions_per_client;
            let end = ((c + 1) * sessions_per_client).min(sessions);
            let devices =
                args.devices / clients_per_edge + usize::from(c < args.devices % clients_per_edge);
            let first_device = (0..c)
                .map(|k| {
                    args.devices / clients_per_edge
                        + usize::from(k < args.devices % clients_per_edge)
                })
                .sum::<usize>();
            let flags = [
                "bench".to_string(),
                "scale-client".into(),
                "--edge".into(),
                addr.to_string(),
                "--run".into(),
                run_id.clone(),
                "--edge-index".into(),
                e.to_string(),
                "--first-session".into(),
                first.to_string(),
                "--end-session".into(),
                end.to_string(),
                "--per-session".into(),
                args.session_size.to_string(),
                "--first-device".into(),
                first_device.to_string(),
                "--devices".into(),
                devices.to_string(),
            ];
            let mut child = launcher
                .command(&flags)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .context("starting a load process")?;
            let stdin = child.stdin.take().context("no stdin")?;
            let stdout = child.stdout.take().context("no stdout")?;
            loads.push(LoadProcess {
                child,
                stdin,
                lines: BufReader::new(stdout).lines(),
                edge: e,
                sessions: first..end,
            });
        }
    }
    for load in &mut loads {
        let line = load.read(Duration::from_secs(300)).await?;
        if !line.starts_with("ready ") {
            bail!("a load process said {line:?}");
        }
    }
    let total_displays = args.displays * args.edges;
    println!(
        "  {total_displays} displays connected by {} load processes in {:.1} s",
        loads.len(),
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with_displays = sample(&pids);

    let started = Instant::now();
    let mut devices = 0;
    for load in &mut loads {
        let line = load.ask("devices", Duration::from_secs(300)).await?;
        devices += line
            .strip_prefix("devices ")
            .and_then(|n| n.parse::<usize>().ok())
            .with_context(|| format!("a load process said {line:?}"))?;
    }
    let nc = tablewire_nats::connect(system.nats.client_url(), "tablewire-bench").await?;
    let js = async_nats::jetstream::new(nc.clone());
    let input = [tablewire_nats::resource::input_stream(Domain::Device)];
    system::wait_for_drained(&js, &input, Duration::from_secs(180)).await?;
    println!(
        "  {devices} devices connected and registered in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with_devices = sample(&pids);
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let idle_end = sample(&pids);
    let idle_secs = args.idle_secs.max(1) as f64;

    // Updates at a fixed rate, round-robin over the sessions, alternately to each edge.
    let accepted: Arc<Vec<AtomicU64>> =
        Arc::new((0..sessions).map(|_| AtomicU64::new(0)).collect());
    let refused = Arc::new(AtomicU64::new(0));
    // A poster waits for each answer: enough of them that answers slower than the pace (a
    // busy machine) still leave the rate met.
    let posters = ((args.rate / 4.0).ceil() as usize).clamp(1, 256);
    let pace = Duration::from_secs_f64(posters as f64 / args.rate.max(0.01));
    let until = Instant::now() + Duration::from_secs(args.duration);
    let busy_start = sample(&pids);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..posters {
        let (accepted, refused) = (accepted.clone(), refused.clone());
        let addr = edges[p % edges.len()];
        let run_id = run_id.clone();
        tasks.push(tokio::spawn(async move {
            let mut poster = Poster::connect(addr).await?;
            let auth = format!("Bearer {AUTH_SECRET}");
            let mut next = Instant::now() + pace.mul_f64(p as f64 / posters as f64);
            let mut s = p;
            while next < until {
                tokio::time::sleep_until(next.into()).await;
                next += pace;
                let session = s % accepted.len();
                s += posters;
                let path = format!("/session/{run_id}-{session}/update");
                let body = Bytes::from_static(br#"{"type":"bench","displayData":{"n":1}}"#);
                let (status, _) = poster.post(&path, Some(&auth), body).await?;
                if status == 200 {
                    accepted[session].fetch_add(1, Ordering::Relaxed);
                } else {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let posted_in = started.elapsed().as_secs_f64();
    let updates: u64 = accepted.iter().map(|a| a.load(Ordering::Relaxed)).sum();
    let expected_of = |load: &LoadProcess| -> u64 {
        load.sessions
            .clone()
            .map(|s| accepted[s].load(Ordering::Relaxed))
            .sum::<u64>()
            * args.session_size as u64
    };
    // Until every display has every update (or a minute passes).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut short = 0;
        for load in &mut loads {
            let line = load.ask("count", Duration::from_secs(30)).await?;
            let got: u64 = line
                .strip_prefix("count ")
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("a load process said {line:?}"))?;
            short += expected_of(load).saturating_sub(got);
        }
        if short == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let busy_end = sample(&pids);
    let busy_secs = started.elapsed().as_secs_f64();

    let mut per_edge_received = vec![0u64; args.edges];
    let (mut received, mut missing, mut duplicates, mut closed, mut devices_closed) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for load in &mut loads {
        let line = load.ask("report", Duration::from_secs(60)).await?;
        let report: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("a load process said {line:?}"))?;
        let n = |field: &str| report[field].as_u64().unwrap_or(0);
        per_edge_received[load.edge] += n("received");
        received += n("received");
        missing += expected_of(load)
            .saturating_sub(n("received"))
            .max(n("gaps"));
        duplicates += n("duplicates");
        closed += n("closed");
        devices_closed += n("devices_closed");
        let _ = load.child.wait().await;
    }
    let expected = updates * per_session as u64;
    println!(
        "  {updates} updates accepted in {posted_in:.1} s ({:.0}/s, {} refused); {received} of {expected} messages delivered in {busy_secs:.1} s",
        updates as f64 / posted_in.max(1e-9),
        refused.load(Ordering::Relaxed),
    );
    println!(
        "  missing {missing}, duplicates {duplicates}, displays closed {closed}, devices closed {devices_closed}"
    );

    // Per component: memory per socket, idle and busy CPU, CPU per delivered message.
    let mib = |b: u64| b as f64 / 1048576.0;
    let kib_per = |after: u64, before: u64, n: usize| {
        (after as f64 - before as f64) / 1024.0 / n.max(1) as f64
    };
    println!(
        "| component | RSS before MiB | with displays | with devices | after updates | KiB/display | KiB/device | idle cores | busy cores | CPU µs/delivered | CPU µs/update |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let after = sample(&pids);
    let mut components = Vec::new();
    for (i, (role, _)) in pids.iter().enumerate() {
        let edge_index = role
            .strip_prefix("edge ")
            .and_then(|n| n.parse::<usize>().ok())
            .map(|n| n - 1);
        let (displays_here, devices_here, delivered_here) = match edge_index {
            Some(e) => (args.displays, args.devices, per_edge_received[e]),
            None => (total_displays, devices, received),
        };
        let busy_cpu = busy_end.cpu[i] - busy_start.cpu[i];
        let c = serde_json::json!({
            "component": role,
            "rss_before_mib": mib(before.rss[i]),
            "rss_displays_mib": mib(with_displays.rss[i]),
            "rss_devices_mib": mib(with_devices.rss[i]),
            "rss_after_mib": mib(after.rss[i]),
            "kib_per_display": kib_per(with_displays.rss[i], before.rss[i], displays_here),
            "kib_per_device": kib_per(with_devices.rss[i], with_displays.rss[i], devices_here),
            "idle_cores": (idle_end.cpu[i] - with_devices.cpu[i]) / idle_secs,
            "busy_cores": busy_cpu / busy_secs.max(1e-9),
            "us_per_delivered": busy_cpu * 1e6 / delivered_here.max(1) as f64,
            "us_per_update": busy_cpu * 1e6 / updates.max(1) as f64,
        });
        let f = |k: &str| c[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "| {role} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.3} | {:.2} | {:.1} | {:.1} |",
            f("rss_before_mib"),
            f("rss_displays_mib"),
            f("rss_devices_mib"),
            f("rss_after_mib"),
            f("kib_per_display"),
            f("kib_per_device"),
            f("idle_cores"),
            f("busy_cores"),
            f("us_per_delivered"),
            f("us_per_update"),
        );
        components.push(c);
    }

    let measured = Measured::from_components(&components, args.edges, per_session);
    let rows =
        [100_000u64, 1_000_000].map(|sockets| (sockets, model(&measured, &args.model, sockets)));
    println!("sizing model ({}):", assumptions(&args.model, per_session));
    println!(
        "| connected | displays | devices | messages/s | edges | edge bound by | NATS nodes | NATS bound by | handler cores |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (sockets, row) in &rows {
        println!(
            "| {sockets} | {} | {} | {:.0} | {} | {} | {} | {} | {:.1} |",
            row.displays,
            row.devices,
            row.messages_per_sec,
            row.edges,
            row.edge_bound,
            row.nats_nodes,
            row.nats_bound,
            row.handler_cores,
        );
    }
    let json = serde_json::json!({
        "bench": "scale",
        "edges": args.edges,
        "displays_per_edge": args.displays,
        "devices_per_edge": args.devices,
        "devices": devices,
        "session_displays": per_session,
        "load_processes": loads.len(),
        "rate": args.rate,
        "updates": updates,
        "expected": expected,
        "delivered": received,
        "delivered_per_edge": per_edge_received,
        "missing": missing,
        "duplicates": duplicates,
        "closed": closed + devices_closed,
        "components": components,
        "model": rows.iter().map(|(sockets, r)| serde_json::json!({
            "connected": sockets, "edges": r.edges, "nats_nodes": r.nats_nodes,
            "handler_cores": r.handler_cores,
        })).collect::<Vec<_>>(),
    });
    println!("{json}");
    let _ = nc.drain().await;
    if missing > 0 || duplicates > 0 || closed > 0 || devices_closed > 0 || received != expected {
        bail!(
            "deliveries wrong: {received} of {expected} delivered, {missing} missing, {duplicates} duplicates, {closed} displays and {devices_closed} devices closed"
        );
    }
    Ok(())
}

/// The measured processes: `nats-server`, `edge 1` …, `handler` (all handlers' CPU and memory
/// are summed in the model).
fn roles(system: &System) -> Vec<(String, u32)> {
    let mut edge = 0;
    system
        .pids()
        .into_iter()
        .map(|(role, pid)| {
            if role == "edge" {
                edge += 1;
                (format!("edge {edge}"), pid)
            } else {
                (role.to_string(), pid)
            }
        })
        .collect()
}

/// The figures the model is built from, averaged over edges.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// Edge memory per display socket, KiB.
    pub edge_kib_per_display: f64,
    /// Edge memory per device socket, KiB.
    pub edge_kib_per_device: f64,
    /// Edge CPU per delivered message, µs (the edge's share of the POSTs and publishes
    /// included, at the measured session size).
    pub edge_us_per_delivered: f64,
    /// nats-server memory per display socket, KiB.
    pub nats_kib_per_display: f64,
    /// nats-server memory per device socket, KiB.
    pub nats_kib_per_device: f64,
    /// nats-server CPU per update (stored, applied, fanned out to the edges), µs.
    pub nats_us_per_update: f64,
    /// Handler CPU per update, µs.
    pub handler_us_per_update: f64,
    /// Displays per session in the measurement (deliveries per update).
    pub session_displays: usize,
}

impl Measured {
    fn from_components(components: &[serde_json::Value], edges: usize, session: usize) -> Self {
        let sum = |prefix: &str, field: &str| -> f64 {
            components
                .iter()
                .filter(|c| {
                    c["component"]
                        .as_str()
                        .is_some_and(|r| r.starts_with(prefix))
                })
                .filter_map(|c| c[field].as_f64())
                .sum()
        };
        let edges = edges.max(1) as f64;
        Measured {
            edge_kib_per_display: sum("edge", "kib_per_display") / edges,
            edge_kib_per_device: sum("edge", "kib_per_device") / edges,
            edge_us_per_delivered: sum("edge", "us_per_delivered") / edges,
            nats_kib_per_display: sum("nats-server", "kib_per_display"),
            nats_kib_per_device: sum("nats-server", "kib_per_device"),
            nats_us_per_update: sum("nats-server", "us_per_update"),
            handler_us_per_update: sum("handler", "us_per_update"),
            session_displays: session,
        }
    }
}

/// One row of the sizing model.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Connected displays.
    pub displays: u64,
    /// Connected devices.
    pub devices: u64,
    /// Messages per second the edges deliver or receive.
    pub messages_per_sec: f64,
    /// Edge machines.
    pub edges: u64,
    /// What sizes the edges: `memory` or `CPU` (`two for failover` when neither needs two).
    pub edge_bound: &'static str,
    /// NATS nodes.
    pub nats_nodes: u64,
    /// What sizes NATS: `R3 cluster` (the minimum), `memory` or `CPU`.
    pub nats_bound: &'static str,
    /// Cores the handlers need (at `model_usable`), wherever they run.
    pub handler_cores: f64,
}

/// How many edges and NATS nodes `sockets` connected sockets need, from the measured figures and
/// the named assumptions: memory and CPU per socket and per message scale linearly; a sized
/// machine uses `model_usable` of its cores and memory; every update reaches as many displays
/// as in the measurement; R3 streams and KV make each update's JetStream work three times (so
/// NATS CPU per update is counted three times); at least two edges and three NATS nodes.
pub fn model(m: &Measured, a: &ModelArgs, sockets: u64) -> Row {
    let displays = (sockets as f64 * a.model_display_share.clamp(0.0, 1.0)).round() as u64;
    let devices = sockets - displays.min(sockets);
    let delivered = displays as f64 * a.model_display_rate;
    let device_messages = devices as f64 * a.model_device_rate;
    let updates = delivered / m.session_displays.max(1) as f64;
    let usable = a.model_usable.clamp(0.01, 1.0);
    let edge_kib =
        displays as f64 * m.edge_kib_per_display + devices as f64 * m.edge_kib_per_device;
    let edge_memory = edge_kib / (a.model_edge_gib * 1048576.0 * usable);
    let edge_cpu = (delivered + device_messages) * m.edge_us_per_delivered
        / 1e6
        / (a.model_edge_cores * usable);
    let (edges, edge_bound) = bound(
        &[(edge_memory, "memory"), (edge_cpu, "CPU")],
        2,
        "two for failover",
    );
    let nats_kib =
        displays as f64 * m.nats_kib_per_display + devices as f64 * m.nats_kib_per_device;
    let nats_memory = nats_kib / (a.model_nats_gib * 1048576.0 * usable);
    let nats_cpu = updates * m.nats_us_per_update * 3.0 / 1e6 / (a.model_nats_cores * usable);
    let (nats_nodes, nats_bound) = bound(
        &[(nats_memory, "memory"), (nats_cpu, "CPU")],
        3,
        "R3 cluster",
    );
    let handler_cores = updates * m.handler_us_per_update / 1e6 / usable;
    Row {
        displays,
        devices,
        messages_per_sec: delivered + device_messages,
        handler_cores,
        edges,
        edge_bound,
        nats_nodes,
        nats_bound,
    }
}

/// Machines needed for the larger of `needs` (fractions of one machine), at least `minimum`.
fn bound(needs: &[(f64, &'static str)], minimum: u64, floor: &'static str) -> (u64, &'static str) {
    let (need, why) = needs
        .iter()
        .copied()
        .fold((0.0, floor), |best, n| if n.0 > best.0 { n } else { best });
    let machines = need.max(0.0).ceil() as u64;
    if machines <= minimum {
        (minimum, floor)
    } else {
        (machines, why)
    }
}

/// The model's assumptions in words, for the printed table.
pub fn assumptions(a: &ModelArgs, session: usize) -> String {
    format!(
        "{:.0}% displays receiving {} msg/s each, in sessions of {session} displays; devices sending {} msg/s each; edge {} cores / {} GiB, NATS node {} cores / {} GiB, {:.0}% of each used; NATS CPU per update x3 for R3; linear in sockets and messages",
        a.model_display_share * 100.0,
        a.model_display_rate,
        a.model_device_rate,
        a.model_edge_cores,
        a.model_edge_gib,
        a.model_nats_cores,
        a.model_nats_gib,
        a.model_usable * 100.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assumed() -> ModelArgs {
        ModelArgs {
            model_display_share: 0.5,
            model_display_rate: 0.1,
            model_device_rate: 0.05,
            model_edge_cores: 4.0,
            model_edge_gib: 8.0,
            model_nats_cores: 4.0,
            model_nats_gib: 8.0,
            model_usable: 0.5,
        }
    }

    fn measured() -> Measured {
        Measured {
            edge_kib_per_display: 16.0,
            edge_kib_per_device: 16.0,
            edge_us_per_delivered: 20.0,
            nats_kib_per_display: 0.5,
            nats_kib_per_device: 1.0,
            nats_us_per_update: 100.0,
            handler_us_per_update: 200.0,
            session_displays: 10,
        }
    }

    #[test]
    fn small_systems_get_the_minimum_for_failover() {
        let row = model(&measured(), &assumed(), 100_000);
        assert_eq!((row.displays, row.devices), (50_000, 50_000));
        // 100k × 16 KiB = 1.53 GiB of 4 usable: one edge by memory, two for failover.
        assert_eq!((row.edges, row.edge_bound), (2, "two for failover"));
        assert_eq!((row.nats_nodes, row.nats_bound), (3, "R3 cluster"));
        assert!((row.messages_per_sec - 7_500.0).abs() < 1e-6);
        // 50k × 0.1 / 10 = 500 updates/s × 200 µs = 0.1 core, at half use 0.2.
        assert!((row.handler_cores - 0.2).abs() < 1e-9);
    }

    #[test]
    fn the_larger_need_sizes_the_edges() {
        // 1M × 16 KiB = 15.3 GiB over 4 usable GiB = 3.8 → 4 edges by memory; CPU: 75k msg/s ×
        // 20 µs = 1.5 cores of 2 usable.
        let row = model(&measured(), &assumed(), 1_000_000);
        assert_eq!((row.edges, row.edge_bound), (4, "memory"));
        let mut cpu_heavy = measured();
        cpu_heavy.edge_us_per_delivered = 200.0;
        // 75k × 200 µs = 15 cores over 2 usable = 7.5 → 8 edges by CPU.
        let row = model(&cpu_heavy, &assumed(), 1_000_000);
        assert_eq!((row.edges, row.edge_bound), (8, "CPU"));
    }

    #[test]
    fn nats_grows_past_three_nodes_on_cpu() {
        let mut m = measured();
        // 1M: 500k displays × 0.1 / 10 = 5k updates/s × 1 ms × 3 = 15 cores over 2 = 7.5 → 8.
        m.nats_us_per_update = 1000.0;
        let row = model(&m, &assumed(), 1_000_000);
        assert_eq!((row.nats_nodes, row.nats_bound), (8, "CPU"));
    }
}
