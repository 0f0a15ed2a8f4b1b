//! A command of a partition as the runtime applies it ([`Item`]), read and checked from a stored
//! message: a delivery's or one a rebuilt batch read from the stream. Used by the batch, the scan,
//! the pure apply and the key's write.

use super::park::{Parked, Reason};
use crate::domain::Domain;
use async_nats::jetstream;
use bytes::Bytes;
use tablewire_nats::{resource, token};
use tablewire_schemas::Envelope;

/// The longest message id an envelope may carry.
const MAX_MESSAGE_ID: usize = 4096;

/// One command to apply: from a delivery (with the message to acknowledge) or read from the
/// stream while rebuilding a batch.
pub(crate) struct Item {
    pub seq: u64,
    pub state_key: String,
    pub envelope: Envelope,
    /// The subject the input stream stored it under.
    pub subject: String,
    /// The message as stored (what parking it keeps).
    pub payload: Bytes,
    pub message: Option<jetstream::Message>,
}

impl Item {
    pub fn parked(&self, reason: Reason, detail: String) -> Parked {
        Parked {
            seq: self.seq,
            subject: self.subject.clone(),
            payload: self.payload.clone(),
            reason,
            detail,
        }
    }
}

/// A stored command that is no command of this domain's: parked, never applied.
pub(crate) struct Unreadable {
    pub reason: Reason,
    pub detail: String,
    /// The envelope, when it read as one (to answer its sender).
    pub envelope: Option<Box<Envelope>>,
}

/// Checks what of an envelope can reach a subject, a header or a KV key.
fn check_ids(envelope: &Envelope) -> Result<(), String> {
    token::validate_id(&envelope.tenant).map_err(|e| format!("tenant: {e}"))?;
    token::validate_id(&envelope.key).map_err(|e| format!("key: {e}"))?;
    if envelope.id.is_empty()
        || envelope.id.len() > MAX_MESSAGE_ID
        || envelope.id.chars().any(char::is_control)
    {
        return Err(format!(
            "message id: not 1 to {MAX_MESSAGE_ID} bytes without control characters"
        ));
    }
    Ok(())
}

/// Reads the message stored under `stored_subject` at `seq` as a command of `D`, or says why it is
/// none.
pub(crate) fn parse_item<D: Domain>(
    stored_subject: &str,
    seq: u64,
    payload: &Bytes,
) -> Result<Item, Unreadable> {
    let unreadable = |detail: String, envelope: Option<Envelope>| Unreadable {
        reason: Reason::EnvelopeUnreadable,
        detail,
        envelope: envelope.map(Box::new),
    };
    let envelope: Envelope = serde_json::from_slice(payload)
        .map_err(|e| unreadable(format!("not an envelope: {e}"), None))?;
    if envelope.domain != D::NAME {
        let detail = format!("envelope for domain {} in {}", envelope.domain, D::NAME);
        return Err(unreadable(detail, Some(envelope)));
    }
    if let Err(detail) = check_ids(&envelope) {
        return Err(Unreadable {
            reason: Reason::InvalidId,
            detail,
            envelope: Some(Box::new(envelope)),
        });
    }
    // The subject decides the partition; the envelope must agree with it.
    let mut tokens = stored_subject.rsplit('.');
    let (key_token, tenant_token) = (tokens.next(), tokens.next());
    if key_token != Some(&*token::encode(&envelope.key))
        || tenant_token != Some(&*token::encode(&envelope.tenant))
    {
        let detail = "envelope tenant/key do not match its subject".to_string();
        return Err(unreadable(detail, Some(envelope)));
    }
    Ok(Item {
        seq,
        state_key: resource::state_key(&envelope.tenant, &envelope.key),
        envelope,
        subject: stored_subject.to_string(),
        payload: payload.clone(),
        message: None,
    })
}
