package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keelhq/keel/bridges/postgres/internal/sqlguard"
)

// Name prefixes of the objects a plugin gets. They are fixed so operators can find every plugin
// object with one LIKE, and so no plugin name can produce a host object's name.
const (
	SchemaPrefix = "plg_"
	RolePrefix   = "keel_plg_"
)

// ErrInvalidPluginName reports a plugin name outside [a-z][a-z0-9-]{0,40}, or the reserved "host".
var ErrInvalidPluginName = errors.New("plugin name must match [a-z][a-z0-9-]{0,40} and not be \"host\"")

// ErrStatementDenied reports plugin SQL refused by the guard before it reached PostgreSQL (transaction
// control, SET/RESET, set_config, DDL at run time, ...).
var ErrStatementDenied = sqlguard.ErrDenied

// ErrUnprotectedTenantTables reports plugin tables with a tenant_id column that lack the row-level
// security template.
var ErrUnprotectedTenantTables = errors.New("tenant tables without row-level security")

var pluginNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,40}$`)

type pluginNames struct {
	name, schema, role string
	// The transaction setup's constant parameters, encoded once (see PluginDB.Begin);
	// never modified, so copies of a PluginDB share them.
	roleParam, searchPathParam, nameParam []byte
}

func namesFor(plugin string) (pluginNames, error) {
	if !pluginNameRE.MatchString(plugin) || plugin == HostScope {
		return pluginNames{}, fmt.Errorf("%q: %w", plugin, ErrInvalidPluginName)
	}
	base := strings.ReplaceAll(plugin, "-", "_")
	n := pluginNames{name: plugin, schema: SchemaPrefix + base, role: RolePrefix + base}
	n.roleParam, n.searchPathParam, n.nameParam = []byte(n.role), []byte(n.searchPath()), []byte(n.name)
	return n, nil
}

// searchPath puts pg_temp explicitly last: otherwise PostgreSQL searches temporary tables first, and a
// temporary table left on a pooled connection could shadow a plugin's table.
func (n pluginNames) searchPath() string { return n.schema + ", pg_temp" }

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

// Default per-transaction limits; a plugin's manifest may lower or raise them through PluginOption.
const (
	DefaultStatementTimeout = 5 * time.Second
	DefaultMaxRows          = 10_000
	DefaultMaxResultBytes   = 16 << 20
)

type txLimits struct {
	statementTimeout time.Duration
	maxRows          int
	maxBytes         int64
	readOnly         bool
}

func (l txLimits) validate() error {
	if l.statementTimeout < 0 || l.maxRows <= 0 || l.maxBytes <= 0 {
		return fmt.Errorf("invalid limits (timeout %s, rows %d, bytes %d)", l.statementTimeout, l.maxRows, l.maxBytes)
	}
	return nil
}

// PluginOption sets a limit on the transactions of one plugin.
type PluginOption func(*txLimits)

// WithStatementTimeout bounds every statement of the plugin's transactions (SET LOCAL
// statement_timeout). Zero disables the bound, which only the host should choose.
func WithStatementTimeout(d time.Duration) PluginOption {
	return func(l *txLimits) { l.statementTimeout = d }
}

// WithMaxRows caps the rows one Query may return; more is an ErrResultTooLarge.
func WithMaxRows(n int) PluginOption { return func(l *txLimits) { l.maxRows = n } }

// WithMaxResultBytes caps the raw bytes of the values one Query may return; more is an
// ErrResultTooLarge.
func WithMaxResultBytes(n int64) PluginOption { return func(l *txLimits) { l.maxBytes = n } }

// ReadOnly makes the transactions read-only units of work: PostgreSQL refuses every
// write (transaction_read_only), Commit accepts no outbox events, and a statement that
// is already prepared on the connection runs with the plugin setup in one implicit
// transaction, one round trip and no BEGIN or COMMIT. Each such statement sees its own
// snapshot, as statements of a READ COMMITTED transaction do. The first use of a
// statement on a connection, which must prepare it, runs in a read-only transaction of
// its own that ends with the statement, so it behaves the same. RATIONALE.md,
// "Read-only routes".
func ReadOnly() PluginOption { return func(l *txLimits) { l.readOnly = true } }

// PluginDB is one plugin's access to the shared pool: every transaction it begins runs as the plugin's
// role, in the plugin's schema, for one tenant. The zero value is unusable; get one from EnsurePlugin.
// A PluginDB is a small value, safe to copy and to use concurrently.
type PluginDB struct {
	db     *DB
	names  pluginNames
	limits txLimits
}

// Name returns the plugin name.
func (p PluginDB) Name() string { return p.names.name }

// Schema returns the plugin's schema, plg_<name> with '-' mapped to '_'.
func (p PluginDB) Schema() string { return p.names.schema }

// Role returns the plugin's role, keel_plg_<name> with '-' mapped to '_'.
func (p PluginDB) Role() string { return p.names.role }

// With returns a copy of p whose transactions use the given limits instead, for example a longer
// statement timeout for one export job: p.With(WithStatementTimeout(time.Minute)).Begin(ctx, tenant).
// Invalid limits make Begin fail.
func (p PluginDB) With(opts ...PluginOption) PluginDB {
	for _, opt := range opts {
		opt(&p.limits)
	}
	return p
}

// EnsurePlugin creates, if missing, the plugin's schema plg_<name> and NOLOGIN role keel_plg_<name>,
// makes the role own the schema, and revokes from it everything else this role could have been granted:
// schema public, schema keel_host and its tables, and CREATE on the database. It is idempotent and safe
// to run from several hosts at once.
//
// It fails if the role exists with LOGIN, SUPERUSER, BYPASSRLS, CREATEDB or CREATEROLE, if the schema
// exists with another owner, or if PUBLIC (which every role belongs to, beyond a per-role REVOKE) may
// create objects in schema public or in the database: those would break the isolation the plugin is
// promised, and fixing them is a database owner's decision.
func EnsurePlugin(ctx context.Context, db *DB, plugin string, opts ...PluginOption) (PluginDB, error) {
	n, err := namesFor(plugin)
	if err != nil {
		return PluginDB{}, fmt.Errorf("postgres: ensure plugin: %w", err)
	}
	l := txLimits{statementTimeout: DefaultStatementTimeout, maxRows: DefaultMaxRows, maxBytes: DefaultMaxResultBytes}
	for _, opt := range opts {
		opt(&l)
	}
	if err := l.validate(); err != nil {
		return PluginDB{}, fmt.Errorf("postgres: plugin %q: %w", plugin, err)
	}
	if err := bootstrap(ctx, db); err != nil {
		return PluginDB{}, fmt.Errorf("postgres: plugin %q: %w", plugin, err)
	}
	for attempt := 1; ; attempt++ {
		err = provision(ctx, db, n)
		if err == nil {
			break
		}
		// Roles are shared by every database of the cluster, so the advisory lock (per database) cannot
		// serialise two databases creating the same role; the loser of that race simply retries.
		if attempt >= 5 || !retryable(err) || ctx.Err() != nil {
			return PluginDB{}, fmt.Errorf("postgres: plugin %q: provision schema %s and role %s: %w", plugin, n.schema, n.role, err)
		}
		db.log.Debug("retrying plugin provisioning after a concurrent change", "plugin", plugin, "attempt", attempt, "err", err)
		time.Sleep(time.Duration(attempt*10+rand.IntN(20)) * time.Millisecond)
	}
	return PluginDB{db: db, names: n, limits: l}, nil
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case "42710", "23505", "40001", "40P01": // duplicate_object, unique_violation, serialization, deadlock
		return true
	case "XX000":
		return strings.Contains(pe.Message, "concurrently")
	}
	return false
}

func provision(ctx context.Context, db *DB, n pluginNames) error {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey("plugin", n.name)); err != nil {
		return fmt.Errorf("lock: %w", err)
	}

	var super, login, bypass, createdb, createrole bool
	err = tx.QueryRow(ctx, `SELECT rolsuper, rolcanlogin, rolbypassrls, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = $1`, n.role).
		Scan(&super, &login, &bypass, &createdb, &createrole)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if _, err := tx.Exec(ctx, `CREATE ROLE `+ident(n.role)+` NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS`); err != nil {
			return fmt.Errorf("create role: %w", err)
		}
	case err != nil:
		return fmt.Errorf("read role: %w", err)
	case super || login || bypass || createdb || createrole:
		return fmt.Errorf("role %s exists with LOGIN, SUPERUSER, BYPASSRLS, CREATEDB or CREATEROLE; refusing to use it as a plugin sandbox", n.role)
	}

	// SET ROLE needs membership unless the host is a superuser.
	var hostSuper, member bool
	if err := tx.QueryRow(ctx, `SELECT r.rolsuper, pg_has_role(current_user, $1, 'MEMBER') FROM pg_roles r WHERE r.rolname = current_user`, n.role).
		Scan(&hostSuper, &member); err != nil {
		return fmt.Errorf("read host role: %w", err)
	}
	if !hostSuper && !member {
		if _, err := tx.Exec(ctx, `GRANT `+ident(n.role)+` TO CURRENT_USER`); err != nil {
			return fmt.Errorf("grant %s to the host user: %w", n.role, err)
		}
	}

	var owner string
	err = tx.QueryRow(ctx, `SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1`, n.schema).Scan(&owner)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if _, err := tx.Exec(ctx, `CREATE SCHEMA `+ident(n.schema)+` AUTHORIZATION `+ident(n.role)); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
	case err != nil:
		return fmt.Errorf("read schema: %w", err)
	case owner != n.role:
		return fmt.Errorf("schema %s exists and is owned by %s, not %s", n.schema, owner, n.role)
	}

	var dbname string
	if err := tx.QueryRow(ctx, `SELECT current_database()`).Scan(&dbname); err != nil {
		return fmt.Errorf("read database name: %w", err)
	}
	role := ident(n.role)
	revokes := strings.Join([]string{
		`REVOKE ALL ON SCHEMA ` + ident(n.schema) + ` FROM PUBLIC`,
		`REVOKE ALL ON SCHEMA public FROM ` + role,
		`REVOKE ALL ON ALL TABLES IN SCHEMA public FROM ` + role,
		`REVOKE ALL ON SCHEMA keel_host FROM ` + role,
		`REVOKE ALL ON ALL TABLES IN SCHEMA keel_host FROM ` + role,
		`REVOKE ALL ON ALL SEQUENCES IN SCHEMA keel_host FROM ` + role,
		`REVOKE ALL ON DATABASE ` + ident(dbname) + ` FROM ` + role,
	}, ";\n")
	if _, err := tx.Exec(ctx, revokes); err != nil {
		return fmt.Errorf("revoke privileges: %w", err)
	}

	var publicCreate, dbCreate bool
	if err := tx.QueryRow(ctx, `SELECT has_schema_privilege($1, 'public', 'CREATE'), has_database_privilege($1, current_database(), 'CREATE')`, n.role).
		Scan(&publicCreate, &dbCreate); err != nil {
		return fmt.Errorf("check privileges: %w", err)
	}
	if publicCreate {
		return fmt.Errorf("every role may create objects in schema public (a pre-PostgreSQL-15 default); run REVOKE CREATE ON SCHEMA public FROM PUBLIC as the database owner")
	}
	if dbCreate {
		return fmt.Errorf("PUBLIC may create schemas in database %s; run REVOKE CREATE ON DATABASE %s FROM PUBLIC as its owner", dbname, ident(dbname))
	}

	// set_config is how a statement would change its role or tenant; the SQL guard
	// refuses the name, and taking EXECUTE from PUBLIC closes every spelling of it the
	// guard might miss (RATIONALE.md). The host's own setup statement is checked as the
	// host's user, before the role switch, so it keeps working, and the database's
	// owner keeps the privilege (pg_database_owner) for a host that later connects as
	// the owner rather than a superuser. Only a superuser may revoke it; otherwise an
	// operator is told to.
	if hostSuper {
		if _, err := tx.Exec(ctx, `REVOKE EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) FROM PUBLIC;
			GRANT EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) TO pg_database_owner`); err != nil {
			return fmt.Errorf("revoke set_config from PUBLIC: %w", err)
		}
	}
	var canSet, hostCanSet bool
	if err := tx.QueryRow(ctx, `SELECT has_function_privilege($1, 'pg_catalog.set_config(text, text, boolean)', 'EXECUTE'),
		has_function_privilege(current_user, 'pg_catalog.set_config(text, text, boolean)', 'EXECUTE')`, n.role).Scan(&canSet, &hostCanSet); err != nil {
		return fmt.Errorf("check set_config privilege: %w", err)
	}
	if !hostCanSet {
		return errors.New("the host's database user may not call set_config, which every plugin transaction starts with; " +
			"as a superuser run GRANT EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) TO <host user>")
	}
	if canSet {
		db.log.Warn("plugin role may call set_config; only the SQL guard stops it from changing its role or tenant",
			"plugin", n.name, "role", n.role,
			"fix", "as a superuser: REVOKE EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) FROM PUBLIC; GRANT EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) TO <host user>")
	}
	return tx.Commit(ctx)
}

// VerifyTenantTables checks the plugin's schema after its migrations: every table with a tenant_id
// column must have row-level security enabled and forced, at least one permissive policy, and only
// permissive policies that mention app.tenant_id (one USING (true) policy would open the table to every
// tenant). It returns an ErrUnprotectedTenantTables error listing each offending table and why.
// The policy check reads the policy text, so it catches omissions and copy-paste mistakes, not a policy
// written to look right while doing something else.
func (db *DB) VerifyTenantTables(ctx context.Context, plugin string) error {
	n, err := namesFor(plugin)
	if err != nil {
		return fmt.Errorf("postgres: verify tenant tables: %w", err)
	}
	rows, err := db.pool.Query(ctx, `
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
       count(p.oid) FILTER (WHERE p.polpermissive),
       coalesce(array_agg(p.polname::text ORDER BY p.polname) FILTER (WHERE p.polpermissive AND NOT (
           coalesce(pg_get_expr(p.polqual, p.polrelid) LIKE '%app.tenant_id%', true) AND
           coalesce(pg_get_expr(p.polwithcheck, p.polrelid) LIKE '%app.tenant_id%', true))), '{}')
