//! Session rollover: the call outlives its model session (issue 10, item 1).
//!
//! - **Unplanned.** The session closed or failed ([`ModelEvent::SessionClosed`], a transport
//!   error): the core drops it ([`Output::CloseSession`]) and asks for a new one at once
//!   ([`Output::OpenSession`]), again after each failure (0.5 s, 1 s, then every 2 s) until
//!   [`RolloverPolicy::reconnect_window`] has passed; then the model is unavailable
//!   ([`Bridge::model_unavailable`], the one place that decides what the call does without a
//!   model). Meanwhile the call stays up: RTP keeps flowing (silence; the filler recording once the
//!   gap exceeds [`RolloverPolicy::filler_after`]), the caller's audio is kept (the last
//!   [`MAX_GAP_FRAMES`] frames) and appended to the new session after its history, and the
//!   outputs of tools that finish meanwhile wait for it.
//! - **Planned.** After [`RolloverPolicy::session_max`] on one session (or a minute before the
//!   end the session announced, [`super::Input::SessionExpires`]), a second session is
//!   opened beside the first; at the next moment neither side speaks (no response, nothing
//!   queued for playout, the caller not speaking, no tool running) the core switches to it
//!   ([`Output::SwitchSession`]: the shell closes the old one).
//! - **Seeding.** A new session gets, before any audio, the conversation so far as
//!   [`ModelCommand::SeedHistory`] items (the caller's and the agent's turns as text from the
//!   transcript, tool calls with their outputs, a call still running as its call alone so its
//!   output can follow), a system line saying the call continues (so the model does not greet
//!   again), then the profile's [`ModelCommand::Configure`] (instructions and tools), no greeting.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{Bridge, Output};
use crate::bridge::end::{Cause, EndReason};
use crate::bridge::transcript::Speaker;
use crate::realtime::model::{HistoryItem, HistoryRole, ModelCommand};

/// Caller frames (20 ms) kept while there is no session: 10 s; older ones are dropped first.
pub const MAX_GAP_FRAMES: usize = 500;
/// Tool calls remembered for seeding.
const MAX_TOOL_LOG: usize = 64;
/// Most history items a new session is seeded with (the latest are kept).
const MAX_SEED_ITEMS: usize = 120;
/// A session with a known end (GPT-Live `expires_at`) is replaced this long before it.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// When a planned rollover could not open its session, the next attempt.
const PLANNED_RETRY: Duration = Duration::from_secs(30);
/// The pacer item of the fallback recording (model items count up from 1).
const FALLBACK_ITEM: u64 = u64::MAX;
/// The line that tells a seeded session the call goes on.
pub const CONTINUATION_NOTE: &str = "This phone call is already in progress: the conversation so far is above (the connection to you was renewed). Continue it from where it stopped. Do not greet the caller again and do not introduce yourself again.";

/// What a model call does when its session ends (the `[realtime]` settings).
#[derive(Debug, Clone, PartialEq)]
pub struct RolloverPolicy {
    /// How long the call waits for a replacement session after an unplanned end before the
    /// model counts as unavailable (`reconnect_window_secs`, default 10 s).
    pub reconnect_window: Duration,
    /// A session is replaced (planned rollover) after this long (`session_max_secs`, default
    /// 3300 s); `None`: never.
    pub session_max: Option<Duration>,
    /// Without a session for this long, the filler is played once (`filler_after_ms`, default
    /// 1500 ms).
    pub filler_after: Duration,
    /// The filler ("One moment, please."): G.711 bytes in the call's law, shared by the calls;
    /// empty: silence only.
    pub filler: std::sync::Arc<[u8]>,
    /// What the caller gets when no replacement session can be had (the agent's
    /// `on_model_failure`); `None`: BYE with end reason `model-unavailable`.
    pub on_failure: Option<ModelFallback>,
}

