//! Local wall-clock time in a business's IANA zone, and its conversion to and from UTC.
//!
//! Owns the DST rules of the calendar (chrono-tz zone data):
//!
//! * **Opening hours and closures** are wall-clock times. A wall-clock time that does not exist
//!   (the spring-forward gap, e.g. 02:30 on 2026-03-29 in Europe/Berlin) means the moment the
//!   clocks jump (03:00 CEST). A wall-clock time that occurs twice (the fall-back overlap, e.g.
//!   02:30 on 2026-10-25 in Europe/Berlin) means its **first** occurrence. So "01:00-04:00" is two
//!   real hours on the spring-forward day and four on the fall-back day. See [`instant_of`].
//! * **Times the model sends** are wall-clock times without offset. A time inside the gap or inside
//!   the overlap is not guessed: [`resolve_local`] reports it, and the caller is asked to pick one
//!   (the overlap's two instants are offered with explicit offsets, which [`parse_local`] accepts).
//! * **Times sent to the model** are wall-clock times without offset, except inside the overlap,
//!   where the offset is appended so the two occurrences stay distinct ([`format_local`]).
//!
//! Pure functions on chrono types: no clock reads, no I/O.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Duration, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

/// Minutes in a day.
const MINUTES_PER_DAY: u16 = 24 * 60;

/// Upper bound, in minutes, of a clock jump searched by [`instant_of`]. The largest jump in the
/// tz database is a whole day (Pacific/Apia skipped 2011-12-30), so two days is always enough.
const MAX_GAP_MINUTES: i64 = 2 * 24 * 60;

/// A wall-clock time of day at minute precision, from `00:00` to `24:00` inclusive.
///
/// `24:00` is the end of the day (the next day's midnight), so a range can run to midnight.
/// Parses from and displays as `HH:MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClockTime(u16);

impl ClockTime {
    /// `00:00`.
    pub const MIDNIGHT: ClockTime = ClockTime(0);
    /// `12:00`.
    pub const NOON: ClockTime = ClockTime(12 * 60);
    /// `24:00`, the end of the day.
    pub const END_OF_DAY: ClockTime = ClockTime(MINUTES_PER_DAY);

    /// The time `minutes` after midnight; `None` above 1440 (24:00).
    pub const fn from_minutes(minutes: u16) -> Option<ClockTime> {
        if minutes <= MINUTES_PER_DAY {
            Some(ClockTime(minutes))
        } else {
            None
        }
    }

    /// `hour:minute`; `None` unless `hour` ≤ 23 and `minute` ≤ 59, or exactly 24:00.
    pub const fn from_hm(hour: u16, minute: u16) -> Option<ClockTime> {
        if (hour < 24 && minute < 60) || (hour == 24 && minute == 0) {
            Some(ClockTime(hour * 60 + minute))
        } else {
            None
        }
    }

    /// Minutes after midnight (0–1440).
    pub const fn minutes(self) -> u16 {
        self.0
    }

    /// The time of day of a chrono time, dropping seconds.
    pub fn of(time: NaiveTime) -> ClockTime {
        // hour() < 24 and minute() < 60, so the sum is < 1440.
        ClockTime((time.hour() * 60 + time.minute()) as u16)
    }

    /// This time on local date `date`; `24:00` is the next day's `00:00`.
    pub fn on(self, date: NaiveDate) -> NaiveDateTime {
        date.and_time(NaiveTime::MIN) + Duration::minutes(i64::from(self.0))
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// Error of parsing a [`ClockTime`] or [`TimeRange`]; holds the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeParseError {
    /// Not `HH:MM` with 00 ≤ HH ≤ 23 and 00 ≤ MM ≤ 59 (or 24:00).
    #[error("invalid time of day {0:?} (expected HH:MM between 00:00 and 24:00)")]
    Time(String),
    /// Not `HH:MM-HH:MM`.
    #[error("invalid time range {0:?} (expected HH:MM-HH:MM, e.g. 08:00-12:30)")]
    Range(String),
    /// The end is not after the start.
    #[error("time range {0:?} ends before it starts (ranges cannot cross midnight)")]
    Reversed(String),
}

impl FromStr for ClockTime {
    type Err = TimeParseError;

