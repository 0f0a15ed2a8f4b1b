//! Credentials as extractors: the routes name what they need (`Bearer`, `BearerOrQueryToken`,
//! `RestaurantToken`) and get a verified principal, or the request is answered with the
//! verifier's error. Every check goes through the one verifier, [`crate::auth::Auth`], which
//! counts the failures.

use crate::auth::{Principal, bearer_token};
use crate::http::{self, ApiError};
use crate::node::Node;
use axum::extract::{FromRef, FromRequestParts};
use hyper::http::request::Parts;
use std::sync::Arc;
use tablewire_schemas::{Claims, ErrorBody, ErrorCode};

/// The principal of the `Authorization: Bearer …` header (the shared secret or a JWT).
pub struct Bearer(pub Principal);

impl<S> FromRequestParts<S> for Bearer
where
    S: Send + Sync,
    Arc<Node>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let node = Arc::<Node>::from_ref(state);
        let authorization = http::header_str(&parts.headers, "authorization");
        Ok(Bearer(node.auth.check_header(authorization)?))
    }
}

/// The principal of the `Authorization` header or, when there is none, of the `token` query
/// parameter (what browsers' WebSockets can send).
pub struct BearerOrQueryToken(pub Principal);

impl<S> FromRequestParts<S> for BearerOrQueryToken
where
    S: Send + Sync,
    Arc<Node>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let node = Arc::<Node>::from_ref(state);
        let principal = match http::header_str(&parts.headers, "authorization") {
            Some(header) => node.auth.check_header(Some(header)),
            None => match http::query_param(&parts.uri, "token") {
                Some(token) => node.auth.check_token(&token),
                None => node.auth.check_header(None),
            },
        };
        Ok(BearerOrQueryToken(principal?))
    }
}

/// The restaurant and claims of the JWT a seed 004 socket's upgrade request carries
/// (`Authorization: Bearer …` or `?token=…`); `None` when it carries none (the first message
/// must then be `auth`). A bad one is answered 401 before the upgrade.
pub struct RestaurantToken(pub Option<(String, Claims)>);

impl<S> FromRequestParts<S> for RestaurantToken
where
    S: Send + Sync,
    Arc<Node>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let node = Arc::<Node>::from_ref(state);
        let token = match http::header_str(&parts.headers, "authorization") {
            Some(header) => Some(bearer_token(header).map(str::to_string).ok_or_else(|| {
                node.auth.refuse(ErrorBody::with_message(
                    ErrorCode::Unauthorized,
                    "expected Bearer credentials",
                ))
            })),
            None => http::query_param(&parts.uri, "token").map(Ok),
        };
        match token.map(|t| t.and_then(|t| node.auth.verify_restaurant(&t))) {
            None => Ok(RestaurantToken(None)),
            Some(Ok(who)) => Ok(RestaurantToken(Some(who))),
            Some(Err(e)) => {
                node.metrics.error(e.code);
                Err(ApiError(e))
            }
        }
    }
}
