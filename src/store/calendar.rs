//! Calendar persistence: all calendar SQL (businesses, providers, services, hours, closures,
//! appointments) and the log of the model's tool calls.
//!
//! Invariants:
//! * **No double booking.** [`book`] and [`reschedule`] run in one `BEGIN IMMEDIATE` transaction:
//!   the write lock is taken before the overlap check, so two calls cannot both see a free slot
//!   and both insert. The `appointments_no_overlap_*` triggers and the partial unique indexes of
//!   the migration back this up for any writer.
//! * **Idempotent retries.** A tool call carries a `request_key` (Call-ID + normalised
//!   arguments); a second [`book`] or [`reschedule`] with the same key returns the first result
//!   instead of writing again, as long as that booking is still active (after a cancellation the
//!   same request books anew).
//! * Instants are stored as fixed-width UTC text (`YYYY-MM-DDTHH:MM:SSZ`), so SQL text comparison
//!   is time comparison. The overlap test mirrors `crate::calendar::rules::blocks_overlap`.
//!
//! Runtime-checked `sqlx::query`/`query_as` only (no `DATABASE_URL` needed to build); every
//! statement is exercised by the tests in `crate::tools`. The rules themselves (hours, closures,
//! lead time) live in `crate::calendar`; this module only stores and reads.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc, Weekday};
use chrono_tz::Tz;
use rand::Rng;
use sqlx::AnyConnection;

use super::{Backend, Store};
use crate::sql;

use crate::calendar::model::WEEK;
use crate::calendar::phone::{normalize, phones_match};
use crate::calendar::{
    Appointment, AppointmentStatus, BookingRules, Business, BusinessCalendar, Busy, ClockTime,
    Closure, Provider, ProviderKind, Service, TimeRange, WeeklyHours,
};

/// Characters of confirmation codes: upper-case letters and digits without the look-alikes
/// (0/O, 1/I, 2/Z, 5/S, 8/B) so a code read over the phone is unambiguous.
pub const CODE_ALPHABET: &[u8] = b"ACDEFGHJKLMNPQRTUVWXY34679";
/// Length of confirmation codes (26⁶ ≈ 3·10⁸ codes).
pub const CODE_LEN: usize = 6;
/// Attempts to draw an unused confirmation code before giving up.
const CODE_ATTEMPTS: usize = 16;

/// Errors of the calendar store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A query failed (I/O, lock timeout, constraint).
    #[error("calendar query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// No business with this key has been imported.
    #[error("no business {0:?} in the calendar database (import a calendar file first)")]
    UnknownBusiness(String),
    /// A stored value could not be read back.
    #[error("invalid {what} in the calendar database: {value:?}")]
    Corrupt {
        /// Which column.
        what: &'static str,
        /// The stored text.
        value: String,
    },
    /// No unused confirmation code was found (practically impossible).
    #[error("no unused confirmation code after {CODE_ATTEMPTS} attempts")]
    CodesExhausted,
}

impl Error {
    /// Whether the database could not be reached (connection refused or lost, pool timeout,
    /// server shutting down, statement timeout), as opposed to a bad query or bad data: the
    /// caller can be told "the calendar is unreachable right now" and the call goes on.
    pub fn is_unreachable(&self) -> bool {
        let Error::Query(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(d) => d.code().is_some_and(|c| {
                // 08: connection exception; 57P0x: server shutting down; 57014: timeout.
                c.starts_with("08") || c.starts_with("57P0") || c == "57014"
            }),
            _ => false,
        }
    }
}

/// Errors of [`book`].
#[derive(Debug, thiserror::Error)]
pub enum BookError {
    /// Every candidate provider has an overlapping booked appointment.
    #[error("the requested time is already taken")]
    SlotTaken {
        /// The conflicting appointment when this same call made it.
        own: Option<Box<Appointment>>,
    },
    /// The service or every candidate provider is unknown or inactive.
    #[error("unknown service {service:?} or providers {providers:?}")]
    Unknown {
        /// Service key.
        service: String,
        /// Provider keys.
        providers: Vec<String>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] Error),
}

impl From<sqlx::Error> for BookError {
    fn from(e: sqlx::Error) -> BookError {
        BookError::Store(Error::Query(e))
    }
}

/// Errors of [`reschedule`] and [`cancel`].
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// No appointment has this confirmation code.
    #[error("no appointment with confirmation code {0:?}")]
    NotFound(String),
    /// The phone number given does not match the appointment's.
    #[error("the phone number does not match the appointment")]
    PhoneMismatch,
    /// The appointment is cancelled.
    #[error("the appointment is {}", .0.status)]
    NotActive(Box<Appointment>),
    /// The appointment changed since it was read (another call moved it).
    #[error("the appointment changed while it was being moved")]
    Changed,
    /// The new time overlaps another booked appointment.
    #[error("the requested time is already taken")]
    SlotTaken,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] Error),
}

impl From<sqlx::Error> for ChangeError {
    fn from(e: sqlx::Error) -> ChangeError {
        ChangeError::Store(Error::Query(e))
    }
}

// -------------------------------------------------------------------------------------------
// Time formats
// -------------------------------------------------------------------------------------------

const DB_TIME: &str = "%Y-%m-%dT%H:%M:%SZ";

/// An instant as stored in the rule columns: `YYYY-MM-DDTHH:MM:SSZ` (UTC, fixed width).
pub fn db_time(t: DateTime<Utc>) -> String {
    t.format(DB_TIME).to_string()
}

fn parse_db_time(what: &'static str, s: &str) -> Result<DateTime<Utc>, Error> {
    NaiveDateTime::parse_from_str(s, DB_TIME)
        .map(|t| t.and_utc())
        .map_err(|_| Error::Corrupt {
            what,
            value: s.to_owned(),
        })
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_stamp(what: &'static str, s: &str) -> Result<DateTime<Utc>, Error> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| Error::Corrupt {
            what,
            value: s.to_owned(),
        })
}

