//! POS clients (seed 002). Each tenant has two terminals and a kitchen display on the tenant's
//! socket. A terminal submits one order at a time with an `idempotencyKey`; an order not
//! answered with its `order_created` (an error, a closed socket, 8 s of silence) is submitted
//! again with the same key, on the other edge after a reconnect, until it is. The kitchen only
//! watches.
//!
//! Checks: every acknowledged key is one order in SQL (`pos_orders.idempotency_key`), one
//! order id across every frame anyone saw, and reached the kitchen (by event or in a
//! `sync_state`); the tenant book's `seq` never went backwards or skipped without a snapshot.

use super::recovery::{Kind, Pacer};
use super::{Ctx, Incoming, Socket, Tally, json_u64};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Terminals per tenant.
const TERMINALS: usize = 2;

/// How long a terminal waits for its `order_created` before it submits again.
const ANSWER_WAIT: Duration = Duration::from_secs(8);

/// What one socket of a tenant saw of the tenant's book.
#[derive(Default)]
struct BookView {
    last_seq: Option<u64>,
    /// Idempotency key → order ids seen for it.
    orders: HashMap<String, BTreeSet<String>>,
    /// Every `order_created` received: key, order id, its `seq` (none on a claim's answer),
    /// when (ms of the bench clock).
    created: Vec<(String, String, Option<u64>, u64)>,
    /// Order ids seen with their body (the order's own fields, the bench's key among them).
    ids: BTreeSet<String>,
    /// Order ids seen only without their body (the edge could not read it: shown without its
    /// cart).
    bodiless: BTreeSet<String>,
    /// The last `sync_state`: its seq and when (ms of the bench clock).
    last_snapshot: Option<(u64, u64)>,
    /// Each connection: the edge's address and when (ms of the bench clock).
    connections: Vec<(SocketAddr, u64)>,
    backwards: u64,
    skips: u64,
    stale_snapshots: u64,
    reconnects: u64,
    notes: Vec<String>,
}

impl BookView {
    fn remember(&mut self, order: &Value) -> Option<u64> {
        // A kitchen order names its order as `orderId` (its own id is `kitchen-…`).
        let id = order["orderId"].as_str().or(order["id"].as_str())?;
        let Some(key) = order["chaosKey"].as_str() else {
            if !self.ids.contains(id) {
                self.bodiless.insert(id.to_string());
            }
            return None;
        };
        self.bodiless.remove(id);
        self.ids.insert(id.to_string());
        self.orders
            .entry(key.to_string())
            .or_default()
            .insert(id.to_string());
        json_u64(&order["chaosT"])
    }

    /// Takes one frame (received at `now_ms` of the bench clock); returns the send time
    /// (bench clock, ns) of the newest order it shows.
    fn take(&mut self, frame: &Value, tenant: &str, now_ms: u64) -> Option<u64> {
        let kind = frame["type"].as_str()?;
        let seq = json_u64(&frame["seq"]);
        if kind == "sync_state" {
            if let Some(seq) = seq {
                if let Some(last) = self.last_seq
                    && seq < last
                {
                    self.stale_snapshots += 1;
                    self.notes.push(format!(
                        "{tenant}: sync_state at seq {seq} after seq {last} was delivered"
                    ));
                }
                self.last_seq = Some(seq);
                self.last_snapshot = Some((seq, now_ms));
            }
            let mut newest = None;
            for list in ["activeOrders", "recentOrders"] {
                for order in frame[list].as_array().into_iter().flatten() {
                    newest = newest.max(self.remember(order));
                }
            }
            return newest;
        }
        // Events carry the book's seq; a claim's answer to a repeated submission does not.
        if let Some(seq) = seq {
            match self.last_seq {
                Some(last) if seq == last + 1 => self.last_seq = Some(seq),
                Some(last) if seq <= last => {
                    self.backwards += 1;
                    self.notes
                        .push(format!("{tenant}: {kind} seq {seq} after {last}"));
                }
                last => {
                    self.skips += 1;
                    self.notes.push(format!(
                        "{tenant}: {kind} seq {seq} after {last:?} without a snapshot"
                    ));
                    self.last_seq = Some(seq);
                }
            }
        }
        if kind == "order_created" {
            let order = &frame["order"];
            if let (Some(key), Some(id)) = (order["chaosKey"].as_str(), order["id"].as_str()) {
                self.created
                    .push((key.to_string(), id.to_string(), seq, now_ms));
            }
            return self.remember(order);
        }
        None
    }
}

