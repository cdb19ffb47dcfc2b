//! Staff commands on the call history: `frontdesk calls list`, `calls show CALL-ID`,
//! `calls summary` (human-readable text, or JSON with `--json`) and the `--since` parser they
//! share. Reads only; all SQL is in `crate::store::history`. Times are shown in UTC.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};

use crate::store::history::{CallDetail, CallSummary, DaySummary, PurgeReport};

/// Parses a `--since` value: a duration back from `now` (`30m`, `12h`, `7d`), a UTC date
/// (`2026-12-01`), a UTC date and time (`2026-12-01 08:00`) or RFC 3339.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Some(n) = s.strip_suffix(['m', 'h', 'd']) {
        if let Ok(n) = n.parse::<i64>() {
            let d = match s.chars().last() {
                Some('m') => Duration::minutes(n),
                Some('h') => Duration::hours(n),
                _ => Duration::days(n),
            };
            return Ok(now - d);
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M") {
        return Ok(t.and_utc());
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err(format!(
        "'{s}' is not a time: use 7d, 12h, 30m, 2026-12-01, '2026-12-01 08:00' (UTC) or RFC 3339"
    ))
}

/// `1m 05s`, `2h 03m`, `-` when unknown.
pub fn duration_text(secs: Option<f64>) -> String {
    let Some(secs) = secs else {
        return "-".into();
    };
    let s = secs.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `$0.0123`, or `-` when unknown.
pub fn cost_text(cost: Option<f64>) -> String {
    cost.map_or_else(|| "-".into(), |c| format!("${c:.4}"))
}

/// `2026-12-02 04:10:22` from RFC 3339.
pub fn time_text(rfc3339: &str) -> String {
    DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            t.with_timezone(&Utc)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| rfc3339.to_owned())
}

/// `[01:05.3]`: ms of call time as minutes, seconds and tenths.
fn offset_text(ms: i64) -> String {
    let ms = ms.max(0);
    format!(
        "{:02}:{:02}.{}",
        ms / 60_000,
        (ms / 1000) % 60,
        (ms / 100) % 10
    )
}

/// The table of `calls list`.
pub fn list_text(calls: &[CallSummary]) -> String {
    if calls.is_empty() {
        return "no calls\n".into();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<19}  {:<16}  {:<16}  {:<18}  {:>8}  {:>6}  {:>8}  CALL-ID",
        "STARTED (UTC)", "CALLER", "ROUTE", "OUTCOME", "DURATION", "BOOKED", "COST"
    );
    for c in calls {
        let _ = writeln!(
            out,
            "{:<19}  {:<16}  {:<16}  {:<18}  {:>8}  {:>6}  {:>8}  {}",
            time_text(&c.started_at),
            c.caller.as_deref().unwrap_or("anonymous"),
            c.route.as_deref().unwrap_or("-"),
            c.outcome.as_deref().unwrap_or("in progress"),
            duration_text(c.duration_secs),
            c.bookings,
            cost_text(c.cost_usd),
            c.call_id
        );
    }
    out
}

/// The report of `calls show`: the call, its media and usage, the conversation and the tool
/// calls.
pub fn show_text(d: &CallDetail) -> String {
    let s = &d.summary;
    let mut out = String::new();
    let _ = writeln!(out, "Call {}", s.call_id);
    let _ = writeln!(
        out,
        "  caller     {}  →  {}  (route {})",
        s.caller.as_deref().unwrap_or("anonymous"),
        s.called.as_deref().unwrap_or("-"),
        s.route.as_deref().unwrap_or("-")
    );
    let _ = writeln!(
        out,
        "  started    {} UTC, answered {}",
        time_text(&s.started_at),
        d.answered_at
            .as_deref()
            .map_or_else(|| "no".into(), time_text)
    );
    let _ = writeln!(
        out,
        "  ended      {} ({}, by {}) after {}; SIP {}",
        d.ended_at.as_deref().map_or_else(|| "-".into(), time_text),
        s.outcome.as_deref().unwrap_or("in progress"),
        d.end_initiator.as_deref().unwrap_or("-"),
        duration_text(s.duration_secs),
        d.sip_status.map_or_else(|| "-".into(), |c| c.to_string())
    );
    let m = &d.media;
    let _ = writeln!(
        out,
        "  media      {}: {} packets in, {} out; {} lost, {} late, {} concealed frames; jitter {} ms; caller-reported loss {}; {} barge-in(s), {} key press(es), {} session rollover(s)",
        m.codec.as_deref().unwrap_or("-"),
        m.packets_in,
        m.packets_out,
        m.packets_lost.unwrap_or(0),
        m.packets_late.unwrap_or(0),
        m.concealed_frames,
        m.jitter_ms.map_or_else(|| "-".into(), |j| format!("{j:.1}")),
        m.remote_fraction_lost
            .map_or_else(|| "-".into(), |f| format!("{:.1} %", f * 100.0)),
        m.barge_ins.unwrap_or(0),
        m.dtmf_digits.unwrap_or(0),
        m.rollovers,
    );
    let _ = writeln!(
        out,
        "  echo gate  {} frame(s) of echo replaced with silence; {} false barge-in(s) (echo), {} true barge-in(s)",
        m.echo_gated_frames.unwrap_or(0),
        m.false_barge_ins.unwrap_or(0),
        m.true_barge_ins.unwrap_or(0),
    );
    let u = &d.usage;
    let n = |v: Option<i64>| v.unwrap_or(0);
    let _ = writeln!(
        out,
        "  usage      {}: {} responses; input {} text + {} audio tokens ({} + {} cached); output {} text + {} audio tokens",
        u.model.as_deref().unwrap_or("-"),
        n(u.responses),
        n(u.input_text_tokens),
        n(u.input_audio_tokens),
        n(u.cached_text_tokens),
        n(u.cached_audio_tokens),
        n(u.output_text_tokens),
        n(u.output_audio_tokens),
    );
    let _ = writeln!(
        out,
        "  cost       {} (estimate from the [pricing] table)",
        cost_text(s.cost_usd)
    );
    let _ = writeln!(out, "  bookings   {}", s.bookings);
    let _ = writeln!(out, "\nTranscript");
    if d.turns.is_empty() {
        let _ = writeln!(
            out,
            "  (none: transcription off, transcripts not stored, or purged)"
        );
    }
    for t in &d.turns {
        let cut = if t.truncated {
            "  [cut off by the caller]"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  [{}] {:<7} {}{}",
            offset_text(t.start_ms),
            format!("{}:", t.speaker),
            t.text,
            cut
        );
    }
    let _ = writeln!(out, "\nTool calls");
    if d.tool_calls.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for t in &d.tool_calls {
        let status = t.error.as_deref().unwrap_or("ok");
        let _ = writeln!(
            out,
            "  {} {} ({} ms, {})\n      arguments: {}\n      result:    {}",
            time_text(&t.created_at),
            t.name,
            t.duration_ms,
            status,
            t.arguments,
            t.result
        );
    }
    out
}

