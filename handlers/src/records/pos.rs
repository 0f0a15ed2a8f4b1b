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
    let data = &record.data;
    let text = |field: &str| data[field].as_str().unwrap_or_default().to_string();
    sqlx::query(
        "INSERT INTO pos_orders (tenant_id, order_id, order_number, order_type, status, \
         idempotency_key, data, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
    )
    .bind(&record.tenant)
    .bind(text("id"))
    .bind(text("orderNumber"))
    .bind(text("orderType"))
    .bind(text("status"))
    .bind(data["idempotencyKey"].as_str().map(str::to_string))
    .bind(data.to_string())
    .bind(data["createdAt"].as_i64().unwrap_or_default())
    .bind(data["updatedAt"].as_i64().unwrap_or_default())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Adds a status change to the history and moves the order's status forward.
pub(crate) async fn write_status(
    tx: &mut Transaction<'_, sqlx::Any>,
    record: &Record,
) -> Result<(), sqlx::Error> {
    let data = &record.data;
    let text = |field: &str| data[field].as_str().unwrap_or_default().to_string();
    let at = data["at"].as_i64().unwrap_or_default();
    let inserted = sqlx::query(
        "INSERT INTO pos_order_status (record_id, tenant_id, order_id, status, previous_status, \
         updated_by, changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(&record.id)
    .bind(&record.tenant)
    .bind(text("orderId"))
    .bind(text("status"))
    .bind(text("previousStatus"))
    .bind(text("updatedBy"))
    .bind(at)
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() > 0 {
        sqlx::query(
            "UPDATE pos_orders SET status = $1, updated_at = $2 \
             WHERE tenant_id = $3 AND order_id = $4 AND updated_at <= $2",
        )
        .bind(text("status"))
        .bind(at)
        .bind(&record.tenant)
        .bind(text("orderId"))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
