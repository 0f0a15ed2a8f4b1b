//! Applies one key's commands in memory for the partition worker, in two ways. [`all`], the
//! common path: the whole batch at once, the state taken by value and never cloned; the worker
//! then checks the size of the one write it encodes anyway. [`bounded`], when that write
//! passed a byte bound or a domain panicked: command by command, each measured, so that the
//! state stays within its domain's bound (trimmed by the domain, or the command refused with
//! `STATE_FULL`), the write (state and outbox) within the server's `max_payload` (the batch cut
//! into several writes), and a command that panics or cannot fit even alone is parked.

use super::item::Item;
use super::park::{self, Reason};
use crate::domain::{Context, Domain, Effects, json_len};
use std::panic::{AssertUnwindSafe, catch_unwind};
use tablewire_schemas::stored::{Emitted, Outbox, Record, SequencedEvent, Stored};
use tablewire_schemas::{ErrorBody, ErrorCode, Frame, Origin};

/// What a stored write adds around its state and outbox entries:
/// `{"applied":…,"seq":…,"state":…,"outbox":{"events":[…],"records":[…],…}}`.
const STORED_OVERHEAD: usize = 160;

/// Room left in a message for the headers of a state write (expected revision, TTL).
const WRITE_HEADROOM: usize = 4096;

/// The byte bounds of one key's write.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Limits {
    /// Most bytes of the state (the domain's bound, at most half of `write`).
    pub state: usize,
    /// Most bytes of the whole stored value (state and outbox).
    pub write: usize,
}

impl Limits {
    /// The bounds for `domain_bound` on a connection whose server takes messages of up to
    /// `max_payload` bytes.
    pub fn new(domain_bound: usize, max_payload: usize) -> Limits {
        let write = max_payload.saturating_sub(WRITE_HEADROOM);
        Limits {
            state: domain_bound.min(write / 2),
            write,
        }
    }

    /// Whether a write encoded as `encoded` bytes may go as it is without measuring its state
    /// alone: it is within both bounds (its state is smaller than the whole).
    pub fn fits_at_a_glance(&self, encoded: usize) -> bool {
        encoded <= self.state.min(self.write)
    }
}

/// The bytes of `stored.state` inside its encoding of `encoded` bytes, found without
/// serializing the state again: the encoding less its outbox (mostly frames serialized once
/// already, so measuring it is little more than adding up lengths) and the fields around.
pub(crate) fn state_len_in<S>(encoded: usize, stored: &Stored<S>) -> usize {
    let skeleton = Stored {
        applied: stored.applied,
        seq: stored.seq,
        state: (),
        outbox: Outbox::default(),
    };
    // `()` is written `null`, an empty outbox `{}`.
    let around = json_len(&skeleton).saturating_sub("null".len() + "{}".len());
    encoded.saturating_sub(around.saturating_add(json_len(&stored.outbox)))
}

/// The result of applying a key's commands in memory.
pub(crate) struct Applied<S> {
    /// The key's state after the commands: changed, or exactly as it was loaded.
    pub stored: Option<Stored<S>>,
    /// Whether any command was applied (so `stored` must be written).
    pub changed: bool,
    /// Frames for senders: the domain's replies and every rejection's error frame.
    pub replies: Vec<(Origin, Frame)>,
    /// Commands applied.
    pub applied: u64,
    /// The catalogue names of the rejections, for the metrics once the outcome is final.
    pub rejections: Vec<&'static str>,
    /// A command asked for the key's removal; commands after it were left for the next round.
    pub remove: bool,
    /// The sequence of the last command this round looked at; later ones are left for the
    /// next write.
    pub last_seq: u64,
    /// The time (`Context::now_ms`) of that command.
    pub last_at: i64,
    /// Commands to park before this outcome is written (only from [`bounded`]).
    pub parked: Vec<(u64, Reason, String)>,
    /// A domain panicked ([`all`] only): `stored` is not to be trusted, nothing of this
    /// outcome may be written.
    pub panicked: bool,
}

impl<S> Applied<S> {
    fn start(stored: Option<Stored<S>>) -> Self {
        Applied {
            stored,
            changed: false,
            replies: Vec::new(),
            applied: 0,
            rejections: Vec::new(),
            remove: false,
            last_seq: 0,
            last_at: 0,
            parked: Vec::new(),
            panicked: false,
        }
    }

    fn looked_at(&mut self, item: &Item) {
        self.last_seq = item.seq;
        self.last_at = item.envelope.at;
    }

    /// Sets the written state's `applied` and outbox, when anything was applied.
    fn finish(mut self, outbox: Outbox) -> Self {
        self.changed = self.applied > 0;
        if let Some(s) = self.stored.as_mut().filter(|_| self.changed) {
            s.applied = self.last_seq;
            s.outbox = outbox;
        }
        self
    }
}

