//! Scenario files: what the simulator says, turn by turn, and how fast it delivers it.
//!
//! Loading has two stages, as for every admin-edited file: the TOML is deserialised into raw
//! structs (unknown keys are errors), then compiled into a [`Scenario`] (templates parsed, audio
//! files read relative to the scenario file, every problem collected and reported with the
//! path). The format is documented in `docs/simulator.md`.
//!
//! Reading files happens only in [`Scenario::load`]; a compiled scenario is plain data used by
//! the sans-IO session core.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use super::audio::{self, AudioFormat, Clip};
use super::session::ToolOutput;
use super::voice;
use super::Error;
use crate::media::g711::Law;

/// Greeting spoken when the scenario has none.
const DEFAULT_GREETING: &str =
    "Hello, you have reached the frontdesk simulator. How can I help you today?";
/// Reply to every caller turn when the scenario has no turns at all.
const DEFAULT_REPLY: &str = "This is the simulator. I heard {heard_ms} milliseconds of audio.";
/// Reply when `idle_timeout_ms` fires.
const DEFAULT_IDLE_REPLY: &str = "Are you still there?";
/// Defaults of the delivery knobs.
const DEFAULT_MS_PER_CHAR: u32 = 65;
const DEFAULT_DELTA_BYTES: usize = 1234;
const DEFAULT_REALTIME_FACTOR: f64 = 5.0;
const DEFAULT_FIRST_AUDIO_DELAY_MS: u64 = 150;
/// Upper bounds keeping every deadline far from `Instant` overflow.
const MAX_FIRST_AUDIO_DELAY_MS: u64 = 60_000;
const MAX_SESSION_S: u64 = 7 * 24 * 3600;

/// A compiled scenario. Build one with [`Scenario::load`]; [`Scenario::default`] is the built-in
/// scenario (default greeting, a generic reply to every turn).
#[derive(Debug, Clone)]
pub struct Scenario {
    pub(crate) greeting: Speech,
    pub(crate) idle_reply: Speech,
    pub(crate) turns: Vec<Turn>,
    pub(crate) fallback: Option<Turn>,
    pub(crate) timing: Timing,
    /// Overrides the session cap (60 min GA, 30 min beta).
    pub(crate) max_session: Option<Duration>,
    /// How new sessions are treated (`[[sessions]]`): refused or slow to start.
    pub(crate) sessions: Vec<SessionRule>,
    /// Misbehaviour on demand (`[[fault]]`), in file order.
    pub(crate) faults: Vec<Fault>,
}

/// Misbehaviour toward new sessions, for failover tests: one `[[sessions]]` entry of a scenario,
/// or the `frontdesk sim --refuse-sessions` / `--delay-session-created-ms` flags.
///
/// Sessions are counted per simulator in the order their WebSocket upgrade requests arrive
/// (1-based; refused ones count too). A rule applies to sessions `first ..= first + count - 1`
/// whose upgrade arrives at least `after` after the simulator started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRule {
    /// First session (1-based) the rule applies to.
    pub first: u64,
    /// How many sessions from `first`; `None`: every later one.
    pub count: Option<u64>,
    /// Only upgrades at least this long after the simulator started.
    pub after: Duration,
    /// Answer the upgrade with this HTTP status (429 or 5xx) instead of opening the session.
    pub refuse: Option<u16>,
    /// Hold `session.created` (and everything the session would send) this long.
    pub delay_created: Duration,
}

impl SessionRule {
    /// A rule for every session: refuse with `refuse`, or delay `session.created` by `delay`.
    pub fn all(refuse: Option<u16>, delay_created: Duration) -> SessionRule {
        SessionRule {
            first: 1,
            count: None,
            after: Duration::ZERO,
            refuse,
            delay_created,
        }
    }

    /// Whether the rule applies to session `n` (1-based) arriving `since_start` after the
    /// simulator started.
    pub(crate) fn applies(&self, n: u64, since_start: Duration) -> bool {
        n >= self.first
            && self.count.is_none_or(|c| n < self.first.saturating_add(c))
            && since_start >= self.after
    }

    /// Checks a refusal status: 429 (rate limited) or 500..=599.
    pub fn check_status(status: u16) -> Result<u16, String> {
        if status == 429 || (500..=599).contains(&status) {
            Ok(status)
        } else {
            Err(format!(
                "{status} is not a refusal the simulator sends; use 429 or a 5xx status such as 503"
            ))
        }
    }
}

/// One `[[fault]]` entry: the simulator misbehaves on purpose (for tests of a client's recovery,
/// and for users who want to see it). See docs/simulator.md, "Faults".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// When it happens.
    pub when: FaultWhen,
    /// What happens.
    pub action: FaultAction,
    /// Which session of this simulator process it hits, numbered as for `[[sessions]]` (from 1,
    /// in the order the upgrade requests arrived); `None`: every session.
    pub session: Option<u64>,
}

/// When a [`Fault`] fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultWhen {
    /// This long after the session was created (`at_ms`).
    At(Duration),
    /// Right after the `response.done` of the response answering caller turn N (1-based,
    /// `after_turn`); for a turn with `call`, that is the response that makes the call, so the
    /// call is still in flight.
    AfterTurn(usize),
}

/// What a [`Fault`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Close the WebSocket with code 1011 (internal error), without any event first (GPT-Live:
    /// without `session.closed`): the service dropped the session.
    Close,
    /// Send `error` with type `server_error` (the service's "The server had an error while
    /// processing your request…"), then close with 1011.
    ServerError,
}

/// The WebSocket close code of a [`FaultAction`] (1011, internal error).
pub(crate) const FAULT_CLOSE_CODE: u16 = 1011;

