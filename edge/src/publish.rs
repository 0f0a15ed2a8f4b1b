//! Publishes accepted client commands into the input streams and waits for JetStream to store
//! them: nothing is acknowledged to a client before that. A socket that only needs to hear of
//! failures sends through its [`SocketPipeline`]: its next message is read (and published, in
//! order) while earlier ones wait for their store.

use crate::metrics::Metrics;
use async_nats::HeaderMap;
use async_nats::jetstream;
use async_nats::jetstream::context::PublishAckFuture;
use bytes::Bytes;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tablewire_nats::subject;
use tablewire_schemas::{Claims, Domain, Envelope, ErrorBody, ErrorCode, Origin};
use tokio::sync::Semaphore;

/// The log target of each command's path (published, stored here; applied in the handlers),
/// every line with its `command_id` (the envelope's id): `--log info,tablewire::command=debug`.
pub const COMMAND_LOG: &str = "tablewire::command";

/// A command stored in its input stream.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Its message id (also `Nats-Msg-Id` when the client sent its own id).
    pub message_id: String,
    /// Its input stream sequence.
    pub sequence: u64,
    /// True when the id was seen before and nothing new was stored.
    pub duplicate: bool,
}

/// What to publish.
pub struct Command<'a, C> {
    /// The domain.
    pub domain: Domain,
    /// The tenant (from the token or the path).
    pub tenant: &'a str,
    /// The key.
    pub key: &'a str,
    /// The client's own id for the message, if it sent one; repeats of it are dropped.
    pub client_id: Option<&'a str>,
    /// The sender.
    pub origin: Origin,
    /// Verified claims.
    pub claims: Option<Claims>,
    /// The command.
    pub command: &'a C,
}

/// Publishes commands for one edge.
pub struct Publisher {
    js: jetstream::Context,
    metrics: Metrics,
}

impl Publisher {
    /// A publisher on `client`.
    pub fn new(client: async_nats::Client, metrics: Metrics) -> Self {
        Publisher {
            js: jetstream::new(client),
            metrics,
        }
    }

    /// Publishes and waits until JetStream has stored the command.
    pub async fn publish<C: Serialize>(&self, cmd: Command<'_, C>) -> Result<Accepted, ErrorBody> {
        self.submit(cmd).await?.stored().await
    }

    /// Hands the command to the NATS connection, after every command submitted before it (so
    /// one client's commands are stored in the order it sent them), without waiting for the
    /// store: [`Submitted::stored`] does.
    pub async fn submit<C: Serialize>(&self, cmd: Command<'_, C>) -> Result<Submitted, ErrorBody> {
        let message_id = match cmd.client_id {
            // Scoped, so one tenant's ids never collide with another's.
            Some(id) => format!("{}:{}:{}:{id}", cmd.domain, cmd.tenant, cmd.key),
            None => uuid::Uuid::now_v7().simple().to_string(),
        };
        let command = serde_json::value::to_raw_value(cmd.command)
            .map_err(|e| ErrorBody::with_message(ErrorCode::Internal, e.to_string()))?;
        let envelope = Envelope {
            tenant: cmd.tenant.to_string(),
            domain: cmd.domain,
            key: cmd.key.to_string(),
            id: message_id.clone(),
            origin: cmd.origin,
            claims: cmd.claims,
            at: now_ms(),
            command,
        };
        let payload = Bytes::from(
            serde_json::to_vec(&envelope)
                .map_err(|e| ErrorBody::with_message(ErrorCode::Internal, e.to_string()))?,
        );
        // Only a client's own id can come again; a made-up one never repeats, and every id
        // JetStream must remember for its duplicate window costs nats-server memory and GC.
        let mut headers = HeaderMap::new();
        if cmd.client_id.is_some() {
            headers.insert(async_nats::header::NATS_MESSAGE_ID, message_id.as_str());
        }
        let started = Instant::now();
        let ack = self
            .js
            .publish_with_headers(
                subject::input(cmd.domain, cmd.tenant, cmd.key),
                headers,
                payload,
            )
            .await
            .map_err(|e| failed(&self.metrics, e.to_string()))?;
        tracing::debug!(
            target: COMMAND_LOG,
            command_id = %message_id,
            domain = %cmd.domain,
            tenant = cmd.tenant,
            key = cmd.key,
            "command published"
        );
        Ok(Submitted {
            ack,
            message_id,
            started,
            metrics: self.metrics.clone(),
        })
    }
}

/// A command on its way to its input stream.
pub struct Submitted {
    ack: PublishAckFuture,
    message_id: String,
    started: Instant,
    metrics: Metrics,
}

impl Submitted {
    /// Waits until JetStream has stored the command.
    pub async fn stored(self) -> Result<Accepted, ErrorBody> {
        let ack = self
            .ack
            .await
            .map_err(|e| failed(&self.metrics, e.to_string()))?;
        self.metrics
            .publish_latency
            .observe(self.started.elapsed().as_secs_f64());
        tracing::debug!(
            target: COMMAND_LOG,
            command_id = %self.message_id,
            seq = ack.sequence,
            duplicate = ack.duplicate,
            "command stored"
        );
        Ok(Accepted {
            message_id: self.message_id,
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }
}

/// Most commands of one socket waiting for their store at once; its next message is read when
/// one of them is stored (a fast client cannot take every pending store of the edge).
pub const MAX_UNCONFIRMED_PER_SOCKET: usize = 64;

/// One socket's commands on their way to the input streams, for endpoints whose clients hear
/// of a command through the handler's answer or event and need no word of its store, only of
/// its failure (collab rooms, POS terminals, voice streams).
pub struct SocketPipeline {
    unconfirmed: Arc<Semaphore>,
}

impl Default for SocketPipeline {
    fn default() -> Self {
        SocketPipeline {
            unconfirmed: Arc::new(Semaphore::new(MAX_UNCONFIRMED_PER_SOCKET)),
        }
    }
}

impl SocketPipeline {
    /// Publishes `cmd` after every earlier command of the socket and returns once NATS has it
    /// (first waiting, with [`MAX_UNCONFIRMED_PER_SOCKET`] unconfirmed, until one is stored);
    /// `failed` gets the error if it cannot be stored.
    pub async fn send<C: Serialize>(
        &self,
        publisher: &Publisher,
        cmd: Command<'_, C>,
        failed: impl FnOnce(ErrorBody) + Send + 'static,
    ) {
        // The semaphore is never closed.
        let Ok(permit) = self.unconfirmed.clone().acquire_owned().await else {
            return;
        };
        match publisher.submit(cmd).await {
            Ok(submitted) => {
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(e) = submitted.stored().await {
                        failed(e);
                    }
                });
            }
            Err(e) => failed(e),
        }
    }
}

fn failed(metrics: &Metrics, why: String) -> ErrorBody {
    let code = if why.contains("timed out") {
        ErrorCode::Timeout
    } else {
        ErrorCode::Unavailable
    };
    metrics.error(code);
    tracing::warn!(error = %why, "command not stored");
    ErrorBody::with_message(code, "the command could not be stored; retry")
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
