package postgres

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/fstest"
	"time"
)

// TestDeadlines checks the socket deadline a Tx keeps between statements (bound): a
// statement past its context's deadline fails promptly, a later operation with a
// longer deadline is not held to the earlier one, and the connection goes back to
// the pool without a deadline (the pool has one connection, so the next Tx gets it).
func TestDeadlines(t *testing.T) {
	db := openDB(t, WithMaxConns(1))
	ctx := testCtx(t)
	p := newNotesPlugin(t, db, "deadlines")
	for _, ro := range []bool{false, true} {
		pdb := p
		if ro {
			pdb = p.With(ReadOnly())
		}
		// A deadline that passes during a statement ends it, well before statement_timeout.
		tx := begin(t, pdb, "A")
		short, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
		mustQuery(t, tx, `SELECT 1`) // prepares, so the timed statement is the slow one
		start := time.Now()
		_, err := tx.Query(short, `SELECT pg_sleep(5)`, nil)
		cancel()
		if err == nil || time.Since(start) > 3*time.Second {
			t.Fatalf("read-only %v: a statement past its deadline: err %v after %v", ro, err, time.Since(start))
		}
		tx.Rollback(ctx)

		// Statements under a short deadline, then a commit under a longer one after the
		// short one has passed: the commit is not bound by the old deadline.
		tx = begin(t, pdb, "A")
		short, cancel = context.WithTimeout(ctx, 200*time.Millisecond)
		if _, err := tx.Query(short, `SELECT count(*) FROM notes`, nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		cancel()
		if !ro {
			mustExec(t, tx, `INSERT INTO notes (body) VALUES ('after the short deadline')`)
		}
		if err := tx.Commit(ctx, nil); err != nil {
			t.Fatalf("read-only %v: commit after an earlier statement's deadline passed: %v", ro, err)
		}

		// The one pooled connection carries no deadline into the next unit of work.
		tx = begin(t, pdb, "A")
		short, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
		if _, err := tx.Query(short, `SELECT 1`, nil); err != nil {
			t.Fatal(err)
		}
		cancel()
		tx.Rollback(ctx)
		time.Sleep(200 * time.Millisecond)
		tx = begin(t, pdb, "A")
		if _, err := tx.Query(context.Background(), `SELECT count(*) FROM notes`, nil); err != nil {
			t.Fatalf("read-only %v: the next unit of work on the connection: %v", ro, err)
		}
		if err := tx.Commit(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	}
	var n int64
	if err := db.pool.QueryRow(ctx, `SELECT 1`).Scan(&n); err != nil {
		t.Fatalf("the pool after the deadlines: %v", err)
	}
}

// TestPreparedStatementsTurnOver runs more distinct statements than a connection keeps
// prepared (maxPrepared) on a one-connection pool: when the connection's statements are
// deallocated, their remembered descriptions go too, and both plugin statements and
// the transaction setup are prepared again, in read-write and read-only units.
func TestPreparedStatementsTurnOver(t *testing.T) {
	db := openDB(t, WithMaxConns(1))
	ctx := testCtx(t)
	p := newNotesPlugin(t, db, "turnover")
	tx := begin(t, p, "A")
	mustExec(t, tx, `INSERT INTO notes (body) VALUES ('kept')`)
	if err := tx.Commit(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < maxPrepared+10; i++ {
		pdb := p
		if i%2 == 1 {
			pdb = p.With(ReadOnly())
		}
		tx := begin(t, pdb, "A")
		res := mustQuery(t, tx, fmt.Sprintf(`SELECT count(*) + %d AS n FROM notes`, i))
		if res.Rows[0][0] != int64(1+i) {
			t.Fatalf("statement %d: %v", i, res.Rows[0][0])
		}
		// The first statement again: prepared already, or prepared again after the turnover.
		if res := mustQuery(t, tx, `SELECT body FROM notes`); len(res.Rows) != 1 || res.Rows[0][0] != "kept" {
			t.Fatalf("statement %d: the repeated read answered %v", i, res.Rows)
		}
		if err := tx.Commit(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_statements`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n > maxPrepared+2 {
		t.Fatalf("%d statements prepared on the connection, want at most %d", n, maxPrepared+2)
	}
}

// TestPreparedStatementsAfterAnotherHostsMigration: a second host shares the database,
// and the first one migrates the plugin's table under statements the second has
// prepared (so its statement generation does not move). PostgreSQL refuses a prepared
// statement whose result changed ("cached plan must not change result type"); the
// bridge must report that once and prepare again afterwards, not fail until the
// connection is recycled. Both a transaction and a read-only unit are covered.
func TestPreparedStatementsAfterAnotherHostsMigration(t *testing.T) {
	ctx := testCtx(t)
	hostA := openDB(t)
	hostB := openDB(t, WithMaxConns(1))
	pa := newNotesPlugin(t, hostA, "stale")
	plugin := pa.names.name
	pb, err := EnsurePlugin(ctx, hostB, plugin)
	if err != nil {
		t.Fatal(err)
	}
	tx := begin(t, pb, "A")
	mustExec(t, tx, `INSERT INTO notes (body) VALUES ('kept')`)
	if err := tx.Commit(ctx, nil); err != nil {
		t.Fatal(err)
	}
	read := func(p PluginDB) (*Result, error) {
		tx, err := p.Begin(ctx, "A")
		if err != nil {
			return nil, err
		}
		defer tx.Rollback(context.Background()) //nolint:errcheck // read only
		return tx.Query(ctx, `SELECT * FROM notes`, nil)
	}
	modes := []struct {
		name string
		p    PluginDB
	}{{"transaction", pb}, {"read_only", pb.With(ReadOnly())}}
	for _, m := range modes {
		for i := 0; i < 2; i++ { // prepared on the host B connection
			if res, err := read(m.p); err != nil || len(res.Columns) != 6 {
				t.Fatalf("%s: before the migration: %v %v", m.name, res, err)
			}
		}
	}
	files := fstest.MapFS{"0001_notes.sql": {Data: []byte(notesSQL)}}
	for k, m := range modes {
		// Each mode meets a migration of its own, made after its statement was prepared.
		label := fmt.Sprintf("label%d", k)
		files[fmt.Sprintf("%04d_%s.sql", k+2, label)] = &fstest.MapFile{Data: []byte(`ALTER TABLE notes ADD COLUMN ` + label + ` text NOT NULL DEFAULT 'none'`)}
		if _, err := Migrate(ctx, hostA, plugin, files); err != nil {
			t.Fatal(err)
		}
		if _, err := read(m.p); !errors.Is(err, ErrStatementChanged) {
			t.Fatalf("%s: after the migration: %v, want ErrStatementChanged", m.name, err)
		}
		res, err := read(m.p)
		if err != nil {
			t.Fatalf("%s: the statement was not prepared again: %v", m.name, err)
		}
		if n := len(res.Columns); res.Columns[n-1].Name != label || len(res.Rows) == 0 || res.Rows[0][n-1] != "none" {
			t.Fatalf("%s: the statement was prepared again but answered %v", m.name, res)
		}
		if m.name == "transaction" { // the read-only statement must be prepared again for its own test
			if res, err := read(modes[1].p); err != nil || len(res.Columns) != 7 {
				t.Fatalf("read_only: before its migration: %v %v", res, err)
			}
		}
	}
	// A write whose RETURNING list changes the same way (Exec discards the rows, but the
	// statement's result type still changed).
	write := func() error {
		tx, err := pb.Begin(ctx, "A")
		if err != nil {
			return err
		}
		defer tx.Rollback(context.Background()) //nolint:errcheck // nothing to keep
		_, err = tx.Exec(ctx, `INSERT INTO notes (body) VALUES ('w') RETURNING *`, nil)
		return err
	}
	for i := 0; i < 2; i++ {
		if err := write(); err != nil {
			t.Fatalf("exec: before the migration: %v", err)
		}
	}
	files["0004_label2.sql"] = &fstest.MapFile{Data: []byte(`ALTER TABLE notes ADD COLUMN label2 text`)}
	if _, err := Migrate(ctx, hostA, plugin, files); err != nil {
		t.Fatal(err)
	}
	if err := write(); !errors.Is(err, ErrStatementChanged) {
		t.Fatalf("exec: after the migration: %v, want ErrStatementChanged", err)
	}
	if err := write(); err != nil {
		t.Fatalf("exec: the statement was not prepared again: %v", err)
	}
}
