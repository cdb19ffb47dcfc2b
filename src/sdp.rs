//! SDP offer/answer for the one G.711 audio stream of a call.
//!
//! This module owns the session descriptions that frontdesk exchanges in SIP bodies:
//! - [`answer`] reads a peer's offer (RFC 3264 §5) from an INVITE and builds our answer (§6);
//! - [`offer`] builds our offer for an INVITE that came without a body ("late offer");
//! - [`accept_answer`] reads the peer's answer to that offer, which arrives in the ACK (§7).
//!
//! The `sdp-types` crate does all parsing and serialising (RFC 4566 / RFC 8866 syntax); this
//! module only decides which stream, codec, address and direction to use. It does no I/O and keeps
//! no state. It never panics on input: every problem with a body is an [`Error`], which
//! [`Error::sip_status`] maps to the SIP status to reject the INVITE with.
//!
//! What negotiation can settle on, because that is all frontdesk's media path handles:
//! - one audio stream over RTP (`RTP/AVP`, or `RTP/AVPF`, which is answered in kind), or over SRTP
//!   with SDES keys (`RTP/SAVP`/`RTP/SAVPF` with `a=crypto`, RFC 4568) when the call's
//!   [`sdes::Policy`] allows it (the `*_sdes` functions; [`sdes`] has the rules). DTLS-SRTP and
//!   every other stream are rejected with port 0 (RFC 3264 §6);
//! - G.711 only (RFC 3551 §4.5.14): µ-law (PCMU, static payload type 0) is preferred over A-law
//!   (PCMA, static payload type 8). A dynamic payload type also counts when its `a=rtpmap` reads
//!   `PCMU/8000` or `PCMA/8000`;
//! - RFC 4733 `telephone-event/8000` (DTMF), kept under the payload type the offer used;
//! - 20 ms packets (`a=ptime:20`, 160 bytes of G.711);
//! - RTP/RTCP multiplexing (RFC 5761) only when the offer asks for it.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use sdp_types as sdp;

use crate::media::g711::{Law, CLOCK_RATE_HZ};
use crate::media::srtp::SrtpKeys;

pub mod sdes;

use sdes::{CryptoError, Policy, Sdes};

/// Packet duration in milliseconds that we send and ask for (`a=ptime`, RFC 8866 §6.4): 20 ms,
/// i.e. 160 G.711 bytes per RTP packet.
pub const PTIME_MS: u32 = 20;

/// The dynamic payload type that [`offer`] gives to `telephone-event/8000` (RFC 4733). In an
/// [`answer`] the offer's payload type is kept instead.
pub const TELEPHONE_EVENT_PT: u8 = 101;

/// The RFC 4733 events we say we receive (`a=fmtp:<pt> 0-16`): DTMF digits 0-9, `*`, `#`,
/// A-D (events 0-15) and flash (16).
pub const TELEPHONE_EVENTS: &str = "0-16";

/// The largest SDP body, in bytes, that we parse. Longer bodies fail with [`Error::TooLarge`]
/// before parsing. A G.711 offer is a few hundred bytes, and even a WebRTC offer with many ICE
/// candidates stays well under this.
pub const MAX_SDP_BYTES: usize = 64 * 1024;

/// The user name in our `o=` lines (RFC 8866 §5.2).
const ORIGIN_USERNAME: &str = "frontdesk";
/// Our `s=` session name (RFC 8866 §5.3).
const SESSION_NAME: &str = "frontdesk";

/// A media direction (RFC 8866 §6.7, RFC 3264 §5.1), always seen from the side that declared
/// it. In [`Negotiated::direction`] that is the peer: `SendOnly` means the peer sends and does
/// not receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// `a=sendrecv`: sends and receives. This is the default when no direction attribute is given.
    #[default]
    SendRecv,
    /// `a=sendonly`: sends only, as when the peer puts us on hold.
    SendOnly,
    /// `a=recvonly`: receives only.
    RecvOnly,
    /// `a=inactive`: neither sends nor receives.
    Inactive,
}

impl Direction {
    /// The attribute name as written in SDP (`"sendrecv"`, `"sendonly"`, `"recvonly"`, `"inactive"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Whether the side with this direction sends RTP.
    pub const fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the side with this direction receives RTP.
    pub const fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The direction that answers this one (RFC 3264 §6.1): `sendonly` is answered with `recvonly`,
    /// `recvonly` with `sendonly`, and `sendrecv` and `inactive` with themselves.
    pub const fn mirrored(self) -> Self {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// This direction without receiving. Used for a hold made the RFC 2543 way, with the
    /// connection address 0.0.0.0 (RFC 3264 §8.4): a peer that gave that address cannot be sent to.
    const fn without_receive(self) -> Self {
        match self {
            Direction::SendRecv | Direction::SendOnly => Direction::SendOnly,
            Direction::RecvOnly | Direction::Inactive => Direction::Inactive,
        }
    }

    const fn to_sdp(self) -> sdp::Direction {
        match self {
            Direction::SendRecv => sdp::Direction::SendRecv,
            Direction::SendOnly => sdp::Direction::SendOnly,
            Direction::RecvOnly => sdp::Direction::RecvOnly,
            Direction::Inactive => sdp::Direction::Inactive,
        }
    }

    const fn from_sdp(direction: sdp::Direction) -> Self {
        match direction {
            sdp::Direction::SendRecv => Direction::SendRecv,
            sdp::Direction::SendOnly => Direction::SendOnly,
            sdp::Direction::RecvOnly => Direction::RecvOnly,
            sdp::Direction::Inactive => Direction::Inactive,
        }
    }
}

/// What offer/answer settled on for the audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The G.711 law of the stream, in both directions: PCMU when the offer has it anywhere in
    /// its format list, otherwise PCMA. In [`accept_answer`] it is the first G.711 format that
    /// the answer lists.
    pub law: Law,
    /// The RTP payload type that carries `law` (RFC 3551): 0 or 8, or the dynamic type that the
    /// peer mapped to `PCMU/8000` / `PCMA/8000` with `a=rtpmap`.
    pub payload_type: u8,
    /// The payload type of RFC 4733 `telephone-event/8000` (DTMF). It is `None` when the peer did
    /// not include it, in which case the answer does not include it either.
    pub telephone_event_pt: Option<u8>,
    /// Where to send RTP: the address from `c=` (a media-level `c=` overrides the session-level
    /// one; RFC 8866 §5.7) and the port from `m=`. The address is 0.0.0.0 on an RFC 2543-style hold
    /// (see `direction`).
    pub remote_rtp: SocketAddr,
    /// Packet duration in milliseconds: always [`PTIME_MS`] (20), which we answer and offer.
    pub ptime_ms: u32,
    /// The peer's direction (RFC 3264 §5.1): its media-level attribute, or else the
    /// session-level one, or else `sendrecv`. A `c=` address of 0.0.0.0 (or `::`) means hold
    /// (RFC 3264 §8.4) and removes the peer's receive side (`sendrecv` becomes `sendonly`).
    pub direction: Direction,
    /// Whether RTCP goes over the RTP port (RFC 5761). It is true only when the offer had
    /// `a=rtcp-mux` and so our answer has it too. It is always false after [`accept_answer`],
    /// because [`offer`] does not offer it.
    pub rtcp_mux: bool,
    /// The SRTP keys when the stream is SRTP (RFC 3711 with SDES keys, RFC 4568): both sides'
    /// master keys and the suite. `None` for plain RTP. Its `Debug` hides the keys.
    pub srtp: Option<SrtpKeys>,
}

impl Negotiated {
    /// Whether we should send RTP to [`Negotiated::remote_rtp`]: the peer receives, and its
    /// address is not a hold address.
    pub fn should_send(&self) -> bool {
        self.direction.receives() && !self.remote_rtp.ip().is_unspecified()
    }

    /// Whether the peer said it will send us RTP.
    pub fn expects_media(&self) -> bool {
        self.direction.sends()
    }
}

/// Why a session description could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The body is longer than [`MAX_SDP_BYTES`] and was not parsed.
    #[error("SDP body of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Length of the body, in bytes.
        len: usize,
        /// The limit, [`MAX_SDP_BYTES`].
        max: usize,
    },
    /// The body is not an SDP session description (RFC 8866 §9 grammar), for example because
    /// it is empty, has no `v=0` line, has a malformed line or is not UTF-8.
    #[error("unparsable SDP: {0}")]
    Parse(String),
    /// No usable audio stream: no `m=audio` line, or every one has port 0.
    #[error("no audio stream offered")]
    NoAudioStream,
    /// Audio was offered only over a transport we do not speak, such as `RTP/SAVP`. The field
    /// is the first such protocol.
    #[error("audio offered only over unsupported transport {0}")]
    UnsupportedTransport(String),
    /// An RTP audio stream exists, but none of its formats is PCMU or PCMA at 8000 Hz.
    #[error("no common codec: audio stream offers neither PCMU nor PCMA")]
    NoCommonCodec,
    /// The chosen audio stream has no `c=` line, neither at media nor at session level.
    #[error("audio stream has no connection address (c=)")]
    NoConnectionAddress,
    /// The `c=` line is not an `IN IP4`/`IN IP6` address literal (a host name, for example). The
    /// field is the address as written.
    #[error("unusable connection address {0:?}")]
    BadConnectionAddress(String),
    /// The call's policy is `require` and the offer (or answer) has no `a=crypto`, or a re-offer
    /// would turn an SRTP call into plain RTP.
    #[error("SRTP is required: offer RTP/SAVP with a=crypto (AES_CM_128_HMAC_SHA1_80 or _32)")]
    SrtpRequired,
    /// An SRTP stream whose `a=crypto` lines are all unusable (RFC 4568 §7.1.2): the first one's
    /// reason, never its key.
    #[error("no usable a=crypto: {0}")]
    NoUsableCrypto(CryptoError),
}

impl Error {
    /// The SIP status code to reject an INVITE with for this error (RFC 3261 §21): 400 (Bad
    /// Request) when the body is not SDP we can parse, and 488 (Not Acceptable Here, RFC 3261
    /// §21.4.26) when it parsed but describes no session we can accept.
    pub fn sip_status(&self) -> u16 {
        match self {
            Error::TooLarge { .. } | Error::Parse(_) => 400,
            Error::NoAudioStream
            | Error::UnsupportedTransport(_)
            | Error::NoCommonCodec
            | Error::NoConnectionAddress
            | Error::BadConnectionAddress(_)
            | Error::SrtpRequired
            | Error::NoUsableCrypto(_) => 488,
        }
    }
}

