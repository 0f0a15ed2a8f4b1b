//! Display clients (seed 000). Each poster owns one session at a time: it inits it, then posts
//! `--per-session` updates over HTTP with an `Idempotency-Key`, each retried (against either
//! edge) until answered, then moves to a new session. Each session has two displays, one per
//! edge to start with, reconnecting to the other when theirs dies. Sessions stay under the
//! 100 updates a session keeps, so its final state must hold every acknowledged update exactly
//! once, in order.
//!
//! Checks: the final state (`GET /session/{id}/state`) against what was acknowledged; every
//! display got every acknowledged update (by event or in a snapshot); a display's `seq` never
//! went backwards or skipped without a snapshot in between; no snapshot older than what the
//! display had already seen; `display_sessions` in SQL has every session whose init was
//! answered.

use super::recovery::{Kind, Pacer};
use super::{Answer, Ctx, Incoming, Socket, Tally, http_write, json_u64};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Updates per session: below the 100 a session keeps, so its final state shows them all.
pub(super) const PER_SESSION: u64 = 80;

/// The tenant display sessions are initialised for.
const TENANT: &str = "chaos";

/// What a session's poster has done so far, shared with its displays.
struct Progress {
    id: String,
    acked: std::sync::Mutex<Vec<u64>>,
    done: AtomicBool,
    done_at_ms: AtomicU64,
}

/// What one display saw.
#[derive(Default)]
struct View {
    /// Update number → the `seq` of each event that carried it.
    events: BTreeMap<u64, BTreeSet<u64>>,
    /// Update numbers seen in snapshots.
    in_snapshots: BTreeSet<u64>,
    last_seq: Option<u64>,
    backwards: u64,
    skips: u64,
    stale_snapshots: u64,
    snapshot_duplicates: u64,
    reconnects: u64,
    notes: Vec<String>,
}

impl View {
    fn seen(&self, n: u64) -> bool {
        self.events.contains_key(&n) || self.in_snapshots.contains(&n)
    }

    /// Takes one frame; returns the send time (bench clock, ns) of the newest write it shows.
    fn take(&mut self, frame: &Value, session: &str) -> Option<u64> {
        match frame["type"].as_str() {
            Some("initial_state") => {
                let seq = json_u64(&frame["seq"])?;
                if let Some(last) = self.last_seq
                    && seq < last
                {
                    self.stale_snapshots += 1;
                    self.notes.push(format!(
                        "{session}: snapshot at seq {seq} after seq {last} was delivered"
                    ));
                }
                self.last_seq = Some(seq);
                let updates = frame["state"]["displayUpdates"].as_array()?;
                let mut newest = None;
                let mut here = BTreeSet::new();
                for update in updates {
                    let data = &update["displayData"];
                    let Some(n) = json_u64(&data["n"]) else {
                        continue;
                    };
                    if !here.insert(n) {
                        self.snapshot_duplicates += 1;
                        self.notes.push(format!(
                            "{session}: update {n} twice in a snapshot at seq {seq}"
                        ));
                    }
                    self.in_snapshots.insert(n);
                    newest = json_u64(&data["t"]).or(newest);
                }
                newest
            }
            Some("update") => {
                let seq = json_u64(&frame["seq"])?;
                let data = &frame["update"]["displayData"];
                let n = json_u64(&data["n"])?;
                match self.last_seq {
                    Some(last) if seq == last + 1 => self.last_seq = Some(seq),
                    Some(last) if seq <= last => {
                        self.backwards += 1;
                        self.notes
                            .push(format!("{session}: seq {seq} after {last} (update {n})"));
                    }
                    Some(last) => {
                        self.skips += 1;
                        self.notes.push(format!(
                            "{session}: seq {seq} after {last} without a snapshot (update {n})"
                        ));
                        self.last_seq = Some(seq);
                    }
                    None => {
                        self.skips += 1;
                        self.notes
                            .push(format!("{session}: update seq {seq} before any snapshot"));
                        self.last_seq = Some(seq);
                    }
                }
                self.events.entry(n).or_default().insert(seq);
                json_u64(&data["t"])
            }
            _ => None,
        }
    }
}

/// What happened to one session.
struct SessionResult {
    id: String,
    init_answered: bool,
    acked: Vec<u64>,
    refused: Vec<String>,
    views: Vec<View>,
}

/// Every display client's results, until checked.
pub(super) struct Finished {
    sessions: Vec<SessionResult>,
}

/// Every poster (each with its sessions' displays), until finished.
pub(super) struct Running {
    posters: Vec<tokio::task::JoinHandle<Vec<tokio::task::JoinHandle<SessionResult>>>>,
}

