// Command caps is a test guest that exercises every capability through the SDK and
// reports what the host answered, including refusals.
package main

import (
	"encoding/json"
	"errors"
	"strconv"

	keel "github.com/keelhq/keel/abi/sdk"
)

// report turns an SDK error into a JSON body the tests can assert on.
func report(err error) *keel.Response {
	var he *keel.HostError
	if errors.As(err, &he) {
		return keel.JSON(500, map[string]any{"code": he.Code.String(), "numeric": int(he.Code), "message": he.Message, "op": he.Op})
	}
	return keel.JSON(500, map[string]any{"code": "other", "message": err.Error()})
}

func init() {
	keel.Handle("GET", "/cache/:key", func(r *keel.Request) *keel.Response {
		v, ok, err := keel.Cache.Get(r.Param("key"))
		if err != nil {
			return report(err)
		}
		return keel.JSON(200, map[string]any{"found": ok, "value": string(v)})
	})
	keel.Handle("PUT", "/cache/:key", func(r *keel.Request) *keel.Response {
		if err := keel.Cache.Set(r.Param("key"), r.Body, keel.Class("short")); err != nil {
			if errors.Is(err, keel.ErrUnavailable) {
				return keel.JSON(202, map[string]string{"cache": "unavailable, value not cached"})
			}
			return report(err)
		}
		return keel.JSON(200, map[string]string{"stored": r.Param("key")})
	})
	// /cache-two/:a/:b answers "<" + a's value + ">" + b's value: a is appended to a
	// buffer that already holds "<" (AppendGet), b read with Get after it.
	keel.Handle("GET", "/cache-two/:a/:b", func(r *keel.Request) *keel.Response {
		buf, ok, err := keel.Cache.AppendGet([]byte("<"), r.Param("a"))
		if err != nil || !ok {
			return keel.Error(404, "miss", "a not cached")
		}
		v, ok, err := keel.Cache.Get(r.Param("b"))
		if err != nil || !ok {
			return keel.Error(404, "miss", "b not cached")
		}
		return keel.Bytes(200, "application/octet-stream", append(append(buf, '>'), v...))
	})
	keel.Handle("POST", "/incr/:key", func(r *keel.Request) *keel.Response {
		n, err := keel.Cache.Incr(r.Param("key"), 1, keel.TTL(60e9))
		if err != nil {
			return report(err)
		}
		return keel.JSON(200, map[string]int64{"value": n})
	})
	keel.Handle("GET", "/cached/:key", func(r *keel.Request) *keel.Response {
		loads := 0
		v, err := keel.Cached(r.Param("key"), func() (map[string]string, error) {
			loads++
			return map[string]string{"computed": r.Param("key")}, nil
		})
		if err != nil {
			return report(err)
		}
		return keel.JSON(200, map[string]any{"value": v, "loads": loads})
	})
	keel.Handle("GET", "/config/:key", func(r *keel.Request) *keel.Response {
		v, err := keel.Setting(r.Param("key"))
		if err != nil {
			return report(err)
		}
		return keel.JSON(200, map[string]string{"value": v})
	})
	keel.Handle("POST", "/metric/:name", func(r *keel.Request) *keel.Response {
		if err := keel.M(r.Param("name")).Inc(r.Query().Get("label")); err != nil {
			return report(err)
		}
		return keel.Text(200, "counted")
	})
	keel.Handle("POST", "/fetch", func(r *keel.Request) *keel.Response {
		resp, err := keel.Fetch(keel.FetchRequest{Method: "GET", URL: string(r.Body)})
		if err != nil {
			return report(err)
		}
		return keel.JSON(200, map[string]any{"status": resp.Status, "body": string(resp.Body)})
	})
	keel.Handle("GET", "/call/:plugin", func(r *keel.Request) *keel.Response {
		resp, err := keel.CallPlugin(r.Param("plugin"), "GET", "/hello/"+strconv.Quote("from-caps")[1:10], nil)
		if err != nil {
			return report(err)
		}
		var v any
		_ = json.Unmarshal(resp.Body, &v)
		return keel.JSON(200, map[string]any{"status": resp.Status, "body": v})
	})
}

func main() {}
