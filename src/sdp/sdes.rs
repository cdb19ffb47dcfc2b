//! SDES: the `a=crypto` attribute of RFC 4568 (§9.1), and the SRTP policy that decides when it is
//! offered, accepted or required.
//!
//! ```text
//! a=crypto:<tag> <crypto-suite> <key-params> [<session-param> ...]
//! a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20
//! ```
//!
//! Answering (RFC 4568 §7.1.2, §7.1.3): of an `m=` line's `a=crypto` lines, the first whose suite
//! we speak and whose key and session parameters we accept is chosen; the answer has one
//! `a=crypto` with the same tag and suite and our own key. Offering (§7.1.1): one line, tag 1,
//! `AES_CM_128_HMAC_SHA1_80`, our key. Nothing here logs, and no error text carries key material.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use sdp_types as sdp;

use crate::media::srtp::{KeyError, KeyParams, MasterKey, SrtpKeys, Suite};

/// The SDP attribute name (RFC 4568 §9.1).
pub const ATTRIBUTE: &str = "crypto";
/// The tag of the one `a=crypto` line of our offers.
pub const OFFER_TAG: u32 = 1;
/// The suite of our offers: RFC 3711's default, which every SDES implementation speaks.
pub const OFFER_SUITE: Suite = Suite::AesCm128HmacSha1_80;

/// When a call uses SRTP (config `srtp = "off" | "offer" | "require"`, per trunk or globally).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Policy {
    /// Plain RTP only. `a=crypto` in an `RTP/AVP` offer is ignored (answered without it); an
    /// `RTP/SAVP` stream is rejected with port 0 (RFC 3264 §6), and an offer with nothing else
    /// gets 488. Our offers are plain `RTP/AVP`.
    Off,
    /// SRTP when the caller offers it: `RTP/SAVP` with a usable `a=crypto` is answered with
    /// SRTP, and so is `RTP/AVP` with `a=crypto` ("best effort", as baresip's `srtp` mode
    /// offers); plain `RTP/AVP` is answered with plain RTP. Our offers are `RTP/AVP` with
    /// `a=crypto`, and the answer decides.
    #[default]
    Offer,
    /// SRTP only: an offer without a usable `a=crypto` gets 488, and so does a re-offer that would
    /// drop it. Our offers are `RTP/SAVP`.
    Require,
}

impl Policy {
    /// The name as configured: `off`, `offer` or `require`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Policy::Off => "off",
            Policy::Offer => "offer",
            Policy::Require => "require",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Policy, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(Policy::Off),
            "offer" => Ok(Policy::Offer),
            "require" => Ok(Policy::Require),
            other => Err(format!(
                "'{other}' is not an SRTP policy: use off, offer or require"
            )),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Policy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The SRTP policy of each call, most specific first: the first `[[admission.trunks]]` entry
/// with its own `srtp` whose `allow` networks hold the INVITE's source; else the policy of the
/// listen address the INVITE came in on (`[sip.srtp_per_listen]`); else, for an INVITE that
/// came over TLS, the TLS listeners' policy (`[sip.tls] srtp` / `--sip-tls-srtp`, `require` by
/// default: a carrier that encrypts the signalling expects the media encrypted too); else the
/// default (`[media] srtp` / `--srtp`, itself `offer` by default).
#[derive(Debug, Clone)]
pub struct PolicyTable {
    /// The policy outside every trunk with its own, over UDP and TCP.
    pub default: Policy,
    /// The policy outside every trunk with its own, over TLS.
    pub tls: Policy,
    /// Listen addresses with their own policy (`[sip.srtp_per_listen]`); an unspecified IP
    /// (`0.0.0.0`, `[::]`) matches every local address of its family on that port.
    pub listen: Vec<(SocketAddr, Policy)>,
    /// Trunks with their own policy, in config order: (name, networks, policy).
    pub trunks: Vec<(String, Vec<crate::sip::admission::Cidr>, Policy)>,
}

impl Default for PolicyTable {
    /// `offer` over UDP and TCP, `require` over TLS, no trunk policies.
    fn default() -> PolicyTable {
        PolicyTable {
            default: Policy::Offer,
            tls: Policy::Require,
            listen: Vec::new(),
            trunks: Vec::new(),
        }
    }
}

/// Where a call's SRTP policy came from (see [`PolicyTable::for_call`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySource<'a> {
    /// The trunk of this name (`[[admission.trunks]] srtp`).
    Trunk(&'a str),
    /// The policy of the listen address the INVITE came in on (`[sip.srtp_per_listen]`).
    Listen(SocketAddr),
    /// The TLS listeners' policy (`[sip.tls] srtp`).
    Tls,
    /// The default (`[media] srtp`).
    Default,
}

impl fmt::Display for PolicySource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicySource::Trunk(name) => write!(f, "trunk {name}"),
            PolicySource::Listen(addr) => write!(f, "[sip.srtp_per_listen] {addr}"),
            PolicySource::Tls => f.write_str("[sip.tls] srtp"),
            PolicySource::Default => f.write_str("[media] srtp"),
        }
    }
}

