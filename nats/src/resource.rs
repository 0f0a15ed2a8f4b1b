//! Names of every stream, consumer, priority group and KV bucket, built here and nowhere else.
//!
//! | name | kind | holds |
//! |---|---|---|
//! | `TW_IN_{DOMAIN}` | stream | accepted commands of one domain, partitioned, deduplicated by `Nats-Msg-Id` |
//! | `{domain}-p{n}` | durable pull consumer on `TW_IN_{DOMAIN}` | partition `n`, one pinned worker at a time |
//! | `TW_RECORDS` | stream | records on their way to SQL |
//! | `TW_PARKED` | stream | commands a handler could not apply, with why (limits retention: a max age and a byte bound) |
//! | `recorder` | durable pull consumer on `TW_RECORDS` | what the SQL writer has stored |
//! | `collab-webhook` | durable pull consumer on `TW_RECORDS` | finalized orders posted to the webhook |
//! | `tw_state_{domain}` | KV bucket | per-key state, key `{tenant}.{key}`; keys may carry a TTL |
//! | `tw_parts_{domain}` | KV bucket | parts of keys' states kept apart (a POS order's body), key `{tenant}.{key}.{part}`, expiring; only for [`PARTS_DOMAINS`] |
//! | `tw_workers` | KV bucket | live handler workers, key `{domain}.{worker}`, value `{"worker", "pid", "probe"}` (`probe`: the inbox its process answers liveness probes on), expiring (limit markers) |
//! | `tw_device_presence` | KV bucket | live device connections, key `{tenant}.{deviceId}`, expiring (limit markers) |
//! | `tw_device_tags` | KV bucket | the RFID tag directory (copied from SQL `device_tags`), key `{tenant}.{tagId}` |
//! | `tw_device_settings` | KV bucket | each tenant's device settings (`PUT /api/devices/settings`), key `{tenant}` |
//! | `tw_edges` | KV bucket | live edges, key `{edge}`, value [`EdgePresence`](tablewire_schemas::presence::EdgePresence) (sockets per endpoint), expiring; read by `tablewire status` |

use crate::token::encode;
use tablewire_schemas::Domain;

/// The input stream of a domain.
pub fn input_stream(domain: Domain) -> String {
    format!("TW_IN_{}", domain.as_str().to_ascii_uppercase())
}

/// The durable consumer of one partition of a domain's input stream.
pub fn partition_consumer(domain: Domain, partition: u16) -> String {
    format!("{domain}-p{partition}")
}

/// The priority group handler workers pull partition consumers with.
pub const WORKER_GROUP: &str = "workers";

/// The stream of records waiting for the SQL writer.
pub const RECORDS_STREAM: &str = "TW_RECORDS";

/// The stream of parked commands: those a handler met and could never apply (an unreadable
/// envelope, a state that no longer reads, a domain that panics on them, a write too big for
/// NATS), set aside with their reason instead of being retried forever. Kept for the
/// topology's `parked_max_age`, at most `parked_max_bytes` (the oldest go first).
pub const PARKED_STREAM: &str = "TW_PARKED";

/// The durable consumer the SQL writer reads records with.
pub const RECORDS_CONSUMER: &str = "recorder";

/// The durable consumer on `TW_RECORDS` that posts finalized collaborative orders to the
/// configured webhook (created by handlers only when a webhook is configured).
pub const COLLAB_WEBHOOK_CONSUMER: &str = "collab-webhook";

/// The KV bucket holding the state of each key of a domain.
pub fn state_bucket(domain: Domain) -> String {
    format!("tw_state_{domain}")
}

/// The key of one domain key's state inside [`state_bucket`].
pub fn state_key(tenant: &str, key: &str) -> String {
    format!("{}.{}", encode(tenant), encode(key))
}

/// Domains whose states keep parts apart, in [`parts_bucket`].
pub const PARTS_DOMAINS: &[Domain] = &[Domain::Pos];

/// The KV bucket holding parts of a domain's states kept apart from them (written once, read
/// when a state is), so that the state's bucket holds only states and its old blocks free up
/// whole.
pub fn parts_bucket(domain: Domain) -> String {
    format!("tw_parts_{domain}")
}

