//! A domain's streams and buckets, opened when its worker starts: a stream JetStream says does
//! not exist stops the handler; one it cannot answer for now (no leader) is waited for.
//! Called by [`super::spawn_domain`].

use crate::domain::Domain;
use async_nats::jetstream::{self, kv};
use std::time::Duration;
use tablewire_nats::{provision, resource};
use tokio::sync::watch;
use tracing::{info, warn};

/// A domain's streams and buckets, looked up once at start.
pub(super) struct Resources {
    pub(super) stream: jetstream::stream::Stream,
    pub(super) stream_name: String,
    pub(super) partitions: u16,
    pub(super) kv: kv::Store,
    pub(super) parts: Option<kv::Store>,
    pub(super) workers: kv::Store,
    /// How long a worker's membership entry lives.
    pub(super) ttl: Duration,
}

/// Why [`Resources::open`] failed.
pub(super) enum Unopened {
    /// JetStream answered that a stream or bucket does not exist.
    Missing(String),
    /// No answer, or not a definite one: no leader, no quorum, a timeout.
    Unavailable(String),
}

/// Longest wait between two attempts of [`Resources::wait_for`].
const MAX_OPEN_BACKOFF: Duration = Duration::from_secs(5);

impl Resources {
    pub(super) async fn open<D: Domain>(js: &jetstream::Context) -> Result<Resources, Unopened> {
        let stream_name = resource::input_stream(D::NAME);
        let stream = js
            .get_stream(&stream_name)
            .await
            .map_err(|e| Unopened::of(&stream_name, &e))?;
        let partitions = provision::current_partitions(js, &stream_name)
            .await
            .ok_or_else(|| {
                Unopened::Unavailable(format!("{stream_name}: no partition count read"))
            })?;
        let bucket = resource::state_bucket(D::NAME);
        let kv = js
            .get_key_value(&bucket)
            .await
            .map_err(|e| Unopened::of(&bucket, &e))?;
        let parts = if resource::PARTS_DOMAINS.contains(&D::NAME) {
            let bucket = resource::parts_bucket(D::NAME);
            Some(
                js.get_key_value(&bucket)
                    .await
                    .map_err(|e| Unopened::of(&bucket, &e))?,
            )
        } else {
            None
        };
        js.get_stream(resource::PARKED_STREAM)
            .await
            .map_err(|e| Unopened::of(resource::PARKED_STREAM, &e))?;
        let workers = js
            .get_key_value(resource::WORKERS_BUCKET)
            .await
            .map_err(|e| Unopened::of(resource::WORKERS_BUCKET, &e))?;
        let ttl = js
            .get_stream(format!("KV_{}", resource::WORKERS_BUCKET))
            .await
            .map(|s| s.cached_info().config.max_age)
            .unwrap_or(Duration::from_secs(6));
        Ok(Resources {
            stream,
            stream_name,
            partitions,
            kv,
            parts,
            workers,
            ttl,
        })
    }

    /// [`open`](Self::open) again and again, each wait twice as long up to
    /// [`MAX_OPEN_BACKOFF`], logging why, until it succeeds (`None`: shut down first). A stream
    /// that goes missing meanwhile is waited for too: provisioning may be under way.
    pub(super) async fn wait_for<D: Domain>(
        js: &jetstream::Context,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Resources> {
        let mut backoff = Duration::from_millis(250);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return None,
                _ = tokio::time::sleep(backoff) => {}
            }
            if *shutdown.borrow() {
                return None;
            }
            match Self::open::<D>(js).await {
                Ok(resources) => {
                    info!(domain = %D::NAME, "streams and buckets available; starting");
                    return Some(resources);
                }
                Err(Unopened::Missing(why) | Unopened::Unavailable(why)) => {
                    backoff = (backoff * 2).min(MAX_OPEN_BACKOFF);
                    warn!(domain = %D::NAME, reason = %why, retry_in = ?backoff, "streams or buckets still not available; waiting");
                }
            }
        }
    }
}

impl Unopened {
    /// Sorts a failed lookup of `name`: missing only when JetStream said so.
    fn of(name: &str, error: &(dyn std::error::Error + 'static)) -> Unopened {
        let why = format!("{name}: {error}");
        if stream_not_found(error) {
            Unopened::Missing(why)
        } else {
            Unopened::Unavailable(why)
        }
    }
}

/// Whether `error` (or what caused it) is JetStream's definite "stream not found".
fn stream_not_found(error: &(dyn std::error::Error + 'static)) -> bool {
    use jetstream::context::{GetStreamError, GetStreamErrorKind};
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(lookup) = error.downcast_ref::<GetStreamError>() {
            return matches!(lookup.kind(), GetStreamErrorKind::JetStream(e)
                if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND);
        }
        cause = error.source();
    }
    false
}
