//! Caller audio: G.711 RTP packets in, a continuous stream of frames for the model out.
//!
//! [`InboundAudio`] owns the receive side of one call's audio: the current source (SSRC), extended
//! sequence numbers (RFC 3550 §A.1), the position of the emitted audio on the sender's media clock,
//! and the queue of frames waiting for the shell. This milestone has no jitter buffer: each packet is
//! relayed as soon as it arrives, payload bytes as-is (any ptime: 10, 20, 30 ms…), and gaps are filled
//! with the law's silence byte so that the model hears time pass at the right rate.
//!
//! The rule, in the sender's media clock (RTP timestamp, 8 kHz samples, extended to 64 bits):
//! `position` is the end of everything emitted so far, packets and silence alike.
//!
//! 1. A packet older than the highest sequence number seen (extended, RFC 3550 §A.1) is dropped:
//!    as a duplicate if it was received before (64-packet window), else as late.
//! 2. A newer packet whose timestamp is at or after `position` is emitted after
//!    `timestamp − position` samples of silence (a loss, or a pause the timeout fill has not yet
//!    covered); the silence comes in frames the size of the last payload (at least 80 bytes = 10 ms)
//!    plus one shorter remainder frame. `position` becomes the end of the packet.
//! 3. A newer packet that lies wholly before `position` covers time that was already filled with
//!    silence (a burst after a network stall): it is dropped as late, unless its marker bit says it
//!    starts a talkspurt (RFC 3551 §4.1), in which case it is emitted and `position` moves back to
//!    its end. A packet that straddles `position` is emitted whole.
//! 4. Time-driven fill: when no packet has been emitted for [`CONCEAL_AFTER_MS`] (60 ms), one 20 ms
//!    silence frame is emitted at `last_arrival + 60 ms + i × 20 ms` for i = 0, 1, … for as long
//!    as the silence lasts, each advancing `position` by 160 samples. This deliberately runs about two
//!    frames behind real time; rule 2 tops up the rest exactly when the stream resumes, so a pause
//!    is never filled twice, and rule 3 drops stalled packets whose time was already filled. It relies
//!    on the sender advancing timestamps across silence (RFC 3550 §5.1, RFC 3551 §4.1).
//! 5. Resynchronisation without fill: the first packet, an SSRC change, a forward sequence jump of
//!    more than [`MAX_GAP_PACKETS`], a timestamp more than [`MAX_FILL_MS`] away from `position`, or two
//!    consecutive packets more than [`MAX_MISORDER`] behind (a sender restart, RFC 3550 §A.1) start a
//!    new stream at that packet.
//!
//! Other payload types (telephone-event, comfort noise) are counted and ignored, but on the current
//! SSRC they advance the highest sequence number seen, as they share its sequence space.
//!
//! No I/O: the shell receives the datagrams, reads the clock and forwards the frames.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::g711::{Law, FRAME_BYTES, FRAME_MS};
use super::rtp::{extend_seq, extend_ts, RtpHeaderView};

/// Silence after the last emitted packet, in ms, before the time-driven fill starts.
pub const CONCEAL_AFTER_MS: u64 = 60;
/// Largest forward gap in packets filled with silence; larger jumps resynchronise (about 1 s at 20 ms).
pub const MAX_GAP_PACKETS: u64 = 50;
/// Largest gap in ms (between `position` and a packet's timestamp) filled with silence, and largest
/// distance behind `position` at which a packet is still dropped as late; beyond, resynchronise.
pub const MAX_FILL_MS: u64 = 1_000;
/// Packets further than this behind the highest sequence number are strays (RFC 3550 §A.1 `MAX_MISORDER`).
pub const MAX_MISORDER: u64 = 100;
/// Most frames waiting for [`InboundAudio::poll_frame`] (10 s of 20 ms frames); beyond, the oldest
/// is dropped and counted in [`InboundStats::overflow_dropped`].
pub const MAX_PENDING_FRAMES: usize = 500;

