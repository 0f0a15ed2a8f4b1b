//! Hostile clients against a real edge (tablewire issue 19): frames built to break the decoder,
//! close codes the wire does not allow, request bodies trickled in byte by byte, and more
//! connections from one address than an edge may hold. Plus property tests: arbitrary bytes, cut
//! at arbitrary points, into the frame decoder, and into every JSON entry point the edge parses
//! from clients. With permessage-deflate: a deflate bomb, RSV1 where it may not be, and the
//! inflating decoder under the same property test.

mod support;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use support::*;
use tablewire_edge::http::parse_json;
use tablewire_edge::limit::LimitClock;
use tablewire_edge::ws::frame::{DecodeError, Decoder, Message};
use tablewire_schemas::{collab, device, display, events, pos, voice};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A provisioned nats-server and an edge on `config`.
async fn edge_with(config: tablewire_edge::Config) -> (tablewire_nats::NatsServer, InProcessEdge) {
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let edge = InProcessEdge::start(nats.client_url(), config).await;
    (nats, edge)
}

/// `data` compressed as a permessage-deflate client sends it: raw DEFLATE, sync-flushed, the
/// trailing `00 00 ff ff` stripped.
fn deflated(data: &[u8]) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::best(), false);
    let mut out = Vec::with_capacity(data.len() / 100 + 1024);
    loop {
        let at = c.total_in() as usize;
        if out.len() == out.capacity() {
            out.reserve(out.capacity());
        }
        c.compress_vec(&data[at..], &mut out, flate2::FlushCompress::Sync)
            .expect("compress");
        if c.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// Issue 22: a message of a few kilobytes that inflates to 16 MiB is refused with 1009 once
/// it passes the message limit (nothing past it is allocated), on each of several sockets; the
/// edge stays healthy and the same worker threads inflate a good message right after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deflate_bomb_closes_with_1009_and_the_edge_stays_healthy() {
    let (_nats, edge) = edge_with(edge_config()).await;
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    let bomb = deflated(&vec![b' '; 16 << 20]);
    assert!(
        bomb.len() < 65_536,
        "the bomb passes as one message: {}",
        bomb.len()
    );
    for fragments in [1, 4] {
        let (mut ws, head) =
            raw_websocket_with(edge.addr, "/session/deflate-bomb/display", offer).await;
        assert!(head.contains("permessage-deflate"), "{head}");
        let size = bomb.len().div_ceil(fragments);
        let mut bytes = Vec::new();
        for (i, piece) in bomb.chunks(size).enumerate() {
            let fin = if (i + 1) * size >= bomb.len() {
                0x80
            } else {
                0
            };
            let first = if i == 0 { 0x41 } else { 0x00 };
            bytes.extend(frame(fin | first, true, None, piece));
        }
        ws.write_all(&bytes).await.expect("send");
        assert_eq!(
            close_code_then_end(&mut ws).await,
            Some(1009),
            "{fragments}"
        );
    }
    let (status, _) = healthz(edge.addr).await;
    assert_eq!(status, 200);
    let addr = edge.addr;
    eventually("the two bombs counted as too big", || async move {
        let text = metrics(addr).await;
        metric(
            &text,
            r#"tablewire_edge_errors_total{code="MESSAGE_TOO_BIG"}"#,
        ) == 2.0
    })
    .await;
    // A compressed ping afterwards is answered.
    let (mut ws, _) = raw_websocket_with(edge.addr, "/session/deflate-bomb/display", offer).await;
    ws.write_all(&frame(0xc1, true, None, &deflated(br#"{"type":"ping"}"#)))
        .await
        .expect("send");
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(r#""type":"pong""#) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(TIMEOUT, ws.read(&mut chunk))
            .await
            .expect("pong in time")
            .expect("read");
        assert!(n > 0, "socket open");
        seen.extend_from_slice(&chunk[..n]);
    }
    edge.drain().await;
}

/// Reads server frames until the server closes the socket; the code of its close frame, `None`
/// when the socket ended without one.
async fn close_code_then_end(stream: &mut TcpStream) -> Option<u16> {
    let mut bytes = Vec::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut bytes))
        .await
        .expect("the edge ends the connection")
        .ok()?;
    let mut rest = bytes.as_slice();
    while rest.len() >= 2 {
        let opcode = rest[0] & 0x0f;
        let (len, head) = match rest[1] & 0x7f {
            126 => (usize::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
            127 => panic!("the edge sends no frame that long here"),
            n => (usize::from(n), 2),
        };
        let payload = &rest[head..head + len];
        if opcode == 0x8 {
            return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        }
        rest = &rest[head + len..];
    }
    None
}

async fn healthz(addr: SocketAddr) -> (u16, Value) {
    get(addr, "/healthz").await.expect("/healthz answers")
}

/// Issue 19, finding 1, byte for byte: a 10-byte fragment, then a continuation claiming
/// 2^64 - 10 bytes. It used to panic the connection task, send no close and leave the
/// connection registered (with its socket) for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrapping_length_frame_closes_with_1002_and_leaves_nothing_behind() {
    let (_nats, edge) = edge_with(edge_config()).await;
    for _ in 0..3 {
        let mut ws = raw_websocket(edge.addr, "/ws").await;
        let mut bytes = vec![0x01, 0x8a, 0x11, 0x22, 0x33, 0x44];
        bytes.extend_from_slice(&[b'x'; 10]);
        bytes.extend_from_slice(&[0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf6]);
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        ws.write_all(&bytes).await.expect("send");
        assert_eq!(close_code_then_end(&mut ws).await, Some(1002));
    }
    eventually("every connection released", || async {
        healthz(edge.addr).await.1["websockets"] == 0
    })
    .await;
    let (status, _) = healthz(edge.addr).await;
    assert_eq!(status, 200);
    // The errors are counted just after the registry entry goes.
    let addr = edge.addr;
    eventually("the three protocol errors counted", || async move {
        let text = metrics(addr).await;
        metric(
            &text,
            r#"tablewire_edge_errors_total{code="PROTOCOL_ERROR"}"#,
        ) == 3.0
    })
    .await;
    let text = metrics(edge.addr).await;
    assert_eq!(
        metric(&text, r#"tablewire_edge_connections{endpoint="events"}"#),
        0.0
    );
    edge.drain().await;
}

/// Issue 19, finding 2: close codes no peer may send are a protocol error, not echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_codes_not_allowed_on_the_wire_are_answered_with_1002() {
    let (_nats, edge) = edge_with(edge_config()).await;
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        let mut ws = Ws::connect(edge.addr, "/session/hostile-close/display").await;
        ws.next_of("initial_state").await;
        ws.send_frame(fastwebsockets::Frame::close(code, b"")).await;
        assert_eq!(ws.closed().await, Some(1002), "close {code}");
    }
    for code in [1000u16, 1001, 3000, 4999] {
        let mut ws = Ws::connect(edge.addr, "/session/hostile-close/display").await;
        ws.next_of("initial_state").await;
        ws.send_frame(fastwebsockets::Frame::close(code, b"")).await;
        assert_eq!(ws.closed().await, Some(code), "close {code} is echoed");
    }
    edge.drain().await;
}

