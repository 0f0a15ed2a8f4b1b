//! `tablewire bench chaos`: the soak that proves nothing accepted is lost. It starts the README's
//! cluster — a 3-node NATS cluster with every stream and bucket at replicas 3, two edges, two
//! handlers (child processes, so SIGKILL is real) and a private PostgreSQL — puts displays, POS
//! terminals with idempotency keys, collaborative rooms and RFID readers under steady load, and
//! meanwhile kills edges, handlers and NATS nodes in turn (a NATS victim is the node leading the
//! streams and buckets whose leader has not been killed yet) and stops PostgreSQL for a while.
//! Clients behave as seed clients would: a write not answered is sent again (with the same
//! idempotency key where the seed has one) until it is, through either edge; sockets reconnect
//! and resync. At the end, after a quiet period, it compares what clients were told with what
//! was applied, delivered and written to SQL, and prints acknowledged, applied, lost,
//! duplicated, out of order, SQL rows, stuck keys and each fault's recovery time (see
//! [`recovery`]). It fails when anything acknowledged was lost, anything applied twice, or any
//! key left stuck. `--short` is the form CI runs (`tests/chaos.rs`).
//!
//! # Layout
//! - [`postgres`] — a private PostgreSQL instance the soak stops and starts.
//! - `cluster` — the processes under test, each killed and brought back.
//! - `faults` — the order of the faults, NATS leaders and victims, catch-up after a restart.
//! - [`recovery`] — which clients have been answered since a fault: the recovery times.
//! - `display`, `pos`, `collab`, `devices` — each domain's clients and their checks.

mod cluster;
mod collab;
mod devices;
mod display;
mod faults;
mod pos;
pub mod postgres;
pub mod recovery;

use crate::client::{WsRead, WsWrite};
use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use fastwebsockets::{Frame, OpCode, Payload};
use faults::{Fault, Leadership, Outcome};
use recovery::{Kind, Recovery};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tablewire_nats::{Topology, resource};
use tablewire_schemas::Domain;
use tokio::sync::mpsc;

/// Flags of `tablewire bench chaos`.
#[derive(Debug, Clone, Args)]
pub struct ChaosArgs {
    /// The form CI runs: about two minutes, one edge, one handler and one PostgreSQL fault and
    /// 3 NATS node kills (each count below still applies when given).
    #[arg(long)]
    pub short: bool,
    /// Seconds of load the faults are spread over (default 420; --short 45). The run lasts
    /// longer when the faults take longer.
    #[arg(long)]
    pub duration: Option<u64>,
    /// NATS node kills (default 20; --short 3).
    #[arg(long)]
    pub nats_kills: Option<usize>,
    /// Edge kills, alternating between the two edges (default 4; --short 1).
    #[arg(long)]
    pub edge_kills: Option<usize>,
    /// Handler kills, alternating between the two handlers (default 4; --short 1).
    #[arg(long)]
    pub handler_kills: Option<usize>,
    /// PostgreSQL stops (default 2; --short 1).
    #[arg(long)]
    pub postgres_stops: Option<usize>,
    /// Seconds PostgreSQL stays stopped (default 20; --short 5).
    #[arg(long)]
    pub postgres_outage: Option<u64>,
    /// Display sessions updated at once (each with two displays).
    #[arg(long, default_value_t = 3)]
    pub sessions: usize,
    /// Updates per second to each display session.
    #[arg(long, default_value_t = 5.0)]
    pub update_rate: f64,
    /// POS tenants (two terminals and a kitchen each).
    #[arg(long, default_value_t = 3)]
    pub tenants: usize,
    /// Orders per second of each POS terminal.
    #[arg(long, default_value_t = 3.0)]
    pub order_rate: f64,
    /// Collaborative rooms open at once (three participants each).
    #[arg(long, default_value_t = 3)]
    pub rooms: usize,
    /// Quantity changes per second of each participant.
    #[arg(long, default_value_t = 2.0)]
    pub change_rate: f64,
    /// Quantity changes of each participant before a room is finalized (at most 98).
    #[arg(long, default_value_t = 40)]
    pub changes_per_room: u64,
    /// RFID readers.
    #[arg(long, default_value_t = 12)]
    pub devices: usize,
    /// Scans per second of each reader.
    #[arg(long, default_value_t = 1.0)]
    pub scan_rate: f64,
    /// Provisioning: seconds a silent worker keeps its partitions (`--pin-timeout-secs`).
    #[arg(long, default_value_t = 1.0)]
    pub pin_timeout_secs: f64,
    /// Provisioning: seconds a worker's presence lasts unrefreshed (`--worker-ttl-secs`).
    #[arg(long, default_value_t = 1.0)]
    pub worker_ttl_secs: f64,
    /// Provisioning: seconds before an unacknowledged command is delivered again.
    #[arg(long, default_value_t = 2.0)]
    pub ack_wait_secs: f64,
    /// Log filter of the edges and handlers (their logs go to the run's directory).
    #[arg(long, default_value = "info,async_nats=warn")]
    pub child_log: String,
    /// Keep the run's directory (child logs, PostgreSQL) even when nothing was lost.
    #[arg(long)]
    pub keep: bool,
}

