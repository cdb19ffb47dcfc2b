//! The six calendar functions: argument validation, the calendar rules, and the store calls.
//!
//! Each handler takes the raw arguments JSON and returns the result object or a [`Failure`];
//! [`super::call`] adds the timeout, panic isolation and logging. Handlers never build SQL
//! (STYLE §8) and never read the clock except through `ToolContext::clock`.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::output::{
    appointment_json, day_label, local, rule_failure, slots_json, time_failure, Failure,
};
use super::schema::{
    DEFAULT_RESULTS, MAX_NAME_CHARS, MAX_NOTES_CHARS, MAX_RANGE_DAYS, MAX_RESULTS,
};
use super::ToolContext;
use crate::calendar::model::weekday_name;
use crate::calendar::phone::{normalize, phones_match};
use crate::calendar::rules::nearest_slots;
use crate::calendar::time::{instant_of, parse_local, ClockTime, TimeOfDay};
use crate::calendar::{
    AppointmentStatus, BookingCheck, BusinessCalendar, Provider, RuleError, Service, Slot,
    SlotQuery,
};
use crate::store::calendar as db;

/// What a handler produces.
pub(crate) type Outcome = Result<Value, Failure>;

/// Alternatives offered after a refused time.
const ALTERNATIVES: usize = 3;
/// Days searched for alternatives, from the requested day.
const ALTERNATIVE_DAYS: i64 = 7;
/// Days searched for `next_available` after an empty range.
const NEXT_AVAILABLE_DAYS: i64 = 30;
/// Appointments returned by `find_appointments`.
const FIND_LIMIT: usize = 10;
/// Days of closures listed by `get_business_info`.
const CLOSURE_LOOKAHEAD_DAYS: i64 = 60;

// -------------------------------------------------------------------------------------------
// Arguments
// -------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "check_availability arguments")]
struct CheckArgs {
    service: String,
    date: Option<String>,
    date_from: Option<String>,
    date_to: Option<String>,
    time_of_day: Option<String>,
    provider: Option<String>,
    max_results: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "book_appointment arguments")]
struct BookArgs {
    service: String,
    start: String,
    customer_name: String,
    phone: Option<String>,
    notes: Option<String>,
    provider: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "find_appointments arguments")]
struct FindArgs {
    phone: Option<String>,
    name: Option<String>,
    date: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "reschedule_appointment arguments")]
struct RescheduleArgs {
    confirmation_code: String,
    new_start: String,
    phone: Option<String>,
    provider: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "cancel_appointment arguments")]
struct CancelArgs {
    confirmation_code: String,
    phone: Option<String>,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "get_business_info arguments")]
struct InfoArgs {}

/// Parses the arguments, which must be a JSON object; an empty string counts as `{}`.
fn parse_args<T: DeserializeOwned>(text: &str) -> Result<T, Failure> {
    let text = if text.trim().is_empty() { "{}" } else { text };
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Failure::invalid(vec![format!("arguments are not valid JSON: {e}")]))?;
    if !value.is_object() {
        return Err(Failure::invalid(vec![
            "arguments must be a JSON object".into()
        ]));
    }
    serde_json::from_value(value).map_err(|e| Failure::invalid(vec![e.to_string()]))
}

/// A trimmed optional string; empty means absent.
fn opt(s: Option<String>) -> Option<String> {
    s.map(|x| x.trim().to_owned()).filter(|x| !x.is_empty())
}

/// `None`/empty/"any" provider means no preference.
fn opt_provider(s: Option<String>) -> Option<String> {
    opt(s).filter(|p| {
        !matches!(
            p.to_ascii_lowercase().as_str(),
            "any" | "anyone" | "no preference"
        )
    })
}

fn parse_date(field: &str, s: &str, problems: &mut Vec<String>) -> Option<NaiveDate> {
    match NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
        Ok(d) if s.trim().len() == 10 => Some(d),
        _ => {
            problems.push(format!("{field}: invalid date {s:?} (expected YYYY-MM-DD)"));
            None
        }
    }
}

fn check_len(field: &str, s: &str, max: usize, problems: &mut Vec<String>) {
    let n = s.chars().count();
    if n > max {
        problems.push(format!("{field}: too long ({n} characters, at most {max})"));
    }
}

