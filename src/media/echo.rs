//! The echo gate: keeps our own voice, returned by the caller's line, away from the model.
//!
//! Phone lines return an attenuated, delayed copy of what we play (hybrid echo, acoustic echo of
//! a speakerphone); most PSTN paths do not cancel it. A model's server VAD that hears it stops
//! the agent mid-sentence or answers its own words. [`EchoGate`] works like the non-linear
//! processor (NLP) of a line echo suppressor (ITU-T G.168 §3): it does not subtract anything, it
//! decides per 20 ms caller frame whether the frame's energy is explained by the echo of what we
//! just played, and if so replaces the frame with G.711 silence of the call's law.
//!
//! ```text
//!   our RTP (pacer) ──on_sent(now, payload)──► reference: RMS per 20 ms slot, last 640 ms
//!   caller frame ──process(arrival, &mut [u8; 160])──► Passed | Voice | Gated (→ silence)
//! ```
//!
//! **Echo path.** Learned per call from the frames that arrive while the agent speaks and the
//! caller is quiet (a frame at most as loud as our loudest recent frame, outside a double-talk
//! hold): for each lag of 0–400 ms in 20 ms steps, the Pearson correlation of the caller's frame
//! RMS with our frame RMS that long before the frame's arrival (exponential averages over about
//! 1 s of such frames). The lag with the best correlation (≥ [`ECHO_CORRELATION`]) is the echo
//! delay (network round trip plus the line's own delay); the echo's gain is the least-squares
//! ratio of caller RMS to our RMS at that lag (the echo return loss, ERL, is its inverse, in dB).
//! When the caller's frames stay below [`NO_ECHO_RMS`] while we speak, or never correlate, the
//! line has no echo and every frame passes.
//!
//! **Gate.** While the agent speaks (one of our frames in the last 440 ms is above
//! [`ACTIVE_RMS`]), a caller frame is gated when its RMS is at most [`MARGIN`] (6 dB) above the
//! echo estimate: gain × the loudest of our frames within one slot of the learned delay. Before
//! the path is learned (the first ~0.5 s of agent speech) the estimate assumes G.168's minimum
//! ERL of 6 dB at any lag up to 400 ms, but only on a line whose caller was quiet for 640 ms when
//! the agent started and has not been louder than the agent since (so a caller already talking is never
//! gated on a guess: the echo of the first words then passes until the path is learned). A frame more than 12 dB above the estimate is the caller
//! talking (double talk): it passes, and so do the next [`DOUBLE_TALK_HOLD_FRAMES`] frames, so a
//! real interruption reaches the model whole and at once.
//!
//! **Guarantees.** Outside agent speech, on a line learned to have no echo, while learning on a
//! line whose caller already spoke (or started sending during agent speech), for frames below
//! [`GATE_FLOOR_RMS`] (inaudible to any VAD) and when the gate is disabled, the caller's bytes are
//! not touched. A disabled gate still learns and classifies, so the call's counters show what it
//! would have done. No allocation after [`EchoGate::new`]; O(16) work per frame.
//!
//! Levels are RMS of the decoded 16-bit linear samples (full scale 32 768): −50 dBFS ≈ 104.

use std::time::{Duration, Instant};

use super::g711::{Law, FRAME_BYTES, FRAME_MS};

