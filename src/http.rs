//! The HTTP listener of `frontdesk serve` (`--http-listen` / `[http] listen`; off by default),
//! on axum over the process's tokio runtime:
//!
//! | path | access | answers |
//! |---|---|---|
//! | `/healthz` | open | 200 `ok` while the process runs, SIP is listening and the database answers; else 503 with what failed |
//! | `/readyz` | open | 200 while new calls are accepted; 503 while draining (shutdown) |
//! | `/metrics` | open | Prometheus text format (the metrics of [`crate::observe`]) |
//! | `/` | staff | today's and upcoming appointments by provider, recent calls (outcome, cost), calls in progress |
//! | `/call?id=CALL-ID` | staff | one call: transcript, tool calls, outcome, media, cost |
//!
//! Staff pages (server-rendered HTML, minijinja templates in `templates/`, no JavaScript) are
//! read-only. With a token (`[http] token_file` or `token_env`), a request must carry it as
//! `Authorization: Bearer TOKEN`, or the `frontdesk_token` cookie, which a first visit to
//! `/?token=TOKEN` sets; anything else gets 401. Without a token only loopback clients are
//! served (others get 403). The open paths carry no personal data. Caller numbers and
//! transcripts are shown only on staff pages.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use metrics_exporter_prometheus::PrometheusHandle;
use minijinja::{context, Environment};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::store::Store;
use crate::tools::calls::{cost_text, duration_text, time_text};

/// Name of the cookie holding the staff token.
pub const TOKEN_COOKIE: &str = "frontdesk_token";
/// Calls listed on the staff page.
const RECENT_CALLS: u32 = 50;

/// Shared state of the listener.
pub struct HttpState {
    /// The database.
    pub store: Store,
    /// Renders `/metrics`; `None` when another recorder owns the process (tests).
    pub metrics: Option<PrometheusHandle>,
    /// Staff token; `None`: loopback only.
    pub token: Option<String>,
    /// True while new calls are accepted (false once shutdown started).
    pub accepting: Arc<AtomicBool>,
    /// True while the SIP endpoint runs.
    pub sip_up: Arc<AtomicBool>,
    /// The call tasks (its length is the number of calls in progress).
    pub calls: TaskTracker,
    templates: Environment<'static>,
}

impl HttpState {
    /// State for [`serve`].
    pub fn new(
        store: Store,
        metrics: Option<PrometheusHandle>,
        token: Option<String>,
        accepting: Arc<AtomicBool>,
        sip_up: Arc<AtomicBool>,
        calls: TaskTracker,
    ) -> HttpState {
        let mut templates = Environment::new();
        for (name, text) in [
            ("layout.html", include_str!("../templates/layout.html")),
            ("index.html", include_str!("../templates/index.html")),
            ("call.html", include_str!("../templates/call.html")),
        ] {
            if let Err(e) = templates.add_template(name, text) {
                // The templates are compiled into the binary; a broken one fails the tests.
                warn!(template = name, error = %e, "staff page template does not compile");
            }
        }
        HttpState {
            store,
            metrics,
            token,
            accepting,
            sip_up,
            calls,
            templates,
        }
    }
}

/// Serves the listener until `cancel`.
///
/// # Errors
/// An I/O error of the listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<HttpState>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let staff = Router::new()
        .route("/", get(index))
        .route("/call", get(call_page))
        .route_layer(middleware::from_fn_with_state(state.clone(), staff_auth));
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(staff)
        .with_state(state);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { cancel.cancelled().await })
    .await
}

async fn healthz(State(s): State<Arc<HttpState>>) -> Response {
    let mut problems = Vec::new();
    if !s.sip_up.load(Ordering::Relaxed) {
        problems.push("SIP endpoint is not running");
    }
    if let Err(e) = sqlx::query("SELECT 1").execute(s.store.pool()).await {
        warn!(error = %e, "health check: database unreachable");
        problems.push("database unreachable");
    }
    if problems.is_empty() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", problems.join("; ")),
        )
            .into_response()
    }
}

async fn readyz(State(s): State<Arc<HttpState>>) -> Response {
    if s.accepting.load(Ordering::Relaxed) && s.sip_up.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    }
}

async fn metrics(State(s): State<Arc<HttpState>>) -> Response {
    match &s.metrics {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled\n").into_response(),
    }
}