/// Confirmation code as stored: upper case, spaces and dashes removed.
fn normalize_code(s: &str, problems: &mut Vec<String>) -> String {
    let code: String = s
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.'))
        .flat_map(char::to_uppercase)
        .collect();
    if code.is_empty() || code.len() > 12 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
        problems.push(format!(
            "confirmation_code: invalid code {s:?} (letters and digits)"
        ));
    }
    code
}

/// The phone to use: the argument if given (must be a number), else the caller's number.
fn phone_or_caller(
    ctx: &ToolContext,
    given: Option<String>,
    problems: &mut Vec<String>,
) -> Option<String> {
    match given {
        Some(p) => match normalize(&p) {
            Some(n) => Some(n),
            None => {
                problems.push(format!("phone: {p:?} is not a phone number"));
                None
            }
        },
        None => ctx.caller_number.as_deref().and_then(normalize),
    }
}

fn phone_required() -> Failure {
    Failure::new(
        "phone_required",
        "The caller's number is unknown. Ask the caller for their phone number and pass it as phone.",
    )
}

fn request_key(parts: &[&str]) -> String {
    parts.join("\u{1f}")
}

// -------------------------------------------------------------------------------------------
// Shared steps
// -------------------------------------------------------------------------------------------

fn store_failure(e: db::Error) -> Failure {
    match e {
        db::Error::UnknownBusiness(key) => {
            tracing::warn!(business = %key, "tool call for a business without calendar");
            Failure::new(
                "calendar_not_configured",
                "No appointment calendar is set up for this line. Apologise and offer to take a message.",
            )
        }
        other if other.is_unreachable() => {
            tracing::error!(error = %other, "calendar database unreachable");
            Failure::new(
                "calendar_unreachable",
                "I can't reach the calendar right now. Tell the caller so, apologise, and offer to take a message or to have the clinic call back; nothing was booked or changed.",
            )
        }
        other => {
            tracing::error!(error = %other, "calendar store failed");
            Failure::internal()
        }
    }
}

/// The business key of the context, or the only business when it is empty.
async fn business_key(ctx: &ToolContext) -> Result<String, Failure> {
    if !ctx.business.is_empty() {
        return Ok(ctx.business.clone());
    }
    let keys = db::business_keys(&ctx.store).await.map_err(store_failure)?;
    match keys.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(store_failure(db::Error::UnknownBusiness(String::new()))),
    }
}

async fn load(ctx: &ToolContext) -> Result<BusinessCalendar, Failure> {
    let key = business_key(ctx).await?;
    db::load_calendar(&ctx.store, &key)
        .await
        .map_err(store_failure)
}

/// Booked time of the business around local days `[first, last]` (a day of margin each side
/// for buffers and DST).
async fn busy_for(
    ctx: &ToolContext,
    cal: &BusinessCalendar,
    first: NaiveDate,
    last: NaiveDate,
) -> Result<Vec<crate::calendar::Busy>, Failure> {
    let from = instant_of(cal.tz(), ClockTime::MIDNIGHT.on(first)) - Duration::days(1);
    let to = instant_of(cal.tz(), ClockTime::END_OF_DAY.on(last)) + Duration::days(1);
    db::busy(&ctx.store, &cal.business.key, from, to)
        .await
        .map_err(store_failure)
}

/// The free slots nearest to `around` (not before the earliest allowed start), within a week.
async fn alternatives(
    ctx: &ToolContext,
    cal: &BusinessCalendar,
    service: &Service,
    provider: Option<&Provider>,
    around: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<Slot> {
    let around = around.max(cal.earliest_start(now));
    let first = cal.local_date(around);
    let last = first + Duration::days(ALTERNATIVE_DAYS - 1);
    let Ok(busy) = busy_for(ctx, cal, first, last).await else {
        return Vec::new();
    };
    let q = SlotQuery {
        service,
        provider,
        first_day: first,
        last_day: last,
        time_of_day: TimeOfDay::Any,
        max_results: 200,
    };
    nearest_slots(cal.free_slots(now, &q, &busy), around, ALTERNATIVES)
}

/// Whether a refused time deserves alternatives.
fn wants_alternatives(e: &RuleError) -> bool {
    matches!(
        e,
        RuleError::InPast { .. }
            | RuleError::TooSoon { .. }
            | RuleError::Closed { .. }
            | RuleError::OutsideHours { .. }
            | RuleError::ProviderUnavailable { .. }
    )
}

fn resolve_service<'a>(cal: &'a BusinessCalendar, q: &str) -> Result<&'a Service, Failure> {
    cal.resolve_service(q)
        .map_err(|e| rule_failure(cal, &e, &[]))
}

