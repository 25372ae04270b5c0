//! A Rust client for the imlogin WebSocket protocol (PROTOCOL §3): requests matched to responses by id, a
//! stream of events, and [`Reconnecting`], which resumes its session after a lost connection by itself.

mod reconnect;

pub use reconnect::Reconnecting;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// What went wrong with a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a non-zero code.
    #[error("server error {code}: {message}")]
    Server { code: u32, message: String },
    /// The connection closed (with this close code, if the server sent one) before the answer came.
    #[error("connection closed ({0:?})")]
    Closed(Option<u16>),
    #[error("transport: {0}")]
    Transport(String),
}

impl ClientError {
    /// The server's code, if the server answered.
    pub fn code(&self) -> Option<u32> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A response frame.
#[derive(Debug, Clone, Deserialize)]
pub struct Response {
    pub id: Option<u64>,
    pub code: u32,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub data: Option<Value>,
}

/// The `login` fields.
#[derive(Debug, Clone, Serialize)]
pub struct LoginParams {
    pub sdkappid: u32,
    pub user_id: String,
    pub user_sig: String,
    pub platform: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

/// What `login` and `resume` return.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LoginData {
    pub user_id: String,
    pub platform: String,
    pub instance_id: String,
    pub session_token: String,
    pub sig_expires_at: i64,
    pub repeat_login: bool,
    #[serde(default)]
    pub resumed: bool,
}

/// Something the server said unprompted, or the end of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    KickedOffline {
        code: u32,
        reason: String,
        by_platform: Option<String>,
    },
    UserSigExpiring {
        expires_at: i64,
    },
    UserSigExpired {
        code: u32,
    },
    LoggedOut {
        reason: String,
    },
    /// A response with `id: null` (the server could not read a frame).
    Unmatched {
        code: u32,
        message: String,
    },
    /// [`Reconnecting`] resumed the session on a new connection.
    Reconnected,
    /// The connection ended; `code` is the server's close code if it sent one.
    Closed {
        code: Option<u16>,
        reason: String,
    },
    Other(Value),
}

type PendingMap = Arc<Mutex<HashMap<u64, oneshot::Sender<Response>>>>;

/// One WebSocket connection to imlogin.
pub struct Client {
    out: mpsc::UnboundedSender<Message>,
    pending: PendingMap,
    next_id: AtomicU64,
    events: mpsc::UnboundedReceiver<ClientEvent>,
    closed: Arc<Mutex<Option<Option<u16>>>>,
}

impl Client {
    /// Connects to `ws://host:port/v1/ws`.
    pub async fn connect(url: &str) -> Result<Client, ClientError> {
        Self::connect_with(url, None).await
    }

    /// Connects, sending a WebSocket ping every `keepalive` (the heartbeat) if given. `request` is a URL or a
    /// request with headers of its own (e.g. through a proxy).
    pub async fn connect_with(
        request: impl IntoClientRequest + Unpin,
        keepalive: Option<Duration>,
    ) -> Result<Client, ClientError> {
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(Self::over(ws, keepalive))
    }

