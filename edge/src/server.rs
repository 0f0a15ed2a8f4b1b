//! The edge node: binds, accepts HTTP and WebSocket connections (optionally over TLS) within
//! the connection limits of [`admission`], runs the heartbeat, and drains on shutdown (stop
//! accepting, close WebSockets with 1001 so clients reconnect to another edge, finish HTTP
//! requests).

pub use crate::admission;
pub use crate::node::EdgeError;

use crate::admission::{Gate, Pass, Refusal, Verdict};
use crate::app::{self, AppState};
use crate::auth::Auth;
use crate::config::Config;
use crate::http;
use crate::inbox::Inbox;
use crate::metrics::Metrics;
use crate::node::{Node, NodeParts};
use crate::ws::{self, Io, frame};
use axum::Router;
use axum::response::Response;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tablewire_schemas::{ErrorBody, ErrorCode};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{debug, info, warn};

/// Connections the kernel queues for `accept` (it caps this at `net.core.somaxconn`). A burst
/// of clients connecting at once (displays coming back after a restart or a drain) must wait in
/// the queue: with a full queue the kernel drops their SYNs, and a client retries only after a
/// second (then 3 s, 7 s, ...). The standard listener asks for 128, which 200 clients
/// connecting at once overflowed while the edge was busy.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` for accepting connections, with [`LISTEN_BACKLOG`].
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As the standard listener does: a restarted edge can bind while old sockets linger.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    // Linux gives accepted sockets the listener's TCP_NODELAY: one setsockopt per connect less.
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A bound edge, ready to [`run`](Edge::run).
pub struct Edge {
    node: Arc<Node>,
    app: Router,
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
        let listener = listen(config.listen).map_err(|source| EdgeError::Bind {
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
        let auth = Auth::try_new(&config.auth)
            .map_err(EdgeError::Auth)?
            .counting_failures_in(metrics.auth_failures.clone());
        let node = Node::open(NodeParts {
            id,
            config,
            client,
            conns,
            inbox,
            auth,
            metrics,
        })
        .await?;
        let app = app::router(AppState {
            events: crate::events::EventsEdge::start(node.clone()),
            devices: crate::device::DeviceEdge::open(node.clone()).await?,
            pos: crate::pos::PosEdge::new(node.clone()),
            node: node.clone(),
        });
        Ok(Edge {
            node,
            app,
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
        &self.node.id
    }

    /// Serves until `shutdown` turns true, then drains.
    pub async fn run(self, registry: Arc<Registry>, mut shutdown: watch::Receiver<bool>) {
        let Edge {
            node,
            app,
            gate,
            listener,
            tls,
            inbox_task,
            mut reconnects,
        } = self;
        node.serve_registry(registry);
        let scheme = if tls.is_some() {
            "https/wss"
        } else {
            "http/ws"
        };
        info!(edge = %node.id, addr = ?listener.local_addr().ok(), scheme, "edge listening");
        let heartbeat = tokio::spawn(heartbeat(node.clone()));
        let presence = tokio::spawn(crate::presence::run(node.clone()));
        // Events published while NATS was away are lost to this edge: the node and each domain
        // catch up when the connection is back.
        let resync = {
            let node = node.clone();
            tokio::spawn(async move {
                while reconnects.changed().await.is_ok() {
                    node.reconnected().await;
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
                                node.metrics.refused("no_headroom");
                                continue;
                            }
                        };
                        let (node, app) = (node.clone(), app.clone());
                        let tls = tls.clone();
                        let stop = http_stop.clone();
                        let open = open_http.clone();
                        open.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(async move {
                            serve_tcp(node, app, tcp, peer, tls, stop, pass, refusal).await;
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
        drain(&node, &open_http, http_stop_tx).await;
        heartbeat.abort();
        presence.abort();
        crate::presence::remove(&node).await;
        forget.abort();
        resync.abort();
        inbox_task.abort();
        info!(edge = %node.id, "edge stopped");
    }
}

async fn drain(node: &Node, open_http: &AtomicUsize, http_stop: watch::Sender<bool>) {
    node.start_draining();
    let conns = node.conns.all();
    info!(edge = %node.id, websockets = conns.len(), "draining");
    for conn in &conns {
        conn.close(frame::close::GOING_AWAY, "server going away; reconnect");
    }
    let _ = http_stop.send(true);
    let deadline = tokio::time::Instant::now() + node.config.drain_timeout;
    while (!node.conns.is_empty() || open_http.load(Ordering::Relaxed) > 0)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Serves one accepted socket over HTTP/1.1 (upgrades included). `pass` counts it against the
/// connection limits for as long as it is open; with a `refusal` only `/healthz` and `/metrics`
/// are served, once, and anything else is answered [`refuse`].
#[allow(clippy::too_many_arguments)]
async fn serve_tcp(
    node: Arc<Node>,
    app: Router,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
    pass: Pass,
    refusal: Option<Refusal>,
) {
    #[cfg(not(target_os = "linux"))]
    let _ = tcp.set_nodelay(true);
    let io = match tls {
        None => Io::plain(tcp),
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
        limit: node.config.body_timeout,
        expired: node.metrics.body_timeouts.clone(),
    };
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let (node, app) = (node.clone(), app.clone());
        let pass = pass.clone();
        let body_timeout = body_timeout.clone();
        async move {
            if let Some(refusal) = refusal
                && !always_answered(request.uri().path())
            {
                debug!(%peer, reason = refusal.label(), "connection refused");
                return Ok::<_, std::convert::Infallible>(refuse(&node, refusal));
            }
            if let Some(answer) = app::front_door(&node, &mut request) {
                return Ok(answer);
            }
            request.extensions_mut().insert(body_timeout);
            request.extensions_mut().insert(pass);
            Ok(app.oneshot(request).await.unwrap_or_else(|e| match e {}))
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
fn refuse(node: &Node, refusal: Refusal) -> Response {
    node.metrics.refused(refusal.label());
    let retry_after_ms = u64::try_from(refusal.retry_after().as_millis()).unwrap_or(u64::MAX);
    let error = ErrorBody::with_message(ErrorCode::TooManyConnections, refusal.message())
        .retry_after(retry_after_ms.max(1));
    let mut response = http::error(error);
    response.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    http::cors(&mut response, &node.config.cors_origin);
    app::count(node, "refused", response.status());
    response
}

/// Pings every WebSocket each interval; one that said nothing since the last ping is closed.
async fn heartbeat(node: Arc<Node>) {
    let mut tick = tokio::time::interval(node.config.heartbeat);
    tick.tick().await;
    let ping = frame::ping(b"tw");
    loop {
        tick.tick().await;
        for conn in node.conns.all() {
            if conn.take_alive() {
                conn.send(ping.clone());
            } else {
                debug!(conn = conn.id, "no answer to heartbeat; closing");
                conn.close(frame::close::GOING_AWAY, "heartbeat timeout");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_send_without_delay() {
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0))).expect("listen");
        let _client = TcpStream::connect(listener.local_addr().expect("addr")).await;
        let (tcp, _) = listener.accept().await.expect("accept");
        // serve_tcp sets nothing on Linux: the accepted socket has it from the listener.
        assert!(tcp.nodelay().expect("nodelay"), "Nagle's algorithm is off");
    }

    #[tokio::test]
    async fn a_burst_of_connections_waits_in_the_queue_while_nothing_accepts() {
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0))).expect("listen");
        let addr = listener.local_addr().expect("addr");
        // Nothing accepts: each handshake completes only if the kernel has room to queue it.
        // Past the queue a SYN is dropped and retried after 1 s, 3 s, 7 s, ... until the queue
        // has room, which it never gets here.
        let burst = futures::future::try_join_all((0..300).map(|_| TcpStream::connect(addr)));
        let connected = tokio::time::timeout(Duration::from_secs(30), burst)
            .await
            .expect("300 handshakes complete while the edge accepts none")
            .expect("connect");
        assert_eq!(connected.len(), 300);
        drop(listener);
    }
}