fn resolve_provider<'a>(
    cal: &'a BusinessCalendar,
    q: Option<&str>,
) -> Result<Option<&'a Provider>, Failure> {
    q.map(|q| {
        cal.resolve_provider(q)
            .map_err(|e| rule_failure(cal, &e, &[]))
    })
    .transpose()
}

fn base(cal: &BusinessCalendar) -> Value {
    json!({"ok": true, "timezone": cal.business.timezone.name()})
}

fn service_json(cal: &BusinessCalendar, s: &Service) -> Value {
    let mut v = json!({
        "id": s.key,
        "name": s.name,
        "duration_minutes": s.duration_minutes,
        "providers": cal.providers_for(s).map(|p| p.name.as_str()).collect::<Vec<_>>(),
    });
    if let Some(p) = cal.format_price(s) {
        v["price"] = json!(p);
    }
    if !s.description.is_empty() {
        v["description"] = json!(s.description);
    }
    v
}

// -------------------------------------------------------------------------------------------
// Handlers
// -------------------------------------------------------------------------------------------

/// `get_business_info`.
pub(crate) async fn get_business_info(ctx: &ToolContext, args: &str) -> Outcome {
    let InfoArgs {} = parse_args(args)?;
    let cal = load(ctx).await?;
    let now = ctx.clock.now();
    let today = cal.local_date(now);
    let hours: Vec<Value> = cal
        .hours
        .iter()
        .map(|(day, ranges)| {
            let open: Vec<String> = ranges.iter().map(ToString::to_string).collect();
            json!({"day": weekday_name(day), "hours": if open.is_empty() { json!("closed") } else { json!(open) }})
        })
        .collect();
    let closures: Vec<Value> = cal
        .closures_between(today, today + Duration::days(CLOSURE_LOOKAHEAD_DAYS), None)
        .into_iter()
        .chain(cal.closures.iter().filter(|c| {
            c.provider.is_some()
                && c.last_day >= today
                && c.first_day <= today + Duration::days(CLOSURE_LOOKAHEAD_DAYS)
        }))
        .map(|c| {
            let mut v = json!({
                "from": c.first_day.format("%Y-%m-%d").to_string(),
                "to": c.last_day.format("%Y-%m-%d").to_string(),
                "reason": c.reason,
            });
            if let Some(t) = c.times {
                v["hours"] = json!(t.to_string());
            }
            if let Some(p) = c.provider.as_deref().and_then(|k| cal.provider_by_key(k)) {
                v["provider"] = json!(p.name);
            }
            v
        })
        .collect();
    let mut out = base(&cal);
    out["name"] = json!(cal.business.name);
    out["address"] = json!(cal.business.address);
    out["phone"] = json!(cal.business.phone);
    out["today"] = json!(day_label(today));
    out["now"] = json!(local(&cal, now));
    out["opening_hours"] = json!(hours);
    out["services"] = json!(cal
        .services
        .iter()
        .map(|s| service_json(&cal, s))
        .collect::<Vec<_>>());
    out["providers"] = json!(cal
        .providers
        .iter()
        .map(|p| json!({"id": p.key, "name": p.name, "role": p.role}))
        .collect::<Vec<_>>());
    out["booking"] = json!({
        "min_notice_minutes": cal.rules.min_lead_minutes,
        "bookable_until": cal.last_bookable_day(now).format("%Y-%m-%d").to_string(),
    });
    out["upcoming_closures"] = json!(closures);
    Ok(out)
}

