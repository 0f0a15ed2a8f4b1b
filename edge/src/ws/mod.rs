//! WebSocket plumbing of the edge: frames ([`frame`]), permessage-deflate ([`deflate`]),
//! the socket under a connection ([`io`]), connections ([`conn`]) and what they count and
//! report ([`stats`]), the registry of live connections used by heartbeats, replies and drain
//! ([`Registry`]), and the [`Lease`] that gives a connection's place back however its task ends.

pub mod conn;
pub mod deflate;
pub mod frame;
pub mod io;
pub mod stats;

pub use conn::{Conn, Counters, Handler, Io, Served};

use bytes::Bytes;
use futures::FutureExt;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Every live connection of this edge, by id.
#[derive(Default)]
pub struct Registry {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection, compressing what it sends when `deflate` is `Some`.
    pub fn open(
        &self,
        endpoint: &'static str,
        max_queued: usize,
        counters: Counters,
        deflate: Option<deflate::Deflate>,
    ) -> Arc<Conn> {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let conn = Arc::new(Conn::new(id, endpoint, max_queued, counters).deflating(deflate));
        self.lock().insert(id, conn.clone());
        conn
    }

    /// Forgets a closed connection.
    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// A connection by id.
    pub fn get(&self, id: u64) -> Option<Arc<Conn>> {
        self.lock().get(&id).cloned()
    }

