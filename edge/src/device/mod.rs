//! Seed 003 endpoints for RFID readers: `GET /ws/device?deviceId=…` (WebSocket),
//! `POST /api/rfid/scan` (the HTTP fallback), `PUT /api/devices/{id}/config` and
//! `PUT /api/devices/settings` (admin JWT). The edge authenticates, validates, looks the tag up
//! in the tag directory (KV), attaches the tenant's scan interval (from its watched copy of the
//! settings) and publishes; the device handler decides. Each device connection listens on its
//! device's output subject: a `holder` event naming another connection closes it with 4001, a
//! `config` event is pushed to the device, an `accepted` event lets the edge answer a scan that
//! is certainly too soon itself.

//!
//! # Layout
//! - [`state`] — [`DeviceEdge`]: the device side of one edge (tag directory, presence, settings).
//! - [`tags`] — tag lookups in the tag directory (`tw_device_tags`).
//! - [`identity`] — who a device or a device administrator is, from the configured device auth.
//! - [`socket`] — the device WebSocket.
//! - [`api`] — the HTTP endpoints (scan fallback, configuration, settings).

mod api;
mod identity;
mod socket;
mod state;
mod tags;

pub use state::DeviceEdge;

use crate::node::Node;
use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post, put};
use std::sync::Arc;

/// The seed 003 routes.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Node>: FromRef<S>,
    Arc<DeviceEdge>: FromRef<S>,
{
    Router::new()
        .route("/ws/device", get(socket::socket))
        .route("/api/rfid/scan", post(api::scan))
        .route("/api/devices/{id}/config", put(api::put_config))
        .route(
            "/api/devices/settings",
            put(api::put_settings).get(api::get_settings),
        )
}
