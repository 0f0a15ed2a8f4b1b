//! What one domain's partition workers share (its NATS handles, state store, metrics and batch
//! limits), built once per domain by the runtime and read by every phase of a batch.

use super::state::StateStore;
use crate::domain::Domain;
use crate::metrics::{DomainLabel, Metrics};
use async_nats::jetstream;

/// Everything one domain's partition workers share.
pub(crate) struct Shared<D: Domain> {
    pub domain: D,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub stream: jetstream::stream::Stream,
    pub stream_name: String,
    pub state: StateStore,
    pub metrics: Metrics,
    pub label: DomainLabel,
    pub batch_size: usize,
    pub key_concurrency: usize,
}
