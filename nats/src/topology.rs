//! The flags of `tablewire provision` (and `dev`) that shape the NATS resources, with the one
//! copy of their defaults: [`Topology::default`] is built from them, and the binary's CLI and
//! config file reuse them.

use crate::provision::Topology;
use std::time::Duration;

/// The resource shape as flags, environment variables and config-file keys.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct TopologyArgs {
    /// Partitions per input stream (the most workers one domain can use at once). Default: the
    /// count a stream already has, 4 for a new one. Changing it needs drained streams.
    #[arg(long, env = "TABLEWIRE_PARTITIONS", value_parser = at_least_one::<u16>)]
    pub partitions: Option<u16>,
    /// Replicas of streams and buckets (3 in a 3-node cluster; NATS allows 1 to 5).
    #[arg(long, env = "TABLEWIRE_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
    /// Seconds before an unacknowledged command is delivered again.
    #[arg(long, env = "TABLEWIRE_ACK_WAIT_SECS", default_value_t = 10, value_parser = at_least_one::<u64>)]
    pub ack_wait_secs: u64,
    /// Seconds a worker that stopped pulling keeps a partition's pin (one taking over from a
    /// worker that is gone clears the pin at once).
    #[arg(long, env = "TABLEWIRE_PIN_TIMEOUT_SECS", default_value_t = 5, value_parser = at_least_one::<u64>)]
    pub pin_timeout_secs: u64,
    /// Seconds a worker's presence lasts without a refresh: how long a hung worker keeps its
    /// partitions (a crashed one is found gone within half a second).
    #[arg(long, env = "TABLEWIRE_WORKER_TTL_SECS", default_value_t = 6, value_parser = at_least_one::<u64>)]
    pub worker_ttl_secs: u64,
    /// Seconds a device stays online without a heartbeat or scan (two device heartbeats).
    #[arg(long, env = "TABLEWIRE_DEVICE_PRESENCE_TTL_SECS", default_value_t = 60, value_parser = at_least_one::<u64>)]
    pub device_presence_ttl_secs: u64,
    /// Seconds JetStream remembers a command's id (`Nats-Msg-Id`: a display update's or an
    /// event's `Idempotency-Key`) to drop a retry of it as a duplicate.
    #[arg(long, env = "TABLEWIRE_DUPLICATE_WINDOW_SECS", default_value_t = 120, value_parser = at_least_one::<u64>)]
    pub duplicate_window_secs: u64,
    /// New partition consumers acknowledge once per applied batch, not once per command:
    /// faster, but a key whose state cannot be read then holds back its whole partition.
    #[arg(long, env = "TABLEWIRE_ACK_BY_BATCH")]
    pub ack_by_batch: bool,
}

/// The value parser of every flag that must be at least 1 (the edge's and the handler's too):
/// `0` is refused with "must be at least 1" rather than silently raised.
pub fn at_least_one<T>(text: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
    T::Err: std::fmt::Display,
{
    match text.trim().parse::<T>() {
        Ok(n) if n < T::from(1) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

impl Default for TopologyArgs {
    /// The flags' defaults (environment variables are not read).
    fn default() -> Self {
        use clap::{Args, FromArgMatches};
        let command = TopologyArgs::augment_args(clap::Command::new("defaults"))
            .mut_args(|arg| arg.env(None::<&str>));
        let matches = command.get_matches_from(["defaults"]);
        // The defaults above parse by construction (a unit test checks it).
        TopologyArgs::from_arg_matches(&matches).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl TopologyArgs {
    /// The topology these flags ask for; what they do not set is [`Topology`]'s own.
    pub fn topology(&self) -> Topology {
        Topology {
            partitions: self.partitions,
            replicas: usize::from(self.replicas),
            ack_wait: Duration::from_secs(self.ack_wait_secs),
            pin_timeout: Duration::from_secs(self.pin_timeout_secs),
            worker_ttl: Duration::from_secs(self.worker_ttl_secs),
            device_presence_ttl: Duration::from_secs(self.device_presence_ttl_secs),
            duplicate_window: Duration::from_secs(self.duplicate_window_secs),
            ack_by_batch: self.ack_by_batch,
            max_backlog_bytes: 1 << 30,
            parked_max_age: Duration::from_secs(14 * 24 * 3600),
            parked_max_bytes: 256 << 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_topology_is_the_flags_defaults() {
        let topology = Topology::default();
        assert_eq!(topology.replicas, 1);
        assert_eq!(topology.ack_wait, Duration::from_secs(10));
        assert_eq!(topology.duplicate_window, Duration::from_secs(120));
        assert_eq!(topology.partitions, None);
    }

    #[test]
    fn zero_is_refused_where_one_is_the_least() {
        assert_eq!(
            at_least_one::<u64>("0"),
            Err("must be at least 1".to_string())
        );
        assert_eq!(at_least_one::<u64>("3"), Ok(3));
        assert!(at_least_one::<u32>("x").is_err());
    }

    #[test]
    fn defaults_ignore_the_environment() {
        // Only the names matter: nothing sets these in the test environment.
        assert_eq!(TopologyArgs::default().worker_ttl_secs, 6);
    }
}
