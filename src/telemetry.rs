//! Logging setup (tracing) and the [`Pii`] wrapper. `RUST_LOG` overrides the default filter.
//!
//! rsipstack logs every SIP packet, SDP bodies included, at INFO, and SDP bodies carry SRTP keys
//! (`a=crypto`, RFC 4568). Its target is therefore capped at `warn` whatever `RUST_LOG` says,
//! unless `RUST_LOG` names `rsipstack` explicitly at `debug` or `trace` (SIP debugging; a warning
//! at start-up says that keys will be logged). See [`filter_directives`]. Full SIP messages and
//! audio are never logged at INFO.
//!
//! Privacy: caller numbers, names, SIP URIs of callers and transcripts are logged only through
//! [`Pii`], which prints [`REDACTED`] unless `frontdesk serve --log-pii` (or `[privacy] log_pii`)
//! switched redaction off for debugging. The process-wide switch is [`set_log_pii`].

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;

/// rsipstack's TLS glue warns "backend EOF" each time a peer closes a TLS session, which is
/// normal; frontdesk logs closed sessions itself (at debug, `sip::tls`).
const TLS_PLATFORM: &str = "rsipstack::transport::tls_platform";

/// Default filter: our own events at info, chatty dependencies at warn (the WebSocket library's
/// targets come from [`crate::realtime::session::LOG_FILTER`]), rsipstack's TLS glue at error.
pub fn default_filter() -> String {
    format!(
        "info,rsipstack=warn,{TLS_PLATFORM}=error,sqlx=warn,{}",
        crate::realtime::session::LOG_FILTER
    )
}

/// What a redacted [`Pii`] value prints.
pub const REDACTED: &str = "[redacted]";

static LOG_PII: AtomicBool = AtomicBool::new(false);

/// The filter directives for `RUST_LOG` = `rust_log` (`None`: unset): [`default_filter`] when
/// unset or empty, else the user's directives with rsipstack capped at `warn`. A directive that
/// names `rsipstack` (or one of its modules) at `debug` or `trace` is kept as written: that is an
/// explicit request to debug SIP; the `bool` is then `true` and the caller warns that SIP bodies,
/// SRTP keys included, will be logged. Any other level for rsipstack above `warn` (`info`, or
/// a bare `rsipstack`) becomes `warn`; `error` and `off` are kept. Unless rsipstack is named at
/// debug/trace, its TLS glue's per-session "backend EOF" warning is filtered out too.
pub fn filter_directives(rust_log: Option<&str>) -> (String, bool) {
    let Some(text) = rust_log.map(str::trim).filter(|t| !t.is_empty()) else {
        return (default_filter(), false);
    };
    let mut out: Vec<String> = Vec::new();
    let mut verbose = false;
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let (target, level) = match directive.rsplit_once('=') {
            Some((t, l)) => (t, Some(l.trim().to_ascii_lowercase())),
            None => (directive, None),
        };
        let names_rsipstack = target
            .split(['[', ':'])
            .next()
            .is_some_and(|t| t.trim() == "rsipstack");
        if !names_rsipstack {
            out.push(directive.to_owned());
            continue;
        }
        match level.as_deref() {
            Some("debug" | "trace" | "4" | "5") => {
                verbose = true;
                out.push(directive.to_owned());
            }
            Some("error" | "off" | "1" | "0" | "warn" | "2") => out.push(directive.to_owned()),
            _ => out.push(format!("{target}=warn")),
        }
    }
    if !out
        .iter()
        .any(|d| d.starts_with("rsipstack=") || d == "rsipstack")
    {
        out.push("rsipstack=warn".to_owned());
    }
    if !verbose && !out.iter().any(|d| d.starts_with(TLS_PLATFORM)) {
        out.push(format!("{TLS_PLATFORM}=error"));
    }
    (out.join(","), verbose)
}

/// Installs the global subscriber writing to stderr (filter: [`filter_directives`] of
/// `RUST_LOG`; an unparsable `RUST_LOG` falls back to [`default_filter`]). Safe to call twice
/// (the second call is a no-op).
pub fn init() {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (directives, verbose) = filter_directives(rust_log.as_deref());
    let (filter, verbose) = match EnvFilter::try_new(&directives) {
        Ok(f) => (f, verbose),
        Err(_) => (EnvFilter::new(default_filter()), false),
    };
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init()
        .is_ok();
    if installed && verbose {
        tracing::warn!(
            "RUST_LOG names rsipstack at debug/trace: whole SIP messages are logged, SDP with SRTP keys (a=crypto) included; do not keep or share this log"
        );
    }
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
    fn rsipstack_is_capped_at_warn_unless_named_at_debug() {
        assert_eq!(filter_directives(None), (default_filter(), false));
        assert_eq!(filter_directives(Some(" ")), (default_filter(), false));
        // A global level does not open rsipstack's packet logging.
        assert_eq!(
            filter_directives(Some("info")),
            (format!("info,rsipstack=warn,{TLS_PLATFORM}=error"), false)
        );
        assert_eq!(
            filter_directives(Some("debug,frontdesk=trace")),
            (
                format!("debug,frontdesk=trace,rsipstack=warn,{TLS_PLATFORM}=error"),
                false
            )
        );
        // rsipstack at info (bare or a module) is lowered to warn.
        assert_eq!(
            filter_directives(Some("info,rsipstack=info")),
            (format!("info,rsipstack=warn,{TLS_PLATFORM}=error"), false)
        );
        assert_eq!(
            filter_directives(Some("rsipstack")),
            (format!("rsipstack=warn,{TLS_PLATFORM}=error"), false)
        );
        assert_eq!(
            filter_directives(Some("info,rsipstack::transaction=INFO")),
            (
                format!("info,rsipstack::transaction=warn,rsipstack=warn,{TLS_PLATFORM}=error"),
                false
            )
        );
        // Quieter levels are kept.
        assert_eq!(
            filter_directives(Some("info,rsipstack=error")),
            (format!("info,rsipstack=error,{TLS_PLATFORM}=error"), false)
        );
        // Named at debug/trace: an explicit request, kept and reported.
        assert_eq!(
            filter_directives(Some("info,rsipstack=debug")),
            ("info,rsipstack=debug".to_owned(), true)
        );
        assert_eq!(
            filter_directives(Some("rsipstack::transport=trace")),
            ("rsipstack::transport=trace,rsipstack=warn".to_owned(), true)
        );
        // Other crates whose name starts the same are not touched.
        assert_eq!(
            filter_directives(Some("rsipstackx=info")),
            (
                format!("rsipstackx=info,rsipstack=warn,{TLS_PLATFORM}=error"),
                false
            )
        );
        for d in ["info", "debug,rsipstack=info", "trace"] {
            assert!(
                EnvFilter::try_new(filter_directives(Some(d)).0).is_ok(),
                "{d}"
            );
        }
    }

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
