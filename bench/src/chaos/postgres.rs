//! A private PostgreSQL instance for the chaos soak: `initdb` in a directory of the run (trust
//! authentication, a free loopback port), a `postgres` child process the soak stops and starts
//! again to play a database outage, never the machine's own server. The binaries come from
//! `$TABLEWIRE_POSTGRES_BIN`, else the newest `/usr/lib/postgresql/*/bin`, else `PATH`. PostgreSQL
//! refuses to run as root: as root the instance runs as the `postgres` user (or `nobody`).

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// Environment variable naming the directory holding `initdb` and `postgres`.
pub const BIN_ENV: &str = "TABLEWIRE_POSTGRES_BIN";

/// A running (or stopped) private PostgreSQL server. Killed when dropped, and when the soak
/// dies however it dies.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    log: PathBuf,
    user: Option<(u32, u32)>,
    child: Option<Child>,
}

impl Postgres {
    /// Creates a cluster under `dir` (which must not exist yet), starts it and waits until it
    /// accepts connections.
    pub async fn start_in(dir: &Path) -> anyhow::Result<Postgres> {
        let bin = find_bin()?;
        std::fs::create_dir_all(dir).context("creating the PostgreSQL directory")?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let user = if root {
            Some(unprivileged_user()?)
        } else {
            None
        };
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                .context("handing the PostgreSQL directory to its user")?;
        }
        let log = dir.join("postgres.log");
        let mut postgres = Postgres {
            bin,
            data: dir.join("data"),
            socket_dir: dir.to_path_buf(),
            port: crate::system::free_addr()?.port(),
            log,
            user,
            child: None,
        };
        let mut initdb = postgres.command("initdb")?;
        initdb.arg("-D").arg(&postgres.data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        let status = initdb.status().await.context("running initdb")?;
        if !status.success() {
            bail!("initdb failed ({status}); see {}", postgres.log.display());
        }
        postgres.start().await?;
        Ok(postgres)
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Whether the server process runs.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the server (again) and waits until it accepts connections, at most 60 s.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let mut server = self.command("postgres")?;
        server
            .arg("-D")
            .arg(&self.data)
            .arg("-k")
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string()])
            // A throwaway instance, stopped cleanly: durability on disk buys nothing here and
            // costs the two cores the system under test shares with it.
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .kill_on_drop(true);
        tablewire_nats::server::kill_with_parent(&mut server);
        self.child = Some(server.spawn().context("starting postgres")?);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let url = self.url();
        loop {
            let connected = tokio::time::timeout(
                Duration::from_secs(2),
                <sqlx::PgConnection as sqlx::Connection>::connect(&url),
            )
            .await;
            if let Ok(Ok(conn)) = connected {
                let _ = sqlx::Connection::close(conn).await;
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                bail!("postgres exited ({status}); see {}", self.log.display());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "PostgreSQL did not accept connections within 60 s; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server as an operator would (a fast shutdown: open connections are ended),
    /// and waits for it to exit.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id().and_then(|p| libc::pid_t::try_from(p).ok()) {
            // SAFETY: kill(2) only sends a signal.
            unsafe {
                libc::kill(pid, libc::SIGINT);
            }
            if tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = child.kill().await;
    }

    /// `initdb` or `postgres` from the binaries found, as the instance's user, with its output
    /// appended to the instance's log.
    fn command(&self, program: &str) -> anyhow::Result<Command> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .context("opening the PostgreSQL log")?;
        let mut command = Command::new(self.bin.join(program));
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        Ok(command)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        // An immediate shutdown (SIGQUIT ends the server's own children too); SIGKILL after.
        if let Some(pid) = child.id().and_then(|p| libc::pid_t::try_from(p).ok()) {
            // SAFETY: kill(2) only sends a signal.
            unsafe {
                libc::kill(pid, libc::SIGQUIT);
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = child.start_kill();
    }
}

/// The directory holding `initdb` and `postgres`.
fn find_bin() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_ENV) {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
        .with_context(|| {
            format!(
                "no PostgreSQL server binaries (initdb, postgres) in /usr/lib/postgresql/*/bin or \
                 on PATH; install PostgreSQL or set {BIN_ENV}"
            )
        })
}

/// The user and group PostgreSQL runs as when the soak runs as root: `postgres`, else
/// `nobody`, from `/etc/passwd`.
fn unprivileged_user() -> anyhow::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    let find = |name: &str| {
        passwd.lines().find_map(|line| {
            let mut fields = line.split(':');
            (fields.next()? == name).then_some(())?;
            let uid = fields.nth(1)?.parse().ok()?;
            let gid = fields.next()?.parse().ok()?;
            Some((uid, gid))
        })
    };
    find("postgres")
        .or_else(|| find("nobody"))
        .context("PostgreSQL does not run as root, and neither a postgres nor a nobody user exists")
}
