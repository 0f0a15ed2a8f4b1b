//! The edge's configuration and its flags ([`EdgeSettings`], which `tablewire edge` and `dev`
//! parse): the defaults `tablewire edge --help` documents are written once, there.

use crate::auth::AuthConfig;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tablewire_nats::topology::at_least_one;

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
    pub dev_login: Option<DevLogin>,
}

/// What `/app/dev.json` answers under `tablewire dev` ([`crate::screens`]): a token the sign-in page offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DevLogin {
    /// The dev JWT `tablewire dev` prints.
    pub token: String,
    /// Its tenant.
    pub tenant: String,
}

/// The edge's flags (environment variables, config-file keys) shared by `tablewire edge` and
/// `dev`, with the one copy of their defaults: [`Config::default`] is built from them.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct EdgeSettings {
    /// Address to serve HTTP and WebSockets on.
    #[arg(long, env = "TABLEWIRE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Largest WebSocket message or HTTP body in bytes (larger: close 1009 / HTTP 413).
    #[arg(long, env = "TABLEWIRE_MAX_MESSAGE_BYTES", default_value_t = 65536, value_parser = at_least_one::<usize>)]
    pub max_message_bytes: usize,
    /// WebSocket ping interval in seconds; a silent peer is closed after two.
    #[arg(long, env = "TABLEWIRE_HEARTBEAT_SECS", default_value_t = 30, value_parser = at_least_one::<u64>)]
    pub heartbeat_secs: u64,
    /// Seconds a drain (SIGTERM) waits for clients to leave.
    #[arg(long, env = "TABLEWIRE_DRAIN_TIMEOUT_SECS", default_value_t = 10)]
    pub drain_timeout_secs: u64,
    /// Seconds a new socket waits for NATS to confirm its subscription before it is closed with
    /// 1011 (NATS unreachable).
    #[arg(long, env = "TABLEWIRE_BUS_TIMEOUT_SECS", default_value_t = 5, value_parser = at_least_one::<u64>)]
    pub bus_timeout_secs: u64,
    /// Access-Control-Allow-Origin for browser clients.
    #[arg(long, env = "TABLEWIRE_CORS_ORIGIN", default_value = "*")]
    pub cors_origin: String,
    /// TLS certificate (PEM); with --tls-key serves https:// and wss://.
    #[arg(long, env = "TABLEWIRE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "TABLEWIRE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Collab rooms: the tenant of room connections that bring no token ("open rooms"). Unset
    /// on `edge`: a token is required. `dev` uses `demo` when unset.
    #[arg(long, env = "TABLEWIRE_COLLAB_OPEN_TENANT")]
    pub collab_open_tenant: Option<String>,
    /// Collab rooms: messages one connection may send per second.
    #[arg(long, env = "TABLEWIRE_COLLAB_MESSAGES_PER_SECOND", default_value_t = 100, value_parser = at_least_one::<u32>)]
    pub collab_messages_per_second: u32,
    /// How RFID devices authenticate: `token` (a device JWT; the default of `edge`) or `none`
    /// (any deviceId, all in --device-tenant; the default of `dev`).
    #[arg(long, env = "TABLEWIRE_DEVICE_AUTH", value_parser = ["none", "token"])]
    pub device_auth: Option<String>,
    /// The tenant of every device when device auth is `none`.
    #[arg(long, env = "TABLEWIRE_DEVICE_TENANT", default_value = tablewire_schemas::device::DEFAULT_TENANT)]
    pub device_tenant: String,
    /// Device heartbeat interval in seconds; a device silent for two is closed and goes offline.
    #[arg(long, env = "TABLEWIRE_DEVICE_HEARTBEAT_SECS", default_value_t = 30, value_parser = at_least_one::<u64>)]
    pub device_heartbeat_secs: u64,
    /// Seconds an HTTP request body may take to arrive in full (later: 408 and the connection
    /// closed).
    #[arg(long, env = "TABLEWIRE_BODY_TIMEOUT_SECS", default_value_t = 10, value_parser = at_least_one::<u64>)]
    pub body_timeout_secs: u64,
    /// Connections (HTTP and WebSocket) open at once, in all. Default: the open-file limit
    /// (ulimit -n) less 512, so accept never fails at the file limit.
    #[arg(long, env = "TABLEWIRE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Connections open at once from one client address (IPv6: one /64); 0 for no limit, e.g.
    /// behind a proxy that connects from one address.
    #[arg(long, env = "TABLEWIRE_MAX_CONNECTIONS_PER_IP", default_value_t = 1000)]
    pub max_connections_per_ip: usize,
    /// New connections per second from one client address (a burst of as many); 0 for no
    /// limit.
    #[arg(long, env = "TABLEWIRE_CONNECTION_RATE_PER_IP", default_value_t = 100)]
    pub connection_rate_per_ip: u32,
}

