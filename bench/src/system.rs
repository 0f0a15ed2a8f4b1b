//! Starts what a benchmark measures with the testkit ([`tablewire_testkit::System`]: a
//! nats-server of its own, provisioning, `tablewire edge` / `tablewire handler` child processes of
//! this same binary, so the edge's memory and each process's CPU can be read from /proc), and
//! measures it. The chaos soak ([`crate::chaos`]) starts its processes with the same [`launcher`].

use anyhow::{Context, bail};
use std::time::Duration;
use tablewire_nats::Topology;
use tablewire_schemas::Domain;
pub use tablewire_testkit::{Launcher, System, free_addr, wait_until_healthy};

/// The bearer secret benchmark clients post with.
pub const AUTH_SECRET: &str = "bench-secret";
/// The JWT secret of benchmark edges.
pub const JWT_SECRET: &str = "bench-jwt-secret";

/// How many of what to start (the edge and the handlers as [`launcher`] starts them).
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

/// How benchmarks start their edges and handlers: this same binary, with the benchmarks'
/// secrets, generous per-address and per-tenant limits (see [`Launcher::generous_limit`]), and
/// the log filter `log`.
pub fn launcher(log: &str) -> anyhow::Result<Launcher> {
    Ok(Launcher {
        binary: std::env::current_exe().context("locating the tablewire binary")?,
        auth_secret: AUTH_SECRET.to_string(),
        jwt_secret: JWT_SECRET.to_string(),
        generous_limit: 1_000_000,
        log: log.to_string(),
    })
}

/// Starts the system of `shape` ([`System::start`]), its children logging warnings.
pub async fn start(shape: &Shape) -> anyhow::Result<System> {
    start_with(shape, &[]).await
}

/// [`start`] with more flags for the edge.
pub async fn start_with(shape: &Shape, edge_flags: &[&str]) -> anyhow::Result<System> {
    let testkit_shape = tablewire_testkit::Shape {
        nats_nodes: 1,
        handlers: shape.handlers,
        topology: shape.streams.topology(),
        domains: shape.domains.clone(),
        database_url: shape.database_url.clone(),
        edge_flags: edge_flags.iter().map(|f| f.to_string()).collect(),
    };
    System::start(&launcher("warn")?, &testkit_shape).await
}

/// Starts one more edge on `system`'s nats-server, as [`start_with`] starts the first, with
/// `edge_flags`; returns its address.
pub async fn start_edge(
    system: &mut System,
    edge_flags: &[&str],
) -> anyhow::Result<std::net::SocketAddr> {
    system.start_edge(&launcher("warn")?, edge_flags).await
}

/// Raises this process's soft limit of open files to its hard limit (children started afterwards
/// inherit it); fails, saying what to change, when the limit reached is below `need`. Returns
/// the new soft limit.
pub fn raise_file_limit(need: u64) -> anyhow::Result<u64> {
    let (_, now) = tablewire_edge::admission::raise_open_file_limit()
        .map_err(|e| anyhow::anyhow!("cannot raise the open file limit: {e}"))?
        .ok_or_else(|| anyhow::anyhow!("this system has no open file limit to raise"))?;
    if now != libc::RLIM_INFINITY && now < need {
        bail!(
            "the hard limit of open files is {now}, below the {need} one process here needs: raise it (`ulimit -Hn`, LimitNOFILE=, limits.conf) or ask for fewer sockets per edge and per load process"
        );
    }
    Ok(now)
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
