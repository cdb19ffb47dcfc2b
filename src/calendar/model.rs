//! The calendar configuration of one business: zone, booking rules, weekly hours, providers,
//! services and closures, plus the appointment read model.
//!
//! Plain data. The calendar file (`crate::calendar_file`) builds it after validation and the store
//! (`crate::store::calendar`) saves and loads it; the rules in [`super::rules`] read it. Providers
//! and services are identified by their `key` (a slug from the calendar file), never by database
//! ids. No I/O.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc, Weekday};
use chrono_tz::Tz;

use super::time::TimeRange;

/// Default minimum time between now and the start of a new appointment, in minutes.
pub const DEFAULT_MIN_LEAD_MINUTES: u32 = 60;
/// Default spacing of the slots offered, in minutes.
pub const DEFAULT_SLOT_INTERVAL_MINUTES: u32 = 15;
/// Default number of days ahead (counted in local dates from today) that can be booked.
pub const DEFAULT_MAX_DAYS_AHEAD: u32 = 90;

/// The complete calendar configuration of one business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessCalendar {
    /// Who and where.
    pub business: Business,
    /// Lead time, slot spacing and horizon.
    pub rules: BookingRules,
    /// Weekly opening hours of the business (local wall-clock time).
    pub hours: WeeklyHours,
    /// Staff and rooms, in the order of the calendar file (the order used when the caller has no
    /// preference).
    pub providers: Vec<Provider>,
    /// What can be booked.
    pub services: Vec<Service>,
    /// Closures and holidays, business-wide or per provider.
    pub closures: Vec<Closure>,
}

/// Identity and contact details of a business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Business {
    /// Slug identifying the business (`bright-smile`), the `business` of the tool context.
    pub key: String,
    /// Display name (`Bright Smile Dental`).
    pub name: String,
    /// IANA time zone of its opening hours (`Europe/Berlin`).
    pub timezone: Tz,
    /// Street address, as spoken to callers.
    pub address: String,
    /// Public phone number.
    pub phone: String,
    /// ISO 4217 currency code of the prices (`EUR`); empty when no service has a price.
    pub currency: String,
}

/// Booking limits of a business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookingRules {
    /// Minimum time between now and an appointment's start, in minutes.
    pub min_lead_minutes: u32,
    /// Spacing of offered slots, in minutes (slots start on multiples of it, counted from
    /// local midnight). At least 1.
    pub slot_interval_minutes: u32,
    /// How many local days after today can be booked (today + N is the last day).
    pub max_days_ahead: u32,
}

impl Default for BookingRules {
    fn default() -> BookingRules {
        BookingRules {
            min_lead_minutes: DEFAULT_MIN_LEAD_MINUTES,
            slot_interval_minutes: DEFAULT_SLOT_INTERVAL_MINUTES,
            max_days_ahead: DEFAULT_MAX_DAYS_AHEAD,
        }
    }
}

/// Opening ranges for each day of the week, in local wall-clock time. A day without ranges is
/// closed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WeeklyHours {
    days: [Vec<TimeRange>; 7],
}

impl WeeklyHours {
    /// Closed every day.
    pub fn new() -> WeeklyHours {
        WeeklyHours::default()
    }

    /// The ranges of `day`, sorted by start.
    pub fn ranges(&self, day: Weekday) -> &[TimeRange] {
        &self.days[day.num_days_from_monday() as usize]
    }

    /// Replaces the ranges of `day` (kept sorted by start).
    pub fn set(&mut self, day: Weekday, mut ranges: Vec<TimeRange>) {
        ranges.sort();
        self.days[day.num_days_from_monday() as usize] = ranges;
    }

    /// Adds one range to `day` (kept sorted by start).
    pub fn add(&mut self, day: Weekday, range: TimeRange) {
        let v = &mut self.days[day.num_days_from_monday() as usize];
        v.push(range);
        v.sort();
    }

    /// Whether no day has any range.
    pub fn is_closed_all_week(&self) -> bool {
        self.days.iter().all(Vec::is_empty)
    }

    /// `(weekday, ranges)` from Monday to Sunday.
    pub fn iter(&self) -> impl Iterator<Item = (Weekday, &[TimeRange])> {
        WEEK.iter().map(move |d| (*d, self.ranges(*d)))
    }
}

/// Monday to Sunday.
pub const WEEK: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

/// English name of a weekday (`Monday`).
pub fn weekday_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

/// Whether a provider is a person or a room/chair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ProviderKind {
    /// A person (dentist, hygienist).
    #[default]
    Staff,
    /// A room or a piece of equipment.
    Room,
}

impl ProviderKind {
    /// `staff` or `room`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Staff => "staff",
            ProviderKind::Room => "room",
        }
    }
}

impl FromStr for ProviderKind {
    type Err = String;

    fn from_str(s: &str) -> Result<ProviderKind, String> {
        match s {
            "staff" => Ok(ProviderKind::Staff),
            "room" => Ok(ProviderKind::Room),
            _ => Err(format!(
                "invalid provider kind {s:?} (expected \"staff\" or \"room\")"
            )),
        }
    }
}

