//! Deterministic pair tests: the call's core ([`Bridge`]) wired to the simulator's sans-IO
//! [`SimSession`] through the GA [`Codec`] (or its [`LiveSimSession`] through the GPT-Live one),
//! on a virtual clock, with a small network emulator
//! (loss, jitter, reordering, duplication) between a simulated caller and the core. No sockets,
//! no sleeping: the harness steps virtual time to the earliest deadline of the caller, the
//! network, the model link, the simulator, the core and the side effects.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::core::{
    Bridge, CallPlan, CallSetup, Input, MediaParams, ModelPlan, Output, ToolRequest,
};
use super::end::{Cause, EndReason};
use crate::dialplan::AfterMessage;
use crate::media::g711::{self, Law};
use crate::media::pacer::PACKET_BYTES;
use crate::media::rtp;
use crate::realtime::codec::Codec;
use crate::realtime::model::{ModelCommand, ModelEvent};
use crate::realtime::protocol::{Dialect, SessionSettings, TurnDetection};
use crate::realtime::sim::{Core, LiveParams, LiveSimSession, Scenario, SessionParams, SimSession};
use crate::sdp::{Direction, Negotiated};
use crate::sip::CallEvent;

const FRAME: Duration = Duration::from_millis(20);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Impairments of the caller → core RTP path.
#[derive(Debug, Clone, Copy, Default)]
struct Netem {
    /// Probability that a packet is lost.
    loss: f64,
    /// Each packet is delayed by a uniform 0..=jitter (so packets reorder).
    jitter: Duration,
    /// Probability that a packet arrives twice.
    duplicate: f64,
}

/// What the harness answers to the core's side effects.
#[derive(Debug, Clone)]
struct Effects {
    /// How long a tool takes, and its output.
    tool: (Duration, String),
    /// How long the REFER's final response takes, and its result.
    refer: (Duration, Result<u16, String>),
    /// After an accepted REFER: when the NOTIFY comes and its sipfrag status.
    notify: Option<(Duration, u16)>,
    /// The NOTIFY comes that long after the REFER itself, not after its response (it overtakes
    /// a response slower than that).
    notify_overtakes: bool,
}

impl Default for Effects {
    fn default() -> Effects {
        Effects {
            tool: (
                ms(300),
                r#"{"ok":true,"slots":[{"start":"2026-03-02T09:00"}]}"#.into(),
            ),
            refer: (ms(200), Ok(202)),
            notify: Some((ms(1_000), 200)),
            notify_overtakes: false,
        }
    }
}

enum Pending {
    /// A session asked for by `OpenSession` opened (`true`) or failed.
    Opened(bool),
    Tool {
        call_id: String,
        output: String,
    },
    Refer(Result<u16, String>),
    Sip(CallEvent),
}

/// The core and the simulator, stepped together on virtual time.
struct Pair {
    t0: Instant,
    now: Instant,
    bridge: Bridge,
    codec: Codec,
    sim: Core,
    /// The dialect of every session of the call.
    dialect: Dialect,
    /// The current session is usable (not closed by `CloseSession`).
    link_up: bool,
    /// The scenario every session of the call gets.
    scenario: Arc<Scenario>,
    /// A session opened for `SwitchSession`.
    next_sim: Option<Core>,
    /// Sessions the core switched away from (closed by us), in order.
    old_sims: Vec<Core>,
    /// Sessions opened so far (numbers them for `[[fault]] session`).
    sessions_opened: u64,
    /// How long opening a session takes, and how many attempts fail from now on.
    open_delay: Duration,
    open_failures: u32,
    /// Session operations (`open`, `switch`, `close`) and the model commands after each switch,
    /// in order: (time, what).
    session_log: Vec<(Instant, String)>,
    bridge_timer: Instant,
    rng: Rng,
    net: Netem,
    effects: Effects,
    caller_addr: SocketAddr,
    /// When the caller speaks (offsets from t0); silence otherwise.
    speech: Vec<(Duration, Duration)>,
    /// When the caller sends RTP at all (offsets from t0; `None`: always), e.g. a phone with
    /// silence suppression that stops at the end of a talkspurt.
    sends: Option<Vec<(Duration, Duration)>>,
    caller_next: Instant,
    caller_seq: u16,
    caller_ts: u32,
    phase: f64,
    /// Caller RTP in flight: (arrival, packet).
    uplink: Vec<(Instant, Vec<u8>)>,
    /// Client events in flight to the simulator.
    to_sim: VecDeque<(Instant, String)>,
    /// Server events in flight to the core (`None`: the server closed the socket).
    to_core: VecDeque<(Instant, Option<String>)>,
    model_delay: Duration,
    pending: Vec<(Instant, Pending)>,
    // What happened.
    rtp_sent: Vec<Instant>,
    /// The payload of every RTP packet the core sent, in order.
    rtp_payloads: Vec<u8>,
    /// Every audio delta the core received, in order.
    model_audio: Vec<u8>,
    /// Every server event but the deltas, as the simulator sent it: (arrival at the core, event).
    server_events: Vec<(Instant, serde_json::Value)>,
    appends: Vec<Instant>,
    commands: Vec<(Instant, ModelCommand)>,
    tools: Vec<(Instant, ToolRequest)>,
    refers: Vec<(Instant, String)>,
    ended: Option<(Instant, EndReason)>,
}

/// Session `number` of the call's simulator, created at `now`.
fn new_sim(scenario: &Arc<Scenario>, dialect: Dialect, number: u64, now: Instant) -> Core {
    if dialect == Dialect::Live {
        Core::Live(Box::new(LiveSimSession::new(
            LiveParams {
                unix_time_s: 1_800_000_000,
                id_token: format!("pair{number}"),
                scenario: Arc::clone(scenario),
                clock_skew_ppm: 0,
                session_number: number,
            },
            now,
        )))
    } else {
        Core::Realtime(Box::new(SimSession::new(
            SessionParams {
                dialect,
                model: Some("gpt-realtime".into()),
                unix_time_s: 1_800_000_000,
                id_token: format!("pair{number}"),
                scenario: Arc::clone(scenario),
                echo: false,
                session_number: number,
            },
            now,
        )))
    }
}

fn scenario(text: &str) -> Arc<Scenario> {
    Arc::new(Scenario::parse(text, Path::new("pair.toml")).expect("scenario"))
}

fn settings() -> SessionSettings {
    let mut tools = crate::tools::definitions(&["check_availability".to_owned()]);
    tools.extend(crate::tools::call_control::definitions(
        &["transfer_call".to_owned(), "end_call".to_owned()],
        &["reception".to_owned()],
    ));
    SessionSettings {
        model: "gpt-realtime".into(),
        instructions: "You are a receptionist.".into(),
        voice: "marin".into(),
        law: Law::Mu,
        // As `bridge/setup.rs` configures an agent with the echo gate on (the default): frontdesk
        // decides interruptions.
        turn_detection: TurnDetection {
            interrupt_response: false,
            ..TurnDetection::default()
        },
        transcription_model: None,
        tools,
    }
}

fn agent(greeting: &str) -> CallPlan {
    CallPlan::Agent(model_plan(greeting))
}