/// Longest echo delay learned: 400 ms (a 300 ms line delay plus the round trip), in 20 ms slots.
pub const MAX_LAG_SLOTS: usize = 20;
/// Candidate lags: 0, 20, …, 400 ms.
const LAGS: usize = MAX_LAG_SLOTS + 1;
/// Slots of reference kept (640 ms > the longest lag plus the window around it).
const RING: usize = 32;
/// Duration of one reference slot.
const SLOT: Duration = Duration::from_millis(FRAME_MS);
/// Our frame counts as agent speech from this RMS on (−50 dBFS).
pub const ACTIVE_RMS: f64 = 103.6;
/// A caller frame below this RMS (−55 dBFS) is never gated (no VAD hears it).
pub const GATE_FLOOR_RMS: f64 = 58.3;
/// Caller frames whose mean RMS stays below this (−55 dBFS) while we speak: no echo on the line.
pub const NO_ECHO_RMS: f64 = 58.3;
/// A caller frame from this RMS on (−45 dBFS) that is not echo counts as the caller's voice.
pub const VOICE_RMS: f64 = 184.3;
/// A frame up to this factor above the echo estimate is gated (6 dB).
pub const MARGIN: f64 = 2.0;
/// A frame this factor above the echo estimate is double talk (12 dB).
pub const DOUBLE_TALK: f64 = 4.0;
/// Frames passed after a double-talk frame (60 ms).
pub const DOUBLE_TALK_HOLD_FRAMES: u8 = 3;
/// Echo gain assumed before the path is learned: 6 dB ERL (G.168's minimum), margin included.
pub const DEFAULT_GAIN: f64 = 0.25;
/// Correlation of frame energies that identifies the echo lag.
pub const ECHO_CORRELATION: f64 = 0.8;
/// Learning frames in a row that must agree on the echo lag before it is taken (200 ms).
pub const STABLE_FRAMES: u32 = 10;
/// Frames of learning before the path is decided (0.5 s of agent speech).
pub const MIN_LEARN_FRAMES: u32 = 25;
/// Averaging length of the path statistics, in learning frames (about 1 s).
const AVERAGE_FRAMES: f64 = 48.0;
/// Frames remembered for [`EchoGate::speech_explained_by_echo`] (640 ms).
const HISTORY_FRAMES: u32 = 32;
/// Caller-voice frames in the history that make a `speech_started` a real barge-in (40 ms).
const VOICE_FRAMES_FOR_BARGE_IN: u32 = 2;

/// What the gate learned about the line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EchoPath {
    /// Not enough agent speech yet: the default estimate applies.
    Learning,
    /// Echo found.
    Echo {
        /// Arrival of the caller frame minus the send time of ours that it echoes, in ms
        /// (a multiple of 20).
        delay_ms: u64,
        /// Echo return loss: how much quieter the echo is than what we sent, in dB.
        erl_db: f64,
    },
    /// The caller's line returns nothing of what we play.
    NoEcho,
}

/// What the gate did with one caller frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The agent is silent, the line has no echo, or the frame is inaudible: passed untouched.
    Passed,
    /// The agent is speaking and the frame is louder than its echo: the caller's voice, passed
    /// untouched.
    Voice,
    /// The frame is explained by the echo of our audio: replaced with silence (or, with the gate
    /// disabled, it would have been).
    Gated,
}

/// Counters of one call's gate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EchoStats {
    /// Caller frames replaced with silence (with the gate disabled: that would have been).
    pub gated_frames: u64,
    /// Caller frames that passed as the caller's voice while the agent spoke (double talk).
    pub voice_frames: u64,
}

/// Running averages of one candidate lag.
#[derive(Debug, Clone, Copy, Default)]
struct LagStats {
    r: f64,
    rr: f64,
    xr: f64,
}

/// The echo gate of one call. See the module docs.
#[derive(Debug, Clone)]
pub struct EchoGate {
    silence: u8,
    enabled: bool,
    /// Squared linear value of each G.711 byte.
    square: [u32; 256],
    /// Slot 0 of the reference clock (the first frame we sent or received).
    epoch: Option<Instant>,
    /// Our RMS per slot, and which absolute slot each entry holds.
    ref_rms: [f64; RING],
    ref_slot: [u64; RING],
    lags: [LagStats; LAGS],
    /// Running averages of the caller's RMS (and square) over the learning frames.
    x: f64,
    xx: f64,
    learned: u32,
    /// The best lag of the last learning frames and how many frames in a row it was best.
    candidate: (usize, u32),
    path: EchoPath,
    /// Learned echo: lag in slots and linear gain.
    lag: usize,
    gain: f64,
    hold: u8,
    /// While learning, gate with the default estimate: the caller was quiet for 640 ms when the
    /// agent started and has not spoken louder than the agent since.
    default_gate: bool,
    /// One bit per caller frame, newest in bit 0: the caller's voice.
    voice_history: u32,
    stats: EchoStats,
}

