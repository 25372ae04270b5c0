//! Client requests, typed once where they enter (a WebSocket frame or an HTTP body): deeper layers take
//! [`LoginRequest`] and friends, never a JSON map.
//!
//! A request object is read in one pass into [`Fields`]: the keys imlogin knows, each as the JSON value it had,
//! every other key skipped without being kept. Typing the values is a second, cheap step, so each field error can
//! get its documented code in the documented order (PROTOCOL §2: the throttle answers before a malformed login).

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::model::error::{Code, Failure};
use crate::model::Platform;
use crate::model::UserId;

/// The fields of a `login` request, checked for presence, type, UserID and platform.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginFields {
    pub sdkappid: u32,
    pub user_id: UserId,
    pub user_sig: String,
    pub platform: Platform,
    pub device_id: Option<String>,
}

impl fmt::Debug for LoginFields {
    // The ticket is a credential: never in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginFields")
            .field("sdkappid", &self.sdkappid)
            .field("user_id", &self.user_id)
            .field("platform", &self.platform)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

/// A `login` request as it arrived: its fields when all are present, typed and valid; otherwise why not (6017 or
/// 7003), which is answered after the throttle check.
#[derive(Debug, Clone)]
pub enum LoginRequest {
    Valid(LoginFields),
    Invalid {
        failure: Failure,
        /// (SDKAppID, UserID) when both were present and valid: the request still counts against that user.
        user: Option<(u32, UserId)>,
    },
}

impl LoginRequest {
    /// The (SDKAppID, UserID) the per-user throttle counts this request against: only a valid UserID (1–32
    /// bytes), so what an attacker sends cannot grow the throttle's keys.
    pub fn throttle_key(&self) -> Option<(u32, &str)> {
        match self {
            LoginRequest::Valid(f) => Some((f.sdkappid, &f.user_id)),
            LoginRequest::Invalid { user, .. } => user.as_ref().map(|(a, u)| (*a, u.as_str())),
        }
    }

    /// The SDKAppID it names, when it names one that is a valid number.
    pub fn sdkappid(&self) -> Option<u32> {
        match self {
            LoginRequest::Valid(f) => Some(f.sdkappid),
            LoginRequest::Invalid { user, .. } => user.as_ref().map(|u| u.0),
        }
    }

    /// The fields, or why the request has none.
    pub fn fields(&self) -> Result<&LoginFields, Failure> {
        match self {
            LoginRequest::Valid(f) => Ok(f),
            LoginRequest::Invalid { failure, .. } => Err(failure.clone()),
        }
    }

    pub fn into_fields(self) -> Result<LoginFields, Failure> {
        match self {
            LoginRequest::Valid(f) => Ok(f),
            LoginRequest::Invalid { failure, .. } => Err(failure),
        }
    }

    /// Types the login fields of a request object (unknown extra fields were already skipped).
    pub fn from_fields(f: Fields) -> LoginRequest {
        let sdkappid = match f.sdkappid {
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| invalid("`sdkappid` must be an integer 0-4294967295")),
            Some(_) => Err(invalid("`sdkappid` must be a number")),
            None => Err(invalid("`sdkappid` is required")),
        };
        let user_id = string(f.user_id, "user_id");
        // Parsed once: the UserID of a request refused for another field still names whom the throttle counts.
        let parsed = user_id.as_deref().ok().map(UserId::parse);
        let user = match (&sdkappid, &parsed) {
            (Ok(app), Some(Ok(u))) => Some((*app, u.clone())),
            _ => None,
        };
        let typed = (|| {
            let sdkappid = sdkappid?;
            user_id?;
            let user_sig = string(f.user_sig, "user_sig")?;
            let platform = string(f.platform, "platform")?;
            let device_id = match f.device_id {
                None | Some(Value::Null) => None,
                Some(Value::String(s))
                    if (1..=64).contains(&s.len())
                        && s.bytes().all(|b| (0x20..=0x7e).contains(&b)) =>
                {
                    Some(s)
                }
                Some(_) => {
                    return Err(invalid("`device_id` must be 1-64 bytes of printable ASCII"))
                }
            };
            let user_id = match parsed {
                Some(Ok(u)) => u,
                _ => return Err(Failure::new(Code::InvalidIdentifier)),
            };
            let platform = platform.parse().map_err(|_| {
                invalid(format!(
                    "unknown platform {platform:?}; use one of android, iphone, ipad, windows, mac, linux, web"
                ))
            })?;
            Ok(LoginFields {
                sdkappid,
                user_id,
                user_sig,
                platform,
                device_id,
            })
        })();
        match typed {
            Ok(fields) => LoginRequest::Valid(fields),
            Err(failure) => LoginRequest::Invalid { failure, user },
        }
    }
}

