//! RFID reader clients (seed 003). Each reader holds `/ws/device?deviceId=` on one edge (the
//! other after a reconnect) and scans a new tag at a steady rate. Seed 003's scans carry no id,
//! so a scan not answered (a closed socket, 8 s of silence) is not sent again: the reader
//! reconnects and scans the next tag, and whether the unanswered one was applied is reported.
//! The tenant's scan interval is set to 100 ms at start (`PUT /api/devices/settings`), so that a
//! reader woken by a fault may scan at once.
//!
//! Checks: every scan answered `success: true` is one `device_scans` row (by its tag), none
//! twice.

use super::recovery::{Kind, Pacer};
use super::{Answer, Ctx, Incoming, Socket, Tally, http_write};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The tenant of readers on an edge with `--device-auth none`.
const TENANT: &str = tablewire_schemas::device::DEFAULT_TENANT;

/// How long a reader waits for a scan's answer.
const ANSWER_WAIT: Duration = Duration::from_secs(8);

/// What one reader did.
struct ReaderResult {
    /// Tags answered `success: true`.
    accepted: Vec<String>,
    /// Tags answered with a refusal (`TOO_SOON`, …), and why.
    refused: Vec<(String, String)>,
    /// Tags never answered.
    unanswered: Vec<String>,
    reconnects: u64,
}

/// Every reader, until checked.
pub(super) struct Running {
    readers: Vec<tokio::task::JoinHandle<ReaderResult>>,
}

/// Sets the tenant's scan interval, then starts `readers` readers scanning `rate` times a
/// second.
pub(super) async fn start(ctx: &Arc<Ctx>, readers: usize, rate: f64) -> anyhow::Result<Running> {
    let admin = format!("Bearer {}", super::token(TENANT, "admin")?);
    let mut edge = 0;
    match http_write(
        ctx,
        &mut edge,
        "PUT",
        "/api/devices/settings",
        &[("Authorization", admin.as_str())],
        json!({"scanIntervalMs": 100}).to_string(),
    )
    .await
    {
        Answer::Ok => {}
        Answer::Refused(why) => anyhow::bail!("setting the readers' scan interval: {why}"),
        Answer::Unanswered => anyhow::bail!("setting the readers' scan interval: no answer"),
    }
    Ok(Running {
        readers: (0..readers)
            .map(|i| tokio::spawn(reader(ctx.clone(), i, readers, rate)))
            .collect(),
    })
}

async fn reader(ctx: Arc<Ctx>, i: usize, readers: usize, rate: f64) -> ReaderResult {
    let client = ctx.recovery.client(Kind::Device);
    // Never two scans within the tenant's 100 ms interval, even when a fault wakes the reader.
    let mut pacer = Pacer::new(
        Duration::from_secs_f64(1.0 / rate.max(0.01)),
        i as f64 / readers as f64,
        client.faults(),
    )
    .at_least(Duration::from_millis(150));
    let path = format!("/ws/device?deviceId=chaos{}r{i}", ctx.run);
    let mut result = ReaderResult {
        accepted: Vec::new(),
        refused: Vec::new(),
        unanswered: Vec::new(),
        reconnects: 0,
    };
    let mut edge = i;
    let mut socket: Option<Socket> = None;
    let mut n = 0u64;
    while !ctx.stopping() {
        pacer.turn().await;
        let Some(s) = connected(&ctx, &mut socket, &mut edge, &path).await else {
            break;
        };
        n += 1;
        let tag = format!("{}-{i}-{n}", ctx.run);
        let sent = Instant::now();
        let scan = json!({"action": "scan", "tagId": tag, "location": "chaos"}).to_string();
        let answer = match s.send(&scan).await {
            Ok(()) => wait_for_answer(s, &tag).await,
            Err(_) => None,
        };
        match answer {
            Some(Ok(())) => {
                client.answered(sent);
                result.accepted.push(tag);
            }
            // A refusal is an answer, but not the write working again: no recovery.
            Some(Err(why)) => result.refused.push((tag, why)),
            None => {
                result.unanswered.push(tag);
                socket = None;
                edge += 1;
                result.reconnects += 1;
            }
        }
    }
    result
}

