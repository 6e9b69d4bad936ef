package keel

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/keelhq/keel/abi/wire"
)

func init() {
	Handle("POST", "/raw", func(r *Request) *Response { return Bytes(200, "application/octet-stream", r.Body) })
	Handle("GET", "/items/:id", func(r *Request) *Response { return JSON(200, map[string]string{"id": r.Param("id")}) })
	Handle("GET", "/boom", func(r *Request) *Response { panic("boom") })
	Handle("GET", "/can", func(r *Request) *Response { // reads the context only through HasPermission
		if r.Call().HasPermission("a.read") {
			return Text(200, "yes")
		}
		return Text(200, "no")
	})
	Handle("GET", "/who", func(r *Request) *Response {
		return Text(200, strings.Join(r.Call().Permissions(), ",")+"|"+r.Header("X-A")+","+r.Header("x-b")+"|"+r.Param("p"))
	})
}

// TestDispatchReusesNothingStale sends requests whose permissions, headers and
// parameters differ in content and length from the previous one's: the positional
// caches must never hand back the previous call's strings.
func TestDispatchReusesNothingStale(t *testing.T) {
	for _, tc := range []struct {
		perms   []string
		headers []wire.KV
		param   string
		want    string
	}{
		{[]string{"a.read", "a.write", "b.read"}, []wire.KV{{Name: "x-a", Value: "1"}, {Name: "x-b", Value: "2"}}, "p1", "a.read,a.write,b.read|1,2|p1"},
		{[]string{"a.read", "a.write", "b.read"}, []wire.KV{{Name: "x-a", Value: "1"}, {Name: "x-b", Value: "2"}}, "p1", "a.read,a.write,b.read|1,2|p1"},
		{[]string{"a.read", "c.read"}, []wire.KV{{Name: "x-b", Value: "1"}}, "p2", "a.read,c.read|,1|p2"},
		{nil, nil, "", "|,|"},
		{[]string{"a.read", "a.write", "b.read", "d"}, []wire.KV{{Name: "x-a", Value: "9"}, {Name: "x-b", Value: "2"}}, "p1", "a.read,a.write,b.read,d|9,2|p1"},
	} {
		req := wire.HTTPRequest{Method: "GET", Path: "/who", Route: "/who", Headers: tc.headers, Ctx: wire.CallContext{Permissions: tc.perms}}
		if tc.param != "" {
			req.Params = []wire.KV{{Name: "p", Value: tc.param}}
		}
		var resp wire.HTTPResponse
		if err := wire.DecodeHTTPResponse(dispatchHTTP(wire.AppendHTTPRequest(nil, &req), nil), &resp); err != nil {
			t.Fatal(err)
		}
		if string(resp.Body) != tc.want {
			t.Errorf("perms %v headers %v: got %q, want %q", tc.perms, tc.headers, resp.Body, tc.want)
		}
	}
}

func TestDispatchHTTP(t *testing.T) {
	for _, tc := range []struct {
		req      wire.HTTPRequest
		status   int
		body     string
		panicked bool
	}{
		{wire.HTTPRequest{Method: "GET", Path: "/items/7", Route: "/items/:id", Params: []wire.KV{{Name: "id", Value: "7"}}}, 200, `{"id":"7"}`, false},
		{wire.HTTPRequest{Method: "POST", Path: "/raw", Route: "/raw", Body: []byte("xyz")}, 200, "xyz", false},
		{wire.HTTPRequest{Method: "GET", Path: "/boom", Route: "/boom", Ctx: wire.CallContext{RequestID: "r9"}}, 500, `"request_id":"r9"`, true},
		{wire.HTTPRequest{Method: "GET", Path: "/x", Route: "/x"}, 501, "no_handler", false},
	} {
		out := dispatchHTTP(wire.AppendHTTPRequest(nil, &tc.req), nil)
		var resp wire.HTTPResponse
		if err := wire.DecodeHTTPResponse(out, &resp); err != nil {
			t.Fatal(err)
		}
		if resp.Status != tc.status || !strings.Contains(string(resp.Body), tc.body) || (resp.Flags&wire.FlagPanicked != 0) != tc.panicked {
			t.Errorf("%s %s: %d %s flags %d", tc.req.Method, tc.req.Path, resp.Status, resp.Body, resp.Flags)
		}
	}
	if out := dispatchHTTP([]byte{1, 2}, nil); !bytes.Contains(out, []byte("malformed_request")) {
		t.Errorf("malformed input: %q", out)
	}
}

func BenchmarkDispatchRaw(b *testing.B) {
	in := wire.AppendHTTPRequest(nil, &wire.HTTPRequest{Method: "POST", Path: "/raw", Route: "/raw", Body: bytes.Repeat([]byte("k"), 1024),
		Ctx: wire.CallContext{RequestID: "abc", Plugin: "echo", Version: "1.0.0", Deadline: 1}})
	out := make([]byte, 0, 4096)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		out = dispatchHTTP(in, out[:0])
	}
}

