//! The per-call bridge between caller RTP and a Realtime session, as a sans-IO state machine.
//!
//! [`Bridge`] owns the call's [`JitterBuffer`] (caller RTP → 20 ms frames, released on arrival), its
//! [`DtmfReceiver`] (RFC 4733 key presses), its [`RtcpSession`] (RFC 3550 reports), its
//! [`PlayoutPacer`] (model audio → paced RTP) and the conversation state it needs from the server
//! events: the response in progress, the assistant item being played, items interrupted by the
//! caller, and function calls waiting for their outputs.
//!
//! Inputs: [`Bridge::handle_rtp`], [`Bridge::handle_server_event`], [`Bridge::handle_timeout`], each
//! with an explicit `now`. Outputs: [`Bridge::poll_ws`] (client events to send, in order),
//! [`Bridge::poll_rtp`] (due RTP packets) and [`Bridge::poll_timeout`].
//!
//! Drain rule: after every `handle_*` call, drain `poll_ws` and `poll_rtp` until they return `None`,
//! call [`Bridge::ws_written`] once the drained events are written, then sleep until
//! `poll_timeout`. No I/O, no clock reads.
//!
//! Timing figures (for the load benchmark, `BENCHMARKS.md`): each caller frame's *added latency*,
//! from its packet's arrival (the `now` of [`Bridge::handle_rtp`]) to its `append` being written
//! to the WebSocket (the `now` the shell reports with [`Bridge::ws_written`] after its flush), and
//! each outgoing packet's *pacing error*, the `now` given to [`Bridge::poll_rtp`] minus the
//! packet's scheduled [`Transmit::due`], go into two fixed-bucket [`LatencyHistogram`]s (allocated
//! once per call, nothing per frame); [`BridgeStats`] reports their percentiles.
//!
//! Barge-in (realtime-protocol.md §5.1–5.2): on `input_audio_buffer.speech_started` the queued model
//! audio is dropped at once (at most the frame already handed out is still sent), the interrupted
//! assistant item is truncated at the milliseconds actually sent as RTP (never more than was received,
//! and no truncate when nothing was cut), late deltas of that item are discarded, and
//! `response.cancel` is sent only when a response is in progress and the server will not cancel it
//! itself (`interrupt_response: false`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::media::dtmf::DtmfReceiver;
use crate::media::g711::{Law, BYTES_PER_MS};
use crate::media::jitter::{Disposition, JitterBuffer, JitterStats};
use crate::media::pacer::{PacerStats, PlayoutPacer, Transmit};
use crate::media::rtcp::{RemoteReport, RtcpSession};
use crate::media::rtp;
use crate::pricing::CallUsage;
use crate::realtime::model::{Capabilities, ModelCommand, ModelError, ModelEvent};
use crate::realtime::protocol::SessionSettings;
use crate::telemetry::Pii;

use super::transcript::{Transcript, Turn};

/// How early our next RTP packet may leave when a caller packet woke the shell anyway (10 ms).
pub const RTP_AHEAD: Duration = Duration::from_millis(10);

/// How many interrupted item ids are remembered to discard their late deltas.
const REMEMBERED_INTERRUPTED_ITEMS: usize = 8;

/// Fixed facts of the call's media, from SDP negotiation.
#[derive(Debug, Clone)]
pub struct MediaParams {
    /// G.711 law of the call (and of the Realtime session; no transcoding).
    pub law: Law,
    /// RTP payload type of the audio codec (0 PCMU, 8 PCMA, or a dynamic one).
    pub payload_type: u8,
    /// Our RTP SSRC (random per call, RFC 3550 §8).
    pub ssrc: u32,
    /// First RTP sequence number (random, RFC 3550 §5.1).
    pub first_seq: u16,
    /// First RTP timestamp (random, RFC 3550 §5.1).
    pub first_ts: u32,
    /// RFC 4733 telephone-event payload type, when negotiated.
    pub telephone_event_pt: Option<u8>,
    /// No caller RTP for this long ends the call (`rtp-timeout`); `None` disables the check.
    pub rtp_timeout: Option<Duration>,
    /// Continuous RTP: 20 ms packets of G.711 silence while no model audio is queued
    /// ([`PlayoutPacer::set_send_silence`]).
    pub send_silence: bool,
}

