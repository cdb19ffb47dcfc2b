//! The sans-IO core of one simulated GPT-Live session (`/v1/live/sessions`).
//!
//! [`LiveSimSession`] behaves as `shared/live-protocol.md` describes the real service (§8, the
//! simulator checklist), with the machinery of the Realtime simulator: the energy [`Vad`] for
//! caller turns, the [`Scenario`] for what is said and which functions are called, and the
//! synthesised voice ([`Speech::render`]).
//!
//! * Nothing is sent before the client's `session.start`, which is validated strictly: an unknown
//!   field anywhere is refused with `error{code:"unknown_parameter", param:"session.<path>"}`, as
//!   the real server does; so are wrong audio rates, a second `session.start` and a model that
//!   is not a GPT-Live model (`model_not_found`, e.g. a Realtime model name).
//! * `session.started` carries the resolved session (`id` `live_…`, `expires_at`, defaults).
//! * The **session timeline advances with input audio**: every 100 ms of appended audio (scaled by
//!   [`LiveParams::clock_skew_ppm`], which lets tests run the server's clock fast or slow) yields
//!   one `session.output_audio.delta` of 100 ms in the session format, speech or digital
//!   silence. No input, no output.
//! * Caller turns come from the VAD; each ended turn gets the next scenario turn, spoken after the
//!   scenario's `first_audio_delay_ms`. The greeting starts at that offset from the beginning of
//!   the timeline. Caller speech while the model talks makes it stop [`BARGE_IN_STOP_MS`] later
//!   (the model's own decision: the client never truncates).
//! * Transcripts: `session.input_transcript.delta` with the turn's `heard` text when a turn ends,
//!   `session.output_transcript.delta` with each word as its audio goes out (200 ms windows).
//! * A scenario turn with a `call` whose function is declared in `delegation.responses.tools`
//!   becomes `session.delegation.created` and `response.event` envelopes (`response.created`,
//!   `response.output_item.done` with the completed `function_call`, `response.completed`); the
//!   client answers with `response.item.create` per call and one `response.create`, after which
//!   the turn's `say` is spoken with `{output}` filled in.
//! * `session.usage.updated` every 15 s of timeline; `session.close` → `session.closed`
//!   (`close_requested`), the session cap → `session.closed` (`expired`); then the socket closes.
//!
//! Invariants: no I/O and no clock reads; nothing a client sends can panic; bad events produce
//! `error` events and the session stays open.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::audio::AudioFormat;
use super::config::{append_audio, as_int, check, only_keys, req_str, ClientError, S};
use super::scenario::{
    server_error_fields, FaultAction, FaultSchedule, Scenario, Speech, TemplateCtx,
    FAULT_CLOSE_CODE,
};
use super::session::{Close, ToolOutput};
use super::vad::{Framer, Vad, VadEvent, VadParams};

/// Output chunk: one `session.output_audio.delta` per 100 ms of timeline (§3.3).
pub const OUTPUT_CHUNK_MS: u64 = 100;
/// Transcript windows (§3.3: fragments on 200 ms frame boundaries).
const TRANSCRIPT_WINDOW_MS: u64 = 200;
/// Usage report period on the timeline (§3.9: ≈15 s).
const USAGE_PERIOD_MS: u64 = 15_000;
/// How long after the caller starts talking over it the model stops speaking.
pub const BARGE_IN_STOP_MS: u64 = 300;
/// When appended context is acknowledged, after the timeline passes it (§3.6b: ~0.6–1.0 s).
const APPEND_ACK_MS: u64 = 600;
/// Session cap when the scenario sets none (the real cap is unverified, §3.7).
const DEFAULT_MAX_SESSION: Duration = Duration::from_secs(60 * 60);
/// Every GPT-Live model's name starts so (`gpt-live-1`, `gpt-live-1.1`, dated snapshots);
/// `session.start` with another model is refused with `model_not_found`.
pub const LIVE_MODEL_PREFIX: &str = "gpt-live";
/// Default voice of the service.
const DEFAULT_VOICE: &str = "marin";
/// Instructions reported when the client sent none.
const DEFAULT_INSTRUCTIONS: &str = "You are a helpful voice assistant.";
/// Startup history limit (§2.1).
const MAX_INPUT_ITEMS: usize = 128;
/// WebSocket close code after `session.closed`.
const CLOSE_NORMAL: u16 = 1000;
/// The server's VAD stand-in: the Realtime defaults (0.5 / 300 ms / 500 ms).
const VAD: VadParams = VadParams {
    threshold: 0.5,
    prefix_padding_ms: 300,
    silence_duration_ms: 500,
};

/// The 15 client events of the primary WebSocket (SDK `ClientEvent`, §3.1).
const CLIENT_EVENTS: &[&str] = &[
    "session.start",
    "session.update",
    "session.input_audio.append",
    "session.input_audio.mute",
    "session.input_audio.unmute",
    "session.output_audio.fixture.play",
    "session.instructions.append",
    "session.thinking.append",
    "session.commentary.append",
    "decision.create",
    "decision.item.create",
    "decision.item.delete",
    "response.item.create",
    "response.create",
    "session.close",
];

