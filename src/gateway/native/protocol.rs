//! Frames of the WebSocket protocol: requests in, responses and events out (PROTOCOL §3).

use serde::Serialize;
use serde_json::Value;

use crate::login::request::{string, Fields, LoginRequest, NotAnObject};
use crate::model::error::{Code, Failure};
use crate::model::Platform;

/// A request with a valid id and a known op, its fields typed. Field errors that must be answered in a
/// particular order (after the throttle for a login, after the login state for `renew_sig`) travel inside.
#[derive(Debug, Clone)]
pub struct Request {
    pub id: u64,
    pub op: Op,
}

/// The ops a client may send, with their fields.
#[derive(Debug, Clone)]
pub enum Op {
    Login(LoginRequest),
    /// The session token, or why it is missing.
    Resume(Result<String, Failure>),
    /// The new UserSig, or why it is missing.
    RenewSig(Result<String, Failure>),
    Logout,
    GetLoginUser,
    GetLoginStatus,
    Ping,
}

impl Op {
    /// Answered at once even while a login is in progress (PROTOCOL §3).
    pub fn answered_during_login(&self) -> bool {
        matches!(self, Op::Ping | Op::GetLoginStatus | Op::GetLoginUser)
    }
}

/// The answer to `get_login_status` (the SDKs' V2TIMLoginStatus numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginStatus {
    LoggedIn = 1,
    LoggingIn = 2,
    LoggedOut = 3,
}

impl Serialize for LoginStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(*self as u8)
    }
}

/// Why a frame is not a request: without a usable id (answered with `id: null`), or with one.
#[derive(Debug)]
pub enum BadFrame {
    NoId(&'static str),
    WithId(u64, Failure),
}

/// Parses a text frame into a typed request.
pub fn parse(text: &[u8]) -> Result<Request, BadFrame> {
    let mut f = Fields::parse(text).map_err(|e| match e {
        NotAnObject::Syntax => BadFrame::NoId("frame is not valid JSON"),
        NotAnObject::Shape => BadFrame::NoId("frame is not a JSON object"),
    })?;
    let id = match f.id.take() {
        Some(Value::Number(n)) => n.as_u64().ok_or(BadFrame::NoId(
            "`id` must be an integer 0-18446744073709551615",
        ))?,
        Some(_) => return Err(BadFrame::NoId("`id` must be a number")),
        None => return Err(BadFrame::NoId("`id` is required")),
    };
    let with_id =
        |why: String| BadFrame::WithId(id, Failure::with_message(Code::InvalidParameters, why));
    let op = match f.op.take() {
        Some(Value::String(s)) => match s.as_str() {
            "login" => Op::Login(LoginRequest::from_fields(f)),
            "resume" => Op::Resume(string(f.session_token, "session_token")),
            "renew_sig" => Op::RenewSig(string(f.user_sig, "user_sig")),
            "logout" => Op::Logout,
            "get_login_user" => Op::GetLoginUser,
            "get_login_status" => Op::GetLoginStatus,
            "ping" => Op::Ping,
            _ => return Err(with_id(format!("unknown op {s:?}"))),
        },
        Some(_) => return Err(with_id("`op` must be a string".into())),
        None => return Err(with_id("`op` is required".into())),
    };
    Ok(Request { id, op })
}

#[derive(Serialize)]
struct Response<'a, D: Serialize> {
    id: Option<u64>,
    code: u32,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a D>,
}

/// `{"id":…, "code":0, "message":"", "data":…}`
pub fn ok<D: Serialize>(id: u64, data: &D) -> String {
    serde_json::to_string(&Response {
        id: Some(id),
        code: 0,
        message: "",
        data: Some(data),
    })
    .expect("serializable")
}

/// `{"id":…, "code":…, "message":…}`; `id` is null for frames that had no usable id.
pub fn error(id: Option<u64>, f: &Failure) -> String {
    serde_json::to_string(&Response::<()> {
        id,
        code: f.code.number(),
        message: &f.message,
        data: None,
    })
    .expect("serializable")
}