/// The run's shape once `--short` and the defaults are applied.
struct Plan {
    duration: Duration,
    nats: usize,
    edges: usize,
    handlers: usize,
    postgres: usize,
    outage: Duration,
}

impl Plan {
    fn of(args: &ChaosArgs) -> Plan {
        let pick = |given: Option<usize>, full: usize, short: usize| {
            given.unwrap_or(if args.short { short } else { full })
        };
        Plan {
            duration: Duration::from_secs(args.duration.unwrap_or(if args.short {
                45
            } else {
                420
            })),
            nats: pick(args.nats_kills, 20, 3),
            edges: pick(args.edge_kills, 4, 1),
            handlers: pick(args.handler_kills, 4, 1),
            postgres: pick(args.postgres_stops, 2, 1),
            outage: Duration::from_secs(args.postgres_outage.unwrap_or(if args.short {
                5
            } else {
                20
            })),
        }
    }
}

/// What every load client shares.
pub(crate) struct Ctx {
    /// Names this run's sessions, tenants, rooms and readers.
    run: String,
    /// The bench clock's zero: writes carry their send time as nanoseconds since it.
    start: Instant,
    edges: Vec<SocketAddr>,
    recovery: Arc<Recovery>,
    /// No new writes: each client finishes the one it has and stops.
    stopping: AtomicBool,
    /// Give up on writes still unanswered long after the stop.
    abandoned: AtomicBool,
}

impl Ctx {
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed)
    }

    /// Edge `i` (any number: clients move to the next on each reconnect).
    fn edge(&self, i: usize) -> SocketAddr {
        self.edges[i % self.edges.len()]
    }

    fn ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_nanos() as u64
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_millis() as u64
    }

    fn instant(&self, ns: u64) -> Instant {
        self.start + Duration::from_nanos(ns)
    }
}

/// A number in a frame (JSON integers, or floats as some clients send them).
fn json_u64(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

/// A JWT for `tenant` with `role`, valid for a day.
fn token(tenant: &str, role: &str) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = tablewire_schemas::Claims {
        sub: format!("chaos-{role}"),
        tenant: Some(tenant.to_string()),
        role: Some(role.to_string()),
        exp: now + 86_400,
        iat: Some(now),
    };
    Ok(tablewire_edge::mint(crate::system::JWT_SECRET, &claims)?)
}

/// What a read from a [`Socket`] gave.
enum Incoming {
    /// A JSON text message.
    Frame(Value),
    /// The socket closed (or failed).
    Closed,
    /// Nothing within the wait.
    Quiet,
}

/// A client WebSocket whose frames a task of its own reads (answering pings), so that waiting
/// for one with a deadline never cuts a frame in half.
struct Socket {
    writer: Arc<tokio::sync::Mutex<WsWrite>>,
    frames: mpsc::Receiver<Value>,
    reader: tokio::task::JoinHandle<()>,
}

