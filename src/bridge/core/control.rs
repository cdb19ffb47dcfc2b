//! Call control in the call's core: the dialplan's key actions, the one transfer state machine,
//! the goodbye of `end_call`, the maximum duration and the end of a message. No I/O, no clock.
//!
//! **Transfers** (REFER, RFC 3515) start from one of three origins and share one machine:
//!
//! ```text
//!             Output::Refer                 2xx                    NOTIFY 2xx (+100 ms)
//!   start ──► AwaitingResponse ──┬──────────────► AwaitingNotify ──────────────► Done ─► Hangup(transferred)
//!                                │ (model's transfer_call)      │ NOTIFY ≥300, final without 2xx,
//!                                │                              │ or 10 s from the start ─► failed
//!                                │ 2xx (key press) ─────────────────────────────────────► Hangup(transferred)
//!                                │ 2xx (after a message) ─► AwaitingDialogEnd ─(BYE or 5 s)─► Hangup(transferred)
//!                                └ non-2xx, error, 10 s ─► failed
//! ```
//!
//! A failed transfer of the model is reported to it as a tool failure and the call goes on; a
//! failed key-press transfer ends the call (`transfer-failed`); a failed transfer after a
//! message ends it as `message-played` (with BYE).

use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::dialplan::{AfterMessage, DtmfAction};
use crate::telemetry::Pii;
use crate::tools::call_control::{self, END_CALL, TRANSFER_CALL};

use super::super::end::{Cause, EndReason};
use super::{Bridge, ModelPlan, Output, ToolRequest};

/// How long a transfer may take from its REFER to its outcome.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);
/// After a successful transfer, how long the NOTIFY's 200 (sent by the dialog's own task) has to
/// leave before our BYE.
const NOTIFY_GRACE: Duration = Duration::from_millis(100);
/// After a message-then-transfer was accepted, how long the transferee has to end this dialog
/// itself before we send BYE.
const TRANSFEREE_BYE_WAIT: Duration = Duration::from_secs(5);
/// Longest wait for the goodbye after `end_call` before hanging up anyway.
const END_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a transfer came from; decides what its success and failure do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    /// The model's `transfer_call` (answered with a tool result on failure).
    Model {
        /// The function call to answer.
        tool_call_id: String,
        /// The target's name in the profile.
        name: String,
    },
    /// A key the dialplan maps to a transfer.
    Key,
    /// The dialplan's `then = transfer` after a message.
    AfterMessage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransferState {
    /// REFER sent, waiting for its final response.
    AwaitingResponse,
    /// REFER accepted, waiting for the NOTIFY with the outcome.
    AwaitingNotify,
    /// Accepted after a message: waiting for the transferee's BYE.
    AwaitingDialogEnd,
    /// Transferred: hanging up at the deadline.
    Done,
}

#[derive(Debug, Clone)]
struct Transfer {
    origin: Origin,
    target: String,
    state: TransferState,
    deadline: Instant,
}

/// A goodbye being spoken (`end_call`, or an idle caller): the call ends with `cause` once it
/// has been played.
#[derive(Debug, Clone)]
struct Goodbye {
    cause: Cause,
    responses_needed: u64,
    deadline: Instant,
}

/// The call-control state of one call.
#[derive(Debug)]
pub(super) struct Control {
    max_duration: Option<(Instant, Duration)>,
    /// What follows the message (announcement and recording calls).
    after: Option<AfterMessage>,
    recording: bool,
    message_done: bool,
    transfer: Option<Transfer>,
    goodbye: Option<Goodbye>,
    /// The caller's message being recorded (`take_message`), until its deadline.
    taking: Option<TakingMessage>,
}

/// A message being recorded after the prompt: the caller's audio, 8 kHz µ-law.
#[derive(Debug)]
struct TakingMessage {
    deadline: Instant,
    audio: Vec<u8>,
}

impl Control {
    pub(super) fn new(
        now: Instant,
        model: Option<&ModelPlan>,
        after: Option<AfterMessage>,
        recording: bool,
    ) -> Control {
        Control {
            max_duration: model.map(|m| (now + m.max_duration, m.max_duration)),
            after,
            recording,
            message_done: false,
            transfer: None,
            goodbye: None,
            taking: None,
        }
    }

