//! Checks every SIP message before rsipstack's transaction layer sees it (sans-IO).
//!
//! [`inspect`] takes the bytes of one UDP datagram (or one framed TCP message) and returns a
//! [`Verdict`]: hand on a canonical copy of the message ([`Verdict::Accept`]), answer it
//! statelessly ([`Verdict::Reject`], RFC 3261 §8.2 and §21), or drop it ([`Verdict::Drop`]).
//! No I/O, no clock: the shell (`sip::guard`) sends the answers and logs one line per rejection.
//!
//! What is answered (RFC 3261 §8.2.1-§8.2.3, RFC 4475 §3, RFC 5118 §4):
//!
//! ```text
//! malformed request (Request-Line, Content-Length, Via, quotes, <>, several values in a
//!   single-value header, CSeq/Request-Line method mismatch, missing header) ─► 400 <the fault>
//! SIP version other than 2.0                                              ─► 505
//! method we know but do not serve (REGISTER, MESSAGE, ...)                ─► 405 + Allow
//! method nobody knows                                                     ─► 501 + Allow
//! Request-URI scheme other than sip/sips/tel                              ─► 416
//! Require with an option tag other than `timer`                           ─► 420 + Unsupported
//! INVITE/UPDATE body that is not application/sdp                         ─► 415 + Accept
//! INVITE whose Accept excludes application/sdp                            ─► 406 + Accept
//! malformed ACK, malformed response, response with several Via values or a
//!   broadcast Via (RFC 3261 §8.1.3.3), status code outside 100-699      ─► dropped silently
//! ```
//!
//! The canonical copy guards rsipstack 0.7.14's known defects: header lines are unfolded and must
//! be UTF-8 (a non-UTF-8 line made rsipstack drop every later header), comma-joined Via values are
//! split into one Via header each, compact header names are expanded, LWS around `;`, `=`, `/`
//! and `,` in address and Via headers is removed, and the octets after Content-Length in a UDP
//! datagram are discarded (Content-Length is rewritten to the body's exact length).

use std::fmt::Write as _;
use std::net::{Ipv6Addr, SocketAddr};

/// Methods frontdesk serves; announced in `Allow` of 405/501 answers (RFC 3261 §20.5).
pub const ALLOWED_METHODS: &[&str] = &[
    "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "NOTIFY",
];

/// Standard methods frontdesk knows but does not serve (answered 405, not 501).
const KNOWN_METHODS: &[&str] = &[
    "REGISTER",
    "MESSAGE",
    "SUBSCRIBE",
    "REFER",
    "PUBLISH",
    "PRACK",
];

/// Option tags frontdesk supports in `Require` (RFC 4028 session timers).
const SUPPORTED_OPTION_TAGS: &[&str] = &["timer"];

/// Largest CSeq sequence number (RFC 3261 §8.1.1.5: less than 2**31).
const MAX_CSEQ: u64 = (1 << 31) - 1;

/// What to do with one received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A well-formed message: hand these canonical bytes to the transaction layer.
    Accept(Vec<u8>),
    /// Only whitespace (a CRLF keep-alive, RFC 5626 §3.5.1): leave it to the transport as it is.
    KeepAlive,
    /// A request we answer statelessly; it must not reach the transaction layer.
    Reject(Rejection),
    /// Dropped without an answer (malformed ACKs and responses, stray responses).
    Drop(Rule),
}

/// A stateless answer to a request that failed a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The status code (400, 405, 415, 416, 420, 501, 505, ...).
    pub status: u16,
    /// The check that failed.
    pub rule: Rule,
    /// The whole response message (status line, Via/From/To/Call-ID/CSeq copied, `Content-Length: 0`).
    pub response: Vec<u8>,
    /// The request's Call-ID, for the log line.
    pub call_id: Option<String>,
    /// Where a datagram answer goes (RFC 3261 §18.2.2 with RFC 3581): the packet's source IP with
    /// the top Via's port (5060 when it names none), or the source port when the Via asks for
    /// `rport` or cannot be read. Stream transports answer on the connection instead.
    pub reply_to: SocketAddr,
}

