//! `frontdesk serve`: wires the SIP endpoint, the store, the dialplan and the Realtime target
//! together and supervises one task per call. Also hosts `frontdesk sim`.
//!
//! Shutdown order (SIGINT/SIGTERM or the `shutdown` future): new INVITEs get 503, every call task is
//! cancelled and hangs up with BYE while the registrations send their un-REGISTER (Expires: 0),
//! the supervisor waits for both (bounded), then SIP stops.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn, Instrument as _};

use crate::bridge::call::{self, CallContext};
use crate::config::{self, PortRange};
use crate::dialplan::{self, Dialplan, DialplanHandle};
use crate::media::ports::PortPool;
use crate::realtime::client::RealtimeTarget;
use crate::realtime::protocol::Dialect;
use crate::realtime::sim;
use crate::sip::{SipConfig, SipEndpoint};
use crate::store::Store;

/// How long calls get to hang up during shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long the registrations get to remove their bindings during shutdown.
const UNREGISTER_GRACE: Duration = Duration::from_secs(5);
/// Default silence (no caller RTP) after which a call is ended, in seconds.
pub const DEFAULT_RTP_TIMEOUT_SECS: u64 = 30;
/// Default directory of the messages callers leave (`[messages] dir`).
pub const DEFAULT_MESSAGES_DIR: &str = "./messages";
/// Default time to open a Realtime session before refusing the call with 503.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where Realtime sessions come from.
#[derive(Debug, Clone)]
pub enum RealtimeBackend {
    /// WebSocket endpoints (OpenAI, Azure, a gateway, or an external simulator), tried in
    /// order (see [`crate::realtime::failover`]).
    Remote(Vec<RealtimeTarget>),
    /// The simulator, started inside this process on a loopback port.
    BuiltInSimulator {
        /// Scenario for it.
        scenario: Option<PathBuf>,
        /// Dialect to speak to it.
        dialect: Dialect,
    },
}

/// Everything `serve` needs, after merging flags, environment and the config file.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// SIP UDP+TCP listen address.
    pub sip_listen: Vec<SocketAddr>,
    /// SIP-over-TLS listen addresses (may be empty).
    pub sip_tls_listen: Vec<SocketAddr>,
    /// `[sip.tls]`: certificate, key, client CA.
    pub sip_tls: crate::sip::tls::TlsSettings,
    /// IP advertised in SDP.
    pub media_ip: IpAddr,
    /// IP of the other family advertised in SDP (dual stack).
    pub media_ip_alt: Option<IpAddr>,
    /// RTP ports.
    pub rtp_ports: PortRange,
    /// The database (`--db`).
    pub db: crate::store::DbTarget,
    /// Dialplan directory.
    pub dialplans: PathBuf,
    /// Realtime backend.
    pub realtime: RealtimeBackend,
    /// Session-open timeout.
    pub connect_timeout: Duration,
    /// What an answered call does when its model session ends (`[realtime]` rollover keys).
    pub rollover: crate::bridge::call::RolloverSettings,
    /// Calendar file imported at start (services, providers, hours, closures).
    pub calendar: Option<PathBuf>,
    /// No caller RTP for this long ends a call (`rtp-timeout`).
    pub rtp_timeout: Duration,
    /// Continuous RTP toward the caller (`--send-silence`, `[media] send_silence`).
    pub send_silence: bool,
    /// SRTP policy per trunk and default (`--srtp`, `[media] srtp`, `[[admission.trunks]] srtp`).
    pub srtp: crate::sdp::sdes::PolicyTable,
    /// Who may call (`[admission]`; open to anyone without it).
    pub admission: crate::sip::admission::Policy,
    /// Smallest RFC 4028 session interval accepted (`[sip] min_session_expires_secs`).
    pub min_session_expires: u32,
    /// Registrars to register with (`[[registrations]]`), passwords already read.
    pub registrations: Vec<crate::sip::registration::Account>,
    /// Prices for the cost estimate of each call (`[pricing]` over the defaults).
    pub prices: crate::pricing::PriceTable,
    /// Retention and storage of call data (`[privacy]`).
    pub privacy: Privacy,
    /// HTTP listener address (`--http-listen`, `[http] listen`); `None`: off.
    pub http_listen: Option<SocketAddr>,
    /// Staff page token (`[http] token_file` / `token_env`); never logged.
    pub http_token: Option<String>,
    /// Where recorded caller messages are written (`[messages] dir`).
    pub messages_dir: PathBuf,
}

