//! Energy-based voice-activity detector emulating the Realtime `server_vad` turn detection.
//!
//! The detector sees one RMS value per 10 ms frame of appended audio (the session decodes the
//! input format and computes the level) and keeps its own frame clock, which is the clock of
//! *all* audio appended in the session: frame `n` covers `[10n, 10n + 10)` ms.
//!
//! * `threshold` (0.0–1.0) maps linearly onto a level in dBFS: `-60 + 50 * threshold`. The
//!   default 0.5 is -35 dBFS (RMS 0.018 of full scale); 0.0 is -60 dBFS (almost anything that
//!   is not digital silence); 1.0 is -10 dBFS (shouting).
//! * Speech starts when [`MIN_SPEECH_MS`] of consecutive frames are at or above that level.
//!   `audio_start_ms` is the start of the first of those frames minus `prefix_padding_ms`,
//!   clamped at 0.
//! * Speech stops after `silence_duration_ms` of consecutive frames below the level.
//!   `audio_end_ms` is the end of that silence window (the moment it is detected), as the real
//!   service reports it — it includes the silence.
//!
//! Pure state machine: no I/O, no clock. Disabled detectors only count frames.
//!
//! ```text
//!   Idle --loud--> Onset --(MIN_SPEECH_MS loud)--> Speaking --(silence_duration_ms quiet)--> Idle
//!     ^              |quiet                            (emits SpeechStarted)   (emits SpeechStopped)
//!     +--------------+
//! ```

/// Duration of one analysis frame.
pub(crate) const FRAME_MS: u64 = 10;
/// Consecutive loud audio needed before speech is declared (filters clicks).
pub(crate) const MIN_SPEECH_MS: u64 = 30;

/// The knobs of `server_vad` the detector honours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct VadParams {
    /// 0.0–1.0, see the module docs for the mapping to a level.
    pub(crate) threshold: f64,
    /// Audio reported before the detected onset.
    pub(crate) prefix_padding_ms: u64,
    /// Silence that ends a turn.
    pub(crate) silence_duration_ms: u64,
}

impl VadParams {
    /// The RMS level (fraction of full scale) a frame needs to count as speech.
    pub(crate) fn level(&self) -> f64 {
        let t = self.threshold.clamp(0.0, 1.0);
        10f64.powf((-60.0 + 50.0 * t) / 20.0)
    }
}

/// What the detector reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VadEvent {
    /// Speech confirmed; `audio_start_ms` includes the prefix padding.
    SpeechStarted { audio_start_ms: u64 },
    /// Silence long enough; `audio_end_ms` includes the silence window.
    SpeechStopped { audio_end_ms: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a loud frame.
    Idle,
    /// Loud frames seen since `onset_frame`, not yet long enough.
    Onset { onset_frame: u64 },
    /// In a turn; `quiet_frames` consecutive quiet frames so far.
    Speaking { quiet_frames: u64 },
}

/// Appended audio cut into the detector's 10 ms frames: bytes that do not fill a frame wait for
/// the next append.
#[derive(Debug, Default, Clone)]
pub(crate) struct Framer {
    carry: Vec<u8>,
}

impl Framer {
    /// Adds `bytes` of `format`; returns the RMS level of each 10 ms frame now complete, in
    /// order (for [`Vad::push_frame`]).
    pub(crate) fn push(&mut self, format: super::audio::AudioFormat, bytes: &[u8]) -> Vec<f64> {
        self.carry.extend_from_slice(bytes);
        let frame = format.frame_10ms_bytes();
        let levels: Vec<f64> = self
            .carry
            .chunks_exact(frame)
            .map(|f| format.rms(f))
            .collect();
        self.carry.drain(..levels.len() * frame);
        levels
    }

    /// Drops a partial frame (the input buffer was cleared).
    pub(crate) fn clear(&mut self) {
        self.carry.clear();
    }
}

/// The detector. See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Vad {
    params: Option<VadParams>,
    /// Frames pushed so far (the session's audio clock, in frames).
    frames: u64,
    state: State,
}

impl Vad {
    /// A detector; `None` disables detection (frames are still counted).
    pub(crate) fn new(params: Option<VadParams>) -> Vad {
        Vad {
            params,
            frames: 0,
            state: State::Idle,
        }
    }

    /// Changes the parameters; `None` disables detection and drops any turn in progress.
    pub(crate) fn set_params(&mut self, params: Option<VadParams>) {
        if params.is_none() {
            self.state = State::Idle;
        }
        self.params = params;
    }

    /// Forgets any speech in progress (buffer cleared or committed); the clock keeps running.
    pub(crate) fn reset(&mut self) {
        self.state = State::Idle;
    }

    /// True between `SpeechStarted` and `SpeechStopped`.
    pub(crate) fn in_speech(&self) -> bool {
        matches!(self.state, State::Speaking { .. })
    }

    /// Milliseconds of audio pushed so far.
    pub(crate) fn clock_ms(&self) -> u64 {
        self.frames * FRAME_MS
    }

