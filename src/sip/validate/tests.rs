use super::*;

/// A torture message from the RFC 4475 archive copied into `tests/torture/rfc4475/`.
macro_rules! torture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/torture/rfc4475/",
            $name,
            ".dat"
        ))
        .as_slice()
    };
}

/// An RFC 5118 message written from the RFC's text into `tests/torture/rfc5118/`.
macro_rules! ipv6 {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/torture/rfc5118/",
            $name,
            ".dat"
        ))
        .as_slice()
    };
}

fn src() -> SocketAddr {
    "127.0.0.1:40000".parse().expect("addr")
}

#[derive(Debug, PartialEq)]
enum Want {
    Accept,
    Status(u16),
    Drop,
}

fn verdict(bytes: &[u8]) -> Want {
    match inspect(bytes, src(), false, 65535) {
        Verdict::Accept(_) => Want::Accept,
        Verdict::Reject(r) => Want::Status(r.status),
        Verdict::Drop(_) => Want::Drop,
        Verdict::KeepAlive => panic!("not a keep-alive"),
    }
}

fn accepted(bytes: &[u8]) -> String {
    match inspect(bytes, src(), false, 65535) {
        Verdict::Accept(b) => String::from_utf8_lossy(&b).into_owned(),
        other => panic!("not accepted: {other:?}"),
    }
}

fn rejection(bytes: &[u8]) -> Rejection {
    match inspect(bytes, src(), false, 65535) {
        Verdict::Reject(r) => r,
        other => panic!("not rejected: {other:?}"),
    }
}