/// `check_availability`.
pub(crate) async fn check_availability(ctx: &ToolContext, args: &str) -> Outcome {
    let a: CheckArgs = parse_args(args)?;
    let mut problems = Vec::new();
    let date = opt(a.date).and_then(|s| parse_date("date", &s, &mut problems));
    let from = opt(a.date_from).and_then(|s| parse_date("date_from", &s, &mut problems));
    let to = opt(a.date_to).and_then(|s| parse_date("date_to", &s, &mut problems));
    let time_of_day = match opt(a.time_of_day) {
        None => TimeOfDay::Any,
        Some(s) => s.parse::<TimeOfDay>().unwrap_or_else(|e| {
            problems.push(format!("time_of_day: {e}"));
            TimeOfDay::Any
        }),
    };
    let max_results = match a.max_results {
        None => DEFAULT_RESULTS,
        Some(n) if (1..=i64::from(MAX_RESULTS)).contains(&n) => {
            u32::try_from(n).unwrap_or(DEFAULT_RESULTS)
        }
        Some(n) => {
            problems.push(format!(
                "max_results: {n} is not between 1 and {MAX_RESULTS}"
            ));
            DEFAULT_RESULTS
        }
    };
    if date.is_some() && (from.is_some() || to.is_some()) {
        problems.push("date: give either date or date_from/date_to, not both".into());
    }
    let service_q = a.service.trim().to_owned();
    if service_q.is_empty() {
        problems.push("service: missing".into());
    }
    if !problems.is_empty() {
        return Err(Failure::invalid(problems));
    }

    let cal = load(ctx).await?;
    let now = ctx.clock.now();
    let today = cal.local_date(now);
    let service = resolve_service(&cal, &service_q)?;
    let provider = resolve_provider(&cal, opt_provider(a.provider).as_deref())?;
    if let Some(p) = provider {
        if !service.providers.contains(&p.key) {
            let e = RuleError::ProviderDoesNotOffer {
                provider: p.name.clone(),
                service: service.name.clone(),
            };
            return Err(rule_failure(&cal, &e, &[]));
        }
    }
    let (first, last) = match date {
        Some(d) => (d, d),
        None => {
            let first = from.unwrap_or(today);
            (first, to.unwrap_or(first + Duration::days(6)))
        }
    };
    if last < first {
        return Err(Failure::invalid(vec![format!(
            "date_to: {last} is before date_from {first}"
        )]));
    }
    if (last - first).num_days() >= MAX_RANGE_DAYS {
        return Err(Failure::invalid(vec![format!(
            "date_to: the range is longer than {MAX_RANGE_DAYS} days; search a shorter range"
        )]));
    }
    if last < today {
        return Err(Failure::new(
            "in_past",
            format!(
                "Those dates are in the past; today is {}.",
                day_label(today)
            ),
        ));
    }
    let last_bookable = cal.last_bookable_day(now);
    if first > last_bookable {
        let e = RuleError::BeyondHorizon {
            last_day: last_bookable,
        };
        return Err(rule_failure(&cal, &e, &[]));
    }

    let query = SlotQuery {
        service,
        provider,
        first_day: first,
        last_day: last,
        time_of_day,
        max_results: max_results as usize,
    };
    let busy = busy_for(ctx, &cal, first.max(today), last).await?;
    let slots = cal.free_slots(now, &query, &busy);

    let mut out = base(&cal);
    out["today"] = json!(day_label(today));
    out["service"] = service_json(&cal, service);
    if let Some(p) = provider {
        out["provider"] = json!(p.name);
    }
    out["searched"] = json!({
        "from": first.max(today).format("%Y-%m-%d").to_string(),
        "to": last.min(last_bookable).format("%Y-%m-%d").to_string(),
        "time_of_day": time_of_day.as_str(),
    });
    out["slots"] = slots_json(&cal, &slots);
    let closures: Vec<Value> = cal
        .closures_between(first, last, provider.map(|p| p.key.as_str()))
        .into_iter()
        .map(|c| {
            json!({
                "from": c.first_day.format("%Y-%m-%d").to_string(),
                "to": c.last_day.format("%Y-%m-%d").to_string(),
                "hours": c.times.map(|t| t.to_string()).unwrap_or_else(|| "all day".into()),
                "reason": c.reason,
                "who": c.provider.as_deref().and_then(|k| cal.provider_by_key(k)).map_or("whole clinic", |p| p.name.as_str()),
            })
        })
        .collect();
    if !closures.is_empty() {
        out["closures"] = json!(closures);
    }
    if slots.is_empty() {
        let next_first = last + Duration::days(1);
        let next_last = (next_first + Duration::days(NEXT_AVAILABLE_DAYS - 1)).min(last_bookable);
        let mut next = Vec::new();
        if next_first <= next_last {
            let busy = busy_for(ctx, &cal, next_first, next_last).await?;
            let q = SlotQuery {
                first_day: next_first,
                last_day: next_last,
                ..query
            };
            next = cal.free_slots(now, &q, &busy);
        }
        out["next_available"] = slots_json(&cal, &next);
        out["message"] = json!(if next.is_empty() {
            "No free times in the searched range or the following month. Offer to take a message."
        } else {
            "No free times in the searched range; next_available lists the next free times."
        });
    }
    Ok(out)
}

