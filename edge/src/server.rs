//! The edge node: binds, accepts HTTP and WebSocket connections (optionally over TLS) within
//! the connection limits of [`admission`], runs the heartbeat, and drains on shutdown (stop
//! accepting, close WebSockets with 1001 so clients reconnect to another edge, finish HTTP
//! requests).

pub mod admission;

use crate::auth::Auth;
use crate::config::Config;
use crate::fanout::Fanout;
use crate::http::{self, Body};
use crate::inbox::Inbox;
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::ws::{self, Handler, Io, frame};
use admission::{Gate, Pass, Refusal, Verdict};
use async_nats::jetstream::{self, kv};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tablewire_nats::resource;
use tablewire_schemas::{Domain, ErrorBody, ErrorCode};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

/// Why an edge cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The TLS files cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The JWT public key cannot be used.
    #[error("auth: {0}")]
    Auth(String),
    /// NATS resources are missing or unreachable.
    #[error("NATS: {0} (is the server up and `tablewire provision` run?)")]
    Nats(String),
}

/// Everything the routes and connections of one edge share.
pub struct Shared {
    /// This edge's id.
    pub id: String,
    /// Its configuration.
    pub config: Config,
    /// The NATS client.
    pub client: async_nats::Client,
    /// Publishes commands.
    pub publisher: Publisher,
    /// Fan-out to local clients.
    pub fanout: Arc<Fanout>,
    /// Live WebSocket connections.
    pub conns: Arc<ws::Registry>,
    /// Replies for single senders.
    pub inbox: Arc<Inbox>,
    /// Credential checks.
    pub auth: Auth,
    /// Metrics.
    pub metrics: Metrics,
    /// The events feeds' fan-out (seed 004).
    pub events: crate::events::EventsEdge,
    /// The RFID tag directory (`tw_device_tags`).
    pub device_tags: kv::Store,
    /// Presence of the devices this edge holds (`tw_device_presence`).
    pub device_presence: kv::Store,
    /// Each tenant's device settings (`tw_device_settings`), watched.
    pub device_settings: Arc<crate::device_settings::DeviceSettings>,
    /// POS order bodies already read.
    pub order_bodies: crate::pos::OrderBodies,
    state: HashMap<Domain, kv::Store>,
    /// Parts buckets (`resource::PARTS_DOMAINS`).
    parts: HashMap<Domain, kv::Store>,
    draining: AtomicBool,
    registry: OnceLock<Arc<Registry>>,
}

/// Reads one entry of a state or parts bucket (`None` when it has none); a missing bucket or a
/// failed read is `UNAVAILABLE`.
async fn read_entry(
    bucket: Option<&kv::Store>,
    key: &str,
    metrics: &Metrics,
) -> Result<Option<bytes::Bytes>, tablewire_schemas::ErrorBody> {
    let bucket = bucket.ok_or_else(|| tablewire_schemas::ErrorBody::new(ErrorCode::Unavailable))?;
    crate::consistent_read::read(bucket, key, &metrics.leader_read_fallbacks)
        .await
        .map_err(|e| {
            warn!(error = %e, "state read failed");
            tablewire_schemas::ErrorBody::with_message(
                ErrorCode::Unavailable,
                "state store unavailable",
            )
        })
}

/// Opens one KV bucket per domain, named by `name`; a missing one stops the edge (run
/// `tablewire provision`).
async fn open_buckets(
    js: &jetstream::Context,
    domains: &[Domain],
    name: fn(Domain) -> String,
) -> Result<HashMap<Domain, kv::Store>, EdgeError> {
    let mut buckets = HashMap::new();
    for &domain in domains {
        let bucket = name(domain);
        let store = js
            .get_key_value(&bucket)
            .await
            .map_err(|e| EdgeError::Nats(format!("{bucket}: {e}")))?;
        buckets.insert(domain, store);
    }
    Ok(buckets)
}

impl Shared {
    /// The state bucket of a domain.
    pub fn state_bucket(&self, domain: Domain) -> Option<&kv::Store> {
        self.state.get(&domain)
    }

    /// Reads a key's stored state (raw JSON), `None` when it has none.
    pub async fn read_state(
        &self,
        domain: Domain,
        tenant: &str,
        key: &str,
    ) -> Result<Option<bytes::Bytes>, tablewire_schemas::ErrorBody> {
        read_entry(
            self.state_bucket(domain),
            &resource::state_key(tenant, key),
            &self.metrics,
        )
        .await
    }

