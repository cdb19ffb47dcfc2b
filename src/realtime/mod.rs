//! OpenAI Realtime and GPT-Live: the wire protocols (sans-IO), the WebSocket client and the local
//! simulator.

pub mod client;
pub mod live;
pub mod protocol;
pub mod sim;

#[cfg(test)]
pub(crate) mod sdk_validator;