/// `book_appointment`.
pub(crate) async fn book_appointment(ctx: &ToolContext, args: &str) -> Outcome {
    let a: BookArgs = parse_args(args)?;
    let mut problems = Vec::new();
    let name = a.customer_name.trim().to_owned();
    if name.is_empty() {
        problems.push("customer_name: missing; ask the caller for their name".into());
    }
    check_len("customer_name", &name, MAX_NAME_CHARS, &mut problems);
    let notes = opt(a.notes).unwrap_or_default();
    check_len("notes", &notes, MAX_NOTES_CHARS, &mut problems);
    let start_input = parse_local(&a.start)
        .map_err(|e| problems.push(format!("start: {e}")))
        .ok();
    let phone = phone_or_caller(ctx, opt(a.phone), &mut problems);
    let service_q = a.service.trim().to_owned();
    if service_q.is_empty() {
        problems.push("service: missing".into());
    }
    if !problems.is_empty() {
        return Err(Failure::invalid(problems));
    }
    let (Some(phone), Some(start_input)) = (phone, start_input) else {
        return Err(phone_required());
    };

    let cal = load(ctx).await?;
    let now = ctx.clock.now();
    let service = resolve_service(&cal, &service_q)?;
    let provider_q = opt_provider(a.provider);
    let provider = resolve_provider(&cal, provider_q.as_deref())?;
    let start = start_input
        .resolve(cal.tz())
        .map_err(|e| time_failure(&cal, "start", &e))?;
    let eligible = match cal.check_booking(
        now,
        &BookingCheck {
            service,
            provider,
            start,
        },
    ) {
        Ok(e) => e,
        Err(e) => {
            let alts = if wants_alternatives(&e) {
                alternatives(ctx, &cal, service, provider, start, now).await
            } else {
                Vec::new()
            };
            return Err(rule_failure(&cal, &e, &alts));
        }
    };
    let start_text = db::db_time(start);
    let key = request_key(&[
        "book",
        &ctx.call_id,
        &cal.business.key,
        &service.key,
        provider.map_or("", |p| p.key.as_str()),
        &start_text,
        &name,
        &phone,
        &notes,
    ]);
    let booking = db::NewBooking {
        business: &cal.business.key,
        service: &service.key,
        providers: &eligible.providers,
        start: eligible.start,
        end: eligible.end,
        block_end: eligible.block_end,
        customer_name: &name,
        phone: &phone,
        notes: &notes,
        call_id: Some(&ctx.call_id),
        request_key: Some(&key),
        now,
    };
    match db::book(&ctx.store, &booking).await {
        Ok(b) => {
            let mut out = base(&cal);
            out["status"] = json!(b.appointment.status.as_str());
            out["confirmation_code"] = json!(b.appointment.confirmation_code);
            out["appointment"] = appointment_json(&cal, &b.appointment, true);
            out["already_booked"] = json!(b.replayed);
            out["message"] = json!(if b.replayed {
                "This booking was already made earlier in this call; do not book it again. Read the confirmation code to the caller."
            } else {
                "Booked. Read the confirmation code to the caller character by character."
            });
            Ok(out)
        }
        Err(db::BookError::SlotTaken { own: Some(own) }) => Err(Failure::new(
            "already_booked_in_this_call",
            "The caller already has an appointment at this time, booked earlier in this call. Do not book again; confirm the existing booking.",
        )
        .with("appointment", appointment_json(&cal, &own, true))
        .in_zone(&cal)),
        Err(db::BookError::SlotTaken { own: None }) => {
            let alts = alternatives(ctx, &cal, service, provider, start, now).await;
            let f = Failure::new(
                "slot_taken",
                if alts.is_empty() {
                    "That time was just taken, and there is nothing free nearby. Offer to check other days."
                } else {
                    "That time was just taken. Offer the caller the nearest free alternatives."
                },
            );
            Err(f
                .with("alternatives", slots_json(&cal, &alts))
                .in_zone(&cal))
        }
        Err(db::BookError::Unknown { .. }) => Err(Failure::internal()),
        Err(db::BookError::Store(e)) => Err(store_failure(e)),
    }
}

