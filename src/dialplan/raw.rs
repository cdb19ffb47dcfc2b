//! Parse stage: one dialplan file's TOML text → raw, unvalidated structs with source spans.
//!
//! Owns the file's *shape*: which keys exist where and what TOML type each value has. It walks the
//! spanned TOML tree itself (rather than deriving serde structs with `deny_unknown_fields`)
//! because serde stops at the first error of a file, and admins must see every unknown key and
//! every wrong type at once. Every problem is pushed to the error list with its byte span (turned
//! into `line:column` by [`Error::at`]); the walk goes on with the next key.
//!
//! Values are kept as written (strings, integers) with their spans: their meaning (regexes, time
//! zones, hours, dates, URIs, names) is checked by the compile stage. Pure: no I/O.

use std::ops::Range;
use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::hint;
use super::Error;

/// A byte range in the file's text.
pub(crate) type Span = Range<usize>;

/// A value with the span it was written at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sp<T> {
    pub(crate) value: T,
    pub(crate) span: Span,
}

/// The keys allowed at the top of a dialplan file.
pub(crate) const FILE_KEYS: &[&str] = &["settings", "schedules", "agents", "routes"];
/// The keys of `[settings]`.
pub(crate) const SETTINGS_KEYS: &[&str] = &["timezone"];
/// The keys of a `[schedules.NAME]` table.
pub(crate) const SCHEDULE_KEYS: &[&str] = &["timezone", "hours", "holidays", "dates"];
/// The keys of a `[[routes]]` table.
pub(crate) const ROUTE_KEYS: &[&str] = &[
    "name", "to", "from", "when", "unless", "agent", "transfer", "reject", "reason", "message",
];
/// The keys of a route's `message` table.
pub(crate) const MESSAGE_KEYS: &[&str] = &["text", "audio", "voice", "model", "transfer"];
/// The keys of an `[agents.NAME]` table.
pub(crate) const AGENT_KEYS: &[&str] = &[
    "instructions",
    "instructions_file",
    "greeting",
    "voice",
    "model",
    "language",
    "transcription_model",
    "vad",
    "tools",
    "calendar",
    "transfers",
    "max_duration",
    "dtmf",
    "endpoints",
    "endpoint",
    "on_model_failure",
    "idle_prompt_secs",
    "idle_hangup_secs",
    "echo_gate",
];
/// The keys of an agent's `on_model_failure` table.
pub(crate) const FAILURE_KEYS: &[&str] = &["action", "audio", "max_message_secs"];
/// The keys of an agent's `vad` table.
pub(crate) const VAD_KEYS: &[&str] = &["threshold", "prefix_padding_ms", "silence_duration_ms"];
/// The keys of a `to`/`from` pattern table.
pub(crate) const PATTERN_KEYS: &[&str] = &["exact", "prefix", "regex"];

/// One dialplan file, as written.
#[derive(Debug, Default)]
pub(crate) struct RawFile {
    pub(crate) settings: Option<RawSettings>,
    pub(crate) schedules: Vec<RawSchedule>,
    pub(crate) agents: Vec<RawAgent>,
    pub(crate) routes: Vec<RawRoute>,
}

/// `[settings]`.
#[derive(Debug)]
pub(crate) struct RawSettings {
    pub(crate) span: Span,
    pub(crate) timezone: Option<Sp<String>>,
}

/// `[schedules.NAME]`.
#[derive(Debug)]
pub(crate) struct RawSchedule {
    pub(crate) name: Sp<String>,
    pub(crate) timezone: Option<Sp<String>>,
    pub(crate) hours: Vec<Sp<String>>,
    pub(crate) holidays: Vec<Sp<String>>,
    pub(crate) dates: Vec<Sp<String>>,
}

/// How a number pattern was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatternKind {
    /// A plain string: `*`, `123*` or `123`.
    Shorthand,
    /// `{ exact = "…" }`.
    Exact,
    /// `{ prefix = "…" }`.
    Prefix,
    /// `{ regex = "…" }`.
    Regex,
}

/// One `to`/`from` pattern.
#[derive(Debug, Clone)]
pub(crate) struct RawPattern {
    pub(crate) kind: PatternKind,
    pub(crate) text: Sp<String>,
}

