//! Booking rules: when a provider is open, whether a requested appointment is allowed, and which
//! slots are free.
//!
//! Rules, in the order they are checked by [`BusinessCalendar::check_booking`]:
//! 1. the provider (if named) offers the service;
//! 2. no start in the past, and none sooner than `min_lead_minutes` from now;
//! 3. no start after the last bookable day (today + `max_days_ahead`, local dates);
//! 4. the service time `[start, start + duration)` lies inside one opening range of the business
//!    on the local date of the start, and no business closure intersects it;
//! 5. it also lies inside the provider's own hours (if any), and no closure of the provider
//!    intersects it.
//!
//! Overlap (rule 6) needs the existing appointments: the provider is busy in
//! `[start, start + duration + buffer)` of each booked appointment ([`Busy`]); two appointments
//! of one provider conflict when these half-open blocks intersect ([`blocks_overlap`]). The store
//! applies the same test inside its booking transaction; [`BusinessCalendar::free_slots`] applies
//! it to a snapshot.
//!
//! Hours and closures are local wall-clock times converted with [`instant_of`] (see
//! [`super::time`] for the DST rule). Pure: `now` is a parameter, no I/O.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};

use super::model::{BusinessCalendar, Closure, Provider, Service};
use super::time::{instant_of, local_date, to_local, ClockTime, TimeOfDay, TimeRange};

/// Most local days one slot search walks, whatever the horizon.
pub const MAX_SEARCH_DAYS: i64 = 366;

/// A span of real time, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    /// First instant inside.
    pub start: DateTime<Utc>,
    /// First instant after.
    pub end: DateTime<Utc>,
}

impl Interval {
    /// Whether `other` lies entirely inside `self`.
    pub fn contains(&self, other: &Interval) -> bool {
        self.start <= other.start && other.end <= self.end
    }

    /// Whether the two share any instant.
    pub fn overlaps(&self, other: &Interval) -> bool {
        blocks_overlap(self.start, self.end, other.start, other.end)
    }
}

/// Whether the half-open blocks `[a_start, a_end)` and `[b_start, b_end)` intersect: the overlap
/// rule for appointments of one provider (blocks include the buffer after the service).
pub fn blocks_overlap(
    a_start: DateTime<Utc>,
    a_end: DateTime<Utc>,
    b_start: DateTime<Utc>,
    b_end: DateTime<Utc>,
) -> bool {
    a_start < b_end && b_start < a_end
}

/// Time a provider is taken by an existing booked appointment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    /// Provider key.
    pub provider: String,
    /// Appointment start.
    pub start: DateTime<Utc>,
    /// End of the appointment's buffer.
    pub block_end: DateTime<Utc>,
}

/// Why a booking or a search is refused. Messages are lowercase and name what failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// No service matches.
    #[error("no service matches {query:?}")]
    UnknownService {
        /// What was asked for.
        query: String,
    },
    /// Several services match.
    #[error("{query:?} matches several services: {}", matches.join(", "))]
    AmbiguousService {
        /// What was asked for.
        query: String,
        /// Names of the matches.
        matches: Vec<String>,
    },
    /// No provider matches.
    #[error("no provider matches {query:?}")]
    UnknownProvider {
        /// What was asked for.
        query: String,
    },
    /// Several providers match.
    #[error("{query:?} matches several providers: {}", matches.join(", "))]
    AmbiguousProvider {
        /// What was asked for.
        query: String,
        /// Names of the matches.
        matches: Vec<String>,
    },
    /// The provider does not offer the service.
    #[error("{provider} does not offer {service}")]
    ProviderDoesNotOffer {
        /// Provider name.
        provider: String,
        /// Service name.
        service: String,
    },
    /// The start is in the past.
    #[error("the requested time {start} is in the past")]
    InPast {
        /// Requested start.
        start: DateTime<Utc>,
    },
    /// The start is sooner than the minimum lead time.
    #[error("the requested time is too soon; the earliest bookable time is {earliest}")]
    TooSoon {
        /// `now + min_lead`.
        earliest: DateTime<Utc>,
    },
    /// The start is after the last bookable day.
    #[error("the requested date is too far ahead; the last bookable day is {last_day}")]
    BeyondHorizon {
        /// Last bookable local date.
        last_day: NaiveDate,
    },
    /// A business closure covers the time.
    #[error("the business is closed on {date}{}", reason_suffix(reason))]
    Closed {
        /// Local date.
        date: NaiveDate,
        /// Closure reason (may be empty).
        reason: String,
    },
    /// The time is outside the business's opening hours.
    #[error("the requested time on {date} is outside opening hours")]
    OutsideHours {
        /// Local date.
        date: NaiveDate,
        /// Opening ranges of that day (empty when closed all day).
        hours: Vec<TimeRange>,
    },
    /// No provider offering the service works then (or the named one does not).
    #[error("{} at the requested time{}", unavailable_subject(provider.as_deref()), reason_suffix(reason))]
    ProviderUnavailable {
        /// Provider name when one was requested.
        provider: Option<String>,
        /// Closure reason if a provider closure is the cause (may be empty).
        reason: String,
    },
}

