//! OpenAI Realtime API wire protocol: client-event builders and a lenient server-event parser.
//!
//! Sans-IO: nothing here touches sockets, clocks or tasks. Every builder returns (or writes) the JSON
//! text of exactly one WebSocket **text** frame; [`parse_server_event`] turns one received text frame
//! into a [`ServerEvent`]. Audio is G.711 µ-law or A-law in both directions (no transcoding), carried
//! base64-encoded inside the JSON (`shared/realtime-protocol.md` §1.1, §5.6).
//!
//! Two dialects exist (`realtime-protocol.md` §1, §2, §4, §9):
//! * [`Dialect::Ga`] — the GA protocol (`gpt-realtime*`, nested `session.audio`, `session.type`).
//!   The only protocol accepted by api.openai.com since May 2026.
//! * [`Dialect::Beta`] — the legacy beta protocol (`OpenAI-Beta: realtime=v1`, flat session fields),
//!   kept for Azure-preview or beta-compatible servers.
//!
//! Client events are dialect-exact: a GA `session.update` contains no beta-only field (no
//! `temperature`, no `modalities`) and vice versa, because GA rejects the whole update on an unknown
//! field (§1.1, §9.1). Server events are parsed leniently: both spellings of every renamed event
//! (§3.1) are accepted whatever dialect was negotiated, unknown events become [`ServerEvent::Other`].
//!
//! The shapes were checked against the `openai` Python SDK 3.54.0 pydantic models
//! (`openai.types.realtime.*` for GA, `openai.types.beta.realtime.*` for beta); the unit tests run
//! `tests/protocol/validate_events.py` on everything built here.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::model::{HistoryItem, HistoryRole};
use crate::media::g711::Law;

// ---------------------------------------------------------------------------------------------
// Dialect
// ---------------------------------------------------------------------------------------------

/// Which Realtime wire protocol a session speaks (`realtime-protocol.md` §1.1, §9.1).
///
/// The dialect is chosen at connect time: beta is selected by the `OpenAI-Beta: realtime=v1`
/// header ([`Dialect::beta_header`]); GA sends no such header. Parses from `"ga"` / `"beta"`
/// (ASCII case-insensitive) and displays as the same lowercase words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Dialect {
    /// GA protocol (`session.type: "realtime"`, nested `audio.input` / `audio.output`). Default.
    #[default]
    Ga,
    /// Legacy beta protocol (`OpenAI-Beta: realtime=v1`, flat `input_audio_format` etc.).
    Beta,
    /// GPT-Live (`/v1/live/sessions`, `gpt-live-*`): `session.start`, one continuous output
    /// stream, model-controlled barge-in, delegated tools. Wire protocol in [`super::live`].
    Live,
}

impl Dialect {
    /// The handshake header that selects the beta protocol: `("OpenAI-Beta", "realtime=v1")` (§1.1).
    pub const BETA_HEADER: (&'static str, &'static str) = ("OpenAI-Beta", "realtime=v1");

    /// Extra HTTP header to send on the WebSocket handshake: `Some(("OpenAI-Beta", "realtime=v1"))`
    /// for beta, `None` for GA (sending it to GA selects the beta shape, which OpenAI now rejects
    /// with close code 4000 `beta_api_shape_disabled`; §1.1, §9.1).
    pub fn beta_header(self) -> Option<(&'static str, &'static str)> {
        match self {
            Dialect::Ga | Dialect::Live => None,
            Dialect::Beta => Some(Self::BETA_HEADER),
        }
    }

    /// The session audio-format value for a G.711 law, used for both input and output (§4.1, §9.3).
    ///
    /// * GA: an object — `{"type":"audio/pcmu"}` (µ-law) or `{"type":"audio/pcma"}` (A-law)
    ///   (SDK `RealtimeAudioFormats` → `AudioPCMU` / `AudioPCMA`).
    /// * Beta: a string — `"g711_ulaw"` or `"g711_alaw"` (SDK beta `Session.input_audio_format`).
    /// * Live: `{"type":"audio/pcmu"|"audio/pcma","rate":8000}` ([`super::live::audio_format`]).
    pub fn audio_format(self, law: Law) -> Value {
        match self {
            Dialect::Ga => to_value(&GaFormatWire::new(law)),
            Dialect::Beta => Value::from(beta_format(law)),
            Dialect::Live => super::live::audio_format(law),
        }
    }

    /// What this dialect can do, for the call's core ([`super::model::Capabilities`]): both
    /// Realtime dialects report the caller's speech and expect a truncate on barge-in, have
    /// `response.cancel`, and send model audio in per-response bursts.
    pub const fn capabilities(self) -> super::model::Capabilities {
        match self {
            Dialect::Ga | Dialect::Beta => super::model::Capabilities {
                truncates_on_barge_in: true,
                cancels_responses: true,
                continuous_output: false,
                continuous_input: false,
                transcribes_caller: false,
            },
            // live-protocol.md §3.3, §3.4: the model stops itself; no truncate, no cancel; one
            // continuous real-time stream each way.
            Dialect::Live => super::model::Capabilities {
                truncates_on_barge_in: false,
                cancels_responses: false,
                continuous_output: true,
                continuous_input: true,
                transcribes_caller: true,
            },
        }
    }

    /// The lowercase name, `"ga"` or `"beta"` (the inverse of [`FromStr`]).
    pub const fn as_str(self) -> &'static str {
        match self {
            Dialect::Ga => "ga",
            Dialect::Beta => "beta",
            Dialect::Live => "live",
        }
    }

    /// The endpoint used when no URL is configured: OpenAI's Realtime endpoint for GA and beta,
    /// its GPT-Live sessions endpoint for live.
    pub const fn default_url(self) -> &'static str {
        match self {
            Dialect::Ga | Dialect::Beta => super::client::OPENAI_REALTIME_URL,
            Dialect::Live => super::live::OPENAI_LIVE_URL,
        }
    }

    /// Whether the model goes into the URL as `?model=` (Realtime) or only into the session
    /// configuration (GPT-Live: "do not pass it as a URL query parameter", live-protocol.md §1.1).
    pub const fn model_in_url(self) -> bool {
        !matches!(self, Dialect::Live)
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Dialect {
    type Err = DialectParseError;

    /// Parses `"ga"`, `"beta"` or `"live"` (ASCII case-insensitive, surrounding whitespace
    /// ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("ga") {
            Ok(Dialect::Ga)
        } else if t.eq_ignore_ascii_case("beta") {
            Ok(Dialect::Beta)
        } else if t.eq_ignore_ascii_case("live") {
            Ok(Dialect::Live)
        } else {
            Err(DialectParseError(s.to_owned()))
        }
    }
}

/// Error of `"…".parse::<Dialect>()`: the input was not `"ga"`, `"beta"` or `"live"`. Holds the
/// input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown realtime dialect {0:?} (expected \"ga\", \"beta\" or \"live\")")]
pub struct DialectParseError(pub String);

// ---------------------------------------------------------------------------------------------
// Session settings
// ---------------------------------------------------------------------------------------------

/// Server-side voice activity detection settings, always sent as a complete `server_vad` object
/// (a partial object falls back to server defaults for the missing knobs; §4.1, §4.2, §9.11).
///
/// Wire shape (identical in both dialects; GA `audio.input.turn_detection`, beta `turn_detection`):
/// `{"type":"server_vad","threshold":0.5,"prefix_padding_ms":300,"silence_duration_ms":500,
///   "create_response":true,"interrupt_response":true}` (SDK GA `ServerVad`, beta `SessionTurnDetection`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TurnDetection {
    /// Activation threshold, 0.0–1.0 (higher needs louder speech). Default 0.5.
    pub threshold: f64,
    /// Audio kept before the detected speech onset, in milliseconds. Default 300.
    pub prefix_padding_ms: u32,
    /// Silence that ends a user turn, in milliseconds. Default 500 (servers otherwise use 200).
    pub silence_duration_ms: u32,
    /// Let the server start a response automatically when the user stops speaking. Default true.
    pub create_response: bool,
    /// Let the server cancel an in-flight response when the user starts speaking. Default true.
    pub interrupt_response: bool,
}

impl Default for TurnDetection {
    /// 0.5 / 300 ms / 500 ms / create_response / interrupt_response (§2.4).
    fn default() -> Self {
        TurnDetection {
            threshold: 0.5,
            prefix_padding_ms: 300,
            silence_duration_ms: 500,
            create_response: true,
            interrupt_response: true,
        }
    }
}

impl TurnDetection {
    /// The complete `server_vad` JSON object (see the type docs for the shape).
    pub fn to_json(&self) -> Value {
        to_value(&VadWire::from(self))
    }
}

/// A function tool the model may call (§4.1 `tools`, §5.4).
///
/// Wire shape (both dialects): `{"type":"function","name":…,"description":…,"parameters":<JSON Schema>}`
/// (SDK GA `RealtimeFunctionTool`, beta `session_update_event.SessionTool`).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDefinition {
    /// Function name the model uses in `function_call` items.
    pub name: String,
    /// When and how to call the function, for the model.
    pub description: String,
    /// JSON Schema of the arguments object, e.g. `{"type":"object","properties":{…},"required":[…]}`.
    pub parameters: Value,
}

impl ToolDefinition {
    /// The `{"type":"function", name, description, parameters}` JSON object.
    pub fn to_json(&self) -> Value {
        to_value(&ToolWire::from(self))
    }
}

/// Everything [`session_update`] sends: the complete per-call session configuration (§2.4, §4.1).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSettings {
    /// Model name, e.g. `"gpt-realtime"`. Sent in the GA `session.update`; in beta the model is only
    /// chosen by the `?model=` URL query (beta `session.model` is a closed SDK enum), so the beta
    /// update omits it. The connection layer puts it in the URL for both dialects.
    pub model: String,
    /// System instructions (`""` clears the server default).
    pub instructions: String,
    /// Output voice, e.g. `"marin"`, `"cedar"` (GA) or `"alloy"` (both). Locked after the first
    /// audio output of the session (§9.12).
    pub voice: String,
    /// G.711 law used for both input and output audio (no transcoding).
    pub law: Law,
    /// Server VAD settings (always sent complete).
    pub turn_detection: TurnDetection,
    /// Input (caller) transcription model, e.g. `"gpt-4o-mini-transcribe"`; `None` leaves
    /// transcription off (the field is omitted). Enables [`ServerEvent::InputTranscriptionCompleted`].
    pub transcription_model: Option<String>,
    /// Function tools; always sent (an empty list clears tools) with `tool_choice: "auto"`.
    pub tools: Vec<ToolDefinition>,
}

// ---------------------------------------------------------------------------------------------
// Client events
// ---------------------------------------------------------------------------------------------
//
// Client events are serialised from the private structs below, so keys appear in declaration
// order with `type` first (readable in logs and captures) and the field set of each dialect is
// visible in one place.

/// Serialises a client event. The wire structs only have string keys and plain values, which
/// serde_json cannot fail on (non-finite floats become `null`).
fn to_text<T: Serialize>(event: &T) -> String {
    serde_json::to_string(event).expect("client event structs always serialise")
}

/// [`to_text`] into a [`Value`]; same infallibility argument.
fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("client event structs always serialise")
}

/// GA format object `{"type":"audio/pcmu"|"audio/pcma"}`.
#[derive(Serialize)]
struct GaFormatWire {
    #[serde(rename = "type")]
    kind: &'static str,
}

impl GaFormatWire {
    fn new(law: Law) -> Self {
        let kind = match law {
            Law::Mu => "audio/pcmu",
            Law::A => "audio/pcma",
        };
        GaFormatWire { kind }
    }
}

/// Beta format string.
fn beta_format(law: Law) -> &'static str {
    match law {
        Law::Mu => "g711_ulaw",
        Law::A => "g711_alaw",
    }
}

#[derive(Serialize)]
struct VadWire {
    #[serde(rename = "type")]
    kind: &'static str,
    threshold: f64,
    prefix_padding_ms: u32,
    silence_duration_ms: u32,
    create_response: bool,
    interrupt_response: bool,
}

impl From<&TurnDetection> for VadWire {
    fn from(t: &TurnDetection) -> Self {
        VadWire {
            kind: "server_vad",
            threshold: t.threshold,
            prefix_padding_ms: t.prefix_padding_ms,
            silence_duration_ms: t.silence_duration_ms,
            create_response: t.create_response,
            interrupt_response: t.interrupt_response,
        }
    }
}

#[derive(Serialize)]
struct ToolWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    description: &'a str,
    parameters: &'a Value,
}

impl<'a> From<&'a ToolDefinition> for ToolWire<'a> {
    fn from(t: &'a ToolDefinition) -> Self {
        ToolWire {
            kind: "function",
            name: &t.name,
            description: &t.description,
            parameters: &t.parameters,
        }
    }
}

#[derive(Serialize)]
struct TranscriptionWire<'a> {
    model: &'a str,
}

#[derive(Serialize)]
struct SessionUpdateWire<S> {
    #[serde(rename = "type")]
    kind: &'static str,
    session: S,
}

/// GA `RealtimeSessionCreateRequest` subset.
#[derive(Serialize)]
struct GaSessionWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    model: &'a str,
    output_modalities: [&'static str; 1],
    instructions: &'a str,
    audio: GaAudioWire<'a>,
    tools: Vec<ToolWire<'a>>,
    tool_choice: &'static str,
}

