//! Unit tests of the fan-out (fanout.rs): dispatch to members, held events, repeats, gaps and
//! fresh snapshots, without a NATS server; run by `cargo test`.

use super::*;
use crate::ws::Counters;

/// A fan-out whose NATS client never connects: dispatch and resync do not use it.
async fn fanout() -> Arc<Fanout> {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect("127.0.0.1:1")
        .await
        .expect("a client that connects later");
    let metrics = Metrics::new(&mut prometheus_client::registry::Registry::default());
    Fanout::new(client, metrics, Duration::from_secs(1))
}

fn topic() -> Arc<Topic> {
    Arc::new(Topic {
        subject: "tw.out.test".to_string(),
        subscribed: tokio::sync::OnceCell::new(),
        members: Mutex::new(Vec::new()),
        task: Mutex::new(None),
    })
}

/// A snapshot at `seq` carrying the frame `snap`.
fn snapshot_at(seq: u64) -> Snapshot {
    Arc::new(move || Box::pin(async move { Ok((seq, Bytes::from_static(b"snap "))) }))
}

/// A snapshot that never comes: a member that must resync stays syncing.
fn snapshot_never() -> Snapshot {
    Arc::new(|| Box::pin(std::future::pending()))
}

fn member(id: u64, phase: Phase, last_seq: u64, snapshot: Snapshot) -> Member {
    Member {
        conn: Arc::new(Conn::new(id, "t", 1 << 20, Counters::default())),
        phase,
        last_seq,
        snapshot,
    }
}

/// Events as received: `Some(n)` is sequence `n` with frame `"n "`, `None` an event without
/// a sequence (frame `"- "`).
fn events(seqs: &[Option<u64>]) -> Vec<(Option<u64>, Bytes)> {
    seqs.iter()
        .map(|seq| {
            let frame = seq.map_or("- ".to_string(), |s| format!("{s} "));
            (*seq, Bytes::from(frame))
        })
        .collect()
}

