//! Authentication at the edge: the shared Bearer secret of seed 000, and JWTs (HS256 with a
//! shared secret, or RS256/PS256/ES256/EdDSA with a public key in PEM) whose verified claims
//! travel with every command. Also mints development tokens for `tablewire token` and
//! `tablewire dev`. Every failed check is counted here (`tablewire_edge_auth_failures`), and
//! so are the refusals the routes decide themselves ([`Auth::refuse`]). The extractors that
//! read credentials from requests are in [`crate::credentials`].

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use prometheus_client::metrics::counter::Counter;
use tablewire_nats::token;
use tablewire_schemas::envelope::ClaimsError;
use tablewire_schemas::{Claims, ErrorBody, ErrorCode};

/// How clients prove who they are.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// The Bearer secret `POST /session/{id}/update` accepts (seed 000's `AUTH_SECRET`).
    pub bearer_secret: Option<String>,
    /// The HS256 secret JWTs are signed with.
    pub jwt_secret: Option<String>,
    /// A public key (PEM: RSA, EC or Ed25519) that verifies JWTs signed with the matching
    /// private key (RS256/RS384/RS512/PS256…, ES256/ES384, EdDSA).
    pub jwt_public_key_pem: Option<String>,
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

/// Verifies credentials and counts the failures.
#[derive(Clone)]
pub struct Auth {
    bearer_secret: Option<String>,
    /// One verifier per key; a token is checked with the key whose algorithms include its own.
    jwt: Vec<(DecodingKey, Validation)>,
    /// Failed authentications.
    failures: Counter,
}

fn validation(algorithms: &[Algorithm]) -> Validation {
    let mut validation = Validation::new(algorithms[0]);
    validation.algorithms = algorithms.to_vec();
    validation.leeway = 5;
    validation.set_required_spec_claims(&["exp", "sub"]);
    // A token not valid yet is refused like an expired one.
    validation.validate_nbf = true;
    // tablewire has no audience of its own: an `aud` claim (which backends serving several
    // systems set) must not make a token invalid.
    validation.validate_aud = false;
    validation
}

/// A public key in PEM and the algorithms it verifies.
fn public_key(pem: &str) -> Result<(DecodingKey, Validation), String> {
    use Algorithm::*;
    let pem = pem.as_bytes();
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok((key, validation(&[RS256, RS384, RS512, PS256, PS384, PS512])));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Ok((key, validation(&[EdDSA])));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        return Ok((key, validation(&[ES256, ES384])));
    }
    Err("the JWT public key is not an RSA, EC or Ed25519 public key in PEM".to_string())
}

/// The credentials of an `Authorization: Bearer …` header value, trimmed; `None` for any other
/// scheme. Every endpoint reads the header through this.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    authorization
        .strip_prefix("Bearer ")
        .or_else(|| authorization.strip_prefix("bearer "))
        .map(str::trim)
}

impl Auth {
    /// Builds the verifier from configuration; a public key that cannot be read is ignored
    /// (with a warning). [`Auth::try_new`] refuses it instead.
    pub fn new(config: &AuthConfig) -> Self {
        Self::try_new(config).unwrap_or_else(|why| {
            tracing::warn!(%why, "JWT public key ignored");
            Self::try_new(&AuthConfig {
                jwt_public_key_pem: None,
                ..config.clone()
            })
            .unwrap_or(Auth {
                bearer_secret: config.bearer_secret.clone(),
                jwt: Vec::new(),
                failures: Counter::default(),
            })
        })
    }

    /// Builds the verifier from configuration, or says why the public key is unusable.
    pub fn try_new(config: &AuthConfig) -> Result<Self, String> {
        let mut jwt = Vec::new();
        if let Some(secret) = &config.jwt_secret {
            jwt.push((
                DecodingKey::from_secret(secret.as_bytes()),
                validation(&[Algorithm::HS256]),
            ));
        }
        if let Some(pem) = &config.jwt_public_key_pem {
            jwt.push(public_key(pem)?);
        }
        Ok(Auth {
            bearer_secret: config.bearer_secret.clone(),
            jwt,
            failures: Counter::default(),
        })
    }

    /// Counts failures in `failures` (the edge's `auth_failures`) from now on.
    pub fn counting_failures_in(mut self, failures: Counter) -> Self {
        self.failures = failures;
        self
    }

