//! Seed 003 (RFID readers, formerly one Durable Object per device): the frames of
//! `GET /ws/device?deviceId=…` (the seed's `action` field), `POST /api/rfid/scan`,
//! `PUT /api/devices/{id}/config`, `PUT /api/devices/settings` and their answers, the error
//! frame, the records (scans, tags, configs), the feed's device events, the device domain's
//! commands and its per-device state.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The tenant devices belong to when device auth is `none` (the default of `tablewire dev`):
/// the seed's readers present no credentials, so they all share this tenant.
pub const DEFAULT_TENANT: &str = "default";

/// The seed's minimum time between two accepted scans of one device, ms: the interval when
/// neither the device's config nor its tenant's settings set one.
pub const MIN_SCAN_INTERVAL_MS: u64 = 1000;

/// The longest scan interval a tenant may set, ms.
pub const MAX_SCAN_INTERVAL_MS: u64 = 60_000;

/// The longest tag id accepted, bytes.
pub const MAX_TAG_LEN: usize = 128;

/// The longest location accepted, bytes.
pub const MAX_LOCATION_LEN: usize = 256;

/// The WebSocket close code an edge sends to a device connection that another connection of
/// the same device (on this or any other edge) has replaced.
pub const CLOSE_REPLACED: u16 = 4001;

/// The close code an edge sends to a device that sent nothing for two heartbeat intervals.
pub const CLOSE_SILENT: u16 = 4002;

/// Client → server frames on `/ws/device`, tagged by the seed's `action`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum ClientFrame {
    /// A tag was read.
    Scan {
        /// The tag's id.
        #[serde(rename = "tagId")]
        tag_id: String,
        /// Where the reader is (free text).
        #[serde(default)]
        location: Option<String>,
    },
    /// The device is alive; refreshes its presence.
    Heartbeat {
        /// The device's own clock, passed through.
        #[serde(default)]
        timestamp: Option<Value>,
    },
}

/// The body of `POST /api/rfid/scan` (the HTTP fallback).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanRequest {
    /// The device.
    pub device_id: String,
    /// The tag's id.
    pub tag_id: String,
    /// Where the reader is.
    #[serde(default)]
    pub location: Option<String>,
}

/// Checks a scan's fields: a non-empty tag of at most [`MAX_TAG_LEN`] bytes, a location of
/// at most [`MAX_LOCATION_LEN`] bytes without markup (dashboards show it:
/// [`crate::text::check_no_markup`]).
pub fn check_scan(tag_id: &str, location: Option<&str>) -> Result<(), String> {
    if tag_id.trim().is_empty() {
        Err("tagId is empty".to_string())
    } else if tag_id.len() > MAX_TAG_LEN {
        Err(format!("tagId is longer than {MAX_TAG_LEN} bytes"))
    } else if tag_id.chars().any(char::is_control) {
        Err("tagId has control characters".to_string())
    } else if location.is_some_and(|l| l.len() > MAX_LOCATION_LEN) {
        Err(format!("location is longer than {MAX_LOCATION_LEN} bytes"))
    } else {
        location.map_or(Ok(()), |l| crate::text::check_no_markup("location", l))
    }
}

/// A device's configuration, as `PUT /api/devices/{id}/config` stores it and the `config`
/// frame pushes it. Fields other than those named here are kept and pushed as sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceConfig {
    /// In registration mode an unknown tag is registered (a `device_tags` row without a user).
    #[serde(default)]
    pub registration_mode: bool,
    /// The minimum time between two accepted scans, ms (0 to 60000; default: the tenant's
    /// setting, else 1000, the seed's rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_interval_ms: Option<u64>,
    /// Any other settings, pushed to the device unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Checks a scan interval: at most [`MAX_SCAN_INTERVAL_MS`].
fn check_scan_interval(ms: Option<u64>) -> Result<(), String> {
    match ms {
        Some(ms) if ms > MAX_SCAN_INTERVAL_MS => Err(format!(
            "scanIntervalMs must be between 0 and {MAX_SCAN_INTERVAL_MS}"
        )),
        _ => Ok(()),
    }
}

impl DeviceConfig {
    /// Checks the values: a scan interval of at most [`MAX_SCAN_INTERVAL_MS`], as for the
    /// tenant's [`Settings`].
    pub fn check(&self) -> Result<(), String> {
        check_scan_interval(self.scan_interval_ms)
    }

    /// The minimum time between two accepted scans of this device, ms (see
    /// [`effective_scan_interval_ms`]).
    pub fn effective_scan_interval_ms(&self, tenant: Option<u64>) -> u64 {
        effective_scan_interval_ms(self.scan_interval_ms, tenant)
    }
}

