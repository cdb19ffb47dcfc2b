//! HTTP Digest authentication as SIP uses it (RFC 3261 §22.4, RFC 7616, RFC 8760), both ways:
//! admission checks the `Authorization` of inbound INVITEs against the challenges it issued
//! ([`parse_authorization`], [`ha1`], [`response`]); outbound registration answers a registrar's
//! `WWW-Authenticate` / `Proxy-Authenticate` ([`pick_challenge`], [`authorization`]). One
//! [`Algorithm`] and one auth-param parser ([`auth_params`]) serve both.
//!
//! Supported: `algorithm=MD5` (also when the parameter is absent) and `algorithm=SHA-256` (also
//! spelled `SHA256` by some servers), with `qop=auth` or without qop (RFC 2069 compatibility, for
//! challenges we answer only). `-sess` variants, `SHA-512-256` and `qop=auth-int` alone are
//! refused with a precise [`ChallengeError`]. When a response carries several challenges
//! (RFC 8760 §2.4: one per algorithm, in the server's order of preference) the first supported
//! one is answered.
//!
//! Why not rsipstack's digest code: rsipstack 0.7.14 parses `algorithm` as `SHA256` only (the
//! RFC 7616 token `SHA-256` is a parse error), reads a qop list such as `"auth,auth-int"` as an
//! error, and writes `algorithm=SHA256` back.
//!
//! No I/O and no clock: nonces and client nonces are inputs, so every answer is reproducible.

use std::fmt;
use std::str::FromStr;

use md5::Md5;
use sha2::{Digest as _, Sha256};

/// A digest hash algorithm (RFC 7616 §3.2; for SIP, RFC 8760).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5`, what every SIP device supports; the default when a header names none.
    Md5,
    /// `SHA-256` (RFC 7616, RFC 8760).
    Sha256,
}

impl Algorithm {
    /// The token in `algorithm=` parameters: `MD5` or `SHA-256`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// The algorithm an `algorithm=` token names (case-insensitive; `SHA256` is accepted for
    /// `SHA-256`), `None` for any other.
    pub fn from_token(token: &str) -> Option<Algorithm> {
        let t = token.trim();
        if t.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if t.eq_ignore_ascii_case("SHA-256") || t.eq_ignore_ascii_case("SHA256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// Lowercase hex of the hash of `data` (32 characters for MD5, 64 for SHA-256).
    pub fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex(&Md5::digest(data)),
            Algorithm::Sha256 => hex(&Sha256::digest(data)),
        }
    }
}

impl FromStr for Algorithm {
    type Err = String;

    /// Parses a configured algorithm name; the error is a sentence for the admin.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::from_token(s).ok_or_else(|| {
            format!("'{s}' is not a supported digest algorithm; use \"SHA-256\" or \"MD5\"")
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// `HA1 = H(username ":" realm ":" password)` (RFC 7616 §3.4.2), lowercase hex.
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hash_hex(format!("{username}:{realm}:{password}").as_bytes())
}

/// The `qop=auth` inputs of a digest response (RFC 7616 §3.4.1), exactly as written in the
/// header: `qop` (`auth`), `nc` (8 hex digits) and `cnonce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QopAuth<'a> {
    /// The `qop` token as the client wrote it.
    pub qop: &'a str,
    /// The nonce count, 8 hex digits, as written.
    pub nc: &'a str,
    /// The client nonce.
    pub cnonce: &'a str,
}

/// The digest `response` for `method` and digest-`uri`, lowercase hex: with `qop`
/// `H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" HA2)` (RFC 7616 §3.4.1), without it
/// `H(HA1 ":" nonce ":" HA2)` (RFC 2069), where `HA2 = H(method ":" uri)`.
pub fn response(
    alg: Algorithm,
    ha1: &str,
    nonce: &str,
    qop: Option<QopAuth<'_>>,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = alg.hash_hex(format!("{method}:{uri}").as_bytes());
    match qop {
        Some(q) => {
            alg.hash_hex(format!("{ha1}:{nonce}:{}:{}:{}:{ha2}", q.nc, q.cnonce, q.qop).as_bytes())
        }
        None => alg.hash_hex(format!("{ha1}:{nonce}:{ha2}").as_bytes()),
    }
}

