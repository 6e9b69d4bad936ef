package postgres

import (
	"strconv"
	"testing"
)

func TestNameMemo(t *testing.T) {
	var nm nameMemo
	oids := []uint32{25, 20}
	cases := []struct {
		schema string
		gen    int64
		sql    string
		oids   []uint32
	}{
		{"plg_a", 1, "SELECT 1", nil},
		{"plg_a", 1, "SELECT 1", []uint32{}},
		{"plg_a", 2, "SELECT 1", nil},
		{"plg_b", 1, "SELECT 1", nil},
		{"plg_a", 1, "SELECT $1", []uint32{25}},
		{"plg_a", 1, "SELECT $1", []uint32{20}},
		{"plg_a", 1, "SELECT $1, $2", oids},
	}
	seen := map[string]int{}
	for round := 0; round < 2; round++ { // computed, then remembered
		for i, c := range cases {
			got := nm.name(c.schema, c.gen, c.sql, c.oids)
			if want := statementName(c.schema, c.gen, c.sql, c.oids); got != want {
				t.Fatalf("round %d case %d: %q, want %q", round, i, got, want)
			}
			if j, ok := seen[got]; ok && j != i && !(i <= 1 && j <= 1) { // nil and empty types name the same statement
				t.Fatalf("cases %d and %d share the name %q", j, i, got)
			}
			seen[got] = i
		}
	}
	// The memo keeps its own copy of the types: changing the caller's slice afterwards
	// changes the name, as it must.
	oids[1] = 1700
	if got, want := nm.name("plg_a", 1, "SELECT $1, $2", oids), statementName("plg_a", 1, "SELECT $1, $2", oids); got != want {
		t.Fatalf("after the caller's types changed: %q, want %q", got, want)
	}
	// Past its bound the memo starts over and still answers right.
	for i := 0; i < maxNameMemo+10; i++ {
		sql := "SELECT " + strconv.Itoa(i)
		if got, want := nm.name("plg_a", 1, sql, nil), statementName("plg_a", 1, sql, nil); got != want {
			t.Fatalf("statement %d: %q, want %q", i, got, want)
		}
	}
	if len(nm.m) > maxNameMemo {
		t.Fatalf("memo holds %d names, bound %d", len(nm.m), maxNameMemo)
	}
}

func BenchmarkStatementName(b *testing.B) {
	var nm nameMemo
	oids := []uint32{25}
	b.ReportAllocs()
	for b.Loop() {
		_ = nm.name("plg_bench_data", 3, `SELECT id, name, email FROM customers WHERE id = $1`, oids)
	}
}
