//! Seed 002 endpoints: `GET /ws/restaurant-pos/{tenantId}` (WebSocket for POS and kitchen
//! displays) and its HTTP fallback `POST /api/orders`, `GET /api/orders?status=active`,
//! `PATCH /api/orders/{id}`, and the tenant's `PUT /api/pos/settings`. The edge checks, publishes
//! and fans out; the pos handler decides.
//!
//! # Layout
//! - [`books`] — [`PosEdge`]: the order books with their bodies, as this edge reads them.
//! - [`api`] — the HTTP endpoints (`/api/orders…`, `/api/pos/settings`).
//! - [`socket`] — the POS and kitchen display WebSocket.

mod api;
mod books;
mod socket;

pub use books::{OrderBodies, PosEdge};

use crate::node::Node;
use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, patch, post, put};
use std::sync::Arc;

/// The seed 002 routes.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Node>: FromRef<S>,
    Arc<PosEdge>: FromRef<S>,
{
    Router::new()
        .route("/ws/restaurant-pos/{tenantId}", get(socket::socket))
        .route("/api/orders", post(api::submit).get(api::list))
        .route("/api/orders/{id}", patch(api::patch_status))
        .route("/api/pos/settings", put(api::settings))
}
