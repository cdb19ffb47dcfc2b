//! Schedules: opening hours, holidays and date ranges in the business's IANA time zone.
//!
//! A schedule is *active* at an instant when, in its time zone's local wall-clock time:
//! 1. the local date is in `dates` (or `dates` is empty),
//! 2. the local date is not in `holidays`, and
//! 3. the local time is inside one of the `hours` (or `hours` is empty: all day).
//!
//! Hours are wall-clock times, so DST needs no special case: `08:00-18:00` means 08:00 local on
//! the spring-forward and fall-back days too (chrono-tz converts the UTC instant). A range whose
//! end is not after its start runs overnight: `fri 22:00-06:00` is Friday 22:00 to Saturday
//! 06:00. Holidays and dates always apply to the local calendar day of the instant. Pure: no I/O,
//! no clock (the instant is a parameter).

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc, Weekday};
use chrono_tz::Tz;

use super::hint;
use super::ValueError;

/// Day names accepted in `hours`, with the weekday index (Monday = 0) they stand for.
const DAY_NAMES: &[(&str, usize)] = &[
    ("mon", 0),
    ("monday", 0),
    ("tue", 1),
    ("tues", 1),
    ("tuesday", 1),
    ("wed", 2),
    ("wednesday", 2),
    ("thu", 3),
    ("thur", 3),
    ("thurs", 3),
    ("thursday", 3),
    ("fri", 4),
    ("friday", 4),
    ("sat", 5),
    ("saturday", 5),
    ("sun", 6),
    ("sunday", 6),
];
const SHORT_DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const HOURS_FORMAT: &str =
    "write hours as \"DAYS HH:MM-HH:MM\", e.g. \"mon-fri 08:00-18:00\", \"sat,sun 10:00-12:00, 13:00-16:00\" or \"daily 00:00-24:00\"";
const DATE_FORMAT: &str =
    "write a day as YYYY-MM-DD, a yearly day as MM-DD, or an inclusive range as FROM..TO (e.g. \"2026-12-24..2026-12-31\" or \"12-24..01-01\")";

/// One opening-hours interval on a set of weekdays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hours {
    /// Weekdays the interval starts on, Monday = index 0.
    pub days: [bool; 7],
    /// Start, in minutes after local midnight.
    pub start_min: u16,
    /// End (exclusive), in minutes after local midnight, 1..=1440; not after `start_min`: overnight.
    pub end_min: u16,
}

impl Hours {
    /// Parses one `hours` line, which may hold several time ranges.
    pub(crate) fn parse(text: &str) -> Result<Vec<Hours>, ValueError> {
        let split = text
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(text.len());
        let (days_text, times_text) = text.split_at(split);
        let days = parse_days(days_text)?;
        if times_text.trim().is_empty() {
            return Err(ValueError::new(format!("`{text}` has no time range")).hint(HOURS_FORMAT));
        }
        let mut out = Vec::new();
        let mut offset = split;
        for range in times_text.split(',') {
            let here = offset..offset + range.len();
            offset += range.len() + 1;
            let Some((a, b)) = range.split_once('-') else {
                return Err(
                    ValueError::new(format!("`{}` is not a time range", range.trim()))
                        .hint(HOURS_FORMAT)
                        .at(here),
                );
            };
            let start = parse_time(a, false).map_err(|e| e.at(here.clone()))?;
            let end = parse_time(b, true).map_err(|e| e.at(here.clone()))?;
            if start == end || (start == 0 && end == 0) {
                return Err(
                    ValueError::new(format!("`{}` is an empty time range", range.trim()))
                        .hint("write 00:00-24:00 for the whole day")
                        .at(here),
                );
            }
            out.push(Hours {
                days,
                start_min: start,
                end_min: end,
            });
        }
        Ok(out)
    }

