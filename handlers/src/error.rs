//! The error that stops the runtime, one key's batch or a domain's background task; used by the
//! runtime, the domains' start hooks and the collab webhook.

/// What can stop the runtime or one key's batch.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// NATS or JetStream failed; retried with a growing delay, never parked.
    #[error("NATS: {0}")]
    Nats(String),
    /// A stored value cannot be read (the commands of its key are parked).
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A key kept losing compare-and-set writes.
    #[error("too many concurrent writers on {0}")]
    Contended(String),
    /// Resources are missing: run `tablewire provision`.
    #[error("not provisioned: {0} (run `tablewire provision`)")]
    NotProvisioned(String),
}
