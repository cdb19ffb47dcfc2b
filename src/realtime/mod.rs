//! OpenAI Realtime: the wire protocol (sans-IO), the WebSocket client and the local simulator.

pub mod client;
pub mod protocol;
pub mod sim;
