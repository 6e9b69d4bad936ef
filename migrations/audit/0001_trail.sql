-- The audit trail: an append-only, per-tenant hash chain of audit records.
--
--   records      the live trail. Rows are only ever inserted, and leave only by being
--                moved, unchanged, into archive (the retention job).
--   archive      records moved out by retention, unchanged, still chained. Insert-only.
--   chain_heads  one row per tenant: the last seq and hash (the row appends lock to
--                serialise a tenant's chain) and the retention checkpoint (the last
--                archived seq and hash, where verification of the live trail starts).
--
-- Deviation from the table conventions (migrations/README.md), on purpose: records and
-- archive have no updated_at or deleted_at, because their rows never change and are
-- never soft-deleted; created_at is when the record was stored, "at" when the event
-- was published.
--
-- The append-only rules are triggers, so they hold for every role, the plugin's own
-- included (its runtime SQL cannot run DDL to disable them). An operator with table
-- ownership or superuser rights can still disable a trigger; the hash chain is what
-- makes such tampering visible (GET /api/audit/verify).

CREATE TABLE records (
    tenant_id  text        NOT NULL DEFAULT current_setting('app.tenant_id'),
    seq        bigint      NOT NULL CHECK (seq > 0),
    event_id   text        NOT NULL,
    source     text        NOT NULL,
    action     text        NOT NULL,
    actor      text        NOT NULL DEFAULT '',
    resource   text        NOT NULL DEFAULT '',
    request_id text        NOT NULL DEFAULT '',
    detail     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    at         timestamptz NOT NULL,
    prev_hash  text        NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    hash       text        NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, seq),
    UNIQUE (tenant_id, event_id)
);
CREATE INDEX records_tenant_actor ON records (tenant_id, actor, seq);
CREATE INDEX records_tenant_action ON records (tenant_id, action, seq);
CREATE INDEX records_tenant_resource ON records (tenant_id, resource, seq);
CREATE INDEX records_tenant_at ON records (tenant_id, at);
CREATE INDEX records_tenant_request ON records (tenant_id, request_id) WHERE request_id <> '';

ALTER TABLE records ENABLE ROW LEVEL SECURITY;
ALTER TABLE records FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON records
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

CREATE TABLE archive (
    tenant_id   text        NOT NULL DEFAULT current_setting('app.tenant_id'),
    seq         bigint      NOT NULL CHECK (seq > 0),
    event_id    text        NOT NULL,
    source      text        NOT NULL,
    action      text        NOT NULL,
    actor       text        NOT NULL DEFAULT '',
    resource    text        NOT NULL DEFAULT '',
    request_id  text        NOT NULL DEFAULT '',
    detail      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    at          timestamptz NOT NULL,
    prev_hash   text        NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    hash        text        NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
    created_at  timestamptz NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, seq),
    UNIQUE (tenant_id, event_id)
);
CREATE INDEX archive_tenant_actor ON archive (tenant_id, actor, seq);
CREATE INDEX archive_tenant_action ON archive (tenant_id, action, seq);
CREATE INDEX archive_tenant_resource ON archive (tenant_id, resource, seq);
CREATE INDEX archive_tenant_at ON archive (tenant_id, at);

ALTER TABLE archive ENABLE ROW LEVEL SECURITY;
ALTER TABLE archive FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON archive
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

CREATE TABLE chain_heads (
    tenant_id     text        PRIMARY KEY DEFAULT current_setting('app.tenant_id'),
    last_seq      bigint      NOT NULL DEFAULT 0,
    last_hash     text        NOT NULL DEFAULT repeat('0', 64),
    archived_seq  bigint      NOT NULL DEFAULT 0,
    archived_hash text        NOT NULL DEFAULT repeat('0', 64),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (archived_seq <= last_seq)
);

ALTER TABLE chain_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE chain_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON chain_heads
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

-- Trigger functions pin search_path to the plugin's schema (FROM CURRENT: the
-- migration runs with it), so they find records and archive whoever fires them.