impl EchoGate {
    /// A gate for a call in `law`; `enabled: false` only observes (frames are never changed).
    pub fn new(law: Law, enabled: bool) -> EchoGate {
        let mut square = [0u32; 256];
        for (b, s) in square.iter_mut().enumerate() {
            let v = i64::from(law.decode(b as u8));
            *s = (v * v) as u32;
        }
        EchoGate {
            silence: law.silence_byte(),
            enabled,
            square,
            epoch: None,
            ref_rms: [0.0; RING],
            ref_slot: [u64::MAX; RING],
            lags: [LagStats::default(); LAGS],
            x: 0.0,
            xx: 0.0,
            learned: 0,
            candidate: (0, 0),
            path: EchoPath::Learning,
            lag: 0,
            gain: DEFAULT_GAIN,
            hold: 0,
            default_gate: false,
            voice_history: 0,
            stats: EchoStats::default(),
        }
    }

    /// Whether the gate replaces echo with silence (otherwise it only observes).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The call switched law (re-offer): silence byte and decoding change; what was learned
    /// about the line stays.
    pub fn set_law(&mut self, law: Law) {
        let enabled = self.enabled;
        let keep = self.clone();
        *self = EchoGate::new(law, enabled);
        self.epoch = keep.epoch;
        self.lags = keep.lags;
        self.x = keep.x;
        self.xx = keep.xx;
        self.learned = keep.learned;
        self.path = keep.path;
        self.lag = keep.lag;
        self.gain = keep.gain;
        self.stats = keep.stats;
    }

    /// What has been learned about the line.
    pub fn path(&self) -> EchoPath {
        self.path
    }

    /// Counters so far.
    pub fn stats(&self) -> EchoStats {
        self.stats
    }

    /// RMS of a G.711 payload (linear, full scale 32 768).
    fn rms(&self, audio: &[u8]) -> f64 {
        if audio.is_empty() {
            return 0.0;
        }
        let sum: u64 = audio
            .iter()
            .map(|&b| u64::from(self.square[b as usize]))
            .sum();
        (sum as f64 / audio.len() as f64).sqrt()
    }

    fn slot(&mut self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        (now.saturating_duration_since(epoch).as_nanos() / SLOT.as_nanos()) as u64
    }

    /// Our RMS in absolute slot `s` (0 when nothing was sent then or it is too old).
    fn reference(&self, s: u64) -> f64 {
        let i = (s % RING as u64) as usize;
        if self.ref_slot[i] == s {
            self.ref_rms[i]
        } else {
            0.0
        }
    }

    /// We sent `payload` (one packet's G.711, silence included) to the caller at `now`.
    pub fn on_sent(&mut self, now: Instant, payload: &[u8]) {
        let rms = self.rms(payload);
        let s = self.slot(now);
        let i = (s % RING as u64) as usize;
        if self.ref_slot[i] == s {
            self.ref_rms[i] = self.ref_rms[i].max(rms);
        } else {
            self.ref_slot[i] = s;
            self.ref_rms[i] = rms;
        }
    }

    /// Whether the agent's audio (or its echo) may be on the line at `now`: one of our frames of
    /// the last 440 ms was above [`ACTIVE_RMS`].
    pub fn agent_active(&mut self, now: Instant) -> bool {
        let s = self.slot(now);
        (0..=LAGS as u64).any(|k| s >= k && self.reference(s - k) >= ACTIVE_RMS)
    }

