//! A room's items: a new item from `add_item` (checked, numbered `item_{n}`) and finding one by
//! id. Called by the collab domain's `apply`.

use super::input::{check_quantity, invalid, optional_text, text};
use crate::domain::Rejection;
use tablewire_schemas::ErrorCode;
use tablewire_schemas::collab::{AddItemData, Item, OrderState, limit};

pub(super) fn new_item(
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

pub(super) fn item_index(state: &OrderState, item_id: &str) -> Result<usize, Rejection> {
    state
        .items
        .iter()
        .position(|i| i.id == item_id)
        .ok_or_else(|| Rejection::new(ErrorCode::UnknownResource, "no such item"))
}
