-- The hosts sharing this database, for operators: each host upserts its row every few
-- seconds (heartbeat) and deletes it on a clean shutdown; a row not seen for a while is
-- a host that stopped without saying so.
CREATE TABLE keel_host.hosts (
	id          text        PRIMARY KEY,
	started_at  timestamptz NOT NULL,
	last_seen   timestamptz NOT NULL,
	version     text        NOT NULL,
	plugins     jsonb       NOT NULL DEFAULT '{}'::jsonb
);

REVOKE ALL ON keel_host.hosts FROM PUBLIC;
