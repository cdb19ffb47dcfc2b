//! A new INVITE (no To tag): admission, RFC 4028 session-timer negotiation, 100 Trying, and the
//! [`IncomingCall`] handed to the call supervisor; [`PendingInvite::start`] makes its dialog.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rsipstack::dialog::dialog::Dialog;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::prelude::HeadersExt as _;
use rsipstack::sip::Header;
use rsipstack::transaction::transaction::Transaction;
use tracing::{debug, info, warn};

use super::{
    admission, reason_header, reply, route, session_timer, CallEvents, CallHandle, Error,
    SipEndpoint, Transport,
};

/// A new call: the initial INVITE's facts, a handle to answer or end it and its event stream.
pub struct IncomingCall {
    /// The Call-ID header value.
    pub call_id: String,
    /// The From URI, e.g. `sip:+15551234567@pbx.example`.
    pub from_uri: String,
    /// User part of P-Asserted-Identity (RFC 3325) if present, else of From.
    pub caller_user: Option<String>,
    /// The To URI.
    pub to_uri: String,
    /// User part of the Request-URI (the called number), falling back to To's user part.
    pub called_user: Option<String>,
    /// The SDP offer, if the INVITE carried one (`Content-Type: application/sdp`).
    pub offer: Option<Vec<u8>>,
    /// Where the INVITE came from (transport source address).
    pub source: Option<SocketAddr>,
    /// Transport the INVITE used.
    pub transport: Transport,
    /// Our local address the INVITE came in on (the listener's, or the connection's local
    /// address over TCP/TLS), when the stack knows it.
    pub local: Option<SocketAddr>,
    /// The INVITE transaction, waiting for a decision: redirect, reject, or start the dialog.
    pub invite: PendingInvite,
}

/// An INVITE that has been answered 100 Trying and waits for the call task's decision.
///
/// Dropping it without a decision leaves the transaction to time out; always call one of
/// [`PendingInvite::start`], [`PendingInvite::reject`] or [`PendingInvite::redirect`].
pub struct PendingInvite {
    tx: Transaction,
    dialogs: Arc<DialogLayer>,
    contact: Option<rsipstack::sip::Uri>,
    call_id: String,
    /// The call's admission slot: dropped with the INVITE when it is rejected or redirected, else
    /// moved into [`CallEvents`].
    slot: admission::CallSlot,
    /// The session timer the INVITE negotiated (RFC 4028), if any.
    timer: Option<session_timer::SessionTimer>,
    /// Our minimum session interval, for re-INVITEs and UPDATEs.
    min_se: u32,
}

impl PendingInvite {
    /// Answers the INVITE with a final non-2xx `code`; `reason` becomes the text of a `Reason`
    /// header (RFC 3326). No dialog is created.
    pub async fn reject(mut self, code: u16, reason: &str) {
        let headers = vec![Header::Reason(reason_header(code, reason).into())];
        reply(&mut self.tx, code, headers).await;
    }

    /// Redirects the caller with 302 Moved Temporarily to `target` (a SIP URI), RFC 3261 §21.3.3.
    pub async fn redirect(mut self, target: &str) {
        let headers = vec![Header::Other("Contact".into(), format!("<{target}>"))];
        reply(&mut self.tx, 302, headers).await;
    }