    /// Whether local time `secs` (seconds after midnight) on weekday `wd` (Monday = 0) is inside.
    fn contains(&self, wd: usize, secs: u32) -> bool {
        let (start, end) = (u32::from(self.start_min) * 60, u32::from(self.end_min) * 60);
        if start < end {
            self.days[wd] && start <= secs && secs < end
        } else {
            let yesterday = (wd + 6) % 7;
            (self.days[wd] && secs >= start) || (self.days[yesterday] && secs < end)
        }
    }
}

fn parse_days(text: &str) -> Result<[bool; 7], ValueError> {
    let t = text.trim().to_lowercase();
    if t.is_empty() || t == "daily" || t == "every day" {
        return Ok([true; 7]);
    }
    if t == "weekdays" {
        return Ok([true, true, true, true, true, false, false]);
    }
    if t == "weekends" {
        return Ok([false, false, false, false, false, true, true]);
    }
    let mut days = [false; 7];
    let mut offset = text.len() - text.trim_start().len();
    for item in text.trim().split(',') {
        let here = offset..offset + item.len();
        offset += item.len() + 1;
        let day = |name: &str| -> Result<usize, ValueError> {
            let n = name.trim().to_lowercase();
            DAY_NAMES
                .iter()
                .find(|(d, _)| *d == n)
                .map(|(_, i)| *i)
                .ok_or_else(|| {
                    let names = SHORT_DAYS
                        .iter()
                        .copied()
                        .chain(["daily", "weekdays", "weekends"]);
                    ValueError::new(format!("`{}` is not a day", name.trim()))
                        .hint(hint::did_you_mean(&n, names))
                        .at(here.clone())
                })
        };
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let mut d = a;
                loop {
                    days[d] = true;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days[day(item)?] = true,
        }
    }
    Ok(days)
}

/// `H:MM` or `HH:MM` → minutes after midnight; `24:00` only as an end.
fn parse_time(text: &str, end: bool) -> Result<u16, ValueError> {
    let t = text.trim();
    let bad = || {
        ValueError::new(format!("`{t}` is not a time"))
            .hint("write times as HH:MM, from 00:00 to 24:00")
    };
    let (h, m) = t.split_once(':').ok_or_else(bad)?;
    if h.is_empty()
        || h.len() > 2
        || m.len() != 2
        || !h.chars().chain(m.chars()).all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m > 59 || h > 24 || (h == 24 && (m != 0 || !end)) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn fmt_time(min: u16) -> String {
    format!("{:02}:{:02}", min / 60, min % 60)
}

fn fmt_days(days: &[bool; 7]) -> String {
    if days.iter().all(|d| *d) {
        return "daily".to_owned();
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < 7 {
        if !days[i] {
            i += 1;
            continue;
        }
        let start = i;
        while i + 1 < 7 && days[i + 1] {
            i += 1;
        }
        parts.push(match i - start {
            0 => SHORT_DAYS[start].to_owned(),
            _ => format!("{}-{}", SHORT_DAYS[start], SHORT_DAYS[i]),
        });
        i += 1;
    }
    parts.join(",")
}

impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}-{}",
            fmt_days(&self.days),
            fmt_time(self.start_min),
            fmt_time(self.end_min)
        )
    }
}

/// A day or days in `holidays` / `dates`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateSpec {
    /// `2026-12-25`.
    Day(NaiveDate),
    /// `2026-12-24..2026-12-31`, inclusive.
    Range(NaiveDate, NaiveDate),
    /// `12-25`: that day every year, as (month, day).
    Yearly(u32, u32),
    /// `12-24..01-01`: every year, inclusive, may wrap over New Year.
    YearlyRange((u32, u32), (u32, u32)),
}