/// The agent's `on_model_failure` during a call: a recording, then a transfer (REFER), a
/// hang-up or a message the caller leaves.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFallback {
    /// The recording: G.711 bytes in the call's law.
    pub audio: Vec<u8>,
    /// What follows it.
    pub then: crate::dialplan::AfterMessage,
}

impl Default for RolloverPolicy {
    fn default() -> RolloverPolicy {
        RolloverPolicy {
            reconnect_window: Duration::from_secs(10),
            session_max: Some(Duration::from_secs(3300)),
            filler_after: Duration::from_millis(1500),
            filler: Vec::new().into(),
            on_failure: None,
        }
    }
}

/// The call's link to its model session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    /// A session is up.
    Up,
    /// No session since `since` (unplanned); a new one is being opened (`retry_at: None`) or
    /// will be at `retry_at`.
    Down {
        since: Instant,
        reason: &'static str,
        attempts: u32,
        retry_at: Option<Instant>,
    },
    /// Planned: the next session is being opened beside the current one.
    Preparing,
    /// Planned: the next session is open; switch at the next quiet moment.
    Ready,
}

/// One function call of the call, for seeding.
#[derive(Debug, Clone)]
struct ToolRecord {
    at_ms: u64,
    call_id: String,
    name: String,
    arguments: String,
    output: Option<String>,
}

/// The rollover state of a call (see the module docs).
#[derive(Debug)]
pub(super) struct Rollover {
    pub(super) policy: RolloverPolicy,
    pub(super) link: Link,
    /// When the current session started (planned rollover counts from here).
    session_started: Instant,
    /// Planned rollover not before this (after a failed planned attempt).
    planned_not_before: Option<Instant>,
    /// The current session's announced end (GPT-Live `expires_at`).
    expires: Option<Instant>,
    gap_audio: VecDeque<Vec<u8>>,
    pub(super) gap_dropped: u64,
    filler_played: bool,
    /// Rollovers done.
    pub(super) count: u32,
    tools: VecDeque<ToolRecord>,
    /// Session operations for the shell, before any model command.
    pub(super) ops: VecDeque<Output>,
}

impl Rollover {
    pub(super) fn new(now: Instant, policy: RolloverPolicy) -> Rollover {
        Rollover {
            policy,
            link: Link::Up,
            session_started: now,
            planned_not_before: None,
            expires: None,
            gap_audio: VecDeque::new(),
            gap_dropped: 0,
            filler_played: false,
            count: 0,
            tools: VecDeque::new(),
            ops: VecDeque::new(),
        }
    }

    /// Whether model commands can be sent (a session is up).
    pub(super) fn is_up(&self) -> bool {
        !matches!(self.link, Link::Down { .. })
    }

    /// Keeps a caller frame while there is no session.
    pub(super) fn keep_audio(&mut self, frame: Vec<u8>) {
        if self.gap_audio.len() == MAX_GAP_FRAMES {
            self.gap_audio.pop_front();
            self.gap_dropped += 1;
        }
        self.gap_audio.push_back(frame);
    }

    /// Remembers a function call the model made (`at_ms`: call time).
    pub(super) fn tool_called(&mut self, at_ms: u64, call_id: &str, name: &str, arguments: &str) {
        if self.tools.len() == MAX_TOOL_LOG {
            self.tools.pop_front();
        }
        self.tools.push_back(ToolRecord {
            at_ms,
            call_id: call_id.to_owned(),
            name: name.to_owned(),
            arguments: arguments.to_owned(),
            output: None,
        });
    }

    /// Remembers a function call's output.
    pub(super) fn tool_done(&mut self, call_id: &str, output: &str) {
        if let Some(t) = self.tools.iter_mut().rev().find(|t| t.call_id == call_id) {
            t.output = Some(output.to_owned());
        }
    }

