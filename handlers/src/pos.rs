//! The pos domain (seed 002): per tenant one order book (key `_`: order numbers, active orders,
//! the newest ten) and one small claim per idempotency key (`idem:{key}`). Orders fan out as
//! `order_created` / `order_status_update`, go to SQL as records and to the tenant's events feed
//! (as notices, see [`crate::events::notify_feed`]).
//!
//! A submission with an idempotency key goes to its claim first: the first one forwards the
//! order to the tenant (`Create`), which creates it and sends the `order_created` frame back
//! (`Created`); later ones are answered from the claim. So a retry on any edge, after any
//! restart, within 24 hours, gets the same order; the tenant's state never holds the keys.
//! A claim is good for 24 hours from the submission that made it (by the commands' clock): a
//! submission after that makes a new order, and KV drops the claim by itself then (a TTL on the
//! claim's write, see [`Domain::time_to_live`]), so claims do not pile up.

use crate::domain::{Context, Domain, Effects, Rejection};
use crate::events::notify_feed;
use crate::rate::WriteRate;
use chrono::{Datelike, FixedOffset, TimeZone};
use serde_json::{Value, json};
use std::time::Duration;
use tablewire_schemas::events::event;
use tablewire_schemas::pos::{
    ACTIVE_LIMIT, BookOrder, Command, IDEMPOTENCY_WINDOW_MS, IdempotencyClaim, Order, OrderInput,
    OrderStatus, PosState, RECENT_LIMIT, ServerFrame, TENANT_KEY, TenantOrders,
};
use tablewire_schemas::{Domain as DomainName, ErrorCode, Frame, Origin, envelope::role};

/// The pos domain.
#[derive(Debug, Clone, Copy)]
pub struct Pos {
    /// Writes one tenant's book accepts (orders, status changes, settings), across every edge
    /// and worker.
    pub tenant_rate: WriteRate,
}

/// The default write rate of one tenant's book: a restaurant's tills and kitchens together,
/// with room for a till's offline queue flushed at once.
pub const TENANT_RATE: WriteRate = WriteRate::new(50, 200);

impl Pos {
    /// The pos domain with the default limits.
    pub const DEFAULT: Pos = Pos {
        tenant_rate: TENANT_RATE,
    };
}

impl Default for Pos {
    fn default() -> Self {
        Pos::DEFAULT
    }
}

/// Record kinds the pos domain writes.
pub mod record {
    /// A new order (`data` is the order).
    pub const ORDER: &str = "pos_order";
    /// A status change (`{orderId, status, previousStatus, updatedBy, at, order}`, the order as
    /// it is after the change).
    pub const STATUS: &str = "pos_order_status";
}

/// Most repeats waiting on one idempotency key before its order exists.
const MAX_WAITING: usize = 32;

/// How long a claim waits for its order (by the commands' clock) before a repeat asks the
/// tenant's book again: the first request may have been lost to a failure, and a claim must not
/// wait forever. The book answers a key it already made an order for with that order, so
/// asking twice never makes two.
pub const ASK_AGAIN_AFTER_MS: i64 = 10_000;

/// The local day `YYYYMMDD` of `now_ms` at `offset_minutes` east of UTC.
pub fn local_day(now_ms: i64, offset_minutes: i32) -> String {
    let offset = FixedOffset::east_opt(offset_minutes * 60)
        .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"));
    let date = offset
        .timestamp_millis_opt(now_ms)
        .single()
        .map(|t| t.date_naive())
        .unwrap_or_default();
    format!("{:04}{:02}{:02}", date.year(), date.month(), date.day())
}

/// `ORD-YYYYMMDD-NNN`: at least three digits, more past 999.
pub fn order_number(day: &str, n: u64) -> String {
    format!("ORD-{day}-{n:03}")
}

fn validation(why: String) -> Rejection {
    Rejection::new(ErrorCode::ValidationError, why)
}

/// Whether a claim no longer holds at `now_ms`: never made, or made 24 hours ago or more.
pub fn claim_expired(claim: &IdempotencyClaim, now_ms: i64) -> bool {
    claim.claimed_at == 0 || now_ms - claim.claimed_at >= IDEMPOTENCY_WINDOW_MS
}

/// How long KV keeps a claim written at `now_ms`: until its 24 hours are over.
pub fn claim_time_to_live(claim: &IdempotencyClaim, now_ms: i64) -> Duration {
    let left = claim.claimed_at + IDEMPOTENCY_WINDOW_MS - now_ms;
    Duration::from_millis(left.max(0) as u64)
}

