package wire

import (
	"encoding/json"
	"math"
	"testing"
)

// Strings and floats are written byte for byte as encoding/json writes them.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "quote\" back\\slash", "ctl \x00\x01\x1f\t\r\n\b\f", "<a href='x'>&</a>",
		"\u2028\u2029", "bad \xff\xfe utf8", "ünïcødé ✓ 𝄞", "\x7f"} {
		want, _ := json.Marshal(s)
		if got := AppendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("string %q: got %s want %s", s, got, want)
		}
	}
	for _, f := range []float64{0, -0.0, 1, -1.5, 0.1, 1e20, 1e21, 1.5e-7, 1e-6, 123456789.125, math.MaxFloat64, math.SmallestNonzeroFloat64} {
		want, _ := json.Marshal(f)
		if got := AppendJSONFloat(nil, f); string(got) != string(want) {
			t.Errorf("float %v: got %s want %s", f, got, want)
		}
	}
}

func TestIsJSONNumber(t *testing.T) {
	for s, want := range map[string]bool{
		"0": true, "12": true, "12.50": true, "-0.5": true, "1e9": true, "1E+9": true, "2.5e-3": true,
		"": false, "-": false, "01": false, "1.": false, ".5": false, "1e": false, "NaN": false, "Infinity": false, "+1": false, "1 ": false,
	} {
		if got := IsJSONNumber(s); got != want {
			t.Errorf("IsJSONNumber(%q) = %v, want %v", s, got, want)
		}
		if want && !json.Valid([]byte(s)) {
			t.Errorf("%q accepted but not valid JSON", s)
		}
	}
}

// FuzzAppendJSONString: any string, including invalid UTF-8 from a database, comes
// out exactly as encoding/json would write it.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "a\"b", "\xff", "\u2028", "<&>", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := AppendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("%q: got %s want %s", s, got, want)
		}
	})
}

// FuzzIsJSONNumber: whatever IsJSONNumber accepts is a valid JSON document.
func FuzzIsJSONNumber(f *testing.F) {
	for _, s := range []string{"0", "-1.5e+3", "01", "1.", "NaN"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if IsJSONNumber(s) && !json.Valid([]byte(s)) {
			t.Fatalf("%q accepted but not valid JSON", s)
		}
	})
}

func TestSQLJSONRoundTrip(t *testing.T) {
	b, err := AppendSQLRequest(nil, &SQLRequest{SQL: "select 1", Params: []any{"x"}, JSON: true})
	if err != nil {
		t.Fatal(err)
	}
	var req SQLRequest
	if err := DecodeSQLRequest(b, &req); err != nil || !req.JSON || req.SQL != "select 1" || len(req.Params) != 1 {
		t.Fatalf("request: %+v %v", req, err)
	}
	plain, _ := AppendSQLRequest(nil, &SQLRequest{SQL: "select 1"})
	if err := DecodeSQLRequest(plain, &req); err != nil || req.JSON {
		t.Fatalf("a request without the flag decoded as JSON: %+v %v", req, err)
	}
	cols := []Column{{"id", "text"}, {"n", "int8"}}
	in := &SQLResult{Columns: cols, JSONRows: [][]byte{AppendRowJSON(nil, cols, []any{"a", int64(1)}), AppendRowJSON(nil, cols, []any{"b", nil})}}
	out, err := AppendSQLResult(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	var res SQLResult
	if err := DecodeSQLResultAliased(out, &res, nil); err != nil || len(res.Rows) != 0 || len(res.JSONRows) != 2 ||
		string(res.JSONRows[0]) != `{"id":"a","n":1}` || string(res.JSONRows[1]) != `{"id":"b","n":null}` {
		t.Fatalf("result: %+v %v", res, err)
	}
}

func TestAppendRowJSONUnknownType(t *testing.T) {
	cols := []Column{{"a", "text"}, {"b", "text"}}
	if got := string(AppendRowJSON(nil, cols, []any{struct{}{}})); got != `{"a":null,"b":null}` {
		t.Fatalf("got %s", got)
	}
}

// TestJSONPlain: JSONPlain is true exactly for the bytes AppendJSONString writes as
// they are (the guest's key lookup relies on it).
func TestJSONPlain(t *testing.T) {
	for c := 0; c < 256; c++ {
		verbatim := string(AppendJSONString(nil, string([]byte{byte(c)}))) == `"`+string([]byte{byte(c)})+`"`
		if JSONPlain(byte(c)) != verbatim {
			t.Errorf("byte %#x: JSONPlain %v, written as it is %v", c, JSONPlain(byte(c)), verbatim)
		}
	}
}
