//! SRTP and SRTCP (RFC 3711) for one call, keyed by SDES (RFC 4568 `a=crypto` inline keys).
//!
//! This module is the sans-IO part of frontdesk's media encryption: it turns plain RTP/RTCP
//! datagrams into SRTP/SRTCP ones and back, parses and writes the `inline:` key parameters of an
//! `a=crypto` line (RFC 4568 §6.1, §9.2), and generates master keys with a CSPRNG. It does no I/O
//! and reads no clock. The cipher itself (AES-CM, HMAC-SHA1, the key derivation of RFC 3711 §4.3)
//! is the `webrtc-srtp` crate's; this module adds what frontdesk needs around it:
//!
//! - [`Suite`]: the two crypto suites we speak, `AES_CM_128_HMAC_SHA1_80` and
//!   `AES_CM_128_HMAC_SHA1_32` (RFC 4568 §6.2), 128-bit key and 112-bit salt (30 bytes of key
//!   material), an 80- or 32-bit SRTP tag and always an 80-bit SRTCP tag (RFC 3711 §5.2);
//! - [`MasterKey`]: 30 bytes of key material whose `Debug` never shows them and which are wiped on
//!   drop; [`MasterKey::generate`] draws them from a CSPRNG;
//! - [`KeyParams`]: the `inline:<base64 key||salt>[|lifetime][|MKI:len]` syntax. MKIs are refused
//!   (we never rekey within a call), so are lifetimes below 2^10 packets;
//! - [`SrtpSession`]: one call's transform, our key outbound and the peer's inbound, each with its
//!   own RTP and RTCP state, a 64-packet replay window (RFC 3711 §3.3.2), and counters of what was
//!   dropped. A datagram that fails (too short, bad tag, replay, unencrypted SRTCP) is an
//!   [`Error`]: the caller drops it and the call goes on. Nothing here panics on input.
//!
//! Checks done here before the crate sees a packet, because it does not do them itself: SRTCP
//! shorter than header + SSRC + index + tag (the crate would index out of bounds), and SRTCP with
//! the E bit clear, which the crate would return unauthenticated (RFC 3711 §3.4 makes the tag
//! mandatory; we never negotiate `UNENCRYPTED_SRTCP`).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use rand::RngCore as _;
use webrtc_srtp::context::Context;
use webrtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use webrtc_srtp::protection_profile::ProtectionProfile;

use super::rtp;

/// Bytes of an AES-128 master key (RFC 3711 §8.2).
pub const KEY_BYTES: usize = 16;
/// Bytes of a master salt (112 bits, RFC 3711 §8.2).
pub const SALT_BYTES: usize = 14;
/// Bytes of key material in one `inline:` parameter: key then salt (RFC 4568 §6.1).
pub const KEY_MATERIAL_BYTES: usize = KEY_BYTES + SALT_BYTES;
/// Packets of the replay window (RFC 3711 §3.3.2 asks for at least 64).
pub const REPLAY_WINDOW: usize = 64;
/// Bytes of the SRTCP index word with its E bit (RFC 3711 §3.4).
const SRTCP_INDEX_BYTES: usize = 4;
/// Bytes of the SRTCP authentication tag: 80 bits for both suites (RFC 3711 §5.2, RFC 4568 §6.2).
const SRTCP_TAG_BYTES: usize = 10;
/// Bytes of an RTCP header plus the sender's SSRC (RFC 3550 §6.4), the unencrypted part of SRTCP.
const RTCP_HEADER_BYTES: usize = 8;
/// Smallest lifetime (in packets) we accept in key parameters; below it the key would expire within
/// seconds of a call and we cannot rekey (RFC 4568 §6.1 lets us refuse such a line).
const MIN_LIFETIME_LOG2: u32 = 10;

/// An SRTP crypto suite (RFC 4568 §6.2) that frontdesk speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    /// `AES_CM_128_HMAC_SHA1_80`: AES-128 counter mode, 80-bit HMAC-SHA1 tag on SRTP and SRTCP.
    /// The default suite of RFC 3711, the one we offer.
    AesCm128HmacSha1_80,
    /// `AES_CM_128_HMAC_SHA1_32`: as `_80` with a 32-bit SRTP tag (SRTCP keeps 80 bits).
    AesCm128HmacSha1_32,
}

