//! What a call's task prepares before the pump runs: the RTP and RTCP sockets on a port of the
//! pool, the model plan and Realtime session settings of an agent profile, and recorded message
//! audio in the call's G.711 law.

use std::net::{IpAddr, SocketAddr};

use tokio::net::UdpSocket;
use tracing::debug;

use super::call::CallContext;
use super::core::{ModelFallback, ModelPlan, RolloverPolicy};
use crate::dialplan::{AgentProfile, AudioSamples};
use crate::media::g711::Law;
use crate::media::ports::{PortLease, PortPool};
use crate::media::socket::MediaSocket;
use crate::realtime::protocol::{SessionSettings, TurnDetection};
use crate::sdp::sdes::Sdes;
use crate::tools;

/// How many RTP ports to try when the chosen one is already in use by another program.
const PORT_BIND_ATTEMPTS: usize = 16;

/// The sockets of one call's media: RTP on an even port, RTCP on the odd port above it (RFC 3550
/// §11). RTCP is optional: without it (port taken) frontdesk still works, and rtcp-mux uses the
/// RTP socket. Both apply SRTP at the boundary (`media::socket`) once keyed.
pub(super) struct MediaSockets {
    pub(super) rtp: MediaSocket,
    pub(super) rtcp: Option<MediaSocket>,
    /// The call's SRTP policy and our key (RFC 4568), for every offer/answer of the call.
    pub(super) sdes: Sdes,
}

/// Binds a port of the pool for RTP (and the odd port above it for RTCP) on `media_ip`, trying
/// up to [`PORT_BIND_ATTEMPTS`] ports another program may hold; `None` when the pool is empty or
/// every attempt failed (the INVITE then gets 503). The lease returns the port when dropped.
pub(super) async fn bind_media(
    ctx: &CallContext,
    media_ip: IpAddr,
    sdes: Sdes,
) -> Option<(MediaSockets, PortLease<'_>)> {
    for _ in 0..PORT_BIND_ATTEMPTS {
        let lease = PortPool::lease(&ctx.ports)?;
        let port = lease.port();
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

/// The session settings of a profile's call: [`session_settings`] and the tools it may call.
pub(super) fn plan_settings(
    ctx: &CallContext,
    profile: &AgentProfile,
    law: Law,
    announcement: bool,
) -> SessionSettings {
    let mut settings = session_settings(profile, law, announcement);
    let allowed: Vec<String> = profile.tools.iter().map(|t| t.name().to_owned()).collect();
    if !announcement && ctx.calendar_tools {
        settings.tools = tools::definitions(&allowed);
    }
    if !announcement {
        let targets: Vec<String> = profile.transfers.keys().cloned().collect();
        settings
            .tools
            .extend(tools::call_control::definitions(&allowed, &targets));
    }
    settings
}

/// The model session plan of a profile: its settings and tools, its greeting and the
/// dialplan's call-control data.
pub(super) fn model_plan(
    ctx: &CallContext,
    profile: &AgentProfile,
    law: Law,
    announcement: bool,
    caps: crate::realtime::Capabilities,
) -> ModelPlan {
    let settings = plan_settings(ctx, profile, law, announcement);
    ModelPlan {
        caps,
        settings,
        greeting: profile.greeting.clone(),
        dtmf: profile.dtmf.clone(),
        transfers: profile.transfers.clone(),
        max_duration: profile.max_duration,
        echo_gate: profile.echo_gate,
        rollover: RolloverPolicy {
            on_failure: profile
                .on_model_failure
                .as_ref()
                .filter(|_| !announcement)
                .map(|f| ModelFallback {
                    audio: recording_bytes(&f.audio.samples, law),
                    then: f.then.clone(),
                }),
            ..ctx.rollover.policy(law)
        },
        idle: match (announcement, profile.idle_prompt) {
            (false, Some(prompt)) => Some(super::core::IdlePolicy {
                prompt,
                hangup: profile.idle_hangup,
                caller_transcripts: caps.transcribes_caller
                    || profile.transcription_model.is_some(),
            }),
            _ => None,
        },
    }
}

/// Converts recorded message audio to the call's G.711 law.
pub(super) fn recording_bytes(samples: &AudioSamples, law: Law) -> Vec<u8> {
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

/// The Realtime session configuration of a profile. Announcements do not listen: the caller's
/// speech neither starts nor interrupts a response. With the agent's echo gate on (the default)
/// the server does not cancel a response when its VAD hears speech (`interrupt_response: false`,
/// realtime-protocol.md §4.2, §5.2): frontdesk decides whether it was the caller or only the echo
/// of the agent (`bridge/core/conversation.rs`). GPT-Live sessions do not use these settings'
/// turn detection (the model decides barge-in itself).
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
            interrupt_response: !announcement && !profile.echo_gate,
        },
        transcription_model: profile.transcription_model.clone(),
        tools: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_echo_gate_makes_frontdesk_decide_interruptions() {
        let mut profile = AgentProfile::default();
        assert!(profile.echo_gate, "the gate is on by default");
        let td = session_settings(&profile, Law::Mu, false).turn_detection;
        assert!(td.create_response);
        assert!(
            !td.interrupt_response,
            "frontdesk decides with the echo estimate"
        );
        profile.echo_gate = false;
        let td = session_settings(&profile, Law::Mu, false).turn_detection;
        assert!(td.interrupt_response, "without the gate the server decides");
        // Announcements never listen.
        let td = session_settings(&profile, Law::Mu, true).turn_detection;
        assert!(!td.create_response && !td.interrupt_response);
    }
}
