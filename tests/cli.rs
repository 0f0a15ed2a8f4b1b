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
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let data_dir = dir.path().join("data");
    let mut dev = Process::spawn(&[
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
