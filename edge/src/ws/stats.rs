//! What a connection counts as it goes ([`Counters`], shared with the edge's metrics) and what
//! [`super::conn::serve`] reports of how it ended ([`Served`]).

use prometheus_client::metrics::counter::Counter;

/// Counters a connection updates as it goes (shared with the edge's metrics).
#[derive(Clone, Default)]
pub struct Counters {
    /// Messages received.
    pub messages_in: Counter,
    /// Frames sent.
    pub messages_out: Counter,
    /// Socket writes those frames took (frames per write shows how well sends batch).
    pub socket_writes: Counter,
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
