//! The call record of a call's task: the figures of the core written into the `calls` row at
//! the end, the row's write with retries, and the call metrics that also count a panicked call.

use std::time::Duration;

use chrono::Utc;
use tracing::{info, warn};

use super::call::CallContext;
use super::core::Bridge;
use super::end::EndReason;
use crate::dialplan::AgentProfile;
use crate::store::{CallEnd, MediaRecord, NewCall, Store};

/// Longest the INVITE waits for its call row (`calls`) to be inserted; when the database is
/// slower or unreachable the call goes on and the whole row is written at the end instead.
pub(super) const CALL_ROW_START_TIMEOUT: Duration = Duration::from_secs(2);
/// Waits between attempts to write a call's row after a failure (then the last one repeats);
/// about 8 minutes in total before the row is given up, loudly.
const CALL_ROW_RETRY_DELAYS: [Duration; 4] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(15),
    Duration::from_secs(60),
];
/// Attempts to write a call's row before it is given up.
const CALL_ROW_ATTEMPTS: usize = 12;

/// Counts the call in `frontdesk_calls_in_progress` while it runs, and in `frontdesk_calls_total`
/// when it ends, also when its task panics (end reason `panic`).
pub(super) struct CallMetrics {
    pub(super) end_reason: Option<String>,
}

impl CallMetrics {
    pub(super) fn start() -> CallMetrics {
        crate::observe::call_started();
        CallMetrics { end_reason: None }
    }
}

impl Drop for CallMetrics {
    fn drop(&mut self) {
        crate::observe::call_ended(self.end_reason.as_deref().unwrap_or("panic"));
    }
}

/// Writes the end of the call (or, when its row could not be inserted at the start, the whole
/// row), retrying while the database is unreachable so the record is not lost; after
/// [`CALL_ROW_ATTEMPTS`] failures it logs an error. Runs in the call's task after the media is
/// gone, so a retry holds no RTP port or session.
pub(super) async fn write_call_row(
    store: &Store,
    call: &NewCall<'_>,
    row: Option<i64>,
    record: &CallEnd,
) {
    let ended_at = Utc::now();
    for attempt in 0..CALL_ROW_ATTEMPTS {
        let written = match row {
            Some(id) => store.call_ended(id, record, ended_at).await,
            None => store.record_call(call, record, ended_at).await.map(drop),
        };
        match written {
            Ok(()) => {
                if attempt > 0 {
                    info!(attempts = attempt + 1, "call record written after retries");
                }
                return;
            }
            Err(e) if attempt + 1 == CALL_ROW_ATTEMPTS => {
                warn!(error = %e, attempt = attempt + 1, "cannot write the call record");
            }
            Err(e) => {
                let delay = CALL_ROW_RETRY_DELAYS[attempt.min(CALL_ROW_RETRY_DELAYS.len() - 1)];
                warn!(error = %e, attempt = attempt + 1, retry_in = ?delay, "cannot write the call record; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
    tracing::error!(
        attempts = CALL_ROW_ATTEMPTS,
        end_reason = %record.end_reason,
        "CALL RECORD LOST: the database stayed unreachable; this call is missing from the calls table"
    );
}

/// Fills the call record from the core's figures at the end of the media, and logs the call's
/// media summary.
pub(super) fn finish_record(
    ctx: &CallContext,
    profile: Option<&AgentProfile>,
    end: &EndReason,
    bridge: &mut Bridge,
    record: &mut CallEnd,
) {
    let stats = bridge.stats();
    record.packets_in = stats.inbound.received;
    record.packets_out = stats.outbound.packets_sent;
    let Some(profile) = profile else {
        // A recording: no model, no media figures beyond the packet counts.
        return;
    };
    crate::observe::call_media(&crate::observe::CallMedia {
        barge_ins: stats.barge_ins,
        truncates: stats.truncates,
        lost: stats.inbound.lost,
        late: stats.inbound.late,
        concealed: stats.inbound.concealed_frames,
        jitter_ms: stats.inbound.jitter_ms,
        pacing_p99_ms: stats.pacing.p99_ms,
    });
    let usage = bridge.usage();
    record.model = Some(profile.model.clone());
    record.rollovers = u64::from(bridge.rollovers());
    record.cost_usd = match ctx.prices.lookup(&profile.model) {
        Some((_, price)) => Some(usage.cost_usd(price)),
        None => {
            warn!(model = %profile.model, "no price for this model in [pricing]; the call's cost is not estimated");
            None
        }
    };
    record.usage = Some(usage);
    if ctx.store_transcripts {
        let now = tokio::time::Instant::now().into_std();
        bridge.note(now, &format!("call ended: {end}"));
        record.turns = bridge.finish_transcript();
    }
    record.concealed_frames = stats.inbound.concealed_frames;
    record.media = Some(MediaRecord {
        lost: stats.inbound.lost,
        late: stats.inbound.late,
        duplicated: stats.inbound.duplicates,
        reordered: stats.inbound.reordered,
        jitter_ms: stats.inbound.jitter_ms,
        max_depth_ms: stats.inbound.max_depth_ms,
        remote_fraction_lost: stats.remote_report.map(|r| r.fraction_lost),
        remote_cumulative_lost: stats.remote_report.map(|r| i64::from(r.cumulative_lost)),
        remote_jitter_ms: stats.remote_report.map(|r| r.jitter_ms),
        dtmf_digits: stats.dtmf_digits,
        barge_ins: stats.barge_ins,
        echo_gated_frames: stats.echo_gated_frames,
        false_barge_ins: stats.false_barge_ins,
        true_barge_ins: stats.true_barge_ins,
    });
    info!(
        appends = stats.appends,
        barge_ins = stats.barge_ins,
        truncates = stats.truncates,
        echo_gated_frames = stats.echo_gated_frames,
        false_barge_ins = stats.false_barge_ins,
        true_barge_ins = stats.true_barge_ins,
        server_errors = stats.server_errors,
        late = stats.inbound.late,
        duplicates = stats.inbound.duplicates,
        lost = stats.inbound.lost,
        concealed = stats.inbound.concealed_frames,
        clock_frames = stats.inbound.clock_frames,
        reorder_window_ms = stats.inbound.max_reorder_window_ms,
        jitter_ms = format!("{:.1}", stats.inbound.jitter_ms),
        max_depth_ms = stats.inbound.max_depth_ms,
        dtmf = stats.dtmf_digits,
        packets_out = stats.outbound.packets_sent,
        latency_frames = stats.latency.samples,
        latency_p50_ms = format!("{:.2}", stats.latency.p50_ms),
        latency_p99_ms = format!("{:.2}", stats.latency.p99_ms),
        latency_max_ms = format!("{:.2}", stats.latency.max_ms),
        pacing_p50_ms = format!("{:.2}", stats.pacing.p50_ms),
        pacing_p99_ms = format!("{:.2}", stats.pacing.p99_ms),
        pacing_max_ms = format!("{:.2}", stats.pacing.max_ms),
        input_tokens = usage.input_tokens(),
        output_tokens = usage.output_tokens(),
        cost_usd = record
            .cost_usd
            .map(|c| format!("{c:.4}"))
            .unwrap_or_default(),
        turns = record.turns.len(),
        "media summary"
    );
}
