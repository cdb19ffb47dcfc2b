//! RFC 4475 and RFC 5118 torture messages replayed at `frontdesk serve` over UDP and TCP (issue 12).
//!
//! The messages' Via headers name hosts such as 192.0.2.x and example.com, so frontdesk answers
//! them at `127.0.0.1:<Via port or 5060>` (the `received` address, RFC 3261 §18.2.2). To keep that
//! traffic off real networks the test re-runs itself inside a fresh network namespace
//! (`unshare -n`, only `lo` up), where it listens on those ports and reads the answers. After
//! every message it checks that frontdesk still answers OPTIONS.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const INNER: &str = "FRONTDESK_TORTURE_IN_NETNS";

/// What frontdesk must do with a message.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// A final response with this status code.
    Status(u16),
    /// No answer at all (responses that match no transaction, malformed responses).
    Silence,
}

use Want::*;

/// Expected answers, file by file (verdicts of tests/torture/*/INDEX.tsv).
const RFC4475: &[(&str, Want)] = &[
    ("wsinv", Status(481)), // valid; its To tag names a dialog we do not have
    ("intmeth", Status(501)),
    ("esc01", Status(200)),
    ("escnull", Status(405)),
    ("esc02", Status(501)),
    ("lwsdisp", Status(200)),
    ("longreq", Status(200)),
    ("dblreq", Status(405)),
    ("semiuri", Status(200)),
    ("transports", Status(200)),
    ("mpart01", Status(405)),
    ("unreason", Silence),
    ("noreason", Silence),
    ("badinv01", Status(400)),
    ("clerr", Status(400)),
    ("ncl", Status(400)),
    ("scalar02", Status(400)),
    ("scalarlg", Silence),
    ("quotbal", Status(400)),
    ("ltgtruri", Status(400)),
    ("lwsruri", Status(400)),
    ("lwsstart", Status(400)),
    ("trws", Status(400)),
    ("escruri", Status(400)),
    ("baddate", Status(400)),
    ("regbadct", Status(400)),
    ("badaspec", Status(400)),
    ("baddn", Status(400)),
    ("badvers", Status(505)),
    ("mismatch01", Status(400)),
    ("mismatch02", Status(400)),
    ("bigcode", Silence),
    ("badbranch", Status(200)),
    ("insuf", Status(400)),
    ("unkscm", Status(416)),
    ("novelsc", Status(416)),
    ("unksm2", Status(405)),
    ("bext01", Status(420)),
    ("invut", Status(415)),
    ("regaut01", Status(405)),
    ("multi01", Status(400)),
    ("mcl01", Status(400)),
    ("bcast", Silence),
    ("zeromf", Status(200)),
    ("cparam01", Status(405)),
    ("cparam02", Status(405)),
    ("regescrt", Status(405)),
    ("sdp01", Status(406)),
    ("inv2543", Status(200)),
    ("test", Status(400)),
];

const RFC5118: &[(&str, Want)] = &[
    ("ipv6-good", Status(405)),
    ("ipv6-bad", Status(400)),
    ("port-ambiguous", Status(405)),
    ("port-unambiguous", Status(405)),
    ("via-received-bracketed", Status(481)),
    ("via-received-plain", Status(200)),
    ("ipv6-sdp", Status(200)),
    ("mult-ip-in-header", Status(481)),
    ("mult-ip-in-sdp", Status(200)),
    ("ipv4-mapped", Status(200)),
    ("ipv6-three-colons", Status(400)),
    ("ipv6-two-colons", Status(200)),
];

/// Messages whose verdict RFC 4475 marks invalid (none may ever get a 2xx).
const INVALID: &[&str] = &[
    "badinv01",
    "clerr",
    "ncl",
    "scalar02",
    "scalarlg",
    "quotbal",
    "ltgtruri",
    "lwsruri",
    "lwsstart",
    "trws",
    "escruri",
    "baddate",
    "regbadct",
    "badaspec",
    "baddn",
    "badvers",
    "mismatch01",
    "mismatch02",
    "bigcode",
    "insuf",
    "unkscm",
    "novelsc",
    "bext01",
    "invut",
    "multi01",
    "mcl01",
    "bcast",
    "sdp01",
    "test",
    "ipv6-bad",
    "ipv6-three-colons",
];

