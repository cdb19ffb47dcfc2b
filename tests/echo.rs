//! End to end: line echo (issue 15, "Echo"). `tests/echo_caller.py` is a caller whose line returns
//! frontdesk's own audio, attenuated and delayed, for the whole call; the session is
//! `frontdesk sim`, whose energy VAD hears that echo like the real service does. With the echo
//! gate (the default) the echo neither interrupts the agent nor becomes a caller turn, while a
//! caller speaking over the agent still barges in at once; with `echo_gate = false` the echo
//! reaches the session byte-exact and interrupts the agent.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// An echoing line: `frontdesk sim` with `tests/scenarios/{scenario}`, frontdesk on it (the agent
/// `tester` with greeting "Hello." and the agent's `extra` TOML lines), and the caller's "Okay."
/// as a µ-law file. Fields drop in order: frontdesk, the simulator, then the directory.
struct Line {
    serve: Serve,
    sim: Sim,
    /// Path of the caller's utterance (raw µ-law, 8 kHz).
    utterance: String,
    dir: TestDir,
}

impl Line {
    fn start(name: &str, scenario: &str, extra: &str) -> Line {
        let dir = TestDir::new(name);
        let (ul, _) = speech(&dir, "okay", "Okay.");
        let utterance = dir.join("okay.ul");
        std::fs::write(&utterance, &ul).expect("write");
        let sim = Sim::start_scenario(&dir, scenario);
        let plans = agent_dialplan(&dir, "Hello.", extra);
        let serve = Serve::start(&dir, &plans, &["--realtime-url", &sim.url()]);
        Line {
            serve,
            sim,
            utterance: utterance.to_string_lossy().into_owned(),
            dir,
        }
    }

    /// Runs `tests/echo_caller.py` against this line, which returns the agent's audio `erl_db`
    /// dB down and `delay_ms` late; the caller says the utterance `turns` times; `args` are
    /// further flags of the caller.
    fn call(&self, erl_db: &str, delay_ms: &str, turns: &str, args: &[&str]) -> EchoRun {
        let mut all = vec![
            "--erl-db",
            erl_db,
            "--delay-ms",
            delay_ms,
            "--utterance",
            &self.utterance,
            "--turns",
            turns,
        ];
        all.extend_from_slice(args);
        echo_caller(&self.dir, self.serve.sip, &all)
    }
}

/// What the echo caller did and heard.
struct EchoRun {
    /// Every payload it sent, in order.
    sent: Vec<Vec<u8>>,
    /// `[start, end]` of each agent reply it heard, s.
    replies: Vec<Value>,
    /// `[start, end]` of each of its own utterances, s.
    spoke: Vec<Value>,
    /// Wall-clock time of its time 0, s since the epoch.
    epoch: f64,
}

fn echo_caller(dir: &TestDir, sip: std::net::SocketAddr, args: &[&str]) -> EchoRun {
    let out_file = dir.join("echo-caller.json");
    let out = Command::new("python3")
        .arg(Path::new(ROOT).join("tests/echo_caller.py"))
        .arg("--sip")
        .arg(sip.to_string())
        .arg("--out")
        .arg(&out_file)
        .args(args)
        .output()
        .expect("run python3 tests/echo_caller.py");
    assert!(
        out.status.success(),
        "the echo caller failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(&out_file).expect("caller output"))
            .expect("caller JSON");
    let hex = |s: &str| {
        (0..s.len() / 2)
            .filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
            .collect::<Vec<u8>>()
    };
    EchoRun {
        sent: v["sent"]
            .as_array()
            .map(|a| a.iter().map(|s| hex(s.as_str().unwrap_or(""))).collect())
            .unwrap_or_default(),
        replies: v["replies"].as_array().cloned().unwrap_or_default(),
        spoke: v["spoke"].as_array().cloned().unwrap_or_default(),
        epoch: v["epoch"].as_f64().unwrap_or_default(),
    }
}

/// The echo columns of the call's row: gated frames, false and true barge-ins.
fn echo_row(db: &Path) -> (i64, i64, i64) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = frontdesk::store::Store::open(db).await.expect("open db");
        sqlx::query_as(
            "SELECT echo_gated_frames, false_barge_ins, true_barge_ins
             FROM calls ORDER BY id DESC LIMIT 1",
        )
        .fetch_one(store.pool())
        .await
        .expect("the call's row")
    })
}

/// Caller frames the relay concealed (lost or late), from the call's row.
fn concealed_frames(db: &Path) -> usize {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = frontdesk::store::Store::open(db).await.expect("open db");
        let (n,): (i64,) =
            sqlx::query_as("SELECT concealed_frames FROM calls ORDER BY id DESC LIMIT 1")
                .fetch_one(store.pool())
                .await
                .expect("the call's row");
        usize::try_from(n).unwrap_or(0)
    })
}

