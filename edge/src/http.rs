//! HTTP pieces every route of the edge uses: JSON responses, the one error type ([`ApiError`],
//! a catalogue error body), the [`JsonBody`] extractor (size- and time-limited), CORS headers
//! and query parameters. Used by the domain routes and by [`crate::app`].

use crate::node::Node;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::StatusCode;
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use tablewire_schemas::{ErrorBody, ErrorCode, HttpError};

/// The body type of every edge response.
pub type Body = axum::body::Body;

/// A JSON response.
pub fn json(status: StatusCode, value: &impl Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    json_bytes(status, body)
}

/// A response whose body is JSON already.
pub fn json_bytes(status: StatusCode, body: impl Into<Bytes>) -> Response {
    let mut response = Response::new(Body::from(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The error every route answers with: a catalogue error body, sent with the catalogue's
/// status (see [`error`]).
#[derive(Debug)]
pub struct ApiError(pub ErrorBody);

impl From<ErrorBody> for ApiError {
    fn from(error: ErrorBody) -> Self {
        ApiError(error)
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        ApiError(ErrorBody::new(code))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.0)
    }
}

/// What a route answers: a response, or the error.
pub type Answer = Result<Response, ApiError>;

/// A JSON request body of at most `--max-message-bytes`, read within the request's
/// [`BodyTimeout`] (see [`read_json`]).
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    Arc<Node>: FromRef<S>,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = Arc::<Node>::from_ref(state).config.max_message_bytes;
        Ok(JsonBody(read_json(request, limit).await?))
    }
}

/// An error response: the catalogue's status and `{"error": {...}}`. A request body that did
/// not arrive in time ([`read_json`]) is the one `TIMEOUT` the client caused: 408 and the
/// connection closed, where the catalogue's 504 says the server was slow.
pub fn error(error: ErrorBody) -> Response {
    let body_late = error.code == ErrorCode::Timeout && error.message.starts_with(BODY_LATE);
    let status = if body_late {
        StatusCode::REQUEST_TIMEOUT
    } else {
        StatusCode::from_u16(error.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    };
    let mut response = json(
        status,
        &HttpError {
            error: error.clone(),
        },
    );
    if let Some(ms) = error.retry_after_ms {
        let secs = ms.div_ceil(1000).max(1).to_string();
        if let Ok(v) = HeaderValue::from_str(&secs) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    if body_late {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// An error response with the catalogue's default message.
pub fn error_code(code: ErrorCode) -> Response {
    error(ErrorBody::new(code))
}

/// Adds the CORS headers browsers need to call the edge from another origin.
pub fn cors(response: &mut Response, origin: &str) {
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, Idempotency-Key"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    if origin != "*" {
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// The `Idempotency-Key` header of a write, when it has one.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(IdempotencyKey(
            header_str(&parts.headers, "idempotency-key").map(str::to_string),
        ))
    }
}

/// The route's one path parameter, an id ([`token::validate_id`]): `INVALID_ID` saying `what`
/// it is otherwise. Each domain's id extractor reads its id through this.
pub async fn path_id(parts: &mut Parts, what: &str) -> Result<String, ApiError> {
    let Path(id) = Path::<String>::from_request_parts(parts, &())
        .await
        .map_err(|e| ErrorBody::with_message(ErrorCode::InvalidId, format!("{what}: {e}")))?;
    tablewire_nats::token::validate_id(&id)
        .map_err(|e| ErrorBody::with_message(ErrorCode::InvalidId, format!("{what}: {e}")))?;
    Ok(id)
}

/// How long a request body may take to arrive, and what counts those that do not. The edge puts
/// one in every request's extensions; without one, [`DEFAULT_BODY_TIMEOUT`] applies.
#[derive(Clone)]
pub struct BodyTimeout {
    /// The time from the start of the read to the body's last byte.
    pub limit: Duration,
    /// Counts bodies that took longer.
    pub expired: prometheus_client::metrics::counter::Counter,
}

/// The body timeout of a request that carries no [`BodyTimeout`].
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for BodyTimeout {
    fn default() -> Self {
        BodyTimeout {
            limit: DEFAULT_BODY_TIMEOUT,
            expired: Default::default(),
        }
    }
}

/// How the message of a late body begins (it makes [`error`] answer 408).
const BODY_LATE: &str = "request body not received within";

/// Reads a JSON body of at most `limit` bytes, within the request's [`BodyTimeout`] (a body
/// trickled in byte by byte must not hold a connection and a task for ever). An empty body
/// reads as `{}`.
pub async fn read_json<T: DeserializeOwned>(
    request: Request,
    limit: usize,
) -> Result<T, ErrorBody> {
    let timeout = request
        .extensions()
        .get::<BodyTimeout>()
        .cloned()
        .unwrap_or_default();
    let within = timeout.limit;
    let read = Limited::new(request.into_body(), limit).collect();
    let body = tokio::time::timeout(within, read)
        .await
        .map_err(|_| {
            timeout.expired.inc();
            ErrorBody::with_message(
                ErrorCode::Timeout,
                format!("{BODY_LATE} {} ms", within.as_millis()),
            )
        })?
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ErrorBody::with_message(
                    ErrorCode::MessageTooBig,
                    format!("body larger than {limit} bytes"),
                )
            } else {
                ErrorBody::with_message(ErrorCode::InvalidMessage, "could not read the body")
            }
        })?
        .to_bytes();
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &body
    };
    parse_json(body)
}