fn model_plan(greeting: &str) -> ModelPlan {
    ModelPlan {
        caps: Dialect::Ga.capabilities(),
        settings: settings(),
        greeting: greeting.into(),
        dtmf: BTreeMap::new(),
        transfers: BTreeMap::from([("reception".to_owned(), "sip:reception@pbx.test".to_owned())]),
        max_duration: Duration::from_secs(3_600),
        rollover: Default::default(),
        echo_gate: true,
        idle: None,
    }
}

impl Pair {
    fn new(plan: CallPlan, scenario_text: &str, net: Netem) -> Pair {
        Pair::with_dialect(Dialect::Ga, plan, scenario_text, net)
    }

    /// A pair on the GPT-Live dialect: the plan's dialect capabilities and the live simulator.
    fn live(mut plan: CallPlan, scenario_text: &str, net: Netem) -> Pair {
        if let CallPlan::Agent(m) | CallPlan::Announcement(m, _) = &mut plan {
            m.caps = Dialect::Live.capabilities();
        }
        Pair::with_dialect(Dialect::Live, plan, scenario_text, net)
    }

    fn with_dialect(dialect: Dialect, plan: CallPlan, scenario_text: &str, net: Netem) -> Pair {
        let t0 = Instant::now();
        let caller_addr: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        let setup = CallSetup {
            media: MediaParams {
                ssrc: 0x1234,
                first_seq: 1,
                first_ts: 0,
                rtp_timeout: Some(Duration::from_secs(30)),
                send_silence: dialect == Dialect::Live,
            },
            negotiated: Negotiated {
                law: Law::Mu,
                payload_type: 0,
                telephone_event_pt: Some(101),
                remote_rtp: caller_addr,
                ptime_ms: 20,
                direction: Direction::SendRecv,
                rtcp_mux: false,
                srtp: None,
            },
            local_rtp: "127.0.0.1:30000".parse().expect("addr"),
            sdp_session_id: 1,
            sdes: None,
            plan,
        };
        let scenario = scenario(scenario_text);
        let sim = new_sim(&scenario, dialect, 1, t0);
        let mut pair = Pair {
            t0,
            now: t0,
            bridge: Bridge::new(t0, setup),
            codec: Codec::new(dialect),
            sim,
            dialect,
            link_up: true,
            scenario,
            next_sim: None,
            old_sims: Vec::new(),
            sessions_opened: 1,
            open_delay: ms(250),
            open_failures: 0,
            session_log: Vec::new(),
            bridge_timer: t0,
            rng: Rng(0x9E37_79B9_7F4A_7C15),
            net,
            effects: Effects::default(),
            caller_addr,
            speech: Vec::new(),
            sends: None,
            caller_next: t0 + ms(7),
            caller_seq: 1000,
            caller_ts: 0,
            phase: 0.0,
            uplink: Vec::new(),
            to_sim: VecDeque::new(),
            to_core: VecDeque::new(),
            model_delay: ms(40),
            pending: Vec::new(),
            rtp_sent: Vec::new(),
            rtp_payloads: Vec::new(),
            model_audio: Vec::new(),
            server_events: Vec::new(),
            appends: Vec::new(),
            commands: Vec::new(),
            tools: Vec::new(),
            refers: Vec::new(),
            ended: None,
        };
        pair.drain();
        pair
    }

    fn at(&self, offset: Duration) -> Instant {
        self.t0 + offset
    }

    /// Feeds one input and drains the core (the drain rule).
    fn input(&mut self, input: Input<'_>) {
        self.bridge.handle_input(input);
        self.drain();
    }

    fn drain(&mut self) {
        let mut fed = false;
        loop {
            match self.bridge.poll_output() {
                Output::SendModel(cmd) => {
                    fed = true;
                    if self.session_log.iter().any(|(_, l)| l == "switch") {
                        let label = match &cmd {
                            ModelCommand::AppendAudio(_) => "audio".to_owned(),
                            ModelCommand::SeedHistory(_) => "seed".to_owned(),
                            ModelCommand::Configure(_) => "configure".to_owned(),
                            other => format!("{other:?}").chars().take(40).collect(),
                        };
                        if self.session_log.len() < 2000 {
                            self.session_log.push((self.now, label));
                        }
                    }
                    if let Some(text) = self.codec.encode_to_string(&cmd) {
                        self.to_sim.push_back((self.now + self.model_delay, text));
                    }
                    if cmd.is_audio() {
                        self.appends.push(self.now);
                    } else {
                        self.commands.push((self.now, cmd));
                    }
                }
                Output::SendRtp { packet, .. } => {
                    assert_eq!(packet.len(), PACKET_BYTES);
                    self.rtp_sent.push(self.now);
                    self.rtp_payloads
                        .extend_from_slice(&packet[rtp::HEADER_BYTES..]);
                }
                Output::SendRtcp { .. } | Output::AnswerOffer(_) | Output::SetSrtp(_) => {}
                Output::RunTool(req) => {
                    let (delay, output) = self.effects.tool.clone();
                    self.pending.push((
                        self.now + delay,
                        Pending::Tool {
                            call_id: req.call_id.clone(),
                            output,
                        },
                    ));
                    self.tools.push((self.now, req));
                }
                Output::Refer { target } => {
                    let (delay, result) = self.effects.refer.clone();
                    let accepted = matches!(result, Ok(c) if (200..300).contains(&c));
                    self.pending
                        .push((self.now + delay, Pending::Refer(result)));
                    if let (true, Some((after, status))) = (accepted, self.effects.notify) {
                        let from = if self.effects.notify_overtakes {
                            self.now
                        } else {
                            self.now + delay
                        };
                        self.pending.push((
                            from + after,
                            Pending::Sip(CallEvent::ReferNotify {
                                status,
                                terminated: true,
                            }),
                        ));
                    }
                    self.refers.push((self.now, target));
                }
                Output::OpenSession => {
                    self.session_log.push((self.now, "open".into()));
                    let ok = if self.open_failures > 0 {
                        self.open_failures -= 1;
                        false
                    } else {
                        true
                    };
                    self.pending
                        .push((self.now + self.open_delay, Pending::Opened(ok)));
                }
                Output::SwitchSession => {
                    self.session_log.push((self.now, "switch".into()));
                    if let Some(next) = self.next_sim.take() {
                        let old = std::mem::replace(&mut self.sim, next);
                        self.old_sims.push(old);
                        self.codec = Codec::new(self.dialect);
                        self.to_sim.clear();
                        self.to_core.clear();
                        self.link_up = true;
                    }
                }
                Output::CloseSession => {
                    self.session_log.push((self.now, "close".into()));
                    self.link_up = false;
                    self.to_sim.clear();
                    self.to_core.clear();
                }
                Output::Hangup(reason) => {
                    if self.ended.is_none() {
                        self.ended = Some((self.now, reason));
                    }
                }
                Output::Timeout(at) => {
                    self.bridge_timer = at;
                    break;
                }
            }
        }
        if fed {
            self.bridge.handle_input(Input::ModelFlushed(self.now));
        }
    }