const MAX_FILL_SAMPLES: u64 = MAX_FILL_MS * 8;
const MIN_FILL_FRAME_BYTES: usize = FRAME_BYTES / 2;
const FRAME: Duration = Duration::from_millis(FRAME_MS);
const CONCEAL_AFTER: Duration = Duration::from_millis(CONCEAL_AFTER_MS);

/// One frame of caller audio for the model: G.711 bytes of the call's law, 8 kHz, one byte per sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The audio: a packet's payload as received (e.g. 160 bytes for ptime 20, 80 for 10, 240 for
    /// 30), or silence bytes of the law for a concealed frame.
    pub audio: Vec<u8>,
    /// True when this frame is inserted silence, not caller audio.
    pub concealed: bool,
}

/// Why a packet started a new stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncReason {
    /// The first audio packet of the call.
    FirstPacket,
    /// The SSRC differs from the current stream's (RFC 3550 §8).
    SsrcChange,
    /// The sequence number jumped forward by more than [`MAX_GAP_PACKETS`].
    SequenceJump,
    /// The timestamp is more than [`MAX_FILL_MS`] away from the emitted position.
    TimestampJump,
    /// Two consecutive packets more than [`MAX_MISORDER`] behind: the sender restarted its sequence.
    SequenceRestart,
}

/// What [`InboundAudio::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The payload was queued, after `concealed_frames` silence frames filling a gap.
    Accepted {
        /// Silence frames queued before the payload.
        concealed_frames: u32,
    },
    /// The payload was queued as the start of a new stream, without any fill.
    Resynchronised(ResyncReason),
    /// Dropped: older than what was already emitted or filled, and not received before.
    Late,
    /// Dropped: this sequence number was already received.
    Duplicate,
    /// Ignored: not the negotiated audio payload type (e.g. telephone-event, comfort noise).
    OtherPayloadType,
    /// Ignored: the audio payload is empty.
    Empty,
}

/// Counters over the call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboundStats {
    /// RTP packets given to [`InboundAudio::push`].
    pub received: u64,
    /// Frames queued for the model, concealed ones included.
    pub emitted_frames: u64,
    /// Silence frames queued (gap fill and time-driven fill).
    pub concealed_frames: u64,
    /// Packets dropped as late.
    pub late: u64,
    /// Packets dropped as duplicates.
    pub duplicates: u64,
    /// Packets ignored for their payload type.
    pub other_payload_types: u64,
    /// Audio packets ignored for an empty payload.
    pub empty_payloads: u64,
    /// SSRC changes (each resynchronises).
    pub ssrc_changes: u64,
    /// Resynchronisations other than the first packet and SSRC changes.
    pub resyncs: u64,
    /// Frames dropped because [`MAX_PENDING_FRAMES`] were already waiting.
    pub overflow_dropped: u64,
}

#[derive(Debug, Clone, Copy)]
struct Stream {
    ssrc: u32,
    /// Highest extended sequence number seen on this SSRC (any payload type).
    highest: u64,
    /// Bit `i` set: extended sequence number `highest − i` was received.
    received: u64,
    /// Extended RTP timestamp just after the last emitted audio (8 kHz samples).
    position: u64,
    /// Bytes of the last emitted payload.
    last_len: usize,
    /// When the last payload was emitted.
    last_arrival: Instant,
    /// Time-driven silence frames emitted since `last_arrival`.
    timeout_frames: u64,
    /// A stray sequence number far behind `highest` (RFC 3550 §A.1 `bad_seq`).
    stray: Option<u16>,
}

impl Stream {
    fn new(now: Instant, packet: &RtpHeaderView<'_>) -> Self {
        let len = packet.payload.len();
        Stream {
            ssrc: packet.ssrc,
            highest: 1 << 16 | u64::from(packet.sequence),
            received: 1,
            position: (1 << 32 | u64::from(packet.timestamp)) + len as u64,
            last_len: len,
            last_arrival: now,
            timeout_frames: 0,
            stray: None,
        }
    }

    /// Moves `highest` forward to `ext` (> `highest`), keeping the received window.
    fn advance_to(&mut self, ext: u64) {
        let d = ext - self.highest;
        self.received = if d >= 64 { 0 } else { self.received << d };
        self.received |= 1;
        self.highest = ext;
        self.stray = None;
    }

