//! Unit tests of the calendar rules on a hand-built Berlin clinic.

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc, Weekday};

use super::model::*;
use super::rules::*;
use super::time::{format_local, to_local, ClockTime, TimeOfDay, TimeRange};

fn utc(s: &str) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
        .unwrap()
        .and_utc()
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn range(s: &str) -> TimeRange {
    s.parse().unwrap()
}

/// Mon–Fri 08:00–12:30 and 13:30–18:00, Sat 09:00–13:00, and a night service on Sundays
/// 01:00–05:00 so the DST Sundays (2026-03-29, 2026-10-25) have hours across the change.
fn clinic() -> BusinessCalendar {
    let mut hours = WeeklyHours::new();
    for d in [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
    ] {
        hours.set(d, vec![range("13:30-18:00"), range("08:00-12:30")]);
    }
    hours.set(Weekday::Sat, vec![range("09:00-13:00")]);
    hours.set(Weekday::Sun, vec![range("01:00-05:00")]);
    let mut novak_hours = WeeklyHours::new();
    for d in [Weekday::Mon, Weekday::Tue, Weekday::Wed] {
        novak_hours.set(d, vec![range("08:00-12:30")]);
    }
    novak_hours.set(Weekday::Sun, vec![range("00:00-24:00")]);
    BusinessCalendar {
        business: Business {
            key: "bright-smile".into(),
            name: "Bright Smile Dental".into(),
            timezone: chrono_tz::Europe::Berlin,
            address: "Friedrichstraße 123, 10117 Berlin".into(),
            phone: "+49 30 1234567".into(),
            currency: "EUR".into(),
        },
        rules: BookingRules {
            min_lead_minutes: 60,
            slot_interval_minutes: 15,
            max_days_ahead: 90,
        },
        hours,
        providers: vec![
            Provider {
                key: "weber".into(),
                name: "Dr. Anna Weber".into(),
                kind: ProviderKind::Staff,
                role: "dentist".into(),
                hours: None,
            },
            Provider {
                key: "novak".into(),
                name: "Dr. Jonas Novak".into(),
                kind: ProviderKind::Staff,
                role: "dentist".into(),
                hours: Some(novak_hours),
            },
        ],
        services: vec![
            Service {
                key: "checkup".into(),
                name: "Check-up and cleaning".into(),
                description: String::new(),
                duration_minutes: 45,
                buffer_minutes: 15,
                price_cents: Some(8900),
                providers: vec!["weber".into(), "novak".into()],
            },
            Service {
                key: "whitening".into(),
                name: "Teeth whitening".into(),
                description: String::new(),
                duration_minutes: 60,
                buffer_minutes: 0,
                price_cents: None,
                providers: vec!["weber".into()],
            },
        ],
        closures: vec![
            Closure {
                first_day: date("2026-12-24"),
                last_day: date("2026-12-26"),
                times: None,
                provider: None,
                reason: "Christmas".into(),
            },
            Closure {
                first_day: date("2026-03-04"),
                last_day: date("2026-03-04"),
                times: Some(range("13:30-18:00")),
                provider: None,
                reason: "staff training".into(),
            },
            Closure {
                first_day: date("2026-04-06"),
                last_day: date("2026-04-10"),
                times: None,
                provider: Some("novak".into()),
                reason: "vacation".into(),
            },
        ],
    }
}

/// Monday 2026-03-02 08:10 in Berlin (CET, UTC+1).
fn monday_morning() -> DateTime<Utc> {
    utc("2026-03-02T07:10")
}

fn check<'a>(
    cal: &'a BusinessCalendar,
    service: &str,
    provider: Option<&str>,
    start: DateTime<Utc>,
) -> BookingCheck<'a> {
    BookingCheck {
        service: cal.service_by_key(service).unwrap(),
        provider: provider.map(|p| cal.provider_by_key(p).unwrap()),
        start,
    }
}

fn query<'a>(cal: &'a BusinessCalendar, service: &str, day: &str) -> SlotQuery<'a> {
    SlotQuery {
        service: cal.service_by_key(service).unwrap(),
        provider: None,
        first_day: date(day),
        last_day: date(day),
        time_of_day: TimeOfDay::Any,
        max_results: 1000,
    }
}

fn local_times(cal: &BusinessCalendar, slots: &[Slot]) -> Vec<String> {
    slots
        .iter()
        .map(|s| format_local(cal.tz(), s.start))
        .collect()
}

