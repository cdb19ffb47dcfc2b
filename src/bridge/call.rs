//! The task of one call: the tokio shell around [`Bridge`](super::core::Bridge).
//!
//! ```text
//! INVITE ─► route (dialplan) ─► RTP port ─► SDP answer/offer ─► open Realtime session (≤ timeout)
//!        ─► 200 OK ─► ACK ─► media loop ─► BYE / CANCEL / error / shutdown ─► teardown ─► call record
//! ```
//!
//! Failures before the answer become final responses: 404 (no route), 488/400 (SDP), 503 (no RTP
//! port, or no Realtime session within the connect timeout). After the answer, a failure ends the
//! call with BYE. Every path releases the RTP port, closes the WebSocket and writes the call record.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::core::{Bridge, MediaParams, RtpOutcome};
use crate::dialplan::{
    Action, AfterMessage, AgentProfile, AudioSamples, CallInfo, DialplanHandle, DtmfAction,
    MessageAudio,
};
use crate::media::g711::Law;
use crate::media::socket::MediaSocket;
use crate::media::pacer::PlayoutPacer;
use crate::media::ports::PortPool;
use crate::realtime::client::RealtimeTarget;
use crate::realtime::protocol::{SessionSettings, TurnDetection};
use crate::realtime::{ModelEvent, Session};
use crate::sdp::{self, sdes::Sdes, Negotiated};
use crate::sip::{CallEvent, CallEvents, CallHandle, IncomingCall, PendingInvite, Transport};
use crate::store::{CallEnd, MediaRecord, NewCall, Store};
use crate::telemetry::Pii;
use crate::tools::{self, ToolContext};

/// Largest UDP datagram we read on an RTP socket, in bytes.
const RTP_READ_BUFFER: usize = 2048;
/// How many RTP ports to try when the chosen one is already in use by another program.
const PORT_BIND_ATTEMPTS: usize = 16;
/// Longest wait for the ACK of our 2xx when we need its SDP answer (late offer): 64·T1 (RFC 3261 §13.3.1.4).
const ACK_TIMEOUT: Duration = Duration::from_secs(32);
/// Capacity of a call's channel of finished tool calls. The model rarely has more than one or two
/// calls outstanding; a tool task that finds it full waits (it never drops a result).
const TOOL_RESULTS_CAPACITY: usize = 8;
/// How long closing the WebSocket may take at teardown.
const WS_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest the INVITE waits for its call row (`calls`) to be inserted; when the database is
/// slower or unreachable the call goes on and the whole row is written at the end instead.
const CALL_ROW_START_TIMEOUT: Duration = Duration::from_secs(2);
/// Waits between attempts to write a call's row after a failure (then the last one repeats);
/// about 8 minutes in total before the row is given up, loudly.
const CALL_ROW_RETRY_DELAYS: [Duration; 4] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(15),
    Duration::from_secs(60),
];
/// Attempts to write a call's row before it is given up.
const CALL_ROW_ATTEMPTS: usize = 12;

/// What every call task shares.
pub struct CallContext {
    /// The database.
    pub store: Store,
    /// The dialplan calls are routed with.
    pub dialplan: DialplanHandle,
    /// Free RTP ports.
    pub ports: Mutex<PortPool>,
    /// IP advertised in SDP.
    pub media_ip: IpAddr,
    /// IP of the other family (dual stack): used for calls whose SDP offer is of that family.
    pub media_ip_alt: Option<IpAddr>,
    /// Where Realtime sessions are opened.
    pub realtime: RealtimeTarget,
    /// How long opening a session may take before the INVITE is refused with 503.
    pub connect_timeout: Duration,
    /// Whether a calendar is configured, so the calendar tools are offered to the model.
    pub calendar_tools: bool,
    /// No caller RTP for this long ends an answered call with BYE (`rtp-timeout`).
    pub rtp_timeout: Duration,
    /// Continuous RTP: G.711 silence toward the caller while the agent is silent.
    pub send_silence: bool,
    /// SRTP policy of each call, by source (per trunk, else the default).
    pub srtp: crate::sdp::sdes::PolicyTable,
    /// Prices of the Realtime models, for each call's cost estimate (`[pricing]`).
    pub prices: crate::pricing::PriceTable,
    /// Whether transcripts are written to `call_turns` (`[privacy] store_transcripts`).
    pub store_transcripts: bool,
}

/// How a call ended, for the call record.
#[derive(Debug, Clone)]
struct Outcome {
    reason: String,
    initiator: &'static str,
    sip_status: Option<u16>,
}

impl Outcome {
    fn remote(reason: &str) -> Outcome {
        Outcome {
            reason: reason.to_owned(),
            initiator: "remote",
            sip_status: None,
        }
    }
    fn local(reason: &str) -> Outcome {
        Outcome {
            reason: reason.to_owned(),
            initiator: "local",
            sip_status: None,
        }
    }
    fn rejected(status: u16, reason: &str) -> Outcome {
        Outcome {
            reason: reason.to_owned(),
            initiator: "local",
            sip_status: Some(status),
        }
    }
}

/// Counts the call in `frontdesk_calls_in_progress` while it runs, and in `frontdesk_calls_total`
/// when it ends, also when its task panics (end reason `panic`).
struct CallMetrics {
    end_reason: Option<String>,
}

impl CallMetrics {
    fn start() -> CallMetrics {
        crate::observe::call_started();
        CallMetrics { end_reason: None }
    }
}

impl Drop for CallMetrics {
    fn drop(&mut self) {
        crate::observe::call_ended(self.end_reason.as_deref().unwrap_or("panic"));
    }
}

/// Runs one call to its end. Never panics on network, SDP or model input; every failure is logged
/// with the call's span (which carries the Call-ID) and recorded.
pub async fn run(ctx: Arc<CallContext>, call: IncomingCall, cancel: CancellationToken) {
    let invite_at = tokio::time::Instant::now();
    let mut metrics = CallMetrics::start();
    let IncomingCall {
        call_id,
        from_uri,
        caller_user,
        to_uri,
        called_user,
        offer,
        source,
        transport,
        invite,
    } = call;
    info!(
        from = %Pii(caller_user.as_deref().unwrap_or("anonymous")),
        to = %called_user.as_deref().unwrap_or("-"),
        source = ?source,
        transport = ?transport,
        "incoming call"
    );
    let transport_name = match transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Other => "other",
    };
    let new_call = NewCall {
        call_id: &call_id,
        from_uri: &from_uri,
        to_uri: &to_uri,
        caller: caller_user.as_deref(),
        called: called_user.as_deref(),
        transport: transport_name,
        started_at: Utc::now(),
    };
    let row = match tokio::time::timeout(CALL_ROW_START_TIMEOUT, ctx.store.call_started(&new_call))
        .await
    {
        Ok(Ok(id)) => Some(id),
        Ok(Err(e)) => {
            warn!(error = %e, "cannot record the call now; its row is written when it ends");
            None
        }
        Err(_) => {
            warn!("the database is slow; the call's row is written when it ends");
            None
        }
    };

    let mut record = CallEnd::default();
    let outcome = drive(
        &ctx,
        &call_id,
        invite_at,
        row,
        called_user.as_deref(),
        caller_user.as_deref(),
        source,
        offer,
        invite,
        &cancel,
        &mut record,
    )
    .await;
    record.end_reason = outcome.reason.clone();
    metrics.end_reason = Some(outcome.reason.clone());
    record.end_initiator = outcome.initiator.to_owned();
    if record.sip_status.is_none() {
        record.sip_status = outcome.sip_status;
    }
    info!(
        end_reason = %record.end_reason,
        initiator = %record.end_initiator,
        packets_in = record.packets_in,
        packets_out = record.packets_out,
        concealed_frames = record.concealed_frames,
        "call ended"
    );
    write_call_row(&ctx.store, &new_call, row, &record).await;
}

