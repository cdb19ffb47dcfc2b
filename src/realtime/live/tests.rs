use base64::engine::general_purpose::STANDARD;
use serde_json::{json, Value};

use super::*;
use crate::realtime::sdk_validator::validate;

fn tool(name: &str) -> ToolDefinition {
    ToolDefinition {
        name: name.into(),
        description: format!("{name} description"),
        parameters: json!({"type": "object", "properties": {"date": {"type": "string"}},
                           "required": ["date"], "additionalProperties": false}),
    }
}

fn settings(law: Law, tools: bool, history: bool) -> LiveSessionSettings {
    LiveSessionSettings {
        model: "gpt-live-1.1".into(),
        instructions: "You are the receptionist of Acme Dental.".into(),
        voice: "marin".into(),
        law,
        tools: if tools {
            vec![tool("check_availability"), tool("book_appointment")]
        } else {
            Vec::new()
        },
        backend_model: "gpt-5.5".into(),
        backend_instructions: Some("Use the tools to read and change bookings.".into()),
        history: if history {
            vec![
                HistoryMessage {
                    role: HistoryRole::Developer,
                    text: "The call was transferred from the main line.".into(),
                },
                HistoryMessage {
                    role: HistoryRole::User,
                    text: "I'd like to book a cleaning.".into(),
                },
                HistoryMessage {
                    role: HistoryRole::Assistant,
                    text: "Sure, which day suits you?".into(),
                },
            ]
        } else {
            Vec::new()
        },
    }
}

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).expect("valid json")
}

#[test]
fn session_start_has_exactly_the_accepted_fields() {
    let v = parse_json(&session_start(&settings(Law::A, true, true)));
    assert_eq!(v["type"], "session.start");
    let session = v["session"].as_object().expect("session object");
    let mut keys: Vec<_> = session.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["audio", "delegation", "input", "instructions", "model"]
    );
    assert_eq!(
        v["session"]["audio"],
        json!({"format": {"type": "audio/pcma", "rate": 8000}, "output": {"voice": "marin"}})
    );
    let d = &v["session"]["delegation"];
    assert_eq!(d["type"], "responses");
    assert_eq!(d["responses"]["model"], "gpt-5.5");
    assert_eq!(d["responses"]["tool_choice"], "auto");
    // Flat Responses format: no nested `function` object.
    assert_eq!(
        d["responses"]["tools"][0],
        json!({"type": "function", "name": "check_availability",
               "description": "check_availability description",
               "parameters": tool("check_availability").parameters})
    );
    assert_eq!(
        v["session"]["input"][2],
        json!({"type": "message", "role": "assistant",
               "content": [{"type": "output_text", "text": "Sure, which day suits you?"}]})
    );
    // µ-law, no tools, no history, blank instructions: only model and audio remain.
    let mut bare = settings(Law::Mu, false, false);
    bare.instructions = "  ".into();
    let v = parse_json(&session_start(&bare));
    let mut keys: Vec<_> = v["session"]
        .as_object()
        .expect("obj")
        .keys()
        .cloned()
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["audio", "model"]);
    assert_eq!(v["session"]["audio"]["format"], audio_format(Law::Mu));
}

#[test]
fn append_is_base64_of_the_raw_bytes_and_reuses_the_buffer() {
    let mut out = String::new();
    input_audio_append(&mut out, &[0xFF; 160]);
    let v = parse_json(&out);
    assert_eq!(v["type"], "session.input_audio.append");
    assert_eq!(
        STANDARD
            .decode(v["audio"].as_str().expect("audio"))
            .expect("b64"),
        vec![0xFF; 160]
    );
    let cap = out.capacity();
    input_audio_append(&mut out, &[0x55; 160]);
    assert_eq!(out.capacity(), cap);
}

