//! The floor of frontdesk's media I/O (issue 15 item 4): the CPU that N calls cost a process that
//! does only the socket work of a call, none of frontdesk's logic.
//!
//! The measured RELAY process (tokio runtime built like frontdesk's, src/cli.rs) runs one task per
//! call, owning a UDP socket and a TCP connection (TCP_NODELAY, as `connect_async` sets it). Per
//! received 172-byte RTP packet it writes one masked WebSocket text frame (272 bytes:
//! `input_audio_buffer.append` of the 160-byte payload, by frontdesk's own encoder) to the TCP
//! connection and sends one 172-byte RTP packet back. The PEER process plays SIPp and the simulator:
//! N UDP callers send a packet every 20 ms each (phases spread over the frame) and read the replies;
//! the N TCP connections are read and discarded. All on 127.0.0.1, as in `benches/load.sh`.
//!
//! Modes (`IO_FLOOR_MODES`, default `tokio noempty`): `tokio` reads the socket until it is empty
//! before waiting again (tokio's `recv_from`, frontdesk: one `recvfrom` finding it empty per
//! wake-up); `noempty` reads one packet per wake-up and clears the readiness without that
//! `recvfrom`, a lower bound (a packet queued behind another waits for the next wake-up, except
//! that every 50th packet drains the socket; what that finds is printed as `backlog`).
//!
//! The driver (no role argument) runs each mode at each N (`IO_FLOOR_N`, default `50 200`): 3 s
//! after start-up it takes the relay's utime+stime (`/proc/PID/stat`) and counters over
//! `IO_FLOOR_STEADY_S` (15) s; then, with `perf` (unless `IO_FLOOR_PERF=0`), 5 s of `perf stat`
//! count syscalls and context switches. Every wait has a deadline; children exit when their stdin
//! closes or after 10 min, and are killed by PID when a run ends.
//!
//! Run: `flock /work/bench.lock cargo bench --bench io_floor` (BENCHMARKS.md, issue 15 item 4).

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::UdpSocket as StdUdp;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use frontdesk::realtime::protocol::input_audio_buffer_append;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const FRAME: Duration = Duration::from_millis(20);
/// RTP packet: 12-byte header + 160 bytes (20 ms of 8 kHz G.711).
const RTP_BYTES: usize = 172;
const CHILD_LIFETIME: Duration = Duration::from_secs(600);
const DEADLINE: Duration = Duration::from_secs(30);

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    match arg(1) {
        "__peer" => runtime()?.block_on(peer(arg(2).parse()?)),
        "__relay" => {
            let relay = relay(arg(2).parse()?, arg(3).into(), arg(4) == "noempty");
            runtime()?.block_on(relay)
        }
        _ => driver(),
    }
}

/// The runtime of `frontdesk` (src/cli.rs): multi-thread, default worker count (one per core).
fn runtime() -> Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    Ok(builder.enable_all().build()?)
}

/// Per-call counters of the relay, indexed by: packets received, `recvfrom`s that found the socket
/// empty, RTP packets sent, WebSocket frames written, packets found by the `noempty` drain.
type Counts = [AtomicU64; 5];
const RX: usize = 0;
const EMPTY: usize = 1;
const UDP_TX: usize = 2;
const TCP_TX: usize = 3;
const BACKLOG: usize = 4;

async fn relay(n: usize, tcp_addr: String, noempty: bool) -> Result<()> {
    let mut counts = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    for call in 0..n {
        let udp = StdUdp::bind("127.0.0.1:0")?;
        udp.set_nonblocking(true)?;
        ports.push(udp.local_addr()?.port().to_string());
        let tcp = TcpStream::connect(&tcp_addr).await?;
        tcp.set_nodelay(true)?;
        let c = Arc::new(Counts::default());
        counts.push(c.clone());
        tokio::spawn(async move {
            if let Err(e) = relay_call(udp, tcp, &c, noempty).await {
                eprintln!("relay call {call}: {e:#}");
            }
        });
    }
    println!("PORTS {}", ports.join(" "));
    // "COUNT" on stdin prints the sums; EOF (the driver is gone) or the lifetime ends the process.
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Ok(Some(_))) = tokio::time::timeout(CHILD_LIFETIME, stdin.next_line()).await {
        let sum = |k: usize| counts.iter().map(|c| c[k].load(Relaxed)).sum::<u64>();
        let sums = [RX, EMPTY, UDP_TX, TCP_TX, BACKLOG].map(|k| sum(k).to_string());
        println!("COUNT {}", sums.join(" "));
    }
    std::process::exit(0)
}

