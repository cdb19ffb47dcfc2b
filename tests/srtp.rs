//! End to end: SRTP with SDES keys (RFC 3711, RFC 4568). baresip (Debian `baresip-core`, module
//! `srtp`, `mediaenc=srtp-mand`) calls `frontdesk serve`, which talks to `frontdesk sim`. The
//! packets between them are captured on `lo` and decrypted here with frontdesk's own SRTP context
//! and the keys both sides put in their SDP (read from the same capture): the agent's audio must
//! be exactly what the simulator sent, and the caller's audio must reach the session byte for byte.
//! A plain-RTP offer to a trunk whose policy is `require` gets 488. Needs baresip, sipp, espeak-ng,
//! sox and tshark/dumpcap (root or capture rights) — `tests/run.sh` installs them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use frontdesk::media::srtp::{MasterKey, SrtpKeys, SrtpSession, Suite};
use frontdesk::sdp::sdes::Crypto;
use serde_json::Value;

const CALLER_SENTENCE: &str = "Hello, I would like to book a cleaning for next Tuesday morning.";

fn dialplans(dir: &TestDir) -> PathBuf {
    agent_dialplan(dir, "Bright Smile Dental, hello.", "")
}

/// A baresip user agent that dials `target` once, plays `wav` and hangs up after `secs`.
struct Baresip {
    dir: PathBuf,
    /// Its UDP RTP/RTCP port range (low, high).
    rtp_ports: (u16, u16),
}

impl Baresip {
    /// Writes a config for a caller on free loopback ports. `mediaenc` is baresip's account
    /// parameter (`srtp-mand`, `srtp`, or `None` for plain RTP); `extra` is appended to the
    /// config (e.g. `sip_cafile` and `sip_certificate` for TLS).
    fn new(dir: &TestDir, name: &str, wav: &Path, mediaenc: Option<&str>, extra: &str) -> Baresip {
        require_tool("baresip", "baresip-core");
        let conf = dir.join(name);
        std::fs::create_dir_all(conf.join("rec")).expect("mkdir");
        let sip_port = free_port();
        let rtp_low = free_port_block(21);
        std::fs::write(
            conf.join("config"),
            format!(
                "poll_method epoll\n\
                 sip_listen 127.0.0.1:{sip_port}\n\
                 call_local_timeout 30\n\
                 audio_player aubridge,nil\n\
                 audio_source aufile,{wav}\n\
                 audio_alert aubridge,nil\n\
                 ausrc_format s16\nauplay_format s16\nauenc_format s16\naudec_format s16\n\
                 rtp_ports {rtp_low}-{rtp_high}\n\
                 rtcp_mux no\n\
                 jitter_buffer_delay 5-10\n\
                 rtp_stats yes\n\
                 net_interface 127.0.0.1\n\
                 module_path /usr/lib/baresip/modules\n\
                 module g711.so\nmodule aufile.so\nmodule aubridge.so\nmodule srtp.so\n\
                 module_tmp account.so\n\
                 module_app menu.so\n\
                 {extra}\n",
                wav = wav.display(),
                rtp_high = rtp_low + 20,
            ),
        )
        .expect("write baresip config");
        let enc = mediaenc
            .map(|m| format!(";mediaenc={m}"))
            .unwrap_or_default();
        std::fs::write(
            conf.join("accounts"),
            format!("<sip:tester@127.0.0.1:{sip_port}>;regint=0;audio_codecs=PCMU{enc}\n"),
        )
        .expect("write baresip accounts");
        Baresip {
            dir: conf,
            rtp_ports: (rtp_low, rtp_low + 20),
        }
    }

    /// Dials `uri`, stays `secs` seconds, quits; returns baresip's output with its SIP trace
    /// (`-s`: every message it sends and receives, decrypted when over TLS).
    fn call(&self, uri: &str, secs: u64) -> String {
        self.run(uri, secs, secs + 20)
    }