/// Starts `posters` posters at `rate` updates/s each.
pub(super) fn start(ctx: &Arc<Ctx>, posters: usize, rate: f64) -> Running {
    Running {
        posters: (0..posters)
            .map(|p| tokio::spawn(poster(ctx.clone(), p, posters, rate)))
            .collect(),
    }
}

/// Waits for every poster (after the soak stopped them) and display.
pub(super) async fn finish(running: Running) -> Finished {
    let mut sessions = Vec::new();
    for poster in running.posters {
        let Ok(closers) = poster.await else { continue };
        for closer in closers {
            if let Ok(session) = closer.await {
                sessions.push(session);
            }
        }
    }
    Finished { sessions }
}

async fn poster(
    ctx: Arc<Ctx>,
    p: usize,
    posters: usize,
    rate: f64,
) -> Vec<tokio::task::JoinHandle<SessionResult>> {
    let client = ctx.recovery.client(Kind::Display);
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.01));
    let mut pacer = Pacer::new(interval, p as f64 / posters as f64, client.faults());
    let mut edge = p;
    let mut closers = Vec::new();
    let auth = format!("Bearer {}", crate::system::AUTH_SECRET);
    for generation in 0.. {
        if ctx.stopping() {
            break;
        }
        let id = format!("chaos-{}-d{p}-{generation}", ctx.run);
        let progress = Arc::new(Progress {
            id: id.clone(),
            acked: std::sync::Mutex::new(Vec::new()),
            done: AtomicBool::new(false),
            done_at_ms: AtomicU64::new(0),
        });
        let mut refused = Vec::new();
        let init = http_write(
            &ctx,
            &mut edge,
            "POST",
            &format!("/session/{id}/init"),
            &[],
            json!({"tenantId": TENANT}).to_string(),
        )
        .await;
        let init_answered = matches!(init, Answer::Ok);
        if let Answer::Refused(why) = init {
            refused.push(format!("{id} init: {why}"));
        }
        let displays: Vec<_> = (0..2)
            .map(|d| tokio::spawn(display(ctx.clone(), progress.clone(), p + d)))
            .collect();
        for n in 1..=PER_SESSION {
            if ctx.stopping() {
                break;
            }
            pacer.turn().await;
            let sent = Instant::now();
            let body = json!({"type": "dish_card", "displayData": {"n": n, "t": ctx.ns(sent)}});
            let key = format!("{id}-{n}");
            let headers = [
                ("Authorization", auth.as_str()),
                ("Idempotency-Key", key.as_str()),
            ];
            let path = format!("/session/{id}/update");
            match http_write(&ctx, &mut edge, "POST", &path, &headers, body.to_string()).await {
                Answer::Ok => {
                    client.answered(sent);
                    progress
                        .acked
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(n);
                }
                Answer::Refused(why) => refused.push(format!("{id} update {n}: {why}")),
                Answer::Unanswered => refused.push(format!("{id} update {n}: never answered")),
            }
        }
        progress
            .done_at_ms
            .store(ctx.ms(Instant::now()), Ordering::Relaxed);
        progress.done.store(true, Ordering::Relaxed);
        closers.push(tokio::spawn(async move {
            let mut views = Vec::new();
            for d in displays {
                if let Ok(view) = d.await {
                    views.push(view);
                }
            }
            let acked = progress
                .acked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            SessionResult {
                id: progress.id.clone(),
                init_answered,
                acked,
                refused,
                views,
            }
        }));
    }
    closers
}

/// How long a display waits, after its session's last update was answered, for what it has
/// not seen yet.
const CATCH_UP: Duration = Duration::from_secs(60);

/// One display of a session: reads until it has seen every acknowledged update of the session.
async fn display(ctx: Arc<Ctx>, progress: Arc<Progress>, mut edge: usize) -> View {
    let client = ctx.recovery.client(Kind::Display);
    let mut view = View::default();
    let path = format!("/session/{}/display", progress.id);
    loop {
        let socket = match Socket::connect(ctx.edge(edge), &path).await {
            Ok(socket) => Some(socket),
            Err(_) => {
                edge += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                None
            }
        };
        if let Some(mut socket) = socket {
            loop {
                match socket.next(Duration::from_millis(500)).await {
                    Incoming::Frame(frame) => {
                        if let Some(t) = view.take(&frame, &progress.id) {
                            client.answered(ctx.instant(t));
                        }
                    }
                    Incoming::Quiet => {}
                    Incoming::Closed => {
                        view.reconnects += 1;
                        edge += 1;
                        break;
                    }
                }
                if finished(&ctx, &progress, &view) {
                    return view;
                }
            }
        }
        if finished(&ctx, &progress, &view) {
            return view;
        }
    }
}

