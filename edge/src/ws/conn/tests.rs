//! Unit tests of one connection's read and write loops (`super`), over real local sockets.

use super::*;
use tokio::io::AsyncReadExt;

fn conn(max_queued: usize) -> Conn {
    Conn::new(1, "t", max_queued, Counters::default())
}

#[test]
fn a_slow_reader_is_closed_with_1013_instead_of_growing() {
    let conn = conn(100);
    assert!(conn.send(Bytes::from(vec![0u8; 60])));
    assert!(!conn.send(Bytes::from(vec![0u8; 60])));
    let (frames, close) = conn.take_pending();
    assert!(frames.is_empty());
    assert_eq!(close.map(|c| c.0), Some(1013));
    assert!(
        !conn.send(Bytes::from_static(b"x")),
        "closed connections take nothing"
    );
}

#[test]
fn heartbeat_sees_a_silent_peer() {
    let conn = conn(100);
    assert!(conn.take_alive(), "new connections count as alive");
    assert!(!conn.take_alive());
    conn.touch();
    assert!(conn.take_alive());
}

#[tokio::test]
async fn a_read_that_empties_the_socket_still_hears_the_next_bytes() {
    use tokio::io::AsyncWriteExt;
    let (server, mut client) = crate::ws::io::socket_pair().await;
    let mut socket = Socket::Plain(Arc::new(server));
    let mut buf = BytesMut::new();
    for (i, chunk) in [&b"ab"[..], b"cd", b"ef"].into_iter().enumerate() {
        client.write_all(chunk).await.expect("send");
        let want = 2 * (i + 1);
        while buf.len() < want {
            let read = socket.read_into(&mut buf);
            let n = tokio::time::timeout(Duration::from_secs(30), read)
                .await
                .expect("bytes sent after a draining read wake the reader")
                .expect("read");
            assert!(n > 0, "not closed");
        }
        assert_eq!(&buf[..], &b"abcdef"[..want]);
    }
    drop(client);
    let n = socket.read_into(&mut buf).await.expect("read");
    assert_eq!(n, 0, "the peer's close is seen");
}

#[tokio::test]
async fn sends_go_straight_to_an_idle_socket_and_queue_behind_a_write() {
    let (server, mut client) = crate::ws::io::socket_pair().await;
    let conn = conn(1 << 20);
    conn.attach(Arc::new(server), Vec::new());
    assert!(conn.send_frames(Bytes::from_static(b"ab"), 2));
    assert_eq!(conn.counters.messages_out.get(), 2);
    assert!(
        conn.take_pending().0.is_empty(),
        "written directly, nothing queued"
    );
    let mut got = [0u8; 2];
    client.read_exact(&mut got).await.expect("read");
    assert_eq!(&got, b"ab");
    // While the task is writing, later frames queue behind it to keep their order.
    conn.lock().frames.push_back(Bytes::from_static(b"c"));
    let (taken, _) = conn.take_pending();
    assert_eq!(taken.len(), 1);
    assert!(conn.send(Bytes::from_static(b"d")));
    assert_eq!(conn.take_pending().0, vec![Bytes::from_static(b"d")]);
    conn.finish_write();
}

/// A waker that only counts who holds it.
struct Held;

impl futures::task::ArcWake for Held {
    fn wake_by_ref(_: &Arc<Self>) {}
}

#[tokio::test]
async fn a_connection_waiting_to_read_lets_go_of_the_task_that_read_before_it() {
    let (server, _client) = crate::ws::io::socket_pair().await;
    // hyper's connection task waits for the request's next bytes this way before the upgrade.
    let before = Arc::new(Held);
    let waker = futures::task::waker(before.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    // A new socket may start out marked readable; a read that finds nothing clears that.
    let _ = server.try_io(Interest::READABLE, || {
        Err::<(), _>(std::io::Error::from(ErrorKind::WouldBlock))
    });
    assert!(server.poll_read_ready(&mut cx).is_pending());
    drop(waker);
    assert_eq!(
        Arc::strong_count(&before),
        2,
        "the socket keeps that task's waker"
    );
    // The upgraded connection waits to read: the old task's waker (and so its memory) is freed.
    let mut socket = Socket::Plain(Arc::new(server));
    let mut buf = BytesMut::new();
    let read = socket.read_into(&mut buf);
    tokio::pin!(read);
    assert!(
        futures::poll!(read.as_mut()).is_pending(),
        "nothing to read"
    );
    assert_eq!(
        Arc::strong_count(&before),
        1,
        "a parked connection keeps no waker of the task that served the upgrade"
    );
}
