//! The API documents and the screens as a real edge serves them: `/openapi.json` and
//! `/asyncapi.json` validate with established validators (tests/js/validate-api-docs.mjs:
//! @apidevtools/swagger-parser, @asyncapi/parser; `npm ci --prefix tests/js`, which scripts/test
//! runs), the route table behind them matches the routes the edge serves, and `/app/` serves the
//! screens, with `/app/dev.json` only under `tablewire dev`.

mod support;

use bytes::Bytes;
use std::path::Path;
use std::process::Command;
use support::*;
use tablewire_edge::api_docs::endpoints::{ENDPOINTS, Kind};
use tablewire_edge::config::DevLogin;

async fn edge(dev_login: Option<DevLogin>) -> (tablewire_nats::NatsServer, InProcessEdge) {
    let nats = nats().await;
    provision(nats.client_url(), &test_topology()).await;
    let mut config = edge_config();
    config.dev_login = dev_login;
    let edge = InProcessEdge::start(nats.client_url(), config).await;
    (nats, edge)
}

fn content_type(headers: &hyper::HeaderMap) -> String {
    headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn served_documents_are_valid_openapi_and_asyncapi() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    for package in ["@apidevtools/swagger-parser", "@asyncapi/parser"] {
        assert!(
            js.join("node_modules").join(package).is_dir(),
            "the npm package {package} is missing: run `npm ci --prefix tests/js` (scripts/test does)"
        );
    }
    let (_nats, edge) = edge(None).await;
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, version_field, version) in [
        ("/openapi.json", "openapi", "3.1.0"),
        ("/asyncapi.json", "asyncapi", "3.0.0"),
    ] {
        let (status, headers, body) = send(edge.addr, "GET", path, &[], Bytes::new()).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(content_type(&headers), "application/json", "{path}");
        let document: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(document[version_field], version, "{path}");
        std::fs::write(dir.path().join(&path[1..]), &body).expect("write document");
    }
    let output = Command::new("node")
        .arg(js.join("validate-api-docs.mjs"))
        .arg(dir.path().join("openapi.json"))
        .arg(dir.path().join("asyncapi.json"))
        .current_dir(&js)
        .output()
        .expect("node runs (Node 18 or newer is required)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the documents do not validate\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("openapi: valid") && stdout.contains("asyncapi: valid"));
}

#[tokio::test]
async fn documents_cover_the_route_table_and_the_subjects() {
    let openapi = tablewire_edge::api_docs::openapi();
    let asyncapi = tablewire_edge::api_docs::asyncapi();
    for endpoint in ENDPOINTS {
        match endpoint.kind {
            Kind::Http { .. } => assert!(
                openapi["paths"][endpoint.path][endpoint.method.to_ascii_lowercase()].is_object(),
                "{} {} not in the OpenAPI document",
                endpoint.method,
                endpoint.path
            ),
            Kind::WebSocket { .. } => assert!(
                asyncapi["channels"]
                    .as_object()
                    .expect("channels")
                    .values()
                    .any(|c| c["address"] == endpoint.path),
                "socket {} not in the AsyncAPI document",
                endpoint.path
            ),
        }
    }
    let addresses: Vec<&str> = asyncapi["channels"]
        .as_object()
        .expect("channels")
        .values()
        .filter_map(|c| c["address"].as_str())
        .collect();
    for subject in [
        "tw.in.pos.{tenant}.{key}",
        "tw.out.device.{tenant}.{key}",
        "tw.rec.collab.{tenant}.{kind}",
        "tw.parked.voice.{reason}",
        "tw.edge.{edge}",
        tablewire_nats::subject::TRANSCRIBE,
    ] {
        assert!(
            addresses.contains(&subject),
            "{subject} missing: {addresses:?}"
        );
    }
}

