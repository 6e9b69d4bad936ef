package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// maxReason bounds the failure reason MarkFailed stores; error chains from a compiler can be long.
const maxReason = 4096

// Activate makes version the plugin's active version, for every host sharing the database.
//
// In one transaction, under the plugin's lock (see inPluginTx): it locks the active row, records the
// version it replaces as PreviousVersion, increments Generation, marks the new version active and
// the one it replaces inactive, appends an activate event and sends NOTIFY keel_plugins with the
// plugin name, which PostgreSQL delivers only once the transaction commits. Concurrent activations
// of one plugin therefore apply one after the other, each incrementing Generation once.
//
// Activating the version that is already active is not a no-op: it increments Generation (telling
// hosts that failed to load it to try again) and keeps PreviousVersion, so Rollback still returns to
// the last different version. A failed version may be activated again.
func (s *Store) Activate(ctx context.Context, name, version, actor string) (Active, error) {
	if err := checkArgs("actor", actor); err != nil {
		return Active{}, fmt.Errorf("registry: activate %s@%s: %w", name, version, err)
	}
	var a Active
	err := s.inPluginTx(ctx, name, func(tx pgx.Tx) error {
		var err error
		a, err = activateLocked(ctx, tx, name, version, actor, ActionActivate)
		return err
	})
	if err != nil {
		return Active{}, fmt.Errorf("registry: activate %s@%s: %w", name, version, err)
	}
	return a, nil
}

// Rollback activates the plugin's PreviousVersion, exactly as Activate would (the version rolled
// back from becomes the new PreviousVersion, so a second Rollback undoes the first). It fails with
// ErrNoPrevious when there is none.
func (s *Store) Rollback(ctx context.Context, name, actor string) (Active, error) {
	if err := checkArgs("actor", actor); err != nil {
		return Active{}, fmt.Errorf("registry: rollback %s: %w", name, err)
	}
	var a Active
	err := s.inPluginTx(ctx, name, func(tx pgx.Tx) error {
		var previous string
		err := tx.QueryRow(ctx, `SELECT coalesce(previous_version, '') FROM keel_host.plugin_active
			WHERE name = $1 FOR UPDATE`, name).Scan(&previous)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if previous == "" {
			return ErrNoPrevious
		}
		a, err = activateLocked(ctx, tx, name, previous, actor, ActionRollback)
		if errors.Is(err, ErrNotFound) {
			// The foreign key keeps previous_version pointing at a stored version; this is
			// only reachable if someone edited the tables by hand.
			return fmt.Errorf("previous version %s: %w", previous, ErrNoPrevious)
		}
		return err
	})
	if err != nil {
		return Active{}, fmt.Errorf("registry: rollback %s: %w", name, err)
	}
	return a, nil
}

// activateLocked is Activate and Rollback's common part; the caller holds the plugin's lock.
func activateLocked(ctx context.Context, tx pgx.Tx, name, version, actor string, action Action) (Active, error) {
	var cur Active
	err := tx.QueryRow(ctx, `SELECT version, generation, coalesce(previous_version, '')
		FROM keel_host.plugin_active WHERE name = $1 FOR UPDATE`, name).Scan(&cur.Version, &cur.Generation, &cur.PreviousVersion)
	hasCur := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Active{}, err
	}
	a := Active{Name: name, Version: version, UpdatedBy: actor}
	err = tx.QueryRow(ctx, `SELECT digest FROM keel_host.plugin_versions WHERE name = $1 AND version = $2 FOR UPDATE`,
		name, version).Scan(&a.Digest)
	if errors.Is(err, pgx.ErrNoRows) {
		return Active{}, ErrNotFound
	}
	if err != nil {
		return Active{}, err
	}
	switch {
	case !hasCur:
		// First activation, or the first since a deactivation: continue from the generation the
		// history recorded, so generations never repeat for a plugin.
		if a.Generation, err = lastGeneration(ctx, tx, name); err != nil {
			return Active{}, err
		}
		a.Generation++
	case cur.Version == version:
		a.Generation, a.PreviousVersion = cur.Generation+1, cur.PreviousVersion
	default:
		a.Generation, a.PreviousVersion = cur.Generation+1, cur.Version
	}
	detail, err := json.Marshal(struct {
		Generation int64  `json:"generation"`
		From       string `json:"from,omitempty"`
		Digest     string `json:"digest"`
	}{a.Generation, cur.Version, a.Digest})
	if err != nil {
		return Active{}, err
	}

	// The rest is writes whose results need no decision: one round trip.
	var batch pgx.Batch
	batch.Queue(`INSERT INTO keel_host.plugin_active AS a
			(name, version, digest, generation, previous_version, updated_by, updated_at)
		VALUES ($1, $2, $3, $4, nullif($5, ''), $6, now())
		ON CONFLICT (name) DO UPDATE SET version = excluded.version, digest = excluded.digest,
			generation = excluded.generation, previous_version = excluded.previous_version,
			updated_by = excluded.updated_by, updated_at = excluded.updated_at
		RETURNING updated_at`,
		name, version, a.Digest, a.Generation, a.PreviousVersion, actor).QueryRow(func(row pgx.Row) error {
		return row.Scan(&a.UpdatedAt)
	})
	// Whatever else claims to be active becomes inactive (normally just the replaced version); a
	// version marked failed keeps that state until it is activated again.
	batch.Queue(`UPDATE keel_host.plugin_versions
		SET state = CASE WHEN version = $2 THEN 'active' ELSE 'inactive' END
		WHERE name = $1 AND (version = $2 OR state = 'active')`, name, version)
	batch.Queue(`INSERT INTO keel_host.plugin_events (name, version, action, actor, detail) VALUES ($1, $2, $3, $4, $5)`,
		name, version, string(action), actor, detail)
	batch.Queue(`SELECT pg_notify($1, $2)`, Channel, name)
	if err := tx.SendBatch(ctx, &batch).Close(); err != nil {
		return Active{}, err
	}
	return a, nil
}

