//! Inbound admission of `frontdesk serve` against SIPp (issue 6, scope 2): source allow-lists,
//! digest challenges, the per-source rate limit and `max_calls`. Every rejected INVITE must be
//! answered in the SIP layer, without a dialog and without a Realtime session (the simulator's
//! `--record` must show no `session.update` for it) and without a call row.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// Writes `text` as `frontdesk.toml` in `dir` and returns its path.
fn config(dir: &TestDir, text: &str) -> PathBuf {
    let path = dir.join("frontdesk.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn serve(dir: &TestDir, sim: &Sim, config: &Path) -> Serve {
    let dialplans = Path::new(ROOT).join("dialplans");
    let config = config.to_str().expect("utf-8 path");
    // Serve::start waits for an OPTIONS 200 from 127.0.0.1: OPTIONS are answered to anyone.
    Serve::start(
        dir,
        &dialplans,
        &["--config", config, "--realtime-url", &sim.url()],
    )
}

fn sessions_opened(sim: &Sim) -> usize {
    read_jsonl(&sim.record)
        .iter()
        .filter(|e| e["type"] == "session.update")
        .count()
}

fn call_rows(serve: &Serve, at_least: usize) -> Vec<frontdesk::store::CallRow> {
    ended_calls(&serve.db, at_least)
}

/// The SIP messages SIPp received (from its `-trace_msg` log), each as its text.
fn received_messages(run: &SippRun) -> Vec<String> {
    let log = run
        .output
        .split_once("\n---- messages ----\n")
        .map_or("", |(_, m)| m);
    log.split("-----------------------------------------------")
        .filter(|block| block.contains("message received"))
        .map(|block| {
            block
                .lines()
                .skip_while(|l| !l.starts_with("SIP/2.0"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|m| !m.is_empty())
        .collect()
}

/// A response's shape: its status line and each header, with the values that differ per call
/// (tags, branches, Call-ID, nonces) blanked out. Two responses with the same shape tell a
/// scanner nothing different.
fn shape(msg: &str) -> Vec<String> {
    let mut lines = msg.lines();
    let mut out = vec![lines.next().unwrap_or_default().trim().to_owned()];
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let value = match name.as_str() {
            "via" | "from" | "to" | "call-id" | "cseq" => String::new(),
            "www-authenticate" => value
                .split(',')
                .map(|p| {
                    let p = p.trim();
                    if p.to_ascii_lowercase().starts_with("nonce=") {
                        "nonce=..."
                    } else {
                        p
                    }
                })
                .collect::<Vec<_>>()
                .join(", "),
            _ => value.trim().to_owned(),
        };
        out.push(format!("{name}: {value}"));
    }
    out
}

fn final_response<'a>(msgs: &'a [String], status: &str) -> &'a str {
    msgs.iter()
        .rev()
        .find(|m| m.starts_with(&format!("SIP/2.0 {status}")))
        .unwrap_or_else(|| panic!("no {status} among {msgs:#?}"))
}

fn expect_ok(run: &SippRun, what: &str, serve: &Serve) {
    assert!(
        run.success,
        "{what} failed:\n{}\n---- frontdesk ----\n{}",
        run.output,
        serve.proc.log_text()
    );
}

#[test]
fn an_invite_from_a_source_not_allowed_gets_403_and_opens_no_session() {
    let dir = TestDir::new("admission-403");
    let sim = Sim::start(&dir, None);
    let cfg = config(
        &dir,
        r#"
[admission]
[[admission.trunks]]
name = "office"
allow = ["10.0.0.0/8", "2001:db8::/32"]
"#,
    );
    let serve = serve(&dir, &sim, &cfg);
    // SIPp calls from 127.0.0.1, which is in no allow-list, and no digest users are configured.
    let run = run_sipp(
        &dir,
        "invite_expect_403.xml",
        serve.sip,
        free_port(),
        0,
        false,
    );
    expect_ok(&run, "INVITE expecting 403", &serve);
    let run = run_sipp(
        &dir,
        "invite_expect_403.xml",
        serve.sip,
        free_port(),
        0,
        true,
    );
    expect_ok(&run, "INVITE over TCP expecting 403", &serve);
    let msgs = received_messages(&run);
    assert!(
        !msgs.iter().any(|m| m.starts_with("SIP/2.0 100")),
        "a refused INVITE gets no 100 Trying: {msgs:#?}"
    );
    // A Via that claims an allowed address does not help: the packet's source counts.
    let run = run_sipp(
        &dir,
        "invite_spoofed_via_expect_403.xml",
        serve.sip,
        free_port(),
        0,
        false,
    );
    expect_ok(&run, "INVITE with a forged Via expecting 403", &serve);
    // Monitoring still works from anywhere.
    let run = run_sipp(&dir, "options.xml", serve.sip, free_port(), 0, false);
    expect_ok(&run, "OPTIONS", &serve);

    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        sessions_opened(&sim),
        0,
        "the simulator saw a session: {:?}",
        read_jsonl(&sim.record)
    );
    // Rejected INVITEs are not call rows (a scanner must not be able to fill the database).
    let rows = call_rows(&serve, 0);
    assert!(rows.is_empty(), "{rows:?}");
    let log = serve.proc.log_text();
    assert!(
        log.contains("INVITE refused with 403 Forbidden") && log.contains("source not allowed"),
        "{log}"
    );
    assert!(
        !log.contains("incoming call"),
        "a call task was started:\n{log}"
    );
}