    /// The caller's next packet (`None` outside [`Pair::sends`]: the sequence number stays, the
    /// timestamp advances).
    fn caller_packet(&mut self) -> Option<Vec<u8>> {
        let offset = self.now.saturating_duration_since(self.t0);
        let within = |w: &[(Duration, Duration)]| w.iter().any(|&(a, b)| offset >= a && offset < b);
        let speaking = within(&self.speech);
        if self.sends.as_deref().is_some_and(|w| !within(w)) {
            self.caller_ts = self.caller_ts.wrapping_add(160);
            return None;
        }
        let mut payload = [0xFFu8; 160];
        if speaking {
            for b in payload.iter_mut() {
                self.phase += 2.0 * std::f64::consts::PI * 440.0 / 8_000.0;
                *b = g711::linear_to_ulaw((self.phase.sin() * 9_000.0) as i16);
            }
        }
        let mut pkt = Vec::new();
        rtp::write_packet(
            &mut pkt,
            0,
            false,
            self.caller_seq,
            self.caller_ts,
            0xCA11,
            &payload,
        );
        self.caller_seq = self.caller_seq.wrapping_add(1);
        self.caller_ts = self.caller_ts.wrapping_add(160);
        Some(pkt)
    }

    /// Runs until `offset` after the start, or until the call ended.
    fn run_until(&mut self, offset: Duration) {
        let end = self.t0 + offset;
        while self.ended.is_none() {
            while let Some(text) = self.sim.poll_event().filter(|_| self.link_up) {
                self.to_core
                    .push_back((self.now + self.model_delay, Some(text)));
            }
            if self.link_up && self.sim.poll_close().is_some() {
                self.to_core.push_back((self.now + self.model_delay, None));
            }
            let next = [
                Some(self.bridge_timer),
                self.sim.poll_timeout().filter(|_| self.link_up),
                self.uplink.iter().map(|(t, _)| *t).min(),
                self.to_sim.front().map(|(t, _)| *t),
                self.to_core.front().map(|(t, _)| *t),
                Some(self.caller_next),
                self.pending.iter().map(|(t, _)| *t).min(),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(end);
            if next > end {
                self.now = end;
                break;
            }
            self.now = self.now.max(next);
            let now = self.now;
            if self.caller_next <= now {
                let pkt = self.caller_packet();
                self.caller_next += FRAME;
                if let Some(pkt) = pkt.filter(|_| self.rng.unit() >= self.net.loss) {
                    let copies = if self.rng.unit() < self.net.duplicate {
                        2
                    } else {
                        1
                    };
                    for _ in 0..copies {
                        let jitter_ns = self.net.jitter.as_nanos() as f64 * self.rng.unit();
                        let delay = Duration::from_nanos(jitter_ns as u64);
                        self.uplink.push((now + delay, pkt.clone()));
                    }
                }
            }
            while let Some(i) = self.uplink.iter().position(|(t, _)| *t <= now) {
                let (_, pkt) = self.uplink.swap_remove(i);
                let from = self.caller_addr;
                self.input(Input::Rtp {
                    now,
                    from,
                    datagram: &pkt,
                });
            }
            while self.to_sim.front().is_some_and(|(t, _)| *t <= now) {
                if let Some((_, text)) = self.to_sim.pop_front() {
                    self.sim.handle_client_text(now, &text);
                }
            }
            while self.to_core.front().is_some_and(|(t, _)| *t <= now) {
                match self.to_core.pop_front() {
                    Some((_, Some(text))) => {
                        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                            if !v["type"].as_str().is_some_and(|t| t.ends_with(".delta")) {
                                self.server_events.push((now, v));
                            }
                        }
                        let mut events = VecDeque::new();
                        self.codec
                            .decode(&text, &mut events)
                            .expect("the simulator sends readable events");
                        // GPT-Live: what the codec held until `session.started` goes now.
                        let held = self.codec.live().map(|l| l.take_held()).unwrap_or_default();
                        for text in held {
                            self.to_sim.push_back((now + self.model_delay, text));
                        }
                        for event in events {
                            if let ModelEvent::AudioDelta { audio, .. } = &event {
                                self.model_audio.extend_from_slice(audio);
                            }
                            self.input(Input::Model(now, event));
                        }
                    }
                    Some((_, None)) => self.input(Input::Model(
                        now,
                        ModelEvent::SessionClosed {
                            reason: "1001 session cap".into(),
                        },
                    )),
                    None => {}
                }
            }
            while let Some(i) = self.pending.iter().position(|(t, _)| *t <= now) {
                let (_, p) = self.pending.swap_remove(i);
                let input = match p {
                    Pending::Opened(true) => {
                        self.sessions_opened += 1;
                        self.next_sim = Some(new_sim(
                            &self.scenario,
                            self.dialect,
                            self.sessions_opened,
                            now,
                        ));
                        Input::SessionOpened(now)
                    }
                    Pending::Opened(false) => Input::SessionOpenFailed {
                        now,
                        error: "refused (test)".into(),
                    },
                    Pending::Tool { call_id, output } => Input::ToolDone {
                        now,
                        call_id,
                        output,
                    },
                    Pending::Refer(result) => Input::ReferDone { now, result },
                    Pending::Sip(event) => Input::Sip(now, event),
                };
                self.input(input);
            }
            if self.link_up && self.sim.poll_timeout().is_some_and(|t| t <= now) {
                self.sim.handle_timeout(now);
            }
            if let Some(next) = self.next_sim.as_mut() {
                // An idle session opened for a switch: only its clock runs.
                if next.poll_timeout().is_some_and(|t| t <= now) {
                    next.handle_timeout(now);
                }
                while next.poll_event().is_some() {}
            }
            if self.bridge_timer <= now {
                self.input(Input::Timeout(now));
            }
        }
    }

    /// RTP packets the core sent in `[from, to)` (offsets from t0).
    fn rtp_between(&self, from: Duration, to: Duration) -> usize {
        let (a, b) = (self.at(from), self.at(to));
        self.rtp_sent.iter().filter(|&&t| t >= a && t < b).count()
    }

    fn truncates(&self) -> Vec<(Instant, String, u64)> {
        self.commands
            .iter()
            .filter_map(|(t, c)| match c {
                ModelCommand::Truncate {
                    item_id,
                    audio_end_ms,
                    ..
                } => Some((*t, item_id.clone(), *audio_end_ms)),
                _ => None,
            })
            .collect()
    }

    /// The longest gap between consecutive RTP packets the core sent in `[from, to)`.
    fn max_rtp_gap(&self, from: Duration, to: Duration) -> Duration {
        let (a, b) = (self.at(from), self.at(to));
        let sent: Vec<Instant> = self
            .rtp_sent
            .iter()
            .copied()
            .filter(|&t| t >= a && t < b)
            .collect();
        sent.windows(2)
            .map(|w| w[1].saturating_duration_since(w[0]))
            .max()
            .unwrap_or_default()
    }
}

const GREETING_ONLY: &str = r#"
greeting = "Thank you for calling Bright Smile Dental."
realtime_factor = 5.0
[[turn]]
say = "We are open Monday to Friday from eight to five."
"#;