/// What happened to an RTP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpOutcome {
    /// A valid RTP packet (any payload type); the shell may latch its source address.
    Rtp(Disposition),
    /// An RTCP packet (rtcp-mux or the RTCP port).
    Rtcp,
    /// Not RTP at all.
    Invalid,
}

/// Width of the fine buckets of a [`LatencyHistogram`]: 0.05 ms.
pub const HISTOGRAM_FINE_NS: u64 = 50_000;
/// Upper end of the fine buckets: 10 ms.
pub const HISTOGRAM_FINE_LIMIT_NS: u64 = 10_000_000;
/// Width of the coarse buckets, from 10 ms on: 0.5 ms.
pub const HISTOGRAM_COARSE_NS: u64 = 500_000;
/// Upper end of the coarse buckets: 500 ms. Longer samples go to one overflow bucket.
pub const HISTOGRAM_LIMIT_NS: u64 = 500_000_000;
const FINE_BUCKETS: usize = (HISTOGRAM_FINE_LIMIT_NS / HISTOGRAM_FINE_NS) as usize;
const COARSE_BUCKETS: usize =
    ((HISTOGRAM_LIMIT_NS - HISTOGRAM_FINE_LIMIT_NS) / HISTOGRAM_COARSE_NS) as usize;
/// Buckets of a [`LatencyHistogram`]: 200 fine + 980 coarse + 1 overflow (4.7 KB of `u32`).
const HISTOGRAM_BUCKETS: usize = FINE_BUCKETS + COARSE_BUCKETS + 1;

/// A histogram of durations with fixed buckets: 0.05 ms wide below 10 ms (where pacing errors and
/// processing times live), 0.5 ms wide from 10 to 500 ms (jitter-buffer delays), and one overflow
/// bucket above. The buckets are allocated once by [`LatencyHistogram::new`]; [`record`] only
/// increments a counter. Percentiles are nearest-rank, reported as the upper edge of the bucket
/// that holds them (capped at the largest sample), so they overstate the true value by less than
/// one bucket width; a percentile in the overflow bucket is the largest sample.
///
/// [`record`]: LatencyHistogram::record
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    buckets: Box<[u32]>,
    count: u64,
    max_ns: u64,
}

/// Percentiles of a [`LatencyHistogram`], in milliseconds (all 0 without samples).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    /// Samples recorded.
    pub samples: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest sample (exact).
    pub max_ms: f64,
}

impl LatencyHistogram {
    /// An empty histogram; allocates its buckets.
    pub fn new() -> LatencyHistogram {
        LatencyHistogram {
            buckets: vec![0; HISTOGRAM_BUCKETS].into_boxed_slice(),
            count: 0,
            max_ns: 0,
        }
    }

    /// Adds one sample. Never allocates.
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = bucket_index(ns);
        self.buckets[i] = self.buckets[i].saturating_add(1);
        self.count += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `q` quantile (0 < q ≤ 1, nearest rank), as an upper bound within one bucket width;
    /// `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        // Nearest rank: the ceil(q·n)-th smallest sample, at least the first (the epsilon keeps
        // 0.07 × 100 = 7.000000000000001 at rank 7).
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64 - 1e-9).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                let edge = bucket_upper_ns(i).min(self.max_ns);
                return Some(Duration::from_nanos(edge));
            }
        }
        Some(Duration::from_nanos(self.max_ns))
    }

    /// Median, 99th percentile and maximum, in ms.
    pub fn percentiles(&self) -> Percentiles {
        let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1_000.0);
        Percentiles {
            samples: self.count,
            p50_ms: ms(self.quantile(0.50)),
            p99_ms: ms(self.quantile(0.99)),
            max_ms: self.max_ns as f64 / 1e6,
        }
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new()
    }
}

