//! The edge→handler envelope: what an edge publishes to the input stream for every accepted
//! client command, and the verified claims it carries. Built by `edge`, read by `handlers`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The verified claims of a JWT, as the edge checked them. Also the claims
/// `tablewire token` mints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Claims {
    /// Who the token was issued to (a user, a terminal, a service, a device).
    pub sub: String,
    /// The tenant (restaurant) the token is scoped to. Read from `tenant`, or from the
    /// aliases other systems use: `tenantId`, `tenant_id`, `restaurant_id`, `restaurantId`.
    #[serde(
        default,
        alias = "tenantId",
        alias = "tenant_id",
        alias = "restaurant_id",
        alias = "restaurantId",
        skip_serializing_if = "Option::is_none"
    )]
    pub tenant: Option<String>,
    /// The role, e.g. `service`, `admin`, `staff`, `kitchen`, `device`, `customer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

/// Roles with a meaning inside tablewire.
pub mod role {
    /// A backend service: may post display updates and publish events.
    pub const SERVICE: &str = "service";
    /// A tenant administrator: everything a service may, plus device configuration.
    pub const ADMIN: &str = "admin";
}

impl Claims {
    /// Whether the token carries one of the given roles.
    pub fn has_role(&self, roles: &[&str]) -> bool {
        self.role
            .as_deref()
            .is_some_and(|role| roles.iter().any(|r| r.eq_ignore_ascii_case(role)))
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

/// Where a command came from, so a handler can answer the sender alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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

    #[test]
    fn claims_accept_restaurant_aliases() {
        let claims: Claims =
            serde_json::from_str(r#"{"sub":"u1","restaurant_id":"r9","role":"staff","exp":10}"#)
                .expect("parse");
        assert_eq!(claims.tenant.as_deref(), Some("r9"));
        assert!(claims.has_role(&["STAFF"]));
        assert!(!claims.has_role(&[role::SERVICE]));
    }

    #[test]
    fn envelope_keeps_the_command_verbatim() {
        let text = r#"{"tenant":"t","domain":"display","key":"s1","id":"m1","origin":{"edge":"e1"},"at":5,"command":{"type":"open","x":[1,2]}}"#;
        let env: Envelope = serde_json::from_str(text).expect("parse");
        assert_eq!(env.command.get(), r#"{"type":"open","x":[1,2]}"#);
        assert_eq!(env.origin.conn, None);
    }
}
