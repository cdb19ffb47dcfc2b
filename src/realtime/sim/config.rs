//! Session configuration in both dialects: defaults, validation and merging of `session.update`,
//! validation of `response.create` overrides, and the typed view the simulator acts on.
//!
//! The effective session is kept as JSON in the dialect's own shape, so `session.created` and
//! `session.updated` echo exactly what a client set (plus defaults). Updates are checked against
//! a static schema first — unknown keys, wrong types and bad enum values are rejected with the
//! real service's error codes (`unknown_parameter`, `invalid_type`, `invalid_value`,
//! `missing_required_parameter`) and nothing is applied — then merged: objects key by key,
//! everything else (formats, `turn_detection`, `tools`, …) replaced whole. A partial
//! `turn_detection` gets the server defaults for the knobs it leaves out.
//!
//! Pure data: no I/O, no clock.

use serde_json::{json, Map, Value};

use super::audio::AudioFormat;
use super::vad::VadParams;

/// The wire dialects: the one [`crate::realtime::protocol::Dialect`] frontdesk's client speaks.
pub use crate::realtime::protocol::Dialect;

/// A rejected client event: becomes an `error` event of type `invalid_request_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientError {
    pub(crate) code: Option<&'static str>,
    pub(crate) message: String,
    pub(crate) param: Option<String>,
}

impl ClientError {
    pub(crate) fn new(code: Option<&'static str>, message: String, param: Option<&str>) -> Self {
        ClientError {
            code,
            message,
            param: param.map(str::to_string),
        }
    }

    pub(crate) fn unknown_parameter(path: &str) -> Self {
        Self::new(
            Some("unknown_parameter"),
            format!("Unknown parameter: '{path}'."),
            Some(path),
        )
    }

    pub(crate) fn missing(path: &str) -> Self {
        Self::new(
            Some("missing_required_parameter"),
            format!("Missing required parameter: '{path}'."),
            Some(path),
        )
    }

    pub(crate) fn invalid_type(path: &str, expected: &str, got: &Value) -> Self {
        Self::new(
            Some("invalid_type"),
            format!(
                "Invalid type for '{path}': expected {expected}, but got {} instead.",
                type_name(got)
            ),
            Some(path),
        )
    }

    pub(crate) fn invalid_value(path: &str, got: &str, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("'{s}'")).collect();
        let list = match list.len() {
            0 => String::new(),
            1 => list[0].clone(),
            2 => format!("{} and {}", list[0], list[1]),
            n => format!("{}, and {}", list[..n - 1].join(", "), list[n - 1]),
        };
        Self::new(
            Some("invalid_value"),
            format!("Invalid value: '{got}'. Supported values are: {list}."),
            Some(path),
        )
    }

    fn out_of_range(path: &str, v: &Value, min: &str, max: &str) -> Self {
        Self::new(
            Some("invalid_value"),
            format!(
                "Invalid '{path}': expected a value between {min} and {max}, but got {v} instead."
            ),
            Some(path),
        )
    }
}

/// The string at `key` of a client event, required (`path` names it in the error).
pub(crate) fn req_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a str, ClientError> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(ClientError::missing(path)),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(ClientError::invalid_type(path, "a string", other)),
    }
}

/// Refuses a key of `obj` not in `allowed` with `unknown_parameter` (its path: `prefix` + key).
pub(crate) fn only_keys(
    obj: &Map<String, Value>,
    allowed: &[&str],
    prefix: &str,
) -> Result<(), ClientError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ClientError::unknown_parameter(&format!("{prefix}{k}"))),
        None => Ok(()),
    }
}

/// The audio bytes of an append event (Realtime `input_audio_buffer.append`, GPT-Live
/// `session.input_audio.append`: `type`, `event_id`, base64 `audio`), or the service's error.
pub(crate) fn append_audio(obj: &Map<String, Value>) -> Result<Vec<u8>, ClientError> {
    use base64::Engine as _;
    only_keys(obj, &["type", "event_id", "audio"], "")?;
    let audio = req_str(obj, "audio", "audio")?;
    base64::engine::general_purpose::STANDARD
        .decode(audio)
        .map_err(|_| {
            ClientError::new(
                Some("invalid_value"),
                "Invalid 'audio': expected base64-encoded audio bytes.".into(),
                Some("audio"),
            )
        })
}

