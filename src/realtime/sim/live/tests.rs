use std::path::Path;

use serde_json::json;

use super::*;
use crate::media::g711::{linear_to_ulaw, Law};
use crate::realtime::live as wire;
use crate::realtime::protocol::ToolDefinition;
use crate::realtime::sdk_validator::validate;

const SCENARIO: &str = r#"
greeting = "Bright Smile Dental, hello."
first_audio_delay_ms = 200
[[turn]]
heard = "Can I come on Tuesday?"
preamble = "Let me check."
call = { name = "check_availability", arguments = { service = "cleaning" } }
say = "The first free slot is {output.slots[0]}."
[fallback]
heard = "Thanks."
say = "Goodbye."
"#;

/// A session on a virtual clock, with every server event it sent.
struct Harness {
    s: LiveSimSession,
    t0: Instant,
    now: Instant,
    log: Vec<Value>,
    raw: Vec<String>,
    closed: Option<Close>,
}

impl Harness {
    fn new(scenario: &str, skew_ppm: i32) -> Harness {
        let scenario =
            Scenario::parse(scenario, Path::new("/nonexistent/s.toml")).expect("scenario");
        let t0 = Instant::now();
        let s = LiveSimSession::new(
            LiveParams {
                unix_time_s: 1_800_000_000,
                id_token: "tok".into(),
                scenario: Arc::new(scenario),
                clock_skew_ppm: skew_ppm,
                session_number: 1,
            },
            t0,
        );
        let mut h = Harness {
            s,
            t0,
            now: t0,
            log: Vec::new(),
            raw: Vec::new(),
            closed: None,
        };
        h.drain();
        h
    }

    fn drain(&mut self) {
        while let Some(e) = self.s.poll_event() {
            self.log
                .push(serde_json::from_str(&e).expect("server events are JSON"));
            self.raw.push(e);
        }
        if let Some(c) = self.s.poll_close() {
            self.closed = Some(c);
        }
    }

    fn send(&mut self, text: &str) {
        self.s.handle_client_text(self.now, text);
        self.drain();
    }

    fn start(&mut self, tools: &[&str]) {
        let settings = wire::LiveSessionSettings {
            model: "gpt-live-1.1".into(),
            instructions: "Be brief.".into(),
            voice: "marin".into(),
            law: Law::Mu,
            tools: tools
                .iter()
                .map(|n| ToolDefinition {
                    name: (*n).into(),
                    description: "d".into(),
                    parameters: json!({"type": "object", "properties": {}}),
                })
                .collect(),
            backend_model: "gpt-5.5".into(),
            backend_instructions: None,
            history: Vec::new(),
        };
        self.send(&wire::session_start(&settings));
    }

    /// Appends `ms` of audio in 20 ms frames, each `frame` (160 µ-law bytes).
    fn stream(&mut self, ms: u64, frame: &[u8]) {
        let mut out = String::new();
        for _ in 0..ms / 20 {
            self.now += Duration::from_millis(20);
            wire::input_audio_append(&mut out, frame);
            self.s.handle_client_text(self.now, &out);
            self.drain();
        }
    }

    fn silence(&mut self, ms: u64) {
        self.stream(ms, &[0xFF; 160]);
    }

    /// Loud speech-like audio (a 400 Hz tone at about -12 dBFS).
    fn speak(&mut self, ms: u64) {
        let frame: Vec<u8> = (0..160)
            .map(|i| {
                let x = (f64::from(i) * 2.0 * std::f64::consts::PI * 400.0 / 8000.0).sin();
                linear_to_ulaw((x * 8000.0) as i16)
            })
            .collect();
        self.stream(ms, &frame);
    }

    fn of_type(&self, ty: &str) -> Vec<&Value> {
        self.log.iter().filter(|e| e["type"] == ty).collect()
    }

    fn audio(&self) -> Vec<Vec<u8>> {
        self.of_type("session.output_audio.delta")
            .iter()
            .map(|e| {
                base64::engine::general_purpose::STANDARD
                    .decode(e["delta"].as_str().expect("delta"))
                    .expect("b64")
            })
            .collect()
    }
}

fn speaking(chunk: &[u8]) -> bool {
    chunk.iter().any(|&b| b != 0xFF)
}

