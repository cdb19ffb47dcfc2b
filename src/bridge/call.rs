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
//!
//! This file is the call's flow; `setup.rs` binds the media sockets and builds the model plan,
//! `pump.rs` runs the answered call, `record.rs` fills and writes the call record.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::core::{CallPlan, CallSetup, MediaParams, RolloverPolicy};
use super::end::{Cause, EndReason};
use super::record::{finish_record, write_call_row, CallMetrics, CALL_ROW_START_TIMEOUT};
use super::setup::{bind_media, model_plan, plan_settings, recording_bytes, MediaSockets};
use crate::dialplan::{
    Action, AfterMessage, AgentProfile, AudioSamples, CallInfo, DialplanHandle, MessageAudio,
};
use crate::media::g711::Law;
use crate::media::ports::PortPool;
use crate::realtime::failover::{self, Endpoints};
use crate::realtime::protocol::SessionSettings;
use crate::sdp::{self, sdes::Sdes, Negotiated};
use crate::sip::{CallEvent, CallEvents, CallHandle, IncomingCall, PendingInvite};
use crate::store::{CallEnd, NewCall, Store};
use crate::telemetry::Pii;
use crate::tools::ToolContext;

/// Longest wait for the ACK of our 2xx when we need its SDP answer (late offer): 64·T1 (RFC 3261 §13.3.1.4).
const ACK_TIMEOUT: Duration = Duration::from_secs(32);
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
    /// Where model sessions are opened: the configured endpoints, tried in order (an agent may
    /// name its own subset and order).
    pub realtime: Endpoints,
    /// How long opening a session may take, over all endpoints tried, before the INVITE is
    /// refused with 503 (or the agent's `on_model_failure` runs).
    pub connect_timeout: Duration,
    /// Where `take_message` writes the callers' recordings.
    pub messages_dir: std::path::PathBuf,
    /// What an answered call does when its model session ends.
    pub rollover: RolloverSettings,
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

/// The built-in filler recording ("One moment, please.", espeak-ng + sox, 8 kHz mono WAV).
const DEFAULT_FILLER_WAV: &[u8] = include_bytes!("../../dialplans/sounds/one-moment.wav");

/// Session rollover settings of every call (`[realtime] reconnect_window_secs`,
/// `session_max_secs`, `filler_after_ms`, `filler_file`); see [`RolloverPolicy`].
#[derive(Debug, Clone)]
pub struct RolloverSettings {
    /// Wait this long for a replacement session (default 10 s).
    pub reconnect_window: Duration,
    /// Replace a session after this long (default 3300 s; `None`: never).
    pub session_max: Option<Duration>,
    /// Play the filler after this long without a session (default 1500 ms).
    pub filler_after: Duration,
    /// The filler recording.
    pub filler: crate::dialplan::MessageAudio,
    /// `filler` as G.711 bytes, µ-law then A-law, converted once and shared by every call (a
    /// copy per call was ~16 KB of each call's memory with the built-in 2 s recording).
    filler_bytes: [Arc<[u8]>; 2],
}

