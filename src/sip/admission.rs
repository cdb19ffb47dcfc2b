//! Inbound admission: who may place a call, how often, and how many calls run at once.
//!
//! [`Admission`] is a sans-IO core. It never reads a clock (every method takes `now`), never touches
//! a socket or a file, and never logs. The SIP shell (`SipEndpoint::new_call`) feeds it the facts of
//! each out-of-dialog INVITE and sends the response it decides on. A rejected INVITE never reaches
//! the call supervisor, so no dialog and no Realtime session exists for it. OPTIONS, and the ACK,
//! BYE and CANCEL of admitted dialogs, never come here.
//!
//! ```text
//! INVITE
//!   ├─ source's token bucket empty? (its trunk's rate, else the global one) ─► 503 + Retry-After
//!   │
//!   ├─ source in a trunk's allow-list ─────────────────────────────────────┐
//!   ├─ else, no digest users configured ─► 403 Forbidden                   │
//!   ├─ else, no credentials, or a nonce we did not issue ─► 401            │
//!   ├─ else, unknown user or wrong password ─► 403 (one and the same)      │
//!   ├─ else, right password, nonce expired or response reused ─► 401 stale │
//!   └─ else (valid credentials) ───────────────────────────────────────────┤
//!                                                                          ▼
//!                                  max_calls calls in progress? ─ yes ─► 503 + Retry-After
//!                                                               │ no
//!                                                               ▼
//!                                   admit: a CallSlot, held by the call until it ends
//! ```
//!
//! Invariants:
//! - Calls in progress equal the live [`CallSlot`]s and never exceed `max_calls`. The slot is an
//!   RAII guard; every end of a call (answer and BYE, reject, CANCEL, panic, shutdown) drops it.
//! - An unknown user and a wrong password get the same [`Decision`] after the same hashing work:
//!   an unknown user's response is checked against a dummy key.
//! - Memory is bounded: at most [`MAX_TRACKED_SOURCES`] token buckets and
//!   [`REPLAY_CACHE_CAPACITY`] remembered digest responses. Nonces are stateless (an HMAC over the
//!   issue time), so challenging a flood of INVITEs stores nothing.
//!
//! The core has no timers and queues no output (`handle_invite` returns its decision): buckets
//! refill lazily when a source calls again, nonces expire when they are checked.
//!
//! [`Policy::load`] is the shell half: it turns the `[admission]` section of the config file into a
//! validated policy at start-up, reading the users' passwords from environment variables or files.
//! Passwords are hashed into per-algorithm keys at once and never printed (`Debug` redacts them).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use super::digest::{self, hex, Algorithm};
use crate::config::{self, AdmissionFile, AdmissionUserFile};

/// Calls in progress at once when `[admission] max_calls` is not set (also without the section).
pub const DEFAULT_MAX_CALLS: usize = 100;
/// New calls (INVITEs) per minute per source when `rate_per_source` is not set.
pub const DEFAULT_RATE_PER_MINUTE: u32 = 30;
/// INVITEs a source may send back to back before the per-minute rate applies.
pub const DEFAULT_RATE_BURST: u32 = 10;
/// Digest realm when `realm` is not set.
pub const DEFAULT_REALM: &str = "frontdesk";
/// How long a nonce we issued stays valid when `nonce_lifetime_secs` is not set.
pub const DEFAULT_NONCE_LIFETIME: Duration = Duration::from_secs(300);
/// Retry-After (seconds) of a 503 sent because `max_calls` calls are in progress.
pub const MAX_CALLS_RETRY_AFTER_SECS: u64 = 10;
/// Sources whose token buckets are remembered. When a new source would exceed it, the full buckets
/// (which behave like an unknown source) are forgotten; if that is not enough, all of them are.
pub const MAX_TRACKED_SOURCES: usize = 65_536;
/// Digest responses remembered to refuse their replay within the nonce lifetime; beyond it the
/// oldest are forgotten first.
pub const REPLAY_CACHE_CAPACITY: usize = 16_384;

/// The only method admission sees (HA2 of the digest covers it).
const METHOD: &str = "INVITE";

// ---------------------------------------------------------------------------------------------
// CIDR networks

/// A source network such as `10.0.0.0/8` or `2001:db8::/32`; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

/// Why a network in an allow-list is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not an address or `address/length`.
    #[error("'{0}' is not an IP network like 10.0.0.0/8 or 2001:db8::/32")]
    Syntax(String),
    /// The prefix length exceeds the address size.
    #[error(
        "'{0}': the prefix length is longer than the address (at most /32 for IPv4, /128 for IPv6)"
    )]
    PrefixTooLong(String),
    /// Bits below the prefix are set (`10.1.2.3/8`): probably a typo, so refused.
    #[error("'{text}' has bits set below the prefix; write {network}/{prefix_len}")]
    HostBits {
        /// What was written.
        text: String,
        /// The network it probably means.
        network: IpAddr,
        /// The prefix length written.
        prefix_len: u8,
    },
}

impl Cidr {
    /// Whether `ip` lies in this network. IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a
    /// dual-stack socket reports) match IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask_v4(self.prefix_len);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask_v6(self.prefix_len);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }

    /// Whether this network is a whole address family (`0.0.0.0/0` or `::/0`).
    pub fn is_everything(&self) -> bool {
        self.prefix_len == 0
    }
}

fn mask_v4(prefix_len: u8) -> u32 {
    match prefix_len {
        0 => 0,
        n => u32::MAX << (32 - u32::from(n.min(32))),
    }
}

fn mask_v6(prefix_len: u8) -> u128 {
    match prefix_len {
        0 => 0,
        n => u128::MAX << (128 - u32::from(n.min(128))),
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::Syntax(text.to_owned()))?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len {
            None => max,
            Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => l
                .parse::<u8>()
                .map_err(|_| CidrError::PrefixTooLong(text.to_owned()))?,
            Some(_) => return Err(CidrError::Syntax(text.to_owned())),
        };
        if prefix_len > max {
            return Err(CidrError::PrefixTooLong(text.to_owned()));
        }
        let network = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask_v4(prefix_len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask_v6(prefix_len))),
        };
        if network != addr {
            return Err(CidrError::HostBits {
                text: text.to_owned(),
                network,
                prefix_len,
            });
        }
        Ok(Cidr {
            network,
            prefix_len,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

// ---------------------------------------------------------------------------------------------
// Rate limiting

/// A token-bucket rate: `per_minute` tokens per minute, at most `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained INVITEs per minute.
    pub per_minute: u32,
    /// INVITEs that may come back to back (bucket size, at least 1).
    pub burst: u32,
}

/// Why a bucket had no token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limited {
    /// When the next token will be there.
    pub retry_after: Duration,
    /// The previous attempt of this source was refused too (lets the shell log only the first).
    pub repeated: bool,
}

