//! The faults: which come in what order, how each is inflicted and undone, and what it cost.
//! A NATS victim is chosen by asking the cluster which node leads each stream and KV bucket
//! (`$JS.API.STREAM.INFO.<name>` → `cluster.leader`): the node leading the most streams whose
//! leader has not been killed yet, so that over the run every stream and bucket loses its
//! leader. A killed node is started again and the next fault waits until every stream and
//! consumer has a leader and all its replicas are current: killing a second node before the
//! first has caught up would be two failures at once, which replicas 3 does not promise to
//! survive.

use super::cluster::Processes;
use super::recovery::{FaultRecovery, Recovery};
use anyhow::Context;
use async_nats::jetstream;
use futures::TryStreamExt;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tablewire_nats::resource;

/// How long clients get to be answered again after a fault before it counts as unrecovered.
pub(super) const RECOVERY_LIMIT: Duration = Duration::from_secs(60);

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    /// SIGKILL to a NATS node (the victim is chosen by leadership).
    Nats,
    /// SIGKILL to edge `n`.
    Edge(usize),
    /// SIGKILL to a handler: the one owning the most partitions, `n` when they own as many.
    Handler(usize),
    /// PostgreSQL stopped for the outage's length, then started again.
    Postgres,
}

impl Fault {
    /// The kind's name in the report.
    pub fn kind(self) -> &'static str {
        match self {
            Fault::Nats => "nats node",
            Fault::Edge(_) => "edge",
            Fault::Handler(_) => "handler",
            Fault::Postgres => "postgresql",
        }
    }
}

/// The order of the faults: the NATS kills, with the others spread evenly between them (edges
/// and handlers alternating their victims).
pub(super) fn schedule(nats: usize, edges: usize, handlers: usize, postgres: usize) -> Vec<Fault> {
    let mut others = Vec::new();
    let (mut e, mut h, mut p) = (0, 0, 0);
    while e < edges || h < handlers || p < postgres {
        if e < edges {
            others.push(Fault::Edge(e % super::cluster::EDGES));
            e += 1;
        }
        if h < handlers {
            others.push(Fault::Handler(h % super::cluster::HANDLERS));
            h += 1;
        }
        if p < postgres {
            others.push(Fault::Postgres);
            p += 1;
        }
    }
    let total = nats + others.len();
    let mut faults = Vec::with_capacity(total);
    let mut placed = 0;
    for slot in 0..total {
        // Other fault j goes at slot floor((j + 0.5) * total / others).
        let due = placed < others.len() && slot * others.len() >= (2 * placed + 1) * total / 2;
        if due || faults.len() + (others.len() - placed) >= total {
            faults.push(others[placed]);
            placed += 1;
        } else {
            faults.push(Fault::Nats);
        }
    }
    faults
}

/// What one fault did.
pub(super) struct Outcome {
    pub fault: Fault,
    /// When it began, from the start of the load.
    pub at: Duration,
    /// What was killed or stopped.
    pub victim: String,
    /// Streams and buckets whose leader the victim was (NATS kills).
    pub leaders: Vec<String>,
    pub recovery: FaultRecovery,
    /// NATS kills: when every stream and consumer had a live leader again (nats-server's own
    /// part of the recovery).
    pub elected: Option<Duration>,
    /// How long bringing the victim back took: restart until healthy (edge), until it runs
    /// every domain (handler), until every replica is current again (NATS), until the records
    /// written meanwhile are in SQL (PostgreSQL, from its restart).
    pub back: Option<Duration>,
    /// Anything odd.
    pub note: String,
}

/// How often each stream has lost its leader, and which node each kill took.
#[derive(Default)]
pub(super) struct Leadership {
    /// Stream (KV buckets as `KV_<bucket>`) → kills of its leader.
    pub hits: BTreeMap<String, u32>,
    /// Kills per node.
    pub kills: Vec<u32>,
}

impl Leadership {
    fn choose(&self, leaders: &BTreeMap<String, Option<String>>, procs: &Processes) -> usize {
        let nodes = procs.cluster.nodes.len();
        let mut best = (0, (0, 0, i64::MIN));
        for node in 0..nodes {
            let led: Vec<&String> = leaders
                .iter()
                .filter(|(_, leader)| {
                    leader.as_deref().and_then(|l| procs.cluster.node_index(l)) == Some(node)
                })
                .map(|(stream, _)| stream)
                .collect();
            let unhit = led
                .iter()
                .filter(|s| self.hits.get(s.as_str()).copied().unwrap_or(0) == 0)
                .count();
            let killed = self.kills.get(node).copied().unwrap_or(0);
            // Most leaders not hit yet, then most leaders, then the node killed least.
            let score = (unhit, led.len(), -i64::from(killed));
            if score > best.1 {
                best = (node, score);
            }
        }
        best.0
    }
}

/// Every stream's current leader (server name), KV buckets included.
pub(super) async fn leaders(
    js: &jetstream::Context,
) -> anyhow::Result<BTreeMap<String, Option<String>>> {
    let names: Vec<String> = js.stream_names().try_collect().await?;
    let mut leaders = BTreeMap::new();
    for name in names {
        let info = js.get_stream(&name).await?.cached_info().clone();
        leaders.insert(name, info.cluster.and_then(|c| c.leader));
    }
    Ok(leaders)
}