impl PolicyTable {
    /// The table from the config: `default` (UDP, TCP), `tls` (TLS listeners), `listen` (per
    /// listen address), and each trunk of `admission` that sets `srtp`. Networks that do not
    /// parse are skipped here (admission refuses them at start anyway).
    pub fn new(
        default: Policy,
        tls: Policy,
        listen: Vec<(SocketAddr, Policy)>,
        admission: Option<&crate::config::AdmissionFile>,
    ) -> PolicyTable {
        let trunks = admission
            .map(|a| a.trunks.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|t| {
                let policy = t.srtp?;
                let nets = t.allow.iter().filter_map(|c| c.parse().ok()).collect();
                Some((t.name.clone(), nets, policy))
            })
            .collect();
        PolicyTable {
            default,
            tls,
            listen,
            trunks,
        }
    }

    /// The policy for a call from `source` whose INVITE came in on the local address `local`
    /// (`None`: unknown) over TLS (`over_tls`) or not, and where it came from.
    pub fn for_call(
        &self,
        source: Option<std::net::IpAddr>,
        local: Option<SocketAddr>,
        over_tls: bool,
    ) -> (Policy, PolicySource<'_>) {
        let trunk = source.and_then(|ip| {
            self.trunks
                .iter()
                .find(|(_, nets, _)| nets.iter().any(|n| n.contains(ip)))
        });
        if let Some((name, _, p)) = trunk {
            return (*p, PolicySource::Trunk(name));
        }
        let listener = local.and_then(|local| {
            let on = |l: &SocketAddr| {
                *l == local
                    || (l.ip().is_unspecified()
                        && l.port() == local.port()
                        && l.is_ipv6() == local.is_ipv6())
            };
            // An exact address wins over a wildcard one.
            let exact = self.listen.iter().find(|(l, _)| *l == local);
            exact.or_else(|| self.listen.iter().find(|(l, _)| on(l)))
        });
        match listener {
            Some((addr, p)) => (*p, PolicySource::Listen(*addr)),
            None if over_tls => (self.tls, PolicySource::Tls),
            None => (self.default, PolicySource::Default),
        }
    }
}

/// Our side of SDES for one call: the policy and the master key we send with, which stays the
/// same for the whole call (re-offers and their answers reuse it, RFC 4568 §7.1.4 allows that).
#[derive(Debug, Clone)]
pub struct Sdes {
    /// When SRTP is used.
    pub policy: Policy,
    /// Our master key (outbound SRTP), from [`MasterKey::generate`].
    pub key: MasterKey,
}

impl Sdes {
    /// A fresh key under `policy`.
    pub fn new(policy: Policy) -> Sdes {
        Sdes {
            policy,
            key: MasterKey::generate(),
        }
    }
}

/// Why an `a=crypto` line (RFC 4568 §9.1) is not usable. [`super::Error::NoUsableCrypto`] carries
/// the first line's reason when no line is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The line does not have `<tag> <suite> <key-params>`, or the tag is not 1-9 digits.
    #[error("malformed a=crypto line")]
    Syntax,
    /// A suite we do not speak (the field is its name).
    #[error("unsupported crypto suite {0}")]
    Suite(String),
    /// The key parameters are unusable.
    #[error("{0}")]
    Key(#[from] KeyError),
    /// A session parameter we do not support (`UNENCRYPTED_SRTP`, `KDR=n`, `FEC_ORDER`, …, or
    /// an unknown one marked mandatory with `-`; RFC 4568 §6.3).
    #[error("unsupported session parameter {0}")]
    SessionParam(String),
    /// An `RTP/SAVP` line without any `a=crypto` (DTLS-SRTP, say, or keys we were not given).
    #[error("RTP/SAVP without a=crypto")]
    Missing,
    /// An answer whose `a=crypto` is not the tag and suite we offered.
    #[error("the answer's a=crypto is not the one we offered")]
    NotOffered,
}

/// One usable `a=crypto` line of a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crypto {
    /// The tag (RFC 4568 §9.1: 1-9 digits), echoed in the answer.
    pub tag: u32,
    /// The suite.
    pub suite: Suite,
    /// The peer's key.
    pub key: KeyParams,
}

