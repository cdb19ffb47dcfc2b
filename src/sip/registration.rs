//! Outbound registration: frontdesk registers itself as an extension (or trunk user) with one or
//! more registrars (PBX, SIP trunk) so calls to that user reach it (RFC 3261 §10).
//!
//! Split, as everywhere in frontdesk, into a sans-IO core and a thin async shell:
//! - [`schedule`]: when to REGISTER (refresh at 80 % of the granted expiry, exponential backoff
//!   after failures, `Min-Expires`, expiry detection, un-REGISTER on shutdown). No clock, no I/O.
//! - [`super::digest`] (shared with admission): digest answers (MD5 and SHA-256, qop=auth),
//!   reproducible from its inputs.
//! - this file: one tokio task per [`Account`] that drives the schedule, sends the REGISTERs as
//!   client transactions of the endpoint's rsipstack transaction layer (so retransmissions and
//!   Timer F are rsipstack's) and writes one log line per state change.
//!
//! Each account keeps one Call-ID and From tag for the process lifetime and increments CSeq
//! (RFC 3261 §10.2.4). Only our own Contact is removed on shutdown (`Expires: 0` for that
//! Contact, never `Contact: *`), so several frontdesk instances may share one AOR.
//!
//! Passwords come from an environment variable or a file, are wrapped in [`Password`] (which never
//! prints itself) and never appear in logs.

pub mod schedule;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rsipstack::sip::prelude::{HeadersExt as _, ToTypedHeader as _};
use rsipstack::sip::{Header, Method, Response, SipMessage, StatusCodeKind};
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::{SipAddr, SipConnection};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument as _};

use super::digest;
use crate::config::RegistrationFile;
use schedule::{Backoff, Event, Outcome, Output, Schedule};

/// Expiry asked for when the config names none (RFC 3261 §10.2.1.1 suggests 3600 s).
pub const DEFAULT_EXPIRES: Duration = Duration::from_secs(3600);
/// How long the un-REGISTER may take during shutdown before we give up on it.
pub const UNREGISTER_TIMEOUT: Duration = Duration::from_secs(4);
/// Upper bound for one REGISTER attempt, challenge round included (Timer F is 32 s per request).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(70);
/// How many `stale=true` re-challenges one attempt answers (RFC 7616 §3.3).
const MAX_STALE_RETRIES: u32 = 2;

/// A password that never prints itself (`Debug` and `Display` show `<redacted>`).
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a secret.
    pub fn new(secret: String) -> Password {
        Password(secret)
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Transport towards a registrar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrarTransport {
    /// UDP (the default).
    Udp,
    /// TCP (`;transport=tcp` on the registrar URI).
    Tcp,
    /// TLS (a `sips:` registrar URI, or `;transport=tls`); needs a `--sip-tls-listen` address
    /// for our Contact.
    Tls,
}

/// One validated `[[registrations]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Name used in logs.
    pub name: String,
    /// Request-URI of the REGISTERs, e.g. `sip:pbx.example.com` or `sip:10.0.0.5:5070;transport=tcp`.
    pub registrar: String,
    /// Transport named by the registrar URI.
    pub transport: RegistrarTransport,
    /// The address-of-record we bind, `sip:<user>@<domain>`.
    pub aor: String,
    /// Digest user name (the auth user, else the user).
    pub auth_user: String,
    /// Digest password.
    pub password: Password,
    /// Expiry asked for.
    pub expires: Duration,
    /// User part of our Contact (calls from the registrar arrive with it in the Request-URI).
    pub contact_user: String,
}

