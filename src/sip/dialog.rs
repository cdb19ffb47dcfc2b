//! One established call: the owned call object [`CallEvents`] (the INVITE dialog, our current
//! SDP and the RFC 4028 session timer, changed only through `&mut self`) and the cloneable
//! [`CallHandle`] for the commands other tasks may send (reject, REFER).
//!
//! Time comes from `tokio::time::Instant` (converted for the sans-IO [`SessionTimer`]), so the
//! session timer follows tokio's paused clock in tests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rsipstack::dialog::dialog::{
    DialogState, DialogStateReceiver, TerminatedReason, TransactionHandle,
};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt as _;
use rsipstack::sip::{Header, Method, StatusCode};
use tracing::{debug, info, warn};

use super::session_timer::{self, SessionTimer};
use super::{admission, other_headers, reason_header, Error};

/// How long [`CallEvents::hangup`] waits for an in-dialog transaction (MESSAGE, PUBLISH) that
/// holds the dialog out of `Confirmed` to finish before giving up on the BYE.
const HANGUP_SETTLE: Duration = Duration::from_secs(2);

/// Our session refresh in flight (UPDATE or re-INVITE, RFC 4028 §7.4): resolves to `true` for a
/// 2xx. Polled by [`CallEvents::recv`]; while it is pending an incoming refresh gets 491 (glare).
type Refresh = Pin<Box<dyn Future<Output = bool> + Send>>;

/// The clock of the shell: tokio's (paused in tests), as the `std` instant the cores take.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
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

/// Commands for one call that other tasks may send while the call task owns [`CallEvents`]
/// (reject before the answer, REFER). Cheap to clone; holds no call state of its own.
#[derive(Clone)]
pub struct CallHandle {
    dialog: InviteDialog,
    call_id: String,
}

impl CallHandle {
    /// The Call-ID of this call.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Rejects the INVITE with a final non-2xx `code` (e.g. 488, 503); `reason` becomes the text of
    /// a `Reason` header (RFC 3326) for the peer's logs. A no-op once the call is answered.
    ///
    /// # Errors
    /// [`Error::Dialog`] if the response could not be queued.
    pub fn reject(&self, code: u16, reason: Option<&str>) -> Result<(), Error> {
        let reason = reason.map(|r| reason_header(code, r));
        self.dialog
            .reject(Some(StatusCode::from(code)), reason)
            .map_err(|e| self.err(e))
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
        dialog_error(&self.call_id, e)
    }
}

/// The call object: one INVITE dialog with its event stream, our current SDP and its RFC 4028
/// session timer, owned by the call task. [`CallEvents::answer`], [`CallEvents::recv`],
/// [`CallEvents::answer_offer`] and [`CallEvents::hangup`] take `&mut self`: nothing about the
/// dialog is shared or locked.
///
/// Dropping it forgets the dialog (later requests for it get 481) and frees its admission slot.
pub struct CallEvents {
    rx: DialogStateReceiver,
    dialog: InviteDialog,
    dialogs: Arc<DialogLayer>,
    call_id: String,
    /// The last SDP we sent (our answer or offer); re-INVITEs without an offer get it.
    local_sdp: Option<Vec<u8>>,
    done: bool,
    /// Counts this call against `max_calls` until the call task drops its event stream.
    _slot: admission::CallSlot,
    /// The RFC 4028 session timer negotiated by the INVITE or a later refresh; its interval
    /// (re)starts with our 2xx ([`CallEvents::answer`]).
    timer: Option<SessionTimer>,
    /// Our minimum session interval.
    min_se: u32,
    /// Our own refresh, while it is outstanding.
    refresh: Option<Refresh>,
    /// A re-INVITE/UPDATE offer handed out as [`CallEvent::Offer`], not answered yet, with the
    /// session-timer headers for its 2xx.
    pending_offer: Option<(TransactionHandle, Vec<Header>)>,
    /// We answered a re-INVITE without SDP with our offer: its ACK carries the answer.
    expect_ack_answer: bool,
    /// The caller's Allow lists UPDATE (or it sent no Allow): refresh with UPDATE, else re-INVITE.
    peer_allows_update: bool,
}