/// Whether a display may stop: its session is over and it has seen every acknowledged update
/// (or gave up waiting for them).
fn finished(ctx: &Ctx, progress: &Progress, view: &View) -> bool {
    if !progress.done.load(Ordering::Relaxed) {
        return false;
    }
    let all_seen = progress
        .acked
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .all(|&n| view.seen(n));
    let done_at = progress.done_at_ms.load(Ordering::Relaxed);
    all_seen || ctx.ms(Instant::now()).saturating_sub(done_at) > CATCH_UP.as_millis() as u64
}

/// Reads every session's final state and SQL row and tallies.
pub(super) async fn check(ctx: &Ctx, results: Finished, pool: &sqlx::PgPool) -> Tally {
    let mut tally = Tally::new("display");
    let mut inited = 0u64;
    let sql_sessions: BTreeSet<String> = sqlx::query_as::<_, (String,)>(
        "SELECT session_id FROM display_sessions WHERE session_id LIKE $1",
    )
    .bind(format!("chaos-{}-d%", ctx.run))
    .fetch_all(pool)
    .await
    .map(|rows| rows.into_iter().map(|r| r.0).collect())
    .unwrap_or_else(|e| {
        tally.note(format!("reading display_sessions: {e}"));
        BTreeSet::new()
    });
    for session in results.sessions {
        tally.refused += session.refused.len() as u64;
        for why in session.refused.iter().take(3) {
            tally.note(why.clone());
        }
        if session.init_answered {
            inited += 1;
            tally.acknowledged += 1;
            if sql_sessions.contains(&session.id) {
                tally.applied += 1;
            } else {
                tally.lost += 1;
                tally.note(format!(
                    "{}: init answered, no display_sessions row",
                    session.id
                ));
            }
        }
        let final_state = final_updates(ctx, &session.id).await;
        let Some(applied) = final_state else {
            tally.note(format!("{}: final state unreadable", session.id));
            tally.lost += session.acked.len() as u64;
            tally.acknowledged += session.acked.len() as u64;
            continue;
        };
        let mut counts: HashMap<u64, u64> = HashMap::new();
        for n in &applied {
            *counts.entry(*n).or_default() += 1;
        }
        // Updates applied more than once: in the state twice, or carried by two events with
        // different sequence numbers.
        let mut duplicated: BTreeSet<u64> = counts
            .iter()
            .filter(|(_, c)| **c > 1)
            .map(|(n, _)| *n)
            .collect();
        for view in &session.views {
            duplicated.extend(
                view.events
                    .iter()
                    .filter(|(_, seqs)| seqs.len() > 1)
                    .map(|(n, _)| *n),
            );
        }
        tally.duplicated += duplicated.len() as u64;
        for n in &duplicated {
            tally.note(format!("{}: update {n} applied twice", session.id));
        }
        // The state's order must be the order the updates were sent in.
        let inversions = applied.windows(2).filter(|w| w[1] <= w[0]).count() as u64;
        if inversions > 0 {
            tally.note(format!(
                "{}: final state out of order: {applied:?}",
                session.id
            ));
        }
        tally.out_of_order += inversions;
        tally.acknowledged += session.acked.len() as u64;
        for &n in &session.acked {
            let in_state = counts.contains_key(&n);
            let undelivered = session.views.iter().filter(|v| !v.seen(n)).count();
            if in_state {
                tally.applied += 1;
            }
            if !in_state || undelivered > 0 {
                tally.lost += 1;
                tally.note(format!(
                    "{}: update {n} acknowledged, {}, not delivered to {undelivered} of {} displays",
                    session.id,
                    if in_state { "in the state" } else { "NOT in the state" },
                    session.views.len()
                ));
            }
        }
        for view in session.views {
            tally.out_of_order += view.backwards + view.skips;
            tally.stale_snapshots += view.stale_snapshots;
            tally.duplicated += view.snapshot_duplicates;
            tally.reconnects += view.reconnects;
            for note in view.notes {
                tally.note(note);
            }
        }
    }
    tally.sql = Some((sql_sessions.len() as u64, inited, "sessions"));
    tally
}

/// The update numbers of a session's final state, in order (read from either edge).
async fn final_updates(ctx: &Ctx, session: &str) -> Option<Vec<u64>> {
    for attempt in 0..40 {
        let path = format!("/session/{session}/state");
        if let Ok(Ok((200, body))) = tokio::time::timeout(
            Duration::from_secs(10),
            crate::client::request(ctx.edge(attempt), "GET", &path, &[], bytes::Bytes::new()),
        )
        .await
            && let Ok(state) = serde_json::from_slice::<Value>(&body)
        {
            return Some(
                state["displayUpdates"]
                    .as_array()
                    .map(|list| {
                        list.iter()
                            .filter_map(|u| json_u64(&u["displayData"]["n"]))
                            .collect()
                    })
                    .unwrap_or_default(),
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}