#[test]
fn nothing_before_session_start_and_unknown_fields_are_refused() {
    let mut h = Harness::new(SCENARIO, 0);
    assert!(h.log.is_empty(), "a passive socket receives nothing");
    h.silence(200);
    let errors = h.of_type("error");
    assert_eq!(errors.len(), 10, "every append before the start is refused");
    assert_eq!(errors[0]["error"]["code"], "session_not_started");
    assert!(h.of_type("session.output_audio.delta").is_empty());

    h.log.clear();
    let mut start: Value = serde_json::from_str(&wire::session_start(&wire::LiveSessionSettings {
        model: "gpt-live-1".into(),
        instructions: String::new(),
        voice: "marin".into(),
        law: Law::A,
        tools: Vec::new(),
        backend_model: "x".into(),
        backend_instructions: None,
        history: Vec::new(),
    }))
    .expect("json");
    for (path, value) in [
        ("turn_detection", json!({"type": "server_vad"})),
        ("temperature", json!(0.8)),
    ] {
        let mut bad = start.clone();
        bad["session"][path] = value;
        bad["event_id"] = json!("evt_bad");
        h.send(&bad.to_string());
        let e = h.log.pop().expect("an error");
        assert_eq!(e["type"], "error");
        assert_eq!(e["error"]["code"], "unknown_parameter");
        assert_eq!(e["error"]["param"], format!("session.{path}"));
        assert_eq!(e["client_event_id"], "evt_bad");
    }
    let mut nested = start.clone();
    nested["session"]["audio"]["input"] = json!({"format": {"type": "audio/pcmu"}});
    h.send(&nested.to_string());
    assert_eq!(
        h.log.pop().expect("error")["error"]["param"],
        "session.audio.input"
    );
    let mut rate = start.clone();
    rate["session"]["audio"]["format"]["rate"] = json!(16000);
    h.send(&rate.to_string());
    assert_eq!(
        h.log.pop().expect("error")["error"]["param"],
        "session.audio.format.rate"
    );
    let mut realtime_model = start.clone();
    realtime_model["session"]["model"] = json!("gpt-realtime");
    h.send(&realtime_model.to_string());
    let e = h.log.pop().expect("error");
    assert_eq!(e["error"]["code"], "model_not_found");
    assert_eq!(e["error"]["param"], "session.model");
    assert!(h.of_type("session.started").is_empty());

    start["event_id"] = json!("evt_start");
    h.send(&start.to_string());
    let started = h.log.pop().expect("started");
    assert_eq!(started["type"], "session.started");
    assert_eq!(started["client_event_id"], "evt_start");
    let session = &started["session"];
    assert_eq!(session["id"], "live_tok");
    assert_eq!(session["expires_at"], 1_800_000_000 + 3600);
    assert_eq!(session["status"], "active");
    assert_eq!(
        session["audio"]["format"],
        json!({"type": "audio/pcma", "rate": 8000})
    );
    assert_eq!(session["delegation"], json!({"type": "client"}));

    h.send(&start.to_string());
    assert_eq!(
        h.log.pop().expect("error")["error"]["code"],
        "session_already_started"
    );
    h.send(r#"{"type":"input_audio_buffer.append","audio":""}"#);
    let e = h.log.pop().expect("error");
    assert_eq!(e["error"]["code"], "invalid_value");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("session.input_audio.append")),
        "the error lists the supported events: {e}"
    );
}

