//! SIP user-agent server (UAS) facade over `rsipstack` (RFC 3261).
//!
//! This module owns the SIP endpoint: one UDP socket and one TCP listener on the same address, the
//! transaction layer and the INVITE dialogs. It is the only place where `rsipstack` types appear;
//! the rest of frontdesk sees [`IncomingCall`], [`CallEvent`] and the commands on [`CallHandle`].
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

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rsipstack::dialog::dialog::{
    Dialog, DialogState, DialogStateReceiver, TerminatedReason, TransactionHandle,
};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt as _;
use rsipstack::sip::{Header, Method, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::{udp::UdpConnection, TransportLayer};
use rsipstack::EndpointBuilder;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub mod admission;
mod guard;

pub mod registration;
mod route;
pub mod session_timer;
pub mod validate;

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
        let headers = vec![Header::Reason(
            format!("SIP;cause={code};text=\"{}\"", reason.replace('"', "'")).into(),
        )];
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
        let local_sdp = Arc::new(parking_lot_lite::Slot::default());
        let timer = Arc::new(std::sync::Mutex::new(self.timer.take()));
        let peer_allows_update = self
            .tx
            .original
            .header_value("Allow")
            .is_none_or(|a| a.to_ascii_uppercase().contains("UPDATE"));
        let handle = CallHandle {
            dialog: dialog.clone(),
            call_id: self.call_id.clone(),
            local_sdp: local_sdp.clone(),
            timer: timer.clone(),
        };
        let (refresh_tx, refresh_rx) = mpsc::unbounded_channel();
        let events = CallEvents {
            rx: state_rx,
            dialog: dialog.clone(),
            dialogs: self.dialogs.clone(),
            local_sdp,
            done: false,
            _slot: self.slot,
            timer,
            min_se: self.min_se,
            outstanding: Arc::new(AtomicBool::new(false)),
            refresh_tx,
            refresh_rx,
            pending_offer: None,
            expect_ack_answer: false,
            peer_allows_update,
        };
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

/// Why a call ended, or what happened in its dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// The ACK for our 2xx arrived; `answer` is the SDP it carried (late offer, RFC 3264 §5).
    Ack {
        /// SDP answer in the ACK body, if any.
        answer: Option<Vec<u8>>,
    },
    /// The caller sent CANCEL before we answered; 200 and 487 have been sent.
    Cancelled,
    /// The caller sent BYE; 200 has been sent.
    Bye,
    /// The dialog ended for another reason (our BYE, our rejection, no ACK within 64·T1, ...).
    Terminated {
        /// Short machine-readable reason, e.g. `ack-timeout`, `local-bye`, `rejected`.
        reason: &'static str,
    },
    /// A re-INVITE or UPDATE with an SDP offer (hold, resume, new address, codec change). Answer
    /// it with [`CallEvents::answer_offer`] before the next [`CallEvents::recv`] (which otherwise
    /// answers with our current SDP).
    Offer {
        /// The SDP offer.
        sdp: Vec<u8>,
    },
    /// The ACK of a re-INVITE without SDP carried the caller's answer to our (current) SDP offer.
    Answer {
        /// The SDP answer.
        sdp: Vec<u8>,
    },
    /// A NOTIFY about our REFER (RFC 3515 sipfrag); already answered 200.
    ReferNotify {
        /// The status code of the sipfrag (e.g. 100, 200, 503).
        status: u16,
        /// Whether the subscription is terminated (this is the final NOTIFY).
        terminated: bool,
    },
    /// The session timer ran out without a refresh (RFC 4028 §10): end the call with BYE.
    SessionExpired,
    /// A SIP INFO request body (e.g. `application/dtmf-relay`); already answered 200.
    Info {
        /// Content-Type of the body.
        content_type: Option<String>,
        /// The body.
        body: Vec<u8>,
    },
}

/// Commands for one call. Cheap to clone.
#[derive(Clone)]
pub struct CallHandle {
    dialog: InviteDialog,
    call_id: String,
    local_sdp: Arc<parking_lot_lite::Slot>,
    timer: Arc<std::sync::Mutex<Option<session_timer::SessionTimer>>>,
}

