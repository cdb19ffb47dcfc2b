//! Dialog routing fixes for calls that arrive through proxies (RFC 3261 §12.1.1, §16.6).
//!
//! What rsipstack 0.7.14's UAS dialog already does right (checked against its source and with
//! Kamailio in `tests/kamailio.rs`): the route set is the INVITE's Record-Route list in order, the
//! 2xx echoes every Record-Route, in-dialog requests carry the route set as `Route` headers and go
//! to the first route (loose routing), over the TCP connection the INVITE came in on when there is
//! one; responses go to the top Via's `received`/`rport` (RFC 3581) over UDP and TCP, and our
//! own requests ask for `rport`.
//!
//! The gap fixed here: rsipstack's typed `Contact` parser drops a `transport=udp` URI parameter,
//! and the dialog layer then appends the transport of the connection the INVITE arrived on. When a
//! proxy forwards a UDP caller's INVITE over TCP, the remote target became
//! `sip:caller@host;transport=TCP`, so our BYE's Request-URI told the proxy to relay it over TCP
//! and it never reached the caller (Kamailio answered 477). RFC 3261 §12.1.1: the remote target is
//! the Contact URI of the request, unchanged. [`exact_remote_target`] recovers it from the raw
//! header. No I/O.

use rsipstack::sip::prelude::HeadersExt as _;
use rsipstack::sip::{Request, Uri};

/// The URI of the request's first Contact exactly as received, when the dialog must use it
/// instead of rsipstack's guess: the request came through a record-routing proxy, or its Contact
/// names a transport. `None` keeps rsipstack's remote target (a direct caller whose Contact names
/// no transport: rsipstack uses the connection's transport, which is where the caller is).
pub(crate) fn exact_remote_target(req: &Request) -> Option<Uri> {
    let raw = req.header_value("Contact")?;
    let uri = contact_uri(&raw)?;
    let names_transport = uri
        .params
        .iter()
        .any(|p| matches!(p, rsipstack::sip::Param::Transport(_)));
    let proxied = !req.record_route_headers().is_empty();
    (proxied || names_transport).then_some(uri)
}

/// The URI inside the first value of a Contact header: `"Name" <sip:u@h;transport=udp>;expires=9`
/// gives `sip:u@h;transport=udp`; without angle brackets the URI ends at the first `;` (those
/// parameters belong to the header, RFC 3261 §20.10).
fn contact_uri(value: &str) -> Option<Uri> {
    let text = match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split([',', ';']).next().unwrap_or(value).trim(),
    };
    Uri::try_from(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(extra: &str) -> Request {
        let text = format!(
            "INVITE sip:agent@127.0.0.1:5080;transport=TCP SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:agent@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Request::try_from(text.as_str()).expect("parses")
    }

    #[test]
    fn proxied_invite_keeps_the_contact_transport() {
        let req = invite(
            "Record-Route: <sip:127.0.0.1:5070;transport=tcp;r2=on;lr=on>\r\nRecord-Route: <sip:127.0.0.1:5070;r2=on;lr=on>\r\nContact: <sip:caller@127.0.0.1:5062;transport=UDP>\r\n",
        );
        let uri = exact_remote_target(&req).expect("fixed");
        assert_eq!(uri.to_string(), "sip:caller@127.0.0.1:5062;transport=UDP");
        // No transport at all: still exactly the Contact, not the hop's TCP.
        let req = invite(
            "Record-Route: <sip:127.0.0.1:5070;lr>\r\nContact: \"Caller\" <sip:caller@192.0.2.7:5062;ob>;expires=60\r\n",
        );
        assert_eq!(
            exact_remote_target(&req).expect("fixed").to_string(),
            "sip:caller@192.0.2.7:5062;ob"
        );
    }

    #[test]
    fn direct_calls_keep_rsipstacks_target_unless_the_contact_names_a_transport() {
        let req = invite("Contact: <sip:caller@127.0.0.1:5062>\r\n");
        assert_eq!(exact_remote_target(&req), None);
        let req = invite("Contact: <sip:caller@127.0.0.1:5062;transport=udp>\r\n");
        assert_eq!(
            exact_remote_target(&req).expect("fixed").to_string(),
            "sip:caller@127.0.0.1:5062;transport=UDP"
        );
        let req = invite("Contact: sip:caller@127.0.0.1:5062;expires=5\r\n");
        assert_eq!(exact_remote_target(&req), None);
        assert_eq!(exact_remote_target(&invite("")), None);
    }
}
