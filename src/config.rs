//! Configuration: the optional TOML file (`--config`), overridden by command-line flags and
//! environment variables. Unknown keys in the file are errors.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::realtime::protocol::Dialect;

/// Errors loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid (syntax, unknown key, bad value).
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The path.
        path: PathBuf,
        /// What is wrong (with line and column).
        message: String,
    },
    /// A value is out of range.
    #[error("invalid setting {setting}: {message}")]
    Invalid {
        /// The setting name.
        setting: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// An inclusive range of UDP ports for RTP, e.g. `10000-20000`. Only even ports are used (RFC 3550 §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// Lowest port (even).
    pub low: u16,
    /// Highest port.
    pub high: u16,
}

impl std::str::FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("'{s}' is not a port range like 10000-20000"))?;
        let low: u16 = a
            .trim()
            .parse()
            .map_err(|_| format!("'{a}' is not a port number"))?;
        let high: u16 = b
            .trim()
            .parse()
            .map_err(|_| format!("'{b}' is not a port number"))?;
        if low < 1024 || high <= low {
            return Err(format!(
                "port range {low}-{high} must satisfy 1024 <= low < high"
            ));
        }
        // Start on an even port; RTCP uses the odd port above each RTP port.
        let low = low + low % 2;
        if high <= low {
            return Err(format!(
                "port range {s} holds no even RTP port with its RTCP port"
            ));
        }
        Ok(PortRange { low, high })
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The `[sip]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipFile {
    /// UDP+TCP listen address, or a list of them (dual stack: `["0.0.0.0:5060", "[::]:5060"]`).
    pub listen: Option<OneOrMany<SocketAddr>>,
    /// IP advertised in SDP and Contact, or one per family.
    pub media_ip: Option<OneOrMany<IpAddr>>,
    /// RTP port range.
    pub rtp_ports: Option<PortRange>,
    /// Seconds without caller RTP after which a call is ended with BYE.
    pub rtp_timeout_secs: Option<u64>,
    /// Smallest RFC 4028 session interval accepted (`Min-SE`, default 90); smaller gets 422.
    pub min_session_expires_secs: Option<u32>,
    /// `[sip.tls]`: SIP over TLS.
    #[serde(default)]
    pub tls: SipTlsFile,
    /// `[sip.srtp_per_listen]`: SRTP policy per listen address (`"ADDR:PORT" = "require"`), for
    /// calls outside every trunk with its own `srtp`; the key must be a `listen` or
    /// `tls.listen` address.
    pub srtp_per_listen: Option<std::collections::BTreeMap<String, crate::sdp::sdes::Policy>>,
}

/// The `[sip.tls]` section (see `sip::tls::TlsSettings`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipTlsFile {
    /// TLS listen address, or a list of them, e.g. `"0.0.0.0:5061"`.
    pub listen: Option<OneOrMany<SocketAddr>>,
    /// PEM certificate chain (leaf first).
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// PEM CA certificates that sign accepted client certificates (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// Refuse TLS clients without a certificate signed by `client_ca` (default false).
    pub require_client_cert: Option<bool>,
    /// PEM CA certificates trusted for servers we connect to (default: the web PKI roots).
    pub ca: Option<PathBuf>,
    /// SRTP policy for calls over TLS from sources outside every trunk with its own `srtp`
    /// (default `require`).
    pub srtp: Option<crate::sdp::sdes::Policy>,
}

/// The `[media]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaFile {
    /// Continuous RTP toward the caller: G.711 silence every 20 ms while the agent is silent
    /// (default true); `false` sends RTP only while the agent speaks.
    pub send_silence: Option<bool>,
    /// SRTP with SDES keys for calls from sources outside every trunk with its own `srtp`:
    /// `off`, `offer` (default) or `require` (see `sdp::sdes::Policy`).
    pub srtp: Option<crate::sdp::sdes::Policy>,
}