/// Writes the end of the call (or, when its row could not be inserted at the start, the whole
/// row), retrying while the database is unreachable so the record is not lost; after
/// [`CALL_ROW_ATTEMPTS`] failures it logs an error. Runs in the call's task after the media is
/// gone, so a retry holds no RTP port or session.
async fn write_call_row(store: &Store, call: &NewCall<'_>, row: Option<i64>, record: &CallEnd) {
    let ended_at = Utc::now();
    for attempt in 0..CALL_ROW_ATTEMPTS {
        let written = match row {
            Some(id) => store.call_ended(id, record, ended_at).await,
            None => store.record_call(call, record, ended_at).await.map(drop),
        };
        match written {
            Ok(()) => {
                if attempt > 0 {
                    info!(attempts = attempt + 1, "call record written after retries");
                }
                return;
            }
            Err(e) if attempt + 1 == CALL_ROW_ATTEMPTS => {
                warn!(error = %e, attempt = attempt + 1, "cannot write the call record");
            }
            Err(e) => {
                let delay = CALL_ROW_RETRY_DELAYS[attempt.min(CALL_ROW_RETRY_DELAYS.len() - 1)];
                warn!(error = %e, attempt = attempt + 1, retry_in = ?delay, "cannot write the call record; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
    tracing::error!(
        attempts = CALL_ROW_ATTEMPTS,
        end_reason = %record.end_reason,
        "CALL RECORD LOST: the database stayed unreachable; this call is missing from the calls table"
    );
}

/// Returns the RTP port to the pool when the call is over.
struct PortLease<'a> {
    pool: &'a Mutex<PortPool>,
    port: u16,
}

impl Drop for PortLease<'_> {
    fn drop(&mut self) {
        if let Ok(mut pool) = self.pool.lock() {
            pool.release(self.port);
        }
    }
}

/// The sockets of one call's media: RTP on an even port, RTCP on the odd port above it (RFC 3550
/// §11). RTCP is optional: without it (port taken) frontdesk still works, and rtcp-mux uses the
/// RTP socket. Both apply SRTP at the boundary once [`MediaSockets::use_srtp`] gave them keys.
struct MediaSockets {
    rtp: MediaSocket,
    rtcp: Option<MediaSocket>,
    /// The call's SRTP policy and our key (RFC 4568), for every offer/answer of the call.
    sdes: Sdes,
}

impl MediaSockets {
    /// Applies what offer/answer settled on: SRTP with its keys, or plain RTP.
    fn use_srtp(&self, negotiated: &Negotiated) -> Result<(), Outcome> {
        set_srtp(&self.rtp, self.rtcp.as_ref(), negotiated)
    }
}

/// Keys (or un-keys) a call's sockets for `negotiated` (see [`MediaSocket::set_srtp`]).
fn set_srtp(
    rtp: &MediaSocket,
    rtcp: Option<&MediaSocket>,
    negotiated: &Negotiated,
) -> Result<(), Outcome> {
    let keys = negotiated.srtp.as_ref();
    for socket in std::iter::once(rtp).chain(rtcp) {
        if let Err(e) = socket.set_srtp(keys) {
            warn!(error = %e, "cannot start SRTP; ending the call");
            return Err(Outcome::local("srtp-failed"));
        }
    }
    if let Some(keys) = keys {
        info!(suite = %keys.suite, "media is SRTP");
    }
    Ok(())
}

impl CallContext {
    /// Our media IP for a call: the one of the offer's `c=` family (`IN IP6` / `IN IP4`), else
    /// (no offer: late offer) the first.
    fn media_ip_for(&self, offer: Option<&[u8]>) -> IpAddr {
        let want_v6 = offer.and_then(|o| {
            let text = String::from_utf8_lossy(o);
            text.lines()
                .find_map(|l| l.trim().strip_prefix("c=IN ").map(|r| r.starts_with("IP6")))
        });
        match (want_v6, self.media_ip_alt) {
            (Some(v6), Some(alt)) if self.media_ip.is_ipv6() != v6 && alt.is_ipv6() == v6 => alt,
            _ => self.media_ip,
        }
    }
}

async fn bind_media(
    ctx: &CallContext,
    media_ip: IpAddr,
    sdes: Sdes,
) -> Option<(MediaSockets, PortLease<'_>)> {
    for _ in 0..PORT_BIND_ATTEMPTS {
        let port = ctx.ports.lock().ok()?.allocate()?;
        let lease = PortLease {
            pool: &ctx.ports,
            port,
        };
        let socket = match bind_udp(media_ip, port).await {
            Ok(s) => s,
            Err(e) => {
                debug!(port, error = %e, "RTP port busy, trying another");
                continue;
            }
        };
        let rtcp = match bind_udp(media_ip, port + 1).await {
            Ok(s) => Some(s),
            Err(e) => {
                debug!(port = port + 1, error = %e, "RTCP port busy; this call sends no RTCP unless rtcp-mux");
                None
            }
        };
        let (rtp, rtcp) = (MediaSocket::new(socket), rtcp.map(MediaSocket::new));
        return Some((MediaSockets { rtp, rtcp, sdes }, lease));
    }
    None
}

async fn bind_udp(ip: IpAddr, port: u16) -> std::io::Result<UdpSocket> {
    match UdpSocket::bind(SocketAddr::new(ip, port)).await {
        Ok(s) => Ok(s),
        // The advertised IP is not ours (e.g. a NAT's public address): listen on all interfaces.
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
            let any: IpAddr = if ip.is_ipv6() {
                IpAddr::from([0u16; 8])
            } else {
                IpAddr::from([0u8; 4])
            };
            UdpSocket::bind(SocketAddr::new(any, port)).await
        }
        Err(e) => Err(e),
    }
}

/// What the answered call does, from the dialplan decision.
enum CallPlan {
    /// Talk with an agent profile through a Realtime session.
    Agent(Arc<AgentProfile>),
    /// Speak a message through a Realtime session, then `then`.
    Announcement(Arc<AgentProfile>, AfterMessage),
    /// Play recorded audio, then `then`.
    Recording(Arc<MessageAudio>, AfterMessage),
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    ctx: &CallContext,
    call_id: &str,
    invite_at: tokio::time::Instant,
    row: Option<i64>,
    called: Option<&str>,
    caller: Option<&str>,
    source: Option<SocketAddr>,
    offer: Option<Vec<u8>>,
    invite: PendingInvite,
    cancel: &CancellationToken,
    record: &mut CallEnd,
) -> Outcome {
    // 1. Route, with the plan current at call start (a reload does not affect this call).
    let plan = ctx.dialplan.current();
    let Some(decision) = plan.evaluate(&CallInfo::new(called, caller), Utc::now()) else {
        info!(
            called = called.unwrap_or("-"),
            "no dialplan route for this number"
        );
        invite.reject(404, "no route for this number").await;
        return Outcome::rejected(404, "no-route");
    };
    info!(route = %decision.route_name, action = %decision.action, dialplan = %plan.version(), "routed");
    let recorded_as = match &decision.action {
        Action::Agent(p) => p.name.clone(),
        _ => decision.route_name.clone(),
    };
    if let Some(id) = row {
        if let Err(e) = ctx.store.call_routed(id, &recorded_as).await {
            warn!(error = %e, "cannot record the route");
        }
    }
    let call_plan = match decision.action {
        Action::Reject { code, reason } => {
            invite.reject(code, &reason).await;
            return Outcome::rejected(code, "dialplan-reject");
        }
        Action::Transfer { target } => {
            info!(%target, "redirecting the caller (302)");
            invite.redirect(&target).await;
            return Outcome::rejected(302, "redirected");
        }
        Action::Agent(profile) => CallPlan::Agent(profile),
        Action::Message {
            audio: Some(audio),
            then,
            ..
        } => CallPlan::Recording(audio, then),
        Action::Message {
            text,
            voice,
            model,
            then,
            ..
        } => {
            let text = text.unwrap_or_default();
            let profile = AgentProfile {
                name: decision.route_name.clone(),
                instructions: format!(
                    "You are a telephone announcement. Say exactly the following text, word for word, and nothing else: {text}"
                ),
                voice,
                greeting: text,
                model,
                ..AgentProfile::default()
            };
            CallPlan::Announcement(Arc::new(profile), then)
        }
    };

    // 2. RTP port.
    let media_ip = ctx.media_ip_for(offer.as_deref());
    let (srtp_policy, trunk) = ctx.srtp.for_source(source.map(|s| s.ip()));
    debug!(srtp = %srtp_policy, trunk = trunk.unwrap_or("-"), "SRTP policy");
    let Some((socket, _lease)) = bind_media(ctx, media_ip, Sdes::new(srtp_policy)).await else {
        warn!("no free RTP port; refusing the call");
        invite.reject(503, "no free RTP port").await;
        return Outcome::rejected(503, "no-rtp-port");
    };
    let local_rtp = SocketAddr::new(
        media_ip,
        socket
            .rtp
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default(),
    );

    // 3. SDP offer/answer.
    let session_id = u64::from(rand::random::<u32>());
    let (negotiated, local_sdp) = match &offer {
        Some(offer) => match sdp::answer_sdes(offer, local_rtp, session_id, session_id, &socket.sdes) {
            Ok((n, answer)) => (Some(n), answer),
            Err(e) => {
                info!(error = %e, "unacceptable SDP offer");
                invite.reject(e.sip_status(), &e.to_string()).await;
                return Outcome::rejected(e.sip_status(), &format!("sdp-{}", e.sip_status()));
            }
        },
        None => (None, sdp::offer_sdes(local_rtp, session_id, Some(&socket.sdes))),
    };

    // 4. The dialog exists from here on.
    let (handle, mut events) = match invite.start().await {
        Ok(pair) => pair,
        Err(e) => {
            info!(error = %e, "cannot create the dialog");
            return Outcome::rejected(400, "bad-invite");
        }
    };
    let answered = AnsweredCall {
        negotiated,
        local_sdp,
        session_id,
        local_rtp,
        socket,
        call_id: call_id.to_owned(),
        caller: caller.map(str::to_owned),
        invite_at,
    };
    let outcome = dialog_phase(
        ctx,
        row,
        &call_plan,
        answered,
        &handle,
        &mut events,
        cancel,
        record,
    )
    .await;
    if let Some(status) = outcome.sip_status {
        if status >= 300 {
            if let Err(e) = handle.reject(status, Some(&outcome.reason)) {
                debug!(error = %e, "rejecting the INVITE failed");
            }
        }
        return outcome;
    }
    if outcome.initiator != "local" {
        return outcome;
    }
    // A finished message may be followed by a transfer (REFER, RFC 3515) instead of a BYE.
    if outcome.reason == "message-played" {
        if let CallPlan::Announcement(_, AfterMessage::Transfer { target })
        | CallPlan::Recording(_, AfterMessage::Transfer { target }) = &call_plan
        {
            match handle.refer(target).await {
                Ok(code) if (200..300).contains(&code) => {
                    info!(%target, code, "caller transferred (REFER accepted)");
                    // The transferee calls the target and then ends this dialog; end it ourselves
                    // if it does not.
                    let _ = tokio::time::timeout(Duration::from_secs(5), wait_for_end(&mut events))
                        .await;
                    let _ = events.hangup("transferred").await;
                    return Outcome::local("transferred");
                }
                Ok(code) => warn!(%target, code, "the caller refused the transfer (REFER)"),
                Err(e) => warn!(%target, error = %e, "cannot transfer the caller"),
            }
        }
    }
    if let Err(e) = events.hangup(&outcome.reason).await {
        debug!(error = %e, "BYE failed");
    }
    outcome
}

/// The media side of an answered call.
struct AnsweredCall {
    /// Negotiated media, or `None` until the ACK brings the answer (late offer).
    negotiated: Option<Negotiated>,
    /// Our SDP (answer or offer) for the 200 OK.
    local_sdp: Vec<u8>,
    /// The `o=` session id of our SDP (its first version too).
    session_id: u64,
    /// Our RTP address.
    local_rtp: SocketAddr,
    /// Our RTP and RTCP sockets.
    socket: MediaSockets,
    /// SIP Call-ID (keys the tool-call log and idempotent bookings).
    call_id: String,
    /// The caller's number (P-Asserted-Identity, else From), the default phone for bookings.
    caller: Option<String>,
    /// When the INVITE arrived (for the setup-time metric).
    invite_at: tokio::time::Instant,
}

/// The part of the call with a dialog: open the session, answer, run the media.
#[allow(clippy::too_many_arguments)]
async fn dialog_phase(
    ctx: &CallContext,
    row: Option<i64>,
    call_plan: &CallPlan,
    answered: AnsweredCall,
    handle: &CallHandle,
    events: &mut CallEvents,
    cancel: &CancellationToken,
    record: &mut CallEnd,
) -> Outcome {
    let AnsweredCall {
        negotiated,
        local_sdp,
        session_id,
        local_rtp,
        socket,
        call_id,
        caller,
        invite_at,
    } = answered;
    let profile = match call_plan {
        CallPlan::Agent(p) | CallPlan::Announcement(p, _) => Some(p.clone()),
        CallPlan::Recording(..) => None,
    };
    let ws = match &profile {
        Some(profile) => {
            let opening = Session::connect(&ctx.realtime, &profile.model);
            Some(tokio::select! {
                r = tokio::time::timeout(ctx.connect_timeout, opening) => match r {
                    Ok(Ok(ws)) => {
                        crate::observe::realtime_session("opened");
                        ws
                    }
                    Ok(Err(e)) => {
                        let reason = e.to_string();
                        crate::observe::realtime_session("failed");
                        warn!(%reason, "cannot open a Realtime session; refusing the call with 503");
                        return Outcome::rejected(503, "realtime-unavailable");
                    }
                    Err(_) => {
                        crate::observe::realtime_session("timeout");
                        warn!(timeout = ?ctx.connect_timeout, "Realtime session did not open in time; refusing the call with 503");
                        return Outcome::rejected(503, "realtime-timeout");
                    }
                },
                ev = wait_for_end(events) => return ev,
                _ = cancel.cancelled() => return Outcome::rejected(503, "shutdown"),
            })
        }
        None => None,
    };

    // Answer.
    if let Err(e) = events.answer(local_sdp) {
        warn!(error = %e, "cannot send 200 OK");
        return Outcome::remote("gone-before-answer");
    }
    record.sip_status = Some(200);
    crate::observe::call_answered(invite_at.elapsed());
    let negotiated = match negotiated {
        Some(n) => n,
        None => match wait_for_ack_answer(events, cancel, &socket.sdes).await {
            Ok(n) => n,
            Err(outcome) => return outcome,
        },
    };
    if let Err(outcome) = socket.use_srtp(&negotiated) {
        return outcome;
    }
    let codec = match negotiated.law {
        Law::Mu => "PCMU",
        Law::A => "PCMA",
    };
    if let Some(id) = row {
        if let Err(e) = ctx.store.call_answered(id, codec, Utc::now()).await {
            warn!(error = %e, "cannot record the answer");
        }
    }
    info!(codec, remote_rtp = %negotiated.remote_rtp, local_rtp = %local_rtp, "call answered");

    // Media.
    let media = MediaSession {
        negotiated: &negotiated,
        session_id,
        local_rtp,
        socket,
        handle,
        events,
        cancel,
        record,
        call_id,
        caller,
    };
    match (call_plan, ws, profile) {
        (CallPlan::Recording(audio, _), _, _) => play_recording(media, audio).await,
        (CallPlan::Announcement(..), Some(ws), Some(profile)) => {
            media_loop(ctx, &profile, media, ws, true).await
        }
        (_, Some(ws), Some(profile)) => media_loop(ctx, &profile, media, ws, false).await,
        _ => Outcome::local("internal-error"),
    }
}

/// The media side of an answered call, borrowed by the media loops.
struct MediaSession<'a> {
    negotiated: &'a Negotiated,
    /// Our SDP's session id; re-offers are answered with later versions.
    session_id: u64,
    /// Our RTP address (unchanged by re-offers).
    local_rtp: SocketAddr,
    socket: MediaSockets,
    handle: &'a CallHandle,
    events: &'a mut CallEvents,
    cancel: &'a CancellationToken,
    record: &'a mut CallEnd,
    call_id: String,
    caller: Option<String>,
}

