//! Agent profiles: how the voice model behaves on a call, and the value checks their keys need
//! (tool names, durations, language tags, SIP URIs, DTMF maps). Pure: no I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::hint;
use super::ValueError;

/// Default Realtime model for profiles that do not name one (all model defaults:
/// [`crate::realtime::models`]).
pub const DEFAULT_MODEL: &str = crate::realtime::models::DEFAULT_REALTIME_MODEL;
/// Default voice.
pub const DEFAULT_VOICE: &str = "marin";
/// Default maximum call duration of an agent call (`max_duration`).
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(15 * 60);
/// Shortest and longest `max_duration` accepted.
const MAX_DURATION_RANGE: (Duration, Duration) =
    (Duration::from_secs(10), Duration::from_secs(4 * 60 * 60));
/// Voices the Realtime API is known to offer; another name is a warning, not an error, as new
/// voices appear.
pub const KNOWN_VOICES: &[&str] = &[
    "alloy", "ash", "ballad", "cedar", "coral", "echo", "marin", "sage", "shimmer", "verse",
];

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

/// A function the model may call during a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tool {
    /// `check_availability`: free appointment slots.
    CheckAvailability,
    /// `book_appointment`.
    BookAppointment,
    /// `find_appointments`: by phone or name.
    FindAppointments,
    /// `reschedule_appointment`.
    RescheduleAppointment,
    /// `cancel_appointment`.
    CancelAppointment,
    /// `get_business_info`: hours, address, services.
    GetBusinessInfo,
    /// `transfer_call`: to one of the profile's named transfer targets.
    TransferCall,
    /// `end_call`: hang up after the goodbye.
    EndCall,
}

impl Tool {
    /// Every tool, in a stable order.
    pub const ALL: [Tool; 8] = [
        Tool::CheckAvailability,
        Tool::BookAppointment,
        Tool::FindAppointments,
        Tool::RescheduleAppointment,
        Tool::CancelAppointment,
        Tool::GetBusinessInfo,
        Tool::TransferCall,
        Tool::EndCall,
    ];

    /// The function name the model sees (`check_availability`, …).
    pub const fn name(self) -> &'static str {
        match self {
            Tool::CheckAvailability => "check_availability",
            Tool::BookAppointment => "book_appointment",
            Tool::FindAppointments => "find_appointments",
            Tool::RescheduleAppointment => "reschedule_appointment",
            Tool::CancelAppointment => "cancel_appointment",
            Tool::GetBusinessInfo => "get_business_info",
            Tool::TransferCall => "transfer_call",
            Tool::EndCall => "end_call",
        }
    }

    /// The tool with this function name.
    pub fn from_name(name: &str) -> Option<Tool> {
        Tool::ALL.into_iter().find(|t| t.name() == name)
    }

    pub(crate) fn parse(name: &str) -> Result<Tool, ValueError> {
        Tool::from_name(name.trim()).ok_or_else(|| {
            ValueError::new(format!("unknown tool `{name}`"))
                .hint(hint::did_you_mean(name, Tool::ALL.iter().map(|t| t.name())))
        })
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a DTMF digit pressed during an agent call does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtmfAction {
    /// `"hangup"`: end the call.
    Hangup,
    /// `"transfer:NAME"` (a name from the profile's `transfers`) or `"transfer:sip:…"`: transfer
    /// the call (REFER, as it is answered).
    Transfer {
        /// The transfer target's name, when one was used.
        name: Option<String>,
        /// SIP URI to transfer to.
        target: String,
    },
    /// `"forward"`: tell the model which digit the caller pressed.
    Forward,
}

impl fmt::Display for DtmfAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtmfAction::Hangup => f.write_str("hangup"),
            DtmfAction::Forward => f.write_str("forward"),
            DtmfAction::Transfer { name: Some(n), .. } => write!(f, "transfer:{n}"),
            DtmfAction::Transfer { name: None, target } => write!(f, "transfer:{target}"),
        }
    }
}

