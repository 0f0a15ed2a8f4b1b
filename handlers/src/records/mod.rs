//! The SQL writer: consumes the records stream and writes each record to SQL, idempotently,
//! acknowledging only after commit. When the database is down, records wait in the stream
//! (nothing is dropped) and are written when it is back. One per handler process; any number
//! may run against the same database. It also keeps the device tag directory (KV) in step
//! with SQL.

mod collab;
mod device;
mod display;
mod pos;

use crate::metrics::Metrics;
use crate::store::{self, Pool};
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use std::time::Duration;
use tablewire_nats::resource;
use tablewire_schemas::stored::Record;
use tokio::sync::watch;
use tracing::{info, warn};

/// Most records written in one transaction.
const MAX_BATCH: usize = 256;
/// How long the writer waits for more records before it commits the ones it has.
const GATHER: Duration = Duration::from_millis(5);

/// Writes one record inside `tx` to its kind's table; a kind without one goes to the generic
/// `records` table. Each table's key makes a second write a no-op. (Until 2026-11-27 every
/// record was also copied to `records`: a second statement and a second copy of its JSON for
/// nothing anyone read, a third of the SQL writer's work.)
async fn write_record(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    record: &Record,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    match record.kind.as_str() {
        display::SESSION => display::write_session(tx, record).await,
        collab::ORDER => collab::write_order(tx, record).await,
        collab::ARCHIVE => collab::write_archive(tx, record).await,
        pos::ORDER => pos::write_order(tx, record).await,
        pos::STATUS => pos::write_status(tx, record).await,
        device::SCAN => device::write_scan(tx, record).await,
        device::TAG => device::write_tag(tx, record).await,
        device::CONFIG => device::write_config(tx, record).await,
        _ => write_generic(tx, record, now_ms).await,
    }
}

/// Keeps a record of a kind no table knows, as JSON.
async fn write_generic(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    record: &Record,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO records (id, kind, tenant, data, stored_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&record.id)
    .bind(&record.kind)
    .bind(&record.tenant)
    .bind(record.data.to_string())
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Whether an error means "the database is not reachable" (wait and retry everything) rather
/// than "this record does not fit" (retry it alone, later).
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let msg = db.message();
            msg.contains("locked") || msg.contains("shutting down") || msg.contains("connection")
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        _ => false,
    }
}

async fn write_batch(pool: &Pool, records: &[&Record]) -> Result<(), sqlx::Error> {
    let now = crate::clock::now_ms();
    let mut tx = pool.begin().await?;
    for record in records {
        write_record(&mut tx, record, now).await?;
    }
    tx.commit().await
}

