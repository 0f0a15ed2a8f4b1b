//! `tablewire bench scale` in a short form (two edges × 200 displays and 40 devices, load processes
//! of at most 120 sockets, so two per edge; a low rate): asserts that every update reached every
//! display exactly once, that the figures per component are consistent, and that a hard file
//! limit below what the run needs fails at once with a clear message. No timing is asserted.

mod bench_run;

async fn run_scale(shell_prefix: &str, flags: &[&str]) -> std::process::Output {
    let binary = env!("CARGO_BIN_EXE_tablewire");
    let script = format!("{shell_prefix} exec \"$0\" \"$@\"");
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(script)
        .arg(binary)
        .args(["--log", "error", "bench", "scale"])
        .args(flags);
    bench_run::run(command).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_short_scale_benchmark_delivers_everything_across_two_edges() {
    let output = run_scale(
        "",
        &[
            "--displays",
            "200",
            "--devices",
            "40",
            "--session-size",
            "5",
            "--per-client",
            "120",
            "--rate",
            "20",
            "--duration",
            "2",
            "--idle-secs",
            "1",
        ],
    )
    .await;
    let json = bench_run::json_line(&output, "scale");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let number = |field: &str| {
        json[field]
            .as_u64()
            .unwrap_or_else(|| panic!("no {field} in {json}"))
    };
    assert_eq!(number("edges"), 2);
    // 40 sessions of 5 displays per edge, at most 120 sockets a process: 2 processes per edge.
    assert_eq!(number("load_processes"), 4);
    assert_eq!(number("session_displays"), 10);
    assert_eq!(number("devices"), 80, "every device connected");
    let updates = number("updates");
    assert!(updates > 0, "no update accepted");
    assert_eq!(number("expected"), updates * 10);
    assert_eq!(
        number("delivered"),
        updates * 10,
        "every display got every update"
    );
    let per_edge: Vec<u64> = json["delivered_per_edge"]
        .as_array()
        .expect("deliveries per edge")
        .iter()
        .filter_map(|n| n.as_u64())
        .collect();
    assert_eq!(
        per_edge,
        [updates * 5, updates * 5],
        "each edge delivered its half"
    );
    assert_eq!(number("missing"), 0);
    assert_eq!(number("duplicates"), 0);
    assert_eq!(number("closed"), 0, "no socket closed while held");
    let components = json["components"].as_array().expect("components");
    let roles: Vec<&str> = components
        .iter()
        .filter_map(|c| c["component"].as_str())
        .collect();
    assert_eq!(roles, ["nats-server", "edge 1", "edge 2", "handler"]);
    for c in components {
        let role = &c["component"];
        let f = |field: &str| {
            c[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{role}: no {field} in {c}"))
        };
        assert!(f("rss_before_mib") > 1.0, "{role}: RSS not read {c}");
        assert!(
            f("busy_cores") >= 0.0 && f("idle_cores") >= 0.0,
            "{role}: {c}"
        );
        // CPU per delivered message and per update describe the same CPU time (read in 10 ms
        // ticks: a short run may see none).
        let per_update = f("us_per_update");
        assert!(per_update >= 0.0, "{role}: {c}");
        let delivered_here = if role.as_str().is_some_and(|r| r.starts_with("edge")) {
            updates * 5
        } else {
            updates * 10
        };
        let expected = per_update * updates as f64 / delivered_here as f64;
        assert!(
            (f("us_per_delivered") - expected).abs() <= 1e-6 * expected.max(1.0),
            "{role}: CPU per delivered message is not CPU / deliveries {c}"
        );
    }
    for connected in [100_000, 1_000_000] {
        let row = json["model"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["connected"] == connected))
            .unwrap_or_else(|| panic!("no model row for {connected}"));
        assert!(row["edges"].as_u64().is_some_and(|n| n >= 2), "{row}");
        assert!(row["nats_nodes"].as_u64().is_some_and(|n| n >= 3), "{row}");
    }
    assert!(
        stdout.lines().any(|l| l.starts_with("| 1000000 |")),
        "no model row printed for 1M"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_file_limit_too_low_fails_before_anything_starts() {
    let output = run_scale(
        "ulimit -Sn 1000 && ulimit -Hn 1000 &&",
        &["--displays", "15000", "--devices", "0"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "it ran under a 1000-file limit");
    assert!(
        stderr.contains("the hard limit of open files is 1000"),
        "unclear failure: {stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("connected"),
        "it started connecting before checking the limit"
    );
}