/// What is stored about callers and for how long (`[privacy]`, `--log-pii`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Privacy {
    /// Days transcripts are kept (`None`: forever).
    pub keep_transcripts_days: Option<u32>,
    /// Days call rows are kept (`None`: forever).
    pub keep_calls_days: Option<u32>,
    /// Whether transcripts are stored.
    pub store_transcripts: bool,
    /// Log personal data in clear.
    pub log_pii: bool,
}

impl Privacy {
    /// The `[privacy]` section with its defaults (30 days of transcripts, 365 of calls).
    pub fn from_file(file: &config::PrivacyFile) -> Privacy {
        Privacy {
            keep_transcripts_days: Some(
                file.keep_transcripts_days
                    .unwrap_or(config::DEFAULT_KEEP_TRANSCRIPTS_DAYS),
            ),
            keep_calls_days: Some(
                file.keep_calls_days
                    .unwrap_or(config::DEFAULT_KEEP_CALLS_DAYS),
            ),
            store_transcripts: file.store_transcripts.unwrap_or(true),
            log_pii: file.log_pii.unwrap_or(false),
        }
    }
}

/// Resolves when the process gets SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    info!("shutdown requested");
}

/// Installs rustls's `ring` crypto provider for the process (the WebSocket client's rustls features
/// compile without one and would panic on the first `wss://` connect). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Runs `frontdesk serve` until `shutdown` resolves.
///
/// # Errors
/// Start-up failures: database, dialplan, SIP bind, simulator bind.
pub async fn run(
    settings: ServeSettings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    install_crypto_provider();
    crate::telemetry::set_log_pii(settings.privacy.log_pii);
    if settings.privacy.log_pii {
        warn!("--log-pii: caller numbers and transcripts are written to the log in clear");
    }
    let store = Store::open(&settings.db).await?;
    let dialplan = match Dialplan::load_dir(&settings.dialplans) {
        Ok(plan) => plan,
        Err(errors) => {
            for e in &errors {
                error!("dialplan: {e}");
            }
            anyhow::bail!(
                "the dialplan in {} has {} error(s); fix them (see `frontdesk dialplan check`)",
                settings.dialplans.display(),
                errors.len()
            );
        }
    };

    if let Some(path) = &settings.calendar {
        let cal = crate::calendar_file::load(path)?;
        let summary = crate::store::calendar::import(&store, &cal, chrono::Utc::now())
            .await
            .with_context(|| format!("cannot import calendar {}", path.display()))?;
        info!(file = %path.display(), business = %summary.business, providers = summary.providers, services = summary.services, "calendar imported");
    }
    let businesses = crate::store::calendar::business_keys(&store)
        .await
        .context("cannot read the calendar")?;
    if businesses.is_empty() {
        info!("no calendar configured (--calendar FILE): the appointment tools are not offered to the model");
    }

    let sim_token = CancellationToken::new();
    let targets = match &settings.realtime {
        RealtimeBackend::Remote(list) => {
            for t in list {
                info!(endpoint = %t.name, url = %t.url, protocol = ?t.dialect, authenticated = t.api_key.is_some() || t.key_file.is_some(), "Realtime sessions go to a remote service");
            }
            list.clone()
        }
        RealtimeBackend::BuiltInSimulator { scenario, dialect } => {
            let scenario = match scenario {
                Some(path) => Some(sim::Scenario::load(path)?),
                None => None,
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .context("cannot start the built-in Realtime simulator")?;
            let addr = listener.local_addr()?;
            let opts = sim::SimOptions {
                scenario,
                ..sim::SimOptions::default()
            };
            let token = sim_token.clone();
            tokio::spawn(async move {
                if let Err(e) = sim::serve(listener, opts, token).await {
                    error!(error = %e, "built-in Realtime simulator stopped");
                }
            });
            let path = match dialect {
                Dialect::Live => crate::realtime::live::LIVE_PATH,
                Dialect::Ga | Dialect::Beta => "/v1/realtime",
            };
            let url = format!("ws://{addr}{path}");
            warn!(%url, "OPENAI_API_KEY is not set: calls talk to the built-in Realtime SIMULATOR, not to OpenAI (set OPENAI_API_KEY to use OpenAI)");
            vec![RealtimeTarget::new(url, *dialect, None)]
        }
    };
    let endpoints = crate::realtime::failover::Endpoints::new(targets);

    let sip_token = CancellationToken::new();
    let sip_config = SipConfig {
        listen: settings.sip_listen.clone(),
        advertised_ips: std::iter::once(settings.media_ip)
            .chain(settings.media_ip_alt)
            .collect(),
        user_agent: format!("frontdesk/{}", env!("CARGO_PKG_VERSION")),
        admission: settings.admission.clone(),
        min_session_expires: settings.min_session_expires,
        tls_listen: settings.sip_tls_listen.clone(),
        tls: settings.sip_tls.clone(),
    };
    let (endpoint, mut incoming) = SipEndpoint::bind(&sip_config, sip_token.clone()).await?;
    let admission = endpoint.admission();
    let sip_addr = endpoint.local_addr();
    let registrar = endpoint.registrations();
    let sip_up = Arc::new(AtomicBool::new(true));
    let sip_task = {
        let sip_up = sip_up.clone();
        tokio::spawn(async move {
            endpoint.run().await;
            sip_up.store(false, Ordering::Relaxed);
        })
    };
    // Registrations start once SIP serves (their responses arrive through the endpoint).
    let registrations = registrar.spawn(settings.registrations.clone());
    let ports = PortPool::new(settings.rtp_ports.low, settings.rtp_ports.high)
        .map_err(|e| anyhow::anyhow!("invalid RTP port range: {e}"))?;
    info!(version = %dialplan.version(), routes = dialplan.routes().len(), dir = %settings.dialplans.display(), "dialplan loaded");
    let unknown = dialplan.check_endpoints(&endpoints.names());
    if !unknown.is_empty() {
        for e in &unknown {
            error!("dialplan: {e}");
        }
        anyhow::bail!(
            "the dialplan in {} names model endpoints that are not configured",
            settings.dialplans.display()
        );
    }
    let dialplan = DialplanHandle::with_endpoints(dialplan, endpoints.names());
    let reload_token = CancellationToken::new();
    tokio::spawn(dialplan::watch(
        settings.dialplans.clone(),
        dialplan.clone(),
        reload_token.clone(),
    ));
    let ctx = Arc::new(CallContext {
        store: store.clone(),
        dialplan,
        ports: Mutex::new(ports),
        media_ip: settings.media_ip,
        media_ip_alt: settings.media_ip_alt,
        realtime: endpoints,
        messages_dir: settings.messages_dir.clone(),
        connect_timeout: settings.connect_timeout,
        rollover: settings.rollover.clone(),
        calendar_tools: !businesses.is_empty(),
        rtp_timeout: settings.rtp_timeout,
        send_silence: settings.send_silence,
        srtp: settings.srtp.clone(),
        prices: settings.prices.clone(),
        store_transcripts: settings.privacy.store_transcripts,
    });
    let purge_token = CancellationToken::new();
    tokio::spawn(daily_purge(
        store.clone(),
        settings.privacy,
        purge_token.clone(),
    ));
    info!(
        sip = %sip_addr,
        media_ip = %settings.media_ip,
        rtp_ports = %format!("{}-{}", settings.rtp_ports.low, settings.rtp_ports.high),
        db = %settings.db,
        "frontdesk is ready: listening for SIP on UDP and TCP"
    );

    let calls_token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let accepting = Arc::new(AtomicBool::new(true));
    let http_token = CancellationToken::new();
    if let Some(addr) = settings.http_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for HTTP on {addr}"))?;
        let metrics = match crate::observe::install() {
            Ok(h) => Some(h),
            Err(e) => {
                warn!(error = %e, "metrics recorder not installed; /metrics is off");
                None
            }
        };
        let state = Arc::new(crate::http::HttpState::new(
            store.clone(),
            metrics,
            settings.http_token.clone(),
            accepting.clone(),
            sip_up.clone(),
            tracker.clone(),
        ));
        let local = listener.local_addr()?;
        info!(
            http = %local,
            staff_page = if settings.http_token.is_some() { "token required" } else { "loopback clients only" },
            "HTTP listener: /healthz /readyz /metrics and the staff page at /"
        );
        let token = http_token.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::http::serve(listener, state, token).await {
                error!(error = %e, "HTTP listener stopped");
            }
        });
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            call = incoming.recv() => {
                let Some(call) = call else { break };
                let span = tracing::info_span!("call", call_id = %call.call_id);
                let facts = CallFacts::of(&call);
                let task = call::run(ctx.clone(), call, calls_token.child_token());
                #[cfg(debug_assertions)]
                let task = fault::panic_hook(task, facts.called.clone());
                let handle = tokio::spawn(task.instrument(span.clone()));
                tracker.spawn(supervise(handle, facts, store.clone()).instrument(span));
            }
        }
    }

    admission.stop_accepting();
    accepting.store(false, Ordering::Relaxed);
    info!(
        active_calls = tracker.len(),
        "stopping: new calls get 503, hanging up active calls"
    );
    // Un-REGISTER (Expires: 0) while the calls hang up; both finish before SIP stops.
    let unregister = tokio::spawn(registrations.stop(UNREGISTER_GRACE));
    calls_token.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        warn!("some calls did not finish within {SHUTDOWN_GRACE:?}");
    }
    let _ = unregister.await;
    sip_token.cancel();
    reload_token.cancel();
    purge_token.cancel();
    http_token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), sip_task).await;
    sim_token.cancel();
    store.close().await;
    info!("frontdesk stopped");
    Ok(())
}