/// Runs the SQL writer until `shutdown`.
pub async fn run(
    client: async_nats::Client,
    database_url: String,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    let pool = loop {
        match store::connect(&database_url).await {
            Ok(pool) => break pool,
            Err(e) => {
                warn!(error = %e, "database unavailable; records wait in the stream");
                metrics.record_failures.inc();
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    };
    info!("records writer connected");
    let js = jetstream::new(client);
    match js.get_key_value(resource::DEVICE_TAGS_BUCKET).await {
        Ok(tags) => {
            tokio::spawn(device::sync_tags(pool.clone(), tags, shutdown.clone()));
        }
        Err(e) => warn!(error = %e, "no tag directory bucket; device tags are not copied"),
    }
    'pull: loop {
        let consumer: Result<jetstream::consumer::PullConsumer, _> =
            match js.get_stream(resource::RECORDS_STREAM).await {
                Ok(stream) => stream
                    .get_consumer(resource::RECORDS_CONSUMER)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
        let messages = match consumer {
            Ok(c) => c
                .stream()
                .max_messages_per_batch(MAX_BATCH)
                .messages()
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let messages = match messages {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "records stream unavailable; retrying");
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue 'pull,
                }
            }
        };
        let mut chunks = messages.ready_chunks(MAX_BATCH);
        let mut backoff = Duration::from_millis(200);
        loop {
            let chunk = tokio::select! {
                _ = shutdown.changed() => return,
                chunk = chunks.next() => chunk,
            };
            let Some(mut results) = chunk else {
                continue 'pull;
            };
            // Records trickling in one by one would each cost a transaction: wait a moment for
            // more (they are off every client's path) and commit them together.
            let gather_until = tokio::time::Instant::now() + GATHER;
            while results.len() < MAX_BATCH {
                match tokio::time::timeout_at(gather_until, chunks.next()).await {
                    Ok(Some(more)) => results.extend(more),
                    Ok(None) | Err(_) => break,
                }
            }
            let messages: Vec<jetstream::Message> =
                results.into_iter().filter_map(Result::ok).collect();
            // A message holds one record or a handler batch's records of one tenant and kind.
            let parsed: Vec<(jetstream::Message, Option<Vec<Record>>)> = messages
                .into_iter()
                .map(|m| {
                    let records = Record::parse_message(&m.payload);
                    (m, records)
                })
                .collect();
            let records: Vec<&Record> = parsed
                .iter()
                .filter_map(|(_, r)| r.as_ref())
                .flatten()
                .collect();
            match write_batch(&pool, &records).await {
                Ok(()) => {
                    backoff = Duration::from_millis(200);
                    metrics.records_written.inc_by(records.len() as u64);
                    for (message, record) in &parsed {
                        let kind = if record.is_some() {
                            AckKind::Ack
                        } else {
                            AckKind::Term
                        };
                        let _ = message.ack_with(kind).await;
                    }
                }
                Err(e) if is_unavailable(&e) => {
                    metrics.record_failures.inc();
                    warn!(error = %e, waiting = parsed.len(), "database unavailable; records wait in the stream");
                    for (message, _) in &parsed {
                        let _ = message.ack_with(AckKind::Nak(Some(backoff))).await;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(e) => {
                    // One record does not fit: write the others, keep the misfit (with the
                    // records that came in its message) for later.
                    warn!(error = %e, "a record batch failed; writing messages one by one");
                    for (message, records) in &parsed {
                        let Some(records) = records else {
                            let _ = message.ack_with(AckKind::Term).await;
                            continue;
                        };
                        let records: Vec<&Record> = records.iter().collect();
                        match write_batch(&pool, &records).await {
                            Ok(()) => {
                                metrics.records_written.inc_by(records.len() as u64);
                                let _ = message.ack().await;
                            }
                            Err(e) => {
                                metrics.record_failures.inc();
                                let (id, kind) = (&records[0].id, &records[0].kind);
                                warn!(%id, %kind, count = records.len(), error = %e, "record not written; kept for retry");
                                let _ = message
                                    .ack_with(AckKind::Nak(Some(Duration::from_secs(30))))
                                    .await;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn count(pool: &Pool, sql: &'static str) -> i64 {
        let (n,): (i64,) = sqlx::query_as(sql).fetch_one(pool).await.expect("count");
        n
    }

    #[tokio::test]
    async fn a_record_goes_to_its_kinds_table_once_and_only_unknown_kinds_to_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = store::connect(&format!("sqlite://{}/w.db", dir.path().display()))
            .await
            .expect("connect");
        let scan = Record {
            kind: device::SCAN.to_string(),
            id: "reader-1:7".to_string(),
            tenant: "t1".to_string(),
            data: json!({"scan": {"id": "reader-1:7", "deviceId": "reader-1", "tagId": "T1",
                                  "location": "door", "timestamp": 1_700_000_000_000_i64},
                         "user": null}),
        };
        let other = Record {
            kind: "something_new".to_string(),
            id: "x1".to_string(),
            tenant: "t1".to_string(),
            data: json!({"a": 1}),
        };
        for _ in 0..2 {
            write_batch(&pool, &[&scan, &other]).await.expect("batch");
        }
        assert_eq!(count(&pool, "SELECT COUNT(*) FROM device_scans").await, 1);
        assert_eq!(
            count(&pool, "SELECT COUNT(*) FROM records").await,
            1,
            "only the kind without a table is kept as JSON"
        );
    }
}
