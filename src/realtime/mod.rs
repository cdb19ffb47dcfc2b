//! Voice-model sessions: the protocol-neutral boundary the call's core speaks (`model`), the
//! per-dialect encoding behind it (`codec`, over the Realtime wire protocol of `protocol` and the
//! GPT-Live wire protocol of `live`, all sans-IO), the WebSocket session that carries it
//! (`session`, over `client`), and the local simulator (`sim`). No WebSocket type leaves this
//! module.

pub mod client;
pub mod codec;
pub mod failover;
pub mod live;
pub mod model;
pub mod models;
pub mod protocol;
pub mod session;
pub mod sim;

#[cfg(test)]
pub(crate) mod sdk_validator;

pub use codec::Codec;
pub use model::{Capabilities, ModelCommand, ModelError, ModelEvent};
pub use session::Session;
