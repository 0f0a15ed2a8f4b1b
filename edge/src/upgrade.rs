//! The WebSocket upgrade as an extractor: a route takes a [`WebSocketUpgrade`], checks what it
//! must, then [`serve`](WebSocketUpgrade::serve)s the socket with its `ws::Handler` on the
//! edge's own frame decoder and connection machinery ([`crate::ws`]), with permessage-deflate
//! when the client offers it and the edge allows it ([`crate::ws::deflate::negotiate`]).

use crate::admission::Pass;
use crate::http::{self, Body};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::ws::{self, Handler, Io, deflate, frame};
use axum::extract::{FromRef, FromRequestParts};
use axum::response::Response;
use fastwebsockets::upgrade::UpgradeFut;
use hyper::Request;
use hyper::http::request::Parts;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use tablewire_schemas::{ErrorBody, ErrorCode};
use tracing::{debug, warn};

/// What became of the request's WebSocket handshake.
enum Handshake {
    /// Not an upgrade request (`426`).
    NotRequested,
    /// An upgrade request that cannot be upgraded (`400 PROTOCOL_ERROR`).
    Refused(String),
    /// The `101` answer and the socket once it is sent; with permessage-deflate when it was
    /// negotiated.
    Ready(Response, UpgradeFut, Option<deflate::Deflate>),
}

/// A request's WebSocket upgrade, answered only when the route [`serve`](Self::serve)s it.
pub struct WebSocketUpgrade {
    node: Arc<Node>,
    handshake: Handshake,
    /// The connection's admission (its count against the connection caps) lasts as long as
    /// the socket, not the HTTP exchange that upgraded it.
    admitted: Option<Arc<Pass>>,
}

impl<S> FromRequestParts<S> for WebSocketUpgrade
where
    S: Send + Sync,
    Arc<Node>: FromRef<S>,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Infallible> {
        // fastwebsockets reads a request: lend it the headers and the upgrade handle.
        let mut request = Request::new(());
        std::mem::swap(request.headers_mut(), &mut parts.headers);
        let node = Arc::<Node>::from_ref(state);
        let handshake = if fastwebsockets::upgrade::is_upgrade_request(&request) {
            if let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() {
                request.extensions_mut().insert(on_upgrade);
            }
            let compression = node.config.permessage_deflate.then(|| {
                let offers = request
                    .headers()
                    .get_all(hyper::header::SEC_WEBSOCKET_EXTENSIONS);
                deflate::negotiate(offers.iter().map(|v| v.as_bytes()))
            });
            match fastwebsockets::upgrade::upgrade(&mut request) {
                Ok((mut response, socket)) => {
                    let deflate = match compression.flatten() {
                        Some(answer) => match answer.parse() {
                            Ok(value) => {
                                response
                                    .headers_mut()
                                    .insert(hyper::header::SEC_WEBSOCKET_EXTENSIONS, value);
                                Some(deflate::Deflate {
                                    threshold: node.config.deflate_threshold_bytes,
                                })
                            }
                            Err(_) => None,
                        },
                        None => None,
                    };
                    Handshake::Ready(response.map(Body::new), socket, deflate)
                }
                Err(e) => Handshake::Refused(e.to_string()),
            }
        } else {
            Handshake::NotRequested
        };
        std::mem::swap(request.headers_mut(), &mut parts.headers);
        Ok(WebSocketUpgrade {
            node,
            handshake,
            admitted: parts.extensions.get::<Arc<Pass>>().cloned(),
        })
    }
}

impl WebSocketUpgrade {
    /// Answers the upgrade (`101`) and serves the socket with `handler`, counted under
    /// `endpoint`; or answers why not (draining, not an upgrade, a bad handshake).
    pub fn serve<H: Handler>(self, endpoint: &'static str, handler: H) -> Response {
        let node = self.node;
        if node.draining() {
            return http::error_code(ErrorCode::Draining);
        }
        let (response, socket, deflate) = match self.handshake {
            Handshake::NotRequested => return http::error_code(ErrorCode::UpgradeRequired),
            Handshake::Refused(why) => {
                return http::error(ErrorBody::with_message(ErrorCode::ProtocolError, why));
            }
            Handshake::Ready(response, socket, deflate) => (response, socket, deflate),
        };
        let label = Metrics::endpoint(endpoint);
        let counters = ws::Counters {
            messages_in: node.metrics.messages_in.get_or_create(&label).clone(),
            messages_out: node.metrics.messages_out.get_or_create(&label).clone(),
            socket_writes: node.metrics.socket_writes.clone(),
        };
        let conn = node
            .conns
            .open(endpoint, node.config.max_queued_bytes, counters, deflate);
        let lease = ws::Lease::new(node.conns.clone(), conn, handler);
        let admitted = self.admitted;
        tokio::spawn(async move {
            let _admitted = admitted;
            let upgraded = match socket.await {
                Ok(ws) => ws.into_inner().into_inner(),
                Err(e) => {
                    debug!(error = %e, "upgrade did not complete");
                    return;
                }
            };
            let Ok(parts) = upgraded.downcast::<TokioIo<Io>>() else {
                warn!("upgraded connection of an unexpected type");
                return;
            };
            node.metrics.connections_opened.get_or_create(&label).inc();
            let gauge = node.metrics.connections.get_or_create(&label).clone();
            // Not needed past here; the connection may live for days.
            drop(label);
            let served = lease
                .serve(
                    parts.io.into_inner(),
                    parts.read_buf,
                    node.config.max_message_bytes,
                    &gauge,
                )
                .await;
            if served.panicked {
                warn!(endpoint, "a connection task panicked; closed with 1011");
                node.metrics.connection_panics.inc();
                node.metrics.error(ErrorCode::Internal);
            }
            if let Some(code) = served.protocol_error {
                node.metrics.error(match code {
                    frame::close::TOO_BIG => ErrorCode::MessageTooBig,
                    frame::close::INVALID_PAYLOAD => ErrorCode::InvalidUtf8,
                    _ => ErrorCode::ProtocolError,
                });
            }
        });
        response
    }
}
