//! Shared harness of the end-to-end tests: starts `frontdesk serve` and `frontdesk sim` as real
//! processes on loopback ports, runs SIPp scenarios against them, captures RTP with dumpcap/tshark
//! and makes speech audio with espeak-ng and sox. Every process is killed when its guard drops.
// Each test binary compiles this module and uses only a part of it.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;

/// The frontdesk binary under test.
pub const FRONTDESK: &str = env!("CARGO_BIN_EXE_frontdesk");
/// The repository root.
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Fails the test with a clear message when a required tool is missing.
pub fn require_tool(name: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{name}` is not installed: install the Debian package `{package}` (tests/run.sh and .ci/run do this)"
    );
}

/// A temp directory that survives the test when `FRONTDESK_KEEP_TEST_DIRS` is set (for debugging).
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("frontdesk-{name}-"))
            .tempdir()
            .expect("tempdir");
        let path = dir.path().to_owned();
        if std::env::var_os("FRONTDESK_KEEP_TEST_DIRS").is_some() {
            eprintln!("test dir kept: {}", path.display());
            let _ = dir.keep();
            return TestDir { dir: None, path };
        }
        TestDir {
            dir: Some(dir),
            path,
        }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let path = dir.keep();
                eprintln!("test failed; its files are in {}", path.display());
            }
        }
    }
}

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// A loopback port free for both UDP and TCP (even, with port+1..port+3 free too, as SIPp's media
/// port needs port+2), chosen from a range that depends on the process id to keep parallel test
/// binaries apart.
pub fn free_port() -> u16 {
    free_port_block(4)
}

/// The first of `n` consecutive loopback ports (even; all free for UDP, the first for TCP too),
/// reserved in this process: no later [`free_port`] or [`free_port_block`] of the same test
/// binary hands out a port inside the block, so a frontdesk's or a caller's RTP range never
/// takes a port another test running in parallel is about to listen on.
pub fn free_port_block(n: u16) -> u16 {
    let step = n.max(4).div_ceil(4) * 4;
    let base = 21_000 + (std::process::id() % 400) as u16 * 100;
    for _ in 0..2000 {
        let offset = NEXT_PORT.fetch_add(step, Ordering::SeqCst) % 20_000;
        let port = 21_000 + (base - 21_000 + offset) % 40_000;
        let port = port - port % 2;
        if u32::from(port) + u32::from(n) > 61_000 {
            continue;
        }
        let ok = (0..n).all(|i| UdpSocket::bind(("127.0.0.1", port + i)).is_ok())
            && TcpListener::bind(("127.0.0.1", port)).is_ok();
        if ok {
            return port;
        }
    }
    panic!("no free block of {n} loopback ports found");
}

/// A child process killed on drop; its stderr goes to a log file.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_owned(),
            child,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits up to `within` for the process to exit; returns its exit status.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- {} log ({}) ----\n{}",
                self.name,
                self.log.display(),
                tail(&self.log_text(), 80)
            );
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Waits until `addr` answers a SIP OPTIONS over UDP with 200, or panics after `within`.
pub fn wait_for_sip(addr: SocketAddr, within: Duration) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let local = sock.local_addr().expect("addr");
    let deadline = Instant::now() + within;
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        let msg = format!(
            "OPTIONS sip:probe@{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKprobe{n}\r\nFrom: <sip:probe@{local}>;tag=p{n}\r\nTo: <sip:probe@{addr}>\r\nCall-ID: probe-{n}@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = sock.send_to(msg.as_bytes(), addr);
        let mut buf = [0u8; 2048];
        if let Ok((len, _)) = sock.recv_from(&mut buf) {
            if String::from_utf8_lossy(&buf[..len]).starts_with("SIP/2.0 200") {
                return;
            }
        }
    }
    panic!("frontdesk did not answer OPTIONS on {addr} within {within:?}");
}

/// Waits until a TCP port accepts connections.
pub fn wait_for_tcp(addr: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {addr} after {within:?}");
}

/// `text` (a log) without its ANSI escape sequences (`ESC [ … letter`: tracing colours its
/// fields).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A running simulator.
pub struct Sim {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub record: PathBuf,
    pub record_server: PathBuf,
}

impl Sim {
    pub fn start(dir: &TestDir, scenario: Option<&Path>) -> Sim {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let record = dir.join("sim-client-events.jsonl");
        let record_server = dir.join("sim-server-events.jsonl");
        let mut cmd = Command::new(FRONTDESK);
        cmd.arg("sim")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--record")
            .arg(&record)
            .arg("--record-server")
            .arg(&record_server);
        if let Some(s) = scenario {
            cmd.arg("--scenario").arg(s);
        }
        let proc = Proc::spawn("sim", cmd, dir.join("sim.log"));
        wait_for_tcp(addr, Duration::from_secs(10));
        Sim {
            proc,
            addr,
            record,
            record_server,
        }
    }

    /// Starts the simulator with `tests/scenarios/{name}`.
    pub fn start_scenario(dir: &TestDir, name: &str) -> Sim {
        Sim::start(
            dir,
            Some(&Path::new(ROOT).join("tests/scenarios").join(name)),
        )
    }

    pub fn url(&self) -> String {
        format!("ws://{}/v1/realtime", self.addr)
    }
}

/// Writes `dialplans/test.toml` in `dir`: every number reaches the agent `tester` (voice alloy,
/// `greeting`, a test clinic's instructions), with the agent's `extra` TOML lines appended;
/// returns the directory.
pub fn agent_dialplan(dir: &TestDir, greeting: &str, extra: &str) -> PathBuf {
    write_dialplan(
        dir,
        "test.toml",
        &format!(
            r#"
[[routes]]
name = "test-line"
to = "*"
agent = "tester"

[agents.tester]
voice = "alloy"
greeting = "{greeting}"
instructions = "You are the receptionist of a test clinic."
{extra}"#
        ),
    )
}

/// Writes `text` as the dialplan file `dialplans/{file}` in `dir`; returns the directory.
pub fn write_dialplan(dir: &TestDir, file: &str, text: &str) -> PathBuf {
    write_dialplan_in(dir, "dialplans", file, text)
}

/// Writes `text` as the dialplan file `{folder}/{file}` in `dir`; returns the folder.
pub fn write_dialplan_in(dir: &TestDir, folder: &str, file: &str, text: &str) -> PathBuf {
    let d = dir.join(folder);
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::write(d.join(file), text).expect("write dialplan");
    d
}

/// Writes the dialplan of a one-agent clinic as `{folder}/clinic.toml` in `dir`: every number
/// (route `clinic`) reaches the agent `receptionist`, whose settings are the TOML lines `agent`;
/// returns the folder.
pub fn clinic_dialplan(dir: &TestDir, folder: &str, agent: &str) -> PathBuf {
    write_dialplan_in(
        dir,
        folder,
        "clinic.toml",
        &format!(
            r#"
[[routes]]
name = "clinic"
to = "*"
agent = "receptionist"

[agents.receptionist]
{agent}"#
        ),
    )
}

/// A running `frontdesk serve`.
pub struct Serve {
    pub proc: Proc,
    pub sip: SocketAddr,
    pub db: PathBuf,
}

impl Serve {
    /// Starts `frontdesk serve` on a free loopback port with the given extra flags.
    pub fn start(dir: &TestDir, dialplans: &Path, extra: &[&str]) -> Serve {
        Serve::start_env(dir, dialplans, extra, &[])
    }

    /// Like [`Serve::start`], with extra environment variables (e.g. a debug-build fault hook).
    pub fn start_env(
        dir: &TestDir,
        dialplans: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Serve {
        let port = free_port();
        let sip: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let rtp_low = free_port_block(41);
        let db = dir.join("frontdesk.db");
        let mut cmd = Command::new(FRONTDESK);
        cmd.arg("serve")
            .arg("--sip-listen")
            .arg(sip.to_string())
            .arg("--media-ip")
            .arg("127.0.0.1")
            .arg("--rtp-ports")
            .arg(format!("{}-{}", rtp_low, rtp_low + 40))
            .arg("--dialplans")
            .arg(dialplans)
            .args(extra)
            .env_remove("OPENAI_API_KEY")
            .env_remove("FRONTDESK_REALTIME_URL")
            .env("RUST_LOG", "info,rsipstack=warn,frontdesk=debug")
            .envs(env.iter().copied());
        // A `--db` in `extra` (e.g. a PostgreSQL URL) replaces the test's SQLite file.
        if !extra.contains(&"--db") {
            cmd.arg("--db").arg(&db);
        }
        let proc = Proc::spawn("frontdesk", cmd, dir.join("frontdesk.log"));
        wait_for_sip(sip, Duration::from_secs(20));
        Serve { proc, sip, db }
    }
}

impl Serve {
    /// Like [`Serve::start`], with the model service at `realtime_url` (`--realtime-url`) before
    /// the `extra` flags.
    pub fn start_with(
        dir: &TestDir,
        dialplans: &Path,
        realtime_url: &str,
        extra: &[&str],
    ) -> Serve {
        let mut args = vec!["--realtime-url", realtime_url];
        args.extend_from_slice(extra);
        Serve::start(dir, dialplans, &args)
    }

    /// Places one SIPp call (`scenario` from tests/sipp, hold `hold_ms`, over UDP or TCP) from a
    /// free media port while capturing it, then stops frontdesk with SIGTERM. Asserts that the
    /// call succeeded and that frontdesk stopped cleanly (exit 0); returns the RTP frontdesk sent
    /// to the caller.
    pub fn call_and_stop(
        &mut self,
        dir: &TestDir,
        scenario: &str,
        hold_ms: u64,
        tcp: bool,
    ) -> Vec<RtpRecord> {
        let media_port = free_port();
        let capture = Capture::start(dir, media_port);
        let run = run_sipp(dir, scenario, self.sip, media_port, hold_ms, tcp);
        let rtp = capture.stop(media_port);
        assert!(
            run.success,
            "SIPp call failed:\n{}\n---- frontdesk ----\n{}",
            run.output,
            self.proc.log_text()
        );
        let status = self.proc.terminate(Duration::from_secs(15));
        assert!(
            status.is_some_and(|s| s.success()),
            "frontdesk did not stop cleanly on SIGTERM: {status:?}\n{}",
            self.proc.log_text()
        );
        rtp
    }

    /// Like [`Serve::start`] with the simulator at `realtime_url`, dual stack: also listens on
    /// `[::1]` (another free port, returned) with `::1` as the IPv6 media address.
    pub fn start_dual_stack(
        dir: &TestDir,
        dialplans: &Path,
        realtime_url: &str,
    ) -> (Serve, SocketAddr) {
        let v6: SocketAddr = format!("[::1]:{}", free_port()).parse().expect("addr");
        let v6_text = v6.to_string();
        let extra = [
            "--realtime-url",
            realtime_url,
            "--sip-listen",
            &v6_text,
            "--media-ip",
            "::1",
        ];
        (Serve::start(dir, dialplans, &extra), v6)
    }
}

/// Result of one SIPp run.
pub struct SippRun {
    pub success: bool,
    pub output: String,
}

/// Runs a SIPp scenario from tests/sipp against `target` (one call), in `dir` (where the audio
/// files are), with the call hold time `hold_ms` (`<pause/>`), over UDP or TCP.
pub fn run_sipp(
    dir: &TestDir,
    scenario: &str,
    target: SocketAddr,
    media_port: u16,
    hold_ms: u64,
    tcp: bool,
) -> SippRun {
    let out = sipp_command(dir, scenario, target, media_port, hold_ms, tcp)
        .output()
        .expect("run sipp");
    sipp_result(dir, scenario, out)
}

/// Runs the SIPp scenario `scenario` once against `serve` over UDP, without media or hold time (a
/// call that is refused, an OPTIONS), and asserts that it passed: otherwise the test fails with
/// `what` (what the scenario expects, e.g. "a 503"), SIPp's output and frontdesk's log. Returns
/// the run and frontdesk's log as it was then.
pub fn sipp_expect(dir: &TestDir, serve: &Serve, scenario: &str, what: &str) -> (SippRun, String) {
    let run = run_sipp(dir, scenario, serve.sip, free_port(), 0, false);
    let log = serve.proc.log_text();
    assert!(
        run.success,
        "SIPp did not get {what}:\n{}\n---- frontdesk ----\n{log}",
        run.output
    );
    (run, log)
}

/// Builds the SIPp command of [`run_sipp`] without running it (for tests that act during the call).
pub fn sipp_command(
    dir: &TestDir,
    scenario: &str,
    target: SocketAddr,
    media_port: u16,
    hold_ms: u64,
    tcp: bool,
) -> Command {
    sipp_command_to(dir, scenario, target, "frontdesk", media_port, hold_ms, tcp)
}

/// Like [`sipp_command`], calling the number (Request-URI user part) `service`.
pub fn sipp_command_to(
    dir: &TestDir,
    scenario: &str,
    target: SocketAddr,
    service: &str,
    media_port: u16,
    hold_ms: u64,
    tcp: bool,
) -> Command {
    require_tool("sipp", "sip-tester");
    let sip_port = free_port();
    let scenario_path = Path::new(ROOT).join("tests/sipp").join(scenario);
    let mut cmd = Command::new("sipp");
    cmd.current_dir(dir.path())
        .arg("-sf")
        .arg(&scenario_path)
        .arg(target.to_string())
        .arg("-s")
        .arg(service)
        .arg("-i")
        .arg("127.0.0.1")
        .arg("-p")
        .arg(sip_port.to_string())
        .arg("-mi")
        .arg("127.0.0.1")
        .arg("-mp")
        .arg(media_port.to_string())
        .arg("-m")
        .arg("1")
        .arg("-d")
        .arg(hold_ms.to_string())
        .arg("-nostdin")
        .arg("-timeout")
        .arg("60s")
        .arg("-timeout_error")
        .arg("-trace_err")
        .arg("-error_file")
        .arg(dir.join(&format!("{scenario}.errors.log")))
        .arg("-trace_msg")
        .arg("-message_file")
        .arg(dir.join(&format!("{scenario}.messages.log")));
    if tcp {
        cmd.arg("-t").arg("t1");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Collects the outcome and logs of a finished SIPp run.
pub fn sipp_result(dir: &TestDir, scenario: &str, out: std::process::Output) -> SippRun {
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    for f in ["errors", "messages"] {
        output.push_str(&format!("\n---- {f} ----\n"));
        output.push_str(
            &std::fs::read_to_string(dir.join(&format!("{scenario}.{f}.log"))).unwrap_or_default(),
        );
    }
    SippRun {
        success: out.status.success(),
        output,
    }
}

/// Certificates for SIP over TLS tests, made in `dir` with `openssl`: a CA (`ca.pem`, `ca.key`),
/// a server certificate for 127.0.0.1 and ::1 signed by it (`server.pem`, `server.key`) and a client
/// certificate signed by it (`client.pem`, `client.key`; also both in one file,
/// `client-bundle.pem`, as baresip and Kamailio want them).
pub fn make_tls_certs(dir: &TestDir) {
    require_tool("openssl", "openssl");
    let sh = format!(
        "set -e; cd {d}
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,IP:::1\\n' > san.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile san.ext 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=trunk 2>/dev/null
printf 'basicConstraints=CA:FALSE\\nextendedKeyUsage=clientAuth\\n' > client.ext
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 -extfile client.ext 2>/dev/null
cat client.pem client.key > client-bundle.pem",
        d = dir.path().display()
    );
    let st = Command::new("sh").arg("-c").arg(sh).status().expect("sh");
    assert!(st.success(), "openssl failed");
}

/// `frontdesk serve` flags for a TLS listener on `addr` with the certificates of
/// [`make_tls_certs`]; `mutual` requires a client certificate signed by the test CA.
pub fn tls_listener_args(dir: &TestDir, addr: SocketAddr, mutual: bool) -> Vec<String> {
    let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let mut args = vec![
        "--sip-tls-listen".to_owned(),
        addr.to_string(),
        "--sip-tls-cert".to_owned(),
        path("server.pem"),
        "--sip-tls-key".to_owned(),
        path("server.key"),
    ];
    if mutual {
        args.extend([
            "--sip-tls-client-ca".to_owned(),
            path("ca.pem"),
            "--sip-tls-require-client-cert".to_owned(),
        ]);
    }
    args
}

/// A running packet capture on the loopback interface.
pub struct Capture {
    proc: Proc,
    pub file: PathBuf,
}

impl Capture {
    /// Captures UDP packets to or from `port` on `lo` (needs root or capture rights).
    pub fn start(dir: &TestDir, port: u16) -> Capture {
        Capture::start_filter(dir, &format!("rtp-{port}"), &format!("udp port {port}"))
    }

    /// Captures packets matching the BPF `filter` on `lo` into `<name>.pcap`.
    pub fn start_filter(dir: &TestDir, name: &str, filter: &str) -> Capture {
        require_tool("dumpcap", "tshark");
        let file = dir.join(&format!("{name}.pcap"));
        let log = dir.join(&format!("dumpcap-{name}.log"));
        let mut cmd = Command::new("dumpcap");
        cmd.arg("-i")
            .arg("lo")
            .arg("-f")
            .arg(filter)
            .arg("-w")
            .arg(&file);
        let proc = Proc::spawn("dumpcap", cmd, log.clone());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if proc.log_text().contains("Capturing on") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "dumpcap did not start: {}",
                proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        Capture { proc, file }
    }

    /// Stops the capture and returns the RTP packets sent to `dst_port` (from any other port).
    pub fn stop(self, dst_port: u16) -> Vec<RtpRecord> {
        let file = self.finish();
        read_rtp(&file, dst_port)
    }

    /// Stops the capture and returns the pcap file.
    pub fn finish(mut self) -> PathBuf {
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.proc.child.id().to_string())
            .status();
        let _ = self.proc.child.wait();
        self.file.clone()
    }
}

/// One RTP packet seen on the wire.
#[derive(Debug, Clone)]
pub struct RtpRecord {
    pub time: f64,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload_type: u8,
    pub ssrc: u32,
    pub payload: Vec<u8>,
}

/// Decodes the RTP packets sent to `dst_port` (from another port) in a pcap, with tshark.
pub fn read_rtp(pcap: &Path, dst_port: u16) -> Vec<RtpRecord> {
    let filter = format!("rtp && udp.dstport=={dst_port} && udp.srcport!={dst_port}");
    rtp_records(pcap, dst_port, &filter)
}

/// Decodes the RTP packets sent from `src_port` (to another port) in a pcap, with tshark.
pub fn read_rtp_from(pcap: &Path, src_port: u16) -> Vec<RtpRecord> {
    let filter = format!("rtp && udp.srcport=={src_port} && udp.dstport!={src_port}");
    rtp_records(pcap, src_port, &filter)
}

/// The RTP packets matching the display `filter`, UDP `port` decoded as RTP.
fn rtp_records(pcap: &Path, port: u16, filter: &str) -> Vec<RtpRecord> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .arg("-d")
        .arg(format!("udp.port=={port},rtp"))
        .arg("-Y")
        .arg(filter)
        .arg("-T")
        .arg("fields")
        .arg("-E")
        .arg("separator=;")
        .arg("-e")
        .arg("frame.time_epoch")
        .arg("-e")
        .arg("rtp.seq")
        .arg("-e")
        .arg("rtp.timestamp")
        .arg("-e")
        .arg("rtp.marker")
        .arg("-e")
        .arg("rtp.p_type")
        .arg("-e")
        .arg("rtp.ssrc")
        .arg("-e")
        .arg("rtp.payload")
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(';').collect();
            if f.len() < 7 {
                return None;
            }
            let marker = matches!(f[3], "1" | "True" | "true");
            let ssrc = u32::from_str_radix(f[5].trim_start_matches("0x"), 16).ok()?;
            let payload = hex(f[6].replace(':', "").as_str());
            Some(RtpRecord {
                time: f[0].parse().ok()?,
                seq: f[1].parse().ok()?,
                timestamp: f[2].parse().ok()?,
                marker,
                payload_type: f[4].parse().ok()?,
                ssrc,
                payload,
            })
        })
        .collect()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// Makes `name.ul` (raw µ-law) and `name.al` (raw A-law), 8 kHz mono, of `text` spoken by espeak-ng.
pub fn speech(dir: &TestDir, name: &str, text: &str) -> (Vec<u8>, Vec<u8>) {
    require_tool("espeak-ng", "espeak-ng");
    require_tool("sox", "sox");
    let wav = dir.join(&format!("{name}.wav"));
    let st = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("espeak-ng");
    assert!(st.success(), "espeak-ng failed");
    let mut out = Vec::new();
    for (ext, kind) in [("ul", "ul"), ("al", "al")] {
        let path = dir.join(&format!("{name}.{ext}"));
        let st = Command::new("sox")
            .arg(&wav)
            .args(["-r", "8000", "-c", "1", "-t", kind])
            .arg(&path)
            .status()
            .expect("sox");
        assert!(st.success(), "sox failed");
        out.push(std::fs::read(&path).expect("read audio"));
    }
    let al = out.pop().expect("al");
    let ul = out.pop().expect("ul");
    (ul, al)
}

/// Parses a JSONL file of events.
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("bad JSON line in {}: {e}: {l}", path.display()))
        })
        .collect()
}

/// Decodes base64 text.
pub fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("bad base64: {e}"))
}

/// Position of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Runs tests/protocol/validate_events.py on a JSONL file; panics with its output on failure.
pub fn validate_events(dialect: &str, direction: &str, file: &Path) -> String {
    let python = std::env::var("FRONTDESK_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(ROOT).join("tests/protocol/validate_events.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg("--dialect")
        .arg(dialect)
        .arg("--direction")
        .arg(direction)
        // Session objects carry id/object/expires_at, which the SDK's session models do not declare.
        .args([
            "--allow-undeclared",
            "session.*:$.session.id",
            "--allow-undeclared",
            "session.*:$.session.object",
            "--allow-undeclared",
            "session.*:$.session.expires_at",
        ])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{direction} events in {} do not validate as {dialect} against the openai SDK models:\n{text}",
        file.display()
    );
    text
}

/// All audio frontdesk appended to the Realtime session (`input_audio_buffer.append` events of the
/// simulator's `--record`), in order.
pub fn appended_audio(client_events: &[serde_json::Value]) -> Vec<u8> {
    client_events
        .iter()
        .filter(|e| e["type"] == "input_audio_buffer.append")
        .flat_map(|e| b64(e["audio"].as_str().unwrap_or_default()))
        .collect()
}

/// Checks that `needle`'s whole 20 ms frames (160 bytes each; a partial last frame is ignored,
/// RTP carries whole frames) appear in `haystack` exactly, back to back: every frame in order, no
/// frame added, removed or altered. On failure, says how far the longest exact run went and what
/// came instead of the next frame.
pub fn relayed_exactly(haystack: &[u8], needle: &[u8]) -> Result<(), String> {
    const F: usize = 160;
    let whole = &needle[..needle.len() / F * F];
    if whole.is_empty() || find(haystack, whole).is_some() {
        return Ok(());
    }
    let frames: Vec<&[u8]> = whole.chunks(F).collect();
    // The longest run of needle frames starting at any occurrence of any needle frame.
    let mut best = (0usize, 0usize, 0usize); // (run length, needle frame, haystack offset)
    for (j, f) in frames.iter().enumerate() {
        let mut from = 0;
        while let Some(p) = find(&haystack[from..], f).map(|p| p + from) {
            let run = frames[j..]
                .iter()
                .enumerate()
                .take_while(|(k, g)| haystack.get(p + k * F..p + (k + 1) * F) == Some(**g))
                .count();
            if run > best.0 {
                best = (run, j, p);
            }
            from = p + 1;
        }
    }
    let (run, j, p) = best;
    let next = haystack.get(p + run * F..p + (run + 1) * F);
    let what = match next {
        None => "the end of the appended audio".to_owned(),
        Some(b) if b.iter().all(|&x| x == b[0]) => format!("a frame of byte {:#04x}", b[0]),
        Some(b) if frames.get(j + run + 1).is_some_and(|g| *g == b) => {
            "the frame after it (one frame removed)".to_owned()
        }
        Some(b)
            if frames.get(j + run).is_some_and(|g| {
                haystack.get(p + (run + 1) * F..p + (run + 2) * F) == Some(*g)
            }) =>
        {
            format!("an added frame ({:#04x}…)", b[0])
        }
        Some(_) => "other audio".to_owned(),
    };
    Err(format!(
        "the longest exact run is frames {j}..{} of {}; frame {} was followed by {what}",
        j + run,
        frames.len(),
        j + run,
    ))
}

/// Capture times (UNIX seconds) of the TCP segments sent from `src_port` whose payload contains
/// `text` (e.g. a Realtime event type in an unmasked server-to-client WebSocket frame).
pub fn tcp_text_times(pcap: &Path, src_port: u16, text: &str) -> Vec<f64> {
    frame_times(
        pcap,
        &format!("tcp.srcport=={src_port} && frame contains \"{text}\""),
    )
}

/// Capture times (UNIX seconds) of the TCP segments with a payload sent to `dst_port` (e.g. the
/// WebSocket frames a client sends to the simulator: masked, so only their timing is readable).
pub fn tcp_payload_times(pcap: &Path, dst_port: u16) -> Vec<f64> {
    frame_times(pcap, &format!("tcp.dstport=={dst_port} && tcp.len > 0"))
}

/// Capture times (UNIX seconds) of the frames matching the display `filter`.
fn frame_times(pcap: &Path, filter: &str) -> Vec<f64> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .arg("-Y")
        .arg(filter)
        .arg("-T")
        .arg("fields")
        .arg("-e")
        .arg("frame.time_epoch")
        .output()
        .expect("run tshark");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The longest interval (s) between consecutive `times` inside `[from, to]`, counting the edges
/// of the window: a window with no time at all gives `to - from`.
pub fn longest_gap(times: &[f64], from: f64, to: f64) -> f64 {
    let mut last = from;
    let mut gap: f64 = 0.0;
    for &t in times.iter().filter(|&&t| t >= from && t <= to) {
        gap = gap.max(t - last);
        last = t;
    }
    gap.max(to - last)
}

/// Writes a dialplan directory whose every number reaches a Bright Smile Dental receptionist
/// with the calendar tools (`deploy/calendar.example.toml`), optionally with caller
/// transcription on; returns the directory.
pub fn booking_dialplan(dir: &TestDir, transcription: bool) -> PathBuf {
    let transcription = if transcription {
        "transcription_model = \"gpt-4o-mini-transcribe\"\n"
    } else {
        ""
    };
    clinic_dialplan(
        dir,
        "dialplans",
        &format!(
            r#"voice = "marin"
greeting = "Thank you for calling Bright Smile Dental."
instructions = "You are the receptionist of Bright Smile Dental. Use the tools to book appointments."
calendar = "bright-smile"
{transcription}"#
        ),
    )
}

/// Writes the caller's two turns of a booking call (`audio.ul`, `audio2.ul`, streamed by
/// `tests/sipp/uac_two_turns.xml`).
pub fn booking_speech(dir: &TestDir) {
    let (ul, _) = speech(
        dir,
        "turn1",
        "Hello, I would like to book a cleaning, please.",
    );
    let (ul2, _) = speech(dir, "turn2", "Yes, please book it.");
    std::fs::write(dir.join("audio.ul"), &ul).expect("write");
    std::fs::write(dir.join("audio2.ul"), &ul2).expect("write");
}

/// A booking call's far ends: the simulator playing `tests/scenarios/{scenario}` and
/// `frontdesk serve` with [`booking_dialplan`] and the example calendar, plus the caller's
/// speech ([`booking_speech`]) written into `dir`.
pub fn start_booking(dir: &TestDir, scenario: &str, transcription: bool) -> (Sim, Serve) {
    booking_speech(dir);
    let sim = Sim::start(
        dir,
        Some(&Path::new(ROOT).join("tests/scenarios").join(scenario)),
    );
    let plans = booking_dialplan(dir, transcription);
    let calendar = Path::new(ROOT).join("deploy/calendar.example.toml");
    let calendar = calendar.to_string_lossy().into_owned();
    let url = sim.url();
    let serve = Serve::start(
        dir,
        &plans,
        &["--realtime-url", &url, "--calendar", &calendar],
    );
    (sim, serve)
}

/// The `function_call_output` items frontdesk sent (`conversation.item.create` events of a
/// simulator record), each output parsed as JSON (`null` where it is not JSON), in order.
pub fn tool_outputs(client_events: &[serde_json::Value]) -> Vec<serde_json::Value> {
    client_events
        .iter()
        .filter(|e| {
            e["type"] == "conversation.item.create" && e["item"]["type"] == "function_call_output"
        })
        .map(|e| {
            serde_json::from_str(e["item"]["output"].as_str().unwrap_or("null"))
                .unwrap_or(serde_json::Value::Null)
        })
        .collect()
}

/// The next Tuesday at least two days ahead (UTC date): a working day of the example calendar
/// (`deploy/calendar.example.toml`) inside its lead time and 90-day window, so a booking test
/// never goes stale.
pub fn next_tuesday() -> chrono::NaiveDate {
    let mut day = chrono::Utc::now().date_naive() + chrono::Duration::days(2);
    while chrono::Datelike::weekday(&day) != chrono::Weekday::Tue {
        day += chrono::Duration::days(1);
    }
    day
}

/// The call rows of the database at `db`, newest first, once at least `at_least` calls are recorded
/// and every recorded call has ended (its row is complete).
///
/// frontdesk answers the caller's BYE before its call task writes the end of the call record, so
/// a test that reads the rows the moment SIPp exits can see the call still in teardown. This
/// waits up to 20 s (a loaded machine) and then returns what is there, for the test's assertions
/// to report.
pub fn ended_calls(db: &Path, at_least: usize) -> Vec<frontdesk::store::CallRow> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let deadline = Instant::now() + Duration::from_secs(20);
    rt.block_on(async {
        let store = frontdesk::store::Store::open(db).await.expect("open db");
        loop {
            let rows = store.recent_calls(10_000).await.expect("rows");
            let complete = rows.len() >= at_least && rows.iter().all(|r| r.end_reason.is_some());
            if complete || Instant::now() >= deadline {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}