/// An agent profile: how the voice model behaves on a call.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentProfile {
    /// Profile name (the key under `[agents]`).
    pub name: String,
    /// System instructions for the model (inline, or the contents of `instructions_file`).
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
    /// The caller's language as a BCP 47 tag (`es`, `de-DE`), for transcription and the prompt;
    /// `None`: let the model follow the caller.
    pub language: Option<String>,
    /// The tools the model may call, in a stable order, without duplicates.
    pub tools: Vec<Tool>,
    /// Which business of the calendar the calendar tools use; `None`: the calendar's only one.
    pub calendar: Option<String>,
    /// Transfer targets by name (name → SIP URI), for `transfer_call` and DTMF.
    pub transfers: BTreeMap<String, String>,
    /// The call is ended (politely, by the call task) after this long.
    pub max_duration: Duration,
    /// DTMF digit (`0`–`9`, `*`, `#`, `A`–`D`) → action; other digits are ignored.
    pub dtmf: BTreeMap<char, DtmfAction>,
    /// Where the instructions were read from, when from a file.
    pub instructions_file: Option<PathBuf>,
    /// The model endpoints this agent's sessions may use, in the order to try them (names of
    /// `[[realtime.endpoints]]`); empty: every configured endpoint, in config order.
    pub endpoints: Vec<String>,
    /// What the caller gets when no endpoint gives a session (`on_model_failure`); `None`: the
    /// INVITE is refused with 503.
    pub on_model_failure: Option<ModelFailure>,
    /// Caller silence (while the agent is not speaking) after which the model is asked to check
    /// in; `None`: never.
    pub idle_prompt: Option<Duration>,
    /// Further caller silence after the check-in after which the agent says goodbye and hangs up
    /// (end reason `idle`); `None`: never.
    pub idle_hangup: Option<Duration>,
    /// `echo_gate`: caller audio explained by the echo of the agent's own voice reaches the model
    /// as silence (`media::echo`), so line echo neither interrupts the agent nor becomes a caller
    /// turn. On by default; `false` relays the caller's audio byte-exact at all times.
    pub echo_gate: bool,
}

/// Default `idle_prompt_secs`.
pub const DEFAULT_IDLE_PROMPT: Duration = Duration::from_secs(15);
/// Default `idle_hangup_secs`.
pub const DEFAULT_IDLE_HANGUP: Duration = Duration::from_secs(45);
/// Default longest message of `take_message` (`max_message_secs`).
pub const DEFAULT_MAX_MESSAGE: Duration = Duration::from_secs(120);

/// An agent's `on_model_failure`: a recording, then a transfer, a hang-up or a message. Nothing
/// of it needs the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFailure {
    /// What the caller hears first (the admin's `audio`, else the shipped default recording
    /// for the action).
    pub audio: std::sync::Arc<super::MessageAudio>,
    /// What follows: [`super::AfterMessage::Transfer`] (REFER), `Hangup` or `TakeMessage`.
    pub then: super::AfterMessage,
}

impl Default for AgentProfile {
    fn default() -> Self {
        AgentProfile {
            name: String::new(),
            instructions: String::new(),
            voice: DEFAULT_VOICE.to_owned(),
            greeting: String::new(),
            model: DEFAULT_MODEL.to_owned(),
            transcription_model: None,
            vad: VadSettings::default(),
            language: None,
            tools: Tool::ALL
                .into_iter()
                .filter(|t| *t != Tool::TransferCall)
                .collect(),
            calendar: None,
            transfers: BTreeMap::new(),
            max_duration: DEFAULT_MAX_DURATION,
            dtmf: BTreeMap::new(),
            instructions_file: None,
            endpoints: Vec::new(),
            on_model_failure: None,
            idle_prompt: Some(DEFAULT_IDLE_PROMPT),
            idle_hangup: Some(DEFAULT_IDLE_HANGUP),
            echo_gate: true,
        }
    }
}

impl AgentProfile {
    /// Whether the model may call `tool`.
    pub fn allows(&self, tool: Tool) -> bool {
        self.tools.contains(&tool)
    }

    /// What pressing `digit` does, if anything.
    pub fn dtmf_action(&self, digit: char) -> Option<&DtmfAction> {
        self.dtmf.get(&digit.to_ascii_uppercase())
    }
}

/// `"15m"`, `"1h30m"`, `"90s"`, `"900"` (seconds) → a duration within the accepted range.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, ValueError> {
    let t = text.trim();
    let bad = || {
        ValueError::new(format!("`{t}` is not a duration"))
            .hint("write a duration like \"90s\", \"15m\", \"1h30m\", or a number of seconds")
    };
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut any_unit = false;
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            ' ' => continue,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = total.saturating_add(n.saturating_mul(unit));
        digits.clear();
        any_unit = true;
    }
    if !digits.is_empty() {
        if any_unit {
            return Err(bad());
        }
        total = digits.parse().map_err(|_| bad())?;
    } else if !any_unit {
        return Err(bad());
    }
    check_duration(Duration::from_secs(total))
}

