//! `tablewire bench floor` in a short form (a second per phase, a low rate): asserts that its
//! JSON line has every domain with figures that make sense, and that the floor delivered what
//! it published. No timing is asserted (the machine is shared and noisy).

mod bench_run;

const DOMAINS: [&str; 5] = ["collab", "pos", "devices", "events", "display"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_short_floor_benchmark_prints_every_domain_against_the_floor() {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tablewire"));
    command.args([
        "--log",
        "error",
        "bench",
        "floor",
        "--rate",
        "40",
        "--duration",
        "1",
    ]);
    let output = bench_run::run(command).await;
    let json = bench_run::json_line(&output, "floor");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(json["rate"].as_f64(), Some(40.0));
    let domains = json["domains"].as_array().expect("a list of domains");
    let names: Vec<&str> = domains
        .iter()
        .filter_map(|d| d["domain"].as_str())
        .collect();
    assert_eq!(names, DOMAINS);
    for d in domains {
        let name = &d["domain"];
        let number = |field: &str| {
            d[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{name}: no {field} in {d}"))
        };
        assert!(number("samples") > 0.0, "{name}: no samples");
        assert!(number("p50_ms") > 0.0, "{name}: p50 {d}");
        assert!(
            number("p50_ms") <= number("p99_ms"),
            "{name}: p50 > p99 {d}"
        );
        assert!(number("floor_p50_ms") > 0.0, "{name}: floor p50 {d}");
        assert!(
            number("floor_p50_ms") <= number("floor_p99_ms"),
            "{name}: floor p50 > p99 {d}"
        );
        assert!(number("floor_sent") > 0.0, "{name}: the floor sent nothing");
        assert_eq!(
            number("floor_sent"),
            number("floor_delivered"),
            "{name}: the floor lost commands {d}"
        );
        let p99_ratio = number("p99_ratio");
        let expected = number("p99_ms") / number("floor_p99_ms");
        assert!(
            (p99_ratio - expected).abs() < 1e-9,
            "{name}: p99 ratio {p99_ratio} is not p99 / floor p99 {d}"
        );
    }
    // The table a reader sees: a row per domain.
    for domain in DOMAINS {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("| {domain} |"))),
            "no table row for {domain}"
        );
    }
}