impl FromStr for Crypto {
    type Err = CryptoError;

    /// Parses the value of an `a=crypto` attribute (after `crypto:`).
    fn from_str(value: &str) -> Result<Crypto, CryptoError> {
        let mut fields = value.split_ascii_whitespace();
        let tag = fields
            .next()
            .filter(|t| (1..=9).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse::<u32>().ok())
            .ok_or(CryptoError::Syntax)?;
        let suite_name = fields.next().ok_or(CryptoError::Syntax)?;
        let suite = Suite::from_name(suite_name)
            .ok_or_else(|| CryptoError::Suite(suite_name.to_owned()))?;
        let key: KeyParams = fields.next().ok_or(CryptoError::Syntax)?.parse()?;
        for param in fields {
            let name = param.split('=').next().unwrap_or_default();
            let accepted = match name {
                // A window size hint is only a hint (§6.3.7); KDR=0 is the default (§6.3.1).
                "WSH" => true,
                "KDR" => param == "KDR=0",
                "UNENCRYPTED_SRTP"
                | "UNENCRYPTED_SRTCP"
                | "UNAUTHENTICATED_SRTP"
                | "FEC_ORDER"
                | "FEC_KEY" => false,
                // Unknown extensions are ignored unless marked mandatory with '-'.
                other => !other.starts_with('-'),
            };
            if !accepted {
                return Err(CryptoError::SessionParam(name.to_owned()));
            }
        }
        Ok(Crypto { tag, suite, key })
    }
}

/// The `a=crypto` value we write: `<tag> <suite> inline:<our key>` (the secret: SDP only).
pub fn attribute_value(tag: u32, suite: Suite, key: &MasterKey) -> String {
    format!("{tag} {suite} {}", KeyParams::inline(key))
}