/// Answers an SDP offer (RFC 3264 §6) and returns what was negotiated together with the answer
/// body (CRLF-terminated SDP, RFC 8866).
///
/// Of the offer's `m=` lines, the first `audio` line with a non-zero port, transport `RTP/AVP`
/// (or `RTP/AVPF`) and a G.711 format is accepted. The answer has the same number of `m=`
/// lines as the offer, and every other line is rejected with port 0. The accepted line carries
/// the chosen codec (PCMU if offered, else PCMA, under the offer's payload type), the offered
/// `telephone-event/8000` with `a=fmtp:<pt> 0-16`, `a=ptime:20`, the mirrored direction, and
/// `a=rtcp-mux` if it was offered.
///
/// `local_rtp` is the address and port where we receive RTP. It must be an address the peer can
/// reach, not 0.0.0.0, because that would tell the peer we are on hold. `session_id` is the
/// `o=` session id (RFC 8866 §5.2) and is also used as the session version. Use
/// [`answer_with_version`] to answer a re-INVITE with a new version.
///
/// # Errors
/// Any [`Error`]. Reject the INVITE with [`Error::sip_status`].
pub fn answer(
    offer: &[u8],
    local_rtp: SocketAddr,
    session_id: u64,
) -> Result<(Negotiated, Vec<u8>), Error> {
    answer_with_version(offer, local_rtp, session_id, session_id)
}

/// Like [`answer`], with an explicit `o=` session version. RFC 3264 §8 requires the version to
/// go up by one each time our description of a session changes, for example when a re-INVITE
/// puts the call on hold.
///
/// # Errors
/// Any [`Error`], as for [`answer`].
pub fn answer_with_version(
    offer: &[u8],
    local_rtp: SocketAddr,
    session_id: u64,
    session_version: u64,
) -> Result<(Negotiated, Vec<u8>), Error> {
    answer_choosing(
        offer,
        local_rtp,
        session_id,
        session_version,
        CodecChoice::PreferPcmu,
        None,
    )
}

/// Like [`answer_with_version`], with SRTP under `sdes`'s policy (see [`sdes::Policy`]): an
/// accepted SRTP stream is answered in its own profile (`RTP/SAVP`, or `RTP/AVP` for a
/// best-effort offer) with one `a=crypto` of the chosen tag and suite and `sdes.key`, and
/// [`Negotiated::srtp`] holds both keys.
///
/// # Errors
/// Any [`Error`], as for [`answer`], plus [`Error::SrtpRequired`] and [`Error::NoUsableCrypto`]
/// (488).
pub fn answer_sdes(
    offer: &[u8],
    local_rtp: SocketAddr,
    session_id: u64,
    session_version: u64,
    sdes: &Sdes,
) -> Result<(Negotiated, Vec<u8>), Error> {
    answer_choosing(
        offer,
        local_rtp,
        session_id,
        session_version,
        CodecChoice::PreferPcmu,
        Some(sdes),
    )
}

/// [`answer_reoffer`] with SRTP: a call that runs SRTP (`srtp_now`) stays SRTP, so a re-offer
/// without a usable `a=crypto` is refused ([`Error::SrtpRequired`]) whatever the policy. Our key
/// stays `sdes.key`; the peer's may change, in [`Negotiated::srtp`].
///
/// # Errors
/// Any [`Error`]: reject the request with 488 and keep the call as it was.
pub fn answer_reoffer_sdes(
    offer: &[u8],
    local_rtp: SocketAddr,
    session_id: u64,
    session_version: u64,
    current: Law,
    sdes: &Sdes,
    srtp_now: bool,
) -> Result<(Negotiated, Vec<u8>), Error> {
    let keep = Sdes {
        policy: if srtp_now {
            Policy::Require
        } else {
            sdes.policy
        },
        key: sdes.key.clone(),
    };
    answer_choosing(
        offer,
        local_rtp,
        session_id,
        session_version,
        CodecChoice::Keep(current),
        Some(&keep),
    )
}

/// Answers an offer in a re-INVITE or UPDATE (RFC 3264 §8) of a call that runs `current`: like
/// [`answer_with_version`], but the call keeps its law while the offer still has it; only an offer
/// with just the other G.711 law changes the codec. Pass the previous session version + 1.
///
/// # Errors
/// Any [`Error`]: reject the request with 488 and keep the call as it was.
pub fn answer_reoffer(
    offer: &[u8],
    local_rtp: SocketAddr,
    session_id: u64,
    session_version: u64,
    current: Law,
) -> Result<(Negotiated, Vec<u8>), Error> {
    answer_choosing(
        offer,
        local_rtp,
        session_id,
        session_version,
        CodecChoice::Keep(current),
        None,
    )
}

/// The answer of [`answer_with_version`] and [`answer_reoffer`], with the codec rule `choice`.
fn answer_choosing(
    offer: &[u8],
    local_rtp: SocketAddr,
    session_id: u64,
    session_version: u64,
    choice: CodecChoice,
    sdes: Option<&Sdes>,
) -> Result<(Negotiated, Vec<u8>), Error> {
    let session = parse(offer)?;
    let chosen = select_audio(&session, choice, CryptoRule::answering(sdes))?;
    let negotiated = negotiated(&session, &chosen, chosen.offers_rtcp_mux, sdes)?;
    let mut out = new_session(local_rtp.ip(), session_id, session_version);
    for (index, offered) in session.medias.iter().enumerate() {
        if index == chosen.index {
            let mut media = audio_media(
                local_rtp.port(),
                sdp::TransportProto::from(chosen.media.proto.as_str()),
                &[(negotiated.payload_type, negotiated.law)],
                negotiated.telephone_event_pt,
                negotiated.direction.mirrored(),
                negotiated.rtcp_mux,
            );
            // RFC 4568 §7.1.2: the chosen line's tag and suite, with our own key.
            if let (Some(crypto), Some(sdes)) = (&chosen.crypto, sdes) {
                media.add_attribute_with_value(
                    sdes::ATTRIBUTE,
                    sdes::attribute_value(crypto.tag, crypto.suite, &sdes.key),
                );
            }
            out.add_media(media);
        } else {
            out.add_media(rejected_media(offered));
        }
    }
    Ok((negotiated, serialise(&out)))
}

/// Builds our SDP offer (RFC 3264 §5) for an INVITE that arrived without one. The peer's answer
/// comes back in the ACK and goes to [`accept_answer`].
///
/// The offer has one `m=audio <port> RTP/AVP 0 8 101` line: PCMU, then PCMA, then
/// `telephone-event/8000` under [`TELEPHONE_EVENT_PT`] with `a=fmtp:101 0-16`, then `a=ptime:20`
/// and `a=sendrecv`. `local_rtp` is where we receive RTP (a reachable address, not 0.0.0.0).
/// `session_id` is both the `o=` session id and the session version (RFC 8866 §5.2).
pub fn offer(local_rtp: SocketAddr, session_id: u64) -> Vec<u8> {
    offer_sdes(local_rtp, session_id, None)
}

/// [`offer`] under an SRTP policy: `off` (or `None`) is [`offer`]; `offer` adds
/// `a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:<sdes.key>` to the `RTP/AVP` line (best effort:
/// the answer decides); `require` makes it `RTP/SAVP`. Read the answer with
/// [`accept_answer_sdes`].
pub fn offer_sdes(local_rtp: SocketAddr, session_id: u64, sdes: Option<&Sdes>) -> Vec<u8> {
    let policy = sdes.map_or(Policy::Off, |s| s.policy);
    let mut out = new_session(local_rtp.ip(), session_id, session_id);
    let mut media = audio_media(
        local_rtp.port(),
        if policy == Policy::Require {
            sdp::TransportProto::RtpSavp
        } else {
            sdp::TransportProto::RtpAvp
        },
        &[
            (Law::Mu.payload_type(), Law::Mu),
            (Law::A.payload_type(), Law::A),
        ],
        Some(TELEPHONE_EVENT_PT),
        Direction::SendRecv,
        false,
    );
    if let Some(sdes) = sdes.filter(|s| s.policy != Policy::Off) {
        media.add_attribute_with_value(
            sdes::ATTRIBUTE,
            sdes::attribute_value(sdes::OFFER_TAG, sdes::OFFER_SUITE, &sdes.key),
        );
    }
    out.add_media(media);
    serialise(&out)
}

/// Reads the peer's answer (RFC 3264 §7) to an [`offer`] of ours, received in the ACK of a
/// late-offer INVITE.
///
/// The audio stream is the first `audio` line with a non-zero port over RTP/AVP(F) that holds a
/// G.711 format. The codec is the first G.711 format in the answer's list, since the answerer
/// lists formats in order of preference. `telephone_event_pt` is the answer's
/// `telephone-event/8000` payload type, if it has one.
///
/// # Errors
/// Any [`Error`]. An ACK cannot be rejected, so the caller ends the call, for example with a BYE.
/// A rejected audio stream (port 0) gives [`Error::NoAudioStream`].
pub fn accept_answer(answer: &[u8]) -> Result<Negotiated, Error> {
    accept_answer_sdes(answer, None)
}

/// [`accept_answer`] for an offer made by [`offer_sdes`] with `sdes`: the answer's `a=crypto`
/// must carry the tag and suite we offered ([`sdes::OFFER_TAG`], [`sdes::OFFER_SUITE`]); without
/// one the stream is plain RTP, which policy `require` refuses.
///
/// # Errors
/// Any [`Error`], as for [`accept_answer`], plus [`Error::SrtpRequired`] and
/// [`Error::NoUsableCrypto`]. The ACK cannot be refused: end the call.
pub fn accept_answer_sdes(answer: &[u8], sdes: Option<&Sdes>) -> Result<Negotiated, Error> {
    let session = parse(answer)?;
    let chosen = select_audio(&session, CodecChoice::ListOrder, CryptoRule::offered(sdes))?;
    // rtcp-mux counts only when both sides want it, and our offer does not ask for it (RFC 5761 §5.1.1).
    negotiated(&session, &chosen, false, sdes)
}

/// How `a=crypto` is judged on a candidate `m=` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CryptoRule {
    /// We answer an offer under this policy.
    Answering(Policy),
    /// We read the answer to our offer, made under this policy.
    Offered(Policy),
}

impl CryptoRule {
    fn answering(sdes: Option<&Sdes>) -> CryptoRule {
        CryptoRule::Answering(sdes.map_or(Policy::Off, |s| s.policy))
    }

    fn offered(sdes: Option<&Sdes>) -> CryptoRule {
        CryptoRule::Offered(sdes.map_or(Policy::Off, |s| s.policy))
    }

    fn policy(self) -> Policy {
        match self {
            CryptoRule::Answering(p) | CryptoRule::Offered(p) => p,
        }
    }
}

/// Why a candidate `m=` line was passed over for its SRTP, for the error when none is taken.
#[derive(Debug, Default)]
struct SrtpMisses {
    crypto: Option<CryptoError>,
    required: bool,
}