fn bucket_index(ns: u64) -> usize {
    if ns < HISTOGRAM_FINE_LIMIT_NS {
        (ns / HISTOGRAM_FINE_NS) as usize
    } else if ns < HISTOGRAM_LIMIT_NS {
        FINE_BUCKETS + ((ns - HISTOGRAM_FINE_LIMIT_NS) / HISTOGRAM_COARSE_NS) as usize
    } else {
        HISTOGRAM_BUCKETS - 1
    }
}

/// Exclusive upper edge of bucket `i` in ns (`u64::MAX` for the overflow bucket).
fn bucket_upper_ns(i: usize) -> u64 {
    if i < FINE_BUCKETS {
        (i as u64 + 1) * HISTOGRAM_FINE_NS
    } else if i < HISTOGRAM_BUCKETS - 1 {
        HISTOGRAM_FINE_LIMIT_NS + ((i - FINE_BUCKETS) as u64 + 1) * HISTOGRAM_COARSE_NS
    } else {
        u64::MAX
    }
}

/// Counters of one call, for the call record and the summary log line.
#[derive(Debug, Clone, Copy, Default)]
pub struct BridgeStats {
    /// Caller RTP.
    pub inbound: JitterStats,
    /// Our RTP.
    pub outbound: PacerStats,
    /// `input_audio_buffer.append` events sent.
    pub appends: u64,
    /// Times the caller interrupted the agent.
    pub barge_ins: u64,
    /// `conversation.item.truncate` events sent.
    pub truncates: u64,
    /// `error` events received.
    pub server_errors: u64,
    /// Audio deltas discarded because their item had been interrupted.
    pub late_deltas_dropped: u64,
    /// Key presses received (RFC 4733 or SIP INFO).
    pub dtmf_digits: u64,
    /// What the caller last reported about our stream in RTCP, if anything.
    pub remote_report: Option<RemoteReport>,
    /// Added latency of caller frames: packet arrival → `append` written to the WebSocket
    /// ([`Bridge::ws_written`]; the
    /// relay's wait for a gap or the rest of a frame, plus processing); concealed frames are not counted.
    pub latency: Percentiles,
    /// Pacing error of our RTP: the time a packet was handed out by [`Bridge::poll_rtp`] minus its
    /// scheduled [`Transmit::due`] (how late the shell woke up).
    pub pacing: Percentiles,
}

#[derive(Debug, Clone)]
struct PlayingItem {
    id: String,
    tag: u64,
    content_index: u32,
}

/// A function call the model made, for the shell to run (from [`ModelEvent::ToolCall`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRequest {
    /// The `call_id` to answer with `function_call_output`.
    pub call_id: String,
    /// Function name.
    pub name: String,
    /// The arguments, a JSON object as text.
    pub arguments: String,
}