/// The first usable `a=crypto` line of an `m=` line, in the peer's order of preference
/// (RFC 4568 §7.1.2). `Ok(None)` when it has none at all.
///
/// # Errors
/// The first line's [`CryptoError`] when there are lines but none is usable.
pub fn first_usable(media: &sdp::Media) -> Result<Option<Crypto>, CryptoError> {
    let mut first_error = None;
    for value in media.get_attribute_values(ATTRIBUTE) {
        match value.unwrap_or_default().parse::<Crypto>() {
            Ok(c) => return Ok(Some(c)),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(None), Err)
}

/// The keys of a call whose peer chose `crypto`, with our key from `sdes`.
pub fn keys(sdes: &Sdes, crypto: &Crypto) -> SrtpKeys {
    SrtpKeys {
        suite: crypto.suite,
        local: sdes.key.clone(),
        remote: crypto.key.key.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const KEY: &str = "inline:4fl6DT4Bi+DWT6MsBt5BOQ7Gda1Jiv7rtpYLOqvm";

    #[test]
    fn crypto_lines_parse_or_say_why_not() {
        let c: Crypto = format!("1 AES_CM_128_HMAC_SHA1_80 {KEY}|2^20")
            .parse()
            .unwrap();
        assert_eq!((c.tag, c.suite), (1, Suite::AesCm128HmacSha1_80));
        assert_eq!(c.key.lifetime, Some(1 << 20));
        let c: Crypto = format!("123456789 AES_CM_128_HMAC_SHA1_32 {KEY} WSH=64 KDR=0 x-ext=1")
            .parse()
            .unwrap();
        assert_eq!((c.tag, c.suite), (123_456_789, Suite::AesCm128HmacSha1_32));
        let cases = [
            ("", CryptoError::Syntax),
            ("1", CryptoError::Syntax),
            ("1 AES_CM_128_HMAC_SHA1_80", CryptoError::Syntax),
            (
                &format!("1234567890 AES_CM_128_HMAC_SHA1_80 {KEY}"),
                CryptoError::Syntax,
            ),
            (
                &format!("x AES_CM_128_HMAC_SHA1_80 {KEY}"),
                CryptoError::Syntax,
            ),
            (
                &format!("1 F8_128_HMAC_SHA1_80 {KEY}"),
                CryptoError::Suite("F8_128_HMAC_SHA1_80".into()),
            ),
            (
                &format!("1 AEAD_AES_128_GCM {KEY}"),
                CryptoError::Suite("AEAD_AES_128_GCM".into()),
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:short",
                CryptoError::Key(KeyError::NotBase64),
            ),
            (
                &format!("1 AES_CM_128_HMAC_SHA1_80 {KEY}|2^20|1:4"),
                CryptoError::Key(KeyError::Mki),
            ),
            (
                &format!("1 AES_CM_128_HMAC_SHA1_80 {KEY} UNENCRYPTED_SRTCP"),
                CryptoError::SessionParam("UNENCRYPTED_SRTCP".into()),
            ),
            (
                &format!("1 AES_CM_128_HMAC_SHA1_80 {KEY} KDR=24"),
                CryptoError::SessionParam("KDR".into()),
            ),
            (
                &format!("1 AES_CM_128_HMAC_SHA1_80 {KEY} -MUST_KNOW"),
                CryptoError::SessionParam("-MUST_KNOW".into()),
            ),
        ];
        for (text, err) in cases {
            assert_eq!(text.parse::<Crypto>(), Err(err), "{text:?}");
        }
    }

    #[test]
    fn policy_table_picks_the_trunk_then_the_default() {
        let file: crate::config::ConfigFile = toml::from_str(
            r#"
            [media]
            srtp = "off"
            [sip.tls]
            srtp = "offer"
            [admission]
            [[admission.trunks]]
            name = "carrier"
            allow = ["198.51.100.0/24", "2001:db8::/32"]
            srtp = "require"
            [[admission.trunks]]
            name = "lan"
            allow = ["10.0.0.0/8"]
            "#,
        )
        .unwrap();
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let public = addr("203.0.113.5:5060");
        let any6 = addr("[::]:5070");
        let table = PolicyTable::new(
            file.media.srtp.unwrap(),
            file.sip.tls.srtp.unwrap(),
            vec![(public, Policy::Require), (any6, Policy::Offer)],
            file.admission.as_ref(),
        );
        let ip = |s: &str| Some(s.parse().unwrap());
        let carrier = (Policy::Require, PolicySource::Trunk("carrier"));
        for tls in [false, true] {
            for local in [None, Some(public)] {
                assert_eq!(table.for_call(ip("198.51.100.7"), local, tls), carrier);
                assert_eq!(table.for_call(ip("2001:db8::1"), local, tls), carrier);
            }
        }
        // The "lan" trunk has no policy of its own: the listen address's, else the transport's.
        assert_eq!(
            table.for_call(ip("10.1.2.3"), None, false),
            (Policy::Off, PolicySource::Default)
        );
        assert_eq!(
            table.for_call(ip("10.1.2.3"), None, true),
            (Policy::Offer, PolicySource::Tls)
        );
        assert_eq!(
            table.for_call(ip("10.1.2.3"), Some(public), false),
            (Policy::Require, PolicySource::Listen(public))
        );
        // Another local address or port: not that listener.
        assert_eq!(
            table
                .for_call(ip("10.1.2.3"), Some(addr("203.0.113.5:5080")), false)
                .1,
            PolicySource::Default
        );
        // A wildcard listener matches its family's addresses on its port.
        assert_eq!(
            table.for_call(ip("10.1.2.3"), Some(addr("[2001:db8::10]:5070")), true),
            (Policy::Offer, PolicySource::Listen(any6))
        );
        assert_eq!(
            table
                .for_call(ip("10.1.2.3"), Some(addr("192.0.2.1:5070")), true)
                .1,
            PolicySource::Tls
        );
        assert_eq!(
            table.for_call(None, None, false),
            (Policy::Off, PolicySource::Default)
        );
        assert!(toml::from_str::<crate::config::ConfigFile>("[media]\nsrtp = \"always\"").is_err());
        let defaults = PolicyTable::default();
        assert_eq!(defaults.for_call(None, None, false).0, Policy::Offer);
        assert_eq!(defaults.for_call(None, None, true).0, Policy::Require);
    }

    #[test]
    fn policy_names() {
        for p in [Policy::Off, Policy::Offer, Policy::Require] {
            assert_eq!(p.as_str().parse::<Policy>().unwrap(), p);
        }
        assert_eq!(" Require ".parse::<Policy>().unwrap(), Policy::Require);
        assert!("mandatory".parse::<Policy>().is_err());
        assert_eq!(Policy::default(), Policy::Offer);
    }

    #[test]
    fn our_attribute_carries_our_key_and_debug_hides_it() {
        let sdes = Sdes::new(Policy::Require);
        let value = attribute_value(OFFER_TAG, OFFER_SUITE, &sdes.key);
        let parsed: Crypto = value.parse().unwrap();
        assert_eq!(parsed.key.key, sdes.key);
        assert!(!format!("{sdes:?}").contains(&sdes.key.to_base64()));
        assert!(!format!("{parsed:?}").contains(&sdes.key.to_base64()));
    }
}
