//! The socket under an HTTP connection, plain TCP or TLS, as hyper serves it and as an upgraded
//! WebSocket keeps it; built by `server` on accept, served by [`super::conn::serve`].

use tokio::net::TcpStream;

/// How hyper's answer to a WebSocket upgrade starts.
const SWITCHING: &[u8] = b"HTTP/1.1 101 ";

/// The socket under an HTTP connection, as hyper serves it: plain TCP or TLS.
pub enum Io {
    /// `ws://` and `http://`, and what hyper wrote from a `101 Switching Protocols` answer on:
    /// held back so that it leaves with the upgraded socket's first frames, in one write and
    /// one segment, not two (a send and a client wake-up less per connect).
    Plain(TcpStream, Vec<u8>),
    /// `wss://` and `https://`.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Io {
    /// A plain TCP connection.
    pub fn plain(stream: TcpStream) -> Io {
        Io::Plain(stream, Vec::new())
    }
}

impl tokio::io::AsyncRead for Io {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s, _) => std::pin::Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Io {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(_, held) if !held.is_empty() || buf.starts_with(SWITCHING) => {
                held.extend_from_slice(buf);
                std::task::Poll::Ready(Ok(buf.len()))
            }
            Io::Plain(s, _) => std::pin::Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s, _) => std::pin::Pin::new(s).poll_flush(cx),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s, _) => std::pin::Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A connected pair of loopback sockets, (server end, client end), for the ws tests.
#[cfg(test)]
pub(crate) async fn socket_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let client = tokio::net::TcpStream::connect(listener.local_addr().expect("addr"))
        .await
        .expect("connect");
    let (server, _) = listener.accept().await.expect("accept");
    (server, client)
}
