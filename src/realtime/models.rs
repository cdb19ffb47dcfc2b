//! Model names: every default model frontdesk uses, in one place.
//!
//! An agent picks its model with `model = "…"` in its dialplan profile (see README "Models");
//! these defaults apply when it does not. On Azure OpenAI the model is the **deployment name**
//! (live-protocol.md §1.2), so set `model` to your deployment there.
//!
//! | what | default | where it goes |
//! |---|---|---|
//! | Realtime GA / beta voice model | [`DEFAULT_REALTIME_MODEL`] | `?model=` in the URL, `session.model` (GA) |
//! | GPT-Live voice model | [`DEFAULT_LIVE_MODEL`] | `session.start` `session.model` (never the URL) |
//! | GPT-Live tool backend (Responses) | [`DEFAULT_LIVE_BACKEND_MODEL`] | `session.delegation.responses.model` |
//! | caller transcription (Realtime) | [`DEFAULT_TRANSCRIPTION_MODEL`] | `audio.input.transcription.model` |

use super::protocol::Dialect;

/// The Realtime GA model (`gpt-realtime`, the current GA model on `/v1/realtime`).
pub const DEFAULT_REALTIME_MODEL: &str = "gpt-realtime";

/// The GPT-Live model: `gpt-live-1.1` (GA since 2026-11; `gpt-live-1` is the other current
/// choice; live-protocol.md §7).
pub const DEFAULT_LIVE_MODEL: &str = "gpt-live-1.1";

/// The Responses model a GPT-Live session delegates tool calls to. Required by the protocol; the
/// name is the one in Azure's GPT-Live reference example (live-protocol.md §2.5). Override with
/// `[realtime] backend_model` (on Azure: a Responses deployment in the same resource).
pub const DEFAULT_LIVE_BACKEND_MODEL: &str = "gpt-5.5";

/// The caller-transcription model suggested for Realtime profiles (`transcription_model`).
pub const DEFAULT_TRANSCRIPTION_MODEL: &str = "gpt-4o-mini-transcribe";

/// The voice model for `dialect` when an agent names `profile_model`: the profile's model,
/// except that the Realtime default (a profile that names no model) becomes
/// [`DEFAULT_LIVE_MODEL`] on the live dialect.
pub fn voice_model(dialect: Dialect, profile_model: &str) -> &str {
    match dialect {
        Dialect::Live if profile_model == DEFAULT_REALTIME_MODEL => DEFAULT_LIVE_MODEL,
        _ => profile_model,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_agents_without_a_model_get_the_live_default() {
        assert_eq!(
            voice_model(Dialect::Live, DEFAULT_REALTIME_MODEL),
            DEFAULT_LIVE_MODEL
        );
        assert_eq!(
            voice_model(Dialect::Live, "my-azure-deployment"),
            "my-azure-deployment"
        );
        assert_eq!(
            voice_model(Dialect::Ga, DEFAULT_REALTIME_MODEL),
            DEFAULT_REALTIME_MODEL
        );
        assert_eq!(
            voice_model(Dialect::Beta, "gpt-realtime-mini"),
            "gpt-realtime-mini"
        );
    }
}
