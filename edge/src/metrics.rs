//! The edge's Prometheus metrics, served on `GET /metrics` with those of the handlers when
//! they share the process.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tablewire_schemas::ErrorCode;

/// Labels naming an endpoint.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    /// `display`, …
    pub endpoint: String,
}

/// Labels naming an error code.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The catalogue name.
    pub code: String,
}

/// Labels naming why a connection was refused.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `max_connections`, `max_connections_per_ip`, `connection_rate_per_ip`, or
    /// `no_headroom` (closed right after accept, unanswered).
    pub reason: String,
}

/// Labels of an HTTP response.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route, e.g. `/session/{id}/update`.
    pub route: String,
    /// The status code.
    pub status: u16,
}

/// Every edge metric.
#[derive(Clone)]
pub struct Metrics {
    /// Open WebSocket connections.
    pub connections: Family<EndpointLabel, Gauge>,
    /// WebSocket connections opened since start.
    pub connections_opened: Family<EndpointLabel, Counter>,
    /// Messages received from clients.
    pub messages_in: Family<EndpointLabel, Counter>,
    /// Frames written to clients.
    pub messages_out: Family<EndpointLabel, Counter>,
    /// Socket writes to WebSocket clients (several frames may share one).
    pub socket_writes: Counter,
    /// Time for JetStream to store a command, seconds.
    pub publish_latency: Histogram,
    /// Errors sent to clients, by code.
    pub errors: Family<CodeLabel, Counter>,
    /// HTTP responses by route and status.
    pub http: Family<HttpLabels, Counter>,
    /// Failed authentications.
    pub auth_failures: Counter,
    /// Reads a replica answered because the stream leader did not (an election).
    pub leader_read_fallbacks: Counter,
    /// Events received from NATS for local clients.
    pub fanout_events: Counter,
    /// Events dropped because a client already had them.
    pub fanout_duplicates: Counter,
    /// Device scans this edge answered `TOO_SOON` itself (the handler had announced the
    /// device's last accepted scan).
    pub device_scans_refused_early: Counter,
    /// Gaps in a key's events that made a client resync.
    pub fanout_gaps: Counter,
    /// Events-socket clients that connected again within a minute of their last connection.
    pub events_reconnects: Counter,
    /// Time to handle one message from an events-socket client, seconds.
    pub events_processing: Histogram,
    /// Connections refused by a connection limit, by reason.
    pub connections_refused: Family<ReasonLabel, Counter>,
    /// WebSocket connection tasks that panicked (closed with 1011, everything released).
    pub connection_panics: Counter,
    /// HTTP requests whose body did not arrive within `--body-timeout-secs` (answered 408).
    pub body_timeouts: Counter,
}

impl Metrics {
    /// Creates the metrics and registers them under `tablewire_edge_…`.
    pub fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            connections: Family::default(),
            connections_opened: Family::default(),
            messages_in: Family::default(),
            messages_out: Family::default(),
            socket_writes: Counter::default(),
            publish_latency: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            errors: Family::default(),
            http: Family::default(),
            auth_failures: Counter::default(),
            leader_read_fallbacks: Counter::default(),
            fanout_events: Counter::default(),
            fanout_duplicates: Counter::default(),
            device_scans_refused_early: Counter::default(),
            fanout_gaps: Counter::default(),
            events_reconnects: Counter::default(),
            events_processing: Histogram::new(exponential_buckets(0.000_01, 2.0, 16)),
            connections_refused: Family::default(),
            connection_panics: Counter::default(),
            body_timeouts: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("tablewire_edge");
        r.register(
            "connections",
            "Open WebSocket connections",
            m.connections.clone(),
        );
        r.register(
            "connections_opened",
            "WebSocket connections opened",
            m.connections_opened.clone(),
        );
        r.register(
            "messages_in",
            "Messages received from clients",
            m.messages_in.clone(),
        );
        r.register(
            "messages_out",
            "Frames written to clients",
            m.messages_out.clone(),
        );
        r.register(
            "socket_writes",
            "Socket writes to WebSocket clients (several frames may share one)",
            m.socket_writes.clone(),
        );
        r.register(
            "publish_latency_seconds",
            "Time for JetStream to store a command",
            m.publish_latency.clone(),
        );
        r.register(
            "errors",
            "Errors sent to clients, by code",
            m.errors.clone(),
        );
        r.register(
            "http_responses",
            "HTTP responses by route and status",
            m.http.clone(),
        );
        r.register(
            "auth_failures",
            "Failed authentications",
            m.auth_failures.clone(),
        );
        r.register(
            "leader_read_fallbacks",
            "State reads a replica answered because the stream leader did not",
            m.leader_read_fallbacks.clone(),
        );
        r.register(
            "fanout_events",
            "Events received for local clients",
            m.fanout_events.clone(),
        );
        r.register(
            "fanout_duplicates",
            "Repeated events dropped",
            m.fanout_duplicates.clone(),
        );
        r.register(
            "device_scans_refused_early",
            "Device scans answered TOO_SOON by the edge itself",
            m.device_scans_refused_early.clone(),
        );
        r.register(
            "fanout_gaps",
            "Event gaps that made a client resync",
            m.fanout_gaps.clone(),
        );
        r.register(
            "events_reconnects",
            "Events-socket clients back within a minute of their last connection",
            m.events_reconnects.clone(),
        );
        r.register(
            "events_processing_seconds",
            "Time to handle one message from an events-socket client",
            m.events_processing.clone(),
        );
        r.register(
            "connections_refused",
            "Connections refused by a connection limit, by reason",
            m.connections_refused.clone(),
        );
        r.register(
            "connection_panics",
            "WebSocket connection tasks that panicked (closed with 1011)",
            m.connection_panics.clone(),
        );
        r.register(
            "body_timeouts",
            "HTTP request bodies that did not arrive in time (answered 408)",
            m.body_timeouts.clone(),
        );
        m
    }

    /// Counts a refused connection.
    pub fn refused(&self, reason: &str) {
        self.connections_refused
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts an error sent to a client.
    pub fn error(&self, code: ErrorCode) {
        self.errors
            .get_or_create(&CodeLabel {
                code: code.name().to_string(),
            })
            .inc();
    }

    pub(crate) fn endpoint(endpoint: &str) -> EndpointLabel {
        EndpointLabel {
            endpoint: endpoint.to_string(),
        }
    }
}