#[test]
fn weekday_hours_are_local_time() {
    let cal = clinic();
    // Monday in winter: UTC+1.
    assert_eq!(
        cal.business_hours(date("2026-03-02")),
        vec![
            Interval {
                start: utc("2026-03-02T07:00"),
                end: utc("2026-03-02T11:30")
            },
            Interval {
                start: utc("2026-03-02T12:30"),
                end: utc("2026-03-02T17:00")
            },
        ]
    );
    // Monday in summer: UTC+2.
    assert_eq!(
        cal.business_hours(date("2026-06-01"))[0].start,
        utc("2026-06-01T06:00")
    );
}

#[test]
fn spring_forward_day_loses_the_skipped_hour() {
    let cal = clinic();
    // 01:00–05:00 on 2026-03-29: 02:00–03:00 does not exist, so three real hours.
    assert_eq!(
        cal.business_hours(date("2026-03-29")),
        vec![Interval {
            start: utc("2026-03-29T00:00"),
            end: utc("2026-03-29T03:00")
        }]
    );
    let now = utc("2026-03-20T10:00");
    let slots = cal.free_slots(now, &query(&cal, "checkup", "2026-03-29"), &[]);
    let times = local_times(&cal, &slots);
    assert_eq!(times.first().map(String::as_str), Some("2026-03-29T01:00"));
    assert!(times.contains(&"2026-03-29T01:45".to_string()));
    assert!(times.contains(&"2026-03-29T03:00".to_string()), "{times:?}");
    assert!(!times.iter().any(|t| t.contains("T02:")), "{times:?}");
    // 180 real minutes, 45-minute service, 15-minute steps: starts at 0, 15, …, 135.
    assert_eq!(slots.len(), 10, "{times:?}");
    assert_eq!(times.last().map(String::as_str), Some("2026-03-29T04:15"));
    // Booking 01:30 for 45 minutes runs across the jump and ends at 03:15 local.
    let ok = cal
        .check_booking(
            now,
            &check(&cal, "checkup", Some("weber"), utc("2026-03-29T00:30")),
        )
        .unwrap();
    assert_eq!(
        to_local(cal.tz(), ok.end).format("%H:%M").to_string(),
        "03:15"
    );
}

#[test]
fn fall_back_day_has_the_repeated_hour_twice() {
    let cal = clinic();
    // 01:00 CEST (23:00Z the day before) to 05:00 CET (04:00Z): five real hours.
    assert_eq!(
        cal.business_hours(date("2026-10-25")),
        vec![Interval {
            start: utc("2026-10-24T23:00"),
            end: utc("2026-10-25T04:00")
        }]
    );
    let now = utc("2026-10-20T10:00");
    let slots = cal.free_slots(now, &query(&cal, "checkup", "2026-10-25"), &[]);
    assert_eq!(slots.len(), (300 - 45) / 15 + 1);
    let times = local_times(&cal, &slots);
    for t in [
        "2026-10-25T01:45",
        "2026-10-25T02:00+02:00",
        "2026-10-25T02:45+02:00",
        "2026-10-25T02:00+01:00",
        "2026-10-25T02:45+01:00",
        "2026-10-25T03:00",
    ] {
        assert!(times.contains(&t.to_string()), "{t} missing from {times:?}");
    }
    // A booking in the second 02:30 is a distinct instant from the first one.
    let busy = vec![Busy {
        provider: "weber".into(),
        start: utc("2026-10-25T00:30"), // 02:30 CEST
        block_end: utc("2026-10-25T01:30"),
    }];
    let q = SlotQuery {
        provider: cal.provider_by_key("weber"),
        ..query(&cal, "checkup", "2026-10-25")
    };
    let times = local_times(&cal, &cal.free_slots(now, &q, &busy));
    assert!(!times.contains(&"2026-10-25T02:30+02:00".to_string()));
    assert!(
        times.contains(&"2026-10-25T02:30+01:00".to_string()),
        "{times:?}"
    );
}

