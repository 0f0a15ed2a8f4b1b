//! Every endpoint that takes a JWT reads tokens the way real backends mint them: the tenant
//! under any of its claim names (several that agree are fine, several that disagree are
//! refused with TENANT_CLAIMS_DISAGREE), unknown claims ignored, `nbf` in the future refused,
//! and a tenant that cannot be an id refused before it reaches a subject. Table-driven: each
//! claim shape on each endpoint, against a real nats-server, edge and handler.

mod support;

use serde_json::{Value, json};
use std::net::SocketAddr;
use support::*;

/// A token's payload for tenant `r`, role `role`, with `shape` merged in.
fn payload(role: &str, sub: &str, shape: &Value) -> Value {
    let now = tablewire_edge::auth::now_secs();
    let mut claims = json!({"sub": sub, "role": role, "exp": now + 600, "iat": now});
    if let (Some(target), Some(extra)) = (claims.as_object_mut(), shape.as_object()) {
        for (k, v) in extra {
            target.insert(k.clone(), v.clone());
        }
    }
    claims
}

fn sign(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("sign")
}

/// What an endpoint answered: accepted, or refused with an error code.
#[derive(Debug, PartialEq)]
enum Answer {
    Accepted,
    Refused(String),
}

fn from_http(status: u16, body: &Value, accepted: &[u16]) -> Answer {
    if accepted.contains(&status) {
        return Answer::Accepted;
    }
    let code = body["error"]["code"]
        .as_str()
        .or(body["data"]["code"].as_str())
        .unwrap_or("none");
    Answer::Refused(format!("{status} {code}"))
}

