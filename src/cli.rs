//! Command-line interface (clap): `frontdesk serve`, `frontdesk sim`, `frontdesk db migrate`,
//! `frontdesk dialplan check`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use anyhow::Context as _;

use crate::config::{self, ConfigFile, PortRange};
use crate::realtime::client::{ApiKey, RealtimeTarget};
use crate::realtime::protocol::Dialect;
use crate::server::{
    Privacy, RealtimeBackend, ServeSettings, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MESSAGES_DIR,
    DEFAULT_RTP_TIMEOUT_SECS,
};

/// frontdesk answers phone calls (SIP) with an AI receptionist that talks through an OpenAI
/// Realtime session, and books appointments in a local calendar.
///
/// Start it with `frontdesk serve`. Without OPENAI_API_KEY it talks to the built-in Realtime
/// simulator, so you can call it from any SIP phone for free.
#[derive(Debug, Parser)]
#[command(name = "frontdesk", version, about, long_about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
// Parsed once per process: the size of `ServeArgs` does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Answer SIP calls (UDP, TCP and TLS) and bridge them to the voice model.
    Serve(ServeArgs),
    /// Run the local Realtime simulator: a WebSocket server at /v1/realtime that speaks the OpenAI
    /// Realtime protocol (GA, or beta when the client sends `OpenAI-Beta: realtime=v1`).
    Sim(SimArgs),
    /// Database maintenance.
    Db {
        /// Database command.
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Calendar configuration.
    Calendar {
        /// Calendar command.
        #[command(subcommand)]
        command: CalendarCommand,
    },
    /// Appointments, for the staff.
    Appointments {
        /// Appointments command.
        #[command(subcommand)]
        command: AppointmentsCommand,
    },
    /// Call history, for the staff: who called, what was said and booked, what it cost.
    Calls {
        /// Calls command.
        #[command(subcommand)]
        command: CallsCommand,
    },
    /// Messages callers left when the model service was unavailable (`on_model_failure =
    /// "take_message"`), for the staff.
    Messages {
        /// Messages command.
        #[command(subcommand)]
        command: MessagesCommand,
    },
    /// Dialplan tools for admins.
    Dialplan {
        /// Dialplan command.
        #[command(subcommand)]
        command: DialplanCommand,
    },
}

