//! A client that keeps its session: when the connection is lost it reconnects and sends `resume` with its
//! session token, with backoff, and stops on a terminal close (kicked 4001, resumed elsewhere 4002, refused
//! frames 1008/1009) or when the session is gone.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, RwLock};

use super::{Client, ClientError, ClientEvent, LoginData, LoginParams};

/// Close codes after which reconnecting would be wrong.
const TERMINAL_CLOSES: [u16; 4] = [4001, 4002, 1008, 1009];
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct Reconnecting {
    current: Arc<RwLock<Arc<Client>>>,
    events: mpsc::UnboundedReceiver<ClientEvent>,
    login: LoginData,
}

impl Reconnecting {
    /// Connects and logs in; from then on keeps the session alive. `keepalive` is the ping interval.
    pub async fn login(
        url: &str,
        params: &LoginParams,
        keepalive: Duration,
    ) -> Result<Reconnecting, ClientError> {
        let mut client = Client::connect_with(url, Some(keepalive)).await?;
        let login = client.login(params).await?;
        let events_in = std::mem::replace(&mut client.events, mpsc::unbounded_channel().1);
        let current = Arc::new(RwLock::new(Arc::new(client)));
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(watch(
            url.to_owned(),
            login.session_token.clone(),
            keepalive,
            current.clone(),
            events_in,
            tx,
        ));
        Ok(Reconnecting {
            current,
            events,
            login,
        })
    }

    /// What the login returned.
    pub fn login_data(&self) -> &LoginData {
        &self.login
    }

    /// The connection in use now (for requests).
    pub async fn client(&self) -> Arc<Client> {
        self.current.read().await.clone()
    }

    /// Events of every connection in turn, with `Reconnected` after each resume. `Closed` is only reported when
    /// the client gives up.
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }
}

async fn watch(
    url: String,
    token: String,
    keepalive: Duration,
    current: Arc<RwLock<Arc<Client>>>,
    mut events_in: mpsc::UnboundedReceiver<ClientEvent>,
    out: mpsc::UnboundedSender<ClientEvent>,
) {
    loop {
        // Forward events until this connection ends.
        let closed = loop {
            match events_in.recv().await {
                Some(ClientEvent::Closed { code, reason }) => break (code, reason),
                Some(ev) => {
                    if out.send(ev).is_err() {
                        return;
                    }
                }
                None => break (None, String::new()),
            }
        };
        if closed.0.is_some_and(|c| TERMINAL_CLOSES.contains(&c)) {
            let _ = out.send(ClientEvent::Closed {
                code: closed.0,
                reason: closed.1,
            });
            return;
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            let Ok(mut client) = Client::connect_with(&url, Some(keepalive)).await else {
                continue;
            };
            match client.resume(&token).await {
                Ok(_) => {
                    events_in = std::mem::replace(&mut client.events, mpsc::unbounded_channel().1);
                    *current.write().await = Arc::new(client);
                    if out.send(ClientEvent::Reconnected).is_err() {
                        return;
                    }
                    break;
                }
                Err(ClientError::Server { code, message }) => {
                    // The session is gone (6026) or was kicked: a new login is the app's decision.
                    let _ = out.send(ClientEvent::Closed {
                        code: None,
                        reason: format!("resume refused: {code} {message}"),
                    });
                    return;
                }
                Err(_) => continue,
            }
        }
    }
}
