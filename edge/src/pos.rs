//! Seed 002 endpoints: `GET /ws/restaurant-pos/{tenantId}` (WebSocket for POS and kitchen
//! displays) and its HTTP fallback `POST /api/orders`, `GET /api/orders?status=active`,
//! `PATCH /api/orders/{id}`, and the tenant's `PUT /api/pos/settings`. The edge checks, publishes
//! and fans out; the pos handler decides.

use crate::fanout::{Snapshot, SnapshotResult};
use crate::http::{self, Body};
use crate::publish::{Command, SocketPipeline, now_ms};
use crate::request::{self, Outcome};
use crate::server::Shared;
use crate::ws::{Conn, Handler};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use tablewire_nats::{resource, subject};
use tablewire_schemas::pos::{
    BookOrder, ClientFrame, Command as PosCommand, Order, OrderInput, OrderList, PosState,
    ServerFrame, Settings, StatusChange, SubmitRequest, TENANT_KEY, TenantOrders,
    check_idempotency_key, idempotency_state_key,
};
use tablewire_schemas::stored::StoredView;
use tablewire_schemas::{Claims, Domain, ErrorBody, ErrorCode, Origin};

/// Routes `/ws/restaurant-pos/{tenantId}`.
pub async fn route_ws(
    shared: &Arc<Shared>,
    mut request: Request<Incoming>,
    tenant: &str,
) -> (&'static str, Response<Body>) {
    let route = "/ws/restaurant-pos/{tenantId}";
    if request.method() != Method::GET {
        return (route, http::error_code(ErrorCode::MethodNotAllowed));
    }
    if let Err(e) = tablewire_nats::token::validate_id(tenant) {
        return (
            route,
            http::error(ErrorBody::with_message(
                ErrorCode::InvalidId,
                format!("tenant id: {e}"),
            )),
        );
    }
    let claims = match authenticate(shared, &request, true) {
        Ok(claims) => claims,
        Err(e) => return (route, http::error(e)),
    };
    if let Some(c) = &claims
        && c.tenant.as_deref() != Some(tenant)
    {
        shared.metrics.auth_failures.inc();
        return (
            route,
            http::error(ErrorBody::with_message(
                ErrorCode::TenantMismatch,
                "the token's tenant is not the tenant in the path",
            )),
        );
    }
    let handler = PosHandler {
        shared: shared.clone(),
        tenant: tenant.to_string(),
        claims,
        pipeline: SocketPipeline::default(),
    };
    (
        route,
        shared.upgrade(&mut request, "restaurant-pos", handler),
    )
}

/// What an `/api/…` request of this module is for.
#[derive(Debug, Clone, Copy)]
pub enum Api<'a> {
    /// `/api/orders`.
    Orders,
    /// `/api/orders/{id}`.
    Order(&'a str),
    /// `/api/pos/settings`.
    Settings,
}

/// Routes `/api/orders`, `/api/orders/{id}` and `/api/pos/settings`.
pub async fn route_api(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    api: Api<'_>,
) -> (&'static str, Response<Body>) {
    let route = match api {
        Api::Orders => "/api/orders",
        Api::Order(_) => "/api/orders/{id}",
        Api::Settings => "/api/pos/settings",
    };
    let claims = match authenticate(shared, &request, false) {
        Ok(Some(claims)) => claims,
        Ok(None) => {
            return (
                route,
                http::error(ErrorBody::with_message(
                    ErrorCode::Unauthorized,
                    "orders need a JWT that names the tenant",
                )),
            );
        }
        Err(e) => return (route, http::error(e)),
    };
    let Some(tenant) = claims.tenant.clone() else {
        return (
            route,
            http::error(ErrorBody::with_message(
                ErrorCode::Forbidden,
                "the token names no tenant",
            )),
        );
    };
    let method = request.method().clone();
    let response = match (method, api) {
        (Method::POST, Api::Orders) => submit_http(shared, request, &tenant, claims).await,
        (Method::GET, Api::Orders) => list(shared, &request, &tenant).await,
        (Method::PATCH, Api::Order(id)) => patch(shared, request, &tenant, id, claims).await,
        (Method::PUT, Api::Settings) => settings(shared, request, &tenant, claims).await,
        _ => http::error_code(ErrorCode::MethodNotAllowed),
    };
    (route, response)
}

