//! Realtime / GPT-Live WebSocket client connection (tokio-tungstenite with rustls).
//!
//! Opens one WebSocket per call to the model endpoint (OpenAI's, Azure OpenAI's, a gateway's, or
//! the simulator's), authenticated as the endpoint's [`Auth`] says:
//!
//! | [`Auth`] | what is sent | for |
//! |---|---|---|
//! | `bearer` (default) | `Authorization: Bearer <key>` | OpenAI; Azure with an Entra ID token |
//! | `api-key` | `api-key: <key>` | Azure OpenAI keys (live-protocol.md §1.2) |
//! | `subprotocol` | `Sec-WebSocket-Protocol: realtime, openai-insecure-api-key.<key>` (+ `openai-beta.realtime-v1` for beta) | gateways that take the key the way browsers send it |
//!
//! plus, for the beta dialect with header auth, `OpenAI-Beta: realtime=v1` (realtime-protocol.md
//! §1.1). The key is an [`ApiKey`], whose `Debug`/`Display` never reveal it; it comes from an
//! environment variable or, re-read at every connect so rotated Entra tokens are picked up, a
//! file ([`RealtimeTarget::key_file`]). No error or log line carries it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::protocol::Dialect;

/// The WebSocket stream of one Realtime session.
pub type RealtimeSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// OpenAI's Realtime endpoint.
pub const OPENAI_REALTIME_URL: &str = "wss://api.openai.com/v1/realtime";

/// The name of the endpoint given by the single-endpoint settings (`[realtime] url`, …).
pub const DEFAULT_ENDPOINT_NAME: &str = "default";

/// WebSocket read buffer, in bytes (larger messages take several reads).
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// Largest WebSocket message accepted from the server, in bytes (a delta is a few KiB; 16 MiB is ample).
const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Subprotocol prefix carrying the key (the browser form of Realtime authentication).
pub const KEY_SUBPROTOCOL_PREFIX: &str = "openai-insecure-api-key.";
/// Subprotocol selecting the beta shape when the key travels as a subprotocol.
pub const BETA_SUBPROTOCOL: &str = "openai-beta.realtime-v1";

/// An API key or bearer token. Never printed: `Debug` and `Display` show `redacted`.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key read from the environment or a file. Returns `None` for an empty or blank
    /// value.
    pub fn new(key: String) -> Option<ApiKey> {
        let key = key.trim().to_owned();
        (!key.is_empty()).then_some(ApiKey(key))
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(redacted)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("redacted")
    }
}

/// How the key is presented on the WebSocket handshake (see the module docs). Parses from
/// `"bearer"`, `"api-key"` or `"subprotocol"` (ASCII case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Auth {
    /// `Authorization: Bearer <key>` (OpenAI; Azure Entra ID tokens).
    #[default]
    Bearer,
    /// `api-key: <key>` (Azure OpenAI resource keys).
    ApiKey,
    /// `Sec-WebSocket-Protocol: realtime, openai-insecure-api-key.<key>` (gateways).
    Subprotocol,
}

impl Auth {
    /// The config spelling: `bearer`, `api-key`, `subprotocol`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Auth::Bearer => "bearer",
            Auth::ApiKey => "api-key",
            Auth::Subprotocol => "subprotocol",
        }
    }
}

impl FromStr for Auth {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "bearer" => Ok(Auth::Bearer),
            "api-key" | "api_key" => Ok(Auth::ApiKey),
            "subprotocol" => Ok(Auth::Subprotocol),
            _ => Err(format!(
                "'{s}' is not an authentication scheme; use 'bearer' (default), 'api-key' or 'subprotocol'"
            )),
        }
    }
}

/// Where and how to open model sessions: one endpoint.
#[derive(Debug, Clone)]
pub struct RealtimeTarget {
    /// The endpoint's name (`[[realtime.endpoints]] name`; `default` for the single-endpoint
    /// settings), for logs and the dialplan's per-agent `endpoints`.
    pub name: String,
    /// Base URL, e.g. `wss://api.openai.com/v1/realtime`,
    /// `wss://RESOURCE.openai.azure.com/openai/v1/live/sessions` or
    /// `ws://127.0.0.1:8089/v1/realtime`.
    pub url: String,
    /// Protocol dialect.
    pub dialect: Dialect,
    /// The key; `None` (and no [`RealtimeTarget::key_file`]) sends no credential (the simulator
    /// accepts that).
    pub api_key: Option<ApiKey>,
    /// How the key is sent.
    pub auth: Auth,
    /// A file whose first line is the key or token, read at every connect (takes precedence
    /// over `api_key`; for Entra ID tokens that a sidecar refreshes).
    pub key_file: Option<PathBuf>,
    /// GPT-Live: the Responses model tool calls are delegated to (`None`:
    /// [`super::models::DEFAULT_LIVE_BACKEND_MODEL`]).
    pub backend_model: Option<String>,
}