/// True when `a` and `b` are equal, comparing every byte (no early exit on the first difference).
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == TOKEN_COOKIE)
        .map(|(_, v)| v)
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn staff_auth(
    State(s): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<TokenQuery>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &s.token else {
        if peer.ip().is_loopback() {
            return next.run(request).await;
        }
        return (
            StatusCode::FORBIDDEN,
            "the staff page is served only to loopback clients unless [http] token_file or token_env is set\n",
        )
            .into_response();
    };
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let from_query = q.token.as_deref().is_some_and(|t| same_secret(t, token));
    let ok = from_query
        || bearer.is_some_and(|t| same_secret(t.trim(), token))
        || cookie_token(headers).is_some_and(|t| same_secret(t, token));
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"frontdesk\"")],
            "a staff token is required: Authorization: Bearer TOKEN, or open /?token=TOKEN once\n",
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    if from_query {
        let cookie = format!("{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
        if let Ok(v) = header::HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    response
}

fn render(s: &HttpState, name: &str, ctx: minijinja::Value) -> Response {
    match s.templates.get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            warn!(template = name, error = %e, "cannot render the staff page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot render the page\n",
            )
                .into_response()
        }
    }
}

fn server_error(what: &str, e: &dyn std::fmt::Display) -> Response {
    warn!(error = %e, "staff page: cannot read {what}");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("cannot read {what} from the database\n"),
    )
        .into_response()
}

/// A row of the recent-calls table, formatted.
#[derive(Serialize)]
struct CallLine {
    call_id: String,
    started: String,
    caller: String,
    route: String,
    outcome: String,
    duration: String,
    bookings: i64,
    cost: String,
}

async fn index(State(s): State<Arc<HttpState>>) -> Response {
    let now = Utc::now();
    let agendas = match crate::tools::staff::agenda(&s.store, now).await {
        Ok(a) => a,
        Err(e) => return server_error("the appointments", &e),
    };
    let calls = match s
        .store
        .list_calls(&crate::store::history::CallFilter {
            limit: RECENT_CALLS,
            ..Default::default()
        })
        .await
    {
        Ok(c) => c,
        Err(e) => return server_error("the calls", &e),
    };
    let calls: Vec<CallLine> = calls
        .into_iter()
        .map(|c| CallLine {
            started: time_text(&c.started_at),
            caller: c.caller.unwrap_or_else(|| "anonymous".into()),
            route: c.route.unwrap_or_else(|| "-".into()),
            outcome: c.outcome.unwrap_or_else(|| "in progress".into()),
            duration: duration_text(c.duration_secs),
            bookings: c.bookings,
            cost: cost_text(c.cost_usd),
            call_id: c.call_id,
        })
        .collect();
    render(
        &s,
        "index.html",
        context! {
            version => env!("CARGO_PKG_VERSION"),
            now => now.format("%Y-%m-%d %H:%M").to_string(),
            in_progress => s.calls.len(),
            agendas,
            agenda_days => crate::tools::staff::AGENDA_DAYS,
            calls,
        },
    )
}

#[derive(Deserialize)]
struct CallQuery {
    id: String,
}

#[derive(Serialize)]
struct TurnLine {
    speaker: String,
    at: String,
    text: String,
    truncated: bool,
}

async fn call_page(State(s): State<Arc<HttpState>>, Query(q): Query<CallQuery>) -> Response {
    let detail = match s.store.call_detail(&q.id).await {
        Ok(Some(d)) => d,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such call\n").into_response(),
        Err(e) => return server_error("the call", &e),
    };
    let turns: Vec<TurnLine> = detail
        .turns
        .iter()
        .map(|t| TurnLine {
            speaker: t.speaker.clone(),
            at: duration_text(Some(t.start_ms as f64 / 1000.0)),
            text: t.text.clone(),
            truncated: t.truncated,
        })
        .collect();
    render(
        &s,
        "call.html",
        context! {
            version => env!("CARGO_PKG_VERSION"),
            caller => detail.summary.caller.clone().unwrap_or_else(|| "anonymous".into()),
            started => time_text(&detail.summary.started_at),
            duration => duration_text(detail.summary.duration_secs),
            cost => cost_text(detail.summary.cost_usd),
            turns,
            call => detail,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("s3cret", "s3cret"));
        assert!(!same_secret("s3cret", "s3creT"));
        assert!(!same_secret("s3cret", "s3cre"));
    }

    #[test]
    fn templates_compile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let store = rt
            .block_on(Store::open(&dir.path().join("t.db")))
            .expect("store");
        let s = HttpState::new(
            store,
            None,
            None,
            Arc::new(AtomicBool::new(true)),
            Arc::new(AtomicBool::new(true)),
            TaskTracker::new(),
        );
        for name in ["layout.html", "index.html", "call.html"] {
            assert!(s.templates.get_template(name).is_ok(), "{name}");
        }
    }
}
