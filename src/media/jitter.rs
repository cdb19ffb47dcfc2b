//! Adaptive jitter buffer: caller RTP in, exactly one 20 ms G.711 frame per 20 ms tick out.
//!
//! [`JitterBuffer`] owns the receive side of one call's audio: the current source (SSRC) and its
//! sequence state (RFC 3550 §A.1), the interarrival jitter estimate (RFC 3550 §6.4.1, §A.8), a fixed
//! ring of 20 ms slots, and the playout schedule. It replaces [`super::inbound::InboundAudio`]: the
//! Realtime session gets a continuous input clock, with the packets that arrived in time played in
//! media order and everything else replaced by the law's silence byte.
//!
//! # Model
//!
//! - **Output schedule.** The first audio packet, received at `t`, starts playout: tick `k` is due at
//!   exactly `t + 40 ms + k × 20 ms` and emits one [`Frame`] of 160 bytes (20 ms at 8 kHz,
//!   RFC 3551 §4.5.14) for as long as the call lasts, whether packets arrive or not. The schedule is
//!   absolute, so it never drifts; a shell that wakes up late gets the due frames back to back, and
//!   one that slept more than [`MAX_CATCH_UP_MS`] loses the older ones (counted in
//!   [`JitterStats::overflow_dropped`]).
//! - **Media position.** Each source's extended RTP timestamp (RFC 3550 §5.1, extended as in §A.1)
//!   maps linearly onto an internal position in samples; the *cursor* is the position of the next
//!   frame to emit. Packets are written byte by byte into the slots they cover, so any ptime
//!   (10, 20, 30 ms…) and any timestamp alignment is re-framed into 20 ms frames. A frame is
//!   concealed when no byte of it arrived; a frame with some bytes missing is played with silence
//!   in the gaps (counted in [`JitterStats::partial_frames`]).
//! - **Dispositions.** A packet whose audio lies wholly before the cursor is late (dropped). A
//!   sequence number already received (128-packet window) is a duplicate (dropped). A packet
//!   arriving after a higher sequence number is counted as reordered and played if still in time.
//! - **Depth.** The depth is the playout delay of the fastest recent packets: how long before its
//!   tick a packet arrives, measured as the largest headroom (tick time − arrival time) over the
//!   last 0.5–1 s of packets. Its target is `3 × J` rounded up to whole frames, where J is the
//!   RFC 3550 §A.8 interarrival jitter, kept within [`MIN_DEPTH_MS`] and [`MAX_DEPTH_MS`] − 20 ms
//!   ([`INITIAL_DEPTH_MS`] until [`WARMUP_PACKETS`] packets have been seen). The depth is steered
//!   into `[target, target + 20 ms)`, hence 20–120 ms: below the target, one silence frame is
//!   inserted without advancing the cursor (at most one per tick); a frame or more above it for
//!   [`SHRINK_HOLD_MS`], one frame is skipped, preferably a quiet one (mean level below about
//!   −40 dBFS), after [`SHRINK_FORCE_MS`] whatever frame is next, but never a missing one (missing
//!   frames are always concealed, so concealed − inserted frames = lost + late packets for a
//!   ptime-20 stream).
//! - **Bound.** Audio held ahead of the cursor never exceeds [`MAX_BUFFERED_MS`] (120 ms + one
//!   frame): a packet that would end beyond it makes the oldest frames be dropped (counted in
//!   [`JitterStats::overflow_dropped`]). The ring is allocated once; pushing and polling never
//!   allocate.
//! - **Resynchronisation** (a new mapping that plays the packet the target depth after the cursor,
//!   or after any audio still buffered if that is later): the first packet, an SSRC change (RFC 3550 §8, a
//!   re-INVITE or transfer), a sequence restart confirmed by two consecutive packets (RFC 3550 §A.1,
//!   `MAX_DROPOUT`/`MAX_MISORDER`), an in-sequence packet more than [`MAX_BUFFERED_MS`] ahead of the
//!   cursor or more than [`RESYNC_BEHIND_MS`] behind it (a timestamp jump), a late packet carrying the
//!   marker bit (a talkspurt whose timestamps did not advance over the pause, RFC 3551 §4.1), or
//!   [`LATE_RUN_RESYNC`] late packets in a row. Packets of the source switched away from are
//!   dropped while the new one is active (it sent within the last [`SOURCE_HOLD_MS`]).
//!
//! Other payload types (telephone-event, comfort noise) are ignored but, on the current SSRC, keep
//! the sequence state (they share its sequence space). [`JitterBuffer::receiver_report`] exposes
//! the RFC 3550 §6.4.1 / §A.3 report-block fields for RTCP.
//!
//! # Driving it (drain rule)
//!
//! After [`JitterBuffer::push`] and whenever [`JitterBuffer::poll_timeout`] passes, call
//! [`JitterBuffer::poll_frame`] with the current time until it returns `None`; then sleep until
//! `poll_timeout`. Time that goes backwards is ignored; early polls return `None`.
//!
//! # Differences from `InboundAudio`
//!
//! [`Frame::audio`] is a `[u8; 160]` (always exactly 20 ms) instead of a `Vec<u8>` of the packet's
//! length; `poll_frame` takes `now` and there is no `handle_timeout` (frames are produced on poll);
//! [`Disposition::Buffered`] replaces `Accepted { concealed_frames }` (concealment happens at
//! playout time), and [`Disposition::Stray`] / [`Disposition::StaleSource`] are new.
//!
//! No I/O: no sockets, no clock reads, no tokio.

use std::time::{Duration, Instant};

use super::g711::{Law, FRAME_BYTES, FRAME_MS};
use super::rtp::{extend_seq, extend_ts, RtpHeaderView};

/// Smallest playout depth, in ms (one frame): the lowest target.
pub const MIN_DEPTH_MS: u64 = 20;
/// Largest playout depth, in ms: the depth is kept below it (the highest target is one frame less).
pub const MAX_DEPTH_MS: u64 = 120;
/// Playout depth, in ms, of the first packet, and the target until the jitter estimate has
/// [`WARMUP_PACKETS`] packets behind it.
pub const INITIAL_DEPTH_MS: u64 = 40;
/// Most audio held ahead of the playout cursor, in ms: [`MAX_DEPTH_MS`] plus one 20 ms frame.
pub const MAX_BUFFERED_MS: u64 = MAX_DEPTH_MS + FRAME_MS;
/// The target depth is this many times the RFC 3550 §A.8 interarrival jitter (rounded up to frames).
pub const JITTER_DEPTH_FACTOR: u64 = 3;
/// Audio packets of a source before the jitter estimate drives the target depth (about 1 s).
pub const WARMUP_PACKETS: u64 = 50;
/// RFC 3550 §A.1 `MAX_DROPOUT`: largest forward sequence jump accepted as in-order, in packets.
pub const MAX_DROPOUT: u64 = 3_000;
/// RFC 3550 §A.1 `MAX_MISORDER`: largest backward sequence distance accepted as reordering.
pub const MAX_MISORDER: u64 = 100;
/// An in-sequence packet more than this far (ms of media) behind the cursor is a timestamp jump.
pub const RESYNC_BEHIND_MS: u64 = 1_000;
/// This many late audio packets in a row resynchronise the stream.
pub const LATE_RUN_RESYNC: u32 = 25;
/// A shell this late (ms) gets only the frames of the last second; older ones are dropped.
pub const MAX_CATCH_UP_MS: u64 = 1_000;
/// How long (ms) the measured depth must stay one frame above target before a frame is skipped.
pub const SHRINK_HOLD_MS: u64 = 500;
/// After this long (ms) above target, a frame is skipped even if it is not quiet.
pub const SHRINK_FORCE_MS: u64 = 2_000;
/// Packets of the previous SSRC are dropped while the current one sent within this many ms.
pub const SOURCE_HOLD_MS: u64 = 200;

/// Samples (= bytes, = RTP timestamp units) per 20 ms frame at 8 kHz.
const FRAME_SAMPLES: i64 = FRAME_BYTES as i64;
const SAMPLES_PER_MS: i64 = 8;
const MAX_BUFFERED_SAMPLES: i64 = MAX_BUFFERED_MS as i64 * SAMPLES_PER_MS;
const RESYNC_BEHIND_SAMPLES: i64 = RESYNC_BEHIND_MS as i64 * SAMPLES_PER_MS;
/// Slots in the ring: the 7 frames of [`MAX_BUFFERED_MS`] plus one.
const RING: usize = 8;
/// Window over which the measured depth is the maximum headroom: two halves of 25 ticks (0.5 s).
const WINDOW_TICKS: u64 = 25;
const SHRINK_HOLD_TICKS: u64 = SHRINK_HOLD_MS / FRAME_MS;
const SHRINK_FORCE_TICKS: u64 = SHRINK_FORCE_MS / FRAME_MS;
/// Mean absolute linear sample below which a frame is quiet enough to skip (≈ −40 dBFS).
const QUIET_MEAN_ABS: u64 = 330;
const SEQ_WINDOW: u64 = 128;
const FRAME: Duration = Duration::from_millis(FRAME_MS);
const NO_FRAME: i64 = i64::MIN;

