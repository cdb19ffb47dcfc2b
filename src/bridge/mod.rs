//! The bridge between a SIP call and a model session: the sans-IO [`core`] that decides
//! everything about an answered call, the typed reasons a call ends ([`end`]), the transcript
//! ([`transcript`]), and the per-call tokio task in [`call`] (its setup in `setup`, its pump in
//! `pump`, its call record in `record`) that pumps bytes between the sockets and the core.

pub mod call;
pub mod core;
mod effects;
pub mod end;
mod pump;
mod record;
mod setup;
pub mod transcript;

#[cfg(test)]
mod pair_tests;