    /// Marks `highest − back` received; returns whether it already was.
    fn mark_back(&mut self, back: u64) -> bool {
        if back >= 64 {
            return false;
        }
        let bit = 1u64 << back;
        let seen = self.received & bit != 0;
        self.received |= bit;
        seen
    }

    fn next_fill_deadline(&self) -> Instant {
        self.last_arrival + CONCEAL_AFTER + frames(self.timeout_frames)
    }
}

fn frames(n: u64) -> Duration {
    Duration::from_millis(FRAME_MS.saturating_mul(n))
}

/// Turns one call's caller RTP into continuous frames for the model. See the module docs.
#[derive(Debug)]
pub struct InboundAudio {
    law: Law,
    payload_type: u8,
    last_now: Instant,
    stream: Option<Stream>,
    frames: VecDeque<Frame>,
    stats: InboundStats,
}

impl InboundAudio {
    /// Creates the receiver for audio of `law` carried with the negotiated `payload_type` (0 PCMU /
    /// 8 PCMA, RFC 3551 table 4). `now` is the earliest time the receiver will accept.
    pub fn new(law: Law, payload_type: u8, now: Instant) -> Self {
        InboundAudio {
            law,
            payload_type,
            last_now: now,
            stream: None,
            frames: VecDeque::new(),
            stats: InboundStats::default(),
        }
    }

    /// Takes one parsed RTP packet (RFC 3550 §5.1) received at `now` and queues the resulting frames
    /// (silence fill first, then the payload). See the module docs for the exact rule.
    pub fn push(&mut self, now: Instant, packet: &RtpHeaderView<'_>) -> Disposition {
        let now = self.clamp(now);
        self.stats.received += 1;
        if packet.payload_type != self.payload_type {
            self.stats.other_payload_types += 1;
            if let Some(s) = self.stream.as_mut().filter(|s| s.ssrc == packet.ssrc) {
                let ext = extend_seq(s.highest, packet.sequence);
                if ext > s.highest && ext - s.highest <= MAX_GAP_PACKETS {
                    s.advance_to(ext);
                } else if ext <= s.highest {
                    s.mark_back(s.highest - ext);
                }
            }
            return Disposition::OtherPayloadType;
        }
        if packet.payload.is_empty() {
            self.stats.empty_payloads += 1;
            return Disposition::Empty;
        }
        let Some(mut s) = self.stream.take() else {
            return self.restart(now, packet, ResyncReason::FirstPacket);
        };
        if s.ssrc != packet.ssrc {
            self.stats.ssrc_changes += 1;
            return self.restart(now, packet, ResyncReason::SsrcChange);
        }

        let ext = extend_seq(s.highest, packet.sequence);
        if ext <= s.highest {
            let back = s.highest - ext;
            if back > MAX_MISORDER {
                if s.stray == Some(packet.sequence.wrapping_sub(1)) {
                    return self.restart(now, packet, ResyncReason::SequenceRestart);
                }
                s.stray = Some(packet.sequence);
                self.stream = Some(s);
                self.stats.late += 1;
                return Disposition::Late;
            }
            let seen = s.mark_back(back);
            self.stream = Some(s);
            return if seen {
                self.stats.duplicates += 1;
                Disposition::Duplicate
            } else {
                self.stats.late += 1;
                Disposition::Late
            };
        }
        if ext - s.highest - 1 > MAX_GAP_PACKETS {
            return self.restart(now, packet, ResyncReason::SequenceJump);
        }

        let ts = extend_ts(s.position, packet.timestamp);
        let len = packet.payload.len() as u64;
        let mut concealed = 0;
        if ts >= s.position {
            let gap = ts - s.position;
            if gap > MAX_FILL_SAMPLES {
                return self.restart(now, packet, ResyncReason::TimestampJump);
            }
            concealed = self.fill(gap, s.last_len);
            s.position = ts + len;
        } else {
            if s.position - ts > MAX_FILL_SAMPLES {
                return self.restart(now, packet, ResyncReason::TimestampJump);
            }
            if ts + len <= s.position && !packet.marker {
                s.advance_to(ext);
                self.stream = Some(s);
                self.stats.late += 1;
                return Disposition::Late;
            }
            s.position = if packet.marker {
                ts + len
            } else {
                s.position.max(ts + len)
            };
        }
        s.advance_to(ext);
        s.last_len = packet.payload.len();
        s.last_arrival = now;
        s.timeout_frames = 0;
        self.stream = Some(s);
        self.emit(packet.payload.to_vec(), false);
        Disposition::Accepted {
            concealed_frames: concealed,
        }
    }

