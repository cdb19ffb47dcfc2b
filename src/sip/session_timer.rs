//! RFC 4028 session timers, sans-IO: header parsing, negotiation and the refresh/expiry clock.
//!
//! ```text
//! INVITE Session-Expires: N[;refresher=uac|uas], Min-SE: M, Supported: timer
//!   N < our minimum            ──► 422 Session Interval Too Small, Min-SE: max(minimum, M)
//!   no Session-Expires         ──► no timer
//!   otherwise                  ──► 200 with Session-Expires: N;refresher=…  (+ Require: timer when
//!                                   the caller supports timer)
//! refresher = uas (us)   ──► refresh (UPDATE) at N/2; no successful refresh by N ──► BYE
//! refresher = uac        ──► a re-INVITE/UPDATE must arrive before N − min(32, N/3) ──► else BYE
//! ```

use std::time::{Duration, Instant};

/// Our default minimum session interval (RFC 4028 §4: at least 90 s).
pub const DEFAULT_MIN_SE: u32 = 90;

/// Who refreshes the session (RFC 4028 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    /// The caller (UAC of the initial INVITE).
    Uac,
    /// frontdesk (UAS).
    Uas,
}

impl Refresher {
    /// The parameter value, `uac` or `uas`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// The session-timer headers of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerRequest {
    /// `Session-Expires` (or compact `x`): delta-seconds and the refresher parameter.
    pub session_expires: Option<(u32, Option<Refresher>)>,
    /// `Min-SE` delta-seconds.
    pub min_se: Option<u32>,
    /// `Supported: timer` (or compact `k`).
    pub supported_timer: bool,
}

impl TimerRequest {
    /// Reads the session-timer headers from `(name, value)` pairs (names case-insensitive).
    pub fn parse<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> TimerRequest {
        let mut out = TimerRequest::default();
        for (name, value) in headers {
            let name = name.trim();
            if name.eq_ignore_ascii_case("Session-Expires") || name.eq_ignore_ascii_case("x") {
                let mut parts = value.split(';');
                let Some(secs) = parts.next().and_then(|s| s.trim().parse::<u32>().ok()) else {
                    continue;
                };
                let refresher = parts.find_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    if !k.trim().eq_ignore_ascii_case("refresher") {
                        return None;
                    }
                    match v.trim().to_ascii_lowercase().as_str() {
                        "uac" => Some(Refresher::Uac),
                        "uas" => Some(Refresher::Uas),
                        _ => None,
                    }
                });
                out.session_expires = Some((secs, refresher));
            } else if name.eq_ignore_ascii_case("Min-SE") {
                out.min_se = value.split(';').next().and_then(|s| s.trim().parse().ok());
            } else if (name.eq_ignore_ascii_case("Supported") || name.eq_ignore_ascii_case("k"))
                && value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("timer"))
            {
                out.supported_timer = true;
            }
        }
        out
    }
}

/// The outcome of negotiating a request's session timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiation {
    /// Answer 422 Session Interval Too Small with this `Min-SE`.
    TooSmall {
        /// The `Min-SE` value to send.
        min_se: u32,
    },
    /// The request asks for no session timer.
    NoTimer,
    /// Run a timer with this interval and refresher.
    Timer {
        /// Session interval in seconds.
        interval: u32,
        /// Who refreshes.
        refresher: Refresher,
        /// Whether the 2xx carries `Require: timer` (the caller supports timer).
        require: bool,
    },
}

/// Negotiates a request's timer against our minimum `min_se` (RFC 4028 §9).
pub fn negotiate(req: &TimerRequest, min_se: u32) -> Negotiation {
    let Some((secs, refresher)) = req.session_expires else {
        return Negotiation::NoTimer;
    };
    if secs < min_se {
        return Negotiation::TooSmall {
            min_se: min_se.max(req.min_se.unwrap_or(0)),
        };
    }
    // Without the caller's choice: the caller refreshes when it supports timers, else we do.
    let refresher = refresher.unwrap_or(if req.supported_timer {
        Refresher::Uac
    } else {
        Refresher::Uas
    });
    // A caller without timer support cannot be told it refreshes.
    let refresher = if req.supported_timer {
        refresher
    } else {
        Refresher::Uas
    };
    Negotiation::Timer {
        interval: secs,
        refresher,
        require: req.supported_timer,
    }
}

