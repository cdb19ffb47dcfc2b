//! Shell glue of [`validate`](super::validate): every UDP datagram and every TCP message passes
//! [`validate::inspect`] before rsipstack's transport and transaction layers see it.
//!
//! - UDP: [`GuardedUdp`] is the socket rsipstack's `UdpConnection` reads from (its
//!   `platform::net::UdpSocket` seam). A rejected request is answered from here and never
//!   reaches rsipstack; an accepted one is handed on in its canonical form.
//! - TCP: [`serve_tcp`] accepts the connections itself. Each connection gets a task that frames
//!   messages by Content-Length, inspects them and writes the accepted ones into a loopback socket
//!   pair whose other end rsipstack serves as a `TcpConnection` (remote address: the real peer);
//!   what rsipstack writes is framed the same way and copied to the peer whole, so our own answers
//!   never interleave with its messages. The connection is closed when either side closes, on a
//!   message larger than 64 KiB, or when the endpoint's token is cancelled.
//!
//! Each rejection is one log line at info with the source, the Call-ID and the rule; dropped
//! responses are logged at debug.

use std::net::SocketAddr;
use std::sync::Arc;

use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transport::stream::StreamConnectionInner;
use rsipstack::transport::tcp::TcpConnection;
use rsipstack::transport::{SipAddr, SipConnection};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::validate::{self, Verdict};

/// Largest datagram we read (bytes): the UDP maximum.
const MAX_DATAGRAM: usize = 65_535;

/// Largest message on a stream (bytes), as rsipstack's codec allows.
const MAX_STREAM_MESSAGE: usize = 65_535;

/// Which transport a message came over, for the log line.
#[derive(Clone, Copy)]
pub(super) enum Over {
    Udp,
    Tcp,
    Tls,
}

impl Over {
    fn as_str(self) -> &'static str {
        match self {
            Over::Udp => "udp",
            Over::Tcp => "tcp",
            Over::Tls => "tls",
        }
    }
}

/// One log line per rejected message (info) or dropped one (debug).
pub(super) fn log_verdict(v: &Verdict, source: SocketAddr, over: Over) {
    match v {
        Verdict::Reject(r) => info!(
            %source,
            transport = over.as_str(),
            call_id = r.call_id.as_deref().unwrap_or("-"),
            status = r.status,
            rule = r.rule.as_str(),
            "SIP request rejected: {}", r.rule
        ),
        Verdict::Drop(rule) => debug!(
            %source,
            transport = over.as_str(),
            rule = rule.as_str(),
            "SIP message dropped"
        ),
        Verdict::Accept(_) | Verdict::KeepAlive => {}
    }
}

/// The UDP socket rsipstack reads from: inspects every datagram first. It may hold one IPv4 and
/// one IPv6 socket (dual stack) behind the one UDP connection rsipstack knows: datagrams are read
/// from both, and each is sent from the socket of its destination's family. rsipstack writes the
/// first listen address into the Via of requests it sends; a request to a peer of the other
/// family gets that Via's sent-by rewritten to our address of that family (RFC 3261 §18.1.1).
/// Responses whose Via rsipstack gave a double-bracketed IPv6 `received` (a 0.7.14 defect that
/// also made it send them to the Via host) are repaired and sent to `received`.
pub(super) struct GuardedUdp {
    primary: UdpSocket,
    other: Option<UdpSocket>,
}

impl GuardedUdp {
    /// `other`, if any, must be of the other address family than `primary`.
    pub(super) fn new(primary: UdpSocket, other: Option<UdpSocket>) -> GuardedUdp {
        GuardedUdp { primary, other }
    }

    fn socket_for(&self, dest: SocketAddr) -> &UdpSocket {
        match &self.other {
            Some(o) if o.local_addr().is_ok_and(|a| a.is_ipv6() == dest.is_ipv6()) => o,
            _ => &self.primary,
        }
    }