/// The check a message failed; `Display` is the reason phrase of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The start line is not `Method SP Request-URI SP SIP-Version` (missing parts).
    MalformedRequestLine,
    /// Extra or trailing whitespace separates the Request-Line's elements (RFC 4475 §3.1.2.9-10).
    RequestLineWhitespace,
    /// Whitespace inside the Request-URI (RFC 4475 §3.1.2.8).
    LwsInRequestUri,
    /// The method is not a token.
    BadMethod,
    /// A SIP version other than 2.0 (505, RFC 3261 §8.2.2 / RFC 4475 §3.1.2.16).
    UnsupportedVersion,
    /// The Request-URI is enclosed in `<>` (RFC 4475 §3.1.2.7).
    RequestUriInBrackets,
    /// The Request-URI carries `?headers` (RFC 3261 §19.1.5, RFC 4475 §3.1.2.11).
    HeadersInRequestUri,
    /// The Request-URI does not parse (scheme, host, IPv6 reference, port).
    BadRequestUri,
    /// A header line is not UTF-8 (RFC 3261 §25.1).
    HeaderNotUtf8,
    /// A header line has no `name:` or the name is not a token.
    MalformedHeaderLine,
    /// A quoted string is not terminated (RFC 4475 §3.1.2.6).
    UnterminatedQuote,
    /// Several values in a header that takes one (RFC 4475 §3.3.8, §3.3.9).
    SeveralValues(&'static str),
    /// A mandatory header is missing (RFC 3261 §8.1.1, RFC 4475 §3.3.1).
    MissingHeader(&'static str),
    /// Content-Length is not a non-negative number (RFC 4475 §3.1.2.3).
    BadContentLength,
    /// Content-Length is larger than the octets received (RFC 4475 §3.1.2.2).
    ContentLengthTooLarge,
    /// CSeq is not `number method` or the number is 2**31 or more (RFC 4475 §3.1.2.4).
    BadCSeq,
    /// The CSeq method differs from the Request-Line's (RFC 4475 §3.1.2.17-18).
    CSeqMethodMismatch,
    /// Max-Forwards is not a number.
    BadMaxForwards,
    /// Date is not an RFC 1123 date in GMT (RFC 3261 §20.17, RFC 4475 §3.1.2.12).
    BadDate,
    /// A Via value is malformed: stray `;` or `,`, missing sent-by (RFC 4475 §3.1.2.1).
    BadVia,
    /// Whitespace inside `<>` of an address (RFC 4475 §3.1.2.14).
    SpacesInAddrSpec,
    /// A display name with characters that need quoting (RFC 4475 §3.1.2.15).
    BadDisplayName,
    /// An address with `?`, `,` or `;` in its URI that is not enclosed in `<>` (RFC 4475 §3.1.2.13).
    UnenclosedUri,
    /// A malformed address header (no closing `>`, empty).
    BadAddress,
    /// 405: a method frontdesk knows but does not serve.
    MethodNotAllowed,
    /// 501: an unknown method.
    NotImplemented,
    /// 416: a Request-URI scheme other than sip, sips or tel.
    UnsupportedScheme,
    /// 420: `Require` names an option tag we do not support.
    BadExtension,
    /// 415: a body other than `application/sdp`.
    UnsupportedMediaType,
    /// 406: `Accept` excludes `application/sdp`.
    NotAcceptable,
    /// A response whose status line is malformed or whose code is outside 100-699.
    BadStatusLine,
    /// A response with several Via values (not ours, RFC 3261 §8.1.3.3).
    ResponseViaNotOurs,
    /// A response with a broadcast address in a Via (RFC 4475 §3.3.10).
    BroadcastVia,
    /// 513: the message is larger than the transport layer's buffer.
    MessageTooLarge,
}

impl Rule {
    /// The status code of the answer for this rule (responses and ACKs are never answered).
    pub fn status(self) -> u16 {
        match self {
            Rule::UnsupportedVersion => 505,
            Rule::MethodNotAllowed => 405,
            Rule::NotImplemented => 501,
            Rule::UnsupportedScheme => 416,
            Rule::BadExtension => 420,
            Rule::UnsupportedMediaType => 415,
            Rule::NotAcceptable => 406,
            Rule::MessageTooLarge => 513,
            _ => 400,
        }
    }

    /// A short machine-readable name for logs, e.g. `several-values`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::MalformedRequestLine => "malformed-request-line",
            Rule::RequestLineWhitespace => "request-line-whitespace",
            Rule::LwsInRequestUri => "lws-in-request-uri",
            Rule::BadMethod => "bad-method",
            Rule::UnsupportedVersion => "unsupported-version",
            Rule::RequestUriInBrackets => "request-uri-in-brackets",
            Rule::HeadersInRequestUri => "headers-in-request-uri",
            Rule::BadRequestUri => "bad-request-uri",
            Rule::HeaderNotUtf8 => "header-not-utf8",
            Rule::MalformedHeaderLine => "malformed-header-line",
            Rule::UnterminatedQuote => "unterminated-quote",
            Rule::SeveralValues(_) => "several-values",
            Rule::MissingHeader(_) => "missing-header",
            Rule::BadContentLength => "bad-content-length",
            Rule::ContentLengthTooLarge => "content-length-too-large",
            Rule::BadCSeq => "bad-cseq",
            Rule::CSeqMethodMismatch => "cseq-method-mismatch",
            Rule::BadMaxForwards => "bad-max-forwards",
            Rule::BadDate => "bad-date",
            Rule::BadVia => "bad-via",
            Rule::SpacesInAddrSpec => "spaces-in-addr-spec",
            Rule::BadDisplayName => "bad-display-name",
            Rule::UnenclosedUri => "unenclosed-uri",
            Rule::BadAddress => "bad-address",
            Rule::MethodNotAllowed => "method-not-allowed",
            Rule::NotImplemented => "not-implemented",
            Rule::UnsupportedScheme => "unsupported-uri-scheme",
            Rule::BadExtension => "bad-extension",
            Rule::UnsupportedMediaType => "unsupported-media-type",
            Rule::NotAcceptable => "not-acceptable",
            Rule::BadStatusLine => "bad-status-line",
            Rule::ResponseViaNotOurs => "response-via-not-ours",
            Rule::BroadcastVia => "broadcast-via",
            Rule::MessageTooLarge => "message-too-large",
        }
    }
}

