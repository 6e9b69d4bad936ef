package keel

import (
	"strconv"
	"testing"

	"github.com/keelhq/keel/abi/wire"
)

// BenchmarkQueryTyped is one statement of a unit of work as keelbench's SQL per
// statement row runs it: a primary-key read of three text columns through DB.Query,
// each value then read by name, against a host that answers at once.
func BenchmarkQueryTyped(b *testing.B) {
	enc, err := wire.AppendSQLResult(nil, &wire.SQLResult{
		Columns: []wire.Column{{Name: "id", Type: "text"}, {Name: "name", Type: "text"}, {Name: "email", Type: "text"}},
		Rows:    [][]any{{"c17", "Customer 17", "c17@example.com"}},
	})
	if err != nil {
		b.Fatal(err)
	}
	testHost = func(fn hostFn, in []byte) ([]byte, error) { return enc, nil }
	b.Cleanup(func() { testHost = nil })
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		rows, err := DB.Query(`SELECT id, name, email FROM customers WHERE id = $1`, "c"+strconv.Itoa(i%1000+1))
		if err != nil || rows.Len() != 1 {
			b.Fatal(err)
		}
		row := rows.Row(0)
		if row.String("id") == "" || row.String("name") == "" || row.String("email") == "" {
			b.Fatal("empty value")
		}
	}
}
