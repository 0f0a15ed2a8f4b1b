//! Command-line flags of every `tablewire` subcommand. Each flag can also be set with the
//! `TABLEWIRE_…` environment variable named in `--help`, or in a config file
//! ([`crate::config_file`]). The edge's, handler's and provisioning flags are the libraries' own
//! (`EdgeSettings`, `HandlerSettings`, `TopologyArgs`), defaults included.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
pub use tablewire_edge::EdgeSettings;
pub use tablewire_handlers::HandlerSettings;
pub use tablewire_nats::TopologyArgs;

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
    /// A TOML file of settings (keys: the flags' names with `_`; see the README's
    /// "Configuration"). Flags and environment variables win over it.
    #[arg(long, global = true, env = "TABLEWIRE_CONFIG")]
    pub config: Option<PathBuf>,
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
    /// Config files: `config check FILE` validates one and prints the settings it gives.
    Config(ConfigArgs),
}

/// `tablewire config`.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// What to do with a config file.
#[derive(Debug, Clone, Subcommand)]
pub enum ConfigCommand {
    /// Validate FILE (unknown keys and bad values fail) and print the settings each command it
    /// has a section for would run with — or COMMAND with FLAGS — and where each came from
    /// (flag, environment, file, default).
    Check {
        /// The TOML file.
        file: PathBuf,
        /// A command and its flags, e.g. `edge --listen 0.0.0.0:8080`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

/// How to reach NATS.
#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated. Needs nats-server 2.11 or newer with JetStream.
    #[arg(long, env = "TABLEWIRE_NATS_URL", default_value = tablewire_nats::DEFAULT_URL)]
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

/// `tablewire handler`.
#[derive(Debug, Clone, Args)]
pub struct HandlerArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Domains to work for, comma-separated: display, collab, pos, device, events, voice, or
    /// "all" for every one.
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
    /// The role: service, admin, manager, staff, kitchen, device, customer.
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