impl std::fmt::Display for Rule {
    /// The reason phrase: names the fault (RFC 3261 §21.4.1 lets a 400 say what was wrong).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rule::MalformedRequestLine => f.write_str("Bad Request (malformed Request-Line)"),
            Rule::RequestLineWhitespace => {
                f.write_str("Bad Request (extra whitespace in the Request-Line)")
            }
            Rule::LwsInRequestUri => f.write_str("Bad Request (whitespace in the Request-URI)"),
            Rule::BadMethod => f.write_str("Bad Request (method is not a token)"),
            Rule::UnsupportedVersion => f.write_str("Version Not Supported"),
            Rule::RequestUriInBrackets => f.write_str("Bad Request (Request-URI enclosed in <>)"),
            Rule::HeadersInRequestUri => f.write_str("Bad Request (headers in the Request-URI)"),
            Rule::BadRequestUri => f.write_str("Bad Request (malformed Request-URI)"),
            Rule::HeaderNotUtf8 => f.write_str("Bad Request (header line is not UTF-8)"),
            Rule::MalformedHeaderLine => f.write_str("Bad Request (malformed header line)"),
            Rule::UnterminatedQuote => f.write_str("Bad Request (unterminated quoted string)"),
            Rule::SeveralValues(h) => write!(f, "Bad Request (several {h} values)"),
            Rule::MissingHeader(h) => write!(f, "Bad Request (missing {h})"),
            Rule::BadContentLength => f.write_str("Bad Request (malformed Content-Length)"),
            Rule::ContentLengthTooLarge => {
                f.write_str("Bad Request (Content-Length larger than the message)")
            }
            Rule::BadCSeq => f.write_str("Bad Request (malformed CSeq)"),
            Rule::CSeqMethodMismatch => {
                f.write_str("Bad Request (CSeq method does not match the Request-Line)")
            }
            Rule::BadMaxForwards => f.write_str("Bad Request (malformed Max-Forwards)"),
            Rule::BadDate => f.write_str("Bad Request (Date must be in GMT)"),
            Rule::BadVia => f.write_str("Bad Request (malformed Via)"),
            Rule::SpacesInAddrSpec => f.write_str("Bad Request (whitespace inside <>)"),
            Rule::BadDisplayName => f.write_str("Bad Request (display name must be quoted)"),
            Rule::UnenclosedUri => {
                f.write_str("Bad Request (URI with parameters or headers not in <>)")
            }
            Rule::BadAddress => f.write_str("Bad Request (malformed address)"),
            Rule::MethodNotAllowed => f.write_str("Method Not Allowed"),
            Rule::NotImplemented => f.write_str("Not Implemented"),
            Rule::UnsupportedScheme => f.write_str("Unsupported URI Scheme"),
            Rule::BadExtension => f.write_str("Bad Extension"),
            Rule::UnsupportedMediaType => f.write_str("Unsupported Media Type"),
            Rule::NotAcceptable => f.write_str("Not Acceptable"),
            Rule::BadStatusLine => f.write_str("malformed status line"),
            Rule::ResponseViaNotOurs => f.write_str("response with several Via values"),
            Rule::BroadcastVia => f.write_str("response with a broadcast Via"),
            Rule::MessageTooLarge => f.write_str("Message Too Large"),
        }
    }
}

/// One header after unfolding.
struct Hdr {
    /// Full header name, compact forms expanded (`v` becomes `Via`), else as written.
    name: String,
    /// The unfolded, trimmed value.
    value: String,
}

impl Hdr {
    fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// Inspects one message: `bytes` is a whole UDP datagram (`stream == false`) or one message framed
/// from a TCP/TLS stream by its Content-Length (`stream == true`); `source` is the packet's source;
/// `max_len` is the largest canonical message (bytes) the transaction layer can take: a larger
/// request gets 513 Message Too Large.
///
/// Never panics, whatever the bytes.
pub fn inspect(bytes: &[u8], source: SocketAddr, stream: bool, max_len: usize) -> Verdict {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Verdict::KeepAlive;
    }
    // Leading CRLFs before a message are ignored (RFC 3261 §7.5).
    let start = bytes
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(0);
    let bytes = &bytes[start..];
    let (head, body) = match find(bytes, b"\r\n\r\n") {
        Some(i) => (&bytes[..i], &bytes[i + 4..]),
        // A datagram without the empty line: the headers end with the datagram.
        None => (trim_crlf_end(bytes), &[][..]),
    };
    let mut lines = split_crlf(head);
    let start_line = lines.next().unwrap_or_default();
    let is_response = start_line.starts_with(b"SIP/");

    let (headers, header_fault) = parse_headers(lines);
    let msg = Parsed {
        headers,
        source,
        start_line,
    };
    if is_response {
        return match check_response(&msg, header_fault) {
            Ok(()) => match accept(&msg, body, stream) {
                Ok(Verdict::Accept(b)) if b.len() > max_len => Verdict::Drop(Rule::MessageTooLarge),
                Ok(v) => v,
                Err(rule) => Verdict::Drop(rule),
            },
            Err(rule) => Verdict::Drop(rule),
        };
    }
    let method = start_line
        .split(|b| *b == b' ')
        .next()
        .and_then(|m| std::str::from_utf8(m).ok())
        .unwrap_or("")
        .to_owned();
    match check_request(&msg, header_fault, body, stream) {
        Ok(()) => match accept(&msg, body, stream) {
            Ok(Verdict::Accept(b)) if b.len() > max_len => {
                msg.reject(Rule::MessageTooLarge, &method, &[])
            }
            Ok(v) => v,
            Err(rule) => msg.reject(rule, &method, &[]),
        },
        Err((rule, extra)) => msg.reject(rule, &method, &extra),
    }
}

