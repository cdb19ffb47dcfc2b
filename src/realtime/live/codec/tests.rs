use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::bridge::core::{Bridge, CallPlan, CallSetup, Input, MediaParams, ModelPlan, Output};
use crate::media::g711::FRAME_BYTES;
use crate::media::pacer::{is_quiet, DepthBounds};
use crate::media::rtp;
use crate::realtime::protocol::{Dialect, ToolDefinition, TurnDetection};
use crate::realtime::sim::{LiveParams, LiveSimSession, Scenario};
use crate::realtime::Codec;

fn settings(tools: bool) -> SessionSettings {
    SessionSettings {
        model: crate::realtime::models::DEFAULT_REALTIME_MODEL.into(),
        instructions: "You are the receptionist.".into(),
        voice: "marin".into(),
        law: Law::Mu,
        turn_detection: TurnDetection::default(),
        transcription_model: None,
        tools: if tools {
            vec![ToolDefinition {
                name: "check_availability".into(),
                description: "Free slots.".into(),
                parameters: json!({"type": "object", "properties": {}}),
            }]
        } else {
            Vec::new()
        },
    }
}

fn ty(text: &str) -> String {
    let v: Value = serde_json::from_str(text).expect("json");
    v["type"].as_str().unwrap_or_default().to_owned()
}

fn decode(c: &mut Codec, frame: Value) -> Vec<ModelEvent> {
    let mut out = VecDeque::new();
    c.decode(&frame.to_string(), &mut out).expect("readable");
    out.into_iter().collect()
}

const STARTED: &str = r#"{"type":"session.started","event_id":"e1","session":{"id":"live_1","expires_at":1900000000,"model":"gpt-live-1.1","status":"active","audio":{"format":{"type":"audio/pcmu","rate":8000}}}}"#;

#[test]
fn start_first_then_held_events_and_continuous_appends() {
    let mut c = Codec::with_backend_model(Dialect::Live, "gpt-5.5");
    let start = c
        .encode_to_string(&ModelCommand::Configure(Box::new(settings(true))))
        .expect("session.start");
    let v: Value = serde_json::from_str(&start).expect("json");
    assert_eq!(v["type"], "session.start");
    assert_eq!(
        v["session"]["model"],
        crate::realtime::models::DEFAULT_LIVE_MODEL
    );
    assert_eq!(v["session"]["delegation"]["responses"]["model"], "gpt-5.5");
    // Before session.started: audio and text context wait (a replacement session's gap audio
    // must not be lost; bounded).
    assert!(c
        .encode_to_string(&ModelCommand::AppendAudio(vec![0xFF; 160]))
        .is_none());
    let greet = ModelCommand::CreateResponse {
        instructions: Some("Greet the caller.".into()),
    };
    assert!(c.encode_to_string(&greet).is_none());
    assert!(c.live().expect("live").take_held().is_empty());
    let mut out = VecDeque::new();
    c.decode(STARTED, &mut out).expect("started");
    assert_eq!(
        out.pop_front(),
        Some(ModelEvent::SessionCreated {
            session_id: Some("live_1".into())
        })
    );
    let held = c.live().expect("live").take_held();
    assert_eq!(
        held.iter().map(|t| ty(t)).collect::<Vec<_>>(),
        ["session.input_audio.append", "session.instructions.append"]
    );
    assert_eq!(c.live().expect("live").expires_at(), Some(1_900_000_000));
    assert_eq!(
        ty(&c
            .encode_to_string(&ModelCommand::AppendAudio(vec![0xFF; 160]))
            .expect("append")),
        "session.input_audio.append"
    );
    // No truncate, no cancel, no second start, in this dialect.
    for cmd in [
        ModelCommand::Truncate {
            item_id: OUTPUT_ITEM.into(),
            content_index: 0,
            audio_end_ms: 100,
        },
        ModelCommand::CancelResponse,
        ModelCommand::Configure(Box::new(settings(false))),
        ModelCommand::CreateResponse { instructions: None },
    ] {
        assert!(c.encode_to_string(&cmd).is_none(), "{cmd:?}");
    }
    assert_eq!(
        ty(&c
            .encode_to_string(&ModelCommand::AddContext {
                text: "The caller pressed 3.".into()
            })
            .expect("ctx")),
        "session.instructions.append"
    );
}