/// `frontdesk serve` flags. Each overrides the same setting of `--config`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (see README "Configuration").
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// SIP listen addresses, each for both UDP and TCP; repeat the flag or separate with commas,
    /// e.g. `0.0.0.0:5060,[::]:5060` for dual stack (`[::]` listens on IPv6 only)
    /// [default: 0.0.0.0:5060].
    #[arg(long, value_name = "ADDR:PORT", value_delimiter = ',')]
    pub sip_listen: Vec<SocketAddr>,
    /// SIP-over-TLS listen addresses (repeat or separate with commas, IPv6 in brackets), e.g.
    /// `0.0.0.0:5061`; needs a certificate (--sip-tls-cert/--sip-tls-key or `[sip.tls]`)
    /// [default: `[sip.tls] listen`, else no TLS].
    #[arg(long, value_name = "ADDR:PORT", value_delimiter = ',')]
    pub sip_tls_listen: Vec<SocketAddr>,
    /// PEM certificate chain presented over TLS (leaf first) [default: `[sip.tls] cert`].
    #[arg(long, value_name = "FILE")]
    pub sip_tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate [default: `[sip.tls] key`].
    #[arg(long, value_name = "FILE")]
    pub sip_tls_key: Option<PathBuf>,
    /// PEM CA certificates that sign the client certificates of trunks (mutual TLS)
    /// [default: `[sip.tls] client_ca`].
    #[arg(long, value_name = "FILE")]
    pub sip_tls_client_ca: Option<PathBuf>,
    /// Refuse TLS clients without a certificate signed by the client CA.
    #[arg(long)]
    pub sip_tls_require_client_cert: bool,
    /// SRTP policy for calls whose INVITE came over TLS, from sources outside every
    /// `[[admission.trunks]]` entry with its own `srtp` (values as for --srtp). A trunk that
    /// encrypts its signalling expects encrypted media: a plain-RTP offer over TLS gets 488
    /// `SRTP is required` unless this is `offer` or `off` [default: require, or `[sip.tls] srtp`].
    #[arg(long, value_name = "off|offer|require")]
    pub sip_tls_srtp: Option<crate::sdp::sdes::Policy>,
    /// IP addresses advertised in SDP for RTP (and in Contact), at most one per family: a call
    /// gets the one of its SDP offer's family (`c=IN IP4`/`IP6`) [default: each listen IP, or the
    /// address of the default-route interface].
    #[arg(long, value_name = "IP", value_delimiter = ',')]
    pub media_ip: Vec<IpAddr>,
    /// UDP port range for RTP; even ports are used, RTCP takes the odd one above [default: 10000-20000].
    #[arg(long, value_name = "LOW-HIGH")]
    pub rtp_ports: Option<PortRange>,
    /// Seconds without RTP from the caller after which a call is ended with BYE (reason
    /// `rtp-timeout`) [default: 30].
    #[arg(long, value_name = "SECS")]
    pub rtp_timeout: Option<u64>,
    /// Continuous RTP toward the caller: while the agent is silent, send 20 ms packets of G.711
    /// silence so media-inactivity timers (SBC, PBX, carrier) never fire and NAT bindings stay
    /// open; `false` sends RTP only while the agent speaks [default: true, or `[media]
    /// send_silence`].
    #[arg(long, value_name = "BOOL")]
    pub send_silence: Option<bool>,
    /// SRTP (RFC 3711) with SDES keys (RFC 4568 `a=crypto`, AES_CM_128_HMAC_SHA1_80/_32) for calls
    /// from sources outside every `[[admission.trunks]]` entry with its own `srtp`: `off` = plain
    /// RTP only (RTP/SAVP-only offers get 488), `offer` = SRTP when the caller offers it, plain
    /// RTP otherwise, `require` = plain-RTP offers get 488. SDES keys travel in the SDP: use SIP
    /// over TLS where you can [default: offer, or `[media] srtp`].
    #[arg(long, value_name = "off|offer|require")]
    pub srtp: Option<crate::sdp::sdes::Policy>,
    /// Database, created and migrated at start: a SQLite file path or sqlite://PATH, or
    /// postgres://USER@HOST[:PORT]/DB for several instances sharing one PostgreSQL (see README
    /// "Running several instances") [default: ./frontdesk.db].
    #[arg(long, value_name = "PATH|URL")]
    pub db: Option<String>,
    /// File whose first line is the PostgreSQL password (else PGPASSWORD is used).
    #[arg(long, value_name = "FILE")]
    pub db_password_file: Option<PathBuf>,
    /// Directory of dialplan *.toml files [default: ./dialplans].
    #[arg(long, value_name = "DIR")]
    pub dialplans: Option<PathBuf>,
    /// Model WebSocket URL [default: wss://api.openai.com/v1/realtime, or
    /// wss://api.openai.com/v1/live/sessions with `--realtime-protocol live`; the built-in
    /// simulator when no key is configured]. Azure OpenAI:
    /// wss://RESOURCE.openai.azure.com/openai/v1/realtime?model=DEPLOYMENT or
    /// …/openai/v1/live/sessions (with `[realtime] auth = "api-key"`).
    #[arg(long, value_name = "URL", env = "FRONTDESK_REALTIME_URL")]
    pub realtime_url: Option<String>,
    /// Model protocol: `ga` (Realtime GA, default), `beta` (`OpenAI-Beta: realtime=v1`, for
    /// gateways that still speak it) or `live` (GPT-Live, `gpt-live-*` models: continuous
    /// audio, model-controlled barge-in, tools delegated to a Responses model).
    #[arg(long, value_name = "ga|beta|live")]
    pub realtime_protocol: Option<String>,
    /// Scenario file for the built-in simulator (only used when no API key and no URL are given).
    #[arg(long, value_name = "FILE")]
    pub sim_scenario: Option<PathBuf>,
    /// Calendar file (TOML: business, providers, services, hours, closures) imported at start;
    /// see docs/calendar.md. Without a calendar the appointment tools are not offered.
    #[arg(long, value_name = "FILE")]
    pub calendar: Option<PathBuf>,
    /// Log caller numbers, key presses and transcripts in clear, for debugging. Without it they
    /// are written as "[redacted]" (the database keeps them, see `[privacy]`).
    #[arg(long)]
    pub log_pii: bool,
    /// Serve /healthz, /readyz, /metrics (Prometheus) and the read-only staff page on this
    /// address, e.g. 127.0.0.1:8080 [default: off]. The staff page needs the token of
    /// `[http] token_file`/`token_env`, or is served to loopback clients only.
    #[arg(long, value_name = "ADDR:PORT")]
    pub http_listen: Option<SocketAddr>,
}