/// The message of the service's `server_error` (realtime-protocol.md, error table).
pub(crate) const SERVER_ERROR_MESSAGE: &str = "The server had an error while processing your request. Sorry about that! You can retry your request, or contact us through our help center at help.openai.com if the error persists.";

/// The faults of one simulated session not fired yet (both dialects' session cores use it).
#[derive(Debug, Clone)]
pub(crate) struct FaultSchedule {
    faults: Vec<Fault>,
    created: Instant,
}

impl FaultSchedule {
    /// The earliest timed fault not fired yet.
    pub(crate) fn next_at(&self) -> Option<Instant> {
        self.faults
            .iter()
            .filter_map(|f| match f.when {
                FaultWhen::At(d) => Some(self.created + d),
                FaultWhen::AfterTurn(_) => None,
            })
            .min()
    }

    /// Takes the timed fault due at `now`, if any.
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<FaultAction> {
        let created = self.created;
        self.take(|w| matches!(w, FaultWhen::At(d) if created + d <= now))
    }

    /// Takes the fault that fires after caller turn `turn` (1-based), if any.
    pub(crate) fn take_after_turn(&mut self, turn: usize) -> Option<FaultAction> {
        self.take(|w| w == FaultWhen::AfterTurn(turn))
    }

    fn take(&mut self, due: impl Fn(FaultWhen) -> bool) -> Option<FaultAction> {
        let i = self.faults.iter().position(|f| due(f.when))?;
        let fault = self.faults.remove(i);
        tracing::info!(?fault, "scenario fault");
        Some(fault.action)
    }
}

/// The fields of the `error` event a [`FaultAction::ServerError`] sends (the session adds
/// `type` and `event_id`).
pub(crate) fn server_error_fields() -> Value {
    serde_json::json!({"error": {
        "type": "server_error",
        "code": null,
        "message": SERVER_ERROR_MESSAGE,
        "param": null,
    }})
}

impl Scenario {
    /// The faults that hit session number `session` (1-based) of this simulator, created at
    /// `now`.
    pub(crate) fn faults_for(&self, session: u64, now: Instant) -> FaultSchedule {
        FaultSchedule {
            faults: self
                .faults
                .iter()
                .filter(|f| f.session.is_none_or(|n| n == session))
                .copied()
                .collect(),
            created: now,
        }
    }

    /// The first `[[turn]]` (or the fallback, as the turn after the last) whose `call` is
    /// function `name`, 0-based.
    pub(crate) fn turn_calling(&self, name: &str) -> Option<usize> {
        let calls = |t: &Turn| t.call.as_ref().is_some_and(|c| c.name == name);
        self.turns.iter().position(calls).or_else(|| {
            self.fallback
                .as_ref()
                .filter(|t| calls(t))
                .map(|_| self.turns.len())
        })
    }

    /// Sets the session cap (`frontdesk sim --session-max-secs`), overriding `max_session_s`.
    pub fn set_max_session(&mut self, cap: Duration) {
        self.max_session =
            Some(cap.clamp(Duration::from_secs(1), Duration::from_secs(MAX_SESSION_S)));
    }
}

/// How responses are delivered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Timing {
    /// Synthesised speech pace.
    pub(crate) ms_per_char: u32,
    /// Size of one audio delta in G.711 bytes (8 per ms; PCM16 deltas carry the same duration).
    pub(crate) delta_bytes: usize,
    /// Audio is sent this many times faster than real time (`inf`: all at once).
    pub(crate) realtime_factor: f64,
    /// Delay between `response.created` and the first audio delta.
    pub(crate) first_audio_delay: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            ms_per_char: DEFAULT_MS_PER_CHAR,
            delta_bytes: DEFAULT_DELTA_BYTES,
            realtime_factor: DEFAULT_REALTIME_FACTOR,
            first_audio_delay: Duration::from_millis(DEFAULT_FIRST_AUDIO_DELAY_MS),
        }
    }
}

/// Something to say: a transcript template and optionally recorded audio replacing the
/// synthesised voice.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Speech {
    pub(crate) text: Template,
    pub(crate) clip: Option<Clip>,
}

/// [`Speech`] rendered in one output format.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rendered {
    /// The transcript.
    pub(crate) text: String,
    /// The audio in the output format.
    pub(crate) audio: Vec<u8>,
    /// Transcript pieces at byte offsets of `audio`, in order.
    pub(crate) marks: Vec<(usize, String)>,
}

impl Speech {
    pub(crate) fn text(text: &str) -> Speech {
        Speech {
            text: Template::literal(text),
            clip: None,
        }
    }

    /// Renders the transcript with `ctx` and the audio in `format`: the clip when there is one,
    /// else the synthesised voice at `ms_per_char`.
    pub(crate) fn render(
        &self,
        ctx: &TemplateCtx<'_>,
        format: AudioFormat,
        ms_per_char: u32,
    ) -> Rendered {
        let text = self.text.render(ctx);
        let (audio, marks) = match &self.clip {
            Some(clip) => {
                let audio = clip.render(format);
                let marks = voice::spread_marks(&text, audio.len());
                (audio, marks)
            }
            None => {
                let u = voice::synthesize(&text, ms_per_char);
                let per_sample = format.bytes_per_ms() / 8;
                let marks = u
                    .marks
                    .into_iter()
                    .map(|(o, p)| (o * per_sample, p))
                    .collect();
                (format.encode_8k(&u.samples), marks)
            }
        };
        Rendered { text, audio, marks }
    }
}

/// One caller turn's answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Turn {
    /// Spoken answer (after the tool output when `call` is set).
    pub(crate) say: Speech,
    /// A function call made before answering.
    pub(crate) call: Option<Call>,
    /// Spoken in the same response, before the function call.
    pub(crate) preamble: Option<Speech>,
    /// Transcript of the caller's turn, sent when input transcription is enabled.
    pub(crate) heard: Option<String>,
}