impl CallEvents {
    /// The call object of a dialog just created from its INVITE (`invite` module).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        rx: DialogStateReceiver,
        dialog: InviteDialog,
        dialogs: Arc<DialogLayer>,
        call_id: String,
        slot: admission::CallSlot,
        timer: Option<SessionTimer>,
        min_se: u32,
        peer_allows_update: bool,
    ) -> (CallHandle, CallEvents) {
        let handle = CallHandle {
            dialog: dialog.clone(),
            call_id: call_id.clone(),
        };
        let events = CallEvents {
            rx,
            dialog,
            dialogs,
            call_id,
            local_sdp: None,
            done: false,
            _slot: slot,
            timer,
            min_se,
            refresh: None,
            pending_offer: None,
            expect_ack_answer: false,
            peer_allows_update,
        };
        (handle, events)
    }

    /// The Call-ID of this call.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Answers the INVITE with 200 OK carrying `sdp` (`Content-Type: application/sdp`, plus
    /// `Session-Expires`/`Require: timer` when a session timer was negotiated, whose interval
    /// starts now, RFC 4028 §9). The 2xx is retransmitted by the transaction layer until the ACK
    /// arrives (RFC 3261 §13.3.1.4).
    ///
    /// # Errors
    /// [`Error::Dialog`] if the INVITE transaction is already gone (e.g. the caller cancelled).
    pub fn answer(&mut self, sdp: Vec<u8>) -> Result<(), Error> {
        self.local_sdp = Some(sdp.clone());
        let mut headers = vec![Header::ContentType("application/sdp".into())];
        if let Some(t) = self.timer.as_mut() {
            t.refreshed(now(), None, None);
            headers.extend(other_headers(t.response_headers()));
        }
        self.dialog
            .accept(Some(headers), Some(sdp))
            .map_err(|e| dialog_error(&self.call_id, e))
    }

    /// Ends the call: BYE once answered (RFC 3261 §15.1.1), awaiting its final response, or 480
    /// Temporarily Unavailable when it was not answered yet. `reason` goes into a `Reason` header
    /// (RFC 3326) for the peer's logs. A re-INVITE/UPDATE offer still unanswered gets 487 first;
    /// an in-dialog MESSAGE/PUBLISH being answered is waited for (state events, at most 2 s).
    /// A no-op once the dialog has ended.
    ///
    /// # Errors
    /// [`Error::Dialog`] if the BYE (or 480) could not be sent.
    pub async fn hangup(&mut self, reason: &str) -> Result<(), Error> {
        if self.pending_offer.is_some() {
            self.respond_offer(487, None);
        }
        let settle = tokio::time::Instant::now() + HANGUP_SETTLE;
        loop {
            match self.dialog.state() {
                DialogState::Confirmed(..) | DialogState::WaitAck(..) => {
                    return self
                        .dialog
                        .hangup_with_reason(reason_header(200, reason))
                        .await
                        .map_err(|e| dialog_error(&self.call_id, e));
                }
                DialogState::Terminated(..) => return Ok(()),
                DialogState::Calling(..) | DialogState::Trying(..) | DialogState::Early(..) => {
                    return self
                        .dialog
                        .reject(
                            Some(StatusCode::from(480)),
                            Some(reason_header(480, reason)),
                        )
                        .map_err(|e| dialog_error(&self.call_id, e));
                }
                _ => {
                    // An in-dialog request holds the dialog; it returns to Confirmed (reported on
                    // the state channel) once `recv` has answered it.
                    match tokio::time::timeout_at(settle, self.recv()).await {
                        Ok(Some(_)) => {}
                        Ok(None) => return Ok(()),
                        Err(_) => {
                            return Err(Error::Dialog {
                                call_id: self.call_id.clone(),
                                reason: format!(
                                    "no BYE: the dialog stayed in state {} for {HANGUP_SETTLE:?}",
                                    self.dialog.state()
                                ),
                            })
                        }
                    }
                }
            }
        }
    }

    /// The next event of this call, or `None` after the dialog ended (the last event returned is
    /// always `Cancelled`, `Bye`, `Terminated` or `SessionExpired`).
    ///
    /// Cancel-safe: the pump polls it inside its `select!`, which drops it whenever another
    /// branch is ready first. Its only await is the wait for the next dialog state, our refresh's
    /// response or the session timer; between taking a request off the dialog's channel and
    /// returning its event nothing is awaited, and every reply goes out from its own task
    /// ([`respond_detached`]), so a dropped `recv` loses no request, event or reply.
    pub async fn recv(&mut self) -> Option<CallEvent> {
        if self.done {
            return None;
        }
        if self.pending_offer.is_some() {
            // Nobody answered the last offer: keep the session as it is (our current SDP).
            let sdp = self.local_sdp.clone();
            self.respond_offer(200, sdp);
        }
        loop {
            let deadline = self.timer.as_ref().map(SessionTimer::poll_timeout);
            let state = tokio::select! {
                state = self.rx.recv() => state,
                ok = refresh_done(&mut self.refresh) => {
                    self.refresh = None;
                    if ok {
                        if let Some(t) = self.timer.as_mut() {
                            t.refreshed(now(), None, None);
                        }
                    }
                    continue;
                }
                _ = sleep_until_std(deadline) => {
                    let action = self.timer.as_mut().and_then(|t| t.poll(now()));
                    match action {
                        Some(session_timer::TimerAction::Expired) => {
                            info!("session timer expired without a refresh (RFC 4028)");
                            self.timer = None;
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
                    respond_detached(handle, StatusCode::OK, None, None);
                    return Some(CallEvent::Info { content_type, body });
                }
                DialogState::Updated(_, req, handle) => {
                    if let Some(ev) = self.on_update(&req, handle) {
                        return Some(ev);
                    }
                }
                DialogState::Options(_, _, handle) => {
                    respond_detached(handle, StatusCode::OK, None, None);
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
                        respond_detached(handle, StatusCode::from(489), None, None);
                        continue;
                    }
                    respond_detached(handle, StatusCode::OK, None, None);
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
                    respond_detached(handle, StatusCode::NotImplemented, None, None);
                }
                _ => {}
            }
        }
        self.done = true;
        None
    }

    /// A re-INVITE or UPDATE: glare (491), session-timer checks (422) and refresh, then either an
    /// [`CallEvent::Offer`] to answer, or an immediate 200 (no SDP: our current SDP as the offer
    /// for a re-INVITE, no body for an UPDATE). Awaits nothing: it runs inside
    /// [`CallEvents::recv`], and every reply goes out detached.
    fn on_update(
        &mut self,
        req: &rsipstack::sip::Request,
        handle: TransactionHandle,
    ) -> Option<CallEvent> {
        let is_invite = req.method == Method::Invite;
        if self.refresh.is_some() {
            info!(method = %req.method, "glare: our own refresh is outstanding; answering 491");
            respond_detached(handle, StatusCode::from(491), None, None);
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
                respond_detached(
                    handle,
                    StatusCode::from(422),
                    Some(vec![Header::Other("Min-SE".into(), min_se.to_string())]),
                    None,
                );
                return None;
            }
            negotiated => {
                let now = now();
                let timer = &mut self.timer;
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
                    ) => *timer = Some(SessionTimer::new(now, interval, refresher, require)),
                    (Some(t), _) => t.refreshed(now, None, None),
                    (None, _) => {}
                }
                if let Some(t) = timer.as_ref() {
                    debug!(method = %req.method, interval = t.interval_secs(), refresher = t.refresher().as_str(), "session refreshed");
                    headers.extend(other_headers(t.response_headers()));
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
            let body = self.local_sdp.clone();
            if body.is_some() {
                headers.push(Header::ContentType("application/sdp".into()));
                self.expect_ack_answer = true;
            }
            respond_detached(handle, StatusCode::OK, Some(headers), body);
        } else {
            respond_detached(handle, StatusCode::OK, Some(headers), None);
        }
        None
    }

    /// Answers the [`CallEvent::Offer`] just received: `Ok(answer)` with 200 and the SDP answer
    /// (which becomes our current SDP), `Err(code)` with that final status (e.g. 488); the
    /// session is then unchanged. Does not wait: the response goes out from its own task, so the
    /// pump's media keeps flowing.
    pub fn answer_offer(&mut self, answer: Result<Vec<u8>, u16>) {
        match answer {
            Ok(sdp) => {
                self.local_sdp = Some(sdp.clone());
                self.respond_offer(200, Some(sdp));
            }
            Err(code) => self.respond_offer(code, None),
        }
    }

    /// Sends the final response to the pending offer (detached), if one is pending.
    fn respond_offer(&mut self, code: u16, sdp: Option<Vec<u8>>) {
        let Some((handle, mut headers)) = self.pending_offer.take() else {
            return;
        };
        if code >= 300 {
            headers.clear();
        }
        if sdp.is_some() {
            headers.push(Header::ContentType("application/sdp".into()));
        }
        respond_detached(handle, StatusCode::from(code), Some(headers), sdp);
    }

    /// Starts our session refresh (RFC 4028 §7.4): UPDATE without SDP when the caller allows
    /// UPDATE, else a re-INVITE with our current SDP. [`CallEvents::recv`] drives it to its
    /// final response.
    fn send_refresh(&mut self) {
        let Some(headers) = self
            .timer
            .as_ref()
            .map(|t| other_headers(t.refresh_headers()))
        else {
            return;
        };
        let dialog = self.dialog.clone();
        let use_update = self.peer_allows_update;
        let sdp = self.local_sdp.clone();
        self.refresh = Some(Box::pin(async move {
            let resp = if use_update {
                dialog.update(Some(headers), None).await
            } else {
                let mut headers = headers;
                headers.push(Header::ContentType("application/sdp".into()));
                dialog.reinvite(Some(headers), sdp).await
            };
            match resp {
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
            }
        }));
    }
}