/// A `[[registrations]]` entry that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// Neither `password_env` nor `password_file` is set, or both are.
    #[error("registration '{name}': set exactly one of password_env or password_file (the password itself never goes into the config file)")]
    PasswordSource {
        /// The entry.
        name: String,
    },
    /// The environment variable is not set (or not UTF-8).
    #[error("registration '{name}': environment variable {var} (password_env) is not set")]
    PasswordEnv {
        /// The entry.
        name: String,
        /// The variable.
        var: String,
    },
    /// The password file cannot be read.
    #[error("registration '{name}': cannot read password_file {path}: {reason}")]
    PasswordFile {
        /// The entry.
        name: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The password is empty.
    #[error("registration '{name}': the password is empty")]
    EmptyPassword {
        /// The entry.
        name: String,
    },
    /// The registrar URI is not usable.
    #[error("registration '{name}': invalid registrar '{registrar}': {reason}")]
    Registrar {
        /// The entry.
        name: String,
        /// The URI as written.
        registrar: String,
        /// What is wrong.
        reason: String,
    },
    /// A value is out of range or malformed.
    #[error("registration '{name}': invalid {field}: {reason}")]
    Field {
        /// The entry.
        name: String,
        /// The key.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Two entries share a name.
    #[error("registration name '{name}' is used twice")]
    DuplicateName {
        /// The name.
        name: String,
    },
}

/// Every problem found in the `[[registrations]]` entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountErrors(pub Vec<AccountError>);

impl std::fmt::Display for AccountErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for AccountErrors {}

/// Validates every entry and reads its password; collects all problems.
///
/// # Errors
/// [`AccountErrors`] listing each unusable entry.
pub fn load_accounts(files: &[RegistrationFile]) -> Result<Vec<Account>, AccountErrors> {
    let mut accounts = Vec::new();
    let mut errors = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if files[..i].iter().any(|g| g.name == f.name) {
            errors.push(AccountError::DuplicateName {
                name: f.name.clone(),
            });
            continue;
        }
        let password = read_password(f);
        match Account::from_file(f, password) {
            Ok(a) => accounts.push(a),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(accounts)
    } else {
        Err(AccountErrors(errors))
    }
}

/// Reads the password named by an entry: the variable's value, or the file's first line.
fn read_password(f: &RegistrationFile) -> Result<Password, AccountError> {
    let name = f.name.clone();
    let secret = match (&f.password_env, &f.password_file) {
        (Some(var), None) => std::env::var(var).map_err(|_| AccountError::PasswordEnv {
            name: name.clone(),
            var: var.clone(),
        })?,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| AccountError::PasswordFile {
                name: name.clone(),
                path: path.clone(),
                reason: e.to_string(),
            })?;
            text.lines().next().unwrap_or_default().to_owned()
        }
        _ => return Err(AccountError::PasswordSource { name }),
    };
    if secret.is_empty() {
        return Err(AccountError::EmptyPassword { name });
    }
    Ok(Password::new(secret))
}

/// A user part we are willing to put into URIs.
fn valid_user(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/%".contains(c))
}

impl Account {
    /// Validates one entry, given its password (already read, or the error reading it).
    ///
    /// # Errors
    /// The first problem of this entry.
    pub fn from_file(
        f: &RegistrationFile,
        password: Result<Password, AccountError>,
    ) -> Result<Account, AccountError> {
        let name = f.name.clone();
        let field = |field: &'static str, reason: &str| AccountError::Field {
            name: name.clone(),
            field,
            reason: reason.to_owned(),
        };
        if name.trim().is_empty() {
            return Err(field("name", "must not be empty"));
        }
        let bad_registrar = |reason: String| AccountError::Registrar {
            name: name.clone(),
            registrar: f.registrar.clone(),
            reason,
        };
        let uri = rsipstack::sip::Uri::try_from(f.registrar.trim())
            .map_err(|e| bad_registrar(format!("not a SIP URI ({e})")))?;
        let sips = match uri.scheme {
            Some(rsipstack::sip::Scheme::Sip) | None => false,
            Some(rsipstack::sip::Scheme::Sips) => true,
            Some(_) => {
                return Err(bad_registrar(
                    "only sip: and sips: URIs are supported".into(),
                ))
            }
        };
        if uri.auth.is_some() {
            return Err(bad_registrar(
                "a registrar URI has no user part; put the user into `user`".into(),
            ));
        }
        let transport = match uri.params.iter().find_map(|p| match p {
            rsipstack::sip::Param::Transport(t) => Some(*t),
            _ => None,
        }) {
            _ if sips => RegistrarTransport::Tls,
            None | Some(rsipstack::sip::Transport::Udp) => RegistrarTransport::Udp,
            Some(rsipstack::sip::Transport::Tcp) => RegistrarTransport::Tcp,
            Some(rsipstack::sip::Transport::Tls) => RegistrarTransport::Tls,
            Some(t) => {
                return Err(bad_registrar(format!(
                    "transport {t} is not supported (use udp, tcp or tls)"
                )))
            }
        };
        if !valid_user(&f.user) {
            return Err(field("user", "must be a non-empty SIP user part"));
        }
        if let Some(u) = &f.contact_user {
            if !valid_user(u) {
                return Err(field("contact_user", "must be a non-empty SIP user part"));
            }
        }
        if f.auth_user.as_deref().is_some_and(str::is_empty) {
            return Err(field("auth_user", "must not be empty when set"));
        }
        let domain = match &f.domain {
            Some(d) if d.trim().is_empty() || d.contains(['@', ' ', ';', '<', '>']) => {
                return Err(field("domain", "must be a host name or IP address"))
            }
            Some(d) => d.trim().to_owned(),
            None => uri.host_with_port.host.to_string(),
        };
        let expires = match f.expires_secs {
            None => DEFAULT_EXPIRES,
            Some(s) if (10..=86_400).contains(&s) => Duration::from_secs(s),
            Some(_) => return Err(field("expires_secs", "must be between 10 and 86400")),
        };
        let aor = format!("sip:{}@{}", f.user, domain);
        rsipstack::sip::Uri::try_from(aor.as_str())
            .map_err(|e| field("user", &format!("does not form a SIP URI {aor}: {e}")))?;
        Ok(Account {
            name: name.clone(),
            registrar: f.registrar.trim().to_owned(),
            transport,
            aor,
            auth_user: f.auth_user.clone().unwrap_or_else(|| f.user.clone()),
            password: password?,
            expires,
            contact_user: f.contact_user.clone().unwrap_or_else(|| f.user.clone()),
        })
    }
}