    /// Counts a refusal a route decided itself (a valid token that is not good enough for
    /// what it asks, a missing one, an authentication timeout) and hands it back.
    pub fn refuse(&self, error: ErrorBody) -> ErrorBody {
        self.failures.inc();
        error
    }

    fn counted<T>(&self, checked: Result<T, ErrorBody>) -> Result<T, ErrorBody> {
        checked.map_err(|e| self.refuse(e))
    }

    /// Checks an `Authorization` header value (`Bearer …`).
    pub fn check_header(&self, authorization: Option<&str>) -> Result<Principal, ErrorBody> {
        let token = authorization.and_then(bearer_token).ok_or_else(|| {
            ErrorBody::with_message(ErrorCode::Unauthorized, "missing Bearer credentials")
        });
        self.counted(token.and_then(|token| self.principal(token)))
    }

    /// Checks a Bearer secret or a JWT.
    pub fn check_token(&self, token: &str) -> Result<Principal, ErrorBody> {
        self.counted(self.principal(token))
    }

    fn principal(&self, token: &str) -> Result<Principal, ErrorBody> {
        if let Some(secret) = &self.bearer_secret
            && constant_time_eq(secret.as_bytes(), token.as_bytes())
        {
            return Ok(Principal::Secret);
        }
        self.claims(token).map(Principal::Token)
    }

    /// Verifies a JWT and returns its claims: signature, `exp` and `nbf` (5 s leeway), then
    /// the claims tablewire reads ([`Claims::from_jwt`]); the tenant and subject must be ids
    /// [`token::validate_id`] accepts, as they become parts of subjects and keys.
    pub fn verify_jwt(&self, token: &str) -> Result<Claims, ErrorBody> {
        self.counted(self.claims(token))
    }

    /// Verifies a JWT that must name a restaurant (seed 004's events and voice sockets): the
    /// restaurant and the claims.
    pub fn verify_restaurant(&self, token: &str) -> Result<(String, Claims), ErrorBody> {
        self.counted(
            self.claims(token)
                .and_then(|claims| match claims.tenant.clone() {
                    Some(tenant) if token::validate_id(&tenant).is_ok() => Ok((tenant, claims)),
                    _ => Err(ErrorBody::with_message(
                        ErrorCode::Unauthorized,
                        "the token names no restaurant",
                    )),
                }),
        )
    }