fn unavailable_subject(provider: Option<&str>) -> String {
    match provider {
        Some(name) => format!("{name} is not available"),
        None => "no provider is available".to_owned(),
    }
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    }
}

/// What [`BusinessCalendar::check_booking`] is asked.
#[derive(Debug, Clone, Copy)]
pub struct BookingCheck<'a> {
    /// The service.
    pub service: &'a Service,
    /// The requested provider, or `None` for any who offers the service.
    pub provider: Option<&'a Provider>,
    /// Requested start.
    pub start: DateTime<Utc>,
}

/// A requested appointment that passes rules 1–5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eligible {
    /// Keys of the providers who could take it, in order of preference; the store books the
    /// first one that is free.
    pub providers: Vec<String>,
    /// Start.
    pub start: DateTime<Utc>,
    /// End of the service.
    pub end: DateTime<Utc>,
    /// End of the buffer.
    pub block_end: DateTime<Utc>,
}

/// A slot search.
#[derive(Debug, Clone, Copy)]
pub struct SlotQuery<'a> {
    /// The service.
    pub service: &'a Service,
    /// Only this provider, or `None` for any who offers the service.
    pub provider: Option<&'a Provider>,
    /// First local date searched.
    pub first_day: NaiveDate,
    /// Last local date searched (inclusive).
    pub last_day: NaiveDate,
    /// Part of the day wanted.
    pub time_of_day: TimeOfDay,
    /// Most slots returned.
    pub max_results: usize,
}

/// A free start time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Start.
    pub start: DateTime<Utc>,
    /// End of the service.
    pub end: DateTime<Utc>,
    /// Keys of the providers free then, in order of preference.
    pub providers: Vec<String>,
}

impl BusinessCalendar {
    /// Finds a service by key, by name (ASCII case-insensitive), or by a part of its name or key
    /// that only one service has.
    ///
    /// # Errors
    /// [`RuleError::UnknownService`] or [`RuleError::AmbiguousService`].
    pub fn resolve_service(&self, query: &str) -> Result<&Service, RuleError> {
        lookup(&self.services, query, |s| (&s.key, &s.name)).map_err(|m| match m {
            Lookup::None => RuleError::UnknownService {
                query: query.to_owned(),
            },
            Lookup::Many(matches) => RuleError::AmbiguousService {
                query: query.to_owned(),
                matches,
            },
        })
    }

    /// Finds a provider by key, by name, or by a unique part of either (`Weber` for
    /// `Dr. Anna Weber`).
    ///
    /// # Errors
    /// [`RuleError::UnknownProvider`] or [`RuleError::AmbiguousProvider`].
    pub fn resolve_provider(&self, query: &str) -> Result<&Provider, RuleError> {
        lookup(&self.providers, query, |p| (&p.key, &p.name)).map_err(|m| match m {
            Lookup::None => RuleError::UnknownProvider {
                query: query.to_owned(),
            },
            Lookup::Many(matches) => RuleError::AmbiguousProvider {
                query: query.to_owned(),
                matches,
            },
        })
    }

