//! Zero-delay caller audio relay: caller RTP in, 20 ms G.711 frames for the model out, in media
//! order, as soon as they are complete.
//!
//! [`JitterBuffer`] owns the receive side of one call's audio: the current source (SSRC) and its
//! sequence state (RFC 3550 §A.1), the interarrival jitter estimate (RFC 3550 §6.4.1, §A.8), a
//! fixed ring of 20 ms slots, and the *cursor*, the media position of the next frame for the model.
//! The model's clock is the audio it receives, not the arrival times, so nothing is held for a
//! playout delay: a packet that arrives in order is handed on at once.
//!
//! # Model
//!
//! - **Media position.** Each source's extended RTP timestamp (RFC 3550 §5.1, extended as in §A.1)
//!   maps linearly onto a position in 8 kHz samples; frame `k` covers positions `160k..160(k+1)`.
//!   Packets are written byte by byte into the slots they cover, so any ptime (10, 20, 30 ms…) and
//!   any timestamp alignment is re-framed into 20 ms frames of 160 bytes (RFC 3551 §4.5.14).
//! - **Release.** The frame at the cursor is released (by [`JitterBuffer::poll_frame`]) when one of
//!   these holds, and never otherwise, so no frame is inserted or removed to resize anything:
//!   1. it is complete (all 160 bytes arrived): at once, the same `now` as its packet;
//!   2. it is incomplete but later audio has arrived (a *gap*): when the sequence numbers say
//!      nothing is missing (the sender paused, its timestamps jumped with no sequence gap), at
//!      once; otherwise after the *reorder window* `W`, counted from the arrival of the first
//!      packet after the gap. What arrived of the frame is played and the rest is G.711 silence;
//!   3. nothing after it has arrived (a silent caller: silence suppression, RFC 3389 comfort
//!      noise, hold, or loss at the end of a talkspurt): on the *media clock*, when the frame
//!      should have arrived, `anchor arrival + (frame end − anchor end)` where the anchor is the
//!      latest in-sequence packet, plus the *clock grace* `G`. The model then keeps receiving
//!      one silence frame per 20 ms (counted in [`JitterStats::clock_frames`]), so its turn
//!      detection hears the end of the turn.
//! - **Reorder window.** `W` is the largest delay seen over the last 5–10 s between the first
//!   packet after a gap and the reordered packet that filled it, within 0 and
//!   [`MAX_REORDER_WINDOW_MS`]: 0 on a path that never reorders (losses are concealed at once),
//!   larger on one that does. A reordered packet that arrives within `W` is put back in order; one
//!   whose frames were already released is late (dropped) and widens `W` for the next gaps.
//! - **Clock grace.** `G` is 1.5 × the largest lateness of an in-sequence packet against the media
//!   clock over the last 5–10 s, plus 20 ms, within [`MIN_CLOCK_GRACE_MS`] and
//!   [`MAX_CLOCK_GRACE_MS`]; with jitter below `G` the clock never releases a frame whose packet
//!   is still on its way.
//! - **Dispositions.** A sequence number already received (128-packet window) is a duplicate
//!   (dropped). A packet arriving after a higher sequence number is counted as reordered, played if
//!   its frames are still ahead of the cursor, else dropped as late. An *in-sequence* packet is
//!   never dropped: if its audio lies before the cursor (the media clock ran ahead of the sender,
//!   e.g. timestamps not advanced over a pause, RFC 3551 §4.1, or a slow sender clock after a
//!   silence), the source is re-mapped so that it plays at the cursor.
//! - **Bound.** Audio held ahead of the cursor never exceeds [`MAX_BUFFERED_MS`]: an in-sequence
//!   packet beyond it is a timestamp jump and is re-mapped to follow the audio held; a reordered
//!   packet beyond it (impossible for a sane sender) is dropped and counted in
//!   [`JitterStats::overflow_dropped`]. The ring is allocated once; pushing and polling never
//!   allocate.
//! - **Resynchronisation** (a new mapping that plays the packet right after the cursor and any
//!   audio still held): the first packet, an SSRC change (RFC 3550 §8, a re-INVITE or transfer), a
//!   sequence restart confirmed by two consecutive packets (RFC 3550 §A.1,
//!   `MAX_DROPOUT`/`MAX_MISORDER`), an in-sequence packet beyond the bound (timestamp jump) or
//!   before the cursor (late stream). Packets of the source switched away from are dropped while
//!   the new one is active (it sent within the last [`SOURCE_HOLD_MS`]).
//! - **Stall.** A shell that slept more than [`MAX_CATCH_UP_MS`] past the media clock gets only
//!   the clock frames of the last second (the older positions are counted in
//!   [`JitterStats::overflow_dropped`]).
//!
//! Other payload types (telephone-event, comfort noise) are ignored but, on the current SSRC, keep
//! the sequence state (they share its sequence space). [`JitterBuffer::receiver_report`] exposes
//! the RFC 3550 §6.4.1 / §A.3 report-block fields for RTCP.
//!
//! Concealment is G.711 silence. Repeating and fading the last frame was considered for short
//! losses; for the model's speech recognition and VAD, silence is the safer input (a repeated
//! frame can extend a syllable or prolong a turn), so silence it is.
//!
//! # Driving it (drain rule)
//!
//! After [`JitterBuffer::push`] and whenever [`JitterBuffer::poll_timeout`] passes, call
//! [`JitterBuffer::poll_frame`] with the current time until it returns `None`; then sleep until
//! `poll_timeout`. Time that goes backwards is ignored; early polls return `None`.
//!
//! No I/O: no sockets, no clock reads, no tokio.

use std::time::{Duration, Instant};

use super::g711::{Law, FRAME_BYTES, FRAME_MS};
use super::rtp::{extend_seq, extend_ts, RtpHeaderView};

/// Largest reorder window, in ms: a frame with a gap waits at most this long for the packet that
/// fills it.
pub const MAX_REORDER_WINDOW_MS: u64 = 60;
/// Smallest clock grace, in ms: how long after it should have arrived a frame of a silent caller
/// is released as silence, at least.
pub const MIN_CLOCK_GRACE_MS: u64 = 120;
/// Largest clock grace, in ms.
pub const MAX_CLOCK_GRACE_MS: u64 = 300;
/// Length of each of the two halves of the window over which the reorder window and the clock
/// grace remember the delays seen, in ms: they follow the largest delay of the last 5–10 s.
pub const MEMORY_HALF_MS: u64 = 5_000;
/// Most audio held ahead of the cursor, in ms (25 frames): the largest clock grace, the largest
/// reorder window and a long packet (ptime up to 120 ms) fit.
pub const MAX_BUFFERED_MS: u64 = 500;
/// RFC 3550 §A.1 `MAX_DROPOUT`: largest forward sequence jump accepted as in-order, in packets.
pub const MAX_DROPOUT: u64 = 3_000;
/// RFC 3550 §A.1 `MAX_MISORDER`: largest backward sequence distance accepted as reordering.
pub const MAX_MISORDER: u64 = 100;
/// A shell this late (ms) past the media clock gets only the frames of the last second.
pub const MAX_CATCH_UP_MS: u64 = 1_000;
/// Packets of the previous SSRC are dropped while the current one sent within this many ms.
pub const SOURCE_HOLD_MS: u64 = 200;

