//! [`Session`]: one model session over its WebSocket, in the neutral terms of [`super::model`].
//!
//! The shell of the model boundary: it owns the WebSocket ([`super::client`]) and the dialect's
//! [`Codec`], and nothing outside `src/realtime/` sees a WebSocket type. Writes are cheap: a
//! caller [`Session::feed`]s every command of one loop turn into the socket's write buffer and
//! [`Session::flush`]es once (one write syscall for all of them).
//!
//! ```text
//! connect ─► (handshake) ─► wait for SessionCreated ─► feed* flush ─► next_event* ─► close
//! GPT-Live: connect ─► (handshake) ─► start: session.start, wait for session.started ─► …
//! ```

use std::collections::VecDeque;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info, warn};

use super::client::{self, RealtimeSocket, RealtimeTarget};
use super::codec::Codec;
use super::model::{Capabilities, ModelCommand, ModelEvent};
use super::protocol::{Dialect, SessionSettings};

/// Errors of a model session.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The WebSocket could not be opened.
    #[error(transparent)]
    Connect(#[from] client::Error),
    /// The server answered the opening with an `error` event instead of creating the session.
    #[error("the server refused the session: {message}")]
    Refused {
        /// The server's message.
        message: String,
    },
    /// The server closed the connection before the session was created.
    #[error("the server closed the session: {detail}")]
    Closed {
        /// Close code and reason.
        detail: String,
    },
    /// The connection failed (I/O, TLS or WebSocket protocol error).
    #[error("the Realtime connection failed: {detail}")]
    Transport {
        /// The transport error.
        detail: String,
    },
}

/// One open model session. See the module docs.
pub struct Session {
    ws: RealtimeSocket,
    codec: Codec,
    events: VecDeque<ModelEvent>,
    session_id: Option<String>,
    closed: bool,
    /// The last read of the WebSocket pended: everything received had been consumed, so the next
    /// read first waits for the TCP socket to become readable (a readiness check), instead of
    /// polling the WebSocket, which zero-fills its read buffer on every poll.
    drained: bool,
}

impl Session {
    /// Opens a session for `model` and waits until the server has created it. No timeout is
    /// applied here: the caller bounds it.
    ///
    /// # Errors
    /// [`Error::Connect`] (URL, TCP, TLS, HTTP upgrade), [`Error::Refused`] (an `error` event
    /// first), [`Error::Closed`] (closed before creation), [`Error::Transport`].
    /// GPT-Live ([`Dialect::Live`]) speaks only after the client's `session.start`: its session
    /// is returned once the WebSocket is open; [`Session::start`] then starts it (or the first
    /// [`ModelCommand::Configure`] does, [`ModelEvent::SessionCreated`] following as an event
    /// and a refused start as [`ModelEvent::SessionClosed`]).
    pub async fn connect(target: &RealtimeTarget, model: &str) -> Result<Session, Error> {
        let ws = target.connect(model).await?;
        let backend = target
            .backend_model
            .as_deref()
            .unwrap_or(super::models::DEFAULT_LIVE_BACKEND_MODEL);
        let mut session = Session {
            ws,
            codec: Codec::with_backend_model(target.dialect, backend),
            events: VecDeque::new(),
            session_id: None,
            closed: false,
            drained: false,
        };
        if target.dialect == Dialect::Live {
            info!("GPT-Live connection open; session.start follows");
            return Ok(session);
        }
        loop {
            match session.next_event().await? {
                ModelEvent::SessionCreated { session_id } => {
                    info!(
                        session_id = session_id.as_deref().unwrap_or("-"),
                        "Realtime session opened"
                    );
                    session.session_id = session_id;
                    return Ok(session);
                }
                ModelEvent::Error(e) => return Err(Error::Refused { message: e.message }),
                ModelEvent::SessionClosed { reason } => {
                    return Err(Error::Closed { detail: reason })
                }
                _ => continue,
            }
        }
    }

    /// GPT-Live: sends `session.start` with `settings` (the call's audio format, instructions,
    /// voice, tools) and waits for `session.started`, so that a refused start fails the call
    /// before it is answered, as a Realtime session that is not created does. Events that arrive
    /// meanwhile stay queued for [`Session::next_event`]; the core's later `Configure` with the
    /// same audio format is then not sent again. Other dialects: nothing to do (their
    /// configuration is a `session.update` the core sends). No timeout here: the caller bounds
    /// it (the rest of the connect timeout).
    ///
    /// # Errors
    /// [`Error::Refused`] (an `error` before `session.started`, e.g. `unknown_parameter` or
    /// `model_not_found`), [`Error::Closed`], [`Error::Transport`].
    pub async fn start(&mut self, settings: &SessionSettings) -> Result<(), Error> {
        if self.codec.live().is_none_or(|l| l.start_sent()) {
            return Ok(());
        }
        self.feed(&ModelCommand::Configure(Box::new(settings.clone())))
            .await?;
        self.flush().await?;
        let mut kept = Vec::new();
        let result = loop {
            match self.next_event().await? {
                ModelEvent::SessionCreated { session_id } => {
                    info!(
                        session_id = session_id.as_deref().unwrap_or("-"),
                        "GPT-Live session started"
                    );
                    self.session_id = session_id;
                    break Ok(());
                }
                ModelEvent::Error(e) => break Err(Error::Refused { message: e.message }),
                ModelEvent::SessionClosed { reason } => {
                    break Err(Error::Closed { detail: reason })
                }
                other => kept.push(other),
            }
        };
        for event in kept.into_iter().rev() {
            self.events.push_front(event);
        }
        result
    }

