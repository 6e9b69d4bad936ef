-- The chart of accounts of a tenant: a tree of accounts of one type each. The parent reference
-- includes tenant_id, so the database itself refuses a parent from another tenant.
CREATE TABLE accounts (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   text        NOT NULL DEFAULT current_setting('app.tenant_id'),
    code        text        NOT NULL CHECK (length(code) BETWEEN 1 AND 64),
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    type        text        NOT NULL CHECK (type IN ('asset', 'liability', 'equity', 'revenue', 'expense')),
    parent_id   uuid,
    currency    text        CHECK (currency ~ '^[A-Z]{3}$'),
    description text        CHECK (length(description) <= 4000),
    status      text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    version     bigint      NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, parent_id) REFERENCES accounts (tenant_id, id),
    CHECK (parent_id <> id)
);

-- Codes are unique per tenant among live rows, ignoring case; a soft-deleted row frees its code.
CREATE UNIQUE INDEX accounts_tenant_code ON accounts (tenant_id, lower(code)) WHERE deleted_at IS NULL;
-- Keyset pagination in each list order (created_at is the default), live rows only.
CREATE INDEX accounts_tenant_created ON accounts (tenant_id, created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX accounts_tenant_code_order ON accounts (tenant_id, code, id) WHERE deleted_at IS NULL;
CREATE INDEX accounts_tenant_name ON accounts (tenant_id, name, id) WHERE deleted_at IS NULL;
CREATE INDEX accounts_tenant_parent ON accounts (tenant_id, parent_id) WHERE deleted_at IS NULL;
CREATE INDEX accounts_tenant_type ON accounts (tenant_id, type) WHERE deleted_at IS NULL;

ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE accounts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON accounts
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