/// A route's `message` (a string is shorthand for `{ text = "…" }`).
#[derive(Debug, Default)]
pub(crate) struct RawMessage {
    pub(crate) text: Option<Sp<String>>,
    pub(crate) audio: Option<Sp<String>>,
    pub(crate) voice: Option<Sp<String>>,
    pub(crate) model: Option<Sp<String>>,
    pub(crate) transfer: Option<Sp<String>>,
    /// How many unknown keys the message table has (already reported).
    pub(crate) unknown_keys: usize,
}

/// `[[routes]]`.
#[derive(Debug)]
pub(crate) struct RawRoute {
    /// Span of the route's table (its `[[routes]]` header).
    pub(crate) span: Span,
    /// 1-based position of the route in its file.
    pub(crate) index: usize,
    /// How many unknown keys the route has (already reported).
    pub(crate) unknown_keys: usize,
    pub(crate) name: Option<Sp<String>>,
    pub(crate) to: Option<Sp<Vec<RawPattern>>>,
    pub(crate) from: Option<Sp<Vec<RawPattern>>>,
    pub(crate) when: Vec<Sp<String>>,
    pub(crate) unless: Vec<Sp<String>>,
    pub(crate) agent: Option<Sp<String>>,
    pub(crate) transfer: Option<Sp<String>>,
    pub(crate) reject: Option<Sp<i64>>,
    pub(crate) reason: Option<Sp<String>>,
    pub(crate) message: Option<Sp<RawMessage>>,
}

/// `max_duration`: seconds, or a text like `"15m"`.
#[derive(Debug, Clone)]
pub(crate) enum RawDuration {
    Seconds(i64),
    Text(String),
}

/// An agent's `vad` table.
#[derive(Debug, Default)]
pub(crate) struct RawVad {
    pub(crate) threshold: Option<Sp<f64>>,
    pub(crate) prefix_padding_ms: Option<Sp<i64>>,
    pub(crate) silence_duration_ms: Option<Sp<i64>>,
}

/// `[agents.NAME]`.
#[derive(Debug)]
pub(crate) struct RawAgent {
    pub(crate) name: Sp<String>,
    /// Span of the agent's table (its header).
    pub(crate) span: Span,
    pub(crate) instructions: Option<Sp<String>>,
    pub(crate) instructions_file: Option<Sp<String>>,
    pub(crate) greeting: Option<Sp<String>>,
    pub(crate) voice: Option<Sp<String>>,
    pub(crate) model: Option<Sp<String>>,
    pub(crate) language: Option<Sp<String>>,
    pub(crate) transcription_model: Option<Sp<String>>,
    pub(crate) vad: RawVad,
    pub(crate) tools: Option<Sp<Vec<Sp<String>>>>,
    pub(crate) calendar: Option<Sp<String>>,
    pub(crate) transfers: Vec<(Sp<String>, Sp<String>)>,
    pub(crate) max_duration: Option<Sp<RawDuration>>,
    pub(crate) dtmf: Vec<(Sp<String>, Sp<String>)>,
    /// `endpoints = [...]` (or `endpoint = "..."`): names of `[[realtime.endpoints]]`.
    pub(crate) endpoints: Option<Sp<Vec<Sp<String>>>>,
    /// Set when both `endpoint` and `endpoints` are written (already reported).
    pub(crate) endpoints_twice: bool,
    pub(crate) on_model_failure: Option<Sp<RawFailure>>,
    pub(crate) idle_prompt_secs: Option<Sp<i64>>,
    pub(crate) idle_hangup_secs: Option<Sp<i64>>,
    pub(crate) echo_gate: Option<Sp<bool>>,
}

/// An agent's `on_model_failure` (a string is shorthand for `{ action = "…" }`).
#[derive(Debug, Default)]
pub(crate) struct RawFailure {
    pub(crate) action: Option<Sp<String>>,
    pub(crate) audio: Option<Sp<String>>,
    pub(crate) max_message_secs: Option<Sp<i64>>,
}

