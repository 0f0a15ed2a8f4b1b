//! Seed 004's voice socket, `/voice-stream`: the same three ways to authenticate as the events
//! socket, then `voice:start`, `voice:audio` and `voice:end`, each published to the voice
//! session's key (1000 messages a minute). The session's events (`voice:transcript`,
//! `voice:gap`, errors) come back through the fan-out; the voice handler reassembles the audio
//! and asks the transcriber.

use crate::credentials::RestaurantToken;
use crate::events::{encode, timestamp};
use crate::fanout::Snapshot;
use crate::http;
use crate::limit::{ConnLimit, LimitClock};
use crate::node::Node;
use crate::publish::{Command, SocketPipeline};
use crate::upgrade::WebSocketUpgrade;
use crate::ws::{Conn, Handler, frame};
use axum::Router;
use axum::extract::{FromRef, State};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use serde_json::Value;
use std::sync::{Arc, Mutex, MutexGuard};
use tablewire_nats::{subject, token};
use tablewire_schemas::events::ServerFrame;
use tablewire_schemas::stored::StoredView;
use tablewire_schemas::voice::{ClientFrame, Command as VoiceCommand, MESSAGES_PER_MINUTE};
use tablewire_schemas::{Claims, Domain, ErrorBody, ErrorCode, Origin};
use tokio::task::JoinHandle;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The voice route.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Node>: FromRef<S>,
{
    Router::new().route("/voice-stream", get(socket))
}

async fn socket(
    State(node): State<Arc<Node>>,
    RestaurantToken(authenticated): RestaurantToken,
    upgrade: WebSocketUpgrade,
) -> Response {
    let handler = VoiceSocket {
        limit: ConnLimit::per_minute_on(MESSAGES_PER_MINUTE, node.config.rate_limit_clock.clone()),
        session: Mutex::new(match authenticated {
            Some((tenant, claims)) => Session::Ready {
                tenant,
                claims,
                current: None,
            },
            None => Session::Waiting,
        }),
        timer: Mutex::new(None),
        pipeline: SocketPipeline::default(),
        node,
    };
    upgrade.serve("voice", handler)
}

enum Session {
    Waiting,
    Ready {
        tenant: String,
        claims: Claims,
        /// The voice session in progress (its events are fanned out to this connection).
        current: Option<String>,
    },
    Refused,
}

struct VoiceSocket {
    node: Arc<Node>,
    limit: ConnLimit<LimitClock>,
    session: Mutex<Session>,
    timer: Mutex<Option<JoinHandle<()>>>,
    pipeline: SocketPipeline,
}

/// The voice socket's error frame, as [`tablewire_schemas::voice::error_frame`] builds it.
fn error_frame(error: ErrorBody) -> Bytes {
    encode(&tablewire_schemas::voice::error_frame(error, timestamp()))
}

fn send_error(node: &Node, conn: &Conn, error: ErrorBody) {
    node.metrics.error(error.code);
    conn.send(error_frame(error));
}

fn connected() -> Bytes {
    encode(&ServerFrame::Connected {
        timestamp: timestamp(),
    })
}

impl VoiceSocket {
    fn send_error(&self, conn: &Conn, error: ErrorBody) {
        send_error(&self.node, conn, error);
    }

    /// Refuses the connection's authentication (counted where it was decided).
    fn refuse(&self, conn: &Conn, error: ErrorBody) {
        *lock(&self.session) = Session::Refused;
        let reason = error.message.clone();
        self.send_error(conn, error);
        conn.close(frame::close::POLICY, &reason);
    }

    fn on_auth_message(&self, conn: &Arc<Conn>, text: &[u8]) {
        let token = match serde_json::from_slice::<ClientFrame>(text) {
            Ok(ClientFrame::Auth { token }) => token,
            _ => {
                let first = ErrorBody::with_message(
                    ErrorCode::Unauthorized,
                    "authenticate first: {\"type\":\"auth\",\"token\":\"…\"}",
                );
                return self.refuse(conn, self.node.auth.refuse(first));
            }
        };
        match self.node.auth.verify_restaurant(&token) {
            Ok((tenant, claims)) => {
                if let Some(timer) = lock(&self.timer).take() {
                    timer.abort();
                }
                *lock(&self.session) = Session::Ready {
                    tenant,
                    claims,
                    current: None,
                };
                conn.send(connected());
            }
            Err(e) => self.refuse(conn, e),
        }
    }

    /// Follows `session`'s events (leaving the previous session's).
    async fn follow(&self, conn: &Arc<Conn>, tenant: &str, session: &str) -> Result<(), ErrorBody> {
        token::validate_id(session).map_err(|e| {
            ErrorBody::with_message(ErrorCode::InvalidId, format!("session_id: {e}"))
        })?;
        let previous = match &mut *lock(&self.session) {
            Session::Ready { current, .. } => current.replace(session.to_string()),
            _ => None,
        };
        if previous.as_deref() == Some(session) {
            return Ok(());
        }
        if let Some(previous) = previous {
            self.node
                .fanout
                .leave(&subject::output(Domain::Voice, tenant, &previous), conn.id);
        }
        let node = self.node.clone();
        let (t, s) = (tenant.to_string(), session.to_string());
        // Voice sessions have no snapshot frame: a client only resumes after the stored seq.
        let snapshot: Snapshot = Arc::new(move || {
            let (node, t, s) = (node.clone(), t.clone(), s.clone());
            Box::pin(async move {
                let seq = match node.read_state(Domain::Voice, &t, &s).await? {
                    Some(bytes) => serde_json::from_slice::<StoredView<'_>>(&bytes)
                        .map(|v| v.seq)
                        .unwrap_or(0),
                    None => 0,
                };
                Ok((seq, Bytes::new()))
            })
        });
        self.node
            .fanout
            .join(
                subject::output(Domain::Voice, tenant, session),
                conn,
                snapshot,
            )
            .await
    }

