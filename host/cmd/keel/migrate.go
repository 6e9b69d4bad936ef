package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/keelhq/keel/bridges/postgres"
	"github.com/keelhq/keel/host/internal/config"
	hostmigrations "github.com/keelhq/keel/migrations/host"
)

// migrateCmd applies the host's migrations by hand (`keel migrate`). Hosts also apply
// them at start-up and plugins' migrations on activation; this is for operators who
// want the schema in place before rolling hosts out.
func migrateCmd(args []string, stdout, stderr io.Writer) int {
	cfg, err := config.Load(config.Environ(), args)
	if err != nil {
		fmt.Fprintf(stderr, "keel migrate: %v\n", err)
		return 2
	}
	if cfg.DatabaseURL == "" {
		fmt.Fprintln(stderr, "keel migrate: set KEEL_DATABASE_URL (or --database-url)")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	db, err := postgres.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		fmt.Fprintf(stderr, "keel migrate: %v\n", err)
		return 1
	}
	defer db.Close()
	applied, err := postgres.Migrate(ctx, db, postgres.HostScope, hostmigrations.FS())
	if err != nil {
		fmt.Fprintf(stderr, "keel migrate: %v\n", err)
		return 1
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "host schema up to date")
	}
	for _, f := range applied {
		fmt.Fprintln(stdout, "applied", f)
	}
	return 0
}