/// What the supervisor knows of a call before its task starts, to record it if the task dies.
struct CallFacts {
    call_id: String,
    from_uri: String,
    to_uri: String,
    caller: Option<String>,
    called: Option<String>,
    transport: &'static str,
    /// Read before the task starts, so at or before the `started_at` of the row it writes.
    started_at: chrono::DateTime<chrono::Utc>,
}

impl CallFacts {
    fn of(call: &crate::sip::IncomingCall) -> CallFacts {
        CallFacts {
            call_id: call.call_id.clone(),
            from_uri: call.from_uri.clone(),
            to_uri: call.to_uri.clone(),
            caller: call.caller_user.clone(),
            called: call.called_user.clone(),
            transport: call.transport.as_str(),
            started_at: chrono::Utc::now(),
        }
    }
}

/// Waits for one call task. A task that panicked is logged with its Call-ID and its call is
/// recorded with `end_reason = internal-error` (the row it started, else a new one). Its RTP
/// port, admission slot and dialog were released while it unwound (RAII guards; the dropped
/// dialog sends BYE, see `sip::CallEvents`); every other call and the endpoint go on.
async fn supervise(call: tokio::task::JoinHandle<()>, facts: CallFacts, store: Store) {
    let Err(e) = call.await else { return };
    if !e.is_panic() {
        warn!(call_id = %facts.call_id, "call task was cancelled");
        return;
    }
    let panic = e.into_panic();
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    error!(call_id = %facts.call_id, panic = %what, "call task panicked; the call is ended and recorded as internal-error");
    let call = crate::store::NewCall {
        call_id: &facts.call_id,
        from_uri: &facts.from_uri,
        to_uri: &facts.to_uri,
        caller: facts.caller.as_deref(),
        called: facts.called.as_deref(),
        transport: facts.transport,
        started_at: facts.started_at,
    };
    let end = crate::store::CallEnd {
        end_reason: "internal-error".to_owned(),
        end_initiator: "local".to_owned(),
        ..crate::store::CallEnd::default()
    };
    if let Err(e) = store
        .record_unfinished_call(&call, &end, chrono::Utc::now())
        .await
    {
        error!(call_id = %facts.call_id, error = %e, "CALL RECORD LOST: cannot record the panicked call");
    }
}

