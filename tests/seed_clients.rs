//! Each seed's own client, as its document has it, against a real `tablewire dev`: seed 004's
//! `RestaurantWebSocket` (verbatim), seed 002's POS client (written as its document describes
//! it: offline queue, HTTP fallback), and the real `wscat` sessions of seeds 001 and 003 and
//! seed 000's display flow (its browser snippet and wscat). The clients are Node programs in
//! `tests/js` given only what the README's "Clients of the seeds" says a client needs: the
//! URL and a token. Each exits non-zero on any deviation; a program that needs the server side
//! changed asks with a `tw:` line (`cut` / `restore` the client's connections through a proxy,
//! `stop` the dev) and is answered `ok`.

mod support;

use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A `tablewire dev` on a free port with its own data dir and the test secrets.
struct Dev {
    process: Process,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Dev {
    async fn start() -> Dev {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        let process = Process::spawn(&[
            "dev",
            "--listen",
            &addr.to_string(),
            "--data-dir",
            dir.path().join("data").to_str().expect("utf8 path"),
            "--auth-secret",
            AUTH_SECRET,
            "--jwt-secret",
            JWT_SECRET,
        ]);
        eventually("dev answers /healthz", || async move {
            get(addr, "/healthz").await.ok().map(|(s, _)| s) == Some(200)
        })
        .await;
        Dev {
            process,
            addr,
            _dir: dir,
        }
    }

    fn ws(&self) -> String {
        format!("ws://{}", self.addr)
    }

    fn http(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn js_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    for package in ["ws", "wscat", "typescript"] {
        assert!(
            dir.join("node_modules").join(package).is_dir(),
            "the npm package {package} is missing: run `npm ci --prefix tests/js` (scripts/test does)"
        );
    }
    dir
}

/// Runs `tests/js/{script}` with `env`, doing what it asks (`tw:cut` and `tw:restore` on
/// `proxy`, `tw:stop` on `dev`), and returns its `tw:result`. Fails with its output when it
/// fails.
async fn run_node(
    script: &str,
    env: &[(&str, String)],
    dev: &mut Dev,
    proxy: Option<&TcpProxy>,
) -> Value {
    let mut child = tokio::process::Command::new("node")
        .arg(js_dir().join(script))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (Node 18 or newer is required)");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stderr = child.stderr.take().expect("stderr");
    let mut log = Vec::new();
    let mut result = None;
    let converse = async {
        while let Ok(Some(line)) = stdout.next_line().await {
            let done = match line.as_str() {
                "tw:cut" => proxy.map(TcpProxy::cut).is_some(),
                "tw:restore" => proxy.map(TcpProxy::restore).is_some(),
                "tw:stop" => dev.process.terminate().await.is_some(),
                other => {
                    if let Some(json) = other.strip_prefix("tw:result ") {
                        result = serde_json::from_str::<Value>(json).ok();
                    }
                    log.push(line);
                    continue;
                }
            };
            assert!(done, "{script} asked for {line}, which this test cannot do");
            log.push(format!("{line} (done)"));
            stdin.write_all(b"ok\n").await.expect("answer node");
        }
    };
    let finished = tokio::time::timeout(Duration::from_secs(150), converse).await;
    let status = tokio::time::timeout(TIMEOUT, child.wait()).await;
    let mut errors = String::new();
    let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut errors).await;
    let output = format!("stdout:\n{}\nstderr:\n{errors}", log.join("\n"));
    assert!(finished.is_ok(), "{script} ran for over 150 s\n{output}");
    let success = matches!(status, Ok(Ok(s)) if s.success());
    assert!(success, "{script} failed ({status:?})\n{output}");
    result.unwrap_or_else(|| panic!("{script} reported no result\n{output}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_004_restaurant_websocket_authenticates_and_reconnects_with_backoff() {
    let mut dev = Dev::start().await;
    let proxy = TcpProxy::start(dev.addr).await;
    let result = run_node(
        "events.mjs",
        &[
            ("TW_URL", format!("ws://{}", proxy.addr)),
            ("TW_TOKEN", token("demo", "service", 3600)),
            ("TW_PUBLISH", dev.http()),
        ],
        &mut dev,
        Some(&proxy),
    )
    .await;
    assert!(result["gaps"][0].as_u64().is_some_and(|gap| gap >= 1990));
    dev.process.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_002_pos_client_queues_offline_falls_back_to_http_and_resyncs() {
    let mut dev = Dev::start().await;
    let proxy = TcpProxy::start(dev.addr).await;
    let (ws, http) = (dev.ws(), dev.http());
    let result = run_node(
        "pos.mjs",
        &[
            ("VITE_BACKEND_WS_URL", format!("ws://{}/ws", proxy.addr)),
            ("TW_KITCHEN_WS_URL", format!("{ws}/ws")),
            ("VITE_BACKEND_API_URL", format!("{http}/api")),
            ("TW_TENANT", "demo".to_string()),
            ("TW_TOKEN", token("demo", "service", 3600)),
        ],
        &mut dev,
        Some(&proxy),
    )
    .await;
    assert_eq!(result["numbers"].as_array().map(Vec::len), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_wscat_session_scans_refuses_a_duplicate_and_heartbeats() {
    let mut dev = Dev::start().await;
    let url = format!("{}/ws/device?deviceId=TEST001", dev.ws());
    let http = dev.http();
    let result = run_node(
        "device.mjs",
        &[
            ("TW_URL", url),
            ("TW_HTTP", http),
            ("TW_ADMIN_TOKEN", token("demo", "admin", 3600)),
        ],
        &mut dev,
        None,
    )
    .await;
    assert_eq!(result["duplicate"], "TOO_SOON");
    dev.process.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_display_flow_with_the_browser_snippet_and_wscat() {
    let mut dev = Dev::start().await;
    let (ws, http) = (dev.ws(), dev.http());
    let result = run_node(
        "display.mjs",
        &[
            ("TW_WS", ws),
            ("TW_HTTP", http),
            ("TW_TOKEN", AUTH_SECRET.to_string()),
        ],
        &mut dev,
        None,
    )
    .await;
    assert_eq!(result["displayUpdates"], 3);
    dev.process.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_wscat_session_in_the_open_tenant() {
    let mut dev = Dev::start().await;
    let url = format!("{}/parties/collaborative_order/test_session_123", dev.ws());
    let result = run_node("collab-wscat.mjs", &[("TW_URL", url)], &mut dev, None).await;
    assert_eq!(result["tenantId"], "test_tenant");
    dev.process.terminate().await;
}
