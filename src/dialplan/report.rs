//! The `frontdesk dialplan check` and `frontdesk dialplan test` commands, as functions that
//! return the text to print, so that the CLI stays a thin wrapper and the output is
//! golden-tested.
//!
//! [`check_report`] and [`test_report`] are shell: they read the directory and (`test` without
//! `--at`) the clock. Everything they print is made by the pure functions below them
//! ([`routing_table`], [`explain_call`], [`format_diagnostics`], [`parse_at`]).

use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::eval::shorten;
use super::profile::fmt_duration;
use super::{Action, AfterMessage, CallInfo, Dialplan, Error, NumberMatch, Route, RouteCheck};

/// `frontdesk dialplan check DIR`: `(stdout, stderr, valid)`.
///
/// Valid: stdout has the compiled routing table ([`routing_table`]) and stderr the warnings, if
/// any. Invalid: stdout is empty and stderr lists every error, each as
/// `file:line:column: error: message` with an indented `hint:` line, then a count. The CLI exits
/// 1 when `valid` is false.
pub fn check_report(dir: &Path) -> (String, String, bool) {
    match Dialplan::load_dir(dir) {
        Ok(plan) => {
            let mut stderr = format_diagnostics(plan.warnings(), "warning");
            if !plan.warnings().is_empty() {
                let _ = writeln!(
                    stderr,
                    "{} warning(s); the plan is valid",
                    plan.warnings().len()
                );
            }
            (routing_table(&plan), stderr, true)
        }
        Err(errors) => {
            let mut stderr = format_diagnostics(&errors, "error");
            let _ = writeln!(
                stderr,
                "dialplan {} is invalid: {} error(s)",
                dir.display(),
                errors.len()
            );
            (String::new(), stderr, false)
        }
    }
}

/// `frontdesk dialplan test --to NUMBER [--from NUMBER] [--at TIME] [DIR]`: which route and
/// action a call would get, and why each earlier route was skipped.
///
/// `at` is RFC 3339 (`2026-03-29T06:30:00Z`) or a local time in the plan's time zone
/// (`2026-03-29 08:30`); without it, the current time. An empty `to` or `-` means a call without
/// a called number.
///
/// # Errors
/// The plan is invalid (the text lists every error, as `check` prints them), or `at` cannot be
/// read.
pub fn test_report(
    dir: &Path,
    to: &str,
    from: Option<&str>,
    at: Option<&str>,
) -> Result<String, String> {
    let plan = Dialplan::load_dir(dir).map_err(|errors| {
        let mut s = format_diagnostics(&errors, "error");
        let _ = write!(
            s,
            "dialplan {} is invalid: {} error(s)",
            dir.display(),
            errors.len()
        );
        s
    })?;
    let (now, note) = match at {
        Some(text) => parse_at(text, plan.timezone())?,
        None => (Utc::now(), None),
    };
    let number = |n: &str| {
        let n = n.trim();
        (!n.is_empty() && n != "-").then(|| n.to_owned())
    };
    let call = CallInfo {
        called: number(to),
        caller: from.and_then(number),
    };
    let mut out = explain_call(&plan, &call, now);
    if let Some(note) = note {
        out.insert_str(0, &format!("note: {note}\n"));
    }
    Ok(out)
}

/// Prints diagnostics as `file:line:column: LEVEL: message` with an indented `hint:` line.
pub fn format_diagnostics(diagnostics: &[Error], level: &str) -> String {
    let mut s = String::new();
    for e in diagnostics {
        let _ = writeln!(s, "{}{level}: {}", e.location(), e.message);
        if let Some(h) = &e.hint {
            let _ = writeln!(s, "    hint: {h}");
        }
    }
    s
}

/// Reads `--at`: RFC 3339, or `YYYY-MM-DD HH:MM[:SS]` local time in `tz`. Returns the instant and
/// a note when the local time was ambiguous (DST fall-back: the first occurrence is used).
///
/// # Errors
/// Unreadable text, or a local time that does not exist (DST spring-forward gap).
pub fn parse_at(text: &str, tz: Tz) -> Result<(DateTime<Utc>, Option<String>), String> {
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok((dt.with_timezone(&Utc), None));
    }
    let naive = ["%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
        .ok_or_else(|| {
            format!(
                "cannot read --at `{t}`: write RFC 3339 (2026-03-29T06:30:00Z) or a local time in {} (2026-03-29 08:30)",
                tz.name()
            )
        })?;
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(dt) => Ok((dt.with_timezone(&Utc), None)),
        LocalResult::Ambiguous(first, second) => Ok((
            first.with_timezone(&Utc),
            Some(format!(
                "{t} happens twice in {} (DST ends); using the first, {} ({}), not {} ({}); give an offset to choose",
                tz.name(),
                first.format("%H:%M %Z"),
                first.with_timezone(&Utc).format("%H:%MZ"),
                second.format("%H:%M %Z"),
                second.with_timezone(&Utc).format("%H:%MZ"),
            )),
        )),
        LocalResult::None => Err(format!(
            "{t} does not exist in {}: the clocks skip it when DST starts; pick another time",
            tz.name()
        )),
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    )
}

