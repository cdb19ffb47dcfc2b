//! Compile stage: raw files → a validated [`Dialplan`], or every error of every file.
//!
//! Owns the *meaning* of values and names: time zones, opening hours, dates, regexes, SIP URIs,
//! tool names, durations, and the cross-file namespaces of agents and schedules (a route in one
//! file may use an agent defined in another). Fills in every default. Files that a profile or a
//! message refers to (`instructions_file`, `audio`) are read through [`Files`], so this stage is
//! pure and testable with an in-memory map; [`Dialplan::load_dir`] passes the real file system.
//!
//! Invariant: `Ok` only when no error was found; errors are sorted by file (in evaluation
//! order), line and column.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::audio::MessageAudio;
use super::eval::{Action, AfterMessage};
use super::hint;
use super::matcher::NumberMatch;
use super::profile::{
    check_duration, check_language, check_uri, default_failure_audio, parse_digit,
    parse_dtmf_action, parse_duration, parse_failure_action, AgentProfile, ModelFailure, Tool,
    VadSettings, DEFAULT_IDLE_HANGUP, DEFAULT_IDLE_PROMPT, DEFAULT_MODEL, DEFAULT_VOICE,
    FAILURE_HINT, KNOWN_VOICES,
};
use super::raw::{
    self, inner_span, PatternKind, RawAgent, RawDuration, RawFailure, RawFile, RawPattern,
    RawRoute, Sp, Span,
};
use super::schedule::{parse_timezone, DateSpec, Hours, Schedule};
use super::{position, Dialplan, Error, Route, ValueError};

/// Read access to the files a dialplan refers to (instruction texts, message audio).
pub trait Files {
    /// The bytes of `path`.
    ///
    /// # Errors
    /// Whatever prevents reading it (missing, unreadable).
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
}

/// No files at all: for plans compiled from strings alone (a reference to a file is an error).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFiles;

impl Files for NoFiles {
    fn read(&self, _path: &Path) -> io::Result<Vec<u8>> {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no files can be read when compiling from strings",
        ))
    }
}

/// An in-memory file system (tests, tools).
impl Files for BTreeMap<PathBuf, Vec<u8>> {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
    }
}

/// Longest instruction text accepted, in bytes (a prompt, not a manual).
const MAX_INSTRUCTIONS: usize = 64 * 1024;

impl Dialplan {
    /// Compiles dialplan sources given as `(path, text)` pairs, in evaluation order. Files they
    /// refer to cannot be read ([`NoFiles`]); use [`Dialplan::compile_with`] for that.
    ///
    /// # Errors
    /// Every problem found in every source, sorted by file, line and column.
    pub fn compile(sources: &[(PathBuf, String)]) -> Result<Dialplan, Vec<Error>> {
        Dialplan::compile_with(sources, &NoFiles)
    }

    /// Compiles dialplan sources, reading the files they refer to (relative to each dialplan
    /// file's directory) through `files`.
    ///
    /// # Errors
    /// Every problem found in every source, sorted by file, line and column.
    pub fn compile_with(
        sources: &[(PathBuf, String)],
        files: &dyn Files,
    ) -> Result<Dialplan, Vec<Error>> {
        let mut c = Compiler {
            files,
            errors: Vec::new(),
            warnings: Vec::new(),
            hash: Fnv::new(),
            dependencies: Vec::new(),
            broken: Vec::new(),
            endpoint_refs: Vec::new(),
        };
        let mut parsed: Vec<(&Path, &str, RawFile)> = Vec::new();
        for (path, text) in sources {
            c.hash.add(
                path.file_name()
                    .map_or(b"".as_slice(), |f| f.as_encoded_bytes()),
            );
            c.hash.add(text.as_bytes());
            match raw::parse(path, text, &mut c.errors) {
                Some(r) => parsed.push((path, text, r)),
                None => c.broken.push(path.clone()),
            }
        }
        let plan = c.build(&parsed);
        let order = |f: &Path| {
            sources
                .iter()
                .position(|(p, _)| p == f)
                .unwrap_or(usize::MAX)
        };
        let key = |e: &Error| (order(&e.file), e.line.unwrap_or(0), e.column.unwrap_or(0));
        c.errors.sort_by_key(key);
        c.warnings.sort_by_key(key);
        if c.errors.is_empty() && plan.routes.is_empty() {
            c.errors.push(
                Error::file(
                    sources.first().map(|(p, _)| p.clone()).unwrap_or_default(),
                    "the dialplan has no [[routes]], so no call could be answered",
                )
                .with_hint(Some(
                    "add a route, e.g. [[routes]] to = \"*\" agent = \"receptionist\"".to_owned(),
                )),
            );
        }
        if c.errors.is_empty() {
            Ok(Dialplan {
                version: c.hash.hex(),
                files: sources.iter().map(|(p, _)| p.clone()).collect(),
                dependencies: c.dependencies,
                warnings: c.warnings,
                endpoint_refs: c.endpoint_refs,
                ..plan
            })
        } else {
            Err(c.errors)
        }
    }
}

/// FNV-1a, 64 bit: a stable, dependency-free hash for the plan's version.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn add(&mut self, bytes: &[u8]) {
        for b in bytes.iter().chain(&[0xff]) {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// Where a definition was made, for "already defined at …" hints.
struct Site<'a> {
    file: &'a Path,
    line: usize,
}

impl Site<'_> {
    fn show(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

struct Compiler<'f> {
    files: &'f dyn Files,
    errors: Vec<Error>,
    warnings: Vec<Error>,
    hash: Fnv,
    dependencies: Vec<PathBuf>,
    /// Files with TOML syntax errors: their definitions are missing.
    broken: Vec<PathBuf>,
    /// Every endpoint name an agent uses, for the check against the config.
    endpoint_refs: Vec<super::EndpointRef>,
}

/// One file being compiled: its path and text, for positions.
#[derive(Clone, Copy)]
struct Src<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Src<'_> {
    fn line(&self, span: &Span) -> usize {
        position(self.text, span.start).0
    }

    /// A file next to this dialplan file.
    fn resolve(&self, rel: &str) -> PathBuf {
        let rel = Path::new(rel.trim());
        if rel.is_absolute() {
            rel.to_owned()
        } else {
            self.path.parent().unwrap_or(Path::new("")).join(rel)
        }
    }
}

impl<'f> Compiler<'f> {
    fn error(
        &mut self,
        src: Src<'_>,
        span: &Span,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.errors
            .push(Error::at(src.path, src.text, span.start, message).with_hint(hint));
    }