/// Waits until the dialog ends before we answered (CANCEL, or the transaction died).
async fn wait_for_end(events: &mut CallEvents) -> Outcome {
    loop {
        match events.recv().await {
            Some(CallEvent::Cancelled) => {
                info!("caller cancelled before the answer");
                return Outcome {
                    reason: "cancelled".into(),
                    initiator: "remote",
                    sip_status: Some(487),
                };
            }
            Some(CallEvent::Bye) => return Outcome::remote("remote-bye"),
            Some(CallEvent::Terminated { reason }) => return Outcome::remote(reason),
            Some(_) => continue,
            None => return Outcome::remote("dialog-gone"),
        }
    }
}

/// Late offer: our offer went in the 200 OK, the caller's answer comes in the ACK (RFC 3264 §5).
async fn wait_for_ack_answer(
    events: &mut CallEvents,
    cancel: &CancellationToken,
    sdes: &Sdes,
) -> Result<Negotiated, Outcome> {
    let wait = async {
        loop {
            match events.recv().await {
                Some(CallEvent::Ack {
                    answer: Some(answer),
                }) => {
                    return sdp::accept_answer_sdes(&answer, Some(sdes)).map_err(|e| {
                        warn!(error = %e, "unacceptable SDP answer in the ACK");
                        Outcome::local("bad-sdp-answer")
                    })
                }
                Some(CallEvent::Ack { answer: None }) => {
                    warn!("the ACK carried no SDP answer to our offer");
                    return Err(Outcome::local("no-sdp-answer"));
                }
                Some(CallEvent::Bye) => return Err(Outcome::remote("remote-bye")),
                Some(CallEvent::Cancelled) => return Err(Outcome::remote("cancelled")),
                Some(CallEvent::Terminated { reason }) => return Err(Outcome::remote(reason)),
                Some(CallEvent::SessionExpired) => return Err(Outcome::local("session-expired")),
                Some(_) => continue,
                None => return Err(Outcome::remote("dialog-gone")),
            }
        }
    };
    tokio::select! {
        r = tokio::time::timeout(ACK_TIMEOUT, wait) => r.unwrap_or_else(|_| Err(Outcome::local("ack-timeout"))),
        _ = cancel.cancelled() => Err(Outcome::local("shutdown")),
    }
}

