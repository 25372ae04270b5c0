//! The Web SDK's frames: `{"head": {...}, "body": {...}}` both ways, matched by `head.servcmd` + `head.seq`.
//!
//! A request is typed once here: its command, and for a login the same [`LoginRequest`] the native gateway
//! builds, so a ticket is checked exactly as there (PROTOCOL §2). Answers carry `ActionStatus`, `ErrorCode` and
//! `ErrorInfo` in the body, as the SDK expects.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::login::request::{Fields, LoginRequest};
use crate::model::Failure;

/// Commands imlogin answers itself; every other one is answered [`crate::model::Code::Unsupported`].
#[derive(Debug)]
pub enum Command {
    /// `im_open_status.wslogin` with `identifier` + `usersig`: a fresh login.
    Login(LoginRequest),
    /// `im_open_status.wslogin` with `a2` (+ `tinyid`): back after a reconnect, with the A2Key it was given.
    Resume {
        a2: String,
    },
    /// `heartbeat.alive`.
    Alive,
    /// `im_open_status.wshello`.
    Hello,
    /// `im_open_status.wslogout`.
    Logout,
    /// `openim.ws_msg_push_ack`.
    PushAck,
    /// `recentcontact.page_get`: an empty, complete list (the SDK asks again until `CompleteFlag` is 1).
    PageGet,
    /// `im_sdk_config_mgr.fetch_imsdk_purchase_bitsv2`: retried every second until it succeeds.
    PurchaseBits,
    Other,
}

/// A request: what to echo in the answer's head, and its command.
#[derive(Debug)]
pub struct Request {
    pub servcmd: String,
    pub seq: Value,
    pub command: Command,
}

/// The head fields imlogin reads; everything else in the frame is skipped unread.
#[derive(Deserialize)]
struct Head {
    servcmd: Option<String>,
    #[serde(default)]
    seq: Value,
    sdkappid: Option<Value>,
    identifier: Option<Value>,
    usersig: Option<Value>,
    a2: Option<Value>,
}

#[derive(Deserialize)]
struct Frame {
    head: Head,
}

/// Parses one frame; `Err` says why it is no request (it has no `head.servcmd`, or is not JSON).
pub fn parse(bytes: &[u8]) -> Result<Request, &'static str> {
    let frame: Frame =
        serde_json::from_slice(bytes).map_err(|_| "a frame must be a JSON object with a `head`")?;
    let head = frame.head;
    let servcmd = head.servcmd.ok_or("`head.servcmd` is required")?;
    let command = match servcmd.as_str() {
        "im_open_status.wslogin" => match head.a2 {
            Some(Value::String(a2)) if !a2.is_empty() => Command::Resume { a2 },
            _ => Command::Login(LoginRequest::from_fields(Fields {
                sdkappid: head.sdkappid,
                user_id: head.identifier,
                user_sig: head.usersig,
                platform: Some(Value::String("web".into())),
                ..Fields::default()
            })),
        },
        "heartbeat.alive" => Command::Alive,
        "im_open_status.wshello" => Command::Hello,
        "im_open_status.wslogout" => Command::Logout,
        "openim.ws_msg_push_ack" => Command::PushAck,
        "recentcontact.page_get" => Command::PageGet,
        "im_sdk_config_mgr.fetch_imsdk_purchase_bitsv2" => Command::PurchaseBits,
        _ => Command::Other,
    };
    Ok(Request {
        servcmd,
        seq: head.seq,
        command,
    })
}

/// An answer: the request's `servcmd` and `seq`, the status fields, and the command's own fields.
#[derive(Serialize)]
struct Answer<'a, F> {
    head: AnswerHead<'a>,
    body: Body<'a, F>,
}

#[derive(Serialize)]
struct AnswerHead<'a> {
    servcmd: &'a str,
    seq: &'a Value,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Body<'a, F> {
    action_status: &'static str,
    error_code: u32,
    error_info: &'a str,
    #[serde(flatten)]
    fields: F,
}

