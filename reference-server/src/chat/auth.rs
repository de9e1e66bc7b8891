//! JWT authentication: where each profile looks for the token, and how it
//! verifies it.
//!
//! Verification is written out here (on `jsonwebtoken`'s HMAC primitives)
//! rather than through `jsonwebtoken::decode`, because the seed profile must
//! accept exactly what Node's `jsonwebtoken.verify` accepts: tokens without
//! `exp`, and payloads that are a plain JSON string.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::engine::Handshake;

/// No token was found.
pub const NO_TOKEN: &str = "未提供认证令牌";
/// A token was found but did not verify.
pub const INVALID_TOKEN: &str = "无效的认证令牌";

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token in any source.
    Missing,
    /// Bad signature, algorithm, format, or time claims.
    Invalid,
}

impl Refusal {
    /// The message the gateway sends for it.
    pub fn message(self) -> &'static str {
        match self {
            Self::Missing => NO_TOKEN,
            Self::Invalid => INVALID_TOKEN,
        }
    }
    /// The strict profile's CONNECT_ERROR code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Missing => "NO_TOKEN",
            Self::Invalid => "INVALID_TOKEN",
        }
    }
    /// The label used in metrics.
    pub fn metric(self) -> &'static str {
        match self {
            Self::Missing => "no_token",
            Self::Invalid => "invalid_token",
        }
    }
}

/// The seed profile's token: the query `token` when non-empty (the last one when
/// repeated), else `Authorization: Bearer <jwt>` (exactly `Bearer` and one space).
pub fn seed_token(handshake: &Handshake) -> Option<String> {
    query_token(handshake).or_else(|| bearer_token(handshake))
}

/// The strict profile's token: the CONNECT `auth` payload's `token`, else the
/// query, else the `Authorization` header.
pub fn strict_token(handshake: &Handshake, auth: Option<&str>) -> Option<String> {
    auth.and_then(|a| serde_json::from_str::<Value>(a).ok())
        .and_then(|a| a.get("token")?.as_str().map(str::to_owned))
        .filter(|t| !t.is_empty())
        .or_else(|| query_token(handshake))
        .or_else(|| bearer_token(handshake))
}

fn query_token(handshake: &Handshake) -> Option<String> {
    handshake
        .query
        .iter()
        .rev()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.clone())
        .filter(|t| !t.is_empty())
}

fn bearer_token(handshake: &Handshake) -> Option<String> {
    handshake
        .authorization
        .as_deref()?
        .strip_prefix("Bearer ")
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// What a verified token says about time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The `exp` claim (seconds since the epoch), when present.
    pub exp: Option<u64>,
}

/// Checks HMAC-signed JWTs against one secret.
pub struct Verifier {
    key: DecodingKey,
    /// Algorithms the strict profile accepts.
    strict_algorithms: Vec<Algorithm>,
    leeway_s: u64,
}

impl Verifier {
    /// A verifier for `secret`, with the strict profile's algorithm list and leeway.
    pub fn new(secret: &str, strict_algorithms: &[String], leeway_s: u64) -> Self {
        Self {
            key: DecodingKey::from_secret(secret.as_bytes()),
            strict_algorithms: strict_algorithms
                .iter()
                .filter_map(|a| a.parse().ok())
                .filter(|a| is_hmac(*a))
                .collect(),
            leeway_s,
        }
    }

    /// Node `jsonwebtoken.verify(token, secret)` semantics: HS256/384/512,
    /// `exp` and `nbf` checked only when present, any JSON payload.
    pub fn verify_seed(&self, token: &str) -> Result<Verified, Refusal> {
        let payload = self.check_signature(token, is_hmac)?;
        let now = now_s();
        let (exp, nbf) = time_claims(&payload)?;
        if exp.is_some_and(|exp| now >= exp) || nbf.is_some_and(|nbf| now < nbf) {
            return Err(Refusal::Invalid);
        }
        Ok(Verified { exp })
    }

    /// The strict profile: a configured algorithm, an object payload with a
    /// required `exp`, both time claims checked with the leeway.
    pub fn verify_strict(&self, token: &str) -> Result<Verified, Refusal> {
        let payload = self.check_signature(token, |a| self.strict_algorithms.contains(&a))?;
        if !payload.is_object() {
            return Err(Refusal::Invalid);
        }
        let (exp, nbf) = time_claims(&payload)?;
        let now = now_s();
        let exp = exp.ok_or(Refusal::Invalid)?;
        if now >= exp + self.leeway_s || nbf.is_some_and(|nbf| now + self.leeway_s < nbf) {
            return Err(Refusal::Invalid);
        }
        Ok(Verified { exp: Some(exp) })
    }

    /// Seconds of leeway after `exp` in the strict profile.
    pub fn leeway_s(&self) -> u64 {
        self.leeway_s
    }