impl Default for EdgeSettings {
    /// The flags' defaults (environment variables are not read).
    fn default() -> Self {
        use clap::{Args, FromArgMatches};
        let command = EdgeSettings::augment_args(clap::Command::new("defaults"))
            .mut_args(|arg| arg.env(None::<&str>));
        let matches = command.get_matches_from(["defaults"]);
        // The defaults above parse by construction (a unit test checks it).
        EdgeSettings::from_arg_matches(&matches).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl EdgeSettings {
    /// The device auth these settings ask for, or `default` (`none` or `token`) when they name
    /// none.
    pub fn device_auth(&self, default: &str) -> DeviceAuth {
        match self.device_auth.as_deref().unwrap_or(default) {
            "none" => DeviceAuth::None {
                tenant: self.device_tenant.clone(),
            },
            _ => DeviceAuth::Token,
        }
    }

    /// The configuration of an edge on `nats_url` with these settings and `auth`; what the
    /// flags do not set is the library's own. Device auth defaults to `token`.
    pub fn config(&self, nats_url: &str, auth: AuthConfig, edge_id: Option<String>) -> Config {
        Config {
            nats_url: nats_url.to_string(),
            listen: self.listen,
            edge_id,
            auth,
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
            max_message_bytes: self.max_message_bytes,
            heartbeat: Duration::from_secs(self.heartbeat_secs),
            drain_timeout: Duration::from_secs(self.drain_timeout_secs),
            cors_origin: self.cors_origin.clone(),
            max_queued_bytes: 4 * 1024 * 1024,
            reply_timeout: Duration::from_secs(5),
            bus_timeout: Duration::from_secs(self.bus_timeout_secs),
            collab_open_tenant: self.collab_open_tenant.clone(),
            collab_messages_per_second: self.collab_messages_per_second,
            auth_timeout: Duration::from_secs(5),
            rate_limit_clock: Default::default(),
            device_auth: self.device_auth("token"),
            device_heartbeat: Duration::from_secs(self.device_heartbeat_secs),
            body_timeout: Duration::from_secs(self.body_timeout_secs),
            max_connections: self
                .max_connections
                .unwrap_or_else(crate::admission::default_max_connections),
            max_connections_per_ip: self.max_connections_per_ip,
            connection_rate_per_ip: self.connection_rate_per_ip,
            connection_headroom: crate::admission::DEFAULT_HEADROOM,
            dev_login: None,
        }
    }
}

impl Default for Config {
    /// An edge on [`tablewire_nats::DEFAULT_URL`] with the flags' defaults and no credentials.
    fn default() -> Self {
        EdgeSettings::default().config(tablewire_nats::DEFAULT_URL, AuthConfig::default(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_the_flags_defaults() {
        let config = Config::default();
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(config.heartbeat, Duration::from_secs(30));
        assert_eq!(config.max_connections_per_ip, 1000);
        assert_eq!(config.device_auth, DeviceAuth::Token);
    }
}
