package postgres

import (
	"errors"
	"math"
	"reflect"
	"testing"
	"testing/fstest"
	"time"
)

func TestValueNormalisation(t *testing.T) {
	db := openDB(t)
	ctx := testCtx(t)
	plugin := pluginName("types")
	if _, err := Migrate(ctx, db, plugin, fstest.MapFS{"0001_mood.sql": {Data: []byte(`CREATE TYPE mood AS ENUM ('sad', 'happy');`)}}); err != nil {
		t.Fatal(err)
	}
	p, err := EnsurePlugin(ctx, db, plugin)
	if err != nil {
		t.Fatal(err)
	}
	tx := begin(t, p, "A")
	defer tx.Rollback(ctx) //nolint:errcheck // always nil

	tests := []struct {
		expr string
		want any
		typ  string
	}{
		{`NULL::int4`, nil, "int4"},
		{`NULL::text`, nil, "text"},
		{`42::int2`, int64(42), "int2"},
		{`(-7)::int4`, int64(-7), "int4"},
		{`9223372036854775807::int8`, int64(math.MaxInt64), "int8"},
		{`123.4500::numeric`, "123.4500", "numeric"},
		{`'NaN'::numeric`, "NaN", "numeric"},
		{`12345678901234567890.000000000001::numeric`, "12345678901234567890.000000000001", "numeric"},
		{`1.5::float4`, 1.5, "float4"},
		{`0.1::float8`, 0.1, "float8"},
		{`'-Infinity'::float8`, math.Inf(-1), "float8"},
		{`'héllo wörld'::text`, "héllo wörld", "text"},
		{`'x'::varchar(3)`, "x", "varchar"},
		{`'ab'::char(3)`, "ab ", "bpchar"},
		{`true`, true, "bool"},
		{`false`, false, "bool"},
		{`'\x00ff10'::bytea`, []byte{0x00, 0xff, 0x10}, "bytea"},
		{`''::bytea`, []byte{}, "bytea"},
		{`'2024-02-29 13:14:15.123456+02'::timestamptz`, time.Date(2024, 2, 29, 11, 14, 15, 123456000, time.UTC), "timestamptz"},
		{`'2024-02-29 13:14:15'::timestamp`, time.Date(2024, 2, 29, 13, 14, 15, 0, time.UTC), "timestamp"},
		{`'infinity'::timestamptz`, "infinity", "timestamptz"},
		// Outside 1678-2261 a time does not fit the ABI's int64 nanoseconds: its text.
		{`'1500-06-01 00:00:00+00'::timestamptz`, "1500-06-01 00:00:00+00", "timestamptz"},
		{`'2300-01-01 12:00:00'::timestamp`, "2300-01-01 12:00:00", "timestamp"},
		{`'2261-12-31 23:59:59+00'::timestamptz`, time.Date(2261, 12, 31, 23, 59, 59, 0, time.UTC), "timestamptz"},
		{`'2024-01-02'::date`, "2024-01-02", "date"},
		{`'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'::uuid`, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "uuid"},
		{`'{"b": 1, "a": [true, null]}'::jsonb`, `{"a": [true, null], "b": 1}`, "jsonb"},
		{`'{"b":1,  "a":2}'::json`, `{"b":1,  "a":2}`, "json"},
		{`'1 day 02:03:04'::interval`, "1 day 02:03:04", "interval"},
		{`ARRAY[1, 2, 3]::int4[]`, "{1,2,3}", "_int4"},
		{`ARRAY['a b', NULL]::text[]`, `{"a b",NULL}`, "_text"},
		{`'happy'::mood`, "happy", "mood"},
		{`'10.0.0.0/8'::cidr`, "10.0.0.0/8", "cidr"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			res, err := tx.Query(ctx, `SELECT `+tt.expr+` AS v`, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Columns) != 1 || res.Columns[0].Name != "v" || res.Columns[0].Type != tt.typ {
				t.Errorf("columns = %+v, want [{v %s}]", res.Columns, tt.typ)
			}
			got := res.Rows[0][0]
			if wt, ok := tt.want.(time.Time); ok {
				gt, ok := got.(time.Time)
				if !ok || !gt.Equal(wt) || gt.Location() != time.UTC {
					t.Fatalf("got %#v, want %v in UTC", got, wt)
				}
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v (%T), want %#v (%T)", got, got, tt.want, tt.want)
			}
		})
	}
}