impl Suite {
    /// Every suite we accept, in our order of preference.
    pub const ALL: [Suite; 2] = [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32];

    /// The suite's name as written in `a=crypto` (RFC 4568 §6.2).
    pub const fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// The suite named `name` (case-sensitive, as RFC 4568 §9.2 registers them), if we speak it.
    pub fn from_name(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Bytes of the SRTP authentication tag: 10 (`_80`) or 4 (`_32`).
    pub const fn rtp_tag_bytes(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 => 4,
        }
    }

    const fn profile(self) -> ProtectionProfile {
        match self {
            Suite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            Suite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        }
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A master key and master salt (RFC 3711 §3.2.1): 16 + 14 bytes. Its `Debug` prints
/// `MasterKey(<redacted>)`; it has no `Display`. The bytes are overwritten when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; KEY_MATERIAL_BYTES]);

impl MasterKey {
    /// Fresh key material from the thread's CSPRNG (`rand::rng()`: ChaCha12 seeded and reseeded
    /// from the operating system).
    pub fn generate() -> MasterKey {
        let mut bytes = [0u8; KEY_MATERIAL_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        MasterKey(bytes)
    }

    /// Key material from its 30 bytes (key then salt).
    pub const fn from_bytes(bytes: [u8; KEY_MATERIAL_BYTES]) -> MasterKey {
        MasterKey(bytes)
    }

    /// The key material as `inline:` writes it: base64 (RFC 4648 §4) of key || salt, 40
    /// characters. This is the secret itself: it belongs in an SDP body only, never in a log.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    fn key(&self) -> &[u8] {
        self.0.get(..KEY_BYTES).unwrap_or_default()
    }

    fn salt(&self) -> &[u8] {
        self.0.get(KEY_BYTES..).unwrap_or_default()
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&mut self.0);
    }
}

/// Why the key parameters of an `a=crypto` line cannot be used (RFC 4568 §6.1, §9.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key method is not `inline:` (the only one RFC 4568 defines).
    #[error("key method is not inline:")]
    NotInline,
    /// The key is not valid base64.
    #[error("inline key is not base64")]
    NotBase64,
    /// The decoded key material is not 30 bytes (16-byte key + 14-byte salt). The field is the
    /// decoded length in bytes.
    #[error("inline key has {0} bytes, AES_CM_128 needs 30 (key + salt)")]
    WrongLength(usize),
    /// The lifetime is not `N` or `2^N`, or it is shorter than 2^10 packets.
    #[error("unusable key lifetime {0:?}")]
    BadLifetime(String),
    /// The key carries an MKI (`|value:length`), which frontdesk does not support.
    #[error("MKI is not supported")]
    Mki,
    /// More than one key (`;`-separated), which needs MKIs.
    #[error("several keys (needs MKI) are not supported")]
    SeveralKeys,
}

/// The key parameters of one `a=crypto` line (RFC 4568 §9.2): `inline:<key||salt>[|lifetime]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyParams {
    /// The key material.
    pub key: MasterKey,
    /// The lifetime in packets, if the line gave one (`2^31` or a decimal number).
    pub lifetime: Option<u64>,
}

impl FromStr for KeyParams {
    type Err = KeyError;

