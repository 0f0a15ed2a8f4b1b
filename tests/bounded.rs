//! Bounded state and parked commands (issue 19) against a real nats-server: a display session
//! fed long updates keeps the newest within its byte bound and goes on applying, a collab room
//! fed long items answers `STATE_FULL` and keeps working, a command a handler cannot apply
//! (a poisoned envelope published straight into the input stream) is parked in `TW_PARKED`
//! while the other tenants of its partition are applied, and so is a record the SQL writer can
//! never write. The handlers run in this process so the tests can read their counters: no retry
//! loop, nothing parked that should not be.

mod support;

use async_nats::jetstream;
use serde_json::{Value, json};
use std::time::Duration;
use support::*;
use tablewire_handlers::metrics::{DomainLabel, Metrics, ParkedLabels};
use tablewire_nats::{resource, subject};
use tablewire_schemas::Domain;
use tokio::sync::watch;

/// Handler workers for every domain in this process, with their metrics at hand.
struct Handler {
    metrics: Metrics,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Handler {
    async fn start(url: &str) -> Handler {
        let client = client(url).await;
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Metrics::new(&mut registry);
        let (stop, rx) = watch::channel(false);
        let run = tablewire_handlers::run(client, Default::default(), metrics.clone(), rx);
        let task = tokio::spawn(async move { run.await.expect("handlers run") });
        Handler {
            metrics,
            stop,
            task,
        }
    }

    /// Deliveries handed back to be retried, compare-and-set writes lost, and partition
    /// workers that panicked, in `domain`: all stay at zero when nothing loops.
    fn trouble(&self, domain: Domain) -> (u64, u64, u64) {
        let label = DomainLabel {
            domain: domain.as_str().to_string(),
        };
        (
            self.metrics.retries.get_or_create(&label).get(),
            self.metrics.conflicts.get_or_create(&label).get(),
            self.metrics.partition_panics.get_or_create(&label).get(),
        )
    }

    fn parked(&self, domain: Domain, reason: &str) -> u64 {
        let label = ParkedLabels {
            domain: domain.as_str().to_string(),
            reason: reason.to_string(),
        };
        self.metrics.parked.get_or_create(&label).get()
    }

    fn bounded_batches(&self, domain: Domain) -> u64 {
        let label = DomainLabel {
            domain: domain.as_str().to_string(),
        };
        self.metrics.bounded_batches.get_or_create(&label).get()
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// The raw stored value of a key, straight from KV.
async fn stored_bytes(url: &str, domain: Domain, state_key: &str) -> Option<bytes::Bytes> {
    let kv = jetstream::new(client(url).await)
        .get_key_value(resource::state_bucket(domain))
        .await
        .expect("bucket");
    kv.get(state_key).await.expect("get")
}

/// Every message of the parked stream, oldest first.
async fn parked_messages(url: &str) -> Vec<jetstream::message::StreamMessage> {
    let js = jetstream::new(client(url).await);
    let mut stream = js
        .get_stream(resource::PARKED_STREAM)
        .await
        .expect("parked stream");
    let last = stream.info().await.expect("info").state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        if let Ok(message) = stream.get_raw_message(seq).await {
            out.push(message);
        }
    }
    out
}

fn header(message: &jetstream::message::StreamMessage, name: &str) -> String {
    message
        .headers
        .get(name)
        .map(|v| v.as_str().to_string())
        .unwrap_or_default()
}

/// 20 display updates of 60,000 characters each (transcriptions, so each is kept twice) grew
/// the session past what a NATS message holds: the write failed and was retried forever, and
/// every later update was answered 200 and never applied. Now every update is applied, the
/// oldest are dropped to keep the session within 512 KiB, later updates are applied too, the
/// state reads, and the handler does not loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_long_display_updates_are_applied_within_the_bound_and_later_ones_too() {
    let nats = nats().await;
    let url = nats.client_url().to_string();
    provision(&url, &test_topology()).await;
    let handler = Handler::start(&url).await;
    let edge = InProcessEdge::start(&url, edge_config()).await;
    let session = unique("s");
    let text = "t".repeat(60_000);
    for i in 0..20 {
        let update = json!({"type": "transcription", "displayData": {"text": text, "i": i}});
        let (status, body) = post(
            edge.addr,
            &format!("/session/{session}/update"),
            Some(AUTH_SECRET),
            &update,
        )
        .await;
        assert_eq!(status, 200, "update {i} accepted: {body}");
    }
    update(edge.addr, &session, json!({"i": 20})).await;
    let state_key = resource::state_key("_", &session);
    eventually("all 21 updates applied", || async {
        let Some(bytes) = stored_bytes(&url, Domain::Display, &state_key).await else {
            return false;
        };
        let stored: Value = serde_json::from_slice(&bytes).expect("the state reads");
        stored["seq"] == 21
    })
    .await;
    let bytes = stored_bytes(&url, Domain::Display, &state_key)
        .await
        .expect("state");
    assert!(bytes.len() < 1024 * 1024, "a write fits a message");
    let stored: Value = serde_json::from_slice(&bytes).expect("the state reads");
    let state = &stored["state"];
    let state_len = serde_json::to_vec(state).expect("encode").len();
    assert!(
        state_len <= tablewire_handlers::display::MAX_STATE_BYTES,
        "the session keeps to its bound: {state_len}"
    );
    let index = |list: &str| -> Vec<u64> {
        state[list]
            .as_array()
            .expect("list")
            .iter()
            .map(|u| u["displayData"]["i"].as_u64().expect("i"))
            .collect()
    };
    let updates = index("displayUpdates");
    let transcriptions = index("transcriptions");
    assert_eq!(updates.last(), Some(&20), "the later update is applied");
    assert!(
        updates.windows(2).all(|w| w[1] == w[0] + 1),
        "the newest, oldest dropped first: {updates:?}"
    );
    assert_eq!(transcriptions.last(), Some(&19));
    assert!(
        (3..20).contains(&transcriptions.len()),
        "the oldest dropped, several long ones kept: {}",
        transcriptions.len()
    );
    // What a display gets on connect is that same state.
    let mut display = Ws::connect(edge.addr, &format!("/session/{session}/display")).await;
    let initial = display.next_of("initial_state").await;
    assert_eq!(initial["seq"], 21);
    assert_eq!(handler.trouble(Domain::Display), (0, 0, 0), "no retry loop");
    assert_eq!(handler.parked(Domain::Display, "write_too_big"), 0);
    handler.stop().await;
    edge.drain().await;
}

/// A collab participant in a room, reading what the room sends back.
struct Participant {
    ws: Ws,
    id: String,
    name: String,
}

impl Participant {
    async fn join(addr: std::net::SocketAddr, room: &str, id: &str, name: &str) -> Participant {
        let path = format!(
            "/parties/collaborative_order/{room}?_pk={}&token={}",
            unique("client-"),
            token("t1", "customer", 3600)
        );
        let mut ws = Ws::connect(addr, &path).await;
        assert_eq!(ws.json().await["type"], "sync");
        let mut participant = Participant {
            ws,
            id: id.to_string(),
            name: name.to_string(),
        };
        participant.send("join", Value::Null).await;
        participant.ws.next_of("participant_joined").await;
        participant
    }

