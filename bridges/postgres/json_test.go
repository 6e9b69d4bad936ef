package postgres

import (
	"bytes"
	"errors"
	"testing"
	"testing/fstest"

	"github.com/keelhq/keel/abi/wire"
)

// rowJSON renders a Query result the way QueryJSON must: wire.AppendRowJSON.
func rowJSON(res *Result) [][]byte {
	cols := make([]wire.Column, len(res.Columns))
	for i, c := range res.Columns {
		cols[i] = wire.Column{Name: c.Name, Type: c.Type}
	}
	out := [][]byte{}
	for _, row := range res.Rows {
		out = append(out, wire.AppendRowJSON(nil, cols, row))
	}
	return out
}

// TestQueryJSONMatchesQuery runs statements over every kind of column (and the
// edges of the direct renderings: NULLs, escapes, fractions, leap days, times
// outside the ABI's range, a user-defined type first seen mid-test) through both
// Query and QueryJSON and wants the same columns and the same bytes.
func TestQueryJSONMatchesQuery(t *testing.T) {
	db := openDB(t)
	ctx := testCtx(t)
	plugin := pluginName("json")
	if _, err := Migrate(ctx, db, plugin, fstest.MapFS{"0001_types.sql": {Data: []byte(
		`CREATE TYPE mood AS ENUM ('sad', 'happy'); CREATE DOMAIN price AS numeric(12,2); CREATE TYPE numeric AS ENUM ('1', 'x');`)}}); err != nil {
		t.Fatal(err)
	}
	p, err := EnsurePlugin(ctx, db, plugin)
	if err != nil {
		t.Fatal(err)
	}
	stmts := []string{
		`SELECT NULL::int4 AS a, NULL::text AS b, NULL::timestamptz AS c, NULL::numeric AS d, NULL::bool AS e`,
		`SELECT 42::int2 AS i2, (-7)::int4 AS i4, 9223372036854775807::int8 AS big, (-9223372036854775807 - 1)::int8 AS small, 0::int8 AS zero`,
		`SELECT 123.4500::numeric AS n, 'NaN'::numeric AS nan, (-0.5)::numeric AS neg, 12345678901234567890.000000000001::numeric AS long, 1e30::numeric AS e`,
		`SELECT 1.5::float4 AS f4, 0.1::float8 AS f8, '-Infinity'::float8 AS inf, 1e-7::float8 AS tiny, 'NaN'::float8 AS nan`,
		`SELECT 'héllo "wörld" <&> \ ' || chr(10) || chr(8232) AS s, 'x'::varchar(3) AS v, 'ab'::char(3) AS c, ''::text AS empty`,
		`SELECT true AS t, false AS f, '\x00ff10'::bytea AS b, ''::bytea AS empty`,
		`SELECT '2024-02-29 13:14:15.123456+02'::timestamptz AS leap, '2026-12-04 18:00:00+00'::timestamptz AS whole,
			'2026-12-04 18:00:00.100000+00'::timestamptz AS tenth, '2024-02-29 13:14:15'::timestamp AS local,
			'2024-02-29 13:14:15.000001'::timestamp AS micro, '1678-01-01 00:00:00+00'::timestamptz AS early,
			'2261-12-31 23:59:59.999999+00'::timestamptz AS late, '1999-12-31 23:59:59.5'::timestamp AS y2k`,
		`SELECT 'infinity'::timestamptz AS inf, '-infinity'::timestamp AS ninf, '1500-06-01 00:00:00+00'::timestamptz AS old,
			'2300-01-01 12:00:00'::timestamp AS future, '0044-03-15 12:00:00+00 BC'::timestamptz AS bc, '12345-01-01 00:00:00'::timestamp AS far`,
		`SELECT '2024-01-02'::date AS d, 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'::uuid AS u, '{"b": 1, "a": [true, null]}'::jsonb AS j,
			'1 day 02:03:04'::interval AS i, ARRAY[1, 2, 3]::int4[] AS arr, '10.0.0.0/8'::cidr AS net`,
		// pg_catalog comes first in the search path: the plugin's own "numeric" needs its schema.
		`SELECT 'happy'::mood AS m, 12.5::price AS pr, '1'::` + ident(p.Schema()) + `.numeric AS num_enum, 'x'::` + ident(p.Schema()) + `.numeric AS num_enum_text`,
		`SELECT 1 AS "we""ird", 2 AS "a\b", 3 AS dup, 4 AS dup`,
		`SELECT g AS n, 'row ' || g AS label, now() - g * interval '1 hour' AS at FROM generate_series(1, 50) AS g`,
		`SELECT 1 AS n WHERE false`,
	}
	for _, sql := range stmts {
		// A fresh transaction per statement, with the type names forgotten each second
		// round, so a user-defined type is met both unnamed and named.
		for round := 0; round < 2; round++ {
			if round == 0 {
				db.typeNames.Range(func(k, _ any) bool { db.typeNames.Delete(k); return true })
			}
			tx := begin(t, p, "A")
			want, err := tx.Query(ctx, sql, nil)
			if err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
			if round == 0 {
				db.typeNames.Range(func(k, _ any) bool { db.typeNames.Delete(k); return true })
			}
			got, err := tx.QueryJSON(ctx, sql, nil)
			if err != nil {
				t.Fatalf("%s: QueryJSON: %v", sql, err)
			}
			tx.Rollback(ctx) //nolint:errcheck // always nil
			if len(got.Columns) != len(want.Columns) {
				t.Fatalf("%s: columns %v, want %v", sql, got.Columns, want.Columns)
			}
			for i := range want.Columns {
				if got.Columns[i] != want.Columns[i] {
					t.Fatalf("%s: columns %v, want %v", sql, got.Columns, want.Columns)
				}
			}
			wantRows := rowJSON(want)
			if len(got.Rows) != len(wantRows) {
				t.Fatalf("%s: %d rows, want %d", sql, len(got.Rows), len(wantRows))
			}
			for i := range wantRows {
				if !bytes.Equal(got.Rows[i], wantRows[i]) {
					t.Fatalf("%s: row %d\n got  %s\n want %s", sql, i, got.Rows[i], wantRows[i])
				}
			}
		}
	}
}