/// A token bucket on explicit time: starts full, refills continuously, never holds more than
/// `burst` tokens. Time that goes backwards is ignored.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    last: Instant,
    limited: bool,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: RateLimit, now: Instant) -> TokenBucket {
        TokenBucket {
            limit,
            tokens: f64::from(limit.burst.max(1)),
            last: now,
            limited: false,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        if now > self.last {
            self.last = now;
        }
        let per_sec = f64::from(self.limit.per_minute) / 60.0;
        self.tokens =
            (self.tokens + elapsed.as_secs_f64() * per_sec).min(f64::from(self.limit.burst.max(1)));
    }

    /// Takes one token.
    ///
    /// # Errors
    /// [`Limited`] with the time until a token is available when the bucket is empty.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Limited> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.limited = false;
            return Ok(());
        }
        let per_sec = f64::from(self.limit.per_minute) / 60.0;
        let retry_after = if per_sec > 0.0 {
            Duration::from_secs_f64(((1.0 - self.tokens) / per_sec).min(86_400.0))
        } else {
            Duration::from_secs(86_400)
        };
        let repeated = std::mem::replace(&mut self.limited, true);
        Err(Limited {
            retry_after,
            repeated,
        })
    }

    /// Whether the bucket is full at `now` (it then behaves exactly like a new one).
    pub fn is_full(&self, now: Instant) -> bool {
        let mut b = self.clone();
        b.refill(now);
        b.tokens >= f64::from(self.limit.burst.max(1))
    }
}

/// The key of a source's bucket: the IPv4 address, or the /64 of an IPv6 address (one host
/// usually owns a whole /64, so per-address buckets would not limit it).
fn source_key(ip: Option<IpAddr>) -> Option<IpAddr> {
    ip.map(|ip| match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask_v6(64))),
        v4 => v4,
    })
}

// ---------------------------------------------------------------------------------------------
// Digest authentication (RFC 3261 §22.4, RFC 7616)

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HMAC-SHA-256 (RFC 2104) with a key of at most 64 bytes.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(msg);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner);
    let mut out = [0u8; 32];
    out.copy_from_slice(&outer.finalize());
    out
}

// ---------------------------------------------------------------------------------------------
// Policy: the validated `[admission]` section

/// A trunk: a named set of source networks whose INVITEs are admitted without a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    /// Name for the logs.
    pub name: String,
    /// Source networks.
    pub allow: Vec<Cidr>,
    /// Its own rate (`Some(None)`: unlimited); `None` uses the global `rate_per_source`.
    pub rate: Option<Option<RateLimit>>,
}

/// A digest user's keys: HA1 per configured algorithm. The password itself is not kept.
#[derive(Clone)]
struct UserKeys(Vec<(Algorithm, String)>);

impl UserKeys {
    fn ha1(&self, alg: Algorithm) -> Option<&str> {
        self.0
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, k)| k.as_str())
    }
}

impl fmt::Debug for UserKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Digest authentication settings.
#[derive(Debug, Clone)]
pub struct DigestPolicy {
    /// The realm of our challenges.
    pub realm: String,
    /// Algorithms offered, one `WWW-Authenticate` each, preferred first (RFC 8760 §2.4).
    pub algorithms: Vec<Algorithm>,
    /// How long a nonce stays valid.
    pub nonce_lifetime: Duration,
    users: HashMap<String, UserKeys>,
}

impl DigestPolicy {
    /// The configured user names.
    pub fn user_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.users.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}

/// The validated admission policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Calls in progress at once.
    pub max_calls: usize,
    /// Rate limit per source for sources outside trunks with their own rate; `None` = unlimited.
    pub rate: Option<RateLimit>,
    /// Trunks, tried in order.
    pub trunks: Vec<Trunk>,
    /// Digest users for sources outside every trunk; `None` = such sources get 403.
    pub digest: Option<DigestPolicy>,
    /// No `[admission]` section: every source is admitted (only `max_calls` applies).
    pub open: bool,
}

impl Policy {
    /// The policy without an `[admission]` section: anyone may call, no rate limit, at most
    /// [`DEFAULT_MAX_CALLS`] calls at once.
    pub fn open() -> Policy {
        Policy {
            max_calls: DEFAULT_MAX_CALLS,
            rate: None,
            trunks: Vec::new(),
            digest: None,
            open: true,
        }
    }

    /// Builds the policy from the config file's section (`None`: no section, [`Policy::open`]),
    /// reading each user's password from its environment variable or file. Start-up only.
    ///
    /// # Errors
    /// [`config::Error::Invalid`] listing every problem: a bad network, an unset variable, an
    /// unreadable password file, duplicate names, no trunk and no user, ...
    pub fn load(file: Option<&AdmissionFile>) -> Result<Policy, config::Error> {
        match file {
            None => Ok(Policy::open()),
            Some(f) => Policy::compile(f, read_password),
        }
    }

