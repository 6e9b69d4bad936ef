package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keelhq/keel/bridges/postgres/internal/migfile"
	"github.com/keelhq/keel/bridges/postgres/internal/sqlguard"
)

// HostScope is the migration scope of the host's own schema, keel_host. Every other scope is a
// plugin name.
const HostScope = "host"

// ErrChecksumMismatch reports an applied migration whose file has since changed. Applied migrations
// are history: fix forward with a new file instead of editing an old one.
var ErrChecksumMismatch = errors.New("applied migration has changed since it was applied")

// bootstrapSQL creates what Migrate needs before it can record anything. It lives in Go rather than in
// migrations/host because it is the table that records migrations/host.
const bootstrapSQL = `
CREATE SCHEMA IF NOT EXISTS keel_host;
REVOKE ALL ON SCHEMA keel_host FROM PUBLIC;
CREATE TABLE IF NOT EXISTS keel_host.schema_migrations (
	scope      text        NOT NULL,
	version    bigint      NOT NULL,
	name       text        NOT NULL,
	checksum   text        NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (scope, version)
);
REVOKE ALL ON keel_host.schema_migrations FROM PUBLIC;`

// MigrateOption configures Migrate.
type MigrateOption func(*migrateOptions)

type migrateOptions struct {
	statementTimeout time.Duration
}

// WithMigrationTimeout bounds each statement of a migration file (SET LOCAL statement_timeout), so a
// migration stuck behind a lock fails the activation instead of hanging it. Zero, the default, means
// no limit.
func WithMigrationTimeout(d time.Duration) MigrateOption {
	return func(o *migrateOptions) { o.statementTimeout = d }
}

// Migrate applies the NNNN_description.sql files at the root of src that scope has not applied yet,
// in numeric order, each in its own transaction together with its row in keel_host.schema_migrations.
// It returns the names of the files this call applied; files applied earlier, or concurrently by
// another host, are not listed.
//
// Scope HostScope runs as the connecting (privileged) user. Any other scope must be a plugin name: the
// plugin's schema and role are ensured first, the files must pass the plugin migration guard, and they
// run as the plugin's role with search_path set to its schema, so everything they create belongs to
// the plugin and nothing else is reachable.
//
// Several hosts may migrate the same scope at once: each file is applied under a transaction-scoped
// advisory lock keyed on the scope and re-checked after the lock is taken, so it runs exactly once.
// An applied file whose checksum or name changed fails with ErrChecksumMismatch before anything runs.
func Migrate(ctx context.Context, db *DB, scope string, src fs.FS, opts ...MigrateOption) (applied []string, err error) {
	var o migrateOptions
	for _, opt := range opts {
		opt(&o)
	}
	var plugin *pluginNames
	if scope != HostScope {
		n, err := namesFor(scope)
		if err != nil {
			return nil, fmt.Errorf("postgres: migrate scope %q: %w", scope, err)
		}
		plugin = &n
	}
	files, err := migfile.Load(src)
	if err != nil {
		return nil, fmt.Errorf("postgres: migrate scope %q: %w", scope, err)
	}
	if plugin != nil {
		for _, f := range files {
			if err := sqlguard.CheckMigration(f.SQL); err != nil {
				return nil, fmt.Errorf("postgres: migrate scope %q: %s: %w", scope, f.Name, err)
			}
		}
	}
	if err := bootstrap(ctx, db); err != nil {
		return nil, fmt.Errorf("postgres: migrate scope %q: %w", scope, err)
	}
	if plugin != nil {
		if _, err := EnsurePlugin(ctx, db, scope); err != nil {
			return nil, fmt.Errorf("postgres: migrate scope %q: %w", scope, err)
		}
	}

	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: migrate scope %q: acquire connection: %w", scope, err)
	}
	defer func() {
		if plugin != nil && conn.Conn().PgConn().TxStatus() == 'I' {
			// Temporary tables a plugin migration created would outlive it on this pooled connection.
			if _, derr := conn.Exec(context.WithoutCancel(ctx), "DISCARD TEMP"); derr != nil {
				conn.Conn().Close(context.WithoutCancel(ctx)) //nolint:errcheck // the pool discards the closed connection
			}
		}
		conn.Release()
	}()

	recorded, err := loadRecorded(ctx, conn, scope)
	if err != nil {
		return nil, fmt.Errorf("postgres: migrate scope %q: %w", scope, err)
	}
	inSource := make(map[int64]bool, len(files))
	for _, f := range files {
		inSource[f.Version] = true
		if r, ok := recorded[f.Version]; ok {
			if err := r.matches(f); err != nil {
				return nil, fmt.Errorf("postgres: migrate scope %q: %w", scope, err)
			}
		}
	}
	for v, r := range recorded {
		if !inSource[v] {
			db.log.Warn("applied migration is missing from the source", "scope", scope, "file", r.name, "version", v)
		}
	}

	key := lockKey("migrate", scope)
	for _, f := range files {
		if _, ok := recorded[f.Version]; ok {
			continue
		}
		start := time.Now()
		did, err := applyOne(ctx, conn, scope, plugin, f, key, o)
		if err != nil {
			return applied, fmt.Errorf("postgres: migrate scope %q: %s: %w", scope, f.Name, err)
		}
		if did {
			applied = append(applied, f.Name)
			db.log.Info("applied migration", "scope", scope, "file", f.Name, "duration", time.Since(start))
		}
	}
	if plugin != nil {
		db.bumpStatements(plugin.schema) // tables may have changed: no plan prepared before may run after
	}
	return applied, nil
}