/// Issue 19, finding 3: a body trickled in a byte at a time is answered 408 once the body
/// timeout has passed, instead of holding the connection as long as the client likes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_answered_408_after_the_body_timeout() {
    let config = tablewire_edge::Config {
        body_timeout: Duration::from_millis(500),
        ..edge_config()
    };
    let (_nats, edge) = edge_with(config).await;
    let stream = TcpStream::connect(edge.addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /session/trickle/init HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 10000\r\n\r\n{{",
        edge.addr
    );
    writer.write_all(head.as_bytes()).await.expect("send");
    // One byte every 100 ms: the whole body would take 1,000 s.
    let trickle = tokio::spawn(async move {
        for _ in 0..10_000 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let mut response = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, reader.read_to_end(&mut response)).await;
    trickle.abort();
    assert!(read.is_ok(), "answered within the test's deadline");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    let body = &response[response.find("\r\n\r\n").expect("a body") + 4..];
    let body: Value = serde_json::from_str(body).expect("JSON error body");
    assert_eq!(body["error"]["code"], "TIMEOUT");
    let text = metrics(edge.addr).await;
    assert_eq!(metric(&text, "tablewire_edge_body_timeouts_total"), 1.0);
    edge.drain().await;
}

/// The documented answer of a refused connection: 503, `TOO_MANY_CONNECTIONS`, `Retry-After`.
async fn assert_refused(addr: SocketAddr) {
    let (status, headers, body) = send(addr, "GET", "/nope", &[], "").await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    let body: Value = serde_json::from_slice(&body).expect("JSON error body");
    assert_eq!(body["error"]["code"], "TOO_MANY_CONNECTIONS");
    assert_eq!(body["error"]["retryable"], true);
    let retry_after: u64 = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!(retry_after >= 1);
}

/// Issue 19, finding 4: with a per-address cap of 3, the fourth connection is refused with the
/// documented answer and counted, `/healthz` still answers, and a closed connection makes
/// room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_per_address_cap_connections_are_refused_and_healthz_still_answers() {
    let config = tablewire_edge::Config {
        max_connections_per_ip: 3,
        ..edge_config()
    };
    let (_nats, edge) = edge_with(config).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut ws = Ws::connect(edge.addr, "/session/hostile-cap/display").await;
        ws.next_of("initial_state").await;
        held.push(ws);
    }
    let fourth = Ws::try_connect(edge.addr, "/session/hostile-cap/display").await;
    assert!(fourth.is_err(), "the fourth WebSocket is refused");
    assert_refused(edge.addr).await;
    let (status, body) = healthz(edge.addr).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["websockets"], 3);
    let text = metrics(edge.addr).await;
    assert_eq!(
        metric(
            &text,
            r#"tablewire_edge_connections_refused_total{reason="max_connections_per_ip"}"#
        ),
        2.0
    );
    drop(held.pop());
    eventually("a closed connection makes room", || async {
        let (status, _, _) = send(edge.addr, "GET", "/nope", &[], "").await;
        status == 404
    })
    .await;
    edge.drain().await;
}