/// The `[realtime]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealtimeFile {
    /// WebSocket URL.
    pub url: Option<String>,
    /// `ga`, `beta` or `live`.
    pub protocol: Option<String>,
    /// How the key is sent: `bearer` (default), `api-key` (Azure keys) or `subprotocol`
    /// (gateways taking `openai-insecure-api-key.KEY`).
    pub auth: Option<String>,
    /// Environment variable holding the key or token [default: OPENAI_API_KEY].
    pub key_env: Option<String>,
    /// File whose first line is the key or token, re-read for every session (rotated Entra ID
    /// tokens); takes precedence over `key_env`.
    pub key_file: Option<PathBuf>,
    /// GPT-Live: the Responses model (on Azure: deployment) that runs the tools
    /// [default: `realtime::models::DEFAULT_LIVE_BACKEND_MODEL`].
    pub backend_model: Option<String>,
    /// Seconds to wait for a session to open before refusing the call (all endpoints
    /// together).
    pub connect_timeout_secs: Option<u64>,
    /// Seconds an answered call waits for a new session after its session ended (rollover)
    /// before the model counts as unavailable [default: 10].
    pub reconnect_window_secs: Option<u64>,
    /// A session is replaced by a fresh one (planned rollover, at a silence) after this many
    /// seconds [default: 3300, i.e. 55 min; 0: never].
    pub session_max_secs: Option<u64>,
    /// Without a session for this many ms during a call, the filler recording plays once
    /// [default: 1500].
    pub filler_after_ms: Option<u64>,
    /// The filler recording ("One moment, please."): an 8 kHz mono WAV or raw .ulaw/.alaw
    /// [default: the built-in dialplans/sounds/one-moment.wav].
    pub filler_file: Option<PathBuf>,
    /// Several endpoints, tried in order (`[[realtime.endpoints]]`); instead of the
    /// single-endpoint keys above (`url`, `protocol`, `auth`, `key_env`, `key_file`,
    /// `backend_model`).
    #[serde(default)]
    pub endpoints: Vec<EndpointFile>,
}

/// One `[[realtime.endpoints]]` entry: where sessions can be opened and how to authenticate.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointFile {
    /// Unique name, used in logs and by the dialplan's per-agent `endpoints`.
    pub name: String,
    /// WebSocket URL [default: the dialect's OpenAI URL].
    pub url: Option<String>,
    /// `ga` (default), `beta` or `live`.
    #[serde(alias = "dialect")]
    pub protocol: Option<String>,
    /// `bearer` (default), `api-key` or `subprotocol`.
    pub auth: Option<String>,
    /// Environment variable holding the key [default: OPENAI_API_KEY].
    pub key_env: Option<String>,
    /// File whose first line is the key, re-read for every session; wins over `key_env`.
    pub key_file: Option<PathBuf>,
    /// GPT-Live: the Responses model (or deployment) running the tools.
    pub backend_model: Option<String>,
}

/// The `[messages]` section: where `take_message` stores the callers' recordings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesFile {
    /// Directory of the recorded messages (WAV files) [default: `./messages`].
    pub dir: Option<PathBuf>,
}

/// The `[admission]` section: who may call, how often and how many at once. Validated by
/// `sip::admission::Policy::load`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionFile {
    /// Calls in progress at once; more get 503 (default 100).
    pub max_calls: Option<usize>,
    /// New calls (INVITEs) per minute per source IP (IPv6: per /64); 0 = no limit (default 30).
    pub rate_per_source: Option<u32>,
    /// INVITEs a source may send back to back before the rate applies (default 10).
    pub rate_burst: Option<u32>,
    /// Digest realm of our challenges (default `frontdesk`).
    pub realm: Option<String>,
    /// Digest algorithms offered, preferred first (default `["SHA-256", "MD5"]`).
    pub digest_algorithms: Option<Vec<String>>,
    /// Seconds a challenge's nonce stays valid (default 300).
    pub nonce_lifetime_secs: Option<u64>,
    /// Trusted source networks, admitted without a password.
    #[serde(default)]
    pub trunks: Vec<AdmissionTrunkFile>,
    /// Digest users, for sources outside every trunk.
    #[serde(default)]
    pub users: Vec<AdmissionUserFile>,
}

/// One `[[admission.trunks]]` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionTrunkFile {
    /// Name for the logs.
    pub name: String,
    /// Source networks (CIDR, IPv4 or IPv6; a bare address is one host).
    pub allow: Vec<String>,
    /// This trunk's own `rate_per_source` (0 = no limit).
    pub rate_per_source: Option<u32>,
    /// This trunk's SRTP policy (`off`, `offer`, `require`; default: `[media] srtp`).
    pub srtp: Option<crate::sdp::sdes::Policy>,
}

