//! The handlers' one outbound HTTP client, for `http://` and `https://` alike: [`Endpoint`] checks
//! a URL once (at startup), [`HttpClient`] trusts the system's roots plus any extra ones and
//! keeps HTTP/1.1 connections alive between requests (hyper-util's pooled client over
//! hyper-rustls), so a busy webhook or transcriber is not a TCP and TLS handshake per request.
//! Used by the collab webhook and the transcriber adapter.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::CertificateDer;
use std::sync::Arc;
use std::time::Duration;

/// Why a URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all.
    #[error("{url:?} is not a URL: {why}")]
    Invalid {
        /// The URL as given.
        url: String,
        /// What the parser said.
        why: String,
    },
    /// A scheme other than `http` or `https` (or none).
    #[error("{url:?}: only http:// and https:// URLs are supported")]
    Scheme {
        /// The URL as given.
        url: String,
    },
    /// No host, or user credentials in the URL.
    #[error("{url:?}: {why}")]
    Authority {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The TLS client could not be set up.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// No connection (TCP or TLS handshake).
    #[error("connect to {endpoint}: {why}")]
    Connect {
        /// The endpoint's URL.
        endpoint: String,
        /// What failed.
        why: String,
    },
    /// The connection broke before a whole answer came.
    #[error("HTTP: {0}")]
    Http(String),
    /// The answer's body was longer than [`MAX_ANSWER_BYTES`]; it was not read further.
    #[error("answer (status {status}) longer than {MAX_ANSWER_BYTES} bytes")]
    TooLarge {
        /// The answer's HTTP status, which came before the body.
        status: u16,
    },
}

/// The longest answer body read (a transcript or a webhook receipt is far smaller): an endpoint
/// that sends more cannot make a handler hold it in memory.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// How long a connection may wait unused for its next request before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Unused connections kept per host.
const MAX_IDLE_PER_HOST: usize = 8;

/// A checked `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    url: String,
    tls: bool,
    /// The URL as requests carry it (absolute; sent in origin form).
    uri: hyper::Uri,
    /// The `Host` header: the host, and the port when it is not the scheme's default.
    authority: String,
}