    /// Reads a part of a key's state kept apart from it (`resource::part_key`), e.g. a POS
    /// order's body.
    pub async fn read_part(
        &self,
        domain: Domain,
        part_key: &str,
    ) -> Result<Option<bytes::Bytes>, tablewire_schemas::ErrorBody> {
        read_entry(self.parts.get(&domain), part_key, &self.metrics).await
    }

    /// Whether the edge is draining.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The metrics registry served on `/metrics`.
    pub fn registry(&self) -> Option<&Arc<Registry>> {
        self.registry.get()
    }

    /// Upgrades `request` to a WebSocket served by `handler`, or answers why not.
    pub fn upgrade<H: Handler>(
        self: &Arc<Self>,
        request: &mut Request<Incoming>,
        endpoint: &'static str,
        handler: H,
    ) -> Response<Body> {
        if self.draining() {
            return http::error_code(ErrorCode::Draining);
        }
        if !fastwebsockets::upgrade::is_upgrade_request(request) {
            return http::error_code(ErrorCode::UpgradeRequired);
        }
        let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut *request) {
            Ok(pair) => pair,
            Err(e) => {
                return http::error(tablewire_schemas::ErrorBody::with_message(
                    ErrorCode::ProtocolError,
                    e.to_string(),
                ));
            }
        };
        let label = Metrics::endpoint(endpoint);
        let counters = ws::Counters {
            messages_in: self.metrics.messages_in.get_or_create(&label).clone(),
            messages_out: self.metrics.messages_out.get_or_create(&label).clone(),
            socket_writes: self.metrics.socket_writes.clone(),
        };
        let conn = self
            .conns
            .open(endpoint, self.config.max_queued_bytes, counters);
        let lease = ws::Lease::new(self.conns.clone(), conn, handler);
        // The connection's admission (its count against the connection caps) lasts as long as
        // the socket, not the HTTP exchange that upgraded it.
        let admitted = request.extensions().get::<Arc<Pass>>().cloned();
        let shared = self.clone();
        tokio::spawn(async move {
            let _admitted = admitted;
            let upgraded = match upgrade.await {
                Ok(ws) => ws.into_inner().into_inner(),
                Err(e) => {
                    debug!(error = %e, "upgrade did not complete");
                    return;
                }
            };
            let Ok(parts) = upgraded.downcast::<TokioIo<Io>>() else {
                warn!("upgraded connection of an unexpected type");
                return;
            };
            shared
                .metrics
                .connections_opened
                .get_or_create(&label)
                .inc();
            let gauge = shared.metrics.connections.get_or_create(&label).clone();
            let served = lease
                .serve(
                    parts.io.into_inner(),
                    parts.read_buf,
                    shared.config.max_message_bytes,
                    &gauge,
                )
                .await;
            if served.panicked {
                warn!(endpoint, "a connection task panicked; closed with 1011");
                shared.metrics.connection_panics.inc();
                shared.metrics.error(ErrorCode::Internal);
            }
            if let Some(code) = served.protocol_error {
                shared.metrics.error(match code {
                    frame::close::TOO_BIG => ErrorCode::MessageTooBig,
                    frame::close::INVALID_PAYLOAD => ErrorCode::InvalidUtf8,
                    _ => ErrorCode::ProtocolError,
                });
            }
        });
        let (parts, body) = response.into_parts();
        Response::from_parts(parts, http_body_util::BodyExt::boxed(body))
    }
}

/// A bound edge, ready to [`run`](Edge::run).
pub struct Edge {
    shared: Arc<Shared>,
    gate: Arc<Gate>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    inbox_task: tokio::task::JoinHandle<()>,
    reconnects: watch::Receiver<u64>,
}

/// A fresh edge id: host, process and a random part.
pub fn new_edge_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".to_string());
    format!(
        "edge-{host}-{}-{:04x}",
        std::process::id(),
        uuid::Uuid::new_v4().as_u128() as u16
    )
}

