//! End to end in the GPT-Live dialect: a SIPp caller calls `frontdesk serve
//! --realtime-protocol live`, which talks to `frontdesk sim` at `/v1/live/sessions`. PCMU with a
//! delegated `check_availability` (calendar tools), and PCMA. Checks: `session.start` first with
//! the call's G.711 format; the caller's payload bytes reach the session in order (`--record`);
//! the speech of the model's continuous stream reaches the caller unaltered and in order as
//! 160-byte/20 ms RTP (the stream equals what the simulator sent, modulo whole quiet frames: a
//! starved machine can stall the stream longer than the playout keeps in hand, and the pacer
//! then sends silence; that no word is cut apart on a punctual machine is the pair tests' job,
//! on virtual time: `live_a_caller_whose_packets_stop_while_the_agent_talks_hears_every_word_whole`);
//! the tool call is answered (`response.item.create`, then `response.create`) and the result
//! spoken; every event both ways validates against `openai.types.live`.
//! Needs what `tests/call_e2e.rs` needs (`tests/run.sh` installs it).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use frontdesk::media::g711::Law;
use frontdesk::media::pacer::is_quiet;
use serde_json::Value;

/// Maximal runs of non-quiet 20 ms frames ("words").
fn words(law: Law, audio: &[u8]) -> Vec<Vec<u8>> {
    let mut runs = Vec::new();
    let mut run = Vec::new();
    for f in audio.chunks_exact(160) {
        if is_quiet(law, f) {
            if !run.is_empty() {
                runs.push(std::mem::take(&mut run));
            }
        } else {
            run.extend_from_slice(f);
        }
    }
    runs
}

/// The index of the word holding byte `at` of the words' concatenation.
fn word_at(words: &[Vec<u8>], at: usize) -> usize {
    let mut end = 0;
    words
        .iter()
        .position(|w| {
            end += w.len();
            at < end
        })
        .unwrap_or(words.len())
}

fn live_audio(server: &[Value]) -> Vec<u8> {
    server
        .iter()
        .filter(|e| e["type"] == "session.output_audio.delta")
        .flat_map(|e| b64(e["delta"].as_str().unwrap_or_default()))
        .collect()
}

fn live_appended(client: &[Value]) -> Vec<u8> {
    client
        .iter()
        .filter(|e| e["type"] == "session.input_audio.append")
        .flat_map(|e| b64(e["audio"].as_str().unwrap_or_default()))
        .collect()
}

struct LiveRun {
    client: Vec<Value>,
    server: Vec<Value>,
    rtp: Vec<RtpRecord>,
    sim: Sim,
    _dir: TestDir,
}

fn live_call(
    dir: TestDir,
    scenario: &str,
    dialplans: &Path,
    extra: &[&str],
    sipp: &str,
) -> LiveRun {
    let sim = Sim::start_scenario(&dir, scenario);
    let url = format!("ws://{}/v1/live/sessions", sim.addr);
    let mut args = vec!["--realtime-protocol", "live"];
    args.extend_from_slice(extra);
    let mut serve = Serve::start_with(&dir, dialplans, &url, &args);
    let rtp = serve.call_and_stop(&dir, sipp, 9_000, false);
    LiveRun {
        client: read_jsonl(&sim.record),
        server: read_jsonl(&sim.record_server),
        rtp,
        sim,
        _dir: dir,
    }
}

/// A call to the clinic receptionist of [`booking_dialplan`] with the example calendar.
fn booking_call(dir: TestDir, sipp: &str) -> LiveRun {
    let plans = booking_dialplan(&dir, false);
    let calendar = Path::new(ROOT).join("deploy/calendar.example.toml");
    let calendar = calendar.to_string_lossy().into_owned();
    live_call(
        dir,
        "live_booking.toml",
        &plans,
        &["--calendar", &calendar],
        sipp,
    )
}

/// The checks both calls share.
fn assert_live_media(run: &LiveRun, law: Law, payload_type: u8, caller_audio: &[u8]) {
    let start = run.client.first().expect("client events");
    assert_eq!(start["type"], "session.start", "session.start comes first");
    let format = &start["session"]["audio"]["format"];
    let want = if law == Law::Mu {
        "audio/pcmu"
    } else {
        "audio/pcma"
    };
    assert_eq!(format["type"], want);
    assert_eq!(format["rate"], 8000);
    assert_eq!(start["session"]["model"], "gpt-live-1.1");
    for forbidden in [
        "conversation.item.truncate",
        "response.cancel",
        "session.update",
    ] {
        assert!(
            !run.client.iter().any(|e| e["type"] == forbidden),
            "{forbidden} does not exist in GPT-Live"
        );
    }
    // The caller's frames, in order, nothing added, removed or altered.
    let appended = live_appended(&run.client);
    if let Err(e) = relayed_exactly(&appended, caller_audio) {
        panic!("the caller's audio did not reach the session exactly: {e}");
    }
    // The continuous stream came back as 20 ms RTP; every word whole and in order.
    assert!(run.rtp.len() > 200, "{} RTP packets", run.rtp.len());
    assert!(run
        .rtp
        .iter()
        .all(|p| p.payload.len() == 160 && p.payload_type == payload_type));
    let heard: Vec<u8> = run.rtp.iter().flat_map(|p| p.payload.clone()).collect();
    let sent = words(law, &live_audio(&run.server));
    assert!(sent.len() > 5, "the model spoke {} words", sent.len());
    // Modulo whole quiet frames (the gaps between words, silence the pacer sends while its
    // queue is dry, quiet frames skipped for drift) the caller heard exactly what the model sent,
    // in order, up to where the hang-up cut it: the last words may still have been queued.
    let sent_speech: Vec<u8> = sent.concat();
    let heard_speech: Vec<u8> = words(law, &heard).concat();
    if let Some(at) = sent_speech
        .iter()
        .zip(&heard_speech)
        .position(|(a, b)| a != b)
    {
        panic!(
            "the model's audio differs at byte {at} of {} (frame {} of word {})",
            sent_speech.len(),
            at / 160,
            word_at(&sent, at)
        );
    }
    assert!(
        heard_speech.len() <= sent_speech.len(),
        "the caller heard {} bytes of speech the model did not send",
        heard_speech.len() - sent_speech.len()
    );
    let unheard: usize = sent.iter().rev().take(3).map(Vec::len).sum();
    assert!(
        heard_speech.len() + unheard >= sent_speech.len(),
        "{} of {} bytes of speech heard",
        heard_speech.len(),
        sent_speech.len()
    );
    validate_events("live", "client", &run.sim.record);
    validate_events("live", "server", &run.sim.record_server);
}