impl Endpoint {
    /// Checks `url`: `http://` or `https://`, a host, no credentials.
    pub fn parse(url: &str) -> Result<Endpoint, UrlError> {
        let uri: hyper::Uri =
            url.parse()
                .map_err(|e: hyper::http::uri::InvalidUri| UrlError::Invalid {
                    url: url.to_string(),
                    why: e.to_string(),
                })?;
        let tls = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(UrlError::Scheme {
                    url: url.to_string(),
                });
            }
        };
        let authority = |why| UrlError::Authority {
            url: url.to_string(),
            why,
        };
        let parts = uri.authority().ok_or_else(|| authority("no host"))?;
        if parts.as_str().contains('@') {
            return Err(authority("credentials in the URL are not supported"));
        }
        let host = parts.host();
        if host.is_empty() {
            return Err(authority("no host"));
        }
        let default_port = if tls { 443 } else { 80 };
        let port = parts.port_u16().unwrap_or(default_port);
        let host_header = if port == default_port {
            host.to_string()
        } else {
            format!("{host}:{port}")
        };
        Ok(Endpoint {
            url: url.to_string(),
            tls,
            uri,
            authority: host_header,
        })
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether requests go over TLS (`https://`).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// A request to this endpoint: its URL and `Host` header set; add headers and a body.
    pub fn request(&self, method: hyper::Method) -> hyper::http::request::Builder {
        hyper::Request::builder()
            .method(method)
            .uri(self.uri.clone())
            .header(hyper::header::HOST, self.authority.as_str())
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

/// An answer: status and whole body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

/// Sends requests to [`Endpoint`]s. Build one per task and keep it: building reads the system's
/// root certificates, and the client keeps its connections for the next request.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpClient {
    /// A client trusting the system's root certificates (`SSL_CERT_FILE` / `SSL_CERT_DIR` when
    /// set) and `extra_roots` (a private CA; tests).
    pub fn new(extra_roots: &[CertificateDer<'static>]) -> Result<HttpClient, HttpError> {
        Self::with_idle_timeout(extra_roots, IDLE_TIMEOUT)
    }

    /// As [`HttpClient::new`], closing connections unused for `idle_timeout`.
    fn with_idle_timeout(
        extra_roots: &[CertificateDer<'static>],
        idle_timeout: Duration,
    ) -> Result<HttpClient, HttpError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // A certificate the store cannot use is skipped, as browsers do.
            let _ = roots.add(cert);
        }
        for cert in extra_roots {
            roots
                .add(cert.clone())
                .map_err(|e| HttpError::Tls(format!("extra root certificate: {e}")))?;
        }
        if roots.is_empty() {
            tracing::warn!(
                errors = ?native.errors,
                "no trusted root certificates found; https:// requests will fail"
            );
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .build();
        // The idle timeout needs the timer: without one, hyper keeps unused connections open.
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(idle_timeout)
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .build(connector);
        Ok(HttpClient { client })
    }

    /// Sends `request` (made with [`Endpoint::request`]) to `endpoint`, over a kept connection
    /// when one is free, and reads the whole answer. A request that a kept connection's server
    /// had closed before it was sent goes again over a new one. No timeout of its own: callers
    /// wrap it in theirs.
    pub async fn send(
        &self,
        endpoint: &Endpoint,
        request: hyper::Request<Full<Bytes>>,
    ) -> Result<Answer, HttpError> {
        let response = self.client.request(request).await.map_err(|e| {
            let why = error_chain(&e);
            if e.is_connect() {
                HttpError::Connect {
                    endpoint: endpoint.url.clone(),
                    why,
                }
            } else {
                HttpError::Http(why)
            }
        })?;
        let status = response.status().as_u16();
        let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    HttpError::TooLarge { status }
                } else {
                    HttpError::Http(error_chain(e.as_ref()))
                }
            })?
            .to_bytes();
        Ok(Answer { status, body })
    }
}

