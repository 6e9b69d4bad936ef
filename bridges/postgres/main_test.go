package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keelhq/keel/bridges/postgres/pgtest"
	hostmigrations "github.com/keelhq/keel/migrations/host"
)

// The package's tests share one database created for this run, and name every plugin runID-<x> so
// the cluster-wide roles they create can be dropped afterwards and never collide with a parallel run.
var (
	testURL string
	runID   string
)

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	ctx := context.Background()
	d, err := pgtest.Create(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: bridges/postgres integration tests need PostgreSQL:", err)
		return 1
	}
	runID = "t" + pgtest.RandomSuffix(6)
	testURL = d.URL()
	defer func() {
		if err := d.Drop(ctx, RolePrefix+runID); err != nil {
			fmt.Fprintln(os.Stderr, "cleanup:", err)
		}
	}()
	db, err := Open(ctx, testURL, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	_, err = Migrate(ctx, db, HostScope, hostmigrations.FS())
	db.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: host migrations:", err)
		return 1
	}
	return m.Run()
}

var pluginSeq atomic.Int32

// pluginName returns a plugin name unique to this call, so tests stay independent under -count=N.
func pluginName(suffix string) string {
	return fmt.Sprintf("%s-%s-%d", runID, suffix, pluginSeq.Add(1))
}

// begin starts a plugin transaction that is rolled back when the test ends, so a failing assertion
// never strands a connection (DB.Close waits for every acquired connection).
func begin(t testing.TB, p PluginDB, tenant string) *Tx {
	t.Helper()
	tx, err := p.Begin(testCtx(t), tenant)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(context.Background()) }) //nolint:errcheck // always nil
	return tx
}

// tWriter sends slog output to the test log, so it shows only for failing or verbose tests.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func openDB(t testing.TB, opts ...Option) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts = append([]Option{WithLogger(slog.New(slog.NewTextHandler(tWriter{t}, nil)))}, opts...)
	db, err := Open(ctx, testURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// pgCode returns the SQLSTATE of err, or "" if it is not a server error.
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// eventually polls cond until it holds or timeout passes, like nats-server's checkFor.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mustQuery runs sql in tx and fails the test on error.
func mustQuery(t testing.TB, tx *Tx, sql string, args ...any) *Result {
	t.Helper()
	res, err := tx.Query(testCtx(t), sql, args)
	if err != nil {
		t.Fatalf("Query(%q): %v", sql, err)
	}
	return res
}

func mustExec(t testing.TB, tx *Tx, sql string, args ...any) int64 {
	t.Helper()
	n, err := tx.Exec(testCtx(t), sql, args)
	if err != nil {
		t.Fatalf("Exec(%q): %v", sql, err)
	}
	return n
}

// rawExec sends sql on the transaction's connection without the guard, to test what the database
// itself allows the plugin's role.
func rawExec(ctx context.Context, tx *Tx, sql string) error {
	if err := tx.beginNow(ctx); err != nil { // the role and tenant switch, as every statement gets
		return err
	}
	_, err := tx.conn.Conn().PgConn().Exec(ctx, sql).ReadAll()
	return err
}
