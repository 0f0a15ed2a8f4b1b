//! The device WebSocket, `GET /ws/device?deviceId=…`: registers the device, keeps its
//! presence, listens on its output subject (a `holder` naming another connection closes it with
//! 4001, a `config` is pushed, an `accepted` lets the edge answer a scan that is certainly too
//! soon itself), and publishes scans and heartbeats for the device handler.

use super::identity::{Identity, authenticate, invalid_id};
use super::state::DeviceEdge;
use crate::http::{self, ApiError};
use crate::publish::{Command, now_ms};
use crate::upgrade::WebSocketUpgrade;
use crate::ws::{Conn, Handler, frame};
use axum::extract::{FromRef, FromRequestParts, State};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use hyper::http::request::Parts;
use serde_json::Value;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use tablewire_nats::{resource, subject, token};
use tablewire_schemas::device::{
    CLOSE_REPLACED, CLOSE_SILENT, ClientFrame, Command as DeviceCommand, DeviceEvent, check_scan,
    config_frame, effective_scan_interval_ms, error_frame, too_soon,
};
use tablewire_schemas::{Claims, Domain, ErrorBody, ErrorCode, Origin};
use tokio::task::JoinHandle;
use tracing::debug;

/// Most messages one device connection may send per second (readers send 2 scans/s at most).
const MESSAGES_PER_SECOND: u32 = 20;

/// The device of an upgrade request (`?deviceId=`) and who it is (`Authorization: Bearer` or
/// `?token=`).
pub(super) struct Caller {
    device: String,
    identity: Identity,
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Arc<DeviceEdge>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let devices = Arc::<DeviceEdge>::from_ref(state);
        let device = http::query_id(&parts.uri, "deviceId")?.ok_or_else(|| {
            ErrorBody::with_message(ErrorCode::InvalidId, "deviceId query parameter is required")
        })?;
        token::validate_id(&device).map_err(invalid_id)?;
        let identity = authenticate(
            &devices,
            &device,
            http::header_str(&parts.headers, "authorization"),
            http::query_param(&parts.uri, "token"),
        )?;
        Ok(Caller { device, identity })
    }
}

pub(super) async fn socket(
    State(devices): State<Arc<DeviceEdge>>,
    Caller { device, identity }: Caller,
    upgrade: WebSocketUpgrade,
) -> Response {
    let handler = DeviceHandler {
        devices,
        tenant: identity.tenant,
        device,
        claims: identity.claims,
        heard: Arc::new(AtomicI64::new(now_ms())),
        refreshed: AtomicI64::new(0),
        accepted: Arc::new(LastAccepted::default()),
        limit: crate::limit::ConnLimit::per_second(MESSAGES_PER_SECOND),
        ended_by: Arc::new(Mutex::new(None)),
        tasks: Mutex::new(Vec::new()),
    };
    upgrade.serve("device", handler)
}

/// Closes `conn` with `code`, remembering why for the `disconnect` command.
fn end(conn: &Conn, ended_by: &Mutex<Option<&'static str>>, why: &'static str, code: u16) {
    *ended_by.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    conn.close(code, why);
}

/// What the edge holding a device knows of its last accepted scan, from the handler's
/// [`DeviceEvent::Accepted`]: enough to answer a scan that is certainly too soon without a trip
/// through JetStream (at the seed's 2 scans/s per reader, half of all scans). The handler
/// stays the authority: anything not certain goes to it, and a new configuration makes the
/// edge forget until the next announcement.
#[derive(Default)]
struct LastAccepted {
    /// ms of the last accepted scan; 0 when unknown.
    at: AtomicI64,
    /// The device's own interval, ms; -1 when its config sets none.
    own_interval: AtomicI64,
}

impl LastAccepted {
    fn remember(&self, at: i64, own_interval_ms: Option<u64>) {
        self.own_interval.store(
            own_interval_ms.map_or(-1, |ms| ms.min(i64::MAX as u64) as i64),
            Ordering::Relaxed,
        );
        self.at.fetch_max(at, Ordering::Relaxed);
    }

    fn forget(&self) {
        self.at.store(0, Ordering::Relaxed);
    }

    /// The handler's answer to a scan now, when it is certainly `TOO_SOON`, by the interval the
    /// handler uses ([`effective_scan_interval_ms`]; `tenant_interval_ms` is what this edge
    /// attaches to the scan).
    fn too_soon(&self, now_ms: i64, tenant_interval_ms: Option<u64>) -> Option<ErrorBody> {
        let at = self.at.load(Ordering::Relaxed);
        if at <= 0 {
            return None;
        }
        let own = u64::try_from(self.own_interval.load(Ordering::Relaxed)).ok();
        let interval = effective_scan_interval_ms(own, tenant_interval_ms);
        // The handler judges a scan by when it is published, a little after now (the tag
        // lookup): near the end of the interval it may already be allowed, so leave that to it.
        too_soon(at, now_ms + EARLY_REFUSAL_MARGIN_MS, interval)?;
        too_soon(at, now_ms, interval)
    }
}

