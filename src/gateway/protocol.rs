//! Frames of the WebSocket protocol: requests in, responses and events out (PROTOCOL §3).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Code, Failure};
use crate::platform::Platform;

/// The ops a client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Login,
    Resume,
    RenewSig,
    Logout,
    GetLoginUser,
    GetLoginStatus,
    Ping,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "login" => Op::Login,
            "resume" => Op::Resume,
            "renew_sig" => Op::RenewSig,
            "logout" => Op::Logout,
            "get_login_user" => Op::GetLoginUser,
            "get_login_status" => Op::GetLoginStatus,
            "ping" => Op::Ping,
            _ => return None,
        })
    }
}

/// A request that has a valid id and a known op.
#[derive(Debug, Clone)]
pub struct Request {
    pub id: u64,
    pub op: Op,
    pub body: Map<String, Value>,
}

/// Why a frame is not a request: without a usable id (answered with `id: null`), or with one.
#[derive(Debug)]
pub enum BadFrame {
    NoId(String),
    WithId(u64, Failure),
}

/// Parses a text frame.
pub fn parse(text: &str) -> Result<Request, BadFrame> {
    let value: Value =
        serde_json::from_str(text).map_err(|_| BadFrame::NoId("frame is not valid JSON".into()))?;
    let Value::Object(body) = value else {
        return Err(BadFrame::NoId("frame is not a JSON object".into()));
    };
    let id = match body.get("id") {
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
            BadFrame::NoId("`id` must be an integer 0-18446744073709551615".into())
        })?,
        Some(_) => return Err(BadFrame::NoId("`id` must be a number".into())),
        None => return Err(BadFrame::NoId("`id` is required".into())),
    };
    let op = match body.get("op") {
        Some(Value::String(s)) => Op::parse(s).ok_or_else(|| {
            BadFrame::WithId(
                id,
                Failure::with_message(Code::InvalidParameters, format!("unknown op {s:?}")),
            )
        })?,
        Some(_) => {
            return Err(BadFrame::WithId(
                id,
                Failure::with_message(Code::InvalidParameters, "`op` must be a string"),
            ))
        }
        None => {
            return Err(BadFrame::WithId(
                id,
                Failure::with_message(Code::InvalidParameters, "`op` is required"),
            ))
        }
    };
    Ok(Request { id, op, body })
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
        matches!(parse(text), Err(BadFrame::NoId(_)))
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
        let r = parse(r#"{"id":18446744073709551615,"op":"ping","extra":[1]}"#).unwrap();
        assert_eq!((r.id, r.op), (u64::MAX, Op::Ping));
        assert!(matches!(parse(r#"{"id":0}"#), Err(BadFrame::WithId(0, _))));
        assert!(matches!(
            parse(r#"{"id":3,"op":"fly"}"#),
            Err(BadFrame::WithId(3, _))
        ));
        assert!(matches!(
            parse(r#"{"id":3,"op":7}"#),
            Err(BadFrame::WithId(3, _))
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
