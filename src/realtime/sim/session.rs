//! The sans-IO core of one simulated Realtime session.
//!
//! [`SimSession`] owns everything a real session has: the effective configuration, the input
//! audio buffer and its voice-activity detector, the conversation items, and the one response
//! that may be in progress. It is driven with the usual verbs:
//!
//! * [`SimSession::handle_client_text`] — one WebSocket text frame from the client;
//! * [`SimSession::handle_timeout`] — time has reached [`SimSession::poll_timeout`];
//! * [`SimSession::poll_event`] — the next server event (JSON text) to send;
//! * [`SimSession::poll_close`] — the session wants the socket closed (session cap reached).
//!
//! **Drain rule:** after any `handle_*` call, drain `poll_event` until it returns `None` (and
//! check `poll_close`) before awaiting I/O again.
//!
//! Responses are delivered on a schedule: `response.created` and the output item/part headers
//! go out at once, the first audio delta after the scenario's `first_audio_delay_ms`, then one
//! delta per `delta_duration / realtime_factor` — faster than real time, like the real service.
//! Responses come from the [`Scenario`]: the first response without new caller audio speaks
//! the greeting, each committed caller turn gets the next scenario turn, and a
//! `function_call_output` for the call the simulator made gets that turn's `say`.
//!
//! The Realtime core never sees [`Dialect::Live`] (the server routes `/v1/live/sessions` to
//! [`super::LiveSimSession`]); where a match needs the arm, Live takes GA's.
//!
//! Invariants: no I/O and no clock reads (time comes in as `now`, wall time as
//! [`SessionParams::unix_time_s`]); time going backwards is ignored; nothing a client sends
//! can panic — bad events produce `error` events and the session stays open.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::audio::AudioFormat;
use super::config::{
    append_audio, as_int, only_keys, req_str, ClientError, Dialect, Effective, ResponseSettings,
    SessionConfig,
};
use super::scenario::{
    server_error_fields, FaultAction, FaultSchedule, Scenario, Speech, TemplateCtx,
    FAULT_CLOSE_CODE,
};
use super::vad::{Framer, Vad, VadEvent};

/// Shortest buffer `input_audio_buffer.commit` accepts.
const MIN_COMMIT_MS: u64 = 100;
/// Most caller audio kept for echo replies; older audio is dropped (the length is still counted).
const MAX_RETAINED_MS: u64 = 5 * 60 * 1000;
/// Audio kept before a turn while the detector is idle, beyond the prefix padding.
const IDLE_RETAIN_EXTRA_MS: u64 = 1000;
/// Session caps of the real service.
const GA_MAX_SESSION: Duration = Duration::from_secs(60 * 60);
const BETA_MAX_SESSION: Duration = Duration::from_secs(30 * 60);
/// Default models reported when the client did not name one.
const GA_DEFAULT_MODEL: &str = crate::realtime::models::DEFAULT_REALTIME_MODEL;
const BETA_DEFAULT_MODEL: &str = "gpt-4o-realtime-preview-2024-12-17";
/// WebSocket close code "going away", used at the session cap.
const CLOSE_GOING_AWAY: u16 = 1001;
/// Plausible account limits reported in `rate_limits.updated`.
const RATE_LIMIT_REQUESTS: u64 = 5_000;
const RATE_LIMIT_TOKENS: u64 = 40_000;

/// Client event types each dialect accepts.
const GA_CLIENT_EVENTS: &[&str] = &[
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "output_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.retrieve",
    "conversation.item.truncate",
    "conversation.item.delete",
    "response.create",
    "response.cancel",
];
const BETA_CLIENT_EVENTS: &[&str] = &[
    "session.update",
    "transcription_session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "output_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.retrieve",
    "conversation.item.truncate",
    "conversation.item.delete",
    "response.create",
    "response.cancel",
];

/// How a session starts.
#[derive(Debug, Clone)]
pub struct SessionParams {
    /// Wire dialect, chosen from the handshake headers.
    pub dialect: Dialect,
    /// Model from the `?model=` query, if any.
    pub model: Option<String>,
    /// Wall-clock time at creation (Unix seconds), for `expires_at`.
    pub unix_time_s: u64,
    /// Random token making this session's ids unique (`sess_<token>`, `item_<token>…`).
    pub id_token: String,
    /// What to say.
    pub scenario: Arc<Scenario>,
    /// Reply with the caller's own audio (see [`super::SimOptions::echo`]).
    pub echo: bool,
    /// Which session of the simulator this is, numbered from 1 in upgrade order (picks the
    /// scenario's `[[fault]]` entries that apply).
    pub session_number: u64,
}

/// A request to close the WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// WebSocket close code.
    pub code: u16,
    /// Close reason.
    pub reason: String,
}

/// A `function_call_output` the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    /// The call it answers.
    pub call_id: String,
    /// Name of that call, if the simulator made it.
    pub name: Option<String>,
    /// The output string, verbatim.
    pub output: String,
}

/// What the next response says.
#[derive(Debug, Clone)]
enum Plan {
    /// No new caller input: the greeting.
    Greeting,
    /// `idle_timeout_ms` fired.
    Idle,
    /// Answer caller turn `index` (0-based).
    Turn {
        index: usize,
        heard_ms: u64,
        echo: Option<(AudioFormat, Vec<u8>)>,
    },
    /// The tool output for turn `index` arrived.
    AfterCall { index: usize, output: String },
}

/// One output item a response will produce.
#[derive(Debug)]
enum Output {
    Message {
        text: String,
        audio: Vec<u8>,
        marks: Vec<(usize, String)>,
    },
    Call {
        name: String,
        arguments: String,
    },
}

/// The output item being streamed.
#[derive(Debug)]
enum Streaming {
    Message {
        item_id: String,
        output_index: usize,
        audio: Vec<u8>,
        sent: usize,
        marks: Vec<(usize, String)>,
        next_mark: usize,
        transcript: String,
    },
    Call {
        item_id: String,
        output_index: usize,
        call_id: String,
        name: String,
        arguments: String,
        sent: usize,
    },
}

/// The response in progress.
#[derive(Debug)]
struct Active {
    id: String,
    settings: ResponseSettings,
    plan: Plan,
    queue: VecDeque<Output>,
    current: Option<Streaming>,
    finished: Vec<Value>,
    next_output_index: usize,
    next_at: Instant,
    first_output: bool,
    first_audio_at: Option<Instant>,
    /// Stopped early by `max_output_tokens`.
    incomplete: bool,
    input_text_tokens: u64,
    input_audio_tokens: u64,
    audio_ms_out: u64,
    text_chars_out: usize,
}

/// A conversation item.
#[derive(Debug, Clone)]
struct Item {
    id: String,
    status: &'static str,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    /// Committed from the input buffer.
    UserAudio {
        ms: u64,
        transcript: Option<String>,
    },
    /// Created by the client (`role` user, system or assistant text).
    Message {
        role: String,
        content: Value,
    },
    /// Produced by the simulator; `transcript` is `None` after truncation.
    Assistant {
        text_only: bool,
        transcript: Option<String>,
        audio_bytes: usize,
        bytes_per_ms: usize,
    },
    FunctionCall {
        name: String,
        call_id: String,
        arguments: String,
    },
    FunctionCallOutput {
        call_id: String,
        output: String,
    },
}