/// One 20 ms frame for the model: 160 bytes of the call's G.711 law (8 kHz, one byte per sample).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The audio: caller audio in media order, or the law's silence byte where none arrived.
    pub audio: [u8; FRAME_BYTES],
    /// True when no byte of this frame came from the caller (loss, late packet, pause, or a frame
    /// inserted to grow the depth).
    pub concealed: bool,
    /// When the packet that filled this frame arrived (the `now` given to
    /// [`JitterBuffer::push`]): for ptime 20 the frame's own packet; when several packets share a
    /// frame (ptime 10, unaligned timestamps), the last one that wrote into it. `None` for a
    /// concealed frame. `poll_frame`'s `now` minus this is the time the audio waited in the buffer.
    pub arrived: Option<Instant>,
}

/// Why a packet started a new mapping of media time onto the playout schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncReason {
    /// The first audio packet of the call.
    FirstPacket,
    /// A new SSRC (RFC 3550 §8): re-INVITE, transfer, media server change.
    SsrcChange,
    /// The sequence number restarted (two consecutive packets far from the old sequence, §A.1).
    SequenceRestart,
    /// An in-sequence packet's timestamp is far ahead of or behind the playout position.
    TimestampJump,
    /// A late packet with the marker bit, or [`LATE_RUN_RESYNC`] late packets in a row: the sender's
    /// timestamps fell behind real time (e.g. not advanced across a pause).
    LateStream,
}

/// What [`JitterBuffer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The audio was stored for playout (possibly only its part still ahead of the cursor).
    Buffered,
    /// The audio was stored as the start of a new mapping.
    Resynchronised(ResyncReason),
    /// Dropped: its whole audio lies before the playout cursor (too late to play).
    Late,
    /// Dropped: this sequence number was already received.
    Duplicate,
    /// Dropped: the sequence number is far outside the current sequence (RFC 3550 §A.1 probation);
    /// a second consecutive one restarts the sequence.
    Stray,
    /// Dropped: from the SSRC the buffer switched away from, while the new one is active.
    StaleSource,
    /// Ignored: not the negotiated audio payload type (telephone-event, comfort noise…).
    OtherPayloadType,
    /// Ignored: the audio payload is empty.
    Empty,
}

/// Counters and gauges of one call's caller audio.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JitterStats {
    /// RTP packets given to [`JitterBuffer::push`], any payload type.
    pub received: u64,
    /// Frames handed out by [`JitterBuffer::poll_frame`], concealed ones included.
    pub emitted_frames: u64,
    /// Frames handed out with no caller audio (`concealed == true`), inserted ones included.
    pub concealed_frames: u64,
    /// Frames with some caller audio and some silence (ptime 10/30 with a piece missing).
    pub partial_frames: u64,
    /// Packets never received: expected (from sequence numbers) minus distinct packets received,
    /// summed over sources (RFC 3550 §6.4.1 "cumulative number of packets lost", duplicates excluded).
    pub lost: u64,
    /// Audio packets dropped as too late to play.
    pub late: u64,
    /// Packets dropped as duplicates.
    pub duplicates: u64,
    /// Packets that arrived after a higher sequence number (played if still in time).
    pub reordered: u64,
    /// Packets dropped by sequence probation (RFC 3550 §A.1).
    pub strays: u64,
    /// Packets dropped because they came from the previous SSRC.
    pub stale_source: u64,
    /// Packets ignored for their payload type.
    pub other_payload_types: u64,
    /// Audio packets ignored for an empty payload.
    pub empty_payloads: u64,
    /// SSRC changes.
    pub ssrc_changes: u64,
    /// Resynchronisations other than the first packet and SSRC changes.
    pub resyncs: u64,
    /// Silence frames inserted to grow the depth (included in `concealed_frames`).
    pub inserted_frames: u64,
    /// Frames of caller audio skipped to shrink the depth.
    pub skipped_frames: u64,
    /// Frame positions dropped at the bound ([`MAX_BUFFERED_MS`]) or after a shell stall
    /// ([`MAX_CATCH_UP_MS`]).
    pub overflow_dropped: u64,
    /// RFC 3550 §A.8 interarrival jitter of the current source, in ms.
    pub jitter_ms: f64,
    /// Current playout depth, in ms: how long before its tick the fastest recent packets arrived
    /// (the target when no packet arrived in the last second). Kept within
    /// `[target_depth_ms, target_depth_ms + 20)`, so within 20–120 ms.
    pub depth_ms: u64,
    /// Largest `depth_ms` so far.
    pub max_depth_ms: u64,
    /// Current target depth, in ms: `3 × jitter` rounded up to frames, within 20–100 ms.
    pub target_depth_ms: u64,
    /// Caller audio held ahead of the playout cursor right now, in ms (≤ [`MAX_BUFFERED_MS`]).
    pub buffered_ms: u64,
    /// Largest `buffered_ms` so far.
    pub max_buffered_ms: u64,
}

/// The fields of an RTCP reception report block about the caller's stream (RFC 3550 §6.4.1),
/// computed as in RFC 3550 §A.3 and §A.8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverReportFields {
    /// SSRC of the source these fields describe (SSRC_n).
    pub ssrc: u32,
    /// Extended highest sequence number received: cycles × 2^16 + highest sequence (§A.1).
    pub extended_highest_seq: u32,
    /// Cumulative packets lost: expected − received, duplicates counted as received, clamped to the
    /// 24-bit signed range (may be negative).
    pub cumulative_lost: i32,
    /// Packets expected so far: extended highest − base sequence + 1 (§A.3).
    pub expected: u64,
    /// Packets received so far, late ones and duplicates included (§A.3).
    pub received: u64,
    /// Interarrival jitter in RTP timestamp units (8 kHz samples), as in §A.8 (`jitter >> 4`).
    pub jitter: u32,
}

impl ReceiverReportFields {
    /// The 8-bit "fraction lost" (RFC 3550 §6.4.1, §A.3) over the interval since `prior`, the fields
    /// sent in the previous report: lost in the interval × 256 / expected in the interval, 0 when
    /// nothing was lost (or duplicates outnumber losses). With no usable `prior` (none, another
    /// SSRC, or counters that went backwards after a sequence restart) the interval is the whole
    /// stream.
    pub fn fraction_lost_since(&self, prior: Option<&ReceiverReportFields>) -> u8 {
        let (expected_prior, received_prior) = match prior {
            Some(p)
                if p.ssrc == self.ssrc
                    && p.expected <= self.expected
                    && p.received <= self.received =>
            {
                (p.expected, p.received)
            }
            _ => (0, 0),
        };
        let expected = self.expected - expected_prior;
        let received = self.received - received_prior;
        if expected == 0 || received >= expected {
            return 0;
        }
        let lost = expected - received;
        u8::try_from((lost << 8) / expected).unwrap_or(u8::MAX)
    }
}

/// What the sequence number of a packet says about it (RFC 3550 §A.1 `update_seq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeqVerdict {
    /// Above the highest so far, by less than [`MAX_DROPOUT`].
    New,
    /// Below the highest, within [`MAX_MISORDER`], not received before.
    Reordered,
    /// Already received.
    Duplicate,
    /// Far from the sequence: dropped until a second consecutive one confirms a restart.
    Stray,
    /// Second consecutive far packet: the sequence restarted here.
    Restart,
}

#[derive(Debug, Clone, Copy)]
struct SeqState {
    /// Extended sequence number of the first packet (§A.1 `base_seq`), starting at `1 << 16 | seq`.
    base: u64,
    /// Highest extended sequence number received.
    highest: u64,
    /// Bit `i` set: `highest − i` was received.
    window: u128,
    /// §A.1 `bad_seq`: the sequence number that would confirm a restart.
    bad_seq: Option<u16>,
    /// §A.3 `received`: packets counted, duplicates included.
    received: u64,
    /// Distinct packets received.
    unique: u64,
    /// Packets lost before the last sequence restart.
    carried_lost: u64,
}

impl SeqState {
    fn new(seq: u16) -> Self {
        let base = 1 << 16 | u64::from(seq);
        SeqState {
            base,
            highest: base,
            window: 1,
            bad_seq: None,
            received: 1,
            unique: 1,
            carried_lost: 0,
        }
    }

    fn update(&mut self, seq: u16) -> SeqVerdict {
        let ext = extend_seq(self.highest, seq);
        if ext > self.highest {
            let d = ext - self.highest;
            if d < MAX_DROPOUT {
                self.window = if d >= SEQ_WINDOW { 0 } else { self.window << d };
                self.window |= 1;
                self.highest = ext;
                self.bad_seq = None;
                self.received += 1;
                self.unique += 1;
                return SeqVerdict::New;
            }
        } else {
            let back = self.highest - ext;
            if back <= MAX_MISORDER {
                self.received += 1;
                if back < SEQ_WINDOW {
                    let bit = 1u128 << back;
                    if self.window & bit != 0 {
                        return SeqVerdict::Duplicate;
                    }
                    self.window |= bit;
                }
                self.unique += 1;
                return SeqVerdict::Reordered;
            }
        }
        if self.bad_seq == Some(seq) {
            let carried_lost = self.lost();
            *self = SeqState {
                carried_lost,
                ..SeqState::new(seq)
            };
            return SeqVerdict::Restart;
        }
        self.bad_seq = Some(seq.wrapping_add(1));
        SeqVerdict::Stray
    }