impl Pos {
    fn tenant(
        &self,
        book: &mut TenantOrders,
        command: Command,
        ctx: &Context<'_>,
        effects: &mut Effects,
    ) -> Result<(), Rejection> {
        // Every command of the book is a write of the tenant's; the limit counts them all.
        let tat = match self
            .tenant_rate
            .admit(book.rate_tat_us, ctx.now_ms, "for this restaurant")
        {
            Ok(tat) => tat,
            Err(refused) => return self.refuse(command, refused, ctx, effects),
        };
        let before = book.rate_tat_us;
        book.rate_tat_us = tat;
        let result = self.tenant_command(book, command, ctx, effects);
        if result.is_err() {
            // A rejection leaves the state exactly as it was.
            book.rate_tat_us = before;
        }
        result
    }

    /// A command over the tenant's rate. A claim's request is answered back to the claim (and
    /// its first sender), which lets the key go, so that the claim does not wait for an order
    /// that is not coming; anything else is rejected to its sender as usual.
    fn refuse(
        &self,
        command: Command,
        refused: Rejection,
        ctx: &Context<'_>,
        effects: &mut Effects,
    ) -> Result<(), Rejection> {
        let Command::Create {
            idempotency_key,
            reply_to,
            ..
        } = command
        else {
            return Err(refused);
        };
        if !reply_to.edge.is_empty() {
            let frame = Frame::from(&self.error_frame(&refused.0, ctx));
            effects.replies.push((reply_to, frame));
        }
        effects.emit(
            DomainName::Pos,
            ctx.tenant,
            &tablewire_schemas::pos::idempotency_state_key(&idempotency_key),
            Command::Refused { error: refused.0 },
        );
        Ok(())
    }

    fn tenant_command(
        &self,
        book: &mut TenantOrders,
        command: Command,
        ctx: &Context<'_>,
        effects: &mut Effects,
    ) -> Result<(), Rejection> {
        match command {
            Command::Submit {
                order,
                idempotency_key: None,
            } => {
                let reply_to = ctx.origin.clone();
                create(book, order, None, &reply_to, ctx, effects).map(|_| ())
            }
            Command::Create {
                order,
                idempotency_key,
                claimed_at,
                reply_to,
            } => {
                if let Some(made) = book
                    .active
                    .iter()
                    .chain(&book.recent)
                    .map(BookOrder::order)
                    .find(|o| {
                        claimed_at > 0
                            && o.created_at >= claimed_at
                            && o.idempotency_key.as_deref() == Some(idempotency_key.as_str())
                    })
                {
                    // Asked again by a claim that did not hear back: answer with the order.
                    let frame = Frame::new(ServerFrame::OrderCreated {
                        kitchen_order: made.kitchen(),
                        order: Box::new(made.clone()),
                    });
                    if reply_to.request.is_some() {
                        effects.replies.push((reply_to, frame.clone()));
                    }
                    let frame = serde_json::from_str(frame.get()).unwrap_or(Value::Null);
                    effects.emit(
                        DomainName::Pos,
                        ctx.tenant,
                        &tablewire_schemas::pos::idempotency_state_key(&idempotency_key),
                        Command::Created { frame },
                    );
                    return Ok(());
                }
                let frame = create(
                    book,
                    order,
                    Some(idempotency_key.clone()),
                    &reply_to,
                    ctx,
                    effects,
                )?;
                let frame = serde_json::from_str(frame.get()).unwrap_or(Value::Null);
                effects.emit(
                    DomainName::Pos,
                    ctx.tenant,
                    &tablewire_schemas::pos::idempotency_state_key(&idempotency_key),
                    Command::Created { frame },
                );
                Ok(())
            }
            Command::UpdateStatus {
                order_id,
                status,
                updated_by,
            } => update_status(book, &order_id, status, updated_by, ctx, effects),
            Command::Configure { utc_offset_minutes } => {
                if !ctx
                    .claims
                    .is_some_and(|c| c.has_role(&[role::ADMIN, role::SERVICE]))
                {
                    return Err(Rejection::new(
                        ErrorCode::Forbidden,
                        "configuring needs an admin or service token",
                    ));
                }
                if !(-14 * 60..=14 * 60).contains(&utc_offset_minutes) {
                    return Err(validation("utcOffsetMinutes must be within ±840".into()));
                }
                book.utc_offset_minutes = utc_offset_minutes;
                if ctx.origin.request.is_some() {
                    effects.reply(
                        ctx,
                        json!({"type": "settings", "utcOffsetMinutes": utc_offset_minutes}),
                    );
                }
                Ok(())
            }
            Command::Submit { .. } | Command::Created { .. } | Command::Refused { .. } => {
                Err(Rejection::new(
                    ErrorCode::InvalidMessage,
                    "this command belongs to an idempotency key",
                ))
            }
        }
    }

