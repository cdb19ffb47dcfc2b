//! A local OpenAI Realtime simulator (`frontdesk sim`).
//!
//! It speaks the Realtime WebSocket protocol — GA and beta dialects — well enough for frontdesk
//! (and its end-to-end tests) to run whole calls without a model: session configuration,
//! server VAD on appended G.711 audio, responses streamed faster than real time, barge-in,
//! cancellation, truncation, function calls and the protocol's error events; and GPT-Live
//! (`/v1/live/sessions`: strict `session.start`, a continuous real-time output stream, delegated
//! function calls, see [`LiveSimSession`]). What it says comes
//! from a [`Scenario`] file; its "voice" is a deterministic speech-like signal. User
//! documentation: `docs/simulator.md`.
//!
//! Layout (sans-IO core inside a thin tokio shell):
//!
//! | module | owns |
//! |---|---|
//! | `session` | [`SimSession`], the per-connection Realtime state machine (no I/O, virtual time) |
//! | `live` | [`LiveSimSession`], the per-connection GPT-Live state machine (no I/O) |
//! | `config` | session config per dialect: defaults, `session.update` validation and merge |
//! | `vad` | the energy-based voice-activity detector |
//! | `voice` | speech-like audio synthesised from reply text |
//! | `audio` | formats (µ-law, A-law, PCM16), clips, WAV parsing |
//! | `scenario` | scenario files: parse, compile, templates |
//! | `server` | [`serve`]: accept loop, handshake, one task per WebSocket, recording |

mod audio;
mod config;
mod live;
mod scenario;
mod server;
mod session;
mod vad;
mod voice;

use std::path::PathBuf;

pub use config::Dialect;
pub use live::{LiveParams, LiveSimSession, BARGE_IN_STOP_MS, OUTPUT_CHUNK_MS};
pub use scenario::{Fault, FaultAction, FaultWhen, Scenario, SessionRule};
pub use server::serve;
#[cfg(test)]
pub(crate) use server::Core;
pub use session::{Close, SessionParams, SimSession, ToolOutput};

/// Errors of the simulator's setup (the protocol itself never fails: bad client input becomes
/// an `error` event).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A scenario file could not be read.
    #[error("failed to read scenario {}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// A scenario file is invalid; every problem found is listed.
    #[error("invalid scenario {}:\n  {}", path.display(), problems.join("\n  "))]
    Scenario {
        /// The file.
        path: PathBuf,
        /// One message per problem (TOML errors carry line and column).
        problems: Vec<String>,
    },
}

/// How [`serve`] runs.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// What to say; `None` uses the built-in scenario (default greeting, generic replies).
    pub scenario: Option<Scenario>,
    /// Append every client event received, verbatim, one JSON object per line (flushed per
    /// line; line breaks inside a frame become spaces).
    pub record: Option<PathBuf>,
    /// Append every server event sent, one per line (for conformance tests).
    pub record_server: Option<PathBuf>,
    /// Reply to each caller turn with the caller's own committed audio (load tests).
    pub echo: bool,
}
