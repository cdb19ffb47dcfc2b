//! Calls survive trouble on the model side (issue 10), end to end over loopback: SIPp calls
//! through `frontdesk serve` with several model endpoints (`[[realtime.endpoints]]`), some of
//! them refusing (the simulator's `[[sessions]] refuse`) or silent; the agent's
//! `on_model_failure` (a recording, then REFER, or a message the caller leaves).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// A scenario refusing every session with HTTP `status`.
fn refusing_scenario(dir: &TestDir, status: u16) -> PathBuf {
    let path = dir.join(&format!("refuse-{status}.toml"));
    std::fs::write(&path, format!("[[sessions]]\nrefuse = {status}\n")).expect("write");
    path
}

/// A config file whose `[[realtime.endpoints]]` are `(name, url)`, tried in order.
fn config(dir: &TestDir, endpoints: &[(&str, String)]) -> PathBuf {
    let mut text = String::from("[realtime]\nconnect_timeout_secs = 5\n");
    for (name, url) in endpoints {
        text.push_str(&format!(
            "[[realtime.endpoints]]\nname = \"{name}\"\nurl = \"{url}\"\n"
        ));
    }
    text.push_str(&format!(
        "[messages]\ndir = \"{}\"\n",
        dir.join("messages").display()
    ));
    let path = dir.join("frontdesk.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A dialplan with one agent for every number, with extra agent keys.
fn dialplan(dir: &TestDir, agent_keys: &str) -> PathBuf {
    let plans = dir.join("dialplans");
    std::fs::create_dir_all(&plans).expect("mkdir");
    std::fs::write(
        plans.join("plan.toml"),
        format!(
            "[[routes]]\nto = \"*\"\nagent = \"reception\"\n\n[agents.reception]\ninstructions = \"You are a receptionist.\"\ngreeting = \"Hello.\"\n{agent_keys}\n"
        ),
    )
    .expect("write dialplan");
    plans
}

/// A TCP listener that accepts connections and never answers the WebSocket upgrade: an
/// endpoint that is up but hangs.
fn black_hole() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("ws://{}/v1/realtime", l.local_addr().expect("addr"));
    (l, url)
}

fn start(dir: &TestDir, plans: &Path, config: &Path) -> Serve {
    let config = config.to_string_lossy().into_owned();
    Serve::start(dir, plans, &["--config", &config])
}

fn call(dir: &TestDir, serve: &Serve, scenario: &str, media: u16, hold_ms: u64) {
    let run = run_sipp(dir, scenario, serve.sip, media, hold_ms, false);
    assert!(
        run.success,
        "{scenario} failed:\n{}\n---- frontdesk ----\n{}",
        run.output,
        serve.proc.log_text()
    );
}

fn rows_after_stop(serve: &mut Serve) -> Vec<frontdesk::store::CallRow> {
    let status = serve.proc.terminate(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    ended_calls(&serve.db, 1)
}

/// Seconds from the INVITE to the answer of a call row.
fn answer_secs(row: &frontdesk::store::CallRow) -> f64 {
    let t = |s: &Option<String>| {
        chrono::DateTime::parse_from_rfc3339(s.as_deref().expect("time")).expect("rfc3339")
    };
    (t(&row.answered_at) - t(&Some(row.started_at.clone()))).num_milliseconds() as f64 / 1000.0
}

/// Two broken endpoints (one hangs, one refuses with 503) before a working one: the INVITE is
/// answered within 5 s by a session on the third, which gets the call's configuration.
#[test]
fn a_refused_or_hanging_endpoint_fails_over_and_the_invite_is_answered_within_5_s() {
    let dir = TestDir::new("failover");
    let refusing = Sim::start(&dir, Some(&refusing_scenario(&dir, 503)));
    let good_dir = TestDir::new("failover-good");
    let good = Sim::start(&good_dir, None);
    let (_hole, hole_url) = black_hole();
    let cfg = config(
        &dir,
        &[
            ("hanging", hole_url),
            ("refusing", refusing.url()),
            ("good", good.url()),
        ],
    );
    let mut serve = start(&dir, &dialplan(&dir, ""), &cfg);
    call(&dir, &serve, "uac_hangup.xml", free_port(), 1500);
    let log = strip_ansi(&serve.proc.log_text());
    let rows = rows_after_stop(&mut serve);
    assert_eq!(rows[0].sip_status, Some(200), "{log}");
    let secs = answer_secs(&rows[0]);
    assert!(secs < 5.0, "answered after {secs} s\n{log}");
    assert!(
        log.contains("endpoint=hanging") && log.contains("endpoint=refusing"),
        "each failure is logged with its endpoint:\n{log}"
    );
    assert!(log.contains("refused with HTTP 503"), "{log}");
    let updates: Vec<_> = read_jsonl(&good.record)
        .into_iter()
        .filter(|e| e["type"] == "session.update")
        .collect();
    assert_eq!(updates.len(), 1, "the good endpoint configured the call");
    assert!(
        read_jsonl(&refusing.record).is_empty(),
        "no session on the refusing endpoint"
    );
}

/// Every endpoint refuses; the agent's `on_model_failure` plays the shipped recording as RTP and
/// then transfers the caller with REFER.
#[test]
fn with_no_model_the_caller_hears_the_recording_and_is_transferred() {
    let dir = TestDir::new("fallback-transfer");
    speech(&dir, "audio", "Hello, is anybody there?");
    let a = Sim::start(&dir, Some(&refusing_scenario(&dir, 503)));
    let b_dir = TestDir::new("fallback-transfer-b");
    let b = Sim::start(&b_dir, Some(&refusing_scenario(&b_dir, 429)));
    let cfg = config(&dir, &[("a", a.url()), ("b", b.url())]);
    let plans = dialplan(
        &dir,
        "on_model_failure = \"transfer:staff\"\n[agents.reception.transfers]\nstaff = \"sip:staff@pbx.example.com\"\n",
    );
    let mut serve = start(&dir, &plans, &cfg);
    let media = free_port();
    let capture = Capture::start(&dir, media);
    call(&dir, &serve, "uac_refer_ok.xml", media, 0);
    let rtp = capture.stop(media);
    let log = serve.proc.log_text();
    let rows = rows_after_stop(&mut serve);
    assert_eq!(rows[0].end_reason.as_deref(), Some("transferred"), "{log}");
    assert!(
        log.contains("model unavailable: playing the fallback recording"),
        "{log}"
    );
    // The recording, byte for byte (PCMU call, µ-law file), reached the caller as RTP.
    let wav = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("dialplans/sounds/model-unavailable-transfer.wav"),
    )
    .expect("shipped recording");
    let data = &wav[wav.len() - 40_000..wav.len() - 30_000];
    let heard: Vec<u8> = rtp.iter().flat_map(|p| p.payload.clone()).collect();
    assert!(
        find(&heard, data).is_some(),
        "the recording did not reach the caller ({} RTP bytes)\n{log}",
        heard.len()
    );
}

/// Every endpoint refuses; `take_message` plays the prompt, records what the caller says into a
/// WAV file, and `frontdesk messages list` shows it with the caller's number.
#[test]
fn with_no_model_the_caller_leaves_a_message_that_staff_can_list() {
    let dir = TestDir::new("fallback-message");
    let (caller_audio, _) = speech(
        &dir,
        "audio",
        "Hello, this is Anna. Please call me back about my appointment.",
    );
    let a = Sim::start(&dir, Some(&refusing_scenario(&dir, 503)));
    let cfg = config(&dir, &[("only", a.url())]);
    let plans = dialplan(
        &dir,
        "on_model_failure = { action = \"take_message\", max_message_secs = 60 }\n",
    );
    let mut serve = start(&dir, &plans, &cfg);
    // Listen 9 s to the prompt, speak, stay 2 s more, hang up.
    let hold = caller_audio.len() as u64 / 8 + 2000;
    call(&dir, &serve, "uac_leave_message.xml", free_port(), hold);
    let log = serve.proc.log_text();
    let rows = rows_after_stop(&mut serve);
    assert_eq!(rows[0].end_reason.as_deref(), Some("remote-bye"), "{log}");
    let out = Command::new(env!("CARGO_BIN_EXE_frontdesk"))
        .args(["messages", "list", "--json", "--db"])
        .arg(&serve.db)
        .output()
        .expect("messages list");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 1, "{list:?}\n{log}");
    assert_eq!(list[0]["caller"], "+15550001111");
    assert_eq!(list[0]["agent"], "reception");
    let ms = list[0]["duration_ms"].as_i64().unwrap_or_default();
    let spoken = caller_audio.len() as i64 / 8;
    assert!(ms >= spoken, "{ms} ms recorded for {spoken} ms of speech");
    let wav = std::fs::read(list[0]["path"].as_str().expect("path")).expect("the WAV file");
    assert_eq!(&wav[..4], b"RIFF");
    let middle = &caller_audio[caller_audio.len() / 3..caller_audio.len() / 3 + 4000];
    assert!(
        find(&wav, middle).is_some(),
        "the caller's audio is in the message"
    );
    let text = Command::new(env!("CARGO_BIN_EXE_frontdesk"))
        .args(["messages", "list", "--db"])
        .arg(&serve.db)
        .output()
        .expect("messages list");
    assert!(String::from_utf8_lossy(&text.stdout).contains("+15550001111"));
}