    /// The model is gone: play the recording queued for playout, then `then` (as a recording
    /// call does). A goodbye under way is dropped.
    pub(super) fn play_then(&mut self, then: AfterMessage) {
        self.after = Some(then);
        self.recording = true;
        self.message_done = false;
        self.goodbye = None;
    }

    /// A transfer or a goodbye is under way (the caller is not expected to speak).
    pub(super) fn busy(&self) -> bool {
        self.transfer.is_some() || self.goodbye.is_some()
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        [
            self.max_duration.map(|(at, _)| at),
            self.transfer.as_ref().map(|t| t.deadline),
            self.goodbye.as_ref().map(|g| g.deadline),
            self.taking.as_ref().map(|m| m.deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

impl Bridge {
    /// After every input: key presses and the model's function calls.
    pub(super) fn after_input(&mut self) {
        while let Some(key) = self.digits.pop_front() {
            if self.ended {
                return;
            }
            self.key_pressed(key);
        }
        while let Some(req) = self.poll_tool_request() {
            if self.ended {
                return;
            }
            match req.name.as_str() {
                TRANSFER_CALL => self.model_transfer(req),
                END_CALL => self.start_goodbye(&req),
                _ => self.effects.push_back(Output::RunTool(req)),
            }
        }
    }

    /// Before the core sleeps: has the goodbye or the message been played?
    pub(super) fn before_sleep(&mut self) {
        if self.ended {
            return;
        }
        let now = self.now;
        self.idle_before_sleep(now);
        if let Some(g) = &self.control.goodbye {
            if self.agent_finished_speaking(g.responses_needed) {
                let cause = g.cause.clone();
                info!(reason = %cause.as_str(), "goodbye played; hanging up");
                self.end(EndReason::local(cause));
                return;
            }
        }
        if self.control.after.is_some() && !self.control.message_done {
            let played = if self.control.recording {
                self.pacer.queued_bytes() == 0
            } else {
                // Realtime: the message's response; GPT-Live: its first turn (no response).
                self.agent_finished_speaking(u64::from(!self.caps.continuous_output))
            };
            if played {
                info!("message played");
                self.control.message_done = true;
                match self.control.after.clone() {
                    Some(AfterMessage::Transfer { target }) => {
                        self.start_transfer(Origin::AfterMessage, target)
                    }
                    Some(AfterMessage::TakeMessage { max }) => {
                        info!(max = ?max, "recording the caller's message");
                        self.control.taking = Some(TakingMessage {
                            deadline: self.now + max,
                            audio: Vec::new(),
                        });
                    }
                    _ => self.end(EndReason::local(Cause::MessagePlayed)),
                }
            }
        }
    }

    /// The call-control deadlines at `now`.
    pub(super) fn control_timeout(&mut self, now: Instant) {
        self.idle_timeout(now);
        if let Some((at, max)) = self.control.max_duration {
            if now >= at {
                info!(max = ?max, "maximum call duration reached; hanging up");
                self.end(EndReason::local(Cause::MaxDuration));
                return;
            }
        }
        if self
            .control
            .taking
            .as_ref()
            .is_some_and(|m| now >= m.deadline)
        {
            info!("the caller's message reached its maximum length; hanging up");
            self.end(EndReason::local(Cause::MessageTaken));
            return;
        }
        if let Some(t) = &self.control.transfer {
            if now >= t.deadline {
                match t.state {
                    TransferState::Done | TransferState::AwaitingDialogEnd => {
                        self.end(EndReason::local(Cause::Transferred))
                    }
                    _ => self.transfer_failed("no answer from the phone system within 10 seconds"),
                }
            }
        }
        if let Some(g) = &self.control.goodbye {
            if now >= g.deadline {
                warn!("the goodbye did not finish in time; hanging up");
                let cause = g.cause.clone();
                self.end(EndReason::local(cause));
            }
        }
    }

    /// A caller frame (G.711 in the call's `law`) while no model listens: kept when a message
    /// is being recorded.
    pub(super) fn message_frame(&mut self, law: crate::media::g711::Law, frame: &[u8]) {
        use crate::media::g711;
        let Some(m) = &mut self.control.taking else {
            return;
        };
        match law {
            g711::Law::Mu => m.audio.extend_from_slice(frame),
            g711::Law::A => m.audio.extend(
                frame
                    .iter()
                    .map(|&b| g711::linear_to_ulaw(g711::alaw_to_linear(b))),
            ),
        }
    }

    /// The caller's recorded message (8 kHz G.711 µ-law), once: `None` unless the call took one.
    pub fn take_message(&mut self) -> Option<Vec<u8>> {
        self.control.taking.take().map(|m| m.audio)
    }

    /// The dialog ended (BYE, CANCEL, the SIP stack): the call is over.
    pub(super) fn control_dialog_ended(&mut self, end: EndReason) {
        if let Some(t) = &self.control.transfer {
            if t.state == TransferState::AwaitingDialogEnd {
                info!(target = %t.target, "caller transferred (REFER accepted)");
                self.end(EndReason::local(Cause::Transferred));
                return;
            }
        }
        self.end(end);
    }

    fn key_pressed(&mut self, key: char) {
        let Some(model) = &self.model else {
            return;
        };
        let now = self.now;
        match model.dtmf.get(&key.to_ascii_uppercase()).cloned() {
            Some(DtmfAction::Hangup) => {
                info!(key = %Pii(key), "the caller's key ends the call");
                self.note(now, &format!("pressed {key}: hang up"));
                self.end(EndReason::local(Cause::DtmfHangup));
            }
            Some(DtmfAction::Transfer { target, .. }) => {
                if self.control.transfer.is_some() {
                    info!(key = %Pii(key), "a transfer is already in progress; key ignored");
                    return;
                }
                info!(key = %Pii(key), %target, "the caller's key transfers the call");
                self.note(now, &format!("pressed {key}: transfer to {target}"));
                self.start_transfer(Origin::Key, target);
            }
            Some(DtmfAction::Forward) | None => self.forward_digit(now, key),
        }
    }

    /// The model's `transfer_call(target)`.
    fn model_transfer(&mut self, req: ToolRequest) {
        let name = call_control::string_argument(&req.arguments, "target").unwrap_or_default();
        let transfers = self
            .model
            .as_ref()
            .map(|m| m.transfers.clone())
            .unwrap_or_default();
        let Some(uri) = transfers.get(&name) else {
            info!(target = %name, "transfer_call to an unknown target");
            let names: Vec<&String> = transfers.keys().collect();
            let out = call_control::failure(
                "unknown_target",
                &format!(
                    "There is no transfer target called {name:?}. Use one of the listed names."
                ),
                Some(("available", serde_json::json!(names))),
            );
            self.handle_tool_result(&req.call_id, &out);
            return;
        };
        if self.control.transfer.is_some() {
            let out = call_control::failure(
                "transfer_in_progress",
                "A transfer is already in progress; wait for its result.",
                None,
            );
            self.handle_tool_result(&req.call_id, &out);
            return;
        }
        info!(target = %name, %uri, "the model transfers the call (REFER)");
        self.start_transfer(
            Origin::Model {
                tool_call_id: req.call_id,
                name,
            },
            uri.clone(),
        );
    }

    fn start_transfer(&mut self, origin: Origin, target: String) {
        self.effects.push_back(Output::Refer {
            target: target.clone(),
        });
        self.control.transfer = Some(Transfer {
            origin,
            target,
            state: TransferState::AwaitingResponse,
            deadline: self.now + TRANSFER_TIMEOUT,
        });
    }

    /// The final response to our REFER.
    pub(super) fn refer_done(&mut self, now: Instant, result: Result<u16, String>) {
        let Some(t) = &mut self.control.transfer else {
            return;
        };
        if t.state != TransferState::AwaitingResponse {
            return;
        }
        match result {
            Ok(code) if (200..300).contains(&code) => match t.origin {
                Origin::Model { .. } => {
                    info!(target = %t.target, code, "REFER accepted; waiting for the transfer's outcome (NOTIFY)");
                    t.state = TransferState::AwaitingNotify;
                }
                Origin::Key => {
                    info!(target = %t.target, code, "caller transferred (REFER accepted)");
                    self.end(EndReason::local(Cause::Transferred));
                }
                Origin::AfterMessage => {
                    info!(target = %t.target, code, "caller transferred (REFER accepted)");
                    // The transferee calls the target and then ends this dialog; end it
                    // ourselves if it does not.
                    t.state = TransferState::AwaitingDialogEnd;
                    t.deadline = now + TRANSFEREE_BYE_WAIT;
                }
            },
            Ok(code) => {
                self.transfer_failed(&format!("the transfer request was refused with {code}"))
            }
            Err(e) => self.transfer_failed(&format!("the transfer request could not be sent: {e}")),
        }
    }

    /// A NOTIFY sipfrag about our REFER: a final 2xx ends the call (`transferred`).
    ///
    /// The NOTIFY may overtake the REFER's 2xx (RFC 6665 §4.1.2.4; here they also come on
    /// different channels, the dialog's events and the REFER task's result): for the model's
    /// transfer a NOTIFY means the REFER was accepted, and a late 2xx is then ignored.
    pub(super) fn refer_notify(&mut self, now: Instant, status: u16, terminated: bool) {
        let Some(t) = &mut self.control.transfer else {
            return;
        };
        if t.state == TransferState::AwaitingResponse && matches!(t.origin, Origin::Model { .. }) {
            info!(target = %t.target, status, "NOTIFY before the REFER's response: taken as accepted");
            t.state = TransferState::AwaitingNotify;
        }
        if t.state != TransferState::AwaitingNotify {
            return;
        }
        info!(target = %t.target, status, terminated, "transfer progress (NOTIFY)");
        if (200..300).contains(&status) {
            info!(target = %t.target, "caller transferred");
            t.state = TransferState::Done;
            t.deadline = now + NOTIFY_GRACE;
        } else if status >= 300 {
            self.transfer_failed(&format!("the target answered {status}"));
        } else if terminated {
            self.transfer_failed("the transfer ended without a final answer");
        }
    }

    fn transfer_failed(&mut self, why: &str) {
        let Some(t) = self.control.transfer.take() else {
            return;
        };
        match t.origin {
            Origin::Model { tool_call_id, name } => {
                warn!(target = %name, %why, "transfer failed; the call continues");
                let out = call_control::failure(
                    "transfer_failed",
                    &format!("The transfer to {name} failed ({why}). The caller is still on the line: apologise and offer to help or take a message."),
                    None,
                );
                self.handle_tool_result(&tool_call_id, &out);
            }
            Origin::Key => {
                warn!(target = %t.target, %why, "the transfer failed");
                self.end(EndReason::local(Cause::TransferFailed));
            }
            Origin::AfterMessage => {
                warn!(target = %t.target, %why, "cannot transfer the caller");
                self.end(EndReason::local(Cause::MessagePlayed));
            }
        }
    }

    /// `end_call`: answer the function at once, then wait for the goodbye response to be played.
    fn start_goodbye(&mut self, req: &ToolRequest) {
        let reason = call_control::string_argument(&req.arguments, "reason")
            .map(|r| {
                r.chars()
                    .filter(|c| !c.is_control())
                    .take(80)
                    .collect::<String>()
            })
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "conversation over".to_owned());
        info!(%reason, "the model ends the call after its goodbye");
        // The response that carried the call (if still running) finishes first, then the one
        // that answers the tool output: that one is the goodbye.
        let needed = self.responses_done() + 1 + u64::from(self.response_in_progress());
        self.handle_tool_result(
            &req.call_id,
            &serde_json::json!({"ok": true, "message": "The call ends after your reply. Say a short goodbye now."}).to_string(),
        );
        self.goodbye_then_end(Cause::EndCall(reason), needed);
    }

    /// Ends the call with `cause` once `responses_needed` responses are done and played (at most
    /// [`END_CALL_TIMEOUT`] from now).
    pub(super) fn goodbye_then_end(&mut self, cause: Cause, responses_needed: u64) {
        self.control.goodbye = Some(Goodbye {
            cause,
            responses_needed,
            deadline: self.now + END_CALL_TIMEOUT,
        });
    }
}
