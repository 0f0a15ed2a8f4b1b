//! Creates or updates every stream, consumer and KV bucket tablewire needs. Idempotent: run by
//! `tablewire provision`, by `tablewire dev` at start, and by the tests and benchmarks.

use crate::{resource, subject};
use async_nats::jetstream::{self, consumer, kv, stream};
use std::collections::HashMap;
use std::time::Duration;
use tablewire_schemas::Domain;

/// Partitions of a new input stream when none are asked for. On this project's 2-core
/// benchmark machine 4 partitions gave collab a p99 at 10,000 changes/s of 9.2–9.8 ms against
/// 12.5–13.4 with 16, and devices at 5,000 scans/s 28.9–29.8 against 37.3–39.4 ms (fewer
/// consumers for nats-server to serve, larger batches), with the same throughput. It is also
/// the most handler processes one domain can use at once: provision more for a larger fleet.
pub const DEFAULT_PARTITIONS: u16 = 4;

/// The shape of the NATS resources. `Default` is what `tablewire dev` uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// Partitions per input stream: how many workers can apply one domain's commands at once.
    /// `None` keeps the count a stream already has ([`DEFAULT_PARTITIONS`] for a new one), so
    /// provisioning again with the defaults never re-partitions. Changing it needs drained
    /// input streams.
    pub partitions: Option<u16>,
    /// Replicas of every stream and bucket (3 in a 3-node cluster).
    pub replicas: usize,
    /// How long a delivered command may stay unacknowledged before it is delivered again.
    pub ack_wait: Duration,
    /// How long a worker keeps a partition after it stops pulling, unless the worker taking
    /// it over clears the pin first (as it does when the holder is gone).
    pub pin_timeout: Duration,
    /// How long `Nats-Msg-Id` is remembered to drop repeated commands.
    pub duplicate_window: Duration,
    /// Most bytes an input stream or the records stream may hold while its consumers lag;
    /// past it edges refuse new commands (with a retryable error) rather than lose any.
    pub max_backlog_bytes: i64,
    /// How long a worker's presence lasts without being refreshed (at least 1 s): how long a
    /// worker that hangs, or is cut off without its connection closing, keeps its partitions.
    /// One that crashes is found gone by a probe within half a second, whatever this says.
    pub worker_ttl: Duration,
    /// How long a device's presence lasts without a heartbeat or scan: two device heartbeat
    /// intervals.
    pub device_presence_ttl: Duration,
    /// Partition consumers acknowledge once per applied batch (`AckPolicy::All`) instead of
    /// once per command: measured 5–17 % more commands/s, but a key that can never be applied
    /// (a state that no longer reads) then holds back its whole partition, where per-command
    /// acknowledgements hold back only that key. Applies to consumers created from now on
    /// (nats-server does not change an existing consumer's ack policy).
    pub ack_by_batch: bool,
    /// How long the parked stream (`TW_PARKED`) keeps a command a handler could not apply.
    pub parked_max_age: Duration,
    /// Most bytes the parked stream holds; past it the oldest parked commands are dropped (a
    /// flood of bad commands never stops handlers from parking the next one).
    pub parked_max_bytes: i64,
}

impl Default for Topology {
    /// The defaults of `tablewire provision`'s flags ([`crate::topology::TopologyArgs`]).
    fn default() -> Self {
        crate::topology::TopologyArgs::default().topology()
    }
}

/// What can go wrong while provisioning.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// A JetStream request failed.
    #[error("{what}: {source}")]
    JetStream {
        /// Which resource.
        what: String,
        /// The error.
        source: async_nats::Error,
    },
    /// The partition count would change while commands are still pending.
    #[error(
        "{stream} has {current} partitions and {pending} commands still pending; \
         drain it (stop edges, let handlers finish) before changing to {wanted}"
    )]
    PartitionsBusy {
        /// The stream.
        stream: String,
        /// Its partition count now.
        current: u16,
        /// The count asked for.
        wanted: u16,
        /// Commands not yet acknowledged.
        pending: u64,
    },
}

