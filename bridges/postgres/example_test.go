package postgres_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"

	"github.com/keelhq/keel/bridges/postgres"
	hostmigrations "github.com/keelhq/keel/migrations/host"
)

// Example shows the life of the bridge in a host: open the pool, apply the host's and a plugin's
// migrations, check the plugin's tenant tables, run one invocation's unit of work with an event, and
// relay events to the bus. (Compiled, not run: it needs a database.)
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	db, err := postgres.Open(ctx, os.Getenv("KEEL_DATABASE_URL"), postgres.WithMaxConns(20))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	if _, err := postgres.Migrate(ctx, db, postgres.HostScope, hostmigrations.FS()); err != nil {
		log.Fatal(err)
	}
	if _, err := postgres.Migrate(ctx, db, "master-data", os.DirFS("migrations/master-data")); err != nil {
		log.Fatal(err)
	}
	if err := db.VerifyTenantTables(ctx, "master-data"); err != nil {
		log.Fatal(err)
	}

	plugin, err := postgres.EnsurePlugin(ctx, db, "master-data")
	if err != nil {
		log.Fatal(err)
	}
	tx, err := plugin.Begin(ctx, "tenant-42")
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit
	res, err := tx.Query(ctx, `SELECT id, name FROM customers WHERE deleted_at IS NULL ORDER BY id LIMIT $1`, []any{int64(10)})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(res.Rows), "customers")
	err = tx.Commit(ctx, []postgres.OutboxEvent{{Topic: "customers.viewed", Payload: []byte(`{"count":10}`)}})
	if err != nil {
		log.Fatal(err)
	}

	relay, err := postgres.NewRelay(db, func(ctx context.Context, topic string, msgs []postgres.RelayMessage) error {
		// Hand msgs to NATS or Kafka here; return nil only once the bus has them.
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = relay.Run(ctx)
}
