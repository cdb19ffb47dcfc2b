//! SIP over TLS (issue 12 item 3): frontdesk listens with `--sip-tls-listen`, answers over the
//! TLS session (the validation layer sees it too), and with mutual TLS refuses a client without
//! the trunk's certificate (none, or one from another CA) in one log line each while it keeps
//! serving. Certificates are made at test time with `openssl`; the TLS client is Python's `ssl`
//! module.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// Sends one OPTIONS over TLS to `addr` (verifying the server with `dir`'s ca.pem, presenting
/// the client certificate of [`make_tls_certs`] in `client_cert`'s directory, if any); returns
/// the first response line, or `ERR <reason>`.
fn options_over_tls(dir: &TestDir, addr: SocketAddr, client_cert: Option<&TestDir>) -> String {
    let python = std::env::var("FRONTDESK_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import socket, ssl, sys
d, host, port, cert = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=d + "/ca.pem")
if cert:
    ctx.load_cert_chain(cert + "/client.pem", cert + "/client.key")
try:
    with socket.create_connection((host, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            lport = s.getsockname()[1]
            h = "[%s]" % host if ":" in host else host  # RFC 5118: IPv6 in brackets
            msg = ("OPTIONS sip:frontdesk@%s:%d;transport=tls SIP/2.0\r\n"
                   "Via: SIP/2.0/TLS %s:%d;branch=z9hG4bK-tls-1;rport\r\n"
                   "From: <sip:probe@%s>;tag=t1\r\nTo: <sip:frontdesk@%s>\r\n"
                   "Call-ID: tls-options-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                   "Content-Length: 0\r\n\r\n") % (h, port, h, lport, h, h)
            s.sendall(msg.encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            print(data.split(b"\r\n")[0].decode() if data else "ERR closed")
except Exception as e:
    print("ERR", e)
"#;
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(dir.path())
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(
            client_cert
                .map(|c| c.path().as_os_str())
                .unwrap_or_default(),
        )
        .output()
        .expect("python");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn start(dir: &TestDir, mutual: bool) -> (Serve, SocketAddr) {
    start_on(dir, mutual, "127.0.0.1")
}

/// frontdesk with a TLS listener on a free port of `ip` (UDP/TCP stay on 127.0.0.1).
fn start_on(dir: &TestDir, mutual: bool, ip: &str) -> (Serve, SocketAddr) {
    make_tls_certs(dir);
    let tls = SocketAddr::new(ip.parse().expect("ip"), free_port());
    let args = tls_listener_args(dir, tls, mutual);
    let dialplans = Path::new(ROOT).join("dialplans");
    let extra: Vec<&str> = args.iter().map(String::as_str).collect();
    (Serve::start(dir, &dialplans, &extra), tls)
}

#[test]
fn options_over_tls_is_answered() {
    let dir = TestDir::new("tls-options");
    let (serve, tls) = start(&dir, false);
    let line = options_over_tls(&dir, tls, None);
    assert_eq!(
        line,
        "SIP/2.0 200 OK",
        "OPTIONS over TLS:\n{}",
        serve.proc.log_text()
    );
    // The client closed without close_notify (as most SIP peers do): a normal close, no warning.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = serve.proc.log_text();
        if log.contains("SIP over TLS: the peer closed the session")
            || std::time::Instant::now() > deadline
        {
            break log;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(log.contains("the peer closed the session"), "{log}");
    let session = &log[log.find("SIP over TLS: session established").unwrap_or(0)..];
    assert!(
        !session.contains("WARN"),
        "a warning for a closed TLS session:\n{log}"
    );
}

#[test]
fn options_over_tls_on_ipv6_loopback_is_answered() {
    let dir = TestDir::new("tls-ipv6");
    let (serve, tls) = start_on(&dir, false, "::1");
    let line = options_over_tls(&dir, tls, None);
    assert_eq!(
        line,
        "SIP/2.0 200 OK",
        "OPTIONS over TLS on [::1]:\n{}",
        serve.proc.log_text()
    );
}

#[test]
fn mutual_tls_refuses_a_client_without_the_trunk_certificate_and_keeps_serving() {
    let dir = TestDir::new("tls-mutual");
    let (serve, tls) = start(&dir, true);
    // Another CA's client certificate, with the same subject as the trunk's.
    let rogue = TestDir::new("tls-rogue");
    make_tls_certs(&rogue);
    for (client, what) in [
        (None, "no client certificate"),
        (Some(&rogue), "another CA's certificate"),
    ] {
        let refused = options_over_tls(&dir, tls, client);
        assert!(
            refused.starts_with("ERR"),
            "answered with {what}: {refused}"
        );
    }
    // One log line per refused handshake.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let count = loop {
        let n = serve
            .proc
            .log_text()
            .matches("SIP over TLS: handshake refused")
            .count();
        if n >= 2 || std::time::Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(count, 2, "{}", serve.proc.log_text());
    // Still serving: the trunk with its certificate over TLS, and OPTIONS over UDP.
    let line = options_over_tls(&dir, tls, Some(&dir));
    assert_eq!(line, "SIP/2.0 200 OK", "{}", serve.proc.log_text());
    wait_for_sip(serve.sip, Duration::from_secs(5));
}