    /// [`Baresip::call`], stopped (SIGTERM) after `limit` seconds at most: a call that gets no
    /// answer at all would otherwise wait 32 s for its INVITE transaction to time out.
    fn run(&self, uri: &str, secs: u64, limit: u64) -> String {
        let out = Command::new("timeout")
            .arg(limit.to_string())
            .arg("baresip")
            .arg("-s")
            .arg("-f")
            .arg(&self.dir)
            .arg("-e")
            .arg(format!("/dial {uri}"))
            .arg("-t")
            .arg(secs.to_string())
            .output()
            .expect("run baresip");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

/// Three seconds of silence as the 16-bit WAV baresip plays (`silence.wav` in `dir`).
fn silence_wav(dir: &TestDir) -> PathBuf {
    let wav = dir.join("silence.wav");
    let st = Command::new("sox")
        .args([
            "-n",
            "-r",
            "8000",
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed-integer",
        ])
        .arg(&wav)
        .args(["trim", "0", "3"])
        .status()
        .expect("sox");
    assert!(st.success());
    wav
}

/// One UDP datagram (or TCP segment, for SIP over TCP) of a capture.
struct Datagram {
    src: u16,
    dst: u16,
    payload: Vec<u8>,
}

fn datagrams(pcap: &Path) -> Vec<Datagram> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args([
            "-Y",
            "udp || (tcp && tcp.len > 0)",
            "-T",
            "fields",
            "-E",
            "separator=;",
        ])
        .args([
            "-e",
            "udp.srcport",
            "-e",
            "udp.dstport",
            "-e",
            "udp.payload",
        ])
        .args([
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "tcp.payload",
        ])
        .output()
        .expect("run tshark");
    assert!(out.status.success(), "tshark failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let all: Vec<&str> = l.split(';').collect();
            // UDP fields first, TCP fields after; one of the two triples is empty.
            let f = if all.first().is_some_and(|p| !p.is_empty()) {
                all.get(..3)?
            } else {
                all.get(3..6)?
            };
            let hex = f.get(2)?.replace(':', "");
            Some(Datagram {
                src: f.first()?.parse().ok()?,
                dst: f.get(1)?.parse().ok()?,
                payload: (0..hex.len() / 2)
                    .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                    .collect(),
            })
        })
        .collect()
}

/// The SDP body of the first SIP message on `port` (either direction) that starts with `start`.
fn sdp_of(packets: &[Datagram], port: u16, start: &str) -> String {
    packets
        .iter()
        .filter(|d| d.src == port || d.dst == port)
        .map(|d| String::from_utf8_lossy(&d.payload).into_owned())
        .find(|t| t.starts_with(start) && t.contains("\r\n\r\nv=0"))
        .and_then(|t| t.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()))
        .unwrap_or_else(|| panic!("no {start:?} with SDP on port {port} in the capture"))
}

/// The SDP body of the first message starting with `start` in baresip's SIP trace (`-s`: each
/// message after a `#` line and a `TLS a -> b` line, ended by a colour reset `ESC[;m`).
fn sdp_in_trace(trace: &str, start: &str) -> String {
    trace
        .split("\u{1b}[;m")
        .filter_map(|chunk| chunk.find(start).map(|i| &chunk[i..]))
        .find(|m| m.contains("\r\n\r\nv=0"))
        .and_then(|m| {
            m.split_once("\r\n\r\n")
                .map(|(_, b)| b.trim_end().to_owned() + "\r\n")
        })
        .unwrap_or_else(|| panic!("no {start:?} with SDP in baresip's trace:\n{trace}"))
}

/// The `m=audio` port and the `a=crypto` lines of an SDP body.
fn media_of(sdp: &str) -> (u16, String, Vec<Crypto>) {
    let m = sdp
        .lines()
        .find(|l| l.starts_with("m=audio "))
        .expect("m=audio line");
    let fields: Vec<&str> = m.split_whitespace().collect();
    let cryptos = sdp
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=crypto:"))
        .filter_map(|v| v.parse::<Crypto>().ok())
        .collect();
    (
        fields[1].parse().expect("port"),
        fields[2].to_owned(),
        cryptos,
    )
}

/// A receiver for packets protected with `key` (its outbound side is never used).
fn receiver(suite: Suite, key: &MasterKey) -> SrtpSession {
    SrtpSession::new(&SrtpKeys {
        suite,
        local: MasterKey::generate(),
        remote: key.clone(),
    })
    .expect("SRTP session")
}

