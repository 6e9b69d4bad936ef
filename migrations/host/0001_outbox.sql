-- The transactional outbox: events published by a plugin invocation are inserted here in the
-- invocation's own transaction (by the host, after RESET ROLE) and delivered by the relay.
-- keel_host and keel_host.schema_migrations are created by the migrator itself before this file runs.

CREATE TABLE keel_host.outbox (
	id           bigserial   PRIMARY KEY,
	event_id     text        NOT NULL UNIQUE,
	topic        text        NOT NULL,
	key          bytea,
	payload      bytea       NOT NULL DEFAULT ''::bytea,
	headers      jsonb       NOT NULL DEFAULT '{}'::jsonb,
	created_at   timestamptz NOT NULL DEFAULT now(),
	published_at timestamptz,
	attempts     integer     NOT NULL DEFAULT 0,
	last_error   text
);

-- The relay claims the oldest unpublished rows; this index holds only those, so it stays small
-- however long published rows are retained.
CREATE INDEX outbox_pending ON keel_host.outbox (id) WHERE published_at IS NULL;

-- Retention deletes published rows by age.
CREATE INDEX outbox_published_at ON keel_host.outbox (published_at) WHERE published_at IS NOT NULL;

-- Plugins reach the outbox only through the host; no role other than the owner gets anything.
REVOKE ALL ON keel_host.outbox FROM PUBLIC;
REVOKE ALL ON SEQUENCE keel_host.outbox_id_seq FROM PUBLIC;
