//! End to end: what a booking call leaves for the staff. During a SIPp call the caller
//! interrupts the (long) greeting, then books through the simulator's scenario
//! (`tests/scenarios/history.toml`). Afterwards `call_turns` holds the conversation in order,
//! with the greeting cut at the words the caller heard; the call's row has the usage and a cost
//! computed from the price table; `frontdesk calls show/list` print them; and frontdesk's INFO
//! log holds neither the caller's number nor any transcript text.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const CALLER: &str = "5550001111";
const GREETING: &str = "Thank you for calling Bright Smile Dental. Let me tell you about our practice before we begin. We are open Monday to Friday from eight in the morning to five in the afternoon, and on the first Saturday of every month from nine to twelve.";

fn frontdesk(args: &[&str]) -> (bool, String) {
    let o = Command::new(FRONTDESK)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run frontdesk");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn a_booking_call_leaves_its_transcript_usage_and_cost_and_no_pii_in_the_log() {
    let dir = TestDir::new("history");
    let (_sim, mut serve) = start_booking(&dir, "history.toml", true);
    let media_port = free_port();
    let run = run_sipp(
        &dir,
        "uac_two_turns.xml",
        serve.sip,
        media_port,
        8_000,
        false,
    );
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
    let log = serve.proc.log_text();

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (call_id, turns, usage, cost, code) = rt.block_on(async {
        let store = frontdesk::store::Store::open(&serve.db).await.expect("db");
        let (call_id,): (String,) = sqlx::query_as("SELECT call_id FROM calls")
            .fetch_one(store.pool())
            .await
            .expect("one call");
        let d = store
            .call_detail(&call_id)
            .await
            .expect("read")
            .expect("the call");
        let (code,): (String,) = sqlx::query_as("SELECT confirmation_code FROM appointments")
            .fetch_one(store.pool())
            .await
            .expect("one appointment");
        (call_id, d.turns, d.usage, d.summary.cost_usd, code)
    });

    // The conversation, in order: the greeting cut where the caller interrupted it, the caller's
    // turns (the simulator's input transcriptions) and the agent's replies.
    let spoken: Vec<(&str, &str)> = turns
        .iter()
        .filter(|t| t.speaker != "system")
        .map(|t| (t.speaker.as_str(), t.text.as_str()))
        .collect();
    assert_eq!(spoken.len(), 5, "turns: {turns:#?}");
    let (who, greeting) = spoken[0];
    assert_eq!(who, "agent");
    assert!(
        turns[0].truncated,
        "the greeting was interrupted: {turns:#?}"
    );
    assert!(
        !greeting.is_empty() && greeting.len() < GREETING.len() && GREETING.starts_with(greeting),
        "the greeting must be cut at the words heard: {greeting:?}"
    );
    assert_eq!(spoken[1], ("caller", "I would like to book a cleaning."));
    assert_eq!(spoken[2].0, "agent");
    assert!(
        spoken[2].1.starts_with("The first free slot is "),
        "{spoken:?}"
    );
    assert_eq!(spoken[3], ("caller", "Yes, please."));
    assert_eq!(
        spoken[4],
        (
            "agent",
            format!("You are booked. Your confirmation code is {code}.").as_str()
        )
    );
    assert!(turns
        .iter()
        .skip(1)
        .filter(|t| t.speaker == "agent")
        .all(|t| !t.truncated));
    let starts: Vec<i64> = turns.iter().map(|t| t.start_ms).collect();
    assert!(
        starts.windows(2).all(|w| w[0] <= w[1]),
        "turns in time order: {starts:?}"
    );
    // The greeting ended (was cut) before the caller's turn ended.
    assert!(turns[0].end_ms <= turns[1].end_ms, "{turns:#?}");

    // Usage, and a cost computed from the default price table.
    let model = usage.model.clone().expect("model recorded");
    let n = |v: Option<i64>| u64::try_from(v.unwrap_or(0)).unwrap_or(0);
    let summed = frontdesk::pricing::CallUsage {
        responses: n(usage.responses),
        input_text_tokens: n(usage.input_text_tokens),
        input_audio_tokens: n(usage.input_audio_tokens),
        cached_text_tokens: n(usage.cached_text_tokens),
        cached_audio_tokens: n(usage.cached_audio_tokens),
        output_text_tokens: n(usage.output_text_tokens),
        output_audio_tokens: n(usage.output_audio_tokens),
        billed_seconds: 0.0,
    };
    assert!(summed.responses >= 3, "usage: {usage:?}");
    assert!(summed.input_tokens() > 0 && summed.output_audio_tokens > 0);
    let table = frontdesk::pricing::PriceTable::defaults();
    let (_, price) = table.lookup(&model).expect("the default model has a price");
    let expected = summed.cost_usd(price);
    let cost = cost.expect("cost recorded");
    assert!(cost > 0.0, "cost {cost}");
    assert!((cost - expected).abs() < 1e-9, "cost {cost} vs {expected}");

    // The staff commands print it.
    let db = serve.db.to_string_lossy().into_owned();
    let (ok, show) = frontdesk(&["calls", "show", &call_id, "--db", &db]);
    assert!(ok, "{show}");
    for text in [
        "I would like to book a cleaning.",
        "Yes, please.",
        &code,
        "[cut off by the caller]",
        "book_appointment",
        "check_availability",
        "remote-bye",
        CALLER,
    ] {
        assert!(show.contains(text), "`calls show` lacks {text:?}:\n{show}");
    }
    let (ok, list) = frontdesk(&["calls", "list", "--since", "1h", "--db", &db]);
    assert!(ok, "{list}");
    assert!(list.contains(&call_id) && list.contains(CALLER), "{list}");
    let (ok, json) = frontdesk(&["calls", "list", "--json", "--db", &db]);
    assert!(ok, "{json}");
    let rows: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(rows[0]["call_id"], call_id.as_str());
    assert_eq!(rows[0]["bookings"], 1);
    let (ok, json) = frontdesk(&["calls", "show", &call_id, "--json", "--db", &db]);
    assert!(ok, "{json}");
    let detail: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(detail["turns"][0]["truncated"], true);

    // The INFO (and higher) log lines hold no caller number and no transcript text.
    let plain = strip_ansi(&log);
    let info: Vec<&str> = plain
        .lines()
        .filter(|l| {
            [" INFO ", " WARN ", " ERROR "]
                .iter()
                .any(|lvl| l.contains(lvl))
        })
        .collect();
    assert!(
        info.iter().any(|l| l.contains("incoming call")),
        "the log has INFO lines:\n{log}"
    );
    for secret in [
        CALLER,
        "book a cleaning",
        "Yes, please",
        "Bright Smile Dental. Let me",
        "You are booked",
    ] {
        let leaks: Vec<&&str> = info.iter().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "INFO log shows {secret:?}: {leaks:#?}");
    }
}
