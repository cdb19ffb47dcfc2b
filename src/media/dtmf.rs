//! DTMF from the caller: RFC 4733 telephone-events in RTP, and SIP INFO bodies.
//!
//! [`DtmfReceiver`] owns the telephone-event state of one call: the event in progress and the
//! events already reported. An RFC 4733 key press is a series of packets that share one RTP
//! timestamp (the event start, §2.5.1.1): updates with a growing duration, then an end packet
//! (E bit) normally sent three times (§2.5.1.4), any of which may be lost, duplicated or reordered.
//!
//! Invariants:
//! - A press is identified by (SSRC, RTP timestamp) and reported exactly once, when it ends: on
//!   its first end packet, when a packet of another press arrives, or after
//!   [`EVENT_TIMEOUT_MS`] without packets (its end packets were lost). Packets of a press already
//!   reported are ignored (the remembered set holds the last [`REMEMBERED_EVENTS`] presses).
//! - A press seen only through its end packets is reported on the first of them.
//! - Two presses of the same key are two digits (they have different timestamps).
//! - A press longer than the 16-bit duration field (about 8 s at 8 kHz) continues in a new segment
//!   whose timestamp is the previous one plus the previous duration (§2.5.2.1); segments are
//!   merged into one digit.
//! - Events 0–15 are reported as `0`–`9`, `*`, `#`, `A`–`D` (§3.2); 16 (flash) and every other
//!   event are ignored. Durations are in 8 kHz timestamp units (telephone-event/8000) and reported
//!   in ms.
//!
//! Driving it (drain rule): after [`DtmfReceiver::push`] and [`DtmfReceiver::handle_timeout`],
//! drain [`DtmfReceiver::poll_digit`] until `None`; wake up at [`DtmfReceiver::poll_timeout`].
//!
//! [`parse_dtmf_relay`] reads the body of a SIP INFO request (`application/dtmf-relay` or
//! `application/dtmf`).
//!
//! No I/O, no clock reads: `now` comes from the shell.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::rtp::RtpHeaderView;

/// A press with no packet for this long (ms) is reported as ended (its end packets were lost).
pub const EVENT_TIMEOUT_MS: u64 = 300;
/// How many reported presses are remembered to ignore their late or retransmitted packets.
pub const REMEMBERED_EVENTS: usize = 8;
/// Most digits waiting for [`DtmfReceiver::poll_digit`]; beyond, the oldest is dropped.
pub const MAX_QUEUED_DIGITS: usize = 16;

/// Bytes of one telephone-event payload (RFC 4733 §2.3): event, E/R/volume, duration.
const EVENT_BYTES: usize = 4;
/// Clock rate of telephone-event, in timestamp units per ms (8 kHz).
const UNITS_PER_MS: u64 = 8;
/// Largest value of the 16-bit duration field (RFC 4733 §2.5.2.1).
const MAX_SEGMENT: u32 = 0xFFFF;

/// One key press of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digit {
    /// The key: `0`–`9`, `*`, `#` or `A`–`D`.
    pub key: char,
    /// How long the key was held, in ms (the largest duration received; RFC 4733 §2.5.1.3).
    pub duration_ms: u64,
    /// True when an end packet (E bit) was received; false when the press was closed by a timeout
    /// or by the next press.
    pub ended: bool,
}

#[derive(Debug, Clone, Copy)]
struct Press {
    ssrc: u32,
    /// RTP timestamp of the current segment (the press start, for short presses).
    timestamp: u32,
    event: u8,
    /// Duration of earlier segments, in timestamp units.
    earlier: u64,
    /// Largest duration seen in the current segment, in timestamp units.
    duration: u32,
    last_seen: Instant,
}

impl Press {
    fn digit(&self, ended: bool) -> Option<Digit> {
        Some(Digit {
            key: key_for_event(self.event)?,
            duration_ms: (self.earlier + u64::from(self.duration)) / UNITS_PER_MS,
            ended,
        })
    }
}

/// Receives RFC 4733 telephone-events for one call and reports each key press once. See the
/// module docs.
#[derive(Debug)]
pub struct DtmfReceiver {
    payload_type: u8,
    last_now: Option<Instant>,
    current: Option<Press>,
    /// (SSRC, timestamp) of the last presses reported, oldest first.
    reported: VecDeque<(u32, u32)>,
    digits: VecDeque<Digit>,
}