/// How far from the end of the interval a scan must be for the edge to refuse it itself.
const EARLY_REFUSAL_MARGIN_MS: i64 = 100;

/// One device WebSocket.
struct DeviceHandler {
    devices: Arc<DeviceEdge>,
    tenant: String,
    device: String,
    claims: Option<Claims>,
    /// When the device last sent anything, ms.
    heard: Arc<AtomicI64>,
    /// When this connection last refreshed the device's presence, ms.
    refreshed: AtomicI64,
    /// The device's last accepted scan, as the handler announced it.
    accepted: Arc<LastAccepted>,
    limit: crate::limit::ConnLimit,
    /// Why the edge ended the connection, when it did.
    ended_by: Arc<Mutex<Option<&'static str>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl DeviceHandler {
    fn origin(&self, conn: &Conn) -> Origin {
        Origin {
            edge: self.devices.node.id.clone(),
            conn: Some(conn.id),
            request: None,
        }
    }

    fn send_error(&self, conn: &Conn, error: ErrorBody) {
        self.devices.node.metrics.error(error.code);
        if let Ok(json) = serde_json::to_vec(&error_frame(&error, now_ms())) {
            conn.send_json(&json);
        }
    }

    async fn publish(&self, conn: &Conn, command: &DeviceCommand) -> Result<(), ErrorBody> {
        self.devices
            .node
            .publisher
            .publish(Command {
                domain: Domain::Device,
                tenant: &self.tenant,
                key: &self.device,
                client_id: None,
                origin: self.origin(conn),
                claims: self.claims.clone(),
                command,
            })
            .await
            .map(|_| ())
    }

    /// Listens on the device's output subject: pushes `config`, closes when replaced.
    async fn listen(&self, conn: &Arc<Conn>) -> Result<JoinHandle<()>, ErrorBody> {
        let mut sub = crate::fanout::subscribe_confirmed(
            &self.devices.node.client,
            &subject::output(Domain::Device, &self.tenant, &self.device),
            self.devices.node.config.bus_timeout,
        )
        .await?;
        let (conn, edge, ended_by) = (
            conn.clone(),
            self.devices.node.id.clone(),
            self.ended_by.clone(),
        );
        let accepted = self.accepted.clone();
        Ok(tokio::spawn(async move {
            while let Some(message) = sub.next().await {
                match serde_json::from_slice::<DeviceEvent>(&message.payload) {
                    Ok(DeviceEvent::Holder { holder }) => {
                        if holder.edge != edge || holder.conn != conn.id {
                            end(&conn, &ended_by, "replaced", CLOSE_REPLACED);
                            break;
                        }
                    }
                    Ok(DeviceEvent::Config { config }) => {
                        // The interval may have changed: leave every scan to the handler
                        // until it announces the next accepted one.
                        accepted.forget();
                        if let Ok(json) = serde_json::to_vec(&config_frame(&config)) {
                            conn.send_json(&json);
                        }
                    }
                    Ok(DeviceEvent::Accepted {
                        at,
                        own_interval_ms,
                    }) => accepted.remember(at, own_interval_ms),
                    Err(e) => debug!(error = %e, "unreadable device event"),
                }
            }
        }))
    }

    /// Refreshes the device's presence in KV (its TTL is two heartbeat intervals): always on
    /// connect and heartbeat, on scans at most every half interval. Not awaited.
    fn refresh_presence(&self, conn: &Conn, always: bool) {
        let now = now_ms();
        let half = self.devices.node.config.device_heartbeat.as_millis() as i64 / 2;
        if !always && now - self.refreshed.load(Ordering::Relaxed) < half {
            return;
        }
        self.refreshed.store(now, Ordering::Relaxed);
        let holder = serde_json::json!({"edge": self.devices.node.id, "conn": conn.id, "at": now});
        let (bucket, key) = (
            self.devices.presence.clone(),
            resource::state_key(&self.tenant, &self.device),
        );
        tokio::spawn(async move {
            if let Err(e) = bucket.put(key, holder.to_string().into()).await {
                debug!(error = %e, "device presence not refreshed");
            }
        });
    }

    async fn scan(&self, conn: &Conn, tag_id: String, location: Option<String>) {
        if let Err(why) = check_scan(&tag_id, location.as_deref()) {
            return self.send_error(
                conn,
                ErrorBody::with_message(ErrorCode::ValidationError, why),
            );
        }
        let tenant_interval = self.devices.settings.scan_interval_ms(&self.tenant);
        if let Some(error) = self.accepted.too_soon(now_ms(), tenant_interval) {
            self.devices.node.metrics.device_scans_refused_early.inc();
            return self.send_error(conn, error);
        }
        let tag = match self.devices.tags.lookup(&self.tenant, &tag_id).await {
            Ok(tag) => tag,
            Err(e) => return self.send_error(conn, e),
        };
        let command = DeviceCommand::Scan {
            tag_id,
            location,
            tag,
            tenant_scan_interval_ms: tenant_interval,
        };
        if let Err(e) = self.publish(conn, &command).await {
            self.send_error(conn, e);
        }
    }
}