/// How a JSON value's type is named in error messages.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a decimal",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A static schema node.
#[derive(Clone, Copy)]
pub(crate) enum S {
    /// An object with these keys (all optional); merged key by key.
    Obj(&'static [(&'static str, S)]),
    Str,
    Bool,
    Num(f64, f64),
    Int(i64, i64),
    /// An integer in range or the string `"inf"`.
    IntOrInf(i64, i64),
    OneOf(&'static [&'static str]),
    /// An array of strings from the set.
    ListOf(&'static [&'static str]),
    /// GA voice: a string or `{id}`.
    Voice,
    Nullable(&'static S),
    /// Validated as the inner schema, replaced whole on merge.
    Replace(&'static S),
    /// An object or null, not inspected.
    AnyObj,
    /// An array, not inspected.
    Array,
    /// Anything.
    Any,
}

const GA_FORMATS: &[&str] = &["audio/pcm", "audio/pcmu", "audio/pcma"];
const BETA_FORMATS: &[&str] = &["pcm16", "g711_ulaw", "g711_alaw"];
const MODALITIES: &[&str] = &["text", "audio"];
const VAD_TYPES: &[&str] = &["server_vad", "semantic_vad"];
const EAGERNESS: &[&str] = &["low", "medium", "high", "auto"];
const MS: S = S::Int(0, 3_600_000);

const GA_FORMAT: S = S::Replace(&S::Obj(&[
    ("type", S::OneOf(GA_FORMATS)),
    ("rate", S::Int(24_000, 24_000)),
]));

const GA_TURN_DETECTION: S = S::Nullable(&S::Replace(&S::Obj(&[
    ("type", S::OneOf(VAD_TYPES)),
    ("threshold", S::Num(0.0, 1.0)),
    ("prefix_padding_ms", MS),
    ("silence_duration_ms", MS),
    ("create_response", S::Bool),
    ("interrupt_response", S::Bool),
    ("idle_timeout_ms", S::Nullable(&MS)),
    ("eagerness", S::OneOf(EAGERNESS)),
])));

const BETA_TURN_DETECTION: S = S::Nullable(&S::Replace(&S::Obj(&[
    ("type", S::OneOf(VAD_TYPES)),
    ("threshold", S::Num(0.0, 1.0)),
    ("prefix_padding_ms", MS),
    ("silence_duration_ms", MS),
    ("create_response", S::Bool),
    ("interrupt_response", S::Bool),
    ("eagerness", S::OneOf(EAGERNESS)),
])));

const GA_SESSION: S = S::Obj(&[
    ("type", S::OneOf(&["realtime"])),
    ("model", S::Str),
    ("output_modalities", S::ListOf(MODALITIES)),
    ("instructions", S::Str),
    (
        "audio",
        S::Obj(&[
            (
                "input",
                S::Obj(&[
                    ("format", GA_FORMAT),
                    ("noise_reduction", S::AnyObj),
                    ("transcription", S::AnyObj),
                    ("turn_detection", GA_TURN_DETECTION),
                ]),
            ),
            (
                "output",
                S::Obj(&[
                    ("format", GA_FORMAT),
                    ("voice", S::Voice),
                    ("speed", S::Num(0.25, 1.5)),
                ]),
            ),
        ]),
    ),
    ("tools", S::Array),
    ("tool_choice", S::Any),
    ("max_output_tokens", S::IntOrInf(1, 4096)),
    ("tracing", S::Any),
    ("truncation", S::Any),
    ("prompt", S::AnyObj),
    (
        "include",
        S::Nullable(&S::ListOf(&["item.input_audio_transcription.logprobs"])),
    ),
    ("reasoning", S::AnyObj),
    ("parallel_tool_calls", S::Bool),
]);

const BETA_SESSION: S = S::Obj(&[
    ("model", S::Str),
    ("modalities", S::ListOf(MODALITIES)),
    ("instructions", S::Str),
    ("voice", S::Str),
    ("input_audio_format", S::OneOf(BETA_FORMATS)),
    ("output_audio_format", S::OneOf(BETA_FORMATS)),
    ("input_audio_transcription", S::AnyObj),
    ("input_audio_noise_reduction", S::AnyObj),
    ("turn_detection", BETA_TURN_DETECTION),
    ("tools", S::Array),
    ("tool_choice", S::Any),
    ("temperature", S::Num(0.6, 1.2)),
    ("max_response_output_tokens", S::IntOrInf(1, 4096)),
    ("speed", S::Num(0.25, 1.5)),
    ("tracing", S::Any),
]);

const GA_RESPONSE: S = S::Obj(&[
    ("output_modalities", S::ListOf(MODALITIES)),
    ("instructions", S::Str),
    (
        "audio",
        S::Obj(&[(
            "output",
            S::Obj(&[("format", GA_FORMAT), ("voice", S::Voice)]),
        )]),
    ),
    ("tools", S::Array),
    ("tool_choice", S::Any),
    ("max_output_tokens", S::IntOrInf(1, 4096)),
    ("conversation", S::Str),
    ("metadata", S::AnyObj),
    ("input", S::Array),
    ("prompt", S::AnyObj),
    ("reasoning", S::AnyObj),
    ("parallel_tool_calls", S::Bool),
]);

const BETA_RESPONSE: S = S::Obj(&[
    ("modalities", S::ListOf(MODALITIES)),
    ("instructions", S::Str),
    ("voice", S::Str),
    ("output_audio_format", S::OneOf(BETA_FORMATS)),
    ("tools", S::Array),
    ("tool_choice", S::Any),
    ("temperature", S::Num(0.6, 1.2)),
    ("max_response_output_tokens", S::IntOrInf(1, 4096)),
    ("conversation", S::Str),
    ("metadata", S::AnyObj),
    ("input", S::Array),
]);

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Checks `v` at `path` against `s`.
pub(crate) fn check(path: &str, v: &Value, s: S) -> Result<(), ClientError> {
    match s {
        S::Obj(fields) => {
            let Some(obj) = v.as_object() else {
                return Err(ClientError::invalid_type(path, "an object", v));
            };
            for (k, child) in obj {
                let p = join(path, k);
                let Some((_, fs)) = fields.iter().find(|(name, _)| name == k) else {
                    return Err(ClientError::unknown_parameter(&p));
                };
                check(&p, child, *fs)?;
            }
            Ok(())
        }
        S::Str if v.is_string() => Ok(()),
        S::Str => Err(ClientError::invalid_type(path, "a string", v)),
        S::Bool if v.is_boolean() => Ok(()),
        S::Bool => Err(ClientError::invalid_type(path, "a boolean", v)),
        S::Num(min, max) => match v.as_f64() {
            Some(n) if n >= min && n <= max => Ok(()),
            Some(_) => Err(ClientError::out_of_range(
                path,
                v,
                &min.to_string(),
                &max.to_string(),
            )),
            None => Err(ClientError::invalid_type(path, "a decimal", v)),
        },
        S::Int(min, max) => match as_int(v) {
            Some(n) if n >= min && n <= max => Ok(()),
            Some(_) => Err(ClientError::out_of_range(
                path,
                v,
                &min.to_string(),
                &max.to_string(),
            )),
            None => Err(ClientError::invalid_type(path, "an integer", v)),
        },
        S::IntOrInf(min, max) => match (v.as_str(), as_int(v)) {
            (Some("inf"), _) => Ok(()),
            (Some(other), _) => Err(ClientError::invalid_value(path, other, &["inf"])),
            (None, Some(n)) if n >= min && n <= max => Ok(()),
            (None, Some(_)) => Err(ClientError::out_of_range(
                path,
                v,
                &min.to_string(),
                &max.to_string(),
            )),
            (None, None) => Err(ClientError::invalid_type(path, "an integer or 'inf'", v)),
        },
        S::OneOf(values) => match v.as_str() {
            Some(s) if values.contains(&s) => Ok(()),
            Some(s) => Err(ClientError::invalid_value(path, s, values)),
            None => Err(ClientError::invalid_type(path, "a string", v)),
        },
        S::ListOf(values) => {
            let Some(items) = v.as_array() else {
                return Err(ClientError::invalid_type(path, "an array", v));
            };
            for (i, item) in items.iter().enumerate() {
                check(&format!("{path}[{i}]"), item, S::OneOf(values))?;
            }
            Ok(())
        }
        S::Voice => match v {
            Value::String(_) => Ok(()),
            Value::Object(o) if o.get("id").is_some_and(Value::is_string) && o.len() == 1 => Ok(()),
            _ => Err(ClientError::invalid_type(
                path,
                "a string or an object with 'id'",
                v,
            )),
        },
        S::Nullable(_) if v.is_null() => Ok(()),
        S::Nullable(inner) | S::Replace(inner) => check(path, v, *inner),
        S::AnyObj if v.is_null() || v.is_object() => Ok(()),
        S::AnyObj => Err(ClientError::invalid_type(path, "an object", v)),
        S::Array if v.is_array() => Ok(()),
        S::Array => Err(ClientError::invalid_type(path, "an array", v)),
        S::Any => Ok(()),
    }
}

/// An integer, also accepting decimals with no fractional part (`500.0`).
pub(crate) fn as_int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

/// Merges a validated `update` into `target`.
fn merge(target: &mut Value, update: &Value, s: S) {
    match s {
        S::Obj(fields) => {
            let Some(upd) = update.as_object() else {
                *target = update.clone();
                return;
            };
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in upd {
                    let child = fields
                        .iter()
                        .find(|(n, _)| n == k)
                        .map_or(S::Any, |(_, c)| *c);
                    merge(t.entry(k.clone()).or_insert(Value::Null), v, child);
                }
            }
        }
        S::Nullable(inner) if !update.is_null() => merge(target, update, *inner),
        _ => *target = update.clone(),
    }
}

