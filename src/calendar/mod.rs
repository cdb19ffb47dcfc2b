//! Appointment calendar rules (sans-IO core).
//!
//! Owns what a clinic's calendar allows: weekly opening hours per business and per provider in
//! the business's IANA zone with correct DST ([`time`]), closures and holidays, service duration
//! and buffer, minimum lead time, no booking in the past or beyond the horizon, the overlap rule,
//! and the free-slot search ([`rules`]); plus phone-number matching ([`phone`]) and the data model
//! ([`model`]).
//!
//! Invariants: every instant is a `DateTime<Utc>`; local wall-clock time appears only at the edges
//! (opening hours, closures, what the model reads and writes). Identities are the slugs of the
//! calendar file, not database ids.
//!
//! Must not: run SQL, read files, read the clock, or use tokio. "Now" comes from a [`WallClock`]
//! that the shell (`crate::tools`, `crate::store::calendar`) reads and passes in.

#![deny(missing_docs)]

pub mod model;
pub mod phone;
pub mod rules;
pub mod time;

#[cfg(test)]
mod tests;

use std::sync::Mutex;

use chrono::{DateTime, Utc};

pub use model::{
    Appointment, AppointmentStatus, BookingRules, Business, BusinessCalendar, Closure, Provider,
    ProviderKind, Service, WeeklyHours,
};
pub use rules::{BookingCheck, Busy, Eligible, Interval, RuleError, Slot, SlotQuery};
pub use time::{ClockTime, TimeOfDay, TimeRange};

/// Source of the current date and time for the calendar (STYLE §4: injected, never read inside
/// the core).
pub trait WallClock: Send + Sync {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until moved; for tests.
#[derive(Debug)]
pub struct FixedClock {
    now: Mutex<DateTime<Utc>>,
}

impl FixedClock {
    /// A clock showing `now`.
    pub fn new(now: DateTime<Utc>) -> FixedClock {
        FixedClock {
            now: Mutex::new(now),
        }
    }

    /// Sets the time.
    pub fn set(&self, now: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        let mut guard = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *guard += by;
    }
}

impl WallClock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}