func TestArguments(t *testing.T) {
	db := openDB(t)
	ctx := testCtx(t)
	p := newNotesPlugin(t, db, "args")
	tx := begin(t, p, "A")
	defer tx.Rollback(ctx) //nolint:errcheck // always nil

	when := time.Date(2023, 5, 6, 7, 8, 9, 123456000, time.FixedZone("x", 3600))
	args := []any{int64(-42), 2.5, true, "text ' with quote", []byte{0, 1, 2}, when, nil,
		"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", `{"k": "v"}`, "12.50", math.NaN()}
	res := mustQuery(t, tx, `SELECT $1, $2, $3, $4, $5, $6, $7::int4 IS NULL, $8::uuid, $9::jsonb ->> 'k', $10::numeric * 2, $11`, args...)
	want := []any{int64(-42), 2.5, true, "text ' with quote", []byte{0, 1, 2}, when.UTC(), true,
		"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "v", "25.00"}
	for i, w := range want {
		if !reflect.DeepEqual(res.Rows[0][i], w) {
			t.Errorf("arg %d round trip = %#v, want %#v", i+1, res.Rows[0][i], w)
		}
	}
	if f, ok := res.Rows[0][10].(float64); !ok || !math.IsNaN(f) {
		t.Errorf("NaN round trip = %#v", res.Rows[0][10])
	}
	// Typed parameters need no casts where PostgreSQL can coerce them.
	mustExec(t, tx, `INSERT INTO notes (body, created_at) VALUES ($1, $2)`, "typed", when)
	res = mustQuery(t, tx, `SELECT id FROM notes WHERE body = $1 AND created_at = $2 AND id > $3 AND $4`, "typed", when, int64(0), true)
	if len(res.Rows) != 1 {
		t.Fatalf("typed parameter lookup returned %d rows", len(res.Rows))
	}
	if _, err := tx.Query(ctx, `SELECT $1`, []any{42}); err == nil {
		t.Fatal("int argument accepted; only int64 is")
	}
	if _, err := tx.Query(ctx, `SELECT $1`, []any{struct{}{}}); err == nil {
		t.Fatal("struct argument accepted")
	}
}

func TestLimits(t *testing.T) {
	db := openDB(t)
	ctx := testCtx(t)
	plugin := pluginName("limits")
	p, err := EnsurePlugin(ctx, db, plugin, WithMaxRows(5), WithMaxResultBytes(100), WithStatementTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	tx := begin(t, p, "A")
	defer tx.Rollback(ctx) //nolint:errcheck // always nil
	if res := mustQuery(t, tx, `SELECT generate_series(1, 5)`); len(res.Rows) != 5 {
		t.Fatalf("5 rows at a limit of 5: got %d", len(res.Rows))
	}
	if _, err := tx.Query(ctx, `SELECT generate_series(1, 10000)`, nil); !errors.Is(err, ErrResultTooLarge) {
		t.Fatalf("too many rows: err = %v, want ErrResultTooLarge", err)
	}
	if _, err := tx.Query(ctx, `SELECT repeat('x', 101)`, nil); !errors.Is(err, ErrResultTooLarge) {
		t.Fatalf("too many bytes: err = %v, want ErrResultTooLarge", err)
	}
	// The transaction survives an oversized result.
	if res := mustQuery(t, tx, `SELECT 1`); res.Rows[0][0] != int64(1) {
		t.Fatal("transaction unusable after ErrResultTooLarge")
	}
	start := time.Now()
	_, err = tx.Exec(ctx, `SELECT pg_sleep(5)`, nil)
	if pgCode(err) != "57014" || time.Since(start) > 2*time.Second {
		t.Fatalf("statement timeout: err = %v after %s, want query_canceled (57014) after about 100ms", err, time.Since(start))
	}
	if err := tx.Commit(ctx, nil); !errors.Is(err, ErrTxAborted) {
		t.Fatalf("commit after timeout = %v, want ErrTxAborted", err)
	}
	// Per-transaction override of the plugin's limits.
	long := begin(t, p.With(WithStatementTimeout(2*time.Second)), "A")
	if res := mustQuery(t, long, `SELECT current_setting('statement_timeout'), pg_sleep(0.2)::text`); res.Rows[0][0] != "2s" {
		t.Fatalf("overridden statement_timeout = %v, want 2s", res.Rows[0][0])
	}
	long.Rollback(ctx) //nolint:errcheck // always nil
	if _, err := p.With(WithMaxRows(0)).Begin(ctx, "A"); err == nil {
		t.Fatal("Begin accepted a zero row limit")
	}
	if _, err := tx.Query(ctx, `SELECT 1`, nil); !errors.Is(err, ErrTxDone) {
		t.Fatalf("query after commit = %v, want ErrTxDone", err)
	}
	if err := tx.Commit(ctx, nil); !errors.Is(err, ErrTxDone) {
		t.Fatalf("second commit = %v, want ErrTxDone", err)
	}
}