#[test]
fn new_york_dst_days_are_23_and_25_hours() {
    let mut cal = clinic();
    cal.business.timezone = chrono_tz::America::New_York;
    cal.hours.set(Weekday::Sun, vec![range("00:00-24:00")]);
    let len = |d: &str| {
        let iv = cal.business_hours(date(d));
        assert_eq!(iv.len(), 1);
        (iv[0].end - iv[0].start).num_hours()
    };
    assert_eq!(len("2026-03-08"), 23);
    assert_eq!(len("2026-11-01"), 25);
    assert_eq!(len("2026-11-08"), 24);
}

#[test]
fn opening_hours_bound_the_whole_service() {
    let cal = clinic();
    let now = monday_morning();
    let at = |local: &str| cal.check_booking(now, &check(&cal, "checkup", None, utc(local)));
    // Tuesday 2026-03-03 (UTC+1).
    assert!(at("2026-03-03T07:00").is_ok(), "08:00 opening");
    assert!(
        at("2026-03-03T16:15").is_ok(),
        "17:15 + 45 min ends at closing"
    );
    assert!(
        matches!(at("2026-03-03T16:30"), Err(RuleError::OutsideHours { .. })),
        "ends 18:15"
    );
    assert!(
        matches!(at("2026-03-03T11:00"), Err(RuleError::OutsideHours { .. })),
        "runs into lunch"
    );
    let lunch = at("2026-03-03T11:30");
    assert_eq!(
        lunch,
        Err(RuleError::OutsideHours {
            date: date("2026-03-03"),
            hours: vec![range("08:00-12:30"), range("13:30-18:00")]
        })
    );
    // Sunday 2026-03-08 is open only at night.
    assert!(matches!(
        at("2026-03-08T09:00"),
        Err(RuleError::OutsideHours { .. })
    ));
}

#[test]
fn closures_apply_to_whole_days_and_time_spans() {
    let cal = clinic();
    let now = utc("2026-12-01T09:00");
    assert_eq!(
        cal.check_booking(now, &check(&cal, "checkup", None, utc("2026-12-24T09:00"))),
        Err(RuleError::Closed {
            date: date("2026-12-24"),
            reason: "Christmas".into()
        })
    );
    assert!(cal
        .free_slots(now, &query(&cal, "checkup", "2026-12-25"), &[])
        .is_empty());
    assert!(!cal
        .free_slots(now, &query(&cal, "checkup", "2026-12-28"), &[])
        .is_empty());

    // 2026-03-04 afternoon: staff training.
    let now = monday_morning();
    assert_eq!(
        cal.check_booking(now, &check(&cal, "checkup", None, utc("2026-03-04T13:00"))),
        Err(RuleError::Closed {
            date: date("2026-03-04"),
            reason: "staff training".into()
        })
    );
    assert!(cal
        .check_booking(now, &check(&cal, "checkup", None, utc("2026-03-04T08:00")))
        .is_ok());
    let slots = cal.free_slots(now, &query(&cal, "checkup", "2026-03-04"), &[]);
    assert!(slots.iter().all(|s| s.end <= utc("2026-03-04T11:30")));
}

#[test]
fn provider_closures_and_hours_narrow_the_candidates() {
    let cal = clinic();
    let now = utc("2026-03-20T09:00");
    // Monday 2026-04-06: Novak on vacation, Weber works.
    let t = utc("2026-04-06T07:00"); // 09:00 CEST
    assert_eq!(
        cal.check_booking(now, &check(&cal, "checkup", Some("novak"), t)),
        Err(RuleError::ProviderUnavailable {
            provider: Some("Dr. Jonas Novak".into()),
            reason: "vacation".into()
        })
    );
    let ok = cal
        .check_booking(now, &check(&cal, "checkup", None, t))
        .unwrap();
    assert_eq!(ok.providers, vec!["weber".to_string()]);
    // Monday 2026-03-23 both work; preference order from the service.
    let ok = cal
        .check_booking(now, &check(&cal, "checkup", None, utc("2026-03-23T08:00")))
        .unwrap();
    assert_eq!(ok.providers, vec!["weber".to_string(), "novak".to_string()]);
    // Novak works mornings Mon–Wed only.
    assert!(matches!(
        cal.check_booking(now, &check(&cal, "checkup", Some("novak"), utc("2026-03-26T08:00"))),
        Err(RuleError::ProviderUnavailable { reason, .. }) if reason.is_empty()
    ));
    // His 24-hour Sunday is cut to the business's 01:00–05:00.
    assert_eq!(
        cal.provider_hours(cal.provider_by_key("novak").unwrap(), date("2026-03-22")),
        cal.business_hours(date("2026-03-22"))
    );
    // Whitening is Weber's only.
    assert_eq!(
        cal.check_booking(
            now,
            &check(&cal, "whitening", Some("novak"), utc("2026-03-23T08:00"))
        ),
        Err(RuleError::ProviderDoesNotOffer {
            provider: "Dr. Jonas Novak".into(),
            service: "Teeth whitening".into()
        })
    );
}

