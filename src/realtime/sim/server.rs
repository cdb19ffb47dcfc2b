//! The tokio shell of the simulator: accept loop, WebSocket handshake, one task per session,
//! recording.
//!
//! Each connection task owns its WebSocket and its [`SimSession`] by value and follows the drain
//! rule: feed one input (a frame, a timer, shutdown), send every event the core produced, then
//! wait again. There are no channels: the task writes to its own socket, so a slow client only
//! slows its own session (TCP is the bound). Recording files are shared between sessions and
//! written synchronously, one whole line per `write` call, so tests can read them while the
//! simulator runs and a client event is on disk before its effects are sent.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt as _, StreamExt as _};
use rand::Rng as _;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::{
    Close, Dialect, LiveParams, LiveSimSession, Scenario, SessionParams, SimOptions, SimSession,
    ToolOutput,
};

/// The Realtime path served (Azure's `/openai/v1/realtime` is accepted too).
const PATH: &str = "/v1/realtime";
/// The GPT-Live path served (Azure's `/openai/v1/live/sessions` is accepted too).
const LIVE_PATH: &str = crate::realtime::live::LIVE_PATH;
/// Path prefix of Azure OpenAI's v1 surface.
const AZURE_PREFIX: &str = "/openai";
/// Subprotocol selecting the beta dialect (browser-style auth).
const BETA_SUBPROTOCOL: &str = "openai-beta.realtime-v1";
/// A client that has not finished the handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`serve`] waits for sessions to close after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a close handshake may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Largest client message; the real service allows 15 MiB of audio per append (base64).
const MAX_MESSAGE_BYTES: usize = 32 << 20;
/// Length of the random part of session ids.
const ID_TOKEN_LEN: usize = 12;

/// An append-only JSONL file shared by all sessions.
#[derive(Debug)]
struct Recorder {
    file: Mutex<std::fs::File>,
}

impl Recorder {
    fn open(path: &Path) -> std::io::Result<Recorder> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Recorder {
            file: Mutex::new(file),
        })
    }

    /// Writes one line (line breaks inside `text` become spaces) and flushes it.
    fn line(&self, text: &str) {
        let mut line = if text.contains(['\n', '\r']) {
            text.replace(['\n', '\r'], " ")
        } else {
            text.to_string()
        };
        line.push('\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = file.write_all(line.as_bytes()).and_then(|()| file.flush()) {
            tracing::warn!(error = %e, "failed to write recording");
        }
    }
}

/// What every connection task needs.
#[derive(Debug)]
struct Shared {
    scenario: Arc<Scenario>,
    /// When the simulator started (for `[[sessions]] after_s`).
    started: std::time::Instant,
    /// Upgrade requests on a served path so far (numbers the sessions for `[[sessions]]`).
    upgrades: std::sync::atomic::AtomicU64,
    echo: bool,
    record: Option<Recorder>,
    record_server: Option<Recorder>,
}

/// Serves Realtime WebSocket sessions on `listener` until `shutdown` is cancelled, then closes
/// every session (code 1001) and returns.
///
/// # Errors
/// Only setup errors: a recording file that cannot be opened. Per-connection failures are
/// logged and end that connection only.
///
/// # Example
/// ```no_run
/// # use frontdesk::realtime::sim::{serve, SimOptions};
/// # async fn run() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8089").await?;
/// let shutdown = tokio_util::sync::CancellationToken::new();
/// serve(listener, SimOptions::default(), shutdown).await
/// # }
/// ```
pub async fn serve(
    listener: TcpListener,
    opts: SimOptions,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared {
        scenario: Arc::new(opts.scenario.unwrap_or_default()),
        started: now(),
        upgrades: std::sync::atomic::AtomicU64::new(0),
        echo: opts.echo,
        record: opts.record.as_deref().map(Recorder::open).transpose()?,
        record_server: opts
            .record_server
            .as_deref()
            .map(Recorder::open)
            .transpose()?,
    });
    if let Ok(addr) = listener.local_addr() {
        tracing::debug!(%addr, "realtime simulator listening on ws://{addr}{PATH}");
    }
    let tracker = TaskTracker::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tracker.spawn(connection(stream, peer, Arc::clone(&shared), shutdown.child_token()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("simulator sessions still open after the shutdown grace period");
    }
    Ok(())
}

/// What the handshake decided.
#[derive(Debug, Clone)]
struct Handshake {
    dialect: Dialect,
    model: Option<String>,
    /// The GPT-Live endpoint was asked for.
    live: bool,
    /// The session's number: its upgrade request's place among all (1-based; refused ones
    /// count too), for `[[sessions]]` and `[[fault]] session`.
    number: u64,
}

/// Decodes `%XX` and `+` in a query value.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(b) = hex {
                    out.push(b);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The handshake callback: rejects other paths with 404, refuses sessions the scenario's