impl RolloverSettings {
    /// Reads the `[realtime]` keys; the filler file is loaded now.
    ///
    /// # Errors
    /// The filler file cannot be read or decoded (path and reason in the message).
    pub fn from_file(file: &crate::config::RealtimeFile) -> anyhow::Result<RolloverSettings> {
        let default = RolloverPolicy::default();
        let filler = match &file.filler_file {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|e| {
                    anyhow::anyhow!("[realtime] filler_file {}: {e}", path.display())
                })?;
                crate::dialplan::MessageAudio::decode(path, &bytes).map_err(|e| {
                    anyhow::anyhow!("[realtime] filler_file {}: {}", path.display(), e.message)
                })?
            }
            None => Self::default_filler(),
        };
        Ok(RolloverSettings {
            reconnect_window: file
                .reconnect_window_secs
                .map_or(default.reconnect_window, Duration::from_secs),
            session_max: match file.session_max_secs {
                Some(0) => None,
                Some(s) => Some(Duration::from_secs(s)),
                None => default.session_max,
            },
            filler_after: file
                .filler_after_ms
                .map_or(default.filler_after, Duration::from_millis),
            filler_bytes: Self::filler_bytes(&filler),
            filler,
        })
    }

    fn filler_bytes(filler: &crate::dialplan::MessageAudio) -> [Arc<[u8]>; 2] {
        [Law::Mu, Law::A].map(|law| recording_bytes(&filler.samples, law).into())
    }

    fn default_filler() -> crate::dialplan::MessageAudio {
        let path = std::path::Path::new("one-moment.wav");
        crate::dialplan::MessageAudio::decode(path, DEFAULT_FILLER_WAV).unwrap_or(
            crate::dialplan::MessageAudio {
                path: path.to_owned(),
                samples: AudioSamples::Linear16(Vec::new().into()),
            },
        )
    }

    /// The core's policy for a call in `law`.
    pub(super) fn policy(&self, law: Law) -> RolloverPolicy {
        RolloverPolicy {
            reconnect_window: self.reconnect_window,
            session_max: self.session_max,
            filler_after: self.filler_after,
            filler: Arc::clone(match law {
                Law::Mu => &self.filler_bytes[0],
                Law::A => &self.filler_bytes[1],
            }),
            on_failure: None,
        }
    }
}

impl Default for RolloverSettings {
    fn default() -> RolloverSettings {
        let p = RolloverPolicy::default();
        let filler = Self::default_filler();
        RolloverSettings {
            reconnect_window: p.reconnect_window,
            session_max: p.session_max,
            filler_after: p.filler_after,
            filler_bytes: Self::filler_bytes(&filler),
            filler,
        }
    }
}

/// How a call ended, for the call record: why, and the final status of a refused INVITE.
#[derive(Debug, Clone)]
struct Outcome {
    end: EndReason,
    sip_status: Option<u16>,
}

impl Outcome {
    fn ended(end: EndReason) -> Outcome {
        Outcome {
            end,
            sip_status: None,
        }
    }
    /// We refused the INVITE with `status`.
    fn rejected(status: u16, cause: Cause) -> Outcome {
        Outcome {
            end: EndReason::local(cause),
            sip_status: Some(status),
        }
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
        local,
        invite,
    } = call;
    info!(
        from = %Pii(caller_user.as_deref().unwrap_or("anonymous")),
        to = %called_user.as_deref().unwrap_or("-"),
        source = ?source,
        transport = ?transport,
        "incoming call"
    );
    let transport_name = transport.as_str();
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
        transport,
        local,
        offer,
        invite,
        &cancel,
        &mut record,
    )
    .await;
    record.end_reason = outcome.end.to_string();
    metrics.end_reason = Some(record.end_reason.clone());
    record.end_initiator = outcome.end.initiator.as_str().to_owned();
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