/// `find_appointments`.
pub(crate) async fn find_appointments(ctx: &ToolContext, args: &str) -> Outcome {
    let a: FindArgs = parse_args(args)?;
    let mut problems = Vec::new();
    let name = opt(a.name);
    let given_phone = opt(a.phone);
    let by_phone = given_phone.is_some() || name.is_none();
    let phone = if by_phone {
        phone_or_caller(ctx, given_phone, &mut problems)
    } else {
        None
    };
    let date = opt(a.date).and_then(|s| parse_date("date", &s, &mut problems));
    if let Some(n) = &name {
        check_len("name", n, MAX_NAME_CHARS, &mut problems);
    }
    if !problems.is_empty() {
        return Err(Failure::invalid(problems));
    }
    if by_phone && phone.is_none() {
        return Err(Failure::new(
            "phone_required",
            "The caller's number is unknown. Ask for the phone number or the name the appointment was booked under.",
        ));
    }
    let cal = load(ctx).await?;
    let now = ctx.clock.now();
    let (from, to) = match date {
        Some(d) => (
            instant_of(cal.tz(), ClockTime::MIDNIGHT.on(d)),
            Some(instant_of(cal.tz(), ClockTime::END_OF_DAY.on(d))),
        ),
        None => (now, None),
    };
    let filter = db::AppointmentFilter {
        business: Some(&cal.business.key),
        phone: phone.as_deref(),
        name: name.as_deref(),
        from: Some(from),
        to,
        limit: FIND_LIMIT,
        ..db::AppointmentFilter::default()
    };
    let found = db::find_appointments(&ctx.store, &filter)
        .await
        .map_err(store_failure)?;
    let caller = ctx.caller_number.as_deref();
    let list: Vec<Value> = found
        .iter()
        .map(|ap| {
            let reveal = by_phone || caller.is_some_and(|c| phones_match(c, &ap.phone));
            appointment_json(&cal, ap, reveal)
        })
        .collect();
    let mut out = base(&cal);
    out["searched_by"] = json!(match (by_phone, name.is_some()) {
        (true, true) => "phone and name",
        (true, false) => "phone",
        _ => "name",
    });
    if let Some(d) = date {
        out["date"] = json!(day_label(d));
    }
    out["count"] = json!(list.len());
    out["appointments"] = json!(list);
    if found.is_empty() {
        out["message"] = json!("No upcoming appointments found. Ask whether it was booked under another phone number or name.");
    }
    Ok(out)
}

/// `reschedule_appointment`.
pub(crate) async fn reschedule_appointment(ctx: &ToolContext, args: &str) -> Outcome {
    let a: RescheduleArgs = parse_args(args)?;
    let mut problems = Vec::new();
    let code = normalize_code(&a.confirmation_code, &mut problems);
    let start_input = parse_local(&a.new_start)
        .map_err(|e| problems.push(format!("new_start: {e}")))
        .ok();
    let phone = phone_or_caller(ctx, opt(a.phone), &mut problems);
    if !problems.is_empty() {
        return Err(Failure::invalid(problems));
    }
    let (Some(phone), Some(start_input)) = (phone, start_input) else {
        return Err(phone_required());
    };
    let cal = load(ctx).await?;
    let now = ctx.clock.now();
    let current = db::appointment_by_code(&ctx.store, &cal.business.key, &code)
        .await
        .map_err(store_failure)?
        .ok_or_else(|| not_found(&code))?;
    if !phones_match(&phone, &current.phone) {
        return Err(phone_mismatch());
    }
    if current.status != AppointmentStatus::Booked {
        return Err(cancelled_failure(&cal, &current));
    }
    let Some(service) = cal.service_by_key(&current.service) else {
        return Err(Failure::new(
            "service_unavailable",
            "This kind of appointment can no longer be moved by phone. Offer to take a message for the clinic.",
        ));
    };
    let provider_q = opt_provider(a.provider);
    let provider = resolve_provider(&cal, provider_q.as_deref())?;
    let start = start_input
        .resolve(cal.tz())
        .map_err(|e| time_failure(&cal, "new_start", &e))?;
    let mut eligible = match cal.check_booking(
        now,
        &BookingCheck {
            service,
            provider,
            start,
        },
    ) {
        Ok(e) => e,
        Err(e) => {
            let alts = if wants_alternatives(&e) {
                alternatives(ctx, &cal, service, provider, start, now).await
            } else {
                Vec::new()
            };
            return Err(rule_failure(&cal, &e, &alts));
        }
    };
    // Keep the same provider when they are free.
    if let Some(i) = eligible
        .providers
        .iter()
        .position(|k| *k == current.provider)
    {
        let same = eligible.providers.remove(i);
        eligible.providers.insert(0, same);
    }
    let start_text = db::db_time(start);
    let key = request_key(&[
        "reschedule",
        &ctx.call_id,
        &cal.business.key,
        &code,
        provider.map_or("", |p| p.key.as_str()),
        &start_text,
    ]);
    let change = db::Reschedule {
        business: &cal.business.key,
        code: &code,
        phone: &phone,
        expected_id: current.id,
        providers: &eligible.providers,
        start: eligible.start,
        end: eligible.end,
        block_end: eligible.block_end,
        call_id: Some(&ctx.call_id),
        request_key: Some(&key),
        now,
    };
    match db::reschedule(&ctx.store, &change).await {
        Ok(b) => {
            let mut out = base(&cal);
            out["status"] = json!("rescheduled");
            out["confirmation_code"] = json!(b.appointment.confirmation_code);
            out["appointment"] = appointment_json(&cal, &b.appointment, true);
            out["previous_start"] = json!(local(&cal, current.start));
            out["already_done"] = json!(b.replayed);
            out["message"] = json!("Moved. The confirmation code stays the same.");
            Ok(out)
        }
        Err(db::ChangeError::SlotTaken) | Err(db::ChangeError::Changed) => {
            let alts = alternatives(ctx, &cal, service, provider, start, now).await;
            Err(Failure::new(
                "slot_taken",
                "That time was just taken. Offer the caller the nearest free alternatives; the appointment was not changed.",
            )
            .with("alternatives", slots_json(&cal, &alts))
            .in_zone(&cal))
        }
        Err(e) => Err(change_failure(&cal, e)),
    }
}

