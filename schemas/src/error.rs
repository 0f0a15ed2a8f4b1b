//! The numbered error catalogue. Every error frame and every HTTP error body in tablewire
//! carries one of these codes; the edge, the handlers and the tests all name them from here.
//!
//! Ranges: 1xxx bad input, 2xxx authentication and permission, 3xxx limits (retry later),
//! 4xxx domain rules, 5xxx server side (retry may succeed).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

macro_rules! catalogue {
    ($( $(#[$doc:meta])* $variant:ident = ($number:literal, $name:literal, $status:literal, $retryable:literal, $message:literal), )*) => {
        /// One entry of the error catalogue.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in catalogue order.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )* ];

            /// The stable number of this code.
            pub const fn number(self) -> u16 {
                match self { $( ErrorCode::$variant => $number, )* }
            }

            /// The wire name, e.g. `VALIDATION_ERROR`.
            pub const fn name(self) -> &'static str {
                match self { $( ErrorCode::$variant => $name, )* }
            }

            /// The HTTP status an HTTP endpoint answers with.
            pub const fn http_status(self) -> u16 {
                match self { $( ErrorCode::$variant => $status, )* }
            }

            /// Whether sending the same request again later may succeed.
            pub const fn retryable(self) -> bool {
                match self { $( ErrorCode::$variant => $retryable, )* }
            }

            /// The default human-readable message.
            pub const fn message(self) -> &'static str {
                match self { $( ErrorCode::$variant => $message, )* }
            }

            /// Looks a code up by its wire name.
            pub fn from_name(name: &str) -> Option<ErrorCode> {
                match name { $( $name => Some(ErrorCode::$variant), )* _ => None }
            }
        }
    };
}

catalogue! {
    /// The frame or body is not valid JSON.
    MalformedJson = (1000, "MALFORMED_JSON", 400, false, "message is not valid JSON"),
    /// The `type` (or `action`) names no message this endpoint knows.
    UnknownType = (1001, "UNKNOWN_TYPE", 400, false, "unknown message type"),
    /// The message has the wrong shape: a field is missing or has the wrong type.
    InvalidMessage = (1002, "INVALID_MESSAGE", 400, false, "invalid message format"),
    /// The message is well formed but a value is not acceptable.
    ValidationError = (1003, "VALIDATION_ERROR", 400, false, "invalid data"),
    /// The frame or body is larger than the limit (WebSocket close 1009).
    MessageTooBig = (1004, "MESSAGE_TOO_BIG", 413, false, "message too big"),
    /// A text frame is not valid UTF-8 (WebSocket close 1007).
    InvalidUtf8 = (1005, "INVALID_UTF8", 400, false, "text is not valid UTF-8"),
    /// No route matches the path.
    NotFound = (1006, "NOT_FOUND", 404, false, "not found"),
    /// The route exists but not for this HTTP method.
    MethodNotAllowed = (1007, "METHOD_NOT_ALLOWED", 405, false, "method not allowed"),
    /// An id in the path (session, room, device, tenant) is empty, too long or has control characters.
    InvalidId = (1008, "INVALID_ID", 400, false, "invalid id in path"),
    /// The route only speaks WebSocket and the request is not an upgrade.
    UpgradeRequired = (1009, "UPGRADE_REQUIRED", 426, false, "this endpoint requires a WebSocket upgrade"),
    /// The WebSocket peer broke the protocol (WebSocket close 1002).
    ProtocolError = (1010, "PROTOCOL_ERROR", 400, false, "WebSocket protocol error"),

    /// No credentials, or credentials that do not verify.
    Unauthorized = (2000, "UNAUTHORIZED", 401, false, "authentication required"),
    /// The token verified but has expired.
    TokenExpired = (2001, "TOKEN_EXPIRED", 401, false, "token expired"),
    /// The credentials are valid but do not allow this action.
    Forbidden = (2002, "FORBIDDEN", 403, false, "not allowed"),
    /// The token's tenant does not match the tenant of the resource.
    TenantMismatch = (2003, "TENANT_MISMATCH", 403, false, "token tenant does not match"),
    /// The authentication step did not happen in time (WebSocket close 1008).
    AuthTimeout = (2004, "AUTH_TIMEOUT", 401, false, "authentication timed out"),
    /// The token names its tenant under several claims (`tenant`, `tenantId`, `tenant_id`,
    /// `restaurant_id`, `restaurantId`) that disagree.
    TenantClaimsDisagree = (2005, "TENANT_CLAIMS_DISAGREE", 401, false, "the token's tenant claims disagree"),
    /// The token's `nbf` (not before) is still in the future.
    TokenNotYetValid = (2006, "TOKEN_NOT_YET_VALID", 401, false, "token not valid yet"),

    /// Too many messages; `retryAfterMs` says when to try again.
    RateLimited = (3000, "RATE_LIMITED", 429, true, "rate limit exceeded"),
    /// The client reads too slowly; the connection is closed so it can resync.
    SlowConsumer = (3001, "SLOW_CONSUMER", 503, true, "client is not reading fast enough"),
    /// The connection already holds the maximum number of subscriptions.
    TooManySubscriptions = (3002, "TOO_MANY_SUBSCRIPTIONS", 429, false, "too many active subscriptions"),
    /// The same device or action happened again too soon; wait and retry.
    TooSoon = (3003, "TOO_SOON", 429, true, "too soon, wait before retrying"),
    /// The key's stored state would pass its byte limit; the write was refused and nothing
    /// changed (remove something first, or start a new key).
    StateFull = (3004, "STATE_FULL", 507, false, "the stored state is at its size limit"),
    /// The edge holds as many connections as it allows (in all, or from this address); try
    /// again later or another edge.
    TooManyConnections = (3005, "TOO_MANY_CONNECTIONS", 503, true, "too many connections"),

    /// The resource does not exist.
    UnknownResource = (4000, "UNKNOWN_RESOURCE", 404, false, "no such resource"),
    /// The action conflicts with the current state.
    Conflict = (4001, "CONFLICT", 409, false, "conflicts with the current state"),
    /// The handler could not apply the command and set it aside (parked) with its reason for
    /// an operator; sending it again unchanged will not help.
    CommandParked = (4002, "COMMAND_PARKED", 422, false, "the command could not be applied and was parked"),

    /// An unexpected server fault (WebSocket close 1011).
    Internal = (5000, "INTERNAL", 500, true, "internal server error"),
    /// A dependency (NATS, the database) is not reachable right now.
    Unavailable = (5001, "UNAVAILABLE", 503, true, "service temporarily unavailable"),
    /// The server did not answer in time.
    Timeout = (5002, "TIMEOUT", 504, true, "timed out"),
    /// The edge is shutting down; reconnect to another one (WebSocket close 1001).
    Draining = (5003, "DRAINING", 503, true, "server is going away, reconnect"),
    /// The edge lost its event bus for a while; events of that time may not have reached this
    /// connection (fetch what matters again). Sent on the events socket, which stays open.
    EventsMissed = (5004, "EVENTS_MISSED", 503, true, "events may have been missed while the event bus was unreachable"),
    /// No transcriber answered on `tw.svc.transcribe`; the audio is kept and sent again.
    TranscriberUnavailable = (5400, "TRANSCRIBER_UNAVAILABLE", 503, true, "no transcriber reachable; audio kept"),
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.number())
    }
}