    /// The next frame for the model, oldest first; `None` when none is waiting. Drain until `None`
    /// after every [`push`](Self::push) and [`handle_timeout`](Self::handle_timeout).
    pub fn poll_frame(&mut self) -> Option<Frame> {
        self.frames.pop_front()
    }

    /// When the next time-driven silence frame is due: `CONCEAL_AFTER_MS` (60 ms) after the last
    /// emitted packet, then every 20 ms. `None` before the first audio packet.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.stream.as_ref().map(Stream::next_fill_deadline)
    }

    /// Emits every time-driven silence frame (160 bytes = 20 ms) due at or before `now`; a no-op if
    /// none is due or if `now` is earlier than a time already seen.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.last_now {
            return;
        }
        self.last_now = now;
        let Some(mut s) = self.stream.take() else {
            return;
        };
        let first_due = s.next_fill_deadline();
        if now >= first_due {
            let due = (now - first_due).as_nanos() / FRAME.as_nanos() + 1;
            let due = u64::try_from(due).unwrap_or(u64::MAX);
            let cap = MAX_PENDING_FRAMES as u64;
            if due > cap {
                // Frames that would fall off the bounded queue anyway: account, don't build.
                let skipped = due - cap;
                s.timeout_frames += skipped;
                s.position += skipped * FRAME_BYTES as u64;
                self.stats.concealed_frames += skipped;
                self.stats.emitted_frames += skipped;
                self.stats.overflow_dropped += skipped;
            }
            for _ in 0..due.min(cap) {
                s.timeout_frames += 1;
                s.position += FRAME_BYTES as u64;
                self.emit(vec![self.law.silence_byte(); FRAME_BYTES], true);
            }
        }
        self.stream = Some(s);
    }

    /// Counters so far.
    pub fn stats(&self) -> InboundStats {
        self.stats
    }

    /// The SSRC of the current stream (RFC 3550 §8), once an audio packet has arrived.
    pub fn ssrc(&self) -> Option<u32> {
        self.stream.as_ref().map(|s| s.ssrc)
    }

    /// Frames waiting for [`poll_frame`](Self::poll_frame).
    pub fn pending_frames(&self) -> usize {
        self.frames.len()
    }

    fn clamp(&mut self, now: Instant) -> Instant {
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    fn restart(
        &mut self,
        now: Instant,
        packet: &RtpHeaderView<'_>,
        reason: ResyncReason,
    ) -> Disposition {
        if matches!(
            reason,
            ResyncReason::SequenceJump
                | ResyncReason::TimestampJump
                | ResyncReason::SequenceRestart
        ) {
            self.stats.resyncs += 1;
        }
        self.stream = Some(Stream::new(now, packet));
        self.emit(packet.payload.to_vec(), false);
        Disposition::Resynchronised(reason)
    }

    /// Queues `samples` of silence in frames of `frame_len` bytes (at least 80) plus a remainder.
    fn fill(&mut self, samples: u64, frame_len: usize) -> u32 {
        let frame_len = frame_len.max(MIN_FILL_FRAME_BYTES) as u64;
        let mut left = samples;
        let mut count = 0;
        while left > 0 {
            let n = left.min(frame_len);
            self.emit(vec![self.law.silence_byte(); n as usize], true);
            left -= n;
            count += 1;
        }
        count
    }

    fn emit(&mut self, audio: Vec<u8>, concealed: bool) {
        if self.frames.len() >= MAX_PENDING_FRAMES {
            self.frames.pop_front();
            self.stats.overflow_dropped += 1;
        }
        self.stats.emitted_frames += 1;
        if concealed {
            self.stats.concealed_frames += 1;
        }
        self.frames.push_back(Frame { audio, concealed });
    }
}

