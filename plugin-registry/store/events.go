package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// History limits: a dashboard page by default, and a cap so one call cannot read the whole table.
const (
	defaultHistory = 100
	maxHistory     = 1000
)

// insertEvent appends to the history inside the caller's transaction, so an event exists exactly
// when the change it describes was committed.
func insertEvent(ctx context.Context, tx pgx.Tx, name, version string, action Action, actor string, detail any) error {
	d, err := json.Marshal(detail)
	if err != nil {
		return fmt.Errorf("encode %s event: %w", action, err)
	}
	_, err = tx.Exec(ctx, `INSERT INTO keel_host.plugin_events (name, version, action, actor, detail)
		VALUES ($1, $2, $3, $4, $5)`, name, version, string(action), actor, d)
	if err != nil {
		return fmt.Errorf("record %s event: %w", action, err)
	}
	return nil
}

// History returns the plugin's most recent events, newest first; name "" returns every plugin's.
// limit <= 0 means 100, and at most 1000 are returned. Events are kept when versions are deleted.
func (s *Store) History(ctx context.Context, name string, limit int) ([]Event, error) {
	if limit <= 0 {
		limit = defaultHistory
	}
	limit = min(limit, maxHistory)
	const cols = `SELECT id, name, coalesce(version, ''), action, actor, detail, at FROM keel_host.plugin_events`
	var rows pgx.Rows
	var err error
	if name == "" {
		rows, err = s.pool.Query(ctx, cols+` ORDER BY id DESC LIMIT $1`, limit)
	} else {
		rows, err = s.pool.Query(ctx, cols+` WHERE name = $1 ORDER BY id DESC LIMIT $2`, name, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("registry: history %s: %w", name, err)
	}
	events, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) {
		var e Event
		var action string
		err := r.Scan(&e.ID, &e.Name, &e.Version, &action, &e.Actor, &e.Detail, &e.At)
		e.Action = Action(action)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("registry: history %s: %w", name, err)
	}
	return events, nil
}
