//! The SQL writer: consumes the records stream and writes each record to SQL, idempotently,
//! acknowledging only after commit. When the database is down, records wait in the stream
//! (nothing is dropped) and are written when it is back. One per handler process; any number
//! may run against the same database. It also keeps the device tag directory (KV) in step
//! with SQL. A record that can never be written (it does not read as its kind) is parked in
//! `TW_PARKED` with its reason, with the records that share its message, never stored empty.

mod collab;
mod device;
mod display;
mod error;
mod pos;

pub use error::WriteError;

use crate::metrics::{Metrics, ParkedLabels};
use crate::store::{self, Pool};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use std::time::Duration;
use tablewire_nats::{resource, subject};
use tablewire_schemas::stored::Record;
use tokio::sync::watch;
use tracing::{info, warn};

/// Most records written in one transaction.
const MAX_BATCH: usize = 256;
/// How long the writer waits for more records before it commits the ones it has.
const GATHER: Duration = Duration::from_millis(5);

/// The reason (`Tw-Parked-Reason`, subject and metric label) of a parked record message.
const RECORD_UNREADABLE: &str = "record_unreadable";

/// Writes one record inside `tx` to its kind's table; a kind without one goes to the generic
/// `records` table. Each table's key makes a second write a no-op. (Until 2026-11-27 every
/// record was also copied to `records`: a second statement and a second copy of its JSON for
/// nothing anyone read, a third of the SQL writer's work.)
async fn write_record(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    record: &Record,
    now_ms: i64,
) -> Result<(), WriteError> {
    let written = match record.kind.as_str() {
        display::SESSION => return display::write_session(tx, record).await,
        collab::ORDER => collab::write_order(tx, record).await,
        collab::ARCHIVE => collab::write_archive(tx, record).await,
        pos::ORDER => pos::write_order(tx, record).await,
        pos::STATUS => pos::write_status(tx, record).await,
        device::SCAN => device::write_scan(tx, record).await,
        device::TAG => device::write_tag(tx, record).await,
        device::CONFIG => device::write_config(tx, record).await,
        _ => write_generic(tx, record, now_ms).await,
    };
    written.map_err(WriteError::from)
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

async fn write_batch(pool: &Pool, records: &[&Record]) -> Result<(), WriteError> {
    let now = crate::clock::now_ms();
    let mut tx = pool.begin().await?;
    for record in records {
        write_record(&mut tx, record, now).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A header value from any text: control characters (CR, LF) become spaces, cut to 500
/// characters.
fn header_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(500)
        .collect()
}

/// Parks a records-stream message holding a record that can never be written: publishes it as
/// it is to `tw.parked.{domain}.record_unreadable` with why and where it came from, deduplicated
/// by its sequence in the records stream, and waits until it is stored.
async fn park_record(
    js: &jetstream::Context,
    message: &jetstream::Message,
    why: &str,
) -> Result<ParkedLabels, String> {
    let seq = message.info().map_err(|e| e.to_string())?.stream_sequence;
    let domain = subject::domain_of_record(&message.subject)
        .ok_or_else(|| format!("no domain in the records subject {}", message.subject))?;
    let mut headers = HeaderMap::new();
    let id = format!("{}:{seq}", resource::RECORDS_STREAM);
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
    headers.insert(subject::header::PARKED_REASON, RECORD_UNREADABLE);
    headers.insert(subject::header::PARKED_DETAIL, header_text(why).as_str());
    headers.insert(subject::header::PARKED_DOMAIN, domain.as_str());
    headers.insert(subject::header::PARKED_SEQ, seq.to_string().as_str());
    headers.insert(
        subject::header::PARKED_SUBJECT,
        header_text(&message.subject).as_str(),
    );
    js.publish_with_headers(
        subject::parked(domain, RECORD_UNREADABLE),
        headers,
        message.payload.clone(),
    )
    .await
    .map_err(|e| e.to_string())?
    .await
    .map_err(|e| e.to_string())?;
    Ok(ParkedLabels {
        domain: domain.as_str().to_string(),
        reason: RECORD_UNREADABLE.to_string(),
    })
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
                Err(WriteError::Sql(e)) if is_unavailable(&e) => {
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
                            Err(WriteError::Unreadable(why)) => {
                                // Never written however often tried: kept in the parked
                                // stream with its reason, then let go from the records stream.
                                let (id, kind) = (&records[0].id, &records[0].kind);
                                match park_record(&js, message, &why).await {
                                    Ok(labels) => {
                                        warn!(%id, %kind, count = records.len(), %why, "record unreadable; parked");
                                        metrics.parked.get_or_create(&labels).inc();
                                        let _ = message.ack_with(AckKind::Term).await;
                                    }
                                    Err(e) => {
                                        metrics.record_failures.inc();
                                        warn!(%id, %kind, error = %e, "unreadable record not parked; kept for retry");
                                        let _ = message
                                            .ack_with(AckKind::Nak(Some(Duration::from_secs(30))))
                                            .await;
                                    }
                                }
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

    /// `data["sessionId"].as_str().unwrap_or_default()` stored a display session under an
    /// empty id when the field was misspelled; such a record is refused (and parked by the
    /// writer), never stored empty.
    #[tokio::test]
    async fn a_record_that_does_not_read_as_its_kind_is_refused_not_stored_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = store::connect(&format!("sqlite://{}/w.db", dir.path().display()))
            .await
            .expect("connect");
        let misspelled = Record {
            kind: display::SESSION.to_string(),
            id: "display:t1.s1:3:0".to_string(),
            tenant: "t1".to_string(),
            data: json!({"sessionID": "s1", "tenantId": "t1", "startedAt": 1, "version": 3}),
        };
        let written = write_batch(&pool, &[&misspelled]).await;
        assert!(
            matches!(&written, Err(WriteError::Unreadable(why)) if why.contains("sessionId")),
            "a misspelled record is refused as unreadable: {written:?}"
        );
        assert_eq!(
            count(&pool, "SELECT COUNT(*) FROM display_sessions").await,
            0,
            "nothing stored under an empty session id"
        );
    }
}
