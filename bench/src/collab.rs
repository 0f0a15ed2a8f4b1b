//! `tablewire bench collab`: R rooms × P participants on PartyKit-style room sockets. Each
//! participant joins, adds its items, then sends `update_quantity` on its own items — first as
//! fast as the system answers (a window of messages in flight per participant), then paced at
//! half that rate for latency (send → each participant has the event). Ends with a consistency
//! check: every participant's last order state equals the room's KV state, and totals add up;
//! then every room's initiator finalizes, every participant must get `order_finalized` and every
//! order must reach SQL (the SQL writer runs on a temporary SQLite file or `--database-url`).

use crate::report::{
    CpuMeter, PhaseHistograms, PhaseSamples, latency_line, pipeline_lines, scrape,
};
use crate::system::{JWT_SECRET, Shape, report_rows};
use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use fastwebsockets::{Frame, OpCode, Payload};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tablewire_schemas::{Claims, Domain};
use tokio::sync::{Notify, Semaphore};

/// Flags of `tablewire bench collab`.
#[derive(Debug, Clone, Args)]
pub struct CollabArgs {
    /// Rooms.
    #[arg(long, default_value_t = 100)]
    pub rooms: usize,
    /// Participants per room.
    #[arg(long, default_value_t = 4)]
    pub participants: usize,
    /// Items each participant adds before the measured phases.
    #[arg(long, default_value_t = 2)]
    pub items: usize,
    /// Messages in flight per participant in the throughput phase.
    #[arg(long, default_value_t = 4)]
    pub window: usize,
    /// Seconds of each measured phase.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Handler processes.
    #[arg(long, default_value_t = 1)]
    pub handlers: usize,
    #[command(flatten)]
    pub streams: crate::system::StreamArgs,
    /// Changes per second for the latency phase (default: half of the throughput phase).
    #[arg(long)]
    pub latency_rate: Option<f64>,
    /// Where finalized orders are written (default: a SQLite file in a temporary directory).
    #[arg(long)]
    pub database_url: Option<String>,
}

type Reader = crate::client::WsRead;
type Writer = crate::client::WsWrite;

/// What every task shares.
struct Shared {
    start: Instant,
    /// 0 setup, 1 throughput, 2 latency, 3 stopped.
    phase: AtomicU8,
    /// Changes applied (own events seen by their senders), per phase.
    applied: [AtomicU64; 3],
    errors: AtomicU64,
    rate_limited: AtomicU64,
    ready: AtomicU64,
    /// `order_finalized` frames received, by every participant.
    finalized: AtomicU64,
    changed: Notify,
    /// Between the phases: nobody sends, so the throughput phase's backlog drains before the
    /// latency phase measures anything.
    draining: AtomicBool,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

/// One room: each participant's send log (send time and phase of its k-th change).
struct Room {
    sends: Vec<Mutex<Vec<(u64, u8)>>>,
}

/// One participant's state shared between its reader and writer.
struct Participant {
    room: Arc<Room>,
    index: usize,
    items: Mutex<Vec<String>>,
    permits: Semaphore,
    pause_until_ns: AtomicU64,
    last_frame: Mutex<Option<Bytes>>,
    stop: AtomicBool,
    /// Where in one pacing interval this participant's paced sends fall (0..1), so that paced
    /// load arrives evenly rather than in a burst of every participant at once.
    offset: f64,
}

fn token() -> anyhow::Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = Claims {
        sub: "bench".into(),
        tenant: Some("bench".into()),
        role: Some("customer".into()),
        exp: now + 3600,
        iat: Some(now),
    };
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )?)
}

async fn connect(addr: SocketAddr, path: &str) -> anyhow::Result<(Reader, Writer)> {
    crate::client::websocket_split(addr, path).await
}

/// The text after `key` up to the next `"`.
fn text_after<'a>(frame: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let start = memchr::memmem::find(frame, key)? + key.len();
    let len = memchr::memchr(b'"', &frame[start..])?;
    Some(&frame[start..start + len])
}

fn participant_index(id: &[u8]) -> Option<usize> {
    std::str::from_utf8(id.strip_prefix(b"p")?)
        .ok()?
        .parse()
        .ok()
}

