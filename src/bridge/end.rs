//! Why a call ended: [`EndReason`] `{ initiator, cause }`, the one mapping from SIP call events
//! ([`EndReason::from_call_event`]), and the stored text (`calls.end_reason`,
//! `calls.end_initiator`, the `frontdesk_calls_total{end_reason}` label) derived from it.
//!
//! The texts are the documented values (README "Call records"); control flow never compares
//! them: it matches on [`Cause`].

use std::fmt;

use crate::sip::CallEvent;

/// Who ended the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// frontdesk decided (hang-up, rejection, transfer, time limits, model failure).
    Local,
    /// The caller (BYE, CANCEL) or the caller's side went away.
    Remote,
    /// The SIP stack ended the dialog itself (no ACK within 64·T1, our BYE's dialog end, a dialog
    /// error). Stored as `local`: the stack is ours.
    Library,
}

impl Initiator {
    /// The stored text: `local` or `remote` (`calls.end_initiator`).
    pub fn as_str(self) -> &'static str {
        match self {
            Initiator::Local | Initiator::Library => "local",
            Initiator::Remote => "remote",
        }
    }
}

/// What ended the call. [`Cause::as_str`] is the stored `calls.end_reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The caller sent BYE (`remote-bye`).
    RemoteBye,
    /// The caller cancelled before the answer (`cancelled`).
    Cancelled,
    /// The dialog's event stream ended without an event (`dialog-gone`).
    DialogGone,
    /// No ACK for our 2xx within 64·T1 (`ack-timeout`, RFC 3261 §13.3.1.4).
    AckTimeout,
    /// The dialog ended after our own BYE (`local-bye`).
    LocalBye,
    /// The dialog ended with our rejection (`rejected`).
    Rejected,
    /// The dialog failed otherwise (`dialog-error`).
    DialogError,
    /// The RFC 4028 session timer ran out (`session-expired`).
    SessionExpired,
    /// frontdesk is shutting down (`shutdown`).
    Shutdown,
    /// No caller RTP for the configured time (`rtp-timeout`).
    RtpTimeout,
    /// The profile's maximum call duration (`max-duration`).
    MaxDuration,
    /// An announcement or recording was played to its end (`message-played`).
    MessagePlayed,
    /// The caller's message (`take_message`) reached its maximum length (`message-taken`).
    MessageTaken,
    /// The caller stayed silent after the agent checked in (`idle`).
    Idle,
    /// The caller was transferred (`transferred`).
    Transferred,
    /// A key-press transfer was refused or could not be sent (`transfer-failed`).
    TransferFailed,
    /// The caller's key hung up (`dtmf-hangup`).
    DtmfHangup,
    /// The model's `end_call`, after its goodbye (`end_call: <reason>`).
    EndCall(String),
    /// The model session failed (`realtime-failed`).
    RealtimeFailed,
    /// The server closed the model session (`realtime-closed`).
    RealtimeClosed,
    /// No model session could be opened (`realtime-unavailable`).
    RealtimeUnavailable,
    /// The model session did not open in time (`realtime-timeout`).
    RealtimeTimeout,
    /// The model session ended during the call and no new one could be opened within
    /// `[realtime] reconnect_window_secs` (`model-unavailable`).
    ModelUnavailable,
    /// The 200 OK could not be sent (`gone-before-answer`).
    GoneBeforeAnswer,
    /// The ACK's SDP answer was unacceptable (`bad-sdp-answer`).
    BadSdpAnswer,
    /// The ACK carried no SDP answer to our offer (`no-sdp-answer`).
    NoSdpAnswer,
    /// No dialplan route (`no-route`).
    NoRoute,
    /// The dialplan rejects the call (`dialplan-reject`).
    DialplanReject,
    /// The dialplan redirects the call with 302 (`redirected`).
    Redirected,
    /// No RTP port was free (`no-rtp-port`).
    NoRtpPort,
    /// The SDP offer was refused with this status (`sdp-488`, `sdp-400`).
    Sdp(u16),
    /// The dialog could not be created (`bad-invite`).
    BadInvite,
    /// A defect of frontdesk (`internal-error`).
    InternalError,
}

