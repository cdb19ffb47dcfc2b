//! RTCP for one call (RFC 3550 §6): the caller's reports in, our sender/receiver reports out.
//!
//! [`RtcpSession`] owns the RTCP state of one call's audio session: what we sent (for the sender
//! info of our SR, §6.4.1), the last SR received from the caller (for LSR/DLSR in our report
//! block), the last report block the caller sent about our stream, and the report schedule.
//! Packets are parsed and written with the `rtcp-types` crate.
//!
//! - **Receiving.** The shell hands over every RTCP datagram: from RTP port + 1, or from the RTP port
//!   itself with rtcp-mux (RFC 5761 §4, see [`super::rtp::is_rtcp`]). Compound and reduced-size
//!   (RFC 5506) packets are accepted. A report block about our SSRC (in an SR or RR) updates
//!   [`RtcpSession::remote_reports`]: fraction lost, cumulative lost, jitter, and the round-trip
//!   time from its LSR/DLSR (§6.4.1). An SR from the caller is remembered for our LSR/DLSR. SDES
//!   CNAME and BYE are recorded; other packet types are ignored. A malformed datagram is an
//!   [`enum@Error`] and changes nothing.
//! - **Sending.** Every [`REPORT_INTERVAL`] (5 s; the first report after half of it, as §6.2 does
//!   for the initial interval) [`RtcpSession::poll_transmit`] builds one compound packet (§6.1):
//!   an SR if we sent RTP since the previous report, else an RR, with one report block about the
//!   caller's stream when the jitter buffer has one, then an SDES with our CNAME (§6.5.1). The
//!   interval is fixed, not randomised as in §6.3.1: randomisation keeps many members of a
//!   multicast session from reporting in lockstep, which a two-party unicast call does not need,
//!   and a fixed interval keeps the behaviour deterministic. The schedule is absolute; a shell more
//!   than one interval late sends one report and restarts the schedule from then.
//! - **NTP timestamps** (§4) count from an arbitrary epoch (elapsed time since the session was
//!   created) unless the shell anchors them with [`RtcpSession::set_wallclock`]. Within a two-party
//!   audio call they only serve the round-trip computation, which needs a consistent clock, not
//!   the absolute time.
//!
//! Driving it (drain rule): after [`RtcpSession::handle_packet`] nothing is queued; when
//! [`RtcpSession::poll_timeout`] passes, call [`RtcpSession::poll_transmit`] with the jitter
//! buffer's [`ReceiverReportFields`] and send what it returns to the caller's RTCP address.
//! [`RtcpSession::on_rtp_sent`] must see every RTP packet we send.
//!
//! No I/O: no sockets, no clock reads.

use std::time::{Duration, Instant};

use rtcp_types::{
    Compound, CompoundBuilder, Packet, ReceiverReport, ReportBlock, RtcpPacketWriterExt,
    RtcpParseError, RtcpWriteError, Sdes, SdesChunk, SdesItem, SenderReport,
};
use thiserror::Error;

use super::jitter::ReceiverReportFields;

/// Interval between our reports (RFC 3550 §6.2 minimum interval `Tmin`).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);
/// RTP clock rate of the audio stream (G.711, RFC 3551 §4.5.14), in Hz.
pub const CLOCK_RATE_HZ: u32 = 8_000;
/// Longest SDES item text (RFC 3550 §6.5: 8-bit length), in bytes.
pub const MAX_SDES_BYTES: usize = 255;

/// Why an RTCP datagram could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// A packet is shorter than its header or than its length field says (RFC 3550 §6.4).
    #[error("truncated RTCP packet: {expected} bytes needed, {actual} present")]
    Truncated {
        /// Bytes needed.
        expected: usize,
        /// Bytes present.
        actual: usize,
    },
    /// The version field is not 2 (RFC 3550 §6.4.1).
    #[error("unsupported RTCP version {0}")]
    UnsupportedVersion(u8),
    /// The padding bit is set on a packet that is not the last of the compound, or the padding
    /// count is 0 (RFC 3550 §6.4.1).
    #[error("invalid RTCP padding")]
    InvalidPadding,
    /// A packet's body is inconsistent with its type (e.g. an SDES item running past the packet).
    #[error("malformed RTCP packet: {reason}")]
    Malformed {
        /// What was wrong.
        reason: &'static str,
    },
}

