//! Unit tests of the in-memory apply (apply.rs): the byte bounds, batches applied whole and
//! command by command, trimming, refusals, cuts and parking; run by `cargo test`.

use super::*;
use crate::domain::Rejection;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tablewire_schemas::{Domain as DomainName, Envelope};

#[test]
fn the_state_bound_leaves_room_for_what_a_write_carries_besides() {
    let mib = 1024 * 1024;
    let limits = Limits::new(512 * 1024, mib);
    assert_eq!(limits.write, mib - WRITE_HEADROOM);
    assert_eq!(limits.state, 512 * 1024 - WRITE_HEADROOM / 2);
    // A server with small messages lowers every domain's bound.
    let small = Limits::new(192 * 1024, 128 * 1024);
    assert_eq!(small.state, (128 * 1024 - WRITE_HEADROOM) / 2);
    let limits = Limits::new(1000, mib);
    assert!(limits.fits_at_a_glance(1000));
    assert!(!limits.fits_at_a_glance(1001));
}

/// A log of texts: `add` appends one and fans it out, `shout` only fans out, `drop` removes
/// the oldest, `panic` panics halfway through changing the state.
struct Log {
    bound: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum LogCommand {
    Add(String),
    Shout(String),
    Drop(usize),
    Panic(#[allow(dead_code)] bool),
}

impl Domain for Log {
    const NAME: DomainName = DomainName::Display;
    type State = Vec<String>;
    type Command = LogCommand;

    fn new_state(&self, _ctx: &Context<'_>) -> Vec<String> {
        Vec::new()
    }

    fn apply(
        &self,
        state: &mut Vec<String>,
        command: LogCommand,
        _ctx: &Context<'_>,
        effects: &mut Effects,
    ) -> Result<(), Rejection> {
        match command {
            LogCommand::Add(text) => {
                effects.event(json!({"type": "added", "text": text}));
                state.push(text);
            }
            LogCommand::Shout(text) => effects.event(json!({"type": "shout", "text": text})),
            LogCommand::Drop(n) => {
                state.drain(..n.min(state.len()));
            }
            LogCommand::Panic(_) => {
                state.push("half".into());
                panic!("boom");
            }
        }
        Ok(())
    }

    fn max_state_bytes(&self) -> usize {
        self.bound
    }
}

fn item(seq: u64, command: Value) -> Item {
    let envelope = Envelope {
        tenant: "t".into(),
        domain: DomainName::Display,
        key: "k".into(),
        id: format!("m{seq}"),
        origin: Origin {
            edge: "e1".into(),
            conn: Some(1),
            request: None,
        },
        claims: None,
        at: 1_000 + seq as i64,
        command: serde_json::value::to_raw_value(&command).expect("command"),
    };
    Item {
        seq,
        state_key: "t.k".into(),
        envelope,
        subject: "tw.in.display.0.t.k".into(),
        payload: Bytes::new(),
        message: None,
    }
}

fn add(seq: u64, bytes: usize) -> Item {
    item(seq, json!({"add": format!("{seq}:{}", "x".repeat(bytes))}))
}

fn codes(out: &Applied<Vec<String>>) -> Vec<String> {
    out.replies
        .iter()
        .map(|(_, frame)| frame.value()["code"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Writes `items` as the partition worker does once the bounded path is on: one bounded
/// outcome after another until every command is dealt with. Returns each write's encoded
/// size and outcome.
fn write_all<D: Domain>(
    domain: &D,
    mut stored: Option<Stored<D::State>>,
    items: &[Item],
    limits: Limits,
) -> Vec<(usize, Applied<D::State>)> {
    let mut pending: Vec<&Item> = items.iter().collect();
    let mut writes = Vec::new();
    while !pending.is_empty() {
        let out = bounded(domain, stored.take(), &pending, limits);
        pending.retain(|i| i.seq > out.last_seq);
        stored = out.stored.clone();
        let size = out
            .stored
            .as_ref()
            .filter(|_| out.changed)
            .map_or(0, |s| serde_json::to_vec(s).expect("encode").len());
        writes.push((size, out));
    }
    writes
}

#[test]
fn the_state_is_measured_inside_its_encoding_without_serializing_it_again() {
    let items = [
        add(1, 10),
        item(2, json!({"shout": "\"quoted\" é"})),
        add(3, 10),
    ];
    let refs: Vec<&Item> = items.iter().collect();
    let stored = all(&Log { bound: 1 << 20 }, None, &refs)
        .stored
        .expect("state");
    let encoded = serde_json::to_vec(&stored).expect("encode").len();
    assert_eq!(state_len_in(encoded, &stored), json_len(&stored.state));
}

#[test]
fn the_common_path_applies_the_whole_batch_as_one_write() {
    let items = [add(1, 10), add(2, 10), item(3, json!({"drop": 1}))];
    let refs: Vec<&Item> = items.iter().collect();
    let out = all(&Log { bound: 1 << 20 }, None, &refs);
    assert!(out.changed && !out.panicked);
    assert_eq!((out.applied, out.last_seq), (3, 3));
    let stored = out.stored.expect("state");
    assert_eq!(stored.state.len(), 1);
    assert_eq!((stored.applied, stored.seq), (3, 2));
    assert_eq!(stored.outbox.events.len(), 2);
}

#[test]
fn a_batch_too_big_for_one_message_is_cut_into_writes_that_each_fit() {
    let limits = Limits::new(1 << 20, 4096 + WRITE_HEADROOM);
    assert_eq!(limits.write, 4096);
    // Small additions to the state, each with an event; big events that change nothing.
    let items: Vec<Item> = (1..=12)
        .map(|seq| match seq % 2 {
            0 => item(seq, json!({"shout": "s".repeat(1000)})),
            _ => add(seq, 100),
        })
        .collect();
    let writes = write_all(&Log { bound: 1 << 20 }, None, &items, limits);
    assert!(
        writes.len() > 2,
        "cut into several writes: {}",
        writes.len()
    );
    let mut events = Vec::new();
    for (size, out) in &writes {
        assert!(*size <= limits.write, "{size} > {}", limits.write);
        assert!(out.changed && out.parked.is_empty() && out.rejections.is_empty());
        let stored = out.stored.as_ref().expect("state");
        assert_eq!(stored.applied, out.last_seq, "applied up to the cut");
        events.extend(stored.outbox.events.iter().map(|e| e.seq));
    }
    assert_eq!(
        events,
        (1..=12).collect::<Vec<u64>>(),
        "each command once, in order"
    );
    let last = writes.last().and_then(|(_, out)| out.stored.as_ref());
    assert_eq!(last.map(|s| s.state.len()), Some(6));
}

#[test]
fn a_command_that_would_pass_the_state_bound_is_refused_and_changes_nothing() {
    let log = Log { bound: 2000 };
    let limits = Limits::new(log.bound, 1 << 20);
    let items = [
        add(1, 600),
        add(2, 600),
        add(3, 600),
        add(4, 600),
        item(5, json!({"drop": 1})),
        add(6, 600),
    ];
    let writes = write_all(&log, None, &items, limits);
    assert_eq!(writes.len(), 1);
    let out = &writes[0].1;
    assert_eq!(out.rejections, ["STATE_FULL"]);
    assert_eq!(codes(out), ["STATE_FULL"], "the sender is told");
    let state = &out.stored.as_ref().expect("state").state;
    let firsts: Vec<&str> = state.iter().map(|t| &t[..2]).collect();
    assert_eq!(
        firsts,
        ["2:", "3:", "6:"],
        "4 refused; room made by the drop"
    );
    assert!(json_len(state) <= limits.state);
    // A state already past its bound (an older, larger one) may still shrink.
    let big = Stored {
        applied: 0,
        seq: 0,
        state: vec!["y".repeat(5000), "z".repeat(5000)],
        outbox: Outbox::default(),
    };
    let drop = [item(7, json!({"drop": 1}))];
    let writes = write_all(&log, Some(big), &drop, limits);
    assert_eq!(writes[0].1.rejections, Vec::<&str>::new());
    assert_eq!(writes[0].1.stored.as_ref().map(|s| s.state.len()), Some(1));
}

#[test]
fn a_panicking_command_is_parked_and_the_others_applied() {
    let log = Log { bound: 1 << 20 };
    let items = [add(1, 10), item(2, json!({"panic": true})), add(3, 10)];
    let refs: Vec<&Item> = items.iter().collect();
    assert!(all(&log, None, &refs).panicked, "the common path gives up");
    let writes = write_all(&log, None, &items, Limits::new(log.bound, 1 << 20));
    assert_eq!(writes.len(), 1);
    let out = &writes[0].1;
    assert_eq!(out.parked.len(), 1);
    assert_eq!(
        (out.parked[0].0, out.parked[0].1),
        (2, Reason::ApplyPanicked)
    );
    assert_eq!(out.parked[0].2, "boom");
    assert_eq!(codes(out), ["COMMAND_PARKED"]);
    let stored = out.stored.as_ref().expect("state");
    assert_eq!(stored.state.len(), 2, "nothing of the panic stays");
    assert_eq!(stored.applied, 3);
}

#[test]
fn a_command_too_big_even_alone_is_parked_after_what_came_before_is_written() {
    let log = Log { bound: 1 << 20 };
    let limits = Limits::new(log.bound, 8 * 1024 + WRITE_HEADROOM);
    let items = [
        add(1, 10),
        item(2, json!({"shout": "x".repeat(10_000)})),
        add(3, 10),
    ];
    let writes = write_all(&log, None, &items, limits);
    assert_eq!(writes.len(), 2, "cut before the big one");
    assert_eq!(writes[0].1.last_seq, 1);
    let second = &writes[1].1;
    assert_eq!(second.parked.len(), 1);
    assert_eq!(second.parked[0].1, Reason::WriteTooBig);
    assert_eq!(second.applied, 1);
    assert_eq!(second.stored.as_ref().map(|s| s.state.len()), Some(2));
}

#[test]
fn display_sessions_fed_long_transcriptions_keep_the_newest_within_their_bound() {
    let display = crate::display::Display;
    let limits = Limits::new(display.max_state_bytes(), 1024 * 1024);
    let text = "t".repeat(60_000);
    let items: Vec<Item> = (1..=20)
        .map(|seq| {
            let update = json!({"type": "update", "update": {"type": "transcription",
                "displayData": {"text": text, "n": seq}}});
            item(seq, update)
        })
        .collect();
    let writes = write_all(&display, None, &items, limits);
    let mut applied = 0;
    for (size, out) in &writes {
        assert!(*size <= limits.write);
        assert!(out.rejections.is_empty() && out.parked.is_empty());
        applied += out.applied;
    }
    assert_eq!(applied, 20, "every update applied, none refused");
    let last = writes.last().and_then(|(_, out)| out.stored.as_ref());
    let state = &last.expect("state").state;
    assert!(json_len(state) <= limits.state);
    let newest = state
        .display_updates
        .last()
        .map(|u| u.decode().expect("decode").display_data["n"].clone());
    assert_eq!(newest, Some(json!(20)));
    assert!(state.transcriptions.len() >= 2, "several kept");
}
