-- What was said on each call, and what the call cost (issue 14).
--
-- call_turns: one row per turn of the conversation, in order. Times are ms of call time (since
-- the media started). speaker is caller | agent | system (a note such as "pressed 3"). For the
-- agent, text is what the caller heard: a reply cut by a barge-in keeps only the words played
-- before the cut, and truncated = 1.
CREATE TABLE IF NOT EXISTS call_turns (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    call      INTEGER NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    turn      INTEGER NOT NULL,                        -- 1, 2, ... within the call
    speaker   TEXT    NOT NULL CHECK (speaker IN ('caller', 'agent', 'system')),
    text      TEXT    NOT NULL,
    start_ms  INTEGER NOT NULL,
    end_ms    INTEGER NOT NULL,
    truncated INTEGER NOT NULL DEFAULT 0 CHECK (truncated IN (0, 1)),
    UNIQUE (call, turn)
);

-- Usage the Realtime service reported (sum of every response.done usage), in tokens, and the
-- cost estimated from the [pricing] table, in USD (NULL when the model has no price).
ALTER TABLE calls ADD COLUMN model TEXT;                       -- Realtime model of the session
ALTER TABLE calls ADD COLUMN responses INTEGER;                -- responses that reported usage
ALTER TABLE calls ADD COLUMN input_text_tokens INTEGER;
ALTER TABLE calls ADD COLUMN input_audio_tokens INTEGER;
ALTER TABLE calls ADD COLUMN cached_text_tokens INTEGER;
ALTER TABLE calls ADD COLUMN cached_audio_tokens INTEGER;
ALTER TABLE calls ADD COLUMN output_text_tokens INTEGER;
ALTER TABLE calls ADD COLUMN output_audio_tokens INTEGER;
ALTER TABLE calls ADD COLUMN billed_seconds REAL;
ALTER TABLE calls ADD COLUMN cost_usd REAL;
