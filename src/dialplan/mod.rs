//! Dialplan: which action answers which call, by called number, caller and time of day.
//!
//! Admins edit the `*.toml` files of the dialplan directory by hand (format reference:
//! `docs/dialplans.md`), so every stage is built to report mistakes rather than to fail:
//!
//! ```text
//!  *.toml text ──parse──► raw tables ──compile──► Dialplan ──evaluate(call, now)──► Decision
//!  (raw.rs)      keys, types, spans   (compile.rs)  regexes, zones,   (eval.rs)        route + Action
//!                every unknown key     references,    schedules built   pure, no clock
//!                                      defaults
//! ```
//!
//! - **Parse** walks the TOML tree of each file itself (instead of stopping at serde's first
//!   error) so that every unknown key, wrong type and bad value of every file is reported, each
//!   with `file:line:column` and, where one can be guessed, a hint (`did you mean `greeting`?`).
//! - **Compile** resolves names across files (agents, schedules), builds regexes, time zones,
//!   opening hours and holiday lists, loads instruction files and message audio through the
//!   [`Files`] trait, and fills in defaults. It either yields a complete [`Dialplan`] or every
//!   [`Error`] found.
//! - **Evaluate** ([`Dialplan::evaluate`]) is a pure function of the call and an explicit `now`:
//!   routes are tried in order (files in name order, then routes in written order) and the first
//!   match wins.
//!
//! Core and shell: `raw`, `compile`, `eval`, `matcher`, `schedule`, `profile`, `audio` and `hint`
//! do no I/O, read no clock and use no tokio (a test in `golden.rs` checks this). The shell parts
//! are [`Dialplan::load_dir`] (`load.rs`: reads the directory), [`report`] (the `frontdesk dialplan`
//! commands: reads files and, without `--at`, the clock) and [`reload`] (tokio, notify, SIGHUP).
#![deny(missing_docs)]

mod audio;
mod compile;
mod eval;
mod hint;
mod load;
mod matcher;
mod profile;
mod raw;
pub mod reload;
pub mod report;
mod schedule;

#[cfg(test)]
mod golden;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use audio::{ulaw_wav, AudioSamples, MessageAudio};
pub use compile::{Files, NoFiles};
pub use eval::{Action, AfterMessage, CallInfo, Decision, RouteCheck};
pub use load::FsFiles;
pub use matcher::{normalize_number, NumberMatch};
pub use profile::{
    AgentProfile, DtmfAction, ModelFailure, Tool, VadSettings, DEFAULT_IDLE_HANGUP,
    DEFAULT_IDLE_PROMPT, DEFAULT_MAX_DURATION, DEFAULT_MAX_MESSAGE, DEFAULT_MODEL, DEFAULT_VOICE,
    KNOWN_VOICES,
};
pub use reload::{watch, DialplanHandle, ReloadOutcome};
pub use report::{check_report, test_report};
pub use schedule::{DateSpec, Hours, Schedule};

/// One problem found in a dialplan file (or, for warnings, something suspicious).
///
/// `Display` prints `file:line:column: message`, followed by `; hint: …` when there is a hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{}", self.location(), self.message, self.hint.as_ref().map(|h| format!("; hint: {h}")).unwrap_or_default())]
pub struct Error {
    /// The file the problem is in (or the dialplan directory).
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters), when known.
    pub column: Option<usize>,
    /// What is wrong (lowercase, no trailing period).
    pub message: String,
    /// How to fix it, when a fix can be guessed.
    pub hint: Option<String>,
}

impl Error {
    /// A problem with a whole file or directory (no position).
    pub fn file(file: impl Into<PathBuf>, message: impl Into<String>) -> Error {
        Error {
            file: file.into(),
            line: None,
            column: None,
            message: message.into(),
            hint: None,
        }
    }

    /// A problem at byte `offset` of `text`, the contents of `file`.
    pub(crate) fn at(file: &Path, text: &str, offset: usize, message: impl Into<String>) -> Error {
        let (line, column) = position(text, offset);
        Error {
            file: file.to_owned(),
            line: Some(line),
            column: Some(column),
            message: message.into(),
            hint: None,
        }
    }

    /// The same error with a hint.
    pub(crate) fn with_hint(mut self, hint: Option<String>) -> Error {
        self.hint = hint;
        self
    }

