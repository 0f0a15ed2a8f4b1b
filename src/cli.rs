//! Command-line flags of every `tablewire` subcommand. Each flag can also be set with the
//! `TABLEWIRE_…` environment variable named in `--help`.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// tablewire: a real-time broker for restaurants and their devices, on NATS.
#[derive(Debug, Parser)]
#[command(name = "tablewire", version, about, long_about = None)]
pub struct Cli {
    /// Log filter, e.g. `info`, `debug`, `tablewire_handlers=debug`.
    #[arg(
        long,
        global = true,
        env = "TABLEWIRE_LOG",
        default_value = "info,async_nats=warn"
    )]
    pub log: String,
    /// Log format: `text` for people, `json` (one object per line) for log collectors.
    #[arg(
        long,
        global = true,
        env = "TABLEWIRE_LOG_FORMAT",
        default_value = "text",
        value_parser = ["text", "json"]
    )]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything in one process on embedded defaults: a local nats-server (unless
    /// --nats-url), provisioning, an edge, every handler, a SQLite file; prints URLs and dev
    /// credentials. Ctrl-C stops it all.
    Dev(DevArgs),
    /// One edge node. Any number may run against the same NATS.
    Edge(EdgeArgs),
    /// Handler workers for the named domains. Any number may run.
    Handler(HandlerArgs),
    /// Create or update every stream, consumer and KV bucket (idempotent).
    Provision(ProvisionArgs),
    /// Mint a JWT for development.
    Token(TokenArgs),
    /// Run a benchmark and print its figures.
    Bench(tablewire_bench::BenchArgs),
    /// What the system is doing, read from NATS: per domain the input stream, partitions and
    /// their holders, backlog, parked commands, state buckets; the records backlog; live edges.
    Status(crate::status::StatusArgs),
    /// One key's stored state, applied sequence and outbox, and the commands waiting for it.
    Inspect(crate::inspect::InspectArgs),
    /// Serve voice transcription requests (`tw.svc.transcribe`) with an OpenAI-compatible
    /// HTTP endpoint.
    Transcriber(TranscriberArgs),
}

/// How to reach NATS.
#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated. Needs nats-server 2.11 or newer with JetStream.
    #[arg(
        long,
        env = "TABLEWIRE_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
}

/// Credentials the edge accepts.
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// The Bearer secret for `POST /session/{id}/update` (seed 000's AUTH_SECRET).
    #[arg(long, env = "TABLEWIRE_AUTH_SECRET")]
    pub auth_secret: Option<String>,
    /// The HS256 secret JWTs are signed with.
    #[arg(long, env = "TABLEWIRE_JWT_SECRET")]
    pub jwt_secret: Option<String>,
    /// A PEM file with the public key (RSA, EC or Ed25519) that verifies RS256/ES256/EdDSA JWTs.
    #[arg(long, env = "TABLEWIRE_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
}

/// Edge settings shared by `edge` and `dev`.
#[derive(Debug, Clone, Args)]
pub struct EdgeSettings {
    /// Address to serve HTTP and WebSockets on.
    #[arg(long, env = "TABLEWIRE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Largest WebSocket message or HTTP body in bytes (larger: close 1009 / HTTP 413).
    #[arg(long, env = "TABLEWIRE_MAX_MESSAGE_BYTES", default_value_t = 65536)]
    pub max_message_bytes: usize,
    /// WebSocket ping interval in seconds; a silent peer is closed after two.
    #[arg(long, env = "TABLEWIRE_HEARTBEAT_SECS", default_value_t = 30)]
    pub heartbeat_secs: u64,
    /// Seconds a drain (SIGTERM) waits for clients to leave.
    #[arg(long, env = "TABLEWIRE_DRAIN_TIMEOUT_SECS", default_value_t = 10)]
    pub drain_timeout_secs: u64,
    /// Seconds a new socket waits for NATS to confirm its subscription before it is closed with
    /// 1011 (NATS unreachable).
    #[arg(long, env = "TABLEWIRE_BUS_TIMEOUT_SECS", default_value_t = 5)]
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
    #[arg(
        long,
        env = "TABLEWIRE_COLLAB_MESSAGES_PER_SECOND",
        default_value_t = 100
    )]
    pub collab_messages_per_second: u32,
    /// How RFID devices authenticate: `token` (a device JWT; the default of `edge`) or `none`
    /// (any deviceId, all in --device-tenant; the default of `dev`).
    #[arg(long, env = "TABLEWIRE_DEVICE_AUTH", value_parser = ["none", "token"])]
    pub device_auth: Option<String>,
    /// The tenant of every device when device auth is `none`.
    #[arg(long, env = "TABLEWIRE_DEVICE_TENANT", default_value = tablewire_schemas::device::DEFAULT_TENANT)]
    pub device_tenant: String,
    /// Device heartbeat interval in seconds; a device silent for two is closed and goes offline.
    #[arg(long, env = "TABLEWIRE_DEVICE_HEARTBEAT_SECS", default_value_t = 30)]
    pub device_heartbeat_secs: u64,
    /// Seconds an HTTP request body may take to arrive in full (later: 408 and the connection
    /// closed).
    #[arg(long, env = "TABLEWIRE_BODY_TIMEOUT_SECS", default_value_t = 10)]
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

