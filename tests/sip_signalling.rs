//! SIP signalling of `frontdesk serve` against SIPp (RFC 3261): OPTIONS, unknown dialogs, codec
//! refusal, CANCEL before answer, and 503 when no Realtime session can be opened.

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
    assert!(serve.proc.log_text().contains("did not open in time"));
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