type record struct {
	name, checksum string
}

func (r record) matches(f migfile.File) error {
	if r.checksum != f.Checksum {
		return fmt.Errorf("%s: %w (recorded sha256 %s, file sha256 %s)", f.Name, ErrChecksumMismatch, r.checksum, f.Checksum)
	}
	if r.name != f.Name {
		return fmt.Errorf("%s: %w (version %d was applied as %s)", f.Name, ErrChecksumMismatch, f.Version, r.name)
	}
	return nil
}

func loadRecorded(ctx context.Context, conn *pgxpool.Conn, scope string) (map[int64]record, error) {
	rows, err := conn.Query(ctx, `SELECT version, name, checksum FROM keel_host.schema_migrations WHERE scope = $1`, scope)
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	defer rows.Close()
	out := make(map[int64]record)
	for rows.Next() {
		var v int64
		var r record
		if err := rows.Scan(&v, &r.name, &r.checksum); err != nil {
			return nil, fmt.Errorf("read schema_migrations: %w", err)
		}
		out[v] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	return out, nil
}

// applyOne applies f unless another host applied it while this one waited for the lock. It reports
// whether it applied the file.
func applyOne(ctx context.Context, conn *pgxpool.Conn, scope string, plugin *pluginNames, f migfile.File, key int64, o migrateOptions) (bool, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, key); err != nil {
		return false, fmt.Errorf("lock scope: %w", err)
	}
	var r record
	err = tx.QueryRow(ctx, `SELECT name, checksum FROM keel_host.schema_migrations WHERE scope = $1 AND version = $2`, scope, f.Version).Scan(&r.name, &r.checksum)
	switch {
	case err == nil:
		if err := r.matches(f); err != nil {
			return false, err
		}
		return false, tx.Commit(ctx)
	case !errors.Is(err, pgx.ErrNoRows):
		return false, fmt.Errorf("read schema_migrations: %w", err)
	}
	if o.statementTimeout > 0 {
		if _, err := tx.Exec(ctx, `SELECT set_config('statement_timeout', $1, true)`, strconv.FormatInt(o.statementTimeout.Milliseconds(), 10)); err != nil {
			return false, fmt.Errorf("set statement_timeout: %w", err)
		}
	}
	if plugin != nil {
		if _, err := tx.Exec(ctx, `SELECT set_config('role', $1, true), set_config('search_path', $2, true)`, plugin.role, plugin.searchPath()); err != nil {
			return false, fmt.Errorf("switch to role %s: %w", plugin.role, err)
		}
	}
	if strings.TrimSpace(f.SQL) != "" {
		// No arguments: pgx sends the file with the simple protocol, which runs several statements.
		if _, err := tx.Exec(ctx, f.SQL); err != nil {
			return false, fmt.Errorf("apply: %w", err)
		}
	}
	if plugin != nil {
		for _, sql := range leavePluginSQL {
			if _, err := tx.Exec(ctx, sql); err != nil {
				return false, fmt.Errorf("leave plugin role (%s): %w", sql, err)
			}
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO keel_host.schema_migrations (scope, version, name, checksum) VALUES ($1, $2, $3, $4)`,
		scope, f.Version, f.Name, f.Checksum); err != nil {
		return false, fmt.Errorf("record: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("commit: %w", err)
	}
	return true, nil
}

// bootstrap creates keel_host.schema_migrations once per database, serialised across hosts because
// concurrent CREATE ... IF NOT EXISTS can still collide in the catalog.
func bootstrap(ctx context.Context, db *DB) error {
	var ok bool
	if err := db.pool.QueryRow(ctx, `SELECT to_regclass('keel_host.schema_migrations') IS NOT NULL`).Scan(&ok); err != nil {
		return fmt.Errorf("check keel_host schema: %w", err)
	}
	if ok {
		return nil
	}
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("bootstrap keel_host: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey("bootstrap", "keel_host")); err != nil {
		return fmt.Errorf("bootstrap keel_host: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, bootstrapSQL); err != nil {
		return fmt.Errorf("bootstrap keel_host: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("bootstrap keel_host: commit: %w", err)
	}
	return nil
}

// lockKey maps a (kind, name) pair to an advisory lock key. Collisions only serialise unrelated work,
// they never break it.
func lockKey(kind, name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("keel/" + kind + "/" + name))
	return int64(h.Sum64())
}
