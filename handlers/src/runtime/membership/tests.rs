//! Unit tests of partition ownership (membership.rs): rendezvous assignment, how a partition
//! starts, the roster and liveness probes; run by `cargo test`.

use super::*;

fn workers(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("host-{i}-{}", 1000 + i)).collect()
}

#[test]
fn every_partition_has_exactly_one_owner() {
    for n in 1..6 {
        let ws = workers(n);
        let mut owned: Vec<u16> = ws.iter().flat_map(|w| assign(16, &ws, w)).collect();
        owned.sort_unstable();
        assert_eq!(owned, (0..16).collect::<Vec<_>>(), "{n} workers");
    }
}

#[test]
fn load_is_spread_over_workers() {
    let ws = workers(4);
    for w in &ws {
        let n = assign(64, &ws, w).len();
        assert!((6..=26).contains(&n), "{w} owns {n} of 64");
    }
}

#[test]
fn a_leaving_worker_only_moves_its_own_partitions() {
    let ws = workers(3);
    let before: Vec<Vec<u16>> = ws.iter().map(|w| assign(32, &ws, w)).collect();
    let rest = ws[..2].to_vec();
    for (i, w) in rest.iter().enumerate() {
        let after = assign(32, &rest, w);
        assert!(
            before[i].iter().all(|p| after.contains(p)),
            "{w} lost a partition"
        );
    }
}

fn entry(worker: &str, probe: Option<&str>) -> Vec<u8> {
    let mut value = serde_json::json!({"worker": worker, "pid": 7});
    if let Some(probe) = probe {
        value["probe"] = probe.into();
    }
    value.to_string().into_bytes()
}

#[test]
fn a_member_whose_process_is_gone_is_not_live_and_probes_skip_me() {
    let mut roster = Roster::default();
    roster.put("a".into(), &entry("a", Some("_INBOX.a")));
    roster.put("b".into(), &entry("b", Some("_INBOX.b")));
    roster.put("me".into(), &entry("me", Some("_INBOX.me")));
    // An entry of an older version (no probe) and one that does not read: members, never
    // probed, gone only when their entries go.
    roster.put("old".into(), &entry("old", None));
    roster.put("odd".into(), b"not json");
    let mut probes = roster.probes("me");
    probes.sort();
    assert_eq!(probes, ["_INBOX.a", "_INBOX.b"]);
    let gone = HashSet::from(["_INBOX.b".to_string(), "_INBOX.me".to_string()]);
    let mut live = roster.live("me", &gone);
    live.sort();
    assert_eq!(
        live,
        ["a", "me", "odd", "old"],
        "me counts whatever is said"
    );
    roster.remove("a");
    assert!(!roster.live("me", &gone).contains(&"a".to_string()));
    // A worker that starts before its own entry is read is live for itself.
    assert_eq!(Roster::default().live("me", &gone), ["me"]);
}

#[test]
fn only_plain_subjects_are_probed() {
    assert!(usable_inbox("_INBOX.kmF1hEpSVDnVhGBbsO3OWg"));
    for bad in [
        "",
        "_INBOX.*",
        "_INBOX.>",
        "a..b",
        ".a",
        "a b",
        "a\r\nPUB x 1",
        &"x".repeat(300),
    ] {
        assert!(!usable_inbox(bad), "{bad:?}");
    }
    let mut roster = Roster::default();
    roster.put("w".into(), &entry("w", Some("_INBOX.>")));
    assert!(roster.probes("me").is_empty());
    assert_eq!(roster.live("me", &HashSet::new()).len(), 2);
}

#[test]
fn the_announcement_names_the_probe_inbox_in_plain_json() {
    let value = Announcement {
        worker: "w1".into(),
        pid: 42,
        probe: Some("_INBOX.x".into()),
    };
    let json: serde_json::Value =
        serde_json::from_slice(&serde_json::to_vec(&value).expect("encode")).expect("JSON");
    assert_eq!(
        json,
        serde_json::json!({"worker": "w1", "pid": 42, "probe": "_INBOX.x"})
    );
}

