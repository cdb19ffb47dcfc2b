-- PostgreSQL twin of migrations/sqlite/20261122000003_call_media_stats.sql.
ALTER TABLE calls ADD COLUMN packets_lost BIGINT;              -- caller packets never received (concealed)
ALTER TABLE calls ADD COLUMN packets_late BIGINT;              -- arrived too late to play
ALTER TABLE calls ADD COLUMN packets_duplicated BIGINT;
ALTER TABLE calls ADD COLUMN packets_reordered BIGINT;
ALTER TABLE calls ADD COLUMN jitter_ms DOUBLE PRECISION;       -- RFC 3550 interarrival jitter at the end of the call
ALTER TABLE calls ADD COLUMN max_jitter_buffer_ms BIGINT;      -- deepest the jitter buffer got
ALTER TABLE calls ADD COLUMN remote_fraction_lost DOUBLE PRECISION; -- 0.0-1.0, last RTCP report about our stream
ALTER TABLE calls ADD COLUMN remote_cumulative_lost BIGINT;
ALTER TABLE calls ADD COLUMN remote_jitter_ms DOUBLE PRECISION;
ALTER TABLE calls ADD COLUMN dtmf_digits BIGINT;               -- key presses received
ALTER TABLE calls ADD COLUMN barge_ins BIGINT;                 -- times the caller interrupted the agent
