//! Staff commands: `frontdesk appointments list` (a text table) and
//! `frontdesk appointments export --ics FILE` (RFC 5545 iCalendar via the `icalendar` crate).
//!
//! Times are shown in each business's own zone. Reads only; all SQL is in
//! `crate::store::calendar`.

use std::path::Path;

use crate::store::Store;
use chrono::{DateTime, NaiveDate, Utc};
use icalendar::{Calendar, Component, Event, EventLike, EventStatus};

use crate::calendar::model::weekday_name;
use crate::calendar::time::{instant_of, to_local, ClockTime};
use crate::calendar::{Appointment, AppointmentStatus, BusinessCalendar};
use crate::store::calendar as db;

/// Longest notes text shown in a table cell, in characters.
const NOTES_CELL_CHARS: usize = 40;

/// Errors of the staff commands.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] db::Error),
    /// `--business` names no imported business.
    #[error("no business {0:?} (import a calendar file first)")]
    UnknownBusiness(String),
    /// `--provider` matches no provider.
    #[error("no provider matches {0:?}")]
    UnknownProvider(String),
    /// Writing the export failed.
    #[error("failed to write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What `appointments list` shows.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Only this business key (default: every business).
    pub business: Option<String>,
    /// Only this local date (default: from today on).
    pub date: Option<NaiveDate>,
    /// Only this provider (key or name, or a unique part of it).
    pub provider: Option<String>,
    /// Also cancelled appointments.
    pub include_cancelled: bool,
}

async fn calendars(store: &Store, business: Option<&str>) -> Result<Vec<BusinessCalendar>, Error> {
    let keys = db::business_keys(store).await?;
    let keys: Vec<String> = match business {
        Some(b) if keys.iter().any(|k| k == b) => vec![b.to_owned()],
        Some(b) => return Err(Error::UnknownBusiness(b.to_owned())),
        None => keys,
    };
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        out.push(db::load_calendar(store, &k).await?);
    }
    Ok(out)
}

/// The appointments table for `frontdesk appointments list`, one section per business, in
/// local time; `now` decides what "from today on" means.
///
/// # Errors
/// [`Error::UnknownBusiness`], [`Error::UnknownProvider`], [`Error::Store`].
pub async fn list_appointments(
    store: &Store,
    opts: &ListOptions,
    now: DateTime<Utc>,
) -> Result<String, Error> {
    let cals = calendars(store, opts.business.as_deref()).await?;
    if cals.is_empty() {
        return Ok("no calendar imported yet (frontdesk calendar import FILE)\n".to_owned());
    }
    let mut out = String::new();
    let mut provider_found = opts.provider.is_none();
    for cal in &cals {
        let provider = match &opts.provider {
            None => None,
            Some(q) => match cal.resolve_provider(q) {
                Ok(p) => {
                    provider_found = true;
                    Some(p.key.clone())
                }
                Err(_) => continue,
            },
        };
        let tz = cal.tz();
        let (from, to, title) = match opts.date {
            Some(d) => (
                instant_of(tz, ClockTime::MIDNIGHT.on(d)),
                Some(instant_of(tz, ClockTime::END_OF_DAY.on(d))),
                format!(
                    "{} {}",
                    weekday_name(chrono::Datelike::weekday(&d)),
                    d.format("%Y-%m-%d")
                ),
            ),
            None => {
                let today = cal.local_date(now);
                (
                    instant_of(tz, ClockTime::MIDNIGHT.on(today)),
                    None,
                    format!("from {}", today.format("%Y-%m-%d")),
                )
            }
        };
        let filter = db::AppointmentFilter {
            business: Some(&cal.business.key),
            provider: provider.as_deref(),
            from: Some(from),
            to,
            include_cancelled: opts.include_cancelled,
            ..db::AppointmentFilter::default()
        };
        let rows = db::find_appointments(store, &filter).await?;
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!("{} ({}), {title}\n", cal.business.name, tz.name()));
        out.push_str(&table(cal, &rows));
    }
    match &opts.provider {
        Some(p) if !provider_found => Err(Error::UnknownProvider(p.clone())),
        _ => Ok(out),
    }
}