/// Decrypts the SRTP datagrams from `src` to `dst`: the G.711 payloads in order, and how many
/// datagrams there were.
fn decrypt_rtp(packets: &[Datagram], src: u16, dst: u16, mut rx: SrtpSession) -> (Vec<u8>, usize) {
    let mut audio = Vec::new();
    let mut n = 0;
    for d in packets.iter().filter(|d| d.src == src && d.dst == dst) {
        n += 1;
        let plain = rx
            .unprotect(&d.payload)
            .unwrap_or_else(|e| panic!("datagram {n} from {src} to {dst} does not decrypt: {e}"));
        let rtp = frontdesk::media::rtp::parse(&plain).expect("RTP inside SRTP");
        // The encrypted payload differs from the plain one (the audio is not sent in clear).
        assert_ne!(&d.payload[12..12 + rtp.payload.len()], rtp.payload);
        if rtp.payload_type == 0 {
            audio.extend_from_slice(rtp.payload);
        }
    }
    (audio, n)
}

fn sim_audio_items(server_events: &[Value]) -> Vec<Vec<u8>> {
    let mut items: Vec<(String, Vec<u8>)> = Vec::new();
    for ev in server_events {
        let t = ev["type"].as_str().unwrap_or_default();
        if t == "response.output_audio.delta" || t == "response.audio.delta" {
            let id = ev["item_id"].as_str().unwrap_or_default().to_owned();
            let audio = b64(ev["delta"].as_str().unwrap_or_default());
            match items.iter_mut().find(|(i, _)| *i == id) {
                Some((_, a)) => a.extend_from_slice(&audio),
                None => items.push((id, audio)),
            }
        }
    }
    items.into_iter().map(|(_, a)| a).collect()
}

#[test]
fn baresip_srtp_call_is_answered_and_the_audio_is_exact_both_ways() {
    // `mediaenc=srtp-mand`: RTP/SAVP with a=crypto, to a listener that requires SRTP.
    srtp_call(
        "srtp-baresip",
        &["--srtp", "require"],
        "srtp-mand",
        "RTP/SAVP",
        "udp",
    );
}

#[test]
fn best_effort_srtp_offer_over_tcp_is_encrypted_under_the_default_policy() {
    // `mediaenc=srtp`: RTP/AVP with a=crypto ("best effort"); the default policy `offer` takes
    // it. Signalling over TCP.
    srtp_call("srtp-best-effort", &[], "srtp", "RTP/AVP", "tcp");
}

#[test]
fn baresip_over_mutual_tls_with_srtp_is_answered_and_the_audio_is_exact_both_ways() {
    // SIP over TLS with a client certificate (mutual TLS), `mediaenc=srtp-mand`, under the TLS
    // listeners' default policy (`require`). A baresip without a certificate is refused first.
    srtp_call("srtp-tls", &[], "srtp-mand", "RTP/SAVP", "tls");
}

