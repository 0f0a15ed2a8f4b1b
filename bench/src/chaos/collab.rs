//! Collaborative room clients (seed 001). Each room slot runs rooms one after another: three
//! participants join, each adds one item, then sets its item's quantity again and again
//! (`update_quantity`, an absolute value, so sending it again is harmless), and the initiator
//! finalizes. Seed 001's messages carry no idempotency key, so a participant whose change was
//! not answered (a closed socket, an error, 10 s of silence) reconnects — to the other edge —
//! and reads the room's `sync`: a change it shows is answered; otherwise it is sent again. An
//! `add_item` is sent again only when the `sync` does not show the item (the room may still
//! hold it unapplied: a second copy is then reported, not hidden).
//!
//! Checks: every finalized room is one `collab_orders` row whose items carry each item's last
//! acknowledged quantity, once; every participant saw `order_finalized`; the room's `seq` never
//! went backwards or skipped without a `sync`.

use super::recovery::{Kind, Pacer};
use super::{Ctx, Incoming, Socket, Tally, json_u64};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Participants per room.
const PARTICIPANTS: usize = 3;

/// How long a participant waits for the answer to a change before it reconnects and looks.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// The tenant of every room (from the participants' token).
const TENANT: &str = "chaos";

/// What one participant saw of its room.
#[derive(Default)]
struct RoomView {
    last_seq: Option<u64>,
    /// The newest order state seen (from a `sync` or an event).
    state: Option<Value>,
    finalized: bool,
    backwards: u64,
    skips: u64,
    stale_snapshots: u64,
    reconnects: u64,
    /// (item, quantity) → seqs of the `quantity_updated` events that set it.
    changes: HashMap<(String, u64), Vec<u64>>,
    notes: Vec<String>,
}

impl RoomView {
    fn take(&mut self, frame: &Value, room: &str) {
        let Some(kind) = frame["type"].as_str() else {
            return;
        };
        let seq = json_u64(&frame["seq"]);
        match (kind, seq) {
            // A snapshot (the `sync` a joiner gets as its answer carries no seq).
            ("sync", Some(seq)) => {
                if let Some(last) = self.last_seq
                    && seq < last
                {
                    self.stale_snapshots += 1;
                    self.notes.push(format!(
                        "{room}: sync at seq {seq} after seq {last} was delivered"
                    ));
                }
                self.last_seq = Some(seq);
            }
            ("sync", None) | ("error", _) => {}
            (_, Some(seq)) => match self.last_seq {
                Some(last) if seq == last + 1 => self.last_seq = Some(seq),
                Some(last) if seq <= last => {
                    self.backwards += 1;
                    self.notes
                        .push(format!("{room}: {kind} seq {seq} after {last}"));
                }
                last => {
                    self.skips += 1;
                    self.notes.push(format!(
                        "{room}: {kind} seq {seq} after {last:?} without a sync"
                    ));
                    self.last_seq = Some(seq);
                }
            },
            (_, None) => {}
        }
        let state = match kind {
            "sync" | "participant_joined" | "participant_left" => Some(&frame["data"]),
            "error" => None,
            _ => frame["data"].get("orderState"),
        };
        if let Some(state) = state.filter(|s| s.is_object()) {
            if state["status"] == "finalized" {
                self.finalized = true;
            }
            self.state = Some(state.clone());
        }
        if kind == "order_finalized" {
            self.finalized = true;
        }
        if kind == "quantity_updated"
            && let (Some(item), Some(quantity), Some(seq)) = (
                frame["data"]["item"]["id"].as_str(),
                json_u64(&frame["data"]["item"]["quantity"]),
                seq,
            )
        {
            self.changes
                .entry((item.to_string(), quantity))
                .or_default()
                .push(seq);
        }
    }

    /// The items of the newest state with `dish` as their name.
    fn items_named(&self, dish: &str) -> Vec<Value> {
        self.state
            .as_ref()
            .and_then(|s| s["items"].as_array())
            .map(|items| {
                items
                    .iter()
                    .filter(|i| i["dishName"] == dish)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn joined(&self, me: &str) -> bool {
        self.state
            .as_ref()
            .and_then(|s| s["participants"].as_array())
            .is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["participantId"] == me && p["active"] == true)
            })
    }
}

