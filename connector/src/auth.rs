//! Socket and API authentication with JWTs (CHANNELS.md, "Connecting").
//!
//! Tokens are HS256 with the shared secret. A socket presents its token as the `token` connect
//! param or through phoenix.js's `authToken` option, which travels in the
//! `Sec-WebSocket-Protocol` header as `base64url.bearer.phx.<base64 without padding>`.

use std::fmt;

use base64::Engine;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use topics::Claims;

/// The sub-protocol prefix phoenix.js puts before the encoded `authToken`.
pub(crate) const AUTH_TOKEN_PREFIX: &str = "base64url.bearer.phx.";

/// A token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Signature, expiry, format or required claims failed.
    #[error("the token is invalid: {0}")]
    Invalid(String),
    /// The configured secret is empty.
    #[error("the JWT secret is empty")]
    EmptySecret,
    /// The sub-protocol token was not valid base64 or UTF-8.
    #[error("the auth token sub-protocol is malformed")]
    MalformedProtocol,
}

/// The JWT claims Fawkes reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// The user id.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Roles (`admin`, `super_admin`, `service`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The secret that signs and verifies tokens. Debug never prints it.
#[derive(Clone)]
pub struct JwtSecret(String);

impl JwtSecret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret's bytes, for keys derived from it (long-poll session tokens).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**redacted**")
    }
}

/// Verifies (and, for development, mints) tokens.
#[derive(Clone)]
pub struct Authenticator {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator for HS256 tokens signed with `secret`; refuses an unusable secret.
    pub fn new(secret: &JwtSecret) -> Result<Self, AuthError> {
        if secret.0.is_empty() {
            return Err(AuthError::EmptySecret);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 5;
        let key_error = |e: jsonwebtoken::errors::Error| AuthError::Invalid(e.to_string());
        Ok(Self {
            decoding: DecodingKey::from_secret(secret.0.as_bytes()).map_err(key_error)?,
            encoding: EncodingKey::from_secret(secret.0.as_bytes()).map_err(key_error)?,
            validation,
        })
    }

    /// Verifies a token and returns who it names.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let data = decode::<TokenClaims>(token, &self.decoding, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let claims = data.claims;
        if claims.sub.is_empty() {
            return Err(AuthError::Invalid("sub is empty".into()));
        }
        Ok(Claims {
            user_id: Some(claims.sub),
            roles: claims.roles,
            name: claims.name,
        })
    }

    /// Signs `claims` into a token.
    pub fn mint(&self, claims: &TokenClaims) -> Result<String, AuthError> {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }
}

/// Finds the phoenix.js `authToken` in a `Sec-WebSocket-Protocol` header value.
pub(crate) fn token_from_protocols(header: &str) -> Result<Option<String>, AuthError> {
    let Some(encoded) = header
        .split(',')
        .map(str::trim)
        .find_map(|p| p.strip_prefix(AUTH_TOKEN_PREFIX))
    else {
        return Ok(None);
    };
    // phoenix.js uses btoa (standard alphabet) and strips the padding; accept URL-safe too.
    let trimmed = encoded.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed))
        .map_err(|_| AuthError::MalformedProtocol)?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| AuthError::MalformedProtocol)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
    }

    #[test]
    fn verifies_what_it_mints_and_refuses_the_rest() {
        let auth = Authenticator::new(&JwtSecret::new("s3cret")).expect("secret");
        let token = auth
            .mint(&TokenClaims {
                sub: "42".into(),
                exp: now() + 60,
                roles: vec!["admin".into()],
                name: Some("Amina".into()),
            })
            .expect("mint");
        let claims = auth.verify(&token).expect("valid");
        assert_eq!(claims.user_id.as_deref(), Some("42"));
        assert!(claims.has_role("admin"));

        let other = Authenticator::new(&JwtSecret::new("other")).expect("secret");
        assert!(other.verify(&token).is_err(), "bad signature");
        let expired = auth
            .mint(&TokenClaims {
                sub: "1".into(),
                exp: now() - 3600,
                roles: vec![],
                name: None,
            })
            .expect("mint");
        assert!(auth.verify(&expired).is_err(), "expired");
        assert!(auth.verify("not.a.jwt").is_err(), "malformed");
        assert!(format!("{:?}", JwtSecret::new("s3cret")).contains("redacted"));
        assert!(Authenticator::new(&JwtSecret::new("")).is_err());
    }

    #[test]
    fn reads_the_auth_token_sub_protocol() {
        assert_eq!(
            token_from_protocols("phoenix, base64url.bearer.phx.MTIzNA").expect("ok"),
            Some("1234".into())
        );
        assert_eq!(token_from_protocols("phoenix").expect("ok"), None);
        assert!(token_from_protocols("phoenix, base64url.bearer.phx.%%%").is_err());
    }
}
