//! UserSig verification and generation (PROTOCOL §2): TLS sig v2 (HMAC-SHA256) and JWT.
//!
//! This module knows tickets and keys, nothing else: [`Ticket::decode`] tells the format and decodes (70002,
//! 70003), [`Ticket::verify`] checks it against one app's [`Keys`] (70014, 70013, 70009, 70001). Which app's keys
//! to use, and the checks that need state (throttle, revocation, disabled accounts), are the login service's
//! business.

pub mod jwt;
pub mod tls;

use std::fmt;

use crate::model::error::{Code, Failure};
use jwt::JwtVerifier;

/// What a verified ticket says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// When the ticket was issued (unix s): TLS.time, or the JWT's `iat` (0 if it has none).
    pub issued_at: i64,
    /// When it stops being valid (unix s): TLS.time + TLS.expire, or the JWT's `exp`.
    pub expires_at: i64,
}

/// The keys one app verifies tickets with.
pub struct Keys {
    secret_key: Vec<u8>,
    /// Still accepted during a key rotation.
    previous_secret_key: Option<Vec<u8>>,
    jwt: Option<JwtVerifier>,
}

impl Keys {
    /// `secret_key` signs TLS sig v2 tickets (its UTF-8 bytes are the HMAC key, as in every official
    /// generator); `jwt` is set for apps that accept JWTs.
    pub fn new(secret_key: &str, jwt: Option<JwtVerifier>) -> Keys {
        Keys {
            secret_key: secret_key.as_bytes().to_vec(),
            previous_secret_key: None,
            jwt,
        }
    }

    /// Also accepts TLS sig v2 tickets signed with `previous` (a key rotation in progress).
    pub fn with_previous_secret_key(mut self, previous: Option<&str>) -> Keys {
        self.previous_secret_key = previous.map(|k| k.as_bytes().to_vec());
        self
    }
}

impl fmt::Debug for Keys {
    // Keys are secrets: never in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("previous_secret_key", &self.previous_secret_key.is_some())
            .field("jwt", &self.jwt.is_some())
            .finish_non_exhaustive()
    }
}

/// A decoded but not yet verified ticket.
pub enum Ticket {
    Tls(tls::TlsTicket),
    Jwt(jwt::JwtTicket),
}

impl Ticket {
    /// Tells the format by shape and decodes it: 70002 when empty, 70003 when it cannot be read.
    pub fn decode(usersig: &str) -> Result<Ticket, Failure> {
        if usersig.is_empty() {
            return Err(Code::UserSigEmpty.into());
        }
        if jwt::looks_like_jwt(usersig) {
            jwt::JwtTicket::decode(usersig).map(Ticket::Jwt)
        } else {
            tls::TlsTicket::decode(usersig).map(Ticket::Tls)
        }
    }

    /// Verifies the ticket for (`sdkappid`, `user_id`) at `now` (unix s) with the app's keys, in the order of
    /// PROTOCOL §2: SDKAppID mismatch 70014 · UserID mismatch 70013 · bad signature 70009 · expired 70001.
    pub fn verify(
        &self,
        keys: &Keys,
        sdkappid: u32,
        user_id: &str,
        now: i64,
    ) -> Result<Verified, Failure> {
        match self {
            Ticket::Tls(t) => {
                let mut candidates: [&[u8]; 2] = [&keys.secret_key, &[]];
                let n = match &keys.previous_secret_key {
                    Some(previous) => {
                        candidates[1] = previous;
                        2
                    }
                    None => 1,
                };
                t.verify(sdkappid, user_id, &candidates[..n], now)
            }
            Ticket::Jwt(t) => {
                let verifier = keys.jwt.as_ref().ok_or_else(|| {
                    Failure::with_message(
                        Code::UserSigCheckFailed,
                        "this app does not accept JWT tickets",
                    )
                })?;
                verifier.verify(t, sdkappid, user_id, now)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_previous_key_verifies_during_a_rotation_only() {
        let (new_key, old_key) = ("the-new-key-0123456789", "the-old-key-0123456789");
        let old_ticket = tls::generate(7, old_key, "u", 600, 1_000);
        let t = Ticket::decode(&old_ticket).unwrap();
        let code = |keys: &Keys| t.verify(keys, 7, "u", 1_100).map_err(|f| f.code);
        assert_eq!(
            code(&Keys::new(new_key, None)),
            Err(Code::UserSigMismatchKey)
        );
        let rotating = Keys::new(new_key, None).with_previous_secret_key(Some(old_key));
        assert!(code(&rotating).is_ok());
        let fresh = Ticket::decode(&tls::generate(7, new_key, "u", 600, 1_000)).unwrap();
        assert!(fresh.verify(&rotating, 7, "u", 1_100).is_ok());
        assert!(!format!("{rotating:?}").contains("key-0123"));
    }
}
