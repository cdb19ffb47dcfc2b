//! SIP user-agent server (UAS) facade over `rsipstack` (RFC 3261).
//!
//! This module owns the SIP endpoint: one UDP socket and one TCP listener on the same address, the
//! transaction layer and the INVITE dialogs. It is the only place where `rsipstack` types appear;
//! the rest of frontdesk sees [`IncomingCall`], [`CallEvent`], [`CallEvents`] and [`CallHandle`].
//!
//! Request routing (RFC 3261 §8.2, §12.2.2, §9.2):
//!
//! ```text
//! INVITE without To tag ──► admission (403/401/503, see [`admission`]) ──► new dialog ──►
//!                            IncomingCall on the calls channel (503 if full or draining)
//! in-dialog request      ──► its dialog (BYE, ACK, INFO, OPTIONS, re-INVITE, UPDATE)
//! in-dialog, no dialog   ──► 481 Call/Transaction Does Not Exist
//! OPTIONS outside dialog ──► 200 OK with Allow/Accept
//! CANCEL                 ──► 200 for the CANCEL (transaction layer), 487 for the INVITE (dialog)
//! other methods          ──► 405 Method Not Allowed
//! ```
//!
//! Every message passes [`validate`] first (through `guard`, at the UDP socket and our own TCP
//! accept loop): malformed and unsupported requests are answered there (400/405/415/416/420/501/505)
//! and never reach rsipstack, stray responses are dropped.
//!
//! Known rsipstack defects (issue 2's measurements) and their guards: it logs every packet at INFO
//! (our log filter sets its target to `warn`); a non-UTF-8 header line drops later headers
//! (`validate` answers 400 instead); comma-joined Via values are not split (`validate` splits
//! them); `%XX` escapes are re-encoded on output (left alone: it only changes the spelling of
//! escapes in the headers we echo).

//! Files by concern: `endpoint` (sockets, transaction layer, request routing), `invite` (a new
//! INVITE: admission, session-timer negotiation, [`IncomingCall`]/[`PendingInvite`]), `dialog`
//! (one established call: [`CallEvents`], the owned call object with the dialog and its session
//! timer, and the cloneable [`CallHandle`] for commands from other tasks).

use std::net::SocketAddr;

use rsipstack::sip::{Header, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use tracing::debug;

pub mod admission;
mod dialog;
pub mod digest;
mod endpoint;
mod guard;
mod invite;
pub mod registration;
mod route;
pub mod session_timer;
pub mod validate;

pub use dialog::{CallEvent, CallEvents, CallHandle};
pub use endpoint::{AdmissionSwitch, SipEndpoint};
pub use invite::{IncomingCall, PendingInvite};

/// Capacity of the channel that hands new calls to the call supervisor. When it is full, further
/// INVITEs are answered 503 Service Unavailable with Retry-After (the supervisor is overloaded).
pub const INCOMING_CALLS_CAPACITY: usize = 64;

/// Methods we accept, announced in `Allow` (RFC 3261 §20.5).
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, NOTIFY";

/// Errors of the SIP layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding the SIP listen address failed.
    #[error("failed to listen for SIP on {addr}: {reason}")]
    Bind {
        /// The address we tried.
        addr: SocketAddr,
        /// What the transport reported.
        reason: String,
    },
    /// A command on a dialog failed (the transaction or dialog is gone).
    #[error("SIP dialog {call_id}: {reason}")]
    Dialog {
        /// Call-ID of the dialog.
        call_id: String,
        /// What rsipstack reported.
        reason: String,
    },
}

/// Settings of the SIP endpoint.
#[derive(Debug, Clone)]
pub struct SipConfig {
    /// Addresses for both UDP and TCP, e.g. `0.0.0.0:5060` and `[::]:5060` for dual stack (an
    /// IPv6 wildcard listens on IPv6 only). At least one.
    pub listen: Vec<SocketAddr>,
    /// Hosts (IPs) to put in our Contact when a listen address is a wildcard: the one of the
    /// listen address's family, else the first.
    pub advertised_ips: Vec<std::net::IpAddr>,
    /// Value of the `User-Agent`/`Server` header.
    pub user_agent: String,
    /// Who may call, how often, how many at once.
    pub admission: admission::Policy,
    /// Smallest session interval we accept (RFC 4028 `Min-SE`); smaller `Session-Expires` get 422.
    pub min_session_expires: u32,
}

/// Transport a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// RFC 3261 §18 over UDP.
    Udp,
    /// RFC 3261 §18 over TCP.
    Tcp,
    /// Anything else rsipstack supports (TLS, WebSocket); not listened on by frontdesk today.
    Other,
}

impl Transport {
    /// Lowercase name, as stored in `calls.transport`: `udp`, `tcp`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Other => "other",
        }
    }
}

/// `(name, value)` pairs as extension headers.
fn other_headers(pairs: Vec<(&'static str, String)>) -> Vec<Header> {
    pairs
        .into_iter()
        .map(|(n, v)| Header::Other(n.into(), v))
        .collect()
}

/// A `Reason` header value (RFC 3326): protocol, cause and the quoted `text`.
fn reason_header(code: u16, text: &str) -> String {
    format!("SIP;cause={code};text=\"{}\"", text.replace('"', "'"))
}

/// Sends a stateless-style final response on a server transaction, logging failures.
async fn reply(tx: &mut Transaction, code: u16, headers: Vec<Header>) {
    if let Err(e) = tx.reply_with(StatusCode::from(code), headers, None).await {
        debug!(error = %e, code, "failed to send SIP response");
    }
}