impl From<RtcpParseError> for Error {
    fn from(e: RtcpParseError) -> Self {
        match e {
            RtcpParseError::Truncated { expected, actual } => Error::Truncated { expected, actual },
            RtcpParseError::TooLarge { .. } => Error::Malformed {
                reason: "packet longer than its type allows",
            },
            RtcpParseError::UnsupportedVersion(v) => Error::UnsupportedVersion(v),
            RtcpParseError::InvalidPadding => Error::InvalidPadding,
            RtcpParseError::SdesValueTooLarge { .. }
            | RtcpParseError::SdesPrivContentTruncated { .. }
            | RtcpParseError::SdesPrivPrefixTooLarge { .. } => Error::Malformed {
                reason: "invalid SDES item",
            },
            RtcpParseError::PacketTypeMismatch { .. } => Error::Malformed {
                reason: "packet type mismatch",
            },
            RtcpParseError::TwccDeltaTruncated | RtcpParseError::TwccReservedPacketStatus => {
                Error::Malformed {
                    reason: "invalid transport-wide congestion control feedback",
                }
            }
            _ => Error::Malformed {
                reason: "invalid packet body",
            },
        }
    }
}

/// What the caller last reported about our stream (one RFC 3550 §6.4.1 report block).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteReport {
    /// SSRC of the caller's stream that sent the report.
    pub reporter_ssrc: u32,
    /// Fraction of our packets lost since the caller's previous report, 0.0–1.0 (8-bit field / 256).
    pub fraction_lost: f64,
    /// Cumulative packets of ours lost (24-bit signed field; negative with duplicates).
    pub cumulative_lost: i32,
    /// Extended highest sequence number of ours the caller received.
    pub extended_highest_seq: u32,
    /// Interarrival jitter of our stream at the caller, in ms (timestamp units / 8).
    pub jitter_ms: f64,
    /// Round-trip time from LSR/DLSR (§6.4.1), when the caller echoed one of our SRs.
    pub round_trip: Option<Duration>,
    /// When the report arrived.
    pub received_at: Instant,
}

/// Counters of one RTCP session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtcpStats {
    /// Datagrams given to [`RtcpSession::handle_packet`].
    pub received: u64,
    /// Datagrams rejected as malformed.
    pub malformed: u64,
    /// Report blocks about our stream received.
    pub reports_about_us: u64,
    /// Sender reports received from the caller.
    pub sender_reports_received: u64,
    /// Compound packets built by [`RtcpSession::poll_transmit`] and [`RtcpSession::goodbye`].
    pub sent: u64,
    /// Of those, with an SR.
    pub sender_reports_sent: u64,
}

#[derive(Debug, Clone, Copy)]
struct LastSr {
    ssrc: u32,
    /// Middle 32 bits of its NTP timestamp (§6.4.1 LSR).
    middle: u32,
    received_at: Instant,
}

/// The RTCP state of one call. See the module docs.
#[derive(Debug)]
pub struct RtcpSession {
    our_ssrc: u32,
    cname: String,
    created: Instant,
    /// NTP timestamp (32.32) at `created`.
    ntp_at_created: u64,
    last_now: Instant,
    next_report: Instant,
    packets_sent: u32,
    octets_sent: u32,
    /// (when, RTP timestamp) of the last RTP packet we sent.
    last_rtp: Option<(Instant, u32)>,
    sent_since_report: bool,
    last_sr: Option<LastSr>,
    /// The report-block fields we sent last time, for "fraction lost" since then.
    prior_fields: Option<ReceiverReportFields>,
    remote: Option<RemoteReport>,
    remote_cname: Option<String>,
    remote_bye: bool,
    stats: RtcpStats,
}

