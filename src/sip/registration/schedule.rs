//! When to send REGISTER: the refresh and retry schedule of one registration (RFC 3261 §10.2).
//!
//! Sans-IO: no sockets, no clock. The shell feeds the outcome of each REGISTER with
//! [`Schedule::handle_outcome`] and wakes it at [`Schedule::poll_timeout`] with
//! [`Schedule::handle_timeout`]; after any `handle_*` call it drains [`Schedule::poll_output`]
//! until it returns `None` (the drain rule), sends what it is told and logs the events.
//!
//! ```text
//!            start / due                   2xx (granted > 0)
//! ExpectTimeout ────────► ExpectResponse ───────────────────► ExpectTimeout (refresh at 80 %)
//!      ▲                     │  │ 423 Min-Expires: ask again at once with the larger expiry
//!      │  backoff 1,2,4…300 s│  │
//!      └─────────────────────┘  │ rejected / no answer
//!                               ▼
//! shutdown ─► ExpectUnregisterResponse (only when bound) ─► Stopped
//! ```
//!
//! Invariants: at most one REGISTER is outstanding; a retry after a failure never comes sooner
//! than the backoff (nor than a registrar's `Retry-After`); the binding is reported expired once
//! when the registrar's granted time passes without a successful refresh.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The binding is refreshed after `REFRESH_NUM / REFRESH_DEN` (80 %) of the granted expiry.
const REFRESH_NUM: u32 = 4;
/// See [`REFRESH_NUM`].
const REFRESH_DEN: u32 = 5;
/// Shortest refresh interval, whatever the registrar grants.
const MIN_REFRESH: Duration = Duration::from_secs(1);
/// Longest `Retry-After` honoured; larger values are clamped.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Retry timing after failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Wait after the first failure; doubles with each further failure.
    pub initial: Duration,
    /// Upper bound of the wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// Wait before retrying after `failures` consecutive failures (1 = the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.initial
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// What became of one REGISTER (after any digest challenge was answered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: the registrar keeps our binding for `granted`.
    Registered {
        /// The expiry the registrar granted for our Contact.
        granted: Duration,
    },
    /// 423 Interval Too Brief with the registrar's `Min-Expires`.
    IntervalTooBrief {
        /// The shortest expiry the registrar accepts.
        min_expires: Duration,
    },
    /// Any other final response (401/407 after our credentials, 403, 404, 5xx, ...).
    Rejected {
        /// The status code.
        code: u16,
        /// The registrar's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// No final response: transport error or no answer within Timer F.
    NoResponse,
}

/// Something the shell should log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Bound (first time, or again after a failure or expiry).
    Registered {
        /// Granted expiry.
        expires: Duration,
        /// When the next refresh goes out.
        refresh_in: Duration,
    },
    /// A refresh of a live binding succeeded.
    Refreshed {
        /// Granted expiry.
        expires: Duration,
        /// When the next refresh goes out.
        refresh_in: Duration,
    },
    /// The registrar refused the expiry; the next REGISTER asks for `expires`.
    ExpiryRaised {
        /// The new requested expiry.
        expires: Duration,
    },
    /// The registrar answered with a failure.
    Rejected {
        /// The status code.
        code: u16,
        /// When the next attempt goes out.
        retry_in: Duration,
        /// Consecutive failures so far.
        failures: u32,
    },
    /// The registrar did not answer.
    NoResponse {
        /// When the next attempt goes out.
        retry_in: Duration,
        /// Consecutive failures so far.
        failures: u32,
    },
    /// The binding's granted time ran out before a refresh succeeded.
    Expired,
    /// The un-REGISTER (Expires: 0) was answered 2xx.
    Unregistered,
    /// The un-REGISTER failed; the registrar drops the binding when it expires.
    UnregisterFailed {
        /// The status code, `None` when there was no answer.
        code: Option<u16>,
    },
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send a REGISTER asking for this expiry (`Duration::ZERO` = remove our binding).
    Register {
        /// Value of the `Expires` header.
        expires: Duration,
    },
    /// Log this.
    Event(Event),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting until `next_attempt`.
    ExpectTimeout,
    /// A REGISTER is outstanding.
    ExpectResponse,
    /// The un-REGISTER is outstanding.
    ExpectUnregisterResponse,
    /// Done; nothing more will be sent.
    Stopped,
}

/// The schedule of one registration.
#[derive(Debug)]
pub struct Schedule {
    backoff: Backoff,
    requested: Duration,
    state: State,
    next_attempt: Option<Instant>,
    bound_until: Option<Instant>,
    failures: u32,
    out: VecDeque<Output>,
}

