//! Seed 000 endpoints: `GET /session/{id}/display` (WebSocket), `POST /session/{id}/init`,
//! `POST /session/{id}/update` (Bearer secret or a service JWT), `GET /session/{id}/state`.
//! The edge only checks, publishes and fans out; the display handler applies updates.

use crate::credentials::Bearer;
use crate::fanout::{Snapshot, SnapshotResult};
use crate::http::{self, Answer, ApiError, IdempotencyKey, JsonBody};
use crate::node::Node;
use crate::publish::{Command, now_ms};
use crate::request;
use crate::upgrade::WebSocketUpgrade;
use crate::ws::{Conn, Handler};
use axum::Router;
use axum::extract::{FromRef, FromRequestParts, Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use hyper::StatusCode;
use hyper::http::request::Parts;
use std::sync::Arc;
use tablewire_nats::{subject, token};
use tablewire_schemas::display::{
    Accepted, ClientFrame, Command as DisplayCommand, DisplayUpdate, InitRequest, InitialStateRaw,
    SHARED_TENANT, ServerFrame, SessionState,
};
use tablewire_schemas::envelope::role;
use tablewire_schemas::stored::StoredView;
use tablewire_schemas::{Domain, ErrorBody, ErrorCode, Origin};

/// The seed 000 routes.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Node>: FromRef<S>,
{
    Router::new()
        .route("/session/{id}/display", get(display))
        .route("/session/{id}/init", post(init))
        .route("/session/{id}/update", post(update))
        .route("/session/{id}/state", get(state))
}

/// The session id of the path, checked.
struct SessionId(String);

impl<S: Send + Sync> FromRequestParts<S> for SessionId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        http::path_id(parts, "session id").await.map(SessionId)
    }
}

async fn display(
    State(node): State<Arc<Node>>,
    SessionId(session): SessionId,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.serve("display", DisplayHandler { node, session })
}

fn http_origin(node: &Node) -> Origin {
    Origin {
        edge: node.id.clone(),
        conn: None,
        request: None,
    }
}

fn accepted(session: &str, accepted: crate::publish::Accepted) -> Response {
    http::json(
        StatusCode::OK,
        &Accepted {
            success: true,
            session_id: session.to_string(),
            message_id: accepted.message_id,
            duplicate: accepted.duplicate,
        },
    )
}

async fn init(
    State(node): State<Arc<Node>>,
    SessionId(session): SessionId,
    IdempotencyKey(client_id): IdempotencyKey,
    JsonBody(body): JsonBody<InitRequest>,
) -> Answer {
    if let Some(tenant) = &body.tenant_id {
        token::validate_id(tenant)
            .map_err(|e| ErrorBody::with_message(ErrorCode::InvalidId, format!("tenantId: {e}")))?;
    }
    let command = DisplayCommand::Init {
        tenant_id: body.tenant_id,
    };
    publish(&node, &session, client_id.as_deref(), None, &command).await
}

async fn update(
    State(node): State<Arc<Node>>,
    SessionId(session): SessionId,
    Bearer(principal): Bearer,
    IdempotencyKey(client_id): IdempotencyKey,
    request: Request,
) -> Answer {
    let claims = principal.claims();
    if let Some(c) = &claims
        && !c.has_role(&[role::SERVICE, role::ADMIN])
    {
        return Err(ErrorBody::with_message(
            ErrorCode::Forbidden,
            "updates need a service or admin token",
        )
        .into());
    }
    let update: DisplayUpdate = http::read_json(request, node.config.max_message_bytes).await?;
    update
        .check()
        .map_err(|why| ErrorBody::with_message(ErrorCode::ValidationError, why))?;
    publish(
        &node,
        &session,
        client_id.as_deref(),
        claims,
        &DisplayCommand::Update { update },
    )
    .await
}

/// Publishes an HTTP write and answers once the handler applied it (so a read right after sees
/// it) or refused it (with the refusal's status: a refused write is never answered 2xx).
async fn publish(
    node: &Node,
    session: &str,
    client_id: Option<&str>,
    claims: Option<tablewire_schemas::Claims>,
    command: &DisplayCommand,
) -> Answer {
    let stored = request::apply(
        node,
        Command {
            domain: Domain::Display,
            tenant: SHARED_TENANT,
            key: session,
            client_id,
            origin: http_origin(node),
            claims,
            command,
        },
    )
    .await?;
    Ok(accepted(session, stored))
}

async fn state(State(node): State<Arc<Node>>, SessionId(session): SessionId) -> Answer {
    match node
        .read_state(Domain::Display, SHARED_TENANT, &session)
        .await?
    {
        Some(bytes) => {
            let view = serde_json::from_slice::<StoredView<'_>>(&bytes)
                .map_err(|_| ApiError::from(ErrorCode::Internal))?;
            Ok(http::json_bytes(
                StatusCode::OK,
                view.state.get().as_bytes().to_vec(),
            ))
        }
        // Never created: show what it would start as, without creating it.
        None => Ok(http::json(
            StatusCode::OK,
            &SessionState::new(&session, now_ms()),
        )),
    }
}

