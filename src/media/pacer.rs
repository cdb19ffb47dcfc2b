//! Playout pacing: model audio in, 20 ms G.711 RTP packets out on an absolute schedule.
//!
//! [`PlayoutPacer`] owns the outbound RTP stream of one call: its SSRC, sequence numbers, media
//! clock (RTP timestamps) and the queue of model audio not yet sent. Audio arrives in chunks of any
//! length, usually faster than real time, tagged with the id of the assistant item it belongs to; it
//! leaves as one 160-byte (20 ms at 8 kHz) payload per packet (RFC 3551 §4.5.14, ptime 20).
//!
//! Invariants:
//! - Schedule: within a talkspurt, frame `n` is due at exactly `spurt_start + n × 20 ms`; a late
//!   shell gets the due frames back to back without the schedule moving, so there is no drift over
//!   any call length. Only lateness above [`REANCHOR_AFTER_MS`] re-anchors the schedule.
//! - A talkspurt starts when audio is pushed into an empty queue; it is anchored at
//!   `max(now, end of the previous spurt's schedule)`, so packets are never closer than 20 ms apart
//!   on schedule, and its first packet carries the marker bit (RFC 3551 §4.1).
//! - Sequence numbers are +1 per packet across spurts, wrapping at 2^16 (RFC 3550 §5.1).
//! - Timestamps (8 kHz samples) follow a media clock anchored at creation: +160 per packet within a
//!   spurt; a new spurt starts at the elapsed time since creation rounded to whole frames, never
//!   earlier than the frame after the last packet sent (RFC 3550 §5.1, RFC 3551 §4.1).
//! - Continuous RTP ([`PlayoutPacer::set_send_silence`], off by default): while no audio is queued,
//!   one packet of the law's silence is due every 20 ms on the same schedule (what phones and PBXs
//!   send), so media-inactivity timers of SBCs, PBXs and carriers never fire and NAT bindings stay
//!   open. Silence packets continue the sequence numbers and timestamps (+1, +160) and carry no
//!   marker (but the stream's first packet, and one after a re-anchor); the next audio starts at the next 20 ms slot, as a marked talkspurt whose timestamp
//!   is the previous one + 160. A shell more than [`REANCHOR_AFTER_MS`] late re-anchors the silence
//!   schedule at `now` as it does a talkspurt's.
//! - A packet never mixes two items: the end of an item's audio, or of the queue, is padded with
//!   the law's silence byte. The queue holds at most [`MAX_QUEUED_BYTES`]; audio beyond it is dropped
//!   (newest first) and counted.
//!
//! - Depth bounds ([`PlayoutPacer::set_depth_bounds`], off by default), for a model that streams
//!   its audio continuously at real time (GPT-Live) on a clock that drifts against ours: the
//!   queue's lowest depth over each window of [`DepthBounds::window_frames`] packets is kept
//!   between [`DepthBounds::low_ms`] and [`DepthBounds::high_ms`]. Too shallow (an underrun is
//!   near): one packet of silence is sent in place of the next *quiet* frame, which stays queued.
//!   Too deep (delay is building): the next quiet frame is skipped. A frame is quiet when
//!   [`is_quiet`]; speech frames are never skipped, delayed apart or cut.
//! - Input lag ([`PlayoutPacer::set_input_lag_ms`]): such a stream is paced by the audio we send
//!   the model, so a stall of our input (the jitter buffer's clock grace when the caller's
//!   packets stop at the end of a talkspurt) stalls the stream by as much. Both bounds are raised
//!   by that lag, so a stall never empties the queue in the middle of a word.
//! - Pre-roll: with depth bounds, a talkspurt starts only once the queue holds the low bound
//!   (plus the input lag), at the stream's start and after an underrun alike; until then the
//!   audio stays queued (and continuous RTP sends silence).
//!
//! No I/O: the shell sends the packets and reads the clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::g711::{Law, BYTES_PER_MS, FRAME_BYTES, FRAME_MS};
use super::rtp;

/// Most audio held in the queue, in ms: 5 minutes.
pub const MAX_QUEUED_MS: u64 = 300_000;
/// Most audio held in the queue, in bytes (8 kHz G.711: 8 bytes per ms): 2,400,000.
///
/// [`PlayoutPacer::push`] keeps what fits and drops the rest of the chunk (the newest audio); the
/// dropped bytes are counted in [`PacerStats::dropped_bytes_at_bound`] and in the item's
/// [`ItemStats::dropped_at_bound`]. Queued audio is never dropped to make room.
pub const MAX_QUEUED_BYTES: usize = (MAX_QUEUED_MS * BYTES_PER_MS) as usize;
/// Lateness in ms beyond which [`PlayoutPacer::poll_transmit`] re-anchors the schedule at `now`
/// instead of sending the overdue frames back to back.
pub const REANCHOR_AFTER_MS: u64 = 200;
/// With continuous silence, [`PlayoutPacer::poll_transmit_ahead`] puts the silence schedule's
/// due times this many ms after the caller's packets (once per call).
pub const PHASE_LEAD_MS: u64 = 5;
/// How many items (the most recently seen) keep their byte accounting.
pub const TRACKED_ITEMS: usize = 16;
/// The [`Transmit::item`] of a silence packet sent between talkspurts (continuous RTP); real
/// items are tagged from 1.
pub const SILENCE_ITEM: u64 = 0;
/// Bytes in one outgoing packet: the 12-byte RTP header and one 160-byte (20 ms) G.711 frame.
pub const PACKET_BYTES: usize = rtp::HEADER_BYTES + FRAME_BYTES;

const FRAME: Duration = Duration::from_millis(FRAME_MS);
const REANCHOR_AFTER: Duration = Duration::from_millis(REANCHOR_AFTER_MS);
/// 8 kHz samples per 20 ms frame, as an RTP timestamp increment.
const FRAME_SAMPLES: u64 = FRAME_BYTES as u64;

/// RMS (fraction of full scale) below which a frame counts as quiet: -46 dBFS.
pub const QUIET_RMS: f64 = 0.005;

/// Whether a G.711 frame is quiet enough to be skipped or delayed by the depth bounds: its RMS
/// is below [`QUIET_RMS`] (digital silence, or the gap between words).
pub fn is_quiet(law: Law, frame: &[u8]) -> bool {
    super::g711::rms(law, frame) < QUIET_RMS
}

