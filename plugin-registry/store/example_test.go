package store_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/keelhq/keel/bridges/postgres"
	hostmigrations "github.com/keelhq/keel/migrations/host"
	"github.com/keelhq/keel/plugin-registry/bundle"
	"github.com/keelhq/keel/plugin-registry/store"
)

// Example shows both sides of the registry: an upload and activation (the admin API's part), and a
// host following the active set with Watch plus a periodic reconcile. (Compiled, not run: it needs a
// database.)
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	url := os.Getenv("KEEL_DATABASE_URL")

	// The registry's tables are host migrations.
	db, err := postgres.Open(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	if _, err := postgres.Migrate(ctx, db, postgres.HostScope, hostmigrations.FS()); err != nil {
		log.Fatal(err)
	}

	reg, err := store.Open(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()

	// Upload: verify first, then store the bytes as received.
	trusted, err := bundle.LoadTrustedKeys("/etc/keel/trusted-keys")
	if err != nil {
		log.Fatal(err)
	}
	raw, err := os.ReadFile("hello-1.0.0.keel")
	if err != nil {
		log.Fatal(err)
	}
	b, err := bundle.Read(bytes.NewReader(raw), bundle.ReadOptions{TrustedKeys: trusted})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := reg.Put(ctx, b, raw, "release-bot"); err != nil {
		log.Fatal(err)
	}
	if _, err := reg.Activate(ctx, "hello", "1.0.0", "alice"); err != nil {
		log.Fatal(err)
	}

	// A host: reconcile on every notification and every 30 seconds.
	wake := make(chan struct{}, 1)
	go reg.Watch(ctx, func(string) { //nolint:errcheck // returns nil when ctx ends
		select {
		case wake <- struct{}{}:
		default:
		}
	})
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	running := map[string]int64{} // plugin -> generation this host runs
	for {
		active, err := reg.Active(ctx)
		if err != nil {
			log.Print(err) // try again on the next tick
		}
		for name, a := range active {
			if running[name] == a.Generation {
				continue
			}
			running[name] = a.Generation // one attempt (and one failure report) per generation
			if err := load(ctx, reg, trusted, a); err != nil {
				if err := reg.MarkFailed(ctx, name, a.Version, err.Error()); err != nil {
					log.Print(err)
				}
			}
		}
		// Plugins in running but not in active were deactivated: stop them here.
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-tick.C:
		}
	}
}

// load fetches and verifies an active version; a real host then compiles it, applies its
// migrations, warms its pool and swaps it in, leaving the old version serving if any step fails.
func load(ctx context.Context, reg *store.Store, trusted []ed25519.PublicKey, a store.Active) error {
	_, raw, err := reg.Get(ctx, a.Name, a.Version)
	if err != nil {
		return err
	}
	b, err := bundle.Read(bytes.NewReader(raw), bundle.ReadOptions{TrustedKeys: trusted})
	if err != nil {
		return err
	}
	if b.Digest() != a.Digest {
		return fmt.Errorf("%s: digest %s, registry says %s", b, b.Digest(), a.Digest)
	}
	return nil
}
