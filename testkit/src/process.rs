//! `tablewire edge`, `tablewire handler` (or any subcommand) as child processes of the real
//! binary, so they can be killed like a crash and measured from /proc. Used by [`crate::System`],
//! the chaos soak and tests/support. Every child is killed when its handle is dropped and when
//! its parent dies, however it dies (SIGKILL on parent death), so nothing outlives a killed
//! benchmark or test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use tablewire_schemas::Domain;
use tokio::process::Command;

/// How child processes are started: which binary, with which secrets, limits and log filter.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The `tablewire` binary.
    pub binary: PathBuf,
    /// The edges' `--auth-secret`.
    pub auth_secret: String,
    /// The edges' `--jwt-secret`.
    pub jwt_secret: String,
    /// The per-address connection limit and rate of edges, and the per-tenant write rates and
    /// bursts of handlers: all load comes from 127.0.0.1 and drives a tenant far faster than a
    /// restaurant does, which production limits would refuse. Generous values rather than none,
    /// so the limits' cost is measured with the rest.
    pub generous_limit: u64,
    /// `TABLEWIRE_LOG` of the children.
    pub log: String,
}

impl Launcher {
    /// Every child process of this launcher: `args` run by the binary, with stdin closed, killed
    /// when the handle is dropped and when this process dies.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .env("TABLEWIRE_LOG", &self.log)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        tablewire_nats::server::kill_with_parent(&mut command);
        command
    }

    /// `tablewire edge` on `nats_url`, listening on `addr` with this launcher's secrets and
    /// limits, then `extra` flags.
    pub fn edge(&self, nats_url: &str, addr: SocketAddr, extra: &[&str]) -> Command {
        let limit = self.generous_limit.to_string();
        let mut args = vec![
            "edge".to_string(),
            "--nats-url".into(),
            nats_url.into(),
            "--listen".into(),
            addr.to_string(),
            "--auth-secret".into(),
            self.auth_secret.clone(),
            "--jwt-secret".into(),
            self.jwt_secret.clone(),
            "--max-connections-per-ip".into(),
            limit.clone(),
            "--connection-rate-per-ip".into(),
            limit,
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        self.command(&args)
    }

    /// `tablewire handler` for `domains` on `nats_url`: with the SQL writer on `database_url`
    /// when given (else `--no-records`), serving metrics on `metrics` when given.
    pub fn handler(
        &self,
        nats_url: &str,
        domains: &[Domain],
        database_url: Option<&str>,
        metrics: Option<SocketAddr>,
    ) -> Command {
        let domains = domains
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let limit = self.generous_limit.to_string();
        let mut args = vec![
            "handler".to_string(),
            "--nats-url".into(),
            nats_url.into(),
            "--domain".into(),
            domains,
        ];
        for flag in [
            "--tenant-order-rate",
            "--tenant-order-burst",
            "--tenant-event-rate",
            "--tenant-event-burst",
        ] {
            args.extend([flag.to_string(), limit.clone()]);
        }
        match database_url {
            Some(url) => args.extend(["--database-url".to_string(), url.to_string()]),
            None => args.push("--no-records".into()),
        }
        if let Some(metrics) = metrics {
            args.extend(["--metrics-listen".to_string(), metrics.to_string()]);
        }
        self.command(&args)
    }
}
