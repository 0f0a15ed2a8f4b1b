//! SQL for the collab domain's records: a finalized order with its items and shares
//! (`collab_orders`, `collab_order_items`, `collab_order_splits`) and archived rooms
//! (`collab_archives`). Every insert is `ON CONFLICT DO NOTHING` on the order's key, so a
//! redelivered record writes nothing twice. Called by the records writer; a record that does not
//! read as its schemas type ([`OrderState`], [`ArchiveRecord`]) is refused, not stored.

use super::error::{WriteError, read};
use sqlx::Transaction;
use tablewire_schemas::collab::{ArchiveRecord, OrderState};
use tablewire_schemas::stored::Record;

pub(crate) use tablewire_schemas::collab::{RECORD_ARCHIVE as ARCHIVE, RECORD_ORDER as ORDER};

fn lowercase(value: impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub(crate) async fn write_order(
    tx: &mut Transaction<'_, sqlx::Any>,
    record: &Record,
) -> Result<(), WriteError> {
    let order: OrderState = read(ORDER, &record.data)?;
    let tenant = &record.tenant;
    let inserted = sqlx::query(
        "INSERT INTO collab_orders (tenant_id, order_id, room_id, circle_id, initiated_by, \
         finalized_by, split_type, total, created_at, finalized_at, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (tenant_id, order_id) DO NOTHING",
    )
    .bind(tenant)
    .bind(&order.order_id)
    .bind(&order.session_id)
    .bind(order.circle_id.as_deref())
    .bind(order.initiated_by.as_deref())
    .bind(order.finalized_by.as_deref())
    .bind(lowercase(order.split_type))
    .bind(order.total as i64)
    .bind(order.created_at)
    .bind(order.finalized_at.unwrap_or(order.updated_at))
    .bind(record.data.to_string())
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(());
    }
    for item in &order.items {
        sqlx::query(
            "INSERT INTO collab_order_items (tenant_id, order_id, item_id, dish_name, dish_type, \
             quantity, price, customization, added_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (tenant_id, order_id, item_id) DO NOTHING",
        )
        .bind(tenant)
        .bind(&order.order_id)
        .bind(&item.id)
        .bind(&item.dish_name)
        .bind(item.dish_type.as_deref())
        .bind(i64::from(item.quantity))
        .bind(item.price as i64)
        .bind(item.customization.as_deref())
        .bind(&item.added_by)
        .execute(&mut **tx)
        .await?;
    }
    for share in &order.splits {
        sqlx::query(
            "INSERT INTO collab_order_splits (tenant_id, order_id, participant_id, amount) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, order_id, participant_id) DO NOTHING",
        )
        .bind(tenant)
        .bind(&order.order_id)
        .bind(&share.participant_id)
        .bind(share.amount as i64)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

pub(crate) async fn write_archive(
    tx: &mut Transaction<'_, sqlx::Any>,
    record: &Record,
) -> Result<(), WriteError> {
    let ArchiveRecord { archived_at, order } = read(ARCHIVE, &record.data)?;
    sqlx::query(
        "INSERT INTO collab_archives (tenant_id, order_id, room_id, status, archived_at, data) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, order_id) DO NOTHING",
    )
    .bind(&record.tenant)
    .bind(&order.order_id)
    .bind(&order.session_id)
    .bind(lowercase(order.status))
    .bind(archived_at)
    .bind(record.data["order"].to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