    /// Creates the dialog (our To tag) and returns its command handle and event stream. The INVITE
    /// transaction is then driven in the background (2xx retransmission, ACK, CANCEL).
    ///
    /// # Errors
    /// [`Error::Dialog`] if the INVITE cannot form a dialog (e.g. no From tag); a 400 has been sent.
    pub async fn start(mut self) -> Result<(CallHandle, CallEvents), Error> {
        let (state_tx, state_rx) = self.dialogs.new_dialog_state_channel();
        let dialog = match self.dialogs.get_or_create_server_invite(
            &self.tx,
            state_tx,
            None,
            self.contact.clone(),
        ) {
            Ok(d) => d,
            Err(e) => {
                reply(&mut self.tx, 400, vec![]).await;
                return Err(Error::Dialog {
                    call_id: self.call_id,
                    reason: e.to_string(),
                });
            }
        };
        // Behind a proxy the remote target must be the Contact exactly as sent (see `route`).
        if let Some(target) = route::exact_remote_target(&self.tx.original) {
            let contact = self.tx.original.contact_header().ok().cloned();
            Dialog::Invite(dialog.clone()).set_remote_target(target, contact);
        }
        let peer_allows_update = self
            .tx
            .original
            .header_value("Allow")
            .is_none_or(|a| a.to_ascii_uppercase().contains("UPDATE"));
        let (handle, events) = CallEvents::new(
            state_rx,
            dialog.clone(),
            self.dialogs.clone(),
            self.call_id.clone(),
            self.slot,
            self.timer.take(),
            self.min_se,
            peer_allows_update,
        );
        let mut dialog_for_tx = dialog;
        let mut tx = self.tx;
        tokio::spawn(async move {
            // Drives the INVITE server transaction: 2xx retransmission until ACK, CANCEL.
            if let Err(e) = dialog_for_tx.handle(&mut tx).await {
                debug!(error = %e, "INVITE transaction ended with an error");
            }
        });
        Ok((handle, events))
    }
}

impl SipEndpoint {
    pub(super) async fn new_call(&self, mut tx: Transaction) {
        let req = &tx.original;
        let call_id = match req.call_id_header() {
            Ok(c) => c.value().to_string(),
            Err(_) => return reply(&mut tx, 400, vec![]).await,
        };
        if !self.accepting.load(Ordering::SeqCst) {
            info!(%call_id, "INVITE refused: shutting down");
            let headers = vec![Header::Other("Retry-After".into(), "30".into())];
            return reply(&mut tx, 503, headers).await;
        }
        let Some(slot) = self.admit(&mut tx, &call_id).await else {
            return;
        };
        // RFC 4028: a session interval below our minimum gets 422 with our Min-SE.
        let timer = {
            let pairs: Vec<(String, String)> = tx
                .original
                .headers
                .iter()
                .map(|h| (h.name().to_string(), h.value().to_string()))
                .collect();
            let treq = session_timer::TimerRequest::parse(
                pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            );
            match session_timer::negotiate(&treq, self.min_se) {
                session_timer::Negotiation::TooSmall { min_se } => {
                    info!(%call_id, min_se, "INVITE refused with 422: session interval too small");
                    let headers = vec![Header::Other("Min-SE".into(), min_se.to_string())];
                    return reply(&mut tx, 422, headers).await;
                }
                session_timer::Negotiation::NoTimer => None,
                session_timer::Negotiation::Timer {
                    interval,
                    refresher,
                    require,
                } => {
                    debug!(%call_id, interval, refresher = refresher.as_str(), "session timer negotiated");
                    Some(session_timer::SessionTimer::new(
                        tokio::time::Instant::now().into_std(),
                        interval,
                        refresher,
                        require,
                    ))
                }
            }
        };
        let req = &tx.original;
        let permit = match self.calls.clone().try_reserve_owned() {
            Ok(p) => p,
            Err(_) => {
                warn!(%call_id, "INVITE refused: call supervisor is overloaded");
                let headers = vec![Header::Other("Retry-After".into(), "5".into())];
                return reply(&mut tx, 503, headers).await;
            }
        };
        let from_uri = req.from_header().ok().and_then(|h| h.uri().ok());
        let to_uri = req.to_header().ok().and_then(|h| h.uri().ok());
        let pai_user = req
            .header_value("P-Asserted-Identity")
            .and_then(|v| user_of_name_addr(&v));
        let caller_user =
            pai_user.or_else(|| from_uri.as_ref().and_then(|u| u.user().map(str::to_owned)));
        let called_user = req
            .uri()
            .user()
            .map(str::to_owned)
            .or_else(|| to_uri.as_ref().and_then(|u| u.user().map(str::to_owned)));
        let is_sdp = req
            .header_value("Content-Type")
            .map(|ct| ct.to_ascii_lowercase().starts_with("application/sdp"))
            .unwrap_or(false);
        let offer = (is_sdp && !req.body().is_empty()).then(|| req.body().clone());
        let transport = match tx.connection.as_ref().map(|c| c.transport()) {
            Some(rsipstack::sip::Transport::Udp) => Transport::Udp,
            Some(rsipstack::sip::Transport::Tcp) => Transport::Tcp,
            Some(rsipstack::sip::Transport::Tls) => Transport::Tls,
            _ => Transport::Other,
        };
        // The peer's address as the top Via says (with received/rport, RFC 3581).
        let source = self
            .endpoint
            .inner
            .get_destination_from_request(&tx.original)
            .await
            .and_then(|a| a.get_socketaddr().ok());
        let local = tx
            .connection
            .as_ref()
            .and_then(|c| c.get_addr().get_socketaddr().ok());
        let contact_host = self.contact_host_for(local);
        // A `sips:` Request-URI gets a `sips:` Contact (RFC 3261 §8.1.1.8, §12.1.1).
        let sips = tx.original.uri.scheme == Some(rsipstack::sip::Scheme::Sips);
        let contact = match transport {
            Transport::Tcp => format!("sip:frontdesk@{contact_host};transport=tcp"),
            Transport::Tls if sips => format!("sips:frontdesk@{contact_host}"),
            Transport::Tls => format!("sip:frontdesk@{contact_host};transport=tls"),
            _ => format!("sip:frontdesk@{contact_host}"),
        };
        let contact = rsipstack::sip::Uri::try_from(contact.as_str()).ok();
        // 100 Trying at once (RFC 3261 §8.2.6.1); the call task decides what follows.
        if let Err(e) = tx.send_trying().await {
            debug!(%call_id, error = %e, "cannot send 100 Trying");
        }
        let call = IncomingCall {
            call_id: call_id.clone(),
            from_uri: from_uri.map(|u| u.to_string()).unwrap_or_default(),
            caller_user,
            to_uri: to_uri.map(|u| u.to_string()).unwrap_or_default(),
            called_user,
            offer,
            source,
            transport,
            local,
            invite: PendingInvite {
                tx,
                dialogs: self.dialogs.clone(),
                contact,
                call_id,
                slot,
                timer,
                min_se: self.min_se,
            },
        };
        permit.send(call);
    }