    /// A snapshot of all connections.
    pub fn all(&self) -> Vec<Arc<Conn>> {
        self.lock().values().cloned().collect()
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none are open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A connection's place on this edge (its registry entry, its count in the connections gauge,
/// its handler's subscriptions) from the upgrade on. Dropping it gives everything back, so a
/// connection task that ends by any path, a panic or an abort included, leaks nothing: the
/// entry is removed (and with it the socket the entry shares with senders), the gauge comes
/// down, and a handler that was opened and not yet closed gets its `on_close` on a new task.
pub struct Lease<H: Handler> {
    registry: Arc<Registry>,
    conn: Arc<Conn>,
    handler: Arc<H>,
    /// The gauge counting open connections, once this one is counted in it.
    counted: Option<Gauge>,
    /// The handler's `on_open` may have run and its `on_close` has not started.
    open: bool,
}

impl<H: Handler> Lease<H> {
    /// Takes the place of `conn`, registered in `registry`, for `handler`.
    pub fn new(registry: Arc<Registry>, conn: Arc<Conn>, handler: H) -> Self {
        Lease {
            registry,
            conn,
            handler: Arc::new(handler),
            counted: None,
            open: false,
        }
    }

    /// The connection.
    pub fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    /// Serves the upgraded socket until it closes ([`conn::serve`]), counted in `gauge`
    /// meanwhile, then closes the handler. A panic is caught and reported in
    /// [`Served::panicked`].
    pub async fn serve(
        mut self,
        io: Io,
        leftover: Bytes,
        max_message: usize,
        gauge: &Gauge,
    ) -> Served {
        gauge.inc();
        self.counted = Some(gauge.clone());
        self.open = true;
        let mut served =
            conn::serve(io, leftover, self.conn.clone(), &*self.handler, max_message).await;
        self.open = false;
        let closing = AssertUnwindSafe(self.handler.on_close(&self.conn));
        if closing.catch_unwind().await.is_err() {
            served.panicked = true;
        }
        served
    }
}

impl<H: Handler> Drop for Lease<H> {
    fn drop(&mut self) {
        self.conn.mark_closed();
        self.registry.remove(self.conn.id);
        if let Some(gauge) = self.counted.take() {
            gauge.dec();
        }
        if self.open
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (handler, conn) = (self.handler.clone(), self.conn.clone());
            runtime.spawn(async move {
                let _ = AssertUnwindSafe(handler.on_close(&conn))
                    .catch_unwind()
                    .await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    #[derive(Default)]
    struct Calls {
        closed: AtomicUsize,
    }

    /// A handler that panics on any text, or never finishes opening.
    struct Faulty {
        calls: Arc<Calls>,
        hang_on_open: bool,
    }

    impl Handler for Faulty {
        async fn on_open(&self, _conn: &Arc<Conn>) {
            if self.hang_on_open {
                std::future::pending::<()>().await;
            }
        }

        async fn on_text(&self, _conn: &Arc<Conn>, _text: Bytes) {
            panic!("a handler bug");
        }

        async fn on_close(&self, _conn: &Arc<Conn>) {
            self.calls.closed.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A handler whose opening sends one frame, after `delay`.
    struct Greeter {
        delay: std::time::Duration,
    }

    impl Handler for Greeter {
        async fn on_open(&self, conn: &Arc<Conn>) {
            tokio::time::sleep(self.delay).await;
            conn.send(frame::text(b"hello"));
        }

        async fn on_text(&self, _conn: &Arc<Conn>, _text: Bytes) {}

        async fn on_close(&self, _conn: &Arc<Conn>) {}
    }

    /// An opening that is done at once and says when it is dropped.
    struct Opening(Arc<std::sync::atomic::AtomicBool>);

    impl Future for Opening {
        type Output = ();
        fn poll(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<()> {
            std::task::Poll::Ready(())
        }
    }

    impl Drop for Opening {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// A handler whose opening is an [`Opening`].
    struct Opener(Arc<std::sync::atomic::AtomicBool>);

    impl Handler for Opener {
        fn on_open(&self, _conn: &Arc<Conn>) -> impl Future<Output = ()> + Send {
            Opening(self.0.clone())
        }

        async fn on_text(&self, _conn: &Arc<Conn>, _text: Bytes) {}

        async fn on_close(&self, _conn: &Arc<Conn>) {}
    }

    #[tokio::test]
    async fn a_finished_opening_is_freed_while_the_connection_lives() {
        let (server, _client) = io::socket_pair().await;
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let registry = Arc::new(Registry::default());
        let conn = registry.open("test", 1 << 20, Counters::default(), None);
        let lease = Lease::new(registry, conn.clone(), Opener(dropped.clone()));
        let io = Io::plain(server);
        let serving =
            tokio::spawn(
                async move { lease.serve(io, Bytes::new(), 1024, &Gauge::default()).await },
            );
        // The opening's box is about 1 KiB per socket: it must go when the opening is done, not
        // when the connection ends.
        let freed = async {
            while !dropped.load(Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), freed)
            .await
            .expect("the finished opening is still held");
        assert!(!serving.is_finished(), "the connection is still open");
        serving.abort();
    }

    const HEAD: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";

    /// Serves a [`Greeter`] on a socket whose `101` hyper wrote (held by [`Io`]); returns the
    /// client's end.
    async fn greeted(delay: std::time::Duration) -> TcpStream {
        let (server, client) = io::socket_pair().await;
        let mut io = Io::plain(server);
        io.write_all(HEAD).await.expect("hyper writes the 101");
        io.write_all(b"and the rest").await.expect("held too");
        let registry = Arc::new(Registry::default());
        let conn = registry.open("test", 1 << 20, Counters::default(), None);
        let lease = Lease::new(registry, conn, Greeter { delay });
        tokio::spawn(async move { lease.serve(io, Bytes::new(), 1024, &Gauge::default()).await });
        client
    }

    #[tokio::test]
    async fn the_101_leaves_with_the_opening_frames_in_one_write() {
        let mut client = greeted(std::time::Duration::ZERO).await;
        let want = [HEAD, b"and the rest", &frame::text(b"hello")].concat();
        let mut got = vec![0u8; want.len()];
        let read = client.read(&mut got);
        let n = tokio::time::timeout(std::time::Duration::from_secs(30), read)
            .await
            .expect("an answer")
            .expect("read");
        assert_eq!(n, want.len(), "one segment: {:?}", &got[..n]);
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn a_slow_opening_does_not_hold_the_101_back() {
        let mut client = greeted(std::time::Duration::from_secs(3600)).await;
        let mut got = vec![0u8; HEAD.len()];
        let read = client.read_exact(&mut got);
        tokio::time::timeout(std::time::Duration::from_secs(20), read)
            .await
            .expect("the 101 comes while the opening still runs")
            .expect("read");
        assert_eq!(got, HEAD);
    }

    /// A registered connection on a real socket pair, with its lease.
    async fn lease(
        hang_on_open: bool,
    ) -> (Lease<Faulty>, Arc<Registry>, Arc<Calls>, Io, TcpStream) {
        let (server, client) = io::socket_pair().await;
        let registry = Arc::new(Registry::default());
        let conn = registry.open("test", 1 << 20, Counters::default(), None);
        let calls = Arc::new(Calls::default());
        let handler = Faulty {
            calls: calls.clone(),
            hang_on_open,
        };
        let lease = Lease::new(registry.clone(), conn, handler);
        (lease, registry, calls, Io::plain(server), client)
    }

    /// Everything the server sends until it closes the socket (within a deadline).
    async fn read_until_closed(client: &mut TcpStream) -> Vec<u8> {
        let mut answer = Vec::new();
        let read = client.read_to_end(&mut answer);
        tokio::time::timeout(std::time::Duration::from_secs(30), read)
            .await
            .expect("the server closes the socket")
            .expect("read");
        answer
    }

    async fn eventually(what: &str, check: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while !check() {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_panicking_handler_closes_with_1011_and_gives_everything_back() {
        let (lease, registry, calls, io, mut client) = lease(false).await;
        let gauge = Gauge::default();
        let task = {
            let gauge = gauge.clone();
            tokio::spawn(async move { lease.serve(io, Bytes::new(), 1024, &gauge).await })
        };
        // A masked text frame "hi".
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![0x81, 0x82];
        frame.extend_from_slice(&mask);
        frame.extend(b"hi".iter().zip(mask).map(|(b, m)| b ^ m));
        client.write_all(&frame).await.expect("send");
        let answer = read_until_closed(&mut client).await;
        assert_eq!(&answer[..4], &[0x88, answer[1], 0x03, 0xf3], "close 1011");
        drop(client);
        let served = task.await.expect("the task itself does not panic");
        assert!(served.panicked);
        assert_eq!(served.close_code, Some(frame::close::SERVER_ERROR));
        assert!(registry.is_empty(), "registry entry released");
        assert_eq!(gauge.get(), 0, "gauge back down");
        assert_eq!(calls.closed.load(Ordering::SeqCst), 1, "on_close ran once");
    }

    #[tokio::test]
    async fn an_aborted_connection_task_gives_everything_back() {
        let (lease, registry, calls, io, mut client) = lease(true).await;
        let conn = lease.conn().clone();
        let gauge = Gauge::default();
        let task = {
            let gauge = gauge.clone();
            tokio::spawn(async move { lease.serve(io, Bytes::new(), 1024, &gauge).await })
        };
        eventually("counted while open", || gauge.get() == 1).await;
        task.abort();
        assert!(task.await.is_err(), "aborted");
        assert!(registry.is_empty(), "registry entry released");
        assert_eq!(gauge.get(), 0, "gauge back down");
        assert!(conn.is_closing(), "senders see it closed");
        eventually("on_close ran on a task of its own", || {
            calls.closed.load(Ordering::SeqCst) == 1
        })
        .await;
        let mut rest = Vec::new();
        client
            .read_to_end(&mut rest)
            .await
            .expect("the socket is closed");
    }
}
