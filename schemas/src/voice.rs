//! Seed 004's voice stream (`/voice-stream`): what clients send and receive (its error frame is
//! the events socket's, [`error_frame`]), the commands the edge puts in the voice input stream
//! (one key per voice session), and the JSON contract of the transcriber, a NATS request/reply service on `tw.svc.transcribe` that anyone may write
//! in any language.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Messages per minute one voice connection may send.
pub const MESSAGES_PER_MINUTE: u32 = 1000;

/// Event names on the voice socket.
pub mod event {
    /// A transcript (partial or final) of the session's audio so far.
    pub const TRANSCRIPT: &str = "voice:transcript";
    /// Sequence numbers that never arrived; audio after them was passed on without them.
    pub const GAP: &str = "voice:gap";
}

/// `voice:start` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StartData {
    /// The session id (the key of the voice session).
    pub session_id: String,
    /// The spoken language, e.g. `en-US`.
    #[serde(default)]
    pub language: Option<String>,
}

/// `voice:audio` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AudioData {
    /// Audio bytes, base64.
    pub audio: String,
    /// Position of this chunk in the session (1, 2, 3 …); chunks may arrive in any order
    /// and more than once.
    pub sequence: u64,
}

/// `voice:end` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EndData {
    /// The session id.
    pub session_id: String,
    /// Seconds of audio the client recorded.
    #[serde(default)]
    pub duration: Option<f64>,
}

/// What a client sends on `/voice-stream` (besides `auth` and `ping`, as on the events
/// socket).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum ClientFrame {
    /// Authenticate (first message, when the upgrade carried no token).
    #[serde(rename = "auth")]
    Auth {
        /// The JWT.
        token: String,
    },
    /// Client heartbeat.
    #[serde(rename = "ping")]
    Ping,
    /// Begin a session.
    #[serde(rename = "voice:start")]
    Start {
        /// Session and language.
        data: StartData,
    },
    /// One chunk of the current session's audio.
    #[serde(rename = "voice:audio")]
    Audio {
        /// The chunk.
        data: AudioData,
    },
    /// End the session.
    #[serde(rename = "voice:end")]
    End {
        /// Session and duration.
        data: EndData,
    },
}

/// `voice:transcript` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Transcript {
    /// The text.
    pub text: String,
    /// 0 to 1.
    pub confidence: f64,
    /// Whether this is the session's final transcript.
    pub is_final: bool,
}

/// `voice:gap` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Gap {
    /// Sequence numbers that never arrived.
    pub missing: Vec<u64>,
}

/// What a voice session fans out to its connection (besides the events socket's frames,
/// [`crate::events::ServerFrame`]); the runtime adds `seq` to each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum ServerFrame {
    /// A transcript of the audio so far.
    #[serde(rename = "voice:transcript")]
    Transcript {
        /// The transcript.
        data: Transcript,
        /// RFC 3339.
        timestamp: String,
    },
    /// Chunks that never arrived (sent at `voice:end`).
    #[serde(rename = "voice:gap")]
    Gap {
        /// Which.
        data: Gap,
        /// RFC 3339.
        timestamp: String,
    },
}

/// The error frame of the voice socket: the events socket's (see
/// [`crate::events::error_frame`]), built here by the edge and the voice handler alike.
pub fn error_frame(error: crate::ErrorBody, timestamp: String) -> crate::events::ServerFrame {
    crate::events::error_frame(error, timestamp)
}

/// Commands of the voice domain, inside the envelope (key: the session id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// `voice:start`.
    Start {
        /// The language.
        #[serde(default)]
        language: Option<String>,
    },
    /// `voice:audio`.
    Audio {
        /// Position in the session.
        sequence: u64,
        /// Base64 audio.
        audio: String,
    },
    /// `voice:end`.
    End {
        /// Seconds recorded.
        #[serde(default)]
        duration: Option<f64>,
    },
    /// The transcriber answered request `request`.
    Transcribed {
        /// The request id.
        request: u64,
        /// Its answer.
        transcript: Transcript,
    },
    /// The transcriber could not be reached (or failed) for request `request`.
    TranscribeFailed {
        /// The request id.
        request: u64,
        /// Why.
        message: String,
    },
    /// The grace period after `voice:end` is over: the audio may go.
    Expire,
}

/// One chunk in a transcriber request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Chunk {
    /// Its sequence number.
    pub sequence: u64,
    /// Base64 audio.
    pub audio: String,
}

/// The request a transcriber receives on `tw.svc.transcribe`: the next chunks of one session,
/// in sequence order, each exactly once across the session's requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TranscribeRequest {
    /// The restaurant.
    pub tenant: String,
    /// The voice session.
    pub session_id: String,
    /// The language from `voice:start`.
    #[serde(default)]
    pub language: Option<String>,
    /// Increases per session.
    pub request_id: u64,
    /// The chunks, in order.
    pub chunks: Vec<Chunk>,
    /// True when the session has ended and this is its last audio.
    pub is_final: bool,
}

/// A transcriber's reply: a transcript, or `{"error": "…"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum TranscribeReply {
    /// The transcript of the chunks received so far.
    Transcript(Transcript),
    /// The transcriber failed.
    Error {
        /// Why.
        error: String,
    },
}