/// Samples (= bytes, = RTP timestamp units) per 20 ms frame at 8 kHz.
const FRAME_SAMPLES: i64 = FRAME_BYTES as i64;
const SAMPLES_PER_MS: i64 = 8;
const MAX_BUFFERED_SAMPLES: i64 = MAX_BUFFERED_MS as i64 * SAMPLES_PER_MS;
/// Slots in the ring: the frames of [`MAX_BUFFERED_MS`] plus one (a packet may straddle).
const RING: usize = (MAX_BUFFERED_MS / FRAME_MS) as usize + 1;
const SEQ_WINDOW: u64 = 128;
/// In-sequence packets remembered (extended sequence number, arrival) to measure reordering.
const RECENT: usize = 32;
const NO_FRAME: i64 = i64::MIN;

/// One 20 ms frame for the model: 160 bytes of the call's G.711 law (8 kHz, one byte per sample).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The audio: caller audio in media order, or the law's silence byte where none arrived.
    pub audio: [u8; FRAME_BYTES],
    /// True when no byte of this frame came from the caller (loss, late packet, silent caller).
    pub concealed: bool,
    /// When the packet that completed this frame arrived (the `now` given to
    /// [`JitterBuffer::push`]): for ptime 20 the frame's own packet; when several packets share a
    /// frame (ptime 10, unaligned timestamps), the last one that wrote into it. `None` for a
    /// concealed frame. `poll_frame`'s `now` minus this is the time the audio waited in the relay.
    pub arrived: Option<Instant>,
}

/// Why a packet started a new mapping of its media clock onto the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncReason {
    /// The first audio packet of the call.
    FirstPacket,
    /// A new SSRC (RFC 3550 §8): re-INVITE, transfer, media server change.
    SsrcChange,
    /// The sequence number restarted (two consecutive packets far from the old sequence, §A.1).
    SequenceRestart,
    /// An in-sequence packet's timestamp is beyond [`MAX_BUFFERED_MS`] ahead of the cursor.
    TimestampJump,
    /// An in-sequence packet's audio lies before the cursor: the sender's timestamps fell behind
    /// the media clock (not advanced across a pause, or a slow clock after a silence).
    LateStream,
}

/// What [`JitterBuffer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The audio was stored (possibly only its part still ahead of the cursor).
    Buffered,
    /// The audio was stored as the start of a new mapping.
    Resynchronised(ResyncReason),
    /// Dropped: a reordered packet whose whole audio lies before the cursor (too late to play).
    Late,
    /// Dropped: this sequence number was already received.
    Duplicate,
    /// Dropped: the sequence number is far outside the current sequence (RFC 3550 §A.1 probation);
    /// a second consecutive one restarts the sequence.
    Stray,
    /// Dropped: from the SSRC the relay switched away from, while the new one is active.
    StaleSource,
    /// Dropped: a reordered packet beyond [`MAX_BUFFERED_MS`] ahead of the cursor.
    Overflow,
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
    /// Frames handed out with no caller audio (`concealed == true`): losses, late packets and the
    /// media clock's frames for a silent caller.
    pub concealed_frames: u64,
    /// Concealed frames released by the media clock while nothing later had arrived (silence
    /// suppression, comfort noise, hold; included in `concealed_frames`).
    pub clock_frames: u64,
    /// Frames with some caller audio and some silence (ptime 10/30 with a piece missing).
    pub partial_frames: u64,
    /// Packets never received: expected (from sequence numbers) minus distinct packets received,
    /// summed over sources (RFC 3550 §6.4.1 "cumulative number of packets lost", duplicates excluded).
    pub lost: u64,
    /// Reordered audio packets dropped as too late to play.
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
    /// Frame positions dropped after a shell stall ([`MAX_CATCH_UP_MS`]), plus reordered packets
    /// dropped beyond [`MAX_BUFFERED_MS`].
    pub overflow_dropped: u64,
    /// RFC 3550 §A.8 interarrival jitter of the current source, in ms.
    pub jitter_ms: f64,
    /// Current reorder window, in ms (0–[`MAX_REORDER_WINDOW_MS`]).
    pub reorder_window_ms: u64,
    /// Largest `reorder_window_ms` so far.
    pub max_reorder_window_ms: u64,
    /// Current clock grace, in ms ([`MIN_CLOCK_GRACE_MS`]–[`MAX_CLOCK_GRACE_MS`]).
    pub clock_grace_ms: u64,
    /// Longest any caller audio waited in the relay, from its packet's arrival to the release of
    /// its frame, in whole ms (0 on a clean path).
    pub max_depth_ms: u64,
    /// Caller audio held ahead of the cursor right now, in ms (≤ [`MAX_BUFFERED_MS`]).
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

/// The largest delay recorded over the last one to two [`MEMORY_HALF_MS`] periods.
#[derive(Debug, Clone, Copy)]
struct RecentMax {
    /// Largest delay of the current and of the previous half.
    halves: [Duration; 2],
    /// When the current half started.
    opened: Instant,
}

impl RecentMax {
    fn new(now: Instant) -> Self {
        RecentMax {
            halves: [Duration::ZERO; 2],
            opened: now,
        }
    }

    fn roll(&mut self, now: Instant) {
        let half = Duration::from_millis(MEMORY_HALF_MS);
        let age = now.saturating_duration_since(self.opened);
        if age >= half * 2 {
            self.halves = [Duration::ZERO; 2];
            self.opened = now;
        } else if age >= half {
            self.halves = [Duration::ZERO, self.halves[0]];
            self.opened += half;
        }
    }

    fn record(&mut self, now: Instant, d: Duration) {
        self.roll(now);
        self.halves[0] = self.halves[0].max(d);
    }

    fn get(&self) -> Duration {
        self.halves[0].max(self.halves[1])
    }
}