impl Schedule {
    /// A schedule asking for `requested` expiry; the first REGISTER is due at `now`.
    pub fn new(now: Instant, requested: Duration, backoff: Backoff) -> Schedule {
        Schedule {
            backoff,
            requested: requested.max(Duration::from_secs(1)),
            state: State::ExpectTimeout,
            next_attempt: Some(now),
            bound_until: None,
            failures: 0,
            out: VecDeque::new(),
        }
    }

    /// The expiry the next REGISTER asks for.
    pub fn requested(&self) -> Duration {
        self.requested
    }

    /// Whether the registrar currently holds our binding (as far as we know).
    pub fn is_bound(&self, now: Instant) -> bool {
        self.bound_until.is_some_and(|t| t > now)
    }

    /// When [`Schedule::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let attempt = match self.state {
            State::ExpectTimeout => self.next_attempt,
            _ => None,
        };
        let expiry = match self.state {
            State::Stopped | State::ExpectUnregisterResponse => None,
            _ => self.bound_until,
        };
        match (attempt, expiry) {
            (Some(a), Some(e)) => Some(a.min(e)),
            (a, e) => a.or(e),
        }
    }

    /// Advances time: reports an expired binding, starts a due REGISTER. Early or repeated calls
    /// are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Stopped || self.state == State::ExpectUnregisterResponse {
            return;
        }
        if self.bound_until.is_some_and(|t| t <= now) {
            self.bound_until = None;
            self.out.push_back(Output::Event(Event::Expired));
        }
        if self.state == State::ExpectTimeout && self.next_attempt.is_some_and(|t| t <= now) {
            self.next_attempt = None;
            self.state = State::ExpectResponse;
            self.out.push_back(Output::Register {
                expires: self.requested,
            });
        }
    }

    /// Feeds the outcome of the outstanding REGISTER. Ignored when none is outstanding.
    pub fn handle_outcome(&mut self, now: Instant, outcome: Outcome) {
        match self.state {
            State::ExpectResponse => self.on_register_outcome(now, outcome),
            State::ExpectUnregisterResponse => {
                self.state = State::Stopped;
                self.bound_until = None;
                let event = match outcome {
                    Outcome::Registered { .. } => Event::Unregistered,
                    Outcome::IntervalTooBrief { .. } => Event::UnregisterFailed { code: Some(423) },
                    Outcome::Rejected { code, .. } => Event::UnregisterFailed { code: Some(code) },
                    Outcome::NoResponse => Event::UnregisterFailed { code: None },
                };
                self.out.push_back(Output::Event(event));
            }
            State::ExpectTimeout | State::Stopped => {}
        }
    }

    fn on_register_outcome(&mut self, now: Instant, outcome: Outcome) {
        match outcome {
            Outcome::Registered { granted } if granted >= Duration::from_secs(1) => {
                let was_bound = self.is_bound(now);
                self.failures = 0;
                let refresh_in = refresh_interval(granted);
                self.bound_until = Some(now + granted);
                self.next_attempt = Some(now + refresh_in);
                self.state = State::ExpectTimeout;
                let event = if was_bound {
                    Event::Refreshed {
                        expires: granted,
                        refresh_in,
                    }
                } else {
                    Event::Registered {
                        expires: granted,
                        refresh_in,
                    }
                };
                self.out.push_back(Output::Event(event));
            }
            // A 2xx granting no time holds no binding: treat like a refusal.
            Outcome::Registered { .. } => self.fail(now, Some(200), None),
            Outcome::IntervalTooBrief { min_expires } if min_expires > self.requested => {
                self.requested = min_expires;
                self.next_attempt = Some(now);
                self.state = State::ExpectTimeout;
                self.out.push_back(Output::Event(Event::ExpiryRaised {
                    expires: min_expires,
                }));
            }
            Outcome::IntervalTooBrief { .. } => self.fail(now, Some(423), None),
            Outcome::Rejected { code, retry_after } => self.fail(now, Some(code), retry_after),
            Outcome::NoResponse => self.fail(now, None, None),
        }
    }

    fn fail(&mut self, now: Instant, code: Option<u16>, retry_after: Option<Duration>) {
        self.failures = self.failures.saturating_add(1);
        let mut retry_in = self.backoff.delay(self.failures);
        if let Some(ra) = retry_after {
            retry_in = retry_in.max(ra.min(MAX_RETRY_AFTER));
        }
        self.next_attempt = Some(now + retry_in);
        self.state = State::ExpectTimeout;
        let failures = self.failures;
        let event = match code {
            Some(code) => Event::Rejected {
                code,
                retry_in,
                failures,
            },
            None => Event::NoResponse { retry_in, failures },
        };
        self.out.push_back(Output::Event(event));
    }

    /// Shutdown: asks for the un-REGISTER when a binding is (or may be) live, else stops at once.
    /// A REGISTER still outstanding is abandoned by the shell before this is called.
    pub fn handle_shutdown(&mut self, now: Instant) {
        if self.state == State::Stopped || self.state == State::ExpectUnregisterResponse {
            return;
        }
        // A REGISTER that was in flight may have created a binding we never heard of.
        let maybe_bound = self.is_bound(now) || self.state == State::ExpectResponse;
        self.next_attempt = None;
        if maybe_bound {
            self.state = State::ExpectUnregisterResponse;
            self.out.push_back(Output::Register {
                expires: Duration::ZERO,
            });
        } else {
            self.state = State::Stopped;
        }
    }

    /// Whether the schedule has finished (after shutdown).
    pub fn is_stopped(&self) -> bool {
        self.state == State::Stopped
    }

    /// The next thing to do, if any. Drain until `None` after every `handle_*` call.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }
}

