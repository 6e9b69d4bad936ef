package wire

import "testing"

// BenchmarkSplitSQLResultJSON reads a one-row JSON result of fourteen columns, the
// shape of master-data's read by id; run it in wasm too (TestInWasm's build), where
// its cost matters.
func BenchmarkSplitSQLResultJSON(b *testing.B) {
	cols := []Column{{Name: "id", Type: "uuid"}, {Name: "code", Type: "text"}, {Name: "name", Type: "text"}, {Name: "email", Type: "text"},
		{Name: "phone", Type: "text"}, {Name: "country", Type: "text"}, {Name: "currency", Type: "text"}, {Name: "tax_id", Type: "text"},
		{Name: "credit_limit", Type: "numeric"}, {Name: "status", Type: "text"}, {Name: "notes", Type: "text"},
		{Name: "version", Type: "int8"}, {Name: "created_at", Type: "timestamptz"}, {Name: "updated_at", Type: "timestamptz"}}
	enc, err := AppendSQLResult(nil, &SQLResult{Columns: cols, JSONRows: [][]byte{[]byte(`{"id":"x","version":7}`)}})
	if err != nil {
		b.Fatal(err)
	}
	var store [1][]byte
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, rows, ok, err := SplitSQLResultJSON(enc, store[:0]); !ok || err != nil || len(rows) != 1 {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkAppendJSONString writes the text of a typical row's string columns, which
// the host does for every text value of a JSON result.
func BenchmarkAppendJSONString(b *testing.B) {
	values := []string{"3f2c1a9e-8b7d-4c6e-9f01-23456789abcd", "C-1", "Ada Lovelace", "ada@example.com", "+44 20 7946 0000",
		"GB", "GBP", "GB123456789", "active", "Analytical engine account", "2026-12-04T10:00:00Z"}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = buf[:0]
		for _, v := range values {
			buf = AppendJSONString(buf, v)
		}
	}
}