/// What one terminal did.
struct TerminalResult {
    tenant: usize,
    /// Keys answered with `order_created`, and the order id each answer named.
    acked: Vec<(String, String)>,
    refused: Vec<String>,
    view: BookView,
}

/// Shared by a tenant's terminals and kitchen.
struct TenantProgress {
    name: String,
    /// Acknowledged keys and the order id each was answered with.
    acked: std::sync::Mutex<BTreeMap<String, String>>,
    terminals_left: AtomicUsize,
}

/// Every POS client, until checked.
pub(super) struct Running {
    tenants: Vec<Arc<TenantProgress>>,
    terminals: Vec<tokio::task::JoinHandle<TerminalResult>>,
    kitchens: Vec<tokio::task::JoinHandle<(usize, BookView)>>,
}

/// The JWT of a tenant's terminals.
fn token(tenant: &str) -> anyhow::Result<String> {
    super::token(tenant, "staff")
}

/// Starts `tenants` tenants, each with its terminals submitting `rate` orders/s.
pub(super) fn start(ctx: &Arc<Ctx>, tenants: usize, rate: f64) -> anyhow::Result<Running> {
    let mut running = Running {
        tenants: Vec::new(),
        terminals: Vec::new(),
        kitchens: Vec::new(),
    };
    for t in 0..tenants {
        let name = format!("chaos{}t{t}", ctx.run);
        let path = format!("/ws/restaurant-pos/{name}?token={}", token(&name)?);
        let progress = Arc::new(TenantProgress {
            name: name.clone(),
            acked: std::sync::Mutex::new(BTreeMap::new()),
            terminals_left: AtomicUsize::new(TERMINALS),
        });
        for term in 0..TERMINALS {
            let offset = (t * TERMINALS + term) as f64 / (tenants * TERMINALS) as f64;
            running.terminals.push(tokio::spawn(terminal(
                ctx.clone(),
                t,
                term,
                progress.clone(),
                path.clone(),
                rate,
                offset,
            )));
        }
        running.kitchens.push(tokio::spawn(kitchen(
            ctx.clone(),
            t,
            progress.clone(),
            path,
        )));
        running.tenants.push(progress);
    }
    Ok(running)
}

#[allow(clippy::too_many_arguments)]
async fn terminal(
    ctx: Arc<Ctx>,
    tenant: usize,
    term: usize,
    progress: Arc<TenantProgress>,
    path: String,
    rate: f64,
    offset: f64,
) -> TerminalResult {
    let client = ctx.recovery.client(Kind::Pos);
    let mut pacer = Pacer::new(
        Duration::from_secs_f64(1.0 / rate.max(0.01)),
        offset,
        client.faults(),
    );
    let mut result = TerminalResult {
        tenant,
        acked: Vec::new(),
        refused: Vec::new(),
        view: BookView::default(),
    };
    let mut edge = term;
    let mut socket: Option<Socket> = None;
    let mut n = 0u64;
    while !ctx.stopping() {
        pacer.turn().await;
        n += 1;
        let key = format!("{}-{term}-{n}", progress.name);
        let sent = Instant::now();
        let submit = json!({
            "type": "submit_order",
            "idempotencyKey": key,
            "order": {
                "orderType": "takeout",
                "paymentMethod": "cash",
                "customer": {"name": "chaos", "phone": "555"},
                "cart": {"items": [{"name": "Dosa", "price": 120, "quantity": 1}], "total": 120},
                "status": "confirmed",
                "source": "pos",
                "chaosKey": key,
                "chaosT": ctx.ns(sent),
            },
        })
        .to_string();
        let answered = loop {
            if socket.is_none() {
                match Socket::connect(ctx.edge(edge), &path).await {
                    Ok(s) => socket = Some(s),
                    Err(_) => {
                        edge += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
            }
            let Some(s) = socket.as_mut() else { continue };
            if s.send(&submit).await.is_err() {
                socket = None;
                edge += 1;
                result.view.reconnects += 1;
                continue;
            }
            match wait_for_order(&ctx, s, &key, &mut result.view, &progress.name).await {
                Wait::Created(id) => break Some(id),
                Wait::Retry(pause) => tokio::time::sleep(pause).await,
                Wait::Refused(why) => {
                    result.refused.push(format!("{key}: {why}"));
                    break None;
                }
                Wait::Reconnect => {
                    socket = None;
                    edge += 1;
                    result.view.reconnects += 1;
                }
            }
        };
        if let Some(id) = answered {
            client.answered(sent);
            progress
                .acked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone(), id.clone());
            result.acked.push((key, id));
        }
    }
    progress.terminals_left.fetch_sub(1, Ordering::Relaxed);
    result
}

enum Wait {
    Created(String),
    Retry(Duration),
    Refused(String),
    Reconnect,
}

/// Reads until `key`'s `order_created` (its order id), an error, a close or [`ANSWER_WAIT`].
async fn wait_for_order(
    ctx: &Ctx,
    socket: &mut Socket,
    key: &str,
    view: &mut BookView,
    tenant: &str,
) -> Wait {
    let deadline = Instant::now() + ANSWER_WAIT;
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Wait::Reconnect;
        };
        match socket.next(left).await {
            Incoming::Quiet | Incoming::Closed => return Wait::Reconnect,
            Incoming::Frame(frame) => {
                view.take(&frame, tenant, ctx.ms(Instant::now()));
                match frame["type"].as_str() {
                    Some("order_created") if frame["order"]["chaosKey"] == key => {
                        let id = frame["order"]["id"].as_str().unwrap_or_default();
                        return Wait::Created(id.to_string());
                    }
                    Some("error") => {
                        let retryable = frame["retryable"].as_bool().unwrap_or(false)
                            || matches!(
                                frame["code"].as_str(),
                                Some("UNAVAILABLE" | "TIMEOUT" | "INTERNAL" | "DRAINING")
                            );
                        if retryable {
                            let pause = json_u64(&frame["retryAfterMs"]).unwrap_or(200);
                            return Wait::Retry(Duration::from_millis(pause.min(5_000)));
                        }
                        return Wait::Refused(frame.to_string());
                    }
                    _ => {}
                }
            }
        }
    }
}