impl RtcpSession {
    /// A session for our stream `our_ssrc` (the pacer's SSRC), announcing `cname` in SDES (RFC
    /// 3550 §6.5.1; cut to 255 bytes at a character boundary). The first report is due
    /// [`REPORT_INTERVAL`] / 2 after `now`.
    pub fn new(our_ssrc: u32, cname: &str, now: Instant) -> Self {
        let mut end = cname.len().min(MAX_SDES_BYTES);
        while !cname.is_char_boundary(end) {
            end -= 1;
        }
        RtcpSession {
            our_ssrc,
            cname: cname[..end].to_owned(),
            created: now,
            ntp_at_created: 0,
            last_now: now,
            next_report: now + REPORT_INTERVAL / 2,
            packets_sent: 0,
            octets_sent: 0,
            last_rtp: None,
            sent_since_report: false,
            last_sr: None,
            prior_fields: None,
            remote: None,
            remote_cname: None,
            remote_bye: false,
            stats: RtcpStats::default(),
        }
    }

    /// Anchors our NTP timestamps (RFC 3550 §4: 32.32 fixed point seconds since 1900) to the wall
    /// clock: `ntp` is the wall-clock time at `now`, read by the shell. Optional.
    pub fn set_wallclock(&mut self, now: Instant, ntp: u64) {
        let elapsed = ntp_duration(now.saturating_duration_since(self.created));
        self.ntp_at_created = ntp.wrapping_sub(elapsed);
    }

    /// Parses one RTCP datagram received at `now` and records what it says; see the module docs.
    ///
    /// # Errors
    ///
    /// [`enum@Error`] when any packet of the datagram is malformed; nothing is recorded then.
    pub fn handle_packet(&mut self, now: Instant, datagram: &[u8]) -> Result<(), Error> {
        let now = self.clamp(now);
        self.stats.received += 1;
        if let Err(e) = validate(datagram) {
            self.stats.malformed += 1;
            return Err(e);
        }
        for packet in Compound::parse(datagram)?.flatten() {
            match packet {
                Packet::Sr(sr) => {
                    self.stats.sender_reports_received += 1;
                    self.last_sr = Some(LastSr {
                        ssrc: sr.ssrc(),
                        middle: ntp_middle(sr.ntp_timestamp()),
                        received_at: now,
                    });
                    for block in sr.report_blocks() {
                        self.on_report_block(now, sr.ssrc(), &block);
                    }
                }
                Packet::Rr(rr) => {
                    for block in rr.report_blocks() {
                        self.on_report_block(now, rr.ssrc(), &block);
                    }
                }
                Packet::Sdes(sdes) => {
                    for chunk in sdes.chunks() {
                        for item in chunk.items() {
                            if item.type_() == SdesItem::CNAME {
                                let value = item.value();
                                let value = &value[..value.len().min(MAX_SDES_BYTES)];
                                self.remote_cname = Some(String::from_utf8_lossy(value).into());
                            }
                        }
                    }
                }
                Packet::Bye(_) => self.remote_bye = true,
                _ => {}
            }
        }
        Ok(())
    }

    /// Records one RTP packet we sent at `now`: its RTP timestamp (8 kHz units) and payload size
    /// in bytes, for the sender info of our next SR (§6.4.1: packet and octet counts, wrapping).
    pub fn on_rtp_sent(&mut self, now: Instant, rtp_ts: u32, payload_bytes: usize) {
        let now = self.clamp(now);
        self.packets_sent = self.packets_sent.wrapping_add(1);
        // The octet count wraps modulo 2^32 by definition (§6.4.1).
        self.octets_sent = self.octets_sent.wrapping_add(payload_bytes as u32);
        self.last_rtp = Some((now, rtp_ts));
        self.sent_since_report = true;
    }

