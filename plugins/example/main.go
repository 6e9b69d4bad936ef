// Command example is the plugin to copy when starting a new Keel service. It shows
// routes with path parameters, JSON in and out, query strings, the call context,
// structured logging and a health check.
//
// It renders its JSON with keel.JSONFields and checks bodies with keel.ValidJSON
// rather than encoding/json: without reflection the module is 2.6 MB instead of 3.8,
// and the host loads it in about 45 ms instead of 63 (RATIONALE.md, "Small guests").
// A plugin with richer payloads can use encoding/json (keel.JSON, Request.DecodeJSON)
// and pay for it.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugin.wasm .
package main

import (
	"strconv"
	"time"

	keel "github.com/keelhq/keel/abi/sdk"
)

func init() {
	keel.Handle("GET", "/hello/:name", hello)
	keel.Handle("POST", "/echo", echo)
	keel.Handle("GET", "/slow", slow)
	keel.OnHealth(func() error { return nil })
}

// hello greets the name in the path: GET /api/example/hello/ada.
func hello(r *keel.Request) *keel.Response {
	name := r.Param("name")
	keel.Log.Info("greeting", "name", name)
	return keel.JSONFields(200, "hello", name, "version", r.Call().Version(), "request_id", r.Call().RequestID())
}

// echo returns the JSON body it was sent, after checking that it is JSON.
func echo(r *keel.Request) *keel.Response {
	if !keel.ValidJSON(r.Body) {
		return keel.Error(400, "invalid_json", "the body must be a JSON document")
	}
	return keel.Bytes(200, "application/json", r.Body)
}

// slow sleeps for ?ms= milliseconds (at most 10 s) and answers; it exists to show
// graceful shutdown and deadlines.
func slow(r *keel.Request) *keel.Response {
	ms, err := strconv.Atoi(r.Query().Get("ms"))
	if err != nil || ms < 0 || ms > 10000 {
		return keel.Error(400, "invalid_ms", "ms must be an integer between 0 and 10000")
	}
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return keel.JSONFields(200, "slept_ms", ms)
}

func main() {}