    fn expected(&self) -> u64 {
        self.highest - self.base + 1
    }

    /// Distinct packets never received, over every sequence epoch of this source.
    fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.unique) + self.carried_lost
    }
}

/// One caller source (SSRC) and the mapping of its media clock onto the playout position.
#[derive(Debug, Clone, Copy)]
struct Source {
    ssrc: u32,
    seq: SeqState,
    /// Highest extended RTP timestamp seen (reference for extending the next one).
    highest_ts: u64,
    /// Extended RTP timestamp that maps to `base_pos`.
    base_ts: u64,
    /// Playout position (samples) of `base_ts`.
    base_pos: i64,
    /// §A.8 jitter × 16, in samples.
    jitter_q4: i64,
    /// §A.8 relative transit time of the previous audio packet, in samples.
    last_transit: Option<i64>,
    /// Audio packets seen since the source started (for [`WARMUP_PACKETS`]).
    audio_packets: u64,
    /// Consecutive late audio packets.
    late_run: u32,
    /// When the source last sent an audio packet.
    last_arrival: Instant,
}

impl Source {
    fn new(now: Instant, packet: &RtpHeaderView<'_>) -> Self {
        let ts = 1 << 32 | u64::from(packet.timestamp);
        Source {
            ssrc: packet.ssrc,
            seq: SeqState::new(packet.sequence),
            highest_ts: ts,
            base_ts: ts,
            base_pos: 0,
            jitter_q4: 0,
            last_transit: None,
            audio_packets: 0,
            late_run: 0,
            last_arrival: now,
        }
    }

    fn position(&self, ext_ts: u64) -> i64 {
        // Extended timestamps stay far below 2^63; the difference is a signed sample count.
        self.base_pos + (ext_ts as i64 - self.base_ts as i64)
    }

    fn jitter_samples(&self) -> u64 {
        (self.jitter_q4 >> 4).max(0).unsigned_abs()
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Playout frame index held, or [`NO_FRAME`].
    frame: i64,
    /// Bytes of caller audio written (0–160).
    filled: u16,
    /// Arrival of the last packet that wrote into this slot.
    arrived: Option<Instant>,
    audio: [u8; FRAME_BYTES],
}

#[derive(Debug, Clone, Copy)]
struct Playout {
    /// When tick 0 was due.
    start: Instant,
    /// `start` in samples since the buffer's epoch.
    start_units: i64,
    /// Ticks handed out (or dropped by a stall); the next tick is due at `start + ticks × 20 ms`.
    ticks: u64,
    /// Frame index of the playout position emitted at the next tick (position / 160).
    cursor: i64,
    /// Position just after the furthest caller audio written.
    buffered_end: i64,
    /// Largest headroom (tick due − arrival, in samples) of packets in the current and previous
    /// halves of the measuring window.
    window: [Option<i64>; 2],
    /// `ticks / WINDOW_TICKS` when `window[0]` was opened.
    window_epoch: u64,
    /// Tick at which the depth was first seen one frame above target, while it stays there.
    shrink_since: Option<u64>,
}

impl Playout {
    fn measured(&self) -> Option<i64> {
        match self.window {
            [Some(a), Some(b)] => Some(a.max(b)),
            [a, b] => a.or(b),
        }
    }

    fn record(&mut self, headroom: i64) {
        self.window[0] = Some(self.window[0].map_or(headroom, |m| m.max(headroom)));
    }

    /// Every recorded headroom changes by `delta` samples when the schedule shifts.
    fn shift_window(&mut self, delta: i64) {
        for w in self.window.iter_mut().flatten() {
            *w += delta;
        }
    }

    /// Drops `n` frame positions at the cursor (their ticks keep their due times).
    fn skip(&mut self, n: i64) {
        self.cursor += n;
        self.shift_window(-n * FRAME_SAMPLES);
    }

    /// Samples from the epoch to when frame `frame` is due (assuming no insert or skip before it).
    fn due_units(&self, frame: i64) -> i64 {
        // ticks counts 20 ms frames of a call: far below 2^63.
        self.start_units + (self.ticks as i64 + frame - self.cursor) * FRAME_SAMPLES
    }
}

enum Adjust {
    Keep,
    Grow,
    Shrink,
}

/// The adaptive jitter buffer of one call's caller audio. See the module docs.
#[derive(Debug)]
pub struct JitterBuffer {
    law: Law,
    payload_type: u8,
    epoch: Instant,
    last_now: Instant,
    source: Option<Source>,
    previous_ssrc: Option<u32>,
    /// Packets lost by sources no longer current.
    lost_before: u64,
    playout: Option<Playout>,
    slots: Box<[Slot; RING]>,
    stats: JitterStats,
}

impl JitterBuffer {
    /// Creates the buffer for audio of `law` carried with the negotiated `payload_type` (0 PCMU /
    /// 8 PCMA, RFC 3551 table 4, or a dynamic type). `now` is the earliest time it will accept.
    ///
    /// Allocates its ring of slots here, once.
    pub fn new(law: Law, payload_type: u8, now: Instant) -> Self {
        let empty = Slot {
            frame: NO_FRAME,
            filled: 0,
            arrived: None,
            audio: [law.silence_byte(); FRAME_BYTES],
        };
        JitterBuffer {
            law,
            payload_type,
            epoch: now,
            last_now: now,
            source: None,
            previous_ssrc: None,
            lost_before: 0,
            playout: None,
            slots: Box::new([empty; RING]),
            stats: JitterStats {
                depth_ms: INITIAL_DEPTH_MS,
                max_depth_ms: INITIAL_DEPTH_MS,
                target_depth_ms: INITIAL_DEPTH_MS,
                ..JitterStats::default()
            },
        }
    }

    /// Takes one parsed RTP packet (RFC 3550 §5.1) received at `now` and stores its audio for
    /// playout, or drops it; see the module docs for the rules. Never allocates.
    pub fn push(&mut self, now: Instant, packet: &RtpHeaderView<'_>) -> Disposition {
        let now = self.clamp(now);
        self.stats.received += 1;
        if packet.payload_type != self.payload_type || packet.payload.is_empty() {
            if let Some(s) = self.source.as_mut().filter(|s| s.ssrc == packet.ssrc) {
                s.seq.update(packet.sequence);
            }
            return if packet.payload_type != self.payload_type {
                self.stats.other_payload_types += 1;
                Disposition::OtherPayloadType
            } else {
                self.stats.empty_payloads += 1;
                Disposition::Empty
            };
        }

        let hold = Duration::from_millis(SOURCE_HOLD_MS);
        let reason = match &self.source {
            None => Some(ResyncReason::FirstPacket),
            Some(s) if s.ssrc == packet.ssrc => None,
            Some(s) => {
                if self.previous_ssrc == Some(packet.ssrc) && now - s.last_arrival < hold {
                    self.stats.stale_source += 1;
                    return Disposition::StaleSource;
                }
                Some(ResyncReason::SsrcChange)
            }
        };
        if let Some(reason) = reason {
            if let Some(old) = self.source.take() {
                self.lost_before += old.seq.lost();
                self.previous_ssrc = Some(old.ssrc);
                self.stats.ssrc_changes += 1;
            }
            self.source = Some(Source::new(now, packet));
            return self.resync(now, packet, reason);
        }

        let arrival = units(self.epoch, now);
        let Some(s) = self.source.as_mut() else {
            return Disposition::Empty; // unreachable: the source matched above
        };
        let verdict = s.seq.update(packet.sequence);
        match verdict {
            SeqVerdict::Duplicate => {
                self.stats.duplicates += 1;
                return Disposition::Duplicate;
            }
            SeqVerdict::Stray => {
                self.stats.strays += 1;
                return Disposition::Stray;
            }
            SeqVerdict::Restart => {
                self.stats.resyncs += 1;
                return self.resync(now, packet, ResyncReason::SequenceRestart);
            }
            SeqVerdict::Reordered => self.stats.reordered += 1,
            SeqVerdict::New => {}
        }
        let ext_ts = extend_ts(s.highest_ts, packet.timestamp);
        let pos = s.position(ext_ts);
        let in_sequence = verdict == SeqVerdict::New;
        let Some(pl) = self.playout.as_mut() else {
            return self.resync(now, packet, ResyncReason::FirstPacket); // unreachable
        };
        let cursor_pos = pl.cursor * FRAME_SAMPLES;
        let late = pos + packet.payload.len() as i64 <= cursor_pos;
        let jump = in_sequence
            && (pos > cursor_pos + MAX_BUFFERED_SAMPLES
                || (late && cursor_pos - pos > RESYNC_BEHIND_SAMPLES));
        let late_stream =
            in_sequence && late && (packet.marker || s.late_run + 1 >= LATE_RUN_RESYNC);
        if jump || late_stream {
            self.stats.resyncs += 1;
            let reason = if jump {
                ResyncReason::TimestampJump
            } else {
                ResyncReason::LateStream
            };
            return self.resync(now, packet, reason);
        }

        s.highest_ts = s.highest_ts.max(ext_ts);
        s.last_arrival = now;
        s.audio_packets += 1;
        // RFC 3550 §A.8: J += (|D(i-1, i)| − J) / 16, in timestamp units, kept × 16.
        let transit = arrival - ext_ts as i64;
        if let Some(prev) = s.last_transit {
            let d = (transit - prev).abs();
            s.jitter_q4 += d - ((s.jitter_q4 + 8) >> 4);
        }
        s.last_transit = Some(transit);
        if late {
            s.late_run += 1;
            pl.record(pl.due_units(pos.div_euclid(FRAME_SAMPLES)) - arrival);
            self.stats.late += 1;
            return Disposition::Late;
        }
        s.late_run = 0;
        self.store(now, arrival, pos, packet.payload);
        Disposition::Buffered
    }