impl Handler for DeviceHandler {
    async fn on_open(&self, conn: &Arc<Conn>) {
        let listener = match self.listen(conn).await {
            Ok(task) => task,
            Err(e) => {
                self.send_error(conn, e);
                return conn.close(frame::close::SERVER_ERROR, "event bus unavailable");
            }
        };
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(listener);
        if let Err(e) = self.publish(conn, &DeviceCommand::Connect).await {
            self.send_error(conn, e);
            return conn.close(frame::close::TRY_AGAIN_LATER, "cannot register the device");
        }
        self.refresh_presence(conn, true);
        // Presence: a device silent for two heartbeat intervals is closed and goes offline.
        let interval = self.devices.node.config.device_heartbeat;
        let silent_after = 2 * interval.as_millis() as i64;
        let (conn, heard, ended_by) = (conn.clone(), self.heard.clone(), self.ended_by.clone());
        let watchdog = tokio::spawn(async move {
            let check = (interval / 4).max(std::time::Duration::from_millis(10));
            let mut tick = tokio::time::interval(check);
            loop {
                tick.tick().await;
                if conn.is_closing() {
                    break;
                }
                if now_ms() - heard.load(Ordering::Relaxed) > silent_after {
                    end(&conn, &ended_by, "silent", CLOSE_SILENT);
                    break;
                }
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(watchdog);
    }

    async fn on_text(&self, conn: &Arc<Conn>, text: Bytes) {
        self.heard.store(now_ms(), Ordering::Relaxed);
        if let Err(wait) = self.limit.check() {
            return self.send_error(
                conn,
                ErrorBody::new(ErrorCode::RateLimited).retry_after(wait),
            );
        }
        let value: Value = match http::parse_json(&text) {
            Ok(v) => v,
            Err(e) => return self.send_error(conn, e),
        };
        let frame = match serde_json::from_value::<ClientFrame>(value.clone()) {
            Ok(frame) => frame,
            Err(e) => {
                let error = match value.get("action").and_then(Value::as_str) {
                    Some(a @ ("scan" | "heartbeat")) => ErrorBody::with_message(
                        ErrorCode::InvalidMessage,
                        format!("invalid {a}: {e}"),
                    ),
                    Some(a) => ErrorBody::with_message(
                        ErrorCode::UnknownType,
                        format!("unknown action {a:?}"),
                    ),
                    None => ErrorBody::with_message(
                        ErrorCode::InvalidMessage,
                        "a message needs a string \"action\"",
                    ),
                };
                return self.send_error(conn, error);
            }
        };
        match frame {
            ClientFrame::Scan { tag_id, location } => {
                self.refresh_presence(conn, false);
                self.scan(conn, tag_id, location).await
            }
            ClientFrame::Heartbeat { timestamp } => {
                self.refresh_presence(conn, true);
                if let Err(e) = self
                    .publish(conn, &DeviceCommand::Heartbeat { timestamp })
                    .await
                {
                    self.send_error(conn, e);
                }
            }
        }
    }

    async fn on_close(&self, conn: &Arc<Conn>) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
        let reason = (*self.ended_by.lock().unwrap_or_else(|p| p.into_inner())).unwrap_or("closed");
        let command = DeviceCommand::Disconnect {
            reason: reason.to_string(),
        };
        if let Err(e) = self.publish(conn, &command).await {
            debug!(error = %e.message, device = %self.device, "disconnect not stored");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_is_refused_early_only_when_the_handler_would_refuse_it() {
        let last = LastAccepted::default();
        assert!(
            last.too_soon(5_000, None).is_none(),
            "nothing announced yet"
        );
        last.remember(10_000, None);
        let error = last.too_soon(10_400, None).expect("400 ms after: too soon");
        assert_eq!(error.code, ErrorCode::TooSoon);
        assert_eq!(error.message, "Please wait 1 second between scans");
        assert_eq!(error.retry_after_ms, Some(600));
        assert!(last.too_soon(11_000, None).is_none(), "a full second later");
        assert!(
            last.too_soon(10_950, None).is_none(),
            "50 ms before the end: the handler decides"
        );
        // The tenant's interval applies when the device sets none; the device's own wins.
        assert!(last.too_soon(11_000, Some(3_000)).is_some());
        last.remember(10_000, Some(200));
        assert!(last.too_soon(10_250, Some(3_000)).is_none());
        // A new configuration: the edge no longer knows, the handler decides.
        last.forget();
        assert!(last.too_soon(10_100, Some(3_000)).is_none());
    }
}