/// The Realtime session configuration of a profile. Announcements do not listen: the caller's
/// speech neither starts nor interrupts a response.
fn session_settings(profile: &AgentProfile, law: Law, announcement: bool) -> SessionSettings {
    let mut instructions = profile.instructions.clone();
    if let Some(language) = &profile.language {
        instructions.push_str(&format!(
            "\n\nSpeak in this language unless the caller uses another one: {language}."
        ));
    }
    SessionSettings {
        model: profile.model.clone(),
        instructions,
        voice: profile.voice.clone(),
        law,
        turn_detection: TurnDetection {
            threshold: profile.vad.threshold,
            prefix_padding_ms: profile.vad.prefix_padding_ms,
            silence_duration_ms: profile.vad.silence_duration_ms,
            create_response: !announcement,
            interrupt_response: !announcement,
        },
        transcription_model: profile.transcription_model.clone(),
        tools: Vec::new(),
    }
}

/// Runs a call's media with a Realtime session until the call ends. With `announcement`, the
/// call ends (`message-played`) once the first response has been played out completely.
async fn media_loop(
    ctx: &CallContext,
    profile: &AgentProfile,
    media: MediaSession<'_>,
    mut ws: Session,
    announcement: bool,
) -> Outcome {
    let MediaSession {
        negotiated,
        session_id,
        local_rtp,
        socket:
            MediaSockets {
                rtp: socket,
                rtcp: rtcp_socket,
                sdes,
            },
        handle,
        events,
        cancel,
        record,
        call_id,
        caller,
    } = media;
    // Re-INVITEs and UPDATEs change these (hold, address, codec).
    let mut negotiated: Negotiated = negotiated.clone();
    let mut session_version = session_id;
    let tool_ctx = ToolContext::new(
        ctx.store.clone(),
        call_id,
        caller,
        profile.calendar.clone().unwrap_or_default(),
    );
    let (tool_tx, mut tool_rx) = mpsc::channel::<(String, String)>(TOOL_RESULTS_CAPACITY);
    let now = tokio::time::Instant::now().into_std();
    let params = MediaParams {
        law: negotiated.law,
        payload_type: negotiated.payload_type,
        ssrc: rand::random(),
        first_seq: rand::random(),
        first_ts: rand::random(),
        telephone_event_pt: negotiated.telephone_event_pt,
        rtp_timeout: Some(ctx.rtp_timeout),
        send_silence: ctx.send_silence,
    };
    let mut settings = session_settings(profile, negotiated.law, announcement);
    if !announcement && ctx.calendar_tools {
        let allowed: Vec<String> = profile.tools.iter().map(|t| t.name().to_owned()).collect();
        settings.tools = tools::definitions(&allowed);
    }
    if !announcement {
        let allowed: Vec<String> = profile.tools.iter().map(|t| t.name().to_owned()).collect();
        let targets: Vec<String> = profile.transfers.keys().cloned().collect();
        settings
            .tools
            .extend(tools::call_control::definitions(&allowed, &targets));
    }
    let mut control = CallControl::default();
    let (refer_tx, mut refer_rx) = mpsc::channel::<Result<u16, String>>(2);
    let mut bridge = Bridge::new(
        now,
        &params,
        ws.capabilities(),
        settings.turn_detection.interrupt_response,
    );
    bridge.start_session(&settings, &profile.greeting);
    let mut remote = negotiated.remote_rtp;
    let mut latched = false;
    let mut buf = vec![0u8; RTP_READ_BUFFER];
    let mut rtcp_buf = vec![0u8; RTP_READ_BUFFER];
    let sleep = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(sleep);
    let max_duration = tokio::time::sleep(profile.max_duration);
    tokio::pin!(max_duration);

    let outcome = loop {
        // Drain: client events first, then due RTP. Events are fed into the WebSocket's write
        // buffer and flushed once per loop turn (one write for all of them).
        let mut ws_failed = None;
        let mut fed = false;
        while let Some(command) = bridge.poll_ws() {
            if let Err(e) = ws.feed(&command).await {
                ws_failed = Some(e.to_string());
                break;
            }
            fed = true;
        }
        if fed && ws_failed.is_none() {
            match ws.flush().await {
                Ok(()) => bridge.ws_written(tokio::time::Instant::now().into_std()),
                Err(e) => ws_failed = Some(e.to_string()),
            }
        }
        if let Some(e) = ws_failed {
            warn!(error = %e, "Realtime session failed; hanging up");
            break Outcome::local("realtime-failed");
        }
        while let Some(req) = bridge.poll_tool_request() {
            if req.name == tools::call_control::TRANSFER_CALL {
                control.start_transfer(&mut bridge, profile, handle, &refer_tx, req);
                continue;
            }
            if req.name == tools::call_control::END_CALL {
                control.start_end(&mut bridge, &req);
                continue;
            }
            // Tools run beside the media loop; their results come back on `tool_rx`.
            let ctx = tool_ctx.clone();
            let tx = tool_tx.clone();
            tokio::spawn(async move {
                let outcome = tools::call(&ctx, &req.name, &req.arguments).await;
                if let Some(error) = &outcome.error {
                    info!(tool = %req.name, %error, ms = outcome.duration.as_millis(), "tool failed");
                } else {
                    info!(tool = %req.name, ms = outcome.duration.as_millis(), "tool done");
                }
                let _ = tx.send((req.call_id, outcome.output)).await;
            });
        }
        let now = tokio::time::Instant::now().into_std();
        while let Some(t) = bridge.poll_rtp(now) {
            if negotiated.should_send() {
                if let Err(e) = socket.send_to(&t.packet, remote).await {
                    debug!(error = %e, %remote, "RTP send failed");
                }
            }
        }
        while let Some(report) = bridge.poll_rtcp(now) {
            // RTCP goes to the odd port above the caller's RTP port, or to the RTP port itself
            // with rtcp-mux (RFC 5761).
            let sent = if negotiated.rtcp_mux {
                socket.send_to(&report, remote).await
            } else if let Some(rtcp) = &rtcp_socket {
                rtcp.send_to(
                    &report,
                    SocketAddr::new(remote.ip(), remote.port().wrapping_add(1)),
                )
                .await
            } else {
                Ok(0)
            };
            if let Err(e) = sent {
                debug!(error = %e, "RTCP send failed");
            }
        }
        if let Some(reason) = bridge.poll_hangup() {
            break Outcome::local(reason);
        }
        let mut dtmf_end = None;
        while let Some(key) = bridge.poll_digit() {
            match profile.dtmf_action(key) {
                Some(DtmfAction::Hangup) => {
                    info!(key = %Pii(key), "the caller's key ends the call");
                    bridge.note(now, &format!("pressed {key}: hang up"));
                    dtmf_end = Some(Outcome::local("dtmf-hangup"));
                }
                Some(DtmfAction::Transfer { target, .. }) => {
                    info!(key = %Pii(key), %target, "the caller's key transfers the call");
                    bridge.note(now, &format!("pressed {key}: transfer to {target}"));
                    dtmf_end = Some(match handle.refer(target).await {
                        Ok(code) if (200..300).contains(&code) => Outcome::local("transferred"),
                        Ok(code) => {
                            warn!(%target, code, "the transfer was refused");
                            Outcome::local("transfer-failed")
                        }
                        Err(e) => {
                            warn!(%target, error = %e, "cannot transfer the call");
                            Outcome::local("transfer-failed")
                        }
                    });
                }
                Some(DtmfAction::Forward) | None => bridge.forward_digit(now, key),
            }
            if dtmf_end.is_some() {
                break;
            }
        }
        if let Some(outcome) = dtmf_end {
            break outcome;
        }
        if let Some(end) = control.ending_due(&bridge) {
            break end;
        }
        if announcement && bridge.responses_done() > 0 && bridge.playout_idle() {
            info!("message played");
            break Outcome::local("message-played");
        }
        let transfer_deadline = control.transfer_deadline();
        match bridge.poll_timeout() {
            Some(deadline) => sleep.as_mut().reset(deadline.into()),
            None => sleep
                .as_mut()
                .reset(tokio::time::Instant::now() + Duration::from_secs(3600)),
        }

        tokio::select! {
            _ = cancel.cancelled() => break Outcome::local("shutdown"),
            Some((call_id, output)) = tool_rx.recv() => bridge.handle_tool_result(&call_id, &output),
            _ = &mut max_duration => {
                info!(max = ?profile.max_duration, "maximum call duration reached; hanging up");
                break Outcome::local("max-duration");
            }
            ev = events.recv() => match ev {
                Some(CallEvent::Bye) => {
                    info!("caller hung up");
                    break Outcome::remote("remote-bye");
                }
                Some(CallEvent::Cancelled) => break Outcome::remote("cancelled"),
                Some(CallEvent::Terminated { reason }) => break Outcome::remote(reason),
                Some(CallEvent::Info { content_type, body }) => {
                    match crate::media::dtmf::parse_dtmf_relay(&body) {
                        Some(key) => bridge.handle_info_digit(key),
                        None => debug!(content_type = content_type.as_deref().unwrap_or("-"), bytes = body.len(), "SIP INFO without a key ignored"),
                    }
                }
                Some(CallEvent::Ack { .. }) => {}
                Some(CallEvent::Offer { sdp: offer }) => {
                    match sdp::answer_reoffer_sdes(&offer, local_rtp, session_id, session_version + 1, negotiated.law, &sdes, negotiated.srtp.is_some()) {
                        Ok((new, answer)) => {
                            session_version += 1;
                            events.answer_offer(Ok(answer)).await;
                            if let Err(end) = set_srtp(&socket, rtcp_socket.as_ref(), &new) {
                                break end;
                            }
                            apply_media_change(&mut bridge, &mut negotiated, new, &mut remote, &mut latched, &settings, ctx.rtp_timeout);
                        }
                        Err(e) => {
                            info!(error = %e, "unacceptable re-offer; answering 488 and keeping the call as it is");
                            events.answer_offer(Err(488)).await;
                        }
                    }
                }
                Some(CallEvent::Answer { sdp: answer }) => match sdp::accept_answer_sdes(&answer, Some(&sdes)) {
                    Ok(new) if set_srtp(&socket, rtcp_socket.as_ref(), &new).is_err() => break Outcome::local("srtp-failed"),
                    Ok(new) => apply_media_change(&mut bridge, &mut negotiated, new, &mut remote, &mut latched, &settings, ctx.rtp_timeout),
                    Err(e) => warn!(error = %e, "unacceptable SDP answer in the re-INVITE's ACK; media unchanged"),
                },
                Some(CallEvent::ReferNotify { status, terminated }) => {
                    if let Some(end) = control.refer_progress(&mut bridge, status, terminated) {
                        // The NOTIFY's 200 leaves from the dialog's own task: let it go out
                        // before our BYE.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        break end;
                    }
                }
                Some(CallEvent::SessionExpired) => break Outcome::local("session-expired"),
                None => break Outcome::remote("dialog-gone"),
            },
            r = recv_opt(rtcp_socket.as_ref(), &mut rtcp_buf) => {
                if let Ok((n, _)) = r {
                    let now = tokio::time::Instant::now().into_std();
                    bridge.handle_rtp(now, &rtcp_buf[..n]);
                }
            }
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    let now = tokio::time::Instant::now().into_std();
                    caller_rtp(&mut bridge, now, &buf[..n], from, &mut remote, &mut latched);
                }
                Err(e) => debug!(error = %e, "RTP receive error"),
            },
            ev = ws.next_event() => match ev {
                Ok(ModelEvent::SessionClosed { reason }) => {
                    warn!(close = %reason, "Realtime session closed by the server; hanging up");
                    break Outcome::local("realtime-closed");
                }
                Ok(event) => {
                    let now = tokio::time::Instant::now().into_std();
                    bridge.handle_model_event(now, event);
                    if let Some(latency) = bridge.take_first_audio_latency() {
                        crate::observe::model_first_audio(latency);
                    }
                }
                Err(e) => {
                    warn!(error = %e, "Realtime connection failed; hanging up");
                    break Outcome::local("realtime-failed");
                }
            },
            Some(result) = refer_rx.recv() => control.refer_answered(&mut bridge, result),
            _ = sleep_until_opt(transfer_deadline) => control.transfer_timed_out(&mut bridge),
            _ = &mut sleep => {
                // Caller packets that arrived while this task was not running go first, so a
                // stall of this task is not taken for a silent caller.
                while let Ok((n, from)) = socket.try_recv_from(&mut buf) {
                    let now = tokio::time::Instant::now().into_std();
                    caller_rtp(&mut bridge, now, &buf[..n], from, &mut remote, &mut latched);
                }
                let now = tokio::time::Instant::now().into_std();
                bridge.handle_timeout(now);
            }
        }
    };

    let stats = bridge.stats();
    crate::observe::call_media(&crate::observe::CallMedia {
        barge_ins: stats.barge_ins,
        truncates: stats.truncates,
        lost: stats.inbound.lost,
        late: stats.inbound.late,
        concealed: stats.inbound.concealed_frames,
        jitter_ms: stats.inbound.jitter_ms,
        pacing_p99_ms: stats.pacing.p99_ms,
    });
    let usage = bridge.usage();
    record.model = Some(profile.model.clone());
    record.cost_usd = match ctx.prices.lookup(&profile.model) {
        Some((_, price)) => Some(usage.cost_usd(price)),
        None => {
            warn!(model = %profile.model, "no price for this model in [pricing]; the call's cost is not estimated");
            None
        }
    };
    record.usage = Some(usage);
    if ctx.store_transcripts {
        let now = tokio::time::Instant::now().into_std();
        bridge.note(now, &format!("call ended: {}", outcome.reason));
        record.turns = bridge.finish_transcript();
    }
    record.packets_in = stats.inbound.received;
    record.packets_out = stats.outbound.packets_sent;
    record.concealed_frames = stats.inbound.concealed_frames;
    record.media = Some(MediaRecord {
        lost: stats.inbound.lost,
        late: stats.inbound.late,
        duplicated: stats.inbound.duplicates,
        reordered: stats.inbound.reordered,
        jitter_ms: stats.inbound.jitter_ms,
        max_depth_ms: stats.inbound.max_depth_ms,
        remote_fraction_lost: stats.remote_report.map(|r| r.fraction_lost),
        remote_cumulative_lost: stats.remote_report.map(|r| i64::from(r.cumulative_lost)),
        remote_jitter_ms: stats.remote_report.map(|r| r.jitter_ms),
        dtmf_digits: stats.dtmf_digits,
        barge_ins: stats.barge_ins,
    });
    info!(
        appends = stats.appends,
        barge_ins = stats.barge_ins,
        truncates = stats.truncates,
        server_errors = stats.server_errors,
        late = stats.inbound.late,
        duplicates = stats.inbound.duplicates,
        lost = stats.inbound.lost,
        concealed = stats.inbound.concealed_frames,
        clock_frames = stats.inbound.clock_frames,
        reorder_window_ms = stats.inbound.max_reorder_window_ms,
        jitter_ms = format!("{:.1}", stats.inbound.jitter_ms),
        max_depth_ms = stats.inbound.max_depth_ms,
        dtmf = stats.dtmf_digits,
        packets_out = stats.outbound.packets_sent,
        latency_frames = stats.latency.samples,
        latency_p50_ms = format!("{:.2}", stats.latency.p50_ms),
        latency_p99_ms = format!("{:.2}", stats.latency.p99_ms),
        latency_max_ms = format!("{:.2}", stats.latency.max_ms),
        pacing_p50_ms = format!("{:.2}", stats.pacing.p50_ms),
        pacing_p99_ms = format!("{:.2}", stats.pacing.p99_ms),
        pacing_max_ms = format!("{:.2}", stats.pacing.max_ms),
        input_tokens = usage.input_tokens(),
        output_tokens = usage.output_tokens(),
        cost_usd = record
            .cost_usd
            .map(|c| format!("{c:.4}"))
            .unwrap_or_default(),
        turns = record.turns.len(),
        "media summary"
    );
    let _ = tokio::time::timeout(WS_CLOSE_TIMEOUT, ws.close()).await;
    outcome
}

