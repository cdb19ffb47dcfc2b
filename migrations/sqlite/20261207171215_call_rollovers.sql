-- Session rollovers of each call (issue 10): how many times the call moved to a new model
-- session (planned before the session's maximum duration, or after the session ended).
ALTER TABLE calls ADD COLUMN rollovers INTEGER NOT NULL DEFAULT 0;
