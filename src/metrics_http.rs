//! A small HTTP server for processes without an edge (`tablewire handler`): `GET /metrics`
//! (Prometheus text) and `GET /healthz`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

/// Serves `registry` on `addr` until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics listening");
    loop {
        let (tcp, _) = tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let registry = registry.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(answer(&registry, request.uri().path()))
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn answer(registry: &Registry, path: &str) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/metrics" => {
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, registry) {
                Ok(()) => (StatusCode::OK, text),
                Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, String::new()),
            }
        }
        "/healthz" => (StatusCode::OK, r#"{"status":"ok"}"#.to_string()),
        _ => (
            StatusCode::NOT_FOUND,
            r#"{"error":{"code":"NOT_FOUND"}}"#.to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
