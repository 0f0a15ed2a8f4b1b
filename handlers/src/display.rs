//! The display domain (seed 000): one key per session. Every update goes to `displayUpdates`,
//! transcriptions also to `transcriptions`, order summaries and updates replace `currentOrder`;
//! each list keeps its newest [`HISTORY_LIMIT`] entries, and fewer when the session would pass
//! [`MAX_STATE_BYTES`] (the oldest go first, see [`Domain::trim`]). Updates fan out as `update`
//! frames.

use crate::domain::{Context, Domain, Effects, Rejection, json_len, to_value};
use serde_json::Value;
use tablewire_schemas::display::{
    Applied, Command, EncodedUpdate, HISTORY_LIMIT, ORDER_TYPES, SESSION_RECORD, SessionRecord,
    StoredSession, TRANSCRIPTION, UpdateFrame, error_frame,
};
use tablewire_schemas::{Domain as DomainName, ErrorBody, ErrorCode};

/// Most bytes of one session's stored state. Past it the oldest entries of `transcriptions` and
/// `displayUpdates` are dropped (each list keeps at least its newest); an update too big even
/// then is refused with `STATE_FULL`.
pub const MAX_STATE_BYTES: usize = 512 * 1024;

/// The display domain.
#[derive(Debug, Default, Clone, Copy)]
pub struct Display;

impl Domain for Display {
    const NAME: DomainName = DomainName::Display;
    type State = StoredSession;
    type Command = Command;

    fn new_state(&self, ctx: &Context<'_>) -> StoredSession {
        StoredSession::new(ctx.key, ctx.now_ms)
    }

    fn apply(
        &self,
        state: &mut StoredSession,
        command: Command,
        ctx: &Context<'_>,
        effects: &mut Effects,
    ) -> Result<(), Rejection> {
        match command {
            Command::Open => Ok(()),
            Command::Init { tenant_id } => {
                match (&state.tenant_id, tenant_id) {
                    // Set once: anyone may init a session (as in the seed), so a second init
                    // naming another tenant would hand the session to whoever sent it.
                    (Some(owner), Some(asked)) if *owner != asked => {
                        return Err(Rejection::new(
                            ErrorCode::Conflict,
                            format!("session already belongs to tenant {owner}"),
                        ));
                    }
                    (None, Some(asked)) => {
                        state.tenant_id = Some(asked);
                        effects.record(
                            SESSION_RECORD,
                            SessionRecord {
                                session_id: state.session_id.clone(),
                                tenant_id: state.tenant_id.clone(),
                                started_at: state.started_at,
                                version: ctx.stream_seq,
                            },
                        );
                    }
                    // The same tenant again, or none named: nothing changes.
                    _ => {}
                }
                applied(ctx, effects);
                Ok(())
            }
            Command::Update { mut update } => {
                update
                    .check()
                    .map_err(|why| Rejection::new(ErrorCode::ValidationError, why))?;
                if let (Some(claimed), Some(owner)) = (
                    ctx.claims.and_then(|c| c.tenant.as_deref()),
                    state.tenant_id.as_deref(),
                ) && claimed != owner
                {
                    return Err(Rejection::new(
                        ErrorCode::TenantMismatch,
                        format!("session belongs to tenant {owner}"),
                    ));
                }
                update.timestamp = Some(ctx.now_ms);
                // Encoded once: the `update` frame and both lists take these bytes, and a write
                // of the session copies them instead of encoding its whole history again.
                let encoded = EncodedUpdate::new(&update).map_err(|e| {
                    Rejection::new(
                        ErrorCode::ValidationError,
                        format!("update does not encode: {e}"),
                    )
                })?;
                effects.event(UpdateFrame {
                    update: encoded.json(),
                    timestamp: ctx.now_ms,
                });
                if update.kind == TRANSCRIPTION {
                    push_bounded(&mut state.transcriptions, encoded.clone());
                }
                if ORDER_TYPES.contains(&update.kind.as_str()) {
                    state.current_order = Some(update.display_data);
                }
                push_bounded(&mut state.display_updates, encoded);
                applied(ctx, effects);
                Ok(())
            }
        }
    }

