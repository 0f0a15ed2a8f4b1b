//! The POS and kitchen display WebSocket, `GET /ws/restaurant-pos/{tenantId}`: `sync_state`
//! on connect, then the tenant's order events in order; client frames are published for the
//! pos handler.

use super::api::submit_command;
use super::books::{PosEdge, read_orders};
use crate::credentials::BearerOrQueryToken;
use crate::fanout::{Snapshot, SnapshotResult};
use crate::http::{self, Answer, ApiError};
use crate::node::Node;
use crate::publish::{Command, SocketPipeline, now_ms};
use crate::upgrade::WebSocketUpgrade;
use crate::ws::{Conn, Handler};
use axum::extract::{FromRequestParts, State};
use bytes::Bytes;
use hyper::http::request::Parts;
use serde_json::Value;
use std::sync::Arc;
use tablewire_nats::subject;
use tablewire_schemas::pos::{
    BookOrder, ClientFrame, Command as PosCommand, ServerFrame, TENANT_KEY,
};
use tablewire_schemas::{Claims, Domain, ErrorBody, ErrorCode, Origin};

/// The tenant id of the path, checked.
pub(super) struct TenantId(String);

impl<S: Send + Sync> FromRequestParts<S> for TenantId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        http::path_id(parts, "tenant id").await.map(TenantId)
    }
}

pub(super) async fn socket(
    State(pos): State<Arc<PosEdge>>,
    TenantId(tenant): TenantId,
    BearerOrQueryToken(principal): BearerOrQueryToken,
    upgrade: WebSocketUpgrade,
) -> Answer {
    let claims = principal.claims();
    if let Some(c) = &claims
        && c.tenant.as_deref() != Some(&tenant)
    {
        return Err(pos
            .node
            .auth
            .refuse(ErrorBody::with_message(
                ErrorCode::TenantMismatch,
                "the token's tenant is not the tenant in the path",
            ))
            .into());
    }
    let handler = PosHandler {
        pos,
        tenant,
        claims,
        pipeline: SocketPipeline::default(),
    };
    Ok(upgrade.serve("restaurant-pos", handler))
}

/// The `sync_state` frame of a tenant and the sequence it includes.
async fn snapshot(pos: &PosEdge, tenant: &str) -> SnapshotResult {
    let (seq, book) = read_orders(pos, tenant).await?;
    let frame = ServerFrame::SyncState {
        active_orders: book.active.iter().map(|o| o.kitchen()).collect(),
        recent_orders: book.recent.into_iter().map(BookOrder::into_order).collect(),
        seq,
    };
    let json = serde_json::to_vec(&frame)
        .map_err(|e| ErrorBody::with_message(ErrorCode::Internal, e.to_string()))?;
    Ok((seq, crate::ws::frame::text(&json)))
}

/// A POS or kitchen display WebSocket of one tenant.
struct PosHandler {
    pos: Arc<PosEdge>,
    tenant: String,
    claims: Option<Claims>,
    pipeline: SocketPipeline,
}

impl PosHandler {
    fn subject(&self) -> String {
        subject::output(Domain::Pos, &self.tenant, TENANT_KEY)
    }

    fn origin(&self, conn: &Conn) -> Origin {
        Origin {
            edge: self.pos.node.id.clone(),
            conn: Some(conn.id),
            request: None,
        }
    }

    fn send_frame(&self, conn: &Conn, frame: &ServerFrame) {
        send_frame(conn, frame);
    }

    fn send_error(&self, conn: &Conn, error: ErrorBody) {
        send_error(&self.pos.node, conn, error);
    }
}

fn send_frame(conn: &Conn, frame: &ServerFrame) {
    if let Ok(json) = serde_json::to_vec(frame) {
        conn.send_json(&json);
    }
}

fn send_error(node: &Node, conn: &Conn, error: ErrorBody) {
    node.metrics.error(error.code);
    send_frame(conn, &tablewire_schemas::pos::error_frame(&error, now_ms()));
}

impl Handler for PosHandler {
    async fn on_open(&self, conn: &Arc<Conn>) {
        let pos = self.pos.clone();
        let tenant = self.tenant.clone();
        let snapshot: Snapshot = Arc::new(move || {
            let pos = pos.clone();
            let tenant = tenant.clone();
            Box::pin(async move { snapshot(&pos, &tenant).await })
        });
        self.pos
            .node
            .fanout
            .join_or_close(self.subject(), conn, snapshot, |e| self.send_error(conn, e))
            .await;
    }

    async fn on_text(&self, conn: &Arc<Conn>, text: Bytes) {
        let value: Value = match http::parse_json(&text) {
            Ok(v) => v,
            Err(e) => return self.send_error(conn, e),
        };
        let frame = match serde_json::from_value::<ClientFrame>(value.clone()) {
            Ok(frame) => frame,
            Err(e) => {
                let error = match value.get("type").and_then(Value::as_str) {
                    Some(t @ ("submit_order" | "update_order_status" | "ping")) => {
                        ErrorBody::with_message(
                            ErrorCode::ValidationError,
                            format!("invalid {t}: {e}"),
                        )
                    }
                    Some(t) => ErrorBody::with_message(
                        ErrorCode::UnknownType,
                        format!("unknown message type {t:?}"),
                    ),
                    None => ErrorBody::with_message(
                        ErrorCode::InvalidMessage,
                        "a message needs a string \"type\"",
                    ),
                };
                return self.send_error(conn, error);
            }
        };
        let (key, command) = match frame {
            ClientFrame::Ping => {
                self.send_frame(
                    conn,
                    &ServerFrame::Pong {
                        timestamp: now_ms(),
                    },
                );
                return;
            }
            ClientFrame::SubmitOrder {
                order,
                idempotency_key,
            } => match submit_command(*order, idempotency_key) {
                Ok(submit) => submit,
                Err(e) => return self.send_error(conn, e),
            },
            ClientFrame::UpdateOrderStatus {
                order_id,
                status,
                updated_by,
            } => {
                let updated_by = updated_by
                    .or_else(|| self.claims.as_ref().map(|c| c.sub.clone()))
                    .unwrap_or_else(|| "unknown".to_string());
                let command = PosCommand::UpdateStatus {
                    order_id,
                    status,
                    updated_by,
                };
                (TENANT_KEY.to_string(), command)
            }
        };
        // The handler answers (order_created, order_status_update or an error): only a failed
        // store needs an answer from here.
        let (node, sender) = (self.pos.node.clone(), conn.clone());
        self.pipeline
            .send(
                &self.pos.node.publisher,
                Command {
                    domain: Domain::Pos,
                    tenant: &self.tenant,
                    key: &key,
                    client_id: None,
                    origin: self.origin(conn),
                    claims: self.claims.clone(),
                    command: &command,
                },
                move |e| send_error(&node, &sender, e),
            )
            .await;
    }

    async fn on_close(&self, conn: &Arc<Conn>) {
        self.pos.node.fanout.leave(&self.subject(), conn.id);
    }
}