    /// Validates `file`, getting each user's password from `password` (which returns the reason
    /// when it cannot). Pure apart from what `password` does.
    ///
    /// # Errors
    /// [`config::Error::Invalid`] listing every problem found.
    pub fn compile(
        file: &AdmissionFile,
        mut password: impl FnMut(&AdmissionUserFile) -> Result<String, String>,
    ) -> Result<Policy, config::Error> {
        let mut errors: Vec<String> = Vec::new();
        let max_calls = file.max_calls.unwrap_or(DEFAULT_MAX_CALLS);
        if max_calls == 0 {
            errors.push("max_calls must be at least 1".into());
        }
        let burst = file.rate_burst.unwrap_or(DEFAULT_RATE_BURST);
        let rate_of = |per_minute: u32, what: &str, errors: &mut Vec<String>| {
            if per_minute == 0 {
                None
            } else {
                if burst == 0 {
                    errors.push(format!("rate_burst must be at least 1 when {what} is set"));
                }
                Some(RateLimit {
                    per_minute,
                    burst: burst.max(1),
                })
            }
        };
        let rate = rate_of(
            file.rate_per_source.unwrap_or(DEFAULT_RATE_PER_MINUTE),
            "rate_per_source",
            &mut errors,
        );

        let mut trunks = Vec::new();
        let mut names = HashSet::new();
        for (i, t) in file.trunks.iter().enumerate() {
            let label = if t.name.trim().is_empty() {
                errors.push(format!("trunk #{} has an empty name", i + 1));
                format!("#{}", i + 1)
            } else {
                t.name.clone()
            };
            if !names.insert(t.name.clone()) {
                errors.push(format!("trunk name '{label}' is used twice"));
            }
            if t.allow.is_empty() {
                errors.push(format!(
                    "trunk '{label}': allow is empty (list its networks, e.g. [\"192.0.2.0/24\"])"
                ));
            }
            let mut allow = Vec::new();
            for net in &t.allow {
                match net.parse::<Cidr>() {
                    Ok(c) => allow.push(c),
                    Err(e) => errors.push(format!("trunk '{label}': {e}")),
                }
            }
            let rate = t
                .rate_per_source
                .map(|r| rate_of(r, &format!("trunk '{label}' rate_per_source"), &mut errors));
            trunks.push(Trunk {
                name: label,
                allow,
                rate,
            });
        }

        let realm = file
            .realm
            .clone()
            .unwrap_or_else(|| DEFAULT_REALM.to_owned());
        if realm.is_empty()
            || realm
                .chars()
                .any(|c| c == '"' || c == '\\' || c.is_control())
        {
            errors.push(format!(
                "realm '{realm}' must be non-empty, without quotes, backslashes or control characters"
            ));
        }
        let mut algorithms = Vec::new();
        match &file.digest_algorithms {
            None => algorithms.extend([Algorithm::Sha256, Algorithm::Md5]),
            Some(list) if list.is_empty() => {
                errors.push("digest_algorithms is empty; use [\"SHA-256\", \"MD5\"]".into())
            }
            Some(list) => {
                for a in list {
                    match a.parse::<Algorithm>() {
                        Ok(a) if algorithms.contains(&a) => {
                            errors.push(format!("digest_algorithms lists {a} twice"))
                        }
                        Ok(a) => algorithms.push(a),
                        Err(e) => errors.push(format!("digest_algorithms: {e}")),
                    }
                }
            }
        }
        let nonce_lifetime = file
            .nonce_lifetime_secs
            .map_or(DEFAULT_NONCE_LIFETIME, Duration::from_secs);
        if nonce_lifetime < Duration::from_secs(10) {
            errors.push("nonce_lifetime_secs must be at least 10".into());
        }

        let mut users = HashMap::new();
        for (i, u) in file.users.iter().enumerate() {
            let label = if u.name.is_empty() {
                format!("#{}", i + 1)
            } else {
                u.name.clone()
            };
            if u.name.is_empty()
                || u.name
                    .chars()
                    .any(|c| c == ':' || c == '"' || c == '\\' || c.is_control())
            {
                errors.push(format!(
                    "user {label}: the name must be non-empty, without ':', quotes, backslashes or control characters"
                ));
            }
            match password(u) {
                Ok(pw) => {
                    let keys = UserKeys(
                        algorithms
                            .iter()
                            .map(|&a| (a, digest::ha1(a, &u.name, &realm, &pw)))
                            .collect(),
                    );
                    if users.insert(u.name.clone(), keys).is_some() {
                        errors.push(format!("user name '{label}' is used twice"));
                    }
                }
                Err(e) => errors.push(format!("user {label}: {e}")),
            }
        }
        if trunks.is_empty() && users.is_empty() && errors.is_empty() {
            errors.push(
                "neither a trunk nor a user is configured, so nobody could call; add \
                 [[admission.trunks]] (allow = [\"0.0.0.0/0\", \"::/0\"] admits everyone) or \
                 [[admission.users]]"
                    .into(),
            );
        }
        if !errors.is_empty() {
            return Err(config::Error::Invalid {
                setting: "[admission]",
                message: errors.join("; "),
            });
        }
        let digest = (!users.is_empty()).then_some(DigestPolicy {
            realm,
            algorithms,
            nonce_lifetime,
            users,
        });
        Ok(Policy {
            max_calls,
            rate,
            trunks,
            digest,
            open: false,
        })
    }

    /// Warnings for the start-up log: an open SIP port, or a trunk that admits everyone.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.open {
            w.push(
                "no [admission] section: ANYONE who reaches the SIP port can call, and every call \
                 opens a paid model session; add an [admission] section that allows only your PBX \
                 or trunk (see deploy/frontdesk.example.toml and the README, \"Who may call\")"
                    .to_owned(),
            );
        }
        for t in &self.trunks {
            if let Some(c) = t.allow.iter().find(|c| c.is_everything()) {
                w.push(format!(
                    "trunk '{}' allows every address ({c}): anyone who reaches the SIP port can \
                     call, and every call opens a paid model session",
                    t.name
                ));
            }
        }
        w
    }
}

// ---------------------------------------------------------------------------------------------
// Call slots

/// The count of calls in progress, shared by the admission core and the [`CallSlot`]s.
#[derive(Debug, Clone, Default)]
pub struct CallSlots(Arc<AtomicUsize>);

impl CallSlots {
    /// Calls in progress now.
    pub fn in_progress(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// Takes a slot unless `max` are taken.
    pub fn try_acquire(&self, max: usize) -> Option<CallSlot> {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| CallSlot(self.0.clone()))
    }
}

/// One call in progress. Dropping it frees the slot; the call keeps it until it has ended.
#[derive(Debug)]
pub struct CallSlot(Arc<AtomicUsize>);

impl Drop for CallSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// The core

/// The facts of an out-of-dialog INVITE that admission looks at.
#[derive(Debug, Clone, Copy)]
pub struct Invite<'a> {
    /// The address the INVITE came from (the packet's source, never a client-written header).
    pub source: Option<IpAddr>,
    /// The values of its `Authorization` headers.
    pub authorization: &'a [String],
}

/// Who an admitted call is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    /// No `[admission]` section: everyone is.
    Anyone,
    /// A source in this trunk's allow-list.
    Trunk(String),
    /// This digest user.
    User(String),
}

impl fmt::Display for Admitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Admitted::Anyone => f.write_str("open admission"),
            Admitted::Trunk(t) => write!(f, "trunk {t}"),
            Admitted::User(u) => write!(f, "user {u}"),
        }
    }
}

/// Why an INVITE gets 403 Forbidden.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    /// The source is in no allow-list and no digest users are configured.
    SourceNotAllowed,
    /// The credentials are not valid. Unknown users and wrong passwords are deliberately the same.
    BadCredentials,
}

impl Forbidden {
    /// Short reason for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Forbidden::SourceNotAllowed => "source not allowed",
            Forbidden::BadCredentials => "bad credentials",
        }
    }
}

