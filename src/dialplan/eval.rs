//! Evaluate stage: which route and action apply to a call at an instant.
//!
//! Pure: the call and `now` (UTC) are parameters, nothing is read from a clock, a file or the
//! network. Routes are tried in order; the first whose conditions all hold wins:
//! `to` (any pattern matches the called number) and `from` (any pattern matches the caller) and
//! `when` (every schedule active) and `unless` (no schedule active). Unit-tested directly.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{AgentProfile, Dialplan, MessageAudio, NumberMatch, Route, Schedule};

/// What the SIP layer knows about a new call, for routing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallInfo {
    /// The called number: the Request-URI user part, or the To user part when the Request-URI
    /// has none (the SIP layer applies that fallback). `None`: no number at all.
    pub called: Option<String>,
    /// The caller's number (P-Asserted-Identity or From user part); `None`: anonymous.
    pub caller: Option<String>,
}

impl CallInfo {
    /// A call to `called` from `caller`.
    pub fn new(called: Option<&str>, caller: Option<&str>) -> CallInfo {
        CallInfo {
            called: called.map(str::to_owned),
            caller: caller.map(str::to_owned),
        }
    }
}

/// What happens after a message has been played.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterMessage {
    /// Hang up (send BYE).
    Hangup,
    /// Transfer the (answered) call to this SIP URI with REFER.
    Transfer {
        /// SIP URI.
        target: String,
    },
    /// Record what the caller says, for at most `max`, into a message (the call task stores
    /// it: a WAV file and a `messages` row); the caller's BYE ends it too.
    TakeMessage {
        /// Longest message.
        max: std::time::Duration,
    },
}

/// What to do with a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Answer and connect the caller to an agent profile (a Realtime session).
    Agent(Arc<AgentProfile>),
    /// Send the call elsewhere: a 302 (Contact: `target`) before answering; REFER once answered.
    Transfer {
        /// SIP URI.
        target: String,
    },
    /// Refuse the call with a final SIP response.
    Reject {
        /// SIP status code, 400–699.
        code: u16,
        /// Reason phrase.
        reason: String,
    },
    /// Answer, play a message, then hang up or transfer.
    Message {
        /// Text to speak (with `voice` and `model` through a Realtime session) when there is no
        /// `audio`; also the transcript of the audio for logs.
        text: Option<String>,
        /// Recorded audio, played instead of speaking `text`.
        audio: Option<Arc<MessageAudio>>,
        /// Voice that speaks `text`.
        voice: String,
        /// Realtime model that speaks `text`.
        model: String,
        /// What follows the message.
        then: AfterMessage,
    },
}

/// The route a call takes and its action.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The route's name, for logs and the call record.
    pub route_name: String,
    /// 0-based index of the route in [`Dialplan::routes`].
    pub route_index: usize,
    /// What to do.
    pub action: Action,
}

/// Whether one route applied to a call, for `dialplan test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteCheck {
    /// All conditions hold: this route is taken.
    Matched,
    /// The first condition that does not hold, explained.
    Skipped(String),
}

impl Dialplan {
    /// The route and action for `call` at `now`: the first route whose conditions all hold, or
    /// `None` (the call task should then reject with 404).
    pub fn evaluate(&self, call: &CallInfo, now: DateTime<Utc>) -> Option<Decision> {
        self.routes
            .iter()
            .position(|r| failure(r, call, now).is_none())
            .map(|i| Decision {
                route_name: self.routes[i].name.clone(),
                route_index: i,
                action: self.routes[i].action.clone(),
            })
    }

    /// Route by route, up to the first match, why each route was skipped or taken.
    pub fn explain(&self, call: &CallInfo, now: DateTime<Utc>) -> Vec<(&Route, RouteCheck)> {
        let mut out = Vec::new();
        for r in &self.routes {
            match failure(r, call, now) {
                None => {
                    out.push((r, RouteCheck::Matched));
                    break;
                }
                Some(f) => out.push((r, RouteCheck::Skipped(f.explain(r, call, now)))),
            }
        }
        out
    }
}

/// The first condition of `route` that does not hold.
enum Failure<'r> {
    To,
    From,
    When(&'r Schedule),
    Unless(&'r Schedule),
}

fn any_matches(patterns: &[NumberMatch], number: Option<&str>) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| p.matches(number))
}

