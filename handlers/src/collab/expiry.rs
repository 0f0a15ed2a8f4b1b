//! The idle-room sweeper: every collab handler process scans `tw_state_collab` now and then and
//! sends an `expire` command to each room idle past the timeout. The room's handler decides (it
//! checks the idle time again, archives the room with a record and removes its KV entry), so
//! sweepers on several workers are harmless: their commands share a message id and the stream
//! stores one. A room's tenant and id come from its KV key, which the runtime wrote: the order's
//! `tenantId` is what the room shows, which in an open-tenant room is what its first join named.

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use std::time::Duration;
use tablewire_nats::{resource, token};
use tablewire_schemas::Domain;
use tablewire_schemas::collab::{Command, RoomState};
use tablewire_schemas::stored::Stored;
use tokio::sync::watch;
use tracing::{debug, warn};

/// How often rooms are scanned: a quarter of the idle timeout, between 100 ms and a minute.
pub fn interval(idle_timeout: Duration) -> Duration {
    (idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(60))
}

/// Sweeps until `shutdown`.
pub async fn run(
    client: async_nats::Client,
    idle_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let js = jetstream::new(client);
    let mut tick = tokio::time::interval(interval(idle_timeout));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        match js
            .get_key_value(resource::state_bucket(Domain::Collab))
            .await
        {
            Ok(bucket) => {
                if let Err(e) = sweep(&js, &bucket, idle_timeout).await {
                    debug!(error = %e, "collab sweep incomplete; next time");
                }
            }
            Err(e) => warn!(error = %e, "collab state bucket unavailable"),
        }
    }
}

/// The tenant and room of a key of `tw_state_collab` (`{tenant}.{room}`, each encoded).
fn room_of_key(key: &str) -> Option<(String, String)> {
    let (tenant, room) = key.split_once('.')?;
    Some((
        token::decode(tenant)?.into_owned(),
        token::decode(room)?.into_owned(),
    ))
}

/// One pass: an `expire` command for every room idle for at least the timeout.
pub async fn sweep(
    js: &jetstream::Context,
    bucket: &kv::Store,
    idle_timeout: Duration,
) -> Result<usize, String> {
    let now = crate::clock::now_ms();
    let idle_ms = idle_timeout.as_millis() as i64;
    let mut keys = bucket.keys().await.map_err(|e| e.to_string())?;
    let mut sent = 0;
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| e.to_string())?;
        let Some((tenant, room_id)) = room_of_key(&key) else {
            continue;
        };
        let Ok(Some(value)) = bucket.get(&key).await else {
            continue;
        };
        let Ok(stored) = serde_json::from_slice::<Stored<RoomState>>(&value) else {
            continue;
        };
        let room = &stored.state.order;
        if now - room.updated_at < idle_ms {
            continue;
        }
        let id = format!("collab:expire:{tenant}:{room_id}:{}", room.updated_at);
        let Ok(command) = serde_json::value::to_raw_value(&Command::Expire) else {
            continue;
        };
        let envelope =
            crate::outgoing::envelope(Domain::Collab, &tenant, &room_id, &id, now, command);
        crate::outgoing::publish_command(js, &envelope)
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        sent += 1;
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rooms_tenant_and_id_come_from_its_key() {
        for (tenant, room) in [("demo", "room_1"), ("r 1", "ünï.code")] {
            assert_eq!(
                room_of_key(&resource::state_key(tenant, room)),
                Some((tenant.to_string(), room.to_string()))
            );
        }
        assert_eq!(room_of_key("nodot"), None);
        assert_eq!(room_of_key("=zz.room"), None);
    }
}
