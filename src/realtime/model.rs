//! The protocol-neutral model boundary: what the call's core ([`crate::bridge::core`]) hears from
//! a voice-model session ([`ModelEvent`]) and what it asks of it ([`ModelCommand`]), plus what a
//! dialect can do ([`Capabilities`]).
//!
//! The core never sees a wire event name, a JSON value or a WebSocket type: it speaks these types
//! only, and reads [`Capabilities`] where dialects behave differently (who decides barge-in, whether
//! output is one continuous stream). Each dialect's encoder/decoder lives in
//! [`super::codec`] (sans-IO); [`super::session::Session`] carries it over the WebSocket. Adding a
//! dialect touches only `src/realtime/`.
//!
//! Units: audio is G.711 bytes at 8 kHz (1 byte = 1 sample = 0.125 ms) in the call's law, both
//! ways, no transcoding; positions are milliseconds.

use super::protocol::{SessionSettings, Usage};

/// What a dialect does, for the parts of the core that depend on it. Read once per call from
/// [`super::protocol::Dialect::capabilities`] (or [`super::session::Session::capabilities`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The server reports the caller's speech ([`ModelEvent::SpeechStarted`]) and expects the
    /// client to stop playout and truncate the interrupted item at the audio actually played
    /// ([`ModelCommand::Truncate`]; Realtime GA and beta, realtime-protocol.md §5.1–5.2). When
    /// false the model decides barge-in itself (GPT-Live, live-protocol.md §3.4): the core never
    /// flushes model audio it has received.
    pub truncates_on_barge_in: bool,
    /// [`ModelCommand::CancelResponse`] exists (Realtime `response.cancel`).
    pub cancels_responses: bool,
    /// Model audio is one continuous, real-time-paced stream (silence included) rather than
    /// per-response bursts, so "no audio queued" does not mean "the agent finished speaking"
    /// (GPT-Live, live-protocol.md §3.3).
    pub continuous_output: bool,
    /// The session must receive input audio continuously from its start, silence included (the
    /// core appends the jitter buffer's silence frames for a silent caller anyway).
    pub continuous_input: bool,
    /// The caller's words always come back as transcripts ([`ModelEvent::CallerTranscript`]),
    /// with or without a transcription model in the session settings (GPT-Live,
    /// live-protocol.md §3.2); otherwise only when a transcription model is configured.
    pub transcribes_caller: bool,
}

/// One event from the model session, decoded from whatever the dialect sends. Item and response
/// ids are opaque strings chosen by the server.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelEvent {
    /// The session is open (Realtime `session.created`).
    SessionCreated {
        /// Server's session id, for logs.
        session_id: Option<String>,
    },
    /// A chunk of agent audio for `item_id` (G.711 bytes in the call's law, 8 kHz).
    AudioDelta {
        /// The assistant item the audio belongs to (what a truncate names).
        item_id: String,
        /// Content part index within the item.
        content_index: u32,
        /// The audio.
        audio: Vec<u8>,
    },
    /// The caller started speaking, at `audio_start_ms` of the session's input audio.
    SpeechStarted {
        /// Position in the input audio, ms since the first append.
        audio_start_ms: u64,
        /// The user item the speech becomes.
        item_id: String,
    },
    /// The caller stopped speaking, at `audio_end_ms` of the session's input audio.
    SpeechStopped {
        /// Position in the input audio, ms since the first append.
        audio_end_ms: u64,
        /// The user item.
        item_id: String,
    },
    /// A response started (the model is about to speak or call a function).
    ResponseStarted {
        /// Its id.
        response_id: String,
    },
    /// A response finished, whatever its status (`completed`, `cancelled`, `incomplete`, `failed`).
    ResponseDone {
        /// Its id.
        response_id: String,
        /// Final status, verbatim.
        status: String,
        /// Token usage of this response, if reported.
        usage: Option<Usage>,
    },
    /// The model called a function. Emitted once per `call_id` (the decoder deduplicates the
    /// dialect's several announcements of one call); answer with [`ModelCommand::ToolResult`].
    ToolCall {
        /// Id to answer with.
        call_id: String,
        /// Function name.
        name: String,
        /// Arguments: a JSON object as text (not validated here).
        arguments: String,
    },
    /// What the caller said, once transcribed.
    CallerTranscript {
        /// The user item.
        item_id: String,
        /// The text.
        text: String,
    },
    /// A fragment of what the agent is saying.
    AgentTranscriptDelta {
        /// The assistant item.
        item_id: String,
        /// The fragment.
        delta: String,
    },
    /// The whole text of what the agent said in an item.
    AgentTranscriptDone {
        /// The assistant item.
        item_id: String,
        /// The text.
        text: String,
    },
    /// The server reported an error; the session stays open.
    Error(ModelError),
    /// The server ended the session (close frame or end of stream); the call cannot continue
    /// with this session.
    SessionClosed {
        /// Close code and reason as the server gave them, for logs.
        reason: String,
    },
}

