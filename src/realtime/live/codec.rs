//! The GPT-Live side of the model boundary: [`ModelCommand`]s to GPT-Live client events and
//! GPT-Live server events to [`ModelEvent`]s (sans-IO). Used by [`crate::realtime::Codec`] for
//! [`crate::realtime::protocol::Dialect::Live`].
//!
//! What the mapping does (live-protocol.md):
//! * `Configure` → `session.start` (once: the configuration is immutable, §2); nothing else is
//!   sent before `session.started`: appends are dropped (the session timeline starts at
//!   `session.started`, §3.3) and text context, greetings and tool outputs are held and released
//!   by [`LiveCodec::take_held`] once the session has started.
//! * `AppendAudio` → `session.input_audio.append`, continuously (the core appends silence frames
//!   for a silent caller).
//! * `Truncate`, `CancelResponse` → nothing: the model decides barge-in itself (§3.4).
//! * `AddContext`, `CreateResponse { instructions: Some(..) }` (the greeting) →
//!   `session.instructions.append` with `delegation_id: null` (§3.5).
//! * `ToolResult` → `response.item.create {function_call_output}` for a call of the delegated
//!   response that is still outstanding; `CreateResponse { instructions: None }` →
//!   `response.create` only once every outstanding call has its output (a partial batch is
//!   rejected, §3.6a), else nothing.
//! * Output audio is one stream: every delta is [`ModelEvent::AudioDelta`] of item
//!   [`OUTPUT_ITEM`]. Transcript fragments (200 ms windows, no done events) are grouped into turns
//!   on the session timeline: a gap of more than [`TURN_GAP_MS`] starts a new turn.
//! * The agent finished speaking: once the output stream (counted in ms of audio received) has
//!   passed the end of the agent's last fragment by [`TURN_GAP_MS`] without a new fragment, the
//!   turn is over and becomes [`ModelEvent::AgentTranscriptDone`] (after that delta's
//!   [`ModelEvent::AudioDelta`], so every byte of the turn is already queued for playout). The
//!   core hangs up after `end_call`'s goodbye on it, as it does on Realtime's `response.done`.
//! * A delegated response's `response.created` / `response.completed` (or `.failed`…) are
//!   [`ModelEvent::ResponseStarted`] / [`ModelEvent::ResponseDone`] (id: the delegation id), its
//!   completed `function_call` items [`ModelEvent::ToolCall`]s.
//! * `session.closed` (and any `error` before `session.started`, a failed startup) is
//!   [`ModelEvent::SessionClosed`]; `expires_at` and the usage seconds are kept for the shell.

use std::collections::VecDeque;

use tracing::{debug, info, warn};

use super::{HistoryMessage, LiveEvent, LiveSessionSettings, ResponseStream};
use crate::media::g711::Law;
use crate::realtime::model::{HistoryItem, HistoryRole, ModelCommand, ModelError, ModelEvent};
use crate::realtime::protocol::{self, SessionSettings};

/// The item id of every [`ModelEvent::AudioDelta`] of a GPT-Live session (its output has no items).
pub const OUTPUT_ITEM: &str = "live-output";
/// A transcript fragment starting more than this after the previous one's end (session timeline)
/// opens a new turn (the 0.8 s peers use, live-protocol.md §3.4).
pub const TURN_GAP_MS: u64 = 800;

impl LiveSessionSettings {
    /// The GPT-Live configuration for a call's Realtime-style settings: same instructions, voice,
    /// law and tools; the voice model by [`crate::realtime::models::voice_model`]; tools delegated
    /// to `backend_model`, which gets the agent's instructions as its backend prompt (the
    /// business rules live there). VAD and transcription settings have no GPT-Live equivalent.
    pub fn from_realtime(s: &SessionSettings, backend_model: &str) -> LiveSessionSettings {
        LiveSessionSettings {
            model: crate::realtime::models::voice_model(protocol::Dialect::Live, &s.model)
                .to_owned(),
            instructions: s.instructions.clone(),
            voice: s.voice.clone(),
            law: s.law,
            tools: s.tools.clone(),
            backend_model: backend_model.to_owned(),
            backend_instructions: Some(s.instructions.clone()),
            history: Vec::new(),
        }
    }
}