impl DtmfReceiver {
    /// A receiver for telephone-events carried with the negotiated dynamic `payload_type`
    /// (`a=rtpmap:<pt> telephone-event/8000` in SDP, RFC 4733 §7.1.1). Packets of other payload
    /// types are ignored.
    pub fn new(payload_type: u8) -> Self {
        DtmfReceiver {
            payload_type,
            last_now: None,
            current: None,
            reported: VecDeque::with_capacity(REMEMBERED_EVENTS + 1),
            digits: VecDeque::with_capacity(4),
        }
    }

    /// Takes one parsed RTP packet received at `now`. Packets of another payload type, with a
    /// payload shorter than 4 bytes (RFC 4733 §2.3), or of an event other than 0–15 are ignored.
    /// Then drain [`poll_digit`](Self::poll_digit).
    pub fn push(&mut self, now: Instant, packet: &RtpHeaderView<'_>) {
        let now = self.clamp(now);
        if packet.payload_type != self.payload_type || packet.payload.len() < EVENT_BYTES {
            return;
        }
        let p = packet.payload;
        let event = p[0];
        let end = p[1] & 0x80 != 0;
        let duration = u32::from(u16::from_be_bytes([p[2], p[3]]));
        if key_for_event(event).is_none() {
            return;
        }
        let id = (packet.ssrc, packet.timestamp);
        if self.reported.contains(&id) {
            return;
        }
        let press = match self.current.take() {
            Some(mut c) if (c.ssrc, c.timestamp) == id => {
                c.duration = c.duration.max(duration);
                c.last_seen = now;
                c
            }
            Some(mut c)
                if c.ssrc == packet.ssrc
                    && c.event == event
                    && !packet.marker
                    && is_next_segment(&c, packet.timestamp) =>
            {
                // RFC 4733 §2.5.2.1: a long press continues in a new segment.
                self.remember(c.ssrc, c.timestamp);
                c.earlier += u64::from(packet.timestamp.wrapping_sub(c.timestamp));
                c.timestamp = packet.timestamp;
                c.duration = duration;
                c.last_seen = now;
                c
            }
            previous => {
                if let Some(c) = previous {
                    self.report(&c, false);
                }
                Press {
                    ssrc: packet.ssrc,
                    timestamp: packet.timestamp,
                    event,
                    earlier: 0,
                    duration,
                    last_seen: now,
                }
            }
        };
        if end {
            self.report(&press, true);
        } else {
            self.current = Some(press);
        }
    }

    /// The next key press reported, oldest first.
    pub fn poll_digit(&mut self) -> Option<Digit> {
        self.digits.pop_front()
    }

    /// When the press in progress times out ([`EVENT_TIMEOUT_MS`] after its last packet); `None`
    /// when no press is in progress.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.current
            .as_ref()
            .map(|c| c.last_seen + Duration::from_millis(EVENT_TIMEOUT_MS))
    }

    /// Reports the press in progress if it timed out at `now`; a no-op otherwise (early,
    /// repeated, or with time going backwards).
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        if self.poll_timeout().is_some_and(|t| now >= t) {
            if let Some(c) = self.current.take() {
                self.report(&c, false);
            }
        }
    }

    fn clamp(&mut self, now: Instant) -> Instant {
        let now = self.last_now.map_or(now, |last| last.max(now));
        self.last_now = Some(now);
        now
    }

    fn report(&mut self, press: &Press, ended: bool) {
        self.remember(press.ssrc, press.timestamp);
        if let Some(digit) = press.digit(ended) {
            if self.digits.len() == MAX_QUEUED_DIGITS {
                self.digits.pop_front();
            }
            self.digits.push_back(digit);
        }
    }

    fn remember(&mut self, ssrc: u32, timestamp: u32) {
        if self.reported.len() == REMEMBERED_EVENTS {
            self.reported.pop_front();
        }
        self.reported.push_back((ssrc, timestamp));
    }
}

/// Whether `timestamp` starts the segment after `press`'s current one: a segment ends when its
/// duration reaches the 16-bit maximum, so the next starts between 0xF000 and 0xFFFF units later
/// (the last updates of a segment may be lost).
fn is_next_segment(press: &Press, timestamp: u32) -> bool {
    let gap = timestamp.wrapping_sub(press.timestamp);
    (0xF000..=MAX_SEGMENT).contains(&gap) && gap >= press.duration
}

