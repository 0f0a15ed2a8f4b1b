//! Routes HTTP requests and WebSocket upgrades to the endpoints, answers CORS preflights, and
//! serves `/healthz` and `/metrics`.

use crate::http::{self, Body};
use crate::server::Shared;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use std::sync::Arc;
use tablewire_schemas::{ErrorBody, ErrorCode};

/// Answers one request.
pub async fn route(shared: Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    let segments: Result<Vec<String>, ErrorBody> = request
        .uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(http::decode_component)
        .collect();
    let (route, mut response) = match segments {
        Ok(segments) => dispatch(&shared, request, &segments).await,
        Err(e) => ("invalid", http::error(e)),
    };
    http::cors(&mut response, &shared.config.cors_origin);
    shared
        .metrics
        .http
        .get_or_create(&crate::metrics::HttpLabels {
            route: route.to_string(),
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// The endpoint of a request whose path segments are decoded.
async fn dispatch(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    segments: &[String],
) -> (&'static str, Response<Body>) {
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    if request.method() == Method::OPTIONS {
        let mut preflight = Response::new(http::empty_body());
        *preflight.status_mut() = StatusCode::NO_CONTENT;
        ("preflight", preflight)
    } else {
        match segments.as_slice() {
            ["healthz"] => ("/healthz", health(shared)),
            ["metrics"] => ("/metrics", metrics(shared)),
            ["openapi.json"] => (
                "/openapi.json",
                crate::api_docs::serve_openapi(request.method()),
            ),
            ["asyncapi.json"] => (
                "/asyncapi.json",
                crate::api_docs::serve_asyncapi(request.method()),
            ),
            ["app"] if request.uri().path() == "/app" => {
                ("/app", crate::screens::redirect_to_index())
            }
            ["app", file @ ..] => (
                "/app",
                crate::screens::serve(
                    request.method(),
                    &file.join("/"),
                    shared.config.dev_login.as_ref(),
                ),
            ),
            [] => crate::events::route(shared, request, "/").await,
            ["ws"] => crate::events::route(shared, request, "/ws").await,
            ["voice-stream"] => crate::voice::route(shared, request),
            ["api", "events"] => crate::events::route(shared, request, "/api/events").await,
            ["session", id, action] => {
                let (id, action) = (id.to_string(), action.to_string());
                crate::display::route(shared, request, &id, &action).await
            }
            ["parties", party, room] => {
                let (party, room) = (party.to_string(), room.to_string());
                crate::collab::route(shared, request, &party, &room).await
            }
            ["ws", "restaurant-pos", tenant] => {
                let tenant = tenant.to_string();
                crate::pos::route_ws(shared, request, &tenant).await
            }
            ["api", "orders"] => {
                crate::pos::route_api(shared, request, crate::pos::Api::Orders).await
            }
            ["api", "orders", id] => {
                let id = id.to_string();
                crate::pos::route_api(shared, request, crate::pos::Api::Order(&id)).await
            }
            ["api", "pos", "settings"] => {
                crate::pos::route_api(shared, request, crate::pos::Api::Settings).await
            }
            ["ws", "device"]
            | ["api", "rfid", "scan"]
            | ["api", "devices", _, "config"]
            | ["api", "devices", "settings"] => {
                crate::device::route(shared, request, &segments).await
            }
            _ => ("unknown", http::error_code(ErrorCode::NotFound)),
        }
    }
}

fn health(shared: &Shared) -> Response<Body> {
    let connected = shared.client.connection_state() == async_nats::connection::State::Connected;
    let status = if connected && !shared.draining() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    http::json(
        status,
        &json!({
            "status": if status == StatusCode::OK { "ok" } else { "unavailable" },
            "edge": shared.id,
            "nats": if connected { "connected" } else { "disconnected" },
            "draining": shared.draining(),
            "websockets": shared.conns.len(),
            "subscriptions": shared.fanout.subscriptions(),
        }),
    )
}

fn metrics(shared: &Shared) -> Response<Body> {
    let mut text = String::new();
    if let Some(registry) = shared.registry()
        && prometheus_client::encoding::text::encode(&mut text, registry).is_err()
    {
        return http::error_code(ErrorCode::Internal);
    }
    let mut response = Response::new(http_body_util::BodyExt::boxed(http_body_util::Full::new(
        bytes::Bytes::from(text),
    )));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    response
}