/// Transcript fragments grouped into turns.
#[derive(Debug, Default, Clone)]
struct Turns {
    count: u64,
    last_end_ms: Option<u64>,
    text: String,
    /// The current turn was declared over ([`Turns::end_if_past`]): the next fragment opens one.
    ended: bool,
}

impl Turns {
    /// Adds a fragment; returns `(turn number, whether it opened a new turn)`.
    fn push(&mut self, delta: &str, start_ms: u64, end_ms: u64) -> (u64, bool) {
        let new = std::mem::take(&mut self.ended)
            || self
                .last_end_ms
                .is_none_or(|end| start_ms > end.saturating_add(TURN_GAP_MS));
        if new {
            self.count += 1;
            self.text.clear();
        }
        self.text.push_str(delta);
        self.last_end_ms = Some(end_ms.max(start_ms));
        (self.count, new)
    }

    /// Ends the open turn if the timeline reached `position_ms`, [`TURN_GAP_MS`] past its last
    /// fragment; returns its number.
    fn end_if_past(&mut self, position_ms: u64) -> Option<u64> {
        let end = self.last_end_ms?;
        if self.ended || self.count == 0 || position_ms < end.saturating_add(TURN_GAP_MS) {
            return None;
        }
        self.ended = true;
        Some(self.count)
    }
}

/// The GPT-Live encoder/decoder of one session. See the module docs.
#[derive(Debug, Clone)]
pub struct LiveCodec {
    backend_model: String,
    law: Option<Law>,
    start_sent: bool,
    started: bool,
    held: Vec<String>,
    /// Calls of the delegated response still without an output.
    outstanding: Vec<String>,
    /// Every outstanding call has been answered: the next `CreateResponse` continues.
    continuation_due: bool,
    expires_at: Option<i64>,
    usage_seconds: f64,
    dropped_appends: u64,
    /// Output audio received, in ms (the stream's position on the session timeline).
    output_ms: u64,
    caller: Turns,
    agent: Turns,
    /// History for `session.start`'s `input`, from [`ModelCommand::SeedHistory`] (rollover).
    seed: Vec<HistoryMessage>,
}

/// Most caller frames (20 ms) held between `session.start` and `session.started` (10 s).
const MAX_HELD_APPENDS: usize = 500;

/// Most messages `session.start` takes in `input` (live-protocol.md §2.1).
const MAX_HISTORY_MESSAGES: usize = 128;

/// A seeded history item as a GPT-Live startup message: function calls and their outputs,
/// which Live has no items for, become developer messages.
fn history_message(item: &HistoryItem) -> HistoryMessage {
    let (role, text) = match item {
        HistoryItem::Message { role, text } => (
            match role {
                HistoryRole::Caller => super::HistoryRole::User,
                HistoryRole::Agent => super::HistoryRole::Assistant,
                HistoryRole::System => super::HistoryRole::Developer,
            },
            text.clone(),
        ),
        HistoryItem::ToolCall {
            name, arguments, ..
        } => (
            super::HistoryRole::Developer,
            format!("Earlier in this call the function {name} was called with {arguments}."),
        ),
        HistoryItem::ToolOutput { output, .. } => (
            super::HistoryRole::Developer,
            format!("That function returned: {output}"),
        ),
    };
    HistoryMessage { role, text }
}

impl LiveCodec {
    /// A codec whose tool calls go to the Responses model `backend_model`.
    pub fn new(backend_model: &str) -> LiveCodec {
        LiveCodec {
            backend_model: backend_model.to_owned(),
            law: None,
            start_sent: false,
            started: false,
            held: Vec::new(),
            outstanding: Vec::new(),
            continuation_due: false,
            expires_at: None,
            usage_seconds: 0.0,
            dropped_appends: 0,
            output_ms: 0,
            seed: Vec::new(),
            caller: Turns::default(),
            agent: Turns::default(),
        }
    }

    /// `session.expires_at` (Unix seconds) from `session.started`, once received.
    pub fn expires_at(&self) -> Option<i64> {
        self.expires_at
    }

    /// The latest cumulative billable duration (`session.usage.updated` / `session.closed`), s.
    pub fn usage_seconds(&self) -> f64 {
        self.usage_seconds
    }

