// Package store is the plugin registry's database: every uploaded plugin version (the signed bundle as
// uploaded), which version of each plugin is active, and the history of both. It lives in the host's
// schema, keel_host (migrations/host/0002_plugin_registry.sql), so every host sharing one database
// shares one registry.
//
// A host follows the registry by reconciling its running plugins against Active, triggered by Watch
// (LISTEN/NOTIFY, immediate) and by a periodic timer (so a missed notification heals). Writes that
// change the active set (Activate, Rollback, Deactivate) each run in one transaction that also
// appends to the history and sends the notification, so hosts are told exactly when, and only when,
// the change is committed.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Channel is the PostgreSQL notification channel on which every change of a plugin's active version
// is announced; the payload is the plugin name.
const Channel = "keel_plugins"

// Errors returned by the store, wrapped with the operation and the plugin; test with errors.Is.
var (
	// ErrNotFound: the plugin version (or, for Deactivate, an active version) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a version with this name and version number is already stored with different
	// content. Versions are immutable; publish a new version number instead.
	ErrConflict = errors.New("version already stored with different content")
	// ErrActive: the version is active and cannot be deleted; activate another version or
	// deactivate the plugin first.
	ErrActive = errors.New("version is active")
	// ErrNoPrevious: the plugin has no previous version to roll back to (never switched versions,
	// was deactivated since, or the previous version was deleted).
	ErrNoPrevious = errors.New("no previous version to roll back to")
)

// State is a version's lifecycle state.
type State string

// Version states.
const (
	// StateUploaded: stored, never activated.
	StateUploaded State = "uploaded"
	// StateActive: the plugin's active version.
	StateActive State = "active"
	// StateInactive: was active, since replaced or deactivated.
	StateInactive State = "inactive"
	// StateFailed: a host reported that activating it failed (see Version.LastError). The state is
	// shared by all hosts: one host's failure marks the version for everyone to see.
	StateFailed State = "failed"
)

// Action names an entry in a plugin's history.
type Action string

// History actions.
const (
	ActionUpload     Action = "upload"
	ActionActivate   Action = "activate"
	ActionRollback   Action = "rollback"
	ActionDeactivate Action = "deactivate"
	ActionDelete     Action = "delete"
	ActionFail       Action = "fail"
)

// Version is one stored plugin version, without its bundle bytes.
type Version struct {
	Name    string
	Version string
	// Digest is the bundle's identity (bundle.Bundle.Digest).
	Digest string
	// Signer is the key id of the signature verified at upload, "" for an unsigned bundle.
	Signer string
	// Manifest is the validated manifest with defaults applied, as JSON.
	Manifest   []byte
	Size       int64
	UploadedBy string
	UploadedAt time.Time
	State      State
	// LastError is the reason given by the most recent MarkFailed, kept after a later activation.
	LastError string
}

// Active is the active version of one plugin: what every host should be running.
type Active struct {
	Name    string
	Version string
	Digest  string
	// Generation increases by one on every activation, rollback and deactivation of the plugin, so a
	// host can tell a re-activation of the same version (a retry) from no change.
	Generation int64
	// PreviousVersion is the version Rollback returns to: the last different version that was
	// active before this one, "" if none.
	PreviousVersion string
	UpdatedBy       string
	UpdatedAt       time.Time
}

// Plugin is one plugin in List: its versions, newest upload first, and its active version (nil when
// none is active).
type Plugin struct {
	Name     string
	Active   *Active
	Versions []Version
}

// Event is one entry of a plugin's history.
type Event struct {
	ID      int64
	Name    string
	Version string
	Action  Action
	Actor   string
	// Detail is a JSON object whose fields depend on Action: digest, size and signer for an
	// upload; generation, from (the version replaced) and digest for an activation or rollback;
	// generation for a deactivation; digest for a delete; reason for a failure.
	Detail []byte
	At     time.Time
}

// Store is the registry. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	// host names this process in the history of failures it reports.
	host string

	done      chan struct{}
	closeOnce sync.Once
}

// Option configures Open.
type Option func(*options)

type options struct {
	logger *slog.Logger
}

// WithLogger sets the logger Watch reports connection trouble to; the default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// Open connects to the database at url (a postgres:// URL or key=value DSN, pool settings such as
// pool_max_conns included) and checks that the registry's tables exist.
//
// The store opens a pool of its own rather than taking the host's *postgres.DB: that type does not
// expose its pool or any way to run host statements, by design (it hands out plugin-scoped
// transactions only). The registry's traffic is small (uploads, activations, a reconcile every few
// seconds), so the default pool size is plenty; Watch uses one more, dedicated connection.
//
// The tables are created by the host migrations (postgres.Migrate with postgres.HostScope and
// hostmigrations.FS()); Open does not migrate, so a host that has not migrated fails here with a clear
// message instead of on the first upload.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	o := options{logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parse error may quote the URL, password included; do not wrap it.
		return nil, errors.New("registry: invalid database URL (check KEEL_DATABASE_URL)")
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "keel-registry"
	}
	where := fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("registry: create pool for %s: %w", where, err)
	}
	var ok bool
	err = pool.QueryRow(ctx, `SELECT to_regclass('keel_host.plugin_versions') IS NOT NULL
		AND to_regclass('keel_host.plugin_active') IS NOT NULL
		AND to_regclass('keel_host.plugin_events') IS NOT NULL`).Scan(&ok)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("registry: connect to %s as %s: %w", where, cfg.ConnConfig.User, err)
	}
	if !ok {
		pool.Close()
		return nil, fmt.Errorf("registry: %s has no plugin registry tables: apply the host migrations first (postgres.Migrate with postgres.HostScope)", where)
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "host"
	}
	return &Store{pool: pool, log: o.logger, host: host, done: make(chan struct{})}, nil
}

// Close ends every Watch and closes the pool. It waits for calls in progress to return their
// connections.
func (s *Store) Close() {
	s.closeOnce.Do(func() { close(s.done) })
	s.pool.Close()
}

// inPluginTx runs fn in a transaction holding the plugin's registry lock.
//
// Every write that reads and then changes a plugin's active row takes this lock first. A row lock
// (SELECT ... FOR UPDATE) alone cannot serialise them: before the first activation, and after a
// deactivation, there is no row to lock, and two hosts would both insert. A transaction-scoped
// advisory lock keyed on the plugin name covers that case, is released by COMMIT or ROLLBACK (so it
// cannot leak on a pooled connection), and is per database, i.e. shared by exactly the hosts that
// share the registry. The transaction is READ COMMITTED, so statements after the lock see what the
// previous holder committed.
func (s *Store) inPluginTx(ctx context.Context, name string, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('keel_plugins:' || $1, 0))`, name); err != nil {
			return fmt.Errorf("lock plugin: %w", err)
		}
		return fn(tx)
	})
}

// checkArgs refuses empty identifiers, which could only be a caller's bug, before any round trip.
func checkArgs(args ...string) error {
	for i := 0; i+1 < len(args); i += 2 {
		if args[i+1] == "" {
			return fmt.Errorf("%s is required", args[i])
		}
	}
	return nil
}
