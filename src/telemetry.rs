//! Logging setup (tracing) and the [`Pii`] wrapper. `RUST_LOG` overrides the default filter.
//!
//! rsipstack logs every SIP packet at INFO, so its target is capped at `warn` unless `RUST_LOG`
//! says otherwise. Full SIP messages and audio are never logged at INFO.
//!
//! Privacy: caller numbers, names, SIP URIs of callers and transcripts are logged only through
//! [`Pii`], which prints [`REDACTED`] unless `frontdesk serve --log-pii` (or `[privacy] log_pii`)
//! switched redaction off for debugging. The process-wide switch is [`set_log_pii`].

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;

/// Default filter: our own events at info, chatty dependencies at warn (the WebSocket library's
/// targets come from [`crate::realtime::session::LOG_FILTER`]).
pub fn default_filter() -> String {
    format!(
        "info,rsipstack=warn,sqlx=warn,{}",
        crate::realtime::session::LOG_FILTER
    )
}

/// What a redacted [`Pii`] value prints.
pub const REDACTED: &str = "[redacted]";

static LOG_PII: AtomicBool = AtomicBool::new(false);

/// Installs the global subscriber writing to stderr. Safe to call twice (the second call is a no-op).
pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter()));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Turns redaction of [`Pii`] values off (`true`: log them in clear, for debugging) or on.
/// Process-wide; the default is redaction on.
pub fn set_log_pii(clear: bool) {
    LOG_PII.store(clear, Ordering::Relaxed);
}

/// Whether [`Pii`] values are logged in clear (`--log-pii`).
pub fn log_pii() -> bool {
    LOG_PII.load(Ordering::Relaxed)
}

/// Personal data in a log field: a caller's number or URI, a name, a transcript. `Display` and
/// `Debug` print [`REDACTED`] unless [`set_log_pii`]`(true)`; use it as `from = %Pii(number)`.
/// The database keeps the real value (see `[privacy]` retention); only logs are redacted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Pii<T>(pub T);

impl<T: fmt::Display> fmt::Display for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if log_pii() {
            self.0.fmt(f)
        } else {
            f.write_str(REDACTED)
        }
    }
}

impl<T: fmt::Display> fmt::Debug for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if log_pii() {
            write!(f, "{:?}", self.0.to_string())
        } else {
            f.write_str(REDACTED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pii_is_redacted_unless_switched_off() {
        // One test owns the process-wide switch (tests run in parallel).
        set_log_pii(false);
        let number = Pii("+4915112345678");
        assert_eq!(number.to_string(), REDACTED);
        assert_eq!(format!("{number:?}"), REDACTED);
        set_log_pii(true);
        assert_eq!(number.to_string(), "+4915112345678");
        assert_eq!(format!("{number:?}"), "\"+4915112345678\"");
        set_log_pii(false);
        assert_eq!(Pii(String::from("I need a cleaning")).to_string(), REDACTED);
    }
}
