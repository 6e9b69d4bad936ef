// Package pgtest gives integration tests a throwaway PostgreSQL database of their own, so test
// packages running in parallel against one server never see each other's tables, plugins or outbox.
// It is for tests only.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the variable that overrides the server tests use.
const EnvURL = "KEEL_TEST_DATABASE_URL"

// DefaultURL is the local development server: trust auth, user postgres, database test.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// AdminURL returns the URL of the server's maintenance database used to create test databases.
func AdminURL() string {
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	return DefaultURL
}

// Database is a database created for one test package.
type Database struct {
	name     string
	url      string
	adminURL string
}

// Name returns the database name, keel_test_<random>.
func (d *Database) Name() string { return d.name }

// URL returns a connection URL for the database.
func (d *Database) URL() string { return d.url }

// RandomSuffix returns n random lowercase hex characters, for names that must not collide with a
// concurrent test run (roles are shared by every database of a cluster).
func RandomSuffix(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// Create makes a fresh database keel_test_<random> on the server at AdminURL. It fails with a message
// naming the server and the variable to set when the server is unreachable, because a silently skipped
// integration test is worse than a failing one.
func Create(ctx context.Context) (*Database, error) {
	admin := AdminURL()
	u, err := url.Parse(admin)
	if err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("pgtest: %s must be a postgres:// URL", EnvURL)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, admin)
	if err != nil {
		return nil, fmt.Errorf("pgtest: PostgreSQL is not reachable at %s (set %s to point tests at a server): %w", u.Host, EnvURL, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	name := "keel_test_" + RandomSuffix(12)
	if _, err := conn.Exec(cctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	u.Path = "/" + name
	return &Database{name: name, url: u.String(), adminURL: admin}, nil
}

// Drop removes the database, disconnecting anyone still connected, then drops the roles whose names
// start with rolePrefix (plugin roles the tests created; empty means none). Roles live outside the
// database, so they would otherwise accumulate across runs.
func (d *Database) Drop(ctx context.Context, rolePrefix string) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, d.adminURL)
	if err != nil {
		return fmt.Errorf("pgtest: connect to drop %s: %w", d.name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(cctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("pgtest: drop database %s: %w", d.name, err)
	}
	if rolePrefix == "" {
		return nil
	}
	rows, err := conn.Query(cctx, `SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)`, rolePrefix)
	if err != nil {
		return fmt.Errorf("pgtest: list roles: %w", err)
	}
	roles, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("pgtest: list roles: %w", err)
	}
	for _, r := range roles {
		if _, err := conn.Exec(cctx, "DROP ROLE IF EXISTS "+pgx.Identifier{r}.Sanitize()); err != nil {
			return fmt.Errorf("pgtest: drop role %s: %w", r, err)
		}
	}
	return nil
}
