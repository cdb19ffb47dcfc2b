//! The functions the model may call during a call, and the staff's appointment commands.
//!
//! Model tools (`docs/calendar.md` lists arguments and results):
//! `get_business_info`, `check_availability`, `book_appointment`, `find_appointments`,
//! `reschedule_appointment`, `cancel_appointment`. [`definitions`] gives their JSON Schemas for
//! `session.update`; [`call`] runs one function call (`realtime-protocol.md` §5.4 step 3) and
//! returns the text for `function_call_output`.
//!
//! Guarantees of [`call`]:
//! * it never panics and never fails: bad JSON, invalid arguments, broken rules, a busy slot, a
//!   database error, a timeout or even a panic in a handler all come back as a structured result
//!   `{"ok": false, "error": {"code", "message"}, …}` the model can talk about;
//! * it gives up after [`ToolContext::timeout`] (default [`DEFAULT_TIMEOUT`]);
//! * it records every call (arguments, result, error, latency) in `tool_calls`;
//! * dates and times exchanged with the model are the business's local wall-clock time
//!   (`YYYY-MM-DDTHH:MM`, no offset) and every result names the IANA zone.
//!
//! Staff commands are in [`staff`]. No SQL here: all of it is in `crate::store::calendar`.

pub mod call_control;
pub mod calls;
mod handlers;
mod output;
pub mod schema;
pub mod staff;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::store::Store;

use crate::calendar::{SystemClock, WallClock};
use crate::realtime::protocol::ToolDefinition;
use crate::store::calendar as db;
use output::Failure;
pub use schema::TOOL_NAMES;

/// Default limit on one tool call (issue 4: 5 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest arguments text stored in `tool_calls`, in bytes (longer text is cut).
const MAX_LOGGED_ARGUMENTS: usize = 16 * 1024;

/// What a tool call may use: the database, who is calling, which calendar, and the clock.
#[derive(Clone)]
pub struct ToolContext {
    /// The database (SQLite or PostgreSQL).
    pub store: Store,
    /// SIP Call-ID of the call; idempotency of retries and the `tool_calls` log are keyed by it.
    pub call_id: String,
    /// The caller's number (from `P-Asserted-Identity`, else the `From` user part), used when the
    /// model gives no phone number. Non-numbers (`alice`) are ignored.
    pub caller_number: Option<String>,
    /// Business key of the calendar (`[business] id` of the calendar file); empty = the only
    /// imported business.
    pub business: String,
    /// Source of "now".
    pub clock: Arc<dyn WallClock>,
    /// Limit for one call.
    pub timeout: Duration,
}

