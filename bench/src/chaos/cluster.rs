//! The processes under test: a 3-node NATS cluster started by the testkit ([`Nats`]; every
//! stream and bucket provisioned with 3 replicas), two `tablewire edge` and two `tablewire handler` child processes of this binary
//! (each handler also runs the SQL writer, on the private PostgreSQL), and how each is killed
//! with SIGKILL and brought back. Child logs go to files in the run's directory. Everything is
//! ended when dropped, and with the soak however it dies.

use super::postgres::Postgres;
use crate::system::{free_addr, launcher, wait_until_healthy};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tablewire_nats::{Cluster, ServerOptions, Topology};
use tablewire_schemas::Domain;
use tablewire_testkit::nats::{Nats, provision};
use tokio::process::{Child, Command};

/// One `tablewire` child process that can be killed and started again the same way.
pub(super) struct Proc {
    /// `edge-1`, `handler-2`, …
    pub name: String,
    make: Box<dyn Fn() -> anyhow::Result<Command> + Send + Sync>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn new(
        name: String,
        dir: &Path,
        make: Box<dyn Fn() -> anyhow::Result<Command> + Send + Sync>,
    ) -> Proc {
        let log = dir.join(format!("{name}.log"));
        Proc {
            name,
            make,
            log,
            child: None,
        }
    }

    /// Starts it (again), its output appended to its log.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut command = (self.make)()?;
        command.stdout(log.try_clone()?).stderr(log);
        self.child = Some(
            command
                .spawn()
                .with_context(|| format!("starting {}", self.name))?,
        );
        Ok(())
    }

    /// Kills it with SIGKILL, as a crash would, and reaps it.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// How it exited, when it exited by itself (it should not).
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    fn start_kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// Everything under test.
pub(super) struct Processes {
    pub cluster: Cluster,
    pub edges: Vec<Proc>,
    pub edge_addrs: Vec<SocketAddr>,
    pub handlers: Vec<Proc>,
    /// Where each handler serves `/metrics` (its readiness).
    pub handler_metrics: Vec<SocketAddr>,
    pub postgres: Postgres,
    /// Children that exited by themselves and were started again, with how they exited.
    pub restarts: Vec<String>,
}

/// Edges and handlers the soak runs.
pub(super) const EDGES: usize = 2;
pub(super) const HANDLERS: usize = 2;

impl Processes {
    /// Starts PostgreSQL, the cluster, provisioning (replicas 3, `topology` otherwise), the
    /// handlers and the edges, and waits until both edges are healthy.
    pub async fn start(
        dir: &Path,
        topology: &Topology,
        child_log: &str,
    ) -> anyhow::Result<Processes> {
        let postgres = Postgres::start_in(&dir.join("postgres"))
            .await
            .context("starting the private PostgreSQL")?;
        let cluster = Nats::start(3, ServerOptions::default())
            .await?
            .into_cluster()
            .context("a 3-node NATS cluster")?;
        let urls = cluster.client_urls();
        let topology = Topology {
            replicas: 3,
            ..topology.clone()
        };
        provision(&urls, &topology)
            .await
            .context("provisioning with replicas 3")?;
        let launcher = launcher(child_log)?;
        let mut handlers = Vec::new();
        let mut handler_metrics = Vec::new();
        for i in 0..HANDLERS {
            let metrics = free_addr()?;
            let (urls, db, launcher) = (urls.clone(), postgres.url(), launcher.clone());
            let make = move || Ok(launcher.handler(&urls, Domain::ALL, Some(&db), Some(metrics)));
            let mut handler = Proc::new(format!("handler-{}", i + 1), dir, Box::new(make));
            handler.start()?;
            handlers.push(handler);
            handler_metrics.push(metrics);
        }
        let mut edges = Vec::new();
        let mut edge_addrs = Vec::new();
        for i in 0..EDGES {
            let addr = free_addr()?;
            let (urls, launcher) = (urls.clone(), launcher.clone());
            // Readers connect without a token, as `tablewire dev` has them (seed 003's devices
            // send only their id).
            let make = move || Ok(launcher.edge(&urls, addr, &["--device-auth", "none"]));
            let mut edge = Proc::new(format!("edge-{}", i + 1), dir, Box::new(make));
            edge.start()?;
            edges.push(edge);
            edge_addrs.push(addr);
        }
        for addr in &edge_addrs {
            wait_until_healthy(*addr, Duration::from_secs(60)).await?;
        }
        for addr in &handler_metrics {
            wait_until_handler_ready(*addr, Duration::from_secs(60)).await?;
        }
        Ok(Processes {
            cluster,
            edges,
            edge_addrs,
            handlers,
            handler_metrics,
            postgres,
            restarts: Vec::new(),
        })
    }

    /// Starts again any edge or handler that exited by itself, as a supervisor would, and
    /// remembers it (at `at`, seconds into the load) for the report.
    pub fn supervise(&mut self, at: Duration) -> Vec<String> {
        let mut restarted = Vec::new();
        for p in self.edges.iter_mut().chain(self.handlers.iter_mut()) {
            if let Some(status) = p.exited() {
                let line = format!(
                    "{} exited by itself ({status}) at {:.1} s; started again",
                    p.name,
                    at.as_secs_f64()
                );
                if let Err(e) = p.start() {
                    restarted.push(format!("{line} — FAILED: {e:#}"));
                } else {
                    restarted.push(line);
                }
            }
        }
        self.restarts.extend(restarted.iter().cloned());
        restarted
    }

    /// The cluster's client URLs.
    pub fn urls(&self) -> String {
        self.cluster.client_urls()
    }
}

/// Waits until the handler serving metrics on `addr` runs every domain (its runtime has
/// reported the partitions it owns for each), at most `limit`.
pub(super) async fn wait_until_handler_ready(
    addr: SocketAddr,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Ok((200, text)) = crate::client::get(addr, "/metrics").await
            && Domain::ALL
                .iter()
                .all(|d| text.contains(&format!("partitions_owned{{domain=\"{}\"}}", d.as_str())))
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("the handler with metrics on {addr} did not start every domain");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Drop for Processes {
    /// Ends the edges and handlers before the cluster and PostgreSQL (fields drop after this),
    /// so they do not log lost connections at the end of every run.
    fn drop(&mut self) {
        for p in self.edges.iter_mut().chain(self.handlers.iter_mut()) {
            p.start_kill();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        for p in self.edges.iter_mut().chain(self.handlers.iter_mut()) {
            if let Some(child) = p.child.as_mut() {
                while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}
