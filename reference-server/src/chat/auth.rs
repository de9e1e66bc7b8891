//! JWT authentication: where each profile looks for the token, and how it
//! verifies it.
//!
//! Verification is written out here (on `jsonwebtoken`'s HMAC primitives)
//! rather than through `jsonwebtoken::decode`, because the seed profile must
//! accept exactly what Node's `jsonwebtoken.verify` accepts: tokens without
//! `exp`, and payloads that are a JSON string or bare text (what
//! `jwt.sign("just-a-string", secret)` produces).

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

/// What a verified token says about its holder and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The `exp` claim (seconds since the epoch), when present.
    pub exp: Option<u64>,
    /// The `sub` claim when it is a string (the strict rate limit's key).
    pub subject: Option<String>,
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

    /// Node `jsonwebtoken.verify(token, secret)` semantics (jsonwebtoken 9):
    /// HS256/384/512; the payload may be any text (a bare string is accepted as
    /// is); `exp` and `nbf` are checked only when the payload is a JSON object
    /// or array that holds them, and must then be numbers.
    pub fn verify_seed(&self, token: &str) -> Result<Verified, Refusal> {
        let signed = self.check_signature(token, is_hmac)?;
        let claims = signed.node_claims()?;
        let now = now_s() as f64;
        let (exp, nbf) = match &claims {
            Some(claims) => time_claims(claims)?,
            None => (None, None),
        };
        if exp.is_some_and(|exp| now >= exp) || nbf.is_some_and(|nbf| nbf > now) {
            return Err(Refusal::Invalid);
        }
        Ok(Verified {
            exp: exp.map(seconds),
            subject: claims.as_ref().and_then(subject),
        })
    }

    /// The strict profile: a configured algorithm, a JSON object payload with a
    /// required `exp`, both time claims checked with the leeway.
    pub fn verify_strict(&self, token: &str) -> Result<Verified, Refusal> {
        let signed = self.check_signature(token, |a| self.strict_algorithms.contains(&a))?;
        let payload: Value =
            serde_json::from_slice(&signed.payload).map_err(|_| Refusal::Invalid)?;
        if !payload.is_object() {
            return Err(Refusal::Invalid);
        }
        let (exp, nbf) = time_claims(&payload)?;
        let now = now_s();
        let exp = seconds(exp.ok_or(Refusal::Invalid)?);
        let leeway = self.leeway_s;
        if now >= exp.saturating_add(leeway)
            || nbf.is_some_and(|nbf| seconds(nbf) > now.saturating_add(leeway))
        {
            return Err(Refusal::Invalid);
        }
        Ok(Verified {
            exp: Some(exp),
            subject: subject(&payload),
        })
    }

    /// Seconds of leeway after `exp` in the strict profile.
    pub fn leeway_s(&self) -> u64 {
        self.leeway_s
    }

    /// Checks the form (`jws`'s rules: three base64url segments, the first two
    /// non-empty), the header's `alg` and the HMAC signature.
    fn check_signature(
        &self,
        token: &str,
        allowed: impl Fn(Algorithm) -> bool,
    ) -> Result<Signed, Refusal> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal::Invalid);
        };
        let base64url = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        };
        if header.is_empty()
            || payload.is_empty()
            || ![header, payload, signature].iter().all(|s| base64url(s))
        {
            return Err(Refusal::Invalid);
        }
        let header: Value =
            serde_json::from_slice(&decode_segment(header)?).map_err(|_| Refusal::Invalid)?;
        let alg: Algorithm = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(|a| a.parse().ok())
            .ok_or(Refusal::Invalid)?;
        if !allowed(alg) {
            return Err(Refusal::Invalid);
        }
        let message = token.get(..signed_len(token)).ok_or(Refusal::Invalid)?;
        match jsonwebtoken::crypto::verify(signature, message.as_bytes(), &self.key, alg) {
            Ok(true) => Ok(Signed {
                typ_jwt: header.get("typ").and_then(Value::as_str) == Some("JWT"),
                payload: decode_segment(payload)?,
            }),
            _ => Err(Refusal::Invalid),
        }
    }
}

/// A token whose signature verified: its payload bytes and whether the header says `typ: JWT`.
struct Signed {
    typ_jwt: bool,
    payload: Vec<u8>,
}

impl Signed {
    /// The claims Node's `jsonwebtoken` reads from the payload: `jws` parses it
    /// as JSON when the header says `typ: JWT` (a failure refuses the token);
    /// `jsonwebtoken` then keeps a string that parses to a JSON object or array
    /// as that, and any other text as a plain string without claims.
    fn node_claims(&self) -> Result<Option<Value>, Refusal> {
        let text = String::from_utf8_lossy(&self.payload);
        let as_claims = |text: &str| {
            serde_json::from_str::<Value>(text)
                .ok()
                .filter(|v| v.is_object() || v.is_array())
        };
        if !self.typ_jwt {
            return Ok(as_claims(&text));
        }
        match serde_json::from_str::<Value>(&text) {
            Ok(v @ (Value::Object(_) | Value::Array(_))) => Ok(Some(v)),
            Ok(Value::String(inner)) => Ok(as_claims(&inner)),
            // `payload.nbf` on `null` throws: the token is refused.
            Ok(Value::Null) | Err(_) => Err(Refusal::Invalid),
            Ok(_) => Ok(None),
        }
    }
}

