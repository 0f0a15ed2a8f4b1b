//! Every subject tablewire publishes or subscribes to, built here and nowhere else.
//!
//! | subject | what flows there |
//! |---|---|
//! | `tw.in.{domain}.{tenant}.{key}` | client commands, published by edges into the input stream |
//! | `tw.in.{domain}.{partition}.{tenant}.{key}` | the same commands as the stream stores them |
//! | `tw.out.{domain}.{tenant}.{key}` | events for every client of one key (core NATS) |
//! | `tw.edge.{edge}` | replies for one sender on one edge (core NATS) |
//! | `tw.rec.{domain}.{tenant}.{kind}` | records on their way to SQL (records stream) |
//! | `tw.parked.{domain}.{reason}` | commands a handler could not apply (parked stream) |
//! | `tw.svc.transcribe` | transcriber requests and replies (core NATS request/reply) |
//!
//! `{tenant}` and `{key}` are ids encoded by [`crate::token::encode`].

use crate::token::encode;
use tablewire_schemas::Domain;

/// The prefix of every tablewire subject.
pub const ROOT: &str = "tw";

/// Where an edge publishes a command for `key` of `tenant` in `domain`.
pub fn input(domain: Domain, tenant: &str, key: &str) -> String {
    format!("tw.in.{domain}.{}.{}", encode(tenant), encode(key))
}

/// What the input stream of `domain` listens to.
pub fn input_filter(domain: Domain) -> String {
    format!("tw.in.{domain}.*.*")
}

/// How the input stream of `domain` stores a command: a partition token is inserted, computed
/// by the server from tenant and key, so that one consumer per partition sees every command of
/// a key in order.
pub fn input_partitioned_template(domain: Domain, partitions: u16) -> String {
    format!(
        "tw.in.{domain}.{{{{partition({partitions},1,2)}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}"
    )
}

/// Every stored command of one partition.
pub fn input_partition_filter(domain: Domain, partition: u16) -> String {
    format!("tw.in.{domain}.{partition}.>")
}

/// Every stored command of one key, whatever its partition (for direct gets).
pub fn input_stored_key(domain: Domain, tenant: &str, key: &str) -> String {
    format!("tw.in.{domain}.*.{}.{}", encode(tenant), encode(key))
}

/// Reads the partition from a stored command subject.
pub fn partition_of_stored(subject: &str) -> Option<u16> {
    subject.split('.').nth(3)?.parse().ok()
}

/// Where handlers publish the events of one key, and edges with a client of that key listen.
pub fn output(domain: Domain, tenant: &str, key: &str) -> String {
    format!("tw.out.{domain}.{}.{}", encode(tenant), encode(key))
}

/// Every event of one tenant in one domain (for inspection: `nats sub`).
pub fn output_tenant(domain: Domain, tenant: &str) -> String {
    format!("tw.out.{domain}.{}.>", encode(tenant))
}

/// Replies for single senders on one edge.
pub fn edge_inbox(edge: &str) -> String {
    format!("tw.edge.{}", encode(edge))
}

/// Where a handler publishes a record of `kind` for the SQL writer.
pub fn record(domain: Domain, tenant: &str, kind: &str) -> String {
    format!("tw.rec.{domain}.{}.{}", encode(tenant), encode(kind))
}

/// The domain of a record's subject (as [`record`] builds it).
pub fn domain_of_record(subject: &str) -> Option<Domain> {
    let domain = subject.strip_prefix("tw.rec.")?.split('.').next()?;
    Domain::from_name(domain)
}

/// Every record of one kind from one domain, all tenants (e.g. for a webhook consumer).
pub fn record_kind_filter(domain: Domain, kind: &str) -> String {
    format!("tw.rec.{domain}.*.{}", encode(kind))
}

/// What the records stream listens to.
pub fn records_filter() -> String {
    "tw.rec.>".to_string()
}

/// Where a handler parks a command of `domain` it cannot apply, for `reason` (a short
/// snake_case word, see the `Tw-Parked-…` headers in [`header`]).
pub fn parked(domain: Domain, reason: &str) -> String {
    format!("tw.parked.{domain}.{}", encode(reason))
}

/// What the parked stream listens to.
pub fn parked_filter() -> String {
    "tw.parked.>".to_string()
}

/// Where the voice handler asks a transcriber (request/reply; JSON contract in
/// `tablewire_schemas::voice`). Transcribers subscribe in the queue group
/// [`TRANSCRIBER_GROUP`] so each request goes to one of them.
pub const TRANSCRIBE: &str = "tw.svc.transcribe";

/// The queue group transcribers share.
pub const TRANSCRIBER_GROUP: &str = "tw-transcribers";