#[test]
fn past_lead_time_and_horizon() {
    let cal = clinic();
    let now = monday_morning(); // 08:10 local
    let at = |t: DateTime<Utc>| cal.check_booking(now, &check(&cal, "checkup", None, t));
    assert_eq!(
        at(utc("2026-03-02T07:00")),
        Err(RuleError::InPast {
            start: utc("2026-03-02T07:00")
        })
    );
    assert_eq!(
        at(utc("2026-03-02T08:00")),
        Err(RuleError::TooSoon {
            earliest: utc("2026-03-02T08:10")
        })
    );
    assert!(at(utc("2026-03-02T08:15")).is_ok());
    assert_eq!(cal.last_bookable_day(now), date("2026-05-31"));
    assert!(at(utc("2026-05-29T07:00")).is_ok());
    assert_eq!(
        at(utc("2026-06-01T07:00")),
        Err(RuleError::BeyondHorizon {
            last_day: date("2026-05-31")
        })
    );
    // The first free slot today respects the lead time and the 15-minute grid.
    let slots = cal.free_slots(now, &query(&cal, "checkup", "2026-03-02"), &[]);
    assert_eq!(local_times(&cal, &slots[..1]), vec!["2026-03-02T09:15"]);
    // Searching yesterday only finds nothing; beyond the horizon neither.
    assert!(cal
        .free_slots(now, &query(&cal, "checkup", "2026-03-01"), &[])
        .is_empty());
    assert!(cal
        .free_slots(now, &query(&cal, "checkup", "2026-06-02"), &[])
        .is_empty());
}

#[test]
fn buffers_block_the_provider_after_each_appointment() {
    let cal = clinic();
    let now = monday_morning();
    // Weber has 09:00–09:45 + 15 min buffer on Tuesday 2026-03-03 (08:00Z–09:00Z).
    let busy = vec![Busy {
        provider: "weber".into(),
        start: utc("2026-03-03T08:00"),
        block_end: utc("2026-03-03T09:00"),
    }];
    let q = SlotQuery {
        provider: cal.provider_by_key("weber"),
        ..query(&cal, "checkup", "2026-03-03")
    };
    let times = local_times(&cal, &cal.free_slots(now, &q, &busy));
    // 08:00 ends (with buffer) at 09:00: allowed. 08:15 would overlap. 10:00 is free again.
    assert!(times.contains(&"2026-03-03T08:00".to_string()));
    for t in ["08:15", "08:30", "09:00", "09:45"] {
        assert!(
            !times.contains(&format!("2026-03-03T{t}")),
            "{t} in {times:?}"
        );
    }
    assert!(times.contains(&"2026-03-03T10:00".to_string()));
    // Without a provider filter, Novak is still free at 09:00.
    let any = cal.free_slots(now, &query(&cal, "checkup", "2026-03-03"), &busy);
    let nine = any
        .iter()
        .find(|s| s.start == utc("2026-03-03T08:00"))
        .unwrap();
    assert_eq!(nine.providers, vec!["novak".to_string()]);
    assert!(blocks_overlap(
        utc("2026-03-03T08:15"),
        utc("2026-03-03T09:15"),
        busy[0].start,
        busy[0].block_end
    ));
    assert!(!blocks_overlap(
        utc("2026-03-03T09:00"),
        utc("2026-03-03T10:00"),
        busy[0].start,
        busy[0].block_end
    ));
}