/// What registrations need from the SIP endpoint; made by
/// [`SipEndpoint::registrations`](super::SipEndpoint::registrations).
#[derive(Clone)]
pub struct Registrations {
    endpoint: EndpointInnerRef,
    /// `ip:port` we advertise in Contact (the listen address, or the advertised IP).
    contact_host: String,
    /// `ip:port` of our first TLS listener, for registrations over TLS.
    tls_contact_host: Option<String>,
}

/// The running registration tasks.
pub struct RegistrationTasks {
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl RegistrationTasks {
    /// Stops every registration: each removes its binding (`Expires: 0`) if it has one. Returns
    /// when all are done or after `within`. The SIP endpoint must still be running.
    pub async fn stop(self, within: Duration) {
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(within, self.tracker.wait())
            .await
            .is_err()
        {
            warn!("some registrations did not finish their un-REGISTER within {within:?}");
        }
    }
}

impl Registrations {
    pub(super) fn new(
        endpoint: EndpointInnerRef,
        contact_host: String,
        tls_contact_host: Option<String>,
    ) -> Registrations {
        Registrations {
            endpoint,
            contact_host,
            tls_contact_host,
        }
    }

    /// Starts one task per account. They REGISTER at once and keep the bindings fresh until
    /// [`RegistrationTasks::stop`].
    pub fn spawn(&self, accounts: Vec<Account>) -> RegistrationTasks {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        for account in accounts {
            let span =
                tracing::info_span!("registration", name = %account.name, aor = %account.aor);
            let host = match (account.transport, &self.tls_contact_host) {
                (RegistrarTransport::Tls, Some(h)) => h.as_str(),
                (RegistrarTransport::Tls, None) => {
                    warn!(name = %account.name, "registration over TLS without --sip-tls-listen: calls from the registrar cannot reach us over TLS");
                    self.contact_host.as_str()
                }
                _ => self.contact_host.as_str(),
            };
            let client = RegisterClient::new(self.endpoint.clone(), host, account);
            tracker.spawn(run_account(client, cancel.child_token()).instrument(span));
        }
        RegistrationTasks { cancel, tracker }
    }
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Drives one account's schedule until cancelled, then un-REGISTERs.
async fn run_account(mut client: RegisterClient, cancel: CancellationToken) {
    let account = client.account.clone();
    info!(registrar = %account.registrar, contact = %client.contact_uri(), expires_secs = account.expires.as_secs(), "registering");
    let mut schedule = Schedule::new(now(), account.expires, Backoff::default());
    'run: loop {
        while let Some(out) = schedule.poll_output() {
            match out {
                Output::Event(e) => log_event(&client, &e),
                Output::Register { expires } => {
                    let result = tokio::select! {
                        r = client.register(expires) => Some(r),
                        _ = cancel.cancelled() => None,
                    };
                    let Some((outcome, reason)) = result else {
                        break 'run;
                    };
                    client.last_reason = reason;
                    schedule.handle_outcome(now(), outcome);
                }
            }
        }
        let deadline = schedule.poll_timeout();
        tokio::select! {
            _ = cancel.cancelled() => break 'run,
            _ = sleep_until(deadline) => schedule.handle_timeout(now()),
        }
    }
    // Shutdown: remove our binding if there is (or may be) one.
    schedule.handle_shutdown(now());
    while let Some(out) = schedule.poll_output() {
        match out {
            Output::Event(e) => log_event(&client, &e),
            Output::Register { expires } => {
                let (outcome, reason) = match tokio::time::timeout(
                    UNREGISTER_TIMEOUT,
                    client.register(expires),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => (
                        Outcome::NoResponse,
                        format!("no answer within {UNREGISTER_TIMEOUT:?}"),
                    ),
                };
                client.last_reason = reason;
                schedule.handle_outcome(now(), outcome);
            }
        }
    }
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

fn log_event(client: &RegisterClient, event: &Event) {
    let a = &client.account;
    let reason = &client.last_reason;
    match event {
        Event::Registered { .. } | Event::Refreshed { .. } => {
            crate::observe::registration(&a.name, true)
        }
        Event::Rejected { .. }
        | Event::NoResponse { .. }
        | Event::Expired
        | Event::Unregistered
        | Event::UnregisterFailed { .. } => crate::observe::registration(&a.name, false),
        Event::ExpiryRaised { .. } => {}
    }
    match event {
        Event::Registered {
            expires,
            refresh_in,
        } => info!(
            registrar = %a.registrar,
            contact = %client.bound_contact.as_deref().unwrap_or_default(),
            expires_secs = expires.as_secs(),
            "registered: the registrar binds {} to us for {}s; refreshing in {}s",
            a.aor,
            expires.as_secs(),
            refresh_in.as_secs()
        ),
        Event::Refreshed {
            expires,
            refresh_in,
        } => info!(
            expires_secs = expires.as_secs(),
            "registration refreshed for {}s; next refresh in {}s",
            expires.as_secs(),
            refresh_in.as_secs()
        ),
        Event::ExpiryRaised { expires } => info!(
            "registrar wants a longer expiry (423 Interval Too Brief): asking for {}s",
            expires.as_secs()
        ),
        Event::Rejected {
            code,
            retry_in,
            failures,
        } => warn!(
            registrar = %a.registrar,
            status = code,
            failures,
            "registration rejected: {reason}; retrying in {}s",
            retry_in.as_secs()
        ),
        Event::NoResponse { retry_in, failures } => warn!(
            registrar = %a.registrar,
            failures,
            "registration failed: {reason}; retrying in {}s",
            retry_in.as_secs()
        ),
        Event::Expired => warn!(
            "registration expired: the registrar no longer routes calls for {} to us",
            a.aor
        ),
        Event::Unregistered => info!(registrar = %a.registrar, "unregistered (Expires: 0)"),
        Event::UnregisterFailed { .. } => warn!(
            registrar = %a.registrar,
            "un-REGISTER failed: {reason}; the registrar drops the binding when it expires"
        ),
    }
}

/// Meaning of a final REGISTER response for the logs.
fn explain(code: u16, challenge_answered: bool) -> &'static str {
    match code {
        401 | 407 if challenge_answered => {
            "wrong password or user (the registrar refused our digest credentials)"
        }
        401 | 407 => "the registrar demands credentials it did not let us answer",
        403 => "wrong user, password or domain, or this client may not register",
        404 => "unknown user: the registrar has no such account",
        420 | 421 => "the registrar requires an extension frontdesk does not support",
        423 => "the registrar keeps refusing the expiry",
        480 | 500..=599 => "the registrar is unavailable or failing",
        600..=699 => "the registrar declined",
        200..=299 => "the registrar granted no binding (expires 0)",
        _ => "the registrar refused the registration",
    }
}

/// Sends the REGISTERs of one account.
struct RegisterClient {
    endpoint: EndpointInnerRef,
    account: Arc<Account>,
    registrar: rsipstack::sip::Uri,
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// `host:port` of our Contact (the advertised address, or what the registrar saw over UDP).
    contact_host: String,
    /// The Contact of the last REGISTER answered 2xx.
    bound_contact: Option<String>,
    /// Human explanation of the last attempt's result (for the log lines).
    last_reason: String,
}

impl RegisterClient {
    fn new(endpoint: EndpointInnerRef, contact_host: &str, account: Account) -> RegisterClient {
        // Validated in `Account::from_file`; a failure here would be a bug, reported per attempt.
        let registrar = rsipstack::sip::Uri::try_from(account.registrar.as_str())
            .unwrap_or_else(|_| rsipstack::sip::Uri::default());
        RegisterClient {
            endpoint,
            account: Arc::new(account),
            registrar,
            call_id: format!("{:016x}@frontdesk", rand::random::<u64>()),
            from_tag: format!("{:08x}", rand::random::<u32>()),
            cseq: 0,
            contact_host: contact_host.to_owned(),
            bound_contact: None,
            last_reason: String::new(),
        }
    }

