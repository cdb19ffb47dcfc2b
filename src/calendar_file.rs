//! The calendar file: one business's providers, services with prices, opening hours and closures,
//! in TOML, edited by the clinic's admin.
//!
//! Loading has two stages (STYLE §7): the text is parsed into raw serde structs that reject
//! unknown keys, then validated into a [`BusinessCalendar`]. Every problem carries the line and
//! column of the offending value, and validation reports all problems at once instead of stopping
//! at the first. The file is loaded at start or by `frontdesk calendar import FILE`, then upserted
//! into SQLite by `crate::store::calendar::import`. The format is documented in `docs/calendar.md`
//! and shown by `deploy/calendar.example.toml`.
//!
//! Only [`load`] touches the file system; [`parse`] is pure.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;

use chrono::{NaiveDate, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;
use toml::{Spanned, Value};

use crate::calendar::model::{
    BookingRules, Business, BusinessCalendar, Closure, Provider, ProviderKind, Service,
    WeeklyHours, DEFAULT_MAX_DAYS_AHEAD, DEFAULT_MIN_LEAD_MINUTES, DEFAULT_SLOT_INTERVAL_MINUTES,
};
use crate::calendar::time::{ClockTime, TimeRange};

/// Largest `min_lead_minutes` accepted: 30 days.
pub const MAX_LEAD_MINUTES: i64 = 30 * 24 * 60;
/// Largest `slot_interval_minutes` accepted: 12 hours.
pub const MAX_SLOT_INTERVAL_MINUTES: i64 = 12 * 60;
/// Largest `max_days_ahead` accepted: two years.
pub const MAX_DAYS_AHEAD: i64 = 731;
/// Largest service duration or buffer accepted, in minutes: one day.
pub const MAX_SERVICE_MINUTES: i64 = 24 * 60;

/// Errors of loading a calendar file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("failed to read calendar file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or breaks the format's rules.
    #[error("invalid calendar file {path}:{}", list(path, problems))]
    Invalid {
        /// The file.
        path: String,
        /// Every problem found, in file order.
        problems: Vec<Problem>,
    },
}

/// One problem in a calendar file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong (lowercase, no trailing period).
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

fn list(path: &str, problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("\n  {path}:{p}")).collect()
}

/// Reads and validates the calendar file at `path`.
///
/// # Errors
/// [`Error::Read`] if the file cannot be read, [`Error::Invalid`] with every problem otherwise.
pub fn load(path: &Path) -> Result<BusinessCalendar, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, path)
}

/// Validates calendar-file `text`; `path` only names the file in errors.
///
/// # Errors
/// [`Error::Invalid`] listing every problem with its line and column.
///
/// # Example
/// ```
/// # use std::path::Path;
/// let text = r#"
/// [business]
/// id = "demo"
/// name = "Demo Dental"
/// timezone = "America/New_York"
/// [hours]
/// mon = ["09:00-17:00"]
/// [[providers]]
/// id = "lee"
/// name = "Dr. Lee"
/// [[services]]
/// id = "checkup"
/// name = "Check-up"
/// duration_minutes = 30
/// providers = ["lee"]
/// "#;
/// let cal = frontdesk::calendar_file::parse(text, Path::new("demo.toml")).unwrap();
/// assert_eq!(cal.business.timezone, chrono_tz::America::New_York);
/// ```
pub fn parse(text: &str, path: &Path) -> Result<BusinessCalendar, Error> {
    let mut v = Validator {
        text,
        problems: Vec::new(),
    };
    let raw: RawFile = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            v.problem(span, e.message().trim_end_matches('.').to_owned());
            return Err(v.into_error(path));
        }
    };
    let cal = v.calendar(raw);
    if v.problems.is_empty() {
        Ok(cal)
    } else {
        Err(v.into_error(path))
    }
}

