//! One voice session's state: audio released in `sequence` order, chunks waiting for a missing
//! one, and the transcriber request in flight; when the next request is due. Kept in KV by the
//! voice domain.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use tablewire_schemas::voice::Chunk;

/// What one chunk adds to the stored state besides its audio (`{"sequence":…,"audio":""}`).
pub const CHUNK_OVERHEAD: usize = 40;

/// How long the transcriber may take to answer one request.
pub const TRANSCRIBE_TIMEOUT: Duration = Duration::from_secs(15);

/// A transcriber request in flight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InFlight {
    /// Its id.
    pub id: u64,
    /// How many of `audio` it carries (from `sent`).
    pub upto: usize,
    /// Whether it is the final one.
    pub is_final: bool,
    /// When it was decided, ms.
    pub at: i64,
}

/// One voice session.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoiceState {
    /// From `voice:start`.
    pub language: Option<String>,
    /// The next sequence number to release in order.
    pub next: u64,
    /// Chunks that arrived ahead of a missing one, by sequence.
    pub waiting: BTreeMap<u64, String>,
    /// Released chunks, in order: kept until the end plus the grace period.
    pub audio: Vec<Chunk>,
    /// How many of `audio` the transcriber has received and answered.
    pub sent: usize,
    /// The request in flight.
    pub in_flight: Option<InFlight>,
    /// The last request id used.
    pub last_request: u64,
    /// Repeated chunks dropped.
    pub duplicates: u64,
    /// Sequence numbers skipped at the end.
    pub gaps: Vec<u64>,
    /// When `voice:end` came, ms.
    pub ended_at: Option<i64>,
    /// Seconds recorded, from `voice:end`.
    pub duration: Option<f64>,
    /// Whether the final transcript was delivered.
    pub finished: bool,
    /// Whether the audio was dropped after the grace period.
    pub expired: bool,
}

impl VoiceState {
    pub(super) fn audio_bytes(&self) -> usize {
        self.audio
            .iter()
            .map(|c| c.audio.len() + CHUNK_OVERHEAD)
            .sum::<usize>()
            + self
                .waiting
                .values()
                .map(|audio| audio.len() + CHUNK_OVERHEAD)
                .sum::<usize>()
    }

    /// Releases waiting chunks that now follow in order.
    pub(super) fn release(&mut self) {
        while let Some(audio) = self.waiting.remove(&self.next) {
            self.audio.push(Chunk {
                sequence: self.next,
                audio,
            });
            self.next += 1;
        }
    }

    /// Decides the next transcriber request, if one is due and none is in flight.
    pub(super) fn schedule(&mut self, now: i64) {
        if self.expired || self.finished {
            return;
        }
        // A request whose answer never came (its worker died) is given up on.
        if self
            .in_flight
            .as_ref()
            .is_some_and(|f| now - f.at > 2 * TRANSCRIBE_TIMEOUT.as_millis() as i64)
        {
            self.in_flight = None;
        }
        if self.in_flight.is_some() {
            return;
        }
        let is_final = self.ended_at.is_some();
        if self.sent < self.audio.len() || is_final {
            self.last_request += 1;
            self.in_flight = Some(InFlight {
                id: self.last_request,
                upto: self.audio.len(),
                is_final,
                at: now,
            });
        }
    }
}