/// One `[[admission.users]]` entry. The password is read from `password_env` or `password_file`,
/// never written in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionUserFile {
    /// Digest user name.
    pub name: String,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (a trailing line break is ignored).
    pub password_file: Option<PathBuf>,
}

/// The config file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Database: SQLite path or `sqlite://PATH`, or `postgres://USER@HOST/DB` (no password).
    pub db: Option<String>,
    /// File whose first line is the PostgreSQL password.
    pub db_password_file: Option<PathBuf>,
    /// Dialplan directory.
    pub dialplans: Option<PathBuf>,
    /// Calendar file (TOML) imported at start.
    pub calendar: Option<PathBuf>,
    /// SIP and media.
    #[serde(default)]
    pub sip: SipFile,
    /// Realtime service.
    #[serde(default)]
    pub realtime: RealtimeFile,
    /// Recorded caller messages (`on_model_failure = take_message`).
    #[serde(default)]
    pub messages: MessagesFile,
    /// Media behaviour.
    #[serde(default)]
    pub media: MediaFile,
    /// Who may call (`[admission]`); without it anyone may (see `sip::admission::Policy::open`).
    pub admission: Option<AdmissionFile>,
    /// Registrars frontdesk registers with (`[[registrations]]`); validated by
    /// `sip::registration::load_accounts`.
    #[serde(default)]
    pub registrations: Vec<RegistrationFile>,
    /// What is kept about callers, and for how long (`[privacy]`).
    #[serde(default)]
    pub privacy: PrivacyFile,
    /// The HTTP listener: health, metrics and the staff page (`[http]`).
    #[serde(default)]
    pub http: HttpFile,
    /// Prices of Realtime models, USD per million tokens (`[pricing."MODEL"]`), over the
    /// built-in defaults of `pricing::DEFAULT_PRICES_DATE`.
    #[serde(default)]
    pub pricing: std::collections::BTreeMap<String, crate::pricing::ModelPrice>,
}

/// The `[http]` section. The staff token is read from `token_file` or `token_env`, never
/// written in this file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    /// Address of the HTTP listener (off when unset).
    pub listen: Option<SocketAddr>,
    /// File whose first line is the staff page's bearer token.
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the staff page's bearer token.
    pub token_env: Option<String>,
}

impl HttpFile {
    /// The staff token: from `token_file` (first line) or `token_env`; `None` when neither is set.
    ///
    /// # Errors
    /// Both set, an unreadable file, an unset variable, or an empty token.
    pub fn token(&self) -> Result<Option<String>, Error> {
        let invalid = |message: String| Error::Invalid {
            setting: "[http] token",
            message,
        };
        let token = match (&self.token_file, &self.token_env) {
            (Some(_), Some(_)) => {
                return Err(invalid("set token_file or token_env, not both".into()))
            }
            (Some(path), None) => std::fs::read_to_string(path)
                .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned(),
            (None, Some(var)) => std::env::var(var)
                .map_err(|_| invalid(format!("environment variable {var} is not set")))?
                .trim()
                .to_owned(),
            (None, None) => return Ok(None),
        };
        if token.is_empty() {
            return Err(invalid("the token is empty".into()));
        }
        Ok(Some(token))
    }
}

/// Default of `[privacy] keep_transcripts_days`.
pub const DEFAULT_KEEP_TRANSCRIPTS_DAYS: u32 = 30;
/// Default of `[privacy] keep_calls_days`.
pub const DEFAULT_KEEP_CALLS_DAYS: u32 = 365;

/// The `[privacy]` section: what is stored and logged about callers, and for how long.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyFile {
    /// Days transcripts (`call_turns`) are kept (default 30; 0 = not kept past the daily purge).
    pub keep_transcripts_days: Option<u32>,
    /// Days call rows (with their tool calls) are kept (default 365).
    pub keep_calls_days: Option<u32>,
    /// Whether transcripts are stored at all (default true).
    pub store_transcripts: Option<bool>,
    /// Log caller numbers and transcripts in clear (default false; like `--log-pii`).
    pub log_pii: Option<bool>,
}

