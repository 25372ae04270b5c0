//! JWT tickets (PROTOCOL §2), for apps with `[apps.jwt]`: `sub` = UserID, `exp` required, `iat`/`nbf` with 60 s
//! leeway, `aud` if configured, an optional `sdkappid` claim that must match.

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Verified;
use crate::model::error::{Code, Failure};

/// Clock skew tolerated for `iat` and `nbf`.
pub const LEEWAY_SECS: i64 = 60;

/// The algorithms an app may configure. `none` is not among them, by design.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum JwtAlgorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    ES256,
    EdDSA,
}

impl JwtAlgorithm {
    fn to_jwt(self) -> Algorithm {
        match self {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::HS384 => Algorithm::HS384,
            JwtAlgorithm::HS512 => Algorithm::HS512,
            JwtAlgorithm::RS256 => Algorithm::RS256,
            JwtAlgorithm::ES256 => Algorithm::ES256,
            JwtAlgorithm::EdDSA => Algorithm::EdDSA,
        }
    }
    fn is_hmac(self) -> bool {
        matches!(
            self,
            JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512
        )
    }
}

/// Three dot-separated base64url parts: the shape that tells a JWT from a TLS sig (whose alphabet has no dot).
pub fn looks_like_jwt(s: &str) -> bool {
    s.split('.').count() == 3
}

/// A JWT whose header and claims were decoded, signature not yet checked.
#[derive(Debug, Clone)]
pub struct JwtTicket {
    token: String,
    alg: Algorithm,
    claims: Map<String, Value>,
    sub: String,
    exp: i64,
}

fn bad(why: &str) -> Failure {
    Failure::with_message(Code::UserSigCheckFailed, format!("JWT rejected: {why}"))
}

fn claim_time(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, Failure> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| bad(&format!("`{name}` is not a number"))),
    }
}

impl JwtTicket {
    /// Decodes header and claims (70003 on failure, for `alg: none`, or without `sub`/`exp`).
    pub fn decode(token: &str) -> Result<JwtTicket, Failure> {
        // `Algorithm` has no `none`, so an unsigned token fails here.
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| bad("bad header or unsupported alg"))?;
        let payload = token.split('.').nth(1).unwrap_or_default();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|_| bad("claims are not base64url"))?;
        let claims: Map<String, Value> =
            serde_json::from_slice(&bytes).map_err(|_| bad("claims are not a JSON object"))?;
        let sub = match claims.get("sub") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(bad("`sub` missing or not a string")),
        };
        let exp = claim_time(&claims, "exp")?.ok_or_else(|| bad("`exp` is required"))?;
        Ok(JwtTicket {
            token: token.to_owned(),
            alg: header.alg,
            claims,
            sub,
            exp,
        })
    }
}

/// An app's JWT keys and rules.
pub struct JwtVerifier {
    algorithms: Vec<JwtAlgorithm>,
    hmac_key: Option<DecodingKey>,
    public_key: Option<DecodingKey>,
    /// The keys before a rotation, still accepted until removed.
    previous_hmac_key: Option<DecodingKey>,
    previous_public_key: Option<DecodingKey>,
    audience: Option<String>,
}

/// The public key of a PEM for an algorithm.
fn public_key(alg: JwtAlgorithm, pem: &str) -> Result<DecodingKey, String> {
    let pem = pem.as_bytes();
    let key = match alg {
        JwtAlgorithm::RS256 => DecodingKey::from_rsa_pem(pem),
        JwtAlgorithm::ES256 => DecodingKey::from_ec_pem(pem),
        _ => DecodingKey::from_ed_pem(pem),
    };
    key.map_err(|e| format!("is not a valid {alg:?} public key: {e}"))
}

impl JwtVerifier {
    /// Builds the keys of an app's `[apps.jwt]`; on a bad config returns (the key under `jwt`, message).
    pub fn new(
        algorithms: &[JwtAlgorithm],
        secret: Option<&str>,
        public_key_pem: Option<&str>,
        audience: Option<&str>,
    ) -> Result<JwtVerifier, (&'static str, String)> {
        if algorithms.is_empty() {
            return Err(("algorithms", "must list at least one algorithm".into()));
        }
        let wants_hmac = algorithms.iter().any(|a| a.is_hmac());
        let asym: Vec<JwtAlgorithm> = algorithms
            .iter()
            .copied()
            .filter(|a| !a.is_hmac())
            .collect();
        let hmac_key = match (secret, wants_hmac) {
            (Some(s), true) if s.len() >= 16 => Some(DecodingKey::from_secret(s.as_bytes())),
            (Some(_), true) => return Err(("secret", "must be at least 16 bytes".into())),
            (None, true) => return Err(("secret", "is required for HS256/HS384/HS512".into())),
            (_, false) => None,
        };
        let public_key = match (asym.as_slice(), public_key_pem) {
            ([], _) => None,
            ([alg], Some(pem)) => {
                Some(public_key(*alg, pem).map_err(|why| ("public_key_pem", why))?)
            }
            ([_], None) => {
                return Err(("public_key_pem", "is required for RS256/ES256/EdDSA".into()))
            }
            _ => {
                return Err((
                    "algorithms",
                    "at most one of RS256, ES256, EdDSA (one public key)".into(),
                ))
            }
        };
        Ok(JwtVerifier {
            algorithms: algorithms.to_vec(),
            hmac_key,
            public_key,
            previous_hmac_key: None,
            previous_public_key: None,
            audience: audience.map(str::to_owned),
        })
    }