/// Feeds one datagram from the caller's RTP port; latches our RTP to its source address
/// (symmetric RTP) once it is valid RTP.
fn caller_rtp(
    bridge: &mut Bridge,
    now: std::time::Instant,
    datagram: &[u8],
    from: SocketAddr,
    remote: &mut SocketAddr,
    latched: &mut bool,
) {
    if let RtpOutcome::Rtp(_) = bridge.handle_rtp(now, datagram) {
        if from != *remote {
            if !*latched {
                info!(sdp = %remote, actual = %from, "latched RTP to the caller's source address");
            }
            *remote = from;
        }
        *latched = true;
    }
}

/// Converts recorded message audio to the call's G.711 law.
fn recording_bytes(samples: &AudioSamples, law: Law) -> Vec<u8> {
    use crate::media::g711;
    match (samples, law) {
        (AudioSamples::Mulaw(b), Law::Mu) | (AudioSamples::Alaw(b), Law::A) => b.to_vec(),
        (AudioSamples::Mulaw(b), Law::A) => b
            .iter()
            .map(|&x| g711::linear_to_alaw(g711::ulaw_to_linear(x)))
            .collect(),
        (AudioSamples::Alaw(b), Law::Mu) => b
            .iter()
            .map(|&x| g711::linear_to_ulaw(g711::alaw_to_linear(x)))
            .collect(),
        (AudioSamples::Linear16(s), Law::Mu) => {
            s.iter().map(|&x| g711::linear_to_ulaw(x)).collect()
        }
        (AudioSamples::Linear16(s), Law::A) => s.iter().map(|&x| g711::linear_to_alaw(x)).collect(),
    }
}

