//! Seed 004 endpoints: the restaurant events socket on `/` and `/ws` (JWT in the
//! `Authorization` header, a `token` query parameter, or a first `{"type":"auth"}` message
//! within the auth timeout), and `POST /api/events`, where a backend with a service JWT
//! publishes an event to its restaurant's feed. The restaurant always comes from the token.
//! Events reach clients through the [`hub`]; what each wants is kept in [`subscription`].

pub mod hub;
pub mod subscription;

use crate::credentials::{Bearer, RestaurantToken};
use crate::http::{self, Answer, IdempotencyKey};
use crate::limit::{ConnLimit, LimitClock};
use crate::node::Node;
use crate::publish::Command;
use crate::upgrade::WebSocketUpgrade;
use crate::ws::{Conn, Handler, frame};
use axum::Router;
use axum::extract::{FromRef, Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use hub::{Hub, Member};
use hyper::StatusCode;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tablewire_nats::token;
use tablewire_schemas::envelope::role;
use tablewire_schemas::events::{
    ClientFrame, Command as EventsCommand, FEED_KEY, MESSAGES_PER_MINUTE, PublishAccepted,
    PublishRequest, ServerFrame, Subscriptions as SubscriptionList, is_event_name,
};
use tablewire_schemas::{Claims, Domain, ErrorBody, ErrorCode, Origin};
use tokio::task::JoinHandle;

/// A client that connects again within this long after its last connection closed counts as
/// a reconnect.
const RECONNECT_WINDOW: Duration = Duration::from_secs(60);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The events side of one edge: the fan-out hub and who left recently (for the reconnect
/// count).
pub struct EventsEdge {
    node: Arc<Node>,
    /// The fan-out.
    pub hub: Arc<Hub>,
    recently_closed: Mutex<HashMap<(String, String), Instant>>,
}

/// The seed 004 routes.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Node>: FromRef<S>,
    Arc<EventsEdge>: FromRef<S>,
{
    Router::new()
        .route("/", get(socket))
        .route("/ws", get(socket))
        .route("/api/events", post(publish))
}

impl EventsEdge {
    /// The events side of `node`. Events published while NATS was away are lost to this edge:
    /// its events-socket clients, whose feed has no snapshot, are then told that events may be
    /// missing.
    pub fn start(node: Arc<Node>) -> Arc<EventsEdge> {
        let hub = Hub::new(
            node.client.clone(),
            node.metrics.clone(),
            node.config.bus_timeout,
        );
        let told = hub.clone();
        node.on_reconnect(Box::new(move || {
            told.tell_everyone(&error_frame(ErrorBody::new(ErrorCode::EventsMissed)));
        }));
        Arc::new(EventsEdge {
            node,
            hub,
            recently_closed: Mutex::new(HashMap::new()),
        })
    }

    fn opened(&self, tenant: &str, sub: &str) -> bool {
        lock(&self.recently_closed)
            .remove(&(tenant.to_string(), sub.to_string()))
            .is_some_and(|at| at.elapsed() < RECONNECT_WINDOW)
    }

    fn closed(&self, tenant: &str, sub: &str) {
        let mut recent = lock(&self.recently_closed);
        if recent.len() >= 100_000 {
            recent.retain(|_, at| at.elapsed() < RECONNECT_WINDOW);
        }
        recent.insert((tenant.to_string(), sub.to_string()), Instant::now());
    }
}

/// RFC 3339 in UTC with milliseconds, as seed 004 writes timestamps.
pub fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn encode(frame: &ServerFrame) -> Bytes {
    frame::text(&serde_json::to_vec(frame).unwrap_or_default())
}

/// The events socket's error frame, as [`tablewire_schemas::events::error_frame`] builds it.
pub(crate) fn error_frame(error: ErrorBody) -> Bytes {
    encode(&tablewire_schemas::events::error_frame(error, timestamp()))
}

async fn socket(
    State(events): State<Arc<EventsEdge>>,
    RestaurantToken(authenticated): RestaurantToken,
    upgrade: WebSocketUpgrade,
) -> Response {
    let handler = EventsSocket {
        limit: ConnLimit::per_minute_on(
            MESSAGES_PER_MINUTE,
            events.node.config.rate_limit_clock.clone(),
        ),
        session: Mutex::new(match authenticated {
            Some((tenant, claims)) => Session::Authenticated(tenant, claims),
            None => Session::Waiting,
        }),
        timer: Mutex::new(None),
        events,
    };
    upgrade.serve("events", handler)
}

enum Session {
    /// No token yet: the first message must be `auth`.
    Waiting,
    /// Authenticated with the upgrade request; joins its feed on open.
    Authenticated(String, Claims),
    /// On its restaurant's feed.
    Ready {
        tenant: String,
        sub: String,
        member: Arc<Member>,
    },
    /// Refused; closing.
    Refused,
}

/// One events WebSocket.
struct EventsSocket {
    events: Arc<EventsEdge>,
    limit: ConnLimit<LimitClock>,
    session: Mutex<Session>,
    timer: Mutex<Option<JoinHandle<()>>>,
}

impl EventsSocket {
    fn send_error(&self, conn: &Conn, error: ErrorBody) {
        self.events.node.metrics.error(error.code);
        conn.send(error_frame(error));
    }

    /// Refuses the connection's authentication (counted where it was decided).
    fn refuse(&self, conn: &Conn, error: ErrorBody) {
        *lock(&self.session) = Session::Refused;
        let reason = error.message.clone();
        self.send_error(conn, error);
        conn.close(frame::close::POLICY, &reason);
    }

    /// Joins the token's restaurant feed and says `connected`.
    async fn start(&self, conn: &Arc<Conn>, tenant: String, claims: Claims) {
        if let Some(timer) = lock(&self.timer).take() {
            timer.abort();
        }
        let events = &self.events;
        if events.opened(&tenant, &claims.sub) {
            events.node.metrics.events_reconnects.inc();
        }
        let member = Member::new(conn.clone());
        *lock(&self.session) = Session::Ready {
            tenant: tenant.clone(),
            sub: claims.sub.clone(),
            member: member.clone(),
        };
        let connected = encode(&ServerFrame::Connected {
            timestamp: timestamp(),
        });
        if let Err(e) = events.hub.join(&tenant, member, connected).await {
            self.send_error(conn, e);
            conn.close(frame::close::SERVER_ERROR, "event bus unavailable");
        }
    }

    async fn on_auth_message(&self, conn: &Arc<Conn>, text: &[u8]) {
        let token = match serde_json::from_slice::<ClientFrame>(text) {
            Ok(ClientFrame::Auth { token }) => token,
            _ => {
                let first = ErrorBody::with_message(
                    ErrorCode::Unauthorized,
                    "authenticate first: {\"type\":\"auth\",\"token\":\"…\"}",
                );
                return self.refuse(conn, self.events.node.auth.refuse(first));
            }
        };
        match self.events.node.auth.verify_restaurant(&token) {
            Ok((tenant, claims)) => self.start(conn, tenant, claims).await,
            Err(e) => self.refuse(conn, e),
        }
    }

    fn on_client_frame(&self, conn: &Arc<Conn>, member: &Member, tenant: &str, text: &[u8]) {
        let value: Value = match http::parse_json(text) {
            Ok(v) => v,
            Err(e) => return self.send_error(conn, e),
        };
        let frame = match serde_json::from_value::<ClientFrame>(value.clone()) {
            Ok(frame) => frame,
            Err(e) => {
                let error = match value.get("type").and_then(Value::as_str) {
                    Some("auth" | "subscribe" | "unsubscribe" | "ping") => {
                        ErrorBody::with_message(ErrorCode::InvalidMessage, e.to_string())
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
        let ack = |subscribed: bool| {
            move |subs: &subscription::Subscriptions| {
                let data = SubscriptionList {
                    events: subs.events(),
                };
                let timestamp = timestamp();
                encode(&if subscribed {
                    ServerFrame::Subscribed { data, timestamp }
                } else {
                    ServerFrame::Unsubscribed { data, timestamp }
                })
            }
        };
        let result = match frame {
            ClientFrame::Ping => {
                conn.send(encode(&ServerFrame::Pong {
                    timestamp: timestamp(),
                }));
                Ok(())
            }
            ClientFrame::Subscribe { events, filters } => {
                member.update(|subs| subs.subscribe(&events, filters.as_ref()), ack(true))
            }
            ClientFrame::Unsubscribe { events } => {
                member.update(|subs| subs.unsubscribe(&events), ack(false))
            }
            // Already authenticated: a repeated `auth` must name the same restaurant.
            ClientFrame::Auth { token } => match self.events.node.auth.verify_restaurant(&token) {
                Ok((other, _)) if other != tenant => Err(ErrorBody::with_message(
                    ErrorCode::TenantMismatch,
                    "a connection stays with the restaurant it authenticated for",
                )),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            },
        };
        if let Err(e) = result {
            self.send_error(conn, e);
        }
    }
}

impl Handler for EventsSocket {
    async fn on_open(&self, conn: &Arc<Conn>) {
        let authenticated = match std::mem::replace(&mut *lock(&self.session), Session::Waiting) {
            Session::Authenticated(tenant, claims) => Some((tenant, claims)),
            _ => None,
        };
        match authenticated {
            Some((tenant, claims)) => self.start(conn, tenant, claims).await,
            None => {
                let (conn, node) = (conn.clone(), self.events.node.clone());
                let patience = node.config.auth_timeout;
                *lock(&self.timer) = Some(tokio::spawn(async move {
                    tokio::time::sleep(patience).await;
                    node.auth.refuse(ErrorBody::new(ErrorCode::AuthTimeout));
                    node.metrics.error(ErrorCode::AuthTimeout);
                    conn.send(error_frame(ErrorBody::new(ErrorCode::AuthTimeout)));
                    conn.close(frame::close::POLICY, "authentication timed out");
                }));
            }
        }
    }

    async fn on_text(&self, conn: &Arc<Conn>, text: Bytes) {
        let started = Instant::now();
        let ready = match &*lock(&self.session) {
            Session::Ready { tenant, member, .. } => Some((tenant.clone(), member.clone())),
            Session::Refused => return,
            _ => None,
        };
        match ready {
            None => self.on_auth_message(conn, &text).await,
            Some((tenant, member)) => match self.limit.check() {
                Err(wait_ms) => self.send_error(
                    conn,
                    ErrorBody::with_message(
                        ErrorCode::RateLimited,
                        format!("at most {MESSAGES_PER_MINUTE} messages a minute"),
                    )
                    .retry_after(wait_ms),
                ),
                Ok(()) => self.on_client_frame(conn, &member, &tenant, &text),
            },
        }
        self.events
            .node
            .metrics
            .events_processing
            .observe(started.elapsed().as_secs_f64());
    }

    async fn on_close(&self, conn: &Arc<Conn>) {
        if let Some(timer) = lock(&self.timer).take() {
            timer.abort();
        }
        let session = std::mem::replace(&mut *lock(&self.session), Session::Refused);
        if let Session::Ready { tenant, sub, .. } = session {
            self.events.hub.leave(&tenant, conn.id);
            self.events.closed(&tenant, &sub);
        }
    }
}

/// `POST /api/events`: `{"type": "table:updated", "data": {...}}` with a service (or admin)
/// JWT; the event goes to the token's restaurant feed. An `Idempotency-Key` makes retries safe.
async fn publish(
    State(node): State<Arc<Node>>,
    Bearer(principal): Bearer,
    IdempotencyKey(client_id): IdempotencyKey,
    request: Request,
) -> Answer {
    let forbidden = |why: &str| ErrorBody::with_message(ErrorCode::Forbidden, why);
    let claims = principal
        .claims()
        .ok_or_else(|| forbidden("publishing events needs a service JWT naming the restaurant"))?;
    if !claims.has_role(&[role::SERVICE, role::ADMIN]) {
        return Err(forbidden(
            "publishing events needs a token with role \"service\" or \"admin\"",
        )
        .into());
    }
    let tenant = match claims.tenant.clone() {
        Some(t) if token::validate_id(&t).is_ok() => t,
        _ => return Err(forbidden("the token names no restaurant").into()),
    };
    let body: PublishRequest = http::read_json(request, node.config.max_message_bytes).await?;
    if !is_event_name(&body.kind) {
        return Err(ErrorBody::with_message(
            ErrorCode::ValidationError,
            "\"type\" is an event name like \"table:updated\"",
        )
        .into());
    }
    let command = EventsCommand::Publish {
        event: body.kind,
        data: body.data,
    };
    // Answered once the feed applied it (or refused it: the tenant's rate), never before.
    let accepted = crate::request::apply(
        &node,
        Command {
            domain: Domain::Events,
            tenant: &tenant,
            key: FEED_KEY,
            client_id: client_id.as_deref(),
            origin: Origin::default(),
            claims: Some(claims),
            command: &command,
        },
    )
    .await?;
    Ok(http::json(
        StatusCode::OK,
        &PublishAccepted {
            success: true,
            message_id: accepted.message_id,
            duplicate: accepted.duplicate,
        },
    ))
}