/// A tiny mutex-protected slot for our current SDP (re-INVITEs are answered with it).
mod parking_lot_lite {
    use std::sync::Mutex;

    /// Holds the last SDP we sent.
    #[derive(Default)]
    pub(super) struct Slot(Mutex<Option<Vec<u8>>>);

    impl Slot {
        pub(super) fn set(&self, v: Vec<u8>) {
            if let Ok(mut g) = self.0.lock() {
                *g = Some(v);
            }
        }
        pub(super) fn get(&self) -> Option<Vec<u8>> {
            self.0.lock().ok().and_then(|g| g.clone())
        }
    }
}

impl CallHandle {
    /// The Call-ID of this call.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Answers the INVITE with 200 OK carrying `sdp` (`Content-Type: application/sdp`). The 2xx is
    /// retransmitted by the transaction layer until the ACK arrives (RFC 3261 §13.3.1.4).
    ///
    /// # Errors
    /// [`Error::Dialog`] if the INVITE transaction is already gone (e.g. the caller cancelled).
    pub fn answer(&self, sdp: Vec<u8>) -> Result<(), Error> {
        self.local_sdp.set(sdp.clone());
        let mut headers = vec![Header::ContentType("application/sdp".into())];
        if let Ok(mut timer) = self.timer.lock() {
            if let Some(t) = timer.as_mut() {
                // The session interval starts with the 2xx.
                t.refreshed(std::time::Instant::now(), None, None);
                headers.extend(other_headers(t.response_headers()));
            }
        }
        self.dialog
            .accept(Some(headers), Some(sdp))
            .map_err(|e| self.err(e))
    }

    /// Rejects the INVITE with a final non-2xx `code` (e.g. 488, 503); `reason` becomes the text of
    /// a `Reason` header (RFC 3326) for the peer's logs. A no-op once the call is answered.
    ///
    /// # Errors
    /// [`Error::Dialog`] if the response could not be queued.
    pub fn reject(&self, code: u16, reason: Option<&str>) -> Result<(), Error> {
        // Reason header per RFC 3326: protocol, cause and a quoted text.
        let reason = reason.map(|r| format!("SIP;cause={code};text=\"{}\"", r.replace('"', "'")));
        self.dialog
            .reject(Some(StatusCode::from(code)), reason)
            .map_err(|e| self.err(e))
    }

    /// Ends the call: BYE once answered (RFC 3261 §15.1.1), or 480 Temporarily Unavailable when it
    /// was not answered yet. `reason` goes into a `Reason` header (RFC 3326) for the peer's logs.
    ///
    /// # Errors
    /// [`Error::Dialog`] if the BYE could not be sent.
    pub async fn hangup(&self, reason: &str) -> Result<(), Error> {
        // An in-dialog request (NOTIFY, UPDATE, INFO, ...) being answered leaves the dialog out of
        // Confirmed for a moment; BYE can be sent once it is back.
        for _ in 0..40 {
            match self.dialog.state() {
                DialogState::Updated(..)
                | DialogState::Notify(..)
                | DialogState::Info(..)
                | DialogState::Options(..)
                | DialogState::Message(..)
                | DialogState::Publish(..) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                _ => break,
            }
        }
        match self.dialog.state() {
            DialogState::Confirmed(..) | DialogState::WaitAck(..) => self
                .dialog
                .hangup_with_reason(format!(
                    "SIP;cause=200;text=\"{}\"",
                    reason.replace('"', "'")
                ))
                .await
                .map_err(|e| self.err(e)),
            DialogState::Terminated(..) => Ok(()),
            _ => self.reject(480, Some(reason)),
        }
    }

    /// Blind transfer (RFC 3515): sends REFER with `Refer-To: <target>` and returns the status of
    /// the peer's final response (202 Accepted when it took the transfer).
    ///
    /// # Errors
    /// [`Error::Dialog`] if `target` is not a SIP URI or the REFER could not be sent.
    pub async fn refer(&self, target: &str) -> Result<u16, Error> {
        let uri = rsipstack::sip::Uri::try_from(target).map_err(|e| Error::Dialog {
            call_id: self.call_id.clone(),
            reason: format!("invalid transfer target {target}: {e}"),
        })?;
        let resp = self
            .dialog
            .refer(uri, None, None)
            .await
            .map_err(|e| self.err(e))?;
        Ok(resp.map(|r| u16::from(r.status_code)).unwrap_or(408))
    }