    /// One caller frame (`audio`, 20 ms in the call's law) whose packet arrived at `now`: learns
    /// from it, and replaces it with silence when it is echo and the gate is enabled.
    pub fn process(&mut self, now: Instant, audio: &mut [u8; FRAME_BYTES]) -> Verdict {
        let x = self.rms(audio);
        let s = self.slot(now);
        let mut r = [0.0f64; LAGS + 1];
        for (k, v) in r.iter_mut().enumerate() {
            *v = s.checked_sub(k as u64).map_or(0.0, |t| self.reference(t));
        }
        let refmax = r.iter().copied().fold(0.0, f64::max);
        let verdict = if refmax < ACTIVE_RMS {
            self.hold = 0;
            // Quiet now and for the last 640 ms.
            self.default_gate = x < VOICE_RMS && self.voice_history == 0;
            if x >= VOICE_RMS {
                Verdict::Voice
            } else {
                Verdict::Passed
            }
        } else {
            self.judge(x, &r, refmax)
        };
        self.voice_history = (self.voice_history << 1) | u32::from(verdict == Verdict::Voice);
        match verdict {
            Verdict::Gated => {
                self.stats.gated_frames += 1;
                if self.enabled {
                    audio.fill(self.silence);
                }
                Verdict::Gated
            }
            Verdict::Voice if refmax >= ACTIVE_RMS => {
                self.stats.voice_frames += 1;
                Verdict::Voice
            }
            v => v,
        }
    }

    /// A frame arriving while the agent speaks: learn, then compare with the echo estimate.
    fn judge(&mut self, x: f64, r: &[f64; LAGS + 1], refmax: f64) -> Verdict {
        if x <= refmax {
            self.learn(x, r);
        }
        if x > refmax {
            // Louder than anything we played: the caller, not echo.
            self.default_gate = false;
        }
        let estimate = match self.path {
            EchoPath::NoEcho => 0.0,
            EchoPath::Learning if !self.default_gate => 0.0,
            EchoPath::Learning => DEFAULT_GAIN * refmax,
            EchoPath::Echo { .. } => {
                let lo = self.lag.saturating_sub(1);
                let hi = (self.lag + 1).min(LAGS);
                self.gain * r[lo..=hi].iter().copied().fold(0.0, f64::max)
            }
        };
        if estimate > 0.0 && x > estimate * DOUBLE_TALK && x >= VOICE_RMS {
            self.hold = DOUBLE_TALK_HOLD_FRAMES;
            return Verdict::Voice;
        }
        if self.hold > 0 {
            self.hold -= 1;
            return if x >= VOICE_RMS {
                Verdict::Voice
            } else {
                Verdict::Passed
            };
        }
        if estimate == 0.0 || x < GATE_FLOOR_RMS {
            return if x >= VOICE_RMS {
                Verdict::Voice
            } else {
                Verdict::Passed
            };
        }
        if x <= estimate * MARGIN {
            Verdict::Gated
        } else if x >= VOICE_RMS {
            Verdict::Voice
        } else {
            Verdict::Passed
        }
    }

