//! The call's core: one sans-IO state machine per answered call, between the caller's RTP and
//! the model session, that decides everything the call task does.
//!
//! ```text
//!   Input ──► Bridge::handle_input(input) ──► Bridge::poll_output() ──► Output … Output::Timeout
//! ```
//!
//! [`Bridge`] owns the call's media (the [`JitterBuffer`] that turns caller RTP into 20 ms frames,
//! released on arrival; the RFC 4733 [`DtmfReceiver`]; the RFC 3550 [`RtcpSession`]; the
//! [`PlayoutPacer`] that sends model audio as paced RTP), symmetric-RTP latching and the RTCP
//! destination, re-offers (hold, new address, codec change), the conversation with the model
//! (`conversation.rs`: barge-in, truncation, tool-call sequencing, usage, transcript), and call
//! control (`control.rs`: the dialplan's DTMF actions, one transfer state machine for the model's
//! `transfer_call`, a key-press transfer and a message-then-transfer, the goodbye of `end_call`,
//! the maximum duration, the end of an announcement or recording, the RTP timeout). Statistics
//! are in `stats.rs`.
//!
//! **Contract.** Feed one [`Input`] with [`Bridge::handle_input`], then drain
//! [`Bridge::poll_output`] until it returns [`Output::Timeout`]; perform each output in order
//! (model commands are written without flushing: flush once when the drain ends and report it
//! with [`Input::ModelFlushed`]); sleep until the timeout or the next input. After
//! [`Output::Hangup`] the call is over: the shell sends BYE when [`EndReason::sends_bye`] and
//! tears down. Repeated or early [`Input::Timeout`]s are harmless.
//!
//! **Time.** Every input carries `now` (the shell reads `tokio::time::Instant` and converts it);
//! the core never reads a clock, and time going backwards is ignored by the cores it drives.
//!
//! **Timing figures** (for the load benchmark, `BENCHMARKS.md`): each caller frame's *added
//! latency*, from its packet's arrival (the `now` of [`Input::Rtp`]) to its append being written
//! (the `now` of [`Input::ModelFlushed`]), and each outgoing packet's *pacing error*, the `now` of
//! the input that released it minus its scheduled [`Transmit::due`], go into two fixed-bucket
//! [`LatencyHistogram`]s; [`BridgeStats`] reports their percentiles.

mod control;
mod conversation;
mod idle;
mod rollover;
#[cfg(test)]
mod srtp_tests;
mod stats;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::{debug, info};

use crate::dialplan::{AfterMessage, DtmfAction};
use crate::media::dtmf::DtmfReceiver;
use crate::media::echo::{EchoGate, EchoPath, Verdict};
use crate::media::jitter::{Disposition, JitterBuffer};
use crate::media::pacer::{DepthBounds, PlayoutPacer, Transmit, PACKET_BYTES};
use crate::media::rtcp::RtcpSession;
use crate::media::rtp;
use crate::media::srtp::SrtpKeys;
use crate::pricing::CallUsage;
use crate::realtime::model::{Capabilities, ModelCommand, ModelEvent};
use crate::realtime::protocol::SessionSettings;
use crate::sdp::{self, sdes::Sdes, Negotiated};
use crate::sip::CallEvent;
use crate::telemetry::Pii;

use super::end::{Cause, EndReason};
use super::transcript::Transcript;

pub use idle::{IdlePolicy, CHECK_IN_INSTRUCTIONS, IDLE_GOODBYE_INSTRUCTIONS};
pub use rollover::{ModelFallback, RolloverPolicy, CONTINUATION_NOTE, MAX_GAP_FRAMES};
pub use stats::{BridgeStats, LatencyHistogram, Percentiles};
pub use stats::{
    HISTOGRAM_COARSE_NS, HISTOGRAM_FINE_LIMIT_NS, HISTOGRAM_FINE_NS, HISTOGRAM_LIMIT_NS,
};

/// How early our next RTP packet may leave when a caller packet woke the shell anyway (10 ms).
pub const RTP_AHEAD: Duration = Duration::from_millis(10);

/// How long after our `response.cancel` a `response_cancel_not_active` error is taken for the
/// race with the response's own `response.done` (5 s: far above a round trip to the service).
const CANCEL_RACE_WINDOW: Duration = Duration::from_secs(5);

/// How many interrupted item ids are remembered to discard their late deltas.
const REMEMBERED_INTERRUPTED_ITEMS: usize = 8;

/// How far [`Output::Timeout`] points when nothing is scheduled (the shell sleeps until an input).
const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Fixed facts of our RTP stream, chosen by the shell at call start.
#[derive(Debug, Clone)]
pub struct MediaParams {
    /// Our RTP SSRC (random per call, RFC 3550 §8).
    pub ssrc: u32,
    /// First RTP sequence number (random, RFC 3550 §5.1).
    pub first_seq: u16,
    /// First RTP timestamp (random, RFC 3550 §5.1).
    pub first_ts: u32,
    /// No caller RTP for this long ends the call (`rtp-timeout`); `None` disables the check.
    pub rtp_timeout: Option<Duration>,
    /// Continuous RTP: 20 ms packets of G.711 silence while no model audio is queued
    /// ([`PlayoutPacer::set_send_silence`]).
    pub send_silence: bool,
}

/// Everything the core needs to run one answered call (all of it data).
#[derive(Debug, Clone)]
pub struct CallSetup {
    /// Our RTP stream.
    pub media: MediaParams,
    /// The negotiated audio stream (law, payload types, the caller's address, direction).
    pub negotiated: Negotiated,
    /// Our RTP address, as in our SDP (re-offers are answered with it).
    pub local_rtp: SocketAddr,
    /// Our SDP's `o=` session id; re-offers are answered with later versions.
    pub sdp_session_id: u64,
    /// The call's SRTP policy and our key (RFC 4568), for re-offers; `None`: plain RTP only.
    pub sdes: Option<Sdes>,
    /// What the call does.
    pub plan: CallPlan,
}

/// What an answered call does.
#[derive(Debug, Clone)]
pub enum CallPlan {
    /// Talk with an agent through a model session.
    Agent(ModelPlan),
    /// Speak a message through a model session (the caller is not listened to), then `then`.
    Announcement(ModelPlan, AfterMessage),
    /// Play recorded audio (G.711 bytes in the call's law; no model session), then `then`.
    Recording {
        /// The audio.
        audio: Vec<u8>,
        /// What follows.
        then: AfterMessage,
    },
}

/// A call with a model session: its configuration and the dialplan's call-control data.
#[derive(Debug, Clone)]
pub struct ModelPlan {
    /// What the session's dialect can do.
    pub caps: Capabilities,
    /// The session configuration (`turn_detection.interrupt_response` says whether the server
    /// cancels a response itself when the caller speaks).
    pub settings: SessionSettings,
    /// What the agent says first (empty: nothing).
    pub greeting: String,
    /// The profile's key actions.
    pub dtmf: BTreeMap<char, DtmfAction>,
    /// The profile's transfer targets: name → SIP URI.
    pub transfers: BTreeMap<String, String>,
    /// The longest the call may last.
    pub max_duration: Duration,
    /// What happens when the model session ends during the call (`rollover.rs`).
    pub rollover: RolloverPolicy,
    /// Replace caller frames explained by the echo of our own audio with silence
    /// ([`EchoGate`]; the dialplan's `echo_gate`, on by default). Off, the gate only counts.
    pub echo_gate: bool,
    /// What to do with a silent caller (`None`: nothing; announcements).
    pub idle: Option<IdlePolicy>,
}

