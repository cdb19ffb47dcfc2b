//! SIP over TLS (RFC 3261 §26.2, RFC 5630): our own accept loop and outbound connector, both on
//! rustls, glued to rsipstack through its `platform::tls` seam.
//!
//! - Inbound: [`serve_tls`] accepts TCP connections on each `--sip-tls-listen` address and runs
//!   the TLS handshake (optionally requiring a client certificate signed by `client_ca`: mutual
//!   TLS for a trunk). A failed handshake is one log line at info; the process goes on. Each
//!   established session is wrapped in a [`GuardedTls`] and handed to rsipstack as a
//!   `TlsPlatform` connection, so rsipstack sees transport TLS (Via `SIP/2.0/TLS`, `received`/
//!   `rport`, in-dialog requests back over the same connection).
//! - Outbound (REGISTER to a `sips:` or `;transport=tls` registrar, in-dialog requests to a TLS
//!   peer we have no connection to): rsipstack asks the connector registered by
//!   [`install_connector`], which dials TCP and runs a rustls client handshake that verifies the
//!   server against `ca` (else the webpki roots), presenting our certificate if one is set.
//! - Either way every message read from a session passes [`validate::inspect`] first, framed by
//!   Content-Length as on TCP: rejections are answered on the session and never reach rsipstack.
//!
//! rsipstack's own TLS transport (its `rustls` feature) is not used: its listener would hand
//! messages to the transaction layer without our validation.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rsipstack::platform::tls::{TlsClientConfig, TlsConnector, TlsStream};
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transport::tls_platform::PlatformTlsConnection;
use rsipstack::transport::{SipAddr, SipConnection};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{
    AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadHalf, WriteHalf,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::guard::{log_verdict, next_unit, Over};
use super::validate::{self, Verdict};

/// Time a peer gets to complete the TLS handshake (inbound and outbound).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Time to open the TCP connection of an outbound TLS session.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest message on a TLS session (bytes), as on TCP.
const MAX_STREAM_MESSAGE: usize = 65_535;

/// The `[sip.tls]` settings: our certificate and how peers are verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain we present (leaf first). Required to listen for TLS.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert` (PKCS#8, PKCS#1 or SEC1). Never logged.
    pub key: Option<PathBuf>,
    /// PEM CA certificates that sign the client certificates we accept (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// Refuse inbound sessions without a client certificate signed by `client_ca`.
    pub require_client_cert: bool,
    /// PEM CA certificates we trust for servers we connect to (registrars, TLS peers); default:
    /// the public web PKI roots.
    pub ca: Option<PathBuf>,
}