    /// Parses `HH:MM` (one-digit hours accepted), surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<ClockTime, TimeParseError> {
        let bad = || TimeParseError::Time(s.to_owned());
        let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
        let digits = |x: &str, max_len: usize| {
            if x.is_empty() || x.len() > max_len || !x.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                x.parse::<u16>().ok()
            }
        };
        let hour = digits(h, 2).ok_or_else(bad)?;
        if m.len() != 2 {
            return Err(bad());
        }
        let minute = digits(m, 2).ok_or_else(bad)?;
        ClockTime::from_hm(hour, minute).ok_or_else(bad)
    }
}

/// A wall-clock span within one day, `[start, end)` with `start < end`.
///
/// Parses from and displays as `HH:MM-HH:MM` (e.g. `08:00-12:30`, `18:00-24:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeRange {
    /// First minute inside the range.
    pub start: ClockTime,
    /// First minute after the range.
    pub end: ClockTime,
}

impl TimeRange {
    /// `[start, end)`; `None` unless `start < end`.
    pub fn new(start: ClockTime, end: ClockTime) -> Option<TimeRange> {
        (start < end).then_some(TimeRange { start, end })
    }

    /// Whether `t` lies in `[start, end)`.
    pub fn contains(&self, t: ClockTime) -> bool {
        self.start <= t && t < self.end
    }

    /// Whether the two ranges share at least one minute.
    pub fn overlaps(&self, other: &TimeRange) -> bool {
        self.start < other.end && other.start < self.end
    }
}

impl fmt::Display for TimeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl FromStr for TimeRange {
    type Err = TimeParseError;

    /// Parses `HH:MM-HH:MM` (spaces around the dash allowed).
    fn from_str(s: &str) -> Result<TimeRange, TimeParseError> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| TimeParseError::Range(s.to_owned()))?;
        let start: ClockTime = a.parse().map_err(|_| TimeParseError::Range(s.to_owned()))?;
        let end: ClockTime = b.parse().map_err(|_| TimeParseError::Range(s.to_owned()))?;
        TimeRange::new(start, end).ok_or_else(|| TimeParseError::Reversed(s.to_owned()))
    }
}

/// The instant a wall-clock time in `tz` stands for, under the calendar's DST rule: the first
/// occurrence of a repeated time (fall-back), and the moment of the jump for a skipped time
/// (spring-forward), i.e. the earliest instant whose local time is at or after `local`.
pub fn instant_of(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    // A skipped time: walk forward minute by minute to the first wall-clock time that exists,
    // which (transitions being on whole minutes) is the moment the clocks jumped.
    for step in 0..=MAX_GAP_MINUTES {
        match tz.from_local_datetime(&(local + Duration::minutes(step))) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(first, _) => return first.with_timezone(&Utc),
            LocalResult::None => {}
        }
    }
    // Unreachable with tz data (no gap is longer than a day); fall back to the offset in force
    // at the same UTC reading rather than panicking.
    let offset = tz.offset_from_utc_datetime(&local).fix();
    Utc.from_utc_datetime(&(local - Duration::seconds(i64::from(offset.local_minus_utc()))))
}

/// What a wall-clock time given by a caller refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalResolution {
    /// Exactly one instant.
    Unique(DateTime<Utc>),
    /// The time occurs twice (fall-back overlap).
    Ambiguous {
        /// First occurrence (summer time).
        earlier: DateTime<Utc>,
        /// Second occurrence (standard time).
        later: DateTime<Utc>,
    },
    /// The time is skipped (spring-forward gap).
    Nonexistent {
        /// The moment the clocks jumped (the first existing time after it).
        jump: DateTime<Utc>,
    },
}

/// Resolves a wall-clock time without offset in `tz`, reporting gaps and overlaps.
pub fn resolve_local(tz: Tz, local: NaiveDateTime) -> LocalResolution {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => LocalResolution::Unique(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => {
            let (a, b) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
            LocalResolution::Ambiguous {
                earlier: a.min(b),
                later: a.max(b),
            }
        }
        LocalResult::None => LocalResolution::Nonexistent {
            jump: instant_of(tz, local),
        },
    }
}