    async fn recv_raw(
        &self,
        a: &mut [u8],
        b: &mut [u8],
    ) -> std::io::Result<(usize, SocketAddr, bool)> {
        match &self.other {
            None => self.primary.recv_from(a).await.map(|(n, s)| (n, s, true)),
            Some(other) => tokio::select! {
                r = self.primary.recv_from(a) => r.map(|(n, s)| (n, s, true)),
                r = other.recv_from(b) => r.map(|(n, s)| (n, s, false)),
            },
        }
    }
}

#[async_trait::async_trait]
impl rsipstack::platform::net::UdpSocket for GuardedUdp {
    async fn recv_from(&self, buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        let mut raw_a = vec![0u8; MAX_DATAGRAM];
        let mut raw_b = vec![
            0u8;
            if self.other.is_some() {
                MAX_DATAGRAM
            } else {
                0
            }
        ];
        loop {
            let (n, source, on_primary) = self.recv_raw(&mut raw_a, &mut raw_b).await?;
            let raw = if on_primary { &raw_a[..n] } else { &raw_b[..n] };
            let verdict = validate::inspect(raw, source, false, buf.len());
            log_verdict(&verdict, source, Over::Udp);
            match verdict {
                Verdict::KeepAlive => {
                    let n = n.min(buf.len());
                    buf[..n].copy_from_slice(&raw[..n]);
                    return Ok((n, source));
                }
                Verdict::Accept(msg) => {
                    // `inspect` was given buf.len() as the limit.
                    if msg.len() <= buf.len() {
                        buf[..msg.len()].copy_from_slice(&msg);
                        return Ok((msg.len(), source));
                    }
                }
                Verdict::Reject(r) => {
                    let sock = self.socket_for(r.reply_to);
                    if let Err(e) = sock.send_to(&r.response, r.reply_to).await {
                        debug!(error = %e, to = %r.reply_to, "cannot send SIP rejection");
                    }
                }
                Verdict::Drop(_) => {}
            }
        }
    }

    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> rsipstack::Result<usize> {
        if let Some((fixed, ip)) = fix_ipv6_received(buf) {
            // rsipstack sent this response to the Via host; it belongs at `received` (with the
            // port it chose: rport or the Via's).
            let dest = SocketAddr::new(ip, addr.port());
            self.socket_for(dest).send_to(&fixed, dest).await?;
            return Ok(buf.len());
        }
        let sock = self.socket_for(addr);
        if let (Ok(ours), Ok(primary)) = (sock.local_addr(), self.primary.local_addr()) {
            if ours.is_ipv6() != primary.is_ipv6() {
                if let Some(rewritten) = rewrite_via_sent_by(buf, primary, ours) {
                    sock.send_to(&rewritten, addr).await?;
                    return Ok(buf.len());
                }
            }
        }
        Ok(sock.send_to(buf, addr).await?)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.primary.local_addr()?)
    }
}

/// A response whose top Via carries rsipstack's double-bracketed IPv6 `received=[[addr]]`, with
/// it written `received=addr` (RFC 3261 §20.42 grammar), and that address.
fn fix_ipv6_received(msg: &[u8]) -> Option<(Vec<u8>, std::net::IpAddr)> {
    if !msg.starts_with(b"SIP/") {
        return None;
    }
    let head_end = msg.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&msg[..head_end]).ok()?;
    let start = head.find(";received=[[")? + ";received=[[".len();
    let len = head[start..].find("]]")?;
    let ip: std::net::IpAddr = head[start..start + len].parse().ok()?;
    let mut out = String::with_capacity(msg.len());
    out.push_str(&head[..start - 2]);
    out.push_str(&head[start..start + len]);
    out.push_str(&head[start + len + 2..]);
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&msg[head_end..]);
    Some((bytes, ip))
}

/// `ip:port` with IPv6 references in brackets.
fn host_port(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v4) => v4.to_string(),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