/// Waits for our outstanding refresh, or forever without one.
async fn refresh_done(refresh: &mut Option<Refresh>) -> bool {
    match refresh {
        Some(r) => r.await,
        None => std::future::pending().await,
    }
}

/// A dialog command's failure, with the Call-ID.
fn dialog_error(call_id: &str, e: rsipstack::Error) -> Error {
    Error::Dialog {
        call_id: call_id.to_owned(),
        reason: e.to_string(),
    }
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
    /// Forgets the dialog. A dialog still up at this point was never hung up by its owner (the
    /// call task panicked, or a code path forgot it): it is ended for the caller all the same,
    /// with BYE (`Reason: SIP;cause=500;text="internal error"`) once answered, else with 500.
    fn drop(&mut self) {
        const WHY: &str = "internal error";
        match self.dialog.state() {
            DialogState::Confirmed(..) | DialogState::WaitAck(..) => {
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    warn!(call_id = %self.call_id, "call dropped without a hangup; sending BYE");
                    let dialog = self.dialog.clone();
                    let dialogs = self.dialogs.clone();
                    rt.spawn(async move {
                        if let Err(e) = dialog.hangup_with_reason(reason_header(500, WHY)).await {
                            debug!(error = %e, "BYE of a dropped call failed");
                        }
                        dialogs.remove_dialog(&dialog.id());
                    });
                    return;
                }
            }
            DialogState::Calling(..) | DialogState::Trying(..) | DialogState::Early(..) => {
                warn!(call_id = %self.call_id, "call dropped before an answer; sending 500");
                if let Err(e) = self
                    .dialog
                    .reject(Some(StatusCode::from(500)), Some(reason_header(500, WHY)))
                {
                    debug!(error = %e, "500 for a dropped call failed");
                }
            }
            _ => {}
        }
        self.dialogs.remove_dialog(&self.dialog.id());
    }
}

/// Answers an in-dialog request (`status`, extra `headers`, `body`) without awaiting in the
/// caller: the response is a send on the transaction's bounded channel, which can yield (a full
/// channel, tokio's cooperative budget), and [`CallEvents::recv`] is polled in the pump's
/// `select!`, so an await there between taking a request off the dialog's channel and returning
/// its event could drop the event and the reply with it (a REFER's NOTIFY lost, the transfer
/// then ending as `rtp-timeout`; a re-INVITE never answered). The response goes out from its own
/// short task instead; a transaction already gone is ignored.
fn respond_detached(
    handle: TransactionHandle,
    status: StatusCode,
    headers: Option<Vec<Header>>,
    body: Option<Vec<u8>>,
) {
    tokio::spawn(async move {
        handle.respond(status, headers, body).await.ok();
    });
}

#[cfg(test)]
mod tests;
