//! What an endpoint implements for its WebSocket connections ([`Handler`]) and what
//! [`super::conn::serve`] reports of how one ended ([`Served`]).

use super::conn::Conn;
use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;

/// What an endpoint does with its connections.
pub trait Handler: Send + Sync + 'static {
    /// After the upgrade, before anything is read: send the initial state, join topics.
    fn on_open(&self, conn: &Arc<Conn>) -> impl Future<Output = ()> + Send;
    /// A complete text message.
    fn on_text(&self, conn: &Arc<Conn>, text: Bytes) -> impl Future<Output = ()> + Send;
    /// A binary message. The default treats it like text (some embedded WebSocket libraries
    /// send JSON as binary); bytes that are not JSON get the endpoint's usual error frame.
    fn on_binary(&self, conn: &Arc<Conn>, data: Bytes) -> impl Future<Output = ()> + Send {
        self.on_text(conn, data)
    }
    /// The connection ended, however it ended.
    fn on_close(&self, conn: &Arc<Conn>) -> impl Future<Output = ()> + Send;
}

/// How a connection ended, for metrics and logs.
#[derive(Debug, Default)]
pub struct Served {
    /// The close code the edge sent, if it sent one.
    pub close_code: Option<u16>,
    /// Whether the peer started the close.
    pub peer_closed: bool,
    /// The close code of a protocol error, if one ended it.
    pub protocol_error: Option<u16>,
    /// Whether code serving it panicked (the handler, the decoder, or the socket loop).
    pub panicked: bool,
}
