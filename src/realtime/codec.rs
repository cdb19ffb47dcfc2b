//! Per-dialect encoding of [`ModelCommand`]s and decoding of server frames into [`ModelEvent`]s
//! (sans-IO: no sockets, no clock).
//!
//! [`Codec`] is the only place that maps the neutral boundary of [`super::model`] to a wire
//! dialect. For the Realtime dialects (GA and beta) it builds the client events of
//! [`super::protocol`] and turns [`ServerEvent`]s into model events, assembling function calls on
//! the way: a call is announced up to three times (`response.function_call_arguments.done`,
//! `response.output_item.done`, `response.done`), and the beta dialect names the function only on
//! its output item, so the codec remembers names by item/call id and emits one
//! [`ModelEvent::ToolCall`] per `call_id` (realtime-protocol.md §5.4).

use std::collections::VecDeque;

use super::live::codec::LiveCodec;
use super::model::{Capabilities, ModelCommand, ModelError, ModelEvent};
use super::protocol::{self, Dialect, ServerEvent};

/// How many function-call ids (and beta function names) are remembered for deduplication.
const REMEMBERED_TOOL_CALLS: usize = 32;

/// The Realtime `error` code meaning "a response is already in progress".
const ACTIVE_RESPONSE_CODE: &str = "conversation_already_has_active_response";

/// The encoder/decoder of one session. See the module docs.
#[derive(Debug, Clone)]
pub struct Codec {
    dialect: Dialect,
    /// `(call id or item id, function name)` from beta `response.output_item.added`.
    function_names: VecDeque<(String, String)>,
    /// Call ids already emitted as [`ModelEvent::ToolCall`].
    tool_calls_seen: VecDeque<String>,
    /// The GPT-Live mapping, for [`Dialect::Live`] ([`super::live::codec`]).
    live: Option<LiveCodec>,
}

impl Codec {
    /// A codec for a fresh session speaking `dialect` (GPT-Live tool calls go to
    /// [`super::models::DEFAULT_LIVE_BACKEND_MODEL`]; see [`Codec::with_backend_model`]).
    pub fn new(dialect: Dialect) -> Codec {
        Codec::with_backend_model(dialect, super::models::DEFAULT_LIVE_BACKEND_MODEL)
    }

    /// A codec for `dialect` whose GPT-Live sessions delegate tool calls to the Responses model
    /// `backend_model` (ignored by the Realtime dialects).
    pub fn with_backend_model(dialect: Dialect, backend_model: &str) -> Codec {
        Codec {
            dialect,
            function_names: VecDeque::new(),
            tool_calls_seen: VecDeque::new(),
            live: (dialect == Dialect::Live).then(|| LiveCodec::new(backend_model)),
        }
    }

    /// The GPT-Live state (`expires_at`, usage seconds, held events), for [`Dialect::Live`].
    pub fn live(&mut self) -> Option<&mut LiveCodec> {
        self.live.as_mut()
    }

    /// The dialect spoken.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// What the dialect can do ([`Dialect::capabilities`]).
    pub fn capabilities(&self) -> Capabilities {
        self.dialect.capabilities()
    }

    /// Writes the wire text of `cmd` into `out` (cleared first). Returns false, leaving `out`
    /// empty, when the dialect has no such message (nothing is to be sent).
    pub fn encode(&mut self, cmd: &ModelCommand, out: &mut String) -> bool {
        out.clear();
        if let Some(live) = &mut self.live {
            return live.encode(cmd, out);
        }
        match cmd {
            ModelCommand::AppendAudio(audio) => protocol::input_audio_buffer_append(out, audio),
            ModelCommand::Configure(settings) => {
                out.push_str(&protocol::session_update(self.dialect, settings))
            }
            ModelCommand::Truncate {
                item_id,
                content_index,
                audio_end_ms,
            } => out.push_str(&protocol::conversation_item_truncate(
                item_id,
                *content_index,
                *audio_end_ms,
            )),
            ModelCommand::ToolResult { call_id, output } => {
                out.push_str(&protocol::function_call_output(call_id, output))
            }
            ModelCommand::CancelResponse => out.push_str(&protocol::response_cancel()),
            ModelCommand::AddContext { text } => {
                out.push_str(&protocol::user_text_message(self.dialect, text))
            }
            ModelCommand::CreateResponse { instructions } => {
                out.push_str(&protocol::response_create(instructions.as_deref()))
            }
            ModelCommand::SeedHistory(item) => {
                out.push_str(&protocol::history_item(self.dialect, item))
            }
        }
        !out.is_empty()
    }