/// What the answered call does, from the dialplan decision.
enum Plan {
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
    transport: crate::sip::Transport,
    local: Option<SocketAddr>,
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
        return Outcome::rejected(404, Cause::NoRoute);
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
            return Outcome::rejected(code, Cause::DialplanReject);
        }
        Action::Transfer { target } => {
            info!(%target, "redirecting the caller (302)");
            invite.redirect(&target).await;
            return Outcome::rejected(302, Cause::Redirected);
        }
        Action::Agent(profile) => Plan::Agent(profile),
        Action::Message {
            audio: Some(audio),
            then,
            ..
        } => Plan::Recording(audio, then),
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
            Plan::Announcement(Arc::new(profile), then)
        }
    };

    // 2. RTP port.
    let media_ip = ctx.media_ip_for(offer.as_deref());
    let (srtp_policy, from) = ctx.srtp.for_call(
        source.map(|s| s.ip()),
        local,
        transport == crate::sip::Transport::Tls,
    );
    debug!(srtp = %srtp_policy, from = %from, "SRTP policy");
    let Some((socket, _lease)) = bind_media(ctx, media_ip, Sdes::new(srtp_policy)).await else {
        warn!("no free RTP port; refusing the call");
        invite.reject(503, "no free RTP port").await;
        return Outcome::rejected(503, Cause::NoRtpPort);
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
        Some(offer) => {
            match sdp::answer_sdes(offer, local_rtp, session_id, session_id, &socket.sdes) {
                Ok((n, answer)) => (Some(n), answer),
                Err(e) => {
                    // The policy's source tells the operator which setting to change.
                    info!(
                        error = %e,
                        srtp = %srtp_policy,
                        srtp_from = %from,
                        "unacceptable SDP offer"
                    );
                    invite.reject(e.sip_status(), &e.to_string()).await;
                    return Outcome::rejected(e.sip_status(), Cause::Sdp(e.sip_status()));
                }
            }
        }
        None => (
            None,
            sdp::offer_sdes(local_rtp, session_id, Some(&socket.sdes)),
        ),
    };

    // 4. The dialog exists from here on.
    let (handle, mut events) = match invite.start().await {
        Ok(pair) => pair,
        Err(e) => {
            info!(error = %e, "cannot create the dialog");
            return Outcome::rejected(400, Cause::BadInvite);
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
        called: called.map(str::to_owned),
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
            if let Err(e) = handle.reject(status, Some(&outcome.end.to_string())) {
                debug!(error = %e, "rejecting the INVITE failed");
            }
        }
        return outcome;
    }
    if !outcome.end.sends_bye() {
        return outcome;
    }
    if let Err(e) = events.hangup(&outcome.end.to_string()).await {
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
    /// The number dialled.
    called: Option<String>,
    /// When the INVITE arrived (for the setup-time metric).
    invite_at: tokio::time::Instant,
}