fn day_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn parse_day(what: &'static str, s: &str) -> Result<NaiveDate, Error> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| Error::Corrupt {
        what,
        value: s.to_owned(),
    })
}

fn minute(what: &'static str, m: i64) -> Result<ClockTime, Error> {
    u16::try_from(m)
        .ok()
        .and_then(ClockTime::from_minutes)
        .ok_or_else(|| Error::Corrupt {
            what,
            value: m.to_string(),
        })
}

fn range(what: &'static str, a: i64, b: i64) -> Result<TimeRange, Error> {
    TimeRange::new(minute(what, a)?, minute(what, b)?).ok_or_else(|| Error::Corrupt {
        what,
        value: format!("{a}-{b}"),
    })
}

fn count(what: &'static str, v: i64) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::Corrupt {
        what,
        value: v.to_string(),
    })
}

fn weekday(i: i64) -> Result<Weekday, Error> {
    usize::try_from(i)
        .ok()
        .and_then(|i| WEEK.get(i).copied())
        .ok_or_else(|| Error::Corrupt {
            what: "weekday",
            value: i.to_string(),
        })
}

/// Digits of a phone number (for the `phone_digits` look-up column).
fn digits(phone: &str) -> String {
    normalize(phone)
        .map(|n| n.trim_start_matches('+').to_owned())
        .unwrap_or_default()
}

// -------------------------------------------------------------------------------------------
// Import and load
// -------------------------------------------------------------------------------------------

/// What [`import`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Business key.
    pub business: String,
    /// Whether the business was new.
    pub created: bool,
    /// Providers in the file.
    pub providers: usize,
    /// Services in the file.
    pub services: usize,
    /// Weekly opening ranges written (business and providers).
    pub hour_ranges: usize,
    /// Closures written.
    pub closures: usize,
    /// Keys of providers no longer in the file, now inactive.
    pub deactivated_providers: Vec<String>,
    /// Keys of services no longer in the file, now inactive.
    pub deactivated_services: Vec<String>,
}

