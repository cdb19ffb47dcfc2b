//! Audio formats the simulator hears and speaks, clips loaded from scenario files, and the
//! conversions between them.
//!
//! Owns: the mapping between Realtime format names and byte layouts (`audio/pcmu` = `g711_ulaw`,
//! `audio/pcma` = `g711_alaw`, `audio/pcm` = `pcm16`: 24 kHz 16-bit little-endian mono), 10 ms
//! energy frames for the VAD, re-encoding of 8 kHz linear audio into any output format, and the
//! WAV parser. Pure functions: no I/O (the scenario loader reads the files).

use crate::media::g711::{self, Law};

/// An audio encoding a Realtime session can declare for input or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AudioFormat {
    /// G.711 µ-law, 8 kHz (`audio/pcmu`, beta `g711_ulaw`).
    Pcmu,
    /// G.711 A-law, 8 kHz (`audio/pcma`, beta `g711_alaw`).
    Pcma,
    /// 16-bit little-endian PCM, 24 kHz mono (`audio/pcm` rate 24000, beta `pcm16`).
    Pcm16,
}

/// Samples per second of the PCM16 format.
const PCM16_RATE_HZ: usize = 24_000;
/// PCM16 samples per 8 kHz sample.
const PCM16_UPSAMPLE: usize = PCM16_RATE_HZ / 8_000;

impl AudioFormat {
    /// Bytes of this format per millisecond of audio.
    pub(crate) fn bytes_per_ms(self) -> usize {
        match self {
            AudioFormat::Pcmu | AudioFormat::Pcma => g711::BYTES_PER_MS as usize,
            AudioFormat::Pcm16 => PCM16_RATE_HZ / 1000 * 2,
        }
    }

    /// Bytes in one 10 ms VAD frame.
    pub(crate) fn frame_10ms_bytes(self) -> usize {
        self.bytes_per_ms() * 10
    }

    /// Milliseconds of audio in `bytes` bytes (rounded down).
    pub(crate) fn ms_of(self, bytes: usize) -> u64 {
        (bytes / self.bytes_per_ms()) as u64
    }

    /// Bytes in `ms` milliseconds.
    pub(crate) fn bytes_for_ms(self, ms: u64) -> usize {
        (ms as usize).saturating_mul(self.bytes_per_ms())
    }

    /// The G.711 law, if this is a G.711 format.
    pub(crate) fn law(self) -> Option<Law> {
        match self {
            AudioFormat::Pcmu => Some(Law::Mu),
            AudioFormat::Pcma => Some(Law::A),
            AudioFormat::Pcm16 => None,
        }
    }

    /// The beta (flat) name: `g711_ulaw`, `g711_alaw`, `pcm16`.
    pub(crate) fn beta_name(self) -> &'static str {
        match self {
            AudioFormat::Pcmu => "g711_ulaw",
            AudioFormat::Pcma => "g711_alaw",
            AudioFormat::Pcm16 => "pcm16",
        }
    }

    /// Parses a beta format name.
    pub(crate) fn from_beta_name(name: &str) -> Option<AudioFormat> {
        match name {
            "g711_ulaw" => Some(AudioFormat::Pcmu),
            "g711_alaw" => Some(AudioFormat::Pcma),
            "pcm16" => Some(AudioFormat::Pcm16),
            _ => None,
        }
    }

    /// Parses a GA format `type` (`audio/pcmu`, `audio/pcma`, `audio/pcm`).
    pub(crate) fn from_ga_type(name: &str) -> Option<AudioFormat> {
        match name {
            "audio/pcmu" => Some(AudioFormat::Pcmu),
            "audio/pcma" => Some(AudioFormat::Pcma),
            "audio/pcm" => Some(AudioFormat::Pcm16),
            _ => None,
        }
    }

    /// RMS level (fraction of full scale) of one frame of this format.
    pub(crate) fn rms(self, bytes: &[u8]) -> f64 {
        match self.law() {
            Some(law) => g711::rms(law, bytes),
            None => {
                let samples = bytes.len() / 2;
                if samples == 0 {
                    return 0.0;
                }
                let sum: f64 = bytes
                    .chunks_exact(2)
                    .map(|b| {
                        let s = f64::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0;
                        s * s
                    })
                    .sum();
                (sum / samples as f64).sqrt()
            }
        }
    }

    /// Encodes 8 kHz linear samples in this format (PCM16 is upsampled to 24 kHz by linear
    /// interpolation).
    pub(crate) fn encode_8k(self, samples: &[i16]) -> Vec<u8> {
        match self {
            AudioFormat::Pcmu => samples.iter().map(|&s| g711::linear_to_ulaw(s)).collect(),
            AudioFormat::Pcma => samples.iter().map(|&s| g711::linear_to_alaw(s)).collect(),
            AudioFormat::Pcm16 => {
                let mut out = Vec::with_capacity(samples.len() * PCM16_UPSAMPLE * 2);
                for (i, &s) in samples.iter().enumerate() {
                    let next = samples.get(i + 1).copied().unwrap_or(s);
                    for k in 0..PCM16_UPSAMPLE {
                        let v = i32::from(s)
                            + (i32::from(next) - i32::from(s)) * k as i32 / PCM16_UPSAMPLE as i32;
                        out.extend_from_slice(&(v as i16).to_le_bytes());
                    }
                }
                out
            }
        }
    }

    /// Decodes bytes of this format to 8 kHz linear samples (PCM16 is decimated by 3).
    pub(crate) fn decode_8k(self, bytes: &[u8]) -> Vec<i16> {
        match self.law() {
            Some(law) => bytes.iter().map(|&b| law.decode(b)).collect(),
            None => bytes
                .chunks_exact(2 * PCM16_UPSAMPLE)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect(),
        }
    }

    /// Re-encodes `bytes` from `from` into this format (identity when equal).
    pub(crate) fn transcode_from(self, from: AudioFormat, bytes: &[u8]) -> Vec<u8> {
        if from == self {
            return bytes.to_vec();
        }
        self.encode_8k(&from.decode_8k(bytes))
    }
}

