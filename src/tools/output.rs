//! The JSON the model reads back: successful results and structured failures.
//!
//! Every result is one JSON object. Success: `{"ok": true, …}`. Failure:
//! `{"ok": false, "error": {"code": "slot_taken", "message": "…"}, …}` where `code` is a stable
//! snake_case identifier (listed in `docs/calendar.md`), `message` is an instruction the model can
//! act on or paraphrase to the caller, and extra keys (such as `alternatives`) carry what it needs
//! to continue the conversation. Times are local to the business, see [`local`].

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde_json::{json, Map, Value};

use crate::calendar::model::weekday_name;
use crate::calendar::time::{format_local, LocalInputError};
use crate::calendar::{Appointment, BusinessCalendar, RuleError, Slot};

/// A structured failure for the model.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    /// Stable snake_case code.
    pub(crate) code: &'static str,
    /// What happened and what to do, for the model.
    pub(crate) message: String,
    /// Extra top-level keys of the result.
    pub(crate) extra: Map<String, Value>,
}

impl Failure {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            extra: Map::new(),
        }
    }

    /// Adds a top-level key.
    pub(crate) fn with(mut self, key: &str, value: Value) -> Failure {
        self.extra.insert(key.to_owned(), value);
        self
    }

    /// Adds the business's IANA zone (`timezone`), for failures that mention local times.
    pub(crate) fn in_zone(self, cal: &BusinessCalendar) -> Failure {
        self.with("timezone", json!(cal.business.timezone.name()))
    }

    pub(crate) fn invalid(problems: Vec<String>) -> Failure {
        Failure::new(
            "invalid_arguments",
            "The arguments were not valid. Fix them and call the function again; ask the caller if information is missing.",
        )
        .with("problems", json!(problems))
    }

    pub(crate) fn internal() -> Failure {
        Failure::new(
            "internal_error",
            "The calendar is not available right now. Apologise, and offer to take a message or to have the clinic call back.",
        )
    }

    /// The `function_call_output` text and the error summary for the log.
    pub(crate) fn render(self) -> (String, String) {
        let summary = format!("{}: {}", self.code, self.message);
        let mut obj = Map::new();
        obj.insert("ok".into(), Value::Bool(false));
        obj.insert(
            "error".into(),
            json!({"code": self.code, "message": self.message}),
        );
        obj.extend(self.extra);
        (Value::Object(obj).to_string(), summary)
    }
}

/// A local time for the model (`2026-03-02T09:30`, with offset only in a repeated DST hour).
pub(crate) fn local(cal: &BusinessCalendar, t: DateTime<Utc>) -> String {
    format_local(cal.tz(), t)
}

/// `2026-03-02 (Monday)`.
pub(crate) fn day_label(d: NaiveDate) -> String {
    format!("{} ({})", d.format("%Y-%m-%d"), weekday_name(d.weekday()))
}

/// One free slot.
pub(crate) fn slot_json(cal: &BusinessCalendar, s: &Slot) -> Value {
    let names: Vec<&str> = s
        .providers
        .iter()
        .filter_map(|k| cal.provider_by_key(k).map(|p| p.name.as_str()))
        .collect();
    json!({
        "start": local(cal, s.start),
        "end": local(cal, s.end),
        "weekday": weekday_name(cal.local_date(s.start).weekday()),
        "providers": names,
    })
}

pub(crate) fn slots_json(cal: &BusinessCalendar, slots: &[Slot]) -> Value {
    Value::Array(slots.iter().map(|s| slot_json(cal, s)).collect())
}

/// One appointment; `reveal` = false hides the confirmation code and all but the last digits of
/// the phone number (for look-ups by name).
pub(crate) fn appointment_json(cal: &BusinessCalendar, a: &Appointment, reveal: bool) -> Value {
    let mut v = json!({
        "service": a.service_name,
        "provider": a.provider_name,
        "start": local(cal, a.start),
        "end": local(cal, a.end),
        "weekday": weekday_name(cal.local_date(a.start).weekday()),
        "customer_name": a.customer_name,
        "status": a.status.as_str(),
    });
    if reveal {
        v["confirmation_code"] = json!(a.confirmation_code);
        v["phone"] = json!(a.phone);
        if !a.notes.is_empty() {
            v["notes"] = json!(a.notes);
        }
    } else {
        v["phone"] = json!(crate::calendar::phone::masked(&a.phone, 2));
    }
    v
}

/// Maps a rule violation to a failure; `alternatives` are attached where the caller needs a
/// different time.
pub(crate) fn rule_failure(
    cal: &BusinessCalendar,
    e: &RuleError,
    alternatives: &[Slot],
) -> Failure {
    rule_failure_inner(cal, e, alternatives).in_zone(cal)
}