/// The verified claims of the request's JWT (`Authorization: Bearer` or, for WebSockets,
/// `?token=`). The shared Bearer secret passes with no claims (a trusted backend).
fn authenticate<B>(
    shared: &Shared,
    request: &Request<B>,
    query_allowed: bool,
) -> Result<Option<Claims>, ErrorBody> {
    let header = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = match (header, query_allowed) {
        (Some(h), _) => shared.auth.check_header(Some(h)),
        (None, true) => match http::query_param(request, "token") {
            Some(token) => shared.auth.check_token(&token),
            None => shared.auth.check_header(None),
        },
        (None, false) => shared.auth.check_header(None),
    };
    principal.map(|p| p.claims()).inspect_err(|_| {
        shared.metrics.auth_failures.inc();
    })
}

/// Checks a submission; the key it goes to is the idempotency key's claim, or the tenant's order
/// book when it has none.
fn submit_command(
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
    shared: &Shared,
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
        shared,
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

async fn submit_http(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    tenant: &str,
    claims: Claims,
) -> Response<Body> {
    let header_key = http::header_str(&request, "idempotency-key").map(str::to_string);
    let body: SubmitRequest = match http::read_json(request, shared.config.max_message_bytes).await
    {
        Ok(body) => body,
        Err(e) => return http::error(e),
    };
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
    match request_reply(shared, tenant, TENANT_KEY, Some(claims), &command).await {
        Ok(frame) => http::json(StatusCode::CREATED, &frame["order"]),
        Err(e) => http::error(e),
    }
}

async fn patch(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    tenant: &str,
    order_id: &str,
    claims: Claims,
) -> Response<Body> {
    let change: StatusChange = match http::read_json(request, shared.config.max_message_bytes).await
    {
        Ok(change) => change,
        Err(e) => return http::error(e),
    };
    let command = PosCommand::UpdateStatus {
        order_id: order_id.to_string(),
        status: change.status,
        updated_by: change.updated_by.unwrap_or_else(|| claims.sub.clone()),
    };
    match request_reply(shared, tenant, TENANT_KEY, Some(claims), &command).await {
        Ok(frame) => http::json(StatusCode::OK, &frame),
        Err(e) => http::error(e),
    }
}

async fn settings(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    tenant: &str,
    claims: Claims,
) -> Response<Body> {
    let body: Settings = match http::read_json(request, shared.config.max_message_bytes).await {
        Ok(body) => body,
        Err(e) => return http::error(e),
    };
    let command = PosCommand::Configure {
        utc_offset_minutes: body.utc_offset_minutes,
    };
    match request_reply(shared, tenant, TENANT_KEY, Some(claims), &command).await {
        Ok(_) => http::json(StatusCode::OK, &body),
        Err(e) => http::error(e),
    }
}

/// Most order bodies an edge keeps (~0.5 KB each); past it, it forgets them all and reads
/// again.
const ORDER_BODIES_KEPT: usize = 20_000;

/// POS order bodies this edge has read (see [`BookOrder`]). A body never changes once written
/// (order ids are never reused within a tenant; status comes from the book), so each is read
/// from KV once per edge, not on every `sync_state`: a reconnecting kitchen costs one book read.
/// Except one stored by a worker that then lost the book's compare-and-set, which the worker
/// that won replaces: a kept body the book's reference does not take is read again.
#[derive(Default)]
pub struct OrderBodies {
    kept: std::sync::Mutex<std::collections::HashMap<(String, String), Arc<Order>>>,
}

impl OrderBodies {
    fn get(&self, tenant: &str, order_id: &str) -> Option<Arc<Order>> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get(&(tenant.to_string(), order_id.to_string()))
            .cloned()
    }

    fn keep(&self, tenant: &str, order: Order) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= ORDER_BODIES_KEPT {
            kept.clear();
        }
        kept.insert((tenant.to_string(), order.id.clone()), Arc::new(order));
    }
}

/// How long apart a fresh order's missing body is read again (doubling: 5 ms, then up to 155 ms
/// in all) before the order goes out without it.
const BODY_RETRY_DELAYS_MS: [u64; 5] = [5, 10, 20, 40, 80];
/// An order whose status changed this recently may have its body still on the way.
const FRESH_ORDER_MS: i64 = 10_000;

/// Reads the bodies of `ids` (of `tenant`'s book at `book_key`), keeping those found.
async fn fetch_bodies(
    shared: &Shared,
    tenant: &str,
    book_key: &str,
    ids: Vec<String>,
) -> Result<Vec<Order>, ErrorBody> {
    let bodies = futures::future::join_all(ids.iter().map(|id| {
        let key = resource::part_key(book_key, &TenantOrders::body_name(id));
        async move { shared.read_part(Domain::Pos, &key).await }
    }))
    .await;
    let mut found = Vec::with_capacity(bodies.len());
    for body in bodies {
        // A body KV no longer has (an order active for over a week) leaves the order without
        // its cart; one that does not parse likewise.
        if let Some(order) = body?.and_then(|b| serde_json::from_slice::<Order>(&b).ok()) {
            shared.order_bodies.keep(tenant, order.clone());
            found.push(order);
        }
    }
    Ok(found)
}