/// Server defaults of a `server_vad` / `semantic_vad` object in this dialect.
fn turn_detection_defaults(dialect: Dialect, kind: &str) -> Value {
    match (kind, dialect) {
        ("semantic_vad", _) => json!({
            "type": "semantic_vad", "eagerness": "auto",
            "create_response": true, "interrupt_response": true,
        }),
        (_, Dialect::Ga | Dialect::Live) => json!({
            "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
            "silence_duration_ms": 200, "idle_timeout_ms": null,
            "create_response": true, "interrupt_response": true,
        }),
        (_, Dialect::Beta) => json!({
            "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
            "silence_duration_ms": 200, "create_response": true, "interrupt_response": true,
        }),
    }
}

/// Checks the knobs that depend on `turn_detection.type` and fills in defaults.
fn normalize_turn_detection(
    dialect: Dialect,
    path: &str,
    td: &mut Value,
) -> Result<(), ClientError> {
    let Some(obj) = td.as_object_mut() else {
        return Ok(());
    };
    let kind = match obj.get("type").and_then(Value::as_str) {
        Some(k) => k.to_string(),
        None if dialect != Dialect::Beta => return Err(ClientError::missing(&join(path, "type"))),
        None => "server_vad".to_string(),
    };
    let allowed: &[&str] = if kind == "semantic_vad" {
        &["type", "eagerness", "create_response", "interrupt_response"]
    } else {
        &[
            "type",
            "threshold",
            "prefix_padding_ms",
            "silence_duration_ms",
            "create_response",
            "interrupt_response",
            "idle_timeout_ms",
        ]
    };
    if let Some(bad) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ClientError::unknown_parameter(&join(path, bad)));
    }
    if let Value::Object(defaults) = turn_detection_defaults(dialect, &kind) {
        for (k, v) in defaults {
            obj.entry(k).or_insert(v);
        }
    }
    Ok(())
}