/// Parses one file. `None` when its TOML syntax is broken (every syntax error is reported).
pub(crate) fn parse(file: &Path, text: &str, errors: &mut Vec<Error>) -> Option<RawFile> {
    let (doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in syntax {
            let offset = e.span().map_or(0, |s| s.start);
            errors.push(
                Error::at(
                    file,
                    text,
                    offset,
                    format!("invalid TOML: {}", e.message().trim()),
                )
                .with_hint(Some("see docs/dialplans.md for the file format".to_owned())),
            );
        }
        return None;
    }
    let mut w = Walker { file, text, errors };
    Some(w.file_table(doc.get_ref()))
}

struct Walker<'a> {
    file: &'a Path,
    text: &'a str,
    errors: &'a mut Vec<Error>,
}

type Entry<'t, 'i> = (
    &'t Spanned<std::borrow::Cow<'i, str>>,
    &'t Spanned<DeValue<'i>>,
);

fn entries<'t, 'i>(table: &'t DeTable<'i>) -> impl Iterator<Item = Entry<'t, 'i>> {
    table.iter()
}

fn get<'t, 'i>(table: &'t DeTable<'i>, key: &str) -> Option<&'t Spanned<DeValue<'i>>> {
    entries(table)
        .find(|(k, _)| k.get_ref() == key)
        .map(|(_, v)| v)
}

