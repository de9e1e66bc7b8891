//! JWTs for the tests: valid ones in each accepted algorithm, and every kind of
//! bad one the protocol names (expired, not yet valid, wrong secret, `alg:none`).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::SECRET;

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs() as i64
}

/// Signs `claims` (any JSON value, a plain string included) with `alg` and `secret`.
pub fn sign(alg: Algorithm, secret: &str, claims: &Value) -> String {
    encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("an HMAC token encodes")
}

/// A valid HS256 token for `sub`, expiring in an hour.
pub fn valid(sub: &str) -> String {
    expiring_in(sub, 3600)
}

/// A valid token signed with `alg`, expiring in an hour.
pub fn valid_alg(alg: Algorithm) -> String {
    sign(alg, SECRET, &json!({"sub": "u1", "exp": now() + 3600}))
}

/// An HS256 token for `sub` whose `exp` is `secs` from now (negative: in the past).
pub fn expiring_in(sub: &str, secs: i64) -> String {
    sign(
        Algorithm::HS256,
        SECRET,
        &json!({"sub": sub, "iat": now(), "exp": now() + secs}),
    )
}

/// A token that expired an hour ago.
pub fn expired() -> String {
    expiring_in("u1", -3600)
}

/// A token whose `nbf` is an hour in the future.
pub fn not_yet_valid() -> String {
    sign(
        Algorithm::HS256,
        SECRET,
        &json!({"sub": "u1", "nbf": now() + 3600, "exp": now() + 7200}),
    )
}

/// A well-formed token signed with another secret.
pub fn wrong_secret() -> String {
    sign(
        Algorithm::HS256,
        "not-the-secret",
        &json!({"sub": "u1", "exp": now() + 3600}),
    )
}

/// A token without `exp`.
pub fn without_exp() -> String {
    sign(Algorithm::HS256, SECRET, &json!({"sub": "u1"}))
}

/// A token whose payload is a JSON string rather than an object.
pub fn string_payload() -> String {
    sign(Algorithm::HS256, SECRET, &json!("alice"))
}

/// An unsigned `alg:none` token (built by hand: no library signs those).
pub fn alg_none() -> String {
    let part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.",
        part(json!({"alg": "none", "typ": "JWT"})),
        part(json!({"sub": "u1", "exp": now() + 3600}))
    )
}

/// Something that is not a JWT at all.
pub fn garbage() -> String {
    "not.a.jwt".into()
}
