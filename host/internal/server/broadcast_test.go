package server

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/abi/wire"
	"github.com/keelhq/keel/bridges/nats"
	"github.com/keelhq/keel/bridges/postgres/pgtest"
	"github.com/keelhq/keel/host/internal/testkit"
)

// TestBroadcastInvalidatesEveryHost runs two hosts with in-process caches on one
// database and one NATS server: a flag changed through host A must stop being served
// from host B's cache, which only works if the change event reaches every host
// (a broadcast subscription), not one host of a shared group.
func TestBroadcastInvalidatesEveryHost(t *testing.T) {
	name := "configuration-" + pgtest.RandomSuffix(6)
	url := database(t, "keel_plg_"+strings.ReplaceAll(name, "-", "_"))
	ns, err := nats.StartEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	dir := t.TempDir()
	testkit.AddPlugin(t, dir, "plugins/configuration", func(m *manifest.Manifest) { m.Name = name })
	a, _ := startIn(t, dir, "--database-url", url, "--nats-url", ns.ClientURL(), "--host-id", "host-a")
	b, _ := startIn(t, dir, "--database-url", url, "--nats-url", ns.ClientURL(), "--host-id", "host-b")
	cc := wire.CallContext{Tenant: "acme", Subject: "u1", Permissions: []string{"configuration.read", "configuration.write"}}
	call := func(s *Server, method, path, route string, params []wire.KV, body string) (int, map[string]any) {
		t.Helper()
		r, err := s.Plugins().Lookup(name).Plugin.HTTP(context.Background(), &wire.HTTPRequest{Method: method, Path: path, Route: route,
			Params: params, Body: []byte(body), Ctx: cc}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		json.Unmarshal(r.Body, &v)
		return r.Status, v
	}
	key := []wire.KV{{Name: "key", Value: "beta"}}
	put := func(s *Server, enabled bool) {
		body := `{"enabled":false}`
		if enabled {
			body = `{"enabled":true}`
		}
		if st, v := call(s, "PUT", "/flags/beta", "/flags/:key", key, body); st != 200 && st != 201 {
			t.Fatalf("put flag: %d %v", st, v)
		}
	}
	eval := func(s *Server) bool {
		st, v := call(s, "POST", "/flags/beta/evaluate", "/flags/:key/evaluate", key, "")
		if st != 200 {
			t.Fatalf("evaluate: %d %v", st, v)
		}
		return v["enabled"] == true
	}
	// Each change must reach host B's cache. With one shared group each event would go
	// to a single host, so over six changes host B would almost surely miss one.
	for i, want := range []bool{true, false, true, false, true, false} {
		put(a, want)
		testkit.WaitFor(t, 10*time.Second, "host B to follow change "+string(rune('1'+i)), func() bool { return eval(b) == want })
		if eval(a) != want {
			t.Fatalf("change %d: host A serves the old value", i+1)
		}
	}
}