/// Errors loading the TLS settings (at start-up).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{what} {path}: {reason}")]
    File {
        /// Which setting (`cert`, `key`, `client_ca`, `ca`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The settings do not fit together (e.g. a TLS listener without a certificate).
    #[error("[sip.tls]: {0}")]
    Invalid(String),
    /// rustls refused the certificate, key or CA set.
    #[error("[sip.tls]: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Loaded TLS configuration: the acceptor for our listeners (when a certificate is set) and the
/// connector for outbound sessions.
pub struct Tls {
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    connector: tokio_rustls::TlsConnector,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::File {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in the file".to_owned()));
    }
    Ok(certs)
}

fn roots(what: &'static str, path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    for c in read_certs(what, path)? {
        store.add(c).map_err(|e| TlsError::File {
            what,
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(store)
}

impl Tls {
    /// Loads the certificate, key and CA files of `settings`. `listen` says whether a TLS
    /// listener needs the certificate.
    ///
    /// # Errors
    /// [`TlsError`] naming the file or setting at fault.
    pub fn load(settings: &TlsSettings, listen: bool) -> Result<Tls, TlsError> {
        let identity = match (&settings.cert, &settings.key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs("cert", cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::File {
                    what: "key",
                    path: key.clone(),
                    reason: e.to_string(),
                })?;
                Some((chain, key))
            }
            (None, None) => None,
            _ => {
                return Err(TlsError::Invalid(
                    "cert and key go together: set both or neither".into(),
                ))
            }
        };
        if listen && identity.is_none() {
            return Err(TlsError::Invalid(
                "--sip-tls-listen needs a certificate: set [sip.tls] cert and key (or --sip-tls-cert/--sip-tls-key)".into(),
            ));
        }
        if settings.require_client_cert && settings.client_ca.is_none() {
            return Err(TlsError::Invalid(
                "require_client_cert needs client_ca (the CA that signs the trunk's certificate)"
                    .into(),
            ));
        }
        let acceptor = match &identity {
            Some((chain, key)) => {
                let builder = rustls::ServerConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()?;
                let builder = match &settings.client_ca {
                    Some(ca) => {
                        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                            Arc::new(roots("client_ca", ca)?),
                            provider(),
                        );
                        let verifier = if settings.require_client_cert {
                            verifier
                        } else {
                            verifier.allow_unauthenticated()
                        };
                        let verifier = verifier
                            .build()
                            .map_err(|e| TlsError::Invalid(format!("client_ca: {e}")))?;
                        builder.with_client_cert_verifier(verifier)
                    }
                    None => builder.with_no_client_auth(),
                };
                let config = builder.with_single_cert(chain.clone(), key.clone_key())?;
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
            }
            None => None,
        };
        let trust = match &settings.ca {
            Some(ca) => roots("ca", ca)?,
            None => rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(trust);
        let client = match identity {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
            None => builder.with_no_client_auth(),
        };
        Ok(Tls {
            acceptor,
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        })
    }
}

/// Sessions accepted by [`serve_tls`] waiting to be picked up by rsipstack through the
/// connector (see [`Connector::connect`]), by peer address.
pub(super) type Handoff = Mutex<HashMap<SocketAddr, Box<dyn TlsStream>>>;

/// The process-wide connector rsipstack dials TLS through.
struct Connector {
    tls: Arc<Tls>,
    handoff: Arc<Handoff>,
}

#[async_trait::async_trait]
impl TlsConnector for Connector {
    async fn connect(
        &self,
        config: &TlsClientConfig,
        addr: SocketAddr,
    ) -> rsipstack::Result<Box<dyn TlsStream>> {
        let accepted = self
            .handoff
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&addr);
        if let Some(stream) = accepted {
            return Ok(stream);
        }
        let io = |e: String| rsipstack::Error::Error(format!("TLS to {addr}: {e}"));
        let name = config.server_name.trim_matches(|c| c == '[' || c == ']');
        let name = ServerName::try_from(name.to_owned()).map_err(|e| io(e.to_string()))?;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| io("TCP connect timed out".into()))?
            .map_err(|e| io(e.to_string()))?;
        let local = tcp.local_addr().map_err(|e| io(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.tls.connector.connect(name, tcp)).await {
            Ok(Ok(stream)) => {
                debug!(peer = %addr, "SIP over TLS: connected");
                Ok(Box::new(GuardedTls::new(stream, addr, local)))
            }
            Ok(Err(e)) => {
                info!(peer = %addr, error = %e, "SIP over TLS: handshake with the server failed");
                Err(io(e.to_string()))
            }
            Err(_) => {
                info!(peer = %addr, "SIP over TLS: handshake with the server timed out");
                Err(io("handshake timed out".into()))
            }
        }
    }
}

/// Registers the connector for outbound TLS (and the hand-off of inbound sessions) with
/// rsipstack; returns the hand-off [`serve_tls`] uses. The last call wins (one per process).
pub(super) fn install_connector(tls: Arc<Tls>) -> Arc<Handoff> {
    let handoff = Arc::new(Handoff::default());
    rsipstack::platform::tls::set_client_connector(Arc::new(Connector {
        tls,
        handoff: handoff.clone(),
    }));
    handoff
}

/// Accepts TLS sessions on `listener` and hands each, guarded, to the endpoint's transport layer
/// until `cancel` fires.
pub(super) async fn serve_tls(
    listener: TcpListener,
    tls: Arc<Tls>,
    handoff: Arc<Handoff>,
    endpoint: EndpointInnerRef,
    cancel: CancellationToken,
) {
    let Some(acceptor) = tls.acceptor.clone() else {
        warn!("SIP TLS listener without a certificate");
        return;
    };
    loop {
        let (tcp, remote) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    debug!(error = %e, "TLS accept failed");
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let handoff = handoff.clone();
        let endpoint = endpoint.clone();
        let cancel = cancel.child_token();
        tokio::spawn(async move {
            let local = match tcp.local_addr() {
                Ok(a) => a,
                Err(_) => return,
            };
            let _ = tcp.set_nodelay(true);
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    info!(source = %remote, error = %e, "SIP over TLS: handshake refused");
                    return;
                }
                Err(_) => {
                    info!(source = %remote, "SIP over TLS: handshake timed out");
                    return;
                }
            };
            let client_cert = stream.get_ref().1.peer_certificates().is_some();
            debug!(source = %remote, client_cert, "SIP over TLS: session established");
            handoff
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(remote, Box::new(GuardedTls::new(stream, remote, local)));
            let target = SipAddr {
                r#type: Some(rsipstack::sip::Transport::Tls),
                addr: remote.into(),
            };
            match PlatformTlsConnection::connect(&target, None, Some(cancel)).await {
                Ok(conn) => endpoint
                    .transport_layer
                    .add_connection(SipConnection::TlsPlatform(conn)),
                Err(e) => {
                    handoff
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&remote);
                    warn!(source = %remote, error = %e, "SIP over TLS: session not handed to the stack");
                }
            }
        });
    }
}

