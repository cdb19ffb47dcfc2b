//! RTP packet parsing and writing (RFC 3550 §5.1), RTCP demultiplexing (RFC 5761 §4) and extended
//! sequence numbers / timestamps (RFC 3550 §A.1).
//!
//! Owns the wire format only: a thin wrapper over `rtp_rs::RtpReader` for parsing (version check,
//! padding, header extension and CSRC list are handled there) and a direct 12-byte header writer
//! (no CSRC, no extension, no padding) for what frontdesk sends.
//!
//! Invariants: parsing never panics on any input; writing never allocates when the output buffer is
//! reused with enough capacity. Packets are never ordered with `rtp_rs::Seq` comparisons (that
//! order is not transitive); use [`extend_seq`] and compare the resulting `u64` values instead.
//!
//! No I/O.

use thiserror::Error;

/// Length in bytes of the fixed RTP header without CSRCs or extension (RFC 3550 §5.1).
pub const HEADER_BYTES: usize = 12;

/// The only RTP version accepted and written (RFC 3550 §5.1, field V).
pub const VERSION: u8 = 2;

/// Why a datagram is not a usable RTP packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// The datagram is shorter than the 12-byte fixed header (RFC 3550 §5.1).
    #[error("datagram of {len} bytes is shorter than the 12-byte RTP header")]
    TooShort {
        /// Length of the datagram in bytes.
        len: usize,
    },
    /// The version field is not 2 (RFC 3550 §5.1).
    #[error("unsupported RTP version {0}")]
    UnsupportedVersion(u8),
    /// The CSRC list or header extension (RFC 3550 §5.1, §5.3.1) runs past the end of the datagram.
    #[error("RTP header needs {header_len} bytes but the datagram has {buffer_len}")]
    HeadersTruncated {
        /// Bytes the header claims, CSRC list and extension included.
        header_len: usize,
        /// Bytes actually present.
        buffer_len: usize,
    },
    /// The padding count in the last byte (RFC 3550 §5.1, field P) is 0 or longer than the payload.
    #[error("invalid RTP padding length {0}")]
    InvalidPadding(u8),
}

/// The fields of one parsed RTP packet that the media path uses (RFC 3550 §5.1).
///
/// Borrowed from the datagram; `payload` excludes the CSRC list, header extension and padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeaderView<'a> {
    /// Payload type, 7 bits (RFC 3551 table 4: 0 = PCMU, 8 = PCMA; dynamic 96–127, e.g. telephone-event).
    pub payload_type: u8,
    /// Sequence number, +1 per packet, wraps at 2^16 (RFC 3550 §5.1).
    pub sequence: u16,
    /// Media timestamp in clock units (8 kHz samples for G.711), wraps at 2^32 (RFC 3550 §5.1).
    pub timestamp: u32,
    /// Synchronisation source identifier (RFC 3550 §5.1, §8).
    pub ssrc: u32,
    /// Marker bit; for audio, set on the first packet of a talkspurt (RFC 3551 §4.1).
    pub marker: bool,
    /// Payload bytes (for G.711: one byte per 8 kHz sample).
    pub payload: &'a [u8],
}

/// Parses one RTP datagram (RFC 3550 §5.1).
///
/// Rejects datagrams shorter than 12 bytes, versions other than 2, truncated CSRC lists or header
/// extensions, and invalid padding. Does not detect RTCP: call [`is_rtcp`] first on a muxed port.
pub fn parse(buf: &[u8]) -> Result<RtpHeaderView<'_>, Error> {
    let reader = rtp_rs::RtpReader::new(buf).map_err(|e| match e {
        rtp_rs::RtpReaderError::BufferTooShort(len) => Error::TooShort { len },
        rtp_rs::RtpReaderError::UnsupportedVersion(v) => Error::UnsupportedVersion(v),
        rtp_rs::RtpReaderError::HeadersTruncated {
            header_len,
            buffer_len,
        } => Error::HeadersTruncated {
            header_len,
            buffer_len,
        },
        rtp_rs::RtpReaderError::PaddingLengthInvalid(p) => Error::InvalidPadding(p),
    })?;
    Ok(RtpHeaderView {
        payload_type: reader.payload_type(),
        sequence: u16::from(reader.sequence_number()),
        timestamp: reader.timestamp(),
        ssrc: reader.ssrc(),
        marker: reader.mark(),
        payload: reader.payload(),
    })
}

