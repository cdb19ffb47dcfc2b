//! Realtime WebSocket client connection (tokio-tungstenite with rustls).
//!
//! Opens one WebSocket per call to the Realtime endpoint (OpenAI's, or the simulator's), with the
//! headers of the chosen [`Dialect`](super::protocol::Dialect): `Authorization: Bearer <key>` and, for
//! the beta dialect, `OpenAI-Beta: realtime=v1` (realtime-protocol.md §1.1). The API key is held in
//! [`ApiKey`], whose `Debug`/`Display` never reveal it.

use std::fmt;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::protocol::Dialect;

/// The WebSocket stream of one Realtime session.
pub type RealtimeSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// OpenAI's Realtime endpoint.
pub const OPENAI_REALTIME_URL: &str = "wss://api.openai.com/v1/realtime";

/// WebSocket read buffer, in bytes (larger messages take several reads).
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// Largest WebSocket message accepted from the server, in bytes (a delta is a few KiB; 16 MiB is ample).
const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// An API key. Never printed: `Debug` and `Display` show `sk-…redacted`.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key read from the environment. Returns `None` for an empty or blank value.
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

/// Where and how to open Realtime sessions.
#[derive(Debug, Clone)]
pub struct RealtimeTarget {
    /// Base URL, e.g. `wss://api.openai.com/v1/realtime` or `ws://127.0.0.1:8089/v1/realtime`.
    pub url: String,
    /// Protocol dialect.
    pub dialect: Dialect,
    /// Bearer key; `None` sends no `Authorization` header (the simulator accepts that).
    pub api_key: Option<ApiKey>,
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
    /// The URL to connect to for `model`: the base URL with `?model=` appended unless it already
    /// has a query.
    pub fn url_for(&self, model: &str) -> String {
        if self.url.contains('?') {
            self.url.clone()
        } else {
            format!("{}?model={}", self.url, model)
        }
    }

    /// Opens a WebSocket session for `model`. No timeout is applied here: callers bound it.
    ///
    /// # Errors
    /// [`Error::Url`] for a malformed URL, [`Error::Handshake`] when the server cannot be reached or
    /// refuses the upgrade.
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
        let headers = request.headers_mut();
        if let Some(key) = &self.api_key {
            let value = HeaderValue::from_str(&format!("Bearer {}", key.0)).map_err(|_| {
                url_err("the API key contains characters not allowed in a header".into())
            })?;
            headers.insert("Authorization", value);
        }
        if let Some((name, value)) = self.dialect.beta_header() {
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
        let target = RealtimeTarget {
            url: OPENAI_REALTIME_URL.into(),
            dialect: Dialect::Ga,
            api_key: Some(key),
        };
        assert!(!format!("{target:?}").contains("secret"));
        assert!(ApiKey::new("  ".into()).is_none());
    }

    #[test]
    fn model_goes_into_the_query() {
        let t = RealtimeTarget {
            url: "ws://127.0.0.1:1/v1/realtime".into(),
            dialect: Dialect::Ga,
            api_key: None,
        };
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
        let target = RealtimeTarget {
            url: format!("wss://localhost:{}/v1/realtime", addr.port()),
            dialect: Dialect::Ga,
            api_key: ApiKey::new("sk-test".into()),
        };
        let err = target
            .connect("gpt-realtime")
            .await
            .expect_err("not a TLS server");
        assert!(matches!(err, Error::Handshake { .. }), "{err}");
        assert!(!err.to_string().contains("sk-test"));
    }
}