/// Bounds of the playout queue for a continuous stream (module docs). Depths are the queue's
/// lowest over a window, measured before each packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepthBounds {
    /// Lowest depth below which a silence packet is inserted at the next quiet frame, in ms.
    pub low_ms: u64,
    /// Lowest depth above which the next quiet frame is skipped, in ms.
    pub high_ms: u64,
    /// Packets (20 ms each) per measurement window.
    pub window_frames: u32,
}

impl DepthBounds {
    /// For GPT-Live's 100 ms chunks at real time: keep at least 40 ms in hand before each chunk
    /// arrives, at most 120 ms (both plus the input lag, [`PlayoutPacer::set_input_lag_ms`]);
    /// measured over 1 s. The queue then stays below 240 ms + the input lag (120 ms + one chunk
    /// + one frame) while the server's clock drifts by 0.1 %.
    pub const CONTINUOUS: DepthBounds = DepthBounds {
        low_ms: 40,
        high_ms: 120,
        window_frames: 50,
    };
}

/// The correction the depth bounds asked for, applied at the next quiet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Correction {
    Insert,
    Skip,
}

/// One RTP packet that is due now, handed to the shell to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The whole RTP packet (RFC 3550 §5.1): 12-byte header + 160 bytes (20 ms) of G.711.
    pub packet: [u8; PACKET_BYTES],
    /// The assistant item whose audio this packet carries ([`SILENCE_ITEM`] for continuous RTP).
    pub item: u64,
    /// Bytes (= 8 kHz samples) of real audio in the payload, 1–160 (0 for a silence packet); the
    /// rest is silence padding.
    pub audio_bytes: usize,
    /// The scheduled send time of this packet (the shell may be sending it later than this).
    pub due: Instant,
}

/// What [`PlayoutPacer::flush`] dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Bytes of queued audio dropped per item (8 bytes per ms), in queue order, one entry per item.
    pub per_item: Vec<(u64, usize)>,
    /// Total bytes dropped.
    pub total_bytes: usize,
}

impl FlushReport {
    /// Bytes of `item`'s audio that the flush dropped (0 if none).
    pub fn dropped_bytes(&self, item: u64) -> usize {
        self.per_item
            .iter()
            .filter(|(i, _)| *i == item)
            .map(|(_, b)| *b)
            .sum()
    }
}

/// Counters over the pacer's lifetime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacerStats {
    /// RTP packets handed out by [`PlayoutPacer::poll_transmit`].
    pub packets_sent: u64,
    /// Payload bytes handed out (160 per packet, padding included).
    pub bytes_sent: u64,
    /// Real audio bytes handed out (padding excluded).
    pub audio_bytes_sent: u64,
    /// Bytes of pushed audio dropped because the queue was at [`MAX_QUEUED_BYTES`].
    pub dropped_bytes_at_bound: u64,
    /// Bytes of queued audio dropped by [`PlayoutPacer::flush`].
    pub flushed_bytes: u64,
    /// Talkspurts started (first packet marked, RFC 3551 §4.1).
    pub spurts: u64,
    /// Silence packets sent between talkspurts (continuous RTP; included in `packets_sent`).
    pub silence_packets: u64,
    /// Schedules re-anchored because the shell was more than [`REANCHOR_AFTER_MS`] late.
    pub reanchors: u64,
    /// Depth bounds: silence packets inserted before a quiet frame (queue too shallow).
    pub drift_inserted_frames: u64,
    /// Depth bounds: quiet frames skipped (queue too deep).
    pub drift_skipped_frames: u64,
    /// Depth bounds: the largest queue depth seen before a packet, in bytes.
    pub max_depth_bytes: u64,
}

/// Byte accounting of one assistant item (8 bytes per ms of audio).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ItemStats {
    /// Bytes pushed for this item, including any dropped at the bound.
    pub received: u64,
    /// Bytes of real audio handed out as RTP. Always ≤ `received`.
    pub played: u64,
    /// Bytes dropped at [`MAX_QUEUED_BYTES`].
    pub dropped_at_bound: u64,
    /// Bytes dropped by [`PlayoutPacer::flush`].
    pub flushed: u64,
}

#[derive(Debug)]
struct Segment {
    item: u64,
    len: usize,
}

#[derive(Debug)]
struct Spurt {
    /// When frame 0 of this schedule is due.
    start: Instant,
    /// Frames of this schedule handed out so far.
    sent: u64,
    /// Media-clock frame index (20 ms frames since creation) of frame 0.
    first_frame: u64,
    /// Whether the next packet is the first of a talkspurt.
    marker: bool,
}

/// Paces model audio out as 20 ms G.711 RTP packets for one call. See the module docs.
#[derive(Debug)]
pub struct PlayoutPacer {
    law: Law,
    payload_type: u8,
    ssrc: u32,
    next_seq: u16,
    first_ts: u32,
    created: Instant,
    last_now: Instant,
    /// Queued audio bytes, oldest first.
    audio: VecDeque<u8>,
    /// Item boundaries of `audio`, oldest first; lengths sum to `audio.len()`, none is 0.
    segments: VecDeque<Segment>,
    /// The active schedule; `Some` only while audio is queued (with depth bounds, from the
    /// pre-roll on).
    spurt: Option<Spurt>,
    /// Earliest start of the next spurt: where the previous schedule would have sent next.
    next_free: Instant,
    /// Media-clock frame index of the last packet sent.
    last_frame: Option<u64>,
    /// Accounting of the most recent items, oldest first, at most [`TRACKED_ITEMS`].
    items: VecDeque<(u64, ItemStats)>,
    /// Whether silence packets fill the time between talkspurts.
    send_silence: bool,
    /// Whether the silence schedule took its phase from the caller's packets.
    phase_locked: bool,
    /// Depth bounds for a continuous stream, and the window being measured.
    bounds: Option<DepthBounds>,
    window_min: usize,
    window_packets: u32,
    correction: Option<Correction>,
    /// How long the stream can stall because our input to the model stalls, in ms.
    input_lag_ms: u64,
    stats: PacerStats,
}