    /// `file:line:column: ` (or `file:line: ` / `file: ` when less is known).
    pub fn location(&self) -> String {
        let mut s = self.file.display().to_string();
        if let Some(l) = self.line {
            s.push_str(&format!(":{l}"));
            if let Some(c) = self.column {
                s.push_str(&format!(":{c}"));
            }
        }
        s.push_str(": ");
        s
    }
}

/// Why a single value (a pattern, an hours line, a date…) is invalid: the message, a hint, and
/// when known the byte range inside the value's text (see `raw::inner_span`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValueError {
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
    pub(crate) at: Option<std::ops::Range<usize>>,
}

impl ValueError {
    pub(crate) fn new(message: impl Into<String>) -> ValueError {
        ValueError {
            message: message.into(),
            hint: None,
            at: None,
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> ValueError {
        self.hint = Some(hint.into());
        self
    }

    pub(crate) fn at(mut self, at: std::ops::Range<usize>) -> ValueError {
        self.at = Some(at);
        self
    }
}

/// 1-based (line, column) of byte `offset` in `text`; the column counts characters.
pub(crate) fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// A compiled route: conditions, then the action taken when they all hold.
#[derive(Debug, Clone)]
pub struct Route {
    /// Route name (for logs and `dialplan test`); defaults to `file.toml#N`.
    pub name: String,
    /// The file the route is written in.
    pub file: PathBuf,
    /// 1-based line of the route in its file.
    pub line: usize,
    /// Called-number patterns; the route matches when any matches. Empty: every call.
    pub to: Vec<NumberMatch>,
    /// Caller-number patterns; the route matches when any matches. Empty: every caller.
    pub from: Vec<NumberMatch>,
    /// Schedules that must all be active (`when`).
    pub when: Vec<Arc<Schedule>>,
    /// Schedules that must all be inactive (`unless`).
    pub unless: Vec<Arc<Schedule>>,
    /// What to do with the call.
    pub action: Action,
}

impl Route {
    /// True when the route has no condition at all, so no route after it can ever match.
    pub fn is_catch_all(&self) -> bool {
        let any =
            |ms: &[NumberMatch]| ms.is_empty() || ms.iter().any(|m| matches!(m, NumberMatch::Any));
        any(&self.to) && any(&self.from) && self.when.is_empty() && self.unless.is_empty()
    }
}

/// A compiled, validated dialplan: routes in evaluation order, the agent profiles and schedules
/// they use, and the version (a hash of every source byte) for logs.
#[derive(Debug, Clone)]
pub struct Dialplan {
    pub(crate) routes: Vec<Route>,
    pub(crate) agents: BTreeMap<String, Arc<AgentProfile>>,
    pub(crate) schedules: BTreeMap<String, Arc<Schedule>>,
    pub(crate) timezone: chrono_tz::Tz,
    pub(crate) version: String,
    pub(crate) files: Vec<PathBuf>,
    pub(crate) dependencies: Vec<PathBuf>,
    pub(crate) warnings: Vec<Error>,
    /// Every model endpoint name the agents use, where it is written.
    pub(crate) endpoint_refs: Vec<EndpointRef>,
}

/// An endpoint name in an agent's `endpoints`, with its position for the error.
#[derive(Debug, Clone)]
pub(crate) struct EndpointRef {
    pub(crate) name: String,
    /// An error at the name's position (message filled in by the check).
    pub(crate) site: Error,
}

impl Dialplan {
    /// All routes, in evaluation order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The agent profiles, by name.
    pub fn agents(&self) -> &BTreeMap<String, Arc<AgentProfile>> {
        &self.agents
    }

    /// The agent profile called `name`.
    pub fn agent(&self, name: &str) -> Option<&Arc<AgentProfile>> {
        self.agents.get(name)
    }

    /// The schedules, by name.
    pub fn schedules(&self) -> &BTreeMap<String, Arc<Schedule>> {
        &self.schedules
    }

    /// The business time zone (`[settings] timezone`, default UTC): schedules without their own
    /// `timezone` use it, and `dialplan test --at "YYYY-MM-DD HH:MM"` reads local times in it.
    pub fn timezone(&self) -> chrono_tz::Tz {
        self.timezone
    }

    /// The plan's version: 16 hex digits of a hash over every dialplan file (names and contents)
    /// and every file they refer to. Equal versions mean identical sources.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The dialplan files, in evaluation order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Files the plan refers to (instruction files, message audio); a change to them should
    /// trigger a reload too.
    pub fn dependencies(&self) -> &[PathBuf] {
        &self.dependencies
    }

    /// Suspicious but valid things (unreachable routes, unused agents, unknown voices…).
    pub fn warnings(&self) -> &[Error] {
        &self.warnings
    }

    /// Checks the agents' `endpoints` against the configured endpoint names
    /// (`[[realtime.endpoints]]`): one error (file:line:column, with a did-you-mean hint) per
    /// unknown name.
    pub fn check_endpoints(&self, known: &[String]) -> Vec<Error> {
        self.endpoint_refs
            .iter()
            .filter(|r| !known.contains(&r.name))
            .map(|r| {
                let mut e = r.site.clone();
                e.message = format!(
                    "agent endpoint `{}` is not a configured endpoint ([[realtime.endpoints]] names: {})",
                    r.name,
                    known.join(", ")
                );
                e.hint = Some(hint::did_you_mean(&r.name, known.iter().map(String::as_str)));
                e
            })
            .collect()
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn compile(text: &str) -> Result<Dialplan, Vec<Error>> {
        Dialplan::compile(&[(PathBuf::from("t.toml"), text.to_owned())])
    }

    fn call(to: &str) -> CallInfo {
        CallInfo::new(Some(to), None)
    }

    fn agent_of(d: Option<Decision>) -> Option<String> {
        match d?.action {
            Action::Agent(a) => Some(a.name.clone()),
            _ => None,
        }
    }

    #[test]
    fn first_match_wins_with_exact_and_prefix() {
        let plan = compile(
            r#"
            [[routes]]
            to = "100"
            agent = "a"
            [[routes]]
            to = "1*"
            agent = "b"
            [agents.a]
            instructions = "A"
            [agents.b]
            instructions = "B"
            voice = "alloy"
            "#,
        )
        .expect("valid");
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        assert_eq!(
            agent_of(plan.evaluate(&call("100"), now)).as_deref(),
            Some("a")
        );
        assert_eq!(
            agent_of(plan.evaluate(&call("101"), now)).as_deref(),
            Some("b")
        );
        assert!(plan.evaluate(&call("200"), now).is_none());
        assert_eq!(plan.agent("b").map(|a| a.voice.as_str()), Some("alloy"));
    }

    #[test]
    fn typos_and_unknown_agents_are_reported_with_lines_and_columns() {
        let errs = compile("[[routes]]\nto = \"*\"\nagnet = \"x\"\n").expect_err("typo");
        assert_eq!(
            (errs[0].line, errs[0].column),
            (Some(3), Some(1)),
            "{errs:?}"
        );
        assert!(errs[0].message.contains("agnet"), "{errs:?}");
        assert_eq!(errs[0].hint.as_deref(), Some("did you mean `agent`?"));
        let errs =
            compile("[[routes]]\nto = \"*\"\nagent = \"nobody\"\n").expect_err("unknown agent");
        assert!(errs[0].message.contains("nobody"));
        assert_eq!((errs[0].line, errs[0].column), (Some(3), Some(9)));
    }

    #[test]
    fn error_display_is_file_line_column_message_hint() {
        let e = Error {
            file: PathBuf::from("d/main.toml"),
            line: Some(3),
            column: Some(7),
            message: "unknown key `greting` in agent `a`".into(),
            hint: Some("did you mean `greeting`?".into()),
        };
        assert_eq!(
            e.to_string(),
            "d/main.toml:3:7: unknown key `greting` in agent `a`; hint: did you mean `greeting`?"
        );
        assert_eq!(Error::file("d", "empty").to_string(), "d: empty");
    }

    #[test]
    fn position_counts_lines_and_characters() {
        assert_eq!(position("ab\ncdé f", 0), (1, 1));
        assert_eq!(position("ab\ncdé f", 3), (2, 1));
        assert_eq!(position("ab\ncdé f", 8), (2, 5));
        assert_eq!(
            position("ab\ncdé f", 7),
            (2, 4),
            "inside a multi-byte char rounds down"
        );
        assert_eq!(position("ab", 99), (1, 3));
    }
}