fn failure<'r>(route: &'r Route, call: &CallInfo, now: DateTime<Utc>) -> Option<Failure<'r>> {
    if !any_matches(&route.to, call.called.as_deref()) {
        return Some(Failure::To);
    }
    if !any_matches(&route.from, call.caller.as_deref()) {
        return Some(Failure::From);
    }
    if let Some(s) = route.when.iter().find(|s| !s.is_active(now)) {
        return Some(Failure::When(s));
    }
    if let Some(s) = route.unless.iter().find(|s| s.is_active(now)) {
        return Some(Failure::Unless(s));
    }
    None
}

fn patterns(ps: &[NumberMatch]) -> String {
    ps.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Failure<'_> {
    fn explain(&self, route: &Route, call: &CallInfo, now: DateTime<Utc>) -> String {
        match self {
            Failure::To => match &call.called {
                Some(n) => format!(
                    "called number {n} does not match to = {}",
                    patterns(&route.to)
                ),
                None => format!(
                    "the call has no called number; to = {} needs one",
                    patterns(&route.to)
                ),
            },
            Failure::From => match &call.caller {
                Some(n) => format!("caller {n} does not match from = {}", patterns(&route.from)),
                None => format!(
                    "the caller is anonymous; from = {} needs a number",
                    patterns(&route.from)
                ),
            },
            Failure::When(s) => format!(
                "when: schedule {} is closed at {}",
                s.name,
                s.local_time(now)
            ),
            Failure::Unless(s) => format!(
                "unless: schedule {} is open at {}",
                s.name,
                s.local_time(now)
            ),
        }
    }
}

/// `text` cut to `max` characters with an ellipsis.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        // Prefer to cut between words, unless that loses more than half of the text.
        let cut = match cut.rfind(' ') {
            Some(i) if i > cut.len() / 2 => &cut[..i],
            _ => cut.as_str(),
        };
        format!("{}…", cut.trim_end())
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    )
}

