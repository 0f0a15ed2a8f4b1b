//! SQL for the pos domain's records: orders in `pos_orders`, status changes in
//! `pos_order_status` (and the order's current status). Called by the SQL writer; a record that
//! does not read as its schemas type ([`Order`], [`StatusRecord`]) is refused, not stored.

use super::error::{WriteError, read};
use sqlx::Transaction;
use tablewire_schemas::pos::{Order, StatusRecord};
use tablewire_schemas::stored::Record;

pub(crate) use tablewire_schemas::pos::record::{ORDER, STATUS};

/// Inserts an order; a second write of it is a no-op.
pub(crate) async fn write_order(
    tx: &mut Transaction<'_, sqlx::Any>,
    record: &Record,
) -> Result<(), WriteError> {
    let order: Order = read(ORDER, &record.data)?;
    upsert_order(tx, &record.tenant, &order, record.data.to_string()).await
}

/// Writes `order` (its JSON as the handler wrote it: `json`) unless the row already holds the
/// same or a later version (`updatedAt`). Writers run concurrently: the upsert on the primary
/// key serialises an order's record and its status changes, whichever commits first, so the
/// row ends with the newest status.
async fn upsert_order(
    tx: &mut Transaction<'_, sqlx::Any>,
    tenant: &str,
    order: &Order,
    json: String,
) -> Result<(), WriteError> {
    sqlx::query(
        "INSERT INTO pos_orders (tenant_id, order_id, order_number, order_type, status, \
         idempotency_key, data, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (tenant_id, order_id) DO UPDATE SET status = excluded.status, \
         data = excluded.data, updated_at = excluded.updated_at \
         WHERE pos_orders.updated_at < excluded.updated_at",
    )
    .bind(tenant)
    .bind(&order.id)
    .bind(&order.order_number)
    .bind(&order.order_type)
    .bind(order.status.as_str())
    .bind(order.idempotency_key.as_deref())
    .bind(json)
    .bind(order.created_at)
    .bind(order.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Adds a status change to the history and moves the order's row forward.
pub(crate) async fn write_status(
    tx: &mut Transaction<'_, sqlx::Any>,
    record: &Record,
) -> Result<(), WriteError> {
    let change: StatusRecord = read(STATUS, &record.data)?;
    sqlx::query(
        "INSERT INTO pos_order_status (record_id, tenant_id, order_id, status, previous_status, \
         updated_by, changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(&record.id)
    .bind(&record.tenant)
    .bind(&change.order_id)
    .bind(change.status.as_str())
    .bind(change.previous_status.as_str())
    .bind(&change.updated_by)
    .bind(change.at)
    .execute(&mut **tx)
    .await?;
    match &change.order {
        Some(order) => {
            upsert_order(tx, &record.tenant, order, record.data["order"].to_string()).await?;
        }
        None => {
            // The handler no longer had the order's body: move the row's status only.
            sqlx::query(
                "UPDATE pos_orders SET status = $1, updated_at = $2 \
                 WHERE tenant_id = $3 AND order_id = $4 AND updated_at < $5",
            )
            .bind(change.status.as_str())
            .bind(change.at)
            .bind(&record.tenant)
            .bind(&change.order_id)
            .bind(change.at)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}
