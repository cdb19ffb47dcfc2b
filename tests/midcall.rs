//! Mid-call signalling and the model's call-control tools against SIPp: hold and resume by
//! re-INVITE, RFC 4028 session timers (refresh, 422, expiry), blind transfer by REFER with NOTIFY
//! sipfrag (success and failure), `end_call` hanging up after the goodbye, and media that keeps
//! flowing both ways while a REFER waits 3 s for its 202 or a tool takes 3 s.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const DIALPLAN: &str = r#"
[[routes]]
name = "all"
to = "*"
agent = "desk"

[agents.desk]
voice = "marin"
greeting = "Thank you for calling the test desk. How can I help you today?"
instructions = "You are a test receptionist."
tools = ["transfer_call", "end_call"]

[agents.desk.transfers]
staff = "sip:staff@127.0.0.1:5999"
"#;

/// A dialplan directory with one agent that may transfer (to `staff`) and end calls.
fn dialplan(dir: &TestDir) -> PathBuf {
    write_dialplan(dir, "default.toml", DIALPLAN)
}

fn scenario(dir: &TestDir, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write scenario");
    p
}

fn config(dir: &TestDir, min_se: u32) -> PathBuf {
    let p = dir.join("frontdesk.toml");
    std::fs::write(&p, format!("[sip]\nmin_session_expires_secs = {min_se}\n")).expect("config");
    p
}

fn end_reason(serve: &Serve) -> Option<String> {
    ended_calls(&serve.db, 1)
        .first()
        .and_then(|r| r.end_reason.clone())
}

fn run(
    dir: &TestDir,
    serve: &Serve,
    scenario: &str,
    hold_ms: u64,
    keys: &[(&str, &str)],
) -> (SippRun, u16) {
    let media = free_port();
    let mut cmd = sipp_command(dir, scenario, serve.sip, media, hold_ms, false);
    for (k, v) in keys {
        cmd.arg("-key").arg(k).arg(v);
    }
    let out = cmd.output().expect("sipp");
    let run = sipp_result(dir, scenario, out);
    assert!(
        run.success,
        "{scenario} failed:\n{}\n---- frontdesk ----\n{}",
        run.output,
        serve.proc.log_text()
    );
    (run, media)
}

/// Epoch times of SIP requests with `method` sent to or from `sip_port`, from a capture.
fn sip_times(pcap: &Path, sip_port: u16, method: &str) -> Vec<f64> {
    sip_times_where(pcap, sip_port, &format!("sip.Method == \"{method}\""))
}

/// Epoch times of the SIP messages to or from `sip_port` that match the display `filter`.
fn sip_times_where(pcap: &Path, sip_port: u16, filter: &str) -> Vec<f64> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .arg("-d")
        .arg(format!("udp.port=={sip_port},sip"))
        .arg("-Y")
        .arg(filter)
        .args(["-T", "fields", "-e", "frame.time_epoch"])
        .output()
        .expect("tshark");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn hold_stops_our_rtp_and_resume_restarts_it() {
    let dir = TestDir::new("hold");
    speech(
        &dir,
        "audio",
        "Hello, I would like to know your opening hours please.",
    );
    let sim = Sim::start(&dir, None);
    let serve = Serve::start(&dir, &dialplan(&dir), &["--realtime-url", &sim.url()]);
    let media = free_port();
    let cap = Capture::start_filter(
        &dir,
        "hold",
        &format!("udp port {media} or udp port {}", serve.sip.port()),
    );
    let out = sipp_command(&dir, "uac_hold_resume.xml", serve.sip, media, 6000, false)
        .output()
        .expect("sipp");
    let run = sipp_result(&dir, "uac_hold_resume.xml", out);
    let pcap = cap.finish();
    assert!(run.success, "{}\n{}", run.output, serve.proc.log_text());
    let invites = sip_times(&pcap, serve.sip.port(), "INVITE");
    assert!(invites.len() >= 3, "{invites:?}");
    let (hold, resume) = (invites[1], invites[2]);
    let rtp = read_rtp(&pcap, media);
    let before = rtp.iter().filter(|p| p.time < hold).count();
    let during = rtp
        .iter()
        .filter(|p| p.time > hold + 0.1 && p.time < resume)
        .count();
    let after = rtp.iter().filter(|p| p.time > resume + 0.1).count();
    assert!(before > 10, "no greeting RTP before the hold ({before})");
    assert_eq!(during, 0, "frontdesk sent RTP while held");
    assert!(after > 10, "no RTP after the resume ({after})");
    let log = serve.proc.log_text();
    assert!(
        log.contains("call put on hold") && log.contains("call resumed"),
        "{log}"
    );
    assert_eq!(end_reason(&serve).as_deref(), Some("remote-bye"));
}