    async fn send(&mut self, kind: &str, data: Value) {
        let mut message = json!({"type": kind, "participantId": self.id,
            "participantName": self.name, "timestamp": 1});
        if !data.is_null() {
            message["data"] = data;
        }
        self.ws.send_json(&message).await;
    }

    /// The next frame that answers a change: the change's event, or an error.
    async fn answer(&mut self) -> Value {
        loop {
            let frame = self.ws.json().await;
            let kind = frame["type"].as_str().unwrap_or("");
            if kind == "error" || kind.starts_with("item_") {
                return frame;
            }
        }
    }
}

/// A collab room fed items with every field at its longest (in 4-byte characters) at about
/// 90 a second: each change frame carries the whole order, so its writes outgrew a NATS
/// message and the room stopped. Now the room answers `STATE_FULL` once its state would pass
/// 192 KiB, keeps its items, and still works: removing items and adding one succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collab_room_fed_long_items_answers_state_full_and_keeps_working() {
    let nats = nats().await;
    let url = nats.client_url().to_string();
    provision(&url, &test_topology()).await;
    let handler = Handler::start(&url).await;
    let edge = InProcessEdge::start(&url, edge_config()).await;
    let room = unique("room_");
    let long = |n: usize| "𝄞".repeat(n);
    let mut guest = Participant::join(edge.addr, &room, &long(128), &long(64)).await;
    let item = json!({"dishName": long(120), "dishType": long(32), "customization": long(200),
        "quantity": 1, "price": 100});
    let mut added = Vec::new();
    let mut full = 0;
    // Bursts of 9 changes every 100 ms at most, until the room has refused a whole burst.
    for _ in 0..40 {
        let started = tokio::time::Instant::now();
        for _ in 0..9 {
            guest.send("add_item", item.clone()).await;
        }
        let mut refused = 0;
        for _ in 0..9 {
            let answer = guest.answer().await;
            match answer["type"].as_str() {
                Some("item_added") => added.push(
                    answer["data"]["item"]["id"]
                        .as_str()
                        .expect("id")
                        .to_string(),
                ),
                Some("error") => {
                    assert_eq!(answer["code"], "STATE_FULL", "{answer}");
                    assert_eq!(answer["errorCode"], 3004);
                    refused += 1;
                }
                _ => panic!("unexpected answer {answer}"),
            }
        }
        full += refused;
        if refused == 9 {
            break;
        }
        tokio::time::sleep_until(started + Duration::from_millis(100)).await;
    }
    assert!(full >= 9, "the room refused items once full ({full})");
    assert!(
        added.len() > 20 && added.len() < 200,
        "{} items kept",
        added.len()
    );
    let state_key = resource::state_key("t1", &room);
    let bytes = stored_bytes(&url, Domain::Collab, &state_key)
        .await
        .expect("state");
    let stored: Value = serde_json::from_slice(&bytes).expect("the room's state reads");
    assert_eq!(
        stored["state"]["items"].as_array().map(Vec::len),
        Some(added.len()),
        "every accepted item kept, no refused one"
    );
    let state_len = serde_json::to_vec(&stored["state"]).expect("encode").len();
    assert!(state_len <= tablewire_handlers::collab::MAX_STATE_BYTES);
    // The room still works: make room, then add.
    for id in &added[..2] {
        guest.send("remove_item", json!({"itemId": id})).await;
        assert_eq!(guest.answer().await["type"], "item_removed");
    }
    guest.send("add_item", item.clone()).await;
    assert_eq!(guest.answer().await["type"], "item_added");
    assert_eq!(handler.trouble(Domain::Collab), (0, 0, 0), "no retry loop");
    assert!(
        handler.bounded_batches(Domain::Collab) > 0,
        "refused on the bounded path"
    );
    assert_eq!(handler.parked(Domain::Collab, "write_too_big"), 0);
    handler.stop().await;
    edge.drain().await;
}

