//! Recovery times. A fault's recovery is the time from the kill (or stop) until every load
//! client that was live at that moment has had an answer to a write it first sent after it —
//! for a client that only receives (a display, a kitchen), until it has received such a write.
//! Every client is woken at the kill and sends at once (a client waiting for its next turn
//! does not wait), so the figure is the outage as clients see it, measured the same way for
//! every fault. A client that ends before it recovers (a display whose session is over) is left
//! out, and counted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Which domain a client belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Display,
    Pos,
    Collab,
    Device,
}

impl Kind {
    /// Every kind, in the order the report prints them.
    pub const ALL: [Kind; 4] = [Kind::Display, Kind::Pos, Kind::Collab, Kind::Device];

    /// Its place in [`Kind::ALL`].
    pub fn index(self) -> usize {
        match self {
            Kind::Display => 0,
            Kind::Pos => 1,
            Kind::Collab => 2,
            Kind::Device => 3,
        }
    }

    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Display => "display",
            Kind::Pos => "pos",
            Kind::Collab => "collab",
            Kind::Device => "device",
        }
    }
}

/// What every client shares: who is live, and the fault being recovered from.
pub(super) struct Recovery {
    state: Mutex<State>,
    /// Counts faults; a change wakes every client waiting for its next turn.
    faults: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    live: HashMap<u64, Kind>,
    open: Option<Open>,
}

struct Open {
    at: Instant,
    waiting: HashMap<u64, Kind>,
    slowest: [Option<Duration>; 4],
    left: usize,
}

/// How one fault was recovered from.
#[derive(Debug, Clone, Default)]
pub(super) struct FaultRecovery {
    /// Until every client had its answer; `None` when some had none within the limit.
    pub all: Option<Duration>,
    /// The slowest client of each kind ([`Kind::index`]).
    pub by_kind: [Option<Duration>; 4],
    /// Clients still without an answer at the limit.
    pub not_recovered: usize,
    /// Clients that ended before they had one.
    pub left: usize,
}