const AUDIO_TYPES: &[&str] = &["audio/pcm", "audio/pcmu", "audio/pcma"];
const DELEGATION_TYPES: &[&str] = &["client", "responses", "decisions"];
const ROLES: &[&str] = &["developer", "user", "assistant"];

/// `session` of `session.start` (SDK `SessionConfig`): every key the server accepts. `tools`
/// and `input` items are checked one by one in [`LiveSimSession::on_start`].
const SESSION: S = S::Obj(&[
    ("model", S::Str),
    ("instructions", S::Nullable(&S::Str)),
    (
        "audio",
        S::Nullable(&S::Obj(&[
            (
                "format",
                S::Nullable(&S::Obj(&[
                    ("type", S::OneOf(AUDIO_TYPES)),
                    ("rate", S::Int(8_000, 24_000)),
                ])),
            ),
            ("output", S::Nullable(&S::Obj(&[("voice", S::Voice)]))),
        ])),
    ),
    (
        "delegation",
        S::Nullable(&S::Obj(&[
            ("type", S::OneOf(DELEGATION_TYPES)),
            ("acknowledgement_delay_ms", S::Int(0, 60_000)),
            (
                "responses",
                S::Obj(&[
                    ("model", S::Str),
                    ("instructions", S::Nullable(&S::Str)),
                    ("max_output_tokens", S::Int(16, 1_000_000)),
                    ("parallel_tool_calls", S::Bool),
                    ("reasoning", S::AnyObj),
                    ("service_tier", S::Str),
                    ("text", S::AnyObj),
                    ("tool_choice", S::Any),
                    ("tools", S::Array),
                ]),
            ),
            ("decisions", S::AnyObj),
        ])),
    ),
    ("input", S::Array),
    ("store", S::Bool),
    ("safety_identifier", S::Str),
    ("triggers", S::Array),
    ("client", S::AnyObj),
]);

/// A flat Responses function tool (SDK `FunctionTool`).
const FUNCTION_TOOL: S = S::Obj(&[
    ("type", S::Str),
    ("name", S::Str),
    ("description", S::Nullable(&S::Str)),
    ("parameters", S::AnyObj),
    ("strict", S::Bool),
]);

/// A startup history message (SDK `InitialItem`).
const INITIAL_ITEM: S = S::Obj(&[
    ("type", S::OneOf(&["message"])),
    ("role", S::OneOf(ROLES)),
    ("content", S::Array),
    ("id", S::Str),
    ("status", S::OneOf(&["incomplete", "completed"])),
]);

const TEXT_PART: S = S::Obj(&[
    ("type", S::OneOf(&["input_text", "text", "output_text"])),
    ("text", S::Str),
]);

/// How a live session starts.
#[derive(Debug, Clone)]
pub struct LiveParams {
    /// Wall-clock time at connection (Unix seconds), for `expires_at`.
    pub unix_time_s: u64,
    /// Random token making this session's ids unique (`live_<token>`, `item_<token>…`).
    pub id_token: String,
    /// What to say.
    pub scenario: Arc<Scenario>,
    /// How fast the simulated server's clock runs against the input timeline, in parts per
    /// million: `1000` produces 1.001 s of output per second of input audio, `-1000` 0.999 s.
    pub clock_skew_ppm: i32,
    /// Which session of the simulator this is, numbered from 1 in upgrade order (picks the
    /// scenario's `[[fault]]` entries that apply).
    pub session_number: u64,
}

/// Configuration fixed by `session.start`.
#[derive(Debug)]
struct Started {
    format: AudioFormat,
    /// Functions declared in `delegation.responses.tools` (empty without Responses delegation).
    tools: Vec<String>,
    responses: bool,
    /// The resolved `SessionResource`.
    session: Value,
}

/// A scheduled piece of model behaviour.
#[derive(Debug, Clone)]
enum Plan {
    Greeting,
    Turn { index: usize, heard_ms: u64 },
    AfterCalls { index: usize, output: String },
}

/// A function call of the delegated response, waiting for (or holding) its output.
#[derive(Debug, Clone)]
struct Pending {
    call_id: String,
    output: Option<String>,
}

/// The delegated response whose calls the client must answer.
#[derive(Debug, Clone)]
struct Delegated {
    delegation_id: String,
    response_id: String,
    turn: usize,
    calls: Vec<Pending>,
}

