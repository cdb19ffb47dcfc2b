//! Failover across model endpoints (`[realtime] endpoints`): open a session on the first endpoint
//! that gives one, within one time budget.
//!
//! ```text
//! endpoints (agent's order) ─► attempt 1 (≤ remaining / endpoints left) ─┬─ ok ─► session (stays there)
//!                                                                        └─ refused (429/5xx), unreachable,
//!                                                                           timed out, closed ─► attempt 2 …
//! ```
//!
//! Each attempt gets the remaining budget divided by the endpoints still to try, so with the
//! default 5 s and two endpoints a black-holed first endpoint costs at most 2.5 s and the second
//! still has 2.5 s; an endpoint that refuses at once (HTTP 503 on the upgrade) leaves nearly the
//! whole budget to the next. Every failure is logged with the endpoint's name and why (never its
//! key). The session opened stays on its endpoint for the call; a later reconnect (rollover)
//! should try that endpoint first ([`Endpoints::starting_at`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::client::{self, RealtimeTarget};
use super::session::{self, Session};

/// The configured endpoints, in config order. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Endpoints(Arc<[RealtimeTarget]>);

impl Endpoints {
    /// The endpoints in config order (names are unique; the config loader checks).
    pub fn new(targets: Vec<RealtimeTarget>) -> Endpoints {
        Endpoints(targets.into())
    }

    /// Every endpoint, in config order.
    pub fn all(&self) -> &[RealtimeTarget] {
        &self.0
    }

    /// Their names, in config order.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|t| t.name.clone()).collect()
    }

    /// The endpoints an agent uses: those it names, in its order (unknown names are skipped;
    /// the dialplan is checked against the config at load), or all of them when it names none.
    pub fn select(&self, names: &[String]) -> Vec<RealtimeTarget> {
        if names.is_empty() {
            return self.0.to_vec();
        }
        names
            .iter()
            .filter_map(|n| self.0.iter().find(|t| &t.name == n).cloned())
            .collect()
    }

    /// `list` reordered to start at the endpoint named `name` (the one the call's session is
    /// on), the others after it in their order: where a reconnect should go.
    pub fn starting_at(list: &[RealtimeTarget], name: &str) -> Vec<RealtimeTarget> {
        let (first, rest): (Vec<_>, Vec<_>) = list.iter().cloned().partition(|t| t.name == name);
        first.into_iter().chain(rest).collect()
    }
}

/// A session and the endpoint it was opened on.
pub struct Opened {
    /// The session.
    pub session: Session,
    /// The endpoint's name (`[realtime.endpoints] name`).
    pub endpoint: String,
    /// Attempts it took (1: the first endpoint answered).
    pub attempts: usize,
}

/// Why one attempt failed.
#[derive(Debug)]
pub enum AttemptError {
    /// Not opened within the attempt's share of the budget.
    Timeout(Duration),
    /// Refused or failed (see [`session::Error`]).
    Failed(session::Error),
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptError::Timeout(d) => write!(f, "no session within {} ms", d.as_millis()),
            AttemptError::Failed(e) => match http_status(e) {
                Some(status) => write!(f, "refused with HTTP {status}"),
                None => e.fmt(f),
            },
        }
    }
}

/// No endpoint gave a session.
#[derive(Debug)]
pub struct AllFailed {
    /// Each endpoint tried, with why it failed, in order.
    pub attempts: Vec<(String, AttemptError)>,
    /// Whether the last failure was running out of time (for the call's end reason).
    pub timed_out: bool,
}

impl std::fmt::Display for AllFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.attempts.is_empty() {
            return f.write_str("no endpoint configured");
        }
        for (i, (name, e)) in self.attempts.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{name}: {e}")?;
        }
        Ok(())
    }
}

/// The HTTP status of a refused WebSocket upgrade, if that is what `e` is.
pub fn http_status(e: &session::Error) -> Option<u16> {
    match e {
        session::Error::Connect(client::Error::Handshake { source, .. }) => match &**source {
            tokio_tungstenite::tungstenite::Error::Http(resp) => Some(resp.status().as_u16()),
            _ => None,
        },
        _ => None,
    }
}

