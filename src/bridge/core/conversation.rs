//! The conversation half of the call's core: model events in, model commands out.
//!
//! Barge-in (realtime-protocol.md §5.1–5.2), for dialects that truncate
//! ([`Capabilities::truncates_on_barge_in`](crate::realtime::Capabilities)): on
//! [`ModelEvent::SpeechStarted`] the queued model audio is dropped at once (at most the frame
//! already handed out is still sent), the interrupted assistant item is truncated at the
//! milliseconds actually sent as RTP (never more than was received, and no truncate when nothing
//! was cut; an item of a response we cancel while it is being generated counts as cut), late deltas of that item are discarded, and a cancel is sent only when a response is
//! in progress and the server will not cancel it itself (`interrupt_response: false`).
//!
//! Echo (issue 15): every `speech_started` during agent audio is classified with the call's
//! [`EchoGate`](crate::media::echo::EchoGate) estimate as a false barge-in (only the echo of our
//! own audio was on the line) or a true one, and counted. Agents with the gate on (the default)
//! get Realtime sessions with `interrupt_response: false` (`bridge/setup.rs`), so frontdesk
//! decides interruptions: a false one does not stop the agent (the server lets the response run,
//! §5.2); a true one does everything the server would have done and more: playout stops at once,
//! the played item is truncated, and the response in progress, if any, gets one `response.cancel`
//! (its deltas still in flight are dropped until its `response.done`). GPT-Live decides itself.
//!
//! Function calls: each [`ModelEvent::ToolCall`] becomes an [`Output::RunTool`](super::Output)
//! (or a call-control action, `control.rs`); its output goes back as a tool result, and a response
//! is requested once no call is outstanding and no response is in progress (never colliding with a
//! response the caller's speech started: realtime-protocol.md §5.4, step 5).

use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::media::g711::BYTES_PER_MS;
use crate::pricing::CallUsage;
use crate::realtime::model::{ModelCommand, ModelError, ModelEvent};
use crate::realtime::protocol::SessionSettings;
use crate::telemetry::Pii;

use super::super::transcript::Turn;
use super::{
    Bridge, PlayingItem, SpokenTurn, ToolRequest, CANCEL_RACE_WINDOW, REMEMBERED_INTERRUPTED_ITEMS,
};

impl Bridge {
    /// Queues the session configuration and, if `greeting` is not empty, a response that speaks it.
    /// Call once, right after the session opened.
    pub(super) fn start_session(&mut self, settings: &SessionSettings, greeting: &str) {
        self.ws_out
            .push_back(ModelCommand::Configure(Box::new(settings.clone())));
        if !greeting.trim().is_empty() {
            let instructions = format!(
                "Greet the caller now. Say exactly this, then wait for them to answer: {greeting}"
            );
            self.ws_out.push_back(ModelCommand::CreateResponse {
                instructions: Some(instructions),
            });
        }
    }

    /// Tells the model about a key press as a user message ("The caller pressed 3.") and asks for
    /// a response when none is in progress.
    pub(super) fn forward_digit(&mut self, now: Instant, key: char) {
        self.note(now, &format!("pressed {key}"));
        self.ws_out.push_back(ModelCommand::AddContext {
            text: format!("The caller pressed {key}."),
        });
        self.response_wanted = true;
        self.maybe_request_response();
    }

    /// Adds a system note ("pressed 3", "transferred to reception") to the call's transcript.
    pub fn note(&mut self, now: Instant, text: &str) {
        let at = self.call_ms(now);
        self.transcript.note(at, text);
    }

    /// The call's transcript so far ([`Transcript::turns`]); an agent item still playing counts
    /// as heard only as far as it was played. Call at the end of the call.
    pub fn finish_transcript(&mut self) -> Vec<Turn> {
        if let Some(item) = &self.playing {
            let received = self.pacer.received_bytes(item.tag);
            let played = self.pacer.played_bytes(item.tag);
            if played < received {
                self.transcript.handle_agent_cut(&item.id, played);
            }
        }
        self.transcript.turns()
    }

    /// How long after the caller stopped speaking (`input_audio_buffer.speech_stopped`) the
    /// reply's first audio delta arrived, once per caller turn (for the
    /// `frontdesk_model_first_audio_seconds` metric).
    pub fn take_first_audio_latency(&mut self) -> Option<Duration> {
        self.first_audio_latency.take()
    }