/// Plays a recorded message as paced RTP (no Realtime session), then ends with `message-played`.
async fn play_recording(media: MediaSession<'_>, audio: &MessageAudio) -> Outcome {
    let MediaSession {
        negotiated,
        socket: MediaSockets { rtp: socket, .. },
        events,
        cancel,
        record,
        ..
    } = media;
    let now = tokio::time::Instant::now().into_std();
    let mut pacer = PlayoutPacer::new(
        negotiated.law,
        negotiated.payload_type,
        rand::random(),
        rand::random(),
        rand::random(),
        now,
    );
    pacer.push(now, 1, &recording_bytes(&audio.samples, negotiated.law));
    info!(file = %audio.path.display(), duration = ?audio.duration(), "playing the message");
    let mut buf = vec![0u8; RTP_READ_BUFFER];
    let mut remote = negotiated.remote_rtp;
    let outcome = loop {
        let now = tokio::time::Instant::now().into_std();
        while let Some(t) = pacer.poll_transmit(now) {
            if negotiated.should_send() {
                if let Err(e) = socket.send_to(&t.packet, remote).await {
                    debug!(error = %e, %remote, "RTP send failed");
                }
            }
        }
        let Some(deadline) = pacer.poll_timeout() else {
            break Outcome::local("message-played");
        };
        tokio::select! {
            _ = cancel.cancelled() => break Outcome::local("shutdown"),
            _ = tokio::time::sleep_until(deadline.into()) => {}
            ev = events.recv() => match ev {
                Some(CallEvent::Bye) => break Outcome::remote("remote-bye"),
                Some(CallEvent::Cancelled) => break Outcome::remote("cancelled"),
                Some(CallEvent::Terminated { reason }) => break Outcome::remote(reason),
                Some(CallEvent::SessionExpired) => break Outcome::local("session-expired"),
                Some(_) => {}
                None => break Outcome::remote("dialog-gone"),
            },
            r = socket.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    record.packets_in += 1;
                    if crate::media::rtp::parse(&buf[..n]).is_ok() {
                        remote = from;
                    }
                }
            }
        }
    };
    record.packets_out = pacer.stats().packets_sent;
    outcome
}