    /// Whether `session.start` was sent and `session.close` therefore makes sense.
    pub fn start_sent(&self) -> bool {
        self.start_sent
    }

    /// Client events held until `session.started`, to send now (empty before it).
    pub fn take_held(&mut self) -> Vec<String> {
        if self.started {
            std::mem::take(&mut self.held)
        } else {
            Vec::new()
        }
    }

    /// Writes the wire text of `cmd` into `out` (cleared first); false when nothing is to be sent
    /// now (see the module docs for what is dropped or held).
    pub fn encode(&mut self, cmd: &ModelCommand, out: &mut String) -> bool {
        out.clear();
        let text = match cmd {
            ModelCommand::Configure(s) => {
                if self.start_sent && self.law == Some(s.law) {
                    debug!(
                        "session.start was sent at connect; the call's configuration is in force"
                    );
                    return false;
                }
                if self.start_sent {
                    warn!("a GPT-Live session cannot be reconfigured (format, voice and instructions are fixed at session.start); keeping it as started");
                    return false;
                }
                self.start_sent = true;
                self.law = Some(s.law);
                let mut settings = LiveSessionSettings::from_realtime(s, &self.backend_model);
                settings.history = std::mem::take(&mut self.seed);
                out.push_str(&super::session_start(&settings));
                return true;
            }
            ModelCommand::SeedHistory(item) => {
                if self.start_sent {
                    debug!("history after session.start cannot be added to a GPT-Live session");
                    return false;
                }
                // At most 128 startup messages (live-protocol.md §2.1): keep the latest.
                if self.seed.len() == MAX_HISTORY_MESSAGES {
                    self.seed.remove(0);
                }
                self.seed.push(history_message(item));
                return false;
            }
            ModelCommand::AppendAudio(audio) => {
                if !self.started {
                    // Between session.start and session.started (a session replacing another
                    // mid-call): the caller's audio waits, bounded; before session.start it has
                    // nowhere to go.
                    if self.start_sent && self.held.len() < MAX_HELD_APPENDS {
                        let mut text = String::new();
                        super::input_audio_append(&mut text, audio);
                        self.held.push(text);
                    } else {
                        self.dropped_appends += 1;
                    }
                    return false;
                }
                super::input_audio_append(out, audio);
                return true;
            }
            ModelCommand::Truncate { .. } | ModelCommand::CancelResponse => return false,
            ModelCommand::AddContext { text } => super::instructions_append(text),
            ModelCommand::CreateResponse {
                instructions: Some(i),
            } => super::instructions_append(i),
            ModelCommand::CreateResponse { instructions: None } => {
                if !std::mem::take(&mut self.continuation_due) {
                    return false;
                }
                super::response_create()
            }
            ModelCommand::ToolResult { call_id, output } => {
                let Some(pos) = self.outstanding.iter().position(|c| c == call_id) else {
                    debug!(%call_id, "no outstanding delegated call with this id; output not sent");
                    return false;
                };
                self.outstanding.remove(pos);
                self.continuation_due = self.outstanding.is_empty();
                super::function_call_output(call_id, output)
            }
        };
        if self.started {
            out.push_str(&text);
            true
        } else {
            self.held.push(text);
            false
        }
    }

    /// Decodes one server frame, pushing the model events onto `out`.
    ///
    /// # Errors
    /// The frame is not a readable GPT-Live event; nothing is pushed.
    pub fn decode(
        &mut self,
        text: &str,
        out: &mut VecDeque<ModelEvent>,
    ) -> Result<(), protocol::Error> {
        let event = super::parse_server_event(text)?;
        self.decode_event(event, out);
        Ok(())
    }