/// The minimum time between two accepted scans of a device, ms: its own `scanIntervalMs`
/// (`own`) when set, else its tenant's (`tenant`, from [`Settings`]), else the seed's
/// [`MIN_SCAN_INTERVAL_MS`]. The device handler decides by it, and so does an edge answering a
/// scan early.
pub fn effective_scan_interval_ms(own: Option<u64>, tenant: Option<u64>) -> u64 {
    own.or(tenant).unwrap_or(MIN_SCAN_INTERVAL_MS)
}

/// A tenant's device settings: the body of `PUT /api/devices/settings` (admin token), kept in
/// the KV bucket `tw_device_settings` under the tenant. Unknown fields are refused, so a
/// misspelt setting cannot silently reset one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// The minimum time between two accepted scans of one device, ms (0 to 60000), for the
    /// tenant's devices whose own config sets none. Absent or null: the seed's 1000.
    #[serde(default)]
    pub scan_interval_ms: Option<u64>,
}

impl Settings {
    /// Checks the values: a scan interval of at most [`MAX_SCAN_INTERVAL_MS`].
    pub fn check(&self) -> Result<(), String> {
        check_scan_interval(self.scan_interval_ms)
    }
}

/// Who a tag belongs to, as the edge found it in the tag directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagEntry {
    /// The user the tag belongs to; null for a tag registered but not yet assigned.
    #[serde(default)]
    pub user: Option<Value>,
}

/// The connection that currently holds a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    /// The edge.
    pub edge: String,
    /// The connection on that edge.
    pub conn: u64,
}

/// One device's state, kept in KV (`tw_state_device`, key `{tenant}.{deviceId}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceState {
    /// The device id.
    pub device_id: String,
    /// The live connection, when the device is online.
    pub holder: Option<Holder>,
    /// Whether the device is online.
    pub online: bool,
    /// When the device was last heard from (connect, scan, heartbeat), ms.
    pub last_seen: i64,
    /// When its last accepted scan happened, ms.
    pub last_scan_at: Option<i64>,
    /// Scans accepted so far.
    pub scans: u64,
    /// The stored configuration.
    pub config: DeviceConfig,
    /// Whether `config` was set by an administrator (then it is pushed on every connect).
    pub configured: bool,
}

/// Commands of the device domain, inside the envelope. The sender's edge and connection come
/// from the envelope's origin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// A device connected: the sending connection becomes its holder.
    Connect,
    /// The sending connection ended; the device goes offline if it still held it.
    Disconnect {
        /// Why: `closed`, `silent`, `draining`, …
        reason: String,
    },
    /// A tag was read.
    Scan {
        /// The tag.
        #[serde(rename = "tagId")]
        tag_id: String,
        /// Where.
        #[serde(default)]
        location: Option<String>,
        /// The tag directory's entry, when the tag is known (looked up by the edge).
        #[serde(default)]
        tag: Option<TagEntry>,
        /// The tenant's scan interval when it set one ([`Settings`]), attached by the edge
        /// from its watched copy of the settings so that the scan is judged without a read and
        /// the same way by any worker, on any redelivery. The device's own wins over it.
        #[serde(
            default,
            rename = "tenantScanIntervalMs",
            skip_serializing_if = "Option::is_none"
        )]
        tenant_scan_interval_ms: Option<u64>,
    },
    /// The device is alive.
    Heartbeat {
        /// The device's own clock, echoed.
        #[serde(default)]
        timestamp: Option<Value>,
    },
    /// The device's presence expired (nothing refreshed it for `silentMs`): offline unless
    /// it was heard from since.
    Expire {
        /// How long it had been silent when its presence expired, ms.
        #[serde(rename = "silentMs")]
        silent_ms: u64,
    },
    /// An administrator stored a new configuration.
    Configure {
        /// The configuration.
        config: DeviceConfig,
    },
}

/// An accepted scan, as replies, events and SQL show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Scan {
    /// Unique and stable: `{deviceId}:{input stream sequence}`.
    pub id: String,
    /// The device.
    pub device_id: String,
    /// The tag.
    pub tag_id: String,
    /// Where.
    pub location: Option<String>,
    /// When it was accepted, ms.
    pub timestamp: i64,
    /// Whether this scan registered an unknown tag (registration mode).
    pub registered: bool,
}

