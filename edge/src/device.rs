//! Seed 003 endpoints for RFID readers: `GET /ws/device?deviceId=…` (WebSocket),
//! `POST /api/rfid/scan` (the HTTP fallback), `PUT /api/devices/{id}/config` and
//! `PUT /api/devices/settings` (admin JWT). The edge authenticates, validates, looks the tag up
//! in the tag directory (KV), attaches the tenant's scan interval (from its watched copy of the
//! settings) and publishes; the device handler decides. Each device connection listens on its
//! device's output subject: a `holder` event naming another connection closes it with 4001, a
//! `config` event is pushed to the device, an `accepted` event lets the edge answer a scan that
//! is certainly too soon itself.

use crate::http::{self, Body};
use crate::publish::{Command, now_ms};
use crate::request::{self, Outcome};
use crate::server::Shared;
use crate::ws::{Conn, Handler, frame};
use bytes::Bytes;
use futures::StreamExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use tablewire_nats::{resource, subject, token};
use tablewire_schemas::device::{
    CLOSE_REPLACED, CLOSE_SILENT, ClientFrame, Command as DeviceCommand, DeviceConfig, DeviceEvent,
    ScanRequest, Settings, TagEntry, check_scan, config_frame, effective_scan_interval_ms,
    error_frame, too_soon,
};
use tablewire_schemas::envelope::role;
use tablewire_schemas::{Claims, Domain, ErrorBody, ErrorCode, Origin};
use tokio::task::JoinHandle;
use tracing::debug;

/// Most messages one device connection may send per second (readers send 2 scans/s at most).
const MESSAGES_PER_SECOND: u32 = 20;

/// A device's verified identity: its tenant and the claims that came with it.
struct Identity {
    tenant: String,
    claims: Option<Claims>,
}

/// Decides who a device is, from the configured device auth.
fn authenticate(
    shared: &Shared,
    device: &str,
    authorization: Option<&str>,
    query_token: Option<String>,
) -> Result<Identity, ErrorBody> {
    match &shared.config.device_auth {
        crate::config::DeviceAuth::None { tenant } => Ok(Identity {
            tenant: tenant.clone(),
            claims: None,
        }),
        crate::config::DeviceAuth::Token => {
            let token = authorization
                .and_then(crate::auth::bearer_token)
                .map(str::to_string)
                .or(query_token)
                .ok_or_else(|| {
                    ErrorBody::with_message(ErrorCode::Unauthorized, "missing device token")
                })?;
            let claims = shared.auth.verify_jwt(&token)?;
            let tenant = claims.tenant.clone().ok_or_else(|| {
                ErrorBody::with_message(ErrorCode::Unauthorized, "device token has no tenant")
            })?;
            let is_device = claims.sub == device && claims.has_role(&["device"]);
            if !is_device && !claims.has_role(&[role::SERVICE, role::ADMIN]) {
                return Err(ErrorBody::with_message(
                    ErrorCode::Unauthorized,
                    "the token is not this device's",
                ));
            }
            Ok(Identity {
                tenant,
                claims: Some(claims),
            })
        }
    }
}

/// Routes `/ws/device`, `/api/rfid/scan`, `/api/devices/{id}/config` and
/// `/api/devices/settings`.
pub async fn route(
    shared: &Arc<Shared>,
    mut request: Request<Incoming>,
    segments: &[&str],
) -> (&'static str, Response<Body>) {
    let method = request.method().clone();
    match (segments, method) {
        (["ws", "device"], Method::GET) => ("/ws/device", websocket(shared, &mut request)),
        (["api", "rfid", "scan"], Method::POST) => {
            ("/api/rfid/scan", http_scan(shared, request).await)
        }
        (["api", "devices", id, "config"], Method::PUT) => {
            let id = id.to_string();
            (
                "/api/devices/{id}/config",
                put_config(shared, request, &id).await,
            )
        }
        (["api", "devices", "settings"], Method::PUT) => {
            ("/api/devices/settings", put_settings(shared, request).await)
        }
        (["api", "devices", "settings"], Method::GET) => (
            "/api/devices/settings",
            get_settings(shared, &request).await,
        ),
        (
            ["ws", "device"]
            | ["api", "rfid", "scan"]
            | ["api", "devices", _, "config"]
            | ["api", "devices", "settings"],
            _,
        ) => ("device", http::error_code(ErrorCode::MethodNotAllowed)),
        _ => ("unknown", http::error_code(ErrorCode::NotFound)),
    }
}

fn invalid_id(e: impl std::fmt::Display) -> ErrorBody {
    ErrorBody::with_message(ErrorCode::InvalidId, format!("deviceId: {e}"))
}