/// An envelope as an edge publishes it, for a device `connect`.
fn connect_envelope(tenant: &str, device: &str, edge: &str) -> Value {
    json!({"tenant": tenant, "domain": "device", "key": device, "id": unique("m"),
        "origin": {"edge": edge, "conn": 1}, "at": 1_700_000_000_000i64,
        "command": {"type": "connect"}})
}

/// A command whose envelope's tenant is `"a\nb"` made the device handler panic building a
/// header; it came back and panicked again, and every other command of its partition waited.
/// Published straight into the input stream (one partition, so everyone shares it), it is now
/// parked with its reason, its sender told `COMMAND_PARKED`; so is a message that is no
/// envelope at all; the other tenants' commands are applied and the stream drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_envelope_is_parked_and_other_tenants_of_its_partition_are_applied() {
    let nats = nats().await;
    let url = nats.client_url().to_string();
    let topology = tablewire_nats::Topology {
        partitions: Some(1),
        ..test_topology()
    };
    provision(&url, &topology).await;
    let handler = Handler::start(&url).await;
    let nc = client(&url).await;
    let js = jetstream::new(nc.clone());
    let mut replies = nc
        .subscribe(subject::edge_inbox("edge-x"))
        .await
        .expect("subscribe");
    nc.flush().await.expect("flush");
    let publish = |subject: String, payload: Vec<u8>| {
        let js = js.clone();
        async move {
            js.publish(subject, payload.into())
                .await
                .expect("publish")
                .await
                .expect("stored")
                .sequence
        }
    };
    let poison = serde_json::to_vec(&connect_envelope("a\nb", "reader1", "edge-x")).expect("json");
    let poison_seq = publish(
        subject::input(Domain::Device, "a\nb", "reader1"),
        poison.clone(),
    )
    .await;
    let garbage_seq = publish(
        subject::input(Domain::Device, "t0", "reader1"),
        b"not an envelope".to_vec(),
    )
    .await;
    let tenants: Vec<String> = (1..=5).map(|i| format!("t{i}")).collect();
    for tenant in &tenants {
        let envelope =
            serde_json::to_vec(&connect_envelope(tenant, "reader1", "edge-y")).expect("json");
        publish(subject::input(Domain::Device, tenant, "reader1"), envelope).await;
    }
    for tenant in &tenants {
        let state_key = resource::state_key(tenant, "reader1");
        eventually(&format!("{tenant}'s device connected"), || async {
            let Some(bytes) = stored_bytes(&url, Domain::Device, &state_key).await else {
                return false;
            };
            let stored: Value = serde_json::from_slice(&bytes).expect("reads");
            stored["state"]["online"] == true
        })
        .await;
    }
    let input = resource::input_stream(Domain::Device);
    eventually("every command acknowledged", || {
        let (js, input) = (js.clone(), input.clone());
        async move {
            let mut stream = js.get_stream(input).await.expect("stream");
            stream.info().await.expect("info").state.messages == 0
        }
    })
    .await;
    let parked = parked_messages(&url).await;
    assert_eq!(parked.len(), 2, "the poison and the garbage, once each");
    let poisoned = parked
        .iter()
        .find(|m| header(m, subject::header::PARKED_SEQ) == poison_seq.to_string())
        .expect("the poisoned envelope is parked");
    assert_eq!(poisoned.subject.as_str(), "tw.parked.device.invalid_id");
    assert_eq!(
        header(poisoned, subject::header::PARKED_REASON),
        "invalid_id"
    );
    assert_eq!(header(poisoned, subject::header::PARKED_DOMAIN), "device");
    assert_eq!(header(poisoned, subject::header::PARKED_PARTITION), "0");
    assert!(
        header(poisoned, subject::header::PARKED_DETAIL).contains("tenant"),
        "{}",
        header(poisoned, subject::header::PARKED_DETAIL)
    );
    assert_eq!(&poisoned.payload[..], &poison[..], "kept as it was stored");
    let garbage = parked
        .iter()
        .find(|m| header(m, subject::header::PARKED_SEQ) == garbage_seq.to_string())
        .expect("the garbage is parked");
    assert_eq!(
        header(garbage, subject::header::PARKED_REASON),
        "envelope_unreadable"
    );
    // The poisoned command's sender is told, on its edge's subject.
    let reply = tokio::time::timeout(TIMEOUT, futures::StreamExt::next(&mut replies))
        .await
        .expect("a reply in time")
        .expect("a reply");
    let text = String::from_utf8_lossy(&reply.payload);
    assert!(text.contains("COMMAND_PARKED"), "{text}");
    assert_eq!(handler.parked(Domain::Device, "invalid_id"), 1);
    assert_eq!(handler.parked(Domain::Device, "envelope_unreadable"), 1);
    assert_eq!(handler.trouble(Domain::Device), (0, 0, 0));
    handler.stop().await;
}