/// A request whose top Via's sent-by is `from` (our first listen address), with `to` instead;
/// `None` for responses and anything else.
fn rewrite_via_sent_by(msg: &[u8], from: SocketAddr, to: SocketAddr) -> Option<Vec<u8>> {
    if msg.starts_with(b"SIP/") {
        return None;
    }
    let head_end = msg.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&msg[..head_end]).ok()?;
    let needle = format!(" {}", host_port(from));
    let mut out = String::with_capacity(msg.len() + 32);
    let mut done = false;
    for (i, line) in head.split("\r\n").enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        let is_via = line.split(':').next().is_some_and(|n| {
            n.trim().eq_ignore_ascii_case("via") || n.trim().eq_ignore_ascii_case("v")
        });
        if !done && is_via && line.contains(&needle) {
            out.push_str(&line.replacen(&needle, &format!(" {}", host_port(to)), 1));
            done = true;
        } else {
            out.push_str(line);
        }
    }
    if !done {
        return None;
    }
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&msg[head_end..]);
    Some(bytes)
}

/// Accepts TCP connections on `listener` and hands each, guarded, to the endpoint's transport layer (see the module
/// docs) until `cancel` fires.
pub(super) async fn serve_tcp(
    listener: TcpListener,
    endpoint: EndpointInnerRef,
    cancel: CancellationToken,
) {
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            warn!(error = %e, "SIP TCP listener has no address");
            return;
        }
    };
    // The loopback listener that gives us the socket pairs, one connection at a time.
    let loopback_ip: std::net::IpAddr = if local.is_ipv6() {
        std::net::Ipv6Addr::LOCALHOST.into()
    } else {
        std::net::Ipv4Addr::LOCALHOST.into()
    };
    let pairs = match TcpListener::bind((loopback_ip, 0)).await {
        Ok(l) => Arc::new(Mutex::new(l)),
        Err(e) => {
            warn!(error = %e, "cannot bind the loopback listener for SIP over TCP");
            return;
        }
    };
    let local_sip = SipAddr {
        r#type: Some(rsipstack::sip::Transport::Tcp),
        addr: local.into(),
    };
    loop {
        let (peer, remote) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    debug!(error = %e, "TCP accept failed");
                    continue;
                }
            },
        };
        let (ours, theirs) = match socket_pair(&pairs).await {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "cannot open the loopback pair for a SIP TCP connection");
                continue;
            }
        };
        let (r, w) = tokio::io::split(theirs);
        let conn_cancel = cancel.child_token();
        let connection = TcpConnection {
            inner: Arc::new(StreamConnectionInner::new(
                local_sip.clone(),
                SipAddr {
                    r#type: Some(rsipstack::sip::Transport::Tcp),
                    addr: remote.into(),
                },
                r,
                w,
            )),
            cancel_token: Some(conn_cancel.clone()),
        };
        endpoint
            .transport_layer
            .add_connection(SipConnection::Tcp(connection));
        tokio::spawn(pump(peer, ours, remote, conn_cancel));
    }
}