    fn err(&self, e: rsipstack::Error) -> Error {
        Error::Dialog {
            call_id: self.call_id.clone(),
            reason: e.to_string(),
        }
    }
}

/// The event stream of one call (wraps the dialog's state channel).
///
/// Dropping it forgets the dialog: later requests for it get 481.
pub struct CallEvents {
    rx: DialogStateReceiver,
    dialog: InviteDialog,
    dialogs: Arc<DialogLayer>,
    local_sdp: Arc<parking_lot_lite::Slot>,
    done: bool,
    /// Counts this call against `max_calls` until the call task drops its event stream.
    _slot: admission::CallSlot,
    /// The RFC 4028 session timer, shared with [`CallHandle::answer`] (which starts it).
    timer: Arc<std::sync::Mutex<Option<session_timer::SessionTimer>>>,
    /// Our minimum session interval.
    min_se: u32,
    /// Our own refresh (UPDATE/re-INVITE) is outstanding: an incoming one gets 491 (glare).
    outstanding: Arc<AtomicBool>,
    /// Results of our refreshes: `true` for a 2xx.
    refresh_tx: mpsc::UnboundedSender<bool>,
    refresh_rx: mpsc::UnboundedReceiver<bool>,
    /// A re-INVITE/UPDATE offer handed out as [`CallEvent::Offer`], not answered yet, with the
    /// session-timer headers for its 2xx.
    pending_offer: Option<(TransactionHandle, Vec<Header>)>,
    /// We answered a re-INVITE without SDP with our offer: its ACK carries the answer.
    expect_ack_answer: bool,
    /// The caller's Allow lists UPDATE (or it sent no Allow): refresh with UPDATE, else re-INVITE.
    peer_allows_update: bool,
}