    /// What the session's dialect can do.
    pub fn capabilities(&self) -> Capabilities {
        self.codec.capabilities()
    }

    /// The server's session id, if it gave one.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// Encodes `cmd` into the socket's write buffer without flushing (see [`Session::flush`]).
    ///
    /// # Errors
    /// [`Error::Transport`] when the connection has failed.
    pub async fn feed(&mut self, cmd: &ModelCommand) -> Result<(), Error> {
        let mut text = String::new();
        if !self.codec.encode(cmd, &mut text) {
            return Ok(());
        }
        self.ws
            .feed(Message::Text(text.into()))
            .await
            .map_err(transport)
    }

    /// Writes everything fed so far.
    ///
    /// # Errors
    /// [`Error::Transport`] when the connection has failed.
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.ws.flush().await.map_err(transport)
    }

    /// The next event from the server. Unreadable frames are logged and skipped. A close frame or
    /// the end of the stream is [`ModelEvent::SessionClosed`] (returned once; later calls pend).
    /// Cancel-safe: an event decoded but not yet returned stays queued.
    ///
    /// # Errors
    /// [`Error::Transport`] when the connection fails.
    pub async fn next_event(&mut self) -> Result<ModelEvent, Error> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(event);
            }
            if self.closed {
                return std::future::pending().await;
            }
            if self.drained {
                // Cancel-safe: nothing is read here. (The poll form takes the socket's one reader
                // waker slot, which is this task's anyway, instead of joining a waiter list.)
                let tcp = self.ws.get_ref().get_ref();
                std::future::poll_fn(|cx| tcp.poll_read_ready(cx))
                    .await
                    .map_err(|e| transport(e.into()))?;
                self.drained = false;
            }
            let drained = &mut self.drained;
            let ws = &mut self.ws;
            let next = std::future::poll_fn(|cx| {
                let poll = ws.poll_next_unpin(cx);
                *drained = poll.is_pending();
                poll
            })
            .await;
            match next {
                Some(Ok(Message::Text(text))) => {
                    if let Err(e) = self.codec.decode(&text, &mut self.events) {
                        warn!(error = %e, "unreadable Realtime event");
                    }
                    self.release_held().await?;
                }
                Some(Ok(Message::Close(frame))) => {
                    self.closed = true;
                    let reason = frame
                        .map(|f| format!("{} {}", f.code, f.reason))
                        .unwrap_or_else(|| "no close frame".to_owned());
                    return Ok(ModelEvent::SessionClosed { reason });
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(transport(e)),
                None => {
                    self.closed = true;
                    return Ok(ModelEvent::SessionClosed {
                        reason: "connection closed".to_owned(),
                    });
                }
            }
        }
    }

    /// GPT-Live: sends what the codec held until `session.started` (greeting, context, tool
    /// outputs), once the session has started.
    async fn release_held(&mut self) -> Result<(), Error> {
        let Some(live) = self.codec.live() else {
            return Ok(());
        };
        let held = live.take_held();
        if held.is_empty() {
            return Ok(());
        }
        if let Some(expires_at) = live.expires_at() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let left = expires_at.saturating_sub(i64::try_from(now).unwrap_or(i64::MAX));
            info!(expires_at, expires_in_s = left, "GPT-Live session started");
        }
        for text in held {
            self.ws
                .feed(Message::Text(text.into()))
                .await
                .map_err(transport)?;
        }
        self.ws.flush().await.map_err(transport)
    }

    /// `session.expires_at` of a GPT-Live session (Unix seconds), once started: when a planned
    /// rollover must have replaced it.
    pub fn expires_at(&mut self) -> Option<i64> {
        self.codec.live().and_then(|l| l.expires_at())
    }

    /// Closes the session. GPT-Live: `session.close`, then waits for `session.closed` (the
    /// final usage) before closing the WebSocket. Then a close frame, and the server's. The caller
    /// bounds it.
    pub async fn close(&mut self) {
        let live_open = !self.closed && self.codec.live().is_some_and(|l| l.start_sent());
        if live_open {
            let _ = self
                .ws
                .send(Message::Text(super::live::session_close().into()))
                .await;
            while let Ok(event) = self.next_event().await {
                if let ModelEvent::SessionClosed { .. } = event {
                    break;
                }
            }
            if let Some(live) = self.codec.live() {
                info!(
                    usage_seconds = live.usage_seconds(),
                    "GPT-Live session closed"
                );
            }
        }
        if let Err(e) = self.ws.close(None).await {
            debug!(error = %e, "closing the Realtime session failed");
        }
    }
}

fn transport(e: tokio_tungstenite::tungstenite::Error) -> Error {
    Error::Transport {
        detail: e.to_string(),
    }
}

/// The `tracing` filter directives that quiet the WebSocket library's own logs (for
/// [`crate::telemetry`]).
pub const LOG_FILTER: &str = "tungstenite=warn,tokio_tungstenite=warn";