    /// When the core next needs a timeout for the rollover.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        match self.link {
            Link::Down {
                since, retry_at, ..
            } => {
                let filler = (!self.filler_played && !self.policy.filler.is_empty())
                    .then(|| since + self.policy.filler_after);
                [retry_at, filler, Some(since + self.policy.reconnect_window)]
                    .into_iter()
                    .flatten()
                    .min()
            }
            Link::Up => self.planned_due(),
            Link::Preparing | Link::Ready => None,
        }
    }

    fn planned_due(&self) -> Option<Instant> {
        let by_max = self.policy.session_max.map(|m| self.session_started + m);
        let by_expiry = self
            .expires
            .map(|e| e.checked_sub(EXPIRY_MARGIN).unwrap_or(e));
        let due = [by_max, by_expiry].into_iter().flatten().min()?;
        Some(self.planned_not_before.map_or(due, |t| t.max(due)))
    }

    /// The current session announced its end: the planned rollover comes
    /// [`EXPIRY_MARGIN`] before it (or at `session_max`, whichever is first).
    pub(super) fn session_expires(&mut self, at: Instant) {
        self.expires = Some(at);
    }
}

impl Bridge {
    /// The model session ended (closed by the server, or its connection failed). Agent calls
    /// roll over to a new session; announcements end (their message is not resumable).
    pub(super) fn session_lost(&mut self, now: Instant, reason: &'static str, detail: &str) {
        if self.model.is_none() {
            return;
        }
        if self.announcement {
            warn!(reason, %detail, "model session ended during the announcement; hanging up");
            let cause = if reason == "closed" {
                Cause::RealtimeClosed
            } else {
                Cause::RealtimeFailed
            };
            self.end(EndReason::local(cause));
            return;
        }
        match self.rollover.link {
            Link::Down { .. } => return,
            Link::Ready => {
                // The next session is open already: switch now.
                warn!(reason, %detail, "model session ended; switching to the session opened for the planned rollover");
                self.switch_session(now, reason, None);
                return;
            }
            Link::Up | Link::Preparing => {}
        }
        warn!(reason, %detail, "model session ended; opening a new one");
        let opening = self.rollover.link == Link::Preparing;
        self.rollover.link = Link::Down {
            since: now,
            reason,
            attempts: 1,
            retry_at: None,
        };
        self.rollover.filler_played = false;
        self.rollover.ops.push_back(Output::CloseSession);
        if !opening {
            self.rollover.ops.push_back(Output::OpenSession);
        }
        // Commands not yet written were for the lost session: keep the caller's audio and
        // what the next session must still know (tool outputs, key presses).
        for cmd in std::mem::take(&mut self.ws_out) {
            match cmd {
                ModelCommand::AppendAudio(a) => self.rollover.keep_audio(a),
                c @ (ModelCommand::ToolResult { .. } | ModelCommand::AddContext { .. }) => {
                    self.ws_out.push_back(c)
                }
                _ => {}
            }
        }
        self.appends_queued.clear();
        self.response_active = None;
        if std::mem::take(&mut self.response_requested) {
            self.response_wanted = true;
        }
        self.caller_speaking = false;
    }

    /// The shell opened the session asked for by [`Output::OpenSession`].
    pub(super) fn session_opened(&mut self, now: Instant) {
        match self.rollover.link {
            Link::Down { since, reason, .. } => self.switch_session(now, reason, Some(since)),
            Link::Preparing => {
                self.rollover.link = Link::Ready;
                self.maybe_planned_switch(now);
            }
            Link::Up | Link::Ready => {}
        }
    }