/// Upserts a validated calendar (from `crate::calendar_file`) in one transaction: the business
/// by key, providers and services by key (ones missing from `cal` become inactive, keeping their
/// appointments), hours, closures and service–provider links replaced.
///
/// # Errors
/// [`Error::Query`] on database failure (nothing is changed then).
pub async fn import(
    db: &Store,
    cal: &BusinessCalendar,
    now: DateTime<Utc>,
) -> Result<ImportSummary, Error> {
    let bk = db.backend();
    let mut tx = db.begin_write().await?;
    let b = &cal.business;
    lock_business(&mut tx, &b.key).await?;
    let existed: Option<i64> =
        sqlx::query_scalar(sql!(bk, "SELECT id FROM businesses WHERE key = ?"))
            .bind(&b.key)
            .fetch_optional(&mut *tx)
            .await?;
    let business_id: i64 =
        sqlx::query_scalar(sql!(bk,
        "INSERT INTO businesses (key, name, timezone, address, phone, currency, min_lead_minutes,
                                 slot_interval_minutes, max_days_ahead, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (key) DO UPDATE SET
             name = excluded.name, timezone = excluded.timezone, address = excluded.address,
             phone = excluded.phone, currency = excluded.currency,
             min_lead_minutes = excluded.min_lead_minutes,
             slot_interval_minutes = excluded.slot_interval_minutes,
             max_days_ahead = excluded.max_days_ahead, updated_at = excluded.updated_at
         RETURNING id"))
        .bind(&b.key)
        .bind(&b.name)
        .bind(b.timezone.name())
        .bind(&b.address)
        .bind(&b.phone)
        .bind(&b.currency)
        .bind(i64::from(cal.rules.min_lead_minutes))
        .bind(i64::from(cal.rules.slot_interval_minutes))
        .bind(i64::from(cal.rules.max_days_ahead))
        .bind(stamp(now))
        .fetch_one(&mut *tx)
        .await?;

    // Providers.
    let before: Vec<String> = sqlx::query_scalar(sql!(
        bk,
        "SELECT key FROM providers WHERE business_id = ? AND active = 1 ORDER BY position"
    ))
    .bind(business_id)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(sql!(
        bk,
        "UPDATE providers SET active = 0 WHERE business_id = ?"
    ))
    .bind(business_id)
    .execute(&mut *tx)
    .await?;
    let mut provider_ids = HashMap::new();
    for (i, p) in cal.providers.iter().enumerate() {
        let id: i64 = sqlx::query_scalar(sql!(bk,
            "INSERT INTO providers (business_id, key, name, kind, role, own_hours, position, active)
             VALUES (?, ?, ?, ?, ?, ?, ?, 1)
             ON CONFLICT (business_id, key) DO UPDATE SET
                 name = excluded.name, kind = excluded.kind, role = excluded.role,
                 own_hours = excluded.own_hours, position = excluded.position, active = 1
             RETURNING id"))
        .bind(business_id)
        .bind(&p.key)
        .bind(&p.name)
        .bind(p.kind.as_str())
        .bind(&p.role)
        .bind(i64::from(p.hours.is_some()))
        .bind(i64::try_from(i).unwrap_or(i64::MAX))
        .fetch_one(&mut *tx)
        .await?;
        provider_ids.insert(p.key.as_str(), id);
    }
    let deactivated_providers = before
        .into_iter()
        .filter(|k| !provider_ids.contains_key(k.as_str()))
        .collect();

    // Services and who offers them.
    let before: Vec<String> = sqlx::query_scalar(sql!(
        bk,
        "SELECT key FROM services WHERE business_id = ? AND active = 1 ORDER BY position"
    ))
    .bind(business_id)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(sql!(
        bk,
        "UPDATE services SET active = 0 WHERE business_id = ?"
    ))
    .bind(business_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(sql!(bk,"DELETE FROM service_providers WHERE service_id IN (SELECT id FROM services WHERE business_id = ?)"))
        .bind(business_id)
        .execute(&mut *tx)
        .await?;
    let mut service_keys = HashSet::new();
    for (i, s) in cal.services.iter().enumerate() {
        let id: i64 = sqlx::query_scalar(sql!(
            bk,
            "INSERT INTO services (business_id, key, name, description, duration_minutes,
                                   buffer_minutes, price_cents, position, active)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)
             ON CONFLICT (business_id, key) DO UPDATE SET
                 name = excluded.name, description = excluded.description,
                 duration_minutes = excluded.duration_minutes,
                 buffer_minutes = excluded.buffer_minutes, price_cents = excluded.price_cents,
                 position = excluded.position, active = 1
             RETURNING id"
        ))
        .bind(business_id)
        .bind(&s.key)
        .bind(&s.name)
        .bind(&s.description)
        .bind(i64::from(s.duration_minutes))
        .bind(i64::from(s.buffer_minutes))
        .bind(s.price_cents)
        .bind(i64::try_from(i).unwrap_or(i64::MAX))
        .fetch_one(&mut *tx)
        .await?;
        service_keys.insert(s.key.as_str());
        for (j, pk) in s.providers.iter().enumerate() {
            if let Some(pid) = provider_ids.get(pk.as_str()) {
                sqlx::query(sql!(bk,"INSERT INTO service_providers (service_id, provider_id, position) VALUES (?, ?, ?)"))
                    .bind(id)
                    .bind(pid)
                    .bind(i64::try_from(j).unwrap_or(i64::MAX))
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    let deactivated_services = before
        .into_iter()
        .filter(|k| !service_keys.contains(k.as_str()))
        .collect();

    // Weekly hours.
    sqlx::query(sql!(bk, "DELETE FROM weekly_hours WHERE business_id = ?"))
        .bind(business_id)
        .execute(&mut *tx)
        .await?;
    let mut hour_ranges = 0;
    let owners = std::iter::once((None, Some(&cal.hours))).chain(
        cal.providers
            .iter()
            .map(|p| (provider_ids.get(p.key.as_str()).copied(), p.hours.as_ref())),
    );
    for (provider_id, hours) in owners {
        let Some(hours) = hours else { continue };
        for (day, ranges) in hours.iter() {
            for r in ranges {
                sqlx::query(sql!(bk,
                    "INSERT INTO weekly_hours (business_id, provider_id, weekday, opens_minute, closes_minute)
                     VALUES (?, ?, ?, ?, ?)"),
                )
                .bind(business_id)
                .bind(provider_id)
                .bind(i64::from(day.num_days_from_monday()))
                .bind(i64::from(r.start.minutes()))
                .bind(i64::from(r.end.minutes()))
                .execute(&mut *tx)
                .await?;
                hour_ranges += 1;
            }
        }
    }

    // Closures.
    sqlx::query(sql!(bk, "DELETE FROM closures WHERE business_id = ?"))
        .bind(business_id)
        .execute(&mut *tx)
        .await?;
    for c in &cal.closures {
        let provider_id = c
            .provider
            .as_deref()
            .and_then(|k| provider_ids.get(k).copied());
        sqlx::query(sql!(bk,
            "INSERT INTO closures (business_id, provider_id, first_day, last_day, start_minute, end_minute, reason)
             VALUES (?, ?, ?, ?, ?, ?, ?)"),
        )
        .bind(business_id)
        .bind(provider_id)
        .bind(day_text(c.first_day))
        .bind(day_text(c.last_day))
        .bind(c.times.map(|t| i64::from(t.start.minutes())))
        .bind(c.times.map(|t| i64::from(t.end.minutes())))
        .bind(&c.reason)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(ImportSummary {
        business: b.key.clone(),
        created: existed.is_none(),
        providers: cal.providers.len(),
        services: cal.services.len(),
        hour_ranges,
        closures: cal.closures.len(),
        deactivated_providers,
        deactivated_services,
    })
}

/// Keys of all imported businesses, alphabetically.
///
/// # Errors
/// [`Error::Query`] on database failure.
pub async fn business_keys(db: &Store) -> Result<Vec<String>, Error> {
    let bk = db.backend();
    Ok(
        sqlx::query_scalar(sql!(bk, "SELECT key FROM businesses ORDER BY key"))
            .fetch_all(db.pool())
            .await?,
    )
}

#[derive(sqlx::FromRow)]
struct BusinessRow {
    id: i64,
    key: String,
    name: String,
    timezone: String,
    address: String,
    phone: String,
    currency: String,
    min_lead_minutes: i64,
    slot_interval_minutes: i64,
    max_days_ahead: i64,
}

#[derive(sqlx::FromRow)]
struct ProviderRow {
    id: i64,
    key: String,
    name: String,
    kind: String,
    role: String,
    own_hours: i64,
}

#[derive(sqlx::FromRow)]
struct ServiceRow {
    id: i64,
    key: String,
    name: String,
    description: String,
    duration_minutes: i64,
    buffer_minutes: i64,
    price_cents: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct HoursRow {
    provider_id: Option<i64>,
    weekday: i64,
    opens_minute: i64,
    closes_minute: i64,
}

#[derive(sqlx::FromRow)]
struct ClosureRow {
    provider_key: Option<String>,
    first_day: String,
    last_day: String,
    start_minute: Option<i64>,
    end_minute: Option<i64>,
    reason: String,
}

/// Loads the active configuration of business `key` (active providers and services only).
///
/// # Errors
/// [`Error::UnknownBusiness`] if it was never imported, [`Error::Corrupt`] for unreadable
/// values, [`Error::Query`] on database failure.
pub async fn load_calendar(db: &Store, key: &str) -> Result<BusinessCalendar, Error> {
    let bk = db.backend();
    let mut conn = db.pool().acquire().await?;
    let b: BusinessRow = sqlx::query_as(sql!(
        bk,
        "SELECT id, key, name, timezone, address, phone, currency, min_lead_minutes,
                slot_interval_minutes, max_days_ahead
         FROM businesses WHERE key = ?"
    ))
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| Error::UnknownBusiness(key.to_owned()))?;
    let timezone = Tz::from_str(&b.timezone).map_err(|_| Error::Corrupt {
        what: "businesses.timezone",
        value: b.timezone.clone(),
    })?;

    let hours_rows: Vec<HoursRow> = sqlx::query_as(sql!(
        bk,
        "SELECT provider_id, weekday, opens_minute, closes_minute FROM weekly_hours
         WHERE business_id = ? ORDER BY provider_id, weekday, opens_minute"
    ))
    .bind(b.id)
    .fetch_all(&mut *conn)
    .await?;
    let mut hours_of: HashMap<Option<i64>, WeeklyHours> = HashMap::new();
    for h in hours_rows {
        let r = range("weekly_hours", h.opens_minute, h.closes_minute)?;
        hours_of
            .entry(h.provider_id)
            .or_default()
            .add(weekday(h.weekday)?, r);
    }

    let provider_rows: Vec<ProviderRow> = sqlx::query_as(sql!(
        bk,
        "SELECT id, key, name, kind, role, own_hours FROM providers
         WHERE business_id = ? AND active = 1 ORDER BY position, id"
    ))
    .bind(b.id)
    .fetch_all(&mut *conn)
    .await?;
    let mut providers = Vec::with_capacity(provider_rows.len());
    for p in provider_rows {
        let kind = ProviderKind::from_str(&p.kind).map_err(|_| Error::Corrupt {
            what: "providers.kind",
            value: p.kind.clone(),
        })?;
        let hours =
            (p.own_hours != 0).then(|| hours_of.get(&Some(p.id)).cloned().unwrap_or_default());
        providers.push(Provider {
            key: p.key,
            name: p.name,
            kind,
            role: p.role,
            hours,
        });
    }

    let service_rows: Vec<ServiceRow> = sqlx::query_as(sql!(
        bk,
        "SELECT id, key, name, description, duration_minutes, buffer_minutes, price_cents
         FROM services WHERE business_id = ? AND active = 1 ORDER BY position, id"
    ))
    .bind(b.id)
    .fetch_all(&mut *conn)
    .await?;
    let mut services = Vec::with_capacity(service_rows.len());
    for s in service_rows {
        let offered: Vec<String> = sqlx::query_scalar(sql!(
            bk,
            "SELECT p.key FROM service_providers sp JOIN providers p ON p.id = sp.provider_id
             WHERE sp.service_id = ? AND p.active = 1 ORDER BY sp.position"
        ))
        .bind(s.id)
        .fetch_all(&mut *conn)
        .await?;
        services.push(Service {
            key: s.key,
            name: s.name,
            description: s.description,
            duration_minutes: count("services.duration_minutes", s.duration_minutes)?,
            buffer_minutes: count("services.buffer_minutes", s.buffer_minutes)?,
            price_cents: s.price_cents,
            providers: offered,
        });
    }

    let closure_rows: Vec<ClosureRow> = sqlx::query_as(sql!(bk,
        "SELECT p.key AS provider_key, c.first_day, c.last_day, c.start_minute, c.end_minute, c.reason
         FROM closures c LEFT JOIN providers p ON p.id = c.provider_id
         WHERE c.business_id = ? ORDER BY c.first_day, c.id"),
    )
    .bind(b.id)
    .fetch_all(&mut *conn)
    .await?;
    let mut closures = Vec::with_capacity(closure_rows.len());
    for c in closure_rows {
        let times = match (c.start_minute, c.end_minute) {
            (Some(a), Some(e)) => Some(range("closures", a, e)?),
            _ => None,
        };
        closures.push(Closure {
            first_day: parse_day("closures.first_day", &c.first_day)?,
            last_day: parse_day("closures.last_day", &c.last_day)?,
            times,
            provider: c.provider_key,
            reason: c.reason,
        });
    }

    Ok(BusinessCalendar {
        business: Business {
            key: b.key,
            name: b.name,
            timezone,
            address: b.address,
            phone: b.phone,
            currency: b.currency,
        },
        rules: BookingRules {
            min_lead_minutes: count("businesses.min_lead_minutes", b.min_lead_minutes)?,
            slot_interval_minutes: count(
                "businesses.slot_interval_minutes",
                b.slot_interval_minutes,
            )?,
            max_days_ahead: count("businesses.max_days_ahead", b.max_days_ahead)?,
        },
        hours: hours_of.remove(&None).unwrap_or_default(),
        providers,
        services,
        closures,
    })
}

// -------------------------------------------------------------------------------------------
// Appointments: reading
// -------------------------------------------------------------------------------------------

macro_rules! appointment_select {
    () => {
        "SELECT a.id, b.key AS business, p.key AS provider, p.name AS provider_name,
                s.key AS service, s.name AS service_name, a.start_utc, a.end_utc, a.block_end_utc,
                a.customer_name, a.phone, a.notes, a.status, a.confirmation_code, a.call_id,
                a.sequence, a.created_at, a.updated_at
         FROM appointments a
         JOIN businesses b ON b.id = a.business_id
         JOIN providers p ON p.id = a.provider_id
         JOIN services s ON s.id = a.service_id"
    };
}

#[derive(sqlx::FromRow)]
struct AppointmentRow {
    id: i64,
    business: String,
    provider: String,
    provider_name: String,
    service: String,
    service_name: String,
    start_utc: String,
    end_utc: String,
    block_end_utc: String,
    customer_name: String,
    phone: String,
    notes: String,
    status: String,
    confirmation_code: String,
    call_id: Option<String>,
    sequence: i64,
    created_at: String,
    updated_at: String,
}

impl TryFrom<AppointmentRow> for Appointment {
    type Error = Error;

    fn try_from(r: AppointmentRow) -> Result<Appointment, Error> {
        Ok(Appointment {
            id: r.id,
            start: parse_db_time("appointments.start_utc", &r.start_utc)?,
            end: parse_db_time("appointments.end_utc", &r.end_utc)?,
            block_end: parse_db_time("appointments.block_end_utc", &r.block_end_utc)?,
            status: AppointmentStatus::from_str(&r.status).map_err(|_| Error::Corrupt {
                what: "appointments.status",
                value: r.status.clone(),
            })?,
            sequence: count("appointments.sequence", r.sequence)?,
            created_at: parse_stamp("appointments.created_at", &r.created_at)?,
            updated_at: parse_stamp("appointments.updated_at", &r.updated_at)?,
            business: r.business,
            provider: r.provider,
            provider_name: r.provider_name,
            service: r.service,
            service_name: r.service_name,
            customer_name: r.customer_name,
            phone: r.phone,
            notes: r.notes,
            confirmation_code: r.confirmation_code,
            call_id: r.call_id,
        })
    }
}

async fn appointment_by_id(conn: &mut AnyConnection, id: i64) -> Result<Appointment, Error> {
    let bk = Backend::of(conn);
    let row: AppointmentRow =
        sqlx::query_as(sql!(bk, concat!(appointment_select!(), " WHERE a.id = ?")))
            .bind(id)
            .fetch_one(conn)
            .await?;
    row.try_into()
}

/// The newest row of the booking chain with this code (the current state of the booking).
async fn latest_with_code(
    conn: &mut AnyConnection,
    business: &str,
    code: &str,
) -> Result<Option<Appointment>, Error> {
    let bk = Backend::of(conn);
    let row: Option<AppointmentRow> = sqlx::query_as(sql!(
        bk,
        concat!(
            appointment_select!(),
            " WHERE b.key = ? AND a.confirmation_code = ? ORDER BY a.id DESC LIMIT 1"
        )
    ))
    .bind(business)
    .bind(code)
    .fetch_optional(conn)
    .await?;
    row.map(Appointment::try_from).transpose()
}

/// The booking an earlier request with this idempotency key made, as it is now (it may have been
/// moved since), when it is still booked. A key whose booking was cancelled since is released
/// (set to NULL), so the same request made again books anew.
async fn replay(conn: &mut AnyConnection, key: &str) -> Result<Option<Appointment>, Error> {
    let bk = Backend::of(conn);
    match by_request_key(conn, key).await? {
        Some(a) if a.status == AppointmentStatus::Booked => Ok(Some(a)),
        Some(_) => {
            sqlx::query(sql!(
                bk,
                "UPDATE appointments SET request_key = NULL WHERE request_key = ?"
            ))
            .bind(key)
            .execute(&mut *conn)
            .await?;
            Ok(None)
        }
        None => Ok(None),
    }
}

async fn by_request_key(conn: &mut AnyConnection, key: &str) -> Result<Option<Appointment>, Error> {
    let bk = Backend::of(conn);
    let row: Option<(i64, String, String)> = sqlx::query_as(sql!(
        bk,
        "SELECT a.id, b.key, a.confirmation_code FROM appointments a
         JOIN businesses b ON b.id = a.business_id WHERE a.request_key = ?"
    ))
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        None => Ok(None),
        // Report the booking as it is now (it may have been moved or cancelled since).
        Some((id, business, code)) => match latest_with_code(conn, &business, &code).await? {
            Some(a) => Ok(Some(a)),
            None => appointment_by_id(conn, id).await.map(Some),
        },
    }
}

/// The current state of the booking with confirmation `code` (any status), if any.
///
/// # Errors
/// [`Error::Query`] or [`Error::Corrupt`].
pub async fn appointment_by_code(
    db: &Store,
    business: &str,
    code: &str,
) -> Result<Option<Appointment>, Error> {
    let mut conn = db.pool().acquire().await?;
    latest_with_code(&mut conn, business, code).await
}

/// Booked appointments of `business` whose blocked time `[start, block_end)` intersects
/// `[from, to)`, as [`Busy`] entries for the slot search.
///
/// # Errors
/// [`Error::Query`] or [`Error::Corrupt`].
pub async fn busy(
    db: &Store,
    business: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Busy>, Error> {
    let bk = db.backend();
    let rows: Vec<(String, String, String)> = sqlx::query_as(sql!(
        bk,
        "SELECT p.key, a.start_utc, a.block_end_utc FROM appointments a
         JOIN businesses b ON b.id = a.business_id JOIN providers p ON p.id = a.provider_id
         WHERE b.key = ? AND a.status = 'booked' AND a.start_utc < ? AND a.block_end_utc > ?
         ORDER BY a.start_utc"
    ))
    .bind(business)
    .bind(db_time(to))
    .bind(db_time(from))
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|(provider, s, e)| {
            Ok(Busy {
                provider,
                start: parse_db_time("appointments.start_utc", &s)?,
                block_end: parse_db_time("appointments.block_end_utc", &e)?,
            })
        })
        .collect()
}

/// Which appointments [`find_appointments`] returns.
#[derive(Debug, Clone, Default)]
pub struct AppointmentFilter<'a> {
    /// Business key, or `None` for all businesses.
    pub business: Option<&'a str>,
    /// Only this provider key.
    pub provider: Option<&'a str>,
    /// Only numbers matching this one ([`phones_match`]).
    pub phone: Option<&'a str>,
    /// Only customers whose name contains this (case-insensitive).
    pub name: Option<&'a str>,
    /// Only appointments starting at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Only appointments starting before this instant.
    pub to: Option<DateTime<Utc>>,
    /// Also cancelled rows (superseded `rescheduled` rows are never returned).
    pub include_cancelled: bool,
    /// Most rows returned (0 = no limit).
    pub limit: usize,
}

/// Appointments matching `f`, earliest start first.
///
/// # Errors
/// [`Error::Query`] or [`Error::Corrupt`].
pub async fn find_appointments(
    db: &Store,
    f: &AppointmentFilter<'_>,
) -> Result<Vec<Appointment>, Error> {
    let bk = db.backend();
    // Coarse phone filter in SQL (the last digits), exact rule in Rust.
    let phone_tail = f.phone.map(|p| {
        let d = digits(p);
        let d = d.trim_start_matches('0');
        d[d.len()
            .saturating_sub(crate::calendar::phone::MIN_SUFFIX_DIGITS)..]
            .to_owned()
    });
    let rows: Vec<AppointmentRow> = sqlx::query_as(sql!(
        bk,
        concat!(
            appointment_select!(),
            " WHERE (?1 IS NULL OR b.key = ?1)
            AND (?2 IS NULL OR p.key = ?2)
            AND (?3 IS NULL OR a.phone_digits LIKE '%' || ?3)
            AND (?4 IS NULL OR a.start_utc >= ?4)
            AND (?5 IS NULL OR a.start_utc < ?5)
            AND (a.status = 'booked' OR (?6 = 1 AND a.status = 'cancelled'))
          ORDER BY a.start_utc, a.id"
        )
    ))
    .bind(f.business)
    .bind(f.provider)
    .bind(phone_tail)
    .bind(f.from.map(db_time))
    .bind(f.to.map(db_time))
    .bind(i64::from(f.include_cancelled))
    .fetch_all(db.pool())
    .await?;
    let name = f.name.map(|n| n.trim().to_lowercase());
    let mut out = Vec::new();
    for r in rows {
        let a = Appointment::try_from(r)?;
        if let Some(p) = f.phone {
            if !phones_match(p, &a.phone) {
                continue;
            }
        }
        if let Some(n) = &name {
            if !a.customer_name.to_lowercase().contains(n.as_str()) {
                continue;
            }
        }
        out.push(a);
        if f.limit != 0 && out.len() >= f.limit {
            break;
        }
    }
    Ok(out)
}

// -------------------------------------------------------------------------------------------
// Appointments: writing
// -------------------------------------------------------------------------------------------

/// A booking request that passed the calendar rules (`BusinessCalendar::check_booking`).
#[derive(Debug, Clone)]
pub struct NewBooking<'a> {
    /// Business key.
    pub business: &'a str,
    /// Service key.
    pub service: &'a str,
    /// Candidate provider keys in order of preference; the first one free gets it.
    pub providers: &'a [String],
    /// Start.
    pub start: DateTime<Utc>,
    /// End of the service.
    pub end: DateTime<Utc>,
    /// End of the buffer.
    pub block_end: DateTime<Utc>,
    /// Customer's name.
    pub customer_name: &'a str,
    /// Customer's phone number.
    pub phone: &'a str,
    /// Notes.
    pub notes: &'a str,
    /// SIP Call-ID of the call booking it.
    pub call_id: Option<&'a str>,
    /// Idempotency key; a repeat returns the first booking.
    pub request_key: Option<&'a str>,
    /// Creation time.
    pub now: DateTime<Utc>,
}

/// Result of [`book`] and [`reschedule`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booked {
    /// The booking as it is now.
    pub appointment: Appointment,
    /// `true` when this was a retry of an earlier request (nothing was written).
    pub replayed: bool,
}

/// Books an appointment: one `BEGIN IMMEDIATE` transaction that replays a known `request_key`
/// whose booking is still active, else checks the candidates' overlaps and inserts for the first free provider with a fresh
/// confirmation code.
///
/// # Errors
/// [`BookError::SlotTaken`] when every candidate is busy, [`BookError::Unknown`] for unknown
/// keys, [`BookError::Store`] on database failure.
pub async fn book(db: &Store, b: &NewBooking<'_>) -> Result<Booked, BookError> {
    let bk = db.backend();
    let mut tx = db.begin_write().await?;
    lock_business(&mut tx, b.business).await?;
    if let Some(key) = b.request_key {
        if let Some(a) = replay(&mut tx, key).await? {
            tx.commit().await?;
            return Ok(Booked {
                appointment: a,
                replayed: true,
            });
        }
    }
    let ids: Option<(i64, i64)> = sqlx::query_as(sql!(
        bk,
        "SELECT b.id, s.id FROM businesses b JOIN services s ON s.business_id = b.id
         WHERE b.key = ? AND s.key = ? AND s.active = 1"
    ))
    .bind(b.business)
    .bind(b.service)
    .fetch_optional(&mut *tx)
    .await?;
    let unknown = || BookError::Unknown {
        service: b.service.to_owned(),
        providers: b.providers.to_vec(),
    };
    let (business_id, service_id) = ids.ok_or_else(unknown)?;

    let mut chosen = None;
    let mut own = None;
    let mut known = false;
    for key in b.providers {
        let Some(pid) = sqlx::query_scalar::<_, i64>(sql!(
            bk,
            "SELECT id FROM providers WHERE business_id = ? AND key = ? AND active = 1"
        ))
        .bind(business_id)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?
        else {
            continue;
        };
        known = true;
        let conflicts = overlapping(&mut tx, pid, b.start, b.block_end, None).await?;
        if conflicts.is_empty() {
            chosen = Some(pid);
            break;
        }
        if own.is_none() {
            own = conflicts
                .iter()
                .find(|(_, call)| call.is_some() && call.as_deref() == b.call_id)
                .map(|(id, _)| *id);
        }
    }
    let Some(provider_id) = chosen else {
        if !known {
            return Err(unknown());
        }
        let own = match own {
            Some(id) => Some(Box::new(appointment_by_id(&mut tx, id).await?)),
            None => None,
        };
        return Err(BookError::SlotTaken { own });
    };

    let code = unused_code(&mut tx).await?;
    let id: Result<i64, sqlx::Error> = sqlx::query_scalar(sql!(
        bk,
        "INSERT INTO appointments (business_id, provider_id, service_id, start_utc, end_utc,
             block_end_utc, customer_name, phone, phone_digits, notes, status, confirmation_code,
             call_id, request_key, sequence, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'booked', ?, ?, ?, 0, ?, ?)
         RETURNING id"
    ))
    .bind(business_id)
    .bind(provider_id)
    .bind(service_id)
    .bind(db_time(b.start))
    .bind(db_time(b.end))
    .bind(db_time(b.block_end))
    .bind(b.customer_name)
    .bind(b.phone)
    .bind(digits(b.phone))
    .bind(b.notes)
    .bind(&code)
    .bind(b.call_id)
    .bind(b.request_key)
    .bind(stamp(b.now))
    .bind(stamp(b.now))
    .fetch_one(&mut *tx)
    .await;
    let id = match id {
        Ok(id) => id,
        Err(e) if is_overlap(&e) => return Err(BookError::SlotTaken { own: None }),
        Err(e) => return Err(e.into()),
    };
    let appointment = appointment_by_id(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Booked {
        appointment,
        replayed: false,
    })
}

/// Advisory-lock class of the calendar writers ("FDCA").
const CALENDAR_LOCK_CLASS: i32 = 0x4644_4341;

/// Serialises the calendar writers of one business until the transaction ends. SQLite's
/// `BEGIN IMMEDIATE` already holds the database's write lock; on PostgreSQL this takes a
/// transaction-scoped advisory lock keyed by the business, shared by every frontdesk instance on
/// the database, so a check-then-insert cannot race with another instance's (issue 13). The
/// exclusion constraint `appointments_no_overlap` backs it up for any other writer.
async fn lock_business(conn: &mut AnyConnection, business: &str) -> Result<(), Error> {
    if Backend::of(conn) == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(CALENDAR_LOCK_CLASS)
            .bind(business)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Whether `e` is the database refusing an overlapping booking (the SQLite trigger, the
/// PostgreSQL exclusion constraint, or the one-start-per-provider unique index).
fn is_overlap(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(d) = e else {
        return false;
    };
    d.code().as_deref() == Some("23P01")
        || d.message().contains("overlaps a booked appointment")
        || d.constraint() == Some("appointments_active_start")
        || d.message()
            .contains("appointments.provider_id, appointments.start_utc")
}

/// Booked rows of provider `pid` whose block intersects `[start, block_end)`, except `exclude`:
/// `(id, call_id)`.
async fn overlapping(
    conn: &mut AnyConnection,
    pid: i64,
    start: DateTime<Utc>,
    block_end: DateTime<Utc>,
    exclude: Option<i64>,
) -> Result<Vec<(i64, Option<String>)>, Error> {
    let bk = Backend::of(conn);
    Ok(sqlx::query_as(sql!(
        bk,
        "SELECT id, call_id FROM appointments
         WHERE provider_id = ? AND status = 'booked' AND start_utc < ? AND block_end_utc > ?
           AND id IS DISTINCT FROM ?"
    ))
    .bind(pid)
    .bind(db_time(block_end))
    .bind(db_time(start))
    .bind(exclude)
    .fetch_all(conn)
    .await?)
}

fn random_code() -> String {
    let mut rng = rand::rng();
    (0..CODE_LEN)
        .map(|_| char::from(CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())]))
        .collect()
}

/// A confirmation code no row (of any status or business) has used.
async fn unused_code(conn: &mut AnyConnection) -> Result<String, Error> {
    let bk = Backend::of(conn);
    for _ in 0..CODE_ATTEMPTS {
        let code = random_code();
        let used: Option<i64> = sqlx::query_scalar(sql!(
            bk,
            "SELECT 1 FROM appointments WHERE confirmation_code = ? LIMIT 1"
        ))
        .bind(&code)
        .fetch_optional(&mut *conn)
        .await?;
        if used.is_none() {
            return Ok(code);
        }
    }
    Err(Error::CodesExhausted)
}

/// A move of a booking to a new time, already checked against the calendar rules.
#[derive(Debug, Clone)]
pub struct Reschedule<'a> {
    /// Business key.
    pub business: &'a str,
    /// Confirmation code.
    pub code: &'a str,
    /// Phone number to verify against the booking.
    pub phone: &'a str,
    /// Row id the caller's checks were made on; a different current row means it changed.
    pub expected_id: i64,
    /// Candidate provider keys for the new time.
    pub providers: &'a [String],
    /// New start.
    pub start: DateTime<Utc>,
    /// New end of the service.
    pub end: DateTime<Utc>,
    /// New end of the buffer.
    pub block_end: DateTime<Utc>,
    /// SIP Call-ID of the call moving it.
    pub call_id: Option<&'a str>,
    /// Idempotency key.
    pub request_key: Option<&'a str>,
    /// Change time.
    pub now: DateTime<Utc>,
}

/// Moves a booking in one `BEGIN IMMEDIATE` transaction: the current row becomes `rescheduled`
/// and a new `booked` row with the same confirmation code takes the new time (its own old time
/// does not count as a conflict).
///
/// # Errors
/// [`ChangeError::NotFound`], [`ChangeError::PhoneMismatch`], [`ChangeError::NotActive`] (it is
/// cancelled), [`ChangeError::Changed`], [`ChangeError::SlotTaken`], [`ChangeError::Store`].
pub async fn reschedule(db: &Store, r: &Reschedule<'_>) -> Result<Booked, ChangeError> {
    let bk = db.backend();
    let mut tx = db.begin_write().await?;
    lock_business(&mut tx, r.business).await?;
    if let Some(key) = r.request_key {
        if let Some(a) = replay(&mut tx, key).await? {
            tx.commit().await?;
            return Ok(Booked {
                appointment: a,
                replayed: true,
            });
        }
    }
    let current = latest_with_code(&mut tx, r.business, r.code)
        .await?
        .ok_or_else(|| ChangeError::NotFound(r.code.to_owned()))?;
    if !phones_match(r.phone, &current.phone) {
        return Err(ChangeError::PhoneMismatch);
    }
    if current.status != AppointmentStatus::Booked {
        return Err(ChangeError::NotActive(Box::new(current)));
    }
    if current.id != r.expected_id {
        return Err(ChangeError::Changed);
    }
    let mut chosen = None;
    for key in r.providers {
        let pid: Option<i64> = sqlx::query_scalar(sql!(
            bk,
            "SELECT p.id FROM providers p JOIN businesses b ON b.id = p.business_id
             WHERE b.key = ? AND p.key = ? AND p.active = 1"
        ))
        .bind(r.business)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(pid) = pid else { continue };
        if overlapping(&mut tx, pid, r.start, r.block_end, Some(current.id))
            .await?
            .is_empty()
        {
            chosen = Some(pid);
            break;
        }
    }
    let Some(provider_id) = chosen else {
        return Err(ChangeError::SlotTaken);
    };
    sqlx::query(sql!(
        bk,
        "UPDATE appointments SET status = 'rescheduled', updated_at = ? WHERE id = ?"
    ))
    .bind(stamp(r.now))
    .bind(current.id)
    .execute(&mut *tx)
    .await?;
    let id: i64 = sqlx::query_scalar(sql!(
        bk,
        "INSERT INTO appointments (business_id, provider_id, service_id, start_utc, end_utc,
             block_end_utc, customer_name, phone, phone_digits, notes, status, confirmation_code,
             call_id, request_key, replaces_id, sequence, created_at, updated_at)
         SELECT business_id, ?, service_id, ?, ?, ?, customer_name, phone, phone_digits, notes,
                'booked', confirmation_code, ?, ?, id, sequence + 1, ?, ?
         FROM appointments WHERE id = ?
         RETURNING id"
    ))
    .bind(provider_id)
    .bind(db_time(r.start))
    .bind(db_time(r.end))
    .bind(db_time(r.block_end))
    .bind(r.call_id)
    .bind(r.request_key)
    .bind(stamp(r.now))
    .bind(stamp(r.now))
    .bind(current.id)
    .fetch_one(&mut *tx)
    .await?;
    let appointment = appointment_by_id(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Booked {
        appointment,
        replayed: false,
    })
}

/// Result of [`cancel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelled {
    /// The booking as it is now.
    pub appointment: Appointment,
    /// `true` when it was already cancelled (nothing was written).
    pub already: bool,
}

/// Cancels the booking with confirmation `code` after checking `phone` against it; cancelling a
/// cancelled booking succeeds with `already = true`.
///
/// # Errors
/// [`ChangeError::NotFound`], [`ChangeError::PhoneMismatch`], [`ChangeError::Store`].
pub async fn cancel(
    db: &Store,
    business: &str,
    code: &str,
    phone: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Cancelled, ChangeError> {
    let bk = db.backend();
    let mut tx = db.begin_write().await?;
    lock_business(&mut tx, business).await?;
    let current = latest_with_code(&mut tx, business, code)
        .await?
        .ok_or_else(|| ChangeError::NotFound(code.to_owned()))?;
    if !phones_match(phone, &current.phone) {
        return Err(ChangeError::PhoneMismatch);
    }
    match current.status {
        AppointmentStatus::Cancelled => {
            tx.commit().await?;
            return Ok(Cancelled {
                appointment: current,
                already: true,
            });
        }
        AppointmentStatus::Rescheduled => return Err(ChangeError::NotActive(Box::new(current))),
        AppointmentStatus::Booked => {}
    }
    sqlx::query(sql!(
        bk,
        "UPDATE appointments SET status = 'cancelled', cancel_reason = ?, sequence = sequence + 1,
                updated_at = ?
         WHERE id = ?"
    ))
    .bind(reason)
    .bind(stamp(now))
    .bind(current.id)
    .execute(&mut *tx)
    .await?;
    let appointment = appointment_by_id(&mut tx, current.id).await?;
    tx.commit().await?;
    Ok(Cancelled {
        appointment,
        already: false,
    })
}

// -------------------------------------------------------------------------------------------
// Tool-call log
// -------------------------------------------------------------------------------------------

/// One function call of the model, for the `tool_calls` table.
#[derive(Debug, Clone)]
pub struct ToolCallRecord<'a> {
    /// SIP Call-ID.
    pub call_id: &'a str,
    /// Function name.
    pub name: &'a str,
    /// Arguments JSON as received.
    pub arguments: &'a str,
    /// Output JSON as sent back.
    pub result: &'a str,
    /// Error code and message when the call failed.
    pub error: Option<&'a str>,
    /// How long the call took.
    pub duration: Duration,
    /// When it finished.
    pub at: DateTime<Utc>,
}

/// A row of `tool_calls`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct ToolCallRow {
    /// SIP Call-ID.
    pub call_id: String,
    /// Function name.
    pub name: String,
    /// Arguments JSON.
    pub arguments: String,
    /// Output JSON.
    pub result: String,
    /// Error, if any.
    pub error: Option<String>,
    /// Latency in milliseconds.
    pub duration_ms: i64,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// Appends a tool call to `tool_calls`; returns its row id.
///
/// # Errors
/// [`Error::Query`] on database failure.
pub async fn record_tool_call(db: &Store, r: &ToolCallRecord<'_>) -> Result<i64, Error> {
    let bk = db.backend();
    let id: i64 =
        sqlx::query_scalar(sql!(bk,
        "INSERT INTO tool_calls (call_id, name, arguments, result, error, duration_ms, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id"))
        .bind(r.call_id)
        .bind(r.name)
        .bind(r.arguments)
        .bind(r.result)
        .bind(r.error)
        .bind(i64::try_from(r.duration.as_millis()).unwrap_or(i64::MAX))
        .bind(stamp(r.at))
        .fetch_one(db.pool())
        .await?;
    Ok(id)
}

/// The tool calls of one SIP call, oldest first.
///
/// # Errors
/// [`Error::Query`] on database failure.
pub async fn tool_calls(db: &Store, call_id: &str) -> Result<Vec<ToolCallRow>, Error> {
    let bk = db.backend();
    Ok(sqlx::query_as(sql!(
        bk,
        "SELECT call_id, name, arguments, result, error, duration_ms, created_at
         FROM tool_calls WHERE call_id = ? ORDER BY id"
    ))
    .bind(call_id)
    .fetch_all(db.pool())
    .await?)
}