/// The key of RFC 4733 §3.2 event code `event`: 0–9 → `0`–`9`, 10 → `*`, 11 → `#`,
/// 12–15 → `A`–`D`; `None` for 16 (flash) and everything else.
pub fn key_for_event(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// The key in the body of a SIP INFO DTMF request, or `None` if there is none.
///
/// Accepts `application/dtmf-relay` bodies (`Signal=5\r\nDuration=160`; the `Signal` name is
/// case-insensitive, spaces around `=` are allowed, line ends may be CRLF or LF) and
/// `application/dtmf` bodies (just the key, e.g. `5`). The key may be `0`–`9`, `*`, `#`, `A`–`D`
/// (either case) or an RFC 4733 event number 0–15 (so `10` is `*` and `11` is `#`); 16 (flash),
/// anything else, and bodies that are not UTF-8 give `None`.
pub fn parse_dtmf_relay(body: &[u8]) -> Option<char> {
    let text = std::str::from_utf8(body).ok()?;
    let mut saw_field = false;
    for line in text.lines() {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        saw_field = true;
        if name.trim().eq_ignore_ascii_case("signal") {
            return parse_signal(value.trim());
        }
    }
    if saw_field {
        return None;
    }
    parse_signal(text.trim())
}

fn parse_signal(value: &str) -> Option<char> {
    let mut chars = value.chars();
    let first = chars.next()?;
    if chars.next().is_none() {
        let c = first.to_ascii_uppercase();
        if matches!(c, '0'..='9' | '*' | '#' | 'A'..='D') {
            return Some(c);
        }
        return None;
    }
    key_for_event(value.parse::<u8>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::super::rtp::parse;
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const PT: u8 = 101;

    /// Digit 1 from sip-tester's `dtmf_2833_1.pcap` (RTP only, UDP/IP headers stripped), with the
    /// capture time of each packet in µs after the first: 7 updates every 20 ms (duration 0 to
    /// 1920), then the end packet (E bit, duration 2240 = 280 ms) three times with one sequence
    /// number.
    const PCAP_DIGIT_1: [(u64, [u8; 16]); 10] = [
        (
            0,
            *b"\x80\xe5\x1f\x30\x00\x00\x33\xe0\x0e\x05\x38\x4e\x01\x0a\x00\x00",
        ),
        (
            19_992,
            *b"\x80\x65\x1f\x31\x00\x00\x33\xe0\x0e\x05\x38\x4e\x01\x0a\x01\x40",
        ),
        (
            39_881,
            *b"\x80\x65\x1f\x32\x00\x00\x33\xe0\x0e\x05\x38\x4e\x01\x0a\x02\x80",
        ),
        (
            59_911,
            *b"\x80\x65\x1f\x33\x00\x00\x33\xe0\x0e\x05\x38\x4e\x01\x0a\x03\xc0",
        ),
        (
            79_983,
            *b"\x80\x65\x1f\x34\x00\x00\x33\xe0\x0e\x05\x38\x4e\x01\x0a\x05\x00",
        ),
        (
            99_925,
            *b"\x80\x65\x1f\x35\x00\x00\x33\xe0\x0e\x05\x38\x4e\x01\x0a\x06\x40",
        ),
        (
            119_865,
            *b"\x80\x65\x1f\x36\x00\x00\x33\xe0\x0e\x05\x38\x4e\x01\x0a\x07\x80",
        ),
        (
            139_846,
            *b"\x80\x65\x1f\x37\x00\x00\x33\xe0\x0e\x05\x38\x4e\x01\x8a\x08\xc0",
        ),
        (
            139_888,
            *b"\x80\x65\x1f\x37\x00\x00\x33\xe0\x0e\x05\x38\x4e\x01\x8a\x08\xc0",
        ),
        (
            139_929,
            *b"\x80\x65\x1f\x37\x00\x00\x33\xe0\x0e\x05\x38\x4e\x01\x8a\x08\xc0",
        ),
    ];

    /// The first and end packets of `#` from sip-tester's `dtmf_2833_pound.pcap`.
    const PCAP_POUND_FIRST: [u8; 16] =
        *b"\x80\xe5\x20\xf4\x00\x01\x69\xe0\x0e\x05\x38\x4e\x0b\x0a\x00\x00";
    const PCAP_POUND_END: [u8; 16] =
        *b"\x80\x65\x20\xfb\x00\x01\x69\xe0\x0e\x05\x38\x4e\x0b\x8a\x08\xc0";

    fn event(seq: u16, ts: u32, marker: bool, payload: &[u8; 4]) -> RtpHeaderView<'_> {
        RtpHeaderView {
            payload_type: PT,
            sequence: seq,
            timestamp: ts,
            ssrc: 0xD7F0,
            marker,
            payload,
        }
    }

    fn body(code: u8, end: bool, duration: u16) -> [u8; 4] {
        let d = duration.to_be_bytes();
        [code, if end { 0x8A } else { 0x0A }, d[0], d[1]]
    }

    fn drain(rx: &mut DtmfReceiver) -> Vec<Digit> {
        std::iter::from_fn(|| rx.poll_digit()).collect()
    }

    #[test]
    fn sip_tester_capture_gives_one_digit_despite_three_end_packets() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new(PT);
        let mut digits = Vec::new();
        for (i, (us, bytes)) in PCAP_DIGIT_1.iter().enumerate() {
            let packet = parse(bytes).expect("captured RTP");
            rx.push(t0 + Duration::from_micros(*us), &packet);
            digits.extend(drain(&mut rx));
            assert_eq!(digits.len(), usize::from(i >= 7), "after packet {i}");
        }
        // The same updates and end packets retransmitted later change nothing.
        for (us, bytes) in PCAP_DIGIT_1.iter().rev() {
            let packet = parse(bytes).expect("captured RTP");
            rx.push(t0 + Duration::from_micros(200_000 + us), &packet);
        }
        rx.handle_timeout(t0 + MS * 5_000);
        digits.extend(drain(&mut rx));
        assert_eq!(
            digits,
            vec![Digit {
                key: '1',
                duration_ms: 280,
                ended: true
            }]
        );
        assert_eq!(rx.poll_timeout(), None);

        let mut rx = DtmfReceiver::new(PT);
        rx.push(t0, &parse(&PCAP_POUND_FIRST).expect("captured RTP"));
        assert_eq!(rx.poll_timeout(), Some(t0 + MS * 300));
        rx.push(
            t0 + MS * 140,
            &parse(&PCAP_POUND_END).expect("captured RTP"),
        );
        assert_eq!(
            drain(&mut rx).iter().map(|d| d.key).collect::<String>(),
            "#"
        );
    }

    #[test]
    fn long_press_with_many_updates_is_one_digit_with_its_duration() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new(PT);
        // 2 s press: an update every 50 ms (each sent twice), then three end packets.
        for k in 0..40u16 {
            let p = body(5, false, k * 400);
            for _ in 0..2 {
                rx.push(t0 + MS * (50 * u32::from(k)), &event(k, 8_000, k == 0, &p));
            }
            assert_eq!(rx.poll_digit(), None);
        }
        let end = body(5, true, 16_000);
        for r in 0..3u32 {
            rx.push(t0 + MS * (2_000 + r), &event(40, 8_000, false, &end));
        }
        assert_eq!(
            drain(&mut rx),
            vec![Digit {
                key: '5',
                duration_ms: 2_000,
                ended: true
            }]
        );
    }

    #[test]
    fn same_key_twice_is_two_digits_and_a_new_press_closes_the_previous() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new(PT);
        for (start, ts) in [(0u32, 1_000u32), (400, 4_200)] {
            rx.push(t0 + MS * start, &event(0, ts, true, &body(7, false, 0)));
            rx.push(
                t0 + MS * (start + 100),
                &event(1, ts, false, &body(7, true, 800)),
            );
            rx.push(
                t0 + MS * (start + 101),
                &event(1, ts, false, &body(7, true, 800)),
            );
        }
        let keys: Vec<(char, u64)> = drain(&mut rx)
            .iter()
            .map(|d| (d.key, d.duration_ms))
            .collect();
        assert_eq!(keys, vec![('7', 100), ('7', 100)]);

        // A press whose end packets are all lost is closed by the next press.
        rx.push(
            t0 + MS * 1_000,
            &event(5, 9_000, true, &body(2, false, 320)),
        );
        rx.push(t0 + MS * 1_100, &event(6, 10_000, true, &body(3, false, 0)));
        let d = drain(&mut rx);
        assert_eq!(
            d,
            vec![Digit {
                key: '2',
                duration_ms: 40,
                ended: false
            }]
        );
    }

    #[test]
    fn an_event_seen_only_through_its_end_packets_is_reported_once() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new(PT);
        let end = body(11, true, 1_280);
        rx.push(t0, &event(9, 500, false, &end));
        assert_eq!(
            rx.poll_digit(),
            Some(Digit {
                key: '#',
                duration_ms: 160,
                ended: true
            })
        );
        rx.push(t0 + MS, &event(9, 500, false, &end));
        rx.push(t0 + MS * 2, &event(9, 500, false, &end));
        assert_eq!(rx.poll_digit(), None);
        assert_eq!(rx.poll_timeout(), None);
    }

    #[test]
    fn lost_end_packets_time_out_and_late_ones_are_ignored() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new(PT);
        rx.push(t0, &event(1, 100, true, &body(12, false, 0)));
        rx.push(t0 + MS * 50, &event(2, 100, false, &body(12, false, 400)));
        assert_eq!(rx.poll_timeout(), Some(t0 + MS * 350));
        rx.handle_timeout(t0 + MS * 349);
        assert_eq!(rx.poll_digit(), None);
        rx.handle_timeout(t0 + MS * 350);
        assert_eq!(
            drain(&mut rx),
            vec![Digit {
                key: 'A',
                duration_ms: 50,
                ended: false
            }]
        );
        rx.handle_timeout(t0 + MS * 400);
        rx.push(t0 + MS * 500, &event(3, 100, false, &body(12, true, 800)));
        assert_eq!(rx.poll_digit(), None, "already reported");
    }

    #[test]
    fn segments_of_a_very_long_press_are_merged() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new(PT);
        rx.push(t0, &event(1, 0, true, &body(0, false, 0)));
        rx.push(
            t0 + MS * 8_000,
            &event(2, 0, false, &body(0, false, 64_000)),
        );
        // Second segment starts at 0xFFFF (the sender's maximum duration).
        rx.push(
            t0 + MS * 8_200,
            &event(3, 0xFFFF, false, &body(0, false, 1_600)),
        );
        rx.push(
            t0 + MS * 8_400,
            &event(4, 0xFFFF, false, &body(0, true, 3_200)),
        );
        rx.push(
            t0 + MS * 8_401,
            &event(4, 0, false, &body(0, false, 64_000)),
        );
        let d = drain(&mut rx);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].duration_ms, (0xFFFF + 3_200) / 8);
    }

    #[test]
    fn flash_other_payload_types_and_short_payloads_are_ignored() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new(PT);
        rx.push(t0, &event(1, 100, true, &body(16, true, 800)));
        rx.push(t0, &event(2, 200, true, &body(200, true, 800)));
        let one = body(1, true, 800);
        let audio = RtpHeaderView {
            payload_type: 0,
            ..event(3, 300, false, &one)
        };
        rx.push(t0, &audio);
        let short = RtpHeaderView {
            payload: &[1, 0x8A, 0],
            ..event(4, 400, false, &one)
        };
        rx.push(t0, &short);
        assert_eq!(rx.poll_digit(), None);
        assert_eq!(rx.poll_timeout(), None);
        assert_eq!(key_for_event(13), Some('B'));
        let keys: String = (0..16).filter_map(key_for_event).collect();
        assert_eq!(keys, "0123456789*#ABCD");
    }

    #[test]
    fn sip_info_bodies() {
        let cases: [(&[u8], Option<char>); 16] = [
            (b"Signal=5\r\nDuration=160\r\n", Some('5')),
            (b"Signal=5\r\nDuration=160", Some('5')),
            (b"Duration=160\nsignal = #\n", Some('#')),
            (b"SIGNAL=*", Some('*')),
            (b"Signal=10\r\nDuration=100", Some('*')),
            (b"Signal=11", Some('#')),
            (b"Signal=d", Some('D')),
            (b"Signal=16\r\nDuration=100", None),
            (b"Signal=\r\n", None),
            (b"Duration=160", None),
            (b"5", Some('5')),
            (b" 9\r\n", Some('9')),
            (b"#", Some('#')),
            (b"", None),
            (b"hello", None),
            (b"\xff\xfe", None),
        ];
        for (body, expect) in cases {
            assert_eq!(
                parse_dtmf_relay(body),
                expect,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
