//! A call's RTP or RTCP socket, with SRTP applied at the boundary: the shell around
//! [`super::srtp::SrtpSession`].
//!
//! [`MediaSocket`] has the methods of tokio's `UdpSocket` that the call task uses (`send_to`,
//! `recv_from`, `try_recv_from`, `local_addr`), with the same signatures, so the call task does not
//! change when a call is encrypted. Until [`MediaSocket::set_srtp`] gives it keys it passes
//! datagrams through untouched (plain RTP). With keys, every datagram sent is protected just before
//! `send_to`, and every datagram received is unprotected just after `recv_from`; one that fails
//! (bad tag, replay, plain RTP on an SRTP call, …) is counted and dropped, and the receive goes on
//! to the next datagram, so the caller of `recv_from` only ever sees authenticated plain packets.
//!
//! The SRTP state sits behind a `std::sync::Mutex` so that the methods take `&self` like
//! `UdpSocket`'s; the lock is taken for one packet's transform and never held across an await.
//!
//! Reads are batched two at a time (`recvmmsg(2)`, nonblocking): when the kernel hands over only
//! one datagram, the socket is known to be empty at that moment and its readiness is cleared
//! there, so the next receive waits for the socket's next readiness event instead of making a
//! `recvfrom` that finds it empty (one system call per packet instead of two). A second datagram
//! is kept and returned by the next receive.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd as _;
use std::sync::{Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::{debug, info};

use super::srtp::{self, SrtpKeys, SrtpSession, SrtpStats};

/// One UDP socket of a call's media, plain or SRTP (see the module docs).
#[derive(Debug)]
pub struct MediaSocket {
    socket: UdpSocket,
    srtp: Mutex<Option<Secured>>,
    /// The second datagram of the last batch read, not yet returned (see the module docs).
    stash: Mutex<Stash>,
}

/// Largest datagram kept from a batch read, in bytes (larger ones are truncated, as a
/// `recv_from` into a buffer of this size would).
const STASH_BYTES: usize = 2048;

/// The second slot of a batch read: its buffer (allocated at the first batch read) and the
/// datagram in it, if one is waiting.
#[derive(Debug, Default)]
struct Stash {
    buf: Option<Box<[u8]>>,
    /// Length and source of the datagram waiting in `buf`.
    held: Option<(usize, SocketAddr)>,
}

/// The SRTP state of a socket: the keys it was built from (to tell a rekey from a repeat) and
/// the transform.
#[derive(Debug)]
struct Secured {
    keys: SrtpKeys,
    session: SrtpSession,
    /// Whether the first inbound failure has been logged (later ones go to debug).
    reported: bool,
}

impl MediaSocket {
    /// A plain socket (no SRTP until [`MediaSocket::set_srtp`]).
    pub fn new(socket: UdpSocket) -> MediaSocket {
        MediaSocket {
            socket,
            srtp: Mutex::new(None),
            stash: Mutex::new(Stash::default()),
        }
    }

    /// The local address, as `UdpSocket::local_addr`.
    ///
    /// # Errors
    /// The socket's.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Starts, changes or stops SRTP: `Some(keys)` protects and unprotects with them from now on
    /// (the same keys again keep the running state: rollover counters, replay windows; a new peer
    /// key replaces only the inbound state), `None` returns to plain RTP. Called after
    /// offer/answer and after each re-offer.
    ///
    /// # Errors
    /// [`srtp::Error::SuiteChanged`] when the suite changes under our unchanged key,
    /// [`srtp::Error::Transform`] if the transform refuses the keys; the socket keeps its state.
    pub fn set_srtp(&self, keys: Option<&SrtpKeys>) -> Result<(), srtp::Error> {
        let mut state = self.state();
        match (keys, state.as_mut()) {
            (None, _) => *state = None,
            (Some(keys), Some(s)) if s.keys == *keys => {}
            // Only the peer's key changed (a re-offer): our outbound state goes on.
            (Some(keys), Some(s)) if s.keys.local == keys.local && s.keys.suite == keys.suite => {
                s.session.rekey_inbound(&keys.remote)?;
                s.keys = keys.clone();
            }
            (Some(keys), Some(s)) if s.keys.local == keys.local => {
                return Err(srtp::Error::SuiteChanged);
            }
            (Some(keys), _) => {
                *state = Some(Secured {
                    keys: keys.clone(),
                    session: SrtpSession::new(keys)?,
                    reported: false,
                });
            }
        }
        Ok(())
    }

    /// Whether SRTP is on.
    pub fn is_srtp(&self) -> bool {
        self.state().is_some()
    }

    /// What SRTP protected, unprotected and dropped on this socket (zero when plain).
    pub fn srtp_stats(&self) -> SrtpStats {
        self.state()
            .as_ref()
            .map(|s| s.session.stats())
            .unwrap_or_default()
    }

    /// Sends one datagram to `target`, protected first when SRTP is on. Returns the bytes of
    /// `buf` (the plain datagram) when sent.
    ///
    /// # Errors
    /// The socket's; `InvalidData` when SRTP cannot protect `buf` (not RTP/RTCP, key exhausted).
    pub async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        let protected = {
            let mut state = self.state();
            match state.as_mut() {
                None => None,
                Some(s) => Some(
                    s.session
                        .protect(buf)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
                ),
            }
        };
        match protected {
            Some(datagram) => self
                .socket
                .send_to(&datagram, target)
                .await
                .map(|_| buf.len()),
            None => self.socket.send_to(buf, target).await,
        }
    }

    /// Receives the next datagram, as `UdpSocket::recv_from`; with SRTP on, the next one that
    /// authenticates, unprotected in place (`buf[..n]` is the plain packet). Cancel-safe, like
    /// `UdpSocket::recv_from`: nothing is awaited after a datagram has been taken.
    ///
    /// # Errors
    /// The socket's.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        std::future::poll_fn(|cx| self.poll_recv_from(cx, buf)).await
    }

    /// [`MediaSocket::recv_from`] as a poll: `Pending` registers `cx`'s waker (only the last
    /// one polled is woken, as with `UdpSocket::poll_recv_from`). Cheaper than a fresh
    /// `recv_from` future in every turn of a `select!`: no waiter list to join and leave.
    ///
    /// # Errors
    /// The socket's.
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        loop {
            match self.read_one(buf) {
                Ok((n, from)) => {
                    if let Some(n) = self.open(buf, n, from) {
                        return Poll::Ready(Ok((n, from)));
                    }
                }
                // Empty: wait for the next readiness event (registers the task's waker).
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.socket.poll_recv_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Receives a datagram if one is queued, without waiting: `WouldBlock` when none is (like
    /// `UdpSocket::try_recv_from`, and without a system call once a batch read found the socket
    /// empty). Same SRTP handling as [`MediaSocket::recv_from`].
    ///
    /// # Errors
    /// `WouldBlock` when nothing is queued; the socket's errors otherwise.
    pub fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let (n, from) = self.read_one(buf)?;
            if let Some(n) = self.open(buf, n, from) {
                return Ok((n, from));
            }
        }
    }

    /// One datagram into `buf`: the one kept from the last batch read, else a batch read of up to
    /// two. Returns its length (truncated to `buf`) and source; `WouldBlock` when the socket is
    /// empty (its readiness is then cleared).
    fn read_one(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let mut stash = self.stash_state();
        let Stash { buf: slot, held } = &mut *stash;
        if let (Some((n, from)), Some(kept)) = (held.take(), slot.as_deref()) {
            let n = n.min(buf.len()).min(kept.len());
            buf.get_mut(..n)
                .unwrap_or_default()
                .copy_from_slice(kept.get(..n).unwrap_or_default());
            return Ok((n, from));
        }
        let second = slot.get_or_insert_with(|| vec![0u8; STASH_BYTES].into_boxed_slice());
        let fd = self.socket.as_raw_fd();
        let mut first = None;
        // `try_io` clears the readiness when the closure returns `WouldBlock`: it does when the
        // kernel had fewer datagrams than slots (so the socket is empty now), even if it had one.
        let read = self.socket.try_io(Interest::READABLE, || {
            // Fresh headers for every read (two small allocations): nix 0.26 does not reset each
            // slot's `msg_namelen` between calls, so reused headers would truncate an IPv6
            // source after an IPv4 one.
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(2, None);
            let slices = [
                [IoSliceMut::new(&mut *buf)],
                [IoSliceMut::new(&mut *second)],
            ];
            let results = recvmmsg(
                fd,
                &mut headers,
                slices.iter(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map_err(io::Error::from)?;
            let mut count = 0;
            for r in results {
                let from = r.address.as_ref().and_then(socket_addr);
                match (count, from) {
                    (0, Some(from)) => first = Some((r.bytes, from)),
                    (_, Some(from)) => *held = Some((r.bytes, from)),
                    _ => {}
                }
                count += 1;
            }
            if count < 2 {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(())
            }
        });
        match (first, read) {
            (Some((n, from)), _) => Ok((n.min(buf.len()), from)),
            // The first datagram had no IP source address; a second one is returned next.
            (None, Ok(())) => Err(io::ErrorKind::WouldBlock.into()),
            (None, Err(e)) => Err(e),
        }
    }

    /// Unprotects `buf[..n]` in place when SRTP is on: the plain length, or `None` to drop it.
    fn open(&self, buf: &mut [u8], n: usize, from: SocketAddr) -> Option<usize> {
        let mut state = self.state();
        let Some(secured) = state.as_mut() else {
            return Some(n);
        };
        let datagram = buf.get(..n)?;
        match secured.session.unprotect(datagram) {
            Ok(plain) => {
                let out = buf.get_mut(..plain.len())?;
                out.copy_from_slice(&plain);
                Some(plain.len())
            }
            Err(e) => {
                if secured.reported {
                    debug!(error = %e, %from, bytes = n, "SRTP datagram dropped");
                } else {
                    secured.reported = true;
                    info!(error = %e, %from, bytes = n, "SRTP datagram dropped (further drops are logged at debug)");
                }
                None
            }
        }
    }

    fn stash_state(&self) -> MutexGuard<'_, Stash> {
        self.stash
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn state(&self) -> MutexGuard<'_, Option<Secured>> {
        self.srtp
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The source address of a received datagram (IPv4 or IPv6; `None` for any other family).
fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

/// Keys (or un-keys) a call's RTP socket and its RTCP socket together ([`MediaSocket::set_srtp`])
/// and logs when SRTP starts.
///
/// # Errors
/// The first socket's refusal; the sockets keep their state.
pub fn set_srtp(
    rtp: &MediaSocket,
    rtcp: Option<&MediaSocket>,
    keys: Option<&SrtpKeys>,
) -> Result<(), srtp::Error> {
    let starting = keys.is_some() && !rtp.is_srtp();
    for socket in std::iter::once(rtp).chain(rtcp) {
        socket.set_srtp(keys)?;
    }
    if let (true, Some(keys)) = (starting, keys) {
        info!(suite = %keys.suite, "media is SRTP");
    }
    Ok(())
}

impl Drop for MediaSocket {
    /// Logs what SRTP did on this socket (at info, in the call's span), if it was on.
    fn drop(&mut self) {
        if let Some(s) = self.state().as_ref() {
            let stats = s.session.stats();
            info!(
                local_port = self.socket.local_addr().map(|a| a.port()).unwrap_or_default(),
                suite = %s.keys.suite,
                protected = stats.protected,
                unprotected = stats.unprotected,
                auth_failures = stats.auth_failures,
                replays = stats.replays,
                malformed = stats.malformed,
                "SRTP summary"
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::media::rtp;
    use crate::media::srtp::{MasterKey, Suite};

    async fn pair() -> (MediaSocket, MediaSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        (MediaSocket::new(a), MediaSocket::new(b))
    }

    fn packet(seq: u16) -> Vec<u8> {
        let mut p = rtp::header(0, false, seq, 160 * u32::from(seq), 42).to_vec();
        p.extend_from_slice(&[0x7f; 160]);
        p
    }

    #[tokio::test]
    async fn plain_until_keyed_then_srtp_both_ways_and_bad_datagrams_skipped() {
        let (a, b) = pair().await;
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut buf = vec![0u8; 2048];
        // Plain.
        a.send_to(&packet(1), b_addr).await.unwrap();
        let (n, _) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], &packet(1)[..]);
        // Keyed: each side sends with its own key.
        let (ka, kb) = (MasterKey::generate(), MasterKey::generate());
        let keys = |local: &MasterKey, remote: &MasterKey| SrtpKeys {
            suite: Suite::AesCm128HmacSha1_80,
            local: local.clone(),
            remote: remote.clone(),
        };
        a.set_srtp(Some(&keys(&ka, &kb))).unwrap();
        b.set_srtp(Some(&keys(&kb, &ka))).unwrap();
        assert!(a.is_srtp());
        // A raw plain datagram and garbage reach b first; b skips them and returns the SRTP one.
        let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        raw.send_to(&packet(2), b_addr).await.unwrap();
        raw.send_to(b"garbage", b_addr).await.unwrap();
        assert_eq!(
            a.send_to(&packet(3), b_addr).await.unwrap(),
            packet(3).len()
        );
        let (n, from) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&packet(3)[..], a_addr));
        let s = b.srtp_stats();
        assert_eq!((s.unprotected, s.auth_failures, s.malformed), (1, 1, 1));
        b.send_to(&packet(4), a_addr).await.unwrap();
        let (n, _) = a.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], &packet(4)[..]);
        // What went on the wire is not the plain packet.
        let sniff = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        a.send_to(&packet(5), sniff.local_addr().unwrap())
            .await
            .unwrap();
        let (n, _) = sniff.recv_from(&mut buf).await.unwrap();
        assert_eq!(n, packet(5).len() + 10);
        assert_ne!(&buf[12..172], &packet(5)[12..]);
        // The same keys again keep the state (the replay window still knows packet 3).
        b.set_srtp(Some(&keys(&kb, &ka))).unwrap();
        assert_eq!(b.srtp_stats().unprotected, 1);
        // try_recv_from skips what fails and reports WouldBlock when empty.
        raw.send_to(&packet(6), b_addr).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(
            b.try_recv_from(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        // The peer's new key (a re-offer) replaces only b's inbound side: b's outbound goes on,
        // so a, with its old inbound key, still reads b.
        let kc = MasterKey::generate();
        b.set_srtp(Some(&keys(&kb, &kc))).unwrap();
        b.send_to(&packet(7), a_addr).await.unwrap();
        let (n, _) = a.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], &packet(7)[..]);
        let mut changed = keys(&kb, &kc);
        changed.suite = Suite::AesCm128HmacSha1_32;
        assert_eq!(b.set_srtp(Some(&changed)), Err(srtp::Error::SuiteChanged));
        // Back to plain.
        b.set_srtp(None).unwrap();
        assert_eq!(b.srtp_stats(), SrtpStats::default());
    }

    #[tokio::test]
    async fn batched_reads_return_every_datagram_in_order_then_wait_for_the_next() {
        let (a, b) = pair().await;
        let b_addr = b.local_addr().unwrap();
        let a_addr = a.local_addr().unwrap();
        // Five queued at once: read two at a time, the second kept for the next receive.
        for seq in 1..=5 {
            a.send_to(&packet(seq), b_addr).await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut buf = vec![0u8; 2048];
        for seq in 1..=5 {
            let (n, from) = if seq % 2 == 0 {
                b.try_recv_from(&mut buf).unwrap()
            } else {
                b.recv_from(&mut buf).await.unwrap()
            };
            assert_eq!(
                (&buf[..n], from),
                (&packet(seq)[..], a_addr),
                "datagram {seq}"
            );
        }
        assert_eq!(
            b.try_recv_from(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        // The readiness was cleared by a short batch: a new datagram still wakes the receiver.
        let recv = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let (n, _) = b.recv_from(&mut buf).await.unwrap();
            buf.truncate(n);
            buf
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        a.send_to(&packet(6), b_addr).await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), recv)
            .await
            .expect("the receiver was woken")
            .unwrap();
        assert_eq!(got, packet(6));
        // A small buffer truncates, as recv_from does.
        let (c, d) = pair().await;
        c.send_to(&packet(7), d.local_addr().unwrap())
            .await
            .unwrap();
        let mut small = [0u8; 12];
        let (n, _) = d.recv_from(&mut small).await.unwrap();
        assert_eq!(&small[..n], &packet(7)[..12]);
    }
}