/// `tablewire edge`.
#[derive(Debug, Clone, Args)]
pub struct EdgeArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub edge: EdgeSettings,
    /// This edge's id (default: host, process id and a random part).
    #[arg(long, env = "TABLEWIRE_EDGE_ID")]
    pub edge_id: Option<String>,
}

/// Handler settings shared by `handler` and `dev`.
#[derive(Debug, Clone, Args)]
pub struct HandlerSettings {
    /// Most commands applied per batch.
    #[arg(long, env = "TABLEWIRE_BATCH_SIZE", default_value_t = 256)]
    pub batch_size: usize,
    /// Most keys of a batch applied concurrently.
    #[arg(long, env = "TABLEWIRE_KEY_CONCURRENCY", default_value_t = 64)]
    pub key_concurrency: usize,
    /// Where finished records go: sqlite://path or postgres://…
    #[arg(long, env = "TABLEWIRE_DATABASE_URL", default_value = tablewire_handlers::store::DEFAULT_URL)]
    pub database_url: String,
    /// Do not run the SQL writer in this process (records wait in their stream).
    #[arg(long, env = "TABLEWIRE_NO_RECORDS")]
    pub no_records: bool,
    /// Collab rooms: seconds without a change before a room is archived and removed.
    #[arg(
        long,
        env = "TABLEWIRE_COLLAB_IDLE_TIMEOUT_SECS",
        default_value_t = 7200
    )]
    pub collab_idle_timeout_secs: u64,
    /// Collab rooms: changes one room accepts per second, sustained.
    #[arg(long, env = "TABLEWIRE_COLLAB_ROOM_RATE", default_value_t = 500)]
    pub collab_room_rate: u32,
    /// Collab rooms: changes one room accepts at once.
    #[arg(long, env = "TABLEWIRE_COLLAB_ROOM_BURST", default_value_t = 1000)]
    pub collab_room_burst: u32,
    /// POS: writes (orders, status changes) one restaurant's book accepts per second, across
    /// every edge and handler; more get RATE_LIMITED.
    #[arg(long, env = "TABLEWIRE_TENANT_ORDER_RATE", default_value_t = tablewire_handlers::pos::TENANT_RATE.per_second)]
    pub tenant_order_rate: u32,
    /// POS: writes one restaurant's book accepts at once.
    #[arg(long, env = "TABLEWIRE_TENANT_ORDER_BURST", default_value_t = tablewire_handlers::pos::TENANT_RATE.burst)]
    pub tenant_order_burst: u32,
    /// Events: `POST /api/events` one restaurant's feed accepts per second, across every edge
    /// and handler; more get RATE_LIMITED.
    #[arg(long, env = "TABLEWIRE_TENANT_EVENT_RATE", default_value_t = tablewire_handlers::events::TENANT_RATE.per_second)]
    pub tenant_event_rate: u32,
    /// Events: events one restaurant's feed accepts at once.
    #[arg(long, env = "TABLEWIRE_TENANT_EVENT_BURST", default_value_t = tablewire_handlers::events::TENANT_RATE.burst)]
    pub tenant_event_burst: u32,
    /// Collab rooms: POST every finalized order to this http:// or https:// URL (retried until
    /// it answers 2xx), signed in `X-Tablewire-Signature: sha256=<HMAC-SHA256 hex>`.
    #[arg(long, env = "TABLEWIRE_COLLAB_WEBHOOK_URL")]
    pub collab_webhook_url: Option<String>,
    /// The HMAC key of the webhook signature.
    #[arg(long, env = "TABLEWIRE_COLLAB_WEBHOOK_SECRET", default_value = "")]
    pub collab_webhook_secret: String,
}

