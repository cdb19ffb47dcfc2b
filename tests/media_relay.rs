//! End to end: the caller's audio reaches the session with no frame added or removed, on an
//! impaired path and across a pause in the caller's RTP; frontdesk's own RTP toward the caller.
//! The caller is `tests/rtp_caller.py` (SIP over UDP, RTP with impairments applied at the sender);
//! the session is `frontdesk sim`, whose `--record` shows what frontdesk appended.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

const F: usize = 160;

fn dialplan(dir: &TestDir, media: &str) -> PathBuf {
    agent_dialplan(dir, "Hello.", media)
}

/// One RTP packet the caller received.
struct Heard {
    at: f64,
    seq: u16,
    ts: u32,
    marker: bool,
    silence: bool,
}

fn heard(run: &CallerRun) -> Vec<Heard> {
    run.received
        .iter()
        .filter(|p| p["pt"] == 0)
        .map(|p| Heard {
            at: p["at"].as_f64().unwrap_or_default(),
            seq: p["seq"].as_u64().unwrap_or_default() as u16,
            ts: p["ts"].as_u64().unwrap_or_default() as u32,
            marker: p["marker"].as_bool().unwrap_or_default(),
            silence: p["payload"]
                .as_str()
                .is_some_and(|h| h.len() == 2 * F && h.chars().all(|c| c == 'f')),
        })
        .collect()
}

/// Indices of the marked packets of audio: the first packet of each of the agent's replies (the
/// stream's first packet, a marked silence packet, is not one).
fn markers(h: &[Heard]) -> Vec<usize> {
    (0..h.len())
        .filter(|&i| h[i].marker && !h[i].silence)
        .collect()
}

const MONOLOGUE: &str = "I am calling because my daughter needs a check up and a cleaning before \
    the school year starts and we would also like to ask about the braces your colleague \
    mentioned during our last visit in the spring";

/// With continuous RTP (the default), a caller speaking for about ten seconds keeps receiving
/// one packet every 20 ms while the agent is silent, and the agent's reply follows with the
/// marker bit set, the next sequence number and the next timestamp.
#[test]
fn the_caller_receives_continuous_rtp_while_the_agent_is_silent() {
    let Setup {
        dir,
        audio,
        sim: _sim,
        mut serve,
        ..
    } = setup(
        "continuous",
        MONOLOGUE,
        "vad = { silence_duration_ms = 1200 }",
    );
    let run = rtp_caller(&dir, serve.sip, &audio, &["--tail-ms", "5000"]);
    serve.proc.terminate(Duration::from_secs(15));
    let h = heard(&run);
    assert!(h.len() > 200, "only {} packets reached the caller", h.len());
    for w in h.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "sequence numbers jump");
        assert_eq!(w[1].ts, w[0].ts.wrapping_add(160), "timestamps jump");
        assert!(!(w[1].marker && w[1].silence), "a silence packet is marked");
    }
    assert!(h[0].marker, "the stream's first packet is marked");
    let marked = markers(&h);
    assert!(marked.len() >= 2, "greeting and reply expected: {marked:?}");
    // Before the reply, while the agent was silent: silence, about one packet per 20 ms.
    let to = marked[1];
    let from = (0..to)
        .rev()
        .take_while(|&i| h[i].silence)
        .last()
        .unwrap_or(to);
    let window = h[to].at - h[from].at;
    eprintln!("{} silence packets over {window:.2} s", to - from);
    assert!(
        window > 3.0,
        "the agent answered too early to tell ({window:.2} s)"
    );
    let expected = window / 0.020;
    assert!(
        (to - from) as f64 >= 0.95 * expected,
        "{} packets in {window:.2} s",
        to - from
    );
    let gap = h[from..=to]
        .windows(2)
        .map(|w| w[1].at - w[0].at)
        .fold(0.0f64, f64::max);
    assert!(gap < 0.25, "a {gap:.3} s gap in our RTP");
}

/// `--send-silence false`: RTP only while the agent speaks (the old behaviour).
#[test]
fn without_send_silence_the_caller_receives_rtp_only_while_the_agent_speaks() {
    let dir = TestDir::new("no-silence");
    let (ul, _) = speech(&dir, "caller", "Hello, are you open on Saturday?");
    let audio = dir.join("audio.ul");
    std::fs::write(&audio, &ul).expect("write");
    let sim = Sim::start_scenario(&dir, "e2e.toml");
    let plans = dialplan(&dir, "");
    let mut serve = Serve::start(
        &dir,
        &plans,
        &["--realtime-url", &sim.url(), "--send-silence", "false"],
    );
    let run = rtp_caller(&dir, serve.sip, &audio, &["--tail-ms", "4000"]);
    serve.proc.terminate(Duration::from_secs(15));
    let h = heard(&run);
    let marked = markers(&h);
    assert!(marked.len() >= 2, "greeting and reply expected: {marked:?}");
    let reply = marked[1];
    let pause = h[reply].at - h[reply - 1].at;
    assert!(
        pause > 1.0,
        "RTP between the agent's replies ({pause:.2} s gap)"
    );
}