/// The sans-IO bridge of one call. See the module docs.
pub struct Bridge {
    caps: Capabilities,
    interrupt_response: bool,
    inbound: JitterBuffer,
    dtmf: Option<DtmfReceiver>,
    digits: VecDeque<char>,
    rtcp: RtcpSession,
    rtp_timeout: Option<Duration>,
    last_rtp: Instant,
    hangup: Option<&'static str>,
    pacer: PlayoutPacer,
    send_silence: bool,
    ws_out: VecDeque<ModelCommand>,
    response_active: Option<String>,
    playing: Option<PlayingItem>,
    items: Vec<(String, u64)>,
    next_tag: u64,
    interrupted: VecDeque<String>,
    tool_requests: VecDeque<ToolRequest>,
    tools_in_flight: Vec<String>,
    response_wanted: bool,
    response_requested: bool,
    responses_done: u64,
    stats: BridgeStats,
    latency: LatencyHistogram,
    pacing: LatencyHistogram,
    /// Client events handed out by [`Bridge::poll_ws`] so far.
    ws_popped: u64,
    /// Appends queued and not yet handed out: (their index among all client events, arrival of
    /// the packet that completed the frame).
    appends_queued: VecDeque<(u64, Instant)>,
    /// Arrivals of the appends handed out and not yet reported written.
    appends_handed: Vec<Instant>,
    /// A caller packet woke the shell: the next RTP packet may leave up to [`RTP_AHEAD`] early.
    rtp_wake: bool,
    started: Instant,
    /// Call time (ms) of the first `input_audio_buffer.append`: the session's audio time 0.
    first_append_ms: Option<u64>,
    /// When the caller last stopped speaking, until the reply's first audio delta.
    speech_stopped_at: Option<Instant>,
    /// Caller stopped speaking → first audio of the reply, not yet taken by the shell.
    first_audio_latency: Option<Duration>,
    transcript: Transcript,
    usage: CallUsage,
}