/// Splits an authentication header value (`challenge` or `credentials`, RFC 3261 §25.1) into
/// its scheme and its `name=value` auth-params: names lowercased, quoted values unescaped, in
/// header order (a repeated name appears twice). `None` for a syntax error: no scheme, a
/// parameter without `=`, an unterminated quoted string.
pub fn auth_params(value: &str) -> Option<(&str, Vec<(String, String)>)> {
    let value = value.trim();
    let scheme_end = value
        .find(|c: char| c.is_ascii_whitespace())
        .unwrap_or(value.len());
    let scheme = &value[..scheme_end];
    if scheme.is_empty() {
        return None;
    }
    let mut rest = value[scheme_end..].chars().peekable();
    let mut params = Vec::new();
    loop {
        while rest
            .peek()
            .is_some_and(|c| c.is_ascii_whitespace() || *c == ',')
        {
            rest.next();
        }
        if rest.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(&c) = rest.peek() {
            if c == '=' || c.is_ascii_whitespace() || c == ',' {
                break;
            }
            name.push(c.to_ascii_lowercase());
            rest.next();
        }
        while rest.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            rest.next();
        }
        if rest.next() != Some('=') || name.is_empty() {
            return None;
        }
        while rest.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            rest.next();
        }
        let mut val = String::new();
        if rest.peek() == Some(&'"') {
            rest.next();
            loop {
                match rest.next()? {
                    '"' => break,
                    '\\' => val.push(rest.next()?),
                    c => val.push(c),
                }
            }
        } else {
            while let Some(&c) = rest.peek() {
                if c == ',' || c.is_ascii_whitespace() {
                    break;
                }
                val.push(c);
                rest.next();
            }
        }
        params.push((name, val));
    }
    Some((scheme, params))
}

// ---------------------------------------------------------------------------------------------
// Inbound: the credentials of a request we challenged

