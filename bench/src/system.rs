//! Starts what a benchmark measures: a nats-server of its own, provisioning, and `tablewire
//! edge` / `tablewire handler` child processes of this same binary (so the edge's memory and
//! each process's CPU can be read from /proc). Everything is stopped when dropped. The chaos
//! soak ([`crate::chaos`]) starts its edges and handlers with the same commands.

use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;
use tablewire_nats::{NatsServer, ServerOptions, Topology};
use tablewire_schemas::Domain;
use tokio::process::{Child, Command};

/// The bearer secret benchmark clients post with.
pub const AUTH_SECRET: &str = "bench-secret";
/// The JWT secret of benchmark edges.
pub const JWT_SECRET: &str = "bench-jwt-secret";

/// A running system.
pub struct System {
    /// The nats-server.
    pub nats: NatsServer,
    /// The edge's address.
    pub edge_addr: SocketAddr,
    /// The edge process.
    pub edge: Child,
    /// The handler processes.
    pub handlers: Vec<Child>,
    /// Where the first handler serves its metrics.
    pub handler_metrics: SocketAddr,
}

/// How many of what to start.
pub struct Shape {
    /// Handler processes.
    pub handlers: usize,
    /// How the input streams are provisioned.
    pub streams: StreamArgs,
    /// Domains the handlers work for.
    pub domains: Vec<Domain>,
    /// Where the first handler's SQL writer writes records; `None` runs no SQL writer (records
    /// wait in their stream).
    pub database_url: Option<String>,
}

/// How every benchmark provisions the input streams.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamArgs {
    /// Partitions of each input stream (default: as `tablewire provision`).
    #[arg(long)]
    pub partitions: Option<u16>,
    /// Partition consumers acknowledge once per batch instead of once per command (see
    /// `tablewire provision --ack-by-batch`).
    #[arg(long)]
    pub ack_by_batch: bool,
}

impl StreamArgs {
    /// The topology these flags ask for, the rest as `tablewire dev` has it.
    pub fn topology(&self) -> Topology {
        Topology {
            partitions: self.partitions,
            ack_by_batch: self.ack_by_batch,
            ..Default::default()
        }
    }
}

/// Flags every benchmark edge gets: all load comes from 127.0.0.1 (up to 15,000 sockets, opened
/// as fast as the machine can), which a production edge's per-address limits would refuse.
/// Generous values rather than none, so the limits' cost is measured with the rest. The global
/// cap stays at its default, the file limit less a reserve.
pub const EDGE_LIMIT_FLAGS: [&str; 4] = [
    "--max-connections-per-ip",
    "1000000",
    "--connection-rate-per-ip",
    "1000000",
];

/// Flags every benchmark handler gets: a benchmark drives each tenant far faster than a
/// restaurant does, which the per-tenant write rates of production would refuse. Generous
/// values rather than none, so the limits' cost is measured with the rest.
pub const HANDLER_LIMIT_FLAGS: [&str; 8] = [
    "--tenant-order-rate",
    "1000000",
    "--tenant-order-burst",
    "1000000",
    "--tenant-event-rate",
    "1000000",
    "--tenant-event-burst",
    "1000000",
];

/// A loopback address with a port free a moment ago, for a process to listen on.
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

impl System {
    /// Starts nats-server, provisions, starts the edge and the handlers, and waits until the
    /// edge answers `/healthz`.
    pub async fn start(shape: &Shape) -> anyhow::Result<System> {
        let nats = NatsServer::start(ServerOptions::default())
            .await
            .context("starting nats-server")?;
        let client = tablewire_nats::connect(nats.client_url(), "tablewire-bench").await?;
        let js = async_nats::jetstream::new(client);
        let topology = shape.streams.topology();
        tablewire_nats::provision(&js, Domain::ALL, &topology).await?;
        let edge_addr = free_addr()?;
        let edge = edge_command(nats.client_url(), edge_addr, "warn", &[])?
            .spawn()
            .context("starting the edge")?;
        let mut handlers = Vec::new();
        let handler_metrics = free_addr()?;
        for i in 0..shape.handlers {
            let metrics = if i == 0 {
                handler_metrics
            } else {
                free_addr()?
            };
            // One SQL writer (SQLite takes one writer).
            let records = shape.database_url.as_deref().filter(|_| i == 0);
            let handler = handler_command(
                nats.client_url(),
                &shape.domains,
                records,
                Some(metrics),
                "warn",
            )?
            .spawn()
            .context("starting a handler")?;
            handlers.push(handler);
        }
        let system = System {
            nats,
            edge_addr,
            edge,
            handlers,
            handler_metrics,
        };
        system.wait_healthy().await?;
        Ok(system)
    }

    async fn wait_healthy(&self) -> anyhow::Result<()> {
        wait_until_healthy(self.edge_addr, Duration::from_secs(30)).await
    }

    /// The edge's process id.
    pub fn edge_pid(&self) -> Option<u32> {
        self.edge.id()
    }

