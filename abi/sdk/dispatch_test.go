package keel

import (
	"bytes"
	"strings"
	"testing"

	"github.com/keelhq/keel/abi/wire"
)

func init() {
	Handle("POST", "/raw", func(r *Request) *Response { return Bytes(200, "application/octet-stream", r.Body) })
	Handle("GET", "/items/:id", func(r *Request) *Response { return JSON(200, map[string]string{"id": r.Param("id")}) })
	Handle("GET", "/boom", func(r *Request) *Response { panic("boom") })
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