fn numbers(ps: &[NumberMatch]) -> String {
    if ps.is_empty() {
        "*".to_owned()
    } else {
        ps.iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn conditions(r: &Route) -> String {
    let mut parts = Vec::new();
    if !r.when.is_empty() {
        parts.push(format!(
            "when {}",
            r.when
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    if !r.unless.is_empty() {
        parts.push(format!(
            "unless {}",
            r.unless
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    if parts.is_empty() {
        "always".to_owned()
    } else {
        parts.join("; ")
    }
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
fn table(rows: &[Vec<String>], indent: &str) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::from(indent);
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The compiled plan, as `check` prints it: routes in order, agents, schedules.
pub fn routing_table(plan: &Dialplan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "dialplan is valid: {} file(s), {} route(s), {} agent(s), {} schedule(s); version {}; time zone {}",
        plan.files().len(),
        plan.routes().len(),
        plan.agents().len(),
        plan.schedules().len(),
        plan.version(),
        plan.timezone().name()
    );
    let _ = writeln!(out, "\nroutes (tried in this order; the first match wins):");
    let mut rows = vec![vec![
        "#".to_owned(),
        "route".to_owned(),
        "at".to_owned(),
        "to".to_owned(),
        "from".to_owned(),
        "time".to_owned(),
        "action".to_owned(),
    ]];
    for (i, r) in plan.routes().iter().enumerate() {
        rows.push(vec![
            (i + 1).to_string(),
            r.name.clone(),
            format!("{}:{}", file_name(&r.file), r.line),
            numbers(&r.to),
            numbers(&r.from),
            conditions(r),
            r.action.to_string(),
        ]);
    }
    out.push_str(&table(&rows, "  "));
    if !plan.agents().is_empty() {
        let _ = writeln!(out, "\nagents:");
        for a in plan.agents().values() {
            let _ = writeln!(out, "  {}", a.name);
            out.push_str(&agent_details(a, "    "));
        }
    }
    if !plan.schedules().is_empty() {
        let _ = writeln!(out, "\nschedules:");
        let rows: Vec<Vec<String>> = plan
            .schedules()
            .values()
            .map(|s| vec![s.name.clone(), s.describe()])
            .collect();
        out.push_str(&table(&rows, "  "));
    }
    out
}

fn agent_details(a: &super::AgentProfile, indent: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{indent}voice {}, model {}, language {}, max duration {}, calendar {}",
        a.voice,
        a.model,
        a.language.as_deref().unwrap_or("any"),
        fmt_duration(a.max_duration),
        a.calendar.as_deref().unwrap_or("default")
    );
    let source = match &a.instructions_file {
        Some(p) => format!(" (from {})", file_name(p)),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "{indent}instructions{source}: \"{}\"",
        shorten(&a.instructions, 60)
    );
    if !a.greeting.is_empty() {
        let _ = writeln!(out, "{indent}greeting: \"{}\"", shorten(&a.greeting, 60));
    }
    let tools: Vec<&str> = a.tools.iter().map(|t| t.name()).collect();
    let _ = writeln!(
        out,
        "{indent}tools: {}",
        if tools.is_empty() {
            "none".to_owned()
        } else {
            tools.join(", ")
        }
    );
    if !a.transfers.is_empty() {
        let t: Vec<String> = a
            .transfers
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        let _ = writeln!(out, "{indent}transfers: {}", t.join(", "));
    }
    if !a.dtmf.is_empty() {
        let d: Vec<String> = a.dtmf.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        let _ = writeln!(out, "{indent}dtmf: {}", d.join(", "));
    }
    if a.transcription_model.is_some() || a.vad != super::VadSettings::default() {
        let _ = writeln!(
            out,
            "{indent}transcription {}, vad threshold {} prefix {} ms silence {} ms",
            a.transcription_model.as_deref().unwrap_or("off"),
            a.vad.threshold,
            a.vad.prefix_padding_ms,
            a.vad.silence_duration_ms
        );
    }
    out
}

/// What `test` prints: the call, each route tried and why it was skipped, and the decision.
pub fn explain_call(plan: &Dialplan, call: &CallInfo, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let local = now.with_timezone(&plan.timezone());
    let _ = writeln!(
        out,
        "call to {} from {} at {} ({})",
        call.called.as_deref().unwrap_or("(no number)"),
        call.caller.as_deref().unwrap_or("(anonymous)"),
        local.format("%a %Y-%m-%d %H:%M %Z"),
        now.format("%Y-%m-%dT%H:%M:%SZ")
    );
    let checks = plan.explain(call, now);
    let mut rows = Vec::new();
    for (r, check) in &checks {
        let i = plan
            .routes()
            .iter()
            .position(|x| std::ptr::eq(x, *r))
            .unwrap_or(0)
            + 1;
        let verdict = match check {
            RouteCheck::Matched => "MATCH".to_owned(),
            RouteCheck::Skipped(why) => format!("skip: {why}"),
        };
        rows.push(vec![format!("{i}."), r.name.clone(), verdict]);
    }
    out.push_str(&table(&rows, "  "));
    match plan.evaluate(call, now) {
        None => {
            let _ = writeln!(
                out,
                "=> no route matches: the call is rejected with 404 Not Found"
            );
        }
        Some(d) => {
            let _ = writeln!(out, "=> route {}: {}", d.route_name, d.action);
            match &d.action {
                Action::Agent(a) => out.push_str(&agent_details(a, "   ")),
                Action::Transfer { target } => {
                    let _ = writeln!(
                        out,
                        "   302 Moved Temporarily to {target} (the call is not answered)"
                    );
                }
                Action::Reject { code, reason } => {
                    let _ = writeln!(out, "   the call is refused with {code} {reason}");
                }
                Action::Message {
                    text, audio, then, ..
                } => {
                    if let Some(a) = audio {
                        let _ = writeln!(
                            out,
                            "   plays {} ({:.1} s)",
                            a.path.display(),
                            a.duration().as_secs_f64()
                        );
                    }
                    if let Some(t) = text {
                        let _ = writeln!(
                            out,
                            "   text: \"{}\"",
                            t.split_whitespace().collect::<Vec<_>>().join(" ")
                        );
                    }
                    let _ = match then {
                        AfterMessage::Hangup => writeln!(out, "   then hangs up"),
                        AfterMessage::Transfer { target } => {
                            writeln!(out, "   then transfers to {target} (REFER)")
                        }
                        AfterMessage::TakeMessage { max } => writeln!(
                            out,
                            "   then records a message of up to {} s",
                            max.as_secs()
                        ),
                    };
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn at_reads_rfc3339_and_local_times_with_dst() {
        let berlin = chrono_tz::Europe::Berlin;
        let (t, note) = parse_at("2026-03-29T06:30:00Z", berlin).expect("rfc3339");
        assert_eq!(t.to_rfc3339(), "2026-03-29T06:30:00+00:00");
        assert!(note.is_none());
        let (t, _) = parse_at("2026-03-29 08:30", berlin).expect("local CEST");
        assert_eq!(t.to_rfc3339(), "2026-03-29T06:30:00+00:00");
        let e = parse_at("2026-03-29 02:30", berlin).expect_err("gap");
        assert!(e.contains("does not exist in Europe/Berlin"), "{e}");
        let (t, note) = parse_at("2026-10-25 02:30", berlin).expect("ambiguous");
        assert_eq!(
            t.to_rfc3339(),
            "2026-10-25T00:30:00+00:00",
            "the first 02:30 is CEST"
        );
        assert!(note.expect("note").contains("happens twice"));
        assert!(parse_at("tomorrow", berlin).is_err());
    }

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["a".to_owned(), "long".to_owned(), "x".to_owned()],
            vec!["bbb".to_owned(), "s".to_owned(), "y".to_owned()],
        ];
        assert_eq!(table(&rows, " "), " a    long  x\n bbb  s     y\n");
    }

    #[test]
    fn check_of_a_missing_directory_is_invalid() {
        let (out, err, valid) = check_report(&PathBuf::from("/nonexistent/dialplans"));
        assert!(!valid);
        assert!(out.is_empty());
        assert!(
            err.starts_with("/nonexistent/dialplans: error: cannot read the dialplan directory"),
            "{err}"
        );
    }
}
