package wire

import (
	"bytes"
	"errors"
	"math"
	"os/exec"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func sampleRequest() *HTTPRequest {
	return &HTTPRequest{
		Method: "POST", Path: "/customers/42", Route: "/customers/:id", Query: "a=1&b=2",
		Params:   []KV{{"id", "42"}},
		Headers:  []KV{{"content-type", "application/json"}, {"x-multi", "1"}, {"x-multi", "2"}},
		Body:     []byte(`{"name":"Ada"}`),
		Prefetch: []byte("encoded sql request"), PrefetchResult: []byte("encoded sql result"),
		Ctx: CallContext{RequestID: "r1", Tenant: "t1", Subject: "u1", Permissions: []string{"a", "b"},
			Deadline: 1234567890, Plugin: "master-data", Version: "1.0.0"},
	}
}

func TestHTTPRequestRoundTrip(t *testing.T) {
	in := sampleRequest()
	var out HTTPRequest
	if err := DecodeHTTPRequest(AppendHTTPRequest(nil, in), &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, &out) {
		t.Fatalf("round trip mismatch:\n in %+v\nout %+v", in, &out)
	}
}

func TestHTTPResponseRoundTrip(t *testing.T) {
	in := &HTTPResponse{Status: 201, Headers: []KV{{"Location", "/x"}}, Body: []byte("hi"), Flags: FlagPanicked}
	var out HTTPResponse
	if err := DecodeHTTPResponse(AppendHTTPResponse(nil, in), &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, &out) {
		t.Fatalf("mismatch %+v vs %+v", in, &out)
	}
}

func TestEventAndResultRoundTrip(t *testing.T) {
	ev := &Event{ID: "e1", Type: "customer.created", Topic: "master-data.customer", Tenant: "t", Source: "master-data",
		Time: 99, Key: []byte("k"), Payload: []byte(`{}`), Attempt: 3, Ctx: CallContext{RequestID: "r", Plugin: "p", Version: "1.0.0"}}
	var e2 Event
	if err := DecodeEvent(AppendEvent(nil, ev), &e2); err != nil || !reflect.DeepEqual(ev, &e2) {
		t.Fatalf("event round trip: %v\n%+v\n%+v", err, ev, &e2)
	}
	res := &Result{Code: uint32(CodeDatabase), Message: "boom", Detail: "23505", Data: []byte{1, 2}, Flags: 1}
	var r2 Result
	if err := DecodeResult(AppendResult(nil, res), &r2); err != nil || !reflect.DeepEqual(res, &r2) {
		t.Fatalf("result round trip: %v %+v", err, r2)
	}
}

func TestUnknownTagsAreSkipped(t *testing.T) {
	b := AppendField(nil, 200, []byte("from the future"))
	b = AppendHTTPResponse(b, &HTTPResponse{Status: 204})
	var r HTTPResponse
	if err := DecodeHTTPResponse(b, &r); err != nil || r.Status != 204 {
		t.Fatalf("got %v %+v", err, r)
	}
}

func TestDecodeErrors(t *testing.T) {
	valid := AppendHTTPResponse(nil, &HTTPResponse{Status: 200, Body: []byte("body")})
	for name, b := range map[string][]byte{
		"truncated header": valid[:3],
		"truncated value":  valid[:len(valid)-1],
		"short integer":    AppendField(nil, respStatus, []byte{1, 2}),
		"status range":     AppendUint(nil, respStatus, 42),
		"no status":        AppendField(nil, respBody, []byte("x")),
		"bad pair":         append(AppendUint(nil, respStatus, 200), AppendField(nil, respHeader, []byte{9, 0, 0, 0, 'a'})...),
		"huge length":      {respBody, 0xff, 0xff, 0xff, 0xff},
	} {
		t.Run(name, func(t *testing.T) {
			var r HTTPResponse
			err := DecodeHTTPResponse(b, &r)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("want ErrMalformed, got %v", err)
			}
		})
	}
}

func TestNestedLength(t *testing.T) {
	b, mark := BeginNested(nil, 7)
	b = AppendString(b, 1, "abc")
	b = EndNested(b, mark)
	r := NewReader(b)
	tag, v, ok := r.Next()
	if !ok || tag != 7 || !bytes.Equal(v, AppendString(nil, 1, "abc")) {
		t.Fatalf("nested field decoded wrong: %d %q %v", tag, v, r.Err())
	}
}