    fn claim(
        &self,
        claim: &mut IdempotencyClaim,
        command: Command,
        ctx: &Context<'_>,
        effects: &mut Effects,
    ) -> Result<(), Rejection> {
        match command {
            Command::Submit {
                order,
                idempotency_key: Some(key),
            } => {
                if claim_expired(claim, ctx.now_ms) {
                    order.check().map_err(validation)?;
                    *claim = IdempotencyClaim {
                        claimed_at: ctx.now_ms,
                        frame: None,
                        waiting: Vec::new(),
                        asked_at: 0,
                    };
                    effects.emit(
                        DomainName::Pos,
                        ctx.tenant,
                        TENANT_KEY,
                        Command::Create {
                            order,
                            idempotency_key: key,
                            claimed_at: ctx.now_ms,
                            reply_to: ctx.origin.clone(),
                        },
                    );
                } else if let Some(frame) = &claim.frame {
                    effects.reply(ctx, frame);
                } else {
                    if claim.waiting.len() < MAX_WAITING {
                        claim.waiting.push(ctx.origin.clone());
                    }
                    let asked = claim.asked_at.max(claim.claimed_at);
                    if ctx.now_ms - asked >= ASK_AGAIN_AFTER_MS {
                        // The waiting senders get the answer when it comes back.
                        claim.asked_at = ctx.now_ms;
                        effects.emit(
                            DomainName::Pos,
                            ctx.tenant,
                            TENANT_KEY,
                            Command::Create {
                                order,
                                idempotency_key: key,
                                claimed_at: claim.claimed_at,
                                reply_to: Origin::default(),
                            },
                        );
                    }
                }
                Ok(())
            }
            Command::Created { frame } => {
                for origin in claim.waiting.drain(..) {
                    effects.replies.push((origin, Frame::from(&frame)));
                }
                claim.frame = Some(frame);
                Ok(())
            }
            Command::Refused { error } => {
                // Only a claim still waiting is released; one answered already keeps its order.
                if claim.frame.is_none() {
                    let frame = Frame::from(&self.error_frame(&error, ctx));
                    for origin in claim.waiting.drain(..) {
                        effects.replies.push((origin, frame.clone()));
                    }
                    *claim = IdempotencyClaim::default();
                }
                Ok(())
            }
            _ => Err(Rejection::new(
                ErrorCode::InvalidMessage,
                "an idempotency key only takes submissions",
            )),
        }
    }
}

/// Creates an order on the tenant's book: number, fan out, record, announce. Returns the
/// `order_created` frame.
fn create(
    book: &mut TenantOrders,
    input: OrderInput,
    idempotency_key: Option<String>,
    reply_to: &Origin,
    ctx: &Context<'_>,
    effects: &mut Effects,
) -> Result<Frame, Rejection> {
    input.check().map_err(validation)?;
    // Days only move forward: a late clock never makes a number of an earlier day again.
    let today = local_day(ctx.now_ms, book.utc_offset_minutes);
    if today > book.day {
        book.day = today;
        book.day_count = 0;
    }
    book.day_count += 1;
    book.total += 1;
    let extra = input.extra_fields();
    let order = Order {
        id: format!("order-{}", book.total),
        order_number: order_number(&book.day, book.day_count),
        tenant_id: ctx.tenant.to_string(),
        order_type: input.order_type().to_string(),
        payment_method: input.payment_method,
        customer: input.customer,
        cart: input.cart.unwrap_or(Value::Null),
        status: OrderStatus::Pending,
        pos_status: input.status,
        source: input.source,
        idempotency_key,
        created_at: ctx.now_ms,
        updated_at: ctx.now_ms,
        extra,
    };
    // Serialized once, straight from the typed frame.
    let frame = Frame::new(ServerFrame::OrderCreated {
        kitchen_order: order.kitchen(),
        order: Box::new(order.clone()),
    });
    effects.events.push(frame.clone());
    // HTTP senders wait for an answer; WebSocket senders already get the event.
    if reply_to.request.is_some() {
        effects.replies.push((reply_to.clone(), frame.clone()));
    }
    effects.record(record::ORDER, &order);
    let total = order.cart.get("total").cloned().unwrap_or(Value::Null);
    let mut announced = json!({"order": {"id": order.id, "orderNumber": order.order_number,
        "status": order.status, "items": order.kitchen().items, "total": total,
        "orderType": order.order_type}});
    if let Some(table) = order.table_id() {
        // Where events clients filter on it (`filters: {table_id}`).
        announced["order"]["table_id"] = table.clone();
        announced["table_id"] = table.clone();
    }
    notify_feed(effects, ctx, event::ORDER_CREATED, announced);
    let order = BookOrder::created(order);
    book.recent.insert(0, order.clone());
    book.recent.truncate(RECENT_LIMIT);
    book.active.push(order);
    if book.active.len() > ACTIVE_LIMIT {
        let excess = book.active.len() - ACTIVE_LIMIT;
        book.active.drain(..excess);
    }
    Ok(frame)
}

