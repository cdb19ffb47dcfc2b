//! Prometheus metrics (the `metrics` crate, exported by `metrics-exporter-prometheus` at
//! `/metrics` of the HTTP listener, see [`crate::http`]). Every metric name and label of
//! frontdesk is defined here, with one small function per event, so call sites stay one line and
//! the list below stays true. Recording is cheap (atomics) and never blocks; without an
//! installed recorder (`frontdesk serve` without `--http-listen`, tests) it does nothing.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `frontdesk_calls_in_progress` | gauge | | calls being handled now |
//! | `frontdesk_calls_total` | counter | `end_reason` | finished calls, by end reason (text before any `:`) |
//! | `frontdesk_call_setup_seconds` | histogram | | INVITE received → 200 OK sent |
//! | `frontdesk_realtime_sessions_total` | counter | `result` = `opened`, `failed`, `timeout` | Realtime session opens |
//! | `frontdesk_model_first_audio_seconds` | histogram | | caller stopped speaking (`input_audio_buffer.speech_stopped`) → first audio delta of the reply |
//! | `frontdesk_barge_ins_total` | counter | | times callers interrupted the agent |
//! | `frontdesk_truncates_total` | counter | | `conversation.item.truncate` sent |
//! | `frontdesk_tool_calls_total` | counter | `tool`, `outcome` = `ok`, `error` | the model's function calls |
//! | `frontdesk_tool_call_seconds` | histogram | `tool` | function call latency |
//! | `frontdesk_rtp_packets_lost_total` | counter | | caller RTP packets never received |
//! | `frontdesk_rtp_packets_late_total` | counter | | caller RTP packets too late to play |
//! | `frontdesk_rtp_concealed_frames_total` | counter | | 20 ms silence frames inserted for missing caller audio |
//! | `frontdesk_rtp_jitter_seconds` | histogram | | RFC 3550 interarrival jitter of each call's caller stream, at its end |
//! | `frontdesk_rtp_pacing_error_seconds` | histogram | | each call's 99th-percentile pacing error of our RTP |
//! | `frontdesk_registration_registered` | gauge | `name` | 1 while the `[[registrations]]` entry is bound, else 0 |
//! | `frontdesk_admission_rejections_total` | counter | `rule` = `source_not_allowed`, `bad_credentials`, `rate_limited`, `max_calls` | INVITEs refused before a dialog |

use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets of the `_seconds` metrics: 1 ms to 30 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0,
    10.0, 30.0,
];

/// Tool names used as label values; any other name the model invents is counted as `unknown`.
const KNOWN_TOOLS: &[&str] = &[
    "check_availability",
    "book_appointment",
    "find_appointments",
    "reschedule_appointment",
    "cancel_appointment",
    "get_business_info",
    "transfer_call",
    "end_call",
];

/// Installs the process-wide Prometheus recorder and returns the handle that renders the text
/// format. Call once (`frontdesk serve`).
///
/// # Errors
/// When a recorder is already installed in this process.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    describe();
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!("frontdesk_calls_in_progress", "Calls being handled now");
    describe_counter!("frontdesk_calls_total", "Finished calls by end reason");
    describe_histogram!(
        "frontdesk_call_setup_seconds",
        Unit::Seconds,
        "INVITE received to 200 OK sent"
    );
    describe_counter!(
        "frontdesk_realtime_sessions_total",
        "Realtime session opens by result"
    );
    describe_histogram!(
        "frontdesk_model_first_audio_seconds",
        Unit::Seconds,
        "Caller stopped speaking to the first audio of the reply"
    );
    describe_counter!(
        "frontdesk_barge_ins_total",
        "Times callers interrupted the agent"
    );
    describe_counter!(
        "frontdesk_truncates_total",
        "conversation.item.truncate sent"
    );
    describe_counter!(
        "frontdesk_tool_calls_total",
        "Function calls by tool and outcome"
    );
    describe_histogram!(
        "frontdesk_tool_call_seconds",
        Unit::Seconds,
        "Function call latency"
    );
    describe_counter!(
        "frontdesk_rtp_packets_lost_total",
        "Caller RTP packets lost"
    );
    describe_counter!(
        "frontdesk_rtp_packets_late_total",
        "Caller RTP packets too late"
    );
    describe_counter!(
        "frontdesk_rtp_concealed_frames_total",
        "20 ms frames concealed with silence"
    );
    describe_histogram!(
        "frontdesk_rtp_jitter_seconds",
        Unit::Seconds,
        "Interarrival jitter of each call's caller stream"
    );
    describe_histogram!(
        "frontdesk_rtp_pacing_error_seconds",
        Unit::Seconds,
        "99th-percentile pacing error of each call's RTP"
    );
    describe_gauge!(
        "frontdesk_registration_registered",
        "1 while the registration is bound"
    );
    describe_counter!(
        "frontdesk_admission_rejections_total",
        "INVITEs refused by admission, by rule"
    );
}

/// A call task started.
pub fn call_started() {
    gauge!("frontdesk_calls_in_progress").increment(1.0);
}