    /// Runs a new INVITE through admission. Answers 401, 403 or 503 itself (no dialog, no session)
    /// and returns `None` then; else the call's slot.
    async fn admit(&self, tx: &mut Transaction, call_id: &str) -> Option<admission::CallSlot> {
        let source = packet_source_ip(&tx.original);
        let authorization: Vec<String> = tx
            .original
            .headers
            .iter()
            .filter(|h| h.name().eq_ignore_ascii_case("Authorization"))
            .map(|h| h.value().to_string())
            .collect();
        let decision = {
            let mut gate = self
                .gate
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            gate.handle_invite(
                tokio::time::Instant::now().into_std(),
                &admission::Invite {
                    source,
                    authorization: &authorization,
                },
            )
        };
        let source = source.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        match decision {
            admission::Decision::Admit { slot, by } => {
                debug!(%call_id, %source, admitted = %by, "INVITE admitted");
                return Some(slot);
            }
            admission::Decision::Forbidden(why) => {
                info!(%call_id, %source, reason = why.as_str(), "INVITE refused with 403 Forbidden");
                crate::observe::admission_rejected(match why {
                    admission::Forbidden::SourceNotAllowed => "source_not_allowed",
                    admission::Forbidden::BadCredentials => "bad_credentials",
                });
                reply(tx, 403, vec![]).await;
            }
            admission::Decision::Challenge {
                www_authenticate,
                stale,
            } => {
                debug!(%call_id, %source, stale, "INVITE challenged with 401 (digest)");
                let headers = www_authenticate
                    .into_iter()
                    .map(|v| Header::WwwAuthenticate(v.into()))
                    .collect();
                reply(tx, 401, headers).await;
            }
            admission::Decision::Unavailable {
                retry_after_secs,
                why,
            } => {
                crate::observe::admission_rejected(match why {
                    admission::Busy::MaxCalls => "max_calls",
                    admission::Busy::RateLimited { .. } => "rate_limited",
                });
                match why {
                    admission::Busy::MaxCalls => {
                        warn!(%call_id, %source, max_calls = self.max_calls(), "INVITE refused with 503: max_calls calls are in progress")
                    }
                    admission::Busy::RateLimited { repeated: false } => {
                        info!(%call_id, %source, "INVITE refused with 503: source is rate limited")
                    }
                    admission::Busy::RateLimited { repeated: true } => {
                        debug!(%call_id, %source, "INVITE refused with 503: source is still rate limited")
                    }
                }
                let headers = vec![Header::RetryAfter(retry_after_secs.to_string().into())];
                reply(tx, 503, headers).await;
            }
        }
        None
    }