/// What one participant did.
struct ParticipantResult {
    /// Its item's id and last acknowledged quantity.
    item: Option<(String, u64)>,
    /// Acknowledged writes: join, add, changes, finalize.
    acked: u64,
    /// Items with its dish name in the last state it saw (more than 1: added twice).
    copies: usize,
    refused: Vec<String>,
    view: RoomView,
}

/// What happened to one room.
struct RoomResult {
    room: String,
    finalize_acked: bool,
    participants: Vec<ParticipantResult>,
}

/// Every room slot, until checked.
pub(super) struct Running {
    slots: Vec<tokio::task::JoinHandle<Vec<RoomResult>>>,
}

/// Starts `rooms` room slots, each participant changing `rate` times a second, `changes` times
/// per room.
pub(super) fn start(ctx: &Arc<Ctx>, rooms: usize, rate: f64, changes: u64) -> Running {
    Running {
        slots: (0..rooms)
            .map(|slot| tokio::spawn(room_slot(ctx.clone(), slot, rooms, rate, changes)))
            .collect(),
    }
}

async fn room_slot(
    ctx: Arc<Ctx>,
    slot: usize,
    slots: usize,
    rate: f64,
    changes: u64,
) -> Vec<RoomResult> {
    let mut rooms = Vec::new();
    for generation in 0.. {
        if ctx.stopping() {
            break;
        }
        let room = format!("chaos-{}-r{slot}-{generation}", ctx.run);
        let barrier = Arc::new(tokio::sync::Barrier::new(PARTICIPANTS));
        let participants: Vec<_> = (0..PARTICIPANTS)
            .map(|p| {
                let offset = (slot * PARTICIPANTS + p) as f64 / (slots * PARTICIPANTS) as f64;
                tokio::spawn(participant(
                    ctx.clone(),
                    room.clone(),
                    p,
                    Turns {
                        rate,
                        changes,
                        offset,
                    },
                    barrier.clone(),
                ))
            })
            .collect();
        let mut results = Vec::new();
        let mut finalize_acked = false;
        for p in participants {
            if let Ok((result, acked_finalize)) = p.await {
                finalize_acked |= acked_finalize;
                results.push(result);
            }
        }
        rooms.push(RoomResult {
            room,
            finalize_acked,
            participants: results,
        });
    }
    rooms
}

struct Turns {
    rate: f64,
    changes: u64,
    offset: f64,
}

/// A participant's socket: reconnects (to the other edge) on demand, reading the `sync` it
/// starts with.
struct Seat {
    ctx: Arc<Ctx>,
    path: String,
    edge: usize,
    socket: Option<Socket>,
    room: String,
}

