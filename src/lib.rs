//! frontdesk: a SIP phone receptionist that answers calls and talks through an OpenAI Realtime
//! session (or the bundled simulator), relaying G.711 RTP without transcoding.
//!
//! Layout (see docs/DESIGN.md): sans-IO protocol cores (`sdp`, `media`, `realtime::protocol`,
//! `bridge::core`, `dialplan`) inside a thin tokio shell (`sip`, `bridge::call`, `server`,
//! `realtime::client`, `realtime::sim`, `store`).

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod bridge;
pub mod calendar;
pub mod calendar_file;
pub mod cli;
pub mod config;
pub mod dialplan;
pub mod http;
pub mod media;
pub mod observe;
pub mod pricing;
pub mod realtime;
pub mod sdp;
pub mod server;
pub mod sip;
pub mod store;
pub mod telemetry;
pub mod tools;