// TestQueryJSONLimits: the plugin's row and byte limits hold for QueryJSON as for
// Query, and the transaction stays usable after a refused result.
func TestQueryJSONLimits(t *testing.T) {
	db := openDB(t)
	ctx := testCtx(t)
	p, err := EnsurePlugin(ctx, db, pluginName("jsonlimits"), WithMaxRows(5), WithMaxResultBytes(100))
	if err != nil {
		t.Fatal(err)
	}
	tx := begin(t, p, "A")
	defer tx.Rollback(ctx) //nolint:errcheck // always nil
	if res, err := tx.QueryJSON(ctx, `SELECT generate_series(1, 5) AS n`, nil); err != nil || len(res.Rows) != 5 || string(res.Rows[4]) != `{"n":5}` {
		t.Fatalf("5 rows at a limit of 5: %v %v", res, err)
	}
	if _, err := tx.QueryJSON(ctx, `SELECT generate_series(1, 10000)`, nil); !errors.Is(err, ErrResultTooLarge) {
		t.Fatalf("too many rows: err = %v, want ErrResultTooLarge", err)
	}
	if _, err := tx.QueryJSON(ctx, `SELECT repeat('x', 101)`, nil); !errors.Is(err, ErrResultTooLarge) {
		t.Fatalf("too many bytes: err = %v, want ErrResultTooLarge", err)
	}
	if res, err := tx.QueryJSON(ctx, `SELECT 1 AS one`, nil); err != nil || string(res.Rows[0]) != `{"one":1}` {
		t.Fatalf("after ErrResultTooLarge: %v %v", res, err)
	}
	if _, err := tx.QueryJSON(ctx, `SET search_path TO public`, nil); !errors.Is(err, ErrStatementDenied) {
		t.Fatalf("a denied statement: %v, want ErrStatementDenied", err)
	}
}

// FuzzJSONValue: for any text a column of any kind may hold, the direct rendering
// (appendJSONValue) and decoding then rendering (decodeText, wire.AppendJSONResultValue)
// give the same bytes, or both fail.
func FuzzJSONValue(f *testing.F) {
	oids := []uint32{oidBool, oidInt2, oidInt4, oidInt8, 1700, oidText, 2950, oidFloat8, oidBytea, oidTimestamptz, oidTimestamp}
	for _, s := range []string{"t", "f", "0", "-0", "007", "-12", "123456789012345678", "9223372036854775807", "9223372036854775808",
		"1.5", "NaN", "-.5", "1e3", "2024-02-29 13:14:15.123456+00", "2023-02-29 13:14:15+00", "2026-12-04 18:00:00",
		"2026-12-04 18:00:00.000000", "2026-12-04 24:00:00+00", "1677-12-31 23:59:59+00", "2262-01-01 00:00:00+00",
		"2026-12-04 18:00:00.1234567891+00", "2026-12-04 18:00:00.+00", "2026-12-04 18:00:00+01", "héllo \"x\"\n", "\\x00ff", "infinity"} {
		f.Add(uint8(0), []byte(s))
	}
	db := &DB{}
	f.Fuzz(func(t *testing.T, which uint8, raw []byte) {
		oid := oids[int(which)%len(oids)]
		kind, ok := db.jsonKindOf(oid)
		if !ok {
			t.Fatalf("oid %d has no kind", oid)
		}
		got, gerr := appendJSONValue([]byte("x"), kind, oid, raw)
		v, werr := decodeText(oid, raw)
		var want []byte
		if werr == nil {
			var ok bool
			if want, ok = wire.AppendJSONResultValue([]byte("x"), v, oid == 1700); !ok {
				want = []byte("xnull")
			}
		}
		if (gerr == nil) != (werr == nil) || (gerr == nil && !bytes.Equal(got, want)) {
			t.Fatalf("oid %d, %q: direct %s (%v), decoded %s (%v)", oid, raw, got, gerr, want, werr)
		}
	})
}