    /// The next compound report if one is due at `now`, else `None`; see the module docs.
    ///
    /// `receiver` is the jitter buffer's current [`ReceiverReportFields`] about the caller's
    /// stream (`None` before any caller audio): it becomes our report block, with "fraction lost"
    /// computed since the fields passed to the previous report and LSR/DLSR from the caller's last
    /// SR.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        receiver: Option<&ReceiverReportFields>,
    ) -> Option<Vec<u8>> {
        let now = self.clamp(now);
        if now < self.next_report {
            return None;
        }
        self.next_report += REPORT_INTERVAL;
        if self.next_report <= now {
            self.next_report = now + REPORT_INTERVAL;
        }
        self.build(now, receiver, None)
    }

    /// When the next report is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_report)
    }

    /// A final compound packet for the end of the call: SR or RR, SDES, then BYE (§6.6) with
    /// `reason` (cut to 255 bytes; empty for none). Send it once, on teardown.
    pub fn goodbye(
        &mut self,
        now: Instant,
        receiver: Option<&ReceiverReportFields>,
        reason: &str,
    ) -> Option<Vec<u8>> {
        let now = self.clamp(now);
        let mut end = reason.len().min(MAX_SDES_BYTES);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.build(now, receiver, Some(&reason[..end]))
    }

    /// What the caller last reported about our stream, if it has sent a report block about it.
    pub fn remote_reports(&self) -> Option<&RemoteReport> {
        self.remote.as_ref()
    }

    /// The caller's SDES CNAME, if received.
    pub fn remote_cname(&self) -> Option<&str> {
        self.remote_cname.as_deref()
    }

    /// Whether the caller sent an RTCP BYE (§6.6).
    pub fn remote_bye(&self) -> bool {
        self.remote_bye
    }

    /// Counters so far.
    pub fn stats(&self) -> RtcpStats {
        self.stats
    }

    fn clamp(&mut self, now: Instant) -> Instant {
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    fn ntp_now(&self, now: Instant) -> u64 {
        self.ntp_at_created
            .wrapping_add(ntp_duration(now.saturating_duration_since(self.created)))
    }

    fn on_report_block(&mut self, now: Instant, reporter: u32, block: &ReportBlock<'_>) {
        if block.ssrc() != self.our_ssrc {
            return;
        }
        self.stats.reports_about_us += 1;
        // §6.4.1: RTT = A − LSR − DLSR, all in 1/65536 s; LSR 0 means no SR was received.
        let lsr = block.last_sender_report_timestamp();
        let round_trip = (lsr != 0)
            .then(|| {
                ntp_middle(self.ntp_now(now))
                    .wrapping_sub(lsr)
                    .wrapping_sub(block.delay_since_last_sender_report_timestamp())
            })
            .filter(|rtt| *rtt < 1 << 31)
            .map(|rtt| Duration::from_secs_f64(f64::from(rtt) / 65_536.0));
        // The 24-bit two's-complement field, sign-extended.
        let cumulative_lost = ((block.cumulative_lost() << 8) as i32) >> 8;
        self.remote = Some(RemoteReport {
            reporter_ssrc: reporter,
            fraction_lost: f64::from(block.fraction_lost()) / 256.0,
            cumulative_lost,
            extended_highest_seq: block.extended_sequence_number(),
            jitter_ms: f64::from(block.interarrival_jitter()) * 1_000.0 / f64::from(CLOCK_RATE_HZ),
            round_trip,
            received_at: now,
        });
    }

    fn build(
        &mut self,
        now: Instant,
        receiver: Option<&ReceiverReportFields>,
        bye: Option<&str>,
    ) -> Option<Vec<u8>> {
        let block = receiver.map(|f| {
            let (lsr, dlsr) = match self.last_sr {
                Some(sr) if sr.ssrc == f.ssrc => {
                    let delay = now.saturating_duration_since(sr.received_at);
                    let dlsr =
                        u32::try_from(delay.as_micros() * 65_536 / 1_000_000).unwrap_or(u32::MAX);
                    (sr.middle, dlsr)
                }
                _ => (0, 0),
            };
            ReportBlock::builder(f.ssrc)
                .fraction_lost(f.fraction_lost_since(self.prior_fields.as_ref()))
                // 24-bit two's complement (§6.4.1); the fields are clamped to that range.
                .cumulative_lost((f.cumulative_lost as u32) & 0x00FF_FFFF)
                .extended_sequence_number(f.extended_highest_seq)
                .interarrival_jitter(f.jitter)
                .last_sender_report_timestamp(lsr)
                .delay_since_last_sender_report_timestamp(dlsr)
        });
        let report: Box<dyn RtcpPacketWriterExt> = match self.last_rtp {
            Some((at, ts)) if self.sent_since_report => {
                let elapsed = now.saturating_duration_since(at);
                let advance = elapsed.as_micros() * u128::from(CLOCK_RATE_HZ) / 1_000_000;
                // The RTP timestamp wraps modulo 2^32 (§5.1).
                let rtp_ts = ts.wrapping_add(advance as u32);
                let mut sr = SenderReport::builder(self.our_ssrc)
                    .ntp_timestamp(self.ntp_now(now))
                    .rtp_timestamp(rtp_ts)
                    .packet_count(self.packets_sent)
                    .octet_count(self.octets_sent);
                if let Some(b) = block {
                    sr = sr.add_report_block(b);
                }
                self.stats.sender_reports_sent += 1;
                Box::new(sr)
            }
            _ => {
                let mut rr = ReceiverReport::builder(self.our_ssrc);
                if let Some(b) = block {
                    rr = rr.add_report_block(b);
                }
                Box::new(rr)
            }
        };
        let sdes = Sdes::builder().add_chunk(
            SdesChunk::builder(self.our_ssrc)
                .add_item(SdesItem::builder(SdesItem::CNAME, self.cname.as_str())),
        );
        let mut compound = CompoundBuilder::default()
            .add_packet(BoxedWriter(report))
            .add_packet(sdes);
        if let Some(reason) = bye {
            let mut b = rtcp_types::Bye::builder().add_source(self.our_ssrc);
            if !reason.is_empty() {
                b = b.reason(reason);
            }
            compound = compound.add_packet(b);
        }
        let bytes = write(&compound).ok()?;
        self.prior_fields = receiver.copied();
        self.sent_since_report = false;
        self.stats.sent += 1;
        Some(bytes)
    }
}