/// One simulated GPT-Live session. See the module docs.
#[derive(Debug)]
pub struct LiveSimSession {
    token: String,
    counter: u64,
    scenario: Arc<Scenario>,
    skew_ppm: i64,
    /// Input and output positions (ms) where the current skew started.
    skew_base_in: u64,
    skew_base_out: u64,
    out: VecDeque<String>,
    close: Option<Close>,
    closed: bool,
    now: Instant,
    expires: Instant,
    expires_at: u64,
    started: Option<Started>,
    // Input timeline.
    vad: Vad,
    framer: Framer,
    in_bytes: u64,
    muted: bool,
    next_turn: usize,
    speech_start_ms: u64,
    // Output stream.
    out_ms: u64,
    silence: Vec<u8>,
    speech: VecDeque<u8>,
    /// Bytes of speech taken from `speech` so far (the offset of `speech[0]`).
    speech_sent: u64,
    /// Bytes of speech ever queued (the offset after the last queued byte).
    speech_queued: u64,
    marks: VecDeque<(u64, String)>,
    barge_at: Option<u64>,
    plans: Vec<(u64, Plan)>,
    acks: Vec<(u64, String, u64)>,
    delegated: Option<Delegated>,
    tool_outputs: Vec<ToolOutput>,
    next_usage_ms: u64,
    /// The scenario's faults for this session not fired yet.
    faults: FaultSchedule,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn window_start(ms: u64) -> u64 {
    ms / TRANSCRIPT_WINDOW_MS * TRANSCRIPT_WINDOW_MS
}

fn responses_only(ty: &str) -> ClientError {
    ClientError::new(
        None,
        format!("{ty} requires Responses delegation."),
        Some("type"),
    )
}

impl LiveSimSession {
    /// A new session at `now`. Nothing is sent until the client's `session.start`.
    pub fn new(params: LiveParams, now: Instant) -> LiveSimSession {
        let max = params.scenario.max_session.unwrap_or(DEFAULT_MAX_SESSION);
        let faults = params.scenario.faults_for(params.session_number, now);
        LiveSimSession {
            token: params.id_token,
            counter: 0,
            scenario: params.scenario,
            skew_ppm: i64::from(params.clock_skew_ppm).clamp(-100_000, 100_000),
            skew_base_in: 0,
            skew_base_out: 0,
            out: VecDeque::new(),
            close: None,
            closed: false,
            now,
            expires: now + max,
            expires_at: params.unix_time_s + max.as_secs(),
            started: None,
            vad: Vad::new(Some(VAD)),
            framer: Framer::default(),
            in_bytes: 0,
            muted: false,
            next_turn: 0,
            speech_start_ms: 0,
            out_ms: 0,
            silence: Vec::new(),
            speech: VecDeque::new(),
            speech_sent: 0,
            speech_queued: 0,
            marks: VecDeque::new(),
            barge_at: None,
            plans: Vec::new(),
            acks: Vec::new(),
            delegated: None,
            tool_outputs: Vec::new(),
            next_usage_ms: USAGE_PERIOD_MS,
            faults,
        }
    }

    /// Changes how fast the simulated server's clock runs (see [`LiveParams::clock_skew_ppm`]),
    /// from the current point of the timeline on.
    pub fn set_clock_skew_ppm(&mut self, ppm: i32) {
        // Keep the output owed so far; scale only what comes from now on.
        let input_ms = self.input_ms();
        self.skew_base_out = self.due_out_ms(input_ms);
        self.skew_base_in = input_ms;
        self.skew_ppm = i64::from(ppm).clamp(-100_000, 100_000);
    }

    /// Output milliseconds owed at input position `input_ms`.
    fn due_out_ms(&self, input_ms: u64) -> u64 {
        let since = input_ms.saturating_sub(self.skew_base_in);
        self.skew_base_out
            + since.saturating_mul(1_000_000u64.saturating_add_signed(self.skew_ppm)) / 1_000_000
    }

    /// The session id (`live_…`).
    pub fn id(&self) -> String {
        format!("live_{}", self.token)
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

    /// When [`LiveSimSession::handle_timeout`] should be called next (the session cap; all other
    /// behaviour follows the input timeline).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        Some(
            self.faults
                .next_at()
                .map_or(self.expires, |f| f.min(self.expires)),
        )
    }

    /// Advances wall time: ends the session at its cap (`session.closed`, reason `expired`).
    pub fn handle_timeout(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
        if !self.closed && self.now >= self.expires {
            self.finish("expired");
        }
        if !self.closed {
            if let Some(action) = self.faults.take_due(self.now) {
                self.fire_fault(action);
            }
        }
    }

    /// A scenario fault fired: the socket closes without `session.closed` (a `server_error`
    /// first).
    fn fire_fault(&mut self, action: FaultAction) {
        if action == FaultAction::ServerError {
            self.emit("error", server_error_fields());
        }
        self.closed = true;
        self.close = Some(Close {
            code: FAULT_CLOSE_CODE,
            reason: "simulated failure".into(),
        });
    }

    /// A binary frame from the client (the API only uses text frames).
    pub fn handle_client_binary(&mut self, now: Instant) {
        self.handle_timeout(now);
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
        self.handle_timeout(now);
        if self.closed {
            return;
        }
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
        let event_id = obj
            .get("event_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let result = match obj.get("type") {
            None | Some(Value::Null) => Err(ClientError::missing("type")),
            Some(Value::String(t)) => self.dispatch(t, obj),
            Some(other) => Err(ClientError::invalid_type("type", "a string", other)),
        };
        if let Err(e) = result {
            self.error(event_id, e);
        }
    }