/// One `[[registrations]]` entry: frontdesk registers `user` with `registrar` (a PBX or SIP
/// trunk) and keeps the binding fresh. The password is read from `password_env` or
/// `password_file`, never from this file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationFile {
    /// Name used in logs.
    pub name: String,
    /// Registrar URI (Request-URI of the REGISTERs), e.g. `sip:pbx.example.com:5060;transport=tcp`.
    pub registrar: String,
    /// User (extension) to register: the AOR is `sip:<user>@<domain>`.
    pub user: String,
    /// Digest user name when it differs from `user` (an "authentication ID").
    pub auth_user: Option<String>,
    /// AOR domain [default: the registrar's host].
    pub domain: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File whose first line is the password.
    pub password_file: Option<PathBuf>,
    /// Expiry to ask for, in seconds [default: 3600].
    pub expires_secs: Option<u64>,
    /// User part of our Contact [default: `user`].
    pub contact_user: Option<String>,
}

impl ConfigFile {
    /// Reads and parses a config file.
    ///
    /// # Errors
    /// [`Error::Read`] or [`Error::Parse`].
    pub fn load(path: &Path) -> Result<ConfigFile, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| Error::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

/// Parses a dialect name (`ga`, `beta` or `live`).
///
/// # Errors
/// [`Error::Invalid`] for anything else.
pub fn parse_dialect(s: &str) -> Result<Dialect, Error> {
    s.parse().map_err(|_| Error::Invalid {
        setting: "realtime protocol",
        message: format!("'{s}' is not a protocol; use 'ga' (default), 'beta' or 'live'"),
    })
}

/// Parses `[realtime] auth` (`bearer`, `api-key`, `subprotocol`); `None` is `bearer`.
///
/// # Errors
/// [`Error::Invalid`] for anything else.
pub fn parse_auth(s: Option<&str>) -> Result<crate::realtime::client::Auth, Error> {
    s.map_or(Ok(crate::realtime::client::Auth::Bearer), |s| {
        s.parse().map_err(|message| Error::Invalid {
            setting: "realtime auth",
            message,
        })
    })
}

/// A config value given as one item or a list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// `key = "value"`
    One(T),
    /// `key = ["value", ...]`
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// The items as a list.
    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Picks the IP to advertise in SDP when none is configured: the listen IP if it is specific,
/// else the address of the interface that routes to the Internet (found without sending a
/// packet), else 127.0.0.1.
pub fn default_media_ip(listen: IpAddr) -> IpAddr {
    if !listen.is_unspecified() {
        return listen;
    }
    // connect() on UDP only selects a route; nothing is sent.
    let probe = if listen.is_ipv6() {
        std::net::UdpSocket::bind("[::]:0").and_then(|s| {
            s.connect("[2001:db8::1]:9")?;
            s.local_addr()
        })
    } else {
        std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
    };
    match probe {
        Ok(addr) if !addr.ip().is_unspecified() => addr.ip(),
        _ if listen.is_ipv6() => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        _ => IpAddr::from([127, 0, 0, 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        assert_eq!(
            "10000-20000".parse(),
            Ok(PortRange {
                low: 10000,
                high: 20000
            })
        );
        assert_eq!(
            "10001-10010".parse(),
            Ok(PortRange {
                low: 10002,
                high: 10010
            })
        );
        assert!("20000-10000".parse::<PortRange>().is_err());
        assert!("80-90".parse::<PortRange>().is_err());
        assert!("abc".parse::<PortRange>().is_err());
    }

    #[test]
    fn shipped_example_config_is_valid() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/frontdesk.example.toml"
        ));
        let cfg = ConfigFile::load(path).expect("example config parses");
        assert_eq!(
            cfg.sip.listen,
            Some(OneOrMany::One(SocketAddr::from(([0, 0, 0, 0], 5060))))
        );
        assert_eq!(
            cfg.realtime
                .protocol
                .as_deref()
                .map(parse_dialect)
                .and_then(Result::ok),
            Some(Dialect::Ga)
        );
    }

    #[test]
    fn unknown_config_keys_are_errors() {
        let e = toml::from_str::<ConfigFile>("[sip]\nlisten = \"0.0.0.0:5060\"\nlsiten = 1\n");
        assert!(e.is_err());
        let ok: ConfigFile = toml::from_str(
            "db = \"x.db\"\n[sip]\nlisten = \"127.0.0.1:5070\"\nrtp_ports = \"30000-30100\"\n[realtime]\nprotocol = \"beta\"\n",
        )
        .expect("valid");
        assert_eq!(
            ok.sip.rtp_ports,
            Some(PortRange {
                low: 30000,
                high: 30100
            })
        );
    }
}
