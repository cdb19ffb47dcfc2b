//! The simulator's "voice": a deterministic, speech-like signal synthesised from reply text.
//!
//! There is no TTS. Each word becomes a voiced burst: a fundamental between 100 and 220 Hz
//! (derived from a hash of the word, gliding slightly downwards) with three overtones, shaped by
//! a raised-cosine attack/release and a 4.5 Hz syllable-rate amplitude modulation. Words last
//! `ms_per_char` per letter or digit; a space adds a 60 ms gap, `,;:` a 150 ms pause and `.!?`
//! a 300 ms pause. Bursts peak around -9 dBFS (RMS about -20 dBFS per 10 ms frame), well above
//! any sensible VAD threshold, and gaps are digital silence.
//!
//! Invariants: the same text and pace always give the same samples; output is 8 kHz linear PCM,
//! encoded by the caller into the session's output format. Pure functions, no I/O.

use std::f64::consts::PI;

/// Sample rate of the synthesised signal.
const RATE_HZ: f64 = 8_000.0;
/// Gap after an ordinary word.
const WORD_GAP_MS: u32 = 60;
/// Pause after `,`, `;` or `:`.
const COMMA_PAUSE_MS: u32 = 150;
/// Pause after `.`, `!` or `?`.
const SENTENCE_PAUSE_MS: u32 = 300;
/// Attack and release of each burst.
const ATTACK_MS: f64 = 12.0;
const RELEASE_MS: f64 = 30.0;
/// Peak amplitude budget of one burst (sum of harmonic amplitudes times this).
const BURST_SCALE: f64 = 6_500.0;

/// Synthesised speech and where each word starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Utterance {
    /// 8 kHz linear samples.
    pub(crate) samples: Vec<i16>,
    /// `(sample offset, text piece)`: the piece (a word with its leading space) becomes part of
    /// the transcript once audio up to that offset has been sent.
    pub(crate) marks: Vec<(usize, String)>,
}

/// FNV-1a, so the pitch of a word does not depend on std's randomised hasher.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0000_01b3)
    })
}

fn ms_to_samples(ms: f64) -> usize {
    (ms * RATE_HZ / 1000.0).round() as usize
}

/// Appends one voiced burst for `word` lasting `ms` milliseconds.
fn burst(out: &mut Vec<i16>, word: &str, ms: f64) {
    let h = fnv1a(word);
    let f0 = 100.0 + (h % 120) as f64;
    // Per-word "vowel colour": overtone weights vary with the hash.
    let weights = [
        1.0,
        0.4 + ((h >> 8) % 40) as f64 / 100.0,
        0.2 + ((h >> 16) % 30) as f64 / 100.0,
        0.1 + ((h >> 24) % 20) as f64 / 100.0,
    ];
    let n = ms_to_samples(ms).max(1);
    let attack = ms_to_samples(ATTACK_MS).min(n / 2).max(1);
    let release = ms_to_samples(RELEASE_MS).min(n / 2).max(1);
    let mut phase = 0.0f64;
    for i in 0..n {
        let t = i as f64 / RATE_HZ;
        let progress = i as f64 / n as f64;
        let f = f0 * (1.06 - 0.12 * progress);
        phase += 2.0 * PI * f / RATE_HZ;
        let mut env = 1.0;
        if i < attack {
            env *= 0.5 - 0.5 * (PI * i as f64 / attack as f64).cos();
        }
        if i + release > n {
            env *= 0.5 - 0.5 * (PI * (n - i) as f64 / release as f64).cos();
        }
        env *= 0.75 + 0.25 * (2.0 * PI * 4.5 * t).cos();
        let v: f64 = weights
            .iter()
            .enumerate()
            .map(|(k, w)| w * ((k + 1) as f64 * phase).sin())
            .sum();
        out.push((v * env * BURST_SCALE).round().clamp(-32_000.0, 32_000.0) as i16);
    }
}

/// Synthesises `text` at `ms_per_char` milliseconds per letter or digit.
pub(crate) fn synthesize(text: &str, ms_per_char: u32) -> Utterance {
    let mut samples = Vec::new();
    let mut marks = Vec::new();
    for (i, token) in text.split_whitespace().enumerate() {
        let piece = if i == 0 {
            token.to_string()
        } else {
            format!(" {token}")
        };
        marks.push((samples.len(), piece));
        let letters = token.chars().filter(|c| c.is_alphanumeric()).count();
        if letters > 0 {
            burst(&mut samples, token, f64::from(ms_per_char) * letters as f64);
        }
        let pause = match token.chars().last() {
            Some('.' | '!' | '?') => SENTENCE_PAUSE_MS,
            Some(',' | ';' | ':') => COMMA_PAUSE_MS,
            _ => WORD_GAP_MS,
        };
        samples.resize(samples.len() + ms_to_samples(f64::from(pause)), 0);
    }
    Utterance { samples, marks }
}

/// Spreads the words of `text` evenly over `total_samples` (for clips loaded from files).
pub(crate) fn spread_marks(text: &str, total_samples: usize) -> Vec<(usize, String)> {
    let chars = text.chars().count().max(1);
    let mut marks = Vec::new();
    let mut offset_chars = 0usize;
    for (i, token) in text.split_whitespace().enumerate() {
        let piece = if i == 0 {
            token.to_string()
        } else {
            format!(" {token}")
        };
        marks.push((total_samples * offset_chars / chars, piece.clone()));
        offset_chars += piece.chars().count();
    }
    marks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::g711::{self, Law};

    #[test]
    fn deterministic_and_paced() {
        let a = synthesize("We are open Monday to Friday.", 65);
        let b = synthesize("We are open Monday to Friday.", 65);
        assert_eq!(a, b);
        // 23 letters * 65 ms + 5 gaps * 60 ms + 300 ms final pause = 2095 ms.
        assert_eq!(a.samples.len(), 2095 * 8);
        assert_eq!(a.marks.len(), 6);
        assert_eq!(a.marks[0], (0, "We".to_string()));
        assert_eq!(a.marks[1].1, " are");
        let other = synthesize("We are closed Monday to Friday.", 65);
        assert_ne!(a.samples[..8000], other.samples[..8000]);
    }

    #[test]
    fn loud_during_words_and_silent_between() {
        let u = synthesize("hello there", 65);
        let ulaw: Vec<u8> = u.samples.iter().map(|&s| g711::linear_to_ulaw(s)).collect();
        // Middle of "hello" (5 * 65 = 325 ms): well above -35 dBFS (0.018).
        let mid = &ulaw[100 * 8..200 * 8];
        assert!(
            g711::rms(Law::Mu, mid) > 0.08,
            "{}",
            g711::rms(Law::Mu, mid)
        );
        // The 60 ms gap after "hello".
        let gap = &ulaw[330 * 8..380 * 8];
        assert_eq!(g711::rms(Law::Mu, gap), 0.0);
    }

    #[test]
    fn spread_marks_cover_clip() {
        let m = spread_marks("one two three", 1300);
        assert_eq!(m[0], (0, "one".into()));
        assert_eq!(m[1], (300, " two".into()));
        assert_eq!(m[2], (700, " three".into()));
        assert!(spread_marks("", 100).is_empty());
    }
}
