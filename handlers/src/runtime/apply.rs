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
mod tests;
