//! SQL for the pos domain's records: orders in `pos_orders`, status changes in
//! `pos_order_status` (and the order's current status). Called by the SQL writer.

use sqlx::Transaction;
use tablewire_schemas::stored::Record;

pub(crate) use crate::pos::record::{ORDER, STATUS};

/// Inserts an order; a second write of it is a no-op.
pub(crate) async fn write_order(
    tx: &mut Transaction<'_, sqlx::Any>,
    record: &Record,
) -> Result<(), sqlx::Error> {
    upsert_order(tx, &record.tenant, &record.data).await
}

/// Writes `order` unless the row already holds the same or a later version (`updatedAt`).
/// Writers run concurrently: the upsert on the primary key serialises an order's record and
/// its status changes, whichever commits first, so the row ends with the newest status.
async fn upsert_order(
    tx: &mut Transaction<'_, sqlx::Any>,
    tenant: &str,
    order: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    let text = |field: &str| order[field].as_str().unwrap_or_default().to_string();
    sqlx::query(
        "INSERT INTO pos_orders (tenant_id, order_id, order_number, order_type, status, \
         idempotency_key, data, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (tenant_id, order_id) DO UPDATE SET status = excluded.status, \
         data = excluded.data, updated_at = excluded.updated_at \
         WHERE pos_orders.updated_at < excluded.updated_at",
    )
    .bind(tenant)
    .bind(text("id"))
    .bind(text("orderNumber"))
    .bind(text("orderType"))
    .bind(text("status"))
    .bind(order["idempotencyKey"].as_str().map(str::to_string))
    .bind(order.to_string())
    .bind(order["createdAt"].as_i64().unwrap_or_default())
    .bind(order["updatedAt"].as_i64().unwrap_or_default())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Adds a status change to the history and moves the order's row forward.
pub(crate) async fn write_status(
    tx: &mut Transaction<'_, sqlx::Any>,
    record: &Record,
) -> Result<(), sqlx::Error> {
    let data = &record.data;
    let text = |field: &str| data[field].as_str().unwrap_or_default().to_string();
    sqlx::query(
        "INSERT INTO pos_order_status (record_id, tenant_id, order_id, status, previous_status, \
         updated_by, changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(&record.id)
    .bind(&record.tenant)
    .bind(text("orderId"))
    .bind(text("status"))
    .bind(text("previousStatus"))
    .bind(text("updatedBy"))
    .bind(data["at"].as_i64().unwrap_or_default())
    .execute(&mut **tx)
    .await?;
    if data["order"].is_object() {
        upsert_order(tx, &record.tenant, &data["order"]).await?;
    } else {
        // The handler no longer had the order's body: move the row's status only.
        let at = data["at"].as_i64().unwrap_or_default();
        sqlx::query(
            "UPDATE pos_orders SET status = $1, updated_at = $2 \
             WHERE tenant_id = $3 AND order_id = $4 AND updated_at < $5",
        )
        .bind(text("status"))
        .bind(at)
        .bind(&record.tenant)
        .bind(text("orderId"))
        .bind(at)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