/// One caller source (SSRC) and the mapping of its media clock onto the relay's positions.
#[derive(Debug, Clone, Copy)]
struct Source {
    ssrc: u32,
    seq: SeqState,
    /// Highest extended RTP timestamp seen (reference for extending the next one).
    highest_ts: u64,
    /// Extended RTP timestamp that maps to `base_pos`.
    base_ts: u64,
    /// Position (samples) of `base_ts`.
    base_pos: i64,
    /// §A.8 jitter × 16, in samples.
    jitter_q4: i64,
    /// §A.8 relative transit time of the previous audio packet, in samples.
    last_transit: Option<i64>,
    /// When the source last sent an audio packet.
    last_arrival: Instant,
    /// The last in-sequence packets: (extended sequence number, arrival), a ring.
    recent: [(u64, Instant); RECENT],
    recent_next: usize,
}

impl Source {
    fn new(now: Instant, packet: &RtpHeaderView<'_>) -> Self {
        let ts = 1 << 32 | u64::from(packet.timestamp);
        let seq = SeqState::new(packet.sequence);
        Source {
            ssrc: packet.ssrc,
            seq,
            highest_ts: ts,
            base_ts: ts,
            base_pos: 0,
            jitter_q4: 0,
            last_transit: None,
            last_arrival: now,
            recent: [(seq.highest, now); RECENT],
            recent_next: 0,
        }
    }

    fn position(&self, ext_ts: u64) -> i64 {
        // Extended timestamps stay far below 2^63; the difference is a signed sample count.
        self.base_pos + (ext_ts as i64 - self.base_ts as i64)
    }

    fn jitter_samples(&self) -> u64 {
        (self.jitter_q4 >> 4).max(0).unsigned_abs()
    }

    fn remember(&mut self, ext_seq: u64, now: Instant) {
        self.recent[self.recent_next] = (ext_seq, now);
        self.recent_next = (self.recent_next + 1) % RECENT;
    }

    /// Arrival of the first in-sequence packet after `ext_seq` (the one that opened its gap).
    fn gap_opened(&self, ext_seq: u64) -> Option<Instant> {
        self.recent
            .iter()
            .filter(|(s, _)| *s > ext_seq)
            .min_by_key(|(s, _)| *s)
            .map(|(_, t)| *t)
    }

    /// RFC 3550 §A.8: J += (|D(i-1, i)| − J) / 16, in timestamp units, kept × 16.
    fn update_jitter(&mut self, arrival: i64, ext_ts: u64) {
        let transit = arrival - ext_ts as i64;
        if let Some(prev) = self.last_transit {
            let d = (transit - prev).abs();
            self.jitter_q4 += d - ((self.jitter_q4 + 8) >> 4);
        }
        self.last_transit = Some(transit);
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Frame index held, or [`NO_FRAME`].
    frame: i64,
    /// Bytes of caller audio written (0–160).
    filled: u16,
    /// Arrival of the first packet that wrote into this slot.
    first_arrival: Option<Instant>,
    /// Arrival of the last packet that wrote into this slot.
    arrived: Option<Instant>,
    audio: [u8; FRAME_BYTES],
}

/// The relay's position state, once the first audio packet arrived.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    /// Frame index of the next frame to release.
    frame: i64,
    /// Position just after the furthest caller audio written.
    buffered_end: i64,
    /// Positions `pause.0..pause.1` hold no missing audio (the sender paused there, or a new
    /// mapping skipped them): frames within are released at once.
    pause: (i64, i64),
    /// The media clock: arrival and end position of the latest in-sequence packet.
    anchor: (Instant, i64),
}

/// Why the frame at the cursor may be released, and from when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Release {
    /// All 160 bytes arrived.
    Complete,
    /// Later audio arrived; the missing bytes are given up at the instant.
    Gap(Instant),
    /// Nothing later arrived; the media clock releases the frame at the instant.
    Clock(Instant),
}

/// The zero-delay relay of one call's caller audio. See the module docs.
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
    cursor: Option<Cursor>,
    slots: Box<[Slot; RING]>,
    reorder: RecentMax,
    lateness: RecentMax,
    stats: JitterStats,
}

impl JitterBuffer {
    /// Creates the relay for audio of `law` carried with the negotiated `payload_type` (0 PCMU /
    /// 8 PCMA, RFC 3551 table 4, or a dynamic type). `now` is the earliest time it will accept.
    ///
    /// Allocates its ring of slots here, once.
    pub fn new(law: Law, payload_type: u8, now: Instant) -> Self {
        let empty = Slot {
            frame: NO_FRAME,
            filled: 0,
            first_arrival: None,
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
            cursor: None,
            slots: Box::new([empty; RING]),
            reorder: RecentMax::new(now),
            lateness: RecentMax::new(now),
            stats: JitterStats {
                clock_grace_ms: MIN_CLOCK_GRACE_MS,
                ..JitterStats::default()
            },
        }
    }

