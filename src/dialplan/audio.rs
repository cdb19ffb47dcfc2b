//! Message audio for `message.audio`: WAV (8 kHz mono: 16-bit PCM, µ-law or A-law) or raw G.711
//! (`.ulaw`/`.pcmu`, `.alaw`/`.pcma`), checked and loaded when the dialplan compiles, so that a
//! bad file is a dialplan error and not a silent call. Pure: decodes bytes it is given.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::ValueError;

/// G.711's sample rate: message audio must already be at this rate.
const SAMPLE_RATE_HZ: u32 = 8_000;
/// Longest message accepted (a closure notice, not music on hold).
const MAX_AUDIO: Duration = Duration::from_secs(10 * 60);
/// How to convert audio for the hints.
const CONVERT: &str = "convert it with: sox INPUT -r 8000 -c 1 -e u-law OUTPUT.wav";

/// The samples of a message, 8 kHz mono.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioSamples {
    /// G.711 µ-law bytes (PCMU payload as is).
    Mulaw(Arc<[u8]>),
    /// G.711 A-law bytes (PCMA payload as is).
    Alaw(Arc<[u8]>),
    /// 16-bit linear PCM; encode to the call's law before sending.
    Linear16(Arc<[i16]>),
}

impl AudioSamples {
    /// Number of samples (= 125 µs each).
    pub fn len(&self) -> usize {
        match self {
            AudioSamples::Mulaw(b) | AudioSamples::Alaw(b) => b.len(),
            AudioSamples::Linear16(s) => s.len(),
        }
    }

    /// True when there are no samples (never, for a compiled message).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A message's audio, loaded and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageAudio {
    /// The file it was read from.
    pub path: PathBuf,
    /// The samples, 8 kHz mono.
    pub samples: AudioSamples,
}

impl MessageAudio {
    /// How long the message plays.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.samples.len() as u64 * 1_000_000 / u64::from(SAMPLE_RATE_HZ))
    }

    /// Decodes `bytes`, the contents of `path`, by its extension.
    pub(crate) fn decode(path: &Path, bytes: &[u8]) -> Result<MessageAudio, ValueError> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let samples = match ext.as_str() {
            "wav" | "wave" => decode_wav(bytes)?,
            "ulaw" | "mulaw" | "pcmu" | "ul" | "mu" => AudioSamples::Mulaw(bytes.into()),
            "alaw" | "pcma" | "al" => AudioSamples::Alaw(bytes.into()),
            _ => {
                return Err(
                    ValueError::new(format!("unsupported audio file type `.{ext}`")).hint(format!(
                        "use a .wav (8 kHz mono) or a raw .ulaw/.alaw file; {CONVERT}"
                    )),
                )
            }
        };
        let audio = MessageAudio {
            path: path.to_owned(),
            samples,
        };
        if audio.samples.is_empty() {
            return Err(ValueError::new("the audio file has no samples"));
        }
        if audio.duration() > MAX_AUDIO {
            return Err(ValueError::new(format!(
                "the audio lasts {} s, longer than the {} s allowed",
                audio.duration().as_secs(),
                MAX_AUDIO.as_secs()
            )));
        }
        Ok(audio)
    }
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