    /// The token usage the server reported so far (every `response.done`).
    pub fn usage(&self) -> CallUsage {
        self.usage
    }

    /// Feeds one event from the model session.
    pub(super) fn handle_model_event(&mut self, now: Instant, event: ModelEvent) {
        match event {
            ModelEvent::AudioDelta {
                item_id,
                content_index,
                audio,
            } => self.on_audio_delta(now, item_id, content_index, &audio),
            ModelEvent::SpeechStarted {
                audio_start_ms,
                item_id,
            } => {
                debug!(audio_start_ms, "caller started speaking");
                let at = self.audio_to_call_ms(now, audio_start_ms);
                self.transcript.handle_speech_started(&item_id, at);
                self.caller_speaking = true;
                self.idle_vad(Some(now));
                if self.echo_barge_in(now) && self.caps.truncates_on_barge_in {
                    self.barge_in(now);
                }
            }
            ModelEvent::SpeechStopped {
                audio_end_ms,
                item_id,
            } => {
                let at = self.audio_to_call_ms(now, audio_end_ms);
                self.transcript.handle_speech_stopped(&item_id, at);
                self.caller_speaking = false;
                self.speech_stopped_at = Some(now);
                self.idle_vad(None);
                self.idle_caller_spoke(now, false);
            }
            ModelEvent::ResponseStarted { response_id } => {
                self.response_active = Some(response_id);
                self.cancel_sent = None;
                self.response_requested = false;
            }
            ModelEvent::ResponseDone {
                response_id,
                status,
                usage,
            } => {
                if let Some(usage) = &usage {
                    self.usage.add(usage);
                }
                if self.response_active.as_deref() == Some(response_id.as_str()) {
                    self.response_active = None;
                    self.cancel_sent = None;
                }
                self.responses_done += 1;
                debug!(%response_id, %status, "response done");
                self.maybe_request_response();
            }
            ModelEvent::ToolCall {
                call_id,
                name,
                arguments,
            } => {
                info!(tool = %name, %call_id, "the model called a tool");
                let at = self.call_ms(now);
                self.rollover.tool_called(at, &call_id, &name, &arguments);
                self.tools_in_flight.push(call_id.clone());
                self.tool_requests.push_back(ToolRequest {
                    call_id,
                    name,
                    arguments,
                });
            }
            ModelEvent::Error(ModelError {
                kind,
                code,
                message,
                response_in_progress,
            }) => {
                if code.as_deref() == Some("response_cancel_not_active")
                    && self
                        .last_cancel_at
                        .is_some_and(|at| now.saturating_duration_since(at) < CANCEL_RACE_WINDOW)
                {
                    // Our `response.cancel` crossed the response's own `response.done`: the
                    // response ended either way (realtime-protocol.md §5.2). Not a server error.
                    debug!(%message, "response.cancel arrived after the response was done");
                    return;
                }
                self.stats.server_errors += 1;
                if response_in_progress && self.response_requested {
                    // Our response request lost a race with one the server started; ask again
                    // after that one is done.
                    self.response_requested = false;
                    self.response_wanted = true;
                }
                warn!(error_type = %kind, code = code.as_deref().unwrap_or("-"), %message, "Realtime server error");
            }
            ModelEvent::CallerTranscript { item_id, text } => {
                info!(transcript = %Pii(text.trim()), "caller said");
                if !text.trim().is_empty() {
                    self.idle_caller_spoke(now, true);
                }
                let at = self.call_ms(now);
                self.transcript.handle_caller_text(&item_id, &text, at);
            }
            ModelEvent::AgentTranscriptDelta { item_id, delta } => {
                if self.caps.continuous_output
                    && self.spoken.as_ref().is_none_or(|t| t.item_id != item_id)
                {
                    self.spoken = Some(SpokenTurn {
                        item_id: item_id.clone(),
                        responses_before: self.responses_done,
                        end: None,
                    });
                }
                let at = self.call_ms(now);
                self.transcript
                    .handle_agent_text_delta(&item_id, &delta, at);
            }
            ModelEvent::AgentTranscriptDone { item_id, text } => {
                info!(transcript = %Pii(text.trim()), "agent said");
                let received = self
                    .playing
                    .as_ref()
                    .map(|p| (p.tag, self.pacer.received_bytes(p.tag)));
                if let Some(turn) = self.spoken.as_mut().filter(|t| t.item_id == item_id) {
                    turn.end = received;
                }
                let at = self.call_ms(now);
                self.transcript.handle_agent_text_done(&item_id, &text, at);
            }
            ModelEvent::SessionCreated { .. } | ModelEvent::SessionClosed { .. } => {}
        }
    }