impl Seat {
    /// The socket, connected and synced.
    async fn socket(&mut self, view: &mut RoomView) -> Option<&mut Socket> {
        while self.socket.is_none() {
            if self.ctx.abandoned() {
                return None;
            }
            match Socket::connect(self.ctx.edge(self.edge), &self.path).await {
                Ok(mut socket) => {
                    // The snapshot comes first.
                    if let Incoming::Frame(frame) = socket.next(Duration::from_secs(10)).await {
                        view.take(&frame, &self.room);
                        self.socket = Some(socket);
                    } else {
                        self.edge += 1;
                    }
                }
                Err(_) => {
                    self.edge += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        self.socket.as_mut()
    }

    fn drop_socket(&mut self, view: &mut RoomView) {
        self.socket = None;
        self.edge += 1;
        view.reconnects += 1;
    }
}

/// What became of a sent write.
enum Sent {
    /// `done` said so.
    Answered,
    /// An error frame; `Some(pause)` when worth sending again after it.
    Error(Value, Option<Duration>),
    /// Closed, or no answer in time: reconnected and synced, look at the state.
    Lost,
}

/// Sends `message` and reads until `done(view, frame)` is true, an error or a loss.
async fn send_and_wait(
    seat: &mut Seat,
    view: &mut RoomView,
    message: &str,
    done: impl Fn(&RoomView, &Value) -> bool,
) -> Sent {
    let Some(socket) = seat.socket(view).await else {
        return Sent::Lost;
    };
    if socket.send(message).await.is_err() {
        seat.drop_socket(view);
        return Sent::Lost;
    }
    let deadline = Instant::now() + ANSWER_WAIT;
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            seat.drop_socket(view);
            return Sent::Lost;
        };
        let Some(socket) = seat.socket.as_mut() else {
            return Sent::Lost;
        };
        match socket.next(left).await {
            Incoming::Frame(frame) => {
                view.take(&frame, &seat.room);
                if frame["type"] == "error" {
                    let retry = frame["retryable"].as_bool().unwrap_or(false).then(|| {
                        Duration::from_millis(json_u64(&frame["retryAfterMs"]).unwrap_or(200))
                    });
                    return Sent::Error(frame, retry);
                }
                if done(view, &frame) {
                    return Sent::Answered;
                }
            }
            Incoming::Quiet | Incoming::Closed => {
                seat.drop_socket(view);
                return Sent::Lost;
            }
        }
    }
}

/// Sends `message` until `done` holds for an answer, or `applied` for the state a reconnect
/// shows. `Err` with the reason when refused.
async fn until_answered(
    seat: &mut Seat,
    view: &mut RoomView,
    message: &str,
    done: impl Fn(&RoomView, &Value) -> bool,
    applied: impl Fn(&RoomView) -> bool,
) -> Result<(), String> {
    loop {
        match send_and_wait(seat, view, message, &done).await {
            Sent::Answered => return Ok(()),
            Sent::Error(_, Some(pause)) => {
                tokio::time::sleep(pause.min(Duration::from_secs(5))).await
            }
            Sent::Error(frame, None) => return Err(frame.to_string()),
            Sent::Lost => {
                if seat.ctx.abandoned() {
                    return Err("never answered".to_string());
                }
                // The reconnect's sync shows whether it was applied after all.
                if seat.socket(view).await.is_some() && applied(view) {
                    return Ok(());
                }
            }
        }
    }
}

async fn participant(
    ctx: Arc<Ctx>,
    room: String,
    p: usize,
    turns: Turns,
    barrier: Arc<tokio::sync::Barrier>,
) -> (ParticipantResult, bool) {
    let client = ctx.recovery.client(Kind::Collab);
    let me = format!("p{p}");
    let dish = format!("{room}-{me}");
    let path = match super::token(TENANT, "customer") {
        Ok(token) => format!("/parties/collaborative_order/{room}?_pk={me}&token={token}"),
        Err(e) => {
            let result = ParticipantResult {
                item: None,
                acked: 0,
                copies: 0,
                refused: vec![format!("minting a token: {e}")],
                view: RoomView::default(),
            };
            return (result, false);
        }
    };
    let mut seat = Seat {
        ctx: ctx.clone(),
        path,
        edge: p,
        socket: None,
        room: room.clone(),
    };
    let mut view = RoomView::default();
    let mut result = ParticipantResult {
        item: None,
        acked: 0,
        copies: 0,
        refused: Vec::new(),
        view: RoomView::default(),
    };
    let mut pacer = Pacer::new(
        Duration::from_secs_f64(1.0 / turns.rate.max(0.01)),
        turns.offset,
        client.faults(),
    );

    // Join (joining again changes nothing), then add this participant's item.
    let sent = Instant::now();
    let join = json!({"type": "join", "participantId": me, "participantName": format!("P{p}")});
    let joined = until_answered(
        &mut seat,
        &mut view,
        &join.to_string(),
        |v, f| {
            f["type"] == "participant_joined" && f["participantId"] == me.as_str() || v.joined(&me)
        },
        |v| v.joined(&me),
    )
    .await;
    match joined {
        Ok(()) => {
            result.acked += 1;
            client.answered(sent);
        }
        Err(why) => result.refused.push(format!("{room} {me} join: {why}")),
    }
    let sent = Instant::now();
    let add = json!({"type": "add_item", "participantId": me,
        "data": {"dishName": dish, "dishType": "veg", "quantity": 1, "price": 100 + p}});
    let added = until_answered(
        &mut seat,
        &mut view,
        &add.to_string(),
        |v, f| {
            f["type"] == "item_added" && f["data"]["item"]["dishName"] == dish.as_str()
                || !v.items_named(&dish).is_empty()
        },
        |v| !v.items_named(&dish).is_empty(),
    )
    .await;
    let mut item = None;
    match added {
        Ok(()) => {
            result.acked += 1;
            client.answered(sent);
            item = view
                .items_named(&dish)
                .first()
                .and_then(|i| Some((i["id"].as_str()?.to_string(), json_u64(&i["quantity"])?)));
        }
        Err(why) => result.refused.push(format!("{room} {me} add_item: {why}")),
    }

    // Changes: quantities 2..=99 in turn, so consecutive ones differ and none repeats within a
    // room (at most 98 changes).
    if let Some((id, _)) = item.clone() {
        for k in 0..turns.changes.min(98) {
            if ctx.stopping() {
                break;
            }
            pacer.turn().await;
            let quantity = k + 2;
            let sent = Instant::now();
            let change = json!({"type": "update_quantity", "participantId": me,
                "data": {"itemId": id, "quantity": quantity}});
            let has_it = |v: &RoomView| {
                v.state
                    .as_ref()
                    .and_then(|s| s["items"].as_array())
                    .is_some_and(|items| {
                        items.iter().any(|i| {
                            i["id"] == id.as_str() && json_u64(&i["quantity"]) == Some(quantity)
                        })
                    })
            };
            let answered = until_answered(
                &mut seat,
                &mut view,
                &change.to_string(),
                |_, f| {
                    f["type"] == "quantity_updated"
                        && f["data"]["item"]["id"] == id.as_str()
                        && json_u64(&f["data"]["item"]["quantity"]) == Some(quantity)
                },
                has_it,
            )
            .await;
            match answered {
                Ok(()) => {
                    result.acked += 1;
                    client.answered(sent);
                    item = Some((id.clone(), quantity));
                }
                Err(why) => {
                    result
                        .refused
                        .push(format!("{room} {me} quantity {quantity}: {why}"));
                    break;
                }
            }
        }
    }
    result.item = item;

    // Every participant is done changing; the initiator (the first to join, as every state
    // names it) finalizes; all must hear of it.
    barrier.wait().await;
    let mut finalize_acked = false;
    let initiator = view.state.as_ref().map(|s| s["initiatedBy"] == me.as_str());
    if initiator == Some(true) {
        let sent = Instant::now();
        let finalize = json!({"type": "finalize", "participantId": me});
        match until_answered(
            &mut seat,
            &mut view,
            &finalize.to_string(),
            |v, _| v.finalized,
            |v| v.finalized,
        )
        .await
        {
            Ok(()) => {
                finalize_acked = true;
                result.acked += 1;
                client.answered(sent);
            }
            // Sent again after it was applied unseen: the room says it is finalized.
            Err(why) if why.contains("CONFLICT") && refresh(&mut seat, &mut view).await => {
                finalize_acked = true;
                result.acked += 1;
            }
            Err(why) => result.refused.push(format!("{room} {me} finalize: {why}")),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !view.finalized && Instant::now() < deadline && !ctx.abandoned() {
        let Some(socket) = seat.socket(&mut view).await else {
            break;
        };
        match socket.next(Duration::from_millis(500)).await {
            Incoming::Frame(frame) => view.take(&frame, &room),
            Incoming::Quiet => {}
            Incoming::Closed => seat.drop_socket(&mut view),
        }
    }
    if !view.finalized {
        result.refused.push(format!(
            "{room} {me}: never heard that the order was finalized"
        ));
    }
    result.copies = view.items_named(&dish).len();
    result.view = view;
    (result, finalize_acked)
}

/// Reconnects to read the room's state afresh; true when it is finalized.
async fn refresh(seat: &mut Seat, view: &mut RoomView) -> bool {
    seat.drop_socket(view);
    seat.socket(view).await.is_some() && view.finalized
}

/// Every room, finished.
pub(super) struct Finished {
    rooms: Vec<RoomResult>,
}

/// Waits for every room slot to finish its room (after the soak stopped them).
pub(super) async fn finish(running: Running) -> Finished {
    let mut rooms = Vec::new();
    for slot in running.slots {
        if let Ok(done) = slot.await {
            rooms.extend(done);
        }
    }
    Finished { rooms }
}

/// Reads the finalized orders from SQL and tallies.
pub(super) async fn check(ctx: &Ctx, finished: Finished, pool: &sqlx::PgPool) -> Tally {
    let mut tally = Tally::new("collab");
    let rooms = finished.rooms;
    // Room → its SQL order's items: item id → quantities (one row each).
    let mut sql: BTreeMap<String, HashMap<String, Vec<u64>>> = BTreeMap::new();
    let mut orders = 0u64;
    match sqlx::query_as::<_, (String,)>(
        "SELECT room_id FROM collab_orders WHERE tenant_id = $1 AND room_id LIKE $2",
    )
    .bind(TENANT)
    .bind(format!("chaos-{}-r%", ctx.run))
    .fetch_all(pool)
    .await
    {
        Ok(found) => {
            orders = found.len() as u64;
            for (room,) in found {
                sql.entry(room).or_default();
            }
        }
        Err(e) => tally.note(format!("reading collab_orders: {e}")),
    }
    match sqlx::query_as::<_, (String, String, i32)>(
        "SELECT o.room_id, i.item_id, i.quantity FROM collab_order_items i \
         JOIN collab_orders o ON o.tenant_id = i.tenant_id AND o.order_id = i.order_id \
         WHERE o.tenant_id = $1 AND o.room_id LIKE $2",
    )
    .bind(TENANT)
    .bind(format!("chaos-{}-r%", ctx.run))
    .fetch_all(pool)
    .await
    {
        Ok(found) => {
            for (room, item, quantity) in found {
                sql.entry(room)
                    .or_default()
                    .entry(item)
                    .or_default()
                    .push(quantity.max(0) as u64);
            }
        }
        Err(e) => tally.note(format!("reading collab_order_items: {e}")),
    }
    let mut finalized_acked = 0u64;
    let mut reapplied = 0u64;
    for room in rooms {
        let items = sql.get(&room.room);
        if room.finalize_acked {
            finalized_acked += 1;
            if items.is_none() {
                tally.lost += 1;
                tally.note(format!(
                    "{}: finalize answered, no collab_orders row",
                    room.room
                ));
            }
        }
        for participant in &room.participants {
            tally.acknowledged += participant.acked;
            tally.refused += participant.refused.len() as u64;
            for why in participant.refused.iter().take(3) {
                tally.note(why.clone());
            }
            if participant.copies > 1 {
                tally.duplicated += 1;
                tally.note(format!(
                    "{}: an item added {} times (add_item sent again after a sync that did not show it)",
                    room.room, participant.copies
                ));
            }
            let view = &participant.view;
            tally.out_of_order += view.backwards + view.skips;
            tally.stale_snapshots += view.stale_snapshots;
            tally.reconnects += view.reconnects;
            reapplied += view.changes.values().filter(|seqs| seqs.len() > 1).count() as u64;
            for note in &view.notes {
                tally.note(note.clone());
            }
            let mut lost_here = 0;
            if let (Some((item, quantity)), Some(items)) = (&participant.item, items) {
                match items.get(item).map(Vec::as_slice) {
                    Some([q]) if q == quantity => {}
                    other => {
                        lost_here = 1;
                        tally.note(format!(
                            "{}: item {item} last answered at quantity {quantity}, SQL has {other:?}",
                            room.room
                        ));
                    }
                }
            }
            tally.lost += lost_here;
            tally.applied += participant.acked.saturating_sub(lost_here);
        }
    }
    if reapplied > 0 {
        tally.note(format!(
            "{reapplied} quantity changes applied twice (sent again without a key after an answer was lost; the same absolute value, so no effect)"
        ));
    }
    tally.sql = Some((orders, finalized_acked, "finalized orders"));
    tally
}