    fn dispatch(&mut self, ty: &str, obj: &Map<String, Value>) -> Result<(), ClientError> {
        if !CLIENT_EVENTS.contains(&ty) {
            return Err(ClientError::invalid_value("type", ty, CLIENT_EVENTS));
        }
        if ty == "session.start" {
            return self.on_start(obj);
        }
        if self.started.is_none() {
            return Err(ClientError::new(
                Some("session_not_started"),
                format!("Send session.start and wait for session.started before {ty}."),
                Some("type"),
            ));
        }
        match ty {
            "session.input_audio.append" => self.on_append(obj),
            "session.input_audio.mute" | "session.input_audio.unmute" => {
                only_keys(obj, &["type", "event_id"], "")?;
                self.muted = ty.ends_with(".mute");
                let ack = if self.muted {
                    "session.input_audio.muted"
                } else {
                    "session.input_audio.unmuted"
                };
                self.emit(ack, json!({}));
                Ok(())
            }
            "session.instructions.append"
            | "session.thinking.append"
            | "session.commentary.append" => self.on_context(ty, obj),
            "response.item.create" => self.on_item_create(obj),
            "response.create" => self.on_response_create(obj),
            "session.close" => {
                only_keys(obj, &["type", "event_id"], "")?;
                self.finish("close_requested");
                Ok(())
            }
            _ => Err(ClientError::new(
                None,
                format!("'{ty}' is not supported by the simulator."),
                Some("type"),
            )),
        }
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
        let mut error = json!({
            "type": "invalid_request_error",
            "code": e.code.unwrap_or("invalid_request_error"),
            "message": e.message,
        });
        if let Some(p) = e.param {
            error["param"] = Value::String(p);
        }
        let mut ev = json!({ "error": error });
        if let Some(id) = client_event_id {
            ev["client_event_id"] = Value::String(id.clone());
            ev["error"]["client_event_id"] = Value::String(id);
        }
        self.emit("error", ev);
    }

    fn input_ms(&self) -> u64 {
        match &self.started {
            Some(s) => s
                .format
                .ms_of(usize::try_from(self.in_bytes).unwrap_or(usize::MAX)),
            None => 0,
        }
    }

    fn usage(&self) -> Value {
        json!({"seconds": self.input_ms() / 1000})
    }

    /// `session.closed` with `reason`, then the socket closes.
    fn finish(&mut self, reason: &str) {
        let session = self
            .started
            .as_ref()
            .map_or_else(|| self.unstarted_session(), |s| s.session.clone());
        let usage = self.usage();
        self.emit(
            "session.closed",
            json!({"reason": reason, "usage": usage, "session": session}),
        );
        self.closed = true;
        self.close = Some(Close {
            code: CLOSE_NORMAL,
            reason: format!("session closed: {reason}"),
        });
    }

    fn unstarted_session(&self) -> Value {
        json!({"id": self.id(), "expires_at": self.expires_at, "model": "gpt-live-1",
               "status": "active"})
    }

    // ----- session.start -----

