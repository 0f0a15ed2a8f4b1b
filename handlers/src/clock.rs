//! The wall clock as the handlers read it (ms since the Unix epoch): the time the runtime, the
//! SQL writer and the commands handlers send themselves (expiry, presence) are stamped with.

/// Now, in ms since the Unix epoch (0 should the clock be before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
