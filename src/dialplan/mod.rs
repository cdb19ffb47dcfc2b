//! Dialplan: which agent profile answers which called number.
//!
//! Two stages, as admins edit these files by hand: every `*.toml` file of the dialplan directory is
//! parsed into raw serde structs (unknown keys are errors), then compiled into a [`Dialplan`] whose
//! routes reference validated [`AgentProfile`]s. Every problem of every file is collected, each with
//! its file and line. Evaluation ([`Dialplan::route`]) is pure. No I/O except [`Dialplan::load_dir`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

/// Default Realtime model for profiles that do not name one.
pub const DEFAULT_MODEL: &str = "gpt-realtime";
/// Default voice.
pub const DEFAULT_VOICE: &str = "marin";

/// One problem found in a dialplan file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct Error {
    /// The file the problem is in (or the directory).
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong, with a hint.
    pub message: String,
}

/// Server voice-activity detection settings of a profile (Realtime `turn_detection`, server_vad).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VadSettings {
    /// Activation threshold, 0.0–1.0 (higher needs louder speech).
    pub threshold: f64,
    /// Audio kept before detected speech, in ms.
    pub prefix_padding_ms: u32,
    /// Silence that ends a caller turn, in ms.
    pub silence_duration_ms: u32,
}

impl Default for VadSettings {
    fn default() -> Self {
        VadSettings {
            threshold: 0.5,
            prefix_padding_ms: 300,
            silence_duration_ms: 500,
        }
    }
}

/// An agent profile: how the voice model behaves on a call.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentProfile {
    /// Profile name (the key under `[agents]`).
    pub name: String,
    /// System instructions for the model.
    pub instructions: String,
    /// Voice name (e.g. `marin`, `alloy`).
    pub voice: String,
    /// What the agent says first when the call is answered; empty: wait for the caller.
    pub greeting: String,
    /// Realtime model.
    pub model: String,
    /// Input transcription model (e.g. `gpt-4o-mini-transcribe`); `None` disables transcription.
    pub transcription_model: Option<String>,
    /// Turn detection.
    pub vad: VadSettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    agents: BTreeMap<String, RawAgent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Option<String>,
    to: String,
    agent: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    instructions: String,
    voice: Option<String>,
    greeting: Option<String>,
    model: Option<String>,
    transcription_model: Option<String>,
    #[serde(default)]
    vad: VadSettings,
}

/// How a route matches the called number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumberMatch {
    /// `*`: every call.
    Any,
    /// `123*`: numbers starting with the prefix.
    Prefix(String),
    /// `123`: exactly this number.
    Exact(String),
}

impl NumberMatch {
    fn parse(s: &str) -> NumberMatch {
        match s.strip_suffix('*') {
            Some("") => NumberMatch::Any,
            Some(prefix) => NumberMatch::Prefix(prefix.to_owned()),
            None => NumberMatch::Exact(s.to_owned()),
        }
    }

    fn matches(&self, number: Option<&str>) -> bool {
        match (self, number) {
            (NumberMatch::Any, _) => true,
            (NumberMatch::Prefix(p), Some(n)) => n.starts_with(p.as_str()),
            (NumberMatch::Exact(e), Some(n)) => n == e,
            _ => false,
        }
    }
}

/// A compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Route name (for logs), defaults to `file#index`.
    pub name: String,
    /// Called-number condition.
    pub to: NumberMatch,
    /// The profile that answers.
    pub agent: Arc<AgentProfile>,
}

/// A compiled, validated dialplan.
#[derive(Debug, Clone, Default)]
pub struct Dialplan {
    routes: Vec<Route>,
}