#[derive(Serialize)]
struct GaAudioWire<'a> {
    input: GaAudioInputWire<'a>,
    output: GaAudioOutputWire<'a>,
}

#[derive(Serialize)]
struct GaAudioInputWire<'a> {
    format: GaFormatWire,
    #[serde(skip_serializing_if = "Option::is_none")]
    transcription: Option<TranscriptionWire<'a>>,
    turn_detection: VadWire,
}

#[derive(Serialize)]
struct GaAudioOutputWire<'a> {
    format: GaFormatWire,
    voice: &'a str,
}

/// Beta `session_update_event.Session` subset.
#[derive(Serialize)]
struct BetaSessionWire<'a> {
    modalities: [&'static str; 2],
    instructions: &'a str,
    voice: &'a str,
    input_audio_format: &'static str,
    output_audio_format: &'static str,
    turn_detection: VadWire,
    #[serde(skip_serializing_if = "Option::is_none")]
    input_audio_transcription: Option<TranscriptionWire<'a>>,
    tools: Vec<ToolWire<'a>>,
    tool_choice: &'static str,
}

/// `session.update` (§2.1, §2.4, §4.1): configure the session; send right after `session.created`
/// and wait for `session.updated` before trusting the format.
///
/// GA (SDK `SessionUpdateEvent` with `RealtimeSessionCreateRequest`):
/// ```json
/// {"type":"session.update","session":{"type":"realtime","model":"gpt-realtime",
///  "output_modalities":["audio"],"instructions":"…",
///  "audio":{"input":{"format":{"type":"audio/pcmu"},"transcription":{"model":"…"},
///                    "turn_detection":{"type":"server_vad",…}},
///           "output":{"format":{"type":"audio/pcmu"},"voice":"marin"}},
///  "tools":[{"type":"function",…}],"tool_choice":"auto"}}
/// ```
/// Beta (SDK beta `SessionUpdateEvent`; no `model`, see [`SessionSettings::model`]):
/// ```json
/// {"type":"session.update","session":{"modalities":["audio","text"],"instructions":"…",
///  "voice":"alloy","input_audio_format":"g711_ulaw","output_audio_format":"g711_ulaw",
///  "turn_detection":{"type":"server_vad",…},"input_audio_transcription":{"model":"…"},
///  "tools":[…],"tool_choice":"auto"}}
/// ```
/// `transcription` / `input_audio_transcription` is omitted when
/// [`SessionSettings::transcription_model`] is `None`. Neither shape contains a field of the other
/// dialect (in particular no `temperature`). Keys are emitted in the order shown.
///
/// Live has no `session.update` of these fields: its configuration is the immutable
/// `session.start` ([`super::live::session_start`] of [`super::live::LiveSessionSettings::from_realtime`]).
pub fn session_update(dialect: Dialect, s: &SessionSettings) -> String {
    let tools = || s.tools.iter().map(ToolWire::from).collect::<Vec<_>>();
    let transcription = || {
        s.transcription_model
            .as_deref()
            .map(|model| TranscriptionWire { model })
    };
    match dialect {
        Dialect::Ga => to_text(&SessionUpdateWire {
            kind: "session.update",
            session: GaSessionWire {
                kind: "realtime",
                model: &s.model,
                output_modalities: ["audio"],
                instructions: &s.instructions,
                audio: GaAudioWire {
                    input: GaAudioInputWire {
                        format: GaFormatWire::new(s.law),
                        transcription: transcription(),
                        turn_detection: VadWire::from(&s.turn_detection),
                    },
                    output: GaAudioOutputWire {
                        format: GaFormatWire::new(s.law),
                        voice: &s.voice,
                    },
                },
                tools: tools(),
                tool_choice: "auto",
            },
        }),
        Dialect::Live => {
            super::live::session_start(&super::live::LiveSessionSettings::from_realtime(
                s,
                super::models::DEFAULT_LIVE_BACKEND_MODEL,
            ))
        }
        Dialect::Beta => to_text(&SessionUpdateWire {
            kind: "session.update",
            session: BetaSessionWire {
                modalities: ["audio", "text"],
                instructions: &s.instructions,
                voice: &s.voice,
                input_audio_format: beta_format(s.law),
                output_audio_format: beta_format(s.law),
                turn_detection: VadWire::from(&s.turn_detection),
                input_audio_transcription: transcription(),
                tools: tools(),
                tool_choice: "auto",
            },
        }),
    }
}

const APPEND_PREFIX: &str = r#"{"type":"input_audio_buffer.append","audio":""#;
const APPEND_SUFFIX: &str = r#""}"#;

/// `input_audio_buffer.append` (§2.1, §5.6): stream caller audio. Hot path (≈ 50 calls/s per call).
///
/// Clears `out`, then writes `{"type":"input_audio_buffer.append","audio":"<base64>"}` into it,
/// where `<base64>` is standard padded base64 of `audio` (raw G.711 bytes in the session's input
/// format; 160 bytes = 20 ms → 216 base64 chars). Same in both dialects (SDK
/// `InputAudioBufferAppendEvent`). The base64 is encoded straight into `out` (no intermediate
/// buffers); once `out` has grown to the frame size, no further allocation happens. The standard
/// base64 alphabet needs no JSON escaping. Max 15 MiB of audio per event; the server sends no ack.
pub fn input_audio_buffer_append(out: &mut String, audio: &[u8]) {
    write_audio_event(out, APPEND_PREFIX, audio);
}

/// Clears `out` and writes `prefix`, the standard padded base64 of `audio`, then `"}` — the hot
/// path of every dialect's audio append (`prefix` is `{"type":"…","audio":"`). The base64 is
/// encoded straight into `out`; once `out` has grown to the frame size nothing is allocated.
pub(crate) fn write_audio_event(out: &mut String, prefix: &str, audio: &[u8]) {
    out.clear();
    out.reserve(prefix.len() + audio.len().div_ceil(3) * 4 + APPEND_SUFFIX.len());
    out.push_str(prefix);
    STANDARD.encode_string(audio, out);
    out.push_str(APPEND_SUFFIX);
}

#[derive(Serialize)]
struct TruncateWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    item_id: &'a str,
    content_index: u32,
    audio_end_ms: u64,
}

/// `conversation.item.truncate` (§2.1, §5.1): tell the server where playback of an assistant audio
/// item actually stopped. Same in both dialects (SDK `ConversationItemTruncateEvent`):
/// `{"type":"conversation.item.truncate","item_id":…,"content_index":0,"audio_end_ms":1234}`.
///
/// `item_id` is the assistant item carried on the audio deltas, `content_index` is normally 0,
/// `audio_end_ms` is milliseconds of that item's audio actually played (G.711: bytes / 8), never
/// more than was received. Acked by [`ServerEvent::Truncated`].
pub fn conversation_item_truncate(item_id: &str, content_index: u32, audio_end_ms: u64) -> String {
    to_text(&TruncateWire {
        kind: "conversation.item.truncate",
        item_id,
        content_index,
        audio_end_ms,
    })
}

#[derive(Serialize)]
struct ItemIdEventWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    item_id: &'a str,
}

/// `conversation.item.delete` (§2.1, §5.1): remove an item, e.g. an interrupted assistant item of
/// which nothing was played. Same in both dialects (SDK `ConversationItemDeleteEvent`):
/// `{"type":"conversation.item.delete","item_id":…}`.
pub fn conversation_item_delete(item_id: &str) -> String {
    to_text(&ItemIdEventWire {
        kind: "conversation.item.delete",
        item_id,
    })
}

#[derive(Serialize)]
struct ResponseCreateWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<ResponseParamsWire<'a>>,
}

#[derive(Serialize)]
struct ResponseParamsWire<'a> {
    instructions: &'a str,
}

/// `response.create` (§2.1, §2.3): ask the model to respond (needed after a function output and for
/// the greeting; with server VAD normal turns start automatically). Same in both dialects
/// (SDK `ResponseCreateEvent`):
/// `{"type":"response.create"}` or, with per-response instructions (used for the greeting),
/// `{"type":"response.create","response":{"instructions":"…"}}`.
pub fn response_create(instructions: Option<&str>) -> String {
    to_text(&ResponseCreateWire {
        kind: "response.create",
        response: instructions.map(|instructions| ResponseParamsWire { instructions }),
    })
}

/// `response.cancel` (§2.1, §5.2): stop the in-progress response of the default conversation.
/// Same in both dialects (SDK `ResponseCancelEvent`): `{"type":"response.cancel"}`. If nothing is
/// active the server answers with error code `response_cancel_not_active` (benign).
pub fn response_cancel() -> String {
    r#"{"type":"response.cancel"}"#.to_owned()
}

#[derive(Serialize)]
struct ItemCreateWire<I> {
    #[serde(rename = "type")]
    kind: &'static str,
    item: I,
}

#[derive(Serialize)]
struct UserMessageWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    content: [InputTextWire<'a>; 1],
}

#[derive(Serialize)]
struct InputTextWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct FunctionOutputWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    call_id: &'a str,
    output: &'a str,
}

/// `conversation.item.create` with a user text message (§2.1, §2.2):
/// `{"type":"conversation.item.create","item":{"type":"message","role":"user",
///   "content":[{"type":"input_text","text":"…"}]}}`.
///
/// The shape is currently identical in both dialects (SDK GA `RealtimeConversationItemUserMessage`,
/// beta flat `ConversationItem`); the dialect parameter keeps call sites dialect-aware. Live has
/// no conversation items: there the text goes in as `session.instructions.append`.
pub fn user_text_message(dialect: Dialect, text: &str) -> String {
    match dialect {
        Dialect::Live => super::live::instructions_append(text),
        Dialect::Ga | Dialect::Beta => to_text(&ItemCreateWire {
            kind: "conversation.item.create",
            item: UserMessageWire {
                kind: "message",
                role: "user",
                content: [InputTextWire {
                    kind: "input_text",
                    text,
                }],
            },
        }),
    }
}

/// `conversation.item.create` with one item of a replacement session's history (§2.2, §5.5):
/// a `message` (`user` `input_text`, `assistant` `output_text` — beta `text` —, `system`
/// `input_text`), a `function_call` (`call_id`, `name`, `arguments`) or a
/// `function_call_output`. GPT-Live has no items (its history goes into `session.start`):
/// returns an empty string there.
pub fn history_item(dialect: Dialect, item: &HistoryItem) -> String {
    if dialect == Dialect::Live {
        return String::new();
    }
    let value = match item {
        HistoryItem::Message { role, text } => {
            let (role, part) = match (role, dialect) {
                (HistoryRole::Caller, _) => ("user", "input_text"),
                (HistoryRole::Agent, Dialect::Beta) => ("assistant", "text"),
                (HistoryRole::Agent, _) => ("assistant", "output_text"),
                (HistoryRole::System, _) => ("system", "input_text"),
            };
            serde_json::json!({"type": "message", "role": role,
                               "content": [{"type": part, "text": text}]})
        }
        HistoryItem::ToolCall {
            call_id,
            name,
            arguments,
        } => serde_json::json!({"type": "function_call", "call_id": call_id, "name": name,
                                "arguments": arguments}),
        HistoryItem::ToolOutput { call_id, output } => {
            return function_call_output(call_id, output)
        }
    };
    serde_json::json!({"type": "conversation.item.create", "item": value}).to_string()
}

