//! A whole system for one benchmark or test: a nats-server of its own or a cluster
//! ([`crate::Nats`]), provisioning, an edge (more with [`System::start_edge`]) and handler
//! processes ([`crate::Launcher`]), with one SQL writer among the handlers (SQLite takes one
//! writer). Everything is stopped when dropped.
//! Used by every `tablewire bench` but the chaos soak, which supervises processes of its own
//! with the same launcher on the same [`crate::Nats`].

use crate::nats::{Nats, provision};
use crate::process::Launcher;
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::time::Duration;
use tablewire_nats::{ServerOptions, Topology};
use tablewire_schemas::Domain;
use tokio::process::Child;

/// What to start.
#[derive(Debug, Clone)]
pub struct Shape {
    /// NATS servers: 0 or 1 for one server, 3 for a cluster (give `topology` replicas 3 for R3
    /// streams and buckets).
    pub nats_nodes: usize,
    /// Handler processes (at least one is started).
    pub handlers: usize,
    /// How the NATS resources are provisioned.
    pub topology: Topology,
    /// Domains the handlers work for.
    pub domains: Vec<Domain>,
    /// Where the first handler's SQL writer writes records (the others run none); `None` runs
    /// no SQL writer (records wait in their stream).
    pub database_url: Option<String>,
    /// Flags the edge gets besides the launcher's.
    pub edge_flags: Vec<String>,
}

/// A running system.
pub struct System {
    /// The nats-server, or the cluster.
    pub nats: Nats,
    /// The edge's address.
    pub edge_addr: SocketAddr,
    /// The edge process.
    pub edge: Child,
    /// The handler processes.
    pub handlers: Vec<Child>,
    /// Where the first handler serves its metrics.
    pub handler_metrics: SocketAddr,
    /// Edges started after the first ([`System::start_edge`]): address and process.
    pub more_edges: Vec<(SocketAddr, Child)>,
}

/// A loopback address with a port free a moment ago, for a process to listen on.
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

impl System {
    /// Starts nats-server, provisions, starts the edge and the handlers with `launcher`, and
    /// waits until the edge answers `/healthz`.
    pub async fn start(launcher: &Launcher, shape: &Shape) -> anyhow::Result<System> {
        let nats = Nats::start(shape.nats_nodes, ServerOptions::default()).await?;
        let nats_url = nats.client_url().to_string();
        provision(&nats_url, &shape.topology).await?;
        let edge_addr = free_addr()?;
        let edge_flags: Vec<&str> = shape.edge_flags.iter().map(String::as_str).collect();
        let edge = launcher
            .edge(&nats_url, edge_addr, &edge_flags)
            .spawn()
            .context("starting the edge")?;
        let mut handlers = Vec::new();
        let handler_metrics = free_addr()?;
        for i in 0..shape.handlers.max(1) {
            let metrics = if i == 0 {
                handler_metrics
            } else {
                free_addr()?
            };
            // One SQL writer (SQLite takes one writer).
            let records = shape.database_url.as_deref().filter(|_| i == 0);
            let handler = launcher
                .handler(&nats_url, &shape.domains, records, Some(metrics))
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
            more_edges: Vec::new(),
        };
        wait_until_healthy(system.edge_addr, Duration::from_secs(30)).await?;
        Ok(system)
    }

    /// Starts one more edge on the same nats-server with `launcher` and `flags`, and waits until
    /// it answers `/healthz`; returns its address. It is stopped with the rest.
    pub async fn start_edge(
        &mut self,
        launcher: &Launcher,
        flags: &[&str],
    ) -> anyhow::Result<SocketAddr> {
        let addr = free_addr()?;
        let edge = launcher
            .edge(self.nats.client_url(), addr, flags)
            .spawn()
            .context("starting another edge")?;
        self.more_edges.push((addr, edge));
        wait_until_healthy(addr, Duration::from_secs(30)).await?;
        Ok(addr)
    }

    /// The edge's process id.
    pub fn edge_pid(&self) -> Option<u32> {
        self.edge.id()
    }

    /// Process ids by role, for CPU accounting.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        let mut pids = Vec::new();
        for server in self.nats.servers() {
            if let Some(p) = server.pid() {
                pids.push(("nats-server", p));
            }
        }
        for edge in std::iter::once(&self.edge).chain(self.more_edges.iter().map(|(_, e)| e)) {
            if let Some(p) = edge.id() {
                pids.push(("edge", p));
            }
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

impl Drop for System {
    /// Ends the edge and the handlers before nats-server stops (fields drop after this), so
    /// they do not log a lost NATS connection at the end of every benchmark.
    fn drop(&mut self) {
        let mut children: Vec<&mut Child> = self.handlers.iter_mut().collect();
        children.push(&mut self.edge);
        children.extend(self.more_edges.iter_mut().map(|(_, edge)| edge));
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