    /// Takes one parsed RTP packet (RFC 3550 §5.1) received at `now` and stores its audio, or
    /// drops it; see the module docs for the rules. Never allocates.
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
        let (Some(s), Some(cur)) = (self.source.as_mut(), self.cursor.as_mut()) else {
            return Disposition::Empty; // unreachable: a source always has a cursor
        };
        let previous_highest = s.seq.highest;
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
            SeqVerdict::Reordered | SeqVerdict::New => {}
        }
        let ext_ts = extend_ts(s.highest_ts, packet.timestamp);
        let pos = s.position(ext_ts);
        let end = pos + packet.payload.len() as i64;
        let cursor_pos = cur.frame * FRAME_SAMPLES;
        s.last_arrival = now;
        s.update_jitter(arrival, ext_ts);

        if verdict == SeqVerdict::Reordered {
            self.stats.reordered += 1;
            let ext_seq = extend_seq(s.seq.highest, packet.sequence);
            if let Some(opened) = s.gap_opened(ext_seq) {
                self.reorder
                    .record(now, now.saturating_duration_since(opened));
            }
            if end <= cursor_pos {
                self.stats.late += 1;
                return Disposition::Late;
            }
            if end > cursor_pos + MAX_BUFFERED_SAMPLES {
                self.stats.overflow_dropped += 1;
                return Disposition::Overflow;
            }
            self.store(now, pos, packet.payload);
            return Disposition::Buffered;
        }

        // In sequence: never dropped.
        s.highest_ts = s.highest_ts.max(ext_ts);
        s.remember(s.seq.highest, now);
        if pos < cursor_pos || end > cursor_pos + MAX_BUFFERED_SAMPLES {
            self.stats.resyncs += 1;
            let reason = if pos < cursor_pos {
                ResyncReason::LateStream
            } else {
                ResyncReason::TimestampJump
            };
            return self.resync(now, packet, reason);
        }
        // Lateness against the media clock (for the clock grace).
        let (anchor_at, anchor_end) = cur.anchor;
        let expected = anchor_at + samples_to_duration(end - anchor_end);
        self.lateness
            .record(now, now.saturating_duration_since(expected));
        cur.anchor = (now, end.max(anchor_end));
        if s.seq.highest == previous_highest + 1 && pos > anchor_end {
            // Nothing is missing between the previous packet and this one: a timestamp gap is a
            // pause of the sender, not a loss.
            cur.pause = (anchor_end, pos);
        }
        self.store(now, pos, packet.payload);
        Disposition::Buffered
    }

    /// The next frame if one may be released at `now` (see the module docs), else `None`. Call
    /// until `None` after every [`push`](Self::push) and whenever
    /// [`poll_timeout`](Self::poll_timeout) has passed. Never allocates.
    pub fn poll_frame(&mut self, now: Instant) -> Option<Frame> {
        let now = self.clamp(now);
        let release = self.release()?;
        let at = match release {
            Release::Complete => now,
            Release::Gap(t) | Release::Clock(t) => t,
        };
        if now < at {
            return None;
        }
        let cur = self.cursor.as_mut()?;
        if let Release::Clock(t) = release {
            // A shell that slept long gets only the last second of clock frames.
            let catch_up = Duration::from_millis(MAX_CATCH_UP_MS);
            let lateness = now - t;
            if lateness > catch_up {
                let n = (lateness - catch_up).as_millis() / u128::from(FRAME_MS);
                let n = i64::try_from(n).unwrap_or(i64::MAX / 4);
                cur.frame += n;
                self.stats.overflow_dropped += n.unsigned_abs();
            }
        }
        let frame_index = cur.frame;
        cur.frame += 1;
        let slot = &mut self.slots[ring_index(frame_index)];
        self.stats.emitted_frames += 1;
        let frame = if slot.frame == frame_index && slot.filled > 0 {
            if usize::from(slot.filled) < FRAME_BYTES {
                self.stats.partial_frames += 1;
            }
            if let Some(first) = slot.first_arrival {
                let held = now.saturating_duration_since(first).as_millis();
                let held = u64::try_from(held).unwrap_or(u64::MAX);
                self.stats.max_depth_ms = self.stats.max_depth_ms.max(held);
            }
            Frame {
                audio: slot.audio,
                concealed: false,
                arrived: slot.arrived,
            }
        } else {
            self.stats.concealed_frames += 1;
            if matches!(release, Release::Clock(_)) {
                self.stats.clock_frames += 1;
            }
            Frame {
                audio: [self.law.silence_byte(); FRAME_BYTES],
                concealed: true,
                arrived: None,
            }
        };
        slot.frame = NO_FRAME;
        Some(frame)
    }

    /// When the next frame may be released: `now` or earlier if one is ready, the end of a gap's
    /// reorder window, or the media clock's next silence frame; `None` before the first audio
    /// packet.
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(match self.release()? {
            Release::Complete => self.last_now,
            Release::Gap(t) | Release::Clock(t) => t,
        })
    }

    /// Counters and gauges so far.
    pub fn stats(&self) -> JitterStats {
        let mut s = self.stats;
        s.lost = self.lost_before + self.source.as_ref().map_or(0, |src| src.seq.lost());
        s.jitter_ms = self.source.as_ref().map_or(0.0, |src| {
            (src.jitter_q4 as f64 / 16.0) / SAMPLES_PER_MS as f64
        });
        s.buffered_ms = self.buffered_ms();
        s.reorder_window_ms = whole_ms(self.reorder_window());
        s.clock_grace_ms = whole_ms(self.clock_grace());
        s
    }

    /// The clock grace `G` in force, in ms (module docs): how long after its media-clock time
    /// a silent caller's frame is released, so how long the frames for the model stall when the
    /// caller's packets stop ([`MIN_CLOCK_GRACE_MS`]–[`MAX_CLOCK_GRACE_MS`]).
    pub fn clock_grace_ms(&self) -> u64 {
        whole_ms(self.clock_grace())
    }

    /// Caller audio held ahead of the cursor, in ms (never above [`MAX_BUFFERED_MS`]).
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
        self.cursor
            .as_ref()
            .map_or(0, |c| (c.buffered_end - c.frame * FRAME_SAMPLES).max(0))
    }

    /// The reorder window `W` (module docs), within 0–[`MAX_REORDER_WINDOW_MS`].
    fn reorder_window(&self) -> Duration {
        let mut r = self.reorder;
        r.roll(self.last_now);
        r.get().min(Duration::from_millis(MAX_REORDER_WINDOW_MS))
    }

    /// The clock grace `G` (module docs).
    fn clock_grace(&self) -> Duration {
        let mut l = self.lateness;
        l.roll(self.last_now);
        let g = l.get().mul_f64(1.5) + Duration::from_millis(FRAME_MS);
        g.clamp(
            Duration::from_millis(MIN_CLOCK_GRACE_MS),
            Duration::from_millis(MAX_CLOCK_GRACE_MS),
        )
    }

    /// How the frame at the cursor is to be released; `None` before the first audio packet.
    fn release(&self) -> Option<Release> {
        let cur = self.cursor.as_ref()?;
        let slot = &self.slots[ring_index(cur.frame)];
        let present = slot.frame == cur.frame && slot.filled > 0;
        if present && usize::from(slot.filled) >= FRAME_BYTES {
            return Some(Release::Complete);
        }
        let frame_start = cur.frame * FRAME_SAMPLES;
        let frame_end = frame_start + FRAME_SAMPLES;
        let filled = if present { i64::from(slot.filled) } else { 0 };
        let (pause_start, pause_end) = cur.pause;
        if pause_start <= frame_start + filled && frame_end <= pause_end {
            return Some(Release::Gap(self.last_now));
        }
        if cur.buffered_end >= frame_end {
            // Later audio arrived: wait for the reorder window from the first arrival after the
            // gap (at most the slots of the bound).
            let first = (cur.frame..cur.frame + RING as i64)
                .filter_map(|f| {
                    let s = &self.slots[ring_index(f)];
                    (s.frame == f && s.filled > 0)
                        .then_some(s.first_arrival)
                        .flatten()
                })
                .min()
                .unwrap_or(self.last_now);
            return Some(Release::Gap(first + self.reorder_window()));
        }
        let (anchor_at, anchor_end) = cur.anchor;
        let due = anchor_at + samples_to_duration(frame_end - anchor_end);
        Some(Release::Clock(due + self.clock_grace()))
    }

    /// Maps the current source's media clock so that `packet` plays right after the cursor and
    /// any audio still held, then stores it.
    fn resync(
        &mut self,
        now: Instant,
        packet: &RtpHeaderView<'_>,
        reason: ResyncReason,
    ) -> Disposition {
        let arrival = units(self.epoch, now);
        let Some(s) = self.source.as_mut() else {
            return Disposition::Empty; // unreachable: callers set the source first
        };
        let ext_ts = extend_ts(s.highest_ts, packet.timestamp);
        s.highest_ts = ext_ts;
        s.last_transit = Some(arrival - ext_ts as i64);
        s.last_arrival = now;
        s.remember(s.seq.highest, now);
        let first = match &self.cursor {
            None => 0,
            Some(c) => c.frame.max(ceil_frames(c.buffered_end)),
        };
        let pos = first * FRAME_SAMPLES;
        s.base_ts = ext_ts;
        s.base_pos = pos;
        let end = pos + packet.payload.len() as i64;
        let cur = self.cursor.get_or_insert(Cursor {
            frame: 0,
            buffered_end: 0,
            pause: (0, 0),
            anchor: (now, end),
        });
        // Frames left empty before the new mapping are not waited for.
        cur.pause = (cur.buffered_end.max(cur.frame * FRAME_SAMPLES), pos);
        cur.anchor = (now, end);
        self.store(now, pos, packet.payload);
        Disposition::Resynchronised(reason)
    }

    /// Writes `payload` at position `pos` (samples), dropping the part before the cursor. The
    /// callers keep `pos + payload.len()` within the bound. `now` is the packet's arrival.
    fn store(&mut self, now: Instant, pos: i64, payload: &[u8]) {
        let Some(cur) = self.cursor.as_mut() else {
            return;
        };
        let cursor_pos = cur.frame * FRAME_SAMPLES;
        // A payload longer than the whole ring keeps only its first MAX_BUFFERED_MS.
        let payload = &payload[..payload.len().min(MAX_BUFFERED_SAMPLES as usize)];
        let (mut at, mut data) = if pos < cursor_pos {
            let cut = usize::try_from(cursor_pos - pos).unwrap_or(usize::MAX);
            (cursor_pos, payload.get(cut..).unwrap_or(&[]))
        } else {
            (pos, payload)
        };
        let end = at + data.len() as i64;
        while !data.is_empty() {
            let frame = at.div_euclid(FRAME_SAMPLES);
            let offset = at.rem_euclid(FRAME_SAMPLES) as usize;
            let n = (FRAME_BYTES - offset).min(data.len());
            let slot = &mut self.slots[ring_index(frame)];
            if slot.frame != frame {
                slot.frame = frame;
                slot.filled = 0;
                slot.first_arrival = Some(now);
                slot.audio = [self.law.silence_byte(); FRAME_BYTES];
            }
            slot.audio[offset..offset + n].copy_from_slice(&data[..n]);
            slot.filled = (slot.filled + n as u16).min(FRAME_BYTES as u16);
            // `now` never goes backwards (clamped), so this is the latest contributing arrival.
            slot.arrived = Some(now);
            at += n as i64;
            data = &data[n..];
        }
        cur.buffered_end = cur.buffered_end.max(end);
        let buffered = (cur.buffered_end - cursor_pos).max(0);
        let buffered_ms = buffered.unsigned_abs() / SAMPLES_PER_MS as u64;
        self.stats.max_buffered_ms = self.stats.max_buffered_ms.max(buffered_ms);
        let w = whole_ms(self.reorder_window());
        self.stats.max_reorder_window_ms = self.stats.max_reorder_window_ms.max(w);
    }
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

