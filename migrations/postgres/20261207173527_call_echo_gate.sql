-- Echo-safe barge-in (issue 15): what the echo gate did during the call.
ALTER TABLE calls ADD COLUMN echo_gated_frames BIGINT;  -- caller 20 ms frames replaced with silence as echo of the agent
ALTER TABLE calls ADD COLUMN false_barge_ins BIGINT;    -- speech_started during agent audio explained by its echo
ALTER TABLE calls ADD COLUMN true_barge_ins BIGINT;     -- speech_started during agent audio with the caller's own voice