/// Receives on an optional socket; pends forever without one (so `select!` ignores the branch).
async fn recv_opt(
    socket: Option<&MediaSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Applies a re-negotiated audio stream (re-INVITE/UPDATE offer, or the answer in a re-INVITE's
/// ACK): hold and resume, a new RTP address, a codec change.
fn apply_media_change(
    bridge: &mut Bridge,
    current: &mut Negotiated,
    new: Negotiated,
    remote: &mut SocketAddr,
    latched: &mut bool,
    settings: &SessionSettings,
    rtp_timeout: Duration,
) {
    let now = tokio::time::Instant::now().into_std();
    let held = !new.should_send() || !new.expects_media();
    let was_held = !current.should_send() || !current.expects_media();
    if held && !was_held {
        info!(direction = new.direction.as_str(), remote_rtp = %new.remote_rtp, "call put on hold; RTP paused");
    } else if !held && was_held {
        info!(direction = new.direction.as_str(), remote_rtp = %new.remote_rtp, "call resumed");
    }
    if new.remote_rtp != current.remote_rtp && !new.remote_rtp.ip().is_unspecified() {
        info!(from = %current.remote_rtp, to = %new.remote_rtp, "the caller's RTP address changed");
        *remote = new.remote_rtp;
        *latched = false;
    }
    if new.law != current.law || new.payload_type != current.payload_type {
        info!(from = ?current.law, to = ?new.law, payload_type = new.payload_type, "codec changed by re-offer");
        bridge.change_codec(
            now,
            new.law,
            new.payload_type,
            new.telephone_event_pt,
            settings,
        );
    }
    // A held call may be silent for as long as the hold lasts.
    bridge.set_rtp_timeout(now, (!held).then_some(rtp_timeout));
    *current = new;
}

/// How long the transferee has to report the outcome of a transfer (NOTIFY sipfrag).
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the goodbye after `end_call` before hanging up anyway.
const END_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A `transfer_call` in progress.
struct PendingTransfer {
    tool_call_id: String,
    target: String,
    deadline: tokio::time::Instant,
}

/// An `end_call` waiting for the goodbye to be played.
struct PendingEnd {
    reason: String,
    responses_needed: u64,
    deadline: tokio::time::Instant,
}

/// The state of the model's call-control functions (`transfer_call`, `end_call`).
#[derive(Default)]
struct CallControl {
    transfer: Option<PendingTransfer>,
    end: Option<PendingEnd>,
}

impl CallControl {
    fn start_transfer(
        &mut self,
        bridge: &mut Bridge,
        profile: &AgentProfile,
        handle: &CallHandle,
        results: &mpsc::Sender<Result<u16, String>>,
        req: super::core::ToolRequest,
    ) {
        use tools::call_control::{failure, string_argument};
        let target = string_argument(&req.arguments, "target").unwrap_or_default();
        let names: Vec<&String> = profile.transfers.keys().collect();
        let Some(uri) = profile.transfers.get(&target) else {
            info!(%target, "transfer_call to an unknown target");
            let out = failure(
                "unknown_target",
                &format!(
                    "There is no transfer target called {target:?}. Use one of the listed names."
                ),
                Some(("available", serde_json::json!(names))),
            );
            bridge.handle_tool_result(&req.call_id, &out);
            return;
        };
        if self.transfer.is_some() {
            let out = failure(
                "transfer_in_progress",
                "A transfer is already in progress; wait for its result.",
                None,
            );
            bridge.handle_tool_result(&req.call_id, &out);
            return;
        }
        info!(%target, %uri, "the model transfers the call (REFER)");
        let handle = handle.clone();
        let results = results.clone();
        let uri = uri.clone();
        tokio::spawn(async move {
            let r = handle.refer(&uri).await.map_err(|e| e.to_string());
            let _ = results.send(r).await;
        });
        self.transfer = Some(PendingTransfer {
            tool_call_id: req.call_id,
            target,
            deadline: tokio::time::Instant::now() + TRANSFER_TIMEOUT,
        });
    }

    fn transfer_deadline(&self) -> Option<tokio::time::Instant> {
        self.transfer.as_ref().map(|t| t.deadline)
    }

    fn fail_transfer(&mut self, bridge: &mut Bridge, why: &str) {
        if let Some(t) = self.transfer.take() {
            warn!(target = %t.target, %why, "transfer failed; the call continues");
            let out = tools::call_control::failure(
                "transfer_failed",
                &format!("The transfer to {} failed ({why}). The caller is still on the line: apologise and offer to help or take a message.", t.target),
                None,
            );
            bridge.handle_tool_result(&t.tool_call_id, &out);
        }
    }

    /// The final response to our REFER.
    fn refer_answered(&mut self, bridge: &mut Bridge, result: Result<u16, String>) {
        match result {
            Ok(code) if (200..300).contains(&code) => {
                if let Some(t) = &self.transfer {
                    info!(target = %t.target, code, "REFER accepted; waiting for the transfer's outcome (NOTIFY)");
                }
            }
            Ok(code) => self.fail_transfer(
                bridge,
                &format!("the transfer request was refused with {code}"),
            ),
            Err(e) => self.fail_transfer(
                bridge,
                &format!("the transfer request could not be sent: {e}"),
            ),
        }
    }

    /// A NOTIFY sipfrag about our REFER: a final 2xx ends the call (`transferred`).
    fn refer_progress(
        &mut self,
        bridge: &mut Bridge,
        status: u16,
        terminated: bool,
    ) -> Option<Outcome> {
        let target = self.transfer.as_ref()?.target.clone();
        info!(%target, status, terminated, "transfer progress (NOTIFY)");
        if (200..300).contains(&status) {
            self.transfer = None;
            info!(%target, "caller transferred");
            return Some(Outcome::local("transferred"));
        }
        if status >= 300 {
            self.fail_transfer(bridge, &format!("the target answered {status}"));
        } else if terminated {
            self.fail_transfer(bridge, "the transfer ended without a final answer");
        }
        None
    }

    fn transfer_timed_out(&mut self, bridge: &mut Bridge) {
        self.fail_transfer(bridge, "no answer from the phone system within 10 seconds");
    }

    /// `end_call`: answer the function at once, then wait for the goodbye response to be played.
    fn start_end(&mut self, bridge: &mut Bridge, req: &super::core::ToolRequest) {
        let reason = tools::call_control::string_argument(&req.arguments, "reason")
            .map(|r| {
                r.chars()
                    .filter(|c| !c.is_control())
                    .take(80)
                    .collect::<String>()
            })
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "conversation over".to_owned());
        info!(%reason, "the model ends the call after its goodbye");
        // The response that carried the call (if still running) finishes first, then the one
        // that answers the tool output: that one is the goodbye.
        let needed = bridge.responses_done() + 1 + u64::from(bridge.response_in_progress());
        bridge.handle_tool_result(
            &req.call_id,
            &serde_json::json!({"ok": true, "message": "The call ends after your reply. Say a short goodbye now."}).to_string(),
        );
        self.end = Some(PendingEnd {
            reason,
            responses_needed: needed,
            deadline: tokio::time::Instant::now() + END_CALL_TIMEOUT,
        });
    }

    /// The outcome once the goodbye has been played completely (or the wait timed out).
    fn ending_due(&self, bridge: &Bridge) -> Option<Outcome> {
        let end = self.end.as_ref()?;
        let played = bridge.responses_done() >= end.responses_needed && bridge.playout_idle();
        if played || tokio::time::Instant::now() >= end.deadline {
            if !played {
                warn!("the goodbye did not finish in time; hanging up");
            }
            info!(reason = %end.reason, "goodbye played; hanging up");
            return Some(Outcome::local(&format!("end_call: {}", end.reason)));
        }
        None
    }
}
