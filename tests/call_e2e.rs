//! End to end: a SIPp caller calls `frontdesk serve`, which talks to `frontdesk sim`. The caller
//! streams a sentence spoken by espeak-ng; the simulator hears it (server VAD), answers, and its
//! audio must come back to the caller as paced RTP. Needs sipp, espeak-ng, sox and tshark/dumpcap
//! (root or capture rights for dumpcap), and python with the `openai` package for the protocol
//! checks — `tests/run.sh` installs all of them.

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::Value;

const CALLER_SENTENCE: &str = "Hello, I would like to book a cleaning for next Tuesday morning.";
/// Time the SIPp caller stays on the line after it starts speaking (ms): its sentence (~4 s),
/// the VAD's silence window, and the simulator's reply (~3 s).
const LISTEN_MS: u64 = 9_000;

/// A dialplan with a short greeting so the test call stays short.
fn test_dialplans(dir: &TestDir) -> PathBuf {
    agent_dialplan(
        dir,
        "Bright Smile Dental, hello.",
        "transcription_model = \"gpt-4o-mini-transcribe\"\n",
    )
}

/// The audio of every assistant item the simulator sent, in order: (item_id, bytes).
fn sim_audio_items(server_events: &[Value]) -> Vec<(String, Vec<u8>)> {
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
    items
}

fn truncated_items(client_events: &[Value]) -> Vec<String> {
    client_events
        .iter()
        .filter(|e| e["type"] == "conversation.item.truncate")
        .filter_map(|e| e["item_id"].as_str().map(str::to_owned))
        .collect()
}

/// Asserts the RTP stream to the caller is paced at 20 ms with continuous sequence numbers and
/// timestamps (+160 per packet inside a talkspurt, marker on each talkspurt's first packet).
fn assert_paced(rtp: &[RtpRecord], payload_type: u8) {
    assert!(
        rtp.len() > 50,
        "too few RTP packets reached the caller: {}",
        rtp.len()
    );
    let ssrc = rtp[0].ssrc;
    assert!(
        rtp[0].marker,
        "the first packet of a talkspurt must carry the marker bit"
    );
    let mut spurt_start = 0usize;
    let mut intervals = Vec::new();
    for i in 1..rtp.len() {
        let (a, b) = (&rtp[i - 1], &rtp[i]);
        assert_eq!(b.ssrc, ssrc, "SSRC changed mid-call");
        assert_eq!(b.payload_type, payload_type);
        assert_eq!(b.payload.len(), 160, "payloads must be 160 bytes (20 ms)");
        assert_eq!(
            b.seq,
            a.seq.wrapping_add(1),
            "sequence numbers must be continuous"
        );
        if b.marker {
            assert!(
                b.timestamp.wrapping_sub(a.timestamp) >= 160,
                "a new talkspurt's timestamp must jump forward"
            );
            spurt_start = i;
        } else {
            assert_eq!(
                b.timestamp,
                a.timestamp.wrapping_add(160),
                "timestamps advance 160 per frame"
            );
            intervals.push(b.time - a.time);
            // No drift inside a talkspurt: packet n leaves at start + n·20 ms (loaded CI tolerance).
            let n = (i - spurt_start) as f64;
            let drift = b.time - (rtp[spurt_start].time + n * 0.020);
            assert!(
                drift.abs() < 0.080,
                "packet {i} is {drift:.3} s off its 20 ms schedule"
            );
        }
    }
    let mean = intervals.iter().sum::<f64>() / intervals.len() as f64;
    assert!(
        (0.0195..0.0205).contains(&mean),
        "mean RTP spacing {mean:.5} s is not 20 ms"
    );
}

struct CallRun {
    dir: TestDir,
    client_events: Vec<Value>,
    server_events: Vec<Value>,
    rtp_to_caller: Vec<RtpRecord>,
    caller_audio: Vec<u8>,
    db: PathBuf,
    sim: Sim,
}

/// Places one call with `scenario_file` (a tests/sipp scenario) and collects everything.
fn place_call(name: &str, sipp_scenario: &str, extra: &[&str], tcp: bool, alaw: bool) -> CallRun {
    let dir = TestDir::new(name);
    let (ul, al) = speech(&dir, "caller", CALLER_SENTENCE);
    std::fs::write(dir.join("audio.ul"), &ul).expect("write");
    std::fs::write(dir.join("audio.al"), &al).expect("write");
    let sim = Sim::start_scenario(&dir, "e2e.toml");
    let dialplans = test_dialplans(&dir);
    let mut serve = Serve::start_with(&dir, &dialplans, &sim.url(), extra);
    // Graceful stop after the call: SIGTERM, exit 0, and the call row is complete.
    let rtp_to_caller = serve.call_and_stop(&dir, sipp_scenario, LISTEN_MS, tcp);
    let client_events = read_jsonl(&sim.record);
    let server_events = read_jsonl(&sim.record_server);
    let db = serve.db.clone();
    CallRun {
        dir,
        client_events,
        server_events,
        rtp_to_caller,
        caller_audio: if alaw { al } else { ul },
        db,
        sim,
    }
}