    /// The wire text of `cmd`, or `None` when the dialect has no such message.
    pub fn encode_to_string(&mut self, cmd: &ModelCommand) -> Option<String> {
        let mut out = String::new();
        self.encode(cmd, &mut out).then_some(out)
    }

    /// Decodes one text frame from the server, pushing zero or more events onto `out` in order.
    /// Events the core does not need (`session.updated`, `rate_limits.updated`…) produce none.
    ///
    /// # Errors
    /// The frame is not a readable server event ([`protocol::Error`]); nothing is pushed and the
    /// session may continue.
    pub fn decode(
        &mut self,
        text: &str,
        out: &mut VecDeque<ModelEvent>,
    ) -> Result<(), protocol::Error> {
        if let Some(live) = &mut self.live {
            return live.decode(text, out);
        }
        let event = protocol::parse_server_event(text)?;
        self.decode_event(event, out);
        Ok(())
    }

    /// Maps one parsed Realtime server event (see [`Codec::decode`]).
    pub fn decode_event(&mut self, event: ServerEvent, out: &mut VecDeque<ModelEvent>) {
        match event {
            ServerEvent::SessionCreated { session_id, .. } => {
                out.push_back(ModelEvent::SessionCreated { session_id })
            }
            ServerEvent::AudioDelta {
                item_id,
                content_index,
                audio,
                ..
            } => out.push_back(ModelEvent::AudioDelta {
                item_id,
                content_index,
                audio,
            }),
            ServerEvent::SpeechStarted {
                audio_start_ms,
                item_id,
            } => out.push_back(ModelEvent::SpeechStarted {
                audio_start_ms,
                item_id,
            }),
            ServerEvent::SpeechStopped {
                audio_end_ms,
                item_id,
            } => out.push_back(ModelEvent::SpeechStopped {
                audio_end_ms,
                item_id,
            }),
            ServerEvent::ResponseCreated { response_id } => {
                out.push_back(ModelEvent::ResponseStarted { response_id })
            }
            ServerEvent::ResponseDone {
                response_id,
                status,
                function_calls,
                usage,
                ..
            } => {
                for call in function_calls {
                    self.tool_call(
                        call.call_id,
                        Some(call.name),
                        Some(call.item_id),
                        call.arguments,
                        out,
                    );
                }
                out.push_back(ModelEvent::ResponseDone {
                    response_id,
                    status,
                    usage,
                });
            }
            ServerEvent::OutputItemAdded {
                item_id,
                kind,
                name: Some(name),
                call_id,
                ..
            } if kind == "function_call" => {
                self.function_names
                    .push_back((call_id.unwrap_or(item_id), name));
                if self.function_names.len() > REMEMBERED_TOOL_CALLS {
                    self.function_names.pop_front();
                }
            }
            ServerEvent::OutputItemDone {
                item_id,
                kind,
                name,
                call_id: Some(call_id),
                arguments: Some(arguments),
                ..
            } if kind == "function_call" => {
                self.tool_call(call_id, name, Some(item_id), arguments, out)
            }
            ServerEvent::FunctionCallArgumentsDone {
                call_id,
                name,
                item_id,
                arguments,
                ..
            } => self.tool_call(call_id, name, Some(item_id), arguments, out),
            ServerEvent::Error {
                kind,
                code,
                message,
                ..
            } => out.push_back(ModelEvent::Error(ModelError {
                response_in_progress: code.as_deref() == Some(ACTIVE_RESPONSE_CODE),
                kind,
                code,
                message,
            })),
            ServerEvent::InputTranscriptionCompleted {
                item_id,
                transcript,
            } => out.push_back(ModelEvent::CallerTranscript {
                item_id,
                text: transcript,
            }),
            ServerEvent::TranscriptDelta { item_id, delta } => {
                out.push_back(ModelEvent::AgentTranscriptDelta { item_id, delta })
            }
            ServerEvent::TranscriptDone {
                item_id,
                transcript,
            } => out.push_back(ModelEvent::AgentTranscriptDone {
                item_id,
                text: transcript,
            }),
            _ => {}
        }
    }

