//! Which partitions this worker owns: workers announce themselves in the `tw_workers` bucket
//! (entries expire unless refreshed) and every worker assigns each partition to the live worker
//! with the highest rendezvous hash, so all agree without talking to each other and a change
//! of membership moves only the partitions it must.

use super::RuntimeError;
use async_nats::jetstream::kv;
use futures::TryStreamExt;
use serde_json::json;
use tablewire_nats::{resource, token};
use tablewire_schemas::Domain;

/// This worker's presence in one domain.
pub(crate) struct Membership {
    kv: kv::Store,
    domain: Domain,
    worker: String,
}

impl Membership {
    pub fn new(kv: kv::Store, domain: Domain, worker: String) -> Self {
        Membership { kv, domain, worker }
    }

    /// This worker's id.
    pub fn worker_name(&self) -> &str {
        &self.worker
    }

    /// Announces (or refreshes) this worker.
    pub async fn announce(&self) -> Result<(), RuntimeError> {
        let value = json!({"worker": self.worker, "pid": std::process::id()}).to_string();
        self.kv
            .put(
                resource::worker_key(self.domain, &self.worker),
                value.into(),
            )
            .await
            .map_err(|e| RuntimeError::Nats(format!("announce worker: {e}")))?;
        Ok(())
    }

    /// The live workers of this domain, this one included.
    pub async fn live(&self) -> Result<Vec<String>, RuntimeError> {
        let prefix = format!("{}.", self.domain);
        let keys: Vec<String> = self
            .kv
            .keys()
            .await
            .map_err(|e| RuntimeError::Nats(format!("list workers: {e}")))?
            .try_collect()
            .await
            .map_err(|e| RuntimeError::Nats(format!("list workers: {e}")))?;
        let mut workers: Vec<String> = keys
            .iter()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter_map(|t| token::decode(t).map(|w| w.into_owned()))
            .collect();
        if !workers.contains(&self.worker) {
            workers.push(self.worker.clone());
        }
        Ok(workers)
    }

    /// Removes this worker, so the others take its partitions at once.
    pub async fn leave(&self) {
        let _ = self
            .kv
            .purge(resource::worker_key(self.domain, &self.worker))
            .await;
    }
}

/// FNV-1a, 64 bits: stable across processes and versions, unlike the standard hasher.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for part in parts {
        for &b in *part {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // Finalise (splitmix64) so that similar inputs spread well.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// The partitions `me` owns among `workers`.
pub(crate) fn assign(partitions: u16, workers: &[String], me: &str) -> Vec<u16> {
    (0..partitions)
        .filter(|p| {
            let p = p.to_be_bytes();
            workers
                .iter()
                .max_by_key(|w| (fnv1a(&[&p, w.as_bytes()]), w.as_str()))
                .is_some_and(|owner| owner == me)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("host-{i}-{}", 1000 + i)).collect()
    }

    #[test]
    fn every_partition_has_exactly_one_owner() {
        for n in 1..6 {
            let ws = workers(n);
            let mut owned: Vec<u16> = ws.iter().flat_map(|w| assign(16, &ws, w)).collect();
            owned.sort_unstable();
            assert_eq!(owned, (0..16).collect::<Vec<_>>(), "{n} workers");
        }
    }

    #[test]
    fn load_is_spread_over_workers() {
        let ws = workers(4);
        for w in &ws {
            let n = assign(64, &ws, w).len();
            assert!((6..=26).contains(&n), "{w} owns {n} of 64");
        }
    }

    #[test]
    fn a_leaving_worker_only_moves_its_own_partitions() {
        let ws = workers(3);
        let before: Vec<Vec<u16>> = ws.iter().map(|w| assign(32, &ws, w)).collect();
        let rest = ws[..2].to_vec();
        for (i, w) in rest.iter().enumerate() {
            let after = assign(32, &rest, w);
            assert!(
                before[i].iter().all(|p| after.contains(p)),
                "{w} lost a partition"
            );
        }
    }
}
