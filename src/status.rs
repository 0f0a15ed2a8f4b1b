//! `tablewire status`: what the system is doing, read from NATS alone (so it works from any
//! machine that reaches it): per domain its input stream, partitions and their holders, the
//! backlog and its oldest command, parked commands and state buckets; the records backlog; live
//! edges and their sockets. Printed as text, or as JSON with `--json`. Called by `main`.

use crate::cli::NatsArgs;
use crate::run::connect;
use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, stream};
use clap::Args;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use std::collections::BTreeMap;
use tablewire_nats::{resource, subject};
use tablewire_schemas::Domain;
use tablewire_schemas::presence::EdgePresence;

/// `tablewire status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Print the report as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// Only these domains (comma-separated); every domain when unset.
    #[arg(long, value_delimiter = ',')]
    pub domain: Vec<String>,
}

/// Everything `status` reports.
#[derive(Debug, Serialize)]
pub struct Report {
    pub domains: Vec<DomainStatus>,
    pub records: Option<RecordsStatus>,
    /// The parked stream as a whole (per-domain counts are under each domain).
    pub parked: Option<StreamStatus>,
    pub edges: Vec<EdgeStatus>,
    /// The buckets no single domain owns (workers, edges, the device directory and presence).
    pub buckets: Vec<BucketStatus>,
    /// What could not be read (a missing stream or bucket: run `tablewire provision`).
    pub problems: Vec<String>,
}

/// One domain.
#[derive(Debug, Serialize)]
pub struct DomainStatus {
    pub domain: String,
    pub stream: Option<StreamStatus>,
    pub partitions: Vec<PartitionStatus>,
    pub workers: Vec<WorkerStatus>,
    /// Commands stored and not yet delivered, all partitions.
    pub pending: u64,
    /// Commands delivered and not yet acknowledged, all partitions.
    pub unacknowledged: u64,
    /// Commands delivered more than once and not yet acknowledged, all partitions.
    pub redelivered: u64,
    /// Age in seconds of the oldest command not yet acknowledged, any partition.
    pub oldest_unacknowledged_secs: Option<f64>,
    pub parked: ParkedStatus,
    pub buckets: Vec<BucketStatus>,
}