#[test]
fn digest_right_password_gets_through_wrong_password_and_unknown_user_get_the_same_403() {
    let dir = TestDir::new("admission-digest");
    let sim = Sim::start(&dir, None);
    let password = "c0rrect-h0rse";
    let pw_file = dir.join("alice.secret");
    std::fs::write(&pw_file, format!("{password}\n")).expect("password file");
    // SIPp 3.6 only knows MD5 and answers the first challenge, so offer MD5 only here.
    let cfg = config(
        &dir,
        &format!(
            r#"
[admission]
realm = "clinic"
digest_algorithms = ["MD5"]
[[admission.trunks]]
name = "office"
allow = ["10.0.0.0/8"]
[[admission.users]]
name = "alice"
password_file = "{}"
"#,
            pw_file.display()
        ),
    );
    let serve = serve(&dir, &sim, &cfg);
    let digest = |scenario: &str, user: &str, pw: &str| {
        let mut cmd = sipp_command(&dir, scenario, serve.sip, free_port(), 500, false);
        cmd.args(["-au", user, "-ap", pw]);
        let out = cmd.output().expect("run sipp");
        sipp_result(&dir, scenario, out)
    };

    let ok = digest("uac_digest.xml", "alice", password);
    expect_ok(&ok, "digest call with the right password", &serve);
    let challenge = final_response(&received_messages(&ok), "401").to_owned();
    assert!(
        challenge.contains("WWW-Authenticate: Digest realm=\"clinic\"")
            && challenge.contains("algorithm=MD5")
            && challenge.contains("qop=\"auth\""),
        "{challenge}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        sessions_opened(&sim),
        1,
        "the authenticated call opens one session"
    );

    let wrong = digest("uac_digest_expect_403.xml", "alice", "guess");
    expect_ok(&wrong, "digest call with a wrong password", &serve);
    let wrong_msgs = received_messages(&wrong);
    let unknown = digest("uac_digest_expect_403.xml", "mallory", password);
    expect_ok(&unknown, "digest call as an unknown user", &serve);
    let unknown_msgs = received_messages(&unknown);
    let refused = shape(final_response(&wrong_msgs, "403"));
    assert_eq!(refused[0], "SIP/2.0 403 Forbidden", "{refused:?}");
    assert!(
        shape(&challenge).contains(
            &"www-authenticate: Digest realm=\"clinic\", nonce=..., algorithm=MD5, qop=\"auth\""
                .to_owned()
        ),
        "{:?}",
        shape(&challenge)
    );
    for status in ["401", "403"] {
        assert_eq!(
            shape(final_response(&wrong_msgs, status)),
            shape(final_response(&unknown_msgs, status)),
            "the {status} for a wrong password and for an unknown user differ"
        );
    }
    assert_eq!(
        shape(final_response(&wrong_msgs, "401")),
        shape(&challenge),
        "every challenge looks the same"
    );

    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        sessions_opened(&sim),
        1,
        "a refused INVITE opened a session"
    );
    let rows = call_rows(&serve, 1);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0].end_reason.as_deref(),
        Some("remote-bye"),
        "{rows:?}"
    );
    let log = serve.proc.log_text();
    assert!(log.contains("bad credentials"), "{log}");
    assert!(
        !log.contains(password),
        "the password is in the log:\n{log}"
    );
}

/// Counts the 200s to INVITEs and the 503s (each with Retry-After) SIPp received.
fn answers(run: &SippRun) -> (usize, usize) {
    let msgs = received_messages(run);
    let ok = msgs
        .iter()
        .filter(|m| {
            m.starts_with("SIP/2.0 200")
                && m.lines()
                    .any(|l| l.starts_with("CSeq:") && l.contains("INVITE"))
        })
        .count();
    let busy: Vec<&String> = msgs
        .iter()
        .filter(|m| m.starts_with("SIP/2.0 503"))
        .collect();
    for m in &busy {
        assert!(m.contains("Retry-After: "), "503 without Retry-After: {m}");
    }
    (ok, busy.len())
}

/// Runs `uac_hangup_or_503.xml`: `calls` calls at `rate` per second, each held `hold_ms`.
fn load(dir: &TestDir, serve: &Serve, calls: u32, rate: u32, hold_ms: u64) -> SippRun {
    let scenario = "uac_hangup_or_503.xml";
    let mut cmd = sipp_command(dir, scenario, serve.sip, free_port(), hold_ms, false);
    // Later flags override the harness's `-m 1`.
    let (m, r) = (calls.to_string(), rate.to_string());
    cmd.args(["-m", &m, "-r", &r, "-l", &m]);
    let out = cmd.output().expect("run sipp");
    sipp_result(dir, scenario, out)
}

