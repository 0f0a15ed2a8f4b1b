//! The integration-test harness: a real nats-server per test (dynamic port, temporary store,
//! killed on drop), edges and handlers in this process or as child processes of the real
//! `tablewire` binary started by the testkit's launcher (so they can be killed like a crash,
//! and die with the test), PostgreSQL databases from the testkit, and WebSocket/HTTP clients.
//! Nothing here waits a fixed time for readiness: servers report readiness, clients poll with
//! deadlines.

#![allow(dead_code)]

use bytes::Bytes;
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload, handshake};
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tablewire_nats::{NatsServer, ServerOptions, Topology};
use tablewire_schemas::Domain;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::watch;

pub const AUTH_SECRET: &str = "test-secret";
pub const JWT_SECRET: &str = "test-jwt-secret";
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Resource timings short enough that takeovers happen within a test.
pub fn test_topology() -> Topology {
    Topology {
        partitions: Some(4),
        ack_wait: Duration::from_secs(2),
        pin_timeout: Duration::from_secs(2),
        worker_ttl: Duration::from_secs(2),
        ..Default::default()
    }
}

/// Starts a nats-server for one test; fails the test loudly when none can be found.
pub async fn nats() -> NatsServer {
    match NatsServer::start(ServerOptions::default()).await {
        Ok(server) => server,
        Err(e) => panic!("integration tests need nats-server >= 2.11 (scripts/install-nats): {e}"),
    }
}

/// A 3-node cluster provisioned with replicas 3 (the README's production layout); returns it and
/// its client URLs. Fails the test loudly when the cluster cannot start.
pub async fn replicated_cluster() -> (tablewire_nats::Cluster, String) {
    let cluster = match tablewire_nats::Cluster::start(3).await {
        Ok(c) => c,
        Err(e) => panic!("a 3-node cluster needs nats-server >= 2.11: {e}"),
    };
    let urls = cluster.client_urls();
    let mut topology = test_topology();
    topology.replicas = 3;
    provision(&urls, &topology).await;
    (cluster, urls)
}

pub async fn client(url: &str) -> async_nats::Client {
    tablewire_nats::connect(url, "tablewire-test")
        .await
        .expect("connect to NATS")
}

pub async fn provision(url: &str, topology: &Topology) {
    let js = async_nats::jetstream::new(client(url).await);
    tablewire_nats::provision(&js, Domain::ALL, topology)
        .await
        .expect("provision");
}

/// Every test client connects from 127.0.0.1, most HTTP requests on a connection of their own:
/// the per-address limits of a production edge would refuse them (tests/hostile.rs checks the
/// limits with values of its own).
pub const TEST_CONNECTIONS_PER_IP: usize = 100_000;
/// See [`TEST_CONNECTIONS_PER_IP`].
pub const TEST_CONNECTION_RATE_PER_IP: u32 = 100_000;

pub fn edge_config() -> tablewire_edge::Config {
    tablewire_edge::Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        auth: tablewire_edge::AuthConfig {
            bearer_secret: Some(AUTH_SECRET.into()),
            jwt_secret: Some(JWT_SECRET.into()),
            ..Default::default()
        },
        max_connections_per_ip: TEST_CONNECTIONS_PER_IP,
        connection_rate_per_ip: TEST_CONNECTION_RATE_PER_IP,
        ..Default::default()
    }
}