    /// Also accepts JWTs signed with the keys before a rotation (`previous_secret`, `previous_public_key_pem`).
    pub fn with_previous(
        mut self,
        secret: Option<&str>,
        public_key_pem: Option<&str>,
    ) -> Result<JwtVerifier, (&'static str, String)> {
        if let Some(s) = secret {
            if s.len() < 16 {
                return Err(("previous_secret", "must be at least 16 bytes".into()));
            }
            self.previous_hmac_key = Some(DecodingKey::from_secret(s.as_bytes()));
        }
        if let Some(pem) = public_key_pem {
            let alg = self
                .algorithms
                .iter()
                .copied()
                .find(|a| !a.is_hmac())
                .ok_or((
                    "previous_public_key_pem",
                    "needs RS256, ES256 or EdDSA in `algorithms`".to_owned(),
                ))?;
            self.previous_public_key =
                Some(public_key(alg, pem).map_err(|why| ("previous_public_key_pem", why))?);
        }
        Ok(self)
    }

    /// Checks a decoded JWT: algorithm 70003 · `sdkappid` claim 70014 · `sub` 70013 · signature 70009 ·
    /// `exp` 70001 · `nbf`/`iat` in the future 70003 · `aud` 70003.
    pub fn verify(
        &self,
        t: &JwtTicket,
        sdkappid: u32,
        user_id: &str,
        now: i64,
    ) -> Result<Verified, Failure> {
        let alg = self
            .algorithms
            .iter()
            .copied()
            .find(|a| a.to_jwt() == t.alg)
            .ok_or_else(|| {
                bad(&format!(
                    "algorithm {:?} is not configured for this app",
                    t.alg
                ))
            })?;
        if let Some(claim) = t.claims.get("sdkappid") {
            let matches = match claim {
                Value::Number(n) => n.as_u64() == Some(u64::from(sdkappid)),
                Value::String(s) => s.parse::<u64>().ok() == Some(u64::from(sdkappid)),
                _ => false,
            };
            if !matches {
                return Err(Code::UserSigMismatchSdkAppId.into());
            }
        }
        if t.sub != user_id {
            return Err(Code::UserSigMismatchId.into());
        }
        let keys = if alg.is_hmac() {
            [&self.hmac_key, &self.previous_hmac_key]
        } else {
            [&self.public_key, &self.previous_public_key]
        };
        // Only the signature is checked here; the claims are checked below so each gets its documented code.
        let mut validation = Validation::new(alg.to_jwt());
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let mut outcome = Err(bad("no key for this algorithm"));
        for key in keys.into_iter().flatten() {
            outcome = match jsonwebtoken::decode::<Value>(&t.token, key, &validation) {
                Ok(_) => Ok(()),
                Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    Err(Code::UserSigMismatchKey.into())
                }
                Err(_) => Err(bad("signature could not be checked")),
            };
            if outcome.is_ok() {
                break;
            }
        }
        outcome?;
        if now > t.exp {
            return Err(Failure::with_message(
                Code::UserSigExpired,
                format!("JWT expired at {} (unix seconds); get a new one", t.exp),
            ));
        }
        let iat = claim_time(&t.claims, "iat")?;
        for (name, value) in [("nbf", claim_time(&t.claims, "nbf")?), ("iat", iat)] {
            if matches!(value, Some(v) if v > now + LEEWAY_SECS) {
                return Err(bad(&format!("`{name}` is in the future")));
            }
        }
        if let Some(aud) = &self.audience {
            let ok = match t.claims.get("aud") {
                Some(Value::String(s)) => s == aud,
                Some(Value::Array(list)) => list.iter().any(|v| v.as_str() == Some(aud)),
                _ => false,
            };
            if !ok {
                return Err(bad("`aud` does not name this server"));
            }
        }
        // A JWT without `iat` counts as issued at 0, so an admin kick (which revokes every ticket issued up to
        // now) revokes it for good: issuers that want kicks to be temporary must set `iat`.
        Ok(Verified {
            issued_at: iat.unwrap_or(0),
            expires_at: t.exp,
        })
    }
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
