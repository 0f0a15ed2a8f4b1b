//! permessage-deflate (issue 22) against a real edge, handler and nats-server: clients that offer
//! it get it without context takeover, compressed and plain frames pass both ways (fragmented
//! ones too), and the large snapshots shrink (the bytes on the wire of a POS `sync_state` of 200
//! orders and of a collab `sync` are printed); clients that offer nothing see plain frames as
//! before; `--permessage-deflate false` declines every offer. Node's `ws`, as browsers' peers
//! use it, talks compressed to the edge in `tests/js/deflate.mjs`.

mod support;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the edge answers an offer with.
const ACCEPTED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// The offer browsers send.
const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// A client speaking frames by hand, so the test sees RSV1 and the bytes on the wire.
struct Raw {
    stream: TcpStream,
    /// The `Sec-WebSocket-Extensions` of the 101, if any.
    extensions: Option<String>,
}

/// One message as it came over the wire.
struct Received {
    /// Bytes on the wire, headers included.
    wire: usize,
    /// RSV1 was set.
    compressed: bool,
    json: Value,
}

impl Raw {
    async fn connect(addr: SocketAddr, path: &str, offer: Option<&str>) -> Raw {
        let offer = offer
            .map(|o| format!("Sec-WebSocket-Extensions: {o}\r\n"))
            .unwrap_or_default();
        let (stream, head) = raw_websocket_with(addr, path, &offer).await;
        let extensions = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-extensions")
                .then(|| value.trim().to_string())
        });
        Raw { stream, extensions }
    }

    /// Sends `text` in `fragments` frames, compressed (RSV1 on the first) or not.
    async fn send(&mut self, text: &str, compress: bool, fragments: usize) {
        let payload = if compress {
            deflate(text.as_bytes())
        } else {
            text.as_bytes().to_vec()
        };
        let size = payload.len().div_ceil(fragments.max(1)).max(1);
        let pieces: Vec<&[u8]> = payload.chunks(size).collect();
        let mut out = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            let fin = if i + 1 == pieces.len() { 0x80 } else { 0 };
            let opcode = if i == 0 { 0x01 } else { 0x00 };
            let rsv1 = if i == 0 && compress { 0x40 } else { 0 };
            out.extend(masked(fin | rsv1 | opcode, piece));
        }
        self.stream.write_all(&out).await.expect("send");
    }

    /// The next data message (pings skipped).
    async fn message(&mut self) -> Received {
        loop {
            let mut head = [0u8; 2];
            self.read(&mut head).await;
            let (len, extra) = match head[1] & 0x7f {
                126 => {
                    let mut l = [0u8; 2];
                    self.read(&mut l).await;
                    (usize::from(u16::from_be_bytes(l)), 2)
                }
                127 => {
                    let mut l = [0u8; 8];
                    self.read(&mut l).await;
                    (usize::try_from(u64::from_be_bytes(l)).expect("length"), 8)
                }
                n => (usize::from(n), 0),
            };
            let mut payload = vec![0u8; len];
            self.read(&mut payload).await;
            assert_eq!(head[0] & 0x80, 0x80, "the edge sends whole messages");
            assert_eq!(head[0] & 0x30, 0, "RSV2 and RSV3 are never set");
            let opcode = head[0] & 0x0f;
            let compressed = head[0] & 0x40 != 0;
            assert!(
                opcode == 1 || !compressed,
                "only data frames are compressed"
            );
            match opcode {
                1 => {
                    let data = if compressed {
                        inflate(&payload)
                    } else {
                        payload
                    };
                    return Received {
                        wire: 2 + extra + len,
                        compressed,
                        json: serde_json::from_slice(&data).expect("JSON"),
                    };
                }
                9 | 10 => continue,
                8 => panic!("closed: {payload:?}"),
                other => panic!("unexpected opcode {other}"),
            }
        }
    }

    /// The next message of `kind`.
    async fn next_of(&mut self, kind: &str) -> Received {
        loop {
            let message = self.message().await;
            if message.json["type"] == kind {
                return message;
            }
        }
    }

    async fn read(&mut self, buf: &mut [u8]) {
        tokio::time::timeout(TIMEOUT, self.stream.read_exact(buf))
            .await
            .expect("a frame in time")
            .expect("read");
    }
}

/// A masked client frame.
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65_536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}

