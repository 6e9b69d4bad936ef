package keel

import (
	"strconv"
	"strings"
	"testing"

	"github.com/keelhq/keel/abi/wire"
)

// The read path every business plugin has: one row by id through DB.QueryJSON, an
// ETag from its version, the host-rendered object as the body. Shaped like
// master-data's GET /customers/:id (fourteen columns, the version twelfth).

var getPathColumns = []wire.Column{
	{Name: "id", Type: "uuid"}, {Name: "code", Type: "text"}, {Name: "name", Type: "text"}, {Name: "email", Type: "text"},
	{Name: "phone", Type: "text"}, {Name: "country", Type: "text"}, {Name: "currency", Type: "text"}, {Name: "tax_id", Type: "text"},
	{Name: "credit_limit", Type: "numeric"}, {Name: "status", Type: "text"}, {Name: "notes", Type: "text"},
	{Name: "version", Type: "int8"}, {Name: "created_at", Type: "timestamptz"}, {Name: "updated_at", Type: "timestamptz"},
}

const getPathRow = `{"id":"3f2c1a9e-8b7d-4c6e-9f01-23456789abcd","code":"C-1","name":"Ada Lovelace","email":"ada@example.com",` +
	`"phone":null,"country":"GB","currency":"GBP","tax_id":null,"credit_limit":1500.00,"status":"active","notes":null,` +
	`"version":7,"created_at":"2026-12-04T10:00:00Z","updated_at":"2026-12-04T10:05:00Z"}`

// getPathSQL is master-data's statement for one customer.
const getPathSQL = `SELECT id, code, name, email, phone, country, currency, tax_id, credit_limit, status, notes, version, created_at, updated_at FROM customers WHERE id = $1 AND deleted_at IS NULL`

func init() {
	Handle("GET", "/customers/:id", func(r *Request) *Response {
		if !r.Call().HasPermission("master-data.customer.read") {
			return Error(403, "forbidden", "no")
		}
		rows, err := DB.QueryJSON(getPathSQL, r.Param("id"))
		if err != nil {
			return Error(500, "db", err.Error())
		}
		if rows.Len() == 0 {
			return Error(404, "not_found", "no customer")
		}
		tag := `"` + strconv.FormatInt(rows.Int(0, "version"), 10) + `"`
		if inm := r.Header("If-None-Match"); inm != "" && strings.TrimPrefix(inm, "W/") == tag {
			return (&Response{Status: 304}).SetHeader("ETag", tag)
		}
		return Bytes(200, "application/json", rows.Object(0)).SetHeader("ETag", tag)
	})
}

// withSQLHost answers keel:sql/v1.query with result for the duration of a test.
func withSQLHost(tb testing.TB, result *wire.SQLResult) {
	enc, err := wire.AppendSQLResult(nil, result)
	if err != nil {
		tb.Fatal(err)
	}
	testHost = func(fn hostFn, in []byte) ([]byte, error) {
		if fn != fnSQLQuery {
			return nil, &HostError{Code: wire.CodeUnsupported, Op: importNames[fn], Message: "not in this test"}
		}
		var req wire.SQLRequest
		if err := wire.DecodeSQLRequest(in, &req); err != nil || !req.JSON {
			return nil, &HostError{Code: wire.CodeInvalid, Op: importNames[fn], Message: "unexpected request"}
		}
		return enc, nil
	}
	tb.Cleanup(func() { testHost = nil })
}

func getPathRequest() []byte {
	return wire.AppendHTTPRequest(nil, &wire.HTTPRequest{Method: "GET", Path: "/customers/3f2c1a9e-8b7d-4c6e-9f01-23456789abcd",
		Route: "/customers/:id", Params: []wire.KV{{Name: "id", Value: "3f2c1a9e-8b7d-4c6e-9f01-23456789abcd"}},
		Headers: []wire.KV{{Name: "host", Value: "127.0.0.1:8080"}, {Name: "user-agent", Value: "curl/8.0"}, {Name: "x-tenant-id", Value: "acme"}},
		Ctx: wire.CallContext{RequestID: "01JEXAMPLE", Tenant: "acme", Subject: "3b0f5c3e-0000-4000-8000-000000000001",
			Permissions: []string{"master-data.customer.read", "master-data.customer.write", "audit.read", "configuration.read"},
			Deadline:    1, Plugin: "master-data", Version: "1.1.1", Session: "s-1"}})
}

func TestGetPath(t *testing.T) {
	withSQLHost(t, &wire.SQLResult{Columns: getPathColumns, JSONRows: [][]byte{[]byte(getPathRow)}})
	in := getPathRequest()
	for i := 0; i < 3; i++ { // repeated: the positional caches must not change the answer
		var resp wire.HTTPResponse
		if err := wire.DecodeHTTPResponse(dispatchHTTP(in, nil), &resp); err != nil {
			t.Fatal(err)
		}
		var etag string
		for _, h := range resp.Headers {
			if h.Name == "ETag" {
				etag = h.Value
			}
		}
		if resp.Status != 200 || string(resp.Body) != getPathRow || etag != `"7"` {
			t.Fatalf("call %d: %d %q etag %q", i, resp.Status, resp.Body, etag)
		}
	}
}