/// Checks a GA format object and drops a `rate` given with a G.711 type.
fn normalize_ga_format(path: &str, format: &mut Value) -> Result<(), ClientError> {
    let Some(obj) = format.as_object_mut() else {
        return Ok(());
    };
    match obj.get("type").and_then(Value::as_str) {
        None => Err(ClientError::missing(&join(path, "type"))),
        Some("audio/pcm") => {
            obj.entry("rate").or_insert(json!(24_000));
            Ok(())
        }
        Some(_) => {
            obj.remove("rate");
            Ok(())
        }
    }
}

/// The `server_vad`-style behaviour the simulator runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TurnDetection {
    pub(crate) vad: VadParams,
    pub(crate) create_response: bool,
    pub(crate) interrupt_response: bool,
    pub(crate) idle_timeout_ms: Option<u64>,
}

/// The parts of the configuration the simulator acts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Effective {
    pub(crate) input: AudioFormat,
    pub(crate) output: AudioFormat,
    pub(crate) turn_detection: Option<TurnDetection>,
    pub(crate) text_only: bool,
    pub(crate) transcription: bool,
    pub(crate) max_output_tokens: Option<u64>,
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |node, k| node.get(*k))
}

fn max_tokens(v: Option<&Value>) -> Option<u64> {
    v.and_then(as_int).and_then(|n| u64::try_from(n).ok())
}