impl ToolContext {
    /// A context with the system clock and [`DEFAULT_TIMEOUT`].
    pub fn new(
        store: Store,
        call_id: impl Into<String>,
        caller_number: Option<String>,
        business: impl Into<String>,
    ) -> ToolContext {
        ToolContext {
            store,
            call_id: call_id.into(),
            caller_number,
            business: business.into(),
            clock: Arc::new(SystemClock),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl fmt::Debug for ToolContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolContext")
            .field("call_id", &self.call_id)
            .field(
                "caller_number",
                &self.caller_number.as_ref().map(|_| "<set>"),
            )
            .field("business", &self.business)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The result of one tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutcome {
    /// JSON text for the `function_call_output` item (always a JSON object with `ok`).
    pub output: String,
    /// `code: message` when `ok` is false (also stored in `tool_calls.error`).
    pub error: Option<String>,
    /// Time spent running the tool (not counting the log write).
    pub duration: Duration,
}

/// The definitions of the tools named in `allowed`, in the order of [`TOOL_NAMES`]; unknown
/// names are ignored (check them with [`is_known`]).
pub fn definitions(allowed: &[String]) -> Vec<ToolDefinition> {
    TOOL_NAMES
        .iter()
        .filter(|n| allowed.iter().any(|a| a == *n))
        .filter_map(|n| {
            schema::describe(n).map(|(description, parameters)| ToolDefinition {
                name: (*n).to_owned(),
                description: description.to_owned(),
                parameters,
            })
        })
        .collect()
}

/// The definitions of every tool.
pub fn all_definitions() -> Vec<ToolDefinition> {
    let all: Vec<String> = TOOL_NAMES.iter().map(|s| (*s).to_owned()).collect();
    definitions(&all)
}

/// Whether `name` is one of the tools.
pub fn is_known(name: &str) -> bool {
    TOOL_NAMES.contains(&name)
}

/// Runs function `name` with `arguments_json` (the `arguments` of the `function_call` item) and
/// records it in `tool_calls`. See the module docs for the guarantees.
pub async fn call(ctx: &ToolContext, name: &str, arguments_json: &str) -> ToolOutcome {
    let started = tokio::time::Instant::now();
    let task = {
        let ctx = ctx.clone();
        let name = name.to_owned();
        let args = arguments_json.to_owned();
        tokio::spawn(async move { dispatch(&ctx, &name, &args).await })
    };
    let abort = task.abort_handle();
    let result = match tokio::time::timeout(ctx.timeout, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => {
            tracing::error!(tool = name, error = %join, "tool call panicked");
            Err(Failure::internal())
        }
        Err(_) => {
            abort.abort();
            tracing::warn!(
                tool = name,
                timeout_ms = ctx.timeout.as_millis() as u64,
                "tool call timed out"
            );
            Err(Failure::new(
                "timeout",
                "The calendar did not answer in time. Apologise; try once more, or offer to take a message.",
            ))
        }
    };
    let duration = started.elapsed();
    let (output, error) = match result {
        Ok(value) => (value.to_string(), None),
        Err(f) => {
            let (output, summary) = f.render();
            (output, Some(summary))
        }
    };
    crate::observe::tool_call(name, error.is_none(), duration);
    tracing::info!(
        tool = name,
        ok = error.is_none(),
        duration_ms = duration.as_millis() as u64,
        "tool call"
    );
    record(
        ctx,
        name,
        arguments_json,
        &output,
        error.as_deref(),
        duration,
    )
    .await;
    ToolOutcome {
        output,
        error,
        duration,
    }
}

async fn dispatch(ctx: &ToolContext, name: &str, args: &str) -> handlers::Outcome {
    match name {
        schema::GET_BUSINESS_INFO => handlers::get_business_info(ctx, args).await,
        schema::CHECK_AVAILABILITY => handlers::check_availability(ctx, args).await,
        schema::BOOK_APPOINTMENT => handlers::book_appointment(ctx, args).await,
        schema::FIND_APPOINTMENTS => handlers::find_appointments(ctx, args).await,
        schema::RESCHEDULE_APPOINTMENT => handlers::reschedule_appointment(ctx, args).await,
        schema::CANCEL_APPOINTMENT => handlers::cancel_appointment(ctx, args).await,
        other => Err(Failure::new(
            "unknown_tool",
            format!("There is no function called {other:?}. Use only the functions offered."),
        )
        .with("available", serde_json::json!(TOOL_NAMES))),
    }
}

/// Writes the `tool_calls` row; failures are logged, never returned (the call's answer matters
/// more than its log).
async fn record(
    ctx: &ToolContext,
    name: &str,
    args: &str,
    output: &str,
    error: Option<&str>,
    duration: Duration,
) {
    let mut cut = args.len().min(MAX_LOGGED_ARGUMENTS);
    while !args.is_char_boundary(cut) {
        cut -= 1;
    }
    let rec = db::ToolCallRecord {
        call_id: &ctx.call_id,
        name,
        arguments: &args[..cut],
        result: output,
        error,
        duration,
        at: ctx.clock.now(),
    };
    match tokio::time::timeout(ctx.timeout, db::record_tool_call(&ctx.store, &rec)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(tool = name, error = %e, "failed to record tool call"),
        Err(_) => tracing::warn!(tool = name, "timed out recording tool call"),
    }
}
