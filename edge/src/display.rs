//! Seed 000 endpoints: `GET /session/{id}/display` (WebSocket), `POST /session/{id}/init`,
//! `POST /session/{id}/update` (Bearer secret or a service JWT), `GET /session/{id}/state`.
//! The edge only checks, publishes and fans out; the display handler applies updates.

use crate::fanout::{Snapshot, SnapshotResult};
use crate::http::{self, Body};
use crate::publish::{Command, now_ms};
use crate::request;
use crate::server::Shared;
use crate::ws::{Conn, Handler};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;
use tablewire_nats::{subject, token};
use tablewire_schemas::display::{
    Accepted, ClientFrame, Command as DisplayCommand, DisplayUpdate, InitRequest, InitialStateRaw,
    SHARED_TENANT, ServerFrame, SessionState,
};
use tablewire_schemas::envelope::role;
use tablewire_schemas::stored::StoredView;
use tablewire_schemas::{Domain, ErrorBody, ErrorCode, Origin};

/// Routes `/session/{id}/{action}`.
pub async fn route(
    shared: &Arc<Shared>,
    mut request: Request<Incoming>,
    id: &str,
    action: &str,
) -> (&'static str, Response<Body>) {
    let route = match action {
        "display" => "/session/{id}/display",
        "init" => "/session/{id}/init",
        "update" => "/session/{id}/update",
        "state" => "/session/{id}/state",
        _ => return ("unknown", http::error_code(ErrorCode::NotFound)),
    };
    if let Err(e) = token::validate_id(id) {
        return (
            route,
            http::error(ErrorBody::with_message(
                ErrorCode::InvalidId,
                format!("session id: {e}"),
            )),
        );
    }
    let method = request.method().clone();
    let response = match (method, action) {
        (Method::GET, "display") => {
            let handler = DisplayHandler {
                shared: shared.clone(),
                session: id.to_string(),
            };
            shared.upgrade(&mut request, "display", handler)
        }
        (Method::POST, "init") => init(shared, request, id).await,
        (Method::POST, "update") => update(shared, request, id).await,
        (Method::GET, "state") => state(shared, id).await,
        _ => http::error_code(ErrorCode::MethodNotAllowed),
    };
    (route, response)
}

fn http_origin(shared: &Shared) -> Origin {
    Origin {
        edge: shared.id.clone(),
        conn: None,
        request: None,
    }
}