/// The fields of a successful `wslogin`, every one the SDK needs: without `A2Key` it fails the login (2023),
/// without `TinyId` too (2022), with `InstId` 0 it ignores server kicks, without `TimeStamp` its clock is NaN.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoginAnswer<'a> {
    pub a2_key: &'a str,
    /// A decimal string, as the SDK expects.
    pub tiny_id: String,
    pub inst_id: u64,
    pub hello_interval: u64,
    pub time_stamp: i64,
}

fn answer<F: Serialize>(
    servcmd: &str,
    seq: &Value,
    (code, info): (u32, &str),
    fields: F,
) -> String {
    let body = Body {
        action_status: if code == 0 { "OK" } else { "FAIL" },
        error_code: code,
        error_info: info,
        fields,
    };
    let head = AnswerHead { servcmd, seq };
    serde_json::to_string(&Answer { head, body }).expect("serializable")
}

/// No fields of its own.
#[derive(Serialize)]
pub struct Empty {}

/// A successful answer with the command's own fields.
pub fn ok<F: Serialize>(servcmd: &str, seq: &Value, fields: F) -> String {
    answer(servcmd, seq, (0, ""), fields)
}

/// A failed answer: the SDK rejects the request with `{code: ErrorCode, message: ErrorInfo}`.
pub fn fail(servcmd: &str, seq: &Value, failure: &Failure) -> String {
    fail_with(servcmd, seq, failure.code.number(), &failure.message)
}

/// A failed answer with a code of the SDK's own.
pub fn fail_with(servcmd: &str, seq: &Value, code: u32, message: &str) -> String {
    answer(servcmd, seq, (code, message), Empty {})
}

/// The servcmd of the kick push: the one servcmd whose kick every SDK tested reads (lite-chat 4.x reads kicks
/// only there, and ignores them inside `im_open_push.msg_push`).
const KICK_SERVCMD: &str = "im_open_status.stat_forceoffline";

/// The push that tells the SDK it was kicked (`KICKED_OUT` with the type's reason).
pub fn kick_push(kick_type: u8) -> String {
    json!({
        "head": {"servcmd": KICK_SERVCMD},
        "body": {"EventArray": [{"Event": 9, "C2cNotifyMsgArray": [{"KickoutMsgNotify": {"KickType": kick_type}}]}]}
    })
    .to_string()
}

/// The empty, complete conversation page.
pub fn page_get_fields() -> Value {
    json!({"CompleteFlag": 1, "TimeStamp": 0, "StartIndex": 0, "TopTimeStamp": 0, "TopStartIndex": 0, "SessionItem": []})
}

/// How long the purchase bits hold: the SDKs read `uint32_expired_time` as seconds from now, and ask again then.
pub const PURCHASE_BITS_VALID_SECS: u64 = 86_400;

