//! What a call cost: the token usage the Realtime service reported for the call, summed
//! ([`CallUsage`]), priced with a per-model price table ([`PriceTable`]).
//!
//! Prices are US dollars per million tokens, by modality (text/audio) and kind (input, cached
//! input, output), as OpenAI lists them. The built-in defaults ([`PriceTable::defaults`]) are the
//! list prices of [`DEFAULT_PRICES_DATE`]; prices change, so `[pricing."MODEL"]` in the config
//! file overrides or adds models. A model is priced by the entry whose name is the longest prefix
//! of it (`gpt-realtime-2025-08-28` uses `gpt-realtime`, `gpt-realtime-mini-…` uses
//! `gpt-realtime-mini`). The estimate is what the usage events say, not an invoice: input
//! transcription (billed separately by the transcription model) is not included.
//!
//! Pure code: no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::realtime::protocol::Usage;

/// Date of the list prices in [`PriceTable::defaults`] (openai.com/api/pricing).
pub const DEFAULT_PRICES_DATE: &str = "2025-10-06";

/// Prices of one model, USD per 1 000 000 tokens (and per billed second for services that bill
/// by time). A `[pricing."MODEL"]` table of the config file has these keys; missing keys are 0.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelPrice {
    /// Text input (instructions, tool results, transcripts in the conversation).
    pub text_input: f64,
    /// Cached text input.
    pub cached_text_input: f64,
    /// Text output.
    pub text_output: f64,
    /// Audio input (the caller's speech; 1 token per 100 ms).
    pub audio_input: f64,
    /// Cached audio input.
    pub cached_audio_input: f64,
    /// Audio output (the agent's speech; 1 token per 50 ms).
    pub audio_output: f64,
    /// USD per billed second, for services that report billed seconds instead of tokens.
    pub per_second: f64,
}

/// Model name → prices, matched by longest prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    models: BTreeMap<String, ModelPrice>,
}

impl PriceTable {
    /// OpenAI's list prices of [`DEFAULT_PRICES_DATE`] for the Realtime models.
    pub fn defaults() -> PriceTable {
        let full = ModelPrice {
            text_input: 4.0,
            cached_text_input: 0.40,
            text_output: 16.0,
            audio_input: 32.0,
            cached_audio_input: 0.40,
            audio_output: 64.0,
            per_second: 0.0,
        };
        let mini = ModelPrice {
            text_input: 0.60,
            cached_text_input: 0.06,
            text_output: 2.40,
            audio_input: 10.0,
            cached_audio_input: 0.30,
            audio_output: 20.0,
            per_second: 0.0,
        };
        let preview = ModelPrice {
            text_input: 5.0,
            cached_text_input: 2.50,
            text_output: 20.0,
            audio_input: 40.0,
            cached_audio_input: 2.50,
            audio_output: 80.0,
            per_second: 0.0,
        };
        let mini_preview = ModelPrice {
            text_input: 0.60,
            cached_text_input: 0.30,
            text_output: 2.40,
            audio_input: 10.0,
            cached_audio_input: 0.30,
            audio_output: 20.0,
            per_second: 0.0,
        };
        let models = [
            ("gpt-realtime", full),
            ("gpt-realtime-mini", mini),
            ("gpt-4o-realtime-preview", preview),
            ("gpt-4o-mini-realtime-preview", mini_preview),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        PriceTable { models }
    }

    /// The defaults with `overrides` (from `[pricing]`) replacing or adding models.
    pub fn with_overrides(overrides: &BTreeMap<String, ModelPrice>) -> PriceTable {
        let mut table = PriceTable::defaults();
        for (name, price) in overrides {
            table.models.insert(name.clone(), *price);
        }
        table
    }

    /// The prices of `model`: the entry whose name is the longest prefix of it, with its name.
    pub fn lookup(&self, model: &str) -> Option<(&str, &ModelPrice)> {
        self.models
            .iter()
            .filter(|(name, _)| model.starts_with(name.as_str()))
            .max_by_key(|(name, _)| name.len())
            .map(|(name, price)| (name.as_str(), price))
    }
}

impl Default for PriceTable {
    fn default() -> Self {
        PriceTable::defaults()
    }
}

/// The usage of one call: the sum of every `response.done` usage (tokens), plus billed seconds
/// for services that bill by time.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct CallUsage {
    /// Responses that reported usage.
    pub responses: u64,
    /// Text input tokens, cached ones included.
    pub input_text_tokens: u64,
    /// Audio input tokens, cached ones included.
    pub input_audio_tokens: u64,
    /// Cached text input tokens.
    pub cached_text_tokens: u64,
    /// Cached audio input tokens.
    pub cached_audio_tokens: u64,
    /// Text output tokens.
    pub output_text_tokens: u64,
    /// Audio output tokens.
    pub output_audio_tokens: u64,
    /// Seconds billed by time (0 for token-billed sessions).
    pub billed_seconds: f64,
}

