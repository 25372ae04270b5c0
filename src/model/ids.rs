//! What names a user (PROTOCOL §1): a [`UserId`], parsed once where it enters — a login, an admin's request, the
//! configuration — and passed as that type from then on. The UserID rule lives in [`UserId::parse`], and only
//! there.

use std::fmt;
use std::ops::Deref;

use serde::Serialize;

use super::Code;

/// A UserID: 1–32 bytes of printable ASCII, not starting with a reserved prefix (`@TLS#`, `@TIM#`, `@TGS#`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(Box<str>);

/// A string that is not a UserID (answered 7003 at login, 70402 by the admin APIs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("1-32 bytes of printable ASCII, not starting with @TLS#, @TIM# or @TGS#")]
pub struct InvalidUserId;

impl From<InvalidUserId> for Code {
    fn from(_: InvalidUserId) -> Code {
        Code::InvalidIdentifier
    }
}

impl UserId {
    /// The UserID rule (PROTOCOL §1).
    pub fn parse(user_id: &str) -> Result<UserId, InvalidUserId> {
        let valid = (1..=32).contains(&user_id.len())
            && user_id.bytes().all(|b| (0x20..=0x7e).contains(&b))
            && !["@TLS#", "@TIM#", "@TGS#"]
                .iter()
                .any(|p| user_id.starts_with(p));
        if valid {
            Ok(UserId(user_id.into()))
        } else {
            Err(InvalidUserId)
        }
    }

    /// A UserID this server wrote itself (read back from its own registry): kept as it was parsed then.
    pub(crate) fn stored(user_id: &str) -> UserId {
        UserId(user_id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for UserId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for UserId {
    type Err = InvalidUserId;

    fn from_str(s: &str) -> Result<UserId, InvalidUserId> {
        UserId::parse(s)
    }
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
            assert_eq!(
                UserId::parse(ok).map(|u| u.to_string()),
                Ok(ok.to_string()),
                "{ok:?}"
            );
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
            assert_eq!(UserId::parse(bad), Err(InvalidUserId), "{bad:?}");
            assert_eq!(Code::from(InvalidUserId), Code::InvalidIdentifier);
        }
    }
}