func BenchmarkHTTPRequestEncodeDecode(b *testing.B) {
	req := sampleRequest()
	req.Body = bytes.Repeat([]byte("x"), 1024)
	buf := make([]byte, 0, 4096)
	var out HTTPRequest
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = AppendHTTPRequest(buf[:0], req)
		if err := DecodeHTTPRequest(buf, &out); err != nil {
			b.Fatal(err)
		}
	}
}

// The host decodes HTTPResponse, Result and log records from untrusted guests; guests
// decode HTTPRequest, Event and CallContext from the host. None may panic or loop.
func FuzzDecode(f *testing.F) {
	f.Add(AppendHTTPRequest(nil, sampleRequest()))
	f.Add(AppendHTTPResponse(nil, &HTTPResponse{Status: 200, Headers: []KV{{"a", "b"}}, Body: []byte("x")}))
	f.Add(AppendEvent(nil, &Event{ID: "1", Payload: []byte("p"), Attempt: 2}))
	f.Add(AppendResult(nil, &Result{Code: 3, Message: "m"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var req HTTPRequest
		if DecodeHTTPRequest(b, &req) == nil {
			var again HTTPRequest
			if err := DecodeHTTPRequest(AppendHTTPRequest(nil, &req), &again); err != nil {
				t.Fatalf("re-encoded request does not decode: %v", err)
			}
		}
		// The guest's path: a view of the request, its call context decoded on demand
		// with interned strings and a permission list reused when its encoding equals the
		// previous decode's. Both must agree with DecodeHTTPRequest.
		checkView(t, b)
		var resp HTTPResponse
		if DecodeHTTPResponse(b, &resp) == nil && (resp.Status < 100 || resp.Status > 999) {
			t.Fatalf("accepted status %d", resp.Status)
		}
		var ev Event
		_ = DecodeEvent(b, &ev)
		var res Result
		_ = DecodeResult(b, &res)
		var cc CallContext
		_ = DecodeCallContext(b, &cc)
		r := NewReader(b)
		for _, v, ok := r.Next(); ok; _, v, ok = r.Next() {
			_, _, _ = Pair(v)
		}
	})
}

func TestSQLRoundTrip(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	req := &SQLRequest{SQL: "select $1", Params: []any{nil, true, int64(-5), 1.5, "s", []byte{0, 1}, ts}}
	b, err := AppendSQLRequest(nil, req)
	if err != nil {
		t.Fatal(err)
	}
	var got SQLRequest
	if err := DecodeSQLRequest(b, &got); err != nil || !reflect.DeepEqual(req, &got) {
		t.Fatalf("%v\n%#v\n%#v", err, req, &got)
	}
	res := &SQLResult{Columns: []Column{{"a", "int8"}, {"b", "text"}}, Rows: [][]any{{int64(1), "x"}, {nil, "y"}}, RowsAffected: 2}
	b, err = AppendSQLResult(nil, res)
	if err != nil {
		t.Fatal(err)
	}
	var r2 SQLResult
	if err := DecodeSQLResult(b, &r2); err != nil || !reflect.DeepEqual(res, &r2) {
		t.Fatalf("%v %#v", err, r2)
	}
	// A column after a row would leave that row short: refused.
	late := append(append([]byte(nil), b...), b[:len(b)-len(AppendInt(nil, resAffected, 2))]...)
	if err := DecodeSQLResult(late, &r2); !errors.Is(err, ErrMalformed) {
		t.Fatalf("column after rows accepted: %v", err)
	}
	// Interned: the same result, with column names and types from the interner.
	var fields []byte
	var r3 SQLResult
	err = DecodeSQLResultInterned(b, &r3, func(field byte, v []byte) string { fields = append(fields, field); return string(v) })
	if err != nil || !reflect.DeepEqual(res, &r3) || string(fields) != string([]byte{InternColumnName, InternColumnType, InternColumnName, InternColumnType}) {
		t.Fatalf("interned: %v %#v fields %v", err, r3, fields)
	}
	if _, err := AppendValue(nil, 1, struct{}{}); err == nil {
		t.Fatal("unsupported type accepted")
	}
	bad := append(AppendString(nil, sqlText, "x"), AppendField(nil, sqlParam, []byte{ValInt, 1})...)
	if err := DecodeSQLRequest(bad, &got); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short int accepted: %v", err)
	}
}

