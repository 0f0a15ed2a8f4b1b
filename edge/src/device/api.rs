//! The device HTTP endpoints: `POST /api/rfid/scan` (the readers' fallback), and for admin
//! JWTs `PUT /api/devices/{id}/config` and `GET`/`PUT /api/devices/settings`. Scans and
//! configurations are answered with the device handler's reply.

use super::identity::{Admin, DeviceId, Identity, authenticate, invalid_id};
use super::state::DeviceEdge;
use crate::http::{self, Answer, JsonBody};
use crate::publish::Command;
use crate::request::{self, Outcome};
use axum::extract::State;
use axum::response::Response;
use hyper::{HeaderMap, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use tablewire_nats::token;
use tablewire_schemas::device::{
    Command as DeviceCommand, DeviceConfig, ScanRequest, Settings, check_scan,
};
use tablewire_schemas::{Domain, ErrorBody, ErrorCode, Origin};

/// Publishes a device command for an HTTP request and answers with the handler's reply
/// (`202` with `pending` when the reply is not ready in time: the command is stored and will
/// be applied).
async fn request_reply(
    devices: &DeviceEdge,
    identity: Identity,
    device: &str,
    command: &DeviceCommand,
) -> Response {
    let written = request::write(
        &devices.node,
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

/// `POST /api/rfid/scan`: a scan over HTTP, answered with the handler's verdict.
pub(super) async fn scan(
    State(devices): State<Arc<DeviceEdge>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ScanRequest>,
) -> Answer {
    token::validate_id(&body.device_id).map_err(invalid_id)?;
    let identity = authenticate(
        &devices,
        &body.device_id,
        http::header_str(&headers, "authorization"),
        None,
    )?;
    check_scan(&body.tag_id, body.location.as_deref())
        .map_err(|why| ErrorBody::with_message(ErrorCode::ValidationError, why))?;
    let tag = devices.tags.lookup(&identity.tenant, &body.tag_id).await?;
    let command = DeviceCommand::Scan {
        tag_id: body.tag_id,
        location: body.location,
        tag,
        tenant_scan_interval_ms: devices.settings.scan_interval_ms(&identity.tenant),
    };
    Ok(request_reply(&devices, identity, &body.device_id, &command).await)
}

/// `PUT /api/devices/{id}/config`: a device's configuration, applied by the handler.
pub(super) async fn put_config(
    State(devices): State<Arc<DeviceEdge>>,
    DeviceId(device): DeviceId,
    Admin(identity): Admin,
    JsonBody(config): JsonBody<DeviceConfig>,
) -> Answer {
    config
        .check()
        .map_err(|why| ErrorBody::with_message(ErrorCode::ValidationError, why))?;
    let command = DeviceCommand::Configure { config };
    Ok(request_reply(&devices, identity, &device, &command).await)
}

/// `PUT /api/devices/settings`: stores the admin's tenant's device settings and answers
/// `{"success": true, "settings": {…}}`; scans are judged by them from then on.
pub(super) async fn put_settings(
    State(devices): State<Arc<DeviceEdge>>,
    Admin(identity): Admin,
    JsonBody(body): JsonBody<Value>,
) -> Answer {
    // (serde would also read a struct from an array: only an object is a settings body.)
    let settings = match body {
        Value::Object(_) => serde_json::from_value::<Settings>(body)
            .map_err(|e| ErrorBody::with_message(ErrorCode::InvalidMessage, e.to_string()))?,
        _ => {
            return Err(ErrorBody::with_message(
                ErrorCode::InvalidMessage,
                "the settings are a JSON object: {\"scanIntervalMs\": 3000}",
            )
            .into());
        }
    };
    settings
        .check()
        .map_err(|why| ErrorBody::with_message(ErrorCode::ValidationError, why))?;
    devices
        .settings
        .store(&identity.tenant, settings.clone())
        .await?;
    Ok(http::json(
        StatusCode::OK,
        &serde_json::json!({"success": true, "settings": settings}),
    ))
}

/// `GET /api/devices/settings`: the admin's tenant's device settings as stored, in the shape
/// `PUT` answers with.
pub(super) async fn get_settings(
    State(devices): State<Arc<DeviceEdge>>,
    Admin(identity): Admin,
) -> Answer {
    let settings = devices.settings.load(&identity.tenant).await?;
    Ok(http::json(
        StatusCode::OK,
        &serde_json::json!({"success": true, "settings": settings}),
    ))
}