fn decode_wav(bytes: &[u8]) -> Result<AudioSamples, ValueError> {
    let not_wav = || ValueError::new("not a WAV file (no RIFF/WAVE header)").hint(CONVERT);
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(not_wav());
    }
    let mut format: Option<(u16, u16, u32, u16)> = None;
    let mut data: Option<&[u8]> = None;
    let mut i = 12;
    while i + 8 <= bytes.len() {
        let id = &bytes[i..i + 4];
        let size = u32_at(bytes, i + 4).ok_or_else(not_wav)? as usize;
        let body_start = i + 8;
        // Streaming writers leave the size at 0xFFFFFFFF: take what is there.
        let body_end = body_start.saturating_add(size).min(bytes.len());
        let body = &bytes[body_start..body_end];
        match id {
            b"fmt " => {
                let bad = || ValueError::new("malformed WAV fmt chunk").hint(CONVERT);
                let mut tag = u16_at(body, 0).ok_or_else(bad)?;
                let channels = u16_at(body, 2).ok_or_else(bad)?;
                let rate = u32_at(body, 4).ok_or_else(bad)?;
                let bits = u16_at(body, 14).ok_or_else(bad)?;
                if tag == 0xFFFE {
                    // WAVE_FORMAT_EXTENSIBLE: the real format starts the sub-format GUID.
                    tag = u16_at(body, 24).ok_or_else(bad)?;
                }
                format = Some((tag, channels, rate, bits));
            }
            b"data" => data = Some(body),
            _ => {}
        }
        i = body_start.saturating_add(size).saturating_add(size & 1);
    }
    let (tag, channels, rate, bits) =
        format.ok_or_else(|| ValueError::new("the WAV file has no fmt chunk").hint(CONVERT))?;
    let data =
        data.ok_or_else(|| ValueError::new("the WAV file has no data chunk").hint(CONVERT))?;
    if channels != 1 || rate != SAMPLE_RATE_HZ {
        return Err(ValueError::new(format!(
            "the WAV file is {rate} Hz with {channels} channel(s); message audio must be 8000 Hz mono"
        ))
        .hint(CONVERT));
    }
    match (tag, bits) {
        (1, 16) => Ok(AudioSamples::Linear16(
            data.chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect(),
        )),
        (7, 8) => Ok(AudioSamples::Mulaw(data.into())),
        (6, 8) => Ok(AudioSamples::Alaw(data.into())),
        _ => Err(ValueError::new(format!(
            "unsupported WAV encoding (format {tag}, {bits} bits); use 16-bit PCM, µ-law or A-law"
        ))
        .hint(CONVERT)),
    }
}

/// An 8 kHz mono G.711 µ-law WAV file holding `data` (recorded caller messages).
pub fn ulaw_wav(data: &[u8]) -> Vec<u8> {
    wav_bytes(7, 1, SAMPLE_RATE_HZ, 8, data)
}

/// A WAV file's bytes: `rate` Hz, `channels`, with the given format tag and bits per sample.
pub(crate) fn wav_bytes(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&tag.to_le_bytes());
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    let block = channels * bits / 8;
    b.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    b.extend_from_slice(&block.to_le_bytes());
    b.extend_from_slice(&bits.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(data);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_pcm16_mulaw_and_alaw() {
        let pcm = wav_bytes(1, 1, 8000, 16, &[1, 0, 0xff, 0xff]);
        let a = MessageAudio::decode(Path::new("m.wav"), &pcm).expect("pcm");
        assert_eq!(a.samples, AudioSamples::Linear16(vec![1i16, -1].into()));
        let mu = wav_bytes(7, 1, 8000, 8, &[0xff; 8000]);
        let a = MessageAudio::decode(Path::new("m.WAV"), &mu).expect("mu-law");
        assert_eq!(a.duration(), Duration::from_secs(1));
        assert!(matches!(a.samples, AudioSamples::Mulaw(_)));
        let al = wav_bytes(6, 1, 8000, 8, &[0xd5; 80]);
        assert!(matches!(
            MessageAudio::decode(Path::new("m.wav"), &al)
                .expect("a-law")
                .samples,
            AudioSamples::Alaw(_)
        ));
    }

    #[test]
    fn wrong_rates_channels_and_types_are_errors() {
        let e = MessageAudio::decode(Path::new("m.wav"), &wav_bytes(1, 2, 44100, 16, &[0; 8]))
            .expect_err("stereo");
        assert!(e.message.contains("44100 Hz with 2 channel(s)"), "{e:?}");
        assert!(
            MessageAudio::decode(Path::new("m.wav"), &wav_bytes(3, 1, 8000, 32, &[0; 8])).is_err(),
            "float"
        );
        assert!(MessageAudio::decode(Path::new("m.wav"), b"ID3 not a wav").is_err());
        assert!(MessageAudio::decode(Path::new("m.mp3"), b"x").is_err());
        assert!(
            MessageAudio::decode(Path::new("m.ulaw"), b"").is_err(),
            "empty"
        );
        let raw = MessageAudio::decode(Path::new("closed.pcma"), &[0xd5; 160]).expect("raw a-law");
        assert_eq!(raw.duration(), Duration::from_millis(20));
    }

    #[test]
    fn truncated_wavs_do_not_panic() {
        let full = wav_bytes(7, 1, 8000, 8, &[0xff; 100]);
        for n in 0..full.len() {
            let _ = MessageAudio::decode(Path::new("m.wav"), &full[..n]);
        }
    }
}