/// The parameters of an `Authorization: Digest ...` header (RFC 3261 §25.1 `credentials`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// `username`.
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce`, as we issued it.
    pub nonce: String,
    /// `uri` (digest-uri), exactly as the client hashed it.
    pub uri: String,
    /// `response`, hex.
    pub response: String,
    /// `algorithm`; absent means MD5.
    pub algorithm: Option<String>,
    /// `qop`.
    pub qop: Option<String>,
    /// `nc`, 8 hex digits.
    pub nc: Option<String>,
    /// `cnonce`.
    pub cnonce: Option<String>,
}

/// Parses the value of an `Authorization` header with the Digest scheme. Returns `None` for
/// another scheme, a syntax error, a repeated parameter, or a missing `username`, `realm`,
/// `nonce`, `uri` or `response`. Unknown parameters (`opaque`, `userhash`, ...) are ignored.
pub fn parse_authorization(value: &str) -> Option<Credentials> {
    let (scheme, params) = auth_params(value)?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let mut map = std::collections::HashMap::with_capacity(params.len());
    for (name, val) in params {
        if map.insert(name, val).is_some() {
            return None;
        }
    }
    let mut take = |k: &str| map.remove(k);
    Some(Credentials {
        username: take("username")?,
        realm: take("realm")?,
        nonce: take("nonce")?,
        uri: take("uri")?,
        response: take("response")?,
        algorithm: take("algorithm"),
        qop: take("qop"),
        nc: take("nc"),
        cnonce: take("cnonce"),
    })
}

// ---------------------------------------------------------------------------------------------
// Outbound: answering a registrar's challenge

/// A digest challenge we can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `opaque`, echoed back unchanged.
    pub opaque: Option<String>,
    /// The hash algorithm.
    pub algorithm: Algorithm,
    /// The algorithm token exactly as the server wrote it (echoed back); `None` when absent.
    pub algorithm_token: Option<String>,
    /// The server offered `qop=auth` (we then answer with qop, cnonce and nc).
    pub qop_auth: bool,
    /// `stale=true`: the credentials were fine, only the nonce had expired (RFC 7616 §3.3).
    pub stale: bool,
}

/// Why a challenge cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// The response carried no challenge header at all.
    #[error("the registrar sent no digest challenge")]
    Missing,
    /// Not a `Digest` challenge (e.g. `Basic`).
    #[error("unsupported authentication scheme '{0}' (only Digest is supported)")]
    Scheme(String),
    /// The header is not a well-formed challenge (e.g. an unterminated quoted string).
    #[error("malformed digest challenge")]
    Syntax,
    /// A required parameter is missing.
    #[error("malformed digest challenge: no {0} parameter")]
    MissingParam(&'static str),
    /// The algorithm is not MD5 or SHA-256.
    #[error("unsupported digest algorithm '{0}' (MD5 and SHA-256 are supported)")]
    Algorithm(String),
    /// The qop options do not include `auth`.
    #[error("unsupported digest qop '{0}' (only qop=auth is supported)")]
    Qop(String),
}

/// Parses one challenge header value, e.g.
/// `Digest realm="pbx", nonce="abc", qop="auth,auth-int", algorithm=SHA-256`. A repeated
/// parameter counts with its first value.
///
/// # Errors
/// A [`ChallengeError`] naming what cannot be answered.
pub fn parse_challenge(value: &str) -> Result<Challenge, ChallengeError> {
    let (scheme, params) = auth_params(value).ok_or(ChallengeError::Syntax)?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return Err(ChallengeError::Scheme(scheme.to_owned()));
    }
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let realm = get("realm").ok_or(ChallengeError::MissingParam("realm"))?;
    let nonce = get("nonce").ok_or(ChallengeError::MissingParam("nonce"))?;
    let algorithm_token = get("algorithm");
    let algorithm = match algorithm_token.as_deref() {
        None => Algorithm::Md5,
        Some(a) => {
            Algorithm::from_token(a).ok_or_else(|| ChallengeError::Algorithm(a.to_owned()))?
        }
    };
    let qop_auth = match get("qop") {
        None => false,
        Some(q) if q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")) => true,
        Some(q) => return Err(ChallengeError::Qop(q)),
    };
    let stale = get("stale").is_some_and(|s| s.trim().eq_ignore_ascii_case("true"));
    Ok(Challenge {
        realm,
        nonce,
        opaque: get("opaque"),
        algorithm,
        algorithm_token,
        qop_auth,
        stale,
    })
}

/// Picks the challenge to answer among a response's challenge header values: the first one we
/// support, in the server's order (RFC 8760 §2.4). With none supported, the first error.
///
/// # Errors
/// [`ChallengeError::Missing`] for an empty list, else the first value's error.
pub fn pick_challenge<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Challenge, ChallengeError> {
    let mut first_err = None;
    for v in values {
        match parse_challenge(v) {
            Ok(c) => return Ok(c),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or(ChallengeError::Missing))
}

/// Builds the `Authorization` (or `Proxy-Authorization`) header value answering `challenge` for
/// a request `method` (e.g. `REGISTER`) to `uri` (the Request-URI exactly as sent). `cnonce` is
/// used when the challenge asked for `qop=auth`; the nonce count is always 1 (every challenge is
/// answered once).
pub fn authorization(
    challenge: &Challenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
) -> String {
    let key = ha1(challenge.algorithm, username, &challenge.realm, password);
    let qop = challenge.qop_auth.then_some(QopAuth {
        qop: "auth",
        nc: "00000001",
        cnonce,
    });
    let response = response(
        challenge.algorithm,
        &key,
        &challenge.nonce,
        qop,
        method,
        uri,
    );
    let mut out = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\"",
        quote(username),
        quote(&challenge.realm),
        quote(&challenge.nonce),
        quote(uri),
        response
    );
    if let Some(alg) = &challenge.algorithm_token {
        out.push_str(&format!(", algorithm={}", alg.trim()));
    }
    if challenge.qop_auth {
        out.push_str(&format!(
            ", cnonce=\"{}\", qop=auth, nc=00000001",
            quote(cnonce)
        ));
    }
    if let Some(opaque) = &challenge.opaque {
        out.push_str(&format!(", opaque=\"{}\"", quote(opaque)));
    }
    out
}

/// Escapes `"` and `\` for a quoted-string (RFC 3261 §25.1).
fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7616 §3.9.1: the same request answered with MD5 and with SHA-256.
    #[test]
    fn rfc7616_vectors() {
        let realm = "http-auth@example.org";
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let qop = Some(QopAuth {
            qop: "auth",
            nc: "00000001",
            cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        });
        let key = ha1(Algorithm::Md5, "Mufasa", realm, "Circle of Life");
        assert_eq!(
            response(Algorithm::Md5, &key, nonce, qop, "GET", "/dir/index.html"),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
        let key = ha1(Algorithm::Sha256, "Mufasa", realm, "Circle of Life");
        assert_eq!(
            response(
                Algorithm::Sha256,
                &key,
                nonce,
                qop,
                "GET",
                "/dir/index.html"
            ),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn algorithm_tokens() {
        assert_eq!(Algorithm::from_token("md5"), Some(Algorithm::Md5));
        assert_eq!(Algorithm::from_token(" SHA-256"), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::from_token("SHA256"), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::from_token("SHA-512-256"), None);
        assert!("MD5-sess"
            .parse::<Algorithm>()
            .unwrap_err()
            .contains("SHA-256"));
        assert_eq!(Algorithm::Sha256.to_string(), "SHA-256");
    }

    #[test]
    fn parses_authorization_headers() {
        let c = parse_authorization(
            "Digest username=\"Mufasa\",realm=\"r\", nonce=\"n\", uri=\"sip:x@y;transport=tcp\", \
             response=\"abc\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"c\\\"q\", opaque=\"o\"",
        )
        .unwrap();
        assert_eq!(c.username, "Mufasa");
        assert_eq!(c.uri, "sip:x@y;transport=tcp");
        assert_eq!(c.algorithm.as_deref(), Some("SHA-256"));
        assert_eq!(c.qop.as_deref(), Some("auth"));
        assert_eq!(c.nc.as_deref(), Some("00000001"));
        assert_eq!(c.cnonce.as_deref(), Some("c\"q"));
        assert!(parse_authorization("Basic dXNlcjpwdw==").is_none());
        assert!(parse_authorization("Digest username=\"a\"").is_none());
        assert!(parse_authorization(
            "Digest username=\"a\", username=\"b\", realm=r, nonce=n, uri=u, response=x"
        )
        .is_none());
        assert!(parse_authorization("Digest username=\"a, realm=r").is_none());
        assert!(parse_authorization("").is_none());
        assert!(parse_authorization("Digest").is_none());
    }

    #[test]
    fn parses_kamailio_and_rfc8760_challenges() {
        let c = parse_challenge(
            "Digest realm=\"127.0.0.1\", nonce=\"Zq3x\\\"y\", qop=\"auth,auth-int\", algorithm=SHA-256, opaque=\"o1\", stale=TRUE",
        )
        .expect("parses");
        assert_eq!(c.realm, "127.0.0.1");
        assert_eq!(c.nonce, "Zq3x\"y");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(c.algorithm_token.as_deref(), Some("SHA-256"));
        assert!(c.qop_auth);
        assert!(c.stale);
        assert_eq!(c.opaque.as_deref(), Some("o1"));

        let c = parse_challenge("digest nonce=\"n\",realm=\"r\"").expect("parses");
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert_eq!(c.algorithm_token, None);
        assert!(!c.qop_auth && !c.stale);
    }

    #[test]
    fn refuses_what_it_cannot_answer() {
        assert_eq!(
            parse_challenge("Basic realm=\"x\""),
            Err(ChallengeError::Scheme("Basic".into()))
        );
        assert_eq!(
            parse_challenge("Digest realm=\"x\", nonce=\"n\", algorithm=SHA-512-256"),
            Err(ChallengeError::Algorithm("SHA-512-256".into()))
        );
        assert_eq!(
            parse_challenge("Digest realm=\"x\", nonce=\"n\", qop=\"auth-int\""),
            Err(ChallengeError::Qop("auth-int".into()))
        );
        assert_eq!(
            parse_challenge("Digest realm=\"x\""),
            Err(ChallengeError::MissingParam("nonce"))
        );
        assert_eq!(
            parse_challenge("Digest realm=\"x, nonce=\"n\""),
            Err(ChallengeError::Syntax)
        );
        assert_eq!(
            pick_challenge(std::iter::empty()),
            Err(ChallengeError::Missing)
        );
    }

    #[test]
    fn picks_the_first_supported_challenge_in_server_order() {
        let c = pick_challenge([
            "Digest realm=\"r\", nonce=\"a\", algorithm=SHA-512-256, qop=\"auth\"",
            "Digest realm=\"r\", nonce=\"b\", algorithm=SHA-256, qop=\"auth\"",
            "Digest realm=\"r\", nonce=\"c\", algorithm=MD5, qop=\"auth\"",
        ])
        .expect("one is supported");
        assert_eq!(c.nonce, "b");
        assert_eq!(c.algorithm, Algorithm::Sha256);
    }

    fn challenge(alg: Option<&str>, qop: bool) -> Challenge {
        Challenge {
            realm: "example.org".into(),
            nonce: "abc123".into(),
            opaque: None,
            algorithm: alg
                .and_then(Algorithm::from_token)
                .unwrap_or(Algorithm::Md5),
            algorithm_token: alg.map(str::to_owned),
            qop_auth: qop,
            stale: false,
        }
    }

    /// Expected responses computed independently (Python hashlib) for alice / s3cret, REGISTER
    /// sip:pbx.example.org, nonce abc123, cnonce 0a4f113b, nc 00000001.
    #[test]
    fn md5_and_sha256_responses_match_reference_values() {
        let cases = [
            (Some("MD5"), true, "353722e2219245e59ce218bd232b8f78"),
            (None, false, "902758782a9ffb5b47e7066995cfff8a"),
            (
                Some("SHA-256"),
                true,
                "07e69b2f6fd86c3c20e10d3429c76b14a715ac74f3fa475ea22439370c7a5bfe",
            ),
            (
                Some("SHA-256"),
                false,
                "b05acde1ad2a043f3e7337bdf4443eefde64be38eb2a558755b2873a6680d159",
            ),
        ];
        for (alg, qop, expected) in cases {
            let v = authorization(
                &challenge(alg, qop),
                "alice",
                "s3cret",
                "REGISTER",
                "sip:pbx.example.org",
                "0a4f113b",
            );
            assert!(
                v.contains(&format!("response=\"{expected}\"")),
                "{alg:?} qop={qop}: {v}"
            );
            assert!(v.starts_with("Digest username=\"alice\", realm=\"example.org\""));
            assert!(v.contains("uri=\"sip:pbx.example.org\""));
            assert_eq!(v.contains("qop=auth, nc=00000001"), qop, "{v}");
            assert_eq!(v.contains("cnonce=\"0a4f113b\""), qop, "{v}");
            match alg {
                Some(a) => assert!(v.contains(&format!("algorithm={a}")), "{v}"),
                None => assert!(!v.contains("algorithm="), "{v}"),
            }
        }
    }

    #[test]
    fn opaque_is_echoed_and_quotes_are_escaped() {
        let mut c = challenge(Some("MD5"), false);
        c.opaque = Some("op\"q".into());
        let v = authorization(&c, "a\"b", "pw", "REGISTER", "sip:x", "cn");
        assert!(v.contains("opaque=\"op\\\"q\""), "{v}");
        assert!(v.contains("username=\"a\\\"b\""), "{v}");
    }

    /// What our registration client writes, our admission parser reads back unchanged.
    #[test]
    fn our_authorization_parses_as_the_credentials_it_carries() {
        let c = challenge(Some("SHA-256"), true);
        let v = authorization(&c, "alice", "s3cret", "INVITE", "sip:frontdesk@h", "cn1");
        let creds = parse_authorization(&v).expect("parses");
        let key = ha1(Algorithm::Sha256, "alice", "example.org", "s3cret");
        let qop = QopAuth {
            qop: creds.qop.as_deref().unwrap_or_default(),
            nc: creds.nc.as_deref().unwrap_or_default(),
            cnonce: creds.cnonce.as_deref().unwrap_or_default(),
        };
        assert_eq!(
            creds.response,
            response(
                Algorithm::Sha256,
                &key,
                &creds.nonce,
                Some(qop),
                "INVITE",
                &creds.uri
            )
        );
        assert_eq!(creds.algorithm.as_deref(), Some("SHA-256"));
    }
}