/// What one command did to the state.
enum Step {
    /// Applied: the state changed in place; these are its effects.
    Applied(Effects),
    /// Refused (or unreadable): the state is unchanged and the error frame is among the
    /// replies.
    Rejected,
    /// The domain panicked; the state may be half changed.
    Panicked(String),
}

fn context(item: &Item) -> Context<'_> {
    let env = &item.envelope;
    Context {
        now_ms: env.at,
        stream_seq: item.seq,
        message_id: &env.id,
        tenant: &env.tenant,
        key: &env.key,
        claims: env.claims.as_ref(),
        origin: &env.origin,
    }
}

/// What a panic's payload says.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

fn reject<D: Domain>(domain: &D, item: &Item, error: &ErrorBody, out: &mut Applied<D::State>) {
    let frame = Frame::from(&domain.error_frame(error, &context(item)));
    out.replies.push((item.envelope.origin.clone(), frame));
    out.rejections.push(error.code.name());
}

/// Applies one command to `out.stored` (a new state when the key has none), catching a panic.
fn step<D: Domain>(domain: &D, item: &Item, out: &mut Applied<D::State>) -> Step {
    let ctx = context(item);
    let command = match serde_json::from_str::<D::Command>(item.envelope.command.get()) {
        Ok(command) => command,
        Err(e) => {
            let error = ErrorBody::with_message(ErrorCode::InvalidMessage, e.to_string());
            reject(domain, item, &error, out);
            return Step::Rejected;
        }
    };
    let mut effects = Effects::default();
    let stored = &mut out.stored;
    let applied = catch_unwind(AssertUnwindSafe(|| match stored.as_mut() {
        Some(s) => domain
            .apply(&mut s.state, command, &ctx, &mut effects)
            .map(|()| None),
        None => {
            let mut state = domain.new_state(&ctx);
            domain
                .apply(&mut state, command, &ctx, &mut effects)
                .map(|()| Some(state))
        }
    }));
    tracing::debug!(
        target: "tablewire::command",
        command_id = %item.envelope.id,
        domain = %item.envelope.domain,
        tenant = %item.envelope.tenant,
        key = %item.envelope.key,
        seq = item.seq,
        outcome = match &applied {
            Err(_) => "panicked",
            Ok(Err(_)) => "rejected",
            Ok(Ok(_)) => "applied",
        },
        "command handled"
    );
    match applied {
        Err(panic) => Step::Panicked(panic_message(panic.as_ref())),
        Ok(Err(rejection)) => {
            reject(domain, item, &rejection.0, out);
            Step::Rejected
        }
        Ok(Ok(fresh)) => {
            if let Some(state) = fresh {
                out.stored = Some(Stored {
                    applied: 0,
                    seq: 0,
                    state,
                    outbox: Outbox::default(),
                });
            }
            Step::Applied(effects)
        }
    }
}

/// Turns one applied command's effects into outbox entries (numbering its events after the
/// key's last) and replies; returns whether it asked for the key's removal.
fn collect<D: Domain>(
    stored: &mut Stored<D::State>,
    item: &Item,
    effects: Effects,
    outbox: &mut Outbox,
    replies: &mut Vec<(Origin, Frame)>,
) -> bool {
    for frame in effects.events {
        stored.seq += 1;
        outbox.events.push(SequencedEvent {
            seq: stored.seq,
            frame: frame.with_seq(stored.seq),
        });
    }
    for (i, (kind, data)) in effects.records.into_iter().enumerate() {
        outbox.records.push(Record {
            id: format!("{}:{}:{}:{i}", D::NAME, item.state_key, item.seq),
            kind,
            tenant: item.envelope.tenant.clone(),
            data,
        });
    }
    for (i, (domain, tenant, key, command)) in effects.commands.into_iter().enumerate() {
        outbox.commands.push(Emitted {
            id: format!("{}:{}:{}:c{i}", D::NAME, item.state_key, item.seq),
            domain,
            tenant,
            key,
            command,
            at: item.envelope.at,
        });
    }
    outbox.notices.extend(effects.notices);
    replies.extend(effects.replies);
    effects.remove
}

/// The common path: applies every command of `items` (in order, stopping after one that
/// removes the key). Takes the loaded state by value: cloning it per batch (with its outbox)
/// was a large share of a handler's CPU for domains with big states, and a rejected command
/// leaves it untouched. Nothing is measured here; the caller checks the write it encodes. On a
/// panic it stops at once with `panicked` set.
pub(crate) fn all<D: Domain>(
    domain: &D,
    stored: Option<Stored<D::State>>,
    items: &[&Item],
) -> Applied<D::State> {
    let mut out = Applied::start(stored);
    let mut outbox = Outbox::default();
    for item in items {
        if out.remove {
            break;
        }
        out.looked_at(item);
        match step(domain, item, &mut out) {
            Step::Applied(effects) => {
                out.applied += 1;
                let Some(s) = out.stored.as_mut() else {
                    continue;
                };
                out.remove = collect::<D>(s, item, effects, &mut outbox, &mut out.replies);
            }
            Step::Rejected => {}
            Step::Panicked(_) => {
                out.panicked = true;
                return out;
            }
        }
    }
    out.finish(outbox)
}