/// "a string", "an integer", … for messages.
fn a_type(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date/time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Where a key that is unknown in one table belongs instead, for the hint.
fn misplaced(key: &str, here: &str) -> Option<String> {
    let home = if VAD_KEYS.contains(&key) {
        "an agent's `vad` table ([agents.NAME.vad])"
    } else if AGENT_KEYS.contains(&key) && here != "agent" {
        "an agent profile ([agents.NAME]); routes name it with `agent = \"NAME\"`"
    } else if ROUTE_KEYS.contains(&key) && here != "route" {
        "a route ([[routes]])"
    } else if SCHEDULE_KEYS.contains(&key) && here != "schedule" {
        "a schedule ([schedules.NAME]); routes use it with `when`/`unless`"
    } else {
        return None;
    };
    Some(format!("`{key}` belongs in {home}"))
}

impl Walker<'_> {
    fn error(&mut self, span: &Span, message: impl Into<String>, hint: Option<String>) {
        self.errors
            .push(Error::at(self.file, self.text, span.start, message).with_hint(hint));
    }

    /// Reports every key of `table` that is not in `allowed`; returns how many there were.
    fn check_keys(
        &mut self,
        table: &DeTable<'_>,
        allowed: &[&str],
        kind: &str,
        what: &str,
    ) -> usize {
        let mut unknown = 0;
        for (k, _) in entries(table) {
            let key = k.get_ref().as_ref();
            if allowed.contains(&key) {
                continue;
            }
            let hint = match hint::closest(key, allowed.iter().copied()) {
                Some(c) => Some(format!("did you mean `{c}`?")),
                None => misplaced(key, kind).or_else(|| {
                    Some(format!(
                        "allowed keys: {}",
                        allowed
                            .iter()
                            .map(|a| format!("`{a}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }),
            };
            self.error(&k.span(), format!("unknown key `{key}` in {what}"), hint);
            unknown += 1;
        }
        unknown
    }

    fn wrong_type(&mut self, v: &Spanned<DeValue<'_>>, key: &str, what: &str, expected: &str) {
        self.error(
            &v.span(),
            format!(
                "`{key}` in {what} must be {expected}, not {}",
                a_type(v.get_ref())
            ),
            None,
        );
    }

    fn string(&mut self, t: &DeTable<'_>, key: &str, what: &str) -> Option<Sp<String>> {
        let v = get(t, key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(Sp {
                value: s.to_string(),
                span: v.span(),
            }),
            _ => {
                self.wrong_type(v, key, what, "a string");
                None
            }
        }
    }

    fn boolean(&mut self, t: &DeTable<'_>, key: &str, what: &str) -> Option<Sp<bool>> {
        let v = get(t, key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(Sp {
                value: *b,
                span: v.span(),
            }),
            _ => {
                self.wrong_type(v, key, what, "true or false");
                None
            }
        }
    }

    fn integer(&mut self, t: &DeTable<'_>, key: &str, what: &str) -> Option<Sp<i64>> {
        let v = get(t, key)?;
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(Sp {
                    value: n,
                    span: v.span(),
                }),
                Err(_) => {
                    self.error(
                        &v.span(),
                        format!("`{key}` in {what} is out of range"),
                        None,
                    );
                    None
                }
            },
            _ => {
                self.wrong_type(v, key, what, "an integer");
                None
            }
        }
    }

    fn number(&mut self, t: &DeTable<'_>, key: &str, what: &str) -> Option<Sp<f64>> {
        let v = get(t, key)?;
        let n = match v.get_ref() {
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n as f64),
            _ => {
                self.wrong_type(v, key, what, "a number");
                return None;
            }
        };
        match n {
            Some(value) if value.is_finite() => Some(Sp {
                value,
                span: v.span(),
            }),
            _ => {
                self.error(
                    &v.span(),
                    format!("`{key}` in {what} must be a finite number"),
                    None,
                );
                None
            }
        }
    }

    /// A string or an array of strings (TOML dates are accepted as strings when `dates` is set).
    fn strings(
        &mut self,
        t: &DeTable<'_>,
        key: &str,
        what: &str,
        dates: bool,
    ) -> Option<Sp<Vec<Sp<String>>>> {
        let v = get(t, key)?;
        let expected = if dates {
            "a date string or an array of them"
        } else {
            "a string or an array of strings"
        };
        let one = |w: &mut Self, item: &Spanned<DeValue<'_>>| -> Option<Sp<String>> {
            match item.get_ref() {
                DeValue::String(s) => Some(Sp {
                    value: s.to_string(),
                    span: item.span(),
                }),
                DeValue::Datetime(d) if dates && d.time.is_none() && d.offset.is_none() => {
                    Some(Sp {
                        value: d.to_string(),
                        span: item.span(),
                    })
                }
                _ => {
                    w.wrong_type(item, key, what, expected);
                    None
                }
            }
        };
        let items = match v.get_ref() {
            DeValue::Array(a) => a.iter().filter_map(|item| one(self, item)).collect(),
            _ => one(self, v).into_iter().collect(),
        };
        Some(Sp {
            value: items,
            span: v.span(),
        })
    }

    /// A sub-table, or `None` (reported) when the key holds something else.
    fn table<'t, 'i>(
        &mut self,
        t: &'t DeTable<'i>,
        key: &str,
        what: &str,
    ) -> Option<(&'t DeTable<'i>, Span)> {
        let v = get(t, key)?;
        match v.get_ref() {
            DeValue::Table(sub) => Some((sub, v.span())),
            _ => {
                self.wrong_type(v, key, what, "a table");
                None
            }
        }
    }

    fn file_table(&mut self, doc: &DeTable<'_>) -> RawFile {
        self.check_keys(doc, FILE_KEYS, "file", "the file (top level)");
        let mut raw = RawFile::default();
        if let Some((t, span)) = self.table(doc, "settings", "the file") {
            self.check_keys(t, SETTINGS_KEYS, "settings", "[settings]");
            raw.settings = Some(RawSettings {
                span,
                timezone: self.string(t, "timezone", "[settings]"),
            });
        }
        if let Some((t, _)) = self.table(doc, "schedules", "the file") {
            for (name, v) in entries(t) {
                let name = Sp {
                    value: name.get_ref().to_string(),
                    span: name.span(),
                };
                let what = format!("schedule `{}`", name.value);
                match v.get_ref() {
                    DeValue::Table(s) => raw.schedules.push(self.schedule(name, s, &what)),
                    _ => self.error(
                        &v.span(),
                        format!("{what} must be a table, not {}", a_type(v.get_ref())),
                        Some(format!(
                            "write it as [schedules.{}] with `hours`, `holidays` or `dates`",
                            name.value
                        )),
                    ),
                }
            }
        }
        if let Some((t, _)) = self.table(doc, "agents", "the file") {
            for (name, v) in entries(t) {
                let name = Sp {
                    value: name.get_ref().to_string(),
                    span: name.span(),
                };
                let what = format!("agent `{}`", name.value);
                match v.get_ref() {
                    DeValue::Table(a) => raw.agents.push(self.agent(name, v.span(), a, &what)),
                    _ => self.error(
                        &v.span(),
                        format!("{what} must be a table, not {}", a_type(v.get_ref())),
                        Some(format!(
                            "write it as [agents.{}] with `instructions`, `voice`, …",
                            name.value
                        )),
                    ),
                }
            }
        }
        if let Some(v) = get(doc, "routes") {
            match v.get_ref() {
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        match item.get_ref() {
                            DeValue::Table(r) => raw.routes.push(self.route(i + 1, item.span(), r)),
                            _ => self.error(
                                &item.span(),
                                format!(
                                    "route {} must be a table, not {}",
                                    i + 1,
                                    a_type(item.get_ref())
                                ),
                                Some("write each route as a [[routes]] section".to_owned()),
                            ),
                        }
                    }
                }
                _ => self.error(
                    &v.span(),
                    format!(
                        "`routes` must be an array of tables, not {}",
                        a_type(v.get_ref())
                    ),
                    Some("write each route as a [[routes]] section (two brackets)".to_owned()),
                ),
            }
        }
        raw
    }

    fn schedule(&mut self, name: Sp<String>, t: &DeTable<'_>, what: &str) -> RawSchedule {
        self.check_keys(t, SCHEDULE_KEYS, "schedule", what);
        RawSchedule {
            timezone: self.string(t, "timezone", what),
            hours: self
                .strings(t, "hours", what, false)
                .map(|s| s.value)
                .unwrap_or_default(),
            holidays: self
                .strings(t, "holidays", what, true)
                .map(|s| s.value)
                .unwrap_or_default(),
            dates: self
                .strings(t, "dates", what, true)
                .map(|s| s.value)
                .unwrap_or_default(),
            name,
        }
    }

    fn patterns(&mut self, t: &DeTable<'_>, key: &str, what: &str) -> Option<Sp<Vec<RawPattern>>> {
        let v = get(t, key)?;
        let mut out = Vec::new();
        match v.get_ref() {
            DeValue::Array(items) => {
                if items.is_empty() {
                    self.error(
                        &v.span(),
                        format!(
                            "`{key}` in {what} is an empty list, so the route could never match"
                        ),
                        Some(format!(
                            "remove `{key}` to match every number, or list at least one"
                        )),
                    );
                }
                for item in items.iter() {
                    if let Some(p) = self.pattern(item, key, what) {
                        out.push(p);
                    }
                }
            }
            _ => out.extend(self.pattern(v, key, what)),
        }
        Some(Sp {
            value: out,
            span: v.span(),
        })
    }

    fn pattern(&mut self, v: &Spanned<DeValue<'_>>, key: &str, what: &str) -> Option<RawPattern> {
        match v.get_ref() {
            DeValue::String(s) => Some(RawPattern {
                kind: PatternKind::Shorthand,
                text: Sp {
                    value: s.to_string(),
                    span: v.span(),
                },
            }),
            DeValue::Table(t) => {
                let inner = format!("a `{key}` pattern of {what}");
                self.check_keys(t, PATTERN_KEYS, "pattern", &inner);
                let mut found: Vec<RawPattern> = Vec::new();
                for (k, kind) in [
                    ("exact", PatternKind::Exact),
                    ("prefix", PatternKind::Prefix),
                    ("regex", PatternKind::Regex),
                ] {
                    if let Some(text) = self.string(t, k, &inner) {
                        found.push(RawPattern { kind, text });
                    }
                }
                if found.len() != 1 {
                    if found.is_empty()
                        && entries(t).all(|(k, _)| !PATTERN_KEYS.contains(&k.get_ref().as_ref()))
                    {
                        self.error(
                            &v.span(),
                            format!("{inner} needs one of `exact`, `prefix` or `regex`"),
                            Some(format!("e.g. {key} = {{ regex = '^\\+1555\\d{{4}}$' }}")),
                        );
                    } else if found.len() > 1 {
                        self.error(
                            &v.span(),
                            format!("{inner} has more than one of `exact`, `prefix` and `regex`"),
                            Some(format!("write a list to match several: {key} = [{{ prefix = \"…\" }}, {{ regex = \"…\" }}]")),
                        );
                    }
                    return None;
                }
                found.pop()
            }
            other => {
                self.error(
                    &v.span(),
                    format!(
                        "`{key}` in {what} must be a number pattern (a string or a table), not {}",
                        a_type(other)
                    ),
                    Some(format!(
                        "quote numbers: {key} = \"+15550100\"; or {key} = {{ regex = \"…\" }}"
                    )),
                );
                None
            }
        }
    }

    fn route(&mut self, index: usize, span: Span, t: &DeTable<'_>) -> RawRoute {
        let name = self.string(t, "name", &format!("route {index}"));
        let what = match &name {
            Some(n) => format!("route `{}`", n.value),
            None => format!("route {index}"),
        };
        let unknown_keys = self.check_keys(t, ROUTE_KEYS, "route", &what);
        let message = get(t, "message").and_then(|v| match v.get_ref() {
            DeValue::String(s) => Some(Sp {
                value: RawMessage {
                    text: Some(Sp {
                        value: s.to_string(),
                        span: v.span(),
                    }),
                    ..RawMessage::default()
                },
                span: v.span(),
            }),
            DeValue::Table(m) => {
                let inner = format!("the message of {what}");
                let unknown_keys = self.check_keys(m, MESSAGE_KEYS, "message", &inner);
                Some(Sp {
                    value: RawMessage {
                        unknown_keys,
                        text: self.string(m, "text", &inner),
                        audio: self.string(m, "audio", &inner),
                        voice: self.string(m, "voice", &inner),
                        model: self.string(m, "model", &inner),
                        transfer: self.string(m, "transfer", &inner),
                    },
                    span: v.span(),
                })
            }
            _ => {
                self.wrong_type(v, "message", &what, "a string or a table");
                None
            }
        });
        RawRoute {
            span,
            index,
            unknown_keys,
            to: self.patterns(t, "to", &what),
            from: self.patterns(t, "from", &what),
            when: self
                .strings(t, "when", &what, false)
                .map(|s| s.value)
                .unwrap_or_default(),
            unless: self
                .strings(t, "unless", &what, false)
                .map(|s| s.value)
                .unwrap_or_default(),
            agent: self.string(t, "agent", &what),
            transfer: self.string(t, "transfer", &what),
            reject: self.integer(t, "reject", &what),
            reason: self.string(t, "reason", &what),
            message,
            name,
        }
    }

    fn agent(&mut self, name: Sp<String>, span: Span, t: &DeTable<'_>, what: &str) -> RawAgent {
        self.check_keys(t, AGENT_KEYS, "agent", what);
        let mut vad = RawVad::default();
        if let Some((v, _)) = self.table(t, "vad", what) {
            let inner = format!("the vad table of {what}");
            self.check_keys(v, VAD_KEYS, "vad", &inner);
            vad = RawVad {
                threshold: self.number(v, "threshold", &inner),
                prefix_padding_ms: self.integer(v, "prefix_padding_ms", &inner),
                silence_duration_ms: self.integer(v, "silence_duration_ms", &inner),
            };
        }
        let mut transfers = Vec::new();
        if let Some((tt, _)) = self.table(t, "transfers", what) {
            let inner = format!("the transfers of {what}");
            for (k, _) in entries(tt) {
                if let Some(uri) = self.string(tt, k.get_ref(), &inner) {
                    transfers.push((
                        Sp {
                            value: k.get_ref().to_string(),
                            span: k.span(),
                        },
                        uri,
                    ));
                }
            }
        }
        let mut dtmf = Vec::new();
        if let Some((dt, _)) = self.table(t, "dtmf", what) {
            let inner = format!("the dtmf map of {what}");
            for (k, _) in entries(dt) {
                if let Some(action) = self.string(dt, k.get_ref(), &inner) {
                    dtmf.push((
                        Sp {
                            value: k.get_ref().to_string(),
                            span: k.span(),
                        },
                        action,
                    ));
                }
            }
        }
        let max_duration = get(t, "max_duration").and_then(|v| match v.get_ref() {
            DeValue::String(s) => Some(Sp {
                value: RawDuration::Text(s.to_string()),
                span: v.span(),
            }),
            DeValue::Integer(_) => self.integer(t, "max_duration", what).map(|n| Sp {
                value: RawDuration::Seconds(n.value),
                span: n.span,
            }),
            _ => {
                self.wrong_type(
                    v,
                    "max_duration",
                    what,
                    "a duration like \"15m\" or a number of seconds",
                );
                None
            }
        });
        let on_model_failure = get(t, "on_model_failure").and_then(|v| match v.get_ref() {
            DeValue::String(a) => Some(Sp {
                value: RawFailure {
                    action: Some(Sp {
                        value: a.to_string(),
                        span: v.span(),
                    }),
                    ..RawFailure::default()
                },
                span: v.span(),
            }),
            DeValue::Table(f) => {
                let inner = format!("the on_model_failure of {what}");
                self.check_keys(f, FAILURE_KEYS, "on_model_failure", &inner);
                Some(Sp {
                    value: RawFailure {
                        action: self.string(f, "action", &inner),
                        audio: self.string(f, "audio", &inner),
                        max_message_secs: self.integer(f, "max_message_secs", &inner),
                    },
                    span: v.span(),
                })
            }
            _ => {
                self.wrong_type(v, "on_model_failure", what, "a string or a table");
                None
            }
        });
        let endpoints = self.strings(t, "endpoints", what, false);
        let endpoint = self.strings(t, "endpoint", what, false);
        let endpoints_twice = endpoints.is_some() && endpoint.is_some();
        if let (true, Some(e)) = (endpoints_twice, &endpoint) {
            self.error(
                &e.span,
                format!("{what} has both `endpoint` and `endpoints`"),
                Some("keep one: endpoints = [\"first\", \"second\"]".to_owned()),
            );
        }
        RawAgent {
            span,
            endpoints: endpoints.or(endpoint),
            endpoints_twice,
            on_model_failure,
            idle_prompt_secs: self.integer(t, "idle_prompt_secs", what),
            idle_hangup_secs: self.integer(t, "idle_hangup_secs", what),
            instructions: self.string(t, "instructions", what),
            instructions_file: self.string(t, "instructions_file", what),
            greeting: self.string(t, "greeting", what),
            voice: self.string(t, "voice", what),
            model: self.string(t, "model", what),
            language: self.string(t, "language", what),
            transcription_model: self.string(t, "transcription_model", what),
            vad,
            tools: self.strings(t, "tools", what, false),
            calendar: self.string(t, "calendar", what),
            transfers,
            max_duration,
            dtmf,
            echo_gate: self.boolean(t, "echo_gate", what),
            name,
        }
    }
}

