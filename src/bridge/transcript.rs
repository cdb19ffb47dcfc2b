//! The conversation of one call as staff read it: who said what, when, and for the agent what
//! the caller actually heard. Sans-IO: fed by [`Bridge`](super::core::Bridge) from the server
//! events, times in ms of call time (since the bridge started), audio in G.711 bytes (8 per ms).
//!
//! - Caller turns come from `input_audio_buffer.speech_started` / `speech_stopped` (start and
//!   end, in the session's audio time) and `conversation.item.input_audio_transcription.completed`
//!   (the text; only with input transcription on).
//! - Agent turns come from the assistant item's audio deltas (start: the first delta), its
//!   transcript deltas and its transcript `done` event (`response.output_audio_transcript.*`,
//!   beta `response.audio_transcript.*`).
//! - When the caller interrupts (barge-in, `conversation.item.truncate`), only the text the caller
//!   heard is kept: each word is placed on the item's audio at the later of (a) how much audio
//!   had arrived when its transcript delta arrived and (b) its share of the text applied to the
//!   item's whole audio; words placed after the audio that was played are cut. Such turns are
//!   marked `truncated`.
//! - System notes ("pressed 3", "transferred to reception") come from the call itself.
//!
//! Memory is bounded by [`MAX_TURNS`].

use crate::media::g711::BYTES_PER_MS;

/// Most turns kept per call; later ones are counted in [`Transcript::dropped`] and not stored.
pub const MAX_TURNS: usize = 2000;

/// Who spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    /// The person who called.
    Caller,
    /// The AI receptionist.
    Agent,
    /// Something that happened on the call (a key press, a transfer).
    System,
}

impl Speaker {
    /// `caller`, `agent` or `system`, as stored in `call_turns.speaker`.
    pub fn as_str(self) -> &'static str {
        match self {
            Speaker::Caller => "caller",
            Speaker::Agent => "agent",
            Speaker::System => "system",
        }
    }
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// Who spoke.
    pub speaker: Speaker,
    /// What was said (for the agent: what the caller heard).
    pub text: String,
    /// Start, ms of call time.
    pub start_ms: u64,
    /// End, ms of call time.
    pub end_ms: u64,
    /// An agent turn cut short by the caller (the text is what was heard).
    pub truncated: bool,
}

#[derive(Debug)]
struct CallerItem {
    item_id: String,
    start_ms: u64,
    end_ms: Option<u64>,
    text: Option<String>,
}

#[derive(Debug)]
struct AgentItem {
    item_id: String,
    start_ms: u64,
    text: String,
    /// (byte index into `text` where a delta started, audio bytes received before it arrived).
    arrivals: Vec<(usize, u64)>,
    /// Audio bytes the server sent for the item (including deltas discarded after a barge-in).
    audio_bytes: u64,
    /// Audio bytes played to the caller, when less than all of it was (barge-in, hangup).
    heard_bytes: Option<u64>,
}

/// The turns of one call so far. See the module docs.
#[derive(Debug, Default)]
pub struct Transcript {
    caller: Vec<CallerItem>,
    agent: Vec<AgentItem>,
    notes: Vec<Turn>,
    dropped: u64,
}

impl Transcript {
    /// An empty transcript.
    pub fn new() -> Transcript {
        Transcript::default()
    }

    fn full(&mut self) -> bool {
        let full = self.caller.len() + self.agent.len() + self.notes.len() >= MAX_TURNS;
        if full {
            self.dropped += 1;
        }
        full
    }

    fn caller_item(&mut self, item_id: &str, start_ms: u64) -> Option<&mut CallerItem> {
        if let Some(i) = self.caller.iter().position(|c| c.item_id == item_id) {
            return self.caller.get_mut(i);
        }
        if self.full() {
            return None;
        }
        self.caller.push(CallerItem {
            item_id: item_id.to_owned(),
            start_ms,
            end_ms: None,
            text: None,
        });
        self.caller.last_mut()
    }

    fn agent_item(&mut self, item_id: &str, at_ms: u64) -> Option<&mut AgentItem> {
        // Recent items are at the end.
        if let Some(i) = self.agent.iter().rposition(|a| a.item_id == item_id) {
            return self.agent.get_mut(i);
        }
        if self.full() {
            return None;
        }
        self.agent.push(AgentItem {
            item_id: item_id.to_owned(),
            start_ms: at_ms,
            text: String::new(),
            arrivals: Vec::new(),
            audio_bytes: 0,
            heard_bytes: None,
        });
        self.agent.last_mut()
    }

