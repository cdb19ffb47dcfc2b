//! End to end: during a SIPp call, the simulator's scenario makes the model call
//! `check_availability` and then `book_appointment` (for the first free slot the first call
//! returned). frontdesk runs both tools against the SQLite calendar, sends the results back, and
//! the simulator's final spoken reply reaches the caller.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

#[test]
fn the_model_checks_availability_and_books_during_a_call() {
    let dir = TestDir::new("booking");
    let (sim, mut serve) = start_booking(&dir, "booking.toml", false);
    let media_port = free_port();
    let capture = Capture::start(&dir, media_port);
    let run = run_sipp(
        &dir,
        "uac_two_turns.xml",
        serve.sip,
        media_port,
        8_000,
        false,
    );
    let heard: Vec<u8> = capture
        .stop(media_port)
        .iter()
        .flat_map(|p| p.payload.clone())
        .collect();
    assert!(
        run.success,
        "call failed:\n{}\n{}",
        run.output,
        serve.proc.log_text()
    );
    let status = serve.proc.terminate(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "frontdesk did not stop cleanly"
    );

    // The session was offered the calendar tools.
    let client = read_jsonl(&sim.record);
    let update = client
        .iter()
        .find(|e| e["type"] == "session.update")
        .expect("session.update");
    let tools: Vec<&str> = update["session"]["tools"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    for t in ["check_availability", "book_appointment"] {
        assert!(tools.contains(&t), "tool {t} not offered: {tools:?}");
    }

    // Both tool results reached the simulator, each followed by a response.create.
    let outputs = tool_outputs(&client);
    assert_eq!(
        outputs.len(),
        2,
        "expected two tool outputs, got {outputs:?}"
    );
    assert!(
        outputs[0]["slots"][0]["start"].is_string(),
        "availability output: {}",
        outputs[0]
    );
    let code = outputs[1]["confirmation_code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(code.len(), 6, "booking output: {}", outputs[1]);

    // No response collided with another one.
    let server = read_jsonl(&sim.record_server);
    assert!(
        !server
            .iter()
            .any(|e| e["error"]["code"] == "conversation_already_has_active_response"),
        "a response.create collided with an active response"
    );

    // The appointment row exists with the caller's number from the SIP From header.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (name, phone, call_id, status, code_db, tool_rows) = rt.block_on(async {
        let store = frontdesk::store::Store::open(&serve.db).await.expect("db");
        let row: (String, String, Option<String>, String, String) = sqlx::query_as(
            "SELECT customer_name, phone, call_id, status, confirmation_code FROM appointments",
        )
        .fetch_one(store.pool())
        .await
        .expect("one appointment");
        let tools: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT name, error FROM tool_calls ORDER BY id")
                .fetch_all(store.pool())
                .await
                .expect("tool calls");
        (row.0, row.1, row.2, row.3, row.4, tools)
    });
    assert_eq!(name, "Test Caller");
    assert_eq!(
        phone, "+15550001111",
        "the phone defaults to the SIP From number"
    );
    assert_eq!(status, "booked");
    assert_eq!(code_db, code);
    assert!(call_id.is_some_and(|c| !c.is_empty()));
    let names: Vec<&str> = tool_rows.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["check_availability", "book_appointment"]);
    assert!(tool_rows.iter().all(|(_, e)| e.is_none()), "{tool_rows:?}");

    // The simulator's final spoken reply (the confirmation) came back to the caller.
    let mut items: Vec<(String, Vec<u8>)> = Vec::new();
    for ev in &server {
        if ev["type"] == "response.output_audio.delta" {
            let id = ev["item_id"].as_str().unwrap_or_default().to_owned();
            let audio = b64(ev["delta"].as_str().unwrap_or_default());
            match items.iter_mut().find(|(i, _)| *i == id) {
                Some((_, a)) => a.extend_from_slice(&audio),
                None => items.push((id, audio)),
            }
        }
    }
    let transcripts: Vec<String> = server
        .iter()
        .filter(|e| e["type"] == "response.output_audio_transcript.done")
        .filter_map(|e| e["transcript"].as_str().map(str::to_owned))
        .collect();
    assert!(
        transcripts.last().is_some_and(|t| t.contains(&code)),
        "the last reply should read the confirmation code {code}: {transcripts:?}"
    );
    let (_, last_audio) = items.last().expect("the simulator spoke");
    assert!(
        find(&heard, last_audio).is_some(),
        "the final reply ({} bytes) did not reach the caller ({} bytes heard)",
        last_audio.len(),
        heard.len()
    );
}