impl DateSpec {
    /// Parses `YYYY-MM-DD`, `MM-DD` or `FROM..TO` of either form.
    pub(crate) fn parse(text: &str) -> Result<DateSpec, ValueError> {
        let t = text.trim();
        if let Some((a, b)) = t.split_once("..") {
            let b_at = a.len() + 2..t.len();
            return match (parse_day(a, 0..a.len())?, parse_day(b, b_at.clone())?) {
                (Day::Fixed(x), Day::Fixed(y)) if x <= y => Ok(DateSpec::Range(x, y)),
                (Day::Fixed(_), Day::Fixed(_)) => {
                    Err(ValueError::new(format!("`{t}` ends before it starts"))
                        .hint("write the earlier date first: FROM..TO"))
                }
                (Day::Yearly(x), Day::Yearly(y)) => Ok(DateSpec::YearlyRange(x, y)),
                _ => Err(
                    ValueError::new(format!("`{t}` mixes a dated day and a yearly day"))
                        .hint("write both ends as YYYY-MM-DD, or both as MM-DD"),
                ),
            };
        }
        Ok(match parse_day(t, 0..t.len())? {
            Day::Fixed(d) => DateSpec::Day(d),
            Day::Yearly((m, d)) => DateSpec::Yearly(m, d),
        })
    }

    /// Whether the local date `d` is one of these days.
    pub fn contains(&self, d: NaiveDate) -> bool {
        let md = (d.month(), d.day());
        match *self {
            DateSpec::Day(x) => d == x,
            DateSpec::Range(a, b) => a <= d && d <= b,
            DateSpec::Yearly(m, day) => md == (m, day),
            DateSpec::YearlyRange(a, b) if a <= b => a <= md && md <= b,
            DateSpec::YearlyRange(a, b) => md >= a || md <= b,
        }
    }
}

enum Day {
    Fixed(NaiveDate),
    Yearly((u32, u32)),
}

