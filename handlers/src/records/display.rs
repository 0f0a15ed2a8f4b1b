//! SQL for the display domain's records: one row per session in `display_sessions`. Called by
//! the SQL writer; a record that does not read as a [`SessionRecord`] is refused, not stored.

use super::error::WriteError;
use serde::Deserialize;
use sqlx::Transaction;
use tablewire_schemas::display::SessionRecord;
use tablewire_schemas::stored::Record;

pub(crate) use tablewire_schemas::display::SESSION_RECORD as SESSION;

pub(crate) async fn write_session(
    tx: &mut Transaction<'_, sqlx::Any>,
    record: &Record,
) -> Result<(), WriteError> {
    let session = SessionRecord::deserialize(&record.data)
        .map_err(|e| WriteError::Unreadable(format!("{SESSION}: {e}")))?;
    sqlx::query(
        "INSERT INTO display_sessions (session_id, tenant_id, started_at, version) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (session_id) DO UPDATE SET tenant_id = excluded.tenant_id, \
         version = excluded.version WHERE display_sessions.version < excluded.version",
    )
    .bind(&session.session_id)
    .bind(session.tenant_id.as_deref())
    .bind(session.started_at)
    .bind(i64::try_from(session.version).unwrap_or(i64::MAX))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