    /// The next frame if one is due at `now`, else `None`. Call until `None` after every
    /// [`push`](Self::push) and whenever [`poll_timeout`](Self::poll_timeout) has passed: tick `k`
    /// is due at `start + k × 20 ms`, and a late caller gets the due frames back to back (only
    /// those of the last [`MAX_CATCH_UP_MS`]). Never allocates.
    pub fn poll_frame(&mut self, now: Instant) -> Option<Frame> {
        let now = self.clamp(now);
        let target = self.target_samples();
        let pl = self.playout.as_mut()?;
        let due = pl.start + frames(pl.ticks);
        if now < due {
            return None;
        }
        let lateness = now - due;
        let catch_up = Duration::from_millis(MAX_CATCH_UP_MS);
        if lateness > catch_up {
            let n = (lateness - catch_up).as_nanos().div_ceil(FRAME.as_nanos());
            let n = u64::try_from(n).unwrap_or(u64::MAX / 2);
            pl.ticks += n;
            pl.cursor += n as i64;
            self.stats.overflow_dropped += n;
        }
        let epoch = pl.ticks / WINDOW_TICKS;
        if epoch != pl.window_epoch {
            pl.window = if epoch == pl.window_epoch + 1 {
                [None, pl.window[0]]
            } else {
                [None, None]
            };
            pl.window_epoch = epoch;
        }

        let adjust = decide(pl, &self.slots, self.law, target as i64);
        self.stats.target_depth_ms = target / SAMPLES_PER_MS as u64;
        pl.ticks += 1;
        self.stats.emitted_frames += 1;
        match adjust {
            Adjust::Grow => pl.shift_window(FRAME_SAMPLES),
            Adjust::Shrink => pl.skip(1),
            Adjust::Keep => {}
        }
        if let Some(h) = pl.measured() {
            let depth = h.max(0).unsigned_abs() / SAMPLES_PER_MS as u64;
            self.stats.max_depth_ms = self.stats.max_depth_ms.max(depth);
        }
        match adjust {
            Adjust::Grow => {
                pl.shrink_since = None;
                self.stats.inserted_frames += 1;
                self.stats.concealed_frames += 1;
                return Some(Frame {
                    audio: [self.law.silence_byte(); FRAME_BYTES],
                    concealed: true,
                    arrived: None,
                });
            }
            Adjust::Shrink => {
                pl.shrink_since = None;
                self.stats.skipped_frames += 1;
            }
            Adjust::Keep => {}
        }
        let slot = &mut self.slots[ring_index(pl.cursor)];
        let frame = if slot.frame == pl.cursor && slot.filled > 0 {
            if usize::from(slot.filled) < FRAME_BYTES {
                self.stats.partial_frames += 1;
            }
            Frame {
                audio: slot.audio,
                concealed: false,
                arrived: slot.arrived,
            }
        } else {
            self.stats.concealed_frames += 1;
            Frame {
                audio: [self.law.silence_byte(); FRAME_BYTES],
                concealed: true,
                arrived: None,
            }
        };
        slot.frame = NO_FRAME;
        pl.cursor += 1;
        Some(frame)
    }

    /// When the next frame is due (possibly already past); `None` before the first audio packet.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.playout.as_ref().map(|p| p.start + frames(p.ticks))
    }

    /// Counters and gauges so far.
    pub fn stats(&self) -> JitterStats {
        let mut s = self.stats;
        s.lost = self.lost_before + self.source.as_ref().map_or(0, |src| src.seq.lost());
        s.jitter_ms = self.source.as_ref().map_or(0.0, |src| {
            (src.jitter_q4 as f64 / 16.0) / SAMPLES_PER_MS as f64
        });
        s.buffered_ms = self.buffered_samples().unsigned_abs() / SAMPLES_PER_MS as u64;
        s.depth_ms = self
            .playout
            .as_ref()
            .and_then(Playout::measured)
            .map_or(s.target_depth_ms, |h| {
                h.max(0).unsigned_abs() / SAMPLES_PER_MS as u64
            });
        s
    }

    /// Caller audio held ahead of the playout cursor, in ms (never above [`MAX_BUFFERED_MS`]).
    pub fn buffered_ms(&self) -> u64 {
        self.buffered_samples().unsigned_abs() / SAMPLES_PER_MS as u64
    }

    /// The RFC 3550 §6.4.1 report-block fields about the current source, once an audio packet has
    /// arrived. Compute "fraction lost" with [`ReceiverReportFields::fraction_lost_since`] against
    /// the fields of the previous report.
    pub fn receiver_report(&self) -> Option<ReceiverReportFields> {
        let s = self.source.as_ref()?;
        let expected = s.seq.expected();
        let lost = expected as i64 - s.seq.received as i64;
        Some(ReceiverReportFields {
            ssrc: s.ssrc,
            // RFC 3550 §A.1: cycles × 2^16 + max_seq, carried modulo 2^32.
            extended_highest_seq: (s.seq.highest - (1 << 16)) as u32,
            cumulative_lost: lost.clamp(-0x80_0000, 0x7F_FFFF) as i32,
            expected,
            received: s.seq.received,
            jitter: u32::try_from(s.jitter_samples()).unwrap_or(u32::MAX),
        })
    }

    /// The SSRC of the current source (RFC 3550 §8), once an audio packet has arrived.
    pub fn ssrc(&self) -> Option<u32> {
        self.source.as_ref().map(|s| s.ssrc)
    }