// lastGeneration returns the highest generation the plugin's history records, 0 if none.
func lastGeneration(ctx context.Context, tx pgx.Tx, name string) (int64, error) {
	var g int64
	err := tx.QueryRow(ctx, `SELECT coalesce(max((detail->>'generation')::bigint), 0) FROM keel_host.plugin_events
		WHERE name = $1 AND action IN ('activate', 'rollback', 'deactivate')`, name).Scan(&g)
	return g, err
}

// Deactivate stops the plugin everywhere: it removes the plugin's active row, marks the version
// inactive, records the deactivation (with the generation it ends, so the next activation continues
// from it) and notifies hosts. It fails with ErrNotFound when no version is active. The plugin is
// left without a rollback target.
func (s *Store) Deactivate(ctx context.Context, name, actor string) error {
	if err := checkArgs("actor", actor); err != nil {
		return fmt.Errorf("registry: deactivate %s: %w", name, err)
	}
	err := s.inPluginTx(ctx, name, func(tx pgx.Tx) error {
		var version string
		var generation int64
		err := tx.QueryRow(ctx, `DELETE FROM keel_host.plugin_active WHERE name = $1 RETURNING version, generation`,
			name).Scan(&version, &generation)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("no active version: %w", ErrNotFound)
		}
		if err != nil {
			return err
		}
		detail, err := json.Marshal(struct {
			Generation int64 `json:"generation"`
		}{generation + 1})
		if err != nil {
			return err
		}
		var batch pgx.Batch
		batch.Queue(`UPDATE keel_host.plugin_versions SET state = 'inactive'
			WHERE name = $1 AND state = 'active'`, name)
		batch.Queue(`INSERT INTO keel_host.plugin_events (name, version, action, actor, detail) VALUES ($1, $2, $3, $4, $5)`,
			name, version, string(ActionDeactivate), actor, detail)
		batch.Queue(`SELECT pg_notify($1, $2)`, Channel, name)
		return tx.SendBatch(ctx, &batch).Close()
	})
	if err != nil {
		return fmt.Errorf("registry: deactivate %s: %w", name, err)
	}
	return nil
}

// MarkFailed records that this host failed to activate a version (verification, compilation,
// migration or health check): the version's state becomes failed, reason is kept as its LastError
// and appended to the history with this machine's host name as the actor. It does not change the
// active version or notify: other hosts may be running it fine, and the operator decides whether to
// roll back. A host should report a failure once per generation, not on every reconcile.
func (s *Store) MarkFailed(ctx context.Context, name, version, reason string) error {
	// PostgreSQL text cannot hold NUL; error strings rarely do, but a reason must never fail to save.
	reason = strings.ToValidUTF8(strings.ReplaceAll(reason, "\x00", ""), "\uFFFD")
	if len(reason) > maxReason {
		reason = strings.ToValidUTF8(reason[:maxReason], "") + "…"
	}
	err := s.inPluginTx(ctx, name, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE keel_host.plugin_versions SET state = 'failed', last_error = $3
			WHERE name = $1 AND version = $2`, name, version, reason)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return insertEvent(ctx, tx, name, version, ActionFail, s.host, struct {
			Reason string `json:"reason"`
		}{reason})
	})
	if err != nil {
		return fmt.Errorf("registry: mark %s@%s failed: %w", name, version, err)
	}
	return nil
}

// Active returns the active version of every plugin that has one, by plugin name: the set a host
// reconciles its running plugins against.
func (s *Store) Active(ctx context.Context) (map[string]Active, error) {
	m, err := queryActive(ctx, s.pool)
	if err != nil {
		return nil, fmt.Errorf("registry: active set: %w", err)
	}
	return m, nil
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func queryActive(ctx context.Context, q querier) (map[string]Active, error) {
	rows, err := q.Query(ctx, `SELECT name, version, digest, generation, coalesce(previous_version, ''), updated_by, updated_at
		FROM keel_host.plugin_active`)
	if err != nil {
		return nil, err
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Active, error) {
		var a Active
		err := r.Scan(&a.Name, &a.Version, &a.Digest, &a.Generation, &a.PreviousVersion, &a.UpdatedBy, &a.UpdatedAt)
		return a, err
	})
	if err != nil {
		return nil, err
	}
	m := make(map[string]Active, len(list))
	for _, a := range list {
		m[a.Name] = a
	}
	return m, nil
}
