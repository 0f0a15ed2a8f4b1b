//! Authentication at the edge: the shared Bearer secret of seed 000, and JWTs (HS256 with a
//! shared secret) whose verified claims travel with every command. Also mints development
//! tokens for `tablewire token` and `tablewire dev`.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use tablewire_schemas::{Claims, ErrorBody, ErrorCode};

/// How clients prove who they are.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// The Bearer secret `POST /session/{id}/update` accepts (seed 000's `AUTH_SECRET`).
    pub bearer_secret: Option<String>,
    /// The HS256 secret JWTs are signed with.
    pub jwt_secret: Option<String>,
}

/// The result of checking credentials.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// The shared Bearer secret: a trusted backend, no claims.
    Secret,
    /// A verified JWT.
    Token(Claims),
}

impl Principal {
    /// The claims, for the envelope.
    pub fn claims(&self) -> Option<Claims> {
        match self {
            Principal::Secret => None,
            Principal::Token(c) => Some(c.clone()),
        }
    }
}

/// Verifies credentials.
#[derive(Clone)]
pub struct Auth {
    bearer_secret: Option<String>,
    jwt: Option<(DecodingKey, Validation)>,
}

impl Auth {
    /// Builds the verifier from configuration.
    pub fn new(config: &AuthConfig) -> Self {
        let jwt = config.jwt_secret.as_ref().map(|secret| {
            let mut validation = Validation::new(Algorithm::HS256);
            validation.leeway = 5;
            validation.set_required_spec_claims(&["exp", "sub"]);
            (DecodingKey::from_secret(secret.as_bytes()), validation)
        });
        Auth {
            bearer_secret: config.bearer_secret.clone(),
            jwt,
        }
    }

    /// Checks an `Authorization` header value (`Bearer …`).
    pub fn check_header(&self, authorization: Option<&str>) -> Result<Principal, ErrorBody> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                ErrorBody::with_message(ErrorCode::Unauthorized, "missing Bearer credentials")
            })?;
        self.check_token(token)
    }

    /// Checks a Bearer secret or a JWT.
    pub fn check_token(&self, token: &str) -> Result<Principal, ErrorBody> {
        if let Some(secret) = &self.bearer_secret
            && constant_time_eq(secret.as_bytes(), token.as_bytes())
        {
            return Ok(Principal::Secret);
        }
        self.verify_jwt(token).map(Principal::Token)
    }

    /// Verifies a JWT and returns its claims.
    pub fn verify_jwt(&self, token: &str) -> Result<Claims, ErrorBody> {
        let Some((key, validation)) = &self.jwt else {
            return Err(ErrorBody::with_message(
                ErrorCode::Unauthorized,
                "invalid credentials",
            ));
        };
        decode::<Claims>(token, key, validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ErrorBody::with_message(ErrorCode::TokenExpired, "token expired")
                }
                _ => ErrorBody::with_message(ErrorCode::Unauthorized, "invalid token"),
            })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Signs `claims` with an HS256 secret.
pub fn mint(secret: &str, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "svc".into(),
            tenant: Some("t1".into()),
            role: Some("service".into()),
            exp,
            iat: None,
        }
    }

    fn auth() -> Auth {
        Auth::new(&AuthConfig {
            bearer_secret: Some("s3cret".into()),
            jwt_secret: Some("k".into()),
        })
    }

    #[test]
    fn the_bearer_secret_and_a_valid_jwt_are_accepted() {
        assert_eq!(
            auth().check_header(Some("Bearer s3cret")),
            Ok(Principal::Secret)
        );
        let token = mint("k", &claims(now_secs() + 60)).expect("mint");
        let principal = auth()
            .check_header(Some(&format!("Bearer {token}")))
            .expect("jwt");
        assert_eq!(principal.claims().and_then(|c| c.tenant), Some("t1".into()));
    }

    #[test]
    fn wrong_forged_and_expired_credentials_are_refused() {
        let a = auth();
        assert_eq!(
            a.check_header(None).expect_err("none").code,
            ErrorCode::Unauthorized
        );
        assert_eq!(
            a.check_header(Some("Bearer nope")).expect_err("wrong").code,
            ErrorCode::Unauthorized
        );
        let forged = mint("other-key", &claims(now_secs() + 60)).expect("mint");
        assert_eq!(
            a.check_token(&forged).expect_err("forged").code,
            ErrorCode::Unauthorized
        );
        let expired = mint("k", &claims(now_secs() - 3600)).expect("mint");
        assert_eq!(
            a.check_token(&expired).expect_err("expired").code,
            ErrorCode::TokenExpired
        );
    }
}
