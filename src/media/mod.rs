//! The media core: G.711 RTP in and out of a call, as sans-IO state machines.
//!
//! This module owns everything between a UDP datagram and the bytes exchanged with the Realtime
//! session, except the sockets and the clock themselves:
//!
//! - [`g711`]: the two companding laws, their silence bytes and frame constants (20 ms = 160 bytes).
//! - [`rtp`]: parsing and writing RTP packets (RFC 3550 §5.1), RTCP demultiplexing (RFC 5761 §4) and
//!   extended sequence numbers / timestamps (RFC 3550 §A.1).
//! - [`pacer`]: [`pacer::PlayoutPacer`], which turns model audio (any chunk size, faster than real
//!   time) into 20 ms RTP packets on an absolute, drift-free schedule.
//! - [`jitter`]: [`jitter::JitterBuffer`], the zero-delay relay that turns caller RTP into 20 ms
//!   frames for the model as soon as they are complete, in media order, waiting only at a gap (for
//!   an adaptive reorder window) and concealing losses and a silent caller with G.711 silence.
//! - [`dtmf`]: RFC 4733 telephone-event reception (and SIP INFO `application/dtmf-relay` bodies).
//! - [`rtcp`]: RTCP receiver/sender reports (RFC 3550 §6).
//! - [`ports`]: [`ports::PortPool`], the pool of even local RTP ports.
//!
//! Invariants shared by every state machine here: no I/O, no tokio, no sockets, and no reading of the
//! clock. Every method that needs the time takes `now: Instant` from the caller (the shell); time that
//! goes backwards is ignored, and early or repeated timeouts are no-ops. Audio is never transcoded:
//! payload bytes pass through untouched, and only silence bytes of the call's own law are inserted.
//! Outputs are drained with `poll_*` until they return `None`; the next deadline is `poll_timeout()`.

pub mod dtmf;
pub mod echo;
pub mod g711;
pub mod jitter;
pub mod pacer;
pub mod ports;
pub mod rtcp;
pub mod rtp;
pub mod socket;
pub mod srtp;