fn parse_day(text: &str, at: std::ops::Range<usize>) -> Result<Day, ValueError> {
    let t = text.trim();
    let bad = || {
        ValueError::new(format!("`{t}` is not a valid date"))
            .hint(DATE_FORMAT)
            .at(at.clone())
    };
    let parts: Vec<&str> = t.split('-').collect();
    let num = |s: &str, len: usize| -> Option<u32> {
        (s.len() == len && s.chars().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match parts.as_slice() {
        [y, m, d] => {
            let (y, m, d) = (
                num(y, 4).ok_or_else(bad)?,
                num(m, 2).ok_or_else(bad)?,
                num(d, 2).ok_or_else(bad)?,
            );
            let y = i32::try_from(y).map_err(|_| bad())?;
            NaiveDate::from_ymd_opt(y, m, d)
                .map(Day::Fixed)
                .ok_or_else(bad)
        }
        [m, d] => {
            let (m, d) = (num(m, 2).ok_or_else(bad)?, num(d, 2).ok_or_else(bad)?);
            // 2000 is a leap year, so 02-29 is a valid yearly day.
            NaiveDate::from_ymd_opt(2000, m, d)
                .map(|_| Day::Yearly((m, d)))
                .ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

impl fmt::Display for DateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DateSpec::Day(d) => write!(f, "{d}"),
            DateSpec::Range(a, b) => write!(f, "{a}..{b}"),
            DateSpec::Yearly(m, d) => write!(f, "{m:02}-{d:02}"),
            DateSpec::YearlyRange((m1, d1), (m2, d2)) => {
                write!(f, "{m1:02}-{d1:02}..{m2:02}-{d2:02}")
            }
        }
    }
}

/// Parses an IANA time zone name (`Europe/Berlin`), with a hint for near misses.
pub(crate) fn parse_timezone(text: &str) -> Result<Tz, ValueError> {
    text.trim().parse::<Tz>().map_err(|_| {
        let names = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
        let hint = match hint::closest(text.trim(), names) {
            Some(c) => format!("did you mean `{c}`?"),
            None => "use an IANA time zone name such as \"Europe/Berlin\" or \"America/New_York\""
                .to_owned(),
        };
        ValueError::new(format!("unknown time zone `{text}`")).hint(hint)
    })
}

/// A named schedule (`[schedules.NAME]`), compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The key under `[schedules]`.
    pub name: String,
    /// The time zone its hours and dates are read in.
    pub timezone: Tz,
    /// Opening hours; empty: all day.
    pub hours: Vec<Hours>,
    /// Days it is not active (whole local days).
    pub holidays: Vec<DateSpec>,
    /// Days it can be active; empty: every day.
    pub dates: Vec<DateSpec>,
}

impl Schedule {
    /// Whether the schedule is active (open) at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&self.timezone);
        let date = local.date_naive();
        if !self.dates.is_empty() && !self.dates.iter().any(|d| d.contains(date)) {
            return false;
        }
        if self.holidays.iter().any(|d| d.contains(date)) {
            return false;
        }
        if self.hours.is_empty() {
            return true;
        }
        let wd = local.weekday().num_days_from_monday() as usize;
        let secs = local.num_seconds_from_midnight();
        self.hours.iter().any(|h| h.contains(wd, secs))
    }

    /// `now` in the schedule's local time, e.g. `Sun 2026-03-29 08:30 CEST`, for explanations.
    pub fn local_time(&self, now: DateTime<Utc>) -> String {
        let local = now.with_timezone(&self.timezone);
        format!(
            "{} {}",
            weekday_name(local.weekday()),
            local.format("%Y-%m-%d %H:%M %Z")
        )
    }

    /// One-line description: `Europe/Berlin: mon-fri 08:00-18:00; closed 12-25, 2026-12-24`.
    pub fn describe(&self) -> String {
        let mut parts = vec![if self.hours.is_empty() {
            "all day".to_owned()
        } else {
            self.hours
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }];
        if !self.dates.is_empty() {
            parts.push(format!(
                "only {}",
                self.dates
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !self.holidays.is_empty() {
            parts.push(format!(
                "closed {}",
                self.holidays
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        format!("{}: {}", self.timezone.name(), parts.join("; "))
    }
}

fn weekday_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "Mon",
        Weekday::Tue => "Tue",
        Weekday::Wed => "Wed",
        Weekday::Thu => "Thu",
        Weekday::Fri => "Fri",
        Weekday::Sat => "Sat",
        Weekday::Sun => "Sun",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("valid test time")
    }

    fn schedule(tz: &str, hours: &[&str], holidays: &[&str], dates: &[&str]) -> Schedule {
        Schedule {
            name: "s".into(),
            timezone: parse_timezone(tz).expect("zone"),
            hours: hours
                .iter()
                .flat_map(|h| Hours::parse(h).expect("hours"))
                .collect(),
            holidays: holidays
                .iter()
                .map(|d| DateSpec::parse(d).expect("date"))
                .collect(),
            dates: dates
                .iter()
                .map(|d| DateSpec::parse(d).expect("date"))
                .collect(),
        }
    }

    #[test]
    fn hours_parse_days_ranges_and_lists() {
        let h = Hours::parse("mon-fri 08:00-12:00, 13:00-18:00").expect("valid");
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].days, [true, true, true, true, true, false, false]);
        assert_eq!((h[1].start_min, h[1].end_min), (13 * 60, 18 * 60));
        assert_eq!(h[0].to_string(), "mon-fri 08:00-12:00");
        let h = Hours::parse("Sat,Sunday 9:30-12:00").expect("valid");
        assert_eq!(h[0].to_string(), "sat-sun 09:30-12:00");
        assert_eq!(
            Hours::parse("fri-mon 10:00-11:00").expect("wraps")[0].to_string(),
            "mon,fri-sun 10:00-11:00"
        );
        assert_eq!(
            Hours::parse("00:00-24:00").expect("every day")[0].to_string(),
            "daily 00:00-24:00"
        );
        assert_eq!(
            Hours::parse("weekdays 22:00-06:00").expect("overnight")[0].to_string(),
            "mon-fri 22:00-06:00"
        );
    }

    #[test]
    fn hours_errors_name_the_part() {
        let e = Hours::parse("mon-fir 08:00-18:00").expect_err("typo");
        assert_eq!(e.message, "`fir` is not a day");
        assert_eq!(e.hint.as_deref(), Some("did you mean `fri`?"));
        assert_eq!(e.at, Some(0..7));
        let e = Hours::parse("mon 8-18").expect_err("no minutes");
        assert_eq!(e.message, "`8` is not a time");
        assert!(Hours::parse("mon 08:00-24:30").is_err());
        assert!(
            Hours::parse("mon 24:00-08:00").is_err(),
            "24:00 is only an end"
        );
        assert!(Hours::parse("mon 08:00-08:00").is_err(), "empty range");
        assert!(Hours::parse("mon").is_err(), "no times");
        assert!(Hours::parse("mon 08:00").is_err(), "no range");
    }

    #[test]
    fn dates_parse_days_ranges_and_yearly_days() {
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).expect("date");
        assert_eq!(
            DateSpec::parse("2026-12-25"),
            Ok(DateSpec::Day(d(2026, 12, 25)))
        );
        assert_eq!(DateSpec::parse("12-25"), Ok(DateSpec::Yearly(12, 25)));
        assert_eq!(DateSpec::parse("02-29"), Ok(DateSpec::Yearly(2, 29)));
        let xmas = DateSpec::parse("12-24..01-01").expect("wrapping yearly range");
        assert!(
            xmas.contains(d(2026, 12, 31))
                && xmas.contains(d(2027, 1, 1))
                && !xmas.contains(d(2027, 1, 2))
        );
        let summer = DateSpec::parse("2026-08-03..2026-08-14").expect("range");
        assert!(
            summer.contains(d(2026, 8, 3))
                && summer.contains(d(2026, 8, 14))
                && !summer.contains(d(2026, 8, 15))
        );
        assert!(DateSpec::parse("2026-02-30").is_err());
        assert!(
            DateSpec::parse("2026-12-31..2026-01-01").is_err(),
            "reversed"
        );
        assert!(DateSpec::parse("2026-12-24..01-01").is_err(), "mixed");
        assert!(DateSpec::parse("25.12.2026").is_err());
        assert_eq!(
            DateSpec::parse("12-24..2026-x").expect_err("bad end").at,
            Some(7..13)
        );
    }

    #[test]
    fn timezones_are_checked_with_hints() {
        assert_eq!(
            parse_timezone("Europe/Berlin"),
            Ok(chrono_tz::Europe::Berlin)
        );
        let e = parse_timezone("Europe/Berln").expect_err("typo");
        assert_eq!(e.hint.as_deref(), Some("did you mean `Europe/Berlin`?"));
        let e = parse_timezone("europe/berlin").expect_err("case");
        assert_eq!(e.hint.as_deref(), Some("did you mean `Europe/Berlin`?"));
    }

    #[test]
    fn opening_hours_follow_berlin_dst() {
        let s = schedule("Europe/Berlin", &["daily 08:00-18:00"], &[], &[]);
        // Sat 2026-03-28 is CET (UTC+1): 06:30Z = 07:30 local, closed; 07:30Z = 08:30, open.
        assert!(!s.is_active(utc(2026, 3, 28, 6, 30)));
        assert!(s.is_active(utc(2026, 3, 28, 7, 30)));
        // Sun 2026-03-29 springs forward at 01:00Z: 06:30Z = 08:30 CEST, open.
        assert!(s.is_active(utc(2026, 3, 29, 6, 30)));
        assert!(!s.is_active(utc(2026, 3, 29, 5, 59)));
        assert_eq!(
            s.local_time(utc(2026, 3, 29, 6, 30)),
            "Sun 2026-03-29 08:30 CEST"
        );
        // Closing: 16:00Z is 18:00 CEST (closed), 17:00 CET the day after fall-back (open).
        assert!(!s.is_active(utc(2026, 10, 24, 16, 0)));
        assert!(s.is_active(utc(2026, 10, 25, 16, 0)));
        // Sun 2026-10-25 falls back at 01:00Z: 06:30Z = 07:30 CET, closed; a day earlier it was 08:30.
        assert!(s.is_active(utc(2026, 10, 24, 6, 30)));
        assert!(!s.is_active(utc(2026, 10, 25, 6, 30)));
    }

    #[test]
    fn opening_hours_follow_new_york_dst() {
        let s = schedule("America/New_York", &["daily 08:00-17:00"], &[], &[]);
        // 2026-03-08 springs forward at 07:00Z: 12:30Z is 08:30 EDT (open), the day before 07:30 EST.
        assert!(!s.is_active(utc(2026, 3, 7, 12, 30)));
        assert!(s.is_active(utc(2026, 3, 8, 12, 30)));
        // 2026-11-01 falls back at 06:00Z: 12:30Z is 07:30 EST (closed), the day before 08:30 EDT.
        assert!(s.is_active(utc(2026, 10, 31, 12, 30)));
        assert!(!s.is_active(utc(2026, 11, 1, 12, 30)));
        // The repeated hour 01:00-02:00 local on 2026-11-01 is inside the range both times.
        let night = schedule("America/New_York", &["sun 01:00-02:00"], &[], &[]);
        assert!(night.is_active(utc(2026, 11, 1, 5, 30)), "01:30 EDT");
        assert!(night.is_active(utc(2026, 11, 1, 6, 30)), "01:30 EST");
        assert!(!night.is_active(utc(2026, 11, 1, 7, 30)), "02:30 EST");
    }

    #[test]
    fn overnight_ranges_continue_into_the_next_day() {
        let s = schedule("UTC", &["fri 22:00-06:00"], &[], &[]);
        assert!(s.is_active(utc(2026, 1, 2, 23, 0)), "Fri 23:00");
        assert!(s.is_active(utc(2026, 1, 3, 5, 59)), "Sat 05:59");
        assert!(!s.is_active(utc(2026, 1, 3, 6, 0)), "Sat 06:00");
        assert!(!s.is_active(utc(2026, 1, 3, 23, 0)), "Sat 23:00");
        assert!(
            !s.is_active(utc(2026, 1, 2, 5, 0)),
            "Fri 05:00 belongs to Thursday"
        );
        let to_midnight = schedule("UTC", &["fri 18:00-24:00"], &[], &[]);
        assert!(to_midnight.is_active(utc(2026, 1, 2, 23, 59)));
        assert!(!to_midnight.is_active(utc(2026, 1, 3, 0, 0)));
    }

    #[test]
    fn holidays_close_whole_local_days_and_dates_limit_the_schedule() {
        let s = schedule(
            "Europe/Berlin",
            &["mon-fri 08:00-18:00"],
            &["2026-12-24", "12-25..12-26", "01-01"],
            &[],
        );
        assert!(s.is_active(utc(2026, 12, 23, 9, 0)));
        assert!(!s.is_active(utc(2026, 12, 24, 9, 0)));
        assert!(!s.is_active(utc(2026, 12, 25, 9, 0)));
        assert!(!s.is_active(utc(2027, 1, 1, 9, 0)));
        // 2026-12-23 23:30Z is already 12-24 in Berlin: the local date decides.
        let all_day = schedule("Europe/Berlin", &[], &["2026-12-24"], &[]);
        assert!(all_day.is_active(utc(2026, 12, 23, 22, 30)));
        assert!(!all_day.is_active(utc(2026, 12, 23, 23, 30)));
        let summer = schedule("Europe/Berlin", &[], &[], &["2026-08-03..2026-08-14"]);
        assert!(
            !summer.is_active(utc(2026, 8, 2, 21, 59)),
            "23:59 CEST on the 2nd"
        );
        assert!(
            summer.is_active(utc(2026, 8, 2, 22, 0)),
            "00:00 CEST on the 3rd"
        );
        assert!(summer.is_active(utc(2026, 8, 14, 21, 59)));
        assert!(!summer.is_active(utc(2026, 8, 14, 22, 0)));
        assert_eq!(
            s.describe(),
            "Europe/Berlin: mon-fri 08:00-18:00; closed 2026-12-24, 12-25..12-26, 01-01"
        );
    }
}