#[test]
fn torture_messages_get_the_rfc_answers_and_frontdesk_keeps_serving() {
    if std::env::var_os(INNER).is_none() {
        require_tool("unshare", "util-linux");
        require_tool("ip", "iproute2");
        let exe = std::env::current_exe().expect("test binary");
        let out = Command::new("unshare")
            .arg("-n")
            .arg("--")
            .arg(exe)
            .arg("--exact")
            .arg("torture_messages_get_the_rfc_answers_and_frontdesk_keeps_serving")
            .arg("--nocapture")
            .arg("--test-threads=1")
            .env(INNER, "1")
            .output()
            .expect("run unshare (needs root or user namespaces)");
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "replay inside unshare -n failed:\n{text}"
        );
        assert!(text.contains("1 passed"), "{text}");
        eprintln!("{text}");
        return;
    }
    replay_inside_the_namespace();
}

fn replay_inside_the_namespace() {
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip link");
    assert!(up.success(), "cannot bring lo up in the namespace");
    // Make sure this is a private namespace: nothing but lo.
    let links = Command::new("ip")
        .args(["-o", "link"])
        .output()
        .expect("ip -o link");
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    assert_eq!(
        links.lines().count(),
        1,
        "not a private namespace:\n{links}"
    );

    let dir = TestDir::new("torture");
    let sim = Sim::start(&dir, None);
    let dialplans = Path::new(ROOT).join("dialplans");
    // Dual stack: the RFC 5118 messages are sent over IPv6 too.
    let (serve, serve_v6) = Serve::start_dual_stack(&dir, &dialplans, &sim.url());

    // Where frontdesk's answers to the messages' Via headers arrive.
    let mut sinks = Vec::new();
    for addr in [
        "127.0.0.1:5060",
        "127.0.0.1:5050",
        "[::1]:5060",
        "[::1]:6050",
    ] {
        let s = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        s.set_nonblocking(true).expect("nonblocking");
        sinks.push(s);
    }

    let root = Path::new(ROOT).join("tests/torture");
    let mut report = Vec::new();
    let mut failures = Vec::new();
    let mut rejections = 0;
    let runs = [
        ("rfc4475", RFC4475, serve.sip),
        ("rfc5118", RFC5118, serve.sip),
        ("rfc5118", RFC5118, serve_v6),
    ];
    for (set, table, target) in runs {
        for (name, want) in table {
            let mut bytes = std::fs::read(root.join(set).join(format!("{name}.dat")))
                .unwrap_or_else(|e| panic!("{set}/{name}.dat: {e}"));
            if target.is_ipv6() {
                // The second round must not look like a retransmission of the first.
                bytes = String::from_utf8_lossy(&bytes)
                    .replace("Call-ID: ", "Call-ID: v6.")
                    .replace("branch=z9hG4bK", "branch=z9hG4bKv6")
                    .into_bytes();
            }
            let got = send_udp(&bytes, target, &sinks, *want);
            let set = if target.is_ipv6() {
                "rfc5118 over IPv6"
            } else {
                set
            };
            report.push(format!("{set}/{name:<24} want {want:?}, got {got:?}"));
            if got != *want {
                failures.push(format!("{set}/{name}: want {want:?}, got {got:?}"));
            }
            if INVALID.contains(name) && got.iter().any(|c| (200..300).contains(c)) {
                failures.push(format!("{set}/{name}: an invalid message got a 2xx"));
            }
            if matches!(want, Status(c) if ![200, 481].contains(c)) {
                rejections += 1;
            }
            if !options_answered(serve.sip) {
                failures.push(format!("no OPTIONS answer after {set}/{name}"));
            }
        }
    }
    // The same rules hold over TCP: the answer comes back on the connection.
    for (name, want) in RFC4475 {
        let Status(code) = want else { continue };
        if *code == 200 || *code == 481 || ["clerr", "baddn", "dblreq"].contains(name) {
            // clerr and baddn (no empty line) wait for more octets on a stream; dblreq is a
            // datagram case.
            continue;
        }
        let bytes = std::fs::read(root.join("rfc4475").join(format!("{name}.dat"))).expect("dat");
        let got = send_tcp(&bytes, serve.sip);
        report.push(format!("tcp rfc4475/{name:<20} want {code}, got {got:?}"));
        if got != Some(*code) {
            failures.push(format!("tcp rfc4475/{name}: want {code}, got {got:?}"));
        }
        rejections += 1;
    }
    let log = serve.proc.log_text();
    let logged = log.matches("SIP request rejected").count();
    eprintln!("{}", report.join("\n"));
    assert!(
        failures.is_empty(),
        "{}\n---- all ----\n{}\n---- frontdesk ----\n{}",
        failures.join("\n"),
        report.join("\n"),
        tail(&log, 200)
    );
    assert_eq!(
        logged,
        rejections,
        "one info line per rejection expected:\n{}",
        tail(&log, 200)
    );
    assert!(!log.contains("panicked"), "{log}");
}