/// `tablewire handler`.
#[derive(Debug, Clone, Args)]
pub struct HandlerArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Domains to work for, comma-separated (display, events, collab; "all" for every one).
    #[arg(
        long,
        env = "TABLEWIRE_DOMAIN",
        value_delimiter = ',',
        default_value = "display"
    )]
    pub domain: Vec<String>,
    /// This worker's id (default: host, process id and a random part).
    #[arg(long, env = "TABLEWIRE_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Serve /metrics and /healthz on this address (off when unset).
    #[arg(long, env = "TABLEWIRE_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub handler: HandlerSettings,
}

/// NATS resource shape shared by `provision` and `dev`.
#[derive(Debug, Clone, Args)]
pub struct TopologyArgs {
    /// Partitions per input stream (the most workers one domain can use at once). Default: the
    /// count a stream already has, 4 for a new one. Changing it needs drained streams.
    #[arg(long, env = "TABLEWIRE_PARTITIONS")]
    pub partitions: Option<u16>,
    /// Replicas of streams and buckets (3 in a 3-node cluster).
    #[arg(long, env = "TABLEWIRE_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// Seconds before an unacknowledged command is delivered again.
    #[arg(long, env = "TABLEWIRE_ACK_WAIT_SECS", default_value_t = 10)]
    pub ack_wait_secs: u64,
    /// Seconds a worker that stopped pulling keeps a partition's pin (one taking over from a
    /// worker that is gone clears the pin at once).
    #[arg(long, env = "TABLEWIRE_PIN_TIMEOUT_SECS", default_value_t = 5)]
    pub pin_timeout_secs: u64,
    /// Seconds a worker's presence lasts without a refresh: how long a hung worker keeps its
    /// partitions (a crashed one is found gone within half a second).
    #[arg(long, env = "TABLEWIRE_WORKER_TTL_SECS", default_value_t = 6)]
    pub worker_ttl_secs: u64,
    /// Seconds a device stays online without a heartbeat or scan (two device heartbeats).
    #[arg(long, env = "TABLEWIRE_DEVICE_PRESENCE_TTL_SECS", default_value_t = 60)]
    pub device_presence_ttl_secs: u64,
    /// New partition consumers acknowledge once per applied batch, not once per command:
    /// faster, but a key whose state cannot be read then holds back its whole partition.
    #[arg(long, env = "TABLEWIRE_ACK_BY_BATCH")]
    pub ack_by_batch: bool,
}

/// `tablewire provision`.
#[derive(Debug, Clone, Args)]
pub struct ProvisionArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub topology: TopologyArgs,
}

/// `tablewire dev`.
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Use this NATS instead of starting a local nats-server.
    #[arg(long, env = "TABLEWIRE_NATS_URL")]
    pub nats_url: Option<String>,
    /// Directory for the local nats-server's store, the SQLite file and dev secrets.
    #[arg(long, env = "TABLEWIRE_DATA_DIR", default_value = ".tablewire")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub edge: EdgeSettings,
    #[command(flatten)]
    pub handler: HandlerSettings,
    #[command(flatten)]
    pub topology: TopologyArgs,
}

/// `tablewire token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The HS256 secret to sign with (the edge's --jwt-secret).
    #[arg(long, env = "TABLEWIRE_JWT_SECRET")]
    pub jwt_secret: String,
    /// The tenant (restaurant) the token is for.
    #[arg(long, default_value = "demo")]
    pub tenant: String,
    /// The role: service, admin, staff, kitchen, device, customer.
    #[arg(long, default_value = "service")]
    pub role: String,
    /// The subject (user, terminal, service or device id).
    #[arg(long, default_value = "dev")]
    pub sub: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 86400)]
    pub ttl_secs: u64,
}

/// `tablewire transcriber`.
#[derive(Debug, Clone, Args)]
pub struct TranscriberArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Base URL of the OpenAI-compatible endpoint (`/v1/audio/transcriptions` is appended).
    #[arg(long, env = "TABLEWIRE_TRANSCRIBER_URL")]
    pub url: String,
    /// The model to ask for.
    #[arg(long, env = "TABLEWIRE_TRANSCRIBER_MODEL", default_value = "whisper-1")]
    pub model: String,
    /// API key, sent as a Bearer token.
    #[arg(long, env = "TABLEWIRE_TRANSCRIBER_API_KEY")]
    pub api_key: Option<String>,
    /// File name sent with the audio; its extension tells the endpoint the format.
    #[arg(
        long,
        env = "TABLEWIRE_TRANSCRIBER_FILE_NAME",
        default_value = "audio.webm"
    )]
    pub file_name: String,
}