fn accepted(session: &str, accepted: crate::publish::Accepted) -> Response<Body> {
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

async fn init(shared: &Arc<Shared>, request: Request<Incoming>, session: &str) -> Response<Body> {
    let client_id = http::header_str(&request, "idempotency-key").map(str::to_string);
    let body: InitRequest = match http::read_json(request, shared.config.max_message_bytes).await {
        Ok(body) => body,
        Err(e) => return http::error(e),
    };
    if let Some(tenant) = &body.tenant_id
        && let Err(e) = token::validate_id(tenant)
    {
        return http::error(ErrorBody::with_message(
            ErrorCode::InvalidId,
            format!("tenantId: {e}"),
        ));
    }
    let command = DisplayCommand::Init {
        tenant_id: body.tenant_id,
    };
    publish(shared, session, client_id.as_deref(), None, &command).await
}

async fn update(shared: &Arc<Shared>, request: Request<Incoming>, session: &str) -> Response<Body> {
    let principal = match shared
        .auth
        .check_header(http::header_str(&request, "authorization"))
    {
        Ok(p) => p,
        Err(e) => {
            shared.metrics.auth_failures.inc();
            return http::error(e);
        }
    };
    let claims = principal.claims();
    if let Some(c) = &claims
        && !c.has_role(&[role::SERVICE, role::ADMIN])
    {
        return http::error(ErrorBody::with_message(
            ErrorCode::Forbidden,
            "updates need a service or admin token",
        ));
    }
    let client_id = http::header_str(&request, "idempotency-key").map(str::to_string);
    let update: DisplayUpdate =
        match http::read_json(request, shared.config.max_message_bytes).await {
            Ok(update) => update,
            Err(e) => return http::error(e),
        };
    if let Err(why) = update.check() {
        return http::error(ErrorBody::with_message(ErrorCode::ValidationError, why));
    }
    publish(
        shared,
        session,
        client_id.as_deref(),
        claims,
        &DisplayCommand::Update { update },
    )
    .await
}

/// Publishes an HTTP write and answers once the handler applied it (so a read right after sees
/// it) or refused it (with the refusal's status: a refused write is never answered 2xx).
async fn publish(
    shared: &Arc<Shared>,
    session: &str,
    client_id: Option<&str>,
    claims: Option<tablewire_schemas::Claims>,
    command: &DisplayCommand,
) -> Response<Body> {
    let applied = request::apply(
        shared,
        Command {
            domain: Domain::Display,
            tenant: SHARED_TENANT,
            key: session,
            client_id,
            origin: http_origin(shared),
            claims,
            command,
        },
    )
    .await;
    match applied {
        Ok(stored) => accepted(session, stored),
        Err(e) => http::error(e),
    }
}

async fn state(shared: &Arc<Shared>, session: &str) -> Response<Body> {
    match shared
        .read_state(Domain::Display, SHARED_TENANT, session)
        .await
    {
        Ok(Some(bytes)) => match serde_json::from_slice::<StoredView<'_>>(&bytes) {
            Ok(view) => raw_json(view.state.get()),
            Err(_) => http::error_code(ErrorCode::Internal),
        },
        // Never created: show what it would start as, without creating it.
        Ok(None) => http::json(StatusCode::OK, &SessionState::new(session, now_ms())),
        Err(e) => http::error(e),
    }
}

fn raw_json(json: &str) -> Response<Body> {
    let mut response = Response::new(http_body_util::BodyExt::boxed(http_body_util::Full::new(
        Bytes::from(json.to_string()),
    )));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// The `initial_state` frame for a session, and the sequence it includes. A session without
/// state is created (through the handler) and shown as it starts.
async fn snapshot(shared: &Arc<Shared>, session: &str) -> SnapshotResult {
    let now = now_ms();
    let internal =
        |e: serde_json::Error| ErrorBody::with_message(ErrorCode::Internal, e.to_string());
    match shared
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
            let _ = shared
                .publisher
                .publish(Command {
                    domain: Domain::Display,
                    tenant: SHARED_TENANT,
                    key: session,
                    client_id: Some("open"),
                    origin: http_origin(shared),
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

/// A display WebSocket.
struct DisplayHandler {
    shared: Arc<Shared>,
    session: String,
}

impl DisplayHandler {
    fn subject(&self) -> String {
        subject::output(Domain::Display, SHARED_TENANT, &self.session)
    }

    fn send_error(&self, conn: &Conn, error: ErrorBody) {
        self.shared.metrics.error(error.code);
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
        let shared = self.shared.clone();
        let session = self.session.clone();
        let snapshot: Snapshot = Arc::new(move || {
            let shared = shared.clone();
            let session = session.clone();
            Box::pin(async move { snapshot(&shared, &session).await })
        });
        self.shared
            .fanout
            .join_or_close(self.subject(), conn, snapshot, |e| self.send_error(conn, e))
            .await;
    }

    async fn on_text(&self, conn: &Arc<Conn>, text: Bytes) {
        let value: serde_json::Value = match http::parse_json(&text) {
            Ok(v) => v,
            Err(e) => return self.send_error(conn, e),
        };
        match serde_json::from_value::<ClientFrame>(value.clone()) {
            Ok(ClientFrame::Ping) => {
                if let Ok(json) = serde_json::to_vec(&ServerFrame::Pong {
                    timestamp: now_ms(),
                }) {
                    conn.send_json(&json);
                }
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
        self.shared.fanout.leave(&self.subject(), conn.id);
    }
}
