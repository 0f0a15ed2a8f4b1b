//! The collab domain (seed 001): one key per order room. Pure rules for joining, editing items,
//! splitting the bill, finalizing and leaving, a per-room rate limit kept in the state, and
//! idle expiry (archive + removal) on the sweeper's `expire` command. Every free text a room
//! shows goes through [`text`] (no markup, trimmed, capped). The sweeper itself (I/O) is in
//! [`expiry`], the finalized-order webhook in [`webhook`]; [`Collab`]'s start hook starts both.

pub mod expiry;
pub mod webhook;

use crate::domain::{Background, Context, Domain, Effects, Rejection};
use crate::error::RuntimeError;
use crate::events::notify_feed;
use crate::rate::WriteRate;
use serde::Serialize;
use serde_json::json;
use std::time::Duration;
use tablewire_schemas::collab::{
    AddItemData, ClientMessage, Command, Item, JoinData, OrderState, Participant, RECORD_ARCHIVE,
    RECORD_ORDER, RoomState, Sender, Share, SplitData, SplitType, Status, limit,
};
use tablewire_schemas::envelope::role;
use tablewire_schemas::events::event;
use tablewire_schemas::text::check_no_markup;
use tablewire_schemas::{Domain as DomainName, ErrorCode, Frame};

/// How rooms behave; `tablewire handler --collab-…` flags set these (their defaults are
/// `Settings::default`, in `crate::settings`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// A room with no accepted change for this long expires (archived, then removed).
    pub idle_timeout: Duration,
    /// Changes one room accepts per second, sustained.
    pub room_rate: u32,
    /// Changes one room accepts at once.
    pub room_burst: u32,
}

/// Most bytes of one room's stored state. Every change frame carries the whole order and a
/// finalize also records and announces it, so one command's write is up to about four times
/// the room: this keeps it within nats-server's default 1 MiB message. A room of 200 items
/// and 50 participants with every field at its longest ASCII length takes about half of it; a
/// change past it is refused with `STATE_FULL` (items are never dropped).
pub const MAX_STATE_BYTES: usize = 192 * 1024;

/// Roles that may finalize an order they did not start.
pub const FINALIZE_ROLES: &[&str] = &[role::SERVICE, role::ADMIN, "staff"];

/// The collab domain.
#[derive(Debug, Default, Clone)]
pub struct Collab {
    /// Its settings.
    pub settings: Settings,
    /// Post finalized orders here (off when `None`).
    pub webhook: Option<webhook::Webhook>,
}

fn invalid(why: impl Into<String>) -> Rejection {
    Rejection::new(ErrorCode::ValidationError, why)
}

/// Trims, removes control characters and cuts to `max` characters.
pub fn sanitize(text: &str, max: usize) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .chars()
        .take(max)
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// A free text `field` that other participants see: refused (`VALIDATION_ERROR`) when it
/// holds markup, else [`sanitize`]d. The one place a room's texts are checked.
fn text(field: &str, raw: &str, max: usize) -> Result<String, Rejection> {
    check_no_markup(field, raw).map_err(invalid)?;
    Ok(sanitize(raw, max))
}

/// An optional free text: [`text`], and `None` when absent or empty once sanitized.
fn optional_text(field: &str, raw: Option<&str>, max: usize) -> Result<Option<String>, Rejection> {
    Ok(match raw {
        Some(raw) => Some(text(field, raw, max)?).filter(|t| !t.is_empty()),
        None => None,
    })
}

fn participant_id(from: &Sender) -> Result<String, Rejection> {
    let id = text("participantId", &from.participant_id, usize::MAX)?;
    if id.is_empty() || id.chars().count() > limit::PARTICIPANT_ID {
        return Err(invalid(format!(
            "participantId must be 1..{} characters",
            limit::PARTICIPANT_ID
        )));
    }
    Ok(id)
}

fn check_quantity(quantity: u32) -> Result<(), Rejection> {
    if limit::QUANTITY.contains(&quantity) {
        Ok(())
    } else {
        Err(invalid("quantity must be 1..99"))
    }
}