/// The duration of `samples` 8 kHz samples (0 when negative).
fn samples_to_duration(samples: i64) -> Duration {
    Duration::from_micros(samples.max(0).unsigned_abs() * 125)
}

fn whole_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::pacer::PlayoutPacer;
    use crate::media::rtp;

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

    /// A 160-byte µ-law payload carrying `idx` in six nibble bytes; the rest is loud (0x55).
    /// Never all silence bytes.
    fn payload(idx: u32) -> [u8; FRAME_BYTES] {
        let mut p = [0x55; FRAME_BYTES];
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

    /// A punctual shell: runs every timeout due before an input, then feeds it, then drains.
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
            self.run_until(at);
            let d = self.jb.push(at, packet);
            assert!(self.jb.buffered_ms() <= MAX_BUFFERED_MS);
            self.drain(at);
            d
        }
        fn send(&mut self, at: Instant, seq: u16, ts: u32, idx: u32) -> Disposition {
            let p = payload(idx);
            self.push(at, &view(seq, ts, SSRC, false, &p))
        }
        fn run_until(&mut self, until: Instant) {
            while let Some(t) = self.jb.poll_timeout().filter(|t| *t <= until) {
                let before = self.out.len();
                self.drain(t);
                assert!(
                    self.out.len() > before,
                    "poll_timeout {t:?} released nothing"
                );
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
    }

    #[test]
    fn in_order_packets_are_released_at_their_arrival() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        assert_eq!(h.jb.poll_timeout(), None);
        assert_eq!(h.jb.poll_frame(t0), None);
        for i in 0..50u32 {
            let at = t0 + ms(20 * u64::from(i));
            let d = h.send(at, 100 + i as u16, 1000 + 160 * i, i);
            let expect = if i == 0 {
                Disposition::Resynchronised(ResyncReason::FirstPacket)
            } else {
                Disposition::Buffered
            };
            assert_eq!(d, expect);
            // Released at once: same instant, arrival recorded.
            let (t, f) = h.out.last().expect("released");
            assert_eq!((*t, f.arrived, f.concealed), (at, Some(at), false));
            assert_eq!(h.out.len(), i as usize + 1);
        }
        let s = h.jb.stats();
        assert_eq!((s.received, s.late, s.duplicates, s.lost), (50, 0, 0, 0));
        assert_eq!(
            (s.concealed_frames, s.max_depth_ms, s.buffered_ms),
            (0, 0, 0)
        );
        assert_eq!(s.reorder_window_ms, 0);
        // Time going backwards is ignored.
        assert_eq!(h.jb.poll_frame(t0), None);
    }

    #[test]
    fn a_silent_caller_gets_silence_frames_on_the_media_clock() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        for i in 0..10u32 {
            h.send(t0 + ms(20 * u64::from(i)), i as u16, 160 * i, i);
        }
        // Then nothing for 3 s (silence suppression, RFC 3389), and the caller resumes with the
        // timestamps advanced by the pause and the next sequence number (RFC 3551 §4.1).
        let last = t0 + ms(180);
        h.run_until(last + ms(3_000));
        let silent: Vec<Instant> = h.out[10..].iter().map(|(t, _)| *t).collect();
        assert!(h.out[10..].iter().all(|(_, f)| f.concealed));
        assert!(h.out[10..].iter().all(|(_, f)| f.audio == [0xFF; 160]));
        // The first silence frame is due 20 ms after the last packet, released after the grace.
        let grace = ms(MIN_CLOCK_GRACE_MS);
        assert_eq!(silent[0], last + ms(20) + grace);
        for (k, t) in silent.iter().enumerate() {
            assert_eq!(*t, silent[0] + ms(20 * k as u64), "one frame per 20 ms");
        }
        // 3 s after the last packet: 150 frame times, minus those still inside the grace.
        assert_eq!(silent.len() as u64, (3_000 - MIN_CLOCK_GRACE_MS) / 20);
        let p = payload(10 + 150);
        let resume = last + ms(3_000) + ms(20);
        let d = h.push(resume, &view(10, 160 * (10 + 150), SSRC, true, &p));
        assert_eq!(d, Disposition::Buffered);
        // The rest of the pause is released at once, then the new talkspurt: exactly 150 silence
        // frames stand for the 150 frame times of the pause, nothing more, nothing less.
        let idx = h.indices();
        assert_eq!(idx.len(), 10 + 150 + 1);
        assert!(idx[10..160].iter().all(Option::is_none));
        assert_eq!(idx[160], Some(160));
        assert_eq!(h.out[160].0, resume, "the talkspurt waits for nothing");
        let s = h.jb.stats();
        assert_eq!(
            (s.concealed_frames, s.lost, s.late, s.resyncs),
            (150, 0, 0, 0)
        );
        assert_eq!(
            s.clock_frames,
            silent.len() as u64 + 1,
            "one more came due at the instant the caller resumed"
        );
    }

    #[test]
    fn timestamps_that_did_not_advance_over_a_pause_play_at_once() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        for i in 0..5u32 {
            h.send(t0 + ms(20 * u64::from(i)), i as u16, 160 * i, i);
        }
        h.run_until(t0 + ms(1_000));
        let before = h.out.len();
        // The sender resumes 1 s later with the next timestamp: its audio lies before the cursor.
        let p = payload(5);
        let d = h.push(t0 + ms(1_000), &view(5, 800, SSRC, true, &p));
        assert_eq!(d, Disposition::Resynchronised(ResyncReason::LateStream));
        assert_eq!(h.out.len(), before + 1);
        assert_eq!(h.indices().last(), Some(&Some(5)));
        for i in 6..10u32 {
            h.send(t0 + ms(1_000 + 20 * u64::from(i - 5)), i as u16, 160 * i, i);
        }
        let played: Vec<u32> = h.indices().into_iter().flatten().collect();
        assert_eq!(played, (0..10).collect::<Vec<_>>(), "nothing dropped");
        assert_eq!(h.jb.stats().late, 0);
    }

    #[test]
    fn losses_on_a_clean_path_are_concealed_at_once() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        for i in 0..10u32 {
            if i == 3 || i == 6 || i == 7 {
                continue;
            }
            let at = t0 + ms(20 * u64::from(i));
            h.send(at, i as u16, 160 * i, i);
            // Each packet is released at its arrival, after the concealed gap before it.
            assert_eq!(h.out.last().map(|(t, _)| *t), Some(at));
        }
        let expect: Vec<Option<u32>> = (0..10)
            .map(|i| (![3, 6, 7].contains(&i)).then_some(i))
            .collect();
        assert_eq!(h.indices(), expect);
        let s = h.jb.stats();
        assert_eq!((s.lost, s.concealed_frames, s.max_depth_ms), (3, 3, 0));
    }

    #[test]
    fn reordering_widens_the_window_which_then_puts_frames_back_in_order() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        let at = |i: u64| t0 + ms(20 * i);
        for i in 0..3u32 {
            h.send(at(u64::from(i)), i as u16, 160 * i, i);
        }
        // 4 overtakes 3 on a path never seen reordering: 3 is concealed at once, then late.
        assert_eq!(h.send(at(4), 4, 640, 4), Disposition::Buffered);
        assert_eq!(h.send(at(4) + ms(5), 3, 480, 3), Disposition::Late);
        assert_eq!(h.jb.stats().reorder_window_ms, 5);
        // Next time a gap waits 5 ms: 6 overtakes 5 by 4 ms, and both play in order.
        h.send(at(6), 6, 960, 6);
        assert_eq!(h.indices().len(), 5, "6 waits for 5");
        assert_eq!(h.jb.poll_timeout(), Some(at(6) + ms(5)));
        assert_eq!(h.send(at(6) + ms(4), 5, 800, 5), Disposition::Buffered);
        assert_eq!(h.out.len(), 7);
        assert_eq!(h.out[6].0, at(6) + ms(4));
        // Duplicates are dropped.
        assert_eq!(h.send(at(6) + ms(6), 5, 800, 5), Disposition::Duplicate);
        assert_eq!(h.send(at(6) + ms(7), 1, 160, 1), Disposition::Duplicate);
        // A loss now costs the window: 8 arrives, 7 never does; 8 is released 5 ms later.
        h.send(at(8), 8, 1280, 8);
        h.run_until(at(8) + ms(4));
        assert_eq!(h.out.len(), 7);
        h.run_until(at(8) + ms(5));
        assert_eq!(h.out.len(), 9);
        assert_eq!(h.out[8].0, at(8) + ms(5));
        let expect: Vec<Option<u32>> = (0..9).map(|i| (i != 3 && i != 7).then_some(i)).collect();
        assert_eq!(h.indices(), expect);
        let s = h.jb.stats();
        assert_eq!(
            (
                s.reordered,
                s.duplicates,
                s.late,
                s.lost,
                s.concealed_frames
            ),
            (2, 2, 1, 1, 2)
        );
        assert_eq!(s.max_depth_ms, 5);
        // The window is forgotten after 10 s without reordering.
        for i in 9..600u32 {
            h.send(at(u64::from(i)), i as u16, 160 * i, i);
        }
        assert_eq!(h.jb.stats().reorder_window_ms, 0);
        assert_eq!(h.jb.stats().max_reorder_window_ms, 5);
    }

    #[test]
    fn the_reorder_window_never_exceeds_its_maximum() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        let at = |i: u64| t0 + ms(20 * i);
        h.send(at(0), 0, 0, 0);
        h.send(at(2), 2, 320, 2);
        assert_eq!(h.send(at(2) + ms(150), 1, 160, 1), Disposition::Late);
        assert_eq!(h.jb.stats().reorder_window_ms, MAX_REORDER_WINDOW_MS);
        h.send(at(10), 10, 1600, 10);
        let gap_end = at(10) + ms(MAX_REORDER_WINDOW_MS);
        assert_eq!(h.jb.poll_timeout(), Some(gap_end));
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
                // A frame leaves as soon as its last byte arrived.
                assert_eq!(h.out.len(), (len * (i as usize + 1)) / FRAME_BYTES);
            }
            let played: Vec<u8> = h.out.iter().flat_map(|(_, f)| f.audio).collect();
            assert_eq!(
                played, stream,
                "ptime {ptime}: bytes in order, nothing lost"
            );
            assert_eq!(h.jb.stats().partial_frames, 0);
            // Part of a frame waits for the packet that completes it: one packet interval.
            assert_eq!(h.jb.stats().max_depth_ms, u64::from(ptime));
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
        let third = &h.out[2].1;
        assert!(!third.concealed);
        assert_eq!(third.audio[..80], [0x14; 80]);
        assert_eq!(third.audio[80..], [0xFF; 80]);
        assert_eq!(
            h.out[2].0,
            t0 + ms(60),
            "released when the next packet shows the gap"
        );
        let s = h.jb.stats();
        assert_eq!((s.partial_frames, s.lost), (1, 1));
    }

    #[test]
    fn ssrc_change_resynchronises_after_the_held_audio() {
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
        let b = |k: u32| payload(100 + k);
        let first = b(0);
        let d = h.push(t0 + ms(420), &view(40_000, 77, 0xB0B, true, &first));
        assert_eq!(d, Disposition::Resynchronised(ResyncReason::SsrcChange));
        // A straggler of the old source is dropped while the new one is active.
        let old = payload(99);
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
        let played: Vec<Option<u32>> = h.indices();
        let expect: Vec<Option<u32>> = (0..=20).chain(100..120).map(Some).collect();
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
    fn timestamp_jumps_resynchronise_without_a_burst_of_silence() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        for i in 0..5u32 {
            h.send(t0 + ms(20 * u64::from(i)), i as u16, 160 * i, i);
        }
        // The next packet claims to be 10 minutes later.
        let p = payload(5);
        let d = h.push(t0 + ms(100), &view(5, 160 * 5 + 4_800_000, SSRC, false, &p));
        assert_eq!(d, Disposition::Resynchronised(ResyncReason::TimestampJump));
        for i in 6..10u32 {
            h.send(t0 + ms(20 * u64::from(i)), i as u16, 160 * i + 4_800_000, i);
        }
        let expect: Vec<Option<u32>> = (0..10).map(Some).collect();
        assert_eq!(h.indices(), expect);
        assert_eq!(h.jb.stats().resyncs, 1);
    }

    #[test]
    fn sequence_restart_needs_two_consecutive_packets() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        for i in 0..5u32 {
            h.send(t0 + ms(20 * u64::from(i)), i as u16, 160 * i, i);
        }
        assert_eq!(h.send(t0 + ms(100), 30_000, 800, 5), Disposition::Stray);
        assert_eq!(
            h.send(t0 + ms(120), 30_001, 960, 6),
            Disposition::Resynchronised(ResyncReason::SequenceRestart)
        );
        h.send(t0 + ms(140), 30_002, 1120, 7);
        let played: Vec<u32> = h.indices().into_iter().flatten().collect();
        assert_eq!(played, [0, 1, 2, 3, 4, 6, 7]);
        assert_eq!(h.jb.stats().strays, 1);
    }

    #[test]
    fn other_payload_types_and_empty_payloads_share_the_sequence() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        h.send(t0, 0, 0, 0);
        // Comfort noise (RFC 3389, PT 13) and an RFC 4733 event take sequence numbers 1 and 2.
        let cn = RtpHeaderView {
            payload_type: 13,
            ..view(1, 160, SSRC, false, &[0x40])
        };
        assert_eq!(h.push(t0 + ms(20), &cn), Disposition::OtherPayloadType);
        let ev = RtpHeaderView {
            payload_type: 101,
            ..view(2, 320, SSRC, false, &[1, 0x80, 0, 160])
        };
        assert_eq!(h.push(t0 + ms(40), &ev), Disposition::OtherPayloadType);
        assert_eq!(
            h.push(t0 + ms(50), &view(3, 480, SSRC, false, &[])),
            Disposition::Empty
        );
        h.send(t0 + ms(80), 4, 640, 4);
        let s = h.jb.stats();
        assert_eq!((s.lost, s.other_payload_types, s.empty_payloads), (0, 2, 1));
        // Frames 1–3 had no audio; frame 4 follows without waiting.
        assert_eq!(h.indices(), [Some(0), None, None, None, Some(4)]);
        assert_eq!(h.out[4].0, t0 + ms(80));
    }

    #[test]
    fn a_stalled_shell_gets_at_most_one_second_of_frames() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        h.send(t0, 0, 0, 0);
        h.drain(t0 + ms(10_000));
        let s = h.jb.stats();
        let clock = s.clock_frames;
        assert!((50..=51).contains(&clock), "{s:?}");
        assert!(s.overflow_dropped >= 440, "{s:?}");
        // Then one frame per 20 ms again.
        let next = h.jb.poll_timeout().expect("running");
        assert!(next > t0 + ms(10_000) && next <= t0 + ms(10_020));
    }

    /// Drives a 60 s stream whose sender clock runs `ppm` parts per million fast (negative: slow).
    fn drift(ppm: i64) -> (JitterStats, Vec<Option<u32>>) {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        let period_ns = 20_000_000i64 - 20_000_000 * ppm / 1_000_000;
        for i in 0..3_000u32 {
            let at = t0 + Duration::from_nanos((period_ns * i64::from(i)).unsigned_abs());
            h.send(at, i as u16, 160 * i, i);
        }
        (h.jb.stats(), h.indices())
    }

    #[test]
    fn clock_drift_neither_inserts_nor_skips_frames() {
        for ppm in [10_000, -10_000] {
            let (s, idx) = drift(ppm);
            assert_eq!(idx, (0..3_000).map(Some).collect::<Vec<_>>(), "{ppm} ppm");
            assert_eq!(
                (s.concealed_frames, s.late, s.max_depth_ms),
                (0, 0, 0),
                "{s:?}"
            );
        }
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

    /// One delivery of a packet (the emulator may deliver a packet twice).
    struct Delivery {
        at: Instant,
        idx: usize,
    }

    /// The network: 30 ms base delay plus a uniform extra delay of up to `jitter_ms` (which
    /// reorders packets), `loss` of the packets dropped, 2 % duplicated (delivered again with
    /// their own delay). `sent[i]` is when packet `i` left. The first and last packets arrive.
    fn emulate(rng: &mut Rng, sent: &[Instant], jitter_ms: f64, loss: f64) -> Vec<Delivery> {
        let mut out = Vec::new();
        let n = sent.len();
        for (idx, &t) in sent.iter().enumerate() {
            let delay =
                |rng: &mut Rng| t + Duration::from_secs_f64((30.0 + rng.unit() * jitter_ms) / 1e3);
            let keep = idx == 0 || idx == n - 1;
            if keep || rng.unit() >= loss {
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

    /// The pair test: our own [`PlayoutPacer`] sends a 60 s stream (a talkspurt of 20 s, a pause
    /// of 2 s, 38 s more), an impaired network carries it (up to 60 ms of jitter, 5 % loss, 2 %
    /// duplicates), and the relay receives it, all in virtual time. The stream the model gets is
    /// continuous: each sent frame exactly once and in order, or concealed exactly once; nothing
    /// inserted but the pause; the sequence numbers and timestamps of the pacer are understood.
    #[test]
    fn pacer_to_relay_over_an_impaired_network_in_virtual_time() {
        for seed in [0x9E37_79B9_7F4A_7C15u64, 1, 0xDEAD_BEEF, 42, 7_777_777] {
            for (jitter_ms, loss) in [(0.0, 0.0), (0.0, 0.05), (60.0, 0.05)] {
                pair(seed, jitter_ms, loss);
            }
        }
    }

    fn pair(seed: u64, jitter_ms: f64, loss: f64) {
        let t0 = Instant::now();
        let mut pacer = PlayoutPacer::new(Law::Mu, 0, SSRC, 65_000, u32::MAX - 50_000, t0);
        // 1,000 frames, a 2 s pause, 1,900 frames.
        let spurts = [(0u32, 1_000u32, t0), (1_000, 2_900, t0 + ms(22_000))];
        let mut packets: Vec<(Instant, Vec<u8>)> = Vec::new();
        for (from, to, start) in spurts {
            let audio: Vec<u8> = (from..to).flat_map(payload).collect();
            pacer.push(start, 1, &audio);
            while let Some(t) = pacer.poll_timeout() {
                let tx = pacer.poll_transmit(t).expect("due");
                packets.push((t, tx.packet.to_vec()));
            }
        }
        let sent: Vec<Instant> = packets.iter().map(|p| p.0).collect();
        let mut rng = Rng(seed);
        let deliveries = emulate(&mut rng, &sent, jitter_ms, loss);
        let mut h = Harness::new(t0);
        let mut first_seen = vec![None; packets.len()];
        for d in &deliveries {
            let packet = rtp::parse(&packets[d.idx].1).expect("our own RTP");
            let disposition = h.push(d.at, &packet);
            first_seen[d.idx].get_or_insert(disposition);
        }
        let s = h.jb.stats();
        let ctx = format!("seed {seed:#x} jitter {jitter_ms} loss {loss}: {s:?}");
        let idx = h.indices();
        // Where the pause is in the output: frames before it are the first talkspurt.
        let first_spurt = &idx[..1_000];
        let pause = &idx[1_000..idx.len() - 1_900];
        let second_spurt = &idx[idx.len() - 1_900..];
        // Every frame of the talkspurts is itself or concealed, in its place: nothing inserted,
        // nothing removed, nothing out of order.
        for (k, f) in first_spurt.iter().enumerate() {
            assert!(
                f.is_none() || *f == Some(k as u32),
                "frame {k} is {f:?}; {ctx}"
            );
        }
        for (k, f) in second_spurt.iter().enumerate() {
            let want = 1_000 + k as u32;
            assert!(
                f.is_none() || *f == Some(want),
                "frame {want} is {f:?}; {ctx}"
            );
        }
        // The pause is 2 s of silence frames (100), give or take the timing of its edges.
        assert!(pause.iter().all(Option::is_none), "{ctx}");
        assert!(
            (98..=102).contains(&pause.len()),
            "pause of {}; {ctx}",
            pause.len()
        );
        // Every frame lost or late is concealed exactly once.
        let missing = first_seen
            .iter()
            .filter(|d| {
                !matches!(
                    d,
                    Some(Disposition::Buffered | Disposition::Resynchronised(_))
                )
            })
            .count();
        let concealed_in_speech = first_spurt
            .iter()
            .chain(second_spurt)
            .filter(|f| f.is_none())
            .count();
        assert_eq!(concealed_in_speech, missing, "{ctx}");
        assert_eq!(s.lost + s.late, missing as u64, "{ctx}");
        assert_eq!(
            (s.resyncs, s.strays, s.overflow_dropped),
            (0, 0, 0),
            "{ctx}"
        );
        if jitter_ms == 0.0 {
            // No reordering: zero delay and nothing late.
            assert_eq!(
                (s.late, s.max_depth_ms, s.max_reorder_window_ms),
                (0, 0, 0),
                "{ctx}"
            );
        } else {
            assert!(s.reordered > 500, "{ctx}");
            assert!(
                s.late < 30,
                "late packets stay rare once the window adapted; {ctx}"
            );
            assert!(s.max_reorder_window_ms <= MAX_REORDER_WINDOW_MS, "{ctx}");
        }
        if loss == 0.0 {
            assert_eq!(missing, 0, "{ctx}");
        } else {
            assert!(s.lost > 90 && s.lost < 220, "about 5 % lost; {ctx}");
            assert!(s.duplicates > 20, "about 2 % duplicated; {ctx}");
        }
        let rr = h.jb.receiver_report().expect("source known");
        assert_eq!(rr.expected, packets.len() as u64, "{ctx}");
        if std::env::var_os("JITTER_TRACE").is_some() {
            eprintln!(
                "pause {} concealed {concealed_in_speech}; {ctx}",
                pause.len()
            );
        }
    }

    #[test]
    fn arbitrary_packets_never_panic_and_the_output_stays_bounded() {
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
        h.run_until(now + ms(2_000));
        let s = h.jb.stats();
        assert_eq!(s.emitted_frames, h.out.len() as u64);
        assert!(h.out.iter().all(|(_, f)| f.audio.len() == FRAME_BYTES));
    }

    #[test]
    fn frames_carry_the_arrival_of_the_packet_that_completed_them() {
        let t0 = Instant::now();
        // ptime 10: two packets fill one frame; the second (the one completing it) counts.
        let mut h = Harness::new(t0);
        for i in 0..4u32 {
            let p = [0x20 + i as u8; 80];
            h.push(
                t0 + ms(10 * u64::from(i)),
                &view(i as u16, 80 * i, SSRC, false, &p),
            );
        }
        assert_eq!(h.out[0].1.arrived, Some(t0 + ms(10)));
        assert_eq!(h.out[1].1.arrived, Some(t0 + ms(30)));
        assert_eq!(h.out[1].0, t0 + ms(30));
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
}