// sameResult reports whether two decoded results hold the same columns, rows and
// counts. Values compare as reflect.DeepEqual does, except that a NaN equals a NaN of
// the same bits (a float value may be any bit pattern).
func sameResult(a, b *SQLResult) bool {
	if reflect.DeepEqual(a, b) {
		return true
	}
	if !reflect.DeepEqual(a.Columns, b.Columns) || !reflect.DeepEqual(a.JSONRows, b.JSONRows) ||
		a.RowsAffected != b.RowsAffected || len(a.Rows) != len(b.Rows) {
		return false
	}
	for i := range a.Rows {
		if len(a.Rows[i]) != len(b.Rows[i]) {
			return false
		}
		for j, x := range a.Rows[i] {
			y := b.Rows[i][j]
			fx, okx := x.(float64)
			fy, oky := y.(float64)
			if okx && oky && math.Float64bits(fx) == math.Float64bits(fy) {
				continue
			}
			if !reflect.DeepEqual(x, y) {
				return false
			}
		}
	}
	return true
}

// fuzzColumns is shared by the fuzz inputs, so that one input may find another's
// columns remembered.
var fuzzColumns ColumnCache

func FuzzDecodeCapabilities(f *testing.F) {
	b, _ := AppendSQLRequest(nil, &SQLRequest{SQL: "select 1", Params: []any{int64(1), "a"}})
	f.Add(b)
	b, _ = AppendSQLResult(nil, &SQLResult{Columns: []Column{{"a", "int8"}}, Rows: [][]any{{int64(1)}}})
	f.Add(b)
	b, _ = AppendSQLRequest(nil, &SQLRequest{SQL: "select 1", JSON: true})
	f.Add(b)
	b, _ = AppendSQLResult(nil, &SQLResult{Columns: []Column{{"a", "int8"}}, JSONRows: [][]byte{[]byte(`{"a":1}`)}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var r SQLRequest
		if DecodeSQLRequest(b, &r) == nil {
			if _, err := AppendSQLRequest(nil, &r); err != nil {
				t.Fatalf("decoded request does not re-encode: %v", err)
			}
		}
		var res, res2 SQLResult
		err := DecodeSQLResult(b, &res)
		if err == nil {
			for _, row := range res.Rows {
				if len(row) != len(res.Columns) {
					t.Fatal("ragged rows accepted")
				}
			}
		}
		err2 := DecodeSQLResultInterned(b, &res2, func(_ byte, v []byte) string { return string(v) })
		if (err == nil) != (err2 == nil) || (err == nil && !sameResult(&res, &res2)) {
			t.Fatalf("interned decoding differs: %v / %v", err, err2)
		}
		var res3 SQLResult
		err3 := DecodeSQLResultAliased(append([]byte(nil), b...), &res3, func(_ byte, v []byte) string { return string(v) })
		if (err == nil) != (err3 == nil) || (err == nil && !sameResult(&res, &res3)) {
			t.Fatalf("aliased decoding differs: %v / %v", err, err3)
		}
		// The guest's decoding with remembered columns agrees too, the first time
		// (columns decoded and remembered) and the second (taken from the cache).
		for i := 0; i < 2; i++ {
			var res4 SQLResult
			err4 := DecodeSQLResultCached(append([]byte(nil), b...), &res4, func(_ byte, v []byte) string { return string(v) }, &fuzzColumns)
			if (err == nil) != (err4 == nil) || (err == nil && !sameResult(&res, &res4)) {
				t.Fatalf("decoding with a column cache differs (pass %d): %v / %v\n%#v\n%#v", i, err, err4, res, res4)
			}
		}
		// The guest's deferred reading of JSON results agrees with the full decoding.
		cols, objs, ok, serr := SplitSQLResultJSON(b, nil)
		if err == nil && serr != nil {
			t.Fatalf("split refuses what decoding accepts: %v", serr)
		}
		if serr == nil && ok {
			c, cerr := DecodeSQLColumns(cols, nil)
			if (err == nil) != (cerr == nil) {
				t.Fatalf("deferred columns: %v, full decoding: %v", cerr, err)
			}
			if err == nil && (len(res.Rows) > 0 || !reflect.DeepEqual(c, res.Columns) || !reflect.DeepEqual(objs, res.JSONRows)) {
				t.Fatalf("split differs from decoding: %v %q / %v %q", c, objs, res.Columns, res.JSONRows)
			}
		}
		f, ferr := DecodeFields(b)
		if ferr == nil {
			_, _ = f.Int(1, 0)
			_, _ = f.Float(2, 0)
		}
		for tag := byte(0); tag < 4; tag++ {
			v, ok, err := Field(b, tag)
			if (err == nil) != (ferr == nil) || (err == nil && (ok != f.Has(tag) || string(v) != string(f.Bytes(tag)))) {
				t.Fatalf("Field(%d) = %q, %v, %v; DecodeFields says %q, %v", tag, v, ok, err, f.Bytes(tag), ferr)
			}
		}
		_, _ = DecodeValue(b)
	})
}