/// A stream's size.
#[derive(Debug, Serialize)]
pub struct StreamStatus {
    pub name: String,
    pub messages: u64,
    pub bytes: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

/// One partition consumer.
#[derive(Debug, Serialize)]
pub struct PartitionStatus {
    pub partition: u16,
    pub consumer: String,
    /// The worker that holds it: the live worker the rendezvous hash gives it to, as every
    /// worker computes it. `None` while no live worker is announced.
    pub holder: Option<String>,
    /// Whether a worker is pulling from it now (a pull request waits on the consumer).
    pub pulling: bool,
    /// Whether a worker is pinned on the consumer (nats-server pins the first puller a message
    /// is delivered to, and unpins it when it stops pulling).
    pub pinned: bool,
    #[serde(flatten)]
    pub backlog: Backlog,
}

/// What a durable consumer has not finished.
#[derive(Debug, Default, Serialize)]
pub struct Backlog {
    /// Stored and not yet delivered.
    pub pending: u64,
    /// Delivered and not yet acknowledged.
    pub unacknowledged: u64,
    /// Delivered more than once and not yet acknowledged.
    pub redelivered: u64,
    /// The stream sequence everything up to which is acknowledged.
    pub ack_floor: u64,
    /// The oldest message not yet acknowledged: its stream sequence and age in seconds.
    pub oldest_unacknowledged_seq: Option<u64>,
    pub oldest_unacknowledged_secs: Option<f64>,
}

/// One handler worker announced in `tw_workers`.
#[derive(Debug, Serialize)]
pub struct WorkerStatus {
    pub worker: String,
    pub pid: Option<u64>,
    /// Whether its process answers probes (`None`: not known, e.g. an older worker).
    pub alive: Option<bool>,
}

/// Parked commands of one domain (`TW_PARKED`, `tw.parked.{domain}.{reason}`).
#[derive(Debug, Default, Serialize)]
pub struct ParkedStatus {
    pub total: u64,
    pub by_reason: BTreeMap<String, u64>,
    /// The last one parked.
    pub last: Option<ParkedCommand>,
}

/// One parked command, from its headers.
#[derive(Debug, Serialize)]
pub struct ParkedCommand {
    /// Its sequence in `TW_PARKED`.
    pub parked_seq: u64,
    pub reason: String,
    pub detail: String,
    /// Its sequence in the input stream.
    pub input_seq: Option<u64>,
    pub age_secs: f64,
}

/// A KV bucket's size.
#[derive(Debug, Serialize)]
pub struct BucketStatus {
    pub bucket: String,
    /// Entries kept (including delete markers and history).
    pub values: u64,
    pub bytes: u64,
}

/// The records stream and its consumers (the SQL writer, the collab webhook).
#[derive(Debug, Serialize)]
pub struct RecordsStatus {
    pub stream: StreamStatus,
    pub consumers: BTreeMap<String, Backlog>,
}

/// One live edge, from `tw_edges`.
#[derive(Debug, Serialize)]
pub struct EdgeStatus {
    #[serde(flatten)]
    pub presence: EdgePresence,
    pub total_sockets: u64,
    /// Seconds since it last refreshed its entry.
    pub age_secs: f64,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let domains = if args.domain.is_empty() {
        Domain::ALL.to_vec()
    } else {
        crate::run::parse_domains(&args.domain)?
    };
    let client = connect(&args.nats.nats_url, "tablewire-status").await?;
    let report = gather(&client, &domains).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

/// Reads the report from NATS.
pub async fn gather(client: &async_nats::Client, domains: &[Domain]) -> Report {
    let js = jetstream::new(client.clone());
    let mut problems = Vec::new();
    let mut report_domains = Vec::new();
    for &domain in domains {
        report_domains.push(domain_status(client, &js, domain, &mut problems).await);
    }
    let records = records_status(&js, &mut problems).await;
    let parked = match js.get_stream(resource::PARKED_STREAM).await {
        Ok(mut s) => match s.info().await {
            Ok(info) => Some(stream_status(info)),
            Err(e) => {
                problems.push(format!("{}: {e}", resource::PARKED_STREAM));
                None
            }
        },
        Err(e) => {
            problems.push(format!("{}: {e}", resource::PARKED_STREAM));
            None
        }
    };
    let edges = edges(&js, &mut problems).await;
    let mut buckets = Vec::new();
    for bucket in [
        resource::WORKERS_BUCKET,
        resource::EDGES_BUCKET,
        resource::DEVICE_TAGS_BUCKET,
        resource::DEVICE_SETTINGS_BUCKET,
        resource::DEVICE_PRESENCE_BUCKET,
    ] {
        match bucket_status(&js, bucket).await {
            Ok(b) => buckets.push(b),
            Err(e) => problems.push(format!("{bucket}: {e}")),
        }
    }
    Report {
        domains: report_domains,
        records,
        parked,
        edges,
        buckets,
        problems,
    }
}

async fn domain_status(
    client: &async_nats::Client,
    js: &jetstream::Context,
    domain: Domain,
    problems: &mut Vec<String>,
) -> DomainStatus {
    let stream_name = resource::input_stream(domain);
    let workers = workers(client, js, domain, problems).await;
    let live: Vec<String> = workers
        .iter()
        .filter(|w| w.alive != Some(false))
        .map(|w| w.worker.clone())
        .collect();
    let mut status = DomainStatus {
        domain: domain.to_string(),
        stream: None,
        partitions: Vec::new(),
        workers,
        pending: 0,
        unacknowledged: 0,
        redelivered: 0,
        oldest_unacknowledged_secs: None,
        parked: parked_of(js, domain, problems).await,
        buckets: Vec::new(),
    };
    let mut buckets = vec![resource::state_bucket(domain)];
    if resource::PARTS_DOMAINS.contains(&domain) {
        buckets.push(resource::parts_bucket(domain));
    }
    for bucket in buckets {
        match bucket_status(js, &bucket).await {
            Ok(b) => status.buckets.push(b),
            Err(e) => problems.push(format!("{bucket}: {e}")),
        }
    }
    let mut stream = match js.get_stream(&stream_name).await {
        Ok(s) => s,
        Err(e) => {
            problems.push(format!("{stream_name}: {e}"));
            return status;
        }
    };
    let info = match stream.info().await {
        Ok(info) => info.clone(),
        Err(e) => {
            problems.push(format!("{stream_name}: {e}"));
            return status;
        }
    };
    let partitions = info
        .config
        .metadata
        .get(resource::PARTITIONS_METADATA)
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(0);
    status.stream = Some(stream_status(&info));
    for partition in 0..partitions {
        let name = resource::partition_consumer(domain, partition);
        let consumer = match stream.consumer_info(&name).await {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!("{stream_name} consumer {name}: {e}"));
                continue;
            }
        };
        let filter = subject::input_partition_filter(domain, partition);
        let backlog = backlog(&stream, &consumer, &filter).await;
        status.pending += backlog.pending;
        status.unacknowledged += backlog.unacknowledged;
        status.redelivered += backlog.redelivered;
        status.oldest_unacknowledged_secs = max_age(
            status.oldest_unacknowledged_secs,
            backlog.oldest_unacknowledged_secs,
        );
        status.partitions.push(PartitionStatus {
            partition,
            consumer: name,
            holder: tablewire_handlers::runtime::partition_owner(partition, &live).cloned(),
            pulling: consumer.num_waiting > 0,
            pinned: consumer
                .priority_groups
                .iter()
                .any(|g| g.pinned_client_id.is_some()),
            backlog,
        });
    }
    status
}

