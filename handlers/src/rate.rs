//! Write rates kept in a key's own state: GCRA over a theoretical arrival time (µs) stored
//! beside the key's data, so a limit holds across every edge and handler worker with no I/O of
//! its own (the key's write stores it), and a redelivered command is judged by the same stored
//! time. Used by collaborative rooms (per room), POS books (per tenant) and events feeds (per
//! tenant).

use crate::domain::Rejection;
use tablewire_schemas::{ErrorBody, ErrorCode};

/// A sustained rate and the burst allowed on top of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteRate {
    /// Writes accepted per second, sustained (at least 1).
    pub per_second: u32,
    /// Writes accepted at once (at least 1).
    pub burst: u32,
}

impl WriteRate {
    /// A rate of `per_second` with room for `burst` at once.
    pub const fn new(per_second: u32, burst: u32) -> Self {
        WriteRate { per_second, burst }
    }

    /// Admits one write at `now_ms` against the stored arrival time `tat_us`: the arrival time
    /// to store when it is admitted, or `RATE_LIMITED` with how long to wait (`what` names the
    /// limited thing in the message).
    pub fn admit(&self, tat_us: i64, now_ms: i64, what: &str) -> Result<i64, Rejection> {
        let interval = 1_000_000 / i64::from(self.per_second.max(1));
        let burst = i64::from(self.burst.max(1)).saturating_mul(interval);
        let now = now_ms.saturating_mul(1000);
        if tat_us.saturating_sub(now) > burst {
            // A write admitted at time t leaves the arrival time at most a burst ahead of t, so
            // this command's clock is behind one already admitted (a command that waited in the
            // stream, or an edge whose clock is behind): not a flood. Admitted without moving
            // the arrival time.
            return Ok(tat_us);
        }
        let tat = tat_us.max(now).saturating_add(interval);
        if tat - now > burst {
            let wait = (((tat - now - burst) / 1000) as u64).max(1);
            Err(Rejection(
                ErrorBody::with_message(ErrorCode::RateLimited, format!("too many writes {what}"))
                    .retry_after(wait),
            ))
        } else {
            Ok(tat)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_sustained_rate() {
        let rate = WriteRate::new(10, 5);
        let mut tat = 0;
        for _ in 0..5 {
            tat = rate.admit(tat, 1_000, "here").expect("within the burst");
        }
        let refused = rate.admit(tat, 1_000, "here").expect_err("past the burst");
        assert_eq!(refused.0.code, ErrorCode::RateLimited);
        assert_eq!(refused.0.retry_after_ms, Some(100), "one interval at 10/s");
        assert!(refused.0.message.contains("here"));
        // 100 ms later one more is allowed, and the refusal did not use any.
        assert!(rate.admit(tat, 1_100, "here").is_ok());
        // A long pause does not bank more than the burst.
        let mut later = tat;
        for _ in 0..5 {
            later = rate.admit(later, 60_000, "here").expect("burst again");
        }
        assert!(rate.admit(later, 60_000, "here").is_err());
    }

    #[test]
    fn a_command_from_before_the_last_admitted_one_is_not_a_flood() {
        let rate = WriteRate::new(10, 5);
        let mut tat = 0;
        for _ in 0..5 {
            tat = rate.admit(tat, 100_000, "here").expect("burst");
        }
        assert!(rate.admit(tat, 100_000, "here").is_err(), "a flood now");
        // A command accepted by an edge a day earlier (it waited in the stream, or its edge's
        // clock is behind): admitted, and the limit for the present is unchanged.
        assert_eq!(rate.admit(tat, 100_000 - 86_400_000, "here"), Ok(tat));
        assert!(rate.admit(tat, 100_000, "here").is_err());
    }
}