/// The local wall-clock reading of `t` in `tz`.
pub fn to_local(tz: Tz, t: DateTime<Utc>) -> NaiveDateTime {
    t.with_timezone(&tz).naive_local()
}

/// The local calendar date of `t` in `tz`.
pub fn local_date(tz: Tz, t: DateTime<Utc>) -> NaiveDate {
    to_local(tz, t).date()
}

/// `t` as the model sees it: local `YYYY-MM-DDTHH:MM` without offset, or with the offset
/// (`YYYY-MM-DDTHH:MM+01:00`) when that wall-clock time occurs twice that day.
pub fn format_local(tz: Tz, t: DateTime<Utc>) -> String {
    let local = t.with_timezone(&tz);
    let naive = local.naive_local();
    let text = naive.format("%Y-%m-%dT%H:%M").to_string();
    match tz.from_local_datetime(&naive) {
        LocalResult::Ambiguous(..) => format!("{text}{}", local.offset().fix()),
        _ => text,
    }
}

/// A local date-time as sent by the model: the wall-clock reading and an optional UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalInput {
    /// Wall-clock date and time (seconds are zero).
    pub local: NaiveDateTime,
    /// Offset given after the time (`+01:00`, `Z`), if any.
    pub offset: Option<FixedOffset>,
}

/// Error of [`parse_local`] and [`LocalInput::resolve`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalInputError {
    /// Not an ISO 8601 local date-time.
    #[error("invalid date-time {0:?} (expected local time like 2026-03-02T09:30)")]
    Syntax(String),
    /// Seconds other than zero.
    #[error("date-time {0:?} has seconds; times are whole minutes")]
    Seconds(String),
    /// The offset given is not the zone's offset at that wall-clock time.
    #[error("offset {offset} is not used by {zone} at {local}; send local time without offset")]
    OffsetMismatch {
        /// The local time.
        local: String,
        /// The offset given.
        offset: String,
        /// The IANA zone.
        zone: String,
    },
    /// Skipped wall-clock time (spring-forward).
    #[error("{local} does not exist in {zone}: the clocks jump forward then")]
    Nonexistent {
        /// The local time.
        local: String,
        /// The IANA zone.
        zone: String,
        /// The moment of the jump.
        jump: DateTime<Utc>,
    },
    /// Repeated wall-clock time (fall-back) given without offset.
    #[error("{local} occurs twice in {zone} (the clocks go back); add the offset to choose one")]
    Ambiguous {
        /// The local time.
        local: String,
        /// The IANA zone.
        zone: String,
        /// First occurrence.
        earlier: DateTime<Utc>,
        /// Second occurrence.
        later: DateTime<Utc>,
    },
}

/// Parses a local date-time from the model: `YYYY-MM-DDTHH:MM`, optionally with `:SS` (must be
/// `00`), a space instead of `T`, and an offset (`+01:00`, `-05:00`, `Z`).
///
/// # Errors
/// [`LocalInputError::Syntax`] or [`LocalInputError::Seconds`].
pub fn parse_local(s: &str) -> Result<LocalInput, LocalInputError> {
    let t = s.trim();
    let syntax = || LocalInputError::Syntax(s.to_owned());
    if !t.is_ascii() {
        return Err(syntax());
    }
    let (body, offset) = split_offset(t).ok_or_else(syntax)?;
    if !has_iso_shape(body) {
        return Err(syntax());
    }
    const FORMATS: [&str; 4] = [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ];
    let local = FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(body, f).ok())
        .ok_or_else(syntax)?;
    if local.second() != 0 || local.nanosecond() != 0 {
        return Err(LocalInputError::Seconds(s.to_owned()));
    }
    Ok(LocalInput { local, offset })
}

/// Whether `body` is `dddd-dd-ddTdd:dd` or `dddd-dd-ddTdd:dd:dd` (`T` or a space), so chrono's
/// lenient one-digit fields (`T9:3`) are refused.
fn has_iso_shape(body: &str) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd";
    let b = body.as_bytes();
    (b.len() == 16 || b.len() == 19)
        && b.iter().zip(SHAPE).all(|(c, want)| match want {
            b'd' => c.is_ascii_digit(),
            b'T' => *c == b'T' || *c == b' ',
            other => c == other,
        })
}