    /// Updates the path statistics with one frame heard while only the agent spoke.
    fn learn(&mut self, x: f64, r: &[f64; LAGS + 1]) {
        self.learned = self.learned.saturating_add(1);
        let a = 1.0 / f64::from(self.learned).min(AVERAGE_FRAMES);
        let avg = |m: &mut f64, v: f64| *m += a * (v - *m);
        avg(&mut self.x, x);
        avg(&mut self.xx, x * x);
        for (l, &rk) in self.lags.iter_mut().zip(r.iter()) {
            avg(&mut l.r, rk);
            avg(&mut l.rr, rk * rk);
            avg(&mut l.xr, x * rk);
        }
        if self.learned < MIN_LEARN_FRAMES {
            return;
        }
        if self.xx.sqrt() < NO_ECHO_RMS {
            self.path = EchoPath::NoEcho;
            return;
        }
        let var_x = (self.xx - self.x * self.x).max(0.0);
        let mut best = (0usize, -1.0f64);
        for (k, l) in self.lags.iter().enumerate() {
            let var_r = (l.rr - l.r * l.r).max(0.0);
            let den = (var_x * var_r).sqrt();
            if den <= f64::EPSILON {
                continue;
            }
            let rho = (l.xr - self.x * l.r) / den;
            if rho > best.1 {
                best = (k, rho);
            }
        }
        let (k, rho) = best;
        if rho < ECHO_CORRELATION {
            self.candidate = (k, 0);
            if rho < 0.2 && self.learned >= 2 * MIN_LEARN_FRAMES {
                self.path = EchoPath::NoEcho;
            }
            return;
        }
        self.candidate = if self.candidate.0 == k {
            (k, self.candidate.1.saturating_add(1))
        } else {
            (k, 1)
        };
        let current = matches!(self.path, EchoPath::Echo { .. }) && self.lag == k;
        if current || self.candidate.1 >= STABLE_FRAMES {
            let l = self.lags[k];
            let gain = if l.rr > 0.0 {
                (l.xr / l.rr).clamp(1e-4, 1.0)
            } else {
                DEFAULT_GAIN
            };
            self.lag = k;
            self.gain = gain;
            self.path = EchoPath::Echo {
                delay_ms: k as u64 * FRAME_MS,
                erl_db: -20.0 * gain.log10(),
            };
        }
    }

    /// Whether a `speech_started` the model reports now is explained by echo: fewer than two
    /// frames of the last 640 ms were the caller's voice (everything loud was echo).
    pub fn speech_explained_by_echo(&self) -> bool {
        let mask = if HISTORY_FRAMES >= 32 {
            u32::MAX
        } else {
            (1u32 << HISTORY_FRAMES) - 1
        };
        (self.voice_history & mask).count_ones() < VOICE_FRAMES_FOR_BARGE_IN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::g711::{linear_to_ulaw, ulaw_to_linear};

    const MU_SILENCE: u8 = 0xFF;

    /// Speech-like agent audio after 200 ms of silence (the caller waits quietly): voiced bursts
    /// of 60–400 ms with gaps, varying loudness (around −20 dBFS), deterministic from `seed`.
    /// One entry per 20 ms frame, linear samples.
    fn agent_speech(seed: u64, frames: usize) -> Vec<[i16; FRAME_BYTES]> {
        let mut rng = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut next = || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (rng >> 33) as u32
        };
        let mut out = vec![[0i16; FRAME_BYTES]; 10];
        let mut phase = 0.0f64;
        while out.len() < frames {
            let burst = 3 + (next() % 18) as usize;
            let amp = 2_000.0 + f64::from(next() % 6_000);
            let f = 110.0 + f64::from(next() % 120);
            for i in 0..burst {
                let env = if i == 0 || i + 1 == burst { 0.5 } else { 1.0 };
                let mut frame = [0i16; FRAME_BYTES];
                for s in frame.iter_mut() {
                    phase += 2.0 * std::f64::consts::PI * f / 8_000.0;
                    *s = (amp * env * (phase.sin() + 0.4 * (2.0 * phase).sin())) as i16;
                }
                out.push(frame);
            }
            for _ in 0..(1 + next() % 6) {
                out.push([0; FRAME_BYTES]);
            }
        }
        out.truncate(frames);
        out
    }

    fn encode(frame: &[i16; FRAME_BYTES], gain: f64) -> [u8; FRAME_BYTES] {
        let mut out = [0u8; FRAME_BYTES];
        for (o, &s) in out.iter_mut().zip(frame) {
            *o = linear_to_ulaw((f64::from(s) * gain) as i16);
        }
        out
    }

    /// Runs a call: we send `agent` (one frame per 20 ms from t0, with send jitter) and the caller
    /// returns it `delay_ms` later attenuated by `erl_db` (None: no echo), plus `caller` frames
    /// (linear, added) where given. Returns the verdicts and what reached the model.
    struct Run {
        verdicts: Vec<Verdict>,
        out: Vec<[u8; FRAME_BYTES]>,
        sent_in: Vec<[u8; FRAME_BYTES]>,
    }

