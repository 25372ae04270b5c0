//! UserSig verification and generation (PROTOCOL §2): TLS sig v2 (HMAC-SHA256) and JWT.
//!
//! [`verify`] runs the ticket checks in the contract's order, from "empty ticket" (70002) to "expired" (70001);
//! the checks before (throttle, fields) and after (revoked, disabled) need state and live in [`crate::auth`].

pub mod jwt;
pub mod throttle;
pub mod tls;

use crate::apps::Apps;
use crate::error::{Code, Failure};

/// What a verified ticket says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// When the ticket was issued (unix s): TLS.time, or the JWT's `iat` (0 if it has none).
    pub issued_at: i64,
    /// When it stops being valid (unix s): TLS.time + TLS.expire, or the JWT's `exp`.
    pub expires_at: i64,
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
}

/// Verifies `usersig` for (`sdkappid`, `user_id`) at `now` (unix s), in the order of PROTOCOL §2:
/// empty 70002 · undecodable 70003 · unknown app 70020 · SDKAppID mismatch 70014 · UserID mismatch 70013 ·
/// bad signature 70009 · expired 70001.
pub fn verify(
    apps: &Apps,
    sdkappid: u32,
    user_id: &str,
    usersig: &str,
    now: i64,
) -> Result<Verified, Failure> {
    let ticket = Ticket::decode(usersig)?;
    let app = apps.get(sdkappid).ok_or(Code::SdkAppIdNotFound)?;
    match ticket {
        Ticket::Tls(t) => t.verify(sdkappid, user_id, app.secret_key.expose().as_bytes(), now),
        Ticket::Jwt(t) => {
            let verifier = app.jwt.as_ref().ok_or_else(|| {
                Failure::with_message(
                    Code::UserSigCheckFailed,
                    "this app does not accept JWT tickets",
                )
            })?;
            verifier.verify(&t, sdkappid, user_id, now)
        }
    }
}

/// Checks a UserID (PROTOCOL §1): 1–32 bytes of printable ASCII, not starting with a reserved prefix.
pub fn validate_user_id(user_id: &str) -> Result<(), Code> {
    let ok = (1..=32).contains(&user_id.len())
        && user_id.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && !["@TLS#", "@TIM#", "@TGS#"]
            .iter()
            .any(|p| user_id.starts_with(p));
    if ok {
        Ok(())
    } else {
        Err(Code::InvalidIdentifier)
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_rules() {
        for ok in [
            "a",
            "xiaojun",
            "with space",
            "~!@#$%^&*()",
            &"x".repeat(32),
            "@TLS",
            "a@TIM#",
        ] {
            assert_eq!(validate_user_id(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            "",
            &"x".repeat(33),
            "tab\there",
            "naïve",
            "@TLS#NOT_FOUND",
            "@TIM#SYSTEM",
            "@TGS#g",
            "\u{7f}",
        ] {
            assert_eq!(
                validate_user_id(bad),
                Err(Code::InvalidIdentifier),
                "{bad:?}"
            );
        }
    }
}
