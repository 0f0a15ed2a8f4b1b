//! Unit tests of the voice domain: chunks reassembled in order, transcriber requests and
//! failures, gaps, bounds.

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
