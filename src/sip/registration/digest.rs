//! Digest authentication for the requests frontdesk sends (REGISTER): parses the registrar's
//! `WWW-Authenticate` / `Proxy-Authenticate` challenges and builds the matching `Authorization` /
//! `Proxy-Authorization` value (RFC 3261 §22.4, RFC 7616, RFC 8760).
//!
//! Supported: `algorithm=MD5` (also when the parameter is absent) and `algorithm=SHA-256`, with
//! `qop=auth` or without qop (RFC 2069 compatibility). `-sess` variants, `SHA-512-256` and
//! `qop=auth-int` alone are refused with a precise [`ChallengeError`]. When a response carries
//! several challenges (RFC 8760 §2.4: one per algorithm, in the server's order of preference) the
//! first supported one is answered.
//!
//! Why not rsipstack's own client code: rsipstack 0.7.14 parses `algorithm` as `SHA256` only (the
//! RFC 7616 token `SHA-256` is a parse error), reads a qop list such as `"auth,auth-int"` as an
//! error, and writes `algorithm=SHA256` back. Only its hash function ([`compute_digest`]) is used.
//!
//! No I/O: the client nonce is an input, so every answer is reproducible in tests.

use rsipstack::dialog::authenticate::compute_digest;
use rsipstack::sip::headers::auth::{Algorithm as RsipAlgorithm, AuthQop};
use rsipstack::sip::Method;

/// Hash algorithm of a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// MD5 (RFC 2617; the default when the challenge names none).
    Md5,
    /// SHA-256 (RFC 7616, RFC 8760).
    Sha256,
}

impl Algorithm {
    fn rsip(self) -> RsipAlgorithm {
        match self {
            Algorithm::Md5 => RsipAlgorithm::Md5,
            Algorithm::Sha256 => RsipAlgorithm::Sha256,
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        })
    }
}

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
/// `Digest realm="pbx", nonce="abc", qop="auth,auth-int", algorithm=SHA-256`.
///
/// # Errors
/// A [`ChallengeError`] naming what cannot be answered.
pub fn parse_challenge(value: &str) -> Result<Challenge, ChallengeError> {
    let value = value.trim();
    let (scheme, rest) = match value.find(|c: char| c.is_ascii_whitespace()) {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, ""),
    };
    if !scheme.eq_ignore_ascii_case("digest") {
        return Err(ChallengeError::Scheme(scheme.to_owned()));
    }
    let params = parse_params(rest);
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let realm = get("realm").ok_or(ChallengeError::MissingParam("realm"))?;
    let nonce = get("nonce").ok_or(ChallengeError::MissingParam("nonce"))?;
    let algorithm_token = get("algorithm");
    let algorithm = match algorithm_token.as_deref().map(str::trim) {
        None => Algorithm::Md5,
        Some(a) if a.eq_ignore_ascii_case("MD5") => Algorithm::Md5,
        // RFC 7616 spells it SHA-256; some servers write SHA256.
        Some(a) if a.eq_ignore_ascii_case("SHA-256") || a.eq_ignore_ascii_case("SHA256") => {
            Algorithm::Sha256
        }
        Some(a) => return Err(ChallengeError::Algorithm(a.to_owned())),
    };
    let qop_auth = match get("qop") {
        None => false,
        Some(q) => {
            if q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")) {
                true
            } else {
                return Err(ChallengeError::Qop(q));
            }
        }
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
/// a request `method` to `uri` (the Request-URI exactly as sent). `cnonce` is used when the
/// challenge asked for `qop=auth`; the nonce count is always 1 (every challenge is answered once).
pub fn authorization(
    challenge: &Challenge,
    username: &str,
    password: &str,
    method: &Method,
    uri: &str,
    cnonce: &str,
) -> String {
    let qop = challenge.qop_auth.then(|| AuthQop::Auth {
        cnonce: cnonce.to_owned(),
        nc: 1,
    });
    let response = compute_digest(
        username,
        password,
        &challenge.realm,
        &challenge.nonce,
        method,
        uri,
        challenge.algorithm.rsip(),
        qop.as_ref(),
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

/// Splits `k=v, k="quoted, value", ...` into pairs; quoted values are unescaped.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        // Skip separators.
        while chars
            .peek()
            .is_some_and(|c| c.is_ascii_whitespace() || *c == ',')
        {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.trim().is_empty() && chars.peek().is_none() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                chars.next();
            }
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
                value = value.trim().to_owned();
            }
        }
        let key = key.trim().to_owned();
        if !key.is_empty() {
            out.push((key, value));
        }
        if chars.peek().is_none() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
            algorithm: match alg {
                Some("SHA-256") => Algorithm::Sha256,
                _ => Algorithm::Md5,
            },
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
                &Method::Register,
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
        let v = authorization(&c, "a\"b", "pw", &Method::Register, "sip:x", "cn");
        assert!(v.contains("opaque=\"op\\\"q\""), "{v}");
        assert!(v.contains("username=\"a\\\"b\""), "{v}");
    }
}