impl Dialplan {
    /// Loads and compiles every `*.toml` file in `dir` (sorted by name).
    ///
    /// # Errors
    /// Every problem found, in every file (unreadable file, TOML syntax, unknown key, route to an
    /// unknown agent, duplicate agent, no routes at all).
    pub fn load_dir(dir: &Path) -> Result<Dialplan, Vec<Error>> {
        let dir_err = |message: String| {
            vec![Error {
                file: dir.to_owned(),
                line: None,
                message,
            }]
        };
        let entries = std::fs::read_dir(dir).map_err(|e| {
            dir_err(format!(
                "cannot read the dialplan directory: {e} (create it or pass --dialplans DIR)"
            ))
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut sources = Vec::new();
        let mut errors = Vec::new();
        for f in files {
            match std::fs::read_to_string(&f) {
                Ok(text) => sources.push((f, text)),
                Err(e) => errors.push(Error {
                    file: f,
                    line: None,
                    message: format!("cannot read file: {e}"),
                }),
            }
        }
        match Dialplan::compile(&sources) {
            Ok(plan) if errors.is_empty() => Ok(plan),
            Ok(_) => Err(errors),
            Err(mut more) => {
                errors.append(&mut more);
                Err(errors)
            }
        }
    }

    /// Compiles dialplan sources given as `(path, text)` pairs, in order.
    ///
    /// # Errors
    /// Every problem found (see [`Dialplan::load_dir`]).
    pub fn compile(sources: &[(PathBuf, String)]) -> Result<Dialplan, Vec<Error>> {
        let mut errors = Vec::new();
        let mut agents: BTreeMap<String, (PathBuf, Arc<AgentProfile>)> = BTreeMap::new();
        let mut raw_routes = Vec::new();
        for (path, text) in sources {
            let raw: RawFile = match toml::from_str(text) {
                Ok(r) => r,
                Err(e) => {
                    let line = e
                        .span()
                        .and_then(|s| text.get(..s.start))
                        .map(|prefix| prefix.matches('\n').count() + 1);
                    errors.push(Error {
                        file: path.clone(),
                        line,
                        message: e.message().to_owned(),
                    });
                    continue;
                }
            };
            for (name, a) in raw.agents {
                if let Some((first, _)) = agents.get(&name) {
                    errors.push(Error {
                        file: path.clone(),
                        line: find_line(text, &format!("[agents.{name}]")),
                        message: format!(
                            "agent '{name}' is already defined in {}; rename one of them",
                            first.display()
                        ),
                    });
                    continue;
                }
                let profile = AgentProfile {
                    name: name.clone(),
                    instructions: a.instructions.trim().to_owned(),
                    voice: a.voice.unwrap_or_else(|| DEFAULT_VOICE.to_owned()),
                    greeting: a.greeting.unwrap_or_default(),
                    model: a.model.unwrap_or_else(|| DEFAULT_MODEL.to_owned()),
                    transcription_model: a.transcription_model,
                    vad: a.vad,
                };
                if !(0.0..=1.0).contains(&profile.vad.threshold) {
                    errors.push(Error {
                        file: path.clone(),
                        line: find_line(text, "threshold"),
                        message: format!(
                            "agent '{name}': vad.threshold must be between 0.0 and 1.0, not {}",
                            profile.vad.threshold
                        ),
                    });
                }
                agents.insert(name, (path.clone(), Arc::new(profile)));
            }
            for (i, r) in raw.routes.into_iter().enumerate() {
                raw_routes.push((path.clone(), text.clone(), i, r));
            }
        }
        let mut routes = Vec::new();
        for (path, text, i, r) in raw_routes {
            let file_name = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            match agents.get(&r.agent) {
                Some((_, agent)) => routes.push(Route {
                    name: r.name.unwrap_or_else(|| format!("{file_name}#{}", i + 1)),
                    to: NumberMatch::parse(&r.to),
                    agent: agent.clone(),
                }),
                None => errors.push(Error {
                    file: path.clone(),
                    line: find_line(&text, &format!("\"{}\"", r.agent)),
                    message: format!(
                        "route {} uses agent '{}', which is not defined; known agents: {}",
                        i + 1,
                        r.agent,
                        agents.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                }),
            }
        }
        if routes.is_empty() && errors.is_empty() {
            errors.push(Error {
                file: sources.first().map(|(p, _)| p.clone()).unwrap_or_default(),
                line: None,
                message: "the dialplan has no [[routes]], so no call could be answered; add one with to = \"*\"".into(),
            });
        }
        if errors.is_empty() {
            Ok(Dialplan { routes })
        } else {
            Err(errors)
        }
    }

    /// The first route whose condition matches the called number.
    pub fn route(&self, called: Option<&str>) -> Option<&Route> {
        self.routes.iter().find(|r| r.to.matches(called))
    }

    /// All routes, in evaluation order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

fn find_line(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str) -> Result<Dialplan, Vec<Error>> {
        Dialplan::compile(&[(PathBuf::from("t.toml"), text.to_owned())])
    }

    #[test]
    fn shipped_default_dialplan_compiles_and_answers_everything() {
        let plan = Dialplan::load_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/dialplans")))
            .expect("shipped dialplan is valid");
        let r = plan.route(Some("+15550100")).expect("a route");
        assert_eq!(r.agent.name, "receptionist");
        assert!(!r.agent.greeting.is_empty());
        assert!(plan.route(None).is_some());
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
        assert_eq!(
            plan.route(Some("100")).map(|r| r.agent.name.as_str()),
            Some("a")
        );
        assert_eq!(
            plan.route(Some("101")).map(|r| r.agent.name.as_str()),
            Some("b")
        );
        assert!(plan.route(Some("200")).is_none());
        assert_eq!(
            plan.route(Some("101")).map(|r| r.agent.voice.as_str()),
            Some("alloy")
        );
    }

    #[test]
    fn typos_and_unknown_agents_are_reported_with_lines() {
        let errs = compile("[[routes]]\nto = \"*\"\nagnet = \"x\"\n").expect_err("typo");
        assert_eq!(errs[0].line, Some(3), "{errs:?}");
        assert!(errs[0].message.contains("agnet"), "{errs:?}");
        let errs =
            compile("[[routes]]\nto = \"*\"\nagent = \"nobody\"\n").expect_err("unknown agent");
        assert!(errs[0].message.contains("nobody"));
        assert_eq!(errs[0].line, Some(3));
    }
}