    fn on_start(&mut self, obj: &Map<String, Value>) -> Result<(), ClientError> {
        if self.started.is_some() {
            return Err(ClientError::new(
                Some("session_already_started"),
                "The session has already started; session.start may be sent only once.".into(),
                Some("type"),
            ));
        }
        only_keys(obj, &["type", "event_id", "session"], "")?;
        let session = match obj.get("session") {
            None | Some(Value::Null) => return Err(ClientError::missing("session")),
            Some(v) => v,
        };
        check("session", session, SESSION)?;
        let s = session
            .as_object()
            .ok_or_else(|| ClientError::invalid_type("session", "an object", session))?;
        let model = req_str(s, "model", "session.model")?;
        if !model.starts_with(LIVE_MODEL_PREFIX) {
            // The error the service sends for a model the key cannot use (live-protocol.md §3.8:
            // `model_not_found`; its exact text is unverified).
            return Err(ClientError::new(
                Some("model_not_found"),
                format!("The model `{model}` does not exist or you do not have access to it."),
                Some("session.model"),
            ));
        }
        let format = match session.pointer("/audio/format") {
            None | Some(Value::Null) => AudioFormat::Pcm16,
            Some(f) => {
                let ty = f.get("type").and_then(Value::as_str);
                let rate = f.get("rate").and_then(as_int);
                match (ty, rate) {
                    (None, _) => return Err(ClientError::missing("session.audio.format.type")),
                    (Some("audio/pcmu"), Some(8000)) => AudioFormat::Pcmu,
                    (Some("audio/pcma"), Some(8000)) => AudioFormat::Pcma,
                    (Some("audio/pcm"), Some(24_000)) => AudioFormat::Pcm16,
                    (Some("audio/pcm"), Some(16_000)) => {
                        return Err(ClientError::new(
                            Some("unsupported_value"),
                            "The simulator speaks audio/pcm at 24000 Hz only.".into(),
                            Some("session.audio.format.rate"),
                        ))
                    }
                    (Some(t), Some(r)) => {
                        let allowed = if t == "audio/pcm" {
                            "16000 or 24000"
                        } else {
                            "8000"
                        };
                        return Err(ClientError::new(
                            Some("invalid_value"),
                            format!("Invalid 'session.audio.format.rate' for {t}: {r}; expected {allowed}."),
                            Some("session.audio.format.rate"),
                        ));
                    }
                    (Some(_), None) => {
                        return Err(ClientError::missing("session.audio.format.rate"))
                    }
                }
            }
        };
        let delegation = session.get("delegation").filter(|d| !d.is_null());
        let kind = delegation
            .and_then(|d| d.get("type"))
            .and_then(Value::as_str);
        let mut tools = Vec::new();
        match (delegation, kind) {
            (None, _) => {}
            (Some(_), None) => return Err(ClientError::missing("session.delegation.type")),
            (Some(_), Some("client")) => {}
            (Some(d), Some("responses")) => {
                let Some(r) = d.get("responses").and_then(Value::as_object) else {
                    return Err(ClientError::missing("session.delegation.responses"));
                };
                req_str(r, "model", "session.delegation.responses.model")?;
                let list = r.get("tools").and_then(Value::as_array);
                for (i, t) in list.into_iter().flatten().enumerate() {
                    let path = format!("session.delegation.responses.tools[{i}]");
                    if t.get("type").and_then(Value::as_str) == Some("function") {
                        check(&path, t, FUNCTION_TOOL)?;
                        let o = t
                            .as_object()
                            .ok_or_else(|| ClientError::invalid_type(&path, "an object", t))?;
                        tools.push(req_str(o, "name", &format!("{path}.name"))?.to_owned());
                    } else if !t.is_object() {
                        return Err(ClientError::invalid_type(&path, "an object", t));
                    }
                }
            }
            (Some(_), Some(_)) => {
                return Err(ClientError::new(
                    None,
                    "The simulator does not emulate Decisions delegation.".into(),
                    Some("session.delegation.type"),
                ))
            }
        }
        if let Some(items) = session.get("input").and_then(Value::as_array) {
            if items.len() > MAX_INPUT_ITEMS {
                return Err(ClientError::new(
                    Some("invalid_value"),
                    format!(
                        "session.input has {} messages; at most {MAX_INPUT_ITEMS} are allowed.",
                        items.len()
                    ),
                    Some("session.input"),
                ));
            }
            for (i, item) in items.iter().enumerate() {
                let path = format!("session.input[{i}]");
                check(&path, item, INITIAL_ITEM)?;
                let o = item
                    .as_object()
                    .ok_or_else(|| ClientError::invalid_type(&path, "an object", item))?;
                req_str(o, "role", &format!("{path}.role"))?;
                let parts = o.get("content").and_then(Value::as_array);
                if parts.map_or(0, Vec::len) != 1 {
                    return Err(ClientError::new(
                        Some("invalid_value"),
                        format!("'{path}.content' must have exactly one text part."),
                        Some(&format!("{path}.content")),
                    ));
                }
                for (j, part) in parts.into_iter().flatten().enumerate() {
                    let ppath = format!("{path}.content[{j}]");
                    check(&ppath, part, TEXT_PART)?;
                    let po = part
                        .as_object()
                        .ok_or_else(|| ClientError::invalid_type(&ppath, "an object", part))?;
                    req_str(po, "text", &format!("{ppath}.text"))?;
                }
            }
        }
        // The resolved session (SDK `SessionResource`).
        let mut resolved = s.clone();
        resolved.insert("id".into(), Value::String(self.id()));
        resolved.insert("expires_at".into(), json!(self.expires_at));
        resolved.insert("status".into(), json!("active"));
        resolved.insert("model".into(), json!(model));
        if resolved
            .get("instructions")
            .and_then(Value::as_str)
            .is_none_or(|i| i.trim().is_empty())
        {
            resolved.insert("instructions".into(), json!(DEFAULT_INSTRUCTIONS));
        }
        let voice = session
            .pointer("/audio/output/voice")
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or_else(|| json!(DEFAULT_VOICE));
        let format_json = match format {
            AudioFormat::Pcmu => json!({"type": "audio/pcmu", "rate": 8000}),
            AudioFormat::Pcma => json!({"type": "audio/pcma", "rate": 8000}),
            AudioFormat::Pcm16 => json!({"type": "audio/pcm", "rate": 24_000}),
        };
        resolved.insert(
            "audio".into(),
            json!({"format": format_json, "output": {"voice": voice}}),
        );
        if delegation.is_none() {
            resolved.insert("delegation".into(), json!({"type": "client"}));
        }
        if !resolved.contains_key("input") {
            resolved.insert("input".into(), json!([]));
        }
        let session = Value::Object(resolved);
        tracing::info!(model, format = ?format, tools = tools.len(), "live session started");
        self.silence = format.encode_8k(&[0; 8 * OUTPUT_CHUNK_MS as usize]);
        self.started = Some(Started {
            format,
            responses: kind == Some("responses"),
            tools,
            session: session.clone(),
        });
        let mut started = json!({ "session": session });
        if let Some(id) = obj.get("event_id").and_then(Value::as_str) {
            started["client_event_id"] = json!(id);
        }
        self.emit("session.started", started);
        let delay = self.first_audio_delay_ms();
        self.plans.push((delay, Plan::Greeting));
        Ok(())
    }

