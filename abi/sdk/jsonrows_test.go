package keel

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/keelhq/keel/abi/wire"
)

var jsonRowsCols = []wire.Column{{Name: "s", Type: "text"}, {Name: "n", Type: "int8"}, {Name: "f", Type: "float8"},
	{Name: "ok", Type: "bool"}, {Name: "raw", Type: "bytea"}, {Name: "at", Type: "timestamptz"},
	{Name: "price", Type: "numeric"}, {Name: "none", Type: "text"}}

// checkJSONRows renders one row on the host's side (wire.AppendRowJSON) and checks
// it against the guest's own rendering of the same values after a trip through the
// wire (Rows.AppendJSON), and the single-column readers against encoding/json.
func checkJSONRows(t *testing.T, s string, n int64, f float64, ok bool, raw []byte, at time.Time, price string) {
	t.Helper()
	row := []any{s, n, f, ok, raw, at, price, nil}
	host := wire.AppendRowJSON(nil, jsonRowsCols, row)

	enc, err := wire.AppendSQLResult(nil, &wire.SQLResult{Columns: jsonRowsCols, Rows: [][]any{row}})
	if err != nil {
		t.Fatal(err)
	}
	var res wire.SQLResult
	if err := wire.DecodeSQLResultAliased(enc, &res, nil); err != nil {
		t.Fatal(err)
	}
	guest := (&Rows{Columns: res.Columns, Data: res.Rows}).AppendJSON(nil, 0)
	if !bytes.Equal(host, guest) {
		t.Fatalf("host and guest render differently:\nhost  %s\nguest %s", host, guest)
	}
	var m map[string]any
	if err := json.Unmarshal(host, &m); err != nil {
		t.Fatalf("not JSON: %s: %v", host, err)
	}
	r := queryJSONVia(t, jsonRowsCols, host)
	if got := r.Columns(); len(got) != len(jsonRowsCols) || got[0] != jsonRowsCols[0] || got[len(got)-1] != jsonRowsCols[len(got)-1] {
		t.Fatalf("Columns() = %v, want %v", got, jsonRowsCols)
	}
	if got := r.String(0, "s"); got != m["s"] {
		t.Fatalf("String(s) = %q, encoding/json reads %q", got, m["s"])
	}
	if got := r.Int(0, "n"); got != n {
		t.Fatalf("Int(n) = %d, want %d", got, n)
	}
	for _, c := range jsonRowsCols {
		v := r.Value(0, c.Name)
		want, _ := json.Marshal(m[c.Name])
		var a, b any
		if json.Unmarshal(v, &a) != nil || json.Unmarshal(want, &b) != nil || !jsonEqual(a, b) {
			t.Fatalf("Value(%s) = %s, encoding/json reads %s", c.Name, v, want)
		}
	}
	if r.Value(0, "missing") != nil || r.String(0, "none") != "" || r.Int(0, "none") != 0 {
		t.Fatal("unknown or NULL columns")
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func TestJSONRows(t *testing.T) {
	at := time.Date(2026, 12, 2, 18, 41, 8, 123456000, time.UTC)
	checkJSONRows(t, "plain", 42, 0.5, true, []byte{1, 2}, at, "12.50")
	checkJSONRows(t, "q\"uo,te}\\ <&> \u2028 \xff", math.MinInt64, math.Inf(-1), false, nil, time.Unix(0, math.MinInt64).UTC(), "NaN")
	checkJSONRows(t, "", math.MaxInt64, 1e-7, false, []byte{}, at, "-0.5e+3")

	r := queryJSONVia(t, jsonRowsCols[:2], []byte(`{"s":"a","n":7}`), []byte(`{"s":"b","n":-8}`))
	if got := string(r.AppendArray([]byte("x"), 0, 2)); got != `x[{"s":"a","n":7},{"s":"b","n":-8}]` {
		t.Fatalf("AppendArray: %s", got)
	}
	if got := string(r.AppendArray(nil, 1, 1)); got != "[]" {
		t.Fatalf("empty AppendArray: %s", got)
	}
	if r.Int(1, "n") != -8 || r.Int(0, "s") != 0 || r.String(0, "n") != "" {
		t.Fatal("readers of mismatched types")
	}
	for _, bad := range []string{``, `{`, `{"s"`, `{"s":`, `{"s":"a"`, `{"s":"a",`, `[1]`, `{"s":}`, `{"s":"a","t"`, `{"s":"a","t":`} {
		if v := jsonMember([]byte(bad), "t"); v != nil {
			t.Errorf("jsonMember(%q, t) = %q", bad, v)
		}
	}
	if v := jsonMember([]byte(`{"s":}`), "s"); v != nil {
		t.Errorf("a member without a value: %q", v)
	}

	// Column names that JSON must escape are found by their unescaped names; the
	// first of two columns of one name is the one read, as Rows.Value reads it.
	odd := []wire.Column{{Name: `we"ird`, Type: "int8"}, {Name: "a\\b", Type: "int8"}, {Name: "dup", Type: "int8"}, {Name: "dup", Type: "int8"}}
	obj := wire.AppendRowJSON(nil, odd, []any{int64(1), int64(2), int64(3), int64(4)})
	r = queryJSONVia(t, odd, obj)
	if r.Int(0, `we"ird`) != 1 || r.Int(0, "a\\b") != 2 || r.Int(0, "dup") != 3 || r.Value(0, "we") != nil {
		t.Fatalf("escaped or repeated names in %s", obj)
	}
}

// queryJSONVia runs DB.QueryJSON against a host answering with cols and objs, encoded
// as the host encodes them.
func queryJSONVia(t *testing.T, cols []wire.Column, objs ...[]byte) *JSONRows {
	t.Helper()
	withSQLHost(t, &wire.SQLResult{Columns: cols, JSONRows: objs})
	r, err := DB.QueryJSON("SELECT 1", 1)
	if err != nil {
		t.Fatal(err)
	}
	if r.Len() != len(objs) {
		t.Fatalf("%d rows, want %d", r.Len(), len(objs))
	}
	return r
}

// FuzzJSONRows: for any values, the host's and the guest's renderings are the same
// bytes, and JSONRows reads back what encoding/json reads.
func FuzzJSONRows(f *testing.F) {
	f.Add("a", int64(1), 0.5, true, []byte{0}, int64(0), "1.5")
	f.Add("\x00\"\\", int64(-1), -1e21, false, []byte(nil), int64(1<<62), "x")
	f.Fuzz(func(t *testing.T, s string, n int64, fl float64, ok bool, raw []byte, nanos int64, price string) {
		checkJSONRows(t, s, n, fl, ok, raw, time.Unix(0, nanos).UTC(), price)
	})
}

// FuzzJSONKeyIs: a member's quoted name, as the host writes it, matches exactly the
// names it unquotes to, whatever their lengths (jsonKeyIs rejects most by length).
func FuzzJSONKeyIs(f *testing.F) {
	f.Add("version", "version")
	f.Add(`we"ird`, `we"ird`)
	f.Add("a\\b", "a\\b")
	f.Add("\u2028x", "\u2028x")
	f.Add("ab", `a\`)
	f.Fuzz(func(t *testing.T, name, key string) {
		q := wire.AppendJSONString(nil, name)
		unq, err := strconv.Unquote(string(q))
		if err != nil {
			t.Fatalf("the host wrote %s, which Go cannot unquote: %v", q, err)
		}
		if got, want := jsonKeyIs(q, key), unq == key; got != want {
			t.Fatalf("jsonKeyIs(%s, %q) = %v, want %v", q, key, got, want)
		}
		if !jsonKeyIs(q, unq) {
			t.Fatalf("jsonKeyIs(%s, %q) = false for its own name", q, unq)
		}
	})
}

// memberObjects renders host objects whose values hold what findMember looks
// for: commas, quotes, braces and other members' keys inside strings.
func memberObjects(names []string, texts []string, n int64) [][]byte {
	var objs [][]byte
	for _, text := range texts {
		cols := make([]wire.Column, 0, len(names)+2)
		row := make([]any, 0, len(names)+2)
		for i, name := range names {
			cols = append(cols, wire.Column{Name: name, Type: "text"})
			if i%2 == 0 {
				row = append(row, text)
			} else {
				row = append(row, n+int64(i))
			}
		}
		cols = append(cols, wire.Column{Name: "none", Type: "text"}, wire.Column{Name: "last", Type: "int8"})
		row = append(row, nil, n)
		objs = append(objs, wire.AppendRowJSON(nil, cols, row))
	}
	return objs
}

func TestFindMember(t *testing.T) {
	names := []string{"id", "notes", "version", "ver", "version_2", "x,\"version\":", "é", "tab\there", "version"}
	texts := []string{"", `,"version":1`, `{"version":2}`, `a\",\"version\":3`, "comma, comma", `\`, `"`, "ünïcode", "line\nbreak"}
	for _, obj := range memberObjects(names, texts, 7) {
		for _, key := range append(names, "missing", "", "none", "last", "versio", "ersion") {
			want := jsonMember(obj, key)
			got, ok := findMember(obj, key)
			if !ok {
				got = jsonMember(obj, key)
			}
			if !bytes.Equal(got, want) || (got == nil) != (want == nil) {
				t.Fatalf("key %q in %s: findMember %q (ok %v), jsonMember %q", key, obj, got, ok, want)
			}
		}
	}
	if _, ok := findMember([]byte(`{"a":1}`), `a"b`); ok {
		t.Fatal("a key JSON escapes was looked up by pattern")
	}
}

func FuzzFindMember(f *testing.F) {
	f.Add("version", "notes", `,"version":9`, int64(7))
	f.Add("a", "b", `\"a\":`, int64(-1))
	f.Fuzz(func(t *testing.T, k1, k2, text string, n int64) {
		for _, obj := range memberObjects([]string{k1, k2, k1 + k2}, []string{text, k1, `"` + k2 + `":`}, n) {
			for _, key := range []string{k1, k2, k1 + k2, text, "none", "last"} {
				got, ok := findMember(obj, key)
				if !ok {
					continue
				}
				if want := jsonMember(obj, key); !bytes.Equal(got, want) || (got == nil) != (want == nil) {
					t.Fatalf("key %q in %s: findMember %q, jsonMember %q", key, obj, got, want)
				}
			}
		}
	})
}

// BenchmarkJSONMember reads master-data's ETag column out of its GET row, by pattern
// (findMember, what JSONRows.Value does) and by walking the object (jsonMember).
func BenchmarkJSONMember(b *testing.B) {
	obj := []byte(getPathRow)
	b.Run("findMember", func(b *testing.B) {
		for b.Loop() {
			if v, ok := findMember(obj, "version"); !ok || string(v) != "7" {
				b.Fatal(string(v))
			}
		}
	})
	b.Run("jsonMember", func(b *testing.B) {
		for b.Loop() {
			if v := jsonMember(obj, "version"); string(v) != "7" {
				b.Fatal(string(v))
			}
		}
	})
}