/// The JSON bytes an outbox's entries add to a stored write (each with its comma).
fn outbox_len(outbox: &Outbox) -> usize {
    fn entries<T: serde::Serialize>(list: &[T]) -> usize {
        list.iter()
            .map(|entry| json_len(entry).saturating_add(1))
            .sum()
    }
    entries(&outbox.events)
        .saturating_add(entries(&outbox.records))
        .saturating_add(entries(&outbox.commands))
        .saturating_add(entries(&outbox.notices))
}

fn append(outbox: &mut Outbox, more: Outbox) {
    outbox.events.extend(more.events);
    outbox.records.extend(more.records);
    outbox.commands.extend(more.commands);
    outbox.notices.extend(more.notices);
}

/// The bounded path: applies `items` one by one, measuring each, and stops where the next
/// applied command's effects would make the write pass `limits.write` (it starts the next
/// write). A command after which the state is over `limits.state` (and larger than before it)
/// gets [`Domain::trim`] and, if still over, is refused with `STATE_FULL`, its effects dropped.
/// A command that panics, or that does not fit a write even as the first applied, is parked:
/// the state stays as before it and the sender gets `COMMAND_PARKED`.
pub(crate) fn bounded<D: Domain>(
    domain: &D,
    mut stored: Option<Stored<D::State>>,
    items: &[&Item],
    limits: Limits,
) -> Applied<D::State> {
    // The outbox of the write before is not cloned with the state at every command.
    let previous_outbox = stored.as_mut().map(|s| std::mem::take(&mut s.outbox));
    let mut state_len = stored.as_ref().map_or(0, |s| json_len(&s.state));
    let mut out = Applied::start(stored);
    let mut outbox = Outbox::default();
    let mut entries_len = 0usize;
    for item in items {
        if out.remove {
            break;
        }
        let before = out.stored.clone();
        let effects = match step(domain, item, &mut out) {
            Step::Applied(effects) => effects,
            Step::Rejected => {
                out.looked_at(item);
                continue;
            }
            Step::Panicked(why) => {
                out.stored = before;
                park_one(domain, item, Reason::ApplyPanicked, why, &mut out);
                continue;
            }
        };
        let Some(s) = out.stored.as_mut() else {
            continue;
        };
        let mut len = json_len(&s.state);
        if len > limits.state && len > state_len {
            domain.trim(&mut s.state, limits.state);
            len = json_len(&s.state);
        }
        if len > limits.state && len > state_len {
            out.stored = before;
            let error = ErrorBody::with_message(
                ErrorCode::StateFull,
                format!(
                    "this {} would pass its limit of {} bytes; nothing changed",
                    D::NAME,
                    limits.state
                ),
            );
            reject(domain, item, &error, &mut out);
            out.looked_at(item);
            continue;
        }
        let mut mine = Outbox::default();
        let mut replies = Vec::new();
        let remove = collect::<D>(s, item, effects, &mut mine, &mut replies);
        let mine_len = outbox_len(&mine);
        let written_len = STORED_OVERHEAD
            .saturating_add(len)
            .saturating_add(entries_len)
            .saturating_add(mine_len);
        if written_len > limits.write {
            out.stored = before;
            if out.applied == 0 {
                let why = format!(
                    "its write would take {written_len} bytes, more than the {} a message may",
                    limits.write
                );
                park_one(domain, item, Reason::WriteTooBig, why, &mut out);
                continue;
            }
            // The cut: this command starts the next write.
            break;
        }
        out.applied += 1;
        out.looked_at(item);
        state_len = len;
        entries_len = entries_len.saturating_add(mine_len);
        append(&mut outbox, mine);
        out.replies.extend(replies);
        out.remove = remove;
    }
    let mut out = out.finish(outbox);
    if !out.changed
        && let (Some(s), Some(previous)) = (out.stored.as_mut(), previous_outbox)
    {
        s.outbox = previous;
    }
    out
}

fn park_one<D: Domain>(
    domain: &D,
    item: &Item,
    reason: Reason,
    why: String,
    out: &mut Applied<D::State>,
) {
    if let Some(reply) = park::parked_reply(domain, &item.envelope, item.seq, reason) {
        out.replies.push(reply);
    }
    out.parked.push((item.seq, reason, why));
    out.looked_at(item);
}

#[cfg(test)]
mod tests {
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
            .map(|u| u.display_data["n"].clone());
        assert_eq!(newest, Some(json!(20)));
        assert!(state.transcriptions.len() >= 2, "several kept");
    }
}
