//! Gauges of what [`crate::status`] reads from NATS, refreshed every [`REFRESH`] and served on
//! `/metrics` of `tablewire handler --metrics-listen` and `tablewire dev`: each partition's
//! backlog, the age of each domain's oldest unacknowledged command, parked commands per domain,
//! the records backlog, live workers and edges. Every handler exports the same cluster-wide
//! values (take `max` across instances).

use crate::status;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tablewire_schemas::Domain;
use tokio::sync::watch;

/// How often the gauges are read again.
pub const REFRESH: Duration = Duration::from_secs(15);

type Labels = Vec<(&'static str, String)>;

/// The gauges, registered under `tablewire_…`.
#[derive(Clone, Default)]
pub struct BacklogMetrics {
    pending: Family<Labels, Gauge>,
    unacknowledged: Family<Labels, Gauge>,
    redelivered: Family<Labels, Gauge>,
    oldest: Family<Labels, Gauge<f64, AtomicU64>>,
    parked: Family<Labels, Gauge>,
    records_pending: Family<Labels, Gauge>,
    workers: Family<Labels, Gauge>,
    edges: Gauge,
    edge_sockets: Gauge,
}

impl BacklogMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = BacklogMetrics::default();
        let r = registry.sub_registry_with_prefix("tablewire");
        r.register(
            "backlog_pending",
            "Commands stored and not yet delivered, by domain and partition",
            m.pending.clone(),
        );
        r.register(
            "backlog_unacknowledged",
            "Commands delivered and not yet acknowledged, by domain and partition",
            m.unacknowledged.clone(),
        );
        r.register(
            "backlog_redelivered",
            "Commands delivered more than once and not yet acknowledged, by domain and partition",
            m.redelivered.clone(),
        );
        r.register(
            "backlog_oldest_unacknowledged_seconds",
            "Age of the oldest command not yet acknowledged, by domain (0: none)",
            m.oldest.clone(),
        );
        r.register(
            "parked_commands",
            "Commands in TW_PARKED, by domain",
            m.parked.clone(),
        );
        r.register(
            "records_pending",
            "Records not yet written (stored or unacknowledged), by consumer",
            m.records_pending.clone(),
        );
        r.register(
            "workers_alive",
            "Handler workers announced and answering probes, by domain",
            m.workers.clone(),
        );
        r.register("edges", "Edges announced in tw_edges", m.edges.clone());
        r.register(
            "edge_sockets",
            "WebSocket connections of every announced edge",
            m.edge_sockets.clone(),
        );
        m
    }

    /// Sets every gauge from a status report.
    pub fn set(&self, report: &status::Report) {
        for d in &report.domains {
            let domain = vec![("domain", d.domain.clone())];
            for p in &d.partitions {
                let labels = vec![
                    ("domain", d.domain.clone()),
                    ("partition", p.partition.to_string()),
                ];
                self.pending
                    .get_or_create(&labels)
                    .set(p.backlog.pending as i64);
                self.unacknowledged
                    .get_or_create(&labels)
                    .set(p.backlog.unacknowledged as i64);
                self.redelivered
                    .get_or_create(&labels)
                    .set(p.backlog.redelivered as i64);
            }
            self.oldest
                .get_or_create(&domain)
                .set(d.oldest_unacknowledged_secs.unwrap_or(0.0));
            self.parked
                .get_or_create(&domain)
                .set(d.parked.total as i64);
            let alive = d.workers.iter().filter(|w| w.alive != Some(false)).count();
            self.workers.get_or_create(&domain).set(alive as i64);
        }
        if let Some(records) = &report.records {
            for (name, b) in &records.consumers {
                self.records_pending
                    .get_or_create(&vec![("consumer", name.clone())])
                    .set((b.pending + b.unacknowledged) as i64);
            }
        }
        self.edges.set(report.edges.len() as i64);
        self.edge_sockets
            .set(report.edges.iter().map(|e| e.total_sockets as i64).sum());
    }

    /// Refreshes the gauges until `shutdown`.
    pub async fn run(self, client: async_nats::Client, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(REFRESH);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|stopped| *stopped) => return,
            }
            let report = status::gather(&client, Domain::ALL).await;
            self.set(&report);
        }
    }
}