/// Parses JSON, telling malformed JSON (MALFORMED_JSON) from the wrong shape (INVALID_MESSAGE).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ErrorBody> {
    serde_json::from_slice(bytes).map_err(|e| {
        let code = if e.is_syntax() || e.is_eof() {
            ErrorCode::MalformedJson
        } else {
            ErrorCode::InvalidMessage
        };
        ErrorBody::with_message(code, e.to_string())
    })
}

/// The first value of a query parameter (`?name=value`), percent-decoded; bytes that are not
/// UTF-8 become U+FFFD. For values that are checked afterwards (a token, a choice among names);
/// an id must be read with [`query_id`].
pub fn query_param(uri: &hyper::Uri, name: &str) -> Option<String> {
    let query = uri.query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Percent-decodes one path segment or query component, refusing bytes that are not UTF-8
/// (lossy decoding would make `%FF` and `%FE` the same id).
pub fn decode_component(raw: &str) -> Result<String, ErrorBody> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            ErrorBody::with_message(
                ErrorCode::InvalidId,
                "an id in the path or query is not valid UTF-8 once percent-decoded",
            )
        })
}

/// The first value of a query parameter that is an id, percent-decoded strictly: `INVALID_ID`
/// when it is not UTF-8. The caller validates the id itself (`token::validate_id`).
pub fn query_id(uri: &hyper::Uri, name: &str) -> Result<Option<String>, ErrorBody> {
    let Some(query) = uri.query() else {
        return Ok(None);
    };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode_component(&key.replace('+', " "))? == name {
            return decode_component(&value.replace('+', " ")).map(Some);
        }
    }
    Ok(None)
}

/// A header's value as text.
pub fn header_str<'a>(headers: &'a hyper::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_use_the_catalogue_status_and_retry_header() {
        let response = error(ErrorBody::new(ErrorCode::RateLimited).retry_after(1500));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(
            error_code(ErrorCode::Unauthorized).status(),
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn a_late_body_is_a_408_that_closes_and_other_timeouts_stay_504() {
        let late = ErrorBody::with_message(ErrorCode::Timeout, format!("{BODY_LATE} 10 ms"));
        let response = error(late);
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(response.headers()[header::CONNECTION], "close");
        assert_eq!(
            error_code(ErrorCode::Timeout).status(),
            StatusCode::GATEWAY_TIMEOUT
        );
    }

    #[test]
    fn query_parameters_are_decoded_and_others_ignored() {
        let uri: hyper::Uri = "/ws/device?deviceId=ESP%2032&_pk=abc&deviceId=second"
            .parse()
            .expect("uri");
        assert_eq!(query_param(&uri, "deviceId").as_deref(), Some("ESP 32"));
        assert_eq!(query_param(&uri, "missing"), None);
        assert_eq!(
            query_id(&uri, "deviceId").expect("utf-8"),
            Some("ESP 32".to_string())
        );
        assert_eq!(query_id(&uri, "missing").expect("absent"), None);
    }

    #[test]
    fn ids_that_are_not_utf8_are_refused_not_merged() {
        for raw in ["/ws/device?deviceId=%FF", "/ws/device?deviceId=a%FEb"] {
            let uri: hyper::Uri = raw.parse().expect("uri");
            assert_eq!(
                query_id(&uri, "deviceId").expect_err("not UTF-8").code,
                ErrorCode::InvalidId
            );
        }
        assert_eq!(decode_component("caf%C3%A9").expect("utf-8"), "café");
        assert!(decode_component("%FF").is_err());
    }

    #[test]
    fn malformed_and_misshapen_json_are_told_apart() {
        #[derive(serde::Deserialize, Debug)]
        struct T {
            #[allow(dead_code)]
            a: u32,
        }
        assert_eq!(
            parse_json::<T>(b"{nope").expect_err("bad").code,
            ErrorCode::MalformedJson
        );
        assert_eq!(
            parse_json::<T>(br#"{"a":"x"}"#).expect_err("bad").code,
            ErrorCode::InvalidMessage
        );
    }
}