fn table(cal: &BusinessCalendar, rows: &[Appointment]) -> String {
    if rows.is_empty() {
        return "  no appointments\n".to_owned();
    }
    let header = [
        "DATE", "START", "END", "PROVIDER", "SERVICE", "CUSTOMER", "PHONE", "CODE", "STATUS",
        "NOTES",
    ];
    let tz = cal.tz();
    let body: Vec<[String; 10]> = rows
        .iter()
        .map(|a| {
            let start = to_local(tz, a.start);
            let notes: String = a.notes.chars().take(NOTES_CELL_CHARS).collect();
            [
                start.format("%Y-%m-%d").to_string(),
                start.format("%H:%M").to_string(),
                to_local(tz, a.end).format("%H:%M").to_string(),
                a.provider_name.clone(),
                a.service_name.clone(),
                a.customer_name.clone(),
                a.phone.clone(),
                a.confirmation_code.clone(),
                a.status.to_string(),
                notes.replace(['\n', '\r'], " "),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for r in &body {
        for (w, cell) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut s = String::from(" ");
        for (cell, w) in cells.iter().zip(widths.iter()) {
            s.push(' ');
            s.push_str(cell);
            s.push_str(&" ".repeat(w.saturating_sub(cell.chars().count()) + 1));
        }
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(&header);
    for r in &body {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        out.push_str(&line(&cells));
    }
    out
}

/// The iCalendar text of all booked and cancelled appointments (of one business, or all), and
/// how many events it holds. Each booking keeps one `UID` across reschedules
/// (`<code>@<business>.frontdesk`) with `SEQUENCE` counting the changes, so calendar clients
/// update events instead of duplicating them.
///
/// # Errors
/// [`Error::UnknownBusiness`], [`Error::Store`].
pub async fn render_ics(store: &Store, business: Option<&str>) -> Result<(String, usize), Error> {
    let cals = calendars(store, business).await?;
    let mut ical = Calendar::new();
    match cals.as_slice() {
        [one] => {
            ical.name(&format!("{} appointments", one.business.name));
            ical.timezone(one.tz().name());
        }
        _ => {
            ical.name("frontdesk appointments");
        }
    }
    let mut n = 0;
    for cal in &cals {
        let filter = db::AppointmentFilter {
            business: Some(&cal.business.key),
            include_cancelled: true,
            ..db::AppointmentFilter::default()
        };
        for a in db::find_appointments(store, &filter).await? {
            ical.push(event(cal, &a));
            n += 1;
        }
    }
    Ok((ical.done().to_string(), n))
}

fn event(cal: &BusinessCalendar, a: &Appointment) -> Event {
    let mut description = format!(
        "Provider: {}\nCustomer: {}\nPhone: {}\nConfirmation code: {}",
        a.provider_name, a.customer_name, a.phone, a.confirmation_code
    );
    if !a.notes.is_empty() {
        description.push_str(&format!("\nNotes: {}", a.notes));
    }
    let mut e = Event::new();
    e.uid(&format!("{}@{}.frontdesk", a.confirmation_code, a.business))
        .sequence(a.sequence)
        .timestamp(a.updated_at)
        .created(a.created_at)
        .last_modified(a.updated_at)
        .summary(&format!(
            "{}: {} ({})",
            a.service_name, a.customer_name, a.provider_name
        ))
        .description(&description)
        .starts(a.start)
        .ends(a.end)
        .status(if a.status == AppointmentStatus::Booked {
            EventStatus::Confirmed
        } else {
            EventStatus::Cancelled
        });
    if !cal.business.address.is_empty() {
        e.location(&cal.business.address);
    }
    e.done()
}

/// Writes [`render_ics`] to `path`; returns the number of events.
///
/// # Errors
/// [`Error::Write`] if the file cannot be written, else as [`render_ics`].
pub async fn export_ics(
    store: &Store,
    path: &Path,
    business: Option<&str>,
) -> Result<usize, Error> {
    let (text, n) = render_ics(store, business).await?;
    tokio::fs::write(path, text)
        .await
        .map_err(|source| Error::Write {
            path: path.display().to_string(),
            source,
        })?;
    Ok(n)
}

/// Days ahead the staff page's agenda shows, today included.
pub const AGENDA_DAYS: i64 = 14;

/// One business's booked appointments from today on, for the staff page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Agenda {
    /// Business name.
    pub business: String,
    /// Its IANA time zone (the times below are local to it).
    pub timezone: String,
    /// Per provider (in the calendar's order), their appointments, earliest first.
    pub providers: Vec<ProviderAgenda>,
}

/// One provider's appointments in an [`Agenda`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProviderAgenda {
    /// Provider display name.
    pub name: String,
    /// Their appointments.
    pub appointments: Vec<AgendaEntry>,
}

/// One appointment in an [`Agenda`], local time.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgendaEntry {
    /// `2026-12-02`.
    pub date: String,
    /// `09:30`.
    pub start: String,
    /// `10:15`.
    pub end: String,
    /// Service display name.
    pub service: String,
    /// Customer's name.
    pub customer: String,
    /// Confirmation code.
    pub code: String,
    /// SIP Call-ID of the call that booked it, if a call did.
    pub call_id: Option<String>,
}

/// The booked appointments of the next [`AGENDA_DAYS`] days (from local midnight today), per
/// business and provider, for the staff page.
///
/// # Errors
/// [`Error::Store`].
pub async fn agenda(store: &Store, now: DateTime<Utc>) -> Result<Vec<Agenda>, Error> {
    let mut out = Vec::new();
    for cal in calendars(store, None).await? {
        let tz = cal.tz();
        let today = cal.local_date(now);
        let filter = db::AppointmentFilter {
            business: Some(&cal.business.key),
            from: Some(instant_of(tz, ClockTime::MIDNIGHT.on(today))),
            to: Some(instant_of(
                tz,
                ClockTime::MIDNIGHT.on(today + chrono::Duration::days(AGENDA_DAYS)),
            )),
            ..db::AppointmentFilter::default()
        };
        let rows = db::find_appointments(store, &filter).await?;
        let providers = cal
            .providers
            .iter()
            .map(|p| ProviderAgenda {
                name: p.name.clone(),
                appointments: rows
                    .iter()
                    .filter(|a| a.provider == p.key)
                    .map(|a| {
                        let start = to_local(tz, a.start);
                        AgendaEntry {
                            date: start.format("%Y-%m-%d").to_string(),
                            start: start.format("%H:%M").to_string(),
                            end: to_local(tz, a.end).format("%H:%M").to_string(),
                            service: a.service_name.clone(),
                            customer: a.customer_name.clone(),
                            code: a.confirmation_code.clone(),
                            call_id: a.call_id.clone(),
                        }
                    })
                    .collect(),
            })
            .collect();
        out.push(Agenda {
            business: cal.business.name.clone(),
            timezone: tz.name().to_owned(),
            providers,
        });
    }
    Ok(out)
}