impl PlayoutPacer {
    /// Creates an idle pacer for one outbound stream (RFC 3550 §5.1).
    ///
    /// `payload_type` is the negotiated PT (0 PCMU / 8 PCMA, RFC 3551 table 4); `ssrc`, `first_seq`
    /// and `first_ts` should be random (RFC 3550 §5.1, §8). `now` anchors the media clock: a packet
    /// sent `d` after `now` carries about `first_ts + d × 8 kHz` (rounded to 160-sample frames).
    pub fn new(
        law: Law,
        payload_type: u8,
        ssrc: u32,
        first_seq: u16,
        first_ts: u32,
        now: Instant,
    ) -> Self {
        PlayoutPacer {
            law,
            payload_type,
            ssrc,
            next_seq: first_seq,
            first_ts,
            created: now,
            last_now: now,
            audio: VecDeque::new(),
            segments: VecDeque::new(),
            spurt: None,
            next_free: now,
            last_frame: None,
            items: VecDeque::with_capacity(TRACKED_ITEMS + 1),
            send_silence: false,
            phase_locked: false,
            bounds: None,
            window_min: usize::MAX,
            window_packets: 0,
            correction: None,
            input_lag_ms: 0,
            stats: PacerStats::default(),
        }
    }

    /// Keeps the queue within `bounds` for a continuous model stream (module docs); `None` (the
    /// default) turns the correction off.
    pub fn set_depth_bounds(&mut self, bounds: Option<DepthBounds>) {
        self.bounds = bounds;
        self.window_min = usize::MAX;
        self.window_packets = 0;
        self.correction = None;
    }

    /// With depth bounds: how long (ms) the model's stream can stall because the input it is
    /// paced by stalls (module docs), e.g. the jitter buffer's clock grace
    /// ([`crate::media::jitter::JitterStats::clock_grace_ms`]). Raises both bounds and the
    /// pre-roll by as much; takes effect from the next packet (no window is restarted).
    pub fn set_input_lag_ms(&mut self, lag_ms: u64) {
        self.input_lag_ms = lag_ms;
    }

    /// The low bound in force, in bytes (0 without depth bounds): the pre-roll of a talkspurt.
    fn low_bytes(&self) -> usize {
        self.bounds.map_or(0, |b| {
            usize::try_from((b.low_ms + self.input_lag_ms) * BYTES_PER_MS).unwrap_or(usize::MAX)
        })
    }

    /// Depth bounds: notes the queue depth before a packet and, at the end of a window, decides
    /// the correction.
    fn measure_depth(&mut self) {
        let Some(b) = self.bounds else {
            return;
        };
        let depth = self.audio.len();
        self.stats.max_depth_bytes = self.stats.max_depth_bytes.max(depth as u64);
        self.window_min = self.window_min.min(depth);
        self.window_packets += 1;
        if self.window_packets >= b.window_frames.max(1) {
            let min_ms = self.window_min as u64 / BYTES_PER_MS;
            self.correction = if min_ms < b.low_ms + self.input_lag_ms {
                Some(Correction::Insert)
            } else if min_ms > b.high_ms + self.input_lag_ms {
                Some(Correction::Skip)
            } else {
                None
            };
            self.window_min = usize::MAX;
            self.window_packets = 0;
        }
    }

    /// Whether the front frame of the queue is whole (within one item) and quiet.
    fn front_frame_quiet(&self) -> bool {
        let whole = self
            .segments
            .front()
            .is_some_and(|seg| seg.len >= FRAME_BYTES);
        whole && {
            let (a, b) = self.audio.as_slices();
            if a.len() >= FRAME_BYTES {
                is_quiet(self.law, &a[..FRAME_BYTES])
            } else {
                let frame: Vec<u8> = a.iter().chain(b).take(FRAME_BYTES).copied().collect();
                is_quiet(self.law, &frame)
            }
        }
    }

    /// Turns continuous RTP on or off (module docs): with `true`, the first silence packet is due
    /// at once (or where the current schedule would send next), then one every 20 ms while no
    /// audio is queued; [`poll_timeout`](Self::poll_timeout) is then never `None`.
    pub fn set_send_silence(&mut self, on: bool) {
        self.send_silence = on;
    }

    /// Queues `audio` (G.711 bytes of this pacer's law, any length) for `item`; returns the bytes
    /// accepted.
    ///
    /// Bytes that would take the queue beyond [`MAX_QUEUED_BYTES`] (5 minutes) are dropped and
    /// counted. If no talkspurt is running (the queue was empty, or with depth bounds held less
    /// than the pre-roll), this starts one anchored at `max(now, end of the previous schedule)`;
    /// its first packet is marked. With depth bounds it starts only once the queue holds the
    /// pre-roll (module docs).
    pub fn push(&mut self, now: Instant, item: u64, audio: &[u8]) -> usize {
        let now = self.clamp(now);
        let room = MAX_QUEUED_BYTES.saturating_sub(self.audio.len());
        let take = audio.len().min(room);
        let dropped = (audio.len() - take) as u64;
        let account = self.account(item);
        account.received += audio.len() as u64;
        account.dropped_at_bound += dropped;
        self.stats.dropped_bytes_at_bound += dropped;
        if take == 0 {
            return 0;
        }
        self.audio.extend(&audio[..take]);
        match self.segments.back_mut() {
            Some(last) if last.item == item => last.len += take,
            _ => self.segments.push_back(Segment { item, len: take }),
        }
        if self.spurt.is_none() && self.audio.len() >= self.low_bytes() {
            // The pre-roll (if any) is in hand: a fresh measurement window.
            self.window_min = usize::MAX;
            self.window_packets = 0;
            // With continuous silence, the talkspurt takes the slot of the next silence packet
            // (even if the shell has not sent it yet) and the next timestamp.
            let continuous = self.send_silence
                && now.saturating_duration_since(self.next_free) <= REANCHOR_AFTER;
            let start = if continuous {
                self.next_free
            } else {
                now.max(self.next_free)
            };
            let first_frame = match self.last_frame {
                Some(last) if continuous => last.saturating_add(1),
                _ => media_frame(self.created, self.last_frame, start),
            };
            self.spurt = Some(Spurt {
                start,
                sent: 0,
                first_frame,
                marker: true,
            });
            self.stats.spurts += 1;
        }
        take
    }