    fn run(
        gate: &mut EchoGate,
        agent: &[[i16; FRAME_BYTES]],
        erl_db: Option<f64>,
        delay_ms: u64,
        caller: &dyn Fn(usize) -> Option<[i16; FRAME_BYTES]>,
    ) -> Run {
        let t0 = Instant::now();
        let g = erl_db.map_or(0.0, |db| 10f64.powf(-db / 20.0));
        let delay_frames = (delay_ms / 20) as usize;
        let extra_us = (delay_ms % 20) * 1_000;
        let total = agent.len() + delay_frames + 20;
        let mut r = Run {
            verdicts: Vec::new(),
            out: Vec::new(),
            sent_in: Vec::new(),
        };
        for i in 0..total {
            // Our packet i leaves at 20·i ms (+0–2 ms of pacing jitter).
            let jitter = Duration::from_micros(((i * 7919) % 2_000) as u64);
            let sent = t0 + Duration::from_millis(20 * i as u64) + jitter;
            let ours = agent
                .get(i)
                .map_or([MU_SILENCE; FRAME_BYTES], |f| encode(f, 1.0));
            gate.on_sent(sent, &ours);
            // The caller's frame i holds the echo of our frame i - delay/20 and arrives 20 ms
            // (its length) + delay % 20 (+ 0–3 ms of network jitter) after 20·i ms.
            let mut lin = [0i32; FRAME_BYTES];
            if let Some(src) = i.checked_sub(delay_frames).and_then(|j| agent.get(j)) {
                for (l, &s) in lin.iter_mut().zip(src) {
                    *l += (f64::from(s) * g) as i32;
                }
            }
            if let Some(c) = caller(i) {
                for (l, &s) in lin.iter_mut().zip(&c) {
                    *l += i32::from(s);
                }
            }
            let mut frame = [0u8; FRAME_BYTES];
            for (o, &l) in frame.iter_mut().zip(&lin) {
                *o = linear_to_ulaw(l.clamp(-32_000, 32_000) as i16);
            }
            let arrival = t0
                + Duration::from_millis(20 * i as u64)
                + Duration::from_micros(extra_us + ((i * 104_729) % 3_000) as u64)
                + Duration::from_millis(20);
            r.sent_in.push(frame);
            let v = gate.process(arrival, &mut frame);
            r.verdicts.push(v);
            r.out.push(frame);
        }
        r
    }

    /// RMS in dBFS of a µ-law frame.
    fn dbfs(frame: &[u8]) -> f64 {
        let sum: f64 = frame
            .iter()
            .map(|&b| f64::from(ulaw_to_linear(b)).powi(2))
            .sum();
        20.0 * ((sum / frame.len() as f64).sqrt() / 32_768.0)
            .max(1e-9)
            .log10()
    }

    #[test]
    fn echo_at_12_to_20_db_and_60_to_250_ms_is_gated_after_learning() {
        for (erl, delay) in [
            (12.0, 60),
            (12.0, 250),
            (16.0, 130),
            (20.0, 60),
            (20.0, 250),
            (14.0, 190),
        ] {
            let mut gate = EchoGate::new(Law::Mu, true);
            let agent = agent_speech(delay + erl as u64, 500);
            let r = run(&mut gate, &agent, Some(erl), delay, &|_| None);
            match gate.path() {
                EchoPath::Echo { delay_ms, erl_db } => {
                    // Arrival = send + delay + 20 ms of packetisation (the frame's own length).
                    let expect = delay + 20;
                    assert!(
                        delay_ms.abs_diff(expect) <= 20,
                        "{erl} dB {delay} ms: learned {delay_ms} ms"
                    );
                    assert!(
                        (erl_db - erl).abs() < 4.0,
                        "{erl} dB {delay} ms: learned {erl_db:.1} dB"
                    );
                }
                p => panic!("{erl} dB {delay} ms: learned {p:?}"),
            }
            // What the model hears: after the first 0.5 s, nothing a VAD at -35 dBFS (the
            // simulator's default) or even -45 dBFS would take for speech.
            let loud: Vec<usize> = (25..r.out.len())
                .filter(|&i| dbfs(&r.out[i]) > -45.0)
                .collect();
            assert!(
                loud.is_empty(),
                "{erl} dB {delay} ms: frames {loud:?} passed"
            );
            // Even while learning, the default estimate (6 dB ERL) holds 12 dB of echo back.
            let early: Vec<usize> = (0..25).filter(|&i| dbfs(&r.out[i]) > -35.0).collect();
            assert!(
                early.is_empty(),
                "{erl} dB {delay} ms: early frames {early:?} passed"
            );
            assert!(gate.stats().gated_frames > 100);
            assert!(gate.speech_explained_by_echo());
        }
    }