func TestField(t *testing.T) {
	msg := AppendString(AppendInt(AppendString(nil, 1, "k"), 3, 42), 3, "second")
	if v, ok, err := Field(msg, 3); err != nil || !ok || len(v) != 8 {
		t.Fatalf("Field(3) = %q, %v, %v; want the first, 8-byte value", v, ok, err)
	}
	if v, ok, err := Field(msg, 2); err != nil || ok || v != nil {
		t.Fatalf("absent tag: %q, %v, %v", v, ok, err)
	}
	if _, _, err := Field(append(msg, 9, 200), 1); !errors.Is(err, ErrMalformed) {
		t.Fatalf("truncated message after the tag: %v, want ErrMalformed", err)
	}
}

// sameRequest compares two decoded requests, treating nil and empty lists alike.
// checkView holds ViewHTTPRequest and DecodeCallContextInto to DecodeHTTPRequest on b:
// the same messages accepted, the same values read.
func checkView(t *testing.T, b []byte) {
	t.Helper()
	var view HTTPRequestView
	var want HTTPRequest
	errView, errWant := ViewHTTPRequest(b, &view), DecodeHTTPRequest(b, &want)
	if (errView == nil) != (errWant == nil) {
		t.Fatalf("ViewHTTPRequest error %v, DecodeHTTPRequest %v", errView, errWant)
	}
	if errView != nil {
		return
	}
	got := HTTPRequest{Method: string(view.Method()), Path: string(view.Path()), Route: string(view.Route()),
		Query: string(view.Query()), Body: view.Body(), Prefetch: view.Prefetch(), PrefetchResult: view.PrefetchResult(),
		Params: want.Params, Headers: want.Headers, Ctx: want.Ctx}
	if !sameRequest(&got, &want) {
		t.Fatalf("view\n%#v\ndiffers from\n%#v", got, want)
	}
	for _, tc := range []struct {
		kvs  []KV
		find func(string) ([]byte, bool)
		fold bool
	}{{want.Params, view.Param, false}, {want.Headers, view.Header, true}} {
		for _, kv := range append(tc.kvs, KV{Name: "\x00absent"}) {
			wantV, wantOK := "", false
			for _, x := range tc.kvs {
				if x.Name == kv.Name || tc.fold && lowerASCII(x.Name) == lowerASCII(kv.Name) {
					wantV, wantOK = x.Value, true
					break
				}
			}
			if v, ok := tc.find(kv.Name); ok != wantOK || string(v) != wantV {
				t.Fatalf("%q: view gives %q %v, want %q %v", kv.Name, v, ok, wantV, wantOK)
			}
		}
	}
	for _, p := range append(want.Ctx.Permissions, "\x00absent") {
		if HasPermission(view.Ctx(), p) != slices.Contains(want.Ctx.Permissions, p) {
			t.Fatalf("HasPermission(%q) disagrees with %q", p, want.Ctx.Permissions)
		}
	}
	var last []byte
	intern := func(field byte, v []byte) string {
		if field == InternPermRun {
			if last != nil && string(last) == string(v) {
				return PermRunReuse
			}
			last = append(last[:0], v...)
			return ""
		}
		return string(v)
	}
	var cc CallContext
	for round := 0; round < 2; round++ { // the second through the permission list's reuse
		if err := DecodeCallContextInto(view.Ctx(), &cc, intern); err != nil {
			t.Fatalf("round %d: the checked context fails to decode: %v", round, err)
		}
		if a, w := (HTTPRequest{Ctx: cc}), (HTTPRequest{Ctx: want.Ctx}); !sameRequest(&a, &w) {
			t.Fatalf("round %d: context\n%#v\ndiffers from\n%#v", round, cc, want.Ctx)
		}
	}
}