struct Parsed<'a> {
    headers: Vec<Hdr>,
    source: SocketAddr,
    start_line: &'a [u8],
}

impl Parsed<'_> {
    fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Hdr> + 's {
        self.headers.iter().filter(move |h| h.is(name))
    }

    fn first(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.is(name))
            .map(|h| h.value.as_str())
    }

    /// A stateless answer (none for ACK, RFC 3261 §17.2.1).
    fn reject(&self, rule: Rule, method: &str, extra: &[(&str, String)]) -> Verdict {
        if method == "ACK" {
            return Verdict::Drop(rule);
        }
        let status = rule.status();
        let mut r = String::new();
        let _ = write!(r, "SIP/2.0 {status} {rule}\r\n");
        for via in self.all("Via") {
            let _ = write!(r, "Via: {}\r\n", via.value);
        }
        if let Some(from) = self.first("From") {
            let _ = write!(r, "From: {from}\r\n");
        }
        if let Some(to) = self.first("To") {
            if has_tag(to) {
                let _ = write!(r, "To: {to}\r\n");
            } else {
                // A stateless UAS gives the same request the same tag (RFC 3261 §8.2.7).
                let _ = write!(r, "To: {to};tag={:08x}\r\n", self.tag_hash());
            }
        }
        if let Some(call_id) = self.first("Call-ID") {
            let _ = write!(r, "Call-ID: {call_id}\r\n");
        }
        if let Some(cseq) = self.first("CSeq") {
            let _ = write!(r, "CSeq: {cseq}\r\n");
        }
        for (name, value) in extra {
            let _ = write!(r, "{name}: {value}\r\n");
        }
        r.push_str("Content-Length: 0\r\n\r\n");
        Verdict::Reject(Rejection {
            status,
            rule,
            response: r.into_bytes(),
            call_id: self.first("Call-ID").map(str::to_owned),
            reply_to: self.reply_to(),
        })
    }

    fn tag_hash(&self) -> u32 {
        // FNV-1a over Call-ID, the CSeq number (an ACK shares its INVITE's), From and the top Via.
        let mut h: u32 = 0x811c_9dc5;
        let cseq = self.first("CSeq").unwrap_or("");
        let cseq_num = cseq.split_whitespace().next().unwrap_or("");
        for part in [
            self.first("Call-ID").unwrap_or(""),
            cseq_num,
            self.first("From").unwrap_or(""),
            self.first("Via").unwrap_or(""),
        ] {
            for b in part.bytes() {
                h ^= u32::from(b);
                h = h.wrapping_mul(0x0100_0193);
            }
        }
        h
    }

    fn reply_to(&self) -> SocketAddr {
        let port = self
            .first("Via")
            .and_then(|v| split_top(v, b',').into_iter().next().map(str::to_owned))
            .and_then(|top| via_reply_port(&tighten(&top, true)));
        match port {
            Some(Some(port)) => SocketAddr::new(self.source.ip(), port),
            _ => self.source,
        }
    }
}

/// The port a response to this (tightened) Via value goes to: `Some(None)` for `rport` (the
/// source port), `Some(Some(port))` for the sent-by port or 5060, `None` if unreadable.
fn via_reply_port(via: &str) -> Option<Option<u16>> {
    let (_, rest) = via.split_once(' ')?;
    let mut parts = rest.split(';');
    let sent_by = parts.next()?.trim();
    if parts.any(|p| {
        p.trim()
            .split('=')
            .next()
            .is_some_and(|n| n.eq_ignore_ascii_case("rport"))
    }) {
        return Some(None);
    }
    let port = if let Some(rest) = sent_by.strip_prefix('[') {
        let (_, after) = rest.split_once(']')?;
        after.strip_prefix(':').map(str::parse::<u16>)
    } else {
        sent_by.split_once(':').map(|(_, p)| p.parse::<u16>())
    };
    match port {
        None => Some(Some(5060)),
        Some(Ok(p)) if p != 0 => Some(Some(p)),
        Some(_) => None,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim_crlf_end(mut b: &[u8]) -> &[u8] {
    while let [rest @ .., b'\r' | b'\n'] = b {
        b = rest;
    }
    b
}

/// Lines split at CRLF (a bare LF also ends a line; a trailing CR is dropped).
fn split_crlf(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|b| *b == b'\n').map(|l| match l {
        [rest @ .., b'\r'] => rest,
        l => l,
    })
}

/// The expansion of a compact header name (RFC 3261 §7.3.3, RFC 3515, RFC 4028, RFC 3265).
fn expand_compact(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "i" => "Call-ID",
        "m" => "Contact",
        "e" => "Content-Encoding",
        "l" => "Content-Length",
        "c" => "Content-Type",
        "f" => "From",
        "s" => "Subject",
        "k" => "Supported",
        "t" => "To",
        "v" => "Via",
        "o" => "Event",
        "r" => "Refer-To",
        "b" => "Referred-By",
        "x" => "Session-Expires",
        "u" => "Allow-Events",
        _ => return None,
    })
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_token_char)
}

