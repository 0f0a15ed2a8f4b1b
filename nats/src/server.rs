//! Finds and starts real `nats-server` processes: the one `tablewire dev` runs, the ones the
//! benchmarks and the tests run, and 3-node clusters on loopback. A started server is stopped
//! and (when it owns a temporary store) cleaned up when its guard is dropped.
//!
//! Readiness is read from the server's own log ("Server is ready", then a JetStream request
//! that answers), never slept for. A server ends with the process that started it, even one
//! killed with SIGKILL ([`end_with_parent`]), and a server is never started on a store another
//! one still uses (its pid file is checked first).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// The oldest nats-server tablewire works with (see DESIGN.md).
pub const MIN_VERSION: (u32, u32) = (2, 11);

/// Environment variable naming the nats-server binary to use.
pub const BINARY_ENV: &str = "TABLEWIRE_NATS_SERVER";

/// What can go wrong finding or starting a server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// No usable binary was found.
    #[error(
        "no nats-server >= {}.{} found{}; run scripts/install-nats (installs one into ./.tools/bin) \
         or set {BINARY_ENV} to its path",
        MIN_VERSION.0, MIN_VERSION.1, describe_rejected(.rejected)
    )]
    NotFound {
        /// Binaries that were found but are too old or did not run.
        rejected: Vec<String>,
    },
    /// The process could not be started or exited early.
    #[error("nats-server did not start: {0}")]
    Start(String),
    /// An I/O error on the store directory or the log.
    #[error("nats-server I/O: {0}")]
    Io(#[from] std::io::Error),
}

fn describe_rejected(rejected: &[String]) -> String {
    if rejected.is_empty() {
        String::new()
    } else {
        format!(" (rejected: {})", rejected.join(", "))
    }
}

/// Parses `nats-server: v2.15.1` (the output of `nats-server --version`).
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let v = text.trim().rsplit('v').next()?;
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((major, minor, patch))
}

fn version_of(binary: &Path) -> Option<(u32, u32, u32)> {
    let output = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .ok()?;
    parse_version(&String::from_utf8_lossy(&output.stdout))
}

/// Finds a nats-server binary of at least [`MIN_VERSION`]: `$TABLEWIRE_NATS_SERVER`, then
/// `.tools/bin/nats-server` in the current directory or any parent (where
/// `scripts/install-nats` puts one), then every `nats-server` on `PATH`.
pub fn find_binary() -> Result<PathBuf, ServerError> {
    let mut candidates = Vec::new();
    if let Some(path) = std::env::var_os(BINARY_ENV) {
        candidates.push(PathBuf::from(path));
    }
    if let Ok(cwd) = std::env::current_dir() {
        candidates.extend(
            cwd.ancestors()
                .map(|dir| dir.join(".tools/bin/nats-server")),
        );
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join("nats-server")));
    }
    let mut rejected = Vec::new();
    for candidate in candidates {
        if !candidate.is_file() {
            continue;
        }
        match version_of(&candidate) {
            Some((major, minor, _)) if (major, minor) >= MIN_VERSION => {
                return Ok(candidate.canonicalize().unwrap_or(candidate));
            }
            Some((major, minor, patch)) => rejected.push(format!(
                "{} is v{major}.{minor}.{patch}",
                candidate.display()
            )),
            None => rejected.push(format!("{} did not report a version", candidate.display())),
        }
    }
    Err(ServerError::NotFound { rejected })
}

/// How to start one server.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// JetStream store directory (also where the log goes); a temporary one (removed on drop)
    /// when `None`. With `config`, the file's `store_dir` is used and this only places the log.
    pub store_dir: Option<PathBuf>,
    /// Client port; a free one when `None`.
    pub port: Option<u16>,
    /// Also open the HTTP monitoring port (`/jsz`, `/subsz`, `/connz`) on a free port.
    pub monitoring: bool,
    /// A configuration file; when set, port and store come from it unless given here too.
    pub config: Option<PathBuf>,
    /// Server name (needed in clusters).
    pub name: Option<String>,
}

/// A running nats-server, stopped when dropped.
pub struct NatsServer {
    child: Option<Child>,
    binary: PathBuf,
    args: Vec<String>,
    client_url: String,
    monitor_url: Option<String>,
    store_dir: PathBuf,
    log_path: PathBuf,
    /// Where the server writes its pid (`-P`), read before starting another on the same store.
    pid_path: PathBuf,
    _temp: Option<TempStore>,
}