    fn contact_uri(&self) -> String {
        match self.account.transport {
            RegistrarTransport::Udp => {
                format!("sip:{}@{}", self.account.contact_user, self.contact_host)
            }
            RegistrarTransport::Tcp => format!(
                "sip:{}@{};transport=tcp",
                self.account.contact_user, self.contact_host
            ),
            RegistrarTransport::Tls => format!(
                "sip:{}@{};transport=tls",
                self.account.contact_user, self.contact_host
            ),
        }
    }

    /// One REGISTER asking for `expires` (zero removes our binding), answering one digest
    /// challenge (more when the registrar says the nonce was stale).
    async fn register(&mut self, expires: Duration) -> (Outcome, String) {
        match tokio::time::timeout(ATTEMPT_TIMEOUT, self.register_inner(expires)).await {
            Ok(r) => r,
            Err(_) => (
                Outcome::NoResponse,
                format!("no final response within {ATTEMPT_TIMEOUT:?}"),
            ),
        }
    }

    async fn register_inner(&mut self, expires: Duration) -> (Outcome, String) {
        // Unregister removes exactly the binding we created.
        let contact = match (expires.is_zero(), &self.bound_contact) {
            (true, Some(c)) => c.clone(),
            _ => self.contact_uri(),
        };
        let expires_secs = u32::try_from(expires.as_secs()).unwrap_or(u32::MAX);
        let mut credentials: Option<Header> = None;
        let mut answered = false;
        let mut stale_retries = 0;
        loop {
            let resp = match self
                .transact(expires_secs, &contact, credentials.clone())
                .await
            {
                Ok(r) => r,
                Err(e) => return (Outcome::NoResponse, e),
            };
            let code = u16::from(resp.status_code.clone());
            let status = resp.status_code.to_string();
            debug!(status = %status, "REGISTER answered");
            match code {
                200..=299 => {
                    let granted = granted_expiry(&resp, &contact, expires_secs);
                    self.learn_public_address(&resp);
                    if expires.is_zero() {
                        self.bound_contact = None;
                    } else {
                        self.bound_contact = Some(contact);
                    }
                    return (
                        Outcome::Registered {
                            granted: Duration::from_secs(granted.into()),
                        },
                        if granted == 0 && !expires.is_zero() {
                            format!("{status}: {}", explain(code, answered))
                        } else {
                            status
                        },
                    );
                }
                401 | 407 => {
                    let values: Vec<String> = resp
                        .headers
                        .iter()
                        .filter(|h| {
                            let n = h.name();
                            if code == 401 {
                                n.eq_ignore_ascii_case("WWW-Authenticate")
                            } else {
                                n.eq_ignore_ascii_case("Proxy-Authenticate")
                            }
                        })
                        .map(|h| h.value().to_owned())
                        .collect();
                    let challenge = match digest::pick_challenge(values.iter().map(String::as_str))
                    {
                        Ok(c) => c,
                        Err(e) => {
                            return (
                                Outcome::Rejected {
                                    code,
                                    retry_after: None,
                                },
                                format!("{status}: cannot answer the challenge: {e}"),
                            )
                        }
                    };
                    if answered {
                        if !challenge.stale || stale_retries >= MAX_STALE_RETRIES {
                            return (
                                Outcome::Rejected {
                                    code,
                                    retry_after: None,
                                },
                                format!("{status}: {}", explain(code, true)),
                            );
                        }
                        stale_retries += 1;
                    }
                    answered = true;
                    let cnonce = format!("{:016x}", rand::random::<u64>());
                    let value = digest::authorization(
                        &challenge,
                        &self.account.auth_user,
                        self.account.password.expose(),
                        "REGISTER",
                        &self.registrar.to_string(),
                        &cnonce,
                    );
                    debug!(algorithm = %challenge.algorithm, qop_auth = challenge.qop_auth, stale = challenge.stale, "answering the digest challenge");
                    credentials = Some(if code == 401 {
                        Header::Authorization(value.into())
                    } else {
                        Header::ProxyAuthorization(value.into())
                    });
                }
                423 => {
                    let min = resp
                        .min_expires_header()
                        .and_then(|h| h.value().trim().parse::<u64>().ok());
                    return match min {
                        Some(min) => (
                            Outcome::IntervalTooBrief {
                                min_expires: Duration::from_secs(min),
                            },
                            status,
                        ),
                        None => (
                            Outcome::Rejected {
                                code,
                                retry_after: None,
                            },
                            format!("{status} without Min-Expires"),
                        ),
                    };
                }
                // rsipstack answers a request that timed out (Timer F) with a local 408.
                408 => {
                    return (
                        Outcome::NoResponse,
                        format!(
                            "no answer from the registrar ({status}); check the registrar address and that it is reachable"
                        ),
                    )
                }
                _ => {
                    let retry_after = resp
                        .header_value("Retry-After")
                        .and_then(|v| {
                            v.split([';', ' ', '('])
                                .next()
                                .and_then(|n| n.trim().parse::<u64>().ok())
                        })
                        .map(Duration::from_secs);
                    return (
                        Outcome::Rejected { code, retry_after },
                        format!("{status}: {}", explain(code, answered)),
                    );
                }
            }
        }
    }

