//! The edge→handler envelope: what an edge publishes to the input stream for every accepted
//! client command, and the verified claims it carries. Built by `edge`, read by `handlers`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The verified claims of a JWT, as the edge checked them. Also the claims
/// `tablewire token` mints. The edge reads a token's payload with [`Claims::from_jwt`]; in the
/// envelope the tenant is always under `tenant`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Claims {
    /// Who the token was issued to (a user, a terminal, a service, a device).
    pub sub: String,
    /// The tenant (restaurant) the token is scoped to. A token may name it under any of
    /// [`TENANT_CLAIMS`]; the envelope carries it here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The role, e.g. `service`, `admin`, `staff`, `kitchen`, `device`, `customer`. Compared
    /// exactly: `ADMIN` is not `admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

/// The claim names a JWT may carry its tenant under, all meaning the same thing: backends that
/// serve several systems often put it under more than one.
pub const TENANT_CLAIMS: [&str; 5] = [
    "tenant",
    "tenantId",
    "tenant_id",
    "restaurant_id",
    "restaurantId",
];

/// Why a verified JWT's payload cannot be used as [`Claims`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimsError {
    /// Two tenant claims name different tenants (never "first one wins").
    TenantsDisagree(String),
    /// A claim tablewire reads has a type it cannot use.
    Malformed(String),
}

impl std::fmt::Display for ClaimsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClaimsError::TenantsDisagree(why) | ClaimsError::Malformed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ClaimsError {}

/// A claim holding seconds since the Unix epoch (some issuers write them with a fraction).
fn seconds(value: &serde_json::Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

impl Claims {
    /// Reads the claims tablewire uses from a verified JWT payload. Claims it does not know
    /// (`aud`, `iss`, `email`, …) are ignored. The tenant may come under any of
    /// [`TENANT_CLAIMS`], as a string or an integer; several that agree are one tenant, several
    /// that disagree are an error; an empty string counts as absent. A role that is not a
    /// string is ignored (no role, so no privilege).
    pub fn from_jwt(payload: &serde_json::Value) -> Result<Claims, ClaimsError> {
        let sub = match payload.get("sub") {
            Some(serde_json::Value::String(sub)) => sub.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => {
                return Err(ClaimsError::Malformed(
                    "the token has no string `sub` claim".into(),
                ));
            }
        };
        let exp = payload
            .get("exp")
            .and_then(seconds)
            .ok_or_else(|| ClaimsError::Malformed("the token has no numeric `exp` claim".into()))?;
        let mut tenant: Option<(&str, String)> = None;
        for name in TENANT_CLAIMS {
            let value = match payload.get(name) {
                None | Some(serde_json::Value::Null) => continue,
                Some(serde_json::Value::String(s)) if s.is_empty() => continue,
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
                Some(_) => {
                    return Err(ClaimsError::Malformed(format!(
                        "the token's `{name}` claim is not a string or an integer"
                    )));
                }
            };
            match &tenant {
                Some((first, seen)) if *seen != value => {
                    return Err(ClaimsError::TenantsDisagree(format!(
                        "the token's `{first}` ({seen:?}) and `{name}` ({value:?}) name different tenants"
                    )));
                }
                Some(_) => {}
                None => tenant = Some((name, value)),
            }
        }
        Ok(Claims {
            sub,
            tenant: tenant.map(|(_, t)| t),
            role: payload
                .get("role")
                .and_then(|r| r.as_str())
                .map(str::to_string),
            exp,
            iat: payload.get("iat").and_then(seconds),
        })
    }
}

/// Roles with a meaning inside tablewire.
pub mod role {
    /// A backend service: may post display updates and publish events.
    pub const SERVICE: &str = "service";
    /// A tenant administrator: everything a service may, plus device configuration.
    pub const ADMIN: &str = "admin";
}

impl Claims {
    /// Whether the token carries one of the given roles (exactly as written).
    pub fn has_role(&self, roles: &[&str]) -> bool {
        self.role
            .as_deref()
            .is_some_and(|role| roles.contains(&role))
    }
}

/// The domains tablewire serves, one per seed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    /// Seed 000: customer display sessions.
    Display,
    /// Seed 004: each tenant's restaurant events feed.
    Events,
    /// Seed 001: collaborative order rooms.
    Collab,
    /// Seed 002: POS and kitchen display order sync.
    Pos,
    /// Seed 004: voice sessions (`/voice-stream`), one key per session.
    Voice,
    /// Seed 003: RFID readers, one key per device.
    Device,
}

