//! The batch plan: whether a batch of deliveries can be trusted as it came or must be rebuilt
//! from the stream, and what the next batch may then expect. A pure function of delivery
//! metadata, decided here and nowhere else; [`super::batch`] carries it out.
//!
//! A batch is *trusted* while the consumer sequences this worker receives are contiguous, each
//! delivered for the first time, and were preceded by nothing unacknowledged. Anything else (the
//! first batch of a pull, a gap, a redelivery, a take-over's catch-up, a batch after a failure)
//! is rebuilt: every command of the partition still in the stream up to the batch's highest
//! sequence is read, in order (the input streams keep only unacknowledged commands), so
//! commands delivered to a worker that died are applied before those after them.

/// What one delivery's JetStream metadata says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// Its sequence in the input stream.
    pub stream_seq: u64,
    /// Its sequence in the partition's consumer: contiguous while nothing was lost on the way.
    pub consumer_seq: u64,
    /// How many times it was delivered (1 the first time).
    pub delivered: i64,
}

/// How a batch is to be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Apply the deliveries as they came (and trust the cached states of their keys); when
    /// false, rebuild the batch from the stream up to `read_through` and read every key's state.
    pub trusted: bool,
    /// The highest stream sequence the batch covers: its deliveries', or a catch-up's bound.
    pub read_through: u64,
    /// The consumer sequence the next delivery must have, should this batch settle
    /// [`Settled::Done`] with nothing foreign.
    next_if_done: Option<u64>,
}

/// How a batch ended, as far as the next batch's trust is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Every command was applied or parked, and acknowledged. `foreign`: commands a rebuild
    /// read that the batch's deliveries did not bring (delivered to another worker before, or
    /// not delivered yet): later deliveries may bring them again, so the next batch is rebuilt.
    Done { foreign: usize },
    /// Something failed for a passing reason (or panicked): commands come back.
    Failed,
}

/// Plans a batch of `deliveries` (in the order received) given the consumer sequence the
/// partition expected next (`None`: nothing about what came before is trusted), and a
/// take-over's `catch_up_through` (0 when none): commands up to that stream sequence that were
/// delivered to a worker that is gone and brought by no delivery.
pub(crate) fn plan(
    expected_next: Option<u64>,
    deliveries: &[Delivery],
    catch_up_through: u64,
) -> Plan {
    let mut trusted = expected_next.is_some() && catch_up_through == 0;
    let mut expected = expected_next;
    let mut read_through = catch_up_through;
    for delivery in deliveries {
        if expected != Some(delivery.consumer_seq) || delivery.delivered > 1 {
            trusted = false;
        }
        expected = Some(delivery.consumer_seq + 1);
        read_through = read_through.max(delivery.stream_seq);
    }
    let last_consumer_seq = deliveries.last().map(|d| d.consumer_seq);
    Plan {
        trusted,
        read_through,
        next_if_done: if trusted {
            expected
        } else {
            last_consumer_seq.map(|c| c + 1)
        },
    }
}