    /// The local date of `t` in the business's zone.
    pub fn local_date(&self, t: DateTime<Utc>) -> NaiveDate {
        local_date(self.tz(), t)
    }

    /// The earliest start allowed at `now`: `now + min_lead_minutes`.
    pub fn earliest_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + Duration::minutes(i64::from(self.rules.min_lead_minutes))
    }

    /// The last local date that can be booked at `now`.
    pub fn last_bookable_day(&self, now: DateTime<Utc>) -> NaiveDate {
        let today = self.local_date(now);
        today
            .checked_add_signed(Duration::days(i64::from(self.rules.max_days_ahead)))
            .unwrap_or(NaiveDate::MAX)
    }

    /// The business's opening hours on local date `day`, as real time (no closures applied).
    pub fn business_hours(&self, day: NaiveDate) -> Vec<Interval> {
        ranges_on(self, day, self.hours.ranges(day.weekday()))
    }

    /// The closures that apply on local date `day` to the business (`provider == None`) or to
    /// one provider only, with the real time each one takes that day.
    pub fn closures_on(&self, day: NaiveDate, provider: Option<&str>) -> Vec<(Interval, &Closure)> {
        self.closures
            .iter()
            .filter(|c| c.provider.as_deref() == provider && c.covers_day(day))
            .filter_map(|c| {
                let range = c.times.unwrap_or(TimeRange {
                    start: ClockTime::MIDNIGHT,
                    end: ClockTime::END_OF_DAY,
                });
                let iv = range_on(self, day, &range)?;
                Some((iv, c))
            })
            .collect()
    }

    /// The business closures whose days intersect `[first, last]`, and, when `provider` is
    /// given, that provider's too.
    pub fn closures_between(
        &self,
        first: NaiveDate,
        last: NaiveDate,
        provider: Option<&str>,
    ) -> Vec<&Closure> {
        self.closures
            .iter()
            .filter(|c| {
                c.provider.is_none() || (provider.is_some() && c.provider.as_deref() == provider)
            })
            .filter(|c| c.first_day <= last && first <= c.last_day)
            .collect()
    }

    /// When `provider` can see clients on local date `day`: business hours ∩ provider hours,
    /// minus business and provider closures.
    pub fn provider_hours(&self, provider: &Provider, day: NaiveDate) -> Vec<Interval> {
        let mut open = self.business_hours(day);
        if let Some(own) = &provider.hours {
            open = intersect(&open, &ranges_on(self, day, own.ranges(day.weekday())));
        }
        for (cut, _) in self
            .closures_on(day, None)
            .into_iter()
            .chain(self.closures_on(day, Some(&provider.key)))
        {
            open = subtract(&open, &cut);
        }
        open
    }

    /// Checks rules 1–5 (see the module docs) for a requested appointment at `now`.
    ///
    /// # Errors
    /// The first rule broken, as a [`RuleError`].
    pub fn check_booking(
        &self,
        now: DateTime<Utc>,
        req: &BookingCheck<'_>,
    ) -> Result<Eligible, RuleError> {
        let service = req.service;
        if let Some(p) = req.provider {
            if !service.providers.contains(&p.key) {
                return Err(RuleError::ProviderDoesNotOffer {
                    provider: p.name.clone(),
                    service: service.name.clone(),
                });
            }
        }
        let start = req.start;
        if start < now {
            return Err(RuleError::InPast { start });
        }
        let earliest = self.earliest_start(now);
        if start < earliest {
            return Err(RuleError::TooSoon { earliest });
        }
        let day = self.local_date(start);
        let last_day = self.last_bookable_day(now);
        if day > last_day {
            return Err(RuleError::BeyondHorizon { last_day });
        }
        let end = start + Duration::minutes(i64::from(service.duration_minutes.max(1)));
        let block_end = end + Duration::minutes(i64::from(service.buffer_minutes));
        let span = Interval { start, end };

        let business_closures = self.closures_on(day, None);
        let within_hours = self.business_hours(day).iter().any(|iv| iv.contains(&span));
        if let Some((_, c)) = business_closures.iter().find(|(iv, _)| iv.overlaps(&span)) {
            return Err(RuleError::Closed {
                date: day,
                reason: c.reason.clone(),
            });
        }
        if !within_hours {
            return Err(RuleError::OutsideHours {
                date: day,
                hours: self.hours.ranges(day.weekday()).to_vec(),
            });
        }

        let candidates: Vec<&Provider> = match req.provider {
            Some(p) => vec![p],
            None => self.providers_for(service).collect(),
        };
        let mut providers = Vec::new();
        let mut reason = String::new();
        for p in &candidates {
            if self
                .provider_hours(p, day)
                .iter()
                .any(|iv| iv.contains(&span))
            {
                providers.push(p.key.clone());
            } else if reason.is_empty() {
                if let Some((_, c)) = self
                    .closures_on(day, Some(&p.key))
                    .into_iter()
                    .find(|(iv, _)| iv.overlaps(&span))
                {
                    reason = c.reason.clone();
                }
            }
        }
        if providers.is_empty() {
            return Err(RuleError::ProviderUnavailable {
                provider: req.provider.map(|p| p.name.clone()),
                reason,
            });
        }
        Ok(Eligible {
            providers,
            start,
            end,
            block_end,
        })
    }

    /// Free slots for `q` at `now`, given the booked appointments in `busy`, earliest first.
    ///
    /// Starts lie on multiples of `slot_interval_minutes` counted from local midnight, at or after
    /// `now + min_lead`, within the horizon, with the service inside the provider's hours and the
    /// whole block (service + buffer) clear of every [`Busy`] of that provider. At most
    /// `q.max_results` slots; one slot per start time, listing every provider free then. The
    /// search stops at the end of the first day that completes the result, and after
    /// [`MAX_SEARCH_DAYS`] days.
    pub fn free_slots(&self, now: DateTime<Utc>, q: &SlotQuery<'_>, busy: &[Busy]) -> Vec<Slot> {
        let tz = self.tz();
        let service = q.service;
        let duration = Duration::minutes(i64::from(service.duration_minutes.max(1)));
        let buffer = Duration::minutes(i64::from(service.buffer_minutes));
        let step_min = i64::from(self.rules.slot_interval_minutes.clamp(1, 24 * 60));
        let step = Duration::minutes(step_min);
        let earliest = self.earliest_start(now);
        let first = q.first_day.max(self.local_date(now));
        let last = q.last_day.min(self.last_bookable_day(now)).min(
            first
                .checked_add_signed(Duration::days(MAX_SEARCH_DAYS - 1))
                .unwrap_or(NaiveDate::MAX),
        );
        let candidates: Vec<&Provider> = match q.provider {
            Some(p) if service.providers.contains(&p.key) => vec![p],
            Some(_) => Vec::new(),
            None => self.providers_for(service).collect(),
        };

        let mut found: BTreeMap<DateTime<Utc>, Vec<String>> = BTreeMap::new();
        let mut day = first;
        while day <= last && q.max_results > 0 {
            for p in &candidates {
                let theirs: Vec<&Busy> = busy.iter().filter(|b| b.provider == p.key).collect();
                for iv in self.provider_hours(p, day) {
                    let mut t = align_up(tz, iv.start, step_min);
                    while t + duration <= iv.end {
                        let block_end = t + duration + buffer;
                        let local = ClockTime::of(to_local(tz, t).time());
                        if t >= earliest
                            && q.time_of_day.matches(local)
                            && !theirs
                                .iter()
                                .any(|b| blocks_overlap(t, block_end, b.start, b.block_end))
                        {
                            found.entry(t).or_default().push(p.key.clone());
                        }
                        t += step;
                    }
                }
            }
            if found.len() >= q.max_results {
                break;
            }
            match day.succ_opt() {
                Some(next) => day = next,
                None => break,
            }
        }
        found
            .into_iter()
            .take(q.max_results)
            .map(|(start, providers)| Slot {
                start,
                end: start + duration,
                providers,
            })
            .collect()
    }
}