/// The global cap keeps headroom for `/healthz` and `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_global_cap_healthz_and_metrics_still_answer() {
    let config = tablewire_edge::Config {
        max_connections: 2,
        ..edge_config()
    };
    let (_nats, edge) = edge_with(config).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut ws = Ws::connect(edge.addr, "/session/hostile-global/display").await;
        ws.next_of("initial_state").await;
        held.push(ws);
    }
    assert_refused(edge.addr).await;
    assert_eq!(healthz(edge.addr).await.0, 200);
    let text = metrics(edge.addr).await;
    assert_eq!(
        metric(
            &text,
            r#"tablewire_edge_connections_refused_total{reason="max_connections"}"#
        ),
        1.0
    );
    edge.drain().await;
}

/// Past the cap with no headroom left, a socket is closed right after accept, unanswered, and
/// counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_headroom_left_a_socket_is_closed_at_accept() {
    let config = tablewire_edge::Config {
        max_connections: 1,
        connection_headroom: 0,
        ..edge_config()
    };
    let (_nats, edge) = edge_with(config).await;
    let mut ws = Ws::connect(edge.addr, "/session/hostile-headroom/display").await;
    ws.next_of("initial_state").await;
    let mut stream = TcpStream::connect(edge.addr).await.expect("connect");
    let _ = stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut answer))
        .await
        .expect("closed in time");
    assert!(
        read.is_err() || answer.is_empty(),
        "closed unanswered: {}",
        String::from_utf8_lossy(&answer)
    );
    drop(ws);
    // Polls until the edge has a place free again (polls before that are closed unanswered
    // too, and counted).
    let addr = edge.addr;
    eventually(
        "the refusal counted, read once there is room",
        || async move {
            let Some(text) = send_quietly(addr, "/metrics").await else {
                return false;
            };
            metric(
                &text,
                r#"tablewire_edge_connections_refused_total{reason="no_headroom"}"#,
            ) >= 1.0
        },
    )
    .await;
    edge.drain().await;
}

