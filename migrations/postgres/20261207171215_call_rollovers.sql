-- PostgreSQL twin of migrations/sqlite/<same version>_call_rollovers.sql.
ALTER TABLE calls ADD COLUMN rollovers BIGINT NOT NULL DEFAULT 0;
