//! Prometheus metrics of the handler runtime and the SQL writer. Registered into the registry
//! the process serves on `/metrics` (the edge's in `tablewire dev`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels naming a domain.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DomainLabel {
    /// The domain.
    pub domain: String,
}

/// Labels naming a domain and an error code.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    /// The domain.
    pub domain: String,
    /// The catalogue name.
    pub code: String,
}

/// Labels naming a domain and why a command was parked.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ParkedLabels {
    /// The domain.
    pub domain: String,
    /// The reason (`runtime` names them: `envelope_unreadable`, `invalid_id`, …).
    pub reason: String,
}

/// Every handler metric.
#[derive(Clone)]
pub struct Metrics {
    /// Commands applied (state changed).
    pub applied: Family<DomainLabel, Counter>,
    /// Commands rejected, by code.
    pub rejected: Family<RejectionLabels, Counter>,
    /// Commands skipped because they were applied before (redeliveries).
    pub skipped: Family<DomainLabel, Counter>,
    /// State writes (one per key per batch).
    pub writes: Family<DomainLabel, Counter>,
    /// Compare-and-set writes that lost to another writer.
    pub conflicts: Family<DomainLabel, Counter>,
    /// Commands handed back to NATS to be delivered again later (NATS unreachable, a timeout,
    /// a key contended): each delivery that could not be applied yet.
    pub retries: Family<DomainLabel, Counter>,
    /// Commands parked: set aside in `TW_PARKED`, never applied (and record messages the SQL
    /// writer could never write, reason `record_unreadable`).
    pub parked: Family<ParkedLabels, Counter>,
    /// Keys whose batch passed a byte bound (state or write) and was applied command by
    /// command, refusing or cutting where needed.
    pub bounded_batches: Family<DomainLabel, Counter>,
    /// Partition workers restarted after a panic.
    pub partition_panics: Family<DomainLabel, Counter>,
    /// Batches processed from the stream instead of from delivery order.
    pub untrusted_batches: Family<DomainLabel, Counter>,
    /// Scans of a partition answered by a replica behind the batch, read again.
    pub lagging_scans: Family<DomainLabel, Counter>,
    /// Events fanned out.
    pub events: Family<DomainLabel, Counter>,
    /// Commands per batch.
    pub batch_size: Histogram,
    /// Time from the edge accepting a command to its state being written, seconds.
    pub apply_latency: Histogram,
    /// Partitions this process currently owns.
    pub partitions_owned: Family<DomainLabel, Gauge>,
    /// Records written to SQL.
    pub records_written: Counter,
    /// Failed attempts to write records (the database was unreachable).
    pub record_failures: Counter,
}

impl Metrics {
    /// Creates the metrics and registers them under `tablewire_handler_…`.
    pub fn new(registry: &mut Registry) -> Metrics {
        let metrics = Metrics {
            applied: Family::default(),
            rejected: Family::default(),
            skipped: Family::default(),
            writes: Family::default(),
            conflicts: Family::default(),
            retries: Family::default(),
            parked: Family::default(),
            bounded_batches: Family::default(),
            partition_panics: Family::default(),
            untrusted_batches: Family::default(),
            lagging_scans: Family::default(),
            events: Family::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            apply_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            partitions_owned: Family::default(),
            records_written: Counter::default(),
            record_failures: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("tablewire_handler");
        r.register("applied", "Commands applied", metrics.applied.clone());
        r.register(
            "rejected",
            "Commands rejected, by code",
            metrics.rejected.clone(),
        );
        r.register(
            "skipped",
            "Redelivered commands skipped",
            metrics.skipped.clone(),
        );
        r.register("state_writes", "State writes", metrics.writes.clone());
        r.register(
            "cas_conflicts",
            "State writes that lost a compare-and-set",
            metrics.conflicts.clone(),
        );
        r.register(
            "retries",
            "Deliveries handed back to be applied later (a transient failure)",
            metrics.retries.clone(),
        );
        r.register(
            "parked",
            "Commands parked in TW_PARKED, by reason",
            metrics.parked.clone(),
        );
        r.register(
            "bounded_batches",
            "Key batches applied command by command because a write passed a byte bound",
            metrics.bounded_batches.clone(),
        );
        r.register(
            "partition_panics",
            "Partition workers restarted after a panic",
            metrics.partition_panics.clone(),
        );
        r.register(
            "untrusted_batches",
            "Batches rebuilt from the stream after a redelivery or takeover",
            metrics.untrusted_batches.clone(),
        );
        r.register(
            "lagging_scans",
            "Partition scans answered by a replica behind the batch, read again",
            metrics.lagging_scans.clone(),
        );
        r.register("events", "Events fanned out", metrics.events.clone());
        r.register(
            "batch_size",
            "Commands per batch",
            metrics.batch_size.clone(),
        );
        r.register(
            "apply_latency_seconds",
            "From edge acceptance to state written",
            metrics.apply_latency.clone(),
        );
        r.register(
            "partitions_owned",
            "Partitions owned",
            metrics.partitions_owned.clone(),
        );
        r.register(
            "records_written",
            "Records written to SQL",
            metrics.records_written.clone(),
        );
        r.register(
            "record_failures",
            "Failed attempts to write records to SQL",
            metrics.record_failures.clone(),
        );
        metrics
    }

    pub(crate) fn domain(domain: tablewire_schemas::Domain) -> DomainLabel {
        DomainLabel {
            domain: domain.as_str().to_string(),
        }
    }
}
