//! Parks the commands a handler can never apply: publishes each, as it was stored, to the
//! parked stream (`TW_PARKED`, subject `tw.parked.{domain}.{reason}`) with why, where it came
//! from and its sequence in headers, then counts and logs it. Called by the partition worker
//! before it acknowledges such a command, so that nothing accepted is dropped without a trace
//! and nothing is retried forever. Transient failures (NATS unreachable, a timeout, a lost
//! compare-and-set) never come here: those commands are delivered again.

use super::shared::Shared;
use crate::domain::{Context, Domain};
use crate::error::RuntimeError;
use async_nats::HeaderMap;
use bytes::Bytes;
use tablewire_nats::{resource, subject};
use tablewire_schemas::{Envelope, ErrorBody, ErrorCode, Frame, Origin};
use tracing::warn;

/// Why a command was parked. Each is permanent: applying the same command again would fail the
/// same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The message is not an envelope of this domain, or disagrees with its subject.
    EnvelopeUnreadable,
    /// The envelope's tenant, key or another id fails `token::validate_id` (a control
    /// character, empty, too long): it could reach a subject or a header.
    InvalidId,
    /// The key's stored state does not read as this domain's state.
    StateUnreadable,
    /// The domain panicked applying it.
    ApplyPanicked,
    /// Its state and effects would not fit one NATS message even written alone.
    WriteTooBig,
}

impl Reason {
    /// The name in `Tw-Parked-Reason`, the subject and the metric's `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::EnvelopeUnreadable => "envelope_unreadable",
            Reason::InvalidId => "invalid_id",
            Reason::StateUnreadable => "state_unreadable",
            Reason::ApplyPanicked => "apply_panicked",
            Reason::WriteTooBig => "write_too_big",
        }
    }
}

/// One command to park, as its input stream stored it.
#[derive(Debug, Clone)]
pub(crate) struct Parked {
    /// Its sequence in the input stream.
    pub seq: u64,
    /// The subject it was stored under (`tw.in.{domain}.{partition}.{tenant}.{key}`).
    pub subject: String,
    /// The message as stored.
    pub payload: Bytes,
    /// Why.
    pub reason: Reason,
    /// Why, in words.
    pub detail: String,
}

/// Headers and the payload cut to leave them room below `max_payload`.
const HEADER_ROOM: usize = 4096;
/// Longest `Tw-Parked-Detail` kept.
const MAX_DETAIL: usize = 500;

