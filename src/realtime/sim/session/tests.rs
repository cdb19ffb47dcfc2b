//! Unit tests of the session core on virtual time.

use std::path::Path;

use super::*;
use crate::media::g711;

const UNIX: u64 = 1_760_000_000;

/// A session on a virtual clock, with every event it emitted and when.
struct H {
    s: SimSession,
    now: Instant,
    log: Vec<(Instant, Value)>,
    /// Every event exactly as the core produced it.
    raw: Vec<String>,
}

fn scenario(toml: &str) -> Arc<Scenario> {
    Arc::new(Scenario::parse(toml, Path::new("/virtual/scenario.toml")).expect("test scenario"))
}

impl H {
    fn new(dialect: Dialect, toml: &str) -> H {
        H::with(dialect, toml, false)
    }

    fn with(dialect: Dialect, toml: &str, echo: bool) -> H {
        let now = Instant::now();
        let params = SessionParams {
            dialect,
            model: None,
            unix_time_s: UNIX,
            id_token: "T".into(),
            scenario: scenario(toml),
            echo,
            session_number: 1,
        };
        let mut h = H {
            s: SimSession::new(params, now),
            now,
            log: Vec::new(),
            raw: Vec::new(),
        };
        h.collect();
        h
    }

    fn collect(&mut self) {
        while let Some(e) = self.s.poll_event() {
            let v: Value = serde_json::from_str(&e).expect("server events are JSON");
            self.log.push((self.now, v));
            self.raw.push(e);
        }
    }

    /// Events logged since the last call.
    fn take(&mut self) -> Vec<Value> {
        self.collect();
        std::mem::take(&mut self.log)
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    fn send(&mut self, v: Value) {
        self.send_raw(&v.to_string());
    }

    fn send_raw(&mut self, text: &str) {
        self.s.handle_client_text(self.now, text);
        self.collect();
    }

    /// Moves the clock forward by `ms`, firing every timeout on the way.
    fn advance(&mut self, ms: u64) {
        let end = self.now + Duration::from_millis(ms);
        while let Some(t) = self.s.poll_timeout().filter(|t| *t <= end) {
            self.now = self.now.max(t);
            self.s.handle_timeout(self.now);
            self.collect();
        }
        self.now = end;
    }

    /// Runs until no response is active.
    fn finish_response(&mut self) {
        while self.s.active.is_some() {
            let t = self
                .s
                .poll_timeout()
                .expect("active response has a deadline");
            self.now = self.now.max(t);
            self.s.handle_timeout(self.now);
            self.collect();
        }
    }

    /// Appends audio in 20 ms frames, in real time.
    fn append(&mut self, audio: &[u8]) {
        for frame in audio.chunks(160) {
            self.send(json!({"type": "input_audio_buffer.append", "audio": b64(frame)}));
            self.advance(20);
        }
    }

    fn configure_ulaw(&mut self, silence_ms: u64) {
        match self.s.dialect {
            Dialect::Ga | Dialect::Live => self.send(json!({"type": "session.update", "session": {
                "type": "realtime", "output_modalities": ["audio"],
                "audio": {"input": {"format": {"type": "audio/pcmu"},
                                    "turn_detection": {"type": "server_vad", "threshold": 0.5,
                                        "prefix_padding_ms": 300, "silence_duration_ms": silence_ms}},
                          "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"}}}})),
            Dialect::Beta => self.send(json!({"type": "session.update", "session": {
                "modalities": ["audio", "text"], "input_audio_format": "g711_ulaw",
                "output_audio_format": "g711_ulaw", "voice": "alloy",
                "turn_detection": {"type": "server_vad", "threshold": 0.5,
                                   "prefix_padding_ms": 300, "silence_duration_ms": silence_ms}}})),
        }
    }

    /// One caller turn: 1 s silence, `speech_ms` of tone, 1 s silence.
    fn caller_turn(&mut self, speech_ms: usize) {
        self.append(&silence(1000));
        self.append(&tone(speech_ms));
        self.append(&silence(1000));
    }
}

fn silence(ms: usize) -> Vec<u8> {
    vec![0xFF; ms * 8]
}

/// A 300 Hz tone at about -14 dBFS: speech to the VAD.
fn tone(ms: usize) -> Vec<u8> {
    (0..ms * 8)
        .map(|i| {
            g711::linear_to_ulaw(
                ((i as f64 * 2.0 * std::f64::consts::PI * 300.0 / 8000.0).sin() * 9000.0) as i16,
            )
        })
        .collect()
}

fn ty(v: &Value) -> &str {
    v["type"].as_str().unwrap_or("")
}

/// Event types with runs of the same delta type collapsed to one entry.
fn shape(events: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in events {
        let t = ty(e).to_string();
        if t.ends_with(".delta") && out.iter().rev().take(2).any(|p| *p == t) {
            continue;
        }
        out.push(t);
    }
    out
}

fn find<'a>(events: &'a [Value], t: &str) -> &'a Value {
    events
        .iter()
        .find(|e| ty(e) == t)
        .unwrap_or_else(|| panic!("no {t} in {:?}", shape(events)))
}

fn all<'a>(events: &'a [Value], t: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    events.iter().filter(move |e| ty(e) == t)
}

fn audio_of(events: &[Value], t: &str) -> Vec<u8> {
    all(events, t)
        .flat_map(|e| {
            base64::engine::general_purpose::STANDARD
                .decode(e["delta"].as_str().unwrap_or(""))
                .expect("base64 delta")
        })
        .collect()
}

fn error_of(events: &[Value]) -> &Value {
    &find(events, "error")["error"]
}

const FAST: &str = "realtime_factor = 1000.0\nfirst_audio_delay_ms = 0\n";

#[test]
fn session_created_has_full_defaults() {
    let mut h = H::new(Dialect::Ga, "");
    let ev = h.take();
    assert_eq!(shape(&ev), ["session.created"]);
    let s = &ev[0]["session"];
    assert_eq!(s["id"], "sess_T");
    assert_eq!(s["type"], "realtime");
    assert_eq!(s["expires_at"], UNIX + 3600);
    assert_eq!(
        s["audio"]["input"]["turn_detection"]["silence_duration_ms"],
        200
    );
    assert!(ev[0]["event_id"]
        .as_str()
        .is_some_and(|e| e.starts_with("event_")));

    let mut h = H::new(Dialect::Beta, "");
    let s = &h.take()[0]["session"];
    assert_eq!(s["input_audio_format"], "pcm16");
    assert_eq!(s["temperature"], 0.8);
    assert_eq!(s["expires_at"], UNIX + 1800);
}