    fn first_audio_delay_ms(&self) -> u64 {
        u64::try_from(self.scenario.timing.first_audio_delay.as_millis()).unwrap_or(u64::MAX)
    }

    // ----- input timeline -----

    fn on_append(&mut self, obj: &Map<String, Value>) -> Result<(), ClientError> {
        let bytes = append_audio(obj)?;
        let Some(format) = self.started.as_ref().map(|s| s.format) else {
            return Ok(());
        };
        let frame = format.frame_10ms_bytes() as u64;
        for rms in self.framer.push(format, &bytes) {
            // Muted input is silence to the model (live-protocol.md §3.3).
            let rms = if self.muted { 0.0 } else { rms };
            self.in_bytes += frame;
            if let Some(ev) = self.vad.push_frame(rms) {
                self.on_vad(ev);
            }
            self.advance();
        }
        Ok(())
    }

    fn on_vad(&mut self, ev: VadEvent) {
        let now_ms = self.input_ms();
        match ev {
            VadEvent::SpeechStarted { audio_start_ms } => {
                self.speech_start_ms = audio_start_ms;
                if !self.speech.is_empty() && self.barge_at.is_none() {
                    self.barge_at = Some(now_ms + BARGE_IN_STOP_MS);
                }
            }
            VadEvent::SpeechStopped { audio_end_ms } => {
                let index = self.next_turn;
                self.next_turn += 1;
                let heard_ms = audio_end_ms.saturating_sub(self.speech_start_ms);
                if let Some(heard) = self.scenario.turn(index).heard {
                    let start = window_start(self.speech_start_ms);
                    let end = window_start(audio_end_ms) + TRANSCRIPT_WINDOW_MS;
                    self.emit(
                        "session.input_transcript.delta",
                        json!({"delta": heard, "start_ms": start, "end_ms": end}),
                    );
                }
                let at = audio_end_ms + self.first_audio_delay_ms();
                self.plans.push((at, Plan::Turn { index, heard_ms }));
            }
        }
    }

    /// Runs what is due at the current input position and emits the output the timeline owes.
    fn advance(&mut self) {
        let input_ms = self.input_ms();
        let due = self.due_out_ms(input_ms);
        loop {
            // Behaviour due by the start of the next chunk goes into that chunk.
            self.run_plans(self.out_ms.min(input_ms));
            if self.out_ms + OUTPUT_CHUNK_MS > due {
                break;
            }
            self.output_chunk(input_ms);
        }
        let acks: Vec<_> = self
            .acks
            .extract_if(.., |(at, _, _)| *at <= input_ms)
            .collect();
        for (at, kind, start) in acks {
            self.emit(&kind, json!({"start_ms": start, "end_ms": at}));
        }
        if input_ms >= self.next_usage_ms {
            self.next_usage_ms += USAGE_PERIOD_MS;
            let usage = self.usage();
            let ratio = (input_ms as f64 / 3_600_000.0).min(1.0);
            self.emit(
                "session.usage.updated",
                json!({"usage": usage, "context_window": {"usage_ratio": ratio}}),
            );
        }
    }

    fn output_chunk(&mut self, input_ms: u64) {
        if self.barge_at.is_some_and(|at| input_ms >= at) {
            self.barge_at = None;
            tracing::debug!(
                dropped = self.speech.len(),
                "model stops talking (barge-in)"
            );
            self.speech_sent += self.speech.len() as u64;
            self.speech.clear();
            self.marks.clear();
        }
        let mut chunk = self.silence.clone();
        let n = self.speech.len().min(chunk.len());
        for (dst, src) in chunk.iter_mut().zip(self.speech.drain(..n)) {
            *dst = src;
        }
        self.speech_sent += n as u64;
        let start = window_start(self.out_ms);
        while let Some((offset, _)) = self.marks.front() {
            if *offset >= self.speech_sent {
                break;
            }
            let Some((_, piece)) = self.marks.pop_front() else {
                break;
            };
            self.emit(
                "session.output_transcript.delta",
                json!({"delta": piece, "start_ms": start, "end_ms": start + TRANSCRIPT_WINDOW_MS}),
            );
        }
        self.out_ms += OUTPUT_CHUNK_MS;
        // The primary socket's delta carries no event_id or timestamps (SDK `OutputAudioDeltaEvent`).
        self.out.push_back(
            json!({"type": "session.output_audio.delta", "delta": b64(&chunk)}).to_string(),
        );
        if self.speech.is_empty() {
            self.barge_at = None;
        }
    }