/// A function call the simulated model makes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call {
    pub(crate) name: String,
    /// What is sent as `arguments`.
    pub(crate) arguments: Arguments,
}

/// A call's `arguments`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arguments {
    /// Given as a string: sent verbatim, no placeholders.
    Verbatim(String),
    /// Given as a table: serialised to JSON, every string value is a template.
    Json(ArgValue),
}

/// A JSON value whose strings are templates.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ArgValue {
    /// A number, boolean (or a TOML float that is not a JSON number: `null`).
    Plain(Value),
    /// A string, rendered with [`Template::render_value`].
    Text(Template),
    List(Vec<ArgValue>),
    Table(Vec<(String, ArgValue)>),
}

/// Rendered call arguments.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RenderedArgs {
    /// The JSON text sent as `arguments`.
    pub(crate) json: String,
    /// Placeholders that could not be resolved and were left in place as written.
    pub(crate) unresolved: Vec<String>,
}

impl Arguments {
    /// Renders the arguments against `ctx`. Never fails: an unresolvable placeholder is left in
    /// the text as written and listed in [`RenderedArgs::unresolved`].
    pub(crate) fn render(&self, ctx: &TemplateCtx<'_>) -> RenderedArgs {
        match self {
            Arguments::Verbatim(s) => RenderedArgs {
                json: s.clone(),
                unresolved: Vec::new(),
            },
            Arguments::Json(v) => {
                let mut unresolved = Vec::new();
                let json = v.render(ctx, &mut unresolved).to_string();
                RenderedArgs { json, unresolved }
            }
        }
    }
}

impl ArgValue {
    fn render(&self, ctx: &TemplateCtx<'_>, unresolved: &mut Vec<String>) -> Value {
        match self {
            ArgValue::Plain(v) => v.clone(),
            ArgValue::Text(t) => t.render_value(ctx, unresolved),
            ArgValue::List(items) => {
                Value::Array(items.iter().map(|i| i.render(ctx, unresolved)).collect())
            }
            ArgValue::Table(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.render(ctx, unresolved)))
                    .collect(),
            ),
        }
    }
}

/// A reply text with `{…}` placeholders. See `docs/simulator.md`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    /// `{output…}` or `{outputs.<tool>…}`.
    Output(OutputRef),
    /// `{turn}`: 1-based number of the caller turn.
    Turn,
    /// `{heard_ms}`: duration of the caller's turn.
    HeardMs,
}

/// A reference into a tool output: `{output.a[0].b}` or `{outputs.check_availability.a}`.
#[derive(Debug, Clone, PartialEq)]
struct OutputRef {
    /// `None`: the current output (`{output…}`); `Some(name)`: the last output of a call to
    /// `name` (`{outputs.name…}`).
    tool: Option<String>,
    /// Path into the output parsed as JSON; empty means the whole output.
    path: Vec<Seg>,
    /// The placeholder as written, braces included (left in place when unresolved).
    source: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Values available to a template.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TemplateCtx<'a> {
    /// The output `{output…}` reads: in a `say`, the output answering the turn's call; in call
    /// arguments, the most recent output of the session.
    pub(crate) output: Option<&'a str>,
    /// Every tool output of the session, oldest first (for `{outputs.<tool>…}`).
    pub(crate) outputs: &'a [ToolOutput],
    pub(crate) turn: usize,
    pub(crate) heard_ms: u64,
}

impl OutputRef {
    /// The output text this placeholder reads, if there is one.
    fn text<'a>(&self, ctx: &TemplateCtx<'a>) -> Option<&'a str> {
        match &self.tool {
            None => ctx.output,
            Some(name) => ctx
                .outputs
                .iter()
                .rev()
                .find(|o| o.name.as_deref() == Some(name.as_str()))
                .map(|o| o.output.as_str()),
        }
    }

    /// The JSON value at the path; `None` if there is no output, it is not JSON, or the path
    /// does not exist.
    fn value(&self, ctx: &TemplateCtx<'_>) -> Option<Value> {
        let parsed: Value = serde_json::from_str(self.text(ctx)?).ok()?;
        let mut node = &parsed;
        for seg in &self.path {
            node = match seg {
                Seg::Key(k) => node.get(k.as_str())?,
                Seg::Index(i) => node.get(*i)?,
            };
        }
        Some(node.clone())
    }

    /// As text in a sentence: the whole output verbatim, or the value at the path made
    /// speakable. `None` when unresolved.
    fn render_text(&self, ctx: &TemplateCtx<'_>) -> Option<String> {
        if self.path.is_empty() {
            self.text(ctx).map(str::to_string)
        } else {
            self.value(ctx).map(|v| speakable(&v))
        }
    }

    /// As a whole JSON value: the value at the path as-is; for the whole output, the output
    /// parsed as JSON, or its text if it is not JSON. `None` when unresolved.
    fn render_json(&self, ctx: &TemplateCtx<'_>) -> Option<Value> {
        if self.path.is_empty() {
            let text = self.text(ctx)?;
            Some(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string())))
        } else {
            self.value(ctx)
        }
    }
}

impl Template {
    pub(crate) fn literal(text: &str) -> Template {
        Template {
            parts: vec![Part::Lit(text.to_string())],
        }
    }