    async fn publish(
        &self,
        conn: &Arc<Conn>,
        tenant: &str,
        claims: &Claims,
        session: &str,
        command: VoiceCommand,
    ) {
        // Transcripts and errors come from the handler: only a failed store needs an answer
        // from here (sent when it fails), so the next chunk is read while this one is stored.
        let (node, sender) = (self.node.clone(), conn.clone());
        self.pipeline
            .send(
                &self.node.publisher,
                Command {
                    domain: Domain::Voice,
                    tenant,
                    key: session,
                    client_id: None,
                    origin: Origin {
                        edge: self.node.id.clone(),
                        conn: Some(conn.id),
                        request: None,
                    },
                    claims: Some(claims.clone()),
                    command: &command,
                },
                move |e| send_error(&node, &sender, e),
            )
            .await;
    }

    async fn on_client_frame(&self, conn: &Arc<Conn>, tenant: &str, claims: &Claims, text: &[u8]) {
        let value: Value = match http::parse_json(text) {
            Ok(v) => v,
            Err(e) => return self.send_error(conn, e),
        };
        let frame = match serde_json::from_value::<ClientFrame>(value.clone()) {
            Ok(frame) => frame,
            Err(e) => {
                let error = match value.get("type").and_then(Value::as_str) {
                    Some("auth" | "ping" | "voice:start" | "voice:audio" | "voice:end") => {
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
        let current = match &*lock(&self.session) {
            Session::Ready { current, .. } => current.clone(),
            _ => None,
        };
        let result = match frame {
            ClientFrame::Ping => {
                conn.send(encode(&ServerFrame::Pong {
                    timestamp: timestamp(),
                }));
                Ok(())
            }
            ClientFrame::Auth { token } => match self.node.auth.verify_restaurant(&token) {
                Ok((other, _)) if other != tenant => Err(ErrorBody::with_message(
                    ErrorCode::TenantMismatch,
                    "a connection stays with the restaurant it authenticated for",
                )),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            },
            ClientFrame::Start { data } => {
                match self.follow(conn, tenant, &data.session_id).await {
                    Ok(()) => {
                        self.publish(
                            conn,
                            tenant,
                            claims,
                            &data.session_id,
                            VoiceCommand::Start {
                                language: data.language,
                            },
                        )
                        .await;
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            ClientFrame::Audio { data } => match current {
                None => Err(ErrorBody::with_message(
                    ErrorCode::Conflict,
                    "send voice:start before voice:audio",
                )),
                Some(session) => {
                    self.publish(
                        conn,
                        tenant,
                        claims,
                        &session,
                        VoiceCommand::Audio {
                            sequence: data.sequence,
                            audio: data.audio,
                        },
                    )
                    .await;
                    Ok(())
                }
            },
            // Also for a session started on an earlier connection (a client that reconnected).
            ClientFrame::End { data } => match self.follow(conn, tenant, &data.session_id).await {
                Ok(()) => {
                    self.publish(
                        conn,
                        tenant,
                        claims,
                        &data.session_id,
                        VoiceCommand::End {
                            duration: data.duration,
                        },
                    )
                    .await;
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        if let Err(e) = result {
            self.send_error(conn, e);
        }
    }
}

impl Handler for VoiceSocket {
    async fn on_open(&self, conn: &Arc<Conn>) {
        if matches!(&*lock(&self.session), Session::Ready { .. }) {
            conn.send(connected());
            return;
        }
        let (conn, node) = (conn.clone(), self.node.clone());
        let patience = node.config.auth_timeout;
        *lock(&self.timer) = Some(tokio::spawn(async move {
            tokio::time::sleep(patience).await;
            node.auth.refuse(ErrorBody::new(ErrorCode::AuthTimeout));
            node.metrics.error(ErrorCode::AuthTimeout);
            conn.send(error_frame(ErrorBody::new(ErrorCode::AuthTimeout)));
            conn.close(frame::close::POLICY, "authentication timed out");
        }));
    }

    async fn on_text(&self, conn: &Arc<Conn>, text: Bytes) {
        let ready = match &*lock(&self.session) {
            Session::Ready { tenant, claims, .. } => Some((tenant.clone(), claims.clone())),
            Session::Refused => return,
            Session::Waiting => None,
        };
        let Some((tenant, claims)) = ready else {
            return self.on_auth_message(conn, &text);
        };
        if let Err(wait_ms) = self.limit.check() {
            return self.send_error(
                conn,
                ErrorBody::with_message(
                    ErrorCode::RateLimited,
                    format!("at most {MESSAGES_PER_MINUTE} messages a minute"),
                )
                .retry_after(wait_ms),
            );
        }
        self.on_client_frame(conn, &tenant, &claims, &text).await;
    }

    async fn on_close(&self, conn: &Arc<Conn>) {
        if let Some(timer) = lock(&self.timer).take() {
            timer.abort();
        }
        if let Session::Ready {
            tenant,
            current: Some(session),
            ..
        } = std::mem::replace(&mut *lock(&self.session), Session::Refused)
        {
            self.node
                .fanout
                .leave(&subject::output(Domain::Voice, &tenant, &session), conn.id);
        }
    }
}