    /// Parses `inline:<base64>[|<lifetime>][|<mki>:<length>]`. A lifetime shorter than 2^10
    /// packets, an MKI, or several keys are errors, as is anything but exactly 30 bytes of key.
    fn from_str(text: &str) -> Result<KeyParams, KeyError> {
        let text = text.trim();
        if text.contains(';') {
            return Err(KeyError::SeveralKeys);
        }
        let rest = text
            .get(..7)
            .filter(|m| m.eq_ignore_ascii_case("inline:"))
            .and_then(|_| text.get(7..))
            .ok_or(KeyError::NotInline)?;
        let mut parts = rest.split('|');
        let encoded = parts.next().unwrap_or_default();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
            .map_err(|_| KeyError::NotBase64)?;
        let bytes: [u8; KEY_MATERIAL_BYTES] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::WrongLength(decoded.len()))?;
        let mut lifetime = None;
        for part in parts {
            if part.contains(':') {
                return Err(KeyError::Mki);
            }
            lifetime = Some(parse_lifetime(part)?);
        }
        Ok(KeyParams {
            key: MasterKey(bytes),
            lifetime,
        })
    }
}

impl KeyParams {
    /// Our key parameters for `key`: `inline:<base64>`, no lifetime (the default 2^48 / 2^31 of
    /// RFC 3711 §9.2), no MKI. The text carries the secret: an SDP body only, never a log.
    pub fn inline(key: &MasterKey) -> String {
        format!("inline:{}", key.to_base64())
    }
}

/// A lifetime (RFC 4568 §9.2): `2^N` or a decimal number of packets, at least 2^10.
fn parse_lifetime(text: &str) -> Result<u64, KeyError> {
    let bad = || KeyError::BadLifetime(text.to_owned());
    let packets = match text.strip_prefix("2^") {
        Some(exp) => {
            let exp: u32 = exp.parse().map_err(|_| bad())?;
            1u64.checked_shl(exp).filter(|_| exp < 64).ok_or_else(bad)?
        }
        None => text.parse::<u64>().map_err(|_| bad())?,
    };
    if packets < 1 << MIN_LIFETIME_LOG2 {
        return Err(bad());
    }
    Ok(packets)
}

/// The keys of one SRTP call: the suite, the key we protect with (ours, sent in our SDP) and the
/// key the peer protects with (from its SDP). RFC 4568 §6.1: each side sends with its own key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    /// The negotiated suite.
    pub suite: Suite,
    /// Our master key: outbound SRTP/SRTCP.
    pub local: MasterKey,
    /// The peer's master key: inbound SRTP/SRTCP.
    pub remote: MasterKey,
}

/// Why a datagram could not be protected or unprotected. The datagram is dropped; the call goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Too short for its kind: RTP header + tag, or RTCP header + SSRC + index + tag.
    #[error("datagram of {0} bytes is too short for SRTP/SRTCP")]
    TooShort(usize),
    /// Not RTP or RTCP (bad version, truncated header).
    #[error("not an RTP/RTCP packet")]
    Malformed,
    /// The authentication tag does not match (wrong key, corrupted, or plain RTP).
    #[error("authentication failed")]
    AuthFailed,
    /// The packet was already received (or is older than the replay window).
    #[error("replayed packet")]
    Replayed,
    /// SRTCP with the E bit clear: unencrypted SRTCP, which was not negotiated.
    #[error("unencrypted SRTCP was not negotiated")]
    Unencrypted,
    /// 2^48 SRTP packets were sent with this key (RFC 3711 §9.2): the call must end.
    #[error("the SRTP key is exhausted")]
    KeyExhausted,
    /// A re-negotiation changed the suite while our key stayed: refused, since a new outbound
    /// context with the same key would reuse keystream.
    #[error("the SRTP suite cannot change during a call")]
    SuiteChanged,
    /// Any other failure reported by the transform; the text never contains key material.
    #[error("SRTP transform failed: {0}")]
    Transform(String),
}

/// What one call's SRTP dropped and passed, for the call's log summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SrtpStats {
    /// Datagrams protected (RTP and RTCP).
    pub protected: u64,
    /// Datagrams unprotected (RTP and RTCP).
    pub unprotected: u64,
    /// Inbound datagrams dropped for a bad authentication tag.
    pub auth_failures: u64,
    /// Inbound datagrams dropped as replays.
    pub replays: u64,
    /// Inbound datagrams dropped for any other reason (too short, malformed, unencrypted SRTCP).
    pub malformed: u64,
}

