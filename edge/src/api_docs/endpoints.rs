//! Every route the edge answers, declared once: the OpenAPI and AsyncAPI generators read this
//! table, and `tests/api_docs.rs` checks it against the routes the edge actually serves.

/// One route of the edge.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// The HTTP method (`GET` for a WebSocket upgrade).
    pub method: &'static str,
    /// The path, with `{name}` for a path parameter (as OpenAPI and AsyncAPI write it).
    pub path: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
    /// Plain HTTP or a WebSocket.
    pub kind: Kind,
}

/// What travels over a route. Schema names are files of `schemas/json/` without `.json`.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A request answered by one response.
    Http {
        /// The JSON request body, if the route takes one.
        request: Option<&'static str>,
        /// The successful response.
        response: Response,
    },
    /// A WebSocket: frames the client sends and frames the server sends.
    WebSocket {
        /// What clients send.
        receives: Option<&'static str>,
        /// What the server sends (`None`: described in the README, no schema yet).
        sends: Option<&'static str>,
    },
}

/// A successful HTTP response.
#[derive(Debug, Clone, Copy)]
pub enum Response {
    /// JSON with a schema from `schemas/json/`, or any JSON object when `None`.
    Json(Option<&'static str>),
    /// Another content type (`text/html`, the metrics text…), no JSON schema.
    Other(&'static str),
}

const fn http(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    request: Option<&'static str>,
    response: Response,
) -> Endpoint {
    Endpoint {
        method,
        path,
        summary,
        kind: Kind::Http { request, response },
    }
}

const fn socket(
    path: &'static str,
    summary: &'static str,
    receives: Option<&'static str>,
    sends: Option<&'static str>,
) -> Endpoint {
    Endpoint {
        method: "GET",
        path,
        summary,
        kind: Kind::WebSocket { receives, sends },
    }
}

use Response::{Json, Other};

/// Every route of the edge. A route missing here fails `tests/api_docs.rs`.
pub const ENDPOINTS: &[Endpoint] = &[
    // Everywhere.
    http(
        "GET",
        "/healthz",
        "200 when NATS is connected and the edge is not draining",
        None,
        Json(None),
    ),
    http(
        "GET",
        "/metrics",
        "Prometheus metrics (OpenMetrics text)",
        None,
        Other("application/openmetrics-text"),
    ),
    http(
        "GET",
        "/openapi.json",
        "This document: the edge's HTTP endpoints (OpenAPI 3.1)",
        None,
        Json(None),
    ),
    http(
        "GET",
        "/asyncapi.json",
        "The WebSocket endpoints and NATS subjects (AsyncAPI 3)",
        None,
        Json(None),
    ),
    http(
        "GET",
        "/app/",
        "The screens' sign-in page (`/app` redirects here)",
        None,
        Other("text/html"),
    ),
    http(
        "GET",
        "/app/{file}",
        "The screens (clients/app): kitchen.html, devices.html, room.html, display.html and their scripts",
        None,
        Other("text/html"),
    ),
    http(
        "GET",
        "/app/dev.json",
        "Under `tablewire dev` only: the dev token and its tenant for the screens' sign-in",
        None,
        Json(None),
    ),
    // Seed 000: customer displays.
    socket(
        "/session/{id}/display",
        "A customer display: initial_state on connect, then update frames",
        Some("display.client"),
        Some("display.server"),
    ),
    http(
        "POST",
        "/session/{id}/init",
        "Creates the session and sets its tenant once",
        Some("display.init"),
        Json(None),
    ),
    http(
        "POST",
        "/session/{id}/update",
        "An update for every display of the session (Bearer secret or service JWT)",
        Some("display.update"),
        Json(None),
    ),
    http(
        "GET",
        "/session/{id}/state",
        "The session's state",
        None,
        Json(Some("display.state")),
    ),
    // Seed 001: collaborative order rooms.
    socket(
        "/parties/collaborative_order/{room}",
        "A collaborative order room (PartySocket clients add `?_pk=`)",
        Some("collab.client"),
        None,
    ),
    // Seed 002: POS and kitchen displays.
    socket(
        "/ws/restaurant-pos/{tenantId}",
        "POS terminals and kitchen displays of one tenant (JWT of that tenant)",
        Some("pos.client"),
        Some("pos.server"),
    ),
    http(
        "POST",
        "/api/orders",
        "Submits an order (HTTP fallback of submit_order); 201 with the created order",
        Some("pos.submit"),
        Json(None),
    ),
    http(
        "GET",
        "/api/orders",
        "The tenant's orders: `?status=active` (default) or `?status=recent`",
        None,
        Json(None),
    ),
    http(
        "PATCH",
        "/api/orders/{id}",
        "Moves an active order to another status",
        None,
        Json(None),
    ),
    http(
        "PUT",
        "/api/pos/settings",
        "The tenant's POS settings (admin or service JWT)",
        Some("pos.settings"),
        Json(None),
    ),
    // Seed 003: RFID devices.
    socket(
        "/ws/device",
        "An RFID reader (`?deviceId=`): scans, heartbeats, config pushes",
        Some("device.client"),
        None,
    ),
    http(
        "POST",
        "/api/rfid/scan",
        "A scan over HTTP (fallback of the socket's scan)",
        Some("device.scan"),
        Json(None),
    ),
    http(
        "PUT",
        "/api/devices/{id}/config",
        "Stores a device's config and pushes it to the device (admin JWT)",
        Some("device.config"),
        Json(None),
    ),
    http(
        "PUT",
        "/api/devices/settings",
        "The tenant's device settings (admin JWT)",
        Some("device.settings"),
        Json(None),
    ),
    http(
        "GET",
        "/api/devices/settings",
        "The tenant's device settings as stored (admin JWT)",
        None,
        Json(None),
    ),
    // Seed 004: restaurant events and voice.
    socket(
        "/",
        "The restaurant events feed (JWT in a header, `?token=` or a first auth message)",
        Some("events.client"),
        Some("events.server"),
    ),
    socket(
        "/ws",
        "The restaurant events feed (same as `/`)",
        Some("events.client"),
        Some("events.server"),
    ),
    socket(
        "/voice-stream",
        "Voice sessions: audio chunks in, transcripts out",
        Some("voice.client"),
        None,
    ),
    http(
        "POST",
        "/api/events",
        "A backend publishes an event to its restaurant's feed (service JWT)",
        Some("events.publish"),
        Json(None),
    ),
];