/// The most calls whose [started_at, ended_at] overlap at one instant.
fn peak_concurrency(rows: &[frontdesk::store::CallRow]) -> usize {
    let time = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("bad time {s}: {e}"))
    };
    let mut edges = Vec::new();
    for r in rows {
        edges.push((time(&r.started_at), 1));
        edges.push((time(r.ended_at.as_deref().expect("every call ended")), -1));
    }
    // At a tie the end sorts first (-1 < 1).
    edges.sort();
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        peak = peak.max(now);
    }
    usize::try_from(peak).unwrap_or(0)
}

#[test]
fn two_hundred_attempts_beyond_max_calls_get_503_and_frontdesk_keeps_working() {
    let dir = TestDir::new("admission-max-calls");
    let sim = Sim::start(&dir, None);
    let cfg = config(
        &dir,
        r#"
[admission]
max_calls = 5
rate_per_source = 0
[[admission.trunks]]
name = "loopback"
allow = ["127.0.0.1/32", "::1/128"]
"#,
    );
    let mut serve = serve(&dir, &sim, &cfg);
    let started = Instant::now();
    let run = load(&dir, &serve, 200, 50, 2000);
    expect_ok(&run, "200 calls at 50/s against max_calls = 5", &serve);
    let (admitted, busy) = answers(&run);
    assert_eq!(admitted + busy, 200, "every attempt got 200 or 503");
    assert!(
        (5..=40).contains(&admitted) && busy >= 160,
        "admitted {admitted}, 503 {busy}"
    );
    eprintln!(
        "{admitted} admitted, {busy} got 503, in {:?}",
        started.elapsed()
    );

    // Nothing crashed: frontdesk still answers OPTIONS and takes a normal call.
    assert!(
        serve.proc.child.try_wait().expect("wait").is_none()
            && !serve.proc.log_text().contains("panicked"),
        "{}",
        serve.proc.log_text()
    );
    wait_for_sip(serve.sip, Duration::from_secs(5));
    let run = run_sipp(&dir, "uac_hangup.xml", serve.sip, free_port(), 500, false);
    expect_ok(&run, "a normal call after the overload", &serve);
    // Every slot was given back: max_calls calls at once are admitted again.
    let run = load(&dir, &serve, 5, 100, 1500);
    expect_ok(&run, "5 calls at once after the overload", &serve);
    assert_eq!(answers(&run), (5, 0), "all 5 slots must be free again");

    std::thread::sleep(Duration::from_millis(500));
    let total = admitted + 1 + 5;
    assert_eq!(
        sessions_opened(&sim),
        total,
        "one session per admitted call, none for a 503"
    );
    let rows = call_rows(&serve, total);
    assert_eq!(rows.len(), total, "one call row per admitted call");
    let peak = peak_concurrency(&rows);
    assert!(peak <= 5, "{peak} calls were in progress at once");
    let log = serve.proc.log_text();
    assert!(log.contains("max_calls calls are in progress"), "{log}");
    assert!(!log.contains("rate limited"), "{log}");
}

#[test]
fn a_source_over_its_rate_gets_503_with_retry_after() {
    let dir = TestDir::new("admission-rate");
    let sim = Sim::start(&dir, None);
    let cfg = config(
        &dir,
        r#"
[admission]
max_calls = 50
rate_per_source = 6
rate_burst = 3
[[admission.trunks]]
name = "loopback"
allow = ["127.0.0.1/32"]
"#,
    );
    let serve = serve(&dir, &sim, &cfg);
    let run = load(&dir, &serve, 10, 100, 200);
    expect_ok(&run, "10 calls at 100/s from one source", &serve);
    let (admitted, busy) = answers(&run);
    assert_eq!(
        (admitted, busy),
        (3, 7),
        "the burst of 3 passes, the rest is limited"
    );
    let msgs = received_messages(&run);
    let retry = final_response(&msgs, "503");
    // 6 per minute: the next token comes within 10 s.
    let secs: u64 = retry
        .lines()
        .find_map(|l| l.strip_prefix("Retry-After: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("Retry-After");
    assert!((1..=10).contains(&secs), "Retry-After: {secs}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sessions_opened(&sim), 3);
    let log = serve.proc.log_text();
    // Logged once per burst of refusals, not once per INVITE.
    assert_eq!(
        log.matches("INVITE refused with 503: source is rate limited")
            .count(),
        1,
        "{log}"
    );
}

#[test]
fn without_an_admission_section_anyone_may_call_and_frontdesk_warns() {
    let dir = TestDir::new("admission-open");
    let sim = Sim::start(&dir, None);
    let dialplans = Path::new(ROOT).join("dialplans");
    let serve = Serve::start(&dir, &dialplans, &["--realtime-url", &sim.url()]);
    let log = serve.proc.log_text();
    assert!(
        log.contains("ANYONE who reaches the SIP port can call")
            && log.contains("opens a paid model session"),
        "{log}"
    );
    let run = run_sipp(&dir, "uac_hangup.xml", serve.sip, free_port(), 300, false);
    expect_ok(&run, "a call without [admission]", &serve);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sessions_opened(&sim), 1);
}