    /// Emits a function call once per `call_id`, once its name is known.
    fn tool_call(
        &mut self,
        call_id: String,
        name: Option<String>,
        item_id: Option<String>,
        arguments: String,
        out: &mut VecDeque<ModelEvent>,
    ) {
        if self.tool_calls_seen.iter().any(|c| *c == call_id) {
            return;
        }
        let name = name.or_else(|| {
            self.function_names
                .iter()
                .find(|(id, _)| *id == call_id || Some(id) == item_id.as_ref())
                .map(|(_, n)| n.clone())
        });
        let Some(name) = name else {
            // Beta servers name the function only on its item; wait for output_item.done or
            // response.done, which carry it.
            return;
        };
        self.tool_calls_seen.push_back(call_id.clone());
        if self.tool_calls_seen.len() > REMEMBERED_TOOL_CALLS {
            self.tool_calls_seen.pop_front();
        }
        out.push_back(ModelEvent::ToolCall {
            call_id,
            name,
            arguments,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn decode_all(codec: &mut Codec, frames: &[&str]) -> Vec<ModelEvent> {
        let mut out = VecDeque::new();
        for f in frames {
            codec.decode(f, &mut out).expect("readable frame");
        }
        out.into_iter().collect()
    }

    #[test]
    fn a_function_call_announced_three_times_is_one_tool_call() {
        let mut c = Codec::new(Dialect::Ga);
        let events = decode_all(
            &mut c,
            &[
                r#"{"type":"response.function_call_arguments.done","response_id":"r1","item_id":"fc1","output_index":0,"call_id":"call_1","name":"check_availability","arguments":"{}"}"#,
                r#"{"type":"response.output_item.done","response_id":"r1","output_index":0,"item":{"id":"fc1","type":"function_call","call_id":"call_1","name":"check_availability","arguments":"{}"}}"#,
                r#"{"type":"response.done","response":{"id":"r1","status":"completed","output":[{"id":"fc1","type":"function_call","call_id":"call_1","name":"check_availability","arguments":"{}"}]}}"#,
            ],
        );
        assert_eq!(
            events,
            [
                ModelEvent::ToolCall {
                    call_id: "call_1".into(),
                    name: "check_availability".into(),
                    arguments: "{}".into()
                },
                ModelEvent::ResponseDone {
                    response_id: "r1".into(),
                    status: "completed".into(),
                    usage: None
                }
            ]
        );
    }

    #[test]
    fn beta_function_name_comes_from_the_output_item() {
        let mut c = Codec::new(Dialect::Beta);
        let events = decode_all(
            &mut c,
            &[
                r#"{"type":"response.output_item.added","response_id":"r1","output_index":0,"item":{"id":"fc9","type":"function_call","call_id":"call_9","name":"book_appointment"}}"#,
                r#"{"type":"response.function_call_arguments.done","response_id":"r1","item_id":"fc9","output_index":0,"call_id":"call_9","arguments":"{\"a\":1}"}"#,
            ],
        );
        assert_eq!(
            events,
            [ModelEvent::ToolCall {
                call_id: "call_9".into(),
                name: "book_appointment".into(),
                arguments: "{\"a\":1}".into()
            }]
        );
    }

    #[test]
    fn the_active_response_error_is_flagged() {
        let mut c = Codec::new(Dialect::Ga);
        let events = decode_all(
            &mut c,
            &[
                r#"{"type":"error","error":{"type":"invalid_request_error","code":"conversation_already_has_active_response","message":"busy"}}"#,
            ],
        );
        assert!(matches!(
            &events[0],
            ModelEvent::Error(ModelError {
                response_in_progress: true,
                ..
            })
        ));
    }

    #[test]
    fn commands_encode_to_the_dialects_client_events() {
        let mut c = Codec::new(Dialect::Ga);
        let types = [
            ModelCommand::AppendAudio(vec![0xFF; 160]),
            ModelCommand::Truncate {
                item_id: "i".into(),
                content_index: 0,
                audio_end_ms: 520,
            },
            ModelCommand::ToolResult {
                call_id: "c".into(),
                output: "{}".into(),
            },
            ModelCommand::CancelResponse,
            ModelCommand::AddContext { text: "t".into() },
            ModelCommand::CreateResponse { instructions: None },
        ]
        .iter()
        .map(|cmd| {
            let text = c.encode_to_string(cmd).expect("GA has every command");
            let v: Value = serde_json::from_str(&text).expect("json");
            v["type"].as_str().unwrap_or_default().to_owned()
        })
        .collect::<Vec<_>>();
        assert_eq!(
            types,
            [
                "input_audio_buffer.append",
                "conversation.item.truncate",
                "conversation.item.create",
                "response.cancel",
                "conversation.item.create",
                "response.create"
            ]
        );
    }
}