#[test]
fn live_pcmu_call_with_a_delegated_check_availability() {
    let dir = TestDir::new("live-pcmu");
    booking_speech(&dir);
    let caller = std::fs::read(dir.join("audio.ul")).expect("audio");
    let run = booking_call(dir, "uac_two_turns.xml");
    assert_live_media(&run, Law::Mu, 0, &caller);

    let start = &run.client[0];
    let d = &start["session"]["delegation"];
    assert_eq!(d["type"], "responses");
    let tools: Vec<&str> = d["responses"]["tools"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(tools.contains(&"check_availability"), "{tools:?}");

    // The delegated call, answered, then one response.create.
    let call_id = run
        .server
        .iter()
        .find(|e| e["type"] == "response.event" && e["event"]["item"]["type"] == "function_call")
        .and_then(|e| e["event"]["item"]["call_id"].as_str())
        .expect("a delegated function call")
        .to_owned();
    let answer = run
        .client
        .iter()
        .position(|e| {
            e["type"] == "response.item.create" && e["item"]["call_id"] == call_id.as_str()
        })
        .expect("the call was answered");
    let output: Value = serde_json::from_str(
        run.client[answer]["item"]["output"]
            .as_str()
            .unwrap_or("null"),
    )
    .expect("tool output is JSON");
    assert_eq!(output["ok"], true, "{output}");
    let slot = output["slots"][0]["start"]
        .as_str()
        .expect("a free slot")
        .to_owned();
    assert!(
        run.client[answer..]
            .iter()
            .any(|e| e["type"] == "response.create"),
        "response.create after the output"
    );
    // The result was spoken.
    let spoken: String = run
        .server
        .iter()
        .filter(|e| e["type"] == "session.output_transcript.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert!(
        spoken.contains("The first free slot is") && spoken.contains(&slot),
        "spoken: {spoken}"
    );
}

/// The caller (SIPp) talks over the greeting and its RTP stops mid-greeting: the model's stream,
/// paced by our appends, stalls for the jitter buffer's clock grace (this once cut a word into
/// 13 + 7 frames with 3 of silence between; the pair test named in the module docs covers it).
#[test]
fn live_pcma_call() {
    let dir = TestDir::new("live-pcma");
    let (_, al) = speech(&dir, "caller", "Hello, when are you open on Saturdays?");
    std::fs::write(dir.join("audio.al"), &al).expect("write");
    std::fs::write(dir.join("audio.ul"), &al).expect("write");
    let run = booking_call(dir, "uac_talk_pcma.xml");
    assert_live_media(&run, Law::A, 8, &al);
}

/// The server refuses `session.start` (here: the agent names a Realtime model, which GPT-Live
/// answers with `model_not_found`): the call is refused with 503 before it is answered, as when
/// a Realtime session is not created, instead of being answered with a dead session.
#[test]
fn a_refused_session_start_is_a_503_before_the_answer() {
    let dir = TestDir::new("live-refused");
    let sim = Sim::start(&dir, None);
    let plans = clinic_dialplan(
        &dir,
        "dialplans",
        r#"model = "gpt-realtime-mini"
greeting = "Thank you for calling."
instructions = "You are the receptionist."
"#,
    );
    let url = format!("ws://{}/v1/live/sessions", sim.addr);
    let mut serve = Serve::start(
        &dir,
        &plans,
        &["--realtime-url", &url, "--realtime-protocol", "live"],
    );
    let (_, log) = sipp_expect(&dir, &serve, "invite_expect_503.xml", "a 503");
    assert!(
        log.contains("model_not_found") || log.contains("does not exist"),
        "{log}"
    );
    assert!(!log.contains("call answered"), "{log}");
    let client = read_jsonl(&sim.record);
    assert_eq!(client.len(), 1, "only session.start was sent: {client:?}");
    assert_eq!(client[0]["type"], "session.start");
    assert_eq!(client[0]["session"]["model"], "gpt-realtime-mini");
    let status = serve.proc.terminate(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