fn websocket(shared: &Arc<Shared>, request: &mut Request<Incoming>) -> Response<Body> {
    let device = match http::query_id(request, "deviceId") {
        Ok(Some(device)) => device,
        Ok(None) => {
            return http::error(ErrorBody::with_message(
                ErrorCode::InvalidId,
                "deviceId query parameter is required",
            ));
        }
        Err(e) => return http::error(e),
    };
    if let Err(e) = token::validate_id(&device) {
        return http::error(invalid_id(e));
    }
    let identity = match authenticate(
        shared,
        &device,
        http::header_str(request, "authorization"),
        http::query_param(request, "token"),
    ) {
        Ok(identity) => identity,
        Err(e) => {
            shared.metrics.auth_failures.inc();
            return http::error(e);
        }
    };
    let handler = DeviceHandler {
        shared: shared.clone(),
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
    shared.upgrade(request, "device", handler)
}

/// Looks a tag up in the tag directory; `None` when the tag is unknown.
async fn lookup_tag(
    shared: &Shared,
    tenant: &str,
    tag: &str,
) -> Result<Option<TagEntry>, ErrorBody> {
    let entry = shared
        .device_tags
        .get(resource::device_tag_key(tenant, tag))
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "tag directory unavailable");
            ErrorBody::with_message(ErrorCode::Unavailable, "tag directory unavailable")
        })?;
    Ok(entry.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
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
    shared: Arc<Shared>,
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
            edge: self.shared.id.clone(),
            conn: Some(conn.id),
            request: None,
        }
    }

    fn send_error(&self, conn: &Conn, error: ErrorBody) {
        self.shared.metrics.error(error.code);
        if let Ok(json) = serde_json::to_vec(&error_frame(&error, now_ms())) {
            conn.send_json(&json);
        }
    }

    async fn publish(&self, conn: &Conn, command: &DeviceCommand) -> Result<(), ErrorBody> {
        self.shared
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
            &self.shared.client,
            &subject::output(Domain::Device, &self.tenant, &self.device),
            self.shared.config.bus_timeout,
        )
        .await?;
        let (conn, edge, ended_by) = (conn.clone(), self.shared.id.clone(), self.ended_by.clone());
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
        let half = self.shared.config.device_heartbeat.as_millis() as i64 / 2;
        if !always && now - self.refreshed.load(Ordering::Relaxed) < half {
            return;
        }
        self.refreshed.store(now, Ordering::Relaxed);
        let holder = serde_json::json!({"edge": self.shared.id, "conn": conn.id, "at": now});
        let (bucket, key) = (
            self.shared.device_presence.clone(),
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
        let tenant_interval = self.shared.device_settings.scan_interval_ms(&self.tenant);
        if let Some(error) = self.accepted.too_soon(now_ms(), tenant_interval) {
            self.shared.metrics.device_scans_refused_early.inc();
            return self.send_error(conn, error);
        }
        let tag = match lookup_tag(&self.shared, &self.tenant, &tag_id).await {
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
        let interval = self.shared.config.device_heartbeat;
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

/// Publishes a device command for an HTTP request and answers with the handler's reply
/// (`202` with `pending` when the reply is not ready in time: the command is stored and will
/// be applied).
async fn request_reply(
    shared: &Arc<Shared>,
    identity: Identity,
    device: &str,
    command: &DeviceCommand,
) -> Response<Body> {
    let written = request::write(
        shared,
        Command {
            domain: Domain::Device,
            tenant: &identity.tenant,
            key: device,
            client_id: None,
            origin: Origin::default(),
            claims: identity.claims,
            command,
        },
    )
    .await;
    match written {
        Err(e) => http::error(e),
        Ok((_, Outcome::Answered(bytes))) => {
            let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let status = if value["success"] == Value::Bool(false) {
                value["code"]
                    .as_str()
                    .and_then(ErrorCode::from_name)
                    .and_then(|c| StatusCode::from_u16(c.http_status()).ok())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            } else {
                StatusCode::OK
            };
            http::json(status, &value)
        }
        Ok(_) => http::json(
            StatusCode::ACCEPTED,
            &serde_json::json!({"success": true, "pending": true,
                "message": "accepted; the answer was not ready in time"}),
        ),
    }
}

async fn http_scan(shared: &Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    let authorization = http::header_str(&request, "authorization").map(str::to_string);
    let body: ScanRequest = match http::read_json(request, shared.config.max_message_bytes).await {
        Ok(body) => body,
        Err(e) => return http::error(e),
    };
    if let Err(e) = token::validate_id(&body.device_id) {
        return http::error(invalid_id(e));
    }
    let identity = match authenticate(shared, &body.device_id, authorization.as_deref(), None) {
        Ok(identity) => identity,
        Err(e) => {
            shared.metrics.auth_failures.inc();
            return http::error(e);
        }
    };
    if let Err(why) = check_scan(&body.tag_id, body.location.as_deref()) {
        return http::error(ErrorBody::with_message(ErrorCode::ValidationError, why));
    }
    let tag = match lookup_tag(shared, &identity.tenant, &body.tag_id).await {
        Ok(tag) => tag,
        Err(e) => return http::error(e),
    };
    let command = DeviceCommand::Scan {
        tag_id: body.tag_id,
        location: body.location,
        tag,
        tenant_scan_interval_ms: shared.device_settings.scan_interval_ms(&identity.tenant),
    };
    request_reply(shared, identity, &body.device_id, &command).await
}

/// The administrator behind a device-administration request and the tenant they administer.
fn admin(shared: &Shared, request: &Request<Incoming>) -> Result<Identity, ErrorBody> {
    let claims = match shared
        .auth
        .check_header(http::header_str(request, "authorization"))
        .map(|p| p.claims())
    {
        Ok(Some(claims)) if claims.has_role(&[role::ADMIN]) => claims,
        Ok(_) => {
            return Err(ErrorBody::with_message(
                ErrorCode::Forbidden,
                "device administration needs an admin token",
            ));
        }
        Err(e) => {
            shared.metrics.auth_failures.inc();
            return Err(e);
        }
    };
    // With device auth `none` every device lives in the shared device tenant.
    let tenant = match &shared.config.device_auth {
        crate::config::DeviceAuth::None { tenant } => tenant.clone(),
        crate::config::DeviceAuth::Token => claims.tenant.clone().ok_or_else(|| {
            ErrorBody::with_message(ErrorCode::Forbidden, "the admin token has no tenant")
        })?,
    };
    Ok(Identity {
        tenant,
        claims: Some(claims),
    })
}

async fn put_config(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    device: &str,
) -> Response<Body> {
    if let Err(e) = token::validate_id(device) {
        return http::error(invalid_id(e));
    }
    let identity = match admin(shared, &request) {
        Ok(identity) => identity,
        Err(e) => return http::error(e),
    };
    let config: DeviceConfig = match http::read_json(request, shared.config.max_message_bytes).await
    {
        Ok(config) => config,
        Err(e) => return http::error(e),
    };
    if let Err(why) = config.check() {
        return http::error(ErrorBody::with_message(ErrorCode::ValidationError, why));
    }
    request_reply(
        shared,
        identity,
        device,
        &DeviceCommand::Configure { config },
    )
    .await
}

/// `PUT /api/devices/settings`: stores the admin's tenant's device settings and answers
/// `{"success": true, "settings": {…}}`; scans are judged by them from then on.
async fn put_settings(shared: &Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    let identity = match admin(shared, &request) {
        Ok(identity) => identity,
        Err(e) => return http::error(e),
    };
    let body: Value = match http::read_json(request, shared.config.max_message_bytes).await {
        Ok(body) => body,
        Err(e) => return http::error(e),
    };
    // (serde would also read a struct from an array: only an object is a settings body.)
    let settings = match body {
        Value::Object(_) => serde_json::from_value::<Settings>(body)
            .map_err(|e| ErrorBody::with_message(ErrorCode::InvalidMessage, e.to_string())),
        _ => Err(ErrorBody::with_message(
            ErrorCode::InvalidMessage,
            "the settings are a JSON object: {\"scanIntervalMs\": 3000}",
        )),
    };
    let settings = match settings {
        Ok(settings) => settings,
        Err(e) => return http::error(e),
    };
    if let Err(why) = settings.check() {
        return http::error(ErrorBody::with_message(ErrorCode::ValidationError, why));
    }
    match shared
        .device_settings
        .store(&identity.tenant, settings.clone())
        .await
    {
        Ok(()) => http::json(
            StatusCode::OK,
            &serde_json::json!({"success": true, "settings": settings}),
        ),
        Err(e) => http::error(e),
    }
}

/// `GET /api/devices/settings`: the admin's tenant's device settings as stored, in the shape
/// `PUT` answers with.
async fn get_settings(shared: &Arc<Shared>, request: &Request<Incoming>) -> Response<Body> {
    let identity = match admin(shared, request) {
        Ok(identity) => identity,
        Err(e) => return http::error(e),
    };
    match shared.device_settings.load(&identity.tenant).await {
        Ok(settings) => http::json(
            StatusCode::OK,
            &serde_json::json!({"success": true, "settings": settings}),
        ),
        Err(e) => http::error(e),
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