/// Attaches the bodies `fetch` finds for `wanted`. The handler sends an order's body just
/// before the book that names it, but to another stream: a book read in that moment may name a
/// body not stored yet (its write is acknowledged before anyone hears of the order). So a body
/// still missing from an order changed in the last [`FRESH_ORDER_MS`] is fetched again, after
/// each of [`BODY_RETRY_DELAYS_MS`], before the order goes out without its cart; older orders
/// without bodies (past `ORDER_BODY_TTL_MS`) are not waited for.
async fn attach_bodies<F, Fut>(
    book: &mut TenantOrders,
    mut wanted: Vec<String>,
    now_ms: i64,
    fetch: F,
) -> Result<(), ErrorBody>
where
    F: Fn(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Order>, ErrorBody>>,
{
    let mut delays = BODY_RETRY_DELAYS_MS.iter();
    loop {
        if !wanted.is_empty() {
            for body in fetch(wanted).await? {
                book.attach_body(&body);
            }
        }
        wanted = book.missing_bodies_changed_since(now_ms - FRESH_ORDER_MS);
        match delays.next() {
            Some(&ms) if !wanted.is_empty() => {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await
            }
            _ => return Ok(()),
        }
    }
}

/// A tenant's order book with its orders' bodies (fetched beside it, see [`BookOrder`]).
async fn read_orders(shared: &Shared, tenant: &str) -> Result<(u64, TenantOrders), ErrorBody> {
    let internal =
        |e: serde_json::Error| ErrorBody::with_message(ErrorCode::Internal, e.to_string());
    let (seq, mut book) = match shared.read_state(Domain::Pos, tenant, TENANT_KEY).await? {
        Some(bytes) => {
            let view: StoredView<'_> = serde_json::from_slice(&bytes).map_err(internal)?;
            match serde_json::from_str::<PosState>(view.state.get()).map_err(internal)? {
                PosState::Tenant(book) => (view.seq, book),
                PosState::Idempotency(_) => return Err(ErrorBody::new(ErrorCode::Internal)),
            }
        }
        None => return Ok((0, TenantOrders::default())),
    };
    for id in book.missing_bodies() {
        if let Some(body) = shared.order_bodies.get(tenant, &id) {
            book.attach_body(&body);
        }
    }
    // Not kept, or kept but not this order's (see `BookOrder::is_body`): read again.
    let wanted = book.missing_bodies();
    let book_key = resource::state_key(tenant, TENANT_KEY);
    attach_bodies(&mut book, wanted, now_ms(), |ids| {
        fetch_bodies(shared, tenant, &book_key, ids)
    })
    .await?;
    Ok((seq, book))
}

async fn list(shared: &Arc<Shared>, request: &Request<Incoming>, tenant: &str) -> Response<Body> {
    let which = http::query_param(request, "status").unwrap_or_else(|| "active".to_string());
    let book = match read_orders(shared, tenant).await {
        Ok((_, book)) => book,
        Err(e) => return http::error(e),
    };
    let orders = match which.as_str() {
        "active" => book.active,
        "recent" => book.recent,
        _ => {
            return http::error(ErrorBody::with_message(
                ErrorCode::ValidationError,
                "status must be `active` or `recent`",
            ));
        }
    };
    let orders = orders.into_iter().map(BookOrder::into_order).collect();
    http::json(StatusCode::OK, &OrderList { orders })
}

/// The `sync_state` frame of a tenant and the sequence it includes.
async fn snapshot(shared: &Arc<Shared>, tenant: &str) -> SnapshotResult {
    let (seq, book) = read_orders(shared, tenant).await?;
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
    shared: Arc<Shared>,
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
            edge: self.shared.id.clone(),
            conn: Some(conn.id),
            request: None,
        }
    }

    fn send_frame(&self, conn: &Conn, frame: &ServerFrame) {
        send_frame(conn, frame);
    }

    fn send_error(&self, conn: &Conn, error: ErrorBody) {
        send_error(&self.shared, conn, error);
    }
}

fn send_frame(conn: &Conn, frame: &ServerFrame) {
    if let Ok(json) = serde_json::to_vec(frame) {
        conn.send_json(&json);
    }
}

fn send_error(shared: &Shared, conn: &Conn, error: ErrorBody) {
    shared.metrics.error(error.code);
    send_frame(
        conn,
        &ServerFrame::Error {
            error,
            timestamp: now_ms(),
        },
    );
}

