//! A transcriber for the voice domain that forwards to an OpenAI-compatible HTTP endpoint
//! (`POST {url}/v1/audio/transcriptions`, multipart, `{"text": …}` back). It serves
//! `tw.svc.transcribe` (JSON contract in `tablewire_schemas::voice`), keeps each session's
//! audio in order as the requests bring it, and transcribes the whole recording when the
//! final request comes (audio containers such as WebM cannot be cut into pieces that decode
//! alone); earlier requests get an empty, non-final transcript. Run by `tablewire
//! transcriber`. One adapter process per deployment, since it holds the sessions' audio.

use crate::http_client::{Endpoint, HttpClient, UrlError};
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::Full;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tablewire_nats::subject;
use tablewire_schemas::voice::{TranscribeReply, TranscribeRequest, Transcript};
use tokio::sync::watch;
use tracing::{info, warn};

/// Audio kept per session at most, bytes (decoded).
const MAX_SESSION_BYTES: usize = 25 * 1024 * 1024;
/// Sessions not heard from for this long are forgotten.
const SESSION_IDLE: Duration = Duration::from_secs(900);

/// Where and how to transcribe.
#[derive(Debug, Clone)]
pub struct Config {
    /// The endpoint's base URL, e.g. `https://api.openai.com` or `http://127.0.0.1:8000`;
    /// `/v1/audio/transcriptions` is appended unless the URL already ends with it.
    pub url: String,
    /// The model field, e.g. `whisper-1`.
    pub model: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub api_key: Option<String>,
    /// The file name sent with the audio (its extension tells the endpoint the format).
    pub file_name: String,
    /// How long one HTTP call may take.
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            url: "http://127.0.0.1:8000".to_string(),
            model: "whisper-1".to_string(),
            api_key: None,
            file_name: "audio.webm".to_string(),
            timeout: Duration::from_secs(60),
        }
    }
}

/// Why the adapter cannot start or a transcription failed.
#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    /// The URL cannot be used.
    #[error("bad URL: {0}")]
    Url(#[from] UrlError),
    /// The adapter cannot serve `tw.svc.transcribe`.
    #[error("NATS: {0}")]
    Nats(String),
    /// The endpoint could not be reached or answered with an error.
    #[error("HTTP: {0}")]
    Http(String),
    /// The request carried audio that is not base64.
    #[error("audio is not base64: {0}")]
    Audio(String),
}

struct Session {
    audio: Vec<u8>,
    seen: Instant,
}

/// Serves `tw.svc.transcribe` until `shutdown` turns true. Fails at once on a URL that is not
/// `http://` or `https://`.
pub async fn run(
    client: async_nats::Client,
    config: Config,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), TranscribeError> {
    let endpoint = Endpoint::parse(&transcriptions_url(&config.url))?;
    let http = HttpClient::new(&[]).map_err(|e| TranscribeError::Http(e.to_string()))?;
    let mut requests = client
        .queue_subscribe(subject::TRANSCRIBE, subject::TRANSCRIBER_GROUP.to_string())
        .await
        .map_err(|e| TranscribeError::Nats(e.to_string()))?;
    info!(url = %config.url, model = %config.model, "transcriber serving {}", subject::TRANSCRIBE);
    let config = Arc::new(config);
    let mut sessions: HashMap<(String, String), Session> = HashMap::new();
    loop {
        let message = tokio::select! {
            _ = shutdown.changed() => break,
            m = requests.next() => match m { Some(m) => m, None => break },
        };
        let Some(reply_to) = message.reply.clone() else {
            continue;
        };
        let reply = match serde_json::from_slice::<TranscribeRequest>(&message.payload) {
            Ok(request) => handle(&http, &endpoint, &config, &mut sessions, request).await,
            Err(e) => TranscribeReply::Error {
                error: format!("not a transcribe request: {e}"),
            },
        };
        let payload = serde_json::to_vec(&reply).unwrap_or_default();
        if let Err(e) = client.publish(reply_to, payload.into()).await {
            warn!(error = %e, "cannot answer a transcribe request");
        }
    }
    Ok(())
}

