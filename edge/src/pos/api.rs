//! The POS HTTP endpoints: `POST /api/orders`, `GET /api/orders?status=active`,
//! `PATCH /api/orders/{id}` and `PUT /api/pos/settings`, for a JWT naming its tenant. Each write
//! is answered with the pos handler's reply.

use super::books::{PosEdge, read_orders};
use crate::credentials::Bearer;
use crate::http::{self, Answer, ApiError, IdempotencyKey, JsonBody};
use crate::node::Node;
use crate::publish::Command;
use crate::request::{self, Outcome};
use axum::extract::{FromRef, FromRequestParts, Path, State};
use hyper::StatusCode;
use hyper::http::request::Parts;
use serde_json::Value;
use std::sync::Arc;
use tablewire_schemas::pos::{
    BookOrder, Command as PosCommand, OrderInput, OrderList, Settings, StatusChange, SubmitRequest,
    TENANT_KEY, check_idempotency_key, idempotency_state_key,
};
use tablewire_schemas::{Claims, Domain, ErrorBody, ErrorCode, Origin};

/// The caller of an `/api/…` route: a JWT (`Authorization: Bearer`) naming its tenant.
pub(super) struct Staff {
    tenant: String,
    claims: Claims,
}

impl<S> FromRequestParts<S> for Staff
where
    S: Send + Sync,
    Arc<Node>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Bearer(principal) = Bearer::from_request_parts(parts, state).await?;
        let claims = principal.claims().ok_or_else(|| {
            ErrorBody::with_message(
                ErrorCode::Unauthorized,
                "orders need a JWT that names the tenant",
            )
        })?;
        let tenant = claims.tenant.clone().ok_or_else(|| {
            ErrorBody::with_message(ErrorCode::Forbidden, "the token names no tenant")
        })?;
        Ok(Staff { tenant, claims })
    }
}

/// Checks a submission; the key it goes to is the idempotency key's claim, or the tenant's order
/// book when it has none.
pub(super) fn submit_command(
    order: OrderInput,
    idempotency_key: Option<String>,
) -> Result<(String, PosCommand), ErrorBody> {
    let invalid = |why: String| ErrorBody::with_message(ErrorCode::ValidationError, why);
    order.check().map_err(invalid)?;
    if let Some(key) = &idempotency_key {
        check_idempotency_key(key).map_err(invalid)?;
    }
    let key = match &idempotency_key {
        Some(k) => idempotency_state_key(k),
        None => TENANT_KEY.to_string(),
    };
    // No client id for the stream: a repeat must reach the claim, which answers it (the stream
    // would drop it).
    Ok((
        key,
        PosCommand::Submit {
            order,
            idempotency_key,
        },
    ))
}

/// Publishes a command for the tenant's order book and waits for the handler's answer.
async fn request_reply(
    node: &Node,
    tenant: &str,
    key: &str,
    claims: Option<Claims>,
    command: &PosCommand,
) -> Result<Value, ErrorBody> {
    let submit;
    let (key, command) = match command {
        PosCommand::Submit {
            order,
            idempotency_key,
        } => {
            submit = submit_command(order.clone(), idempotency_key.clone())?;
            (submit.0.as_str(), &submit.1)
        }
        other => (key, other),
    };
    let written = request::write(
        node,
        Command {
            domain: Domain::Pos,
            tenant,
            key,
            client_id: None,
            origin: Origin::default(),
            claims,
            command,
        },
    )
    .await?;
    let payload = match written {
        (_, Outcome::Answered(payload)) => payload,
        _ => {
            return Err(ErrorBody::with_message(
                ErrorCode::Timeout,
                "the order was accepted but its answer did not come in time; retry with the same idempotency key",
            ));
        }
    };
    if let Some(refused) = request::rejection(&payload) {
        return Err(refused);
    }
    http::parse_json(&payload)
}

pub(super) async fn submit(
    State(node): State<Arc<Node>>,
    Staff { tenant, claims }: Staff,
    IdempotencyKey(header_key): IdempotencyKey,
    JsonBody(body): JsonBody<SubmitRequest>,
) -> Answer {
    let (order, body_key) = match body {
        SubmitRequest::Wrapped {
            order,
            idempotency_key,
        }
        | SubmitRequest::Bare {
            order,
            idempotency_key,
        } => (order, idempotency_key),
    };
    let command = PosCommand::Submit {
        order,
        idempotency_key: body_key.or(header_key),
    };
    let frame = request_reply(&node, &tenant, TENANT_KEY, Some(claims), &command).await?;
    Ok(http::json(StatusCode::CREATED, &frame["order"]))
}

pub(super) async fn patch_status(
    State(node): State<Arc<Node>>,
    Staff { tenant, claims }: Staff,
    Path(order_id): Path<String>,
    JsonBody(change): JsonBody<StatusChange>,
) -> Answer {
    let command = PosCommand::UpdateStatus {
        order_id,
        status: change.status,
        updated_by: change.updated_by.unwrap_or_else(|| claims.sub.clone()),
    };
    let frame = request_reply(&node, &tenant, TENANT_KEY, Some(claims), &command).await?;
    Ok(http::json(StatusCode::OK, &frame))
}

pub(super) async fn settings(
    State(node): State<Arc<Node>>,
    Staff { tenant, claims }: Staff,
    JsonBody(body): JsonBody<Settings>,
) -> Answer {
    let command = PosCommand::Configure {
        utc_offset_minutes: body.utc_offset_minutes,
    };
    request_reply(&node, &tenant, TENANT_KEY, Some(claims), &command).await?;
    Ok(http::json(StatusCode::OK, &body))
}

pub(super) async fn list(
    State(pos): State<Arc<PosEdge>>,
    Staff { tenant, .. }: Staff,
    uri: hyper::Uri,
) -> Answer {
    let which = http::query_param(&uri, "status").unwrap_or_else(|| "active".to_string());
    let (_, book) = read_orders(&pos, &tenant).await?;
    let orders = match which.as_str() {
        "active" => book.active,
        "recent" => book.recent,
        _ => {
            return Err(ErrorBody::with_message(
                ErrorCode::ValidationError,
                "status must be `active` or `recent`",
            )
            .into());
        }
    };
    let orders = orders.into_iter().map(BookOrder::into_order).collect();
    Ok(http::json(StatusCode::OK, &OrderList { orders }))
}