/// An `error` the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError {
    /// Error type (`invalid_request_error`, `server_error`…).
    pub kind: String,
    /// Error code, if any.
    pub code: Option<String>,
    /// Human-readable message.
    pub message: String,
    /// The server refused a response request because a response is already in progress (Realtime
    /// `conversation_already_has_active_response`): the core asks again after that one.
    pub response_in_progress: bool,
}

/// One request to the model session. The dialect's encoder turns each into one wire message (or
/// none, when the dialect has no such thing).
#[derive(Debug, Clone, PartialEq)]
pub enum ModelCommand {
    /// Configure the session (instructions, voice, audio format, turn detection, tools).
    Configure(Box<SessionSettings>),
    /// Append caller audio (G.711 bytes in the call's law; one 20 ms frame is 160 bytes).
    AppendAudio(Vec<u8>),
    /// The caller heard only `audio_end_ms` of assistant item `item_id`: cut it there.
    Truncate {
        /// The interrupted assistant item.
        item_id: String,
        /// Its content part.
        content_index: u32,
        /// Audio the caller heard, ms.
        audio_end_ms: u64,
    },
    /// The output of function call `call_id` (a JSON object as text).
    ToolResult {
        /// The call answered.
        call_id: String,
        /// The output.
        output: String,
    },
    /// Cancel the response in progress.
    CancelResponse,
    /// Add text the model should know as if the caller said it ("The caller pressed 3.").
    AddContext {
        /// The text.
        text: String,
    },
    /// Ask the model to respond now, optionally with instructions for this response only
    /// (the greeting).
    CreateResponse {
        /// Per-response instructions.
        instructions: Option<String>,
    },
    /// One item of the conversation so far, for a session that replaces another mid-call
    /// (rollover). Sent before the session's first [`ModelCommand::Configure`] and before any
    /// audio: GA/beta encode it as `conversation.item.create` (realtime-protocol.md §2.2, §5.5);
    /// GPT-Live collects the items into `session.start`'s `input` (live-protocol.md §2.1).
    SeedHistory(HistoryItem),
}

/// One item of the conversation a replacement session is seeded with
/// ([`ModelCommand::SeedHistory`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryItem {
    /// A text message: what the caller said, what the agent said (as heard), or context from
    /// the application (a `system` message; GPT-Live `developer`).
    Message {
        /// Who.
        role: HistoryRole,
        /// The text.
        text: String,
    },
    /// A function call the model made earlier in the call (its output follows as
    /// [`HistoryItem::ToolOutput`], or later as a [`ModelCommand::ToolResult`] when it is still
    /// running). GPT-Live has no such item: it becomes a developer message.
    ToolCall {
        /// The call's id (a later [`ModelCommand::ToolResult`] answers it).
        call_id: String,
        /// Function name.
        name: String,
        /// Arguments, a JSON object as text.
        arguments: String,
    },
    /// The output of an earlier function call. GPT-Live: a developer message.
    ToolOutput {
        /// The call answered.
        call_id: String,
        /// Its output (JSON text).
        output: String,
    },
}

/// Who a [`HistoryItem::Message`] is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryRole {
    /// The caller (`user`).
    Caller,
    /// The agent (`assistant`).
    Agent,
    /// The application (`system`; GPT-Live `developer`).
    System,
}

impl ModelCommand {
    /// Whether this is caller audio (the core counts these for its latency figures).
    pub fn is_audio(&self) -> bool {
        matches!(self, ModelCommand::AppendAudio(_))
    }
}