/// Unfolds the header lines; returns the headers and the first fault of the header section.
fn parse_headers<'a>(lines: impl Iterator<Item = &'a [u8]>) -> (Vec<Hdr>, Option<Rule>) {
    let mut logical: Vec<Vec<u8>> = Vec::new();
    let mut fault = None;
    for line in lines {
        if matches!(line.first(), Some(b' ' | b'\t')) {
            match logical.last_mut() {
                Some(prev) => {
                    prev.push(b' ');
                    prev.extend_from_slice(trim_ws(line));
                }
                None => {
                    fault.get_or_insert(Rule::MalformedHeaderLine);
                }
            }
        } else {
            logical.push(line.to_vec());
        }
    }
    let mut headers = Vec::with_capacity(logical.len());
    for raw in logical {
        let text = match String::from_utf8(raw) {
            Ok(t) => t,
            Err(e) => {
                fault.get_or_insert(Rule::HeaderNotUtf8);
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            }
        };
        let Some((name, value)) = text.split_once(':') else {
            fault.get_or_insert(Rule::MalformedHeaderLine);
            continue;
        };
        let name = name.trim_end_matches([' ', '\t']);
        if !is_token(name) {
            fault.get_or_insert(Rule::MalformedHeaderLine);
            continue;
        }
        let name = expand_compact(name).map_or_else(|| name.to_owned(), str::to_owned);
        headers.push(Hdr {
            name,
            value: value.trim_matches([' ', '\t']).to_owned(),
        });
    }
    (headers, fault)
}

fn trim_ws(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| *c != b' ' && *c != b'\t')
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| *c != b' ' && *c != b'\t')
        .map_or(s, |p| p + 1);
    &b[s..e.max(s)]
}

/// Tracks whether a scan is inside a quoted string (RFC 3261 §25.1 `quoted-string`, with
/// `\` escapes).
#[derive(Default)]
struct Quotes {
    inside: bool,
    escaped: bool,
}

impl Quotes {
    /// Feeds one byte (a non-ASCII char as any non-special byte); `true` when it belongs to a
    /// quoted string (its quotes included).
    fn step(&mut self, b: u8) -> bool {
        if self.inside {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.inside = false;
            }
            true
        } else if b == b'"' {
            self.inside = true;
            true
        } else {
            false
        }
    }
}

fn ascii_byte(c: char) -> u8 {
    u8::try_from(c).ok().filter(u8::is_ascii).unwrap_or(0)
}

