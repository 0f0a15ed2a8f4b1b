//! A tenant's order book: creating an order (numbered, fanned out, recorded, announced on the
//! feed) and moving its status along. Part of the pos domain's `apply`.

use super::numbering::{local_day, order_number};
use crate::domain::{Context, Effects, Rejection};
use crate::events::notify_feed;
use serde_json::Value;
use tablewire_schemas::events::event;
use tablewire_schemas::pos::{
    ACTIVE_LIMIT, BookOrder, FeedOrderCreated, FeedStatus, Order, OrderInput, OrderStatus,
    RECENT_LIMIT, ServerFrame, StatusRecord, TenantOrders, record,
};
use tablewire_schemas::{ErrorCode, Frame, Origin};

fn validation(why: String) -> Rejection {
    Rejection::new(ErrorCode::ValidationError, why)
}

/// Creates an order on the tenant's book: number, fan out, record, announce. Returns the
/// `order_created` frame.
pub(super) fn create(
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

pub(super) fn update_status(
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