fn update_status(
    book: &mut TenantOrders,
    order_id: &str,
    status: OrderStatus,
    updated_by: String,
    ctx: &Context<'_>,
    effects: &mut Effects,
) -> Result<(), Rejection> {
    let Some(index) = book.active.iter().position(|o| o.id == order_id) else {
        return Err(match book.recent.iter().find(|o| o.id == order_id) {
            Some(done) => Rejection::new(
                ErrorCode::Conflict,
                format!("order {order_id} is already {}", done.status.as_str()),
            ),
            None => Rejection::new(
                ErrorCode::UnknownResource,
                format!("no active order {order_id}"),
            ),
        });
    };
    let previous = book.active[index].status;
    let table = book.active[index].order().table_id().cloned();
    if !previous.can_become(status) {
        return Err(Rejection::new(
            ErrorCode::Conflict,
            format!(
                "an order cannot go from {} to {}",
                previous.as_str(),
                status.as_str()
            ),
        ));
    }
    let whole = book.active[index].has_body();
    let order = book.active[index].edit();
    order.status = status;
    order.updated_at = ctx.now_ms;
    let (id, number) = (order.id.clone(), order.order_number.clone());
    // Without its body (gone from KV after ORDER_BODY_TTL_MS) the order is not written over
    // in SQL: only the status history and the row's status change.
    let changed = whole.then(|| order.clone());
    if let Some(recent) = book.recent.iter_mut().find(|o| o.id == id) {
        let recent = recent.edit();
        recent.status = status;
        recent.updated_at = ctx.now_ms;
    }
    if status.is_final() {
        book.active.remove(index);
    }
    let frame = ServerFrame::OrderStatusUpdate {
        order_id: id.clone(),
        order_number: number.clone(),
        status,
        updated_by: updated_by.clone(),
    };
    // HTTP senders wait for an answer; WebSocket senders already get the event.
    if ctx.origin.request.is_some() {
        effects.reply(ctx, &frame);
    }
    effects.event(frame);
    effects.record(
        record::STATUS,
        json!({"orderId": id, "orderNumber": number, "status": status,
               "previousStatus": previous, "updatedBy": updated_by, "at": ctx.now_ms,
               "order": changed}),
    );
    let mut announced = json!({"order_id": id, "orderNumber": number, "status": status,
           "previous_status": previous, "updatedBy": updated_by});
    if let Some(table) = table {
        announced["table_id"] = table;
    }
    notify_feed(effects, ctx, event::ORDER_STATUS, announced);
    Ok(())
}

impl Domain for Pos {
    const NAME: DomainName = DomainName::Pos;
    type State = PosState;
    type Command = Command;

    fn new_state(&self, ctx: &Context<'_>) -> PosState {
        if ctx.key == TENANT_KEY {
            PosState::Tenant(TenantOrders::default())
        } else {
            PosState::Idempotency(IdempotencyClaim::default())
        }
    }

    fn apply(
        &self,
        state: &mut PosState,
        command: Command,
        ctx: &Context<'_>,
        effects: &mut Effects,
    ) -> Result<(), Rejection> {
        // Every check comes before the first change, so a rejection changes nothing.
        match state {
            PosState::Tenant(book) => self.tenant(book, command, ctx, effects),
            PosState::Idempotency(claim) => self.claim(claim, command, ctx, effects),
        }
    }

    /// Claims vanish from KV when their 24 hours are over; tenants' books stay.
    fn time_to_live(&self, state: &PosState, now_ms: i64) -> Option<Duration> {
        match state {
            PosState::Tenant(_) => None,
            PosState::Idempotency(claim) => Some(claim_time_to_live(claim, now_ms)),
        }
    }

    /// Each order's body is written once, beside the book (see [`BookOrder`]).
    fn unwritten_parts(&self, state: &PosState) -> Vec<(String, Vec<u8>)> {
        let PosState::Tenant(book) = state else {
            return Vec::new();
        };
        book.unstored_bodies()
            .into_iter()
            .filter_map(|order| {
                let json = serde_json::to_vec(order).ok()?;
                Some((TenantOrders::body_name(&order.id), json))
            })
            .collect()
    }

    fn parts_written(&self, state: &mut PosState) {
        if let PosState::Tenant(book) = state {
            book.bodies_written();
        }
    }