/// `conversation.item.create` with a function result (§2.2, §5.4):
/// `{"type":"conversation.item.create","item":{"type":"function_call_output","call_id":…,"output":"…"}}`.
/// Same in both dialects (SDK GA `RealtimeConversationItemFunctionCallOutput`). `output` is a
/// string, usually JSON. The server does not respond on its own: send [`response_create`] after.
pub fn function_call_output(call_id: &str, output: &str) -> String {
    to_text(&ItemCreateWire {
        kind: "conversation.item.create",
        item: FunctionOutputWire {
            kind: "function_call_output",
            call_id,
            output,
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Server events
// ---------------------------------------------------------------------------------------------

/// One function call the model made, as listed in `response.done`'s `response.output`
/// (item `{type:"function_call", id, call_id, name, arguments}`; §3.4, §5.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCall {
    /// The `function_call` item's id (`item_…`).
    pub item_id: String,
    /// Id to answer with in [`function_call_output`].
    pub call_id: String,
    /// Function name (also present in beta, unlike `response.function_call_arguments.done`).
    pub name: String,
    /// Arguments as a JSON string (empty if the server omitted them).
    pub arguments: String,
}

/// Token usage of one response (`response.usage`; §3.4), in tokens. Missing counters are 0.
///
/// `input_token_details` splits the input into text and audio tokens and says how many of them
/// were cached (`cached_tokens`; GA adds `cached_tokens_details` with the text/audio split,
/// beta does not); `output_token_details` splits the output into text and audio tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Input tokens billed for this response (the whole conversation, cached part included).
    pub input_tokens: u64,
    /// Output tokens (text + audio).
    pub output_tokens: u64,
    /// `input_tokens + output_tokens` as reported by the server.
    pub total_tokens: u64,
    /// `input_token_details.text_tokens` (cached ones included).
    pub input_text_tokens: u64,
    /// `input_token_details.audio_tokens` (cached ones included).
    pub input_audio_tokens: u64,
    /// `input_token_details.cached_tokens`: input tokens billed at the cached rate.
    pub cached_tokens: u64,
    /// `input_token_details.cached_tokens_details.text_tokens` (GA only; else 0).
    pub cached_text_tokens: u64,
    /// `input_token_details.cached_tokens_details.audio_tokens` (GA only; else 0).
    pub cached_audio_tokens: u64,
    /// `output_token_details.text_tokens`.
    pub output_text_tokens: u64,
    /// `output_token_details.audio_tokens`.
    pub output_audio_tokens: u64,
}

/// A server event, parsed by [`parse_server_event`] (§3). Ids are the server's strings
/// (`item_…`, `resp_…`, `call_…`); times are milliseconds.
///
/// Renamed events are accepted under both spellings (§3.1), whatever the dialect; the canonical
/// GA name of a variant is [`ServerEvent::name`].
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// `session.created` (first event after the handshake): `session.id` (`sess_…`) and
    /// `session.expires_at` (unix seconds; the 60-minute cap, §5.5), when present.
    SessionCreated {
        /// `session.id`.
        session_id: Option<String>,
        /// `session.expires_at`, unix seconds.
        expires_at: Option<i64>,
    },
    /// `session.updated`: ack of `session.update`, carrying the full effective `session` object
    /// (GA nested or beta flat shape, verbatim) — check the audio formats there (§2.4, §9.3).
    SessionUpdated {
        /// The `session` object as received.
        raw: Value,
    },
    /// `input_audio_buffer.speech_started`: caller started talking (barge-in trigger, §5.2).
    SpeechStarted {
        /// Offset of the speech onset in all audio appended this session (includes prefix padding).
        audio_start_ms: u64,
        /// The user item that will be created.
        item_id: String,
    },
    /// `input_audio_buffer.speech_stopped`: caller stopped talking.
    SpeechStopped {
        /// Offset of the end of speech in all audio appended this session.
        audio_end_ms: u64,
        /// The user item being created.
        item_id: String,
    },
    /// `input_audio_buffer.committed`: the input buffer became a user item.
    Committed {
        /// The new user item.
        item_id: String,
    },
    /// `response.created`: a response started (`response.id`).
    ResponseCreated {
        /// `response.id` (`resp_…`).
        response_id: String,
    },
    /// `response.done` (always sent, whatever the outcome; §3.4).
    ResponseDone {
        /// `response.id`.
        response_id: String,
        /// `completed` | `cancelled` | `failed` | `incomplete` (empty if omitted).
        status: String,
        /// `status_details.reason`: `turn_detected` / `client_cancelled` (cancelled),
        /// `max_output_tokens` / `content_filter` (incomplete).
        reason: Option<String>,
        /// `status_details.error.code` of a failed response.
        error_code: Option<String>,
        /// `status_details.error.message` of a failed response.
        error_message: Option<String>,
        /// The `function_call` items of `response.output`, in order (§5.4).
        function_calls: Vec<FunctionCall>,
        /// `response.usage`, when present.
        usage: Option<Usage>,
    },
    /// `response.output_item.added`: an output item (message or function call) started.
    OutputItemAdded {
        /// Owning response.
        response_id: String,
        /// `item.id`.
        item_id: String,
        /// `item.type`: `"message"` | `"function_call"` (or MCP item types).
        kind: String,
        /// `item.name` (function calls).
        name: Option<String>,
        /// `item.call_id` (function calls).
        call_id: Option<String>,
    },
    /// `response.output_item.done`: an output item is final.
    OutputItemDone {
        /// Owning response.
        response_id: String,
        /// `item.id`.
        item_id: String,
        /// `item.type`: `"message"` | `"function_call"` (or MCP item types).
        kind: String,
        /// `item.name` (function calls).
        name: Option<String>,
        /// `item.call_id` (function calls).
        call_id: Option<String>,
        /// `item.arguments`, a JSON string (function calls).
        arguments: Option<String>,
    },
    /// `response.output_audio.delta` (GA) / `response.audio.delta` (beta): assistant audio in the
    /// session's output format (G.711: 8 bytes per ms). Arbitrary size, faster than real time (§5.6).
    AudioDelta {
        /// Owning response.
        response_id: String,
        /// The assistant item the audio belongs to (the one to truncate on barge-in).
        item_id: String,
        /// Content part index (0 for the audio part).
        content_index: u32,
        /// The audio bytes, base64-decoded.
        audio: Vec<u8>,
    },
    /// `response.output_audio.done` / `response.audio.done`: no more audio for this item
    /// (also sent for cancelled responses).
    AudioDone {
        /// Owning response.
        response_id: String,
        /// The assistant item.
        item_id: String,
    },
    /// Text of what the assistant says: `response.output_audio_transcript.delta` /
    /// `response.audio_transcript.delta`, and for text-modality responses
    /// `response.output_text.delta` / `response.text.delta`.
    TranscriptDelta {
        /// The assistant item.
        item_id: String,
        /// Text fragment.
        delta: String,
    },
    /// `response.output_audio_transcript.done` / `response.audio_transcript.done` (field
    /// `transcript`), or `response.output_text.done` / `response.text.done` (field `text`).
    TranscriptDone {
        /// The assistant item.
        item_id: String,
        /// Complete text of the item.
        transcript: String,
    },
    /// `conversation.item.input_audio_transcription.completed`: caller transcript of a user item
    /// (asynchronous; only with transcription enabled).
    InputTranscriptionCompleted {
        /// The user item.
        item_id: String,
        /// The transcript.
        transcript: String,
    },
    /// `response.function_call_arguments.done` (§5.4).
    FunctionCallArgumentsDone {
        /// Owning response.
        response_id: String,
        /// The `function_call` item.
        item_id: String,
        /// Id to answer with in [`function_call_output`].
        call_id: String,
        /// Function name — GA only; in beta take it from the output item / [`FunctionCall`].
        name: Option<String>,
        /// Arguments as a JSON string.
        arguments: String,
    },
    /// `error` (§3.5, §5.9). Most errors are non-fatal; the session stays open.
    Error {
        /// `error.type`, e.g. `invalid_request_error`, `server_error` (empty if omitted).
        kind: String,
        /// `error.code`, e.g. `session_expired`, `response_cancel_not_active`; often null.
        code: Option<String>,
        /// `error.message` (empty if omitted). Truncate errors come with `code: null`: match on it.
        message: String,
        /// `error.param`, the offending field.
        param: Option<String>,
        /// `error.event_id`: the client `event_id` of the failed event, if one was set.
        event_id: Option<String>,
    },
    /// `conversation.item.truncated`: ack of [`conversation_item_truncate`].
    Truncated {
        /// The truncated item.
        item_id: String,
        /// Cut point in ms of the item's audio.
        audio_end_ms: u64,
    },
    /// Any other event, known (e.g. `rate_limits.updated`, `conversation.item.added`,
    /// `conversation.item.created`, `response.content_part.added`) or unknown. Not an error.
    Other {
        /// The event's `type`, verbatim.
        kind: String,
    },
}

impl ServerEvent {
    /// The event's type: the canonical GA name for parsed variants (e.g. `AudioDelta` →
    /// `"response.output_audio.delta"`, also when the beta spelling was received; transcript
    /// variants → the `output_audio_transcript` names), the verbatim `type` for [`ServerEvent::Other`].
    pub fn name(&self) -> &str {
        match self {
            ServerEvent::SessionCreated { .. } => "session.created",
            ServerEvent::SessionUpdated { .. } => "session.updated",
            ServerEvent::SpeechStarted { .. } => "input_audio_buffer.speech_started",
            ServerEvent::SpeechStopped { .. } => "input_audio_buffer.speech_stopped",
            ServerEvent::Committed { .. } => "input_audio_buffer.committed",
            ServerEvent::ResponseCreated { .. } => "response.created",
            ServerEvent::ResponseDone { .. } => "response.done",
            ServerEvent::OutputItemAdded { .. } => "response.output_item.added",
            ServerEvent::OutputItemDone { .. } => "response.output_item.done",
            ServerEvent::AudioDelta { .. } => "response.output_audio.delta",
            ServerEvent::AudioDone { .. } => "response.output_audio.done",
            ServerEvent::TranscriptDelta { .. } => "response.output_audio_transcript.delta",
            ServerEvent::TranscriptDone { .. } => "response.output_audio_transcript.done",
            ServerEvent::InputTranscriptionCompleted { .. } => {
                "conversation.item.input_audio_transcription.completed"
            }
            ServerEvent::FunctionCallArgumentsDone { .. } => {
                "response.function_call_arguments.done"
            }
            ServerEvent::Error { .. } => "error",
            ServerEvent::Truncated { .. } => "conversation.item.truncated",
            ServerEvent::Other { kind } => kind,
        }
    }
}

/// Why [`parse_server_event`] rejected a frame. Messages are lowercase and name the event type
/// where one was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The frame is not syntactically valid JSON.
    #[error("server event is not valid json: {detail}")]
    Json {
        /// serde_json's description, with position.
        detail: String,
    },
    /// The frame is JSON but not an object with a string `type` field.
    #[error("server event has no string \"type\" field: {detail}")]
    MissingType {
        /// serde_json's description.
        detail: String,
    },
    /// An event this module consumes lacks a required field or has a field of the wrong type.
    #[error("malformed {kind} event: {detail}")]
    Malformed {
        /// The event `type` as received.
        kind: String,
        /// What is wrong (field name and position).
        detail: String,
    },
    /// The `delta` of an audio delta event is not valid base64.
    #[error("bad base64 audio in {kind} event: {detail}")]
    Base64 {
        /// The event `type` as received.
        kind: String,
        /// The decoder's description.
        detail: String,
    },
}

/// Base64 decoder for audio deltas: standard alphabet, padding optional.
pub(crate) const AUDIO_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Deserialize)]
struct Tag<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

#[derive(Deserialize)]
struct AudioDeltaWire<'a> {
    response_id: String,
    item_id: String,
    content_index: u32,
    #[serde(borrow)]
    delta: Cow<'a, str>,
}

#[derive(Deserialize)]
struct AudioDoneWire {
    response_id: String,
    item_id: String,
}

#[derive(Deserialize)]
struct TextDeltaWire {
    item_id: String,
    delta: String,
}

#[derive(Deserialize)]
struct TranscriptDoneWire {
    item_id: String,
    transcript: String,
}

#[derive(Deserialize)]
struct TextDoneWire {
    item_id: String,
    text: String,
}

#[derive(Deserialize)]
struct SessionCreatedWire {
    session: SessionInfoWire,
}

#[derive(Deserialize)]
struct SessionInfoWire {
    id: Option<String>,
    expires_at: Option<i64>,
}

#[derive(Deserialize)]
struct SessionUpdatedWire {
    session: Value,
}

#[derive(Deserialize)]
struct SpeechStartedWire {
    audio_start_ms: u64,
    item_id: String,
}

#[derive(Deserialize)]
struct SpeechStoppedWire {
    audio_end_ms: u64,
    item_id: String,
}

#[derive(Deserialize)]
struct ItemIdWire {
    item_id: String,
}

#[derive(Deserialize)]
struct ResponseCreatedWire {
    response: ResponseIdWire,
}

#[derive(Deserialize)]
struct ResponseIdWire {
    id: String,
}

#[derive(Deserialize)]
struct ResponseDoneWire {
    response: ResponseBodyWire,
}

#[derive(Deserialize)]
struct ResponseBodyWire {
    id: String,
    status: Option<String>,
    status_details: Option<StatusDetailsWire>,
    output: Option<Vec<ItemWire>>,
    usage: Option<UsageWire>,
}

#[derive(Deserialize)]
struct StatusDetailsWire {
    reason: Option<String>,
    error: Option<StatusErrorWire>,
}