#[test]
fn greeting_is_played_as_paced_rtp() {
    let mut p = Pair::new(
        agent("Thank you for calling."),
        GREETING_ONLY,
        Netem::default(),
    );
    p.run_until(Duration::from_secs(8));
    assert!(p.ended.is_none(), "{:?}", p.ended);
    let sent = p.rtp_between(Duration::ZERO, Duration::from_secs(8));
    // "Thank you for calling Bright Smile Dental." at 65 ms per char is ~2.5 s: >100 packets.
    assert!(sent > 100, "greeting packets: {sent}");
    // Faster-than-real-time deltas are paced: one packet per 20 ms, never a burst (a packet may
    // leave up to RTP_AHEAD early when a caller packet woke the shell).
    let first = p.rtp_sent[0].saturating_duration_since(p.t0);
    let window = (first, first + Duration::from_secs(2));
    let n = p.rtp_between(window.0, window.1);
    assert!((100..=101).contains(&n), "packets in 2 s: {n}");
    assert!(p.max_rtp_gap(window.0, window.1) <= FRAME + super::core::RTP_AHEAD);
    // The greeting came from a response.create with the greeting instructions.
    assert!(p.commands.iter().any(|(_, c)| matches!(
        c,
        ModelCommand::CreateResponse { instructions: Some(i) } if i.contains("Thank you for calling.")
    )));
}

#[test]
fn a_caller_turn_gets_a_spoken_answer() {
    let mut p = Pair::new(agent(""), GREETING_ONLY, Netem::default());
    p.speech = vec![(Duration::from_secs(1), Duration::from_millis(2_500))];
    p.run_until(Duration::from_secs(10));
    assert!(p.ended.is_none());
    // Every 20 ms of caller audio reached the session as one append.
    let appends = p.appends.len();
    assert!((495..=501).contains(&appends), "appends: {appends}");
    assert_eq!(p.rtp_between(Duration::ZERO, Duration::from_secs(2)), 0);
    // The answer (~3 s of speech) plays after the caller stopped (2.5 s + 500 ms of silence).
    let answer = p.rtp_between(Duration::from_secs(3), Duration::from_secs(10));
    assert!(answer > 120, "answer packets: {answer}");
}

/// A long answer to the caller's first turn, its audio sent `realtime_factor` times faster than
/// real time.
fn long_reply(realtime_factor: f64) -> String {
    format!(
        r#"
greeting = "Hello."
realtime_factor = {realtime_factor:.1}
[[turn]]
say = "Let me tell you everything about our opening hours, our dentists, the parking, the insurance plans we accept, and the many services we offer to patients of every age."
[fallback]
say = "Sorry, go on."
"#
    )
}

#[test]
fn barge_in_truncates_at_the_audio_actually_sent_within_one_frame() {
    let mut p = Pair::new(agent(""), &long_reply(20.0), Netem::default());
    // Turn 1 at 1.0–2.0 s; the long answer starts ~2.7 s; the caller barges in at 5.0 s.
    p.speech = vec![
        (Duration::from_secs(1), Duration::from_secs(2)),
        (Duration::from_secs(5), Duration::from_secs(6)),
    ];
    p.run_until(Duration::from_secs(6));
    let truncates = p.truncates();
    assert_eq!(truncates.len(), 1, "{truncates:?}");
    let (at, _item, audio_end_ms) = truncates[0].clone();
    // What the caller heard of that item: every packet the core sent before the truncate (the
    // greeting is empty, so all RTP belongs to the answer).
    let sent_ms = p.rtp_sent.iter().filter(|&&t| t <= at).count() as u64 * 20;
    assert!(
        audio_end_ms <= sent_ms && sent_ms - audio_end_ms <= 20,
        "truncated at {audio_end_ms} ms, sent {sent_ms} ms"
    );
    // Playout stops at once: at most the frame already handed out follows.
    let after = p.rtp_sent.iter().filter(|&&t| t > at).count();
    let next_answer_starts = at + Duration::from_millis(1_000);
    let right_after = p
        .rtp_sent
        .iter()
        .filter(|&&t| t > at && t < next_answer_starts)
        .count();
    assert!(
        right_after <= 1,
        "{right_after} packets after the barge-in ({after} in all)"
    );
    assert_eq!(p.bridge.stats().barge_ins, 1);
}

