-- Products (items, services) of a tenant; code is the SKU.
CREATE TABLE products (
    id          uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   text          NOT NULL DEFAULT current_setting('app.tenant_id'),
    code        text          NOT NULL CHECK (length(code) BETWEEN 1 AND 64),
    name        text          NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description text          CHECK (length(description) <= 4000),
    category    text          CHECK (length(category) <= 100),
    unit        text          CHECK (length(unit) <= 16),
    price       numeric(19,4) CHECK (price >= 0),
    currency    text          CHECK (currency ~ '^[A-Z]{3}$'),
    status      text          NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'discontinued')),
    version     bigint        NOT NULL DEFAULT 1,
    created_at  timestamptz   NOT NULL DEFAULT now(),
    updated_at  timestamptz   NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);

-- Codes are unique per tenant among live rows, ignoring case; a soft-deleted row frees its code.
CREATE UNIQUE INDEX products_tenant_code ON products (tenant_id, lower(code)) WHERE deleted_at IS NULL;
-- Keyset pagination in each list order (created_at is the default), live rows only.
CREATE INDEX products_tenant_created ON products (tenant_id, created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX products_tenant_code_order ON products (tenant_id, code, id) WHERE deleted_at IS NULL;
CREATE INDEX products_tenant_name ON products (tenant_id, name, id) WHERE deleted_at IS NULL;
CREATE INDEX products_tenant_category ON products (tenant_id, category) WHERE deleted_at IS NULL;

ALTER TABLE products ENABLE ROW LEVEL SECURITY;
ALTER TABLE products FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON products
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