/// A record the SQL writer can never write (a display session whose `sessionId` is misspelled)
/// was stored under an empty session id; it is now parked in `TW_PARKED` with its reason and
/// let go from the records stream, while a good record beside it is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_does_not_read_is_parked_not_stored_empty() {
    let nats = nats().await;
    let url = nats.client_url().to_string();
    provision(&url, &test_topology()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}/records.db", dir.path().display());
    let nc = client(&url).await;
    let metrics = Metrics::new(&mut prometheus_client::registry::Registry::default());
    let (stop, rx) = watch::channel(false);
    let writer = tokio::spawn(tablewire_handlers::records::run(
        nc.clone(),
        db.clone(),
        metrics.clone(),
        rx,
    ));
    let js = jetstream::new(nc);
    let records_subject = subject::record(Domain::Display, "t1", "display_session");
    let misspelled = json!({"kind": "display_session", "id": "display:t1.s1:3:0", "tenant": "t1",
        "data": {"sessionID": "s1", "tenantId": "t1", "startedAt": 1, "version": 3}});
    let good = json!({"kind": "display_session", "id": "display:t1.s2:4:0", "tenant": "t1",
        "data": {"sessionId": "s2", "tenantId": "t1", "startedAt": 1, "version": 4}});
    let mut sequences = Vec::new();
    for record in [&misspelled, &good] {
        let payload = serde_json::to_vec(record).expect("json");
        let ack = js
            .publish(records_subject.clone(), payload.into())
            .await
            .expect("publish")
            .await
            .expect("stored");
        sequences.push(ack.sequence);
    }
    eventually("the misspelled record parked", || {
        let url = url.clone();
        async move {
            parked_messages(&url)
                .await
                .iter()
                .any(|m| m.subject.as_str() == "tw.parked.display.record_unreadable")
        }
    })
    .await;
    let pool = tablewire_handlers::store::connect(&db).await.expect("db");
    eventually("the good record written", || {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (i64,)>("SELECT COUNT(*) FROM display_sessions")
                .fetch_one(&pool)
                .await
                .map(|(n,)| n == 1)
                .unwrap_or(false)
        }
    })
    .await;
    let (empty,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM display_sessions WHERE session_id = ''")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(empty, 0, "nothing stored under an empty session id");
    let parked = parked_messages(&url).await;
    assert_eq!(parked.len(), 1);
    assert_eq!(
        header(&parked[0], subject::header::PARKED_REASON),
        "record_unreadable"
    );
    assert_eq!(
        header(&parked[0], subject::header::PARKED_SEQ),
        sequences[0].to_string()
    );
    assert!(
        header(&parked[0], subject::header::PARKED_DETAIL).contains("sessionId"),
        "{}",
        header(&parked[0], subject::header::PARKED_DETAIL)
    );
    assert_eq!(
        &parked[0].payload[..],
        &serde_json::to_vec(&misspelled).expect("json")[..],
        "kept as it was stored"
    );
    let labels = ParkedLabels {
        domain: "display".to_string(),
        reason: "record_unreadable".to_string(),
    };
    assert_eq!(metrics.parked.get_or_create(&labels).get(), 1);
    let _ = stop.send(true);
    let _ = writer.await;
}