/// One call's SRTP transform (RFC 3711): outbound with our key, inbound with the peer's, RTP and
/// RTCP each with their own state. Build one per socket: the RTP socket's handles RTCP too when it
/// is multiplexed (RFC 5761).
pub struct SrtpSession {
    suite: Suite,
    outbound: Context,
    inbound: Context,
    stats: SrtpStats,
}

impl fmt::Debug for SrtpSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpSession")
            .field("suite", &self.suite)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl SrtpSession {
    /// The transform for `keys`.
    ///
    /// # Errors
    /// [`Error::Transform`] if the crate refuses the keys (it does not for 30-byte keys).
    pub fn new(keys: &SrtpKeys) -> Result<SrtpSession, Error> {
        let context = |key: &MasterKey| {
            Context::new(
                key.key(),
                key.salt(),
                keys.suite.profile(),
                Some(srtp_replay_protection(REPLAY_WINDOW)),
                Some(srtcp_replay_protection(REPLAY_WINDOW)),
            )
            .map_err(|e| Error::Transform(e.to_string()))
        };
        Ok(SrtpSession {
            suite: keys.suite,
            outbound: context(&keys.local)?,
            inbound: context(&keys.remote)?,
            stats: SrtpStats::default(),
        })
    }

    /// Takes a new key from the peer (a re-offer or its answer, RFC 4568 §7.1.4), keeping our
    /// outbound state: a fresh outbound context with our unchanged key would restart the SRTCP
    /// index and rollover counter and so reuse keystream.
    ///
    /// # Errors
    /// [`Error::Transform`] if the crate refuses the key.
    pub fn rekey_inbound(&mut self, remote: &MasterKey) -> Result<(), Error> {
        self.inbound = Context::new(
            remote.key(),
            remote.salt(),
            self.suite.profile(),
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
        )
        .map_err(|e| Error::Transform(e.to_string()))?;
        Ok(())
    }

    /// The negotiated suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// What was protected, unprotected and dropped so far.
    pub fn stats(&self) -> SrtpStats {
        self.stats
    }

    /// Protects an outbound datagram: RTCP (RFC 5761 demultiplexing by payload type) as SRTCP,
    /// anything else as SRTP. Returns the datagram to send: SRTP is the packet plus its tag (10 or 4
    /// bytes), SRTCP plus index and 10-byte tag.
    ///
    /// # Errors
    /// [`Error::Malformed`] for a datagram that is neither; [`Error::KeyExhausted`] after 2^48
    /// packets.
    pub fn protect(&mut self, datagram: &[u8]) -> Result<Vec<u8>, Error> {
        if rtp::is_rtcp(datagram) {
            self.protect_rtcp(datagram)
        } else {
            self.protect_rtp(datagram)
        }
    }

    /// Unprotects an inbound datagram, SRTCP or SRTP as its payload type says (RFC 5761 §4), and
    /// returns the plain packet. Failures are counted in [`SrtpSession::stats`].
    ///
    /// # Errors
    /// Any [`Error`]; drop the datagram.
    pub fn unprotect(&mut self, datagram: &[u8]) -> Result<Vec<u8>, Error> {
        let result = if rtp::is_rtcp(datagram) {
            self.unprotect_rtcp(datagram)
        } else {
            self.unprotect_rtp(datagram)
        };
        match &result {
            Ok(_) => self.stats.unprotected += 1,
            Err(Error::AuthFailed) => self.stats.auth_failures += 1,
            Err(Error::Replayed) => self.stats.replays += 1,
            Err(_) => self.stats.malformed += 1,
        }
        result
    }

    /// Protects one RTP packet (RFC 3711 §3.1): payload encrypted, tag appended.
    ///
    /// # Errors
    /// [`Error::Malformed`] if it is not RTP; [`Error::KeyExhausted`].
    pub fn protect_rtp(&mut self, packet: &[u8]) -> Result<Vec<u8>, Error> {
        if rtp::parse(packet).is_err() {
            return Err(Error::Malformed);
        }
        let out = self.outbound.encrypt_rtp(packet).map_err(|e| match e {
            webrtc_srtp::Error::ErrExceededMaxPackets => Error::KeyExhausted,
            other => Error::Transform(other.to_string()),
        })?;
        self.stats.protected += 1;
        Ok(out.into())
    }

    /// Protects one RTCP compound packet (RFC 3711 §3.4): encrypted after the sender's SSRC, with
    /// the E bit, the SRTCP index and a 10-byte tag appended.
    ///
    /// # Errors
    /// [`Error::TooShort`] below 8 bytes; [`Error::Malformed`] if it is not RTCP.
    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Result<Vec<u8>, Error> {
        if packet.len() < RTCP_HEADER_BYTES {
            return Err(Error::TooShort(packet.len()));
        }
        let out = self
            .outbound
            .encrypt_rtcp(packet)
            .map_err(|_| Error::Malformed)?;
        self.stats.protected += 1;
        Ok(out.into())
    }

    fn unprotect_rtp(&mut self, datagram: &[u8]) -> Result<Vec<u8>, Error> {
        let header_len = rtp_header_len(datagram).ok_or(Error::Malformed)?;
        if datagram.len() < header_len + self.suite.rtp_tag_bytes() {
            return Err(Error::TooShort(datagram.len()));
        }
        self.inbound
            .decrypt_rtp(datagram)
            .map(Vec::from)
            .map_err(map_inbound)
    }

    fn unprotect_rtcp(&mut self, datagram: &[u8]) -> Result<Vec<u8>, Error> {
        let min = RTCP_HEADER_BYTES + SRTCP_INDEX_BYTES + SRTCP_TAG_BYTES;
        let Some(e_byte) = datagram
            .len()
            .checked_sub(SRTCP_INDEX_BYTES + SRTCP_TAG_BYTES)
            .filter(|_| datagram.len() >= min)
            .and_then(|at| datagram.get(at))
        else {
            return Err(Error::TooShort(datagram.len()));
        };
        if e_byte & 0x80 == 0 {
            return Err(Error::Unencrypted);
        }
        if datagram.first().map(|b| b >> 6) != Some(2) {
            return Err(Error::Malformed);
        }
        self.inbound
            .decrypt_rtcp(datagram)
            .map(Vec::from)
            .map_err(map_inbound)
    }
}