/// The `n` slots closest in time to `around` (ties: the earlier), returned earliest first.
pub fn nearest_slots(mut slots: Vec<Slot>, around: DateTime<Utc>, n: usize) -> Vec<Slot> {
    slots.sort_by_key(|s| ((s.start - around).num_seconds().unsigned_abs(), s.start));
    slots.truncate(n);
    slots.sort_by_key(|s| s.start);
    slots
}

/// `t` moved forward to the next local wall-clock minute that is a multiple of `step_min`
/// counted from local midnight (unchanged when already on one).
fn align_up(tz: chrono_tz::Tz, t: DateTime<Utc>, step_min: i64) -> DateTime<Utc> {
    let local = to_local(tz, t);
    let minute_of_day = i64::from(ClockTime::of(local.time()).minutes());
    let seconds = i64::from(chrono::Timelike::second(&local));
    let rem = minute_of_day % step_min;
    if rem == 0 && seconds == 0 {
        t
    } else {
        t + Duration::minutes(step_min - rem) - Duration::seconds(seconds)
    }
}

/// A day's wall-clock ranges as real-time intervals, sorted and merged; ranges that vanish in a
/// DST gap are dropped.
fn ranges_on(cal: &BusinessCalendar, day: NaiveDate, ranges: &[TimeRange]) -> Vec<Interval> {
    let mut out: Vec<Interval> = ranges
        .iter()
        .filter_map(|r| range_on(cal, day, r))
        .collect();
    out.sort();
    let mut merged: Vec<Interval> = Vec::with_capacity(out.len());
    for iv in out {
        match merged.last_mut() {
            Some(prev) if iv.start <= prev.end => prev.end = prev.end.max(iv.end),
            _ => merged.push(iv),
        }
    }
    merged
}

