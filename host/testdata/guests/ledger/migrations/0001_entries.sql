CREATE TABLE entries (
    id         bigserial   PRIMARY KEY,
    tenant_id  text        NOT NULL DEFAULT current_setting('app.tenant_id'),
    note       text        NOT NULL,
    amount     bigint      NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX entries_tenant ON entries (tenant_id, id);
ALTER TABLE entries ENABLE ROW LEVEL SECURITY;
ALTER TABLE entries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON entries
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

CREATE TABLE received (
    id         bigserial   PRIMARY KEY,
    tenant_id  text        NOT NULL DEFAULT current_setting('app.tenant_id'),
    event_id   text        NOT NULL,
    note       text        NOT NULL,
    topic      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, event_id, topic)
);
ALTER TABLE received ENABLE ROW LEVEL SECURITY;
ALTER TABLE received FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON received
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