    #[test]
    fn double_talk_passes_unchanged_and_is_a_barge_in() {
        let mut gate = EchoGate::new(Law::Mu, true);
        let agent = agent_speech(3, 400);
        // The caller speaks at a normal level (about -20 dBFS, like us) over frames 200–260.
        let caller_voice = agent_speech(99, 400);
        let talk = |i: usize| {
            (200..260)
                .contains(&i)
                .then(|| caller_voice[i])
                .filter(|f| f.iter().any(|&s| s != 0))
        };
        let r = run(&mut gate, &agent, Some(15.0), 120, &talk);
        let spoken: Vec<usize> = (200..260).filter(|&i| talk(i).is_some()).collect();
        assert!(spoken.len() > 30);
        let passed = spoken
            .iter()
            .filter(|&&i| r.out[i] == r.sent_in[i] && r.verdicts[i] != Verdict::Gated)
            .count();
        assert!(
            passed * 10 >= spoken.len() * 9,
            "only {passed} of {} caller frames passed unchanged",
            spoken.len()
        );
        // The first voiced frame of the interruption passes at once.
        assert_eq!(r.verdicts[spoken[0]], Verdict::Voice);
        assert_eq!(r.out[spoken[0]], r.sent_in[spoken[0]]);
        // What the model hears during double talk is a barge-in, not echo.
        let mut gate = EchoGate::new(Law::Mu, true);
        let r = run(&mut gate, &agent[..230], Some(15.0), 120, &talk);
        assert!(r.verdicts.contains(&Verdict::Voice));
        let mut g2 = EchoGate::new(Law::Mu, true);
        let _ = run(&mut g2, &agent[..230], Some(15.0), 120, &|_| None);
        assert!(g2.speech_explained_by_echo());
        assert!(gate.stats().voice_frames > 10);
    }

    #[test]
    fn a_line_without_echo_passes_every_frame_byte_exact() {
        let agent = agent_speech(5, 400);
        let caller_voice = agent_speech(77, 400);
        // Quiet line noise (µ-law bytes near zero, both signs) and, later, the caller talking
        // quietly (-30 dBFS) over the agent.
        let noise = |i: usize| {
            let mut f = [0i16; FRAME_BYTES];
            for (k, s) in f.iter_mut().enumerate() {
                *s = if (i + k).is_multiple_of(3) { 8 } else { -8 };
            }
            if (250..320).contains(&i) {
                for (s, v) in f.iter_mut().zip(&caller_voice[i]) {
                    *s += v / 10;
                }
            }
            Some(f)
        };
        let mut gate = EchoGate::new(Law::Mu, true);
        let r = run(&mut gate, &agent, None, 100, &noise);
        assert_eq!(gate.path(), EchoPath::NoEcho);
        let changed: Vec<(usize, Verdict)> = (0..r.out.len())
            .filter(|&i| r.out[i] != r.sent_in[i])
            .map(|i| (i, r.verdicts[i]))
            .collect();
        assert!(changed.is_empty(), "changed: {changed:?}");
        assert_eq!(gate.stats().gated_frames, 0);
    }