/// `cancel_appointment`.
pub(crate) async fn cancel_appointment(ctx: &ToolContext, args: &str) -> Outcome {
    let a: CancelArgs = parse_args(args)?;
    let mut problems = Vec::new();
    let code = normalize_code(&a.confirmation_code, &mut problems);
    let phone = phone_or_caller(ctx, opt(a.phone), &mut problems);
    let reason = opt(a.reason).unwrap_or_default();
    check_len("reason", &reason, MAX_NOTES_CHARS, &mut problems);
    if !problems.is_empty() {
        return Err(Failure::invalid(problems));
    }
    let Some(phone) = phone else {
        return Err(phone_required());
    };
    let cal = load(ctx).await?;
    let now = ctx.clock.now();
    match db::cancel(&ctx.store, &cal.business.key, &code, &phone, &reason, now).await {
        Ok(c) => {
            let mut out = base(&cal);
            out["status"] = json!("cancelled");
            out["already_cancelled"] = json!(c.already);
            out["appointment"] = appointment_json(&cal, &c.appointment, true);
            out["message"] = json!(if c.already {
                "This appointment was already cancelled."
            } else {
                "Cancelled."
            });
            Ok(out)
        }
        Err(e) => Err(change_failure(&cal, e)),
    }
}

fn not_found(code: &str) -> Failure {
    Failure::new(
        "not_found",
        format!("No appointment has the confirmation code {code}. Ask the caller to spell it again, or look it up with find_appointments."),
    )
}

fn phone_mismatch() -> Failure {
    Failure::new(
        "phone_mismatch",
        "The phone number does not match this booking. Ask for the phone number the appointment was booked with; do not reveal the booking's details.",
    )
}

fn cancelled_failure(cal: &BusinessCalendar, a: &crate::calendar::Appointment) -> Failure {
    Failure::new(
        "appointment_cancelled",
        "This appointment was cancelled. Offer to book a new one.",
    )
    .with("appointment", appointment_json(cal, a, true))
    .in_zone(cal)
}

fn change_failure(cal: &BusinessCalendar, e: db::ChangeError) -> Failure {
    match e {
        db::ChangeError::NotFound(code) => not_found(&code),
        db::ChangeError::PhoneMismatch => phone_mismatch(),
        db::ChangeError::NotActive(a) => cancelled_failure(cal, &a),
        db::ChangeError::SlotTaken | db::ChangeError::Changed => Failure::new(
            "slot_taken",
            "That time was just taken; the appointment was not changed.",
        ),
        db::ChangeError::Store(e) => store_failure(e),
    }
}