    fn check_signature(
        &self,
        token: &str,
        allowed: impl Fn(Algorithm) -> bool,
    ) -> Result<Value, Refusal> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal::Invalid);
        };
        let header: Value = decode_segment(header)?;
        let alg: Algorithm = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(|a| a.parse().ok())
            .ok_or(Refusal::Invalid)?;
        if !allowed(alg) {
            return Err(Refusal::Invalid);
        }
        let message = &token[..header_len(token)];
        match jsonwebtoken::crypto::verify(signature, message.as_bytes(), &self.key, alg) {
            Ok(true) => decode_segment(payload),
            _ => Err(Refusal::Invalid),
        }
    }
}

/// The length of `header.payload`, the signed part of a token.
fn header_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn decode_segment(segment: &str) -> Result<Value, Refusal> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .map_err(|_| Refusal::Invalid)?;
    serde_json::from_slice(&bytes).map_err(|_| Refusal::Invalid)
}

/// `exp` and `nbf` of an object payload; a present claim that is not a number is invalid.
fn time_claims(payload: &Value) -> Result<(Option<u64>, Option<u64>), Refusal> {
    let claim = |name| match payload.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(|n| Some(n.max(0.0) as u64))
            .ok_or(Refusal::Invalid),
    };
    Ok((claim("exp")?, claim("nbf")?))
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn token(alg: Algorithm, claims: &Value, secret: &str) -> String {
        encode(
            &Header::new(alg),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn verifier() -> Verifier {
        Verifier::new("s3cret", &["HS256".to_owned()], 5)
    }

    #[test]
    fn seed_accepts_what_node_jsonwebtoken_accepts() {
        let v = verifier();
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            assert!(v
                .verify_seed(&token(alg, &json!({"sub": "a"}), "s3cret"))
                .is_ok());
        }
        assert!(v
            .verify_seed(&token(Algorithm::HS256, &json!("plain"), "s3cret"))
            .is_ok());
        let expired = json!({"exp": now_s() - 10});
        assert_eq!(
            v.verify_seed(&token(Algorithm::HS256, &expired, "s3cret")),
            Err(Refusal::Invalid)
        );
        let early = json!({"nbf": now_s() + 100});
        assert_eq!(
            v.verify_seed(&token(Algorithm::HS256, &early, "s3cret")),
            Err(Refusal::Invalid)
        );
        let wrong = token(Algorithm::HS256, &json!({}), "other");
        assert_eq!(v.verify_seed(&wrong), Err(Refusal::Invalid));
        assert_eq!(v.verify_seed("garbage"), Err(Refusal::Invalid));
        // alg:none with an empty signature.
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none"})),
            b64(&json!({"sub": "a"}))
        );
        assert_eq!(v.verify_seed(&none), Err(Refusal::Invalid));
    }

    #[test]
    fn strict_requires_exp_and_a_listed_algorithm() {
        let v = verifier();
        let good = json!({"sub": "a", "exp": now_s() + 60});
        assert!(v
            .verify_strict(&token(Algorithm::HS256, &good, "s3cret"))
            .is_ok());
        assert_eq!(
            v.verify_strict(&token(Algorithm::HS512, &good, "s3cret")),
            Err(Refusal::Invalid)
        );
        assert_eq!(
            v.verify_strict(&token(Algorithm::HS256, &json!({"sub": "a"}), "s3cret")),
            Err(Refusal::Invalid)
        );
        let within_leeway = json!({"exp": now_s() - 2});
        assert!(v
            .verify_strict(&token(Algorithm::HS256, &within_leeway, "s3cret"))
            .is_ok());
    }

    #[test]
    fn token_sources_follow_each_profile_order() {
        let hs = Handshake {
            query: vec![
                ("token".into(), "first".into()),
                ("token".into(), "last".into()),
            ],
            authorization: Some("Bearer header".into()),
        };
        assert_eq!(seed_token(&hs).as_deref(), Some("last"));
        assert_eq!(
            strict_token(&hs, Some(r#"{"token":"auth"}"#)).as_deref(),
            Some("auth")
        );
        let header_only = Handshake {
            query: vec![],
            authorization: Some("Bearer h".into()),
        };
        assert_eq!(seed_token(&header_only).as_deref(), Some("h"));
        for bad in ["bearer h", "h", "Bearer "] {
            let hs = Handshake {
                query: vec![],
                authorization: Some(bad.into()),
            };
            assert_eq!(seed_token(&hs), None, "{bad}");
        }
        let empty_query = Handshake {
            query: vec![("token".into(), "".into())],
            authorization: Some("Bearer h".into()),
        };
        assert_eq!(seed_token(&empty_query).as_deref(), Some("h"));
    }
}