struct TempStore(PathBuf);

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl NatsServer {
    /// Starts a server and waits until it is ready.
    pub async fn start(options: ServerOptions) -> Result<NatsServer, ServerError> {
        let binary = find_binary()?;
        let (store_dir, temp) = match &options.store_dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let dir = std::env::temp_dir().join(format!(
                    "tablewire-nats-{}-{}",
                    std::process::id(),
                    unique_suffix()
                ));
                (dir.clone(), Some(TempStore(dir)))
            }
        };
        std::fs::create_dir_all(&store_dir)?;
        // Absolute, so that its pid file's path names this store whatever the working
        // directory of whoever starts the next server on it.
        let store_dir = std::fs::canonicalize(&store_dir)?;
        let mut args = vec!["-js".to_string()];
        if let Some(config) = &options.config {
            // The file names its own store directory; naming it twice is an error.
            args.push("-c".to_string());
            args.push(path_arg(config));
        } else {
            args.extend(["-sd".to_string(), path_arg(&store_dir)]);
            args.extend(["-a".to_string(), "127.0.0.1".to_string()]);
        }
        if options.config.is_none() || options.port.is_some() {
            args.push("-p".to_string());
            args.push(options.port.map_or("-1".to_string(), |p| p.to_string()));
        }
        if options.monitoring {
            args.extend(["-m".to_string(), "-1".to_string()]);
        }
        if let Some(name) = &options.name {
            args.extend(["-n".to_string(), name.clone()]);
        }
        let log_path = store_dir.join("nats-server.log");
        let pid_path = store_dir.join("nats-server.pid");
        args.extend(["-P".to_string(), path_arg(&pid_path)]);
        let mut server = NatsServer {
            child: None,
            binary,
            args,
            client_url: String::new(),
            monitor_url: None,
            store_dir,
            log_path,
            pid_path,
            _temp: temp,
        };
        server.spawn().await?;
        Ok(server)
    }

    async fn spawn(&mut self) -> Result<(), ServerError> {
        wait_for_previous_server(&self.pid_path, &self.store_dir).await?;
        let mut command = Command::new(&self.binary);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        end_with_parent(&mut command);
        let mut child = command
            .spawn()
            .map_err(|e| ServerError::Start(format!("{}: {e}", self.binary.display())))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| ServerError::Start("no stderr".to_string()))?;
        let mut log = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .await?;
        let mut lines = BufReader::new(stderr).lines();
        let mut client_url = None;
        let mut monitor_url = None;
        let mut seen = Vec::new();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                log.write_all(line.as_bytes()).await?;
                log.write_all(b"\n").await?;
                if let Some(addr) = line.split("Listening for client connections on ").nth(1) {
                    client_url = Some(format!("nats://{}", addr.trim()));
                }
                if let Some(addr) = line.split("Starting http monitor on ").nth(1) {
                    monitor_url = Some(addr.trim().to_string());
                }
                if line.contains("Server is ready") {
                    return Ok::<bool, std::io::Error>(true);
                }
                if seen.len() < 40 {
                    seen.push(line);
                }
            }
            Ok(false)
        })
        .await;
        let fail = |why: &str, seen: &[String]| {
            ServerError::Start(format!("{why}; its log said:\n{}", seen.join("\n")))
        };
        match ready {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return Err(fail("exited before it was ready", &seen)),
            Ok(Err(e)) => return Err(ServerError::Io(e)),
            Err(_) => return Err(fail("not ready after 30 s", &seen)),
        }
        // Keep draining the log so the pipe never fills.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = log.write_all(line.as_bytes()).await;
                let _ = log.write_all(b"\n").await;
            }
        });
        self.client_url = client_url
            .ok_or_else(|| ServerError::Start("no client port in its log".to_string()))?;
        self.monitor_url = monitor_url;
        self.child = Some(child);
        // Pin the port, so a restart comes back where clients reconnect to.
        if let Some(port) = self.port() {
            set_arg(&mut self.args, "-p", &port.to_string());
        }
        Ok(())
    }

    /// The client URL, e.g. `nats://127.0.0.1:41234`.
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    /// The client port.
    pub fn port(&self) -> Option<u16> {
        self.client_url.rsplit(':').next()?.parse().ok()
    }

    /// The monitoring URL, when monitoring was asked for.
    pub fn monitor_url(&self) -> Option<&str> {
        self.monitor_url.as_deref()
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Stops the server cleanly (SIGTERM) and waits for it to exit.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                terminate(pid);
                if tokio::time::timeout(Duration::from_secs(10), child.wait())
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            let _ = child.kill().await;
        }
    }

    /// Starts the server again on the same port and store after [`kill`](Self::kill) or
    /// [`stop`](Self::stop).
    pub async fn restart(&mut self) -> Result<(), ServerError> {
        self.stop().await;
        self.spawn().await
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

fn set_arg(args: &mut Vec<String>, flag: &str, value: &str) {
    match args.iter().position(|a| a == flag) {
        Some(i) if i + 1 < args.len() => args[i + 1] = value.to_string(),
        _ => {
            args.push(flag.to_string());
            args.push(value.to_string());
        }
    }
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn unique_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (NEXT.fetch_add(1, Ordering::Relaxed) << 32)
}

/// Makes a child about to be spawned get SIGTERM when its parent dies, however it dies: a
/// `tablewire dev` or benchmark killed with SIGKILL used to leave its nats-server running, and
/// the next `tablewire dev` then started a second nats-server on the same store. SIGTERM lets
/// nats-server close its store cleanly. Linux sends the signal when the *thread* that spawned
/// the child ends, so spawn from a runtime's worker or main thread, never from
/// `spawn_blocking` (whose threads end when idle). Elsewhere than Linux it does nothing.
pub fn end_with_parent(command: &mut Command) {
    signal_on_parent_death(command, ParentDeath::Terminate);
}

/// As [`end_with_parent`], with SIGKILL: for children with nothing to save (a benchmark's
/// edge and handlers, whose orderly shutdown waits about 10 s for a NATS that is gone).
pub fn kill_with_parent(command: &mut Command) {
    signal_on_parent_death(command, ParentDeath::Kill);
}

enum ParentDeath {
    Terminate,
    Kill,
}

fn signal_on_parent_death(command: &mut Command, death: ParentDeath) {
    #[cfg(target_os = "linux")]
    {
        let signal = match death {
            ParentDeath::Terminate => libc::SIGTERM,
            ParentDeath::Kill => libc::SIGKILL,
        } as libc::c_ulong;
        // SAFETY: runs in the forked child before exec; prctl is async-signal-safe and
        // touches no memory of the parent.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, signal, 0, 0, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (command, death);
}

/// Waits for a nats-server that still uses this store (its pid file names a live nats-server)
/// to exit: one whose parent was just killed is shutting down ([`end_with_parent`]). Fails
/// after 10 s rather than start a second server on the same files.
async fn wait_for_previous_server(pid_path: &Path, store_dir: &Path) -> Result<(), ServerError> {
    let Ok(text) = std::fs::read_to_string(pid_path) else {
        return Ok(());
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return Ok(());
    };
    // Only a process started with this very pid file counts: not a pid since reused (by
    // another program or another test's server), nor an exited (zombie) server.
    let own_arg = path_arg(pid_path);
    let running = || {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
            cmdline
                .split(|&b| b == 0)
                .any(|arg| arg == own_arg.as_bytes())
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while running() {
        if tokio::time::Instant::now() > deadline {
            return Err(ServerError::Start(format!(
                "another nats-server (pid {pid}) is still using {}; stop it (or the \
                 `tablewire dev` it belongs to) first",
                store_dir.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Sends SIGTERM to a process (nats-server shuts down cleanly on it).
pub fn terminate(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) only sends a signal; a pid that no longer exists is an ESRCH error.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

/// Three servers clustered on loopback, each with JetStream; for R3 streams and buckets.
pub struct Cluster {
    /// The nodes, in order.
    pub nodes: Vec<NatsServer>,
    _dir: TempStore,
}

impl Cluster {
    /// Starts a cluster of `size` nodes on free loopback ports and waits until JetStream has a
    /// meta leader.
    pub async fn start(size: usize) -> Result<Cluster, ServerError> {
        let dir = std::env::temp_dir().join(format!(
            "tablewire-cluster-{}-{}",
            std::process::id(),
            unique_suffix()
        ));
        std::fs::create_dir_all(&dir)?;
        let guard = TempStore(dir.clone());
        let ports = free_ports(2 * size)?;
        let (client_ports, route_ports) = ports.split_at(size);
        let routes: Vec<String> = route_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect();
        let mut nodes = Vec::with_capacity(size);
        for i in 0..size {
            let name = node_name(i);
            let store = dir.join(&name);
            let config = dir.join(format!("{name}.conf"));
            std::fs::write(
                &config,
                cluster_node_config(&name, client_ports[i], route_ports[i], &routes, &store),
            )?;
            nodes.push((config, store, client_ports[i]));
        }
        // Start all nodes concurrently: each waits for routes before it is ready.
        let starts = nodes.into_iter().map(|(config, store, port)| {
            NatsServer::start(ServerOptions {
                store_dir: Some(store),
                port: Some(port),
                config: Some(config),
                ..Default::default()
            })
        });
        let nodes = futures::future::try_join_all(starts).await?;
        let cluster = Cluster { nodes, _dir: guard };
        cluster.wait_for_jetstream().await?;
        Ok(cluster)
    }

    /// A comma-separated URL list for clients, covering every node.
    pub fn client_urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::client_url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index in [`nodes`](Self::nodes) of the node named `name`, as JetStream names a
    /// stream's or consumer's leader (`cluster.leader` in `$JS.API.STREAM.INFO.<stream>`).
    pub fn node_index(&self, name: &str) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| node_name(i) == name)
    }

    async fn wait_for_jetstream(&self) -> Result<(), ServerError> {
        let client = crate::connect(&self.client_urls(), "tablewire-cluster-check")
            .await
            .map_err(|e| ServerError::Start(format!("connect: {e}")))?;
        let js = async_nats::jetstream::new(client);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match js.query_account().await {
                Ok(_) => return Ok(()),
                Err(e) if tokio::time::Instant::now() > deadline => {
                    return Err(ServerError::Start(format!("JetStream not ready: {e}")));
                }
                // A meta leader is elected within seconds; ask again soon.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// The server name of node `index` (from 0) of a [`Cluster`]: `tw-1`, `tw-2`, …
pub fn node_name(index: usize) -> String {
    format!("tw-{}", index + 1)
}

/// The configuration of one node of a loopback cluster (the same shape as the files shipped in
/// `nats/config/cluster/`).
pub fn cluster_node_config(
    name: &str,
    client_port: u16,
    route_port: u16,
    routes: &[String],
    store: &Path,
) -> String {
    format!(
        "server_name: {name}\nlisten: 127.0.0.1:{client_port}\n\
         jetstream {{ store_dir: \"{}\" }}\n\
         cluster {{\n  name: tablewire\n  listen: 127.0.0.1:{route_port}\n  routes: [\n{}\n  ]\n}}\n",
        store.display(),
        routes
            .iter()
            .map(|r| format!("    {r}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

fn free_ports(n: usize) -> Result<Vec<u16>, ServerError> {
    // Hold all listeners until every port is chosen so the same port is not picked twice.
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(listeners
        .iter()
        .filter_map(|l| l.local_addr().ok().map(|a| a.port()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parsing() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15, 1)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9, 10)));
        assert_eq!(parse_version("garbage"), None);
        assert!((2, 9) < MIN_VERSION && (2, 11) >= MIN_VERSION);
    }

    #[test]
    fn cluster_config_names_every_route() {
        let routes = vec![
            "nats-route://127.0.0.1:1".to_string(),
            "nats-route://127.0.0.1:2".to_string(),
        ];
        let text = cluster_node_config("tw-1", 4001, 6001, &routes, Path::new("/tmp/s"));
        assert!(text.contains("listen: 127.0.0.1:4001"));
        assert!(text.contains("listen: 127.0.0.1:6001"));
        assert!(text.contains("nats-route://127.0.0.1:2"));
    }
}

#[cfg(test)]
mod live_tests {
    use super::*;

    #[tokio::test]
    async fn a_cluster_starts_with_jetstream_and_a_node_restarts() {
        let mut cluster = Cluster::start(3).await.expect("cluster");
        let urls = cluster.client_urls();
        assert_eq!(urls.split(',').count(), 3, "{urls}");
        assert_eq!(cluster.node_index("tw-2"), Some(1));
        assert_eq!(cluster.node_index("tw-4"), None);
        let client = crate::connect(&urls, "test").await.expect("connect");
        let js = async_nats::jetstream::new(client);
        js.query_account().await.expect("JetStream answers");
        cluster.nodes[1].kill().await;
        cluster.nodes[1]
            .restart()
            .await
            .expect("restart on the same port");
        assert!(cluster.nodes[1].pid().is_some());
    }
}
