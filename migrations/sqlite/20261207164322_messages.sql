-- Messages callers left when no model session could be opened (issue 10, dialplan
-- `on_model_failure = "take_message"`). The audio is a WAV file (8 kHz µ-law) in the
-- `[messages] dir` of the instance; `path` is where it was written.
CREATE TABLE IF NOT EXISTS messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id     TEXT    NOT NULL,                 -- SIP Call-ID of the call (calls.call_id)
    caller      TEXT,                             -- caller's number (P-Asserted-Identity or From)
    called      TEXT,                             -- number dialled
    agent       TEXT,                             -- agent profile whose fallback took it
    recorded_at TEXT    NOT NULL,                 -- when recording started, RFC 3339 UTC
    duration_ms INTEGER NOT NULL,
    path        TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_recorded_at ON messages (recorded_at);
