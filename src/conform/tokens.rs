//! The JWTs a case client can present: valid ones and every kind of bad one
//! that docs/protocol.md names.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ConformError;

/// A kind of token, as named in the case files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenKind {
    /// HS256 with the secret, `exp` in an hour.
    Valid,
    /// No token at all (the field is left out).
    None,
    /// Not a JWT.
    Garbage,
    /// Expired an hour ago.
    Expired,
    /// `nbf` an hour in the future.
    NbfFuture,
    /// Signed with another secret.
    WrongSecret,
    /// Unsigned, `alg: none`.
    AlgNone,
    /// HS384 with the secret.
    Hs384,
    /// HS512 with the secret.
    Hs512,
    /// A payload that is a JSON string, not an object.
    StringPayload,
    /// HS256 that lives at least two seconds and at most three: `exp` is in
    /// whole seconds, so `now + 2` on a truncated clock could leave only one.
    #[serde(rename = "expiring-in-2s")]
    ExpiringIn2s,
    /// HS256 without `exp`.
    NoExp,
}

/// Mints tokens with one secret.
#[derive(Clone)]
pub struct TokenMint {
    secret: String,
}

impl std::fmt::Debug for TokenMint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenMint { secret: <hidden> }")
    }
}

impl TokenMint {
    /// A mint signing with `secret`.
    pub fn new(secret: impl Into<String>) -> Self {
        Self {
            secret: secret.into(),
        }
    }

    /// A token of `kind` for subject `sub`; `None` for [`TokenKind::None`].
    pub fn mint(&self, kind: TokenKind, sub: &str) -> Result<Option<String>, ConformError> {
        let now = now_s();
        let claims = |exp: i64| json!({"sub": sub, "iat": now, "exp": exp});
        let token = match kind {
            TokenKind::None => return Ok(None),
            TokenKind::Valid => self.sign(Algorithm::HS256, &self.secret, &claims(now + 3600))?,
            TokenKind::Garbage => "not.a.jwt".to_owned(),
            TokenKind::Expired => self.sign(Algorithm::HS256, &self.secret, &claims(now - 3600))?,
            TokenKind::NbfFuture => self.sign(
                Algorithm::HS256,
                &self.secret,
                &json!({"sub": sub, "nbf": now + 3600, "exp": now + 7200}),
            )?,
            TokenKind::WrongSecret => {
                self.sign(Algorithm::HS256, "not-the-secret", &claims(now + 3600))?
            }
            TokenKind::AlgNone => {
                let part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
                format!(
                    "{}.{}.",
                    part(json!({"alg": "none", "typ": "JWT"})),
                    part(claims(now + 3600))
                )
            }
            TokenKind::Hs384 => self.sign(Algorithm::HS384, &self.secret, &claims(now + 3600))?,
            TokenKind::Hs512 => self.sign(Algorithm::HS512, &self.secret, &claims(now + 3600))?,
            TokenKind::StringPayload => self.sign(Algorithm::HS256, &self.secret, &json!(sub))?,
            // `now` is truncated: `now + 3` expires 2 to 3 s from this instant.
            TokenKind::ExpiringIn2s => {
                self.sign(Algorithm::HS256, &self.secret, &claims(now + 3))?
            }
            TokenKind::NoExp => self.sign(Algorithm::HS256, &self.secret, &json!({"sub": sub}))?,
        };
        Ok(Some(token))
    }

    fn sign(&self, alg: Algorithm, secret: &str, claims: &Value) -> Result<String, ConformError> {
        Ok(jsonwebtoken::encode(
            &Header::new(alg),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )?)
    }
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, DecodingKey, Validation};

    #[test]
    fn valid_tokens_verify_and_bad_ones_do_not() {
        let mint = TokenMint::new("s3cret");
        let key = DecodingKey::from_secret(b"s3cret");
        let check = |kind, alg| {
            let token = mint.mint(kind, "u").unwrap().unwrap();
            decode::<Value>(&token, &key, &Validation::new(alg)).is_ok()
        };
        assert!(check(TokenKind::Valid, Algorithm::HS256));
        assert!(check(TokenKind::Hs512, Algorithm::HS512));
        assert!(!check(TokenKind::Expired, Algorithm::HS256));
        assert!(!check(TokenKind::WrongSecret, Algorithm::HS256));
        assert!(mint.mint(TokenKind::None, "u").unwrap().is_none());
        let none = mint.mint(TokenKind::AlgNone, "u").unwrap().unwrap();
        assert!(none.ends_with('.') && none.split('.').count() == 3);
    }
}