/// Opens a session for `model` on the first of `targets` that gives one, all attempts within
/// `budget` (each gets the time left divided by the endpoints left). Every failure moves on to
/// the next endpoint: a refusal (429, 5xx, or any other status), an unreachable or black-holed
/// endpoint, a session closed or refused before it was created.
///
/// # Errors
/// [`AllFailed`] with every attempt's reason when no endpoint gave a session.
pub async fn open(
    targets: &[RealtimeTarget],
    model: &str,
    budget: Duration,
) -> Result<Opened, AllFailed> {
    let deadline = Instant::now() + budget;
    let mut attempts = Vec::new();
    let mut timed_out = false;
    for (i, target) in targets.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            timed_out = true;
            break;
        }
        let share = left / u32::try_from(targets.len() - i).unwrap_or(u32::MAX);
        let result = tokio::time::timeout(share, Session::connect(target, model)).await;
        let err = match result {
            Ok(Ok(session)) => {
                if i > 0 {
                    info!(endpoint = %target.name, attempts = i + 1, "session opened on a fallback endpoint");
                }
                return Ok(Opened {
                    session,
                    endpoint: target.name.clone(),
                    attempts: i + 1,
                });
            }
            Ok(Err(e)) => AttemptError::Failed(e),
            Err(_) => AttemptError::Timeout(share),
        };
        timed_out = matches!(err, AttemptError::Timeout(_));
        let next = targets.get(i + 1).map_or("-", |t| t.name.as_str());
        warn!(endpoint = %target.name, url = %target.url, error = %err, next, "cannot open a model session on this endpoint");
        attempts.push((target.name.clone(), err));
    }
    Err(AllFailed {
        attempts,
        timed_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::protocol::Dialect;
    use crate::realtime::sim::{self, Scenario, SessionRule, SimOptions};
    use tokio_util::sync::CancellationToken;

    fn named(name: &str, url: String) -> RealtimeTarget {
        RealtimeTarget {
            name: name.to_owned(),
            ..RealtimeTarget::new(url, Dialect::Ga, None)
        }
    }

    /// A simulator applying `rule` to every session; returns its Realtime URL.
    async fn sim_with(rule: Option<SessionRule>, stop: &CancellationToken) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut scenario = Scenario::default();
        if let Some(rule) = rule {
            scenario.add_session_rule(rule);
        }
        let opts = SimOptions {
            scenario: Some(scenario),
            ..SimOptions::default()
        };
        tokio::spawn(sim::serve(listener, opts, stop.clone()));
        format!("ws://{addr}/v1/realtime")
    }

    #[tokio::test]
    async fn a_refusing_or_silent_endpoint_is_skipped_within_the_budget() {
        let stop = CancellationToken::new();
        let refusing = sim_with(Some(SessionRule::all(Some(503), Duration::ZERO)), &stop).await;
        let slow = sim_with(Some(SessionRule::all(None, Duration::from_secs(30))), &stop).await;
        let good = sim_with(None, &stop).await;
        let targets = vec![
            named("refusing", refusing),
            named("slow", slow),
            named("good", good),
        ];
        let t0 = Instant::now();
        let opened = open(&targets, "gpt-realtime", Duration::from_secs(6))
            .await
            .expect("the third endpoint opens");
        assert_eq!(opened.endpoint, "good");
        assert_eq!(opened.attempts, 3);
        // The slow endpoint got about half of the budget left, not all of it.
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());

        let Err(err) = open(&targets[..2], "gpt-realtime", Duration::from_millis(800)).await else {
            panic!("nobody answers, yet a session opened");
        };
        assert_eq!(err.attempts.len(), 2);
        assert!(err.timed_out);
        let text = err.to_string();
        assert!(
            text.starts_with("refusing: refused with HTTP 503; slow: no session within"),
            "{text}"
        );
        stop.cancel();
    }

    #[test]
    fn agents_pick_endpoints_by_name_and_reconnects_start_where_the_call_is() {
        let eps = Endpoints::new(vec![
            named("openai", "ws://a".into()),
            named("azure", "ws://b".into()),
            named("gw", "ws://c".into()),
        ]);
        let names = |v: &[RealtimeTarget]| v.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&eps.select(&[])), ["openai", "azure", "gw"]);
        assert_eq!(
            names(&eps.select(&["gw".into(), "openai".into()])),
            ["gw", "openai"]
        );
        assert_eq!(
            names(&Endpoints::starting_at(eps.all(), "azure")),
            ["azure", "openai", "gw"]
        );
    }
}
