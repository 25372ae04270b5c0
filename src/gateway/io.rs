//! What a connection reads and writes, apart from the transport: [`Inbound`] frames in, [`Outbound`] frames
//! out. [`WsIo`] carries them over a real WebSocket; tests drive the connection loop over channels instead.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Bytes;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// A frame from the client. The stream ends after the client closes or the transport fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Text(Utf8Bytes),
    Binary(Bytes),
    /// A WebSocket ping or pong: it only counts as heartbeat.
    Control,
    /// The client closed.
    Close,
    /// A message larger than the limit began to arrive (the rest is not read).
    TooLarge,
}

/// A frame to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    Text(String),
    Close(u16, &'static str),
}

impl Outbound {
    /// Bytes it takes in a queue.
    pub fn len(&self) -> usize {
        match self {
            Outbound::Text(t) => t.len(),
            Outbound::Close(_, r) => 2 + r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A server-side WebSocket as a stream of [`Inbound`] and a sink of [`Outbound`].
pub struct WsIo<S> {
    ws: WebSocketStream<S>,
    /// Sends [`Outbound::Text`] as binary frames (the Web SDK's `/binfo` takes nothing else).
    binary: bool,
    /// The client sent its close frame.
    peer_closed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsIo<S> {
    pub fn new(ws: WebSocketStream<S>) -> Self {
        WsIo {
            ws,
            binary: false,
            peer_closed: false,
        }
    }

    /// Like [`WsIo::new`], but what is sent as text goes out in binary frames.
    pub fn binary(ws: WebSocketStream<S>) -> Self {
        WsIo {
            ws,
            binary: true,
            peer_closed: false,
        }
    }

    /// Ends the connection so that what the server sent last (its close frame) reaches the client: flushes
    /// (for at most `linger`), half-closes, then reads and discards whatever the client still sends until it
    /// closes too, for at most `linger`. Closing with unread input instead makes the kernel answer with a reset,
    /// which can destroy the close frame before the client reads it (the "lingering close" of web servers).
    /// When the client closed first, nothing follows its close frame (RFC 6455 §5.5.1), so the socket is closed
    /// as soon as the answer to it is flushed, as the RFC asks of a server. At most `max` bytes are read (a
    /// client closed for abuse may still be flooding).
    pub async fn close_lingering(&mut self, linger: Duration, max: usize) {
        let deadline = tokio::time::Instant::now() + linger;
        let flushed = tokio::time::timeout_at(deadline, self.ws.flush()).await;
        if !matches!(flushed, Ok(Ok(()))) || self.peer_closed {
            return;
        }
        let raw = self.ws.get_mut();
        if tokio::time::timeout_at(deadline, raw.shutdown())
            .await
            .is_err()
        {
            return;
        }
        // On the heap: a buffer here would make every connection's task this much larger for its whole life.
        let mut scratch = vec![0u8; 4096];
        let mut read = 0;
        let _ = tokio::time::timeout_at(deadline, async {
            while read < max {
                match raw.read(&mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => read += n,
                }
            }
        })
        .await;
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WsIo<S> {
    type Item = Inbound;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        loop {
            let next = match Pin::new(&mut self.ws).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(next) => next,
            };
            return Poll::Ready(Some(match next {
                None => return Poll::Ready(None),
                Some(Ok(Message::Text(t))) => Inbound::Text(t),
                Some(Ok(Message::Binary(b))) => Inbound::Binary(b),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => Inbound::Control,
                Some(Ok(Message::Close(_))) => {
                    self.peer_closed = true;
                    Inbound::Close
                }
                Some(Ok(Message::Frame(_))) => continue,
                Some(Err(WsError::Capacity(_))) => Inbound::TooLarge,
                Some(Err(_)) => return Poll::Ready(None),
            }));
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Outbound> for WsIo<S> {
    type Error = WsError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.ws).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Outbound) -> Result<(), WsError> {
        let message = match item {
            Outbound::Text(t) if self.binary => Message::Binary(t.into()),
            Outbound::Text(t) => Message::Text(t.into()),
            Outbound::Close(code, reason) => Message::Close(Some(CloseFrame {
                code: code.into(),
                reason: reason.into(),
            })),
        };
        Pin::new(&mut self.ws).start_send(message)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.ws).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.ws).poll_close(cx)
    }
}