/// Events the server sends unsolicited.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event<'a> {
    KickedOffline {
        code: u32,
        reason: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        by_platform: Option<Platform>,
    },
    UserSigExpiring {
        expires_at: i64,
    },
    UserSigExpired {
        code: u32,
    },
    LoggedOut {
        reason: &'a str,
    },
}

impl Event<'_> {
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("serializable")
    }
}

/// Close codes (PROTOCOL §3).
pub mod close {
    pub const KICKED: u16 = 4001;
    pub const RESUMED_ELSEWHERE: u16 = 4002;
    pub const HEARTBEAT_TIMEOUT: u16 = 4003;
    pub const TOO_LARGE: u16 = 1009;
    pub const POLICY: u16 = 1008;
    pub const RESTARTING: u16 = 1012;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_id(text: &str) -> bool {
        matches!(parse(text.as_bytes()), Err(BadFrame::NoId(_)))
    }

    fn op(text: &str) -> Op {
        parse(text.as_bytes()).unwrap().op
    }

    #[test]
    fn ids() {
        for bad in [
            "",
            "nope",
            "[]",
            "1",
            "{}",
            r#"{"id":-1,"op":"ping"}"#,
            r#"{"id":1.5,"op":"ping"}"#,
            r#"{"id":18446744073709551616,"op":"ping"}"#,
            r#"{"id":"1","op":"ping"}"#,
            r#"{"id":null,"op":"ping"}"#,
        ] {
            assert!(no_id(bad), "{bad}");
        }
        let r = parse(br#"{"id":18446744073709551615,"op":"ping","extra":[1]}"#).unwrap();
        assert!(r.id == u64::MAX && matches!(r.op, Op::Ping));
        for (text, id) in [
            (r#"{"id":0}"#, 0),
            (r#"{"id":3,"op":"fly"}"#, 3),
            (r#"{"id":3,"op":7}"#, 3),
        ] {
            assert!(
                matches!(parse(text.as_bytes()), Err(BadFrame::WithId(i, _)) if i == id),
                "{text}"
            );
        }
    }

    #[test]
    fn fields_are_typed_at_the_edge() {
        assert!(
            matches!(op(r#"{"id":1,"op":"resume","session_token":"t"}"#), Op::Resume(Ok(t)) if t == "t")
        );
        assert!(
            matches!(op(r#"{"id":1,"op":"resume","session_token":5}"#), Op::Resume(Err(f)) if f.code == Code::InvalidParameters)
        );
        assert!(matches!(
            op(r#"{"id":1,"op":"renew_sig"}"#),
            Op::RenewSig(Err(_))
        ));
        assert!(matches!(
            op(
                r#"{"id":1,"op":"login","sdkappid":1,"user_id":"u","user_sig":"s","platform":"web"}"#
            ),
            Op::Login(LoginRequest::Valid(_))
        ));
        assert!(matches!(
            op(
                r#"{"id":1,"op":"login","sdkappid":1,"user_id":"u","user_sig":"s","platform":"ios"}"#
            ),
            Op::Login(LoginRequest::Invalid { .. })
        ));
    }

    #[test]
    fn shapes() {
        assert_eq!(
            ok(1, &serde_json::json!({})),
            r#"{"id":1,"code":0,"message":"","data":{}}"#
        );
        assert_eq!(
            error(None, &Failure::with_message(Code::InvalidParameters, "x")),
            r#"{"id":null,"code":6017,"message":"x"}"#
        );
        assert_eq!(
            Event::KickedOffline {
                code: 6208,
                reason: "multi_terminal",
                by_platform: Some(Platform::Web)
            }
            .to_text(),
            r#"{"event":"kicked_offline","code":6208,"reason":"multi_terminal","by_platform":"web"}"#
        );
        assert_eq!(
            Event::UserSigExpired { code: 6206 }.to_text(),
            r#"{"event":"user_sig_expired","code":6206}"#
        );
    }
}