/// Lets a boxed SR or RR builder go into a [`CompoundBuilder`].
#[derive(Debug)]
struct BoxedWriter(Box<dyn RtcpPacketWriterExt>);

impl rtcp_types::RtcpPacketWriter for BoxedWriter {
    fn calculate_size(&self) -> Result<usize, RtcpWriteError> {
        self.0.calculate_size()
    }
    fn write_into_unchecked(&self, buf: &mut [u8]) -> usize {
        self.0.write_into_unchecked(buf)
    }
    fn get_padding(&self) -> Option<u8> {
        self.0.get_padding()
    }
}

fn write(compound: &CompoundBuilder<'_>) -> Result<Vec<u8>, RtcpWriteError> {
    let size = rtcp_types::RtcpPacketWriter::calculate_size(compound)?;
    let mut buf = vec![0; size];
    let written = compound.write_into(&mut buf)?;
    buf.truncate(written);
    Ok(buf)
}

/// Checks that every packet of a datagram parses, so that a malformed one changes nothing.
fn validate(datagram: &[u8]) -> Result<(), Error> {
    for packet in Compound::parse(datagram)? {
        packet?;
    }
    Ok(())
}

/// The middle 32 bits of a 32.32 NTP timestamp (RFC 3550 §4), as used by LSR.
fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// A duration as 32.32 fixed-point seconds (NTP format, RFC 3550 §4).
fn ntp_duration(d: Duration) -> u64 {
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (d.as_secs() << 32).wrapping_add(frac)
}

#[cfg(test)]
mod tests {
    use rtcp_types::{Bye, RtcpPacketParser, RtcpPacketWriter};

    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const OURS: u32 = 0x0A0B_0C0D;
    const CALLER: u32 = 0x1122_3344;

    fn fields(expected: u64, received: u64) -> ReceiverReportFields {
        ReceiverReportFields {
            ssrc: CALLER,
            extended_highest_seq: 70_000,
            cumulative_lost: (expected as i64 - received as i64) as i32,
            expected,
            received,
            jitter: 160,
        }
    }

