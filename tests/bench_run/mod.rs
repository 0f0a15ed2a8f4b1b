//! Runs a `tablewire bench …` command in a test and reads the JSON line it prints; shared by
//! `tests/bench_floor.rs` and `tests/bench_scale.rs`.

use std::process::Output;
use std::time::Duration;

/// Runs `command` (its stdin closed, killed if the test ends first) to its end, at most 10
/// minutes.
pub async fn run(mut command: tokio::process::Command) -> Output {
    let run = command
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("the benchmark ends within 10 minutes")
        .expect("the benchmark runs")
}

/// Prints the benchmark's output, asserts it succeeded, and parses its `{"bench":"<bench>"…}`
/// line.
pub fn json_line(output: &Output, bench: &str) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(output.status.success(), "the benchmark failed: {stderr}");
    let start = format!(r#"{{"bench":"{bench}""#);
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&start))
        .unwrap_or_else(|| panic!("no JSON line in: {stdout}"));
    serde_json::from_str(line).expect("the JSON line parses")
}