    fn max_calls(&self) -> usize {
        self.gate
            .lock()
            .map(|g| g.policy().max_calls)
            .unwrap_or_default()
    }
}

/// The IP address a request came from: the top Via's `received`, which the transport layer sets
/// whenever the packet's source differs from what the Via says (RFC 3261 §18.2.1), else the Via
/// host, which then is the packet's source. `None` when the Via names a host (no DNS here).
///
/// rsipstack 0.7.14 writes an IPv6 `received` in double brackets (`received=[[::1]]`) and then
/// cannot parse it back, which would make an IPv6 caller's Via host count as its source: the
/// `received` text is read here with any brackets stripped (RFC 5118 §4.5).
fn packet_source_ip(req: &rsipstack::sip::Request) -> Option<std::net::IpAddr> {
    let via = req.via_header().ok()?;
    let typed = rsipstack::sip::ToTypedHeader::typed(&via.first_value().ok()?).ok()?;
    for p in &typed.params {
        if let rsipstack::sip::Param::Received(r) = p {
            let text = r.to_string();
            return text
                .trim_matches(|c| c == '[' || c == ']')
                .parse::<std::net::IpAddr>()
                .ok();
        }
    }
    match typed.uri.host_with_port.host {
        rsipstack::sip::Host::IpAddr(ip) => Some(ip),
        rsipstack::sip::Host::Domain(_) => None,
    }
}

/// Extracts the user part from a name-addr such as `"Alice" <sip:+1555@host>;tag=1` (RFC 3261 §25.1).
fn user_of_name_addr(value: &str) -> Option<String> {
    let uri = match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split(';').next().unwrap_or(value).trim(),
    };
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .or_else(|| uri.strip_prefix("tel:"))?;
    let user = match rest.find('@') {
        Some(at) => &rest[..at],
        None if uri.starts_with("tel:") => rest.split(';').next().unwrap_or(rest),
        None => return None,
    };
    let user = user.split(';').next().unwrap_or(user);
    (!user.is_empty()).then(|| user.to_owned())
}

#[cfg(test)]
mod tests {
    use super::user_of_name_addr;

    #[test]
    fn user_part_of_name_addr() {
        assert_eq!(
            user_of_name_addr("\"Alice\" <sip:+15551234@pbx.example;user=phone>").as_deref(),
            Some("+15551234")
        );
        assert_eq!(
            user_of_name_addr("<tel:+4930123;ext=1>").as_deref(),
            Some("+4930123")
        );
        assert_eq!(user_of_name_addr("sip:bob@host").as_deref(), Some("bob"));
        assert_eq!(user_of_name_addr("<sip:host.example>"), None);
        assert_eq!(user_of_name_addr("garbage"), None);
    }
}
