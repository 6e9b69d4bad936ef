-- The plugin registry (plugin-registry/store): every uploaded plugin version, which version of each
-- plugin is active, and the history of both. Every host sharing this database follows plugin_active.

-- One row per uploaded version. Versions are immutable: the store refuses a second upload of the same
-- name and version with different content. bundle holds the signed bundle exactly as uploaded, so a
-- host verifies it again with its own trusted keys before running it.
CREATE TABLE keel_host.plugin_versions (
	name        text        NOT NULL CHECK (name <> ''),
	version     text        NOT NULL CHECK (version <> ''),
	-- The bundle's identity: lowercase hex SHA-256 of its digests.json (plugin-registry/bundle).
	digest      text        NOT NULL UNIQUE CHECK (digest ~ '^[0-9a-f]{64}$'),
	-- Key id of the signature verified at upload; NULL for an unsigned (development) bundle.
	signer      text,
	manifest    jsonb       NOT NULL,
	bundle      bytea       NOT NULL,
	size        bigint      NOT NULL CHECK (size = octet_length(bundle)),
	uploaded_by text        NOT NULL,
	uploaded_at timestamptz NOT NULL DEFAULT now(),
	-- uploaded: never activated; active: the version plugin_active names; inactive: was active, replaced
	-- or deactivated; failed: a host reported that activating it failed (last_error says why).
	state       text        NOT NULL DEFAULT 'uploaded'
	                        CHECK (state IN ('uploaded', 'active', 'inactive', 'failed')),
	last_error  text,
	PRIMARY KEY (name, version)
);

-- The active version of each plugin: the row a host reconciles against. generation increases on every
-- activation, rollback and deactivation (a deactivation removes the row; its generation is kept in
-- plugin_events so the next activation continues from it). The foreign keys make the database itself
-- refuse to delete a version that is active or is the rollback target while the store has not
-- cleared it.
CREATE TABLE keel_host.plugin_active (
	name             text        PRIMARY KEY,
	version          text        NOT NULL,
	digest           text        NOT NULL,
	generation       bigint      NOT NULL CHECK (generation > 0),
	previous_version text,
	updated_by       text        NOT NULL,
	updated_at       timestamptz NOT NULL DEFAULT now(),
	FOREIGN KEY (name, version) REFERENCES keel_host.plugin_versions (name, version),
	FOREIGN KEY (name, previous_version) REFERENCES keel_host.plugin_versions (name, version)
);

-- Append-only history for audit and the dashboard. No foreign key: events outlive deleted versions.
CREATE TABLE keel_host.plugin_events (
	id      bigserial   PRIMARY KEY,
	name    text        NOT NULL,
	version text,
	action  text        NOT NULL
	                    CHECK (action IN ('upload', 'activate', 'rollback', 'deactivate', 'delete', 'fail')),
	actor   text        NOT NULL,
	detail  jsonb       NOT NULL DEFAULT '{}'::jsonb,
	at      timestamptz NOT NULL DEFAULT now()
);

-- History per plugin, newest first.
CREATE INDEX plugin_events_name_id ON keel_host.plugin_events (name, id);

-- Plugins never see the registry; only the host's own user does.
REVOKE ALL ON keel_host.plugin_versions FROM PUBLIC;
REVOKE ALL ON keel_host.plugin_active FROM PUBLIC;
REVOKE ALL ON keel_host.plugin_events FROM PUBLIC;
REVOKE ALL ON SEQUENCE keel_host.plugin_events_id_seq FROM PUBLIC;