fn turn_detection_from(td: Option<&Value>) -> Option<TurnDetection> {
    let td = td.filter(|v| v.is_object())?;
    let flag = |k: &str| td.get(k).and_then(Value::as_bool).unwrap_or(true);
    let ms = |k: &str, d: u64| td.get(k).and_then(as_int).map_or(d, |n| n.max(0) as u64);
    let vad = if td.get("type").and_then(Value::as_str) == Some("semantic_vad") {
        // Energy stand-in for the semantic detector: eagerness sets how long a pause ends a turn.
        let silence = match td.get("eagerness").and_then(Value::as_str) {
            Some("high") => 300,
            Some("low") => 1000,
            _ => 600,
        };
        VadParams {
            threshold: 0.5,
            prefix_padding_ms: 300,
            silence_duration_ms: silence,
        }
    } else {
        VadParams {
            threshold: td.get("threshold").and_then(Value::as_f64).unwrap_or(0.5),
            prefix_padding_ms: ms("prefix_padding_ms", 300),
            silence_duration_ms: ms("silence_duration_ms", 200),
        }
    };
    Some(TurnDetection {
        vad,
        create_response: flag("create_response"),
        interrupt_response: flag("interrupt_response"),
        idle_timeout_ms: td
            .get("idle_timeout_ms")
            .and_then(as_int)
            .map(|n| n.max(0) as u64),
    })
}

/// The effective session of one connection.
#[derive(Debug, Clone)]
pub(crate) struct SessionConfig {
    dialect: Dialect,
    value: Value,
}

/// Default instructions reported in `session.created`.
const DEFAULT_INSTRUCTIONS: &str = "You are the frontdesk Realtime simulator. Replies come from a \
scenario file, not from a model; instructions are recorded but not followed.";

