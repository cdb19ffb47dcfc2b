//! Shell tests: the real WebSocket server on 127.0.0.1:0 with a tokio-tungstenite client.

use std::path::PathBuf;

use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::*;
use crate::media::g711;
use crate::realtime::sim::voice;

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

const SCENARIO: &str = r#"
realtime_factor = 20.0
greeting = "Bright Smile Dental, hello."
[[turn]]
say = "We are open Monday to Friday from eight to five."
"#;
const REPLY: &str = "We are open Monday to Friday from eight to five.";

struct Sim {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
    record: PathBuf,
    record_server: PathBuf,
    _dir: tempfile::TempDir,
}

async fn start() -> Sim {
    start_with(SCENARIO).await
}

async fn start_with(text: &str) -> Sim {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = Scenario::parse(text, &dir.path().join("s.toml")).expect("scenario");
    let record = dir.path().join("client.jsonl");
    let record_server = dir.path().join("server.jsonl");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let opts = SimOptions {
        scenario: Some(scenario),
        record: Some(record.clone()),
        record_server: Some(record_server.clone()),
        echo: false,
    };
    let task = tokio::spawn(serve(listener, opts, shutdown.clone()));
    Sim {
        addr,
        shutdown,
        task,
        record,
        record_server,
        _dir: dir,
    }
}

async fn connect(
    addr: SocketAddr,
    path: &str,
    headers: &[(&'static str, &str)],
) -> Result<(Client, Option<String>), tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{addr}{path}").into_client_request()?;
    for (k, v) in headers {
        req.headers_mut()
            .insert(*k, HeaderValue::from_str(v).expect("header value"));
    }
    let (ws, resp) = tokio_tungstenite::connect_async(req).await?;
    let protocol = resp
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok((ws, protocol))
}

async fn next_event(ws: &mut Client) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("event within 10 s")
            .expect("socket open")
            .expect("read ok");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).expect("event is JSON");
        }
    }
}

/// Reads events up to and including the first of type `until`.
async fn events_until(ws: &mut Client, until: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let e = next_event(ws).await;
        let done = e["type"] == until;
        out.push(e);
        if done {
            return out;
        }
    }
}

async fn send(ws: &mut Client, sent: &mut Vec<String>, text: String) {
    ws.send(Message::text(text.clone())).await.expect("send");
    sent.push(text);
}

fn ulaw(samples: &[i16]) -> Vec<u8> {
    samples.iter().map(|&s| g711::linear_to_ulaw(s)).collect()
}

async fn whole_session(dialect: Dialect) {
    let sim = start().await;
    let headers: &[(&'static str, &str)] = match dialect {
        Dialect::Ga | Dialect::Live => &[("authorization", "Bearer sk-test-not-a-key")],
        Dialect::Beta => &[
            ("authorization", "Bearer sk-test-not-a-key"),
            ("openai-beta", "realtime=v1"),
        ],
    };
    let (mut ws, _) = connect(sim.addr, "/v1/realtime?model=gpt-realtime", headers)
        .await
        .expect("connect");
    let created = next_event(&mut ws).await;
    assert_eq!(created["type"], "session.created");
    assert_eq!(created["session"]["model"], "gpt-realtime");
    let mut sent = Vec::new();
    let update = match dialect {
        Dialect::Ga | Dialect::Live => {
            assert_eq!(created["session"]["type"], "realtime");
            json!({"type": "session.update", "event_id": "evt_upd", "session": {"type": "realtime",
                "audio": {"input": {"format": {"type": "audio/pcmu"},
                                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}},
                          "output": {"format": {"type": "audio/pcmu"}}}}})
        }
        Dialect::Beta => {
            assert_eq!(created["session"]["input_audio_format"], "pcm16");
            json!({"type": "session.update", "session": {"input_audio_format": "g711_ulaw",
                "output_audio_format": "g711_ulaw", "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}})
        }
    };
    send(&mut ws, &mut sent, update.to_string()).await;
    assert_eq!(next_event(&mut ws).await["type"], "session.updated");

    // 1 s of line silence, ~2.7 s of speech-like audio, 1.2 s of silence, in 20 ms appends.
    let mut audio = vec![0xFFu8; 8000];
    audio.extend(ulaw(
        &voice::synthesize("Hello, I would like to know your opening hours.", 65).samples,
    ));
    audio.extend(vec![0xFFu8; 9600]);
    for frame in audio.chunks(160) {
        let append = json!({"type": "input_audio_buffer.append", "audio": b64(frame)}).to_string();
        send(&mut ws, &mut sent, append).await;
    }
    let events = events_until(&mut ws, "response.done").await;
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    let (delta, transcript_done) = match dialect {
        Dialect::Ga | Dialect::Live => (
            "response.output_audio.delta",
            "response.output_audio_transcript.done",
        ),
        Dialect::Beta => ("response.audio.delta", "response.audio_transcript.done"),
    };
    for t in [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "response.created",
        delta,
        transcript_done,
    ] {
        assert!(types.contains(&t), "{dialect:?}: no {t} in {types:?}");
    }
    let started = events
        .iter()
        .find(|e| e["type"] == "input_audio_buffer.speech_started")
        .expect("started");
    assert_eq!(started["audio_start_ms"], 700);
    let audio_out: usize = events
        .iter()
        .filter(|e| e["type"] == delta)
        .map(|e| {
            base64::engine::general_purpose::STANDARD
                .decode(e["delta"].as_str().unwrap_or(""))
                .expect("base64")
                .len()
        })
        .sum();
    assert_eq!(audio_out, voice::synthesize(REPLY, 65).samples.len());
    let done = events.last().expect("response.done");
    assert_eq!(done["response"]["status"], "completed");
    let transcript = events
        .iter()
        .find(|e| e["type"] == transcript_done)
        .expect("transcript");
    assert_eq!(transcript["transcript"], REPLY);

    ws.close(None).await.expect("close");
    sim.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), sim.task)
        .await
        .expect("serve returns after shutdown")
        .expect("serve task")
        .expect("serve ok");

    let recorded = std::fs::read_to_string(&sim.record).expect("record file");
    let lines: Vec<&str> = recorded.lines().collect();
    assert_eq!(lines, sent, "client events recorded verbatim, one per line");
    let server_lines = std::fs::read_to_string(&sim.record_server).expect("server record");
    let server_events: Vec<Value> = server_lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("recorded server event is JSON"))
        .collect();
    assert_eq!(server_events[0]["type"], "session.created");
    assert!(server_events.len() >= events.len() + 2);
}

