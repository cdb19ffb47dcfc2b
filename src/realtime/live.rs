//! GPT-Live wire protocol (`wss://…/v1/live/sessions`): client-event builders and a lenient
//! server-event parser. Sans-IO: nothing here touches sockets, clocks or tasks.
//!
//! Reference: `shared/live-protocol.md` (sections cited as §N below), checked against the
//! `openai` Python SDK's `openai.types.live` models (openai 3.57; the unit tests validate every
//! event built here with `tests/protocol/validate_events.py --dialect live`).
//!
//! How GPT-Live differs from the Realtime dialects (§4), and what this module therefore offers:
//! * The client speaks first: [`session_start`] with the whole, **immutable** configuration. The
//!   server's session object is strict (unknown fields are rejected, §2), so the builders emit only
//!   fields of the SDK's `SessionConfig`: `model`, `instructions`, `audio.format` (one G.711 format
//!   for both directions, 8000 Hz), `audio.output.voice`, `delegation` and `input`.
//! * Caller audio goes up as [`input_audio_append`] continuously, silence included (the session
//!   timeline only advances while audio flows, §3.3). There is no commit, clear, truncate or cancel.
//! * The model's audio is one continuous real-time stream ([`LiveEvent::OutputAudio`], silence
//!   included, no item ids, no done event); barge-in is the model's own decision (§3.4).
//! * The voice model has no tools: it delegates to a Responses backend (`delegation.type =
//!   "responses"`, tools in the flat Responses format, §2.5). Function calls arrive wrapped in
//!   `response.event` ([`ResponseStream::FunctionCall`]); the answer is one
//!   [`function_call_output`] per call, then one [`response_create`] (§3.6a).
//! * Text context (DTMF key presses, "greet the caller now") goes in as
//!   [`instructions_append`] with `delegation_id: null` (§3.1, §3.5).
//! * The session ends with [`session_close`] → [`LiveEvent::Closed`] (§3.7).

use std::borrow::Cow;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::protocol::{
    fields, write_audio_event, Error, ErrorEventWire, FunctionCall, ToolDefinition, Usage,
    AUDIO_B64,
};
use crate::media::g711::{Law, CLOCK_RATE_HZ};

pub mod codec;

/// OpenAI's GPT-Live WebSocket endpoint (§1.1). No query parameters: the model goes in
/// `session.start`.
pub const OPENAI_LIVE_URL: &str = "wss://api.openai.com/v1/live/sessions";

/// The URL path of the Live sessions endpoint (OpenAI `/v1/live/sessions`; Azure prefixes
/// `/openai`, §1.2).
pub const LIVE_PATH: &str = "/v1/live/sessions";

// ---------------------------------------------------------------------------------------------
// Session configuration
// ---------------------------------------------------------------------------------------------

/// Who said a message of the startup history (`session.input`, §2.1 `InitialItem`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryRole {
    /// `developer`: context from the application (e.g. "the caller pressed 3").
    Developer,
    /// `user`: the caller's words.
    User,
    /// `assistant`: the agent's words.
    Assistant,
}

/// One text message of the startup history (at most 128 messages, 8,192 rendered tokens, §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryMessage {
    /// Speaker.
    pub role: HistoryRole,
    /// The text (one text part).
    pub text: String,
}

/// Everything [`session_start`] sends (§2.1, §2.6). Immutable for the life of the session.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSessionSettings {
    /// The Live model, e.g. `"gpt-live-1.1"` (on Azure: the deployment name, §1.2).
    pub model: String,
    /// Frontend instructions (voice, conversation, when to delegate; ≤16,384 tokens). A blank
    /// string is omitted, which selects the server's defaults.
    pub instructions: String,
    /// Output voice, e.g. `"marin"` (the server's default).
    pub voice: String,
    /// G.711 law of the call: `audio.format` is `audio/pcmu` or `audio/pcma` at 8000 Hz for both
    /// directions (no transcoding, §2.2).
    pub law: Law,
    /// Functions the backend may call. Empty: no `delegation` is sent (the server's default,
    /// client delegation; frontdesk then only converses).
    pub tools: Vec<ToolDefinition>,
    /// The Responses model the Live session delegates tool work to (`delegation.responses.model`,
    /// required there; on Azure a Responses deployment in the same resource).
    pub backend_model: String,
    /// Backend prompt (`delegation.responses.instructions`); `None` omits it.
    pub backend_instructions: Option<String>,
    /// Prior conversation, e.g. to seed a session that replaces an expiring one.
    pub history: Vec<HistoryMessage>,
}

