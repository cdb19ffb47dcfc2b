//! G.711 (ITU-T G.711) constants and sample decoding.
//!
//! frontdesk never transcodes audio on the call path: µ-law (PCMU) and A-law (PCMA) bytes go from RTP
//! to the Realtime session and back untouched. Decoding exists only for energy measurement (the
//! simulator's voice-activity detector, audio checks in tests). Pure functions, no I/O.

/// Samples per second of G.711 audio (RFC 3551 §4.5.14): 8 kHz, one byte per sample.
pub const CLOCK_RATE_HZ: u32 = 8_000;
/// Bytes (= samples) in one 20 ms frame at 8 kHz.
pub const FRAME_BYTES: usize = 160;
/// Duration of one frame in milliseconds.
pub const FRAME_MS: u64 = 20;
/// Bytes of G.711 audio per millisecond (8 kHz, 8 bits per sample).
pub const BYTES_PER_MS: u64 = 8;

/// Which G.711 companding law a byte stream uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Law {
    /// µ-law, RTP payload type 0 (PCMU).
    Mu,
    /// A-law, RTP payload type 8 (PCMA).
    A,
}

impl Law {
    /// The byte that encodes digital silence (linear 0) in this law: `0xFF` for µ-law, `0xD5` for A-law.
    pub const fn silence_byte(self) -> u8 {
        match self {
            Law::Mu => 0xFF,
            Law::A => 0xD5,
        }
    }

    /// Decodes one byte to a 16-bit linear PCM sample.
    pub fn decode(self, byte: u8) -> i16 {
        match self {
            Law::Mu => ulaw_to_linear(byte),
            Law::A => alaw_to_linear(byte),
        }
    }

    /// The static RTP payload type of this law (RFC 3551 table 4): 0 for PCMU, 8 for PCMA.
    pub const fn payload_type(self) -> u8 {
        match self {
            Law::Mu => 0,
            Law::A => 8,
        }
    }
}

/// Decodes a µ-law byte to linear PCM (ITU-T G.711, 14-bit magnitude scaled to 16 bits).
pub fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let sign = u & 0x80;
    let exponent = (u >> 4) & 0x07;
    let mantissa = u & 0x0F;
    let magnitude = ((i32::from(mantissa) << 3) + 0x84) << exponent;
    let sample = magnitude - 0x84;
    (if sign != 0 { -sample } else { sample }) as i16
}

/// Decodes an A-law byte to linear PCM (ITU-T G.711, 13-bit magnitude scaled to 16 bits).
pub fn alaw_to_linear(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let sign = a & 0x80;
    let exponent = (a >> 4) & 0x07;
    let mantissa = i32::from(a & 0x0F);
    let magnitude = match exponent {
        0 => (mantissa << 4) + 8,
        e => ((mantissa << 4) + 0x108) << (e - 1),
    };
    (if sign != 0 { magnitude } else { -magnitude }) as i16
}

/// Encodes a 16-bit linear PCM sample as µ-law (ITU-T G.711). Used to synthesise test and simulator audio.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let mut exponent = 7u8;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = ((s >> (exponent + 3)) & 0x0F) as u8;
    !(sign | (exponent << 4) | mantissa)
}

/// Encodes a 16-bit linear PCM sample as A-law (ITU-T G.711).
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut s = i32::from(sample) >> 3; // 13-bit
    let sign = if s >= 0 {
        0x80
    } else {
        s = -s - 1;
        0
    };
    let s = s.min(0x0FFF);
    let byte = if s < 32 {
        (s >> 1) as u8
    } else {
        let mut exponent = 1u8;
        let mut v = s >> 5;
        while v > 1 {
            v >>= 1;
            exponent += 1;
        }
        (exponent << 4) | ((s >> exponent) & 0x0F) as u8
    };
    (byte | sign) ^ 0x55
}

/// Root-mean-square level of a G.711 buffer, as a fraction of full scale (0.0 – 1.0).
///
/// Returns 0.0 for an empty buffer.
pub fn rms(law: Law, bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let sum: f64 = bytes
        .iter()
        .map(|&b| {
            let s = f64::from(law.decode(b)) / 32_768.0;
            s * s
        })
        .sum();
    (sum / bytes.len() as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_bytes_decode_to_zero() {
        assert_eq!(ulaw_to_linear(Law::Mu.silence_byte()), 0);
        assert!(alaw_to_linear(Law::A.silence_byte()).abs() <= 8);
    }

    #[test]
    fn ulaw_round_trip_is_close() {
        for s in (-32_000i32..32_000).step_by(97) {
            let back = i32::from(ulaw_to_linear(linear_to_ulaw(s as i16)));
            let tol = (s.abs() / 16).max(8);
            assert!((back - s).abs() <= tol, "{s} -> {back}");
        }
    }

    #[test]
    fn alaw_round_trip_is_close() {
        for s in (-32_000i32..32_000).step_by(97) {
            let back = i32::from(alaw_to_linear(linear_to_alaw(s as i16)));
            let tol = (s.abs() / 16).max(16);
            assert!((back - s).abs() <= tol, "{s} -> {back}");
        }
    }

    #[test]
    fn rms_of_silence_is_zero_and_of_tone_is_not() {
        assert_eq!(rms(Law::Mu, &[0xFF; 160]), 0.0);
        let tone: Vec<u8> = (0..160)
            .map(|i| linear_to_ulaw(((i as f64 * 0.3).sin() * 10_000.0) as i16))
            .collect();
        assert!(rms(Law::Mu, &tone) > 0.15);
    }
}