#[test]
fn tool_answers_context_and_close() {
    assert_eq!(
        parse_json(&function_call_output("call_1", r#"{"ok":true}"#)),
        json!({"type": "response.item.create",
               "item": {"type": "function_call_output", "call_id": "call_1", "output": "{\"ok\":true}"}})
    );
    assert_eq!(
        parse_json(&response_create()),
        json!({"type": "response.create"})
    );
    assert_eq!(
        parse_json(&session_close()),
        json!({"type": "session.close"})
    );
    assert_eq!(
        parse_json(&instructions_append("The caller pressed 3.")),
        json!({"type": "session.instructions.append", "content": "The caller pressed 3.",
               "delegation_id": null})
    );
}

/// Server events as the reference shows them (TRAV captures and the SDK shapes, §2.7, §3.2),
/// with what the parser makes of each.
fn server_fixtures() -> Vec<(String, LiveEvent)> {
    let audio = STANDARD.encode([0xFFu8; 800]);
    vec![
        (
            json!({"event_id": "event_1", "type": "session.started", "session": {
                "id": "live_abc", "expires_at": 1_791_373_550_i64, "model": "gpt-live-1.1",
                "instructions": "…", "status": "active", "input": [],
                "audio": {"output": {"voice": "marin"}, "format": {"type": "audio/pcmu", "rate": 8000}},
                "delegation": {"type": "client"}}})
            .to_string(),
            LiveEvent::SessionStarted {
                session_id: "live_abc".into(),
                expires_at: Some(1_791_373_550),
                format: Some("audio/pcmu".into()),
            },
        ),
        (
            json!({"type": "session.output_audio.delta", "delta": audio}).to_string(),
            LiveEvent::OutputAudio {
                audio: vec![0xFF; 800],
            },
        ),
        (
            json!({"type": "session.input_transcript.delta", "event_id": "event_2",
                   "start_ms": 600, "end_ms": 800, "delta": "Please"})
            .to_string(),
            LiveEvent::InputTranscript {
                delta: "Please".into(),
                start_ms: 600,
                end_ms: 800,
            },
        ),
        (
            json!({"type": "session.output_transcript.delta", "event_id": "event_3",
                   "start_ms": 1000, "end_ms": 1200, "delta": "Hello"})
            .to_string(),
            LiveEvent::OutputTranscript {
                delta: "Hello".into(),
                start_ms: 1000,
                end_ms: 1200,
            },
        ),
        (
            json!({"type": "session.delegation.created", "event_id": "event_4", "offset_ms": 4600,
                   "delegation": {"id": "item_D", "type": "delegation", "target": "responses",
                                  "response_id": "resp_R"}})
            .to_string(),
            LiveEvent::DelegationCreated {
                id: "item_D".into(),
                target: "responses".into(),
                response_id: Some("resp_R".into()),
                offset_ms: 4600,
            },
        ),
        (
            json!({"type": "response.event", "event_id": "event_5", "delegation_id": "item_D",
                   "event": {"type": "response.created", "response": {"id": "resp_R"}}})
            .to_string(),
            LiveEvent::Response {
                delegation_id: Some("item_D".into()),
                event: ResponseStream::Created,
            },
        ),
        (
            json!({"type": "response.event", "event_id": "event_6", "delegation_id": "item_D",
                   "event": {"type": "response.output_item.done", "output_index": 0, "item": {
                       "id": "fc_1", "type": "function_call", "status": "completed",
                       "call_id": "call_C", "name": "check_availability",
                       "arguments": "{\"date\":\"2026-12-03\"}"}}})
            .to_string(),
            LiveEvent::Response {
                delegation_id: Some("item_D".into()),
                event: ResponseStream::FunctionCall(FunctionCall {
                    item_id: "fc_1".into(),
                    call_id: "call_C".into(),
                    name: "check_availability".into(),
                    arguments: r#"{"date":"2026-12-03"}"#.into(),
                }),
            },
        ),
        (
            json!({"type": "response.event", "event_id": "event_7", "delegation_id": "item_D",
                   "event": {"type": "response.output_item.done", "item": {
                       "id": "fc_2", "type": "function_call", "status": "in_progress",
                       "call_id": "call_X", "name": "x", "arguments": ""}}})
            .to_string(),
            LiveEvent::Response {
                delegation_id: Some("item_D".into()),
                event: ResponseStream::Other {
                    kind: "response.output_item.done".into(),
                },
            },
        ),
        (
            json!({"type": "response.event", "event_id": "event_8", "delegation_id": "item_D",
                   "event": {"type": "response.completed", "response": {"id": "resp_R", "output": [],
                       "usage": {"input_tokens": 120, "output_tokens": 30, "total_tokens": 150,
                                 "input_tokens_details": {"cached_tokens": 64}}}}})
            .to_string(),
            LiveEvent::Response {
                delegation_id: Some("item_D".into()),
                event: ResponseStream::Completed {
                    usage: Some(Usage {
                        input_tokens: 120,
                        output_tokens: 30,
                        total_tokens: 150,
                        cached_tokens: 64,
                        ..Usage::default()
                    }),
                },
            },
        ),
        (
            json!({"type": "response.event", "event_id": "event_9",
                   "event": {"type": "response.failed", "response": {"id": "resp_R"}}})
            .to_string(),
            LiveEvent::Response {
                delegation_id: None,
                event: ResponseStream::Ended {
                    kind: "response.failed".into(),
                },
            },
        ),
        (
            json!({"type": "session.instructions.appended", "event_id": "event_10",
                   "start_ms": 5200, "end_ms": 5400})
            .to_string(),
            LiveEvent::ContextAppended {
                kind: "session.instructions.appended".into(),
                start_ms: 5200,
                end_ms: 5400,
            },
        ),
        (
            json!({"type": "session.usage.updated", "event_id": "event_11", "usage": {"seconds": 15},
                   "context_window": {"usage_ratio": 0.25}})
            .to_string(),
            LiveEvent::UsageUpdated {
                seconds: 15.0,
                context_usage_ratio: Some(0.25),
            },
        ),
        (
            json!({"type": "session.closed", "event_id": "event_12", "reason": "close_requested",
                   "usage": {"seconds": 42},
                   "session": {"id": "live_abc", "expires_at": 1, "model": "gpt-live-1.1", "status": "active"}})
            .to_string(),
            LiveEvent::Closed {
                reason: "close_requested".into(),
                seconds: 42.0,
            },
        ),
        (
            json!({"type": "error", "event_id": "event_13", "error": {"type": "invalid_request_error",
                   "code": "unknown_parameter", "message": "Unknown parameter: 'session.voice'.",
                   "param": "session.voice"}})
            .to_string(),
            LiveEvent::Error {
                error_type: "invalid_request_error".into(),
                code: Some("unknown_parameter".into()),
                message: "Unknown parameter: 'session.voice'.".into(),
                param: Some("session.voice".into()),
            },
        ),
        (
            json!({"type": "info", "event_id": "event_14", "code": "data_channel_permissions",
                   "message": "m"})
            .to_string(),
            LiveEvent::Info {
                code: "data_channel_permissions".into(),
                message: "m".into(),
            },
        ),
        (
            json!({"type": "session.input_audio.muted", "event_id": "event_15"}).to_string(),
            LiveEvent::Other {
                kind: "session.input_audio.muted".into(),
            },
        ),
    ]
}

#[test]
fn parses_every_server_event_of_the_reference() {
    for (text, want) in server_fixtures() {
        let got = parse_server_event(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(got, want, "{text}");
        assert!(text.contains(got.name()), "{}", got.name());
    }
}

#[test]
fn malformed_events_are_errors_not_panics() {
    let cases = [
        ("not json", "json"),
        (r#"{"no":"type"}"#, "type"),
        (r#"{"type":"session.started","session":{}}"#, "malformed"),
        (
            r#"{"type":"session.output_audio.delta","delta":"!!!"}"#,
            "base64",
        ),
        (r#"{"type":"session.output_audio.delta"}"#, "malformed"),
        (
            r#"{"type":"response.event","event":{"type":"response.output_item.done","item":{"type":"function_call","status":"completed","name":"x"}}}"#,
            "call_id",
        ),
        (r#"{"type":"response.event","event":{}}"#, "type"),
        (
            r#"{"type":"session.closed","reason":"expired"}"#,
            "malformed",
        ),
    ];
    for (text, needle) in cases {
        let e = parse_server_event(text).expect_err(text);
        assert!(e.to_string().to_lowercase().contains(needle), "{text}: {e}");
    }
}

/// Every client event built here, as the bridge sends them.
fn all_client_events() -> Vec<String> {
    let mut lines = Vec::new();
    for law in [Law::Mu, Law::A] {
        for tools in [false, true] {
            for history in [false, true] {
                lines.push(session_start(&settings(law, tools, history)));
            }
        }
    }
    let mut out = String::new();
    for audio in [&[][..], &[0xFF; 160][..], &[0xD5; 160][..]] {
        input_audio_append(&mut out, audio);
        lines.push(out.clone());
    }
    lines.push(instructions_append("The caller pressed 5 on the keypad."));
    lines.push(function_call_output("call_C", r#"{"available":["09:00"]}"#));
    lines.push(response_create());
    lines.push(session_close());
    lines
}

#[test]
fn openai_sdk_validates_every_live_event() {
    let client = validate("live", "client", &all_client_events(), &[]);
    assert_eq!(client.code, Some(0), "{}", client.text);
    assert!(client.text.contains("session.start"), "{}", client.text);

    let server: Vec<String> = server_fixtures().into_iter().map(|(t, _)| t).collect();
    let report = validate("live", "server", &server, &[]);
    assert_eq!(report.code, Some(0), "{}", report.text);

    // The validator does catch what the strict server would reject.
    let mut bad = parse_json(&session_start(&settings(Law::Mu, false, false)));
    bad["session"]["turn_detection"] = json!({"type": "server_vad"});
    let report = validate(
        "live",
        "client",
        &[bad.to_string(), r#"{"type":"conversation.item.truncate","item_id":"i","content_index":0,"audio_end_ms":1}"#.into()],
        &[],
    );
    assert_eq!(report.code, Some(1), "{}", report.text);
    assert!(
        report.text.contains("$.session.turn_detection"),
        "{}",
        report.text
    );
    assert!(
        report.text.contains("conversation.item.truncate: INVALID"),
        "{}",
        report.text
    );
}