/// Issue 13: the PostgreSQL server stops in the middle of a call. The call stays up; the model's
/// booking gets the `calendar_unreachable` answer (which it can say) instead of a hang; once the
/// server is back, the next booking in the same call works, and the call's row is written.
#[test]
fn the_database_stops_mid_call_and_comes_back() {
    if frontdesk::store::testing::pg_server().is_none() {
        return;
    }
    // A server of its own: this test stops it.
    let pg = frontdesk::store::testing::PgServer::start().expect("PostgreSQL");
    let target = pg.create_database().expect("createdb").to_string();
    let dir = TestDir::new("booking-db-down");
    let (ul, _) = speech(
        &dir,
        "turn1",
        "Hello, I would like to book a whitening, please.",
    );
    let (ul2, _) = speech(&dir, "turn2", "Could you try again, please?");
    std::fs::write(dir.join("audio.ul"), &ul).expect("write");
    std::fs::write(dir.join("audio2.ul"), &ul2).expect("write");
    let day = next_tuesday();
    let book = format!(
        r#"{{ name = "book_appointment", arguments = {{ service = "whitening", start = "{day}T09:00", customer_name = "Test Caller", phone = "+49 30 5550100" }} }}"#
    );
    let scenario = dir.join("db-down.toml");
    std::fs::write(
        &scenario,
        format!(
            "greeting = \"Thank you for calling Bright Smile Dental.\"\n\
             [[turn]]\nheard = \"book\"\ncall = {book}\nsay = \"One moment.\"\n\
             [[turn]]\nheard = \"again\"\ncall = {book}\nsay = \"Done.\"\n\
             [fallback]\nsay = \"Goodbye.\"\n"
        ),
    )
    .expect("write scenario");
    let sim = Sim::start(&dir, Some(&scenario));
    let plans = booking_dialplan(&dir, false);
    let calendar = Path::new(ROOT).join("deploy/calendar.example.toml");
    let calendar = calendar.to_string_lossy().into_owned();
    let url = sim.url();
    let mut serve = Serve::start(
        &dir,
        &plans,
        &[
            "--realtime-url",
            &url,
            "--calendar",
            &calendar,
            "--db",
            &target,
        ],
    );
    let log_path = dir.join("frontdesk.log");
    let wait_log = |needle: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        while std::time::Instant::now() < deadline {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if log.contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };
    let media_port = free_port();
    let (run, stopped, restarted) = std::thread::scope(|s| {
        let db = s.spawn(|| {
            // Stop the server once the call is up, start it again once the tool has failed.
            let answered = wait_log("call answered");
            let stopped = answered && pg.stop().is_ok();
            let failed = stopped && wait_log("calendar database unreachable");
            let restarted = failed && pg.start_again().is_ok();
            (stopped, restarted)
        });
        let run = run_sipp(
            &dir,
            "uac_two_turns.xml",
            serve.sip,
            media_port,
            8_000,
            false,
        );
        let (stopped, restarted) = db.join().expect("db thread");
        (run, stopped, restarted)
    });
    let log = serve.proc.log_text();
    assert!(
        stopped && restarted,
        "stopped={stopped} restarted={restarted}\n{log}"
    );
    assert!(run.success, "the call must stay up:\n{}\n{log}", run.output);
    let status = serve.proc.terminate(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "frontdesk did not stop cleanly"
    );

    let outputs = tool_outputs(&read_jsonl(&sim.record));
    assert_eq!(outputs.len(), 2, "{outputs:?}");
    assert_eq!(
        outputs[0]["error"]["code"], "calendar_unreachable",
        "{}",
        outputs[0]
    );
    assert_eq!(outputs[1]["ok"], true, "after the restart: {}", outputs[1]);

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (rows, booked) = rt.block_on(async {
        let store = frontdesk::store::Store::open(
            frontdesk::store::DbTarget::parse(&target, None).expect("url"),
        )
        .await
        .expect("open");
        let rows = store.recent_calls(5).await.expect("calls");
        let booked: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM appointments WHERE status = 'booked'")
                .fetch_one(store.pool())
                .await
                .expect("count");
        (rows, booked)
    });
    assert_eq!(booked, 1);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0].end_reason.as_deref(),
        Some("remote-bye"),
        "{:?}",
        rows[0]
    );
    assert_eq!(rows[0].sip_status, Some(200));
}
