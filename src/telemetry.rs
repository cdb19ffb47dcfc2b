//! Logging setup (tracing). `RUST_LOG` overrides the default filter.
//!
//! rsipstack logs every SIP packet at INFO, so its target is capped at `warn` unless `RUST_LOG`
//! says otherwise. Full SIP messages and audio are never logged at INFO.

use tracing_subscriber::EnvFilter;

/// Default filter: our own events at info, chatty dependencies at warn.
pub const DEFAULT_FILTER: &str =
    "info,rsipstack=warn,sqlx=warn,tungstenite=warn,tokio_tungstenite=warn";

/// Installs the global subscriber writing to stderr. Safe to call twice (the second call is a no-op).
pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