/// Why an INVITE gets 503 Service Unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// `max_calls` calls are in progress.
    MaxCalls,
    /// The source's rate limit is exhausted.
    RateLimited {
        /// The source's previous INVITE was rate limited too.
        repeated: bool,
    },
}

/// What to do with an INVITE.
#[derive(Debug)]
pub enum Decision {
    /// Go ahead; the call holds `slot` until it ends.
    Admit {
        /// The call's slot.
        slot: CallSlot,
        /// Why it was admitted.
        by: Admitted,
    },
    /// 403 Forbidden.
    Forbidden(Forbidden),
    /// 401 Unauthorized with these `WWW-Authenticate` values, one per algorithm, preferred first.
    Challenge {
        /// Header values.
        www_authenticate: Vec<String>,
        /// `stale=true`: the credentials were right but the nonce expired or was used before.
        stale: bool,
    },
    /// 503 Service Unavailable with `Retry-After: retry_after_secs`.
    Unavailable {
        /// Seconds for Retry-After (at least 1).
        retry_after_secs: u64,
        /// Which limit.
        why: Busy,
    },
}

/// Issues and checks stateless nonces: hex(issue ms since `epoch` ‖ counter) ‖ hex(HMAC[..16]).
struct Nonces {
    key: [u8; 32],
    epoch: Instant,
    counter: u32,
}

/// A nonce's state when it comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonceAge {
    Fresh,
    Expired,
    NotOurs,
}

const NONCE_PAYLOAD: usize = 12;
const NONCE_MAC: usize = 16;

impl Nonces {
    fn issue(&mut self, now: Instant) -> String {
        let ms = u64::try_from(now.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX);
        self.counter = self.counter.wrapping_add(1);
        let mut payload = [0u8; NONCE_PAYLOAD];
        payload[..8].copy_from_slice(&ms.to_be_bytes());
        payload[8..].copy_from_slice(&self.counter.to_be_bytes());
        let mac = hmac_sha256(&self.key, &payload);
        format!("{}{}", hex(&payload), hex(&mac[..NONCE_MAC]))
    }

    fn check(&self, now: Instant, nonce: &str, lifetime: Duration) -> NonceAge {
        let Some(bytes) = unhex(nonce) else {
            return NonceAge::NotOurs;
        };
        if bytes.len() != NONCE_PAYLOAD + NONCE_MAC {
            return NonceAge::NotOurs;
        }
        let (payload, mac) = bytes.split_at(NONCE_PAYLOAD);
        if !constant_time_eq(&hmac_sha256(&self.key, payload)[..NONCE_MAC], mac) {
            return NonceAge::NotOurs;
        }
        let mut ms = [0u8; 8];
        ms.copy_from_slice(&payload[..8]);
        let issued = Duration::from_millis(u64::from_be_bytes(ms));
        let age = now
            .saturating_duration_since(self.epoch)
            .checked_sub(issued);
        match age {
            Some(age) if age <= lifetime => NonceAge::Fresh,
            Some(_) => NonceAge::Expired,
            // Issued "in the future": only if time went backwards; treat as fresh.
            None => NonceAge::Fresh,
        }
    }
}

/// Digest responses already used, each until its nonce can no longer be fresh.
#[derive(Default)]
struct ReplayCache {
    order: VecDeque<(Instant, String)>,
    seen: HashSet<String>,
}

impl ReplayCache {
    fn prune(&mut self, now: Instant) {
        while let Some((until, _)) = self.order.front() {
            if *until > now && self.order.len() < REPLAY_CACHE_CAPACITY {
                break;
            }
            if let Some((_, r)) = self.order.pop_front() {
                self.seen.remove(&r);
            }
        }
    }

    /// Records `response`; `false` if it was already used.
    fn insert(&mut self, now: Instant, response: String, keep: Duration) -> bool {
        self.prune(now);
        if self.seen.contains(&response) {
            return false;
        }
        self.seen.insert(response.clone());
        self.order.push_back((now + keep, response));
        true
    }
}

/// The outcome of checking credentials.
enum DigestCheck {
    Valid(String),
    Challenge { stale: bool },
    Bad,
}

/// The admission core: one per SIP endpoint. See the module docs for the decision order.
pub struct Admission {
    policy: Policy,
    buckets: HashMap<Option<IpAddr>, TokenBucket>,
    nonces: Nonces,
    replay: ReplayCache,
    slots: CallSlots,
    /// HA1 per algorithm of a user nobody has, to check unknown users with the same work.
    dummy: UserKeys,
}

impl Admission {
    /// A core for `policy`. `secret` keys the nonces (random per process: nonces of an earlier run
    /// are not ours and get a fresh challenge).
    pub fn new(policy: Policy, now: Instant, secret: [u8; 32]) -> Admission {
        let dummy_pw = hex(&hmac_sha256(&secret, b"frontdesk admission dummy user"));
        let dummy = UserKeys(
            [Algorithm::Md5, Algorithm::Sha256]
                .into_iter()
                .map(|a| (a, digest::ha1(a, "", "", &dummy_pw)))
                .collect(),
        );
        Admission {
            policy,
            buckets: HashMap::new(),
            nonces: Nonces {
                key: secret,
                epoch: now,
                counter: 0,
            },
            replay: ReplayCache::default(),
            slots: CallSlots::default(),
            dummy,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Calls in progress (live [`CallSlot`]s).
    pub fn calls_in_progress(&self) -> usize {
        self.slots.in_progress()
    }

    /// Decides about one out-of-dialog INVITE.
    pub fn handle_invite(&mut self, now: Instant, invite: &Invite<'_>) -> Decision {
        let trunk = invite.source.and_then(|ip| {
            self.policy
                .trunks
                .iter()
                .position(|t| t.allow.iter().any(|c| c.contains(ip)))
        });
        let limit = match trunk {
            Some(i) => self.policy.trunks[i].rate.unwrap_or(self.policy.rate),
            None => self.policy.rate,
        };
        if let Some(limit) = limit {
            if let Err(l) = self.take_token(now, source_key(invite.source), limit) {
                let secs = l.retry_after.as_secs() + u64::from(l.retry_after.subsec_nanos() > 0);
                return Decision::Unavailable {
                    retry_after_secs: secs.max(1),
                    why: Busy::RateLimited {
                        repeated: l.repeated,
                    },
                };
            }
        }
        let by = if self.policy.open {
            Admitted::Anyone
        } else if let Some(i) = trunk {
            Admitted::Trunk(self.policy.trunks[i].name.clone())
        } else if self.policy.digest.is_none() {
            return Decision::Forbidden(Forbidden::SourceNotAllowed);
        } else {
            match self.check_digest(now, invite.authorization) {
                DigestCheck::Valid(user) => Admitted::User(user),
                DigestCheck::Bad => return Decision::Forbidden(Forbidden::BadCredentials),
                DigestCheck::Challenge { stale } => {
                    return Decision::Challenge {
                        www_authenticate: self.challenge(now, stale),
                        stale,
                    }
                }
            }
        };
        match self.slots.try_acquire(self.policy.max_calls) {
            Some(slot) => Decision::Admit { slot, by },
            None => Decision::Unavailable {
                retry_after_secs: MAX_CALLS_RETRY_AFTER_SECS,
                why: Busy::MaxCalls,
            },
        }
    }

    fn take_token(
        &mut self,
        now: Instant,
        key: Option<IpAddr>,
        limit: RateLimit,
    ) -> Result<(), Limited> {
        if !self.buckets.contains_key(&key) && self.buckets.len() >= MAX_TRACKED_SOURCES {
            self.buckets.retain(|_, b| !b.is_full(now));
            if self.buckets.len() >= MAX_TRACKED_SOURCES {
                self.buckets.clear();
            }
        }
        self.buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::new(limit, now))
            .try_take(now)
    }

    /// `WWW-Authenticate` values for a fresh nonce, one per algorithm (RFC 8760 §2.4).
    fn challenge(&mut self, now: Instant, stale: bool) -> Vec<String> {
        let Some(d) = &self.policy.digest else {
            return Vec::new();
        };
        let nonce = self.nonces.issue(now);
        let stale = if stale { ", stale=true" } else { "" };
        d.algorithms
            .iter()
            .map(|a| {
                format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={a}, qop=\"auth\"{stale}",
                    d.realm
                )
            })
            .collect()
    }