    fn warn(
        &mut self,
        src: Src<'_>,
        span: &Span,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.warnings
            .push(Error::at(src.path, src.text, span.start, message).with_hint(hint));
    }

    /// Reports a value error, pointing inside the string when the error knows where.
    fn value_error(&mut self, src: Src<'_>, value: &Sp<String>, e: ValueError) {
        let span = match &e.at {
            Some(at) => inner_span(src.text, &value.span, &value.value, at.clone()),
            None => value.span.clone(),
        };
        self.error(src, &span, e.message, e.hint);
    }

    /// Hint for a name that is not defined: did-you-mean, plus broken files that may define it.
    fn unknown_name_hint<'n>(
        &self,
        name: &str,
        known: impl IntoIterator<Item = &'n str> + Clone,
    ) -> String {
        let mut h = hint::did_you_mean(name, known);
        if !self.broken.is_empty() {
            let files: Vec<String> = self
                .broken
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            h.push_str(&format!(
                " ({} has TOML errors, so its definitions were not read)",
                files.join(", ")
            ));
        }
        h
    }

    fn read_text(
        &mut self,
        src: Src<'_>,
        value: &Sp<String>,
        what: &str,
    ) -> Option<(PathBuf, String)> {
        let path = src.resolve(&value.value);
        let bytes = self.read_bytes(src, value, &path, what)?;
        match String::from_utf8(bytes) {
            Ok(t) => Some((path, t)),
            Err(_) => {
                self.error(
                    src,
                    &value.span,
                    format!("{what} {} is not UTF-8 text", path.display()),
                    None,
                );
                None
            }
        }
    }

    fn read_bytes(
        &mut self,
        src: Src<'_>,
        value: &Sp<String>,
        path: &Path,
        what: &str,
    ) -> Option<Vec<u8>> {
        match self.files.read(path) {
            Ok(bytes) => {
                self.hash.add(value.value.as_bytes());
                self.hash.add(&bytes);
                if !self.dependencies.iter().any(|d| d == path) {
                    self.dependencies.push(path.to_owned());
                }
                Some(bytes)
            }
            Err(e) => {
                let hint = Some(format!(
                    "paths are relative to the directory of {}",
                    src.path.file_name().map_or_else(
                        || src.path.display().to_string(),
                        |f| f.to_string_lossy().into_owned()
                    )
                ));
                self.error(
                    src,
                    &value.span,
                    format!("cannot read {what} {}: {e}", path.display()),
                    hint,
                );
                None
            }
        }
    }

    fn build(&mut self, parsed: &[(&Path, &str, RawFile)]) -> Dialplan {
        fn src<'a>(p: &(&'a Path, &'a str, RawFile)) -> Src<'a> {
            Src {
                path: p.0,
                text: p.1,
            }
        }

        // Settings: at most one file sets them.
        let mut timezone = None;
        let mut settings_site: Option<(PathBuf, usize)> = None;
        for p in parsed {
            let s = src(p);
            let Some(settings) = &p.2.settings else {
                continue;
            };
            if let Some((file, line)) = &settings_site {
                let hint = Some(format!(
                    "keep a single [settings] table; the first is at {}:{line}",
                    file.display()
                ));
                self.error(s, &settings.span, "[settings] is already defined", hint);
                continue;
            }
            settings_site = Some((s.path.to_owned(), s.line(&settings.span)));
            if let Some(tz) = &settings.timezone {
                match parse_timezone(&tz.value) {
                    Ok(t) => timezone = Some(t),
                    Err(e) => self.value_error(s, tz, e),
                }
            }
        }
        let plan_tz = timezone.unwrap_or(chrono_tz::UTC);

        // Schedules.
        let mut schedules: BTreeMap<String, (Arc<Schedule>, PathBuf, usize)> = BTreeMap::new();
        for p in parsed {
            let s = src(p);
            for rs in &p.2.schedules {
                if let Some((_, file, line)) = schedules.get(&rs.name.value) {
                    let hint = Some(format!(
                        "it is first defined at {}:{line}; rename one of them",
                        file.display()
                    ));
                    let msg = format!("schedule `{}` is already defined", rs.name.value);
                    self.error(s, &rs.name.span, msg, hint);
                    continue;
                }
                let tz = match &rs.timezone {
                    Some(tz) => match parse_timezone(&tz.value) {
                        Ok(t) => t,
                        Err(e) => {
                            self.value_error(s, tz, e);
                            plan_tz
                        }
                    },
                    None => {
                        if timezone.is_none()
                            && (!rs.hours.is_empty()
                                || !rs.holidays.is_empty()
                                || !rs.dates.is_empty())
                        {
                            self.warn(
                                s,
                                &rs.name.span,
                                format!("schedule `{}` uses UTC because no time zone is set", rs.name.value),
                                Some("add [settings] timezone = \"America/New_York\" (your business's IANA zone)".to_owned()),
                            );
                        }
                        plan_tz
                    }
                };
                let mut hours = Vec::new();
                for h in &rs.hours {
                    match Hours::parse(&h.value) {
                        Ok(mut v) => hours.append(&mut v),
                        Err(e) => self.value_error(s, h, e),
                    }
                }
                let dates = |list: &[Sp<String>], this: &mut Self| -> Vec<DateSpec> {
                    list.iter()
                        .filter_map(|d| {
                            DateSpec::parse(&d.value)
                                .map_err(|e| this.value_error(s, d, e))
                                .ok()
                        })
                        .collect()
                };
                let holidays = dates(&rs.holidays, self);
                let only = dates(&rs.dates, self);
                if rs.hours.is_empty() && rs.holidays.is_empty() && rs.dates.is_empty() {
                    self.warn(
                        s,
                        &rs.name.span,
                        format!(
                            "schedule `{}` has no hours, holidays or dates, so it is always open",
                            rs.name.value
                        ),
                        None,
                    );
                }
                let schedule = Schedule {
                    name: rs.name.value.clone(),
                    timezone: tz,
                    hours,
                    holidays,
                    dates: only,
                };
                schedules.insert(
                    rs.name.value.clone(),
                    (Arc::new(schedule), s.path.to_owned(), s.line(&rs.name.span)),
                );
            }
        }

        // Agents.
        let mut agents: BTreeMap<String, (Arc<AgentProfile>, PathBuf, usize, Span)> =
            BTreeMap::new();
        for p in parsed {
            let s = src(p);
            for ra in &p.2.agents {
                if let Some((_, file, line, _)) = agents.get(&ra.name.value) {
                    let hint = Some(format!(
                        "it is first defined at {}:{line}; rename one of them",
                        file.display()
                    ));
                    self.error(
                        s,
                        &ra.name.span,
                        format!("agent `{}` is already defined", ra.name.value),
                        hint,
                    );
                    continue;
                }
                let profile = self.agent(s, ra);
                agents.insert(
                    ra.name.value.clone(),
                    (
                        Arc::new(profile),
                        s.path.to_owned(),
                        s.line(&ra.span),
                        ra.name.span.clone(),
                    ),
                );
            }
        }

        // Routes, in file order then written order.
        let mut routes = Vec::new();
        let mut route_names: BTreeMap<String, Site<'_>> = BTreeMap::new();
        let mut used_agents = BTreeSet::new();
        let mut used_schedules = BTreeSet::new();
        for p in parsed {
            let s = src(p);
            for rr in &p.2.routes {
                let file_name = s
                    .path
                    .file_name()
                    .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
                let name = rr
                    .name
                    .as_ref()
                    .map_or_else(|| format!("{file_name}#{}", rr.index), |n| n.value.clone());
                if let Some(n) = &rr.name {
                    if let Some(first) = route_names.get(&name) {
                        let hint = Some(format!(
                            "it is first used at {}; route names must be unique",
                            first.show()
                        ));
                        self.error(
                            s,
                            &n.span,
                            format!("route name `{name}` is already used"),
                            hint,
                        );
                    }
                }
                route_names.entry(name.clone()).or_insert(Site {
                    file: s.path,
                    line: s.line(&rr.span),
                });
                if let Some(route) = self.route(
                    s,
                    rr,
                    name,
                    &agents,
                    &schedules,
                    &mut used_agents,
                    &mut used_schedules,
                ) {
                    routes.push(route);
                }
            }
        }

        // Warnings about valid but suspicious plans.
        if let Some(i) = routes.iter().position(Route::is_catch_all) {
            for r in &routes[i + 1..] {
                if let Some(p) = parsed.iter().find(|p| p.0 == r.file) {
                    let line_start = line_offset(p.1, r.line);
                    let msg = format!("route `{}` can never match", r.name);
                    let hint = Some(format!(
                        "route `{}` before it matches every call; move this route before it",
                        routes[i].name
                    ));
                    self.warn(src(p), &(line_start..line_start), msg, hint);
                }
            }
        }
        for (name, (_, file, _, span)) in &agents {
            if !used_agents.contains(name) {
                if let Some(p) = parsed.iter().find(|p| p.0 == file) {
                    self.warn(
                        src(p),
                        span,
                        format!("agent `{name}` is not used by any route"),
                        None,
                    );
                }
            }
        }
        for (name, (_, file, line)) in &schedules {
            if !used_schedules.contains(name) {
                if let Some(p) = parsed.iter().find(|p| p.0 == file) {
                    let off = line_offset(p.1, *line);
                    self.warn(
                        src(p),
                        &(off..off),
                        format!("schedule `{name}` is not used by any route"),
                        None,
                    );
                }
            }
        }

        Dialplan {
            routes,
            agents: agents.into_iter().map(|(k, v)| (k, v.0)).collect(),
            schedules: schedules.into_iter().map(|(k, v)| (k, v.0)).collect(),
            timezone: plan_tz,
            version: String::new(),
            files: Vec::new(),
            dependencies: Vec::new(),
            warnings: Vec::new(),
            endpoint_refs: Vec::new(),
        }
    }

    fn voice(&mut self, s: Src<'_>, voice: Option<&Sp<String>>) -> String {
        let Some(v) = voice else {
            return DEFAULT_VOICE.to_owned();
        };
        let name = v.value.trim();
        if name.is_empty() {
            self.error(
                s,
                &v.span,
                "`voice` is empty",
                Some(format!("remove it to use the default, `{DEFAULT_VOICE}`")),
            );
        } else if !KNOWN_VOICES.contains(&name) {
            let hint = hint::did_you_mean(name, KNOWN_VOICES.iter().copied());
            self.warn(
                s,
                &v.span,
                format!("`{name}` is not a known Realtime voice"),
                Some(hint),
            );
        }
        name.to_owned()
    }

    fn non_empty(&mut self, s: Src<'_>, v: Option<&Sp<String>>, key: &str) -> Option<String> {
        let v = v?;
        let t = v.value.trim();
        if t.is_empty() {
            self.error(
                s,
                &v.span,
                format!("`{key}` is empty"),
                Some(format!("remove `{key}` to use the default")),
            );
            return None;
        }
        Some(t.to_owned())
    }

    fn agent(&mut self, s: Src<'_>, ra: &RawAgent) -> AgentProfile {
        let name = &ra.name.value;
        let mut profile = AgentProfile {
            name: name.clone(),
            ..AgentProfile::default()
        };
        match (&ra.instructions, &ra.instructions_file) {
            (Some(_), Some(f)) => self.error(
                s,
                &f.span,
                format!("agent `{name}` has both `instructions` and `instructions_file`"),
                Some("keep one of them".to_owned()),
            ),
            (Some(i), None) => {
                profile.instructions = i.value.trim().to_owned();
                if profile.instructions.is_empty() {
                    self.error(
                        s,
                        &i.span,
                        format!("the instructions of agent `{name}` are empty"),
                        None,
                    );
                }
            }
            (None, Some(f)) => {
                if let Some((path, text)) = self.read_text(s, f, "instructions file") {
                    profile.instructions = text.trim().to_owned();
                    if profile.instructions.is_empty() {
                        self.error(
                            s,
                            &f.span,
                            format!("instructions file {} is empty", path.display()),
                            None,
                        );
                    }
                    profile.instructions_file = Some(path);
                }
            }
            (None, None) => self.error(
                s,
                &ra.span,
                format!("agent `{name}` has no instructions"),
                Some(
                    "add instructions = \"\"\"…\"\"\" or instructions_file = \"prompts/NAME.md\""
                        .to_owned(),
                ),
            ),
        }
        if profile.instructions.len() > MAX_INSTRUCTIONS {
            if let Some(v) = ra.instructions.as_ref().or(ra.instructions_file.as_ref()) {
                let msg = format!(
                    "the instructions of agent `{name}` are longer than {} KiB",
                    MAX_INSTRUCTIONS / 1024
                );
                self.error(s, &v.span, msg, None);
            }
        }
        if let Some(g) = &ra.greeting {
            profile.greeting = g.value.trim().to_owned();
        }
        profile.voice = self.voice(s, ra.voice.as_ref());
        profile.model = self
            .non_empty(s, ra.model.as_ref(), "model")
            .unwrap_or_else(|| DEFAULT_MODEL.to_owned());
        profile.transcription_model = ra
            .transcription_model
            .as_ref()
            .map(|t| t.value.trim().to_owned())
            .filter(|t| !t.is_empty());
        if let Some(l) = &ra.language {
            match check_language(l.value.trim()) {
                Ok(()) => profile.language = Some(l.value.trim().to_owned()),
                Err(e) => self.value_error(s, l, e),
            }
        }
        profile.calendar = self.non_empty(s, ra.calendar.as_ref(), "calendar");
        profile.vad = self.vad(s, ra);
        if let Some(g) = &ra.echo_gate {
            profile.echo_gate = g.value;
        }
        for (tname, uri) in &ra.transfers {
            match check_uri(uri.value.trim()) {
                Ok(()) => {
                    profile
                        .transfers
                        .insert(tname.value.clone(), uri.value.trim().to_owned());
                }
                Err(e) => self.value_error(s, uri, e),
            }
        }
        // Tools: default every tool, `transfer_call` only when there is somewhere to transfer to.
        profile.tools = match &ra.tools {
            None => Tool::ALL
                .into_iter()
                .filter(|t| *t != Tool::TransferCall || !ra.transfers.is_empty())
                .collect(),
            Some(list) => {
                let mut tools = BTreeSet::new();
                for t in &list.value {
                    match Tool::parse(&t.value) {
                        Ok(tool) => {
                            if tool == Tool::TransferCall && ra.transfers.is_empty() {
                                self.error(
                                    s,
                                    &t.span,
                                    format!("agent `{name}` allows `transfer_call` but has no transfer targets"),
                                    Some(format!("add [agents.{name}.transfers] with name = \"sip:…\" entries")),
                                );
                            }
                            tools.insert(tool);
                        }
                        Err(e) => self.value_error(s, t, e),
                    }
                }
                tools.into_iter().collect()
            }
        };
        if let Some(d) = &ra.max_duration {
            let parsed = match &d.value {
                RawDuration::Text(t) => parse_duration(t),
                RawDuration::Seconds(n) => u64::try_from(*n)
                    .map_err(|_| ValueError::new("max_duration must be positive"))
                    .and_then(|n| check_duration(std::time::Duration::from_secs(n))),
            };
            match parsed {
                Ok(v) => profile.max_duration = v,
                Err(e) => self.error(s, &d.span, e.message, e.hint),
            }
        }
        if let Some(list) = &ra.endpoints {
            for e in &list.value {
                let n = e.value.trim();
                if n.is_empty() || profile.endpoints.iter().any(|x| x == n) {
                    let what = if n.is_empty() {
                        "an empty"
                    } else {
                        "a repeated"
                    };
                    self.error(
                        s,
                        &e.span,
                        format!("agent `{name}` lists {what} endpoint name"),
                        None,
                    );
                    continue;
                }
                profile.endpoints.push(n.to_owned());
                self.endpoint_refs.push(super::EndpointRef {
                    name: n.to_owned(),
                    site: Error::at(s.path, s.text, e.span.start, String::new()),
                });
            }
            if list.value.is_empty() && !ra.endpoints_twice {
                self.error(
                    s,
                    &list.span,
                    format!("agent `{name}` lists no endpoints"),
                    Some("remove the key to use every [[realtime.endpoints]] entry".to_owned()),
                );
            }
        }
        for (key, value, default, slot) in [
            (
                "idle_prompt_secs",
                &ra.idle_prompt_secs,
                DEFAULT_IDLE_PROMPT,
                &mut profile.idle_prompt,
            ),
            (
                "idle_hangup_secs",
                &ra.idle_hangup_secs,
                DEFAULT_IDLE_HANGUP,
                &mut profile.idle_hangup,
            ),
        ] {
            let Some(v) = value else { continue };
            *slot = match v.value {
                0 => None,
                n @ 1..=3600 => Some(std::time::Duration::from_secs(n.unsigned_abs())),
                _ => {
                    self.error(
                        s,
                        &v.span,
                        format!("`{key}` must be 0 (off) to 3600 seconds"),
                        Some(format!("the default is {}", default.as_secs())),
                    );
                    None
                }
            };
        }
        if let Some(f) = &ra.on_model_failure {
            profile.on_model_failure = self.model_failure(s, &profile, &f.value, &f.span);
        }
        for (digit, action) in &ra.dtmf {
            let d = match parse_digit(&digit.value) {
                Ok(d) => d,
                Err(e) => {
                    self.error(s, &digit.span, e.message, e.hint);
                    continue;
                }
            };
            match parse_dtmf_action(&action.value, &profile.transfers) {
                Ok(a) => {
                    profile.dtmf.insert(d, a);
                }
                Err(e) => self.value_error(s, action, e),
            }
        }
        profile
    }

    /// An agent's `on_model_failure`: `hangup`, `take_message` or `transfer:NAME|URI`, with
    /// the admin's recording or the shipped default for the action.
    fn model_failure(
        &mut self,
        s: Src<'_>,
        profile: &AgentProfile,
        raw: &RawFailure,
        span: &Span,
    ) -> Option<ModelFailure> {
        let name = &profile.name;
        let Some(action) = &raw.action else {
            self.error(
                s,
                span,
                format!("the on_model_failure of agent `{name}` has no `action`"),
                Some(FAILURE_HINT.to_owned()),
            );
            return None;
        };
        let then = match parse_failure_action(&action.value, &profile.transfers) {
            Ok(then) => then,
            Err(e) => {
                self.value_error(s, action, e);
                return None;
            }
        };
        let then = match (then, &raw.max_message_secs) {
            (AfterMessage::TakeMessage { .. }, Some(m)) => match m.value {
                n @ 5..=3600 => AfterMessage::TakeMessage {
                    max: std::time::Duration::from_secs(n.unsigned_abs()),
                },
                _ => {
                    self.error(s, &m.span, "`max_message_secs` must be 5 to 3600", None);
                    return None;
                }
            },
            (_, Some(m)) => {
                self.error(
                    s,
                    &m.span,
                    "`max_message_secs` only applies to action = \"take_message\"",
                    None,
                );
                return None;
            }
            (then, None) => then,
        };
        let audio = match &raw.audio {
            Some(a) => {
                let path = s.resolve(&a.value);
                let bytes = self.read_bytes(s, a, &path, "on_model_failure audio")?;
                match MessageAudio::decode(&path, &bytes) {
                    Ok(decoded) => Arc::new(decoded),
                    Err(e) => {
                        self.error(
                            s,
                            &a.span,
                            format!("on_model_failure audio {}: {}", path.display(), e.message),
                            e.hint,
                        );
                        return None;
                    }
                }
            }
            None => default_failure_audio(&then),
        };
        Some(ModelFailure { audio, then })
    }

    fn vad(&mut self, s: Src<'_>, ra: &RawAgent) -> VadSettings {
        let mut vad = VadSettings::default();
        if let Some(t) = &ra.vad.threshold {
            if (0.0..=1.0).contains(&t.value) {
                vad.threshold = t.value;
            } else {
                self.error(
                    s,
                    &t.span,
                    format!("vad.threshold must be between 0.0 and 1.0, not {}", t.value),
                    None,
                );
            }
        }
        let ms = |v: &Option<Sp<i64>>, key: &str, max: i64, this: &mut Self| -> Option<u32> {
            let v = v.as_ref()?;
            match u32::try_from(v.value) {
                Ok(n) if v.value <= max => Some(n),
                _ => {
                    this.error(
                        s,
                        &v.span,
                        format!("vad.{key} must be between 0 and {max} ms, not {}", v.value),
                        None,
                    );
                    None
                }
            }
        };
        if let Some(n) = ms(&ra.vad.prefix_padding_ms, "prefix_padding_ms", 5_000, self) {
            vad.prefix_padding_ms = n;
        }
        if let Some(n) = ms(
            &ra.vad.silence_duration_ms,
            "silence_duration_ms",
            10_000,
            self,
        ) {
            vad.silence_duration_ms = n;
        }
        vad
    }

    fn patterns(&mut self, s: Src<'_>, list: &Option<Sp<Vec<RawPattern>>>) -> Vec<NumberMatch> {
        let Some(list) = list else { return Vec::new() };
        let mut out = Vec::new();
        for p in &list.value {
            let r = match p.kind {
                PatternKind::Shorthand => NumberMatch::shorthand(&p.text.value),
                PatternKind::Exact => NumberMatch::literal(&p.text.value, false),
                PatternKind::Prefix => NumberMatch::literal(&p.text.value, true),
                PatternKind::Regex => NumberMatch::regex(&p.text.value),
            };
            match r {
                Ok(m) => out.push(m),
                Err(e) => self.value_error(s, &p.text, e),
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn route(
        &mut self,
        s: Src<'_>,
        rr: &RawRoute,
        name: String,
        agents: &BTreeMap<String, (Arc<AgentProfile>, PathBuf, usize, Span)>,
        schedules: &BTreeMap<String, (Arc<Schedule>, PathBuf, usize)>,
        used_agents: &mut BTreeSet<String>,
        used_schedules: &mut BTreeSet<String>,
    ) -> Option<Route> {
        let errors_before = self.errors.len();
        let to = self.patterns(s, &rr.to);
        let from = self.patterns(s, &rr.from);
        let mut resolve = |list: &[Sp<String>], key: &str, this: &mut Self| -> Vec<Arc<Schedule>> {
            let mut out = Vec::new();
            for n in list {
                match schedules.get(n.value.trim()) {
                    Some((sch, _, _)) => {
                        used_schedules.insert(n.value.trim().to_owned());
                        out.push(sch.clone());
                    }
                    None => {
                        let hint =
                            this.unknown_name_hint(&n.value, schedules.keys().map(String::as_str));
                        let msg =
                            format!("`{key}` names schedule `{}`, which is not defined", n.value);
                        this.error(s, &n.span, msg, Some(hint));
                    }
                }
            }
            out
        };
        let when = resolve(&rr.when, "when", self);
        let unless = resolve(&rr.unless, "unless", self);

        // Exactly one action.
        let actions: Vec<(&str, &Span)> = [
            rr.agent.as_ref().map(|a| ("agent", &a.span)),
            rr.transfer.as_ref().map(|a| ("transfer", &a.span)),
            rr.reject.as_ref().map(|a| ("reject", &a.span)),
            rr.message.as_ref().map(|a| ("message", &a.span)),
        ]
        .into_iter()
        .flatten()
        .collect();
        if actions.is_empty() && rr.unknown_keys == 0 {
            self.error(
                s,
                &rr.span,
                format!("route `{name}` has no action"),
                Some("add one of agent = \"NAME\", transfer = \"sip:…\", reject = 486 or message = \"…\"".to_owned()),
            );
        } else if actions.len() > 1 {
            let names: Vec<String> = actions.iter().map(|(k, _)| format!("`{k}`")).collect();
            let last = actions[actions.len() - 1].1;
            self.error(
                s,
                last,
                format!(
                    "route `{name}` has more than one action ({})",
                    names.join(", ")
                ),
                Some(
                    "a route does one thing; write two routes with different conditions".to_owned(),
                ),
            );
        }
        if let (Some(r), None) = (&rr.reason, &rr.reject) {
            self.error(
                s,
                &r.span,
                "`reason` only applies to `reject`",
                Some("remove it, or add reject = CODE".to_owned()),
            );
        }

        let mut action = None;
        if let Some(a) = &rr.agent {
            match agents.get(a.value.trim()) {
                Some((profile, ..)) => {
                    used_agents.insert(a.value.trim().to_owned());
                    action = Some(Action::Agent(profile.clone()));
                }
                None => {
                    let hint = self.unknown_name_hint(&a.value, agents.keys().map(String::as_str));
                    self.error(
                        s,
                        &a.span,
                        format!(
                            "route `{name}` uses agent `{}`, which is not defined",
                            a.value
                        ),
                        Some(hint),
                    );
                }
            }
        }
        if let Some(t) = &rr.transfer {
            match check_uri(t.value.trim()) {
                Ok(()) => {
                    action = Some(Action::Transfer {
                        target: t.value.trim().to_owned(),
                    })
                }
                Err(e) => self.value_error(s, t, e),
            }
        }
        if let Some(code) = &rr.reject {
            match u16::try_from(code.value) {
                Ok(c) if (400..=699).contains(&c) => {
                    let reason = match &rr.reason {
                        Some(r) if r.value.contains(['\r', '\n']) => {
                            self.error(s, &r.span, "`reason` must be a single line", None);
                            String::new()
                        }
                        Some(r) if !r.value.trim().is_empty() => r.value.trim().to_owned(),
                        _ => reason_phrase(c).to_owned(),
                    };
                    action = Some(Action::Reject { code: c, reason });
                }
                _ => self.error(
                    s,
                    &code.span,
                    format!("`reject` must be a SIP status code from 400 to 699, not {}", code.value),
                    Some("e.g. 486 (busy), 480 (temporarily unavailable), 403 (forbidden), 603 (decline); use `transfer` to redirect".to_owned()),
                ),
            }
        }
        if let Some(m) = &rr.message {
            let text = m
                .value
                .text
                .as_ref()
                .map(|t| t.value.trim().to_owned())
                .filter(|t| !t.is_empty());
            let mut audio = None;
            if let Some(a) = &m.value.audio {
                let path = s.resolve(&a.value);
                if let Some(bytes) = self.read_bytes(s, a, &path, "message audio") {
                    match MessageAudio::decode(&path, &bytes) {
                        Ok(decoded) => audio = Some(Arc::new(decoded)),
                        Err(e) => self.error(
                            s,
                            &a.span,
                            format!("message audio {}: {}", path.display(), e.message),
                            e.hint,
                        ),
                    }
                }
            }
            if text.is_none() && m.value.audio.is_none() && m.value.unknown_keys == 0 {
                self.error(
                    s,
                    &m.span,
                    format!("the message of route `{name}` has no `text` and no `audio`"),
                    Some(
                        "add text = \"…\" (spoken by the voice) or audio = \"closed.wav\""
                            .to_owned(),
                    ),
                );
            }
            let voice = self.voice(s, m.value.voice.as_ref());
            let model = self
                .non_empty(s, m.value.model.as_ref(), "model")
                .unwrap_or_else(|| DEFAULT_MODEL.to_owned());
            let then = match &m.value.transfer {
                None => AfterMessage::Hangup,
                Some(t) => match check_uri(t.value.trim()) {
                    Ok(()) => AfterMessage::Transfer {
                        target: t.value.trim().to_owned(),
                    },
                    Err(e) => {
                        self.value_error(s, t, e);
                        AfterMessage::Hangup
                    }
                },
            };
            action = Some(Action::Message {
                text,
                audio,
                voice,
                model,
                then,
            });
        }
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Route {
            name,
            file: s.path.to_owned(),
            line: s.line(&rr.span),
            to,
            from,
            when,
            unless,
            action: action?,
        })
    }
}

/// Byte offset of the start of 1-based `line` in `text`.
fn line_offset(text: &str, line: usize) -> usize {
    if line <= 1 {
        return 0;
    }
    text.match_indices('\n')
        .nth(line - 2)
        .map_or(text.len(), |(i, _)| i + 1)
}

/// The standard reason phrase of a SIP status code (RFC 3261 §21 and friends).
pub(crate) fn reason_phrase(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        480 => "Temporarily Unavailable",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        c if c < 500 => "Request Failure",
        c if c < 600 => "Server Failure",
        _ => "Global Failure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialplan::{AudioSamples, CallInfo, DtmfAction};
    use chrono::{TimeZone, Utc};

    fn compile(text: &str) -> Result<Dialplan, Vec<Error>> {
        Dialplan::compile(&[(PathBuf::from("t.toml"), text.to_owned())])
    }

    fn brief(errors: &[Error]) -> Vec<String> {
        errors.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn a_full_agent_profile_compiles_with_every_field() {
        let plan = compile(
            r##"
[[routes]]
to = "*"
agent = "rec"

[agents.rec]
instructions = "  Be nice.  "
greeting = "Hello!"
voice = "cedar"
model = "gpt-realtime-mini"
language = "es"
transcription_model = "gpt-4o-mini-transcribe"
tools = ["book_appointment", "check_availability", "transfer_call", "check_availability"]
calendar = "bright-smile"
max_duration = "20m"
echo_gate = false
[agents.rec.vad]
threshold = 0.6
silence_duration_ms = 700
[agents.rec.transfers]
front_desk = "sip:desk@pbx.example.com"
[agents.rec.dtmf]
0 = "transfer:front_desk"
"#" = "hangup"
"*" = "forward"
"##,
        )
        .expect("valid");
        let a = plan.agent("rec").expect("agent");
        assert_eq!(a.instructions, "Be nice.");
        assert_eq!(
            (a.voice.as_str(), a.model.as_str(), a.greeting.as_str()),
            ("cedar", "gpt-realtime-mini", "Hello!")
        );
        assert_eq!(a.language.as_deref(), Some("es"));
        assert_eq!(
            a.tools,
            [
                Tool::CheckAvailability,
                Tool::BookAppointment,
                Tool::TransferCall
            ]
        );
        assert_eq!(a.calendar.as_deref(), Some("bright-smile"));
        assert_eq!(a.max_duration, std::time::Duration::from_secs(1200));
        assert!(!a.echo_gate);
        assert_eq!(
            a.vad,
            VadSettings {
                threshold: 0.6,
                prefix_padding_ms: 300,
                silence_duration_ms: 700
            }
        );
        assert_eq!(
            a.dtmf_action('0'),
            Some(&DtmfAction::Transfer {
                name: Some("front_desk".into()),
                target: "sip:desk@pbx.example.com".into()
            })
        );
        assert_eq!(a.dtmf_action('#'), Some(&DtmfAction::Hangup));
        assert_eq!(a.dtmf_action('5'), None);
        assert!(plan.warnings().is_empty(), "{:?}", plan.warnings());
    }

    #[test]
    fn defaults_are_sensible() {
        let plan = compile("[[routes]]\nagent = \"a\"\n[agents.a]\ninstructions = \"x\"\n")
            .expect("valid");
        let a = plan.agent("a").expect("agent");
        assert_eq!(a.voice, DEFAULT_VOICE);
        assert_eq!(a.model, DEFAULT_MODEL);
        assert_eq!(a.greeting, "");
        assert_eq!(a.vad, VadSettings::default());
        assert!(a.echo_gate, "the echo gate is on by default");
        assert!(
            !a.allows(Tool::TransferCall),
            "no transfer targets, no transfer tool"
        );
        assert!(a.allows(Tool::BookAppointment) && a.allows(Tool::EndCall));
        assert_eq!(a.max_duration, crate::dialplan::DEFAULT_MAX_DURATION);
        assert_eq!(plan.timezone(), chrono_tz::UTC);
        assert_eq!(plan.routes()[0].name, "t.toml#1");
        assert!(plan.routes()[0].to.is_empty(), "no `to`: every number");
    }

    #[test]
    fn every_error_of_every_file_is_collected_in_order() {
        let a = "[[routes]]\nto = { regex = '^(1' }\nagent = \"ghost\"\nwhen = \"office\"\n\n[agents.x]\ninstructions = \"x\"\nvoice = \"\"\ntools = [\"book\", \"end_call\"]\n";
        let b = "[settings]\ntimezone = \"Europe/Berln\"\n[schedules.ofice]\nhours = [\"mon-fri 8:00-18:00\", \"sun 09:00-25:00\"]\nholidays = [\"2026-02-30\"]\n[[routes]]\nreject = 200\n[[routes]]\nagent = \"x\"\ntransfer = \"+15550100\"\n";
        let errs = Dialplan::compile(&[
            (PathBuf::from("a.toml"), a.to_owned()),
            (PathBuf::from("b.toml"), b.to_owned()),
        ])
        .expect_err("invalid");
        assert_eq!(
            brief(&errs),
            [
                "a.toml:2:18: invalid regex: unclosed group; hint: write regexes in single quotes ('…') so that backslashes need no escaping",
                "a.toml:3:9: route `a.toml#1` uses agent `ghost`, which is not defined; hint: expected one of `x`",
                "a.toml:4:8: `when` names schedule `office`, which is not defined; hint: did you mean `ofice`?",
                "a.toml:8:9: `voice` is empty; hint: remove it to use the default, `marin`",
                "a.toml:9:10: unknown tool `book`; hint: expected one of `check_availability`, `book_appointment`, `find_appointments`, `reschedule_appointment`, `cancel_appointment`, `get_business_info`, `transfer_call`, `end_call`",
                "b.toml:2:12: unknown time zone `Europe/Berln`; hint: did you mean `Europe/Berlin`?",
                "b.toml:4:37: `25:00` is not a time; hint: write times as HH:MM, from 00:00 to 24:00",
                "b.toml:5:14: `2026-02-30` is not a valid date; hint: write a day as YYYY-MM-DD, a yearly day as MM-DD, or an inclusive range as FROM..TO (e.g. \"2026-12-24..2026-12-31\" or \"12-24..01-01\")",
                "b.toml:7:10: `reject` must be a SIP status code from 400 to 699, not 200; hint: e.g. 486 (busy), 480 (temporarily unavailable), 403 (forbidden), 603 (decline); use `transfer` to redirect",
                "b.toml:10:12: route `b.toml#2` has more than one action (`agent`, `transfer`); hint: a route does one thing; write two routes with different conditions",
                "b.toml:10:12: `+15550100` is not a SIP URI; hint: write a URI: \"sip:+15550100@YOUR-PBX\" or \"tel:+15550100\"",
            ]
        );
    }

    #[test]
    fn names_are_shared_across_files_and_duplicates_are_errors() {
        let a =
            "[agents.rec]\ninstructions = \"a\"\n[schedules.open]\nhours = \"daily 08:00-18:00\"\n";
        let b = "[[routes]]\nname = \"main\"\nwhen = \"open\"\nagent = \"rec\"\n[[routes]]\nname = \"main\"\nagent = \"rec\"\n[agents.rec]\ninstructions = \"b\"\n";
        let errs = Dialplan::compile(&[
            (PathBuf::from("a.toml"), a.to_owned()),
            (PathBuf::from("b.toml"), b.to_owned()),
        ])
        .expect_err("duplicates");
        assert_eq!(
            brief(&errs),
            [
                "b.toml:6:8: route name `main` is already used; hint: it is first used at b.toml:1; route names must be unique",
                "b.toml:8:9: agent `rec` is already defined; hint: it is first defined at a.toml:1; rename one of them",
            ]
        );
    }

    #[test]
    fn instructions_files_and_audio_are_read_relative_to_the_dialplan_file() {
        let text = "[[routes]]\nto = \"1\"\nagent = \"rec\"\n[[routes]]\nmessage = { audio = \"audio/closed.ulaw\", text = \"Closed.\" }\n[agents.rec]\ninstructions_file = \"prompts/rec.md\"\n";
        let files: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::from([
            (
                PathBuf::from("plans/prompts/rec.md"),
                b"  From a file.\n".to_vec(),
            ),
            (PathBuf::from("plans/audio/closed.ulaw"), vec![0xff; 800]),
        ]);
        let plan = Dialplan::compile_with(
            &[(PathBuf::from("plans/main.toml"), text.to_owned())],
            &files,
        )
        .expect("valid");
        let a = plan.agent("rec").expect("agent");
        assert_eq!(a.instructions, "From a file.");
        assert_eq!(
            a.instructions_file.as_deref(),
            Some(Path::new("plans/prompts/rec.md"))
        );
        assert_eq!(
            plan.dependencies(),
            [
                PathBuf::from("plans/prompts/rec.md"),
                PathBuf::from("plans/audio/closed.ulaw")
            ]
        );
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let d = plan
            .evaluate(&CallInfo::new(Some("2"), None), now)
            .expect("message");
        match d.action {
            Action::Message {
                audio: Some(audio),
                text,
                then,
                ..
            } => {
                assert!(matches!(audio.samples, AudioSamples::Mulaw(_)));
                assert_eq!(audio.duration(), std::time::Duration::from_millis(100));
                assert_eq!(text.as_deref(), Some("Closed."));
                assert_eq!(then, AfterMessage::Hangup);
            }
            other => panic!("{other:?}"),
        }
        // The version covers referenced files too.
        let mut changed = files.clone();
        changed.insert(PathBuf::from("plans/prompts/rec.md"), b"Changed.".to_vec());
        let plan2 = Dialplan::compile_with(
            &[(PathBuf::from("plans/main.toml"), text.to_owned())],
            &changed,
        )
        .expect("valid");
        assert_ne!(plan.version(), plan2.version());

        let errs = Dialplan::compile(&[(PathBuf::from("plans/main.toml"), text.to_owned())])
            .expect_err("no files");
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0]
                .message
                .starts_with("cannot read message audio plans/audio/closed.ulaw"),
            "{errs:?}"
        );
        assert_eq!(
            errs[1].hint.as_deref(),
            Some("paths are relative to the directory of main.toml")
        );
    }

    #[test]
    fn route_actions_compile() {
        let plan = compile(
            r#"
[[routes]]
to = "1"
transfer = "sip:oncall@pbx.example.com"
[[routes]]
to = "2"
reject = 486
[[routes]]
to = "3"
reject = 403
reason = "Not Here"
[[routes]]
to = "4"
[routes.message]
text = "We are closed."
voice = "coral"
transfer = "sip:voicemail@pbx.example.com"
"#,
        )
        .expect("valid");
        let actions: Vec<String> = plan.routes().iter().map(|r| r.action.to_string()).collect();
        assert_eq!(
            actions,
            [
                "transfer sip:oncall@pbx.example.com",
                "reject 486 Busy Here",
                "reject 403 Not Here",
                "message \"We are closed.\" (voice coral) then transfer sip:voicemail@pbx.example.com",
            ]
        );
    }

    #[test]
    fn warnings_do_not_block_the_plan() {
        let plan = compile(
            "[[routes]]\nname = \"all\"\nagent = \"a\"\n[[routes]]\nname = \"late\"\nto = \"1\"\nagent = \"a\"\n[agents.a]\ninstructions = \"x\"\nvoice = \"maryn\"\n[agents.b]\ninstructions = \"y\"\n[schedules.s]\nhours = \"daily 08:00-09:00\"\n",
        )
        .expect("valid with warnings");
        assert_eq!(
            brief(plan.warnings()),
            [
                "t.toml:4:1: route `late` can never match; hint: route `all` before it matches every call; move this route before it",
                "t.toml:10:9: `maryn` is not a known Realtime voice; hint: did you mean `marin`?",
                "t.toml:11:9: agent `b` is not used by any route",
                "t.toml:13:1: schedule `s` is not used by any route",
                "t.toml:13:12: schedule `s` uses UTC because no time zone is set; hint: add [settings] timezone = \"America/New_York\" (your business's IANA zone)",
            ]
        );
    }

    #[test]
    fn empty_and_broken_plans() {
        let errs = compile("# nothing\n").expect_err("no routes");
        assert_eq!(
            errs[0].message,
            "the dialplan has no [[routes]], so no call could be answered"
        );
        let errs = Dialplan::compile(&[
            (
                PathBuf::from("a.toml"),
                "[[routes]]\nagent = \"rec\"\n".to_owned(),
            ),
            (
                PathBuf::from("b.toml"),
                "[agents.rec\ninstructions = \"x\"\n".to_owned(),
            ),
        ])
        .expect_err("broken");
        assert_eq!(
            errs[0].hint.as_deref(),
            Some("none is defined (b.toml has TOML errors, so its definitions were not read)")
        );
        assert!(errs[1].message.starts_with("invalid TOML"), "{errs:?}");
    }

    #[test]
    fn the_version_is_a_stable_hash_of_the_sources() {
        let src = "[[routes]]\nagent = \"a\"\n[agents.a]\ninstructions = \"x\"\n";
        let v1 = compile(src).expect("valid").version().to_owned();
        assert_eq!(v1.len(), 16);
        assert_eq!(compile(src).expect("valid").version(), v1);
        assert_ne!(
            compile(&format!("{src}# edit\n")).expect("valid").version(),
            v1
        );
    }
}

