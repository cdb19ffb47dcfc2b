//! Mid-call signalling and the model's call-control tools against SIPp: hold and resume by
//! re-INVITE, RFC 4028 session timers (refresh, 422, expiry), blind transfer by REFER with NOTIFY
//! sipfrag (success and failure), and `end_call` hanging up after the goodbye.

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
    let d = dir.join("dialplans");
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::write(d.join("default.toml"), DIALPLAN).expect("write dialplan");
    d
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
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .arg("-d")
        .arg(format!("udp.port=={sip_port},sip"))
        .arg("-Y")
        .arg(format!("sip.Method == \"{method}\""))
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
