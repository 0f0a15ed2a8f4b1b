//! The API documents, generated from the code: an OpenAPI 3.1 document for the edge's HTTP
//! endpoints and an AsyncAPI 3 document for its WebSockets and the NATS subjects. The router
//! serves them at `/openapi.json` and `/asyncapi.json`; `tests/api_docs.rs` validates them.
//!
//! Sources: routes from [`endpoints::ENDPOINTS`], message and body schemas from
//! [`tablewire_schemas::json_schemas`] (the documents of `schemas/json/`), subjects from
//! [`tablewire_nats::subject`]; [`components`] holds what both documents share.

pub mod asyncapi;
pub mod components;
pub mod endpoints;
pub mod openapi;

use crate::http::{self, Body};
use hyper::{Response, StatusCode};
use serde_json::Value;
use std::sync::OnceLock;

pub use asyncapi::asyncapi;
pub use openapi::openapi;

/// `GET /openapi.json` and `GET /asyncapi.json` (axum answers `HEAD` from the same route).
pub fn routes<S>() -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    use axum::routing::get;
    axum::Router::new()
        .route("/openapi.json", get(|| async { serve_openapi() }))
        .route("/asyncapi.json", get(|| async { serve_asyncapi() }))
}

/// Answers `GET /openapi.json`.
pub fn serve_openapi() -> Response<Body> {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    http::json(StatusCode::OK, DOCUMENT.get_or_init(openapi))
}

/// Answers `GET /asyncapi.json`.
pub fn serve_asyncapi() -> Response<Body> {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    http::json(StatusCode::OK, DOCUMENT.get_or_init(asyncapi))
}
