-- The auth plugin's schema: tenants, users, roles, role assignments, sessions and refresh tokens.
-- Every table is tenant data and carries the row-level security template of migrations/README.md.
-- Foreign keys include tenant_id, so a row can only ever point at a row of its own tenant.

-- One row per tenant, created by POST /bootstrap; a tenant sees only its own row.
CREATE TABLE tenants (
    tenant_id  text        PRIMARY KEY DEFAULT current_setting('app.tenant_id'),
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

-- Users. email is stored normalised (trimmed, lower case) and is unique per tenant among live users.
-- password_hash is a bcrypt hash ($2a$<cost>$...); the password itself is never stored.
CREATE TABLE users (
    id                  uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           text        NOT NULL DEFAULT current_setting('app.tenant_id'),
    email               text        NOT NULL,
    name                text        NOT NULL DEFAULT '',
    password_hash       text        NOT NULL,
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    last_login_at       timestamptz,
    disabled_at         timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX users_tenant_email ON users (tenant_id, email) WHERE deleted_at IS NULL;
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON users
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

-- Roles are named sets of permission strings (a JSON array of strings, no wildcards).
CREATE TABLE roles (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   text        NOT NULL DEFAULT current_setting('app.tenant_id'),
    name        text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    permissions jsonb       NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(permissions) = 'array'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX roles_tenant_name ON roles (tenant_id, name) WHERE deleted_at IS NULL;
ALTER TABLE roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE roles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON roles
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

CREATE TABLE user_roles (
    tenant_id  text        NOT NULL DEFAULT current_setting('app.tenant_id'),
    user_id    uuid        NOT NULL,
    role_id    uuid        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id, role_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id),
    FOREIGN KEY (tenant_id, role_id) REFERENCES roles (tenant_id, id)
);
CREATE INDEX user_roles_tenant_role ON user_roles (tenant_id, role_id);
ALTER TABLE user_roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_roles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON user_roles
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

-- A session is one login and the family of refresh tokens rotated from it. The host's gateway
-- checks every access token's sid with a privileged
--   SELECT revoked_at IS NULL AND expires_at > now() FROM plg_auth.sessions WHERE id = $1
-- so id stays globally unique (random 128 bits) and these two columns keep their meaning.
CREATE TABLE sessions (
    id                text        PRIMARY KEY,
    tenant_id         text        NOT NULL DEFAULT current_setting('app.tenant_id'),
    user_id           uuid        NOT NULL,
    expires_at        timestamptz NOT NULL,
    revoked_at        timestamptz,
    revoked_reason    text,
    last_refreshed_at timestamptz,
    user_agent        text        NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX sessions_tenant_user ON sessions (tenant_id, user_id) WHERE revoked_at IS NULL;
ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sessions
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

-- Refresh tokens, by the hex SHA-256 of the token (the token itself is never stored). Each is
-- single-use: used_at is set when it is exchanged, and presenting it again revokes its session.
CREATE TABLE refresh_tokens (
    token_hash text        NOT NULL,
    tenant_id  text        NOT NULL DEFAULT current_setting('app.tenant_id'),
    session_id text        NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, token_hash),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id)
);
CREATE INDEX refresh_tokens_tenant_session ON refresh_tokens (tenant_id, session_id);
ALTER TABLE refresh_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE refresh_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON refresh_tokens
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
