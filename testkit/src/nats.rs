//! The NATS a system runs on — one nats-server or a cluster — started by one function
//! ([`Nats::start`]) and provisioned by another ([`provision`]), for [`crate::System`], the chaos
//! soak and `tablewire dev`, so a fix to how servers start lands in all of them.

use anyhow::Context;
use tablewire_nats::{Cluster, NatsServer, ServerOptions, Topology};
use tablewire_schemas::Domain;

/// One nats-server or a cluster of them, stopped when dropped.
pub struct Nats {
    servers: Servers,
    /// What clients connect to: the server's URL, or every node's, comma-separated.
    urls: String,
}

enum Servers {
    /// Boxed: a server is eight times the size of a cluster's handle.
    One(Box<NatsServer>),
    Cluster(Cluster),
}

impl Nats {
    /// Starts NATS: with `nodes` of 0 or 1, one server as `options` ask (a temporary store when
    /// they name none); with more, a cluster of that many nodes on free ports and temporary
    /// stores (`options` are for one server only and must be the default). Waits until it is
    /// ready (a cluster: until JetStream has a meta leader).
    pub async fn start(nodes: usize, options: ServerOptions) -> anyhow::Result<Nats> {
        let servers = if nodes <= 1 {
            let server = NatsServer::start(options)
                .await
                .context("starting nats-server")?;
            Servers::One(Box::new(server))
        } else {
            anyhow::ensure!(
                options.store_dir.is_none() && options.config.is_none() && options.port.is_none(),
                "a cluster takes no server options"
            );
            let cluster = Cluster::start(nodes)
                .await
                .with_context(|| format!("starting a {nodes}-node NATS cluster"))?;
            Servers::Cluster(cluster)
        };
        let urls = match &servers {
            Servers::One(server) => server.client_url().to_string(),
            Servers::Cluster(cluster) => cluster.client_urls(),
        };
        Ok(Nats { servers, urls })
    }

    /// The URL (one server) or comma-separated URLs (every node of a cluster) clients use.
    pub fn client_url(&self) -> &str {
        &self.urls
    }

    /// The servers, in order.
    pub fn servers(&self) -> Vec<&NatsServer> {
        match &self.servers {
            Servers::One(server) => vec![&**server],
            Servers::Cluster(cluster) => cluster.nodes.iter().collect(),
        }
    }

    /// The first server's HTTP monitoring URL, when it was started with one.
    pub fn monitor_url(&self) -> Option<&str> {
        self.servers().first().and_then(|s| s.monitor_url())
    }

    /// The cluster, when this is one, to kill and restart its nodes.
    pub fn cluster_mut(&mut self) -> Option<&mut Cluster> {
        match &mut self.servers {
            Servers::Cluster(cluster) => Some(cluster),
            Servers::One(_) => None,
        }
    }

    /// The cluster, when this is one, for a caller that supervises its nodes itself.
    pub fn into_cluster(self) -> Option<Cluster> {
        match self.servers {
            Servers::Cluster(cluster) => Some(cluster),
            Servers::One(_) => None,
        }
    }

    /// Stops every server (SIGTERM, then waits for it), as dropping does but awaited.
    pub async fn stop(&mut self) {
        match &mut self.servers {
            Servers::One(server) => server.stop().await,
            Servers::Cluster(cluster) => {
                for node in &mut cluster.nodes {
                    node.stop().await;
                }
            }
        }
    }
}

/// Creates every domain's streams, consumers and buckets on the NATS at `urls` as `topology`
/// says (idempotent), on a connection of its own that is drained after.
pub async fn provision(urls: &str, topology: &Topology) -> anyhow::Result<()> {
    let client = tablewire_nats::connect(urls, "tablewire-provision").await?;
    let js = async_nats::jetstream::new(client.clone());
    tablewire_nats::provision(&js, Domain::ALL, topology).await?;
    let _ = client.drain().await;
    Ok(())
}