/// The error frame with the body at its top level, `{"type":"error", code, errorCode, message,
/// retryable, retryAfterMs?, timestamp}` (ms): the shape of the display, collab and POS sockets'
/// error frames (each domain's protocol module names its own `error_frame`), and of a rejection
/// by a handler domain that names none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "error")]
pub struct ErrorFrame {
    /// The error.
    #[serde(flatten)]
    pub error: ErrorBody,
    /// Server time, ms since the Unix epoch.
    pub timestamp: i64,
}

/// The body every error carries: in HTTP responses as `{"error": ErrorBody}`, in error
/// frames either at the top level or under `data`, as the seed of the endpoint has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// The catalogue name, e.g. `VALIDATION_ERROR`.
    pub code: ErrorCode,
    /// The catalogue number, e.g. `1003`.
    pub error_code: u16,
    /// What went wrong, for people.
    pub message: String,
    /// Whether the same request may succeed later.
    pub retryable: bool,
    /// When set, how long to wait before retrying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// The finer catalogue code, where an endpoint's seed answers with a coarser one in `code`
    /// (seed 004's sockets say `INVALID_MESSAGE` for malformed JSON and unknown types alike).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<ErrorCode>,
}

impl ErrorBody {
    /// An error body with the catalogue's default message.
    pub fn new(code: ErrorCode) -> Self {
        Self::with_message(code, code.message())
    }

    /// An error body with a specific message.
    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            error_code: code.number(),
            message: message.into(),
            retryable: code.retryable(),
            retry_after_ms: None,
            detail: None,
        }
    }

    /// The same error under a coarser `code` (with its number and retry flag), keeping this
    /// one's code in `detail` and its message.
    pub fn coarsened(self, code: ErrorCode) -> Self {
        if self.code == code {
            return self;
        }
        ErrorBody {
            detail: Some(self.code),
            ..ErrorBody::with_message(code, self.message)
        }
    }

    /// Adds a retry hint.
    pub fn retry_after(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }
}

/// The JSON body of every HTTP error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HttpError {
    /// The error.
    pub error: ErrorBody,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn numbers_and_names_are_unique_and_in_their_range() {
        let mut numbers = HashSet::new();
        let mut names = HashSet::new();
        for code in ErrorCode::ALL {
            assert!(numbers.insert(code.number()), "duplicate number {code}");
            assert!(names.insert(code.name()), "duplicate name {code}");
            let range = code.number() / 1000;
            assert!(
                (1..=5).contains(&range),
                "{code} outside the catalogue ranges"
            );
            if range == 5 {
                assert!(
                    code.retryable(),
                    "server faults should be retryable: {code}"
                );
            }
        }
    }

    #[test]
    fn wire_name_round_trips_through_serde_and_lookup() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(code).expect("serialize");
            assert_eq!(json, format!("\"{}\"", code.name()));
            assert_eq!(ErrorCode::from_name(code.name()), Some(*code));
        }
        assert_eq!(ErrorCode::from_name("NOPE"), None);
    }

    #[test]
    fn a_coarsened_error_keeps_the_finer_code_in_detail() {
        let coarse = ErrorBody::with_message(ErrorCode::MalformedJson, "line 1")
            .coarsened(ErrorCode::InvalidMessage);
        let json = serde_json::to_value(&coarse).expect("serialize");
        assert_eq!(json["code"], "INVALID_MESSAGE");
        assert_eq!(json["errorCode"], 1002);
        assert_eq!(json["detail"], "MALFORMED_JSON");
        assert_eq!(json["message"], "line 1");
        let same = ErrorBody::new(ErrorCode::InvalidMessage).coarsened(ErrorCode::InvalidMessage);
        assert_eq!(same.detail, None);
    }

    #[test]
    fn body_carries_number_and_retry_flag() {
        let body = ErrorBody::new(ErrorCode::RateLimited).retry_after(250);
        let json = serde_json::to_value(&body).expect("serialize");
        assert_eq!(json["code"], "RATE_LIMITED");
        assert_eq!(json["errorCode"], 3000);
        assert_eq!(json["retryable"], true);
        assert_eq!(json["retryAfterMs"], 250);
    }
}