// TestDispatchPermissionsAfterMalformedContext: a call context that fails to decode
// after its permissions must not leave them to be reused by the next call.
func TestDispatchPermissionsAfterMalformedContext(t *testing.T) {
	call := func(perms []string) string {
		req := wire.HTTPRequest{Method: "GET", Path: "/who", Route: "/who", Ctx: wire.CallContext{Permissions: perms}}
		var resp wire.HTTPResponse
		if err := wire.DecodeHTTPResponse(dispatchHTTP(wire.AppendHTTPRequest(nil, &req), nil), &resp); err != nil {
			t.Fatal(err)
		}
		return string(resp.Body)
	}
	if got := call([]string{"x.one", "x.two"}); got != "x.one,x.two|,|" {
		t.Fatalf("first call: %q", got)
	}
	// Same permissions, then a deadline of 3 bytes (tag 5 is an int of 8): the
	// context, and the request, fail to decode after the permissions were read.
	ctx := wire.AppendString(wire.AppendString(nil, 4, "y.one"), 4, "y.two")
	ctx = wire.AppendField(ctx, 5, []byte{1, 2, 3})
	bad := wire.AppendString(wire.AppendString(wire.AppendString(nil, 1, "GET"), 2, "/who"), 3, "/who")
	bad = wire.AppendField(wire.AppendField(bad, 7, nil), 8, ctx)
	if out := dispatchHTTP(bad, nil); !bytes.Contains(out, []byte("malformed_request")) {
		t.Fatalf("malformed context accepted: %q", out)
	}
	if got := call([]string{"y.one", "y.two"}); got != "y.one,y.two|,|" {
		t.Fatalf("after a malformed context: %q", got)
	}
	if got := call([]string{"y.one", "y.two"}); got != "y.one,y.two|,|" {
		t.Fatalf("repeated: %q", got)
	}
}

// TestDispatchReusesAnUnchangedPermissionList checks that the whole-list reuse
// happens: the second of two calls with the same token keeps the first's strings.
func TestDispatchReusesAnUnchangedPermissionList(t *testing.T) {
	perms := []string{"r.one", "r.two", "r.three"}
	call := func() {
		req := wire.HTTPRequest{Method: "GET", Path: "/who", Route: "/who", Ctx: wire.CallContext{Permissions: perms}}
		dispatchHTTP(wire.AppendHTTPRequest(nil, &req), nil)
	}
	call()
	first := unsafe.SliceData(theRequest.ctx.Permissions)
	firstStr := unsafe.StringData(theRequest.ctx.Permissions[1])
	call()
	got := theRequest.ctx.Permissions
	if unsafe.SliceData(got) != first || unsafe.StringData(got[1]) != firstStr || strings.Join(got, ",") != "r.one,r.two,r.three" {
		t.Fatalf("the unchanged list was decoded again (or wrongly): %v", got)
	}
}

// TestDispatchReadsTheContextOnDemand: a handler that only checks a permission leaves
// the call context undecoded, and calls that do decode it, before and after, still
// see their own permissions, tenant and request id (the reused permission list must
// follow the last decoded context, not the last request).
func TestDispatchReadsTheContextOnDemand(t *testing.T) {
	call := func(path string, perms []string, tenant string) string {
		req := wire.HTTPRequest{Method: "GET", Path: path, Route: path,
			Ctx: wire.CallContext{RequestID: "req-" + tenant, Tenant: tenant, Permissions: perms}}
		var resp wire.HTTPResponse
		if err := wire.DecodeHTTPResponse(dispatchHTTP(wire.AppendHTTPRequest(nil, &req), nil), &resp); err != nil {
			t.Fatal(err)
		}
		return string(resp.Body)
	}
	a, b := []string{"a.read", "a.write"}, []string{"b.read"}
	for i, tc := range []struct {
		path   string
		perms  []string
		want   string
		decode bool
	}{
		{"/who", a, "a.read,a.write|,|", true},
		{"/can", b, "no", false},
		{"/can", a, "yes", false},
		{"/who", a, "a.read,a.write|,|", true}, // the list decoded two calls ago, reused
		{"/can", b, "no", false},
		{"/who", b, "b.read|,|", true},
		{"/can", a, "yes", false},
		{"/who", nil, "|,|", true},
		{"/boom", b, `"request_id":"req-t8"`, true}, // the error body reads the context
	} {
		got := call(tc.path, tc.perms, "t"+strconv.Itoa(i))
		if !strings.Contains(got, tc.want) {
			t.Fatalf("call %d %s %v: %q, want %q", i, tc.path, tc.perms, got, tc.want)
		}
		if theRequest.ctxDecoded != tc.decode {
			t.Fatalf("call %d %s: context decoded %v, want %v", i, tc.path, theRequest.ctxDecoded, tc.decode)
		}
		if tc.decode && theRequest.ctx.Tenant != "t"+strconv.Itoa(i) {
			t.Fatalf("call %d: tenant %q", i, theRequest.ctx.Tenant)
		}
	}
}