impl SessionConfig {
    /// The default session the real service reports in `session.created`.
    pub(crate) fn new(dialect: Dialect, id: &str, model: &str, expires_at: u64) -> SessionConfig {
        let value = match dialect {
            Dialect::Ga | Dialect::Live => json!({
                "type": "realtime",
                "object": "realtime.session",
                "id": id,
                "model": model,
                "output_modalities": ["audio"],
                "instructions": DEFAULT_INSTRUCTIONS,
                "tools": [],
                "tool_choice": "auto",
                "max_output_tokens": "inf",
                "tracing": null,
                "truncation": "auto",
                "prompt": null,
                "expires_at": expires_at,
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": 24_000},
                        "transcription": null,
                        "noise_reduction": null,
                        "turn_detection": turn_detection_defaults(Dialect::Ga, "server_vad"),
                    },
                    "output": {
                        "format": {"type": "audio/pcm", "rate": 24_000},
                        "voice": "marin",
                        "speed": 1.0,
                    },
                },
                "include": null,
            }),
            Dialect::Beta => json!({
                "id": id,
                "object": "realtime.session",
                "model": model,
                "expires_at": expires_at,
                "modalities": ["audio", "text"],
                "instructions": DEFAULT_INSTRUCTIONS,
                "voice": "alloy",
                "input_audio_format": "pcm16",
                "output_audio_format": "pcm16",
                "input_audio_transcription": null,
                "input_audio_noise_reduction": null,
                "turn_detection": turn_detection_defaults(Dialect::Beta, "server_vad"),
                "tools": [],
                "tool_choice": "auto",
                "temperature": 0.8,
                "max_response_output_tokens": "inf",
                "speed": 1.0,
                "tracing": null,
            }),
        };
        SessionConfig { dialect, value }
    }

    /// The effective session, as sent in `session.created` / `session.updated`.
    pub(crate) fn value(&self) -> &Value {
        &self.value
    }

    /// The configured voice.
    pub(crate) fn voice(&self) -> Value {
        let v = match self.dialect {
            Dialect::Ga | Dialect::Live => get(&self.value, &["audio", "output", "voice"]),
            Dialect::Beta => self.value.get("voice"),
        };
        v.cloned().unwrap_or(Value::Null)
    }

    /// Applies a `session.update` payload. Nothing changes on error.
    ///
    /// `voice_locked` is true once assistant audio exists (the voice can no longer change).
    pub(crate) fn update(
        &mut self,
        session: &Value,
        voice_locked: bool,
    ) -> Result<(), ClientError> {
        let schema = match self.dialect {
            Dialect::Ga | Dialect::Live => GA_SESSION,
            Dialect::Beta => BETA_SESSION,
        };
        check("session", session, schema)?;
        if self.dialect == Dialect::Ga && session.get("type").is_none() {
            return Err(ClientError::missing("session.type"));
        }
        let mut next = self.value.clone();
        merge(&mut next, session, schema);
        match self.dialect {
            Dialect::Ga | Dialect::Live => {
                for dir in ["input", "output"] {
                    if let Some(f) = next.pointer_mut(&format!("/audio/{dir}/format")) {
                        normalize_ga_format(&format!("session.audio.{dir}.format"), f)?;
                    }
                }
                if let Some(td) = next.pointer_mut("/audio/input/turn_detection") {
                    normalize_turn_detection(
                        Dialect::Ga,
                        "session.audio.input.turn_detection",
                        td,
                    )?;
                }
                let modalities = next.get("output_modalities").and_then(Value::as_array);
                if modalities.is_some_and(|m| m.len() != 1) {
                    return Err(ClientError::new(
                        Some("invalid_value"),
                        "Invalid 'session.output_modalities': set exactly one of 'audio' or 'text'."
                            .into(),
                        Some("session.output_modalities"),
                    ));
                }
            }
            Dialect::Beta => {
                if let Some(td) = next.get_mut("turn_detection") {
                    normalize_turn_detection(Dialect::Beta, "session.turn_detection", td)?;
                }
            }
        }
        let before = self.voice();
        let candidate = SessionConfig {
            dialect: self.dialect,
            value: next,
        };
        if voice_locked && candidate.voice() != before {
            return Err(ClientError::new(
                Some("cannot_update_voice"),
                "Cannot update a conversation's voice if assistant audio is present.".into(),
                Some(match self.dialect {
                    Dialect::Ga | Dialect::Live => "session.audio.output.voice",
                    Dialect::Beta => "session.voice",
                }),
            ));
        }
        *self = candidate;
        Ok(())
    }

    /// The typed view of the effective session.
    pub(crate) fn effective(&self) -> Effective {
        let v = &self.value;
        match self.dialect {
            Dialect::Ga | Dialect::Live => {
                let fmt = |dir: &str| {
                    get(v, &["audio", dir, "format", "type"])
                        .and_then(Value::as_str)
                        .and_then(AudioFormat::from_ga_type)
                        .unwrap_or(AudioFormat::Pcm16)
                };
                Effective {
                    input: fmt("input"),
                    output: fmt("output"),
                    turn_detection: turn_detection_from(get(
                        v,
                        &["audio", "input", "turn_detection"],
                    )),
                    text_only: text_only(v.get("output_modalities")),
                    transcription: get(v, &["audio", "input", "transcription"])
                        .is_some_and(Value::is_object),
                    max_output_tokens: max_tokens(v.get("max_output_tokens")),
                }
            }
            Dialect::Beta => {
                let fmt = |k: &str| {
                    v.get(k)
                        .and_then(Value::as_str)
                        .and_then(AudioFormat::from_beta_name)
                        .unwrap_or(AudioFormat::Pcm16)
                };
                Effective {
                    input: fmt("input_audio_format"),
                    output: fmt("output_audio_format"),
                    turn_detection: turn_detection_from(v.get("turn_detection")),
                    text_only: text_only(v.get("modalities")),
                    transcription: v
                        .get("input_audio_transcription")
                        .is_some_and(Value::is_object),
                    max_output_tokens: max_tokens(v.get("max_response_output_tokens")),
                }
            }
        }
    }
}

/// True when the modalities list does not contain `audio`.
fn text_only(modalities: Option<&Value>) -> bool {
    modalities
        .and_then(Value::as_array)
        .is_some_and(|m| !m.iter().any(|x| x == "audio"))
}