/// `frontdesk sim` flags.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on, e.g. 127.0.0.1:8089.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8089")]
    pub listen: SocketAddr,
    /// Scenario file (TOML): greeting, replies per caller turn, function calls. See docs/simulator.md.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Append every client event received, verbatim, one JSON object per line.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Append every server event sent, one JSON object per line.
    #[arg(long, value_name = "FILE")]
    pub record_server: Option<PathBuf>,
    /// Echo mode: each reply is the caller's own last turn (for load tests).
    #[arg(long)]
    pub echo: bool,
    /// Refuse every new session with this HTTP status on the WebSocket upgrade (429, or a 5xx
    /// such as 503), to try failover. Finer control: `[[sessions]]` in the scenario.
    #[arg(long, value_name = "STATUS", value_parser = parse_refusal)]
    pub refuse_sessions: Option<u16>,
    /// Hold every session's `session.created` this many milliseconds (a slow model service).
    #[arg(long, value_name = "MS")]
    pub delay_session_created_ms: Option<u64>,
    /// End every session after this many seconds the way the service does at its cap: `error`
    /// `session_expired` ("Your session hit the maximum duration of …"), then close 1001
    /// (GPT-Live: `session.closed` with reason `expired`). Overrides the scenario's
    /// `max_session_s` [default: 3600 GA, 1800 beta].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub session_max_secs: Option<u64>,
}

fn parse_refusal(s: &str) -> Result<u16, String> {
    let status: u16 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not an HTTP status"))?;
    crate::realtime::sim::SessionRule::check_status(status)
}

/// `--db` and its password, shared by every command that uses the database.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// Database: a SQLite file path or sqlite://PATH (created if missing), or
    /// postgres://USER@HOST[:PORT]/DB[?host=SOCKET_DIR&sslmode=require] (one database shared by
    /// several frontdesk instances). Put no password in the URL: use --db-password-file or
    /// PGPASSWORD.
    #[arg(long, value_name = "PATH|URL", default_value = crate::store::DEFAULT_DB)]
    pub db: String,
    /// File whose first line is the PostgreSQL password (else PGPASSWORD is used).
    #[arg(long, value_name = "FILE")]
    pub db_password_file: Option<PathBuf>,
}

impl DbArgs {
    /// The parsed target.
    ///
    /// # Errors
    /// [`crate::store::TargetError`] for an unsupported URL or unreadable password file.
    pub fn target(&self) -> Result<crate::store::DbTarget, crate::store::TargetError> {
        crate::store::DbTarget::parse(&self.db, self.db_password_file.as_deref())
    }
}

/// `frontdesk db` subcommands.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create the database if needed and apply pending migrations.
    Migrate {
        /// The database (`--db`, `--db-password-file`).
        #[command(flatten)]
        db: DbArgs,
    },
}

/// `frontdesk calendar` subcommands.
#[derive(Debug, Subcommand)]
pub enum CalendarCommand {
    /// Import (create or update) a calendar file: business, providers, services, prices, opening
    /// hours and closures. Existing appointments are kept.
    Import {
        /// The calendar file (TOML); see deploy/calendar.example.toml.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The database (`--db`, `--db-password-file`).
        #[command(flatten)]
        db: DbArgs,
    },
}

/// `frontdesk appointments` subcommands.
#[derive(Debug, Subcommand)]
pub enum AppointmentsCommand {
    /// List appointments from today on (or of one day), in the business's local time.
    List {
        /// Only this local date (YYYY-MM-DD).
        #[arg(long, value_name = "DATE")]
        date: Option<chrono::NaiveDate>,
        /// Only this provider (id or name, or a unique part of it).
        #[arg(long, value_name = "PROVIDER")]
        provider: Option<String>,
        /// Also list cancelled appointments.
        #[arg(long)]
        all: bool,
        /// The database (`--db`, `--db-password-file`).
        #[command(flatten)]
        db: DbArgs,
    },
    /// Export the booked appointments as an iCalendar (.ics) file.
    Export {
        /// The file to write.
        #[arg(long, value_name = "FILE")]
        ics: PathBuf,
        /// The database (`--db`, `--db-password-file`).
        #[command(flatten)]
        db: DbArgs,
    },
}

/// `frontdesk messages` subcommands.
#[derive(Debug, Subcommand)]
pub enum MessagesCommand {
    /// List messages, newest first: time (UTC), caller, length, agent and the WAV file.
    List {
        /// `--since`, `--limit`, `--json` and the database.
        #[command(flatten)]
        list: ListArgs,
    },
}