#[test]
fn session_timer_is_echoed_refreshed_and_too_small_gets_422() {
    let dir = TestDir::new("session-timer");
    let sim = Sim::start(&dir, None);
    let serve = Serve::start(&dir, &dialplan(&dir), &["--realtime-url", &sim.url()]);
    run(&dir, &serve, "uac_session_timer.xml", 0, &[("se", "90")]);
    run(&dir, &serve, "invite_expect_422.xml", 0, &[]);
    drop(serve);
    // With a 2 s minimum, a 3 s interval expires after 2 s: the UPDATEs every 1.2 s keep it up.
    let dir = TestDir::new("session-timer-short");
    let serve = Serve::start(
        &dir,
        &dialplan(&dir),
        &[
            "--realtime-url",
            &sim.url(),
            "--config",
            config(&dir, 2).to_str().unwrap(),
        ],
    );
    run(&dir, &serve, "uac_session_timer.xml", 0, &[("se", "3")]);
    assert_eq!(end_reason(&serve).as_deref(), Some("remote-bye"));
}

#[test]
fn an_unrefreshed_session_is_ended_with_bye() {
    let dir = TestDir::new("session-expire");
    let sim = Sim::start(&dir, None);
    let serve = Serve::start(
        &dir,
        &dialplan(&dir),
        &[
            "--realtime-url",
            &sim.url(),
            "--rtp-timeout",
            "60",
            "--config",
            config(&dir, 2).to_str().unwrap(),
        ],
    );
    let started = Instant::now();
    run(&dir, &serve, "uac_session_expire.xml", 0, &[("se", "3")]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(end_reason(&serve).as_deref(), Some("session-expired"));
}

const TRANSFER_SCENARIO: &str = r#"
greeting = "Thank you for calling the test desk."

[[turn]]
heard = "Can I talk to a person?"
call = { name = "transfer_call", arguments = { target = "staff" } }
say = "I am sorry, I could not transfer you."

[fallback]
say = "Anything else?"
"#;

#[test]
fn transfer_call_refers_and_hangs_up_on_notify_200() {
    let dir = TestDir::new("transfer-ok");
    speech(&dir, "audio", "Hello, can I talk to a person please?");
    let sim = Sim::start(
        &dir,
        Some(&scenario(&dir, "transfer.toml", TRANSFER_SCENARIO)),
    );
    let serve = Serve::start(&dir, &dialplan(&dir), &["--realtime-url", &sim.url()]);
    run(&dir, &serve, "uac_refer_ok.xml", 0, &[]);
    assert_eq!(end_reason(&serve).as_deref(), Some("transferred"));
}

#[test]
fn a_failed_transfer_is_reported_to_the_model_and_the_call_stays_up() {
    let dir = TestDir::new("transfer-503");
    speech(&dir, "audio", "Hello, can I talk to a person please?");
    let sim = Sim::start(
        &dir,
        Some(&scenario(&dir, "transfer.toml", TRANSFER_SCENARIO)),
    );
    let serve = Serve::start(&dir, &dialplan(&dir), &["--realtime-url", &sim.url()]);
    run(&dir, &serve, "uac_refer_503.xml", 3000, &[]);
    assert_eq!(end_reason(&serve).as_deref(), Some("remote-bye"));
    let events = std::fs::read_to_string(&sim.record).unwrap_or_default();
    assert!(
        events.contains("transfer_failed") && events.contains("503"),
        "the model was not told that the transfer failed:\n{events}"
    );
}

const END_SCENARIO: &str = r#"
greeting = "Thank you for calling the test desk."

[[turn]]
heard = "That is all, thank you."
call = { name = "end_call", arguments = { reason = "caller said goodbye" } }
say = "You are welcome. Thank you for calling, and have a wonderful day. Goodbye!"
"#;

#[test]
fn end_call_hangs_up_after_the_goodbye_has_played() {
    let dir = TestDir::new("end-call");
    speech(&dir, "audio", "That is all, thank you very much.");
    let sim = Sim::start(&dir, Some(&scenario(&dir, "end.toml", END_SCENARIO)));
    let serve = Serve::start(&dir, &dialplan(&dir), &["--realtime-url", &sim.url()]);
    let media = free_port();
    let cap = Capture::start_filter(
        &dir,
        "end",
        &format!("udp port {media} or udp port {}", serve.sip.port()),
    );
    let out = sipp_command(&dir, "uac_end_call.xml", serve.sip, media, 0, false)
        .output()
        .expect("sipp");
    let run = sipp_result(&dir, "uac_end_call.xml", out);
    let pcap = cap.finish();
    assert!(run.success, "{}\n{}", run.output, serve.proc.log_text());
    let bye = sip_times(&pcap, serve.sip.port(), "BYE");
    assert_eq!(bye.len(), 1, "{bye:?}");
    let rtp = read_rtp(&pcap, media);
    let last = rtp.iter().map(|p| p.time).fold(0.0, f64::max);
    assert!(last > 0.0, "no RTP from frontdesk");
    assert!(
        last <= bye[0],
        "RTP after the BYE: last {last}, BYE {}",
        bye[0]
    );
    // The goodbye (several seconds of speech) went out before the BYE.
    let goodbye = rtp.iter().filter(|p| p.time > bye[0] - 2.0).count();
    assert!(
        goodbye > 50,
        "the goodbye did not play right before the BYE ({goodbye} packets)"
    );
    assert_eq!(
        end_reason(&serve).as_deref(),
        Some("end_call: caller said goodbye")
    );
}

/// A long spoken preamble (about 11 s of the simulator's voice, delivered in about 2 s), so the
/// agent is still talking for seconds after the function call that follows it.
const LONG_PREAMBLE: &str =
    "Certainly. While I look into that for you, let me mention that we are open \
Monday to Friday from eight in the morning to five in the afternoon, and parking is free.";

/// Writes the caller's audio as `audio.ul`: `sentence` spoken, then `quiet_s` seconds of quiet
/// noise (about -50 dBFS: below the simulator's speech level, so no second turn and no barge-in,
/// but every frame different, so the relay can be checked byte for byte). Returns the audio.
fn caller_audio(dir: &TestDir, sentence: &str, quiet_s: u32) -> Vec<u8> {
    let (mut ul, _) = speech(dir, "speech", sentence);
    let quiet = dir.join("quiet.ul");
    let st = Command::new("sox")
        .args(["-n", "-r", "8000", "-c", "1", "-t", "ul"])
        .arg(&quiet)
        .args(["synth", &quiet_s.to_string(), "whitenoise", "vol", "0.005"])
        .status()
        .expect("sox");
    assert!(st.success(), "sox failed");
    ul.extend(std::fs::read(&quiet).expect("read quiet noise"));
    std::fs::write(dir.join("audio.ul"), &ul).expect("write audio");
    ul
}

/// What the wire showed while a slow side effect ran (`from`..`to`, UNIX seconds).
struct Window {
    /// Longest interval between frontdesk's RTP packets to the caller, s.
    rtp_gap: f64,
    /// RTP packets to the caller, and how many of them carried speech (not one repeated byte).
    rtp_packets: usize,
    rtp_speech: usize,
    /// Longest interval between frontdesk's WebSocket writes to the simulator, s.
    ws_gap: f64,
    /// The payloads of the caller's RTP packets sent in the window, in order.
    caller_audio: Vec<u8>,
}

impl Window {
    fn of(pcap: &Path, media: u16, sim_port: u16, from: f64, to: f64) -> Window {
        let inside = |t: f64| t >= from && t <= to;
        let to_caller: Vec<RtpRecord> = read_rtp(pcap, media)
            .into_iter()
            .filter(|p| inside(p.time))
            .collect();
        let times: Vec<f64> = to_caller.iter().map(|p| p.time).collect();
        let caller_audio = read_rtp_from(pcap, media)
            .into_iter()
            .filter(|p| inside(p.time))
            .flat_map(|p| p.payload)
            .collect();
        Window {
            rtp_gap: longest_gap(&times, from, to),
            rtp_packets: to_caller.len(),
            rtp_speech: to_caller
                .iter()
                .filter(|p| p.payload.iter().any(|&b| b != p.payload[0]))
                .count(),
            ws_gap: longest_gap(&tcp_payload_times(pcap, sim_port), from, to),
            caller_audio,
        }
    }

    /// Asserts what a caller and the model would notice: the agent's audio kept coming at 20 ms
    /// spacing (no gap over 200 ms, at least 80 % of the packets), it was speech, and frontdesk
    /// kept writing to the session (no pause over 200 ms) the caller's audio of the window, byte
    /// for byte, inside `appended`.
    fn assert_media_flowed(&self, what: &str, seconds: f64, appended: &[u8]) {
        eprintln!(
            "{what} ({seconds:.2} s): {} RTP packets to the caller ({} speech), longest RTP gap \
             {:.0} ms, longest pause in writes to the session {:.0} ms, {} caller bytes",
            self.rtp_packets,
            self.rtp_speech,
            self.rtp_gap * 1000.0,
            self.ws_gap * 1000.0,
            self.caller_audio.len()
        );
        assert!(
            self.rtp_gap < 0.2,
            "{what}: frontdesk's RTP to the caller paused {:.0} ms",
            self.rtp_gap * 1000.0
        );
        let expected = seconds / 0.02;
        assert!(
            self.rtp_packets as f64 > 0.8 * expected,
            "{what}: only {} RTP packets to the caller in {seconds:.1} s",
            self.rtp_packets
        );
        assert!(
            self.rtp_speech * 2 > self.rtp_packets,
            "{what}: the agent was not talking ({} of {} packets carried speech)",
            self.rtp_speech,
            self.rtp_packets
        );
        assert!(
            self.ws_gap < 0.2,
            "{what}: frontdesk wrote nothing to the session for {:.0} ms",
            self.ws_gap * 1000.0
        );
        assert!(
            self.caller_audio.len() as f64 > 0.8 * expected * 160.0,
            "{what}: the caller sent only {} bytes",
            self.caller_audio.len()
        );
        if let Err(e) = relayed_exactly(appended, &self.caller_audio) {
            panic!("{what}: the caller's audio did not reach the session unchanged: {e}");
        }
    }
}

/// One call of the slow-side-effect tests: the simulator plays `scenario_text`, SIPp runs `sipp` (hold `hold_ms`), and the SIP, RTP and
/// WebSocket traffic is captured.
struct SlowCall {
    _dir: TestDir,
    sim: Sim,
    serve: Serve,
    media: u16,
    pcap: PathBuf,
}

impl SlowCall {
    fn run(
        dir: TestDir,
        scenario_text: &str,
        serve: impl FnOnce(&TestDir, &Sim) -> Serve,
        sipp: &str,
        hold_ms: u64,
    ) -> SlowCall {
        let sim = Sim::start(&dir, Some(&scenario(&dir, "slow.toml", scenario_text)));
        let serve = serve(&dir, &sim);
        let media = free_port();
        let filter = format!(
            "udp port {media} or udp port {} or tcp port {}",
            serve.sip.port(),
            sim.addr.port()
        );
        let cap = Capture::start_filter(&dir, "slow", &filter);
        let out = sipp_command(&dir, sipp, serve.sip, media, hold_ms, false)
            .output()
            .expect("sipp");
        let run = sipp_result(&dir, sipp, out);
        let pcap = cap.finish();
        assert!(run.success, "{}\n{}", run.output, serve.proc.log_text());
        SlowCall {
            _dir: dir,
            sim,
            serve,
            media,
            pcap,
        }
    }

    fn window(&self, from: f64, to: f64) -> Window {
        Window::of(&self.pcap, self.media, self.sim.addr.port(), from, to)
    }
}

/// The simulator's scenario of a slow-side-effect test: a greeting, then one caller turn answered
/// with [`LONG_PREAMBLE`], the function call `call` (a TOML inline table) and, after its
/// output, `say`.
fn slow_scenario(call: &str, say: &str) -> String {
    format!(
        "greeting = \"Thank you for calling the test desk.\"\n\n\
         [[turn]]\npreamble = \"{LONG_PREAMBLE}\"\ncall = {call}\nsay = \"{say}\"\n\n\
         [fallback]\nsay = \"Anything else?\"\n"
    )
}

/// The model transfers the call while its long preamble is playing, and the transferee's 202
/// leaves 3 s after the REFER: all that time the caller keeps hearing the agent (RTP every 20 ms)
/// and the caller's audio keeps reaching the session; then the transfer completes as usual.
#[test]
fn media_keeps_flowing_while_a_refer_waits_3_s_for_its_202() {
    let dir = TestDir::new("late-202");
    caller_audio(&dir, "Hello, can I talk to a person please?", 16);
    let start = |dir: &TestDir, sim: &Sim| {
        Serve::start(dir, &dialplan(dir), &["--realtime-url", &sim.url()])
    };
    let text = slow_scenario(
        r#"{ name = "transfer_call", arguments = { target = "staff" } }"#,
        "I am sorry, I could not transfer you.",
    );
    let call = SlowCall::run(dir, &text, start, "uac_refer_late_202.xml", 0);
    assert_eq!(end_reason(&call.serve).as_deref(), Some("transferred"));
    let sip = call.serve.sip.port();
    let refer = sip_times(&call.pcap, sip, "REFER");
    let accepted = sip_times_where(&call.pcap, sip, "sip.Status-Code == 202");
    assert!(
        !refer.is_empty() && accepted.len() == 1,
        "{refer:?} {accepted:?}"
    );
    let (from, to) = (refer[0], accepted[0]);
    assert!(to - from > 2.9, "the 202 was not late: {:.3} s", to - from);
    let appended = appended_audio(&read_jsonl(&call.sim.record));
    call.window(from, to).assert_media_flowed(
        "while the REFER waited for its 202",
        to - from,
        &appended,
    );
}

/// Milliseconds the fault hook adds to every tool call in the slow-tool test.
const SLOW_TOOL_MS: &str = "3000";

/// The model calls a tool that takes 3 s (debug-build fault hook `FRONTDESK_FAULT_TOOL_DELAY_MS`)
/// while its long preamble is playing: all that time the caller keeps hearing the agent (RTP
/// every 20 ms) and the caller's audio keeps reaching the session, before the tool's output.
#[test]
fn media_keeps_flowing_while_a_tool_takes_3_s() {
    let dir = TestDir::new("slow-tool");
    caller_audio(&dir, "Hello, I would like to book a cleaning, please.", 18);
    let start = |dir: &TestDir, sim: &Sim| {
        let calendar = Path::new(ROOT).join("deploy/calendar.example.toml");
        let calendar = calendar.to_str().expect("path");
        let args = ["--realtime-url", &sim.url(), "--calendar", calendar];
        let fault = [("FRONTDESK_FAULT_TOOL_DELAY_MS", SLOW_TOOL_MS)];
        Serve::start_env(dir, &booking_dialplan(dir, false), &args, &fault)
    };
    let text = slow_scenario(
        r#"{ name = "check_availability", arguments = { service = "cleaning" } }"#,
        "The first free slot is {output.slots[0].start}.",
    );
    let call = SlowCall::run(dir, &text, start, "uac_talk.xml", 18_000);
    let log = call.serve.proc.log_text();
    // The tool call left the simulator at `from`; the response after its output started at `to`.
    let sim_port = call.sim.addr.port();
    let calls = tcp_text_times(
        &call.pcap,
        sim_port,
        "response.function_call_arguments.done",
    );
    assert_eq!(calls.len(), 1, "{calls:?}");
    let from = calls[0];
    let to = tcp_text_times(&call.pcap, sim_port, "response.created")
        .into_iter()
        .find(|&t| t > from)
        .unwrap_or_else(|| panic!("no response after the tool\n{log}"));
    assert!(to - from > 2.9, "the tool was not slow: {:.3} s", to - from);
    // The caller's audio of the window reached the session before the tool's output did.
    let client = read_jsonl(&call.sim.record);
    let output_at = client
        .iter()
        .position(|e| e["item"]["type"] == "function_call_output")
        .expect("no tool output sent to the session");
    let appended = appended_audio(&client[..output_at]);
    let outputs = tool_outputs(&client);
    assert!(outputs[0]["slots"].is_array(), "{outputs:?}");
    // A margin at the end: the tool's output itself is written just before `to`.
    call.window(from, to - 0.3).assert_media_flowed(
        "while the tool ran",
        to - 0.3 - from,
        &appended,
    );
    assert_eq!(end_reason(&call.serve).as_deref(), Some("remote-bye"));
}