    fn clamp(&mut self, now: Instant) -> Instant {
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    fn buffered_samples(&self) -> i64 {
        self.playout
            .as_ref()
            .map_or(0, |p| (p.buffered_end - p.cursor * FRAME_SAMPLES).max(0))
    }

    /// The target depth in samples: `JITTER_DEPTH_FACTOR × J` rounded up to whole frames, within
    /// `MIN_DEPTH_MS..=MAX_DEPTH_MS − 20`, or `INITIAL_DEPTH_MS` during warm-up. The depth is kept
    /// in `[target, target + 20 ms)`.
    fn target_samples(&self) -> u64 {
        let min = MIN_DEPTH_MS * SAMPLES_PER_MS as u64;
        let max = (MAX_DEPTH_MS - FRAME_MS) * SAMPLES_PER_MS as u64;
        match &self.source {
            Some(s) if s.audio_packets >= WARMUP_PACKETS => {
                let frame = FRAME_SAMPLES as u64;
                let t = (JITTER_DEPTH_FACTOR * s.jitter_samples()).div_ceil(frame) * frame;
                t.clamp(min, max)
            }
            _ => INITIAL_DEPTH_MS * SAMPLES_PER_MS as u64,
        }
    }

    /// Maps the current source's media clock so that `packet` plays at least the target depth
    /// after the cursor and after any audio still buffered, then stores it.
    fn resync(
        &mut self,
        now: Instant,
        packet: &RtpHeaderView<'_>,
        reason: ResyncReason,
    ) -> Disposition {
        let target = self.target_samples() as i64;
        let arrival = units(self.epoch, now);
        let Some(s) = self.source.as_mut() else {
            return Disposition::Empty; // unreachable: callers set the source first
        };
        let ext_ts = extend_ts(s.highest_ts, packet.timestamp);
        s.highest_ts = ext_ts;
        s.last_transit = Some(arrival - ext_ts as i64);
        s.late_run = 0;
        s.last_arrival = now;
        s.audio_packets += 1;
        let fresh = self.playout.is_none();
        let pl = self.playout.get_or_insert_with(|| {
            let start = now + Duration::from_millis(INITIAL_DEPTH_MS);
            Playout {
                start,
                start_units: units(self.epoch, start),
                ticks: 0,
                cursor: 0,
                buffered_end: 0,
                window: [None, None],
                window_epoch: 0,
                shrink_since: None,
            }
        });
        let first = if fresh {
            0
        } else {
            let after_buffered = pl.buffered_end.max(pl.cursor * FRAME_SAMPLES);
            (pl.cursor + target / FRAME_SAMPLES).max(ceil_frames(after_buffered))
        };
        s.base_ts = ext_ts;
        s.base_pos = first * FRAME_SAMPLES;
        pl.window = [None, None];
        pl.shrink_since = None;
        self.store(now, arrival, first * FRAME_SAMPLES, packet.payload);
        Disposition::Resynchronised(reason)
    }

    /// Writes `payload` at playout position `pos` (samples), dropping the part already played and,
    /// if it would end beyond the bound, the oldest frames; records the packet's headroom. `now` is
    /// the packet's arrival (`arrival` in samples since the epoch).
    fn store(&mut self, now: Instant, arrival: i64, pos: i64, payload: &[u8]) {
        let Some(pl) = self.playout.as_mut() else {
            return;
        };
        // A payload longer than the whole buffer keeps only its first MAX_BUFFERED_MS.
        let payload = &payload[..payload.len().min(MAX_BUFFERED_SAMPLES as usize)];
        let end = pos + payload.len() as i64;
        let limit = pl.cursor * FRAME_SAMPLES + MAX_BUFFERED_SAMPLES;
        if end > limit {
            let n = ceil_frames(end - limit);
            pl.skip(n);
            self.stats.overflow_dropped += n.unsigned_abs();
        }
        let first_frame = pos.div_euclid(FRAME_SAMPLES);
        pl.record(pl.due_units(first_frame) - arrival);
        let cursor_pos = pl.cursor * FRAME_SAMPLES;
        let (mut at, mut data) = if pos < cursor_pos {
            let cut = usize::try_from(cursor_pos - pos).unwrap_or(usize::MAX);
            (cursor_pos, payload.get(cut..).unwrap_or(&[]))
        } else {
            (pos, payload)
        };
        while !data.is_empty() {
            let frame = at.div_euclid(FRAME_SAMPLES);
            let offset = at.rem_euclid(FRAME_SAMPLES) as usize;
            let n = (FRAME_BYTES - offset).min(data.len());
            let slot = &mut self.slots[ring_index(frame)];
            if slot.frame != frame {
                slot.frame = frame;
                slot.filled = 0;
                slot.audio = [self.law.silence_byte(); FRAME_BYTES];
            }
            slot.audio[offset..offset + n].copy_from_slice(&data[..n]);
            slot.filled = (slot.filled + n as u16).min(FRAME_BYTES as u16);
            // `now` never goes backwards (clamped), so this is the latest contributing arrival.
            slot.arrived = Some(now);
            at += n as i64;
            data = &data[n..];
        }
        pl.buffered_end = pl.buffered_end.max(end);
        let buffered = (pl.buffered_end - pl.cursor * FRAME_SAMPLES).max(0);
        let buffered_ms = buffered.unsigned_abs() / SAMPLES_PER_MS as u64;
        self.stats.max_buffered_ms = self.stats.max_buffered_ms.max(buffered_ms);
    }
}

/// Whether to insert a frame, skip one, or play normally at this tick (see the module docs).
fn decide(pl: &mut Playout, slots: &[Slot; RING], law: Law, target: i64) -> Adjust {
    let Some(measured) = pl.measured() else {
        pl.shrink_since = None;
        return Adjust::Keep;
    };
    if measured < target {
        // Grow by playing one frame of silence, but only where it is not heard as a gap in
        // speech: when the frame due is missing or quiet, or when the buffer is starving (at most
        // one frame left), where concealment would happen anyway.
        let slot = &slots[ring_index(pl.cursor)];
        let present = slot.frame == pl.cursor && slot.filled > 0;
        if !present || quiet(law, slot) || measured <= FRAME_SAMPLES {
            return Adjust::Grow;
        }
        return Adjust::Keep;
    }
    if measured < target + FRAME_SAMPLES {
        pl.shrink_since = None;
        return Adjust::Keep;
    }
    let since = *pl.shrink_since.get_or_insert(pl.ticks);
    let waited = pl.ticks - since;
    let slot = &slots[ring_index(pl.cursor)];
    let present = slot.frame == pl.cursor && slot.filled > 0;
    if waited >= SHRINK_HOLD_TICKS && present && (waited >= SHRINK_FORCE_TICKS || quiet(law, slot))
    {
        Adjust::Shrink
    } else {
        Adjust::Keep
    }
}

/// Whether a slot's audio is quiet enough to drop unnoticed (mean |sample| below ≈ −40 dBFS).
fn quiet(law: Law, slot: &Slot) -> bool {
    let sum: u64 = slot
        .audio
        .iter()
        .map(|&b| u64::from(law.decode(b).unsigned_abs()))
        .sum();
    sum < QUIET_MEAN_ABS * FRAME_BYTES as u64
}

fn ring_index(frame: i64) -> usize {
    frame.rem_euclid(RING as i64) as usize
}

/// Whole frames needed to hold `samples` (rounded up).
fn ceil_frames(samples: i64) -> i64 {
    samples.div_euclid(FRAME_SAMPLES) + i64::from(samples.rem_euclid(FRAME_SAMPLES) != 0)
}

/// Samples (8 kHz, 125 µs each) from `epoch` to `t`, rounded down; 0 if `t` is earlier.
fn units(epoch: Instant, t: Instant) -> i64 {
    let ns = t.saturating_duration_since(epoch).as_nanos();
    i64::try_from(ns * 8 / 1_000_000).unwrap_or(i64::MAX)
}

/// Duration of `n` frames of 20 ms.
fn frames(n: u64) -> Duration {
    Duration::from_millis(FRAME_MS.saturating_mul(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const SSRC: u32 = 0x5EED_0001;

    fn ms(n: u64) -> Duration {
        MS * u32::try_from(n).expect("test durations fit in u32 ms")
    }

    fn view(seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> RtpHeaderView<'_> {
        RtpHeaderView {
            payload_type: 0,
            sequence: seq,
            timestamp: ts,
            ssrc,
            marker,
            payload,
        }
    }

    /// A 160-byte µ-law payload carrying `idx` in six quiet nibble bytes; the rest is loud (0x55)
    /// or quiet (0xFE). Never all silence bytes.
    fn payload(idx: u32, quiet: bool) -> [u8; FRAME_BYTES] {
        let mut p = [if quiet { 0xFE } else { 0x55 }; FRAME_BYTES];
        for (k, b) in p.iter_mut().take(6).enumerate() {
            *b = 0xF0 | ((idx >> (4 * k)) & 0x0F) as u8;
        }
        p
    }

    fn index_of(audio: &[u8]) -> u32 {
        audio
            .iter()
            .take(6)
            .enumerate()
            .map(|(k, b)| u32::from(b & 0x0F) << (4 * k))
            .sum()
    }

    /// A punctual shell: runs every tick due before an input, then feeds it, then drains.
    struct Harness {
        jb: JitterBuffer,
        out: Vec<(Instant, Frame)>,
    }

    impl Harness {
        fn new(t0: Instant) -> Self {
            Harness {
                jb: JitterBuffer::new(Law::Mu, 0, t0),
                out: Vec::new(),
            }
        }
        fn push(&mut self, at: Instant, packet: &RtpHeaderView<'_>) -> Disposition {
            while let Some(t) = self.jb.poll_timeout().filter(|t| *t < at) {
                self.drain(t);
            }
            let d = self.jb.push(at, packet);
            assert!(self.jb.buffered_ms() <= MAX_BUFFERED_MS);
            self.drain(at);
            d
        }
        fn send(&mut self, at: Instant, seq: u16, ts: u32, idx: u32) -> Disposition {
            let p = payload(idx, false);
            self.push(at, &view(seq, ts, SSRC, false, &p))
        }
        fn run_until(&mut self, until: Instant) {
            while let Some(t) = self.jb.poll_timeout().filter(|t| *t <= until) {
                self.drain(t);
            }
        }
        fn drain(&mut self, now: Instant) {
            while let Some(f) = self.jb.poll_frame(now) {
                self.out.push((now, f));
            }
        }
        /// Output as packet indices, `None` for concealed frames.
        fn indices(&self) -> Vec<Option<u32>> {
            self.out
                .iter()
                .map(|(_, f)| (!f.concealed).then(|| index_of(&f.audio)))
                .collect()
        }
        /// Asserts frame k came out at exactly `first + k × 20 ms`.
        fn assert_continuous(&self) {
            let Some((first, _)) = self.out.first() else {
                return;
            };
            for (k, (t, _)) in self.out.iter().enumerate() {
                assert_eq!(*t, *first + frames(k as u64), "frame {k} off schedule");
            }
        }
    }

    #[test]
    fn in_order_stream_plays_after_the_initial_depth_then_conceals() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        assert_eq!(h.jb.poll_timeout(), None);
        assert_eq!(h.jb.poll_frame(t0), None);
        for i in 0..50u32 {
            let d = h.send(
                t0 + ms(20 * u64::from(i)),
                100 + i as u16,
                1000 + 160 * i,
                i,
            );
            let expect = if i == 0 {
                Disposition::Resynchronised(ResyncReason::FirstPacket)
            } else {
                Disposition::Buffered
            };
            assert_eq!(d, expect);
        }
        assert_eq!(h.out[0].0, t0 + ms(40), "first frame after 40 ms");
        h.run_until(t0 + ms(2_000));
        h.assert_continuous();
        assert_eq!(h.out.len(), 99, "one frame per tick from 40 ms to 2 s");
        let idx = h.indices();
        assert_eq!(idx[..50], (0..50).map(Some).collect::<Vec<_>>()[..]);
        assert!(idx[50..].iter().all(Option::is_none));
        assert!(h.out[60].1.audio.iter().all(|&b| b == 0xFF));
        let s = h.jb.stats();
        assert_eq!((s.received, s.late, s.duplicates, s.lost), (50, 0, 0, 0));
        assert_eq!(s.emitted_frames, 99);
        assert_eq!(s.concealed_frames, 49);
        // Warmed up on a jitter-free stream: the target is one frame; no packet in the last second.
        assert_eq!(
            (s.target_depth_ms, s.depth_ms, s.max_depth_ms),
            (20, 20, 40)
        );
        // Time going backwards is ignored.
        assert_eq!(h.jb.poll_frame(t0), None);
    }

    #[test]
    fn reorders_within_depth_and_drops_duplicates_and_late_packets() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        let at = |i: u64| t0 + ms(20 * i);
        for i in 0..3u32 {
            h.send(at(u64::from(i)), i as u16, 160 * i, i);
        }
        // 4 overtakes 3 (both in time).
        assert_eq!(h.send(at(3), 4, 640, 4), Disposition::Buffered);
        assert_eq!(h.send(at(3) + ms(5), 3, 480, 3), Disposition::Buffered);
        assert_eq!(h.send(at(3) + ms(6), 3, 480, 3), Disposition::Duplicate);
        assert_eq!(h.send(at(3) + ms(7), 1, 160, 1), Disposition::Duplicate);
        // 5 and 6 in time, 7 held back past its tick (due at 40 + 140 = 180 ms).
        h.send(at(5), 5, 800, 5);
        h.send(at(6), 6, 960, 6);
        h.send(at(8), 8, 1280, 8);
        assert_eq!(h.send(t0 + ms(185), 7, 1120, 7), Disposition::Late);
        h.send(at(9), 9, 1440, 9);
        h.run_until(at(9) + ms(40));
        h.assert_continuous();
        let idx = h.indices();
        let expect: Vec<Option<u32>> = (0..10).map(|i| (i != 7).then_some(i)).collect();
        assert_eq!(idx, expect);
        let s = h.jb.stats();
        assert_eq!(
            (
                s.reordered,
                s.duplicates,
                s.late,
                s.lost,
                s.concealed_frames
            ),
            (2, 2, 1, 0, 1)
        );
    }

    #[test]
    fn sequence_and_timestamp_wrap_without_resync() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        let ts0 = u32::MAX - 479;
        for i in 0..10u32 {
            if i == 6 {
                continue;
            }
            let seq = 65_532u16.wrapping_add(i as u16);
            h.send(
                t0 + ms(20 * u64::from(i)),
                seq,
                ts0.wrapping_add(160 * i),
                i,
            );
        }
        h.run_until(t0 + ms(220));
        let expect: Vec<Option<u32>> = (0..10).map(|i| (i != 6).then_some(i)).collect();
        assert_eq!(h.indices(), expect);
        let s = h.jb.stats();
        assert_eq!((s.resyncs, s.lost, s.late), (0, 1, 0));
        let rr = h.jb.receiver_report().expect("source known");
        assert_eq!(rr.extended_highest_seq, (1 << 16) + 5);
        assert_eq!((rr.expected, rr.received, rr.cumulative_lost), (10, 9, 1));
    }