async fn read_loop(mut reader: Reader, me: Arc<Participant>, shared: Arc<Shared>) -> PhaseSamples {
    let mut samples = PhaseSamples::default();
    let mut cursors = vec![0usize; me.room.sends.len()];
    let mut ignore = |_frame: Frame<'_>| async { Ok::<(), std::io::Error>(()) };
    let my_id = format!("p{}", me.index);
    loop {
        let frame = match reader.read_frame(&mut ignore).await {
            Ok(frame) => frame,
            Err(_) => break,
        };
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text => {}
            _ => continue,
        }
        let payload: &[u8] = &frame.payload;
        if payload.starts_with(br#"{"code""#)
            || memchr::memmem::find(payload, br#""type":"error""#).is_some()
        {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            if let Some(wait) = crate::client::number_after(payload, b"\"retryAfterMs\":") {
                shared.rate_limited.fetch_add(1, Ordering::Relaxed);
                me.pause_until_ns
                    .fetch_max(shared.now_ns() + wait * 1_000_000, Ordering::Relaxed);
            }
            me.permits.add_permits(1);
            continue;
        }
        let kind = text_after(payload, br#""type":""#).unwrap_or_default();
        let now = shared.now_ns();
        match kind {
            b"item_added" => {
                *me.last_frame.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Bytes::copy_from_slice(payload));
                if text_after(payload, br#""addedBy":""#) == Some(my_id.as_bytes())
                    && let Some(id) = text_after(payload, br#""id":""#)
                {
                    let mut items = me.items.lock().unwrap_or_else(|p| p.into_inner());
                    items.push(String::from_utf8_lossy(id).into_owned());
                    shared.changed.notify_waiters();
                }
            }
            b"quantity_updated" => {
                *me.last_frame.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Bytes::copy_from_slice(payload));
                let (Some(sender), Some(quantity)) = (
                    text_after(payload, br#""addedBy":""#).and_then(participant_index),
                    crate::client::number_after(payload, b"\"quantity\":"),
                ) else {
                    continue;
                };
                let Some(log) = me.room.sends.get(sender) else {
                    continue;
                };
                let sent = {
                    let log = log.lock().unwrap_or_else(|p| p.into_inner());
                    // The sender's k-th change sets quantity k % 99 + 1; skip rejected ones.
                    let mut k = cursors[sender];
                    while k < log.len() && (k as u64 % 99) + 1 != quantity {
                        k += 1;
                    }
                    cursors[sender] = k + 1;
                    log.get(k).copied()
                };
                if let Some((sent_ns, phase)) = sent {
                    let phase = usize::from(phase.min(2));
                    samples.record(phase, sent_ns, now);
                    if sender == me.index {
                        shared.applied[phase].fetch_add(1, Ordering::Relaxed);
                        me.permits.add_permits(1);
                    }
                }
            }
            b"order_finalized" => {
                shared.finalized.fetch_add(1, Ordering::Relaxed);
            }
            b"participant_joined" | b"sync" => {
                *me.last_frame.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Bytes::copy_from_slice(payload));
            }
            _ => {}
        }
    }
    samples
}

async fn send(writer: &mut Writer, text: String) -> anyhow::Result<()> {
    writer
        .write_frame(Frame::text(Payload::Owned(text.into_bytes())))
        .await
        .context("send")
}

/// Joins, adds the items, then sends `update_quantity` as the phases say; gives the socket back
/// when the phases end.
async fn write_loop(
    mut writer: Writer,
    me: Arc<Participant>,
    shared: Arc<Shared>,
    items: usize,
    pace: Arc<Mutex<Option<Duration>>>,
) -> anyhow::Result<Writer> {
    let id = format!("p{}", me.index);
    send(
        &mut writer,
        format!(
            r#"{{"type":"join","participantId":"{id}","participantName":"P{}"}}"#,
            me.index
        ),
    )
    .await?;
    for i in 0..items {
        send(
            &mut writer,
            format!(
                r#"{{"type":"add_item","participantId":"{id}","data":{{"dishName":"Dish {i}","dishType":"veg","quantity":1,"price":{}}}}}"#,
                100 + i * 25 + me.index
            ),
        )
        .await?;
    }
    loop {
        let notified = shared.changed.notified();
        if me.items.lock().unwrap_or_else(|p| p.into_inner()).len() >= items {
            break;
        }
        notified.await;
    }
    shared.ready.fetch_add(1, Ordering::Relaxed);
    while shared.phase.load(Ordering::Relaxed) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let own: Vec<String> = me.items.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut k: u64 = 0;
    let mut next: Option<Instant> = None;
    loop {
        let phase = shared.phase.load(Ordering::Relaxed);
        if phase >= 3 || me.stop.load(Ordering::Relaxed) {
            return Ok(writer);
        }
        if shared.draining.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let paced = *pace.lock().unwrap_or_else(|p| p.into_inner());
        match paced {
            Some(interval) if phase == 2 => {
                let at = *next.get_or_insert_with(|| Instant::now() + interval.mul_f64(me.offset));
                if let Some(wait) = at.checked_duration_since(Instant::now()) {
                    tokio::time::sleep(wait).await;
                }
                next = Some(at + interval);
            }
            _ => {
                let Ok(permit) =
                    tokio::time::timeout(Duration::from_millis(200), me.permits.acquire()).await
                else {
                    continue;
                };
                if let Ok(p) = permit {
                    p.forget();
                }
            }
        }
        let pause = me.pause_until_ns.load(Ordering::Relaxed);
        let now = shared.now_ns();
        if pause > now {
            tokio::time::sleep(Duration::from_nanos(pause - now)).await;
        }
        let item = &own[(k as usize) % own.len()];
        let quantity = k % 99 + 1;
        me.room.sends[me.index]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((shared.now_ns(), shared.phase.load(Ordering::Relaxed)));
        k += 1;
        send(
            &mut writer,
            format!(
                r#"{{"type":"update_quantity","participantId":"{id}","timestamp":{k},"data":{{"itemId":"{item}","quantity":{quantity}}}}}"#
            ),
        )
        .await?;
    }
}

/// Runs the collab benchmark.
pub async fn run(args: CollabArgs) -> anyhow::Result<()> {
    measure(args, None).await.map(|_| ())
}

/// Runs the collab benchmark and returns the paced phase's send → each participant latencies;
/// with a floor probe, a floor phase runs on the same nats-server before and after that phase.
pub async fn measure(
    args: CollabArgs,
    floor: Option<&crate::floor::FloorProbe>,
) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    println!(
        "collab benchmark: {} rooms x {} participants, {} items each, window {}, {} s phases, {} handler process(es)",
        args.rooms, args.participants, args.items, args.window, args.duration, args.handlers
    );
    let tmp = std::env::temp_dir().join(format!("tablewire-bench-collab-{}", std::process::id()));
    let database_url = match &args.database_url {
        Some(url) => url.clone(),
        None => {
            std::fs::create_dir_all(&tmp).context("creating the benchmark's database directory")?;
            format!("sqlite://{}", tmp.join("collab.db").display())
        }
    };
    let mut system = crate::system::start(&Shape {
        handlers: args.handlers,
        streams: args.streams.clone(),
        domains: vec![Domain::Collab, Domain::Events],
        database_url: Some(database_url.clone()),
    })
    .await?;
    let addr = system.edge_addr;
    let token = token()?;
    let run_id = std::process::id();
    let shared = Arc::new(Shared {
        start: Instant::now(),
        phase: AtomicU8::new(0),
        applied: Default::default(),
        errors: AtomicU64::new(0),
        rate_limited: AtomicU64::new(0),
        ready: AtomicU64::new(0),
        finalized: AtomicU64::new(0),
        changed: Notify::new(),
        draining: AtomicBool::new(false),
    });
    let pace: Arc<Mutex<Option<Duration>>> = Arc::new(Mutex::new(None));
    let mut everyone = Vec::new();
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    let mut rooms = Vec::new();
    for r in 0..args.rooms {
        let name = format!("bench-{run_id}-{r}");
        let room = Arc::new(Room {
            sends: (0..args.participants)
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
        });
        for p in 0..args.participants {
            let path = format!("/parties/collaborative_order/{name}?_pk=bench{p}&token={token}");
            let (reader, writer) = connect(addr, &path).await?;
            let me = Arc::new(Participant {
                room: room.clone(),
                index: p,
                items: Mutex::new(Vec::new()),
                permits: Semaphore::new(args.window.max(1)),
                pause_until_ns: AtomicU64::new(0),
                last_frame: Mutex::new(None),
                stop: AtomicBool::new(false),
                offset: (r * args.participants + p) as f64
                    / (args.rooms * args.participants).max(1) as f64,
            });
            readers.push(tokio::spawn(read_loop(reader, me.clone(), shared.clone())));
            writers.push(tokio::spawn(write_loop(
                writer,
                me.clone(),
                shared.clone(),
                args.items.max(1),
                pace.clone(),
            )));
            everyone.push((name.clone(), me));
        }
        rooms.push(name);
    }
    let total = (args.rooms * args.participants) as u64;
    wait_until(Duration::from_secs(60), || {
        shared.ready.load(Ordering::Relaxed) >= total
    })
    .await
    .context("participants did not all join and add their items")?;
    println!(
        "  {total} participants joined, {} items added",
        total * args.items as u64
    );

    // Phase 1: as fast as answered.
    let before = (scrape(addr).await, scrape(system.handler_metrics).await);
    let cpu = CpuMeter::start(&system.pids());
    let t1 = Instant::now();
    shared.phase.store(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    let applied1 = shared.applied[1].load(Ordering::Relaxed);
    let rate1 = applied1 as f64 / t1.elapsed().as_secs_f64();
    println!(
        "  throughput: {applied1} changes applied = {rate1:.0} changes/s across {} rooms ({:.0} per room), {} errors ({} rate limited)",
        args.rooms,
        rate1 / args.rooms as f64,
        shared.errors.load(Ordering::Relaxed),
        shared.rate_limited.load(Ordering::Relaxed),
    );
    println!("  {}", cpu.line());
    let after = (scrape(addr).await, scrape(system.handler_metrics).await);
    for line in pipeline_lines((&before.0, &after.0), (&before.1, &after.1)) {
        println!("    {line}");
    }
    let counter = |name: &str| {
        let key = format!("tablewire_handler_{name}_total{{domain=\"collab\"}}");
        after.1.counter_since(&before.1, &key)
    };
    println!(
        "    handler (collab): {:.0} applied in {:.0} state writes, {:.0} untrusted batches, {:.0} CAS conflicts",
        counter("applied"),
        counter("state_writes"),
        counter("untrusted_batches"),
        counter("cas_conflicts"),
    );

    // Drain: stop sending until every change of the throughput phase has come back, so that
    // its backlog is not counted as latency of the next phase.
    shared.draining.store(true, Ordering::Relaxed);
    let mut last = u64::MAX;
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    while last != shared.applied[1].load(Ordering::Relaxed) && Instant::now() < drain_deadline {
        last = shared.applied[1].load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Phase 2: paced at half that rate.
    let rate = args.latency_rate.unwrap_or(rate1 / 2.0).max(1.0);
    *pace.lock().unwrap_or_else(|p| p.into_inner()) =
        Some(Duration::from_secs_f64(total as f64 / rate));
    if let Some(floor) = floor {
        floor.measure(system.nats.client_url()).await?;
    }
    let errors_before = shared.errors.load(Ordering::Relaxed);
    let before = (scrape(addr).await, scrape(system.handler_metrics).await);
    let cpu = CpuMeter::start(&system.pids());
    let t2 = Instant::now();
    shared.phase.store(2, Ordering::Relaxed);
    shared.draining.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    shared.phase.store(3, Ordering::Relaxed);
    let elapsed2 = t2.elapsed().as_secs_f64();
    let cpu_line = cpu.line();
    let after = (scrape(addr).await, scrape(system.handler_metrics).await);
    if let Some(floor) = floor {
        floor.measure(system.nats.client_url()).await?;
    }
    let mut sockets = Vec::with_capacity(writers.len());
    for w in writers {
        match w.await {
            Ok(Ok(writer)) => sockets.push(Some(writer)),
            Ok(Err(e)) => {
                println!("  a participant stopped sending: {e}");
                sockets.push(None);
            }
            Err(_) => sockets.push(None),
        }
    }
    // Let the last changes arrive.
    let mut last = u64::MAX;
    while last != shared.applied[2].load(Ordering::Relaxed) {
        last = shared.applied[2].load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let applied2 = shared.applied[2].load(Ordering::Relaxed);

    // Consistency: every participant's last state equals the room's KV state.
    let client = tablewire_nats::connect(system.nats.client_url(), "tablewire-bench").await?;
    let kv = async_nats::jetstream::new(client.clone())
        .get_key_value(tablewire_nats::resource::state_bucket(Domain::Collab))
        .await?;
    let (mut matching, mut mismatched, mut bad_totals) = (0, 0, 0);
    let mut initiators = std::collections::HashMap::new();
    for room in &rooms {
        let stored = kv
            .get(tablewire_nats::resource::state_key("bench", room))
            .await?
            .context("a room without state")?;
        let stored: serde_json::Value = serde_json::from_slice(&stored)?;
        // What clients see of the stored room: its order state, without internal fields.
        let order: tablewire_schemas::collab::OrderState =
            serde_json::from_value(stored["state"].clone())?;
        let state = &serde_json::to_value(order)?;
        if let Some(initiator) = state["initiatedBy"].as_str() {
            initiators.insert(room.clone(), initiator.to_string());
        }
        let items = state["items"].as_array().cloned().unwrap_or_default();
        let sum: u64 = items
            .iter()
            .map(|i| i["price"].as_u64().unwrap_or(0) * i["quantity"].as_u64().unwrap_or(0))
            .sum();
        if state["total"].as_u64() != Some(sum) {
            bad_totals += 1;
        }
        for (name, me) in everyone.iter().filter(|(n, _)| n == room) {
            let frame = me
                .last_frame
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let seen: Option<serde_json::Value> =
                frame.and_then(|f| serde_json::from_slice(&f).ok());
            let seen_state = seen.as_ref().map(|f| match f["data"].get("orderState") {
                Some(s) => s.clone(),
                None => f["data"].clone(),
            });
            if seen_state.as_ref() == Some(state) {
                matching += 1;
            } else {
                mismatched += 1;
                let _ = name;
            }
        }
    }
    let mut hist = PhaseHistograms::default();
    for (_, me) in &everyone {
        me.stop.store(true, Ordering::Relaxed);
    }

    // Every room's initiator finalizes: each participant must hear of it and each order must
    // reach SQL through the records stream.
    let finalize_started = Instant::now();
    let mut finalizing = 0;
    for ((room, me), socket) in everyone.iter().zip(sockets.iter_mut()) {
        let id = format!("p{}", me.index);
        if initiators.get(room) == Some(&id)
            && let Some(writer) = socket
        {
            send(
                writer,
                format!(r#"{{"type":"finalize","participantId":"{id}"}}"#),
            )
            .await?;
            finalizing += 1;
        }
    }
    let heard = wait_until(Duration::from_secs(60), || {
        shared.finalized.load(Ordering::Relaxed) >= total
    })
    .await;
    println!(
        "  finalized: {finalizing} of {} rooms; {} of {total} participants got order_finalized{}",
        rooms.len(),
        shared.finalized.load(Ordering::Relaxed),
        if heard.is_ok() {
            format!(" in {:.2} s", finalize_started.elapsed().as_secs_f64())
        } else {
            " (timed out)".to_string()
        }
    );
    report_rows(
        &database_url,
        "SELECT COUNT(*) FROM collab_orders",
        None,
        rooms.len() as u64,
        "finalized orders",
        "finalize",
    )
    .await?;
    drop(sockets);
    // Closing the edge ends every participant's reader.
    let _ = system.edge.start_kill();
    for r in readers {
        if let Ok(samples) = r.await {
            hist.add(&samples);
        }
    }
    println!(
        "  throughput-phase latency (send -> each participant): {}",
        latency_line(hist.phase(1))
    );
    println!(
        "  latency at {rate:.0} changes/s target ({:.0} applied/s, {} errors): {}",
        applied2 as f64 / elapsed2,
        shared.errors.load(Ordering::Relaxed) - errors_before,
        latency_line(hist.phase(2))
    );
    println!("  {cpu_line}");
    for line in pipeline_lines((&before.0, &after.0), (&before.1, &after.1)) {
        println!("    {line}");
    }
    // Closed before nats-server stops, so it does not log a lost connection.
    let _ = client.drain().await;
    drop(system);
    println!(
        "  consistency: {matching} participants' last state equals KV, {mismatched} differ; {} rooms, {bad_totals} with a wrong total",
        rooms.len()
    );
    let _ = std::fs::remove_dir_all(&tmp);
    if mismatched > 0 || bad_totals > 0 {
        bail!("inconsistent rooms");
    }
    if finalizing != rooms.len() || heard.is_err() {
        bail!("not every room was finalized and heard of");
    }
    Ok(hist.phase(2).clone())
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