impl Bridge {
    /// A bridge for a call whose media was negotiated as `media`, to a model session that can
    /// do `caps`; `interrupt_response` says whether the server cancels a response itself when the
    /// caller speaks (then the bridge sends no cancel).
    pub fn new(
        now: Instant,
        media: &MediaParams,
        caps: Capabilities,
        interrupt_response: bool,
    ) -> Bridge {
        Bridge {
            caps,
            interrupt_response,
            inbound: JitterBuffer::new(media.law, media.payload_type, now),
            dtmf: media.telephone_event_pt.map(DtmfReceiver::new),
            digits: VecDeque::new(),
            rtcp: RtcpSession::new(media.ssrc, "frontdesk", now),
            rtp_timeout: media.rtp_timeout,
            last_rtp: now,
            hangup: None,
            pacer: {
                let mut p = PlayoutPacer::new(
                    media.law,
                    media.payload_type,
                    media.ssrc,
                    media.first_seq,
                    media.first_ts,
                    now,
                );
                p.set_send_silence(media.send_silence);
                p
            },
            send_silence: media.send_silence,
            ws_out: VecDeque::new(),
            response_active: None,
            playing: None,
            items: Vec::new(),
            next_tag: 1,
            interrupted: VecDeque::new(),
            tool_requests: VecDeque::new(),
            tools_in_flight: Vec::new(),
            response_wanted: false,
            response_requested: false,
            responses_done: 0,
            stats: BridgeStats::default(),
            latency: LatencyHistogram::new(),
            ws_popped: 0,
            appends_queued: VecDeque::new(),
            appends_handed: Vec::new(),
            rtp_wake: false,
            pacing: LatencyHistogram::new(),
            started: now,
            first_append_ms: None,
            speech_stopped_at: None,
            first_audio_latency: None,
            transcript: Transcript::new(),
            usage: CallUsage::default(),
        }
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

    /// Queues the session configuration and, if `greeting` is not empty, a response that speaks it.
    /// Call once, right after the session opened.
    pub fn start_session(&mut self, settings: &SessionSettings, greeting: &str) {
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

    /// Feeds one UDP datagram received on the call's RTP port (or its RTCP port).
    pub fn handle_rtp(&mut self, now: Instant, datagram: &[u8]) -> RtpOutcome {
        if rtp::is_rtcp(datagram) {
            if let Err(e) = self.rtcp.handle_packet(now, datagram) {
                debug!(error = %e, "malformed RTCP ignored");
            }
            return RtpOutcome::Rtcp;
        }
        let Ok(packet) = rtp::parse(datagram) else {
            return RtpOutcome::Invalid;
        };
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
    /// frames on the media clock for a silent caller),
    /// closes DTMF presses whose end packets were lost, and notices RTP silence.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.drain_inbound(now);
        if let Some(timeout) = self.rtp_timeout {
            if now.saturating_duration_since(self.last_rtp) >= timeout && self.hangup.is_none() {
                info!(timeout = ?timeout, "no RTP from the caller; ending the call");
                self.hangup = Some("rtp-timeout");
            }
        }
    }

    fn drain_inbound(&mut self, now: Instant) {
        while let Some(frame) = self.inbound.poll_frame(now) {
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

    /// A key press that arrived by SIP INFO (`application/dtmf-relay`); handled like an RFC 4733 one.
    pub fn handle_info_digit(&mut self, key: char) {
        info!(key = %Pii(key), "caller pressed a key (SIP INFO)");
        self.stats.dtmf_digits += 1;
        self.digits.push_back(key);
    }

    /// The next key the caller pressed. The shell applies the dialplan's DTMF action, or calls
    /// [`Bridge::forward_digit`].
    pub fn poll_digit(&mut self) -> Option<char> {
        self.digits.pop_front()
    }

    /// Tells the model about a key press as a user message ("The caller pressed 3.") and asks for
    /// a response when none is in progress.
    pub fn forward_digit(&mut self, now: Instant, key: char) {
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

    /// Why the bridge wants the call ended (e.g. `rtp-timeout`), once.
    pub fn poll_hangup(&mut self) -> Option<&'static str> {
        self.hangup.take()
    }

    /// The next RTCP compound packet due (SR or RR + SDES, every 5 s), for the caller's RTCP address.
    pub fn poll_rtcp(&mut self, now: Instant) -> Option<Vec<u8>> {
        let report = self.inbound.receiver_report();
        self.rtcp.poll_transmit(now, report.as_ref())
    }

    /// Feeds one event from the model session.
    pub fn handle_model_event(&mut self, now: Instant, event: ModelEvent) {
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
                if self.caps.truncates_on_barge_in {
                    self.barge_in();
                }
            }
            ModelEvent::SpeechStopped {
                audio_end_ms,
                item_id,
            } => {
                let at = self.audio_to_call_ms(now, audio_end_ms);
                self.transcript.handle_speech_stopped(&item_id, at);
                self.speech_stopped_at = Some(now);
            }
            ModelEvent::ResponseStarted { response_id } => {
                self.response_active = Some(response_id);
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
                let at = self.call_ms(now);
                self.transcript.handle_caller_text(&item_id, &text, at);
            }
            ModelEvent::AgentTranscriptDelta { item_id, delta } => {
                let at = self.call_ms(now);
                self.transcript
                    .handle_agent_text_delta(&item_id, &delta, at);
            }
            ModelEvent::AgentTranscriptDone { item_id, text } => {
                info!(transcript = %Pii(text.trim()), "agent said");
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
        if self.interrupted.iter().any(|i| *i == item_id) {
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
        });
        self.pacer.push(now, tag, audio);
    }

    /// The caller started speaking: stop the agent at once and tell the server what was heard.
    fn barge_in(&mut self) {
        let Some(item) = self.playing.take() else {
            return;
        };
        let received = self.pacer.received_bytes(item.tag);
        let flushed = self.pacer.flush();
        let played = self.pacer.played_bytes(item.tag);
        let was_cut = played < received;
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
        if self.response_active.is_some() && !self.interrupt_response && self.caps.cancels_responses
        {
            self.ws_out.push_back(ModelCommand::CancelResponse);
        }
        self.interrupted.push_back(item.id);
        if self.interrupted.len() > REMEMBERED_INTERRUPTED_ITEMS {
            self.interrupted.pop_front();
        }
    }

    /// The next function call the shell must run; answer it with [`Bridge::handle_tool_result`].
    pub fn poll_tool_request(&mut self) -> Option<ToolRequest> {
        self.tool_requests.pop_front()
    }

    /// The shell finished a function call: sends its output to the session and, once no call is
    /// outstanding and no response is in progress, asks for a response (never colliding with a
    /// response the caller's speech started: realtime-protocol.md §5.4, step 5).
    pub fn handle_tool_result(&mut self, call_id: &str, output: &str) {
        let Some(pos) = self.tools_in_flight.iter().position(|c| c == call_id) else {
            debug!(%call_id, "result for an unknown tool call ignored");
            return;
        };
        self.tools_in_flight.remove(pos);
        self.ws_out.push_back(ModelCommand::ToolResult {
            call_id: call_id.to_owned(),
            output: output.to_owned(),
        });
        self.response_wanted = true;
        self.maybe_request_response();
    }

    fn maybe_request_response(&mut self) {
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
    pub fn poll_ws(&mut self) -> Option<ModelCommand> {
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
    pub fn ws_written(&mut self, now: Instant) {
        for arrived in self.appends_handed.drain(..) {
            self.latency.record(now.saturating_duration_since(arrived));
        }
    }

    /// The next RTP packet due at `now`. Right after a caller packet ([`Bridge::handle_rtp`]),
    /// one packet due within [`RTP_AHEAD`] leaves at once, so the shell's wake-up for the
    /// caller's packet also sends ours (one wake-up per 20 ms instead of two; the schedule keeps
    /// its absolute due times, and continuous silence locks its phase just after the caller's
    /// packets, see [`PlayoutPacer::poll_transmit_ahead`]).
    pub fn poll_rtp(&mut self, now: Instant) -> Option<Transmit> {
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

    /// When to call [`Bridge::handle_timeout`] / [`Bridge::poll_rtp`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.pacer.poll_timeout(),
            self.inbound.poll_timeout(),
            self.dtmf.as_ref().and_then(DtmfReceiver::poll_timeout),
            self.rtcp.poll_timeout(),
            self.rtp_timeout.map(|t| self.last_rtp + t),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Responses the server has finished (`response.done`, any status).
    pub fn responses_done(&self) -> u64 {
        self.responses_done
    }

    /// True when no response is in progress and all model audio has been sent as RTP.
    pub fn playout_idle(&self) -> bool {
        self.response_active.is_none() && self.pacer.queued_bytes() == 0
    }

    /// Whether a response is in progress (created, not yet done).
    pub fn response_in_progress(&self) -> bool {
        self.response_active.is_some()
    }

    /// Changes the RTP silence timeout (e.g. `None` while the call is on hold) and restarts its
    /// clock at `now`.
    pub fn set_rtp_timeout(&mut self, now: Instant, timeout: Option<Duration>) {
        self.rtp_timeout = timeout;
        self.last_rtp = now;
    }

    /// A re-INVITE/UPDATE switched the call to the other G.711 law: rebuilds the jitter buffer,
    /// the DTMF receiver and the pacer (same SSRC, continuing sequence numbers; queued model
    /// audio in the old law is dropped) and queues a `session.update` with the new audio format.
    pub fn change_codec(
        &mut self,
        now: Instant,
        law: Law,
        payload_type: u8,
        telephone_event_pt: Option<u8>,
        settings: &SessionSettings,
    ) {
        let seq = self.pacer.next_sequence();
        let ssrc = self.pacer.ssrc();
        self.inbound = JitterBuffer::new(law, payload_type, now);
        self.dtmf = telephone_event_pt.map(DtmfReceiver::new);
        self.pacer = PlayoutPacer::new(
            law,
            payload_type,
            ssrc,
            seq,
            u32::from(seq).wrapping_mul(160),
            now,
        );
        self.pacer.set_send_silence(self.send_silence);
        self.playing = None;
        let mut settings = settings.clone();
        settings.law = law;
        self.ws_out
            .push_back(ModelCommand::Configure(Box::new(settings)));
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

    fn bridge(t0: Instant, dialect: Dialect) -> Bridge {
        let media = MediaParams {
            law: Law::Mu,
            payload_type: 0,
            ssrc: 7,
            first_seq: 100,
            first_ts: 1000,
            telephone_event_pt: Some(101),
            rtp_timeout: Some(Duration::from_secs(30)),
            send_silence: false,
        };
        Bridge::new(t0, &media, dialect.capabilities(), true)
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
            assert!(matches!(b.handle_rtp(now, &pkt), RtpOutcome::Rtp(_)));
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
        assert_eq!(b.handle_rtp(t0, b"not rtp"), RtpOutcome::Invalid);
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
        server(&mut b, 
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
        server(&mut b, 
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
        server(&mut b, 
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
    fn histogram_percentiles_are_nearest_rank_bucket_upper_edges() {
        let mut h = LatencyHistogram::new();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.percentiles(), Percentiles::default());
        // 1..=100 × 0.1 ms: p50 is the 50th sample (5.0 ms), p99 the 99th (9.9 ms).
        for i in 1..=100u64 {
            h.record(Duration::from_micros(100 * i));
        }
        let p = h.percentiles();
        assert_eq!(p.samples, 100);
        // 5.0 ms falls in the fine bucket [5.00, 5.05): reported as its upper edge.
        assert!((p.p50_ms - 5.05).abs() < 1e-9, "{p:?}");
        assert!((p.p99_ms - 9.95).abs() < 1e-9, "{p:?}");
        assert!((p.max_ms - 10.0).abs() < 1e-9, "{p:?}");
        // The 100th sample (10.0 ms) is the first coarse bucket, capped at the largest sample.
        assert_eq!(h.quantile(1.0), Some(Duration::from_millis(10)));
        assert_eq!(h.quantile(0.07), Some(Duration::from_micros(750)));
    }

    #[test]
    fn histogram_bucket_edges_and_overflow() {
        // Fine buckets of 0.05 ms below 10 ms, coarse of 0.5 ms up to 500 ms, then overflow.
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(49_999), 0);
        assert_eq!(bucket_index(50_000), 1);
        assert_eq!(bucket_index(9_999_999), FINE_BUCKETS - 1);
        assert_eq!(bucket_index(10_000_000), FINE_BUCKETS);
        assert_eq!(bucket_index(10_499_999), FINE_BUCKETS);
        assert_eq!(bucket_index(499_999_999), HISTOGRAM_BUCKETS - 2);
        assert_eq!(bucket_index(500_000_000), HISTOGRAM_BUCKETS - 1);
        assert_eq!(bucket_index(u64::MAX), HISTOGRAM_BUCKETS - 1);
        for i in 0..HISTOGRAM_BUCKETS - 1 {
            let upper = bucket_upper_ns(i);
            assert_eq!(bucket_index(upper - 1), i, "bucket {i}");
            assert_eq!(bucket_index(upper), i + 1, "bucket {i}");
        }

        let mut h = LatencyHistogram::new();
        for _ in 0..98 {
            h.record(Duration::from_millis(30));
        }
        h.record(Duration::from_millis(700));
        h.record(Duration::from_secs(3));
        let p = h.percentiles();
        assert!((p.p50_ms - 30.5).abs() < 1e-9, "{p:?}");
        // The 99th sample is in the overflow bucket: reported as the largest sample.
        assert!((p.p99_ms - 3_000.0).abs() < 1e-9, "{p:?}");
        assert!((p.max_ms - 3_000.0).abs() < 1e-9, "{p:?}");
        // Counts saturate instead of wrapping.
        let mut h = LatencyHistogram::new();
        h.buckets[0] = u32::MAX;
        h.record(Duration::ZERO);
        assert_eq!(h.buckets[0], u32::MAX);
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
            b.handle_rtp(now, &pkt);
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
            b.handle_rtp(now, &pkt);
            write(&mut b, now);
        }
        // An append queued but not written yet is not counted.
        pkt.clear();
        crate::media::rtp::write_packet(&mut pkt, 0, false, 12, 1_760, 9, &[0x11; 160]);
        b.handle_rtp(t0 + Duration::from_millis(220), &pkt);
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
}
