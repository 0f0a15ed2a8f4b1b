//! The finalized-order webhook (seed 001: "backend receives finalized order"): when a URL is
//! configured, a durable consumer on the records stream takes every `collab_order` record and
//! POSTs it as JSON with an HMAC-SHA256 signature header; anything but a 2xx is retried with
//! backoff until it succeeds (the record waits in the stream). Started by the start hook of
//! [`super::Collab`]. `http://` and `https://` URLs (through [`crate::http_client`]); anything else
//! is refused when the [`Webhook`] is made, so a handler with a bad URL does not start.

use crate::error::RuntimeError;
use crate::http_client::{Endpoint, HttpClient, HttpError, UrlError};
use async_nats::jetstream::{self, AckKind, consumer};
use bytes::Bytes;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use rustls_pki_types::CertificateDer;
use sha2::Sha256;
use std::time::Duration;
use tablewire_nats::{resource, subject};
use tablewire_schemas::Domain;
use tablewire_schemas::collab::RECORD_ORDER;
use tablewire_schemas::stored::Record;
use tokio::sync::watch;
use tracing::{debug, error, warn};

/// The header carrying `sha256=<hex HMAC-SHA256 of the body with the secret>`.
pub const SIGNATURE_HEADER: &str = "x-tablewire-signature";
/// The header carrying the record id: the same order is always the same delivery id.
pub const DELIVERY_HEADER: &str = "x-tablewire-delivery";

/// Where finalized orders go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// The checked `http://` or `https://` URL.
    pub endpoint: Endpoint,
    /// The HMAC key of the signature header.
    pub secret: String,
    /// Certificates trusted for `https://` besides the system's roots (a private CA; tests).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl Webhook {
    /// A webhook posting to `url`, which must be `http://` or `https://`.
    pub fn new(url: &str, secret: impl Into<String>) -> Result<Webhook, UrlError> {
        Ok(Webhook {
            endpoint: Endpoint::parse(url)?,
            secret: secret.into(),
            extra_roots: Vec::new(),
        })
    }
}

/// The signature header value for `body`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The delay before delivery attempt `delivered + 1`: 0.5 s doubling to a minute.
fn backoff(delivered: i64) -> Duration {
    let exp = delivered.clamp(1, 8) as u32 - 1;
    (Duration::from_millis(500) * 2u32.pow(exp)).min(Duration::from_secs(60))
}

/// The webhook's durable consumer on the records stream, created when missing. The records
/// stream keeps a record only while some consumer still wants it (interest retention), so this
/// must exist before the collab domain finalizes anything: the runtime calls it at start, before
/// any partition runs, and [`run`] calls it again whenever its consumer went away.
pub async fn ensure_consumer(
    js: &jetstream::Context,
) -> Result<consumer::PullConsumer, RuntimeError> {
    let stream = js
        .get_stream(resource::RECORDS_STREAM)
        .await
        .map_err(|e| RuntimeError::NotProvisioned(format!("{}: {e}", resource::RECORDS_STREAM)))?;
    stream
        .get_or_create_consumer(
            resource::COLLAB_WEBHOOK_CONSUMER,
            consumer::pull::Config {
                durable_name: Some(resource::COLLAB_WEBHOOK_CONSUMER.to_string()),
                description: Some("finalized orders to the webhook".to_string()),
                filter_subject: subject::record_kind_filter(Domain::Collab, RECORD_ORDER),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_deliver: -1,
                // Forgotten a week after the last handler with a webhook stopped, so
                // records do not wait for it forever.
                inactive_threshold: Duration::from_secs(7 * 24 * 3600),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| RuntimeError::Nats(format!("{}: {e}", resource::COLLAB_WEBHOOK_CONSUMER)))
}

/// Delivers finalized orders until `shutdown`.
pub async fn run(
    client: async_nats::Client,
    webhook: Webhook,
    mut shutdown: watch::Receiver<bool>,
) {
    let js = jetstream::new(client);
    let http = match HttpClient::new(&webhook.extra_roots) {
        Ok(http) => http,
        Err(e) => {
            error!(error = %e, url = %webhook.endpoint, "webhook disabled: no HTTP client");
            return;
        }
    };
    loop {
        let messages = async {
            let consumer = ensure_consumer(&js).await.map_err(|e| e.to_string())?;
            consumer.messages().await.map_err(|e| e.to_string())
        }
        .await;
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "webhook consumer unavailable; retrying");
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let next = tokio::select! {
                _ = shutdown.changed() => return,
                next = messages.next() => next,
            };
            let Some(Ok(message)) = next else { break };
            let Some(records) = Record::parse_message(&message.payload) else {
                let _ = message.ack_with(AckKind::Term).await;
                continue;
            };
            // A message may hold several orders (see `Record::parse_message`); it is acknowledged
            // once every one is delivered, and all go again otherwise (each carries its id).
            let mut undelivered = None;
            for record in &records {
                if !deliver(&http, &webhook, record).await {
                    undelivered = Some(record.id.clone());
                    break;
                }
            }
            match undelivered {
                None => {
                    let _ = message.ack().await;
                }
                Some(id) => {
                    let attempts = message.info().map(|i| i.delivered).unwrap_or(1);
                    warn!(%id, attempts, "webhook delivery failed; will retry");
                    let _ = message
                        .ack_with(AckKind::Nak(Some(backoff(attempts))))
                        .await;
                }
            }
        }
    }
}

/// Posts one finalized order to the webhook; whether it answered 2xx.
async fn deliver(http: &HttpClient, webhook: &Webhook, record: &Record) -> bool {
    let body = serde_json::json!({
        "type": "order_finalized",
        "tenantId": record.tenant,
        "order": record.data,
    });
    let body = Bytes::from(body.to_string());
    let request = webhook
        .endpoint
        .request(hyper::Method::POST)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, sign(&webhook.secret, &body))
        .header(DELIVERY_HEADER, record.id.as_str())
        .body(Full::new(body));
    match request {
        Ok(request) => {
            let sent = http.send(&webhook.endpoint, request);
            match tokio::time::timeout(Duration::from_secs(10), sent).await {
                Ok(Ok(answer)) => (200..300).contains(&answer.status),
                // Only the status counts; a long body does not make it undelivered.
                Ok(Err(HttpError::TooLarge { status })) => (200..300).contains(&status),
                Ok(Err(e)) => {
                    debug!(error = %e, "webhook unreachable");
                    false
                }
                Err(_) => false,
            }
        }
        Err(e) => {
            warn!(error = %e, url = %webhook.endpoint, "webhook request unusable");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn only_http_and_https_webhooks_can_be_made() {
        let hook = Webhook::new("https://backend.example.com/orders", "k").expect("https");
        assert!(hook.endpoint.is_tls());
        assert!(
            !Webhook::new("http://127.0.0.1:9/x", "k")
                .expect("http")
                .endpoint
                .is_tls()
        );
        assert!(matches!(
            Webhook::new("ftp://backend.example.com/orders", "k"),
            Err(UrlError::Scheme { .. })
        ));
    }

    #[test]
    fn retries_back_off_to_a_minute() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(100), Duration::from_secs(60));
    }
}
