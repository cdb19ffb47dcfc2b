//! Store and tool tests, each run twice: on a fresh SQLite file and on a fresh database of the
//! throwaway PostgreSQL server (`crate::store::testing`; skipped when PostgreSQL is not
//! installed, unless `FRONTDESK_REQUIRE_PG` is set). The example calendar (`deploy/calendar.example.toml`, Bright Smile Dental, Europe/Berlin) and a fixed
//! clock.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{json, Value};

use super::*;
use crate::calendar::{AppointmentStatus, BusinessCalendar, FixedClock};
use crate::calendar_file;
use crate::store::calendar as db;
use crate::store::{Backend, PoolSettings, Store};

/// The caller's number as SIP delivers it.
const CALLER: &str = "+4915112345678";

fn utc(s: &str) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
        .unwrap()
        .and_utc()
}

fn example() -> BusinessCalendar {
    calendar_file::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/calendar.example.toml"))
        .unwrap()
}

/// Monday 2026-03-02 09:00 in Berlin (CET).
const MONDAY_9: &str = "2026-03-02T08:00";

async fn setup_with(pool: &Store, cal: &BusinessCalendar, now: &str) -> ToolContext {
    db::import(pool, cal, utc(now)).await.unwrap();
    ToolContext {
        store: pool.clone(),
        call_id: "call-1@test".into(),
        caller_number: Some(CALLER.into()),
        business: "bright-smile".into(),
        clock: Arc::new(FixedClock::new(utc(now))),
        timeout: DEFAULT_TIMEOUT,
    }
}

async fn setup(pool: &Store, now: &str) -> ToolContext {
    setup_with(pool, &example(), now).await
}

fn other_call(ctx: &ToolContext, call_id: &str, caller: Option<&str>) -> ToolContext {
    ToolContext {
        call_id: call_id.into(),
        caller_number: caller.map(Into::into),
        ..ctx.clone()
    }
}

async fn run(ctx: &ToolContext, name: &str, args: Value) -> Value {
    run_raw(ctx, name, &args.to_string()).await
}

async fn run_raw(ctx: &ToolContext, name: &str, args: &str) -> Value {
    let out = call(ctx, name, args).await;
    let v: Value = serde_json::from_str(&out.output).unwrap();
    assert!(v.is_object(), "{v}");
    assert_eq!(v["ok"] == json!(false), out.error.is_some(), "{v}");
    v
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn starts(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|s| s["start"].as_str().unwrap_or("").to_owned())
        .collect()
}

async fn booked_rows(pool: &Store) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM appointments WHERE status = 'booked'")
        .fetch_one(pool.pool())
        .await
        .unwrap()
}

/// A fresh, migrated store of `backend` (`None`: PostgreSQL is not installed), with the
/// SQLite file's directory kept alive alongside.
async fn fresh_store(
    backend: Backend,
    settings: Option<PoolSettings>,
) -> Option<(Store, Option<tempfile::TempDir>)> {
    let (target, dir) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            (dir.path().join("t.db").into(), Some(dir))
        }
        Backend::Postgres => (
            crate::store::testing::pg_server()?
                .create_database()
                .unwrap(),
            None,
        ),
    };
    let settings = settings.unwrap_or_else(|| PoolSettings::for_backend(backend));
    Some((Store::open_with(&target, &settings).await.unwrap(), dir))
}