    fn on_audio_delta(&mut self, now: Instant, item_id: String, content_index: u32, audio: &[u8]) {
        let at = self.call_ms(now);
        self.transcript
            .handle_agent_audio(&item_id, at, audio.len());
        if self.interrupted.iter().any(|i| *i == item_id) || self.cancelling() {
            self.stats.late_deltas_dropped += 1;
            return;
        }
        if let Some(stopped) = self.speech_stopped_at.take() {
            self.first_audio_latency = Some(now.saturating_duration_since(stopped));
        }
        let tag = match self.items.iter().find(|(id, _)| *id == item_id) {
            Some((_, tag)) => *tag,
            None => {
                let tag = self.next_tag;
                self.next_tag += 1;
                self.items.push((item_id.clone(), tag));
                if self.items.len() > 16 {
                    self.items.remove(0);
                }
                tag
            }
        };
        self.playing = Some(PlayingItem {
            id: item_id,
            tag,
            content_index,
            response: self.response_active.clone(),
        });
        self.pacer.push(now, tag, audio);
    }

    /// Whether frontdesk decides interruptions: the server does not cancel a response when the
    /// caller starts speaking (`turn_detection.interrupt_response = false`, what agents with the
    /// echo gate on get) and the dialect can cancel one itself (Realtime `response.cancel`).
    fn frontdesk_decides(&self) -> bool {
        !self.interrupt_response && self.caps.cancels_responses
    }

    /// We sent `response.cancel` for the response in progress and its `response.done` has not
    /// come yet: its audio is no longer wanted.
    fn cancelling(&self) -> bool {
        self.cancel_sent.is_some() && self.cancel_sent == self.response_active
    }

    /// Classifies a `speech_started` with the echo gate's estimate: during agent audio it is a
    /// false barge-in when the caller's own voice is not in the last 640 ms of frames (only our
    /// echo was), else a true one (both counted). Returns whether to treat it as an
    /// interruption: always, unless frontdesk decides interruptions
    /// ([`Bridge::frontdesk_decides`], the gate enabled) and it was echo, in which case the
    /// agent keeps talking.
    fn echo_barge_in(&mut self, now: Instant) -> bool {
        let agent_audio = self.echo.agent_active(now)
            || (self.playing.is_some() && self.pacer.queued_bytes() > 0);
        if !agent_audio {
            return true;
        }
        if !self.echo.speech_explained_by_echo() {
            self.stats.true_barge_ins += 1;
            return true;
        }
        self.stats.false_barge_ins += 1;
        let ignore = self.frontdesk_decides() && self.echo.enabled();
        info!(
            ignored = ignore,
            echo_path = ?self.echo.path(),
            "speech_started explained by the echo of the agent's audio"
        );
        !ignore
    }

    /// The caller started speaking: when frontdesk decides interruptions, cancel the response
    /// in progress as the server would have (only one that is active: a cancel without one is
    /// answered `response_cancel_not_active`, realtime-protocol.md §5.2, §5.9; at most once per
    /// response); then stop the agent at once and tell the server what the caller heard
    /// (`conversation.item.truncate` at the audio sent as RTP).
    fn barge_in(&mut self, now: Instant) {
        if self.frontdesk_decides() && !self.cancelling() {
            if let Some(response_id) = &self.response_active {
                debug!(%response_id, "cancelling the response the caller interrupted");
                self.cancel_sent = Some(response_id.clone());
                self.last_cancel_at = Some(now);
                self.ws_out.push_back(ModelCommand::CancelResponse);
            }
        }
        if let Some(item) = self.playing.take() {
            self.cut(item);
        }
    }