    #[test]
    fn a_caller_already_talking_when_the_agent_starts_is_never_gated_on_a_guess() {
        // No echo; the caller talks (around -20 dBFS, with quiet onsets and decays) from before
        // the agent's first word until well into its speech.
        let agent = agent_speech(11, 300);
        let caller_voice = agent_speech(12, 300);
        let talk = |i: usize| (i < 150).then(|| caller_voice[(i + 10) % 300]);
        let mut gate = EchoGate::new(Law::Mu, true);
        let r = run(&mut gate, &agent, None, 0, &talk);
        let changed: Vec<usize> = (0..r.out.len())
            .filter(|&i| r.out[i] != r.sent_in[i])
            .collect();
        assert!(changed.is_empty(), "changed: {changed:?}");
    }

    #[test]
    fn outside_agent_speech_frames_pass_byte_exact() {
        let mut gate = EchoGate::new(Law::A, true);
        let t0 = Instant::now();
        // We send only A-law silence; the caller speaks loudly and quietly.
        for i in 0..200u64 {
            let now = t0 + Duration::from_millis(20 * i);
            gate.on_sent(now, &[0xD5; FRAME_BYTES]);
            let mut frame = [0u8; FRAME_BYTES];
            for (k, b) in frame.iter_mut().enumerate() {
                *b = (i as usize * 31 + k * 7) as u8;
            }
            let before = frame;
            let v = gate.process(now + Duration::from_millis(5), &mut frame);
            assert_ne!(v, Verdict::Gated);
            assert_eq!(frame, before);
        }
        assert_eq!(gate.stats().gated_frames, 0);
        assert!(!gate.agent_active(t0 + Duration::from_secs(4)));
    }

    #[test]
    fn a_disabled_gate_observes_but_never_changes_a_frame() {
        let mut gate = EchoGate::new(Law::Mu, false);
        let agent = agent_speech(8, 300);
        let r = run(&mut gate, &agent, Some(12.0), 200, &|_| None);
        assert_eq!(r.out, r.sent_in);
        assert!(gate.stats().gated_frames > 100, "{:?}", gate.stats());
        assert!(matches!(gate.path(), EchoPath::Echo { .. }));
        assert!(gate.speech_explained_by_echo());
    }

    #[test]
    fn gated_frames_become_the_silence_of_the_calls_law() {
        for (law, silence) in [(Law::Mu, 0xFFu8), (Law::A, 0xD5u8)] {
            let mut gate = EchoGate::new(law, true);
            let t0 = Instant::now();
            let enc = |v: i16| match law {
                Law::Mu => linear_to_ulaw(v),
                Law::A => crate::media::g711::linear_to_alaw(v),
            };
            // A square wave of changing loudness; the caller returns it 12 dB quieter, 40 ms
            // later.
            let wave = |amp: i16| -> [u8; FRAME_BYTES] {
                std::array::from_fn(|k| enc(if k % 40 < 20 { amp } else { -amp }))
            };
            let mut gated = 0;
            // The caller is quiet before we speak.
            for i in 0..5u64 {
                let now = t0 + Duration::from_millis(20 * i);
                gate.on_sent(now, &[law.silence_byte(); FRAME_BYTES]);
                let mut frame = [law.silence_byte(); FRAME_BYTES];
                gate.process(now + Duration::from_millis(5), &mut frame);
            }
            for i in 5..100u64 {
                let now = t0 + Duration::from_millis(20 * i);
                let amp = 2_000 + (i as i16 * 37 % 7) * 800;
                gate.on_sent(now, &wave(amp));
                let mut frame = wave(amp / 4);
                if gate.process(now + Duration::from_millis(40), &mut frame) == Verdict::Gated {
                    assert_eq!(frame, [silence; FRAME_BYTES]);
                    gated += 1;
                }
            }
            assert!(gated > 80, "{law:?}: {gated}");
        }
    }
}