/// One input to the core. Every variant carries the shell's `now`.
#[derive(Debug)]
pub enum Input<'a> {
    /// A datagram on the call's RTP port (RTP, or RTCP with rtcp-mux) from `from`.
    Rtp {
        /// Arrival time.
        now: Instant,
        /// Source address.
        from: SocketAddr,
        /// The datagram.
        datagram: &'a [u8],
    },
    /// A datagram on the call's RTCP port.
    Rtcp {
        /// Arrival time.
        now: Instant,
        /// The datagram.
        datagram: &'a [u8],
    },
    /// An event from the model session.
    Model(Instant, ModelEvent),
    /// Every [`Output::SendModel`] handed out so far has been written and flushed at `now`.
    ModelFlushed(Instant),
    /// The model session's connection failed (write, flush or read).
    ModelFailed(Instant),
    /// The session asked for by [`Output::OpenSession`] is open (the shell holds it until
    /// [`Output::SwitchSession`]).
    SessionOpened(Instant),
    /// The current session ends at `at` (GPT-Live `session.expires_at` from `session.started`):
    /// the planned rollover happens before it.
    SessionExpires {
        /// When it was learnt.
        now: Instant,
        /// The session's end.
        at: Instant,
    },
    /// The session asked for by [`Output::OpenSession`] could not be opened.
    SessionOpenFailed {
        /// When the attempt failed.
        now: Instant,
        /// Why, for the log.
        error: String,
    },
    /// A SIP event of the call's dialog.
    Sip(Instant, CallEvent),
    /// The SIP event stream ended (the dialog is gone).
    SipGone(Instant),
    /// A tool run for [`Output::RunTool`] finished with this output (a JSON object as text).
    ToolDone {
        /// Completion time.
        now: Instant,
        /// The [`ToolRequest::call_id`].
        call_id: String,
        /// The tool's output for the model.
        output: String,
    },
    /// The REFER of [`Output::Refer`] got its final response (its status), or could not be sent.
    ReferDone {
        /// Completion time.
        now: Instant,
        /// The final status code, or why the REFER failed.
        result: Result<u16, String>,
    },
    /// The timer of [`Output::Timeout`] fired (or any wake-up).
    Timeout(Instant),
    /// frontdesk is shutting down.
    Shutdown(Instant),
}

/// One thing for the shell to do, from [`Bridge::poll_output`].
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Write this command to the model session (feed; flush when the drain ends).
    SendModel(ModelCommand),
    /// Send this RTP packet to `to` from the RTP socket.
    SendRtp {
        /// The caller's RTP address (latched, RFC 4961 symmetric RTP).
        to: SocketAddr,
        /// The packet: 12-byte header + 20 ms of G.711.
        packet: [u8; PACKET_BYTES],
    },
    /// Send this RTCP compound packet to `to`: from the RTP socket when `mux` (RFC 5761), else
    /// from the RTCP socket (dropped when the call has none).
    SendRtcp {
        /// The caller's RTCP address.
        to: SocketAddr,
        /// RTCP over the RTP port.
        mux: bool,
        /// The packet.
        packet: Vec<u8>,
    },
    /// Run this tool beside the call; report [`Input::ToolDone`].
    RunTool(ToolRequest),
    /// Send REFER to this SIP URI (RFC 3515) beside the call; report [`Input::ReferDone`].
    Refer {
        /// The transfer target.
        target: String,
    },
    /// Answer the pending re-INVITE/UPDATE offer: our SDP answer, or a rejection status.
    AnswerOffer(Result<Vec<u8>, u16>),
    /// A re-negotiation changed the SRTP keys: key the sockets with these (`None`: plain RTP;
    /// `media::socket::set_srtp`).
    SetSrtp(Option<SrtpKeys>),
    /// Open a new model session beside the call (the current one, if any, keeps running);
    /// report [`Input::SessionOpened`] or [`Input::SessionOpenFailed`].
    OpenSession,
    /// Make the session opened last the current one (model commands from now on go to it) and
    /// close the previous one beside the call.
    SwitchSession,
    /// The current session is gone: close it beside the call and send nothing more to it.
    CloseSession,
    /// The call is over.
    Hangup(EndReason),
    /// Nothing more to do until this time (or the next input).
    Timeout(Instant),
}

/// What happened to an RTP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpOutcome {
    /// A valid RTP packet (any payload type); its source is latched.
    Rtp(Disposition),
    /// An RTCP packet (rtcp-mux or the RTCP port).
    Rtcp,
    /// Not RTP at all.
    Invalid,
}

#[derive(Debug, Clone)]
struct PlayingItem {
    id: String,
    tag: u64,
    content_index: u32,
    /// The response in progress when its latest delta came.
    response: Option<String>,
}

/// A turn of the agent's speech in a continuous output stream (GPT-Live): when it began and, once
/// [`ModelEvent::AgentTranscriptDone`](crate::realtime::model::ModelEvent) said it is over, how far
/// the stream must be played for the caller to have heard all of it.
#[derive(Debug, Clone)]
struct SpokenTurn {
    item_id: String,
    /// Responses done ([`Bridge::responses_done`]) when its first transcript fragment came.
    responses_before: u64,
    /// The pacer item and its received bytes at the end of the turn (`None` while it goes on).
    end: Option<(u64, u64)>,
}

/// A function call the model made, for the shell to run (from [`ModelEvent::ToolCall`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRequest {
    /// The id to answer with.
    pub call_id: String,
    /// Function name.
    pub name: String,
    /// The arguments, a JSON object as text.
    pub arguments: String,
}

/// The sans-IO core of one call. See the module docs.
pub struct Bridge {
    // --- time
    now: Instant,
    started: Instant,
    // --- media
    negotiated: Negotiated,
    local_rtp: SocketAddr,
    sdp_session_id: u64,
    sdp_version: u64,
    /// SRTP policy and our key for re-offers (`None`: plain RTP only).
    sdes: Option<Sdes>,
    /// Where our RTP goes: the SDP address until a valid packet latches its source.
    remote: SocketAddr,
    latched: bool,
    inbound: JitterBuffer,
    dtmf: Option<DtmfReceiver>,
    digits: VecDeque<char>,
    rtcp: RtcpSession,
    rtp_timeout: Option<Duration>,
    configured_rtp_timeout: Option<Duration>,
    last_rtp: Instant,
    pacer: PlayoutPacer,
    /// Keeps the echo of our audio away from the model (caller frames → silence).
    echo: EchoGate,
    /// The caller's media clock for the echo gate: the arrival of its first frame, and the
    /// frames released since (each 20 ms of the caller's media, concealed ones included).
    echo_clock: Option<(Instant, u32)>,
    send_silence: bool,
    /// A caller packet woke the shell: the next RTP packet may leave up to [`RTP_AHEAD`] early.
    rtp_wake: bool,
    // --- conversation (conversation.rs)
    model: Option<ModelPlan>,
    caps: Capabilities,
    interrupt_response: bool,
    ws_out: VecDeque<ModelCommand>,
    response_active: Option<String>,
    /// The response we sent `response.cancel` for, until its `response.done`: every audio delta
    /// that still arrives belongs to it and is dropped.
    cancel_sent: Option<String>,
    /// When we last sent `response.cancel`: a `response_cancel_not_active` error shortly after it
    /// is the benign race with the response's own end, not a server error.
    last_cancel_at: Option<Instant>,
    playing: Option<PlayingItem>,
    items: Vec<(String, u64)>,
    next_tag: u64,
    interrupted: VecDeque<String>,
    tool_requests: VecDeque<ToolRequest>,
    tools_in_flight: Vec<String>,
    response_wanted: bool,
    response_requested: bool,
    responses_done: u64,
    /// The agent's latest turn of speech (continuous output only).
    spoken: Option<SpokenTurn>,
    /// Commands handed out by `poll_ws` so far.
    ws_popped: u64,
    /// Appends queued and not yet handed out: (their index among all commands, arrival of the
    /// packet that completed the frame).
    appends_queued: VecDeque<(u64, Instant)>,
    /// Arrivals of the appends handed out and not yet reported written.
    appends_handed: Vec<Instant>,
    /// Call time (ms) of the first append: the session's audio time 0.
    first_append_ms: Option<u64>,
    /// When the caller last stopped speaking, until the reply's first audio delta.
    speech_stopped_at: Option<Instant>,
    /// Caller stopped speaking → first audio of the reply, not yet taken by the shell.
    first_audio_latency: Option<Duration>,
    transcript: Transcript,
    usage: CallUsage,
    /// The caller is speaking (between the model's speech started and stopped).
    caller_speaking: bool,
    /// An announcement (not rolled over).
    announcement: bool,
    // --- rollover (rollover.rs)
    rollover: rollover::Rollover,
    // --- call control (control.rs)
    control: control::Control,
    idle: idle::Idle,
    /// Side effects and the hang-up, in order.
    effects: VecDeque<Output>,
    /// The call is over (its [`Output::Hangup`] was queued).
    ended: bool,
    // --- statistics
    stats: BridgeStats,
    latency: LatencyHistogram,
    pacing: LatencyHistogram,
}