/// `turn_detection.interrupt_response` of the session's (first) `session.update`.
fn interrupt_response(client: &[Value]) -> Value {
    client
        .iter()
        .find(|e| e["type"] == "session.update")
        .map(|e| e["session"]["audio"]["input"]["turn_detection"]["interrupt_response"].clone())
        .unwrap_or_default()
}

/// Counts the server events of `ty`.
fn count(events: &[Value], ty: &str) -> usize {
    events.iter().filter(|e| e["type"] == ty).count()
}

/// Responses that did not complete (cancelled by a barge-in: the server's `turn_detected`).
fn interrupted(events: &[Value]) -> usize {
    events
        .iter()
        .filter(|e| e["type"] == "response.done")
        .filter(|e| e["response"]["status"] == "cancelled")
        .count()
}

/// The caller, on a line that returns the agent 12 dB down and 200 ms late, answers 19 times:
/// over 20 agent replies (the greeting and 19 answers) nothing interrupts the agent, and the
/// session's caller turns are exactly the caller's 19 utterances, none made of echo.
#[test]
fn line_echo_neither_interrupts_the_agent_nor_becomes_a_caller_turn() {
    let mut line = Line::start("echo-gated", "echo.toml", "");
    let run = line.call("12", "200", "19", &[]);
    line.serve.proc.terminate(Duration::from_secs(15));
    let server = read_jsonl(&line.sim.record_server);
    let client = read_jsonl(&line.sim.record);
    let (gated, false_barge_ins, true_barge_ins) = echo_row(&line.serve.db);
    eprintln!(
        "{} replies heard, {} utterances; {} speech_started, {} committed, {} interrupted; \
         row: {gated} gated frames, {false_barge_ins} false and {true_barge_ins} true barge-ins",
        run.replies.len(),
        run.spoke.len(),
        count(&server, "input_audio_buffer.speech_started"),
        count(&server, "input_audio_buffer.committed"),
        interrupted(&server),
    );
    assert_eq!(run.spoke.len(), 19, "the caller could not answer 19 times");
    assert!(run.replies.len() >= 20, "{} replies", run.replies.len());
    assert_eq!(interrupted(&server), 0, "a reply was interrupted");
    assert_eq!(count(&client, "conversation.item.truncate"), 0);
    assert_eq!(count(&client, "response.cancel"), 0);
    assert_eq!(
        count(&server, "input_audio_buffer.committed"),
        19,
        "caller turns made of echo"
    );
    assert_eq!(count(&server, "input_audio_buffer.speech_started"), 19);
    assert_eq!(false_barge_ins, 0);
    assert!(gated > 200, "{gated} frames gated");
    // With the gate, frontdesk decides interruptions, not the session.
    assert_eq!(interrupt_response(&client), false);
}

/// The same line with `echo_gate = false`: the caller's audio (its echo included) reaches the
/// session byte-exact, and the simulator's VAD takes the echo for the caller (the test above
/// would fail): replies are interrupted by the agent's own voice.
#[test]
fn without_the_echo_gate_the_echo_reaches_the_session_byte_exact_and_interrupts() {
    let mut line = Line::start("echo-off", "echo.toml", "echo_gate = false");
    let run = line.call("12", "200", "3", &["--max-s", "40"]);
    line.serve.proc.terminate(Duration::from_secs(15));
    let server = read_jsonl(&line.sim.record_server);
    let client = read_jsonl(&line.sim.record);
    // Without the gate the session cancels on speech itself, as before issue 15.
    assert_eq!(interrupt_response(&client), true);
    let appended = appended_audio(&client);
    let (gated, false_barge_ins, _) = echo_row(&line.serve.db);
    eprintln!(
        "{} frames sent, {} appended; {} speech_started, {} interrupted; {false_barge_ins} false barge-ins",
        run.sent.len(),
        appended.len() / 160,
        count(&server, "input_audio_buffer.speech_started"),
        interrupted(&server),
    );
    // Byte-exact: every frame the caller sent (but the last ones, which may follow the BYE's
    // teardown) is in the session's input at its place, unchanged; only a packet the relay had
    // to conceal (it came too late on this loaded machine) may be G.711 silence instead.
    let sent = &run.sent[..run.sent.len().saturating_sub(25)];
    assert!(sent.len() > 500, "only {} frames sent", run.sent.len());
    let silence = [0xFFu8; 160];
    let j = (0..sent.len())
        .find(|&j| sent[j] != silence && sent.iter().filter(|f| **f == sent[j]).count() == 1)
        .expect("a distinctive frame");
    let start = find(&appended, &sent[j])
        .and_then(|p| p.checked_sub(j * 160))
        .expect("the caller's audio reached the session");
    let mut replaced = 0;
    for (k, f) in sent.iter().enumerate() {
        let got = appended
            .get(start + k * 160..start + (k + 1) * 160)
            .unwrap_or_else(|| panic!("the session got only {k} of {} frames", sent.len()));
        if got != &f[..] {
            assert_eq!(got, silence, "frame {k} was altered");
            replaced += 1;
        }
    }
    let concealed = concealed_frames(&line.serve.db);
    eprintln!("{replaced} frames concealed as late or lost (the row: {concealed})");
    assert!(
        replaced <= concealed,
        "{replaced} frames replaced, {concealed} concealed"
    );
    assert!(
        replaced * 50 <= sent.len(),
        "{replaced} of {} frames replaced",
        sent.len()
    );
    assert_eq!(gated, 0);
    assert!(
        interrupted(&server) > 0,
        "the simulator's VAD did not hear the echo: the echo test proves nothing"
    );
    assert!(false_barge_ins > 0, "the gate did not classify the echo");
}