/// Errors opening a session.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL or a header could not be built.
    #[error("invalid Realtime URL {url}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The key file could not be read or is empty.
    #[error("cannot read the key file {}: {reason}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why (never the key).
        reason: String,
    },
    /// The TCP/TLS/WebSocket handshake failed (includes HTTP 401/403/404 answers).
    #[error("Realtime handshake with {url} failed: {source}")]
    Handshake {
        /// The URL (without the key, which is never in it).
        url: String,
        /// The transport error.
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
}

impl RealtimeTarget {
    /// An endpoint with bearer auth, no key file and the default GPT-Live backend model.
    pub fn new(url: impl Into<String>, dialect: Dialect, api_key: Option<ApiKey>) -> Self {
        RealtimeTarget {
            name: DEFAULT_ENDPOINT_NAME.to_owned(),
            url: url.into(),
            dialect,
            api_key,
            auth: Auth::Bearer,
            key_file: None,
            backend_model: None,
        }
    }

    /// The URL to connect to for `model`: the base URL with `?model=` appended unless it already
    /// has a query or the dialect takes the model in its session configuration (GPT-Live).
    pub fn url_for(&self, model: &str) -> String {
        if self.url.contains('?') || !self.dialect.model_in_url() {
            self.url.clone()
        } else {
            format!("{}?model={}", self.url, model)
        }
    }

    /// The key for this connect: the key file's first line, else [`RealtimeTarget::api_key`].
    fn key(&self) -> Result<Option<ApiKey>, Error> {
        let Some(path) = &self.key_file else {
            return Ok(self.api_key.clone());
        };
        let err = |reason: String| Error::KeyFile {
            path: path.clone(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.kind().to_string()))?;
        let first = text.lines().next().unwrap_or_default().to_owned();
        ApiKey::new(first)
            .map(Some)
            .ok_or_else(|| err("the first line is empty".into()))
    }

