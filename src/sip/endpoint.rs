//! The SIP endpoint: UDP and TCP sockets on each listen address (every message through
//! `guard`/`validate` first), rsipstack's transaction layer, and the routing of each new server
//! transaction (RFC 3261 §8.2, §12.2.2): INVITEs to `invite`, in-dialog requests to their dialog,
//! OPTIONS answered here.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rsipstack::dialog::dialog::Dialog;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::prelude::HeadersExt as _;
use rsipstack::sip::{Header, Method};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::{udp::UdpConnection, TransportLayer};
use rsipstack::EndpointBuilder;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    admission, guard, registration, reply, Error, IncomingCall, SipConfig, ALLOW,
    INCOMING_CALLS_CAPACITY,
};

/// The running SIP endpoint.
pub struct SipEndpoint {
    pub(super) endpoint: rsipstack::transaction::Endpoint,
    pub(super) dialogs: Arc<DialogLayer>,
    pub(super) calls: mpsc::Sender<IncomingCall>,
    pub(super) accepting: Arc<AtomicBool>,
    cancel: CancellationToken,
    contact_host: String,
    local_addr: SocketAddr,
    /// Admission core; locked only for one synchronous decision (never across an await).
    pub(super) gate: std::sync::Mutex<admission::Admission>,
    /// Our minimum session interval (RFC 4028 Min-SE).
    pub(super) min_se: u32,
    /// The SIP TCP listeners, served by [`SipEndpoint::run`] through `guard::serve_tcp`.
    tcp_listeners: std::sync::Mutex<Vec<tokio::net::TcpListener>>,
    /// Each bound address with the `host:port` our Contact names for calls arriving on it.
    contact_hosts: Vec<(SocketAddr, String)>,
    /// Every bound address (UDP and TCP share each).
    bound: Vec<SocketAddr>,
}

/// Switch that makes the endpoint answer new INVITEs 503 (graceful shutdown).
#[derive(Clone)]
pub struct AdmissionSwitch(Arc<AtomicBool>);