/// How to choose between PCMU and PCMA when a stream has both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CodecChoice {
    /// Our own preference, used when answering: PCMU wherever it appears in the list.
    PreferPcmu,
    /// The peer's order, used when reading an answer: the first G.711 format listed.
    ListOrder,
    /// A re-offer: keep the call's current law if it is still offered, else the other one.
    Keep(Law),
}

/// What a format (payload type) of an `m=` line carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    G711(Law),
    TelephoneEvent,
    Other,
}

/// The audio `m=` line that was chosen, with its codec.
struct ChosenAudio<'a> {
    /// Position among the session's `m=` lines.
    index: usize,
    media: &'a sdp::Media,
    law: Law,
    payload_type: u8,
    telephone_event_pt: Option<u8>,
    offers_rtcp_mux: bool,
    /// The peer's chosen `a=crypto`, when the stream is SRTP.
    crypto: Option<sdes::Crypto>,
}

/// Parses a body with `sdp-types`, after a size check and a sanity check of the `m=` lines
/// (each needs a media type, a transport and at least one format; RFC 8866 §5.14).
fn parse(body: &[u8]) -> Result<sdp::Session, Error> {
    if body.len() > MAX_SDP_BYTES {
        return Err(Error::TooLarge {
            len: body.len(),
            max: MAX_SDP_BYTES,
        });
    }
    let session = sdp::Session::parse(body).map_err(|e| Error::Parse(e.to_string()))?;
    for (index, media) in session.medias.iter().enumerate() {
        let malformed = media.media.trim().is_empty()
            || media.proto.trim().is_empty()
            || media.fmt.split_ascii_whitespace().next().is_none();
        if malformed {
            return Err(Error::Parse(format!(
                "m= line {} lacks a media type, transport or format",
                index + 1
            )));
        }
    }
    Ok(session)
}

/// Finds the first usable audio stream (RFC 3264 §5.1, §6) and chooses its codec.
fn select_audio(
    session: &sdp::Session,
    choice: CodecChoice,
    rule: CryptoRule,
) -> Result<ChosenAudio<'_>, Error> {
    let mut saw_rtp_audio = false;
    let mut other_transport: Option<&str> = None;
    let mut misses = SrtpMisses::default();
    let policy = rule.policy();
    for (index, media) in session.medias.iter().enumerate() {
        if !media.media.eq_ignore_ascii_case("audio") || media.port == 0 {
            continue;
        }
        let proto = sdp::TransportProto::from(media.proto.as_str());
        let secure = matches!(
            proto,
            sdp::TransportProto::RtpSavp | sdp::TransportProto::RtpSavpf
        );
        let plain = matches!(
            proto,
            sdp::TransportProto::RtpAvp | sdp::TransportProto::RtpAvpf
        );
        if !(plain || (secure && policy != Policy::Off)) {
            other_transport.get_or_insert(media.proto.as_str());
            continue;
        }
        saw_rtp_audio = true;
        let formats = payload_types(media);
        let encodings: Vec<(u8, Encoding)> = formats
            .iter()
            .map(|&pt| (pt, encoding_of(media, pt)))
            .collect();
        let first_of = |law: Law| {
            encodings
                .iter()
                .find(|(_, e)| *e == Encoding::G711(law))
                .map(|&(pt, _)| (pt, law))
        };
        let codec = match choice {
            CodecChoice::PreferPcmu => first_of(Law::Mu).or_else(|| first_of(Law::A)),
            CodecChoice::Keep(law) => first_of(law).or_else(|| {
                first_of(match law {
                    Law::Mu => Law::A,
                    Law::A => Law::Mu,
                })
            }),
            CodecChoice::ListOrder => encodings.iter().find_map(|&(pt, e)| match e {
                Encoding::G711(law) => Some((pt, law)),
                _ => None,
            }),
        };
        let Some((payload_type, law)) = codec else {
            continue;
        };
        let Some(crypto) = choose_crypto(media, secure, rule, &mut misses) else {
            continue;
        };
        let telephone_event_pt = encodings
            .iter()
            .find(|(_, e)| *e == Encoding::TelephoneEvent)
            .map(|&(pt, _)| pt);
        return Ok(ChosenAudio {
            index,
            media,
            law,
            payload_type,
            telephone_event_pt,
            offers_rtcp_mux: media.has_attribute(<sdp::RtcpMux as sdp::TypedAttribute>::NAME),
            crypto,
        });
    }
    Err(if let Some(e) = misses.crypto {
        Error::NoUsableCrypto(e)
    } else if misses.required {
        Error::SrtpRequired
    } else if saw_rtp_audio {
        Error::NoCommonCodec
    } else if let Some(proto) = other_transport {
        Error::UnsupportedTransport(proto.to_owned())
    } else {
        Error::NoAudioStream
    })
}

/// Decides the SRTP of a candidate `m=` line (RFC 4568 §7.1.2, §7.1.3): `Some(Some(crypto))` for
/// SRTP, `Some(None)` for plain RTP, `None` to pass the line over (the reason goes to `misses`).
#[allow(clippy::option_option)]
fn choose_crypto(
    media: &sdp::Media,
    secure: bool,
    rule: CryptoRule,
    misses: &mut SrtpMisses,
) -> Option<Option<sdes::Crypto>> {
    let policy = rule.policy();
    if policy == Policy::Off {
        // An RTP/AVP line's a=crypto is ignored: the answer (or our reading of it) is plain.
        return Some(None);
    }
    let found = sdes::first_usable(media).and_then(|c| match (rule, c) {
        // An answer must pick the tag and suite we offered (RFC 4568 §7.1.3).
        (CryptoRule::Offered(_), Some(c))
            if c.tag != sdes::OFFER_TAG || c.suite != sdes::OFFER_SUITE =>
        {
            Err(CryptoError::NotOffered)
        }
        (_, c) => Ok(c),
    });
    match found {
        Ok(Some(crypto)) => Some(Some(crypto)),
        // Best effort: a bad a=crypto on an RTP/AVP line under `offer` falls back to plain RTP.
        Err(_) | Ok(None) if !secure && policy == Policy::Offer => Some(None),
        Err(e) => {
            misses.crypto.get_or_insert(e);
            None
        }
        Ok(None) if secure => {
            misses.crypto.get_or_insert(CryptoError::Missing);
            None
        }
        Ok(None) => {
            misses.required = true;
            None
        }
    }
}

/// The RTP payload types of an `m=` line's format list (RFC 3551 §6: 0-127). Tokens that are not
/// numbers in that range are skipped.
fn payload_types(media: &sdp::Media) -> Vec<u8> {
    media
        .fmt
        .split_ascii_whitespace()
        .filter_map(|token| token.parse::<u8>().ok())
        .filter(|&pt| pt <= 127)
        .collect()
}

/// What payload type `pt` carries on this `m=` line. The first `a=rtpmap` for it decides
/// (RFC 8866 §6.6). Without one, the static assignments of RFC 3551 table 4 apply: 0 is PCMU and 8
/// is PCMA.
fn encoding_of(media: &sdp::Media, pt: u8) -> Encoding {
    let rtpmap = media
        .get_attribute_values(<sdp::RtpMap as sdp::TypedAttribute>::NAME)
        .flatten()
        .filter_map(|value| sdp::RtpMap::from_str(value.trim()).ok())
        .find(|map| map.payload_type == pt);
    match rtpmap {
        Some(map) => {
            let mono = matches!(
                map.encoding_params.as_deref().map(str::trim),
                None | Some("1")
            );
            let name = map.encoding_name.trim();
            if map.clock_rate != CLOCK_RATE_HZ {
                Encoding::Other
            } else if name.eq_ignore_ascii_case("PCMU") && mono {
                Encoding::G711(Law::Mu)
            } else if name.eq_ignore_ascii_case("PCMA") && mono {
                Encoding::G711(Law::A)
            } else if name.eq_ignore_ascii_case("telephone-event") {
                Encoding::TelephoneEvent
            } else {
                Encoding::Other
            }
        }
        None if pt == Law::Mu.payload_type() => Encoding::G711(Law::Mu),
        None if pt == Law::A.payload_type() => Encoding::G711(Law::A),
        None => Encoding::Other,
    }
}

/// Combines the chosen stream with its connection address and direction.
fn negotiated(
    session: &sdp::Session,
    chosen: &ChosenAudio<'_>,
    rtcp_mux: bool,
    sdes: Option<&Sdes>,
) -> Result<Negotiated, Error> {
    let remote_rtp = remote_rtp(session, chosen.media)?;
    let mut direction = direction_attribute(&chosen.media.attributes)
        .or_else(|| direction_attribute(&session.attributes))
        .unwrap_or_default();
    if remote_rtp.ip().is_unspecified() {
        direction = direction.without_receive();
    }
    Ok(Negotiated {
        law: chosen.law,
        payload_type: chosen.payload_type,
        telephone_event_pt: chosen.telephone_event_pt,
        remote_rtp,
        ptime_ms: PTIME_MS,
        direction,
        rtcp_mux,
        srtp: chosen
            .crypto
            .as_ref()
            .zip(sdes)
            .map(|(crypto, sdes)| sdes::keys(sdes, crypto)),
    })
}

/// The peer's RTP address: the first media-level `c=`, or else the session-level one
/// (RFC 8866 §5.7), with the port of the `m=` line. A `/ttl` or `/count` suffix is ignored.
fn remote_rtp(session: &sdp::Session, media: &sdp::Media) -> Result<SocketAddr, Error> {
    let connection = media
        .connections
        .first()
        .or(session.connection.as_ref())
        .ok_or(Error::NoConnectionAddress)?;
    let bad = || Error::BadConnectionAddress(connection.connection_address.clone());
    if connection.nettype != sdp::NetType::In || !connection.addrtype.is_ip() {
        return Err(bad());
    }
    let address = connection.try_address().map_err(|_| bad())?;
    Ok(SocketAddr::new(address.ip, media.port))
}

/// The first direction attribute (RFC 8866 §6.7) in a list of attributes, if there is one.
fn direction_attribute(attributes: &[sdp::Attribute]) -> Option<Direction> {
    attributes
        .iter()
        .filter(|a| a.value.as_deref().is_none_or(|v| v.trim().is_empty()))
        .find_map(|a| sdp::Direction::from_str(a.attribute.trim()).ok())
        .map(Direction::from_sdp)
}

/// The session-level part of our descriptions (RFC 8866 §5): `o=frontdesk <id> <version> IN IP4|IP6
/// <ip>`, `s=`, `c=` and `t=0 0`. An IPv4-mapped IPv6 address is written as IPv4.
fn new_session(ip: IpAddr, session_id: u64, session_version: u64) -> sdp::Session {
    let ip = ip.to_canonical();
    let mut origin = sdp::Origin::with_ip_addr(session_id, session_version, ip);
    origin.set_username(ORIGIN_USERNAME);
    let mut session = sdp::Session::new(origin, SESSION_NAME);
    session.set_connection(sdp::Connection::from_ip_addr(ip));
    session.add_time(sdp::Time::new(0, 0));
    session
}

