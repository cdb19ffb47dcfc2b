-- Media quality of each call (issue 3): the caller's stream as our jitter buffer saw it, and our
-- stream as the caller reported it in RTCP receiver reports (RFC 3550 §6.4).
ALTER TABLE calls ADD COLUMN packets_lost INTEGER;             -- caller packets never received (concealed)
ALTER TABLE calls ADD COLUMN packets_late INTEGER;             -- arrived too late to play
ALTER TABLE calls ADD COLUMN packets_duplicated INTEGER;
ALTER TABLE calls ADD COLUMN packets_reordered INTEGER;
ALTER TABLE calls ADD COLUMN jitter_ms REAL;                   -- RFC 3550 interarrival jitter at the end of the call
ALTER TABLE calls ADD COLUMN max_jitter_buffer_ms INTEGER;     -- deepest the jitter buffer got
ALTER TABLE calls ADD COLUMN remote_fraction_lost REAL;        -- 0.0-1.0, last RTCP report about our stream
ALTER TABLE calls ADD COLUMN remote_cumulative_lost INTEGER;
ALTER TABLE calls ADD COLUMN remote_jitter_ms REAL;
ALTER TABLE calls ADD COLUMN dtmf_digits INTEGER;              -- key presses received
ALTER TABLE calls ADD COLUMN barge_ins INTEGER;                -- times the caller interrupted the agent