impl CallEvents {
    /// The next event of this call, or `None` after the dialog ended (the last event returned is
    /// always `Cancelled`, `Bye`, `Terminated` or `SessionExpired`).
    pub async fn recv(&mut self) -> Option<CallEvent> {
        if self.done {
            return None;
        }
        if self.pending_offer.is_some() {
            // Nobody answered the last offer: keep the session as it is (our current SDP).
            let sdp = self.local_sdp.get();
            self.respond_offer(200, sdp).await;
        }
        loop {
            let deadline = self
                .timer
                .lock()
                .ok()
                .and_then(|t| t.as_ref().map(session_timer::SessionTimer::poll_timeout));
            let state = tokio::select! {
                state = self.rx.recv() => state,
                Some(ok) = self.refresh_rx.recv() => {
                    if ok {
                        if let Ok(mut t) = self.timer.lock() {
                            if let Some(t) = t.as_mut() {
                                t.refreshed(std::time::Instant::now(), None, None);
                            }
                        }
                    }
                    continue;
                }
                _ = sleep_until_std(deadline) => {
                    let action = self
                        .timer
                        .lock()
                        .ok()
                        .and_then(|mut t| t.as_mut().and_then(|t| t.poll(std::time::Instant::now())));
                    match action {
                        Some(session_timer::TimerAction::Expired) => {
                            info!("session timer expired without a refresh (RFC 4028)");
                            if let Ok(mut t) = self.timer.lock() {
                                *t = None;
                            }
                            return Some(CallEvent::SessionExpired);
                        }
                        Some(session_timer::TimerAction::Refresh) => self.send_refresh(),
                        None => {}
                    }
                    continue;
                }
            };
            let Some(state) = state else { break };
            match state {
                DialogState::Confirmed(..) => {
                    // Each Confirmed follows an ACK (initial INVITE or re-INVITE) or the return from
                    // an in-dialog transaction; only the first one matters to the call, and the ACK
                    // of a re-INVITE we answered with an offer.
                    let answer = self
                        .dialog
                        .last_remote_ack()
                        .map(|ack| ack.body().clone())
                        .filter(|b| !b.is_empty());
                    if self.expect_ack_answer {
                        if let Some(sdp) = answer {
                            self.expect_ack_answer = false;
                            return Some(CallEvent::Answer { sdp });
                        }
                    }
                    return Some(CallEvent::Ack { answer });
                }
                DialogState::Terminated(_, reason) => {
                    self.done = true;
                    return Some(match reason {
                        TerminatedReason::UacCancel => CallEvent::Cancelled,
                        TerminatedReason::UacBye => CallEvent::Bye,
                        TerminatedReason::Timeout => CallEvent::Terminated {
                            reason: "ack-timeout",
                        },
                        TerminatedReason::UasBye => CallEvent::Terminated {
                            reason: "local-bye",
                        },
                        TerminatedReason::UasDecline
                        | TerminatedReason::UasBusy
                        | TerminatedReason::UasOther(_) => {
                            CallEvent::Terminated { reason: "rejected" }
                        }
                        _ => CallEvent::Terminated {
                            reason: "dialog-error",
                        },
                    });
                }
                DialogState::Info(_, req, handle) => {
                    let content_type = req.header_value("Content-Type");
                    let body = req.body().clone();
                    handle.reply(StatusCode::OK).await.ok();
                    return Some(CallEvent::Info { content_type, body });
                }
                DialogState::Updated(_, req, handle) => {
                    if let Some(ev) = self.on_update(&req, handle).await {
                        return Some(ev);
                    }
                }
                DialogState::Options(_, _, handle) => {
                    handle.reply(StatusCode::OK).await.ok();
                }
                DialogState::Notify(_, req, handle) => {
                    let is_refer = req
                        .header_value("Event")
                        .or_else(|| req.header_value("o"))
                        .is_some_and(|e| {
                            e.split(';')
                                .next()
                                .unwrap_or("")
                                .trim()
                                .eq_ignore_ascii_case("refer")
                        });
                    if !is_refer {
                        handle.reply(StatusCode::from(489)).await.ok();
                        continue;
                    }
                    handle.reply(StatusCode::OK).await.ok();
                    let terminated = req
                        .header_value("Subscription-State")
                        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("terminated"));
                    if let Some(status) = sipfrag_status(req.body()) {
                        return Some(CallEvent::ReferNotify { status, terminated });
                    }
                }
                DialogState::Refer(_, _, handle)
                | DialogState::Message(_, _, handle)
                | DialogState::Publish(_, _, handle) => {
                    handle.reply(StatusCode::NotImplemented).await.ok();
                }
                _ => {}
            }
        }
        self.done = true;
        None
    }

    /// A re-INVITE or UPDATE: glare (491), session-timer checks (422) and refresh, then either an
    /// [`CallEvent::Offer`] to answer, or an immediate 200 (no SDP: our current SDP as the offer
    /// for a re-INVITE, no body for an UPDATE).
    async fn on_update(
        &mut self,
        req: &rsipstack::sip::Request,
        handle: TransactionHandle,
    ) -> Option<CallEvent> {
        let is_invite = req.method == Method::Invite;
        if self.outstanding.load(Ordering::SeqCst) {
            info!(method = %req.method, "glare: our own refresh is outstanding; answering 491");
            handle.reply(StatusCode::from(491)).await.ok();
            return None;
        }
        let pairs: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|h| (h.name().to_string(), h.value().to_string()))
            .collect();
        let treq =
            session_timer::TimerRequest::parse(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let mut headers = Vec::new();
        match session_timer::negotiate(&treq, self.min_se) {
            session_timer::Negotiation::TooSmall { min_se } => {
                info!(method = %req.method, min_se, "session interval too small; answering 422");
                handle
                    .respond(
                        StatusCode::from(422),
                        Some(vec![Header::Other("Min-SE".into(), min_se.to_string())]),
                        None,
                    )
                    .await
                    .ok();
                return None;
            }
            negotiated => {
                if let Ok(mut timer) = self.timer.lock() {
                    let now = std::time::Instant::now();
                    match (timer.as_mut(), negotiated) {
                        (
                            Some(t),
                            session_timer::Negotiation::Timer {
                                interval,
                                refresher,
                                ..
                            },
                        ) => t.refreshed(now, Some(interval), Some(refresher)),
                        (
                            None,
                            session_timer::Negotiation::Timer {
                                interval,
                                refresher,
                                require,
                            },
                        ) => {
                            *timer = Some(session_timer::SessionTimer::new(
                                now, interval, refresher, require,
                            ))
                        }
                        (Some(t), _) => t.refreshed(now, None, None),
                        (None, _) => {}
                    }
                    if let Some(t) = timer.as_ref() {
                        debug!(method = %req.method, interval = t.interval_secs(), refresher = t.refresher().as_str(), "session refreshed");
                        headers.extend(other_headers(t.response_headers()));
                    }
                }
            }
        }
        let is_sdp = req
            .header_value("Content-Type")
            .map(|ct| ct.to_ascii_lowercase().starts_with("application/sdp"))
            .unwrap_or(false);
        if is_sdp && !req.body().is_empty() {
            self.pending_offer = Some((handle, headers));
            return Some(CallEvent::Offer {
                sdp: req.body().clone(),
            });
        }
        if is_invite {
            // No SDP: our current SDP is the offer; the answer comes in the ACK.
            let body = self.local_sdp.get();
            if body.is_some() {
                headers.push(Header::ContentType("application/sdp".into()));
                self.expect_ack_answer = true;
            }
            handle
                .respond(StatusCode::OK, Some(headers), body)
                .await
                .ok();
        } else {
            handle
                .respond(StatusCode::OK, Some(headers), None)
                .await
                .ok();
        }
        None
    }

    /// Answers the [`CallEvent::Offer`] just received: `Ok(answer)` with 200 and the SDP answer
    /// (which becomes our current SDP), `Err(code)` with that final status (e.g. 488); the
    /// session is then unchanged.
    pub async fn answer_offer(&mut self, answer: Result<Vec<u8>, u16>) {
        match answer {
            Ok(sdp) => {
                self.local_sdp.set(sdp.clone());
                self.respond_offer(200, Some(sdp)).await;
            }
            Err(code) => self.respond_offer(code, None).await,
        }
    }

    async fn respond_offer(&mut self, code: u16, sdp: Option<Vec<u8>>) {
        let Some((handle, mut headers)) = self.pending_offer.take() else {
            return;
        };
        if code >= 300 {
            headers.clear();
        }
        if sdp.is_some() {
            headers.push(Header::ContentType("application/sdp".into()));
        }
        handle
            .respond(StatusCode::from(code), Some(headers), sdp)
            .await
            .ok();
    }

    /// Sends our session refresh (RFC 4028 §7.4) in the background: UPDATE without SDP when the
    /// caller allows UPDATE, else a re-INVITE with our current SDP.
    fn send_refresh(&mut self) {
        let headers = match self.timer.lock() {
            Ok(t) => match t.as_ref() {
                Some(t) => other_headers(t.refresh_headers()),
                None => return,
            },
            Err(_) => return,
        };
        let dialog = self.dialog.clone();
        let outstanding = self.outstanding.clone();
        let results = self.refresh_tx.clone();
        let use_update = self.peer_allows_update;
        let sdp = self.local_sdp.get();
        outstanding.store(true, Ordering::SeqCst);
        tokio::spawn(async move {
            let resp = if use_update {
                dialog.update(Some(headers), None).await
            } else {
                let mut headers = headers;
                headers.push(Header::ContentType("application/sdp".into()));
                dialog.reinvite(Some(headers), sdp).await
            };
            outstanding.store(false, Ordering::SeqCst);
            let ok = match resp {
                Ok(Some(r)) => {
                    let code = u16::from(r.status_code);
                    info!(
                        code,
                        method = if use_update { "UPDATE" } else { "INVITE" },
                        "session refresh answered"
                    );
                    (200..300).contains(&code)
                }
                Ok(None) => false,
                Err(e) => {
                    warn!(error = %e, "session refresh failed");
                    false
                }
            };
            let _ = results.send(ok);
        });
    }
}