/// One simulated Realtime session. See the module docs.
#[derive(Debug)]
pub struct SimSession {
    dialect: Dialect,
    token: String,
    counter: u64,
    config: SessionConfig,
    /// `config.effective()`, refreshed on every `session.update`.
    eff: Effective,
    scenario: Arc<Scenario>,
    echo: bool,
    out: VecDeque<String>,
    close: Option<Close>,
    closed: bool,
    now: Instant,
    expires: Instant,
    max_session: Duration,
    // Input audio.
    vad: Vad,
    input_format: AudioFormat,
    /// Clock (ms) at which the current input format started.
    stream_base_ms: u64,
    /// Bytes appended since then.
    stream_bytes: u64,
    /// Bytes not yet fed to the detector (less than one 10 ms frame).
    framer: Framer,
    /// Retained buffer audio and the clock of its first byte.
    buffer: Vec<u8>,
    buffer_start_ms: u64,
    /// Clock where the logical buffer (since the last commit/clear) starts.
    buffer_logical_start_ms: u64,
    /// The user item id announced by `speech_started`.
    speech_item: Option<String>,
    speech_start_ms: u64,
    // Conversation and responses.
    items: Vec<Item>,
    active: Option<Active>,
    pending: Option<Plan>,
    next_turn: usize,
    awaiting_call: Option<(String, usize)>,
    idle_deadline: Option<Instant>,
    idle_armed_ms: u64,
    tool_outputs: Vec<ToolOutput>,
    last_input_tokens: u64,
    responses_created: u64,
    assistant_audio_present: bool,
    /// The scenario's faults for this session not fired yet, and when it was created.
    faults: FaultSchedule,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn ga_format_json(f: AudioFormat) -> Value {
    match f {
        AudioFormat::Pcmu => json!({"type": "audio/pcmu"}),
        AudioFormat::Pcma => json!({"type": "audio/pcma"}),
        AudioFormat::Pcm16 => json!({"type": "audio/pcm", "rate": 24_000}),
    }
}

/// The largest char boundary of `s` not above `at`.
fn floor_char_boundary(s: &str, mut at: usize) -> usize {
    at = at.min(s.len());
    while at > 0 && !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Refuses a top-level key of a client event not in `allowed` (`unknown_parameter`).
fn allow_keys(obj: &Map<String, Value>, allowed: &[&str]) -> Result<(), ClientError> {
    only_keys(obj, allowed, "")
}

fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, ClientError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ClientError::invalid_type(path, "a string", other)),
    }
}

fn req_int(obj: &Map<String, Value>, key: &str) -> Result<i64, ClientError> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(ClientError::missing(key)),
        Some(v) => as_int(v).ok_or_else(|| ClientError::invalid_type(key, "an integer", v)),
    }
}

fn item_not_found(id: &str, param: &str) -> ClientError {
    ClientError::new(
        Some("item_not_found"),
        format!("Item with item_id '{id}' not found."),
        Some(param),
    )
}

impl SimSession {
    /// Starts a session at `now`; `session.created` is queued immediately.
    pub fn new(params: SessionParams, now: Instant) -> SimSession {
        let max_session = params.scenario.max_session.unwrap_or(match params.dialect {
            Dialect::Ga | Dialect::Live => GA_MAX_SESSION,
            Dialect::Beta => BETA_MAX_SESSION,
        });
        let model = params.model.clone().unwrap_or_else(|| {
            match params.dialect {
                Dialect::Ga | Dialect::Live => GA_DEFAULT_MODEL,
                Dialect::Beta => BETA_DEFAULT_MODEL,
            }
            .to_string()
        });
        let config = SessionConfig::new(
            params.dialect,
            &format!("sess_{}", params.id_token),
            &model,
            params.unix_time_s + max_session.as_secs(),
        );
        let eff = config.effective();
        let faults = params.scenario.faults_for(params.session_number, now);
        let mut s = SimSession {
            dialect: params.dialect,
            token: params.id_token,
            counter: 0,
            scenario: params.scenario,
            echo: params.echo,
            out: VecDeque::new(),
            close: None,
            closed: false,
            now,
            expires: now + max_session,
            max_session,
            vad: Vad::new(eff.turn_detection.map(|t| t.vad)),
            input_format: eff.input,
            stream_base_ms: 0,
            stream_bytes: 0,
            framer: Framer::default(),
            buffer: Vec::new(),
            buffer_start_ms: 0,
            buffer_logical_start_ms: 0,
            speech_item: None,
            speech_start_ms: 0,
            items: Vec::new(),
            active: None,
            pending: None,
            next_turn: 0,
            awaiting_call: None,
            idle_deadline: None,
            idle_armed_ms: 0,
            tool_outputs: Vec::new(),
            last_input_tokens: 0,
            responses_created: 0,
            assistant_audio_present: false,
            faults,
            config,
            eff,
        };
        let session = s.config.value().clone();
        s.emit("session.created", json!({ "session": session }));
        s
    }

    /// The session id (`sess_…`).
    pub fn id(&self) -> String {
        format!("sess_{}", self.token)
    }

    /// Every `function_call_output` received so far, in order.
    pub fn tool_outputs(&self) -> &[ToolOutput] {
        &self.tool_outputs
    }

    /// The next server event to send, as JSON text.
    pub fn poll_event(&mut self) -> Option<String> {
        self.out.pop_front()
    }

    /// Set once the session wants the socket closed; drain events first.
    pub fn poll_close(&mut self) -> Option<Close> {
        self.close.take()
    }

    /// When [`SimSession::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        [
            Some(self.expires),
            self.active.as_ref().map(|a| a.next_at),
            self.idle_deadline,
            self.faults.next_at(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// A scenario fault fired: closes the session (a `server_error` first).
    fn fire_fault(&mut self, action: FaultAction) {
        if action == FaultAction::ServerError {
            self.emit("error", server_error_fields());
        }
        self.active = None;
        self.closed = true;
        self.close = Some(Close {
            code: FAULT_CLOSE_CODE,
            reason: "simulated failure".into(),
        });
    }

    /// Advances time: due audio deltas, the idle timeout and the session cap.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
    }

    /// A binary frame from the client (the API only uses text frames).
    pub fn handle_client_binary(&mut self, now: Instant) {
        self.tick(now);
        if !self.closed {
            self.error(
                None,
                ClientError::new(
                    Some("invalid_value"),
                    "Binary frames are not supported; send JSON events as text frames.".into(),
                    None,
                ),
            );
        }
    }