    /// Parses `text`; `{{` and `}}` are literal braces.
    fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '}' => return Err("unmatched '}' (write '}}' for a literal brace)".into()),
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(format!("unclosed placeholder '{{{name}'")),
                        }
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Self::placeholder(name.trim(), &format!("{{{name}}}"))?);
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts })
    }

    /// Parses the placeholder `name` (trimmed), written as `source`.
    fn placeholder(name: &str, source: &str) -> Result<Part, String> {
        match name {
            "turn" => return Ok(Part::Turn),
            "heard_ms" => return Ok(Part::HeardMs),
            _ => {}
        }
        let (tool, mut rest) = if let Some(r) = name.strip_prefix("outputs") {
            let r = r.strip_prefix('.').ok_or_else(|| {
                format!(
                    "'{{{name}}}' needs a tool name: {{outputs.<tool>}}, {{outputs.<tool>.field}}"
                )
            })?;
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let tool = &r[..end];
            if tool.is_empty() {
                return Err(format!("empty tool name in '{{{name}}}'"));
            }
            (Some(tool.to_string()), &r[end..])
        } else if let Some(r) = name.strip_prefix("output") {
            (None, r)
        } else {
            return Err(format!(
                "unknown placeholder '{{{name}}}' (known: {{output}}, {{output.field}}, {{output.list[0]}}, {{outputs.<tool>.field}}, {{turn}}, {{heard_ms}})"
            ));
        };
        let mut path = Vec::new();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                let key = &r[..end];
                if key.is_empty() {
                    return Err(format!("empty field name in '{{{name}}}'"));
                }
                path.push(Seg::Key(key.to_string()));
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r
                    .find(']')
                    .ok_or_else(|| format!("missing ']' in '{{{name}}}'"))?;
                let index = r[..end]
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| format!("bad index '{}' in '{{{name}}}'", &r[..end]))?;
                path.push(Seg::Index(index));
                rest = &r[end + 1..];
            } else {
                return Err(format!("unknown placeholder '{{{name}}}'"));
            }
        }
        Ok(Part::Output(OutputRef {
            tool,
            path,
            source: source.to_string(),
        }))
    }

    fn uses_output(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Output(_)))
    }

    /// Renders the template as speech. Unresolved output placeholders render as nothing.
    pub(crate) fn render(&self, ctx: &TemplateCtx<'_>) -> String {
        self.interpolate(ctx, |_| String::new())
    }

    /// Renders the template as one JSON value of call arguments. A template that is exactly
    /// one output placeholder yields the referenced JSON value as-is (a number stays a
    /// number); anything else is interpolated as text, like [`Template::render`]. An
    /// unresolved placeholder is left in place as written and its text added to `unresolved`.
    pub(crate) fn render_value(
        &self,
        ctx: &TemplateCtx<'_>,
        unresolved: &mut Vec<String>,
    ) -> Value {
        if let [Part::Output(r)] = self.parts.as_slice() {
            return r.render_json(ctx).unwrap_or_else(|| {
                unresolved.push(r.source.clone());
                Value::String(r.source.clone())
            });
        }
        Value::String(self.interpolate(ctx, |r| {
            unresolved.push(r.source.clone());
            r.source.clone()
        }))
    }

    /// Renders as text; `missing` gives the text of an unresolved output placeholder.
    fn interpolate(
        &self,
        ctx: &TemplateCtx<'_>,
        mut missing: impl FnMut(&OutputRef) -> String,
    ) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Turn => out.push_str(&ctx.turn.to_string()),
                Part::HeardMs => out.push_str(&ctx.heard_ms.to_string()),
                Part::Output(r) => match r.render_text(ctx) {
                    Some(text) => out.push_str(&text),
                    None => out.push_str(&missing(r)),
                },
            }
        }
        out
    }
}

/// How a JSON value reads in a sentence: strings bare, lists of scalars joined with ", ",
/// anything else as compact JSON.
fn speakable(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            items.iter().map(speakable).collect::<Vec<_>>().join(", ")
        }
        other => other.to_string(),
    }
}

impl Default for Scenario {
    fn default() -> Scenario {
        Scenario {
            greeting: Speech::text(DEFAULT_GREETING),
            idle_reply: Speech::text(DEFAULT_IDLE_REPLY),
            turns: Vec::new(),
            fallback: None,
            timing: Timing::default(),
            max_session: None,
            sessions: Vec::new(),
            faults: Vec::new(),
        }
    }
}

impl Scenario {
    /// Adds a rule for new sessions (after the scenario's own `[[sessions]]`).
    pub fn add_session_rule(&mut self, rule: SessionRule) {
        self.sessions.push(rule);
    }

