// Command data is the benchmark guest for the capabilities: one row by primary key
// (SQL), one cache read, and publishing and consuming events.
package main

import (
	"strconv"

	keel "github.com/keelhq/keel/abi/sdk"
)

// customer reads one row by primary key. It serves /customers/:id (a transaction per
// invocation) and /ro/customers/:id (declared read_only: one round trip, no BEGIN or
// COMMIT).
func customer(r *keel.Request) *keel.Response {
	rows, err := keel.DB.QueryJSON(`SELECT id, name, email FROM customers WHERE id = $1`, r.Param("id"))
	if err != nil {
		return keel.Error(500, "db", err.Error())
	}
	if rows.Len() == 0 {
		return keel.Error(404, "not_found", "no such customer")
	}
	return keel.Bytes(200, "application/json", rows.Object(0))
}

func init() {
	keel.Handle("GET", "/customers/:id", customer)
	keel.Handle("GET", "/ro/customers/:id", customer)
	// /batch runs n primary-key reads in one invocation, to measure the cost of one
	// statement inside the unit of work.
	keel.Handle("GET", "/batch", func(r *keel.Request) *keel.Response {
		n, _ := strconv.Atoi(r.Query().Get("n"))
		for i := 0; i < n; i++ {
			rows, err := keel.DB.Query(`SELECT id, name, email FROM customers WHERE id = $1`, "c"+strconv.Itoa(i%1000+1))
			if err != nil || rows.Len() != 1 {
				return keel.Error(500, "db", "batch read failed")
			}
		}
		return keel.Text(200, "ok")
	})
	keel.Handle("GET", "/cache/:key", func(r *keel.Request) *keel.Response {
		v, ok, err := keel.Cache.Get(r.Param("key"))
		if err != nil || !ok {
			return keel.Error(404, "miss", "not cached")
		}
		return keel.Bytes(200, "application/octet-stream", v)
	})
	// /cache-batch/:key?n= reads the key n times in one invocation, to measure one
	// cache read through the capability without the invocation around it: into one
	// reused buffer (Cache.AppendGet), or with &alloc=1 into a new slice each time
	// (Cache.Get).
	keel.Handle("GET", "/cache-batch/:key", func(r *keel.Request) *keel.Response {
		q := r.Query()
		n, _ := strconv.Atoi(q.Get("n"))
		key, alloc := r.Param("key"), q.Has("alloc")
		var v []byte
		for i := 0; i < n; i++ {
			var ok bool
			var err error
			if alloc {
				v, ok, err = keel.Cache.Get(key)
			} else {
				v, ok, err = keel.Cache.AppendGet(v[:0], key)
			}
			if err != nil || !ok || len(v) == 0 {
				return keel.Error(404, "miss", "not cached")
			}
		}
		return keel.Text(200, "ok")
	})
	keel.Handle("PUT", "/cache/:key", func(r *keel.Request) *keel.Response {
		if err := keel.Cache.Set(r.Param("key"), r.Body, keel.Class("default")); err != nil {
			return keel.Error(500, "cache", err.Error())
		}
		return keel.Text(200, "ok")
	})
	keel.Handle("POST", "/publish", func(r *keel.Request) *keel.Response {
		n, _ := strconv.Atoi(r.Query().Get("n"))
		for i := 0; i < n; i++ {
			if _, err := keel.Events.Publish("bench.events", "bench.tick", map[string]int{"i": i}); err != nil {
				return keel.Error(500, "publish", err.Error())
			}
		}
		return keel.Text(200, "published")
	})
	keel.OnEvent("bench.events", func(*keel.Event) error { return nil })
}

func main() {}
