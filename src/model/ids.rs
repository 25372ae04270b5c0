//! What names a user (PROTOCOL §1). The UserID rule lives here, and only here.

use super::Code;

/// Checks a UserID (PROTOCOL §1): 1–32 bytes of printable ASCII, not starting with a reserved prefix.
pub fn validate_user_id(user_id: &str) -> Result<(), Code> {
    if is_valid_user_id(user_id) {
        Ok(())
    } else {
        Err(Code::InvalidIdentifier)
    }
}

/// See [`validate_user_id`].
pub fn is_valid_user_id(user_id: &str) -> bool {
    (1..=32).contains(&user_id.len())
        && user_id.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && !["@TLS#", "@TIM#", "@TGS#"]
            .iter()
            .any(|p| user_id.starts_with(p))
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