fn max_age(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn stream_status(info: &stream::Info) -> StreamStatus {
    StreamStatus {
        name: info.config.name.clone(),
        messages: info.state.messages,
        bytes: info.state.bytes,
        first_seq: info.state.first_sequence,
        last_seq: info.state.last_sequence,
    }
}

/// Seconds since a message was stored.
fn age_secs(time: &async_nats::jetstream::message::StreamMessage) -> f64 {
    let stored_ns = time.time.unix_timestamp_nanos();
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    ((now_ns - stored_ns).max(0) as f64) / 1e9
}

/// A consumer's backlog; the oldest unacknowledged message is the first of `filter` after the
/// ack floor.
async fn backlog(stream: &stream::Stream, info: &consumer::Info, filter: &str) -> Backlog {
    let mut backlog = Backlog {
        pending: info.num_pending,
        unacknowledged: info.num_ack_pending as u64,
        redelivered: info.num_redelivered as u64,
        ack_floor: info.ack_floor.stream_sequence,
        ..Default::default()
    };
    if backlog.pending + backlog.unacknowledged > 0 {
        let first = stream
            .direct_get_next_for_subject(filter, Some(backlog.ack_floor + 1))
            .await;
        if let Ok(message) = first {
            backlog.oldest_unacknowledged_seq = Some(message.sequence);
            backlog.oldest_unacknowledged_secs = Some(age_secs(&message));
        }
    }
    backlog
}

async fn workers(
    client: &async_nats::Client,
    js: &jetstream::Context,
    domain: Domain,
    problems: &mut Vec<String>,
) -> Vec<WorkerStatus> {
    let kv = match js.get_key_value(resource::WORKERS_BUCKET).await {
        Ok(kv) => kv,
        Err(e) => {
            problems.push(format!("{}: {e}", resource::WORKERS_BUCKET));
            return Vec::new();
        }
    };
    let keys: Vec<String> = match kv.keys().await {
        Ok(keys) => keys.filter_map(|k| async move { k.ok() }).collect().await,
        Err(e) => {
            problems.push(format!("{}: {e}", resource::WORKERS_BUCKET));
            return Vec::new();
        }
    };
    let mut workers = Vec::new();
    for key in keys {
        let Some(worker) = resource::worker_of_key(domain, &key) else {
            continue;
        };
        let value: serde_json::Value = match kv.get(&key).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
            _ => continue,
        };
        let alive = match value["probe"].as_str() {
            Some(inbox) => tablewire_handlers::runtime::probe_worker(client, inbox).await,
            None => None,
        };
        workers.push(WorkerStatus {
            worker,
            pid: value["pid"].as_u64(),
            alive,
        });
    }
    workers.sort_by(|a, b| a.worker.cmp(&b.worker));
    workers
}