// lowerASCII maps A-Z in s to a-z and leaves every other byte: header names compare
// ignoring ASCII case only.
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func sameRequest(a, b *HTTPRequest) bool {
	kvs := func(x, y []KV) bool { return len(x) == len(y) && (len(x) == 0 || reflect.DeepEqual(x, y)) }
	strs := func(x, y []string) bool { return len(x) == len(y) && (len(x) == 0 || reflect.DeepEqual(x, y)) }
	ca, cb := a.Ctx, b.Ctx
	ca.Permissions, cb.Permissions = nil, nil
	return a.Method == b.Method && a.Path == b.Path && a.Route == b.Route && a.Query == b.Query &&
		string(a.Body) == string(b.Body) && string(a.Prefetch) == string(b.Prefetch) &&
		string(a.PrefetchResult) == string(b.PrefetchResult) && kvs(a.Params, b.Params) && kvs(a.Headers, b.Headers) &&
		strs(a.Ctx.Permissions, b.Ctx.Permissions) && reflect.DeepEqual(ca, cb)
}

// TestReaderNextInlines holds the property Reader.Next's shape exists for: the
// compiler inlines it into the decoders' loops.
func TestReaderNextInlines(t *testing.T) {
	if testing.Short() || runtime.GOOS == "wasip1" {
		t.Skip("runs the compiler")
	}
	out, err := exec.Command("go", "build", "-gcflags=-m", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "can inline (*Reader).Next") {
		t.Fatalf("(*Reader).Next is no longer inlined; go build -gcflags=-m says:\n%s", out)
	}
}

// TestViewHTTPRequest holds the view to the decoder on requests shaped the ways a view
// reads differently from a decode: repeated fields, headers apart from one another,
// names in other cases, and each kind of malformed field.
func TestViewHTTPRequest(t *testing.T) {
	good := AppendHTTPRequest(nil, sampleRequest())
	ctx := AppendCallContext(nil, reqCtx, &CallContext{RequestID: "r2", Permissions: []string{"z"}})
	badDeadline := AppendField(nil, reqCtx, AppendField(nil, ctxDeadline, []byte{1, 2, 3}))
	badPair := AppendField(nil, reqParam, []byte{9, 0, 0, 0, 'x'})
	for _, tc := range []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"sample", good, true},
		{"empty", nil, true},
		{"repeated singular fields and context: the last counts", AppendString(append(append([]byte(nil), good...), ctx...), reqMethod, "PUT"), true},
		{"a header after the body", AppendPair(append([]byte(nil), good...), reqHeader, "X-Late", "1"), true},
		{"a malformed pair", append(append([]byte(nil), good...), badPair...), false},
		{"a malformed deadline", append(append([]byte(nil), good...), badDeadline...), false},
		{"a truncated field", good[:len(good)-1], false},
		{"trailing bytes", append(append([]byte(nil), good...), 1, 2), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v HTTPRequestView
			if err := ViewHTTPRequest(tc.b, &v); (err == nil) != tc.ok {
				t.Fatalf("ViewHTTPRequest: %v, want ok=%v", err, tc.ok)
			}
			checkView(t, tc.b)
		})
	}
	var v HTTPRequestView
	if err := ViewHTTPRequest(AppendPair(append([]byte(nil), good...), reqHeader, "X-Late", "1"), &v); err != nil {
		t.Fatal(err)
	}
	if h, ok := v.Header("x-LATE"); !ok || string(h) != "1" {
		t.Fatalf("a header after the body, asked in another case: %q %v", h, ok)
	}
	if h, _ := v.Header("X-MULTI"); string(h) != "1" {
		t.Fatalf("a repeated header gives %q, want the first", h)
	}
	if !HasPermission(v.Ctx(), "b") || HasPermission(v.Ctx(), "c") || HasPermission(nil, "a") {
		t.Fatal("HasPermission")
	}
}