    fn claims(&self, token: &str) -> Result<Claims, ErrorBody> {
        let invalid = || ErrorBody::with_message(ErrorCode::Unauthorized, "invalid token");
        let algorithm = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid())?
            .alg;
        let Some((key, validation)) = self
            .jwt
            .iter()
            .find(|(_, v)| v.algorithms.contains(&algorithm))
        else {
            return Err(ErrorBody::with_message(
                ErrorCode::Unauthorized,
                "invalid credentials",
            ));
        };
        let payload = decode::<serde_json::Value>(token, key, validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ErrorBody::with_message(ErrorCode::TokenExpired, "token expired")
                }
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => ErrorBody::with_message(
                    ErrorCode::TokenNotYetValid,
                    "token not valid yet (nbf is in the future)",
                ),
                _ => invalid(),
            })?;
        let claims = Claims::from_jwt(&payload).map_err(|e| match e {
            ClaimsError::TenantsDisagree(why) => {
                ErrorBody::with_message(ErrorCode::TenantClaimsDisagree, why)
            }
            ClaimsError::Malformed(why) => {
                ErrorBody::with_message(ErrorCode::Unauthorized, format!("invalid token: {why}"))
            }
        })?;
        let unusable = |what: &str, e: token::IdError| {
            ErrorBody::with_message(
                ErrorCode::Unauthorized,
                format!("invalid token: its {what} is not a usable id ({e})"),
            )
        };
        if let Some(tenant) = &claims.tenant {
            token::validate_id(tenant).map_err(|e| unusable("tenant", e))?;
        }
        token::validate_id(&claims.sub).map_err(|e| unusable("subject (sub)", e))?;
        Ok(claims)
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
            jwt_public_key_pem: None,
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
    fn every_failed_check_is_counted_once_and_successes_not_at_all() {
        let failures = Counter::default();
        let a = auth().counting_failures_in(failures.clone());
        let token = mint("k", &claims(now_secs() + 60)).expect("mint");
        assert!(a.check_header(Some("Bearer s3cret")).is_ok());
        assert!(a.check_header(Some(&format!("Bearer {token}"))).is_ok());
        assert!(a.verify_restaurant(&token).is_ok());
        assert_eq!(failures.get(), 0);
        let _ = a.check_header(None);
        let _ = a.check_header(Some("Bearer nope"));
        let _ = a.check_token("nope");
        let _ = a.verify_jwt("nope");
        let no_tenant = mint(
            "k",
            &Claims {
                tenant: None,
                ..claims(now_secs() + 60)
            },
        )
        .expect("mint");
        let _ = a.verify_restaurant(&no_tenant);
        let _ = a.refuse(ErrorBody::new(ErrorCode::AuthTimeout));
        assert_eq!(failures.get(), 6);
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

    fn signed(payload: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &payload,
            &EncodingKey::from_secret(b"k"),
        )
        .expect("sign")
    }

    #[test]
    fn tokens_as_other_backends_mint_them_are_read() {
        let exp = now_secs() + 60;
        let token = signed(serde_json::json!({
            "sub": "u1", "exp": exp, "iat": now_secs(), "nbf": now_secs() - 1,
            "aud": "authenticated", "iss": "https://issuer.example", "email": "a@b.c",
            "tenant": "r1", "restaurant_id": "r1", "role": "staff"
        }));
        let claims = auth()
            .verify_jwt(&token)
            .expect("a token with extra claims");
        assert_eq!(claims.tenant.as_deref(), Some("r1"));
        let disagreeing = signed(serde_json::json!({
            "sub": "u1", "exp": exp, "tenant": "r1", "restaurantId": "r2"
        }));
        assert_eq!(
            auth()
                .verify_jwt(&disagreeing)
                .expect_err("two tenants")
                .code,
            ErrorCode::TenantClaimsDisagree
        );
    }

    #[test]
    fn a_token_not_valid_yet_is_refused() {
        let token = signed(serde_json::json!({
            "sub": "u1", "exp": now_secs() + 7200, "nbf": now_secs() + 3600, "tenant": "r1"
        }));
        assert_eq!(
            auth().verify_jwt(&token).expect_err("nbf in an hour").code,
            ErrorCode::TokenNotYetValid
        );
    }

    #[test]
    fn tenants_and_subjects_that_cannot_be_ids_are_refused() {
        let exp = now_secs() + 60;
        for (tenant, sub) in [
            ("a\nb", "u1".to_string()),
            (&*"t".repeat(10 * 1024), "u1".to_string()),
            ("r1", "x\u{0}y".to_string()),
            ("r1", "s".repeat(200)),
        ] {
            let token = signed(serde_json::json!({"sub": sub, "exp": exp, "tenant": tenant}));
            let error = auth().verify_jwt(&token).expect_err("not an id");
            assert_eq!(error.code, ErrorCode::Unauthorized, "{tenant:?} {sub:?}");
            assert!(
                error.message.contains("not a usable id"),
                "{}",
                error.message
            );
        }
    }

    #[test]
    fn an_eddsa_token_verifies_with_the_configured_public_key() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        let auth = Auth::try_new(&AuthConfig {
            jwt_secret: Some("k".into()),
            jwt_public_key_pem: Some(pair.public_key_pem()),
            ..Default::default()
        })
        .expect("an Ed25519 public key");
        let sign = |pem: &str| {
            encode(
                &Header::new(Algorithm::EdDSA),
                &claims(now_secs() + 60),
                &EncodingKey::from_ed_pem(pem.as_bytes()).expect("private key"),
            )
            .expect("sign")
        };
        let token = sign(&pair.serialize_pem());
        assert_eq!(
            auth.verify_jwt(&token).expect("valid").tenant.as_deref(),
            Some("t1")
        );
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        assert_eq!(
            auth.verify_jwt(&sign(&other.serialize_pem()))
                .expect_err("another key")
                .code,
            ErrorCode::Unauthorized
        );
        let hs = mint("k", &claims(now_secs() + 60)).expect("mint");
        assert!(auth.verify_jwt(&hs).is_ok(), "the HS256 secret still works");
        assert!(
            Auth::try_new(&AuthConfig {
                jwt_public_key_pem: Some("not a key".into()),
                ..Default::default()
            })
            .is_err()
        );
    }
}