/// A simulator, a `frontdesk serve` in front of it, and the caller's speech.
struct Setup {
    dir: TestDir,
    /// The caller's speech, raw µ-law.
    ul: Vec<u8>,
    /// Where `ul` is stored, for the caller.
    audio: PathBuf,
    sim: Sim,
    serve: Serve,
}

/// Starts the simulator and frontdesk (with the agent's extra dialplan lines `media`) and
/// speaks `sentence` into the caller's audio file.
fn setup(name: &str, sentence: &str, media: &str) -> Setup {
    let dir = TestDir::new(name);
    let (ul, _) = speech(&dir, "caller", sentence);
    let audio = dir.join("audio.ul");
    std::fs::write(&audio, &ul).expect("write");
    let sim = Sim::start_scenario(&dir, "e2e.toml");
    let plans = dialplan(&dir, media);
    let serve = Serve::start(&dir, &plans, &["--realtime-url", &sim.url()]);
    Setup {
        dir,
        ul,
        audio,
        sim,
        serve,
    }
}

/// What the Python caller did and heard.
struct CallerRun {
    /// One entry per audio frame: `dropped`, `copies`, `seq`, `ts`.
    sent: Vec<Value>,
    /// RTP packets received: `at` (s since streaming started), `seq`, `ts`, `marker`, `payload`.
    received: Vec<Value>,
}

