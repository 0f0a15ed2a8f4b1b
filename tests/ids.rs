//! Ids from paths and query strings are decoded strictly: bytes that are not UTF-8 once
//! percent-decoded are refused with INVALID_ID rather than turned into U+FFFD (which made
//! `%FF` and `%FE` the same session), on every route that takes an id.

mod support;

use serde_json::Value;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_that_are_not_utf8_are_refused_on_every_route() {
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let mut config = edge_config();
    config.device_auth = tablewire_edge::DeviceAuth::None {
        tenant: "r1".into(),
    };
    let edge = InProcessEdge::start(nats.client_url(), config).await;
    let staff = format!("Bearer {}", token("r1", "admin", 600));
    for bad in ["%FF", "%FE", "a%C3", "%ED%A0%80"] {
        let requests = [
            ("GET", format!("/session/{bad}/state")),
            ("POST", format!("/session/{bad}/init")),
            ("GET", format!("/session/{bad}/display")),
            ("GET", format!("/parties/collaborative_order/{bad}")),
            ("GET", format!("/ws/restaurant-pos/{bad}")),
            ("PATCH", format!("/api/orders/{bad}")),
            ("PUT", format!("/api/devices/{bad}/config")),
            ("GET", format!("/ws/device?deviceId={bad}")),
        ];
        for (method, path) in requests {
            let headers = [("Authorization", staff.as_str())];
            let (status, _, body) = send(edge.addr, method, &path, &headers, "{}").await;
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (400, Some("INVALID_ID")),
                "{method} {path}: {body}"
            );
        }
    }
    // The same ids spelled in valid UTF-8 are still served.
    let (status, _, _) = send(edge.addr, "GET", "/session/caf%C3%A9/state", &[], "").await;
    assert_eq!(status, 200);
}
