package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keelhq/keel/bridges/postgres"
	"github.com/keelhq/keel/bridges/postgres/pgtest"
	hostmigrations "github.com/keelhq/keel/migrations/host"
	"github.com/keelhq/keel/plugin-registry/bundle"
)

// testURL is the database created for this run, with the host migrations applied.
var testURL string

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	ctx := context.Background()
	d, err := pgtest.Create(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: plugin-registry/store tests need PostgreSQL:", err)
		return 1
	}
	defer func() {
		if err := d.Drop(ctx, ""); err != nil {
			fmt.Fprintln(os.Stderr, "cleanup:", err)
		}
	}()
	db, err := postgres.Open(ctx, d.URL(), postgres.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	_, err = postgres.Migrate(ctx, db, postgres.HostScope, hostmigrations.FS())
	db.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: host migrations:", err)
		return 1
	}
	testURL = d.URL()
	return m.Run()
}

// A fixed key keeps test bundles reproducible.
var (
	testPriv = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	testPub  = testPriv.Public().(ed25519.PublicKey)
)

// tinyWasm is the smallest valid WebAssembly module: the magic and version 1.
var tinyWasm = []byte("\x00asm\x01\x00\x00\x00")

var pluginSeq atomic.Int32

// pluginName returns a plugin name unique to this run, so tests stay independent under -count=N.
func pluginName() string { return fmt.Sprintf("plug-%d", pluginSeq.Add(1)) }

// makeBundle builds and signs a bundle, writes it out and reads it back with the key trusted, as an
// upload would arrive. description varies the content (and so the digest) of one name and version.
func makeBundle(t testing.TB, name, version, description string) (*bundle.Bundle, []byte) {
	t.Helper()
	man := fmt.Sprintf(`{"name":%q,"version":%q,"abi":1,"description":%q,"routes":[{"method":"GET","path":"/hello","public":true}]}`,
		name, version, description)
	b, err := bundle.Build([]byte(man), tinyWasm, map[string][]byte{"0001_init.sql": []byte("CREATE TABLE t (id int PRIMARY KEY);\n")})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Sign(testPriv); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := b.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	read, err := bundle.Read(bytes.NewReader(buf.Bytes()), bundle.ReadOptions{TrustedKeys: []ed25519.PublicKey{testPub}})
	if err != nil {
		t.Fatal(err)
	}
	return read, buf.Bytes()
}

// put stores a fresh bundle of name@version and returns its raw bytes.
func put(t testing.TB, s *Store, name, version string) []byte {
	t.Helper()
	b, raw := makeBundle(t, name, version, "")
	if _, err := s.Put(testCtx(t), b, raw, "ci"); err != nil {
		t.Fatal(err)
	}
	return raw
}

// tWriter sends slog output to the test log, so it shows only for failing or verbose tests.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func openStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(testCtx(t), testURL, WithLogger(slog.New(slog.NewTextHandler(tWriter{t}, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// watch runs s.Watch until the test ends (waiting for it to return, so its connection is gone before
// the next test) and returns the names it reports.
func watch(t testing.TB, s *Store) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	names := make(chan string, 256)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := s.Watch(ctx, func(name string) {
			select {
			case names <- name:
			case <-ctx.Done():
			}
		})
		if err != nil {
			t.Errorf("Watch returned %v, want nil", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return names
}

// receive waits up to timeout for want among the names a watch reports, skipping others.
func receive(t testing.TB, names <-chan string, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case n := <-names:
			if n == want {
				return
			}
		case <-deadline:
			t.Fatalf("no notification %q within %s", want, timeout)
		}
	}
}

// eventually polls cond until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