/// An edge running in this process.
pub struct InProcessEdge {
    pub addr: SocketAddr,
    pub id: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl InProcessEdge {
    pub async fn start(url: &str, mut config: tablewire_edge::Config) -> InProcessEdge {
        config.nats_url = url.to_string();
        let mut registry = prometheus_client::registry::Registry::default();
        let edge = tablewire_edge::Edge::bind(config, &mut registry)
            .await
            .expect("edge binds");
        let addr = edge.local_addr().expect("addr");
        let id = edge.id().to_string();
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(edge.run(Arc::new(registry), rx));
        InProcessEdge {
            addr,
            id,
            stop,
            task,
        }
    }

    /// Drains like SIGTERM and waits for the edge to stop.
    pub async fn drain(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Handler workers (and optionally the SQL writer) running in this process.
pub struct InProcessHandler {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl InProcessHandler {
    pub async fn start(url: &str, database_url: Option<String>) -> InProcessHandler {
        Self::start_with(url, database_url, handler_config()).await
    }

    /// Like [`start`](Self::start) with a given runtime configuration (its domains: all).
    pub async fn start_with(
        url: &str,
        database_url: Option<String>,
        config: tablewire_handlers::Config,
    ) -> InProcessHandler {
        let client = client(url).await;
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = tablewire_handlers::metrics::Metrics::new(&mut registry);
        let (stop, rx) = watch::channel(false);
        let mut tasks = Vec::new();
        if let Some(db) = database_url {
            tasks.push(tokio::spawn(tablewire_handlers::records::run(
                client.clone(),
                db,
                metrics.clone(),
                rx.clone(),
            )));
        }
        let config = tablewire_handlers::Config {
            domains: Domain::ALL.to_vec(),
            ..config
        };
        tasks.push(tokio::spawn(async move {
            tablewire_handlers::run(client, config, metrics, rx)
                .await
                .expect("handlers run");
        }));
        InProcessHandler { stop, tasks }
    }

    /// Whether a task of the handler has ended (it returned an error, or was stopped).
    pub fn finished(&self) -> bool {
        self.tasks.iter().any(|t| t.is_finished())
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// How tests start `tablewire` child processes: the binary under test with the test secrets
/// and limits, logging at `$TABLEWIRE_TEST_LOG` (default `warn`); each child is killed when
/// dropped and when the test process dies.
pub fn launcher() -> tablewire_testkit::Launcher {
    tablewire_testkit::Launcher {
        binary: env!("CARGO_BIN_EXE_tablewire").into(),
        auth_secret: AUTH_SECRET.to_string(),
        jwt_secret: JWT_SECRET.to_string(),
        generous_limit: TEST_CONNECTIONS_PER_IP as u64,
        log: std::env::var("TABLEWIRE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
    }
}

/// A `tablewire` child process.
pub struct Process {
    pub child: Child,
    make: Box<dyn Fn() -> Command + Send + Sync>,
}

impl Process {
    pub fn spawn(args: &[&str]) -> Process {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Self::of(move || launcher().command(&args))
    }

    /// A process started by `make`, which [`restart`](Self::restart) calls again.
    pub fn of(make: impl Fn() -> Command + Send + Sync + 'static) -> Process {
        Process {
            child: make().spawn().expect("spawn tablewire"),
            make: Box::new(make),
        }
    }

    /// Kills it at once, like a crash.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Sends SIGTERM and waits for it to exit.
    pub async fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            tablewire_nats::server::terminate(pid);
        }
        tokio::time::timeout(TIMEOUT, self.child.wait())
            .await
            .ok()?
            .ok()
    }

    pub fn restart(&mut self) {
        self.child = (self.make)().spawn().expect("spawn tablewire");
    }
}

pub fn handler_process(url: &str) -> Process {
    let url = url.to_string();
    Process::of(move || launcher().handler(&url, Domain::ALL, None, None))
}

/// Per-tenant write rates for tests that send hundreds of orders or events for one tenant at
/// once: far above what they send, so only the tests of the limits meet them.
pub const TEST_TENANT_RATE: &str = "100000";

/// A handler configuration for tests: the defaults, with [`TEST_TENANT_RATE`].
pub fn handler_config() -> tablewire_handlers::Config {
    let generous = tablewire_handlers::rate::WriteRate::new(100_000, 100_000);
    tablewire_handlers::Config {
        tenant_orders: generous,
        tenant_events: generous,
        ..Default::default()
    }
}

/// An edge child process on a free port; returns once it answers /healthz.
pub async fn edge_process(url: &str) -> (Process, SocketAddr) {
    edge_process_with(url, &[]).await
}

/// [`edge_process`] with more command-line flags.
pub async fn edge_process_with(url: &str, extra: &[&str]) -> (Process, SocketAddr) {
    let addr = tablewire_testkit::free_addr().expect("a free port");
    let (url, extra) = (
        url.to_string(),
        extra.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    );
    let process = Process::of(move || {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        launcher().edge(&url, addr, &extra)
    });
    eventually("edge process healthy", || async move {
        get(addr, "/healthz").await.ok().map(|(s, _)| s == 200) == Some(true)
    })
    .await;
    (process, addr)
}

/// A WebSocket upgrade done by hand, so the test can write any bytes after it.
pub async fn raw_websocket(addr: SocketAddr, path: &str) -> TcpStream {
    raw_websocket_with(addr, path, "").await.0
}

/// [`raw_websocket`] with extra header lines (each ending in CRLF); also gives the 101's head.
pub async fn raw_websocket_with(addr: SocketAddr, path: &str, extra: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::time::timeout(TIMEOUT, stream.read_exact(&mut byte))
            .await
            .expect("the upgrade is answered in time")
            .expect("read");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "upgraded: {head}");
    (stream, head)
}

/// Polls `check` until it is true or [`TIMEOUT`] passes (then fails the test).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

use tablewire_testkit::client::SpawnExecutor;

/// A WebSocket test client.
pub struct Ws {
    ws: FragmentCollector<TokioIo<Upgraded>>,
}

/// Why a read ended.
#[derive(Debug, PartialEq)]
pub enum Read {
    Json(Value),
    Close(Option<u16>),
}

impl Ws {
    pub async fn connect(addr: SocketAddr, path: &str) -> Ws {
        Self::try_connect(addr, path)
            .await
            .expect("websocket connects")
    }

    pub async fn try_connect(addr: SocketAddr, path: &str) -> Result<Ws, String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        Self::over(stream, &addr.to_string(), path, &[]).await
    }

    pub async fn connect_with_headers(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Ws, String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        Self::over(stream, &addr.to_string(), path, headers).await
    }

    pub async fn over<S>(
        stream: S,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Ws, String>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::over_with(stream, host, path, headers, true).await
    }

    async fn over_with<S>(
        stream: S,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        auto_pong: bool,
    ) -> Result<Ws, String>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let mut request = Request::builder()
            .method("GET")
            .uri(path)
            .header("Host", host)
            .header(hyper::header::UPGRADE, "websocket")
            .header(hyper::header::CONNECTION, "upgrade")
            .header("Sec-WebSocket-Key", handshake::generate_key())
            .header("Sec-WebSocket-Version", "13");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let (mut ws, _) = handshake::client(&SpawnExecutor, request, stream)
            .await
            .map_err(|e| e.to_string())?;
        ws.set_auto_pong(auto_pong);
        Ok(Ws {
            ws: FragmentCollector::new(ws),
        })
    }

    /// A client that never answers pings (a dead peer, as far as the edge can tell).
    pub async fn connect_silent(addr: SocketAddr, path: &str) -> Ws {
        let stream = TcpStream::connect(addr).await.expect("connect");
        Self::over_with(stream, &addr.to_string(), path, &[], false)
            .await
            .expect("websocket")
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .write_frame(Frame::text(Payload::Borrowed(text.as_bytes())))
            .await
            .expect("send");
    }

    pub async fn send_frame(&mut self, frame: Frame<'_>) {
        self.ws.write_frame(frame).await.expect("send");
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    /// The next JSON text message or the close, within [`TIMEOUT`].
    pub async fn read(&mut self) -> Read {
        loop {
            let frame = tokio::time::timeout(TIMEOUT, self.ws.read_frame())
                .await
                .expect("a frame in time");
            let frame = match frame {
                Ok(f) => f,
                Err(_) => return Read::Close(None),
            };
            match frame.opcode {
                OpCode::Text => {
                    return Read::Json(
                        serde_json::from_slice(&frame.payload).expect("server sends JSON"),
                    );
                }
                OpCode::Close => {
                    let code = (frame.payload.len() >= 2)
                        .then(|| u16::from_be_bytes([frame.payload[0], frame.payload[1]]));
                    return Read::Close(code);
                }
                _ => continue,
            }
        }
    }

    /// The next JSON message; fails the test on a close.
    pub async fn json(&mut self) -> Value {
        match self.read().await {
            Read::Json(v) => v,
            Read::Close(code) => panic!("expected a message, got close {code:?}"),
        }
    }

    /// The next message of `kind`, skipping others.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let v = self.json().await;
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// Stays connected for `duration`, reading (and so answering pings) but expecting nothing;
    /// fails the test if the server closes.
    pub async fn idle_for(&mut self, duration: Duration) {
        let until = tokio::time::Instant::now() + duration;
        loop {
            match tokio::time::timeout_at(until, self.ws.read_frame()).await {
                Err(_) => return,
                Ok(Ok(frame)) if frame.opcode == OpCode::Close => panic!("closed while idle"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("connection failed while idle: {e}"),
            }
        }
    }

    /// Reads until a close and returns its code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            if let Read::Close(code) = self.read().await {
                return code;
            }
        }
    }
}

async fn http_request(
    addr: SocketAddr,
    request: Request<Full<Bytes>>,
) -> Result<(u16, hyper::HeaderMap, Bytes), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, headers, body))
}

