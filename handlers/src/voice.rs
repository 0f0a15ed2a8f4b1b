//! The voice domain (seed 004's `/voice-stream`): one key per voice session. `apply`
//! reassembles audio chunks in `sequence` order (duplicates dropped, gaps reported at the end)
//! and decides what to send to the transcriber next; the runtime makes that request as a
//! [`FollowUp`] on `tw.svc.transcribe` and feeds the answer back as `transcribed` or
//! `transcribe_failed`. Audio stays in the state until `voice:end` plus [`GRACE`], so nothing
//! is lost while no transcriber is reachable; a session that would keep more than
//! [`MAX_AUDIO_BYTES`] refuses the chunk with `STATE_FULL` (audio cannot be dropped).

use crate::domain::{Context, Domain, Effects, FollowUp, FollowUpAction, Rejection, to_value};
use crate::events::rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use tablewire_nats::subject;
use tablewire_schemas::voice::{
    Chunk, Command, Gap, ServerFrame, TranscribeReply, TranscribeRequest, Transcript, error_frame,
};
use tablewire_schemas::{Domain as DomainName, ErrorBody, ErrorCode};

/// How long audio is kept after `voice:end`.
pub const GRACE: Duration = Duration::from_secs(300);
/// How long the transcriber may take to answer one request.
pub const TRANSCRIBE_TIMEOUT: Duration = Duration::from_secs(15);
/// Most audio one session keeps: base64 bytes plus [`CHUNK_OVERHEAD`] per chunk.
pub const MAX_AUDIO_BYTES: usize = 512 * 1024;
/// What one chunk adds to the stored state besides its audio (`{"sequence":…,"audio":""}`).
pub const CHUNK_OVERHEAD: usize = 40;
/// Chunks held out of order waiting for a missing one.
pub const MAX_WAITING: usize = 256;
/// How far ahead of the next expected sequence number a chunk may be: the numbers in between
/// are reported as missing at the end, so this bounds that list.
pub const MAX_AHEAD: u64 = 1024;
/// Most bytes of one session's stored state: the audio, the chunks waiting and the rest.
pub const MAX_STATE_BYTES: usize = 640 * 1024;