#[derive(Deserialize)]
struct StatusErrorWire {
    code: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct UsageWire {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    total_tokens: Option<u64>,
    input_token_details: Option<InputTokenDetailsWire>,
    output_token_details: Option<TokenSplitWire>,
}

#[derive(Deserialize)]
struct InputTokenDetailsWire {
    text_tokens: Option<u64>,
    audio_tokens: Option<u64>,
    cached_tokens: Option<u64>,
    cached_tokens_details: Option<TokenSplitWire>,
}

#[derive(Deserialize)]
struct TokenSplitWire {
    text_tokens: Option<u64>,
    audio_tokens: Option<u64>,
}

impl From<UsageWire> for Usage {
    fn from(u: UsageWire) -> Usage {
        let input = u.input_token_details;
        let cached = input
            .as_ref()
            .and_then(|d| d.cached_tokens_details.as_ref());
        let output = u.output_token_details;
        Usage {
            input_tokens: u.input_tokens.unwrap_or(0),
            output_tokens: u.output_tokens.unwrap_or(0),
            total_tokens: u.total_tokens.unwrap_or(0),
            input_text_tokens: input.as_ref().and_then(|d| d.text_tokens).unwrap_or(0),
            input_audio_tokens: input.as_ref().and_then(|d| d.audio_tokens).unwrap_or(0),
            cached_tokens: input.as_ref().and_then(|d| d.cached_tokens).unwrap_or(0),
            cached_text_tokens: cached.and_then(|c| c.text_tokens).unwrap_or(0),
            cached_audio_tokens: cached.and_then(|c| c.audio_tokens).unwrap_or(0),
            output_text_tokens: output.as_ref().and_then(|d| d.text_tokens).unwrap_or(0),
            output_audio_tokens: output.as_ref().and_then(|d| d.audio_tokens).unwrap_or(0),
        }
    }
}

#[derive(Deserialize)]
struct ItemWire {
    #[serde(rename = "type")]
    kind: Option<String>,
    id: Option<String>,
    name: Option<String>,
    call_id: Option<String>,
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct OutputItemWire {
    response_id: String,
    item: ItemWire,
}

#[derive(Deserialize)]
struct FunctionArgsDoneWire {
    response_id: String,
    item_id: String,
    call_id: String,
    name: Option<String>,
    arguments: String,
}

/// An `error` event (Realtime and GPT-Live share the shape: realtime-protocol.md, live-protocol.md
/// §3.8).
#[derive(Deserialize)]
pub(super) struct ErrorEventWire {
    pub(super) error: Option<ErrorBodyWire>,
}

/// The `error` object of an `error` event.
#[derive(Deserialize, Default)]
pub(super) struct ErrorBodyWire {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) code: Option<String>,
    pub(super) message: Option<String>,
    pub(super) param: Option<String>,
    pub(super) event_id: Option<String>,
}

#[derive(Deserialize)]
struct TruncatedWire {
    item_id: String,
    audio_end_ms: u64,
}

/// Deserialises the event-specific fields of an already-tagged frame.
/// Reads the wire struct of a server event of type `kind` from its text (Realtime and GPT-Live).
///
/// # Errors
/// [`Error::Malformed`] naming the event type when the text does not fit the struct.
pub(super) fn fields<'a, T: Deserialize<'a>>(text: &'a str, kind: &str) -> Result<T, Error> {
    serde_json::from_str(text).map_err(|e| Error::Malformed {
        kind: kind.to_owned(),
        detail: e.to_string(),
    })
}

/// Splits an output item into `(item_id, kind)`, both required for the output-item events.
fn item_identity(item: &mut ItemWire, kind: &str) -> Result<(String, String), Error> {
    let missing = |field: &str| Error::Malformed {
        kind: kind.to_owned(),
        detail: format!("missing field `item.{field}`"),
    };
    let id = item.id.take().ok_or_else(|| missing("id"))?;
    let item_kind = item.kind.take().ok_or_else(|| missing("type"))?;
    Ok((id, item_kind))
}

/// Parses one server text frame (§3).
///
/// Lenient by design: both beta and GA spellings of renamed events are accepted (§3.1), fields
/// this module does not use are ignored, and any event type it does not consume becomes
/// [`ServerEvent::Other`] (without looking at its fields). Errors only for: invalid JSON
/// ([`Error::Json`]), no string `type` ([`Error::MissingType`]), a consumed event missing a
/// required field or with a wrongly typed one ([`Error::Malformed`]), undecodable audio
/// ([`Error::Base64`]). An `error` event always parses (missing `error` fields become empty).
///
/// Cost: the frame is scanned twice (type tag, then the event's fields); audio deltas borrow the
/// base64 text from `text` and decode it once, straight into the returned `Vec<u8>`.
pub fn parse_server_event(text: &str) -> Result<ServerEvent, Error> {
    let tag: Tag<'_> = serde_json::from_str(text).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            Error::Json {
                detail: e.to_string(),
            }
        } else {
            Error::MissingType {
                detail: e.to_string(),
            }
        }
    })?;
    let kind: &str = &tag.kind;
    let event = match kind {
        "response.output_audio.delta" | "response.audio.delta" => {
            let w: AudioDeltaWire<'_> = fields(text, kind)?;
            let audio = AUDIO_B64
                .decode(w.delta.as_bytes())
                .map_err(|e| Error::Base64 {
                    kind: kind.to_owned(),
                    detail: e.to_string(),
                })?;
            ServerEvent::AudioDelta {
                response_id: w.response_id,
                item_id: w.item_id,
                content_index: w.content_index,
                audio,
            }
        }
        "response.output_audio.done" | "response.audio.done" => {
            let w: AudioDoneWire = fields(text, kind)?;
            ServerEvent::AudioDone {
                response_id: w.response_id,
                item_id: w.item_id,
            }
        }
        "response.output_audio_transcript.delta"
        | "response.audio_transcript.delta"
        | "response.output_text.delta"
        | "response.text.delta" => {
            let w: TextDeltaWire = fields(text, kind)?;
            ServerEvent::TranscriptDelta {
                item_id: w.item_id,
                delta: w.delta,
            }
        }
        "response.output_audio_transcript.done" | "response.audio_transcript.done" => {
            let w: TranscriptDoneWire = fields(text, kind)?;
            ServerEvent::TranscriptDone {
                item_id: w.item_id,
                transcript: w.transcript,
            }
        }
        "response.output_text.done" | "response.text.done" => {
            let w: TextDoneWire = fields(text, kind)?;
            ServerEvent::TranscriptDone {
                item_id: w.item_id,
                transcript: w.text,
            }
        }
        "session.created" => {
            let w: SessionCreatedWire = fields(text, kind)?;
            ServerEvent::SessionCreated {
                session_id: w.session.id,
                expires_at: w.session.expires_at,
            }
        }
        "session.updated" => {
            let w: SessionUpdatedWire = fields(text, kind)?;
            ServerEvent::SessionUpdated { raw: w.session }
        }
        "input_audio_buffer.speech_started" => {
            let w: SpeechStartedWire = fields(text, kind)?;
            ServerEvent::SpeechStarted {
                audio_start_ms: w.audio_start_ms,
                item_id: w.item_id,
            }
        }
        "input_audio_buffer.speech_stopped" => {
            let w: SpeechStoppedWire = fields(text, kind)?;
            ServerEvent::SpeechStopped {
                audio_end_ms: w.audio_end_ms,
                item_id: w.item_id,
            }
        }
        "input_audio_buffer.committed" => {
            let w: ItemIdWire = fields(text, kind)?;
            ServerEvent::Committed { item_id: w.item_id }
        }
        "response.created" => {
            let w: ResponseCreatedWire = fields(text, kind)?;
            ServerEvent::ResponseCreated {
                response_id: w.response.id,
            }
        }
        "response.done" => {
            let w: ResponseDoneWire = fields(text, kind)?;
            let r = w.response;
            let mut function_calls = Vec::new();
            for item in r.output.unwrap_or_default() {
                if item.kind.as_deref() != Some("function_call") {
                    continue;
                }
                let missing = |field: &str| Error::Malformed {
                    kind: kind.to_owned(),
                    detail: format!("function_call item without `{field}`"),
                };
                function_calls.push(FunctionCall {
                    item_id: item.id.ok_or_else(|| missing("id"))?,
                    call_id: item.call_id.ok_or_else(|| missing("call_id"))?,
                    name: item.name.ok_or_else(|| missing("name"))?,
                    arguments: item.arguments.unwrap_or_default(),
                });
            }
            let (reason, error_code, error_message) = match r.status_details {
                Some(d) => {
                    let (code, message) = d.error.map_or((None, None), |e| (e.code, e.message));
                    (d.reason, code, message)
                }
                None => (None, None, None),
            };
            ServerEvent::ResponseDone {
                response_id: r.id,
                status: r.status.unwrap_or_default(),
                reason,
                error_code,
                error_message,
                function_calls,
                usage: r.usage.map(Usage::from),
            }
        }
        "response.output_item.added" => {
            let mut w: OutputItemWire = fields(text, kind)?;
            let (item_id, item_kind) = item_identity(&mut w.item, kind)?;
            ServerEvent::OutputItemAdded {
                response_id: w.response_id,
                item_id,
                kind: item_kind,
                name: w.item.name,
                call_id: w.item.call_id,
            }
        }
        "response.output_item.done" => {
            let mut w: OutputItemWire = fields(text, kind)?;
            let (item_id, item_kind) = item_identity(&mut w.item, kind)?;
            ServerEvent::OutputItemDone {
                response_id: w.response_id,
                item_id,
                kind: item_kind,
                name: w.item.name,
                call_id: w.item.call_id,
                arguments: w.item.arguments,
            }
        }
        "conversation.item.input_audio_transcription.completed" => {
            let w: TranscriptDoneWire = fields(text, kind)?;
            ServerEvent::InputTranscriptionCompleted {
                item_id: w.item_id,
                transcript: w.transcript,
            }
        }
        "response.function_call_arguments.done" => {
            let w: FunctionArgsDoneWire = fields(text, kind)?;
            ServerEvent::FunctionCallArgumentsDone {
                response_id: w.response_id,
                item_id: w.item_id,
                call_id: w.call_id,
                name: w.name,
                arguments: w.arguments,
            }
        }
        "error" => {
            let w: ErrorEventWire = fields(text, kind)?;
            let e = w.error.unwrap_or_default();
            ServerEvent::Error {
                kind: e.kind.unwrap_or_default(),
                code: e.code,
                message: e.message.unwrap_or_default(),
                param: e.param,
                event_id: e.event_id,
            }
        }
        "conversation.item.truncated" => {
            let w: TruncatedWire = fields(text, kind)?;
            ServerEvent::Truncated {
                item_id: w.item_id,
                audio_end_ms: w.audio_end_ms,
            }
        }
        other => ServerEvent::Other {
            kind: other.to_owned(),
        },
    };
    Ok(event)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output, Stdio};

    fn parse_json(text: &str) -> Value {
        serde_json::from_str(text).expect("builder output is valid JSON")
    }

    fn lookup_tool() -> ToolDefinition {
        ToolDefinition {
            name: "lookup_booking".into(),
            description: "Find a booking by the caller's surname.".into(),
            parameters: json!({
                "type": "object",
                "properties": { "surname": { "type": "string" } },
                "required": ["surname"],
            }),
        }
    }

    fn settings(law: Law, transcription: bool, tools: bool) -> SessionSettings {
        SessionSettings {
            model: "gpt-realtime".into(),
            instructions: "You are the front desk of Hotel \"Quay\".\nBe brief.".into(),
            voice: "marin".into(),
            law,
            turn_detection: TurnDetection::default(),
            transcription_model: transcription.then(|| "gpt-4o-mini-transcribe".to_owned()),
            tools: if tools {
                vec![lookup_tool()]
            } else {
                Vec::new()
            },
        }
    }

    fn vad_json() -> Value {
        json!({
            "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
            "silence_duration_ms": 500, "create_response": true, "interrupt_response": true,
        })
    }

    // ----- dialect ------------------------------------------------------------------------

    #[test]
    fn dialect_parsing_display_and_headers() {
        assert_eq!("ga".parse::<Dialect>(), Ok(Dialect::Ga));
        assert_eq!("beta".parse::<Dialect>(), Ok(Dialect::Beta));
        assert_eq!(" BETA ".parse::<Dialect>(), Ok(Dialect::Beta));
        let err = "v1".parse::<Dialect>().expect_err("v1 is not a dialect");
        assert_eq!(err, DialectParseError("v1".into()));
        assert!(err.to_string().contains("\"v1\""), "{err}");
        assert_eq!(Dialect::default(), Dialect::Ga);
        assert_eq!(Dialect::Ga.to_string(), "ga");
        assert_eq!(Dialect::Beta.to_string(), "beta");
        assert_eq!(Dialect::Ga.beta_header(), None);
        assert_eq!(
            Dialect::Beta.beta_header(),
            Some(("OpenAI-Beta", "realtime=v1"))
        );
    }

    #[test]
    fn audio_formats_per_dialect() {
        assert_eq!(
            Dialect::Ga.audio_format(Law::Mu),
            json!({"type": "audio/pcmu"})
        );
        assert_eq!(
            Dialect::Ga.audio_format(Law::A),
            json!({"type": "audio/pcma"})
        );
        assert_eq!(Dialect::Beta.audio_format(Law::Mu), json!("g711_ulaw"));
        assert_eq!(Dialect::Beta.audio_format(Law::A), json!("g711_alaw"));
    }

    // ----- session.update -----------------------------------------------------------------

    #[test]
    fn ga_session_update_exact_shape() {
        let v = parse_json(&session_update(Dialect::Ga, &settings(Law::Mu, true, true)));
        let expected = json!({
            "type": "session.update",
            "session": {
                "type": "realtime",
                "model": "gpt-realtime",
                "output_modalities": ["audio"],
                "instructions": "You are the front desk of Hotel \"Quay\".\nBe brief.",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcmu"},
                        "transcription": {"model": "gpt-4o-mini-transcribe"},
                        "turn_detection": vad_json(),
                    },
                    "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"},
                },
                "tools": [{
                    "type": "function",
                    "name": "lookup_booking",
                    "description": "Find a booking by the caller's surname.",
                    "parameters": {
                        "type": "object",
                        "properties": {"surname": {"type": "string"}},
                        "required": ["surname"],
                    },
                }],
                "tool_choice": "auto",
            }
        });
        assert_eq!(v, expected);
    }

    #[test]
    fn ga_session_update_minimal_alaw() {
        let v = parse_json(&session_update(
            Dialect::Ga,
            &settings(Law::A, false, false),
        ));
        let s = &v["session"];
        assert_eq!(s["audio"]["input"]["format"], json!({"type": "audio/pcma"}));
        assert_eq!(
            s["audio"]["output"]["format"],
            json!({"type": "audio/pcma"})
        );
        assert!(s["audio"]["input"].get("transcription").is_none());
        assert_eq!(s["tools"], json!([]));
        assert_eq!(s["tool_choice"], "auto");
        for beta_only in [
            "temperature",
            "modalities",
            "voice",
            "input_audio_format",
            "output_audio_format",
            "turn_detection",
            "input_audio_transcription",
            "max_response_output_tokens",
        ] {
            assert!(
                s.get(beta_only).is_none(),
                "GA session has beta field {beta_only}"
            );
        }
    }

    #[test]
    fn beta_session_update_exact_shape() {
        let v = parse_json(&session_update(
            Dialect::Beta,
            &settings(Law::Mu, true, true),
        ));
        let expected = json!({
            "type": "session.update",
            "session": {
                "modalities": ["audio", "text"],
                "instructions": "You are the front desk of Hotel \"Quay\".\nBe brief.",
                "voice": "marin",
                "input_audio_format": "g711_ulaw",
                "output_audio_format": "g711_ulaw",
                "turn_detection": vad_json(),
                "input_audio_transcription": {"model": "gpt-4o-mini-transcribe"},
                "tools": [lookup_tool().to_json()],
                "tool_choice": "auto",
            }
        });
        assert_eq!(v, expected);
    }

    #[test]
    fn beta_session_update_minimal_alaw() {
        let v = parse_json(&session_update(
            Dialect::Beta,
            &settings(Law::A, false, false),
        ));
        let s = &v["session"];
        assert_eq!(s["input_audio_format"], "g711_alaw");
        assert_eq!(s["output_audio_format"], "g711_alaw");
        assert!(s.get("input_audio_transcription").is_none());
        for ga_only in ["type", "model", "output_modalities", "audio", "temperature"] {
            assert!(s.get(ga_only).is_none(), "beta session has field {ga_only}");
        }
    }

    #[test]
    fn turn_detection_custom_values_are_sent_verbatim() {
        let mut s = settings(Law::Mu, false, false);
        s.turn_detection = TurnDetection {
            threshold: 0.72,
            prefix_padding_ms: 240,
            silence_duration_ms: 650,
            create_response: false,
            interrupt_response: false,
        };
        let expected = json!({
            "type": "server_vad", "threshold": 0.72, "prefix_padding_ms": 240,
            "silence_duration_ms": 650, "create_response": false, "interrupt_response": false,
        });
        let ga = parse_json(&session_update(Dialect::Ga, &s));
        assert_eq!(ga["session"]["audio"]["input"]["turn_detection"], expected);
        let beta = parse_json(&session_update(Dialect::Beta, &s));
        assert_eq!(beta["session"]["turn_detection"], expected);
    }

    // ----- input_audio_buffer.append ------------------------------------------------------

    #[test]
    fn append_exact_text_and_round_trip() {
        let mut out = String::new();
        input_audio_buffer_append(&mut out, &[0xFF, 0xFF]);
        assert_eq!(
            out,
            r#"{"type":"input_audio_buffer.append","audio":"//8="}"#
        );

        let frame: Vec<u8> = (0..160u32).map(|i| (i * 37 % 256) as u8).collect();
        input_audio_buffer_append(&mut out, &frame);
        let v = parse_json(&out);
        assert_eq!(v["type"], "input_audio_buffer.append");
        assert_eq!(v.as_object().map(Map::len), Some(2));
        let b64 = v["audio"].as_str().expect("audio is a string");
        assert_eq!(b64.len(), 216);
        assert_eq!(STANDARD.decode(b64).expect("valid base64"), frame);

        // Reuse with a shorter payload leaves nothing behind; empty audio is an empty string.
        input_audio_buffer_append(&mut out, &[0x7F]);
        assert_eq!(
            out,
            r#"{"type":"input_audio_buffer.append","audio":"fw=="}"#
        );
        input_audio_buffer_append(&mut out, &[]);
        assert_eq!(out, r#"{"type":"input_audio_buffer.append","audio":""}"#);
    }

    #[test]
    fn append_round_trips_every_length_and_does_not_reallocate_when_warm() {
        let mut out = String::new();
        for len in 0..=400usize {
            let audio: Vec<u8> = (0..len).map(|i| (i * 131 + len) as u8).collect();
            input_audio_buffer_append(&mut out, &audio);
            let v = parse_json(&out);
            let decoded = STANDARD
                .decode(v["audio"].as_str().expect("string"))
                .expect("base64");
            assert_eq!(decoded, audio, "len {len}");
        }
        let frame = [0xD5u8; 160];
        input_audio_buffer_append(&mut out, &frame);
        let (ptr, cap) = (out.as_ptr(), out.capacity());
        for _ in 0..100 {
            input_audio_buffer_append(&mut out, &frame);
        }
        assert_eq!(
            (out.as_ptr(), out.capacity()),
            (ptr, cap),
            "hot path reallocated"
        );
    }

    // ----- other client events ------------------------------------------------------------

    #[test]
    fn simple_client_events_exact_shapes() {
        assert_eq!(
            parse_json(&conversation_item_truncate("item_Bx9", 0, 1234)),
            json!({"type": "conversation.item.truncate", "item_id": "item_Bx9",
                   "content_index": 0, "audio_end_ms": 1234})
        );
        assert_eq!(
            parse_json(&conversation_item_delete("item_Bx9")),
            json!({"type": "conversation.item.delete", "item_id": "item_Bx9"})
        );
        assert_eq!(
            parse_json(&response_create(None)),
            json!({"type": "response.create"})
        );
        assert_eq!(
            parse_json(&response_create(Some(
                "Greet the caller: \"Hotel Quay, hello!\""
            ))),
            json!({"type": "response.create",
                   "response": {"instructions": "Greet the caller: \"Hotel Quay, hello!\""}})
        );
        assert_eq!(
            parse_json(&response_cancel()),
            json!({"type": "response.cancel"})
        );
        assert_eq!(
            parse_json(&function_call_output("call_7", r#"{"found":true}"#)),
            json!({"type": "conversation.item.create",
                   "item": {"type": "function_call_output", "call_id": "call_7",
                            "output": "{\"found\":true}"}})
        );
    }

    #[test]
    fn client_events_put_type_first() {
        let ga = session_update(Dialect::Ga, &settings(Law::Mu, true, true));
        assert!(
            ga.starts_with(r#"{"type":"session.update","session":{"type":"realtime","model":"gpt-realtime","output_modalities":["audio"],"#),
            "{ga}"
        );
        assert!(ga.contains(r#""turn_detection":{"type":"server_vad","threshold":0.5,"prefix_padding_ms":300,"silence_duration_ms":500,"create_response":true,"interrupt_response":true}"#), "{ga}");
        let beta = session_update(Dialect::Beta, &settings(Law::A, false, false));
        assert!(
            beta.starts_with(
                r#"{"type":"session.update","session":{"modalities":["audio","text"],"#
            ),
            "{beta}"
        );
        assert_eq!(
            conversation_item_truncate("item_1", 0, 640),
            r#"{"type":"conversation.item.truncate","item_id":"item_1","content_index":0,"audio_end_ms":640}"#
        );
        assert_eq!(
            response_create(Some("Hi")),
            r#"{"type":"response.create","response":{"instructions":"Hi"}}"#
        );
        assert_eq!(response_create(None), r#"{"type":"response.create"}"#);
        assert_eq!(
            function_call_output("c", "{}"),
            r#"{"type":"conversation.item.create","item":{"type":"function_call_output","call_id":"c","output":"{}"}}"#
        );
        assert_eq!(
            user_text_message(Dialect::Ga, "a\"b"),
            r#"{"type":"conversation.item.create","item":{"type":"message","role":"user","content":[{"type":"input_text","text":"a\"b"}]}}"#
        );
    }

    #[test]
    fn non_finite_threshold_does_not_panic() {
        let mut s = settings(Law::Mu, false, false);
        s.turn_detection.threshold = f64::NAN;
        let v = parse_json(&session_update(Dialect::Ga, &s));
        assert_eq!(
            v["session"]["audio"]["input"]["turn_detection"]["threshold"],
            Value::Null
        );
        assert_eq!(s.turn_detection.to_json()["threshold"], Value::Null);
    }

    #[test]
    fn user_text_message_shape_in_both_dialects() {
        let expected = json!({
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user",
                     "content": [{"type": "input_text", "text": "Hi — «ünïcödé» \"quoted\"\n"}]},
        });
        for d in [Dialect::Ga, Dialect::Beta] {
            assert_eq!(
                parse_json(&user_text_message(d, "Hi — «ünïcödé» \"quoted\"\n")),
                expected
            );
        }
    }

    // ----- server events: fixtures ---------------------------------------------------------

    /// Realistic GA server events (shapes from the SDK models / docs examples) and what they parse to.
    fn ga_fixtures() -> Vec<(&'static str, ServerEvent)> {
        vec![
            (
                r#"{"type":"session.created","event_id":"event_C9G5RJeJ2gF77mV7f2B1j","session":{"type":"realtime","object":"realtime.session","id":"sess_C9G5QPteg4UIbotdKLoYQ","model":"gpt-realtime-2025-08-28","output_modalities":["audio"],"instructions":"Your knowledge cutoff is 2023-10.","tools":[],"tool_choice":"auto","max_output_tokens":"inf","tracing":null,"truncation":"auto","prompt":null,"expires_at":1756324625,"audio":{"input":{"format":{"type":"audio/pcm","rate":24000},"transcription":null,"noise_reduction":null,"turn_detection":{"type":"server_vad","threshold":0.5,"prefix_padding_ms":300,"silence_duration_ms":200,"idle_timeout_ms":null,"create_response":true,"interrupt_response":true}},"output":{"format":{"type":"audio/pcm","rate":24000},"voice":"marin","speed":1.0}},"include":null}}"#,
                ServerEvent::SessionCreated {
                    session_id: Some("sess_C9G5QPteg4UIbotdKLoYQ".into()),
                    expires_at: Some(1_756_324_625),
                },
            ),
            (
                r#"{"type":"session.updated","event_id":"event_C9G8mqI3IucaojlVKE8Cs","session":{"type":"realtime","object":"realtime.session","id":"sess_C9G5QPteg4UIbotdKLoYQ","model":"gpt-realtime-2025-08-28","output_modalities":["audio"],"instructions":"Be brief.","tools":[],"tool_choice":"auto","max_output_tokens":"inf","tracing":null,"truncation":"auto","prompt":null,"expires_at":1756324625,"audio":{"input":{"format":{"type":"audio/pcmu"},"transcription":{"model":"gpt-4o-mini-transcribe","language":null,"prompt":null},"noise_reduction":null,"turn_detection":{"type":"server_vad","threshold":0.5,"prefix_padding_ms":300,"silence_duration_ms":500,"idle_timeout_ms":null,"create_response":true,"interrupt_response":true}},"output":{"format":{"type":"audio/pcmu"},"voice":"marin","speed":1.0}},"include":null}}"#,
                ServerEvent::SessionUpdated { raw: Value::Null }, // raw checked separately
            ),
            (
                r#"{"type":"input_audio_buffer.speech_started","event_id":"event_1","audio_start_ms":1200,"item_id":"item_user1"}"#,
                ServerEvent::SpeechStarted {
                    audio_start_ms: 1200,
                    item_id: "item_user1".into(),
                },
            ),
            (
                r#"{"type":"input_audio_buffer.speech_stopped","event_id":"event_2","audio_end_ms":2980,"item_id":"item_user1"}"#,
                ServerEvent::SpeechStopped {
                    audio_end_ms: 2980,
                    item_id: "item_user1".into(),
                },
            ),
            (
                r#"{"type":"input_audio_buffer.committed","event_id":"event_3","previous_item_id":null,"item_id":"item_user1"}"#,
                ServerEvent::Committed {
                    item_id: "item_user1".into(),
                },
            ),
            (
                r#"{"type":"conversation.item.added","event_id":"event_4","previous_item_id":null,"item":{"id":"item_user1","type":"message","object":"realtime.item","status":"completed","role":"user","content":[{"type":"input_audio","transcript":null}]}}"#,
                ServerEvent::Other {
                    kind: "conversation.item.added".into(),
                },
            ),
            (
                r#"{"type":"conversation.item.done","event_id":"event_5","previous_item_id":null,"item":{"id":"item_user1","type":"message","object":"realtime.item","status":"completed","role":"user","content":[{"type":"input_audio","transcript":null}]}}"#,
                ServerEvent::Other {
                    kind: "conversation.item.done".into(),
                },
            ),
            (
                r#"{"type":"conversation.item.input_audio_transcription.completed","event_id":"event_6","item_id":"item_user1","content_index":0,"transcript":"Hi, I'd like to book a room.","usage":{"type":"tokens","total_tokens":28,"input_tokens":19,"input_token_details":{"text_tokens":0,"audio_tokens":19},"output_tokens":9}}"#,
                ServerEvent::InputTranscriptionCompleted {
                    item_id: "item_user1".into(),
                    transcript: "Hi, I'd like to book a room.".into(),
                },
            ),
            (
                r#"{"type":"response.created","event_id":"event_7","response":{"object":"realtime.response","id":"resp_A1","status":"in_progress","status_details":null,"output":[],"conversation_id":"conv_1","output_modalities":["audio"],"max_output_tokens":"inf","audio":{"output":{"format":{"type":"audio/pcmu"},"voice":"marin"}},"usage":null,"metadata":null}}"#,
                ServerEvent::ResponseCreated {
                    response_id: "resp_A1".into(),
                },
            ),
            (
                r#"{"type":"rate_limits.updated","event_id":"event_8","rate_limits":[{"name":"requests","limit":1000,"remaining":999,"reset_seconds":60.0},{"name":"tokens","limit":40000,"remaining":36000,"reset_seconds":6.0}]}"#,
                ServerEvent::Other {
                    kind: "rate_limits.updated".into(),
                },
            ),
            (
                r#"{"type":"response.output_item.added","event_id":"event_9","response_id":"resp_A1","output_index":0,"item":{"id":"item_asst1","type":"message","status":"in_progress","role":"assistant","content":[],"object":"realtime.item"}}"#,
                ServerEvent::OutputItemAdded {
                    response_id: "resp_A1".into(),
                    item_id: "item_asst1".into(),
                    kind: "message".into(),
                    name: None,
                    call_id: None,
                },
            ),
            (
                r#"{"type":"response.content_part.added","event_id":"event_10","response_id":"resp_A1","item_id":"item_asst1","output_index":0,"content_index":0,"part":{"type":"output_audio","transcript":""}}"#,
                ServerEvent::Other {
                    kind: "response.content_part.added".into(),
                },
            ),
            (
                r#"{"type":"response.output_audio.delta","event_id":"event_11","response_id":"resp_A1","item_id":"item_asst1","output_index":0,"content_index":0,"delta":"//9/AIA="}"#,
                ServerEvent::AudioDelta {
                    response_id: "resp_A1".into(),
                    item_id: "item_asst1".into(),
                    content_index: 0,
                    audio: vec![0xFF, 0xFF, 0x7F, 0x00, 0x80],
                },
            ),
            (
                r#"{"type":"response.output_audio_transcript.delta","event_id":"event_12","response_id":"resp_A1","item_id":"item_asst1","output_index":0,"content_index":0,"delta":"Hello, \"Quay\" "}"#,
                ServerEvent::TranscriptDelta {
                    item_id: "item_asst1".into(),
                    delta: "Hello, \"Quay\" ".into(),
                },
            ),
            (
                r#"{"type":"response.output_audio.done","event_id":"event_13","response_id":"resp_A1","item_id":"item_asst1","output_index":0,"content_index":0}"#,
                ServerEvent::AudioDone {
                    response_id: "resp_A1".into(),
                    item_id: "item_asst1".into(),
                },
            ),
            (
                r#"{"type":"response.output_audio_transcript.done","event_id":"event_14","response_id":"resp_A1","item_id":"item_asst1","output_index":0,"content_index":0,"transcript":"Hello, \"Quay\" hotel."}"#,
                ServerEvent::TranscriptDone {
                    item_id: "item_asst1".into(),
                    transcript: "Hello, \"Quay\" hotel.".into(),
                },
            ),
            (
                r#"{"type":"response.output_item.done","event_id":"event_15","response_id":"resp_A1","output_index":0,"item":{"id":"item_asst1","type":"message","status":"completed","role":"assistant","object":"realtime.item","content":[{"type":"output_audio","transcript":"Hello, \"Quay\" hotel."}]}}"#,
                ServerEvent::OutputItemDone {
                    response_id: "resp_A1".into(),
                    item_id: "item_asst1".into(),
                    kind: "message".into(),
                    name: None,
                    call_id: None,
                    arguments: None,
                },
            ),
            (
                r#"{"type":"response.done","event_id":"event_16","response":{"object":"realtime.response","id":"resp_A1","status":"completed","status_details":null,"output":[{"id":"item_asst1","type":"message","status":"completed","role":"assistant","object":"realtime.item","content":[{"type":"output_audio","transcript":"Hello, \"Quay\" hotel."}]}],"conversation_id":"conv_1","output_modalities":["audio"],"max_output_tokens":"inf","audio":{"output":{"format":{"type":"audio/pcmu"},"voice":"marin"}},"usage":{"total_tokens":253,"input_tokens":132,"output_tokens":121,"input_token_details":{"text_tokens":119,"audio_tokens":13,"image_tokens":0,"cached_tokens":64,"cached_tokens_details":{"text_tokens":64,"audio_tokens":0,"image_tokens":0}},"output_token_details":{"text_tokens":30,"audio_tokens":91}},"metadata":null}}"#,
                ServerEvent::ResponseDone {
                    response_id: "resp_A1".into(),
                    status: "completed".into(),
                    reason: None,
                    error_code: None,
                    error_message: None,
                    function_calls: vec![],
                    usage: Some(Usage {
                        input_tokens: 132,
                        output_tokens: 121,
                        total_tokens: 253,
                        input_text_tokens: 119,
                        input_audio_tokens: 13,
                        cached_tokens: 64,
                        cached_text_tokens: 64,
                        cached_audio_tokens: 0,
                        output_text_tokens: 30,
                        output_audio_tokens: 91,
                    }),
                },
            ),
            (
                r#"{"type":"response.output_item.added","event_id":"event_17","response_id":"resp_B2","output_index":0,"item":{"id":"item_fc1","type":"function_call","status":"in_progress","object":"realtime.item","name":"lookup_booking","call_id":"call_Xy","arguments":""}}"#,
                ServerEvent::OutputItemAdded {
                    response_id: "resp_B2".into(),
                    item_id: "item_fc1".into(),
                    kind: "function_call".into(),
                    name: Some("lookup_booking".into()),
                    call_id: Some("call_Xy".into()),
                },
            ),
            (
                r#"{"type":"response.function_call_arguments.delta","event_id":"event_18","response_id":"resp_B2","item_id":"item_fc1","output_index":0,"call_id":"call_Xy","delta":"{\"surname\":"}"#,
                ServerEvent::Other {
                    kind: "response.function_call_arguments.delta".into(),
                },
            ),
            (
                r#"{"type":"response.function_call_arguments.done","event_id":"event_19","response_id":"resp_B2","item_id":"item_fc1","output_index":0,"call_id":"call_Xy","name":"lookup_booking","arguments":"{\"surname\":\"Okafor\"}"}"#,
                ServerEvent::FunctionCallArgumentsDone {
                    response_id: "resp_B2".into(),
                    item_id: "item_fc1".into(),
                    call_id: "call_Xy".into(),
                    name: Some("lookup_booking".into()),
                    arguments: r#"{"surname":"Okafor"}"#.into(),
                },
            ),
            (
                r#"{"type":"response.output_item.done","event_id":"event_20","response_id":"resp_B2","output_index":0,"item":{"id":"item_fc1","type":"function_call","status":"completed","object":"realtime.item","name":"lookup_booking","call_id":"call_Xy","arguments":"{\"surname\":\"Okafor\"}"}}"#,
                ServerEvent::OutputItemDone {
                    response_id: "resp_B2".into(),
                    item_id: "item_fc1".into(),
                    kind: "function_call".into(),
                    name: Some("lookup_booking".into()),
                    call_id: Some("call_Xy".into()),
                    arguments: Some(r#"{"surname":"Okafor"}"#.into()),
                },
            ),
            (
                r#"{"type":"response.done","event_id":"event_21","response":{"object":"realtime.response","id":"resp_B2","status":"completed","status_details":null,"output":[{"id":"item_fc1","type":"function_call","status":"completed","object":"realtime.item","name":"lookup_booking","call_id":"call_Xy","arguments":"{\"surname\":\"Okafor\"}"}],"conversation_id":"conv_1","output_modalities":["audio"],"max_output_tokens":"inf","usage":null,"metadata":null}}"#,
                ServerEvent::ResponseDone {
                    response_id: "resp_B2".into(),
                    status: "completed".into(),
                    reason: None,
                    error_code: None,
                    error_message: None,
                    function_calls: vec![FunctionCall {
                        item_id: "item_fc1".into(),
                        call_id: "call_Xy".into(),
                        name: "lookup_booking".into(),
                        arguments: r#"{"surname":"Okafor"}"#.into(),
                    }],
                    usage: None,
                },
            ),
            (
                r#"{"type":"response.done","event_id":"event_22","response":{"id":"resp_C3","object":"realtime.response","status":"cancelled","status_details":{"type":"cancelled","reason":"turn_detected"},"output":[{"id":"item_asst3","type":"message","status":"incomplete","role":"assistant","object":"realtime.item","content":[{"type":"output_audio","transcript":"Our check-in"}]}],"usage":{"total_tokens":10,"input_tokens":6,"output_tokens":4,"input_token_details":{"text_tokens":2,"audio_tokens":4,"cached_tokens":0},"output_token_details":{"text_tokens":1,"audio_tokens":3}}}}"#,
                ServerEvent::ResponseDone {
                    response_id: "resp_C3".into(),
                    status: "cancelled".into(),
                    reason: Some("turn_detected".into()),
                    error_code: None,
                    error_message: None,
                    function_calls: vec![],
                    usage: Some(Usage {
                        input_tokens: 6,
                        output_tokens: 4,
                        total_tokens: 10,
                        input_text_tokens: 2,
                        input_audio_tokens: 4,
                        output_text_tokens: 1,
                        output_audio_tokens: 3,
                        ..Usage::default()
                    }),
                },
            ),
            (
                r#"{"type":"response.done","event_id":"event_23","response":{"id":"resp_D4","object":"realtime.response","status":"failed","status_details":{"type":"failed","error":{"type":"server_error","code":"internal_error","message":"The server had an error."}},"output":[]}}"#,
                ServerEvent::ResponseDone {
                    response_id: "resp_D4".into(),
                    status: "failed".into(),
                    reason: None,
                    error_code: Some("internal_error".into()),
                    error_message: Some("The server had an error.".into()),
                    function_calls: vec![],
                    usage: None,
                },
            ),
            (
                r#"{"type":"conversation.item.truncated","event_id":"event_24","item_id":"item_asst3","content_index":0,"audio_end_ms":1500}"#,
                ServerEvent::Truncated {
                    item_id: "item_asst3".into(),
                    audio_end_ms: 1500,
                },
            ),
            (
                r#"{"type":"error","event_id":"event_25","error":{"type":"invalid_request_error","code":null,"message":"Audio content of 3700ms is already shorter than 3760ms","param":null,"event_id":"trunc_9"}}"#,
                ServerEvent::Error {
                    kind: "invalid_request_error".into(),
                    code: None,
                    message: "Audio content of 3700ms is already shorter than 3760ms".into(),
                    param: None,
                    event_id: Some("trunc_9".into()),
                },
            ),
            (
                r#"{"type":"error","event_id":"event_26","error":{"type":"invalid_request_error","code":"session_expired","message":"Your session hit the maximum duration of 60 minutes.","param":null,"event_id":null}}"#,
                ServerEvent::Error {
                    kind: "invalid_request_error".into(),
                    code: Some("session_expired".into()),
                    message: "Your session hit the maximum duration of 60 minutes.".into(),
                    param: None,
                    event_id: None,
                },
            ),
            (
                r#"{"type":"response.output_text.delta","event_id":"event_27","response_id":"resp_E5","item_id":"item_txt","output_index":0,"content_index":0,"delta":"Room 12"}"#,
                ServerEvent::TranscriptDelta {
                    item_id: "item_txt".into(),
                    delta: "Room 12".into(),
                },
            ),
            (
                r#"{"type":"response.output_text.done","event_id":"event_28","response_id":"resp_E5","item_id":"item_txt","output_index":0,"content_index":0,"text":"Room 12 is free."}"#,
                ServerEvent::TranscriptDone {
                    item_id: "item_txt".into(),
                    transcript: "Room 12 is free.".into(),
                },
            ),
            (
                r#"{"type":"input_audio_buffer.timeout_triggered","event_id":"event_29","audio_start_ms":5000,"audio_end_ms":11000,"item_id":"item_idle"}"#,
                ServerEvent::Other {
                    kind: "input_audio_buffer.timeout_triggered".into(),
                },
            ),
        ]
    }

    /// Realistic beta server events (beta spellings) and what they parse to.
    fn beta_fixtures() -> Vec<(&'static str, ServerEvent)> {
        vec![
            (
                r#"{"type":"session.created","event_id":"event_AB12","session":{"id":"sess_001","object":"realtime.session","model":"gpt-4o-realtime-preview-2024-12-17","expires_at":1734626723,"modalities":["audio","text"],"instructions":"Your knowledge cutoff is 2023-10.","voice":"alloy","input_audio_format":"pcm16","output_audio_format":"pcm16","input_audio_transcription":null,"turn_detection":{"type":"server_vad","threshold":0.5,"prefix_padding_ms":300,"silence_duration_ms":200,"create_response":true,"interrupt_response":true},"tools":[],"tool_choice":"auto","temperature":0.8,"max_response_output_tokens":"inf"}}"#,
                ServerEvent::SessionCreated {
                    session_id: Some("sess_001".into()),
                    expires_at: Some(1_734_626_723),
                },
            ),
            (
                r#"{"type":"session.updated","event_id":"event_AB13","session":{"id":"sess_001","object":"realtime.session","model":"gpt-4o-realtime-preview-2024-12-17","expires_at":1734626723,"modalities":["audio","text"],"instructions":"Be brief.","voice":"alloy","input_audio_format":"g711_ulaw","output_audio_format":"g711_ulaw","input_audio_transcription":{"model":"gpt-4o-mini-transcribe"},"turn_detection":{"type":"server_vad","threshold":0.5,"prefix_padding_ms":300,"silence_duration_ms":500,"create_response":true,"interrupt_response":true},"tools":[],"tool_choice":"auto","temperature":0.8,"max_response_output_tokens":"inf"}}"#,
                ServerEvent::SessionUpdated { raw: Value::Null },
            ),
            (
                r#"{"type":"input_audio_buffer.speech_started","event_id":"event_b1","audio_start_ms":640,"item_id":"item_u"}"#,
                ServerEvent::SpeechStarted {
                    audio_start_ms: 640,
                    item_id: "item_u".into(),
                },
            ),
            (
                r#"{"type":"conversation.item.created","event_id":"event_b2","previous_item_id":null,"item":{"id":"item_u","object":"realtime.item","type":"message","status":"completed","role":"user","content":[{"type":"input_audio","transcript":null}]}}"#,
                ServerEvent::Other {
                    kind: "conversation.item.created".into(),
                },
            ),
            (
                r#"{"type":"response.audio.delta","event_id":"event_b3","response_id":"resp_b","item_id":"item_a","output_index":0,"content_index":0,"delta":"1dXV"}"#,
                ServerEvent::AudioDelta {
                    response_id: "resp_b".into(),
                    item_id: "item_a".into(),
                    content_index: 0,
                    audio: vec![0xD5, 0xD5, 0xD5],
                },
            ),
            (
                r#"{"type":"response.audio_transcript.delta","event_id":"event_b4","response_id":"resp_b","item_id":"item_a","output_index":0,"content_index":0,"delta":"Good morning"}"#,
                ServerEvent::TranscriptDelta {
                    item_id: "item_a".into(),
                    delta: "Good morning".into(),
                },
            ),
            (
                r#"{"type":"response.audio.done","event_id":"event_b5","response_id":"resp_b","item_id":"item_a","output_index":0,"content_index":0}"#,
                ServerEvent::AudioDone {
                    response_id: "resp_b".into(),
                    item_id: "item_a".into(),
                },
            ),
            (
                r#"{"type":"response.audio_transcript.done","event_id":"event_b6","response_id":"resp_b","item_id":"item_a","output_index":0,"content_index":0,"transcript":"Good morning."}"#,
                ServerEvent::TranscriptDone {
                    item_id: "item_a".into(),
                    transcript: "Good morning.".into(),
                },
            ),
            (
                r#"{"type":"response.text.delta","event_id":"event_b7","response_id":"resp_t","item_id":"item_t","output_index":0,"content_index":0,"delta":"Hi"}"#,
                ServerEvent::TranscriptDelta {
                    item_id: "item_t".into(),
                    delta: "Hi".into(),
                },
            ),
            (
                r#"{"type":"response.text.done","event_id":"event_b8","response_id":"resp_t","item_id":"item_t","output_index":0,"content_index":0,"text":"Hi there"}"#,
                ServerEvent::TranscriptDone {
                    item_id: "item_t".into(),
                    transcript: "Hi there".into(),
                },
            ),
            (
                r#"{"type":"response.content_part.added","event_id":"event_b9","response_id":"resp_b","item_id":"item_a","output_index":0,"content_index":0,"part":{"type":"audio","transcript":""}}"#,
                ServerEvent::Other {
                    kind: "response.content_part.added".into(),
                },
            ),
            (
                r#"{"type":"response.output_item.added","event_id":"event_b10","response_id":"resp_f","output_index":0,"item":{"id":"item_f","object":"realtime.item","type":"function_call","status":"in_progress","name":"lookup_booking","call_id":"call_b","arguments":""}}"#,
                ServerEvent::OutputItemAdded {
                    response_id: "resp_f".into(),
                    item_id: "item_f".into(),
                    kind: "function_call".into(),
                    name: Some("lookup_booking".into()),
                    call_id: Some("call_b".into()),
                },
            ),
            (
                r#"{"type":"response.function_call_arguments.done","event_id":"event_b11","response_id":"resp_f","item_id":"item_f","output_index":0,"call_id":"call_b","arguments":"{\"surname\":\"Lee\"}"}"#,
                ServerEvent::FunctionCallArgumentsDone {
                    response_id: "resp_f".into(),
                    item_id: "item_f".into(),
                    call_id: "call_b".into(),
                    name: None,
                    arguments: r#"{"surname":"Lee"}"#.into(),
                },
            ),
            (
                r#"{"type":"response.done","event_id":"event_b12","response":{"id":"resp_f","object":"realtime.response","status":"completed","status_details":null,"output":[{"id":"item_f","object":"realtime.item","type":"function_call","status":"completed","name":"lookup_booking","call_id":"call_b","arguments":"{\"surname\":\"Lee\"}"}],"modalities":["audio","text"],"voice":"alloy","output_audio_format":"g711_ulaw","temperature":0.8,"max_output_tokens":"inf","usage":{"total_tokens":50,"input_tokens":40,"output_tokens":10,"input_token_details":{"cached_tokens":0,"text_tokens":30,"audio_tokens":10},"output_token_details":{"text_tokens":10,"audio_tokens":0}}}}"#,
                ServerEvent::ResponseDone {
                    response_id: "resp_f".into(),
                    status: "completed".into(),
                    reason: None,
                    error_code: None,
                    error_message: None,
                    function_calls: vec![FunctionCall {
                        item_id: "item_f".into(),
                        call_id: "call_b".into(),
                        name: "lookup_booking".into(),
                        arguments: r#"{"surname":"Lee"}"#.into(),
                    }],
                    usage: Some(Usage {
                        input_tokens: 40,
                        output_tokens: 10,
                        total_tokens: 50,
                        input_text_tokens: 30,
                        input_audio_tokens: 10,
                        output_text_tokens: 10,
                        ..Usage::default()
                    }),
                },
            ),
            (
                r#"{"type":"error","event_id":"event_b13","error":{"type":"invalid_request_error","code":"response_cancel_not_active","message":"Cancellation failed: no active response found","param":null,"event_id":null}}"#,
                ServerEvent::Error {
                    kind: "invalid_request_error".into(),
                    code: Some("response_cancel_not_active".into()),
                    message: "Cancellation failed: no active response found".into(),
                    param: None,
                    event_id: None,
                },
            ),
            (
                r#"{"type":"conversation.item.truncated","event_id":"event_b14","item_id":"item_a","content_index":0,"audio_end_ms":300}"#,
                ServerEvent::Truncated {
                    item_id: "item_a".into(),
                    audio_end_ms: 300,
                },
            ),
            (
                r#"{"type":"input_audio_buffer.speech_stopped","event_id":"event_b15","audio_end_ms":2100,"item_id":"item_u"}"#,
                ServerEvent::SpeechStopped {
                    audio_end_ms: 2100,
                    item_id: "item_u".into(),
                },
            ),
            (
                r#"{"type":"input_audio_buffer.committed","event_id":"event_b16","previous_item_id":"item_prev","item_id":"item_u"}"#,
                ServerEvent::Committed {
                    item_id: "item_u".into(),
                },
            ),
            (
                r#"{"type":"conversation.item.input_audio_transcription.completed","event_id":"event_b17","item_id":"item_u","content_index":0,"transcript":"Do you have parking?","usage":{"type":"duration","seconds":1.4}}"#,
                ServerEvent::InputTranscriptionCompleted {
                    item_id: "item_u".into(),
                    transcript: "Do you have parking?".into(),
                },
            ),
            (
                r#"{"type":"response.created","event_id":"event_b18","response":{"id":"resp_b","object":"realtime.response","status":"in_progress","status_details":null,"output":[],"usage":null}}"#,
                ServerEvent::ResponseCreated {
                    response_id: "resp_b".into(),
                },
            ),
            (
                r#"{"type":"response.output_item.done","event_id":"event_b19","response_id":"resp_b","output_index":0,"item":{"id":"item_a","object":"realtime.item","type":"message","status":"completed","role":"assistant","content":[{"type":"audio","transcript":"Good morning."}]}}"#,
                ServerEvent::OutputItemDone {
                    response_id: "resp_b".into(),
                    item_id: "item_a".into(),
                    kind: "message".into(),
                    name: None,
                    call_id: None,
                    arguments: None,
                },
            ),
        ]
    }

    fn assert_fixture(text: &str, expected: &ServerEvent) {
        let got = parse_server_event(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        match (&got, expected) {
            (ServerEvent::SessionUpdated { raw }, ServerEvent::SessionUpdated { .. }) => {
                let full = parse_json(text);
                assert_eq!(raw, &full["session"]);
            }
            _ => assert_eq!(&got, expected, "{text}"),
        }
    }

    #[test]
    fn parses_every_ga_fixture() {
        for (text, expected) in ga_fixtures() {
            assert_fixture(text, &expected);
        }
    }

    #[test]
    fn parses_every_beta_fixture() {
        for (text, expected) in beta_fixtures() {
            assert_fixture(text, &expected);
        }
    }

    #[test]
    fn every_variant_is_covered_in_both_dialect_fixtures() {
        let names = |fx: Vec<(&'static str, ServerEvent)>| -> Vec<String> {
            fx.iter().map(|(_, e)| e.name().to_owned()).collect()
        };
        let ga = names(ga_fixtures());
        let beta = names(beta_fixtures());
        // Variants every GA flow must exercise (all variants except `Other` variety).
        for n in [
            "session.created",
            "session.updated",
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "response.created",
            "response.done",
            "response.output_item.added",
            "response.output_item.done",
            "response.output_audio.delta",
            "response.output_audio.done",
            "response.output_audio_transcript.delta",
            "response.output_audio_transcript.done",
            "conversation.item.input_audio_transcription.completed",
            "response.function_call_arguments.done",
            "error",
            "conversation.item.truncated",
            "rate_limits.updated",
        ] {
            assert!(ga.iter().any(|g| g == n), "GA fixtures lack {n}");
        }
        // Beta fixtures exercise every renamed event under its beta spelling.
        for n in [
            "response.output_audio.delta",
            "response.output_audio.done",
            "response.output_audio_transcript.delta",
            "response.output_audio_transcript.done",
            "conversation.item.created",
        ] {
            assert!(beta.iter().any(|b| b == n), "beta fixtures lack {n}");
        }
    }

    #[test]
    fn renamed_events_parse_identically_under_both_spellings() {
        let pairs = [
            ("response.output_audio.delta", "response.audio.delta"),
            (
                "response.output_audio_transcript.delta",
                "response.audio_transcript.delta",
            ),
            ("response.output_text.delta", "response.text.delta"),
        ];
        for (ga, beta) in pairs {
            let body = r#""event_id":"e","response_id":"r","item_id":"i","output_index":0,"content_index":2,"delta":"AAEC""#;
            let a = parse_server_event(&format!(r#"{{"type":"{ga}",{body}}}"#)).expect("ga");
            let b = parse_server_event(&format!(r#"{{"type":"{beta}",{body}}}"#)).expect("beta");
            assert_eq!(a, b, "{ga} vs {beta}");
        }
        let ga = parse_server_event(
            r#"{"type":"response.output_audio.done","response_id":"r","item_id":"i"}"#,
        );
        let beta =
            parse_server_event(r#"{"type":"response.audio.done","response_id":"r","item_id":"i"}"#);
        assert_eq!(ga, beta);
        let d = parse_server_event(r#"{"type":"response.audio.delta","response_id":"r","item_id":"i","content_index":2,"delta":"AAEC"}"#)
            .expect("delta");
        assert_eq!(
            d,
            ServerEvent::AudioDelta {
                response_id: "r".into(),
                item_id: "i".into(),
                content_index: 2,
                audio: vec![0, 1, 2],
            }
        );
        assert_eq!(d.name(), "response.output_audio.delta");
    }

    #[test]
    fn audio_delta_decodes_large_escaped_and_unpadded_payloads() {
        let audio: Vec<u8> = (0..4000u32).map(|i| (i * 7 % 256) as u8).collect();
        let b64 = STANDARD.encode(&audio);
        let text = format!(
            r#"{{"type":"response.output_audio.delta","event_id":"e","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":"{b64}"}}"#
        );
        match parse_server_event(&text).expect("delta") {
            ServerEvent::AudioDelta { audio: got, .. } => assert_eq!(got, audio),
            other => panic!("unexpected {other:?}"),
        }
        // JSON may escape '/' as "\/": still decodes (owned fallback instead of borrowing).
        let escaped = r#"{"type":"response.audio.delta","response_id":"r","item_id":"i","content_index":0,"delta":"\/\/8="}"#;
        assert!(matches!(
            parse_server_event(escaped),
            Ok(ServerEvent::AudioDelta { audio, .. }) if audio == [0xFF, 0xFF]
        ));
        // Missing padding is tolerated.
        let unpadded = r#"{"type":"response.audio.delta","response_id":"r","item_id":"i","content_index":0,"delta":"//8"}"#;
        assert!(matches!(
            parse_server_event(unpadded),
            Ok(ServerEvent::AudioDelta { audio, .. }) if audio == [0xFF, 0xFF]
        ));
        // Empty delta is empty audio.
        let empty = r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","content_index":0,"delta":""}"#;
        assert!(matches!(
            parse_server_event(empty),
            Ok(ServerEvent::AudioDelta { audio, .. }) if audio.is_empty()
        ));
    }

    #[test]
    fn unknown_and_unconsumed_events_are_other() {
        for (text, kind) in [
            (
                r#"{"type":"response.brand_new_thing","weird":[1,{"x":null}]}"#,
                "response.brand_new_thing",
            ),
            (
                r#"{"type":"rate_limits.updated","rate_limits":"not-a-list"}"#,
                "rate_limits.updated",
            ),
            (
                r#"{"type":"input_audio_buffer.dtmf_event_received","event":"5","received_at":1}"#,
                "input_audio_buffer.dtmf_event_received",
            ),
            (
                r#"{"event_id":"e","type":"conversation.item.deleted","item_id":"x"}"#,
                "conversation.item.deleted",
            ),
            (
                r#"{"type":"transcription_session.updated","session":{"id":"sess_t","input_audio_format":"g711_ulaw"}}"#,
                "transcription_session.updated",
            ),
        ] {
            let ev = parse_server_event(text).expect("other");
            assert_eq!(ev, ServerEvent::Other { kind: kind.into() });
            assert_eq!(ev.name(), kind);
        }
    }

    #[test]
    fn error_event_is_lenient_about_missing_fields() {
        assert_eq!(
            parse_server_event(r#"{"type":"error","event_id":"e"}"#),
            Ok(ServerEvent::Error {
                kind: String::new(),
                code: None,
                message: String::new(),
                param: None,
                event_id: None,
            })
        );
        assert_eq!(
            parse_server_event(
                r#"{"type":"error","error":{"message":"boom","param":"session.temperature"}}"#
            ),
            Ok(ServerEvent::Error {
                kind: String::new(),
                code: None,
                message: "boom".into(),
                param: Some("session.temperature".into()),
                event_id: None,
            })
        );
    }

    #[test]
    fn malformed_input_is_rejected_with_clear_messages() {
        let err = |t: &str| parse_server_event(t).expect_err(t);

        let e = err("not json");
        assert!(matches!(e, Error::Json { .. }), "{e:?}");
        assert!(
            e.to_string().starts_with("server event is not valid json"),
            "{e}"
        );
        assert!(matches!(err(r#"{"type":"error""#), Error::Json { .. }));
        assert!(matches!(err(""), Error::Json { .. }));
        // Trailing garbage after a valid prefix is a syntax error too.
        assert!(matches!(err(r#"{"type":"error"} x"#), Error::Json { .. }));

        for t in [
            r#"{}"#,
            r#"{"type":5}"#,
            r#"[1,2]"#,
            r#""session.created""#,
            r#"{"type":null}"#,
        ] {
            let e = err(t);
            assert!(matches!(e, Error::MissingType { .. }), "{t}: {e:?}");
            assert!(e.to_string().contains("no string \"type\" field"), "{e}");
        }

        let cases = [
            (
                r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":"12","item_id":"i"}"#,
                "input_audio_buffer.speech_started",
            ),
            (
                r#"{"type":"input_audio_buffer.speech_stopped","audio_end_ms":-1,"item_id":"i"}"#,
                "input_audio_buffer.speech_stopped",
            ),
            (
                r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","content_index":0}"#,
                "response.output_audio.delta",
            ),
            (
                r#"{"type":"response.audio.delta","response_id":"r","item_id":7,"content_index":0,"delta":""}"#,
                "response.audio.delta",
            ),
            (
                r#"{"type":"response.created","response":{}}"#,
                "response.created",
            ),
            (
                r#"{"type":"response.done","response":{"id":"r","status":5}}"#,
                "response.done",
            ),
            (
                r#"{"type":"response.done","response":{"id":"r","output":[{"type":"function_call","id":"i","name":"f"}]}}"#,
                "response.done",
            ),
            (
                r#"{"type":"response.output_item.added","response_id":"r","item":{"type":"message"}}"#,
                "response.output_item.added",
            ),
            (
                r#"{"type":"response.output_item.done","response_id":"r","item":{"id":"i"}}"#,
                "response.output_item.done",
            ),
            (
                r#"{"type":"response.function_call_arguments.done","response_id":"r","item_id":"i","call_id":"c"}"#,
                "response.function_call_arguments.done",
            ),
            (r#"{"type":"session.created"}"#, "session.created"),
            (
                r#"{"type":"session.created","session":{"expires_at":"soon"}}"#,
                "session.created",
            ),
            (r#"{"type":"session.updated"}"#, "session.updated"),
            (r#"{"type":"error","error":{"message":42}}"#, "error"),
            (
                r#"{"type":"conversation.item.truncated","item_id":"i"}"#,
                "conversation.item.truncated",
            ),
            (
                r#"{"type":"conversation.item.input_audio_transcription.completed","item_id":"i"}"#,
                "conversation.item.input_audio_transcription.completed",
            ),
        ];
        for (t, kind) in cases {
            let e = err(t);
            match &e {
                Error::Malformed { kind: k, .. } => assert_eq!(k, kind),
                other => panic!("{t}: expected Malformed, got {other:?}"),
            }
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("malformed {kind} event: ")),
                "{msg}"
            );
        }

        let e = err(
            r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","content_index":0,"delta":"!!!notbase64"}"#,
        );
        assert!(
            matches!(&e, Error::Base64 { kind, .. } if kind == "response.output_audio.delta"),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("bad base64 audio in response.output_audio.delta event"),
            "{e}"
        );
    }

    // ----- validation with the openai SDK ---------------------------------------------------

    fn test_python() -> String {
        std::env::var("FRONTDESK_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
    }

    fn validator_script() -> PathBuf {
        match std::env::var_os("FRONTDESK_VALIDATOR") {
            Some(p) => PathBuf::from(p),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/protocol/validate_events.py"),
        }
    }

    /// Fails (never skips) when the interpreter or its `openai` package is missing.
    fn require_openai(python: &str) {
        let out = Command::new(python)
            .args(["-c", "import openai, pydantic; print(openai.__version__)"])
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `{python}` ({e}); the protocol tests need Python 3 with the `openai` \
                     package: `python3 -m pip install openai`, or set FRONTDESK_TEST_PYTHON to such a python"
                )
            });
        assert!(
            out.status.success(),
            "the `openai` Python package is not importable by `{python}`: install it with \
             `{python} -m pip install openai` (CI does this), or set FRONTDESK_TEST_PYTHON to a \
             python that has it.\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    struct TempJsonl(PathBuf);

    impl TempJsonl {
        fn new(tag: &str, lines: &[String]) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let path = std::env::temp_dir().join(format!(
                "frontdesk-protocol-{}-{nanos}-{tag}.jsonl",
                std::process::id()
            ));
            let mut body = lines.join("\n");
            body.push('\n');
            std::fs::write(&path, body).expect("write temp jsonl");
            TempJsonl(path)
        }
    }

    impl Drop for TempJsonl {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// One validator run: label, file, extra args, whether it must pass, text its output must contain.
    struct Run {
        label: &'static str,
        file: TempJsonl,
        args: Vec<&'static str>,
        expect_ok: bool,
        expect_output: Vec<&'static str>,
    }

    fn run_all(runs: Vec<Run>) {
        let python = test_python();
        require_openai(&python);
        let script = validator_script();
        assert!(
            script.is_file(),
            "validator script not found at {} (set FRONTDESK_VALIDATOR)",
            script.display()
        );
        let children: Vec<_> = runs
            .iter()
            .map(|r| {
                Command::new(&python)
                    .arg(&script)
                    .args(&r.args)
                    .arg(&r.file.0)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap_or_else(|e| panic!("spawn {python}: {e}"))
            })
            .collect();
        let outputs: Vec<Output> = children
            .into_iter()
            .map(|c| c.wait_with_output().expect("validator output"))
            .collect();
        let mut failures = Vec::new();
        for (r, out) in runs.iter().zip(outputs) {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let code = out.status.code();
            let status_ok = if r.expect_ok {
                code == Some(0)
            } else {
                code == Some(1)
            };
            let missing: Vec<_> = r
                .expect_output
                .iter()
                .filter(|s| !stdout.contains(*s))
                .collect();
            if !status_ok || !missing.is_empty() {
                failures.push(format!(
                    "[{}] exit {code:?} (wanted {}), missing {missing:?}\n{stdout}{stderr}",
                    r.label,
                    if r.expect_ok { 0 } else { 1 }
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "validator runs failed:\n{}",
            failures.join("\n")
        );
    }

    /// Every client event this module builds, for one dialect.
    fn all_client_events(dialect: Dialect) -> Vec<String> {
        let mut lines = Vec::new();
        for law in [Law::Mu, Law::A] {
            for transcription in [false, true] {
                for tools in [false, true] {
                    lines.push(session_update(
                        dialect,
                        &settings(law, transcription, tools),
                    ));
                }
            }
        }
        let mut custom = settings(Law::Mu, true, true);
        custom.turn_detection.create_response = false;
        custom.turn_detection.threshold = 0.8;
        lines.push(session_update(dialect, &custom));
        let mut append = String::new();
        for audio in [&[][..], &[0xFF; 160][..], &[0x00, 0x7F, 0x80][..]] {
            input_audio_buffer_append(&mut append, audio);
            lines.push(append.clone());
        }
        lines.push(conversation_item_truncate("item_asst1", 0, 1234));
        lines.push(conversation_item_delete("item_asst1"));
        lines.push(response_create(None));
        lines.push(response_create(Some("Greet the caller and offer help.")));
        lines.push(response_cancel());
        lines.push(user_text_message(dialect, "The caller said: \"hello\""));
        lines.push(function_call_output(
            "call_Xy",
            r#"{"found":true,"room":12}"#,
        ));
        lines
    }

    const GA_SESSION_LAG: [&str; 6] = [
        "--allow-undeclared",
        "session.*:$.session.id",
        "--allow-undeclared",
        "session.*:$.session.object",
        "--allow-undeclared",
        "session.*:$.session.expires_at",
    ];

    #[test]
    fn openai_sdk_validates_client_and_server_events() {
        let fixtures = |fx: Vec<(&'static str, ServerEvent)>| -> Vec<String> {
            fx.into_iter().map(|(t, _)| t.to_owned()).collect()
        };
        let ga_update = session_update(Dialect::Ga, &settings(Law::Mu, true, true));
        let beta_update = session_update(Dialect::Beta, &settings(Law::Mu, true, true));
        let mut ga_update_with_temperature = parse_json(&ga_update);
        ga_update_with_temperature["session"]["temperature"] = json!(0.8);
        let ga_delta = ga_fixtures()
            .into_iter()
            .find(|(_, e)| matches!(e, ServerEvent::AudioDelta { .. }))
            .map(|(t, _)| t.to_owned())
            .expect("GA delta fixture");
        let beta_delta = ga_delta.replace("response.output_audio.delta", "response.audio.delta");

        let mut ga_server_args = vec!["--dialect", "ga", "--direction", "server"];
        ga_server_args.extend(GA_SESSION_LAG);
        // Beta `Session` declares `id` but not `object` / `expires_at`.
        let beta_server_args = vec![
            "--dialect",
            "beta",
            "--direction",
            "server",
            "--allow-undeclared",
            "session.*:$.session.object",
            "--allow-undeclared",
            "session.*:$.session.expires_at",
        ];

        run_all(vec![
            Run {
                label: "GA client events",
                file: TempJsonl::new("ga-client", &all_client_events(Dialect::Ga)),
                args: vec!["--dialect", "ga", "--direction", "client"],
                expect_ok: true,
                expect_output: vec!["RESULT: OK", "session.update", "input_audio_buffer.append"],
            },
            Run {
                label: "beta client events",
                file: TempJsonl::new("beta-client", &all_client_events(Dialect::Beta)),
                args: vec!["--dialect", "beta", "--direction", "client"],
                expect_ok: true,
                expect_output: vec!["RESULT: OK", "conversation.item.truncate"],
            },
            Run {
                label: "GA server fixtures",
                file: TempJsonl::new("ga-server", &fixtures(ga_fixtures())),
                args: ga_server_args,
                expect_ok: true,
                // The GA content_part fixture uses the wire's part.type "output_audio".
                expect_output: vec!["RESULT: OK", "DRIFT"],
            },
            Run {
                label: "beta server fixtures",
                file: TempJsonl::new("beta-server", &fixtures(beta_fixtures())),
                args: beta_server_args,
                expect_ok: true,
                expect_output: vec!["RESULT: OK"],
            },
            Run {
                label: "GA update with beta-only temperature is flagged",
                file: TempJsonl::new("ga-temp", &[ga_update_with_temperature.to_string()]),
                args: vec!["--dialect", "ga", "--direction", "client"],
                expect_ok: false,
                expect_output: vec!["UNDECLARED", "$.session.temperature"],
            },
            Run {
                label: "beta-shaped update is invalid for GA",
                file: TempJsonl::new("beta-on-ga", std::slice::from_ref(&beta_update)),
                args: vec!["--dialect", "ga", "--direction", "client"],
                expect_ok: false,
                expect_output: vec!["INVALID"],
            },
            Run {
                label: "GA-shaped update has undeclared keys for beta",
                file: TempJsonl::new("ga-on-beta", std::slice::from_ref(&ga_update)),
                args: vec!["--dialect", "beta", "--direction", "client"],
                expect_ok: false,
                expect_output: vec![
                    "UNDECLARED",
                    "$.session.audio",
                    "$.session.output_modalities",
                ],
            },
            Run {
                label: "beta audio delta is invalid on the GA adapter",
                file: TempJsonl::new("beta-delta-on-ga", &[ga_delta.clone(), beta_delta]),
                args: vec!["--dialect", "ga", "--direction", "server"],
                expect_ok: false,
                expect_output: vec!["INVALID", "response.audio.delta"],
            },
            Run {
                label: "GA session.created without lag allowances is flagged",
                file: TempJsonl::new("ga-session-lag", &[fixtures(ga_fixtures()).remove(0)]),
                args: vec!["--dialect", "ga", "--direction", "server"],
                expect_ok: false,
                expect_output: vec!["UNDECLARED", "$.session.expires_at"],
            },
        ]);
    }
}
