//! A secret string (keys, tokens, database URLs with passwords) that is never printed.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

/// A secret string: never printed. `Debug` and `Serialize` show a mask, there is no `Display`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the code that signs or verifies with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "***" })
    }
}

/// A URL that may carry a `user:password@`: `Debug`, `Display` and `Serialize` show it with that part masked
/// (`http://***@host/path`), so the rest (where it points) can still be read in logs and `check-config`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct MaskedUrl(String);

impl MaskedUrl {
    pub fn new(value: impl Into<String>) -> Self {
        MaskedUrl(value.into())
    }

    /// The URL itself, for the code that sends to it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its userinfo masked; a URL that does not parse is masked whole (what is secret in it is
    /// unknown).
    pub fn masked(&self) -> String {
        let Ok(mut url) = reqwest::Url::parse(&self.0) else {
            return "***".to_owned();
        };
        if url.username().is_empty() && url.password().is_none() {
            return self.0.clone();
        }
        // Both succeed on a URL that had a userinfo (it has a host).
        let _ = url.set_password(None);
        let _ = url.set_username("");
        match url.as_str().split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://***@{rest}"),
            None => "***".to_owned(),
        }
    }
}

impl fmt::Display for MaskedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for MaskedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MaskedUrl({})", self.masked())
    }
}

impl Serialize for MaskedUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_urls_userinfo_is_masked_wherever_it_is_shown() {
        for (url, shown) in [
            (
                "https://user:pa55@hooks.example.com:8443/im/cb?x=1",
                "https://***@hooks.example.com:8443/im/cb?x=1",
            ),
            ("http://token@10.0.0.1/hook", "http://***@10.0.0.1/hook"),
            ("http://:pa55@h/hook", "http://***@h/hook"),
            ("http://h:9000/hook", "http://h:9000/hook"),
            ("not a url user:pa55@", "***"),
        ] {
            let u = MaskedUrl::new(url);
            assert_eq!(u.masked(), shown, "{url}");
            assert_eq!(u.to_string(), shown);
            assert_eq!(format!("{u:?}"), format!("MaskedUrl({shown})"));
            assert_eq!(serde_json::to_string(&u).unwrap(), format!("\"{shown}\""));
            assert_eq!(u.expose(), url);
        }
    }
}
