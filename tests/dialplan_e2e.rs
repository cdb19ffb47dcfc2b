//! End to end: dialplans route numbers to profiles, and `frontdesk serve` reloads them live.
//! SIPp calls `frontdesk serve`, which talks to `frontdesk sim`; the simulator's record of the
//! `session.update` events shows which profile each call got.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn profile_file(agent: &str, voice: &str, instructions: &str) -> String {
    format!(
        r#"
[[routes]]
name = "all"
to = "*"
agent = "{agent}"

[agents.{agent}]
voice = "{voice}"
greeting = ""
instructions = "{instructions}"
"#
    )
}

fn session_updates(sim: &Sim) -> Vec<Value> {
    read_jsonl(&sim.record)
        .into_iter()
        .filter(|e| e["type"] == "session.update")
        .collect()
}

fn wait_for_log(serve: &Serve, needle: &str, after: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let log = serve.proc.log_text();
        if log.matches(needle).count() > after {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no '{needle}' in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn short_call(dir: &TestDir, serve: &Serve, number: &str, hold_ms: u64) -> SippRun {
    let cmd = sipp_command_to(
        dir,
        "uac_hangup.xml",
        serve.sip,
        number,
        free_port(),
        hold_ms,
        false,
    );
    let out = { cmd }.output().expect("sipp");
    sipp_result(dir, "uac_hangup.xml", out)
}

/// Stops frontdesk (so every call record is complete) and reads the call rows, oldest first.
fn rows_after_stop(serve: &mut Serve) -> Vec<frontdesk::store::CallRow> {
    let status = serve.proc.terminate(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "frontdesk did not stop cleanly: {status:?}"
    );
    rows(&serve.db)
}

fn rows(db: &Path) -> Vec<frontdesk::store::CallRow> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = frontdesk::store::Store::open(db).await.expect("db");
        let mut rows = store.recent_calls(20).await.expect("rows");
        rows.reverse();
        rows
    })
}

#[test]
fn two_numbers_reach_two_profiles() {
    let dir = TestDir::new("two-profiles");
    let plans = dir.join("dialplans");
    std::fs::create_dir_all(&plans).expect("mkdir");
    std::fs::write(
        plans.join("lines.toml"),
        r#"
[[routes]]
name = "dental"
to = "1001"
agent = "dental"

[[routes]]
name = "spa"
to = "2002"
agent = "spa"

[agents.dental]
voice = "alloy"
greeting = ""
instructions = "You are the dental clinic receptionist."

[agents.spa]
voice = "coral"
greeting = ""
instructions = "You are the day spa receptionist."
"#,
    )
    .expect("write");
    let sim = Sim::start(&dir, None);
    let mut serve = Serve::start(&dir, &plans, &["--realtime-url", &sim.url()]);
    for number in ["1001", "2002"] {
        let run = short_call(&dir, &serve, number, 300);
        assert!(
            run.success,
            "call to {number} failed:\n{}\n{}",
            run.output,
            serve.proc.log_text()
        );
    }
    // A number with no route is refused with 404.
    let run = short_call(&dir, &serve, "3003", 0);
    assert!(!run.success, "a call to an unrouted number must fail");
    assert!(run.output.contains("404"), "{}", run.output);

    let updates = session_updates(&sim);
    assert_eq!(updates.len(), 2, "{updates:?}");
    let (a, b) = (&updates[0]["session"], &updates[1]["session"]);
    assert_eq!(a["audio"]["output"]["voice"], "alloy");
    assert!(a["instructions"]
        .as_str()
        .unwrap_or_default()
        .contains("dental clinic"));
    assert_eq!(b["audio"]["output"]["voice"], "coral");
    assert!(b["instructions"]
        .as_str()
        .unwrap_or_default()
        .contains("day spa"));
    let rows = rows_after_stop(&mut serve);
    let profiles: Vec<_> = rows
        .iter()
        .map(|r| r.profile.clone().unwrap_or_default())
        .collect();
    assert_eq!(profiles[..2], ["dental".to_owned(), "spa".to_owned()]);
    assert_eq!(rows[2].sip_status, Some(404));
}