impl Cause {
    /// The stored text (`calls.end_reason`).
    pub fn as_str(&self) -> std::borrow::Cow<'static, str> {
        use std::borrow::Cow::{Borrowed, Owned};
        Borrowed(match self {
            Cause::RemoteBye => "remote-bye",
            Cause::Cancelled => "cancelled",
            Cause::DialogGone => "dialog-gone",
            Cause::AckTimeout => "ack-timeout",
            Cause::LocalBye => "local-bye",
            Cause::Rejected => "rejected",
            Cause::DialogError => "dialog-error",
            Cause::SessionExpired => "session-expired",
            Cause::Shutdown => "shutdown",
            Cause::RtpTimeout => "rtp-timeout",
            Cause::MaxDuration => "max-duration",
            Cause::MessagePlayed => "message-played",
            Cause::MessageTaken => "message-taken",
            Cause::Idle => "idle",
            Cause::Transferred => "transferred",
            Cause::TransferFailed => "transfer-failed",
            Cause::DtmfHangup => "dtmf-hangup",
            Cause::EndCall(reason) => return Owned(format!("end_call: {reason}")),
            Cause::RealtimeFailed => "realtime-failed",
            Cause::RealtimeClosed => "realtime-closed",
            Cause::RealtimeUnavailable => "realtime-unavailable",
            Cause::RealtimeTimeout => "realtime-timeout",
            Cause::ModelUnavailable => "model-unavailable",
            Cause::GoneBeforeAnswer => "gone-before-answer",
            Cause::BadSdpAnswer => "bad-sdp-answer",
            Cause::NoSdpAnswer => "no-sdp-answer",
            Cause::NoRoute => "no-route",
            Cause::DialplanReject => "dialplan-reject",
            Cause::Redirected => "redirected",
            Cause::NoRtpPort => "no-rtp-port",
            Cause::Sdp(status) => return Owned(format!("sdp-{status}")),
            Cause::BadInvite => "bad-invite",
            Cause::InternalError => "internal-error",
        })
    }
}

/// Why a call ended: who, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndReason {
    /// Who ended it.
    pub initiator: Initiator,
    /// What ended it.
    pub cause: Cause,
}

impl EndReason {
    /// Ended by frontdesk.
    pub fn local(cause: Cause) -> EndReason {
        EndReason {
            initiator: Initiator::Local,
            cause,
        }
    }

    /// Ended by the caller's side.
    pub fn remote(cause: Cause) -> EndReason {
        EndReason {
            initiator: Initiator::Remote,
            cause,
        }
    }

    /// The end a SIP call event means, or `None` for events that do not end the call. This is
    /// the one mapping from [`CallEvent`] to an end reason (before and after the answer).
    pub fn from_call_event(event: &CallEvent) -> Option<EndReason> {
        Some(match event {
            CallEvent::Bye => EndReason::remote(Cause::RemoteBye),
            CallEvent::Cancelled => EndReason::remote(Cause::Cancelled),
            CallEvent::Terminated { reason } => EndReason {
                initiator: Initiator::Library,
                cause: match *reason {
                    "ack-timeout" => Cause::AckTimeout,
                    "local-bye" => Cause::LocalBye,
                    "rejected" => Cause::Rejected,
                    _ => Cause::DialogError,
                },
            },
            CallEvent::SessionExpired => EndReason::local(Cause::SessionExpired),
            _ => return None,
        })
    }

    /// The end when the dialog's event stream closed without an event.
    pub fn dialog_gone() -> EndReason {
        EndReason::remote(Cause::DialogGone)
    }

    /// Whether frontdesk must send BYE to end the dialog: only when frontdesk decided and the
    /// dialog still exists.
    pub fn sends_bye(&self) -> bool {
        self.initiator == Initiator::Local
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.cause.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialog_ends_by_the_sip_stack_are_not_recorded_as_the_callers() {
        for (reason, text) in [
            ("ack-timeout", "ack-timeout"),
            ("local-bye", "local-bye"),
            ("rejected", "rejected"),
            ("something-new", "dialog-error"),
        ] {
            let end = EndReason::from_call_event(&CallEvent::Terminated { reason })
                .expect("terminated ends the call");
            assert_eq!(end.initiator.as_str(), "local", "{reason}");
            assert_eq!(end.to_string(), text);
            assert!(!end.sends_bye(), "the dialog is already gone: {reason}");
        }
        let bye = EndReason::from_call_event(&CallEvent::Bye).expect("bye ends the call");
        assert_eq!(
            (bye.initiator.as_str(), bye.to_string().as_str()),
            ("remote", "remote-bye")
        );
        assert!(EndReason::from_call_event(&CallEvent::Ack { answer: None }).is_none());
        assert_eq!(
            EndReason::local(Cause::EndCall("caller said goodbye".into())).to_string(),
            "end_call: caller said goodbye"
        );
        assert_eq!(EndReason::local(Cause::Sdp(488)).to_string(), "sdp-488");
    }
}