/// One baresip call with `mediaenc` to frontdesk started with `args`; both SDPs must use
/// `proto`, and every check of the module docs must hold. SIP goes over `transport` (udp, tcp,
/// tls); over TLS frontdesk requires a client certificate, a baresip without one is refused
/// before the call, and the SDPs come from baresip's SIP trace (the capture only shows TLS
/// records, which must not hold any SIP or key in clear).
fn srtp_call(name: &str, args: &[&str], mediaenc: &str, proto: &str, transport: &str) {
    let dir = TestDir::new(name);
    let (ul, _) = speech(&dir, "caller", CALLER_SENTENCE);
    // baresip reads 16-bit WAV; µ-law decodes and re-encodes to the same bytes.
    let wav = dir.join("caller.wav");
    let st = Command::new("sox")
        .args(["-t", "ul", "-r", "8000", "-c", "1"])
        .arg(dir.join("caller.ul"))
        .args(["-b", "16", "-e", "signed-integer"])
        .arg(&wav)
        .args(["pad", "0", "4"])
        .status()
        .expect("sox");
    assert!(st.success());
    assert!(ul.len() > 8000);
    let sim = Sim::start_scenario(&dir, "e2e.toml");
    let mut serve_args = args.to_vec();
    let tls = transport == "tls";
    let tls_addr: std::net::SocketAddr =
        format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let tls_args = if tls {
        make_tls_certs(&dir);
        tls_listener_args(&dir, tls_addr, true)
    } else {
        Vec::new()
    };
    serve_args.extend(tls_args.iter().map(String::as_str));
    let mut serve = Serve::start_with(&dir, &dialplans(&dir), &sim.url(), &serve_args);
    let ca = dir.join("ca.pem");
    let (target, caller_tls) = if tls {
        let trust = format!("sip_cafile {}", ca.display());
        // Without the trunk's certificate: the handshake is refused, no call.
        let stranger = Baresip::new(&dir, "stranger", &wav, Some(mediaenc), &trust);
        let target = format!("sip:agent@{tls_addr};transport=tls");
        let out = stranger.run(&target, 2, 15);
        assert!(
            !out.contains("Call established"),
            "a TLS client without a certificate got a call:\n{out}"
        );
        let certificate = dir.join("client-bundle.pem");
        let with_cert = format!("{trust}\nsip_certificate {}", certificate.display());
        (target, with_cert)
    } else {
        (
            format!("sip:agent@{};transport={transport}", serve.sip),
            String::new(),
        )
    };
    let caller = Baresip::new(&dir, "baresip", &wav, Some(mediaenc), &caller_tls);
    // Only this call's packets: the SIP port it dials and its media ports (frontdesk's media
    // goes to and comes from them). A wider filter takes in every other test's loopback traffic
    // and the capture drops packets on a busy machine.
    let sip_port = if tls {
        tls_addr.port()
    } else {
        serve.sip.port()
    };
    let (low, high) = caller.rtp_ports;
    let capture = Capture::start_filter(
        &dir,
        "srtp",
        &format!("host 127.0.0.1 and (port {sip_port} or portrange {low}-{high})"),
    );
    let out = caller.call(&target, 10);
    let pcap = capture.finish();
    let status = serve.proc.terminate(Duration::from_secs(15));
    let log = serve.proc.log_text();
    assert!(
        out.contains("SRTP is Enabled") && out.contains("Call established"),
        "baresip did not establish an SRTP call:\n{out}\n---- frontdesk ----\n{log}"
    );
    assert!(status.is_some_and(|s| s.success()), "{log}");
    assert!(log.contains("media is SRTP"), "{log}");
    let want = match transport {
        "tcp" => "transport=Tcp",
        "tls" => "transport=Tls",
        _ => "transport=Udp",
    };
    assert!(
        strip_ansi(&log).contains(want),
        "the INVITE did not come over {transport}"
    );
    if tls {
        // The stranger's handshake was refused in one line; the trunk's was taken.
        assert_eq!(
            log.matches("SIP over TLS: handshake refused").count(),
            1,
            "{log}"
        );
        // A peer closing its TLS session is normal: no warning from the SIP stack's TLS glue.
        assert!(!log.contains("backend EOF"), "{log}");
    }

    // Both SDPs, baresip's offer and our answer: same profile, tag and suite. Over TLS from
    // baresip's trace, else from the capture.
    let packets = datagrams(&pcap);
    let (offer, answer) = if tls {
        (
            sdp_in_trace(&out, "INVITE "),
            sdp_in_trace(&out, "SIP/2.0 200 "),
        )
    } else {
        let sip_port = serve.sip.port();
        (
            sdp_of(&packets, sip_port, "INVITE "),
            sdp_of(&packets, sip_port, "SIP/2.0 200 "),
        )
    };
    let (their_rtp, their_proto, their_cryptos) = media_of(&offer);
    let (our_rtp, our_proto, our_cryptos) = media_of(&answer);
    assert_eq!((their_proto.as_str(), our_proto.as_str()), (proto, proto));
    assert_eq!(our_cryptos.len(), 1, "one a=crypto in the answer");
    let ours = &our_cryptos[0];
    let theirs = their_cryptos
        .iter()
        .find(|c| c.tag == ours.tag)
        .expect("the answer's tag is one of the offer's");
    assert_eq!(theirs.suite, ours.suite);
    assert_ne!(
        theirs.key.key, ours.key.key,
        "each side sends with its own key"
    );
    if tls {
        // On the wire the signalling is TLS records only: no SIP, no key in clear.
        let session: Vec<&Datagram> = packets
            .iter()
            .filter(|d| d.src == tls_addr.port() || d.dst == tls_addr.port())
            .collect();
        assert!(session.len() > 4, "no TLS session in the capture");
        for d in session {
            for clear in [
                b"SIP/2.0".as_slice(),
                b"a=crypto",
                ours.key.key.to_base64().as_bytes(),
                theirs.key.key.to_base64().as_bytes(),
            ] {
                assert!(
                    find(&d.payload, clear).is_none(),
                    "{:?} in clear on the TLS connection",
                    String::from_utf8_lossy(clear)
                );
            }
        }
    }
    // Keys are never logged.
    for c in [ours, theirs] {
        let b64 = c.key.key.to_base64();
        assert!(!log.contains(&b64), "an SRTP key is in frontdesk's log");
    }

    // The agent is heard: our SRTP decrypts with our key and carries the simulator's audio.
    let (heard, sent) = decrypt_rtp(
        &packets,
        our_rtp,
        their_rtp,
        receiver(ours.suite, &ours.key.key),
    );
    assert!(sent > 200, "only {sent} SRTP packets reached baresip");
    let items = sim_audio_items(&read_jsonl(&sim.record_server));
    assert!(!items.is_empty(), "the simulator sent no audio");
    for (i, audio) in items.iter().enumerate() {
        assert!(
            find(&heard, audio).is_some(),
            "assistant audio item {i} ({} bytes) is not in the decrypted SRTP ({} bytes)",
            audio.len(),
            heard.len()
        );
    }

    // The caller's audio, decrypted from the wire, reached the session byte for byte.
    let (spoken, got) = decrypt_rtp(
        &packets,
        their_rtp,
        our_rtp,
        receiver(theirs.suite, &theirs.key.key),
    );
    assert!(got > 200, "only {got} SRTP packets from baresip");
    let appended = appended_audio(&read_jsonl(&sim.record));
    if let Err(e) = relayed_exactly(&appended, &spoken) {
        panic!("the caller's decrypted audio did not reach the session exactly: {e}");
    }
    // The sentence itself is in it (baresip encoded our µ-law WAV back to the same bytes, except
    // that µ-law's two zeros 0x7f and 0xff both come back as 0xff).
    let canonical: Vec<u8> = ul
        .iter()
        .map(|&b| if b == 0x7f { 0xff } else { b })
        .collect();
    let middle = &canonical[canonical.len() / 4..canonical.len() / 4 + 1600];
    assert!(
        find(&spoken, middle).is_some(),
        "the caller's sentence is not in its SRTP"
    );

    // SRTCP: our reports decrypt with our key (RTCP on the odd port above RTP).
    let mut rtcp_rx = receiver(ours.suite, &ours.key.key);
    let reports: Vec<Vec<u8>> = packets
        .iter()
        .filter(|d| d.src == our_rtp + 1 && d.dst == their_rtp + 1)
        .map(|d| rtcp_rx.unprotect(&d.payload).expect("our SRTCP decrypts"))
        .collect();
    assert!(!reports.is_empty(), "no SRTCP report from frontdesk");
    assert!(
        reports.iter().all(|r| matches!(r[1], 200 | 201)),
        "SR/RR first"
    );
    // Nothing baresip sent failed authentication or was taken for a replay, on either socket.
    let plain_log = strip_ansi(&log);
    let summaries: Vec<&str> = plain_log
        .lines()
        .filter(|l| l.contains("SRTP summary"))
        .collect();
    assert_eq!(
        summaries.len(),
        2,
        "one SRTP summary per socket (RTP, RTCP):\n{plain_log}"
    );
    for s in summaries {
        assert!(
            s.contains("auth_failures=0") && s.contains("replays=0"),
            "SRTP drops: {s}"
        );
    }
}

