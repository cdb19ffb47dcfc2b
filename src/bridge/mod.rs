//! The bridge between a SIP call and a Realtime session: the sans-IO [`core`] and the per-call
//! tokio task in [`call`].

pub mod call;
pub mod core;
pub mod transcript;
