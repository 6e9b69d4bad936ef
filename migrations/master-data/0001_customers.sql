-- Customers of a tenant. Validation happens in the plugin (with field-level messages); the CHECK
-- constraints are the last line of defence and mirror it.
CREATE TABLE customers (
    id           uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    text          NOT NULL DEFAULT current_setting('app.tenant_id'),
    code         text          NOT NULL CHECK (length(code) BETWEEN 1 AND 64),
    name         text          NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email        text          CHECK (length(email) <= 254),
    phone        text          CHECK (length(phone) <= 32),
    country      text          CHECK (country ~ '^[A-Z]{2}$'),
    currency     text          CHECK (currency ~ '^[A-Z]{3}$'),
    tax_id       text          CHECK (length(tax_id) <= 64),
    credit_limit numeric(17,2) CHECK (credit_limit >= 0),
    status       text          NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'blocked')),
    notes        text          CHECK (length(notes) <= 4000),
    version      bigint        NOT NULL DEFAULT 1,
    created_at   timestamptz   NOT NULL DEFAULT now(),
    updated_at   timestamptz   NOT NULL DEFAULT now(),
    deleted_at   timestamptz
);

-- Codes are unique per tenant among live rows, ignoring case; a soft-deleted row frees its code.
CREATE UNIQUE INDEX customers_tenant_code ON customers (tenant_id, lower(code)) WHERE deleted_at IS NULL;
-- Keyset pagination in each list order (created_at is the default), live rows only.
CREATE INDEX customers_tenant_created ON customers (tenant_id, created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX customers_tenant_code_order ON customers (tenant_id, code, id) WHERE deleted_at IS NULL;
CREATE INDEX customers_tenant_name ON customers (tenant_id, name, id) WHERE deleted_at IS NULL;
CREATE INDEX customers_tenant_status ON customers (tenant_id, status) WHERE deleted_at IS NULL;

ALTER TABLE customers ENABLE ROW LEVEL SECURITY;
ALTER TABLE customers FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON customers
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