/// Asserts every row's verdict; lists all wrong rows at once.
fn check_table(cases: &[(&str, &[u8], Want)]) {
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(name, bytes, want)| {
            let got = verdict(bytes);
            (&got != want).then(|| format!("{name}: want {want:?}, got {got:?}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn rfc4475_verdicts() {
    use Want::*;
    let cases: &[(&str, &[u8], Want)] = &[
        // §3.1.1 valid messages
        ("wsinv", torture!("wsinv"), Accept),
        ("intmeth", torture!("intmeth"), Status(501)),
        ("esc01", torture!("esc01"), Accept),
        ("escnull", torture!("escnull"), Status(405)),
        ("esc02", torture!("esc02"), Status(501)),
        ("lwsdisp", torture!("lwsdisp"), Accept),
        ("longreq", torture!("longreq"), Accept),
        ("dblreq", torture!("dblreq"), Status(405)),
        ("semiuri", torture!("semiuri"), Accept),
        ("transports", torture!("transports"), Accept),
        ("mpart01", torture!("mpart01"), Status(405)),
        ("unreason", torture!("unreason"), Accept),
        ("noreason", torture!("noreason"), Accept),
        // §3.1.2 invalid messages
        ("badinv01", torture!("badinv01"), Status(400)),
        ("clerr", torture!("clerr"), Status(400)),
        ("ncl", torture!("ncl"), Status(400)),
        ("scalar02", torture!("scalar02"), Status(400)),
        ("scalarlg", torture!("scalarlg"), Drop),
        ("quotbal", torture!("quotbal"), Status(400)),
        ("ltgtruri", torture!("ltgtruri"), Status(400)),
        ("lwsruri", torture!("lwsruri"), Status(400)),
        ("lwsstart", torture!("lwsstart"), Status(400)),
        ("trws", torture!("trws"), Status(400)),
        ("escruri", torture!("escruri"), Status(400)),
        ("baddate", torture!("baddate"), Status(400)),
        ("regbadct", torture!("regbadct"), Status(400)),
        ("badaspec", torture!("badaspec"), Status(400)),
        ("baddn", torture!("baddn"), Status(400)),
        ("badvers", torture!("badvers"), Status(505)),
        ("mismatch01", torture!("mismatch01"), Status(400)),
        ("mismatch02", torture!("mismatch02"), Status(400)),
        ("bigcode", torture!("bigcode"), Drop),
        // §3.2, §3.3 transaction layer and semantics
        ("badbranch", torture!("badbranch"), Accept),
        ("insuf", torture!("insuf"), Status(400)),
        ("unkscm", torture!("unkscm"), Status(416)),
        ("novelsc", torture!("novelsc"), Status(416)),
        ("unksm2", torture!("unksm2"), Status(405)),
        ("bext01", torture!("bext01"), Status(420)),
        ("invut", torture!("invut"), Status(415)),
        ("regaut01", torture!("regaut01"), Status(405)),
        ("multi01", torture!("multi01"), Status(400)),
        ("mcl01", torture!("mcl01"), Status(400)),
        ("bcast", torture!("bcast"), Drop),
        ("zeromf", torture!("zeromf"), Accept),
        ("cparam01", torture!("cparam01"), Status(405)),
        ("cparam02", torture!("cparam02"), Status(405)),
        ("regescrt", torture!("regescrt"), Status(405)),
        ("sdp01", torture!("sdp01"), Status(406)),
        ("inv2543", torture!("inv2543"), Accept),
        ("test", torture!("test"), Status(400)),
    ];
    check_table(cases);
}

#[test]
fn rfc5118_verdicts() {
    use Want::*;
    let cases: &[(&str, &[u8], Want)] = &[
        ("ipv6-good", ipv6!("ipv6-good"), Status(405)),
        ("ipv6-bad", ipv6!("ipv6-bad"), Status(400)),
        ("port-ambiguous", ipv6!("port-ambiguous"), Status(405)),
        ("port-unambiguous", ipv6!("port-unambiguous"), Status(405)),
        (
            "via-received-bracketed",
            ipv6!("via-received-bracketed"),
            Accept,
        ),
        ("via-received-plain", ipv6!("via-received-plain"), Accept),
        ("ipv6-sdp", ipv6!("ipv6-sdp"), Accept),
        ("mult-ip-in-header", ipv6!("mult-ip-in-header"), Accept),
        ("mult-ip-in-sdp", ipv6!("mult-ip-in-sdp"), Accept),
        ("ipv4-mapped", ipv6!("ipv4-mapped"), Accept),
        ("ipv6-three-colons", ipv6!("ipv6-three-colons"), Status(400)),
        ("ipv6-two-colons", ipv6!("ipv6-two-colons"), Accept),
    ];
    check_table(cases);
}

#[test]
fn the_short_tortuous_invite_is_unfolded_and_its_vias_split() {
    let msg = accepted(torture!("wsinv"));
    assert!(
        msg.contains("\r\nVia: SIP/2.0/UDP 192.0.2.2;branch=390skdjuw\r\n"),
        "{msg}"
    );
    assert!(
        msg.contains("\r\nVia: SIP/2.0/TCP spindle.example.com;branch=z9hG4bK9ikj8\r\n"),
        "{msg}"
    );
    assert!(
        msg.contains("\r\nVia: SIP/2.0/UDP 192.168.255.111;branch=z9hG4bK30239\r\n"),
        "{msg}"
    );
    assert!(
        msg.contains("\r\nTO: sip:vivekg@chair-dnrc.example.com;tag=1918181833n\r\n"),
        "{msg}"
    );
    assert!(msg.contains("\r\nContact: \"Quoted string \\\"\\\"\" <sip:jdrosen@example.com>;newparam=newvalue;secondparam;q=0.33\r\n"), "{msg}");
    assert!(msg.contains("\r\nContent-Length: 150\r\n"), "{msg}");
    let (head, body) = msg.split_once("\r\n\r\n").expect("end of headers");
    assert!(!head.contains("\r\n "), "folded line left: {head}");
    assert_eq!(body.len(), 150);
    assert!(body.starts_with("v=0\r\n"), "{body}");
}

#[test]
fn extra_octets_after_content_length_are_discarded() {
    let mut dgram = b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1\r\nFrom: <sip:b@x>;tag=1\r\nTo: <sip:a@x>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n".to_vec();
    dgram.extend_from_slice(b"OPTIONS sip:second SIP/2.0\r\n\r\n");
    let msg = accepted(&dgram);
    assert!(msg.ends_with("Content-Length: 0\r\n\r\n"), "{msg}");
}

#[test]
fn non_utf8_header_line_is_rejected_not_truncated() {
    let mut dgram = b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1\r\nX-Junk: ".to_vec();
    dgram.extend_from_slice(&[0xff, 0xfe, b'\r', b'\n']);
    dgram.extend_from_slice(b"From: <sip:b@x>;tag=1\r\nTo: <sip:a@x>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
    let r = rejection(&dgram);
    assert_eq!((r.status, r.rule), (400, Rule::HeaderNotUtf8));
    let text = String::from_utf8_lossy(&r.response);
    assert!(
        text.starts_with("SIP/2.0 400 Bad Request (header line is not UTF-8)\r\n"),
        "{text}"
    );
    // The later headers are still copied into the answer.
    assert!(
        text.contains("\r\nCall-ID: c1\r\n") && text.contains("\r\nCSeq: 1 OPTIONS\r\n"),
        "{text}"
    );
}

#[test]
fn rejections_name_the_fault_and_carry_the_headers_rfc3261_asks_for() {
    let r = rejection(torture!("multi01"));
    let text = String::from_utf8_lossy(&r.response).into_owned();
    assert!(
        text.starts_with("SIP/2.0 400 Bad Request (several From values)\r\n")
            || text.starts_with("SIP/2.0 400 Bad Request (several Call-ID values)\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nTo: sip:user@example.com;tag="), "{text}");
    assert!(text.ends_with("Content-Length: 0\r\n\r\n"), "{text}");

    let r = rejection(torture!("bext01"));
    let text = String::from_utf8_lossy(&r.response).into_owned();
    assert!(
        text.contains("\r\nUnsupported: nothingSupportsThis, nothingSupportsThisEither"),
        "{text}"
    );

    let r = rejection(torture!("invut"));
    assert!(String::from_utf8_lossy(&r.response).contains("\r\nAccept: application/sdp\r\n"));

    let r = rejection(torture!("esc02"));
    let text = String::from_utf8_lossy(&r.response).into_owned();
    assert!(
        text.contains("\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, NOTIFY\r\n"),
        "{text}"
    );
}

#[test]
fn stateless_to_tag_is_the_same_for_a_retransmission() {
    let a = rejection(torture!("mismatch01")).response;
    let b = rejection(torture!("mismatch01")).response;
    assert_eq!(a, b);
}

#[test]
fn answers_go_to_the_source_ip_and_the_via_port_or_rport() {
    // No port in the Via: 5060 at the packet's source IP (received).
    assert_eq!(
        rejection(torture!("ncl")).reply_to,
        "127.0.0.1:5060".parse().expect("addr")
    );
    // An explicit port.
    assert_eq!(
        rejection(torture!("quotbal")).reply_to,
        "127.0.0.1:5050".parse().expect("addr")
    );
    // rport: the source port (RFC 3581).
    let dgram = b"FOO sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5070;rport;branch=z9hG4bK1\r\nFrom: <sip:b@x>;tag=1\r\nTo: <sip:a@x>\r\nCall-ID: c1\r\nCSeq: 1 FOO\r\nContent-Length: 0\r\n\r\n";
    let r = rejection(dgram);
    assert_eq!(r.status, 501);
    assert_eq!(r.reply_to, src());
}

#[test]
fn malformed_ack_is_dropped_not_answered() {
    let dgram = b"ACK sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1\r\nFrom: <sip:b@x>;tag=1\r\nTo: <sip:a@x>;tag=2\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        inspect(dgram, src(), false, 65535),
        Verdict::Drop(Rule::CSeqMethodMismatch)
    );
}

#[test]
fn keep_alives_pass_and_nothing_panics_on_prefixes() {
    assert_eq!(
        inspect(b"\r\n\r\n", src(), false, 65535),
        Verdict::KeepAlive
    );
    for msg in [
        torture!("wsinv"),
        torture!("intmeth"),
        torture!("mpart01"),
        torture!("baddn"),
    ] {
        for n in 0..msg.len() {
            let _ = inspect(&msg[..n], src(), false, 65535);
            let _ = inspect(&msg[..n], src(), true, 65535);
            let _ = stream_message_len(&msg[..n]);
        }
    }
}

#[test]
fn stream_framing_waits_for_the_whole_body() {
    let msg = torture!("wsinv");
    assert_eq!(stream_message_len(msg), Some(msg.len()));
    assert_eq!(stream_message_len(&msg[..msg.len() - 1]), None);
    let mut two = msg.to_vec();
    two.extend_from_slice(msg);
    assert_eq!(stream_message_len(&two), Some(msg.len()));
}

#[test]
fn every_accepted_message_parses_in_rsipstack_with_all_its_headers() {
    let all: &[&[u8]] = &[
        torture!("wsinv"),
        torture!("esc01"),
        torture!("lwsdisp"),
        torture!("longreq"),
        torture!("semiuri"),
        torture!("transports"),
        torture!("badbranch"),
        torture!("zeromf"),
        torture!("inv2543"),
        ipv6!("via-received-bracketed"),
        ipv6!("via-received-plain"),
        ipv6!("ipv6-sdp"),
        ipv6!("mult-ip-in-header"),
        ipv6!("mult-ip-in-sdp"),
        ipv6!("ipv4-mapped"),
        ipv6!("ipv6-two-colons"),
    ];
    for bytes in all {
        let canon = match inspect(bytes, src(), false, 65535) {
            Verdict::Accept(b) => b,
            other => panic!("not accepted: {other:?}"),
        };
        let text = String::from_utf8_lossy(&canon).into_owned();
        let parsed = rsipstack::sip::SipMessage::try_from(canon.as_slice())
            .unwrap_or_else(|e| panic!("rsipstack cannot parse {text}: {e}"));
        let head = text
            .split_once("\r\n\r\n")
            .map_or(text.as_str(), |(h, _)| h);
        let want = head.lines().count() - 1;
        let got = match &parsed {
            rsipstack::sip::SipMessage::Request(r) => r.headers.iter().count(),
            rsipstack::sip::SipMessage::Response(r) => r.headers.iter().count(),
        };
        assert_eq!(got, want, "rsipstack lost headers of {text}");
    }
}

#[test]
fn oversized_requests_get_513() {
    let r = rejection_with_limit(torture!("longreq"), 1000);
    assert_eq!(r.status, 513);
}

fn rejection_with_limit(bytes: &[u8], max: usize) -> Rejection {
    match inspect(bytes, src(), false, max) {
        Verdict::Reject(r) => r,
        other => panic!("not rejected: {other:?}"),
    }
}