    /// Returns the next packet if it is due at `now`, else `None`. Call repeatedly until `None`:
    /// after a late wake-up several packets are due and come out back to back.
    ///
    /// Frame `n` of a spurt is due at `spurt_start + n × 20 ms`. If the oldest due frame is more than
    /// [`REANCHOR_AFTER_MS`] late, the schedule is re-anchored at `now` (that packet is marked and its
    /// timestamp jumps by the elapsed media time); no audio is dropped either way.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let now = self.clamp(now);
        let last_frame = self.last_frame;
        let created = self.created;
        if self.spurt.is_none() && self.send_silence {
            return self.poll_silence(now);
        }
        let spurt = self.spurt.as_mut()?;
        let mut due = spurt.start + frames(spurt.sent);
        if now < due {
            return None;
        }
        if now - due > REANCHOR_AFTER {
            spurt.start = now;
            spurt.sent = 0;
            spurt.first_frame = media_frame(created, last_frame, now);
            spurt.marker = true;
            due = now;
            self.stats.reanchors += 1;
        }
        let marker = std::mem::take(&mut spurt.marker);
        let frame_index = spurt.first_frame + spurt.sent;
        spurt.sent += 1;
        let next_due = spurt.start + frames(spurt.sent);

        self.measure_depth();
        match self.correction {
            Some(Correction::Insert) if self.front_frame_quiet() => {
                // Too shallow: a packet of silence now, the quiet frame stays queued.
                self.correction = None;
                self.stats.drift_inserted_frames += 1;
                let packet = self.silent_packet(marker, frame_index);
                self.next_seq = self.next_seq.wrapping_add(1);
                self.last_frame = Some(frame_index);
                self.stats.packets_sent += 1;
                self.stats.bytes_sent += FRAME_BYTES as u64;
                let item = self.segments.front().map_or(SILENCE_ITEM, |s| s.item);
                return Some(Transmit {
                    packet,
                    item,
                    audio_bytes: 0,
                    due,
                });
            }
            Some(Correction::Skip)
                if self.audio.len() >= 2 * FRAME_BYTES && self.front_frame_quiet() =>
            {
                // Too deep: skip the quiet frame; the next one goes in this packet.
                self.correction = None;
                self.stats.drift_skipped_frames += 1;
                self.audio.drain(..FRAME_BYTES);
                if let Some(seg) = self.segments.front_mut() {
                    seg.len -= FRAME_BYTES;
                    let item = seg.item;
                    if seg.len == 0 {
                        self.segments.pop_front();
                    }
                    self.account(item).played += FRAME_BYTES as u64;
                }
            }
            _ => {}
        }

        // Cut at most one frame from the front item; pad the rest with silence.
        let (item, audio_bytes) = match self.segments.front_mut() {
            Some(seg) => {
                let n = seg.len.min(FRAME_BYTES);
                seg.len -= n;
                let item = seg.item;
                if seg.len == 0 {
                    self.segments.pop_front();
                }
                (item, n)
            }
            // Unreachable while the invariant holds (spurt is Some only with queued audio).
            None => {
                self.spurt = None;
                return None;
            }
        };
        let mut packet = self.silent_packet(marker, frame_index);
        for (dst, src) in packet[rtp::HEADER_BYTES..]
            .iter_mut()
            .zip(self.audio.drain(..audio_bytes))
        {
            *dst = src;
        }
        self.next_seq = self.next_seq.wrapping_add(1);
        self.last_frame = Some(frame_index);
        if self.audio.is_empty() {
            self.spurt = None;
            self.next_free = next_due;
        }

