//! The chaos soak's short form, as CI runs it: `tablewire bench chaos --short` starts a 3-node
//! NATS cluster (replicas 3), two edges, two handlers and a private PostgreSQL, puts every
//! client kind under load, and kills an edge, a handler and three NATS nodes (the leaders of
//! every stream and bucket among them) and stops PostgreSQL. This test asserts that nothing
//! acknowledged was lost, nothing applied twice and no key left stuck; it prints the recovery
//! times without asserting them (a busy machine would make any timing assertion flaky).

use std::time::Duration;

/// The numbers after `lost`, `duplicated` and `stuck` in the soak's `chaos result:` line.
fn zeros_line(stdout: &str) -> Option<(u64, u64, u64)> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("chaos result: "))?;
    let number = |name: &str| -> Option<u64> {
        line.split(", ")
            .find_map(|part| part.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some((number("lost ")?, number("duplicated ")?, number("stuck ")?))
}

#[test]
fn the_result_line_is_read() {
    let out = "x\nchaos result: lost 2, duplicated 0, stuck 1, out of order 0, stale snapshots 0 -> FAIL\n";
    assert_eq!(zeros_line(out), Some((2, 0, 1)));
    assert_eq!(zeros_line("nothing"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_short_chaos_soak_loses_duplicates_and_strands_nothing() {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_tablewire"))
        .args(["--log", "error", "bench", "chaos", "--short"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    // About two minutes on the 2-core machine; the limit only keeps a hang from eating CI.
    let output = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("the soak ends within 10 minutes")
        .expect("the soak runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The table, the recovery times and any evidence, for whoever reads the test's output.
    println!("{stdout}");
    eprintln!("{stderr}");
    let (lost, duplicated, stuck) =
        zeros_line(&stdout).unwrap_or_else(|| panic!("no result line; stderr: {stderr}"));
    assert_eq!(lost, 0, "acknowledged writes lost (see the notes above)");
    assert_eq!(duplicated, 0, "writes applied twice (see the notes above)");
    assert_eq!(stuck, 0, "keys left stuck or parked (see above)");
    assert!(output.status.success(), "the soak failed: {stderr}");
}