/// An error and its causes, outermost first ("client error (Connect): tcp connect error: …").
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A request without a body to `endpoint`.
    fn empty(endpoint: &Endpoint, method: hyper::Method) -> hyper::Request<Full<Bytes>> {
        endpoint
            .request(method)
            .body(Full::new(Bytes::new()))
            .expect("request")
    }

    #[test]
    fn http_and_https_urls_are_accepted_with_their_default_ports() {
        let plain = Endpoint::parse("http://hooks.example.com/orders?x=1").expect("http");
        assert!(!plain.is_tls());
        assert_eq!(plain.uri, "http://hooks.example.com/orders?x=1");
        assert_eq!(plain.authority, "hooks.example.com");
        let secure = Endpoint::parse("HTTPS://hooks.example.com").expect("https");
        assert!(secure.is_tls());
        assert_eq!(secure.authority, "hooks.example.com");
        let local = Endpoint::parse("https://127.0.0.1:8443/hook").expect("port");
        assert_eq!(local.authority, "127.0.0.1:8443");
        let v6 = Endpoint::parse("http://[::1]:9000/").expect("ipv6");
        assert_eq!(v6.authority, "[::1]:9000");
        let request = empty(&local, hyper::Method::POST);
        assert_eq!(request.uri(), "https://127.0.0.1:8443/hook");
        assert_eq!(request.headers()[hyper::header::HOST], "127.0.0.1:8443");
    }

    #[test]
    fn other_schemes_and_unusable_urls_are_refused() {
        for url in ["ftp://example.com/x", "ws://example.com/x", "/orders"] {
            assert!(
                matches!(Endpoint::parse(url), Err(UrlError::Scheme { .. })),
                "{url}: {:?}",
                Endpoint::parse(url)
            );
        }
        for url in ["file:///etc/passwd", "example.com/orders", ""] {
            assert!(Endpoint::parse(url).is_err(), "{url}");
        }
        assert!(matches!(
            Endpoint::parse("http://user:pw@example.com/"),
            Err(UrlError::Authority { .. })
        ));
        assert!(matches!(
            Endpoint::parse("http://exa mple.com/"),
            Err(UrlError::Invalid { .. })
        ));
        let message = Endpoint::parse("ftp://example.com/x")
            .expect_err("ftp")
            .to_string();
        assert!(message.contains("http:// and https://"), "{message}");
    }

    #[tokio::test]
    async fn an_answer_longer_than_the_limit_is_refused_not_kept() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let size = MAX_ANSWER_BYTES + 1;
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n");
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&vec![b'x'; size]).await;
        });
        let endpoint = Endpoint::parse(&format!("http://{addr}/big")).expect("url");
        let request = empty(&endpoint, hyper::Method::GET);
        let client = HttpClient::new(&[]).expect("client");
        let answer = client.send(&endpoint, request).await;
        assert!(
            matches!(answer, Err(HttpError::TooLarge { status: 200 })),
            "{answer:?}"
        );
        server.abort();
    }

    /// A plain HTTP/1.1 server answering `ok` to each request; `close` makes it close the
    /// connection after each answer. Counts the connections it accepted, and those the client
    /// closed.
    async fn counting_server(
        close: bool,
    ) -> (std::net::SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed_by_client = Arc::new(AtomicUsize::new(0));
        let (counter, closes) = (accepted.clone(), closed_by_client.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let closes = closes.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        // Requests here are GETs without a body: each ends with an empty line.
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let head = if close {
                                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                            } else {
                                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                            };
                            if socket.write_all(head.as_bytes()).await.is_err() || close {
                                return;
                            }
                        }
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => {
                                closes.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                });
            }
        });
        (addr, accepted, closed_by_client)
    }

    async fn get_three_times(addr: std::net::SocketAddr) {
        let endpoint = Endpoint::parse(&format!("http://{addr}/ping")).expect("url");
        let client = HttpClient::new(&[]).expect("client");
        for _ in 0..3 {
            let request = empty(&endpoint, hyper::Method::GET);
            let answer = client.send(&endpoint, request).await.expect("answer");
            assert_eq!((answer.status, &answer.body[..]), (200, &b"ok"[..]));
        }
    }

    #[tokio::test]
    async fn requests_to_one_endpoint_share_a_kept_connection() {
        let (addr, accepted, _) = counting_server(false).await;
        get_three_times(addr).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_unused_for_the_idle_timeout_is_closed() {
        let (addr, accepted, closed) = counting_server(false).await;
        let endpoint = Endpoint::parse(&format!("http://{addr}/ping")).expect("url");
        let client =
            HttpClient::with_idle_timeout(&[], Duration::from_millis(200)).expect("client");
        let request = empty(&endpoint, hyper::Method::GET);
        client.send(&endpoint, request).await.expect("answer");
        // Kept while the client lives; closed by the pool once unused for the timeout.
        for _ in 0..100 {
            if closed.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(closed.load(Ordering::SeqCst), 1, "closed after being idle");
        drop(client);
    }

    #[tokio::test]
    async fn a_server_that_closes_each_connection_still_gets_every_request() {
        let (addr, accepted, _) = counting_server(true).await;
        get_three_times(addr).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_a_connect_error_naming_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let endpoint = Endpoint::parse(&format!("http://{addr}/hook")).expect("url");
        let request = empty(&endpoint, hyper::Method::POST);
        let client = HttpClient::new(&[]).expect("client");
        match client.send(&endpoint, request).await {
            Err(HttpError::Connect { endpoint: url, why }) => {
                assert_eq!(url, endpoint.url());
                assert!(why.contains("refused"), "{why}");
            }
            other => panic!("expected a connect error, got {other:?}"),
        }
    }

    #[test]
    fn a_client_builds_with_the_system_roots_and_extra_ones() {
        assert!(HttpClient::new(&[]).is_ok());
        let bogus = CertificateDer::from(vec![1, 2, 3]);
        assert!(matches!(HttpClient::new(&[bogus]), Err(HttpError::Tls(_))));
    }
}