        self.stats.packets_sent += 1;
        self.stats.bytes_sent += FRAME_BYTES as u64;
        self.stats.audio_bytes_sent += audio_bytes as u64;
        self.account(item).played += audio_bytes as u64;
        Some(Transmit {
            packet,
            item,
            audio_bytes,
            due,
        })
    }

    /// When the next packet is due: `Some` while audio is queued (possibly already past), or always
    /// with continuous RTP on; `None` when idle otherwise. The shell should call
    /// [`poll_transmit`](Self::poll_transmit) at that instant.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.spurt {
            Some(s) => Some(s.start + frames(s.sent)),
            None if self.send_silence => Some(self.next_free),
            None => None,
        }
    }

    /// Like [`poll_transmit`](Self::poll_transmit), but a packet due within `ahead` of `now`
    /// leaves now (the shell is awake anyway, e.g. for a caller packet). At most one packet is
    /// sent early per call; its [`Transmit::due`] is `now`. A talkspurt keeps its absolute
    /// schedule. Continuous silence takes its phase from the first such call: if the next silence
    /// packet is due later than `ahead`, it is postponed to [`PHASE_LEAD_MS`] after one frame
    /// from `now` (once per call), so when the caller sends every 20 ms our packets leave with
    /// its packets instead of on a timer of their own; talkspurts start in the same phase.
    pub fn poll_transmit_ahead(&mut self, now: Instant, ahead: Duration) -> Option<Transmit> {
        let now = self.clamp(now);
        let next = self.poll_timeout()?;
        if !self.phase_locked && self.spurt.is_none() && self.send_silence {
            self.phase_locked = true;
            if next > now + ahead {
                // Silence out of phase with the caller's packets: move the next silence packet
                // to just after the caller's next one, once per call (a single gap of up to 25 ms
                // instead of 20; the clocks of both ends then keep the phase).
                self.next_free = self
                    .next_free
                    .max(now + FRAME + Duration::from_millis(PHASE_LEAD_MS));
                return None;
            }
        }
        if next <= now || next > now + ahead {
            return self.poll_transmit(now);
        }
        let t = if self.spurt.is_some() {
            // Frame `sent` leaves now; the next one stays on the absolute schedule.
            self.poll_transmit(next)
        } else {
            self.poll_silence(next)
        };
        // `poll_transmit(next)` moved the clock to `next`; time is `now`.
        self.last_now = now;
        t.map(|t| Transmit { due: now, ..t })
    }

    /// The silence packet due at `now` between talkspurts (continuous RTP), if any.
    fn poll_silence(&mut self, now: Instant) -> Option<Transmit> {
        let mut due = self.next_free;
        if now < due {
            return None;
        }
        // No depth measurement here: between talkspurts the pre-roll restores the low bound.
        // The stream's first packet is marked (it starts the stream, RFC 3551 §4.1), and so is one
        // whose timestamp jumps after a stall; the others continue without a marker.
        let mut marker = self.last_frame.is_none();
        let frame_index = if now - due > REANCHOR_AFTER {
            self.stats.reanchors += 1;
            due = now;
            marker = true;
            media_frame(self.created, self.last_frame, now)
        } else {
            self.last_frame.map_or_else(
                || media_frame(self.created, None, due),
                |last| last.saturating_add(1),
            )
        };
        let packet = self.silent_packet(marker, frame_index);
        self.next_seq = self.next_seq.wrapping_add(1);
        self.last_frame = Some(frame_index);
        self.next_free = due + FRAME;
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += FRAME_BYTES as u64;
        self.stats.silence_packets += 1;
        Some(Transmit {
            packet,
            item: SILENCE_ITEM,
            audio_bytes: 0,
            due,
        })
    }

    /// Drops all queued audio (barge-in) and reports the bytes dropped per item.
    ///
    /// Packets already returned by [`poll_transmit`](Self::poll_transmit) are the only audio that
    /// left. The next [`push`](Self::push) starts a new, marked talkspurt no earlier than where the
    /// flushed schedule would have sent its next packet (at most 20 ms after the last one was due).
    pub fn flush(&mut self) -> FlushReport {
        let mut report = FlushReport::default();
        let segments = std::mem::take(&mut self.segments);
        for seg in segments {
            report.total_bytes += seg.len;
            self.account(seg.item).flushed += seg.len as u64;
            match report.per_item.iter_mut().find(|(i, _)| *i == seg.item) {
                Some((_, b)) => *b += seg.len,
                None => report.per_item.push((seg.item, seg.len)),
            }
        }
        self.audio.clear();
        self.stats.flushed_bytes += report.total_bytes as u64;
        if let Some(s) = self.spurt.take() {
            self.next_free = s.start + frames(s.sent);
        }
        report
    }

    /// Bytes of `item`'s real audio handed out as RTP so far (8 bytes per ms); 0 for an unknown item
    /// or one no longer among the last [`TRACKED_ITEMS`].
    pub fn played_bytes(&self, item: u64) -> u64 {
        self.item_stats(item).map_or(0, |s| s.played)
    }

    /// Bytes pushed for `item` so far (8 bytes per ms), including any dropped at the bound; 0 for an
    /// unknown item or one no longer among the last [`TRACKED_ITEMS`].
    pub fn received_bytes(&self, item: u64) -> u64 {
        self.item_stats(item).map_or(0, |s| s.received)
    }

    /// Full byte accounting of `item`, if it is among the last [`TRACKED_ITEMS`] items seen.
    pub fn item_stats(&self, item: u64) -> Option<ItemStats> {
        self.items.iter().find(|(i, _)| *i == item).map(|(_, s)| *s)
    }

    /// Bytes of audio queued and not yet sent (8 bytes per ms).
    pub fn queued_bytes(&self) -> usize {
        self.audio.len()
    }

    /// Lifetime counters.
    pub fn stats(&self) -> PacerStats {
        self.stats
    }

    /// The SSRC of this stream (RFC 3550 §8).
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The sequence number the next packet will carry (RFC 3550 §5.1).
    pub fn next_sequence(&self) -> u16 {
        self.next_seq
    }

    fn clamp(&mut self, now: Instant) -> Instant {
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    /// A packet with the next sequence number and the timestamp of media frame `frame_index`,
    /// its payload the law's silence.
    fn silent_packet(&self, marker: bool, frame_index: u64) -> [u8; PACKET_BYTES] {
        let mut packet = [self.law.silence_byte(); PACKET_BYTES];
        let ts = self
            .first_ts
            .wrapping_add(frame_index.wrapping_mul(FRAME_SAMPLES) as u32);
        packet[..rtp::HEADER_BYTES].copy_from_slice(&rtp::header(
            self.payload_type,
            marker,
            self.next_seq,
            ts,
            self.ssrc,
        ));
        packet
    }

    fn account(&mut self, item: u64) -> &mut ItemStats {
        let pos = match self.items.iter().position(|(i, _)| *i == item) {
            Some(pos) => pos,
            None => {
                if self.items.len() == TRACKED_ITEMS {
                    self.items.pop_front();
                }
                self.items.push_back((item, ItemStats::default()));
                self.items.len() - 1
            }
        };
        &mut self.items[pos].1
    }
}

/// Duration of `n` frames of 20 ms.
fn frames(n: u64) -> Duration {
    Duration::from_millis(FRAME_MS.saturating_mul(n))
}