async fn parked_of(
    js: &jetstream::Context,
    domain: Domain,
    problems: &mut Vec<String>,
) -> ParkedStatus {
    let mut parked = ParkedStatus::default();
    let stream = match js.get_stream(resource::PARKED_STREAM).await {
        Ok(s) => s,
        Err(e) => {
            problems.push(format!("{}: {e}", resource::PARKED_STREAM));
            return parked;
        }
    };
    let filter = format!("tw.parked.{domain}.>");
    match stream.info_with_subjects(&filter).await {
        Ok(subjects) => {
            let counts: Result<Vec<(String, usize)>, _> = subjects.try_collect().await;
            match counts {
                Ok(counts) => {
                    for (subject, count) in counts {
                        let reason = subject.rsplit('.').next().unwrap_or_default().to_string();
                        let reason = tablewire_nats::token::decode(&reason)
                            .map(|r| r.into_owned())
                            .unwrap_or(reason);
                        *parked.by_reason.entry(reason).or_insert(0) += count as u64;
                        parked.total += count as u64;
                    }
                }
                Err(e) => problems.push(format!("{}: {e}", resource::PARKED_STREAM)),
            }
        }
        Err(e) => problems.push(format!("{}: {e}", resource::PARKED_STREAM)),
    }
    if parked.total > 0
        && let Ok(message) = stream.get_last_raw_message_by_subject(&filter).await
    {
        use tablewire_nats::subject::header;
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .map(|v| v.as_str().to_string())
                .unwrap_or_default()
        };
        parked.last = Some(ParkedCommand {
            parked_seq: message.sequence,
            reason: header(header::PARKED_REASON),
            detail: header(header::PARKED_DETAIL),
            input_seq: header(header::PARKED_SEQ).parse().ok(),
            age_secs: age_secs(&message),
        });
    }
    parked
}

async fn bucket_status(js: &jetstream::Context, bucket: &str) -> anyhow::Result<BucketStatus> {
    let mut stream = js
        .get_stream(resource::bucket_stream(bucket))
        .await
        .context("no such bucket")?;
    let info = stream.info().await?;
    Ok(BucketStatus {
        bucket: bucket.to_string(),
        values: info.state.messages,
        bytes: info.state.bytes,
    })
}

async fn records_status(
    js: &jetstream::Context,
    problems: &mut Vec<String>,
) -> Option<RecordsStatus> {
    let mut stream = match js.get_stream(resource::RECORDS_STREAM).await {
        Ok(s) => s,
        Err(e) => {
            problems.push(format!("{}: {e}", resource::RECORDS_STREAM));
            return None;
        }
    };
    let info = match stream.info().await {
        Ok(info) => stream_status(info),
        Err(e) => {
            problems.push(format!("{}: {e}", resource::RECORDS_STREAM));
            return None;
        }
    };
    let mut consumers = BTreeMap::new();
    for name in [
        resource::RECORDS_CONSUMER,
        resource::COLLAB_WEBHOOK_CONSUMER,
    ] {
        // The webhook consumer exists only where a webhook is configured.
        let Ok(consumer) = stream.consumer_info(name).await else {
            if name == resource::RECORDS_CONSUMER {
                problems.push(format!("{}: no consumer {name}", resource::RECORDS_STREAM));
            }
            continue;
        };
        let filter = match consumer.config.filter_subject.as_str() {
            "" => subject::records_filter(),
            f => f.to_string(),
        };
        consumers.insert(name.to_string(), backlog(&stream, &consumer, &filter).await);
    }
    Some(RecordsStatus {
        stream: info,
        consumers,
    })
}