#[cfg(test)]
mod tests {
    use super::super::rtp::{parse, write_packet};
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const SSRC: u32 = 0x5555;

    /// A PCMU packet whose payload bytes all equal `fill` (never 0xFF, the silence byte).
    fn pkt(
        buf: &mut Vec<u8>,
        pt: u8,
        seq: u16,
        ts: u32,
        ssrc: u32,
        len: usize,
        fill: u8,
    ) -> RtpHeaderView<'_> {
        write_packet(buf, pt, false, seq, ts, ssrc, &vec![fill; len]);
        parse(buf).expect("valid")
    }

    struct Harness {
        rx: InboundAudio,
        buf: Vec<u8>,
        out: Vec<Frame>,
    }

    impl Harness {
        fn new(t0: Instant) -> Self {
            Harness {
                rx: InboundAudio::new(Law::Mu, 0, t0),
                buf: Vec::new(),
                out: Vec::new(),
            }
        }
        fn send(&mut self, now: Instant, seq: u16, ts: u32, fill: u8) -> Disposition {
            self.send_with(now, 0, seq, ts, SSRC, 160, fill)
        }
        #[allow(clippy::too_many_arguments)]
        fn send_with(
            &mut self,
            now: Instant,
            pt: u8,
            seq: u16,
            ts: u32,
            ssrc: u32,
            len: usize,
            fill: u8,
        ) -> Disposition {
            let mut buf = std::mem::take(&mut self.buf);
            let d = {
                let v = pkt(&mut buf, pt, seq, ts, ssrc, len, fill);
                self.rx.push(now, &v)
            };
            self.buf = buf;
            self.drain();
            d
        }
        fn tick(&mut self, now: Instant) {
            self.rx.handle_timeout(now);
            self.drain();
        }
        /// Runs timeouts as a punctual shell would, up to `until`.
        fn run_until(&mut self, until: Instant) {
            while let Some(t) = self.rx.poll_timeout().filter(|t| *t <= until) {
                self.tick(t);
            }
        }
        fn drain(&mut self) {
            while let Some(f) = self.rx.poll_frame() {
                self.out.push(f);
            }
        }
        /// Frames as (first byte or 'S' for silence, length).
        fn shape(&self) -> Vec<(u8, usize)> {
            self.out
                .iter()
                .map(|f| (if f.concealed { b'S' } else { f.audio[0] }, f.audio.len()))
                .collect()
        }
        fn total_bytes(&self) -> usize {
            self.out.iter().map(|f| f.audio.len()).sum()
        }
    }

    #[test]
    fn in_order_packets_are_relayed_as_is() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        assert_eq!(
            h.send(t0, 10, 1000, 1),
            Disposition::Resynchronised(ResyncReason::FirstPacket)
        );
        for i in 1..5u16 {
            let d = h.send(
                t0 + MS * 20 * u32::from(i),
                10 + i,
                1000 + 160 * u32::from(i),
                i as u8 + 1,
            );
            assert_eq!(
                d,
                Disposition::Accepted {
                    concealed_frames: 0
                }
            );
        }
        assert_eq!(
            h.shape(),
            vec![(1, 160), (2, 160), (3, 160), (4, 160), (5, 160)]
        );
        assert!(h.out.iter().all(|f| !f.concealed));
        let s = h.rx.stats();
        assert_eq!(
            (s.received, s.emitted_frames, s.concealed_frames),
            (5, 5, 0)
        );
    }

    #[test]
    fn ptime_10_and_30_pass_through() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        h.send_with(t0, 0, 1, 0, SSRC, 80, 1);
        h.send_with(t0 + MS * 10, 0, 2, 80, SSRC, 80, 2);
        // Loss of seq 3: filled with one 80-byte frame.
        h.send_with(t0 + MS * 30, 0, 4, 240, SSRC, 80, 4);
        assert_eq!(h.shape(), vec![(1, 80), (2, 80), (b'S', 80), (4, 80)]);
        let mut h = Harness::new(t0);
        h.send_with(t0, 0, 1, 0, SSRC, 240, 1);
        h.send_with(t0 + MS * 30, 0, 2, 240, SSRC, 240, 2);
        h.send_with(t0 + MS * 90, 0, 4, 720, SSRC, 240, 4);
        assert_eq!(h.shape(), vec![(1, 240), (2, 240), (b'S', 240), (4, 240)]);
    }

    #[test]
    fn reorder_by_one_drops_the_late_packet() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        h.send(t0, 1, 0, 1);
        h.send(t0 + MS * 20, 2, 160, 2);
        assert_eq!(
            h.send(t0 + MS * 40, 4, 480, 4),
            Disposition::Accepted {
                concealed_frames: 1
            }
        );
        assert_eq!(h.send(t0 + MS * 41, 3, 320, 3), Disposition::Late);
        h.send(t0 + MS * 60, 5, 640, 5);
        assert_eq!(
            h.shape(),
            vec![(1, 160), (2, 160), (b'S', 160), (4, 160), (5, 160)]
        );
        assert_eq!(h.rx.stats().late, 1);
    }

    #[test]
    fn loss_gap_is_filled_with_silence_sized_like_the_last_payload() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        h.send(t0, 100, 0, 1);
        h.send(t0 + MS * 20, 101, 160, 2);
        // 102, 103, 104 lost.
        assert_eq!(
            h.send(t0 + MS * 50, 105, 800, 6),
            Disposition::Accepted {
                concealed_frames: 3
            }
        );
        assert_eq!(
            h.shape(),
            vec![
                (1, 160),
                (2, 160),
                (b'S', 160),
                (b'S', 160),
                (b'S', 160),
                (6, 160)
            ]
        );
        assert!(h.out[2].audio.iter().all(|&b| b == 0xFF));
        assert_eq!(h.rx.stats().concealed_frames, 3);
        // A-law silence byte.
        let mut rx = InboundAudio::new(Law::A, 8, t0);
        let mut buf = Vec::new();
        rx.push(t0, &pkt(&mut buf, 8, 1, 0, SSRC, 160, 1));
        rx.push(t0, &pkt(&mut buf, 8, 3, 320, SSRC, 160, 1));
        assert_eq!(rx.poll_frame().map(|f| f.concealed), Some(false));
        let fill = rx.poll_frame().expect("fill frame");
        assert!(fill.concealed && fill.audio.iter().all(|&b| b == 0xD5));
    }

    #[test]
    fn duplicates_are_dropped() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        h.send(t0, 1, 0, 1);
        assert_eq!(h.send(t0, 1, 0, 1), Disposition::Duplicate);
        h.send(t0 + MS * 20, 2, 160, 2);
        h.send(t0 + MS * 40, 3, 320, 3);
        assert_eq!(h.send(t0 + MS * 41, 2, 160, 2), Disposition::Duplicate);
        assert_eq!(h.send(t0 + MS * 42, 3, 320, 3), Disposition::Duplicate);
        assert_eq!(h.shape(), vec![(1, 160), (2, 160), (3, 160)]);
        assert_eq!(h.rx.stats().duplicates, 3);
    }

    #[test]
    fn sequence_and_timestamp_wrap() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        let ts0 = u32::MAX - 479; // wraps after 3 packets
        for i in 0..10u16 {
            if i == 7 {
                continue; // one loss right after both wraps
            }
            let seq = 65_531u16.wrapping_add(i);
            let ts = ts0.wrapping_add(160 * u32::from(i));
            h.send(t0 + MS * 20 * u32::from(i), seq, ts, i as u8 + 1);
        }
        let expect: Vec<(u8, usize)> = (0..10u8)
            .map(|i| (if i == 7 { b'S' } else { i + 1 }, 160))
            .collect();
        assert_eq!(h.shape(), expect);
        assert_eq!(h.rx.stats().resyncs, 0);
        assert_eq!(
            h.send(t0 + MS * 300, 65_535, ts0.wrapping_add(640), 9),
            Disposition::Duplicate
        );
    }

    /// Packets 0..=10 every 20 ms, then 300 ms without packets, then the stream resumes.
    fn pause_then_resume(resume: impl FnOnce(&mut Harness, Instant)) -> Harness {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        for i in 0..=10u16 {
            h.run_until(t0 + MS * 20 * u32::from(i));
            h.send(t0 + MS * 20 * u32::from(i), i, 160 * u32::from(i), 1);
        }
        h.run_until(t0 + MS * 500);
        // Timeout fill ran during the pause: 260, 280, …, 500 ms.
        assert_eq!(h.out.iter().filter(|f| f.concealed).count(), 13);
        resume(&mut h, t0 + MS * 500);
        h
    }

    #[test]
    fn dtx_pause_is_filled_once() {
        // Sequence continues, timestamp jumps: media 220–500 ms was never sent.
        let h = pause_then_resume(|h, now| {
            assert_eq!(
                h.send(now, 11, 160 * 25, 2),
                Disposition::Accepted {
                    concealed_frames: 1
                }
            );
            h.send(now + MS * 20, 12, 160 * 26, 2);
        });
        // 27 frames of media (0–540 ms): 11 + 14 silence + 2, nothing doubled.
        assert_eq!(h.total_bytes(), 27 * 160);
        assert_eq!(h.out.iter().filter(|f| !f.concealed).count(), 13);
        assert_eq!(h.rx.stats().late, 0);
    }

    #[test]
    fn loss_during_pause_is_not_filled_twice() {
        // Packets 11..=24 lost; 25 arrives on time.
        let h = pause_then_resume(|h, now| {
            assert_eq!(
                h.send(now, 25, 160 * 25, 2),
                Disposition::Accepted {
                    concealed_frames: 1
                }
            );
        });
        assert_eq!(h.total_bytes(), 26 * 160);
    }

    #[test]
    fn stalled_packets_for_filled_time_are_dropped_as_late() {
        // Packets 11..=25 were held by the network and arrive in one burst at 500 ms.
        let h = pause_then_resume(|h, now| {
            for i in 11..=25u16 {
                let d = h.send(now, i, 160 * u32::from(i), 2);
                let expected = if i < 24 {
                    Disposition::Late
                } else {
                    Disposition::Accepted {
                        concealed_frames: 0,
                    }
                };
                assert_eq!(d, expected, "seq {i}");
            }
        });
        assert_eq!(h.total_bytes(), 26 * 160);
        assert_eq!(h.rx.stats().late, 13);
        // …and they are late for good.
        let mut h = h;
        assert_eq!(
            h.send(Instant::now() + MS * 600, 12, 160 * 12, 2),
            Disposition::Duplicate
        );
    }

    #[test]
    fn timeouts_are_idempotent_and_time_never_goes_back() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        assert_eq!(h.rx.poll_timeout(), None);
        h.tick(t0 + MS * 1000);
        assert!(h.out.is_empty(), "no fill before the first packet");
        let t1 = t0 + MS * 1000;
        h.send(t1, 1, 0, 1);
        assert_eq!(h.rx.poll_timeout(), Some(t1 + MS * 60));
        h.tick(t1 + MS * 59);
        assert_eq!(h.out.len(), 1);
        h.tick(t1 + MS * 60);
        h.tick(t1 + MS * 60);
        h.tick(t1 + MS * 10);
        assert_eq!(h.out.len(), 2);
        // A late shell gets all due frames at once: 80, 100, 120 ms.
        h.tick(t1 + MS * 125);
        assert_eq!(h.out.len(), 5);
        assert_eq!(h.rx.poll_timeout(), Some(t1 + MS * 140));
    }

    #[test]
    fn ssrc_change_resynchronises_without_fill() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        h.send(t0, 1, 0, 1);
        h.send(t0 + MS * 20, 2, 160, 2);
        let d = h.send_with(t0 + MS * 40, 0, 40_000, 999_999, 0x7777, 160, 3);
        assert_eq!(d, Disposition::Resynchronised(ResyncReason::SsrcChange));
        h.send_with(t0 + MS * 60, 0, 40_001, 999_999 + 160, 0x7777, 160, 4);
        assert_eq!(h.shape(), vec![(1, 160), (2, 160), (3, 160), (4, 160)]);
        assert_eq!(h.rx.ssrc(), Some(0x7777));
        assert_eq!(h.rx.stats().ssrc_changes, 1);
    }

    #[test]
    fn large_jumps_resynchronise() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        h.send(t0, 1, 0, 1);
        assert_eq!(
            h.send(t0 + MS * 20, 500, 160, 2),
            Disposition::Resynchronised(ResyncReason::SequenceJump)
        );
        assert_eq!(
            h.send(t0 + MS * 40, 501, 1_000_000, 3),
            Disposition::Resynchronised(ResyncReason::TimestampJump)
        );
        // Sender restarts its sequence far behind: one stray is late, two in a row resync.
        assert_eq!(h.send(t0 + MS * 60, 10, 1_000_160, 4), Disposition::Late);
        assert_eq!(
            h.send(t0 + MS * 80, 11, 1_000_320, 5),
            Disposition::Resynchronised(ResyncReason::SequenceRestart)
        );
        assert_eq!(h.shape(), vec![(1, 160), (2, 160), (3, 160), (5, 160)]);
        assert_eq!(h.rx.stats().resyncs, 3);
    }

    #[test]
    fn telephone_events_are_ignored_but_keep_the_sequence_space() {
        let t0 = Instant::now();
        let mut h = Harness::new(t0);
        h.send(t0, 1, 0, 1);
        // A 120 ms DTMF event in the same sequence space (PT 101), audio suppressed meanwhile.
        for i in 0..6u16 {
            let now = t0 + MS * 20 * u32::from(i + 1);
            h.run_until(now);
            assert_eq!(
                h.send_with(now, 101, 2 + i, 160, SSRC, 4, 0x0A),
                Disposition::OtherPayloadType
            );
        }
        h.run_until(t0 + MS * 140);
        assert_eq!(
            h.send(t0 + MS * 140, 8, 160 * 7, 2),
            Disposition::Accepted {
                concealed_frames: 1
            }
        );
        // 1 + 6 silence (5 by timeout at 60–140 ms, 1 on resume) + 1: 160 ms of media, nothing doubled.
        assert_eq!(h.total_bytes(), 8 * 160);
        assert!(h.out.iter().all(|f| f.concealed || f.audio[0] != 0x0A));
        let s = h.rx.stats();
        assert_eq!((s.other_payload_types, s.resyncs, s.late), (6, 0, 0));
    }

    #[test]
    fn marker_after_pause_is_never_dropped() {
        // A sender that does not advance its timestamp across silence still gets through when it
        // marks the talkspurt.
        let h = pause_then_resume(|h, now| {
            let mut buf = Vec::new();
            write_packet(&mut buf, 0, true, 11, 160 * 11, SSRC, &[3; 160]);
            let v = parse(&buf).expect("valid");
            assert_eq!(
                h.rx.push(now, &v),
                Disposition::Accepted {
                    concealed_frames: 0
                }
            );
            assert_eq!(
                h.send(now + MS * 20, 12, 160 * 12, 4),
                Disposition::Accepted {
                    concealed_frames: 0
                }
            );
            h.drain();
        });
        let tail: Vec<(u8, usize)> = h.shape().into_iter().rev().take(2).collect();
        assert_eq!(tail, vec![(4, 160), (3, 160)]);
    }

    #[test]
    fn pending_frames_are_bounded() {
        let t0 = Instant::now();
        let mut rx = InboundAudio::new(Law::Mu, 0, t0);
        let mut buf = Vec::new();
        rx.push(t0, &pkt(&mut buf, 0, 1, 0, SSRC, 160, 1));
        rx.handle_timeout(t0 + MS * 3_600_000);
        assert_eq!(rx.pending_frames(), MAX_PENDING_FRAMES);
        let s = rx.stats();
        assert_eq!(
            s.emitted_frames - s.overflow_dropped,
            MAX_PENDING_FRAMES as u64
        );
        assert_eq!(s.concealed_frames, (3_600_000 - 60) / 20 + 1);
    }
}