/// One call: per received RTP packet, one masked WebSocket text frame carrying its payload as
/// `input_audio_buffer.append` (RFC 6455 §5.2, 16-bit length, 272 bytes) to `tcp`, then one
/// 172-byte RTP packet back to the sender. Without `noempty`, the socket is read until it is
/// empty before waiting (the syscalls of tokio's `UdpSocket::recv_from`); with it, after one
/// packet (see the module doc).
async fn relay_call(udp: StdUdp, mut tcp: TcpStream, c: &Counts, noempty: bool) -> Result<()> {
    // A std socket owns its fd for the AsyncFd's whole life: the soundness issue of `new`
    // (arbitrary `AsRawFd` types) does not apply, and `register` would need `unsafe`.
    #[allow(deprecated)]
    let fd = tokio::io::unix::AsyncFd::new(udp)?;
    let (mut buf, mut json, mut ws) = ([0u8; 2048], String::new(), Vec::with_capacity(300));
    let (mut rtp, mut mask, mut draining) = ([0xffu8; RTP_BYTES], 1u32, false);
    loop {
        let mut ready = fd.readable().await?;
        let (len, from) = match ready.get_inner().recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                c[EMPTY].fetch_add(1, Relaxed);
                ready.clear_ready();
                draining = false;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        c[RX].fetch_add(1, Relaxed);
        if noempty {
            c[BACKLOG].fetch_add(draining as u64, Relaxed);
            // Every 50th packet keeps the readiness: the next turn reads until the socket is empty.
            draining = c[RX].load(Relaxed).is_multiple_of(50);
            if !draining {
                ready.clear_ready();
            }
        }
        drop(ready);
        let packet = &buf[..len];
        input_audio_buffer_append(&mut json, packet.get(12..).unwrap_or_default());
        mask = mask.rotate_left(5).wrapping_mul(0x9e37_79b9); // a fresh masking key per frame
        let key = mask.to_be_bytes();
        ws.clear();
        ws.extend_from_slice(&[0x81, 0x80 | 126]);
        ws.extend_from_slice(&(json.len() as u16).to_be_bytes());
        ws.extend_from_slice(&key);
        ws.extend(json.bytes().enumerate().map(|(i, b)| b ^ key[i % 4]));
        tcp.write_all(&ws).await?;
        c[TCP_TX].fetch_add(1, Relaxed);
        rtp[..12].copy_from_slice(packet.get(..12).unwrap_or(&[0x80; 12]));
        if fd.get_ref().send_to(&rtp, from).is_ok() {
            c[UDP_TX].fetch_add(1, Relaxed);
        }
    }
}

async fn peer(n: usize) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("LISTEN {}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while matches!(s.read(&mut buf).await, Ok(1..)) {}
            });
        }
    });
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let line = tokio::time::timeout(DEADLINE, stdin.next_line()).await??;
    let line = line.unwrap_or_default();
    let ports: Vec<u16> = words(line.trim_start_matches("PORTS"))?;
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    for (i, port) in ports.into_iter().enumerate() {
        let sock = UdpSocket::bind("127.0.0.1:0").await?;
        sock.connect(("127.0.0.1", port)).await?;
        let phase = start + FRAME * i as u32 / n.max(1) as u32;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(phase, FRAME);
            // PCMU silence; no field is parsed by the relay, so the header stays as it is.
            let (mut pkt, mut back) = ([0xffu8; RTP_BYTES], [0u8; 2048]);
            pkt[..2].copy_from_slice(&[0x80, 0]);
            loop {
                tokio::select! {
                    _ = tick.tick() => drop(sock.send(&pkt).await),
                    _ = sock.recv(&mut back) => {}
                }
            }
        });
    }
    println!("STARTED");
    while let Ok(Ok(Some(_))) = tokio::time::timeout(CHILD_LIFETIME, stdin.next_line()).await {}
    std::process::exit(0)
}

/// A child process whose stdout lines arrive on a channel; killed (by PID) and reaped on drop.
struct Proc(Child, mpsc::Receiver<String>);

impl Proc {
    fn spawn(args: &[&str]) -> Result<Self> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(args).stdin(Stdio::piped());
        let mut child = cmd.stdout(Stdio::piped()).spawn()?;
        let stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let (tx, lines) = mpsc::channel();
        let mut read = stdout.lines().map_while(Result::ok);
        std::thread::spawn(move || read.try_for_each(|l| tx.send(l)));
        Ok(Proc(child, lines))
    }

    /// Sends `request` (if any), then waits for a line that starts with `prefix`; returns its rest.
    fn ask(&mut self, request: Option<&str>, prefix: &str) -> Result<String> {
        if let Some(r) = request {
            writeln!(self.0.stdin.as_mut().context("stdin")?, "{r}")?;
        }
        let line = self.1.recv_timeout(DEADLINE);
        let line = line.context(format!("no {prefix}in {DEADLINE:?}"))?;
        let rest = line.strip_prefix(prefix).map(str::to_string);
        rest.ok_or_else(|| anyhow!("expected {prefix}: {line}"))
    }

    /// utime and stime of the process, in clock ticks (fields 14 and 15 of /proc/PID/stat).
    fn ticks(&self) -> Result<(u64, u64)> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0.id()))?;
        let rest = stat.rsplit_once(") ").context("stat")?.1;
        let f: Vec<&str> = rest.split(' ').collect();
        Ok((f[11].parse()?, f[12].parse()?))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The whitespace-separated numbers of `s`.