/// A GET whose connection may be closed unanswered (the edge is at its cap a moment longer).
async fn send_quietly(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut answer))
        .await
        .ok()?
        .ok()?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    answer.starts_with("HTTP/1.1 200").then_some(answer)
}

/// The per-address accept rate: with 2 per second on a frozen clock, the third connection is
/// refused (and `/healthz` still answers) until the clock moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_per_address_accept_rate_connections_wait_their_turn() {
    let clock = LimitClock::frozen();
    let config = tablewire_edge::Config {
        connection_rate_per_ip: 2,
        rate_limit_clock: clock.clone(),
        ..edge_config()
    };
    let (_nats, edge) = edge_with(config).await;
    for _ in 0..2 {
        let (status, _, _) = send(edge.addr, "GET", "/nope", &[], "").await;
        assert_eq!(status, 404, "within the rate");
    }
    assert_refused(edge.addr).await;
    assert_eq!(healthz(edge.addr).await.0, 200);
    clock.advance(Duration::from_secs(1));
    let (status, _, _) = send(edge.addr, "GET", "/nope", &[], "").await;
    assert_eq!(status, 404, "allowed again a second later");
    let text = metrics(edge.addr).await;
    assert_eq!(
        metric(
            &text,
            r#"tablewire_edge_connections_refused_total{reason="connection_rate_per_ip"}"#
        ),
        1.0
    );
    edge.drain().await;
}

// ---- Property tests: nothing a client sends makes the edge's parsing panic. ----

/// The longest frame header (2 + 8 length bytes + 4 mask bytes).
const MAX_HEADER: usize = 14;

/// A client frame with any first byte, mask or not, and a declared length that is the
/// payload's or a lie.
fn frame(first: u8, masked: bool, declared: Option<u64>, payload: &[u8]) -> Vec<u8> {
    let len = declared.unwrap_or(payload.len() as u64);
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut out = vec![first];
    match len {
        0..=125 => out.push(mask_bit | len as u8),
        126..=65_535 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    let mask = [0x5a, 0x0f, 0xf0, 0xa5];
    if masked {
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Frames as clients shape them: mostly masked frames of the six opcodes, fragmented or not,
/// of true length; among them any first byte, unmasked frames, and lengths that lie, large
/// ones near 2^63 and 2^64 included (they wrap when added to a pending fragment or a header).
fn frame_like() -> impl Strategy<Value = Vec<u8>> {
    let valid_first =
        prop::sample::select(vec![0x00u8, 0x80, 0x01, 0x81, 0x02, 0x82, 0x88, 0x89, 0x8a]);
    let lie = prop_oneof![
        (0u64..=65_535).boxed(),
        any::<u64>().boxed(),
        (0u64..64).prop_map(|k| u64::MAX - k).boxed(),
        (0u64..64).prop_map(|k| (1u64 << 63) + k).boxed(),
    ];
    (
        prop_oneof![4 => valid_first, 1 => any::<u8>()],
        prop::bool::weighted(0.95),
        prop::option::weighted(0.25, lie),
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(first, masked, declared, mut payload)| {
            if first & 0x08 != 0 && declared.is_none() {
                payload.truncate(125);
            }
            frame(first, masked, declared, &payload)
        })
}

/// Issue 19's family: a fragment, then a continuation whose length wraps with it.
fn wrapping_continuation() -> impl Strategy<Value = Vec<u8>> {
    (1usize..64, 0u64..64, any::<bool>()).prop_map(|(pending, k, fin)| {
        let mut out = frame(0x01, true, None, &vec![b'x'; pending]);
        let first = if fin { 0x80 } else { 0x00 };
        out.extend(frame(first, true, Some(u64::MAX - k), &[0; 8]));
        out
    })
}

/// A byte stream: raw noise, or frame-shaped pieces.
fn client_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..1024),
        4 => prop::collection::vec(
            prop_oneof![8 => frame_like().boxed(), 1 => wrapping_continuation().boxed()],
            0..12
        )
        .prop_map(|frames| frames.concat()),
    ]
}