/// A header value from any text: control characters (CR, LF) become spaces, cut to `max`.
fn header_text(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > max {
        let mut end = max;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

/// Publishes `parked` to the parked stream, all before waiting, then waits until each is stored
/// (deduplicated by stream and sequence, so parking the same command again after a crash stores
/// it once), then counts and logs them. An error means some may not be stored: the caller
/// leaves the commands unacknowledged, to be parked again.
pub(crate) async fn park<D: Domain>(
    shared: &Shared<D>,
    partition: u16,
    parked: &[Parked],
) -> Result<(), RuntimeError> {
    if parked.is_empty() {
        return Ok(());
    }
    let max_payload = shared.client.max_payload();
    let mut acks = Vec::with_capacity(parked.len());
    for command in parked {
        let mut headers = HeaderMap::new();
        let id = format!("{}:{}", shared.stream_name, command.seq);
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
        headers.insert(subject::header::PARKED_REASON, command.reason.as_str());
        headers.insert(
            subject::header::PARKED_DETAIL,
            header_text(&command.detail, MAX_DETAIL).as_str(),
        );
        headers.insert(subject::header::PARKED_DOMAIN, D::NAME.as_str());
        headers.insert(
            subject::header::PARKED_SEQ,
            command.seq.to_string().as_str(),
        );
        headers.insert(
            subject::header::PARKED_PARTITION,
            partition.to_string().as_str(),
        );
        headers.insert(
            subject::header::PARKED_SUBJECT,
            header_text(&command.subject, 1024).as_str(),
        );
        let room = max_payload.saturating_sub(HEADER_ROOM);
        let payload = if command.payload.len() > room {
            headers.insert(
                subject::header::PARKED_TRUNCATED,
                command.payload.len().to_string().as_str(),
            );
            command.payload.slice(..room)
        } else {
            command.payload.clone()
        };
        let ack = shared
            .js
            .publish_with_headers(
                subject::parked(D::NAME, command.reason.as_str()),
                headers,
                payload,
            )
            .await
            .map_err(|e| RuntimeError::Nats(format!("park a command: {e}")))?;
        acks.push(ack);
    }
    let mut stored = Vec::with_capacity(acks.len());
    for ack in acks {
        let ack = ack.await.map_err(|e| {
            RuntimeError::Nats(format!(
                "parked command not stored in {}: {e}",
                resource::PARKED_STREAM
            ))
        })?;
        stored.push(ack.duplicate);
    }
    for (command, duplicate) in parked.iter().zip(stored) {
        if duplicate {
            // Parked before (by a worker that died before acknowledging it, or from a scan).
            continue;
        }
        shared
            .metrics
            .parked
            .get_or_create(&crate::metrics::ParkedLabels {
                domain: D::NAME.as_str().to_string(),
                reason: command.reason.as_str().to_string(),
            })
            .inc();
        warn!(
            domain = %D::NAME,
            partition,
            command_id = %command_id(&command.payload),
            seq = command.seq,
            subject = %command.subject,
            reason = command.reason.as_str(),
            detail = %header_text(&command.detail, MAX_DETAIL),
            "parked a command that cannot be applied (see {})",
            resource::PARKED_STREAM
        );
    }
    Ok(())
}

/// The envelope id of a parked command's payload (what the edge logged it under), or `?` when
/// the payload does not read as an envelope.
fn command_id(payload: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Id {
        id: String,
    }
    serde_json::from_slice::<Id>(payload).map_or_else(|_| "?".to_string(), |e| e.id)
}

/// Whether a reply can reach `origin` without breaking a subject or a header: its edge and
/// request ids are ids as `token::validate_id` accepts them.
pub(crate) fn answerable(origin: &Origin) -> bool {
    let edge_ok =
        origin.edge.is_empty() || tablewire_nats::token::validate_id(&origin.edge).is_ok();
    let request_ok = origin
        .request
        .as_deref()
        .is_none_or(|r| tablewire_nats::token::validate_id(r).is_ok());
    edge_ok && request_ok
}

/// The frame that tells the sender of `envelope` its command was parked (`COMMAND_PARKED`, in
/// the domain's error shape), or `None` when there is nobody to tell.
pub(crate) fn parked_reply<D: Domain>(
    domain: &D,
    envelope: &Envelope,
    seq: u64,
    reason: Reason,
) -> Option<(Origin, Frame)> {
    if envelope.origin.edge.is_empty() || !answerable(&envelope.origin) {
        return None;
    }
    let ctx = Context {
        now_ms: envelope.at,
        stream_seq: seq,
        message_id: &envelope.id,
        tenant: &envelope.tenant,
        key: &envelope.key,
        claims: envelope.claims.as_ref(),
        origin: &envelope.origin,
    };
    let error = ErrorBody::with_message(
        ErrorCode::CommandParked,
        format!(
            "the command could not be applied ({}) and was parked",
            reason.as_str()
        ),
    );
    let frame = Frame::from(&domain.error_frame(&error, &ctx));
    Some((envelope.origin.clone(), frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_text_has_no_line_breaks_and_is_cut_on_a_character() {
        assert_eq!(header_text("a\r\nb", 100), "a  b");
        assert_eq!(header_text("ééé", 3), "é");
        assert_eq!(header_text("abc", 3), "abc");
    }

    #[test]
    fn replies_go_only_to_origins_that_fit_a_subject_and_a_header() {
        let origin = |edge: &str, request: Option<&str>| Origin {
            edge: edge.into(),
            conn: None,
            request: request.map(str::to_string),
        };
        assert!(answerable(&origin("edge-1", Some("r1"))));
        assert!(answerable(&origin("", None)));
        assert!(!answerable(&origin("edge\n1", None)));
        assert!(!answerable(&origin("edge-1", Some("r\r1"))));
    }
}