/// `store_test!(name)` next to `async fn name(pool: Store)`: the tests `name::sqlite` and
/// `name::postgres`, each on a fresh database.
macro_rules! store_test {
    ($name:ident) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let (store, _dir) = fresh_store(Backend::Sqlite, None).await.unwrap();
                super::$name(store.clone()).await;
                store.close().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some((store, _)) = fresh_store(Backend::Postgres, None).await else {
                    return;
                };
                super::$name(store.clone()).await;
                store.close().await;
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Calendar file import
// ---------------------------------------------------------------------------------------------

store_test!(example_calendar_imports_and_loads_back);
async fn example_calendar_imports_and_loads_back(pool: Store) {
    let mut cal = example();
    let summary = db::import(&pool, &cal, utc(MONDAY_9)).await.unwrap();
    assert!(summary.created);
    assert_eq!((summary.providers, summary.services), (3, 5));
    assert_eq!(summary.closures, 5);
    let mut loaded = db::load_calendar(&pool, "bright-smile").await.unwrap();
    cal.closures.sort_by_key(|c| c.first_day);
    loaded.closures.sort_by_key(|c| c.first_day);
    assert_eq!(loaded, cal);

    // Re-import without a provider: it is deactivated, its services lose it.
    let mut smaller = example();
    smaller.providers.retain(|p| p.key != "schmidt");
    smaller.services.retain(|s| s.key != "cleaning");
    let summary = db::import(&pool, &smaller, utc(MONDAY_9)).await.unwrap();
    assert!(!summary.created);
    assert_eq!(summary.deactivated_providers, vec!["schmidt".to_string()]);
    assert_eq!(summary.deactivated_services, vec!["cleaning".to_string()]);
    let loaded = db::load_calendar(&pool, "bright-smile").await.unwrap();
    assert_eq!(loaded.providers.len(), 2);
    assert!(loaded.service_by_key("cleaning").is_none());
    assert_eq!(
        db::business_keys(&pool).await.unwrap(),
        vec!["bright-smile".to_string()]
    );
    assert!(matches!(
        db::load_calendar(&pool, "nope").await,
        Err(db::Error::UnknownBusiness(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Tools: information and availability
// ---------------------------------------------------------------------------------------------

store_test!(business_info_lists_hours_services_and_prices);
async fn business_info_lists_hours_services_and_prices(pool: Store) {
    let ctx = setup(&pool, MONDAY_9).await;
    let v = run_raw(&ctx, "get_business_info", "").await;
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(v["name"], json!("Bright Smile Dental"));
    assert_eq!(v["timezone"], json!("Europe/Berlin"));
    assert_eq!(v["today"], json!("2026-03-02 (Monday)"));
    assert_eq!(v["now"], json!("2026-03-02T09:00"));
    assert_eq!(
        v["opening_hours"][0],
        json!({"day": "Monday", "hours": ["08:00-12:30", "13:30-18:00"]})
    );
    assert_eq!(
        v["opening_hours"][6],
        json!({"day": "Sunday", "hours": "closed"})
    );
    let checkup = &v["services"][0];
    assert_eq!(checkup["price"], json!("45.00 EUR"));
    assert_eq!(
        checkup["providers"],
        json!(["Dr. Anna Weber", "Dr. Jonas Novak"])
    );
    assert_eq!(v["booking"]["min_notice_minutes"], json!(120));
    // Empty business = the only one imported.
    let anon = ToolContext {
        business: String::new(),
        ..ctx.clone()
    };
    assert_eq!(
        run(&anon, "get_business_info", json!({})).await["ok"],
        json!(true)
    );
    let wrong = ToolContext {
        business: "elsewhere".into(),
        ..ctx
    };
    assert_eq!(
        code(&run(&wrong, "get_business_info", json!({})).await),
        "calendar_not_configured"
    );
}

store_test!(availability_follows_hours_lead_time_and_preferences);
async fn availability_follows_hours_lead_time_and_preferences(pool: Store) {
    let ctx = setup(&pool, MONDAY_9).await;
    // 09:00 now + 120 min lead: the first slot today is 11:00.
    let v = run(
        &ctx,
        "check_availability",
        json!({"service": "checkup", "date": "2026-03-02"}),
    )
    .await;
    assert_eq!(
        starts(&v, "slots"),
        vec!["2026-03-02T11:00", "2026-03-02T11:15", "2026-03-02T11:30"],
        "{v}"
    );
    assert_eq!(
        v["slots"][0]["providers"],
        json!(["Dr. Anna Weber", "Dr. Jonas Novak"])
    );
    assert_eq!(v["slots"][0]["end"], json!("2026-03-02T11:30"));
    assert_eq!(v["slots"][0]["weekday"], json!("Monday"));
    // Evening with Novak (Mondays only until 12:30): nothing that day; next_available is his
    // Tuesday afternoon shift.
    let v = run(
        &ctx,
        "check_availability",
        json!({"service": "checkup", "date": "2026-03-02", "time_of_day": "evening", "provider": "Novak"}),
    )
    .await;
    assert_eq!(v["slots"], json!([]), "{v}");
    assert_eq!(
        starts(&v, "next_available"),
        vec!["2026-03-03T17:00", "2026-03-03T17:15", "2026-03-03T17:30"],
        "{v}"
    );
    // Afternoon includes noon: Novak's last Monday-morning slot qualifies.
    let v = run(
        &ctx,
        "check_availability",
        json!({"service": "checkup", "date": "2026-03-02", "time_of_day": "afternoon", "provider": "Novak"}),
    )
    .await;
    assert_eq!(starts(&v, "slots"), vec!["2026-03-02T12:00"], "{v}");
    // Friday closes at 14:00: a 30-minute check-up starts 13:30 at the latest.
    let v = run(
        &ctx,
        "check_availability",
        json!({"service": "checkup", "date": "2026-03-06", "time_of_day": "afternoon", "max_results": 10}),
    )
    .await;
    assert_eq!(
        starts(&v, "slots"),
        vec![
            "2026-03-06T12:00",
            "2026-03-06T12:15",
            "2026-03-06T12:30",
            "2026-03-06T12:45",
            "2026-03-06T13:00",
            "2026-03-06T13:15",
            "2026-03-06T13:30"
        ]
    );
    // Weekend: closed; the range default is a week from today.
    let v = run(
        &ctx,
        "check_availability",
        json!({"service": "whitening", "date_from": "2026-03-07"}),
    )
    .await;
    assert_eq!(
        v["searched"],
        json!({"from": "2026-03-07", "to": "2026-03-13", "time_of_day": "any"})
    );
    assert_eq!(starts(&v, "slots")[0], "2026-03-09T08:00");
    // Past dates and dates beyond the horizon.
    assert_eq!(
        code(
            &run(
                &ctx,
                "check_availability",
                json!({"service": "checkup", "date": "2026-02-27"})
            )
            .await
        ),
        "in_past"
    );
    assert_eq!(
        code(
            &run(
                &ctx,
                "check_availability",
                json!({"service": "checkup", "date": "2026-07-01"})
            )
            .await
        ),
        "beyond_horizon"
    );
    // Provider who does not offer the service.
    let v = run(
        &ctx,
        "check_availability",
        json!({"service": "cleaning", "provider": "weber"}),
    )
    .await;
    assert_eq!(code(&v), "provider_does_not_offer");
    assert_eq!(v["providers_offering"], json!(["Lena Schmidt"]));
}

store_test!(closures_refuse_bookings_and_show_in_availability);
async fn closures_refuse_bookings_and_show_in_availability(pool: Store) {
    let ctx = setup(&pool, "2026-12-01T08:00").await;
    let book = |start: &str| json!({"service": "checkup", "start": start, "customer_name": "Max Mustermann"});
    let v = run(&ctx, "book_appointment", book("2026-12-24T09:00")).await;
    assert_eq!(code(&v), "closed", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Christmas Eve"),
        "{v}"
    );
    assert_eq!(starts(&v, "alternatives")[0], "2026-12-28T08:00", "{v}");
    // New Year's Eve: closed from 12:00 only.
    assert_eq!(
        code(&run(&ctx, "book_appointment", book("2026-12-31T13:30")).await),
        "closed"
    );
    assert_eq!(
        run(&ctx, "book_appointment", book("2026-12-31T09:00")).await["ok"],
        json!(true)
    );
    let v = run(
        &ctx,
        "check_availability",
        json!({"service": "checkup", "date_from": "2026-12-24", "date_to": "2026-12-26"}),
    )
    .await;
    assert_eq!(v["slots"], json!([]));
    assert_eq!(v["closures"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(starts(&v, "next_available")[0], "2026-12-28T08:00");
    // A provider's vacation: Novak 2026-08-03..14.
    let ctx = setup(&pool, "2026-07-20T08:00").await;
    let v = run(
        &ctx,
        "book_appointment",
        json!({"service": "checkup", "start": "2026-08-03T09:00", "customer_name": "Max", "provider": "novak"}),
    )
    .await;
    assert_eq!(code(&v), "provider_unavailable", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("vacation"));
}

// ---------------------------------------------------------------------------------------------
// Tools: booking rules
// ---------------------------------------------------------------------------------------------

store_test!(booking_respects_hours_past_and_lead_time);
async fn booking_respects_hours_past_and_lead_time(pool: Store) {
    let ctx = setup(&pool, MONDAY_9).await;
    let book = |start: &str| json!({"service": "checkup", "start": start, "customer_name": "Erika Musterfrau"});
    let v = run(&ctx, "book_appointment", book("2026-03-03T12:15")).await;
    assert_eq!(code(&v), "outside_hours", "{v}");
    assert_eq!(
        v["timezone"],
        json!("Europe/Berlin"),
        "local times come with their zone"
    );
    assert_eq!(v["opening_hours"], json!(["08:00-12:30", "13:30-18:00"]));
    assert_eq!(
        starts(&v, "alternatives"),
        vec!["2026-03-03T11:30", "2026-03-03T11:45", "2026-03-03T12:00"],
        "{v}"
    );
    assert_eq!(
        code(&run(&ctx, "book_appointment", book("2026-03-07T10:00")).await),
        "outside_hours"
    );
    let v = run(&ctx, "book_appointment", book("2026-03-01T10:00")).await;
    assert_eq!(code(&v), "in_past");
    assert_eq!(starts(&v, "alternatives")[0], "2026-03-02T11:00");
    let v = run(&ctx, "book_appointment", book("2026-03-02T10:00")).await;
    assert_eq!(code(&v), "too_soon");
    assert_eq!(v["earliest_start"], json!("2026-03-02T11:00"));
    assert_eq!(
        code(&run(&ctx, "book_appointment", book("2026-06-01T10:00")).await),
        "beyond_horizon"
    );
    assert_eq!(booked_rows(&pool).await, 0);

    let v = run(&ctx, "book_appointment", book("2026-03-02T11:00")).await;
    assert_eq!(v["ok"], json!(true), "{v}");
    let a = &v["appointment"];
    assert_eq!(a["start"], json!("2026-03-02T11:00"));
    assert_eq!(a["end"], json!("2026-03-02T11:30"));
    assert_eq!(a["provider"], json!("Dr. Anna Weber"));
    assert_eq!(
        a["phone"],
        json!(CALLER),
        "phone defaults to the caller's number"
    );
    let code_text = v["confirmation_code"].as_str().unwrap();
    assert_eq!(code_text.len(), db::CODE_LEN);
    assert!(code_text.bytes().all(|b| db::CODE_ALPHABET.contains(&b)));
    // The row holds UTC and the Call-ID.
    let row: (String, String, Option<String>, String) =
        sqlx::query_as("SELECT start_utc, block_end_utc, call_id, phone FROM appointments")
            .fetch_one(pool.pool())
            .await
            .unwrap();
    assert_eq!(
        row,
        (
            "2026-03-02T10:00:00Z".into(),
            "2026-03-02T10:40:00Z".into(),
            Some("call-1@test".into()),
            CALLER.into()
        )
    );
}

store_test!(buffers_and_provider_overlap);
async fn buffers_and_provider_overlap(pool: Store) {
    let ctx = setup(&pool, MONDAY_9).await;
    let second = other_call(&ctx, "call-2@test", Some("+4917000000002"));
    let third = other_call(&ctx, "call-3@test", Some("+4917000000003"));
    let book = |start: &str, provider: Option<&str>| {
        let mut a = json!({"service": "checkup", "start": start, "customer_name": "Pat Doe"});
        if let Some(p) = provider {
            a["provider"] = json!(p);
        }
        a
    };
    // Weber 09:00–09:30 + 10 min buffer on Monday 2026-03-09.
    let v = run(
        &ctx,
        "book_appointment",
        book("2026-03-09T09:00", Some("weber")),
    )
    .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    // 09:30 overlaps the buffer.
    let v = run(
        &second,
        "book_appointment",
        book("2026-03-09T09:30", Some("weber")),
    )
    .await;
    assert_eq!(code(&v), "slot_taken", "{v}");
    assert_eq!(
        starts(&v, "alternatives"),
        vec!["2026-03-09T09:45", "2026-03-09T10:00", "2026-03-09T10:15"],
        "{v}"
    );
    assert_eq!(
        run(
            &second,
            "book_appointment",
            book("2026-03-09T09:45", Some("weber"))
        )
        .await["ok"],
        json!(true)
    );
    // Any provider at 09:00: Weber is busy, Novak (Monday mornings) takes it.
    let v = run(&third, "book_appointment", book("2026-03-09T09:00", None)).await;
    assert_eq!(
        v["appointment"]["provider"],
        json!("Dr. Jonas Novak"),
        "{v}"
    );
    // Now nobody is free at 09:00.
    let fourth = other_call(&ctx, "call-4@test", None);
    let v = run(&fourth, "book_appointment", json!({"service": "checkup", "start": "2026-03-09T09:00", "customer_name": "Sam", "phone": "030 555 0100"})).await;
    assert_eq!(code(&v), "slot_taken", "{v}");
    // Availability agrees.
    let v = run(
        &fourth,
        "check_availability",
        json!({"service": "checkup", "date": "2026-03-09", "max_results": 10}),
    )
    .await;
    let s = starts(&v, "slots");
    assert!(!s.contains(&"2026-03-09T09:00".to_string()), "{s:?}");
    assert!(s.contains(&"2026-03-09T08:00".to_string()), "{s:?}");
    // The trigger backs the rule even for a writer that skips the check.
    let err = sqlx::query(
        "INSERT INTO appointments (business_id, provider_id, service_id, start_utc, end_utc, block_end_utc,
             customer_name, phone, confirmation_code, created_at, updated_at)
         SELECT business_id, provider_id, service_id, '2026-03-09T08:15:00Z', '2026-03-09T08:45:00Z',
             '2026-03-09T08:55:00Z', 'x', 'x', 'XXXXXX', created_at, updated_at FROM appointments LIMIT 1",
    )
    .execute(pool.pool())
    .await
    .unwrap_err();
    // SQLite: the trigger's message; PostgreSQL: the exclusion constraint's name.
    assert!(
        err.to_string().contains("overlaps") || err.to_string().contains("appointments_no_overlap"),
        "{err}"
    );
}

store_test!(retries_in_the_same_call_return_the_same_booking);
async fn retries_in_the_same_call_return_the_same_booking(pool: Store) {
    let ctx = setup(&pool, MONDAY_9).await;
    let args = r#"{"service":"checkup","start":"2026-03-04T10:00","customer_name":"Jo Beispiel","notes":"first visit"}"#;
    let first = run_raw(&ctx, "book_appointment", args).await;
    assert_eq!(first["already_booked"], json!(false));
    // Same arguments, other key order and spacing, service by name.
    let again = run_raw(
        &ctx,
        "book_appointment",
        r#"{ "notes": "first visit", "customer_name": "Jo Beispiel", "start": "2026-03-04 10:00", "service": "Check-up" }"#,
    )
    .await;
    assert_eq!(again["ok"], json!(true), "{again}");
    assert_eq!(again["already_booked"], json!(true));
    assert_eq!(again["confirmation_code"], first["confirmation_code"]);
    assert_eq!(booked_rows(&pool).await, 1);
    // Different notes in the same call: not a retry, but the caller's own booking is reported.
    let v = run(&ctx, "book_appointment", json!({"service": "checkup", "start": "2026-03-04T10:00", "customer_name": "Jo Beispiel", "notes": "x"})).await;
    assert_eq!(code(&v), "already_booked_in_this_call", "{v}");
    assert_eq!(
        v["appointment"]["confirmation_code"],
        first["confirmation_code"]
    );
    // The same arguments from another call: taken (on Wednesdays only Weber does check-ups).
    let other = other_call(&ctx, "call-2@test", Some("+4917000000002"));
    assert_eq!(
        code(&run_raw(&other, "book_appointment", args).await),
        "slot_taken"
    );
    assert_eq!(booked_rows(&pool).await, 1);
    // Cancelled in the same call, then asked for again: a new booking, not a replay.
    let first_code = first["confirmation_code"].as_str().unwrap();
    let v = run(
        &ctx,
        "cancel_appointment",
        json!({"confirmation_code": first_code}),
    )
    .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    let rebooked = run_raw(&ctx, "book_appointment", args).await;
    assert_eq!(rebooked["already_booked"], json!(false), "{rebooked}");
    assert_ne!(rebooked["confirmation_code"], first["confirmation_code"]);
    assert_eq!(booked_rows(&pool).await, 1);
}

store_test!(reschedule_moves_the_booking_and_keeps_the_code);
async fn reschedule_moves_the_booking_and_keeps_the_code(pool: Store) {
    let ctx = setup(&pool, MONDAY_9).await;
    let booked = run(
        &ctx,
        "book_appointment",
        json!({"service": "filling", "start": "2026-03-05T09:00", "customer_name": "Kim Lee"}),
    )
    .await;
    let code_text = booked["confirmation_code"].as_str().unwrap().to_owned();
    let later = other_call(&ctx, "call-2@test", Some(CALLER));
    // Spoken codes arrive in lower case with spaces.
    let spaced: String = code_text
        .to_lowercase()
        .chars()
        .flat_map(|c| [c, ' '])
        .collect();
    let moved = run(
        &later,
        "reschedule_appointment",
        json!({"confirmation_code": spaced, "new_start": "2026-03-05T11:00"}),
    )
    .await;
    assert_eq!(moved["ok"], json!(true), "{moved}");
    assert_eq!(moved["confirmation_code"], json!(code_text));
    assert_eq!(moved["previous_start"], json!("2026-03-05T09:00"));
    assert_eq!(moved["appointment"]["start"], json!("2026-03-05T11:00"));
    assert_eq!(
        moved["appointment"]["provider"],
        json!("Dr. Anna Weber"),
        "same provider kept"
    );
    // Retry: same result, nothing written.
    let again = run(
        &later,
        "reschedule_appointment",
        json!({"confirmation_code": code_text, "new_start": "2026-03-05T11:00"}),
    )
    .await;
    assert_eq!(again["already_done"], json!(true), "{again}");
    let statuses: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, sequence FROM appointments ORDER BY id")
            .fetch_all(pool.pool())
            .await
            .unwrap();
    assert_eq!(
        statuses,
        vec![("rescheduled".into(), 0), ("booked".into(), 1)]
    );
    // The old time is free again, the new one (11:00-11:45 + 15 min buffer) is not.
    let v = run(
        &later,
        "check_availability",
        json!({"service": "filling", "date": "2026-03-05", "provider": "weber", "max_results": 10}),
    )
    .await;
    let s = starts(&v, "slots");
    assert!(s.contains(&"2026-03-05T09:00".to_string()), "{s:?}");
    assert!(s.contains(&"2026-03-05T10:00".to_string()), "{s:?}");
    assert!(
        !s.contains(&"2026-03-05T10:15".to_string())
            && !s.contains(&"2026-03-05T11:00".to_string()),
        "{s:?}"
    );
    // Moving onto a taken time fails and changes nothing.
    let other = other_call(&ctx, "call-3@test", Some("+4917000000003"));
    run(
        &other,
        "book_appointment",
        json!({"service": "whitening", "start": "2026-03-05T14:00", "customer_name": "Al"}),
    )
    .await;
    let v = run(&later, "reschedule_appointment", json!({"confirmation_code": code_text, "new_start": "2026-03-05T14:30", "provider": "weber"})).await;
    assert_eq!(code(&v), "slot_taken", "{v}");
    assert!(!starts(&v, "alternatives").is_empty());
    let a = db::appointment_by_code(&pool, "bright-smile", &code_text)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.start, utc("2026-03-05T10:00"));
    assert_eq!(a.status, AppointmentStatus::Booked);
    // Moving a few minutes within its own block is fine (its own time is not a conflict).
    let v = run(
        &later,
        "reschedule_appointment",
        json!({"confirmation_code": code_text, "new_start": "2026-03-05T11:15"}),
    )
    .await;
    assert_eq!(v["appointment"]["start"], json!("2026-03-05T11:15"), "{v}");
    // Rules apply to the new time.
    let v = run(
        &later,
        "reschedule_appointment",
        json!({"confirmation_code": code_text, "new_start": "2026-03-08T10:00"}),
    )
    .await;
    assert_eq!(code(&v), "outside_hours");
    // Unknown code.
    assert_eq!(
        code(
            &run(
                &later,
                "reschedule_appointment",
                json!({"confirmation_code": "AAAAAA", "new_start": "2026-03-05T11:00"})
            )
            .await
        ),
        "not_found"
    );
}

store_test!(cancel_and_reschedule_need_the_booking_phone);
async fn cancel_and_reschedule_need_the_booking_phone(pool: Store) {
    let ctx = setup(&pool, MONDAY_9).await;
    let booked = run(
        &ctx,
        "book_appointment",
        json!({"service": "checkup", "start": "2026-03-03T09:00", "customer_name": "Ana Silva"}),
    )
    .await;
    let code_text = booked["confirmation_code"].as_str().unwrap().to_owned();
    let stranger = other_call(&ctx, "call-2@test", Some("+4917099999999"));
    let v = run(
        &stranger,
        "cancel_appointment",
        json!({"confirmation_code": code_text}),
    )
    .await;
    assert_eq!(code(&v), "phone_mismatch", "{v}");
    assert!(v.get("appointment").is_none(), "no details leak: {v}");
    let v = run(
        &stranger,
        "reschedule_appointment",
        json!({"confirmation_code": code_text, "new_start": "2026-03-03T10:00"}),
    )
    .await;
    assert_eq!(code(&v), "phone_mismatch");
    let v = run(
        &stranger,
        "cancel_appointment",
        json!({"confirmation_code": code_text, "phone": "+49 151 0000000"}),
    )
    .await;
    assert_eq!(code(&v), "phone_mismatch");
    let anonymous = other_call(&ctx, "call-3@test", None);
    assert_eq!(
        code(
            &run(
                &anonymous,
                "cancel_appointment",
                json!({"confirmation_code": code_text})
            )
            .await
        ),
        "phone_required"
    );
    assert_eq!(booked_rows(&pool).await, 1);
    // The national form of the booking number matches.
    let v = run(&stranger, "cancel_appointment", json!({"confirmation_code": code_text, "phone": "0151 12345678", "reason": "feeling better"})).await;
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(v["already_cancelled"], json!(false));
    assert_eq!(booked_rows(&pool).await, 0);
    let v = run(
        &ctx,
        "cancel_appointment",
        json!({"confirmation_code": code_text}),
    )
    .await;
    assert_eq!(v["already_cancelled"], json!(true), "{v}");
    let v = run(
        &ctx,
        "reschedule_appointment",
        json!({"confirmation_code": code_text, "new_start": "2026-03-03T10:00"}),
    )
    .await;
    assert_eq!(code(&v), "appointment_cancelled");
    // The freed time can be booked again.
    assert_eq!(run(&stranger, "book_appointment", json!({"service": "checkup", "start": "2026-03-03T09:00", "customer_name": "B", "provider": "weber"})).await["ok"], json!(true));
}

store_test!(find_appointments_by_phone_or_name);
async fn find_appointments_by_phone_or_name(pool: Store) {
    let ctx = setup(&pool, MONDAY_9).await;
    run(&ctx, "book_appointment", json!({"service": "checkup", "start": "2026-03-03T09:00", "customer_name": "Ana Silva", "notes": "sensitive teeth"})).await;
    run(
        &ctx,
        "book_appointment",
        json!({"service": "whitening", "start": "2026-03-04T09:00", "customer_name": "Ana Silva"}),
    )
    .await;
    let other = other_call(&ctx, "call-2@test", Some("+4917000000002"));
    run(
        &other,
        "book_appointment",
        json!({"service": "checkup", "start": "2026-03-03T10:00", "customer_name": "Ben Ode"}),
    )
    .await;

    let v = run(&ctx, "find_appointments", json!({})).await;
    assert_eq!(v["count"], json!(2), "{v}");
    assert_eq!(v["searched_by"], json!("phone"));
    assert_eq!(v["appointments"][0]["service"], json!("Check-up"));
    assert!(v["appointments"][0]["confirmation_code"].is_string());
    assert_eq!(v["appointments"][0]["notes"], json!("sensitive teeth"));
    let v = run(&ctx, "find_appointments", json!({"date": "2026-03-04"})).await;
    assert_eq!(v["count"], json!(1));
    // By name from another phone: no code, masked number.
    let v = run(&other, "find_appointments", json!({"name": "silva"})).await;
    assert_eq!(v["count"], json!(2), "{v}");
    assert!(
        v["appointments"][0].get("confirmation_code").is_none(),
        "{v}"
    );
    assert_eq!(v["appointments"][0]["phone"], json!("…78"));
    let v = run(&other, "find_appointments", json!({"name": "Nobody"})).await;
    assert_eq!(v["count"], json!(0));
    assert!(v["message"].is_string());
    let anonymous = other_call(&ctx, "call-3@test", None);
    assert_eq!(
        code(&run(&anonymous, "find_appointments", json!({})).await),
        "phone_required"
    );
}

// ---------------------------------------------------------------------------------------------
// DST
// ---------------------------------------------------------------------------------------------

/// The example clinic with a Sunday night service, so the DST Sundays have hours.
fn night_clinic() -> BusinessCalendar {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/calendar.example.toml"),
    )
    .unwrap()
    .replace("sun = []", "sun = [\"00:30-05:00\"]");
    calendar_file::parse(&text, Path::new("night.toml")).unwrap()
}

store_test!(spring_forward_gap);
async fn spring_forward_gap(pool: Store) {
    // Berlin 2026-03-29: 02:00 CET -> 03:00 CEST.
    let ctx = setup_with(&pool, &night_clinic(), "2026-03-20T10:00").await;
    let v = run(
        &ctx,
        "book_appointment",
        json!({"service": "checkup", "start": "2026-03-29T02:30", "customer_name": "Night Owl"}),
    )
    .await;
    assert_eq!(code(&v), "nonexistent_local_time", "{v}");
    assert_eq!(v["next_valid_time"], json!("2026-03-29T03:00"));
    let v = run(
        &ctx,
        "check_availability",
        json!({"service": "checkup", "date": "2026-03-29", "max_results": 10, "provider": "weber"}),
    )
    .await;
    let s = starts(&v, "slots");
    assert_eq!(
        &s[..7],
        [
            "2026-03-29T00:30",
            "2026-03-29T00:45",
            "2026-03-29T01:00",
            "2026-03-29T01:15",
            "2026-03-29T01:30",
            "2026-03-29T01:45",
            "2026-03-29T03:00"
        ],
        "{v}"
    );
    // 01:45 CET + 30 minutes is 03:15 CEST.
    assert_eq!(v["slots"][5]["end"], json!("2026-03-29T03:15"));
    // 01:30 + 30 min ends at 03:00 local: the skipped hour is not counted.
    let v = run(&ctx, "book_appointment", json!({"service": "checkup", "start": "2026-03-29T01:30", "customer_name": "Night Owl", "provider": "weber"})).await;
    assert_eq!(v["appointment"]["end"], json!("2026-03-29T03:00"), "{v}");
    // Its 10-minute buffer blocks 03:00 but not 03:15.
    let v = run(
        &ctx,
        "check_availability",
        json!({"service": "checkup", "date": "2026-03-29", "provider": "weber", "max_results": 10}),
    )
    .await;
    let s = starts(&v, "slots");
    assert!(
        !s.contains(&"2026-03-29T03:00".to_string()) && s.contains(&"2026-03-29T03:15".to_string()),
        "{s:?}"
    );
}

store_test!(fall_back_overlap);
async fn fall_back_overlap(pool: Store) {
    // Berlin 2026-10-25: 03:00 CEST -> 02:00 CET; 02:00–02:59 happens twice.
    let ctx = setup_with(&pool, &night_clinic(), "2026-10-20T10:00").await;
    let v = run(&ctx, "book_appointment", json!({"service": "checkup", "start": "2026-10-25T02:30", "customer_name": "Night Owl", "provider": "weber"})).await;
    assert_eq!(code(&v), "ambiguous_local_time", "{v}");
    assert_eq!(
        v["options"],
        json!(["2026-10-25T02:30+02:00", "2026-10-25T02:30+01:00"])
    );
    let v = run(
        &ctx,
        "check_availability",
        json!({"service": "checkup", "date": "2026-10-25", "provider": "weber", "max_results": 10}),
    )
    .await;
    let s = starts(&v, "slots");
    assert!(s.contains(&"2026-10-25T02:30+02:00".to_string()), "{s:?}");
    // Both 02:30s can be booked; they are an hour apart.
    let second = other_call(&ctx, "call-2@test", Some("+4917000000002"));
    let a = run(&ctx, "book_appointment", json!({"service": "checkup", "start": "2026-10-25T02:30+01:00", "customer_name": "Night Owl", "provider": "weber"})).await;
    assert_eq!(
        a["appointment"]["start"],
        json!("2026-10-25T02:30+01:00"),
        "{a}"
    );
    let b = run(&second, "book_appointment", json!({"service": "checkup", "start": "2026-10-25T02:30+02:00", "customer_name": "Early Bird", "provider": "weber"})).await;
    assert_eq!(
        b["appointment"]["end"],
        json!("2026-10-25T02:00+01:00"),
        "{b}"
    );
    // The rest of the night stays bookable around them.
    let v = run(
        &ctx,
        "check_availability",
        json!({"service": "checkup", "date": "2026-10-25", "provider": "weber", "max_results": 10}),
    )
    .await;
    let s = starts(&v, "slots");
    assert_eq!(s[0], "2026-10-25T00:30");
    assert!(!s.contains(&"2026-10-25T02:30+02:00".to_string()), "{s:?}");
    // A wrong offset is refused.
    let v = run(
        &ctx,
        "book_appointment",
        json!({"service": "checkup", "start": "2026-10-26T10:00+02:00", "customer_name": "Z"}),
    )
    .await;
    assert_eq!(code(&v), "invalid_arguments", "{v}");
}

// ---------------------------------------------------------------------------------------------
// Validation, logging, timeouts
// ---------------------------------------------------------------------------------------------

store_test!(invalid_arguments_come_back_as_structured_results);
async fn invalid_arguments_come_back_as_structured_results(pool: Store) {
    let ctx = setup(&pool, MONDAY_9).await;
    let cases: Vec<(&str, &str, &str, &str)> = vec![
        ("check_availability", "{", "invalid_arguments", "EOF"),
        (
            "check_availability",
            "[1,2]",
            "invalid_arguments",
            "must be a JSON object",
        ),
        (
            "check_availability",
            "{}",
            "invalid_arguments",
            "missing field `service`",
        ),
        (
            "check_availability",
            r#"{"service":"checkup","colour":"red"}"#,
            "invalid_arguments",
            "unknown field `colour`",
        ),
        (
            "check_availability",
            r#"{"service":"checkup","date":"next Tuesday"}"#,
            "invalid_arguments",
            "date: invalid date",
        ),
        (
            "check_availability",
            r#"{"service":"checkup","date_from":"2026-03-10","date_to":"2026-03-09"}"#,
            "invalid_arguments",
            "before date_from",
        ),
        (
            "check_availability",
            r#"{"service":"checkup","date_from":"2026-03-02","date_to":"2026-05-01"}"#,
            "invalid_arguments",
            "longer than 31 days",
        ),
        (
            "check_availability",
            r#"{"service":"checkup","max_results":50}"#,
            "invalid_arguments",
            "max_results",
        ),
        (
            "check_availability",
            r#"{"service":"checkup","max_results":"3"}"#,
            "invalid_arguments",
            "invalid type",
        ),
        (
            "check_availability",
            r#"{"service":"checkup","time_of_day":"night"}"#,
            "invalid_arguments",
            "time_of_day",
        ),
        (
            "check_availability",
            r#"{"service":"root canal"}"#,
            "unknown_service",
            "",
        ),
        (
            "check_availability",
            r#"{"service":"e"}"#,
            "ambiguous_service",
            "",
        ),
        (
            "check_availability",
            r#"{"service":"checkup","provider":"Dr. House"}"#,
            "unknown_provider",
            "",
        ),
        (
            "book_appointment",
            r#"{"service":"checkup","start":"tomorrow at 3","customer_name":"A"}"#,
            "invalid_arguments",
            "start: invalid date-time",
        ),
        (
            "book_appointment",
            r#"{"service":"checkup","start":"2026-03-03T09:00","customer_name":"  "}"#,
            "invalid_arguments",
            "customer_name: missing",
        ),
        (
            "book_appointment",
            r#"{"service":"checkup","start":"2026-03-03T09:00","customer_name":"A","phone":"call me"}"#,
            "invalid_arguments",
            "not a phone number",
        ),
        (
            "book_appointment",
            r#"{"service":"checkup","start":"2026-03-03T09:00:30","customer_name":"A"}"#,
            "invalid_arguments",
            "whole minutes",
        ),
        (
            "reschedule_appointment",
            r#"{"confirmation_code":"??","new_start":"2026-03-03T09:00"}"#,
            "invalid_arguments",
            "confirmation_code",
        ),
        (
            "get_business_info",
            r#"{"verbose":true}"#,
            "invalid_arguments",
            "unknown field",
        ),
        ("transfer_call", "{}", "unknown_tool", ""),
    ];
    for (name, args, want, detail) in &cases {
        let v = run_raw(&ctx, name, args).await;
        assert_eq!(code(&v), *want, "{name} {args}: {v}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        if !detail.is_empty() {
            assert!(
                v.to_string().contains(detail),
                "{name} {args}: {v} lacks {detail:?}"
            );
        }
    }
    let long_name = "x".repeat(101);
    let v = run(
        &ctx,
        "book_appointment",
        json!({"service": "checkup", "start": "2026-03-03T09:00", "customer_name": long_name}),
    )
    .await;
    assert!(
        v["problems"][0].as_str().unwrap().contains("too long"),
        "{v}"
    );
    // No caller number and no phone argument.
    let anonymous = other_call(&ctx, "call-9@test", Some("anonymous"));
    let v = run(
        &anonymous,
        "book_appointment",
        json!({"service": "checkup", "start": "2026-03-03T09:00", "customer_name": "A"}),
    )
    .await;
    assert_eq!(code(&v), "phone_required");
    assert_eq!(booked_rows(&pool).await, 0);
    // Every call was logged with its error.
    let logged = db::tool_calls(&pool, "call-1@test").await.unwrap();
    assert_eq!(logged.len(), cases.len() + 1);
    assert!(logged.iter().all(|r| r.error.is_some()));
    assert_eq!(logged[0].arguments, "{");
}

store_test!(tool_calls_are_logged_with_results_and_latency);
async fn tool_calls_are_logged_with_results_and_latency(pool: Store) {
    let ctx = setup(&pool, MONDAY_9).await;
    let out = call(&ctx, "check_availability", r#"{"service":"checkup"}"#).await;
    assert!(out.error.is_none());
    assert!(out.duration < DEFAULT_TIMEOUT);
    let rows = db::tool_calls(&pool, "call-1@test").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].name, "check_availability");
    assert_eq!(rows[0].arguments, r#"{"service":"checkup"}"#);
    assert_eq!(rows[0].result, out.output);
    assert_eq!(rows[0].error, None);
    assert!(rows[0].duration_ms >= 0);
    assert_eq!(rows[0].created_at, "2026-03-02T08:00:00.000Z");
}

store_test!(a_locked_database_times_out_into_a_structured_result);
async fn a_locked_database_times_out_into_a_structured_result(pool: Store) {
    let ctx = setup(&pool, MONDAY_9).await;
    let ctx = ToolContext {
        timeout: Duration::from_millis(300),
        ..ctx
    };
    // Another writer holds the write lock (SQLite) or a lock on the table (PostgreSQL).
    let mut holder = pool.pool().acquire().await.unwrap();
    let lock: &[&str] = match pool.backend() {
        Backend::Sqlite => &["BEGIN IMMEDIATE"],
        Backend::Postgres => &["BEGIN", "LOCK TABLE appointments IN ACCESS EXCLUSIVE MODE"],
    };
    for statement in lock {
        sqlx::query(*statement).execute(&mut *holder).await.unwrap();
    }
    let out = call(
        &ctx,
        "book_appointment",
        r#"{"service":"checkup","start":"2026-03-03T09:00","customer_name":"A"}"#,
    )
    .await;
    let v: Value = serde_json::from_str(&out.output).unwrap();
    assert_eq!(code(&v), "timeout", "{v}");
    assert!(out
        .error
        .as_deref()
        .is_some_and(|e| e.starts_with("timeout")));
    assert!(out.duration >= Duration::from_millis(300) && out.duration < Duration::from_secs(3));
    sqlx::query("ROLLBACK").execute(&mut *holder).await.unwrap();
    drop(holder);
    assert_eq!(booked_rows(&pool).await, 0);
}

#[test]
fn definitions_carry_json_schemas() {
    let all = all_definitions();
    assert_eq!(
        all.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        TOOL_NAMES.to_vec()
    );
    for d in &all {
        assert_eq!(d.parameters["type"], json!("object"), "{}", d.name);
        assert_eq!(
            d.parameters["additionalProperties"],
            json!(false),
            "{}",
            d.name
        );
        assert!(d.description.len() > 40, "{}", d.name);
        let props = d.parameters["properties"].as_object().unwrap();
        for r in d
            .parameters
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            assert!(props.contains_key(r.as_str().unwrap()), "{}: {r}", d.name);
        }
    }
    let some = definitions(&[
        "book_appointment".to_string(),
        "check_availability".to_string(),
        "nope".to_string(),
    ]);
    assert_eq!(
        some.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        vec!["check_availability", "book_appointment"]
    );
    assert!(definitions(&[]).is_empty());
    assert!(is_known("cancel_appointment") && !is_known("nope"));
    // The wire form is a Realtime function tool.
    assert_eq!(some[0].to_json()["type"], json!("function"));
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

/// 50 calls try to book the same slot at once, through a pool of several connections (on SQLite
/// a file-backed WAL database, so SQLite really serialises writers; on PostgreSQL concurrent
/// transactions): exactly one wins, the others get `slot_taken`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_bookings_of_one_slot_make_one_appointment() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let settings = PoolSettings {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(30),
            statement_timeout: Duration::from_secs(30),
        };
        let Some((pool, _dir)) = fresh_store(backend, Some(settings)).await else {
            continue;
        };
        if backend == Backend::Sqlite {
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(pool.pool())
                .await
                .unwrap();
            assert_eq!(mode, "wal");
        }
        fifty_bookings(&pool).await;
        pool.close().await;
    }
}

async fn fifty_bookings(pool: &Store) {
    let base = setup(pool, MONDAY_9).await;
    let base = ToolContext {
        timeout: Duration::from_secs(30),
        ..base
    };

    let mut tasks = Vec::new();
    for i in 0..50 {
        let ctx = other_call(
            &base,
            &format!("race-{i}@test"),
            Some(&format!("+49170000{i:04}")),
        );
        tasks.push(tokio::spawn(async move {
            // Whitening is Weber's only: one provider, one slot.
            let args = json!({"service": "whitening", "start": "2026-03-10T09:00", "customer_name": format!("Caller {i}")});
            call(&ctx, "book_appointment", &args.to_string()).await
        }));
    }
    let mut ok = 0;
    let mut taken = 0;
    for t in tasks {
        let out = t.await.unwrap();
        let v: Value = serde_json::from_str(&out.output).unwrap();
        match (v["ok"].as_bool(), code(&v)) {
            (Some(true), _) => ok += 1,
            (Some(false), "slot_taken") => taken += 1,
            other => panic!("unexpected result {other:?}: {v}"),
        }
    }
    assert_eq!((ok, taken), (1, 49), "{:?}", pool.backend());
    assert_eq!(booked_rows(pool).await, 1);
    let logged: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tool_calls")
        .fetch_one(pool.pool())
        .await
        .unwrap();
    assert_eq!(logged, 50);
}

// ---------------------------------------------------------------------------------------------
// Staff commands
// ---------------------------------------------------------------------------------------------

store_test!(staff_list_and_ics_export);
async fn staff_list_and_ics_export(pool: Store) {
    let ctx = setup(&pool, MONDAY_9).await;
    let a = run(&ctx, "book_appointment", json!({"service": "checkup", "start": "2026-03-03T09:00", "customer_name": "Ana Silva", "notes": "first visit"})).await;
    let b = run(
        &ctx,
        "book_appointment",
        json!({"service": "cleaning", "start": "2026-03-04T10:00", "customer_name": "Ben Ode"}),
    )
    .await;
    let code_b = b["confirmation_code"].as_str().unwrap();
    run(
        &ctx,
        "cancel_appointment",
        json!({"confirmation_code": code_b}),
    )
    .await;

    let now = utc(MONDAY_9);
    let text = staff::list_appointments(&pool, &staff::ListOptions::default(), now)
        .await
        .unwrap();
    assert!(
        text.starts_with("Bright Smile Dental (Europe/Berlin), from 2026-03-02\n"),
        "{text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].trim_start().starts_with("DATE"), "{text}");
    assert_eq!(lines.len(), 3, "cancelled rows hidden by default:\n{text}");
    assert!(
        lines[2].contains("2026-03-03  09:00  09:30  Dr. Anna Weber"),
        "{text}"
    );
    assert!(
        lines[2].contains(a["confirmation_code"].as_str().unwrap())
            && lines[2].contains("first visit")
    );

    let opts = staff::ListOptions {
        include_cancelled: true,
        date: Some(chrono::NaiveDate::from_ymd_opt(2026, 3, 4).unwrap()),
        ..Default::default()
    };
    let text = staff::list_appointments(&pool, &opts, now).await.unwrap();
    assert!(
        text.contains("Wednesday 2026-03-04")
            && text.contains("cancelled")
            && text.contains("Lena Schmidt"),
        "{text}"
    );
    let opts = staff::ListOptions {
        provider: Some("Novak".into()),
        ..Default::default()
    };
    assert!(staff::list_appointments(&pool, &opts, now)
        .await
        .unwrap()
        .contains("no appointments"));
    let opts = staff::ListOptions {
        provider: Some("Dr. Who".into()),
        ..Default::default()
    };
    assert!(matches!(
        staff::list_appointments(&pool, &opts, now).await,
        Err(staff::Error::UnknownProvider(_))
    ));
    let opts = staff::ListOptions {
        business: Some("other".into()),
        ..Default::default()
    };
    assert!(matches!(
        staff::list_appointments(&pool, &opts, now).await,
        Err(staff::Error::UnknownBusiness(_))
    ));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ics");
    let n = staff::export_ics(&pool, &path, None).await.unwrap();
    assert_eq!(n, 2);
    let ics = std::fs::read_to_string(&path).unwrap();
    assert!(ics.starts_with("BEGIN:VCALENDAR\r\n"), "{ics}");
    assert_eq!(ics.matches("BEGIN:VEVENT").count(), 2);
    assert!(ics.contains("DTSTART:20260303T080000Z"), "{ics}");
    assert!(ics.contains("DTEND:20260303T083000Z"));
    assert!(ics.contains(&format!(
        "UID:{}@bright-smile.frontdesk",
        a["confirmation_code"].as_str().unwrap()
    )));
    assert!(ics.contains("STATUS:CANCELLED") && ics.contains("STATUS:CONFIRMED"));
    assert!(
        ics.contains("SEQUENCE:1"),
        "the cancellation bumps SEQUENCE"
    );
    assert!(
        ics.contains("X-WR-CALNAME:Bright Smile Dental appointments"),
        "{ics}"
    );
    let err = staff::export_ics(&pool, Path::new("/nonexistent/dir/x.ics"), None)
        .await
        .unwrap_err();
    assert!(err
        .to_string()
        .starts_with("failed to write /nonexistent/dir/x.ics"));
}

store_test!(malformed_arguments_never_crash);
async fn malformed_arguments_never_crash(pool: Store) {
    let ctx = setup(&pool, MONDAY_9).await;
    let payloads = [
        "",
        "null",
        "42",
        "\"text\"",
        "{\"service\": null}",
        "{\"service\": {\"a\": [1, 2]}}",
        "{\"service\": \"\u{1F9B7}\", \"start\": \"\u{1F9B7}\u{1F9B7}\u{1F9B7}\u{1F9B7}\u{1F9B7}\u{1F9B7}\u{1F9B7}\", \"customer_name\": \"\u{0}\"}",
        "{\"service\": \"checkup\", \"start\": \"9999-12-31T23:59\", \"customer_name\": \"A\"}",
        "{\"service\": \"checkup\", \"start\": \"0001-01-01T00:00+14:00\", \"customer_name\": \"A\"}",
        "{\"service\": \"checkup\", \"date\": \"9999-12-31\", \"max_results\": 9223372036854775807}",
        "{\"service\": \"checkup\", \"date_from\": \"0001-01-01\", \"date_to\": \"0001-01-02\"}",
        "{\"confirmation_code\": \"\u{e9}\u{e9}\u{e9}\", \"new_start\": \"2026-03-03T09:00\", \"phone\": \"t\u{e9}l:1\"}",
        "{\"phone\": \"+\", \"name\": \"%_%\", \"date\": \"2026-13-01\"}",
        "{\"confirmation_code\": \"ABCDEF\", \"phone\": \"0\"}",
    ];
    for name in TOOL_NAMES {
        for p in payloads {
            let out = call(&ctx, name, p).await;
            let v: Value = serde_json::from_str(&out.output).unwrap();
            assert!(v["ok"].is_boolean(), "{name} {p}: {v}");
            assert_ne!(code(&v), "internal_error", "{name} {p}: {v}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Several instances on one PostgreSQL (issue 13)
// ---------------------------------------------------------------------------------------------

/// Two frontdesk instances (two separate pools on one PostgreSQL database), 50 callers spread
/// over both booking the same slot at once: exactly one booking; the 49 others get
/// `slot_taken` with alternatives; the winner's retried request on the *other* instance returns
/// the same booking instead of a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_postgres_never_double_book() {
    let Some(pg) = crate::store::testing::pg_server() else {
        return;
    };
    let target = pg.create_database().unwrap();
    let a = Store::open(&target).await.unwrap();
    let b = Store::open(&target).await.unwrap();
    let base_a = ToolContext {
        timeout: Duration::from_secs(30),
        ..setup(&a, MONDAY_9).await
    };
    let base_b = ToolContext {
        store: b.clone(),
        ..base_a.clone()
    };
    let args = |i: usize| {
        json!({"service": "whitening", "start": "2026-03-10T09:00", "customer_name": format!("Caller {i}")})
            .to_string()
    };
    let mut tasks = Vec::new();
    for i in 0..50 {
        let base = if i % 2 == 0 { &base_a } else { &base_b };
        let ctx = other_call(
            base,
            &format!("race-{i}@test"),
            Some(&format!("+49170000{i:04}")),
        );
        let args = args(i);
        tasks.push(tokio::spawn(async move {
            (i, call(&ctx, "book_appointment", &args).await)
        }));
    }
    let mut winner = None;
    let mut taken = 0;
    for t in tasks {
        let (i, out) = t.await.unwrap();
        let v: Value = serde_json::from_str(&out.output).unwrap();
        match (v["ok"].as_bool(), code(&v)) {
            (Some(true), _) => {
                assert!(winner.is_none(), "two winners: {v}");
                winner = Some((i, v));
            }
            (Some(false), "slot_taken") => {
                taken += 1;
                assert!(
                    !v["alternatives"].as_array().unwrap().is_empty(),
                    "the loser is offered the nearest free slots: {v}"
                );
            }
            other => panic!("unexpected result {other:?}: {v}"),
        }
    }
    let (i, won) = winner.expect("one caller gets the slot");
    assert_eq!(taken, 49);
    assert_eq!(booked_rows(&a).await, 1);
    // The same request again (a retried tool call), on the instance that did not serve it.
    let other = if i % 2 == 0 { &base_b } else { &base_a };
    let ctx = other_call(
        other,
        &format!("race-{i}@test"),
        Some(&format!("+49170000{i:04}")),
    );
    let again = run_raw(&ctx, "book_appointment", &args(i)).await;
    assert_eq!(again["ok"], json!(true), "{again}");
    assert_eq!(again["already_booked"], json!(true), "{again}");
    assert_eq!(again["confirmation_code"], won["confirmation_code"]);
    assert_eq!(booked_rows(&b).await, 1);
    // The database itself refuses an overlapping row, whoever writes it.
    let err = sqlx::query(
        "INSERT INTO appointments (business_id, provider_id, service_id, start_utc, end_utc,
             block_end_utc, customer_name, phone, confirmation_code, created_at, updated_at)
         SELECT business_id, provider_id, service_id, '2026-03-10T08:30:00Z',
             '2026-03-10T08:45:00Z', '2026-03-10T08:50:00Z', 'x', 'x', 'ZZZZZZ', created_at,
             updated_at FROM appointments LIMIT 1",
    )
    .execute(b.pool())
    .await
    .unwrap_err();
    assert!(err.to_string().contains("appointments_no_overlap"), "{err}");
    a.close().await;
    b.close().await;
}

/// The database stops while a call is using the tools: the model gets `calendar_unreachable`
/// (something it can say) within a few seconds instead of a hang; once the server is back,
/// the same store books again without a restart of frontdesk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_is_reported_and_the_store_recovers() {
    if crate::store::testing::pg_server().is_none() {
        return;
    }
    let pg = crate::store::testing::PgServer::start().unwrap();
    let target = pg.create_database().unwrap();
    let store = Store::open(&target).await.unwrap();
    let ctx = setup(&store, MONDAY_9).await;
    let book = |start: &str| {
        json!({"service": "checkup", "start": start, "customer_name": "Ana"}).to_string()
    };
    let v = run_raw(&ctx, "book_appointment", &book("2026-03-03T09:00")).await;
    assert_eq!(v["ok"], json!(true), "{v}");

    pg.stop().unwrap();
    let started = std::time::Instant::now();
    let v = run_raw(&ctx, "book_appointment", &book("2026-03-03T10:00")).await;
    assert_eq!(code(&v), "calendar_unreachable", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("can't reach the calendar"),
        "{v}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    pg.start_again().unwrap();
    let v = run_raw(&ctx, "book_appointment", &book("2026-03-03T10:00")).await;
    assert_eq!(v["ok"], json!(true), "after the restart: {v}");
    assert_eq!(booked_rows(&store).await, 2);
    store.close().await;
}
