//! frontdesk with a real Kamailio 5.6 (issue 6): outbound registration with digest authentication,
//! calls through a record-routing registrar, and load balancing by Kamailio's dispatcher.
//!
//! Each test starts its own Kamailio on free loopback ports, with a config generated from a template
//! in tests/kamailio/ into the test's temp dir (the templates include the shipped configs in
//! deploy/kamailio/ unchanged), its own sqlite subscriber database (made with the sqlite3 CLI) and
//! its control socket in the temp dir; it is stopped when the test ends. Needs the Debian packages
//! `kamailio`, `kamailio-sqlite-modules`, `sqlite3` and `sip-tester` (SIPp), plus espeak-ng and sox
//! for the caller's speech — `tests/run.sh` installs them.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const CALLER_SENTENCE: &str = "Hello, I would like to book a cleaning.";
const AGENT_PASSWORD: &str = "agent-secret-7";

/// A running Kamailio, stopped (SIGTERM, then SIGKILL) on drop.
struct Kamailio {
    proc: Proc,
    addr: SocketAddr,
    ctl: PathBuf,
}

impl Kamailio {
    /// The registrar of deploy/kamailio/registrar.cfg with `users` (name, password) in its sqlite
    /// `subscriber` table and digest `algorithm` (`MD5` or `SHA-256`).
    fn registrar(dir: &TestDir, algorithm: &str, users: &[(&str, &str)]) -> Kamailio {
        Kamailio::registrar_with(dir, algorithm, users, "")
    }

    /// [`Kamailio::registrar`] that also listens for SIP over TLS on `tls` with the server
    /// certificate of [`make_tls_certs`] (module `tls.so`, Debian `kamailio-tls-modules`).
    fn tls_registrar(dir: &TestDir, users: &[(&str, &str)], tls: SocketAddr) -> Kamailio {
        assert!(
            Path::new("/usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so").exists()
                || Path::new("/usr/lib/kamailio/modules/tls.so").exists(),
            "Kamailio's TLS module is missing: install the Debian package `kamailio-tls-modules` (tests/run.sh and .ci/run do this)"
        );
        let defines = format!(
            "#!define WITH_TLS\n#!define TLS_PORT {}\n#!define TLS_CERT \"{}\"\n#!define TLS_KEY \"{}\"",
            tls.port(),
            dir.join("server.pem").display(),
            dir.join("server.key").display()
        );
        Kamailio::registrar_with(dir, "MD5", users, &defines)
    }

    /// The registrar with `tls` (`#!define` lines or nothing) in its config.
    fn registrar_with(
        dir: &TestDir,
        algorithm: &str,
        users: &[(&str, &str)],
        tls: &str,
    ) -> Kamailio {
        require_kamailio();
        require_tool("sqlite3", "sqlite3");
        let db = dir.join("kamailio.sqlite");
        for schema in ["standard-create.sql", "auth_db-create.sql"] {
            let sql = Path::new("/usr/share/kamailio/db_sqlite").join(schema);
            assert!(
                sql.exists(),
                "{} is missing: install the Debian package `kamailio-sqlite-modules` (tests/run.sh and .ci/run do this)",
                sql.display()
            );
            sqlite(&db, &std::fs::read_to_string(&sql).expect("read schema"));
        }
        for (user, password) in users {
            sqlite(
                &db,
                &format!("INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES ('{user}', '127.0.0.1', '{password}', '', '');"),
            );
        }
        Kamailio::start(
            dir,
            "registrar.cfg.in",
            &[("@ALGORITHM@", algorithm), ("@TLS@", tls)],
        )
    }

    /// The load balancer of deploy/kamailio/dispatcher.cfg in front of `backends`.
    fn dispatcher(dir: &TestDir, backends: &[SocketAddr]) -> Kamailio {
        require_kamailio();
        let list: String = backends.iter().map(|b| format!("1 sip:{b}\n")).collect();
        std::fs::write(dir.join("dispatcher.list"), list).expect("write dispatcher.list");
        Kamailio::start(dir, "dispatcher.cfg.in", &[])
    }