impl AdmissionSwitch {
    /// Stop accepting new calls: INVITEs get 503 Service Unavailable from now on.
    pub fn stop_accepting(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl SipEndpoint {
    /// Binds UDP and TCP on `config.listen` (port 0 picks a free port, the same for both) and
    /// returns the endpoint plus the channel of new calls.
    ///
    /// # Errors
    /// [`Error::Bind`] when either socket cannot be bound.
    pub async fn bind(
        config: &SipConfig,
        cancel: CancellationToken,
    ) -> Result<(SipEndpoint, mpsc::Receiver<IncomingCall>), Error> {
        let bind_err = |addr: SocketAddr, e: rsipstack::Error| Error::Bind {
            addr,
            reason: e.to_string(),
        };
        let transport_layer = TransportLayer::new(cancel.child_token());
        let Some(&first) = config.listen.first() else {
            return Err(Error::Bind {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                reason: "no SIP listen address".to_owned(),
            });
        };
        let v4 = config.listen.iter().filter(|a| a.is_ipv4()).count();
        if v4 > 1 || config.listen.len() - v4 > 1 {
            return Err(Error::Bind {
                addr: first,
                reason: "listen on at most one IPv4 and one IPv6 address".to_owned(),
            });
        }
        let mut tcp_listeners = Vec::new();
        let mut bound: Vec<SocketAddr> = Vec::new();
        let mut udp_sockets = Vec::new();
        for &want in &config.listen {
            // Port 0 after the first address: the first one's port.
            let addr = match bound.first() {
                Some(b) if want.port() == 0 => SocketAddr::new(want.ip(), b.port()),
                _ => want,
            };
            let udp_socket = bind_udp(addr).map_err(|e| bind_err(addr, e.into()))?;
            let port = udp_socket
                .local_addr()
                .map_err(|e| bind_err(addr, e.into()))?
                .port();
            // TCP on the same port as UDP (when port 0 was asked for, the one UDP got). We accept
            // the connections ourselves (`guard::serve_tcp`). rsipstack needs no TCP listener
            // entry: for requests it sends over TCP it advertises its first listener's address
            // with the TCP token, which is this same address and port.
            let tcp_addr = SocketAddr::new(addr.ip(), port);
            let tcp_listener = bind_tcp(tcp_addr).map_err(|e| bind_err(tcp_addr, e.into()))?;
            udp_sockets.push(udp_socket);
            tcp_listeners.push(tcp_listener);
            bound.push(tcp_addr);
        }
        // One UDP connection for rsipstack over both families (see `guard::GuardedUdp`); every
        // datagram passes `validate` first.
        let mut udp_sockets = udp_sockets.into_iter();
        let primary = udp_sockets.next().ok_or_else(|| Error::Bind {
            addr: first,
            reason: "no SIP listen address".to_owned(),
        })?;
        let udp = UdpConnection::from_socket(
            Arc::new(guard::GuardedUdp::new(primary, udp_sockets.next())),
            None,
            Some(cancel.child_token()),
        )
        .await
        .map_err(|e| bind_err(first, e))?;
        transport_layer.add_transport(udp.into());
        let udp_addr = bound.first().copied().unwrap_or(first);

        let endpoint = EndpointBuilder::new()
            .with_cancel_token(cancel.child_token())
            .with_transport_layer(transport_layer)
            .with_user_agent(&config.user_agent)
            .with_allows(vec![
                Method::Invite,
                Method::Ack,
                Method::Cancel,
                Method::Bye,
                Method::Options,
                Method::Info,
                Method::Update,
                Method::Notify,
            ])
            .build();
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        let (calls, calls_rx) = mpsc::channel(INCOMING_CALLS_CAPACITY);
        let contact_hosts: Vec<(SocketAddr, String)> = bound
            .iter()
            .map(|a| {
                let ip = if a.ip().is_unspecified() {
                    config.advertised_ip_for(a.ip())
                } else {
                    a.ip()
                };
                (*a, host_port(SocketAddr::new(ip, a.port())))
            })
            .collect();
        let contact_host = contact_hosts
            .first()
            .map(|(_, h)| h.clone())
            .unwrap_or_default();
        let gate = admission::Admission::new(
            config.admission.clone(),
            tokio::time::Instant::now().into_std(),
            rand::random(),
        );
        log_admission_policy(&config.admission);
        Ok((
            SipEndpoint {
                endpoint,
                dialogs,
                calls,
                accepting: Arc::new(AtomicBool::new(true)),
                cancel,
                contact_host,
                contact_hosts,
                local_addr: udp_addr,
                bound,
                gate: std::sync::Mutex::new(gate),
                min_se: config.min_session_expires.max(1),
                tcp_listeners: std::sync::Mutex::new(tcp_listeners),
            },
            calls_rx,
        ))
    }

    /// The first bound address (UDP and TCP share the port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Every bound address, in the order of [`SipConfig::listen`].
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.bound
    }

    /// The `host:port` of our Contact for a request that arrived on local address `local`:
    /// the listen address it came in on (its family's advertised IP for a wildcard).
    pub(super) fn contact_host_for(&self, local: Option<SocketAddr>) -> &str {
        local
            .and_then(|l| {
                self.contact_hosts
                    .iter()
                    .find(|(a, _)| a.port() == l.port() && a.is_ipv6() == l.is_ipv6())
            })
            .map_or(self.contact_host.as_str(), |(_, h)| h.as_str())
    }

    /// A switch to stop admitting calls during shutdown.
    pub fn admission(&self) -> AdmissionSwitch {
        AdmissionSwitch(self.accepting.clone())
    }

    /// Outbound registrations over this endpoint's transports and transaction layer, advertising
    /// this endpoint's Contact address. Spawn them after [`SipEndpoint::run`] has started.
    pub fn registrations(&self) -> registration::Registrations {
        registration::Registrations::new(self.endpoint.inner.clone(), self.contact_host.clone())
    }

    /// Serves SIP until the cancellation token fires.
    pub async fn run(self) {
        let mut incoming = match self.endpoint.incoming_transactions() {
            Ok(rx) => rx,
            Err(e) => {
                warn!(error = %e, "SIP endpoint has no transaction receiver");
                return;
            }
        };
        let tcp = self
            .tcp_listeners
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        for listener in tcp {
            tokio::spawn(guard::serve_tcp(
                listener,
                self.endpoint.inner.clone(),
                self.cancel.child_token(),
            ));
        }
        let serve = self.endpoint.serve();
        tokio::pin!(serve);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = &mut serve => break,
                tx = incoming.recv() => match tx {
                    Some(tx) => self.route(tx).await,
                    None => break,
                },
            }
        }
        self.endpoint.shutdown();
    }

    async fn route(&self, mut tx: Transaction) {
        let has_to_tag = tx
            .original
            .to_header()
            .ok()
            .and_then(|to| to.tag().ok().flatten())
            .is_some();
        let method = tx.original.method;
        debug!(%method, has_to_tag, "SIP request");
        if has_to_tag {
            match self.dialogs.match_dialog(&tx) {
                Some(Dialog::Invite(mut dialog)) => {
                    tokio::spawn(async move {
                        if let Err(e) = dialog.handle(&mut tx).await {
                            debug!(error = %e, "in-dialog request failed");
                        }
                    });
                }
                _ if method == Method::Ack => {}
                _ => reply(&mut tx, 481, vec![]).await,
            }
            return;
        }
        match method {
            Method::Invite => self.new_call(tx).await,
            Method::Options => {
                let headers = vec![
                    Header::Other("Allow".into(), ALLOW.into()),
                    Header::Other("Accept".into(), "application/sdp".into()),
                ];
                reply(&mut tx, 200, headers).await;
            }
            Method::Ack => {}
            Method::Cancel => reply(&mut tx, 481, vec![]).await,
            Method::Bye | Method::Info => reply(&mut tx, 481, vec![]).await,
            _ => {
                let headers = vec![Header::Other("Allow".into(), ALLOW.into())];
                reply(&mut tx, 405, headers).await;
            }
        }
    }
}