    /// `input_audio_buffer.speech_started`: the caller's turn `item_id` starts at `start_ms`
    /// (its `audio_start_ms` in call time).
    pub fn handle_speech_started(&mut self, item_id: &str, start_ms: u64) {
        self.caller_item(item_id, start_ms);
    }

    /// `input_audio_buffer.speech_stopped`: the caller's turn ends at `end_ms` (call time).
    pub fn handle_speech_stopped(&mut self, item_id: &str, end_ms: u64) {
        if let Some(c) = self.caller_item(item_id, end_ms) {
            c.end_ms = Some(end_ms);
        }
    }

    /// `conversation.item.input_audio_transcription.completed` for `item_id`, at `at_ms`.
    pub fn handle_caller_text(&mut self, item_id: &str, text: &str, at_ms: u64) {
        if let Some(c) = self.caller_item(item_id, at_ms) {
            c.text = Some(text.trim().to_owned());
        }
    }

    /// `bytes` of the agent's audio for `item_id` arrived at `at_ms` (played or discarded).
    pub fn handle_agent_audio(&mut self, item_id: &str, at_ms: u64, bytes: usize) {
        if let Some(a) = self.agent_item(item_id, at_ms) {
            a.audio_bytes += bytes as u64;
        }
    }

    /// A transcript delta of the agent's item.
    pub fn handle_agent_text_delta(&mut self, item_id: &str, delta: &str, at_ms: u64) {
        if let Some(a) = self.agent_item(item_id, at_ms) {
            a.arrivals.push((a.text.len(), a.audio_bytes));
            a.text.push_str(delta);
        }
    }

    /// The complete transcript of the agent's item; replaces the deltas when it differs.
    pub fn handle_agent_text_done(&mut self, item_id: &str, text: &str, at_ms: u64) {
        if let Some(a) = self.agent_item(item_id, at_ms) {
            if a.text != text {
                if !text.starts_with(a.text.as_str()) {
                    a.arrivals.clear();
                }
                a.text = text.to_owned();
            }
        }
    }

    /// The caller heard only `heard_bytes` of the item's audio (barge-in, or the call ended).
    pub fn handle_agent_cut(&mut self, item_id: &str, heard_bytes: u64) {
        if let Some(a) = self.agent.iter_mut().rev().find(|a| a.item_id == item_id) {
            a.heard_bytes = Some(heard_bytes);
        }
    }

    /// A note about the call ("pressed 3") at `at_ms`.
    pub fn note(&mut self, at_ms: u64, text: &str) {
        if self.full() {
            return;
        }
        self.notes.push(Turn {
            speaker: Speaker::System,
            text: text.to_owned(),
            start_ms: at_ms,
            end_ms: at_ms,
            truncated: false,
        });
    }

    /// Turns not kept because the call had [`MAX_TURNS`].
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The turns in order of their start (ties: caller, agent, system in arrival order); turns
    /// without text (transcription off, an agent cut before a word was heard) are left out.
    pub fn turns(&self) -> Vec<Turn> {
        let mut turns: Vec<Turn> = Vec::new();
        for c in &self.caller {
            let Some(text) = c.text.as_ref().filter(|t| !t.is_empty()) else {
                continue;
            };
            turns.push(Turn {
                speaker: Speaker::Caller,
                text: text.clone(),
                start_ms: c.start_ms,
                end_ms: c.end_ms.unwrap_or(c.start_ms).max(c.start_ms),
                truncated: false,
            });
        }
        for a in &self.agent {
            let heard = a.heard_bytes.unwrap_or(a.audio_bytes).min(a.audio_bytes);
            let truncated = a.audio_bytes > 0 && heard < a.audio_bytes;
            let text = if truncated {
                heard_text(a, heard)
            } else {
                a.text.trim().to_owned()
            };
            if text.is_empty() {
                continue;
            }
            turns.push(Turn {
                speaker: Speaker::Agent,
                text,
                start_ms: a.start_ms,
                end_ms: a.start_ms + heard / BYTES_PER_MS,
                truncated,
            });
        }
        turns.extend(self.notes.iter().cloned());
        // Stable: equal starts keep caller, agent, system order.
        turns.sort_by_key(|t| t.start_ms);
        turns
    }
}

