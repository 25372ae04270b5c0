//! A client that speaks the Web SDK's frames to a test server, frame by frame.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{TestApp, APP};

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A client speaking the SDK's frames: binary on `/tim/binfo`, text on `/tim/info`.
pub struct Sdk {
    pub ws: Ws,
    binary: bool,
    seq: u64,
    /// Frames that answered no request: pushes.
    pub pushes: Vec<Value>,
}

impl Sdk {
    pub async fn open(app: &TestApp) -> Sdk {
        Sdk::open_at(app, "binfo").await
    }

    pub async fn open_at(app: &TestApp, path: &str) -> Sdk {
        let url = format!(
            "ws://{}/tim/{path}?sdkappid={APP}&instanceid=0123456789abcdef0123456789abcdef&platform=7",
            app.addr
        );
        let ws = tokio_tungstenite::connect_async(url).await.unwrap().0;
        Sdk {
            ws,
            binary: path == "binfo",
            seq: 1000,
            pushes: Vec::new(),
        }
    }

    pub async fn send_raw(&mut self, bytes: Vec<u8>) {
        let m = if self.binary {
            Message::Binary(bytes.into())
        } else {
            Message::Text(String::from_utf8(bytes).unwrap().into())
        };
        self.ws.send(m).await.unwrap();
    }

    /// The next frame the server sends, as JSON; `None` once it closed.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("a frame within 10 s")?;
            match m {
                Ok(Message::Binary(b)) => {
                    assert!(self.binary, "binary frames only on /binfo");
                    return Some(serde_json::from_slice(&b).unwrap());
                }
                Ok(Message::Text(t)) => {
                    assert!(!self.binary, "text frames only on /info");
                    return Some(serde_json::from_str(&t).unwrap());
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Sends `servcmd` with extra head fields and a body, and waits for its answer's body.
    pub async fn call(&mut self, servcmd: &str, head: Value, body: Value) -> Value {
        self.seq += 1;
        let seq = self.seq;
        let mut h = json!({"ver":"v4","platform":7,"sdkappid":APP,"contenttype":"json","servcmd":servcmd,"seq":seq});
        h.as_object_mut()
            .unwrap()
            .extend(head.as_object().unwrap().clone());
        self.send_raw(json!({"head": h, "body": body}).to_string().into_bytes())
            .await;
        loop {
            let v = self.next().await.expect("an answer before the close");
            if v["head"]["seq"] == seq && v["head"]["servcmd"] == servcmd {
                return v["body"].clone();
            }
            self.pushes.push(v);
        }
    }

    pub async fn login(&mut self, user: &str, user_sig: &str) -> Value {
        self.call(
            "im_open_status.wslogin",
            json!({"identifier": user, "usersig": user_sig}),
            json!({"State":"Online","is_web_uniapp":0,"InstType":0}),
        )
        .await
    }

    pub async fn resume(&mut self, a2: &str, tiny_id: &str) -> Value {
        self.call(
            "im_open_status.wslogin",
            json!({"a2": a2, "tinyid": tiny_id}),
            json!({"State":"Online"}),
        )
        .await
    }

    /// Requires that nothing but answers came since the last push was taken: a round trip (a keepalive) after
    /// it, and no push before its answer.
    pub async fn no_more_pushes(&mut self) {
        let alive = self.call("heartbeat.alive", json!({}), json!({})).await;
        assert_eq!(alive["ErrorCode"], 0, "{alive}");
        assert!(self.pushes.is_empty(), "{:?}", self.pushes);
    }

    /// Waits for the next push (a frame that answers nothing).
    pub async fn push(&mut self) -> Value {
        if !self.pushes.is_empty() {
            return self.pushes.remove(0);
        }
        self.next().await.expect("a push")
    }
}

/// The `KickType` of a kick push, which must come under the one servcmd every SDK version reads kicks from.
pub fn kick_type(push: &Value) -> i64 {
    assert_eq!(
        push["head"]["servcmd"], "im_open_status.stat_forceoffline",
        "{push}"
    );
    push["body"]["EventArray"][0]["C2cNotifyMsgArray"][0]["KickoutMsgNotify"]["KickType"]
        .as_i64()
        .unwrap()
}

pub async fn instances(app: &TestApp, user: &str) -> Vec<Value> {
    let (status, v) = app
        .native(Method::GET, &format!("/users/{user}"), None)
        .await;
    if status == 404 {
        return Vec::new();
    }
    assert_eq!(status, 200, "{v}");
    v["instances"].as_array().unwrap().clone()
}