pub(crate) fn check_duration(d: Duration) -> Result<Duration, ValueError> {
    let (min, max) = MAX_DURATION_RANGE;
    if d < min || d > max {
        return Err(ValueError::new(format!(
            "max_duration must be between {} and {}, not {}",
            fmt_duration(min),
            fmt_duration(max),
            fmt_duration(d)
        )));
    }
    Ok(d)
}

/// `1h30m`, `15m`, `90s` → `1h30m`, `15m`, `1m30s`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, (s / 60) % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 || out.is_empty() {
        out.push_str(&format!("{sec}s"));
    }
    out
}

/// A BCP 47-looking language tag: 2–3 letters, then subtags of 1–8 letters or digits.
pub(crate) fn check_language(tag: &str) -> Result<(), ValueError> {
    let mut parts = tag.split('-');
    let primary = parts.next().unwrap_or("");
    let ok = (2..=3).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_alphabetic())
        && parts
            .all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(ValueError::new(format!("`{tag}` is not a language tag"))
            .hint("use a BCP 47 tag such as \"en\", \"es\", \"de-DE\" or \"pt-BR\""))
    }
}

/// A SIP (or tel) URI to transfer to: `sip:user@host`, `sips:…` or `tel:+1555…`.
pub(crate) fn check_uri(uri: &str) -> Result<(), ValueError> {
    let lower = uri.to_ascii_lowercase();
    let rest = ["sip:", "sips:", "tel:"]
        .iter()
        .find_map(|s| lower.strip_prefix(s).map(|r| (s, r)));
    let hint = || {
        if uri
            .chars()
            .next()
            .is_some_and(|c| c == '+' || c.is_ascii_digit())
        {
            format!("write a URI: \"sip:{uri}@YOUR-PBX\" or \"tel:{uri}\"")
        } else if uri.contains('@') {
            format!("did you mean \"sip:{uri}\"?")
        } else {
            "write a SIP URI such as \"sip:oncall@pbx.example.com\"".to_owned()
        }
    };
    let ok = match rest {
        Some((scheme, rest)) => {
            let host = if *scheme == "tel:" {
                rest
            } else {
                rest.rsplit('@').next().unwrap_or("")
            };
            !host.is_empty()
                && !rest
                    .chars()
                    .any(|c| c.is_whitespace() || matches!(c, '<' | '>' | '"'))
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ValueError::new(format!("`{uri}` is not a SIP URI")).hint(hint()))
    }
}

/// How `on_model_failure`'s `action` is written, for hints.
pub(crate) const FAILURE_HINT: &str = "use action = \"hangup\", \"take_message\", \"transfer:NAME\" (a name from `transfers`) or \"transfer:sip:…\"";

/// `on_model_failure`'s action: `hangup`, `take_message` (at most [`DEFAULT_MAX_MESSAGE`]
/// until `max_message_secs` says otherwise) or `transfer:NAME` / `transfer:sip:…` (names
/// resolved against `transfers`, as in the DTMF map).
pub(crate) fn parse_failure_action(
    text: &str,
    transfers: &BTreeMap<String, String>,
) -> Result<super::AfterMessage, ValueError> {
    match text.trim() {
        "take_message" => Ok(super::AfterMessage::TakeMessage {
            max: DEFAULT_MAX_MESSAGE,
        }),
        "forward" => {
            Err(ValueError::new("`forward` is not an on_model_failure action").hint(FAILURE_HINT))
        }
        "transfer" => Err(ValueError::new("`transfer` needs a target")
            .hint("write \"transfer:NAME\" (a name from `transfers`) or \"transfer:sip:…\"")),
        t => match parse_dtmf_action(t, transfers) {
            Ok(DtmfAction::Hangup) => Ok(super::AfterMessage::Hangup),
            Ok(DtmfAction::Transfer { target, .. }) => Ok(super::AfterMessage::Transfer { target }),
            Ok(DtmfAction::Forward) => Err(ValueError::new(
                "`forward` is not an on_model_failure action",
            )
            .hint(FAILURE_HINT)),
            Err(e) if t.starts_with("transfer:") => Err(e),
            Err(_) => Err(
                ValueError::new(format!("unknown on_model_failure action `{t}`")).hint(
                    match hint::closest(t, ["hangup", "take_message"]) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None => FAILURE_HINT.to_owned(),
                    },
                ),
            ),
        },
    }
}