/// The words of `a.text` placed before `heard` bytes of its audio (see the module docs).
fn heard_text(a: &AgentItem, heard: u64) -> String {
    let text = a.text.as_str();
    let total_chars = text.len().max(1) as u64;
    let mut out = String::new();
    let mut word_start = 0usize;
    let mut in_space = false;
    let mut words: Vec<(usize, usize)> = Vec::new();
    for (i, ch) in text.char_indices() {
        let space = ch.is_whitespace();
        if !space && in_space {
            words.push((word_start, i));
            word_start = i;
        }
        in_space = space;
    }
    words.push((word_start, text.len()));
    for (start, end) in words {
        let arrived = a
            .arrivals
            .iter()
            .take_while(|(idx, _)| *idx <= start)
            .last()
            .map_or(0, |(_, audio)| *audio);
        let share = a.audio_bytes * start as u64 / total_chars;
        if arrived.max(share) >= heard {
            break;
        }
        out.push_str(text.get(start..end).unwrap_or(""));
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_come_in_order_of_their_start() {
        let mut t = Transcript::new();
        // Greeting: 2 s of audio, transcript in one delta.
        t.handle_agent_audio("a1", 100, 16_000);
        t.handle_agent_text_delta("a1", "Hello, dental clinic.", 120);
        t.handle_agent_text_done("a1", "Hello, dental clinic.", 130);
        t.handle_speech_started("u1", 3_000);
        t.handle_speech_stopped("u1", 4_500);
        t.handle_agent_audio("a2", 5_000, 8_000);
        t.handle_agent_text_done("a2", "Sure.", 5_100);
        // The caller's transcript arrives after the agent answered.
        t.handle_caller_text("u1", " I need a cleaning. ", 5_200);
        t.note(6_000, "pressed 3");
        let turns = t.turns();
        let who: Vec<_> = turns.iter().map(|t| (t.speaker, t.text.as_str())).collect();
        assert_eq!(
            who,
            [
                (Speaker::Agent, "Hello, dental clinic."),
                (Speaker::Caller, "I need a cleaning."),
                (Speaker::Agent, "Sure."),
                (Speaker::System, "pressed 3"),
            ]
        );
        assert_eq!((turns[0].start_ms, turns[0].end_ms), (100, 2_100));
        assert_eq!((turns[1].start_ms, turns[1].end_ms), (3_000, 4_500));
        assert!(turns.iter().all(|t| !t.truncated));
    }

    #[test]
    fn a_cut_reply_keeps_only_the_words_heard() {
        let mut t = Transcript::new();
        // Each word arrives as its audio starts (as the simulator sends them): 1 s per word.
        for (i, w) in ["One ", "two ", "three ", "four"].iter().enumerate() {
            t.handle_agent_text_delta("a1", w, i as u64 * 1_000);
            t.handle_agent_audio("a1", i as u64 * 1_000, 8_000);
        }
        t.handle_agent_text_done("a1", "One two three four", 4_000);
        // The caller heard 2.5 s: "One", "two", and part of "three".
        t.handle_agent_cut("a1", 20_000);
        let turns = t.turns();
        assert_eq!(turns.len(), 1);
        assert_eq!(turns[0].text, "One two three");
        assert!(turns[0].truncated);
        assert_eq!(turns[0].end_ms, 2_500);
    }

    #[test]
    fn text_ahead_of_audio_is_cut_by_its_share() {
        let mut t = Transcript::new();
        // The whole text arrives before any audio (as real servers often send it).
        t.handle_agent_text_delta("a1", "aaaa bbbb cccc dddd", 0);
        t.handle_agent_audio("a1", 10, 32_000);
        t.handle_agent_cut("a1", 12_000); // 37 % heard
        assert_eq!(t.turns()[0].text, "aaaa bbbb");
        // Cut before a word was heard: no agent turn.
        t.handle_agent_cut("a1", 0);
        assert!(t.turns().is_empty());
    }

    #[test]
    fn caller_turns_without_text_are_left_out_and_memory_is_bounded() {
        let mut t = Transcript::new();
        t.handle_speech_started("u1", 0);
        t.handle_speech_stopped("u1", 900);
        assert!(t.turns().is_empty());
        for i in 0..MAX_TURNS + 5 {
            t.note(i as u64, "x");
        }
        assert_eq!(t.turns().len(), MAX_TURNS - 1);
        assert_eq!(t.dropped(), 6);
    }
}