#[test]
fn ga_turn_event_order_and_audio() {
    let mut h = H::new(
        Dialect::Ga,
        "[[turn]]\nsay = \"We are open Monday to Friday from eight to five.\"\n",
    );
    h.take();
    h.configure_ulaw(500);
    let updated = h.take();
    assert_eq!(shape(&updated), ["session.updated"]);
    assert_eq!(
        updated[0]["session"]["audio"]["input"]["format"],
        json!({"type": "audio/pcmu"})
    );

    h.caller_turn(1500);
    h.finish_response();
    let log = std::mem::take(&mut h.log);
    let ev: Vec<Value> = log.iter().map(|(_, v)| v.clone()).collect();
    assert_eq!(
        shape(&ev),
        [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.done",
            "response.created",
            "rate_limits.updated",
            "response.output_item.added",
            "conversation.item.added",
            "response.content_part.added",
            "response.output_audio.delta",
            "response.output_audio_transcript.delta",
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
        ]
    );
    let started = find(&ev, "input_audio_buffer.speech_started");
    assert_eq!(
        started["audio_start_ms"], 700,
        "onset 1000 ms minus 300 ms padding"
    );
    let stopped = find(&ev, "input_audio_buffer.speech_stopped");
    assert_eq!(
        stopped["audio_end_ms"], 3000,
        "end of speech 2500 ms plus the 500 ms window"
    );
    let user_item = started["item_id"].clone();
    assert_eq!(stopped["item_id"], user_item);
    assert_eq!(
        find(&ev, "input_audio_buffer.committed")["item_id"],
        user_item
    );
    assert_eq!(
        find(&ev, "conversation.item.added")["item"]["id"],
        user_item
    );
    assert_eq!(
        find(&ev, "conversation.item.added")["item"]["content"][0]["type"],
        "input_audio"
    );

    // Audio: deltas of 1234 bytes (the last may be shorter), concatenating to the synthesised voice.
    let deltas: Vec<usize> = all(&ev, "response.output_audio.delta")
        .map(|e| {
            base64::engine::general_purpose::STANDARD
                .decode(e["delta"].as_str().unwrap_or(""))
                .map_or(0, |d| d.len())
        })
        .collect();
    assert!(deltas.len() > 5);
    assert!(
        deltas[..deltas.len() - 1].iter().all(|&n| n == 1234),
        "{deltas:?}"
    );
    let text = "We are open Monday to Friday from eight to five.";
    let expected = AudioFormat::Pcmu.encode_8k(&super::super::voice::synthesize(text, 65).samples);
    assert_eq!(audio_of(&ev, "response.output_audio.delta"), expected);
    let transcript: String = all(&ev, "response.output_audio_transcript.delta")
        .map(|e| e["delta"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(transcript, text);
    assert_eq!(
        find(&ev, "response.output_audio_transcript.done")["transcript"],
        text
    );

    // Faster than real time: 154 ms of audio every ~31 ms, after a 150 ms first-audio delay.
    let times: Vec<Instant> = log
        .iter()
        .filter(|(_, v)| ty(v) == "response.output_audio.delta")
        .map(|(t, _)| *t)
        .collect();
    let created = log
        .iter()
        .find(|(_, v)| ty(v) == "response.created")
        .map(|(t, _)| *t)
        .expect("created");
    assert_eq!(times[0] - created, Duration::from_millis(150));
    let gap = times[2] - times[1];
    assert!(
        gap > Duration::from_millis(25) && gap < Duration::from_millis(40),
        "{gap:?}"
    );

    // Ids line up and the response is complete with usage.
    let resp_id = find(&ev, "response.created")["response"]["id"].clone();
    let item_id = find(&ev, "response.output_item.added")["item"]["id"].clone();
    for e in all(&ev, "response.output_audio.delta") {
        assert_eq!((&e["response_id"], &e["item_id"]), (&resp_id, &item_id));
    }
    let done = &find(&ev, "response.done")["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(
        done["output"][0]["content"][0],
        json!({"type": "output_audio", "transcript": text})
    );
    assert_eq!(
        done["audio"]["output"]["format"],
        json!({"type": "audio/pcmu"})
    );
    assert!(
        done["usage"]["output_token_details"]["audio_tokens"]
            .as_u64()
            .unwrap_or(0)
            > 20
    );
    assert_eq!(
        find(&ev, "response.content_part.added")["part"]["type"],
        "audio"
    );
    let item_added = all(&ev, "conversation.item.added")
        .nth(1)
        .expect("assistant item added");
    assert_eq!(item_added["previous_item_id"], user_item);
    assert_eq!(item_added["item"]["status"], "in_progress");
}

#[test]
fn beta_turn_uses_beta_names() {
    let mut h = H::new(Dialect::Beta, "[[turn]]\nsay = \"Hello from beta.\"\n");
    h.take();
    h.configure_ulaw(200);
    let updated = h.take();
    assert_eq!(updated[0]["session"]["input_audio_format"], "g711_ulaw");
    h.caller_turn(800);
    h.finish_response();
    let ev = h.take();
    assert_eq!(
        shape(&ev),
        [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.created",
            "response.created",
            "rate_limits.updated",
            "response.output_item.added",
            "conversation.item.created",
            "response.content_part.added",
            "response.audio.delta",
            "response.audio_transcript.delta",
            "response.audio.done",
            "response.audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.done",
        ]
    );
    assert_eq!(
        find(&ev, "input_audio_buffer.speech_stopped")["audio_end_ms"],
        2000
    );
    let done = &find(&ev, "response.done")["response"];
    assert_eq!(done["output"][0]["content"][0]["type"], "audio");
    assert_eq!(done["output_audio_format"], "g711_ulaw");
    assert_eq!(done["modalities"], json!(["audio", "text"]));
}

#[test]
fn greeting_and_active_response_error() {
    let mut h = H::new(
        Dialect::Ga,
        "greeting = \"Thank you for calling Bright Smile Dental.\"\n",
    );
    h.configure_ulaw(500);
    h.take();
    h.send(json!({"type": "response.create", "response": {"instructions": "Greet the caller."}}));
    h.send(json!({"type": "response.create", "event_id": "evt_2"}));
    let ev = h.take();
    let resp_id = find(&ev, "response.created")["response"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let err = error_of(&ev);
    assert_eq!(err["code"], "conversation_already_has_active_response");
    assert_eq!(err["event_id"], "evt_2");
    assert_eq!(
        err["message"],
        format!("Conversation already has an active response in progress: {resp_id}. Wait until the response is finished before creating a new one.")
    );
    h.finish_response();
    let ev = h.take();
    assert_eq!(
        find(&ev, "response.output_audio_transcript.done")["transcript"],
        "Thank you for calling Bright Smile Dental."
    );
}

#[test]
fn response_cancel_emits_tail_and_restores_nothing_twice() {
    let mut h = H::new(Dialect::Ga, "");
    h.configure_ulaw(500);
    h.send(json!({"type": "response.create"}));
    h.advance(300);
    h.take();
    h.send(json!({"type": "response.cancel", "event_id": "c1"}));
    let ev = h.take();
    assert_eq!(
        shape(&ev),
        [
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
        ]
    );
    let done = &find(&ev, "response.done")["response"];
    assert_eq!(done["status"], "cancelled");
    assert_eq!(
        done["status_details"],
        json!({"type": "cancelled", "reason": "client_cancelled"})
    );
    assert_eq!(
        find(&ev, "response.output_item.done")["item"]["status"],
        "incomplete"
    );
    assert!(
        h.s.poll_timeout()
            .is_some_and(|t| t > h.now + Duration::from_secs(60)),
        "no response pending"
    );

    h.send(json!({"type": "response.cancel", "event_id": "c2"}));
    let ev = h.take();
    let err = error_of(&ev);
    assert_eq!(err["code"], "response_cancel_not_active");
    assert_eq!(
        err["message"],
        "Cancellation failed: no active response found"
    );
    assert_eq!(err["event_id"], "c2");
}

#[test]
fn barge_in_cancels_with_turn_detected() {
    let mut h = H::new(Dialect::Ga, "[[turn]]\nsay = \"This is a rather long answer that the caller will interrupt before it ends.\"\n");
    h.configure_ulaw(500);
    h.caller_turn(600);
    h.take();
    assert!(h.s.active.is_some(), "response streaming");
    h.append(&tone(300));
    let ev = h.take();
    let started = ev
        .iter()
        .position(|e| ty(e) == "input_audio_buffer.speech_started")
        .expect("speech_started");
    let done = ev
        .iter()
        .position(|e| ty(e) == "response.done")
        .expect("response.done");
    assert!(started < done);
    assert_eq!(
        ev[done]["response"]["status_details"]["reason"],
        "turn_detected"
    );
    assert_eq!(ev[done]["response"]["status"], "cancelled");
    assert!(h.s.active.is_none());
}

/// `interrupt_response: false` (realtime-protocol.md §4.2, §5.2; SDK `ServerVad` docstrings): VAD
/// events still come and the caller's turn is committed, but speech does not cancel the response
/// in progress, and a turn that ends while it is still active gets no response of its own ("may
/// fail to create a response if the model is already responding"); once the client cancelled
/// it, the turn's end creates the next response as usual.
#[test]
fn without_interrupt_response_speech_cancels_nothing_and_the_client_decides() {
    let long = "realtime_factor = 1.0\n[[turn]]\nsay = \"This is a rather long answer that the caller will talk over before it ends, twice.\"\n";
    let mut h = H::new(Dialect::Ga, long);
    h.send(json!({"type": "session.update", "session": {
        "type": "realtime", "output_modalities": ["audio"],
        "audio": {"input": {"format": {"type": "audio/pcmu"},
                            "turn_detection": {"type": "server_vad", "threshold": 0.5,
                                "prefix_padding_ms": 300, "silence_duration_ms": 500,
                                "create_response": true, "interrupt_response": false}},
                  "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"}}}}));
    h.caller_turn(600);
    h.take();
    assert!(h.s.active.is_some(), "response streaming");
    // Speech over the response: speech_started, speech_stopped and the commit, nothing else.
    h.append(&tone(300));
    h.append(&silence(600));
    let ev = h.take();
    let kinds: Vec<&str> = ev
        .iter()
        .map(ty)
        .filter(|t| !t.ends_with(".delta"))
        .collect();
    assert!(
        kinds.contains(&"input_audio_buffer.speech_started"),
        "{kinds:?}"
    );
    assert!(kinds.contains(&"input_audio_buffer.committed"), "{kinds:?}");
    assert!(!kinds.contains(&"response.done"), "cancelled: {kinds:?}");
    assert!(!kinds.contains(&"response.created"), "{kinds:?}");
    assert!(!kinds.contains(&"error"), "{kinds:?}");
    assert!(h.s.active.is_some(), "the response runs on");
    h.finish_response();
    let ev = h.take();
    assert_eq!(
        find(&ev, "response.done")["response"]["status"],
        "completed"
    );
    h.advance(2_000);
    assert!(
        h.s.active.is_none(),
        "no response for the turn that ended during one"
    );
    // The client decides: it cancels at speech_started; the turn's end then gets a response.
    h.send(json!({"type": "response.create"}));
    h.advance(300);
    h.take();
    h.append(&tone(300));
    let ev = h.take();
    assert!(ev
        .iter()
        .any(|e| ty(e) == "input_audio_buffer.speech_started"));
    assert!(!ev.iter().any(|e| ty(e) == "response.done"));
    h.send(json!({"type": "response.cancel"}));
    let ev = h.take();
    assert_eq!(
        find(&ev, "response.done")["response"]["status_details"]["reason"],
        "client_cancelled"
    );
    h.append(&silence(600));
    let ev = h.take();
    let committed = ev
        .iter()
        .position(|e| ty(e) == "input_audio_buffer.committed")
        .expect("committed");
    let created = ev
        .iter()
        .position(|e| ty(e) == "response.created")
        .expect("the turn's response");
    assert!(committed < created);
}

#[test]
fn truncate_within_beyond_and_invalid_items() {
    let mut h = H::new(
        Dialect::Ga,
        &format!("{FAST}greeting = \"One two three four five.\"\n"),
    );
    h.configure_ulaw(500);
    h.send(json!({"type": "response.create"}));
    h.finish_response();
    let ev = h.take();
    let item_id = find(&ev, "response.output_item.added")["item"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let audio_ms = audio_of(&ev, "response.output_audio.delta").len() / 8;

    h.send(json!({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": audio_ms + 1}));
    let err = error_of(&h.take()).clone();
    assert_eq!(
        err["message"],
        format!(
            "Audio content of {audio_ms}ms is already shorter than {}ms",
            audio_ms + 1
        )
    );
    assert_eq!(err["code"], Value::Null);
    assert_eq!(err["type"], "invalid_request_error");

    h.send(json!({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 640}));
    let ev = h.take();
    assert_eq!(
        find(&ev, "conversation.item.truncated")["audio_end_ms"],
        640
    );
    h.send(json!({"type": "conversation.item.retrieve", "item_id": item_id}));
    let ev = h.take();
    assert_eq!(
        find(&ev, "conversation.item.retrieved")["item"]["content"][0]["transcript"],
        Value::Null
    );
    // After truncation the item is 640 ms long.
    h.send(json!({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 700}));
    assert_eq!(
        error_of(&h.take())["message"],
        "Audio content of 640ms is already shorter than 700ms"
    );

    h.send(
        json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "hi"}]}}),
    );
    let ev = h.take();
    let user_id = find(&ev, "conversation.item.added")["item"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    h.send(json!({"type": "conversation.item.truncate", "item_id": user_id, "content_index": 0, "audio_end_ms": 0}));
    assert_eq!(
        error_of(&h.take())["message"],
        "Only model output audio messages can be truncated"
    );

    h.send(json!({"type": "conversation.item.truncate", "event_id": "t9", "item_id": "item_nope", "content_index": 0, "audio_end_ms": 0}));
    let ev = h.take();
    assert_eq!(error_of(&ev)["code"], "item_not_found");
    assert_eq!(error_of(&ev)["event_id"], "t9");
}

#[test]
fn truncate_during_generation_uses_audio_so_far() {
    let mut h = H::new(Dialect::Ga, "greeting = \"A long greeting with many words so that it takes a few seconds to stream.\"\n");
    h.configure_ulaw(500);
    h.send(json!({"type": "response.create"}));
    h.advance(250);
    let ev = h.take();
    let item_id = find(&ev, "response.output_item.added")["item"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let so_far = audio_of(&ev, "response.output_audio.delta").len() / 8;
    assert!(so_far > 0);
    h.send(json!({"type": "response.cancel"}));
    h.send(json!({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": so_far + 1}));
    assert!(error_of(&h.take())["message"]
        .as_str()
        .is_some_and(|m| m.contains("already shorter")));
    h.send(json!({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": so_far}));
    assert_eq!(
        find(&h.take(), "conversation.item.truncated")["audio_end_ms"],
        so_far
    );
}

const CALL_SCENARIO: &str = r#"
realtime_factor = 1000.0
[[turn]]
preamble = "Let me check."
call = { name = "check_availability", arguments = { service = "cleaning", date = "2026-12-01" } }
say = "I have found {output.slots[0]} for your {output.service}."
"#;

fn function_call_flow(dialect: Dialect) -> Vec<Value> {
    let mut h = H::new(dialect, CALL_SCENARIO);
    h.configure_ulaw(500);
    h.caller_turn(600);
    h.finish_response();
    let ev = h.take();
    let call_item = all(&ev, "response.output_item.added")
        .find(|e| e["item"]["type"] == "function_call")
        .expect("function_call item");
    assert_eq!(call_item["output_index"], 1, "after the spoken preamble");
    assert_eq!(call_item["item"]["arguments"], "");
    let call_id = call_item["item"]["call_id"]
        .as_str()
        .expect("call_id")
        .to_string();
    let args: String = all(&ev, "response.function_call_arguments.delta")
        .map(|e| e["delta"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(args, r#"{"date":"2026-12-01","service":"cleaning"}"#);
    assert!(all(&ev, "response.function_call_arguments.delta").count() >= 2);
    let args_done = find(&ev, "response.function_call_arguments.done");
    assert_eq!(args_done["arguments"], args);
    assert_eq!(args_done["call_id"], call_id.as_str());
    let done = &find(&ev, "response.done")["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][1]["arguments"], args);
    assert_eq!(done["output"][1]["name"], "check_availability");

    let output = r#"{"slots":["9:30 on December first","11:00"],"service":"cleaning"}"#;
    h.send(json!({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": call_id, "output": output}}));
    h.send(json!({"type": "response.create"}));
    h.finish_response();
    let ev2 = h.take();
    let spoken = match dialect {
        Dialect::Ga | Dialect::Live => "response.output_audio_transcript.done",
        Dialect::Beta => "response.audio_transcript.done",
    };
    assert_eq!(
        find(&ev2, spoken)["transcript"],
        "I have found 9:30 on December first for your cleaning."
    );
    assert_eq!(h.s.tool_outputs().len(), 1);
    assert_eq!(
        h.s.tool_outputs()[0].name.as_deref(),
        Some("check_availability")
    );
    assert_eq!(h.s.tool_outputs()[0].output, output);
    ev.into_iter().chain(ev2).collect()
}

#[test]
fn function_call_round_trip_ga() {
    let ev = function_call_flow(Dialect::Ga);
    assert_eq!(
        find(&ev, "response.function_call_arguments.done")["name"],
        "check_availability"
    );
    let fco =
        all(&ev, "conversation.item.added").find(|e| e["item"]["type"] == "function_call_output");
    assert!(fco.is_some());
}

#[test]
fn function_call_round_trip_beta() {
    let ev = function_call_flow(Dialect::Beta);
    assert!(find(&ev, "response.function_call_arguments.done")
        .get("name")
        .is_none());
    let fco =
        all(&ev, "conversation.item.created").find(|e| e["item"]["type"] == "function_call_output");
    assert!(fco.is_some());
}

#[test]
fn invalid_client_events_keep_the_session_open() {
    let mut h = H::new(Dialect::Ga, FAST);
    h.take();
    let cases: Vec<(&str, Option<&str>, Option<&str>, &str)> = vec![
        ("{not json", None, Some("invalid_json"), "Invalid JSON"),
        (
            "[1,2]",
            None,
            Some("invalid_type"),
            "Invalid type for 'event'",
        ),
        (
            r#"{"event_id":"e1"}"#,
            Some("e1"),
            Some("missing_required_parameter"),
            "Missing required parameter: 'type'.",
        ),
        (
            r#"{"type":"foo.bar","event_id":"e2"}"#,
            Some("e2"),
            Some("invalid_value"),
            "Invalid value: 'foo.bar'. Supported values are: 'session.update', ",
        ),
        (
            r#"{"type":"conversation.item.truncate","event_id":"e3","content_index":0,"audio_end_ms":5}"#,
            Some("e3"),
            Some("missing_required_parameter"),
            "Missing required parameter: 'item_id'.",
        ),
        (
            r#"{"type":"conversation.item.truncate","item_id":"x","content_index":0,"audio_end_ms":"5"}"#,
            None,
            Some("invalid_type"),
            "Invalid type for 'audio_end_ms': expected an integer, but got a string instead.",
        ),
        (
            r#"{"type":"response.cancel","bogus":1}"#,
            None,
            Some("unknown_parameter"),
            "Unknown parameter: 'bogus'.",
        ),
        (
            r#"{"type":"input_audio_buffer.append"}"#,
            None,
            Some("missing_required_parameter"),
            "Missing required parameter: 'audio'.",
        ),
        (
            r#"{"type":"input_audio_buffer.append","audio":"***"}"#,
            None,
            Some("invalid_value"),
            "Invalid 'audio'",
        ),
        (
            r#"{"type":"conversation.item.create","item":{"type":"message","role":"robot","content":[]}}"#,
            None,
            Some("invalid_value"),
            "Invalid value: 'robot'.",
        ),
        (
            r#"{"type":"conversation.item.create","item":{"type":"function_call_output","output":"x"}}"#,
            None,
            Some("missing_required_parameter"),
            "Missing required parameter: 'item.call_id'.",
        ),
        (
            r#"{"type":"session.update"}"#,
            None,
            Some("missing_required_parameter"),
            "Missing required parameter: 'session'.",
        ),
        (
            r#"{"type":"output_audio_buffer.clear"}"#,
            None,
            None,
            "only supported for WebRTC and SIP",
        ),
        (
            r#"{"type":"input_audio_buffer.commit","event_id":5}"#,
            None,
            Some("invalid_type"),
            "Invalid type for 'event_id'",
        ),
    ];
    for (text, event_id, code, message) in cases {
        h.send_raw(text);
        let ev = h.take();
        assert_eq!(shape(&ev), ["error"], "{text}");
        let err = &ev[0]["error"];
        assert_eq!(err["type"], "invalid_request_error", "{text}");
        assert_eq!(err["code"].as_str(), code, "{text}");
        assert_eq!(err["event_id"].as_str(), event_id, "{text}");
        let m = err["message"].as_str().unwrap_or("");
        assert!(m.starts_with(message) || m.contains(message), "{text}: {m}");
    }
    h.s.handle_client_binary(h.now);
    assert_eq!(shape(&h.take()), ["error"]);
    // Still alive.
    h.send(json!({"type": "response.create"}));
    h.finish_response();
    assert_eq!(
        find(&h.take(), "response.done")["response"]["status"],
        "completed"
    );
}

#[test]
fn unknown_session_update_parameters() {
    let mut h = H::new(Dialect::Ga, "");
    h.take();
    h.send(json!({"type": "session.update", "event_id": "u1", "session": {"type": "realtime", "temperature": 0.8}}));
    let ev = h.take();
    let err = error_of(&ev);
    assert_eq!(err["code"], "unknown_parameter");
    assert_eq!(err["message"], "Unknown parameter: 'session.temperature'.");
    assert_eq!(err["param"], "session.temperature");
    assert_eq!(err["event_id"], "u1");
    h.send(json!({"type": "session.update", "session": {"type": "realtime", "input_audio_format": "g711_ulaw"}}));
    assert_eq!(
        error_of(&h.take())["message"],
        "Unknown parameter: 'session.input_audio_format'."
    );

    let mut h = H::new(Dialect::Beta, "");
    h.take();
    h.send(json!({"type": "session.update", "session": {"audio": {"input": {}}}}));
    assert_eq!(
        error_of(&h.take())["message"],
        "Unknown parameter: 'session.audio'."
    );
    h.send(json!({"type": "session.update", "session": {"output_modalities": ["audio"]}}));
    assert_eq!(
        error_of(&h.take())["message"],
        "Unknown parameter: 'session.output_modalities'."
    );
}

#[test]
fn manual_commit_clear_and_response() {
    let mut h = H::new(
        Dialect::Ga,
        &format!("{FAST}[[turn]]\nsay = \"First answer.\"\n"),
    );
    h.send(
        json!({"type": "session.update", "session": {"type": "realtime",
        "audio": {"input": {"format": {"type": "audio/pcmu"}, "turn_detection": null}}}}),
    );
    h.take();
    h.append(&tone(80));
    h.send(json!({"type": "input_audio_buffer.commit", "event_id": "m1"}));
    let ev = h.take();
    let err = error_of(&ev);
    assert_eq!(err["code"], "input_audio_buffer_commit_empty");
    assert_eq!(
        err["message"],
        "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer only has 80ms of audio."
    );
    h.send(json!({"type": "input_audio_buffer.clear"}));
    assert_eq!(shape(&h.take()), ["input_audio_buffer.cleared"]);
    h.append(&tone(600));
    h.send(json!({"type": "input_audio_buffer.commit"}));
    let ev = h.take();
    assert_eq!(
        shape(&ev),
        [
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.done"
        ]
    );
    assert_eq!(ev[0]["previous_item_id"], Value::Null);
    h.send(json!({"type": "response.create"}));
    h.finish_response();
    assert_eq!(
        find(&h.take(), "response.output_audio_transcript.done")["transcript"],
        "First answer."
    );
}

#[test]
fn session_cap_expires_with_1001() {
    let mut h = H::new(Dialect::Ga, "max_session_s = 2\n");
    let ev = h.take();
    assert_eq!(ev[0]["session"]["expires_at"], UNIX + 2);
    h.advance(2500);
    let ev = h.take();
    assert_eq!(error_of(&ev)["code"], "session_expired");
    assert_eq!(
        error_of(&ev)["message"],
        "Your session hit the maximum duration of 2 seconds."
    );
    let close = h.s.poll_close().expect("close requested");
    assert_eq!(close.code, 1001);
    assert_eq!(h.s.poll_timeout(), None);
    h.send(json!({"type": "response.create"}));
    assert!(h.take().is_empty(), "closed sessions ignore input");
}

#[test]
fn echo_mode_replies_with_the_caller_audio() {
    let mut h = H::with(Dialect::Ga, FAST, true);
    h.configure_ulaw(500);
    h.caller_turn(700);
    h.finish_response();
    let ev = h.take();
    let echoed = audio_of(&ev, "response.output_audio.delta");
    // speech_started at 1000 - 300 = 700 ms, speech_stopped at 1700 + 500 = 2200 ms.
    let mut sent = silence(1000);
    sent.extend(tone(700));
    sent.extend(silence(1000));
    assert_eq!(echoed, sent[700 * 8..2200 * 8].to_vec());
}

#[test]
fn max_output_tokens_gives_incomplete() {
    let mut h = H::new(
        Dialect::Ga,
        &format!(
            "{FAST}greeting = \"This greeting is far longer than the token budget allows.\"\n"
        ),
    );
    h.configure_ulaw(500);
    h.send(json!({"type": "response.create", "response": {"max_output_tokens": 10}}));
    h.finish_response();
    let ev = h.take();
    assert_eq!(audio_of(&ev, "response.output_audio.delta").len(), 500 * 8);
    let done = &find(&ev, "response.done")["response"];
    assert_eq!(done["status"], "incomplete");
    assert_eq!(done["status_details"]["reason"], "max_output_tokens");
}

#[test]
fn idle_timeout_prompts_the_caller() {
    let mut h = H::new(
        Dialect::Ga,
        &format!("{FAST}idle_reply = \"Hello? Are you there?\"\n"),
    );
    h.send(
        json!({"type": "session.update", "session": {"type": "realtime",
        "audio": {"input": {"format": {"type": "audio/pcmu"},
            "turn_detection": {"type": "server_vad", "idle_timeout_ms": 6000}}}}}),
    );
    h.send(json!({"type": "response.create"}));
    h.finish_response();
    h.take();
    // The greeting plays for about 5 s from its first delta; the prompt comes 6 s later.
    h.append(&silence(9000));
    assert!(h.take().is_empty());
    h.append(&silence(3000));
    h.finish_response();
    let ev = h.take();
    assert_eq!(shape(&ev)[0], "input_audio_buffer.timeout_triggered");
    assert_eq!(
        find(&ev, "response.output_audio_transcript.done")["transcript"],
        "Hello? Are you there?"
    );
}

#[test]
fn text_only_responses() {
    let mut h = H::new(Dialect::Ga, &format!("{FAST}greeting = \"Just text.\"\n"));
    h.send(json!({"type": "response.create", "response": {"output_modalities": ["text"]}}));
    h.finish_response();
    let ev = h.take();
    assert!(all(&ev, "response.output_audio.delta").next().is_none());
    assert_eq!(find(&ev, "response.output_text.done")["text"], "Just text.");
    assert_eq!(
        find(&ev, "response.content_part.added")["part"]["type"],
        "text"
    );
    assert_eq!(
        find(&ev, "response.done")["response"]["output"][0]["content"][0]["type"],
        "output_text"
    );
}

#[test]
fn default_pcm16_session_works() {
    let mut h = H::new(Dialect::Ga, FAST);
    h.take();
    // 24 kHz PCM16 speech: the 8 kHz tone upsampled.
    let samples: Vec<i16> = tone(600).iter().map(|&b| g711::ulaw_to_linear(b)).collect();
    let pcm = AudioFormat::Pcm16.encode_8k(&samples);
    let quiet = vec![0u8; 48 * 1000];
    for chunk in quiet
        .chunks(960)
        .chain(pcm.chunks(960))
        .chain(quiet.chunks(960))
    {
        h.send(json!({"type": "input_audio_buffer.append", "audio": b64(chunk)}));
        h.advance(20);
    }
    h.finish_response();
    let ev = h.take();
    assert_eq!(
        find(&ev, "input_audio_buffer.speech_started")["audio_start_ms"],
        700
    );
    assert_eq!(
        find(&ev, "input_audio_buffer.speech_stopped")["audio_end_ms"],
        1800
    );
    let first = all(&ev, "response.output_audio.delta")
        .next()
        .expect("delta");
    let n = base64::engine::general_purpose::STANDARD
        .decode(first["delta"].as_str().unwrap_or(""))
        .expect("b64")
        .len();
    assert_eq!(n, 1234 * 6);
}

#[test]
fn items_insert_delete_and_previous_ids() {
    let mut h = H::new(Dialect::Ga, "");
    h.take();
    let text = |t: &str| json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": t}]});
    h.send(json!({"type": "conversation.item.create", "item": {"id": "a", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "1"}]}}));
    h.send(
        json!({"type": "conversation.item.create", "previous_item_id": "root", "item": text("0")}),
    );
    h.send(json!({"type": "conversation.item.create", "previous_item_id": "missing", "item": text("x")}));
    h.send(json!({"type": "conversation.item.create", "item": {"id": "a", "type": "message", "role": "user", "content": []}}));
    let ev = h.take();
    assert_eq!(
        shape(&ev),
        [
            "conversation.item.added",
            "conversation.item.done",
            "conversation.item.added",
            "conversation.item.done",
            "error",
            "error"
        ]
    );
    assert_eq!(ev[2]["previous_item_id"], Value::Null);
    assert_eq!(ev[4]["error"]["code"], "item_not_found");
    assert_eq!(
        ev[5]["error"]["message"],
        "Item with id 'a' already exists."
    );
    h.send(json!({"type": "conversation.item.delete", "item_id": "a"}));
    h.send(json!({"type": "conversation.item.delete", "item_id": "a"}));
    let ev = h.take();
    assert_eq!(shape(&ev), ["conversation.item.deleted", "error"]);
}

/// A session exercising every server event the simulator can send.
fn conformance_session(dialect: Dialect) -> Vec<String> {
    let toml = r#"
max_session_s = 600
greeting = "Thank you for calling Bright Smile Dental. How can I help?"
[[turn]]
heard = "When are you open?"
say = "We are open Monday to Friday from eight to five."
[[turn]]
heard = "Do you have a cleaning on December first?"
preamble = "Let me check."
call = { name = "check_availability", arguments = { service = "cleaning", date = "2026-12-01" } }
say = "I have {output.slots[0]}."
[[turn]]
say = "This is a long answer that the caller will interrupt halfway through, so it keeps going."
"#;
    let mut h = H::new(dialect, toml);
    match dialect {
        Dialect::Ga | Dialect::Live => h.send(json!({"type": "session.update", "session": {
            "type": "realtime", "model": "gpt-realtime", "output_modalities": ["audio"], "instructions": "Be brief.",
            "tools": [{"type": "function", "name": "check_availability", "description": "Free slots",
                       "parameters": {"type": "object", "properties": {"service": {"type": "string"}}}}],
            "tool_choice": "auto",
            "audio": {"input": {"format": {"type": "audio/pcmu"}, "transcription": {"model": "gpt-4o-transcribe"},
                                "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                                                   "silence_duration_ms": 500, "idle_timeout_ms": 6000,
                                                   "create_response": true, "interrupt_response": true}},
                      "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"}}}})),
        Dialect::Beta => h.send(json!({"type": "session.update", "session": {
            "modalities": ["audio", "text"], "instructions": "Be brief.", "voice": "alloy",
            "input_audio_format": "g711_ulaw", "output_audio_format": "g711_ulaw",
            "input_audio_transcription": {"model": "whisper-1"},
            "tools": [{"type": "function", "name": "check_availability", "parameters": {"type": "object"}}],
            "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500},
            "temperature": 0.8}})),
    }
    // Greeting, then a spoken turn.
    h.send(json!({"type": "response.create", "response": {"instructions": "Greet the caller."}}));
    h.finish_response();
    h.caller_turn(900);
    h.finish_response();
    // Function call round trip.
    h.caller_turn(900);
    h.finish_response();
    let call_id = h
        .log
        .iter()
        .rev()
        .find_map(|(_, e)| {
            (ty(e) == "response.function_call_arguments.done").then(|| e["call_id"].clone())
        })
        .expect("function call made");
    h.send(
        json!({"type": "conversation.item.create", "item": {"type": "function_call_output",
        "call_id": call_id, "output": "{\"slots\":[\"9:30\"]}"}}),
    );
    h.send(json!({"type": "response.create"}));
    h.finish_response();
    // Barge-in, then truncate what was "played".
    h.caller_turn(600);
    h.advance(400);
    let item_id = h
        .log
        .iter()
        .rev()
        .find_map(|(_, e)| (ty(e) == "response.output_item.added").then(|| e["item"]["id"].clone()))
        .expect("assistant item");
    h.append(&tone(400));
    h.send(json!({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 120}));
    h.append(&silence(1000));
    // Client cancel.
    h.send(json!({"type": "response.cancel"}));
    // Errors.
    h.send_raw("{oops");
    h.send(json!({"type": "foo.bar", "event_id": "evt_1"}));
    h.send(json!({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 999_999}));
    h.send(json!({"type": "input_audio_buffer.commit"}));
    h.send(json!({"type": "response.cancel"}));
    // Items.
    h.send(json!({"type": "conversation.item.create", "item": {"id": "item_client1", "type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "Hello?"}]}}));
    h.send(json!({"type": "conversation.item.retrieve", "item_id": item_id}));
    h.send(json!({"type": "conversation.item.delete", "item_id": "item_client1"}));
    h.append(&silence(100));
    h.send(json!({"type": "input_audio_buffer.clear"}));
    // Text-only response.
    let text_only = match dialect {
        Dialect::Ga | Dialect::Live => json!({"output_modalities": ["text"]}),
        Dialect::Beta => json!({"modalities": ["text"]}),
    };
    h.send(json!({"type": "response.create", "response": text_only}));
    h.finish_response();
    // Idle timeout (GA only), then the session cap.
    h.append(&silence(12_000));
    h.finish_response();
    h.advance(600_000);
    assert!(h.s.poll_close().is_some());
    h.collect();
    let types: Vec<String> = h.log.iter().map(|(_, e)| ty(e).to_string()).collect();
    for t in [
        "response.function_call_arguments.done",
        "conversation.item.truncated",
        "conversation.item.retrieved",
        "conversation.item.deleted",
        "input_audio_buffer.cleared",
        "error",
        "conversation.item.input_audio_transcription.completed",
    ] {
        assert!(
            types.iter().any(|x| x == t),
            "{dialect:?} session lacks {t}"
        );
    }
    if dialect == Dialect::Ga {
        assert!(types
            .iter()
            .any(|x| x == "input_audio_buffer.timeout_triggered"));
    }
    let reasons: Vec<Value> = h
        .log
        .iter()
        .filter(|(_, e)| ty(e) == "response.done")
        .map(|(_, e)| e["response"]["status_details"]["reason"].clone())
        .collect();
    assert!(reasons.contains(&json!("turn_detected")), "{reasons:?}");
    std::mem::take(&mut h.raw)
}

/// Runs the project's validator on the events of a whole session.
fn validate_with_sdk(dialect: Dialect) {
    let python = std::env::var("FRONTDESK_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = std::env::var("FRONTDESK_VALIDATOR").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/protocol/validate_events.py"
        )
        .to_string()
    });
    assert!(
        Path::new(&script).exists(),
        "validator {script} not found (set FRONTDESK_VALIDATOR)"
    );
    let probe = std::process::Command::new(&python)
        .args(["-c", "import openai"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "{python} cannot import the `openai` package ({}); install it (`{python} -m pip install openai`) \
             or set FRONTDESK_TEST_PYTHON to a python that has it",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("cannot run {python}: {e}; set FRONTDESK_TEST_PYTHON to a python with the `openai` package"),
    }
    let events = conformance_session(dialect);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("server.jsonl");
    std::fs::write(&file, events.join("\n") + "\n").expect("write jsonl");
    let name = match dialect {
        Dialect::Ga | Dialect::Live => "ga",
        Dialect::Beta => "beta",
    };
    let out = std::process::Command::new(&python)
        .arg(&script)
        .args(["--dialect", name, "--direction", "server", "--quiet"])
        // The real service's session object carries these; the SDK's session models do not.
        .args(["--allow-undeclared", "session.*:$.session.id"])
        .args(["--allow-undeclared", "session.*:$.session.object"])
        .args(["--allow-undeclared", "session.*:$.session.expires_at"])
        .arg(&file)
        .output()
        .expect("run validator");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.code() != Some(3),
        "the validator says `openai` is missing:\n{report}"
    );
    assert!(
        out.status.success(),
        "{name} server events failed validation ({} events):\n{report}",
        events.len()
    );
}

#[test]
fn ga_server_events_validate_against_the_sdk() {
    validate_with_sdk(Dialect::Ga);
}

#[test]
fn beta_server_events_validate_against_the_sdk() {
    validate_with_sdk(Dialect::Beta);
}

/// A tiny deterministic generator (no external crates) for the robustness test.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
    fn value(&mut self, depth: u32) -> Value {
        match self.next() % if depth > 2 { 6 } else { 8 } {
            0 => Value::Null,
            1 => json!(self.next().is_multiple_of(2)),
            2 => json!(self.next() as i64 - (1 << 30)),
            3 => json!(-1.5e300),
            4 => json!(*self.pick(&[
                "",
                "item_T000001",
                "root",
                "audio/pcmu",
                "g711_ulaw",
                "server_vad",
                "inf",
                "\u{1F600}",
                "//8="
            ])),
            5 => json!(u64::MAX),
            6 => Value::Array(
                (0..self.next() % 3)
                    .map(|_| self.value(depth + 1))
                    .collect(),
            ),
            _ => {
                let keys = [
                    "type",
                    "session",
                    "audio",
                    "input",
                    "output",
                    "format",
                    "turn_detection",
                    "item",
                    "item_id",
                    "content",
                    "role",
                    "call_id",
                    "output",
                    "audio_end_ms",
                    "content_index",
                    "response",
                    "threshold",
                    "silence_duration_ms",
                    "voice",
                    "max_output_tokens",
                    "idle_timeout_ms",
                    "event_id",
                ];
                let mut m = Map::new();
                for _ in 0..self.next() % 4 {
                    m.insert((*self.pick(&keys)).to_string(), self.value(depth + 1));
                }
                Value::Object(m)
            }
        }
    }
}

#[test]
fn arbitrary_client_input_never_panics() {
    let types = GA_CLIENT_EVENTS
        .iter()
        .chain(["bogus", "transcription_session.update"].iter());
    let types: Vec<&str> = types.copied().collect();
    for dialect in [Dialect::Ga, Dialect::Beta] {
        let mut rng = Lcg(7);
        let mut h = H::new(
            dialect,
            "max_session_s = 100\n[[turn]]\ncall = { name = \"f\", arguments = { a = \"{output.x[0]}\", b = \"n {outputs.f.y}\" } }\nsay = \"{output.x[3]}\"\n",
        );
        h.configure_ulaw(200);
        for i in 0..4000u32 {
            let mut ev = match rng.value(0) {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            ev.insert("type".into(), json!(*rng.pick(&types)));
            if i.is_multiple_of(7) {
                ev.insert(
                    "audio".into(),
                    json!(b64(&tone((rng.next() % 400) as usize))),
                );
            }
            h.send(Value::Object(ev));
            if i.is_multiple_of(13) {
                h.send_raw(
                    &"{\"type\":\"session.update\",\"session\":"
                        .repeat((rng.next() % 200) as usize),
                );
            }
            h.advance(rng.next() % 50);
        }
        h.take();
    }
}

// Call arguments templated from earlier tool outputs.

impl H {
    /// One caller turn answered by a function call (GA): `(call_id, name, arguments text)`.
    fn call_turn(&mut self) -> (String, String, String) {
        self.caller_turn(600);
        self.finish_response();
        let ev = self.take();
        let done = find(&ev, "response.function_call_arguments.done");
        let text = |v: &Value| v.as_str().expect("string field").to_string();
        let deltas: String = all(&ev, "response.function_call_arguments.delta")
            .map(|e| text(&e["delta"]))
            .collect();
        assert_eq!(deltas, text(&done["arguments"]), "deltas add up to .done");
        (
            text(&done["call_id"]),
            text(&done["name"]),
            text(&done["arguments"]),
        )
    }

    /// Sends `output` for `call_id`, then `response.create`; returns what was said.
    fn tool_reply(&mut self, call_id: &str, output: &str) -> String {
        self.send(
            json!({"type": "conversation.item.create", "item": {"type": "function_call_output",
            "call_id": call_id, "output": output}}),
        );
        self.send(json!({"type": "response.create"}));
        self.finish_response();
        let ev = self.take();
        find(&ev, "response.output_audio_transcript.done")["transcript"]
            .as_str()
            .expect("transcript")
            .to_string()
    }
}

fn parse_args(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("arguments are not JSON ({e}): {text}"))
}

/// A check_availability result as the real tool returns it (`src/tools/handlers.rs`).
const SLOTS_OUTPUT: &str = r#"{"ok":true,"timezone":"Europe/Berlin","today":"2026-03-02 (Monday)",
"service":{"id":"cleaning","name":"Cleaning","duration_minutes":30,"providers":["Dr. Anna Weber"]},
"searched":{"from":"2026-03-02","to":"2026-03-08","time_of_day":"any"},
"slots":[{"start":"2026-03-03T09:00","end":"2026-03-03T09:30","weekday":"Tuesday","providers":["Dr. Anna Weber","Dr. Ben Roth"]},
         {"start":"2026-03-03T09:15","end":"2026-03-03T09:45","weekday":"Tuesday","providers":["Dr. Ben Roth"]}]}"#;

#[test]
fn call_arguments_are_filled_from_the_previous_output() {
    let toml = format!(
        r#"{FAST}
[[turn]]
call = {{ name = "check_availability", arguments = {{ service = "cleaning" }} }}
say = "The first free slot is {{output.slots[0].start}}. Shall I book it?"
[[turn]]
call = {{ name = "book_appointment", arguments = {{ service = "cleaning", start = "{{output.slots[0].start}}", notes = "slot {{output.slots[0].start}} on {{output.slots[0].weekday}} with {{output.slots[0].providers}}, turn {{turn}}", slot = "{{output.slots[0]}}", minutes = "{{output.service.duration_minutes}}", who = "{{output.slots[0].providers}}", whole = "{{output.searched}}", deep = {{ list = ["{{output.slots[1].end}}", 7, true, "{{{{literal}}}}"] }} }} }}
say = "Booked for {{output.appointment.start}}."
"#
    );
    let mut h = H::new(Dialect::Ga, &toml);
    h.configure_ulaw(500);
    let (id1, name1, args1) = h.call_turn();
    assert_eq!(name1, "check_availability");
    assert_eq!(args1, r#"{"service":"cleaning"}"#);
    assert_eq!(
        h.tool_reply(&id1, SLOTS_OUTPUT),
        "The first free slot is 2026-03-03T09:00. Shall I book it?"
    );

    let (id2, name2, args2) = h.call_turn();
    assert_eq!(name2, "book_appointment");
    let args = parse_args(&args2);
    assert_eq!(
        args,
        json!({
            // Text interpolation.
            "start": "2026-03-03T09:00",
            "notes": "slot 2026-03-03T09:00 on Tuesday with Dr. Anna Weber, Dr. Ben Roth, turn 2",
            // Exactly one placeholder: the JSON value as-is.
            "slot": {"start": "2026-03-03T09:00", "end": "2026-03-03T09:30", "weekday": "Tuesday",
                     "providers": ["Dr. Anna Weber", "Dr. Ben Roth"]},
            "minutes": 30,
            "who": ["Dr. Anna Weber", "Dr. Ben Roth"],
            "whole": {"from": "2026-03-02", "to": "2026-03-08", "time_of_day": "any"},
            // Any depth; non-strings untouched; `{{`/`}}` are literal braces.
            "deep": {"list": ["2026-03-03T09:45", 7, true, "{literal}"]},
            "service": "cleaning",
        })
    );
    assert_eq!(
        h.tool_reply(
            &id2,
            r#"{"ok":true,"confirmation_code":"K7PQ3X","appointment":{"start":"2026-03-03T09:00"}}"#
        ),
        "Booked for 2026-03-03T09:00."
    );
}

#[test]
fn outputs_by_tool_name_reach_back_past_other_calls() {
    let toml = format!(
        r#"{FAST}
[[turn]]
call = {{ name = "check_availability", arguments = {{ service = "cleaning" }} }}
say = "The first free slot is {{output.slots[0].start}}."
[[turn]]
call = {{ name = "get_business_info" }}
say = "We are {{output.name}}."
[[turn]]
call = {{ name = "book_appointment", arguments = {{ start = "{{outputs.check_availability.slots[0].start}}", end = "{{outputs.check_availability.slots[0].end}}", clinic = "for {{output.name}}", latest = "{{output.name}}", slot = "{{outputs.check_availability.slots[1]}}", info = "{{outputs.get_business_info}}" }} }}
say = "Booked at {{outputs.check_availability.slots[0].start}}, code {{output.confirmation_code}}."
"#
    );
    let mut h = H::new(Dialect::Ga, &toml);
    h.configure_ulaw(500);
    let (id1, _, _) = h.call_turn();
    h.tool_reply(&id1, SLOTS_OUTPUT);
    let (id2, name2, _) = h.call_turn();
    assert_eq!(name2, "get_business_info");
    let info = r#"{"ok":true,"name":"Bright Smile Dental"}"#;
    assert_eq!(h.tool_reply(&id2, info), "We are Bright Smile Dental.");

    let (id3, name3, args3) = h.call_turn();
    assert_eq!(name3, "book_appointment");
    assert_eq!(
        parse_args(&args3),
        json!({
            "start": "2026-03-03T09:00",
            "end": "2026-03-03T09:30",
            // `{output…}` is the most recent output: get_business_info's.
            "clinic": "for Bright Smile Dental",
            "latest": "Bright Smile Dental",
            "slot": {"start": "2026-03-03T09:15", "end": "2026-03-03T09:45", "weekday": "Tuesday",
                     "providers": ["Dr. Ben Roth"]},
            "info": {"ok": true, "name": "Bright Smile Dental"},
        })
    );
    // `say` can use the by-name form too.
    assert_eq!(
        h.tool_reply(&id3, r#"{"ok":true,"confirmation_code":"K7PQ3X"}"#),
        "Booked at 2026-03-03T09:00, code K7PQ3X."
    );
    assert_eq!(h.s.tool_outputs().len(), 3);
}

#[test]
fn the_last_output_of_a_tool_is_used() {
    let toml = format!(
        r#"{FAST}
[[turn]]
call = {{ name = "check_availability", arguments = {{ day = "{{outputs.check_availability.searched.to}}" }} }}
say = "Found {{output.slots[0].start}}."
"#
    );
    let mut h = H::new(Dialect::Ga, &toml);
    h.configure_ulaw(500);
    // No check_availability output yet: the placeholder is sent as written.
    let (id1, _, args1) = h.call_turn();
    assert_eq!(
        parse_args(&args1),
        json!({"day": "{outputs.check_availability.searched.to}"})
    );
    h.tool_reply(&id1, SLOTS_OUTPUT);
    // The last turn repeats: now it reads the first output.
    let (id2, _, args2) = h.call_turn();
    assert_eq!(parse_args(&args2), json!({"day": "2026-03-08"}));
    h.tool_reply(&id2, r#"{"searched":{"to":"2026-03-15"},"slots":[]}"#);
    let (_, _, args3) = h.call_turn();
    assert_eq!(parse_args(&args3), json!({"day": "2026-03-15"}));
}

/// Collects everything a `tracing` subscriber writes.
#[derive(Clone, Default)]
struct LogBuf(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuf {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

#[test]
fn unresolved_placeholders_are_sent_as_written_and_logged() {
    let toml = format!(
        r#"{FAST}
[[turn]]
call = {{ name = "check_availability", arguments = {{ service = "cleaning", start = "{{output.slots[0].start}}" }} }}
say = "Got it."
[[turn]]
call = {{ name = "book_appointment", arguments = {{ start = "{{output.slots[9].start}}", note = "at {{output.nope}} for {{outputs.find_appointments.count}} ({{turn}})", whole = "{{output}}", field = "{{output.x}}", fine = "cleaning" }} }}
say = "Done."
"#
    );
    let logs = LogBuf::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let mut h = H::new(Dialect::Ga, &toml);
        h.configure_ulaw(500);
        // No output at all yet.
        let (id1, _, args1) = h.call_turn();
        assert_eq!(
            parse_args(&args1),
            json!({"service": "cleaning", "start": "{output.slots[0].start}"})
        );
        let log = logs.text();
        assert!(log.contains("WARN"), "{log}");
        assert!(log.contains("unresolved placeholders"), "{log}");
        assert!(log.contains("{output.slots[0].start}"), "{log}");
        assert!(log.contains("check_availability"), "{log}");

        // An output that is not JSON: only `{output}` as a whole resolves (to its text).
        assert_eq!(h.tool_reply(&id1, "no slots today"), "Got it.");
        let (_, _, args2) = h.call_turn();
        assert_eq!(
            parse_args(&args2),
            json!({
                "start": "{output.slots[9].start}",
                "note": "at {output.nope} for {outputs.find_appointments.count} (2)",
                "whole": "no slots today",
                "field": "{output.x}",
                "fine": "cleaning",
            })
        );
        let log = logs.text();
        for p in [
            "{output.slots[9].start}",
            "{output.nope}",
            "{outputs.find_appointments.count}",
            "{output.x}",
        ] {
            assert!(log.contains(p), "{p} not in {log}");
        }
        assert!(!log.contains("{output}\""), "{log}");
    });
}

#[test]
fn booking_example_chains_availability_into_the_booking() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/scenarios/booking.toml"
    ));
    let scenario = Scenario::load(path).unwrap_or_else(|e| panic!("{e}"));
    // Deliver fast, keep the file's turns.
    let scenario = Scenario {
        timing: super::super::scenario::Timing {
            realtime_factor: f64::INFINITY,
            first_audio_delay: Duration::ZERO,
            ..scenario.timing
        },
        ..scenario
    };
    let params = SessionParams {
        dialect: Dialect::Ga,
        model: None,
        unix_time_s: UNIX,
        id_token: "T".into(),
        scenario: Arc::new(scenario),
        echo: false,
        session_number: 1,
    };
    let now = Instant::now();
    let mut h = H {
        s: SimSession::new(params, now),
        now,
        log: Vec::new(),
        raw: Vec::new(),
    };
    h.configure_ulaw(500);
    let (id1, name1, args1) = h.call_turn();
    assert_eq!(name1, "check_availability");
    assert_eq!(parse_args(&args1), json!({"service": "cleaning"}));
    assert_eq!(
        h.tool_reply(&id1, SLOTS_OUTPUT),
        "The first free slot is 2026-03-03T09:00. Shall I book it?"
    );
    let (id2, name2, args2) = h.call_turn();
    assert_eq!(name2, "book_appointment");
    assert_eq!(
        parse_args(&args2),
        json!({"service": "cleaning", "start": "2026-03-03T09:00", "customer_name": "Test Caller"})
    );
    let booked = r#"{"ok":true,"timezone":"Europe/Berlin","status":"booked","confirmation_code":"K7PQ3X",
        "appointment":{"service":"Cleaning","provider":"Dr. Anna Weber","start":"2026-03-03T09:00",
        "end":"2026-03-03T09:30","weekday":"Tuesday","customer_name":"Test Caller","status":"booked",
        "confirmation_code":"K7PQ3X","phone":"+4930123456"},"already_booked":false,"message":"Booked."}"#;
    assert_eq!(
        h.tool_reply(&id2, booked),
        "You are booked. Your confirmation code is K7PQ3X."
    );
}

#[test]
fn a_timed_close_fault_closes_the_first_session_only() {
    let toml = "[[fault]]\nat_ms = 1500\naction = \"close\"\n";
    let mut h = H::new(Dialect::Ga, toml);
    h.take();
    h.advance(1000);
    assert!(h.s.poll_close().is_none(), "not before at_ms");
    h.advance(600);
    assert!(
        h.take().is_empty(),
        "close drops the session without an event"
    );
    let close = h.s.poll_close().expect("close requested");
    assert_eq!(close.code, 1011);
    assert_eq!(h.s.poll_timeout(), None);
    // The second session of the simulator is not hit (`session` defaults to 1).
    let scenario = scenario(toml);
    let second = SimSession::new(
        SessionParams {
            dialect: Dialect::Ga,
            model: None,
            unix_time_s: UNIX,
            id_token: "U".into(),
            scenario,
            echo: false,
            session_number: 2,
        },
        h.now,
    );
    assert!(second
        .poll_timeout()
        .is_some_and(|t| t > h.now + Duration::from_secs(60)));
}

#[test]
fn a_server_error_fault_after_a_call_turn_leaves_the_call_in_flight() {
    let toml = format!(
        "{FAST}[[turn]]\ncall = {{ name = \"check_availability\", arguments = {{ service = \"cleaning\" }} }}\nsay = \"Done.\"\n[[fault]]\nafter_turn = 1\naction = \"server_error\"\nsession = 0\n"
    );
    let mut h = H::new(Dialect::Ga, &toml);
    h.configure_ulaw(500);
    h.take();
    h.caller_turn(800);
    h.finish_response();
    let ev = h.take();
    let done = find(&ev, "response.done");
    assert_eq!(done["response"]["output"][0]["type"], "function_call");
    let err = error_of(&ev);
    assert_eq!(err["type"], "server_error");
    assert!(err["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("The server had an error")));
    assert_eq!(h.s.poll_close().map(|c| c.code), Some(1011));
}

#[test]
fn fault_entries_are_checked_at_load() {
    let bad = |t: &str| match Scenario::parse(t, std::path::Path::new("/x/s.toml")) {
        Err(e) => e.to_string(),
        Ok(_) => String::new(),
    };
    assert!(bad("[[fault]]\naction = \"close\"\n").contains("exactly one of at_ms and after_turn"));
    assert!(bad("[[fault]]\nafter_turn = 0\naction = \"close\"\n").contains("counts from 1"));
    assert!(bad("[[fault]]\nat_ms = 5\naction = \"explode\"\n").contains("unknown action"));
}
