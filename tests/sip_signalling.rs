//! SIP signalling of `frontdesk serve` against SIPp (RFC 3261): OPTIONS, unknown dialogs, codec
//! refusal, CANCEL before answer, 503 when no Realtime session can be opened, and a call task
//! that panics (the supervisor records it, everything else keeps working).

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// A "Realtime service" that accepts TCP connections and never answers the WebSocket handshake,
/// so sessions never open. Returns its URL; the listener lives as long as the returned guard.
fn black_hole() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr: SocketAddr = l.local_addr().expect("addr");
    let keep = l.try_clone().expect("clone");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in keep.incoming().flatten() {
            held.push(s); // hold connections open, say nothing
        }
    });
    (l, format!("ws://{addr}/v1/realtime"))
}

fn serve_with_black_hole(dir: &TestDir) -> (Serve, TcpListener) {
    let (hole, url) = black_hole();
    let dialplans = Path::new(ROOT).join("dialplans");
    let serve = Serve::start(dir, &dialplans, &["--realtime-url", &url]);
    (serve, hole)
}

fn expect_sipp_ok(dir: &TestDir, serve: &Serve, scenario: &str, tcp: bool) {
    let run = run_sipp(dir, scenario, serve.sip, free_port(), 0, tcp);
    assert!(
        run.success,
        "{scenario} failed:\n{}\n---- frontdesk ----\n{}",
        run.output,
        serve.proc.log_text()
    );
}

#[test]
fn options_unknown_dialog_and_bad_codec_get_the_right_answers() {
    let dir = TestDir::new("signalling");
    let (serve, _hole) = serve_with_black_hole(&dir);
    expect_sipp_ok(&dir, &serve, "options.xml", false);
    expect_sipp_ok(&dir, &serve, "options.xml", true);
    expect_sipp_ok(&dir, &serve, "bye_unknown_dialog.xml", false);
    expect_sipp_ok(&dir, &serve, "invite_g729_only.xml", false);
}

#[test]
fn cancel_before_answer_gets_200_and_487() {
    let dir = TestDir::new("cancel");
    let (serve, _hole) = serve_with_black_hole(&dir);
    expect_sipp_ok(&dir, &serve, "uac_cancel.xml", false);
    let log = serve.proc.log_text();
    assert!(log.contains("caller cancelled before the answer"), "{log}");
}

#[test]
fn no_realtime_session_within_timeout_answers_503() {
    let dir = TestDir::new("unavailable");
    let (serve, _hole) = serve_with_black_hole(&dir);
    let started = Instant::now();
    expect_sipp_ok(&dir, &serve, "invite_expect_503.xml", false);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(12),
        "503 came after {took:?}, expected about the 5 s connect timeout"
    );
    // The reason names the endpoint that timed out; the call is recorded as `realtime-timeout`.
    let log = serve.proc.log_text();
    assert!(
        log.contains("no model session on any endpoint") && log.contains("realtime-timeout"),
        "{log}"
    );
}

