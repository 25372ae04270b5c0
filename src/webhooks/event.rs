//! The `State.StateChange` webhook event (PROTOCOL §9): what happened to a user's login state, as the login
//! service reports it, and the JSON body and query fields it is delivered with.

use std::net::IpAddr;

use serde::Serialize;

use crate::model::{Cause, Platform, Seq};

/// The callback command of every event imlogin sends.
pub const STATE_CHANGE: &str = "State.StateChange";

/// One state change of one user, numbered in the user's order.
#[derive(Debug, Clone)]
pub struct StateChange {
    pub sdkappid: u32,
    pub user_id: String,
    pub seq: Seq,
    pub cause: Cause,
    /// The instance's platform; `None` when an admin call caused it (`OptPlatform=RESTAPI`).
    pub platform: Option<Platform>,
    /// Platforms of the instances a login displaced.
    pub kicked: Vec<Platform>,
    pub client_ip: IpAddr,
    /// Unix ms.
    pub at_ms: i64,
}

/// `KickedDevice` and other callbacks spell iPhone `iOS`; only the StateChange query's `OptPlatform` says `IOS`.
fn tencent_platform(p: Platform) -> &'static str {
    match p {
        Platform::Android => "Android",
        Platform::Iphone => "iOS",
        Platform::Ipad => "iPad",
        Platform::Windows => "Windows",
        Platform::Mac => "Mac",
        Platform::Linux => "Linux",
        Platform::Web => "Web",
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Body<'a> {
    callback_command: &'static str,
    event_time: i64,
    info: Info<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    kicked_device: Vec<Kicked>,
    event_id: &'a str,
    seq: Seq,
    cause: &'static str,
}

#[derive(Serialize)]
struct Info<'a> {
    #[serde(rename = "Action")]
    action: &'static str,
    #[serde(rename = "To_Account")]
    to_account: &'a str,
    #[serde(rename = "Reason")]
    reason: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Kicked {
    platform: &'static str,
}

impl StateChange {
    /// The JSON body, with this event's id.
    pub fn body(&self, event_id: &str) -> String {
        self.raw_body(event_id).get().to_owned()
    }

    /// The JSON body as raw JSON (serialized once, not checked again).
    pub fn raw_body(&self, event_id: &str) -> Box<serde_json::value::RawValue> {
        let (action, reason) = self.cause.action_and_reason();
        let body = Body {
            callback_command: STATE_CHANGE,
            event_time: self.at_ms,
            info: Info {
                action,
                to_account: &self.user_id,
                reason,
            },
            kicked_device: self
                .kicked
                .iter()
                .map(|p| Kicked {
                    platform: tencent_platform(*p),
                })
                .collect(),
            event_id,
            seq: self.seq,
            cause: self.cause.word(),
        };
        serde_json::value::to_raw_value(&body).expect("serializable")
    }

    /// The `OptPlatform` query value: the instance's platform (iPhone spelled `IOS` here), or `RESTAPI`.
    pub fn opt_platform(&self) -> &'static str {
        match self.platform {
            None => "RESTAPI",
            Some(Platform::Iphone) => "IOS",
            Some(p) => tencent_platform(p),
        }
    }
}

/// A new unique event id (128 random bits, hex).
pub fn new_event_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_body_and_query_fields_are_spelled_as_the_compatible_system_does() {
        let ev = StateChange {
            sdkappid: 1,
            user_id: "alice".into(),
            seq: 42,
            cause: Cause::Login,
            platform: Some(Platform::Iphone),
            kicked: vec![Platform::Iphone, Platform::Web],
            client_ip: "10.0.0.1".parse().unwrap(),
            at_ms: 1_629_883_332_497,
        };
        let body: serde_json::Value = serde_json::from_str(&ev.body("e1")).unwrap();
        assert_eq!(
            body,
            json!({"CallbackCommand": "State.StateChange", "EventTime": 1_629_883_332_497u64,
                "Info": {"Action": "Login", "To_Account": "alice", "Reason": "Register"},
                "KickedDevice": [{"Platform": "iOS"}, {"Platform": "Web"}],
                "EventId": "e1", "Seq": 42, "Cause": "login"})
        );
        assert_eq!(ev.opt_platform(), "IOS");
        let timeout = StateChange {
            cause: Cause::HeartbeatTimeout,
            kicked: vec![],
            platform: None,
            ..ev
        };
        let body: serde_json::Value = serde_json::from_str(&timeout.body("e2")).unwrap();
        assert_eq!(body["Info"]["Reason"], "TimeOut");
        assert_eq!(body["Cause"], "disconnect");
        assert!(body.get("KickedDevice").is_none());
        assert_eq!(timeout.opt_platform(), "RESTAPI");
        assert_ne!(new_event_id(), new_event_id());
    }
}