/// One TLS session as rsipstack's `TlsStream`: [`TlsStream::recv`] returns only messages that
/// passed [`validate::inspect`] (in their canonical form) and keep-alives; rejected requests are
/// answered on the session.
struct GuardedTls<S> {
    reader: tokio::sync::Mutex<(ReadHalf<S>, Vec<u8>)>,
    writer: tokio::sync::Mutex<WriteHalf<S>>,
    remote: SocketAddr,
    local: SocketAddr,
}

impl<S: AsyncRead + AsyncWrite> GuardedTls<S> {
    fn new(stream: S, remote: SocketAddr, local: SocketAddr) -> GuardedTls<S> {
        let (r, w) = tokio::io::split(stream);
        GuardedTls {
            reader: tokio::sync::Mutex::new((r, Vec::new())),
            writer: tokio::sync::Mutex::new(w),
            remote,
            local,
        }
    }
}

fn io_err(e: std::io::Error) -> rsipstack::Error {
    rsipstack::Error::IoError(e)
}

#[async_trait::async_trait]
impl<S> TlsStream for GuardedTls<S>
where
    S: AsyncRead + AsyncWrite + Send + Sync + 'static,
{
    async fn recv(&self) -> rsipstack::Result<Vec<u8>> {
        let mut guard = self.reader.lock().await;
        let (half, buf) = &mut *guard;
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            while let Some(len) = next_unit(buf) {
                let unit: Vec<u8> = buf.drain(..len).collect();
                let verdict = validate::inspect(&unit, self.remote, true, MAX_STREAM_MESSAGE);
                log_verdict(&verdict, self.remote, Over::Tls);
                match verdict {
                    Verdict::Accept(msg) => return Ok(msg),
                    Verdict::KeepAlive => return Ok(unit),
                    Verdict::Reject(r) => {
                        self.send_all(r.response.clone()).await?;
                        if matches!(
                            r.rule,
                            validate::Rule::BadContentLength
                                | validate::Rule::SeveralValues("Content-Length")
                        ) {
                            // Without one valid Content-Length the stream cannot be framed.
                            return Ok(Vec::new());
                        }
                    }
                    Verdict::Drop(_) => {}
                }
            }
            if buf.len() > MAX_STREAM_MESSAGE {
                info!(source = %self.remote, "SIP over TLS: message larger than 64 KiB; closing the connection");
                return Ok(Vec::new());
            }
            let n = match half.read(&mut chunk).await {
                Ok(n) => n,
                // Closed without close_notify: what most SIP peers do; a close like any other
                // (SIP messages are framed by Content-Length, so nothing can be truncated
                // unnoticed).
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(io_err(e)),
            };
            if n == 0 {
                debug!(peer = %self.remote, "SIP over TLS: the peer closed the session");
                return Ok(Vec::new());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn send_all(&self, data: Vec<u8>) -> rsipstack::Result<()> {
        let mut w = self.writer.lock().await;
        w.write_all(&data).await.map_err(io_err)?;
        w.flush().await.map_err(io_err)
    }

    async fn shutdown(&self) -> rsipstack::Result<()> {
        self.writer.lock().await.shutdown().await.map_err(io_err)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.local)
    }
}
