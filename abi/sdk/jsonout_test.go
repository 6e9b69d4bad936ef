package keel

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

func TestJSONFields(t *testing.T) {
	ts := time.Date(2026, 12, 2, 16, 0, 0, 5000, time.UTC)
	r := JSONFields(201, "s", "a\"<b>\u2028", "i", 7, "i64", int64(-1), "u", uint64(1<<63), "f", 0.000001, "big", 1e21,
		"nan", math.NaN(), "b", true, "nil", nil, "t", ts, "raw", RawJSON(`{"x":[1,2]}`), "bytes", []byte{1, 2})
	want := `{"s":"a\"\u003cb\u003e\u2028","i":7,"i64":-1,"u":9223372036854775808,"f":0.000001,"big":1e+21,` +
		`"nan":"NaN","b":true,"nil":null,"t":"2026-12-02T16:00:00.000005Z","raw":{"x":[1,2]},"bytes":"AQI="}`
	if r.Status != 201 || string(r.Body) != want || r.Headers[0].Value != "application/json" {
		t.Fatalf("got %d %s\nwant %s", r.Status, r.Body, want)
	}
	// The same values through encoding/json decode to the same document.
	var a, b any
	if err := json.Unmarshal(r.Body, &a); err != nil {
		t.Fatal(err)
	}
	ref, _ := json.Marshal(map[string]any{"s": "a\"<b>\u2028", "i": 7, "i64": int64(-1), "u": uint64(1 << 63), "f": 0.000001, "big": 1e21,
		"nan": "NaN", "b": true, "nil": nil, "t": ts, "raw": json.RawMessage(`{"x":[1,2]}`), "bytes": []byte{1, 2}})
	json.Unmarshal(ref, &b)
	if ja, jb := mustJSON(t, a), mustJSON(t, b); ja != jb {
		t.Errorf("decoded differently:\n%s\n%s", ja, jb)
	}

	for _, tc := range []struct {
		kv   []any
		want string
	}{
		{[]any{"k"}, "a key without a value"},
		{[]any{1, "v"}, "argument 0 is not a string key"},
		{[]any{"m", map[string]int{}}, "the value of m has a type"},
		{[]any{"r", RawJSON(`{bad`)}, "the value of r has a type"},
	} {
		r := JSONFields(200, tc.kv...)
		if r.Status != 500 || !strings.Contains(string(r.Body), tc.want) || !json.Valid(r.Body) {
			t.Errorf("%v: %d %s", tc.kv, r.Status, r.Body)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestErrorBody(t *testing.T) {
	r := Error(404, "not_found", `no "x" <here>`)
	var got map[string]map[string]string
	if err := json.Unmarshal(r.Body, &got); err != nil || got["error"]["code"] != "not_found" || got["error"]["message"] != `no "x" <here>` {
		t.Fatalf("%s: %v", r.Body, err)
	}
	if _, has := got["error"]["request_id"]; has {
		t.Errorf("request_id outside a call: %s", r.Body)
	}
}

func TestValidJSON(t *testing.T) {
	for _, s := range []string{
		``, ` `, `{}`, `[]`, `0`, `-0`, `01`, `1.`, `.5`, `1e`, `1e+`, `1E-7`, `-`, `"a`, `"\u12"`, `"\u12ag"`, `"\x"`,
		"\"\x01\"", "\"\xff\"", `{"a":}`, `{"a" 1}`, `{,}`, `[1,]`, `[1 2]`, `{"a":1,}`, `true`, `tru`, `nulll`, `null x`,
		` {"a" : [ 1 , { "b" : null } ] } `, `"\/\b\f\n\r\t\"\\"`, strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
		strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	} {
		if got, want := ValidJSON([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("ValidJSON(%.40q) = %v, encoding/json says %v", s, got, want)
		}
	}
}

// FuzzValidJSON holds ValidJSON to encoding/json.Valid, which it replaces in guests.
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5e3,"x\u00e9"],"b":null}`, `[true,false]`, `"\ud800"`, `-0.0E+0`, `{"a":{"b":[]}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := ValidJSON(b), json.Valid(b); got != want {
			t.Fatalf("ValidJSON(%q) = %v, encoding/json says %v", b, got, want)
		}
	})
}