/// A call finished with `end_reason` (`end_call: <text>` is counted as `end_call`).
pub fn call_ended(end_reason: &str) {
    gauge!("frontdesk_calls_in_progress").decrement(1.0);
    let reason = end_reason
        .split(':')
        .next()
        .unwrap_or(end_reason)
        .trim()
        .to_owned();
    counter!("frontdesk_calls_total", "end_reason" => reason).increment(1);
}

/// We answered 200 OK `setup` after the INVITE arrived.
pub fn call_answered(setup: Duration) {
    histogram!("frontdesk_call_setup_seconds").record(setup.as_secs_f64());
}

/// A Realtime session open ended with `result` (`opened`, `failed`, `timeout`).
pub fn realtime_session(result: &'static str) {
    counter!("frontdesk_realtime_sessions_total", "result" => result).increment(1);
}

/// The model's reply started `latency` after the caller stopped speaking.
pub fn model_first_audio(latency: Duration) {
    histogram!("frontdesk_model_first_audio_seconds").record(latency.as_secs_f64());
}

/// A function call finished.
pub fn tool_call(name: &str, ok: bool, latency: Duration) {
    let tool = KNOWN_TOOLS
        .iter()
        .find(|t| **t == name)
        .copied()
        .unwrap_or("unknown");
    let outcome = if ok { "ok" } else { "error" };
    counter!("frontdesk_tool_calls_total", "tool" => tool, "outcome" => outcome).increment(1);
    histogram!("frontdesk_tool_call_seconds", "tool" => tool).record(latency.as_secs_f64());
}

/// Media figures of one finished call.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallMedia {
    /// Barge-ins.
    pub barge_ins: u64,
    /// Truncates sent.
    pub truncates: u64,
    /// Caller packets lost.
    pub lost: u64,
    /// Caller packets too late.
    pub late: u64,
    /// Concealed 20 ms frames.
    pub concealed: u64,
    /// RFC 3550 jitter at the end, ms.
    pub jitter_ms: f64,
    /// 99th-percentile pacing error, ms.
    pub pacing_p99_ms: f64,
}

/// Adds one finished call's media figures.
pub fn call_media(m: &CallMedia) {
    counter!("frontdesk_barge_ins_total").increment(m.barge_ins);
    counter!("frontdesk_truncates_total").increment(m.truncates);
    counter!("frontdesk_rtp_packets_lost_total").increment(m.lost);
    counter!("frontdesk_rtp_packets_late_total").increment(m.late);
    counter!("frontdesk_rtp_concealed_frames_total").increment(m.concealed);
    histogram!("frontdesk_rtp_jitter_seconds").record(m.jitter_ms / 1000.0);
    histogram!("frontdesk_rtp_pacing_error_seconds").record(m.pacing_p99_ms / 1000.0);
}

/// The registration `name` is bound (`true`) or not.
pub fn registration(name: &str, registered: bool) {
    gauge!("frontdesk_registration_registered", "name" => name.to_owned()).set(if registered {
        1.0
    } else {
        0.0
    });
}

/// Admission refused an INVITE by `rule`.
pub fn admission_rejected(rule: &'static str) {
    counter!("frontdesk_admission_rejections_total", "rule" => rule).increment(1);
}

/// Every metric name of the table above.
pub const METRIC_NAMES: &[&str] = &[
    "frontdesk_calls_in_progress",
    "frontdesk_calls_total",
    "frontdesk_call_setup_seconds",
    "frontdesk_realtime_sessions_total",
    "frontdesk_model_first_audio_seconds",
    "frontdesk_barge_ins_total",
    "frontdesk_truncates_total",
    "frontdesk_tool_calls_total",
    "frontdesk_tool_call_seconds",
    "frontdesk_rtp_packets_lost_total",
    "frontdesk_rtp_packets_late_total",
    "frontdesk_rtp_concealed_frames_total",
    "frontdesk_rtp_jitter_seconds",
    "frontdesk_rtp_pacing_error_seconds",
    "frontdesk_registration_registered",
    "frontdesk_admission_rejections_total",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grafana_dashboard_graphs_every_metric_and_only_those() {
        let text = include_str!("../deploy/grafana/frontdesk-dashboard.json");
        let dash: serde_json::Value = serde_json::from_str(text).expect("dashboard JSON");
        let exprs: Vec<String> = dash["panels"]
            .as_array()
            .expect("panels")
            .iter()
            .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
            .filter_map(|t| t["expr"].as_str().map(str::to_owned))
            .collect();
        let re = regex::Regex::new(r"frontdesk_[a-z_]+").expect("regex");
        for e in &exprs {
            for m in re.find_iter(e) {
                let name = m.as_str().trim_end_matches("_bucket");
                assert!(METRIC_NAMES.contains(&name), "unknown metric {name} in {e}");
            }
        }
        for name in METRIC_NAMES {
            assert!(
                exprs.iter().any(|e| e.contains(name)),
                "{name} is not graphed"
            );
        }
        let doc = include_str!("observe.rs");
        for name in METRIC_NAMES {
            assert!(
                doc.contains(&format!("//! | `{name}`")),
                "{name} undocumented"
            );
        }
    }
}