/// Frames the device domain fans out on the device's output subject, read by the edge holding
/// the device (never by anyone else).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeviceEvent {
    /// A connection now holds the device; any other connection of it must close.
    Holder {
        /// The new holder.
        holder: Holder,
    },
    /// A new configuration: pushed to the device as `{"action":"config", …}`.
    Config {
        /// The configuration.
        config: DeviceConfig,
    },
    /// A scan of the device was accepted. The edge holding the device answers a scan that is
    /// certainly too soon after it itself, with [`too_soon`] as the handler would; everything
    /// else still goes to the handler, which decides from KV.
    Accepted {
        /// When the accepted scan was taken (ms, the edge's clock; the state's last scan time).
        at: i64,
        /// The device's own `scanIntervalMs`, if its config sets one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        own_interval_ms: Option<u64>,
    },
}

/// "1 second" for the seed's 1000 ms, otherwise the milliseconds.
fn interval_words(ms: u64) -> String {
    if ms == 1000 {
        "1 second".to_string()
    } else if ms.is_multiple_of(1000) {
        format!("{} seconds", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

/// The seed's answer to a scan taken at `now_ms` when the last accepted one was at
/// `last_accepted_ms` and scans must be `interval_ms` apart: `TOO_SOON`, "Please wait 1 second
/// between scans", with the time left as `retryAfterMs`; `None` when the scan may go ahead.
/// The device handler decides with it; an edge uses it to answer early (see
/// [`DeviceEvent::Accepted`]).
pub fn too_soon(last_accepted_ms: i64, now_ms: i64, interval_ms: u64) -> Option<crate::ErrorBody> {
    let elapsed = now_ms.saturating_sub(last_accepted_ms).max(0) as u64;
    (elapsed < interval_ms).then(|| {
        crate::ErrorBody::with_message(
            crate::ErrorCode::TooSoon,
            format!("Please wait {} between scans", interval_words(interval_ms)),
        )
        .retry_after(interval_ms - elapsed)
    })
}

/// The `config` frame pushed to a device: `{"action":"config","registrationMode":…, …}`.
pub fn config_frame(config: &DeviceConfig) -> Value {
    let mut frame = serde_json::to_value(config).unwrap_or_default();
    if let Value::Object(map) = &mut frame {
        map.insert("action".to_string(), Value::from("config"));
    }
    frame
}

/// Record kinds of the device domain.
pub mod record {
    /// An accepted scan (`device_scans`): its data is a [`ScanRecord`](super::ScanRecord).
    pub const SCAN: &str = "device_scan";
    /// A tag registered in registration mode (`device_tags`): a
    /// [`TagRecord`](super::TagRecord).
    pub const TAG: &str = "device_tag";
    /// A stored configuration (`device_configs`): a [`ConfigRecord`](super::ConfigRecord).
    pub const CONFIG: &str = "device_config";
}

/// An accepted scan with the user its tag belongs to: the record of [`record::SCAN`] and the
/// `data` of `device:scan` on the events feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanRecord {
    /// The scan.
    pub scan: Scan,
    /// The tag's user from the tag directory, or null.
    pub user: Option<Value>,
}

/// A tag registered in registration mode ([`record::TAG`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagRecord {
    /// The tag.
    pub tag_id: String,
    /// The device that registered it.
    pub device_id: String,
    /// When, ms.
    pub registered_at: i64,
}

/// A device's stored configuration ([`record::CONFIG`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigRecord {
    /// The device.
    pub device_id: String,
    /// Its configuration.
    pub config: DeviceConfig,
    /// The command's input stream sequence (a later version replaces an earlier row).
    pub version: u64,
}

/// The answer to an accepted scan, on the socket and to `POST /api/rfid/scan`:
/// `{"success": true, "scan": …, "user": …}`.
#[derive(Debug, Serialize)]
pub struct ScanAccepted<'a> {
    /// Always true.
    pub success: bool,
    /// The scan.
    pub scan: &'a Scan,
    /// The tag's user, or null.
    pub user: &'a Option<Value>,
}

/// The answer to a heartbeat: `{"success": true, "action": "heartbeat", "timestamp",
/// "deviceTimestamp"}`.
#[derive(Debug, Serialize)]
#[serde(tag = "action", rename = "heartbeat", rename_all = "camelCase")]
pub struct HeartbeatAck {
    /// Always true.
    pub success: bool,
    /// Server time, ms.
    pub timestamp: i64,
    /// The device's own timestamp, as sent.
    pub device_timestamp: Option<Value>,
}

/// The answer to `PUT /api/devices/{id}/config`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigApplied<'a> {
    /// Always true.
    pub success: bool,
    /// The device.
    pub device_id: &'a str,
    /// Its configuration now.
    pub config: &'a DeviceConfig,
    /// Whether it is connected.
    pub online: bool,
}

/// The `data` of `device:online` on the events feed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedOnline<'a> {
    /// The device.
    pub device_id: &'a str,
    /// The edge holding it.
    pub edge: &'a str,
    /// Whether this connection took over from another.
    pub takeover: bool,
    /// Server time, ms.
    pub timestamp: i64,
}