    /// Parses a compound packet we built into (SR or RR sender SSRC, is SR, report blocks, CNAME, bye).
    #[allow(clippy::type_complexity)]
    fn decode(
        bytes: &[u8],
    ) -> (
        u32,
        bool,
        Vec<(u32, u8, u32, u32, u32, u32, u32)>,
        String,
        bool,
    ) {
        let mut out = (0, false, Vec::new(), String::new(), false);
        let mut first = true;
        for packet in Compound::parse(bytes).expect("valid compound") {
            let packet = packet.expect("valid packet");
            let blocks = |b: ReportBlock<'_>| {
                (
                    b.ssrc(),
                    b.fraction_lost(),
                    b.cumulative_lost(),
                    b.extended_sequence_number(),
                    b.interarrival_jitter(),
                    b.last_sender_report_timestamp(),
                    b.delay_since_last_sender_report_timestamp(),
                )
            };
            match packet {
                Packet::Sr(sr) => {
                    assert!(first, "SR first");
                    out.0 = sr.ssrc();
                    out.1 = true;
                    out.2 = sr.report_blocks().map(blocks).collect();
                }
                Packet::Rr(rr) => {
                    assert!(first, "RR first");
                    out.0 = rr.ssrc();
                    out.2 = rr.report_blocks().map(blocks).collect();
                }
                Packet::Sdes(sdes) => {
                    for chunk in sdes.chunks() {
                        assert_eq!(chunk.ssrc(), OURS);
                        for item in chunk.items() {
                            assert_eq!(item.type_(), SdesItem::CNAME);
                            out.3 = String::from_utf8_lossy(item.value()).into();
                        }
                    }
                }
                Packet::Bye(bye) => {
                    assert_eq!(bye.ssrcs().collect::<Vec<_>>(), vec![OURS]);
                    out.4 = true;
                }
                other => panic!("unexpected {other:?}"),
            }
            first = false;
        }
        out
    }

    /// A caller RR (or SR with `ntp`) with one block about `about`.
    fn caller_report(ntp: Option<u64>, about: u32, lost: u32, lsr: u32, dlsr: u32) -> Vec<u8> {
        let block = ReportBlock::builder(about)
            .fraction_lost(64)
            .cumulative_lost(lost)
            .extended_sequence_number(0x0001_0005)
            .interarrival_jitter(80)
            .last_sender_report_timestamp(lsr)
            .delay_since_last_sender_report_timestamp(dlsr);
        let first: Box<dyn RtcpPacketWriterExt> = match ntp {
            Some(ntp) => Box::new(
                SenderReport::builder(CALLER)
                    .ntp_timestamp(ntp)
                    .rtp_timestamp(1)
                    .packet_count(10)
                    .octet_count(1_600)
                    .add_report_block(block),
            ),
            None => Box::new(ReceiverReport::builder(CALLER).add_report_block(block)),
        };
        let sdes = Sdes::builder().add_chunk(
            SdesChunk::builder(CALLER).add_item(SdesItem::builder(SdesItem::CNAME, "caller@pbx")),
        );
        let compound = CompoundBuilder::default()
            .add_packet(BoxedWriter(first))
            .add_packet(sdes);
        write(&compound).expect("valid")
    }

    #[test]
    fn reports_every_five_seconds_rr_until_we_send_then_sr() {
        let t0 = Instant::now();
        let mut s = RtcpSession::new(OURS, "frontdesk@example", t0);
        assert_eq!(s.poll_timeout(), Some(t0 + MS * 2_500));
        assert_eq!(s.poll_transmit(t0 + MS * 2_499, None), None);
        let first = s.poll_transmit(t0 + MS * 2_500, None).expect("due");
        let (ssrc, is_sr, blocks, cname, bye) = decode(&first);
        assert_eq!((ssrc, is_sr, blocks.len(), bye), (OURS, false, 0, false));
        assert_eq!(cname, "frontdesk@example");
        assert_eq!(s.poll_transmit(t0 + MS * 2_500, None), None, "once");
        // Every 5 s on an absolute schedule, even when the shell is a little late.
        let mut due = t0 + MS * 2_500;
        for k in 1..=10u32 {
            due += REPORT_INTERVAL;
            assert_eq!(s.poll_timeout(), Some(due));
            assert!(s.poll_transmit(due - MS, None).is_none());
            assert!(s.poll_transmit(due + MS * (k * 7), None).is_some());
        }
        // We send RTP: the next report is an SR with our counts; the one after, an RR again.
        for i in 0..50u32 {
            s.on_rtp_sent(due + MS * (20 * i), 1_000 + 160 * i, 160);
        }
        due += REPORT_INTERVAL;
        let sr = s.poll_transmit(due, None).expect("due");
        let parsed = SenderReport::parse(&sr[..28]).expect("SR first");
        assert_eq!((parsed.packet_count(), parsed.octet_count()), (50, 8_000));
        // Last packet at due − 4020 ms with ts 1000 + 160 × 49; the SR time is 4020 ms later.
        let last_ts = 1_000 + 160 * 49;
        let since_last = due - (due - REPORT_INTERVAL + MS * (20 * 49));
        let expect_ts = last_ts + (since_last.as_millis() as u32) * 8;
        assert_eq!(parsed.rtp_timestamp(), expect_ts);
        due += REPORT_INTERVAL;
        assert!(!decode(&s.poll_transmit(due, None).expect("due")).1, "RR");
        // A shell asleep for 30 s sends one report and restarts the schedule.
        let late = due + MS * 30_000;
        assert!(s.poll_transmit(late, None).is_some());
        assert!(s.poll_transmit(late, None).is_none());
        assert_eq!(s.poll_timeout(), Some(late + REPORT_INTERVAL));
        assert_eq!(s.stats().sent, 14);
        assert_eq!(s.stats().sender_reports_sent, 1);
    }

    #[test]
    fn our_report_block_round_trips_with_lsr_dlsr_and_fraction_since_last_report() {
        let t0 = Instant::now();
        let mut s = RtcpSession::new(OURS, "fd", t0);
        s.set_wallclock(t0, 0xE000_0000_8000_0000);
        // The caller's SR at 1 s: NTP 0x1234_5678_9ABC_DEF0 → LSR 0x5678_9ABC.
        let sr = caller_report(Some(0x1234_5678_9ABC_DEF0), 0x99, 0, 0, 0);
        s.handle_packet(t0 + MS * 1_000, &sr).expect("valid");
        assert_eq!(s.remote_cname(), Some("caller@pbx"));
        assert!(
            s.remote_reports().is_none(),
            "that block was about another SSRC"
        );
        let f1 = fields(100, 90);
        let bytes = s.poll_transmit(t0 + MS * 2_500, Some(&f1)).expect("due");
        let (_, is_sr, blocks, _, _) = decode(&bytes);
        assert!(!is_sr);
        // 1.5 s since the SR = 98,304 / 65,536 s.
        assert_eq!(
            blocks,
            vec![(CALLER, 25, 10, 70_000, 160, 0x5678_9ABC, 98_304)]
        );
        // Next interval: 50 more expected, 40 more received → 10/50 × 256 = 51.
        let f2 = fields(150, 130);
        let bytes = s.poll_transmit(t0 + MS * 7_500, Some(&f2)).expect("due");
        let (_, _, blocks, _, _) = decode(&bytes);
        assert_eq!(blocks[0].1, 51);
        assert_eq!(blocks[0].2, 20);
        // More received than expected (duplicates): negative cumulative lost, fraction 0.
        let f3 = ReceiverReportFields {
            cumulative_lost: -3,
            ..fields(160, 163)
        };
        let bytes = s.poll_transmit(t0 + MS * 12_500, Some(&f3)).expect("due");
        let (_, _, blocks, _, _) = decode(&bytes);
        assert_eq!((blocks[0].1, blocks[0].2), (0, 0x00FF_FFFD));
        // Goodbye: report + SDES + BYE.
        let bye = s
            .goodbye(t0 + MS * 13_000, Some(&f3), "call ended")
            .expect("built");
        let (_, _, _, cname, has_bye) = decode(&bye);
        assert!(has_bye && cname == "fd");
        let tail = Compound::parse(&bye)
            .expect("valid")
            .flatten()
            .find_map(|p| match p {
                Packet::Bye(b) => b.get_reason_string().and_then(Result::ok),
                _ => None,
            });
        assert_eq!(tail.as_deref(), Some("call ended"));
        let _ = Bye::builder();
    }

    #[test]
    fn a_caller_report_about_our_ssrc_updates_remote_reports_with_rtt() {
        let t0 = Instant::now();
        let mut s = RtcpSession::new(OURS, "fd", t0);
        s.on_rtp_sent(t0 + MS * 100, 0, 160);
        let ours = s.poll_transmit(t0 + MS * 2_500, None).expect("due");
        let our_sr = SenderReport::parse(&ours[..28]).expect("SR");
        let lsr = ntp_middle(our_sr.ntp_timestamp());
        // The caller got it 40 ms later, held it 200 ms, and its RR reaches us 40 ms after that.
        let dlsr = 200 * 65_536 / 1_000;
        let rr = caller_report(None, OURS, 0xFF_FFFE, lsr, dlsr);
        s.handle_packet(t0 + MS * 2_780, &rr).expect("valid");
        let r = *s.remote_reports().expect("report about us");
        assert_eq!(r.reporter_ssrc, CALLER);
        assert_eq!(r.fraction_lost, 0.25);
        assert_eq!(r.cumulative_lost, -2, "24-bit sign extension");
        assert_eq!(r.extended_highest_seq, 0x0001_0005);
        assert_eq!(r.jitter_ms, 10.0);
        assert_eq!(r.received_at, t0 + MS * 2_780);
        let rtt = r.round_trip.expect("LSR was set").as_secs_f64();
        assert!((rtt - 0.080).abs() < 0.001, "rtt {rtt}");
        assert_eq!(s.stats().reports_about_us, 1);
        // An SR from the caller carrying a block about us counts too; LSR 0 means no RTT.
        let sr = caller_report(Some(5 << 32), OURS, 3, 0, 0);
        s.handle_packet(t0 + MS * 3_000, &sr).expect("valid");
        let r = s.remote_reports().expect("report about us");
        assert_eq!((r.cumulative_lost, r.round_trip), (3, None));
        assert_eq!(s.stats().sender_reports_received, 1);
        // BYE from the caller.
        let bye = write(
            &CompoundBuilder::default()
                .add_packet(ReceiverReport::builder(CALLER))
                .add_packet(Bye::builder().add_source(CALLER)),
        )
        .expect("valid");
        assert!(!s.remote_bye());
        s.handle_packet(t0 + MS * 3_100, &bye).expect("valid");
        assert!(s.remote_bye());
    }

    #[test]
    fn malformed_input_is_an_error_and_changes_nothing() {
        let t0 = Instant::now();
        let mut s = RtcpSession::new(OURS, "fd", t0);
        let good = caller_report(None, OURS, 1, 0, 0);
        assert!(matches!(
            s.handle_packet(t0, &[]),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            s.handle_packet(t0, &good[..3]),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            s.handle_packet(t0, &good[..good.len() - 1]),
            Err(Error::Truncated { .. })
        ));
        let mut v1 = good.clone();
        v1[0] = 0x41;
        assert_eq!(s.handle_packet(t0, &v1), Err(Error::UnsupportedVersion(1)));
        // A valid RR followed by a broken SDES: nothing recorded.
        let mut broken = good.clone();
        let sdes_at = 8 + 24;
        broken[sdes_at + 9] = 200; // CNAME length past the packet end
        assert!(s.handle_packet(t0, &broken).is_err());
        assert!(s.remote_reports().is_none());
        assert_eq!(s.stats().malformed, 5);
        // Random garbage and mutations of valid packets never panic.
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for round in 0..20_000u32 {
            let mut data = if round % 2 == 0 {
                good.clone()
            } else {
                let len = (next() % 80) as usize;
                (0..len).map(|_| next() as u8).collect()
            };
            if !data.is_empty() {
                for _ in 0..(next() % 4) {
                    let i = (next() as usize) % data.len();
                    data[i] = next() as u8;
                }
                if round % 2 == 1 {
                    data[0] = 0x80 | (data[0] & 0x3F);
                }
            }
            let _ = s.handle_packet(t0, &data);
        }
        assert!(s.handle_packet(t0 + MS, &good).is_ok());
        assert_eq!(s.remote_reports().map(|r| r.cumulative_lost), Some(1));
    }

    #[test]
    fn long_cname_is_cut_at_a_character_boundary() {
        let t0 = Instant::now();
        let name = "é".repeat(200); // 400 bytes
        let mut s = RtcpSession::new(OURS, &name, t0);
        let bytes = s.poll_transmit(t0 + REPORT_INTERVAL, None).expect("due");
        let (_, _, _, cname, _) = decode(&bytes);
        assert_eq!(cname.len(), 254);
        assert!(RtcpPacketWriter::calculate_size(&Sdes::builder()).is_ok());
    }
}
