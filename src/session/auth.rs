//! JWT verification (HS256, RS256, ES256) into an [`Identity`], and minting tokens.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use wsgate_protocol::{ErrorCode, ProtocolError, MAX_NAME_LEN};

use super::grant::RoomGrant;
use crate::config::{Config, JwtAlgorithm};

/// Who a verified token says the client is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The `sub` claim.
    pub(crate) user: Arc<str>,
    /// The `sid` claim, if any.
    pub(crate) session: Option<String>,
    /// When the token stops being valid: `exp` plus the leeway, in seconds since the epoch.
    /// `None` for identities that come from no token (the fuzzing entry point).
    pub(crate) expires_at: Option<u64>,
    /// The `rooms` claim: the rooms the user may join, if the token restricts them.
    pub(crate) rooms: Option<Arc<RoomGrant>>,
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    rooms: Option<Vec<String>>,
}

#[derive(serde::Serialize)]
struct MintClaims<'a> {
    sub: &'a str,
    exp: u64,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rooms: Option<&'a [&'a str]>,
}

/// Checks tokens against one key and one algorithm: a token signed with any other algorithm
/// (`none`, or HS256 against an RSA key) is refused.
pub(crate) struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

/// Why the configured key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The public key file could not be read.
    #[error("reading JWT_PUBLIC_KEY_FILE {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key is not a valid PEM key for the algorithm.
    #[error("JWT public key is not a valid PEM key for {alg:?}: {source}")]
    Pem {
        /// The algorithm.
        alg: Algorithm,
        /// The parse error.
        source: jsonwebtoken::errors::Error,
    },
    /// The algorithm and the key material do not go together.
    #[error("{0}")]
    Mismatch(&'static str),
}

impl Verifier {
    /// Builds the verifier from the configuration; `dev_secret` is used when no key is set.
    pub(crate) fn from_config(config: &Config, dev_secret: Option<&str>) -> Result<Self, KeyError> {
        let alg = match (config.jwt_algorithm, &config.jwt_public_key_file) {
            (Some(a), _) => a,
            (None, Some(_)) if config.jwt_secret.is_none() => JwtAlgorithm::Rs256,
            (None, _) => JwtAlgorithm::Hs256,
        };
        let (key, algorithm) = match alg {
            JwtAlgorithm::Hs256 => {
                let secret = config
                    .jwt_secret
                    .as_deref()
                    .or(dev_secret)
                    .ok_or(KeyError::Mismatch("HS256 needs JWT_SECRET"))?;
                (
                    DecodingKey::from_secret(secret.as_bytes()),
                    Algorithm::HS256,
                )
            }
            JwtAlgorithm::Rs256 | JwtAlgorithm::Es256 => {
                let path = config
                    .jwt_public_key_file
                    .as_ref()
                    .ok_or(KeyError::Mismatch("RS256/ES256 need JWT_PUBLIC_KEY_FILE"))?;
                let pem = std::fs::read(path).map_err(|source| KeyError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                if alg == JwtAlgorithm::Rs256 {
                    let key = DecodingKey::from_rsa_pem(&pem).map_err(|source| KeyError::Pem {
                        alg: Algorithm::RS256,
                        source,
                    })?;
                    (key, Algorithm::RS256)
                } else {
                    let key = DecodingKey::from_ec_pem(&pem).map_err(|source| KeyError::Pem {
                        alg: Algorithm::ES256,
                        source,
                    })?;
                    (key, Algorithm::ES256)
                }
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = config.jwt_leeway_secs;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &config.jwt_audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &config.jwt_issuer {
            validation.set_issuer(&[iss]);
        }
        Ok(Verifier { key, validation })
    }

    /// Verifies a token: signature, algorithm, `exp`/`nbf` with leeway, `aud`/`iss` if set.
    pub(crate) fn verify(&self, token: &str) -> Result<Identity, ProtocolError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => {
                    ProtocolError::new(ErrorCode::AuthExpired, "token expired")
                }
                ErrorKind::ImmatureSignature => {
                    ProtocolError::new(ErrorCode::AuthExpired, "token not valid yet (nbf)")
                }
                ErrorKind::InvalidSignature => {
                    ProtocolError::new(ErrorCode::AuthInvalid, "bad token signature")
                }
                ErrorKind::InvalidAlgorithm => {
                    ProtocolError::new(ErrorCode::AuthInvalid, "token algorithm not accepted")
                }
                ErrorKind::InvalidAudience => {
                    ProtocolError::new(ErrorCode::AuthInvalid, "wrong token audience")
                }
                ErrorKind::InvalidIssuer => {
                    ProtocolError::new(ErrorCode::AuthInvalid, "wrong token issuer")
                }
                ErrorKind::MissingRequiredClaim(c) => {
                    ProtocolError::new(ErrorCode::AuthInvalid, format!("token lacks claim {c}"))
                }
                _ => ProtocolError::new(ErrorCode::AuthInvalid, "malformed token"),
            },
        )?;
        let Claims {
            sub,
            exp,
            sid,
            rooms,
        } = data.claims;
        if sub.is_empty() || sub.len() > MAX_NAME_LEN {
            return Err(ProtocolError::new(
                ErrorCode::AuthInvalid,
                "token sub must be 1 to 128 bytes",
            ));
        }
        let session = sid.filter(|s| !s.is_empty() && s.len() <= MAX_NAME_LEN);
        let rooms = rooms.map(RoomGrant::parse).transpose()?.map(Arc::new);
        Ok(Identity {
            user: Arc::from(sub),
            session,
            expires_at: Some(exp.saturating_add(self.validation.leeway)),
            rooms,
        })
    }
}

