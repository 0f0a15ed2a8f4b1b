//! One WebSocket connection: the [`Conn`] handle that fan-out, replies and endpoints send frames
//! through, and [`serve`], the single task that owns the socket. The task waits for either
//! readable bytes or queued frames, so an idle connection is one parked task, a small handle
//! and no buffers. On plain TCP, a send to a connection with nothing queued is written straight
//! to the socket by the sender (no task wake-up); only what the socket does not take is queued
//! for the task. A connection that negotiated permessage-deflate has its larger frames
//! compressed on the way in to [`Conn::send_frames`] ([`super::deflate`]).

use super::deflate::Deflate;
use super::frame::{self, Decoder, Message};
use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use std::collections::VecDeque;
use std::future::Future;
use std::io::ErrorKind;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

pub use super::io::Io;
pub use super::stats::{Counters, Served};
use tokio::sync::Notify;

/// Longest the `101` answer waits for the frames the opening sends ([`Handler::on_open`]).
const HOLD_101: Duration = Duration::from_millis(250);

/// The socket of an upgraded connection. Plain TCP is shared with the [`Conn`] so senders can
/// write to it directly.
enum Socket {
    Plain(Arc<TcpStream>),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Socket {
    /// Reads what is available into `buf`. Cancel-safe: bytes are only taken once they are
    /// there, so it can sit in a `select!`. The buffer grows only when there is something to
    /// read.
    async fn read_into(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        match self {
            Socket::Plain(stream) => loop {
                // Waits in the socket's one reader slot, not in its list of `readable()`
                // waiters: the slot keeps the waker of the last task that waited there, and
                // until the upgrade that was hyper's connection task, whose memory (2.8 KiB, a
                // task is freed only when its last waker is) stayed allocated for the life of
                // the socket. Waiting here replaces that waker with this task's.
                std::future::poll_fn(|cx| stream.poll_read_ready(cx)).await?;
                buf.reserve(4096);
                let room = buf.capacity() - buf.len();
                // A read that did not fill the room emptied the socket: its readiness is cleared
                // now, as a `WouldBlock` would, instead of by one more read that finds nothing
                // (a syscall per message saved). Bytes arriving later raise readiness again.
                let mut drained = 0;
                let read = stream.try_io(Interest::READABLE, || {
                    let n = stream.try_read_buf(buf)?;
                    if n > 0 && n < room {
                        drained = n;
                        return Err(ErrorKind::WouldBlock.into());
                    }
                    Ok(n)
                });
                match read {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock && drained > 0 => {
                        return Ok(drained);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            },
            Socket::Tls(stream) => {
                buf.reserve(4096);
                stream.read_buf(buf).await
            }
        }
    }

    async fn write_all(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        match self {
            Socket::Plain(stream) => {
                while !data.is_empty() {
                    stream.writable().await?;
                    match stream.try_write(data) {
                        Ok(0) => return Err(ErrorKind::WriteZero.into()),
                        Ok(n) => data = &data[n..],
                        Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Socket::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
        }
    }

    async fn shutdown(&mut self) {
        match self {
            Socket::Plain(s) => {
                let _ = socket2::SockRef::from(s.as_ref()).shutdown(std::net::Shutdown::Write);
            }
            Socket::Tls(s) => {
                let _ = s.shutdown().await;
            }
        }
    }
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    bytes: usize,
    close: Option<(u16, String)>,
    closed: bool,
    /// The connection task holds frames taken from the queue and is writing them.
    writing: bool,
    /// The plain TCP socket, for senders to write to while nothing is queued.
    direct: Option<Arc<TcpStream>>,
}

/// The handle of one connection. Shared behind an `Arc`; sending never blocks.
pub struct Conn {
    /// Unique on this edge.
    pub id: u64,
    /// Which endpoint it is on (a metrics label).
    pub endpoint: &'static str,
    queue: Mutex<Queue>,
    notify: Notify,
    /// Set by any frame from the peer, cleared by each heartbeat.
    alive: AtomicBool,
    max_queued: usize,
    counters: Counters,
    /// permessage-deflate, when the client negotiated it.
    deflate: Option<Deflate>,
}

impl Conn {
    /// A new connection handle; `max_queued` bytes may wait for a slow reader before it is
    /// closed with 1013.
    pub fn new(id: u64, endpoint: &'static str, max_queued: usize, counters: Counters) -> Self {
        Conn {
            id,
            endpoint,
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
            alive: AtomicBool::new(true),
            max_queued,
            counters,
            deflate: None,
        }
    }

    /// The same handle for a connection that negotiated permessage-deflate (`Some`).
    pub fn deflating(mut self, deflate: Option<Deflate>) -> Self {
        self.deflate = deflate;
        self
    }

    /// Whether permessage-deflate was negotiated.
    pub fn deflate(&self) -> Option<Deflate> {
        self.deflate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends one encoded frame. False when the connection is closing.
    pub fn send(&self, frame: Bytes) -> bool {
        self.send_frames(frame, 1)
    }

    /// Sends `count` encoded frames laid end to end in `data`, in one write when possible.
    /// False when the connection is closing.
    pub fn send_frames(&self, mut data: Bytes, count: u64) -> bool {
        if let Some(deflate) = &self.deflate {
            data = deflate.encode(data);
        }
        let mut q = self.lock();
        if q.closed || q.close.is_some() {
            return false;
        }
        if q.frames.is_empty()
            && !q.writing
            && let Some(stream) = &q.direct
        {
            match stream.try_write(&data) {
                Ok(n) if n == data.len() => {
                    self.counters.messages_out.inc_by(count);
                    self.counters.socket_writes.inc();
                    return true;
                }
                Ok(n) => data = data.slice(n..),
                // Full socket buffer or an error: the task writes (and sees the error).
                Err(_) => {}
            }
        }
        if q.bytes + data.len() > self.max_queued {
            q.frames.clear();
            q.bytes = 0;
            q.close = Some((
                frame::close::TRY_AGAIN_LATER,
                "client reads too slowly; reconnect".into(),
            ));
            drop(q);
            self.notify.notify_one();
            return false;
        }
        q.bytes += data.len();
        q.frames.push_back(data);
        drop(q);
        self.counters.messages_out.inc_by(count);
        self.notify.notify_one();
        true
    }

    /// Sends a text frame with this JSON.
    pub fn send_json(&self, json: &[u8]) -> bool {
        self.send(frame::text(json))
    }

    /// Closes the connection after what is queued, with a close code and reason.
    pub fn close(&self, code: u16, reason: &str) {
        let mut q = self.lock();
        if q.close.is_none() && !q.closed {
            q.close = Some((code, reason.to_string()));
        }
        drop(q);
        self.notify.notify_one();
    }

    /// Whether the connection is closed or closing.
    pub fn is_closing(&self) -> bool {
        let q = self.lock();
        q.closed || q.close.is_some()
    }

    /// The heartbeat: true when the peer was heard from since the last call.
    pub fn take_alive(&self) -> bool {
        self.alive.swap(false, Ordering::Relaxed)
    }

    fn touch(&self) {
        self.alive.store(true, Ordering::Relaxed);
    }

    /// Lets senders write to `stream`, once the task has written `head` (the held `101`).
    fn attach(&self, stream: Arc<TcpStream>, head: Vec<u8>) {
        let mut q = self.lock();
        q.direct = Some(stream);
        if !head.is_empty() {
            q.bytes += head.len();
            q.frames.push_back(head.into());
            drop(q);
            self.notify.notify_one();
        }
    }

    /// Takes what is queued; until [`finish_write`](Self::finish_write), senders queue too.
    pub(crate) fn take_pending(&self) -> (Vec<Bytes>, Option<(u16, String)>) {
        let mut q = self.lock();
        let frames: Vec<Bytes> = q.frames.drain(..).collect();
        q.bytes = 0;
        q.writing = !frames.is_empty();
        let close = q.close.take();
        if close.is_some() {
            q.closed = true;
            q.direct = None;
        }
        (frames, close)
    }

    /// What is queued, taken unless a close waits behind it (the task then writes both).
    fn take_unless_closing(&self) -> Vec<Bytes> {
        let mut q = self.lock();
        if q.close.is_some() || q.closed {
            return Vec::new();
        }
        q.bytes = 0;
        q.writing = !q.frames.is_empty();
        q.frames.drain(..).collect()
    }

    fn finish_write(&self) {
        self.lock().writing = false;
    }

    pub(crate) fn mark_closed(&self) {
        let mut q = self.lock();
        q.closed = true;
        q.frames.clear();
        q.bytes = 0;
        q.direct = None;
    }
}

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

/// Runs a connection until it closes; the caller then runs [`Handler::on_close`] (see
/// [`super::Lease`]). `leftover` are bytes read with the HTTP upgrade. Never panics: a panic in
/// the handler or the decoder closes the connection with 1011 and is reported in
/// [`Served::panicked`]; a panic anywhere else drops the socket.
pub async fn serve<H: Handler>(
    io: Io,
    leftover: Bytes,
    conn: Arc<Conn>,
    handler: &H,
    max_message: usize,
) -> Served {
    let mut served = Served::default();
    let run = AssertUnwindSafe(run(io, leftover, &conn, handler, max_message, &mut served));
    if run.catch_unwind().await.is_err() {
        served.panicked = true;
    }
    conn.mark_closed();
    served
}

async fn run<H: Handler>(
    io: Io,
    leftover: Bytes,
    conn: &Arc<Conn>,
    handler: &H,
    max_message: usize,
    served: &mut Served,
) {
    let mut socket = match io {
        Io::Plain(stream, head) => {
            let stream = Arc::new(stream);
            conn.attach(stream.clone(), head);
            Socket::Plain(stream)
        }
        Io::Tls(stream) => Socket::Tls(stream),
    };
    let mut decoder = Decoder::new(max_message);
    if conn.deflate.is_some() {
        decoder = decoder.inflating();
    }
    decoder.buffer.extend_from_slice(&leftover);
    // `leftover` is a view into hyper's read buffer (kilobytes): an async fn keeps its
    // arguments for its whole life, so let go of it now, not when the connection ends.
    drop(leftover);
    decoder.shrink_if_idle();
    // Boxed: the opening work (snapshot, subscriptions) is large and done once; a parked
    // connection's task should not carry room for it.
    // In a block of its own: the finished opening's box (about 1 KiB) is freed here, not held
    // for as long as the connection lives.
    let open_failed = {
        let mut opening = AssertUnwindSafe(Box::pin(handler.on_open(conn))).catch_unwind();
        // The held `101` leaves with the frames the opening sends, unless the opening is slow.
        // Boxed like the opening: a parked connection's task should not carry room for the timer.
        match Box::pin(tokio::time::timeout(HOLD_101, &mut opening)).await {
            Ok(opened) => opened.is_err(),
            Err(_) => {
                let early = Box::pin(write_frames(&mut socket, conn, conn.take_unless_closing()));
                if early.await.is_err() {
                    return;
                }
                opening.await.is_err()
            }
        }
    };
    if open_failed {
        failed(conn, &mut decoder, served);
    }
    'run: loop {
        let delivered = AssertUnwindSafe(deliver(&mut decoder, conn, handler, served));
        if delivered.catch_unwind().await.is_err() {
            failed(conn, &mut decoder, served);
        }
        decoder.shrink_if_idle();
        let reading = !conn.is_closing();
        tokio::select! {
            biased;
            _ = conn.notify.notified() => {
                let (frames, close) = conn.take_pending();
                // Boxed: a parked connection's task should not carry room for a write it is
                // not doing (88 bytes of every idle socket's task).
                if Box::pin(write_frames(&mut socket, conn, frames)).await.is_err() {
                    break 'run;
                }
                if let Some((code, reason)) = close {
                    served.close_code = Some(code);
                    let _ = Box::pin(socket.write_all(&frame::close_frame(code, &reason))).await;
                    linger(&mut socket, served.peer_closed).await;
                    break 'run;
                }
            }
            read = socket.read_into(&mut decoder.buffer), if reading => {
                match read {
                    Ok(0) | Err(_) => break 'run,
                    Ok(_) => {}
                }
            }
        }
    }
}

/// Writes `frames` (taken from the queue) in one write.
async fn write_frames(socket: &mut Socket, conn: &Conn, frames: Vec<Bytes>) -> std::io::Result<()> {
    if frames.is_empty() {
        return Ok(());
    }
    conn.counters.socket_writes.inc();
    let result = if let [only] = &frames[..] {
        socket.write_all(only).await
    } else {
        socket.write_all(&frames.concat()).await
    };
    conn.finish_write();
    result
}

/// Hands every complete message in the decoder's buffer to the handler; a broken stream
/// closes the connection with the error's code.
async fn deliver<H: Handler>(
    decoder: &mut Decoder,
    conn: &Arc<Conn>,
    handler: &H,
    served: &mut Served,
) {
    loop {
        match decoder.next_message() {
            Ok(Some(message)) => {
                conn.touch();
                conn.counters.messages_in.inc();
                match message {
                    Message::Text(text) => Box::pin(handler.on_text(conn, text)).await,
                    Message::Binary(data) => Box::pin(handler.on_binary(conn, data)).await,
                    Message::Ping(payload) => {
                        conn.send(frame::pong(&payload));
                    }
                    Message::Pong => {}
                    Message::Close(code) => {
                        served.peer_closed = true;
                        // The decoder only lets codes through that may be sent back.
                        conn.close(code.unwrap_or(frame::close::NORMAL), "");
                        return;
                    }
                }
            }
            Ok(None) => return,
            Err(e) => {
                served.protocol_error = Some(e.close_code());
                conn.close(e.close_code(), &e.to_string());
                decoder.buffer.clear();
                return;
            }
        }
    }
}

/// A panic in the handler or the decoder: nothing more is read, and the peer is told 1011.
fn failed(conn: &Conn, decoder: &mut Decoder, served: &mut Served) {
    served.panicked = true;
    decoder.buffer.clear();
    conn.close(frame::close::SERVER_ERROR, "internal error");
}

/// After sending a close frame: stop writing, then read and drop what the peer still sends
/// (its close frame) for a moment, so that unread bytes do not turn the close into a reset.
async fn linger(socket: &mut Socket, peer_closed: bool) {
    socket.shutdown().await;
    if peer_closed {
        return;
    }
    let mut sink = BytesMut::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            sink.clear();
            match socket.read_into(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests;
