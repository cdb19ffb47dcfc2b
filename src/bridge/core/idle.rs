//! Idle callers (issue 10, item 4): when the caller says nothing for the agent's
//! `idle_prompt_secs` while the agent is not speaking, the model is asked to check in; after
//! `idle_hangup_secs` of further silence the agent says goodbye and the call ends (`idle`).
//!
//! ```text
//!            caller's words (a transcript) ─► Listening (clock restarts)
//! Listening ──(prompt of silence)──► CreateResponse "ask whether the caller is still there" ─► CheckedIn
//! CheckedIn ──(hangup of silence)──► CreateResponse "say goodbye" ─► goodbye (control.rs) ─► Hangup(idle)
//! ```
//!
//! Silence is measured only while the agent is quiet: no response in progress, nothing queued
//! for playout (for a continuous-output dialect: no response in progress), no tool call,
//! transfer or goodbye under way; the clock restarts when the agent falls quiet. Only words
//! count as the caller speaking: a caller transcript that is not blank. Speech the VAD reports
//! that never produces a transcript (noise, music on the caller's side) counts as silence; while
//! the VAD reports speech in progress the check-in waits, but at most `prompt` from the start of
//! that speech. A session without caller transcripts (no transcription model) falls back to the
//! VAD's end-of-speech as "the caller spoke". No I/O, no clock.

use std::time::{Duration, Instant};

use tracing::info;

use crate::realtime::model::ModelCommand;

use super::super::end::Cause;
use super::Bridge;

/// The per-response instructions of the check-in.
pub const CHECK_IN_INSTRUCTIONS: &str = "The caller has been silent for a while. Ask briefly and kindly whether they are still there, in the language of the conversation.";
/// The per-response instructions of the goodbye before an idle hang-up.
pub const IDLE_GOODBYE_INSTRUCTIONS: &str = "The caller is silent and seems to have left. Say a short, polite goodbye in the language of the conversation; the call ends after it.";

/// What an agent does with a silent caller (from its dialplan profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdlePolicy {
    /// Silence before the check-in.
    pub prompt: Duration,
    /// Further silence after the check-in before the goodbye and hang-up; `None`: never hang up.
    pub hangup: Option<Duration>,
    /// The session reports the caller's words as transcripts (a transcription model is set, or
    /// the dialect always transcribes); otherwise the VAD's end of speech counts as words.
    pub caller_transcripts: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Listening,
    CheckedIn,
    /// The goodbye was requested: nothing more to do here.
    Done,
}

/// The idle state of one call.
#[derive(Debug)]
pub(super) struct Idle {
    policy: Option<IdlePolicy>,
    phase: Phase,
    /// Start of the current silence.
    since: Instant,
    /// The VAD's current speech started then (no end yet).
    speaking_since: Option<Instant>,
}

impl Idle {
    pub(super) fn new(now: Instant, policy: Option<IdlePolicy>) -> Idle {
        Idle {
            policy,
            phase: Phase::Listening,
            since: now,
            speaking_since: None,
        }
    }

    /// When the next idle step is due, if one is.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        let policy = self.policy?;
        let wait = match self.phase {
            Phase::Listening => policy.prompt,
            Phase::CheckedIn => policy.hangup?,
            Phase::Done => return None,
        };
        let due = self.since + wait;
        Some(match self.speaking_since {
            Some(start) => due.max(start + policy.prompt),
            None => due,
        })
    }
}

impl Bridge {
    /// The caller said something (a non-blank transcript, or without transcripts the VAD's end
    /// of speech): the silence starts again and a check-in is forgotten.
    pub(super) fn idle_caller_spoke(&mut self, now: Instant, words: bool) {
        let Some(policy) = self.idle.policy else {
            return;
        };
        if !words && policy.caller_transcripts {
            return;
        }
        if self.idle.phase != Phase::Done {
            self.idle.phase = Phase::Listening;
        }
        self.idle.since = now;
    }

    /// The VAD reports speech starting (`Some(now)`) or stopping (`None`).
    pub(super) fn idle_vad(&mut self, now: Option<Instant>) {
        self.idle.speaking_since = now;
    }

    /// Before the core sleeps: while the agent is busy the silence clock does not run.
    pub(super) fn idle_before_sleep(&mut self, now: Instant) {
        if self.idle.policy.is_none() || self.idle.phase == Phase::Done {
            return;
        }
        let agent_quiet = if self.caps.continuous_output {
            !self.response_in_progress()
        } else {
            self.playout_idle()
        };
        if !agent_quiet || !self.tools_in_flight.is_empty() || self.control.busy() {
            self.idle.since = now;
        }
    }

    /// The idle deadline at `now`: check in, or say goodbye and hang up.
    pub(super) fn idle_timeout(&mut self, now: Instant) {
        if self.idle.poll_timeout().is_none_or(|due| now < due) {
            return;
        }
        match self.idle.phase {
            Phase::Listening => {
                info!(
                    silent_s = now.saturating_duration_since(self.idle.since).as_secs(),
                    "the caller is silent; asking the model to check in"
                );
                self.note(now, "caller silent: check-in");
                self.ws_out.push_back(ModelCommand::CreateResponse {
                    instructions: Some(CHECK_IN_INSTRUCTIONS.to_owned()),
                });
                self.response_requested = true;
                self.idle.phase = Phase::CheckedIn;
                self.idle.since = now;
            }
            Phase::CheckedIn => {
                info!("the caller stayed silent after the check-in; saying goodbye");
                self.note(now, "caller silent: goodbye");
                self.idle.phase = Phase::Done;
                let needed = self.responses_done() + 1 + u64::from(self.response_in_progress());
                self.ws_out.push_back(ModelCommand::CreateResponse {
                    instructions: Some(IDLE_GOODBYE_INSTRUCTIONS.to_owned()),
                });
                self.response_requested = true;
                self.goodbye_then_end(Cause::Idle, needed);
            }
            Phase::Done => {}
        }
    }
}