/// Options for [`mint`].
#[derive(Clone, Debug, Default)]
pub struct MintOptions<'a> {
    /// `sid` claim.
    pub sid: Option<&'a str>,
    /// `aud` claim.
    pub aud: Option<&'a str>,
    /// `iss` claim.
    pub iss: Option<&'a str>,
    /// `rooms` claim: the room patterns the user may join (`*` matches any run).
    pub rooms: Option<&'a [&'a str]>,
}

/// Mints an HS256 token for `sub`, valid for `ttl` (a zero or negative remaining life can be
/// made with `ttl_secs_signed` in tests via [`mint_with_exp`]).
pub fn mint(secret: &str, sub: &str, ttl: Duration, opts: &MintOptions<'_>) -> String {
    let exp = jsonwebtoken::get_current_timestamp() + ttl.as_secs();
    mint_with_exp(secret, sub, exp, opts)
}

/// Mints an HS256 token with an absolute `exp` (seconds since the epoch).
pub fn mint_with_exp(secret: &str, sub: &str, exp: u64, opts: &MintOptions<'_>) -> String {
    let claims = MintClaims {
        sub,
        exp,
        iat: jsonwebtoken::get_current_timestamp(),
        sid: opts.sid,
        aud: opts.aud,
        iss: opts.iss,
        rooms: opts.rooms,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap_or_else(|e| panic!("HS256 encoding of plain claims cannot fail: {e}"))
}

/// A random development secret (64 hex characters).
pub(crate) fn dev_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn verifier(secret: &str) -> Verifier {
        let mut c = Config::for_tests();
        c.jwt_secret = Some(secret.into());
        Verifier::from_config(&c, None).unwrap()
    }

    #[test]
    fn accepts_a_fresh_token_and_reads_sid() {
        let opts = MintOptions {
            sid: Some("s1"),
            ..Default::default()
        };
        let t = mint("k", "alice", Duration::from_secs(60), &opts);
        let id = verifier("k").verify(&t).unwrap();
        assert_eq!(&*id.user, "alice");
        assert_eq!(id.session.as_deref(), Some("s1"));
        let exp = jsonwebtoken::get_current_timestamp() + 60;
        let leeway = verifier("k").validation.leeway;
        let expires_at = id.expires_at.expect("a token's identity expires");
        assert!(
            (exp + leeway - 2..=exp + leeway).contains(&expires_at),
            "exp + leeway, got {expires_at}"
        );
    }

    #[test]
    fn refuses_expired_bad_signature_and_none() {
        let v = verifier("k");
        let old = mint_with_exp("k", "a", 1_000, &MintOptions::default());
        assert_eq!(v.verify(&old).unwrap_err().code, ErrorCode::AuthExpired);
        let other = mint(
            "other",
            "a",
            Duration::from_secs(60),
            &MintOptions::default(),
        );
        assert_eq!(v.verify(&other).unwrap_err().code, ErrorCode::AuthInvalid);
        // alg: none, unsigned.
        let none = format!(
            "{}.{}.",
            base64_url(br#"{"alg":"none","typ":"JWT"}"#),
            base64_url(br#"{"sub":"a","exp":99999999999}"#)
        );
        assert_eq!(v.verify(&none).unwrap_err().code, ErrorCode::AuthInvalid);
        assert_eq!(
            v.verify("garbage").unwrap_err().code,
            ErrorCode::AuthInvalid
        );
    }

    fn base64_url(b: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    #[test]
    fn audience_and_issuer_are_checked_when_set() {
        let mut c = Config::for_tests();
        c.jwt_secret = Some("k".into());
        c.jwt_audience = Some("app".into());
        c.jwt_issuer = Some("me".into());
        let v = Verifier::from_config(&c, None).unwrap();
        let good = MintOptions {
            aud: Some("app"),
            iss: Some("me"),
            ..Default::default()
        };
        assert!(v
            .verify(&mint("k", "a", Duration::from_secs(60), &good))
            .is_ok());
        let bad = MintOptions {
            aud: Some("other"),
            iss: Some("me"),
            ..Default::default()
        };
        assert!(v
            .verify(&mint("k", "a", Duration::from_secs(60), &bad))
            .is_err());
    }
}