/// The reader's socket, connecting (alternating edges) while it has none.
async fn connected<'a>(
    ctx: &Ctx,
    socket: &'a mut Option<Socket>,
    edge: &mut usize,
    path: &str,
) -> Option<&'a mut Socket> {
    while socket.is_none() {
        if ctx.stopping() {
            return None;
        }
        match Socket::connect(ctx.edge(*edge), path).await {
            Ok(s) => *socket = Some(s),
            Err(_) => {
                *edge += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    socket.as_mut()
}

/// The answer to the scan of `tag`: `Ok` for `success: true`, `Err` with the refusal; `None`
/// when the socket closed or stayed silent.
async fn wait_for_answer(socket: &mut Socket, tag: &str) -> Option<Result<(), String>> {
    let deadline = Instant::now() + ANSWER_WAIT;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match socket.next(left).await {
            Incoming::Quiet | Incoming::Closed => return None,
            Incoming::Frame(frame) => {
                // Configuration pushes and heartbeat answers carry an `action`.
                if frame.get("action").is_some() {
                    continue;
                }
                if frame["success"] == true && frame["scan"]["tagId"] == tag {
                    return Some(Ok(()));
                }
                if frame["success"] == false {
                    let code = frame["code"].as_str().unwrap_or("?").to_string();
                    return Some(Err(code));
                }
            }
        }
    }
}

/// Every reader, finished.
pub(super) struct Finished {
    results: Vec<ReaderResult>,
}

/// Waits for every reader (after the soak stopped them).
pub(super) async fn finish(running: Running) -> Finished {
    let mut results = Vec::new();
    for reader in running.readers {
        if let Ok(result) = reader.await {
            results.push(result);
        }
    }
    Finished { results }
}

/// Reads `device_scans` and tallies.
pub(super) async fn check(ctx: &Ctx, finished: Finished, pool: &sqlx::PgPool) -> Tally {
    let mut tally = Tally::new("device");
    let results = finished.results;
    let mut rows: HashMap<String, u64> = HashMap::new();
    let mut total = 0u64;
    match sqlx::query_as::<_, (String,)>("SELECT tag_id FROM device_scans WHERE device_id LIKE $1")
        .bind(format!("chaos{}r%", ctx.run))
        .fetch_all(pool)
        .await
    {
        Ok(found) => {
            total = found.len() as u64;
            for (tag,) in found {
                *rows.entry(tag).or_default() += 1;
            }
        }
        Err(e) => tally.note(format!("reading device_scans: {e}")),
    }
    let mut accepted = 0u64;
    let (mut unanswered, mut unanswered_applied) = (0u64, 0u64);
    let mut refusals: HashMap<String, u64> = HashMap::new();
    let mut refused_applied: HashMap<String, u64> = HashMap::new();
    for result in &results {
        tally.reconnects += result.reconnects;
        for (tag, code) in &result.refused {
            *refusals.entry(code.clone()).or_default() += 1;
            if rows.get(tag).copied().unwrap_or(0) > 0 {
                *refused_applied.entry(code.clone()).or_default() += 1;
            }
        }
        for tag in &result.accepted {
            accepted += 1;
            tally.acknowledged += 1;
            match rows.get(tag).copied().unwrap_or(0) {
                0 => {
                    tally.lost += 1;
                    tally.note(format!("scan {tag} answered success, no device_scans row"));
                }
                1 => tally.applied += 1,
                count => {
                    tally.applied += 1;
                    tally.duplicated += 1;
                    tally.note(format!("scan {tag}: {count} device_scans rows"));
                }
            }
        }
        for tag in &result.unanswered {
            unanswered += 1;
            let count = rows.get(tag).copied().unwrap_or(0);
            if count > 0 {
                unanswered_applied += 1;
            }
            if count > 1 {
                tally.duplicated += 1;
                tally.note(format!("unanswered scan {tag}: {count} device_scans rows"));
            }
        }
    }
    if !refusals.is_empty() {
        tally.refused += refusals.values().sum::<u64>();
        tally.note(format!(
            "scans answered with an error: {refusals:?}; of them applied all the same: {refused_applied:?}"
        ));
    }
    if unanswered > 0 {
        tally.note(format!(
            "{unanswered} scans never answered (not sent again: seed 003 scans carry no id), {unanswered_applied} of them applied"
        ));
    }
    let refused_applied: u64 = refused_applied.values().sum();
    tally.sql = Some((
        total,
        accepted + unanswered_applied + refused_applied,
        "scans",
    ));
    tally
}
