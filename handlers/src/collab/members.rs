//! A room's participants: joining (the first joiner initiates the order and, without a token,
//! names the tenant the room shows), who may change the order, and their display names. Called
//! by the collab domain's `apply`.

use super::input::optional_text;
use crate::domain::{Context, Rejection};
use tablewire_schemas::ErrorCode;
use tablewire_schemas::collab::{JoinData, OrderState, Participant, limit};

/// The name of `sender` if they joined and have not left; otherwise a rejection.
pub(super) fn member(state: &OrderState, sender: &str) -> Result<String, Rejection> {
    state
        .participants
        .iter()
        .find(|p| p.participant_id == sender && p.active)
        .map(|p| p.participant_name.clone())
        .ok_or_else(|| Rejection::new(ErrorCode::Forbidden, "join the order before changing it"))
}

pub(super) fn display_name(state: &OrderState, id: &str) -> String {
    state
        .participants
        .iter()
        .find(|p| p.participant_id == id)
        .map(|p| p.participant_name.clone())
        .unwrap_or_default()
}

/// Adds or re-activates a participant. The room's first join also sets the circle and, when it
/// came without a token (only an open-tenant room takes those), the `tenantId` the room shows:
/// the one that join named, as seed 001's server echoed it. Display only: the room's key, its
/// records and its events stay the tenant the edge gave it, and a join with a token shows that
/// token's tenant again.
pub(super) fn join(
    next: &mut OrderState,
    sender: &str,
    name: Option<String>,
    data: &JoinData,
    ctx: &Context<'_>,
) -> Result<(), Rejection> {
    let phone = optional_text("phone", data.phone.as_deref(), limit::SHORT_FIELD)?;
    let circle_id = optional_text("circleId", data.circle_id.as_deref(), limit::SHORT_FIELD)?;
    let first = next.participants.is_empty();
    if ctx.claims.is_some() {
        next.tenant_id = ctx.tenant.to_string();
    } else if first
        && let Some(shown) = optional_text("tenantId", data.tenant_id.as_deref(), limit::TENANT_ID)?
    {
        next.tenant_id = shown;
    }
    if next.circle_id.is_none() {
        next.circle_id = circle_id;
    }
    if let Some(p) = next
        .participants
        .iter_mut()
        .find(|p| p.participant_id == sender)
    {
        p.active = true;
        if let Some(name) = name {
            p.participant_name = name;
        }
        if phone.is_some() {
            p.phone = phone;
        }
        return Ok(());
    }
    if next.participants.len() >= limit::PARTICIPANTS {
        return Err(Rejection::new(
            ErrorCode::Conflict,
            format!("a room holds at most {} participants", limit::PARTICIPANTS),
        ));
    }
    next.participants.push(Participant {
        participant_id: sender.to_string(),
        participant_name: name.unwrap_or_else(|| sender.to_string()),
        phone,
        joined_at: ctx.now_ms,
        active: true,
    });
    if next.initiated_by.is_none() {
        next.initiated_by = Some(sender.to_string());
    }
    Ok(())
}
