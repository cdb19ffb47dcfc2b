//! The `frontdesk` command as admins and staff use it: help, dialplan tools, database, calendar and
//! appointment commands, and clear errors for bad input.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{TestDir, FRONTDESK, ROOT};

fn frontdesk(args: &[&str]) -> Output {
    Command::new(FRONTDESK)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run frontdesk")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn help_explains_every_command() {
    let o = frontdesk(&["--help"]);
    assert!(o.status.success());
    for word in [
        "serve",
        "sim",
        "dialplan",
        "calendar",
        "appointments",
        "OPENAI_API_KEY",
    ] {
        assert!(
            text(&o).contains(word),
            "--help does not mention {word}:\n{}",
            text(&o)
        );
    }
    let o = frontdesk(&["serve", "--help"]);
    for flag in [
        "--sip-listen",
        "--media-ip",
        "--rtp-ports",
        "--db",
        "--dialplans",
        "--realtime-url",
        "--realtime-protocol",
    ] {
        assert!(text(&o).contains(flag), "serve --help lacks {flag}");
    }
}

#[test]
fn dialplan_check_and_test() {
    let plans = Path::new(ROOT).join("dialplans");
    let plans = plans.to_str().expect("utf-8 path");
    let o = frontdesk(&["dialplan", "check", plans]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("emergency"), "{}", text(&o));

    let o = frontdesk(&["dialplan", "test", "--dir", plans, "--to", "+49301234569"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("sip:oncall@pbx.example.com"),
        "{}",
        text(&o)
    );

    let dir = TestDir::new("cli-dialplan");
    std::fs::write(
        dir.join("bad.toml"),
        "[[routes]]\nto = \"*\"\nagnet = \"x\"\n",
    )
    .expect("write");
    let o = frontdesk(&["dialplan", "check", dir.path().to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("bad.toml:3:1"), "{}", text(&o));
    assert!(
        text(&o).contains("agent"),
        "a hint names the right key: {}",
        text(&o)
    );
}

#[test]
fn calendar_import_list_and_export() {
    let dir = TestDir::new("cli-calendar");
    let db = dir.join("fd.db");
    staff_commands(db.to_str().expect("path"), &dir);
}

/// The same staff commands with `--db postgres://…` (issue 13), and the password stays out of
/// what is printed.
#[test]
fn calendar_import_list_and_export_on_postgres() {
    let Some(pg) = frontdesk::store::testing::pg_server() else {
        return;
    };
    let dir = TestDir::new("cli-calendar-pg");
    let target = pg.create_database().expect("createdb");
    staff_commands(&target.to_string(), &dir);
    // A password in the URL is used (the test server trusts anyone) but never printed.
    let with_password =
        target
            .to_string()
            .replacen("postgres://postgres@", "postgres://postgres:hunter2@", 1);
    let o = frontdesk(&["db", "migrate", "--db", &with_password]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("is up to date"), "{}", text(&o));
    assert!(!text(&o).contains("hunter2"), "{}", text(&o));
}

#[test]
fn unusable_database_urls_fail_with_a_clear_error() {
    let dir = TestDir::new("cli-db-errors");
    let o = frontdesk(&["db", "migrate", "--db", "mysql://h/db"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("unsupported database URL scheme"),
        "{}",
        text(&o)
    );
    let missing = dir.join("no-such-password");
    let o = frontdesk(&[
        "db",
        "migrate",
        "--db",
        "postgres://fd@127.0.0.1:1/frontdesk",
        "--db-password-file",
        missing.to_str().expect("path"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("password file"), "{}", text(&o));
    // Nothing listens on port 1: a clear error naming the database, not a hang.
    let o = frontdesk(&[
        "db",
        "migrate",
        "--db",
        "postgres://fd:secret@127.0.0.1:1/frontdesk",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("postgres://fd@127.0.0.1:1/frontdesk"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("secret"), "{}", text(&o));
}

fn staff_commands(db: &str, dir: &TestDir) {
    let o = frontdesk(&["db", "migrate", "--db", db]);
    assert!(o.status.success(), "{}", text(&o));
    let cal = Path::new(ROOT).join("deploy/calendar.example.toml");
    let o = frontdesk(&[
        "calendar",
        "import",
        cal.to_str().expect("path"),
        "--db",
        db,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("bright-smile"), "{}", text(&o));
    let o = frontdesk(&["appointments", "list", "--db", db]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Bright Smile Dental"), "{}", text(&o));
    let ics = dir.join("a.ics");
    let o = frontdesk(&[
        "appointments",
        "export",
        "--ics",
        ics.to_str().expect("path"),
        "--db",
        db,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let body = std::fs::read_to_string(&ics).expect("ics written");
    assert!(body.starts_with("BEGIN:VCALENDAR"), "{body}");
}

#[test]
fn bad_config_and_calendar_files_fail_with_a_clear_error() {
    let dir = TestDir::new("cli-errors");
    std::fs::write(dir.join("bad.toml"), "[sip]\nlsiten = \"0.0.0.0:5060\"\n").expect("write");
    let o = frontdesk(&[
        "serve",
        "--config",
        dir.join("bad.toml").to_str().expect("path"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("lsiten"), "{}", text(&o));
    std::fs::write(dir.join("cal.toml"), "[business]\nname = \"X\"\nfoo = 1\n").expect("write");
    let o = frontdesk(&[
        "calendar",
        "import",
        dir.join("cal.toml").to_str().expect("path"),
        "--db",
        dir.join("x.db").to_str().expect("path"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("foo"), "{}", text(&o));
    let o = frontdesk(&[
        "serve",
        "--realtime-protocol",
        "gamma",
        "--dialplans",
        "/nonexistent",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("gamma"), "{}", text(&o));
}

/// `frontdesk calls purge` deletes what is older than the retention and keeps the rest;
/// `calls show` of an unknown Call-ID and a bad `--since` are clear errors.
#[test]
fn calls_purge_applies_the_retention_and_bad_input_is_explained() {
    use frontdesk::bridge::transcript::{Speaker, Turn};
    use frontdesk::store::{CallEnd, NewCall, Store};
    let dir = TestDir::new("calls-purge");
    let db = dir.join("calls.db");
    let now = chrono::Utc::now();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let target = frontdesk::store::DbTarget::from(db.as_path());
        let store = Store::open(&target).await.expect("db");
        for (call_id, days) in [("old@x", 400), ("middle@x", 40), ("new@x", 1)] {
            let at = now - chrono::Duration::days(days);
            let id = store
                .call_started(&NewCall {
                    call_id,
                    from_uri: "sip:+4930111@x",
                    to_uri: "sip:frontdesk@x",
                    caller: Some("+4930111"),
                    called: Some("frontdesk"),
                    transport: "udp",
                    started_at: at,
                })
                .await
                .expect("insert");
            let end = CallEnd {
                end_reason: "remote-bye".into(),
                turns: vec![Turn {
                    speaker: Speaker::Caller,
                    text: format!("hello from {call_id}"),
                    start_ms: 0,
                    end_ms: 900,
                    truncated: false,
                }],
                ..CallEnd::default()
            };
            store.call_ended(id, &end, at).await.expect("end");
        }
        store.close().await;
    });
    let db = db.to_string_lossy().into_owned();
    // The defaults: calls 365 days, transcripts 30 days.
    let o = frontdesk(&["calls", "purge", "--db", &db]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("deleted 1 call(s), 2 transcript turn(s)"),
        "{}",
        text(&o)
    );
    let list = text(&frontdesk(&["calls", "list", "--db", &db]));
    assert!(!list.contains("old@x") && list.contains("middle@x") && list.contains("new@x"));
    let middle = text(&frontdesk(&["calls", "show", "middle@x", "--db", &db]));
    assert!(
        !middle.contains("hello from middle@x"),
        "transcript past 30 days:\n{middle}"
    );
    let new = text(&frontdesk(&["calls", "show", "new@x", "--db", &db]));
    assert!(new.contains("hello from new@x"), "{new}");
    // Flags override the retention.
    let o = frontdesk(&[
        "calls",
        "purge",
        "--keep-calls-days",
        "7",
        "--json",
        "--db",
        &db,
    ]);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(report["calls"], 1);
    // Clear errors.
    let o = frontdesk(&["calls", "show", "nope@x", "--db", &db]);
    assert!(!o.status.success());
    assert!(text(&o).contains("no call with Call-ID"), "{}", text(&o));
    let o = frontdesk(&["calls", "list", "--since", "yesterday", "--db", &db]);
    assert!(!o.status.success());
    assert!(text(&o).contains("7d"), "{}", text(&o));
    let summary = text(&frontdesk(&[
        "calls", "summary", "--days", "3", "--db", &db,
    ]));
    assert!(summary.contains("total"), "{summary}");
}