/// The length of `header.payload`, the signed part of a token.
fn signed_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// Base64url without padding, lenient about unused trailing bits as Node's
/// `Buffer.from(…, "base64")` is.
fn decode_segment(segment: &str) -> Result<Vec<u8>, Refusal> {
    use base64::engine::{general_purpose::GeneralPurpose, DecodePaddingMode};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone),
    );
    LENIENT.decode(segment).map_err(|_| Refusal::Invalid)
}

/// `exp` and `nbf` of the claims; a present claim that is not a number is invalid.
fn time_claims(payload: &Value) -> Result<(Option<f64>, Option<f64>), Refusal> {
    let claim = |name| match payload.get(name) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or(Refusal::Invalid),
    };
    Ok((claim("exp")?, claim("nbf")?))
}

/// Whole seconds of a claim, saturating: negative is 0, huge is `u64::MAX`.
fn seconds(claim: f64) -> u64 {
    // `as` saturates float-to-integer conversions; no arithmetic can overflow.
    claim.max(0.0) as u64
}

/// The `sub` claim, when it is a string or a number.
fn subject(payload: &Value) -> Option<String> {
    match payload.get("sub")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
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

    /// Signs raw header and payload bytes as Node's `jws` does.
    fn raw_token(header: &str, payload: &[u8], secret: &str) -> String {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let signed = format!("{}.{}", b64(header.as_bytes()), b64(payload));
        let key = EncodingKey::from_secret(secret.as_bytes());
        let sig = jsonwebtoken::crypto::sign(signed.as_bytes(), &key, Algorithm::HS256).unwrap();
        format!("{signed}.{sig}")
    }

    #[test]
    fn seed_accepts_bare_string_payloads_like_node() {
        let v = verifier();
        // `jwt.sign('just-a-string', secret)`: no `typ`, the payload is the bare text.
        let bare = raw_token(r#"{"alg":"HS256"}"#, b"just-a-string", "s3cret");
        assert_eq!(
            v.verify_seed(&bare),
            Ok(Verified {
                exp: None,
                subject: None
            })
        );
        assert_eq!(v.verify_strict(&bare), Err(Refusal::Invalid));
        // Without `typ`, a JSON object payload still has its claims checked.
        let expired = raw_token(r#"{"alg":"HS256"}"#, br#"{"exp":1}"#, "s3cret");
        assert_eq!(v.verify_seed(&expired), Err(Refusal::Invalid));
        // With `typ: JWT`, `jws` JSON-parses the payload: bare text is refused.
        let typ_bare = raw_token(r#"{"alg":"HS256","typ":"JWT"}"#, b"just-a-string", "s3cret");
        assert_eq!(v.verify_seed(&typ_bare), Err(Refusal::Invalid));
        let typ_null = raw_token(r#"{"alg":"HS256","typ":"JWT"}"#, b"null", "s3cret");
        assert_eq!(v.verify_seed(&typ_null), Err(Refusal::Invalid));
        // A claim that is not a number is refused; the wrong secret too.
        let bad_exp = raw_token(r#"{"alg":"HS256"}"#, br#"{"exp":"soon"}"#, "s3cret");
        assert_eq!(v.verify_seed(&bad_exp), Err(Refusal::Invalid));
        let wrong = raw_token(r#"{"alg":"HS256"}"#, b"just-a-string", "other");
        assert_eq!(v.verify_seed(&wrong), Err(Refusal::Invalid));
        // Padding or characters outside base64url are refused, as by `jws`.
        assert_eq!(v.verify_seed(&format!("{bare}=")), Err(Refusal::Invalid));
    }

    #[test]
    fn huge_time_claims_never_overflow() {
        let v = verifier();
        for exp in [
            json!(10_000_000_000_000_000_000u64),
            json!(u64::MAX),
            json!(1e300),
        ] {
            let t = token(Algorithm::HS256, &json!({"sub": "a", "exp": exp}), "s3cret");
            let verified = v.verify_strict(&t).unwrap();
            assert!(verified.exp.unwrap() >= 10_000_000_000_000_000_000);
            assert!(v.verify_seed(&t).is_ok());
        }
        let t = token(
            Algorithm::HS256,
            &json!({"exp": now_s() + 60, "nbf": 1e300}),
            "s3cret",
        );
        assert_eq!(v.verify_strict(&t), Err(Refusal::Invalid));
        assert_eq!(v.verify_seed(&t), Err(Refusal::Invalid));
    }

    #[test]
    fn strict_keys_rate_limits_by_subject() {
        let v = verifier();
        let t = token(
            Algorithm::HS256,
            &json!({"sub": "ann", "exp": now_s() + 60}),
            "s3cret",
        );
        assert_eq!(v.verify_strict(&t).unwrap().subject.as_deref(), Some("ann"));
        let t = token(
            Algorithm::HS256,
            &json!({"sub": 7, "exp": now_s() + 60}),
            "s3cret",
        );
        assert_eq!(v.verify_strict(&t).unwrap().subject.as_deref(), Some("7"));
        let t = token(Algorithm::HS256, &json!({"exp": now_s() + 60}), "s3cret");
        assert_eq!(v.verify_strict(&t).unwrap().subject, None);
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