/// The span of the characters `range` (byte offsets into the *value*) of a string written at
/// `span`, when the source spells the value literally (no escapes); otherwise the whole string.
pub(crate) fn inner_span(text: &str, span: &Span, value: &str, range: Range<usize>) -> Span {
    let literal = text.get(span.clone()).unwrap_or("");
    let quoted = |q: char| {
        literal.len() == value.len() + 2 && literal.starts_with(q) && literal.ends_with(q)
    };
    if (quoted('"') || quoted('\'')) && literal.get(1..literal.len() - 1) == Some(value) {
        span.start + 1 + range.start..span.start + 1 + range.end
    } else {
        span.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn parse_str(text: &str) -> (Option<RawFile>, Vec<Error>) {
        let mut errors = Vec::new();
        let raw = parse(&PathBuf::from("t.toml"), text, &mut errors);
        (raw, errors)
    }

    fn brief(errors: &[Error]) -> Vec<String> {
        errors
            .iter()
            .map(|e| {
                format!(
                    "{}:{} {}",
                    e.line.unwrap_or(0),
                    e.column.unwrap_or(0),
                    e.message
                )
            })
            .collect()
    }

    #[test]
    fn every_unknown_key_of_a_file_is_reported_with_a_hint() {
        let (raw, errors) = parse_str(
            "[[routes]]\nto = \"*\"\nagnet = \"a\"\n\n[agents.a]\ninstructions = \"x\"\ngreting = \"hi\"\nthreshold = 0.4\n[agents.a.vad]\nthreshhold = 0.5\n",
        );
        assert!(raw.is_some());
        let mut got = brief(&errors);
        got.sort();
        assert_eq!(
            got,
            [
                "10:1 unknown key `threshhold` in the vad table of agent `a`",
                "3:1 unknown key `agnet` in route 1",
                "7:1 unknown key `greting` in agent `a`",
                "8:1 unknown key `threshold` in agent `a`",
            ]
        );
        let hint_of = |needle: &str| {
            errors
                .iter()
                .find(|e| e.message.contains(needle))
                .and_then(|e| e.hint.clone())
                .unwrap_or_default()
        };
        assert_eq!(hint_of("agnet"), "did you mean `agent`?");
        assert_eq!(hint_of("greting"), "did you mean `greeting`?");
        assert_eq!(
            hint_of("`threshold`"),
            "`threshold` belongs in an agent's `vad` table ([agents.NAME.vad])"
        );
    }

    #[test]
    fn wrong_types_are_reported_and_the_walk_goes_on() {
        let (raw, errors) = parse_str("[[routes]]\nto = 15550100\nagent = 3\nreject = \"486\"\n");
        let raw = raw.expect("syntax ok");
        assert_eq!(
            brief(&errors),
            [
                "2:6 `to` in route 1 must be a number pattern (a string or a table), not an integer",
                "3:9 `agent` in route 1 must be a string, not an integer",
                "4:10 `reject` in route 1 must be an integer, not a string",
            ]
        );
        assert_eq!(raw.routes.len(), 1);
    }

    #[test]
    fn syntax_errors_are_all_reported() {
        let (raw, errors) = parse_str("[[routes]\nto = \"*\nagent = \"a\"\n");
        assert!(raw.is_none());
        assert!(!errors.is_empty());
        assert!(
            errors.iter().all(|e| e.message.starts_with("invalid TOML")),
            "{errors:?}"
        );
        assert_eq!(errors[0].line, Some(1));
    }

    #[test]
    fn patterns_accept_strings_tables_and_lists() {
        let (raw, errors) = parse_str(
            "[[routes]]\nto = [\"100\", { prefix = \"+49\" }, { regex = '^1\\d+$' }]\nfrom = { exact = \"1\", regex = \"2\" }\nagent = \"a\"\n",
        );
        let raw = raw.expect("syntax ok");
        let to = raw.routes[0].to.as_ref().expect("to");
        let kinds: Vec<PatternKind> = to.value.iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            [
                PatternKind::Shorthand,
                PatternKind::Prefix,
                PatternKind::Regex
            ]
        );
        assert_eq!(to.value[2].text.value, "^1\\d+$");
        assert_eq!(brief(&errors), ["3:8 a `from` pattern of route 1 has more than one of `exact`, `prefix` and `regex`"]);
    }

    #[test]
    fn dates_may_be_toml_dates_or_strings() {
        let (raw, errors) = parse_str(
            "[schedules.s]\nholidays = [2026-12-25, \"12-26\"]\ndates = 2026-01-01T10:00:00\n",
        );
        let raw = raw.expect("syntax ok");
        let values: Vec<&str> = raw.schedules[0]
            .holidays
            .iter()
            .map(|d| d.value.as_str())
            .collect();
        assert_eq!(values, ["2026-12-25", "12-26"]);
        assert_eq!(brief(&errors), ["3:9 `dates` in schedule `s` must be a date string or an array of them, not a date/time"]);
    }

    #[test]
    fn routes_written_as_a_table_get_a_hint() {
        let (_, errors) = parse_str("[routes]\nto = \"*\"\n");
        assert_eq!(
            errors[0].message,
            "`routes` must be an array of tables, not a table"
        );
        assert_eq!(
            errors[0].hint.as_deref(),
            Some("write each route as a [[routes]] section (two brackets)")
        );
    }

    #[test]
    fn inner_span_points_into_literal_strings_only() {
        let text = "x = 'ab(c'\ny = \"a\\\\b\"\n";
        assert_eq!(inner_span(text, &(4..10), "ab(c", 2..3), 7..8);
        assert_eq!(
            inner_span(text, &(15..21), "a\\b", 1..2),
            15..21,
            "escaped: whole string"
        );
    }
}