impl Handler for PosHandler {
    async fn on_open(&self, conn: &Arc<Conn>) {
        let shared = self.shared.clone();
        let tenant = self.tenant.clone();
        let snapshot: Snapshot = Arc::new(move || {
            let shared = shared.clone();
            let tenant = tenant.clone();
            Box::pin(async move { snapshot(&shared, &tenant).await })
        });
        self.shared
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
        let (shared, sender) = (self.shared.clone(), conn.clone());
        self.pipeline
            .send(
                &self.shared.publisher,
                Command {
                    domain: Domain::Pos,
                    tenant: &self.tenant,
                    key: &key,
                    client_id: None,
                    origin: self.origin(conn),
                    claims: self.claims.clone(),
                    command: &command,
                },
                move |e| send_error(&shared, &sender, e),
            )
            .await;
    }

    async fn on_close(&self, conn: &Arc<Conn>) {
        self.shared.fanout.leave(&self.subject(), conn.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(id: &str) -> Order {
        serde_json::from_value(
            serde_json::json!({"id": id, "orderNumber": "ORD-20261127-001",
            "tenantId": "t", "orderType": "takeout", "cart": {"items": []},
            "status": "pending", "createdAt": 1, "updatedAt": 1}),
        )
        .expect("order")
    }

    /// A book as readers find it: references only, every body to be fetched.
    fn stored_book(orders: &[Order]) -> TenantOrders {
        let book = TenantOrders {
            active: orders.iter().cloned().map(BookOrder::created).collect(),
            ..Default::default()
        };
        serde_json::from_str(&serde_json::to_string(&book).expect("book")).expect("read back")
    }

    const NOW: i64 = 1_800_000_000_000;

    fn order_changed(id: &str, ms_ago: i64) -> Order {
        let mut order = body(id);
        order.updated_at = NOW - ms_ago;
        order
    }

    #[tokio::test]
    async fn a_fresh_orders_body_not_stored_yet_is_read_again_until_it_is() {
        let fresh = order_changed("fresh", 50);
        let old = order_changed("old", 8 * 24 * 3600 * 1000);
        let mut book = stored_book(&[fresh.clone(), old.clone()]);
        let asked = std::sync::Mutex::new(Vec::new());
        let wanted = book.missing_bodies();
        attach_bodies(&mut book, wanted, NOW, |ids| {
            let mut asked = asked.lock().expect("lock");
            asked.push(ids.clone());
            // The fresh body is stored by the third read; the old one is gone for good.
            let found = if asked.len() >= 3 && ids.contains(&fresh.id) {
                vec![fresh.clone()]
            } else {
                Vec::new()
            };
            async move { Ok(found) }
        })
        .await
        .expect("attached");
        assert!(book.active[0].has_body(), "the fresh order has its cart");
        assert!(!book.active[1].has_body(), "the old order is shown without");
        let asked = asked.into_inner().expect("lock");
        assert_eq!(
            asked,
            vec![
                vec!["fresh".to_string(), "old".to_string()],
                vec!["fresh".to_string()],
                vec!["fresh".to_string()],
            ],
            "only the fresh order's body is read again, and not once it is found"
        );
    }

    #[tokio::test]
    async fn a_body_that_never_comes_is_waited_for_a_bounded_number_of_reads() {
        let mut book = stored_book(&[order_changed("lost", 0)]);
        let reads = std::sync::atomic::AtomicUsize::new(0);
        let wanted = book.missing_bodies();
        attach_bodies(&mut book, wanted, NOW, |_| {
            reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async { Ok(Vec::new()) }
        })
        .await
        .expect("no error");
        assert!(!book.active[0].has_body());
        assert_eq!(
            reads.into_inner(),
            1 + BODY_RETRY_DELAYS_MS.len(),
            "the first read and one after each delay"
        );
    }

    #[test]
    fn bodies_are_kept_per_tenant_and_forgotten_past_the_limit() {
        let bodies = OrderBodies::default();
        bodies.keep("a", body("order-1"));
        assert_eq!(
            bodies.get("a", "order-1").map(|o| o.id.clone()),
            Some("order-1".into())
        );
        assert!(
            bodies.get("b", "order-1").is_none(),
            "another tenant's order-1"
        );
        for n in 2..=ORDER_BODIES_KEPT {
            bodies.keep("a", body(&format!("order-{n}")));
        }
        assert!(bodies.get("a", "order-1").is_some());
        bodies.keep("a", body("order-next"));
        assert!(
            bodies.get("a", "order-1").is_none(),
            "all forgotten at the limit"
        );
        assert!(bodies.get("a", "order-next").is_some());
    }
}