    #[test]
    fn ptime_10_and_30_are_reframed_into_20_ms_frames() {
        for ptime in [10u32, 30] {
            let t0 = Instant::now();
            let mut h = Harness::new(t0);
            let len = (ptime * 8) as usize;
            let stream: Vec<u8> = (0..len * 60).map(|i| (i % 97) as u8).collect();
            for (i, chunk) in stream.chunks(len).enumerate() {
                let i = i as u32;
                let at = t0 + ms(u64::from(ptime * i));
                h.push(
                    at,
                    &view(7 + i as u16, 50 + i * len as u32, SSRC, false, chunk),
                );
            }
            h.run_until(t0 + ms(u64::from(ptime) * 60 + 200));
            h.assert_continuous();
            let played: Vec<u8> = h
                .out
                .iter()
                .filter(|(_, f)| !f.concealed)
                .flat_map(|(_, f)| f.audio)
                .collect();
            assert_eq!(
                played, stream,
                "ptime {ptime}: bytes in order, nothing lost"
            );
            assert!(h.out.iter().all(|(_, f)| f.audio.len() == FRAME_BYTES));
            assert_eq!(h.jb.stats().partial_frames, 0);
        }
        // ptime 10 with one packet lost: the frame is played half silence.
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        for i in 0..10u32 {
            if i == 5 {
                continue;
            }
            let p = [0x10 + i as u8; 80];
            h.push(
                t0 + ms(10 * u64::from(i)),
                &view(i as u16, 80 * i, SSRC, false, &p),
            );
        }
        h.run_until(t0 + ms(200));
        let third = &h.out[2].1;
        assert!(!third.concealed);
        assert_eq!(third.audio[..80], [0x14; 80]);
        assert_eq!(third.audio[80..], [0xFF; 80]);
        let s = h.jb.stats();
        assert_eq!((s.partial_frames, s.lost), (1, 1));
    }