/// Header names tablewire sets on its messages.
pub mod header {
    /// The per-key event sequence number of an event on `tw.out.…`.
    pub const SEQ: &str = "Tw-Seq";
    /// The connection on the edge a reply on `tw.edge.…` is for.
    pub const CONN: &str = "Tw-Conn";
    /// The HTTP request on the edge a reply on `tw.edge.…` is for.
    pub const REQUEST: &str = "Tw-Request";
    /// Marks an event as the answer to a command that was rejected.
    pub const REJECTED: &str = "Tw-Rejected";
    /// Why a parked command was parked: a short snake_case word (`state_unreadable`, …).
    pub const PARKED_REASON: &str = "Tw-Parked-Reason";
    /// A parked command's reason in words (one line).
    pub const PARKED_DETAIL: &str = "Tw-Parked-Detail";
    /// The domain whose input stream held a parked command.
    pub const PARKED_DOMAIN: &str = "Tw-Parked-Domain";
    /// A parked command's sequence in its input stream.
    pub const PARKED_SEQ: &str = "Tw-Parked-Seq";
    /// The partition of its input stream a parked command was in.
    pub const PARKED_PARTITION: &str = "Tw-Parked-Partition";
    /// The subject a parked command was stored under in its input stream.
    pub const PARKED_SUBJECT: &str = "Tw-Parked-Subject";
    /// Set when a parked command's payload was cut to fit a message: its length before.
    pub const PARKED_TRUNCATED: &str = "Tw-Parked-Truncated";

    /// Where a notice (a frame one key's handler sends to another key's subscribers, without
    /// a place in that key's sequence) stands among its sender's: `{applied}.{index} {source}`
    /// ([`notice_position`]). The same when the notice is published again after a takeover,
    /// and growing with each of the sender's writes, so edges can drop repeats.
    pub const NOTICE: &str = "Tw-Notice";

    /// The [`NOTICE`] value of the `index`th notice of a write of `domain`'s `tenant` / `key`
    /// whose last applied command has stream sequence `applied`.
    pub fn notice_position(
        domain: super::Domain,
        tenant: &str,
        key: &str,
        applied: u64,
        index: usize,
    ) -> String {
        format!("{applied}.{index} {domain}/{tenant}/{key}")
    }

    /// A [`NOTICE`] value read back: the sender and the position `(applied, index)`.
    pub fn parse_notice_position(value: &str) -> Option<(&str, (u64, u64))> {
        let (position, source) = value.split_once(' ')?;
        let (applied, index) = position.split_once('.')?;
        Some((source, (applied.parse().ok()?, index.parse().ok()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_records_domain_reads_back_from_its_subject() {
        let subject = record(Domain::Display, "t.1", "display_session");
        assert_eq!(domain_of_record(&subject), Some(Domain::Display));
        assert_eq!(domain_of_record("tw.rec.nope.t1.k"), None);
        assert_eq!(domain_of_record("tw.in.display.0.t1.k"), None);
    }

    #[test]
    fn notice_positions_read_back_and_order_by_write_then_index() {
        let first = header::notice_position(Domain::Device, "t1", "reader-1", 41, 1);
        let later = header::notice_position(Domain::Device, "t1", "reader-1", 42, 0);
        let (source, a) = header::parse_notice_position(&first).expect("parses");
        let (same_source, b) = header::parse_notice_position(&later).expect("parses");
        assert_eq!((source, a), ("device/t1/reader-1", (41, 1)));
        assert_eq!(source, same_source);
        assert!(
            a < b,
            "a later write's notice comes after every notice of an earlier one"
        );
        assert_eq!(header::parse_notice_position("41.x device/t1/r"), None);
        assert_eq!(header::parse_notice_position("no-space"), None);
    }

    #[test]
    fn subjects_carry_domain_tenant_and_key() {
        assert_eq!(input(Domain::Display, "t1", "s1"), "tw.in.display.t1.s1");
        assert_eq!(
            output(Domain::Display, "t1", "s.1"),
            "tw.out.display.t1.=732e31"
        );
        assert_eq!(
            input_stored_key(Domain::Display, "t1", "s1"),
            "tw.in.display.*.t1.s1"
        );
        assert_eq!(output_tenant(Domain::Display, "t1"), "tw.out.display.t1.>");
        assert_eq!(
            parked(Domain::Pos, "state_unreadable"),
            "tw.parked.pos.state_unreadable"
        );
    }

    #[test]
    fn partition_template_is_a_server_transform() {
        assert_eq!(
            input_partitioned_template(Domain::Display, 8),
            "tw.in.display.{{partition(8,1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}"
        );
        assert_eq!(partition_of_stored("tw.in.display.5.t1.s1"), Some(5));
        assert_eq!(partition_of_stored("tw.in.display.t1.s1"), None);
    }
}
