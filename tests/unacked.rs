//! INVITEs answered 200 that are never ACKed end after 64·T1 with BYE and free their call slots
//! (RFC 3261 §13.3.1.4, issue 12): a flood of un-ACKed INVITEs cannot hold `max_calls`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// Calls at once for this test; the flood is twenty times larger.
const MAX_CALLS: usize = 10;
const FLOOD: usize = 200;

fn config(dir: &TestDir) -> PathBuf {
    let path = dir.join("frontdesk.toml");
    std::fs::write(
        &path,
        format!(
            "[admission]\nmax_calls = {MAX_CALLS}\n\n[[admission.trunks]]\nname = \"flood\"\nallow = [\"127.0.0.1/32\"]\nrate_per_source = 0\n"
        ),
    )
    .expect("write config");
    path
}

#[test]
fn unacked_invites_end_with_bye_after_64_t1_and_free_every_slot() {
    let dir = TestDir::new("unacked");
    let sim = Sim::start(&dir, None);
    let dialplans = Path::new(ROOT).join("dialplans");
    let cfg = config(&dir);
    let serve = Serve::start(
        &dir,
        &dialplans,
        &[
            "--realtime-url",
            &sim.url(),
            "--config",
            cfg.to_str().expect("utf-8 path"),
            // The callers send no RTP; the RTP timeout must not end the calls first.
            "--rtp-timeout",
            "300",
        ],
    );
    let started = Instant::now();
    let mut cmd = sipp_command(&dir, "uac_never_ack.xml", serve.sip, free_port(), 0, false);
    cmd.args(["-m", &FLOOD.to_string(), "-r", "100", "-rp", "1000", "-l"])
        .arg(FLOOD.to_string())
        .args(["-timeout", "90s"]);
    let out = cmd.output().expect("run sipp");
    let run = sipp_result(&dir, "uac_never_ack.xml", out);
    let took = started.elapsed();
    let log = serve.proc.log_text();
    assert!(
        run.success,
        "some un-ACKed call got no BYE (or no answer):\n{}\n---- frontdesk ----\n{}",
        tail(&run.output, 80),
        tail(&log, 80)
    );
    let messages =
        std::fs::read_to_string(dir.join("uac_never_ack.xml.messages.log")).unwrap_or_default();
    let answered = messages.matches("SIP/2.0 200 OK\r\n").count();
    let byes =
        messages.matches("\nBYE sip:").count() + usize::from(messages.starts_with("BYE sip:"));
    let busy = messages.matches("SIP/2.0 503 ").count();
    assert!(answered >= MAX_CALLS, "only {answered} calls were answered");
    assert!(
        busy > 0,
        "no INVITE was refused with 503 while the slots were full"
    );
    assert!(byes >= MAX_CALLS, "only {byes} BYEs for {answered} 200s");
    // 64·T1 = 32 s after the last answered INVITE, plus a margin for a loaded machine.
    assert!(took < Duration::from_secs(80), "the flood took {took:?}");

    // Every slot is free again: a normal call is answered (and not with 503).
    let deadline = started + Duration::from_secs(40);
    if let Some(wait) = deadline.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    // MAX_CALLS calls at once, each held 2 s: all must be answered, none refused with 503.
    let mut cmd = sipp_command(&dir, "uac_hangup.xml", serve.sip, free_port(), 2000, false);
    cmd.args(["-m", &MAX_CALLS.to_string(), "-r", "20", "-l"])
        .arg(MAX_CALLS.to_string());
    let out = cmd.output().expect("run sipp");
    let run = sipp_result(&dir, "uac_hangup.xml", out);
    assert!(
        run.success,
        "{MAX_CALLS} calls at once after the flood were not all answered:\n{}\n---- frontdesk ----\n{}",
        tail(&run.output, 60),
        tail(&serve.proc.log_text(), 60)
    );
    let log = serve.proc.log_text();
    assert!(
        log.contains("ack-timeout"),
        "no call ended for a missing ACK:\n{}",
        tail(&log, 60)
    );
}

fn tail(text: &str, n: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(n)..].join("\n")
}