    fn say(&mut self, speech: &Speech, ctx: &TemplateCtx<'_>) {
        let Some(format) = self.started.as_ref().map(|s| s.format) else {
            return;
        };
        let r = speech.render(ctx, format, self.scenario.timing.ms_per_char);
        let base = self.speech_queued;
        self.marks
            .extend(r.marks.into_iter().map(|(o, p)| (base + o as u64, p)));
        self.speech_queued += r.audio.len() as u64;
        self.speech.extend(r.audio);
    }

    fn run_plans(&mut self, input_ms: u64) {
        while let Some(pos) = self.plans.iter().position(|(at, _)| *at <= input_ms) {
            let (_, plan) = self.plans.remove(pos);
            self.run_plan(plan, input_ms);
        }
    }

    fn run_plan(&mut self, plan: Plan, input_ms: u64) {
        let scenario = Arc::clone(&self.scenario);
        let turn_number = match plan {
            Plan::Turn { index, .. } => index + 1,
            _ => 0,
        };
        match plan {
            Plan::Greeting => self.say(&scenario.greeting, &TemplateCtx::default()),
            Plan::AfterCalls { index, output } => {
                let outputs = std::mem::take(&mut self.tool_outputs);
                let ctx = TemplateCtx {
                    output: Some(&output),
                    outputs: &outputs,
                    turn: index + 1,
                    heard_ms: 0,
                };
                self.say(&scenario.turn(index).say, &ctx);
                self.tool_outputs = outputs;
            }
            Plan::Turn { index, heard_ms } => {
                let turn = scenario.turn(index);
                let outputs = std::mem::take(&mut self.tool_outputs);
                let ctx = TemplateCtx {
                    output: outputs.last().map(|o| o.output.as_str()),
                    outputs: &outputs,
                    turn: index + 1,
                    heard_ms,
                };
                let declared = turn.call.as_ref().is_some_and(|c| {
                    self.started
                        .as_ref()
                        .is_some_and(|s| s.responses && s.tools.contains(&c.name))
                });
                match &turn.call {
                    Some(call) if declared => {
                        if let Some(p) = &turn.preamble {
                            self.say(p, &ctx);
                        }
                        let args = call.arguments.render(&ctx).json;
                        let name = call.name.clone();
                        self.tool_outputs = outputs;
                        self.delegate(index, &name, &args, input_ms);
                        if let Some(action) = self.faults.take_after_turn(index + 1) {
                            self.fire_fault(action);
                        }
                        return;
                    }
                    Some(call) => {
                        tracing::warn!(tool = %call.name, turn = index + 1,
                            "scenario calls a function the session did not declare in delegation.responses.tools; speaking the answer without it");
                        self.say(
                            &turn.say,
                            &TemplateCtx {
                                output: None,
                                ..ctx
                            },
                        );
                    }
                    None => self.say(&turn.say, &ctx),
                }
                self.tool_outputs = outputs;
            }
        }
        if let Some(action) = self.faults.take_after_turn(turn_number) {
            self.fire_fault(action);
        }
    }

    /// The model delegates a function call to the Responses backend (§3.6a).
    fn delegate(&mut self, turn: usize, name: &str, arguments: &str, input_ms: u64) {
        let delegation_id = self.next_id("item");
        let response_id = self.next_id("resp");
        let call_id = self.next_id("call");
        let item_id = self.next_id("fc");
        self.emit(
            "session.delegation.created",
            json!({"delegation": {"id": delegation_id, "type": "delegation", "target": "responses",
                                  "response_id": response_id}, "offset_ms": input_ms}),
        );
        self.response_event(
            &delegation_id,
            json!({"type": "response.created",
                   "response": {"id": response_id, "object": "response", "status": "in_progress", "output": []}}),
        );
        self.response_event(
            &delegation_id,
            json!({"type": "response.output_item.done", "output_index": 0,
                   "item": {"id": item_id, "type": "function_call", "status": "completed",
                            "call_id": call_id, "name": name, "arguments": arguments}}),
        );
        self.response_completed(&delegation_id, &response_id, arguments.len());
        self.delegated = Some(Delegated {
            delegation_id,
            response_id,
            turn,
            calls: vec![Pending {
                call_id,
                output: None,
            }],
        });
    }

    fn response_event(&mut self, delegation_id: &str, event: Value) {
        self.emit(
            "response.event",
            json!({"delegation_id": delegation_id, "event": event}),
        );
    }

    fn response_completed(&mut self, delegation_id: &str, response_id: &str, chars: usize) {
        let output_tokens = (chars / 4 + 8) as u64;
        self.response_event(
            delegation_id,
            json!({"type": "response.completed",
                   "response": {"id": response_id, "object": "response", "status": "completed", "output": [],
                                "usage": {"input_tokens": 400, "output_tokens": output_tokens,
                                          "total_tokens": 400 + output_tokens,
                                          "input_tokens_details": {"cached_tokens": 0},
                                          "output_tokens_details": {"reasoning_tokens": 0}}}}),
        );
    }