async fn handle(
    http: &HttpClient,
    endpoint: &Endpoint,
    config: &Config,
    sessions: &mut HashMap<(String, String), Session>,
    request: TranscribeRequest,
) -> TranscribeReply {
    sessions.retain(|_, s| s.seen.elapsed() < SESSION_IDLE);
    let key = (request.tenant.clone(), request.session_id.clone());
    let session = sessions.entry(key.clone()).or_insert_with(|| Session {
        audio: Vec::new(),
        seen: Instant::now(),
    });
    session.seen = Instant::now();
    for chunk in &request.chunks {
        match base64::engine::general_purpose::STANDARD.decode(&chunk.audio) {
            Ok(bytes) if session.audio.len() + bytes.len() <= MAX_SESSION_BYTES => {
                session.audio.extend_from_slice(&bytes)
            }
            Ok(_) => {
                return TranscribeReply::Error {
                    error: "session audio too long".to_string(),
                };
            }
            Err(e) => {
                return TranscribeReply::Error {
                    error: TranscribeError::Audio(e.to_string()).to_string(),
                };
            }
        }
    }
    if !request.is_final {
        return TranscribeReply::Transcript(Transcript {
            text: String::new(),
            confidence: 0.0,
            is_final: false,
        });
    }
    let audio = sessions.remove(&key).map(|s| s.audio).unwrap_or_default();
    match transcribe(http, endpoint, config, &audio, request.language.as_deref()).await {
        Ok(transcript) => TranscribeReply::Transcript(transcript),
        Err(e) => {
            // Keep the audio so a retried final request can use it.
            sessions.insert(
                key,
                Session {
                    audio,
                    seen: Instant::now(),
                },
            );
            TranscribeReply::Error {
                error: e.to_string(),
            }
        }
    }
}

/// The multipart body OpenAI's transcription endpoint takes.
pub fn multipart(
    boundary: &str,
    model: &str,
    language: Option<&str>,
    file_name: &str,
    audio: &[u8],
) -> Vec<u8> {
    let mut body = Vec::with_capacity(audio.len() + 512);
    let mut field = |name: &str, value: &str| {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    };
    field("model", model);
    // OpenAI takes ISO 639-1 (`en`), clients send BCP 47 (`en-US`).
    if let Some(language) = language.and_then(|l| l.split(['-', '_']).next())
        && !language.is_empty()
    {
        field("language", language);
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(audio);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

/// The transcription URL of an endpoint's base URL: `/v1/audio/transcriptions` appended unless
/// it already ends with `/audio/transcriptions`.
pub fn transcriptions_url(base: &str) -> String {
    if base.ends_with("/audio/transcriptions") {
        base.to_string()
    } else {
        format!("{}/v1/audio/transcriptions", base.trim_end_matches('/'))
    }
}

/// Sends `audio` to the endpoint and reads `{"text": …}` (and `confidence`, when it says).
pub async fn transcribe(
    http: &HttpClient,
    endpoint: &Endpoint,
    config: &Config,
    audio: &[u8],
    language: Option<&str>,
) -> Result<Transcript, TranscribeError> {
    let boundary = format!("tablewire-{:016x}", rand::random::<u64>());
    let body = multipart(&boundary, &config.model, language, &config.file_name, audio);
    let mut request = endpoint.request(hyper::Method::POST).header(
        hyper::header::CONTENT_TYPE,
        format!("multipart/form-data; boundary={boundary}"),
    );
    if let Some(key) = &config.api_key {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| TranscribeError::Http(e.to_string()))?;
    let answer = tokio::time::timeout(config.timeout, http.send(endpoint, request))
        .await
        .map_err(|_| TranscribeError::Http("timed out".into()))?
        .map_err(|e| TranscribeError::Http(e.to_string()))?;
    if !(200..300).contains(&answer.status) {
        return Err(TranscribeError::Http(format!(
            "status {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)])
        )));
    }
    #[derive(serde::Deserialize)]
    struct Reply {
        text: String,
        #[serde(default)]
        confidence: Option<f64>,
    }
    let reply: Reply =
        serde_json::from_slice(&answer.body).map_err(|e| TranscribeError::Http(e.to_string()))?;
    Ok(Transcript {
        text: reply.text,
        confidence: reply.confidence.unwrap_or(1.0),
        is_final: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_multipart_body_has_model_language_and_file() {
        let body = multipart("b", "whisper-1", Some("en-US"), "a.webm", b"\x00\x01");
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(
            "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
        ));
        assert!(text.contains("name=\"language\"\r\n\r\nen\r\n"));
        assert!(text.contains("filename=\"a.webm\""));
        assert!(body.ends_with(b"\x00\x01\r\n--b--\r\n"));
    }

    #[test]
    fn the_transcriptions_path_is_appended_once() {
        assert_eq!(
            transcriptions_url("https://api.openai.com/"),
            "https://api.openai.com/v1/audio/transcriptions"
        );
        assert_eq!(
            transcriptions_url("http://127.0.0.1:8000/v1/audio/transcriptions"),
            "http://127.0.0.1:8000/v1/audio/transcriptions"
        );
    }
}
