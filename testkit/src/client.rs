//! WebSocket clients (fastwebsockets) and keep-alive HTTP/1.1 posters (hyper) for the benchmarks
//! and the tests, plus the few bytes of parsing needed to read sequence numbers and send times
//! out of frames without a JSON parser on the hot path.

use anyhow::Context;
use bytes::Bytes;
use fastwebsockets::{FragmentCollector, WebSocket, WebSocketRead, WebSocketWrite, handshake};
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;

/// Runs hyper's background connection tasks on tokio (for client handshakes).
pub struct SpawnExecutor;

impl<F> hyper::rt::Executor<F> for SpawnExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(fut);
    }
}

/// Stops the reader tasks at the end of a run. Each reader waits on its own one-shot channel: a
/// shared watch channel kept every waiting reader's waker in one list under one lock, taken
/// for each frame read.
#[derive(Default)]
pub struct StopAll(Vec<tokio::sync::oneshot::Sender<()>>);

impl StopAll {
    /// A new reader's stop signal.
    pub fn signal(&mut self) -> tokio::sync::oneshot::Receiver<()> {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        self.0.push(stop);
        stopped
    }

    /// Tells every reader to stop.
    pub fn stop(self) {
        for stop in self.0 {
            let _ = stop.send(());
        }
    }
}

/// Opens a WebSocket to `path` on `addr`.
pub async fn websocket(
    addr: SocketAddr,
    path: &str,
) -> anyhow::Result<FragmentCollector<TokioIo<Upgraded>>> {
    Ok(FragmentCollector::new(upgrade(addr, path).await?))
}

/// The read half of a WebSocket opened with [`websocket_split`].
pub type WsRead = WebSocketRead<ReadHalf<TokioIo<Upgraded>>>;
/// The write half of a WebSocket opened with [`websocket_split`].
pub type WsWrite = WebSocketWrite<WriteHalf<TokioIo<Upgraded>>>;

/// Opens a WebSocket to `path` on `addr`, split so that one task reads while another writes.
pub async fn websocket_split(addr: SocketAddr, path: &str) -> anyhow::Result<(WsRead, WsWrite)> {
    Ok(upgrade(addr, path).await?.split(tokio::io::split))
}

async fn upgrade(addr: SocketAddr, path: &str) -> anyhow::Result<WebSocket<TokioIo<Upgraded>>> {
    let stream = TcpStream::connect(addr).await.context("connect")?;
    stream.set_nodelay(true)?;
    let request = Request::builder()
        .method("GET")
        .uri(path)
        .header("Host", addr.to_string())
        .header(hyper::header::UPGRADE, "websocket")
        .header(hyper::header::CONNECTION, "upgrade")
        .header("Sec-WebSocket-Key", handshake::generate_key())
        .header("Sec-WebSocket-Version", "13")
        .body(Empty::<Bytes>::new())?;
    let (ws, _) = handshake::client(&SpawnExecutor, request, stream)
        .await
        .context("handshake")?;
    Ok(ws)
}

/// The WebSocket type [`websocket`] returns.
pub type Ws2 = FragmentCollector<TokioIo<Upgraded>>;

/// A keep-alive HTTP/1.1 connection for posting.
pub struct Poster {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl Poster {
    /// Connects.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Poster> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Poster {
            sender,
            host: addr.to_string(),
        })
    }

    /// Posts JSON and returns the status and body.
    pub async fn post(
        &mut self,
        path: &str,
        authorization: Option<&str>,
        body: Bytes,
    ) -> anyhow::Result<(u16, Bytes)> {
        self.sender.ready().await?;
        let mut request = Request::builder()
            .method("POST")
            .uri(path)
            .header("Host", &self.host)
            .header("Content-Type", "application/json");
        if let Some(auth) = authorization {
            request = request.header("Authorization", auth);
        }
        let response = self
            .sender
            .send_request(request.body(Full::new(body))?)
            .await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// Sends one request (`method`, `path`, `headers`, `body`) on a fresh connection and returns
/// the status and the body.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> anyhow::Result<(u16, Bytes)> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("Host", addr.to_string())
        .header("Content-Type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender.send_request(request.body(Full::new(body))?).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// GETs `path` on a fresh connection and returns the status and the body as text.
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = Request::builder()
        .uri(path)
        .header("Host", addr.to_string())
        .body(Empty::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The unsigned integer after `key` (e.g. `"seq":`) in `frame`.
pub fn number_after(frame: &[u8], key: &[u8]) -> Option<u64> {
    let start = memchr::memmem::find(frame, key)? + key.len();
    let digits = frame[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&frame[start..start + digits])
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_after_their_key() {
        let frame = br#"{"type":"update","update":{"displayData":{"t":12345}},"seq":77}"#;
        assert_eq!(number_after(frame, b"\"seq\":"), Some(77));
        assert_eq!(number_after(frame, b"\"t\":"), Some(12345));
        assert_eq!(number_after(frame, b"\"nope\":"), None);
    }
}
