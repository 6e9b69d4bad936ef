package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/keelhq/keel/plugin-registry/bundle"
)

// versionCols are the columns of a Version, in scanVersion's order. The bundle bytes are not among
// them: PostgreSQL then never reads them out of TOAST storage.
const versionCols = `name, version, digest, coalesce(signer, ''), manifest, size, uploaded_by, uploaded_at, state, coalesce(last_error, '')`

func scanVersion(row pgx.Row, extra ...any) (Version, error) {
	var v Version
	var state string
	dest := append([]any{&v.Name, &v.Version, &v.Digest, &v.Signer, &v.Manifest, &v.Size, &v.UploadedBy, &v.UploadedAt, &state, &v.LastError}, extra...)
	if err := row.Scan(dest...); err != nil {
		return Version{}, err
	}
	v.State = State(state)
	return v, nil
}

// Put stores an uploaded plugin version: b is the bundle as verified by bundle.Read with the
// registry's trusted keys, raw the exact bytes it was read from, which are what hosts download.
//
// Versions are immutable. Putting a name and version that is already stored with the same digest
// changes nothing and returns the stored version, so a retried upload is harmless; with a different
// digest it fails with ErrConflict and the stored version is left as it was.
//
// raw is read once more (without trusted keys, so without checking the signature again) to confirm
// that it is the bundle b describes: the stored digest must be the digest of the stored bytes,
// whatever the caller passed.
func (s *Store) Put(ctx context.Context, b *bundle.Bundle, raw []byte, uploadedBy string) (Version, error) {
	if b == nil {
		return Version{}, errors.New("registry: put: nil bundle")
	}
	m := b.Manifest()
	where := m.Name + "@" + m.Version
	if err := checkArgs("uploader", uploadedBy); err != nil {
		return Version{}, fmt.Errorf("registry: put %s: %w", where, err)
	}
	rb, err := bundle.Read(bytes.NewReader(raw), bundle.ReadOptions{MaxSize: int64(len(raw)), AllowUnsigned: true})
	if err != nil {
		return Version{}, fmt.Errorf("registry: put %s: raw bytes: %w", where, err)
	}
	if rb.Digest() != b.Digest() {
		return Version{}, fmt.Errorf("registry: put %s: raw bytes are bundle %s, not %s", where, rb, b)
	}
	manifestJSON, err := json.Marshal(m)
	if err != nil {
		return Version{}, fmt.Errorf("registry: put %s: encode manifest: %w", where, err)
	}

	var v Version
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// ON CONFLICT DO NOTHING covers both the primary key and the unique digest; a concurrent
		// upload of the same version makes this wait for it, then do nothing.
		row := tx.QueryRow(ctx, `INSERT INTO keel_host.plugin_versions
				(name, version, digest, signer, manifest, bundle, size, uploaded_by)
			VALUES ($1, $2, $3, nullif($4, ''), $5, $6, $7, $8)
			ON CONFLICT DO NOTHING
			RETURNING `+versionCols,
			m.Name, m.Version, b.Digest(), b.Signer(), manifestJSON, raw, int64(len(raw)), uploadedBy)
		var err error
		v, err = scanVersion(row)
		if errors.Is(err, pgx.ErrNoRows) {
			return s.existing(ctx, tx, m.Name, m.Version, b.Digest(), &v)
		}
		if err != nil {
			return err
		}
		return insertEvent(ctx, tx, m.Name, m.Version, ActionUpload, uploadedBy, struct {
			Digest string `json:"digest"`
			Size   int64  `json:"size"`
			Signer string `json:"signer,omitempty"`
		}{v.Digest, v.Size, v.Signer})
	})
	if err != nil {
		return Version{}, fmt.Errorf("registry: put %s: %w", where, err)
	}
	return v, nil
}

