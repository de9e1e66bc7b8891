//! JWTs for the tests: valid ones in each accepted algorithm, and every kind of
//! bad one the protocol names (expired, not yet valid, wrong secret, `alg:none`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chorus_test_support::tokens::{now, sign};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

use super::SECRET;

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

/// Signs raw `header` JSON and raw `payload` bytes with HS256 and [`SECRET`],
/// as Node's `jws` does: nothing is re-encoded, so any payload text can be signed.
pub fn signed_raw(header: &str, payload: &[u8]) -> String {
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.as_bytes()),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let signature = jsonwebtoken::crypto::sign(signed.as_bytes(), &key, Algorithm::HS256)
        .expect("an HMAC signature");
    format!("{signed}.{signature}")
}

/// What Node's `jwt.sign("just-a-string", secret)` produces: header
/// `{"alg":"HS256"}` and the bare text as the payload (not JSON).
pub fn bare_string() -> String {
    signed_raw(r#"{"alg":"HS256"}"#, b"just-a-string")
}

/// A validly signed token whose `exp` is 10^19 seconds away.
pub fn huge_exp() -> String {
    sign(
        Algorithm::HS256,
        SECRET,
        &json!({"sub": "huge-exp", "exp": 10_000_000_000_000_000_000u64}),
    )
}

/// A validly signed token whose `exp` is `u64::MAX`.
pub fn max_exp() -> String {
    sign(
        Algorithm::HS256,
        SECRET,
        &json!({"sub": "max-exp", "exp": u64::MAX}),
    )
}

/// An HMAC-signed token whose header claims `alg` (algorithm confusion:
/// `RS256`, `ES256`, … signed with the shared secret as if it were HS256).
pub fn header_alg(alg: &str) -> String {
    signed_raw(
        &json!({"alg": alg, "typ": "JWT"}).to_string(),
        json!({"sub": "u1", "exp": now() + 3600})
            .to_string()
            .as_bytes(),
    )
}

/// A valid HS256 token padded with a `pad` claim of `bytes` characters.
pub fn huge(bytes: usize) -> String {
    sign(
        Algorithm::HS256,
        SECRET,
        &json!({"sub": "huge", "exp": now() + 3600, "pad": "x".repeat(bytes)}),
    )
}

/// A validly signed token whose payload is the JSON `payload` (an array, a number…).
pub fn json_payload(payload: &Value) -> String {
    sign(Algorithm::HS256, SECRET, payload)
}