/// One wall-clock range on `day` as real time; `None` when it is empty after DST conversion.
fn range_on(cal: &BusinessCalendar, day: NaiveDate, r: &TimeRange) -> Option<Interval> {
    let tz = cal.tz();
    let start = instant_of(tz, r.start.on(day));
    let end = instant_of(tz, r.end.on(day));
    (start < end).then_some(Interval { start, end })
}

/// Intersection of two sorted, disjoint interval lists.
fn intersect(a: &[Interval], b: &[Interval]) -> Vec<Interval> {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            let start = x.start.max(y.start);
            let end = x.end.min(y.end);
            if start < end {
                out.push(Interval { start, end });
            }
        }
    }
    out.sort();
    out
}

/// `a` without the instants of `cut`.
fn subtract(a: &[Interval], cut: &Interval) -> Vec<Interval> {
    let mut out = Vec::with_capacity(a.len() + 1);
    for x in a {
        if !x.overlaps(cut) {
            out.push(*x);
            continue;
        }
        if x.start < cut.start {
            out.push(Interval {
                start: x.start,
                end: cut.start,
            });
        }
        if cut.end < x.end {
            out.push(Interval {
                start: cut.end,
                end: x.end,
            });
        }
    }
    out
}

enum Lookup {
    None,
    Many(Vec<String>),
}

/// Key match, then name match, then a unique substring of key or name; ASCII case-insensitive.
fn lookup<'a, T>(
    items: &'a [T],
    query: &str,
    fields: impl Fn(&'a T) -> (&'a String, &'a String),
) -> Result<&'a T, Lookup> {
    let q = query.trim().to_lowercase();
    if q.is_empty() {
        return Err(Lookup::None);
    }
    if let Some(x) = items.iter().find(|x| fields(x).0.to_lowercase() == q) {
        return Ok(x);
    }
    if let Some(x) = items.iter().find(|x| fields(x).1.to_lowercase() == q) {
        return Ok(x);
    }
    let partial: Vec<&T> = items
        .iter()
        .filter(|x| {
            let (k, n) = fields(x);
            k.to_lowercase().contains(&q) || n.to_lowercase().contains(&q)
        })
        .collect();
    match partial.as_slice() {
        [one] => Ok(one),
        [] => Err(Lookup::None),
        many => Err(Lookup::Many(
            many.iter().map(|x| fields(x).1.clone()).collect(),
        )),
    }
}