/// The flags of a staff listing, newest first (`calls list`, `messages list`).
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Only those since then: 7d, 12h, 30m, 2026-12-01, "2026-12-01 08:00" (UTC) or RFC 3339.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// At most this many rows.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: u32,
    /// Print JSON (an array of objects) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The database (`--db`, `--db-password-file`).
    #[command(flatten)]
    pub db: DbArgs,
}

impl ListArgs {
    /// `--since` as an instant, relative forms counted back from `now`.
    ///
    /// # Errors
    /// A message naming the accepted forms ([`crate::tools::calls::parse_since`]).
    pub fn since(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
        self.since
            .as_deref()
            .map(|s| crate::tools::calls::parse_since(s, now))
            .transpose()
            .map_err(anyhow::Error::msg)
    }

    /// Prints `rows` as JSON with `--json`, else as the text `table` makes of them.
    fn print<T: serde::Serialize>(
        &self,
        rows: &[T],
        table: fn(&[T]) -> String,
    ) -> anyhow::Result<ExitCode> {
        if self.json {
            print_json(&rows)?;
        } else {
            print!("{}", table(rows));
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// `frontdesk calls` subcommands.
#[derive(Debug, Subcommand)]
pub enum CallsCommand {
    /// List calls, newest first: time (UTC), caller, route, outcome, duration, bookings, cost.
    List {
        /// Only calls whose caller number contains this text.
        #[arg(long, value_name = "NUMBER")]
        caller: Option<String>,
        /// `--since`, `--limit`, `--json` and the database.
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show one call: the transcript as a conversation, tool calls with arguments and results,
    /// end reason, media quality, usage and cost.
    Show {
        /// The call's SIP Call-ID (as `calls list` prints it).
        #[arg(value_name = "CALL-ID")]
        call_id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The database (`--db`, `--db-password-file`).
        #[command(flatten)]
        db: DbArgs,
    },
    /// Totals per day (UTC): calls, answered, minutes, bookings, tokens and cost.
    Summary {
        /// Days back from today, today included.
        #[arg(long, value_name = "N", default_value_t = 7)]
        days: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The database (`--db`, `--db-password-file`).
        #[command(flatten)]
        db: DbArgs,
    },
    /// Delete call data older than the retention (`[privacy]` of --config, else the defaults:
    /// transcripts 30 days, calls 365 days). `frontdesk serve` does this once a day by itself.
    Purge {
        /// Config file whose `[privacy]` section sets the retention.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Keep call rows (with their tool calls and transcripts) this many days.
        #[arg(long, value_name = "DAYS")]
        keep_calls_days: Option<u32>,
        /// Keep transcripts this many days.
        #[arg(long, value_name = "DAYS")]
        keep_transcripts_days: Option<u32>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The database (`--db`, `--db-password-file`).
        #[command(flatten)]
        db: DbArgs,
    },
}

/// `frontdesk dialplan` subcommands.
#[derive(Debug, Subcommand)]
pub enum DialplanCommand {
    /// Check the dialplan files: report every error with file:line:column and a hint (exit 1),
    /// or print the compiled routing table.
    Check {
        /// Dialplan directory.
        #[arg(value_name = "DIR", default_value = "./dialplans")]
        dir: PathBuf,
    },
    /// Show which route and action would handle a call.
    Test {
        /// Dialplan directory.
        #[arg(long, value_name = "DIR", default_value = "./dialplans")]
        dir: PathBuf,
        /// The called number (Request-URI user part).
        #[arg(long, value_name = "NUMBER")]
        to: String,
        /// The caller's number.
        #[arg(long, value_name = "NUMBER")]
        from: Option<String>,
        /// When the call happens: RFC 3339 (`2026-12-24T18:30:00Z`) or local time in the
        /// dialplan's time zone (`2026-12-24 18:30`) [default: now].
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `[sip.srtp_per_listen]` as (address, policy) pairs.
///
/// # Errors
/// A key that is not `ADDR:PORT`, or not one of the SIP listen addresses (UDP/TCP or TLS).
fn srtp_per_listen(
    map: Option<&std::collections::BTreeMap<String, crate::sdp::sdes::Policy>>,
    listen: &[SocketAddr],
    tls_listen: &[SocketAddr],
) -> anyhow::Result<Vec<(SocketAddr, crate::sdp::sdes::Policy)>> {
    let mut out = Vec::new();
    for (key, policy) in map.into_iter().flatten() {
        let addr: SocketAddr = key.trim().parse().map_err(|_| {
            anyhow::anyhow!("[sip.srtp_per_listen]: `{key}` is not ADDR:PORT (IPv6 in brackets)")
        })?;
        if !listen.contains(&addr) && !tls_listen.contains(&addr) {
            anyhow::bail!(
                "[sip.srtp_per_listen]: {addr} is not a SIP listen address (--sip-listen / [sip] listen, --sip-tls-listen / [sip.tls] listen)"
            );
        }
        out.push((addr, *policy));
    }
    Ok(out)
}

/// Where sessions go: the `[[realtime.endpoints]]` list, else one endpoint from `--realtime-url`
/// / `--realtime-protocol` / the single-endpoint `[realtime]` keys (named `default`), else (no
/// key, no URL) the built-in simulator. `--realtime-url` overrides an endpoint list.
///
/// # Errors
/// Both an endpoint list and single-endpoint keys, a duplicate or empty name, a bad dialect or
/// auth scheme.
fn realtime_backend(
    file: &config::RealtimeFile,
    url_flag: Option<String>,
    protocol_flag: Option<&str>,
    sim_scenario: Option<PathBuf>,
) -> anyhow::Result<RealtimeBackend> {
    let key = |key_env: Option<&str>| {
        std::env::var(key_env.unwrap_or("OPENAI_API_KEY"))
            .ok()
            .and_then(ApiKey::new)
    };
    if !file.endpoints.is_empty() && url_flag.is_none() {
        let single = [
            file.url.is_some(),
            file.protocol.is_some(),
            file.auth.is_some(),
            file.key_env.is_some(),
            file.key_file.is_some(),
            file.backend_model.is_some(),
        ];
        if single.into_iter().any(|set| set) {
            anyhow::bail!("[realtime] has both `endpoints` and single-endpoint keys (url, protocol, auth, key_env, key_file, backend_model); move those into the endpoint entries");
        }
        let mut targets: Vec<RealtimeTarget> = Vec::new();
        for e in &file.endpoints {
            let name = e.name.trim();
            if name.is_empty() {
                anyhow::bail!("[[realtime.endpoints]]: every endpoint needs a `name`");
            }
            if targets.iter().any(|t| t.name == name) {
                anyhow::bail!("[[realtime.endpoints]]: the name `{name}` is used twice");
            }
            let dialect = match e.protocol.as_deref() {
                Some(p) => config::parse_dialect(p)?,
                None => Dialect::Ga,
            };
            targets.push(RealtimeTarget {
                name: name.to_owned(),
                auth: config::parse_auth(e.auth.as_deref())
                    .with_context(|| format!("endpoint `{name}`"))?,
                key_file: e.key_file.clone(),
                backend_model: e.backend_model.clone(),
                ..RealtimeTarget::new(
                    e.url
                        .clone()
                        .unwrap_or_else(|| dialect.default_url().to_owned()),
                    dialect,
                    key(e.key_env.as_deref()),
                )
            });
        }
        return Ok(RealtimeBackend::Remote(targets));
    }
    let dialect = match protocol_flag.or(file.protocol.as_deref()) {
        Some(p) => config::parse_dialect(p)?,
        None => Dialect::Ga,
    };
    let api_key = key(file.key_env.as_deref());
    let has_key = api_key.is_some() || file.key_file.is_some();
    let url = url_flag.or(file.url.clone());
    Ok(match url {
        None if !has_key => RealtimeBackend::BuiltInSimulator {
            scenario: sim_scenario,
            dialect,
        },
        url => RealtimeBackend::Remote(vec![RealtimeTarget {
            auth: config::parse_auth(file.auth.as_deref())?,
            key_file: file.key_file.clone(),
            backend_model: file.backend_model.clone(),
            ..RealtimeTarget::new(
                url.unwrap_or_else(|| dialect.default_url().to_owned()),
                dialect,
                api_key,
            )
        }]),
    })
}

/// `frontdesk serve`'s settings: command-line flags (and `OPENAI_API_KEY`, `FRONTDESK_REALTIME_URL`) merged over
/// the config file.
///
/// # Errors
/// An unreadable or invalid config file, or an invalid value.
pub fn serve_settings(args: ServeArgs) -> anyhow::Result<ServeSettings> {
    let file = match &args.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let mut sip_listen = args.sip_listen;
    if sip_listen.is_empty() {
        sip_listen = file
            .sip
            .listen
            .map(config::OneOrMany::into_vec)
            .unwrap_or_default();
    }
    if sip_listen.is_empty() {
        sip_listen.push(SocketAddr::from(([0, 0, 0, 0], 5060)));
    }
    let mut media_ips = args.media_ip;
    if media_ips.is_empty() {
        media_ips = file
            .sip
            .media_ip
            .map(config::OneOrMany::into_vec)
            .unwrap_or_default();
    }
    if media_ips.is_empty() {
        // One per listen family.
        for l in &sip_listen {
            if !media_ips
                .iter()
                .any(|m: &IpAddr| m.is_ipv6() == l.is_ipv6())
            {
                media_ips.push(config::default_media_ip(l.ip()));
            }
        }
    }
    if media_ips.len() > 2
        || (media_ips.len() == 2 && media_ips[0].is_ipv6() == media_ips[1].is_ipv6())
    {
        anyhow::bail!("--media-ip takes at most one IPv4 and one IPv6 address");
    }
    let media_ip = media_ips[0];
    let media_ip_alt = media_ips.get(1).copied();
    let rtp_ports = args.rtp_ports.or(file.sip.rtp_ports).unwrap_or(PortRange {
        low: 10_000,
        high: 20_000,
    });
    let rollover = crate::bridge::call::RolloverSettings::from_file(&file.realtime)?;
    let realtime = realtime_backend(
        &file.realtime,
        args.realtime_url,
        args.realtime_protocol.as_deref(),
        args.sim_scenario,
    )?;
    let sip_tls_listen = if args.sip_tls_listen.is_empty() {
        file.sip
            .tls
            .listen
            .clone()
            .map(config::OneOrMany::into_vec)
            .unwrap_or_default()
    } else {
        args.sip_tls_listen
    };
    let srtp_listen = srtp_per_listen(
        file.sip.srtp_per_listen.as_ref(),
        &sip_listen,
        &sip_tls_listen,
    )?;
    Ok(ServeSettings {
        sip_tls_listen,
        sip_tls: crate::sip::tls::TlsSettings {
            cert: args.sip_tls_cert.or(file.sip.tls.cert.clone()),
            key: args.sip_tls_key.or(file.sip.tls.key.clone()),
            client_ca: args.sip_tls_client_ca.or(file.sip.tls.client_ca.clone()),
            require_client_cert: args.sip_tls_require_client_cert
                || file.sip.tls.require_client_cert.unwrap_or(false),
            ca: file.sip.tls.ca.clone(),
        },
        sip_listen,
        media_ip,
        media_ip_alt,
        rtp_ports,
        db: crate::store::DbTarget::parse(
            args.db
                .or(file.db)
                .as_deref()
                .unwrap_or(crate::store::DEFAULT_DB),
            args.db_password_file.or(file.db_password_file).as_deref(),
        )?,
        dialplans: args
            .dialplans
            .or(file.dialplans)
            .unwrap_or_else(|| PathBuf::from("./dialplans")),
        realtime,
        calendar: args.calendar.or(file.calendar),
        rtp_timeout: Duration::from_secs(
            args.rtp_timeout
                .or(file.sip.rtp_timeout_secs)
                .unwrap_or(DEFAULT_RTP_TIMEOUT_SECS),
        ),
        send_silence: args
            .send_silence
            .or(file.media.send_silence)
            .unwrap_or(true),
        srtp: crate::sdp::sdes::PolicyTable::new(
            args.srtp.or(file.media.srtp).unwrap_or_default(),
            args.sip_tls_srtp
                .or(file.sip.tls.srtp)
                .unwrap_or(crate::sdp::sdes::Policy::Require),
            srtp_listen,
            file.admission.as_ref(),
        ),
        connect_timeout: file
            .realtime
            .connect_timeout_secs
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        rollover,
        min_session_expires: file
            .sip
            .min_session_expires_secs
            .unwrap_or(crate::sip::session_timer::DEFAULT_MIN_SE),
        admission: crate::sip::admission::Policy::load(file.admission.as_ref())?,
        registrations: crate::sip::registration::load_accounts(&file.registrations)
            .context("invalid [[registrations]]")?,
        prices: crate::pricing::PriceTable::with_overrides(&file.pricing),
        http_listen: args.http_listen.or(file.http.listen),
        messages_dir: file
            .messages
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_MESSAGES_DIR)),
        http_token: file.http.token()?,
        privacy: Privacy {
            log_pii: args.log_pii || file.privacy.log_pii.unwrap_or(false),
            ..Privacy::from_file(&file.privacy)
        },
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let settings = serve_settings(args)?;
            crate::server::run(settings, crate::server::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sim(args) => {
            let mut scenario = match &args.scenario {
                Some(path) => Some(crate::realtime::sim::Scenario::load(path)?),
                None => None,
            };
            if args.refuse_sessions.is_some() || args.delay_session_created_ms.is_some() {
                let delay = Duration::from_millis(args.delay_session_created_ms.unwrap_or(0));
                scenario
                    .get_or_insert_with(Default::default)
                    .add_session_rule(crate::realtime::sim::SessionRule::all(
                        args.refuse_sessions,
                        delay,
                    ));
            }
            if let Some(secs) = args.session_max_secs {
                scenario
                    .get_or_insert_with(Default::default)
                    .set_max_session(std::time::Duration::from_secs(secs));
            }
            let opts = crate::realtime::sim::SimOptions {
                scenario,
                record: args.record,
                record_server: args.record_server,
                echo: args.echo,
            };
            crate::server::run_sim(args.listen, opts).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Db {
            command: DbCommand::Migrate { db },
        } => {
            let store = crate::store::Store::open(db.target()?).await?;
            println!("database {} is up to date", store.name());
            Ok(ExitCode::SUCCESS)
        }
        Command::Calendar {
            command: CalendarCommand::Import { file, db },
        } => {
            let cal = crate::calendar_file::load(&file)?;
            let store = crate::store::Store::open(db.target()?).await?;
            let s = crate::store::calendar::import(&store, &cal, chrono::Utc::now()).await?;
            println!(
                "imported {} into {}: {} provider(s), {} service(s), {} opening range(s), {} closure(s){}",
                s.business,
                store.name(),
                s.providers,
                s.services,
                s.hour_ranges,
                s.closures,
                if s.created { " (new business)" } else { "" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Appointments {
            command:
                AppointmentsCommand::List {
                    date,
                    provider,
                    all,
                    db,
                },
        } => {
            let store = crate::store::Store::open(db.target()?).await?;
            let opts = crate::tools::staff::ListOptions {
                business: None,
                date,
                provider,
                include_cancelled: all,
            };
            let text =
                crate::tools::staff::list_appointments(&store, &opts, chrono::Utc::now()).await?;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Appointments {
            command: AppointmentsCommand::Export { ics, db },
        } => {
            let store = crate::store::Store::open(db.target()?).await?;
            let n = crate::tools::staff::export_ics(&store, &ics, None).await?;
            println!("wrote {n} appointment(s) to {}", ics.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Calls { command } => run_calls(command).await,
        Command::Messages {
            command: MessagesCommand::List { list },
        } => {
            let since = list.since(chrono::Utc::now())?;
            let store = crate::store::Store::open(list.db.target()?).await?;
            let rows = store.list_messages(since, list.limit).await?;
            list.print(&rows, crate::store::messages::list_text)
        }
        Command::Dialplan {
            command: DialplanCommand::Check { dir },
        } => {
            let (out, err, valid) = crate::dialplan::check_report(&dir);
            print!("{out}");
            eprint!("{err}");
            Ok(if valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Dialplan {
            command: DialplanCommand::Test { dir, to, from, at },
        } => match crate::dialplan::test_report(&dir, &to, from.as_deref(), at.as_deref()) {
            Ok(out) => {
                print!("{out}");
                Ok(ExitCode::SUCCESS)
            }
            Err(err) => {
                eprintln!("{err}");
                Ok(ExitCode::from(1))
            }
        },
    }
}

async fn run_calls(command: CallsCommand) -> anyhow::Result<ExitCode> {
    use crate::tools::calls;
    let now = chrono::Utc::now();
    match command {
        CallsCommand::List { caller, list } => {
            let since = list.since(now)?;
            let store = crate::store::Store::open(list.db.target()?).await?;
            let rows = store
                .list_calls(&crate::store::history::CallFilter {
                    since,
                    caller,
                    limit: list.limit,
                })
                .await?;
            list.print(&rows, calls::list_text)
        }
        CallsCommand::Show {
            call_id,
            json: as_json,
            db,
        } => {
            let store = crate::store::Store::open(db.target()?).await?;
            let Some(detail) = store.call_detail(&call_id).await? else {
                eprintln!("no call with Call-ID {call_id:?} (see `frontdesk calls list`)");
                return Ok(ExitCode::from(1));
            };
            if as_json {
                print_json(&detail)?;
            } else {
                print!("{}", calls::show_text(&detail));
            }
            Ok(ExitCode::SUCCESS)
        }
        CallsCommand::Summary {
            days,
            json: as_json,
            db,
        } => {
            let store = crate::store::Store::open(db.target()?).await?;
            let since = now.date_naive() - chrono::Duration::days(i64::from(days.max(1)) - 1);
            let rows = store.daily_summary(since).await?;
            if as_json {
                print_json(&rows)?;
            } else {
                print!("{}", calls::summary_text(&rows));
            }
            Ok(ExitCode::SUCCESS)
        }
        CallsCommand::Purge {
            config,
            keep_calls_days,
            keep_transcripts_days,
            json: as_json,
            db,
        } => {
            let file = match &config {
                Some(path) => crate::config::ConfigFile::load(path)?,
                None => crate::config::ConfigFile::default(),
            };
            let privacy = crate::server::Privacy::from_file(&file.privacy);
            let store = crate::store::Store::open(db.target()?).await?;
            let report = store
                .purge(
                    now,
                    keep_calls_days.or(privacy.keep_calls_days),
                    keep_transcripts_days.or(privacy.keep_transcripts_days),
                )
                .await?;
            if as_json {
                print_json(&report)?;
            } else {
                print!("{}", calls::purge_text(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn realtime(text: &str) -> anyhow::Result<RealtimeBackend> {
        let file: config::ConfigFile = toml::from_str(text).expect("toml");
        realtime_backend(&file.realtime, None, None, None)
    }

    #[test]
    fn endpoint_lists_and_the_single_endpoint_keys() {
        let RealtimeBackend::Remote(list) = realtime(
            r#"
[realtime]
connect_timeout_secs = 4
[[realtime.endpoints]]
name = "azure-live"
url = "wss://r.openai.azure.com/openai/v1/live/sessions"
protocol = "live"
auth = "api-key"
key_env = "FRONTDESK_TEST_UNSET_KEY"
[[realtime.endpoints]]
name = "openai"
"#,
        )
        .expect("valid") else {
            panic!("remote endpoints expected")
        };
        let names: Vec<_> = list.iter().map(|t| (t.name.as_str(), t.dialect)).collect();
        assert_eq!(
            names,
            [("azure-live", Dialect::Live), ("openai", Dialect::Ga)]
        );
        assert_eq!(list[0].auth, crate::realtime::client::Auth::ApiKey);
        assert_eq!(list[1].url, Dialect::Ga.default_url());

        let RealtimeBackend::Remote(one) =
            realtime("[realtime]\nurl = \"ws://127.0.0.1:9/v1/realtime\"\n").expect("valid")
        else {
            panic!("remote endpoint expected")
        };
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].name, crate::realtime::client::DEFAULT_ENDPOINT_NAME);

        let both = realtime("[realtime]\nurl = \"ws://x\"\n[[realtime.endpoints]]\nname = \"a\"\n");
        assert!(both.is_err());
        let twice = realtime(
            "[[realtime.endpoints]]\nname = \"a\"\n[[realtime.endpoints]]\nname = \"a\"\n",
        );
        assert!(format!("{:#}", twice.expect_err("duplicate")).contains("used twice"));
    }

    #[test]
    fn srtp_per_listen_keys_must_be_listen_addresses() {
        use crate::sdp::sdes::Policy;
        let file: config::ConfigFile = toml::from_str(
            "[sip.srtp_per_listen]\n\"203.0.113.5:5061\" = \"require\"\n\"[::]:5060\" = \"off\"\n",
        )
        .expect("toml");
        let map = file.sip.srtp_per_listen.as_ref();
        let udp: Vec<SocketAddr> = vec![
            "0.0.0.0:5060".parse().unwrap(),
            "[::]:5060".parse().unwrap(),
        ];
        let tls: Vec<SocketAddr> = vec!["203.0.113.5:5061".parse().unwrap()];
        let got = srtp_per_listen(map, &udp, &tls).expect("valid");
        assert_eq!(
            got,
            vec![
                ("203.0.113.5:5061".parse().unwrap(), Policy::Require),
                ("[::]:5060".parse().unwrap(), Policy::Off),
            ]
        );
        let err = srtp_per_listen(map, &udp, &[]).expect_err("not a listener");
        assert!(
            err.to_string()
                .contains("203.0.113.5:5061 is not a SIP listen address"),
            "{err}"
        );
        let bad: config::ConfigFile =
            toml::from_str("[sip.srtp_per_listen]\n\"pbx:5060\" = \"offer\"\n").expect("toml");
        let err =
            srtp_per_listen(bad.sip.srtp_per_listen.as_ref(), &udp, &tls).expect_err("bad key");
        assert!(
            err.to_string().contains("`pbx:5060` is not ADDR:PORT"),
            "{err}"
        );
        assert!(toml::from_str::<config::ConfigFile>(
            "[sip.srtp_per_listen]\n\"[::]:5060\" = \"always\"\n"
        )
        .is_err());
    }
}
