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

use crate::domain::{Context, Domain, Effects, Rejection, to_value};
use crate::events::notify_feed;
use crate::rate::WriteRate;
use chrono::{Datelike, FixedOffset, TimeZone};
use serde_json::Value;
use std::time::Duration;
use tablewire_schemas::events::event;
use tablewire_schemas::pos::{
    ACTIVE_LIMIT, BookOrder, Command, FeedOrderCreated, FeedStatus, IDEMPOTENCY_WINDOW_MS,
    IdempotencyClaim, Order, OrderInput, OrderStatus, PosState, RECENT_LIMIT, ServerFrame,
    SettingsApplied, StatusRecord, TENANT_KEY, TenantOrders, error_frame,
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

/// Record kinds the pos domain writes (their types are in `tablewire_schemas::pos`).
pub use tablewire_schemas::pos::record;

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
                    effects.reply(ctx, SettingsApplied { utc_offset_minutes });
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
    notify_feed(
        effects,
        ctx,
        event::ORDER_CREATED,
        FeedOrderCreated::of(&order),
    );
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
    notify_feed(
        effects,
        ctx,
        event::ORDER_STATUS,
        FeedStatus {
            order_id: &id,
            order_number: &number,
            status,
            previous_status: previous,
            updated_by: &updated_by,
            table_id: table,
        },
    );
    effects.record(
        record::STATUS,
        StatusRecord {
            order_id: id,
            order_number: number,
            status,
            previous_status: previous,
            updated_by,
            at: ctx.now_ms,
            order: changed,
        },
    );
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
        to_value(error_frame(error, ctx.now_ms))
    }
}

#[cfg(test)]
mod tests;