/// Each participant's share of `state.total` under its split type. Equal: among active
/// participants and those who left with items, in join order, the first `remainder` paying one
/// minor unit more. Itemized: the subtotals of the items each added. Custom: as supplied, and
/// no shares while no amounts were supplied (pending).
pub fn compute_splits(state: &OrderState) -> Vec<Share> {
    match state.split_type {
        SplitType::Equal => {
            let payers: Vec<&Participant> = state
                .participants
                .iter()
                .filter(|p| p.active || state.items.iter().any(|i| i.added_by == p.participant_id))
                .collect();
            let n = payers.len() as u64;
            if n == 0 {
                return Vec::new();
            }
            let (base, remainder) = (state.total / n, state.total % n);
            payers
                .iter()
                .enumerate()
                .map(|(i, p)| Share {
                    participant_id: p.participant_id.clone(),
                    amount: base + u64::from((i as u64) < remainder),
                })
                .collect()
        }
        SplitType::Itemized => {
            let mut shares: Vec<Share> = state
                .participants
                .iter()
                .map(|p| Share {
                    participant_id: p.participant_id.clone(),
                    amount: 0,
                })
                .collect();
            for item in &state.items {
                if let Some(share) = shares
                    .iter_mut()
                    .find(|s| s.participant_id == item.added_by)
                {
                    share.amount += item.subtotal;
                }
            }
            shares
        }
        SplitType::Custom => match &state.custom_amounts {
            None => Vec::new(),
            Some(amounts) => state
                .participants
                .iter()
                .map(|p| Share {
                    participant_id: p.participant_id.clone(),
                    amount: amounts.get(&p.participant_id).copied().unwrap_or(0),
                })
                .collect(),
        },
    }
}

fn custom_matches(state: &OrderState) -> bool {
    state
        .custom_amounts
        .as_ref()
        .is_some_and(|a| a.values().sum::<u64>() == state.total)
}

/// Recomputes the total and the splits after a change.
fn settle(state: &mut OrderState, now_ms: i64) {
    state.total = state.items.iter().map(|i| i.subtotal).sum();
    state.splits = compute_splits(state);
    state.updated_at = state.updated_at.max(now_ms);
}

impl Collab {
    fn expire(
        &self,
        state: &OrderState,
        ctx: &Context<'_>,
        effects: &mut Effects,
    ) -> Result<(), Rejection> {
        let idle_ms = self.settings.idle_timeout.as_millis() as i64;
        if ctx.now_ms - state.updated_at < idle_ms {
            return Err(Rejection::new(ErrorCode::Conflict, "room is not idle"));
        }
        effects.record(
            RECORD_ARCHIVE,
            json!({"archivedAt": ctx.now_ms, "order": state}),
        );
        effects.remove();
        Ok(())
    }
}

impl Domain for Collab {
    const NAME: DomainName = DomainName::Collab;
    type State = RoomState;
    type Command = Command;

    fn new_state(&self, ctx: &Context<'_>) -> RoomState {
        RoomState::new(ctx.tenant, ctx.key, ctx.now_ms)
    }