async fn edges(js: &jetstream::Context, problems: &mut Vec<String>) -> Vec<EdgeStatus> {
    let kv = match js.get_key_value(resource::EDGES_BUCKET).await {
        Ok(kv) => kv,
        Err(e) => {
            problems.push(format!("{}: {e}", resource::EDGES_BUCKET));
            return Vec::new();
        }
    };
    let keys: Vec<String> = match kv.keys().await {
        Ok(keys) => keys.filter_map(|k| async move { k.ok() }).collect().await,
        Err(e) => {
            problems.push(format!("{}: {e}", resource::EDGES_BUCKET));
            return Vec::new();
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut edges = Vec::new();
    for key in keys {
        let Ok(Some(bytes)) = kv.get(&key).await else {
            continue;
        };
        let Ok(presence) = serde_json::from_slice::<EdgePresence>(&bytes) else {
            problems.push(format!(
                "{}: unreadable entry {key}",
                resource::EDGES_BUCKET
            ));
            continue;
        };
        edges.push(EdgeStatus {
            total_sockets: presence.total_sockets(),
            age_secs: ((now - presence.at).max(0) as f64) / 1000.0,
            presence,
        });
    }
    edges.sort_by(|a, b| a.presence.edge.cmp(&b.presence.edge));
    edges
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn age(secs: Option<f64>) -> String {
    secs.map_or("-".into(), |s| format!("{s:.1}s"))
}

/// The report as text for a terminal.
pub fn render(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for d in &report.domains {
        let _ = match &d.stream {
            Some(s) => writeln!(
                out,
                "{}  {}: {} messages, {}; {} partitions; backlog {} pending, {} unacked, {} redelivered; oldest unacked {}",
                d.domain,
                s.name,
                s.messages,
                bytes(s.bytes),
                d.partitions.len(),
                d.pending,
                d.unacknowledged,
                d.redelivered,
                age(d.oldest_unacknowledged_secs)
            ),
            None => writeln!(out, "{}  (no input stream)", d.domain),
        };
        for p in &d.partitions {
            let _ = writeln!(
                out,
                "  p{:<3} holder {:<24} {:<8} pending {:<6} unacked {:<6} redelivered {:<4} oldest unacked {}",
                p.partition,
                p.holder.as_deref().unwrap_or("(none)"),
                if p.pulling { "pulling" } else { "idle" },
                p.backlog.pending,
                p.backlog.unacknowledged,
                p.backlog.redelivered,
                age(p.backlog.oldest_unacknowledged_secs)
            );
        }
        let workers: Vec<String> = d
            .workers
            .iter()
            .map(|w| {
                let state = match w.alive {
                    Some(true) => "alive",
                    Some(false) => "gone",
                    None => "unknown",
                };
                format!("{} ({state})", w.worker)
            })
            .collect();
        let _ = writeln!(
            out,
            "  workers: {}",
            if workers.is_empty() {
                "none".to_string()
            } else {
                workers.join(", ")
            }
        );
        if d.parked.total > 0 {
            let reasons: Vec<String> = d
                .parked
                .by_reason
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            let _ = writeln!(out, "  PARKED: {} ({})", d.parked.total, reasons.join(", "));
            if let Some(last) = &d.parked.last {
                let _ = writeln!(
                    out,
                    "    last: parked seq {}, input seq {}, {} ago: {}: {}",
                    last.parked_seq,
                    last.input_seq.map_or("-".into(), |s| s.to_string()),
                    age(Some(last.age_secs)),
                    last.reason,
                    last.detail
                );
            }
        }
        for b in &d.buckets {
            let _ = writeln!(
                out,
                "  {}: {} values, {}",
                b.bucket,
                b.values,
                bytes(b.bytes)
            );
        }
    }
    if let Some(r) = &report.records {
        let _ = writeln!(
            out,
            "records  {}: {} messages, {}",
            r.stream.name,
            r.stream.messages,
            bytes(r.stream.bytes)
        );
        for (name, b) in &r.consumers {
            let _ = writeln!(
                out,
                "  {name}: pending {}, unacked {}, redelivered {}, oldest unacked {}",
                b.pending,
                b.unacknowledged,
                b.redelivered,
                age(b.oldest_unacknowledged_secs)
            );
        }
    }
    if let Some(p) = &report.parked {
        let _ = writeln!(
            out,
            "parked   {}: {} messages, {}",
            p.name,
            p.messages,
            bytes(p.bytes)
        );
    }
    let _ = writeln!(out, "edges    {}", report.edges.len());
    for e in &report.edges {
        let sockets: Vec<String> = e
            .presence
            .sockets
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "  {} (pid {}){}: {} sockets ({}), refreshed {} ago",
            e.presence.edge,
            e.presence.pid,
            if e.presence.draining { " DRAINING" } else { "" },
            e.total_sockets,
            sockets.join(", "),
            age(Some(e.age_secs))
        );
    }
    for b in &report.buckets {
        let _ = writeln!(
            out,
            "bucket   {}: {} values, {}",
            b.bucket,
            b.values,
            bytes(b.bytes)
        );
    }
    for problem in &report.problems {
        let _ = writeln!(out, "problem: {problem}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_parked_commands_gone_workers_and_draining_edges() {
        let report = Report {
            domains: vec![DomainStatus {
                domain: "pos".into(),
                stream: None,
                partitions: vec![PartitionStatus {
                    partition: 2,
                    consumer: "pos-p2".into(),
                    holder: None,
                    pulling: false,
                    pinned: false,
                    backlog: Backlog {
                        pending: 7,
                        oldest_unacknowledged_secs: Some(42.0),
                        ..Default::default()
                    },
                }],
                workers: vec![WorkerStatus {
                    worker: "w1".into(),
                    pid: Some(1),
                    alive: Some(false),
                }],
                pending: 7,
                unacknowledged: 0,
                redelivered: 0,
                oldest_unacknowledged_secs: Some(42.0),
                parked: ParkedStatus {
                    total: 1,
                    by_reason: BTreeMap::from([("state_unreadable".to_string(), 1)]),
                    last: None,
                },
                buckets: Vec::new(),
            }],
            records: None,
            parked: None,
            edges: vec![EdgeStatus {
                presence: EdgePresence {
                    edge: "e1".into(),
                    pid: 9,
                    sockets: BTreeMap::from([("pos".to_string(), 3)]),
                    draining: true,
                    at: 0,
                },
                total_sockets: 3,
                age_secs: 1.0,
            }],
            buckets: Vec::new(),
            problems: vec!["TW_RECORDS: stream not found".into()],
        };
        let text = render(&report);
        for expected in [
            "pos  (no input stream)",
            "p2   holder (none)",
            "pending 7 ",
            "oldest unacked 42.0s",
            "w1 (gone)",
            "PARKED: 1 (state_unreadable 1)",
            "e1 (pid 9) DRAINING: 3 sockets (pos 3)",
            "problem: TW_RECORDS: stream not found",
        ] {
            assert!(text.contains(expected), "{expected:?} in:\n{text}");
        }
    }

    #[test]
    fn ages_take_the_oldest_and_sizes_read_in_binary_units() {
        assert_eq!(max_age(Some(1.0), Some(3.0)), Some(3.0));
        assert_eq!(max_age(None, Some(2.0)), Some(2.0));
        assert_eq!(max_age(None, None), None);
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }
}