/// Test-only fault injection, compiled into debug builds only.
#[cfg(debug_assertions)]
pub(crate) mod fault {
    use std::future::Future;
    use std::time::Duration;

    /// Environment variable: the called user (Request-URI user part) whose call task panics.
    pub const PANIC_CALL_ENV: &str = "FRONTDESK_FAULT_PANIC_CALL";
    /// Environment variable: how long after the INVITE that task panics, in ms (default 3000,
    /// well after the answer with the built-in simulator).
    pub const PANIC_AFTER_MS_ENV: &str = "FRONTDESK_FAULT_PANIC_AFTER_MS";
    /// Environment variable: every tool call (the functions run by `tools::call`, not the
    /// call-control tools the core handles) takes at least this long, in ms, before it runs.
    pub const TOOL_DELAY_MS_ENV: &str = "FRONTDESK_FAULT_TOOL_DELAY_MS";

    /// Sleeps for [`TOOL_DELAY_MS_ENV`] (nothing when it is unset or not a number). Called by
    /// the call's tool task before it runs a tool, so a test can make a tool slow.
    pub(crate) async fn tool_delay() {
        let ms = std::env::var(TOOL_DELAY_MS_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(ms) = ms {
            tracing::debug!(
                ms,
                "fault injection: {TOOL_DELAY_MS_ENV} delays this tool call"
            );
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    /// `call`, or, for the call to the user named by [`PANIC_CALL_ENV`], `call` that panics
    /// inside the call's own task after [`PANIC_AFTER_MS_ENV`] (dropping the call's state while
    /// it unwinds, as a real panic would).
    pub async fn panic_hook(call: impl Future<Output = ()>, called: Option<String>) {
        let hit = std::env::var(PANIC_CALL_ENV)
            .ok()
            .is_some_and(|u| Some(u) == called);
        if !hit {
            return call.await;
        }
        let after = std::env::var(PANIC_AFTER_MS_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3000);
        tokio::pin!(call);
        tokio::select! {
            () = &mut call => {}
            () = tokio::time::sleep(Duration::from_millis(after)) => {
                panic!("fault injection: {PANIC_CALL_ENV} panics this call");
            }
        }
    }
}

/// How often `serve` applies the `[privacy]` retention.
const PURGE_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Applies the retention at start and then once a day, until `cancel`.
async fn daily_purge(store: Store, privacy: Privacy, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(PURGE_INTERVAL);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store
            .purge(
                chrono::Utc::now(),
                privacy.keep_calls_days,
                privacy.keep_transcripts_days,
            )
            .await
        {
            Ok(r) if r.calls + r.turns + r.tool_calls > 0 => info!(
                calls = r.calls,
                turns = r.turns,
                tool_calls = r.tool_calls,
                keep_calls_days = ?privacy.keep_calls_days,
                keep_transcripts_days = ?privacy.keep_transcripts_days,
                "retention: old call data deleted"
            ),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "retention purge failed; retrying tomorrow"),
        }
    }
}

/// Runs `frontdesk sim` on `listen` with `opts` until SIGINT/SIGTERM.
///
/// # Errors
/// The listen address cannot be bound.
pub async fn run_sim(listen: SocketAddr, opts: sim::SimOptions) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let token = CancellationToken::new();
    let stopper = token.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        stopper.cancel();
    });
    info!(url = %format!("ws://{addr}/v1/realtime"), "Realtime simulator listening");
    sim::serve(listener, opts, token).await?;
    Ok(())
}