impl fmt::Display for Action {
    /// One line: `agent receptionist`, `transfer sip:…`, `reject 486 Busy Here`,
    /// `message "We are closed…" then hang up`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Agent(a) => write!(f, "agent {}", a.name),
            Action::Transfer { target } => write!(f, "transfer {target}"),
            Action::Reject { code, reason } => write!(f, "reject {code} {reason}"),
            Action::Message {
                text,
                audio,
                voice,
                then,
                ..
            } => {
                f.write_str("message")?;
                match (audio, text) {
                    (Some(a), _) => write!(f, " audio {}", file_name(&a.path))?,
                    (None, Some(t)) => write!(f, " \"{}\" (voice {voice})", shorten(t, 48))?,
                    (None, None) => {}
                }
                match then {
                    AfterMessage::Hangup => f.write_str(" then hang up"),
                    AfterMessage::Transfer { target } => write!(f, " then transfer {target}"),
                    AfterMessage::TakeMessage { max } => {
                        write!(f, " then take a message of up to {} s", max.as_secs())
                    }
                }
            }
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.route_name, self.action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialplan::{DateSpec, Hours};
    use chrono::TimeZone;
    use std::path::PathBuf;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("valid")
    }

    fn agent(name: &str) -> Action {
        Action::Agent(Arc::new(AgentProfile {
            name: name.into(),
            ..AgentProfile::default()
        }))
    }

    fn route(name: &str, to: Vec<NumberMatch>, from: Vec<NumberMatch>, action: Action) -> Route {
        Route {
            name: name.into(),
            file: PathBuf::from("t.toml"),
            line: 1,
            to,
            from,
            when: vec![],
            unless: vec![],
            action,
        }
    }

    fn plan(routes: Vec<Route>) -> Dialplan {
        Dialplan {
            routes,
            agents: Default::default(),
            schedules: Default::default(),
            timezone: chrono_tz::UTC,
            version: "0".into(),
            files: vec![],
            dependencies: vec![],
            warnings: vec![],
            endpoint_refs: vec![],
        }
    }

    fn taken(
        p: &Dialplan,
        to: Option<&str>,
        from: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<String> {
        p.evaluate(&CallInfo::new(to, from), now)
            .map(|d| d.route_name)
    }

    #[test]
    fn caller_conditions_and_anonymous_callers() {
        let vip = NumberMatch::shorthand("+1555777*").expect("valid");
        let p = plan(vec![
            route("vip", vec![], vec![vip], agent("vip")),
            route("rest", vec![NumberMatch::Any], vec![], agent("main")),
        ]);
        let now = utc(2026, 1, 1, 0, 0);
        assert_eq!(
            taken(&p, Some("100"), Some("+15557770001"), now).as_deref(),
            Some("vip")
        );
        assert_eq!(
            taken(&p, Some("100"), Some("+15550000000"), now).as_deref(),
            Some("rest")
        );
        assert_eq!(
            taken(&p, Some("100"), None, now).as_deref(),
            Some("rest"),
            "anonymous is not a VIP"
        );
        assert_eq!(
            taken(&p, None, None, now).as_deref(),
            Some("rest"),
            "`*` matches calls without a number"
        );
    }

    #[test]
    fn when_and_unless_use_the_schedule_at_now() {
        let open = Arc::new(Schedule {
            name: "open".into(),
            timezone: chrono_tz::America::New_York,
            hours: Hours::parse("mon-fri 09:00-17:00").expect("hours"),
            holidays: vec![DateSpec::parse("07-04").expect("date")],
            dates: vec![],
        });
        let mut day = route("day", vec![], vec![], agent("day"));
        day.when.push(open.clone());
        let mut night = route(
            "night",
            vec![],
            vec![],
            Action::Reject {
                code: 480,
                reason: "Temporarily Unavailable".into(),
            },
        );
        night.unless.push(open);
        let p = plan(vec![day, night]);
        // Mon 2026-07-06 13:00Z = 09:00 EDT.
        assert_eq!(
            taken(&p, None, None, utc(2026, 7, 6, 13, 0)).as_deref(),
            Some("day")
        );
        assert_eq!(
            taken(&p, None, None, utc(2026, 7, 6, 12, 59)).as_deref(),
            Some("night")
        );
        // Fri 2025-07-04 11:00 EDT is inside the hours, but a (yearly) holiday.
        assert_eq!(
            taken(&p, None, None, utc(2025, 7, 4, 15, 0)).as_deref(),
            Some("night")
        );
        assert_eq!(
            taken(&p, None, None, utc(2025, 7, 3, 15, 0)).as_deref(),
            Some("day")
        );
        let decision = p
            .evaluate(&CallInfo::default(), utc(2026, 7, 6, 12, 0))
            .expect("night");
        assert_eq!(
            decision.to_string(),
            "night: reject 480 Temporarily Unavailable"
        );
        assert_eq!(decision.route_index, 1);
        let why = p.explain(&CallInfo::default(), utc(2026, 7, 6, 12, 0));
        assert_eq!(
            why[0].1,
            RouteCheck::Skipped("when: schedule open is closed at Mon 2026-07-06 08:00 EDT".into())
        );
        assert_eq!(why[1].1, RouteCheck::Matched);
    }

    #[test]
    fn no_route_is_none_and_explained() {
        let p = plan(vec![route(
            "main",
            vec![NumberMatch::shorthand("100").expect("valid")],
            vec![],
            agent("a"),
        )]);
        assert!(p
            .evaluate(&CallInfo::new(Some("200"), None), utc(2026, 1, 1, 0, 0))
            .is_none());
        let why = p.explain(&CallInfo::new(None, None), utc(2026, 1, 1, 0, 0));
        assert_eq!(
            why[0].1,
            RouteCheck::Skipped("the call has no called number; to = 100 needs one".into())
        );
    }

    #[test]
    fn actions_display_on_one_line() {
        let m = Action::Message {
            text: Some("We are closed for the holidays.\nPlease call again on Monday, or leave a message after the tone.".into()),
            audio: None,
            voice: "marin".into(),
            model: "gpt-realtime".into(),
            then: AfterMessage::Transfer {
                target: "sip:vm@pbx".into(),
            },
        };
        assert_eq!(
            m.to_string(),
            "message \"We are closed for the holidays. Please call…\" (voice marin) then transfer sip:vm@pbx"
        );
        assert_eq!(agent("x").to_string(), "agent x");
    }
}
