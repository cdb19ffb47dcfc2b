//! A call over IPv6 loopback (issue 12): frontdesk listens dual stack (`127.0.0.1` and `[::1]`),
//! SIPp calls `[::1]` with `-i ::1`, the SDP says `c=IN IP6`, the agent's RTP reaches the caller
//! over IPv6 and the caller's BYE ends the call.

mod common;

use std::path::Path;

use common::*;

#[test]
fn sipp_call_over_ipv6_loopback_with_rtp_on_ipv6() {
    let dir = TestDir::new("ipv6");
    let sim = Sim::start(&dir, None);
    let dialplans = Path::new(ROOT).join("dialplans");
    let (serve, target) = Serve::start_dual_stack(&dir, &dialplans, &sim.url());
    let media_port = free_port();
    let capture = Capture::start_filter(&dir, "ipv6", "ip6 and udp");
    let mut cmd = sipp_command(&dir, "uac_hangup.xml", target, media_port, 4000, false);
    cmd.args(["-i", "::1", "-mi", "::1"]);
    let out = cmd.output().expect("run sipp");
    let run = sipp_result(&dir, "uac_hangup.xml", out);
    let rtp = capture.stop(media_port);
    assert!(
        run.success,
        "the IPv6 call failed:\n{}\n---- frontdesk ----\n{}",
        run.output,
        serve.proc.log_text()
    );
    // Our SDP answer names the IPv6 media address.
    assert!(
        run.output.contains("c=IN IP6 ::1"),
        "no c=IN IP6 in the answer:\n{}",
        run.output
    );
    // The greeting came as RTP over IPv6 (20 ms packets: over 2 s of it in 4 s on the line).
    assert!(
        rtp.len() > 100,
        "only {} RTP packets over IPv6 reached the caller",
        rtp.len()
    );
    let log = serve.proc.log_text();
    let answered = log
        .lines()
        .find(|l| l.contains("call answered"))
        .unwrap_or_default();
    assert!(answered.contains("[::1]:"), "RTP not on IPv6: {answered}");
    assert!(log.contains("remote-bye"), "{log}");
}
