//! Who a device or a device administrator is, from the configured device auth (`none`: one
//! shared tenant; `token`: a JWT). Every refusal is counted by the verifier.

use super::state::DeviceEdge;
use crate::config::DeviceAuth;
use crate::credentials::Bearer;
use crate::http::{self, ApiError};
use crate::node::Node;
use axum::extract::{FromRef, FromRequestParts};
use hyper::http::request::Parts;
use std::sync::Arc;
use tablewire_schemas::envelope::role;
use tablewire_schemas::{Claims, ErrorBody, ErrorCode};

/// A device's verified identity: its tenant and the claims that came with it.
pub(super) struct Identity {
    pub(super) tenant: String,
    pub(super) claims: Option<Claims>,
}

/// `INVALID_ID` for a device id.
pub(super) fn invalid_id(e: impl std::fmt::Display) -> ErrorBody {
    ErrorBody::with_message(ErrorCode::InvalidId, format!("deviceId: {e}"))
}

/// The device id of the path, checked.
pub(super) struct DeviceId(pub(super) String);

impl<S: Send + Sync> FromRequestParts<S> for DeviceId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        http::path_id(parts, "deviceId").await.map(DeviceId)
    }
}

/// Decides who a device is, from the configured device auth.
pub(super) fn authenticate(
    devices: &DeviceEdge,
    device: &str,
    authorization: Option<&str>,
    query_token: Option<String>,
) -> Result<Identity, ErrorBody> {
    let auth = &devices.node.auth;
    match &devices.node.config.device_auth {
        DeviceAuth::None { tenant } => Ok(Identity {
            tenant: tenant.clone(),
            claims: None,
        }),
        DeviceAuth::Token => {
            let token = authorization
                .and_then(crate::auth::bearer_token)
                .map(str::to_string)
                .or(query_token)
                .ok_or_else(|| {
                    auth.refuse(ErrorBody::with_message(
                        ErrorCode::Unauthorized,
                        "missing device token",
                    ))
                })?;
            let claims = auth.verify_jwt(&token)?;
            let tenant = claims.tenant.clone().ok_or_else(|| {
                auth.refuse(ErrorBody::with_message(
                    ErrorCode::Unauthorized,
                    "device token has no tenant",
                ))
            })?;
            let is_device = claims.sub == device && claims.has_role(&["device"]);
            if !is_device && !claims.has_role(&[role::SERVICE, role::ADMIN]) {
                return Err(auth.refuse(ErrorBody::with_message(
                    ErrorCode::Unauthorized,
                    "the token is not this device's",
                )));
            }
            Ok(Identity {
                tenant,
                claims: Some(claims),
            })
        }
    }
}

/// The administrator behind a device-administration request and the tenant they administer.
pub(super) struct Admin(pub(super) Identity);

impl<S> FromRequestParts<S> for Admin
where
    S: Send + Sync,
    Arc<Node>: FromRef<S>,
    Arc<DeviceEdge>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let devices = Arc::<DeviceEdge>::from_ref(state);
        let Bearer(principal) = Bearer::from_request_parts(parts, state).await?;
        let claims = match principal.claims() {
            Some(claims) if claims.has_role(&[role::ADMIN]) => claims,
            _ => {
                return Err(ErrorBody::with_message(
                    ErrorCode::Forbidden,
                    "device administration needs an admin token",
                )
                .into());
            }
        };
        // With device auth `none` every device lives in the shared device tenant.
        let tenant = match &devices.node.config.device_auth {
            DeviceAuth::None { tenant } => tenant.clone(),
            DeviceAuth::Token => claims.tenant.clone().ok_or_else(|| {
                ErrorBody::with_message(ErrorCode::Forbidden, "the admin token has no tenant")
            })?,
        };
        Ok(Admin(Identity {
            tenant,
            claims: Some(claims),
        }))
    }
}
