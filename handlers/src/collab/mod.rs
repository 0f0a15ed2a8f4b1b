//! The collab domain (seed 001): one key per order room. Pure rules for joining, editing items,
//! splitting the bill, finalizing and leaving, a per-room rate limit kept in the state, and
//! idle expiry (archive + removal) on the sweeper's `expire` command. Frames, records and the
//! feed's announcement are `tablewire_schemas::collab`'s types.
//!
//! # Layout
//! - this file — [`Collab`], its settings, and `apply`: one arm per client message.
//! - `input` — what a room accepts: every free text a room shows goes through its `text` (no
//!   markup, trimmed, capped), participant ids, quantities.
//! - `members` — joining, membership and display names.
//! - `items` — new items and finding one.
//! - `split` — shares per split type, totals, `update_split`.
//! - [`expiry`] — the idle-room sweeper (I/O); [`webhook`] — the finalized-order webhook;
//!   [`Collab`]'s start hook starts both.

pub mod expiry;
mod input;
mod items;
mod members;
mod split;
pub mod webhook;

pub use input::sanitize;
pub use split::compute_splits;

use crate::domain::{Background, Context, Domain, Effects, Rejection, to_value};
use crate::error::RuntimeError;
use crate::events::notify_feed;
use crate::rate::WriteRate;
use input::{check_quantity, optional_text, participant_id};
use items::{item_index, new_item};
use members::{display_name, join, member};
use serde::Serialize;
use serde_json::Value;
use split::{custom_matches, settle, update_split};
use std::time::Duration;
use tablewire_schemas::collab::{
    ArchiveRecord, Change, ClientMessage, Command, FeedOrder, FeedOrderCreated, ItemChange,
    OrderState, RECORD_ARCHIVE, RECORD_ORDER, RoomState, SplitChange, SplitType, StateChange,
    Status, Sync, change, error_frame, limit,
};
use tablewire_schemas::envelope::role;
use tablewire_schemas::events::event;
use tablewire_schemas::{Domain as DomainName, ErrorBody, ErrorCode, Frame};

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
            ArchiveRecord {
                archived_at: ctx.now_ms,
                order: state.clone(),
            },
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
                change(ctx, &sender, &name, change::PARTICIPANT_JOINED, &next)
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
                    change::ITEM_ADDED,
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
                    change::ITEM_REMOVED,
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
                    change::QUANTITY_UPDATED,
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
                    change::SPLIT_UPDATED,
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
                    FeedOrderCreated {
                        order: FeedOrder::of(&next),
                    },
                );
                change(
                    ctx,
                    &sender,
                    &sender_name,
                    change::ORDER_FINALIZED,
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
                change(ctx, &sender, &sender_name, change::PARTICIPANT_LEFT, &next)
            }
        };
        effects.events.push(out);
        room.order = next;
        room.rate_tat_us = tat;
        Ok(())
    }

    fn error_frame(&self, error: &ErrorBody, ctx: &Context<'_>) -> Value {
        to_value(error_frame(error, ctx.now_ms))
    }

    fn max_state_bytes(&self) -> usize {
        MAX_STATE_BYTES
    }
}

/// A change frame in the seed's shape, serialized.
fn change(ctx: &Context<'_>, sender: &str, name: &str, kind: &str, data: impl Serialize) -> Frame {
    Frame::new(Change {
        kind,
        participant_id: sender,
        participant_name: name,
        data,
        timestamp: ctx.now_ms,
    })
}

/// The `sync` frame for a state (what the edge sends on connect, there with its `seq`).
pub fn sync_frame(state: &OrderState, now_ms: i64) -> Sync<'_> {
    Sync::new(state, now_ms)
}

#[cfg(test)]
mod tests;