/// Media-clock frame index for a spurt starting at `at`: time since `created` in whole 20 ms frames
/// (rounded to nearest), but at least one past the last frame sent.
fn media_frame(created: Instant, last_frame: Option<u64>, at: Instant) -> u64 {
    let frame_ns = FRAME.as_nanos();
    let elapsed = at.saturating_duration_since(created).as_nanos();
    let rounded = u64::try_from((elapsed + frame_ns / 2) / frame_ns).unwrap_or(u64::MAX);
    match last_frame {
        Some(last) => rounded.max(last.saturating_add(1)),
        None => rounded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn pacer(t0: Instant) -> PlayoutPacer {
        PlayoutPacer::new(Law::Mu, 0, 0xABCD, 65_530, u32::MAX - 500, t0)
    }

    struct Sent {
        seq: u16,
        ts: u32,
        marker: bool,
        payload: Vec<u8>,
        t: Transmit,
    }

    fn decode(t: Transmit) -> Sent {
        let v = rtp::parse(&t.packet).expect("valid RTP");
        assert_eq!(v.payload.len(), FRAME_BYTES);
        assert_eq!(v.ssrc, 0xABCD);
        Sent {
            seq: v.sequence,
            ts: v.timestamp,
            marker: v.marker,
            payload: v.payload.to_vec(),
            t,
        }
    }

    /// Drains every packet due at `now`.
    fn drain(p: &mut PlayoutPacer, now: Instant) -> Vec<Sent> {
        std::iter::from_fn(|| p.poll_transmit(now))
            .map(decode)
            .collect()
    }

    /// Runs the pacer like a punctual shell until idle, returning everything sent.
    fn run_until_idle(p: &mut PlayoutPacer) -> Vec<Sent> {
        let mut out = Vec::new();
        while let Some(at) = p.poll_timeout() {
            out.extend(drain(p, at));
        }
        out
    }

    /// Runs the pacer like a punctual shell until `until`, returning everything sent.
    fn run_until(p: &mut PlayoutPacer, until: Instant) -> Vec<Sent> {
        let mut out = Vec::new();
        while let Some(at) = p.poll_timeout().filter(|t| *t <= until) {
            out.extend(drain(p, at));
        }
        out
    }

    #[test]
    fn continuous_rtp_fills_the_time_between_talkspurts_with_silence() {
        let t0 = Instant::now();
        let mut p = pacer(t0);
        p.set_send_silence(true);
        // 100 ms of silence: a packet every 20 ms from the start, no marker.
        let mut out = run_until(&mut p, t0 + MS * 90);
        assert_eq!(out.len(), 5);
        // The agent speaks 50 ms of audio pushed at 95 ms: it takes the 100 ms slot.
        p.push(t0 + MS * 95, 1, &[0x11; 400]);
        out.extend(run_until(&mut p, t0 + MS * 290));
        // Then silence again; a barge-in flush mid-spurt resumes silence in the next slot.
        p.push(t0 + MS * 290, 2, &[0x22; 1600]);
        out.extend(run_until(&mut p, t0 + MS * 340));
        assert_eq!(p.flush().total_bytes, 1600 - 3 * 160);
        out.extend(run_until(&mut p, t0 + MS * 400));
        for (k, s) in out.iter().enumerate() {
            assert_eq!(s.t.due, t0 + MS * (20 * k as u32), "packet {k} every 20 ms");
            assert_eq!(
                s.seq,
                65_530u16.wrapping_add(k as u16),
                "no jump in sequence numbers"
            );
            assert_eq!(
                s.ts,
                (u32::MAX - 500).wrapping_add(160 * k as u32),
                "timestamps +160 per packet"
            );
            let speech = (5..8).contains(&k) || (15..18).contains(&k);
            assert_eq!(
                s.marker,
                k == 0 || k == 5 || k == 15,
                "marker on the stream's and each reply's first packet ({k})"
            );
            if speech {
                assert_ne!(s.payload, [0xFF; 160], "packet {k}");
            } else {
                assert_eq!(
                    (s.payload.as_slice(), s.t.item),
                    (&[0xFF; 160][..], SILENCE_ITEM)
                );
            }
        }
        assert_eq!(out.len(), 21);
        let st = p.stats();
        assert_eq!(
            (st.packets_sent, st.silence_packets, st.spurts),
            (21, 15, 2)
        );
        // Silence packets are not accounted to any item.
        assert_eq!(p.played_bytes(1), 400);
        assert!(p.item_stats(SILENCE_ITEM).is_none());
    }

    #[test]
    fn packets_leave_with_the_callers_packets_when_they_arrive_every_20_ms() {
        let t0 = Instant::now();
        let mut p = pacer(t0);
        p.set_send_silence(true);
        // The caller's packets arrive every 20 ms, 7 ms into our 20 ms grid; a shell wakes for
        // each of them (polling ahead) and for our timer.
        let mut sent: Vec<(Instant, Sent, bool)> = Vec::new(); // (time, packet, by the timer)
        let mut timer_wakes = 0;
        let arrivals: Vec<Instant> = (0..150u32).map(|k| t0 + MS * (7 + 20 * k)).collect();
        let mut next_arrival = 0;
        let end = t0 + MS * 3_500;
        loop {
            let timer = p.poll_timeout().expect("continuous");
            let arrival = arrivals.get(next_arrival).copied();
            match arrival {
                Some(a) if a <= timer => {
                    next_arrival += 1;
                    if a == t0 + MS * 1_007 {
                        p.push(a, 1, &[0x11; 8_000]); // the agent speaks for 1 s
                    }
                    while let Some(t) = p.poll_transmit_ahead(a, MS * 10) {
                        sent.push((a, decode(t), false));
                    }
                }
                _ if timer <= end => {
                    timer_wakes += 1;
                    for t in drain(&mut p, timer) {
                        sent.push((timer, t, true));
                    }
                }
                _ => break,
            }
        }
        for w in sent.windows(2) {
            assert_eq!(w[1].1.seq, w[0].1.seq.wrapping_add(1));
            assert_eq!(w[1].1.ts, w[0].1.ts.wrapping_add(160));
            assert!(w[1].0 - w[0].0 >= MS * 10, "packets at least 10 ms apart");
        }
        // After the first packet, silence and speech leave with the caller's packets: one wake-up
        // per 20 ms, not two. The speech keeps its schedule: each packet at most 10 ms early.
        let by_timer = sent
            .iter()
            .skip(1)
            .filter(|s| s.2 && s.0 < t0 + MS * 2_987)
            .count();
        assert!(by_timer <= 2, "{by_timer} packets needed a timer wake-up");
        assert!(timer_wakes <= 3 + 26, "{timer_wakes} timer wake-ups");
        let speech: Vec<&(Instant, Sent, bool)> =
            sent.iter().filter(|s| s.1.payload[0] == 0x11).collect();
        assert_eq!(speech.len(), 50);
        assert!(speech[0].1.marker);
        let start = speech[0].1.t.due;
        for (n, s) in speech.iter().enumerate().skip(1) {
            let due = start + MS * (20 * n as u32);
            assert!(
                s.0 <= due && due - s.0 <= MS * 10,
                "speech packet {n} off its schedule"
            );
        }
        // When the caller stops sending, the timer takes over: one packet per 20 ms.
        let after: Vec<Instant> = sent
            .iter()
            .filter(|s| s.0 > t0 + MS * 2_987)
            .map(|s| s.0)
            .collect();
        assert!(sent.iter().filter(|s| s.0 > t0 + MS * 2_987).all(|s| s.2));
        assert!((24..=26).contains(&after.len()), "{} packets", after.len());
        assert!(after.windows(2).all(|w| w[1] - w[0] == MS * 20));
    }

    #[test]
    fn continuous_rtp_reanchors_after_a_stalled_shell() {
        let t0 = Instant::now();
        let mut p = pacer(t0);
        p.set_send_silence(true);
        let first = drain(&mut p, t0);
        assert_eq!(first.len(), 1);
        // The shell sleeps 1 s: one packet now, with the timestamp of the elapsed media time.
        let late = drain(&mut p, t0 + MS * 1_000);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].seq, first[0].seq.wrapping_add(1));
        assert_eq!(late[0].ts, first[0].ts.wrapping_add(50 * 160));
        assert!(
            first[0].marker && late[0].marker,
            "stream start and timestamp jump are marked"
        );
        assert_eq!(p.poll_timeout(), Some(t0 + MS * 1_020));
        assert_eq!(p.stats().reanchors, 1);
        // Off: idle again once the queue is empty.
        p.set_send_silence(false);
        assert_eq!(p.poll_timeout(), None);
    }

    #[test]
    fn depth_bounds_pre_roll_the_low_bound_plus_the_input_lag() {
        let t0 = Instant::now();
        let mut p = pacer(t0);
        p.set_send_silence(true);
        p.set_depth_bounds(Some(DepthBounds::CONTINUOUS));
        p.set_input_lag_ms(120);
        // 40 ms + 120 ms of lag = 1280 bytes before the talkspurt starts: silence until then.
        p.push(t0, 1, &[0x11; 800]);
        let before = drain(&mut p, t0);
        assert_eq!(before.len(), 1);
        assert_eq!(
            before[0].t.audio_bytes, 0,
            "silence while the pre-roll fills"
        );
        assert_eq!(p.queued_bytes(), 800);
        p.push(t0 + MS * 10, 1, &[0x11; 800]);
        let sent = run_until(&mut p, t0 + MS * 100);
        assert!(sent[0].marker && sent[0].payload[0] == 0x11);
        assert_eq!(sent.len(), 5);
        // An underrun (the stream stalled longer than the lag) pre-rolls again before speaking.
        let _ = run_until(&mut p, t0 + MS * 400);
        assert_eq!(p.queued_bytes(), 0);
        p.push(t0 + MS * 400, 1, &[0x22; 800]);
        assert!(drain(&mut p, t0 + MS * 420)
            .iter()
            .all(|s| s.t.audio_bytes == 0));
        p.push(t0 + MS * 430, 1, &[0x22; 800]);
        let resumed = drain(&mut p, t0 + MS * 440);
        assert_eq!(resumed.len(), 1);
        assert!(resumed[0].marker && resumed[0].payload[0] == 0x22);
    }

    #[test]
    fn arbitrary_chunks_are_reframed_exactly() {
        let t0 = Instant::now();
        let mut p = pacer(t0);
        let mut input = Vec::new();
        let mut n = 0u8;
        for len in [1usize, 159, 161, 1000, 8001, 7, 160] {
            let chunk: Vec<u8> = (0..len)
                .map(|_| {
                    n = n.wrapping_add(1) % 0x7F;
                    n
                })
                .collect();
            assert_eq!(p.push(t0, 7, &chunk), len);
            input.extend_from_slice(&chunk);
        }
        assert_eq!(p.received_bytes(7), input.len() as u64);
        let sent = run_until_idle(&mut p);
        let expected_packets = input.len().div_ceil(FRAME_BYTES);
        assert_eq!(sent.len(), expected_packets);
        let out: Vec<u8> = sent.iter().flat_map(|s| s.payload.clone()).collect();
        assert_eq!(&out[..input.len()], &input[..]);
        assert!(
            out[input.len()..].iter().all(|&b| b == 0xFF),
            "padding only at the end"
        );
        assert!(sent[..sent.len() - 1]
            .iter()
            .all(|s| s.t.audio_bytes == 160));
        assert_eq!(
            sent.last().map(|s| s.t.audio_bytes),
            Some(input.len() % FRAME_BYTES)
        );
        assert_eq!(p.played_bytes(7), input.len() as u64);
        assert_eq!(p.queued_bytes(), 0);
        assert_eq!(p.poll_timeout(), None);
    }

    #[test]
    fn items_never_share_a_packet() {
        let t0 = Instant::now();
        let mut p = pacer(t0);
        p.push(t0, 1, &[1; 200]);
        p.push(t0, 2, &[2; 100]);
        p.push(t0, 2, &[2; 60]);
        let sent = run_until_idle(&mut p);
        let items: Vec<(u64, usize)> = sent.iter().map(|s| (s.t.item, s.t.audio_bytes)).collect();
        assert_eq!(items, vec![(1, 160), (1, 40), (2, 160)]);
        assert_eq!(&sent[1].payload[..40], &[1; 40]);
        assert!(sent[1].payload[40..].iter().all(|&b| b == 0xFF));
        assert!(sent[0].marker && !sent[1].marker && !sent[2].marker);
        assert_eq!((p.played_bytes(1), p.played_bytes(2)), (200, 160));
    }

    #[test]
    fn one_hour_without_drift() {
        let t0 = Instant::now();
        let mut p = pacer(t0);
        let start = t0;
        let total_frames: u64 = 180_000;
        let burst = vec![0x55u8; 30 * 1000 * 8]; // 30 s of audio per burst
        let mut pushed = 0u64;
        let mut first_ts = None;
        let mut prev_seq: Option<u16> = None;
        let mut now = t0;
        for n in 0..total_frames {
            // Keep ≥ 30 s queued (pushing bursts of 30 s, faster than real time).
            if pushed < total_frames * 160 && p.queued_bytes() < burst.len() {
                let len = burst.len().min((total_frames * 160 - pushed) as usize);
                p.push(now, 1, &burst[..len]);
                pushed += len as u64;
            }
            let due = p.poll_timeout().expect("audio is queued");
            assert_eq!(due, start + frames(n), "frame {n} deadline drifted");
            // The shell wakes up 0–7 ms late; the schedule must not slip.
            let woke = due + MS * (n % 8) as u32;
            let s = decode(p.poll_transmit(woke).expect("frame is due"));
            assert_eq!(s.t.due, due);
            assert_eq!(s.marker, n == 0);
            let ts0 = *first_ts.get_or_insert(s.ts);
            assert_eq!(s.ts, ts0.wrapping_add((n * 160) as u32));
            if let Some(prev) = prev_seq {
                assert_eq!(s.seq, prev.wrapping_add(1));
            }
            prev_seq = Some(s.seq);
            assert!(p.poll_transmit(woke).is_none(), "only one frame due");
            now = woke;
        }
        assert_eq!(p.poll_timeout(), None);
        assert_eq!(p.stats().packets_sent, total_frames);
        assert_eq!(p.stats().spurts, 1);
        assert_eq!(p.stats().reanchors, 0);
        assert_eq!(p.played_bytes(1), pushed);
    }

    #[test]
    fn late_shell_catches_up_back_to_back_without_moving_the_schedule() {
        let t0 = Instant::now();
        let mut p = pacer(t0);
        p.push(t0, 1, &[1; 160 * 20]);
        assert_eq!(drain(&mut p, t0).len(), 1);
        // 110 ms late: frames 1..=6 are due (20..=120 ms), sent back to back.
        let burst = drain(&mut p, t0 + MS * 120);
        assert_eq!(burst.len(), 6);
        assert!(burst.iter().all(|s| !s.marker));
        assert_eq!(p.poll_timeout(), Some(t0 + MS * 140));
        // 300 ms late: re-anchored at now, marked, timestamp jumps with the media clock.
        let late = t0 + MS * 440;
        let s = drain(&mut p, late);
        assert_eq!(s.len(), 1);
        assert!(s[0].marker);
        assert_eq!(s[0].t.due, late);
        assert_eq!(s[0].ts.wrapping_sub(burst[5].ts), 160 * 16);
        assert_eq!(p.poll_timeout(), Some(late + MS * 20));
        assert_eq!(p.stats().reanchors, 1);
    }

    #[test]
    fn spurts_marker_seq_wrap_and_timestamp_jump() {
        let t0 = Instant::now();
        let mut p = pacer(t0);
        // Spurt 1: 10 frames starting at t0.
        p.push(t0, 1, &[1; 1600]);
        let a = run_until_idle(&mut p);
        assert_eq!(a.len(), 10);
        let last_due = a[9].t.due;
        assert_eq!(last_due, t0 + MS * 180);
        // Spurt 2: pushed 1 s after the last packet's deadline.
        let t2 = last_due + MS * 1000;
        p.push(t2, 2, &[2; 1600]);
        assert_eq!(p.poll_timeout(), Some(t2));
        let b = run_until_idle(&mut p);
        // Spurt 3: pushed just after spurt 2 drained, anchored on spurt 2's grid.
        let t3 = b[9].t.due + MS * 3;
        p.push(t3, 3, &[3; 320]);
        assert_eq!(p.poll_timeout(), Some(b[9].t.due + MS * 20));
        let c = run_until_idle(&mut p);
        let all: Vec<&Sent> = a.iter().chain(&b).chain(&c).collect();
        for (i, s) in all.iter().enumerate() {
            assert_eq!(s.marker, i == 0 || i == 10 || i == 20, "marker at {i}");
            assert_eq!(
                s.seq,
                65_530u16.wrapping_add(i as u16),
                "seq continuous across wrap"
            );
        }
        for w in all.windows(2) {
            let dt = w[1].ts.wrapping_sub(w[0].ts);
            let elapsed = (w[1].t.due - w[0].t.due).as_millis() as u32 * 8;
            assert_eq!(dt, elapsed);
        }
        assert_eq!(
            b[0].ts.wrapping_sub(a[9].ts),
            8000,
            "1 s of silence = 8000 samples"
        );
        assert_eq!(c[0].ts.wrapping_sub(b[9].ts), 160);
        assert!(a[0].ts > u32::MAX - 1000 && c[1].ts < 20_000, "ts wrapped");
        assert_eq!(p.stats().spurts, 3);
    }

    #[test]
    fn flush_drops_queue_and_accounting_holds() {
        let t0 = Instant::now();
        let mut p = pacer(t0);
        p.push(t0, 1, &[1; 1000]);
        p.push(t0, 2, &[2; 500]);
        let sent = drain(&mut p, t0 + MS * 40); // frames 0..=2 of item 1
        assert_eq!(sent.len(), 3);
        let report = p.flush();
        assert_eq!(report.per_item, vec![(1, 520), (2, 500)]);
        assert_eq!(report.total_bytes, 1020);
        assert_eq!(report.dropped_bytes(2), 500);
        assert_eq!(p.poll_timeout(), None);
        assert!(p.poll_transmit(t0 + MS * 60).is_none());
        assert_eq!(p.played_bytes(1), 480);
        assert_eq!(p.played_bytes(2), 0);
        for item in [1, 2] {
            let s = p.item_stats(item).expect("tracked");
            assert!(s.played <= s.received);
            assert_eq!(s.played + s.flushed + s.dropped_at_bound, s.received);
        }
        // Next push: new marked spurt, no earlier than the flushed schedule's next slot.
        p.push(t0 + MS * 45, 3, &[3; 160]);
        assert_eq!(p.poll_timeout(), Some(t0 + MS * 60));
        let s = drain(&mut p, t0 + MS * 60);
        assert_eq!(s.len(), 1);
        assert!(s[0].marker);
        assert_eq!(s[0].seq, sent[2].seq.wrapping_add(1));
        assert_eq!(p.stats().flushed_bytes, 1020);
    }

    #[test]
    fn queue_bound_drops_newest_excess() {
        let t0 = Instant::now();
        let mut p = pacer(t0);
        let big = vec![9u8; MAX_QUEUED_BYTES - 100];
        assert_eq!(p.push(t0, 1, &big), big.len());
        assert_eq!(p.push(t0, 2, &[2; 300]), 100);
        assert_eq!(p.push(t0, 3, &[3; 10]), 0);
        assert_eq!(p.queued_bytes(), MAX_QUEUED_BYTES);
        assert_eq!(p.stats().dropped_bytes_at_bound, 210);
        assert_eq!(p.received_bytes(2), 300);
        assert_eq!(p.item_stats(2).map(|s| s.dropped_at_bound), Some(200));
        // Room frees as packets leave.
        p.poll_transmit(t0);
        assert_eq!(p.push(t0, 3, &[3; 500]), 160);
    }

    #[test]
    fn item_accounting_is_bounded_and_time_never_goes_back() {
        let t0 = Instant::now();
        let mut p = pacer(t0);
        for item in 0..40u64 {
            p.push(t0, item, &[1; 10]);
        }
        assert!(p.item_stats(0).is_none());
        assert_eq!(p.received_bytes(39), 10);
        assert_eq!(p.items.len(), TRACKED_ITEMS);
        // Going back in time is ignored: nothing extra becomes due.
        let mut p = pacer(t0);
        p.push(t0 + MS * 100, 1, &[1; 480]);
        assert!(p.poll_transmit(t0 + MS * 100).is_some());
        assert!(p.poll_transmit(t0).is_none());
        assert!(p.poll_transmit(t0 + MS * 119).is_none());
        assert!(p.poll_transmit(t0 + MS * 120).is_some());
    }
}