// -------------------------------------------------------------------------------------------
// Raw stage
// -------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    business: RawBusiness,
    #[serde(default)]
    booking: RawBooking,
    #[serde(default)]
    hours: RawWeek,
    #[serde(default)]
    providers: Vec<Spanned<RawProvider>>,
    #[serde(default)]
    services: Vec<Spanned<RawService>>,
    #[serde(default)]
    closures: Vec<Spanned<RawClosure>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBusiness {
    id: Spanned<String>,
    name: Spanned<String>,
    timezone: Spanned<String>,
    #[serde(default)]
    address: String,
    #[serde(default)]
    phone: String,
    currency: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBooking {
    min_lead_minutes: Option<Spanned<i64>>,
    slot_interval_minutes: Option<Spanned<i64>>,
    max_days_ahead: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWeek {
    mon: Option<Vec<Spanned<String>>>,
    tue: Option<Vec<Spanned<String>>>,
    wed: Option<Vec<Spanned<String>>>,
    thu: Option<Vec<Spanned<String>>>,
    fri: Option<Vec<Spanned<String>>>,
    sat: Option<Vec<Spanned<String>>>,
    sun: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    id: Spanned<String>,
    name: Spanned<String>,
    kind: Option<Spanned<String>>,
    #[serde(default)]
    role: String,
    hours: Option<RawWeek>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    id: Spanned<String>,
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    duration_minutes: Spanned<i64>,
    buffer_minutes: Option<Spanned<i64>>,
    price: Option<Spanned<Value>>,
    providers: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClosure {
    date: Option<Spanned<Value>>,
    from: Option<Spanned<Value>>,
    to: Option<Spanned<Value>>,
    start: Option<Spanned<String>>,
    end: Option<Spanned<String>>,
    provider: Option<Spanned<String>>,
    #[serde(default)]
    reason: String,
}

// -------------------------------------------------------------------------------------------
// Validation stage
// -------------------------------------------------------------------------------------------

struct Validator<'t> {
    text: &'t str,
    problems: Vec<Problem>,
}

impl Validator<'_> {
    fn problem(&mut self, span: Range<usize>, message: String) {
        let (line, column) = line_column(self.text, span.start);
        self.problems.push(Problem {
            line,
            column,
            message,
        });
    }

    fn into_error(mut self, path: &Path) -> Error {
        self.problems.sort_by_key(|p| (p.line, p.column));
        Error::Invalid {
            path: path.display().to_string(),
            problems: self.problems,
        }
    }

    fn calendar(&mut self, raw: RawFile) -> BusinessCalendar {
        let business = self.business(raw.business);
        let rules = self.rules(&raw.booking);
        let hours = self.week(&raw.hours);
        if hours.is_closed_all_week() {
            self.problem(
                0..0,
                "[hours] opens on no day; nothing could be booked".into(),
            );
        }

        let mut provider_keys = HashSet::new();
        let mut providers = Vec::new();
        for p in &raw.providers {
            let p = p.get_ref();
            self.key(&p.id, "provider");
            if !provider_keys.insert(p.id.get_ref().clone()) {
                self.problem(
                    p.id.span(),
                    format!("duplicate provider id {:?}", p.id.get_ref()),
                );
            }
            self.non_empty(&p.name, "provider name");
            let kind = match &p.kind {
                None => ProviderKind::Staff,
                Some(k) => ProviderKind::from_str(k.get_ref()).unwrap_or_else(|e| {
                    self.problem(k.span(), e);
                    ProviderKind::Staff
                }),
            };
            providers.push(Provider {
                key: p.id.get_ref().clone(),
                name: p.name.get_ref().trim().to_owned(),
                kind,
                role: p.role.trim().to_owned(),
                hours: p.hours.as_ref().map(|w| self.week(w)),
            });
        }

        let mut service_keys = HashSet::new();
        let mut services = Vec::new();
        let mut priced = None;
        for s in &raw.services {
            let s = s.get_ref();
            self.key(&s.id, "service");
            if !service_keys.insert(s.id.get_ref().clone()) {
                self.problem(
                    s.id.span(),
                    format!("duplicate service id {:?}", s.id.get_ref()),
                );
            }
            self.non_empty(&s.name, "service name");
            let duration = self.int(
                &s.duration_minutes,
                1,
                MAX_SERVICE_MINUTES,
                "duration_minutes",
            );
            let buffer = s
                .buffer_minutes
                .as_ref()
                .map_or(0, |b| self.int(b, 0, MAX_SERVICE_MINUTES, "buffer_minutes"));
            let price_cents = s.price.as_ref().and_then(|p| self.price(p));
            if price_cents.is_some() && priced.is_none() {
                priced = s.price.as_ref().map(Spanned::span);
            }
            let mut offered = Vec::new();
            if s.providers.get_ref().is_empty() {
                self.problem(
                    s.providers.span(),
                    "a service needs at least one provider".into(),
                );
            }
            for k in s.providers.get_ref() {
                if !provider_keys.contains(k.get_ref()) {
                    self.problem(k.span(), format!("unknown provider {:?}", k.get_ref()));
                } else if offered.contains(k.get_ref()) {
                    self.problem(k.span(), format!("provider {:?} listed twice", k.get_ref()));
                } else {
                    offered.push(k.get_ref().clone());
                }
            }
            services.push(Service {
                key: s.id.get_ref().clone(),
                name: s.name.get_ref().trim().to_owned(),
                description: s.description.trim().to_owned(),
                duration_minutes: duration,
                buffer_minutes: buffer,
                price_cents,
                providers: offered,
            });
        }
        if services.is_empty() {
            self.problem(0..0, "no [[services]]; nothing could be booked".into());
        }
        if let (Some(span), true) = (priced, business.currency.is_empty()) {
            self.problem(
                span,
                "prices need [business] currency (e.g. \"EUR\")".into(),
            );
        }

        let closures = raw
            .closures
            .iter()
            .filter_map(|c| self.closure(c, &provider_keys))
            .collect();

        BusinessCalendar {
            business,
            rules,
            hours,
            providers,
            services,
            closures,
        }
    }

    fn business(&mut self, b: RawBusiness) -> Business {
        self.key(&b.id, "business");
        self.non_empty(&b.name, "business name");
        let timezone = Tz::from_str(b.timezone.get_ref().trim()).unwrap_or_else(|_| {
            self.problem(
                b.timezone.span(),
                format!(
                    "unknown time zone {:?} (use an IANA name like \"Europe/Berlin\")",
                    b.timezone.get_ref()
                ),
            );
            Tz::UTC
        });
        let currency = match &b.currency {
            None => String::new(),
            Some(c) => {
                let code = c.get_ref().trim();
                if code.len() == 3 && code.bytes().all(|x| x.is_ascii_uppercase()) {
                    code.to_owned()
                } else {
                    self.problem(
                        c.span(),
                        format!(
                            "invalid currency {:?} (expected an ISO 4217 code like \"EUR\")",
                            code
                        ),
                    );
                    String::new()
                }
            }
        };
        Business {
            key: b.id.into_inner(),
            name: b.name.into_inner().trim().to_owned(),
            timezone,
            address: b.address.trim().to_owned(),
            phone: b.phone.trim().to_owned(),
            currency,
        }
    }

    fn rules(&mut self, b: &RawBooking) -> BookingRules {
        let mut get = |v: &Option<Spanned<i64>>, min, max, default: u32, what| match v {
            None => default,
            Some(x) => self.int(x, min, max, what),
        };
        BookingRules {
            min_lead_minutes: get(
                &b.min_lead_minutes,
                0,
                MAX_LEAD_MINUTES,
                DEFAULT_MIN_LEAD_MINUTES,
                "min_lead_minutes",
            ),
            slot_interval_minutes: get(
                &b.slot_interval_minutes,
                1,
                MAX_SLOT_INTERVAL_MINUTES,
                DEFAULT_SLOT_INTERVAL_MINUTES,
                "slot_interval_minutes",
            ),
            max_days_ahead: get(
                &b.max_days_ahead,
                0,
                MAX_DAYS_AHEAD,
                DEFAULT_MAX_DAYS_AHEAD,
                "max_days_ahead",
            ),
        }
    }

    fn week(&mut self, w: &RawWeek) -> WeeklyHours {
        let mut hours = WeeklyHours::new();
        let days = [
            (Weekday::Mon, &w.mon),
            (Weekday::Tue, &w.tue),
            (Weekday::Wed, &w.wed),
            (Weekday::Thu, &w.thu),
            (Weekday::Fri, &w.fri),
            (Weekday::Sat, &w.sat),
            (Weekday::Sun, &w.sun),
        ];
        for (day, ranges) in days {
            let mut parsed: Vec<(TimeRange, Range<usize>)> = Vec::new();
            for r in ranges.iter().flatten() {
                match r.get_ref().parse::<TimeRange>() {
                    Ok(tr) => {
                        if let Some((prev, _)) = parsed.iter().find(|(p, _)| p.overlaps(&tr)) {
                            self.problem(r.span(), format!("range {tr} overlaps {prev}"));
                        }
                        parsed.push((tr, r.span()));
                    }
                    Err(e) => self.problem(r.span(), e.to_string()),
                }
            }
            hours.set(day, parsed.into_iter().map(|(r, _)| r).collect());
        }
        hours
    }

    fn closure(&mut self, c: &Spanned<RawClosure>, providers: &HashSet<String>) -> Option<Closure> {
        let span = c.span();
        let c = c.get_ref();
        let (first, last) = match (&c.date, &c.from, &c.to) {
            (Some(d), None, None) => {
                let d = self.date(d)?;
                (d, d)
            }
            (None, Some(f), Some(t)) => {
                let (f2, t2) = (self.date(f), self.date(t));
                let (f2, t2) = (f2?, t2?);
                if t2 < f2 {
                    self.problem(
                        t.span(),
                        format!("closure ends ({t2}) before it starts ({f2})"),
                    );
                    return None;
                }
                (f2, t2)
            }
            _ => {
                self.problem(
                    span,
                    "a closure needs either `date` or both `from` and `to`".into(),
                );
                return None;
            }
        };
        let times = match (&c.start, &c.end) {
            (None, None) => None,
            (Some(s), Some(e)) => {
                let start = s.get_ref().parse::<ClockTime>();
                let end = e.get_ref().parse::<ClockTime>();
                match (start, end) {
                    (Ok(a), Ok(b)) => match TimeRange::new(a, b) {
                        Some(r) => Some(r),
                        None => {
                            self.problem(
                                e.span(),
                                format!("closure ends ({b}) before it starts ({a})"),
                            );
                            return None;
                        }
                    },
                    (a, b) => {
                        if let Err(x) = a {
                            self.problem(s.span(), x.to_string());
                        }
                        if let Err(x) = b {
                            self.problem(e.span(), x.to_string());
                        }
                        return None;
                    }
                }
            }
            _ => {
                self.problem(
                    span,
                    "a closure needs both `start` and `end`, or neither (all day)".into(),
                );
                return None;
            }
        };
        let provider = match &c.provider {
            None => None,
            Some(p) if providers.contains(p.get_ref()) => Some(p.get_ref().clone()),
            Some(p) => {
                self.problem(p.span(), format!("unknown provider {:?}", p.get_ref()));
                return None;
            }
        };
        Some(Closure {
            first_day: first,
            last_day: last,
            times,
            provider,
            reason: c.reason.trim().to_owned(),
        })
    }

    fn date(&mut self, v: &Spanned<Value>) -> Option<NaiveDate> {
        let parsed = match v.get_ref() {
            Value::Datetime(dt) if dt.time.is_none() && dt.offset.is_none() => {
                dt.date.and_then(|d| {
                    NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
                })
            }
            Value::String(s) => NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.problem(
                v.span(),
                format!("invalid date {} (expected YYYY-MM-DD)", v.get_ref()),
            );
        }
        parsed
    }

    fn price(&mut self, v: &Spanned<Value>) -> Option<i64> {
        let cents = match v.get_ref() {
            Value::Integer(i) => i.checked_mul(100),
            Value::Float(f) if f.is_finite() && *f >= 0.0 && *f < 1e12 => {
                let c = (f * 100.0).round();
                // In range by the guard above, so the cast is exact.
                Some(c as i64)
            }
            _ => None,
        };
        match cents {
            Some(c) if c >= 0 => Some(c),
            _ => {
                self.problem(
                    v.span(),
                    format!(
                        "invalid price {} (expected a number like 89.50)",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn int(&mut self, v: &Spanned<i64>, min: i64, max: i64, what: &str) -> u32 {
        let x = *v.get_ref();
        if (min..=max).contains(&x) {
            // max ≤ u32::MAX for every caller.
            u32::try_from(x).unwrap_or(u32::MAX)
        } else {
            self.problem(
                v.span(),
                format!("{what} must be between {min} and {max}, not {x}"),
            );
            u32::try_from(min).unwrap_or(0)
        }
    }

    fn key(&mut self, v: &Spanned<String>, what: &str) {
        let k = v.get_ref();
        let ok = !k.is_empty()
            && k.len() <= 64
            && k.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            self.problem(
                v.span(),
                format!("invalid {what} id {k:?} (use lowercase letters, digits, '-' and '_')"),
            );
        }
    }

    fn non_empty(&mut self, v: &Spanned<String>, what: &str) {
        if v.get_ref().trim().is_empty() {
            self.problem(v.span(), format!("{what} is empty"));
        }
    }
}

/// 1-based line and character column of byte offset `at` in `text`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at.min(text.len())).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[business]
id = "demo"
name = "Demo Dental"
timezone = "Europe/Berlin"

[hours]
mon = ["08:00-12:00", "13:00-17:00"]

[[providers]]
id = "lee"
name = "Dr. Lee"

[[services]]
id = "checkup"
name = "Check-up"
duration_minutes = 30
providers = ["lee"]
"#;

    fn problems(text: &str) -> Vec<Problem> {
        match parse(text, Path::new("t.toml")) {
            Err(Error::Invalid { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let cal = parse(MINIMAL, Path::new("t.toml")).unwrap();
        assert_eq!(cal.rules, BookingRules::default());
        assert_eq!(cal.hours.ranges(Weekday::Mon).len(), 2);
        assert!(cal.hours.ranges(Weekday::Sun).is_empty());
        assert_eq!(cal.providers[0].kind, ProviderKind::Staff);
        assert_eq!(cal.providers[0].hours, None);
        assert_eq!(cal.services[0].buffer_minutes, 0);
        assert_eq!(cal.services[0].price_cents, None);
        assert!(cal.closures.is_empty());
    }

    #[test]
    fn unknown_keys_are_errors_with_line_and_column() {
        let text = MINIMAL.replace(
            "duration_minutes = 30",
            "duration_minutes = 30\ncolour = \"blue\"",
        );
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!((p[0].line, p[0].column), (18, 1), "{p:?}");
        assert!(p[0].message.contains("colour"), "{p:?}");

        let text = MINIMAL.replace("[hours]", "[hours]\nmonday = [\"08:00-12:00\"]");
        let p = problems(&text);
        assert_eq!(p[0].line, 8, "{p:?}");
        assert!(p[0].message.contains("monday"), "{p:?}");
    }

    #[test]
    fn syntax_errors_have_positions() {
        let p = problems("[business]\nid = \"x\nname = 1\n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].line, 2, "{p:?}");
    }

    #[test]
    fn validation_collects_every_problem() {
        let text = r#"
[business]
id = "Bad Id"
name = ""
timezone = "Mars/Olympus"
currency = "euro"

[booking]
slot_interval_minutes = 0

[hours]
mon = ["08:00-12:00", "11:00-13:00", "9-5"]
tue = ["18:00-08:00"]

[[providers]]
id = "lee"
name = "Dr. Lee"
kind = "robot"

[[providers]]
id = "lee"
name = "Dr. Lee again"

[[services]]
id = "checkup"
name = "Check-up"
duration_minutes = 0
price = "cheap"
providers = ["lee", "kim"]

[[closures]]
date = "2026-02-30"
[[closures]]
from = 2026-12-24
[[closures]]
date = "2026-12-31"
start = "12:00"
end = "10:00"
[[closures]]
date = 2026-12-31
provider = "nobody"
"#;
        let p = problems(text);
        let lines: Vec<usize> = p.iter().map(|x| x.line).collect();
        let all = p
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        for want in [
            "3:6: invalid business id \"Bad Id\"",
            "4:8: business name is empty",
            "5:12: unknown time zone \"Mars/Olympus\"",
            "6:12: invalid currency \"euro\"",
            "9:25: slot_interval_minutes must be between 1 and 720, not 0",
            "12:23: range 11:00-13:00 overlaps 08:00-12:00",
            "12:38: invalid time range \"9-5\"",
            "13:8: time range \"18:00-08:00\" ends before it starts",
            "18:8: invalid provider kind \"robot\"",
            "21:6: duplicate provider id \"lee\"",
            "27:20: duration_minutes must be between 1 and 1440, not 0",
            "28:9: invalid price \"cheap\"",
            "29:21: unknown provider \"kim\"",
            "32:8: invalid date",
            "33:1: a closure needs either `date` or both `from` and `to`",
            "38:7: closure ends (10:00) before it starts (12:00)",
            "41:12: unknown provider \"nobody\"",
        ] {
            assert!(all.contains(want), "missing {want:?} in\n{all}");
        }
        let mut sorted = lines.clone();
        sorted.sort();
        assert_eq!(lines, sorted, "problems are in file order");
    }

    #[test]
    fn closures_accept_native_and_string_dates() {
        let text = format!(
            "{MINIMAL}\n[[closures]]\ndate = 2026-12-24\nreason = \"Christmas Eve\"\n\
             [[closures]]\nfrom = \"2026-08-03\"\nto = 2026-08-14\nprovider = \"lee\"\n\
             [[closures]]\ndate = 2026-03-04\nstart = \"13:00\"\nend = \"18:00\"\n"
        );
        let cal = parse(&text, Path::new("t.toml")).unwrap();
        assert_eq!(cal.closures.len(), 3);
        assert_eq!(cal.closures[0].reason, "Christmas Eve");
        assert_eq!(cal.closures[1].provider.as_deref(), Some("lee"));
        assert_eq!(
            cal.closures[1].last_day,
            NaiveDate::from_ymd_opt(2026, 8, 14).unwrap()
        );
        assert_eq!(
            cal.closures[2].times.map(|t| t.to_string()).as_deref(),
            Some("13:00-18:00")
        );
    }

    #[test]
    fn prices_need_a_currency_and_round_to_cents() {
        let text = MINIMAL.replace(
            "duration_minutes = 30",
            "duration_minutes = 30\nprice = 89.5",
        );
        let p = problems(&text);
        assert!(p[0].message.contains("currency"), "{p:?}");
        let text = text.replace(
            "timezone = \"Europe/Berlin\"",
            "timezone = \"Europe/Berlin\"\ncurrency = \"EUR\"",
        );
        let cal = parse(&text, Path::new("t.toml")).unwrap();
        assert_eq!(cal.services[0].price_cents, Some(8950));
        let text = text.replace("price = 89.5", "price = 120");
        assert_eq!(
            parse(&text, Path::new("t.toml")).unwrap().services[0].price_cents,
            Some(12000)
        );
    }

    #[test]
    fn example_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/calendar.example.toml");
        let cal = load(&path).unwrap();
        assert_eq!(cal.business.name, "Bright Smile Dental");
        assert!(cal.providers.len() >= 3);
        assert!(cal.services.len() >= 4);
        assert!(!cal.closures.is_empty());
        let err = load(Path::new("/nonexistent/calendar.toml")).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("failed to read calendar file /nonexistent/calendar.toml"));
    }
}
