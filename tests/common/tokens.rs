//! Tokens a test forges: signed with the fixture keys or other algorithms, or tampered with
//! after signing (a flipped signature byte, a swapped header or payload).

use serde_json::{json, Value};

/// The key pairs the tests sign and verify with (`rs256-private.pem`, `rs256-public.pem` ...).
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// Base64url without padding, as in a JWT.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The inverse of [`b64`].
pub fn unb64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

/// Now, in seconds since the epoch, as in a JWT's `exp`.
pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// `token` with one byte of its signature flipped.
pub fn flip_signature(token: &str) -> String {
    let (signed, sig) = token.rsplit_once('.').unwrap();
    let mut sig = unb64(sig);
    let mid = sig.len() / 2;
    sig[mid] ^= 0x01;
    format!("{signed}.{}", b64(&sig))
}

/// `token` with its payload replaced and its signature kept.
pub fn swap_payload(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        b64(claims.to_string().as_bytes()),
        parts[2]
    )
}

/// `token` with its header replaced and its signature kept.
pub fn swap_header(token: &str, header: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        parts[1],
        parts[2]
    )
}

/// `claims` signed with the fixture RSA key.
pub fn rs256(claims: &Value) -> String {
    let pem = std::fs::read(format!("{FIXTURES}/rs256-private.pem")).unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        claims,
        &key,
    )
    .unwrap()
}

/// An RS256 token for `user`, valid for an hour.
pub fn rs256_token(user: &str) -> String {
    rs256(&json!({"sub": user, "exp": now() + 3600}))
}

/// `claims` signed with HMAC `alg` keyed with `secret`.
pub fn hs(alg: jsonwebtoken::Algorithm, secret: &[u8], claims: &Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret);
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), claims, &key).unwrap()
}