    #[test]
    fn ssrc_change_resynchronises_after_the_buffered_audio() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        for i in 0..=20u32 {
            h.send(
                t0 + ms(20 * u64::from(i)),
                1_000 + i as u16,
                5_000 + 160 * i,
                i,
            );
        }
        // Transfer: a new source with unrelated sequence and timestamps.
        let b = |k: u32| payload(100 + k, false);
        let first = b(0);
        let d = h.push(t0 + ms(420), &view(40_000, 77, 0xB0B, true, &first));
        assert_eq!(d, Disposition::Resynchronised(ResyncReason::SsrcChange));
        // A straggler of the old source is dropped while the new one is active.
        let old = payload(99, false);
        let d = h.push(
            t0 + ms(425),
            &view(1_021, 5_000 + 160 * 21, SSRC, false, &old),
        );
        assert_eq!(d, Disposition::StaleSource);
        for k in 1..20u32 {
            let p = b(k);
            let at = t0 + ms(420 + 20 * u64::from(k));
            h.push(at, &view(40_000 + k as u16, 77 + 160 * k, 0xB0B, false, &p));
        }
        h.run_until(t0 + ms(1_000));
        h.assert_continuous();
        let played: Vec<u32> = h.indices().into_iter().flatten().collect();
        let expect: Vec<u32> = (0..=20).chain(100..120).collect();
        assert_eq!(played, expect, "no gap, no overlap, old audio first");
        let s = h.jb.stats();
        assert_eq!((s.ssrc_changes, s.stale_source, s.resyncs), (1, 1, 0));
        assert_eq!(h.jb.ssrc(), Some(0xB0B));
        assert_eq!(h.jb.receiver_report().map(|r| r.ssrc), Some(0xB0B));
        // The old source may come back once the new one is silent.
        let d = h.push(t0 + ms(1_200), &view(1_022, 9_000, SSRC, false, &old));
        assert_eq!(d, Disposition::Resynchronised(ResyncReason::SsrcChange));
    }

    #[test]
    fn timestamp_jumps_resynchronise_without_a_gap() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        let mut ts = 0u32;
        let mut at = t0;
        let mut dispositions = Vec::new();
        for i in 0..60u32 {
            if i == 20 {
                ts = ts.wrapping_add(8_000 * 10); // 10 s forward
            }
            if i == 40 {
                ts = ts.wrapping_sub(8_000 * 30); // 30 s back
            }
            dispositions.push(h.send(at, i as u16, ts, i));
            ts = ts.wrapping_add(160);
            at += ms(20);
        }
        assert_eq!(
            dispositions[20],
            Disposition::Resynchronised(ResyncReason::TimestampJump)
        );
        assert_eq!(
            dispositions[40],
            Disposition::Resynchronised(ResyncReason::TimestampJump)
        );
        assert_eq!(
            dispositions
                .iter()
                .filter(|d| **d == Disposition::Buffered)
                .count(),
            57
        );
        h.run_until(at + ms(100));
        h.assert_continuous();
        let idx = h.indices();
        assert_eq!(
            idx[..60],
            (0..60).map(Some).collect::<Vec<_>>()[..],
            "no gap"
        );
        let s = h.jb.stats();
        assert_eq!((s.resyncs, s.late, s.concealed_frames), (2, 0, 4));
        assert!(s.jitter_ms < 1.0, "jumps do not count as jitter");
    }

    #[test]
    fn sequence_restart_needs_two_consecutive_packets() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        for i in 0..10u32 {
            h.send(t0 + ms(20 * u64::from(i)), i as u16, 160 * i, i);
        }
        assert_eq!(h.send(t0 + ms(200), 30_000, 1_600, 10), Disposition::Stray);
        assert_eq!(
            h.send(t0 + ms(220), 30_001, 1_760, 11),
            Disposition::Resynchronised(ResyncReason::SequenceRestart)
        );
        assert_eq!(
            h.send(t0 + ms(240), 30_002, 1_920, 12),
            Disposition::Buffered
        );
        assert_eq!(h.send(t0 + ms(241), 5, 800, 5), Disposition::Stray);
        let s = h.jb.stats();
        assert_eq!((s.strays, s.resyncs, s.lost), (2, 1, 0));
    }

    #[test]
    fn timestamps_that_did_not_advance_over_a_pause_resynchronise() {
        for marker in [true, false] {
            let t0 = Instant::now();
            let mut h = Harness::new(t0);
            for i in 0..10u32 {
                h.send(t0 + ms(20 * u64::from(i)), i as u16, 160 * i, i);
            }
            // 600 ms pause; the sender's timestamps continue as if there had been none.
            let mut first = None;
            for i in 10..60u32 {
                let p = payload(i, false);
                let at = t0 + ms(600 + 20 * u64::from(i));
                let m = marker && i == 10;
                let d = h.push(at, &view(i as u16, 160 * i, SSRC, m, &p));
                if matches!(d, Disposition::Resynchronised(_)) && first.is_none() {
                    first = Some((i, d));
                }
            }
            let expect_at = if marker { 10 } else { 10 + LATE_RUN_RESYNC - 1 };
            assert_eq!(
                first,
                Some((
                    expect_at,
                    Disposition::Resynchronised(ResyncReason::LateStream)
                ))
            );
            h.run_until(t0 + ms(2_000));
            h.assert_continuous();
            let played: Vec<u32> = h.indices().into_iter().flatten().collect();
            let expect: Vec<u32> = (0..10).chain(expect_at..60).collect();
            assert_eq!(played, expect, "marker {marker}");
        }
    }

    #[test]
    fn other_payload_types_and_empty_payloads_share_the_sequence() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        h.send(t0, 1, 0, 0);
        let event = RtpHeaderView {
            payload_type: 101,
            ..view(2, 160, SSRC, true, &[1, 0x8A, 0, 160])
        };
        assert_eq!(h.push(t0 + ms(20), &event), Disposition::OtherPayloadType);
        assert_eq!(
            h.push(t0 + ms(30), &view(3, 320, SSRC, false, &[])),
            Disposition::Empty
        );
        h.send(t0 + ms(60), 4, 480, 3);
        let s = h.jb.stats();
        assert_eq!((s.lost, s.other_payload_types, s.empty_payloads), (0, 1, 1));
        assert_eq!(h.jb.receiver_report().map(|r| r.expected), Some(4));
    }

    #[test]
    fn a_stalled_shell_gets_at_most_one_second_of_frames() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        h.send(t0, 1, 0, 0);
        h.drain(t0 + ms(5_040));
        assert_eq!(h.out.len(), 51, "frames due in the last second only");
        let s = h.jb.stats();
        assert_eq!(s.overflow_dropped, 200);
        assert_eq!(h.jb.poll_timeout(), Some(t0 + ms(5_060)));
        assert_eq!(h.jb.poll_frame(t0 + ms(5_059)), None);
        assert!(h.jb.poll_frame(t0 + ms(5_060)).is_some());
    }

    #[test]
    fn receiver_report_fields_follow_rfc3550_a3_and_a8() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        // 10 packets across the sequence wrap; 65_536 (i = 2) and 65_540 (i = 6) lost, 3 doubled.
        for i in 0..10u32 {
            if i == 2 || i == 6 {
                continue;
            }
            let seq = 65_534u16.wrapping_add(i as u16);
            h.send(t0 + ms(20 * u64::from(i)), seq, 160 * i, i);
            if i == 3 {
                h.send(t0 + ms(20 * u64::from(i) + 1), seq, 160 * i, i);
            }
        }
        let first = h.jb.receiver_report().expect("source known");
        assert_eq!(first.ssrc, SSRC);
        assert_eq!(first.extended_highest_seq, 65_534 + 9);
        assert_eq!((first.expected, first.received), (10, 9));
        assert_eq!(first.cumulative_lost, 1, "a duplicate offsets a loss");
        assert_eq!(first.fraction_lost_since(None), 25, "1 of 10, × 256");
        // Next interval: 20 packets, 5 lost; arrivals alternate 0 and +5 ms → |D| = 40 samples.
        for i in 10..30u32 {
            if i % 4 == 0 {
                continue;
            }
            let late = if i % 2 == 0 { 5 } else { 0 };
            h.send(
                t0 + ms(20 * u64::from(i) + late),
                65_534u16.wrapping_add(i as u16),
                160 * i,
                i,
            );
        }
        let second = h.jb.receiver_report().expect("source known");
        assert_eq!(
            second.fraction_lost_since(Some(&first)),
            (5 * 256 / 20) as u8
        );
        assert_eq!(second.cumulative_lost, 6);
        assert_eq!(second.fraction_lost_since(Some(&second)), 0);
        let other = ReceiverReportFields { ssrc: 1, ..first };
        assert_eq!(
            second.fraction_lost_since(Some(&other)),
            second.fraction_lost_since(None)
        );
        // Jitter converges towards 40 samples = 5 ms.
        for i in 30..200u32 {
            let late = if i % 2 == 0 { 5 } else { 0 };
            h.send(
                t0 + ms(20 * u64::from(i) + late),
                65_534u16.wrapping_add(i as u16),
                160 * i,
                i,
            );
        }
        let rr = h.jb.receiver_report().expect("source known");
        assert!((38..=40).contains(&rr.jitter), "jitter {}", rr.jitter);
        let j = h.jb.stats().jitter_ms;
        assert!((4.7..=5.0).contains(&j), "jitter {j} ms");
        assert_eq!(h.jb.stats().late, 0);
    }

    /// Drives a stream whose sender clock runs `ppm` parts per million fast (negative: slow).
    fn drift(ppm: i64) -> (JitterStats, Vec<Option<u32>>) {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        let period_ns = 20_000_000i64 - 20_000_000 * ppm / 1_000_000;
        for i in 0..3_000u32 {
            let at = t0 + Duration::from_nanos((period_ns * i64::from(i)).unsigned_abs());
            // Quiet half of every second, like speech with pauses.
            let p = payload(i, (i / 25) % 2 == 1);
            h.push(at, &view(i as u16, 160 * i, SSRC, false, &p));
        }
        h.assert_continuous();
        (h.jb.stats(), h.indices())
    }

    #[test]
    fn clock_drift_is_absorbed_by_skipping_and_inserting_frames() {
        // 1 % fast: 60 s of media arrive in 59.4 s; about 30 frames must go.
        let (s, idx) = drift(10_000);
        assert!((20..=40).contains(&s.skipped_frames), "{s:?}");
        assert!(s.max_buffered_ms <= MAX_BUFFERED_MS);
        assert_eq!(s.late, 0);
        let played: Vec<u32> = idx.into_iter().flatten().collect();
        assert!(played.windows(2).all(|w| w[0] < w[1]), "ordered");
        // 1 % slow: about 30 frames must be inserted; each is concealed.
        let (s, idx) = drift(-10_000);
        assert!((20..=40).contains(&s.inserted_frames), "{s:?}");
        assert!(s.late <= 3, "{s:?}");
        assert_eq!(s.skipped_frames, 0);
        let played: Vec<u32> = idx.into_iter().flatten().collect();
        assert!(played.windows(2).all(|w| w[0] < w[1]), "ordered");
    }

    /// xorshift64* (Vigna): a small deterministic generator for the network emulator.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[derive(Clone, Copy)]
    struct Phase {
        until_ms: u64,
        jitter_ms: f64,
    }

    /// One delivery of packet `idx` (the emulator may deliver a packet twice).
    struct Delivery {
        at: Instant,
        idx: u32,
    }

    /// The network: 30 ms base delay, uniform extra delay up to the phase's jitter, 5 % loss,
    /// 2 % duplicates (delivered again with their own delay), and 1 % of packets held 25 ms
    /// (reordered behind the next one). The first and last packets always arrive.
    fn emulate(rng: &mut Rng, t0: Instant, n: u32, phases: &[Phase]) -> Vec<Delivery> {
        let mut out = Vec::new();
        for idx in 0..n {
            let sent_ms = 20 * u64::from(idx);
            let jitter = phases
                .iter()
                .find(|p| sent_ms < p.until_ms)
                .map_or(0.0, |p| p.jitter_ms);
            let delay = |rng: &mut Rng| {
                let mut d = 30.0 + rng.unit() * jitter;
                if rng.unit() < 0.01 {
                    d += 25.0;
                }
                t0 + ms(sent_ms) + Duration::from_secs_f64(d / 1000.0)
            };
            let keep = idx == 0 || idx == n - 1;
            if keep || rng.unit() >= 0.05 {
                out.push(Delivery {
                    at: delay(rng),
                    idx,
                });
            }
            if !keep && rng.unit() < 0.02 {
                out.push(Delivery {
                    at: delay(rng),
                    idx,
                });
            }
        }
        out.sort_by_key(|d| d.at);
        out
    }

    #[test]
    fn arbitrary_packets_never_panic_and_the_output_stays_continuous_and_bounded() {
        let t0 = Instant::now();
        let mut rng = Rng(0x0123_4567_89AB_CDEF);
        let mut h = Harness::new(t0);
        let mut now = t0;
        let data = [0x42u8; 2_000];
        for round in 0..20_000u32 {
            // Mostly a plausible stream, sometimes anything at all.
            let r = rng.next();
            let wild = r.is_multiple_of(8);
            let seq = if wild { (r >> 8) as u16 } else { round as u16 };
            let ts = if wild {
                (r >> 24) as u32
            } else {
                (round * 160).wrapping_add((r >> 40) as u32 % 200)
            };
            let ssrc = [1, 2, 3][(r >> 60) as usize % 3];
            let len = match r % 5 {
                0 => (r >> 16) as usize % data.len(),
                _ => 160,
            };
            let pt = if r.is_multiple_of(13) { 101 } else { 0 };
            let v = RtpHeaderView {
                payload_type: pt,
                ..view(seq, ts, ssrc, r.is_multiple_of(11), &data[..len])
            };
            now += Duration::from_micros((r >> 32) % 40_000);
            h.push(now, &v);
            assert!(h.jb.stats().max_buffered_ms <= MAX_BUFFERED_MS);
        }
        h.run_until(now + ms(500));
        h.assert_continuous();
        let s = h.jb.stats();
        assert_eq!(s.emitted_frames, h.out.len() as u64);
        assert!(s.max_depth_ms <= MAX_BUFFERED_MS + FRAME_MS, "{s:?}");
    }

    #[test]
    fn network_emulator_loss_duplicates_reordering_jitter_and_wrap() {
        for seed in [0x9E37_79B9_7F4A_7C15, 1, 0xDEAD_BEEF, 42, 7_777_777] {
            emulated_call(seed);
        }
    }

    fn emulated_call(seed: u64) {
        let t0 = Instant::now();
        let mut rng = Rng(seed);
        // 10 s calm, 30 s of 60 ms jitter, 30 s calm again: 3,500 packets of 20 ms.
        let phases = [
            Phase {
                until_ms: 10_000,
                jitter_ms: 0.0,
            },
            Phase {
                until_ms: 40_000,
                jitter_ms: 60.0,
            },
            Phase {
                until_ms: 70_000,
                jitter_ms: 0.0,
            },
        ];
        let n = 3_500u32;
        let deliveries = emulate(&mut rng, t0, n, &phases);
        // Sequence numbers wrap after 536 packets, timestamps after 1000 (both in the jitter).
        let seq0 = 65_000u16;
        let ts0 = u32::MAX - 160 * 1_000 + 1;

        let mut h = Harness::new(t0);
        let mut first_disposition: Vec<Option<Disposition>> = vec![None; n as usize];
        let mut late_in_jitter = 0u32;
        let mut depth_at = Vec::new(); // (time ms, target depth ms, depth ms)
        let mut next_probe = 1_000u64;
        for d in &deliveries {
            while next_probe * 1_000_000 <= (d.at - t0).as_nanos() as u64 {
                let s = h.jb.stats();
                depth_at.push((next_probe, s.target_depth_ms, s.depth_ms));
                next_probe += 1_000;
            }
            let p = payload(d.idx, (d.idx / 40) % 3 == 2);
            let v = view(
                seq0.wrapping_add(d.idx as u16),
                ts0.wrapping_add(160 * d.idx),
                SSRC,
                false,
                &p,
            );
            let disposition = h.push(d.at, &v);
            let slot = &mut first_disposition[d.idx as usize];
            if slot.is_none() {
                *slot = Some(disposition);
                if disposition == Disposition::Late
                    && (10_000..40_000).contains(&(20 * u64::from(d.idx)))
                {
                    late_in_jitter += 1;
                }
            }
        }
        // Play until the last packet's frame is out, and stop there.
        while h.indices().last() != Some(&Some(n - 1)) {
            let t = h.jb.poll_timeout().expect("playing");
            let f = h.jb.poll_frame(t).expect("due");
            h.out.push((t, f));
        }
        let s = h.jb.stats();

        // Continuous: exactly one frame per 20 ms tick since the first.
        h.assert_continuous();
        let elapsed = h.out[h.out.len() - 1].0 - h.out[0].0;
        assert_eq!(h.out.len() as u128, elapsed.as_millis() / 20 + 1);
        assert_eq!(s.emitted_frames, h.out.len() as u64);

        // Ordered: caller audio comes out in the sender's order, each packet at most once.
        let played: Vec<u32> = h.indices().into_iter().flatten().collect();
        assert!(
            played.windows(2).all(|w| w[0] < w[1]),
            "output out of order"
        );

        // Accounting: every packet is played, late, lost or skipped to shrink the depth.
        let lost = first_disposition.iter().filter(|d| d.is_none()).count() as u64;
        let late = first_disposition
            .iter()
            .filter(|d| **d == Some(Disposition::Late))
            .count() as u64;
        assert!(first_disposition.iter().flatten().all(|d| matches!(
            d,
            Disposition::Buffered | Disposition::Late
        ) || *d
            == Disposition::Resynchronised(ResyncReason::FirstPacket)));
        assert_eq!((s.lost, s.late), (lost, late));
        assert_eq!(
            played.len() as u64 + s.skipped_frames,
            u64::from(n) - lost - late,
            "{s:?}"
        );
        let concealed = h.out.iter().filter(|(_, f)| f.concealed).count() as u64;
        assert_eq!(concealed, s.concealed_frames);
        assert_eq!(s.concealed_frames - s.inserted_frames, lost + late, "{s:?}");
        assert!(lost > 120 && lost < 230, "about 5 % lost: {lost}");
        assert!(s.duplicates > 40, "about 2 % duplicated: {}", s.duplicates);
        assert!(s.reordered > 200, "jitter reorders: {}", s.reordered);
        assert_eq!(
            (s.resyncs, s.ssrc_changes, s.strays, s.overflow_dropped),
            (0, 0, 0, 0)
        );

        // Bounded: never more than 120 ms + one frame held (also asserted after every push).
        assert!(s.max_buffered_ms <= MAX_BUFFERED_MS, "{s:?}");
        assert!(s.max_depth_ms <= MAX_DEPTH_MS);

        // Adaptive: low when calm, up under 60 ms of jitter, back down when calm again.
        let at = |sec: u64| depth_at.iter().find(|d| d.0 == sec * 1_000).copied();
        let (_, calm_depth, calm_delay) = at(9).expect("probe");
        assert!(
            calm_depth <= 40 && calm_delay <= 45,
            "calm: {calm_depth} / {calm_delay}"
        );
        let (_, busy_depth, busy_delay) = at(39).expect("probe");
        assert!(busy_depth >= 60, "under jitter: {busy_depth}");
        assert!(busy_delay >= 60, "under jitter: {busy_delay}");
        let (_, end_depth, end_delay) = at(69).expect("probe");
        assert!(
            end_depth <= 40 && end_delay <= 60,
            "calm again: {end_depth} / {end_delay}"
        );
        assert!(
            f64::from(late_in_jitter) < 0.03 * 1_500.0,
            "late under jitter: {late_in_jitter}"
        );
        if std::env::var_os("JITTER_TRACE").is_some() {
            eprintln!("seed {seed}: {s:?} late_in_jitter {late_in_jitter}");
            eprintln!("{depth_at:?}");
        }
        let jitter_ms: Vec<u64> = depth_at.iter().map(|d| d.1).collect();
        assert!(jitter_ms
            .iter()
            .all(|d| (MIN_DEPTH_MS..=MAX_DEPTH_MS).contains(d)));

        // The receiver report agrees (received counts duplicates, RFC 3550 §A.3).
        let rr = h.jb.receiver_report().expect("source known");
        assert_eq!(rr.expected, u64::from(n));
        assert_eq!(
            i64::from(rr.cumulative_lost),
            lost as i64 - s.duplicates as i64
        );
        assert_eq!(rr.extended_highest_seq, u32::from(seq0) + n - 1);
    }

    #[test]
    fn frames_carry_the_arrival_of_the_packet_that_filled_them() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        // ptime 20, seq 2 lost, seq 3 arriving 7 ms after its nominal time.
        h.send(t0, 0, 0, 0);
        h.send(t0 + ms(20), 1, 160, 1);
        h.send(t0 + ms(67), 3, 480, 3);
        h.run_until(t0 + ms(120));
        let arrived: Vec<Option<Instant>> = h.out.iter().map(|(_, f)| f.arrived).collect();
        assert_eq!(
            arrived,
            [Some(t0), Some(t0 + ms(20)), None, Some(t0 + ms(67)), None]
        );
        // The buffer adds the playout delay: frame 0 leaves 40 ms after its packet arrived.
        assert_eq!(h.out[0].0 - t0, ms(40));

        // ptime 10: two packets fill one frame; the second (the one completing it) counts.
        let mut h = Harness::new(t0);
        for i in 0..4u32 {
            let p = [0x20 + i as u8; 80];
            h.push(
                t0 + ms(10 * u64::from(i)),
                &view(i as u16, 80 * i, SSRC, false, &p),
            );
        }
        h.run_until(t0 + ms(80));
        assert_eq!(h.out[0].1.arrived, Some(t0 + ms(10)));
        assert_eq!(h.out[1].1.arrived, Some(t0 + ms(30)));
        assert!(h.out[2].1.concealed && h.out[2].1.arrived.is_none());
    }
}