    /// A client over a WebSocket the caller opened (its own socket, e.g. bound to a source address).
    pub fn from_websocket<S>(ws: WebSocketStream<S>) -> Client
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Self::over(ws, None)
    }

    fn over<S>(ws: WebSocketStream<S>, keepalive: Option<Duration>) -> Client
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        // The reader tells the writer when the connection has ended, so both halves drop and the socket closes.
        let (ended_tx, mut ended) = tokio::sync::oneshot::channel::<()>();
        let (ev_tx, events) = mpsc::unbounded_channel();
        let pending: PendingMap = Arc::default();
        let closed: Arc<Mutex<Option<Option<u16>>>> = Arc::default();

        tokio::spawn(async move {
            let mut tick = keepalive.map(tokio::time::interval);
            loop {
                let msg = tokio::select! {
                    // Every handle dropped: the connection closes (the reader ends at the server's answer).
                    m = out_rx.recv() => m.unwrap_or(Message::Close(None)),
                    _ = async { tick.as_mut().expect("guarded").tick().await }, if tick.is_some() => Message::Ping(Vec::new().into()),
                    _ = &mut ended => break,
                };
                let is_close = matches!(msg, Message::Close(_));
                if sink.send(msg).await.is_err() || is_close {
                    break;
                }
            }
        });

        let (pending2, closed2) = (pending.clone(), closed.clone());
        tokio::spawn(async move {
            let mut end = (None, String::new());
            while let Some(msg) = stream.next().await {
                match msg {
                    Ok(Message::Text(t)) => route(&t, &pending2, &ev_tx),
                    Ok(Message::Close(frame)) => {
                        if let Some(CloseFrame { code, reason }) = frame {
                            end = (Some(u16::from(code)), reason.to_string());
                        }
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let _ = ended_tx.send(());
            *closed2.lock().expect("not poisoned") = Some(end.0);
            // Fail every request still waiting.
            pending2.lock().expect("not poisoned").clear();
            let _ = ev_tx.send(ClientEvent::Closed {
                code: end.0,
                reason: end.1,
            });
        });

        Client {
            out,
            pending,
            next_id: AtomicU64::new(1),
            events,
            closed,
        }
    }

    /// Sends a raw text frame (tests of malformed input).
    pub fn send_raw(&self, text: impl Into<String>) -> Result<(), ClientError> {
        self.out
            .send(Message::Text(text.into().into()))
            .map_err(|_| ClientError::Closed(self.close_code()))
    }

    /// The close code, once the connection has ended.
    pub fn close_code(&self) -> Option<u16> {
        self.closed.lock().expect("not poisoned").flatten()
    }

    /// Sends `op` with `fields` and waits for the response with its id.
    pub async fn request(&self, op: &str, fields: Value) -> Result<Response, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut frame = match fields {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        frame.insert("id".into(), id.into());
        frame.insert("op".into(), op.into());
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("not poisoned").insert(id, tx);
        self.send_raw(Value::Object(frame).to_string())?;
        rx.await.map_err(|_| ClientError::Closed(self.close_code()))
    }

    async fn call(&self, op: &str, fields: Value) -> Result<Value, ClientError> {
        let r = self.request(op, fields).await?;
        if r.code != 0 {
            return Err(ClientError::Server {
                code: r.code,
                message: r.message,
            });
        }
        Ok(r.data.unwrap_or(Value::Null))
    }

    pub async fn login(&self, p: &LoginParams) -> Result<LoginData, ClientError> {
        let data = self
            .call("login", serde_json::to_value(p).expect("serializable"))
            .await?;
        serde_json::from_value(data).map_err(|e| ClientError::Transport(e.to_string()))
    }

    pub async fn resume(&self, session_token: &str) -> Result<LoginData, ClientError> {
        let data = self
            .call("resume", json!({"session_token": session_token}))
            .await?;
        serde_json::from_value(data).map_err(|e| ClientError::Transport(e.to_string()))
    }

    /// Returns the new `sig_expires_at`.
    pub async fn renew_sig(&self, user_sig: &str) -> Result<i64, ClientError> {
        let data = self
            .call("renew_sig", json!({"user_sig": user_sig}))
            .await?;
        Ok(data["sig_expires_at"].as_i64().unwrap_or_default())
    }

    pub async fn logout(&self) -> Result<(), ClientError> {
        self.call("logout", json!({})).await.map(|_| ())
    }

    /// 1 logged in, 2 logging in, 3 logged out.
    pub async fn status(&self) -> Result<u8, ClientError> {
        let data = self.call("get_login_status", json!({})).await?;
        Ok(data["status"].as_u64().unwrap_or_default() as u8)
    }

    pub async fn login_user(&self) -> Result<String, ClientError> {
        let data = self.call("get_login_user", json!({})).await?;
        Ok(data["user_id"].as_str().unwrap_or_default().to_owned())
    }

    /// Returns the server's time in unix ms.
    pub async fn ping(&self) -> Result<i64, ClientError> {
        let data = self.call("ping", json!({})).await?;
        Ok(data["server_time_ms"].as_i64().unwrap_or_default())
    }

    /// The next event; `None` after `Closed` has been returned.
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    /// The next event if one has arrived, without waiting.
    pub fn try_next_event(&mut self) -> Option<ClientEvent> {
        self.events.try_recv().ok()
    }

    /// Closes the connection normally (1000).
    pub fn close(&self) {
        let _ = self.out.send(Message::Close(None));
    }
}

fn route(text: &str, pending: &PendingMap, events: &mpsc::UnboundedSender<ClientEvent>) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return;
    };
    if let Some(name) = v.get("event").and_then(Value::as_str) {
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let n = |k: &str| v[k].as_i64().unwrap_or_default();
        let ev = match name {
            "kicked_offline" => ClientEvent::KickedOffline {
                code: n("code") as u32,
                reason: s("reason"),
                by_platform: v
                    .get("by_platform")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            },
            "user_sig_expiring" => ClientEvent::UserSigExpiring {
                expires_at: n("expires_at"),
            },
            "user_sig_expired" => ClientEvent::UserSigExpired {
                code: n("code") as u32,
            },
            "logged_out" => ClientEvent::LoggedOut {
                reason: s("reason"),
            },
            _ => ClientEvent::Other(v),
        };
        let _ = events.send(ev);
        return;
    }
    let Ok(r) = serde_json::from_value::<Response>(v) else {
        return;
    };
    match r.id {
        Some(id) => {
            if let Some(tx) = pending.lock().expect("not poisoned").remove(&id) {
                let _ = tx.send(r);
            }
        }
        None => {
            let _ = events.send(ClientEvent::Unmatched {
                code: r.code,
                message: r.message,
            });
        }
    }
}