#[test]
fn frontdesk_cancels_the_response_a_caller_interrupts_and_the_caller_is_answered() {
    // The agent's session has interrupt_response = false (echo gate on): the simulator, like
    // the service, lets the response run; frontdesk decides the caller's speech is a barge-in.
    // The answer is generated barely faster than it plays: the caller speaks into a response
    // still in progress.
    let mut p = Pair::new(agent(""), &long_reply(1.2), Netem::default());
    p.speech = vec![
        (Duration::from_secs(1), Duration::from_secs(2)),
        (Duration::from_secs(5), Duration::from_secs(6)),
    ];
    p.run_until(Duration::from_secs(12));
    assert!(p.ended.is_none(), "{:?}", p.ended);
    let events = |ty: &str| -> Vec<(Instant, serde_json::Value)> {
        p.server_events
            .iter()
            .filter(|(_, e)| e["type"] == ty)
            .cloned()
            .collect()
    };
    let updated = events("session.updated");
    assert_eq!(
        updated[0].1["session"]["audio"]["input"]["turn_detection"]["interrupt_response"],
        false
    );
    let errors = events("error");
    assert!(errors.is_empty(), "{errors:?}");
    // One cancel, sent when the caller's speech started, for the response being generated.
    let started = events("input_audio_buffer.speech_started");
    assert_eq!(started.len(), 2);
    let cancels: Vec<Instant> = p
        .commands
        .iter()
        .filter(|(_, c)| matches!(c, ModelCommand::CancelResponse))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(cancels, [started[1].0]);
    let dones: Vec<(String, String)> = events("response.done")
        .iter()
        .map(|(_, e)| {
            let r = &e["response"];
            (
                r["status"].as_str().unwrap_or_default().to_owned(),
                r["status_details"]["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        dones,
        [
            ("cancelled".to_owned(), "client_cancelled".to_owned()),
            ("completed".to_owned(), String::new()),
        ],
        "the long answer cancelled by frontdesk, then the answer to the interruption"
    );
    // Playout stopped at the barge-in and the item was truncated at what was sent.
    let truncates = p.truncates();
    assert_eq!(truncates.len(), 1, "{truncates:?}");
    let at = truncates[0].0;
    assert_eq!(at, cancels[0]);
    let sent_ms = p.rtp_sent.iter().filter(|&&t| t <= at).count() as u64 * 20;
    assert!(
        sent_ms - truncates[0].2 <= 20,
        "{truncates:?}, sent {sent_ms} ms"
    );
    assert!(
        p.rtp_between(
            at.saturating_duration_since(p.t0) + ms(21),
            Duration::from_secs(6)
        ) == 0
    );
    assert_eq!(p.bridge.stats().true_barge_ins, 1);
    assert_eq!(p.bridge.stats().false_barge_ins, 0);
    // The caller's interruption is answered once its turn ends (6 s + 500 ms of silence).
    let answer = p.rtp_between(Duration::from_millis(6_500), Duration::from_secs(12));
    assert!(answer > 40, "answer packets: {answer}");
}

const TOOL: &str = r#"
greeting = "Hello."
[[turn]]
call = { name = "check_availability", arguments = { service = "cleaning" } }
say = "I have {output.slots[0].start}."
"#;

#[test]
fn a_tool_round_trip_reaches_the_model_and_its_answer_is_spoken() {
    let mut p = Pair::new(agent(""), TOOL, Netem::default());
    p.speech = vec![(Duration::from_secs(1), Duration::from_secs(2))];
    p.run_until(Duration::from_secs(12));
    assert!(p.ended.is_none());
    assert_eq!(p.tools.len(), 1);
    let (called_at, req) = &p.tools[0];
    assert_eq!(req.name, "check_availability");
    assert_eq!(req.arguments, r#"{"service":"cleaning"}"#);
    let outputs = p.sim.tool_outputs();
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].call_id, req.call_id);
    assert!(outputs[0].output.contains("2026-03-02T09:00"));
    // The answer that reads the output is played after the tool returned (300 ms).
    let after = called_at.saturating_duration_since(p.t0) + ms(300);
    assert!(p.rtp_between(after, Duration::from_secs(12)) > 50);
}

const GOODBYE: &str = r#"
greeting = "Hello."
[[turn]]
call = { name = "end_call", arguments = { reason = "caller said goodbye" } }
say = "Thank you for calling, goodbye."
"#;

#[test]
fn end_call_hangs_up_after_the_goodbye_was_played() {
    let mut p = Pair::new(agent(""), GOODBYE, Netem::default());
    p.speech = vec![(Duration::from_secs(1), Duration::from_secs(2))];
    p.run_until(Duration::from_secs(20));
    let (ended_at, reason) = p.ended.clone().expect("the call ends");
    assert_eq!(
        reason,
        EndReason::local(Cause::EndCall("caller said goodbye".into()))
    );
    // The goodbye (~2 s of speech) was sent completely before the hang-up, and nothing after.
    let last = *p.rtp_sent.last().expect("goodbye audio");
    assert!(ended_at >= last);
    assert!(ended_at.saturating_duration_since(last) <= ms(40));
    assert!(
        p.rtp_sent.len() > 80,
        "goodbye packets: {}",
        p.rtp_sent.len()
    );
    assert!(
        p.tools.is_empty(),
        "end_call is call control, not a tool task"
    );
}

const TRANSFER: &str = r#"
greeting = "Hello."
[[turn]]
preamble = "I am transferring you now."
call = { name = "transfer_call", arguments = { target = "reception" } }
say = "I could not transfer you, sorry."
"#;

#[test]
fn a_transfer_that_succeeds_ends_the_call_after_the_notify() {
    let mut p = Pair::new(agent(""), TRANSFER, Netem::default());
    p.speech = vec![(Duration::from_secs(1), Duration::from_secs(2))];
    // The REFER's 202 comes 3 s late; caller audio keeps flowing meanwhile.
    p.effects.refer = (Duration::from_secs(3), Ok(202));
    p.effects.notify = Some((ms(500), 200));
    p.run_until(Duration::from_secs(15));
    assert_eq!(p.refers.len(), 1);
    let (refer_at, target) = p.refers[0].clone();
    assert_eq!(target, "sip:reception@pbx.test");
    let (ended_at, reason) = p.ended.clone().expect("transferred");
    assert_eq!(reason, EndReason::local(Cause::Transferred));
    // 3 s for the 202, 0.5 s for the NOTIFY, 100 ms for its 200 to leave.
    let took = ended_at.saturating_duration_since(refer_at);
    assert!(took >= ms(3_600) && took <= ms(3_700), "{took:?}");
    // While the REFER was outstanding, every caller frame still reached the session.
    let during = p
        .appends
        .iter()
        .filter(|&&t| t > refer_at && t <= refer_at + Duration::from_secs(3))
        .count();
    assert!(
        (148..=151).contains(&during),
        "appends during the REFER: {during}"
    );
    assert!(
        p.sim.tool_outputs().is_empty(),
        "a successful transfer is not answered"
    );
}

#[test]
fn a_transfer_that_fails_is_reported_to_the_model_and_the_call_goes_on() {
    let mut p = Pair::new(agent(""), TRANSFER, Netem::default());
    p.speech = vec![(Duration::from_secs(1), Duration::from_secs(2))];
    p.effects.refer = (ms(500), Ok(603));
    p.run_until(Duration::from_secs(15));
    assert!(p.ended.is_none(), "{:?}", p.ended);
    let outputs = p.sim.tool_outputs();
    assert_eq!(outputs.len(), 1);
    let v: serde_json::Value = serde_json::from_str(&outputs[0].output).expect("json");
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["code"], "transfer_failed");
    // The model's apology is played after the failure.
    let failed_at = p.refers[0].0.saturating_duration_since(p.t0) + ms(500);
    assert!(p.rtp_between(failed_at, Duration::from_secs(15)) > 40);
}

/// The NOTIFY overtakes the REFER's 202 (they come on different channels): a failure it reports
/// still reaches the model, and a success still ends the call.
#[test]
fn a_notify_that_overtakes_the_202_still_decides_the_transfer() {
    for (status, transferred) in [(503, false), (200, true)] {
        let mut p = Pair::new(agent(""), TRANSFER, Netem::default());
        p.speech = vec![(Duration::from_secs(1), Duration::from_secs(2))];
        p.effects.refer = (ms(800), Ok(202));
        p.effects.notify = Some((ms(300), status));
        p.effects.notify_overtakes = true;
        p.run_until(Duration::from_secs(8));
        assert_eq!(p.refers.len(), 1);
        let notify_at = p.refers[0].0 + ms(300);
        if transferred {
            let (ended_at, reason) = p.ended.clone().expect("transferred");
            assert_eq!(reason, EndReason::local(Cause::Transferred));
            let took = ended_at.saturating_duration_since(notify_at);
            assert!(took <= ms(150), "{took:?} after the NOTIFY");
        } else {
            assert!(p.ended.is_none(), "{:?}", p.ended);
            let outputs = p.sim.tool_outputs();
            assert_eq!(outputs.len(), 1, "the failure is reported once");
            let v: serde_json::Value = serde_json::from_str(&outputs[0].output).expect("json");
            assert_eq!(v["error"]["code"], "transfer_failed");
            assert!(outputs[0].output.contains("503"), "{}", outputs[0].output);
        }
    }
}

#[test]
fn a_session_that_cannot_be_replaced_ends_the_call_as_model_unavailable() {
    let text = "greeting = \"Hello.\"\nmax_session_s = 5\n";
    let mut plan = model_plan("Hello.");
    plan.rollover.filler = vec![0x11; 8_000].into(); // 1 s
    let mut p = Pair::new(CallPlan::Agent(plan), text, Netem::default());
    p.open_failures = 1_000;
    p.run_until(Duration::from_secs(30));
    let (ended_at, reason) = p.ended.clone().expect("ended");
    assert_eq!(reason, EndReason::local(Cause::ModelUnavailable));
    let at = ended_at.saturating_duration_since(p.t0);
    // The session ends at 5 s; the reconnect window is 10 s (the call ends once no further
    // attempt fits in it).
    assert!(at >= ms(13_000) && at <= ms(15_300), "{at:?}");
    let opens = p.session_log.iter().filter(|(_, l)| l == "open").count();
    assert!(opens >= 4, "retried: {opens} attempts");
    // The filler ("One moment, please.") was played after 1.5 s without a session.
    assert!(p.rtp_between(ms(6_500), ms(7_500)) > 45);
    assert_eq!(p.rtp_between(ms(8_000), ms(13_000)), 0, "played once");
}

/// The agent's `on_model_failure` after a failed rollover: its recording plays (nothing of the
/// model after it), then the caller is transferred with REFER.
#[test]
fn a_failed_rollover_plays_the_agents_recording_then_transfers() {
    let text = "greeting = \"Hello.\"\nmax_session_s = 5\n";
    let mut plan = model_plan("Hello.");
    plan.rollover.on_failure = Some(super::core::ModelFallback {
        audio: vec![0x22; 16_000], // 2 s
        then: AfterMessage::Transfer {
            target: "sip:desk@pbx.test".into(),
        },
    });
    let mut p = Pair::new(CallPlan::Agent(plan), text, Netem::default());
    p.open_failures = 1_000;
    p.run_until(Duration::from_secs(40));
    let (ended_at, reason) = p.ended.clone().expect("ended");
    assert_eq!(reason, EndReason::local(Cause::Transferred));
    assert_eq!(p.refers.len(), 1);
    assert_eq!(p.refers[0].1, "sip:desk@pbx.test");
    // The model became unavailable at 13–15.3 s (see the test above); the 2 s recording was
    // played in full before the REFER.
    let refer_at = p.refers[0].0.saturating_duration_since(p.t0);
    assert!(
        refer_at >= ms(15_000) && refer_at <= ms(17_500),
        "{refer_at:?}"
    );
    let played = p.rtp_between(refer_at - ms(2_000), refer_at);
    assert!(played >= 98, "{played} recording packets");
    assert!(ended_at >= p.refers[0].0);
}

/// The commands the core sent after the `n`th switch (0-based), up to the next session op.
fn after_switch(p: &Pair, n: usize) -> Vec<(Instant, String)> {
    let start = p
        .session_log
        .iter()
        .enumerate()
        .filter(|(_, (_, l))| l == "switch")
        .nth(n)
        .map(|(i, _)| i + 1)
        .expect("switched");
    p.session_log[start..]
        .iter()
        .take_while(|(_, l)| !matches!(l.as_str(), "open" | "switch" | "close"))
        .cloned()
        .collect()
}

const TWO_TURNS: &str = r#"
greeting = "Thank you for calling Bright Smile Dental."
realtime_factor = 5.0
max_session_s = 20
[[turn]]
say = "We are open Monday to Friday."
[[turn]]
say = "Yes, we take new patients."
"#;

#[test]
fn an_expired_session_rolls_over_while_the_caller_talks() {
    let mut p = Pair::new(agent("Thank you for calling."), TWO_TURNS, Netem::default());
    // The caller talks before and across the end of the first session (20 s).
    p.speech = vec![(ms(6_000), ms(8_000)), (ms(18_500), ms(21_500))];
    p.run_until(Duration::from_secs(35));
    assert!(p.ended.is_none(), "{:?}", p.ended);
    assert_eq!(p.bridge.rollovers(), 1);
    let ops: Vec<&str> = p
        .session_log
        .iter()
        .map(|(_, l)| l.as_str())
        .filter(|l| matches!(*l, "open" | "switch" | "close"))
        .collect();
    assert_eq!(ops, ["close", "open", "switch"]);
    let (closed_at, _) = p.session_log[0].clone();
    let at = closed_at.saturating_duration_since(p.t0);
    assert!(at >= ms(20_000) && at <= ms(20_200), "{at:?}");
    // History first, then the configuration, then the caller's audio from the gap.
    let sent = after_switch(&p, 0);
    let labels: Vec<&str> = sent.iter().map(|(_, l)| l.as_str()).collect();
    let first_audio = labels.iter().position(|l| *l == "audio").expect("audio");
    let configure = labels
        .iter()
        .position(|l| *l == "configure")
        .expect("configure");
    assert!(
        labels[..configure].iter().all(|l| *l == "seed") && configure >= 1,
        "{labels:?}"
    );
    assert!(configure < first_audio);
    // Every gap frame (about 250 ms at 20 ms each) is appended at the switch.
    let switch_at = sent[0].0;
    let gap_frames = sent
        .iter()
        .filter(|(t, l)| *t == switch_at && l == "audio")
        .count();
    assert!((10..=16).contains(&gap_frames), "{gap_frames} gap frames");
    // The seeded history holds the greeting and the agent's first answer, and ends with the
    // continuation note; no greeting is requested again.
    let seeds: Vec<String> = p
        .commands
        .iter()
        .filter_map(|(_, c)| match c {
            ModelCommand::SeedHistory(crate::realtime::model::HistoryItem::Message {
                text,
                ..
            }) => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert!(
        seeds.iter().any(|t| t.contains("Thank you for calling")),
        "{seeds:?}"
    );
    assert!(
        seeds.iter().any(|t| t.contains("Monday to Friday")),
        "{seeds:?}"
    );
    assert_eq!(
        seeds.last().map(String::as_str),
        Some(super::core::CONTINUATION_NOTE)
    );
    let greetings = p
        .commands
        .iter()
        .filter(|(_, c)| {
            matches!(
                c,
                ModelCommand::CreateResponse {
                    instructions: Some(_)
                }
            )
        })
        .count();
    assert_eq!(greetings, 1, "the greeting is asked for once");
    // The new session heard the caller's turn that spanned the gap and answered it.
    assert!(
        p.rtp_between(ms(22_000), ms(30_000)) > 50,
        "the second session answers"
    );
}

#[test]
fn a_planned_rollover_switches_at_a_silence() {
    let mut plan = model_plan("Thank you for calling.");
    plan.rollover.session_max = Some(Duration::from_secs(30));
    let text = "greeting = \"Thank you for calling Bright Smile Dental.\"\n[[turn]]\nsay = \"We are open Monday to Friday from eight to five, and on Saturday mornings.\"\n";
    let mut p = Pair::new(CallPlan::Agent(plan), text, Netem::default());
    // The caller asks at 27 s; the answer plays past the 30 s mark.
    p.speech = vec![(ms(27_000), ms(28_500))];
    p.run_until(Duration::from_secs(45));
    assert!(p.ended.is_none(), "{:?}", p.ended);
    assert_eq!(p.bridge.rollovers(), 1);
    let at = |what: &str| {
        p.session_log
            .iter()
            .find(|(_, l)| l == what)
            .map(|(t, _)| t.saturating_duration_since(p.t0))
            .expect(what)
    };
    assert!(at("open") >= ms(30_000) && at("open") < ms(30_100));
    assert!(
        !p.session_log.iter().any(|(_, l)| l == "close"),
        "no unplanned close"
    );
    let switched = at("switch");
    assert!(switched > at("open"));
    // At the switch nothing is playing: no RTP in the 100 ms before or after it.
    assert_eq!(p.rtp_between(switched - ms(100), switched + ms(100)), 0);
    // The answer was played in full before the switch (it started before 30 s).
    assert!(p.rtp_between(ms(29_000), switched) > 50);
    assert_eq!(
        p.old_sims.len(),
        1,
        "the old session was switched away from (closed by us)"
    );
}

#[test]
fn a_tool_call_in_flight_during_an_unplanned_rollover_runs_once() {
    let text = r#"
greeting = "Hello."
realtime_factor = 20.0
[[turn]]
call = { name = "check_availability", arguments = { service = "cleaning", date = "2026-03-02" } }
say = "The first opening is {output.slots[0].start}."
[[fault]]
after_turn = 1
action = "close"
"#;
    let mut p = Pair::new(agent("Hello."), text, Netem::default());
    p.effects.tool = (
        ms(2_000),
        r#"{"ok":true,"slots":[{"start":"nine"}]}"#.into(),
    );
    p.speech = vec![(ms(3_000), ms(4_500))];
    p.run_until(Duration::from_secs(20));
    assert!(p.ended.is_none(), "{:?}", p.ended);
    assert_eq!(p.bridge.rollovers(), 1);
    assert_eq!(p.tools.len(), 1, "the tool ran once");
    let outputs = p.sim.tool_outputs();
    assert_eq!(outputs.len(), 1, "its output went to the new session");
    assert_eq!(outputs[0].call_id, p.tools[0].1.call_id);
    assert_eq!(outputs[0].name.as_deref(), Some("check_availability"));
    assert!(p.old_sims[0].tool_outputs().is_empty());
}

#[test]
fn a_ten_minute_call_with_5_percent_loss_and_60_ms_jitter() {
    let started = std::time::Instant::now();
    let net = Netem {
        loss: 0.05,
        jitter: ms(60),
        duplicate: 0.01,
    };
    let mut p = Pair::new(agent("Hello."), GREETING_ONLY, net);
    // The caller speaks for 1.5 s every 20 s.
    p.speech = (0..30)
        .map(|i| {
            let at = Duration::from_secs(10 + 20 * i);
            (at, at + ms(1_500))
        })
        .collect();
    p.run_until(Duration::from_secs(600));
    let wall = started.elapsed();
    assert!(p.ended.is_none(), "{:?}", p.ended);
    let stats = p.bridge.stats();
    // Every 20 ms of the call became one append (lost packets are concealed), give or take the
    // reorder window at the end.
    let appends = p.appends.len();
    assert!((29_950..=30_001).contains(&appends), "appends: {appends}");
    let lost_share = stats.inbound.concealed_frames as f64 / appends as f64;
    assert!((0.03..0.08).contains(&lost_share), "concealed {lost_share}");
    assert!(stats.inbound.duplicates > 100, "{:?}", stats.inbound);
    // The model heard the turns and answered them.
    assert!(
        p.rtp_sent.len() > 30 * 100,
        "agent packets: {}",
        p.rtp_sent.len()
    );
    eprintln!("10-minute call simulated in {wall:?}");
    assert!(wall < Duration::from_secs(20), "{wall:?}");
}

#[test]
fn a_recording_then_transfer_uses_the_same_transfer_machine() {
    let audio = vec![0x55u8; 8_000]; // 1 s
    let plan = CallPlan::Recording {
        audio,
        then: AfterMessage::Transfer {
            target: "sip:oncall@pbx.test".into(),
        },
    };
    let mut p = Pair::new(plan, GREETING_ONLY, Netem::default());
    p.effects.refer = (ms(300), Ok(202));
    p.effects.notify = None;
    p.run_until(Duration::from_secs(20));
    assert_eq!(p.rtp_sent.len(), 50);
    assert_eq!(p.refers.len(), 1);
    let (ended_at, reason) = p.ended.clone().expect("ended");
    assert_eq!(reason, EndReason::local(Cause::Transferred));
    // Without the transferee's BYE the call is hung up 5 s after the REFER was accepted.
    let waited = ended_at.saturating_duration_since(p.refers[0].0);
    assert_eq!(waited, ms(5_300));
    assert!(p.appends.is_empty(), "a recording has no model session");
}

// ----- GPT-Live: a continuous model stream -------------------------------------------------------

/// Maximal runs of non-quiet 20 ms frames ("words") of a µ-law stream.
fn words(audio: &[u8]) -> Vec<Vec<u8>> {
    let mut runs = Vec::new();
    let mut run = Vec::new();
    for f in audio.chunks_exact(160) {
        if crate::media::pacer::is_quiet(Law::Mu, f) {
            if !run.is_empty() {
                runs.push(std::mem::take(&mut run));
            }
        } else {
            run.extend_from_slice(f);
        }
    }
    runs
}

const LIVE_LONG_GREETING: &str = r#"
greeting = "Thank you for calling Bright Smile Dental. We are open Monday to Friday from eight in the morning to five in the afternoon. How can I help you today?"
first_audio_delay_ms = 300
"#;

/// A phone with silence suppression stops sending RTP while the agent talks: our appends stall
/// for the jitter buffer's clock grace, and so does the model's stream, which is paced by them.
/// The playout keeps that much in hand, so no word is cut apart (the e2e `live_pcma_call` met
/// this: one word of the greeting reached the caller as 13 + 7 frames with 3 of silence between).
#[test]
fn live_a_caller_whose_packets_stop_while_the_agent_talks_hears_every_word_whole() {
    for i in 0..8u64 {
        let stop = ms(1_500 + i * 330);
        let mut p = Pair::live(agent("Hello"), LIVE_LONG_GREETING, Netem::default());
        p.sends = Some(vec![(Duration::ZERO, stop)]);
        p.run_until(Duration::from_secs(12));
        assert!(p.ended.is_none(), "{:?}", p.ended);
        let sent = words(&p.model_audio);
        let heard = words(&p.rtp_payloads);
        assert!(sent.len() > 20, "the agent spoke {} words", sent.len());
        assert!(
            heard.len() + 2 >= sent.len(),
            "{} of {} words",
            heard.len(),
            sent.len()
        );
        for (k, (a, b)) in sent.iter().zip(&heard).enumerate() {
            assert!(
                a == b,
                "packets stop at {stop:?}: word {k} differs ({} vs {} bytes)",
                a.len(),
                b.len()
            );
        }
    }
}

/// `end_call` on GPT-Live: the stream never goes idle, so the goodbye is over when its transcript
/// turn ended and the stream was played that far; the call hangs up then, not at the 30 s limit.
#[test]
fn live_end_call_hangs_up_right_after_the_goodbye_was_played() {
    let mut p = Pair::live(agent(""), GOODBYE, Netem::default());
    p.speech = vec![(Duration::from_secs(1), Duration::from_secs(2))];
    p.run_until(Duration::from_secs(40));
    let (ended_at, reason) = p.ended.clone().expect("the call ends");
    assert_eq!(
        reason,
        EndReason::local(Cause::EndCall("caller said goodbye".into()))
    );
    assert!(
        ended_at < p.at(Duration::from_secs(15)),
        "hung up {:?} after the start",
        ended_at - p.t0
    );
    // Every word the model said, the goodbye included, was played whole before the hang-up.
    let sent = words(&p.model_audio);
    let heard = words(&p.rtp_payloads);
    assert!(sent.len() >= 3, "the agent spoke {} words", sent.len());
    assert_eq!(heard, sent[..heard.len()].to_vec());
    let spoken: usize = sent.iter().map(Vec::len).sum();
    let played: usize = heard.iter().map(Vec::len).sum();
    assert_eq!(played, spoken, "the goodbye was cut");
    // ... and the hang-up came soon after its last word left: within the turn gap (0.8 s) plus
    // the playout depth and a margin.
    let last_word = p
        .rtp_payloads
        .chunks_exact(160)
        .rposition(|f| !crate::media::pacer::is_quiet(Law::Mu, f))
        .expect("speech");
    let left = p.rtp_sent[last_word];
    assert!(
        ended_at.saturating_duration_since(left) <= ms(2_000),
        "hung up {:?} after the last word",
        ended_at.saturating_duration_since(left)
    );
    assert!(p.tools.is_empty(), "end_call is call control");
}

#[test]
fn live_a_dropped_session_rolls_over_with_the_history_in_session_start() {
    let text = r#"
greeting = "Thank you for calling Bright Smile Dental."
[[turn]]
heard = "What are your opening hours?"
say = "We are open Monday to Friday."
[[fault]]
at_ms = 8000
action = "close"
"#;
    let mut p = Pair::live(agent("Thank you for calling."), text, Netem::default());
    p.open_delay = ms(600);
    // The caller asks across the drop: the start of the question goes to the first session,
    // the rest waits for the second.
    p.speech = vec![(ms(7_600), ms(9_000))];
    p.run_until(Duration::from_secs(20));
    assert!(p.ended.is_none(), "{:?}", p.ended);
    assert_eq!(p.bridge.rollovers(), 1);
    let sent = after_switch(&p, 0);
    let labels: Vec<&str> = sent.iter().map(|(_, l)| l.as_str()).collect();
    let configure = labels
        .iter()
        .position(|l| *l == "configure")
        .expect("configure");
    assert!(configure >= 2, "history before session.start: {labels:?}");
    assert!(
        labels[..configure].iter().all(|l| *l == "seed"),
        "{labels:?}"
    );
    assert!(labels[configure..].contains(&"audio"), "{labels:?}");
    // The second session heard the caller (the gap's audio, held until session.started) and
    // answered.
    let turns = p.bridge.finish_transcript();
    assert!(
        turns
            .iter()
            .any(|t| t.text.contains("opening hours") && t.start_ms > 8_000),
        "{turns:?}"
    );
    assert!(
        turns.iter().any(|t| t.text.contains("Monday to Friday")),
        "{turns:?}"
    );
}

#[test]
fn a_session_with_a_known_end_is_replaced_a_minute_before_it() {
    let mut plan = model_plan("Thank you for calling.");
    plan.rollover.session_max = None;
    let mut p = Pair::new(CallPlan::Agent(plan), GREETING_ONLY, Netem::default());
    // What the shell reports from GPT-Live's `session.started` `expires_at`.
    let at = p.at(Duration::from_secs(100));
    let now = p.now;
    p.input(Input::SessionExpires { now, at });
    p.run_until(Duration::from_secs(60));
    assert!(p.ended.is_none(), "{:?}", p.ended);
    let opened = p
        .session_log
        .iter()
        .find(|(_, l)| l == "open")
        .map(|(t, _)| t.saturating_duration_since(p.t0))
        .expect("a planned rollover");
    assert!(opened >= ms(40_000) && opened < ms(40_100), "{opened:?}");
    assert_eq!(p.bridge.rollovers(), 1);
}

const IDLE: &str = r#"
greeting = "Hello, how can I help?"
realtime_factor = 20.0
[fallback]
heard = "Yes, I would like an appointment."
say = "Of course."
"#;

/// An agent with the idle rule (`prompt`, `hangup`) and caller transcripts on.
fn idle_agent(prompt: Duration, hangup: Option<Duration>) -> CallPlan {
    let mut plan = model_plan("Hello, how can I help?");
    plan.settings.transcription_model = Some("gpt-4o-mini-transcribe".into());
    plan.idle = Some(super::core::IdlePolicy {
        prompt,
        hangup,
        caller_transcripts: true,
    });
    CallPlan::Agent(plan)
}

impl Pair {
    /// When the core asked for a response with these per-response instructions.
    fn responses_with(&self, instructions: &str) -> Vec<Instant> {
        self.commands
            .iter()
            .filter(|(_, c)| {
                matches!(c, ModelCommand::CreateResponse { instructions: Some(i) } if i == instructions)
            })
            .map(|(t, _)| *t)
            .collect()
    }

    /// The last RTP packet the core sent before `t`.
    fn last_rtp_before(&self, t: Instant) -> Instant {
        *self
            .rtp_sent
            .iter()
            .rfind(|&&s| s < t)
            .expect("audio before")
    }
}

#[test]
fn a_silent_caller_is_checked_on_then_hung_up_on_as_idle() {
    use super::core::{CHECK_IN_INSTRUCTIONS, IDLE_GOODBYE_INSTRUCTIONS};
    let mut p = Pair::new(
        idle_agent(Duration::from_secs(5), Some(Duration::from_secs(10))),
        IDLE,
        Netem::default(),
    );
    p.run_until(Duration::from_secs(120));
    let check_ins = p.responses_with(CHECK_IN_INSTRUCTIONS);
    assert_eq!(check_ins.len(), 1, "one check-in");
    // 5 s of silence after the greeting was played.
    let quiet = check_ins[0].saturating_duration_since(p.last_rtp_before(check_ins[0]));
    assert!(
        (ms(4_950)..=ms(5_100)).contains(&quiet),
        "check-in after {quiet:?} of silence"
    );
    let goodbyes = p.responses_with(IDLE_GOODBYE_INSTRUCTIONS);
    assert_eq!(goodbyes.len(), 1, "one goodbye");
    // 10 s more of silence after the check-in was spoken.
    let quiet = goodbyes[0].saturating_duration_since(p.last_rtp_before(goodbyes[0]));
    assert!(
        (ms(9_950)..=ms(10_100)).contains(&quiet),
        "goodbye after {quiet:?} of silence"
    );
    assert!(
        p.rtp_sent.iter().any(|&t| t > goodbyes[0]),
        "the goodbye is spoken"
    );
    let (ended_at, reason) = p.ended.clone().expect("the call ends");
    assert_eq!(reason, EndReason::local(Cause::Idle));
    let last = *p.rtp_sent.last().expect("audio");
    assert!(ended_at >= last && ended_at.saturating_duration_since(last) <= ms(40));
}

#[test]
fn a_caller_who_speaks_is_never_checked_on() {
    use super::core::CHECK_IN_INSTRUCTIONS;
    let mut p = Pair::new(
        idle_agent(Duration::from_secs(5), Some(Duration::from_secs(10))),
        IDLE,
        Netem::default(),
    );
    // A word every 6 s: each answer ends well within 5 s of the next one.
    p.speech = (0..10)
        .map(|i| (Duration::from_secs(3 + 6 * i), ms(3_800 + 6_000 * i)))
        .collect();
    p.run_until(Duration::from_secs(62));
    assert!(p.responses_with(CHECK_IN_INSTRUCTIONS).is_empty());
    assert!(p.ended.is_none());
}

/// Noise the VAD calls speech but that never gives a transcript counts as silence: the check-in
/// comes at most `prompt` after the noise started, and the caller is hung up on as idle.
#[test]
fn continuous_noise_without_words_counts_as_silence() {
    use super::core::CHECK_IN_INSTRUCTIONS;
    let mut p = Pair::new(
        idle_agent(Duration::from_secs(5), Some(Duration::from_secs(10))),
        IDLE,
        Netem::default(),
    );
    p.speech = vec![(Duration::from_secs(3), Duration::from_secs(600))];
    p.run_until(Duration::from_secs(120));
    let check_ins = p.responses_with(CHECK_IN_INSTRUCTIONS);
    assert_eq!(check_ins.len(), 1, "one check-in");
    let at = check_ins[0].saturating_duration_since(p.t0);
    assert!(at <= Duration::from_secs(9), "check-in at {at:?}");
    let (_, reason) = p.ended.clone().expect("the call ends");
    assert_eq!(reason, EndReason::local(Cause::Idle));
}