    /// Sends one REGISTER as a client transaction and returns its final response.
    async fn transact(
        &mut self,
        expires: u32,
        contact: &str,
        credentials: Option<Header>,
    ) -> Result<Response, String> {
        self.cseq += 1;
        let target = SipAddr::try_from(&self.registrar).map_err(|e| e.to_string())?;
        // The Via names the local address of the connection the request leaves on (UDP socket or
        // the TCP connection to the registrar), RFC 3261 §18.1.1; `;rport` is always requested.
        let via_addr = match self.endpoint.transport_layer.lookup(&target, None).await {
            Ok((connection, _)) => Some(connection.get_addr().clone()),
            Err(e) => {
                return Err(format!(
                    "cannot reach registrar {}: {e}",
                    self.account.registrar
                ))
            }
        };
        let via = self
            .endpoint
            .get_via(via_addr, None)
            .map_err(|e| e.to_string())?;
        let aor = rsipstack::sip::Uri::try_from(self.account.aor.as_str())
            .map_err(|e| format!("invalid AOR {}: {e}", self.account.aor))?;
        let to = rsipstack::sip::typed::To {
            display_name: None,
            uri: aor.clone(),
            params: vec![],
        };
        let from = rsipstack::sip::typed::From {
            display_name: None,
            uri: aor,
            params: vec![rsipstack::sip::Param::Tag(self.from_tag.clone().into())],
        };
        let mut request = self.endpoint.make_request(
            Method::Register,
            self.registrar.clone(),
            via,
            from,
            to,
            self.cseq,
            Some(self.call_id.clone().into()),
        );
        request
            .headers
            .push(Header::Contact(format!("<{contact}>").into()));
        request
            .headers
            .push(Header::Expires(expires.to_string().into()));
        request
            .headers
            .push(Header::Allow(super::ALLOW.to_owned().into()));
        if let Some(c) = credentials {
            request.headers.push(c);
        }
        let key = TransactionKey::from_request(&request, TransactionRole::Client)
            .map_err(|e| e.to_string())?;
        let mut tx = Transaction::new_client(key, request, self.endpoint.clone(), None);
        tx.send()
            .await
            .map_err(|e| format!("cannot send REGISTER to {}: {e}", self.account.registrar))?;
        while let Some(msg) = tx.receive().await {
            if let SipMessage::Response(resp) = msg {
                if resp.status_code.kind() != StatusCodeKind::Provisional {
                    return Ok(resp);
                }
            }
        }
        Err("the REGISTER transaction ended without a final response".into())
    }

