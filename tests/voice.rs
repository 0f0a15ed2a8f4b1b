//! Seed 004's voice stream against a real nats-server: chunks sent out of order and twice
//! reach a transcriber (a real NATS service in this test, on `tw.svc.transcribe`) in order and
//! once; with no transcriber the client gets TRANSCRIBER_UNAVAILABLE and the audio is kept.

mod support;

use futures::StreamExt;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use support::*;
use tablewire_nats::{resource, subject};
use tablewire_schemas::Domain;
use tablewire_schemas::voice::{TranscribeRequest, Transcript};

/// Requests the test transcriber received: (session, request id, chunk sequences, is_final).
type Received = Arc<Mutex<Vec<(String, u64, Vec<u64>, bool)>>>;

/// A transcriber on NATS: answers each request with the sequences it got so far.
async fn transcriber(url: &str) -> (Received, tokio::task::JoinHandle<()>) {
    let nats = client(url).await;
    let mut requests = nats
        .queue_subscribe(subject::TRANSCRIBE, subject::TRANSCRIBER_GROUP.to_string())
        .await
        .expect("subscribe");
    nats.flush().await.expect("flush");
    let received: Received = Arc::default();
    let seen = received.clone();
    let task = tokio::spawn(async move {
        while let Some(message) = requests.next().await {
            let request: TranscribeRequest =
                serde_json::from_slice(&message.payload).expect("a transcribe request");
            let sequences: Vec<u64> = request.chunks.iter().map(|c| c.sequence).collect();
            let text = request
                .chunks
                .iter()
                .map(|c| c.audio.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            seen.lock().expect("lock").push((
                request.session_id.clone(),
                request.request_id,
                sequences,
                request.is_final,
            ));
            let reply = Transcript {
                text,
                confidence: 0.9,
                is_final: request.is_final,
            };
            if let Some(inbox) = message.reply {
                let _ = nats
                    .publish(inbox, serde_json::to_vec(&reply).expect("json").into())
                    .await;
            }
        }
    });
    (received, task)
}

/// A voice socket of a staff member of a new restaurant, past its `connected` frame.
async fn staff_voice_socket(edge: std::net::SocketAddr) -> Ws {
    let tenant = format!("r{}", uuid::Uuid::new_v4().simple());
    let auth = format!("Bearer {}", token(&tenant, "staff", 600));
    let mut ws =
        Ws::connect_with_headers(edge, "/voice-stream", &[("Authorization", auth.as_str())])
            .await
            .expect("upgrade");
    assert_eq!(ws.json().await["type"], "connected");
    ws
}

fn audio(sequence: u64, text: &str) -> Value {
    // The test transcriber reads the "audio" as text, so the order shows in transcripts.
    json!({"type": "voice:audio", "data": {"audio": text, "sequence": sequence}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_3_1_2_2_reach_the_transcriber_as_1_2_3_once_and_nothing_is_lost_without_one() {
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let edge = InProcessEdge::start(nats.client_url(), edge_config()).await;
    let handler = InProcessHandler::start(nats.client_url(), None).await;
    let tenant = format!("r{}", uuid::Uuid::new_v4().simple());

    // Auth by first message, as the seed's browser client does.
    let mut ws = Ws::connect(edge.addr, "/voice-stream").await;
    ws.send_json(&json!({"type": "auth", "token": token(&tenant, "staff", 600)}))
        .await;
    assert_eq!(ws.json().await["type"], "connected");

    // No transcriber yet: an error code saying so, and the audio stays in the session.
    ws.send_json(
        &json!({"type": "voice:start", "data": {"session_id": "early", "language": "en-US"}}),
    )
    .await;
    ws.send_json(&audio(1, "one")).await;
    let error = ws.next_of("error").await;
    assert_eq!(error["data"]["code"], "TRANSCRIBER_UNAVAILABLE", "{error}");
    assert_eq!(error["data"]["retryable"], true);
    let js = async_nats::jetstream::new(client(nats.client_url()).await);
    let kv = js
        .get_key_value(resource::state_bucket(Domain::Voice))
        .await
        .expect("voice bucket");
    let stored = kv
        .get(resource::state_key(&tenant, "early"))
        .await
        .expect("read")
        .expect("session state");
    let stored: Value = serde_json::from_slice(&stored).expect("json");
    assert_eq!(
        stored["state"]["audio"][0]["audio"], "one",
        "audio kept: {stored}"
    );

    // With a transcriber, the kept audio goes with the next chunk.
    let (received, task) = transcriber(nats.client_url()).await;
    ws.send_json(&audio(2, "two")).await;
    let transcript = ws.next_of("voice:transcript").await;
    assert_eq!(transcript["data"]["text"], "one two", "{transcript}");
    assert_eq!(transcript["data"]["is_final"], false);

    // A new session: chunks 3, 1, 2, 2.
    ws.send_json(
        &json!({"type": "voice:start", "data": {"session_id": "s2", "language": "en-US"}}),
    )
    .await;
    for (sequence, text) in [(3, "three"), (1, "one"), (2, "two"), (2, "two")] {
        ws.send_json(&audio(sequence, text)).await;
    }
    ws.send_json(&json!({"type": "voice:end", "data": {"session_id": "s2", "duration": 3}}))
        .await;
    let mut texts = Vec::new();
    loop {
        let t = ws.next_of("voice:transcript").await;
        texts.push(t["data"]["text"].as_str().unwrap_or_default().to_string());
        if t["data"]["is_final"] == true {
            break;
        }
    }
    let requests: Vec<_> = received
        .lock()
        .expect("lock")
        .iter()
        .filter(|r| r.0 == "s2")
        .cloned()
        .collect();
    let sequences: Vec<u64> = requests.iter().flat_map(|r| r.2.clone()).collect();
    assert_eq!(sequences, vec![1, 2, 3], "in order, once: {requests:?}");
    let ids: Vec<u64> = requests.iter().map(|r| r.1).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids, unique, "no request sent twice");
    assert!(
        requests.last().is_some_and(|r| r.3),
        "the last request is final"
    );
    assert_eq!(texts.concat().replace(' ', ""), "onetwothree");

    // Bad input on the voice socket: error frames, the connection stays.
    for (input, detail) in [
        (r#"{"type":"voice:audio","data":{"sequence":"x"}}"#, None),
        (r#"{"type":"voice:sing"}"#, Some("UNKNOWN_TYPE")),
        ("{nope", Some("MALFORMED_JSON")),
    ] {
        ws.send_text(input).await;
        let error = ws.next_of("error").await;
        assert_eq!(error["data"]["code"], "INVALID_MESSAGE", "{input}");
        assert_eq!(error["data"]["detail"].as_str(), detail, "{input}");
    }
    ws.send_json(&json!({"type": "ping"})).await;
    assert_eq!(ws.next_of("pong").await["type"], "pong");
    task.abort();
    handler.stop().await;
}

/// What the stand-in endpoint received: (path and authorization, body) per call.
type Calls = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A stand-in for an OpenAI-compatible endpoint: records each request body, answers a text.
async fn transcription_endpoint() -> (String, Calls) {
    use http_body_util::{BodyExt, Full};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let bodies: Calls = Arc::default();
    let seen = bodies.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen = seen.clone();
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let path = request.uri().path().to_string();
                        let auth = request
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        let body = request
                            .into_body()
                            .collect()
                            .await
                            .expect("body")
                            .to_bytes();
                        seen.lock()
                            .expect("lock")
                            .push((format!("{path} {auth}"), body.to_vec()));
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            bytes::Bytes::from_static(br#"{"text":"hello there"}"#),
                        )))
                    }
                },
            );
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_adapter_transcribes_the_whole_recording_in_order() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let edge = InProcessEdge::start(nats.client_url(), edge_config()).await;
    let handler = InProcessHandler::start(nats.client_url(), None).await;
    let (url, bodies) = transcription_endpoint().await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let adapter = tokio::spawn(tablewire_handlers::transcriber::run(
        client(nats.client_url()).await,
        tablewire_handlers::transcriber::Config {
            url,
            api_key: Some("sk-test".into()),
            ..Default::default()
        },
        stopped,
    ));
    let mut ws = staff_voice_socket(edge.addr).await;
    ws.send_json(
        &json!({"type": "voice:start", "data": {"session_id": "v1", "language": "en-US"}}),
    )
    .await;
    // Wait for the adapter's subscription by sending once it answers (its first answer is an
    // empty partial transcript, which clients never see).
    for (sequence, text) in [(2, "lo"), (1, "hel")] {
        ws.send_json(
            &json!({"type": "voice:audio", "data": {"audio": b64(text), "sequence": sequence}}),
        )
        .await;
    }
    ws.send_json(&json!({"type": "voice:end", "data": {"session_id": "v1", "duration": 1}}))
        .await;
    let transcript = loop {
        let frame = ws.json().await;
        match frame["type"].as_str() {
            Some("voice:transcript") => break frame,
            // The adapter may not have subscribed yet when the first request went out: the
            // audio is kept and sent with the next message.
            Some("error") => {
                assert_eq!(frame["data"]["code"], "TRANSCRIBER_UNAVAILABLE");
                ws.send_json(&json!({"type": "voice:end", "data": {"session_id": "v1"}}))
                    .await;
            }
            _ => {}
        }
    };
    assert_eq!(transcript["data"]["text"], "hello there");
    assert_eq!(transcript["data"]["is_final"], true);
    let bodies = bodies.lock().expect("lock").clone();
    assert_eq!(bodies.len(), 1, "one call for the whole recording");
    let (head, body) = &bodies[0];
    assert_eq!(head, "/v1/audio/transcriptions Bearer sk-test");
    let body = String::from_utf8_lossy(body);
    assert!(body.contains("name=\"model\"\r\n\r\nwhisper-1"), "{body}");
    assert!(body.contains("name=\"language\"\r\n\r\nen\r\n"), "{body}");
    assert!(
        body.contains("\r\n\r\nhello\r\n--"),
        "audio in sequence order: {body}"
    );
    let _ = stop.send(true);
    let _ = adapter.await;
    handler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_1001st_message_in_a_minute_waits_and_the_voice_socket_stays_usable() {
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let clock = tablewire_edge::limit::LimitClock::frozen();
    let config = tablewire_edge::Config {
        rate_limit_clock: clock.clone(),
        ..edge_config()
    };
    let edge = InProcessEdge::start(nats.client_url(), config).await;
    let handler = InProcessHandler::start(nats.client_url(), None).await;
    let mut ws = staff_voice_socket(edge.addr).await;

    // The clock stands still: 1000 messages pass, whatever the machine's speed.
    ws.send_json(
        &json!({"type": "voice:start", "data": {"session_id": "busy", "language": "en-US"}}),
    )
    .await;
    for _ in 1..1000 {
        ws.send_json(&json!({"type": "ping"})).await;
        assert_eq!(ws.next_of("pong").await["type"], "pong");
    }
    ws.send_json(&json!({"type": "ping"})).await;
    let limited = ws.next_of("error").await;
    assert_eq!(limited["data"]["code"], "RATE_LIMITED", "{limited}");
    assert_eq!(limited["data"]["retryable"], true);
    let wait = limited["data"]["retryAfterMs"]
        .as_u64()
        .expect("a retry-after");
    // 1000 a minute: one more every 60 ms.
    assert!((1..=60).contains(&wait), "retry after {wait} ms");

    // Still refused until the retry-after has passed, then usable again: the session started
    // before the limit ends normally.
    ws.send_json(&json!({"type": "ping"})).await;
    assert_eq!(ws.next_of("error").await["data"]["code"], "RATE_LIMITED");
    clock.advance(std::time::Duration::from_millis(wait));
    ws.send_json(&json!({"type": "ping"})).await;
    assert_eq!(ws.next_of("pong").await["type"], "pong");
    clock.advance(std::time::Duration::from_millis(60));
    let (received, task) = transcriber(nats.client_url()).await;
    ws.send_json(&json!({"type": "voice:end", "data": {"session_id": "busy", "duration": 1}}))
        .await;
    let last = ws.next_of("voice:transcript").await;
    assert_eq!(last["data"]["is_final"], true, "{last}");
    assert!(
        received
            .lock()
            .expect("lock")
            .iter()
            .any(|r| r.0 == "busy" && r.3),
        "the transcriber got the final request"
    );
    task.abort();
    handler.stop().await;
}