impl Socket {
    /// Opens `path` on `addr` (at most 5 s).
    async fn connect(addr: SocketAddr, path: &str) -> anyhow::Result<Socket> {
        let (read, write) = tokio::time::timeout(
            Duration::from_secs(5),
            crate::client::websocket_split(addr, path),
        )
        .await
        .context("connect timed out")??;
        let writer = Arc::new(tokio::sync::Mutex::new(write));
        let (sender, frames) = mpsc::channel(4096);
        let reader = tokio::spawn(read_frames(read, writer.clone(), sender));
        Ok(Socket {
            writer,
            frames,
            reader,
        })
    }

    /// Sends a text message (at most 5 s).
    async fn send(&self, text: &str) -> anyhow::Result<()> {
        let frame = Frame::text(Payload::Owned(text.as_bytes().to_vec()));
        tokio::time::timeout(Duration::from_secs(5), async {
            self.writer.lock().await.write_frame(frame).await
        })
        .await
        .context("send timed out")??;
        Ok(())
    }

    /// The next message, waiting at most `wait`.
    async fn next(&mut self, wait: Duration) -> Incoming {
        match tokio::time::timeout(wait, self.frames.recv()).await {
            Err(_) => Incoming::Quiet,
            Ok(None) => Incoming::Closed,
            Ok(Some(frame)) => Incoming::Frame(frame),
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Reads a socket's messages (reassembling fragments) until it closes; pongs go out through
/// the shared writer.
async fn read_frames(
    mut read: WsRead,
    writer: Arc<tokio::sync::Mutex<WsWrite>>,
    sender: mpsc::Sender<Value>,
) {
    let mut obligated = move |frame: Frame<'_>| {
        let writer = writer.clone();
        let (opcode, payload) = (frame.opcode, frame.payload.to_vec());
        async move {
            let frame = Frame::new(true, opcode, None, Payload::Owned(payload));
            writer.lock().await.write_frame(frame).await
        }
    };
    let mut partial: Option<Vec<u8>> = None;
    while let Ok(frame) = read.read_frame(&mut obligated).await {
        let message = match frame.opcode {
            OpCode::Text if frame.fin => frame.payload.to_vec(),
            OpCode::Text => {
                partial = Some(frame.payload.to_vec());
                continue;
            }
            OpCode::Continuation => match partial.as_mut() {
                Some(buffer) => {
                    buffer.extend_from_slice(&frame.payload);
                    if !frame.fin {
                        continue;
                    }
                    partial.take().unwrap_or_default()
                }
                None => continue,
            },
            OpCode::Close => break,
            _ => continue,
        };
        let Ok(value) = serde_json::from_slice::<Value>(&message) else {
            continue;
        };
        if sender.send(value).await.is_err() {
            break;
        }
    }
}

/// How an HTTP write ended.
enum Answer {
    /// 2xx.
    Ok,
    /// Another status a retry would not change, with the body.
    Refused(String),
    /// Given up on (the run was abandoned).
    Unanswered,
}

/// Sends an HTTP write until it is answered: connection failures, timeouts and retryable
/// statuses (408, 429, 5xx) are sent again, each time through the next edge. The caller's
/// headers carry its idempotency key, where the route takes one.
async fn http_write(
    ctx: &Ctx,
    edge: &mut usize,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: String,
) -> Answer {
    let body = Bytes::from(body);
    loop {
        if ctx.abandoned() {
            return Answer::Unanswered;
        }
        let sent = tokio::time::timeout(
            Duration::from_secs(10),
            crate::client::request(ctx.edge(*edge), method, path, headers, body.clone()),
        )
        .await;
        match sent {
            Ok(Ok((status, _))) if (200..300).contains(&status) => return Answer::Ok,
            Ok(Ok((408 | 429 | 500..=599, _))) => {}
            Ok(Ok((status, body))) => {
                return Answer::Refused(format!("{status} {}", String::from_utf8_lossy(&body)));
            }
            _ => {}
        }
        *edge += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One domain's figures.
pub(crate) struct Tally {
    domain: &'static str,
    acknowledged: u64,
    applied: u64,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    stale_snapshots: u64,
    refused: u64,
    reconnects: u64,
    /// Rows found, rows expected, of what.
    sql: Option<(u64, u64, &'static str)>,
    notes: Vec<String>,
    notes_dropped: usize,
}

/// Most notes kept per domain.
const MAX_NOTES: usize = 25;

impl Tally {
    fn new(domain: &'static str) -> Tally {
        Tally {
            domain,
            acknowledged: 0,
            applied: 0,
            lost: 0,
            duplicated: 0,
            out_of_order: 0,
            stale_snapshots: 0,
            refused: 0,
            reconnects: 0,
            sql: None,
            notes: Vec::new(),
            notes_dropped: 0,
        }
    }

    fn note(&mut self, note: String) {
        if self.notes.len() < MAX_NOTES {
            self.notes.push(note);
        } else {
            self.notes_dropped += 1;
        }
    }
}

/// Keys left in the input streams, and parked commands, after the quiet period.
struct Leftovers {
    /// Input stream subjects (one per key) still holding commands, with how many.
    stuck: Vec<(String, usize)>,
    /// Parked commands by subject (`tw.parked.{domain}.{reason}`).
    parked: Vec<(String, usize)>,
    /// Seconds the input streams took to empty after the load stopped, when they did.
    drained_after: Option<Duration>,
    /// Records still waiting for SQL.
    records_waiting: u64,
}

/// Waits (at most `limit`) for the input streams to empty, then lists what is left in them and
/// in the parked stream; then waits for the records stream to empty too.
async fn quiet(js: &async_nats::jetstream::Context, limit: Duration) -> anyhow::Result<Leftovers> {
    use futures::TryStreamExt;
    let inputs: Vec<String> = Domain::ALL
        .iter()
        .map(|d| resource::input_stream(*d))
        .collect();
    let started = Instant::now();
    let messages = |names: Vec<String>| async move {
        let mut total = 0;
        for name in names {
            total += js.get_stream(&name).await?.cached_info().state.messages;
        }
        Ok::<u64, anyhow::Error>(total)
    };
    let mut drained_after = None;
    while started.elapsed() < limit {
        if matches!(messages(inputs.clone()).await, Ok(0)) {
            drained_after = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut stuck = Vec::new();
    for name in &inputs {
        let stream = js.get_stream(name).await?;
        let subjects: Vec<(String, usize)> =
            stream.info_with_subjects(">").await?.try_collect().await?;
        stuck.extend(subjects.into_iter().filter(|(_, n)| *n > 0));
    }
    let parked_stream = js.get_stream(resource::PARKED_STREAM).await?;
    let parked: Vec<(String, usize)> = parked_stream
        .info_with_subjects(">")
        .await?
        .try_collect()
        .await?;
    let records_started = Instant::now();
    let mut records_waiting = u64::MAX;
    while records_started.elapsed() < Duration::from_secs(180) {
        records_waiting = messages(vec![resource::RECORDS_STREAM.to_string()])
            .await
            .unwrap_or(u64::MAX);
        if records_waiting == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(Leftovers {
        stuck,
        parked,
        drained_after,
        records_waiting,
    })
}

/// Runs the soak.
pub async fn run(args: ChaosArgs) -> anyhow::Result<()> {
    let plan = Plan::of(&args);
    let faults = faults::schedule(plan.nats, plan.edges, plan.handlers, plan.postgres);
    println!(
        "chaos soak: 3 NATS nodes (replicas 3), {} edges, {} handlers, PostgreSQL; {} s of load, {} faults ({} NATS node kills, {} edge kills, {} handler kills, {} PostgreSQL stops of {} s)",
        cluster::EDGES,
        cluster::HANDLERS,
        plan.duration.as_secs(),
        faults.len(),
        plan.nats,
        plan.edges,
        plan.handlers,
        plan.postgres,
        plan.outage.as_secs()
    );
    println!(
        "  load: {} display sessions x {}/s, {} POS tenants x 2 terminals x {}/s, {} rooms x 3 participants x {}/s, {} readers x {}/s",
        args.sessions,
        args.update_rate,
        args.tenants,
        args.order_rate,
        args.rooms,
        args.change_rate,
        args.devices,
        args.scan_rate
    );
    let dir = std::env::temp_dir().join(format!("tablewire-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context("creating the run's directory")?;
    let outcome = soak(&args, &plan, &faults, &dir).await;
    let keep = args.keep || !matches!(outcome, Ok(true));
    if keep {
        println!("  child logs and PostgreSQL data kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    match outcome {
        Ok(true) => Ok(()),
        Ok(false) => {
            anyhow::bail!("the chaos soak lost, duplicated or left stuck what it must not")
        }
        Err(e) => Err(e),
    }
}

/// Starts everything, runs the load and the faults, checks; true when nothing was lost,
/// duplicated or left stuck.
async fn soak(args: &ChaosArgs, plan: &Plan, faults: &[Fault], dir: &Path) -> anyhow::Result<bool> {
    let topology = Topology {
        ack_wait: Duration::from_secs_f64(args.ack_wait_secs),
        pin_timeout: Duration::from_secs_f64(args.pin_timeout_secs),
        worker_ttl: Duration::from_secs_f64(args.worker_ttl_secs),
        ..Default::default()
    };
    let started = Instant::now();
    let mut procs = cluster::Processes::start(dir, &topology, &args.child_log).await?;
    println!(
        "  started in {:.1} s: NATS {}, edges {:?}, PostgreSQL {}",
        started.elapsed().as_secs_f64(),
        procs.urls(),
        procs.edge_addrs,
        procs.postgres.url()
    );
    let nats = tablewire_nats::connect(&procs.urls(), "tablewire-chaos").await?;
    let js = async_nats::jetstream::new(nats.clone());
    let recovery = Recovery::new();
    let ctx = Arc::new(Ctx {
        run: std::process::id().to_string(),
        start: Instant::now(),
        edges: procs.edge_addrs.clone(),
        recovery: recovery.clone(),
        stopping: AtomicBool::new(false),
        abandoned: AtomicBool::new(false),
    });
    let displays = display::start(&ctx, args.sessions, args.update_rate);
    let pos = pos::start(&ctx, args.tenants, args.order_rate)?;
    let collab = collab::start(&ctx, args.rooms, args.change_rate, args.changes_per_room);
    let devices = devices::start(&ctx, args.devices, args.scan_rate).await?;
    // Every client answered once before the first fault.
    recovery.begin(Instant::now());
    let warm = recovery.wait(Duration::from_secs(60)).await;
    println!(
        "  every client answered {:.1} s after the load started{}",
        warm.all.unwrap_or_default().as_secs_f64(),
        if warm.not_recovered > 0 {
            format!(" (except {} still waiting after 60 s)", warm.not_recovered)
        } else {
            String::new()
        }
    );

    let load_started = Instant::now();
    let spacing = plan.duration / (faults.len() as u32 + 1);
    let mut leadership = Leadership::default();
    let mut outcomes = Vec::new();
    let mut aborted = None;
    println!("  faults (recovery: until every client is answered again, see the README):");
    for (i, fault) in faults.iter().enumerate() {
        let due = load_started + spacing * (i as u32 + 1);
        wait_supervising(&mut procs, due, load_started).await;
        match faults::inflict(
            *fault,
            &mut procs,
            &recovery,
            &js,
            &mut leadership,
            plan.outage,
            load_started,
        )
        .await
        {
            Ok(outcome) => {
                println!("    {}", fault_line(i + 1, &outcome));
                outcomes.push(outcome);
            }
            Err(e) => {
                println!("    {:>2} {}: FAILED: {e:#}", i + 1, fault.kind());
                aborted = Some(format!("fault {} ({}): {e:#}", i + 1, fault.kind()));
                break;
            }
        }
        for line in procs.supervise(load_started.elapsed()) {
            println!("    {line}");
        }
    }
    wait_supervising(&mut procs, load_started + plan.duration, load_started).await;
    let loaded = load_started.elapsed();

    // Stop: every client finishes the write it has; then the quiet period.
    ctx.stopping.store(true, Ordering::Relaxed);
    let stopped = Instant::now();
    let give_up = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(180)).await;
            ctx.abandoned.store(true, Ordering::Relaxed);
        })
    };
    let displays = display::finish(displays).await;
    let pos = pos::finish(pos).await;
    let collab = collab::finish(collab).await;
    let devices = devices::finish(devices).await;
    give_up.abort();
    println!(
        "  load stopped after {:.0} s; last writes answered and clients caught up {:.1} s later",
        loaded.as_secs_f64(),
        stopped.elapsed().as_secs_f64()
    );
    let leftovers = quiet(&js, Duration::from_secs(60)).await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&procs.postgres.url())
        .await
        .context("connecting to the soak's PostgreSQL")?;
    let tallies = vec![
        display::check(&ctx, displays, &pool).await,
        pos::check(pos, &pool, &js).await,
        collab::check(&ctx, collab, &pool).await,
        devices::check(&ctx, devices, &pool).await,
    ];
    pool.close().await;
    let _ = nats.drain().await;
    let restarts = std::mem::take(&mut procs.restarts);
    drop(procs);
    let clean = report(&tallies, &leftovers, &outcomes, &leadership, faults, dir);
    if let Some(why) = &aborted {
        println!("  the fault schedule stopped early: {why}");
    }
    for line in &restarts {
        println!("  {line}");
    }
    Ok(clean && aborted.is_none())
}

/// Sleeps until `until`, starting again (and reporting) any child that exits meanwhile.
async fn wait_supervising(procs: &mut cluster::Processes, until: Instant, load_started: Instant) {
    loop {
        for line in procs.supervise(load_started.elapsed()) {
            println!("    {line}");
        }
        let Some(left) = until.checked_duration_since(Instant::now()) else {
            return;
        };
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".to_string(), |d| format!("{:.2}", d.as_secs_f64()))
}

fn fault_line(n: usize, outcome: &Outcome) -> String {
    let r = &outcome.recovery;
    let by_kind = Kind::ALL
        .iter()
        .map(|k| format!("{} {}", k.name(), secs(r.by_kind[k.index()])))
        .collect::<Vec<_>>()
        .join(", ");
    let mut line = format!(
        "{n:>2} {:>6.1}s {:<10} {:<22} recovery {:>6} s ({by_kind}); back {} s",
        outcome.at.as_secs_f64(),
        outcome.fault.kind(),
        outcome.victim,
        r.all.map_or(
            format!("> {}", faults::RECOVERY_LIMIT.as_secs()),
            |d| format!("{:.2}", d.as_secs_f64())
        ),
        secs(outcome.back),
    );
    if !outcome.leaders.is_empty() {
        line.push_str(&format!("; led {} streams", outcome.leaders.len()));
    }
    if outcome.fault == Fault::Nats {
        line.push_str(&format!(
            "; every stream and consumer led again after {} s",
            secs(outcome.elected)
        ));
    }
    if r.not_recovered > 0 {
        line.push_str(&format!("; {} clients never answered", r.not_recovered));
    }
    if r.left > 0 {
        line.push_str(&format!("; {} clients ended before an answer", r.left));
    }
    if !outcome.note.is_empty() {
        line.push_str(&format!("; {}", outcome.note));
    }
    line
}

/// Prints the tables; true when nothing was lost, duplicated or left stuck.
fn report(
    tallies: &[Tally],
    leftovers: &Leftovers,
    outcomes: &[Outcome],
    leadership: &Leadership,
    faults: &[Fault],
    dir: &Path,
) -> bool {
    println!();
    println!(
        "  {:<8} {:>12} {:>8} {:>5} {:>10} {:>12} {:>15} {:>8} {:>10}  SQL rows / acknowledged",
        "domain",
        "acknowledged",
        "applied",
        "lost",
        "duplicated",
        "out of order",
        "stale snapshots",
        "refused",
        "reconnects"
    );
    let mut totals = [0u64; 4];
    for t in tallies {
        let sql = t.sql.map_or("-".to_string(), |(rows, expected, what)| {
            format!(
                "{rows} / {expected} {what}{}",
                if rows == expected { "" } else { " (MISMATCH)" }
            )
        });
        println!(
            "  {:<8} {:>12} {:>8} {:>5} {:>10} {:>12} {:>15} {:>8} {:>10}  {sql}",
            t.domain,
            t.acknowledged,
            t.applied,
            t.lost,
            t.duplicated,
            t.out_of_order,
            t.stale_snapshots,
            t.refused,
            t.reconnects
        );
        totals[0] += t.lost;
        totals[1] += t.duplicated;
        totals[2] += t.out_of_order;
        totals[3] += t.stale_snapshots;
    }
    let stuck_keys = leftovers.stuck.len() + leftovers.parked.len();
    println!(
        "  stuck keys: {} with commands left in an input stream {}, {} parked commands{}",
        leftovers.stuck.len(),
        leftovers.drained_after.map_or(
            "(input streams not empty 60 s after the load stopped)".to_string(),
            |d| format!(
                "(input streams empty {:.1} s after the load stopped)",
                d.as_secs_f64()
            )
        ),
        leftovers.parked.iter().map(|(_, n)| n).sum::<usize>(),
        if leftovers.records_waiting > 0 {
            format!("; {} records never reached SQL", leftovers.records_waiting)
        } else {
            String::new()
        }
    );
    for (subject, n) in leftovers.stuck.iter().chain(&leftovers.parked).take(20) {
        println!("    {subject}: {n}");
    }

    // Recovery by fault kind.
    println!("  recovery by fault (s; target: handler <= 2, NATS node <= 4):");
    for kind in ["nats node", "edge", "handler", "postgresql"] {
        let mut times: Vec<f64> = outcomes
            .iter()
            .filter(|o| o.fault.kind() == kind)
            .filter_map(|o| o.recovery.all.map(|d| d.as_secs_f64()))
            .collect();
        let unrecovered = outcomes
            .iter()
            .filter(|o| o.fault.kind() == kind && o.recovery.all.is_none())
            .count();
        let planned = faults.iter().filter(|f| f.kind() == kind).count();
        if planned == 0 {
            continue;
        }
        times.sort_by(f64::total_cmp);
        let median = times.get(times.len() / 2).copied();
        println!(
            "    {kind:<10} {} of {planned} done: median {}, max {}{}",
            times.len() + unrecovered,
            median.map_or("-".to_string(), |m| format!("{m:.2}")),
            times.last().map_or("-".to_string(), |m| format!("{m:.2}")),
            if unrecovered > 0 {
                format!(", {unrecovered} not recovered within the limit")
            } else {
                String::new()
            }
        );
    }
    let hit = leadership.hits.values().filter(|n| **n > 0).count();
    println!(
        "  leaders killed: {hit} of {} streams and buckets lost their leader at least once; kills per node {:?}",
        leadership.hits.len(),
        leadership.kills
    );
    let never: Vec<&String> = leadership
        .hits
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(s, _)| s)
        .collect();
    if !never.is_empty() {
        println!("    never: {never:?}");
    }
    println!(
        "    {}",
        leadership
            .hits
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for t in tallies {
        if t.notes.is_empty() {
            continue;
        }
        println!("  {} notes:", t.domain);
        for note in &t.notes {
            println!("    {note}");
        }
        if t.notes_dropped > 0 {
            println!("    … and {} more", t.notes_dropped);
        }
    }
    for line in log_summary(dir) {
        println!("  {line}");
    }
    let clean = totals[0] == 0 && totals[1] == 0 && stuck_keys == 0;
    println!(
        "chaos result: lost {}, duplicated {}, stuck {}, out of order {}, stale snapshots {} -> {}",
        totals[0],
        totals[1],
        stuck_keys,
        totals[2],
        totals[3],
        if clean { "PASS" } else { "FAIL" }
    );
    clean
}

/// Warnings and errors in each child's log.
fn log_summary(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return lines;
    };
    let mut logs: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        // The level sits between colour codes (tracing writes them to files too).
        let count = |level: &str| text.lines().filter(|l| l.contains(level)).count();
        lines.push(format!(
            "{}: {} WARN, {} ERROR lines",
            log.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            count("WARN"),
            count("ERROR")
        ));
    }
    lines
}