    fn error_frame(&self, error: &ErrorBody, ctx: &Context<'_>) -> Value {
        to_value(error_frame(error, ctx.now_ms))
    }

    fn max_state_bytes(&self) -> usize {
        MAX_STATE_BYTES
    }

    /// Drops the oldest entries of the two lists, oldest first across both (a transcription's
    /// copy in `transcriptions` before the one in `displayUpdates`), until the session fits
    /// `budget`; each list keeps at least its newest entry.
    fn trim(&self, state: &mut StoredSession, budget: usize) -> bool {
        let mut size = json_len(state);
        let mut dropped = false;
        while size > budget {
            let oldest = |list: &[EncodedUpdate]| {
                (list.len() > 1).then(|| list.first().map(EncodedUpdate::timestamp))
            };
            let from_transcriptions = match (
                oldest(&state.transcriptions),
                oldest(&state.display_updates),
            ) {
                (Some(t), Some(d)) => t <= d,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let list = if from_transcriptions {
                &mut state.transcriptions
            } else {
                &mut state.display_updates
            };
            // The entry and the comma that separated it from the next.
            size = size.saturating_sub(list.remove(0).len() + 1);
            dropped = true;
        }
        dropped
    }
}

/// Tells an HTTP request waiting for its write (`Origin::request`) that it is applied; the
/// runtime sends replies after the state is written, so the answer means a read sees it.
fn applied(ctx: &Context<'_>, effects: &mut Effects) {
    if ctx.origin.request.is_some() {
        effects.reply(
            ctx,
            Applied {
                sequence: ctx.stream_seq,
            },
        );
    }
}

fn push_bounded(list: &mut Vec<EncodedUpdate>, update: EncodedUpdate) {
    if list.len() >= HISTORY_LIMIT {
        list.drain(..=list.len() - HISTORY_LIMIT);
    }
    list.push(update);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use tablewire_schemas::{Claims, Origin};

    fn origin() -> Origin {
        Origin {
            edge: "e1".into(),
            conn: None,
            request: None,
        }
    }

    fn ctx<'a>(origin: &'a Origin, claims: Option<&'a Claims>, now: i64) -> Context<'a> {
        Context {
            now_ms: now,
            stream_seq: 1,
            message_id: "m",
            tenant: "_",
            key: "s1",
            claims,
            origin,
        }
    }

    fn update(kind: &str, data: Value) -> Command {
        Command::Update {
            update: serde_json::from_value(json!({"type": kind, "displayData": data}))
                .expect("update"),
        }
    }

    #[test]
    fn updates_fill_the_lists_the_seed_names() {
        let o = origin();
        let c = ctx(&o, None, 1000);
        let mut state = Display.new_state(&c);
        let mut fx = Effects::default();
        for (kind, data) in [
            ("transcription", json!({"text":"hi"})),
            ("dish_card", json!({"dish":1})),
            ("order_summary", json!({"total":5})),
        ] {
            Display
                .apply(&mut state, update(kind, data), &c, &mut fx)
                .expect("apply");
        }
        assert_eq!(state.display_updates.len(), 3);
        assert_eq!(state.transcriptions.len(), 1);
        assert_eq!(state.current_order, Some(json!({"total":5})));
        assert_eq!(fx.events.len(), 3);
        assert_eq!(fx.events[1].value()["type"], "update");
        assert_eq!(fx.events[1].value()["update"]["type"], "dish_card");
        assert_eq!(fx.events[1].value()["update"]["timestamp"], 1000);
    }

    #[test]
    fn lists_keep_the_newest_hundred() {
        let o = origin();
        let c = ctx(&o, None, 1);
        let mut state = Display.new_state(&c);
        let mut fx = Effects::default();
        for i in 0..250 {
            Display
                .apply(&mut state, update("transcription", json!(i)), &c, &mut fx)
                .expect("apply");
        }
        assert_eq!(state.transcriptions.len(), HISTORY_LIMIT);
        assert_eq!(state.display_updates.len(), HISTORY_LIMIT);
        let data = |u: &EncodedUpdate| u.decode().expect("decode").display_data;
        assert_eq!(data(&state.transcriptions[0]), json!(150));
        assert_eq!(data(&state.display_updates[99]), json!(249));
    }

    #[test]
    fn trimming_drops_the_oldest_of_both_lists_until_the_session_fits() {
        let o = origin();
        let mut state = Display.new_state(&ctx(&o, None, 0));
        let mut fx = Effects::default();
        let text = "x".repeat(10_000);
        for i in 0..30 {
            let kind = if i % 3 == 0 {
                "transcription"
            } else {
                "dish_card"
            };
            Display
                .apply(
                    &mut state,
                    update(kind, json!({"i": i, "text": text})),
                    &ctx(&o, None, i),
                    &mut fx,
                )
                .expect("apply");
        }
        let before = json_len(&state);
        assert!(before > 300_000, "{before}");
        assert!(Display.trim(&mut state, 100_000));
        let after = json_len(&state);
        assert!(after <= 100_000, "fits: {after}");
        assert!(after > 80_000, "drops no more than needed: {after}");
        let kept = |list: &[EncodedUpdate]| -> Vec<i64> {
            list.iter()
                .map(|u| {
                    u.decode().expect("decode").display_data["i"]
                        .as_i64()
                        .expect("i")
                })
                .collect()
        };
        let updates = kept(&state.display_updates);
        assert_eq!(updates.last(), Some(&29), "the newest stays");
        assert!(
            updates.windows(2).all(|w| w[1] == w[0] + 1),
            "a contiguous newest run: {updates:?}"
        );
        assert_eq!(kept(&state.transcriptions).last(), Some(&27));
        // Nothing left to drop but the newest of each list: trimming stops there.
        assert!(Display.trim(&mut state, 10));
        assert!(!Display.trim(&mut state, 10), "nothing left to drop");
        assert_eq!(state.display_updates.len(), 1);
        assert_eq!(state.transcriptions.len(), 1);
    }

    #[test]
    fn init_sets_the_tenant_and_records_the_session() {
        let o = origin();
        let c = ctx(&o, None, 7);
        let mut state = Display.new_state(&c);
        let mut fx = Effects::default();
        Display
            .apply(
                &mut state,
                Command::Init {
                    tenant_id: Some("org_1".into()),
                },
                &c,
                &mut fx,
            )
            .expect("init");
        assert_eq!(state.tenant_id.as_deref(), Some("org_1"));
        assert_eq!(state.started_at, 7);
        assert_eq!(fx.records.len(), 1);
        assert!(fx.events.is_empty());
    }

    #[test]
    fn a_sessions_tenant_is_set_once() {
        let o = origin();
        let c = ctx(&o, None, 7);
        let mut state = Display.new_state(&c);
        let init = |tenant: Option<&str>| Command::Init {
            tenant_id: tenant.map(str::to_string),
        };
        let mut fx = Effects::default();
        Display
            .apply(&mut state, init(Some("org_1")), &c, &mut fx)
            .expect("first init");
        Display
            .apply(&mut state, init(Some("org_1")), &c, &mut fx)
            .expect("the same tenant again");
        Display
            .apply(&mut state, init(None), &c, &mut fx)
            .expect("no tenant named");
        assert_eq!(fx.records.len(), 1, "only the first init changed anything");
        let before = state.clone();
        let err = Display
            .apply(&mut state, init(Some("intruder")), &c, &mut fx)
            .expect_err("another tenant");
        assert_eq!(err.0.code, ErrorCode::Conflict);
        assert_eq!(state, before);
    }

    #[test]
    fn http_writes_hear_when_they_are_applied() {
        let waiting = Origin {
            edge: "e1".into(),
            conn: None,
            request: Some("r1".into()),
        };
        let c = ctx(&waiting, None, 1);
        let mut state = Display.new_state(&c);
        let mut fx = Effects::default();
        Display
            .apply(&mut state, update("dish_card", json!(1)), &c, &mut fx)
            .expect("apply");
        assert_eq!(fx.replies.len(), 1);
        assert_eq!(fx.replies[0].0, waiting);
        assert_eq!(fx.replies[0].1.value()["type"], "applied");
        let o = origin();
        let mut fx = Effects::default();
        Display
            .apply(
                &mut state,
                update("dish_card", json!(2)),
                &ctx(&o, None, 2),
                &mut fx,
            )
            .expect("apply");
        assert!(fx.replies.is_empty(), "nobody waits on a plain origin");
    }

    #[test]
    fn rejections_leave_the_state_unchanged() {
        let o = origin();
        let claims = Claims {
            sub: "svc".into(),
            tenant: Some("other".into()),
            role: Some("service".into()),
            exp: u64::MAX,
            iat: None,
        };
        let c = ctx(&o, Some(&claims), 1);
        let mut state = Display.new_state(&c);
        state.tenant_id = Some("org_1".into());
        let before = state.clone();
        let mut fx = Effects::default();
        let err = Display
            .apply(&mut state, update("dish_card", json!(1)), &c, &mut fx)
            .expect_err("tenant mismatch");
        assert_eq!(err.0.code, ErrorCode::TenantMismatch);
        let err = Display
            .apply(&mut state, update("  ", json!(1)), &c, &mut fx)
            .expect_err("empty type");
        assert_eq!(err.0.code, ErrorCode::ValidationError);
        assert_eq!(state, before);
        assert_eq!(fx, Effects::default());
    }

    /// The cost of one update on a full session (100 updates of ~330 bytes, as wsbench posts):
    /// applied and the session encoded for its write, stored as decoded JSON trees (`old`, the
    /// state before `StoredSession`) or as encoded updates (`new`). Run by hand:
    /// `TW_ENCODE=old|new cargo test --release -p tablewire-handlers encode_cost -- --ignored`
    /// (under `valgrind --tool=callgrind` for instruction counts).
    #[test]
    #[ignore = "a measurement, not a check"]
    fn encode_cost() {
        use tablewire_schemas::display::{DisplayUpdate, SessionState};
        let body = |i: i64| {
            json!({"type": "dish_card", "displayData": {"seq": i, "t": 1_700_000_000_000_i64 + i,
                "session": "s-01", "dishName": "Braised short rib",
                "description": "Slow-braised beef short rib, celeriac puree, charred shallots, red wine jus",
                "price": "24.00", "allergens": ["dairy", "celery", "sulphites"],
                "imageUrl": "/img/dishes/short-rib.jpg"}})
        };
        let rounds: i64 = std::env::var("TW_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(2000);
        let variant = std::env::var("TW_ENCODE").unwrap_or_else(|_| "new".into());
        let o = origin();
        let started = std::time::Instant::now();
        let mut bytes = 0;
        if variant == "old" {
            let mut state = SessionState::new("s", 0);
            for i in 0..rounds + 100 {
                let mut update: DisplayUpdate = serde_json::from_value(body(i)).expect("update");
                update.timestamp = Some(i);
                #[derive(serde::Serialize)]
                struct Frame<'a> {
                    r#type: &'static str,
                    update: &'a DisplayUpdate,
                    timestamp: i64,
                }
                let frame = serde_json::to_vec(&Frame {
                    r#type: "update",
                    update: &update,
                    timestamp: i,
                });
                bytes += frame.map(|f| f.len()).unwrap_or(0);
                if state.display_updates.len() >= HISTORY_LIMIT {
                    state.display_updates.remove(0);
                }
                state.display_updates.push(update);
                bytes += serde_json::to_vec(&state).expect("encode").len();
            }
        } else {
            let mut state = Display.new_state(&ctx(&o, None, 0));
            for i in 0..rounds + 100 {
                let mut fx = Effects::default();
                let Command::Update { update } =
                    update("dish_card", body(i)["displayData"].clone())
                else {
                    unreachable!()
                };
                Display
                    .apply(
                        &mut state,
                        Command::Update { update },
                        &ctx(&o, None, i),
                        &mut fx,
                    )
                    .expect("apply");
                bytes += serde_json::to_vec(&state).expect("encode").len();
            }
        }
        let per = started.elapsed() / u32::try_from(rounds + 100).unwrap_or(1);
        println!("{variant}: {per:?} per update, {bytes} bytes encoded");
    }
}