/// Our audio `m=` line: the codecs in order with their rtpmaps, then telephone-event with its
/// fmtp, ptime, rtcp-mux if wanted, and the direction.
fn audio_media(
    port: u16,
    proto: sdp::TransportProto,
    codecs: &[(u8, Law)],
    telephone_event_pt: Option<u8>,
    direction: Direction,
    rtcp_mux: bool,
) -> sdp::Media {
    let fmt = codecs
        .iter()
        .map(|&(pt, _)| pt)
        .chain(telephone_event_pt)
        .map(|pt| pt.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let mut media = sdp::Media::new(sdp::MediaType::Audio, port, proto, fmt);
    for &(pt, law) in codecs {
        let name = match law {
            Law::Mu => "PCMU",
            Law::A => "PCMA",
        };
        media.add_attribute(sdp::RtpMap::new(pt, name, CLOCK_RATE_HZ));
    }
    if let Some(pt) = telephone_event_pt {
        media.add_attribute(sdp::RtpMap::new(pt, "telephone-event", CLOCK_RATE_HZ));
        let mut fmtp = sdp::Fmtp::new(pt);
        fmtp.add_format_specific_param(sdp::FmtpParam::new(TELEPHONE_EVENTS));
        media.add_attribute(fmtp);
    }
    media.add_attribute_with_value("ptime", PTIME_MS);
    if rtcp_mux {
        media.add_attribute(sdp::RtcpMux);
    }
    media.add_attribute(direction.to_sdp());
    media
}

/// The answer to an `m=` line we do not take (RFC 3264 §6): the same media type, transport and
/// formats, with port 0 and nothing else.
fn rejected_media(offered: &sdp::Media) -> sdp::Media {
    let fmt = offered
        .fmt
        .split_ascii_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut media = sdp::Media::new(
        sdp::MediaType::Audio,
        0,
        sdp::TransportProto::from(offered.proto.trim()),
        fmt,
    );
    media.media = offered.media.trim().to_owned();
    media
}

/// Writes a description as CRLF-terminated SDP text (RFC 8866 §5).
fn serialise(session: &sdp::Session) -> Vec<u8> {
    // `Session`'s Display is `Session::write` into a Vec, which cannot fail.
    session.to_string().into_bytes()
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const LOCAL: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)), 20_000);

    /// Joins lines with CRLF, as SIP bodies are sent.
    fn crlf(lines: &[&str]) -> Vec<u8> {
        let mut s = lines.join("\r\n");
        s.push_str("\r\n");
        s.into_bytes()
    }

    fn text(body: &[u8]) -> String {
        String::from_utf8(body.to_vec()).unwrap()
    }

    fn lines(body: &[u8]) -> Vec<String> {
        text(body)
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }

    /// The `a=`/`m=` lines of the n-th media section of a body.
    fn media_section(body: &[u8], n: usize) -> Vec<String> {
        let all = lines(body);
        let mut sections: Vec<Vec<String>> = Vec::new();
        for line in all {
            if line.starts_with("m=") {
                sections.push(vec![line]);
            } else if let Some(last) = sections.last_mut() {
                last.push(line);
            }
        }
        sections.swap_remove(n)
    }

    fn sock(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// SIPp's built-in uac scenario body (`m=audio [media_port] RTP/AVP 0`).
    fn sipp_offer() -> Vec<u8> {
        crlf(&[
            "v=0",
            "o=user1 53655765 2353687637 IN IP4 198.51.100.7",
            "s=-",
            "c=IN IP4 198.51.100.7",
            "t=0 0",
            "m=audio 6000 RTP/AVP 0",
            "a=rtpmap:0 PCMU/8000",
        ])
    }

    /// A baresip-style offer: PCMU plus telephone-event 101 with events 0-15.
    fn baresip_offer() -> Vec<u8> {
        crlf(&[
            "v=0",
            "o=- 1209767231 3781306183 IN IP4 198.51.100.20",
            "s=-",
            "c=IN IP4 198.51.100.20",
            "t=0 0",
            "a=tool:baresip 3.10.1",
            "m=audio 10004 RTP/AVP 0 101",
            "b=AS:96",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-15",
            "a=ptime:20",
            "a=sendrecv",
            "a=label:1",
            "a=ssrc:4193276151 cname:7b8c3a2e-2f0d-4a21-9d5c-1f2a9b6a0c11",
        ])
    }

    #[test]
    fn sipp_pcmu_offer_is_answered_exactly() {
        let (n, body) = answer(&sipp_offer(), LOCAL, 42).unwrap();
        assert_eq!(
            n,
            Negotiated {
                law: Law::Mu,
                payload_type: 0,
                telephone_event_pt: None,
                remote_rtp: sock("198.51.100.7:6000"),
                ptime_ms: 20,
                direction: Direction::SendRecv,
                rtcp_mux: false,
                srtp: None,
            }
        );
        assert_eq!(
            text(&body),
            "v=0\r\n\
             o=frontdesk 42 42 IN IP4 203.0.113.5\r\n\
             s=frontdesk\r\n\
             c=IN IP4 203.0.113.5\r\n\
             t=0 0\r\n\
             m=audio 20000 RTP/AVP 0\r\n\
             a=rtpmap:0 PCMU/8000\r\n\
             a=ptime:20\r\n\
             a=sendrecv\r\n"
        );
        assert!(n.should_send());
        assert!(n.expects_media());
    }

    #[test]
    fn baresip_offer_keeps_telephone_event_101() {
        let (n, body) = answer(&baresip_offer(), LOCAL, 7).unwrap();
        assert_eq!(n.law, Law::Mu);
        assert_eq!(n.payload_type, 0);
        assert_eq!(n.telephone_event_pt, Some(101));
        assert_eq!(n.remote_rtp, sock("198.51.100.20:10004"));
        assert_eq!(
            media_section(&body, 0),
            [
                "m=audio 20000 RTP/AVP 0 101",
                "a=rtpmap:0 PCMU/8000",
                "a=rtpmap:101 telephone-event/8000",
                "a=fmtp:101 0-16",
                "a=ptime:20",
                "a=sendrecv",
            ]
        );
    }

    #[test]
    fn pcma_only_offer_answers_pcma() {
        // SIPp's uac_pcap scenario offers A-law with telephone-event.
        let offer = crlf(&[
            "v=0",
            "o=user1 53655765 2353687637 IN IP4 198.51.100.7",
            "s=-",
            "c=IN IP4 198.51.100.7",
            "t=0 0",
            "m=audio 6000 RTP/AVP 8 101",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-11,16",
        ]);
        let (n, body) = answer(&offer, LOCAL, 1).unwrap();
        assert_eq!(n.law, Law::A);
        assert_eq!(n.payload_type, 8);
        assert_eq!(n.telephone_event_pt, Some(101));
        let audio = media_section(&body, 0);
        assert_eq!(audio[0], "m=audio 20000 RTP/AVP 8 101");
        assert!(audio.contains(&"a=rtpmap:8 PCMA/8000".to_owned()));
        assert!(!text(&body).contains("PCMU"));
    }

    #[test]
    fn pcmu_is_preferred_even_when_pcma_is_listed_first() {
        let offer = crlf(&[
            "v=0",
            "o=- 1 1 IN IP4 198.51.100.9",
            "s=-",
            "c=IN IP4 198.51.100.9",
            "t=0 0",
            "m=audio 30000 RTP/AVP 8 18 0 101",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:18 G729/8000",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
        ]);
        let (n, body) = answer(&offer, LOCAL, 1).unwrap();
        assert_eq!((n.law, n.payload_type), (Law::Mu, 0));
        let audio = media_section(&body, 0);
        assert_eq!(audio[0], "m=audio 20000 RTP/AVP 0 101");
        assert!(!text(&body).contains("PCMA"));
        assert!(!text(&body).contains("G729"));
    }

    #[test]
    fn static_payload_types_need_no_rtpmap() {
        let offer = crlf(&[
            "v=0",
            "o=- 1 1 IN IP4 198.51.100.9",
            "s=-",
            "c=IN IP4 198.51.100.9",
            "t=0 0",
            "m=audio 30000 RTP/AVP 8 0",
        ]);
        let (n, body) = answer(&offer, LOCAL, 1).unwrap();
        assert_eq!((n.law, n.payload_type), (Law::Mu, 0));
        // Our answer still spells the mapping out.
        assert!(media_section(&body, 0).contains(&"a=rtpmap:0 PCMU/8000".to_owned()));
    }

    #[test]
    fn dynamic_payload_type_for_g711_is_accepted() {
        let offer = crlf(&[
            "v=0",
            "o=- 1 1 IN IP4 198.51.100.9",
            "s=-",
            "c=IN IP4 198.51.100.9",
            "t=0 0",
            "m=audio 30000 RTP/AVP 96 97 98",
            "a=rtpmap:96 opus/48000/2",
            "a=rtpmap:97 pcma/8000/1",
            "a=rtpmap:98 telephone-event/8000",
        ]);
        let (n, body) = answer(&offer, LOCAL, 1).unwrap();
        assert_eq!((n.law, n.payload_type), (Law::A, 97));
        assert_eq!(n.telephone_event_pt, Some(98));
        let audio = media_section(&body, 0);
        assert_eq!(audio[0], "m=audio 20000 RTP/AVP 97 98");
        assert_eq!(audio[1], "a=rtpmap:97 PCMA/8000");
        assert_eq!(audio[2], "a=rtpmap:98 telephone-event/8000");
        assert_eq!(audio[3], "a=fmtp:98 0-16");
    }

    #[test]
    fn telephone_event_keeps_dynamic_pt_96() {
        let offer = crlf(&[
            "v=0",
            "o=- 1 1 IN IP4 198.51.100.9",
            "s=-",
            "c=IN IP4 198.51.100.9",
            "t=0 0",
            "m=audio 30000 RTP/AVP 0 97 96",
            "a=rtpmap:97 telephone-event/48000",
            "a=rtpmap:96 telephone-event/8000",
            "a=fmtp:96 0-15",
        ]);
        let (n, body) = answer(&offer, LOCAL, 1).unwrap();
        // Only the 8 kHz telephone-event matches our G.711 clock.
        assert_eq!(n.telephone_event_pt, Some(96));
        let audio = media_section(&body, 0);
        assert_eq!(audio[0], "m=audio 20000 RTP/AVP 0 96");
        assert!(audio.contains(&"a=rtpmap:96 telephone-event/8000".to_owned()));
        assert!(audio.contains(&"a=fmtp:96 0-16".to_owned()));
        assert!(!text(&body).contains("48000"));
    }

    #[test]
    fn no_telephone_event_offered_means_none_answered() {
        let (n, body) = answer(&sipp_offer(), LOCAL, 1).unwrap();
        assert_eq!(n.telephone_event_pt, None);
        assert!(!text(&body).contains("telephone-event"));
        assert!(!text(&body).contains("fmtp"));
    }

    #[test]
    fn no_common_codec_is_488() {
        let offer = crlf(&[
            "v=0",
            "o=- 1 1 IN IP4 198.51.100.9",
            "s=-",
            "c=IN IP4 198.51.100.9",
            "t=0 0",
            "m=audio 30000 RTP/AVP 18 111 101",
            "a=rtpmap:18 G729/8000",
            "a=fmtp:18 annexb=no",
            "a=rtpmap:111 opus/48000/2",
            "a=rtpmap:101 telephone-event/8000",
        ]);
        let err = answer(&offer, LOCAL, 1).unwrap_err();
        assert_eq!(err, Error::NoCommonCodec);
        assert_eq!(err.sip_status(), 488);
    }

    #[test]
    fn g711_names_at_wrong_rate_or_stereo_are_not_g711() {
        let offer = crlf(&[
            "v=0",
            "o=- 1 1 IN IP4 198.51.100.9",
            "s=-",
            "c=IN IP4 198.51.100.9",
            "t=0 0",
            "m=audio 30000 RTP/AVP 96 97",
            "a=rtpmap:96 PCMU/16000",
            "a=rtpmap:97 PCMA/8000/2",
        ]);
        assert_eq!(answer(&offer, LOCAL, 1).unwrap_err(), Error::NoCommonCodec);
    }

    fn offer_with_direction(session_attr: Option<&str>, media_attr: Option<&str>) -> Vec<u8> {
        let mut l = vec![
            "v=0",
            "o=- 1 1 IN IP4 198.51.100.9",
            "s=-",
            "c=IN IP4 198.51.100.9",
            "t=0 0",
        ];
        l.extend(session_attr);
        l.push("m=audio 30000 RTP/AVP 0");
        l.extend(media_attr);
        crlf(&l)
    }

    #[test]
    fn direction_is_mirrored() {
        for (offered, peer, answered) in [
            (Some("a=sendonly"), Direction::SendOnly, "a=recvonly"),
            (Some("a=recvonly"), Direction::RecvOnly, "a=sendonly"),
            (Some("a=inactive"), Direction::Inactive, "a=inactive"),
            (Some("a=sendrecv"), Direction::SendRecv, "a=sendrecv"),
            (None, Direction::SendRecv, "a=sendrecv"),
        ] {
            let (n, body) = answer(&offer_with_direction(None, offered), LOCAL, 1).unwrap();
            assert_eq!(n.direction, peer, "{offered:?}");
            let audio = media_section(&body, 0);
            assert_eq!(audio.last().unwrap(), answered, "{offered:?}");
            assert_eq!(
                audio
                    .iter()
                    .filter(|l| ["a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"]
                        .contains(&l.as_str()))
                    .count(),
                1
            );
        }
    }

    #[test]
    fn sendonly_offer_means_we_should_not_send() {
        let (n, _) = answer(&offer_with_direction(None, Some("a=sendonly")), LOCAL, 1).unwrap();
        assert!(!n.should_send());
        assert!(n.expects_media());
        let (n, _) = answer(&offer_with_direction(None, Some("a=recvonly")), LOCAL, 1).unwrap();
        assert!(n.should_send());
        assert!(!n.expects_media());
    }

    #[test]
    fn session_level_direction_applies_unless_media_overrides() {
        let (n, body) = answer(&offer_with_direction(Some("a=sendonly"), None), LOCAL, 1).unwrap();
        assert_eq!(n.direction, Direction::SendOnly);
        assert_eq!(media_section(&body, 0).last().unwrap(), "a=recvonly");

        let (n, _) = answer(
            &offer_with_direction(Some("a=sendonly"), Some("a=sendrecv")),
            LOCAL,
            1,
        )
        .unwrap();
        assert_eq!(n.direction, Direction::SendRecv);
    }

    #[test]
    fn hold_with_zero_address_is_sendonly() {
        // RFC 2543-style hold: c=0.0.0.0 with no direction attribute.
        let offer = crlf(&[
            "v=0",
            "o=- 1 2 IN IP4 198.51.100.9",
            "s=-",
            "c=IN IP4 0.0.0.0",
            "t=0 0",
            "m=audio 30000 RTP/AVP 0",
        ]);
        let (n, body) = answer(&offer, LOCAL, 1).unwrap();
        assert_eq!(n.direction, Direction::SendOnly);
        assert_eq!(n.remote_rtp, sock("0.0.0.0:30000"));
        assert!(!n.should_send());
        assert_eq!(media_section(&body, 0).last().unwrap(), "a=recvonly");
        // Our own address stays real: we can still receive music on hold.
        assert!(text(&body).contains("c=IN IP4 203.0.113.5\r\n"));

        // Hold plus a=recvonly leaves nothing: inactive.
        let offer = text(&offer).replace(
            "m=audio 30000 RTP/AVP 0\r\n",
            "m=audio 30000 RTP/AVP 0\r\na=recvonly\r\n",
        );
        let (n, _) = answer(offer.as_bytes(), LOCAL, 1).unwrap();
        assert_eq!(n.direction, Direction::Inactive);
    }

    #[test]
    fn media_level_connection_overrides_session_level() {
        let offer = crlf(&[
            "v=0",
            "o=- 1 1 IN IP4 198.51.100.9",
            "s=-",
            "c=IN IP4 198.51.100.9",
            "t=0 0",
            "m=audio 30000 RTP/AVP 0",
            "c=IN IP4 192.0.2.33",
        ]);
        let (n, _) = answer(&offer, LOCAL, 1).unwrap();
        assert_eq!(n.remote_rtp, sock("192.0.2.33:30000"));

        // Session-level only.
        let (n, _) = answer(&sipp_offer(), LOCAL, 1).unwrap();
        assert_eq!(n.remote_rtp.ip(), "198.51.100.7".parse::<IpAddr>().unwrap());

        // Media-level only, with a multicast-style /ttl suffix that is ignored.
        let offer = crlf(&[
            "v=0",
            "o=- 1 1 IN IP4 198.51.100.9",
            "s=-",
            "t=0 0",
            "m=audio 30002 RTP/AVP 0",
            "c=IN IP4 192.0.2.34/127",
        ]);
        let (n, _) = answer(&offer, LOCAL, 1).unwrap();
        assert_eq!(n.remote_rtp, sock("192.0.2.34:30002"));
    }

    #[test]
    fn missing_or_unusable_connection_address_is_488() {
        let offer = crlf(&[
            "v=0",
            "o=- 1 1 IN IP4 198.51.100.9",
            "s=-",
            "t=0 0",
            "m=audio 30000 RTP/AVP 0",
        ]);
        let err = answer(&offer, LOCAL, 1).unwrap_err();
        assert_eq!(err, Error::NoConnectionAddress);
        assert_eq!(err.sip_status(), 488);

        for c in [
            "c=IN IP4 pbx.example.com",
            "c=ATM NSAP 47.0091.8100.0000",
            "c=IN IP4 300.1.2.3",
        ] {
            let offer = crlf(&[
                "v=0",
                "o=- 1 1 IN IP4 198.51.100.9",
                "s=-",
                c,
                "t=0 0",
                "m=audio 30000 RTP/AVP 0",
            ]);
            let err = answer(&offer, LOCAL, 1).unwrap_err();
            assert!(
                matches!(err, Error::BadConnectionAddress(_)),
                "{c}: {err:?}"
            );
            assert_eq!(err.sip_status(), 488);
        }
    }

    #[test]
    fn audio_and_video_offer_rejects_video_with_port_zero() {
        // Video first, so the answer must keep the offer's m= line order.
        let offer = crlf(&[
            "v=0",
            "o=- 3881442563 3881442563 IN IP4 198.51.100.20",
            "s=-",
            "c=IN IP4 198.51.100.20",
            "t=0 0",
            "m=video 10010 RTP/AVP 96 97",
            "a=rtpmap:96 H264/90000",
            "a=fmtp:96 packetization-mode=1",
            "a=rtpmap:97 VP8/90000",
            "m=audio 10004 RTP/AVP 0 8 101",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-15",
            "a=sendrecv",
        ]);
        let (n, body) = answer(&offer, LOCAL, 9).unwrap();
        assert_eq!(n.remote_rtp, sock("198.51.100.20:10004"));
        assert_eq!(media_section(&body, 0), ["m=video 0 RTP/AVP 96 97"]);
        let audio = media_section(&body, 1);
        assert_eq!(audio[0], "m=audio 20000 RTP/AVP 0 101");
        let parsed = sdp::Session::parse(&body).unwrap();
        assert_eq!(parsed.medias.len(), 2);
    }

    #[test]
    fn secure_audio_is_skipped_for_plain_rtp_and_rejected_alone() {
        let offer = crlf(&[
            "v=0",
            "o=- 1 1 IN IP4 198.51.100.9",
            "s=-",
            "c=IN IP4 198.51.100.9",
            "t=0 0",
            "m=audio 30000 RTP/SAVP 0 8",
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
            "m=audio 30002 RTP/AVP 8 0",
        ]);
        let (n, body) = answer(&offer, LOCAL, 1).unwrap();
        assert_eq!(n.remote_rtp, sock("198.51.100.9:30002"));
        assert_eq!(media_section(&body, 0), ["m=audio 0 RTP/SAVP 0 8"]);
        assert_eq!(media_section(&body, 1)[0], "m=audio 20000 RTP/AVP 0");
        assert!(!text(&body).contains("crypto"));

        let only_secure = crlf(&[
            "v=0",
            "o=- 1 1 IN IP4 198.51.100.9",
            "s=-",
            "c=IN IP4 198.51.100.9",
            "t=0 0",
            "m=audio 30000 RTP/SAVP 0 8",
        ]);
        let err = answer(&only_secure, LOCAL, 1).unwrap_err();
        assert_eq!(err, Error::UnsupportedTransport("RTP/SAVP".into()));
        assert_eq!(err.sip_status(), 488);
    }

    #[test]
    fn avpf_is_answered_in_kind() {
        let offer = crlf(&[
            "v=0",
            "o=- 1 1 IN IP4 198.51.100.9",
            "s=-",
            "c=IN IP4 198.51.100.9",
            "t=0 0",
            "m=audio 30000 RTP/AVPF 0",
        ]);
        let (_, body) = answer(&offer, LOCAL, 1).unwrap();
        assert_eq!(media_section(&body, 0)[0], "m=audio 20000 RTP/AVPF 0");
    }

    #[test]
    fn disabled_streams_are_skipped_and_stay_disabled() {
        let offer = crlf(&[
            "v=0",
            "o=- 1 1 IN IP4 198.51.100.9",
            "s=-",
            "c=IN IP4 198.51.100.9",
            "t=0 0",
            "m=audio 0 RTP/AVP 0",
            "m=audio 30004 RTP/AVP 0",
            "m=text 30006 RTP/AVP 98",
            "a=rtpmap:98 t140/1000",
        ]);
        let (n, body) = answer(&offer, LOCAL, 1).unwrap();
        assert_eq!(n.remote_rtp.port(), 30004);
        assert_eq!(media_section(&body, 0), ["m=audio 0 RTP/AVP 0"]);
        assert_eq!(media_section(&body, 1)[0], "m=audio 20000 RTP/AVP 0");
        assert_eq!(media_section(&body, 2), ["m=text 0 RTP/AVP 98"]);
    }

    #[test]
    fn only_disabled_or_no_audio_is_488() {
        let offer = crlf(&[
            "v=0",
            "o=- 1 1 IN IP4 198.51.100.9",
            "s=-",
            "c=IN IP4 198.51.100.9",
            "t=0 0",
            "m=audio 0 RTP/AVP 0",
            "m=video 30000 RTP/AVP 96",
        ]);
        let err = answer(&offer, LOCAL, 1).unwrap_err();
        assert_eq!(err, Error::NoAudioStream);
        assert_eq!(err.sip_status(), 488);

        let no_media = crlf(&[
            "v=0",
            "o=- 1 1 IN IP4 198.51.100.9",
            "s=-",
            "c=IN IP4 198.51.100.9",
            "t=0 0",
        ]);
        assert_eq!(
            answer(&no_media, LOCAL, 1).unwrap_err(),
            Error::NoAudioStream
        );
    }

    #[test]
    fn rtcp_mux_only_when_offered() {
        let (n, body) = answer(&baresip_offer(), LOCAL, 1).unwrap();
        assert!(!n.rtcp_mux);
        assert!(!text(&body).contains("rtcp-mux"));

        let offer =
            text(&baresip_offer()).replace("a=ptime:20\r\n", "a=ptime:20\r\na=rtcp-mux\r\n");
        let (n, body) = answer(offer.as_bytes(), LOCAL, 1).unwrap();
        assert!(n.rtcp_mux);
        assert!(media_section(&body, 0).contains(&"a=rtcp-mux".to_owned()));
    }

    #[test]
    fn odd_and_multi_ports_are_accepted() {
        // RFC 3550 only recommends even RTP ports; NATs and SBCs hand out odd ones.
        let offer = text(&sipp_offer()).replace("m=audio 6000 ", "m=audio 49171 ");
        let (n, _) = answer(offer.as_bytes(), LOCAL, 1).unwrap();
        assert_eq!(n.remote_rtp.port(), 49171);
        let offer = text(&sipp_offer()).replace("m=audio 6000 ", "m=audio 6000/2 ");
        let (n, body) = answer(offer.as_bytes(), LOCAL, 1).unwrap();
        assert_eq!(n.remote_rtp.port(), 6000);
        assert_eq!(media_section(&body, 0)[0], "m=audio 20000 RTP/AVP 0");
    }

    #[test]
    fn ipv6_offer_and_local_address() {
        let offer = crlf(&[
            "v=0",
            "o=- 1 1 IN IP6 2001:db8::20",
            "s=-",
            "c=IN IP6 2001:db8::20",
            "t=0 0",
            "m=audio 10004 RTP/AVP 0",
        ]);
        let local = SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5)),
            20_002,
        );
        let (n, body) = answer(&offer, local, 5).unwrap();
        assert_eq!(n.remote_rtp, sock("[2001:db8::20]:10004"));
        let l = lines(&body);
        assert_eq!(l[1], "o=frontdesk 5 5 IN IP6 2001:db8::5");
        assert_eq!(l[3], "c=IN IP6 2001:db8::5");
        assert_eq!(media_section(&body, 0)[0], "m=audio 20002 RTP/AVP 0");

        // An IPv4-mapped IPv6 socket address (dual-stack socket) is written as IPv4.
        let mapped = SocketAddr::new(
            IpAddr::V6(Ipv4Addr::new(203, 0, 113, 5).to_ipv6_mapped()),
            20_000,
        );
        let (_, body) = answer(&sipp_offer(), mapped, 5).unwrap();
        assert!(text(&body).contains("c=IN IP4 203.0.113.5\r\n"));
    }

    #[test]
    fn reoffer_keeps_the_current_law_or_switches() {
        let both = crlf(&[
            "v=0",
            "o=x 1 2 IN IP4 198.51.100.7",
            "s=-",
            "c=IN IP4 198.51.100.7",
            "t=0 0",
            "m=audio 7000 RTP/AVP 0 8",
            "a=sendonly",
        ]);
        let (n, body) = answer_reoffer(&both, LOCAL, 42, 44, Law::A).unwrap();
        assert_eq!((n.law, n.payload_type), (Law::A, 8));
        assert_eq!(n.direction, Direction::SendOnly);
        assert!(text(&body).contains("a=recvonly"));
        assert_eq!(lines(&body)[1], "o=frontdesk 42 44 IN IP4 203.0.113.5");
        let (n, _) = answer_reoffer(&both, LOCAL, 42, 44, Law::Mu).unwrap();
        assert_eq!(n.law, Law::Mu);
        let alaw_only = crlf(&[
            "v=0",
            "o=x 1 2 IN IP4 198.51.100.7",
            "s=-",
            "c=IN IP4 198.51.100.7",
            "t=0 0",
            "m=audio 7002 RTP/AVP 8",
        ]);
        let (n, _) = answer_reoffer(&alaw_only, LOCAL, 42, 44, Law::Mu).unwrap();
        assert_eq!((n.law, n.remote_rtp.port()), (Law::A, 7002));
    }

    #[test]
    fn answer_with_version_sets_origin_version() {
        let (_, body) = answer_with_version(&sipp_offer(), LOCAL, 42, 43).unwrap();
        assert_eq!(lines(&body)[1], "o=frontdesk 42 43 IN IP4 203.0.113.5");
    }

    #[test]
    fn answers_are_crlf_and_reparse() {
        for offer in [sipp_offer(), baresip_offer()] {
            let (_, body) = answer(&offer, LOCAL, u64::MAX).unwrap();
            let t = text(&body);
            assert!(t.ends_with("\r\n"));
            assert_eq!(
                t.matches('\n').count(),
                t.matches("\r\n").count(),
                "bare LF in {t:?}"
            );
            let parsed = sdp::Session::parse(&body).unwrap();
            assert_eq!(parsed.origin.username.as_deref(), Some("frontdesk"));
            assert_eq!(parsed.origin.sess_id, u64::MAX.to_string());
            assert_eq!(parsed.medias.len(), 1);
            assert_eq!(parsed.times.len(), 1);
        }
    }

    #[test]
    fn offer_has_the_documented_shape() {
        let body = offer(LOCAL, 1234);
        assert_eq!(
            text(&body),
            "v=0\r\n\
             o=frontdesk 1234 1234 IN IP4 203.0.113.5\r\n\
             s=frontdesk\r\n\
             c=IN IP4 203.0.113.5\r\n\
             t=0 0\r\n\
             m=audio 20000 RTP/AVP 0 8 101\r\n\
             a=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\n\
             a=fmtp:101 0-16\r\n\
             a=ptime:20\r\n\
             a=sendrecv\r\n"
        );
    }

    #[test]
    fn late_offer_round_trip_with_sipp_answer() {
        let _ours = offer(LOCAL, 77);
        // SIPp answering from a uas scenario: PCMU only, no telephone-event.
        let sipp_answer = crlf(&[
            "v=0",
            "o=user1 53655765 2353687637 IN IP4 198.51.100.7",
            "s=-",
            "c=IN IP4 198.51.100.7",
            "t=0 0",
            "m=audio 6000 RTP/AVP 0",
            "a=rtpmap:0 PCMU/8000",
        ]);
        let n = accept_answer(&sipp_answer).unwrap();
        assert_eq!(
            n,
            Negotiated {
                law: Law::Mu,
                payload_type: 0,
                telephone_event_pt: None,
                remote_rtp: sock("198.51.100.7:6000"),
                ptime_ms: 20,
                direction: Direction::SendRecv,
                rtcp_mux: false,
                srtp: None,
            }
        );
    }

    #[test]
    fn late_offer_round_trip_with_baresip_answer() {
        // baresip configured for PCMA answers with its preference first and keeps our PT 101.
        let baresip_answer = crlf(&[
            "v=0",
            "o=- 2890844527 2890844527 IN IP4 198.51.100.20",
            "s=-",
            "c=IN IP4 198.51.100.20",
            "t=0 0",
            "m=audio 10006 RTP/AVP 8 0 101",
            "b=AS:96",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-15",
            "a=ptime:20",
            "a=sendrecv",
            "a=rtcp-mux",
        ]);
        let n = accept_answer(&baresip_answer).unwrap();
        assert_eq!((n.law, n.payload_type), (Law::A, 8));
        assert_eq!(n.telephone_event_pt, Some(101));
        assert_eq!(n.remote_rtp, sock("198.51.100.20:10006"));
        assert_eq!(n.direction, Direction::SendRecv);
        // We never offered rtcp-mux, so an answer cannot turn it on.
        assert!(!n.rtcp_mux);
    }

    #[test]
    fn late_offer_round_trip_through_our_own_answer() {
        let peer = sock("198.51.100.40:40000");
        let our_offer = offer(LOCAL, 1);
        let (as_answerer, their_answer) = answer(&our_offer, peer, 2).unwrap();
        assert_eq!(as_answerer.remote_rtp, LOCAL);
        assert_eq!(as_answerer.telephone_event_pt, Some(TELEPHONE_EVENT_PT));
        let as_offerer = accept_answer(&their_answer).unwrap();
        assert_eq!(as_offerer.remote_rtp, peer);
        assert_eq!(as_offerer.law, as_answerer.law);
        assert_eq!(as_offerer.payload_type, as_answerer.payload_type);
        assert_eq!(as_offerer.telephone_event_pt, Some(TELEPHONE_EVENT_PT));
    }

    #[test]
    fn rejected_or_unusable_answers_are_errors() {
        let rejected = crlf(&[
            "v=0",
            "o=- 1 1 IN IP4 198.51.100.20",
            "s=-",
            "c=IN IP4 198.51.100.20",
            "t=0 0",
            "m=audio 0 RTP/AVP 0",
        ]);
        assert_eq!(accept_answer(&rejected).unwrap_err(), Error::NoAudioStream);
        let g729 = text(&rejected).replace("m=audio 0 RTP/AVP 0", "m=audio 6000 RTP/AVP 18");
        assert_eq!(
            accept_answer(g729.as_bytes()).unwrap_err(),
            Error::NoCommonCodec
        );
        assert!(matches!(accept_answer(b"").unwrap_err(), Error::Parse(_)));
        let held = text(&rejected)
            .replace("c=IN IP4 198.51.100.20", "c=IN IP4 0.0.0.0")
            .replace("m=audio 0 ", "m=audio 6000 ");
        let n = accept_answer(held.as_bytes()).unwrap();
        assert_eq!(n.direction, Direction::SendOnly);
        assert!(!n.should_send());
    }

    #[test]
    fn malformed_bodies_are_400() {
        let base = text(&sipp_offer());
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("whitespace", b"\r\n\r\n  ".to_vec()),
            ("plain text", b"hello, this is not SDP".to_vec()),
            ("json", br#"{"sdp": "v=0"}"#.to_vec()),
            ("binary", (0u8..=255).collect()),
            ("wrong version", base.replace("v=0", "v=1").into_bytes()),
            (
                "port too big",
                base.replace("m=audio 6000 ", "m=audio 65536 ").into_bytes(),
            ),
            (
                "negative port",
                base.replace("m=audio 6000 ", "m=audio -1 ").into_bytes(),
            ),
            (
                "port not a number",
                base.replace("m=audio 6000 ", "m=audio abc ").into_bytes(),
            ),
            (
                "m= without formats",
                base.replace("m=audio 6000 RTP/AVP 0", "m=audio 6000 RTP/AVP")
                    .into_bytes(),
            ),
            (
                "m= with empty fields",
                base.replace("m=audio 6000 RTP/AVP 0", "m= 6000  0")
                    .into_bytes(),
            ),
            ("line without =", base.replace("s=-", "s-").into_bytes()),
            (
                "bare CR inside a line",
                base.replace("s=-", "s=a\rb").into_bytes(),
            ),
            (
                "two c= lines",
                base.replace("t=0 0", "c=IN IP4 192.0.2.1\r\nt=0 0")
                    .into_bytes(),
            ),
            (
                "not UTF-8",
                base.replace("s=-", "s=\u{FFFD}")
                    .into_bytes()
                    .iter()
                    .map(|&b| if b == 0xEF { 0xFF } else { b })
                    .collect(),
            ),
            ("too large", {
                let mut big = base.clone().into_bytes();
                while big.len() <= MAX_SDP_BYTES {
                    big.extend_from_slice(b"a=x-padding:0123456789abcdef0123456789abcdef\r\n");
                }
                big
            }),
        ];
        for (name, body) in cases {
            let err = answer(&body, LOCAL, 1).expect_err(name);
            assert_eq!(err.sip_status(), 400, "{name}: {err:?}");
            let err = accept_answer(&body).expect_err(name);
            assert_eq!(err.sip_status(), 400, "{name}: {err:?}");
        }
        assert!(matches!(
            answer(&vec![b'v'; 10 * 1024 * 1024], LOCAL, 1),
            Err(Error::TooLarge {
                len: 10_485_760,
                max: MAX_SDP_BYTES
            })
        ));
    }

    #[test]
    fn lf_only_bodies_are_accepted() {
        // Some stacks send bare LF line endings; RFC 8866 §5 asks parsers to accept them.
        let offer = text(&baresip_offer()).replace("\r\n", "\n");
        let (n, body) = answer(offer.as_bytes(), LOCAL, 1).unwrap();
        assert_eq!(n.telephone_event_pt, Some(101));
        assert!(text(&body).contains("\r\n"));
    }

    #[test]
    fn sloppy_but_usable_offers_are_accepted() {
        // Trailing spaces, lower-case names, odd tokens in the format list, a huge PT and an
        // rtpmap that does not parse: all tolerated.
        let offer = crlf(&[
            "v=0",
            "o=- 1 1 IN IP4 198.51.100.9",
            "s=-",
            "c=IN IP4 198.51.100.9 ",
            "t=0 0",
            "m=AUDIO 30000 rtp/avp 200 x 96 8",
            "a=rtpmap:96 ",
            "a=rtpmap:8 pcma/8000 ",
            "a=SENDONLY",
        ]);
        let (n, body) = answer(&offer, LOCAL, 1).unwrap();
        assert_eq!((n.law, n.payload_type), (Law::A, 8));
        assert_eq!(n.direction, Direction::SendOnly);
        assert_eq!(media_section(&body, 0)[0], "m=audio 20000 RTP/AVP 8");
    }

    /// Tiny deterministic generator (64-bit LCG) so the fuzz tests need no extra crates.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }
    }

    #[test]
    fn truncated_and_mutated_bodies_never_panic() {
        let seeds = [sipp_offer(), baresip_offer(), offer(LOCAL, 3)];
        for seed in &seeds {
            for end in 0..=seed.len() {
                let _ = answer(&seed[..end], LOCAL, 1);
                let _ = accept_answer(&seed[..end]);
            }
        }
        let alphabet = b"=0123456789 \r\n:/.-amcvtoIPN";
        let mut rng = Lcg(0x5eed);
        let mut accepted = 0;
        for round in 0..6_000 {
            let mut body = seeds[round % seeds.len()].clone();
            for _ in 0..=(rng.next() % 4) {
                let at = (rng.next() as usize) % body.len();
                match rng.next() % 4 {
                    0 => body[at] = alphabet[(rng.next() as usize) % alphabet.len()],
                    1 => body[at] = rng.next() as u8,
                    2 => {
                        body.remove(at);
                    }
                    _ => body.insert(at, alphabet[(rng.next() as usize) % alphabet.len()]),
                }
            }
            if let Ok((n, answer_body)) = answer(&body, LOCAL, 1) {
                accepted += 1;
                // Whatever we accepted, our answer must parse and keep the m= line count.
                let ours = sdp::Session::parse(&answer_body).unwrap();
                let theirs = sdp::Session::parse(&body).unwrap();
                assert_eq!(ours.medias.len(), theirs.medias.len());
                assert!(matches!(n.payload_type, 0..=127));
            }
            let _ = accept_answer(&body);
        }
        // The mutations are small, so many bodies still work: the accepting path was exercised.
        assert!(
            accepted > 1_000,
            "only {accepted} mutated offers were accepted"
        );
    }

    #[test]
    fn sip_status_mapping() {
        assert_eq!(Error::Parse("x".into()).sip_status(), 400);
        assert_eq!(Error::TooLarge { len: 1, max: 0 }.sip_status(), 400);
        for e in [
            Error::NoAudioStream,
            Error::UnsupportedTransport("RTP/SAVP".into()),
            Error::NoCommonCodec,
            Error::NoConnectionAddress,
            Error::BadConnectionAddress("x".into()),
        ] {
            assert_eq!(e.sip_status(), 488, "{e}");
        }
    }

    #[test]
    fn direction_helpers() {
        for d in [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ] {
            assert_eq!(d.mirrored().mirrored(), d);
            assert_eq!(d.sends(), d.mirrored().receives());
            assert_eq!(Direction::from_sdp(d.to_sdp()), d);
            assert_eq!(d.to_sdp().as_str(), d.as_str());
        }
    }

    // ---- SRTP with SDES keys (RFC 4568) ----

    use crate::media::srtp::{KeyError, KeyParams, Suite};

    const PEER_KEY_80: &str = "inline:4fl6DT4Bi+DWT6MsBt5BOQ7Gda1Jiv7rtpYLOqvm";
    const PEER_KEY_32: &str = "inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0";

    /// What baresip 1.0's `mediaenc srtp-mand` offers: RTP/SAVP, its suites in order.
    fn savp_offer(cryptos: &[String]) -> Vec<u8> {
        let mut l: Vec<String> = [
            "v=0",
            "o=- 1209767231 3781306183 IN IP4 198.51.100.20",
            "s=-",
            "c=IN IP4 198.51.100.20",
            "t=0 0",
            "m=audio 10004 RTP/SAVP 0 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-15",
            "a=ptime:20",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        l.extend(cryptos.iter().map(|c| format!("a=crypto:{c}")));
        let refs: Vec<&str> = l.iter().map(String::as_str).collect();
        crlf(&refs)
    }

    fn baresip_savp() -> Vec<u8> {
        savp_offer(&[
            format!("1 AES_256_CM_HMAC_SHA1_80 inline:{}", "A".repeat(62)),
            format!("2 AES_CM_128_HMAC_SHA1_32 {PEER_KEY_32}"),
            format!("3 AES_CM_128_HMAC_SHA1_80 {PEER_KEY_80}|2^31"),
        ])
    }

    fn crypto_lines(body: &[u8]) -> Vec<String> {
        lines(body)
            .into_iter()
            .filter(|l| l.starts_with("a=crypto:"))
            .collect()
    }

    #[test]
    fn savp_offer_is_answered_with_the_first_usable_suite_and_our_key() {
        for policy in [Policy::Offer, Policy::Require] {
            let ours = Sdes::new(policy);
            let (n, body) = answer_sdes(&baresip_savp(), LOCAL, 9, 9, &ours).unwrap();
            assert_eq!(media_section(&body, 0)[0], "m=audio 20000 RTP/SAVP 0 101");
            let crypto = crypto_lines(&body);
            assert_eq!(
                crypto,
                vec![format!(
                    "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{}",
                    ours.key.to_base64()
                )],
                "same tag and suite as the first usable line, our key"
            );
            let keys = n.srtp.expect("SRTP negotiated");
            assert_eq!(keys.suite, Suite::AesCm128HmacSha1_32);
            assert_eq!(keys.local, ours.key);
            assert_eq!(keys.remote, PEER_KEY_32.parse::<KeyParams>().unwrap().key);
            // The answer reparses and its a=crypto is usable by the peer.
            let reparsed = sdp::Session::parse(&body).unwrap();
            let c = sdes::first_usable(&reparsed.medias[0]).unwrap().unwrap();
            assert_eq!(c.key.key, ours.key);
        }
    }

    #[test]
    fn policy_off_rejects_savp_and_ignores_crypto_on_avp() {
        let off = Sdes::new(Policy::Off);
        let err = answer_sdes(&baresip_savp(), LOCAL, 1, 1, &off).unwrap_err();
        assert_eq!(err, Error::UnsupportedTransport("RTP/SAVP".into()));
        assert_eq!(err.sip_status(), 488);
        // The plain functions are policy off too.
        assert_eq!(
            answer(&baresip_savp(), LOCAL, 1).unwrap_err(),
            Error::UnsupportedTransport("RTP/SAVP".into())
        );
        let best_effort = text(&baresip_savp()).replace("RTP/SAVP", "RTP/AVP");
        let (n, body) = answer_sdes(best_effort.as_bytes(), LOCAL, 1, 1, &off).unwrap();
        assert!(n.srtp.is_none());
        assert!(crypto_lines(&body).is_empty());
        assert_eq!(media_section(&body, 0)[0], "m=audio 20000 RTP/AVP 0 101");
    }

    #[test]
    fn policy_offer_takes_best_effort_srtp_and_plain_rtp() {
        let sdes = Sdes::new(Policy::Offer);
        // RTP/AVP with a=crypto (baresip `mediaenc srtp`): answered with SRTP in RTP/AVP.
        let best_effort = text(&baresip_savp()).replace("RTP/SAVP", "RTP/AVP");
        let (n, body) = answer_sdes(best_effort.as_bytes(), LOCAL, 1, 1, &sdes).unwrap();
        assert_eq!(n.srtp.unwrap().suite, Suite::AesCm128HmacSha1_32);
        assert_eq!(media_section(&body, 0)[0], "m=audio 20000 RTP/AVP 0 101");
        assert_eq!(crypto_lines(&body).len(), 1);
        // Plain RTP stays plain.
        let (n, body) = answer_sdes(&sipp_offer(), LOCAL, 1, 1, &sdes).unwrap();
        assert!(n.srtp.is_none());
        assert!(crypto_lines(&body).is_empty());
        // A broken a=crypto on RTP/AVP falls back to plain RTP rather than failing the call.
        let broken = savp_offer(&["1 AES_CM_128_HMAC_SHA1_80 inline:bad".into()]);
        let broken = text(&broken).replace("RTP/SAVP", "RTP/AVP");
        let (n, _) = answer_sdes(broken.as_bytes(), LOCAL, 1, 1, &sdes).unwrap();
        assert!(n.srtp.is_none());
    }

    #[test]
    fn policy_require_refuses_plain_rtp_with_488() {
        let sdes = Sdes::new(Policy::Require);
        for plain in [sipp_offer(), baresip_offer()] {
            let err = answer_sdes(&plain, LOCAL, 1, 1, &sdes).unwrap_err();
            assert_eq!(err, Error::SrtpRequired);
            assert_eq!(err.sip_status(), 488);
            assert!(err.to_string().contains("SRTP is required"), "{err}");
        }
        // A plain line first and an SRTP one second: the SRTP line is taken, the plain one rejected.
        let two = text(&sipp_offer())
            + &text(&baresip_savp())
                .split("\r\n")
                .skip_while(|l| !l.starts_with("m="))
                .collect::<Vec<_>>()
                .join("\r\n");
        let (n, body) = answer_sdes(two.as_bytes(), LOCAL, 1, 1, &sdes).unwrap();
        assert!(n.srtp.is_some());
        assert_eq!(media_section(&body, 0)[0], "m=audio 0 RTP/AVP 0");
        assert!(media_section(&body, 1)[0].starts_with("m=audio 20000 RTP/SAVP"));
    }

    #[test]
    fn unusable_crypto_is_488_with_a_reason_and_no_key() {
        let sdes = Sdes::new(Policy::Offer);
        let cases: Vec<(Vec<String>, CryptoError)> = vec![
            (vec![], CryptoError::Missing),
            (
                vec!["1 AES_CM_128_HMAC_SHA1_80 inline:QUJD".into()],
                CryptoError::Key(KeyError::WrongLength(3)),
            ),
            (
                vec![format!("1 AES_CM_128_HMAC_SHA1_80 {PEER_KEY_80}|2^20|1:4")],
                CryptoError::Key(KeyError::Mki),
            ),
            (
                vec![
                    format!("1 F8_128_HMAC_SHA1_80 {PEER_KEY_80}"),
                    format!("2 AES_CM_128_HMAC_SHA1_80 {PEER_KEY_80} UNENCRYPTED_SRTP"),
                ],
                CryptoError::Suite("F8_128_HMAC_SHA1_80".into()),
            ),
            (
                vec![format!(
                    "1 AES_CM_128_HMAC_SHA1_80 uri:sip:{}",
                    &PEER_KEY_80[7..]
                )],
                CryptoError::Key(KeyError::NotInline),
            ),
        ];
        for (cryptos, why) in cases {
            let err = answer_sdes(&savp_offer(&cryptos), LOCAL, 1, 1, &sdes).unwrap_err();
            assert_eq!(err, Error::NoUsableCrypto(why.clone()), "{cryptos:?}");
            assert_eq!(err.sip_status(), 488);
            let reason = err.to_string();
            assert!(reason.starts_with("no usable a=crypto"), "{reason}");
            assert!(!reason.contains(&PEER_KEY_80[7..]), "{reason}");
        }
    }

    #[test]
    fn late_offer_with_sdes_round_trip() {
        let peer = sock("198.51.100.40:40000");
        for policy in [Policy::Offer, Policy::Require] {
            let ours = Sdes::new(policy);
            let offer_body = offer_sdes(LOCAL, 5, Some(&ours));
            let m = &media_section(&offer_body, 0)[0];
            let expected_proto = if policy == Policy::Require {
                "RTP/SAVP"
            } else {
                "RTP/AVP"
            };
            assert_eq!(m, &format!("m=audio 20000 {expected_proto} 0 8 101"));
            assert_eq!(
                crypto_lines(&offer_body),
                vec![format!(
                    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}",
                    ours.key.to_base64()
                )]
            );
            // The peer (here: our own answerer with its own key) answers; we read its answer.
            let theirs = Sdes::new(Policy::Offer);
            let (as_answerer, their_answer) =
                answer_sdes(&offer_body, peer, 6, 6, &theirs).unwrap();
            let as_offerer = accept_answer_sdes(&their_answer, Some(&ours)).unwrap();
            let (a, o) = (as_answerer.srtp.unwrap(), as_offerer.srtp.unwrap());
            assert_eq!(
                (a.local.clone(), a.remote.clone()),
                (o.remote.clone(), o.local.clone())
            );
            assert_eq!(o.suite, Suite::AesCm128HmacSha1_80);
        }
        // Policy off offers exactly the plain offer.
        assert_eq!(
            offer_sdes(LOCAL, 5, Some(&Sdes::new(Policy::Off))),
            offer(LOCAL, 5)
        );
    }

    #[test]
    fn answers_to_our_sdes_offer_are_checked() {
        let answer_with = |proto: &str, crypto: Option<&str>| {
            let mut l = vec![
                "v=0".to_string(),
                "o=- 1 1 IN IP4 198.51.100.20".into(),
                "s=-".into(),
                "c=IN IP4 198.51.100.20".into(),
                "t=0 0".into(),
                format!("m=audio 10006 {proto} 0 101"),
            ];
            l.extend(crypto.map(|c| format!("a=crypto:{c}")));
            let refs: Vec<&str> = l.iter().map(String::as_str).collect();
            crlf(&refs)
        };
        let require = Sdes::new(Policy::Require);
        let offer_ = Sdes::new(Policy::Offer);
        let good = format!("1 AES_CM_128_HMAC_SHA1_80 {PEER_KEY_80}");
        let n = accept_answer_sdes(&answer_with("RTP/SAVP", Some(&good)), Some(&require)).unwrap();
        assert!(n.srtp.is_some());
        assert_eq!(
            accept_answer_sdes(&answer_with("RTP/AVP", None), Some(&require)).unwrap_err(),
            Error::SrtpRequired
        );
        assert!(
            accept_answer_sdes(&answer_with("RTP/AVP", None), Some(&offer_))
                .unwrap()
                .srtp
                .is_none()
        );
        let wrong_tag = format!("7 AES_CM_128_HMAC_SHA1_80 {PEER_KEY_80}");
        assert_eq!(
            accept_answer_sdes(&answer_with("RTP/SAVP", Some(&wrong_tag)), Some(&require))
                .unwrap_err(),
            Error::NoUsableCrypto(CryptoError::NotOffered)
        );
        let wrong_suite = format!("1 AES_CM_128_HMAC_SHA1_32 {PEER_KEY_80}");
        assert_eq!(
            accept_answer_sdes(&answer_with("RTP/SAVP", Some(&wrong_suite)), Some(&offer_))
                .unwrap_err(),
            Error::NoUsableCrypto(CryptoError::NotOffered)
        );
    }

    #[test]
    fn reoffers_keep_an_srtp_call_secure() {
        let sdes = Sdes::new(Policy::Offer);
        let (first, _) = answer_sdes(&baresip_savp(), LOCAL, 3, 3, &sdes).unwrap();
        assert!(first.srtp.is_some());
        // A plain re-offer would downgrade the call: refused even though the policy is `offer`.
        assert_eq!(
            answer_reoffer_sdes(&sipp_offer(), LOCAL, 3, 4, Law::Mu, &sdes, true).unwrap_err(),
            Error::SrtpRequired
        );
        // The same SRTP offer again keeps both keys; our answer reuses our key.
        let (again, body) =
            answer_reoffer_sdes(&baresip_savp(), LOCAL, 3, 4, Law::Mu, &sdes, true).unwrap();
        assert_eq!(again.srtp, first.srtp);
        assert_eq!(lines(&body)[1], "o=frontdesk 3 4 IN IP4 203.0.113.5");
        // A plain call may take a plain re-offer.
        assert!(answer_reoffer_sdes(&sipp_offer(), LOCAL, 3, 4, Law::Mu, &sdes, false).is_ok());
    }

    #[test]
    fn mutated_srtp_offers_never_panic() {
        let sdes = Sdes::new(Policy::Require);
        let seed = baresip_savp();
        for end in 0..=seed.len() {
            let _ = answer_sdes(&seed[..end], LOCAL, 1, 1, &sdes);
            let _ = accept_answer_sdes(&seed[..end], Some(&sdes));
        }
        let alphabet = b"=0123456789 :|^;/+ACDEFGHIMSTU_inline";
        let mut rng = Lcg(0xc0ffee);
        let mut srtp = 0;
        for _ in 0..4_000 {
            let mut body = seed.clone();
            for _ in 0..=(rng.next() % 3) {
                let at = (rng.next() as usize) % body.len();
                match rng.next() % 3 {
                    0 => body[at] = alphabet[(rng.next() as usize) % alphabet.len()],
                    1 => {
                        body.remove(at);
                    }
                    _ => body.insert(at, alphabet[(rng.next() as usize) % alphabet.len()]),
                }
            }
            if let Ok((n, _)) = answer_sdes(&body, LOCAL, 1, 1, &sdes) {
                assert!(n.srtp.is_some(), "require never answers plain RTP");
                srtp += 1;
            }
            let _ = accept_answer_sdes(&body, Some(&sdes));
        }
        assert!(srtp > 500, "only {srtp} mutated offers were accepted");
    }
}
