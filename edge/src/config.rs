//! The edge's configuration, with the defaults `tablewire edge --help` documents.

use crate::auth::AuthConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// TLS certificate and key (PEM) for `wss://` and `https://`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
}

/// How RFID devices on `/ws/device` and `POST /api/rfid/scan` prove who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceAuth {
    /// Any `deviceId` is accepted, as seed 003's readers connect; every device belongs to
    /// `tenant`. The default of `tablewire dev`.
    None {
        /// The tenant all devices share.
        tenant: String,
    },
    /// A device JWT (`sub` = the device id, `role` = `device`, `tenant`) in the
    /// `Authorization: Bearer` header or the `token` query parameter; anything else is refused
    /// with HTTP 401 before the upgrade. The default of `tablewire edge`.
    Token,
}

/// How an edge node runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// NATS server URL(s), comma-separated.
    pub nats_url: String,
    /// Where to listen for HTTP and WebSocket clients.
    pub listen: SocketAddr,
    /// This edge's id; a unique one is made up when `None`.
    pub edge_id: Option<String>,
    /// Credentials clients may present.
    pub auth: AuthConfig,
    /// Serve TLS with these files.
    pub tls: Option<TlsFiles>,
    /// Largest WebSocket message or HTTP body, bytes (larger: close 1009 / HTTP 413).
    pub max_message_bytes: usize,
    /// WebSocket ping interval; a peer silent for two intervals is closed.
    pub heartbeat: Duration,
    /// How long a drain (SIGTERM) waits for clients to leave before closing the rest.
    pub drain_timeout: Duration,
    /// `Access-Control-Allow-Origin` for browser clients.
    pub cors_origin: String,
    /// Bytes that may wait for a slow WebSocket reader before it is closed with 1013.
    pub max_queued_bytes: usize,
    /// How long an HTTP request waits for a handler's answer when it needs one.
    pub reply_timeout: Duration,
    /// How long a new WebSocket waits for NATS to confirm the subscription to its events. Past
    /// it (NATS unreachable) the client gets `UNAVAILABLE` and close 1011, so it reconnects,
    /// perhaps to another edge, instead of holding a socket that hears nothing.
    pub bus_timeout: Duration,
    /// Collab rooms: the tenant of connections without a token ("open rooms", for `tablewire
    /// dev` and seed clients that send none). `None`: a token is required.
    pub collab_open_tenant: Option<String>,
    /// Collab rooms: messages one connection may send per second (a burst of as many).
    pub collab_messages_per_second: u32,
    /// How long a WebSocket without a token in its upgrade request may take to send its
    /// `auth` message before it is closed with 1008.
    pub auth_timeout: Duration,
    /// The clock per-connection message limits and the per-address accept rate run on (tests
    /// freeze it).
    pub rate_limit_clock: crate::limit::LimitClock,
    /// How RFID devices authenticate.
    pub device_auth: DeviceAuth,
    /// The heartbeat interval devices are told to keep; a device that sends nothing for two
    /// intervals is closed (4002) and goes offline.
    pub device_heartbeat: Duration,
    /// How long an HTTP request body may take to arrive in full; past it the request is
    /// answered 408 (`TIMEOUT`) and the connection closed. Headers have their own 30 s.
    pub body_timeout: Duration,
    /// Connections (HTTP and WebSocket) open at once, in all. Kept below the file limit so the
    /// edge never fails to accept: the default is `RLIMIT_NOFILE` less
    /// [`admission::FILE_RESERVE`](crate::admission::FILE_RESERVE).
    pub max_connections: usize,
    /// Connections open at once from one client address (IPv6: one /64); 0 for no limit
    /// (behind a proxy that connects from one address).
    pub max_connections_per_ip: usize,
    /// New connections per second from one client address, a burst of as many; 0 for no limit.
    pub connection_rate_per_ip: u32,
    /// Sockets over a connection limit served at once to be answered 503 (and to read
    /// `/healthz` and `/metrics`); more are closed right after accept.
    pub connection_headroom: usize,
    /// What `/app/dev.json` answers (the dev token for the screens' sign-in); `Some` only under
    /// `tablewire dev`, else that path is 404.
    pub dev_login: Option<crate::screens::DevLogin>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats_url: "nats://127.0.0.1:4222".to_string(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            edge_id: None,
            auth: AuthConfig::default(),
            tls: None,
            max_message_bytes: 64 * 1024,
            heartbeat: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            cors_origin: "*".to_string(),
            max_queued_bytes: 4 * 1024 * 1024,
            reply_timeout: Duration::from_secs(5),
            bus_timeout: Duration::from_secs(5),
            collab_open_tenant: None,
            collab_messages_per_second: 100,
            auth_timeout: Duration::from_secs(5),
            rate_limit_clock: Default::default(),
            device_auth: DeviceAuth::Token,
            device_heartbeat: Duration::from_secs(30),
            body_timeout: Duration::from_secs(10),
            max_connections: crate::admission::default_max_connections(),
            max_connections_per_ip: 1000,
            connection_rate_per_ip: 100,
            connection_headroom: crate::admission::DEFAULT_HEADROOM,
            dev_login: None,
        }
    }
}