#[test]
fn reload_during_a_call_keeps_the_call_and_serves_the_next_with_the_new_plan() {
    let dir = TestDir::new("reload");
    let plans = dir.join("dialplans");
    std::fs::create_dir_all(&plans).expect("mkdir");
    let file = plans.join("main.toml");
    std::fs::write(&file, profile_file("first", "alloy", "First version.")).expect("write");
    let sim = Sim::start(&dir, None);
    let mut serve = Serve::start(&dir, &plans, &["--realtime-url", &sim.url()]);

    // Call 1 stays on the line while the dialplan changes.
    let call1 = sipp_command_to(
        &dir,
        "uac_hangup.xml",
        serve.sip,
        "500",
        free_port(),
        5000,
        false,
    )
    .spawn()
    .expect("sipp");
    wait_for_log(&serve, "call answered", 0, Duration::from_secs(15));
    std::fs::write(&file, profile_file("second", "coral", "Second version.")).expect("edit");
    wait_for_log(&serve, "dialplan reloaded", 0, Duration::from_secs(15));

    // Call 2 uses the new plan while call 1 is still up.
    let run2 = short_call(&dir, &serve, "500", 300);
    assert!(run2.success, "call 2 failed:\n{}", run2.output);
    let run1 = sipp_result(
        &dir,
        "uac_hangup.xml",
        call1.wait_with_output().expect("sipp"),
    );
    assert!(
        run1.success,
        "call 1 was disturbed by the reload:\n{}",
        run1.output
    );

    // A broken edit keeps the second version in service.
    std::fs::write(&file, "[[routes]]\nto = \"*\"\nagnet = \"second\"\n").expect("break");
    wait_for_log(
        &serve,
        "still serving the previous version",
        0,
        Duration::from_secs(15),
    );
    let run3 = short_call(&dir, &serve, "500", 300);
    assert!(
        run3.success,
        "call 3 failed after a bad edit:\n{}",
        run3.output
    );

    let voices: Vec<_> = session_updates(&sim)
        .iter()
        .map(|u| {
            u["session"]["audio"]["output"]["voice"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(voices, ["alloy", "coral", "coral"]);
    let rows = rows_after_stop(&mut serve);
    let profiles: Vec<_> = rows
        .iter()
        .map(|r| r.profile.clone().unwrap_or_default())
        .collect();
    assert_eq!(profiles, ["first", "second", "second"]);
    assert!(
        rows.iter()
            .all(|r| r.end_reason.as_deref() == Some("remote-bye")),
        "{rows:?}"
    );
    let log = serve.proc.log_text();
    assert!(
        log.contains("agnet"),
        "the bad edit's error must be logged:\n{log}"
    );
}

#[test]
fn transfer_reject_and_message_actions_reach_the_caller() {
    let dir = TestDir::new("actions");
    let plans = dir.join("dialplans");
    std::fs::create_dir_all(&plans).expect("mkdir");
    std::fs::write(
        plans.join("actions.toml"),
        r#"
[[routes]]
name = "emergency"
to = "911"
transfer = "sip:oncall@pbx.example.com"

[[routes]]
name = "busy"
to = "486"
reject = 486

[[routes]]
name = "closed"
to = "*"
[routes.message]
text = "We are closed today. Please call again tomorrow."
"#,
    )
    .expect("write");
    let sim = Sim::start(&dir, None);
    let mut serve = Serve::start(&dir, &plans, &["--realtime-url", &sim.url()]);
    for (number, scenario) in [
        ("911", "invite_expect_302.xml"),
        ("486", "invite_expect_486.xml"),
    ] {
        let cmd = sipp_command_to(&dir, scenario, serve.sip, number, free_port(), 0, false);
        let run = sipp_result(&dir, scenario, { cmd }.output().expect("sipp"));
        assert!(
            run.success,
            "{scenario} to {number}:\n{}\n{}",
            run.output,
            serve.proc.log_text()
        );
    }
    // The message is played, then frontdesk hangs up.
    let cmd = sipp_command_to(
        &dir,
        "uac_wait_for_bye.xml",
        serve.sip,
        "100",
        free_port(),
        0,
        false,
    );
    let run = sipp_result(
        &dir,
        "uac_wait_for_bye.xml",
        { cmd }.output().expect("sipp"),
    );
    assert!(
        run.success,
        "no BYE after the message:\n{}\n{}",
        run.output,
        serve.proc.log_text()
    );
    let updates = session_updates(&sim);
    assert_eq!(updates.len(), 1, "only the message opened a session");
    assert!(updates[0]["session"]["instructions"]
        .as_str()
        .unwrap_or_default()
        .contains("We are closed today"));
    let rows = rows_after_stop(&mut serve);
    let reasons: Vec<_> = rows
        .iter()
        .map(|r| (r.sip_status, r.end_reason.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        reasons,
        [
            (Some(302), "redirected".to_owned()),
            (Some(486), "dialplan-reject".to_owned()),
            (Some(200), "message-played".to_owned())
        ]
    );
}