/// `[[sessions]]` rules refuse (429 or 5xx), and stores what it decided.
struct CheckRequest<'a> {
    shared: &'a Shared,
    decided: &'a mut Option<Handshake>,
    /// How long to hold `session.created` (a `[[sessions]]` rule).
    delay_created: &'a mut Duration,
}

impl Callback for CheckRequest<'_> {
    fn on_request(self, req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
        match check_request(req, resp) {
            Some((resp, handshake)) => {
                let n = 1 + self
                    .shared
                    .upgrades
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let since = now().saturating_duration_since(self.shared.started);
                let (refuse, delay) = self.shared.scenario.session_fate(n, since);
                if let Some(status) = refuse {
                    tracing::info!(session = n, status, "refusing the session (scenario)");
                    return Err(refusal(status));
                }
                *self.delay_created = delay;
                *self.decided = Some(Handshake {
                    number: n,
                    ..handshake
                });
                Ok(resp)
            }
            None => {
                let mut err = ErrorResponse::new(Some(format!(
                    "Not Found: the simulator serves {PATH} and {LIVE_PATH}\n"
                )));
                *err.status_mut() = StatusCode::NOT_FOUND;
                Err(err)
            }
        }
    }
}

/// The HTTP answer refusing a session: 429 with `Retry-After`, or a 5xx, with an OpenAI-style
/// JSON error body.
fn refusal(status: u16) -> ErrorResponse {
    let (kind, message) = if status == 429 {
        ("rate_limit_exceeded", "Rate limit reached (simulated).")
    } else {
        (
            "server_error",
            "The server is temporarily unavailable (simulated).",
        )
    };
    let body = serde_json::json!({"error": {"type": kind, "code": kind, "message": message}});
    let mut err = ErrorResponse::new(Some(body.to_string()));
    *err.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    err.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status == 429 {
        err.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    err
}

/// Checks the upgrade request and picks the dialect; `None` for a path other than [`PATH`] or
/// [`LIVE_PATH`] (each also under Azure's `/openai` prefix). Never looks at `Authorization`.
fn check_request(req: &Request, mut resp: Response) -> Option<(Response, Handshake)> {
    let path = req.uri().path();
    let path = path.strip_prefix(AZURE_PREFIX).unwrap_or(path);
    let live = path == LIVE_PATH;
    if path != PATH && !live {
        return None;
    }
    let model = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("model="))
            .map(percent_decode)
            .filter(|m| !m.is_empty())
    });
    let beta_header = req
        .headers()
        .get_all("openai-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("realtime=v1"))
        });
    let offered: Vec<String> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let beta_protocol = offered.iter().any(|p| p == BETA_SUBPROTOCOL);
    // Answer with `realtime` as the real service does, else any offered protocol that is not
    // a credential.
    let chosen = offered.iter().find(|p| *p == "realtime").or_else(|| {
        offered
            .iter()
            .find(|p| !p.starts_with("openai-insecure-api-key."))
    });
    if let Some(value) = chosen.and_then(|p| HeaderValue::from_str(p).ok()) {
        resp.headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    let dialect = if beta_header || beta_protocol {
        Dialect::Beta
    } else {
        Dialect::Ga
    };
    Some((
        resp,
        Handshake {
            dialect,
            model,
            live,
            number: 0,
        },
    ))
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

fn random_token() -> String {
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(ID_TOKEN_LEN)
        .map(char::from)
        .collect()
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "set_nodelay failed");
    }
    let mut handshake: Option<Handshake> = None;
    let mut delay_created = Duration::ZERO;
    let callback = CheckRequest {
        shared: &shared,
        decided: &mut handshake,
        delay_created: &mut delay_created,
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let accept = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config));
    let ws = tokio::select! {
        () = shutdown.cancelled() => return,
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, accept) => match r {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "websocket handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "websocket handshake timed out");
                return;
            }
        },
    };
    let Some(handshake) = handshake else {
        return;
    };
    if !delay_created.is_zero() {
        // The session starts (and says `session.created`) late; the client's events wait in
        // the socket meanwhile.
        tracing::info!(%peer, delay = ?delay_created, "holding session.created (scenario)");
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay_created) => {}
        }
    }
    let unix_time_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let session_number = handshake.number;
    let session = if handshake.live {
        Core::Live(Box::new(LiveSimSession::new(
            LiveParams {
                unix_time_s,
                id_token: random_token(),
                scenario: Arc::clone(&shared.scenario),
                clock_skew_ppm: 0,
                session_number,
            },
            now(),
        )))
    } else {
        let params = SessionParams {
            dialect: handshake.dialect,
            model: handshake.model,
            unix_time_s,
            id_token: random_token(),
            scenario: Arc::clone(&shared.scenario),
            echo: shared.echo,
            session_number,
        };
        Core::Realtime(Box::new(SimSession::new(params, now())))
    };
    let dialect = match (handshake.live, handshake.dialect) {
        (true, _) => "live",
        (false, Dialect::Ga | Dialect::Live) => "ga",
        (false, Dialect::Beta) => "beta",
    };
    let span = tracing::info_span!("sim_session", id = %session.id(), dialect, %peer);
    run(ws, session, &shared, shutdown).instrument(span).await;
}