/// Bytes of an RTP header with its CSRC list and extension (RFC 3550 §5.1, §5.3.1), read without
/// [`rtp::parse`]: in SRTP the padding count sits in the encrypted payload, so it cannot be checked
/// before decryption. `None` if it is not version 2 or runs past the datagram.
fn rtp_header_len(datagram: &[u8]) -> Option<usize> {
    let first = *datagram.first()?;
    if first >> 6 != rtp::VERSION {
        return None;
    }
    let mut len = rtp::HEADER_BYTES + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let words = datagram.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([*words.first()?, *words.get(1)?]));
    }
    (len <= datagram.len()).then_some(len)
}

/// The crate's inbound errors, as ours.
fn map_inbound(e: webrtc_srtp::Error) -> Error {
    use webrtc_srtp::Error as E;
    match e {
        E::RtpFailedToVerifyAuthTag
        | E::RtcpFailedToVerifyAuthTag
        | E::ErrFailedToVerifyAuthTag => Error::AuthFailed,
        E::SrtpSsrcDuplicated(..) | E::SrtcpSsrcDuplicated(..) | E::ErrDuplicated => {
            Error::Replayed
        }
        E::ErrTooShortRtp | E::ErrTooShortRtcp | E::SrtpTooSmall(..) | E::SrtcpTooSmall(..) => {
            Error::Malformed
        }
        other => Error::Transform(other.to_string()),
    }
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

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The master key and salt of RFC 3711 Appendix B.3, which libSRTP's known-answer test
    /// (`srtp_validate`) also uses.
    fn rfc3711_key() -> MasterKey {
        let bytes = hex("E1F97A0D3E018BE0D64FA32C06DE4139 0EC675AD498AFEEBB6960B3AABE6");
        MasterKey(bytes.try_into().unwrap())
    }

    fn session(suite: Suite, local: &MasterKey, remote: &MasterKey) -> SrtpSession {
        SrtpSession::new(&SrtpKeys {
            suite,
            local: local.clone(),
            remote: remote.clone(),
        })
        .unwrap()
    }

    /// RTP: version 2, PT 15, seq 0x1234, ts 0xdecafbad, SSRC 0xcafebabe, 16 bytes of 0xab.
    const RTP_PLAIN: &str = "800f1234 decafbad cafebabe abababab abababab abababab abababab";
    /// RTCP SR header with SSRC 0xcafebabe and 16 bytes of 0xab.
    const RTCP_PLAIN: &str = "81c8000b cafebabe abababab abababab abababab abababab";

    #[test]
    fn known_answer_srtp_aes_cm_128_hmac_sha1_80() {
        // Known-answer vectors for the RFC 3711 B.3 master key: the keystream follows from the
        // session key C61E7A93744F39EE10734AFE3FF7A087 and salt 30CBBC08863D8C85D49DB34A9AE1
        // derived in B.3 (ROC 0, seq 0x1234, SSRC 0xcafebabe).
        let key = rfc3711_key();
        let mut tx = session(Suite::AesCm128HmacSha1_80, &key, &key);
        let srtp = tx.protect(&hex(RTP_PLAIN)).unwrap();
        assert_eq!(
            srtp,
            hex("800f1234 decafbad cafebabe 4e55dc4c e79978d8 8ca4d215 949d2402 b78d6acc 99ea179b 8dbb")
        );
        let mut rx = session(Suite::AesCm128HmacSha1_80, &key, &key);
        assert_eq!(rx.unprotect(&srtp).unwrap(), hex(RTP_PLAIN));
        assert_eq!(rx.stats().unprotected, 1);
    }

    #[test]
    fn known_answer_srtp_aes_cm_128_hmac_sha1_32() {
        // Same keystream; the tag is the first 32 bits of the 80-bit one.
        let key = rfc3711_key();
        let mut tx = session(Suite::AesCm128HmacSha1_32, &key, &key);
        let srtp = tx.protect(&hex(RTP_PLAIN)).unwrap();
        assert_eq!(
            srtp,
            hex("800f1234 decafbad cafebabe 4e55dc4c e79978d8 8ca4d215 949d2402 b78d6acc")
        );
        let mut rx = session(Suite::AesCm128HmacSha1_32, &key, &key);
        assert_eq!(rx.unprotect(&srtp).unwrap(), hex(RTP_PLAIN));
    }

    #[test]
    fn known_answer_srtcp() {
        // SRTCP index 1 with the E bit, 80-bit tag, for both suites (RFC 3711 §5.2).
        let expected = hex(
            "81c8000b cafebabe 7128035b e487b9bd bef89041 f977a5a8 80000001 993e08cd 54d6c123 0798",
        );
        for suite in Suite::ALL {
            let key = rfc3711_key();
            let mut tx = session(suite, &key, &key);
            let srtcp = tx.protect(&hex(RTCP_PLAIN)).unwrap();
            assert_eq!(srtcp, expected, "{suite}");
            let mut rx = session(suite, &key, &key);
            assert_eq!(rx.unprotect(&srtcp).unwrap(), hex(RTCP_PLAIN), "{suite}");
        }
    }

    fn rtp_packet(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = rtp::header(0, false, seq, u32::from(seq) * 160, 0x1234_5678).to_vec();
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn each_side_sends_with_its_own_key() {
        let ours = MasterKey::generate();
        let theirs = MasterKey::generate();
        assert_ne!(ours, theirs);
        let mut us = session(Suite::AesCm128HmacSha1_80, &ours, &theirs);
        let mut peer = session(Suite::AesCm128HmacSha1_80, &theirs, &ours);
        let audio = [0x55u8; 160];
        let sent = us.protect(&rtp_packet(7, &audio)).unwrap();
        assert_eq!(sent.len(), 12 + 160 + 10);
        assert_ne!(&sent[12..172], &audio[..], "payload must be encrypted");
        assert_eq!(peer.unprotect(&sent).unwrap(), rtp_packet(7, &audio));
        let back = peer.protect(&rtp_packet(9, &audio)).unwrap();
        assert_eq!(us.unprotect(&back).unwrap(), rtp_packet(9, &audio));
        // Our own packet does not authenticate with the peer's key.
        let mut wrong = session(Suite::AesCm128HmacSha1_80, &ours, &ours);
        assert_eq!(
            wrong.unprotect(&peer.protect(&rtp_packet(10, &audio)).unwrap()),
            Err(Error::AuthFailed)
        );
        assert_eq!(wrong.stats().auth_failures, 1);
    }

    #[test]
    fn tampering_replay_and_plain_rtp_are_dropped_and_counted() {
        let key = MasterKey::generate();
        let mut tx = session(Suite::AesCm128HmacSha1_80, &key, &key);
        let mut rx = session(Suite::AesCm128HmacSha1_80, &key, &key);
        let p1 = tx.protect(&rtp_packet(100, &[1; 160])).unwrap();
        let p2 = tx.protect(&rtp_packet(101, &[2; 160])).unwrap();
        let mut bad = p2.clone();
        bad[40] ^= 1;
        assert_eq!(rx.unprotect(&bad), Err(Error::AuthFailed));
        assert!(rx.unprotect(&p1).is_ok());
        assert_eq!(rx.unprotect(&p1), Err(Error::Replayed));
        assert!(
            rx.unprotect(&p2).is_ok(),
            "a failed packet does not spoil the next"
        );
        // A plain RTP packet (no tag) fails authentication.
        assert_eq!(
            rx.unprotect(&rtp_packet(102, &[3; 160])),
            Err(Error::AuthFailed)
        );
        // Reordering within the window is fine.
        let p4 = tx.protect(&rtp_packet(104, &[4; 160])).unwrap();
        let p3 = tx.protect(&rtp_packet(103, &[3; 160])).unwrap();
        assert!(rx.unprotect(&p4).is_ok());
        assert!(rx.unprotect(&p3).is_ok());
        let s = rx.stats();
        assert_eq!((s.unprotected, s.auth_failures, s.replays), (4, 2, 1));
    }

    #[test]
    fn sequence_wrap_keeps_decrypting() {
        // The rollover counter (RFC 3711 §3.3.1) must follow the sequence number past 65535.
        let key = MasterKey::generate();
        let mut tx = session(Suite::AesCm128HmacSha1_80, &key, &key);
        let mut rx = session(Suite::AesCm128HmacSha1_80, &key, &key);
        for i in 0..200u32 {
            let seq = 65_436u16.wrapping_add(i as u16);
            let plain = rtp_packet(seq, &[i as u8; 160]);
            assert_eq!(rx.unprotect(&tx.protect(&plain).unwrap()).unwrap(), plain);
        }
    }

    #[test]
    fn unencrypted_or_short_srtcp_is_refused() {
        let key = MasterKey::generate();
        let mut tx = session(Suite::AesCm128HmacSha1_80, &key, &key);
        let mut rx = session(Suite::AesCm128HmacSha1_80, &key, &key);
        let mut srtcp = tx.protect(&hex(RTCP_PLAIN)).unwrap();
        // Clearing the E bit must not let an unauthenticated packet through.
        let e_at = srtcp.len() - 14;
        srtcp[e_at] &= 0x7f;
        assert_eq!(rx.unprotect(&srtcp), Err(Error::Unencrypted));
        for len in 0..22 {
            let mut short = vec![0xffu8; len];
            short.iter_mut().zip([0x81, 0xc8]).for_each(|(b, v)| *b = v);
            assert!(rx.unprotect(&short).is_err(), "{len} bytes");
        }
        assert_eq!(rx.stats().unprotected, 0);
    }

    #[test]
    fn mangled_datagrams_never_panic() {
        let key = MasterKey::generate();
        let mut tx = session(Suite::AesCm128HmacSha1_32, &key, &key);
        let mut rx = session(Suite::AesCm128HmacSha1_32, &key, &key);
        let seeds = [
            tx.protect(&rtp_packet(1, &[9; 160])).unwrap(),
            tx.protect(&hex(RTCP_PLAIN)).unwrap(),
        ];
        let mut state = 0x5eed_u64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize
        };
        for seed in &seeds {
            for end in 0..=seed.len() {
                let _ = rx.unprotect(&seed[..end]);
            }
        }
        for round in 0..5_000 {
            let mut d = seeds[round % 2].clone();
            for _ in 0..=(next() % 3) {
                let at = next() % d.len();
                d[at] = next() as u8;
            }
            // Headers with CSRC counts and extension bits that lie about the length.
            if round % 7 == 0 {
                d[0] = 0x80 | (next() as u8 & 0x1f);
            }
            let _ = rx.unprotect(&d);
            let _ = tx.protect(&d);
        }
        assert!(tx.protect(&[]).is_err());
        assert!(rx.unprotect(&[]).is_err());
    }

    #[test]
    fn key_params_parse_and_write() {
        let key = rfc3711_key();
        let inline = KeyParams::inline(&key);
        assert_eq!(inline, "inline:4fl6DT4Bi+DWT6MsBt5BOQ7Gda1Jiv7rtpYLOqvm");
        let parsed: KeyParams = inline.parse().unwrap();
        assert_eq!(parsed.key, key);
        assert_eq!(parsed.lifetime, None);
        let with_lifetime: KeyParams = format!("{inline}|2^31").parse().unwrap();
        assert_eq!(with_lifetime.lifetime, Some(1 << 31));
        let decimal: KeyParams = format!("{inline}|1048576").parse().unwrap();
        assert_eq!(decimal.lifetime, Some(1 << 20));
        let cases = [
            ("uri:https://example.com/key", KeyError::NotInline),
            ("inline:!!!notbase64!!!", KeyError::NotBase64),
            ("inline:QUJD", KeyError::WrongLength(3)),
            (&format!("{inline}|2^20|1:4"), KeyError::Mki),
            (
                &format!("{inline}|2^5"),
                KeyError::BadLifetime("2^5".into()),
            ),
            (
                &format!("{inline}|2^99"),
                KeyError::BadLifetime("2^99".into()),
            ),
            (
                &format!("{inline}|soon"),
                KeyError::BadLifetime("soon".into()),
            ),
            (&format!("{inline};{inline}"), KeyError::SeveralKeys),
        ];
        for (text, err) in cases {
            assert_eq!(text.parse::<KeyParams>(), Err(err), "{text}");
        }
    }

    #[test]
    fn key_material_never_shows_in_debug() {
        let key = rfc3711_key();
        let b64 = key.to_base64();
        let keys = SrtpKeys {
            suite: Suite::AesCm128HmacSha1_80,
            local: key.clone(),
            remote: MasterKey::generate(),
        };
        let params = KeyParams {
            key: key.clone(),
            lifetime: None,
        };
        let session = SrtpSession::new(&keys).unwrap();
        for text in [
            format!("{key:?}"),
            format!("{keys:?}"),
            format!("{params:?}"),
            format!("{session:?}"),
        ] {
            assert!(!text.contains(&b64), "{text}");
            assert!(!text.to_ascii_lowercase().contains("e1f97a0d"), "{text}");
            assert!(!text.contains("225"), "{text}"); // 0xE1 as a decimal byte
        }
        // Fresh keys differ and are not all zero.
        let a = MasterKey::generate();
        assert_ne!(a, MasterKey::generate());
        assert_ne!(a.0, [0u8; KEY_MATERIAL_BYTES]);
    }

    #[test]
    fn suite_names() {
        for s in Suite::ALL {
            assert_eq!(Suite::from_name(s.name()), Some(s));
        }
        assert_eq!(Suite::from_name("AES_256_CM_HMAC_SHA1_80"), None);
        assert_eq!(Suite::from_name("aes_cm_128_hmac_sha1_80"), None);
    }
}
