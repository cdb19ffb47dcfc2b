//! The side effects of a call's pump, each run as a task in the call's [`TaskTracker`] inside
//! the call's span: tool calls, opening a replacement model session (rollover) and closing an
//! old one. Their results come back to the pump as [`Done`] over a bounded channel, and from
//! there to the core as inputs; nothing here decides anything about the call.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tracing::{info, Instrument as _};

use super::core::ToolRequest;
use crate::realtime::client::RealtimeTarget;
use crate::realtime::failover;
use crate::realtime::Session;
use crate::tools::{self, ToolContext};

/// Capacity of a call's channel of finished side effects (tool outputs, REFER results). The
/// model rarely has more than one or two calls outstanding; a task that finds it full waits
/// (a result is never dropped while the call runs).
pub(super) const SIDE_EFFECTS_CAPACITY: usize = 8;
/// How long the side-effect tasks of an ended call may still take before the call's teardown
/// goes on without them.
pub(super) const SIDE_EFFECTS_DRAIN: Duration = Duration::from_secs(1);

/// How the call opens a replacement model session (rollover): the agent's endpoints, the one
/// its current session is on first ([`failover::open`]), one attempt bounded by the connect
/// timeout.
#[derive(Clone)]
pub(super) struct Opener {
    /// Where sessions are opened, in order.
    pub(super) targets: Vec<RealtimeTarget>,
    /// The profile's model.
    pub(super) model: String,
    /// One attempt's bound over all endpoints (`[realtime] connect_timeout_secs`).
    pub(super) timeout: Duration,
}

impl Opener {
    pub(super) async fn open(&self) -> Result<Session, String> {
        match failover::open(&self.targets, &self.model, self.timeout).await {
            Ok(opened) => {
                info!(endpoint = %opened.endpoint, attempts = opened.attempts, "new model session open");
                Ok(opened.session)
            }
            Err(failed) => Err(failed.to_string()),
        }
    }
}

/// Closes a session beside the call (bounded by [`SIDE_EFFECTS_DRAIN`]).
pub(super) fn close_beside(tasks: &TaskTracker, session: Option<Session>) {
    if let Some(mut s) = session {
        tasks.spawn(
            async move {
                let _ = tokio::time::timeout(SIDE_EFFECTS_DRAIN, s.close()).await;
            }
            .in_current_span(),
        );
    }
}

/// A finished side effect.
pub(super) enum Done {
    Tool { call_id: String, output: String },
    Refer(Result<u16, String>),
}

/// A GPT-Live session's `expires_at` (Unix seconds) as an instant on the call's clock.
pub(super) fn expires_instant(session: &mut Session) -> Option<std::time::Instant> {
    let at = session.expires_at()?;
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    let left = u64::try_from(at).ok()?.saturating_sub(unix_now);
    Some(tokio::time::Instant::now().into_std() + Duration::from_secs(left))
}

/// Runs a tool in the call's tracker; its output comes back as [`Done::Tool`]. Returns whether
/// it was started (not without a tool context).
pub(super) fn run_tool(
    tasks: &TaskTracker,
    ctx: Option<&ToolContext>,
    tx: &mpsc::Sender<Done>,
    req: ToolRequest,
) -> bool {
    let Some(ctx) = ctx.cloned() else {
        return false;
    };
    let tx = tx.clone();
    tasks.spawn(
        async move {
            #[cfg(debug_assertions)]
            crate::server::fault::tool_delay().await;
            let outcome = tools::call(&ctx, &req.name, &req.arguments).await;
            if let Some(error) = &outcome.error {
                info!(tool = %req.name, %error, ms = outcome.duration.as_millis(), "tool failed");
            } else {
                info!(tool = %req.name, ms = outcome.duration.as_millis(), "tool done");
            }
            let _ = tx
                .send(Done::Tool {
                    call_id: req.call_id,
                    output: outcome.output,
                })
                .await;
        }
        .in_current_span(),
    );
    true
}