/// The shipped recording for an `on_model_failure` without `audio` (espeak-ng + sox, µ-law
/// WAV, in `dialplans/sounds/`): "…please hold while we connect you" before a transfer, "…please
/// leave your name, number and message after the tone" (and a tone) before a message, "…please
/// call again later. Goodbye." before hanging up.
pub(crate) fn default_failure_audio(
    then: &super::AfterMessage,
) -> std::sync::Arc<super::MessageAudio> {
    use std::sync::{Arc, OnceLock};
    static TRANSFER: OnceLock<Arc<super::MessageAudio>> = OnceLock::new();
    static MESSAGE: OnceLock<Arc<super::MessageAudio>> = OnceLock::new();
    static HANGUP: OnceLock<Arc<super::MessageAudio>> = OnceLock::new();
    let (cell, name, bytes): (_, _, &[u8]) = match then {
        super::AfterMessage::Transfer { .. } => (
            &TRANSFER,
            "model-unavailable-transfer.wav",
            include_bytes!("../../dialplans/sounds/model-unavailable-transfer.wav"),
        ),
        super::AfterMessage::TakeMessage { .. } => (
            &MESSAGE,
            "leave-a-message.wav",
            include_bytes!("../../dialplans/sounds/leave-a-message.wav"),
        ),
        super::AfterMessage::Hangup => (
            &HANGUP,
            "model-unavailable.wav",
            include_bytes!("../../dialplans/sounds/model-unavailable.wav"),
        ),
    };
    cell.get_or_init(|| {
        let path = PathBuf::from("dialplans/sounds").join(name);
        let audio =
            super::MessageAudio::decode(&path, bytes).unwrap_or_else(|_| super::MessageAudio {
                // Unreachable: the shipped files are valid (a unit test decodes each).
                path,
                samples: super::AudioSamples::Mulaw(vec![0xff; 8000].into()),
            });
        Arc::new(audio)
    })
    .clone()
}

/// A DTMF map key: one of `0`–`9`, `*`, `#`, `A`–`D`.
pub(crate) fn parse_digit(key: &str) -> Result<char, ValueError> {
    let mut chars = key.chars();
    match (chars.next().map(|c| c.to_ascii_uppercase()), chars.next()) {
        (Some(c @ ('0'..='9' | '*' | '#' | 'A'..='D')), None) => Ok(c),
        _ => Err(ValueError::new(format!("`{key}` is not a DTMF digit"))
            .hint("use one of 0-9, \"*\", \"#\" or A-D (quote \"*\" and \"#\")")),
    }
}