/// Splits `s` at `sep` outside quoted strings and `<...>`.
fn split_top(s: &str, sep: u8) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quotes = Quotes::default();
    let mut in_angle = false;
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        if quotes.step(b) {
            continue;
        }
        match b {
            b'<' => in_angle = true,
            b'>' => in_angle = false,
            _ if b == sep && !in_angle => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Whether every quoted string in `s` is terminated.
fn quotes_balanced(s: &str) -> bool {
    let mut quotes = Quotes::default();
    s.bytes().for_each(|b| {
        quotes.step(b);
    });
    !quotes.inside
}

/// Removes LWS next to `;`, `=` and `,` (and `/` for a Via) outside quoted strings and `<>`, and
/// collapses other LWS runs to one SP.
fn tighten(s: &str, via: bool) -> String {
    let tight = |c: char| c == ';' || c == '=' || c == ',' || (via && c == '/');
    let mut out = String::with_capacity(s.len());
    let mut quotes = Quotes::default();
    let mut in_angle = false;
    let mut pending_space = false;
    for c in s.chars() {
        if quotes.inside {
            out.push(c);
            quotes.step(ascii_byte(c));
            continue;
        }
        if in_angle {
            out.push(c);
            if c == '>' {
                in_angle = false;
            }
            continue;
        }
        if c == ' ' || c == '\t' {
            pending_space = true;
            continue;
        }
        if tight(c) {
            pending_space = false;
            out.push(c);
            // Swallow the LWS that follows too.
            continue;
        }
        if pending_space && !out.is_empty() && !out.ends_with(tight) {
            out.push(' ');
        }
        pending_space = false;
        if c == '"' {
            quotes.step(b'"');
        } else if c == '<' {
            in_angle = true;
        }
        out.push(c);
    }
    out
}

/// Whether an address value (`name-addr` or `addr-spec` with params) carries a `tag` parameter.
fn has_tag(value: &str) -> bool {
    let t = tighten(value, false);
    let params = match t.rfind('>') {
        Some(i) => &t[i + 1..],
        None => t.split_once(';').map_or("", |(_, p)| p),
    };
    params.split(';').any(|p| {
        p.split('=')
            .next()
            .is_some_and(|n| n.trim().eq_ignore_ascii_case("tag"))
    })
}

/// The URI of an address value (inside `<>`, else up to the first `;`).
fn address_uri(value: &str) -> Option<String> {
    let v = value.trim();
    let uri = match (v.find('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v.split(';').next().unwrap_or(v),
    };
    let uri = uri.trim();
    (!uri.is_empty()).then(|| uri.to_owned())
}

/// Whether a (tightened) Via value has the parameter `name`.
fn has_param(via: &str, name: &str) -> bool {
    via.split(';').skip(1).any(|p| {
        p.split('=')
            .next()
            .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
    })
}

/// Checks one address (`From`, `To`, one `Contact`/`Route` element).
fn check_address(value: &str) -> Result<(), Rule> {
    if !quotes_balanced(value) {
        return Err(Rule::UnterminatedQuote);
    }
    let v = value.trim();
    if v.is_empty() {
        return Err(Rule::BadAddress);
    }
    // Find '<' outside a quoted display name.
    let mut quotes = Quotes::default();
    let lt = v.bytes().position(|b| !quotes.step(b) && b == b'<');
    match lt {
        Some(i) => {
            let display = v[..i].trim();
            let quoted = display.starts_with('"') && display.ends_with('"') && display.len() >= 2;
            if !display.is_empty()
                && !quoted
                && !display
                    .chars()
                    .all(|c| is_token_char(c) || c == ' ' || c == '\t' || !c.is_ascii())
            {
                return Err(Rule::BadDisplayName);
            }
            let Some(gt) = v[i..].find('>') else {
                return Err(Rule::BadAddress);
            };
            let inner = &v[i + 1..i + gt];
            if inner.is_empty() {
                return Err(Rule::BadAddress);
            }
            if inner.starts_with([' ', '\t']) || inner.ends_with([' ', '\t']) {
                return Err(Rule::SpacesInAddrSpec);
            }
            Ok(())
        }
        None => {
            if v.starts_with('"') {
                return Err(Rule::BadAddress);
            }
            // addr-spec: everything up to the first ';' is the URI; header params follow.
            let uri = v.split(';').next().unwrap_or(v).trim();
            if uri.contains('?') || uri.contains(',') {
                return Err(Rule::UnenclosedUri);
            }
            if uri.contains([' ', '\t']) {
                return Err(Rule::BadDisplayName);
            }
            Ok(())
        }
    }
}

/// Checks one Via value (one element of a comma-joined list), RFC 3261 §20.42.
fn check_via(value: &str) -> Result<(), Rule> {
    if !quotes_balanced(value) {
        return Err(Rule::UnterminatedQuote);
    }
    let v = tighten(value, true);
    let Some((protocol, rest)) = v.split_once(' ') else {
        return Err(Rule::BadVia);
    };
    let parts: Vec<&str> = protocol.split('/').collect();
    if parts.len() != 3 || !parts.iter().all(|p| is_token(p)) {
        return Err(Rule::BadVia);
    }
    let mut params = rest.split(';');
    let sent_by = params.next().unwrap_or("").trim();
    if sent_by.is_empty() || sent_by.contains(' ') || check_hostport(sent_by).is_err() {
        return Err(Rule::BadVia);
    }
    for p in params {
        let (name, val) = p.split_once('=').unwrap_or((p, ""));
        if !is_token(name) {
            return Err(Rule::BadVia);
        }
        if p.contains('=') && val.is_empty() {
            return Err(Rule::BadVia);
        }
    }
    Ok(())
}

/// Checks `host[:port]`, with IPv6 references in brackets (RFC 3261 §25.1, RFC 5118 §4.2, §4.10).
fn check_hostport(hp: &str) -> Result<(), ()> {
    let (host, port) = if let Some(rest) = hp.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or(())?;
        addr.parse::<Ipv6Addr>().map_err(|_| ())?;
        match after {
            "" => (addr, None),
            p => (addr, Some(p.strip_prefix(':').ok_or(())?)),
        }
    } else {
        match hp.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hp, None),
        }
    };
    if host.is_empty() || host.contains(['[', ']']) {
        return Err(());
    }
    if !hp.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(());
    }
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => {}
            _ => return Err(()),
        }
    }
    Ok(())
}

/// Checks the Request-URI; returns its scheme (lowercase).
fn check_request_uri(uri: &str) -> Result<String, Rule> {
    if uri.starts_with('<') {
        return Err(Rule::RequestUriInBrackets);
    }
    let (scheme, rest) = uri.split_once(':').ok_or(Rule::BadRequestUri)?;
    let valid_scheme = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !valid_scheme || rest.is_empty() {
        return Err(Rule::BadRequestUri);
    }
    let scheme = scheme.to_ascii_lowercase();
    if scheme == "sip" || scheme == "sips" {
        // userinfo ends at the last '@' (an unescaped '@' cannot occur in it).
        let hostpart = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        if hostpart.contains('?') {
            return Err(Rule::HeadersInRequestUri);
        }
        let hostport = hostpart.split(';').next().unwrap_or("");
        check_hostport(hostport).map_err(|()| Rule::BadRequestUri)?;
    }
    Ok(scheme)
}

fn check_response(msg: &Parsed<'_>, header_fault: Option<Rule>) -> Result<(), Rule> {
    let line = std::str::from_utf8(msg.start_line).map_err(|_| Rule::BadStatusLine)?;
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.eq_ignore_ascii_case("SIP/2.0")
        || code.len() != 3
        || !code.bytes().all(|b| b.is_ascii_digit())
        || !(100..=699).contains(&code.parse::<u16>().unwrap_or(0))
    {
        return Err(Rule::BadStatusLine);
    }
    if let Some(rule) = header_fault {
        return Err(rule);
    }
    let vias: Vec<String> = msg
        .all("Via")
        .flat_map(|h| split_top(&h.value, b','))
        .map(str::to_owned)
        .collect();
    for via in &vias {
        let t = tighten(via, true);
        let host = t.split_once(' ').map_or("", |(_, r)| r);
        if host.starts_with("255.255.255.255") {
            return Err(Rule::BroadcastVia);
        }
        check_via(via)?;
    }
    if vias.len() != 1 {
        return Err(Rule::ResponseViaNotOurs);
    }
    check_cseq(msg.first("CSeq").ok_or(Rule::MissingHeader("CSeq"))?).map(|_| ())?;
    for name in ["From", "To", "Call-ID"] {
        if msg.first(name).is_none() {
            return Err(Rule::MissingHeader(static_name(name)));
        }
    }
    Ok(())
}