fn tail(text: &str, n: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(n)..].join("\n")
}

/// The Call-ID of a raw message (`Call-ID:` or `i:`), if any.
fn call_id_of(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    head.split("\r\n").find_map(|l| {
        let (name, value) = l.split_once(':')?;
        let name = name.trim();
        (name.eq_ignore_ascii_case("call-id") || name.eq_ignore_ascii_case("i"))
            .then(|| value.trim().to_owned())
    })
}

/// The final status codes of the responses in `datagrams` that belong to `call_id`.
fn finals_for(datagrams: &[Vec<u8>], call_id: Option<&str>) -> Vec<u16> {
    let mut codes = Vec::new();
    for d in datagrams {
        let text = String::from_utf8_lossy(d);
        let Some(code) = text
            .strip_prefix("SIP/2.0 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse::<u16>().ok())
        else {
            continue;
        };
        if code < 200 || call_id_of(d).as_deref() != call_id {
            continue;
        }
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    codes
}

/// Sends one datagram and returns the final answers it got (empty: silence).
fn send_udp(bytes: &[u8], target: SocketAddr, sinks: &[UdpSocket], want: Want) -> Vec<u16> {
    let sock = UdpSocket::bind(if target.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    })
    .expect("udp");
    sock.set_nonblocking(true).expect("nonblocking");
    sock.send_to(bytes, target).expect("send");
    let call_id = call_id_of(bytes);
    // A final answer comes within a moment; an INVITE's 200 after the model session opened.
    let wait = match want {
        Silence => Duration::from_millis(1500),
        Status(_) => Duration::from_secs(15),
    };
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_535];
    loop {
        for s in sinks.iter().chain(std::iter::once(&sock)) {
            while let Ok((n, _)) = s.recv_from(&mut buf) {
                got.push(buf[..n].to_vec());
            }
        }
        let finals = finals_for(&got, call_id.as_deref());
        if !finals.is_empty() {
            // Give a wrong second answer a moment to show up.
            std::thread::sleep(Duration::from_millis(100));
            for s in sinks.iter().chain(std::iter::once(&sock)) {
                while let Ok((n, _)) = s.recv_from(&mut buf) {
                    got.push(buf[..n].to_vec());
                }
            }
            return finals_for(&got, call_id.as_deref());
        }
        if Instant::now() > deadline {
            return finals;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl PartialEq<Want> for Vec<u16> {
    fn eq(&self, want: &Want) -> bool {
        match want {
            Silence => self.is_empty(),
            Status(c) => self.as_slice() == [*c],
        }
    }
}

/// Sends one message over a new TCP connection and returns the first final status read back.
fn send_tcp(bytes: &[u8], target: SocketAddr) -> Option<u16> {
    let mut s = TcpStream::connect(target).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(bytes).ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&got);
        for part in text.split("SIP/2.0 ").skip(1) {
            if let Some(code) = part.get(..3).and_then(|c| c.parse::<u16>().ok()) {
                if code >= 200 {
                    return Some(code);
                }
            }
        }
    }
    None
}

/// Whether frontdesk answers an OPTIONS with 200 (three tries).
fn options_answered(target: SocketAddr) -> bool {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
    sock.set_read_timeout(Some(Duration::from_millis(700)))
        .expect("timeout");
    let local = sock.local_addr().expect("addr");
    for n in 0..3 {
        let msg = format!(
            "OPTIONS sip:frontdesk@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};rport;branch=z9hG4bKalive{n}{}\r\nFrom: <sip:probe@{local}>;tag=a{n}\r\nTo: <sip:frontdesk@{target}>\r\nCall-ID: alive-{n}-{}@torture\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            local.port(),
            local.port()
        );
        let _ = sock.send_to(msg.as_bytes(), target);
        let mut buf = [0u8; 4096];
        if let Ok((len, _)) = sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..len]);
            if text.starts_with("SIP/2.0 200") {
                return true;
            }
        }
    }
    false
}
