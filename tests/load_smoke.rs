//! CI smoke of the load benchmark (issue 3; the full run is `benches/load.sh`): 50 concurrent SIPp
//! calls against `frontdesk serve` (the test binary), bridged to `frontdesk sim --echo`, which
//! returns each sentence the caller says as the agent's reply. Every caller streams a spoken
//! sentence followed by silence in a loop (tests/sipp/uac_load.xml).
//!
//! Asserts only what does not depend on the machine's speed: every call completes (SIPp), the log
//! has no errors or panics (warnings are printed), every call row ended with `remote-bye`, no
//! caller packet was lost, and every call's echo came back as RTP. CPU and memory per call, pacing error and added
//! latency are printed, never asserted (the debug build on a shared CI box says little about them).
//! Needs sipp, espeak-ng and sox.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Concurrent calls.
const CALLS: usize = 50;
/// Call attempts per second (SIPp -r): all calls are up after 2 s.
const RATE: usize = 25;
/// How long each call lasts after its ACK (SIPp -d): one sentence (~2.8 s), the simulator's echo of
/// it (~3.3 s, starting ~0.7 s after the sentence), and a margin.
const HOLD_MS: u64 = 11_000;
/// The measured window, once every call is up.
const WINDOW: Duration = Duration::from_secs(4);
/// Silence after the sentence (µ-law 0xFF), in which the echo plays back; then the sentence repeats.
const PAUSE_BYTES: usize = 5 * 8_000;
const SENTENCE: &str = "Please book me a cleaning next Tuesday";

fn dialplans(dir: &TestDir) -> PathBuf {
    let d = dir.join("dialplans");
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::write(
        d.join("load.toml"),
        r#"
[[routes]]
name = "load"
to = "*"
agent = "echo"

[agents.echo]
voice = "alloy"
greeting = ""
instructions = "Load test: the simulator echoes the caller."
tools = []
"#,
    )
    .expect("write dialplan");
    d
}

/// Admits the load from 127.0.0.1 without the per-source rate limit (50 INVITEs in 2 s).
fn config(dir: &TestDir) -> PathBuf {
    let path = dir.join("frontdesk.toml");
    std::fs::write(
        &path,
        r#"
[admission]
max_calls = 500

[[admission.trunks]]
name = "load"
allow = ["127.0.0.1/32"]
rate_per_source = 0
"#,
    )
    .expect("write config");
    path
}

/// The first port of `len` consecutive loopback UDP ports that are free now, above Linux's default
/// ephemeral range (32768-60999) and the range `free_port` picks from, so the calls' RTP ports do
/// not collide with other tests' sockets.
fn free_block(len: u16) -> u16 {
    const LOW: u16 = 61_000;
    const HIGH: u16 = 64_000;
    let mut start = LOW + (std::process::id() % 12) as u16 * 200;
    for _ in 0..200 {
        if start + len > HIGH {
            start = LOW;
        }
        if (start..start + len).all(|p| std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()) {
            return start;
        }
        start += 2;
    }
    panic!("no block of {len} free loopback ports");
}

fn start_sim(dir: &TestDir) -> (Proc, String) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut cmd = Command::new(FRONTDESK);
    cmd.arg("sim")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--echo");
    let proc = Proc::spawn("sim", cmd, dir.join("sim.log"));
    wait_for_tcp(addr, Duration::from_secs(10));
    (proc, format!("ws://{addr}/v1/realtime"))
}

/// `frontdesk serve` like [`Serve::start`], with an RTP port range wide enough for every call.
fn start_serve(dir: &TestDir, sim_url: &str) -> Serve {
    let sip: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let ports = 2 * CALLS as u16 + 40;
    let rtp_low = free_block(ports);
    let db = dir.join("frontdesk.db");
    let mut cmd = Command::new(FRONTDESK);
    cmd.arg("serve")
        .arg("--config")
        .arg(config(dir))
        .arg("--sip-listen")
        .arg(sip.to_string())
        .arg("--media-ip")
        .arg("127.0.0.1")
        .arg("--rtp-ports")
        .arg(format!("{}-{}", rtp_low, rtp_low + ports - 1))
        .arg("--db")
        .arg(&db)
        .arg("--dialplans")
        .arg(dialplans(dir))
        .arg("--realtime-url")
        .arg(sim_url)
        .env_remove("OPENAI_API_KEY")
        .env_remove("FRONTDESK_REALTIME_URL")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info,rsipstack=warn");
    let proc = Proc::spawn("frontdesk", cmd, dir.join("frontdesk.log"));
    wait_for_sip(sip, Duration::from_secs(20));
    Serve { proc, sip, db }
}