// existing settles an upload whose insert did nothing: the same content is already there
// (idempotent), or different content holds the name and version (ErrConflict).
func (s *Store) existing(ctx context.Context, tx pgx.Tx, name, version, digest string, v *Version) error {
	got, err := scanVersion(tx.QueryRow(ctx, `SELECT `+versionCols+` FROM keel_host.plugin_versions
		WHERE name = $1 AND version = $2`, name, version))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		// The digest is taken by another name or version, which the digest's definition rules out,
		// or the version was deleted between the insert and this read; either way, not stored.
		return fmt.Errorf("digest %.12s is already stored: %w", digest, ErrConflict)
	case err != nil:
		return err
	case got.Digest != digest:
		return fmt.Errorf("stored digest %.12s, uploaded %.12s: %w", got.Digest, digest, ErrConflict)
	}
	*v = got
	return nil
}

// Get returns one version and its bundle bytes, exactly as uploaded. Hosts verify the bytes with
// bundle.Read and their own trusted keys before running them: the registry is storage, not trust.
func (s *Store) Get(ctx context.Context, name, version string) (Version, []byte, error) {
	var raw []byte
	v, err := scanVersion(s.pool.QueryRow(ctx, `SELECT `+versionCols+`, bundle FROM keel_host.plugin_versions
		WHERE name = $1 AND version = $2`, name, version), &raw)
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return Version{}, nil, fmt.Errorf("registry: get %s@%s: %w", name, version, err)
	}
	return v, raw, nil
}

// List returns every plugin that has a stored version, by name, each with its versions (newest
// upload first, without bundle bytes) and its active version. Both come from one snapshot, so a
// concurrent activation is either wholly in the result or not at all.
func (s *Store) List(ctx context.Context) ([]Plugin, error) {
	var plugins []Plugin
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+versionCols+` FROM keel_host.plugin_versions
			ORDER BY name, uploaded_at DESC, version DESC`)
		if err != nil {
			return err
		}
		versions, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Version, error) { return scanVersion(r) })
		if err != nil {
			return err
		}
		active, err := queryActive(ctx, tx)
		if err != nil {
			return err
		}
		for _, v := range versions {
			if n := len(plugins); n == 0 || plugins[n-1].Name != v.Name {
				p := Plugin{Name: v.Name}
				if a, ok := active[v.Name]; ok {
					p.Active = &a
				}
				plugins = append(plugins, p)
			}
			p := &plugins[len(plugins)-1]
			p.Versions = append(p.Versions, v)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("registry: list: %w", err)
	}
	return slices.Clip(plugins), nil
}

// Delete removes a stored version and its bundle. It refuses the active version (ErrActive). If the
// version was the plugin's rollback target, the plugin is left with none (Rollback then fails with
// ErrNoPrevious). The history keeps the version's events.
func (s *Store) Delete(ctx context.Context, name, version, actor string) error {
	if err := checkArgs("actor", actor); err != nil {
		return fmt.Errorf("registry: delete %s@%s: %w", name, version, err)
	}
	err := s.inPluginTx(ctx, name, func(tx pgx.Tx) error {
		var active, previous string
		err := tx.QueryRow(ctx, `SELECT version, coalesce(previous_version, '') FROM keel_host.plugin_active
			WHERE name = $1 FOR UPDATE`, name).Scan(&active, &previous)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if active == version {
			return ErrActive
		}
		if previous == version {
			if _, err := tx.Exec(ctx, `UPDATE keel_host.plugin_active SET previous_version = NULL WHERE name = $1`, name); err != nil {
				return err
			}
		}
		var digest string
		err = tx.QueryRow(ctx, `DELETE FROM keel_host.plugin_versions WHERE name = $1 AND version = $2
			RETURNING digest`, name, version).Scan(&digest)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return insertEvent(ctx, tx, name, version, ActionDelete, actor, struct {
			Digest string `json:"digest"`
		}{digest})
	})
	if err != nil {
		return fmt.Errorf("registry: delete %s@%s: %w", name, version, err)
	}
	return nil
}
