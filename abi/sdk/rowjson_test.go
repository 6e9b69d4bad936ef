package keel

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/keelhq/keel/abi/wire"
)

func TestRowsAppendJSON(t *testing.T) {
	ts := time.Date(2026, 11, 26, 9, 30, 0, 123400000, time.UTC)
	rows := &Rows{
		Columns: []wire.Column{{Name: "id", Type: "uuid"}, {Name: "n", Type: "int8"}, {Name: "price", Type: "numeric"},
			{Name: "odd", Type: "numeric"}, {Name: "f", Type: "float8"}, {Name: "ok", Type: "bool"}, {Name: "note", Type: "text"},
			{Name: "at", Type: "timestamptz"}, {Name: "raw", Type: "bytea"}},
		Data: [][]any{
			{"3f1c…", int64(-42), "12.50", "NaN", 0.1, true, nil, ts, []byte{0, 1, 254}},
			{"x", int64(0), nil, "-0.5e+3", math.Inf(1), false, "a\"b<\n", ts, []byte{}},
		},
	}
	tests := []struct {
		row  int
		want string
	}{
		{0, `{"id":"3f1c…","n":-42,"price":12.50,"odd":"NaN","f":0.1,"ok":true,"note":null,"at":"2026-11-26T09:30:00.1234Z","raw":"AAH+"}`},
		{1, `{"id":"x","n":0,"price":null,"odd":-0.5e+3,"f":"+Inf","ok":false,"note":"a\"b\u003c\n","at":"2026-11-26T09:30:00.1234Z","raw":""}`},
	}
	for _, tc := range tests {
		got := string(rows.AppendJSON(nil, tc.row))
		if got != tc.want {
			t.Errorf("row %d:\n got %s\nwant %s", tc.row, got, tc.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("row %d: invalid JSON %s", tc.row, got)
		}
	}
	arr := rows.AppendJSONArray([]byte("x"), 0, 2)
	if !json.Valid(arr[1:]) || string(arr[:2]) != "x[" {
		t.Fatalf("array: %s", arr)
	}
	if got := string(rows.AppendJSONArray(nil, 1, 1)); got != "[]" {
		t.Fatalf("empty array: %s", got)
	}
	// Values DB.Query never returns (Rows built by hand) are written as encoding/json
	// writes them.
	odd := &Rows{Columns: []wire.Column{{Name: "n"}, {Name: "l"}, {Name: "bad"}}, Data: [][]any{{7, []int{1, 2}, make(chan int)}}}
	if got := string(odd.AppendJSON(nil, 0)); got != `{"n":7,"l":[1,2],"bad":null}` {
		t.Fatalf("hand-built row: %s", got)
	}
}