#[test]
fn output_is_a_continuous_stream_paced_by_the_input_timeline() {
    let mut h = Harness::new(SCENARIO, 0);
    h.start(&[]);
    h.silence(3000);
    let chunks = h.audio();
    assert_eq!(chunks.len(), 30, "one 100 ms delta per 100 ms of input");
    assert!(chunks.iter().all(|c| c.len() == 800));
    // The greeting starts at first_audio_delay_ms and is followed by digital silence.
    assert!(!speaking(&chunks[0]) && !speaking(&chunks[1]));
    assert!(speaking(&chunks[2]), "greeting at 200 ms");
    assert!(!speaking(chunks.last().expect("chunk")));
    let words: String = h
        .of_type("session.output_transcript.delta")
        .iter()
        .map(|e| e["delta"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(words.trim(), "Bright Smile Dental, hello.");
    // No input, no output.
    let n = h.log.len();
    h.now += Duration::from_secs(5);
    h.s.handle_timeout(h.now);
    h.drain();
    assert_eq!(h.log.len(), n);
}

#[test]
fn server_clock_skew_changes_the_output_rate() {
    for (ppm, want) in [(1000, 6006), (-1000, 5994), (0, 6000)] {
        let mut h = Harness::new("greeting = \"Hi.\"", ppm);
        h.start(&[]);
        h.silence(600_000);
        assert_eq!(h.audio().len(), want, "{ppm} ppm over 10 minutes");
        assert_eq!(h.of_type("session.usage.updated").len(), 40);
    }
}

#[test]
fn a_delegated_function_call_is_answered_then_spoken() {
    let mut h = Harness::new(SCENARIO, 0);
    h.start(&["check_availability"]);
    h.silence(2000);
    h.speak(1000);
    h.silence(1500);
    let heard = h.of_type("session.input_transcript.delta");
    assert_eq!(heard.len(), 1);
    assert_eq!(heard[0]["delta"], "Can I come on Tuesday?");
    assert!(heard[0]["start_ms"].as_u64() < heard[0]["end_ms"].as_u64());
    let created = h.of_type("session.delegation.created");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["delegation"]["target"], "responses");
    let calls: Vec<&Value> = h
        .of_type("response.event")
        .into_iter()
        .filter(|e| e["event"]["type"] == "response.output_item.done")
        .collect();
    assert_eq!(calls.len(), 1);
    let item = &calls[0]["event"]["item"];
    assert_eq!(item["name"], "check_availability");
    assert_eq!(item["status"], "completed");
    assert_eq!(item["arguments"], r#"{"service":"cleaning"}"#);
    let call_id = item["call_id"].as_str().expect("call id").to_owned();

    // A partial batch is refused; so is an unknown call.
    h.send(&wire::response_create());
    assert_eq!(
        h.log.pop().expect("error")["error"]["code"],
        "missing_function_call_output"
    );
    h.send(&wire::function_call_output("call_nope", "{}"));
    assert_eq!(
        h.log.pop().expect("error")["error"]["param"],
        "item.call_id"
    );

    h.send(&wire::function_call_output(
        &call_id,
        r#"{"slots":["Tuesday at nine"]}"#,
    ));
    assert_eq!(h.s.tool_outputs().len(), 1);
    let before = h.of_type("session.output_transcript.delta").len();
    h.send(&wire::response_create());
    h.silence(5000);
    let words: String = h.of_type("session.output_transcript.delta")[before..]
        .iter()
        .map(|e| e["delta"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(words.trim(), "The first free slot is Tuesday at nine.");

    h.send(&wire::session_close());
    let closed = h.log.pop().expect("closed");
    assert_eq!(closed["type"], "session.closed");
    assert_eq!(closed["reason"], "close_requested");
    assert_eq!(closed["usage"]["seconds"], 9);
    assert_eq!(h.closed.as_ref().map(|c| c.code), Some(1000));
    // Every server event of the session validates against the SDK, with no undeclared key.
    let report = validate("live", "server", &h.raw, &[]);
    assert_eq!(report.code, Some(0), "{}", report.text);
}

#[test]
fn client_delegation_refuses_response_events_and_undeclared_calls_are_not_made() {
    let mut h = Harness::new(SCENARIO, 0);
    h.start(&[]);
    h.send(&wire::function_call_output("call_1", "{}"));
    let e = h.log.pop().expect("error");
    assert_eq!(
        e["error"]["message"],
        "response.item.create requires Responses delegation."
    );
    h.send(&wire::response_create());
    assert_eq!(
        h.log.pop().expect("error")["error"]["message"],
        "response.create requires Responses delegation."
    );
    h.silence(1000);
    h.speak(800);
    h.silence(3000);
    assert!(h.of_type("session.delegation.created").is_empty());
    assert!(
        h.audio().iter().filter(|c| speaking(c)).count() > 10,
        "the turn is answered"
    );
    // Context appends are acknowledged once the timeline passes them.
    h.send(&wire::instructions_append("The caller pressed 5."));
    assert!(h.of_type("session.instructions.appended").is_empty());
    h.silence(1000);
    let acks = h.of_type("session.instructions.appended");
    assert_eq!(acks.len(), 1);
    assert!(acks[0]["end_ms"].as_u64() > acks[0]["start_ms"].as_u64());
}

#[test]
fn the_model_stops_talking_when_the_caller_barges_in() {
    let long = "greeting = \"Thank you for calling Bright Smile Dental. Let me tell you about our \
                practice before we begin, because there is a lot to say about it.\"\n\
                first_audio_delay_ms = 0";
    let mut h = Harness::new(long, 0);
    h.start(&[]);
    h.silence(1000);
    assert!(h.audio().iter().all(|c| speaking(c)), "greeting under way");
    h.speak(600);
    h.silence(600);
    let chunks = h.audio();
    // Talking until the caller's speech was detected (30 ms) plus the stop delay, then silence.
    let stop = (1000 + 30 + BARGE_IN_STOP_MS).div_ceil(OUTPUT_CHUNK_MS) as usize + 1;
    // The caller's turn ends at 1600 + 500 ms; the model's answer starts at 2100 ms (chunk 21).
    assert!(
        chunks[stop..21].iter().all(|c| !speaking(c)),
        "silent from chunk {stop} until the answer"
    );
    assert!(speaking(&chunks[21]), "then it answers the caller");
    assert!(speaking(&chunks[11]), "still talking right after the onset");
}

#[test]
fn the_session_cap_closes_with_expired() {
    let mut h = Harness::new("max_session_s = 60", 0);
    h.start(&[]);
    let deadline = h.s.poll_timeout().expect("cap");
    assert_eq!(deadline - h.t0, Duration::from_secs(60));
    h.now = deadline;
    h.s.handle_timeout(h.now);
    h.drain();
    let closed = h.log.pop().expect("closed");
    assert_eq!(closed["reason"], "expired");
    assert!(h.closed.is_some());
    assert!(h.s.poll_timeout().is_none());
}

#[test]
fn a_timed_close_fault_closes_without_session_closed() {
    let mut h = Harness::new("[[fault]]\nat_ms = 2000\naction = \"server_error\"\n", 0);
    h.start(&[]);
    let deadline = h.s.poll_timeout().expect("fault deadline");
    assert_eq!(deadline - h.t0, Duration::from_secs(2));
    h.now = deadline;
    h.s.handle_timeout(h.now);
    h.drain();
    let last = h.log.pop().expect("an event");
    assert_eq!(last["type"], "error");
    assert_eq!(last["error"]["type"], "server_error");
    assert!(h.log.iter().all(|e| e["type"] != "session.closed"));
    assert_eq!(h.closed.as_ref().map(|c| c.code), Some(1011));
}