/// CPU ticks (utime + stime) of a process, from /proc/PID/stat.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Resident memory of a process in KiB, from /proc/PID/status.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// `key=value` fields of a log line (values may be quoted).
fn fields(line: &str) -> Vec<(String, String)> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

fn field(fields: &[(String, String)], key: &str) -> Option<f64> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
}

#[test]
fn fifty_concurrent_echo_calls() {
    require_tool("sipp", "sip-tester");
    let dir = TestDir::new("load-smoke");
    let (sentence, _) = speech(&dir, "sentence", SENTENCE);
    let mut audio = sentence;
    audio.extend(std::iter::repeat_n(0xFF, PAUSE_BYTES));
    std::fs::write(dir.join("load.ul"), &audio).expect("write load.ul");

    let (_sim, sim_url) = start_sim(&dir);
    let mut serve = start_serve(&dir, &sim_url);
    let pid = serve.proc.child.id();
    std::thread::sleep(Duration::from_millis(500));
    let rss_idle = rss_kib(pid).unwrap_or(0);

    let mut cmd = Command::new("sipp");
    cmd.current_dir(dir.path())
        .arg("-sf")
        .arg(Path::new(ROOT).join("tests/sipp/uac_load.xml"))
        .arg(serve.sip.to_string())
        .args(["-s", "frontdesk", "-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .arg("-p")
        .arg(free_port().to_string())
        .arg("-mp")
        .arg(free_port().to_string())
        .arg("-l")
        .arg(CALLS.to_string())
        .arg("-m")
        .arg(CALLS.to_string())
        .arg("-r")
        .arg(RATE.to_string())
        .arg("-d")
        .arg(HOLD_MS.to_string())
        .args([
            "-nostdin",
            "-timeout",
            "60s",
            "-timeout_error",
            "-trace_err",
        ])
        .arg("-error_file")
        .arg(dir.join("sipp.errors.log"));
    let started = Instant::now();
    let mut sipp = Proc::spawn("sipp", cmd, dir.join("sipp.log"));

    // Once every call is answered, measure frontdesk over a window in which all of them run.
    let answered = |serve: &Serve| serve.proc.log_text().matches(": call answered").count();
    let deadline = Instant::now() + Duration::from_secs(20);
    while answered(&serve) < CALLS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let up = answered(&serve);
    let ticks0 = cpu_ticks(pid);
    let t0 = Instant::now();
    std::thread::sleep(WINDOW);
    let ticks1 = cpu_ticks(pid);
    let window = t0.elapsed();
    let rss = rss_kib(pid).unwrap_or(0);
    let still_up = answered(&serve) - serve.proc.log_text().matches(": call ended").count();

    // SIPp ends each call with BYE after the hold time, then exits.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Ok(Some(status)) = sipp.child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let sipp_log = sipp.log_text();
    assert!(
        status.is_some_and(|s| s.success()),
        "SIPp failed ({status:?}):\n{sipp_log}\n{}",
        std::fs::read_to_string(dir.join("sipp.errors.log")).unwrap_or_default()
    );
    let successful = sipp_log
        .lines()
        .rev()
        .filter(|l| l.contains("Successful call"))
        .find_map(|l| l.rsplit('|').next()?.trim().parse::<usize>().ok());
    assert_eq!(successful, Some(CALLS), "SIPp:\n{sipp_log}");

    // Every call record is written before frontdesk stops.
    let deadline = Instant::now() + Duration::from_secs(15);
    while serve.proc.log_text().matches(": call ended").count() < CALLS && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = serve.proc.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "frontdesk did not stop cleanly: {status:?}"
    );
    let wall = started.elapsed();

    let log = serve.proc.log_text();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" ERROR ") || l.contains("panicked"))
        .collect();
    assert!(
        errors.is_empty(),
        "frontdesk logged {} errors or panics, e.g.:\n{}",
        errors.len(),
        errors[..errors.len().min(10)].join("\n")
    );
    // Warnings are printed, not asserted: on a busy box the SIP layer may warn about a
    // retransmitted 200/ACK ("dialog already confirmed"), which is harmless. Anything that
    // breaks a call shows up in the assertions on the call rows below.
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(" WARN ")).collect();

    let rows = ended_calls(&serve.db, CALLS);
    assert_eq!(rows.len(), CALLS, "one call row per call");
    for r in &rows {
        assert_eq!(
            r.end_reason.as_deref(),
            Some("remote-bye"),
            "call {} ended with {:?}",
            r.call_id,
            r.end_reason
        );
        assert_eq!(
            r.packets_lost,
            Some(0),
            "call {} lost caller packets",
            r.call_id
        );
        assert!(r.packets_in > 0, "call {}: no caller RTP", r.call_id);
        // The echo of the first sentence is ~3.3 s (165 packets) of RTP to the caller.
        assert!(
            r.packets_out >= 100,
            "call {}: only {} RTP packets of echo reached the caller",
            r.call_id,
            r.packets_out
        );
    }

    let summaries: Vec<Vec<(String, String)>> = log
        .lines()
        .filter_map(|l| l.split_once(": media summary").map(|(_, f)| fields(f)))
        .collect();
    assert_eq!(summaries.len(), CALLS, "one media summary per call");
    let sum = |k: &str| -> f64 { summaries.iter().filter_map(|s| field(s, k)).sum() };
    let med = |k: &str| median(summaries.iter().filter_map(|s| field(s, k)).collect());
    let worst = |k: &str| {
        summaries
            .iter()
            .filter_map(|s| field(s, k))
            .fold(0.0, f64::max)
    };
    assert_eq!(sum("lost"), 0.0, "caller frames lost");

    let hz = clock_ticks_per_second() as f64;
    let cores = match (ticks0, ticks1) {
        (Some(a), Some(b)) => (b - a) as f64 / hz / window.as_secs_f64(),
        _ => f64::NAN,
    };
    eprintln!(
        "load smoke: {CALLS} calls ({up} up when the window started, {still_up} at its end), wall {:.1} s",
        wall.as_secs_f64()
    );
    eprintln!(
        "  frontdesk (debug build) over {:.1} s: {:.3} cores = {:.2} ms CPU per second per call ({:.3} % of a core per call); RSS {} KiB idle, {} KiB with {CALLS} calls = {:.0} KiB per call",
        window.as_secs_f64(),
        cores,
        cores * 1000.0 / CALLS as f64,
        cores * 100.0 / CALLS as f64,
        rss_idle,
        rss,
        (rss as f64 - rss_idle as f64) / CALLS as f64
    );
    if !warnings.is_empty() {
        eprintln!(
            "  {} warnings in frontdesk's log, e.g.:\n    {}",
            warnings.len(),
            warnings[..warnings.len().min(3)].join("\n    ")
        );
    }
    eprintln!(
        "  caller frames: lost {} late {} concealed {} (inserted {}); barge-ins {}; RTP packets out {}",
        sum("lost"),
        sum("late"),
        sum("concealed"),
        sum("inserted"),
        sum("barge_ins"),
        sum("packets_out")
    );
    eprintln!(
        "  added latency arrival->append: p50 {:.2} ms, p99 {:.2} ms (median call), {:.2} ms (worst call)",
        med("latency_p50_ms"),
        med("latency_p99_ms"),
        worst("latency_p99_ms")
    );
    eprintln!(
        "  pacing error of our RTP: p50 {:.2} ms, p99 {:.2} ms (median call), {:.2} ms (worst call)",
        med("pacing_p50_ms"),
        med("pacing_p99_ms"),
        worst("pacing_p99_ms")
    );
}
