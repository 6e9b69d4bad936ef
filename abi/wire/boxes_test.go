package wire

import (
	"errors"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The guest's decoding (aliased values boxed from shared arrays, columns from a
// cache) gives the same values as the plain decoding, for every value type.
func TestDecodeSQLResultCached(t *testing.T) {
	at := time.Date(2026, 12, 7, 10, 0, 0, 123456789, time.UTC)
	cols := []Column{{"s", "text"}, {"small", "int8"}, {"big", "int8"}, {"neg", "int8"}, {"f", "float8"},
		{"t", "timestamptz"}, {"b", "bytea"}, {"ok", "bool"}, {"n", "text"}}
	rows := [][]any{
		{"first", int64(7), int64(1 << 40), int64(-3), 2.5, at, []byte{1, 2}, true, nil},
		{"", int64(255), int64(256), int64(-1 << 62), -0.0, at.Add(time.Hour), []byte{}, false, nil},
		{"third row, longer text", int64(0), int64(1<<63 - 1), int64(-1 << 63), 1e300, time.Unix(0, 0).UTC(), []byte("x"), true, "not null"},
	}
	enc, err := AppendSQLResult(nil, &SQLResult{Columns: cols, Rows: rows})
	if err != nil {
		t.Fatal(err)
	}
	var want SQLResult
	if err := DecodeSQLResult(enc, &want); err != nil {
		t.Fatal(err)
	}
	var cache ColumnCache
	var first SQLResult
	for pass := 0; pass < 2; pass++ {
		var got SQLResult
		if err := DecodeSQLResultCached(append([]byte(nil), enc...), &got, nil, &cache); err != nil {
			t.Fatalf("pass %d: %v", pass, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("pass %d:\n got %#v\nwant %#v", pass, got, want)
		}
		if pass == 0 {
			first = got
			continue
		}
		if &got.Columns[0] != &first.Columns[0] {
			t.Fatal("the second decoding did not take the remembered columns")
		}
		if cap(got.Columns) != len(got.Columns) {
			t.Fatal("shared columns have room to append into")
		}
	}

	// Same count, other names: not confused with the remembered columns.
	other := []Column{{"x", "text"}, {"small", "int8"}, {"big", "int8"}, {"neg", "int8"}, {"f", "float8"},
		{"t", "timestamptz"}, {"b", "bytea"}, {"ok", "bool"}, {"n", "text"}}
	enc2, _ := AppendSQLResult(nil, &SQLResult{Columns: other, Rows: rows[:1]})
	var got2 SQLResult
	if err := DecodeSQLResultCached(enc2, &got2, nil, &cache); err != nil || got2.Columns[0].Name != "x" {
		t.Fatalf("other columns: %v %v", got2.Columns, err)
	}

	// More distinct column sets than the cache holds: each still decodes right.
	for i := 0; i < 3*columnCacheSize; i++ {
		c := []Column{{Name: "c" + itoa(i), Type: "int8"}}
		e, _ := AppendSQLResult(nil, &SQLResult{Columns: c, Rows: [][]any{{int64(i)}}})
		var g SQLResult
		if err := DecodeSQLResultCached(e, &g, nil, &cache); err != nil || !reflect.DeepEqual(g.Columns, c) || g.Rows[0][0] != int64(i) {
			t.Fatalf("set %d: %v %v %v", i, g.Columns, g.Rows, err)
		}
	}

	// A row with more values than columns is refused, cache or not.
	bad := appendRowField(t, append([]byte(nil), enc[:len(enc)-HeaderSize-8]...), append(append([]any{}, rows[0]...), "extra"))
	var g SQLResult
	if err := DecodeSQLResultCached(bad, &g, nil, &cache); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "10 values for 9 columns") {
		t.Fatalf("a ragged row: %v", err)
	}
}

// appendRowField appends one encoded row of values to b.
func appendRowField(t *testing.T, b []byte, row []any) []byte {
	t.Helper()
	b, mark := BeginNested(b, resRow)
	for _, v := range row {
		var err error
		if b, err = AppendValue(b, rowValue, v); err != nil {
			t.Fatal(err)
		}
	}
	return EndNested(b, mark)
}

// BenchmarkDecodeSQLResultCached is a guest's decoding of a one-row, three-column
// result it has seen the columns of.
func BenchmarkDecodeSQLResultCached(b *testing.B) {
	enc, _ := AppendSQLResult(nil, &SQLResult{Columns: []Column{{"id", "text"}, {"name", "text"}, {"email", "text"}},
		Rows: [][]any{{"c17", "Customer 17", "c17@example.com"}}})
	var cache ColumnCache
	b.ReportAllocs()
	for b.Loop() {
		var r SQLResult
		if err := DecodeSQLResultCached(enc, &r, nil, &cache); err != nil {
			b.Fatal(err)
		}
	}
}

// The boxed values keep their arrays alive: values held only through interfaces,
// after the results, rows and decoders are gone, survive collections intact.
func TestBoxedValuesSurviveCollection(t *testing.T) {
	at := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	var kept []any
	for i := 0; i < 2000; i++ {
		row := []any{"text-" + itoa(i), int64(1000 + i), float64(i) / 4, at.Add(time.Duration(i) * time.Second)}
		enc, err := AppendSQLResult(nil, &SQLResult{Columns: []Column{{"s", "text"}, {"i", "int8"}, {"f", "float8"}, {"t", "timestamptz"}},
			Rows: [][]any{row}})
		if err != nil {
			t.Fatal(err)
		}
		var r SQLResult
		if err := DecodeSQLResultAliased(enc, &r, nil); err != nil {
			t.Fatal(err)
		}
		kept = append(kept, r.Rows[0]...)
		if i%100 == 0 {
			runtime.GC()
		}
	}
	runtime.GC()
	runtime.GC()
	for i := 0; i < 2000; i++ {
		v := kept[4*i : 4*i+4]
		if v[0] != "text-"+itoa(i) || v[1] != int64(1000+i) || v[2] != float64(i)/4 || !v[3].(time.Time).Equal(at.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("value set %d changed: %v", i, v)
		}
	}
}

// A large result's boxed values take a few allocations per type (arrays doubling in
// size), not one per value.
func TestBoxedValuesAllocations(t *testing.T) {
	const n = 1000
	rows := make([][]any, n)
	for i := range rows {
		rows[i] = []any{"name-" + itoa(i), int64(1_000_000 + i), time.Unix(int64(i), 0).UTC()}
	}
	enc, err := AppendSQLResult(nil, &SQLResult{Columns: []Column{{"s", "text"}, {"i", "int8"}, {"t", "timestamptz"}}, Rows: rows})
	if err != nil {
		t.Fatal(err)
	}
	var cache ColumnCache
	allocs := testing.AllocsPerRun(20, func() {
		var r SQLResult
		if err := DecodeSQLResultCached(enc, &r, nil, &cache); err != nil || len(r.Rows) != n || r.Rows[n-1][1] != int64(1_000_000+n-1) {
			t.Fatalf("%v %d", err, len(r.Rows))
		}
	})
	// The values array and the rows list, then per type about log2(1000/8)+1 arrays.
	if allocs > 30 {
		t.Fatalf("%v allocations for %d rows of three boxed values", allocs, n)
	}
}