    /// Opens a WebSocket session for `model`. No timeout is applied here: callers bound it.
    ///
    /// # Errors
    /// [`Error::Url`] for a malformed URL or a key that cannot go in a header,
    /// [`Error::KeyFile`] for an unreadable key file, [`Error::Handshake`] when the server cannot
    /// be reached or refuses the upgrade.
    pub async fn connect(&self, model: &str) -> Result<RealtimeSocket, Error> {
        let url = self.url_for(model);
        let url_err = |reason: String| Error::Url {
            url: url.clone(),
            reason,
        };
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| url_err(e.to_string()))?;
        let key = self.key()?;
        let headers = request.headers_mut();
        let bad_key = || url_err("the API key contains characters not allowed in a header".into());
        match (&key, self.auth) {
            (None, _) => {}
            (Some(key), Auth::Bearer) => {
                let value =
                    HeaderValue::from_str(&format!("Bearer {}", key.0)).map_err(|_| bad_key())?;
                headers.insert("Authorization", value);
            }
            (Some(key), Auth::ApiKey) => {
                headers.insert(
                    "api-key",
                    HeaderValue::from_str(&key.0).map_err(|_| bad_key())?,
                );
            }
            (Some(key), Auth::Subprotocol) => {
                let mut protocols = format!("realtime, {KEY_SUBPROTOCOL_PREFIX}{}", key.0);
                if self.dialect == Dialect::Beta {
                    protocols.push_str(", ");
                    protocols.push_str(BETA_SUBPROTOCOL);
                }
                headers.insert(
                    "Sec-WebSocket-Protocol",
                    HeaderValue::from_str(&protocols).map_err(|_| bad_key())?,
                );
            }
        }
        let subprotocol_beta = key.is_some() && self.auth == Auth::Subprotocol;
        if let Some((name, value)) = self.dialect.beta_header().filter(|_| !subprotocol_beta) {
            headers.insert(name, HeaderValue::from_static(value));
        }
        // An 8 KiB read buffer instead of tungstenite's 128 KiB, which it zero-fills on every poll:
        // deltas are ~2 KiB, and this cut frontdesk's CPU per call by ~27 % at 200 calls
        // (BENCHMARKS.md).
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .read_buffer_size(READ_BUFFER_BYTES);
        let (socket, _response) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), true)
                .await
                .map_err(|e| Error::Handshake {
                    url: url.clone(),
                    source: Box::new(e),
                })?;
        Ok(socket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_is_never_printed() {
        let key = ApiKey::new("sk-secret-123".into()).expect("key");
        assert!(!format!("{key:?} {key}").contains("secret"));
        let target = RealtimeTarget::new(OPENAI_REALTIME_URL, Dialect::Ga, Some(key));
        assert!(!format!("{target:?}").contains("secret"));
        assert!(ApiKey::new("  ".into()).is_none());
    }

    #[test]
    fn model_goes_into_the_query() {
        let t = RealtimeTarget::new("ws://127.0.0.1:1/v1/realtime", Dialect::Ga, None);
        assert_eq!(
            t.url_for("gpt-realtime"),
            "ws://127.0.0.1:1/v1/realtime?model=gpt-realtime"
        );
        let t = RealtimeTarget {
            url: "ws://h/v1/realtime?model=x".into(),
            ..t
        };
        assert_eq!(t.url_for("gpt-realtime"), "ws://h/v1/realtime?model=x");
    }

    /// Regression guard: tokio-tungstenite's rustls features compile without a crypto provider and
    /// then panic on the first `wss://` handshake. With the provider installed at start, a TLS
    /// handshake against a peer that is not a TLS server must fail with an error, not a panic.
    #[tokio::test]
    async fn wss_handshake_fails_cleanly_with_the_provider_installed() {
        crate::server::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                use tokio::io::AsyncWriteExt as _;
                let _ = s.write_all(b"HTTP/1.1 400 Not TLS\r\n\r\n").await;
            }
        });
        let target = RealtimeTarget::new(
            format!("wss://localhost:{}/v1/realtime", addr.port()),
            Dialect::Ga,
            ApiKey::new("sk-test".into()),
        );
        let err = target
            .connect("gpt-realtime")
            .await
            .expect_err("not a TLS server");
        assert!(matches!(err, Error::Handshake { .. }), "{err}");
        assert!(!err.to_string().contains("sk-test"));
    }

    /// What a test server saw of one WebSocket handshake.
    #[derive(Debug, Default, Clone)]
    struct Seen {
        path: String,
        authorization: Option<String>,
        api_key: Option<String>,
        protocols: Option<String>,
        beta: Option<String>,
    }

    /// The handshake callback of [`recording_server`]: records the request's headers in `seen`
    /// and answers with the `realtime` subprotocol when one was offered. A type rather than a
    /// closure, as tungstenite's `Callback` signature fixes its (large) error type.
    struct Record<'a>(&'a mut Seen);

    impl tokio_tungstenite::tungstenite::handshake::server::Callback for Record<'_> {
        fn on_request(
            self,
            req: &tokio_tungstenite::tungstenite::handshake::server::Request,
            mut resp: tokio_tungstenite::tungstenite::handshake::server::Response,
        ) -> Result<
            tokio_tungstenite::tungstenite::handshake::server::Response,
            tokio_tungstenite::tungstenite::handshake::server::ErrorResponse,
        > {
            let header = |name: &str| {
                req.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let seen = self.0;
            seen.path = req.uri().to_string();
            seen.authorization = header("authorization");
            seen.api_key = header("api-key");
            seen.protocols = header("sec-websocket-protocol");
            seen.beta = header("openai-beta");
            if seen.protocols.is_some() {
                resp.headers_mut().insert(
                    "sec-websocket-protocol",
                    HeaderValue::from_static("realtime"),
                );
            }
            Ok(resp)
        }
    }

    /// A one-connection WebSocket server recording the handshake headers; it answers with the
    /// `realtime` subprotocol when offered, as gateways and the real service do.
    async fn recording_server() -> (String, tokio::task::JoinHandle<Seen>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handle = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let mut seen = Seen::default();
            let ws = tokio_tungstenite::accept_hdr_async(stream, Record(&mut seen))
                .await
                .expect("handshake");
            drop(ws);
            seen
        });
        (format!("ws://{addr}"), handle)
    }

    /// A log buffer capturing every tracing line (all levels) of the current thread.
    #[derive(Clone, Default)]
    struct LogBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for LogBuf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl LogBuf {
        fn text(&self) -> String {
            String::from_utf8_lossy(
                &self
                    .0
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            )
            .into_owned()
        }
    }

    #[tokio::test]
    async fn azure_api_key_bearer_file_and_gateway_subprotocols_are_sent_and_never_logged() {
        let logs = LogBuf::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let key = "sk-azure-SECRET-1234";
        let dir = tempfile::tempdir().expect("tempdir");
        let token_file = dir.path().join("entra-token");

        // Azure GPT-Live with a resource key: `api-key` header, no Authorization, no ?model=.
        let (base, server) = recording_server().await;
        let mut t = RealtimeTarget::new(
            format!("{base}/openai/v1/live/sessions"),
            Dialect::Live,
            ApiKey::new(key.into()),
        );
        t.auth = Auth::ApiKey;
        let mut session = crate::realtime::Session::connect(&t, "my-deployment")
            .await
            .expect("live session opens without waiting for the server");
        session.close().await;
        let seen = server.await.expect("server");
        assert_eq!(seen.path, "/openai/v1/live/sessions");
        assert_eq!(seen.api_key.as_deref(), Some(key));
        assert_eq!(seen.authorization, None);
        assert_eq!(seen.protocols, None);

        // Azure Realtime GA with an Entra token from a file, re-read at every connect.
        for token in ["entra-token-ONE", "entra-token-TWO"] {
            std::fs::write(&token_file, format!("{token}\n")).expect("write token");
            let (base, server) = recording_server().await;
            let mut t = RealtimeTarget::new(
                format!("{base}/openai/v1/realtime?model=dep"),
                Dialect::Ga,
                ApiKey::new("ignored-when-a-file-is-set".into()),
            );
            t.key_file = Some(token_file.clone());
            drop(t.connect("gpt-realtime").await.expect("connect"));
            let seen = server.await.expect("server");
            assert_eq!(seen.authorization, Some(format!("Bearer {token}")));
            assert_eq!(seen.path, "/openai/v1/realtime?model=dep");
        }

        // A gateway taking the key as a subprotocol, GA then beta.
        for (dialect, want) in [
            (
                Dialect::Ga,
                format!("realtime, openai-insecure-api-key.{key}"),
            ),
            (
                Dialect::Beta,
                format!("realtime, openai-insecure-api-key.{key}, openai-beta.realtime-v1"),
            ),
        ] {
            let (base, server) = recording_server().await;
            let mut t = RealtimeTarget::new(
                format!("{base}/v1/realtime"),
                dialect,
                ApiKey::new(key.into()),
            );
            t.auth = Auth::Subprotocol;
            drop(t.connect("gpt-realtime").await.expect("connect"));
            let seen = server.await.expect("server");
            assert_eq!(seen.protocols.as_deref(), Some(want.as_str()));
            assert_eq!(seen.authorization, None);
            assert_eq!(seen.beta, None, "the subprotocol selects beta");
        }

        // An unreadable key file is a clear error without the key.
        let mut t = RealtimeTarget::new(
            "ws://127.0.0.1:9/v1/realtime",
            Dialect::Ga,
            ApiKey::new(key.into()),
        );
        t.key_file = Some(dir.path().join("missing"));
        let err = t.connect("m").await.expect_err("no file");
        assert!(matches!(err, Error::KeyFile { .. }), "{err}");

        let text = logs.text();
        assert!(
            text.contains("GPT-Live connection open"),
            "logs captured: {text}"
        );
        for secret in [key, "entra-token-ONE", "entra-token-TWO"] {
            assert!(
                !text.contains(secret),
                "the key leaked into the logs:\n{text}"
            );
            assert!(!err.to_string().contains(secret));
            assert!(!format!("{t:?}").contains(secret));
        }
    }

    #[test]
    fn auth_schemes_parse() {
        assert_eq!("bearer".parse(), Ok(Auth::Bearer));
        assert_eq!("API-KEY".parse(), Ok(Auth::ApiKey));
        assert_eq!("subprotocol".parse(), Ok(Auth::Subprotocol));
        assert!("basic".parse::<Auth>().is_err());
        assert_eq!(Auth::ApiKey.as_str(), "api-key");
    }

    #[test]
    fn live_urls_carry_no_model() {
        let t = RealtimeTarget::new(crate::realtime::live::OPENAI_LIVE_URL, Dialect::Live, None);
        assert_eq!(
            t.url_for("gpt-live-1.1"),
            "wss://api.openai.com/v1/live/sessions"
        );
        assert_eq!(
            Dialect::Live.default_url(),
            crate::realtime::live::OPENAI_LIVE_URL
        );
        assert_eq!("live".parse::<Dialect>(), Ok(Dialect::Live));
    }
}