/// Everything written to a member so far, frames laid end to end.
fn written(member: &Member) -> String {
    let (frames, _) = member.conn.take_pending();
    frames
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

fn held(member: &Member) -> Option<Vec<Option<u64>>> {
    match &member.phase {
        Phase::Syncing(held) => Some(held.iter().map(|(seq, _)| *seq).collect()),
        Phase::Live => None,
    }
}

#[tokio::test]
async fn a_live_member_gets_each_event_once_in_order_and_resyncs_on_a_gap() {
    struct Case {
        name: &'static str,
        last_seq: u64,
        events: Vec<Option<u64>>,
        written: &'static str,
        last_after: u64,
        /// The events held for a fresh snapshot, when a gap made the member resync.
        held: Option<Vec<Option<u64>>>,
        duplicates: u64,
        gaps: u64,
    }
    let cases = [
        Case {
            name: "consecutive, right after the member (one write)",
            last_seq: 4,
            events: vec![Some(5), Some(6), Some(7)],
            written: "5 6 7 ",
            last_after: 7,
            held: None,
            duplicates: 0,
            gaps: 0,
        },
        Case {
            name: "repeats only (a republished outbox)",
            last_seq: 7,
            events: vec![Some(6), Some(7)],
            written: "",
            last_after: 7,
            held: None,
            duplicates: 2,
            gaps: 0,
        },
        Case {
            name: "repeats, then new events",
            last_seq: 5,
            events: vec![Some(4), Some(5), Some(6), Some(7)],
            written: "6 7 ",
            last_after: 7,
            held: None,
            duplicates: 2,
            gaps: 0,
        },
        Case {
            name: "a repeat inside a burst",
            last_seq: 5,
            events: vec![Some(6), Some(6), Some(7)],
            written: "6 7 ",
            last_after: 7,
            held: None,
            duplicates: 1,
            gaps: 0,
        },
        Case {
            name: "a gap before the burst: nothing written, all held",
            last_seq: 5,
            events: vec![Some(8), Some(9)],
            written: "",
            last_after: 5,
            held: Some(vec![Some(8), Some(9)]),
            duplicates: 0,
            gaps: 1,
        },
        Case {
            name: "a gap inside the burst: what came before it is written",
            last_seq: 5,
            events: vec![Some(6), Some(8), Some(9)],
            written: "6 ",
            last_after: 6,
            held: Some(vec![Some(8), Some(9)]),
            duplicates: 0,
            gaps: 1,
        },
        Case {
            name: "an event without a sequence goes through and moves nothing",
            last_seq: 5,
            events: vec![None, Some(6)],
            written: "- 6 ",
            last_after: 6,
            held: None,
            duplicates: 0,
            gaps: 0,
        },
    ];
    for case in cases {
        let fanout = fanout().await;
        let topic = topic();
        topic
            .members()
            .push(member(1, Phase::Live, case.last_seq, snapshot_never()));
        fanout.dispatch(&topic, &events(&case.events));
        let members = topic.members();
        assert_eq!(written(&members[0]), case.written, "{}: written", case.name);
        assert_eq!(
            members[0].last_seq, case.last_after,
            "{}: last sequence",
            case.name
        );
        assert_eq!(held(&members[0]), case.held, "{}: held", case.name);
        assert_eq!(
            fanout.metrics.fanout_duplicates.get(),
            case.duplicates,
            "{}: duplicates",
            case.name
        );
        assert_eq!(
            fanout.metrics.fanout_gaps.get(),
            case.gaps,
            "{}: gaps",
            case.name
        );
    }
}

#[tokio::test]
async fn members_at_different_places_each_get_what_they_miss() {
    let fanout = fanout().await;
    let topic = topic();
    topic.members().extend([
        member(1, Phase::Live, 4, snapshot_never()),
        member(2, Phase::Live, 6, snapshot_never()),
        member(3, Phase::Syncing(Vec::new()), 0, snapshot_never()),
    ]);
    fanout.dispatch(&topic, &events(&[Some(5), Some(6), Some(7)]));
    let members = topic.members();
    assert_eq!(written(&members[0]), "5 6 7 ");
    assert_eq!(written(&members[1]), "7 ");
    assert_eq!(
        written(&members[2]),
        "",
        "a syncing member gets nothing yet"
    );
    assert_eq!(held(&members[2]), Some(vec![Some(5), Some(6), Some(7)]));
}

#[tokio::test]
async fn after_its_snapshot_a_member_gets_only_the_held_events_past_it() {
    struct Case {
        name: &'static str,
        held: Vec<Option<u64>>,
        snapshot_seq: u64,
        written: &'static str,
        last_after: u64,
    }
    let cases = [
        Case {
            name: "the snapshot includes some held events",
            held: vec![Some(4), Some(5), Some(6)],
            snapshot_seq: 5,
            written: "snap 6 ",
            last_after: 6,
        },
        Case {
            name: "the snapshot includes every held event",
            held: vec![Some(4), Some(5)],
            snapshot_seq: 9,
            written: "snap ",
            last_after: 9,
        },
        Case {
            name: "held repeats are dropped",
            held: vec![Some(6), Some(6), Some(7)],
            snapshot_seq: 5,
            written: "snap 6 7 ",
            last_after: 7,
        },
        Case {
            name: "events without a sequence are all delivered",
            held: vec![None, Some(3)],
            snapshot_seq: 3,
            written: "snap - ",
            last_after: 3,
        },
    ];
    for case in cases {
        let fanout = fanout().await;
        let topic = topic();
        let held_events = events(&case.held);
        topic.members().push(member(
            1,
            Phase::Syncing(held_events),
            0,
            snapshot_at(case.snapshot_seq),
        ));
        fanout.resync(&topic, 1).await;
        let members = topic.members();
        assert_eq!(written(&members[0]), case.written, "{}: written", case.name);
        assert_eq!(
            members[0].last_seq, case.last_after,
            "{}: last sequence",
            case.name
        );
        assert!(
            matches!(members[0].phase, Phase::Live),
            "{}: live",
            case.name
        );
    }
}