    /// The session asked for by [`Output::OpenSession`] could not be opened.
    pub(super) fn session_open_failed(&mut self, now: Instant, error: &str) {
        match &mut self.rollover.link {
            Link::Down {
                since,
                attempts,
                retry_at,
                ..
            } => {
                let backoff = match *attempts {
                    1 => Duration::from_millis(500),
                    2 => Duration::from_secs(1),
                    _ => Duration::from_secs(2),
                };
                *attempts += 1;
                let attempts = *attempts;
                if now + backoff >= *since + self.rollover.policy.reconnect_window {
                    warn!(%error, attempts, "no new model session within the reconnect window");
                    self.model_unavailable(now);
                    return;
                }
                *retry_at = Some(now + backoff);
                info!(%error, retry_in_ms = backoff.as_millis() as u64, "cannot open a new model session; retrying");
            }
            Link::Preparing => {
                warn!(%error, "cannot open the session for the planned rollover; the current one goes on, retrying in 30 s");
                self.rollover.link = Link::Up;
                self.rollover.planned_not_before = Some(now + PLANNED_RETRY);
            }
            Link::Up | Link::Ready => {}
        }
    }

    /// No model session can be had for this call (rollover failed within the reconnect
    /// window). **The one place** that decides what an answered call does without a model: the
    /// agent's `on_model_failure` ([`RolloverPolicy::on_failure`]: the conversation stops, its
    /// recording plays, then the call is transferred, hung up or records a message, as a
    /// recording call would), else BYE with end reason `model-unavailable`.
    pub(super) fn model_unavailable(&mut self, now: Instant) {
        let Some(fallback) = self.rollover.policy.on_failure.take() else {
            warn!("the model is unavailable; ending the call");
            self.end(EndReason::local(Cause::ModelUnavailable));
            return;
        };
        warn!(then = ?fallback.then, "the model is unavailable; the agent's on_model_failure takes over");
        self.note(now, "model unavailable: fallback recording");
        self.model = None;
        self.ws_out.clear();
        self.tool_requests.clear();
        self.idle = super::idle::Idle::new(now, None);
        self.rtp_timeout = None;
        self.pacer.flush();
        self.pacer.push(now, FALLBACK_ITEM, &fallback.audio);
        self.control.play_then(fallback.then);
    }

    /// Rollover deadlines: retries, the filler, the reconnect window, the planned rollover.
    pub(super) fn rollover_timeout(&mut self, now: Instant) {
        if self.model.is_none() {
            return;
        }
        match self.rollover.link {
            Link::Down {
                since, retry_at, ..
            } => {
                if now >= since + self.rollover.policy.reconnect_window {
                    warn!("no new model session within the reconnect window");
                    self.model_unavailable(now);
                    return;
                }
                if retry_at.is_some_and(|t| t <= now) {
                    if let Link::Down { retry_at, .. } = &mut self.rollover.link {
                        *retry_at = None;
                    }
                    self.rollover.ops.push_back(Output::OpenSession);
                }
                if !self.rollover.filler_played
                    && !self.rollover.policy.filler.is_empty()
                    && now >= since + self.rollover.policy.filler_after
                    && self.pacer.queued_bytes() == 0
                {
                    self.rollover.filler_played = true;
                    let tag = self.next_tag;
                    self.next_tag += 1;
                    self.playing = None;
                    self.pacer.push(now, tag, &self.rollover.policy.filler);
                }
            }
            Link::Up => {
                if !self.announcement && self.rollover.planned_due().is_some_and(|t| t <= now) {
                    info!("session nearing its maximum duration; opening the next one");
                    self.rollover.link = Link::Preparing;
                    self.rollover.ops.push_back(Output::OpenSession);
                }
            }
            Link::Ready => self.maybe_planned_switch(now),
            Link::Preparing => {}
        }
    }

    /// Planned rollover: switch when neither side speaks.
    pub(super) fn maybe_planned_switch(&mut self, now: Instant) {
        if self.rollover.link == Link::Ready
            && self.playout_idle()
            && !self.caller_speaking
            && !self.response_requested
            && self.tools_in_flight.is_empty()
        {
            self.switch_session(now, "planned", None);
        }
    }