impl Edge {
    /// Binds the listen address, loads TLS, connects to NATS (`config.nats_url`), opens the
    /// state buckets and this edge's inbox, and registers the edge's metrics.
    pub async fn bind(config: Config, registry: &mut Registry) -> Result<Edge, EdgeError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| EdgeError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let tls = match &config.tls {
            Some(files) => Some(crate::tls::acceptor(files).map_err(EdgeError::Tls)?),
            None => None,
        };
        let (client, reconnects) =
            tablewire_nats::connect_watched(&config.nats_url, "tablewire-edge")
                .await
                .map_err(|e| EdgeError::Nats(format!("connect {}: {e}", config.nats_url)))?;
        let js = jetstream::new(client.clone());
        let state = open_buckets(&js, Domain::ALL, resource::state_bucket).await?;
        let parts = open_buckets(&js, resource::PARTS_DOMAINS, resource::parts_bucket).await?;
        let device_tags = js
            .get_key_value(resource::DEVICE_TAGS_BUCKET)
            .await
            .map_err(|e| EdgeError::Nats(format!("{}: {e}", resource::DEVICE_TAGS_BUCKET)))?;
        let device_presence = js
            .get_key_value(resource::DEVICE_PRESENCE_BUCKET)
            .await
            .map_err(|e| EdgeError::Nats(format!("{}: {e}", resource::DEVICE_PRESENCE_BUCKET)))?;
        let device_settings = js
            .get_key_value(resource::DEVICE_SETTINGS_BUCKET)
            .await
            .map_err(|e| EdgeError::Nats(format!("{}: {e}", resource::DEVICE_SETTINGS_BUCKET)))?;
        let device_settings =
            crate::device_settings::DeviceSettings::start(device_settings, config.bus_timeout)
                .await
                .map_err(|e| {
                    EdgeError::Nats(format!("{}: {e}", resource::DEVICE_SETTINGS_BUCKET))
                })?;
        let metrics = Metrics::new(registry);
        let gate = Gate::new(admission::Limits {
            max_connections: config.max_connections,
            max_connections_per_ip: config.max_connections_per_ip,
            connection_rate_per_ip: config.connection_rate_per_ip,
            headroom: config.connection_headroom,
            clock: config.rate_limit_clock.clone(),
        });
        if let Some(files) = admission::open_file_limit()
            && config.max_connections + config.connection_headroom >= files
        {
            warn!(
                max_connections = config.max_connections,
                file_limit = files,
                "--max-connections leaves no file descriptors for the rest: accept may fail at the file limit"
            );
        }
        let id = config.edge_id.clone().unwrap_or_else(new_edge_id);
        let conns = Arc::new(ws::Registry::default());
        let inbox = Arc::new(Inbox::default());
        let inbox_task = inbox
            .start(&client, &id, conns.clone())
            .await
            .map_err(|e| EdgeError::Nats(format!("edge inbox: {e}")))?;
        let shared = Arc::new(Shared {
            id,
            auth: Auth::try_new(&config.auth).map_err(EdgeError::Auth)?,
            publisher: Publisher::new(client.clone(), metrics.clone()),
            fanout: Fanout::new(client.clone(), metrics.clone(), config.bus_timeout),
            events: crate::events::EventsEdge::new(
                client.clone(),
                metrics.clone(),
                config.bus_timeout,
            ),
            conns,
            inbox,
            metrics,
            device_tags,
            device_presence,
            device_settings,
            order_bodies: crate::pos::OrderBodies::default(),
            state,
            parts,
            draining: AtomicBool::new(false),
            registry: OnceLock::new(),
            client,
            config,
        });
        Ok(Edge {
            shared,
            gate,
            listener,
            tls,
            inbox_task,
            reconnects,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// This edge's id.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Serves until `shutdown` turns true, then drains.
    pub async fn run(self, registry: Arc<Registry>, mut shutdown: watch::Receiver<bool>) {
        let Edge {
            shared,
            gate,
            listener,
            tls,
            inbox_task,
            mut reconnects,
        } = self;
        let _ = shared.registry.set(registry);
        let scheme = if tls.is_some() {
            "https/wss"
        } else {
            "http/ws"
        };
        info!(edge = %shared.id, addr = ?listener.local_addr().ok(), scheme, "edge listening");
        let heartbeat = tokio::spawn(heartbeat(shared.clone()));
        let presence = tokio::spawn(crate::presence::run(shared.clone()));
        // Events published while NATS was away are lost to this edge: every client of a keyed
        // fan-out takes a fresh snapshot when the connection is back; events-socket clients,
        // whose feed has no snapshot, are told that events may be missing.
        let resync = {
            let shared = shared.clone();
            tokio::spawn(async move {
                while reconnects.changed().await.is_ok() {
                    shared.fanout.resync_all().await;
                    let missed = ErrorBody::new(ErrorCode::EventsMissed);
                    let notice = crate::events::error_frame(missed);
                    shared.events.hub.tell_everyone(&notice);
                }
            })
        };
        // governor keeps every address it has seen: forget those back to a full burst.
        let forget = {
            let gate = gate.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    gate.forget_idle_addresses();
                }
            })
        };
        let (http_stop_tx, http_stop) = watch::channel(false);
        let open_http = Arc::new(AtomicUsize::new(0));
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { break; }
                }
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let (pass, refusal) = match gate.admit(peer.ip()) {
                            Verdict::Serve(pass) => (pass, None),
                            Verdict::Restrict(pass, refusal) => (pass, Some(refusal)),
                            Verdict::Close(refusal) => {
                                // Not even the headroom to answer: closed unanswered.
                                debug!(%peer, reason = refusal.label(), "connection closed at accept");
                                shared.metrics.refused("no_headroom");
                                continue;
                            }
                        };
                        let shared = shared.clone();
                        let tls = tls.clone();
                        let stop = http_stop.clone();
                        let open = open_http.clone();
                        open.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(async move {
                            serve_tcp(shared, tcp, peer, tls, stop, pass, refusal).await;
                            open.fetch_sub(1, Ordering::Relaxed);
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and similar: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        drop(listener);
        drain(&shared, &open_http, http_stop_tx).await;
        heartbeat.abort();
        presence.abort();
        crate::presence::remove(&shared).await;
        forget.abort();
        resync.abort();
        inbox_task.abort();
        info!(edge = %shared.id, "edge stopped");
    }
}

