//! SQL for the device domain's records (`device_scans`, `device_tags`, `device_configs`), each
//! read as its schemas type (a record that does not is refused, not stored), and the copy of the
//! tag directory from SQL into KV (`tw_device_tags`) that edges read.

use super::error::{WriteError, read};
use crate::store::Pool;
use async_nats::jetstream::kv;
use serde_json::{Value, json};
use sqlx::{Row, Transaction};
use std::time::Duration;
use tablewire_nats::resource;
use tablewire_schemas::device::{ConfigRecord, ScanRecord, TagRecord};
use tablewire_schemas::stored::Record;
use tokio::sync::watch;
use tracing::{debug, warn};

/// The record kind of an accepted scan.
pub(crate) const SCAN: &str = crate::device::SCAN_RECORD;
/// The record kind of a tag registered in registration mode.
pub(crate) const TAG: &str = crate::device::TAG_RECORD;
/// The record kind of a stored device configuration.
pub(crate) const CONFIG: &str = crate::device::CONFIG_RECORD;

/// How often the tag directory is copied from SQL into KV.
pub const TAG_SYNC_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) async fn write_scan(
    tx: &mut Transaction<'_, sqlx::Any>,
    record: &Record,
) -> Result<(), WriteError> {
    let ScanRecord { scan, user } = read(SCAN, &record.data)?;
    let user_id = match user.as_ref().and_then(|u| u.get("id")) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    sqlx::query(
        "INSERT INTO device_scans (id, tenant, device_id, tag_id, location, user_id, registered, \
         scanned_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&scan.id)
    .bind(&record.tenant)
    .bind(&scan.device_id)
    .bind(&scan.tag_id)
    .bind(scan.location.as_deref())
    .bind(user_id)
    .bind(scan.registered)
    .bind(scan.timestamp)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(crate) async fn write_tag(
    tx: &mut Transaction<'_, sqlx::Any>,
    record: &Record,
) -> Result<(), WriteError> {
    let tag: TagRecord = read(TAG, &record.data)?;
    sqlx::query(
        "INSERT INTO device_tags (tenant, tag_id, registered_by, updated_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, tag_id) DO NOTHING",
    )
    .bind(&record.tenant)
    .bind(&tag.tag_id)
    .bind(&tag.device_id)
    .bind(tag.registered_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(crate) async fn write_config(
    tx: &mut Transaction<'_, sqlx::Any>,
    record: &Record,
) -> Result<(), WriteError> {
    let config: ConfigRecord = read(CONFIG, &record.data)?;
    sqlx::query(
        "INSERT INTO device_configs (tenant, device_id, config, version) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant, device_id) DO UPDATE SET config = excluded.config, \
         version = excluded.version WHERE device_configs.version < excluded.version",
    )
    .bind(&record.tenant)
    .bind(&config.device_id)
    .bind(record.data["config"].to_string())
    .bind(i64::try_from(config.version).unwrap_or(i64::MAX))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Copies tags changed since the last look from SQL into the KV tag directory, until
/// `shutdown`. Rows are read by `updated_at >= watermark` (a row written in the same
/// millisecond as the last one seen is copied again, harmlessly).
pub(crate) async fn sync_tags(pool: Pool, kv: kv::Store, mut shutdown: watch::Receiver<bool>) {
    let mut watermark = i64::MIN;
    let mut tick = tokio::time::interval(TAG_SYNC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        match copy_tags(&pool, &kv, watermark).await {
            Ok(Some(newest)) => watermark = newest,
            Ok(None) => {}
            Err(e) => debug!(error = %e, "tag directory not copied this time"),
        }
    }
}

async fn copy_tags(pool: &Pool, kv: &kv::Store, since: i64) -> Result<Option<i64>, String> {
    let rows = sqlx::query(
        "SELECT tenant, tag_id, user_id, user_data, updated_at FROM device_tags \
         WHERE updated_at >= $1 ORDER BY updated_at LIMIT 10000",
    )
    .bind(since)
    .fetch_all(pool)
    .await
    .map_err(|e| e.to_string())?;
    let mut newest = None;
    for row in rows {
        let get = |i: usize| row.try_get::<Option<String>, _>(i).ok().flatten();
        let (Some(tenant), Some(tag)) = (get(0), get(1)) else {
            continue;
        };
        let user = match (get(3), get(2)) {
            (Some(data), _) => serde_json::from_str::<Value>(&data).ok(),
            (None, Some(id)) => Some(json!({"id": id})),
            (None, None) => None,
        };
        let entry = json!({"user": user});
        if let Err(e) = kv
            .put(
                resource::device_tag_key(&tenant, &tag),
                entry.to_string().into(),
            )
            .await
        {
            warn!(error = %e, "tag directory put failed");
            return Ok(newest);
        }
        newest = row.try_get::<i64, _>(4).ok().or(newest);
    }
    Ok(newest)
}