    fn decode_event(&mut self, event: LiveEvent, out: &mut VecDeque<ModelEvent>) {
        match event {
            LiveEvent::SessionStarted {
                session_id,
                expires_at,
                format,
            } => {
                self.started = true;
                self.expires_at = expires_at;
                debug!(
                    dropped = self.dropped_appends,
                    "caller frames before session.started were not sent"
                );
                let wanted = self.law.map(|l| super::audio_format(l)["type"].clone());
                if let (Some(want), Some(got)) = (&wanted, &format) {
                    if want.as_str() != Some(got.as_str()) {
                        warn!(%got, %want, "the GPT-Live session started with another audio format");
                    }
                }
                out.push_back(ModelEvent::SessionCreated {
                    session_id: Some(session_id),
                });
            }
            LiveEvent::OutputAudio { audio } => {
                // G.711 at 8 kHz: 8 bytes per ms.
                self.output_ms += audio.len() as u64 / crate::media::g711::BYTES_PER_MS;
                out.push_back(ModelEvent::AudioDelta {
                    item_id: OUTPUT_ITEM.to_owned(),
                    content_index: 0,
                    audio,
                });
                if let Some(n) = self.agent.end_if_past(self.output_ms) {
                    out.push_back(ModelEvent::AgentTranscriptDone {
                        item_id: format!("live-agent-{n}"),
                        text: self.agent.text.clone(),
                    });
                }
            }
            LiveEvent::InputTranscript {
                delta,
                start_ms,
                end_ms,
            } => {
                let (n, _) = self.caller.push(&delta, start_ms, end_ms);
                out.push_back(ModelEvent::CallerTranscript {
                    item_id: format!("live-caller-{n}"),
                    text: self.caller.text.clone(),
                });
            }
            LiveEvent::OutputTranscript {
                delta,
                start_ms,
                end_ms,
            } => {
                let (n, _) = self.agent.push(&delta, start_ms, end_ms);
                out.push_back(ModelEvent::AgentTranscriptDelta {
                    item_id: format!("live-agent-{n}"),
                    delta,
                });
            }
            LiveEvent::DelegationCreated {
                id,
                target,
                offset_ms,
                ..
            } => debug!(delegation = %id, %target, offset_ms, "the model delegated work"),
            LiveEvent::Response {
                delegation_id,
                event,
            } => {
                let response_id = delegation_id.unwrap_or_else(|| "delegated".to_owned());
                match event {
                    ResponseStream::Created => {
                        out.push_back(ModelEvent::ResponseStarted { response_id })
                    }
                    ResponseStream::FunctionCall(call) => {
                        if !self.outstanding.contains(&call.call_id) {
                            self.outstanding.push(call.call_id.clone());
                            self.continuation_due = false;
                            out.push_back(ModelEvent::ToolCall {
                                call_id: call.call_id,
                                name: call.name,
                                arguments: call.arguments,
                            });
                        }
                    }
                    ResponseStream::Completed { usage } => {
                        out.push_back(ModelEvent::ResponseDone {
                            response_id,
                            status: "completed".to_owned(),
                            usage,
                        })
                    }
                    ResponseStream::Ended { kind } => {
                        // The service discards a failed response's calls: an output is refused.
                        self.outstanding.clear();
                        self.continuation_due = false;
                        out.push_back(ModelEvent::ResponseDone {
                            response_id,
                            status: kind.trim_start_matches("response.").to_owned(),
                            usage: None,
                        });
                    }
                    ResponseStream::Other { .. } => {}
                }
            }
            LiveEvent::UsageUpdated { seconds, .. } => {
                self.usage_seconds = seconds;
                debug!(seconds, "GPT-Live usage");
            }
            LiveEvent::Closed { reason, seconds } => {
                self.usage_seconds = seconds;
                info!(%reason, seconds, "GPT-Live session closed by the server");
                out.push_back(ModelEvent::SessionClosed {
                    reason: format!("session.closed: {reason}"),
                });
            }
            LiveEvent::Error {
                error_type,
                code,
                message,
                param,
            } => {
                let failed_start = self.start_sent && !self.started;
                out.push_back(ModelEvent::Error(ModelError {
                    kind: error_type,
                    code: code.clone(),
                    message: match &param {
                        Some(p) => format!("{message} (param {p})"),
                        None => message.clone(),
                    },
                    response_in_progress: false,
                }));
                if failed_start {
                    out.push_back(ModelEvent::SessionClosed {
                        reason: format!(
                            "session.start refused: {}: {message}",
                            code.as_deref().unwrap_or("error")
                        ),
                    });
                }
            }
            LiveEvent::Info { code, message } => debug!(%code, %message, "GPT-Live notice"),
            LiveEvent::ContextAppended { .. }
            | LiveEvent::SessionUpdated
            | LiveEvent::Other { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests;