/// When to refresh a binding granted for `granted`: at 80 %, but not sooner than 1 s.
pub fn refresh_interval(granted: Duration) -> Duration {
    (granted / REFRESH_DEN)
        .saturating_mul(REFRESH_NUM)
        .max(MIN_REFRESH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn drain(s: &mut Schedule) -> Vec<Output> {
        std::iter::from_fn(|| s.poll_output()).collect()
    }

    /// Drives the schedule to its next deadline and returns (time, outputs).
    fn step(s: &mut Schedule) -> (Instant, Vec<Output>) {
        let t = s.poll_timeout().expect("a deadline");
        s.handle_timeout(t);
        (t, drain(s))
    }

    fn register(expires: u64) -> Output {
        Output::Register {
            expires: secs(expires),
        }
    }

    #[test]
    fn registers_at_once_then_refreshes_at_80_percent() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, secs(3600), Backoff::default());
        assert_eq!(s.poll_timeout(), Some(t0));
        let (t, out) = step(&mut s);
        assert_eq!((t, out), (t0, vec![register(3600)]));
        assert_eq!(
            s.poll_timeout(),
            None,
            "nothing due while a REGISTER is out"
        );

        // The registrar grants less than asked: the refresh follows the grant.
        let t1 = t0 + Duration::from_millis(30);
        s.handle_outcome(t1, Outcome::Registered { granted: secs(600) });
        assert_eq!(
            drain(&mut s),
            vec![Output::Event(Event::Registered {
                expires: secs(600),
                refresh_in: secs(480)
            })]
        );
        assert!(s.is_bound(t1));
        assert_eq!(s.poll_timeout(), Some(t1 + secs(480)));

        // Early and repeated timeouts do nothing.
        s.handle_timeout(t1 + secs(100));
        s.handle_timeout(t1 + secs(100));
        assert!(drain(&mut s).is_empty());

        let (t2, out) = step(&mut s);
        assert_eq!((t2, out), (t1 + secs(480), vec![register(3600)]));
        s.handle_outcome(t2, Outcome::Registered { granted: secs(600) });
        assert_eq!(
            drain(&mut s),
            vec![Output::Event(Event::Refreshed {
                expires: secs(600),
                refresh_in: secs(480)
            })]
        );
    }

    #[test]
    fn failures_back_off_exponentially_up_to_the_cap() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, secs(3600), Backoff::default());
        let mut waits = Vec::new();
        let mut now = t0;
        for i in 0..12 {
            let (t, out) = step(&mut s);
            assert_eq!(out, vec![register(3600)]);
            if i > 0 {
                waits.push((t - now).as_secs());
            }
            now = t;
            s.handle_outcome(
                now,
                Outcome::Rejected {
                    code: 401,
                    retry_after: None,
                },
            );
            let out = drain(&mut s);
            assert!(
                matches!(out.as_slice(), [Output::Event(Event::Rejected { code: 401, failures, .. })] if *failures == i + 1),
                "{out:?}"
            );
        }
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    }

    #[test]
    fn success_resets_the_backoff_and_no_answer_counts_as_failure() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, secs(60), Backoff::default());
        step(&mut s);
        s.handle_outcome(t0, Outcome::NoResponse);
        assert_eq!(
            drain(&mut s),
            vec![Output::Event(Event::NoResponse {
                retry_in: secs(1),
                failures: 1
            })]
        );
        let (t1, _) = step(&mut s);
        s.handle_outcome(t1, Outcome::NoResponse);
        drain(&mut s);
        let (t2, _) = step(&mut s);
        assert_eq!(t2 - t1, secs(2));
        s.handle_outcome(t2, Outcome::Registered { granted: secs(60) });
        drain(&mut s);
        let (t3, _) = step(&mut s);
        assert_eq!(t3 - t2, secs(48));
        s.handle_outcome(t3, Outcome::NoResponse);
        assert_eq!(
            drain(&mut s),
            vec![Output::Event(Event::NoResponse {
                retry_in: secs(1),
                failures: 1
            })]
        );
    }

    #[test]
    fn binding_expires_when_refreshes_keep_failing() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, secs(10), Backoff::default());
        step(&mut s);
        s.handle_outcome(t0, Outcome::Registered { granted: secs(10) });
        drain(&mut s);
        let mut expired_at = None;
        let mut now = t0;
        while now < t0 + secs(30) {
            let t = s.poll_timeout().expect("deadline");
            s.handle_timeout(t);
            now = t;
            for o in drain(&mut s) {
                match o {
                    Output::Register { .. } => s.handle_outcome(
                        now,
                        Outcome::Rejected {
                            code: 503,
                            retry_after: None,
                        },
                    ),
                    Output::Event(Event::Expired) => expired_at = Some(now),
                    Output::Event(_) => {}
                }
            }
            drain(&mut s);
        }
        assert_eq!(expired_at, Some(t0 + secs(10)));
        assert!(!s.is_bound(now));
    }

    #[test]
    fn retry_after_is_honoured_and_clamped() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, secs(60), Backoff::default());
        step(&mut s);
        s.handle_outcome(
            t0,
            Outcome::Rejected {
                code: 503,
                retry_after: Some(secs(20)),
            },
        );
        drain(&mut s);
        assert_eq!(s.poll_timeout(), Some(t0 + secs(20)));
        let (t1, _) = step(&mut s);
        s.handle_outcome(
            t1,
            Outcome::Rejected {
                code: 503,
                retry_after: Some(secs(100_000)),
            },
        );
        drain(&mut s);
        assert_eq!(s.poll_timeout(), Some(t1 + secs(3600)));
    }

    #[test]
    fn interval_too_brief_raises_the_expiry_once() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, secs(30), Backoff::default());
        step(&mut s);
        s.handle_outcome(
            t0,
            Outcome::IntervalTooBrief {
                min_expires: secs(120),
            },
        );
        assert_eq!(
            drain(&mut s),
            vec![Output::Event(Event::ExpiryRaised { expires: secs(120) })]
        );
        let (t, out) = step(&mut s);
        assert_eq!((t, out), (t0, vec![register(120)]));
        // A registrar that keeps asking for what we already send is a failure, not a loop.
        s.handle_outcome(
            t0,
            Outcome::IntervalTooBrief {
                min_expires: secs(120),
            },
        );
        assert!(matches!(
            drain(&mut s).as_slice(),
            [Output::Event(Event::Rejected { code: 423, .. })]
        ));
    }

    #[test]
    fn zero_grant_is_not_a_binding() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, secs(60), Backoff::default());
        step(&mut s);
        s.handle_outcome(t0, Outcome::Registered { granted: secs(0) });
        assert!(matches!(
            drain(&mut s).as_slice(),
            [Output::Event(Event::Rejected { code: 200, .. })]
        ));
        assert!(!s.is_bound(t0));
    }

    #[test]
    fn shutdown_unregisters_only_a_live_binding() {
        let t0 = Instant::now();
        // Bound: Expires 0 goes out, then the schedule stops.
        let mut s = Schedule::new(t0, secs(60), Backoff::default());
        step(&mut s);
        s.handle_outcome(t0, Outcome::Registered { granted: secs(60) });
        drain(&mut s);
        s.handle_shutdown(t0 + secs(5));
        assert_eq!(drain(&mut s), vec![register(0)]);
        assert_eq!(s.poll_timeout(), None);
        s.handle_timeout(t0 + secs(100));
        assert!(drain(&mut s).is_empty());
        s.handle_outcome(t0 + secs(5), Outcome::Registered { granted: secs(0) });
        assert_eq!(drain(&mut s), vec![Output::Event(Event::Unregistered)]);
        assert!(s.is_stopped());

        // Never bound: nothing to remove.
        let mut s = Schedule::new(t0, secs(60), Backoff::default());
        step(&mut s);
        s.handle_outcome(t0, Outcome::NoResponse);
        drain(&mut s);
        s.handle_shutdown(t0);
        assert!(drain(&mut s).is_empty());
        assert!(s.is_stopped());

        // Shut down while a REGISTER was out: it may have bound us, so remove it.
        let mut s = Schedule::new(t0, secs(60), Backoff::default());
        step(&mut s);
        s.handle_shutdown(t0);
        assert_eq!(drain(&mut s), vec![register(0)]);
        s.handle_outcome(t0, Outcome::NoResponse);
        assert_eq!(
            drain(&mut s),
            vec![Output::Event(Event::UnregisterFailed { code: None })]
        );
    }

    #[test]
    fn refresh_interval_has_a_floor() {
        assert_eq!(refresh_interval(secs(3600)), secs(2880));
        assert_eq!(
            refresh_interval(Duration::from_millis(1500)),
            Duration::from_millis(1200)
        );
        assert_eq!(refresh_interval(Duration::from_millis(1000)), MIN_REFRESH);
        assert_eq!(refresh_interval(secs(10)), secs(8));
    }
}