/// The `audio.format` object for a G.711 law: `{"type":"audio/pcmu"|"audio/pcma","rate":8000}`
/// (SDK `AudioPCMU` / `AudioPCMA`, §2.2).
pub fn audio_format(law: Law) -> Value {
    serde_json::json!({"type": format_type(law), "rate": CLOCK_RATE_HZ})
}

fn format_type(law: Law) -> &'static str {
    match law {
        Law::Mu => "audio/pcmu",
        Law::A => "audio/pcma",
    }
}

// ---------------------------------------------------------------------------------------------
// Client events
// ---------------------------------------------------------------------------------------------

/// Serialises a client event: the wire structs have only string keys and plain values, which
/// serde_json cannot fail on.
fn to_text<T: Serialize>(event: &T) -> String {
    serde_json::to_string(event).expect("client event structs always serialise")
}

#[derive(Serialize)]
struct StartWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    session: SessionWire<'a>,
}

#[derive(Serialize)]
struct SessionWire<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    instructions: Option<&'a str>,
    audio: AudioWire<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delegation: Option<DelegationWire<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    input: Vec<InitialItemWire<'a>>,
}

#[derive(Serialize)]
struct AudioWire<'a> {
    format: FormatWire,
    output: VoiceWire<'a>,
}

#[derive(Serialize)]
struct FormatWire {
    #[serde(rename = "type")]
    kind: &'static str,
    rate: u32,
}

#[derive(Serialize)]
struct VoiceWire<'a> {
    voice: &'a str,
}

#[derive(Serialize)]
struct DelegationWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    responses: ResponsesWire<'a>,
}

#[derive(Serialize)]
struct ResponsesWire<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    instructions: Option<&'a str>,
    tools: Vec<FlatToolWire<'a>>,
    tool_choice: &'static str,
}

/// A function tool in the flat Responses format (SDK `FunctionTool`, §2.5).
#[derive(Serialize)]
struct FlatToolWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    description: &'a str,
    parameters: &'a Value,
}

#[derive(Serialize)]
struct InitialItemWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    content: [TextPartWire<'a>; 1],
}

#[derive(Serialize)]
struct TextPartWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

impl<'a> From<&'a HistoryMessage> for InitialItemWire<'a> {
    fn from(m: &'a HistoryMessage) -> Self {
        let (role, part) = match m.role {
            HistoryRole::Developer => ("developer", "input_text"),
            HistoryRole::User => ("user", "input_text"),
            HistoryRole::Assistant => ("assistant", "output_text"),
        };
        InitialItemWire {
            kind: "message",
            role,
            content: [TextPartWire {
                kind: part,
                text: &m.text,
            }],
        }
    }
}

/// `session.start` (§2, §2.6): the first event of every session; wait for
/// [`LiveEvent::SessionStarted`] before sending anything else. Shape (SDK `SessionStartEvent`):
/// ```json
/// {"type":"session.start","session":{"model":"gpt-live-1.1","instructions":"…",
///  "audio":{"format":{"type":"audio/pcmu","rate":8000},"output":{"voice":"marin"}},
///  "delegation":{"type":"responses","responses":{"model":"…","instructions":"…",
///     "tools":[{"type":"function","name":…,"description":…,"parameters":{…}}],"tool_choice":"auto"}},
///  "input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"…"}]}]}}
/// ```
/// `instructions` is omitted when blank, `delegation` when there are no tools, `input` when the
/// history is empty. No other key is ever sent (the server rejects unknown fields).
pub fn session_start(s: &LiveSessionSettings) -> String {
    let delegation = (!s.tools.is_empty()).then(|| DelegationWire {
        kind: "responses",
        responses: ResponsesWire {
            model: &s.backend_model,
            instructions: s
                .backend_instructions
                .as_deref()
                .filter(|i| !i.trim().is_empty()),
            tools: s
                .tools
                .iter()
                .map(|t| FlatToolWire {
                    kind: "function",
                    name: &t.name,
                    description: &t.description,
                    parameters: &t.parameters,
                })
                .collect(),
            tool_choice: "auto",
        },
    });
    to_text(&StartWire {
        kind: "session.start",
        session: SessionWire {
            model: &s.model,
            instructions: Some(s.instructions.as_str()).filter(|i| !i.trim().is_empty()),
            audio: AudioWire {
                format: FormatWire {
                    kind: format_type(s.law),
                    rate: CLOCK_RATE_HZ,
                },
                output: VoiceWire { voice: &s.voice },
            },
            delegation,
            input: s.history.iter().map(InitialItemWire::from).collect(),
        },
    })
}