/// No purchased features (`"0"`, which every SDK accepts as valid bits), for a day. The fields twice: in the
/// body, where tim-js-sdk 2.x and @tencentcloud/chat 3.x read them, and in `body.body`, where lite-chat 4.x does
/// (finding nothing there, it asks again every second).
pub fn purchase_bits_fields() -> Value {
    let bits = json!({"int32_error_code": 0, "str_error_message": "", "str_purchase_bits": "0", "uint32_expired_time": PURCHASE_BITS_VALID_SECS});
    let mut fields = bits.clone();
    fields["body"] = bits;
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Code;

    #[test]
    fn a_login_is_typed_like_a_native_one() {
        let f = br#"{"head":{"ver":"v4","platform":7,"sdkappid":1400000001,"identifier":"alice","usersig":"sig","servcmd":"im_open_status.wslogin","seq":64126558},"body":{"State":"Online"}}"#;
        let r = parse(f).unwrap();
        assert_eq!(r.servcmd, "im_open_status.wslogin");
        assert_eq!(r.seq, json!(64126558));
        let Command::Login(LoginRequest::Valid(l)) = r.command else {
            panic!("{:?}", r.command)
        };
        assert_eq!((l.sdkappid, l.user_id.as_str()), (1400000001, "alice"));
        assert_eq!(l.platform.as_str(), "web");
    }

    #[test]
    fn a_login_with_an_a2key_resumes_and_bad_fields_keep_their_codes() {
        let r = parse(
            br#"{"head":{"servcmd":"im_open_status.wslogin","seq":2,"a2":"tok","tinyid":"5"}}"#,
        )
        .unwrap();
        assert!(matches!(r.command, Command::Resume { ref a2 } if a2 == "tok"));
        let r = parse(br#"{"head":{"servcmd":"im_open_status.wslogin","seq":3,"sdkappid":1,"identifier":"@TIM#x","usersig":"s"}}"#).unwrap();
        let Command::Login(LoginRequest::Invalid { failure, .. }) = r.command else {
            panic!()
        };
        assert_eq!(failure.code, Code::InvalidIdentifier);
        let r = parse(br#"{"head":{"servcmd":"im_open_status.wslogin","seq":4,"sdkappid":"1"}}"#)
            .unwrap();
        assert!(matches!(
            r.command,
            Command::Login(LoginRequest::Invalid { .. })
        ));
    }

    #[test]
    fn frames_without_a_command_are_refused_and_others_are_typed() {
        assert!(parse(b"nope").is_err());
        assert!(parse(br#"{"body":{}}"#).is_err());
        assert!(parse(br#"{"head":{"seq":1}}"#).is_err());
        assert!(parse(br#"{"head":{"servcmd":5}}"#).is_err());
        let r = parse(br#"{"head":{"servcmd":"sns.black_list_get"}}"#).unwrap();
        assert!(matches!(r.command, Command::Other));
        assert_eq!(r.seq, Value::Null);
        let r = parse(br#"{"head":{"servcmd":"heartbeat.alive","seq":9}}"#).unwrap();
        assert!(matches!(r.command, Command::Alive));
    }

    #[test]
    fn answers_carry_the_status_fields_and_echo_the_head() {
        let a: Value = serde_json::from_str(&ok("x.y", &json!(7), json!({"A": 1}))).unwrap();
        let e: Value = serde_json::from_str(&ok("x.y", &json!(7), Empty {})).unwrap();
        assert_eq!(
            e["body"],
            json!({"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""})
        );
        let login = LoginAnswer {
            a2_key: "a2",
            tiny_id: "12".into(),
            inst_id: 5,
            hello_interval: 30,
            time_stamp: 1,
        };
        let l: Value = serde_json::from_str(&ok("x.y", &json!(7), &login)).unwrap();
        assert_eq!(
            l["body"],
            json!({"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","A2Key":"a2","TinyId":"12","InstId":5,"HelloInterval":30,"TimeStamp":1})
        );
        assert_eq!(
            a,
            json!({"head":{"servcmd":"x.y","seq":7},"body":{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","A":1}})
        );
        let f = Failure::new(Code::UserSigExpired);
        let a: Value = serde_json::from_str(&fail("x.y", &json!(8), &f)).unwrap();
        assert_eq!(a["body"]["ErrorCode"], 70001);
        assert_eq!(a["body"]["ActionStatus"], "FAIL");
        let k: Value = serde_json::from_str(&kick_push(3)).unwrap();
        assert_eq!(k["head"]["servcmd"], "im_open_status.stat_forceoffline");
        assert_eq!(
            k["body"]["EventArray"][0]["C2cNotifyMsgArray"][0]["KickoutMsgNotify"]["KickType"],
            3
        );
        let p = purchase_bits_fields();
        for bits in [&p, &p["body"]] {
            assert_eq!(bits["int32_error_code"], 0);
            assert_eq!(bits["str_purchase_bits"], "0");
            assert_eq!(bits["uint32_expired_time"], 86_400);
        }
    }
}