/// A connected loopback pair: `(our end, rsipstack's end)`.
async fn socket_pair(pairs: &Mutex<TcpListener>) -> std::io::Result<(TcpStream, TcpStream)> {
    let listener = pairs.lock().await;
    let addr = listener.local_addr()?;
    let (ours, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let ours = ours?;
    let (theirs, from) = accepted?;
    if from != ours.local_addr()? {
        return Err(std::io::Error::other("loopback pair mismatch"));
    }
    ours.set_nodelay(true)?;
    theirs.set_nodelay(true)?;
    Ok((ours, theirs))
}

/// Relays one guarded connection until either side closes or `cancel` fires.
async fn pump<P>(peer: P, inner: TcpStream, remote: SocketAddr, cancel: CancellationToken)
where
    P: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut peer_r, peer_w) = tokio::io::split(peer);
    let (mut inner_r, mut inner_w) = inner.into_split();
    let peer_w = Arc::new(Mutex::new(peer_w));
    let to_peer = {
        let peer_w = peer_w.clone();
        async move {
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 16 * 1024];
            loop {
                let n = inner_r.read(&mut chunk).await?;
                if n == 0 {
                    return Ok::<(), std::io::Error>(());
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some(len) = next_unit(&buf) {
                    let unit: Vec<u8> = buf.drain(..len).collect();
                    peer_w.lock().await.write_all(&unit).await?;
                }
                if buf.len() > MAX_STREAM_MESSAGE {
                    return Err(std::io::Error::other("oversized message from rsipstack"));
                }
            }
        }
    };
    let from_peer = async move {
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let n = peer_r.read(&mut chunk).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some(len) = next_unit(&buf) {
                let unit: Vec<u8> = buf.drain(..len).collect();
                let verdict = validate::inspect(&unit, remote, true, MAX_STREAM_MESSAGE);
                log_verdict(&verdict, remote, Over::Tcp);
                match verdict {
                    Verdict::Accept(msg) => inner_w.write_all(&msg).await?,
                    Verdict::KeepAlive => inner_w.write_all(&unit).await?,
                    Verdict::Reject(r) => {
                        peer_w.lock().await.write_all(&r.response).await?;
                        if matches!(
                            r.rule,
                            validate::Rule::BadContentLength
                                | validate::Rule::SeveralValues("Content-Length")
                        ) {
                            // Without one valid Content-Length the stream cannot be framed.
                            return Ok(());
                        }
                    }
                    Verdict::Drop(_) => {}
                }
            }
            if buf.len() > MAX_STREAM_MESSAGE {
                info!(source = %remote, "SIP over TCP: message larger than 64 KiB; closing the connection");
                return Ok(());
            }
        }
    };
    tokio::select! {
        _ = cancel.cancelled() => {}
        r = to_peer => if let Err(e) = r { debug!(%remote, error = %e, "SIP TCP connection ended") },
        r = from_peer => if let Err(e) = r { debug!(%remote, error = %e, "SIP TCP connection ended") },
    }
    cancel.cancel();
}

/// The length of the next whole unit in a stream buffer: a CRLF keep-alive ping (4 bytes) or
/// pong (2 bytes), or one message framed by its Content-Length.
pub(super) fn next_unit(buf: &[u8]) -> Option<usize> {
    if buf.starts_with(b"\r\n\r\n") {
        return Some(4);
    }
    if buf.starts_with(b"\r\n") && buf.len() >= 3 && buf[2] != b'\r' {
        return Some(2);
    }
    if buf == b"\r\n" {
        return None;
    }
    validate::stream_message_len(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_bracketed_ipv6_received_is_repaired_and_is_the_destination() {
        let msg = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bK1;received=[[::1]];rport=4000\r\nContent-Length: 0\r\n\r\n";
        let (fixed, ip) = fix_ipv6_received(msg).expect("repaired");
        assert_eq!(ip, "::1".parse::<std::net::IpAddr>().expect("ip"));
        let text = String::from_utf8(fixed).expect("utf-8");
        assert!(text.contains(";received=::1;rport=4000\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"));
        assert!(fix_ipv6_received(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;received=5.6.7.8\r\n\r\n"
        )
        .is_none());
    }

    #[test]
    fn via_of_a_request_to_the_other_family_names_our_address_of_that_family() {
        let from: SocketAddr = "127.0.0.1:5060".parse().expect("addr");
        let to: SocketAddr = "[::1]:5060".parse().expect("addr");
        let msg = b"BYE sip:a@[::1]:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1;rport\r\nContent-Length: 0\r\n\r\n";
        let out = rewrite_via_sent_by(msg, from, to).expect("rewritten");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.contains("\r\nVia: SIP/2.0/UDP [::1]:5060;branch=z9hG4bK1;rport\r\n"),
            "{text}"
        );
        assert!(rewrite_via_sent_by(b"SIP/2.0 200 OK\r\n\r\n", from, to).is_none());
    }

    #[test]
    fn stream_units_are_pings_pongs_or_whole_messages() {
        assert_eq!(next_unit(b"\r\n\r\nOPTIONS"), Some(4));
        assert_eq!(next_unit(b"\r\nOPTIONS"), Some(2));
        assert_eq!(next_unit(b"\r\n"), None);
        assert_eq!(
            next_unit(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 2\r\n\r\nab"),
            Some(46)
        );
    }
}