/// The key of a part of a key's state inside [`parts_bucket`].
pub fn part_key(state_key: &str, part: &str) -> String {
    format!("{state_key}.{}", encode(part))
}

/// The KV bucket where live handler workers announce themselves.
pub const WORKERS_BUCKET: &str = "tw_workers";

/// The key of one worker in [`WORKERS_BUCKET`].
pub fn worker_key(domain: Domain, worker: &str) -> String {
    format!("{domain}.{}", encode(worker))
}

/// The keys of every worker of `domain` in [`WORKERS_BUCKET`] (a filter for a watch).
pub fn worker_keys(domain: Domain) -> String {
    format!("{domain}.*")
}

/// The worker a key of [`WORKERS_BUCKET`] belongs to, if it is one of `domain`'s.
pub fn worker_of_key(domain: Domain, key: &str) -> Option<String> {
    let token = key.strip_prefix(domain.as_str())?.strip_prefix('.')?;
    crate::token::decode(token).map(|worker| worker.into_owned())
}

/// The KV bucket edges look RFID tags up in: a copy of SQL `device_tags` kept by the records
/// writer, so a scan finds its user without the edge or the pure device domain touching SQL.
pub const DEVICE_TAGS_BUCKET: &str = "tw_device_tags";

/// The key of one tag in [`DEVICE_TAGS_BUCKET`].
pub fn device_tag_key(tenant: &str, tag: &str) -> String {
    format!("{}.{}", encode(tenant), encode(tag))
}

/// The KV bucket where edges refresh the presence of the devices they hold. Entries expire
/// after the topology's `device_presence_ttl`; the expiry marker tells a handler the device
/// went silent (its edge may have died).
pub const DEVICE_PRESENCE_BUCKET: &str = "tw_device_presence";

/// The KV bucket holding each tenant's device settings (the scan interval of devices that set
/// none), written by `PUT /api/devices/settings` and watched by every edge.
pub const DEVICE_SETTINGS_BUCKET: &str = "tw_device_settings";

/// The key of one tenant's settings in [`DEVICE_SETTINGS_BUCKET`].
pub fn device_settings_key(tenant: &str) -> String {
    encode(tenant).into_owned()
}

/// The KV bucket where every edge refreshes its presence and socket counts, for
/// `tablewire status`. Entries expire after [`EDGE_PRESENCE_TTL`] unless refreshed, so an
/// edge that died leaves the list by itself.
pub const EDGES_BUCKET: &str = "tw_edges";

/// How often an edge refreshes its entry in [`EDGES_BUCKET`].
pub const EDGE_PRESENCE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// How long an edge's entry in [`EDGES_BUCKET`] lasts without a refresh (three refreshes).
pub const EDGE_PRESENCE_TTL: std::time::Duration = std::time::Duration::from_secs(15);

/// The key of one edge in [`EDGES_BUCKET`].
pub fn edge_key(edge: &str) -> String {
    encode(edge).into_owned()
}

/// The KV stream behind a bucket (what `$JS.API.STREAM.INFO` knows it by).
pub fn bucket_stream(bucket: &str) -> String {
    format!("KV_{bucket}")
}

/// Stream metadata key recording how many partitions an input stream has.
pub const PARTITIONS_METADATA: &str = "tablewire.partitions";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_table() {
        assert_eq!(input_stream(Domain::Display), "TW_IN_DISPLAY");
        assert_eq!(partition_consumer(Domain::Display, 3), "display-p3");
        assert_eq!(state_bucket(Domain::Display), "tw_state_display");
        assert_eq!(state_key("_", "abc"), "_.abc");
        assert_eq!(worker_key(Domain::Display, "w 1"), "display.=772031");
        assert_eq!(worker_keys(Domain::Display), "display.*");
        assert_eq!(
            worker_of_key(Domain::Display, &worker_key(Domain::Display, "w 1")).as_deref(),
            Some("w 1")
        );
        assert_eq!(worker_of_key(Domain::Display, "displayx.w1"), None);
        assert_eq!(worker_of_key(Domain::Pos, "display.w1"), None);
        assert_eq!(PARKED_STREAM, "TW_PARKED");
        assert_eq!(edge_key("e 1"), "=652031");
        assert_eq!(bucket_stream(EDGES_BUCKET), "KV_tw_edges");
    }
}