    /// Flushes the queued model audio and truncates `item` at what was sent of it, if that was
    /// not all of it, or if we just cancelled the response still generating it (the server holds
    /// audio of it, in flight to us or not, that the caller never heard); later deltas of the
    /// item are dropped.
    fn cut(&mut self, item: PlayingItem) {
        let received = self.pacer.received_bytes(item.tag);
        let flushed = self.pacer.flush();
        let played = self.pacer.played_bytes(item.tag);
        let generating = item.response.is_some() && item.response == self.cancel_sent;
        let was_cut = played < received || (generating && played > 0);
        if !was_cut {
            // The item had been played completely: nothing to truncate.
            return;
        }
        self.stats.barge_ins += 1;
        self.transcript
            .handle_agent_cut(&item.id, played.min(received));
        let audio_end_ms = played.min(received) / BYTES_PER_MS;
        info!(
            item_id = %item.id,
            played_ms = audio_end_ms,
            received_ms = received / BYTES_PER_MS,
            flushed_ms = flushed.total_bytes as u64 / BYTES_PER_MS,
            "caller interrupted the agent"
        );
        self.ws_out.push_back(ModelCommand::Truncate {
            item_id: item.id.clone(),
            content_index: item.content_index,
            audio_end_ms,
        });
        self.stats.truncates += 1;
        self.interrupted.push_back(item.id);
        if self.interrupted.len() > REMEMBERED_INTERRUPTED_ITEMS {
            self.interrupted.pop_front();
        }
    }

    /// The next function call the shell must run; answer it with [`Bridge::handle_tool_result`].
    pub(super) fn poll_tool_request(&mut self) -> Option<ToolRequest> {
        self.tool_requests.pop_front()
    }

    /// The shell finished a function call: sends its output to the session and, once no call is
    /// outstanding and no response is in progress, asks for a response (never colliding with a
    /// response the caller's speech started: realtime-protocol.md §5.4, step 5).
    pub(super) fn handle_tool_result(&mut self, call_id: &str, output: &str) {
        let Some(pos) = self.tools_in_flight.iter().position(|c| c == call_id) else {
            debug!(%call_id, "result for an unknown tool call ignored");
            return;
        };
        self.tools_in_flight.remove(pos);
        self.rollover.tool_done(call_id, output);
        self.ws_out.push_back(ModelCommand::ToolResult {
            call_id: call_id.to_owned(),
            output: output.to_owned(),
        });
        self.response_wanted = true;
        self.maybe_request_response();
    }

    pub(super) fn maybe_request_response(&mut self) {
        if self.response_wanted
            && self.tools_in_flight.is_empty()
            && self.response_active.is_none()
            && !self.response_requested
        {
            self.ws_out
                .push_back(ModelCommand::CreateResponse { instructions: None });
            self.response_wanted = false;
            self.response_requested = true;
        }
    }

    /// The next command for the model session, in order.
    pub(super) fn poll_ws(&mut self) -> Option<ModelCommand> {
        let event = self.ws_out.pop_front()?;
        if let Some(&(index, arrived)) = self.appends_queued.front() {
            if index == self.ws_popped {
                self.appends_queued.pop_front();
                self.appends_handed.push(arrived);
            }
        }
        self.ws_popped += 1;
        Some(event)
    }

    /// The shell wrote (and flushed) every client event handed out by [`Bridge::poll_ws`] at
    /// `now`: records each caller frame's added latency, its packet's arrival → written.
    pub(super) fn ws_written(&mut self, now: Instant) {
        for arrived in self.appends_handed.drain(..) {
            self.latency.record(now.saturating_duration_since(arrived));
        }
    }

    /// Responses the server has finished (`response.done`, any status).
    pub(super) fn responses_done(&self) -> u64 {
        self.responses_done
    }

    /// True when no response is in progress and all model audio has been sent as RTP.
    pub(super) fn playout_idle(&self) -> bool {
        self.response_active.is_none() && self.pacer.queued_bytes() == 0
    }

    /// Whether the agent has finished speaking (and the caller has heard it) since at least
    /// `responses_needed` responses were done ([`Bridge::responses_done`]): the goodbye of
    /// `end_call`, a message. Per-response audio (Realtime): that many responses are done and the
    /// playout is idle. A continuous stream (GPT-Live), which is never idle: an agent turn that
    /// began once that many responses were done has ended
    /// ([`ModelEvent::AgentTranscriptDone`]) and the stream has been played up to its end.
    pub(super) fn agent_finished_speaking(&self, responses_needed: u64) -> bool {
        if self.responses_done < responses_needed {
            return false;
        }
        if !self.caps.continuous_output {
            return self.playout_idle();
        }
        self.spoken.as_ref().is_some_and(|t| {
            t.responses_before >= responses_needed
                && t.end
                    .is_some_and(|(tag, end)| self.pacer.played_bytes(tag) >= end)
        })
    }

    /// Whether a response is in progress (created, not yet done).
    pub(super) fn response_in_progress(&self) -> bool {
        self.response_active.is_some()
    }
}
