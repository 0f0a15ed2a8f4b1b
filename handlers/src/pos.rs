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
//!
//! # Layout
//! - this file — [`Pos`], its rate limit, `apply`'s dispatch between a tenant's book and a claim,
//!   and the order bodies kept as KV parts.
//! - `book` — creating an order and moving its status along.
//! - `claim` — idempotency claims.
//! - `numbering` — `ORD-YYYYMMDD-NNN` per local day.
//! - `tests` — the rules, table by table.
//!
//! Frames, records and the feed's announcements are `tablewire_schemas::pos`'s types.

use crate::domain::{Context, Domain, Effects, Rejection, to_value};
use crate::rate::WriteRate;
use serde_json::Value;
use std::time::Duration;
use tablewire_schemas::pos::{
    BookOrder, Command, IdempotencyClaim, Order, PosState, ServerFrame, SettingsApplied,
    TENANT_KEY, TenantOrders, error_frame,
};
use tablewire_schemas::{Domain as DomainName, ErrorCode, Frame, envelope::role};

mod book;
mod claim;
mod numbering;

use book::{create, update_status};
pub use claim::{ASK_AGAIN_AFTER_MS, claim_expired, claim_time_to_live};
pub use numbering::{local_day, order_number};

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

fn validation(why: String) -> Rejection {
    Rejection::new(ErrorCode::ValidationError, why)
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
            PosState::Idempotency(claim) => claim::apply(claim, command, ctx, effects),
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