/// Builds the 12-byte fixed RTP header (RFC 3550 §5.1): V=2, no padding, no extension, no CSRC.
///
/// `pt` is masked to its 7 bits; `ts` is in clock units (8 kHz samples for G.711).
pub fn header(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[0] = VERSION << 6;
    h[1] = (u8::from(marker) << 7) | (pt & 0x7F);
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h[4..8].copy_from_slice(&ts.to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    h
}

/// Writes a whole RTP packet (12-byte header from [`header`], then `payload`) into `out`,
/// replacing its contents (RFC 3550 §5.1).
///
/// Does not allocate when `out` already has capacity for `12 + payload.len()` bytes, so a reused
/// buffer makes the send path allocation-free.
pub fn write_packet(
    out: &mut Vec<u8>,
    pt: u8,
    marker: bool,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: &[u8],
) {
    out.clear();
    out.extend_from_slice(&header(pt, marker, seq, ts, ssrc));
    out.extend_from_slice(payload);
}

/// Whether a datagram on an rtcp-mux port is RTCP rather than RTP (RFC 5761 §4).
///
/// True when the version is 2, the datagram holds at least the 8-byte RTCP header + SSRC, and the
/// second byte (marker bit + payload type for RTP, packet type for RTCP) is in 192–223: this covers
/// SR/RR/SDES/BYE/APP (200–204, RFC 3550 §6.4–6.7) and RTPFB/PSFB/XR (205–207), and is the range that
/// RTP must avoid for payload types 64–95 when muxing.
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 8 && buf[0] >> 6 == VERSION && (192..=223).contains(&buf[1])
}

/// Extends a 16-bit sequence number to 64 bits (RFC 3550 §A.1: cycles << 16 | seq).
///
/// Returns the extended value closest to `reference` (normally the highest extended sequence number
/// seen) whose low 16 bits are `seq`: up to 32767 packets ahead or 32768 behind. Saturates at 0
/// instead of underflowing; start streams at `1 << 16 | seq` to leave room behind the first packet.
pub fn extend_seq(reference: u64, seq: u16) -> u64 {
    // Truncation to the low 16 bits is the point: the wrapped difference is the signed distance.
    let delta = seq.wrapping_sub(reference as u16) as i16;
    if delta >= 0 {
        reference.saturating_add(u64::from(delta.unsigned_abs()))
    } else {
        reference.saturating_sub(u64::from(delta.unsigned_abs()))
    }
}