/// How long a kitchen waits, after its tenant's terminals stopped, for orders it has not seen.
const CATCH_UP: Duration = Duration::from_secs(60);

/// A kitchen display: watches the tenant's orders until it has seen every acknowledged one.
async fn kitchen(
    ctx: Arc<Ctx>,
    tenant: usize,
    progress: Arc<TenantProgress>,
    path: String,
) -> (usize, BookView) {
    let client = ctx.recovery.client(Kind::Pos);
    let mut view = BookView::default();
    let mut edge = tenant + 1;
    let mut stopped_at: Option<Instant> = None;
    loop {
        match Socket::connect(ctx.edge(edge), &path).await {
            Ok(mut socket) => loop {
                if view.connections.last().is_none_or(|c| c.1 == u64::MAX) {
                    view.connections
                        .push((ctx.edge(edge), ctx.ms(Instant::now())));
                }
                match socket.next(Duration::from_millis(500)).await {
                    Incoming::Frame(frame) => {
                        if let Some(t) = view.take(&frame, &progress.name, ctx.ms(Instant::now())) {
                            client.answered(ctx.instant(t));
                        }
                    }
                    Incoming::Quiet => {}
                    Incoming::Closed => {
                        view.reconnects += 1;
                        // Marks the connection ended, so the next one is logged.
                        view.connections.push((ctx.edge(edge), u64::MAX));
                        edge += 1;
                        break;
                    }
                }
                if kitchen_done(&progress, &view, &mut stopped_at) {
                    return (tenant, view);
                }
            },
            Err(_) => {
                edge += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if kitchen_done(&progress, &view, &mut stopped_at) {
            return (tenant, view);
        }
    }
}

fn kitchen_done(
    progress: &TenantProgress,
    view: &BookView,
    stopped_at: &mut Option<Instant>,
) -> bool {
    if progress.terminals_left.load(Ordering::Relaxed) > 0 {
        return false;
    }
    let since = *stopped_at.get_or_insert_with(Instant::now);
    let all_seen = progress
        .acked
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .all(|(key, id)| {
            view.orders.contains_key(key) || view.ids.contains(id) || view.bodiless.contains(id)
        });
    all_seen || since.elapsed() > CATCH_UP
}

/// What every POS client did.
pub(super) struct Finished {
    names: Vec<String>,
    terminals: Vec<TerminalResult>,
    kitchens: Vec<(usize, BookView)>,
}

/// Waits for every terminal (after the soak stopped them) and kitchen.
pub(super) async fn finish(running: Running) -> Finished {
    let names = running.tenants.iter().map(|t| t.name.clone()).collect();
    let mut terminals = Vec::new();
    for t in running.terminals {
        if let Ok(result) = t.await {
            terminals.push(result);
        }
    }
    let mut kitchens = Vec::new();
    for k in running.kitchens {
        if let Ok(result) = k.await {
            kitchens.push(result);
        }
    }
    Finished {
        names,
        terminals,
        kitchens,
    }
}

/// Reads `pos_orders` and tallies; for what was lost, shows what the idempotency claim and
/// the tenant's book hold in KV.
pub(super) async fn check(
    finished: Finished,
    pool: &sqlx::PgPool,
    js: &async_nats::jetstream::Context,
) -> Tally {
    let mut tally = Tally::new("pos");
    let Finished {
        names,
        terminals,
        kitchens,
    } = finished;
    // Key → order ids anyone saw for it (answers, events, snapshots).
    let mut ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let views = terminals
        .iter()
        .map(|t| &t.view)
        .chain(kitchens.iter().map(|(_, v)| v));
    for view in views {
        for (key, seen) in &view.orders {
            ids.entry(key.clone())
                .or_default()
                .extend(seen.iter().cloned());
        }
    }
    // Order id → keys it was given for (per tenant: ids are per tenant). Two keys for one id
    // means the tenant's book numbered two orders the same.
    let mut keys_of_id: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let all_views = terminals
        .iter()
        .map(|t| &t.view)
        .chain(kitchens.iter().map(|(_, v)| v));
    for view in all_views {
        for (key, id, _, _) in &view.created {
            let tenant = key.rsplitn(3, '-').nth(2).unwrap_or_default().to_string();
            keys_of_id
                .entry((tenant, id.clone()))
                .or_default()
                .insert(key.clone());
        }
    }
    for ((tenant, id), keys) in keys_of_id.iter().filter(|(_, keys)| keys.len() > 1) {
        tally.note(format!(
            "{tenant}: order id {id} given to {} keys: {keys:?}",
            keys.len()
        ));
        for key in keys {
            for (view, who) in terminals
                .iter()
                .map(|t| (&t.view, "a terminal"))
                .chain(kitchens.iter().map(|(_, v)| (v, "the kitchen")))
            {
                for (k, i, seq, at) in view.created.iter().filter(|c| &c.0 == key && &c.1 == id) {
                    tally.note(format!(
                        "  {who} got order_created {k} -> {i} seq {seq:?} at {:.3} s",
                        *at as f64 / 1000.0
                    ));
                }
            }
        }
    }
    let mut sql: HashMap<String, Vec<String>> = HashMap::new();
    let mut rows = 0u64;
    for name in &names {
        match sqlx::query_as::<_, (Option<String>, String)>(
            "SELECT idempotency_key, order_id FROM pos_orders WHERE tenant_id = $1",
        )
        .bind(name)
        .fetch_all(pool)
        .await
        {
            Ok(found) => {
                rows += found.len() as u64;
                for (key, id) in found {
                    sql.entry(key.unwrap_or_default()).or_default().push(id);
                }
            }
            Err(e) => tally.note(format!("reading pos_orders: {e}")),
        }
    }
    let mut acked_total = 0u64;
    for terminal in &terminals {
        tally.refused += terminal.refused.len() as u64;
        for why in terminal.refused.iter().take(3) {
            tally.note(why.clone());
        }
        let kitchen = kitchens.iter().find(|(t, _)| *t == terminal.tenant);
        for (key, id) in &terminal.acked {
            acked_total += 1;
            tally.acknowledged += 1;
            let rows_of_key = sql.get(key).map_or(0, Vec::len);
            let ids_of_key = ids.get(key).map_or(0, BTreeSet::len);
            let in_kitchen = kitchen.is_some_and(|(_, v)| {
                v.orders.contains_key(key) || v.ids.contains(id) || v.bodiless.contains(id)
            });
            if rows_of_key >= 1 {
                tally.applied += 1;
            }
            if rows_of_key > 1 || ids_of_key > 1 {
                tally.duplicated += 1;
                tally.note(format!(
                    "{key}: {rows_of_key} rows in SQL, order ids seen {:?} (answered with {id})",
                    ids.get(key)
                ));
            }
            if rows_of_key == 0 || !in_kitchen {
                tally.lost += 1;
                tally.note(format!(
                    "{key}: answered with order {id}; {rows_of_key} rows in SQL; {} the kitchen",
                    if in_kitchen { "seen by" } else { "NOT seen by" }
                ));
                let tenant = &names[terminal.tenant.min(names.len().saturating_sub(1))];
                if let Some((_, view)) = kitchen {
                    let connections: Vec<String> = view
                        .connections
                        .iter()
                        .filter(|c| c.1 != u64::MAX)
                        .map(|(edge, at)| format!("{edge} at {:.3} s", *at as f64 / 1000.0))
                        .collect();
                    tally.note(format!(
                        "  the kitchen's last seq {:?}, last sync_state (seq, at ms) {:?}, {} events; connected to {}",
                        view.last_seq,
                        view.last_snapshot,
                        view.created.iter().filter(|c| c.2.is_some()).count(),
                        connections.join(", ")
                    ));
                }
                for line in stored_evidence(js, tenant, key, id).await {
                    tally.note(format!("  {line}"));
                }
            }
        }
    }
    for view in terminals
        .iter()
        .map(|t| &t.view)
        .chain(kitchens.iter().map(|(_, v)| v))
    {
        tally.out_of_order += view.backwards + view.skips;
        tally.stale_snapshots += view.stale_snapshots;
        tally.reconnects += view.reconnects;
        for note in &view.notes {
            tally.note(note.clone());
        }
    }
    let bodiless: usize = kitchens.iter().map(|(_, v)| v.bodiless.len()).sum();
    if bodiless > 0 {
        tally.note(format!(
            "{bodiless} orders reached a kitchen only without their body (shown without a cart: the edge could not read it), e.g. {:?}",
            kitchens
                .iter()
                .flat_map(|(_, v)| v.bodiless.iter())
                .take(5)
                .collect::<Vec<_>>()
        ));
    }
    tally.sql = Some((rows, acked_total, "orders"));
    tally
}

/// What KV holds for a lost order: the key's idempotency claim, and the tenant's book's
/// entries naming the order id.
async fn stored_evidence(
    js: &async_nats::jetstream::Context,
    tenant: &str,
    key: &str,
    id: &str,
) -> Vec<String> {
    use tablewire_nats::resource;
    use tablewire_schemas::pos::{TENANT_KEY, idempotency_state_key};
    let mut lines = Vec::new();
    let Ok(kv) = js
        .get_key_value(resource::state_bucket(tablewire_schemas::Domain::Pos))
        .await
    else {
        lines.push("state bucket unreadable".to_string());
        return lines;
    };
    let claim_key = resource::state_key(tenant, &idempotency_state_key(key));
    match kv.entry(&claim_key).await {
        Ok(Some(entry)) => {
            let text = String::from_utf8_lossy(&entry.value);
            lines.push(format!(
                "claim {claim_key} revision {}: {}",
                entry.revision,
                text.chars().take(400).collect::<String>()
            ));
        }
        other => lines.push(format!("claim {claim_key}: {other:?}")),
    }
    let book_key = resource::state_key(tenant, TENANT_KEY);
    match kv.entry(&book_key).await {
        Ok(Some(entry)) => {
            let stored: Value = serde_json::from_slice(&entry.value).unwrap_or(Value::Null);
            let mut naming = Vec::new();
            collect_naming(&stored["state"], id, &mut naming);
            lines.push(format!(
                "book {book_key} revision {}, applied {}, seq {}; entries naming {id}: {}",
                entry.revision,
                stored["applied"],
                stored["seq"],
                naming.join(" | ")
            ));
        }
        other => lines.push(format!("book {book_key}: {other:?}")),
    }
    lines
}

/// Objects anywhere in `value` whose `id` or `orderId` is `id`, as text.
fn collect_naming(value: &Value, id: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if map.get("id").and_then(Value::as_str) == Some(id)
                || map.get("orderId").and_then(Value::as_str) == Some(id)
            {
                out.push(value.to_string().chars().take(300).collect());
            } else {
                for v in map.values() {
                    collect_naming(v, id, out);
                }
            }
        }
        Value::Array(list) => {
            for v in list {
                collect_naming(v, id, out);
            }
        }
        _ => {}
    }
}