fn rule_failure_inner(cal: &BusinessCalendar, e: &RuleError, alternatives: &[Slot]) -> Failure {
    let alt = |f: Failure| {
        if alternatives.is_empty() {
            f
        } else {
            f.with("alternatives", slots_json(cal, alternatives))
        }
    };
    match e {
        RuleError::UnknownService { query } => Failure::new(
            "unknown_service",
            format!("There is no service called {query:?}. Use one of the listed services."),
        )
        .with(
            "services",
            json!(cal.services.iter().map(|s| json!({"id": s.key, "name": s.name})).collect::<Vec<_>>()),
        ),
        RuleError::AmbiguousService { query, matches } => Failure::new(
            "ambiguous_service",
            format!("{query:?} matches several services; ask the caller which one."),
        )
        .with("matches", json!(matches)),
        RuleError::UnknownProvider { query } => Failure::new(
            "unknown_provider",
            format!("There is nobody called {query:?} here. Use one of the listed providers, or leave the provider out."),
        )
        .with(
            "providers",
            json!(cal.providers.iter().map(|p| json!({"id": p.key, "name": p.name, "role": p.role})).collect::<Vec<_>>()),
        ),
        RuleError::AmbiguousProvider { query, matches } => Failure::new(
            "ambiguous_provider",
            format!("{query:?} matches several providers; ask the caller which one."),
        )
        .with("matches", json!(matches)),
        RuleError::ProviderDoesNotOffer { provider, service } => {
            let who: Vec<&str> = cal
                .resolve_service(service)
                .map(|s| cal.providers_for(s).map(|p| p.name.as_str()).collect())
                .unwrap_or_default();
            Failure::new(
                "provider_does_not_offer",
                format!("{provider} does not offer {service}. Offer one of the providers who do."),
            )
            .with("providers_offering", json!(who))
        }
        RuleError::InPast { .. } => alt(Failure::new(
            "in_past",
            "That time is in the past. Ask the caller for a future time.",
        )),
        RuleError::TooSoon { earliest } => alt(Failure::new(
            "too_soon",
            format!(
                "That is too soon: appointments need {} minutes' notice. The earliest possible start is {}.",
                cal.rules.min_lead_minutes,
                local(cal, *earliest)
            ),
        )
        .with("earliest_start", json!(local(cal, *earliest)))),
        RuleError::BeyondHorizon { last_day } => Failure::new(
            "beyond_horizon",
            format!(
                "Appointments can only be booked up to {} days ahead, until {}.",
                cal.rules.max_days_ahead,
                day_label(*last_day)
            ),
        )
        .with("last_bookable_day", json!(last_day.format("%Y-%m-%d").to_string())),
        RuleError::Closed { date, reason } => alt(Failure::new(
            "closed",
            if reason.is_empty() {
                format!("The clinic is closed then ({}).", day_label(*date))
            } else {
                format!("The clinic is closed then ({}): {reason}.", day_label(*date))
            },
        )),
        RuleError::OutsideHours { date, hours } => alt(Failure::new(
            "outside_hours",
            if hours.is_empty() {
                format!("The clinic is closed on {}.", day_label(*date))
            } else {
                format!(
                    "That is outside opening hours; on {} the clinic is open {}, and the appointment must end by closing time.",
                    day_label(*date),
                    hours.iter().map(ToString::to_string).collect::<Vec<_>>().join(" and ")
                )
            },
        )
        .with("opening_hours", json!(hours.iter().map(ToString::to_string).collect::<Vec<_>>()))),
        RuleError::ProviderUnavailable { provider, reason } => {
            let who = provider.as_deref().unwrap_or("Nobody who offers this service");
            let why = if reason.is_empty() { String::new() } else { format!(" ({reason})") };
            alt(Failure::new(
                "provider_unavailable",
                format!("{who} is not working at that time{why}."),
            ))
        }
    }
}

/// Maps a date-time parse/resolve error of argument `field` to a failure.
pub(crate) fn time_failure(cal: &BusinessCalendar, field: &str, e: &LocalInputError) -> Failure {
    time_failure_inner(cal, field, e).in_zone(cal)
}

fn time_failure_inner(cal: &BusinessCalendar, field: &str, e: &LocalInputError) -> Failure {
    match e {
        LocalInputError::Nonexistent { local: l, jump, .. } => Failure::new(
            "nonexistent_local_time",
            format!(
                "{l} does not exist: the clocks jump forward that night. The next valid time is {}.",
                local(cal, *jump)
            ),
        )
        .with("next_valid_time", json!(local(cal, *jump))),
        LocalInputError::Ambiguous { earlier, later, .. } => Failure::new(
            "ambiguous_local_time",
            "That time occurs twice because the clocks go back that night. Ask the caller which one, then send one of the options exactly as written.",
        )
        .with("options", json!([local(cal, *earlier), local(cal, *later)])),
        other => Failure::invalid(vec![format!("{field}: {other}")]),
    }
}
