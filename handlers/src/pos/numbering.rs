//! Order numbers: `ORD-YYYYMMDD-NNN`, counted per tenant per local day (the tenant's UTC
//! offset). Used by the pos domain's book.

use chrono::{Datelike, FixedOffset, TimeZone};

/// The local day `YYYYMMDD` of `now_ms` at `offset_minutes` east of UTC.
pub fn local_day(now_ms: i64, offset_minutes: i32) -> String {
    let offset = FixedOffset::east_opt(offset_minutes * 60)
        .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"));
    let date = offset
        .timestamp_millis_opt(now_ms)
        .single()
        .map(|t| t.date_naive())
        .unwrap_or_default();
    format!("{:04}{:02}{:02}", date.year(), date.month(), date.day())
}

/// `ORD-YYYYMMDD-NNN`: at least three digits, more past 999.
pub fn order_number(day: &str, n: u64) -> String {
    format!("ORD-{day}-{n:03}")
}