    // ----- context and tools -----

    fn on_context(&mut self, ty: &str, obj: &Map<String, Value>) -> Result<(), ClientError> {
        only_keys(obj, &["type", "event_id", "content", "delegation_id"], "")?;
        let content = req_str(obj, "content", "content")?;
        let responses = self.started.as_ref().is_some_and(|s| s.responses);
        match obj.get("delegation_id") {
            None | Some(Value::Null) => {}
            Some(Value::String(_)) if responses => {
                return Err(ClientError::new(
                    Some("invalid_value"),
                    "Non-null delegation_id values are not accepted with Responses delegation."
                        .into(),
                    Some("delegation_id"),
                ))
            }
            Some(Value::String(_)) => {}
            Some(other) => {
                return Err(ClientError::invalid_type(
                    "delegation_id",
                    "a string",
                    other,
                ))
            }
        }
        tracing::debug!(event = ty, chars = content.len(), "context appended");
        let start = self.input_ms();
        let kind = format!("{}ed", ty);
        self.acks.push((start + APPEND_ACK_MS, kind, start));
        Ok(())
    }

    fn on_item_create(&mut self, obj: &Map<String, Value>) -> Result<(), ClientError> {
        only_keys(obj, &["type", "event_id", "item"], "")?;
        if !self.started.as_ref().is_some_and(|s| s.responses) {
            return Err(responses_only("response.item.create"));
        }
        let item = match obj.get("item") {
            None | Some(Value::Null) => return Err(ClientError::missing("item")),
            Some(Value::Object(m)) => m,
            Some(other) => return Err(ClientError::invalid_type("item", "an object", other)),
        };
        only_keys(
            item,
            &["type", "call_id", "output", "id", "status"],
            "item.",
        )?;
        let ty = req_str(item, "type", "item.type")?;
        if ty != "function_call_output" {
            return Err(ClientError::invalid_value(
                "item.type",
                ty,
                &["function_call_output"],
            ));
        }
        let call_id = req_str(item, "call_id", "item.call_id")?;
        let output = req_str(item, "output", "item.output")?;
        let no_call = || {
            ClientError::new(
                Some("invalid_value"),
                format!(
                    "No delegated function call with call_id '{call_id}' is waiting for an output."
                ),
                Some("item.call_id"),
            )
        };
        let pending = self
            .delegated
            .as_mut()
            .and_then(|d| d.calls.iter_mut().find(|c| c.call_id == call_id))
            .ok_or_else(no_call)?;
        if pending.output.is_some() {
            return Err(ClientError::new(
                Some("invalid_value"),
                format!("The function call '{call_id}' already has an output."),
                Some("item.call_id"),
            ));
        }
        pending.output = Some(output.to_owned());
        let name = self
            .scenario
            .turn(self.delegated.as_ref().map_or(0, |d| d.turn))
            .call
            .map(|c| c.name);
        tracing::info!(
            call_id,
            name = name.as_deref().unwrap_or("?"),
            "tool output received"
        );
        self.tool_outputs.push(ToolOutput {
            call_id: call_id.to_owned(),
            name,
            output: output.to_owned(),
        });
        Ok(())
    }

    fn on_response_create(&mut self, obj: &Map<String, Value>) -> Result<(), ClientError> {
        only_keys(obj, &["type", "event_id"], "")?;
        if !self.started.as_ref().is_some_and(|s| s.responses) {
            return Err(responses_only("response.create"));
        }
        let Some(d) = self.delegated.take() else {
            return Err(ClientError::new(
                None,
                "No delegated response is waiting for function call outputs.".into(),
                None,
            ));
        };
        let missing: Vec<&str> = d
            .calls
            .iter()
            .filter(|c| c.output.is_none())
            .map(|c| c.call_id.as_str())
            .collect();
        if !missing.is_empty() {
            let e = ClientError::new(
                Some("missing_function_call_output"),
                format!(
                    "response.create needs an output for every function call; missing: {}.",
                    missing.join(", ")
                ),
                None,
            );
            self.delegated = Some(d);
            return Err(e);
        }
        let output = d
            .calls
            .last()
            .and_then(|c| c.output.clone())
            .unwrap_or_default();
        let response_id = self.next_id("resp");
        self.response_event(
            &d.delegation_id,
            json!({"type": "response.created",
                   "response": {"id": response_id, "object": "response", "status": "in_progress", "output": []}}),
        );
        self.response_completed(&d.delegation_id, &response_id, output.len());
        tracing::debug!(continued = %d.response_id, "delegated response continued");
        let at = self.input_ms() + self.first_audio_delay_ms();
        self.plans.push((
            at,
            Plan::AfterCalls {
                index: d.turn,
                output,
            },
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