/// What a decoder makes of a stream: its messages and, if it stopped there, its error.
type Outcome = (Vec<Message>, Option<DecodeError>);

/// Feeds `bytes` cut into `chunks` and checks, after each chunk is decoded, that the decoder
/// holds no more than one frame's worth of bytes.
fn decode_in_chunks(
    bytes: &[u8],
    cuts: &[usize],
    max_message: usize,
) -> Result<Outcome, TestCaseError> {
    decode_with(Decoder::new(max_message), bytes, cuts, max_message)
}

/// [`decode_in_chunks`] with a given decoder.
fn decode_with(
    mut decoder: Decoder,
    bytes: &[u8],
    cuts: &[usize],
    max_message: usize,
) -> Result<Outcome, TestCaseError> {
    let mut messages = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&bytes.len())) {
        decoder.buffer.extend_from_slice(&bytes[start..end]);
        start = end;
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(e) => return Ok((messages, Some(e))),
            }
        }
        prop_assert!(
            decoder.buffer.len() < max_message.max(125) + MAX_HEADER,
            "buffer holds {} bytes with max_message {max_message}",
            decoder.buffer.len()
        );
    }
    Ok((messages, None))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    /// Arbitrary bytes, cut at arbitrary points: the decoder never panics, never holds more
    /// than a message and a header, gives the same outcome however the bytes were cut, and
    /// ends in messages or in an error with a close code the edge sends.
    #[test]
    fn the_frame_decoder_survives_any_bytes_cut_anywhere(
        bytes in client_bytes(),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
        max_message in prop::sample::select(vec![1usize, 16, 125, 1024, 65_536]),
    ) {
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let whole = decode_in_chunks(&bytes, &[], max_message)?;
        let cut = decode_in_chunks(&bytes, &cuts, max_message)?;
        prop_assert_eq!(&whole, &cut, "cut at {:?}", cuts);
        if let Some(error) = &whole.1 {
            prop_assert!([1002, 1007, 1009].contains(&error.close_code()), "{error:?}");
        }
        for message in &whole.0 {
            match message {
                Message::Text(data) => {
                    prop_assert!(std::str::from_utf8(data).is_ok());
                    prop_assert!(data.len() <= max_message);
                }
                Message::Binary(data) => prop_assert!(data.len() <= max_message),
                Message::Close(Some(code)) => {
                    prop_assert!(tablewire_edge::ws::frame::close_code_allowed(*code));
                }
                _ => {}
            }
        }
    }
}

/// A masked client frame: FIN, then the first byte's other bits and opcode.
fn masked_frame(fin: bool, first: u8, payload: &[u8]) -> Vec<u8> {
    frame((u8::from(fin) << 7) | first, true, None, payload)
}

/// Every message a decoder with permessage-deflate makes of `bytes`, or its error.
fn decode_inflating(bytes: &[u8], max: usize) -> Result<Vec<Message>, DecodeError> {
    let mut d = Decoder::new(max).inflating();
    d.buffer.extend_from_slice(bytes);
    let mut out = Vec::new();
    while let Some(m) = d.next_message()? {
        out.push(m);
    }
    Ok(out)
}