impl Bridge {
    /// The core of a call answered at `now` with `setup`. Queues the session configuration and
    /// the greeting (model calls) or the recording (recording calls).
    pub fn new(now: Instant, setup: CallSetup) -> Bridge {
        let CallSetup {
            media,
            negotiated,
            local_rtp,
            sdp_session_id,
            sdes,
            plan,
        } = setup;
        let (model, after, recording) = match plan {
            CallPlan::Agent(m) => (Some(m), None, None),
            CallPlan::Announcement(m, then) => (Some(m), Some(then), None),
            CallPlan::Recording { audio, then } => (None, Some(then), Some(audio)),
        };
        let caps = model.as_ref().map_or(
            Capabilities {
                truncates_on_barge_in: false,
                cancels_responses: false,
                continuous_output: false,
                continuous_input: false,
                transcribes_caller: false,
            },
            |m| m.caps,
        );
        let interrupt_response = model
            .as_ref()
            .is_some_and(|m| m.settings.turn_detection.interrupt_response);
        // A recording does not listen, so a silent caller does not end it.
        let rtp_timeout = if recording.is_some() {
            None
        } else {
            media.rtp_timeout
        };
        let mut pacer = PlayoutPacer::new(
            negotiated.law,
            negotiated.payload_type,
            media.ssrc,
            media.first_seq,
            media.first_ts,
            now,
        );
        pacer.set_send_silence(media.send_silence && recording.is_none());
        if caps.continuous_output {
            // A continuous model stream drifts against our clock (GPT-Live).
            pacer.set_depth_bounds(Some(DepthBounds::CONTINUOUS));
        }
        let announcement = model.is_some() && after.is_some();
        let control = control::Control::new(now, model.as_ref(), after, recording.is_some());
        let negotiated_law = negotiated.law;
        let idle = idle::Idle::new(now, model.as_ref().and_then(|m| m.idle));
        let mut bridge = Bridge {
            now,
            started: now,
            remote: negotiated.remote_rtp,
            latched: false,
            inbound: JitterBuffer::new(negotiated.law, negotiated.payload_type, now),
            dtmf: negotiated.telephone_event_pt.map(DtmfReceiver::new),
            negotiated,
            local_rtp,
            sdp_session_id,
            sdp_version: sdp_session_id,
            sdes,
            digits: VecDeque::new(),
            rtcp: RtcpSession::new(media.ssrc, "frontdesk", now),
            rtp_timeout,
            configured_rtp_timeout: rtp_timeout,
            last_rtp: now,
            pacer,
            echo: EchoGate::new(negotiated_law, model.as_ref().is_some_and(|m| m.echo_gate)),
            echo_clock: None,
            send_silence: media.send_silence,
            rtp_wake: false,
            caps,
            interrupt_response,
            ws_out: VecDeque::new(),
            response_active: None,
            cancel_sent: None,
            last_cancel_at: None,
            playing: None,
            items: Vec::new(),
            next_tag: 1,
            interrupted: VecDeque::new(),
            tool_requests: VecDeque::new(),
            tools_in_flight: Vec::new(),
            response_wanted: false,
            response_requested: false,
            responses_done: 0,
            spoken: None,
            ws_popped: 0,
            appends_queued: VecDeque::new(),
            appends_handed: Vec::new(),
            first_append_ms: None,
            speech_stopped_at: None,
            first_audio_latency: None,
            transcript: Transcript::new(),
            usage: CallUsage::default(),
            caller_speaking: false,
            announcement,
            rollover: rollover::Rollover::new(
                now,
                model
                    .as_ref()
                    .map(|m| m.rollover.clone())
                    .unwrap_or_default(),
            ),
            control,
            idle,
            effects: VecDeque::new(),
            ended: false,
            stats: BridgeStats::default(),
            latency: LatencyHistogram::new(),
            pacing: LatencyHistogram::new(),
            model: None,
        };
        if let Some(m) = &model {
            bridge.start_session(&m.settings, &m.greeting);
        }
        if let Some(audio) = recording {
            bridge.pacer.push(now, 1, &audio);
        }
        bridge.model = model;
        bridge
    }

    /// Feeds one input. Then drain [`Bridge::poll_output`] until [`Output::Timeout`].
    pub fn handle_input(&mut self, input: Input<'_>) {
        if self.ended {
            return;
        }
        match input {
            Input::Rtp {
                now,
                from,
                datagram,
            } => {
                self.advance(now);
                self.handle_rtp(now, datagram, Some(from));
            }
            Input::Rtcp { now, datagram } => {
                self.advance(now);
                self.handle_rtp(now, datagram, None);
            }
            Input::Model(now, event) => {
                self.advance(now);
                if let ModelEvent::SessionClosed { reason } = &event {
                    self.session_lost(now, "closed", reason);
                } else if self.model.is_some() && self.rollover.is_up() {
                    self.handle_model_event(now, event);
                }
            }
            Input::ModelFlushed(now) => self.ws_written(now),
            Input::ModelFailed(now) => {
                self.advance(now);
                self.session_lost(now, "failed", "connection error");
            }
            Input::SessionOpened(now) => {
                self.advance(now);
                self.session_opened(now);
            }
            Input::SessionExpires { now, at } => {
                self.advance(now);
                self.rollover.session_expires(at);
            }
            Input::SessionOpenFailed { now, error } => {
                self.advance(now);
                self.session_open_failed(now, &error);
            }
            Input::Sip(now, event) => {
                self.advance(now);
                self.handle_sip(now, event);
            }
            Input::SipGone(now) => {
                self.advance(now);
                self.end(EndReason::dialog_gone());
            }
            Input::ToolDone {
                now,
                call_id,
                output,
            } => {
                self.advance(now);
                self.handle_tool_result(&call_id, &output);
            }
            Input::ReferDone { now, result } => {
                self.advance(now);
                self.refer_done(now, result);
            }
            Input::Timeout(now) => {
                self.advance(now);
                self.handle_timeout(now);
            }
            Input::Shutdown(now) => {
                self.advance(now);
                self.end(EndReason::local(Cause::Shutdown));
            }
        }
        self.after_input();
    }

