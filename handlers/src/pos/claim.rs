//! Idempotency claims (`idem:{key}`): the first submission with a key forwards the order to the
//! tenant's book, later ones are answered from the claim (or wait for it); a claim holds for 24
//! hours. Part of the pos domain's `apply`.

use crate::domain::{Context, Effects, Rejection, to_value};
use std::time::Duration;
use tablewire_schemas::pos::{
    Command, IDEMPOTENCY_WINDOW_MS, IdempotencyClaim, TENANT_KEY, error_frame,
};
use tablewire_schemas::{Domain as DomainName, ErrorCode, Frame, Origin};

/// Most repeats waiting on one idempotency key before its order exists.
const MAX_WAITING: usize = 32;

/// How long a claim waits for its order (by the commands' clock) before a repeat asks the
/// tenant's book again: the first request may have been lost to a failure, and a claim must not
/// wait forever. The book answers a key it already made an order for with that order, so
/// asking twice never makes two.
pub const ASK_AGAIN_AFTER_MS: i64 = 10_000;

/// Whether a claim no longer holds at `now_ms`: never made, or made 24 hours ago or more.
pub fn claim_expired(claim: &IdempotencyClaim, now_ms: i64) -> bool {
    claim.claimed_at == 0 || now_ms - claim.claimed_at >= IDEMPOTENCY_WINDOW_MS
}

/// How long KV keeps a claim written at `now_ms`: until its 24 hours are over.
pub fn claim_time_to_live(claim: &IdempotencyClaim, now_ms: i64) -> Duration {
    let left = claim.claimed_at + IDEMPOTENCY_WINDOW_MS - now_ms;
    Duration::from_millis(left.max(0) as u64)
}

/// Applies a command to an idempotency key's claim.
pub(super) fn apply(
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
                order
                    .check()
                    .map_err(|why| Rejection::new(ErrorCode::ValidationError, why))?;
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
                let frame = Frame::from(&to_value(error_frame(&error, ctx.now_ms)));
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