    /// What to do with session `n` (1-based) arriving `since_start` after the simulator started:
    /// the refusal status of the first rule that refuses it, and the longest delay of
    /// `session.created` among the rules that apply.
    pub(crate) fn session_fate(&self, n: u64, since_start: Duration) -> (Option<u16>, Duration) {
        let applying = || self.sessions.iter().filter(|r| r.applies(n, since_start));
        let refuse = applying().find_map(|r| r.refuse);
        let delay = applying()
            .map(|r| r.delay_created)
            .max()
            .unwrap_or_default();
        (refuse, delay)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    greeting: Option<String>,
    greeting_audio_file: Option<String>,
    idle_reply: Option<String>,
    speech_ms_per_char: Option<u32>,
    delta_bytes: Option<usize>,
    delta_ms: Option<u64>,
    realtime_factor: Option<f64>,
    first_audio_delay_ms: Option<u64>,
    max_session_s: Option<u64>,
    #[serde(default, rename = "turn")]
    turns: Vec<RawTurn>,
    fallback: Option<RawTurn>,
    #[serde(default)]
    sessions: Vec<RawSessionRule>,
    #[serde(default, rename = "fault")]
    faults: Vec<RawFault>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSessionRule {
    first: Option<u64>,
    count: Option<u64>,
    after_s: Option<f64>,
    refuse: Option<u16>,
    delay_created_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    at_ms: Option<u64>,
    after_turn: Option<usize>,
    action: String,
    session: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTurn {
    say: Option<String>,
    audio_file: Option<String>,
    call: Option<RawCall>,
    preamble: Option<String>,
    heard: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCall {
    name: String,
    arguments: Option<toml::Value>,
}

fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// Collects problems while compiling.
struct Compiler<'a> {
    dir: &'a Path,
    problems: Vec<String>,
}

impl Compiler<'_> {
    fn template(&mut self, what: &str, text: &str, allow_output: bool) -> Template {
        match Template::parse(text) {
            Ok(t) if t.uses_output() && !allow_output => {
                self.problems.push(format!(
                    "{what}: {{output…}} and {{outputs.…}} placeholders are only allowed in `call.arguments` and in the `say` of a turn with a `call`"
                ));
                t
            }
            Ok(t) => t,
            Err(e) => {
                self.problems.push(format!("{what}: {e}"));
                Template::literal(text)
            }
        }
    }

    fn clip(&mut self, what: &str, file: &str) -> Option<Clip> {
        let path: PathBuf = self.dir.join(file);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) => {
                self.problems.push(format!(
                    "{what}: cannot read audio file {}: {e}",
                    path.display()
                ));
                return None;
            }
        };
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let clip = match ext.as_str() {
            "ul" | "ulaw" | "mulaw" | "pcmu" | "u8" => Ok(Clip::G711 {
                law: Law::Mu,
                bytes: data,
            }),
            "al" | "alaw" | "pcma" => Ok(Clip::G711 {
                law: Law::A,
                bytes: data,
            }),
            "wav" => audio::parse_wav(&data),
            _ => Err(
                "unknown audio file type; use .ul/.ulaw (raw µ-law), .al/.alaw (raw A-law) or .wav"
                    .to_string(),
            ),
        };
        match clip {
            Ok(c) => Some(c),
            Err(e) => {
                self.problems
                    .push(format!("{what}: {}: {e}", path.display()));
                None
            }
        }
    }

    /// Compiles call arguments: every string, at any depth, is a template (`what` names it in
    /// problems, e.g. `turn 2.call.arguments.slots[0].start`).
    fn arg_value(&mut self, what: &str, v: &toml::Value) -> ArgValue {
        match v {
            toml::Value::String(s) => ArgValue::Text(self.template(what, s, true)),
            toml::Value::Array(items) => ArgValue::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.arg_value(&format!("{what}[{i}]"), item))
                    .collect(),
            ),
            toml::Value::Table(t) => ArgValue::Table(
                t.iter()
                    .map(|(k, item)| (k.clone(), self.arg_value(&format!("{what}.{k}"), item)))
                    .collect(),
            ),
            other => ArgValue::Plain(toml_to_json(other)),
        }
    }

    fn fault(&mut self, what: &str, raw: &RawFault) -> Option<Fault> {
        let when = match (raw.at_ms, raw.after_turn) {
            (Some(ms), None) if ms <= MAX_SESSION_S * 1000 => {
                FaultWhen::At(Duration::from_millis(ms))
            }
            (Some(_), None) => {
                self.problems.push(format!(
                    "{what}: at_ms must be at most {}",
                    MAX_SESSION_S * 1000
                ));
                return None;
            }
            (None, Some(n)) if n >= 1 => FaultWhen::AfterTurn(n),
            (None, Some(_)) => {
                self.problems
                    .push(format!("{what}: after_turn counts from 1"));
                return None;
            }
            _ => {
                self.problems
                    .push(format!("{what}: set exactly one of at_ms and after_turn"));
                return None;
            }
        };
        let action = match raw.action.as_str() {
            "close" => FaultAction::Close,
            "server_error" => FaultAction::ServerError,
            other => {
                self.problems.push(format!(
                    "{what}: unknown action '{other}' (close, server_error)"
                ));
                return None;
            }
        };
        let session = match raw.session {
            None => Some(1),
            Some(0) => None,
            Some(n) => Some(n),
        };
        Some(Fault {
            when,
            action,
            session,
        })
    }

    fn turn(&mut self, what: &str, raw: &RawTurn) -> Turn {
        if raw.say.is_none() && raw.audio_file.is_none() {
            self.problems
                .push(format!("{what}: needs `say` or `audio_file`"));
        }
        if raw.preamble.is_some() && raw.call.is_none() {
            self.problems
                .push(format!("{what}: `preamble` needs a `call`"));
        }
        let has_call = raw.call.is_some();
        let text = raw.say.as_deref().unwrap_or("");
        let say = Speech {
            text: self.template(&format!("{what}.say"), text, has_call),
            clip: raw
                .audio_file
                .as_deref()
                .and_then(|f| self.clip(&format!("{what}.audio_file"), f)),
        };
        let preamble = raw.preamble.as_deref().map(|p| Speech {
            text: self.template(&format!("{what}.preamble"), p, false),
            clip: None,
        });
        let call = raw.call.as_ref().map(|c| {
            if c.name.trim().is_empty() {
                self.problems
                    .push(format!("{what}.call: `name` must not be empty"));
            }
            let arguments = match &c.arguments {
                None => Arguments::Verbatim("{}".to_string()),
                Some(toml::Value::String(s)) => Arguments::Verbatim(s.clone()),
                Some(v @ toml::Value::Table(_)) => {
                    Arguments::Json(self.arg_value(&format!("{what}.call.arguments"), v))
                }
                Some(_) => {
                    self.problems.push(format!(
                        "{what}.call.arguments: must be a table or a JSON string"
                    ));
                    Arguments::Verbatim("{}".to_string())
                }
            };
            Call {
                name: c.name.clone(),
                arguments,
            }
        });
        Turn {
            say,
            call,
            preamble,
            heard: raw.heard.clone(),
        }
    }
}