/// The table of `calls summary`.
pub fn summary_text(days: &[DaySummary]) -> String {
    if days.is_empty() {
        return "no calls\n".into();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10}  {:>6}  {:>8}  {:>8}  {:>6}  {:>10}  {:>10}  {:>9}",
        "DATE (UTC)", "CALLS", "ANSWERED", "MINUTES", "BOOKED", "TOKENS IN", "TOKENS OUT", "COST"
    );
    let mut total = (0i64, 0i64, 0f64, 0i64, 0i64, 0i64, 0f64);
    for d in days {
        let _ = writeln!(
            out,
            "{:<10}  {:>6}  {:>8}  {:>8.1}  {:>6}  {:>10}  {:>10}  {:>9}",
            d.date,
            d.calls,
            d.answered,
            d.minutes,
            d.bookings,
            d.input_tokens,
            d.output_tokens,
            cost_text(Some(d.cost_usd))
        );
        total.0 += d.calls;
        total.1 += d.answered;
        total.2 += d.minutes;
        total.3 += d.bookings;
        total.4 += d.input_tokens;
        total.5 += d.output_tokens;
        total.6 += d.cost_usd;
    }
    let _ = writeln!(
        out,
        "{:<10}  {:>6}  {:>8}  {:>8.1}  {:>6}  {:>10}  {:>10}  {:>9}",
        "total",
        total.0,
        total.1,
        total.2,
        total.3,
        total.4,
        total.5,
        cost_text(Some(total.6))
    );
    if total.2 > 0.0 {
        let _ = writeln!(
            out,
            "average cost per minute: {}",
            cost_text(Some(total.6 / total.2))
        );
    }
    out
}

/// The line `calls purge` prints.
pub fn purge_text(r: &PurgeReport) -> String {
    format!(
        "deleted {} call(s), {} transcript turn(s), {} tool call(s)\n",
        r.calls, r.turns, r.tool_calls
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_durations_dates_and_times() {
        let now = DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let at = |s: &str| parse_since(s, now).map(|t| t.to_rfc3339());
        assert_eq!(at("7d").as_deref(), Ok("2026-11-25T10:00:00+00:00"));
        assert_eq!(at("12h").as_deref(), Ok("2026-12-01T22:00:00+00:00"));
        assert_eq!(at("30m").as_deref(), Ok("2026-12-02T09:30:00+00:00"));
        assert_eq!(at("2026-12-01").as_deref(), Ok("2026-12-01T00:00:00+00:00"));
        assert_eq!(
            at("2026-12-01 08:15").as_deref(),
            Ok("2026-12-01T08:15:00+00:00")
        );
        assert_eq!(
            at("2026-12-01T08:15:00+01:00").as_deref(),
            Ok("2026-12-01T07:15:00+00:00")
        );
        assert!(parse_since("yesterday", now).is_err());
    }

    #[test]
    fn durations_and_costs_read_naturally() {
        assert_eq!(duration_text(Some(5.4)), "5s");
        assert_eq!(duration_text(Some(65.0)), "1m 05s");
        assert_eq!(duration_text(Some(7384.0)), "2h 03m");
        assert_eq!(duration_text(None), "-");
        assert_eq!(cost_text(Some(0.01234)), "$0.0123");
        assert_eq!(offset_text(65_300), "01:05.3");
    }
}