async fn bearer(addr: SocketAddr, method: &str, path: &str, token: &str, body: &Value) -> Answer {
    let auth = format!("Bearer {token}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (status, _, bytes) = send(addr, method, path, &headers, body.to_string()).await;
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    from_http(status, &body, &[200, 201])
}

async fn upgrade(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    let (status, body) = refused_upgrade(addr, path, headers).await;
    from_http(status, &body, &[101])
}

/// The events socket's first-message authentication: `connected`, or an error frame whose
/// code is returned (then close 1008).
async fn first_message(addr: SocketAddr, token: &str) -> Answer {
    let mut ws = Ws::connect(addr, "/ws").await;
    ws.send_json(&json!({"type": "auth", "token": token})).await;
    match ws.read().await {
        Read::Json(frame) if frame["type"] == "connected" => Answer::Accepted,
        Read::Json(frame) => {
            let code = frame["data"]["code"].as_str().unwrap_or("none").to_string();
            assert_eq!(ws.closed().await, Some(1008), "a refused auth closes 1008");
            Answer::Refused(format!("1008 {code}"))
        }
        Read::Close(code) => Answer::Refused(format!("closed {code:?}")),
    }
}

/// Asks every endpoint that takes a JWT with a token of `shape` for tenant `r`; returns what
/// each answered, by endpoint.
async fn ask_every_endpoint(
    addr: SocketAddr,
    tenant: &str,
    shape: &Value,
) -> Vec<(String, Answer)> {
    let token = |role: &str| sign(&payload(role, "user-1", shape));
    let device_token = sign(&payload("device", "reader-1", shape));
    let session = format!("s{}", uuid::Uuid::new_v4().simple());
    let room = format!("room{}", uuid::Uuid::new_v4().simple());
    let order = json!({"order": {"tenantId": tenant, "orderType": "takeout",
        "paymentMethod": "cash", "customer": {"name": "A", "phone": "1"},
        "cart": {"items": [{"name": "Tea", "price": 300, "quantity": 1}]}}});
    let service = token("service");
    let admin = token("admin");
    let staff = token("staff");
    let header = format!("Bearer {staff}");
    vec![
        (
            "GET /ws/restaurant-pos/{tenant}?token=".into(),
            upgrade(
                addr,
                &format!("/ws/restaurant-pos/{tenant}?token={staff}"),
                &[],
            )
            .await,
        ),
        (
            "POST /api/orders".into(),
            bearer(addr, "POST", "/api/orders", &staff, &order).await,
        ),
        (
            "GET /api/orders".into(),
            bearer(
                addr,
                "GET",
                "/api/orders?status=active",
                &staff,
                &Value::Null,
            )
            .await,
        ),
        (
            "PUT /api/pos/settings".into(),
            bearer(
                addr,
                "PUT",
                "/api/pos/settings",
                &admin,
                &json!({"utcOffsetMinutes": 0}),
            )
            .await,
        ),
        (
            "GET /ws (header)".into(),
            upgrade(addr, "/ws", &[("Authorization", header.as_str())]).await,
        ),
        (
            "GET /ws?token=".into(),
            upgrade(addr, &format!("/ws?token={staff}"), &[]).await,
        ),
        (
            "/ws first message".into(),
            first_message(addr, &staff).await,
        ),
        (
            "POST /api/events".into(),
            bearer(
                addr,
                "POST",
                "/api/events",
                &service,
                &json!({"type": "table:updated", "data": {"table": {"id": "t1"}}}),
            )
            .await,
        ),
        (
            "GET /voice-stream?token=".into(),
            upgrade(addr, &format!("/voice-stream?token={staff}"), &[]).await,
        ),
        (
            "GET /parties/collaborative_order/{room}?token=".into(),
            upgrade(
                addr,
                &format!("/parties/collaborative_order/{room}?token={staff}"),
                &[],
            )
            .await,
        ),
        (
            "GET /ws/device?deviceId=&token=".into(),
            upgrade(
                addr,
                &format!("/ws/device?deviceId=reader-1&token={device_token}"),
                &[],
            )
            .await,
        ),
        (
            "GET /api/devices/settings".into(),
            bearer(addr, "GET", "/api/devices/settings", &admin, &Value::Null).await,
        ),
        (
            "POST /session/{id}/update (JWT)".into(),
            bearer(
                addr,
                "POST",
                &format!("/session/{session}/update"),
                &service,
                &json!({"type": "transcription", "displayData": {"text": "hi"}}),
            )
            .await,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_reads_every_claim_shape_the_same_way() {
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let edge = InProcessEdge::start(nats.client_url(), edge_config()).await;
    let _handler = InProcessHandler::start(nats.client_url(), None).await;
    let r = format!("r{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let now = tablewire_edge::auth::now_secs();
    let accepted: Vec<(&str, Value)> = vec![
        ("tenant", json!({"tenant": r})),
        ("tenantId", json!({"tenantId": r})),
        ("tenant_id", json!({"tenant_id": r})),
        ("restaurant_id", json!({"restaurant_id": r})),
        ("restaurantId", json!({"restaurantId": r})),
        ("two that agree", json!({"tenant": r, "restaurant_id": r})),
        (
            "all five agreeing",
            json!({"tenant": r, "tenantId": r, "tenant_id": r,
            "restaurant_id": r, "restaurantId": r}),
        ),
        (
            "unknown claims",
            json!({"tenant": r, "aud": "authenticated",
            "iss": "https://auth.example", "email": "a@b.c", "nbf": now - 10,
            "app_metadata": {"provider": "email"}}),
        ),
    ];
    let refused: Vec<(&str, Value, &str)> = vec![
        (
            "two that disagree",
            json!({"tenant": r, "restaurantId": "elsewhere"}),
            "TENANT_CLAIMS_DISAGREE",
        ),
        (
            "nbf an hour ahead",
            json!({"tenant": r, "nbf": now + 3600}),
            "TOKEN_NOT_YET_VALID",
        ),
        (
            "tenant with a newline",
            json!({"tenant": "a\nb"}),
            "UNAUTHORIZED",
        ),
        (
            "tenant of 10 KiB",
            json!({"tenant": "t".repeat(10 * 1024)}),
            "UNAUTHORIZED",
        ),
    ];
    let mut wrong = Vec::new();
    for (name, shape) in &accepted {
        for (endpoint, answer) in ask_every_endpoint(edge.addr, &r, shape).await {
            if answer != Answer::Accepted {
                wrong.push(format!(
                    "{name} on {endpoint}: {answer:?}, expected accepted"
                ));
            }
        }
    }
    for (name, shape, code) in &refused {
        for (endpoint, answer) in ask_every_endpoint(edge.addr, &r, shape).await {
            let ok = matches!(&answer, Answer::Refused(why)
                if why.ends_with(code) && (why.starts_with("401") || why.starts_with("1008")));
            if !ok {
                wrong.push(format!(
                    "{name} on {endpoint}: {answer:?}, expected 401/1008 {code}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
