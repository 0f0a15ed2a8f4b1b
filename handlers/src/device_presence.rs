//! Watches the device presence bucket (`tw_device_presence`) for expiry markers (limit markers
//! of nats-server 2.11 and later: an entry nobody refreshed for the bucket's TTL is removed and
//! a `MaxAge` marker written) and sends the device an `expire` command, so a device whose edge
//! died goes offline. Started by the device domain's start hook; with several handler
//! processes each sends it, and the message id (key and marker revision) keeps one.

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use std::time::Duration;
use tablewire_nats::{resource, token};
use tablewire_schemas::Domain;
use tablewire_schemas::device::Command;
use tokio::sync::watch;
use tracing::{debug, warn};

/// Runs until `shutdown`, re-watching after errors.
pub async fn watch(client: async_nats::Client, mut shutdown: watch::Receiver<bool>) {
    let js = jetstream::new(client);
    loop {
        match watch_once(&js, &mut shutdown).await {
            Ok(()) => return,
            Err(e) => debug!(error = %e, "device presence watch ended; again"),
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn watch_once(
    js: &jetstream::Context,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let bucket = js
        .get_key_value(resource::DEVICE_PRESENCE_BUCKET)
        .await
        .map_err(|e| e.to_string())?;
    let ttl = js
        .get_stream(format!("KV_{}", resource::DEVICE_PRESENCE_BUCKET))
        .await
        .map(|s| s.cached_info().config.max_age)
        .map_err(|e| e.to_string())?;
    let mut entries = bucket.watch_all().await.map_err(|e| e.to_string())?;
    loop {
        let entry = tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            entry = entries.next() => entry,
        };
        let entry = match entry {
            Some(Ok(entry)) => entry,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("watch closed".into()),
        };
        if entry.operation != kv::Operation::Purge {
            continue;
        }
        let Some((tenant, device)) = entry
            .key
            .split_once('.')
            .and_then(|(t, d)| Some((token::decode(t)?, token::decode(d)?)))
        else {
            continue;
        };
        // Expire only what has been silent for most of the TTL: a refresh racing the marker
        // keeps the device online.
        let silent_ms = (ttl.as_millis() as u64 * 3 / 4).max(1);
        if let Err(e) = send_expire(js, &tenant, &device, entry.revision, silent_ms).await {
            warn!(error = %e, device = %device, "expire not sent");
        }
    }
}

async fn send_expire(
    js: &jetstream::Context,
    tenant: &str,
    device: &str,
    revision: u64,
    silent_ms: u64,
) -> Result<(), String> {
    let id = format!(
        "presence:{}:{revision}",
        resource::state_key(tenant, device)
    );
    let command = serde_json::value::to_raw_value(&Command::Expire { silent_ms })
        .map_err(|e| e.to_string())?;
    let envelope = crate::outgoing::envelope(
        Domain::Device,
        tenant,
        device,
        &id,
        crate::clock::now_ms(),
        command,
    );
    crate::outgoing::publish_command(js, &envelope)
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}