/// Sends a request and returns status, headers and body.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (u16, hyper::HeaderMap, Bytes) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("Host", addr.to_string());
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    http_request(addr, request.body(Full::new(body.into())).expect("request"))
        .await
        .expect("HTTP request")
}

/// The status and JSON body of an upgrade request that is refused before the upgrade.
pub async fn refused_upgrade(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut all = vec![
        ("Upgrade", "websocket"),
        ("Connection", "upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    all.extend_from_slice(headers);
    let (status, _, body) = send(addr, "GET", path, &all, Bytes::new()).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The text of a process's `/metrics`.
pub async fn metrics(addr: SocketAddr) -> String {
    let (_, _, text) = send(addr, "GET", "/metrics", &[], "").await;
    String::from_utf8_lossy(&text).into_owned()
}

/// One sample of a `/metrics` text (`name` with its labels, as printed); 0 when absent.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// POSTs JSON, returns status and JSON body.
pub async fn post(addr: SocketAddr, path: &str, auth: Option<&str>, body: &Value) -> (u16, Value) {
    let auth = auth.map(|a| format!("Bearer {a}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let (status, _, body) = send(addr, "POST", path, &headers, body.to_string()).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// GETs a path, returns status and JSON body.
pub async fn get(addr: SocketAddr, path: &str) -> Result<(u16, Value), String> {
    let request = Request::builder()
        .uri(path)
        .header("Host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let (status, _, body) = http_request(addr, request).await?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// Mints a test JWT.
pub fn token(tenant: &str, role: &str, ttl_secs: i64) -> String {
    let now = tablewire_edge::auth::now_secs() as i64;
    let claims = tablewire_schemas::Claims {
        sub: "test".into(),
        tenant: Some(tenant.into()),
        role: Some(role.into()),
        exp: (now + ttl_secs).max(0) as u64,
        iat: Some(now as u64),
    };
    tablewire_edge::mint(JWT_SECRET, &claims).expect("mint")
}

/// The stored state of a display session, straight from KV.
pub async fn stored_display(url: &str, session: &str) -> Value {
    let kv = async_nats::jetstream::new(client(url).await)
        .get_key_value("tw_state_display")
        .await
        .expect("bucket");
    let bytes = kv
        .get(format!("_.{session}"))
        .await
        .expect("get")
        .expect("state exists");
    serde_json::from_slice(&bytes).expect("JSON")
}

/// A display session that got updates `{"i": 0..n}` applied each exactly once: its event
/// sequence is `seq` (one event per update) and its list keeps the last 100 of them, in order.
pub async fn assert_display_applied_once(url: &str, session: &str, seq: u64, n: u64) {
    let state = stored_display(url, session).await;
    assert_eq!(
        state["seq"].as_u64(),
        Some(seq),
        "{session}: one event per update, none applied twice"
    );
    let kept: Vec<u64> = state["state"]["displayUpdates"]
        .as_array()
        .expect("list")
        .iter()
        .map(|u| u["displayData"]["i"].as_u64().expect("i"))
        .collect();
    assert_eq!(kept, (n.saturating_sub(100)..n).collect::<Vec<_>>());
}

/// Makes `session`'s stored display state unreadable, then posts an update to it through the edge
/// at `addr`: the handler cannot apply it, parks it, and the edge answers 422 `COMMAND_PARKED`
/// (asserted here).
pub async fn park_an_update_to_an_unreadable_display(
    nats_url: &str,
    addr: SocketAddr,
    session: &str,
) {
    let js = async_nats::jetstream::new(client(nats_url).await);
    let kv = js
        .get_key_value(tablewire_nats::resource::state_bucket(Domain::Display))
        .await
        .expect("bucket");
    kv.put(format!("_.{session}"), "not a state".into())
        .await
        .expect("put");
    let (status, body) = post(
        addr,
        &format!("/session/{session}/update"),
        Some(AUTH_SECRET),
        &serde_json::json!({"type": "dish_card", "displayData": {"i": 0}}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("COMMAND_PARKED")),
        "{body}"
    );
}

/// Posts a display update with the bearer secret.
pub async fn update(addr: SocketAddr, session: &str, data: Value) -> Value {
    let (status, body) = post(
        addr,
        &format!("/session/{session}/update"),
        Some(AUTH_SECRET),
        &serde_json::json!({"type": "dish_card", "displayData": data}),
    )
    .await;
    assert_eq!(status, 200, "update accepted: {body}");
    body
}

/// A fresh PostgreSQL database for one test, created from `$TABLEWIRE_TEST_POSTGRES_URL`
/// (scripts/test makes sure that server is up) and dropped when this guard is dropped.
/// Fails the test loudly when no server is reachable: PostgreSQL is never skipped.
pub struct PostgresDb;

impl PostgresDb {
    pub async fn create() -> tablewire_testkit::PostgresDb {
        let admin = std::env::var("TABLEWIRE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
        tablewire_testkit::PostgresDb::create(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL is required (scripts/ensure-postgres): {e:#}"))
    }
}

/// A TCP proxy in front of a server (a database) that a test can cut and restore, to play an
/// outage of that server without disturbing anyone else using it.
pub struct TcpProxy {
    pub addr: SocketAddr,
    up: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Proxies a new local port to `target`.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let (up, up_rx) = watch::channel(true);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !*up_rx.borrow() {
                    continue; // down: connections are refused (closed at once)
                }
                let mut down = up_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        TcpProxy { addr, up, task }
    }

    /// Drops every connection and refuses new ones until [`restore`](Self::restore).
    pub fn cut(&self) {
        let _ = self.up.send(false);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        let _ = self.up.send(true);
    }

    /// `url` with its host and port replaced by this proxy's.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let (auth_host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let auth = auth_host
            .rsplit_once('@')
            .map(|(a, _)| format!("{a}@"))
            .unwrap_or_default();
        format!("{scheme}://{auth}{}/{path}", self.addr)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