/// The partitions of `gone` among `workers`, and who takes each.
fn moved(workers: &[String], gone: &str, partitions: u16) -> Vec<(u16, String)> {
    let rest: Vec<String> = workers.iter().filter(|w| *w != gone).cloned().collect();
    (0..partitions)
        .filter(|&p| owner(p, workers).is_some_and(|o| o == gone))
        .map(|p| (p, owner(p, &rest).expect("an owner").clone()))
        .collect()
}

#[test]
fn partitions_of_a_gone_worker_are_taken_over_and_those_of_a_live_one_handed_over() {
    let ws = workers(3);
    let moves = moved(&ws, &ws[2], 32);
    assert!(!moves.is_empty());
    let live: Vec<String> = ws[..2].to_vec();
    for (p, taker) in &moves {
        // The gone worker is still known (its entry has not expired, or it was live in the
        // last view): the taker clears the pin instead of waiting for a release.
        assert_eq!(
            start_of(*p, &ws, &live, taker),
            Start::TakeOver {
                from: Some(ws[2].clone())
            },
            "partition {p}"
        );
    }
    // A worker that joins takes partitions from live workers: they hand them over.
    let joined = workers(4);
    let newcomer = &joined[3];
    for p in assign(32, &joined, newcomer) {
        let holder = owner(p, &ws).expect("an owner").clone();
        assert_eq!(
            start_of(p, &joined, &joined, newcomer),
            Start::HandedOverBy(holder)
        );
    }
    // Alone, with nobody known before: nothing to wait for.
    assert_eq!(
        start_of(0, &ws[..1], &ws[..1], &ws[0]),
        Start::TakeOver { from: None }
    );
}

#[test]
fn a_worker_that_joins_while_another_is_gone_takes_over_from_the_gone_one() {
    // The gone worker held every partition before the newcomer came (its entry is still
    // there): whatever the newcomer owns, nobody live will release it.
    let gone = "host-gone".to_string();
    let me = "host-new".to_string();
    let known = vec![gone.clone(), me.clone()];
    let live = vec![me.clone()];
    for p in assign(8, &live, &me) {
        assert_eq!(
            start_of(p, &known, &live, &me),
            Start::TakeOver {
                from: Some(gone.clone())
            }
        );
    }
}

#[test]
fn probes_mark_gone_and_alive_and_a_full_round_forgets_what_is_no_longer_tracked() {
    let tracked =
        |names: &[&str]| -> HashSet<String> { names.iter().map(|n| n.to_string()).collect() };
    let mut gone = HashSet::new();
    let results = [
        ("a".to_string(), Verdict::Gone),
        ("b".to_string(), Verdict::Alive),
    ];
    assert!(record(&mut gone, &results, Some(&tracked(&["a", "b"]))));
    assert_eq!(gone, tracked(&["a"]));
    // Nothing learned (this process's own connection failed): the verdict stays.
    let unknown = [("a".to_string(), Verdict::Unknown)];
    assert!(!record(&mut gone, &unknown, Some(&tracked(&["a", "b"]))));
    assert!(gone.contains("a"));
    // A probe of one domain's members keeps what the other domains' rounds found.
    let other = [("c".to_string(), Verdict::Gone)];
    assert!(record(&mut gone, &other, None));
    assert_eq!(gone, tracked(&["a", "c"]));
    // The process came back (a reconnect): alive again.
    let back = [("a".to_string(), Verdict::Alive)];
    assert!(record(&mut gone, &back, Some(&tracked(&["a", "c"]))));
    assert_eq!(gone, tracked(&["c"]));
    // A gone inbox no member names any more is forgotten by the next full round.
    assert!(record(&mut gone, &[], Some(&tracked(&["d"]))));
    assert!(gone.is_empty());
}