/// A path of the table with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{file}", "index.html")
        .split('/')
        .map(|s| if s.starts_with('{') { "x1" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let login = DevLogin {
        token: "t".into(),
        tenant: "demo".into(),
    };
    let (_nats, edge) = edge(Some(login)).await;
    for endpoint in ENDPOINTS {
        let path = concrete(endpoint.path);
        let (status, _, body) = send(edge.addr, endpoint.method, &path, &[], Bytes::new()).await;
        let code = serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default()["error"]
            ["code"]
            .clone();
        assert!(
            !(status == 404 && code == "NOT_FOUND") && status != 405,
            "{} {path} (documented as {}) is not served: {status} {code}",
            endpoint.method,
            endpoint.path
        );
    }
}

/// The paths the edge's router names, read from its source: every axum `.route("/api/orders", …)`.
fn served_paths() -> Vec<String> {
    let mut paths = Vec::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("edge/src");
    let mut files = vec![src];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read edge/src").flatten() {
                files.push(entry.path());
            }
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read source");
        for piece in text.split(".route(\"").skip(1) {
            if let Some((route, _)) = piece.split_once('"') {
                paths.push(route.to_string());
            }
        }
    }
    paths
}

/// Whether a router path (`{x}` matches any segment, `{x @ ..}` the rest) covers a documented one.
fn covers(served: &str, documented: &str) -> bool {
    let served: Vec<&str> = served.split('/').filter(|s| !s.is_empty()).collect();
    let documented: Vec<&str> = documented.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(last) = served.last()
        && last.contains("..")
    {
        let fixed = served.len() - 1;
        return documented.len() >= fixed
            && served[..fixed]
                .iter()
                .zip(&documented)
                .all(|(s, d)| s.starts_with('{') || s == d);
    }
    served.len() == documented.len()
        && served
            .iter()
            .zip(&documented)
            .all(|(s, d)| s.starts_with('{') || d.starts_with('{') || s == d)
}

#[test]
fn every_served_route_is_documented() {
    let served = served_paths();
    assert!(
        served.len() >= 10,
        "the router's paths were not found in edge/src: {served:?}"
    );
    for path in &served {
        assert!(
            ENDPOINTS.iter().any(|e| covers(path, e.path)),
            "the edge serves {path}, which has no entry in edge/src/api_docs/endpoints.rs"
        );
    }
}

#[tokio::test]
async fn app_serves_the_screens_and_dev_json_only_under_dev() {
    let (_nats, plain) = edge(None).await;
    let (status, headers, body) = send(plain.addr, "GET", "/app/", &[], Bytes::new()).await;
    assert_eq!(status, 200);
    assert_eq!(content_type(&headers), "text/html; charset=utf-8");
    let index = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/app/index.html"))
        .expect("clients/app/index.html");
    assert_eq!(body.as_ref(), index.as_slice(), "/app/ is index.html");
    for (path, wanted) in [
        ("/app/kitchen.html", "text/html; charset=utf-8"),
        ("/app/app.css", "text/css; charset=utf-8"),
        ("/app/lib/index.js", "text/javascript; charset=utf-8"),
    ] {
        let (status, headers, _) = send(plain.addr, "GET", path, &[], Bytes::new()).await;
        assert_eq!(
            (status, content_type(&headers).as_str()),
            (200, wanted),
            "{path}"
        );
    }
    let (status, headers, _) = send(plain.addr, "GET", "/app", &[], Bytes::new()).await;
    assert_eq!(status, 308);
    assert_eq!(
        headers.get("location").map(|v| v.as_bytes()),
        Some(&b"/app/"[..])
    );
    let (status, _, _) = send(plain.addr, "GET", "/app/nothing.html", &[], Bytes::new()).await;
    assert_eq!(status, 404);
    let (status, _, _) = send(plain.addr, "GET", "/app/dev.json", &[], Bytes::new()).await;
    assert_eq!(status, 404, "no dev.json outside tablewire dev");

    let login = DevLogin {
        token: "dev-token".into(),
        tenant: "demo".into(),
    };
    let (_nats2, dev) = edge(Some(login)).await;
    let (status, headers, body) = send(dev.addr, "GET", "/app/dev.json", &[], Bytes::new()).await;
    assert_eq!(status, 200);
    assert_eq!(content_type(&headers), "application/json");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(
        body,
        serde_json::json!({"token": "dev-token", "tenant": "demo"})
    );
}