fn words<T: std::str::FromStr>(s: &str) -> Result<Vec<T>> {
    let parse = |w: &str| w.parse().map_err(|_| anyhow!("not a number: {w}"));
    s.split_whitespace().map(parse).collect()
}

/// The relay's system calls and context switches per second per call over 5 s (`perf stat`).
fn perf_counts(pid: u32, n: usize) -> Option<String> {
    let e = "raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,context-switches";
    let args = format!("30 perf stat -x, -e {e} -p {pid} -- sleep 5");
    let out = Command::new("timeout").args(args.split(' ')).output();
    let stderr = String::from_utf8_lossy(&out.ok()?.stderr).into_owned();
    let counts = stderr
        .lines()
        .filter_map(|l| l.split(',').next()?.parse().ok());
    let labels = ["syscalls", "epoll_wait", "futex", "context switches"];
    let per = |(c, l): (f64, _)| format!("{:.1} {l}", c / 5.0 / n as f64);
    let v: Vec<String> = counts.zip(labels).map(per).collect();
    (v.len() == 4).then(|| format!("; perf: {}", v.join(", ")))
}

fn measure(n: usize, mode: &str, steady: Duration, hz: f64, perf: bool) -> Result<()> {
    let mut peer = Proc::spawn(&["__peer", &n.to_string()])?;
    let addr = peer.ask(None, "LISTEN ")?;
    let mut relay = Proc::spawn(&["__relay", &n.to_string(), &addr, mode])?;
    let ports = relay.ask(None, "PORTS ")?;
    peer.ask(Some(&format!("PORTS {ports}")), "STARTED")?;
    std::thread::sleep(Duration::from_secs(3));
    let snap = |relay: &mut Proc, peer: &Proc| -> Result<_> {
        let c: Vec<f64> = words(&relay.ask(Some("COUNT"), "COUNT ")?)?;
        Ok((c, relay.ticks()?, peer.ticks()?, Instant::now()))
    };
    let (c0, (u0, s0), (pu0, ps0), t0) = snap(&mut relay, &peer)?;
    std::thread::sleep(steady);
    let (c1, (u1, s1), (pu1, ps1), t1) = snap(&mut relay, &peer)?;
    let per = |ticks: u64| ticks as f64 * 1000.0 / hz / (t1 - t0).as_secs_f64() / n as f64;
    let rate = |k: usize| (c1[k] - c0[k]) / (t1 - t0).as_secs_f64() / n as f64;
    ensure!(rate(RX) >= 1.0, "N={n} {mode}: no packet relayed");
    let perf = perf.then(|| perf_counts(relay.0.id(), n));
    let perf = perf.flatten().unwrap_or_default();
    println!(
        "io_floor N={n} {mode}: {:.2} ms CPU/s/call (user {:.2}, sys {:.2}), per call-second: {:.1} rx, \
         recvfrom {:.1} ({:.1} empty), sendto {:.1} udp + {:.1} tcp, backlog {:.2}{perf}; peer {:.2} ms/s/call",
        per(u1 + s1 - u0 - s0), per(u1 - u0), per(s1 - s0), rate(RX), rate(RX) + rate(EMPTY), rate(EMPTY),
        rate(UDP_TX), rate(TCP_TX), rate(BACKLOG), per(pu1 + ps1 - pu0 - ps0),
    );
    Ok(())
}

fn driver() -> Result<()> {
    // `cargo test --all-targets` runs this without `--bench`: then a smoke run, 2 calls for 1 s.
    let bench = std::env::args().any(|a| a == "--bench");
    let env = |k: &str, d: [&str; 2]| std::env::var(k).unwrap_or(d[bench as usize].into());
    let ns: Vec<usize> = words(&env("IO_FLOOR_N", ["2", "50 200"]))?;
    let steady = Duration::from_secs(env("IO_FLOOR_STEADY_S", ["1", "15"]).parse()?);
    let hz = Command::new("getconf").arg("CLK_TCK").output().ok();
    let hz = hz.and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok());
    let hz: f64 = hz.unwrap_or(100.0);
    let perf = Command::new("perf").arg("--version").output().is_ok();
    let perf = perf && env("IO_FLOOR_PERF", ["0", "1"]) != "0";
    for mode in env("IO_FLOOR_MODES", ["tokio noempty"; 2]).split_whitespace() {
        ensure!(["tokio", "noempty"].contains(&mode), "unknown mode {mode}");
        for &n in &ns {
            measure(n, mode, steady, hz, perf)?;
        }
    }
    Ok(())
}
