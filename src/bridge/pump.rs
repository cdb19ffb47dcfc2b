//! The media phase of a call's task: a pump between the sockets and the call's core.
//!
//! One biased `select!` (caller RTP first) reads whichever is ready — the RTP and RTCP sockets, the model session, the
//! dialog's SIP events, finished side effects, the core's one timer, shutdown — turns it into one
//! [`Input`], and then performs the core's [`Output`]s until [`Output::Timeout`]. It makes no
//! decision of its own. Side effects that take time (tool calls, REFER) run as tasks in the
//! call's [`TaskTracker`], inside the call's span, and come back as inputs over a bounded
//! channel, so no SIP transaction or tool is awaited here and media keeps flowing.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument as _};

use super::core::{Bridge, CallSetup, Input, Output};
use super::effects::{
    close_beside, expires_instant, run_tool, Done, Opener, SIDE_EFFECTS_CAPACITY,
    SIDE_EFFECTS_DRAIN,
};
use super::end::EndReason;
use crate::media::socket::MediaSocket;
use crate::realtime::{ModelEvent, Session};
use crate::sip::{CallEvents, CallHandle};
use crate::tools::ToolContext;

/// Largest UDP datagram read on an RTP or RTCP socket, in bytes.
const RTP_READ_BUFFER: usize = 2048;
/// One turn in this many that the RTP socket would win is a round without it, so that the other
/// sources are polled even while caller packets never stop coming (a flood).
const RTP_FAIRNESS_EVERY: u32 = 16;
/// The call's media sockets.
pub(super) struct Sockets<'a> {
    /// RTP (and RTCP with rtcp-mux).
    pub(super) rtp: &'a MediaSocket,
    /// RTCP on the odd port, when it could be bound.
    pub(super) rtcp: Option<&'a MediaSocket>,
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Runs the answered call until the core hangs up; returns why, and the core (for the record).
#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    setup: CallSetup,
    sockets: Sockets<'_>,
    mut session: Option<Session>,
    opener: Option<Opener>,
    tool_ctx: Option<ToolContext>,
    handle: &CallHandle,
    events: &mut CallEvents,
    cancel: &CancellationToken,
) -> (EndReason, Bridge) {
    let mut bridge = Bridge::new(now(), setup);
    let tasks = TaskTracker::new();
    let (done_tx, mut done_rx) = mpsc::channel::<Done>(SIDE_EFFECTS_CAPACITY);
    // Replacement sessions being opened (rollover); the one opened waits in `next`.
    let (open_tx, mut open_rx) = mpsc::channel::<Result<Session, String>>(2);
    let mut next: Option<Session> = None;
    // The current session's `expires_at` was reported to the core.
    let mut expiry_told = false;
    let mut buf = vec![0u8; RTP_READ_BUFFER];
    let mut rtcp_buf = vec![0u8; RTP_READ_BUFFER];
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    // The deadline the timer is armed with (`None` once it fired): an unchanged deadline is not
    // re-armed (a timer-wheel update on every turn otherwise).
    let mut armed: Option<std::time::Instant> = None;
    // Commands fed to the session and not yet flushed.
    let mut fed = false;
    // Created once: a fresh `cancelled()` in every turn would join and leave the token's list.
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    let mut shutting_down = false;
    // Side effects (tools, REFERs) and session openings started and not yet reported: their
    // channels are polled only while there are any.
    let mut outstanding = 0usize;
    let mut opening = 0usize;
    // Turns won by the RTP socket (see the `select!`); starts at 1 so the first round reads RTP.
    let mut rtp_wins: u32 = 1;
    let end = 'call: loop {
        // Perform everything the core wants, until it sleeps.
        loop {
            match bridge.poll_output() {
                Output::SendModel(command) => {
                    if let Some(s) = session.as_mut() {
                        if let Err(e) = s.feed(&command).await {
                            warn!(error = %e, "Realtime session failed");
                            bridge.handle_input(Input::ModelFailed(now()));
                            continue;
                        }
                        fed = true;
                    }
                }
                Output::SendRtp { to, packet } => {
                    if let Err(e) = sockets.rtp.send_to(&packet, to).await {
                        debug!(error = %e, %to, "RTP send failed");
                    }
                }
                Output::SendRtcp { to, mux, packet } => {
                    let socket = if mux { Some(sockets.rtp) } else { sockets.rtcp };
                    if let Some(socket) = socket {
                        if let Err(e) = socket.send_to(&packet, to).await {
                            debug!(error = %e, %to, "RTCP send failed");
                        }
                    }
                }
                Output::RunTool(req) => {
                    if run_tool(&tasks, tool_ctx.as_ref(), &done_tx, req) {
                        outstanding += 1;
                    }
                }
                Output::Refer { target } => {
                    outstanding += 1;
                    let handle = handle.clone();
                    let tx = done_tx.clone();
                    tasks.spawn(
                        async move {
                            let r = handle.refer(&target).await.map_err(|e| e.to_string());
                            let _ = tx.send(Done::Refer(r)).await;
                        }
                        .in_current_span(),
                    );
                }
                Output::AnswerOffer(answer) => events.answer_offer(answer),
                Output::SetSrtp(keys) => {
                    if let Err(e) =
                        crate::media::socket::set_srtp(sockets.rtp, sockets.rtcp, keys.as_ref())
                    {
                        warn!(error = %e, "cannot re-key SRTP after the re-offer; the media keeps the old keys");
                    }
                }
                Output::OpenSession => match &opener {
                    Some(opener) => {
                        opening += 1;
                        let opener = opener.clone();
                        let tx = open_tx.clone();
                        tasks.spawn(
                            async move {
                                let _ = tx.send(opener.open().await).await;
                            }
                            .in_current_span(),
                        );
                    }
                    None => bridge.handle_input(Input::SessionOpenFailed {
                        now: now(),
                        error: "no model target for a new session".into(),
                    }),
                },
                Output::SwitchSession => {
                    if let Some(n) = next.take() {
                        let old = session.replace(n);
                        close_beside(&tasks, old);
                        expiry_told = false;
                    }
                }
                Output::CloseSession => close_beside(&tasks, session.take()),
                Output::Hangup(end) => break 'call end,
                Output::Timeout(at) => {
                    if armed != Some(at) {
                        timer.as_mut().reset(at.into());
                        armed = Some(at);
                    }
                    break;
                }
            }
        }
        // One write for all the commands of this turn.
        if fed {
            // A caller packet already queued (a sender's burst) goes in first, so its append
            // shares the write. When none is, this is the read that finds the socket empty,
            // which the next `recv_from` would make anyway.
            if let Ok((n, from)) = sockets.rtp.try_recv_from(&mut buf) {
                let datagram = buf.get(..n).unwrap_or_default();
                bridge.handle_input(Input::Rtp {
                    now: now(),
                    from,
                    datagram,
                });
                continue;
            }
            fed = false;
            if let Some(s) = session.as_mut() {
                match s.flush().await {
                    Ok(()) => bridge.handle_input(Input::ModelFlushed(now())),
                    Err(e) => {
                        warn!(error = %e, "Realtime session failed");
                        bridge.handle_input(Input::ModelFailed(now()));
                    }
                }
                continue;
            }
        }

        // Biased, in order of how often each source is the one that woke the task: a wake-up
        // by a caller packet (the common case, 50 per second) polls nothing else. So that a
        // caller flooding the RTP port cannot starve the other sources, every
        // `RTP_FAIRNESS_EVERY`-th turn won by RTP is followed by a round without it.
        let rtp_first = !rtp_wins.is_multiple_of(RTP_FAIRNESS_EVERY);
        tokio::select! {
            biased;
            r = sockets.rtp.recv_from(&mut buf), if rtp_first => {
                rtp_wins = rtp_wins.wrapping_add(1);
                match r {
                    Ok((n, from)) => {
                        bridge.handle_input(Input::Rtp { now: now(), from, datagram: &buf[..n] })
                    }
                    Err(e) => debug!(error = %e, "RTP receive error"),
                }
            }
            ev = next_model_event(session.as_mut()) => match ev {
                Ok(event) => {
                    bridge.handle_input(Input::Model(now(), event));
                    if !expiry_told {
                        if let Some(at) = session.as_mut().and_then(expires_instant) {
                            expiry_told = true;
                            bridge.handle_input(Input::SessionExpires { now: now(), at });
                        }
                    }
                    if let Some(latency) = bridge.take_first_audio_latency() {
                        crate::observe::model_first_audio(latency);
                    }
                }
                Err(e) => {
                    warn!(error = %e, "Realtime connection failed");
                    bridge.handle_input(Input::ModelFailed(now()));
                }
            },
            _ = &mut timer => {
                armed = None;
                // Caller packets that arrived while this task was not running go first, so a
                // stall of this task is not taken for a silent caller.
                while let Ok((n, from)) = sockets.rtp.try_recv_from(&mut buf) {
                    bridge.handle_input(Input::Rtp { now: now(), from, datagram: &buf[..n] });
                }
                bridge.handle_input(Input::Timeout(now()));
            }
            ev = events.recv() => bridge.handle_input(match ev {
                Some(ev) => Input::Sip(now(), ev),
                None => Input::SipGone(now()),
            }),
            r = recv_opt(sockets.rtcp, &mut rtcp_buf) => {
                if let Ok((n, _)) = r {
                    bridge.handle_input(Input::Rtcp { now: now(), datagram: &rtcp_buf[..n] });
                }
            }
            Some(done) = done_rx.recv(), if outstanding > 0 => {
                outstanding -= 1;
                bridge.handle_input(match done {
                    Done::Tool { call_id, output } => Input::ToolDone { now: now(), call_id, output },
                    Done::Refer(result) => Input::ReferDone { now: now(), result },
                });
            }
            Some(opened) = open_rx.recv(), if opening > 0 => {
                opening -= 1;
                match opened {
                    Ok(s) => {
                        close_beside(&tasks, next.replace(s));
                        bridge.handle_input(Input::SessionOpened(now()));
                    }
                    Err(error) => bridge.handle_input(Input::SessionOpenFailed { now: now(), error }),
                }
            }
            _ = &mut cancelled, if !shutting_down => {
                shutting_down = true;
                bridge.handle_input(Input::Shutdown(now()));
            }
            // The fairness round found nothing else ready: RTP goes first again.
            () = std::future::ready(()), if !rtp_first => {
                rtp_wins = rtp_wins.wrapping_add(1);
            }
        }
    };
    info!(end_reason = %end, "media ended");
    tasks.close();
    if tokio::time::timeout(SIDE_EFFECTS_DRAIN, tasks.wait())
        .await
        .is_err()
    {
        debug!("side effects still running after the call; leaving them");
    }
    for mut s in [session, next].into_iter().flatten() {
        let _ = tokio::time::timeout(SIDE_EFFECTS_DRAIN, s.close()).await;
    }
    (end, bridge)
}

/// The next model event; pends forever without a session (recordings).
async fn next_model_event(
    session: Option<&mut Session>,
) -> Result<ModelEvent, crate::realtime::session::Error> {
    match session {
        Some(s) => s.next_event().await,
        None => std::future::pending().await,
    }
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