#[cfg(test)]
mod resilience_tests {
    use super::*;
    use std::time::Duration;

    fn compile(text: &str) -> Result<Dialplan, Vec<Error>> {
        Dialplan::compile(&[(PathBuf::from("t.toml"), text.to_owned())])
    }

    #[test]
    fn endpoints_fallback_and_idle_settings_compile() {
        let text = r#"
[[routes]]
agent = "live"
[[routes]]
to = "2"
agent = "ga"
[agents.live]
instructions = "x"
endpoints = ["azure-live", "openai"]
idle_prompt_secs = 8
idle_hangup_secs = 0
on_model_failure = "transfer:desk"
[agents.live.transfers]
desk = "sip:desk@pbx"
[agents.ga]
instructions = "y"
endpoint = "openai"
on_model_failure = { action = "take_message", max_message_secs = 30 }
"#;
        let wrong = text.replace(
            "\"transfer:desk\"\n",
            "{ action = \"transfer:desk\", max_message_secs = 30 }\n",
        );
        let errors = compile(&wrong).expect_err("max_message_secs with transfer");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0]
            .to_string()
            .contains("only applies to action = \"take_message\""));

        let plan = compile(text).expect("valid");
        let live = plan.agent("live").expect("live");
        assert_eq!(live.endpoints, ["azure-live", "openai"]);
        assert_eq!(live.idle_prompt, Some(Duration::from_secs(8)));
        assert_eq!(live.idle_hangup, None);
        let f = live.on_model_failure.as_ref().expect("fallback");
        assert_eq!(
            f.then,
            AfterMessage::Transfer {
                target: "sip:desk@pbx".into()
            }
        );
        assert!(
            f.audio.duration() > Duration::from_secs(3),
            "the shipped recording"
        );
        let ga = plan.agent("ga").expect("ga");
        assert_eq!(ga.endpoints, ["openai"]);
        assert_eq!(ga.idle_prompt, Some(crate::dialplan::DEFAULT_IDLE_PROMPT));
        assert_eq!(
            ga.on_model_failure.as_ref().map(|f| f.then.clone()),
            Some(AfterMessage::TakeMessage {
                max: Duration::from_secs(30)
            })
        );

        // Names are checked against the configured endpoints, where they are written.
        let known = vec!["openai".to_owned(), "azure_live".to_owned()];
        let errors = plan.check_endpoints(&known);
        assert_eq!(errors.len(), 1);
        let e = errors[0].to_string();
        assert!(e.starts_with("t.toml:9:"), "{e}");
        assert!(
            e.contains("`azure-live` is not a configured endpoint"),
            "{e}"
        );
        assert!(e.contains("did you mean `azure_live`?"), "{e}");
        assert!(plan
            .check_endpoints(&["openai".into(), "azure-live".into()])
            .is_empty());
    }

    #[test]
    fn bad_resilience_settings_are_errors() {
        let errors = compile(
            r#"
[[routes]]
agent = "a"
[agents.a]
instructions = "x"
endpoint = "one"
endpoints = ["two"]
idle_prompt_secs = 99999
on_model_failure = "take_mesage"
"#,
        )
        .expect_err("invalid");
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let all = text.join("\n");
        assert!(all.contains("has both `endpoint` and `endpoints`"), "{all}");
        assert!(
            all.contains("`idle_prompt_secs` must be 0 (off) to 3600 seconds"),
            "{all}"
        );
        assert!(
            all.contains("unknown on_model_failure action `take_mesage`"),
            "{all}"
        );
    }
}