/// What the timer wants done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerAction {
    /// We are the refresher: send a refresh (UPDATE or re-INVITE) now.
    Refresh,
    /// No refresh in time: end the call with BYE (`session-expired`).
    Expired,
}

/// The clock of one session timer.
#[derive(Debug, Clone)]
pub struct SessionTimer {
    interval: Duration,
    refresher: Refresher,
    require: bool,
    last_refresh: Instant,
    refresh_requested: bool,
}

impl SessionTimer {
    /// A timer refreshed at `now`.
    pub fn new(now: Instant, interval_secs: u32, refresher: Refresher, require: bool) -> Self {
        SessionTimer {
            interval: Duration::from_secs(u64::from(interval_secs)),
            refresher,
            require,
            last_refresh: now,
            refresh_requested: false,
        }
    }

    /// Who refreshes.
    pub fn refresher(&self) -> Refresher {
        self.refresher
    }

    /// The session interval in seconds.
    pub fn interval_secs(&self) -> u64 {
        self.interval.as_secs()
    }

    /// A refresh happened at `now` (a re-INVITE/UPDATE we answered 2xx, or our refresh got 2xx),
    /// possibly with new parameters.
    pub fn refreshed(
        &mut self,
        now: Instant,
        interval_secs: Option<u32>,
        refresher: Option<Refresher>,
    ) {
        if let Some(secs) = interval_secs {
            self.interval = Duration::from_secs(u64::from(secs));
        }
        if let Some(r) = refresher {
            self.refresher = r;
        }
        self.last_refresh = now;
        self.refresh_requested = false;
    }