const APPEND_PREFIX: &str = r#"{"type":"session.input_audio.append","audio":""#;

/// `session.input_audio.append` (§3.1, §3.3): caller audio, raw G.711 in the session format
/// (160 bytes = 20 ms → 216 base64 characters). Hot path: clears `out` and encodes straight into
/// it, so once `out` has grown to the frame size nothing is allocated. The server sends no ack.
/// Send it continuously from `session.started` on, silence included.
pub fn input_audio_append(out: &mut String, audio: &[u8]) {
    write_audio_event(out, APPEND_PREFIX, audio);
}

#[derive(Serialize)]
struct AppendTextWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    content: &'a str,
    /// Serialised as `null`: general session context (non-null ids are refused under
    /// Responses delegation, §3.1).
    delegation_id: Option<&'a str>,
}

/// `session.instructions.append` (§3.1, §3.5): text context for the model, e.g. a DTMF key press
/// or "greet the caller now"; `{"type":"session.instructions.append","content":"…","delegation_id":null}`.
/// At most 500 tokens per event. Acked by [`LiveEvent::ContextAppended`] once the session
/// timeline (which advances with input audio) reaches it.
pub fn instructions_append(content: &str) -> String {
    to_text(&AppendTextWire {
        kind: "session.instructions.append",
        content,
        delegation_id: None,
    })
}

#[derive(Serialize)]
struct ItemCreateWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    item: FunctionOutputWire<'a>,
}

#[derive(Serialize)]
struct FunctionOutputWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    call_id: &'a str,
    output: &'a str,
}

/// `response.item.create` with a function result (§3.6a):
/// `{"type":"response.item.create","item":{"type":"function_call_output","call_id":…,"output":"…"}}`.
/// One per call of the delegated response; after the last one send [`response_create`] once.
pub fn function_call_output(call_id: &str, output: &str) -> String {
    to_text(&ItemCreateWire {
        kind: "response.item.create",
        item: FunctionOutputWire {
            kind: "function_call_output",
            call_id,
            output,
        },
    })
}

/// `response.create` (§3.6a): `{"type":"response.create"}` — continue the delegated response
/// once every outstanding function call has its output (a partial batch is rejected).
pub fn response_create() -> String {
    r#"{"type":"response.create"}"#.to_owned()
}

/// `session.close` (§3.7): `{"type":"session.close"}`; the server drains (≤10 s) and answers with
/// [`LiveEvent::Closed`], then closes the socket.
pub fn session_close() -> String {
    r#"{"type":"session.close"}"#.to_owned()
}

// ---------------------------------------------------------------------------------------------
// Server events
// ---------------------------------------------------------------------------------------------

/// One event of a delegated Responses stream, from a `response.event` envelope (§3.6a). Inner
/// events carry no response id: correlate by the envelope's `delegation_id`.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseStream {
    /// `response.created`.
    Created,
    /// `response.output_item.done` with a `function_call` item whose `status` is `completed`:
    /// run it and answer with [`function_call_output`]. `item_id` is the item's `id` (empty if
    /// absent).
    FunctionCall(FunctionCall),
    /// `response.completed`: the response is complete; its backend token usage, when present.
    Completed {
        /// `response.usage` (Responses shape: `input_tokens`, `output_tokens`, `total_tokens`,
        /// `input_tokens_details.cached_tokens`).
        usage: Option<Usage>,
    },
    /// `response.failed` / `response.incomplete` / `response.cancelled`: the response ended
    /// without completing; its calls are discarded by the service (an output is refused).
    Ended {
        /// The inner event type, e.g. `"response.failed"`.
        kind: String,
    },
    /// Any other inner event (deltas, lifecycle snapshots).
    Other {
        /// The inner event type.
        kind: String,
    },
}

