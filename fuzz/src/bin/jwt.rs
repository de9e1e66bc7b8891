//! JWT verification as the gateway does it (`chorus_gateway::chat::auth`),
//! for both profiles. The first byte picks the mode:
//! - bit 0 clear: the rest is a raw token. Nobody but the harness knows the
//!   secret, so every such token must be refused by both profiles.
//! - bit 0 set: the rest is `header JSON` `\n%%\n` `payload bytes`; the harness
//!   signs them (with the header's HS* `alg`, else HS256) with the gateway's
//!   secret, or with another one when bit 1 is set. A wrong-key token is
//!   refused by both profiles; a right-key one whose payload is JSON without
//!   `exp`/`nbf` is accepted by seed (Node `jsonwebtoken.verify` semantics).
use base64::Engine as _;
use chorus_fuzz::{split, PART};
use chorus_gateway::chat::auth::Verifier;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::Value;

const SECRET: &str = "chorus-fuzz-secret-not-used-anywhere-else";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn main() {
    let verifier = Verifier::new(SECRET, &["HS256".to_owned(), "HS512".to_owned()], 5);
    afl::fuzz!(|data: &[u8]| {
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        if mode & 1 == 0 {
            let Ok(token) = std::str::from_utf8(rest) else {
                return;
            };
            assert!(
                verifier.verify_seed(token).is_err(),
                "seed accepted an unsigned token {token:?}"
            );
            assert!(
                verifier.verify_strict(token).is_err(),
                "strict accepted an unsigned token {token:?}"
            );
            return;
        }
        let parts = split(rest, PART);
        let header = parts[0];
        let payload = parts.get(1).copied().unwrap_or_default();
        let header_json: Option<Value> = serde_json::from_slice(header).ok();
        let alg = header_json
            .as_ref()
            .and_then(|h| h.get("alg")?.as_str()?.parse::<Algorithm>().ok())
            .filter(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512));
        let wrong_key = mode & 2 != 0;
        let secret = if wrong_key { "another-secret" } else { SECRET };
        let message = format!("{}.{}", b64(header), b64(payload));
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &EncodingKey::from_secret(secret.as_bytes()),
            alg.unwrap_or(Algorithm::HS256),
        )
        .expect("HMAC signing cannot fail");
        let token = format!("{message}.{signature}");
        let seed = verifier.verify_seed(&token);
        let strict = verifier.verify_strict(&token);
        if wrong_key || alg.is_none() {
            assert!(seed.is_err(), "seed accepted {token:?} (wrong key or alg)");
            assert!(
                strict.is_err(),
                "strict accepted {token:?} (wrong key or alg)"
            );
            return;
        }
        let payload_json: Option<Value> = serde_json::from_slice(payload).ok();
        let header_is_object = header_json.as_ref().is_some_and(Value::is_object);
        if let (true, Some(p)) = (header_is_object, payload_json) {
            if p.get("exp").is_none() && p.get("nbf").is_none() {
                assert!(
                    seed.is_ok(),
                    "seed refused a well-signed token without time claims: {token:?}"
                );
                assert!(
                    strict.is_err(),
                    "strict accepted a token without exp: {token:?}"
                );
            }
        }
        if strict.is_ok() {
            assert!(
                payload_json_is_object(payload),
                "strict accepted a non-object payload"
            );
        }
    });
}

fn payload_json_is_object(payload: &[u8]) -> bool {
    serde_json::from_slice::<Value>(payload).is_ok_and(|v| v.is_object())
}