impl Plan {
    /// The consumer sequence the next delivery must have for its batch to be trusted, once this
    /// batch `settled`.
    pub fn next_expected(&self, settled: Settled) -> Option<u64> {
        match settled {
            Settled::Failed => None,
            Settled::Done { foreign } if self.trusted || foreign == 0 => self.next_if_done,
            Settled::Done { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A delivery of stream sequence `stream_seq` as consumer sequence `consumer_seq`, first time.
    fn first(stream_seq: u64, consumer_seq: u64) -> Delivery {
        Delivery {
            stream_seq,
            consumer_seq,
            delivered: 1,
        }
    }

    fn again(stream_seq: u64, consumer_seq: u64, delivered: i64) -> Delivery {
        Delivery {
            stream_seq,
            consumer_seq,
            delivered,
        }
    }

    #[test]
    fn a_batch_is_trusted_only_when_it_continues_what_came_before() {
        struct Case {
            name: &'static str,
            expected_next: Option<u64>,
            deliveries: Vec<Delivery>,
            catch_up_through: u64,
            trusted: bool,
            read_through: u64,
        }
        let cases = [
            Case {
                name: "contiguous first deliveries after a settled batch",
                expected_next: Some(5),
                deliveries: vec![first(40, 5), first(41, 6), first(45, 7)],
                catch_up_through: 0,
                trusted: true,
                read_through: 45,
            },
            Case {
                name: "the first batch of a pull: nothing before it is known",
                expected_next: None,
                deliveries: vec![first(40, 5), first(41, 6)],
                catch_up_through: 0,
                trusted: false,
                read_through: 41,
            },
            Case {
                name: "a gap before the batch (a delivery lost on the way)",
                expected_next: Some(5),
                deliveries: vec![first(41, 6), first(42, 7)],
                catch_up_through: 0,
                trusted: false,
                read_through: 42,
            },
            Case {
                name: "a gap inside the batch",
                expected_next: Some(5),
                deliveries: vec![first(40, 5), first(42, 7)],
                catch_up_through: 0,
                trusted: false,
                read_through: 42,
            },
            Case {
                name: "a consumer sequence seen before (a duplicate delivery)",
                expected_next: Some(5),
                deliveries: vec![first(40, 5), first(40, 5)],
                catch_up_through: 0,
                trusted: false,
                read_through: 40,
            },
            Case {
                name: "a redelivery (nak, ack wait, another worker's leftovers)",
                expected_next: Some(5),
                deliveries: vec![first(40, 5), again(38, 6, 2)],
                catch_up_through: 0,
                trusted: false,
                read_through: 40,
            },
            Case {
                name: "a take-over's catch-up, which brings no deliveries",
                expected_next: Some(5),
                deliveries: vec![],
                catch_up_through: 77,
                trusted: false,
                read_through: 77,
            },
            Case {
                name: "a catch-up bound below the deliveries",
                expected_next: None,
                deliveries: vec![first(90, 1)],
                catch_up_through: 77,
                trusted: false,
                read_through: 90,
            },
        ];
        for case in cases {
            let plan = plan(case.expected_next, &case.deliveries, case.catch_up_through);
            assert_eq!(plan.trusted, case.trusted, "{}: trusted", case.name);
            assert_eq!(
                plan.read_through, case.read_through,
                "{}: read through",
                case.name
            );
        }
    }

    #[test]
    fn what_the_next_batch_may_expect_follows_how_this_one_settled() {
        struct Case {
            name: &'static str,
            expected_next: Option<u64>,
            deliveries: Vec<Delivery>,
            catch_up_through: u64,
            settled: Settled,
            next: Option<u64>,
        }
        let cases = [
            Case {
                name: "trusted and done: the next delivery continues it",
                expected_next: Some(5),
                deliveries: vec![first(40, 5), first(41, 6)],
                catch_up_through: 0,
                settled: Settled::Done { foreign: 0 },
                next: Some(7),
            },
            Case {
                name: "rebuilt, done, nothing foreign: trusted from here on",
                expected_next: None,
                deliveries: vec![first(40, 5), again(41, 6, 3)],
                catch_up_through: 0,
                settled: Settled::Done { foreign: 0 },
                next: Some(7),
            },
            Case {
                name: "rebuilt with foreign commands: they may be delivered again",
                expected_next: None,
                deliveries: vec![first(40, 5)],
                catch_up_through: 0,
                settled: Settled::Done { foreign: 2 },
                next: None,
            },
            Case {
                name: "trusted but failed: the commands come back",
                expected_next: Some(5),
                deliveries: vec![first(40, 5)],
                catch_up_through: 0,
                settled: Settled::Failed,
                next: None,
            },
            Case {
                name: "rebuilt and failed",
                expected_next: None,
                deliveries: vec![first(40, 5)],
                catch_up_through: 0,
                settled: Settled::Failed,
                next: None,
            },
            Case {
                name: "a catch-up without deliveries sets no expectation",
                expected_next: Some(5),
                deliveries: vec![],
                catch_up_through: 77,
                settled: Settled::Done { foreign: 0 },
                next: None,
            },
            Case {
                name: "a trusted batch without deliveries keeps the expectation",
                expected_next: Some(5),
                deliveries: vec![],
                catch_up_through: 0,
                settled: Settled::Done { foreign: 0 },
                next: Some(5),
            },
        ];
        for case in cases {
            let plan = plan(case.expected_next, &case.deliveries, case.catch_up_through);
            assert_eq!(plan.next_expected(case.settled), case.next, "{}", case.name);
        }
    }

    #[test]
    fn a_rebuilt_batch_that_settles_makes_the_next_contiguous_one_trusted() {
        let rebuilt = plan(None, &[first(10, 1), first(11, 2)], 0);
        assert!(!rebuilt.trusted);
        let next = rebuilt.next_expected(Settled::Done { foreign: 0 });
        let following = plan(next, &[first(12, 3)], 0);
        assert!(following.trusted);
        let after_gap = plan(next, &[first(14, 5)], 0);
        assert!(!after_gap.trusted, "consumer sequence 4 never arrived");
    }
}
