-- The configuration plugin's schema: configuration entries per tenant and environment, feature flags,
-- and the change history of both. Every table is tenant data and carries the row-level security
-- template of migrations/README.md.

-- One row per (tenant, env, key), ever: deleting soft-deletes the row and writing the key again revives
-- it, so version keeps counting up across a delete and a stale version can never match a newer entry.
CREATE TABLE entries (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id  text        NOT NULL DEFAULT current_setting('app.tenant_id'),
    env        text        NOT NULL,
    key        text        COLLATE "C" NOT NULL,
    value      jsonb       NOT NULL,
    version    bigint      NOT NULL DEFAULT 1 CHECK (version > 0),
    updated_by text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    UNIQUE (tenant_id, env, key)
);
ALTER TABLE entries ENABLE ROW LEVEL SECURITY;
ALTER TABLE entries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON entries
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

-- Feature flags. rules is the normalised targeting document:
-- {"users": [...], "roles": [...], "permissions": [...], "percentage": 0-100}.
-- Same one-row-per-key model as entries.
CREATE TABLE flags (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   text        NOT NULL DEFAULT current_setting('app.tenant_id'),
    key         text        COLLATE "C" NOT NULL,
    enabled     boolean     NOT NULL DEFAULT false,
    description text        NOT NULL DEFAULT '',
    rules       jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(rules) = 'object'),
    version     bigint      NOT NULL DEFAULT 1 CHECK (version > 0),
    updated_by  text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    UNIQUE (tenant_id, key)
);
ALTER TABLE flags ENABLE ROW LEVEL SECURITY;
ALTER TABLE flags FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON flags
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

-- Change history of entries (kind 'entry', env set) and flags (kind 'flag', env ''). Append-only:
-- the plugin never updates or deletes these rows. old_value is NULL for a creation, new_value NULL
-- for a deletion.
CREATE TABLE changes (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  text        NOT NULL DEFAULT current_setting('app.tenant_id'),
    kind       text        NOT NULL CHECK (kind IN ('entry', 'flag')),
    env        text        NOT NULL DEFAULT '',
    key        text        COLLATE "C" NOT NULL,
    version    bigint      NOT NULL,
    action     text        NOT NULL CHECK (action IN ('created', 'updated', 'deleted')),
    old_value  jsonb,
    new_value  jsonb,
    actor      text        NOT NULL,
    request_id text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX changes_tenant_subject ON changes (tenant_id, kind, env, key, version);
ALTER TABLE changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE changes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON changes
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
