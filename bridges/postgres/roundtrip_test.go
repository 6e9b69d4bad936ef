package postgres

import (
	"context"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// countingConn counts the writes on a connection: the client writes once per round trip, so this
// measures how many times Begin and Commit wait for the server.
type countingConn struct {
	net.Conn
	writes *atomic.Int32
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// countingPlugin returns p0 on a one-connection pool of its own whose writes are
// counted (the connection is open before counting starts).
func countingPlugin(t *testing.T, p0 PluginDB) (PluginDB, *atomic.Int32) {
	t.Helper()
	ctx := testCtx(t)
	cfg, err := pgxpool.ParseConfig(testURL)
	if err != nil {
		t.Fatal(err)
	}
	writes := new(atomic.Int32)
	cfg.MaxConns = 1
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{c, writes}, nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := pool.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	return PluginDB{db: &DB{pool: pool, log: slog.New(slog.DiscardHandler)}, names: p0.names, limits: p0.limits}, writes
}

func TestBeginAndCommitAreOneRoundTrip(t *testing.T) {
	ctx := testCtx(t)
	p, writes := countingPlugin(t, newNotesPlugin(t, openDB(t), "rtt"))

	// First use on this connection: BEGIN, PREPARE and the statement.
	warm := begin(t, p, "A")
	mustExec(t, warm, `INSERT INTO notes (body) VALUES ('rtt')`)
	if err := warm.Commit(ctx, nil); err != nil {
		t.Fatal(err)
	}
	writes.Store(0)
	tx := begin(t, p, "A")
	if n := writes.Load(); n != 0 {
		t.Errorf("Begin took %d round trips, want 0 (deferred to the first statement)", n)
	}
	mustExec(t, tx, `INSERT INTO notes (body) VALUES ('rtt')`)
	if n := writes.Load(); n != 1 {
		t.Errorf("Begin and a prepared first statement took %d round trips, want 1", n)
	}
	writes.Store(0)
	if err := tx.Commit(ctx, []OutboxEvent{{Topic: "rtt." + runID}, {Topic: "rtt." + runID}}); err != nil {
		t.Fatal(err)
	}
	if n := writes.Load(); n != 1 {
		t.Errorf("Commit with events took %d round trips, want 1", n)
	}
}