    /// Feeds the RMS level of the next 10 ms frame.
    pub(crate) fn push_frame(&mut self, rms: f64) -> Option<VadEvent> {
        let frame = self.frames;
        self.frames += 1;
        let params = self.params?;
        let loud = rms >= params.level();
        match self.state {
            State::Idle if loud => {
                self.state = State::Onset { onset_frame: frame };
                self.confirm_onset(frame, params)
            }
            State::Idle => None,
            State::Onset { .. } if !loud => {
                self.state = State::Idle;
                None
            }
            State::Onset { .. } => self.confirm_onset(frame, params),
            State::Speaking { .. } if loud => {
                self.state = State::Speaking { quiet_frames: 0 };
                None
            }
            State::Speaking { quiet_frames } => {
                let quiet_frames = quiet_frames + 1;
                if quiet_frames * FRAME_MS >= params.silence_duration_ms.max(FRAME_MS) {
                    self.state = State::Idle;
                    Some(VadEvent::SpeechStopped {
                        audio_end_ms: self.clock_ms(),
                    })
                } else {
                    self.state = State::Speaking { quiet_frames };
                    None
                }
            }
        }
    }

    fn confirm_onset(&mut self, frame: u64, params: VadParams) -> Option<VadEvent> {
        let State::Onset { onset_frame } = self.state else {
            return None;
        };
        if (frame + 1 - onset_frame) * FRAME_MS < MIN_SPEECH_MS {
            return None;
        }
        self.state = State::Speaking { quiet_frames: 0 };
        let audio_start_ms = (onset_frame * FRAME_MS).saturating_sub(params.prefix_padding_ms);
        Some(VadEvent::SpeechStarted { audio_start_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOUD: f64 = 0.2;
    const QUIET: f64 = 0.0005;

    fn params(threshold: f64, prefix: u64, silence: u64) -> VadParams {
        VadParams {
            threshold,
            prefix_padding_ms: prefix,
            silence_duration_ms: silence,
        }
    }

    /// Pushes `(level, ms)` segments and returns every event with the clock when it fired.
    fn run(vad: &mut Vad, segments: &[(f64, u64)]) -> Vec<(u64, VadEvent)> {
        let mut out = Vec::new();
        for &(level, ms) in segments {
            for _ in 0..ms / FRAME_MS {
                if let Some(ev) = vad.push_frame(level) {
                    out.push((vad.clock_ms(), ev));
                }
            }
        }
        out
    }

    #[test]
    fn speech_then_silence() {
        let mut vad = Vad::new(Some(params(0.5, 300, 500)));
        let events = run(&mut vad, &[(QUIET, 1000), (LOUD, 1500), (QUIET, 1000)]);
        assert_eq!(
            events,
            vec![
                (
                    1030,
                    VadEvent::SpeechStarted {
                        audio_start_ms: 700
                    }
                ),
                (3000, VadEvent::SpeechStopped { audio_end_ms: 3000 }),
            ]
        );
        assert!(!vad.in_speech());
    }

    #[test]
    fn prefix_padding_is_clamped_at_zero() {
        let mut vad = Vad::new(Some(params(0.5, 300, 200)));
        let events = run(&mut vad, &[(QUIET, 100), (LOUD, 400), (QUIET, 300)]);
        assert_eq!(events[0].1, VadEvent::SpeechStarted { audio_start_ms: 0 });
        assert_eq!(events[1].1, VadEvent::SpeechStopped { audio_end_ms: 700 });
    }

    #[test]
    fn short_pauses_do_not_end_the_turn() {
        let mut vad = Vad::new(Some(params(0.5, 0, 500)));
        let events = run(
            &mut vad,
            &[(LOUD, 300), (QUIET, 400), (LOUD, 300), (QUIET, 600)],
        );
        assert_eq!(
            events,
            vec![
                (30, VadEvent::SpeechStarted { audio_start_ms: 0 }),
                (1500, VadEvent::SpeechStopped { audio_end_ms: 1500 }),
            ]
        );
    }

    #[test]
    fn clicks_are_ignored() {
        let mut vad = Vad::new(Some(params(0.5, 300, 200)));
        let events = run(
            &mut vad,
            &[(LOUD, 20), (QUIET, 100), (LOUD, 10), (QUIET, 100)],
        );
        assert!(events.is_empty());
    }

    #[test]
    fn threshold_maps_to_level() {
        let mid = params(0.5, 0, 200);
        assert!((mid.level() - 0.01778).abs() < 1e-4);
        // -40 dBFS (0.01) is speech at threshold 0.0 or 0.3 but not at 0.5.
        for (threshold, expect) in [(0.0, true), (0.3, true), (0.5, false), (1.0, false)] {
            let mut vad = Vad::new(Some(params(threshold, 0, 200)));
            let events = run(&mut vad, &[(0.01, 100)]);
            assert_eq!(!events.is_empty(), expect, "threshold {threshold}");
        }
    }

    #[test]
    fn disabled_detector_keeps_the_clock() {
        let mut vad = Vad::new(None);
        assert!(run(&mut vad, &[(LOUD, 500), (QUIET, 1000)]).is_empty());
        assert_eq!(vad.clock_ms(), 1500);
        vad.set_params(Some(params(0.5, 300, 200)));
        let events = run(&mut vad, &[(LOUD, 100)]);
        assert_eq!(
            events[0].1,
            VadEvent::SpeechStarted {
                audio_start_ms: 1200
            }
        );
        vad.reset();
        assert!(!vad.in_speech());
    }
}
