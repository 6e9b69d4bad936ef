package postgres

import (
	"errors"
	"testing"
)

// TestReadOnlyUnitOfWork runs read-only units of work on a one-connection pool, so
// that anything leaking from one into the session would be seen by the next.
func TestReadOnlyUnitOfWork(t *testing.T) {
	db := openDB(t, WithMaxConns(1))
	ctx := testCtx(t)
	p := newNotesPlugin(t, db, "readonly")
	ro := p.With(ReadOnly())
	before := outsideTx(t, db)

	w := begin(t, p, "A")
	mustExec(t, w, `INSERT INTO notes (body) VALUES ('a1'), ('a2')`)
	if err := w.Commit(ctx, nil); err != nil {
		t.Fatal(err)
	}

	for round := 0; round < 2; round++ { // the first round prepares, the second runs implicitly
		txA, err := ro.Begin(ctx, "A")
		if err != nil {
			t.Fatal(err)
		}
		if res := mustQuery(t, txA, `SELECT count(*) FROM notes`); res.Rows[0][0] != int64(2) {
			t.Fatalf("round %d: tenant A sees %v rows, want 2", round, res.Rows[0][0])
		}
		st := mustQuery(t, txA, `SELECT current_user, current_setting('app.tenant_id'), current_setting('transaction_read_only')`)
		if st.Rows[0][0] != p.Role() || st.Rows[0][1] != "A" || st.Rows[0][2] != "on" {
			t.Fatalf("round %d: inside a read-only unit: %v", round, st.Rows[0])
		}
		_, err = txA.Exec(ctx, `INSERT INTO notes (body) VALUES ('write')`, nil)
		if pgCode(err) != "25006" {
			t.Fatalf("round %d: a write in a read-only unit: %v, want SQLSTATE 25006", round, err)
		}
		// A failed statement aborts nothing else, whether or not it had to be prepared.
		if res := mustQuery(t, txA, `SELECT count(*) AS n FROM notes`); res.Rows[0][0] != int64(2) {
			t.Fatalf("round %d: a read after the refused write: %v", round, res.Rows)
		}
		if err := txA.Commit(ctx, []OutboxEvent{{Topic: "t"}}); !errors.Is(err, ErrReadOnly) {
			t.Fatalf("round %d: commit with events = %v, want ErrReadOnly", round, err)
		}
		if after := outsideTx(t, db); after != before {
			t.Fatalf("round %d: session state leaked past a read-only unit:\n before %+v\n after  %+v", round, before, after)
		}

		txB, err := ro.Begin(ctx, "B")
		if err != nil {
			t.Fatal(err)
		}
		if res := mustQuery(t, txB, `SELECT * FROM notes`); len(res.Rows) != 0 {
			t.Fatalf("round %d: tenant B sees %d of tenant A's rows", round, len(res.Rows))
		}
		if err := txB.Commit(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}

	// The session is writable again for the next ordinary unit of work.
	w = begin(t, p, "A")
	if n := mustExec(t, w, `INSERT INTO notes (body) VALUES ('a3')`); n != 1 {
		t.Fatalf("insert after read-only units affected %d rows", n)
	}
	if err := w.Commit(ctx, nil); err != nil {
		t.Fatal(err)
	}
	var n int64
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM `+p.Schema()+`.notes`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("rows after the units: %d, %v; want 3 (nothing written by the read-only ones)", n, err)
	}
}

// TestReadOnlyIsOneRoundTripPerStatement counts the writes to the server: a prepared
// statement of a read-only unit carries its setup, and Commit sends nothing.
func TestReadOnlyIsOneRoundTripPerStatement(t *testing.T) {
	ctx := testCtx(t)
	p, writes := countingPlugin(t, newNotesPlugin(t, openDB(t), "rortt"))
	p = p.With(ReadOnly())

	warm := begin(t, p, "A") // prepares the statement in a read-only transaction
	mustQuery(t, warm, `SELECT count(*) FROM notes`)
	if err := warm.Commit(ctx, nil); err != nil {
		t.Fatal(err)
	}
	writes.Store(0)
	tx := begin(t, p, "A")
	for i := 1; i <= 3; i++ {
		mustQuery(t, tx, `SELECT count(*) FROM notes`)
		if n := writes.Load(); n != int32(i) {
			t.Fatalf("%d read-only statements took %d round trips, want %d", i, n, i)
		}
	}
	if err := tx.Commit(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if n := writes.Load(); n != 3 {
		t.Errorf("Commit of a read-only unit took %d round trips, want 0", n-3)
	}
}