fn static_name(name: &str) -> &'static str {
    match name {
        "Via" => "Via",
        "From" => "From",
        "To" => "To",
        "Call-ID" => "Call-ID",
        "CSeq" => "CSeq",
        "Max-Forwards" => "Max-Forwards",
        "Content-Length" => "Content-Length",
        "Content-Type" => "Content-Type",
        _ => "header",
    }
}

/// `number method`; returns the method.
fn check_cseq(value: &str) -> Result<&str, Rule> {
    let mut it = value.split_whitespace();
    let (Some(num), Some(method), None) = (it.next(), it.next(), it.next()) else {
        return Err(Rule::BadCSeq);
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) || !is_token(method) {
        return Err(Rule::BadCSeq);
    }
    match num.parse::<u64>() {
        Ok(n) if n <= MAX_CSEQ => Ok(method),
        _ => Err(Rule::BadCSeq),
    }
}

type Extra = Vec<(&'static str, String)>;

fn check_request(
    msg: &Parsed<'_>,
    header_fault: Option<Rule>,
    body: &[u8],
    stream: bool,
) -> Result<(), (Rule, Extra)> {
    let plain = |r: Rule| (r, Vec::new());
    let line =
        std::str::from_utf8(msg.start_line).map_err(|_| plain(Rule::MalformedRequestLine))?;
    let parts: Vec<&str> = line.split(' ').collect();
    if parts.iter().any(|p| p.is_empty()) || line.contains('\t') {
        return Err(plain(Rule::RequestLineWhitespace));
    }
    if parts.len() < 3 {
        return Err(plain(Rule::MalformedRequestLine));
    }
    let (method, version) = (parts[0], parts[parts.len() - 1]);
    if !is_token(method) {
        return Err(plain(Rule::BadMethod));
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        let looks_like_version = version
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
            && version[4..]
                .split_once('.')
                .is_some_and(|(a, b)| is_number(a) && is_number(b));
        return Err(plain(if looks_like_version {
            Rule::UnsupportedVersion
        } else {
            Rule::MalformedRequestLine
        }));
    }
    if parts.len() > 3 {
        return Err(plain(Rule::LwsInRequestUri));
    }
    let scheme = check_request_uri(parts[1]).map_err(plain)?;
    if let Some(rule) = header_fault {
        return Err(plain(rule));
    }
    // Header syntax, in header order.
    let mut content_length = None;
    for h in &msg.headers {
        let name = h.name.to_ascii_lowercase();
        match name.as_str() {
            "via" => {
                for v in split_top(&h.value, b',') {
                    check_via(v).map_err(plain)?;
                }
            }
            "from" | "to" => check_address(&h.value).map_err(plain)?,
            "contact" | "route" | "record-route" if h.value.trim() != "*" => {
                for v in split_top(&h.value, b',') {
                    check_address(v).map_err(plain)?;
                }
            }
            "content-length" => {
                let v = h.value.trim();
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(plain(Rule::BadContentLength));
                }
                content_length = Some(
                    v.parse::<usize>()
                        .map_err(|_| plain(Rule::BadContentLength))?,
                );
            }
            "cseq" => {
                let m = check_cseq(&h.value).map_err(plain)?;
                if m != method {
                    return Err(plain(Rule::CSeqMethodMismatch));
                }
            }
            "max-forwards" if !is_number(h.value.trim()) => {
                return Err(plain(Rule::BadMaxForwards));
            }
            "date" if !h.value.trim_end().ends_with(" GMT") => {
                return Err(plain(Rule::BadDate));
            }
            _ => {}
        }
    }
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        if msg.first(name).is_none() {
            return Err(plain(Rule::MissingHeader(static_name(name))));
        }
    }
    for name in [
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Max-Forwards",
        "Content-Length",
        "Content-Type",
    ] {
        if msg.all(name).count() > 1 {
            return Err(plain(Rule::SeveralValues(static_name(name))));
        }
    }
    if let Some(cl) = content_length {
        if cl > body.len() {
            return Err(plain(Rule::ContentLengthTooLarge));
        }
    } else if stream && !body.is_empty() {
        return Err(plain(Rule::MissingHeader("Content-Length")));
    }
    let allow = || ("Allow", ALLOWED_METHODS.join(", "));
    // RFC 3261 §8.2.1: method inspection.
    if !ALLOWED_METHODS.contains(&method) {
        let rule = if KNOWN_METHODS.contains(&method) {
            Rule::MethodNotAllowed
        } else {
            Rule::NotImplemented
        };
        return Err((rule, vec![allow()]));
    }
    // §8.2.2.1: Request-URI scheme.
    if !matches!(scheme.as_str(), "sip" | "sips" | "tel") {
        return Err(plain(Rule::UnsupportedScheme));
    }
    // §8.2.2.3: Require (not for ACK or CANCEL).
    if method != "ACK" && method != "CANCEL" {
        let unsupported: Vec<String> = msg
            .all("Require")
            .flat_map(|h| h.value.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .filter(|t| {
                !SUPPORTED_OPTION_TAGS
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(t))
            })
            .map(str::to_owned)
            .collect();
        if !unsupported.is_empty() {
            return Err((
                Rule::BadExtension,
                vec![("Unsupported", unsupported.join(", "))],
            ));
        }
    }
    // §8.2.3: content processing, for the methods whose body we read as an SDP offer.
    let body_len = content_length.unwrap_or(body.len()).min(body.len());
    if matches!(method, "INVITE" | "UPDATE") && body_len > 0 {
        let ct = msg.first("Content-Type").unwrap_or("application/sdp");
        let media = ct.split(';').next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case("application/sdp") {
            return Err((
                Rule::UnsupportedMediaType,
                vec![("Accept", "application/sdp".to_owned())],
            ));
        }
    }
    if method == "INVITE" {
        let ranges: Vec<String> = msg
            .all("Accept")
            .flat_map(|h| h.value.split(','))
            .map(|r| {
                r.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .filter(|r| !r.is_empty())
            .collect();
        let ok = ranges.is_empty()
            || ranges
                .iter()
                .any(|r| r == "application/sdp" || r == "application/*" || r == "*/*");
        if !ok {
            return Err((
                Rule::NotAcceptable,
                vec![("Accept", "application/sdp".to_owned())],
            ));
        }
    }
    Ok(())
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The canonical copy handed to rsipstack (see the module docs).
fn accept(msg: &Parsed<'_>, body: &[u8], stream: bool) -> Result<Verdict, Rule> {
    let cl = msg
        .first("Content-Length")
        .and_then(|v| v.trim().parse::<usize>().ok());
    let body = match cl {
        Some(n) if n <= body.len() => &body[..n],
        Some(_) => return Err(Rule::ContentLengthTooLarge),
        None if stream => &[][..],
        None => body,
    };
    let mut out = Vec::with_capacity(msg.start_line.len() + body.len() + 512);
    out.extend_from_slice(msg.start_line);
    out.extend_from_slice(b"\r\n");
    let mut wrote_cl = false;
    let mut top_via_done = false;
    let is_response = msg.start_line.starts_with(b"SIP/");
    for h in &msg.headers {
        let lower = h.name.to_ascii_lowercase();
        match lower.as_str() {
            "via" => {
                for v in split_top(&h.value, b',') {
                    let mut v = tighten(v, true);
                    if v.is_empty() {
                        continue;
                    }
                    if !top_via_done && !is_response && !has_param(&v, "branch") {
                        // RFC 2543 peers send no branch (RFC 3261 §17.2.3): give the request a
                        // branch that its retransmissions and its non-2xx ACK share, so the
                        // transaction layer can match them.
                        let _ = write!(v, ";branch=z9hG4bK-2543-{:08x}", msg.tag_hash());
                    }
                    top_via_done = true;
                    let _ = write_line(&mut out, "Via", &v);
                }
            }
            "from" if !is_response && !has_tag(&h.value) => {
                // RFC 2543 peers send no From tag (RFC 3261 §12.2.1.2 treats it as null); the
                // transaction layer needs one, so the request gets a fixed one its
                // retransmissions share.
                let from = format!(
                    "{};tag=2543-{:08x}",
                    tighten(&h.value, false),
                    msg.tag_hash()
                );
                let _ = write_line(&mut out, &h.name, &from);
            }
            "from" | "to" | "contact" | "route" | "record-route" | "cseq" => {
                let _ = write_line(&mut out, &h.name, &tighten(&h.value, false));
            }
            "content-length" => {
                if !wrote_cl {
                    let _ = write_line(&mut out, "Content-Length", &body.len().to_string());
                    wrote_cl = true;
                }
            }
            _ => {
                let _ = write_line(&mut out, &h.name, &h.value);
            }
        }
    }
    let is_invite = msg.start_line.starts_with(b"INVITE ");
    if is_invite && msg.first("Contact").is_none() {
        // RFC 2543 INVITEs may lack Contact; their remote target is the From URI (RFC 2543
        // §6.13), which the dialog layer needs as a Contact.
        if let Some(uri) = msg.first("From").and_then(address_uri) {
            let _ = write_line(&mut out, "Contact", &format!("<{uri}>"));
        }
    }
    if !wrote_cl {
        let _ = write_line(&mut out, "Content-Length", &body.len().to_string());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Ok(Verdict::Accept(out))
}

fn write_line(out: &mut Vec<u8>, name: &str, value: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    write!(out, "{name}: {value}\r\n")
}

/// Where a message framed from a stream ends: `Some(len)` once `buf` holds one whole message
/// (headers plus Content-Length octets, leading CRLFs included), `None` while more bytes are
/// needed. A missing or unreadable Content-Length counts as 0 (the check in [`inspect`] then
/// answers 400 for a malformed one).
pub fn stream_message_len(buf: &[u8]) -> Option<usize> {
    let start = buf.iter().position(|b| *b != b'\r' && *b != b'\n')?;
    let head_end = find(&buf[start..], b"\r\n\r\n")? + start + 4;
    let head = &buf[start..head_end];
    let mut cl = 0usize;
    for line in split_crlf(head) {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
                cl = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let total = head_end.checked_add(cl)?;
    (buf.len() >= total).then_some(total)
}

#[cfg(test)]
mod tests;
