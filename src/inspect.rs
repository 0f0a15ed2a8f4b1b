//! `tablewire inspect DOMAIN KEY`: one key's stored state as KV holds it (revision, the input
//! sequence it last applied, its event sequence, state and outbox), and how many of its
//! commands wait in the input stream after that. Read from NATS alone. Called by `main`.

use crate::cli::NatsArgs;
use crate::run::connect;
use anyhow::{Context as _, bail};
use async_nats::jetstream::{self, kv};
use clap::Args;
use serde::Serialize;
use serde_json::Value;
use tablewire_nats::{resource, subject};
use tablewire_schemas::Domain;

/// Most waiting commands counted (more: the count stops there).
const MAX_COUNTED: u64 = 10_000;

/// `tablewire inspect`.
#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// The domain: display, collab, pos, device, events, voice.
    pub domain: String,
    /// The key inside the domain: a session, room, tenant or device id.
    pub key: String,
    /// The tenant the key belongs to (display sessions and open collab rooms: `_` or the open
    /// tenant; POS and events: the restaurant, whose key is the tenant too).
    #[arg(long, default_value = "_")]
    pub tenant: String,
}

/// What `inspect` prints (as JSON).
#[derive(Debug, Serialize)]
pub struct Inspection {
    pub domain: String,
    pub tenant: String,
    pub key: String,
    pub bucket: String,
    pub bucket_key: String,
    /// The KV revision of its last entry (absent when the key was never written).
    pub revision: Option<u64>,
    /// `put`, `delete` or `purge` for the last entry.
    pub operation: Option<String>,
    /// The input stream sequence of the last command applied.
    pub applied: Option<u64>,
    /// The key's event sequence.
    pub seq: Option<u64>,
    pub state: Option<Value>,
    pub outbox: Option<Value>,
    /// The entry as stored when it is not a state this version reads.
    pub unreadable: Option<String>,
    /// Commands for this key still in the input stream after `applied`: not yet applied
    /// (counted up to 10 000).
    pub waiting: Option<u64>,
    /// The stream sequence of the last of them.
    pub last_stored_seq: Option<u64>,
}

pub async fn run(args: InspectArgs) -> anyhow::Result<()> {
    let Some(domain) = Domain::from_name(args.domain.trim()) else {
        bail!("unknown domain {:?}", args.domain);
    };
    let client = connect(&args.nats.nats_url, "tablewire-inspect").await?;
    let inspection = inspect(&client, domain, &args.tenant, &args.key).await?;
    println!("{}", serde_json::to_string_pretty(&inspection)?);
    Ok(())
}

/// Reads one key.
pub async fn inspect(
    client: &async_nats::Client,
    domain: Domain,
    tenant: &str,
    key: &str,
) -> anyhow::Result<Inspection> {
    let js = jetstream::new(client.clone());
    let bucket = resource::state_bucket(domain);
    let bucket_key = resource::state_key(tenant, key);
    let store = js
        .get_key_value(&bucket)
        .await
        .with_context(|| format!("bucket {bucket} (run `tablewire provision`)"))?;
    let entry = store
        .entry(&bucket_key)
        .await
        .with_context(|| format!("read {bucket} {bucket_key}"))?;
    let mut inspection = Inspection {
        domain: domain.to_string(),
        tenant: tenant.to_string(),
        key: key.to_string(),
        bucket,
        bucket_key,
        revision: None,
        operation: None,
        applied: None,
        seq: None,
        state: None,
        outbox: None,
        unreadable: None,
        waiting: None,
        last_stored_seq: None,
    };
    if let Some(entry) = entry {
        inspection.revision = Some(entry.revision);
        inspection.operation = Some(
            match entry.operation {
                kv::Operation::Put => "put",
                kv::Operation::Delete => "delete",
                kv::Operation::Purge => "purge",
            }
            .to_string(),
        );
        if entry.operation == kv::Operation::Put {
            match serde_json::from_slice::<Value>(&entry.value) {
                Ok(mut stored) if stored.get("applied").is_some() => {
                    inspection.applied = stored["applied"].as_u64();
                    inspection.seq = stored["seq"].as_u64();
                    inspection.state = stored.get_mut("state").map(Value::take);
                    inspection.outbox = stored.get_mut("outbox").map(Value::take);
                }
                _ => {
                    inspection.unreadable = Some(String::from_utf8_lossy(&entry.value).into_owned())
                }
            }
        }
    }
    // The commands stored for this key after the one last applied, read one by one (the
    // input stream keeps only unacknowledged commands, so there are few unless it lags).
    if let Ok(stream) = js.get_stream(resource::input_stream(domain)).await {
        let filter = subject::input_stored_key(domain, tenant, key);
        let mut waiting = 0u64;
        let mut next = inspection.applied.unwrap_or(0) + 1;
        while waiting < MAX_COUNTED {
            match stream
                .direct_get_next_for_subject(&filter, Some(next))
                .await
            {
                Ok(message) => {
                    waiting += 1;
                    inspection.last_stored_seq = Some(message.sequence);
                    next = message.sequence + 1;
                }
                Err(_) => break,
            }
        }
        inspection.waiting = Some(waiting);
    }
    Ok(inspection)
}