impl CallUsage {
    /// Adds one response's usage. When the server gives no text/audio split of the cached
    /// tokens (beta), they are counted as text first (the instructions are cached first), the
    /// rest as audio.
    pub fn add(&mut self, u: &Usage) {
        self.responses += 1;
        // A server that gives no details at all: count everything as text.
        let (input_text, input_audio) = if u.input_text_tokens + u.input_audio_tokens == 0 {
            (u.input_tokens, 0)
        } else {
            (u.input_text_tokens, u.input_audio_tokens)
        };
        let (output_text, output_audio) = if u.output_text_tokens + u.output_audio_tokens == 0 {
            (u.output_tokens, 0)
        } else {
            (u.output_text_tokens, u.output_audio_tokens)
        };
        let (cached_text, cached_audio) = if u.cached_text_tokens + u.cached_audio_tokens > 0 {
            (u.cached_text_tokens, u.cached_audio_tokens)
        } else {
            let text = u.cached_tokens.min(input_text);
            (text, (u.cached_tokens - text).min(input_audio))
        };
        self.input_text_tokens += input_text;
        self.input_audio_tokens += input_audio;
        self.cached_text_tokens += cached_text.min(input_text);
        self.cached_audio_tokens += cached_audio.min(input_audio);
        self.output_text_tokens += output_text;
        self.output_audio_tokens += output_audio;
    }

    /// Input tokens (text + audio).
    pub fn input_tokens(&self) -> u64 {
        self.input_text_tokens + self.input_audio_tokens
    }

    /// Output tokens (text + audio).
    pub fn output_tokens(&self) -> u64 {
        self.output_text_tokens + self.output_audio_tokens
    }

    /// Estimated cost in USD at `price`: uncached input at the input rate, cached input at the
    /// cached rate, output at the output rate, each per modality, plus billed seconds.
    pub fn cost_usd(&self, price: &ModelPrice) -> f64 {
        let m = |tokens: u64, per_million: f64| tokens as f64 * per_million / 1_000_000.0;
        m(
            self.input_text_tokens - self.cached_text_tokens.min(self.input_text_tokens),
            price.text_input,
        ) + m(self.cached_text_tokens, price.cached_text_input)
            + m(
                self.input_audio_tokens - self.cached_audio_tokens.min(self.input_audio_tokens),
                price.audio_input,
            )
            + m(self.cached_audio_tokens, price.cached_audio_input)
            + m(self.output_text_tokens, price.text_output)
            + m(self.output_audio_tokens, price.audio_output)
            + self.billed_seconds * price.per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_picks_the_model() {
        let t = PriceTable::defaults();
        assert_eq!(t.lookup("gpt-realtime").map(|p| p.0), Some("gpt-realtime"));
        assert_eq!(
            t.lookup("gpt-realtime-2025-08-28").map(|p| p.0),
            Some("gpt-realtime")
        );
        assert_eq!(
            t.lookup("gpt-realtime-mini-2025-10-06").map(|p| p.0),
            Some("gpt-realtime-mini")
        );
        assert_eq!(t.lookup("whisper-1"), None);
    }

    #[test]
    fn overrides_replace_and_add_models() {
        let mut o = BTreeMap::new();
        o.insert(
            "gpt-realtime".to_owned(),
            ModelPrice {
                audio_output: 1.0,
                ..ModelPrice::default()
            },
        );
        o.insert("my-gateway".to_owned(), ModelPrice::default());
        let t = PriceTable::with_overrides(&o);
        assert_eq!(
            t.lookup("gpt-realtime").map(|p| p.1.audio_output),
            Some(1.0)
        );
        assert!(t.lookup("my-gateway-x").is_some());
        assert!(t.lookup("gpt-realtime-mini").is_some());
    }

    #[test]
    fn cost_of_a_ga_usage_block() {
        // The GA example of realtime-protocol.md: 119 text + 13 audio in, 64 text cached,
        // 30 text + 91 audio out.
        let mut u = CallUsage::default();
        u.add(&Usage {
            input_tokens: 132,
            output_tokens: 121,
            total_tokens: 253,
            input_text_tokens: 119,
            input_audio_tokens: 13,
            cached_tokens: 64,
            cached_text_tokens: 64,
            cached_audio_tokens: 0,
            output_text_tokens: 30,
            output_audio_tokens: 91,
        });
        let p = *PriceTable::defaults()
            .lookup("gpt-realtime")
            .map(|p| p.1)
            .expect("default model");
        let expected =
            (55.0 * 4.0 + 64.0 * 0.40 + 13.0 * 32.0 + 30.0 * 16.0 + 91.0 * 64.0) / 1_000_000.0;
        assert!((u.cost_usd(&p) - expected).abs() < 1e-12);
        assert_eq!((u.input_tokens(), u.output_tokens()), (132, 121));
    }

    #[test]
    fn beta_cached_tokens_count_as_text_first() {
        let mut u = CallUsage::default();
        u.add(&Usage {
            input_tokens: 100,
            output_tokens: 10,
            total_tokens: 110,
            input_text_tokens: 40,
            input_audio_tokens: 60,
            cached_tokens: 64,
            output_audio_tokens: 10,
            ..Usage::default()
        });
        assert_eq!((u.cached_text_tokens, u.cached_audio_tokens), (40, 24));
        // Usage without details counts as text.
        u.add(&Usage {
            input_tokens: 5,
            output_tokens: 2,
            total_tokens: 7,
            ..Usage::default()
        });
        assert_eq!((u.input_text_tokens, u.output_text_tokens), (45, 2));
        assert_eq!(u.responses, 2);
    }
}