async fn drain(shared: &Arc<Shared>, open_http: &AtomicUsize, http_stop: watch::Sender<bool>) {
    shared.draining.store(true, Ordering::Relaxed);
    let conns = shared.conns.all();
    info!(edge = %shared.id, websockets = conns.len(), "draining");
    for conn in &conns {
        conn.close(frame::close::GOING_AWAY, "server going away; reconnect");
    }
    let _ = http_stop.send(true);
    let deadline = tokio::time::Instant::now() + shared.config.drain_timeout;
    while (!shared.conns.is_empty() || open_http.load(Ordering::Relaxed) > 0)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Serves one accepted socket over HTTP/1.1 (upgrades included). `pass` counts it against the
/// connection limits for as long as it is open; with a `refusal` only `/healthz` and `/metrics`
/// are served, once, and anything else is answered [`refuse`].
async fn serve_tcp(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
    pass: Pass,
    refusal: Option<Refusal>,
) {
    let _ = tcp.set_nodelay(true);
    let io = match tls {
        None => Io::Plain(tcp),
        Some(acceptor) => {
            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => Io::Tls(Box::new(stream)),
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            }
        }
    };
    let pass = Arc::new(pass);
    let body_timeout = http::BodyTimeout {
        limit: shared.config.body_timeout,
        expired: shared.metrics.body_timeouts.clone(),
    };
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let shared = shared.clone();
        let pass = pass.clone();
        let body_timeout = body_timeout.clone();
        async move {
            if let Some(refusal) = refusal
                && !always_answered(request.uri().path())
            {
                debug!(%peer, reason = refusal.label(), "connection refused");
                return Ok::<_, std::convert::Infallible>(refuse(&shared, refusal));
            }
            request.extensions_mut().insert(body_timeout);
            request.extensions_mut().insert(pass);
            Ok(crate::router::route(shared, request).await)
        }
    });
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1.timer(TokioTimer::new());
    if refusal.is_some() {
        // Headroom is scarce: one request, promptly, then the socket is given back.
        http1
            .header_read_timeout(Duration::from_secs(5))
            .keep_alive(false);
    } else {
        http1.header_read_timeout(Duration::from_secs(30));
    }
    let connection = http1
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result { debug!(%peer, error = %e, "HTTP connection ended"); }
        }
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Paths served even on a connection over a limit, so an edge at its cap can still be watched.
fn always_answered(path: &str) -> bool {
    matches!(path.trim_matches('/'), "healthz" | "metrics")
}

/// The answer to a request on a connection over a limit: 503 `TOO_MANY_CONNECTIONS` with
/// `Retry-After`, and the connection closed.
fn refuse(shared: &Shared, refusal: Refusal) -> Response<Body> {
    shared.metrics.refused(refusal.label());
    let retry_after_ms = u64::try_from(refusal.retry_after().as_millis()).unwrap_or(u64::MAX);
    let error = ErrorBody::with_message(ErrorCode::TooManyConnections, refusal.message())
        .retry_after(retry_after_ms.max(1));
    let mut response = http::error(error);
    response.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    http::cors(&mut response, &shared.config.cors_origin);
    shared
        .metrics
        .http
        .get_or_create(&crate::metrics::HttpLabels {
            route: "refused".to_string(),
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// Pings every WebSocket each interval; one that said nothing since the last ping is closed.
async fn heartbeat(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.heartbeat);
    tick.tick().await;
    let ping = frame::ping(b"tw");
    loop {
        tick.tick().await;
        for conn in shared.conns.all() {
            if conn.take_alive() {
                conn.send(ping.clone());
            } else {
                debug!(conn = conn.id, "no answer to heartbeat; closing");
                conn.close(frame::close::GOING_AWAY, "heartbeat timeout");
            }
        }
    }
}