    fn start(dir: &TestDir, template: &str, values: &[(&str, &str)]) -> Kamailio {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let text = std::fs::read_to_string(Path::new(ROOT).join("tests/kamailio").join(template))
            .expect("read template");
        let mut text = text
            .replace("@PORT@", &port.to_string())
            .replace("@DIR@", &dir.path().display().to_string())
            .replace("@ROOT@", ROOT);
        for (k, v) in values {
            text = text.replace(k, v);
        }
        let cfg = dir.join("kamailio.cfg");
        std::fs::write(&cfg, text).expect("write kamailio.cfg");
        let mut cmd = Command::new("kamailio");
        cmd.arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-m", "32", "-M", "8"])
            .arg("-Y")
            .arg(dir.path())
            .arg("-P")
            .arg(dir.join("kamailio.pid"));
        let proc = Proc::spawn("kamailio", cmd, dir.join("kamailio.log"));
        let k = Kamailio {
            proc,
            addr,
            ctl: dir.join("kamailio.ctl"),
        };
        k.wait_ready(Duration::from_secs(10));
        k
    }

    /// Waits until Kamailio answers an OPTIONS to itself with 200.
    fn wait_ready(&self, within: Duration) {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let local = sock.local_addr().expect("addr");
        let deadline = Instant::now() + within;
        let mut n = 0;
        while Instant::now() < deadline {
            n += 1;
            let addr = self.addr;
            let msg = format!(
                "OPTIONS sip:{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKkam{n}\r\nFrom: <sip:probe@{local}>;tag=k{n}\r\nTo: <sip:{addr}>\r\nCall-ID: kam-probe-{n}@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = sock.send_to(msg.as_bytes(), addr);
            let mut buf = [0u8; 2048];
            if let Ok((len, _)) = sock.recv_from(&mut buf) {
                if String::from_utf8_lossy(&buf[..len]).starts_with("SIP/2.0 200") {
                    return;
                }
            }
        }
        panic!(
            "Kamailio did not answer OPTIONS on {} within {within:?}:\n{}",
            self.addr,
            self.proc.log_text()
        );
    }

    /// Runs `kamcmd` on this Kamailio's control socket; returns stdout+stderr.
    fn kamcmd(&self, args: &[&str]) -> String {
        let out = Command::new("kamcmd")
            .arg("-s")
            .arg(format!("unix:{}", self.ctl.display()))
            .args(args)
            .output()
            .expect("run kamcmd");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// The contacts bound to `user` in the location table (`ul.lookup location <user>`).
    fn contacts(&self, user: &str) -> Vec<String> {
        self.kamcmd(&["ul.lookup", "location", user])
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Address: "))
            .map(str::to_owned)
            .collect()
    }

    /// Waits until `user` has a contact containing `needle`; returns the contacts.
    fn wait_for_contact(&self, user: &str, needle: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let c = self.contacts(user);
            if c.iter().any(|a| a.contains(needle)) {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "no binding for {user} containing {needle} after {within:?}; ul.dump:\n{}",
                self.kamcmd(&["ul.dump"])
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        self.proc.log_text()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGTERM lets the main process stop its children; Proc's drop then kills what is left.
        let _ = self.proc.terminate(Duration::from_secs(3));
    }
}

fn require_kamailio() {
    require_tool("kamailio", "kamailio");
    require_tool("kamcmd", "kamailio");
    assert!(
        Path::new("/usr/share/kamailio/db_sqlite").exists(),
        "the Kamailio sqlite module is missing: install the Debian package `kamailio-sqlite-modules` (tests/run.sh and .ci/run do this)"
    );
}

fn sqlite(db: &Path, sql: &str) {
    use std::io::Write as _;
    let mut child = Command::new("sqlite3")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sqlite3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(sql.as_bytes())
        .expect("write sql");
    let out = child.wait_with_output().expect("sqlite3");
    assert!(
        out.status.success(),
        "sqlite3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A dialplan that answers every number with the test agent.
fn dialplans(dir: &TestDir) -> PathBuf {
    agent_dialplan(dir, "Bright Smile Dental, hello.", "")
}

/// A `frontdesk serve` with its own database, log and optional config file.
struct Frontdesk {
    proc: Proc,
    sip: SocketAddr,
    db: PathBuf,
}

impl Frontdesk {
    fn start(
        dir: &TestDir,
        name: &str,
        config: Option<&str>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Frontdesk {
        let port = free_port();
        let sip: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let rtp_low = free_port_block(41);
        let db = dir.join(&format!("{name}.db"));
        // A `--db` in `extra` (e.g. a shared PostgreSQL) replaces the instance's own SQLite
        // file, a `--dialplans` the test dialplan, a `--rtp-ports` the 40 ports from a free one.
        let own_db = !extra.contains(&"--db");
        let mut cmd = Command::new(FRONTDESK);
        cmd.arg("serve")
            .arg("--sip-listen")
            .arg(sip.to_string())
            .arg("--media-ip")
            .arg("127.0.0.1")
            .args(extra)
            .env_remove("OPENAI_API_KEY")
            .env_remove("FRONTDESK_REALTIME_URL")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info,rsipstack=warn,frontdesk=debug");
        if own_db {
            cmd.arg("--db").arg(&db);
        }
        if !extra.contains(&"--rtp-ports") {
            cmd.arg("--rtp-ports")
                .arg(format!("{}-{}", rtp_low, rtp_low + 40));
        }
        if !extra.contains(&"--dialplans") {
            cmd.arg("--dialplans").arg(dialplans(dir));
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(text) = config {
            let path = dir.join(&format!("{name}.toml"));
            std::fs::write(&path, text).expect("write config");
            cmd.arg("--config").arg(path);
        }
        let proc = Proc::spawn(name, cmd, dir.join(&format!("{name}.log")));
        wait_for_sip(sip, Duration::from_secs(20));
        Frontdesk { proc, sip, db }
    }

    /// The log without ANSI colour codes.
    fn log(&self) -> String {
        strip_ansi(&self.proc.log_text())
    }

    /// Waits until the log holds `needle` at least `count` times; returns the log.
    fn wait_log(&self, needle: &str, count: usize, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if log.matches(needle).count() >= count {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "frontdesk's log does not show '{needle}' {count} times after {within:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM; asserts a clean exit.
    fn stop(&mut self) {
        let status = self.proc.terminate(Duration::from_secs(15));
        assert!(
            status.is_some_and(|s| s.success()),
            "frontdesk did not stop cleanly on SIGTERM: {status:?}\n{}",
            self.log()
        );
    }
}

/// A SIPp caller (scenario from tests/sipp) calling `service` at `target` (the proxy).
fn sipp(
    dir: &TestDir,
    scenario: &str,
    target: SocketAddr,
    service: &str,
    calls: u32,
    hold_ms: u64,
) -> Command {
    require_tool("sipp", "sip-tester");
    let media_port = free_port();
    let sip_port = free_port();
    let mut cmd = Command::new("sipp");
    cmd.current_dir(dir.path())
        .arg("-sf")
        .arg(Path::new(ROOT).join("tests/sipp").join(scenario))
        .arg(target.to_string())
        .args(["-s", service, "-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .arg("-p")
        .arg(sip_port.to_string())
        .arg("-mp")
        .arg(media_port.to_string())
        .arg("-m")
        .arg(calls.to_string())
        .arg("-l")
        .arg(calls.to_string())
        .args(["-r", "10"])
        .arg("-d")
        .arg(hold_ms.to_string())
        .args([
            "-nostdin",
            "-timeout",
            "30s",
            "-timeout_error",
            "-trace_err",
            "-trace_msg",
        ])
        .arg("-error_file")
        .arg(dir.join(&format!("{scenario}.errors.log")))
        .arg("-message_file")
        .arg(dir.join(&format!("{scenario}.messages.log")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn sipp_ok(dir: &TestDir, scenario: &str, out: std::process::Output, context: &str) {
    let run = sipp_result(dir, scenario, out);
    assert!(
        run.success,
        "SIPp {scenario} failed:\n{}\n{context}",
        run.output
    );
}

/// Stops frontdesk (SIGTERM: it hangs up with BYE) and checks that the SIPp `caller` running
/// `uac_proxy_wait_bye.xml` got that BYE through the proxy `kam`.
fn hang_up_by_shutdown(
    dir: &TestDir,
    fd: &mut Frontdesk,
    kam: &Kamailio,
    caller: std::process::Child,
) {
    fd.stop();
    let out = caller.wait_with_output().expect("sipp");
    sipp_ok(
        dir,
        "uac_proxy_wait_bye.xml",
        out,
        &format!(
            "---- kamailio ----\n{}\n---- frontdesk ----\n{}",
            kam.log(),
            fd.log()
        ),
    );
}

/// Frontdesk registers with a wrong password: every attempt is refused, the log says why in plain
/// words, and the retries back off (1 s, 2 s, 4 s ...); no binding appears; the password is never
/// logged.
#[test]
fn wrong_password_is_reported_and_retried_with_backoff() {
    let dir = TestDir::new("kam-wrong-pw");
    let kam = Kamailio::registrar(&dir, "MD5", &[("agent", AGENT_PASSWORD)]);
    let wrong = "not-the-password-42";
    std::fs::write(dir.join("agent.password"), format!("{wrong}\n")).expect("write");
    let config = format!(
        r#"
[[registrations]]
name = "pbx"
registrar = "sip:{}"
user = "agent"
password_file = "{}"
expires_secs = 120
"#,
        kam.addr,
        dir.join("agent.password").display()
    );
    let mut fd = Frontdesk::start(&dir, "frontdesk", Some(&config), &[], &[]);
    let log = fd.wait_log("registration rejected", 3, Duration::from_secs(10));
    assert!(
        log.contains("401 Unauthorized: wrong password or user"),
        "the rejection is not explained:\n{log}"
    );
    for wait in ["retrying in 1s", "retrying in 2s", "retrying in 4s"] {
        assert!(
            log.contains(wait),
            "no '{wait}' in the log (backoff):\n{log}"
        );
    }
    assert!(
        kam.contacts("agent").is_empty(),
        "bound with a wrong password?"
    );
    // Kamailio saw the retries: a challenge, then a refused answer, per attempt.
    let challenges = kam
        .log()
        .matches("REGISTER sip:agent@127.0.0.1 from")
        .count();
    assert!(
        challenges >= 6,
        "Kamailio saw {challenges} REGISTER verdicts:\n{}",
        kam.log()
    );
    fd.stop();
    let log = fd.log();
    assert!(!log.contains(wrong), "the password appears in the log");
}

/// With the right password (SHA-256 digest, qop=auth) frontdesk is bound: two registrations, one
/// over UDP (password from an environment variable) and one over TCP (password from a file), both
/// appear in Kamailio's location table; on SIGTERM both are removed (Expires: 0).
#[test]
fn right_password_binds_and_shutdown_unregisters() {
    let dir = TestDir::new("kam-bind");
    let kam = Kamailio::registrar(
        &dir,
        "SHA-256",
        &[("agent", AGENT_PASSWORD), ("desk2", "second-secret")],
    );
    std::fs::write(dir.join("desk2.password"), "second-secret\n").expect("write");
    let config = format!(
        r#"
[[registrations]]
name = "pbx-udp"
registrar = "sip:{addr}"
user = "agent"
password_env = "FRONTDESK_TEST_AGENT_PASSWORD"
expires_secs = 300

[[registrations]]
name = "pbx-tcp"
registrar = "sip:{addr};transport=tcp"
user = "desk2"
contact_user = "reception"
password_file = "{file}"
expires_secs = 600
"#,
        addr = kam.addr,
        file = dir.join("desk2.password").display()
    );
    let mut fd = Frontdesk::start(
        &dir,
        "frontdesk",
        Some(&config),
        &[],
        &[("FRONTDESK_TEST_AGENT_PASSWORD", AGENT_PASSWORD)],
    );
    let port = fd.sip.port();
    let udp = kam.wait_for_contact(
        "agent",
        &format!("sip:agent@127.0.0.1:{port}"),
        Duration::from_secs(10),
    );
    assert!(udp.iter().all(|c| !c.contains("transport")), "{udp:?}");
    let tcp = kam.wait_for_contact(
        "desk2",
        &format!("sip:reception@127.0.0.1:{port};transport=tcp"),
        Duration::from_secs(10),
    );
    assert_eq!(tcp.len(), 1, "{tcp:?}");
    let log = fd.wait_log("registered: the registrar binds", 2, Duration::from_secs(5));
    assert!(log.contains("for 300s; refreshing in 240s"), "{log}");
    assert!(log.contains("for 600s; refreshing in 480s"), "{log}");
    // Both answered a SHA-256 challenge.
    assert_eq!(
        log.matches("answering the digest challenge algorithm=SHA-256 qop_auth=true")
            .count(),
        2,
        "{log}"
    );

    fd.stop();
    assert!(
        kam.contacts("agent").is_empty(),
        "UDP binding left after shutdown"
    );
    assert!(
        kam.contacts("desk2").is_empty(),
        "TCP binding left after shutdown"
    );
    let log = fd.log();
    assert_eq!(log.matches("unregistered (Expires: 0)").count(), 2, "{log}");
    assert!(!log.contains(AGENT_PASSWORD) && !log.contains("second-secret"));
}

/// A caller reaches the registered frontdesk through Kamailio (record_route; frontdesk registered
/// over TCP, the caller uses UDP, so Kamailio changes transport and double-record-routes). The
/// caller talks to the agent and hangs up through the proxy; a second call is ended by
/// frontdesk's shutdown, and its BYE reaches the caller through the proxy too.
#[test]
fn call_through_the_registrar_follows_the_route_set() {
    let dir = TestDir::new("kam-call");
    let (ul, _) = speech(&dir, "caller", CALLER_SENTENCE);
    std::fs::write(dir.join("audio.ul"), &ul).expect("write");
    let kam = Kamailio::registrar(&dir, "MD5", &[("agent", AGENT_PASSWORD)]);
    std::fs::write(dir.join("agent.password"), AGENT_PASSWORD).expect("write");
    let sim = Sim::start_scenario(&dir, "e2e.toml");
    let url = sim.url();
    let config = format!(
        r#"
[[registrations]]
name = "pbx"
registrar = "sip:{};transport=tcp"
user = "agent"
password_file = "{}"
expires_secs = 300
"#,
        kam.addr,
        dir.join("agent.password").display()
    );
    let mut fd = Frontdesk::start(
        &dir,
        "frontdesk",
        Some(&config),
        &["--realtime-url", url.as_str()],
        &[],
    );
    let port = fd.sip.port();
    kam.wait_for_contact(
        "agent",
        &format!("127.0.0.1:{port};transport=tcp"),
        Duration::from_secs(10),
    );

    // Call 1: the caller talks, then hangs up (its BYE follows the route set).
    let out = sipp(&dir, "uac_proxy_talk.xml", kam.addr, "agent", 1, 7000)
        .output()
        .expect("sipp");
    sipp_ok(
        &dir,
        "uac_proxy_talk.xml",
        out,
        &format!(
            "---- kamailio ----\n{}\n---- frontdesk ----\n{}",
            kam.log(),
            fd.log()
        ),
    );

    // Call 2: frontdesk hangs up (SIGTERM) while the caller waits for its BYE.
    let child = sipp(&dir, "uac_proxy_wait_bye.xml", kam.addr, "agent", 1, 0)
        .spawn()
        .expect("sipp");
    fd.wait_log("call answered", 2, Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(1500));
    hang_up_by_shutdown(&dir, &mut fd, &kam, child);

    // The proxy carried the whole dialogs: INVITE to the registered TCP contact, the callers' ACKs
    // and first BYE, and frontdesk's BYE (from its SIP port, over the TCP connection).
    let klog = kam.log();
    assert_eq!(klog.matches("location INVITE cid=").count(), 2, "{klog}");
    assert!(
        klog.contains(&format!("-> sip:agent@127.0.0.1:{port};transport=tcp")),
        "{klog}"
    );
    assert_eq!(klog.matches("in-dialog ACK").count(), 2, "{klog}");
    assert_eq!(klog.matches("in-dialog BYE").count(), 2, "{klog}");
    assert!(
        klog.contains(&format!("from 127.0.0.1:{port} (tcp)"))
            && klog.contains("REQ BYE sip:caller@"),
        "frontdesk's BYE did not go through the proxy:\n{klog}"
    );
    // Its Request-URI is the caller's Contact as sent (UDP), not the TCP hop's transport.
    let our_bye = klog
        .lines()
        .find(|l| l.contains("REQ BYE sip:caller@"))
        .expect("frontdesk's BYE");
    assert!(our_bye.contains(";transport=UDP "), "{our_bye}");

    // frontdesk talked to the agent: the caller's audio reached the session, the agent's audio
    // reached the caller, and both calls ended for the right reason.
    let rows = ended_calls(&fd.db, 2);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let talked = rows
        .iter()
        .find(|r| r.end_reason.as_deref() == Some("remote-bye"))
        .unwrap_or_else(|| panic!("no call ended by the caller's BYE: {rows:?}"));
    let shut = rows
        .iter()
        .find(|r| r.end_reason.as_deref() == Some("shutdown"))
        .unwrap_or_else(|| panic!("no call ended by the shutdown: {rows:?}"));
    for r in [talked, shut] {
        assert_eq!(r.sip_status, Some(200), "{r:?}");
        assert!(r.packets_in > 25, "no caller audio: {r:?}");
    }
    // Greeting (~2 s) plus the spoken reply: well over 100 packets of 20 ms.
    assert!(
        talked.packets_out > 100,
        "too little agent audio: {talked:?}"
    );
    let client_events = read_jsonl(&sim.record);
    let appended = appended_audio(&client_events);
    if let Err(e) = relayed_exactly(&appended, &ul) {
        panic!("the agent did not hear the caller through the proxy: {e}");
    }
    let server_events = read_jsonl(&sim.record_server);
    assert!(
        server_events
            .iter()
            .any(|e| e["type"] == "input_audio_buffer.committed"),
        "the simulator did not take a caller turn"
    );
    let replies = server_events
        .iter()
        .filter(|e| e["type"] == "response.output_audio.done" || e["type"] == "response.done")
        .count();
    assert!(
        replies >= 2,
        "expected the greeting and a reply, got {replies} responses"
    );
    // The shutdown removed the binding.
    assert!(
        kam.contacts("agent").is_empty(),
        "binding left after shutdown"
    );
}

/// Issue 12: Kamailio as a TLS registrar. frontdesk registers over TLS (its outbound connector,
/// verifying Kamailio's certificate against `[sip.tls] ca`) with its TLS listener in Contact; a
/// caller reaches it through Kamailio, which relays the INVITE over TLS to that listener; the
/// caller's audio reaches the session; at shutdown frontdesk's BYE goes over TLS to Kamailio
/// (the route set) and on to the caller, and the binding is removed over TLS.
#[test]
fn tls_registrar_binds_and_relays_a_call_over_tls() {
    let dir = TestDir::new("kam-tls");
    make_tls_certs(&dir);
    let (ul, _) = speech(&dir, "caller", CALLER_SENTENCE);
    std::fs::write(dir.join("audio.ul"), &ul).expect("write");
    let kam_tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let kam = Kamailio::tls_registrar(&dir, &[("agent", AGENT_PASSWORD)], kam_tls);
    std::fs::write(dir.join("agent.password"), AGENT_PASSWORD).expect("write");
    let sim = Sim::start(
        &dir,
        Some(&Path::new(ROOT).join("tests/scenarios/e2e.toml")),
    );
    let url = sim.url();
    let config = format!(
        r#"
[sip.tls]
ca = "{ca}"
# The caller's offer is plain RTP (SIPp), relayed by Kamailio over TLS.
srtp = "offer"

[[registrations]]
name = "pbx-tls"
registrar = "sip:{kam_tls};transport=tls"
user = "agent"
password_file = "{password}"
expires_secs = 300
"#,
        ca = dir.join("ca.pem").display(),
        password = dir.join("agent.password").display()
    );
    let our_tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut extra = tls_listener_args(&dir, our_tls, false);
    extra.extend(["--realtime-url".to_owned(), url]);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut fd = Frontdesk::start(&dir, "frontdesk", Some(&config), &extra, &[]);
    let contacts = kam.wait_for_contact(
        "agent",
        &format!("127.0.0.1:{};transport=tls", our_tls.port()),
        Duration::from_secs(15),
    );
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    fd.wait_log("registered: the registrar binds", 1, Duration::from_secs(5));
    let klog = kam.log();
    let register = klog
        .lines()
        .find(|l| l.contains("REQ REGISTER"))
        .unwrap_or_else(|| panic!("no REGISTER at Kamailio:\n{klog}"));
    assert!(
        register.contains("(tls)"),
        "the REGISTER did not come over TLS: {register}"
    );

    // A caller (UDP) reaches frontdesk through Kamailio; frontdesk hangs up at shutdown.
    let child = sipp(&dir, "uac_proxy_wait_bye.xml", kam.addr, "agent", 1, 0)
        .spawn()
        .expect("sipp");
    fd.wait_log("call answered", 1, Duration::from_secs(20));
    // The caller's whole sentence reached the session once the simulator took the turn.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&sim.record_server)
        .unwrap_or_default()
        .contains("input_audio_buffer.committed")
    {
        assert!(
            Instant::now() < deadline,
            "the simulator never took the caller's turn:\n{}",
            fd.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    hang_up_by_shutdown(&dir, &mut fd, &kam, child);
    let klog = kam.log();
    let port = our_tls.port();
    assert!(
        klog.contains(&format!("-> sip:agent@127.0.0.1:{port};transport=tls")),
        "the INVITE was not relayed to the TLS contact:\n{klog}"
    );
    let log = fd.log();
    assert!(
        log.contains("transport=Tls"),
        "the INVITE did not arrive over TLS:\n{log}"
    );
    // frontdesk's BYE reached Kamailio over TLS (the route set), then the caller.
    let our_bye = klog
        .lines()
        .find(|l| l.contains("REQ BYE sip:caller@"))
        .unwrap_or_else(|| panic!("frontdesk's BYE did not reach Kamailio:\n{klog}"));
    assert!(
        our_bye.contains("(tls)"),
        "frontdesk's BYE did not come over TLS: {our_bye}"
    );
    let rows = ended_calls(&fd.db, 1);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].sip_status, Some(200), "{rows:?}");
    assert_eq!(rows[0].end_reason.as_deref(), Some("shutdown"), "{rows:?}");
    if let Err(e) = relayed_exactly(&appended_audio(&read_jsonl(&sim.record)), &ul) {
        panic!("the caller's audio did not reach the session through the TLS hop: {e}");
    }
    // The shutdown removed the binding (REGISTER with Expires: 0 over TLS).
    assert!(
        kam.contacts("agent").is_empty(),
        "binding left after shutdown"
    );
    assert_eq!(log.matches("unregistered (Expires: 0)").count(), 1, "{log}");
    assert!(!log.contains(AGENT_PASSWORD), "the password is in the log");
}

/// Kamailio's dispatcher (deploy/kamailio/dispatcher.cfg, as shipped) spreads calls round-robin
/// over two frontdesk instances; every call is answered and ended through the proxy.
#[test]
fn dispatcher_spreads_calls_over_two_instances() {
    let dir = TestDir::new("kam-dispatch");
    let (ul, _) = speech(&dir, "caller", CALLER_SENTENCE);
    std::fs::write(dir.join("audio.ul"), &ul).expect("write");
    let mut a = Frontdesk::start(&dir, "frontdesk-a", None, &[], &[]);
    let mut b = Frontdesk::start(&dir, "frontdesk-b", None, &[], &[]);
    let kam = Kamailio::dispatcher(&dir, &[a.sip, b.sip]);
    let calls = 4;
    let out = sipp(
        &dir,
        "uac_proxy_talk.xml",
        kam.addr,
        "reception",
        calls,
        1500,
    )
    .output()
    .expect("sipp");
    sipp_ok(
        &dir,
        "uac_proxy_talk.xml",
        out,
        &format!("---- kamailio ----\n{}", kam.log()),
    );
    a.stop();
    b.stop();
    let rows_a = ended_calls(&a.db, 0);
    let rows_b = ended_calls(&b.db, 0);
    assert!(
        !rows_a.is_empty() && !rows_b.is_empty(),
        "both instances must get calls: a={} b={}\n{}",
        rows_a.len(),
        rows_b.len(),
        kam.log()
    );
    assert_eq!(rows_a.len() + rows_b.len(), calls as usize);
    for r in rows_a.iter().chain(&rows_b) {
        assert_eq!(r.sip_status, Some(200), "{r:?}");
        assert_eq!(r.end_reason.as_deref(), Some("remote-bye"), "{r:?}");
        assert_eq!(r.called.as_deref(), Some("reception"), "{r:?}");
    }
    let klog = kam.log();
    for fd in [a.sip, b.sip] {
        assert!(
            klog.contains(&format!("-> sip:{fd}")),
            "no call dispatched to {fd}:\n{klog}"
        );
    }
    assert_eq!(
        klog.matches("in-dialog BYE").count(),
        calls as usize,
        "{klog}"
    );
}

/// Issue 13: two instances behind the dispatcher share one PostgreSQL. 50 callers, spread over
/// both instances, ask for the same slot at about the same time (the simulator's scenario makes
/// every call book Dr. Weber's Tuesday 09:00 whitening): the database ends up with exactly one
/// booking, the 49 other tool calls answered `slot_taken` with alternatives, every call of both instances is in
/// the one `calls` table, and `frontdesk appointments list --db postgres://…` shows the booking.
#[test]
fn two_instances_on_one_postgres_book_a_slot_once() {
    let Some(pg) = frontdesk::store::testing::pg_server() else {
        return;
    };
    let target = pg.create_database().expect("createdb").to_string();
    let dir = TestDir::new("kam-pg");
    let (ul, _) = speech(&dir, "caller", CALLER_SENTENCE);
    std::fs::write(dir.join("audio.ul"), &ul).expect("write");
    // Next Tuesday at least two days ahead (within the 90-day booking window).
    let day = next_tuesday();
    let slot = format!("{day}T09:00");
    let scenario = dir.join("book.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"greeting = "Bright Smile Dental, hello."
[[turn]]
heard = "I would like to book."
call = {{ name = "book_appointment", arguments = {{ service = "whitening", start = "{slot}", customer_name = "Race Caller", phone = "+49 30 5550100" }} }}
say = "Thank you."
[fallback]
say = "Goodbye."
"#
        ),
    )
    .expect("write scenario");
    let plans = clinic_dialplan(
        &dir,
        "clinic-plans",
        r#"voice = "alloy"
greeting = "Bright Smile Dental, hello."
instructions = "You are the receptionist of Bright Smile Dental."
calendar = "bright-smile"
"#,
    );
    let calendar = Path::new(ROOT).join("deploy/calendar.example.toml");
    let extra = [
        "--db",
        target.as_str(),
        "--calendar",
        calendar.to_str().expect("path"),
        "--sim-scenario",
        scenario.to_str().expect("path"),
        "--dialplans",
        plans.to_str().expect("path"),
    ];
    // 50 calls need more RTP ports than the other tests: 200 per instance, in blocks reserved
    // so that no other test of this binary is handed a port inside them.
    let (low_a, low_b) = (free_port_block(200), free_port_block(200));
    let ports_a = format!("{low_a}-{}", low_a + 199);
    let ports_b = format!("{low_b}-{}", low_b + 199);
    let with_ports = |ports: &str| {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        v.extend(["--rtp-ports".to_string(), ports.to_string()]);
        v
    };
    let (extra_a, extra_b) = (with_ports(&ports_a), with_ports(&ports_b));
    let mut a = Frontdesk::start(
        &dir,
        "frontdesk-a",
        None,
        &extra_a.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
    );
    let mut b = Frontdesk::start(
        &dir,
        "frontdesk-b",
        None,
        &extra_b.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
    );
    let kam = Kamailio::dispatcher(&dir, &[a.sip, b.sip]);
    let calls = 50;
    let out = sipp(
        &dir,
        "uac_proxy_talk.xml",
        kam.addr,
        "reception",
        calls,
        5000,
    )
    .output()
    .expect("sipp");
    sipp_ok(
        &dir,
        "uac_proxy_talk.xml",
        out,
        &format!("---- a ----\n{}\n---- b ----\n{}", a.log(), b.log()),
    );
    a.stop();
    b.stop();
    let klog = kam.log();
    for fd in [a.sip, b.sip] {
        assert!(
            klog.contains(&format!("-> sip:{fd}")),
            "no call dispatched to {fd}:\n{klog}"
        );
    }

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (rows, booked, tools) = rt.block_on(async {
        let store = frontdesk::store::Store::open(
            frontdesk::store::DbTarget::parse(&target, None).expect("url"),
        )
        .await
        .expect("open postgres");
        let rows = store.recent_calls(50).await.expect("calls");
        let booked: Vec<(String, String)> = sqlx::query_as(
            "SELECT customer_name, start_utc FROM appointments WHERE status = 'booked'",
        )
        .fetch_all(store.pool())
        .await
        .expect("appointments");
        let tools: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT result, error FROM tool_calls WHERE name = 'book_appointment'")
                .fetch_all(store.pool())
                .await
                .expect("tool calls");
        (rows, booked, tools)
    });
    // Every call of both instances is in the one table.
    assert_eq!(rows.len(), calls as usize, "{rows:?}");
    for r in &rows {
        assert_eq!(r.sip_status, Some(200), "{r:?}");
        assert_eq!(r.end_reason.as_deref(), Some("remote-bye"), "{r:?}");
    }
    assert_eq!(booked.len(), 1, "exactly one booking: {booked:?}");
    assert_eq!(booked[0].0, "Race Caller");
    assert_eq!(
        tools.len(),
        calls as usize,
        "one booking attempt per call: {tools:?}"
    );
    let won = tools.iter().filter(|(_, e)| e.is_none()).count();
    let taken: Vec<_> = tools
        .iter()
        .filter(|(_, e)| e.as_deref().is_some_and(|e| e.starts_with("slot_taken")))
        .collect();
    assert_eq!((won, taken.len()), (1, calls as usize - 1), "{tools:?}");
    for (result, _) in &taken {
        assert!(result.contains("alternatives"), "{result}");
    }

    // Staff see the booking with the same URL.
    let list = Command::new(FRONTDESK)
        .args(["appointments", "list", "--all", "--db", &target])
        .output()
        .expect("frontdesk appointments list");
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(text.contains("Race Caller"), "{text}");
}