impl Domain {
    /// Every domain.
    pub const ALL: &'static [Domain] = &[
        Domain::Display,
        Domain::Events,
        Domain::Collab,
        Domain::Pos,
        Domain::Voice,
        Domain::Device,
    ];

    /// The name used in subjects, stream and bucket names and on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Domain::Display => "display",
            Domain::Events => "events",
            Domain::Collab => "collab",
            Domain::Pos => "pos",
            Domain::Voice => "voice",
            Domain::Device => "device",
        }
    }

    /// Parses a name as [`Domain::as_str`] writes it.
    pub fn from_name(name: &str) -> Option<Domain> {
        Domain::ALL.iter().copied().find(|d| d.as_str() == name)
    }
}

impl std::fmt::Display for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a command came from, so a handler can answer the sender alone. The default (no edge)
/// is nobody to answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Origin {
    /// The id of the edge node that accepted the command.
    pub edge: String,
    /// The connection on that edge, for WebSocket commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn: Option<u64>,
    /// A request id the edge waits on, for HTTP commands that return the handler's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// One accepted client command on its way to a handler. Published as JSON to
/// `tw.in.{domain}.{tenant}.{key}` with `Nats-Msg-Id` set to [`Envelope::id`].
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Envelope<C = Box<RawValue>> {
    /// The tenant, from the verified token or the path, never from the command.
    pub tenant: String,
    /// The domain.
    pub domain: Domain,
    /// The key inside the domain and tenant: a session, room, tenant or device id.
    pub key: String,
    /// The message id, also the `Nats-Msg-Id`: the client's id when it sent one.
    pub id: String,
    /// Who sent it.
    pub origin: Origin,
    /// The verified claims, when the command came with a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Claims>,
    /// When the edge accepted it, milliseconds since the Unix epoch. Handlers use this as
    /// "now", so applying the same command again gives the same result.
    pub at: i64,
    /// The domain command.
    pub command: C,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(payload: serde_json::Value) -> Result<Claims, ClaimsError> {
        Claims::from_jwt(&payload)
    }

    #[test]
    fn the_tenant_is_read_from_any_of_its_claim_names() {
        for name in TENANT_CLAIMS {
            let read = claims(serde_json::json!({"sub": "u1", "exp": 10, name: "r9"}))
                .expect("one tenant claim");
            assert_eq!(read.tenant.as_deref(), Some("r9"), "{name}");
        }
        let numeric = claims(serde_json::json!({"sub": "u1", "exp": 10, "restaurant_id": 42}))
            .expect("an integer tenant");
        assert_eq!(numeric.tenant.as_deref(), Some("42"));
        let none = claims(serde_json::json!({"sub": "u1", "exp": 10, "tenant": ""})).expect("ok");
        assert_eq!(none.tenant, None, "an empty tenant is no tenant");
    }

    #[test]
    fn several_tenant_claims_must_agree() {
        let agree = claims(serde_json::json!({
            "sub": "u1", "exp": 10, "tenant": "r1", "restaurant_id": "r1", "tenantId": "r1"
        }))
        .expect("agreeing claims");
        assert_eq!(agree.tenant.as_deref(), Some("r1"));
        let disagree = claims(serde_json::json!({
            "sub": "u1", "exp": 10, "tenant": "r1", "restaurantId": "r2"
        }));
        assert!(
            matches!(disagree, Err(ClaimsError::TenantsDisagree(ref why)) if why.contains("r2")),
            "{disagree:?}"
        );
        assert!(matches!(
            claims(serde_json::json!({"sub": "u1", "exp": 10, "tenant_id": {"id": 1}})),
            Err(ClaimsError::Malformed(_))
        ));
    }

    #[test]
    fn unknown_claims_are_ignored_and_roles_compare_exactly() {
        let read = claims(serde_json::json!({
            "sub": "u1", "exp": 10.0, "iat": 5, "nbf": 5, "aud": ["a", "b"], "iss": "x",
            "email": "a@b.c", "role": "staff", "app_metadata": {"k": [1]}
        }))
        .expect("extra claims");
        assert_eq!((read.exp, read.iat), (10, Some(5)));
        assert!(read.has_role(&["staff"]));
        assert!(!read.has_role(&["STAFF"]), "ADMIN is not admin");
        assert!(!read.has_role(&[role::SERVICE]));
        let odd_role = claims(serde_json::json!({"sub": "u1", "exp": 10, "role": ["admin"]}))
            .expect("a role that is not a string");
        assert!(!odd_role.has_role(&[role::ADMIN]), "no privilege from it");
        assert!(matches!(
            claims(serde_json::json!({"exp": 10})),
            Err(ClaimsError::Malformed(_))
        ));
    }

    #[test]
    fn envelope_keeps_the_command_verbatim() {
        let text = r#"{"tenant":"t","domain":"display","key":"s1","id":"m1","origin":{"edge":"e1"},"at":5,"command":{"type":"open","x":[1,2]}}"#;
        let env: Envelope = serde_json::from_str(text).expect("parse");
        assert_eq!(env.command.get(), r#"{"type":"open","x":[1,2]}"#);
        assert_eq!(env.origin.conn, None);
    }
}