    fn missing_parts(&self, state: &PosState) -> Vec<String> {
        match state {
            PosState::Tenant(book) => book
                .missing_bodies()
                .iter()
                .map(|id| TenantOrders::body_name(id))
                .collect(),
            PosState::Idempotency(_) => Vec::new(),
        }
    }

    fn attach_part(&self, state: &mut PosState, _part: &str, json: &[u8]) {
        if let (PosState::Tenant(book), Ok(body)) = (state, serde_json::from_slice::<Order>(json)) {
            book.attach_body(&body);
        }
    }

    fn error_frame(&self, error: &tablewire_schemas::ErrorBody, ctx: &Context<'_>) -> Value {
        serde_json::to_value(ServerFrame::Error {
            error: error.clone(),
            timestamp: ctx.now_ms,
        })
        .unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tablewire_schemas::pos::idempotency_state_key;

    const DAY1: i64 = 1_736_121_600_000; // 2025-01-06T00:00:00Z
    const POS: Pos = Pos::DEFAULT;

    fn origin() -> Origin {
        Origin {
            edge: "e1".into(),
            conn: Some(7),
            request: None,
        }
    }

    fn ctx<'a>(origin: &'a Origin, key: &'a str, now: i64) -> Context<'a> {
        Context {
            now_ms: now,
            stream_seq: 1,
            message_id: "m",
            tenant: "r1",
            key,
            claims: None,
            origin,
        }
    }

    fn order() -> OrderInput {
        serde_json::from_value(json!({"tenantId": "r1", "orderType": "dine-in",
            "paymentMethod": "cash", "customer": {"name": "Ann", "phone": "555"},
            "cart": {"items": [{"id": "i1", "name": "Dosa", "price": 120, "quantity": 2}], "total": 240},
            "status": "confirmed", "source": "pos"}))
        .expect("order")
    }

    fn submit() -> Command {
        Command::Submit {
            order: order(),
            idempotency_key: None,
        }
    }

    fn book(state: &PosState) -> &TenantOrders {
        match state {
            PosState::Tenant(b) => b,
            PosState::Idempotency(_) => panic!("not a tenant"),
        }
    }

    #[test]
    fn orders_are_numbered_per_day_and_reset_at_local_midnight() {
        let o = origin();
        let mut state = POS.new_state(&ctx(&o, TENANT_KEY, DAY1));
        let mut fx = Effects::default();
        for i in 0..3 {
            POS.apply(
                &mut state,
                submit(),
                &ctx(&o, TENANT_KEY, DAY1 + i),
                &mut fx,
            )
            .expect("submit");
        }
        assert_eq!(fx.events[0].value()["type"], "order_created");
        assert_eq!(
            fx.events[0].value()["order"]["orderNumber"],
            "ORD-20250106-001"
        );
        assert_eq!(
            fx.events[2].value()["order"]["orderNumber"],
            "ORD-20250106-003"
        );
        assert_eq!(fx.events[2].value()["kitchenOrder"]["status"], "pending");
        assert_eq!(
            fx.events[2].value()["kitchenOrder"]["items"][0]["name"],
            "Dosa"
        );
        // One millisecond before the next UTC midnight, then at it.
        let next_day = DAY1 + 86_400_000;
        let mut fx = Effects::default();
        POS.apply(
            &mut state,
            submit(),
            &ctx(&o, TENANT_KEY, next_day - 1),
            &mut fx,
        )
        .expect("late");
        POS.apply(
            &mut state,
            submit(),
            &ctx(&o, TENANT_KEY, next_day),
            &mut fx,
        )
        .expect("midnight");
        assert_eq!(
            fx.events[0].value()["order"]["orderNumber"],
            "ORD-20250106-004"
        );
        assert_eq!(
            fx.events[1].value()["order"]["orderNumber"],
            "ORD-20250107-001"
        );
        assert_eq!(fx.events[1].value()["order"]["id"], "order-5");
        // A clock that went back does not reuse a number of the earlier day.
        let mut fx = Effects::default();
        POS.apply(
            &mut state,
            submit(),
            &ctx(&o, TENANT_KEY, next_day - 10),
            &mut fx,
        )
        .expect("late clock");
        assert_eq!(
            fx.events[0].value()["order"]["orderNumber"],
            "ORD-20250107-002"
        );
        assert_eq!(book(&state).recent.len(), 6);
        assert_eq!(book(&state).active.len(), 6);
        assert_eq!(fx.records[0].0, record::ORDER);
        assert!(
            fx.commands.is_empty(),
            "the feed hears of the order by a notice"
        );
        assert_eq!(fx.notices[0].domain, DomainName::Events);
        assert_eq!(fx.notices[0].frame.value()["type"], event::ORDER_CREATED);
    }

    #[test]
    fn the_tenant_time_zone_decides_the_day_and_numbers_grow_past_999() {
        // 2025-01-06T20:00Z is already the 7th at UTC+05:30.
        assert_eq!(local_day(DAY1 + 20 * 3_600_000, 330), "20250107");
        assert_eq!(local_day(DAY1 + 20 * 3_600_000, 0), "20250106");
        assert_eq!(local_day(DAY1 + 3_600_000, -300), "20250105");
        assert_eq!(order_number("20250106", 7), "ORD-20250106-007");
        assert_eq!(order_number("20250106", 1000), "ORD-20250106-1000");
    }

    #[test]
    fn status_changes_follow_the_allowed_transitions() {
        let o = origin();
        let c = ctx(&o, TENANT_KEY, DAY1);
        let mut state = POS.new_state(&c);
        POS.apply(&mut state, submit(), &c, &mut Effects::default())
            .expect("submit");
        let change = |status| Command::UpdateStatus {
            order_id: "order-1".into(),
            status,
            updated_by: "kitchen-terminal-1".into(),
        };
        let before = state.clone();
        let err = POS
            .apply(
                &mut state,
                change(OrderStatus::Ready),
                &c,
                &mut Effects::default(),
            )
            .expect_err("skip preparing");
        assert_eq!(err.0.code, ErrorCode::Conflict);
        assert_eq!(state, before);
        let mut fx = Effects::default();
        for s in [
            OrderStatus::Preparing,
            OrderStatus::Ready,
            OrderStatus::Completed,
        ] {
            POS.apply(&mut state, change(s), &c, &mut fx)
                .expect("allowed");
        }
        assert_eq!(
            fx.events[2].value(),
            json!({"type": "order_status_update", "orderId": "order-1",
                   "orderNumber": "ORD-20250106-001", "status": "completed",
                   "updatedBy": "kitchen-terminal-1"})
        );
        assert!(book(&state).active.is_empty());
        assert_eq!(book(&state).recent[0].status, OrderStatus::Completed);
        let err = POS
            .apply(
                &mut state,
                change(OrderStatus::Cancelled),
                &c,
                &mut Effects::default(),
            )
            .expect_err("already completed");
        assert_eq!(err.0.code, ErrorCode::Conflict);
        let unknown = Command::UpdateStatus {
            order_id: "order-9".into(),
            status: OrderStatus::Preparing,
            updated_by: "k".into(),
        };
        let err = POS
            .apply(&mut state, unknown, &c, &mut Effects::default())
            .expect_err("unknown");
        assert_eq!(err.0.code, ErrorCode::UnknownResource);
        assert_eq!(fx.records.len(), 3);
    }

    #[test]
    fn invalid_orders_change_nothing() {
        let o = origin();
        let c = ctx(&o, TENANT_KEY, DAY1);
        let mut state = POS.new_state(&c);
        let before = state.clone();
        let mut fx = Effects::default();
        let mut bad = order();
        bad.cart = None;
        let err = POS
            .apply(
                &mut state,
                Command::Submit {
                    order: bad,
                    idempotency_key: None,
                },
                &c,
                &mut fx,
            )
            .expect_err("no cart");
        assert_eq!(err.0.code, ErrorCode::ValidationError);
        assert_eq!(state, before);
        assert_eq!(fx, Effects::default());
        let frame = POS.error_frame(&err.0, &c);
        assert_eq!(frame["type"], "error");
        assert_eq!(frame["code"], "VALIDATION_ERROR");
        assert!(frame["message"].as_str().is_some());
    }

    #[test]
    fn an_idempotency_key_creates_one_order_and_answers_every_repeat() {
        let (first, second) = (
            origin(),
            Origin {
                edge: "e2".into(),
                conn: None,
                request: Some("r".into()),
            },
        );
        let key = idempotency_state_key("k1");
        let submit = || Command::Submit {
            order: order(),
            idempotency_key: Some("k1".into()),
        };
        let mut claim = POS.new_state(&ctx(&first, &key, DAY1));
        let mut fx = Effects::default();
        POS.apply(&mut claim, submit(), &ctx(&first, &key, DAY1), &mut fx)
            .expect("first");
        assert_eq!(fx.commands.len(), 1);
        let create: Command = serde_json::from_str(fx.commands[0].3.get()).expect("create");
        // A repeat before the order exists waits for it.
        let mut fx2 = Effects::default();
        POS.apply(
            &mut claim,
            submit(),
            &ctx(&second, &key, DAY1 + 1),
            &mut fx2,
        )
        .expect("repeat");
        assert!(fx2.commands.is_empty() && fx2.replies.is_empty());
        // The tenant creates it and answers the claim.
        let mut book_state = POS.new_state(&ctx(&first, TENANT_KEY, DAY1));
        let mut fx3 = Effects::default();
        let emitted = Origin {
            edge: String::new(),
            conn: None,
            request: None,
        };
        POS.apply(
            &mut book_state,
            create,
            &ctx(&emitted, TENANT_KEY, DAY1 + 2),
            &mut fx3,
        )
        .expect("create");
        assert_eq!(fx3.events.len(), 1);
        assert!(
            fx3.replies.is_empty(),
            "the WebSocket sender gets the event"
        );
        let created = fx3
            .commands
            .iter()
            .find(|c| c.0 == DomainName::Pos)
            .expect("created");
        assert_eq!(created.2, key);
        let created: Command = serde_json::from_str(created.3.get()).expect("created");
        let mut fx4 = Effects::default();
        POS.apply(
            &mut claim,
            created,
            &ctx(&emitted, &key, DAY1 + 3),
            &mut fx4,
        )
        .expect("created");
        assert_eq!(fx4.replies.len(), 1);
        assert_eq!(fx4.replies[0].0, second);
        assert_eq!(fx4.replies[0].1.value(), fx3.events[0].value());
        // Later repeats are answered at once, until 24 hours have passed.
        let mut fx5 = Effects::default();
        POS.apply(
            &mut claim,
            submit(),
            &ctx(&first, &key, DAY1 + 1000),
            &mut fx5,
        )
        .expect("later");
        assert_eq!(
            fx5.replies[0].1.value()["order"]["orderNumber"],
            "ORD-20250106-001"
        );
        assert!(fx5.commands.is_empty());
        let mut fx6 = Effects::default();
        POS.apply(
            &mut claim,
            submit(),
            &ctx(&first, &key, DAY1 + IDEMPOTENCY_WINDOW_MS),
            &mut fx6,
        )
        .expect("expired");
        assert_eq!(
            fx6.commands.len(),
            1,
            "a day later the key makes a new order"
        );
    }

    /// A claim whose request to the book was lost (a failure between the two) does not wait
    /// forever: a repeat 10 s later asks again, and the book answers a key it already made an
    /// order for with that order instead of making a second.
    #[test]
    fn a_claim_that_never_hears_back_asks_again_and_never_makes_two_orders() {
        let (first, second) = (origin(), origin());
        let key = idempotency_state_key("lost");
        let submit = || Command::Submit {
            order: order(),
            idempotency_key: Some("lost".into()),
        };
        let emitted = Origin::default();
        let mut claim = POS.new_state(&ctx(&first, &key, DAY1));
        let mut fx = Effects::default();
        POS.apply(&mut claim, submit(), &ctx(&first, &key, DAY1), &mut fx)
            .expect("first");
        let lost_create: Command = serde_json::from_str(fx.commands[0].3.get()).expect("create");
        // A repeat soon after waits; one after ASK_AGAIN_AFTER_MS asks the book again.
        let mut fx = Effects::default();
        POS.apply(
            &mut claim,
            submit(),
            &ctx(&second, &key, DAY1 + 5_000),
            &mut fx,
        )
        .expect("repeat");
        assert!(fx.commands.is_empty(), "too soon to ask again");
        let mut fx = Effects::default();
        let late = DAY1 + 5_000 + ASK_AGAIN_AFTER_MS;
        POS.apply(&mut claim, submit(), &ctx(&second, &key, late), &mut fx)
            .expect("late repeat");
        assert_eq!(fx.commands.len(), 1, "asks the book again");
        let again: Command = serde_json::from_str(fx.commands[0].3.get()).expect("create");
        let mut fx = Effects::default();
        POS.apply(&mut claim, submit(), &ctx(&second, &key, late + 1), &mut fx)
            .expect("another repeat");
        assert!(fx.commands.is_empty(), "asks at most once per interval");
        // The book gets the second request first (the first was lost), then, had it been only
        // late, the first: one order either way.
        let mut book = POS.new_state(&ctx(&emitted, TENANT_KEY, late));
        let mut made = Effects::default();
        POS.apply(
            &mut book,
            again,
            &ctx(&emitted, TENANT_KEY, late + 2),
            &mut made,
        )
        .expect("create");
        let mut repeat = Effects::default();
        POS.apply(
            &mut book,
            lost_create,
            &ctx(&emitted, TENANT_KEY, late + 3),
            &mut repeat,
        )
        .expect("asked twice");
        let PosState::Tenant(orders) = &book else {
            panic!("a book")
        };
        assert_eq!(orders.total, 1, "one order");
        assert!(repeat.events.is_empty() && repeat.records.is_empty());
        let created = |fx: &Effects| -> Value {
            let c = fx.commands.iter().find(|c| c.2 == key).expect("created");
            serde_json::from_str(c.3.get()).expect("json")
        };
        assert_eq!(
            created(&made)["frame"]["order"]["orderNumber"],
            created(&repeat)["frame"]["order"]["orderNumber"]
        );
        // The claim answers everyone who waited.
        let answer: Command = serde_json::from_value(created(&made)).expect("created");
        let mut fx = Effects::default();
        POS.apply(&mut claim, answer, &ctx(&emitted, &key, late + 4), &mut fx)
            .expect("created");
        assert_eq!(fx.replies.len(), 3, "the three repeats that waited");
        // A claim made a day later (the old one expired) is a new order, not the old one.
        let day_later = DAY1 + IDEMPOTENCY_WINDOW_MS;
        let mut renewed = Effects::default();
        POS.apply(
            &mut claim,
            submit(),
            &ctx(&first, &key, day_later),
            &mut renewed,
        )
        .expect("renewed");
        let create: Command = serde_json::from_str(renewed.commands[0].3.get()).expect("create");
        let mut fx = Effects::default();
        POS.apply(
            &mut book,
            create,
            &ctx(&emitted, TENANT_KEY, day_later),
            &mut fx,
        )
        .expect("create");
        let PosState::Tenant(orders) = &book else {
            panic!("a book")
        };
        assert_eq!(orders.total, 2, "a new claim makes a new order");
    }

    #[test]
    fn a_claim_holds_for_24_hours_by_the_command_clock_and_then_expires_from_kv() {
        const MINUTE: i64 = 60_000;
        let o = origin();
        let key = idempotency_state_key("k2");
        let submit = || Command::Submit {
            order: order(),
            idempotency_key: Some("k2".into()),
        };
        // Claimed and answered at DAY1.
        let mut claim = POS.new_state(&ctx(&o, &key, DAY1));
        let mut fx = Effects::default();
        POS.apply(&mut claim, submit(), &ctx(&o, &key, DAY1), &mut fx)
            .expect("claim");
        assert_eq!(fx.commands.len(), 1, "the first submission creates");
        let frame = json!({"type": "order_created", "order": {"id": "order-1"}});
        POS.apply(
            &mut claim,
            Command::Created {
                frame: frame.clone(),
            },
            &ctx(&o, &key, DAY1 + 5),
            &mut Effects::default(),
        )
        .expect("created");
        assert_eq!(
            POS.time_to_live(&claim, DAY1 + 5),
            Some(Duration::from_millis((IDEMPOTENCY_WINDOW_MS - 5) as u64)),
            "KV drops the claim when its 24 hours are over"
        );

        // 23 h 59 later: the same order, nothing new; the TTL still ends at DAY1 + 24 h.
        let late = DAY1 + IDEMPOTENCY_WINDOW_MS - MINUTE;
        let mut fx = Effects::default();
        POS.apply(&mut claim, submit(), &ctx(&o, &key, late), &mut fx)
            .expect("repeat");
        assert!(fx.commands.is_empty(), "no second order at 23h59");
        assert_eq!(fx.replies.len(), 1);
        assert_eq!(fx.replies[0].1.value(), frame);
        assert_eq!(
            POS.time_to_live(&claim, late),
            Some(Duration::from_millis(MINUTE as u64))
        );

        // 24 h 01 later: a new order, and a new 24 hours for the key.
        let later = DAY1 + IDEMPOTENCY_WINDOW_MS + MINUTE;
        let mut fx = Effects::default();
        POS.apply(&mut claim, submit(), &ctx(&o, &key, later), &mut fx)
            .expect("new");
        assert_eq!(fx.commands.len(), 1, "a new order at 24h01");
        assert!(fx.replies.is_empty(), "not answered with the old order");
        let PosState::Idempotency(renewed) = &claim else {
            panic!("a claim")
        };
        assert_eq!(renewed.claimed_at, later);
        assert_eq!(renewed.frame, None);
        assert_eq!(
            POS.time_to_live(&claim, later),
            Some(Duration::from_millis(IDEMPOTENCY_WINDOW_MS as u64))
        );

        // A claim KV already dropped is a fresh one: the key makes a new order.
        let mut gone = POS.new_state(&ctx(&o, &key, later));
        let mut fx = Effects::default();
        POS.apply(&mut gone, submit(), &ctx(&o, &key, later), &mut fx)
            .expect("fresh");
        assert_eq!(fx.commands.len(), 1);

        // The tenant's book never expires.
        let book = POS.new_state(&ctx(&o, TENANT_KEY, DAY1));
        assert_eq!(POS.time_to_live(&book, DAY1), None);
    }
}