impl Scenario {
    /// Loads and compiles a TOML scenario file; audio files are resolved relative to it.
    ///
    /// # Errors
    /// [`Error::Read`] if the file cannot be read; [`Error::Scenario`] listing every problem
    /// (TOML syntax, unknown keys, bad templates, unreadable audio files).
    ///
    /// # Example
    /// ```no_run
    /// # use frontdesk::realtime::sim::Scenario;
    /// let scenario = Scenario::load(std::path::Path::new("tests/scenarios/basic.toml"))?;
    /// # Ok::<(), frontdesk::realtime::sim::Error>(())
    /// ```
    pub fn load(path: &Path) -> Result<Scenario, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Scenario::parse(&text, path)
    }

    /// Compiles scenario text as if read from `path`.
    pub(crate) fn parse(text: &str, path: &Path) -> Result<Scenario, Error> {
        let fail = |problems: Vec<String>| Error::Scenario {
            path: path.to_path_buf(),
            problems,
        };
        let raw: RawScenario =
            toml::from_str(text).map_err(|e| fail(vec![e.to_string().trim_end().to_string()]))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut c = Compiler {
            dir,
            problems: Vec::new(),
        };
        let mut scenario = Scenario::default();
        if raw.greeting.is_some() || raw.greeting_audio_file.is_some() {
            scenario.greeting = Speech {
                text: c.template("greeting", raw.greeting.as_deref().unwrap_or(""), false),
                clip: raw
                    .greeting_audio_file
                    .as_deref()
                    .and_then(|f| c.clip("greeting_audio_file", f)),
            };
        }
        if let Some(idle) = &raw.idle_reply {
            scenario.idle_reply = Speech {
                text: c.template("idle_reply", idle, false),
                clip: None,
            };
        }
        scenario.turns = raw
            .turns
            .iter()
            .enumerate()
            .map(|(i, t)| c.turn(&format!("turn {}", i + 1), t))
            .collect();
        scenario.fallback = raw.fallback.as_ref().map(|t| c.turn("fallback", t));
        let t = &mut scenario.timing;
        if let Some(v) = raw.speech_ms_per_char {
            if v == 0 || v > 1000 {
                c.problems
                    .push("speech_ms_per_char: must be 1..=1000".into());
            }
            t.ms_per_char = v.clamp(1, 1000);
        }
        if let Some(v) = raw.delta_bytes {
            if v == 0 || v > 1_000_000 {
                c.problems.push("delta_bytes: must be 1..=1000000".into());
            }
            t.delta_bytes = v.clamp(1, 1_000_000);
        }
        if let Some(ms) = raw.delta_ms {
            if raw.delta_bytes.is_some() {
                c.problems
                    .push("set either delta_bytes or delta_ms, not both".into());
            }
            if ms == 0 || ms > 100_000 {
                c.problems.push("delta_ms: must be 1..=100000".into());
            }
            t.delta_bytes = (ms.clamp(1, 100_000) * 8) as usize;
        }
        if let Some(v) = raw.realtime_factor {
            if v.is_nan() || v <= 0.0 {
                c.problems
                    .push("realtime_factor: must be > 0 (inf sends everything at once)".into());
            } else {
                t.realtime_factor = v;
            }
        }
        if let Some(v) = raw.first_audio_delay_ms {
            if v > MAX_FIRST_AUDIO_DELAY_MS {
                c.problems.push(format!(
                    "first_audio_delay_ms: must be at most {MAX_FIRST_AUDIO_DELAY_MS}"
                ));
            }
            t.first_audio_delay = Duration::from_millis(v.min(MAX_FIRST_AUDIO_DELAY_MS));
        }
        if let Some(v) = raw.max_session_s {
            if v == 0 || v > MAX_SESSION_S {
                c.problems
                    .push(format!("max_session_s: must be 1..={MAX_SESSION_S}"));
            }
            scenario.max_session = Some(Duration::from_secs(v.clamp(1, MAX_SESSION_S)));
        }
        for (i, r) in raw.sessions.iter().enumerate() {
            let what = format!("sessions entry {}", i + 1);
            if let Some(status) = r.refuse {
                if let Err(e) = SessionRule::check_status(status) {
                    c.problems.push(format!("{what}: refuse: {e}"));
                }
            }
            if r.refuse.is_none() && r.delay_created_ms.is_none() {
                c.problems.push(format!(
                    "{what}: says nothing to do; add refuse = 503 (or 429) or delay_created_ms = N"
                ));
            }
            if r.first == Some(0) || r.count == Some(0) {
                c.problems
                    .push(format!("{what}: first and count start at 1"));
            }
            let after = r.after_s.unwrap_or(0.0);
            if !(0.0..=MAX_SESSION_S as f64).contains(&after) {
                c.problems
                    .push(format!("{what}: after_s must be 0..={MAX_SESSION_S}"));
            }
            let delay = r.delay_created_ms.unwrap_or(0);
            if delay > MAX_FIRST_AUDIO_DELAY_MS {
                c.problems.push(format!(
                    "{what}: delay_created_ms must be at most {MAX_FIRST_AUDIO_DELAY_MS}"
                ));
            }
            scenario.sessions.push(SessionRule {
                first: r.first.unwrap_or(1).max(1),
                count: r.count,
                after: Duration::from_secs_f64(after.clamp(0.0, MAX_SESSION_S as f64)),
                refuse: r.refuse,
                delay_created: Duration::from_millis(delay.min(MAX_FIRST_AUDIO_DELAY_MS)),
            });
        }
        for (i, f) in raw.faults.iter().enumerate() {
            if let Some(fault) = c.fault(&format!("fault {}", i + 1), f) {
                scenario.faults.push(fault);
            }
        }
        if c.problems.is_empty() {
            Ok(scenario)
        } else {
            Err(fail(c.problems))
        }
    }

    /// The answer to caller turn `index` (0-based): that turn, else `fallback`, else the last
    /// turn, else the built-in reply.
    pub(crate) fn turn(&self, index: usize) -> Turn {
        self.turns
            .get(index)
            .or(self.fallback.as_ref())
            .or(self.turns.last())
            .cloned()
            .unwrap_or_else(|| Turn {
                say: Speech {
                    text: default_reply(),
                    clip: None,
                },
                call: None,
                preamble: None,
                heard: None,
            })
    }
}