    /// The next thing to do; [`Output::Timeout`] when there is nothing until then.
    pub fn poll_output(&mut self) -> Output {
        loop {
            if !self.ended {
                if let Some(op) = self.rollover.ops.pop_front() {
                    return op;
                }
            }
            if !self.ended && self.rollover.is_up() {
                if let Some(command) = self.poll_ws() {
                    return Output::SendModel(command);
                }
            }
            if let Some(effect) = self.effects.pop_front() {
                return effect;
            }
            if self.ended {
                return Output::Timeout(self.now + IDLE_TIMEOUT);
            }
            let now = self.now;
            if let Some(t) = self.poll_rtp(now) {
                if self.negotiated.should_send() {
                    // On the media clock: the caller's phone plays by timestamp, so its echo
                    // follows the packet's schedule, not a late wake-up of ours.
                    self.echo.on_sent(t.due, &t.packet[rtp::HEADER_BYTES..]);
                    return Output::SendRtp {
                        to: self.remote,
                        packet: t.packet,
                    };
                }
                continue;
            }
            let report = self.inbound.receiver_report();
            if let Some(packet) = self.rtcp.poll_transmit(now, report.as_ref()) {
                // RTCP goes to the odd port above the caller's RTP port, or to the RTP port
                // itself with rtcp-mux (RFC 3550 §11, RFC 5761).
                let mux = self.negotiated.rtcp_mux;
                let to = if mux {
                    self.remote
                } else {
                    SocketAddr::new(self.remote.ip(), self.remote.port().wrapping_add(1))
                };
                return Output::SendRtcp { to, mux, packet };
            }
            self.before_sleep();
            if !self.effects.is_empty() || !self.ws_out.is_empty() {
                continue;
            }
            return Output::Timeout(self.poll_timeout().unwrap_or(now + IDLE_TIMEOUT));
        }
    }

    /// When the core next needs [`Input::Timeout`] (the earliest of its deadlines).
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.pacer.poll_timeout(),
            self.inbound.poll_timeout(),
            self.dtmf.as_ref().and_then(DtmfReceiver::poll_timeout),
            self.rtcp.poll_timeout(),
            self.rtp_timeout.map(|t| self.last_rtp + t),
            self.control.poll_timeout(),
            // Without a model (a recording, or after `model_unavailable`) rollover has nothing to do.
            self.model.as_ref().and(self.rollover.poll_timeout()),
            self.idle.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether the call is over ([`Output::Hangup`] was queued).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    fn advance(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    /// Ends the call with `reason` (the first end wins).
    fn end(&mut self, reason: EndReason) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.effects.push_back(Output::Hangup(reason));
    }