    /// The idle-room sweeper; with a webhook, its consumer (made before any room is applied: a
    /// record finalized earlier would not wait for it) and the task that posts.
    async fn start(
        &self,
        background: Background,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, RuntimeError> {
        let Background { client, shutdown } = background;
        let mut tasks = vec![tokio::spawn(expiry::run(
            client.clone(),
            self.settings.idle_timeout,
            shutdown.clone(),
        ))];
        if let Some(hook) = &self.webhook {
            webhook::ensure_consumer(&async_nats::jetstream::new(client.clone())).await?;
            tasks.push(tokio::spawn(webhook::run(client, hook.clone(), shutdown)));
        }
        Ok(tasks)
    }

    /// Every frame and record is built from `room.order`: the room's internal fields
    /// (`rateTatUs`) stay in KV.
    fn apply(
        &self,
        room: &mut RoomState,
        command: Command,
        ctx: &Context<'_>,
        effects: &mut Effects,
    ) -> Result<(), Rejection> {
        let message = match command {
            Command::Expire => {
                let state = &room.order;
                if state.participants.is_empty() && state.items.is_empty() {
                    // Nothing here (already removed, or never used): nothing to archive.
                    return Err(Rejection::from(ErrorCode::UnknownResource));
                }
                return self.expire(state, ctx, effects);
            }
            Command::Client { message } => message,
        };
        if room.order.status == Status::Finalized {
            return Err(Rejection::new(
                ErrorCode::Conflict,
                "the order is finalized; no more changes",
            ));
        }
        let tat = WriteRate::new(self.settings.room_rate, self.settings.room_burst).admit(
            room.rate_tat_us,
            ctx.now_ms,
            "in this room",
        )?;
        let sender = participant_id(message.sender())?;
        // Work on a copy so that a rejection leaves the state exactly as it was.
        let mut next = room.order.clone();
        let out = match message {
            ClientMessage::Join { from, data } => {
                let name = optional_text(
                    "participantName",
                    from.participant_name.as_deref(),
                    limit::NAME,
                )?;
                join(&mut next, &sender, name, &data, ctx)?;
                settle(&mut next, ctx.now_ms);
                effects.reply(ctx, sync_frame(&next, ctx.now_ms));
                let name = display_name(&next, &sender);
                change(ctx, &sender, &name, "participant_joined", &next)
            }
            ClientMessage::AddItem { data, .. } => {
                let sender_name = member(&next, &sender)?;
                let item = new_item(&mut next, data, &sender, &sender_name, ctx.now_ms)?;
                next.items.push(item.clone());
                settle(&mut next, ctx.now_ms);
                change(
                    ctx,
                    &sender,
                    &sender_name,
                    "item_added",
                    ItemChange {
                        item: &item,
                        order_state: &next,
                    },
                )
            }
            ClientMessage::RemoveItem { data, .. } => {
                let sender_name = member(&next, &sender)?;
                let index = item_index(&next, &data.item_id)?;
                let item = next.items.remove(index);
                settle(&mut next, ctx.now_ms);
                change(
                    ctx,
                    &sender,
                    &sender_name,
                    "item_removed",
                    ItemChange {
                        item: &item,
                        order_state: &next,
                    },
                )
            }
            ClientMessage::UpdateQuantity { data, .. } => {
                let sender_name = member(&next, &sender)?;
                check_quantity(data.quantity)?;
                let index = item_index(&next, &data.item_id)?;
                let item = &mut next.items[index];
                item.quantity = data.quantity;
                item.subtotal = item.price * u64::from(data.quantity);
                let item = item.clone();
                settle(&mut next, ctx.now_ms);
                change(
                    ctx,
                    &sender,
                    &sender_name,
                    "quantity_updated",
                    ItemChange {
                        item: &item,
                        order_state: &next,
                    },
                )
            }
            ClientMessage::UpdateSplit { data, .. } => {
                let sender_name = member(&next, &sender)?;
                update_split(&mut next, data)?;
                settle(&mut next, ctx.now_ms);
                change(
                    ctx,
                    &sender,
                    &sender_name,
                    "split_updated",
                    SplitChange {
                        split_type: next.split_type,
                        order_state: &next,
                    },
                )
            }
            ClientMessage::Finalize { .. } => {
                let sender_name = member(&next, &sender)?;
                let allowed = next.initiated_by.as_deref() == Some(sender.as_str())
                    || ctx.claims.is_some_and(|c| c.has_role(FINALIZE_ROLES));
                if !allowed {
                    return Err(Rejection::new(
                        ErrorCode::Forbidden,
                        "only the initiator may finalize",
                    ));
                }
                if next.items.is_empty() {
                    return Err(Rejection::new(
                        ErrorCode::Conflict,
                        "the order has no items",
                    ));
                }
                if next.split_type == SplitType::Custom && !custom_matches(&next) {
                    return Err(Rejection::new(
                        ErrorCode::Conflict,
                        match next.custom_amounts {
                            None => {
                                "the custom split's amounts are pending: send update_split \
                                     with \"amounts\" summing to the total"
                            }
                            Some(_) => "custom split amounts no longer sum to the total",
                        },
                    ));
                }
                settle(&mut next, ctx.now_ms);
                next.status = Status::Finalized;
                next.finalized_at = Some(ctx.now_ms);
                next.finalized_by = Some(sender.clone());
                effects.record(RECORD_ORDER, &next);
                notify_feed(
                    effects,
                    ctx,
                    event::ORDER_CREATED,
                    json!({"order": order_summary(&next)}),
                );
                change(
                    ctx,
                    &sender,
                    &sender_name,
                    "order_finalized",
                    StateChange { order_state: &next },
                )
            }
            ClientMessage::Leave { .. } => {
                let sender_name = member(&next, &sender)?;
                if let Some(p) = next
                    .participants
                    .iter_mut()
                    .find(|p| p.participant_id == sender)
                {
                    p.active = false;
                }
                settle(&mut next, ctx.now_ms);
                change(ctx, &sender, &sender_name, "participant_left", &next)
            }
        };
        effects.events.push(out);
        room.order = next;
        room.rate_tat_us = tat;
        Ok(())
    }

    fn max_state_bytes(&self) -> usize {
        MAX_STATE_BYTES
    }
}

/// The name of `sender` if they joined and have not left; otherwise a rejection.
fn member(state: &OrderState, sender: &str) -> Result<String, Rejection> {
    state
        .participants
        .iter()
        .find(|p| p.participant_id == sender && p.active)
        .map(|p| p.participant_name.clone())
        .ok_or_else(|| Rejection::new(ErrorCode::Forbidden, "join the order before changing it"))
}

/// A change frame in the seed's shape: `{type, participantId, participantName, data,
/// timestamp}`. Serialized straight from borrowed parts: every change carries the whole order
/// state, so building it as a `serde_json::Value` first was most of a handler's work.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChangeFrame<'a, D> {
    #[serde(rename = "type")]
    kind: &'a str,
    participant_id: &'a str,
    participant_name: &'a str,
    data: D,
    timestamp: i64,
}

/// `data` of item_added, item_removed and quantity_updated.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ItemChange<'a> {
    item: &'a Item,
    order_state: &'a OrderState,
}