fn default_reply() -> Template {
    // The built-in template is known to parse.
    Template::parse(DEFAULT_REPLY).unwrap_or_else(|_| Template::literal(DEFAULT_REPLY))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, Error> {
        Scenario::parse(text, Path::new("/nonexistent/scenario.toml"))
    }

    #[test]
    fn parses_full_scenario() {
        let s = parse(
            r#"
            greeting = "Hi there."
            speech_ms_per_char = 50
            delta_bytes = 1000
            realtime_factor = 4.0
            first_audio_delay_ms = 0
            max_session_s = 60
            [[turn]]
            say = "We are open."
            heard = "When are you open?"
            [[turn]]
            preamble = "Let me check."
            call = { name = "check_availability", arguments = { service = "cleaning", n = 2 } }
            say = "I have {output.slots[0]} or {output.slots}. Raw: {output}"
            [fallback]
            say = "Turn {turn}, {heard_ms} ms."
            "#,
        )
        .expect("valid scenario");
        assert_eq!(s.turns.len(), 2);
        assert_eq!(s.timing.delta_bytes, 1000);
        assert_eq!(s.max_session, Some(Duration::from_secs(60)));
        let call = s.turns[1].call.as_ref().expect("call");
        assert_eq!(
            call.arguments.render(&TemplateCtx::default()).json,
            r#"{"n":2,"service":"cleaning"}"#
        );
        let out = r#"{"slots":["9:00","10:30"]}"#;
        let ctx = TemplateCtx {
            output: Some(out),
            turn: 2,
            ..TemplateCtx::default()
        };
        assert_eq!(
            s.turns[1].say.text.render(&ctx),
            format!("I have 9:00 or 9:00, 10:30. Raw: {out}")
        );
        let fb = s.turn(7);
        let ctx = TemplateCtx {
            turn: 8,
            heard_ms: 1234,
            ..TemplateCtx::default()
        };
        assert_eq!(fb.say.text.render(&ctx), "Turn 8, 1234 ms.");
    }

    #[test]
    fn unknown_keys_and_bad_templates_are_reported_with_the_path() {
        let err = parse("greting = \"x\"").expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/scenario.toml"), "{msg}");
        assert!(msg.contains("greting"), "{msg}");

        let err = parse("[[turn]]\nsay = \"x\"\ncolour = 1").expect_err("unknown turn key");
        assert!(err.to_string().contains("colour"), "{err}");

        let err = parse(
            "[[turn]]\nsay = \"{output.x}\"\n[[turn]]\nsay = \"{bogus}\"\n[[turn]]\npreamble = \"a\"\nsay = \"b\"",
        )
        .expect_err("bad templates");
        let Error::Scenario { problems, .. } = err else {
            panic!("wrong error {err:?}")
        };
        assert_eq!(problems.len(), 3, "{problems:?}");

        let err = parse("[[turn]]\naudio_file = \"missing.ul\"").expect_err("missing audio");
        assert!(err.to_string().contains("missing.ul"), "{err}");
    }

    #[test]
    fn call_arguments_are_templates_checked_at_load() {
        let err = parse(
            r#"
            greeting = "Hi {outputs.check_availability.slots}"
            [[turn]]
            preamble = "Checking {outputs.check_availability}"
            call = { name = "book", arguments = { a = "{bogus}", b = { c = ["ok", "{output.slots[x]}"] }, d = "{outputs}", e = "{outputs.}", f = "{output" } }
            say = "{outputs.check_availability.slots[0].start}"
            "#,
        )
        .expect_err("bad argument templates");
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/scenario.toml"), "{msg}");
        let Error::Scenario { problems, .. } = err else {
            panic!("wrong error {err:?}")
        };
        for expected in [
            "greeting: ",
            "turn 1.preamble: ",
            "turn 1.call.arguments.a: unknown placeholder '{bogus}'",
            "turn 1.call.arguments.b.c[1]: bad index 'x'",
            "turn 1.call.arguments.d: '{outputs}' needs a tool name",
            "turn 1.call.arguments.e: empty tool name",
            "turn 1.call.arguments.f: unclosed placeholder",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(expected)),
                "no problem starting with {expected:?} in {problems:?}"
            );
        }
        assert_eq!(problems.len(), 7, "{problems:?}");
    }

    #[test]
    fn call_arguments_render_values_text_and_unresolved_placeholders() {
        let s = parse(
            r#"
            [[turn]]
            call = { name = "book", arguments = { n = 2, when = 2026-12-01T09:00:00, s = "{ output.slots[0].start }", t = "at {output.slots[0].start}", v = "{output.slots[0]}", w = "{outputs.check.slots}", x = "{output}", raw = "{{output}}" } }
            say = "ok"
            [[turn]]
            call = { name = "raw", arguments = '{"start": "{output.slots[0].start}"}' }
            say = "ok"
            "#,
        )
        .expect("valid scenario");
        let args = &s.turns[0].call.as_ref().expect("call").arguments;
        let render = |output: Option<&str>, outputs: &[ToolOutput]| {
            let ctx = TemplateCtx {
                output,
                outputs,
                turn: 1,
                heard_ms: 0,
            };
            let r = args.render(&ctx);
            let v: Value = serde_json::from_str(&r.json).expect("JSON arguments");
            (v, r.unresolved)
        };
        let (v, unresolved) = render(None, &[]);
        assert_eq!(
            v,
            serde_json::json!({"n": 2, "when": "2026-12-01T09:00:00", "s": "{ output.slots[0].start }",
                "t": "at {output.slots[0].start}", "v": "{output.slots[0]}", "w": "{outputs.check.slots}",
                "x": "{output}", "raw": "{output}"})
        );
        assert_eq!(
            unresolved,
            [
                "{ output.slots[0].start }",
                "{output.slots[0].start}",
                "{output.slots[0]}",
                "{outputs.check.slots}",
                "{output}"
            ]
        );
        let out = r#"{"slots":[{"start":"09:00","n":[1,2]}]}"#;
        let history = [ToolOutput {
            call_id: "call_1".into(),
            name: Some("check".into()),
            output: out.into(),
        }];
        let (v, unresolved) = render(Some(out), &history);
        assert!(unresolved.is_empty(), "{unresolved:?}");
        assert_eq!(
            v,
            serde_json::json!({"n": 2, "when": "2026-12-01T09:00:00", "s": "09:00", "t": "at 09:00",
                "v": {"start": "09:00", "n": [1, 2]}, "w": [{"start": "09:00", "n": [1, 2]}],
                "x": {"slots": [{"start": "09:00", "n": [1, 2]}]}, "raw": "{output}"})
        );
        // A JSON string is sent verbatim, placeholders and all.
        let raw = &s.turns[1].call.as_ref().expect("call").arguments;
        let r = raw.render(&TemplateCtx {
            output: Some(out),
            ..TemplateCtx::default()
        });
        assert_eq!(r.json, r#"{"start": "{output.slots[0].start}"}"#);
        assert!(r.unresolved.is_empty());
    }

    #[test]
    fn turn_selection_falls_back() {
        let s = parse("[[turn]]\nsay = \"one\"\n[[turn]]\nsay = \"two\"").expect("valid");
        let ctx = TemplateCtx::default();
        assert_eq!(s.turn(0).say.text.render(&ctx), "one");
        assert_eq!(s.turn(5).say.text.render(&ctx), "two");
        let d = Scenario::default();
        let ctx = TemplateCtx {
            heard_ms: 900,
            ..TemplateCtx::default()
        };
        assert!(d.turn(0).say.text.render(&ctx).contains("900 milliseconds"));
    }

    #[test]
    fn templates_escape_braces_and_render_missing_fields_as_nothing() {
        let t = Template::parse("{{literal}} {output.a.b} {output[1]}!").expect("template");
        let ctx = TemplateCtx {
            output: Some(r#"[{"x":1},{"y":true}]"#),
            ..TemplateCtx::default()
        };
        assert_eq!(t.render(&ctx), r#"{literal}  {"y":true}!"#);
        let ctx = TemplateCtx {
            output: Some("not json"),
            ..TemplateCtx::default()
        };
        assert_eq!(t.render(&ctx), "{literal}  !");
        assert!(Template::parse("{output").is_err());
        assert!(Template::parse("a } b").is_err());
        assert!(Template::parse("{output[x]}").is_err());
    }

    #[test]
    fn example_scenarios_load() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scenarios"));
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("tests/scenarios exists") {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 2, "example scenarios found: {n}");
    }

    #[test]
    fn documented_scenarios_load_and_the_chaining_example_is_booking_toml() {
        let root = env!("CARGO_MANIFEST_DIR");
        let doc = std::fs::read_to_string(Path::new(root).join("docs/simulator.md"))
            .expect("docs/simulator.md");
        let blocks: Vec<&str> = doc
            .split("```toml\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .collect();
        assert!(
            blocks.len() >= 2,
            "toml examples in the docs: {}",
            blocks.len()
        );
        for b in &blocks {
            parse(b).unwrap_or_else(|e| panic!("documented scenario: {e}\n{b}"));
        }
        let file = std::fs::read_to_string(Path::new(root).join("tests/scenarios/booking.toml"))
            .expect("booking.toml");
        let body: String = file
            .lines()
            .skip_while(|l| l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            blocks.iter().any(|b| *b == body),
            "docs/simulator.md shows tests/scenarios/booking.toml (after its header comment)"
        );
    }

    #[test]
    fn delta_ms_and_delta_bytes_are_exclusive() {
        let s = parse("delta_ms = 150").expect("delta_ms");
        assert_eq!(s.timing.delta_bytes, 1200);
        assert!(parse("delta_ms = 150\ndelta_bytes = 1000").is_err());
        assert!(parse("realtime_factor = 0.0").is_err());
        assert!(parse("realtime_factor = inf").is_ok());
    }

    #[test]
    fn loads_audio_files_relative_to_the_scenario() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("hello.ul"), [0x10u8; 800]).expect("write clip");
        let path = dir.path().join("s.toml");
        std::fs::write(
            &path,
            "greeting_audio_file = \"hello.ul\"\ngreeting = \"Hello\"\n",
        )
        .expect("write scenario");
        let s = Scenario::load(&path).expect("scenario with audio");
        assert_eq!(
            s.greeting.clip,
            Some(Clip::G711 {
                law: Law::Mu,
                bytes: vec![0x10; 800]
            })
        );
        let err = Scenario::load(&dir.path().join("nope.toml")).expect_err("missing file");
        assert!(matches!(err, Error::Read { .. }));
    }
}