/// The voice domain.
#[derive(Debug, Default, Clone, Copy)]
pub struct Voice;

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
    fn audio_bytes(&self) -> usize {
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
    fn release(&mut self) {
        while let Some(audio) = self.waiting.remove(&self.next) {
            self.audio.push(Chunk {
                sequence: self.next,
                audio,
            });
            self.next += 1;
        }
    }

    /// Decides the next transcriber request, if one is due and none is in flight.
    fn schedule(&mut self, now: i64) {
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

impl Domain for Voice {
    const NAME: DomainName = DomainName::Voice;
    type State = VoiceState;
    type Command = Command;

    fn new_state(&self, _ctx: &Context<'_>) -> VoiceState {
        VoiceState {
            next: 1,
            ..VoiceState::default()
        }
    }

    fn apply(
        &self,
        state: &mut VoiceState,
        command: Command,
        ctx: &Context<'_>,
        effects: &mut Effects,
    ) -> Result<(), Rejection> {
        let now = ctx.now_ms;
        match command {
            Command::Start { language } => {
                if state.ended_at.is_some() {
                    return Err(Rejection::new(
                        ErrorCode::Conflict,
                        "this voice session has ended; start another session id",
                    ));
                }
                state.language = language;
            }
            Command::Audio { sequence, audio } => {
                if state.ended_at.is_some() {
                    return Err(Rejection::new(
                        ErrorCode::Conflict,
                        "this voice session has ended",
                    ));
                }
                // Sessions may count from 0: a chunk 0 before anything was released.
                if sequence == 0 && state.next == 1 && state.audio.is_empty() {
                    state.next = 0;
                }
                if sequence < state.next || state.waiting.contains_key(&sequence) {
                    state.duplicates += 1;
                    return Ok(());
                }
                if sequence - state.next > MAX_AHEAD {
                    return Err(Rejection::new(
                        ErrorCode::ValidationError,
                        format!(
                            "sequence {sequence} is more than {MAX_AHEAD} ahead of the next \
                             expected ({})",
                            state.next
                        ),
                    ));
                }
                if state.waiting.len() >= MAX_WAITING
                    || state.audio_bytes() + audio.len() + CHUNK_OVERHEAD > MAX_AUDIO_BYTES
                {
                    return Err(Rejection::new(
                        ErrorCode::StateFull,
                        format!(
                            "a voice session keeps at most {MAX_AUDIO_BYTES} bytes of audio \
                             and {MAX_WAITING} chunks out of order"
                        ),
                    ));
                }
                state.waiting.insert(sequence, audio);
                state.release();
            }
            Command::End { duration } => {
                if state.ended_at.is_some() {
                    // A repeated end retries a transcription that failed.
                    state.schedule(now);
                    return Ok(());
                }
                state.ended_at = Some(now);
                state.duration = duration;
                // Whatever never arrived will not: pass the rest on without it.
                while let Some((&first, _)) = state.waiting.iter().next() {
                    state.gaps.extend(state.next..first);
                    state.next = first;
                    state.release();
                }
                if !state.gaps.is_empty() {
                    effects.event(ServerFrame::Gap {
                        data: Gap {
                            missing: state.gaps.clone(),
                        },
                        timestamp: rfc3339(now),
                    });
                }
            }
            Command::Transcribed {
                request,
                transcript,
            } => {
                let Some(flight) = state.in_flight.clone().filter(|f| f.id == request) else {
                    return Ok(()); // an answer to a request given up on
                };
                state.in_flight = None;
                state.sent = flight.upto;
                let is_final = flight.is_final;
                if is_final {
                    state.finished = true;
                }
                // A transcriber with nothing to say yet answers with empty text.
                if transcript.text.is_empty() && !is_final {
                    state.schedule(now);
                    return Ok(());
                }
                effects.event(ServerFrame::Transcript {
                    data: Transcript {
                        is_final,
                        ..transcript
                    },
                    timestamp: rfc3339(now),
                });
            }
            Command::TranscribeFailed { request, message } => {
                if state.in_flight.as_ref().is_none_or(|f| f.id != request) {
                    return Ok(());
                }
                state.in_flight = None;
                effects.event(error_frame(
                    ErrorBody::with_message(
                        ErrorCode::TranscriberUnavailable,
                        format!(
                            "no transcriber reachable ({message}); the audio is kept and sent \
                             again"
                        ),
                    ),
                    rfc3339(now),
                ));
                // Sent again with the next chunk or the end, not in a loop.
                return Ok(());
            }
            Command::Expire => {
                state.expired = true;
                state.audio.clear();
                state.waiting.clear();
                state.in_flight = None;
                return Ok(());
            }
        }
        state.schedule(now);
        Ok(())
    }

    fn error_frame(&self, error: &ErrorBody, ctx: &Context<'_>) -> Value {
        to_value(error_frame(error.clone(), rfc3339(ctx.now_ms)))
    }

    fn max_state_bytes(&self) -> usize {
        MAX_STATE_BYTES
    }

    fn follow_up(&self, state: &VoiceState, tenant: &str, key: &str) -> Option<FollowUp> {
        if let Some(flight) = &state.in_flight {
            let request = TranscribeRequest {
                tenant: tenant.to_string(),
                session_id: key.to_string(),
                language: state.language.clone(),
                request_id: flight.id,
                chunks: state.audio[state.sent.min(flight.upto)..flight.upto].to_vec(),
                is_final: flight.is_final,
            };
            let payload = serde_json::to_vec(&request).ok()?;
            let id = flight.id;
            return Some(FollowUp {
                id: format!("transcribe-{id}"),
                action: FollowUpAction::Request {
                    subject: subject::TRANSCRIBE.to_string(),
                    payload: payload.into(),
                    timeout: TRANSCRIBE_TIMEOUT,
                },
                outcome: Box::new(move |result| {
                    let command = match result.map_err(|e| e.to_string()).and_then(|bytes| {
                        serde_json::from_slice::<TranscribeReply>(&bytes)
                            .map_err(|e| format!("unreadable transcriber reply: {e}"))
                    }) {
                        Ok(TranscribeReply::Transcript(transcript)) => Command::Transcribed {
                            request: id,
                            transcript,
                        },
                        Ok(TranscribeReply::Error { error }) => Command::TranscribeFailed {
                            request: id,
                            message: error,
                        },
                        Err(message) => Command::TranscribeFailed {
                            request: id,
                            message,
                        },
                    };
                    serde_json::to_value(command).unwrap_or(Value::Null)
                }),
            });
        }
        if state.ended_at.is_some() && !state.expired {
            return Some(FollowUp {
                id: "expire".to_string(),
                action: FollowUpAction::Wait(GRACE),
                outcome: Box::new(|_| serde_json::to_value(Command::Expire).unwrap_or(Value::Null)),
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tablewire_schemas::Origin;

    /// The context of a command from nobody to answer, at 1 s.
    fn context(origin: &Origin) -> Context<'_> {
        Context {
            now_ms: 1_000,
            stream_seq: 1,
            message_id: "m",
            tenant: "r1",
            key: "s1",
            claims: None,
            origin,
        }
    }

    fn apply(state: &mut VoiceState, command: Command) -> Effects {
        let origin = Origin::default();
        let ctx = context(&origin);
        let mut fx = Effects::default();
        Voice.apply(state, command, &ctx, &mut fx).expect("applies");
        fx
    }

    fn audio(sequence: u64) -> Command {
        Command::Audio {
            sequence,
            audio: format!("chunk{sequence}"),
        }
    }

    fn requested(state: &VoiceState) -> Vec<u64> {
        let Some(follow_up) = Voice.follow_up(state, "r1", "s1") else {
            return Vec::new();
        };
        let FollowUpAction::Request { payload, .. } = follow_up.action else {
            return Vec::new();
        };
        let request: TranscribeRequest = serde_json::from_slice(&payload).expect("request");
        request.chunks.iter().map(|c| c.sequence).collect()
    }

    fn answer(state: &mut VoiceState, text: &str) -> Effects {
        let request = state.in_flight.as_ref().expect("in flight").id;
        apply(
            state,
            Command::Transcribed {
                request,
                transcript: Transcript {
                    text: text.into(),
                    confidence: 0.9,
                    is_final: false,
                },
            },
        )
    }

    #[test]
    fn chunks_3_1_2_2_go_to_the_transcriber_as_1_2_3_once() {
        let mut state = Voice.new_state(&Context {
            now_ms: 0,
            stream_seq: 0,
            message_id: "",
            tenant: "",
            key: "",
            claims: None,
            origin: &Origin {
                edge: String::new(),
                conn: None,
                request: None,
            },
        });
        apply(
            &mut state,
            Command::Start {
                language: Some("en-US".into()),
            },
        );
        apply(&mut state, audio(3));
        assert_eq!(requested(&state), Vec::<u64>::new(), "3 waits for 1 and 2");
        apply(&mut state, audio(1));
        assert_eq!(requested(&state), vec![1]);
        apply(&mut state, audio(2));
        apply(&mut state, audio(2));
        assert_eq!(state.duplicates, 1);
        assert_eq!(requested(&state), vec![1], "one request at a time");
        let fx = answer(&mut state, "one");
        assert_eq!(fx.events[0].value()["type"], "voice:transcript");
        assert_eq!(requested(&state), vec![2, 3]);
        answer(&mut state, "one two three");
        assert_eq!(requested(&state), Vec::<u64>::new());
        apply(
            &mut state,
            Command::End {
                duration: Some(3.0),
            },
        );
        assert_eq!(
            requested(&state),
            Vec::<u64>::new(),
            "final request, no new audio"
        );
        assert!(state.in_flight.as_ref().is_some_and(|f| f.is_final));
        let fx = answer(&mut state, "one two three");
        assert_eq!(fx.events[0].value()["data"]["is_final"], true);
        assert_eq!(
            state.audio.len(),
            3,
            "audio kept until the grace period ends"
        );
        let expire = Voice.follow_up(&state, "r1", "s1").expect("grace timer");
        assert!(matches!(expire.action, FollowUpAction::Wait(GRACE)));
        apply(&mut state, Command::Expire);
        assert!(state.audio.is_empty() && Voice.follow_up(&state, "r1", "s1").is_none());
    }

    #[test]
    fn a_failed_request_keeps_the_audio_and_gaps_are_reported_at_the_end() {
        let mut state = VoiceState {
            next: 1,
            ..Default::default()
        };
        apply(&mut state, audio(1));
        let id = state.in_flight.as_ref().expect("request").id;
        let fx = apply(
            &mut state,
            Command::TranscribeFailed {
                request: id,
                message: "no responders".into(),
            },
        );
        assert_eq!(
            fx.events[0].value()["data"]["code"],
            "TRANSCRIBER_UNAVAILABLE"
        );
        assert_eq!(state.audio.len(), 1);
        assert!(state.in_flight.is_none());
        apply(&mut state, audio(4));
        assert_eq!(requested(&state), vec![1], "sent again with the next chunk");
        answer(&mut state, "one");
        let fx = apply(&mut state, Command::End { duration: None });
        assert_eq!(fx.events[0].value()["type"], "voice:gap");
        assert_eq!(fx.events[0].value()["data"]["missing"], json!([2, 3]));
        assert_eq!(requested(&state), vec![4]);
        let id = state.in_flight.as_ref().expect("final request").id;
        apply(
            &mut state,
            Command::TranscribeFailed {
                request: id,
                message: "timeout".into(),
            },
        );
        assert!(state.in_flight.is_none());
        apply(&mut state, Command::End { duration: None });
        assert_eq!(requested(&state), vec![4], "a repeated end retries");
    }

    fn refused(state: &mut VoiceState, command: Command) -> ErrorCode {
        let before = state.clone();
        let origin = Origin::default();
        let ctx = context(&origin);
        let error = Voice
            .apply(state, command, &ctx, &mut Effects::default())
            .expect_err("refused");
        assert_eq!(*state, before, "a refusal changes nothing");
        error.0.code
    }

    #[test]
    fn audio_waiting_for_a_transcriber_is_bounded_and_refused_when_full() {
        let mut state = VoiceState {
            next: 1,
            ..Default::default()
        };
        // A transcriber that never answers: every chunk stays.
        let chunk = "A".repeat(64 * 1024);
        let mut sequence = 1;
        while state.audio_bytes() + chunk.len() + CHUNK_OVERHEAD <= MAX_AUDIO_BYTES {
            let audio = Command::Audio {
                sequence,
                audio: chunk.clone(),
            };
            apply(&mut state, audio);
            sequence += 1;
        }
        let full = Command::Audio {
            sequence,
            audio: chunk,
        };
        assert_eq!(refused(&mut state, full), ErrorCode::StateFull);
        assert!(crate::domain::json_len(&state) <= MAX_STATE_BYTES);
        // Tiny chunks count their share of the state too, not only their audio.
        let mut tiny = VoiceState {
            next: 1,
            ..Default::default()
        };
        let mut sequence = 1;
        loop {
            let audio = Command::Audio {
                sequence,
                audio: "A".into(),
            };
            let origin = Origin {
                edge: String::new(),
                conn: None,
                request: None,
            };
            let ctx = Context {
                now_ms: 1_000,
                stream_seq: sequence,
                message_id: "m",
                tenant: "r1",
                key: "s1",
                claims: None,
                origin: &origin,
            };
            if Voice
                .apply(&mut tiny, audio, &ctx, &mut Effects::default())
                .is_err()
            {
                break;
            }
            sequence += 1;
        }
        assert!(crate::domain::json_len(&tiny) <= MAX_STATE_BYTES);
    }

    #[test]
    fn a_chunk_far_ahead_is_refused_so_the_gap_list_stays_small() {
        let mut state = VoiceState {
            next: 1,
            ..Default::default()
        };
        apply(&mut state, audio(1));
        assert_eq!(
            refused(&mut state, audio(2 + MAX_AHEAD + 1)),
            ErrorCode::ValidationError
        );
        apply(&mut state, audio(2 + MAX_AHEAD));
        let fx = apply(&mut state, Command::End { duration: None });
        assert_eq!(
            fx.events[0].value()["data"]["missing"]
                .as_array()
                .map(Vec::len),
            Some(MAX_AHEAD as usize)
        );
    }
}
