//! Per-connection message limits (governor). Each WebSocket endpoint keeps one [`ConnLimit`]
//! per connection; an over-limit message is answered with `RATE_LIMITED` and a retry-after,
//! and the connection stays usable. Tests drive time with governor's fake clock.

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;

/// A limit on how many messages one connection may send.
pub struct ConnLimit<C: Clock = DefaultClock> {
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    clock: C,
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl ConnLimit {
    /// `n` messages per minute, all of which may come at once.
    pub fn per_minute(n: u32) -> Self {
        Self::with_clock(Quota::per_minute(nonzero(n)), DefaultClock::default())
    }

    /// `n` messages per second, all of which may come at once.
    pub fn per_second(n: u32) -> Self {
        Self::with_clock(Quota::per_second(nonzero(n)), DefaultClock::default())
    }
}

impl<C: Clock + Clone> ConnLimit<C> {
    /// A limit on a given clock (tests use `governor::clock::FakeRelativeClock`).
    pub fn with_clock(quota: Quota, clock: C) -> Self {
        ConnLimit {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
        }
    }

    /// `Ok` when one more message is allowed now; otherwise how many milliseconds until it is.
    pub fn check(&self) -> Result<(), u64> {
        self.limiter.check().map_err(|not_until| {
            (not_until.wait_time_from(self.clock.now()).as_millis() as u64).max(1)
        })
    }
}

/// The clock connection limits run on: real time, or a frozen clock that moves only when a
/// test says so (`tablewire_edge::Config::rate_limit_clock`), so "the 101st message in a
/// minute" can be tested against a running edge without waiting or racing the clock.
#[derive(Debug, Clone, Default)]
pub struct LimitClock {
    frozen: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl LimitClock {
    /// A clock that stands still until [`advance`](Self::advance)d.
    pub fn frozen() -> Self {
        LimitClock {
            frozen: Some(Default::default()),
        }
    }

    /// Moves a frozen clock forward (no effect on the real one).
    pub fn advance(&self, by: std::time::Duration) {
        if let Some(nanos) = &self.frozen {
            nanos.fetch_add(by.as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl Clock for LimitClock {
    type Instant = governor::nanos::Nanos;

    fn now(&self) -> Self::Instant {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        match &self.frozen {
            Some(nanos) => nanos.load(std::sync::atomic::Ordering::Relaxed).into(),
            None => START.get_or_init(std::time::Instant::now).elapsed().into(),
        }
    }
}

impl ConnLimit<LimitClock> {
    /// `n` messages per minute on `clock`, all of which may come at once.
    pub fn per_minute_on(n: u32, clock: LimitClock) -> Self {
        Self::with_clock(Quota::per_minute(nonzero(n)), clock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::time::Duration;

    #[test]
    fn the_101st_message_in_a_minute_waits() {
        let clock = FakeRelativeClock::default();
        let limit = ConnLimit::with_clock(Quota::per_minute(nonzero(100)), clock.clone());
        for i in 0..100 {
            assert_eq!(limit.check(), Ok(()), "message {i}");
        }
        let wait = limit.check().expect_err("101st refused");
        assert!((1..=600).contains(&wait), "retry after {wait} ms");
        clock.advance(Duration::from_millis(wait));
        assert_eq!(limit.check(), Ok(()), "allowed again after the retry-after");
    }
}