    /// Milliseconds of call time (since [`Bridge::new`]) at `now`.
    fn call_ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.started).as_millis()).unwrap_or(u64::MAX)
    }

    /// Call time of a position in the session's input audio (`audio_start_ms`, `audio_end_ms`):
    /// appends start with the caller's first packet and then run one frame per 20 ms.
    fn audio_to_call_ms(&self, now: Instant, audio_ms: u64) -> u64 {
        match self.first_append_ms {
            Some(first) => first + audio_ms,
            None => self.call_ms(now),
        }
    }

    /// One datagram from the RTP port (`from` given) or the RTCP port. A valid RTP packet latches
    /// our RTP to its source (symmetric RTP, RFC 4961).
    fn handle_rtp(
        &mut self,
        now: Instant,
        datagram: &[u8],
        from: Option<SocketAddr>,
    ) -> RtpOutcome {
        if rtp::is_rtcp(datagram) {
            if let Err(e) = self.rtcp.handle_packet(now, datagram) {
                debug!(error = %e, "malformed RTCP ignored");
            }
            return RtpOutcome::Rtcp;
        }
        let Ok(packet) = rtp::parse(datagram) else {
            return RtpOutcome::Invalid;
        };
        if let Some(from) = from {
            if from != self.remote {
                if !self.latched {
                    info!(sdp = %self.remote, actual = %from, "latched RTP to the caller's source address");
                }
                self.remote = from;
            }
            self.latched = true;
        }
        self.last_rtp = now;
        if let Some(dtmf) = &mut self.dtmf {
            dtmf.push(now, &packet);
        }
        let disposition = self.inbound.push(now, &packet);
        self.drain_inbound(now);
        self.rtp_wake = true;
        RtpOutcome::Rtp(disposition)
    }

    /// Advances timers: releases the caller frames due (a gap whose reorder window ended, silence
    /// frames on the media clock for a silent caller), closes DTMF presses whose end packets were
    /// lost, notices RTP silence and the call-control deadlines.
    fn handle_timeout(&mut self, now: Instant) {
        self.drain_inbound(now);
        if let Some(timeout) = self.rtp_timeout {
            if now.saturating_duration_since(self.last_rtp) >= timeout {
                info!(timeout = ?timeout, "no RTP from the caller; ending the call");
                self.end(EndReason::local(Cause::RtpTimeout));
            }
        }
        self.control_timeout(now);
        self.rollover_timeout(now);
    }

    fn drain_inbound(&mut self, now: Instant) {
        if self.caps.continuous_output {
            // The model's stream is paced by our appends: it stalls when they do.
            self.pacer.set_input_lag_ms(self.inbound.clock_grace_ms());
        }
        while let Some(mut frame) = self.inbound.poll_frame(now) {
            if self.model.is_none() {
                let law = self.negotiated.law;
                self.message_frame(law, &frame.audio);
                continue;
            }
            // The frame's place on the caller's media clock (robust to late wake-ups of ours).
            let (first, n) = *self
                .echo_clock
                .get_or_insert((frame.arrived.unwrap_or(now), 0));
            self.echo_clock = Some((first, n.saturating_add(1)));
            let media_time = first + Duration::from_millis(20 * u64::from(n));
            // Concealed frames are our own silence: nothing of the line to judge.
            if !frame.concealed
                && self.echo.process(media_time, &mut frame.audio) == Verdict::Gated
                && self.echo.enabled()
            {
                self.stats.echo_gated_frames += 1;
            }
            if !self.rollover.is_up() {
                self.rollover.keep_audio(frame.audio.to_vec());
                continue;
            }
            if let Some(arrived) = frame.arrived {
                let index = self.ws_popped + self.ws_out.len() as u64;
                self.appends_queued.push_back((index, arrived));
            }
            self.ws_out
                .push_back(ModelCommand::AppendAudio(frame.audio.to_vec()));
            if self.stats.appends == 0 {
                self.first_append_ms = Some(self.call_ms(now));
            }
            self.stats.appends += 1;
        }
        if let Some(dtmf) = &mut self.dtmf {
            dtmf.handle_timeout(now);
            while let Some(d) = dtmf.poll_digit() {
                info!(key = %Pii(d.key), duration_ms = d.duration_ms, "caller pressed a key");
                self.stats.dtmf_digits += 1;
                self.digits.push_back(d.key);
            }
        }
    }

    /// A SIP event of the dialog: an end, a key press by INFO, a re-offer, a transfer's NOTIFY.
    fn handle_sip(&mut self, now: Instant, event: CallEvent) {
        if let Some(end) = EndReason::from_call_event(&event) {
            if end.cause == Cause::RemoteBye {
                info!("caller hung up");
            }
            self.control_dialog_ended(end);
            return;
        }
        match event {
            CallEvent::Info { content_type, body } => {
                match crate::media::dtmf::parse_dtmf_relay(&body) {
                    Some(key) => {
                        info!(key = %Pii(key), "caller pressed a key (SIP INFO)");
                        self.stats.dtmf_digits += 1;
                        self.digits.push_back(key);
                    }
                    None => debug!(
                        content_type = content_type.as_deref().unwrap_or("-"),
                        bytes = body.len(),
                        "SIP INFO without a key ignored"
                    ),
                }
            }
            CallEvent::Offer { sdp: offer } => {
                let answered = match &self.sdes {
                    Some(sdes) => sdp::answer_reoffer_sdes(
                        &offer,
                        self.local_rtp,
                        self.sdp_session_id,
                        self.sdp_version + 1,
                        self.negotiated.law,
                        sdes,
                        self.negotiated.srtp.is_some(),
                    ),
                    None => sdp::answer_reoffer(
                        &offer,
                        self.local_rtp,
                        self.sdp_session_id,
                        self.sdp_version + 1,
                        self.negotiated.law,
                    ),
                };
                match answered {
                    Ok((new, answer)) => {
                        self.sdp_version += 1;
                        self.effects.push_back(Output::AnswerOffer(Ok(answer)));
                        self.apply_media_change(now, new);
                    }
                    Err(e) => {
                        info!(error = %e, "unacceptable re-offer; answering 488 and keeping the call as it is");
                        self.effects.push_back(Output::AnswerOffer(Err(488)));
                    }
                }
            }
            CallEvent::Answer { sdp: answer } => {
                match sdp::accept_answer_sdes(&answer, self.sdes.as_ref()) {
                    Ok(new) => self.apply_media_change(now, new),
                    Err(e) => {
                        tracing::warn!(error = %e, "unacceptable SDP answer in the re-INVITE's ACK; media unchanged")
                    }
                }
            }
            CallEvent::ReferNotify { status, terminated } => {
                self.refer_notify(now, status, terminated)
            }
            _ => {}
        }
    }

    /// Applies a re-negotiated audio stream (re-INVITE/UPDATE offer, or the answer in a
    /// re-INVITE's ACK): hold and resume, a new RTP address, a codec change.
    fn apply_media_change(&mut self, now: Instant, new: Negotiated) {
        let current = &self.negotiated;
        let held = !new.should_send() || !new.expects_media();
        let was_held = !current.should_send() || !current.expects_media();
        if held && !was_held {
            info!(direction = new.direction.as_str(), remote_rtp = %new.remote_rtp, "call put on hold; RTP paused");
        } else if !held && was_held {
            info!(direction = new.direction.as_str(), remote_rtp = %new.remote_rtp, "call resumed");
        }
        if new.remote_rtp != current.remote_rtp && !new.remote_rtp.ip().is_unspecified() {
            info!(from = %current.remote_rtp, to = %new.remote_rtp, "the caller's RTP address changed");
            self.remote = new.remote_rtp;
            self.latched = false;
        }
        if new.law != current.law || new.payload_type != current.payload_type {
            info!(from = ?current.law, to = ?new.law, payload_type = new.payload_type, "codec changed by re-offer");
            self.change_codec(now, &new);
        }
        if new.srtp != self.negotiated.srtp {
            self.effects.push_back(Output::SetSrtp(new.srtp.clone()));
        }
        // A held call may be silent for as long as the hold lasts.
        self.rtp_timeout = if held {
            None
        } else {
            self.configured_rtp_timeout
        };
        self.last_rtp = now;
        self.negotiated = new;
    }

    /// The call switched to the other G.711 law: rebuilds the jitter buffer, the DTMF receiver
    /// and the pacer (same SSRC, continuing sequence numbers; queued model audio in the old law
    /// is dropped) and reconfigures the session with the new audio format.
    fn change_codec(&mut self, now: Instant, new: &Negotiated) {
        let seq = self.pacer.next_sequence();
        let ssrc = self.pacer.ssrc();
        self.inbound = JitterBuffer::new(new.law, new.payload_type, now);
        self.dtmf = new.telephone_event_pt.map(DtmfReceiver::new);
        self.pacer = PlayoutPacer::new(
            new.law,
            new.payload_type,
            ssrc,
            seq,
            u32::from(seq).wrapping_mul(160),
            now,
        );
        self.pacer.set_send_silence(self.send_silence);
        if self.caps.continuous_output {
            self.pacer.set_depth_bounds(Some(DepthBounds::CONTINUOUS));
        }
        self.echo.set_law(new.law);
        self.playing = None;
        if let Some(m) = &mut self.model {
            m.settings.law = new.law;
            self.ws_out
                .push_back(ModelCommand::Configure(Box::new(m.settings.clone())));
        }
    }

    /// The next RTP packet due at `now`. Right after a caller packet, one packet due within
    /// [`RTP_AHEAD`] leaves at once, so the shell's wake-up for the caller's packet also sends
    /// ours (one wake-up per 20 ms instead of two; see [`PlayoutPacer::poll_transmit_ahead`]).
    fn poll_rtp(&mut self, now: Instant) -> Option<Transmit> {
        let t = if std::mem::take(&mut self.rtp_wake) {
            self.pacer.poll_transmit_ahead(now, RTP_AHEAD)?
        } else {
            self.pacer.poll_transmit(now)?
        };
        self.pacing.record(now.saturating_duration_since(t.due));
        let ts = u32::from_be_bytes([t.packet[4], t.packet[5], t.packet[6], t.packet[7]]);
        self.rtcp
            .on_rtp_sent(now, ts, t.packet.len() - rtp::HEADER_BYTES);
        Some(t)
    }

    /// What the echo gate learned about the caller's line.
    pub fn echo_path(&self) -> EchoPath {
        self.echo.path()
    }

    /// Counters so far.
    pub fn stats(&self) -> BridgeStats {
        BridgeStats {
            inbound: self.inbound.stats(),
            outbound: self.pacer.stats(),
            remote_report: self.rtcp.remote_reports().copied(),
            latency: self.latency.percentiles(),
            pacing: self.pacing.percentiles(),
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    use crate::realtime::codec::Codec;
    use crate::realtime::protocol::{Dialect, ServerEvent};

    /// Feeds a Realtime server event through the GA codec.
    fn server(b: &mut Bridge, now: Instant, e: ServerEvent) {
        let mut out = VecDeque::new();
        Codec::new(Dialect::Ga).decode_event(e, &mut out);
        for e in out {
            b.handle_model_event(now, e);
        }
    }

    fn negotiated() -> Negotiated {
        Negotiated {
            law: crate::media::g711::Law::Mu,
            payload_type: 0,
            telephone_event_pt: Some(101),
            remote_rtp: "127.0.0.1:40000".parse().expect("addr"),
            ptime_ms: 20,
            direction: crate::sdp::Direction::SendRecv,
            rtcp_mux: false,
            srtp: None,
        }
    }

    fn settings() -> SessionSettings {
        SessionSettings {
            model: "gpt-realtime".into(),
            instructions: "Be brief.".into(),
            voice: "marin".into(),
            law: crate::media::g711::Law::Mu,
            turn_detection: crate::realtime::protocol::TurnDetection::default(),
            transcription_model: None,
            tools: Vec::new(),
        }
    }

    pub(super) fn setup(plan: CallPlan) -> CallSetup {
        CallSetup {
            media: MediaParams {
                ssrc: 7,
                first_seq: 100,
                first_ts: 1000,
                rtp_timeout: Some(Duration::from_secs(30)),
                send_silence: false,
            },
            negotiated: negotiated(),
            local_rtp: "127.0.0.1:30000".parse().expect("addr"),
            sdp_session_id: 1,
            sdes: None,
            plan,
        }
    }

    pub(super) fn agent_plan(dialect: Dialect) -> ModelPlan {
        ModelPlan {
            caps: dialect.capabilities(),
            settings: settings(),
            greeting: String::new(),
            dtmf: BTreeMap::new(),
            transfers: BTreeMap::new(),
            max_duration: Duration::from_secs(900),
            rollover: Default::default(),
            echo_gate: true,
            idle: None,
        }
    }

    /// An agent call without greeting, its session configuration already taken.
    fn bridge(t0: Instant, dialect: Dialect) -> Bridge {
        let mut b = Bridge::new(t0, setup(CallPlan::Agent(agent_plan(dialect))));
        while b.poll_ws().is_some() {}
        b
    }

    fn drain_ws(b: &mut Bridge) -> Vec<serde_json::Value> {
        let mut codec = Codec::new(Dialect::Ga);
        std::iter::from_fn(|| b.poll_ws())
            .filter_map(|c| codec.encode_to_string(&c))
            .map(|s| serde_json::from_str(&s).expect("client events are JSON"))
            .collect()
    }

    fn types(events: &[serde_json::Value]) -> Vec<String> {
        events
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn delta(item: &str, bytes: usize) -> ServerEvent {
        ServerEvent::AudioDelta {
            response_id: "resp_1".into(),
            item_id: item.into(),
            content_index: 0,
            audio: vec![0x55; bytes],
        }
    }

    fn created(id: &str) -> ServerEvent {
        ServerEvent::ResponseCreated {
            response_id: id.into(),
        }
    }

    fn done(id: &str) -> ServerEvent {
        ServerEvent::ResponseDone {
            response_id: id.into(),
            status: "completed".into(),
            reason: None,
            error_code: None,
            error_message: None,
            function_calls: Vec::new(),
            usage: None,
        }
    }

    fn args_done(call_id: &str, name: Option<&str>) -> ServerEvent {
        ServerEvent::FunctionCallArgumentsDone {
            response_id: "resp_1".into(),
            item_id: "item_fc".into(),
            call_id: call_id.into(),
            name: name.map(str::to_owned),
            arguments: "{\"service\":\"cleaning\"}".into(),
        }
    }

    #[test]
    fn caller_audio_becomes_appends_and_gaps_become_silence() {
        let t0 = Instant::now();
        let mut b = bridge(t0, Dialect::Ga);
        let mut pkt = Vec::new();
        for (i, seq) in [1u16, 2, 4].iter().enumerate() {
            crate::media::rtp::write_packet(
                &mut pkt,
                0,
                false,
                *seq,
                u32::from(*seq) * 160,
                9,
                &[0x11; 160],
            );
            let now = t0 + Duration::from_millis(20 * i as u64);
            assert!(matches!(b.handle_rtp(now, &pkt, None), RtpOutcome::Rtp(_)));
        }
        // Each frame is released at its packet's arrival: the gap at seq 3 is concealed the moment
        // seq 4 shows it (the path never reordered, so nothing is waited for).
        let appends: Vec<Vec<u8>> = drain_ws(&mut b)
            .iter()
            .map(|e| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(e["audio"].as_str().unwrap_or_default())
                    .expect("base64")
            })
            .collect();
        assert_eq!(appends.len(), 4, "seq 3 is concealed");
        assert_eq!(appends[2], vec![0xFF; 160], "µ-law silence fills the gap");
        assert_eq!(appends[3], vec![0x11; 160]);
        assert_eq!(b.handle_rtp(t0, b"not rtp", None), RtpOutcome::Invalid);
    }

    #[test]
    fn barge_in_truncates_at_the_audio_actually_sent() {
        let t0 = Instant::now();
        let mut b = bridge(t0, Dialect::Ga);
        server(&mut b, t0, created("resp_1"));
        server(&mut b, t0, delta("item_a", 8_000)); // 1 s of audio, faster than real time
        let mut sent = 0;
        for n in 0..=25u64 {
            while b.poll_rtp(t0 + Duration::from_millis(20 * n)).is_some() {
                sent += 1;
            }
        }
        assert_eq!(sent, 26, "26 frames are due in the first 500 ms");
        let now = t0 + Duration::from_millis(510);
        server(
            &mut b,
            now,
            ServerEvent::SpeechStarted {
                audio_start_ms: 0,
                item_id: "u1".into(),
            },
        );
        let ev = drain_ws(&mut b);
        assert_eq!(
            types(&ev),
            ["conversation.item.truncate"],
            "server cancels itself (interrupt_response)"
        );
        assert_eq!(ev[0]["item_id"], "item_a");
        assert_eq!(ev[0]["audio_end_ms"], 26 * 20);
        assert!(
            b.poll_rtp(now + Duration::from_millis(100)).is_none(),
            "playout stops at once"
        );
        // Late deltas of the interrupted item are dropped.
        server(&mut b, now, delta("item_a", 1_600));
        assert!(b.poll_rtp(now + Duration::from_secs(1)).is_none());
        assert_eq!(b.stats().late_deltas_dropped, 1);
    }

    #[test]
    fn no_truncate_when_the_item_was_played_completely() {
        let t0 = Instant::now();
        let mut b = bridge(t0, Dialect::Ga);
        server(&mut b, t0, delta("item_a", 320));
        while b.poll_rtp(t0 + Duration::from_millis(40)).is_some() {}
        server(
            &mut b,
            t0,
            ServerEvent::SpeechStarted {
                audio_start_ms: 0,
                item_id: "u1".into(),
            },
        );
        assert!(drain_ws(&mut b).is_empty());
    }

    #[test]
    fn tool_output_waits_for_the_active_response_before_response_create() {
        let t0 = Instant::now();
        let mut b = bridge(t0, Dialect::Ga);
        server(&mut b, t0, created("resp_1"));
        server(&mut b, t0, args_done("call_1", Some("check_availability")));
        let req = b.poll_tool_request().expect("a tool request");
        assert_eq!(
            (req.call_id.as_str(), req.name.as_str()),
            ("call_1", "check_availability")
        );
        b.handle_tool_result("call_1", "{\"slots\":[]}");
        assert_eq!(
            types(&drain_ws(&mut b)),
            ["conversation.item.create"],
            "no response.create while resp_1 runs"
        );
        server(&mut b, t0, done("resp_1"));
        assert_eq!(types(&drain_ws(&mut b)), ["response.create"]);
        // A response the caller's speech starts meanwhile is not collided with.
        server(&mut b, t0, created("resp_2"));
        server(&mut b, t0, done("resp_2"));
        assert!(drain_ws(&mut b).is_empty());
    }

    #[test]
    fn lost_race_for_a_response_is_retried_after_the_next_one() {
        let t0 = Instant::now();
        let mut b = bridge(t0, Dialect::Ga);
        server(&mut b, t0, args_done("call_1", Some("get_business_info")));
        let _ = b.poll_tool_request();
        b.handle_tool_result("call_1", "{}");
        assert_eq!(
            types(&drain_ws(&mut b)),
            ["conversation.item.create", "response.create"]
        );
        server(
            &mut b,
            t0,
            ServerEvent::Error {
                kind: "invalid_request_error".into(),
                code: Some("conversation_already_has_active_response".into()),
                message: "Conversation already has an active response".into(),
                param: None,
                event_id: None,
            },
        );
        server(&mut b, t0, created("resp_vad"));
        server(&mut b, t0, done("resp_vad"));
        assert_eq!(types(&drain_ws(&mut b)), ["response.create"]);
    }

    #[test]
    fn stats_report_added_latency_and_pacing_error() {
        let t0 = Instant::now();
        let mut b = bridge(t0, Dialect::Ga);
        let mut pkt = Vec::new();
        // Ten packets, 20 ms apart, in order: each frame is appended at its packet's arrival and
        // the shell writes it 0.3 ms later; then a ptime-10 pair, the frame written 0.3 ms after
        // the second half completed it. Frames not yet written are not counted.
        let write = |b: &mut Bridge, now: Instant| {
            while b.poll_ws().is_some() {}
            b.ws_written(now + Duration::from_micros(300));
        };
        for seq in 0..10u16 {
            crate::media::rtp::write_packet(
                &mut pkt,
                0,
                false,
                seq,
                u32::from(seq) * 160,
                9,
                &[0x11; 160],
            );
            let now = t0 + Duration::from_millis(20 * u64::from(seq));
            b.handle_rtp(now, &pkt, None);
            write(&mut b, now);
        }
        for half in 0..2u16 {
            crate::media::rtp::write_packet(
                &mut pkt,
                0,
                false,
                10 + half,
                1_600 + u32::from(half) * 80,
                9,
                &[0x11; 80],
            );
            let now = t0 + Duration::from_millis(200 + 10 * u64::from(half));
            b.handle_rtp(now, &pkt, None);
            write(&mut b, now);
        }
        // An append queued but not written yet is not counted.
        pkt.clear();
        crate::media::rtp::write_packet(&mut pkt, 0, false, 12, 1_760, 9, &[0x11; 160]);
        b.handle_rtp(t0 + Duration::from_millis(220), &pkt, None);
        let s = b.stats();
        assert_eq!(s.latency.samples, 11);
        assert_eq!(
            (s.latency.p50_ms, s.latency.p99_ms, s.latency.max_ms),
            (0.3, 0.3, 0.3)
        );
        assert_eq!(s.appends, 12);

        // Model audio: three packets, polled 0, 2 and 7 ms after they are due.
        server(&mut b, t0, delta("item_a", 480));
        let due = |n: u64| t0 + Duration::from_millis(20 * n);
        for (n, late_us) in [(0u64, 0u64), (1, 2_000), (2, 7_000)] {
            let t = b
                .poll_rtp(due(n) + Duration::from_micros(late_us))
                .expect("a packet is due");
            assert_eq!(t.due, due(n));
        }
        let p = b.stats().pacing;
        assert_eq!(p.samples, 3);
        assert!((p.p50_ms - 2.05).abs() < 1e-9, "{p:?}");
        assert!((p.p99_ms - 7.0).abs() < 1e-9, "{p:?}");
        assert!((p.max_ms - 7.0).abs() < 1e-9, "{p:?}");
    }

    /// Speech-like µ-law agent audio: 20 ms frames of a 150 Hz tone whose loudness changes per
    /// frame (about -40 to -16 dBFS) with silent gaps.
    fn agent_audio(frames: usize) -> Vec<u8> {
        let levels = [
            0.0, 3_000.0, 6_000.0, 5_000.0, 0.0, 8_000.0, 2_000.0, 4_500.0, 0.0, 0.0, 7_000.0,
        ];
        (0..frames * 160)
            .map(|n| {
                let amp = levels[(n / 160 * 7) % levels.len()];
                let v = amp * (2.0 * std::f64::consts::PI * 150.0 * n as f64 / 8_000.0).sin();
                crate::media::g711::linear_to_ulaw(v as i16)
            })
            .collect()
    }

    /// Plays 2.8 s of a 3 s agent reply while the caller's line returns it 14 dB quieter and
    /// 100 ms later; returns the payloads the caller sent and the audio appended to the session.
    fn echo_call(
        echo_gate: bool,
        interrupt_response: bool,
    ) -> (Bridge, Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let t0 = Instant::now();
        let mut plan = agent_plan(Dialect::Ga);
        plan.echo_gate = echo_gate;
        plan.settings.turn_detection.interrupt_response = interrupt_response;
        let mut b = Bridge::new(t0, setup(CallPlan::Agent(plan)));
        while b.poll_ws().is_some() {}
        server(&mut b, t0, created("resp_1"));
        server(&mut b, t0, delta("item_a", 0));
        let audio = agent_audio(150);
        b.handle_input(Input::Model(
            t0,
            ModelEvent::AudioDelta {
                item_id: "item_a".into(),
                content_index: 0,
                audio,
            },
        ));
        // Our RTP payloads go to `sent_out`, the session's appends to `appended`.
        let drain = |b: &mut Bridge, sent_out: &mut Vec<Vec<u8>>, appended: &mut Vec<Vec<u8>>| loop {
            match b.poll_output() {
                Output::SendRtp { packet, .. } => sent_out.push(packet[12..].to_vec()),
                Output::SendModel(ModelCommand::AppendAudio(a)) => appended.push(a),
                Output::Timeout(_) => break,
                _ => {}
            }
        };
        let from: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        let (mut sent_out, mut sent_in, mut appended) = (Vec::new(), Vec::new(), Vec::new());
        let mut pkt = Vec::new();
        // 2.8 s: the agent is still speaking at the end.
        for n in 0..140u64 {
            let now = t0 + Duration::from_millis(20 * n);
            b.handle_input(Input::Timeout(now));
            drain(&mut b, &mut sent_out, &mut appended);
            // The caller's frame n: the echo of our frame n - 5, 14 dB down, 20 ms after its start.
            let echo: Vec<u8> = match n.checked_sub(5).and_then(|k| sent_out.get(k as usize)) {
                Some(p) => p
                    .iter()
                    .map(|&x| {
                        let v = f64::from(crate::media::g711::ulaw_to_linear(x)) * 0.2;
                        crate::media::g711::linear_to_ulaw(v as i16)
                    })
                    .collect(),
                None => vec![0xFF; 160],
            };
            crate::media::rtp::write_packet(&mut pkt, 0, false, n as u16, n as u32 * 160, 9, &echo);
            sent_in.push(echo);
            b.handle_input(Input::Rtp {
                now: now + Duration::from_millis(3),
                from,
                datagram: &pkt,
            });
            drain(&mut b, &mut sent_out, &mut appended);
        }
        (b, sent_in, appended)
    }

    fn dbfs(frame: &[u8]) -> f64 {
        20.0 * crate::media::g711::rms(crate::media::g711::Law::Mu, frame)
            .max(1e-9)
            .log10()
    }

    #[test]
    fn the_echo_of_the_agent_reaches_the_session_as_silence() {
        let (b, sent_in, appended) = echo_call(true, true);
        assert_eq!(appended.len(), sent_in.len());
        let loud_in = sent_in.iter().filter(|f| dbfs(f) > -40.0).count();
        assert!(
            loud_in > 50,
            "the line returned {loud_in} loud frames of echo"
        );
        let loud: Vec<usize> = (0..appended.len())
            .filter(|&i| dbfs(&appended[i]) > -40.0)
            .collect();
        assert!(
            loud.is_empty(),
            "echo reached the session in frames {loud:?}"
        );
        assert!(b.stats().echo_gated_frames > 50, "{:?}", b.stats());
        match b.echo_path() {
            EchoPath::Echo { delay_ms, erl_db } => {
                assert!((100..=140).contains(&delay_ms), "{delay_ms}");
                assert!((erl_db - 14.0).abs() < 4.0, "{erl_db}");
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn with_the_echo_gate_off_caller_audio_reaches_the_session_byte_exact() {
        let (b, sent_in, appended) = echo_call(false, true);
        assert_eq!(appended, sent_in);
        assert_eq!(b.stats().echo_gated_frames, 0);
    }

    fn speech_started() -> ServerEvent {
        ServerEvent::SpeechStarted {
            audio_start_ms: 2_000,
            item_id: "u1".into(),
        }
    }

    #[test]
    fn a_speech_started_explained_by_echo_does_not_stop_the_agent_when_frontdesk_decides() {
        // interrupt_response = false: frontdesk decides; the server's VAD heard only our echo.
        let (mut b, _, _) = echo_call(true, false);
        let now = b.now;
        server(&mut b, now, speech_started());
        assert!(drain_ws(&mut b).is_empty(), "no truncate, no cancel");
        assert_eq!(
            (b.stats().false_barge_ins, b.stats().true_barge_ins),
            (1, 0)
        );
        // The agent keeps talking: the next 200 ms of RTP are its audio.
        let sent = caller_speaks(&mut b, 140..150, false);
        assert_eq!(sent.len(), 10);
        assert!(sent
            .iter()
            .all(|p| dbfs(p) > -60.0 || p.iter().all(|&x| x == 0xFF)));
        assert!(sent.iter().filter(|p| dbfs(p) > -40.0).count() >= 3);
        assert_eq!(b.stats().barge_ins, 0);
        // The server cancelling itself (interrupt_response = true) is followed, but counted false.
        let (mut b, _, _) = echo_call(true, true);
        let now = b.now;
        server(&mut b, now, speech_started());
        assert_eq!(b.stats().false_barge_ins, 1);
    }

    /// Drives the call through its 20 ms frames `frames` (frame n at `b.started` + 20n ms; an
    /// [`echo_call`] ends after frame 139): the caller's line returns silence or, with
    /// `speaking`, the caller's own voice (a loud 400 Hz tone, about -10 dBFS, far above any
    /// echo). Returns the RTP payloads the core sent meanwhile.
    fn caller_speaks(b: &mut Bridge, frames: std::ops::Range<u64>, speaking: bool) -> Vec<Vec<u8>> {
        let t0 = b.started;
        let from: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        let mut sent = Vec::new();
        let mut pkt = Vec::new();
        let drain = |b: &mut Bridge, sent: &mut Vec<Vec<u8>>| loop {
            match b.poll_output() {
                Output::SendRtp { packet, .. } => sent.push(packet[12..].to_vec()),
                Output::Timeout(_) => break,
                _ => {}
            }
        };
        for n in frames {
            let now = t0 + Duration::from_millis(20 * n);
            b.handle_input(Input::Timeout(now));
            drain(b, &mut sent);
            let voice: Vec<u8> = (0..160u64)
                .map(|i| {
                    let t = (n * 160 + i) as f64 / 8_000.0;
                    let v = if speaking {
                        10_000.0 * (2.0 * std::f64::consts::PI * 400.0 * t).sin()
                    } else {
                        0.0
                    };
                    crate::media::g711::linear_to_ulaw(v as i16)
                })
                .collect();
            crate::media::rtp::write_packet(
                &mut pkt,
                0,
                false,
                n as u16,
                n as u32 * 160,
                9,
                &voice,
            );
            b.handle_input(Input::Rtp {
                now: now + Duration::from_millis(3),
                from,
                datagram: &pkt,
            });
            drain(b, &mut sent);
        }
        sent
    }

    #[test]
    fn a_cancel_that_crosses_the_response_done_is_not_a_server_error() {
        let cancel_not_active = || ServerEvent::Error {
            kind: "invalid_request_error".into(),
            code: Some("response_cancel_not_active".into()),
            message: "Cancellation failed: no active response found".into(),
            param: None,
            event_id: None,
        };
        // Without a cancel of ours, the error is the server's and is counted.
        let (mut b, _, _) = echo_call(true, false);
        let now = b.now;
        server(&mut b, now, cancel_not_active());
        assert_eq!(b.stats().server_errors, 1);
        // The caller interrupts; our cancel and the response's own end cross on the wire.
        let (mut b, _, _) = echo_call(true, false);
        caller_speaks(&mut b, 140..148, true);
        let now = b.now;
        server(&mut b, now, speech_started());
        assert_eq!(types(&drain_ws(&mut b))[0], "response.cancel");
        server(&mut b, now, done("resp_1"));
        server(&mut b, now + Duration::from_millis(40), cancel_not_active());
        assert_eq!(b.stats().server_errors, 0, "the race is benign");
        // Long after the cancel the same error is the server's again.
        server(&mut b, now + Duration::from_secs(60), cancel_not_active());
        assert_eq!(b.stats().server_errors, 1);
    }

    #[test]
    fn a_true_barge_in_when_frontdesk_decides_cancels_the_response_and_truncates_at_the_audio_sent()
    {
        // interrupt_response = false, the agent mid-reply on an echoing line; the caller speaks.
        let (mut b, _, _) = echo_call(true, false);
        caller_speaks(&mut b, 140..148, true);
        let sent_ms = b.pacer.played_bytes(1) / crate::media::g711::BYTES_PER_MS;
        assert!(sent_ms > 2_800, "{sent_ms} ms sent");
        let now = b.now;
        server(&mut b, now, speech_started());
        assert_eq!(
            (b.stats().false_barge_ins, b.stats().true_barge_ins),
            (0, 1)
        );
        // What the server would have done (cancel), then the truncate at the audio sent.
        let ev = drain_ws(&mut b);
        assert_eq!(
            types(&ev),
            ["response.cancel", "conversation.item.truncate"]
        );
        assert_eq!(ev[1]["item_id"], "item_a");
        assert_eq!(ev[1]["audio_end_ms"], sent_ms);
        assert_eq!(b.stats().barge_ins, 1);
        // Playout stopped at once: the caller's line hears nothing more of the agent.
        let after = caller_speaks(&mut b, 148..153, true);
        assert!(
            after.is_empty(),
            "{} packets after the barge-in",
            after.len()
        );
        // A second speech_started before the response is done sends no second cancel, and audio
        // still in flight for the cancelled response (any item) is dropped.
        let now = b.now;
        server(&mut b, now, speech_started());
        server(&mut b, now, delta("item_a", 1_600));
        server(&mut b, now, delta("item_b", 1_600));
        assert!(drain_ws(&mut b).is_empty());
        assert!(caller_speaks(&mut b, 153..158, false).is_empty());
        assert_eq!(b.stats().late_deltas_dropped, 2);
        // Once the cancelled response is done, the next one is heard.
        server(&mut b, now, done("resp_1"));
        server(&mut b, now, created("resp_2"));
        server(&mut b, now, delta("item_c", 1_600));
        assert!(!caller_speaks(&mut b, 158..163, false).is_empty());
    }

    /// A GA agent call whose session leaves interruptions to frontdesk (`interrupt_response:
    /// false`, the echo gate on), its session configuration already taken.
    fn deciding_bridge(t0: Instant) -> Bridge {
        let mut plan = agent_plan(Dialect::Ga);
        plan.settings.turn_detection.interrupt_response = false;
        let mut b = Bridge::new(t0, setup(CallPlan::Agent(plan)));
        while b.poll_ws().is_some() {}
        b
    }

    #[test]
    fn a_cancelled_item_is_truncated_at_what_was_sent_even_when_all_that_came_was_sent() {
        // The response is generating no faster than it plays: all 40 ms received were sent, but
        // the server holds more of the item (generated before the cancel) the caller never heard.
        let t0 = Instant::now();
        let mut b = deciding_bridge(t0);
        server(&mut b, t0, created("resp_1"));
        server(&mut b, t0, delta("item_a", 320));
        caller_speaks(&mut b, 0..10, true);
        assert_eq!(b.pacer.queued_bytes(), 0);
        let now = b.now;
        server(&mut b, now, speech_started());
        let ev = drain_ws(&mut b);
        assert_eq!(
            types(&ev),
            ["response.cancel", "conversation.item.truncate"]
        );
        assert_eq!(ev[1]["audio_end_ms"], 40);
        // Once its response is done, an item played completely is not truncated (a no-op
        // truncate only costs the model its transcript).
        let mut b = deciding_bridge(t0);
        server(&mut b, t0, created("resp_1"));
        server(&mut b, t0, delta("item_a", 320));
        server(&mut b, t0, done("resp_1"));
        caller_speaks(&mut b, 0..10, true);
        let now = b.now;
        server(&mut b, now, speech_started());
        assert!(drain_ws(&mut b).is_empty());
    }

    #[test]
    fn when_frontdesk_decides_a_response_is_cancelled_only_while_it_is_active() {
        let t0 = Instant::now();
        let mut b = deciding_bridge(t0);
        // The response is done, its audio still queued: flush and truncate, no cancel (it would
        // be answered `response_cancel_not_active`).
        server(&mut b, t0, created("resp_1"));
        server(&mut b, t0, delta("item_a", 8_000));
        server(&mut b, t0, done("resp_1"));
        caller_speaks(&mut b, 0..10, true);
        let now = b.now;
        server(&mut b, now, speech_started());
        assert_eq!(types(&drain_ws(&mut b)), ["conversation.item.truncate"]);
        assert!(b.poll_rtp(now + Duration::from_millis(100)).is_none());
        // A response in progress with no audio yet: the caller speaking cancels it.
        let mut b = deciding_bridge(t0);
        server(&mut b, t0, created("resp_1"));
        caller_speaks(&mut b, 0..10, true);
        let now = b.now;
        server(&mut b, now, speech_started());
        assert_eq!(types(&drain_ws(&mut b)), ["response.cancel"]);
        // No response in progress: nothing to cancel, nothing to truncate.
        server(&mut b, now, done("resp_1"));
        server(&mut b, now, speech_started());
        assert!(drain_ws(&mut b).is_empty());
    }
}
