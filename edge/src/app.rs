//! The edge's HTTP application: every domain's routes in one router, `/healthz` and
//! `/metrics`, and the layers every response goes through (CORS, the response count keyed by
//! the matched route). [`crate::server`] hands it each request after [`front_door`].

use crate::device::DeviceEdge;
use crate::events::EventsEdge;
use crate::http::{self, ApiError};
use crate::metrics::HttpLabels;
use crate::node::Node;
use crate::pos::PosEdge;
use axum::Router;
use axum::extract::{FromRef, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use hyper::{Method, StatusCode};
use serde_json::json;
use std::sync::Arc;
use tablewire_schemas::ErrorCode;

/// What the routes see: the node's services and each domain's own state, handed to each route
/// by [`FromRef`] (a route asks for the part it needs).
#[derive(Clone)]
pub struct AppState {
    /// The services no domain owns.
    pub node: Arc<Node>,
    /// The events feeds' fan-out (seed 004).
    pub events: Arc<EventsEdge>,
    /// Tag directory, presence and device settings (seed 003).
    pub devices: Arc<DeviceEdge>,
    /// POS order bodies already read (seed 002).
    pub pos: Arc<PosEdge>,
}

impl FromRef<AppState> for Arc<Node> {
    fn from_ref(state: &AppState) -> Self {
        state.node.clone()
    }
}

impl FromRef<AppState> for Arc<EventsEdge> {
    fn from_ref(state: &AppState) -> Self {
        state.events.clone()
    }
}

impl FromRef<AppState> for Arc<DeviceEdge> {
    fn from_ref(state: &AppState) -> Self {
        state.devices.clone()
    }
}

impl FromRef<AppState> for Arc<PosEdge> {
    fn from_ref(state: &AppState) -> Self {
        state.pos.clone()
    }
}

/// Every route of the edge.
pub fn router(state: AppState) -> Router {
    let node = state.node.clone();
    Router::new()
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
        .merge(crate::display::routes())
        .merge(crate::collab::routes())
        .merge(crate::pos::routes())
        .merge(crate::events::routes())
        .merge(crate::voice::routes())
        .merge(crate::device::routes())
        .merge(crate::api_docs::routes())
        .merge(crate::screens::routes())
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(middleware::from_fn(answer_preflight))
        .layer(middleware::map_response_with_state(node.clone(), cors))
        .layer(middleware::from_fn_with_state(node, count_response))
        .with_state(state)
}

/// The route label of a response the layers answered themselves (`preflight`, `invalid`).
#[derive(Clone, Copy)]
struct RouteLabel(&'static str);

async fn method_not_allowed() -> ApiError {
    ApiError::from(ErrorCode::MethodNotAllowed)
}

async fn not_found() -> Response {
    let mut response = http::error_code(ErrorCode::NotFound);
    response.extensions_mut().insert(RouteLabel("unknown"));
    response
}

/// Answers every CORS preflight (`OPTIONS`, any path) `204`.
async fn answer_preflight(request: Request, next: Next) -> Response {
    if request.method() != Method::OPTIONS {
        return next.run(request).await;
    }
    let mut preflight = Response::new(http::Body::empty());
    *preflight.status_mut() = StatusCode::NO_CONTENT;
    preflight.extensions_mut().insert(RouteLabel("preflight"));
    preflight
}

/// Adds the CORS headers to every response.
async fn cors(State(node): State<Arc<Node>>, mut response: Response) -> Response {
    http::cors(&mut response, &node.config.cors_origin);
    response
}

/// Counts every response by route (the matched path, e.g. `/session/{id}/update`) and status.
async fn count_response(State(node): State<Arc<Node>>, request: Request, next: Next) -> Response {
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let route = match response.extensions().get::<RouteLabel>() {
        Some(RouteLabel(label)) => label,
        None => matched.as_ref().map_or("unknown", MatchedPath::as_str),
    };
    count(&node, route, response.status());
    response
}

/// Counts one response.
pub fn count(node: &Node, route: &str, status: StatusCode) {
    node.metrics
        .http
        .get_or_create(&HttpLabels {
            route: route.to_string(),
            status: status.as_u16(),
        })
        .inc();
}

/// What the front door makes of a request before routing: paths are matched with empty
/// segments dropped (`//healthz/` is `/healthz`), and a path whose percent-decoded segments are
/// not UTF-8 is answered `400 INVALID_ID` (lossy decoding would make `%FF` and `%FE` the same
/// id), with CORS and counted as `invalid`: that answer is returned.
pub fn front_door<B>(node: &Node, request: &mut hyper::Request<B>) -> Option<Response> {
    let path = request.uri().path();
    let not_utf8 = |segment: &str| {
        percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .is_err()
    };
    if let Some(segment) = path.split('/').find(|s| not_utf8(s))
        && let Err(e) = http::decode_component(segment)
    {
        let mut response = http::error(e);
        http::cors(&mut response, &node.config.cors_origin);
        count(node, "invalid", response.status());
        return Some(response);
    }
    if let Some(mut tidy) = tidy_path(path) {
        if let Some(query) = request.uri().query() {
            tidy = format!("{tidy}?{query}");
        }
        if let Ok(uri) = tidy.parse() {
            *request.uri_mut() = uri;
        }
    }
    None
}

/// Paths whose trailing slash is part of them: `/app/` is the screens' index, and their
/// relative links resolve against it (`/app` redirects there).
const KEEPS_TRAILING_SLASH: &[&str] = &["/app/"];

/// `path` without empty segments, when it has any (`None` when it is tidy already); a path of
/// [`KEEPS_TRAILING_SLASH`] keeps its last slash.
fn tidy_path(path: &str) -> Option<String> {
    let untidy = path.contains("//") || (path.len() > 1 && path.ends_with('/'));
    if !untidy || KEEPS_TRAILING_SLASH.contains(&path) {
        return None;
    }
    let mut tidy: String = path
        .split('/')
        .filter(|s| !s.is_empty())
        .flat_map(|s| ["/", s])
        .collect();
    if path.ends_with('/') && KEEPS_TRAILING_SLASH.contains(&format!("{tidy}/").as_str()) {
        tidy.push('/');
    }
    Some(if tidy.is_empty() {
        "/".to_string()
    } else {
        tidy
    })
}

async fn health(State(node): State<Arc<Node>>) -> Response {
    let connected = node.client.connection_state() == async_nats::connection::State::Connected;
    let status = if connected && !node.draining() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    http::json(
        status,
        &json!({
            "status": if status == StatusCode::OK { "ok" } else { "unavailable" },
            "edge": node.id,
            "nats": if connected { "connected" } else { "disconnected" },
            "draining": node.draining(),
            "websockets": node.conns.len(),
            "subscriptions": node.fanout.subscriptions(),
        }),
    )
}

async fn metrics(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    let mut text = String::new();
    if let Some(registry) = node.registry() {
        prometheus_client::encoding::text::encode(&mut text, registry)
            .map_err(|_| ApiError::from(ErrorCode::Internal))?;
    }
    let mut response = Response::new(http::Body::from(text));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::tidy_path;

    #[test]
    fn empty_path_segments_are_dropped_before_routing() {
        assert_eq!(tidy_path("/session/x/state"), None);
        assert_eq!(tidy_path("/"), None);
        assert_eq!(tidy_path("/healthz/").as_deref(), Some("/healthz"));
        assert_eq!(
            tidy_path("//session//x/state/").as_deref(),
            Some("/session/x/state")
        );
        assert_eq!(tidy_path("//").as_deref(), Some("/"));
    }

    #[test]
    fn the_screens_index_keeps_its_slash() {
        assert_eq!(tidy_path("/app/"), None);
        assert_eq!(tidy_path("//app//").as_deref(), Some("/app/"));
        assert_eq!(
            tidy_path("/app/kitchen.html/").as_deref(),
            Some("/app/kitchen.html")
        );
    }
}
