//! What a room accepts from participants: free text checked for markup, trimmed and capped
//! ([`text`], [`sanitize`]), participant ids and quantities. Called by the collab domain's rules.

use crate::domain::Rejection;
use tablewire_schemas::ErrorCode;
use tablewire_schemas::collab::{Sender, limit};
use tablewire_schemas::text::check_no_markup;

pub(super) fn invalid(why: impl Into<String>) -> Rejection {
    Rejection::new(ErrorCode::ValidationError, why)
}

/// Trims, removes control characters and cuts to `max` characters.
pub fn sanitize(text: &str, max: usize) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .chars()
        .take(max)
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// A free text `field` that other participants see: refused (`VALIDATION_ERROR`) when it
/// holds markup, else [`sanitize`]d. The one place a room's texts are checked.
pub(super) fn text(field: &str, raw: &str, max: usize) -> Result<String, Rejection> {
    check_no_markup(field, raw).map_err(invalid)?;
    Ok(sanitize(raw, max))
}

/// An optional free text: [`text`], and `None` when absent or empty once sanitized.
pub(super) fn optional_text(
    field: &str,
    raw: Option<&str>,
    max: usize,
) -> Result<Option<String>, Rejection> {
    Ok(match raw {
        Some(raw) => Some(text(field, raw, max)?).filter(|t| !t.is_empty()),
        None => None,
    })
}

pub(super) fn participant_id(from: &Sender) -> Result<String, Rejection> {
    let id = text("participantId", &from.participant_id, usize::MAX)?;
    if id.is_empty() || id.chars().count() > limit::PARTICIPANT_ID {
        return Err(invalid(format!(
            "participantId must be 1..{} characters",
            limit::PARTICIPANT_ID
        )));
    }
    Ok(id)
}

pub(super) fn check_quantity(quantity: u32) -> Result<(), Rejection> {
    if limit::QUANTITY.contains(&quantity) {
        Ok(())
    } else {
        Err(invalid("quantity must be 1..99"))
    }
}