/// The session core of one connection: a Realtime (GA/beta) or a GPT-Live session. Both have
/// the same sans-IO verbs (also what the bridge's pair tests drive).
#[derive(Debug)]
pub(crate) enum Core {
    Realtime(Box<SimSession>),
    Live(Box<LiveSimSession>),
}

impl Core {
    pub(crate) fn id(&self) -> String {
        match self {
            Core::Realtime(s) => s.id(),
            Core::Live(s) => s.id(),
        }
    }

    pub(crate) fn poll_event(&mut self) -> Option<String> {
        match self {
            Core::Realtime(s) => s.poll_event(),
            Core::Live(s) => s.poll_event(),
        }
    }

    pub(crate) fn poll_close(&mut self) -> Option<Close> {
        match self {
            Core::Realtime(s) => s.poll_close(),
            Core::Live(s) => s.poll_close(),
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<std::time::Instant> {
        match self {
            Core::Realtime(s) => s.poll_timeout(),
            Core::Live(s) => s.poll_timeout(),
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: std::time::Instant) {
        match self {
            Core::Realtime(s) => s.handle_timeout(now),
            Core::Live(s) => s.handle_timeout(now),
        }
    }

    pub(crate) fn handle_client_text(&mut self, now: std::time::Instant, text: &str) {
        match self {
            Core::Realtime(s) => s.handle_client_text(now, text),
            Core::Live(s) => s.handle_client_text(now, text),
        }
    }

    pub(crate) fn handle_client_binary(&mut self, now: std::time::Instant) {
        match self {
            Core::Realtime(s) => s.handle_client_binary(now),
            Core::Live(s) => s.handle_client_binary(now),
        }
    }

    pub(crate) fn tool_outputs(&self) -> &[ToolOutput] {
        match self {
            Core::Realtime(s) => s.tool_outputs(),
            Core::Live(s) => s.tool_outputs(),
        }
    }
}

/// Sends every queued event; records each before sending.
async fn send_events(
    ws: &mut WebSocketStream<TcpStream>,
    session: &mut Core,
    shared: &Shared,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let mut sent = false;
    while let Some(event) = session.poll_event() {
        if let Some(r) = &shared.record_server {
            r.line(&event);
        }
        ws.feed(Message::text(event)).await?;
        sent = true;
    }
    if sent {
        ws.flush().await?;
    }
    Ok(())
}

/// WebSocket close sent to open sessions at shutdown.
fn shutdown_close() -> Close {
    Close {
        code: 1001,
        reason: "server shutting down".into(),
    }
}

async fn close(ws: &mut WebSocketStream<TcpStream>, c: &Close) {
    let frame = CloseFrame {
        code: CloseCode::from(c.code),
        reason: c.reason.clone().into(),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(Some(frame))).await;
    // Wait for the client's close frame so the close handshake completes.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

async fn run(
    mut ws: WebSocketStream<TcpStream>,
    mut session: Core,
    shared: &Shared,
    shutdown: CancellationToken,
) {
    tracing::info!("session started");
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    loop {
        if let Err(e) = send_events(&mut ws, &mut session, shared).await {
            tracing::debug!(error = %e, "send failed");
            break;
        }
        if let Some(c) = session.poll_close() {
            close(&mut ws, &c).await;
            break;
        }
        let deadline = session.poll_timeout();
        if let Some(d) = deadline {
            if d <= now() {
                session.handle_timeout(now());
                continue;
            }
            sleep.as_mut().reset(tokio::time::Instant::from_std(d));
        }
        tokio::select! {
            () = shutdown.cancelled() => {
                close(&mut ws, &shutdown_close()).await;
                break;
            }
            () = &mut sleep, if deadline.is_some() => session.handle_timeout(now()),
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    if let Some(r) = &shared.record {
                        r.line(text.as_str());
                    }
                    session.handle_client_text(now(), text.as_str());
                }
                Some(Ok(Message::Binary(_))) => session.handle_client_binary(now()),
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "websocket read failed");
                    break;
                }
            },
        }
    }
    session.tool_outputs().iter().for_each(log_tool_output);
    tracing::info!(tool_outputs = session.tool_outputs().len(), "session ended");
}

fn log_tool_output(t: &ToolOutput) {
    tracing::info!(call_id = %t.call_id, name = t.name.as_deref().unwrap_or("?"), bytes = t.output.len(), "tool output");
}

#[cfg(test)]
mod tests;