/// The `initial_state` frame for a session, and the sequence it includes. A session without
/// state is created (through the handler) and shown as it starts.
async fn snapshot(node: &Node, session: &str) -> SnapshotResult {
    let now = now_ms();
    let internal =
        |e: serde_json::Error| ErrorBody::with_message(ErrorCode::Internal, e.to_string());
    match node
        .read_state(Domain::Display, SHARED_TENANT, session)
        .await?
    {
        Some(bytes) => {
            let view: StoredView<'_> = serde_json::from_slice(&bytes).map_err(internal)?;
            let frame = InitialStateRaw {
                kind: "initial_state",
                state: view.state,
                timestamp: now,
                seq: view.seq,
            };
            Ok((
                view.seq,
                crate::ws::frame::text(&serde_json::to_vec(&frame).map_err(internal)?),
            ))
        }
        None => {
            // Seed 000 creates a session on its first display. Best effort: a display is
            // served even while the command cannot be stored; its first update creates it.
            let _ = node
                .publisher
                .publish(Command {
                    domain: Domain::Display,
                    tenant: SHARED_TENANT,
                    key: session,
                    client_id: Some("open"),
                    origin: http_origin(node),
                    claims: None,
                    command: &DisplayCommand::Open,
                })
                .await;
            let frame = ServerFrame::InitialState {
                state: SessionState::new(session, now),
                timestamp: now,
                seq: 0,
            };
            Ok((
                0,
                crate::ws::frame::text(&serde_json::to_vec(&frame).map_err(internal)?),
            ))
        }
    }
}

/// A client frame's `type`, borrowed when it has no escapes (then it can be compared at once).
#[derive(serde::Deserialize)]
struct TypeOnly<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a str>,
}

/// The `pong` frame (`ServerFrame::Pong`), encoded without a serializer.
fn pong_frame(timestamp: i64) -> Bytes {
    let json = format!(r#"{{"type":"pong","timestamp":{timestamp}}}"#);
    crate::ws::frame::text(json.as_bytes())
}

/// A display WebSocket.
struct DisplayHandler {
    node: Arc<Node>,
    session: String,
}

impl DisplayHandler {
    fn subject(&self) -> String {
        subject::output(Domain::Display, SHARED_TENANT, &self.session)
    }

    fn send_error(&self, conn: &Conn, error: ErrorBody) {
        self.node.metrics.error(error.code);
        let frame = ServerFrame::Error {
            error,
            timestamp: now_ms(),
        };
        if let Ok(json) = serde_json::to_vec(&frame) {
            conn.send_json(&json);
        }
    }
}

impl Handler for DisplayHandler {
    async fn on_open(&self, conn: &Arc<Conn>) {
        let node = self.node.clone();
        let session = self.session.clone();
        let snapshot: Snapshot = Arc::new(move || {
            let node = node.clone();
            let session = session.clone();
            Box::pin(async move { snapshot(&node, &session).await })
        });
        self.node
            .fanout
            .join_or_close(self.subject(), conn, snapshot, |e| self.send_error(conn, e))
            .await;
    }

    async fn on_text(&self, conn: &Arc<Conn>, text: Bytes) {
        // The common message, a ping, is read without building a JSON tree and answered with
        // a frame written straight from its parts.
        if let Ok(TypeOnly { kind: Some("ping") }) = serde_json::from_slice::<TypeOnly<'_>>(&text) {
            conn.send(pong_frame(now_ms()));
            return;
        }
        let value: serde_json::Value = match http::parse_json(&text) {
            Ok(v) => v,
            Err(e) => return self.send_error(conn, e),
        };
        match serde_json::from_value::<ClientFrame>(value.clone()) {
            Ok(ClientFrame::Ping) => {
                conn.send(pong_frame(now_ms()));
            }
            Err(_) => {
                let error = match value.get("type").and_then(|t| t.as_str()) {
                    Some(t) => ErrorBody::with_message(
                        ErrorCode::UnknownType,
                        format!("unknown message type {t:?}"),
                    ),
                    None => ErrorBody::with_message(
                        ErrorCode::InvalidMessage,
                        "a message needs a string \"type\"",
                    ),
                };
                self.send_error(conn, error);
            }
        }
    }

    async fn on_close(&self, conn: &Arc<Conn>) {
        self.node.fanout.leave(&self.subject(), conn.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pong_frame_is_the_schema_pong() {
        let frame = pong_frame(1_733_000_000_123);
        let encoded = serde_json::to_vec(&ServerFrame::Pong {
            timestamp: 1_733_000_000_123,
        })
        .expect("encode");
        assert_eq!(frame, crate::ws::frame::text(&encoded));
    }

    #[test]
    fn only_a_plain_ping_takes_the_fast_path() {
        let kind = |text: &str| {
            serde_json::from_slice::<TypeOnly<'_>>(text.as_bytes())
                .ok()
                .and_then(|t| t.kind.map(str::to_string))
        };
        assert_eq!(kind(r#"{"type":"ping"}"#).as_deref(), Some("ping"));
        assert_eq!(kind(r#"{"type":"ping","x":[1]}"#).as_deref(), Some("ping"));
        assert_eq!(kind(r#"{"type":"pong"}"#).as_deref(), Some("pong"));
        assert_eq!(
            kind(r#"{"type":"p\u0069ng"}"#),
            None,
            "escaped: the slow path"
        );
        assert_eq!(kind(r#"{"type":"ping"} x"#), None, "trailing bytes");
        assert_eq!(
            kind(r#"{"type":"ping","type":"x"}"#),
            None,
            "a repeated type"
        );
        assert_eq!(kind(r#"{"kind":"ping"}"#), None);
    }
}
