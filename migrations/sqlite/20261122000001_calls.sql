-- One row per SIP call (INVITE) that reached frontdesk. Times are UTC, RFC 3339 text.
CREATE TABLE IF NOT EXISTS calls (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id       TEXT    NOT NULL,             -- SIP Call-ID header
    from_uri      TEXT    NOT NULL,             -- SIP From URI
    to_uri        TEXT    NOT NULL,             -- SIP To URI
    caller        TEXT,                         -- caller's number (P-Asserted-Identity or From user part)
    called        TEXT,                         -- called number (Request-URI user part)
    transport     TEXT    NOT NULL,             -- udp | tcp
    profile       TEXT,                         -- dialplan agent profile that handled the call
    started_at    TEXT    NOT NULL,             -- INVITE received
    answered_at   TEXT,                         -- 200 OK sent
    ended_at      TEXT,                         -- call over (BYE, CANCEL, error, ...)
    end_reason    TEXT,                         -- e.g. remote-bye, local-bye, cancelled, rejected-488, realtime-unavailable
    end_initiator TEXT,                         -- local | remote
    sip_status    INTEGER,                      -- final response we sent to the INVITE
    codec         TEXT,                         -- PCMU | PCMA
    packets_in    INTEGER NOT NULL DEFAULT 0,   -- RTP packets received from the caller
    packets_out   INTEGER NOT NULL DEFAULT 0,   -- RTP packets sent to the caller
    concealed_frames INTEGER NOT NULL DEFAULT 0 -- 20 ms frames of silence inserted for missing audio
);
CREATE INDEX IF NOT EXISTS calls_call_id ON calls (call_id);
CREATE INDEX IF NOT EXISTS calls_started_at ON calls (started_at);
