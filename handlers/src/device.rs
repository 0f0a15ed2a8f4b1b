//! The device domain (seed 003): one key per RFID reader. Records which connection holds the
//! device (a newer connection takes over, the old one is told to close), its presence, the
//! minimum interval between scans (decided here from KV state and the command's time, so it
//! holds across reconnects and edges; the device's own interval, else the tenant's that the
//! edge attached to the scan, else 1 s), its configuration, and every accepted scan as a record
//! for SQL and an event on the tenant's feed (a notice: see [`Effects::notify`]).

use crate::domain::{Background, Context, Domain, Effects, Rejection};
use crate::error::RuntimeError;
use crate::events::notify_feed;
use serde_json::Value;
use tablewire_schemas::device::{
    Command, ConfigApplied, ConfigRecord, DeviceEvent, DeviceState, FeedOffline, FeedOnline,
    HeartbeatAck, Holder, Scan, ScanAccepted, ScanRecord, TagRecord, check_scan, config_frame,
    error_frame, too_soon,
};
use tablewire_schemas::events::event;
use tablewire_schemas::{Domain as DomainName, ErrorBody, ErrorCode};

/// The record kind of a stored configuration (`device_configs`).
pub use tablewire_schemas::device::record::CONFIG as CONFIG_RECORD;
/// The record kind of an accepted scan (`device_scans`).
pub use tablewire_schemas::device::record::SCAN as SCAN_RECORD;
/// The record kind of a tag registered in registration mode (`device_tags`).
pub use tablewire_schemas::device::record::TAG as TAG_RECORD;

/// The device domain.
#[derive(Debug, Default, Clone, Copy)]
pub struct Device;

fn holder_of(ctx: &Context<'_>) -> Option<Holder> {
    ctx.origin.conn.map(|conn| Holder {
        edge: ctx.origin.edge.clone(),
        conn,
    })
}

impl Domain for Device {
    const NAME: DomainName = DomainName::Device;
    type State = DeviceState;
    type Command = Command;