/// The `data` of `device:offline` on the events feed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedOffline<'a> {
    /// The device.
    pub device_id: &'a str,
    /// Why (`closed`, `replaced`, `expired`, …).
    pub reason: &'a str,
    /// When it was last heard from, ms.
    pub last_seen: i64,
    /// Server time, ms.
    pub timestamp: i64,
}

/// An error as seed 003 answers it, `{"success": false, "error": "…"}`, with the catalogue's
/// `code`, `errorCode`, `retryable` and `retryAfterMs` alongside. Built by the edge and the
/// device handler alike.
pub fn error_frame(error: &crate::ErrorBody, now_ms: i64) -> Value {
    let mut frame = Map::new();
    frame.insert("success".into(), Value::Bool(false));
    frame.insert("error".into(), Value::from(error.message.clone()));
    if let Ok(Value::Object(body)) = serde_json::to_value(error) {
        frame.extend(body.into_iter().filter(|(k, _)| k != "message"));
    }
    frame.insert("timestamp".into(), Value::from(now_ms));
    Value::Object(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_frames_use_the_seed_action_field() {
        let scan: ClientFrame = serde_json::from_str(
            r#"{ "action": "scan", "tagId": "RFID123", "location": "Main Gate" }"#,
        )
        .expect("scan");
        assert_eq!(
            scan,
            ClientFrame::Scan {
                tag_id: "RFID123".into(),
                location: Some("Main Gate".into())
            }
        );
        let hb: ClientFrame =
            serde_json::from_str(r#"{ "action": "heartbeat", "timestamp": 1699000000 }"#)
                .expect("heartbeat");
        assert!(matches!(hb, ClientFrame::Heartbeat { timestamp: Some(_) }));
        assert!(serde_json::from_str::<ClientFrame>(r#"{"action":"scan"}"#).is_err());
    }

    #[test]
    fn config_frame_is_flat_with_action() {
        let config: DeviceConfig =
            serde_json::from_value(json!({"registrationMode": true, "beep": 2})).expect("config");
        assert_eq!(
            config_frame(&config),
            json!({"action": "config", "registrationMode": true, "beep": 2})
        );
        assert_eq!(config.effective_scan_interval_ms(None), 1000);
    }

    #[test]
    fn the_device_interval_wins_over_the_tenant_one_which_wins_over_the_seed_default() {
        let unset = DeviceConfig::default();
        let own = DeviceConfig {
            scan_interval_ms: Some(200),
            ..Default::default()
        };
        assert_eq!(unset.effective_scan_interval_ms(None), MIN_SCAN_INTERVAL_MS);
        assert_eq!(unset.effective_scan_interval_ms(Some(3000)), 3000);
        assert_eq!(unset.effective_scan_interval_ms(Some(0)), 0);
        assert_eq!(own.effective_scan_interval_ms(Some(3000)), 200);
        assert_eq!(own.effective_scan_interval_ms(None), 200);
    }

    #[test]
    fn tenant_settings_are_checked() {
        let parse = |v: Value| serde_json::from_value::<Settings>(v);
        let ok = parse(json!({"scanIntervalMs": 3000})).expect("settings");
        assert_eq!(ok.scan_interval_ms, Some(3000));
        assert!(ok.check().is_ok());
        assert!(
            parse(json!({"scanIntervalMs": 60_000}))
                .expect("max")
                .check()
                .is_ok()
        );
        assert!(
            parse(json!({"scanIntervalMs": 60_001}))
                .expect("u64")
                .check()
                .is_err()
        );
        assert_eq!(
            parse(json!({"scanIntervalMs": null})).expect("reset"),
            Settings::default()
        );
        assert_eq!(parse(json!({})).expect("reset"), Settings::default());
        for wrong in [
            json!({"scanIntervalMs": "3000"}),
            json!({"scanIntervalMs": -1}),
            json!({"scanIntervalMs": 1.5}),
            json!({"scanInterval": 3000}),
        ] {
            assert!(parse(wrong.clone()).is_err(), "{wrong}");
        }
    }

    #[test]
    fn scan_checks() {
        assert!(check_scan("T1", Some("gate")).is_ok());
        assert!(check_scan("", None).is_err());
        assert!(check_scan(&"x".repeat(10 * 1024), None).is_err());
        assert!(check_scan("a\nb", None).is_err());
        let why = check_scan("T1", Some("<b onmouseover=alert(1)>Main Gate</b>"))
            .expect_err("markup in the location");
        assert!(why.contains("location"), "{why}");
    }
}
