//! The voice domain (seed 004's `/voice-stream`): one key per voice session. `apply`
//! reassembles audio chunks in `sequence` order (duplicates dropped, gaps reported at the end)
//! and decides what to send to the transcriber next; the runtime makes that request as a
//! [`FollowUp`] on `tw.svc.transcribe` and feeds the answer back as `transcribed` or
//! `transcribe_failed`. Audio stays in the state until `voice:end` plus [`GRACE`], so nothing
//! is lost while no transcriber is reachable; a session that would keep more than
//! [`MAX_AUDIO_BYTES`] refuses the chunk with `STATE_FULL` (audio cannot be dropped).
//!
//! # Layout
//! - this file — [`Voice`], its bounds, `apply` and the transcriber [`FollowUp`].
//! - `session` — [`VoiceState`]: audio in order, chunks waiting, the request in flight.
//! - `tests` — reassembly, failures, gaps and bounds.
//!
//! Frames are `tablewire_schemas::voice`'s types; its error frame is the events socket's.

use crate::domain::{Context, Domain, Effects, FollowUp, FollowUpAction, Rejection, to_value};
use crate::events::rfc3339;
use serde_json::Value;
use std::time::Duration;
use tablewire_nats::subject;
use tablewire_schemas::voice::{
    Command, Gap, ServerFrame, TranscribeReply, TranscribeRequest, Transcript, error_frame,
};
use tablewire_schemas::{Domain as DomainName, ErrorBody, ErrorCode};

mod session;

pub use session::{CHUNK_OVERHEAD, InFlight, TRANSCRIBE_TIMEOUT, VoiceState};

/// How long audio is kept after `voice:end`.
pub const GRACE: Duration = Duration::from_secs(300);
/// Most audio one session keeps: base64 bytes plus [`CHUNK_OVERHEAD`] per chunk.
pub const MAX_AUDIO_BYTES: usize = 512 * 1024;
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
mod tests;