    fn check_digest(&mut self, now: Instant, authorization: &[String]) -> DigestCheck {
        let Some(d) = &self.policy.digest else {
            return DigestCheck::Bad;
        };
        // The credentials for our realm (a proxy's realm may be there too).
        let Some(c) = authorization
            .iter()
            .filter_map(|v| digest::parse_authorization(v))
            .find(|c| c.realm == d.realm)
        else {
            return DigestCheck::Challenge { stale: false };
        };
        let age = self.nonces.check(now, &c.nonce, d.nonce_lifetime);
        if age == NonceAge::NotOurs {
            return DigestCheck::Challenge { stale: false };
        }
        // Checks that do not depend on the user: failing them says nothing about who exists.
        let alg = match c.algorithm.as_deref() {
            None => Some(Algorithm::Md5),
            Some(a) => Algorithm::from_token(a),
        };
        let Some(alg) = alg.filter(|a| d.algorithms.contains(a)) else {
            return DigestCheck::Bad;
        };
        let (Some(qop), Some(nc), Some(cnonce)) = (&c.qop, &c.nc, &c.cnonce) else {
            return DigestCheck::Bad;
        };
        if !qop.eq_ignore_ascii_case("auth")
            || nc.len() != 8
            || !nc.bytes().all(|b| b.is_ascii_hexdigit())
            || cnonce.is_empty()
        {
            return DigestCheck::Bad;
        }
        // The same work for an unknown user as for a known one.
        let user = d.users.get(&c.username).and_then(|k| k.ha1(alg));
        let known = user.is_some();
        let ha1 = user.or_else(|| self.dummy.ha1(alg)).unwrap_or_default();
        let qop = digest::QopAuth { qop, nc, cnonce };
        let expected = digest::response(alg, ha1, &c.nonce, Some(qop), METHOD, &c.uri);
        let matches = constant_time_eq(
            expected.as_bytes(),
            c.response.to_ascii_lowercase().as_bytes(),
        );
        if !(matches & known) {
            return DigestCheck::Bad;
        }
        if age == NonceAge::Expired {
            return DigestCheck::Challenge { stale: true };
        }
        let lifetime = d.nonce_lifetime;
        if !self
            .replay
            .insert(now, c.response.to_ascii_lowercase(), lifetime)
        {
            return DigestCheck::Challenge { stale: true };
        }
        DigestCheck::Valid(c.username)
    }
}

// ---------------------------------------------------------------------------------------------
// Shell: start-up I/O (the only code in this file that touches the environment or files)