    /// The presence watcher ([`crate::device_presence`]): a device whose edge died goes offline.
    async fn start(
        &self,
        background: Background,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, RuntimeError> {
        Ok(vec![tokio::spawn(crate::device_presence::watch(
            background.client,
            background.shutdown,
        ))])
    }

    fn new_state(&self, ctx: &Context<'_>) -> DeviceState {
        DeviceState {
            device_id: ctx.key.to_string(),
            ..Default::default()
        }
    }

    fn apply(
        &self,
        state: &mut DeviceState,
        command: Command,
        ctx: &Context<'_>,
        effects: &mut Effects,
    ) -> Result<(), Rejection> {
        match command {
            Command::Connect => {
                let holder = holder_of(ctx).ok_or_else(|| {
                    Rejection::new(ErrorCode::InvalidMessage, "connect needs a connection")
                })?;
                let takeover = state.holder.as_ref().is_some_and(|h| *h != holder);
                state.holder = Some(holder.clone());
                state.online = true;
                state.last_seen = ctx.now_ms;
                effects.event(DeviceEvent::Holder {
                    holder: holder.clone(),
                });
                if state.configured {
                    effects.reply(ctx, config_frame(&state.config));
                }
                notify_feed(
                    effects,
                    ctx,
                    event::DEVICE_ONLINE,
                    FeedOnline {
                        device_id: ctx.key,
                        edge: &holder.edge,
                        takeover,
                        timestamp: ctx.now_ms,
                    },
                );
                Ok(())
            }
            Command::Disconnect { reason } => {
                if state.holder.is_some() && state.holder == holder_of(ctx) {
                    state.holder = None;
                    state.online = false;
                    notify_feed(
                        effects,
                        ctx,
                        event::DEVICE_OFFLINE,
                        FeedOffline {
                            device_id: ctx.key,
                            reason: &reason,
                            last_seen: state.last_seen,
                            timestamp: ctx.now_ms,
                        },
                    );
                }
                Ok(())
            }
            Command::Scan {
                tag_id,
                location,
                tag,
                tenant_scan_interval_ms,
            } => {
                if let (Some(sender), Some(holder)) = (holder_of(ctx), state.holder.as_ref())
                    && sender != *holder
                {
                    return Err(Rejection::new(
                        ErrorCode::Conflict,
                        "this connection was replaced by a newer connection of the device",
                    ));
                }
                check_scan(&tag_id, location.as_deref())
                    .map_err(|why| Rejection::new(ErrorCode::ValidationError, why))?;
                let interval = state
                    .config
                    .effective_scan_interval_ms(tenant_scan_interval_ms);
                if let Some(error) = state
                    .last_scan_at
                    .and_then(|last| too_soon(last, ctx.now_ms, interval))
                {
                    return Err(Rejection(error));
                }
                let registered = tag.is_none() && state.config.registration_mode;
                let user = tag.and_then(|t| t.user);
                let scan = Scan {
                    id: format!("{}:{}", ctx.key, ctx.stream_seq),
                    device_id: ctx.key.to_string(),
                    tag_id,
                    location,
                    timestamp: ctx.now_ms,
                    registered,
                };
                state.last_scan_at = Some(ctx.now_ms);
                state.last_seen = ctx.now_ms;
                state.scans += 1;
                effects.reply(
                    ctx,
                    ScanAccepted {
                        success: true,
                        scan: &scan,
                        user: &user,
                    },
                );
                effects.event(DeviceEvent::Accepted {
                    at: ctx.now_ms,
                    own_interval_ms: state.config.scan_interval_ms,
                });
                let scanned = ScanRecord { scan, user };
                effects.record(SCAN_RECORD, &scanned);
                if registered {
                    effects.record(
                        TAG_RECORD,
                        TagRecord {
                            tag_id: scanned.scan.tag_id.clone(),
                            device_id: scanned.scan.device_id.clone(),
                            registered_at: ctx.now_ms,
                        },
                    );
                }
                notify_feed(effects, ctx, event::DEVICE_SCAN, &scanned);
                Ok(())
            }
            Command::Heartbeat { timestamp } => {
                state.last_seen = ctx.now_ms;
                effects.reply(
                    ctx,
                    HeartbeatAck {
                        success: true,
                        timestamp: ctx.now_ms,
                        device_timestamp: timestamp,
                    },
                );
                Ok(())
            }
            Command::Expire { silent_ms } => {
                let silent = ctx.now_ms.saturating_sub(state.last_seen) >= silent_ms as i64;
                if state.online && silent {
                    state.holder = None;
                    state.online = false;
                    notify_feed(
                        effects,
                        ctx,
                        event::DEVICE_OFFLINE,
                        FeedOffline {
                            device_id: ctx.key,
                            reason: "expired",
                            last_seen: state.last_seen,
                            timestamp: ctx.now_ms,
                        },
                    );
                }
                Ok(())
            }
            Command::Configure { config } => {
                config
                    .check()
                    .map_err(|why| Rejection::new(ErrorCode::ValidationError, why))?;
                state.config = config.clone();
                state.configured = true;
                effects.record(
                    CONFIG_RECORD,
                    ConfigRecord {
                        device_id: ctx.key.to_string(),
                        config: config.clone(),
                        version: ctx.stream_seq,
                    },
                );
                effects.event(DeviceEvent::Config {
                    config: config.clone(),
                });
                effects.reply(
                    ctx,
                    ConfigApplied {
                        success: true,
                        device_id: ctx.key,
                        config: &config,
                        online: state.online,
                    },
                );
                Ok(())
            }
        }
    }

    /// Seed 003 answers errors as `{"success": false, "error": "…"}`.
    fn error_frame(&self, error: &ErrorBody, ctx: &Context<'_>) -> Value {
        error_frame(error, ctx.now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tablewire_schemas::Origin;
    use tablewire_schemas::device::{DeviceConfig, TagEntry};

    fn origin(edge: &str, conn: u64) -> Origin {
        Origin {
            edge: edge.into(),
            conn: Some(conn),
            request: None,
        }
    }

    fn ctx<'a>(origin: &'a Origin, now: i64, seq: u64) -> Context<'a> {
        Context {
            now_ms: now,
            stream_seq: seq,
            message_id: "m",
            tenant: "t1",
            key: "READER1",
            claims: None,
            origin,
        }
    }

    fn scan(tag: &str, known: Option<Value>) -> Command {
        Command::Scan {
            tag_id: tag.into(),
            location: Some("Main Gate".into()),
            tag: known.map(|user| TagEntry { user: Some(user) }),
            tenant_scan_interval_ms: None,
        }
    }

    /// A scan of a device whose tenant set `tenant_ms`.
    fn tenant_scan(tenant_ms: u64) -> Command {
        Command::Scan {
            tag_id: "T".into(),
            location: None,
            tag: None,
            tenant_scan_interval_ms: Some(tenant_ms),
        }
    }

    #[test]
    fn the_tenant_interval_applies_unless_the_device_sets_its_own() {
        let a = origin("e1", 1);
        let mut state = Device.new_state(&ctx(&a, 0, 1));
        apply(&mut state, tenant_scan(3000), &ctx(&a, 10_000, 1)).expect("first");
        let err = apply(&mut state, tenant_scan(3000), &ctx(&a, 11_500, 2)).expect_err("1.5 s");
        assert_eq!(err.0.code, ErrorCode::TooSoon);
        assert_eq!(err.0.message, "Please wait 3 seconds between scans");
        assert_eq!(err.0.retry_after_ms, Some(1500));
        apply(&mut state, tenant_scan(3000), &ctx(&a, 13_000, 3)).expect("3 s later");
        // The device's own interval wins over the tenant's.
        let config = DeviceConfig {
            scan_interval_ms: Some(200),
            ..Default::default()
        };
        apply(
            &mut state,
            Command::Configure { config },
            &ctx(&a, 13_001, 4),
        )
        .expect("cfg");
        let fx = apply(&mut state, tenant_scan(3000), &ctx(&a, 13_200, 5)).expect("200 ms later");
        // The edge holding the device hears of it, with what it needs to answer early.
        assert_eq!(
            fx.events[0].value(),
            json!({"type": "accepted", "at": 13_200, "own_interval_ms": 200})
        );
    }

    fn apply(state: &mut DeviceState, c: Command, cx: &Context<'_>) -> Result<Effects, Rejection> {
        let mut fx = Effects::default();
        Device.apply(state, c, cx, &mut fx).map(|()| fx)
    }

    #[test]
    fn a_scan_answers_like_the_seed_and_is_recorded_and_announced() {
        let a = origin("e1", 1);
        let mut state = Device.new_state(&ctx(&a, 0, 1));
        apply(&mut state, Command::Connect, &ctx(&a, 1_000, 1)).expect("connect");
        assert!(state.online);
        let fx = apply(
            &mut state,
            scan("RFID1", Some(json!({"id": "u1"}))),
            &ctx(&a, 2_000, 2),
        )
        .expect("scan");
        let reply = &fx.replies[0].1.value();
        assert_eq!(reply["success"], true);
        assert_eq!(reply["scan"]["tagId"], "RFID1");
        assert_eq!(reply["scan"]["id"], "READER1:2");
        assert_eq!(reply["user"]["id"], "u1");
        assert_eq!(fx.records[0].0, SCAN_RECORD);
        assert_eq!(fx.notices[0].domain, DomainName::Events);
        assert_eq!(fx.notices[0].key, tablewire_schemas::events::FEED_KEY);
        assert_eq!(fx.notices[0].frame.value()["type"], event::DEVICE_SCAN);
        let fx = apply(&mut state, scan("UNKNOWN", None), &ctx(&a, 3_000, 3)).expect("scan");
        assert_eq!(fx.replies[0].1.value()["user"], Value::Null);
        assert_eq!(
            fx.records.len(),
            1,
            "unknown tags are not registered by default"
        );
    }

    #[test]
    fn a_second_scan_within_the_interval_is_refused_and_changes_nothing() {
        let a = origin("e1", 1);
        let mut state = Device.new_state(&ctx(&a, 0, 1));
        apply(&mut state, scan("T", None), &ctx(&a, 10_000, 1)).expect("first");
        let before = state.clone();
        let err = apply(&mut state, scan("T", None), &ctx(&a, 10_999, 2)).expect_err("too soon");
        assert_eq!(err.0.code, ErrorCode::TooSoon);
        assert_eq!(err.0.message, "Please wait 1 second between scans");
        assert_eq!(err.0.retry_after_ms, Some(1));
        assert_eq!(state, before);
        let frame = Device.error_frame(&err.0, &ctx(&a, 10_999, 2));
        assert_eq!(frame["success"], false);
        assert_eq!(frame["error"], "Please wait 1 second between scans");
        assert_eq!(frame["code"], "TOO_SOON");
        // From another edge after a reconnect: still measured from the stored scan.
        let b = origin("e2", 7);
        apply(&mut state, Command::Connect, &ctx(&b, 10_500, 3)).expect("connect");
        let err = apply(&mut state, scan("T", None), &ctx(&b, 10_900, 4)).expect_err("too soon");
        assert_eq!(err.0.code, ErrorCode::TooSoon);
        apply(&mut state, scan("T", None), &ctx(&b, 11_000, 5)).expect("after a second");
    }

    #[test]
    fn a_new_connection_takes_over_and_the_old_one_is_refused() {
        let (a, b) = (origin("e1", 1), origin("e2", 9));
        let mut state = Device.new_state(&ctx(&a, 0, 1));
        apply(&mut state, Command::Connect, &ctx(&a, 1, 1)).expect("a");
        let fx = apply(&mut state, Command::Connect, &ctx(&b, 2, 2)).expect("b");
        assert_eq!(
            fx.events[0].value(),
            json!({"type": "holder", "holder": {"edge": "e2", "conn": 9}})
        );
        assert_eq!(fx.notices[0].frame.value()["data"]["takeover"], true);
        let err = apply(&mut state, scan("T", None), &ctx(&a, 5_000, 3)).expect_err("old");
        assert_eq!(err.0.code, ErrorCode::Conflict);
        // The old connection's close does not take the device offline.
        let fx = apply(
            &mut state,
            Command::Disconnect {
                reason: "replaced".into(),
            },
            &ctx(&a, 6, 4),
        )
        .expect("old disconnect");
        assert!(state.online && fx.notices.is_empty());
        let fx = apply(
            &mut state,
            Command::Disconnect {
                reason: "closed".into(),
            },
            &ctx(&b, 7, 5),
        )
        .expect("disconnect");
        assert!(!state.online && state.holder.is_none());
        assert_eq!(fx.notices[0].frame.value()["type"], event::DEVICE_OFFLINE);
    }

    #[test]
    fn configuration_is_pushed_now_and_on_connect_and_drives_registration() {
        let a = origin("e1", 1);
        let http = Origin {
            edge: "e1".into(),
            conn: None,
            request: Some("r".into()),
        };
        let mut state = Device.new_state(&ctx(&a, 0, 1));
        let config: DeviceConfig =
            serde_json::from_value(json!({"registrationMode": true, "scanIntervalMs": 200}))
                .expect("config");
        let fx = apply(&mut state, Command::Configure { config }, &ctx(&http, 1, 1)).expect("cfg");
        assert_eq!(fx.events[0].value()["type"], "config");
        assert_eq!(fx.replies[0].1.value()["online"], false);
        let fx = apply(&mut state, Command::Connect, &ctx(&a, 2, 2)).expect("connect");
        assert_eq!(
            fx.replies[0].1.value(),
            json!({"action": "config", "registrationMode": true, "scanIntervalMs": 200})
        );
        let fx = apply(&mut state, scan("NEW", None), &ctx(&a, 1_000, 3)).expect("register");
        assert_eq!(fx.replies[0].1.value()["scan"]["registered"], true);
        assert_eq!(fx.records[1].0, TAG_RECORD);
        apply(&mut state, scan("NEW", None), &ctx(&a, 1_200, 4)).expect("200 ms later is fine");

        // An interval over a minute is refused and changes nothing.
        let before = state.clone();
        let config: DeviceConfig =
            serde_json::from_value(json!({"scanIntervalMs": 60_001})).expect("config");
        let refused = apply(
            &mut state,
            Command::Configure { config },
            &ctx(&http, 1_300, 5),
        )
        .expect_err("too long");
        assert_eq!(refused.0.code, ErrorCode::ValidationError);
        assert_eq!(state, before);
    }

    #[test]
    fn an_expired_presence_takes_a_silent_device_offline_only() {
        let a = origin("e1", 1);
        let none = Origin {
            edge: String::new(),
            conn: None,
            request: None,
        };
        let mut state = Device.new_state(&ctx(&a, 0, 1));
        apply(&mut state, Command::Connect, &ctx(&a, 1_000, 1)).expect("connect");
        apply(
            &mut state,
            Command::Heartbeat { timestamp: None },
            &ctx(&a, 5_000, 2),
        )
        .expect("heartbeat");
        let expire = || Command::Expire { silent_ms: 4_000 };
        let fx = apply(&mut state, expire(), &ctx(&none, 8_000, 3)).expect("recently heard");
        assert!(state.online && fx.notices.is_empty());
        let fx = apply(&mut state, expire(), &ctx(&none, 9_000, 4)).expect("silent");
        assert!(!state.online && state.holder.is_none());
        assert_eq!(fx.notices[0].frame.value()["data"]["reason"], "expired");
    }

    #[test]
    fn malformed_scans_are_refused() {
        let a = origin("e1", 1);
        let mut state = Device.new_state(&ctx(&a, 0, 1));
        let err = apply(
            &mut state,
            scan(&"x".repeat(10 * 1024), None),
            &ctx(&a, 1, 1),
        )
        .expect_err("huge");
        assert_eq!(err.0.code, ErrorCode::ValidationError);
        assert_eq!(state.scans, 0);
    }
}