/// Splits an ASCII date-time into body and optional offset; `None` for a malformed offset.
fn split_offset(t: &str) -> Option<(&str, Option<FixedOffset>)> {
    if let Some(body) = t.strip_suffix(['Z', 'z']) {
        return Some((body, Some(FixedOffset::east_opt(0)?)));
    }
    // "YYYY-MM-DDTHH:MM" is 16 bytes; an offset "+HH:MM" follows it.
    if t.len() > 16 {
        let (body, tail) = t.split_at(t.len() - 6);
        let b = tail.as_bytes();
        if (b[0] == b'+' || b[0] == b'-') && b[3] == b':' {
            let num = |x: &[u8]| -> Option<i32> {
                if x.iter().all(u8::is_ascii_digit) {
                    std::str::from_utf8(x).ok()?.parse().ok()
                } else {
                    None
                }
            };
            let secs = num(&b[1..3])? * 3600 + num(&b[4..6])? * 60;
            let offset = if b[0] == b'-' {
                FixedOffset::west_opt(secs)?
            } else {
                FixedOffset::east_opt(secs)?
            };
            return Some((body, Some(offset)));
        }
    }
    Some((t, None))
}

impl LocalInput {
    /// The instant this input means in `tz`.
    ///
    /// # Errors
    /// [`LocalInputError::Nonexistent`] inside a spring-forward gap, [`LocalInputError::Ambiguous`]
    /// inside a fall-back overlap without offset, [`LocalInputError::OffsetMismatch`] when the
    /// offset given is not the zone's at that time.
    pub fn resolve(&self, tz: Tz) -> Result<DateTime<Utc>, LocalInputError> {
        let local_text = self.local.format("%Y-%m-%dT%H:%M").to_string();
        let zone = tz.name().to_owned();
        if let Some(offset) = self.offset {
            let utc = Utc.from_utc_datetime(
                &(self.local - Duration::seconds(i64::from(offset.local_minus_utc()))),
            );
            if to_local(tz, utc) == self.local {
                return Ok(utc);
            }
            return Err(LocalInputError::OffsetMismatch {
                local: local_text,
                offset: offset.to_string(),
                zone,
            });
        }
        match resolve_local(tz, self.local) {
            LocalResolution::Unique(t) => Ok(t),
            LocalResolution::Ambiguous { earlier, later } => Err(LocalInputError::Ambiguous {
                local: local_text,
                zone,
                earlier,
                later,
            }),
            LocalResolution::Nonexistent { jump } => Err(LocalInputError::Nonexistent {
                local: local_text,
                zone,
                jump,
            }),
        }
    }
}

/// Part of the day a caller prefers, by the local start time of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimeOfDay {
    /// No preference.
    #[default]
    Any,
    /// Starts before 12:00.
    Morning,
    /// Starts at 12:00 or later and before 17:00.
    Afternoon,
    /// Starts at 17:00 or later.
    Evening,
}

impl TimeOfDay {
    /// Local start of the afternoon.
    pub const AFTERNOON_START: ClockTime = ClockTime::NOON;
    /// Local start of the evening.
    pub const EVENING_START: ClockTime = ClockTime(17 * 60);

    /// Whether a slot starting at local time `t` fits this preference.
    pub fn matches(self, t: ClockTime) -> bool {
        match self {
            TimeOfDay::Any => true,
            TimeOfDay::Morning => t < Self::AFTERNOON_START,
            TimeOfDay::Afternoon => Self::AFTERNOON_START <= t && t < Self::EVENING_START,
            TimeOfDay::Evening => Self::EVENING_START <= t,
        }
    }

    /// The lowercase name (`any`, `morning`, `afternoon`, `evening`).
    pub const fn as_str(self) -> &'static str {
        match self {
            TimeOfDay::Any => "any",
            TimeOfDay::Morning => "morning",
            TimeOfDay::Afternoon => "afternoon",
            TimeOfDay::Evening => "evening",
        }
    }
}