/// A GPT-Live server event, parsed by [`parse_server_event`] (§3.2). Times are milliseconds on
/// the session timeline (which advances with input audio).
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    /// `session.started`: startup complete. `expires_at` (Unix seconds) drives the planned
    /// rollover; `format` is the resolved `audio.format.type` (check it is the call's law).
    SessionStarted {
        /// `session.id` (`live_…`).
        session_id: String,
        /// `session.expires_at`, Unix seconds.
        expires_at: Option<i64>,
        /// `session.audio.format.type`, e.g. `"audio/pcmu"`.
        format: Option<String>,
    },
    /// `session.updated` (ack of `session.update`, which frontdesk does not send).
    SessionUpdated,
    /// `session.output_audio.delta`: the next chunk of the continuous output stream, raw bytes in
    /// the session format (G.711: 8 bytes per ms; ~100 ms per chunk). Play in delivery order.
    OutputAudio {
        /// Decoded audio.
        audio: Vec<u8>,
    },
    /// `session.input_transcript.delta`: a fragment of the caller's speech (200 ms windows; no
    /// done event, no turn boundaries).
    InputTranscript {
        /// Text fragment.
        delta: String,
        /// Window start, ms.
        start_ms: u64,
        /// Window end, ms.
        end_ms: u64,
    },
    /// `session.output_transcript.delta`: a fragment of the agent's speech.
    OutputTranscript {
        /// Text fragment.
        delta: String,
        /// Window start, ms.
        start_ms: u64,
        /// Window end, ms.
        end_ms: u64,
    },
    /// `session.delegation.created`: the model handed work to `target` (`client`, `responses`,
    /// `decisions`); metadata only, no task text.
    DelegationCreated {
        /// `delegation.id`.
        id: String,
        /// `delegation.target`.
        target: String,
        /// `delegation.response_id` (Responses delegation).
        response_id: Option<String>,
        /// `offset_ms` on the session timeline.
        offset_ms: u64,
    },
    /// `response.event`: one event of the delegated Responses stream.
    Response {
        /// The envelope's `delegation_id`.
        delegation_id: Option<String>,
        /// The inner event.
        event: ResponseStream,
    },
    /// `session.instructions.appended` / `session.thinking.appended` /
    /// `session.commentary.appended`: appended context reached the timeline.
    ContextAppended {
        /// The event type as received.
        kind: String,
        /// Start on the timeline, ms.
        start_ms: u64,
        /// End on the timeline, ms.
        end_ms: u64,
    },
    /// `session.usage.updated` (~every 15 s): cumulative billable duration. Do not sum.
    UsageUpdated {
        /// `usage.seconds`, cumulative.
        seconds: f64,
        /// `context_window.usage_ratio` (0–1), when present.
        context_usage_ratio: Option<f64>,
    },
    /// `session.closed`: terminal. `reason` is `close_requested`, `expired`, `content`,
    /// `remote_hangup` or `connection_lost`.
    Closed {
        /// Why the session ended.
        reason: String,
        /// Final `usage.seconds`.
        seconds: f64,
    },
    /// `error`: a rejected command (the session stays open) or, before `session.started`, a
    /// failed startup.
    Error {
        /// `error.type`, e.g. `invalid_request_error`.
        error_type: String,
        /// `error.code`, e.g. `unknown_parameter`.
        code: Option<String>,
        /// `error.message`.
        message: String,
        /// `error.param`, e.g. `session.voice`.
        param: Option<String>,
    },
    /// `info`: a notice (e.g. `data_channel_permissions`).
    Info {
        /// `code`.
        code: String,
        /// `message`.
        message: String,
    },
    /// Any other event (mute acks, fixtures, decisions, sideband-only events).
    Other {
        /// The event type as received.
        kind: String,
    },
}

impl LiveEvent {
    /// The wire `type` of the event (for `Other`/`ContextAppended`, the one received).
    pub fn name(&self) -> &str {
        match self {
            LiveEvent::SessionStarted { .. } => "session.started",
            LiveEvent::SessionUpdated => "session.updated",
            LiveEvent::OutputAudio { .. } => "session.output_audio.delta",
            LiveEvent::InputTranscript { .. } => "session.input_transcript.delta",
            LiveEvent::OutputTranscript { .. } => "session.output_transcript.delta",
            LiveEvent::DelegationCreated { .. } => "session.delegation.created",
            LiveEvent::Response { .. } => "response.event",
            LiveEvent::UsageUpdated { .. } => "session.usage.updated",
            LiveEvent::Closed { .. } => "session.closed",
            LiveEvent::Error { .. } => "error",
            LiveEvent::Info { .. } => "info",
            LiveEvent::ContextAppended { kind, .. } | LiveEvent::Other { kind } => kind,
        }
    }
}