impl SipConfig {
    /// The advertised IP of `listen_ip`'s family, else the first one, else `listen_ip`.
    fn advertised_ip_for(&self, listen_ip: std::net::IpAddr) -> std::net::IpAddr {
        self.advertised_ips
            .iter()
            .find(|ip| ip.is_ipv6() == listen_ip.is_ipv6())
            .or(self.advertised_ips.first())
            .copied()
            .unwrap_or(listen_ip)
    }
}

/// `ip:port` with an IPv6 reference in brackets (RFC 3261 §19.1.1, RFC 5118 §4).
fn host_port(addr: SocketAddr) -> String {
    match addr.ip() {
        std::net::IpAddr::V6(v6) => format!("[{v6}]:{}", addr.port()),
        std::net::IpAddr::V4(v4) => format!("{v4}:{}", addr.port()),
    }
}

/// A UDP socket on `addr`; an IPv6 address listens on IPv6 only, so `0.0.0.0` and `[::]` can
/// share a port (dual stack).
fn bind_udp(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// A TCP listener on `addr` (IPv6 only for an IPv6 address, as [`bind_udp`]).
fn bind_tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// Logs the admission policy at start: warnings first (an open SIP port), then a summary.
fn log_admission_policy(policy: &admission::Policy) {
    for w in policy.warnings() {
        warn!("{w}");
    }
    if policy.open {
        return;
    }
    let trunks: Vec<String> = policy
        .trunks
        .iter()
        .map(|t| {
            let nets: Vec<String> = t.allow.iter().map(ToString::to_string).collect();
            format!("{} ({})", t.name, nets.join(", "))
        })
        .collect();
    let users = policy.digest.as_ref().map_or(0, |d| d.user_names().len());
    let others = if policy.digest.is_some() {
        "digest challenge (401)"
    } else {
        "403 Forbidden"
    };
    let rate = policy.rate.map_or_else(
        || "off".to_owned(),
        |r| format!("{}/min, burst {}", r.per_minute, r.burst),
    );
    info!(
        max_calls = policy.max_calls,
        rate_per_source = %rate,
        trunks = %trunks.join("; "),
        digest_users = users,
        realm = policy.digest.as_ref().map_or("-", |d| d.realm.as_str()),
        other_sources = others,
        "SIP admission: trunk sources are admitted by address"
    );
}