-- Any UPDATE or TRUNCATE, and DELETE where nothing may leave (archive), is refused.
CREATE FUNCTION audit_refuse_change() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    RAISE EXCEPTION 'audit trail is append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;

-- A record may be inserted only as the next link of its tenant's chain: seq 1 on the
-- genesis hash, or seq n+1 whose prev_hash is the hash of record n (live or archived).
-- With the primary key on (tenant_id, seq) the chain can neither fork nor skip.
CREATE FUNCTION audit_check_link() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    prev text;
BEGIN
    IF NEW.seq = 1 THEN
        prev := repeat('0', 64);
    ELSE
        SELECT r.hash INTO prev FROM records r WHERE r.tenant_id = NEW.tenant_id AND r.seq = NEW.seq - 1;
        IF NOT FOUND THEN
            SELECT a.hash INTO prev FROM archive a WHERE a.tenant_id = NEW.tenant_id AND a.seq = NEW.seq - 1;
        END IF;
    END IF;
    IF prev IS DISTINCT FROM NEW.prev_hash THEN
        RAISE EXCEPTION 'audit record % of tenant % does not continue the chain', NEW.seq, NEW.tenant_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

-- A record may leave records only if an identical copy is already in archive: this is
-- the retention job's archive path, and the only way out.
CREATE FUNCTION audit_delete_archived_only() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM archive a
        WHERE a.tenant_id = OLD.tenant_id AND a.seq = OLD.seq
          AND (a.event_id, a.source, a.action, a.actor, a.resource, a.request_id, a.detail, a.at, a.prev_hash, a.hash, a.created_at)
            = (OLD.event_id, OLD.source, OLD.action, OLD.actor, OLD.resource, OLD.request_id, OLD.detail, OLD.at, OLD.prev_hash, OLD.hash, OLD.created_at)
    ) THEN
        RAISE EXCEPTION 'audit trail is append-only: record % of tenant % can only leave by being archived', OLD.seq, OLD.tenant_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN OLD;
END $$;

-- Rows may enter archive only as exact copies of live records that continue the
-- archived chain (so archive is always a verifiable prefix of the trail). Checked per
-- statement, after all its rows are in, so a batch may arrive in any order.
CREATE FUNCTION audit_check_archived() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    bad bigint;
BEGIN
    SELECT m.seq INTO bad FROM moved m
    WHERE NOT EXISTS (
            SELECT 1 FROM records r
            WHERE r.tenant_id = m.tenant_id AND r.seq = m.seq
              AND (r.event_id, r.source, r.action, r.actor, r.resource, r.request_id, r.detail, r.at, r.prev_hash, r.hash, r.created_at)
                = (m.event_id, m.source, m.action, m.actor, m.resource, m.request_id, m.detail, m.at, m.prev_hash, m.hash, m.created_at))
       OR NOT (
            (m.seq = 1 AND m.prev_hash = repeat('0', 64))
            OR EXISTS (SELECT 1 FROM archive a WHERE a.tenant_id = m.tenant_id AND a.seq = m.seq - 1 AND a.hash = m.prev_hash))
    ORDER BY m.seq
    LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'audit archive: record % is not an unchanged live record continuing the archived chain', bad
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;

-- UPDATE and TRUNCATE are refused per statement, so even a statement that matches no
-- row fails; DELETE is checked per row (the archive path).
CREATE TRIGGER records_chain_link BEFORE INSERT ON records
    FOR EACH ROW EXECUTE FUNCTION audit_check_link();
CREATE TRIGGER records_no_update BEFORE UPDATE OR TRUNCATE ON records
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER records_archive_only BEFORE DELETE ON records
    FOR EACH ROW EXECUTE FUNCTION audit_delete_archived_only();

CREATE TRIGGER archive_chain_link AFTER INSERT ON archive
    REFERENCING NEW TABLE AS moved
    FOR EACH STATEMENT EXECUTE FUNCTION audit_check_archived();
CREATE TRIGGER archive_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON archive
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