/// Until every stream and every consumer of the input and records streams has a leader and all
/// its replicas current (after a node came back), at most `limit`; how long that took.
pub(super) async fn wait_until_current(
    js: &jetstream::Context,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let last_problem = match lagging(js).await {
            Ok(None) => return Ok(started.elapsed()),
            Ok(Some(problem)) => problem,
            Err(e) => e.to_string(),
        };
        if started.elapsed() > limit {
            anyhow::bail!("the cluster did not catch up within {limit:?}: {last_problem}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether every stream, and every consumer of the input and records streams, has a leader
/// other than `victim` (which is dead).
async fn all_led(js: &jetstream::Context, victim: &str) -> anyhow::Result<bool> {
    let led = |cluster: Option<async_nats::jetstream::stream::ClusterInfo>| {
        cluster
            .and_then(|c| c.leader)
            .is_some_and(|leader| leader != victim)
    };
    let names: Vec<String> = js.stream_names().try_collect().await?;
    for name in names {
        let stream = js.get_stream(&name).await?;
        if !led(stream.cached_info().cluster.clone()) {
            return Ok(false);
        }
        if !(name.starts_with("TW_IN_") || name == resource::RECORDS_STREAM) {
            continue;
        }
        let consumers: Vec<String> = stream.consumer_names().try_collect().await?;
        for consumer in consumers {
            if !led(stream.consumer_info(&consumer).await?.cluster) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// How long after `since` every stream and consumer had a live leader again (polled until
/// `limit`).
async fn elected(
    js: &jetstream::Context,
    victim: &str,
    since: Instant,
    limit: Duration,
) -> Option<Duration> {
    while since.elapsed() < limit {
        if let Ok(Ok(true)) =
            tokio::time::timeout(Duration::from_secs(2), all_led(js, victim)).await
        {
            return Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// The first stream or consumer without a leader or with a replica not current, if any.
async fn lagging(js: &jetstream::Context) -> anyhow::Result<Option<String>> {
    let behind = |cluster: Option<async_nats::jetstream::stream::ClusterInfo>| match cluster {
        None => Some("no cluster info".to_string()),
        Some(c) if c.leader.is_none() => Some("no leader".to_string()),
        Some(c) => c
            .replicas
            .iter()
            .find(|r| !r.current || r.offline)
            .map(|r| format!("replica {} not current", r.name)),
    };
    let names: Vec<String> = js.stream_names().try_collect().await?;
    for name in names {
        let stream = js.get_stream(&name).await?;
        if let Some(why) = behind(stream.cached_info().cluster.clone()) {
            return Ok(Some(format!("{name}: {why}")));
        }
        if !(name.starts_with("TW_IN_") || name == resource::RECORDS_STREAM) {
            continue;
        }
        let consumers: Vec<String> = stream.consumer_names().try_collect().await?;
        for consumer in consumers {
            let info = stream.consumer_info(&consumer).await?;
            if let Some(why) = behind(info.cluster.clone()) {
                return Ok(Some(format!("{name}/{consumer}: {why}")));
            }
        }
    }
    Ok(None)
}

/// Inflicts `fault`, measures the recovery, and undoes it (restart, start again).
pub(super) async fn inflict(
    fault: Fault,
    procs: &mut Processes,
    recovery: &Recovery,
    js: &jetstream::Context,
    leadership: &mut Leadership,
    postgres_outage: Duration,
    load_started: Instant,
) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome {
        fault,
        at: Duration::ZERO,
        victim: String::new(),
        leaders: Vec::new(),
        recovery: FaultRecovery::default(),
        elected: None,
        back: None,
        note: String::new(),
    };
    match fault {
        Fault::Nats => {
            let current = retry("asking for stream leaders", || leaders(js)).await?;
            for stream in current.keys() {
                leadership.hits.entry(stream.clone()).or_insert(0);
            }
            let victim = leadership.choose(&current, procs);
            let name = tablewire_nats::server::node_name(victim);
            outcome.leaders = current
                .iter()
                .filter(|(_, leader)| leader.as_deref() == Some(name.as_str()))
                .map(|(stream, _)| stream.clone())
                .collect();
            let at = Instant::now();
            outcome.at = at - load_started;
            recovery.begin(at);
            procs.cluster.nodes[victim].kill().await;
            let (recovered, elected) = tokio::join!(
                recovery.wait(RECOVERY_LIMIT),
                elected(js, &name, at, RECOVERY_LIMIT)
            );
            outcome.recovery = recovered;
            outcome.elected = elected;
            for stream in &outcome.leaders {
                *leadership.hits.entry(stream.clone()).or_insert(0) += 1;
            }
            if leadership.kills.len() < procs.cluster.nodes.len() {
                leadership.kills.resize(procs.cluster.nodes.len(), 0);
            }
            leadership.kills[victim] += 1;
            outcome.victim = name;
            let restarted = Instant::now();
            procs.cluster.nodes[victim]
                .restart()
                .await
                .context("restarting a NATS node")?;
            wait_until_current(js, Duration::from_secs(120)).await?;
            outcome.back = Some(restarted.elapsed());
        }
        Fault::Edge(i) => {
            let at = Instant::now();
            outcome.at = at - load_started;
            outcome.victim = procs.edges[i].name.clone();
            recovery.begin(at);
            procs.edges[i].kill().await;
            outcome.recovery = recovery.wait(RECOVERY_LIMIT).await;
            let restarted = Instant::now();
            procs.edges[i].start()?;
            crate::system::wait_until_healthy(procs.edge_addrs[i], Duration::from_secs(60)).await?;
            outcome.back = Some(restarted.elapsed());
        }
        Fault::Handler(planned) => {
            // The handler owning the most partitions (after a NATS kill one may own none).
            let mut owned = Vec::new();
            for addr in &procs.handler_metrics {
                owned.push(partitions_owned(*addr).await);
            }
            let most = owned.iter().copied().max().unwrap_or(0);
            let i = if owned.get(planned) == Some(&most) {
                planned
            } else {
                owned.iter().position(|o| *o == most).unwrap_or(planned)
            };
            let at = Instant::now();
            outcome.at = at - load_started;
            outcome.victim = format!("{} ({most} partitions)", procs.handlers[i].name);
            recovery.begin(at);
            procs.handlers[i].kill().await;
            outcome.recovery = recovery.wait(RECOVERY_LIMIT).await;
            let restarted = Instant::now();
            procs.handlers[i].start()?;
            super::cluster::wait_until_handler_ready(
                procs.handler_metrics[i],
                Duration::from_secs(60),
            )
            .await?;
            outcome.back = Some(restarted.elapsed());
        }
        Fault::Postgres => {
            let at = Instant::now();
            outcome.at = at - load_started;
            outcome.victim = format!("postgresql ({} s)", postgres_outage.as_secs());
            recovery.begin(at);
            procs.postgres.stop().await;
            // Clients must not notice: records wait in their stream.
            outcome.recovery = recovery.wait(RECOVERY_LIMIT).await;
            if let Some(rest) = postgres_outage.checked_sub(at.elapsed()) {
                tokio::time::sleep(rest).await;
            }
            procs.postgres.start().await?;
            let restarted = Instant::now();
            let written_before = retry("reading the records stream", || async {
                Ok(js
                    .get_stream(resource::RECORDS_STREAM)
                    .await?
                    .cached_info()
                    .state
                    .last_sequence)
            })
            .await?;
            outcome.back = records_written_up_to(js, written_before, Duration::from_secs(180))
                .await
                .map(|()| restarted.elapsed());
            if outcome.back.is_none() {
                outcome.note = format!(
                    "records up to {written_before} not all in SQL 180 s after the restart"
                );
            }
        }
    }
    Ok(outcome)
}

/// How many partitions (of every domain) the handler serving metrics on `addr` owns.
async fn partitions_owned(addr: std::net::SocketAddr) -> u64 {
    let Ok((200, text)) = crate::client::get(addr, "/metrics").await else {
        return 0;
    };
    text.lines()
        .filter(|l| l.starts_with("tablewire_handler_partitions_owned{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Waits until the SQL writers have acknowledged every record up to `sequence` of the records
/// stream (it is in SQL), at most `limit`.
async fn records_written_up_to(
    js: &jetstream::Context,
    sequence: u64,
    limit: Duration,
) -> Option<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let floor = async {
            let stream = js.get_stream(resource::RECORDS_STREAM).await?;
            let info = stream.consumer_info(resource::RECORDS_CONSUMER).await?;
            Ok::<_, anyhow::Error>(info.ack_floor.stream_sequence)
        };
        if let Ok(floor) = floor.await
            && floor >= sequence
        {
            return Some(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// `op` until it succeeds (a request may land on a node just killed), at most 30 s.
async fn retry<T, F, Fut>(what: &str, mut op: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(e) if Instant::now() > deadline => return Err(e.context(what.to_string())),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_other_faults_are_spread_between_the_nats_kills() {
        let faults = schedule(3, 1, 1, 1);
        assert_eq!(faults.len(), 6);
        assert_eq!(faults.iter().filter(|f| **f == Fault::Nats).count(), 3);
        // Never two of the others in a row here, and each appears.
        assert!(faults.contains(&Fault::Edge(0)));
        assert!(faults.contains(&Fault::Handler(0)));
        assert!(faults.contains(&Fault::Postgres));
        assert!(
            faults
                .windows(2)
                .all(|w| w[0] == Fault::Nats || w[1] == Fault::Nats),
            "{faults:?}"
        );
        let long = schedule(20, 4, 4, 2);
        assert_eq!(long.len(), 30);
        assert_eq!(long.iter().filter(|f| **f == Fault::Nats).count(), 20);
        assert_eq!(
            long.iter().filter(|f| matches!(f, Fault::Edge(1))).count(),
            2
        );
        assert_eq!(schedule(0, 1, 0, 0), vec![Fault::Edge(0)]);
        assert_eq!(schedule(2, 0, 0, 0), vec![Fault::Nats, Fault::Nats]);
    }
}
