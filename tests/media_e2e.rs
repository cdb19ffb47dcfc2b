//! End to end media behaviour with SIPp and the simulator: barge-in timing and truncation, and
//! RFC 4733 key presses reaching the model.

mod common;

use std::time::Duration;

use common::*;

fn dialplan(dir: &TestDir) -> std::path::PathBuf {
    agent_dialplan(dir, "Hello.", "")
}

/// The caller starts speaking 1.5 s into a long greeting: frontdesk stops the agent's audio within
/// 40 ms of the simulator's `speech_started`, cancels the greeting's response (the session leaves
/// interruptions to frontdesk) and truncates the greeting at the audio the caller actually
/// received (within 20 ms); the caller's interruption is answered.
#[test]
fn barge_in_stops_playout_and_truncates_at_the_audio_heard() {
    let dir = TestDir::new("barge-in");
    let (ul, _) = speech(
        &dir,
        "caller",
        "Sorry to interrupt, I only need your opening hours.",
    );
    std::fs::write(dir.join("audio.ul"), &ul).expect("write");
    let sim = Sim::start_scenario(&dir, "barge_in.toml");
    let plans = dialplan(&dir);
    let mut serve = Serve::start(&dir, &plans, &["--realtime-url", &sim.url()]);
    let media_port = free_port();
    let sim_port = sim.addr.port();
    let capture = Capture::start_filter(
        &dir,
        "barge-in",
        &format!("udp port {media_port} or tcp src port {sim_port}"),
    );
    let run = run_sipp(
        &dir,
        "uac_barge_in.xml",
        serve.sip,
        media_port,
        7_000,
        false,
    );
    let pcap = capture.finish();
    assert!(
        run.success,
        "call failed:\n{}\n{}",
        run.output,
        serve.proc.log_text()
    );
    serve.proc.terminate(Duration::from_secs(15));

    let rtp = read_rtp(&pcap, media_port);
    assert!(!rtp.is_empty(), "no RTP reached the caller");
    // The greeting is the first talkspurt of audio (the stream starts with a marked packet of
    // silence: frontdesk sends silence while the agent is silent); the next marked audio packet
    // starts the reply.
    let silent = |p: &RtpRecord| p.payload.iter().all(|&b| b == 0xFF);
    let start = rtp
        .iter()
        .position(|p| p.marker && !silent(p))
        .expect("the greeting reached the caller");
    let next_spurt = (start + 1..rtp.len())
        .find(|&i| rtp[i].marker && !silent(&rtp[i]))
        .unwrap_or(rtp.len());
    let last_audio = (start..next_spurt)
        .rev()
        .find(|&i| !silent(&rtp[i]))
        .expect("greeting audio");
    let started = tcp_text_times(&pcap, sim_port, "input_audio_buffer.speech_started");
    let speech_started = *started.first().expect("the simulator sent speech_started");
    let stop_delay_ms = (rtp[last_audio].time - speech_started) * 1000.0;
    assert!(
        stop_delay_ms <= 40.0,
        "the agent's RTP went on for {stop_delay_ms:.1} ms after speech_started"
    );
    // What the caller heard of the greeting: every packet up to its last audio packet, but the
    // greeting's own silent frames (word gaps) and our silence fill look alike on the wire, so
    // the packets after speech_started that are silent may be either.
    let greeting = &rtp[start..=last_audio];
    let heard_max = greeting.len() as f64 * 20.0;
    let heard_min = greeting
        .iter()
        .filter(|p| p.time <= speech_started || !silent(p))
        .count() as f64
        * 20.0;
    let client = read_jsonl(&sim.record);
    let truncate = client
        .iter()
        .find(|e| e["type"] == "conversation.item.truncate")
        .expect("a truncate was sent");
    let audio_end_ms = truncate["audio_end_ms"].as_f64().expect("audio_end_ms");
    assert!(
        audio_end_ms >= heard_min - 20.0 && audio_end_ms <= heard_max + 20.0,
        "truncated at {audio_end_ms} ms but the caller received {heard_min}–{heard_max} ms of the greeting"
    );
    assert!(
        heard_min > 1000.0,
        "the caller heard only {heard_min} ms before interrupting"
    );
    // The truncate names the item that was playing, and the server accepted it.
    let server = read_jsonl(&sim.record_server);
    assert!(server
        .iter()
        .any(|e| e["type"] == "conversation.item.truncated"));
    // The agent has the echo gate (the default), so frontdesk decides interruptions: the session
    // does not cancel on speech (interrupt_response = false); frontdesk cancelled the greeting,
    // still being generated, with one response.cancel, before the truncate.
    let update = client
        .iter()
        .find(|e| e["type"] == "session.update")
        .expect("session.update");
    assert_eq!(
        update["session"]["audio"]["input"]["turn_detection"]["interrupt_response"],
        false
    );
    let position = |ty: &str| client.iter().position(|e| e["type"] == ty);
    let cancels = client
        .iter()
        .filter(|e| e["type"] == "response.cancel")
        .count();
    assert_eq!(cancels, 1, "one response.cancel");
    assert!(position("response.cancel") < position("conversation.item.truncate"));
    let dones: Vec<(&str, &str)> = server
        .iter()
        .filter(|e| e["type"] == "response.done")
        .map(|e| {
            (
                e["response"]["status"].as_str().unwrap_or_default(),
                e["response"]["status_details"]["reason"]
                    .as_str()
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        dones.first(),
        Some(&("cancelled", "client_cancelled")),
        "{dones:?}"
    );
    // The caller's interruption was answered ("Sorry, please go ahead.").
    assert!(
        dones.get(1).is_some_and(|d| d.0 == "completed"),
        "{dones:?}"
    );
    assert!(
        !server.iter().any(|e| e["type"] == "error"),
        "the simulator reported an error: {:?}",
        server
            .iter()
            .filter(|e| e["type"] == "error")
            .collect::<Vec<_>>()
    );
}

/// RFC 4733 digits sent by SIPp (the pcaps shipped with sip-tester) reach the model as user
/// messages, once per key press.
#[test]
fn dtmf_digits_reach_the_model_as_user_messages() {
    let dir = TestDir::new("dtmf");
    let sim = Sim::start(&dir, None);
    let plans = dialplan(&dir);
    let mut serve = Serve::start(&dir, &plans, &["--realtime-url", &sim.url()]);
    let run = run_sipp(&dir, "uac_dtmf.xml", serve.sip, free_port(), 0, false);
    assert!(
        run.success,
        "call failed:\n{}\n{}",
        run.output,
        serve.proc.log_text()
    );
    serve.proc.terminate(Duration::from_secs(15));
    let texts: Vec<String> = read_jsonl(&sim.record)
        .iter()
        .filter(|e| e["type"] == "conversation.item.create" && e["item"]["role"] == "user")
        .filter_map(|e| e["item"]["content"][0]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        texts,
        ["The caller pressed 1.", "The caller pressed #."],
        "{}",
        serve.proc.log_text()
    );
    let rows = ended_calls(&serve.db, 1);
    assert_eq!(rows[0].dtmf_digits, Some(2));
}