#[test]
fn decoder_compressed_messages_whole_or_fragmented_inflate_beside_plain_ones() {
    let text = br#"{"type":"add_item","item":{"name":"burger"}}"#.repeat(30);
    let packed = deflated(&text);
    let mut bytes = masked_frame(true, 1 | 0x40, &packed);
    bytes.extend(masked_frame(true, 1, b"plain"));
    // Fragmented: RSV1 on the first frame only, a ping between the fragments.
    let (a, b) = packed.split_at(packed.len() / 2);
    bytes.extend(masked_frame(false, 2 | 0x40, a));
    bytes.extend(masked_frame(true, 9, b"p"));
    bytes.extend(masked_frame(true, 0, b));
    let msgs = decode_inflating(&bytes, 1 << 16).expect("decode");
    assert_eq!(
        msgs,
        vec![
            Message::Text(text.clone().into()),
            Message::Text(Bytes::from_static(b"plain")),
            Message::Ping(Bytes::from_static(b"p")),
            Message::Binary(text.into()),
        ]
    );
}

#[test]
fn decoder_rsv1_where_the_rfc_forbids_it_is_a_protocol_error() {
    let packed = deflated(b"hello");
    let cases = [
        // Not negotiated.
        (false, masked_frame(true, 1 | 0x40, &packed)),
        // On a control frame.
        (true, masked_frame(true, 9 | 0x40, b"p")),
        // On a continuation.
        (true, {
            let mut b = masked_frame(false, 1 | 0x40, &packed);
            b.extend(masked_frame(true, 0x40, b""));
            b
        }),
        // RSV2 and RSV3 are never negotiated.
        (true, masked_frame(true, 1 | 0x20, b"x")),
        (true, masked_frame(true, 1 | 0x10, b"x")),
    ];
    for (negotiated, bytes) in cases {
        let got = if negotiated {
            decode_inflating(&bytes, 100)
        } else {
            {
                let mut d = Decoder::new(100);
                d.buffer.extend_from_slice(&bytes);
                d.next_message().map(|m| m.into_iter().collect::<Vec<_>>())
            }
        };
        assert!(
            matches!(got, Err(DecodeError::Protocol(_))),
            "{negotiated} {bytes:02x?}: {got:?}"
        );
    }
    let corrupt = masked_frame(true, 1 | 0x40, &[0xff; 16]);
    assert_eq!(
        decode_inflating(&corrupt, 100).map_err(|e| e.close_code()),
        Err(1002)
    );
}

#[test]
fn decoder_a_compressed_message_is_held_to_the_size_limit_once_inflated() {
    let bomb = deflated(&vec![b'a'; 1 << 20]);
    assert!(bomb.len() < 5_000);
    let err = decode_inflating(&masked_frame(true, 1 | 0x40, &bomb), 65_536).expect_err("too big");
    assert_eq!(err, DecodeError::TooBig(65_536));
    assert_eq!(err.close_code(), 1009);
    let exact = deflated(&[b'a'; 1000]);
    assert_eq!(
        decode_inflating(&masked_frame(true, 1 | 0x40, &exact), 1000).map(|m| m.len()),
        Ok(1)
    );
    // Invalid UTF-8 inside the compressed text is still 1007.
    let bad = deflated(&[0xff, 0xfe, 0xfd]);
    assert_eq!(
        decode_inflating(&masked_frame(true, 1 | 0x40, &bad), 100),
        Err(DecodeError::InvalidUtf8)
    );
}