impl Recovery {
    /// No client yet, no fault.
    pub fn new() -> Arc<Recovery> {
        Arc::new(Recovery {
            state: Mutex::new(State::default()),
            faults: watch::channel(0).0,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new live client of `kind`; it stops counting when dropped.
    pub fn client(self: &Arc<Self>, kind: Kind) -> Client {
        let mut state = self.state();
        state.next_id += 1;
        let id = state.next_id;
        state.live.insert(id, kind);
        Client {
            id,
            kind,
            recovery: self.clone(),
            faults: self.faults.subscribe(),
        }
    }

    /// A fault begins now: every live client must be answered again; each is woken.
    pub fn begin(&self, at: Instant) {
        let mut state = self.state();
        let waiting = state.live.clone();
        state.open = Some(Open {
            at,
            waiting,
            slowest: [None; 4],
            left: 0,
        });
        drop(state);
        self.faults.send_modify(|n| *n += 1);
    }

    /// Waits until every client live when the fault began has been answered (or `limit`
    /// passed), and closes the fault.
    pub async fn wait(&self, limit: Duration) -> FaultRecovery {
        let deadline = Instant::now() + limit;
        loop {
            let done = {
                let state = self.state();
                state.open.as_ref().is_none_or(|o| o.waiting.is_empty())
            };
            if done || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let Some(open) = self.state().open.take() else {
            return FaultRecovery::default();
        };
        FaultRecovery {
            all: open.waiting.is_empty().then(|| {
                open.slowest
                    .iter()
                    .flatten()
                    .max()
                    .copied()
                    .unwrap_or_default()
            }),
            by_kind: open.slowest,
            not_recovered: open.waiting.len(),
            left: open.left,
        }
    }
}

/// One load client as the recovery clock sees it.
pub(super) struct Client {
    id: u64,
    kind: Kind,
    recovery: Arc<Recovery>,
    faults: watch::Receiver<u64>,
}

impl Client {
    /// A write this client first sent at `sent` was answered (or, for a receiver, arrived).
    pub fn answered(&self, sent: Instant) {
        let now = Instant::now();
        let mut state = self.recovery.state();
        let Some(open) = state.open.as_mut() else {
            return;
        };
        if sent < open.at || open.waiting.remove(&self.id).is_none() {
            return;
        }
        let took = now.saturating_duration_since(open.at);
        let slowest = &mut open.slowest[self.kind.index()];
        *slowest = Some(slowest.map_or(took, |s| s.max(took)));
    }

    /// A receiver of fault counts, to cut a wait short when a fault begins.
    pub fn faults(&self) -> watch::Receiver<u64> {
        self.faults.clone()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let mut state = self.recovery.state();
        state.live.remove(&self.id);
        if let Some(open) = state.open.as_mut()
            && open.waiting.remove(&self.id).is_some()
        {
            open.left += 1;
        }
    }
}

/// A client's turns: one every `interval`, except that a fault cuts the wait short, so every
/// client sends right after a kill.
pub(super) struct Pacer {
    interval: Duration,
    next: Instant,
    faults: watch::Receiver<u64>,
    /// The shortest time between two turns, faults or not.
    min_gap: Duration,
    last: Option<Instant>,
}

impl Pacer {
    /// Turns every `interval`, the first after `offset` (0..1) of one, so that clients spread.
    pub fn new(interval: Duration, offset: f64, mut faults: watch::Receiver<u64>) -> Pacer {
        faults.borrow_and_update();
        Pacer {
            interval,
            next: Instant::now() + interval.mul_f64(offset.clamp(0.0, 1.0)),
            faults,
            min_gap: Duration::ZERO,
            last: None,
        }
    }

    /// Keeps turns at least `gap` apart even when a fault wakes the client.
    pub fn at_least(mut self, gap: Duration) -> Pacer {
        self.min_gap = gap;
        self
    }

    /// Waits for the next turn.
    pub async fn turn(&mut self) {
        if !matches!(self.faults.has_changed(), Ok(true)) {
            let at = tokio::time::Instant::from_std(self.next);
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = self.faults.changed() => {}
            }
        }
        self.faults.borrow_and_update();
        if let Some(last) = self.last {
            let earliest = tokio::time::Instant::from_std(last + self.min_gap);
            tokio::time::sleep_until(earliest).await;
        }
        let now = Instant::now();
        self.last = Some(now);
        self.next = now + self.interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fault_is_recovered_once_every_live_client_is_answered_after_it() {
        let recovery = Recovery::new();
        let display = recovery.client(Kind::Display);
        let pos = recovery.client(Kind::Pos);
        let leaving = recovery.client(Kind::Collab);
        let before = Instant::now();
        recovery.begin(Instant::now());
        let late = recovery.client(Kind::Device);
        // A write sent before the fault proves nothing; a client that ends is left out; one
        // that came after the fault is not waited for.
        display.answered(before);
        drop(leaving);
        pos.answered(Instant::now());
        let partial = recovery.wait(Duration::from_millis(30)).await;
        assert_eq!(partial.all, None);
        assert_eq!((partial.not_recovered, partial.left), (1, 1));
        assert!(partial.by_kind[Kind::Pos.index()].is_some());

        recovery.begin(Instant::now());
        display.answered(Instant::now());
        pos.answered(Instant::now());
        late.answered(Instant::now());
        let whole = recovery.wait(Duration::from_secs(5)).await;
        assert!(whole.all.is_some());
        assert_eq!(whole.not_recovered, 0);
    }

    #[tokio::test]
    async fn a_fault_cuts_a_wait_for_the_next_turn_short() {
        let recovery = Recovery::new();
        let client = recovery.client(Kind::Pos);
        let mut pacer = Pacer::new(Duration::from_secs(3600), 1.0, client.faults());
        recovery.begin(Instant::now());
        tokio::time::timeout(Duration::from_secs(5), pacer.turn())
            .await
            .expect("woken by the fault");
    }
}
