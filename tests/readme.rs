//! The README's own commands, run as written: its 3-node cluster block under "Running the parts
//! separately" (three nats-servers from `nats/config/cluster/`, provisioning with replicas 3,
//! two handlers on PostgreSQL, two edges) brings up a system a write goes through.

mod support;

use serde_json::json;
use std::path::Path;
use std::process::Stdio;
use support::*;

/// The `sh` code block of the README that contains `marker`.
fn readme_block(marker: &str) -> String {
    let readme = include_str!("../README.md");
    let mut blocks = readme.split("```sh\n").skip(1);
    blocks
        .find_map(|rest| {
            let block = rest.split("```").next().unwrap_or_default();
            block.contains(marker).then(|| block.to_string())
        })
        .unwrap_or_else(|| panic!("README.md has no sh block with {marker}"))
}

/// The shell running the block, and everything it started: killed as a group when dropped.
struct Shell(tokio::process::Child);

impl Drop for Shell {
    fn drop(&mut self) {
        if let Some(pid) = self.0.id() {
            // The shell leads its own process group (see `process_group(0)` below): every
            // process the block started is in it.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_cluster_commands_run_as_written() {
    let block = readme_block("nats/config/cluster/node-1.conf");
    // Fixed by the configs and the block: say which one is taken rather than fail obscurely.
    for port in [
        4331, 4332, 4333, 6331, 6332, 6333, 8231, 8232, 8233, 8081, 8082, 9101, 9102,
    ] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port}, which the README's cluster block uses, is taken on this machine"
        );
    }
    let db = PostgresDb::create().await;
    // The block runs from the repository root: a copy of what it reads, so the NATS stores
    // (relative to where nats-server starts) land in a temporary directory.
    let root = tempfile::tempdir().expect("tempdir");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_dir(&repo.join("nats/config"), &root.path().join("nats/config"));
    let nats_server = tablewire_nats::server::find_binary().expect("nats-server >= 2.11");
    let tablewire = Path::new(env!("CARGO_BIN_EXE_tablewire"));
    let path = format!(
        "{}:{}:{}",
        tablewire.parent().expect("dir").display(),
        nats_server.parent().expect("dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = format!("{block}\nwait\n");
    let _shell = Shell(
        tokio::process::Command::new("sh")
            .args(["-c", &script])
            .current_dir(root.path())
            .env("PATH", path)
            .env("DATABASE_URL", &db.url)
            .env("AUTH_SECRET", AUTH_SECRET)
            .env("JWT_SECRET", JWT_SECRET)
            .env("TABLEWIRE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("sh"),
    );

    let (first, second) = (
        "127.0.0.1:8081".parse().expect("addr"),
        "127.0.0.1:8082".parse().expect("addr"),
    );
    for edge in [first, second] {
        eventually("the README's edges answer /healthz", || async move {
            get(edge, "/healthz").await.ok().map(|(s, _)| s == 200) == Some(true)
        })
        .await;
    }
    let session = format!("s{}", uuid::Uuid::new_v4().simple());
    let path = format!("/session/{session}/init");
    eventually("a write through the first edge is applied", || {
        let path = path.clone();
        async move {
            post(first, &path, None, &json!({"tenantId": "readme"}))
                .await
                .0
                == 200
        }
    })
    .await;
    update(first, &session, json!({"text": "hello"})).await;
    let (status, state) = get(second, &format!("/session/{session}/state"))
        .await
        .expect("state");
    assert_eq!(status, 200, "{state}");
    assert_eq!(
        state["displayUpdates"][0]["displayData"]["text"], "hello",
        "the second edge reads what the first wrote: {state}"
    );
    // The session's record reaches PostgreSQL through one of the two handlers' SQL writers.
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&db.url)
        .await
        .expect("connect to the test database");
    let query = format!("SELECT tenant_id FROM display_sessions WHERE session_id = '{session}'");
    let mut tenant = None;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while tenant.is_none() && tokio::time::Instant::now() < deadline {
        tenant = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(query.clone()))
            .fetch_optional(&mut conn)
            .await
            .ok()
            .flatten();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(tenant.as_deref(), Some("readme"), "the record is in SQL");
}
