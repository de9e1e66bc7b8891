//! Minting JWTs the way the gateway's users do: HMAC-signed claims.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

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

/// An HS256 token for `sub` signed with `secret`, valid for an hour.
pub fn valid_for_an_hour(secret: &str, sub: &str) -> String {
    sign(
        Algorithm::HS256,
        secret,
        &json!({"sub": sub, "exp": now() + 3600}),
    )
}