/// `data` of split_updated.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SplitChange<'a> {
    split_type: SplitType,
    order_state: &'a OrderState,
}

/// `data` of order_finalized.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StateChange<'a> {
    order_state: &'a OrderState,
}

/// A change frame in the seed's shape, serialized.
fn change(ctx: &Context<'_>, sender: &str, name: &str, kind: &str, data: impl Serialize) -> Frame {
    Frame::new(ChangeFrame {
        kind,
        participant_id: sender,
        participant_name: name,
        data,
        timestamp: ctx.now_ms,
    })
}

fn display_name(state: &OrderState, id: &str) -> String {
    state
        .participants
        .iter()
        .find(|p| p.participant_id == id)
        .map(|p| p.participant_name.clone())
        .unwrap_or_default()
}

/// The `sync` frame for a state (also what the edge sends on connect).
pub fn sync_frame(state: &OrderState, now_ms: i64) -> serde_json::Value {
    json!({"type": "sync", "data": state, "timestamp": now_ms})
}

/// Adds or re-activates a participant. The room's first join also sets the circle and, when it
/// came without a token (only an open-tenant room takes those), the `tenantId` the room shows:
/// the one that join named, as seed 001's server echoed it. Display only: the room's key, its
/// records and its events stay the tenant the edge gave it, and a join with a token shows that
/// token's tenant again.
fn join(
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

fn new_item(
    next: &mut OrderState,
    data: AddItemData,
    sender: &str,
    sender_name: &str,
    now_ms: i64,
) -> Result<Item, Rejection> {
    let dish_name = text("dishName", &data.dish_name, usize::MAX)?;
    if dish_name.is_empty() || dish_name.chars().count() > limit::DISH_NAME {
        return Err(invalid(format!(
            "dishName must be 1..{} characters",
            limit::DISH_NAME
        )));
    }
    check_quantity(data.quantity)?;
    if data.price == 0 || data.price > limit::PRICE {
        return Err(invalid(format!(
            "price must be 1..{} (integer minor units)",
            limit::PRICE
        )));
    }
    if next.items.len() >= limit::ITEMS {
        return Err(Rejection::new(
            ErrorCode::Conflict,
            format!("an order holds at most {} items", limit::ITEMS),
        ));
    }
    let id = format!("item_{}", next.next_item);
    next.next_item += 1;
    let dish_type = optional_text("dishType", data.dish_type.as_deref(), limit::DISH_TYPE)?;
    let customization = optional_text(
        "customization",
        data.customization.as_deref(),
        limit::CUSTOMIZATION,
    )?;
    Ok(Item {
        id,
        dish_name,
        dish_type,
        quantity: data.quantity,
        price: data.price,
        subtotal: data.price * u64::from(data.quantity),
        customization,
        added_by: sender.to_string(),
        added_by_name: sender_name.to_string(),
        added_at: now_ms,
    })
}

fn item_index(state: &OrderState, item_id: &str) -> Result<usize, Rejection> {
    state
        .items
        .iter()
        .position(|i| i.id == item_id)
        .ok_or_else(|| Rejection::new(ErrorCode::UnknownResource, "no such item"))
}

/// Changes the split. A custom split may come without `amounts` (seed 001's own message):
/// the type changes and the amounts stay pending — those supplied earlier, or none — until an
/// `update_split` brings them; finalize waits for amounts that sum to the total.
fn update_split(next: &mut OrderState, data: SplitData) -> Result<(), Rejection> {
    match data.split_type {
        SplitType::Custom => {
            let Some(amounts) = data.amounts else {
                next.split_type = SplitType::Custom;
                return Ok(());
            };
            if let Some(stranger) = amounts
                .keys()
                .find(|id| !next.participants.iter().any(|p| &p.participant_id == *id))
            {
                return Err(invalid(format!("{stranger} is not a participant")));
            }
            let sum = amounts
                .values()
                .try_fold(0u64, |acc, a| acc.checked_add(*a))
                .unwrap_or(u64::MAX);
            let total: u64 = next.items.iter().map(|i| i.subtotal).sum();
            if sum != total {
                return Err(invalid(format!(
                    "custom amounts sum to {sum}, the total is {total}"
                )));
            }
            next.custom_amounts = Some(amounts);
        }
        _ => next.custom_amounts = None,
    }
    next.split_type = data.split_type;
    Ok(())
}

/// The order as the events feed shows it (`order:created`).
fn order_summary(state: &OrderState) -> serde_json::Value {
    json!({
        "id": state.order_id,
        "source": "collaborative",
        "sessionId": state.session_id,
        "circleId": state.circle_id,
        "initiatedBy": state.initiated_by,
        "items": state.items,
        "total": state.total,
        "splitType": state.split_type,
        "splits": state.splits,
        "status": state.status,
        "finalizedAt": state.finalized_at,
    })
}

#[cfg(test)]
mod tests;