#[test]
fn plain_rtp_offer_to_a_require_trunk_gets_488() {
    let dir = TestDir::new("srtp-require-488");
    // The default is `off`, the loopback trunk requires SRTP: the trunk's policy wins.
    let config = dir.join("frontdesk.toml");
    std::fs::write(
        &config,
        r#"
[media]
srtp = "off"

[admission]
[[admission.trunks]]
name = "loopback-carrier"
allow = ["127.0.0.0/8"]
srtp = "require"
"#,
    )
    .expect("write config");
    let config_arg = config.display().to_string();
    let serve = Serve::start(
        &dir,
        &dialplans(&dir),
        &[
            "--config",
            &config_arg,
            "--realtime-url",
            "ws://127.0.0.1:9/v1/realtime",
        ],
    );
    let (run, log) = sipp_expect(&dir, &serve, "invite_plain_expect_488.xml", "488");
    assert!(
        run.output.contains("SRTP is required"),
        "the 488 does not say why:\n{}",
        run.output
    );
    // No dialog, no model session: the call was refused before either.
    assert!(!log.contains("Realtime session opened"), "{log}");

    // baresip with plain RTP gets the same answer.
    let wav = silence_wav(&dir);
    let plain = Baresip::new(&dir, "plain", &wav, None, "");
    let out = plain.call(&format!("sip:agent@{}", serve.sip), 3);
    assert!(
        out.contains("488"),
        "baresip with plain RTP was not refused with 488:\n{out}"
    );
}