/// Extends a 32-bit RTP timestamp (clock units: 8 kHz samples for G.711) to 64 bits (RFC 3550 §5.1,
/// wrap handling as in §A.1).
///
/// Returns the extended value closest to `reference` whose low 32 bits are `ts`: up to 2^31 − 1
/// ahead or 2^31 behind (about 3 days at 8 kHz). Saturates at 0; start at `1 << 32 | ts`.
pub fn extend_ts(reference: u64, ts: u32) -> u64 {
    let delta = ts.wrapping_sub(reference as u32) as i32;
    if delta >= 0 {
        reference.saturating_add(u64::from(delta.unsigned_abs()))
    } else {
        reference.saturating_sub(u64::from(delta.unsigned_abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_parse_round_trips() {
        let payload: Vec<u8> = (0..160u8).collect();
        let mut out = Vec::with_capacity(HEADER_BYTES + 160);
        write_packet(
            &mut out,
            8,
            true,
            0xBEEF,
            0xDEAD_BEEF,
            0x1234_5678,
            &payload,
        );
        assert_eq!(out.len(), 172);
        let v = parse(&out).expect("valid packet");
        assert_eq!(v.payload_type, 8);
        assert!(v.marker);
        assert_eq!(v.sequence, 0xBEEF);
        assert_eq!(v.timestamp, 0xDEAD_BEEF);
        assert_eq!(v.ssrc, 0x1234_5678);
        assert_eq!(v.payload, &payload[..]);
        assert!(!is_rtcp(&out));

        // Reuse without reallocating.
        let cap = out.capacity();
        let ptr = out.as_ptr();
        write_packet(&mut out, 0, false, 1, 2, 3, &[0xFF; 160]);
        assert_eq!((out.capacity(), out.as_ptr()), (cap, ptr));
        let v = parse(&out).expect("valid packet");
        assert_eq!(
            (v.payload_type, v.marker, v.sequence, v.timestamp, v.ssrc),
            (0, false, 1, 2, 3)
        );
    }

    #[test]
    fn parse_handles_csrc_extension_and_padding() {
        let mut p = vec![0xA0 | 0x10 | 0x01, 0x00, 0, 5, 0, 0, 0, 9, 0, 0, 0, 1];
        p.extend_from_slice(&[0, 0, 0, 7]); // one CSRC
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 1, 2, 3, 4]); // extension of one word
        p.extend_from_slice(&[0x11, 0x22, 0x33]); // payload
        p.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        let v = parse(&p).expect("valid packet");
        assert_eq!(v.payload, &[0x11, 0x22, 0x33]);
        assert_eq!((v.sequence, v.timestamp, v.ssrc), (5, 9, 1));
    }

    #[test]
    fn malformed_is_rejected() {
        assert_eq!(parse(&[]), Err(Error::TooShort { len: 0 }));
        assert_eq!(parse(&[0x80; 11]), Err(Error::TooShort { len: 11 }));
        let mut v1 = header(0, false, 1, 1, 1).to_vec();
        v1[0] = 0x40; // version 1
        assert_eq!(parse(&v1), Err(Error::UnsupportedVersion(1)));
        let mut csrc = header(0, false, 1, 1, 1).to_vec();
        csrc[0] |= 0x02; // two CSRCs announced, none present
        assert!(matches!(parse(&csrc), Err(Error::HeadersTruncated { .. })));
        let mut ext = header(0, false, 1, 1, 1).to_vec();
        ext[0] |= 0x10;
        ext.extend_from_slice(&[0, 0, 0, 9]); // extension of 9 words, none present
        assert!(matches!(parse(&ext), Err(Error::HeadersTruncated { .. })));
        let mut pad = header(0, false, 1, 1, 1).to_vec();
        pad[0] |= 0x20;
        pad.extend_from_slice(&[1, 2, 0]);
        assert_eq!(parse(&pad), Err(Error::InvalidPadding(0)));
        let mut pad = header(0, false, 1, 1, 1).to_vec();
        pad[0] |= 0x20;
        pad.extend_from_slice(&[1, 2, 9]);
        assert_eq!(parse(&pad), Err(Error::InvalidPadding(9)));
    }

    #[test]
    fn rtcp_is_detected() {
        // Receiver report, no report blocks: V=2, RC=0, PT=201, length=1, SSRC.
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
        assert!(is_rtcp(&rr));
        for pt in 200..=204u8 {
            let mut p = rr;
            p[1] = pt;
            assert!(is_rtcp(&p));
        }
        assert!(!is_rtcp(&rr[..4]));
        // RTP PCMU with marker: second byte 0x80.
        assert!(!is_rtcp(&header(0, true, 1, 1, 1)));
        // Dynamic RTP payload type 101 with marker: 0xE5 = 229, outside 192–223.
        assert!(!is_rtcp(&header(101, true, 1, 1, 1)));
    }

    #[test]
    fn extension_wraps_both_ways() {
        let base = 1u64 << 16 | 65_534;
        assert_eq!(extend_seq(base, 65_535), base + 1);
        assert_eq!(extend_seq(base, 0), base + 2);
        assert_eq!(extend_seq(base, 3), base + 5);
        assert_eq!(extend_seq(base + 5, 65_534), base);
        assert_eq!(extend_seq(0, 65_535), 0, "saturates");
        let tb = 1u64 << 32 | u64::from(u32::MAX - 100);
        assert_eq!(extend_ts(tb, 59), tb + 160);
        assert_eq!(extend_ts(tb + 160, u32::MAX - 100), tb);
    }
}
