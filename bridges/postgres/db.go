// Package postgres is Keel's PostgreSQL bridge: one shared connection pool, checksummed migrations,
// per-plugin schemas and roles, the per-invocation transaction with tenant row-level security, and the
// transactional outbox with its relay.
//
// The host connects as a privileged user. A plugin never gets a connection of its own: each
// invocation borrows one inside a transaction that first switches to the plugin's role, schema and
// tenant with SET LOCAL semantics, so nothing outlives the transaction on the pooled connection.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults chosen for a host that shares one database with others: bounded pool, connections recycled
// so a failover or a pg_hba change is picked up, and a connect timeout so start-up fails fast.
const (
	defaultMaxConnLifetime = 30 * time.Minute
	defaultMaxConnIdleTime = 5 * time.Minute
	defaultHealthCheck     = 30 * time.Second
	defaultConnectTimeout  = 5 * time.Second
)

// DB is the pool shared by the host and every plugin. It is safe for concurrent use and must outlive
// every PluginDB, Tx and Relay made from it.
type DB struct {
	pool *pgxpool.Pool
	log  *slog.Logger

	// typeNames caches pg_type names of result columns that pgx does not know (enums, domains, ...).
	typeNames sync.Map // uint32 -> string

	// stmtGens and prepared track plugin prepared statements (prepared.go).
	stmtGens sync.Map // schema -> *atomic.Int64
	prepared sync.Map // *pgconn.PgConn -> *preparedSet

	guard guardMemo // the SQL guard's verdicts per statement text
	names nameMemo  // prepared statement names (prepared.go)
}

// Option configures Open.
type Option func(*options)

type options struct {
	maxConns        int32
	minConns        int32
	maxConnLifetime time.Duration
	maxConnIdleTime time.Duration
	logger          *slog.Logger
}

// WithMaxConns caps the pool. Every in-flight plugin invocation that uses SQL holds one connection, so
// this is also the number of concurrent SQL invocations per host.
func WithMaxConns(n int32) Option { return func(o *options) { o.maxConns = n } }

// WithMinConns keeps n connections open so the first requests after idle do not pay for a connect.
func WithMinConns(n int32) Option { return func(o *options) { o.minConns = n } }

// WithConnLifetime recycles connections after d so server-side changes (failover, settings) reach
// long-running hosts.
func WithConnLifetime(d time.Duration) Option { return func(o *options) { o.maxConnLifetime = d } }

// WithConnIdleTime closes connections idle for longer than d.
func WithConnIdleTime(d time.Duration) Option { return func(o *options) { o.maxConnIdleTime = d } }

// WithLogger sets the logger for migrations, plugin provisioning and the relay; the default is
// slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// Open connects to the database at url (a postgres:// URL or key=value DSN) and pings it.
//
// Session settings the bridge relies on to decode values (DateStyle ISO, IntervalStyle postgres,
// TimeZone UTC, bytea_output hex) are pinned as startup parameters; plugins cannot change them because
// the SQL guard refuses SET and set_config.
func Open(ctx context.Context, url string, opts ...Option) (*DB, error) {
	o := options{maxConnLifetime: defaultMaxConnLifetime, maxConnIdleTime: defaultMaxConnIdleTime}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parse error may quote the URL, password included; do not wrap it verbatim.
		return nil, errors.New("postgres: invalid database URL (check KEEL_DATABASE_URL)")
	}
	if o.maxConns < 0 || o.minConns < 0 || (o.maxConns > 0 && o.minConns > o.maxConns) {
		return nil, fmt.Errorf("postgres: invalid pool size (min %d, max %d)", o.minConns, o.maxConns)
	}
	if o.maxConns > 0 {
		cfg.MaxConns = o.maxConns
	}
	if o.minConns > 0 {
		cfg.MinConns = o.minConns
	}
	cfg.MaxConnLifetime = o.maxConnLifetime
	cfg.MaxConnIdleTime = o.maxConnIdleTime
	cfg.HealthCheckPeriod = defaultHealthCheck
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	rp := cfg.ConnConfig.RuntimeParams
	if rp["application_name"] == "" {
		rp["application_name"] = "keel"
	}
	rp["DateStyle"] = "ISO, MDY"
	rp["IntervalStyle"] = "postgres"
	rp["TimeZone"] = "UTC"
	rp["bytea_output"] = "hex"
	// No AfterRelease hook: pgxpool already destroys a released connection that is still inside a
	// transaction or busy, which is the backstop Tx relies on if a rollback cannot be sent.
	db := &DB{log: o.logger}
	cfg.BeforeClose = func(c *pgx.Conn) { db.forget(c.PgConn()) }
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: create pool for %s:%d/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect to %s:%d/%s as %s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, cfg.ConnConfig.User, err)
	}
	db.pool = pool
	return db, nil
}

// Ping checks that a connection can be acquired and answers; /readyz uses it.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

// Close closes the pool. It blocks until every acquired connection is back, so stop Relays and end
// every Tx (Commit or Rollback) first: a forgotten Tx makes Close wait forever.
func (db *DB) Close() { db.pool.Close() }