/// Per-response settings from `response.create`, defaulting to the session's.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResponseSettings {
    pub(crate) output: AudioFormat,
    pub(crate) text_only: bool,
    pub(crate) voice: Value,
    pub(crate) max_output_tokens: Option<u64>,
    pub(crate) metadata: Value,
}

impl ResponseSettings {
    /// Settings of a response the server starts itself (VAD, idle timeout).
    pub(crate) fn from_session(config: &SessionConfig) -> ResponseSettings {
        let e = config.effective();
        ResponseSettings {
            output: e.output,
            text_only: e.text_only,
            voice: config.voice(),
            max_output_tokens: e.max_output_tokens,
            metadata: Value::Null,
        }
    }

    /// Validates a `response.create` `response` object and applies its overrides.
    pub(crate) fn from_request(
        config: &SessionConfig,
        response: Option<&Value>,
    ) -> Result<ResponseSettings, ClientError> {
        let mut s = ResponseSettings::from_session(config);
        let Some(r) = response.filter(|r| !r.is_null()) else {
            return Ok(s);
        };
        match config.dialect {
            Dialect::Ga | Dialect::Live => {
                check("response", r, GA_RESPONSE)?;
                if let Some(m) = r.get("output_modalities") {
                    if m.as_array().is_some_and(|m| m.len() != 1) {
                        return Err(ClientError::new(
                            Some("invalid_value"),
                            "Invalid 'response.output_modalities': set exactly one of 'audio' or 'text'."
                                .into(),
                            Some("response.output_modalities"),
                        ));
                    }
                    s.text_only = text_only(Some(m));
                }
                if let Some(f) = get(r, &["audio", "output", "format"]) {
                    let t = f.get("type").and_then(Value::as_str);
                    let t =
                        t.ok_or_else(|| ClientError::missing("response.audio.output.format.type"))?;
                    s.output = AudioFormat::from_ga_type(t).unwrap_or(s.output);
                }
                if let Some(voice) = get(r, &["audio", "output", "voice"]) {
                    s.voice = voice.clone();
                }
                if let Some(m) = r.get("max_output_tokens") {
                    s.max_output_tokens = max_tokens(Some(m));
                }
            }
            Dialect::Beta => {
                check("response", r, BETA_RESPONSE)?;
                if let Some(m) = r.get("modalities") {
                    s.text_only = text_only(Some(m));
                }
                if let Some(f) = r.get("output_audio_format").and_then(Value::as_str) {
                    s.output = AudioFormat::from_beta_name(f).unwrap_or(s.output);
                }
                if let Some(voice) = r.get("voice") {
                    s.voice = voice.clone();
                }
                if let Some(m) = r.get("max_response_output_tokens") {
                    s.max_output_tokens = max_tokens(Some(m));
                }
            }
        }
        if let Some(m) = r.get("metadata") {
            s.metadata = m.clone();
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ga() -> SessionConfig {
        SessionConfig::new(Dialect::Ga, "sess_1", "gpt-realtime", 100)
    }

    #[test]
    fn ga_update_merges_and_fills_turn_detection_defaults() {
        let mut c = ga();
        c.update(
            &json!({"type": "realtime", "instructions": "Be brief.",
                "audio": {"input": {"format": {"type": "audio/pcmu"},
                                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}},
                          "output": {"format": {"type": "audio/pcmu"}}}}),
            false,
        )
        .expect("valid update");
        let v = c.value();
        assert_eq!(v["instructions"], "Be brief.");
        assert_eq!(
            v["audio"]["output"]["voice"], "marin",
            "untouched keys survive"
        );
        assert_eq!(v["audio"]["input"]["format"], json!({"type": "audio/pcmu"}));
        let td = &v["audio"]["input"]["turn_detection"];
        assert_eq!(td["silence_duration_ms"], 500);
        assert_eq!(td["prefix_padding_ms"], 300);
        assert_eq!(td["interrupt_response"], true);
        let e = c.effective();
        assert_eq!(e.input, AudioFormat::Pcmu);
        assert_eq!(e.output, AudioFormat::Pcmu);
        let t = e.turn_detection.expect("vad on");
        assert_eq!(t.vad.silence_duration_ms, 500);
        c.update(
            &json!({"type": "realtime", "audio": {"input": {"turn_detection": null}}}),
            false,
        )
        .expect("disable vad");
        assert_eq!(c.effective().turn_detection, None);
    }

    #[test]
    fn ga_rejects_beta_names_and_bad_values() {
        let mut c = ga();
        let before = c.value().clone();
        let err = c
            .update(&json!({"type": "realtime", "temperature": 0.8}), false)
            .expect_err("beta field");
        assert_eq!(err.code, Some("unknown_parameter"));
        assert_eq!(err.message, "Unknown parameter: 'session.temperature'.");
        assert_eq!(err.param.as_deref(), Some("session.temperature"));
        let err = c
            .update(
                &json!({"type": "realtime", "input_audio_format": "g711_ulaw"}),
                false,
            )
            .expect_err("beta field");
        assert_eq!(
            err.message,
            "Unknown parameter: 'session.input_audio_format'."
        );
        let err = c
            .update(&json!({"instructions": "x"}), false)
            .expect_err("no type");
        assert_eq!(err.message, "Missing required parameter: 'session.type'.");
        let err = c
            .update(&json!({"type": "realtime", "audio": {"input": {"format": {"type": "audio/opus"}}}}), false)
            .expect_err("bad format");
        assert_eq!(err.code, Some("invalid_value"));
        assert_eq!(
            err.message,
            "Invalid value: 'audio/opus'. Supported values are: 'audio/pcm', 'audio/pcmu', and 'audio/pcma'."
        );
        let err = c
            .update(&json!({"type": "realtime", "instructions": 5}), false)
            .expect_err("bad type");
        assert_eq!(err.code, Some("invalid_type"));
        let err = c
            .update(
                &json!({"type": "realtime", "audio": {"input": {"turn_detection": {"type": "semantic_vad", "threshold": 0.3}}}}),
                false,
            )
            .expect_err("threshold on semantic_vad");
        assert_eq!(
            err.message,
            "Unknown parameter: 'session.audio.input.turn_detection.threshold'."
        );
        assert_eq!(c.value(), &before, "nothing applied");
    }

    #[test]
    fn beta_rejects_ga_names_and_merges() {
        let mut c = SessionConfig::new(Dialect::Beta, "sess_1", "gpt-4o-realtime-preview", 100);
        let err = c
            .update(&json!({"type": "realtime", "voice": "alloy"}), false)
            .expect_err("GA field");
        assert_eq!(err.message, "Unknown parameter: 'session.type'.");
        let err = c
            .update(&json!({"audio": {}}), false)
            .expect_err("GA field");
        assert_eq!(err.message, "Unknown parameter: 'session.audio'.");
        c.update(
            &json!({"input_audio_format": "g711_alaw", "output_audio_format": "g711_ulaw",
                    "turn_detection": {"threshold": 0.7}, "temperature": 0.7}),
            false,
        )
        .expect("valid beta update");
        let e = c.effective();
        assert_eq!((e.input, e.output), (AudioFormat::Pcma, AudioFormat::Pcmu));
        assert_eq!(c.value()["turn_detection"]["type"], "server_vad");
        assert_eq!(c.value()["turn_detection"]["silence_duration_ms"], 200);
        assert_eq!(e.turn_detection.map(|t| t.vad.threshold), Some(0.7));
    }

    #[test]
    fn voice_is_locked_after_audio() {
        let mut c = ga();
        let upd = json!({"type": "realtime", "audio": {"output": {"voice": "cedar"}}});
        let err = c.update(&upd, true).expect_err("locked");
        assert_eq!(err.code, Some("cannot_update_voice"));
        c.update(&upd, false).expect("unlocked");
        c.update(&upd, true).expect("same voice is fine");
    }

    #[test]
    fn response_overrides() {
        let c = ga();
        let s = ResponseSettings::from_request(
            &c,
            Some(&json!({"output_modalities": ["text"], "instructions": "Greet.", "max_output_tokens": 20})),
        )
        .expect("valid");
        assert!(s.text_only);
        assert_eq!(s.max_output_tokens, Some(20));
        let err = ResponseSettings::from_request(&c, Some(&json!({"modalities": ["text"]})))
            .expect_err("beta name");
        assert_eq!(err.message, "Unknown parameter: 'response.modalities'.");
    }
}