/// The part of the call with a dialog: open the session, answer, run the media.
#[allow(clippy::too_many_arguments)]
async fn dialog_phase(
    ctx: &CallContext,
    row: Option<i64>,
    plan: &Plan,
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
        called,
        invite_at,
    } = answered;
    let profile = match plan {
        Plan::Agent(p) | Plan::Announcement(p, _) => Some(p.clone()),
        Plan::Recording(..) => None,
    };
    let mut fallback = None;
    // Where a replacement session is opened (rollover): the session's endpoint first.
    let mut reconnect_targets = Vec::new();
    let session = match &profile {
        Some(profile) => {
            let targets = ctx.realtime.select(&profile.endpoints);
            // GPT-Live's `session.start` carries the call's audio format: with the codec known
            // (an offer in the INVITE) it is started before the answer, so that a refused start
            // is a 503 too, as a Realtime session that is not created.
            let announcement = matches!(plan, Plan::Announcement(..));
            let start = negotiated
                .as_ref()
                .map(|n| plan_settings(ctx, profile, n.law, announcement));
            let opening = open_and_start(
                &targets,
                &profile.model,
                start.as_ref(),
                ctx.connect_timeout,
            );
            tokio::select! {
                r = opening => match r {
                    Ok(opened) => {
                        crate::observe::realtime_session("opened");
                        info!(endpoint = %opened.endpoint, attempts = opened.attempts, "model session open");
                        reconnect_targets = Endpoints::starting_at(&targets, &opened.endpoint);
                        Some(opened.session)
                    }
                    Err(failed) => {
                        crate::observe::realtime_session(if failed.timed_out { "timeout" } else { "failed" });
                        match (&profile.on_model_failure, plan) {
                            (Some(f), Plan::Agent(_)) => {
                                warn!(reason = %failed, "no model session on any endpoint; the agent's on_model_failure answers the call");
                                fallback = Some(f.clone());
                                None
                            }
                            _ => {
                                warn!(reason = %failed, "no model session on any endpoint; refusing the call with 503");
                                let cause = if failed.timed_out { Cause::RealtimeTimeout } else { Cause::RealtimeUnavailable };
                                return Outcome::rejected(503, cause);
                            }
                        }
                    }
                },
                ev = wait_for_end(events) => return ev,
                _ = cancel.cancelled() => return Outcome::rejected(503, Cause::Shutdown),
            }
        }
        None => None,
    };

    // A fallback call has no model: no tools, no usage, no model in its record.
    let profile = profile.filter(|_| fallback.is_none());

    // Answer.
    if let Err(e) = events.answer(local_sdp) {
        warn!(error = %e, "cannot send 200 OK");
        return Outcome::ended(EndReason::remote(Cause::GoneBeforeAnswer));
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
    if let Err(e) =
        crate::media::socket::set_srtp(&socket.rtp, socket.rtcp.as_ref(), negotiated.srtp.as_ref())
    {
        warn!(error = %e, "cannot start SRTP; ending the call");
        return Outcome::ended(EndReason::local(Cause::InternalError));
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

    // Media: the core decides, the pump moves bytes.
    let core_plan = match (plan, &session) {
        _ if fallback.is_some() => {
            let f = fallback.as_ref().map(|f| (f.audio.clone(), f.then.clone()));
            let Some((audio, then)) = f else {
                return Outcome::ended(EndReason::local(Cause::InternalError));
            };
            info!(file = %audio.path.display(), then = ?then, "model unavailable: playing the fallback recording");
            CallPlan::Recording {
                audio: recording_bytes(&audio.samples, negotiated.law),
                then,
            }
        }
        (Plan::Recording(audio, then), _) => {
            info!(file = %audio.path.display(), duration = ?audio.duration(), "playing the message");
            CallPlan::Recording {
                audio: recording_bytes(&audio.samples, negotiated.law),
                then: then.clone(),
            }
        }
        (Plan::Agent(p), Some(s)) => {
            CallPlan::Agent(model_plan(ctx, p, negotiated.law, false, s.capabilities()))
        }
        (Plan::Announcement(p, then), Some(s)) => CallPlan::Announcement(
            model_plan(ctx, p, negotiated.law, true, s.capabilities()),
            then.clone(),
        ),
        _ => return Outcome::ended(EndReason::local(Cause::InternalError)),
    };
    let setup = CallSetup {
        media: MediaParams {
            ssrc: rand::random(),
            first_seq: rand::random(),
            first_ts: rand::random(),
            rtp_timeout: Some(ctx.rtp_timeout),
            send_silence: ctx.send_silence,
        },
        negotiated,
        local_rtp,
        sdp_session_id: session_id,
        sdes: Some(socket.sdes.clone()),
        plan: core_plan,
    };
    let message_of = MessageOf {
        call_id: call_id.clone(),
        caller: caller.clone(),
        called,
        agent: match plan {
            Plan::Agent(p) => Some(p.name.clone()),
            _ => None,
        },
    };
    let tools = profile.as_ref().map(|p| {
        ToolContext::new(
            ctx.store.clone(),
            call_id,
            caller,
            p.calendar.clone().unwrap_or_default(),
        )
    });
    let (end, mut bridge) = super::pump::run(
        setup,
        super::pump::Sockets {
            rtp: &socket.rtp,
            rtcp: socket.rtcp.as_ref(),
        },
        session,
        profile.as_ref().map(|p| super::effects::Opener {
            targets: reconnect_targets,
            model: p.model.clone(),
            timeout: ctx.connect_timeout,
        }),
        tools,
        handle,
        events,
        cancel,
    )
    .await;
    finish_record(ctx, profile.as_deref(), &end, &mut bridge, record);
    if let Some(audio) = bridge.take_message() {
        save_message(ctx, &message_of, &audio).await;
    }
    Outcome::ended(end)
}

/// Whose message a call took, for its `messages` row.
struct MessageOf {
    call_id: String,
    caller: Option<String>,
    called: Option<String>,
    agent: Option<String>,
}

/// Writes a caller's message (8 kHz µ-law) as a WAV file in `[messages] dir` and records it in
/// `messages`. An empty message (the caller hung up at the tone) is not kept. Failures are
/// logged; the call is over either way.
async fn save_message(ctx: &CallContext, of: &MessageOf, audio: &[u8]) {
    /// 8 kHz: bytes per ms.
    const BYTES_PER_MS: usize = 8;
    if audio.len() < 500 * BYTES_PER_MS {
        info!(
            bytes = audio.len(),
            "the caller left no message (under 0.5 s)"
        );
        return;
    }
    let duration_ms = i64::try_from(audio.len() / BYTES_PER_MS).unwrap_or(i64::MAX);
    let ended = Utc::now();
    let recorded_at = ended - chrono::Duration::milliseconds(duration_ms);
    let safe_id: String = of
        .call_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let path = ctx.messages_dir.join(format!(
        "{}-{safe_id}.wav",
        recorded_at.format("%Y%m%dT%H%M%SZ")
    ));
    let written = async {
        tokio::fs::create_dir_all(&ctx.messages_dir).await?;
        tokio::fs::write(&path, crate::dialplan::ulaw_wav(audio)).await
    };
    if let Err(e) = written.await {
        tracing::error!(file = %path.display(), error = %e, "MESSAGE LOST: cannot write the caller's message");
        return;
    }
    let path_text = path.display().to_string();
    let row = crate::store::messages::NewMessage {
        call_id: &of.call_id,
        caller: of.caller.as_deref(),
        called: of.called.as_deref(),
        agent: of.agent.as_deref(),
        recorded_at,
        duration_ms,
        path: &path_text,
    };
    match ctx.store.message_recorded(&row).await {
        Ok(_) => info!(file = %path_text, duration_ms, "caller's message saved"),
        Err(e) => {
            warn!(file = %path_text, error = %e, "the message file is written but not listed: cannot record it")
        }
    }
}

/// Opens the agent's model session ([`failover::open`] across its endpoints) and, with `start`,
/// starts it ([`crate::realtime::session::Session::start`]: GPT-Live `session.start` until
/// `session.started`; nothing for the Realtime dialects), all within `budget`.
///
/// # Errors
/// No endpoint gave a session, or the session's start was refused or took too long (then the
/// endpoint it was opened on is the one attempt reported).
async fn open_and_start(
    targets: &[crate::realtime::client::RealtimeTarget],
    model: &str,
    start: Option<&SessionSettings>,
    budget: Duration,
) -> Result<failover::Opened, failover::AllFailed> {
    let deadline = tokio::time::Instant::now() + budget;
    let mut opened = failover::open(targets, model, budget).await?;
    let Some(settings) = start else {
        return Ok(opened);
    };
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let err = match tokio::time::timeout(left, opened.session.start(settings)).await {
        Ok(Ok(())) => return Ok(opened),
        Ok(Err(e)) => failover::AttemptError::Failed(e),
        Err(_) => failover::AttemptError::Timeout(left),
    };
    Err(failover::AllFailed {
        timed_out: matches!(err, failover::AttemptError::Timeout(_)),
        attempts: vec![(opened.endpoint, err)],
    })
}

/// Waits until the dialog ends before we answered (CANCEL, or the transaction died).
async fn wait_for_end(events: &mut CallEvents) -> Outcome {
    loop {
        match events.recv().await {
            Some(CallEvent::Cancelled) => {
                info!("caller cancelled before the answer");
                return Outcome {
                    end: EndReason::remote(Cause::Cancelled),
                    sip_status: Some(487),
                };
            }
            Some(CallEvent::SessionExpired) => continue,
            Some(ev) => {
                if let Some(end) = EndReason::from_call_event(&ev) {
                    return Outcome::ended(end);
                }
            }
            None => return Outcome::ended(EndReason::dialog_gone()),
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
                        Outcome::ended(EndReason::local(Cause::BadSdpAnswer))
                    })
                }
                Some(CallEvent::Ack { answer: None }) => {
                    warn!("the ACK carried no SDP answer to our offer");
                    return Err(Outcome::ended(EndReason::local(Cause::NoSdpAnswer)));
                }
                Some(ev) => {
                    if let Some(end) = EndReason::from_call_event(&ev) {
                        return Err(Outcome::ended(end));
                    }
                }
                None => return Err(Outcome::ended(EndReason::dialog_gone())),
            }
        }
    };
    tokio::select! {
        r = tokio::time::timeout(ACK_TIMEOUT, wait) => r.unwrap_or_else(|_| Err(Outcome::ended(EndReason::local(Cause::AckTimeout)))),
        _ = cancel.cancelled() => Err(Outcome::ended(EndReason::local(Cause::Shutdown))),
    }
}