/// A DTMF action as written: `hangup`, `forward`, `transfer:NAME` or `transfer:sip:…`. Transfer
/// names are resolved against `transfers`.
pub(crate) fn parse_dtmf_action(
    text: &str,
    transfers: &BTreeMap<String, String>,
) -> Result<DtmfAction, ValueError> {
    let t = text.trim();
    match t {
        "hangup" => return Ok(DtmfAction::Hangup),
        "forward" => return Ok(DtmfAction::Forward),
        _ => {}
    }
    let Some(target) = t.strip_prefix("transfer:") else {
        return Err(ValueError::new(format!("unknown DTMF action `{t}`")).hint(match hint::closest(t, ["hangup", "forward"]) {
            Some(c) => format!("did you mean `{c}`?"),
            None => "use \"hangup\", \"forward\", \"transfer:NAME\" (a name from `transfers`) or \"transfer:sip:…\"".to_owned(),
        }));
    };
    let target = target.trim();
    let lower = target.to_ascii_lowercase();
    if ["sip:", "sips:", "tel:"]
        .iter()
        .any(|s| lower.starts_with(s))
    {
        check_uri(target)?;
        return Ok(DtmfAction::Transfer {
            name: None,
            target: target.to_owned(),
        });
    }
    let at = text
        .find(target)
        .map_or(0..text.len(), |i| i..i + target.len());
    match transfers.get(target) {
        Some(uri) => Ok(DtmfAction::Transfer {
            name: Some(target.to_owned()),
            target: uri.clone(),
        }),
        None if transfers.is_empty() => Err(ValueError::new(format!(
            "DTMF transfer target `{target}` is not defined: this agent has no `transfers`"
        ))
        .hint(format!(
            "add {target} = \"sip:…\" to the agent's transfers table, or write \"transfer:sip:…\""
        ))
        .at(at)),
        None => Err(ValueError::new(format!(
            "DTMF transfer target `{target}` is not in this agent's `transfers`"
        ))
        .hint(hint::did_you_mean(
            target,
            transfers.keys().map(String::as_str),
        ))
        .at(at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_round_trip_and_hint() {
        for t in Tool::ALL {
            assert_eq!(Tool::from_name(t.name()), Some(t));
        }
        let e = Tool::parse("book_apointment").expect_err("typo");
        assert_eq!(e.hint.as_deref(), Some("did you mean `book_appointment`?"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("600"), Ok(Duration::from_secs(600)));
        assert!(parse_duration("5s").is_err(), "too short");
        assert!(parse_duration("5h").is_err(), "too long");
        assert!(parse_duration("15 minutes").is_err());
        assert!(parse_duration("1h30").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(fmt_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(fmt_duration(Duration::from_secs(90)), "1m30s");
    }

    #[test]
    fn languages_and_uris() {
        assert!(check_language("es").is_ok());
        assert!(check_language("de-DE").is_ok());
        assert!(check_language("spanish").is_err());
        assert!(check_uri("sip:oncall@pbx.example.com").is_ok());
        assert!(check_uri("sips:pbx.example.com").is_ok());
        assert!(check_uri("tel:+15550100").is_ok());
        let e = check_uri("+15550100").expect_err("bare number");
        assert_eq!(
            e.hint.as_deref(),
            Some("write a URI: \"sip:+15550100@YOUR-PBX\" or \"tel:+15550100\"")
        );
        assert!(check_uri("sip:").is_err());
        assert!(check_uri("sip:a b@c").is_err());
    }

    #[test]
    fn model_failure_actions_and_the_shipped_recordings() {
        use super::super::AfterMessage;
        let transfers = BTreeMap::from([("desk".to_owned(), "sip:desk@pbx".to_owned())]);
        assert_eq!(
            parse_failure_action("hangup", &transfers),
            Ok(AfterMessage::Hangup)
        );
        assert_eq!(
            parse_failure_action("transfer:desk", &transfers),
            Ok(AfterMessage::Transfer {
                target: "sip:desk@pbx".into()
            })
        );
        assert_eq!(
            parse_failure_action("take_message", &transfers),
            Ok(AfterMessage::TakeMessage {
                max: DEFAULT_MAX_MESSAGE
            })
        );
        let e = parse_failure_action("take_mesage", &transfers).expect_err("typo");
        assert_eq!(e.hint.as_deref(), Some("did you mean `take_message`?"));
        assert!(parse_failure_action("transfer", &transfers).is_err());
        assert!(parse_failure_action("transfer:nobody", &transfers).is_err());
        for then in [
            AfterMessage::Hangup,
            AfterMessage::Transfer {
                target: "sip:x@y".into(),
            },
            AfterMessage::TakeMessage {
                max: DEFAULT_MAX_MESSAGE,
            },
        ] {
            let audio = default_failure_audio(&then);
            assert!(matches!(
                audio.samples,
                super::super::AudioSamples::Mulaw(_)
            ));
            let secs = audio.duration().as_secs_f64();
            assert!((4.0..10.0).contains(&secs), "{secs} s");
        }
    }

    #[test]
    fn dtmf_actions() {
        let transfers = BTreeMap::from([("front_desk".to_owned(), "sip:desk@pbx".to_owned())]);
        assert_eq!(parse_digit("#"), Ok('#'));
        assert_eq!(parse_digit("a"), Ok('A'));
        assert!(parse_digit("10").is_err());
        assert_eq!(
            parse_dtmf_action("hangup", &transfers),
            Ok(DtmfAction::Hangup)
        );
        assert_eq!(
            parse_dtmf_action("transfer:front_desk", &transfers),
            Ok(DtmfAction::Transfer {
                name: Some("front_desk".into()),
                target: "sip:desk@pbx".into()
            })
        );
        assert_eq!(
            parse_dtmf_action("transfer:sip:x@y", &transfers),
            Ok(DtmfAction::Transfer {
                name: None,
                target: "sip:x@y".into()
            })
        );
        let e = parse_dtmf_action("transfer:frontdesk", &transfers).expect_err("typo");
        assert_eq!(e.hint.as_deref(), Some("did you mean `front_desk`?"));
        let e = parse_dtmf_action("hangpu", &transfers).expect_err("typo");
        assert_eq!(e.hint.as_deref(), Some("did you mean `hangup`?"));
    }
}