    /// `Session-Expires: N;refresher=X` (and `Require: timer` when negotiated) for a 2xx.
    pub fn response_headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![(
            "Session-Expires",
            format!(
                "{};refresher={}",
                self.interval.as_secs(),
                self.refresher.as_str()
            ),
        )];
        if self.require {
            h.push(("Require", "timer".to_owned()));
        }
        h
    }

    /// The headers of our own refresh request.
    pub fn refresh_headers(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "Session-Expires",
                format!("{};refresher=uas", self.interval.as_secs()),
            ),
            ("Supported", "timer".to_owned()),
        ]
    }

    fn refresh_due(&self) -> Instant {
        self.last_refresh + self.interval / 2
    }

    fn expiry(&self) -> Instant {
        match self.refresher {
            // RFC 4028 §10: BYE slightly before expiry, min(32 s, interval/3) early.
            Refresher::Uac => {
                self.last_refresh + self.interval - (self.interval / 3).min(Duration::from_secs(32))
            }
            Refresher::Uas => self.last_refresh + self.interval,
        }
    }

    /// The next instant [`SessionTimer::poll`] has something to do.
    pub fn poll_timeout(&self) -> Instant {
        if self.refresher == Refresher::Uas && !self.refresh_requested {
            self.refresh_due()
        } else {
            self.expiry()
        }
    }

    /// What is due at `now`, once per action.
    pub fn poll(&mut self, now: Instant) -> Option<TimerAction> {
        if now >= self.expiry() {
            return Some(TimerAction::Expired);
        }
        if self.refresher == Refresher::Uas && !self.refresh_requested && now >= self.refresh_due()
        {
            self.refresh_requested = true;
            return Some(TimerAction::Refresh);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_and_compact_forms() {
        let r = TimerRequest::parse([
            ("Session-Expires", "1800;refresher=uac"),
            ("Min-SE", "90"),
            ("Supported", "100rel, timer"),
        ]);
        assert_eq!(r.session_expires, Some((1800, Some(Refresher::Uac))));
        assert_eq!(r.min_se, Some(90));
        assert!(r.supported_timer);
        let r = TimerRequest::parse([("x", "120"), ("k", "timer")]);
        assert_eq!(r.session_expires, Some((120, None)));
        assert!(r.supported_timer);
        assert_eq!(
            TimerRequest::parse([("Supported", "replaces")]),
            TimerRequest::default()
        );
    }

    #[test]
    fn too_small_gets_422_with_the_larger_min_se() {
        let r = TimerRequest::parse([("Session-Expires", "30"), ("Min-SE", "20")]);
        assert_eq!(negotiate(&r, 90), Negotiation::TooSmall { min_se: 90 });
        let r = TimerRequest::parse([("Session-Expires", "30"), ("Min-SE", "120")]);
        assert_eq!(negotiate(&r, 90), Negotiation::TooSmall { min_se: 120 });
        assert_eq!(
            negotiate(&TimerRequest::default(), 90),
            Negotiation::NoTimer
        );
    }

    #[test]
    fn refresher_choice() {
        let r = TimerRequest::parse([
            ("Session-Expires", "90;refresher=uac"),
            ("Supported", "timer"),
        ]);
        assert_eq!(
            negotiate(&r, 90),
            Negotiation::Timer {
                interval: 90,
                refresher: Refresher::Uac,
                require: true
            }
        );
        // No timer support: we refresh, whatever the caller wrote.
        let r = TimerRequest::parse([("Session-Expires", "600;refresher=uac")]);
        assert_eq!(
            negotiate(&r, 90),
            Negotiation::Timer {
                interval: 600,
                refresher: Refresher::Uas,
                require: false
            }
        );
        let r = TimerRequest::parse([("Session-Expires", "600"), ("Supported", "timer")]);
        assert!(matches!(
            negotiate(&r, 90),
            Negotiation::Timer {
                refresher: Refresher::Uac,
                ..
            }
        ));
    }

    #[test]
    fn uas_refreshes_at_half_and_expires_without_success() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(t0, 90, Refresher::Uas, true);
        assert_eq!(t.poll_timeout(), t0 + Duration::from_secs(45));
        assert_eq!(t.poll(t0 + Duration::from_secs(44)), None);
        assert_eq!(
            t.poll(t0 + Duration::from_secs(45)),
            Some(TimerAction::Refresh)
        );
        assert_eq!(t.poll(t0 + Duration::from_secs(46)), None, "once");
        assert_eq!(t.poll_timeout(), t0 + Duration::from_secs(90));
        t.refreshed(t0 + Duration::from_secs(46), None, None);
        assert_eq!(t.poll_timeout(), t0 + Duration::from_secs(91));
        assert_eq!(
            t.poll(t0 + Duration::from_secs(91)),
            Some(TimerAction::Refresh)
        );
        assert_eq!(
            t.poll(t0 + Duration::from_secs(136)),
            Some(TimerAction::Expired)
        );
        assert_eq!(
            t.response_headers(),
            vec![
                ("Session-Expires", "90;refresher=uas".to_owned()),
                ("Require", "timer".to_owned())
            ]
        );
    }

    #[test]
    fn uac_refresher_expires_early_unless_refreshed() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(t0, 90, Refresher::Uac, false);
        // 90 − min(32, 30) = 60 s.
        assert_eq!(t.poll_timeout(), t0 + Duration::from_secs(60));
        assert_eq!(t.poll(t0 + Duration::from_secs(59)), None);
        t.refreshed(t0 + Duration::from_secs(50), Some(120), None);
        // 120 − 32 = 88 s after the refresh.
        assert_eq!(t.poll_timeout(), t0 + Duration::from_secs(138));
        assert_eq!(t.poll(t0 + Duration::from_secs(137)), None);
        assert_eq!(
            t.poll(t0 + Duration::from_secs(138)),
            Some(TimerAction::Expired)
        );
        assert_eq!(
            t.response_headers(),
            vec![("Session-Expires", "120;refresher=uac".to_owned())]
        );
    }
}