#[tokio::test]
async fn ga_session_over_websocket() {
    whole_session(Dialect::Ga).await;
}

#[tokio::test]
async fn beta_session_over_websocket() {
    whole_session(Dialect::Beta).await;
}

#[tokio::test]
async fn other_paths_get_404() {
    let sim = start().await;
    let Err(err) = connect(sim.addr, "/v1/other", &[]).await else {
        panic!("a WebSocket on /v1/other was accepted");
    };
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status(), StatusCode::NOT_FOUND)
        }
        other => panic!("expected HTTP 404, got {other:?}"),
    }
    sim.shutdown.cancel();
}

#[tokio::test]
async fn beta_subprotocol_and_shutdown_close() {
    let sim = start().await;
    let (mut ws, protocol) = connect(
        sim.addr,
        "/v1/realtime",
        &[(
            "sec-websocket-protocol",
            "realtime, openai-insecure-api-key.sk-x, openai-beta.realtime-v1",
        )],
    )
    .await
    .expect("connect");
    assert_eq!(protocol.as_deref(), Some("realtime"));
    let created = next_event(&mut ws).await;
    assert_eq!(
        created["session"]["input_audio_format"], "pcm16",
        "beta shape"
    );
    assert_eq!(
        created["session"]["model"],
        "gpt-4o-realtime-preview-2024-12-17"
    );
    sim.shutdown.cancel();
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("close within 10 s")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
    tokio::time::timeout(Duration::from_secs(10), sim.task)
        .await
        .expect("serve returns")
        .expect("serve task")
        .expect("serve ok");
}

#[test]
fn recorder_keeps_one_event_per_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("r.jsonl");
    let r = Recorder::open(&path).expect("open");
    r.line("{\"type\":\n\"a\"}");
    r.line("{\"type\":\"b\"}");
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(text, "{\"type\": \"a\"}\n{\"type\":\"b\"}\n");
}

#[test]
fn query_values_are_percent_decoded() {
    assert_eq!(percent_decode("gpt-realtime%2D2"), "gpt-realtime-2");
    assert_eq!(percent_decode("a+b%zz%"), "a b%zz%");
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

use base64::Engine as _;

/// `[[sessions]]`: the first session is refused with 503, the second's `session.created` is held
/// 300 ms, the third and later get 429 with `Retry-After`.
#[tokio::test]
async fn sessions_are_refused_or_started_late_as_the_scenario_says() {
    let sim = start_with(
        r#"
[[sessions]]
count = 1
refuse = 503
[[sessions]]
first = 2
count = 1
delay_created_ms = 300
[[sessions]]
first = 3
refuse = 429
"#,
    )
    .await;
    let status = |e: tokio_tungstenite::tungstenite::Error| match e {
        tokio_tungstenite::tungstenite::Error::Http(resp) => (
            resp.status().as_u16(),
            resp.headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.to_str().unwrap_or_default().to_owned()),
        ),
        other => panic!("expected an HTTP refusal, got {other}"),
    };
    let Err(first) = connect(sim.addr, "/v1/realtime", &[]).await else {
        panic!("the first session opened");
    };
    assert_eq!(status(first), (503, None));
    let t0 = std::time::Instant::now();
    let (mut ws, _) = connect(sim.addr, "/v1/realtime", &[])
        .await
        .expect("second opens");
    assert_eq!(next_event(&mut ws).await["type"], "session.created");
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "session.created was held"
    );
    let Err(third) = connect(sim.addr, "/v1/live/sessions", &[]).await else {
        panic!("the third session opened");
    };
    assert_eq!(status(third), (429, Some("1".to_owned())));
    sim.shutdown.cancel();
}

#[test]
fn bad_session_rules_are_reported() {
    let err = Scenario::parse(
        "[[sessions]]\nrefuse = 404\n[[sessions]]\nfirst = 0\n",
        std::path::Path::new("s.toml"),
    )
    .expect_err("invalid");
    let text = err.to_string();
    assert!(
        text.contains("sessions entry 1: refuse: 404 is not a refusal"),
        "{text}"
    );
    assert!(
        text.contains("sessions entry 2: says nothing to do"),
        "{text}"
    );
}