    /// One text frame from the client.
    pub fn handle_client_text(&mut self, now: Instant, text: &str) {
        self.tick(now);
        if self.closed {
            return;
        }
        let now = self.now;
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                let err =
                    ClientError::new(Some("invalid_json"), format!("Invalid JSON: {e}."), None);
                self.error(None, err);
                return;
            }
        };
        let Some(obj) = v.as_object() else {
            self.error(None, ClientError::invalid_type("event", "an object", &v));
            return;
        };
        let event_id = match obj.get("event_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.error(
                    None,
                    ClientError::invalid_type("event_id", "a string", other),
                );
                return;
            }
        };
        let result = match obj.get("type") {
            None | Some(Value::Null) => Err(ClientError::missing("type")),
            Some(Value::String(t)) => self.dispatch(now, t, obj),
            Some(other) => Err(ClientError::invalid_type("type", "a string", other)),
        };
        if let Err(e) = result {
            self.error(event_id, e);
        }
    }

    fn dispatch(
        &mut self,
        now: Instant,
        ty: &str,
        obj: &Map<String, Value>,
    ) -> Result<(), ClientError> {
        let supported = match self.dialect {
            Dialect::Ga | Dialect::Live => GA_CLIENT_EVENTS,
            Dialect::Beta => BETA_CLIENT_EVENTS,
        };
        if !supported.contains(&ty) {
            return Err(ClientError::invalid_value("type", ty, supported));
        }
        tracing::debug!(event = ty, "client event");
        match ty {
            "session.update" => self.on_session_update(obj),
            "input_audio_buffer.append" => self.on_append(now, obj),
            "input_audio_buffer.commit" => self.on_commit(obj),
            "input_audio_buffer.clear" => self.on_clear(obj),
            "conversation.item.create" => self.on_item_create(obj),
            "conversation.item.retrieve" => self.on_item_retrieve(obj),
            "conversation.item.truncate" => self.on_item_truncate(obj),
            "conversation.item.delete" => self.on_item_delete(obj),
            "response.create" => self.on_response_create(now, obj),
            "response.cancel" => self.on_response_cancel(obj),
            "output_audio_buffer.clear" => Err(ClientError::new(
                None,
                "output_audio_buffer.clear is only supported for WebRTC and SIP connections; \
                 a WebSocket client owns playback."
                    .into(),
                Some("type"),
            )),
            _ => Err(ClientError::new(
                None,
                format!("'{ty}' is not supported by the simulator (transcription sessions are not emulated)."),
                Some("type"),
            )),
        }
    }

    // ----- time -----

    fn tick(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
        if self.closed {
            return;
        }
        let now = self.now;
        if now >= self.expires {
            self.expire();
            return;
        }
        if let Some(action) = self.faults.take_due(now) {
            self.fire_fault(action);
            return;
        }
        self.advance(now);
        if self.idle_deadline.is_some_and(|d| d <= now) {
            self.idle_deadline = None;
            self.idle_fire(now);
            self.advance(now);
        }
    }

    fn expire(&mut self) {
        let secs = self.max_session.as_secs();
        let reason = if secs.is_multiple_of(60) {
            format!(
                "Your session hit the maximum duration of {} minutes.",
                secs / 60
            )
        } else {
            format!("Your session hit the maximum duration of {secs} seconds.")
        };
        self.error(
            None,
            ClientError::new(Some("session_expired"), reason.clone(), None),
        );
        self.active = None;
        self.closed = true;
        self.close = Some(Close {
            code: CLOSE_GOING_AWAY,
            reason,
        });
    }

    // ----- output helpers -----

    fn next_id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}_{}{:06}", self.token, self.counter)
    }

    fn emit(&mut self, ty: &str, mut fields: Value) {
        let event_id = self.next_id("event");
        if let Value::Object(m) = &mut fields {
            m.insert("type".into(), Value::String(ty.into()));
            m.insert("event_id".into(), Value::String(event_id));
        }
        self.out.push_back(fields.to_string());
    }

    fn error(&mut self, client_event_id: Option<String>, e: ClientError) {
        tracing::info!(code = ?e.code, message = %e.message, "client error");
        self.emit(
            "error",
            json!({"error": {
                "type": "invalid_request_error",
                "code": e.code,
                "message": e.message,
                "param": e.param,
                "event_id": client_event_id,
            }}),
        );
    }

    fn name(&self, ga: &'static str, beta: &'static str) -> &'static str {
        match self.dialect {
            Dialect::Ga | Dialect::Live => ga,
            Dialect::Beta => beta,
        }
    }

    /// `conversation.item.added` + `.done` (GA) or `conversation.item.created` (beta) for a
    /// complete item.
    fn announce_complete_item(&mut self, index: usize) {
        let previous = self.previous_id(index);
        let item = self.item_json(index);
        match self.dialect {
            Dialect::Ga | Dialect::Live => {
                self.emit(
                    "conversation.item.added",
                    json!({"previous_item_id": previous, "item": item}),
                );
                self.emit(
                    "conversation.item.done",
                    json!({"previous_item_id": previous, "item": item}),
                );
            }
            Dialect::Beta => {
                self.emit(
                    "conversation.item.created",
                    json!({"previous_item_id": previous, "item": item}),
                );
            }
        }
    }

    fn previous_id(&self, index: usize) -> Value {
        index
            .checked_sub(1)
            .and_then(|i| self.items.get(i))
            .map_or(Value::Null, |i| Value::String(i.id.clone()))
    }

    fn index_of(&self, id: &str) -> Option<usize> {
        self.items.iter().position(|i| i.id == id)
    }

    fn item_json(&self, index: usize) -> Value {
        let Some(item) = self.items.get(index) else {
            return Value::Null;
        };
        let ga = self.dialect == Dialect::Ga;
        let mut v = match &item.kind {
            Kind::UserAudio { transcript, .. } => json!({
                "type": "message", "role": "user",
                "content": [{"type": "input_audio", "transcript": transcript}],
            }),
            Kind::Message { role, content } => {
                json!({"type": "message", "role": role, "content": content})
            }
            Kind::Assistant {
                text_only: true,
                transcript,
                ..
            } => json!({
                "type": "message", "role": "assistant",
                "content": [{"type": if ga { "output_text" } else { "text" }, "text": transcript}],
            }),
            Kind::Assistant { transcript, .. } => json!({
                "type": "message", "role": "assistant",
                "content": [{"type": if ga { "output_audio" } else { "audio" }, "transcript": transcript}],
            }),
            Kind::FunctionCall {
                name,
                call_id,
                arguments,
            } => json!({
                "type": "function_call", "name": name, "call_id": call_id, "arguments": arguments,
            }),
            Kind::FunctionCallOutput { call_id, output } => json!({
                "type": "function_call_output", "call_id": call_id, "output": output,
            }),
        };
        if let Value::Object(m) = &mut v {
            m.insert("id".into(), Value::String(item.id.clone()));
            m.insert("object".into(), Value::String("realtime.item".into()));
            m.insert("status".into(), Value::String(item.status.into()));
        }
        v
    }

    // ----- session.update -----

    fn on_session_update(&mut self, obj: &Map<String, Value>) -> Result<(), ClientError> {
        allow_keys(obj, &["type", "event_id", "session"])?;
        let session = obj
            .get("session")
            .filter(|s| !s.is_null())
            .ok_or_else(|| ClientError::missing("session"))?;
        self.config.update(session, self.assistant_audio_present)?;
        let eff = self.config.effective();
        self.eff = eff.clone();
        if eff.input != self.input_format {
            // New byte layout: restart the byte count on the detector's clock (a partial
            // frame in the old format is dropped).
            self.stream_base_ms = self.vad.clock_ms();
            self.stream_bytes = 0;
            self.framer.clear();
            self.buffer.clear();
            self.buffer_start_ms = self.stream_base_ms;
            self.input_format = eff.input;
        }
        self.vad.set_params(eff.turn_detection.map(|t| t.vad));
        if eff.turn_detection.is_none() {
            self.speech_item = None;
        }
        if eff.turn_detection.and_then(|t| t.idle_timeout_ms).is_none() {
            self.idle_deadline = None;
        }
        let session = self.config.value().clone();
        self.emit("session.updated", json!({ "session": session }));
        Ok(())
    }

    // ----- input audio -----

    /// Clock of all audio appended in the session, in ms.
    fn clock_ms(&self) -> u64 {
        self.stream_base_ms + self.stream_bytes / self.input_format.bytes_per_ms() as u64
    }

    fn on_append(&mut self, now: Instant, obj: &Map<String, Value>) -> Result<(), ClientError> {
        let bytes = append_audio(obj)?;
        self.stream_bytes += bytes.len() as u64;
        self.buffer.extend_from_slice(&bytes);
        for rms in self.framer.push(self.input_format, &bytes) {
            if let Some(ev) = self.vad.push_frame(rms) {
                self.on_vad(now, ev);
            }
        }
        self.trim_buffer();
        Ok(())
    }

    /// Drops retained audio nobody can need any more (the logical length is kept).
    fn trim_buffer(&mut self) {
        let bpm = self.input_format.bytes_per_ms();
        let keep_ms = match self.eff.turn_detection {
            Some(td) if !self.vad.in_speech() => td.vad.prefix_padding_ms + IDLE_RETAIN_EXTRA_MS,
            _ => MAX_RETAINED_MS,
        };
        let retained_ms = (self.buffer.len() / bpm) as u64;
        if retained_ms > keep_ms + IDLE_RETAIN_EXTRA_MS {
            let drop_ms = retained_ms - keep_ms;
            let drop = (drop_ms as usize * bpm).min(self.buffer.len());
            self.buffer.drain(..drop);
            self.buffer_start_ms += drop_ms;
        }
    }

    /// Retained buffer audio between two clock positions.
    fn buffer_slice(&self, start_ms: u64, end_ms: u64) -> Vec<u8> {
        let bpm = self.input_format.bytes_per_ms();
        let from = (start_ms.saturating_sub(self.buffer_start_ms) as usize).saturating_mul(bpm);
        let to = (end_ms.saturating_sub(self.buffer_start_ms) as usize).saturating_mul(bpm);
        let to = to.min(self.buffer.len());
        self.buffer
            .get(from.min(to)..to)
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    }

    /// Forgets the buffer up to `end_ms`.
    fn consume_buffer(&mut self, end_ms: u64) {
        let bpm = self.input_format.bytes_per_ms();
        let n = (end_ms.saturating_sub(self.buffer_start_ms) as usize).saturating_mul(bpm);
        let n = n.min(self.buffer.len());
        self.buffer.drain(..n);
        self.buffer_start_ms = self.buffer_start_ms.max(end_ms);
        self.buffer_logical_start_ms = end_ms;
    }

    fn on_vad(&mut self, now: Instant, ev: VadEvent) {
        let Some(td) = self.eff.turn_detection else {
            return;
        };
        match ev {
            VadEvent::SpeechStarted { audio_start_ms } => {
                let item_id = self.next_id("item");
                self.speech_item = Some(item_id.clone());
                self.speech_start_ms = audio_start_ms;
                self.idle_deadline = None;
                self.emit(
                    "input_audio_buffer.speech_started",
                    json!({"audio_start_ms": audio_start_ms, "item_id": item_id}),
                );
                if td.interrupt_response {
                    if let Some(a) = self.active.take() {
                        self.finish_cancelled(a, "turn_detected");
                    }
                }
            }
            VadEvent::SpeechStopped { audio_end_ms } => {
                let item_id = self
                    .speech_item
                    .take()
                    .unwrap_or_else(|| self.next_id("item"));
                self.emit(
                    "input_audio_buffer.speech_stopped",
                    json!({"audio_end_ms": audio_end_ms, "item_id": item_id}),
                );
                let start = self.speech_start_ms;
                let audio = self.buffer_slice(start, audio_end_ms);
                self.consume_buffer(audio_end_ms);
                self.commit_user_audio(item_id, audio, audio_end_ms.saturating_sub(start));
                if td.create_response {
                    if self.active.is_some() {
                        tracing::info!(
                            "caller turn ended while a response is active; not responding"
                        );
                    } else {
                        let settings = ResponseSettings::from_session(&self.config);
                        self.start_response(now, settings);
                    }
                }
            }
        }
    }

    /// `committed`, the user item, and the caller transcript if transcription is on.
    fn commit_user_audio(&mut self, item_id: String, audio: Vec<u8>, heard_ms: u64) {
        let previous = self.previous_id(self.items.len());
        self.emit(
            "input_audio_buffer.committed",
            json!({"item_id": item_id, "previous_item_id": previous}),
        );
        let turn = self.scenario.turn(self.next_turn);
        let transcript = turn.heard.clone().filter(|_| self.eff.transcription);
        self.items.push(Item {
            id: item_id.clone(),
            status: "completed",
            kind: Kind::UserAudio {
                ms: heard_ms,
                transcript: transcript.clone(),
            },
        });
        self.announce_complete_item(self.items.len() - 1);
        if let Some(t) = transcript {
            self.emit(
                "conversation.item.input_audio_transcription.completed",
                json!({"item_id": item_id, "content_index": 0, "transcript": t,
                       "usage": {"type": "duration", "seconds": heard_ms as f64 / 1000.0}}),
            );
        }
        let echo = self.echo.then_some((self.input_format, audio));
        self.pending = Some(Plan::Turn {
            index: self.next_turn,
            heard_ms,
            echo,
        });
        self.next_turn += 1;
    }

    fn on_commit(&mut self, obj: &Map<String, Value>) -> Result<(), ClientError> {
        allow_keys(obj, &["type", "event_id"])?;
        let end = self.clock_ms();
        let have = end.saturating_sub(self.buffer_logical_start_ms);
        if have < MIN_COMMIT_MS {
            return Err(ClientError::new(
                Some("input_audio_buffer_commit_empty"),
                format!(
                    "Error committing input audio buffer: buffer too small. Expected at least {MIN_COMMIT_MS}ms of audio, but buffer only has {have}ms of audio."
                ),
                None,
            ));
        }
        let item_id = self
            .speech_item
            .take()
            .unwrap_or_else(|| self.next_id("item"));
        self.vad.reset();
        let audio = self.buffer_slice(self.buffer_logical_start_ms, end);
        self.consume_buffer(end);
        self.commit_user_audio(item_id, audio, have);
        Ok(())
    }

    fn on_clear(&mut self, obj: &Map<String, Value>) -> Result<(), ClientError> {
        allow_keys(obj, &["type", "event_id"])?;
        let end = self.clock_ms();
        self.consume_buffer(end);
        self.speech_item = None;
        self.vad.reset();
        self.emit("input_audio_buffer.cleared", json!({}));
        Ok(())
    }

    // ----- conversation items -----

    fn on_item_create(&mut self, obj: &Map<String, Value>) -> Result<(), ClientError> {
        allow_keys(obj, &["type", "event_id", "item", "previous_item_id"])?;
        let item = match obj.get("item") {
            None | Some(Value::Null) => return Err(ClientError::missing("item")),
            Some(Value::Object(m)) => m,
            Some(other) => return Err(ClientError::invalid_type("item", "an object", other)),
        };
        let position = match opt_str(obj, "previous_item_id", "previous_item_id")? {
            None => self.items.len(),
            Some("root") => 0,
            Some(prev) => self
                .index_of(prev)
                .map(|i| i + 1)
                .ok_or_else(|| item_not_found(prev, "previous_item_id"))?,
        };
        if let Some(k) = item.keys().find(|k| {
            ![
                "id",
                "type",
                "object",
                "status",
                "role",
                "content",
                "name",
                "arguments",
                "call_id",
                "output",
            ]
            .contains(&k.as_str())
        }) {
            return Err(ClientError::unknown_parameter(&format!("item.{k}")));
        }
        let id = match opt_str(item, "id", "item.id")? {
            Some(id) if self.index_of(id).is_some() => {
                return Err(ClientError::new(
                    Some("invalid_value"),
                    format!("Item with id '{id}' already exists."),
                    Some("item.id"),
                ))
            }
            Some(id) => id.to_string(),
            None => self.next_id("item"),
        };
        let kind = match req_str(item, "type", "item.type")? {
            "message" => self.client_message(item)?,
            "function_call" => Kind::FunctionCall {
                name: req_str(item, "name", "item.name")?.to_string(),
                arguments: req_str(item, "arguments", "item.arguments")?.to_string(),
                call_id: match opt_str(item, "call_id", "item.call_id")? {
                    Some(c) => c.to_string(),
                    None => self.next_id("call"),
                },
            },
            "function_call_output" => Kind::FunctionCallOutput {
                call_id: req_str(item, "call_id", "item.call_id")?.to_string(),
                output: req_str(item, "output", "item.output")?.to_string(),
            },
            other => {
                return Err(ClientError::invalid_value(
                    "item.type",
                    other,
                    &["message", "function_call", "function_call_output"],
                ))
            }
        };
        if let Kind::FunctionCallOutput { call_id, output } = &kind {
            self.on_tool_output(call_id, output);
        }
        self.items.insert(
            position,
            Item {
                id,
                status: "completed",
                kind,
            },
        );
        self.announce_complete_item(position);
        Ok(())
    }

    fn client_message(&self, item: &Map<String, Value>) -> Result<Kind, ClientError> {
        let ga = self.dialect == Dialect::Ga;
        let role = req_str(item, "role", "item.role")?;
        let allowed: &[&str] = match (role, ga) {
            ("user", true) => &["input_text", "input_audio", "input_image"],
            ("user", false) => &["input_text", "input_audio", "item_reference"],
            ("system", _) => &["input_text"],
            ("assistant", true) => &["output_text"],
            ("assistant", false) => &["text"],
            (other, _) => {
                return Err(ClientError::invalid_value(
                    "item.role",
                    other,
                    &["user", "assistant", "system"],
                ))
            }
        };
        let content = match item.get("content") {
            None | Some(Value::Null) => return Err(ClientError::missing("item.content")),
            Some(Value::Array(parts)) => parts,
            Some(other) => {
                return Err(ClientError::invalid_type("item.content", "an array", other))
            }
        };
        for (i, part) in content.iter().enumerate() {
            let path = format!("item.content[{i}].type");
            let Some(p) = part.as_object() else {
                return Err(ClientError::invalid_type(
                    &format!("item.content[{i}]"),
                    "an object",
                    part,
                ));
            };
            let ty = req_str(p, "type", &path)?;
            if !allowed.contains(&ty) {
                return Err(ClientError::invalid_value(&path, ty, allowed));
            }
        }
        Ok(Kind::Message {
            role: role.to_string(),
            content: Value::Array(content.clone()),
        })
    }

    fn on_tool_output(&mut self, call_id: &str, output: &str) {
        let name = self.items.iter().find_map(|i| match &i.kind {
            Kind::FunctionCall {
                name, call_id: c, ..
            } if c == call_id => Some(name.clone()),
            _ => None,
        });
        tracing::info!(
            call_id,
            name = name.as_deref().unwrap_or("?"),
            "tool output received"
        );
        tracing::debug!(call_id, output, "tool output");
        self.tool_outputs.push(ToolOutput {
            call_id: call_id.to_string(),
            name: name.clone(),
            output: output.to_string(),
        });
        if let Some((awaited, index)) = &self.awaiting_call {
            if awaited == call_id {
                self.pending = Some(Plan::AfterCall {
                    index: *index,
                    output: output.to_string(),
                });
                self.awaiting_call = None;
            }
        } else if let Some(index) = name.as_deref().and_then(|n| self.scenario.turn_calling(n)) {
            // The output of a call an earlier session made, seeded into this one (a client's
            // session rollover): answered as the turn that makes that call.
            self.pending = Some(Plan::AfterCall {
                index,
                output: output.to_string(),
            });
        }
    }

    fn on_item_retrieve(&mut self, obj: &Map<String, Value>) -> Result<(), ClientError> {
        allow_keys(obj, &["type", "event_id", "item_id"])?;
        let id = req_str(obj, "item_id", "item_id")?;
        let index = self
            .index_of(id)
            .ok_or_else(|| item_not_found(id, "item_id"))?;
        let item = self.item_json(index);
        self.emit("conversation.item.retrieved", json!({ "item": item }));
        Ok(())
    }

    fn on_item_delete(&mut self, obj: &Map<String, Value>) -> Result<(), ClientError> {
        allow_keys(obj, &["type", "event_id", "item_id"])?;
        let id = req_str(obj, "item_id", "item_id")?;
        let index = self
            .index_of(id)
            .ok_or_else(|| item_not_found(id, "item_id"))?;
        self.items.remove(index);
        self.emit("conversation.item.deleted", json!({ "item_id": id }));
        Ok(())
    }

    fn on_item_truncate(&mut self, obj: &Map<String, Value>) -> Result<(), ClientError> {
        allow_keys(
            obj,
            &[
                "type",
                "event_id",
                "item_id",
                "content_index",
                "audio_end_ms",
            ],
        )?;
        let id = req_str(obj, "item_id", "item_id")?;
        let content_index = req_int(obj, "content_index")?;
        let audio_end_ms = req_int(obj, "audio_end_ms")?;
        let index = self
            .index_of(id)
            .ok_or_else(|| item_not_found(id, "item_id"))?;
        let not_audio = || {
            ClientError::new(
                None,
                "Only model output audio messages can be truncated".into(),
                None,
            )
        };
        let item = self.items.get_mut(index).ok_or_else(not_audio)?;
        let Kind::Assistant {
            text_only: false,
            transcript,
            audio_bytes,
            bytes_per_ms,
        } = &mut item.kind
        else {
            return Err(not_audio());
        };
        if *audio_bytes == 0 {
            return Err(not_audio());
        }
        if content_index != 0 {
            return Err(ClientError::new(
                Some("invalid_value"),
                format!(
                    "Invalid 'content_index': the item has no content at index {content_index}."
                ),
                Some("content_index"),
            ));
        }
        if audio_end_ms < 0 {
            return Err(ClientError::new(
                Some("invalid_value"),
                format!("Invalid 'audio_end_ms': expected a value >= 0, but got {audio_end_ms} instead."),
                Some("audio_end_ms"),
            ));
        }
        let have_ms = (*audio_bytes / (*bytes_per_ms).max(1)) as i64;
        if audio_end_ms > have_ms {
            return Err(ClientError::new(
                None,
                format!("Audio content of {have_ms}ms is already shorter than {audio_end_ms}ms"),
                None,
            ));
        }
        *audio_bytes = audio_end_ms as usize * *bytes_per_ms;
        let removed = transcript.take();
        tracing::info!(
            item_id = id,
            audio_end_ms,
            transcript_removed = removed.is_some(),
            "item truncated"
        );
        self.emit(
            "conversation.item.truncated",
            json!({"item_id": id, "content_index": content_index, "audio_end_ms": audio_end_ms}),
        );
        Ok(())
    }

    // ----- responses -----

    fn on_response_create(
        &mut self,
        now: Instant,
        obj: &Map<String, Value>,
    ) -> Result<(), ClientError> {
        allow_keys(obj, &["type", "event_id", "response"])?;
        if let Some(a) = &self.active {
            return Err(ClientError::new(
                Some("conversation_already_has_active_response"),
                format!(
                    "Conversation already has an active response in progress: {}. Wait until the response is finished before creating a new one.",
                    a.id
                ),
                None,
            ));
        }
        let settings = ResponseSettings::from_request(&self.config, obj.get("response"))?;
        self.start_response(now, settings);
        Ok(())
    }

    fn on_response_cancel(&mut self, obj: &Map<String, Value>) -> Result<(), ClientError> {
        allow_keys(obj, &["type", "event_id", "response_id"])?;
        let wanted = opt_str(obj, "response_id", "response_id")?;
        match self.active.take() {
            Some(a) if wanted.is_none_or(|w| w == a.id) => {
                self.finish_cancelled(a, "client_cancelled");
                Ok(())
            }
            other => {
                self.active = other;
                Err(ClientError::new(
                    Some("response_cancel_not_active"),
                    "Cancellation failed: no active response found".into(),
                    None,
                ))
            }
        }
    }

    /// Renders `speech` in the output format: (transcript, audio, marks at byte offsets).
    fn render(&self, speech: &Speech, ctx: &TemplateCtx<'_>, format: AudioFormat) -> Output {
        let r = speech.render(ctx, format, self.scenario.timing.ms_per_char);
        Output::Message {
            text: r.text,
            audio: r.audio,
            marks: r.marks,
        }
    }

    fn plan_outputs(&mut self, plan: &Plan, format: AudioFormat) -> VecDeque<Output> {
        let scenario = Arc::clone(&self.scenario);
        let mut q = VecDeque::new();
        match plan {
            Plan::Greeting => {
                q.push_back(self.render(&scenario.greeting, &TemplateCtx::default(), format))
            }
            Plan::Idle => {
                q.push_back(self.render(&scenario.idle_reply, &TemplateCtx::default(), format))
            }
            Plan::Turn {
                index,
                heard_ms,
                echo,
            } => {
                let turn = scenario.turn(*index);
                // `{output…}` can only appear in call arguments here, where it reads the most
                // recent tool output of the session.
                let ctx = TemplateCtx {
                    output: self.tool_outputs.last().map(|o| o.output.as_str()),
                    outputs: &self.tool_outputs,
                    turn: index + 1,
                    heard_ms: *heard_ms,
                };
                match (&turn.call, echo) {
                    (Some(call), _) => {
                        if let Some(p) = &turn.preamble {
                            q.push_back(self.render(p, &ctx, format));
                        }
                        let args = call.arguments.render(&ctx);
                        if !args.unresolved.is_empty() {
                            tracing::warn!(
                                turn = index + 1,
                                tool = %call.name,
                                unresolved = ?args.unresolved,
                                arguments = %args.json,
                                "call arguments have unresolved placeholders; sending them as written"
                            );
                        }
                        q.push_back(Output::Call {
                            name: call.name.clone(),
                            arguments: args.json,
                        });
                    }
                    (None, Some((in_format, audio))) => {
                        let audio = format.transcode_from(*in_format, audio);
                        let text = format!("(echo of {heard_ms} ms)");
                        q.push_back(Output::Message {
                            marks: vec![(0, text.clone())],
                            text,
                            audio,
                        });
                    }
                    (None, None) => q.push_back(self.render(&turn.say, &ctx, format)),
                }
            }
            Plan::AfterCall { index, output } => {
                let turn = scenario.turn(*index);
                let ctx = TemplateCtx {
                    output: Some(output),
                    outputs: &self.tool_outputs,
                    turn: index + 1,
                    heard_ms: 0,
                };
                q.push_back(self.render(&turn.say, &ctx, format));
            }
        }
        q
    }

    /// Rough token count of the conversation, re-billed as input on every response.
    fn conversation_tokens(&self) -> (u64, u64) {
        let instructions = self
            .config
            .value()
            .get("instructions")
            .and_then(Value::as_str)
            .map_or(0, str::len);
        let mut text = instructions as u64 / 4;
        let mut audio = 0u64;
        for item in &self.items {
            text += 4;
            match &item.kind {
                Kind::UserAudio { ms, .. } => audio += ms / 100,
                Kind::Message { content, .. } => text += content.to_string().len() as u64 / 4,
                Kind::Assistant {
                    audio_bytes,
                    bytes_per_ms,
                    transcript,
                    ..
                } => {
                    audio += (audio_bytes / (*bytes_per_ms).max(1)) as u64 / 50;
                    text += transcript.as_ref().map_or(0, |t| t.len() as u64 / 4);
                }
                Kind::FunctionCall { arguments, .. } => text += arguments.len() as u64 / 4,
                Kind::FunctionCallOutput { output, .. } => text += output.len() as u64 / 4,
            }
        }
        (text, audio)
    }

    fn start_response(&mut self, now: Instant, settings: ResponseSettings) {
        let plan = self.pending.take().unwrap_or(Plan::Greeting);
        let mut queue = self.plan_outputs(&plan, settings.output);
        let mut incomplete = false;
        if let Some(max) = settings.max_output_tokens {
            // Audio costs about one token per 50 ms, text one per 4 characters.
            for out in &mut queue {
                if let Output::Message { audio, marks, text } = out {
                    let cap = if settings.text_only {
                        (max as usize).saturating_mul(4).saturating_mul(audio.len())
                            / text.len().max(1)
                    } else {
                        settings.output.bytes_for_ms(max.saturating_mul(50))
                    };
                    if audio.len() > cap {
                        audio.truncate(cap);
                        marks.retain(|(o, _)| *o < cap);
                        incomplete = true;
                    }
                }
            }
        }
        let (text_tokens, audio_tokens) = self.conversation_tokens();
        let id = self.next_id("resp");
        self.responses_created += 1;
        self.idle_deadline = None;
        let active = Active {
            id,
            settings,
            plan,
            queue,
            current: None,
            finished: Vec::new(),
            next_output_index: 0,
            next_at: now,
            first_output: true,
            first_audio_at: None,
            incomplete,
            input_text_tokens: text_tokens,
            input_audio_tokens: audio_tokens,
            audio_ms_out: 0,
            text_chars_out: 0,
        };
        let response = self.response_json(&active, "in_progress", Value::Null, Value::Null);
        self.emit("response.created", json!({ "response": response }));
        let used = self.responses_created.min(RATE_LIMIT_REQUESTS);
        self.emit(
            "rate_limits.updated",
            json!({"rate_limits": [
                {"name": "requests", "limit": RATE_LIMIT_REQUESTS, "remaining": RATE_LIMIT_REQUESTS - used, "reset_seconds": 0.012},
                {"name": "tokens", "limit": RATE_LIMIT_TOKENS,
                 "remaining": RATE_LIMIT_TOKENS.saturating_sub(text_tokens + audio_tokens + 4096), "reset_seconds": 6.36},
            ]}),
        );
        self.active = Some(active);
        self.advance(now);
    }

    fn response_json(&self, a: &Active, status: &str, details: Value, usage: Value) -> Value {
        let s = &a.settings;
        let max = s.max_output_tokens.map_or(json!("inf"), |n| json!(n));
        let conversation_id = format!("conv_{}", self.token);
        match self.dialect {
            Dialect::Ga | Dialect::Live => json!({
                "id": a.id, "object": "realtime.response", "status": status,
                "status_details": details, "output": a.finished, "conversation_id": conversation_id,
                "output_modalities": [if s.text_only { "text" } else { "audio" }],
                "max_output_tokens": max,
                "audio": {"output": {"format": ga_format_json(s.output), "voice": s.voice}},
                "usage": usage, "metadata": s.metadata,
            }),
            Dialect::Beta => json!({
                "id": a.id, "object": "realtime.response", "status": status,
                "status_details": details, "output": a.finished, "conversation_id": conversation_id,
                "modalities": if s.text_only { json!(["text"]) } else { json!(["audio", "text"]) },
                "voice": s.voice, "output_audio_format": s.output.beta_name(),
                "temperature": self.config.value().get("temperature").cloned().unwrap_or(json!(0.8)),
                "max_output_tokens": max,
                "usage": usage, "metadata": s.metadata,
            }),
        }
    }

    /// Plausible usage: audio about 1 token per 100 ms in and 50 ms out, text 1 per 4
    /// characters; the conversation so far is re-billed as input, the previous response's
    /// input counts as cached (in 64-token blocks).
    fn usage_json(&mut self, a: &Active) -> Value {
        let output_text = a.text_chars_out as u64 / 4;
        let output_audio = a.audio_ms_out / 50;
        let input = a.input_text_tokens + a.input_audio_tokens;
        let cached = (self.last_input_tokens / 64 * 64).min(input);
        self.last_input_tokens = input;
        let cached_text = cached.min(a.input_text_tokens);
        let mut input_details = json!({
            "text_tokens": a.input_text_tokens,
            "audio_tokens": a.input_audio_tokens,
            "cached_tokens": cached,
        });
        if let (Dialect::Ga, Value::Object(m)) = (self.dialect, &mut input_details) {
            // GA adds image tokens and the cached breakdown.
            m.insert("image_tokens".into(), json!(0));
            m.insert(
                "cached_tokens_details".into(),
                json!({"text_tokens": cached_text, "audio_tokens": cached - cached_text, "image_tokens": 0}),
            );
        }
        json!({
            "total_tokens": input + output_text + output_audio,
            "input_tokens": input,
            "output_tokens": output_text + output_audio,
            "input_token_details": input_details,
            "output_token_details": {"text_tokens": output_text, "audio_tokens": output_audio},
        })
    }

    /// Emits every step of the active response that is due at `now`.
    fn advance(&mut self, now: Instant) {
        while let Some(mut a) = self.active.take() {
            if a.next_at > now {
                self.active = Some(a);
                return;
            }
            let at = a.next_at;
            if self.step(&mut a, at) {
                self.finish(a, at);
            } else {
                self.active = Some(a);
            }
        }
    }

    /// One step of a response; true when it has nothing left to produce.
    fn step(&mut self, a: &mut Active, at: Instant) -> bool {
        let timing = self.scenario.timing;
        let text_only = a.settings.text_only;
        let fmt = a.settings.output;
        let interval = |bytes: usize| {
            let ms = bytes as f64 / fmt.bytes_per_ms() as f64;
            Duration::from_secs_f64((ms / timing.realtime_factor / 1000.0).max(0.0))
        };
        match a.current.take() {
            None => {
                let Some(next) = a.queue.pop_front() else {
                    return true;
                };
                let delay = if a.first_output {
                    timing.first_audio_delay
                } else {
                    Duration::ZERO
                };
                a.first_output = false;
                a.next_at = at + delay;
                let output_index = a.next_output_index;
                a.next_output_index += 1;
                a.current = Some(self.start_output(&a.id, output_index, next, text_only, fmt));
            }
            Some(Streaming::Message {
                item_id,
                output_index,
                audio,
                mut sent,
                marks,
                mut next_mark,
                mut transcript,
            }) => {
                let delta = (timing.delta_bytes * fmt.bytes_per_ms() / 8).max(1);
                let chunk = delta.min(audio.len() - sent.min(audio.len()));
                if chunk > 0 {
                    if !text_only {
                        a.first_audio_at.get_or_insert(at);
                        let delta_b64 = b64(audio.get(sent..sent + chunk).unwrap_or(&[]));
                        let name = self.name("response.output_audio.delta", "response.audio.delta");
                        self.emit(name, json!({"response_id": a.id, "item_id": item_id, "output_index": output_index,
                                               "content_index": 0, "delta": delta_b64}));
                        self.assistant_audio_present = true;
                    }
                    sent += chunk;
                    if !text_only {
                        a.audio_ms_out = a.audio_ms_out.saturating_add(fmt.ms_of(chunk));
                    }
                }
                let mut piece = String::new();
                while let Some((offset, p)) = marks.get(next_mark) {
                    if *offset >= sent && sent < audio.len() {
                        break;
                    }
                    piece.push_str(p);
                    next_mark += 1;
                }
                if !piece.is_empty() {
                    transcript.push_str(&piece);
                    a.text_chars_out += piece.len();
                    let name = if text_only {
                        self.name("response.output_text.delta", "response.text.delta")
                    } else {
                        self.name(
                            "response.output_audio_transcript.delta",
                            "response.audio_transcript.delta",
                        )
                    };
                    self.emit(name, json!({"response_id": a.id, "item_id": item_id, "output_index": output_index,
                                           "content_index": 0, "delta": piece}));
                }
                if let Some(i) = self.index_of(&item_id) {
                    if let Some(Item {
                        kind:
                            Kind::Assistant {
                                transcript: t,
                                audio_bytes,
                                ..
                            },
                        ..
                    }) = self.items.get_mut(i)
                    {
                        // A truncated item (transcript removed) keeps its cut length.
                        if t.is_some() {
                            *audio_bytes = if text_only { 0 } else { sent };
                            *t = Some(transcript.clone());
                        }
                    }
                }
                a.next_at = at + interval(chunk);
                let state = Streaming::Message {
                    item_id,
                    output_index,
                    audio,
                    sent,
                    marks,
                    next_mark,
                    transcript,
                };
                if sent >= state_len(&state) {
                    let status = if a.incomplete {
                        "incomplete"
                    } else {
                        "completed"
                    };
                    let item = self.end_output(a, state, status);
                    a.finished.push(item);
                    a.next_at = at;
                } else {
                    a.current = Some(state);
                }
            }
            Some(Streaming::Call {
                item_id,
                output_index,
                call_id,
                name,
                arguments,
                sent,
            }) => {
                let size = (arguments.len() / 3).max(16);
                let end = floor_char_boundary(&arguments, sent + size);
                let end = if end <= sent { arguments.len() } else { end };
                let piece = arguments.get(sent..end).unwrap_or("");
                if !piece.is_empty() {
                    self.emit(
                        "response.function_call_arguments.delta",
                        json!({"response_id": a.id, "item_id": item_id, "output_index": output_index,
                               "call_id": call_id, "delta": piece}),
                    );
                    a.text_chars_out += piece.len();
                }
                a.next_at = at + interval(timing.delta_bytes * fmt.bytes_per_ms() / 8);
                let state = Streaming::Call {
                    item_id,
                    output_index,
                    call_id,
                    name,
                    arguments,
                    sent: end,
                };
                if end >= state_len(&state) {
                    let item = self.end_output(a, state, "completed");
                    a.finished.push(item);
                    a.next_at = at;
                } else {
                    a.current = Some(state);
                }
            }
        }
        false
    }

    /// `response.output_item.added`, the conversation item, and the content part header.
    fn start_output(
        &mut self,
        response_id: &str,
        output_index: usize,
        out: Output,
        text_only: bool,
        fmt: AudioFormat,
    ) -> Streaming {
        let item_id = self.next_id("item");
        let (kind, streaming) = match out {
            Output::Message {
                text: _,
                audio,
                marks,
            } => (
                Kind::Assistant {
                    text_only,
                    transcript: Some(String::new()),
                    audio_bytes: 0,
                    bytes_per_ms: fmt.bytes_per_ms(),
                },
                Streaming::Message {
                    item_id: item_id.clone(),
                    output_index,
                    audio,
                    sent: 0,
                    marks,
                    next_mark: 0,
                    transcript: String::new(),
                },
            ),
            Output::Call { name, arguments } => {
                let call_id = self.next_id("call");
                (
                    Kind::FunctionCall {
                        name: name.clone(),
                        call_id: call_id.clone(),
                        arguments: String::new(),
                    },
                    Streaming::Call {
                        item_id: item_id.clone(),
                        output_index,
                        call_id,
                        name,
                        arguments,
                        sent: 0,
                    },
                )
            }
        };
        self.items.push(Item {
            id: item_id.clone(),
            status: "in_progress",
            kind,
        });
        let index = self.items.len() - 1;
        let mut item = self.item_json(index);
        if let (Streaming::Message { .. }, Some(content)) = (&streaming, item.get_mut("content")) {
            *content = json!([]);
        }
        let previous = self.previous_id(index);
        self.emit(
            "response.output_item.added",
            json!({"response_id": response_id, "output_index": output_index, "item": item}),
        );
        let name = self.name("conversation.item.added", "conversation.item.created");
        self.emit(name, json!({"previous_item_id": previous, "item": item}));
        if let Streaming::Message { .. } = streaming {
            let part = if text_only {
                json!({"type": "text", "text": ""})
            } else {
                json!({"type": "audio", "transcript": ""})
            };
            self.emit(
                "response.content_part.added",
                json!({"response_id": response_id, "item_id": item_id, "output_index": output_index,
                       "content_index": 0, "part": part}),
            );
        }
        streaming
    }

    /// The closing events of an output item; returns the final item JSON.
    fn end_output(&mut self, a: &Active, state: Streaming, status: &'static str) -> Value {
        let text_only = a.settings.text_only;
        let (item_id, output_index) = match &state {
            Streaming::Message {
                item_id,
                output_index,
                ..
            }
            | Streaming::Call {
                item_id,
                output_index,
                ..
            } => (item_id.clone(), *output_index),
        };
        let ids = json!({"response_id": a.id, "item_id": item_id, "output_index": output_index});
        let with = |extra: Value| {
            let mut v = ids.clone();
            if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
                m.extend(e);
            }
            v
        };
        match &state {
            Streaming::Message { transcript, .. } => {
                if text_only {
                    let name = self.name("response.output_text.done", "response.text.done");
                    self.emit(name, with(json!({"content_index": 0, "text": transcript})));
                } else {
                    let name = self.name("response.output_audio.done", "response.audio.done");
                    self.emit(name, with(json!({"content_index": 0})));
                    let name = self.name(
                        "response.output_audio_transcript.done",
                        "response.audio_transcript.done",
                    );
                    self.emit(
                        name,
                        with(json!({"content_index": 0, "transcript": transcript})),
                    );
                }
                let part = if text_only {
                    json!({"type": "text", "text": transcript})
                } else {
                    json!({"type": "audio", "transcript": transcript})
                };
                self.emit(
                    "response.content_part.done",
                    with(json!({"content_index": 0, "part": part})),
                );
            }
            Streaming::Call {
                call_id,
                name,
                arguments,
                sent,
                ..
            } => {
                let args = arguments
                    .get(..*sent)
                    .unwrap_or(arguments.as_str())
                    .to_string();
                if let Some(i) = self.index_of(&item_id) {
                    if let Some(Item {
                        kind:
                            Kind::FunctionCall {
                                arguments: stored, ..
                            },
                        ..
                    }) = self.items.get_mut(i)
                    {
                        *stored = args.clone();
                    }
                }
                if status == "completed" {
                    let mut done = with(json!({"call_id": call_id, "arguments": args}));
                    if self.dialect == Dialect::Ga {
                        if let Value::Object(m) = &mut done {
                            m.insert("name".into(), Value::String(name.clone()));
                        }
                    }
                    self.emit("response.function_call_arguments.done", done);
                    let index = match &a.plan {
                        Plan::Turn { index, .. } | Plan::AfterCall { index, .. } => *index,
                        Plan::Greeting | Plan::Idle => 0,
                    };
                    self.awaiting_call = Some((call_id.clone(), index));
                }
            }
        }
        let position = self.index_of(&item_id);
        if let Some(item) = position.and_then(|i| self.items.get_mut(i)) {
            item.status = status;
        }
        let item = position.map_or(Value::Null, |i| self.item_json(i));
        self.emit(
            "response.output_item.done",
            json!({"response_id": a.id, "output_index": output_index, "item": item}),
        );
        if self.dialect == Dialect::Ga {
            let previous = position.map_or(Value::Null, |i| self.previous_id(i));
            self.emit(
                "conversation.item.done",
                json!({"previous_item_id": previous, "item": item}),
            );
        }
        item
    }

    fn finish(&mut self, a: Active, at: Instant) {
        let (status, details) = if a.incomplete {
            (
                "incomplete",
                json!({"type": "incomplete", "reason": "max_output_tokens"}),
            )
        } else {
            ("completed", Value::Null)
        };
        let usage = self.usage_json(&a);
        let response = self.response_json(&a, status, details, usage);
        self.emit("response.done", json!({ "response": response }));
        if let Plan::Turn { index, .. } = a.plan {
            if let Some(action) = self.faults.take_after_turn(index + 1) {
                self.fire_fault(action);
            }
        }
        // Arm the idle timeout after the (estimated) end of playback.
        if let Some(idle) = self.eff.turn_detection.and_then(|t| t.idle_timeout_ms) {
            let played_until = a
                .first_audio_at
                .map_or(at, |t0| t0 + Duration::from_millis(a.audio_ms_out))
                .max(at);
            self.idle_deadline = Some(played_until + Duration::from_millis(idle));
            self.idle_armed_ms = self.clock_ms();
        }
    }

    fn finish_cancelled(&mut self, mut a: Active, reason: &str) {
        tracing::info!(response_id = %a.id, reason, "response cancelled");
        if let Some(state) = a.current.take() {
            let item = self.end_output(&a, state, "incomplete");
            a.finished.push(item);
        }
        let usage = self.usage_json(&a);
        let response = self.response_json(
            &a,
            "cancelled",
            json!({"type": "cancelled", "reason": reason}),
            usage,
        );
        self.emit("response.done", json!({ "response": response }));
        if self.pending.is_none() {
            self.pending = Some(a.plan);
        }
    }

    fn idle_fire(&mut self, now: Instant) {
        if self.active.is_some() || self.vad.in_speech() {
            return;
        }
        let end = self.clock_ms();
        let item_id = self.next_id("item");
        self.emit(
            "input_audio_buffer.timeout_triggered",
            json!({"audio_start_ms": self.idle_armed_ms.min(end), "audio_end_ms": end, "item_id": item_id}),
        );
        let previous = self.previous_id(self.items.len());
        self.emit(
            "input_audio_buffer.committed",
            json!({"item_id": item_id, "previous_item_id": previous}),
        );
        self.consume_buffer(end);
        self.items.push(Item {
            id: item_id,
            status: "completed",
            kind: Kind::UserAudio {
                ms: 0,
                transcript: None,
            },
        });
        self.announce_complete_item(self.items.len() - 1);
        self.pending = Some(Plan::Idle);
        let settings = ResponseSettings::from_session(&self.config);
        self.start_response(now, settings);
    }
}

fn state_len(s: &Streaming) -> usize {
    match s {
        Streaming::Message { audio, .. } => audio.len(),
        Streaming::Call { arguments, .. } => arguments.len(),
    }
}

#[cfg(test)]
mod tests;