/// Compressed messages as permessage-deflate clients send them, whole or fragmented, some
/// inflating far past any limit, some with a byte flipped, some cut short.
fn compressed_message() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(any::<u8>(), 1..32),
        prop_oneof![3 => 1usize..4096, 1 => 65_000usize..300_000],
        1usize..4,
        prop::option::weighted(0.2, (any::<Index>(), any::<u8>())),
        prop::option::weighted(0.1, any::<Index>()),
    )
        .prop_map(|(seed, len, fragments, flip, cut)| {
            let data: Vec<u8> = seed.iter().copied().cycle().take(len).collect();
            let mut packed = deflated(&data);
            if let Some((at, bits)) = flip {
                let at = at.index(packed.len());
                packed[at] ^= bits;
            }
            if let Some(at) = cut {
                packed.truncate(at.index(packed.len() + 1));
            }
            let size = packed.len().div_ceil(fragments).max(1);
            let pieces: Vec<&[u8]> = packed.chunks(size).collect();
            let mut out = Vec::new();
            for (i, piece) in pieces.iter().enumerate() {
                let fin = if i + 1 == pieces.len() { 0x80 } else { 0 };
                let first = if i == 0 { 0x41 } else { 0x00 };
                out.extend(frame(fin | first, true, None, piece));
            }
            if pieces.is_empty() {
                out.extend(frame(0xc1, true, None, &[]));
            }
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// The decoder of a socket that negotiated permessage-deflate, fed compressed messages
    /// among frame-shaped noise (RSV1 anywhere): the same promises, and nothing inflated is
    /// ever handed on past the limit.
    #[test]
    fn the_inflating_decoder_survives_any_bytes_cut_anywhere(
        pieces in prop::collection::vec(
            prop_oneof![2 => compressed_message().boxed(), 2 => frame_like().boxed(),
                1 => frame_like().prop_map(|mut f| { f[0] |= 0x40; f }).boxed()],
            1..6,
        ),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
        max_message in prop::sample::select(vec![16usize, 1024, 65_536]),
    ) {
        let bytes = pieces.concat();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let inflating = || Decoder::new(max_message).inflating();
        let whole = decode_with(inflating(), &bytes, &[], max_message)?;
        let cut = decode_with(inflating(), &bytes, &cuts, max_message)?;
        prop_assert_eq!(&whole, &cut, "cut at {:?}", cuts);
        if let Some(error) = &whole.1 {
            prop_assert!([1002, 1007, 1009].contains(&error.close_code()), "{error:?}");
        }
        for message in &whole.0 {
            match message {
                Message::Text(data) => {
                    prop_assert!(std::str::from_utf8(data).is_ok());
                    prop_assert!(data.len() <= max_message);
                }
                Message::Binary(data) => prop_assert!(data.len() <= max_message),
                _ => {}
            }
        }
    }
}

/// Parses `bytes` as the edge does (straight into `T`, and through a `Value` first).
fn parse_both<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    if let Ok(value) = parse_json::<Value>(bytes) {
        let _ = serde_json::from_value::<T>(value);
    }
    parse_json::<T>(bytes).ok()
}

/// Every JSON entry point the edge reads from clients, with the checks run on what parses.
fn every_entry_point(bytes: &[u8]) {
    let _ = parse_both::<display::ClientFrame>(bytes);
    let _ = parse_both::<display::InitRequest>(bytes);
    if let Some(update) = parse_both::<display::DisplayUpdate>(bytes) {
        let _ = update.check();
    }
    if let Some(message) = parse_both::<collab::ClientMessage>(bytes) {
        let _ = message.sender();
    }
    let check_order = |order: &pos::OrderInput, key: &Option<String>| {
        let _ = (order.check(), order.items(), order.order_type());
        if let Some(key) = key {
            let _ = pos::check_idempotency_key(key);
        }
    };
    if let Some(pos::ClientFrame::SubmitOrder {
        order,
        idempotency_key,
    }) = parse_both::<pos::ClientFrame>(bytes)
    {
        check_order(&order, &idempotency_key);
    }
    match parse_both::<pos::SubmitRequest>(bytes) {
        Some(pos::SubmitRequest::Wrapped {
            order,
            idempotency_key,
        })
        | Some(pos::SubmitRequest::Bare {
            order,
            idempotency_key,
        }) => check_order(&order, &idempotency_key),
        None => {}
    }
    let _ = parse_both::<pos::StatusChange>(bytes);
    let _ = parse_both::<pos::Settings>(bytes);
    if let Some(events::ClientFrame::Subscribe { events, .. }) =
        parse_both::<events::ClientFrame>(bytes)
    {
        for name in events {
            let _ = events::is_event_name(&name);
        }
    }
    if let Some(request) = parse_both::<events::PublishRequest>(bytes) {
        let _ = events::is_event_name(&request.kind);
    }
    let _ = parse_both::<voice::ClientFrame>(bytes);
    if let Some(device::ClientFrame::Scan { tag_id, location }) =
        parse_both::<device::ClientFrame>(bytes)
    {
        let _ = device::check_scan(&tag_id, location.as_deref());
    }
    if let Some(scan) = parse_both::<device::ScanRequest>(bytes) {
        let _ = device::check_scan(&scan.tag_id, scan.location.as_deref());
    }
    if let Some(config) = parse_both::<device::DeviceConfig>(bytes) {
        let _ = config.check();
    }
    if let Some(settings) = parse_both::<device::Settings>(bytes) {
        let _ = settings.check();
    }
}