/// A caller who says nothing after the greeting: the model is asked to check in after
/// `idle_prompt_secs`, and after `idle_hangup_secs` more the agent says goodbye and frontdesk
/// hangs up with BYE (end reason `idle`).
#[test]
fn a_silent_caller_is_checked_on_and_then_hung_up_on_as_idle() {
    let dir = TestDir::new("idle");
    let sim = Sim::start(&dir, None);
    let cfg = config(&dir, &[("sim", sim.url())]);
    let plans = dialplan(&dir, "idle_prompt_secs = 3\nidle_hangup_secs = 4\n");
    let mut serve = start(&dir, &plans, &cfg);
    let t0 = std::time::Instant::now();
    call(&dir, &serve, "uac_wait_for_bye.xml", free_port(), 0);
    let took = t0.elapsed();
    let log = strip_ansi(&serve.proc.log_text());
    let rows = rows_after_stop(&mut serve);
    assert_eq!(rows[0].end_reason.as_deref(), Some("idle"), "{log}");
    // Greeting (~1 s) + 3 s + the check-in (~3 s) + 4 s + the goodbye: well over 7 s.
    assert!(
        took > Duration::from_secs(7),
        "hung up after {took:?}\n{log}"
    );
    let instructions: Vec<String> = read_jsonl(&sim.record)
        .into_iter()
        .filter(|e| e["type"] == "response.create")
        .map(|e| {
            e["response"]["instructions"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        instructions.len(),
        3,
        "greeting, check-in, goodbye: {instructions:?}"
    );
    assert!(instructions[1].contains("still there"), "{instructions:?}");
    assert!(instructions[2].contains("goodbye"), "{instructions:?}");
    let check_in = log
        .find("asking the model to check in")
        .expect("check-in logged");
    let goodbye = log.find("saying goodbye").expect("goodbye logged");
    assert!(check_in < goodbye);
}