/// `data` compressed as a client with no context takeover sends it (tail stripped).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, FlushCompress::Sync)
        .expect("compress");
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// A compressed message from the edge, inflated.
fn inflate(data: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(data.len() * 20 + 1024);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .expect("the edge's DEFLATE inflates");
    assert_eq!(d.total_in() as usize, input.len(), "output room sufficed");
    out
}

struct Sys {
    _nats: tablewire_nats::NatsServer,
    edge: InProcessEdge,
    handler: InProcessHandler,
}

async fn system(config: tablewire_edge::Config) -> Sys {
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let edge = InProcessEdge::start(nats.client_url(), config).await;
    let handler = InProcessHandler::start(nats.client_url(), None).await;
    Sys {
        _nats: nats,
        edge,
        handler,
    }
}

fn order(n: usize) -> Value {
    json!({"tenantId": "ignored", "orderType": "dine-in", "paymentMethod": "cash",
        "customer": {"name": format!("Guest {n}"), "phone": "555-0100"},
        "cart": {"items": [
            {"id": "i1", "name": "Masala dosa", "price": 120, "quantity": 2},
            {"id": "i2", "name": "Filter coffee", "price": 40, "quantity": 1}
        ], "total": 280},
        "status": "confirmed", "source": "pos"})
}

/// Takes 200 orders for `tenant` over HTTP, four at a time.
async fn two_hundred_orders(addr: SocketAddr, tenant: &str) {
    let auth = format!("Bearer {}", token(tenant, "staff", 600));
    let mut tasks = Vec::new();
    for lane in 0..4 {
        let auth = auth.clone();
        tasks.push(tokio::spawn(async move {
            for n in (lane..200).step_by(4) {
                let headers = [
                    ("Content-Type", "application/json"),
                    ("Authorization", auth.as_str()),
                ];
                let (status, _, body) =
                    send(addr, "POST", "/api/orders", &headers, order(n).to_string()).await;
                assert!(
                    (200..300).contains(&status),
                    "order {n}: {status} {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }));
    }
    for task in tasks {
        task.await.expect("orders taken");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_go_out_compressed_to_clients_that_offer_it_and_plain_to_the_rest() {
    let sys = system(edge_config()).await;
    let addr = sys.edge.addr;

    // POS: a restaurant with 200 active orders.
    let tenant = format!("r{}", uuid::Uuid::new_v4().simple());
    two_hundred_orders(addr, &tenant).await;
    let path = format!(
        "/ws/restaurant-pos/{tenant}?token={}",
        token(&tenant, "staff", 600)
    );
    let mut packed = Raw::connect(addr, &path, Some(OFFER)).await;
    assert_eq!(packed.extensions.as_deref(), Some(ACCEPTED));
    let mut plain = Raw::connect(addr, &path, None).await;
    assert_eq!(plain.extensions, None, "no offer, no extension");
    let small = packed.next_of("sync_state").await;
    let big = plain.next_of("sync_state").await;
    assert!(small.compressed && !big.compressed);
    assert_eq!(
        small.json["activeOrders"].as_array().map(Vec::len),
        Some(200)
    );
    assert_eq!(small.json["activeOrders"], big.json["activeOrders"]);
    assert_eq!(small.json["recentOrders"], big.json["recentOrders"]);
    assert!(
        small.wire * 4 < big.wire,
        "sync_state: {} compressed vs {} plain",
        small.wire,
        big.wire
    );
    eprintln!(
        "wire bytes, POS sync_state of 200 orders: plain {} compressed {} ({:.1}%)",
        big.wire,
        small.wire,
        100.0 * small.wire as f64 / big.wire as f64
    );

    // Client to edge: a compressed order, one fragmented in three, a plain one; answers above
    // the threshold come compressed, a small error frame plain.
    let submit = |name: &str| {
        let mut o = order(0);
        o["customer"]["name"] = json!(name);
        json!({"type": "submit_order", "order": o}).to_string()
    };
    for (name, compress, fragments) in [
        ("Compressed", true, 1),
        ("Fragmented", true, 3),
        ("Plain", false, 2),
    ] {
        packed.send(&submit(name), compress, fragments).await;
        let created = packed.next_of("order_created").await;
        assert_eq!(created.json["order"]["customer"]["name"], name);
        assert!(created.compressed, "order_created is over the threshold");
        let seen = plain.next_of("order_created").await;
        assert!(!seen.compressed);
        assert_eq!(seen.json["order"], created.json["order"]);
    }
    packed.send(r#"{"type":"no_such_type"}"#, true, 1).await;
    let error = packed.next_of("error").await;
    assert!(!error.compressed, "{} bytes go plain", error.wire);

    // Collab: a room with three participants and 24 items.
    let room = format!("room_{}", uuid::Uuid::new_v4().simple());
    let room_path = |pk: &str| {
        format!(
            "/parties/collaborative_order/{room}?_pk={pk}&token={}",
            token("r1", "customer", 3600)
        )
    };
    for who in ["ann", "bob", "cy"] {
        let mut ws = Raw::connect(addr, &room_path(who), Some(OFFER)).await;
        ws.next_of("sync").await;
        let say = |kind: &str, data: Value| {
            let mut message = json!({"type": kind, "participantId": who,
                "participantName": format!("Name {who}"), "timestamp": 1_234_567_890});
            if !data.is_null() {
                message["data"] = data;
            }
            message.to_string()
        };
        ws.send(&say("join", Value::Null), false, 1).await;
        ws.next_of("sync").await;
        for i in 0..8 {
            let item = json!({"dishName": format!("Dish {who} {i}"), "dishType": "veg",
                "quantity": 1 + i % 3, "price": 100 + 10 * i});
            ws.send(&say("add_item", item), i % 2 == 0, 1).await;
            ws.next_of("item_added").await;
        }
    }
    let mut packed = Raw::connect(addr, &room_path("late-1"), Some(OFFER)).await;
    let mut plain = Raw::connect(addr, &room_path("late-2"), None).await;
    let small = packed.next_of("sync").await;
    let big = plain.next_of("sync").await;
    assert!(small.compressed && !big.compressed);
    assert_eq!(
        small.json["data"]["items"].as_array().map(Vec::len),
        Some(24)
    );
    assert_eq!(small.json["data"]["items"], big.json["data"]["items"]);
    assert!(small.wire * 2 < big.wire);
    eprintln!(
        "wire bytes, collab sync of 3 participants and 24 items: plain {} compressed {} ({:.1}%)",
        big.wire,
        small.wire,
        100.0 * small.wire as f64 / big.wire as f64
    );
    sys.handler.stop().await;
    sys.edge.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_permessage_deflate_off_every_offer_is_declined() {
    let config = tablewire_edge::Config {
        permessage_deflate: false,
        ..edge_config()
    };
    let sys = system(config).await;
    let mut ws = Raw::connect(sys.edge.addr, "/session/no-deflate/display", Some(OFFER)).await;
    assert_eq!(ws.extensions, None);
    let initial = ws.next_of("initial_state").await;
    assert!(!initial.compressed);
    // RSV1 without the extension is a protocol error.
    ws.send(r#"{"type":"ping"}"#, true, 1).await;
    let mut rest = Vec::new();
    tokio::time::timeout(TIMEOUT, ws.stream.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .expect("read");
    // Frames up to the close (all short here): the close's code.
    let mut close = None;
    let mut at = 0;
    while at + 2 <= rest.len() && close.is_none() {
        let len = usize::from(rest[at + 1] & 0x7f);
        assert!(len < 126, "short frames only: {rest:02x?}");
        if rest[at] == 0x88 && len >= 2 {
            close = Some(u16::from_be_bytes([rest[at + 2], rest[at + 3]]));
        }
        at += 2 + len;
    }
    assert_eq!(close, Some(1002));
    sys.handler.stop().await;
    sys.edge.drain().await;
}

/// Node's `ws` (what the seeds' Node clients and servers use; it offers permessage-deflate by
/// default) sends compressed and plain messages and reads what the edge sends either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ws_with_and_without_compression_sees_the_same_traffic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        dir.join("node_modules/ws").is_dir(),
        "the npm package ws is missing: run `npm ci --prefix tests/js` (scripts/test does)"
    );
    let sys = system(edge_config()).await;
    let tenant = format!("r{}", uuid::Uuid::new_v4().simple());
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::process::Command::new("node")
            .arg(dir.join("deflate.mjs"))
            .env("TW_WS", format!("ws://{}", sys.edge.addr))
            .env("TW_TENANT", &tenant)
            .env("TW_TOKEN", token(&tenant, "staff", 600))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("node finishes in time")
    .expect("node runs (Node 18 or newer is required)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "deflate.mjs failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("tw:result \"ok\""), "{stdout}");
    sys.handler.stop().await;
    sys.edge.drain().await;
}