#[test]
fn sigterm_hangs_up_active_calls_with_bye_and_exits() {
    let dir = TestDir::new("shutdown");
    let sim = Sim::start(&dir, None);
    let dialplans = Path::new(ROOT).join("dialplans");
    let mut serve = Serve::start(&dir, &dialplans, &["--realtime-url", &sim.url()]);
    let caller = sipp_command(
        &dir,
        "uac_wait_for_bye.xml",
        serve.sip,
        free_port(),
        0,
        false,
    )
    .spawn()
    .expect("start sipp");
    // Wait until the call is up.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !serve.proc.log_text().contains("call answered") {
        assert!(
            Instant::now() < deadline,
            "the call was not answered:\n{}",
            serve.proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let status = serve.proc.terminate(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "frontdesk did not exit cleanly: {status:?}\n{}",
        serve.proc.log_text()
    );
    let out = caller.wait_with_output().expect("sipp");
    let run = sipp_result(&dir, "uac_wait_for_bye.xml", out);
    assert!(run.success, "the caller did not get a BYE:\n{}", run.output);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let rows = rt.block_on(async {
        let store = frontdesk::store::Store::open(&serve.db).await.expect("db");
        store.recent_calls(5).await.expect("rows")
    });
    assert_eq!(rows[0].end_reason.as_deref(), Some("shutdown"), "{rows:?}");
}

#[test]
fn a_call_without_rtp_is_ended_after_the_rtp_timeout() {
    let dir = TestDir::new("rtp-timeout");
    let sim = Sim::start(&dir, None);
    let dialplans = Path::new(ROOT).join("dialplans");
    let mut serve = Serve::start(
        &dir,
        &dialplans,
        &["--realtime-url", &sim.url(), "--rtp-timeout", "2"],
    );
    let started = Instant::now();
    // The caller sends no RTP at all and waits for frontdesk's BYE.
    let run = run_sipp(
        &dir,
        "uac_wait_for_bye.xml",
        serve.sip,
        free_port(),
        0,
        false,
    );
    assert!(
        run.success,
        "no BYE after the RTP timeout:\n{}\n{}",
        run.output,
        serve.proc.log_text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let status = serve.proc.terminate(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let rows = rt.block_on(async {
        let store = frontdesk::store::Store::open(&serve.db).await.expect("db");
        store.recent_calls(5).await.expect("rows")
    });
    assert_eq!(
        rows[0].end_reason.as_deref(),
        Some("rtp-timeout"),
        "{rows:?}"
    );
}

/// Panic isolation (issue 9): a call task that panics after the answer (the debug-build fault
/// hook `FRONTDESK_FAULT_PANIC_CALL`) is logged with its Call-ID, its caller gets a BYE, its row
/// says `internal-error`, and frontdesk keeps answering OPTIONS and calls. With `max_calls = 1`
/// the next call is only admitted if the panicked call's slot was freed.
#[test]
fn a_panicking_call_is_recorded_and_frontdesk_keeps_serving() {
    let dir = TestDir::new("panic");
    let sim = Sim::start(&dir, None);
    let dialplans = Path::new(ROOT).join("dialplans");
    let config = dir.join("frontdesk.toml");
    std::fs::write(
        &config,
        "[admission]\nmax_calls = 1\n[[admission.trunks]]\nname = \"loopback\"\nallow = [\"127.0.0.0/8\"]\n",
    )
    .expect("config");
    let config = config.to_string_lossy().into_owned();
    let serve = Serve::start_env(
        &dir,
        &dialplans,
        &["--realtime-url", &sim.url(), "--config", &config],
        &[
            ("FRONTDESK_FAULT_PANIC_CALL", "panic-me"),
            ("FRONTDESK_FAULT_PANIC_AFTER_MS", "2500"),
        ],
    );
    let out = sipp_command_to(
        &dir,
        "uac_wait_for_bye.xml",
        serve.sip,
        "panic-me",
        free_port(),
        0,
        false,
    )
    .output()
    .expect("sipp");
    let run = sipp_result(&dir, "uac_wait_for_bye.xml", out);
    let log = serve.proc.log_text();
    assert!(
        run.success,
        "the caller of the panicked call got no BYE:\n{}\n---- frontdesk ----\n{log}",
        run.output
    );
    let panic_line = log
        .lines()
        .find(|l| l.contains("call task panicked"))
        .unwrap_or_else(|| panic!("no panic log line:\n{log}"));
    assert!(
        matches!(
            (log.find("call answered"), log.find("call task panicked")),
            (Some(answered), Some(panicked)) if answered < panicked
        ),
        "the hook fired before the answer:\n{log}"
    );

    // Still serving: OPTIONS, then a whole call (admitted only if the slot is free again).
    expect_sipp_ok(&dir, &serve, "options.xml", false);
    let run = run_sipp(&dir, "uac_hangup.xml", serve.sip, free_port(), 300, false);
    assert!(
        run.success,
        "the call after the panic failed:\n{}\n---- frontdesk ----\n{}",
        run.output,
        serve.proc.log_text()
    );

    let rows = ended_calls(&serve.db, 2);
    let panicked = rows
        .iter()
        .find(|r| r.called.as_deref() == Some("panic-me"))
        .unwrap_or_else(|| panic!("no row for the panicked call: {rows:?}"));
    assert_eq!(
        panicked.end_reason.as_deref(),
        Some("internal-error"),
        "{rows:?}"
    );
    assert!(panic_line.contains(&panicked.call_id), "{panic_line}");
    assert_eq!(rows.len(), 2, "one row per call: {rows:?}");
    let other = rows
        .iter()
        .find(|r| r.called.as_deref() != Some("panic-me"))
        .expect("the second call's row");
    assert_eq!(other.end_reason.as_deref(), Some("remote-bye"), "{rows:?}");
}
