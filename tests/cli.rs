//! The `tablewire` command line: tokens, help text, bad flags, and `dev` bringing the whole
//! system up and down (its own nats-server included).

mod support;

use std::process::Command;
use std::time::Duration;
use support::*;

fn tablewire(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tablewire"))
        .args(args)
        .output()
        .expect("run tablewire")
}

#[test]
fn token_mints_a_jwt_the_edge_accepts() {
    let out = tablewire(&[
        "token",
        "--jwt-secret",
        "s",
        "--tenant",
        "r1",
        "--role",
        "admin",
        "--sub",
        "ops",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).expect("utf8");
    let auth = tablewire_edge::auth::Auth::new(&tablewire_edge::AuthConfig {
        bearer_secret: None,
        jwt_secret: Some("s".into()),
        ..Default::default()
    });
    let claims = auth.verify_jwt(token.trim()).expect("valid token");
    assert_eq!(
        (
            claims.tenant.as_deref(),
            claims.role.as_deref(),
            claims.sub.as_str()
        ),
        (Some("r1"), Some("admin"), "ops")
    );
    assert!(claims.exp > tablewire_edge::auth::now_secs());
}

#[test]
fn help_names_every_flag_and_its_environment_variable() {
    let out = tablewire(&["edge", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for env in [
        "TABLEWIRE_LISTEN",
        "TABLEWIRE_NATS_URL",
        "TABLEWIRE_AUTH_SECRET",
        "TABLEWIRE_JWT_SECRET",
        "TABLEWIRE_TLS_CERT",
    ] {
        assert!(help.contains(env), "edge --help mentions {env}");
    }
    assert!(help.contains("127.0.0.1:8080"), "defaults are documented");
    let out = tablewire(&["handler", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("TABLEWIRE_DATABASE_URL"));
}

#[test]
fn unknown_domains_and_missing_secrets_are_refused_clearly() {
    let out = tablewire(&[
        "handler",
        "--domain",
        "karaoke",
        "--nats-url",
        "nats://127.0.0.1:1",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown domain \"karaoke\""), "{err}");
    assert!(err.contains("display"), "lists the known domains: {err}");
    let out = tablewire(&["token", "--tenant", "x"]);
    assert!(!out.status.success(), "token needs a secret");
    // A webhook URL that is neither http:// nor https:// stops the handler before it starts.
    let out = tablewire(&[
        "handler",
        "--domain",
        "collab",
        "--nats-url",
        "nats://127.0.0.1:1",
        "--collab-webhook-url",
        "ftp://backend.example.com/orders",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--collab-webhook-url"), "{err}");
    assert!(err.contains("only http:// and https://"), "{err}");
    assert!(
        !err.contains("cannot connect to NATS"),
        "refused first: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_brings_everything_up_and_takes_its_nats_server_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let (mut dev, addr) = start_dev(&data_dir).await;
    let mut ws = Ws::connect(addr, "/session/dev-smoke/display").await;
    ws.next_of("initial_state").await;
    update(addr, "dev-smoke", serde_json::json!({"hello": "dev"})).await;
    assert_eq!(
        ws.next_of("update").await["update"]["displayData"]["hello"],
        "dev"
    );
    assert!(
        data_dir.join("dev-secrets.json").is_file(),
        "dev keeps its generated secrets"
    );
    let nats_running = || {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .any(|p| {
                std::fs::read(p.path().join("cmdline"))
                    .map(|c| {
                        String::from_utf8_lossy(&c)
                            .contains(data_dir.join("nats").to_str().unwrap_or("?"))
                    })
                    .unwrap_or(false)
            })
    };
    assert!(
        nats_running(),
        "dev started its own nats-server in its data dir"
    );
    let status = dev.terminate().await.expect("dev exits");
    assert!(status.success(), "clean exit: {status:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!nats_running(), "the child nats-server is gone too");
}

/// The soft and hard "Max open files" of a process, from `/proc/PID/limits`.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let mut fields = line["Max open files".len()..].split_whitespace();
    let soft = fields.next().expect("soft").to_string();
    let hard = fields.next().expect("hard").to_string();
    (soft, hard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_raises_a_low_soft_open_file_limit_to_the_hard_one() {
    let (_, hard) = open_file_limits(std::process::id());
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let addr = free_addr();
    // A shell's usual soft limit is 1,024 under a far higher hard one; 256 makes the point.
    let mut dev = Process::of(move || {
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg("ulimit -Sn 256 && exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_tablewire"))
            .args(["dev", "--listen", &addr.to_string(), "--data-dir"])
            .arg(&data_dir)
            .args(["--auth-secret", AUTH_SECRET])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        command
    });
    eventually("dev answers /healthz", || async move {
        get(addr, "/healthz").await.ok().map(|(s, _)| s) == Some(200)
    })
    .await;
    let pid = dev.child.id().expect("running");
    let (soft, _) = open_file_limits(pid);
    if hard == "unlimited" {
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open").expect("nr_open");
        assert_eq!(soft, nr_open.trim(), "soft limit raised to fs.nr_open");
    } else {
        assert_eq!(soft, hard, "soft limit raised to the hard one");
    }
    let status = dev.terminate().await.expect("dev exits");
    assert!(status.success(), "clean exit: {status:?}");
}

fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

/// Starts `tablewire dev` on `data_dir` and waits until it answers; returns it and its edge.
async fn start_dev(data_dir: &std::path::Path) -> (Process, std::net::SocketAddr) {
    let addr = free_addr();
    let dev = Process::spawn(&[
        "dev",
        "--listen",
        &addr.to_string(),
        "--data-dir",
        data_dir.to_str().expect("utf8 path"),
        "--auth-secret",
        AUTH_SECRET,
    ]);
    eventually("dev answers /healthz", || async move {
        get(addr, "/healthz").await.ok().map(|(s, _)| s) == Some(200)
    })
    .await;
    (dev, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_dev_takes_its_nats_server_down_and_the_next_dev_starts_on_the_same_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let (mut first, _) = start_dev(&data_dir).await;
    let pid = first.child.id().expect("running");
    let nats: Vec<u32> = live_children(pid)
        .into_iter()
        .filter(|&c| command_line(c).contains("nats-server"))
        .collect();
    assert_eq!(nats.len(), 1, "dev runs one nats-server: {nats:?}");
    // While it runs, a second dev on the same store is refused rather than started beside it.
    let second = tokio::process::Command::new(env!("CARGO_BIN_EXE_tablewire"))
        .args(["dev", "--listen", &free_addr().to_string(), "--data-dir"])
        .arg(&data_dir)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let second = tokio::time::timeout(TIMEOUT, second)
        .await
        .expect("a second dev on the same store kept running beside the first")
        .expect("second dev ran");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "a second dev must not start");
    assert!(err.contains("still using"), "says why: {err}");
    assert!(
        is_live(nats[0]),
        "the first dev's nats-server is left alone"
    );

    // SIGKILL, as an OOM kill or `kill -9` would: nothing runs its shutdown.
    first.kill().await;
    eventually("the killed dev's nats-server exits", || async {
        !is_live(nats[0])
    })
    .await;
    let (mut again, _) = start_dev(&data_dir).await;
    let status = again.terminate().await.expect("dev exits");
    assert!(status.success(), "clean exit: {status:?}");
}

/// The live processes whose parent is `pid` (zombies, with an empty command line, excluded).
fn live_children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|p| {
            let child: u32 = p.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(p.path().join("stat")).ok()?;
            // Fields after the command name (in parentheses): state, then the parent's pid.
            let parent: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (parent == pid && is_live(child)).then_some(child)
        })
        .collect()
}

/// A process's command line, arguments separated by spaces; empty once it has exited.
fn command_line(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw).replace('\0', " ")
}

fn is_live(pid: u32) -> bool {
    !command_line(pid).is_empty()
}

/// Starts a display benchmark that would run for 10 minutes, and waits for its nats-server,
/// edge and handler; returns it with their pids.
async fn start_long_benchmark() -> (Process, Vec<u32>) {
    start_benchmark(
        &[
            "bench",
            "display",
            "--sessions",
            "1",
            "--displays",
            "2",
            "--posters",
            "1",
            "--idle",
            "0",
            "--duration",
            "600",
        ],
        3,
    )
    .await
}

/// Starts the benchmark `args` and waits until it runs `processes` children; returns it with
/// their pids.
async fn start_benchmark(args: &[&str], processes: usize) -> (Process, Vec<u32>) {
    let bench = Process::spawn(args);
    let pid = bench.child.id().expect("running");
    eventually("the benchmark started its processes", || async move {
        live_children(pid).len() >= processes
    })
    .await;
    let children = live_children(pid);
    (bench, children)
}

/// Ends whatever of `children` still runs, then fails if anything did.
fn assert_all_ended(children: Vec<u32>) {
    let left: Vec<String> = children
        .into_iter()
        .filter(|&c| is_live(c))
        .map(|c| {
            let line = format!("{c}: {}", command_line(c));
            // Leftovers would hold the test's output open (and the suite with it): end them
            // before failing.
            tablewire_nats::server::terminate(c);
            line
        })
        .collect();
    assert!(
        left.is_empty(),
        "still running after the benchmark: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_benchmark_takes_the_processes_it_started_down() {
    let (mut bench, children) = start_long_benchmark().await;
    let status = bench.terminate().await.expect("the benchmark exits");
    assert!(!status.success(), "an interrupted benchmark is no success");
    assert_all_ended(children);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_benchmark_takes_the_processes_it_started_down() {
    let (mut bench, children) = start_long_benchmark().await;
    bench.kill().await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while children.iter().any(|&c| is_live(c)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_all_ended(children);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_devices_benchmark_takes_its_processes_down_and_ran_one_sql_writer() {
    // nats-server, the edge and two handlers; 600 s of scanning it never gets to.
    let (mut bench, children) = start_benchmark(
        &[
            "bench",
            "devices",
            "--devices",
            "2",
            "--duration",
            "600",
            "--handlers",
            "2",
        ],
        4,
    )
    .await;
    let handlers: Vec<String> = children
        .iter()
        .map(|&c| command_line(c))
        .filter(|line| line.contains(" handler "))
        .collect();
    assert_eq!(handlers.len(), 2, "two handlers: {handlers:?}");
    let writers = handlers
        .iter()
        .filter(|line| line.contains("--database-url"))
        .count();
    assert_eq!(
        writers, 1,
        "one SQL writer (SQLite takes one): {handlers:?}"
    );
    bench.kill().await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while children.iter().any(|&c| is_live(c)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_all_ended(children);
}

/// `tablewire config check FILE COMMAND FLAGS…` with `env` set, its output and success.
fn config_check(file: &std::path::Path, command: &[&str], env: &[(&str, &str)]) -> (String, bool) {
    let mut run = Command::new(env!("CARGO_BIN_EXE_tablewire"));
    run.args(["config", "check"]).arg(file).args(command);
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("TABLEWIRE_")) {
        run.env_remove(name);
    }
    run.envs(env.iter().copied());
    let out = run.output().expect("run tablewire");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text, out.status.success())
}

#[test]
fn settings_come_from_flags_then_environment_then_the_file_then_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tablewire.toml");
    std::fs::write(
        &file,
        "nats_url = \"nats://file:4222\"\n\
         [edge]\nheartbeat_secs = 7\ndrain_timeout_secs = 8\nbus_timeout_secs = 9\n",
    )
    .expect("write");
    let (out, ok) = config_check(
        &file,
        &["edge", "--bus-timeout-secs", "30"],
        &[
            ("TABLEWIRE_DRAIN_TIMEOUT_SECS", "20"),
            ("TABLEWIRE_BUS_TIMEOUT_SECS", "21"),
        ],
    );
    assert!(ok, "{out}");
    for line in [
        "nats_url = \"nats://file:4222\"  # file",
        "heartbeat_secs = 7  # file",
        "drain_timeout_secs = 20  # environment",
        "bus_timeout_secs = 30  # flag",
        "cors_origin = \"*\"  # default",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

#[test]
fn config_check_refuses_unknown_keys_and_bad_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tablewire.toml");
    for (text, says) in [
        ("[handler]\nbatch_sise = 10\n", "batch_sise"),
        ("[edge]\nbatch_size = 10\n", "batch_size"),
        ("[edge]\nheartbeat_secs = 0\n", "must be at least 1"),
        ("[provision]\nreplicas = \"three\"\n", "--replicas"),
        ("[edge\n", "TOML"),
    ] {
        std::fs::write(&file, text).expect("write");
        let (out, ok) = config_check(&file, &[], &[]);
        assert!(!ok, "{text:?} must be refused:\n{out}");
        assert!(
            out.contains(says),
            "{text:?}: the message names {says:?}:\n{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_listens_where_its_config_file_says() {
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let addr = free_addr();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tablewire.toml");
    std::fs::write(
        &file,
        format!(
            "nats_url = \"{}\"\n[edge]\nlisten = \"{addr}\"\n",
            nats.client_url()
        ),
    )
    .expect("write");
    let _edge = Process::spawn(&[
        "--config",
        file.to_str().expect("utf8 path"),
        "edge",
        "--auth-secret",
        AUTH_SECRET,
    ]);
    eventually("the edge answers on the file's address", || async move {
        get(addr, "/healthz").await.ok().map(|(s, _)| s) == Some(200)
    })
    .await;
}

#[test]
fn handler_help_lists_every_domain() {
    let out = tablewire(&["handler", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for domain in tablewire_schemas::Domain::ALL {
        assert!(
            help.contains(domain.as_str()),
            "{domain} missing in:\n{help}"
        );
    }
}