/// Runs `tests/rtp_caller.py` against `sip` with `args`, streaming `audio`.
fn rtp_caller(dir: &TestDir, sip: std::net::SocketAddr, audio: &Path, args: &[&str]) -> CallerRun {
    let out_file = dir.join("caller.json");
    let out = Command::new("python3")
        .arg(Path::new(ROOT).join("tests/rtp_caller.py"))
        .arg("--sip")
        .arg(sip.to_string())
        .arg("--audio")
        .arg(audio)
        .arg("--out")
        .arg(&out_file)
        .args(args)
        .output()
        .expect("run python3 tests/rtp_caller.py");
    assert!(
        out.status.success(),
        "the RTP caller failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(&out_file).expect("caller output"))
            .expect("caller JSON");
    CallerRun {
        sent: v["sent"].as_array().cloned().unwrap_or_default(),
        received: v["received"].as_array().cloned().unwrap_or_default(),
    }
}

/// Where frame 0 of `frames` sits in `appended` (a byte offset), found from the first frames
/// the caller sent that are unique in the audio (not silence, not repeated).
fn align(appended: &[u8], frames: &[&[u8]], sent: &[Value]) -> usize {
    for (j, f) in frames.iter().enumerate().take(200) {
        let unique = frames.iter().filter(|g| *g == f).count() == 1;
        if !unique || sent[j]["dropped"].as_bool() == Some(true) {
            continue;
        }
        if let Some(p) = find(appended, f) {
            if let Some(start) = p.checked_sub(j * F) {
                return start;
            }
        }
    }
    panic!("none of the caller's first frames reached the session");
}

/// A caller whose packets are delayed by up to 60 ms (so reordered), 5 % lost and 2 % duplicated:
/// the session receives one frame per frame the caller meant to send, in order, each either the
/// caller's frame or silence, every lost frame concealed exactly once, nothing added.
#[test]
fn impaired_caller_audio_reaches_the_session_continuous_and_in_order() {
    let Setup {
        dir,
        ul,
        audio,
        sim,
        mut serve,
    } = setup(
        "impaired",
        "Hello, I would like to book a cleaning for next Tuesday morning, if you have a slot.",
        "",
    );
    let caller = rtp_caller(
        &dir,
        serve.sip,
        &audio,
        &[
            "--seed",
            "7",
            "--jitter-ms",
            "60",
            "--loss",
            "0.05",
            "--dup",
            "0.02",
            "--tail-ms",
            "2000",
        ],
    );
    serve.proc.terminate(Duration::from_secs(15));
    let appended = appended_audio(&read_jsonl(&sim.record));
    let frames: Vec<&[u8]> = ul.chunks_exact(F).collect();
    assert_eq!(caller.sent.len(), frames.len());
    let start = align(&appended, &frames, &caller.sent);
    let silence = [0xFFu8; F];
    let (mut concealed, mut dropped) = (0, 0);
    for (k, f) in frames.iter().enumerate() {
        let got = appended
            .get(start + k * F..start + (k + 1) * F)
            .unwrap_or_else(|| panic!("the session got only {k} of {} frames", frames.len()));
        let was_dropped = caller.sent[k]["dropped"].as_bool() == Some(true);
        if got == *f {
            assert!(!was_dropped || *f == silence, "frame {k} was never sent");
            continue;
        }
        assert_eq!(
            got, silence,
            "frame {k} is neither the caller's frame nor silence: added, removed or out of order"
        );
        concealed += 1;
        dropped += usize::from(was_dropped);
    }
    let lost = caller
        .sent
        .iter()
        .filter(|s| s["dropped"].as_bool() == Some(true))
        .count();
    assert!(lost > 5, "the caller dropped {lost} packets");
    assert_eq!(dropped, lost, "every lost frame is concealed");
    // The call's row agrees: late packets are the only other concealed frames.
    let media = media_row(&serve.db);
    eprintln!(
        "{} frames, {concealed} concealed, {lost} dropped by the caller; {media:?}",
        frames.len()
    );
    assert_eq!(media.lost, lost as i64, "{media:?}");
    assert_eq!(concealed as i64, media.lost + media.late, "{media:?}");
    assert!(media.reordered > 20, "{media:?}");
    assert!(media.duplicated > 0, "{media:?}");
    assert!(media.max_depth_ms <= 60 + 20, "{media:?}");
    assert!(media.concealed >= concealed as i64, "{media:?}");
}

/// A caller that sends no RTP for 3 s in the middle of its speech (silence suppression): the
/// session receives 3 s of silence frames in that place, its VAD ends the caller's turn during
/// the pause, and the audio after the pause follows the silence directly.
#[test]
fn a_pause_in_the_callers_rtp_becomes_silence_frames_and_ends_the_turn() {
    let Setup {
        dir,
        ul,
        audio,
        sim,
        mut serve,
    } = setup(
        "pause",
        "I would like an appointment. Tomorrow at nine would be perfect for me.",
        "",
    );
    let frames: Vec<&[u8]> = ul.chunks_exact(F).collect();
    // Pause after the first sentence (about 1.8 s in).
    let pause_at = 90usize;
    assert!(frames.len() > pause_at + 50, "speech too short");
    let caller = rtp_caller(
        &dir,
        serve.sip,
        &audio,
        &[
            "--pause-at-ms",
            &(pause_at * 20).to_string(),
            "--pause-ms",
            "3000",
            "--tail-ms",
            "2000",
        ],
    );
    serve.proc.terminate(Duration::from_secs(15));
    let appended = appended_audio(&read_jsonl(&sim.record));
    let start = align(&appended, &frames, &caller.sent);
    let before: Vec<u8> = frames[..pause_at].concat();
    let after: Vec<u8> = frames[pause_at..].concat();
    assert_eq!(
        appended.get(start..start + before.len()),
        Some(&before[..]),
        "the audio before the pause arrived exactly"
    );
    let pause_start = start + before.len();
    let resumed = find(&appended[pause_start..], &after)
        .unwrap_or_else(|| panic!("the audio after the pause did not arrive exactly"));
    let silence_frames = resumed / F;
    assert_eq!(resumed % F, 0);
    assert!(
        appended[pause_start..pause_start + resumed]
            .iter()
            .all(|&b| b == 0xFF),
        "the pause is silence"
    );
    eprintln!("{silence_frames} silence frames for the pause");
    // 3 s = 150 frames; a frame or two more only if the caller itself resumed late.
    assert!(
        (150..=152).contains(&silence_frames),
        "{silence_frames} silence frames for a 3 s pause"
    );
    // The simulator's VAD ended the turn inside the pause (its audio clock is the appended audio).
    let server_events = read_jsonl(&sim.record_server);
    let pause_ms = (pause_start / 8) as i64;
    let stopped: Vec<i64> = server_events
        .iter()
        .filter(|e| e["type"] == "input_audio_buffer.speech_stopped")
        .filter_map(|e| e["audio_end_ms"].as_i64())
        .collect();
    assert!(
        stopped
            .iter()
            .any(|&ms| ms >= pause_ms - 300 && ms <= pause_ms + 3_000),
        "no speech_stopped within the pause ({pause_ms} ms): {stopped:?}"
    );
    assert!(server_events
        .iter()
        .any(|e| e["type"] == "response.created"));
    let media = media_row(&serve.db);
    assert_eq!((media.lost, media.late), (0, 0), "{media:?}");
}

/// The caller-audio figures of the call's row.
#[derive(Debug)]
struct MediaRow {
    lost: i64,
    late: i64,
    duplicated: i64,
    reordered: i64,
    concealed: i64,
    max_depth_ms: i64,
}

fn media_row(db: &Path) -> MediaRow {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = frontdesk::store::Store::open(db).await.expect("open db");
        let (lost, late, duplicated, reordered, concealed, max_depth_ms): (
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
        ) = sqlx::query_as(
            "SELECT packets_lost, packets_late, packets_duplicated, packets_reordered,
                        concealed_frames, max_jitter_buffer_ms FROM calls ORDER BY id DESC LIMIT 1",
        )
        .fetch_one(store.pool())
        .await
        .expect("the call's row");
        MediaRow {
            lost,
            late,
            duplicated,
            reordered,
            concealed,
            max_depth_ms,
        }
    })
}