impl FromStr for TimeOfDay {
    type Err = String;

    /// Parses the lowercase names (ASCII case-insensitive).
    fn from_str(s: &str) -> Result<TimeOfDay, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "any" => Ok(TimeOfDay::Any),
            "morning" => Ok(TimeOfDay::Morning),
            "afternoon" => Ok(TimeOfDay::Afternoon),
            "evening" => Ok(TimeOfDay::Evening),
            _ => Err(format!(
                "invalid time of day {s:?} (expected morning, afternoon, evening or any)"
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ndt(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M").unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        ndt(s).and_utc()
    }

    const BERLIN: Tz = chrono_tz::Europe::Berlin;
    const NEW_YORK: Tz = chrono_tz::America::New_York;

    #[test]
    fn clock_time_parses_and_displays() {
        assert_eq!("08:30".parse::<ClockTime>().unwrap().minutes(), 510);
        assert_eq!("8:05".parse::<ClockTime>().unwrap().to_string(), "08:05");
        assert_eq!("24:00".parse::<ClockTime>().unwrap(), ClockTime::END_OF_DAY);
        for bad in [
            "24:01", "25:00", "12:60", "12", "12:5", "a:00", "-1:00", "12:00:00", "",
        ] {
            assert!(bad.parse::<ClockTime>().is_err(), "{bad}");
        }
        assert_eq!(
            ClockTime::END_OF_DAY.on(NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()),
            ndt("2026-03-03T00:00")
        );
    }

    #[test]
    fn time_range_parses() {
        let r: TimeRange = "08:00 - 12:30".parse().unwrap();
        assert_eq!(r.to_string(), "08:00-12:30");
        assert_eq!(
            "12:00-08:00".parse::<TimeRange>(),
            Err(TimeParseError::Reversed("12:00-08:00".into()))
        );
        assert_eq!(
            "12:00-12:00".parse::<TimeRange>(),
            Err(TimeParseError::Reversed("12:00-12:00".into()))
        );
        assert!(matches!(
            "8-12".parse::<TimeRange>(),
            Err(TimeParseError::Range(_))
        ));
        assert!(r.contains(ClockTime::from_hm(8, 0).unwrap()));
        assert!(!r.contains(ClockTime::from_hm(12, 30).unwrap()));
    }

    #[test]
    fn spring_forward_gap_maps_to_the_jump() {
        // Berlin 2026-03-29: 02:00 CET -> 03:00 CEST at 01:00Z.
        assert_eq!(
            instant_of(BERLIN, ndt("2026-03-29T02:30")),
            utc("2026-03-29T01:00")
        );
        assert_eq!(
            instant_of(BERLIN, ndt("2026-03-29T02:00")),
            utc("2026-03-29T01:00")
        );
        assert_eq!(
            instant_of(BERLIN, ndt("2026-03-29T01:59")),
            utc("2026-03-29T00:59")
        );
        assert_eq!(
            instant_of(BERLIN, ndt("2026-03-29T03:00")),
            utc("2026-03-29T01:00")
        );
        assert_eq!(
            resolve_local(BERLIN, ndt("2026-03-29T02:30")),
            LocalResolution::Nonexistent {
                jump: utc("2026-03-29T01:00")
            }
        );
        // New York 2026-03-08: 02:00 EST -> 03:00 EDT at 07:00Z.
        assert_eq!(
            instant_of(NEW_YORK, ndt("2026-03-08T02:15")),
            utc("2026-03-08T07:00")
        );
    }

    #[test]
    fn fall_back_overlap_maps_to_first_occurrence() {
        // Berlin 2026-10-25: 03:00 CEST -> 02:00 CET at 01:00Z; 02:xx occurs at 00:xxZ and 01:xxZ.
        assert_eq!(
            instant_of(BERLIN, ndt("2026-10-25T02:30")),
            utc("2026-10-25T00:30")
        );
        assert_eq!(
            resolve_local(BERLIN, ndt("2026-10-25T02:30")),
            LocalResolution::Ambiguous {
                earlier: utc("2026-10-25T00:30"),
                later: utc("2026-10-25T01:30")
            }
        );
        assert_eq!(
            format_local(BERLIN, utc("2026-10-25T00:30")),
            "2026-10-25T02:30+02:00"
        );
        assert_eq!(
            format_local(BERLIN, utc("2026-10-25T01:30")),
            "2026-10-25T02:30+01:00"
        );
        assert_eq!(
            format_local(BERLIN, utc("2026-10-25T02:30")),
            "2026-10-25T03:30"
        );
        // New York 2026-11-01: 01:xx occurs twice (05:xxZ EDT, 06:xxZ EST).
        assert_eq!(
            instant_of(NEW_YORK, ndt("2026-11-01T01:30")),
            utc("2026-11-01T05:30")
        );
    }

    #[test]
    fn parse_local_accepts_iso_forms() {
        let want = ndt("2026-03-02T09:30");
        for s in [
            "2026-03-02T09:30",
            "2026-03-02T09:30:00",
            "2026-03-02 09:30",
            " 2026-03-02T09:30 ",
        ] {
            assert_eq!(
                parse_local(s).unwrap(),
                LocalInput {
                    local: want,
                    offset: None
                },
                "{s}"
            );
        }
        let with = parse_local("2026-10-25T02:30+01:00").unwrap();
        assert_eq!(with.offset, FixedOffset::east_opt(3600));
        assert_eq!(
            parse_local("2026-03-02T09:30-05:00").unwrap().offset,
            FixedOffset::west_opt(5 * 3600)
        );
        assert_eq!(
            parse_local("2026-03-02T09:30Z").unwrap().offset,
            FixedOffset::east_opt(0)
        );
        for bad in [
            "tomorrow",
            "2026-02-30T09:00",
            "2026-03-02",
            "09:30",
            "2026-03-02T9:3",
            "2026-03-02T09:30+1:00",
            "2026-03-02T09:30é",
        ] {
            assert!(
                matches!(parse_local(bad), Err(LocalInputError::Syntax(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_local("2026-03-02T09:30:15"),
            Err(LocalInputError::Seconds(_))
        ));
    }

    #[test]
    fn resolve_reports_gaps_overlaps_and_wrong_offsets() {
        let p = |s| parse_local(s).unwrap();
        assert_eq!(
            p("2026-03-02T09:30").resolve(BERLIN),
            Ok(utc("2026-03-02T08:30"))
        );
        assert!(matches!(
            p("2026-03-29T02:30").resolve(BERLIN),
            Err(LocalInputError::Nonexistent { .. })
        ));
        assert!(matches!(
            p("2026-10-25T02:30").resolve(BERLIN),
            Err(LocalInputError::Ambiguous { .. })
        ));
        assert_eq!(
            p("2026-10-25T02:30+02:00").resolve(BERLIN),
            Ok(utc("2026-10-25T00:30"))
        );
        assert_eq!(
            p("2026-10-25T02:30+01:00").resolve(BERLIN),
            Ok(utc("2026-10-25T01:30"))
        );
        // "Z" is not Berlin's offset: the model must send local time.
        assert!(matches!(
            p("2026-03-02T09:30Z").resolve(BERLIN),
            Err(LocalInputError::OffsetMismatch { .. })
        ));
        assert_eq!(
            p("2026-03-02T09:30+01:00").resolve(BERLIN),
            Ok(utc("2026-03-02T08:30"))
        );
    }

    #[test]
    fn time_of_day_boundaries() {
        let t = |s: &str| s.parse::<ClockTime>().unwrap();
        assert!(TimeOfDay::Morning.matches(t("11:59")));
        assert!(!TimeOfDay::Morning.matches(t("12:00")));
        assert!(TimeOfDay::Afternoon.matches(t("12:00")));
        assert!(!TimeOfDay::Afternoon.matches(t("17:00")));
        assert!(TimeOfDay::Evening.matches(t("17:00")));
        assert!(TimeOfDay::Any.matches(t("03:00")));
        assert_eq!("Evening".parse(), Ok(TimeOfDay::Evening));
        assert!("night".parse::<TimeOfDay>().is_err());
    }
}