#[test]
fn plain_rtp_offer_over_tls_gets_488_while_udp_takes_it() {
    // No SRTP setting at all: the TLS listener requires SRTP by default, UDP and TCP offer it.
    let dir = TestDir::new("srtp-tls-488");
    make_tls_certs(&dir);
    let tls: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let args = tls_listener_args(&dir, tls, false);
    let extra: Vec<&str> = args.iter().map(String::as_str).collect();
    // Sessions go to the built-in simulator (no key, no URL).
    let serve = Serve::start(&dir, &dialplans(&dir), &extra);
    let wav = silence_wav(&dir);
    let trust = format!("sip_cafile {}", dir.join("ca.pem").display());
    let over_tls = Baresip::new(&dir, "plain-tls", &wav, None, &trust);
    let out = over_tls.call(&format!("sip:agent@{tls};transport=tls"), 3);
    let log = strip_ansi(&serve.proc.log_text());
    assert!(
        out.contains("SIP/2.0 488 ") && out.contains("SRTP is required"),
        "a plain-RTP offer over TLS was not refused with 488:\n{out}\n---- frontdesk ----\n{log}"
    );
    assert!(!out.contains("Call established"), "{out}");
    assert!(log.contains("transport=Tls"), "{log}");
    // The log names the setting that refused it.
    assert!(log.contains("srtp_from=[sip.tls] srtp"), "{log}");
    // The same plain offer over UDP is answered (the policy is the listener's, not global).
    let over_udp = Baresip::new(&dir, "plain-udp", &wav, None, "");
    let out = over_udp.call(&format!("sip:agent@{}", serve.sip), 3);
    assert!(
        out.contains("Call established") && !out.contains("SRTP is Enabled"),
        "a plain-RTP offer over UDP was not answered with plain RTP:\n{out}\n---- frontdesk ----\n{}",
        serve.proc.log_text()
    );
}

#[test]
fn per_listen_address_policy_refuses_plain_rtp_on_that_address_only() {
    // Two TLS listeners (UDP/TCP take one address per IP family): TLS calls may use plain RTP
    // (`--sip-tls-srtp offer`), except on the carrier-facing one, which `[sip.srtp_per_listen]`
    // makes `require`.
    let dir = TestDir::new("srtp-per-listen");
    make_tls_certs(&dir);
    let strict: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let relaxed = format!("127.0.0.1:{}", free_port());
    let config = dir.join("frontdesk.toml");
    std::fs::write(
        &config,
        format!("[sip.srtp_per_listen]\n\"{strict}\" = \"require\"\n"),
    )
    .expect("write config");
    let config_arg = config.display().to_string();
    let mut args = tls_listener_args(&dir, strict, false);
    args.extend(
        [
            "--sip-tls-listen",
            &relaxed,
            "--sip-tls-srtp",
            "offer",
            "--config",
            &config_arg,
        ]
        .map(str::to_owned),
    );
    let extra: Vec<&str> = args.iter().map(String::as_str).collect();
    // Sessions go to the built-in simulator (no key, no URL).
    let serve = Serve::start(&dir, &dialplans(&dir), &extra);
    let wav = silence_wav(&dir);
    let trust = format!("sip_cafile {}", dir.join("ca.pem").display());
    let caller = Baresip::new(&dir, "plain-strict", &wav, None, &trust);
    let out = caller.call(&format!("sip:agent@{strict};transport=tls"), 3);
    let log = strip_ansi(&serve.proc.log_text());
    assert!(
        out.contains("SIP/2.0 488 ") && out.contains("SRTP is required"),
        "a plain-RTP offer to {strict} was not refused with 488:\n{out}\n---- frontdesk ----\n{log}"
    );
    assert!(
        log.contains(&format!("srtp_from=[sip.srtp_per_listen] {strict}")),
        "{log}"
    );
    // The same offer to the other TLS listener is answered with plain RTP.
    let caller = Baresip::new(&dir, "plain-relaxed", &wav, None, &trust);
    let out = caller.call(&format!("sip:agent@{relaxed};transport=tls"), 3);
    assert!(
        out.contains("Call established") && !out.contains("SRTP is Enabled"),
        "a plain-RTP offer to {relaxed} was not answered:\n{out}\n---- frontdesk ----\n{}",
        serve.proc.log_text()
    );
}