fn invalid(why: impl Into<String>) -> Failure {
    Failure::with_message(Code::InvalidParameters, why)
}

/// A required string field: 6017 when missing or of another type.
pub fn string(value: Option<Value>, name: &str) -> Result<String, Failure> {
    match value {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(format!("`{name}` must be a string"))),
        None => Err(invalid(format!("`{name}` is required"))),
    }
}

/// The keys of a request object that imlogin reads, each as the JSON value it had (a later duplicate wins, as in
/// a JSON object); every other key is skipped.
#[derive(Default)]
pub struct Fields {
    pub id: Option<Value>,
    pub op: Option<Value>,
    pub sdkappid: Option<Value>,
    pub user_id: Option<Value>,
    pub user_sig: Option<Value>,
    pub platform: Option<Value>,
    pub device_id: Option<Value>,
    pub session_token: Option<Value>,
}

/// Why a body is not a request object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAnObject {
    /// Not JSON at all.
    Syntax,
    /// JSON, but not an object.
    Shape,
}

impl Fields {
    /// Reads a JSON object.
    pub fn parse(bytes: &[u8]) -> Result<Fields, NotAnObject> {
        serde_json::from_slice(bytes).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => NotAnObject::Shape,
            _ => NotAnObject::Syntax,
        })
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fields, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut f = Fields::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    let slot = match key.as_ref() {
                        "id" => &mut f.id,
                        "op" => &mut f.op,
                        "sdkappid" => &mut f.sdkappid,
                        "user_id" => &mut f.user_id,
                        "user_sig" => &mut f.user_sig,
                        "platform" => &mut f.platform,
                        "device_id" => &mut f.device_id,
                        "session_token" => &mut f.session_token,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value()?);
                }
                Ok(f)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(json: &str) -> LoginRequest {
        LoginRequest::from_fields(Fields::parse(json.as_bytes()).unwrap())
    }

    #[test]
    fn objects_only_with_unknown_keys_skipped_and_the_last_duplicate_winning() {
        assert_eq!(Fields::parse(b"nope").err(), Some(NotAnObject::Syntax));
        assert_eq!(Fields::parse(b"").err(), Some(NotAnObject::Syntax));
        assert_eq!(Fields::parse(b"[1]").err(), Some(NotAnObject::Shape));
        assert_eq!(Fields::parse(b"12").err(), Some(NotAnObject::Shape));
        let f = Fields::parse(br#"{"x":{"deep":[1,2]},"id":1,"id":2,"op":"ping"}"#).unwrap();
        assert_eq!(f.id, Some(Value::from(2)));
        assert_eq!(f.op, Some(Value::from("ping")));
    }

    #[test]
    fn login_fields_are_typed_with_their_codes() {
        let ok = login(
            r#"{"sdkappid":7,"user_id":"u","user_sig":"s","platform":"web","device_id":"d","extra":1}"#,
        );
        let f = ok.clone().into_fields().unwrap();
        assert_eq!(
            (f.sdkappid, f.user_id.as_str(), f.platform),
            (7, "u", Platform::Web)
        );
        assert_eq!(ok.throttle_key(), Some((7, "u")));
        assert!(
            !format!("{f:?}").contains("\"s\""),
            "the ticket is not in Debug"
        );
        for (json, code, key) in [
            (
                r#"{"user_id":"u","user_sig":"s","platform":"web"}"#,
                6017,
                None,
            ),
            (
                r#"{"sdkappid":"7","user_id":"u","user_sig":"s","platform":"web"}"#,
                6017,
                None,
            ),
            (
                r#"{"sdkappid":7,"user_id":"u","user_sig":1,"platform":"web"}"#,
                6017,
                Some((7, "u")),
            ),
            (
                r#"{"sdkappid":7,"user_id":"u","user_sig":"s","platform":"ios"}"#,
                6017,
                Some((7, "u")),
            ),
            (
                r#"{"sdkappid":7,"user_id":"@TIM#x","user_sig":"s","platform":"web"}"#,
                7003,
                None,
            ),
            (
                r#"{"sdkappid":7,"user_id":"u","user_sig":"s","platform":"web","device_id":""}"#,
                6017,
                Some((7, "u")),
            ),
        ] {
            let r = login(json);
            assert_eq!(r.throttle_key(), key, "{json}");
            assert_eq!(r.into_fields().unwrap_err().code.number(), code, "{json}");
        }
        let long = format!(
            r#"{{"sdkappid":7,"user_id":"{}","user_sig":"s","platform":"web"}}"#,
            "x".repeat(1 << 20)
        );
        assert_eq!(
            login(&long).throttle_key(),
            None,
            "an invalid UserID is never a throttle key"
        );
    }
}