    /// Makes the newly opened session the current one and seeds it. `down_since`: the start of
    /// the gap (unplanned).
    fn switch_session(&mut self, now: Instant, reason: &'static str, down_since: Option<Instant>) {
        self.rollover.ops.push_back(Output::SwitchSession);
        self.rollover.count += 1;
        let gap_ms = down_since.map_or(0, |s| now.saturating_duration_since(s).as_millis() as u64);
        let gap_audio: Vec<Vec<u8>> = self.rollover.gap_audio.drain(..).collect();
        info!(
            reason,
            gap_ms,
            gap_audio_ms = gap_audio.len() as u64 * 20,
            gap_audio_dropped_ms = self.rollover.gap_dropped * 20,
            rollover = self.rollover.count,
            "model session rolled over"
        );
        self.rollover.gap_dropped = 0;
        self.rollover.link = Link::Up;
        self.rollover.session_started = now;
        self.rollover.planned_not_before = None;
        self.rollover.expires = None;
        // Tool outputs that came during the gap are part of the seeded history.
        let held: Vec<ModelCommand> = self
            .ws_out
            .drain(..)
            .filter(|c| !matches!(c, ModelCommand::ToolResult { .. }))
            .collect();
        self.appends_queued.clear();
        for item in self.seed_history() {
            self.ws_out.push_back(ModelCommand::SeedHistory(item));
        }
        if let Some(m) = &self.model {
            self.ws_out
                .push_back(ModelCommand::Configure(Box::new(m.settings.clone())));
        }
        self.ws_out.extend(held);
        // The new session's audio time 0 is the first gap frame.
        let gap_ms_audio = gap_audio.len() as u64 * 20;
        self.first_append_ms = Some(self.call_ms(now).saturating_sub(gap_ms_audio));
        for frame in gap_audio {
            self.ws_out.push_back(ModelCommand::AppendAudio(frame));
        }
        self.response_active = None;
        self.response_requested = false;
        self.caller_speaking = false;
        self.maybe_request_response();
    }

    /// The conversation so far as history items for a new session (see the module docs).
    fn seed_history(&mut self) -> Vec<HistoryItem> {
        let running: Vec<String> = self.tools_in_flight.clone();
        let mut timed: Vec<(u64, Vec<HistoryItem>)> = Vec::new();
        for turn in self.transcript.turns() {
            let text = turn.text.trim();
            if text.is_empty() {
                continue;
            }
            let (role, text) = match turn.speaker {
                Speaker::Caller => (HistoryRole::Caller, text.to_owned()),
                Speaker::Agent => (HistoryRole::Agent, text.to_owned()),
                Speaker::System => (HistoryRole::System, format!("Call event: {text}.")),
            };
            timed.push((turn.start_ms, vec![HistoryItem::Message { role, text }]));
        }
        for t in &self.rollover.tools {
            let call = HistoryItem::ToolCall {
                call_id: t.call_id.clone(),
                name: t.name.clone(),
                arguments: t.arguments.clone(),
            };
            match &t.output {
                Some(output) => timed.push((
                    t.at_ms,
                    vec![
                        call,
                        HistoryItem::ToolOutput {
                            call_id: t.call_id.clone(),
                            output: output.clone(),
                        },
                    ],
                )),
                // Still running: its output goes to this session when it comes.
                None if running.contains(&t.call_id) => timed.push((t.at_ms, vec![call])),
                None => {}
            }
        }
        timed.sort_by_key(|(at, _)| *at);
        let mut items: Vec<HistoryItem> = timed.into_iter().flat_map(|(_, i)| i).collect();
        if items.len() > MAX_SEED_ITEMS {
            items.drain(..items.len() - MAX_SEED_ITEMS);
        }
        items.push(HistoryItem::Message {
            role: HistoryRole::System,
            text: CONTINUATION_NOTE.to_owned(),
        });
        items
    }

    /// Rollovers so far (for the call's row).
    pub fn rollovers(&self) -> u32 {
        self.rollover.count
    }
}
