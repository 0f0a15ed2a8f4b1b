//! Seed 001 endpoint: the PartyKit room WebSocket `/parties/collaborative_order/{room}`. Checks
//! the token (query `token` or `Authorization: Bearer`), sends `sync` on connect and then the
//! room's events in order, and publishes every well-formed client message for the collab
//! handler. Per-connection message limit here; the rules live in the handler.

use crate::fanout::{Snapshot, SnapshotResult};
use crate::http::{self, ApiError};
use crate::limit::ConnLimit;
use crate::node::Node;
use crate::publish::{Command, SocketPipeline, now_ms};
use crate::upgrade::WebSocketUpgrade;
use crate::ws::{Conn, Handler};
use axum::Router;
use axum::extract::{FromRef, FromRequestParts, State};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use hyper::http::request::Parts;
use std::sync::Arc;
use tablewire_nats::{subject, token};
use tablewire_schemas::collab::{self, ClientMessage, Command as CollabCommand, OrderState};
use tablewire_schemas::stored::StoredView;
use tablewire_schemas::{Claims, Domain, ErrorBody, ErrorCode, Origin};

/// The seed 001 route.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Node>: FromRef<S>,
{
    Router::new().route(&format!("/parties/{}/{{room}}", collab::PARTY), get(room))
}

/// The room id of the path, checked.
struct RoomId(String);

impl<S: Send + Sync> FromRequestParts<S> for RoomId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        http::path_id(parts, "room id").await.map(RoomId)
    }
}

/// Who joins a room: the tenant and claims of a verified JWT in the `token` query parameter
/// (what PartySocket's `query: {token}` sends) or the `Authorization` header; without a token,
/// the configured open-rooms tenant (development) or 401.
struct Guest(String, Option<Claims>);

impl<S> FromRequestParts<S> for Guest
where
    S: Send + Sync,
    Arc<Node>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let node = Arc::<Node>::from_ref(state);
        let token = http::query_param(&parts.uri, "token").or_else(|| {
            http::header_str(&parts.headers, "authorization")
                .and_then(crate::auth::bearer_token)
                .map(str::to_string)
        });
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return match &node.config.collab_open_tenant {
                Some(tenant) => Ok(Guest(tenant.clone(), None)),
                None => Err(node
                    .auth
                    .refuse(ErrorBody::with_message(
                        ErrorCode::Unauthorized,
                        "a token is required (query parameter `token` or Authorization: Bearer)",
                    ))
                    .into()),
            };
        };
        let claims = node.auth.verify_jwt(&token)?;
        let tenant = claims
            .tenant
            .clone()
            .filter(|t| token::validate_id(t).is_ok())
            .ok_or_else(|| {
                node.auth.refuse(ErrorBody::with_message(
                    ErrorCode::Forbidden,
                    "the token names no tenant",
                ))
            })?;
        Ok(Guest(tenant, Some(claims)))
    }
}

async fn room(
    State(node): State<Arc<Node>>,
    RoomId(room): RoomId,
    Guest(tenant, claims): Guest,
    upgrade: WebSocketUpgrade,
) -> Response {
    let handler = RoomHandler {
        subject: subject::output(Domain::Collab, &tenant, &room),
        tenant,
        room,
        claims,
        limit: ConnLimit::per_second(node.config.collab_messages_per_second),
        pipeline: SocketPipeline::default(),
        node,
    };
    upgrade.serve("collab", handler)
}

/// The `sync` frame for a room, and the event sequence it includes. A room without state is
/// shown as it would start, without creating it. The stored room is read as an [`OrderState`],
/// which leaves its internal fields (the rate limiter) behind.
async fn snapshot(node: &Node, tenant: &str, room: &str) -> SnapshotResult {
    let now = now_ms();
    let internal =
        |e: serde_json::Error| ErrorBody::with_message(ErrorCode::Internal, e.to_string());
    let bytes = node.read_state(Domain::Collab, tenant, room).await?;
    let (seq, state) = match &bytes {
        Some(bytes) => {
            let view: StoredView<'_> = serde_json::from_slice(bytes).map_err(internal)?;
            let state: OrderState = serde_json::from_str(view.state.get()).map_err(internal)?;
            (view.seq, state)
        }
        None => (0, OrderState::new(tenant, room, now)),
    };
    let frame = collab::Sync::new(&state, now).with_seq(seq);
    Ok((
        seq,
        crate::ws::frame::text(&serde_json::to_vec(&frame).map_err(internal)?),
    ))
}