/// The caller's sentence reached the session exactly, and the simulator's replies
/// reached the caller byte for byte.
fn assert_audio_both_ways(run: &CallRun, payload_type: u8) {
    let appended = appended_audio(&run.client_events);
    // Every caller frame, in order, nothing added, removed or altered (a clean loopback path).
    if let Err(e) = relayed_exactly(&appended, &run.caller_audio) {
        panic!(
            "the simulator did not receive the caller's {} audio bytes exactly: {e} ({} bytes appended)",
            run.caller_audio.len(),
            appended.len()
        );
    }
    let items = sim_audio_items(&run.server_events);
    assert!(
        items.len() >= 2,
        "expected the greeting and a reply, got {} audio items",
        items.len()
    );
    let truncated = truncated_items(&run.client_events);
    let heard: Vec<u8> = run
        .rtp_to_caller
        .iter()
        .flat_map(|p| p.payload.clone())
        .collect();
    for (id, audio) in &items {
        if truncated.contains(id) {
            continue;
        }
        assert!(
            find(&heard, audio).is_some(),
            "assistant item {id} ({} bytes) did not reach the caller intact ({} bytes heard)",
            audio.len(),
            heard.len()
        );
    }
    assert_paced(&run.rtp_to_caller, payload_type);
}

#[test]
fn pcmu_call_talks_to_the_simulator_ga() {
    let run = place_call("pcmu-ga", "uac_talk.xml", &[], false, false);
    assert_audio_both_ways(&run, 0);

    // The session was configured for µ-law with a complete server_vad object.
    let update = run
        .client_events
        .iter()
        .find(|e| e["type"] == "session.update")
        .expect("session.update sent");
    assert_eq!(update["session"]["type"], "realtime");
    assert_eq!(
        update["session"]["audio"]["input"]["format"]["type"],
        "audio/pcmu"
    );
    assert_eq!(
        update["session"]["audio"]["output"]["format"]["type"],
        "audio/pcmu"
    );
    assert_eq!(update["session"]["audio"]["output"]["voice"], "alloy");
    let td = &update["session"]["audio"]["input"]["turn_detection"];
    assert_eq!(td["type"], "server_vad");
    for k in ["threshold", "prefix_padding_ms", "silence_duration_ms"] {
        assert!(td[k].is_number(), "turn_detection.{k} missing: {td}");
    }
    assert_eq!(
        update["session"]["audio"]["input"]["transcription"]["model"],
        "gpt-4o-mini-transcribe"
    );
    // The simulator recognised a caller turn.
    assert!(run
        .server_events
        .iter()
        .any(|e| e["type"] == "input_audio_buffer.speech_started"));
    assert!(run
        .server_events
        .iter()
        .any(|e| e["type"] == "input_audio_buffer.committed"));

    // The call is recorded with its end reason.
    let rows = ended_calls(&run.db, 1);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(r.end_reason.as_deref(), Some("remote-bye"));
    assert_eq!(r.codec.as_deref(), Some("PCMU"));
    assert_eq!(r.caller.as_deref(), Some("+15550001111"));
    assert_eq!(r.sip_status, Some(200));
    assert!(r.answered_at.is_some() && r.ended_at.is_some());
    assert!(r.packets_in > 150, "packets_in {}", r.packets_in);
    assert!(
        r.packets_out as usize >= run.rtp_to_caller.len().saturating_sub(2),
        "packets_out {}",
        r.packets_out
    );

    // Protocol conformance of both directions against the openai SDK models.
    validate_events("ga", "client", &run.sim.record);
    validate_events("ga", "server", &run.sim.record_server);
    drop(run.dir);
}

#[test]
fn beta_dialect_call_conforms() {
    let run = place_call(
        "pcmu-beta",
        "uac_talk.xml",
        &["--realtime-protocol", "beta"],
        false,
        false,
    );
    assert_audio_both_ways(&run, 0);
    let update = run
        .client_events
        .iter()
        .find(|e| e["type"] == "session.update")
        .expect("session.update sent");
    assert_eq!(update["session"]["input_audio_format"], "g711_ulaw");
    assert_eq!(update["session"]["output_audio_format"], "g711_ulaw");
    assert!(run
        .server_events
        .iter()
        .any(|e| e["type"] == "response.audio.delta"));
    validate_events("beta", "client", &run.sim.record);
    validate_events("beta", "server", &run.sim.record_server);
}

#[test]
fn pcma_only_call_over_tcp() {
    let run = place_call("pcma-tcp", "uac_talk_pcma.xml", &[], true, true);
    assert_audio_both_ways(&run, 8);
    let update = run
        .client_events
        .iter()
        .find(|e| e["type"] == "session.update")
        .expect("session.update sent");
    assert_eq!(
        update["session"]["audio"]["input"]["format"]["type"],
        "audio/pcma"
    );
    let rows = ended_calls(&run.db, 1);
    assert_eq!(rows[0].codec.as_deref(), Some("PCMA"));
    assert_eq!(rows[0].end_reason.as_deref(), Some("remote-bye"));
}

#[test]
fn invite_without_sdp_gets_our_offer_and_answer_from_ack() {
    let run = place_call("late-offer", "uac_late_offer.xml", &[], false, false);
    assert_audio_both_ways(&run, 0);
    let rows = ended_calls(&run.db, 1);
    assert_eq!(rows[0].codec.as_deref(), Some("PCMU"));
    assert_eq!(rows[0].end_reason.as_deref(), Some("remote-bye"));
}