    /// Process ids by role, for CPU accounting.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        let mut pids = Vec::new();
        if let Some(p) = self.nats.pid() {
            pids.push(("nats-server", p));
        }
        if let Some(p) = self.edge.id() {
            pids.push(("edge", p));
        }
        for h in &self.handlers {
            if let Some(p) = h.id() {
                pids.push(("handler", p));
            }
        }
        pids
    }
}

/// Waits until the edge on `addr` answers `/healthz` with 200, at most `limit`.
pub async fn wait_until_healthy(addr: SocketAddr, limit: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Ok((200, _)) = crate::client::get(addr, "/healthz").await {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the edge did not become healthy on {addr}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `tablewire edge` as a child process of this same binary, listening on `addr` with the
/// benchmarks' secrets (and `extra` flags), logging at `log` to stdout; killed when dropped and
/// when the benchmark dies, however it dies.
pub fn edge_command(
    nats_url: &str,
    addr: SocketAddr,
    log: &str,
    extra: &[&str],
) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("locating the tablewire binary")?;
    let mut edge = Command::new(exe);
    edge.args(["--log", log, "edge", "--nats-url", nats_url])
        .args([
            "--listen",
            &addr.to_string(),
            "--auth-secret",
            AUTH_SECRET,
            "--jwt-secret",
            JWT_SECRET,
        ])
        .args(EDGE_LIMIT_FLAGS)
        .args(extra)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tablewire_nats::server::kill_with_parent(&mut edge);
    Ok(edge)
}

/// `tablewire handler` for `domains` as a child process of this same binary: with the SQL
/// writer on `database_url` when given (else `--no-records`), serving metrics on `metrics`
/// when given, logging at `log` to stdout; killed when dropped and when the benchmark dies.
pub fn handler_command(
    nats_url: &str,
    domains: &[Domain],
    database_url: Option<&str>,
    metrics: Option<SocketAddr>,
    log: &str,
) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("locating the tablewire binary")?;
    let domains = domains
        .iter()
        .map(|d| d.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let mut handler = Command::new(exe);
    handler.args([
        "--log",
        log,
        "handler",
        "--nats-url",
        nats_url,
        "--domain",
        &domains,
    ]);
    handler.args(HANDLER_LIMIT_FLAGS);
    match database_url {
        Some(url) => handler.args(["--database-url", url]),
        None => handler.arg("--no-records"),
    };
    if let Some(metrics) = metrics {
        handler.args(["--metrics-listen", &metrics.to_string()]);
    }
    handler.stdin(Stdio::null()).kill_on_drop(true);
    tablewire_nats::server::kill_with_parent(&mut handler);
    Ok(handler)
}

impl Drop for System {
    /// Ends the edge and the handlers before nats-server stops (fields drop after this), so
    /// they do not log a lost NATS connection at the end of every benchmark.
    fn drop(&mut self) {
        let mut children: Vec<&mut Child> = self.handlers.iter_mut().collect();
        children.push(&mut self.edge);
        for child in &mut children {
            let _ = child.start_kill();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        for child in children {
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Waits until the `streams` hold nothing (their retention keeps only what a consumer has not
/// yet acknowledged), at most `limit`; returns how long that took.
pub async fn wait_for_drained(
    js: &async_nats::jetstream::Context,
    streams: &[String],
    limit: Duration,
) -> anyhow::Result<Duration> {
    let started = std::time::Instant::now();
    loop {
        let mut waiting = 0;
        for name in streams {
            // Fetching the stream fetches its info: no second request.
            let stream = js.get_stream(name).await.context("stream info")?;
            waiting += stream.cached_info().state.messages;
        }
        if waiting == 0 {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("{waiting} messages still unapplied after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (up to two minutes) until `count_sql` (a `SELECT COUNT(*)`, its one parameter bound to
/// `bind` when given) counts `expected` rows in the database at `url`, the SQL writer having
/// caught up, and prints how many there are: `rows in SQL: N of M {what} (…; s after the last
/// {last})`.
pub async fn report_rows(
    url: &str,
    count_sql: &'static str,
    bind: Option<&str>,
    expected: u64,
    what: &str,
    last: &str,
) -> anyhow::Result<()> {
    let pool = tablewire_handlers::store::connect(url)
        .await
        .context("opening the benchmark's database")?;
    let waited = std::time::Instant::now();
    let mut rows = 0;
    while waited.elapsed() < Duration::from_secs(120) {
        let query = sqlx::query_as::<_, (i64,)>(count_sql);
        let query = match bind {
            Some(value) => query.bind(value),
            None => query,
        };
        rows = query
            .fetch_one(&pool)
            .await
            .map(|r| r.0 as u64)
            .unwrap_or(0);
        if rows >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "  rows in SQL: {rows} of {expected} {what} ({}; {:.1} s after the last {last})",
        if rows == expected {
            "all written"
        } else {
            "MISMATCH"
        },
        waited.elapsed().as_secs_f64()
    );
    pool.close().await;
    Ok(())
}

/// Resident memory of a process, bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time (user + system) a process has used, seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// CPU seconds of the bench process itself.
pub fn own_cpu_seconds() -> Option<f64> {
    cpu_seconds(std::process::id())
}