/// How long the marker nats-server leaves where a state key expired stays in the bucket.
pub const STATE_EXPIRY_MARKER_TTL: Duration = Duration::from_secs(1);

fn js_err(what: impl Into<String>) -> impl FnOnce(async_nats::Error) -> ProvisionError {
    let what = what.into();
    move |source| ProvisionError::JetStream { what, source }
}

/// How long a domain's parts bucket keeps a part after its write: POS order bodies for
/// [`tablewire_schemas::pos::ORDER_BODY_TTL_MS`].
fn parts_max_age(domain: Domain) -> Duration {
    match domain {
        Domain::Pos => Duration::from_millis(tablewire_schemas::pos::ORDER_BODY_TTL_MS as u64),
        _ => Duration::ZERO,
    }
}

/// Creates or updates everything for `domains`: one input stream with its partition consumers
/// and one state bucket per domain, plus the records stream, the parked stream, the workers
/// bucket and the device tag directory.
pub async fn provision(
    js: &jetstream::Context,
    domains: &[Domain],
    topology: &Topology,
) -> Result<(), ProvisionError> {
    for &domain in domains {
        provision_domain(js, domain, topology).await?;
    }
    provision_records(js, topology).await?;
    provision_parked(js, topology).await?;
    // Workers watch the bucket: an entry that expires leaves a marker, so they see it go.
    let worker_ttl = topology.worker_ttl.max(Duration::from_secs(1));
    js.create_or_update_key_value(kv::Config {
        bucket: resource::WORKERS_BUCKET.to_string(),
        description: "live handler workers; expiry markers announce silent ones".to_string(),
        history: 1,
        max_age: worker_ttl,
        limit_markers: Some(worker_ttl),
        num_replicas: topology.replicas,
        storage: stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .map_err(|e| js_err(resource::WORKERS_BUCKET)(e.into()))?;
    js.create_or_update_key_value(kv::Config {
        bucket: resource::DEVICE_TAGS_BUCKET.to_string(),
        description: "RFID tag directory, copied from SQL device_tags".to_string(),
        history: 1,
        num_replicas: topology.replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| js_err(resource::DEVICE_TAGS_BUCKET)(e.into()))?;
    js.create_or_update_key_value(kv::Config {
        bucket: resource::DEVICE_SETTINGS_BUCKET.to_string(),
        description: "each tenant's device settings, watched by every edge".to_string(),
        history: 1,
        num_replicas: topology.replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| js_err(resource::DEVICE_SETTINGS_BUCKET)(e.into()))?;
    let presence_ttl = topology.device_presence_ttl.max(Duration::from_secs(1));
    js.create_or_update_key_value(kv::Config {
        bucket: resource::DEVICE_PRESENCE_BUCKET.to_string(),
        description: "live device connections; expiry markers announce silent devices".to_string(),
        history: 1,
        max_age: presence_ttl,
        limit_markers: Some(presence_ttl),
        num_replicas: topology.replicas,
        storage: stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .map_err(|e| js_err(resource::DEVICE_PRESENCE_BUCKET)(e.into()))?;
    js.create_or_update_key_value(kv::Config {
        bucket: resource::EDGES_BUCKET.to_string(),
        description: "live edges and their socket counts, for `tablewire status`".to_string(),
        history: 1,
        max_age: resource::EDGE_PRESENCE_TTL,
        num_replicas: topology.replicas,
        storage: stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .map_err(|e| js_err(resource::EDGES_BUCKET)(e.into()))?;
    Ok(())
}

async fn provision_domain(
    js: &jetstream::Context,
    domain: Domain,
    topology: &Topology,
) -> Result<(), ProvisionError> {
    let name = resource::input_stream(domain);
    let current = current_partitions(js, &name).await;
    let partitions = topology
        .partitions
        .or(current)
        .unwrap_or(DEFAULT_PARTITIONS)
        .max(1);
    if let Some(current) = current.filter(|&c| c != partitions) {
        let pending = pending_commands(js, domain, &name, current).await?;
        if pending > 0 {
            return Err(ProvisionError::PartitionsBusy {
                stream: name,
                current,
                wanted: partitions,
                pending,
            });
        }
    }

    let config = stream::Config {
        name: name.clone(),
        description: Some(format!("accepted {domain} commands, partitioned by key")),
        subjects: vec![subject::input_filter(domain)],
        subject_transform: Some(stream::SubjectTransform {
            source: subject::input_filter(domain),
            destination: subject::input_partitioned_template(domain, partitions),
        }),
        retention: stream::RetentionPolicy::Interest,
        discard: stream::DiscardPolicy::New,
        max_bytes: topology.max_backlog_bytes,
        storage: stream::StorageType::File,
        num_replicas: topology.replicas,
        duplicate_window: topology.duplicate_window,
        allow_direct: true,
        metadata: HashMap::from([(
            resource::PARTITIONS_METADATA.to_string(),
            partitions.to_string(),
        )]),
        ..Default::default()
    };
    js.create_or_update_stream(config)
        .await
        .map_err(|e| js_err(&name)(e.into()))?;

    let stream = js
        .get_stream(&name)
        .await
        .map_err(|e| js_err(&name)(e.into()))?;
    for partition in 0..partitions {
        let durable = resource::partition_consumer(domain, partition);
        let config = consumer::pull::Config {
            durable_name: Some(durable.clone()),
            description: Some(format!("{domain} partition {partition}")),
            filter_subject: subject::input_partition_filter(domain, partition),
            ack_policy: if topology.ack_by_batch {
                consumer::AckPolicy::All
            } else {
                consumer::AckPolicy::Explicit
            },
            ack_wait: topology.ack_wait,
            max_deliver: -1,
            max_ack_pending: 10_000,
            priority_policy: consumer::PriorityPolicy::PinnedClient,
            priority_groups: vec![resource::WORKER_GROUP.to_string()],
            priority_timeout: topology.pin_timeout,
            num_replicas: topology.replicas,
            ..Default::default()
        };
        create_or_update_consumer(&stream, config, &durable).await?;
    }
    // Consumers of partitions that no longer exist (the count went down on a drained stream).
    if let Some(current) = current {
        for partition in partitions..current {
            let durable = resource::partition_consumer(domain, partition);
            stream
                .delete_consumer(&durable)
                .await
                .map_err(|e| js_err(&durable)(e.into()))?;
        }
    }

    let bucket = resource::state_bucket(domain);
    js.create_or_update_key_value(kv::Config {
        bucket: bucket.clone(),
        description: format!("state of each {domain} key"),
        history: 1,
        num_replicas: topology.replicas,
        storage: stream::StorageType::File,
        // Per-message TTL, for keys whose domain lets them expire (pos idempotency claims);
        // nats-server allows no TTL without also placing an expiry marker, kept this long.
        limit_markers: Some(STATE_EXPIRY_MARKER_TTL),
        ..Default::default()
    })
    .await
    .map_err(|e| js_err(&bucket)(e.into()))?;
    if resource::PARTS_DOMAINS.contains(&domain) {
        let bucket = resource::parts_bucket(domain);
        js.create_or_update_key_value(kv::Config {
            bucket: bucket.clone(),
            description: format!("parts of {domain} states, kept apart from them"),
            history: 1,
            max_age: parts_max_age(domain),
            num_replicas: topology.replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| js_err(&bucket)(e.into()))?;
    }
    Ok(())
}

async fn create_or_update_consumer(
    stream: &jetstream::stream::Stream,
    config: consumer::pull::Config,
    durable: &str,
) -> Result<(), ProvisionError> {
    match stream.consumer_info(durable).await {
        Ok(info) => {
            // The server refuses to change a consumer's ack policy; one provisioned with
            // another keeps it (the handlers read it and acknowledge accordingly).
            let config = consumer::pull::Config {
                ack_policy: info.config.ack_policy,
                ..config
            };
            stream
                .update_consumer(config)
                .await
                .map_err(|e| js_err(durable)(e.into()))?;
        }
        Err(_) => {
            stream
                .create_consumer(config)
                .await
                .map_err(|e| js_err(durable)(e.into()))?;
        }
    }
    Ok(())
}

async fn provision_records(
    js: &jetstream::Context,
    topology: &Topology,
) -> Result<(), ProvisionError> {
    let name = resource::RECORDS_STREAM;
    js.create_or_update_stream(stream::Config {
        name: name.to_string(),
        description: Some("records waiting to be written to SQL".to_string()),
        subjects: vec![subject::records_filter()],
        retention: stream::RetentionPolicy::Interest,
        discard: stream::DiscardPolicy::New,
        max_bytes: topology.max_backlog_bytes,
        storage: stream::StorageType::File,
        num_replicas: topology.replicas,
        duplicate_window: topology.duplicate_window,
        ..Default::default()
    })
    .await
    .map_err(|e| js_err(name)(e.into()))?;
    let stream = js
        .get_stream(name)
        .await
        .map_err(|e| js_err(name)(e.into()))?;
    let config = consumer::pull::Config {
        durable_name: Some(resource::RECORDS_CONSUMER.to_string()),
        description: Some("the SQL writer".to_string()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: topology.ack_wait,
        max_deliver: -1,
        max_ack_pending: 10_000,
        num_replicas: topology.replicas,
        ..Default::default()
    };
    create_or_update_consumer(&stream, config, resource::RECORDS_CONSUMER).await
}

/// The dead-letter stream: limits retention (nobody consumes it; an operator reads it), bounded
/// by age and bytes, discarding the oldest, deduplicated so that a command parked again after a
/// crash is stored once.
async fn provision_parked(
    js: &jetstream::Context,
    topology: &Topology,
) -> Result<(), ProvisionError> {
    let name = resource::PARKED_STREAM;
    js.create_or_update_stream(stream::Config {
        name: name.to_string(),
        description: Some("commands handlers could not apply, with their reason".to_string()),
        subjects: vec![subject::parked_filter()],
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        max_age: topology.parked_max_age,
        max_bytes: topology.parked_max_bytes,
        storage: stream::StorageType::File,
        num_replicas: topology.replicas,
        duplicate_window: topology.duplicate_window.min(topology.parked_max_age),
        ..Default::default()
    })
    .await
    .map_err(|e| js_err(name)(e.into()))?;
    Ok(())
}

/// The partition count an input stream was provisioned with, if it exists.
pub async fn current_partitions(js: &jetstream::Context, stream: &str) -> Option<u16> {
    let mut stream = js.get_stream(stream).await.ok()?;
    let info = stream.info().await.ok()?;
    info.config
        .metadata
        .get(resource::PARTITIONS_METADATA)
        .and_then(|p| p.parse().ok())
}

async fn pending_commands(
    js: &jetstream::Context,
    domain: Domain,
    name: &str,
    partitions: u16,
) -> Result<u64, ProvisionError> {
    let stream = js
        .get_stream(name)
        .await
        .map_err(|e| js_err(name)(e.into()))?;
    let mut pending = 0;
    for partition in 0..partitions {
        let durable = resource::partition_consumer(domain, partition);
        if let Ok(info) = stream.consumer_info(&durable).await {
            pending += info.num_pending + info.num_ack_pending as u64;
        }
    }
    Ok(pending)
}

#[cfg(test)]
mod live_tests {
    use super::*;
    use crate::server::{NatsServer, ServerOptions};

    async fn setup() -> (NatsServer, jetstream::Context) {
        let server = NatsServer::start(ServerOptions::default())
            .await
            .expect("nats-server >= 2.11");
        let client = crate::connect(server.client_url(), "test")
            .await
            .expect("connect");
        (server, jetstream::new(client))
    }

    async fn consumers(js: &jetstream::Context, domain: Domain) -> usize {
        use futures::TryStreamExt;
        let stream = js
            .get_stream(resource::input_stream(domain))
            .await
            .expect("stream");
        let names: Vec<String> = stream.consumer_names().try_collect().await.expect("names");
        names.len()
    }

    #[tokio::test]
    async fn provisioning_twice_is_a_no_op() {
        let (_server, js) = setup().await;
        let topology = Topology {
            partitions: Some(4),
            ..Default::default()
        };
        provision(&js, &[Domain::Display], &topology)
            .await
            .expect("first");
        provision(&js, &[Domain::Display], &topology)
            .await
            .expect("again");
        assert_eq!(consumers(&js, Domain::Display).await, 4);
        assert_eq!(
            current_partitions(&js, &resource::input_stream(Domain::Display)).await,
            Some(4)
        );
        js.get_key_value(resource::state_bucket(Domain::Display))
            .await
            .expect("state bucket");
        js.get_key_value(resource::WORKERS_BUCKET)
            .await
            .expect("workers bucket");
        let mut parked = js
            .get_stream(resource::PARKED_STREAM)
            .await
            .expect("parked stream");
        let config = parked.info().await.expect("info").config.clone();
        assert_eq!(config.subjects, [crate::subject::parked_filter()]);
        assert_eq!(config.retention, stream::RetentionPolicy::Limits);
        assert_eq!(config.max_age, Topology::default().parked_max_age);
        assert_eq!(config.max_bytes, Topology::default().parked_max_bytes);
    }

    /// Handlers watch `tw_workers`: a worker whose entry expires (it hangs, or is cut off) must
    /// show up in the watch as gone, which needs the bucket's limit markers, also on a bucket
    /// provisioned before they were set.
    #[tokio::test]
    async fn an_expired_worker_entry_is_seen_by_watchers_also_in_an_older_bucket() {
        use futures::StreamExt;
        let (_server, js) = setup().await;
        let topology = Topology {
            worker_ttl: Duration::from_secs(1),
            ..Default::default()
        };
        // As provisioning made the bucket before: no markers.
        js.create_key_value(kv::Config {
            bucket: resource::WORKERS_BUCKET.to_string(),
            history: 1,
            max_age: Duration::from_secs(6),
            storage: stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .expect("old bucket");
        provision(&js, &[Domain::Display], &topology)
            .await
            .expect("provision");
        let mut bucket = js
            .get_stream(format!("KV_{}", resource::WORKERS_BUCKET))
            .await
            .expect("bucket stream");
        let config = bucket.info().await.expect("info").config.clone();
        assert_eq!(config.max_age, Duration::from_secs(1));
        assert_eq!(
            config.subject_delete_marker_ttl,
            Some(Duration::from_secs(1))
        );
        let workers = js
            .get_key_value(resource::WORKERS_BUCKET)
            .await
            .expect("bucket");
        let key = resource::worker_key(Domain::Display, "w1");
        workers.put(&key, "{}".into()).await.expect("put");
        let mut watch = workers
            .watch_with_history(resource::worker_keys(Domain::Display))
            .await
            .expect("watch");
        let seen = tokio::time::timeout(Duration::from_secs(30), async {
            let mut ops = Vec::new();
            while let Some(entry) = watch.next().await {
                let entry = entry.expect("entry");
                assert_eq!(entry.key, key);
                ops.push(entry.operation);
                if entry.operation != kv::Operation::Put {
                    return ops;
                }
            }
            ops
        })
        .await
        .expect("the expiry is seen");
        assert_eq!(seen, [kv::Operation::Put, kv::Operation::Purge]);
    }

    #[tokio::test]
    async fn consumers_acknowledge_per_command_unless_asked_and_keep_their_policy() {
        let (_server, js) = setup().await;
        let per_command = Topology {
            partitions: Some(2),
            ..Default::default()
        };
        let by_batch = Topology {
            ack_by_batch: true,
            ..per_command.clone()
        };
        let stream = || async {
            js.get_stream(resource::input_stream(Domain::Display))
                .await
                .expect("stream")
        };
        let policies = || async {
            let stream = stream().await;
            let mut policies = Vec::new();
            for partition in 0..2 {
                let durable = resource::partition_consumer(Domain::Display, partition);
                let info = stream.consumer_info(&durable).await.expect("consumer");
                policies.push(info.config.ack_policy);
            }
            policies
        };
        use consumer::AckPolicy::{All, Explicit};
        provision(&js, &[Domain::Display], &per_command)
            .await
            .expect("provision");
        assert_eq!(policies().await, [Explicit, Explicit]);
        // Asking for batches changes only consumers created from then on: nats-server refuses
        // to change an existing consumer's policy, so provisioning keeps it instead of failing.
        let first = resource::partition_consumer(Domain::Display, 0);
        stream()
            .await
            .delete_consumer(&first)
            .await
            .expect("delete");
        provision(&js, &[Domain::Display], &by_batch)
            .await
            .expect("provision by batch");
        assert_eq!(policies().await, [All, Explicit]);
        provision(&js, &[Domain::Display], &per_command)
            .await
            .expect("provision per command again");
        assert_eq!(policies().await, [All, Explicit]);
    }

    #[tokio::test]
    async fn the_default_partition_count_is_for_new_streams_only() {
        let (_server, js) = setup().await;
        let count = |domain| {
            let js = js.clone();
            async move { current_partitions(&js, &resource::input_stream(domain)).await }
        };
        provision(&js, &[Domain::Display], &Topology::default())
            .await
            .expect("new stream");
        assert_eq!(count(Domain::Display).await, Some(DEFAULT_PARTITIONS));
        let eight = Topology {
            partitions: Some(8),
            ..Default::default()
        };
        provision(&js, &[Domain::Pos], &eight).await.expect("eight");
        // Provisioning again with the defaults (an upgrade, `tablewire dev` again) leaves both.
        provision(&js, &[Domain::Display, Domain::Pos], &Topology::default())
            .await
            .expect("defaults again");
        assert_eq!(count(Domain::Display).await, Some(DEFAULT_PARTITIONS));
        assert_eq!(count(Domain::Pos).await, Some(8));
        assert_eq!(consumers(&js, Domain::Pos).await, 8);
    }

    #[tokio::test]
    async fn the_partition_count_changes_only_on_a_drained_stream() {
        let (_server, js) = setup().await;
        provision(
            &js,
            &[Domain::Display],
            &Topology {
                partitions: Some(4),
                ..Default::default()
            },
        )
        .await
        .expect("provision");
        provision(
            &js,
            &[Domain::Display],
            &Topology {
                partitions: Some(2),
                ..Default::default()
            },
        )
        .await
        .expect("drained: may change");
        assert_eq!(consumers(&js, Domain::Display).await, 2);
        js.publish(
            crate::subject::input(Domain::Display, "_", "s1"),
            "{}".into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
        let err = provision(
            &js,
            &[Domain::Display],
            &Topology {
                partitions: Some(8),
                ..Default::default()
            },
        )
        .await
        .expect_err("a pending command blocks the change");
        assert!(
            matches!(
                err,
                ProvisionError::PartitionsBusy {
                    current: 2,
                    wanted: 8,
                    pending: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            current_partitions(&js, &resource::input_stream(Domain::Display)).await,
            Some(2)
        );
    }
}