/// A person or room that appointments are booked with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// Slug (`weber`).
    pub key: String,
    /// Display name (`Dr. Anna Weber`).
    pub name: String,
    /// Staff or room.
    pub kind: ProviderKind,
    /// Role, as spoken to callers (`dentist`); may be empty.
    pub role: String,
    /// The provider's own weekly hours, or `None` to work all business hours. Effective hours are
    /// the intersection with the business hours.
    pub hours: Option<WeeklyHours>,
}

/// Something that can be booked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Slug (`checkup`).
    pub key: String,
    /// Display name (`Check-up and cleaning`).
    pub name: String,
    /// Short description for callers; may be empty.
    pub description: String,
    /// Length of the appointment, in minutes (at least 1).
    pub duration_minutes: u32,
    /// Time the provider stays blocked after the appointment (cleaning, notes), in minutes. It
    /// may run past closing time but never into another appointment.
    pub buffer_minutes: u32,
    /// Price in minor units of the business currency (cents), if published.
    pub price_cents: Option<i64>,
    /// Keys of the providers who offer it, in order of preference.
    pub providers: Vec<String>,
}

/// A closure or holiday: whole days or a daily time span, for the business or one provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closure {
    /// First local date closed.
    pub first_day: NaiveDate,
    /// Last local date closed (inclusive; equal to `first_day` for one day).
    pub last_day: NaiveDate,
    /// Closed only during this local span of each day, or all day when `None`.
    pub times: Option<TimeRange>,
    /// The provider who is away, or `None` for the whole business.
    pub provider: Option<String>,
    /// Why (`Christmas Eve`, `vacation`); may be empty.
    pub reason: String,
}

impl Closure {
    /// Whether the closure applies on local date `day`.
    pub fn covers_day(&self, day: NaiveDate) -> bool {
        self.first_day <= day && day <= self.last_day
    }

    /// Whether it closes the whole day (no time span).
    pub fn is_all_day(&self) -> bool {
        self.times.is_none()
    }
}

impl BusinessCalendar {
    /// The business's IANA zone.
    pub fn tz(&self) -> Tz {
        self.business.timezone
    }

    /// The provider with this key.
    pub fn provider_by_key(&self, key: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.key == key)
    }

    /// The service with this key.
    pub fn service_by_key(&self, key: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.key == key)
    }

    /// The providers offering `service`, in the service's order of preference.
    pub fn providers_for<'a>(&'a self, service: &'a Service) -> impl Iterator<Item = &'a Provider> {
        service
            .providers
            .iter()
            .filter_map(move |k| self.provider_by_key(k))
    }

    /// `price_cents` formatted with the currency (`89.00 EUR`), or `None` without a price.
    pub fn format_price(&self, service: &Service) -> Option<String> {
        service.price_cents.map(|c| {
            let sign = if c < 0 { "-" } else { "" };
            let c = c.unsigned_abs();
            let text = format!("{sign}{}.{:02}", c / 100, c % 100);
            if self.business.currency.is_empty() {
                text
            } else {
                format!("{text} {}", self.business.currency)
            }
        })
    }
}

/// Life-cycle state of an appointment row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppointmentStatus {
    /// Active: the time is taken.
    Booked,
    /// Cancelled by the caller or staff: the time is free.
    Cancelled,
    /// Superseded by a newer row with the same confirmation code: the time is free.
    Rescheduled,
}

impl AppointmentStatus {
    /// The database spelling (`booked`, `cancelled`, `rescheduled`).
    pub const fn as_str(self) -> &'static str {
        match self {
            AppointmentStatus::Booked => "booked",
            AppointmentStatus::Cancelled => "cancelled",
            AppointmentStatus::Rescheduled => "rescheduled",
        }
    }
}

impl fmt::Display for AppointmentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AppointmentStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<AppointmentStatus, String> {
        match s {
            "booked" => Ok(AppointmentStatus::Booked),
            "cancelled" => Ok(AppointmentStatus::Cancelled),
            "rescheduled" => Ok(AppointmentStatus::Rescheduled),
            _ => Err(format!("invalid appointment status {s:?}")),
        }
    }
}

/// One appointment row, as read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appointment {
    /// Row id.
    pub id: i64,
    /// Business key.
    pub business: String,
    /// Provider key.
    pub provider: String,
    /// Provider display name.
    pub provider_name: String,
    /// Service key.
    pub service: String,
    /// Service display name.
    pub service_name: String,
    /// Start (UTC).
    pub start: DateTime<Utc>,
    /// End of the service (UTC).
    pub end: DateTime<Utc>,
    /// End of the buffer after it (UTC); the provider is busy in `[start, block_end)`.
    pub block_end: DateTime<Utc>,
    /// Customer's name.
    pub customer_name: String,
    /// Customer's phone number as given.
    pub phone: String,
    /// Free-text notes.
    pub notes: String,
    /// Life-cycle state.
    pub status: AppointmentStatus,
    /// Code the caller uses to change or cancel; shared by all rows of one booking chain.
    pub confirmation_code: String,
    /// SIP Call-ID of the call that made this row, if made by a call.
    pub call_id: Option<String>,
    /// 0 for a new booking, +1 for each reschedule or cancellation (iCalendar `SEQUENCE`).
    pub sequence: u32,
    /// When the row was created.
    pub created_at: DateTime<Utc>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
}
