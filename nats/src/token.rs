//! Turns ids from paths and tokens (sessions, rooms, tenants, devices) into single NATS subject
//! tokens that are also valid KV key parts. Used by every subject and key builder in this crate.
//!
//! Ids made of `A-Z a-z 0-9 _ -` are used as they are, so `nats sub 'tw.out.display.*.abc123'`
//! works with the id a user knows. Anything else is written as `=` followed by the hex of its
//! UTF-8 bytes, which no plain id can start with.

use std::borrow::Cow;

/// The longest id accepted anywhere, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Why an id cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is empty.
    #[error("id is empty")]
    Empty,
    /// The id is longer than [`MAX_ID_LEN`] bytes.
    #[error("id is longer than {MAX_ID_LEN} bytes")]
    TooLong,
    /// The id contains a control character.
    #[error("id contains a control character")]
    Control,
}

/// Checks an id from a client: 1 to [`MAX_ID_LEN`] bytes, no control characters.
pub fn validate_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        Err(IdError::Empty)
    } else if id.len() > MAX_ID_LEN {
        Err(IdError::TooLong)
    } else if id.chars().any(char::is_control) {
        Err(IdError::Control)
    } else {
        Ok(())
    }
}

fn is_plain(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Encodes an id as one subject token.
pub fn encode(id: &str) -> Cow<'_, str> {
    if is_plain(id) {
        Cow::Borrowed(id)
    } else {
        let mut out = String::with_capacity(1 + id.len() * 2);
        out.push('=');
        for b in id.bytes() {
            out.push_str(&format!("{b:02x}"));
        }
        Cow::Owned(out)
    }
}

/// Reverses [`encode`]. Returns `None` for a token [`encode`] cannot have written.
pub fn decode(token: &str) -> Option<Cow<'_, str>> {
    match token.strip_prefix('=') {
        None => is_plain(token).then_some(Cow::Borrowed(token)),
        Some(hex) => {
            if hex.len() % 2 != 0 {
                return None;
            }
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()?;
            String::from_utf8(bytes).ok().map(Cow::Owned)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_pass_unchanged() {
        assert_eq!(encode("abc_123-X"), "abc_123-X");
        assert!(matches!(encode("abc"), Cow::Borrowed(_)));
    }

    #[test]
    fn other_ids_become_one_safe_token_and_decode_back() {
        for id in ["a.b", "a b", "tw.>", "*", "ünïcode", "=abc", "org/1"] {
            let token = encode(id);
            assert!(token.starts_with('='), "{id} -> {token}");
            assert!(
                token[1..].bytes().all(|b| b.is_ascii_hexdigit()),
                "{id} -> {token}"
            );
            assert_eq!(decode(&token).as_deref(), Some(id));
        }
    }

    #[test]
    fn decode_rejects_what_encode_never_writes() {
        assert_eq!(decode("a.b"), None);
        assert_eq!(decode("=6"), None);
        assert_eq!(decode("=zz"), None);
        assert_eq!(decode("=ff"), None, "not UTF-8");
    }

    #[test]
    fn validation_catches_empty_long_and_control() {
        assert_eq!(validate_id(""), Err(IdError::Empty));
        assert_eq!(
            validate_id(&"x".repeat(MAX_ID_LEN + 1)),
            Err(IdError::TooLong)
        );
        assert_eq!(validate_id("a\nb"), Err(IdError::Control));
        assert_eq!(validate_id(&"x".repeat(MAX_ID_LEN)), Ok(()));
    }
}