/// Reads a user's password from `password_env` or `password_file` (exactly one must be set). A
/// trailing line break of the file is not part of the password. The reason never contains it.
fn read_password(u: &AdmissionUserFile) -> Result<String, String> {
    let pw = match (&u.password_env, &u.password_file) {
        (Some(var), None) => std::env::var(var)
            .map_err(|_| format!("environment variable {var} (password_env) is not set"))?,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                format!("cannot read password_file {}: {}", path.display(), e.kind())
            })?;
            warn_if_readable_by_others(path);
            let text = text.strip_suffix('\n').unwrap_or(&text);
            text.strip_suffix('\r').unwrap_or(text).to_owned()
        }
        (Some(_), Some(_)) => return Err("set password_env or password_file, not both".into()),
        (None, None) => return Err(
            "set password_env or password_file (passwords are never written in the config file)"
                .into(),
        ),
    };
    if pw.is_empty() {
        return Err("the password is empty".into());
    }
    Ok(pw)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o004 != 0 {
            tracing::warn!(file = %path.display(), "password file is readable by every user; chmod o-r it");
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &std::path::Path) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AdmissionTrunkFile;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_matching_ipv4_ipv6_and_mapped() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.1.2.3")));
        assert!(net.contains(ip("10.255.255.255")));
        assert!(!net.contains(ip("11.0.0.0")));
        assert!(!net.contains(ip("9.255.255.255")));
        assert!(net.contains(ip("::ffff:10.9.8.7")), "IPv4-mapped IPv6");
        assert!(!net.contains(ip("2001:db8::1")));

        let host: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(host.to_string(), "127.0.0.1/32");
        assert!(host.contains(ip("127.0.0.1")));
        assert!(!host.contains(ip("127.0.0.2")));

        let v6: Cidr = "2001:db8:abcd::/48".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:abcd:1::5")));
        assert!(!v6.contains(ip("2001:db8:abce::1")));
        assert!(!v6.contains(ip("10.0.0.1")));

        let all4: Cidr = "0.0.0.0/0".parse().unwrap();
        let all6: Cidr = "::/0".parse().unwrap();
        assert!(all4.is_everything() && all6.is_everything());
        assert!(all4.contains(ip("203.0.113.9")) && !all4.contains(ip("::1")));
        assert!(all6.contains(ip("::1")) && !all6.contains(ip("203.0.113.9")));

        let odd: Cidr = "192.168.1.128/25".parse().unwrap();
        assert!(odd.contains(ip("192.168.1.200")) && !odd.contains(ip("192.168.1.127")));
    }

    #[test]
    fn cidr_errors() {
        assert_eq!(
            "10.1.2.3/8".parse::<Cidr>(),
            Err(CidrError::HostBits {
                text: "10.1.2.3/8".into(),
                network: ip("10.0.0.0"),
                prefix_len: 8
            })
        );
        assert!(matches!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::PrefixTooLong(_))
        ));
        assert!(matches!(
            "::/129".parse::<Cidr>(),
            Err(CidrError::PrefixTooLong(_))
        ));
        for bad in [
            "",
            "10.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "pbx.example/32",
            "10.0.0.0/8/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn token_bucket_on_virtual_time() {
        let t0 = Instant::now();
        let limit = RateLimit {
            per_minute: 60,
            burst: 3,
        };
        let mut b = TokenBucket::new(limit, t0);
        for _ in 0..3 {
            assert!(b.try_take(t0).is_ok());
        }
        let e = b.try_take(t0).unwrap_err();
        assert_eq!(e.retry_after, Duration::from_secs(1));
        assert!(!e.repeated);
        let e = b.try_take(t0 + ms(400)).unwrap_err();
        assert!(e.repeated);
        assert!(e.retry_after > ms(590) && e.retry_after <= ms(600));
        // One token per second.
        assert!(b.try_take(t0 + ms(1000)).is_ok());
        assert!(b.try_take(t0 + ms(1500)).is_err());
        assert!(b.try_take(t0 + ms(2000)).is_ok());
        // Time going backwards changes nothing.
        assert!(b.try_take(t0).is_err());
        // Refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(3600);
        assert!(b.is_full(later));
        for _ in 0..3 {
            assert!(b.try_take(later).is_ok());
        }
        assert!(b.try_take(later).is_err());
    }

    #[test]
    fn hmac_sha256_rfc4231_case_2() {
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    fn trunk(name: &str, allow: &[&str]) -> AdmissionTrunkFile {
        AdmissionTrunkFile {
            name: name.into(),
            allow: allow.iter().map(|s| s.to_string()).collect(),
            rate_per_source: None,
            srtp: None,
        }
    }

    fn user(name: &str) -> AdmissionUserFile {
        AdmissionUserFile {
            name: name.into(),
            password_env: Some(format!("PW_{name}")),
            password_file: None,
        }
    }

    fn passwords(u: &AdmissionUserFile) -> Result<String, String> {
        match u.name.as_str() {
            "alice" => Ok("wonderland".into()),
            "bob" => Ok("builder".into()),
            _ => Err("not set".into()),
        }
    }

    fn core(file: AdmissionFile) -> (Admission, Instant) {
        let t0 = Instant::now();
        let policy = Policy::compile(&file, passwords).expect("valid policy");
        (Admission::new(policy, t0, [7u8; 32]), t0)
    }

    fn digest_file() -> AdmissionFile {
        AdmissionFile {
            trunks: vec![trunk("pbx", &["10.0.0.0/8"])],
            users: vec![user("alice"), user("bob")],
            realm: Some("clinic".into()),
            ..AdmissionFile::default()
        }
    }

    /// The Authorization our own outbound client (`digest::authorization`, used for REGISTER)
    /// computes for the challenge in `www`.
    fn answer(www: &str, username: &str, password: &str, cnonce: &str) -> String {
        let challenge = digest::parse_challenge(www).expect("our challenge parses");
        let uri = "sip:frontdesk@192.0.2.1:5060";
        digest::authorization(&challenge, username, password, "INVITE", uri, cnonce)
    }

    fn invite<'a>(src: &str, auth: &'a [String]) -> Invite<'a> {
        Invite {
            source: Some(ip(src)),
            authorization: auth,
        }
    }

    fn challenge_of(d: Decision) -> Vec<String> {
        match d {
            Decision::Challenge {
                www_authenticate, ..
            } => www_authenticate,
            other => panic!("expected a challenge, got {other:?}"),
        }
    }

    #[test]
    fn trunk_sources_are_admitted_and_others_forbidden_without_users() {
        let (mut a, t0) = core(AdmissionFile {
            trunks: vec![trunk("pbx", &["10.0.0.0/8", "2001:db8::/32"])],
            ..AdmissionFile::default()
        });
        match a.handle_invite(t0, &invite("10.2.3.4", &[])) {
            Decision::Admit { by, .. } => assert_eq!(by, Admitted::Trunk("pbx".into())),
            d => panic!("{d:?}"),
        }
        assert!(matches!(
            a.handle_invite(t0, &invite("2001:db8::7", &[])),
            Decision::Admit { .. }
        ));
        assert!(matches!(
            a.handle_invite(t0, &invite("127.0.0.1", &[])),
            Decision::Forbidden(Forbidden::SourceNotAllowed)
        ));
        let no_source = Invite {
            source: None,
            authorization: &[],
        };
        assert!(matches!(
            a.handle_invite(t0, &no_source),
            Decision::Forbidden(Forbidden::SourceNotAllowed)
        ));
        // The slots of the two admitted calls were dropped at once.
        assert_eq!(a.calls_in_progress(), 0);
    }

    #[test]
    fn digest_challenge_then_valid_credentials_admit() {
        let (mut a, t0) = core(digest_file());
        let www = challenge_of(a.handle_invite(t0, &invite("127.0.0.1", &[])));
        assert_eq!(www.len(), 2);
        assert!(www[0].contains("algorithm=SHA-256") && www[1].contains("algorithm=MD5"));
        assert!(www[0].starts_with("Digest realm=\"clinic\", nonce=\""));
        assert!(www[0].contains("qop=\"auth\"") && !www[0].contains("stale"));
        for (i, w) in www.iter().enumerate() {
            let auth = vec![answer(w, "alice", "wonderland", &format!("c{i}"))];
            match a.handle_invite(t0 + ms(50), &invite("127.0.0.1", &auth)) {
                Decision::Admit { by, .. } => assert_eq!(by, Admitted::User("alice".into())),
                d => panic!("{w}: {d:?}"),
            }
        }
    }

    #[test]
    fn unknown_user_and_wrong_password_get_the_same_answer() {
        let (mut a, t0) = core(digest_file());
        let www = challenge_of(a.handle_invite(t0, &invite("127.0.0.1", &[])));
        let wrong = vec![answer(&www[1], "alice", "guess", "c1")];
        let unknown = vec![answer(&www[1], "mallory", "wonderland", "c2")];
        let d1 = a.handle_invite(t0, &invite("127.0.0.1", &wrong));
        let d2 = a.handle_invite(t0, &invite("127.0.0.1", &unknown));
        assert!(
            matches!(d1, Decision::Forbidden(Forbidden::BadCredentials)),
            "{d1:?}"
        );
        assert!(
            matches!(d2, Decision::Forbidden(Forbidden::BadCredentials)),
            "{d2:?}"
        );
        // Even with an expired nonce: no stale hint without the right password.
        let late = t0 + DEFAULT_NONCE_LIFETIME + ms(1);
        for auth in [&wrong, &unknown] {
            assert!(matches!(
                a.handle_invite(late, &invite("127.0.0.1", auth)),
                Decision::Forbidden(Forbidden::BadCredentials)
            ));
        }
    }

    #[test]
    fn expired_nonce_is_stale_and_foreign_nonce_rechallenged() {
        let (mut a, t0) = core(digest_file());
        let www = challenge_of(a.handle_invite(t0, &invite("127.0.0.1", &[])));
        let good = vec![answer(&www[0], "bob", "builder", "x")];
        let late = t0 + DEFAULT_NONCE_LIFETIME + ms(1);
        match a.handle_invite(late, &invite("127.0.0.1", &good)) {
            Decision::Challenge {
                www_authenticate,
                stale,
            } => {
                assert!(stale);
                assert!(www_authenticate[0].ends_with(", stale=true"));
                assert_ne!(www_authenticate, www, "a new nonce");
            }
            d => panic!("{d:?}"),
        }
        // Just inside the lifetime it is still good.
        let (mut a, t0) = core(digest_file());
        let www = challenge_of(a.handle_invite(t0, &invite("127.0.0.1", &[])));
        let good = vec![answer(&www[0], "bob", "builder", "x")];
        assert!(matches!(
            a.handle_invite(t0 + DEFAULT_NONCE_LIFETIME, &invite("127.0.0.1", &good)),
            Decision::Admit { .. }
        ));
        // A nonce from another process (other key), or a forged one: a fresh challenge.
        let (mut other, t1) = core(digest_file());
        other.nonces.key = [9u8; 32];
        let foreign = challenge_of(other.handle_invite(t1, &invite("127.0.0.1", &[])));
        let auth = vec![answer(&foreign[0], "bob", "builder", "y")];
        assert!(matches!(
            a.handle_invite(t0, &invite("127.0.0.1", &auth)),
            Decision::Challenge { stale: false, .. }
        ));
    }

    #[test]
    fn replayed_response_is_refused() {
        let (mut a, t0) = core(digest_file());
        let www = challenge_of(a.handle_invite(t0, &invite("127.0.0.1", &[])));
        let good = vec![answer(&www[0], "alice", "wonderland", "same")];
        assert!(matches!(
            a.handle_invite(t0, &invite("127.0.0.1", &good)),
            Decision::Admit { .. }
        ));
        assert!(matches!(
            a.handle_invite(t0 + ms(10), &invite("192.0.2.9", &good)),
            Decision::Challenge { stale: true, .. }
        ));
    }

    #[test]
    fn algorithm_and_qop_must_be_what_we_offered() {
        let (mut a, t0) = core(AdmissionFile {
            digest_algorithms: Some(vec!["MD5".into()]),
            ..digest_file()
        });
        let www = challenge_of(a.handle_invite(t0, &invite("127.0.0.1", &[])));
        assert_eq!(www.len(), 1);
        let sha = www[0].replace("algorithm=MD5", "algorithm=SHA-256");
        let auth = vec![answer(&sha, "alice", "wonderland", "c")];
        assert!(matches!(
            a.handle_invite(t0, &invite("127.0.0.1", &auth)),
            Decision::Forbidden(Forbidden::BadCredentials)
        ));
        let no_qop = vec![answer(&www[0], "alice", "wonderland", "c").replace(", qop=auth", "")];
        assert!(matches!(
            a.handle_invite(t0, &invite("127.0.0.1", &no_qop)),
            Decision::Forbidden(Forbidden::BadCredentials)
        ));
    }

    #[test]
    fn max_calls_and_slot_release() {
        let (mut a, t0) = core(AdmissionFile {
            max_calls: Some(2),
            rate_per_source: Some(0),
            trunks: vec![trunk("lan", &["127.0.0.0/8"])],
            ..AdmissionFile::default()
        });
        let admit = |a: &mut Admission| match a.handle_invite(t0, &invite("127.0.0.1", &[])) {
            Decision::Admit { slot, .. } => Some(slot),
            Decision::Unavailable {
                retry_after_secs,
                why: Busy::MaxCalls,
            } => {
                assert_eq!(retry_after_secs, MAX_CALLS_RETRY_AFTER_SECS);
                None
            }
            d => panic!("{d:?}"),
        };
        let s1 = admit(&mut a).unwrap();
        let s2 = admit(&mut a).unwrap();
        assert!(admit(&mut a).is_none());
        assert_eq!(a.calls_in_progress(), 2);
        drop(s1);
        assert_eq!(a.calls_in_progress(), 1);
        let s3 = admit(&mut a).unwrap();
        assert!(admit(&mut a).is_none());
        drop((s2, s3));
        assert_eq!(a.calls_in_progress(), 0);
    }

    #[test]
    fn rate_limit_per_source_comes_first() {
        let (mut a, t0) = core(AdmissionFile {
            rate_per_source: Some(60),
            rate_burst: Some(2),
            trunks: vec![
                trunk("lan", &["127.0.0.0/8"]),
                AdmissionTrunkFile {
                    rate_per_source: Some(0),
                    ..trunk("carrier", &["198.51.100.0/24"])
                },
            ],
            ..AdmissionFile::default()
        });
        for _ in 0..2 {
            assert!(matches!(
                a.handle_invite(t0, &invite("127.0.0.1", &[])),
                Decision::Admit { .. }
            ));
        }
        match a.handle_invite(t0, &invite("127.0.0.1", &[])) {
            Decision::Unavailable {
                retry_after_secs,
                why: Busy::RateLimited { repeated: false },
            } => assert_eq!(retry_after_secs, 1),
            d => panic!("{d:?}"),
        }
        assert!(matches!(
            a.handle_invite(t0, &invite("127.0.0.1", &[])),
            Decision::Unavailable {
                why: Busy::RateLimited { repeated: true },
                ..
            }
        ));
        // Another source has its own bucket; a scanner outside every trunk is limited before 403.
        assert!(matches!(
            a.handle_invite(t0, &invite("127.0.0.2", &[])),
            Decision::Admit { .. }
        ));
        for _ in 0..2 {
            assert!(matches!(
                a.handle_invite(t0, &invite("203.0.113.5", &[])),
                Decision::Forbidden(_)
            ));
        }
        assert!(matches!(
            a.handle_invite(t0, &invite("203.0.113.5", &[])),
            Decision::Unavailable { .. }
        ));
        // IPv6 sources share a bucket per /64.
        for _ in 0..2 {
            a.handle_invite(t0, &invite("2001:db8:1:2::1", &[]));
        }
        assert!(matches!(
            a.handle_invite(t0, &invite("2001:db8:1:2::ffff", &[])),
            Decision::Unavailable { .. }
        ));
        // A trunk with rate_per_source = 0 is not limited.
        for _ in 0..50 {
            assert!(matches!(
                a.handle_invite(t0, &invite("198.51.100.7", &[])),
                Decision::Admit { .. }
            ));
        }
        // After a second a token is back.
        assert!(matches!(
            a.handle_invite(t0 + ms(1000), &invite("127.0.0.1", &[])),
            Decision::Admit { .. }
        ));
    }

    #[test]
    fn source_table_stays_bounded() {
        let (mut a, t0) = core(AdmissionFile {
            trunks: vec![trunk("all", &["0.0.0.0/0"])],
            ..AdmissionFile::default()
        });
        for i in 0..(MAX_TRACKED_SOURCES as u32 + 10) {
            let src = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            a.handle_invite(
                t0,
                &Invite {
                    source: Some(src),
                    authorization: &[],
                },
            );
            assert!(a.buckets.len() <= MAX_TRACKED_SOURCES);
        }
    }

    #[test]
    fn open_policy_admits_everyone_up_to_max_calls() {
        let mut a = Admission::new(Policy::open(), Instant::now(), [1; 32]);
        let t0 = Instant::now();
        let mut slots = Vec::new();
        for i in 0..DEFAULT_MAX_CALLS {
            match a.handle_invite(t0, &invite(&format!("203.0.113.{}", i % 250), &[])) {
                Decision::Admit { slot, by } => {
                    assert_eq!(by, Admitted::Anyone);
                    slots.push(slot);
                }
                d => panic!("{d:?}"),
            }
        }
        assert!(matches!(
            a.handle_invite(t0, &invite("203.0.113.1", &[])),
            Decision::Unavailable {
                why: Busy::MaxCalls,
                ..
            }
        ));
        assert_eq!(Policy::open().warnings().len(), 1);
    }

    #[test]
    fn policy_validation_lists_every_problem() {
        let file = AdmissionFile {
            max_calls: Some(0),
            realm: Some("bad\"realm".into()),
            digest_algorithms: Some(vec!["SHA-512".into()]),
            trunks: vec![trunk("pbx", &["10.1.0.0/8", "nonsense"]), trunk("pbx", &[])],
            users: vec![user("carol"), user("a:b")],
            ..AdmissionFile::default()
        };
        let err = Policy::compile(&file, passwords).unwrap_err().to_string();
        for needle in [
            "max_calls",
            "realm",
            "SHA-512",
            "10.1.0.0/8",
            "nonsense",
            "used twice",
            "allow is empty",
            "user carol: not set",
            "user a:b",
        ] {
            assert!(err.contains(needle), "{needle} missing in: {err}");
        }
        let empty = Policy::compile(&AdmissionFile::default(), passwords)
            .unwrap_err()
            .to_string();
        assert!(empty.contains("nobody could call"), "{empty}");
    }

    #[test]
    fn passwords_never_appear_in_debug_output() {
        let policy = Policy::compile(&digest_file(), passwords).unwrap();
        let text = format!("{policy:?}");
        assert!(
            !text.contains("wonderland") && !text.contains("builder"),
            "{text}"
        );
        let ha1 = digest::ha1(Algorithm::Md5, "alice", "clinic", "wonderland");
        assert!(!text.contains(&ha1), "{text}");
        assert!(text.contains("<redacted>"));
    }

    /// STYLE §1: everything above the shell section is sans-IO.
    #[test]
    fn core_does_no_io_and_reads_no_clock() {
        let src = include_str!("admission.rs");
        let core = &src[..src.find("// Shell: start-up I/O").expect("shell marker")];
        for banned in [
            "tokio",
            "Instant::now",
            "SystemTime",
            "std::fs",
            "std::env",
            "std::net::Udp",
            "tracing::",
        ] {
            assert!(!core.contains(banned), "the admission core uses {banned}");
        }
    }

    #[test]
    fn shipped_example_config_compiles() {
        let path = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/frontdesk.example.toml"
        ));
        let file = config::ConfigFile::load(path).expect("example config parses");
        let policy = Policy::load(file.admission.as_ref()).expect("its [admission] is valid");
        assert!(!policy.open);
        assert_eq!(policy.max_calls, 100);
        assert_eq!(
            policy.rate,
            Some(RateLimit {
                per_minute: 30,
                burst: 10
            })
        );
        assert_eq!(policy.trunks[0].name, "pbx");
        assert!(policy.warnings().is_empty(), "{:?}", policy.warnings());
    }

    #[test]
    fn unknown_admission_keys_are_errors() {
        for text in [
            "[admission]\nmax_call = 3\n",
            "[[admission.trunks]]\nname = \"a\"\nallow = []\nalow = 1\n",
            "[[admission.users]]\nname = \"a\"\npassword = \"in-the-file\"\n",
        ] {
            assert!(
                toml::from_str::<config::ConfigFile>(text).is_err(),
                "{text}"
            );
        }
    }

    #[test]
    fn password_sources() {
        let dir = std::env::temp_dir().join(format!("frontdesk-admission-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        let from_file = AdmissionUserFile {
            name: "x".into(),
            password_env: None,
            password_file: Some(path.clone()),
        };
        assert_eq!(read_password(&from_file).as_deref(), Ok("s3cret"));
        std::fs::write(&path, "\n").unwrap();
        assert!(read_password(&from_file).unwrap_err().contains("empty"));
        let missing = AdmissionUserFile {
            name: "x".into(),
            password_env: Some("FRONTDESK_TEST_SURELY_UNSET_PW".into()),
            password_file: None,
        };
        assert!(read_password(&missing)
            .unwrap_err()
            .contains("FRONTDESK_TEST_SURELY_UNSET_PW"));
        let both = AdmissionUserFile {
            password_file: Some(path),
            ..missing.clone()
        };
        assert!(read_password(&both).is_err());
        let neither = AdmissionUserFile {
            password_env: None,
            ..missing
        };
        assert!(read_password(&neither).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
