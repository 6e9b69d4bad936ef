-- Vendors (suppliers) of a tenant.
CREATE TABLE vendors (
    id                 uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id          text        NOT NULL DEFAULT current_setting('app.tenant_id'),
    code               text        NOT NULL CHECK (length(code) BETWEEN 1 AND 64),
    name               text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email              text        CHECK (length(email) <= 254),
    phone              text        CHECK (length(phone) <= 32),
    country            text        CHECK (country ~ '^[A-Z]{2}$'),
    currency           text        CHECK (currency ~ '^[A-Z]{3}$'),
    tax_id             text        CHECK (length(tax_id) <= 64),
    payment_terms_days integer     CHECK (payment_terms_days BETWEEN 0 AND 365),
    status             text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'blocked')),
    notes              text        CHECK (length(notes) <= 4000),
    version            bigint      NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz
);

-- Codes are unique per tenant among live rows, ignoring case; a soft-deleted row frees its code.
CREATE UNIQUE INDEX vendors_tenant_code ON vendors (tenant_id, lower(code)) WHERE deleted_at IS NULL;
-- Keyset pagination in each list order (created_at is the default), live rows only.
CREATE INDEX vendors_tenant_created ON vendors (tenant_id, created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX vendors_tenant_code_order ON vendors (tenant_id, code, id) WHERE deleted_at IS NULL;
CREATE INDEX vendors_tenant_name ON vendors (tenant_id, name, id) WHERE deleted_at IS NULL;
CREATE INDEX vendors_tenant_status ON vendors (tenant_id, status) WHERE deleted_at IS NULL;

ALTER TABLE vendors ENABLE ROW LEVEL SECURITY;
ALTER TABLE vendors FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON vendors
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