FROM pg_class c
JOIN pg_namespace ns ON ns.oid = c.relnamespace
LEFT JOIN pg_policy p ON p.polrelid = c.oid
WHERE ns.nspname = $1 AND c.relkind IN ('r', 'p')
  AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND a.attnum > 0 AND NOT a.attisdropped)
GROUP BY c.oid, c.relname, c.relrowsecurity, c.relforcerowsecurity
ORDER BY c.relname`, n.schema)
	if err != nil {
		return fmt.Errorf("postgres: plugin %q: verify tenant tables: %w", plugin, err)
	}
	var problems []string
	for rows.Next() {
		var table string
		var enabled, forced bool
		var permissive int64
		var loose []string
		if err := rows.Scan(&table, &enabled, &forced, &permissive, &loose); err != nil {
			rows.Close()
			return fmt.Errorf("postgres: plugin %q: verify tenant tables: %w", plugin, err)
		}
		var why []string
		if !enabled {
			why = append(why, "row level security not enabled")
		}
		if !forced {
			why = append(why, "row level security not forced")
		}
		if permissive == 0 {
			why = append(why, "no permissive policy")
		}
		for _, p := range loose {
			why = append(why, fmt.Sprintf("policy %s does not check app.tenant_id", p))
		}
		if len(why) > 0 {
			problems = append(problems, n.schema+"."+table+" ("+strings.Join(why, ", ")+")")
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: plugin %q: verify tenant tables: %w", plugin, err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("postgres: plugin %q: %w: %s", plugin, ErrUnprotectedTenantTables, strings.Join(problems, "; "))
	}
	return nil
}