/// Field names and `type`/`action` values of the client messages, so generated JSON reaches
/// past the tag into the fields.
const WORDS: &[&str] = &[
    "type",
    "action",
    "data",
    "from",
    "id",
    "name",
    "token",
    "events",
    "filters",
    "order",
    "items",
    "cart",
    "idempotencyKey",
    "orderId",
    "status",
    "updatedBy",
    "displayData",
    "timestamp",
    "tenantId",
    "tagId",
    "deviceId",
    "location",
    "registrationMode",
    "scanIntervalMs",
    "quantity",
    "price",
    "splitType",
    "amounts",
    "itemId",
    "sequence",
    "audio",
    "language",
    "sessionId",
    "orderType",
    "paymentMethod",
    "customer",
    "event",
    "utcOffsetMinutes",
    "ping",
    "auth",
    "subscribe",
    "unsubscribe",
    "join",
    "add_item",
    "remove_item",
    "update_quantity",
    "update_split",
    "finalize",
    "leave",
    "submit_order",
    "update_order_status",
    "scan",
    "heartbeat",
    "voice:start",
    "voice:audio",
    "voice:end",
    "dish_card",
    "equal",
    "itemized",
    "custom",
    "pending",
    "preparing",
    "cancelled",
    "order:created",
    "dine-in",
    "",
];

fn json_value() -> impl Strategy<Value = Value> {
    let word = prop::sample::select(WORDS).prop_map(str::to_string);
    let text = prop_oneof![
        3 => word.clone(),
        1 => prop::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text.clone().prop_map(Value::from),
    ];
    let key = text;
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..8)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// Client input: noise, JSON shaped like the messages, or such JSON cut short or with a byte
/// changed.
fn json_input() -> impl Strategy<Value = Vec<u8>> {
    let json = json_value()
        .prop_map(|v| serde_json::to_vec(&v).unwrap_or_default())
        .boxed();
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..256),
        3 => json.clone(),
        1 => (json.clone(), any::<Index>()).prop_map(|(mut bytes, at)| {
            bytes.truncate(at.index(bytes.len() + 1));
            bytes
        }),
        1 => (json, any::<Index>(), any::<u8>()).prop_map(|(mut bytes, at, byte)| {
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            bytes
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    /// Whatever a client sends, parsing it as any client message or request body never panics.
    #[test]
    fn every_json_entry_point_survives_any_input(bytes in json_input()) {
        every_entry_point(&bytes);
    }
}

/// Nesting deeper than any parser should follow, as text: refused, not a stack overflow.
#[test]
fn deeply_nested_json_is_refused_without_overflowing_the_stack() {
    for (open, close) in [("[", "]"), ("{\"type\":", "}"), ("{\"data\":", "}")] {
        let deep = format!("{}1{}", open.repeat(100_000), close.repeat(100_000));
        every_entry_point(deep.as_bytes());
        assert!(parse_json::<Value>(deep.as_bytes()).is_err());
    }
}