/// One room connection.
struct RoomHandler {
    node: Arc<Node>,
    subject: String,
    tenant: String,
    room: String,
    claims: Option<Claims>,
    limit: ConnLimit,
    pipeline: SocketPipeline,
}

impl RoomHandler {
    fn send_error(&self, conn: &Conn, error: ErrorBody) {
        send_error(&self.node, conn, error);
    }
}

fn send_error(node: &Node, conn: &Conn, error: ErrorBody) {
    node.metrics.error(error.code);
    let frame = collab::error_frame(&error, now_ms());
    if let Ok(json) = serde_json::to_vec(&frame) {
        conn.send_json(&json);
    }
}

/// Reads a client frame: malformed JSON, a missing or unknown `type` and wrong field types each
/// get their own code.
fn parse(text: &[u8]) -> Result<ClientMessage, ErrorBody> {
    let value: serde_json::Value = http::parse_json(text)?;
    match value.get("type").and_then(|t| t.as_str()) {
        None => Err(ErrorBody::with_message(
            ErrorCode::InvalidMessage,
            "a message needs a string \"type\"",
        )),
        Some(t) if !ClientMessage::TYPES.contains(&t) => Err(ErrorBody::with_message(
            ErrorCode::UnknownType,
            format!("unknown message type {t:?}"),
        )),
        Some(_) => serde_json::from_value(value)
            .map_err(|e| ErrorBody::with_message(ErrorCode::InvalidMessage, e.to_string())),
    }
}

impl Handler for RoomHandler {
    async fn on_open(&self, conn: &Arc<Conn>) {
        let node = self.node.clone();
        let (tenant, room) = (self.tenant.clone(), self.room.clone());
        let snapshot: Snapshot = Arc::new(move || {
            let (node, tenant, room) = (node.clone(), tenant.clone(), room.clone());
            Box::pin(async move { snapshot(&node, &tenant, &room).await })
        });
        self.node
            .fanout
            .join_or_close(self.subject.clone(), conn, snapshot, |e| {
                self.send_error(conn, e)
            })
            .await;
    }

    async fn on_text(&self, conn: &Arc<Conn>, text: Bytes) {
        if let Err(wait) = self.limit.check() {
            return self.send_error(
                conn,
                ErrorBody::with_message(ErrorCode::RateLimited, "too many messages")
                    .retry_after(wait),
            );
        }
        let message = match parse(&text) {
            Ok(m) => m,
            Err(e) => return self.send_error(conn, e),
        };
        let (node, sender) = (self.node.clone(), conn.clone());
        // The sender hears of its change through the room's event like everyone else: only a
        // failed store needs an answer.
        self.pipeline
            .send(
                &self.node.publisher,
                Command {
                    domain: Domain::Collab,
                    tenant: &self.tenant,
                    key: &self.room,
                    client_id: None,
                    origin: Origin {
                        edge: self.node.id.clone(),
                        conn: Some(conn.id),
                        request: None,
                    },
                    claims: self.claims.clone(),
                    command: &CollabCommand::Client { message },
                },
                move |e| send_error(&node, &sender, e),
            )
            .await;
    }

    async fn on_close(&self, conn: &Arc<Conn>) {
        self.node.fanout.leave(&self.subject, conn.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_get_the_right_codes() {
        let code = |text: &str| parse(text.as_bytes()).expect_err(text).code;
        assert_eq!(code("{nope"), ErrorCode::MalformedJson);
        assert_eq!(code(r#"{"participantId":"p"}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(
            code(
                r#"{"type":"update_quantity","participantId":"p","data":{"itemId":"i","quantity":"3"}}"#
            ),
            ErrorCode::InvalidMessage
        );
        assert!(parse(br#"{"type":"leave","participantId":"p","x":1}"#).is_ok());
    }
}