/// Audio loaded from a scenario file, kept in its original encoding so that a G.711 file is
/// sent byte for byte when the session uses the same law.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Clip {
    /// Raw G.711 bytes, 8 kHz.
    G711 { law: Law, bytes: Vec<u8> },
    /// Linear 16-bit samples, 8 kHz.
    Linear8k(Vec<i16>),
}

impl Clip {
    /// The clip encoded in `format`.
    pub(crate) fn render(&self, format: AudioFormat) -> Vec<u8> {
        match self {
            Clip::G711 { law, bytes } if format.law() == Some(*law) => bytes.clone(),
            Clip::G711 { law, bytes } => {
                let samples: Vec<i16> = bytes.iter().map(|&b| law.decode(b)).collect();
                format.encode_8k(&samples)
            }
            Clip::Linear8k(samples) => format.encode_8k(samples),
        }
    }
}

/// WAVE format tags (RIFF `fmt ` chunk).
const WAVE_FORMAT_PCM: u16 = 0x0001;
const WAVE_FORMAT_ALAW: u16 = 0x0006;
const WAVE_FORMAT_MULAW: u16 = 0x0007;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// Parses a RIFF/WAVE file holding 8 kHz mono µ-law, A-law or 16-bit PCM.
///
/// # Errors
/// A message naming what is wrong (not RIFF/WAVE, missing chunk, unsupported encoding, rate or
/// channel count, truncated data).
pub(crate) fn parse_wav(data: &[u8]) -> Result<Clip, String> {
    if data.len() < 12 || &data[0..4] != b"RIFF" || &data[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file".into());
    }
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    let mut pos = 12usize;
    while pos + 8 <= data.len() {
        let id = &data[pos..pos + 4];
        let size = le_u32(data, pos + 4).ok_or("truncated chunk header")? as usize;
        let body_start = pos + 8;
        let body_end = body_start.saturating_add(size);
        if id == b"fmt " {
            let body = data
                .get(body_start..body_end)
                .ok_or("truncated fmt chunk")?;
            let mut tag = le_u16(body, 0).ok_or("fmt chunk too short")?;
            let channels = le_u16(body, 2).ok_or("fmt chunk too short")?;
            let rate = le_u32(body, 4).ok_or("fmt chunk too short")?;
            let bits = le_u16(body, 14).ok_or("fmt chunk too short")?;
            if tag == WAVE_FORMAT_EXTENSIBLE {
                // The sub-format GUID starts with the real format tag.
                tag = le_u16(body, 24).ok_or("WAVE_FORMAT_EXTENSIBLE fmt chunk too short")?;
            }
            fmt = Some((tag, channels, rate, bits));
        } else if id == b"data" {
            let (tag, channels, rate, bits) = fmt.ok_or("data chunk before fmt chunk")?;
            // Some writers put 0 or 0xFFFFFFFF in the size of a streamed data chunk.
            let end = if size == 0 || body_end > data.len() {
                data.len()
            } else {
                body_end
            };
            let body = &data[body_start..end];
            if channels != 1 {
                return Err(format!("{channels} channels; only mono is supported"));
            }
            if rate != 8_000 {
                return Err(format!("sample rate {rate} Hz; only 8000 Hz is supported"));
            }
            return match (tag, bits) {
                (WAVE_FORMAT_MULAW, 8) => Ok(Clip::G711 { law: Law::Mu, bytes: body.to_vec() }),
                (WAVE_FORMAT_ALAW, 8) => Ok(Clip::G711 { law: Law::A, bytes: body.to_vec() }),
                (WAVE_FORMAT_PCM, 16) => Ok(Clip::Linear8k(
                    body.chunks_exact(2)
                        .map(|b| i16::from_le_bytes([b[0], b[1]]))
                        .collect(),
                )),
                (tag, bits) => Err(format!(
                    "unsupported encoding (format tag {tag:#06x}, {bits} bits); use µ-law, A-law or 16-bit PCM"
                )),
            };
        }
        // Chunks are padded to an even size.
        pos = body_end.saturating_add(size & 1);
    }
    Err("no data chunk".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let mut v = b"RIFF".to_vec();
        v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        v.extend_from_slice(b"WAVE");
        // An unrelated chunk with an odd size, to exercise padding.
        v.extend_from_slice(b"LIST");
        v.extend_from_slice(&3u32.to_le_bytes());
        v.extend_from_slice(&[1, 2, 3, 0]);
        v.extend_from_slice(b"fmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * u32::from(bits) / 8).to_le_bytes());
        v.extend_from_slice(&(bits / 8).to_le_bytes());
        v.extend_from_slice(&bits.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn parses_mulaw_alaw_and_pcm_wav() {
        let ul = parse_wav(&wav(7, 1, 8000, 8, &[1, 2, 3])).expect("µ-law wav");
        assert_eq!(
            ul,
            Clip::G711 {
                law: Law::Mu,
                bytes: vec![1, 2, 3]
            }
        );
        let al = parse_wav(&wav(6, 1, 8000, 8, &[9])).expect("A-law wav");
        assert_eq!(
            al,
            Clip::G711 {
                law: Law::A,
                bytes: vec![9]
            }
        );
        let pcm = parse_wav(&wav(1, 1, 8000, 16, &[0x10, 0x00, 0xFF, 0xFF])).expect("pcm wav");
        assert_eq!(pcm, Clip::Linear8k(vec![16, -1]));
    }

    #[test]
    fn rejects_bad_wav() {
        assert!(parse_wav(b"nope").is_err());
        let stereo = parse_wav(&wav(1, 2, 8000, 16, &[0; 4])).expect_err("stereo");
        assert!(stereo.contains("channels"), "{stereo}");
        let rate = parse_wav(&wav(1, 1, 16000, 16, &[0; 4])).expect_err("16 kHz");
        assert!(rate.contains("16000"), "{rate}");
        let float = parse_wav(&wav(3, 1, 8000, 32, &[0; 4])).expect_err("float");
        assert!(float.contains("unsupported"), "{float}");
        let mut truncated = wav(7, 1, 8000, 8, &[]);
        truncated.truncate(30);
        assert!(parse_wav(&truncated).is_err());
    }

    #[test]
    fn same_law_clip_is_verbatim_and_formats_convert() {
        let clip = Clip::G711 {
            law: Law::Mu,
            bytes: vec![0x00, 0x7E, 0xFF],
        };
        assert_eq!(clip.render(AudioFormat::Pcmu), vec![0x00, 0x7E, 0xFF]);
        assert_eq!(clip.render(AudioFormat::Pcma).len(), 3);
        assert_eq!(clip.render(AudioFormat::Pcm16).len(), 3 * 6);
        assert_eq!(AudioFormat::Pcm16.bytes_per_ms(), 48);
        assert_eq!(AudioFormat::Pcmu.ms_of(1234), 154);
        let back =
            AudioFormat::Pcmu.transcode_from(AudioFormat::Pcm16, &clip.render(AudioFormat::Pcm16));
        assert_eq!(back.len(), 3);
    }
}