// BenchmarkGetPath reports the guest-side cost of the read path natively; its
// allocations per call are the wasm build's too, and each costs far more there (see
// bench/RESULTS.md, "Cold caches").
func BenchmarkGetPath(b *testing.B) {
	withSQLHost(b, &wire.SQLResult{Columns: getPathColumns, JSONRows: [][]byte{[]byte(getPathRow)}})
	in := getPathRequest()
	out := make([]byte, 0, 4096)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		out = dispatchHTTP(in, out[:0])
	}
}

// TestPrefetchAnswersTheSameQuery: a request carrying the route's prefetched lookup
// answers the handler's identical DB.QueryJSON without asking the host, once; a
// different statement or argument asks the host as usual.
func TestPrefetchAnswersTheSameQuery(t *testing.T) {
	const id = "3f2c1a9e-8b7d-4c6e-9f01-23456789abcd"
	result, err := wire.AppendSQLResult(nil, &wire.SQLResult{Columns: getPathColumns, JSONRows: [][]byte{[]byte(getPathRow)}})
	if err != nil {
		t.Fatal(err)
	}
	request := func(sql, arg string) []byte {
		b, err := wire.AppendSQLRequest(nil, &wire.SQLRequest{SQL: sql, Params: []any{arg}, JSON: true})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	const handlerSQL = getPathSQL
	for _, tc := range []struct {
		name      string
		prefetch  []byte
		hostCalls int
	}{
		{"identical", request(handlerSQL, id), 0},
		{"other statement", request(handlerSQL+" ", id), 1},
		{"other argument", request(handlerSQL, "00000000-0000-4000-8000-000000000000"), 1},
		{"none", nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			withSQLHost(t, &wire.SQLResult{Columns: getPathColumns, JSONRows: [][]byte{[]byte(getPathRow)}})
			answer := testHost
			testHost = func(fn hostFn, in []byte) ([]byte, error) { calls++; return answer(fn, in) }
			req := wire.HTTPRequest{Method: "GET", Path: "/customers/" + id, Route: "/customers/:id",
				Params: []wire.KV{{Name: "id", Value: id}}, Ctx: wire.CallContext{Tenant: "acme", Permissions: []string{"master-data.customer.read"}}}
			if tc.prefetch != nil {
				req.Prefetch, req.PrefetchResult = tc.prefetch, result
			}
			var resp wire.HTTPResponse
			if err := wire.DecodeHTTPResponse(dispatchHTTP(wire.AppendHTTPRequest(nil, &req), nil), &resp); err != nil {
				t.Fatal(err)
			}
			if resp.Status != 200 || string(resp.Body) != getPathRow || calls != tc.hostCalls {
				t.Fatalf("%d %q after %d host calls, want 200 and %d", resp.Status, resp.Body, calls, tc.hostCalls)
			}
			if prefetchedReq != nil || prefetchedRes != nil {
				t.Fatal("the prefetched lookup outlived its call")
			}
		})
	}
	// Used once: a second identical query in the same call asks the host.
	prefetchedReq, prefetchedRes = request(handlerSQL, id), result
	calls := 0
	withSQLHost(t, &wire.SQLResult{Columns: getPathColumns, JSONRows: [][]byte{[]byte(getPathRow)}})
	answer := testHost
	testHost = func(fn hostFn, in []byte) ([]byte, error) { calls++; return answer(fn, in) }
	for i := 0; i < 2; i++ {
		if r, err := DB.QueryJSON(handlerSQL, id); err != nil || r.Len() != 1 || r.Int(0, "version") != 7 {
			t.Fatalf("query %d: %v", i, err)
		}
	}
	if calls != 1 {
		t.Fatalf("%d host calls for two identical queries with one prefetch, want 1", calls)
	}
	prefetchedReq, prefetchedRes = nil, nil
}

// getPathPrefetched is getPathRequest carrying the route's declared lookup, as the
// host sends master-data's GET /customers/:id: the handler's query is answered from
// the request, so the call needs no host function and runs the same natively and in
// a wasm build of these tests.
func getPathPrefetched(tb testing.TB) []byte {
	var req wire.HTTPRequest
	if err := wire.DecodeHTTPRequest(getPathRequest(), &req); err != nil {
		tb.Fatal(err)
	}
	var err error
	req.Prefetch, err = wire.AppendSQLRequest(nil, &wire.SQLRequest{SQL: getPathSQL, Params: []any{req.Params[0].Value}, JSON: true})
	if err != nil {
		tb.Fatal(err)
	}
	req.PrefetchResult, err = wire.AppendSQLResult(nil, &wire.SQLResult{Columns: getPathColumns, JSONRows: [][]byte{[]byte(getPathRow)}})
	if err != nil {
		tb.Fatal(err)
	}
	return wire.AppendHTTPRequest(nil, &req)
}

// BenchmarkGetPathPrefetched is the guest's whole share of master-data's GET with a
// declared lookup: decoding the request, the handler, encoding the response. Run it
// in wasm too (bench/RESULTS.md says how): that is where its cost matters.
func BenchmarkGetPathPrefetched(b *testing.B) {
	in := getPathPrefetched(b)
	out := make([]byte, 0, 4096)
	var resp wire.HTTPResponse
	if err := wire.DecodeHTTPResponse(dispatchHTTP(in, out), &resp); err != nil || resp.Status != 200 || string(resp.Body) != getPathRow {
		b.Fatalf("%v %d %s", err, resp.Status, resp.Body)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		out = dispatchHTTP(in, out[:0])
	}
}