/// On the echoing line, the caller speaks over the agent's third reply (still being generated) at
/// a normal level: the simulator's VAD hears it, and on the wire the agent's audio stops within
/// 100 ms of its `speech_started`; frontdesk cancels the reply itself; the call's row counts true
/// barge-ins and no false one, and the session reported no error (frontdesk cancels only a
/// response in progress).
#[test]
fn a_caller_speaking_over_the_agent_on_an_echoing_line_still_barges_in() {
    let mut line = Line::start("echo-barge-in", "echo_barge_in.toml", "");
    let (barge, _) = speech(
        &line.dir,
        "barge",
        "Sorry to interrupt, I only need your opening hours.",
    );
    let barge_file = line.dir.join("barge.ul");
    std::fs::write(&barge_file, &barge).expect("write");
    let rtp_port = free_port();
    let sim_port = line.sim.addr.port();
    let capture = Capture::start_filter(
        &line.dir,
        "echo-barge-in",
        &format!("udp dst port {rtp_port} or tcp src port {sim_port}"),
    );
    let barge_file = barge_file.to_string_lossy().into_owned();
    let port_arg = rtp_port.to_string();
    let run = line.call(
        "14",
        "150",
        "2",
        &[
            "--rtp-port",
            &port_arg,
            "--barge-in-reply",
            "3",
            "--barge-audio",
            &barge_file,
            "--barge-after-ms",
            "500",
        ],
    );
    let pcap = capture.finish();
    line.serve.proc.terminate(Duration::from_secs(15));
    let client = read_jsonl(&line.sim.record);
    let (_, false_barge_ins, true_barge_ins) = echo_row(&line.serve.db);
    let barge_at = run.epoch
        + run
            .spoke
            .last()
            .and_then(|s| s[0].as_f64())
            .expect("the caller barged in");
    let started = tcp_text_times(&pcap, sim_port, "input_audio_buffer.speech_started");
    let speech_started = *started
        .iter()
        .find(|&&t| t >= barge_at - 0.05)
        .unwrap_or_else(|| panic!("no speech_started after the barge-in: {started:?}"));
    let rtp = read_rtp(&pcap, rtp_port);
    let audio_after: Vec<f64> = rtp
        .iter()
        .filter(|p| p.time > speech_started && p.time < speech_started + 1.0)
        .filter(|p| p.payload.iter().any(|&b| b != 0xFF))
        .map(|p| (p.time - speech_started) * 1000.0)
        .collect();
    eprintln!(
        "speech_started {:.0} ms after the caller started; agent audio after it at {audio_after:.1?} ms; \
         {false_barge_ins} false, {true_barge_ins} true barge-ins",
        (speech_started - barge_at) * 1000.0
    );
    assert!(
        audio_after.iter().all(|&ms| ms <= 100.0),
        "the agent's RTP went on after speech_started: {audio_after:.1?} ms"
    );
    assert!(
        speech_started - barge_at < 1.0,
        "the simulator heard the caller {:.0} ms late",
        (speech_started - barge_at) * 1000.0
    );
    assert!(count(&client, "conversation.item.truncate") >= 1);
    // The caller may also speak over the answer to the first half of its sentence: more than one
    // true barge-in is fine, a false one is not.
    assert_eq!(false_barge_ins, 0);
    assert!(true_barge_ins >= 1);
    // Frontdesk decided (interrupt_response = false): it cancelled the reply the caller spoke
    // over, still being generated, itself (the session cancels nothing on speech), and only
    // responses that were in progress: no `response_cancel_not_active`, no other error.
    assert_eq!(interrupt_response(&client), false);
    let server = read_jsonl(&line.sim.record_server);
    let reasons: Vec<&str> = server
        .iter()
        .filter(|e| e["type"] == "response.done" && e["response"]["status"] == "cancelled")
        .map(|e| {
            e["response"]["status_details"]["reason"]
                .as_str()
                .unwrap_or_default()
        })
        .collect();
    eprintln!(
        "{} response.cancel sent; cancelled responses: {reasons:?}",
        count(&client, "response.cancel")
    );
    assert!(count(&client, "response.cancel") >= 1);
    assert!(!reasons.is_empty() && reasons.iter().all(|r| *r == "client_cancelled"));
    let errors: Vec<&Value> = server.iter().filter(|e| e["type"] == "error").collect();
    assert!(
        errors.is_empty(),
        "the simulator reported errors: {errors:?}"
    );
}