#[derive(Deserialize)]
struct Tag<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

#[derive(Deserialize)]
struct AudioWireIn<'a> {
    #[serde(borrow)]
    delta: Cow<'a, str>,
}

#[derive(Deserialize)]
struct StartedWire {
    session: StartedSessionWire,
}

#[derive(Deserialize)]
struct StartedSessionWire {
    id: String,
    expires_at: Option<i64>,
    audio: Option<StartedAudioWire>,
}

#[derive(Deserialize)]
struct StartedAudioWire {
    format: Option<StartedFormatWire>,
}

#[derive(Deserialize)]
struct StartedFormatWire {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct TranscriptWire {
    delta: String,
    start_ms: u64,
    end_ms: u64,
}

#[derive(Deserialize)]
struct DelegationCreatedWire {
    delegation: DelegationInfoWire,
    offset_ms: u64,
}

#[derive(Deserialize)]
struct DelegationInfoWire {
    id: String,
    target: String,
    response_id: Option<String>,
}

#[derive(Deserialize)]
struct ResponseEnvelopeWire {
    event: Value,
    delegation_id: Option<String>,
}

#[derive(Deserialize)]
struct AppendedWire {
    start_ms: u64,
    end_ms: u64,
}

#[derive(Deserialize)]
struct UsageUpdatedWire {
    usage: SecondsWire,
    context_window: Option<ContextWindowWire>,
}

#[derive(Deserialize)]
struct SecondsWire {
    seconds: f64,
}

#[derive(Deserialize)]
struct ContextWindowWire {
    usage_ratio: f64,
}

#[derive(Deserialize)]
struct ClosedWire {
    reason: String,
    usage: SecondsWire,
}

#[derive(Deserialize)]
struct InfoWire {
    code: String,
    message: String,
}

#[derive(Deserialize)]
struct FunctionItemWire {
    #[serde(rename = "type")]
    kind: String,
    status: Option<String>,
    id: Option<String>,
    call_id: Option<String>,
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct ResponsesUsageWire {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    total_tokens: Option<u64>,
    input_tokens_details: Option<CachedWire>,
}

#[derive(Deserialize)]
struct CachedWire {
    cached_tokens: Option<u64>,
}

fn inner_field<T: for<'de> Deserialize<'de>>(kind: &str, v: Value) -> Result<T, Error> {
    serde_json::from_value(v).map_err(|e| Error::Malformed {
        kind: format!("response.event {kind}"),
        detail: e.to_string(),
    })
}

/// Parses the nested Responses event of a `response.event` envelope.
fn parse_response_stream(mut event: Value) -> Result<ResponseStream, Error> {
    let kind = event
        .get("type")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| Error::Malformed {
            kind: "response.event".into(),
            detail: "the nested event has no string \"type\"".into(),
        })?;
    Ok(match kind.as_str() {
        "response.created" => ResponseStream::Created,
        "response.output_item.done" => {
            let item: FunctionItemWire = inner_field(&kind, event["item"].take())?;
            if item.kind != "function_call" || item.status.as_deref() != Some("completed") {
                return Ok(ResponseStream::Other { kind });
            }
            let call_id = item.call_id.ok_or_else(|| Error::Malformed {
                kind: format!("response.event {kind}"),
                detail: "function_call item without call_id".into(),
            })?;
            let name = item.name.ok_or_else(|| Error::Malformed {
                kind: format!("response.event {kind}"),
                detail: "function_call item without name".into(),
            })?;
            ResponseStream::FunctionCall(FunctionCall {
                item_id: item.id.unwrap_or_default(),
                call_id,
                name,
                arguments: item.arguments.unwrap_or_default(),
            })
        }
        "response.completed" => {
            let usage = event
                .get_mut("response")
                .and_then(|r| r.get_mut("usage"))
                .map(Value::take)
                .filter(|u| !u.is_null())
                .map(|u| inner_field::<ResponsesUsageWire>(&kind, u))
                .transpose()?
                .map(|u| Usage {
                    input_tokens: u.input_tokens.unwrap_or(0),
                    output_tokens: u.output_tokens.unwrap_or(0),
                    total_tokens: u.total_tokens.unwrap_or(0),
                    cached_tokens: u
                        .input_tokens_details
                        .and_then(|d| d.cached_tokens)
                        .unwrap_or(0),
                    ..Usage::default()
                });
            ResponseStream::Completed { usage }
        }
        "response.failed" | "response.incomplete" | "response.cancelled" => {
            ResponseStream::Ended { kind }
        }
        _ => ResponseStream::Other { kind },
    })
}

/// Parses one server text frame (§3.2). Unknown event types become [`LiveEvent::Other`]; unknown
/// fields are ignored.
///
/// # Errors
/// [`Error::Json`] for invalid JSON, [`Error::MissingType`] without a string `type`,
/// [`Error::Malformed`] when an event consumed here lacks a required field,
/// [`Error::Base64`] for an undecodable audio delta.
pub fn parse_server_event(text: &str) -> Result<LiveEvent, Error> {
    let tag: Tag<'_> = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            Error::MissingType {
                detail: e.to_string(),
            }
        } else {
            Error::Json {
                detail: e.to_string(),
            }
        }
    })?;
    let kind = tag.kind.as_ref();
    Ok(match kind {
        "session.output_audio.delta" => {
            let w: AudioWireIn<'_> = serde_json::from_str(text).map_err(|e| Error::Malformed {
                kind: kind.to_owned(),
                detail: e.to_string(),
            })?;
            let audio = AUDIO_B64
                .decode(w.delta.as_bytes())
                .map_err(|e| Error::Base64 {
                    kind: kind.to_owned(),
                    detail: e.to_string(),
                })?;
            LiveEvent::OutputAudio { audio }
        }
        "session.started" => {
            let w: StartedWire = fields(text, kind)?;
            LiveEvent::SessionStarted {
                session_id: w.session.id,
                expires_at: w.session.expires_at,
                format: w.session.audio.and_then(|a| a.format).map(|f| f.kind),
            }
        }
        "session.updated" => LiveEvent::SessionUpdated,
        "session.input_transcript.delta" | "session.output_transcript.delta" => {
            let w: TranscriptWire = fields(text, kind)?;
            if kind == "session.input_transcript.delta" {
                LiveEvent::InputTranscript {
                    delta: w.delta,
                    start_ms: w.start_ms,
                    end_ms: w.end_ms,
                }
            } else {
                LiveEvent::OutputTranscript {
                    delta: w.delta,
                    start_ms: w.start_ms,
                    end_ms: w.end_ms,
                }
            }
        }
        "session.delegation.created" => {
            let w: DelegationCreatedWire = fields(text, kind)?;
            LiveEvent::DelegationCreated {
                id: w.delegation.id,
                target: w.delegation.target,
                response_id: w.delegation.response_id,
                offset_ms: w.offset_ms,
            }
        }
        "response.event" => {
            let w: ResponseEnvelopeWire = fields(text, kind)?;
            LiveEvent::Response {
                delegation_id: w.delegation_id,
                event: parse_response_stream(w.event)?,
            }
        }
        "session.instructions.appended"
        | "session.thinking.appended"
        | "session.commentary.appended" => {
            let w: AppendedWire = fields(text, kind)?;
            LiveEvent::ContextAppended {
                kind: kind.to_owned(),
                start_ms: w.start_ms,
                end_ms: w.end_ms,
            }
        }
        "session.usage.updated" => {
            let w: UsageUpdatedWire = fields(text, kind)?;
            LiveEvent::UsageUpdated {
                seconds: w.usage.seconds,
                context_usage_ratio: w.context_window.map(|c| c.usage_ratio),
            }
        }
        "session.closed" => {
            let w: ClosedWire = fields(text, kind)?;
            LiveEvent::Closed {
                reason: w.reason,
                seconds: w.usage.seconds,
            }
        }
        "error" => {
            let w: ErrorEventWire = fields(text, kind)?;
            let Some(error) = w.error else {
                return Err(Error::Malformed {
                    kind: kind.to_owned(),
                    detail: "missing field `error`".to_owned(),
                });
            };
            LiveEvent::Error {
                error_type: error.kind.unwrap_or_default(),
                code: error.code,
                message: error.message.unwrap_or_default(),
                param: error.param,
            }
        }
        "info" => {
            let w: InfoWire = fields(text, kind)?;
            LiveEvent::Info {
                code: w.code,
                message: w.message,
            }
        }
        other => LiveEvent::Other {
            kind: other.to_owned(),
        },
    })
}

#[cfg(test)]
mod tests;
