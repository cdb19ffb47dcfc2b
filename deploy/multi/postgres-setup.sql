-- Run once as the PostgreSQL superuser (psql -f deploy/multi/postgres-setup.sql):
-- a login role and a database owned by it. frontdesk's migrations then create the tables and
-- the btree_gist extension (a trusted extension: the database owner may create it).
CREATE ROLE frontdesk LOGIN PASSWORD 'change-me';   -- then: ALTER ROLE frontdesk PASSWORD '...';
CREATE DATABASE frontdesk OWNER frontdesk;