/// `(name, value)` pairs as extension headers.
fn other_headers(pairs: Vec<(&'static str, String)>) -> Vec<Header> {
    pairs
        .into_iter()
        .map(|(n, v)| Header::Other(n.into(), v))
        .collect()
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_std(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// The status code of a `message/sipfrag` body (`SIP/2.0 200 OK`, RFC 3420).
fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?.trim();
    let rest = line.strip_prefix("SIP/2.0")?.trim_start();
    rest.split_whitespace().next()?.parse().ok()
}

impl Drop for CallEvents {
    fn drop(&mut self) {
        self.dialogs.remove_dialog(&self.dialog.id());
    }
}

/// The running SIP endpoint.
pub struct SipEndpoint {
    endpoint: rsipstack::transaction::Endpoint,
    dialogs: Arc<DialogLayer>,
    calls: mpsc::Sender<IncomingCall>,
    accepting: Arc<AtomicBool>,
    cancel: CancellationToken,
    contact_host: String,
    local_addr: SocketAddr,
    /// Admission core; locked only for one synchronous decision (never across an await).
    gate: std::sync::Mutex<admission::Admission>,
    /// Our minimum session interval (RFC 4028 Min-SE).
    min_se: u32,
    /// The SIP TCP listeners, served by [`SipEndpoint::run`] through `guard::serve_tcp`.
    tcp_listeners: std::sync::Mutex<Vec<tokio::net::TcpListener>>,
    /// Each bound address with the `host:port` our Contact names for calls arriving on it.
    contact_hosts: Vec<(SocketAddr, String)>,
    /// Every bound address (UDP and TCP share each).
    bound: Vec<SocketAddr>,
}

/// Switch that makes the endpoint answer new INVITEs 503 (graceful shutdown).
#[derive(Clone)]
pub struct AdmissionSwitch(Arc<AtomicBool>);

impl AdmissionSwitch {
    /// Stop accepting new calls: INVITEs get 503 Service Unavailable from now on.
    pub fn stop_accepting(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl SipEndpoint {
    /// Binds UDP and TCP on `config.listen` (port 0 picks a free port, the same for both) and
    /// returns the endpoint plus the channel of new calls.
    ///
    /// # Errors
    /// [`Error::Bind`] when either socket cannot be bound.
    pub async fn bind(
        config: &SipConfig,
        cancel: CancellationToken,
    ) -> Result<(SipEndpoint, mpsc::Receiver<IncomingCall>), Error> {
        let bind_err = |addr: SocketAddr, e: rsipstack::Error| Error::Bind {
            addr,
            reason: e.to_string(),
        };
        let transport_layer = TransportLayer::new(cancel.child_token());
        let Some(&first) = config.listen.first() else {
            return Err(Error::Bind {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                reason: "no SIP listen address".to_owned(),
            });
        };
        let v4 = config.listen.iter().filter(|a| a.is_ipv4()).count();
        if v4 > 1 || config.listen.len() - v4 > 1 {
            return Err(Error::Bind {
                addr: first,
                reason: "listen on at most one IPv4 and one IPv6 address".to_owned(),
            });
        }
        let mut tcp_listeners = Vec::new();
        let mut bound: Vec<SocketAddr> = Vec::new();
        let mut udp_sockets = Vec::new();
        for &want in &config.listen {
            // Port 0 after the first address: the first one's port.
            let addr = match bound.first() {
                Some(b) if want.port() == 0 => SocketAddr::new(want.ip(), b.port()),
                _ => want,
            };
            let udp_socket = bind_udp(addr).map_err(|e| bind_err(addr, e.into()))?;
            let port = udp_socket
                .local_addr()
                .map_err(|e| bind_err(addr, e.into()))?
                .port();
            // TCP on the same port as UDP (when port 0 was asked for, the one UDP got). We accept
            // the connections ourselves (`guard::serve_tcp`). rsipstack needs no TCP listener
            // entry: for requests it sends over TCP it advertises its first listener's address
            // with the TCP token, which is this same address and port.
            let tcp_addr = SocketAddr::new(addr.ip(), port);
            let tcp_listener = bind_tcp(tcp_addr).map_err(|e| bind_err(tcp_addr, e.into()))?;
            udp_sockets.push(udp_socket);
            tcp_listeners.push(tcp_listener);
            bound.push(tcp_addr);
        }
        // One UDP connection for rsipstack over both families (see `guard::GuardedUdp`); every
        // datagram passes `validate` first.
        let mut udp_sockets = udp_sockets.into_iter();
        let primary = udp_sockets.next().ok_or_else(|| Error::Bind {
            addr: first,
            reason: "no SIP listen address".to_owned(),
        })?;
        let udp = UdpConnection::from_socket(
            Arc::new(guard::GuardedUdp::new(primary, udp_sockets.next())),
            None,
            Some(cancel.child_token()),
        )
        .await
        .map_err(|e| bind_err(first, e))?;
        transport_layer.add_transport(udp.into());
        let udp_addr = bound.first().copied().unwrap_or(first);

        let endpoint = EndpointBuilder::new()
            .with_cancel_token(cancel.child_token())
            .with_transport_layer(transport_layer)
            .with_user_agent(&config.user_agent)
            .with_allows(vec![
                Method::Invite,
                Method::Ack,
                Method::Cancel,
                Method::Bye,
                Method::Options,
                Method::Info,
                Method::Update,
                Method::Notify,
            ])
            .build();
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        let (calls, calls_rx) = mpsc::channel(INCOMING_CALLS_CAPACITY);
        let contact_hosts: Vec<(SocketAddr, String)> = bound
            .iter()
            .map(|a| {
                let ip = if a.ip().is_unspecified() {
                    config.advertised_ip_for(a.ip())
                } else {
                    a.ip()
                };
                (*a, host_port(SocketAddr::new(ip, a.port())))
            })
            .collect();
        let contact_host = contact_hosts
            .first()
            .map(|(_, h)| h.clone())
            .unwrap_or_default();
        let gate = admission::Admission::new(
            config.admission.clone(),
            tokio::time::Instant::now().into_std(),
            rand::random(),
        );
        log_admission_policy(&config.admission);
        Ok((
            SipEndpoint {
                endpoint,
                dialogs,
                calls,
                accepting: Arc::new(AtomicBool::new(true)),
                cancel,
                contact_host,
                contact_hosts,
                local_addr: udp_addr,
                bound,
                gate: std::sync::Mutex::new(gate),
                min_se: config.min_session_expires.max(1),
                tcp_listeners: std::sync::Mutex::new(tcp_listeners),
            },
            calls_rx,
        ))
    }

    /// The first bound address (UDP and TCP share the port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Every bound address, in the order of [`SipConfig::listen`].
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.bound
    }

    /// The `host:port` of our Contact for a request that arrived on local address `local`:
    /// the listen address it came in on (its family's advertised IP for a wildcard).
    fn contact_host_for(&self, local: Option<SocketAddr>) -> &str {
        local
            .and_then(|l| {
                self.contact_hosts
                    .iter()
                    .find(|(a, _)| a.port() == l.port() && a.is_ipv6() == l.is_ipv6())
            })
            .map_or(self.contact_host.as_str(), |(_, h)| h.as_str())
    }

    /// A switch to stop admitting calls during shutdown.
    pub fn admission(&self) -> AdmissionSwitch {
        AdmissionSwitch(self.accepting.clone())
    }

    /// Outbound registrations over this endpoint's transports and transaction layer, advertising
    /// this endpoint's Contact address. Spawn them after [`SipEndpoint::run`] has started.
    pub fn registrations(&self) -> registration::Registrations {
        registration::Registrations::new(self.endpoint.inner.clone(), self.contact_host.clone())
    }

    /// Serves SIP until the cancellation token fires.
    pub async fn run(self) {
        let mut incoming = match self.endpoint.incoming_transactions() {
            Ok(rx) => rx,
            Err(e) => {
                warn!(error = %e, "SIP endpoint has no transaction receiver");
                return;
            }
        };
        let tcp = self
            .tcp_listeners
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        for listener in tcp {
            tokio::spawn(guard::serve_tcp(
                listener,
                self.endpoint.inner.clone(),
                self.cancel.child_token(),
            ));
        }
        let serve = self.endpoint.serve();
        tokio::pin!(serve);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = &mut serve => break,
                tx = incoming.recv() => match tx {
                    Some(tx) => self.route(tx).await,
                    None => break,
                },
            }
        }
        self.endpoint.shutdown();
    }

    async fn route(&self, mut tx: Transaction) {
        let has_to_tag = tx
            .original
            .to_header()
            .ok()
            .and_then(|to| to.tag().ok().flatten())
            .is_some();
        let method = tx.original.method;
        debug!(%method, has_to_tag, "SIP request");
        if has_to_tag {
            match self.dialogs.match_dialog(&tx) {
                Some(Dialog::Invite(mut dialog)) => {
                    tokio::spawn(async move {
                        if let Err(e) = dialog.handle(&mut tx).await {
                            debug!(error = %e, "in-dialog request failed");
                        }
                    });
                }
                _ if method == Method::Ack => {}
                _ => reply(&mut tx, 481, vec![]).await,
            }
            return;
        }
        match method {
            Method::Invite => self.new_call(tx).await,
            Method::Options => {
                let headers = vec![
                    Header::Other("Allow".into(), ALLOW.into()),
                    Header::Other("Accept".into(), "application/sdp".into()),
                ];
                reply(&mut tx, 200, headers).await;
            }
            Method::Ack => {}
            Method::Cancel => reply(&mut tx, 481, vec![]).await,
            Method::Bye | Method::Info => reply(&mut tx, 481, vec![]).await,
            _ => {
                let headers = vec![Header::Other("Allow".into(), ALLOW.into())];
                reply(&mut tx, 405, headers).await;
            }
        }
    }

    async fn new_call(&self, mut tx: Transaction) {
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
                        std::time::Instant::now(),
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
        let contact = match transport {
            Transport::Tcp => format!("sip:frontdesk@{contact_host};transport=tcp"),
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

impl SipConfig {
    /// The advertised IP of `listen_ip`'s family, else the first one, else `listen_ip`.
    fn advertised_ip_for(&self, listen_ip: std::net::IpAddr) -> std::net::IpAddr {
        self.advertised_ips
            .iter()
            .find(|ip| ip.is_ipv6() == listen_ip.is_ipv6())
            .or(self.advertised_ips.first())
            .copied()
            .unwrap_or(listen_ip)
    }
}

/// `ip:port` with an IPv6 reference in brackets (RFC 3261 §19.1.1, RFC 5118 §4).
fn host_port(addr: SocketAddr) -> String {
    match addr.ip() {
        std::net::IpAddr::V6(v6) => format!("[{v6}]:{}", addr.port()),
        std::net::IpAddr::V4(v4) => format!("{v4}:{}", addr.port()),
    }
}

/// A UDP socket on `addr`; an IPv6 address listens on IPv6 only, so `0.0.0.0` and `[::]` can
/// share a port (dual stack).
fn bind_udp(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// A TCP listener on `addr` (IPv6 only for an IPv6 address, as [`bind_udp`]).
fn bind_tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    tokio::net::TcpListener::from_std(socket.into())
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

/// Logs the admission policy at start: warnings first (an open SIP port), then a summary.
fn log_admission_policy(policy: &admission::Policy) {
    for w in policy.warnings() {
        warn!("{w}");
    }
    if policy.open {
        return;
    }
    let trunks: Vec<String> = policy
        .trunks
        .iter()
        .map(|t| {
            let nets: Vec<String> = t.allow.iter().map(ToString::to_string).collect();
            format!("{} ({})", t.name, nets.join(", "))
        })
        .collect();
    let users = policy.digest.as_ref().map_or(0, |d| d.user_names().len());
    let others = if policy.digest.is_some() {
        "digest challenge (401)"
    } else {
        "403 Forbidden"
    };
    let rate = policy.rate.map_or_else(
        || "off".to_owned(),
        |r| format!("{}/min, burst {}", r.per_minute, r.burst),
    );
    info!(
        max_calls = policy.max_calls,
        rate_per_source = %rate,
        trunks = %trunks.join("; "),
        digest_users = users,
        realm = policy.digest.as_ref().map_or("-", |d| d.realm.as_str()),
        other_sources = others,
        "SIP admission: trunk sources are admitted by address"
    );
}

/// Sends a stateless-style final response on a server transaction, logging failures.
async fn reply(tx: &mut Transaction, code: u16, headers: Vec<Header>) {
    if let Err(e) = tx.reply_with(StatusCode::from(code), headers, None).await {
        debug!(error = %e, code, "failed to send SIP response");
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
