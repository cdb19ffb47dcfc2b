//! End to end: the HTTP listener of `frontdesk serve --http-listen`. After a booking call and a
//! short call: `/metrics` parses as Prometheus text format and its counters match the calls made;
//! `/healthz` and `/readyz` answer 200; the staff page answers 401 without the token; and a real
//! browser (headless Chromium) loaded with the token shows the call's row, its transcript and the
//! appointment it booked. A screenshot of each page is saved as a test artifact in
//! `target/tmp/staff-page*.png`.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const TOKEN: &str = "staff-token-3f9a1c";

/// A plain HTTP/1.1 GET; returns (status, headers and body as text).
fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Runs headless Chromium on `url` with `mode` (`--dump-dom` or `--screenshot=FILE`).
fn chromium(dir: &TestDir, url: &str, mode: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(mode)
        .arg(url)
        .current_dir(dir.join(""))
        .output()
        .expect("run chromium (Debian package chromium)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn metrics_health_and_the_staff_page_in_a_browser() {
    let dir = TestDir::new("staff-http");
    booking_speech(&dir);
    let sim = Sim::start(
        &dir,
        Some(&Path::new(ROOT).join("tests/scenarios/history.toml")),
    );
    let plans = booking_dialplan(&dir, true);
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).expect("token");
    let config = dir.join("frontdesk.toml");
    std::fs::write(
        &config,
        format!("[http]\ntoken_file = \"{}\"\n", dir.join("token").display()),
    )
    .expect("config");
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let calendar = Path::new(ROOT).join("deploy/calendar.example.toml");
    let mut serve = Serve::start(
        &dir,
        &plans,
        &[
            "--realtime-url",
            &sim.url(),
            "--calendar",
            &calendar.to_string_lossy(),
            "--config",
            &config.to_string_lossy(),
            "--http-listen",
            &http.to_string(),
        ],
    );
    let (status, _) = get(http, "/readyz", &[]);
    assert_eq!(status, 200);

    // A booking call, then a short one.
    let run = run_sipp(
        &dir,
        "uac_two_turns.xml",
        serve.sip,
        free_port(),
        8_000,
        false,
    );
    assert!(run.success, "call failed:\n{}", run.output);
    let run = run_sipp(&dir, "uac_hangup.xml", serve.sip, free_port(), 1_500, false);
    assert!(run.success, "call failed:\n{}", run.output);
    // The call tasks write their end after the BYE's 200.
    std::thread::sleep(Duration::from_millis(500));

    // Health and readiness.
    let (status, text) = get(http, "/healthz", &[]);
    assert_eq!(status, 200, "{text}");
    assert_eq!(body(&text).trim(), "ok");

    // Metrics: Prometheus text format, counters that match the two calls.
    let (status, text) = get(http, "/metrics", &[]);
    assert_eq!(status, 200);
    let lines = body(&text).lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    assert_eq!(sample(&scrape, "frontdesk_calls_total", &[]), 2.0, "{text}");
    assert_eq!(
        sample(
            &scrape,
            "frontdesk_calls_total",
            &[("end_reason", "remote-bye")]
        ),
        2.0
    );
    assert_eq!(sample(&scrape, "frontdesk_calls_in_progress", &[]), 0.0);
    assert_eq!(
        sample(
            &scrape,
            "frontdesk_realtime_sessions_total",
            &[("result", "opened")]
        ),
        2.0
    );
    for tool in ["check_availability", "book_appointment"] {
        assert_eq!(
            sample(
                &scrape,
                "frontdesk_tool_calls_total",
                &[("tool", tool), ("outcome", "ok")]
            ),
            1.0,
            "{tool}"
        );
    }
    assert!(sample(&scrape, "frontdesk_barge_ins_total", &[]) >= 1.0);
    let setups: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "frontdesk_call_setup_seconds")
        .filter_map(|s| match &s.value {
            prometheus_parse::Value::Histogram(h) => h.last().map(|b| b.count),
            _ => None,
        })
        .sum();
    assert_eq!(setups, 2.0, "two answered calls in the setup histogram");
    assert!(
        text.contains("frontdesk_model_first_audio_seconds_bucket"),
        "{text}"
    );

    // The staff page needs the token.
    let (status, _) = get(http, "/", &[]);
    assert_eq!(status, 401);
    let (status, _) = get(http, "/", &[("Authorization", "Bearer wrong")]);
    assert_eq!(status, 401);
    let bearer = format!("Bearer {TOKEN}");
    let (status, page) = get(http, "/", &[("Authorization", &bearer)]);
    assert_eq!(status, 200);
    assert!(!page.contains(TOKEN), "the page never shows the token");

    // In a real browser.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (call_id, code) = rt.block_on(async {
        let store = frontdesk::store::Store::open(&serve.db).await.expect("db");
        let (call_id, code): (String, String) =
            sqlx::query_as("SELECT call_id, confirmation_code FROM appointments")
                .fetch_one(store.pool())
                .await
                .expect("the booking");
        (call_id, code)
    });
    let index = format!("http://{http}/?token={TOKEN}");
    let dom = chromium(&dir, &index, "--dump-dom");
    assert!(
        dom.contains(&format!("data-call-id=\"{call_id}\"")),
        "the call's row:\n{dom}"
    );
    assert!(dom.contains("5550001111"), "the caller's number:\n{dom}");
    assert!(dom.contains(&code), "the appointment booked:\n{dom}");
    assert!(dom.contains("0 call(s) in progress"), "{dom}");
    let id: String = call_id
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let call_url = format!("http://{http}/call?id={id}&token={TOKEN}");
    let dom = chromium(&dir, &call_url, "--dump-dom");
    for text in [
        "I would like to book a cleaning.",
        "Yes, please.",
        "[cut off by the caller]",
        "book_appointment",
        &code,
    ] {
        assert!(dom.contains(text), "the call page lacks {text:?}:\n{dom}");
    }
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR"));
    for (url, file) in [
        (&index, "staff-page.png"),
        (&call_url, "staff-page-call.png"),
    ] {
        let png = artifacts.join(file);
        let _ = std::fs::remove_file(&png);
        chromium(&dir, url, &format!("--screenshot={}", png.display()));
        let bytes = std::fs::read(&png).expect("screenshot written");
        assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", png.display());
    }

    let status = serve.proc.terminate(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()));
}