    /// RFC 3581 over UDP: when the registrar saw us at another address than we sent from (a NAT),
    /// later REGISTERs advertise that address (`received`/`rport` of the response's Via) in
    /// Contact, so the registrar's calls reach us through the NAT binding.
    fn learn_public_address(&mut self, resp: &Response) {
        if self.account.transport != RegistrarTransport::Udp {
            return;
        }
        let Ok(via) = resp.via_header() else { return };
        let Ok(typed) = via.typed() else { return };
        let saw_received = typed
            .params
            .iter()
            .any(|p| matches!(p, rsipstack::sip::Param::Received(_)));
        if !saw_received {
            return;
        }
        let Ok((_, public)) = SipConnection::parse_target_from_via(via) else {
            return;
        };
        let public = public.to_string();
        if public != self.contact_host {
            info!(
                advertised = %self.contact_host,
                seen_as = %public,
                "the registrar sees us behind a NAT: advertising {public} in Contact from now on"
            );
            self.contact_host = public;
        }
    }
}

/// The expiry the registrar granted to `ours` (RFC 3261 §10.2.4): the `expires` parameter of our
/// Contact in the 2xx, else the `Expires` header, else what we asked for.
fn granted_expiry(resp: &Response, ours: &str, requested: u32) -> u32 {
    if requested == 0 {
        return 0;
    }
    let ours = rsipstack::sip::Uri::try_from(ours).ok();
    let contacts = resp.typed_contact_headers().unwrap_or_default();
    let mine = contacts
        .iter()
        .find(|c| ours.as_ref().is_some_and(|o| same_binding(&c.uri, o)));
    let header = resp
        .expires_header()
        .and_then(|h| h.value().trim().parse::<u32>().ok());
    match mine.and_then(|c| c.expires()) {
        Some(e) => e,
        None => header.unwrap_or(requested),
    }
}

/// Same user, host (case-insensitive) and port (5060 when absent).
fn same_binding(a: &rsipstack::sip::Uri, b: &rsipstack::sip::Uri) -> bool {
    let user = |u: &rsipstack::sip::Uri| u.auth.as_ref().map(|a| a.user.clone());
    let port = |u: &rsipstack::sip::Uri| {
        u.host_with_port
            .port
            .as_ref()
            .map(|p| p.value())
            .unwrap_or(5060)
    };
    user(a) == user(b)
        && a.host_with_port
            .host
            .to_string()
            .eq_ignore_ascii_case(&b.host_with_port.host.to_string())
        && port(a) == port(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> RegistrationFile {
        RegistrationFile {
            name: name.into(),
            registrar: "sip:pbx.example.com:5070;transport=tcp".into(),
            user: "frontdesk".into(),
            auth_user: None,
            domain: None,
            password_env: Some("FRONTDESK_TEST_UNSET_VARIABLE_XYZ".into()),
            password_file: None,
            expires_secs: None,
            contact_user: None,
        }
    }

    fn pw() -> Result<Password, AccountError> {
        Ok(Password::new("s3cret".into()))
    }

    #[test]
    fn account_defaults_and_aor() {
        let a = Account::from_file(&file("pbx"), pw()).expect("valid");
        assert_eq!(a.aor, "sip:frontdesk@pbx.example.com");
        assert_eq!(a.transport, RegistrarTransport::Tcp);
        assert_eq!(a.expires, DEFAULT_EXPIRES);
        assert_eq!(a.auth_user, "frontdesk");
        assert_eq!(a.contact_user, "frontdesk");
        let mut f = file("pbx");
        f.domain = Some("example.com".into());
        f.auth_user = Some("auth-id-7".into());
        f.contact_user = Some("reception".into());
        f.expires_secs = Some(600);
        let a = Account::from_file(&f, pw()).expect("valid");
        assert_eq!(a.aor, "sip:frontdesk@example.com");
        assert_eq!(a.auth_user, "auth-id-7");
        assert_eq!(a.contact_user, "reception");
        assert_eq!(a.expires, Duration::from_secs(600));
    }

    #[test]
    fn passwords_never_print() {
        let a = Account::from_file(&file("pbx"), pw()).expect("valid");
        let shown = format!("{a:?} {}", a.password);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn invalid_entries_are_all_reported() {
        let mut bad_uri = file("a");
        bad_uri.registrar = "sip:alice@pbx.example.com".into();
        let mut bad_tls = file("b");
        bad_tls.registrar = "sip:pbx.example.com;transport=ws".into();
        let mut no_pw = file("c");
        no_pw.password_env = None;
        let mut both = file("d");
        both.password_file = Some("/nonexistent".into());
        let mut short = file("e");
        short.expires_secs = Some(5);
        let unset_env = file("f");
        let mut missing_file = file("g");
        missing_file.password_env = None;
        missing_file.password_file = Some("/nonexistent/frontdesk-password".into());
        let dup = file("f");
        let errs = load_accounts(&[
            bad_uri,
            bad_tls,
            no_pw,
            both,
            short,
            unset_env,
            missing_file,
            dup,
        ])
        .expect_err("all invalid");
        let text = errs.to_string();
        assert_eq!(errs.0.len(), 8, "{text}");
        assert!(matches!(errs.0[0], AccountError::Registrar { .. }));
        assert!(text.contains("put the user into `user`"), "{text}");
        assert!(text.contains("is not supported (use udp, tcp or tls)"), "{text}");
        assert!(matches!(errs.0[2], AccountError::PasswordSource { .. }));
        assert!(matches!(errs.0[3], AccountError::PasswordSource { .. }));
        assert!(matches!(
            errs.0[4],
            AccountError::Field {
                field: "expires_secs",
                ..
            }
        ));
        assert!(matches!(errs.0[5], AccountError::PasswordEnv { .. }));
        assert!(matches!(errs.0[6], AccountError::PasswordFile { .. }));
        assert!(matches!(errs.0[7], AccountError::DuplicateName { .. }));
    }

    #[test]
    fn password_file_first_line_is_the_password() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pw");
        std::fs::write(&path, "  spaced secret \nsecond line\n").expect("write");
        let mut f = file("pbx");
        f.password_env = None;
        f.password_file = Some(path.clone());
        let accounts = load_accounts(&[f.clone()]).expect("valid");
        assert_eq!(accounts[0].password.expose(), "  spaced secret ");
        std::fs::write(&path, "\n").expect("write");
        assert!(matches!(
            load_accounts(&[f]).expect_err("empty").0[0],
            AccountError::EmptyPassword { .. }
        ));
    }

    #[test]
    fn config_section_parses_and_refuses_inline_passwords() {
        let cfg: crate::config::ConfigFile = toml::from_str(
            r#"
[[registrations]]
name = "pbx"
registrar = "sip:pbx.example.com;transport=tcp"
user = "reception"
auth_user = "a1b2"
domain = "example.com"
password_file = "/etc/frontdesk/pbx.secret"
expires_secs = 600
contact_user = "desk"

[[registrations]]
name = "trunk"
registrar = "sip:sip.provider.example"
user = "+4930123456"
password_env = "TRUNK_PASSWORD"
"#,
        )
        .expect("valid");
        assert_eq!(cfg.registrations.len(), 2);
        assert_eq!(cfg.registrations[0].expires_secs, Some(600));
        assert_eq!(
            cfg.registrations[1].password_env.as_deref(),
            Some("TRUNK_PASSWORD")
        );
        let inline = toml::from_str::<crate::config::ConfigFile>(
            "[[registrations]]\nname = \"x\"\nregistrar = \"sip:h\"\nuser = \"u\"\npassword = \"secret\"\n",
        );
        assert!(
            inline.is_err(),
            "a password in the config file must be refused"
        );
    }

    fn ok_response(extra: &str) -> Response {
        let text = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKx;rport=5080\r\nFrom: <sip:agent@127.0.0.1>;tag=a\r\nTo: <sip:agent@127.0.0.1>;tag=b\r\nCall-ID: c\r\nCSeq: 2 REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Response::try_from(text.as_str()).expect("parses")
    }

    #[test]
    fn granted_expiry_prefers_our_contact() {
        // Another instance shares the AOR (load balancing): pick our binding's expiry.
        let resp = ok_response(
            "Contact: <sip:agent@127.0.0.1:5090>;expires=30, <sip:agent@127.0.0.1:5080;transport=tcp>;expires=600\r\nExpires: 900\r\n",
        );
        assert_eq!(
            granted_expiry(&resp, "sip:agent@127.0.0.1:5080;transport=tcp", 3600),
            600
        );
        assert_eq!(granted_expiry(&resp, "sip:agent@10.0.0.1:5080", 3600), 900);
        assert_eq!(granted_expiry(&ok_response(""), "sip:agent@h", 120), 120);
        assert_eq!(granted_expiry(&resp, "sip:agent@127.0.0.1:5090", 0), 0);
    }
}