#[test]
fn every_outstanding_call_is_answered_then_one_response_create() {
    let mut c = Codec::new(Dialect::Live);
    c.encode_to_string(&ModelCommand::Configure(Box::new(settings(true))));
    decode(&mut c, serde_json::from_str(STARTED).expect("json"));
    let envelope = |event: Value| json!({"type": "response.event", "event_id": "e", "delegation_id": "D", "event": event});
    let call = |id: &str| {
        envelope(json!({"type": "response.output_item.done", "item": {
        "id": format!("fc_{id}"), "type": "function_call", "status": "completed",
        "call_id": id, "name": "check_availability", "arguments": "{}"}}))
    };
    let mut events = decode(&mut c, envelope(json!({"type": "response.created"})));
    events.extend(decode(&mut c, call("c1")));
    events.extend(decode(&mut c, call("c2")));
    events.extend(decode(&mut c, call("c2")));
    events.extend(decode(
        &mut c,
        envelope(json!({"type": "response.completed", "response": {
        "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}}})),
    ));
    let names: Vec<_> = events
        .iter()
        .map(|e| match e {
            ModelEvent::ResponseStarted { response_id } => format!("started {response_id}"),
            ModelEvent::ToolCall { call_id, .. } => format!("call {call_id}"),
            ModelEvent::ResponseDone { status, usage, .. } => {
                format!("done {status} {}", usage.map_or(0, |u| u.total_tokens))
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        ["started D", "call c1", "call c2", "done completed 15"]
    );
    let result = |id: &str| ModelCommand::ToolResult {
        call_id: id.into(),
        output: "{\"ok\":true}".into(),
    };
    let create = ModelCommand::CreateResponse { instructions: None };
    assert_eq!(
        ty(&c.encode_to_string(&result("c1")).expect("output")),
        "response.item.create"
    );
    assert!(
        c.encode_to_string(&create).is_none(),
        "a partial batch is not continued"
    );
    assert!(
        c.encode_to_string(&result("nope")).is_none(),
        "unknown calls are not answered"
    );
    assert_eq!(
        ty(&c.encode_to_string(&result("c2")).expect("output")),
        "response.item.create"
    );
    assert_eq!(
        ty(&c.encode_to_string(&create).expect("continue")),
        "response.create"
    );
    assert!(c.encode_to_string(&create).is_none(), "only once");
    // A failed response's calls are discarded by the service: their outputs are not sent.
    decode(&mut c, call("c3"));
    let done = decode(&mut c, envelope(json!({"type": "response.failed"})));
    assert!(matches!(&done[..], [ModelEvent::ResponseDone { status, .. }] if status == "failed"));
    assert!(c.encode_to_string(&result("c3")).is_none());
}

#[test]
fn transcripts_are_grouped_into_turns_and_a_refused_start_ends_the_session() {
    let mut c = Codec::new(Dialect::Live);
    c.encode_to_string(&ModelCommand::Configure(Box::new(settings(false))));
    let refused = decode(
        &mut c,
        json!({"type": "error", "event_id": "e", "error": {"type": "invalid_request_error",
               "code": "unknown_parameter", "message": "Unknown parameter.", "param": "session.x"}}),
    );
    assert!(matches!(&refused[0], ModelEvent::Error(e) if e.message.contains("session.x")));
    assert!(
        matches!(&refused[1], ModelEvent::SessionClosed { reason } if reason.contains("unknown_parameter"))
    );

    let mut c = Codec::new(Dialect::Live);
    decode(&mut c, serde_json::from_str(STARTED).expect("json"));
    let t = |kind: &str, d: &str, s: u64| json!({"type": kind, "event_id": "e", "delta": d, "start_ms": s, "end_ms": s + 200});
    let mut ev = decode(
        &mut c,
        t("session.input_transcript.delta", "I'd like", 1000),
    );
    ev.extend(decode(
        &mut c,
        t("session.input_transcript.delta", " a cleaning", 1200),
    ));
    ev.extend(decode(
        &mut c,
        t("session.output_transcript.delta", "Sure", 2600),
    ));
    ev.extend(decode(
        &mut c,
        t("session.input_transcript.delta", "Thanks", 5000),
    ));
    assert_eq!(
        ev,
        [
            ModelEvent::CallerTranscript {
                item_id: "live-caller-1".into(),
                text: "I'd like".into()
            },
            ModelEvent::CallerTranscript {
                item_id: "live-caller-1".into(),
                text: "I'd like a cleaning".into()
            },
            ModelEvent::AgentTranscriptDelta {
                item_id: "live-agent-1".into(),
                delta: "Sure".into()
            },
            ModelEvent::CallerTranscript {
                item_id: "live-caller-2".into(),
                text: "Thanks".into()
            },
        ]
    );
    let closed = decode(
        &mut c,
        json!({"type": "session.closed", "event_id": "e", "reason": "expired", "usage": {"seconds": 61},
               "session": {"id": "live_1", "expires_at": 1, "model": "m", "status": "active"}}),
    );
    assert!(
        matches!(&closed[..], [ModelEvent::SessionClosed { reason }] if reason.contains("expired"))
    );
    assert_eq!(c.live().expect("live").usage_seconds(), 61.0);
}

/// The agent's turn is over once the output stream passed its last fragment by the turn gap:
/// `AgentTranscriptDone` after that chunk's audio, once; the next fragment opens a new turn.
#[test]
fn an_agent_turn_ends_when_the_stream_passes_its_last_fragment_by_the_turn_gap() {
    use base64::Engine as _;
    let mut c = Codec::new(Dialect::Live);
    decode(&mut c, serde_json::from_str(STARTED).expect("json"));
    let fragment = |d: &str, s: u64| json!({"type": "session.output_transcript.delta", "event_id": "e", "delta": d, "start_ms": s, "end_ms": s + 200});
    let chunk = json!({"type": "session.output_audio.delta",
        "delta": base64::engine::general_purpose::STANDARD.encode([0xFFu8; 800])});
    let mut done = Vec::new();
    decode(&mut c, fragment("Goodbye", 0));
    for n in 1..=12u64 {
        for e in decode(&mut c, chunk.clone()) {
            if let ModelEvent::AgentTranscriptDone { item_id, text } = e {
                done.push((n * 100, item_id, text));
            }
        }
    }
    // The fragment ended at 200 ms; the stream reached 200 + 800 ms with the 10th chunk.
    assert_eq!(
        done,
        [(1000, "live-agent-1".to_owned(), "Goodbye".to_owned())]
    );
    // Even a fragment within the gap (a late one) opens the next turn once this one ended.
    let next = decode(&mut c, fragment("Hello", 900));
    assert!(
        matches!(&next[..], [ModelEvent::AgentTranscriptDelta { item_id, .. }] if item_id == "live-agent-2")
    );
}

// ----- pair test: Bridge + simulated GPT-Live server on a virtual clock --------------------------

const DRIFT_SCENARIO: &str = r#"
greeting = "Thank you for calling Bright Smile Dental. How can I help you today?"
first_audio_delay_ms = 300
[fallback]
say = "We are open Monday to Friday from eight in the morning to five in the afternoon, and on the first Saturday of every month."
"#;

/// A 10-minute call: the caller says something every 15 s, the simulated server answers on a
/// clock 0.1 % fast for 5 minutes, then 0.1 % slow. The playout queue stays within its bounds
/// (drift corrected at quiet frames only), and every word the server sent reaches the caller
/// whole and in order: the runs of non-quiet frames on the RTP side equal the server's.
#[test]
fn ten_minutes_of_server_clock_drift_stay_within_the_playout_bounds() {
    let scenario =
        Scenario::parse(DRIFT_SCENARIO, Path::new("/nonexistent/drift.toml")).expect("scenario");
    let t0 = Instant::now();
    let mut sim = LiveSimSession::new(
        LiveParams {
            unix_time_s: 1_900_000_000,
            id_token: "pair".into(),
            scenario: Arc::new(scenario),
            clock_skew_ppm: 1000,
            session_number: 1,
        },
        t0,
    );
    let setup = CallSetup {
        media: MediaParams {
            ssrc: 1,
            first_seq: 1,
            first_ts: 0,
            rtp_timeout: None,
            send_silence: true,
        },
        negotiated: crate::sdp::Negotiated {
            law: Law::Mu,
            payload_type: 0,
            telephone_event_pt: None,
            remote_rtp: "127.0.0.1:40000".parse().expect("addr"),
            ptime_ms: 20,
            direction: crate::sdp::Direction::SendRecv,
            rtcp_mux: false,
            srtp: None,
        },
        local_rtp: "127.0.0.1:30000".parse().expect("addr"),
        sdp_session_id: 1,
        sdes: None,
        plan: CallPlan::Agent(ModelPlan {
            caps: Dialect::Live.capabilities(),
            settings: settings(false),
            greeting: "Hello".into(),
            dtmf: std::collections::BTreeMap::new(),
            transfers: std::collections::BTreeMap::new(),
            max_duration: Duration::from_secs(3600),
            rollover: Default::default(),
            echo_gate: true,
            idle: None,
        }),
    };
    let caller: std::net::SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    let mut bridge = Bridge::new(t0, setup);
    let mut codec = Codec::new(Dialect::Live);
    let tone: Vec<u8> = (0..FRAME_BYTES)
        .map(|i| {
            let x = (i as f64 * 2.0 * std::f64::consts::PI * 300.0 / 8000.0).sin();
            crate::media::g711::linear_to_ulaw((x * 9000.0) as i16)
        })
        .collect();
    let silence = [0xFFu8; FRAME_BYTES];
    let mut sent_by_server: Vec<u8> = Vec::new();
    let mut played: Vec<u8> = Vec::new();
    let mut events = VecDeque::new();
    let mut text = String::new();
    let step = Duration::from_millis(5);
    let total_ms: u64 = 600_000;
    let mut seq: u16 = 0;
    for tick in 0..total_ms / 5 {
        let ms = tick * 5;
        let now = t0 + step * u32::try_from(tick).expect("ticks");
        if ms == total_ms / 2 {
            sim.set_clock_skew_ppm(-1000);
        }
        if ms % 20 == 0 {
            // The caller talks for 1 s at the start of every 15 s.
            let speaking = ms % 15_000 >= 8_000 && ms % 15_000 < 9_000;
            let payload = if speaking { &tone[..] } else { &silence[..] };
            let mut packet = rtp::header(0, false, seq, u32::from(seq) * 160, 99).to_vec();
            packet.extend_from_slice(payload);
            seq = seq.wrapping_add(1);
            bridge.handle_input(Input::Rtp {
                now,
                from: caller,
                datagram: &packet,
            });
        }
        bridge.handle_input(Input::Timeout(now));
        let mut model_events = Vec::new();
        loop {
            match bridge.poll_output() {
                Output::SendModel(cmd) if codec.encode(&cmd, &mut text) => {
                    sim.handle_client_text(now, &text);
                }
                Output::SendRtp { packet, .. } => {
                    played.extend_from_slice(&packet[rtp::HEADER_BYTES..]);
                }
                Output::Hangup(reason) => panic!("the call ended: {reason:?}"),
                Output::Timeout(_) => break,
                _ => {}
            }
        }
        bridge.handle_input(Input::ModelFlushed(now));
        while let Some(frame) = sim.poll_event() {
            let v: Value = serde_json::from_str(&frame).expect("json");
            if v["type"] == "session.output_audio.delta" {
                use base64::Engine as _;
                sent_by_server.extend(
                    base64::engine::general_purpose::STANDARD
                        .decode(v["delta"].as_str().expect("delta"))
                        .expect("b64"),
                );
            }
            codec.decode(&frame, &mut events).expect("readable");
            for held in codec.live().expect("live").take_held() {
                sim.handle_client_text(now, &held);
            }
        }
        model_events.extend(events.drain(..));
        for e in model_events {
            bridge.handle_input(Input::Model(now, e));
        }
    }
    let stats = bridge.stats().outbound;
    // The high bound plus the input lag (a punctual caller: the least clock grace), one 100 ms
    // chunk and one frame.
    let lag = crate::media::jitter::MIN_CLOCK_GRACE_MS;
    let limit = (DepthBounds::CONTINUOUS.high_ms + lag + 100 + 20) * 8;
    assert!(
        stats.max_depth_bytes <= limit,
        "queue reached {} ms (bound {} ms)",
        stats.max_depth_bytes / 8,
        limit / 8
    );
    // 0.1 % of 5 minutes is 300 ms each way: about 15 frames skipped, then 15 inserted.
    assert!(
        (10..=25).contains(&stats.drift_skipped_frames),
        "skipped {}",
        stats.drift_skipped_frames
    );
    assert!(
        (10..=30).contains(&stats.drift_inserted_frames),
        "inserted {}",
        stats.drift_inserted_frames
    );
    // Words: maximal runs of non-quiet 20 ms frames, identical and in order on both sides (the
    // last one may still be queued when the test stops).
    let words = |audio: &[u8]| -> Vec<Vec<u8>> {
        let mut runs: Vec<Vec<u8>> = Vec::new();
        let mut run: Vec<u8> = Vec::new();
        for f in audio.chunks_exact(FRAME_BYTES) {
            if is_quiet(Law::Mu, f) {
                if !run.is_empty() {
                    runs.push(std::mem::take(&mut run));
                }
            } else {
                run.extend_from_slice(f);
            }
        }
        runs
    };
    let server_words = words(&sent_by_server);
    let caller_words = words(&played);
    assert!(
        server_words.len() > 300,
        "the agent spoke {} words",
        server_words.len()
    );
    assert!(caller_words.len() + 2 >= server_words.len());
    for (i, (a, b)) in server_words.iter().zip(&caller_words).enumerate() {
        assert!(a == b, "word {i} differs: {} vs {} bytes", a.len(), b.len());
    }
}