#[test]
fn time_of_day_max_results_and_range() {
    let cal = clinic();
    let now = monday_morning();
    let q = SlotQuery {
        time_of_day: TimeOfDay::Afternoon,
        max_results: 3,
        last_day: date("2026-03-06"),
        ..query(&cal, "checkup", "2026-03-02")
    };
    let slots = cal.free_slots(now, &q, &[]);
    assert_eq!(
        local_times(&cal, &slots),
        vec!["2026-03-02T13:30", "2026-03-02T13:45", "2026-03-02T14:00"]
    );
    let q = SlotQuery {
        time_of_day: TimeOfDay::Evening,
        ..q
    };
    let slots = cal.free_slots(now, &q, &[]);
    assert_eq!(local_times(&cal, &slots)[0], "2026-03-02T17:00");
    assert!(slots
        .iter()
        .all(|s| ClockTime::of(to_local(cal.tz(), s.start).time()) >= TimeOfDay::EVENING_START));
    let q = SlotQuery {
        max_results: 0,
        ..q
    };
    assert!(cal.free_slots(now, &q, &[]).is_empty());
}

#[test]
fn nearest_slots_pick_both_sides() {
    let cal = clinic();
    let now = monday_morning();
    let all = cal.free_slots(now, &query(&cal, "checkup", "2026-03-03"), &[]);
    let near = nearest_slots(all, utc("2026-03-03T09:00"), 3);
    assert_eq!(
        local_times(&cal, &near),
        vec!["2026-03-03T09:45", "2026-03-03T10:00", "2026-03-03T10:15"]
    );
}

#[test]
fn lookup_by_key_name_or_unique_part() {
    let cal = clinic();
    assert_eq!(cal.resolve_service("checkup").unwrap().key, "checkup");
    assert_eq!(
        cal.resolve_service("Teeth Whitening").unwrap().key,
        "whitening"
    );
    assert_eq!(cal.resolve_service("cleaning").unwrap().key, "checkup");
    assert_eq!(
        cal.resolve_service("xray"),
        Err(RuleError::UnknownService {
            query: "xray".into()
        })
    );
    assert!(matches!(
        cal.resolve_service("e"),
        Err(RuleError::AmbiguousService { .. })
    ));
    assert!(matches!(
        cal.resolve_service("  "),
        Err(RuleError::UnknownService { .. })
    ));
    assert_eq!(cal.resolve_provider("Weber").unwrap().key, "weber");
    assert!(matches!(
        cal.resolve_provider("Dr."),
        Err(RuleError::AmbiguousProvider { .. })
    ));
    assert_eq!(
        cal.format_price(cal.service_by_key("checkup").unwrap())
            .as_deref(),
        Some("89.00 EUR")
    );
    assert_eq!(
        cal.format_price(cal.service_by_key("whitening").unwrap()),
        None
    );
}

#[test]
fn rule_error_messages_are_lowercase_and_specific() {
    let e = RuleError::ProviderUnavailable {
        provider: Some("Dr. Jonas Novak".into()),
        reason: "vacation".into(),
    };
    assert_eq!(
        e.to_string(),
        "Dr. Jonas Novak is not available at the requested time (vacation)"
    );
    let e = RuleError::Closed {
        date: date("2026-12-24"),
        reason: String::new(),
    };
    assert_eq!(e.to_string(), "the business is closed on 2026-12-24");
    let _ = Duration::zero();
}

#[test]
fn fixed_clock_moves_only_when_told() {
    use super::{FixedClock, WallClock};
    let c = FixedClock::new(monday_morning());
    assert_eq!(c.now(), monday_morning());
    c.advance(Duration::minutes(5));
    assert_eq!(c.now(), utc("2026-03-02T07:15"));
    c.set(utc("2026-01-01T00:00"));
    assert_eq!(c.now(), utc("2026-01-01T00:00"));
}

/// STYLE §1: the calendar core stays sans-IO. Only `SystemClock` reads the wall clock.
#[test]
fn core_does_no_io() {
    let sources = [
        ("mod.rs", include_str!("mod.rs")),
        ("model.rs", include_str!("model.rs")),
        ("phone.rs", include_str!("phone.rs")),
        ("rules.rs", include_str!("rules.rs")),
        ("time.rs", include_str!("time.rs")),
    ];
    for (name, src) in sources {
        let code = src.lines().filter(|l| !l.trim_start().starts_with("//"));
        for line in code {
            for banned in [
                "tokio",
                "sqlx",
                "std::fs",
                "std::net",
                "Instant::now",
                "SystemTime",
            ] {
                assert!(!line.contains(banned), "{name} uses {banned}: {line}");
            }
        }
    }
    let clock_reads: usize = sources
        .iter()
        .map(|(_, s)| s.matches("Utc::now()").count())
        .sum();
    assert_eq!(clock_reads, 1, "only SystemClock may read the clock");
}
