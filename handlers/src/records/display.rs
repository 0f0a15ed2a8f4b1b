//! SQL for the display domain's records: one row per session in `display_sessions`.

use sqlx::Transaction;
use tablewire_schemas::stored::Record;

/// The record kind the display domain writes on `init`.
pub(crate) const SESSION: &str = "display_session";

pub(crate) async fn write_session(
    tx: &mut Transaction<'_, sqlx::Any>,
    record: &Record,
) -> Result<(), sqlx::Error> {
    let data = &record.data;
    let session = data["sessionId"].as_str().unwrap_or_default();
    let tenant = data["tenantId"].as_str();
    let started = data["startedAt"].as_i64().unwrap_or_default();
    let version = data["version"].as_i64().unwrap_or_default();
    sqlx::query(
        "INSERT INTO display_sessions (session_id, tenant_id, started_at, version) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (session_id) DO UPDATE SET tenant_id = excluded.tenant_id, \
         version = excluded.version WHERE display_sessions.version < excluded.version",
    )
    .bind(session)
    .bind(tenant)
    .bind(started)
    .bind(version)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
