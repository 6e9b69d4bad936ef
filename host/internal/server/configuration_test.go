package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/bridges/postgres/pgtest"
	"github.com/keelhq/keel/host/internal/authn"
	"github.com/keelhq/keel/host/internal/testkit"
)

// addConfigurationPlugin builds plugins/configuration under name into pluginsDir,
// with migrations/configuration as its migrations (the layout KEEL_PLUGINS_DIR
// expects: <name>/manifest.json, plugin.wasm, migrations/).
func addConfigurationPlugin(t *testing.T, pluginsDir, name string) {
	t.Helper()
	testkit.AddPlugin(t, pluginsDir, "plugins/configuration", func(m *manifest.Manifest) { m.Name = name })
}

// cfgClient calls one host with access tokens minted for the test.
type cfgClient struct {
	t    *testing.T
	base string
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

// token mints an access token for a session the test inserted into plg_auth.sessions.
func (c *cfgClient) token(sub, tenant, sid string, perms ...string) string {
	now := time.Now()
	return jwt(c.priv, map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": authn.KeyID(c.pub)}, map[string]any{
		"iss": authn.Issuer, "aud": authn.Audience, "sub": sub, "tid": tenant, "sid": sid, "jti": sid + "-" + sub,
		"perms": perms, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(30 * time.Minute).Unix()})
}

// do sends one request; hdr are name, value pairs.
func (c *cfgClient) do(method, path, token, body string, hdr ...string) (int, string, http.Header) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// must sends a request and fails the test unless it answers want; it returns the body.
func (c *cfgClient) must(want int, method, path, token, body string, hdr ...string) string {
	c.t.Helper()
	s, b, _ := c.do(method, path, token, body, hdr...)
	if s != want {
		c.t.Fatalf("%s %s: %d %s, want %d", method, path, s, b, want)
	}
	return b
}

// cfgBucket is the documented rollout bucketing, reimplemented here so the test pins
// the algorithm other languages rely on: SHA-256("<flag>:<user>"), first 8 bytes
// big-endian, modulo 100.
func cfgBucket(flag, user string) int {
	sum := sha256.Sum256([]byte(flag + ":" + user))
	return int(binary.BigEndian.Uint64(sum[:8]) % 100)
}

func TestConfigurationPlugin(t *testing.T) {
	suffix := pgtest.RandomSuffix(6)
	name := "configuration-" + suffix // unique: plugin roles are shared by every database of the cluster
	schema := "plg_" + strings.ReplaceAll(name, "-", "_")
	dbURL := database(t, "keel_plg_configuration_"+suffix)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// The auth plugin's sessions table, as the gateway's revocation check reads it.
	if _, err := conn.Exec(ctx, `CREATE SCHEMA plg_auth; CREATE TABLE plg_auth.sessions (id text PRIMARY KEY, tenant_id text, user_id text,
		created_at timestamptz DEFAULT now(), expires_at timestamptz NOT NULL, revoked_at timestamptz);
		INSERT INTO plg_auth.sessions (id, tenant_id, user_id, expires_at) VALUES
		('s-alice', 'acme', 'alice', now() + interval '1 hour'), ('s-carol', 'acme', 'carol', now() + interval '1 hour'),
		('s-dave', 'acme', 'dave', now() + interval '1 hour'), ('s-bob', 'globex', 'bob', now() + interval '1 hour')`); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	addConfigurationPlugin(t, dir, name)
	// The reader calls "configuration" by default; here it calls the unique name.
	testkit.AddPlugin(t, dir, "host/testdata/guests/flagreader", func(m *manifest.Manifest) {
		m.Capabilities.Call = []string{name}
		m.Capabilities.Config = []manifest.ConfigCap{{Key: "target", Default: name}}
	})
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, base := startIn(t, dir, "--database-url", dbURL, "--jwt-public-key", base64.StdEncoding.EncodeToString(pub))
	if s.Plugins().Lookup(name) == nil || s.Plugins().Lookup("flagreader") == nil {
		t.Fatalf("plugins did not activate")
	}
	c := &cfgClient{t: t, base: base, priv: priv, pub: pub}
	api := "/api/" + name
	alice := c.token("alice", "acme", "s-alice", "configuration.read", "configuration.write") // admin of tenant A
	carol := c.token("carol", "acme", "s-carol", "configuration.read", "beta.access")         // reader of A
	dave := c.token("dave", "acme", "s-dave")                                                 // no permissions
	bob := c.token("bob", "globex", "s-bob", "configuration.read", "configuration.write")     // admin of tenant B

	t.Run("entries", func(t *testing.T) {
		c.t = t
		p := api + "/entries/prod/db.pool_size"
		b := c.must(201, "PUT", p, alice, `{"value":10}`)
		if v := jsonBody(t, b); v["version"] != float64(1) || v["value"] != float64(10) || v["updated_by"] != "alice" {
			t.Fatalf("create: %s", b)
		}
		s, b, h := c.do("GET", p, carol, "")
		if s != 200 || jsonBody(t, b)["value"] != float64(10) || h.Get("ETag") != `"1"` {
			t.Fatalf("get: %d %s %v", s, b, h)
		}
		c.must(200, "PUT", p, alice, `{"value":{"max":20,"min":2},"version":1}`)
		// A writer still holding version 1 loses, in the body or with If-Match.
		if b := c.must(409, "PUT", p, alice, `{"value":30,"version":1}`); !strings.Contains(b, `"code":"version_conflict"`) || !strings.Contains(b, "current version is 2") {
			t.Fatalf("stale version: %s", b)
		}
		c.must(409, "PUT", p, alice, `{"value":30}`, "If-Match", `"1"`)
		c.must(409, "PUT", p, alice, `{"value":30,"version":0}`) // create-only on an existing key
		c.must(403, "PUT", p, carol, `{"value":30}`)             // configuration.write missing
		c.must(400, "PUT", p, alice, `{"value":null}`)
		c.must(400, "PUT", p, alice, `{"valu":1}`)
		c.must(400, "PUT", api+"/entries/Prod/x", alice, `{"value":1}`)
		c.must(201, "PUT", api+"/entries/prod/feature.limit", alice, `{"value":"x"}`)
		c.must(201, "PUT", api+"/entries/dev/db.pool_size", alice, `{"value":1}`)

		var list struct {
			Entries []struct {
				Key   string
				Value any
			}
			Next string
		}
		if err := json.Unmarshal([]byte(c.must(200, "GET", api+"/entries/prod", carol, "")), &list); err != nil ||
			len(list.Entries) != 2 || list.Entries[0].Key != "db.pool_size" || list.Entries[1].Key != "feature.limit" {
			t.Fatalf("list prod: %+v %v", list, err)
		}
		if err := json.Unmarshal([]byte(c.must(200, "GET", api+"/entries/prod?limit=1", carol, "")), &list); err != nil ||
			len(list.Entries) != 1 || list.Next != "db.pool_size" {
			t.Fatalf("first page: %+v", list)
		}
		if err := json.Unmarshal([]byte(c.must(200, "GET", api+"/entries/prod?limit=1&after=db.pool_size", carol, "")), &list); err != nil ||
			len(list.Entries) != 1 || list.Entries[0].Key != "feature.limit" {
			t.Fatalf("second page: %+v", list)
		}

		c.must(409, "DELETE", p+"?version=1", alice, "")
		c.must(204, "DELETE", p+"?version=2", alice, "")
		c.must(404, "GET", p, carol, "")
		// Writing it again revives it with the next version, so old versions stay stale.
		if b := c.must(201, "PUT", p, alice, `{"value":11,"version":0}`); jsonBody(t, b)["version"] != float64(4) {
			t.Fatalf("re-create: %s", b)
		}

		var hist struct {
			History []struct {
				Version   int
				Action    string
				Old, New  any
				Actor     string
				RequestID string `json:"request_id"`
				At        time.Time
			}
		}
		if err := json.Unmarshal([]byte(c.must(200, "GET", p+"/history", carol, "")), &hist); err != nil {
			t.Fatal(err)
		}
		got := []string{}
		for _, h := range hist.History {
			got = append(got, fmt.Sprintf("%d %s %v->%v %s", h.Version, h.Action, h.Old, h.New, h.Actor))
			if h.At.IsZero() || h.RequestID == "" {
				t.Errorf("history row without time or request id: %+v", h)
			}
		}
		want := []string{"4 created <nil>->11 alice", "3 deleted map[max:20 min:2]-><nil> alice",
			"2 updated 10->map[max:20 min:2] alice", "1 created <nil>->10 alice"}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("history:\n got %q\nwant %q", got, want)
		}
		c.must(404, "GET", api+"/entries/prod/never/history", carol, "")
	})

	t.Run("tenant isolation", func(t *testing.T) {
		c.t = t
		c.must(404, "GET", api+"/entries/prod/db.pool_size", bob, "")
		c.must(404, "GET", api+"/entries/prod/db.pool_size/history", bob, "")
		if b := c.must(200, "GET", api+"/entries/prod", bob, ""); b != `{"entries":[]}` {
			t.Fatalf("B lists A's entries: %s", b)
		}
		c.must(404, "DELETE", api+"/entries/prod/db.pool_size", bob, "")
		// B's own key of the same name is B's alone.
		if b := c.must(201, "PUT", api+"/entries/prod/db.pool_size", bob, `{"value":99,"version":0}`); jsonBody(t, b)["version"] != float64(1) {
			t.Fatalf("B's entry: %s", b)
		}
		if v := jsonBody(t, c.must(200, "GET", api+"/entries/prod/db.pool_size", alice, "")); v["value"] != float64(11) {
			t.Fatalf("A's entry changed: %v", v)
		}
		c.must(201, "PUT", api+"/flags/a-only", alice, `{"enabled":true}`)
		c.must(404, "GET", api+"/flags/a-only", bob, "")
		c.must(404, "POST", api+"/flags/a-only/evaluate", bob, "")
		if b := c.must(200, "GET", api+"/flags", bob, ""); b != `{"flags":[]}` {
			t.Fatalf("B lists A's flags: %s", b)
		}
	})

	t.Run("percentage rollout", func(t *testing.T) {
		c.t = t
		b := c.must(201, "PUT", api+"/flags/new-checkout", alice, `{"enabled":true,"description":"new checkout flow","rules":{"percentage":50}}`)
		if !strings.Contains(b, `"percentage":50`) {
			t.Fatalf("create flag: %s", b)
		}
		const n = 1000
		first := make([]bool, n)
		on := 0
		for i := 0; i < n; i++ {
			user := fmt.Sprintf("user-%d", i)
			var ev struct {
				Enabled bool
				Reason  string
				Bucket  int
			}
			if err := json.Unmarshal([]byte(c.must(200, "POST", api+"/flags/new-checkout/evaluate", alice, `{"user":"`+user+`"}`)), &ev); err != nil {
				t.Fatal(err)
			}
			want := cfgBucket("new-checkout", user)
			if ev.Bucket != want || ev.Enabled != (want < 50) || (ev.Enabled && ev.Reason != "in_rollout") || (!ev.Enabled && ev.Reason != "outside_rollout") {
				t.Fatalf("%s: %+v, want bucket %d", user, ev, want)
			}
			first[i] = ev.Enabled
			if ev.Enabled {
				on++
			}
		}
		if on < 400 || on > 600 {
			t.Fatalf("50%% rollout enabled %d of %d users", on, n)
		}
		t.Logf("50%% rollout: %d of %d users enabled", on, n)
		for i := 0; i < n; i += 7 { // the same user always gets the same answer
			b := c.must(200, "POST", api+"/flags/new-checkout/evaluate", carol, fmt.Sprintf(`{"user":"user-%d"}`, i))
			if jsonBody(t, b)["enabled"] != first[i] {
				t.Fatalf("user-%d changed its answer: %s", i, b)
			}
		}
	})

	t.Run("targeting", func(t *testing.T) {
		c.t = t
		c.must(201, "PUT", api+"/flags/beta-ui", alice,
			`{"enabled":true,"rules":{"users":["u-42"],"roles":["beta-tester"],"permissions":["beta.access"]}}`)
		for _, tc := range []struct {
			token, body, reason string
			on                  bool
		}{
			{alice, `{"user":"u-42"}`, "user_targeted", true},
			{alice, `{"user":"u-7","roles":["staff","beta-tester"]}`, "role_targeted", true},
			{alice, `{"user":"u-7","roles":["staff"]}`, "not_targeted", false},
			{carol, ``, "permission_targeted", true}, // the caller: carol's token holds beta.access
			{alice, ``, "not_targeted", false},       // alice's does not
		} {
			v := jsonBody(t, c.must(200, "POST", api+"/flags/beta-ui/evaluate", tc.token, tc.body))
			if v["enabled"] != tc.on || v["reason"] != tc.reason || v["key"] != "beta-ui" {
				t.Errorf("evaluate %q: %v, want %v %s", tc.body, v, tc.on, tc.reason)
			}
		}
		c.must(403, "POST", api+"/flags/beta-ui/evaluate", dave, "")
		c.must(404, "POST", api+"/flags/nope/evaluate", alice, "")
		c.must(400, "PUT", api+"/flags/bad", alice, `{"enabled":true,"rules":{"percentage":101}}`)
		c.must(400, "PUT", api+"/flags/bad", alice, `{"rules":{}}`)
	})

	t.Run("cache and invalidation", func(t *testing.T) {
		c.t = t
		eval := func() map[string]any {
			return jsonBody(t, c.must(200, "POST", api+"/flags/beta-ui/evaluate", alice, `{"user":"u-7"}`))
		}
		invalidations := func() float64 {
			_, m, _ := c.do("GET", "/plugins/"+name+"/metrics", "", "")
			return cfgMetricValue(m, `keel_plugin_cache_invalidations_total{plugin="`+name+`"}`)
		}
		// Let every earlier change event be handled first, so a late one cannot drop
		// the copy this test caches.
		testkit.WaitFor(t, 15*time.Second, "earlier change events to be handled", func() bool {
			var n int
			err := conn.QueryRow(ctx, `SELECT count(*) FROM keel_host.outbox WHERE topic = 'configuration.changes'`).Scan(&n)
			return err == nil && n > 0 && invalidations() == float64(n)
		})
		if v := eval(); v["enabled"] != false {
			t.Fatalf("before: %v", v)
		}
		// Changing the row behind the plugin's back is not seen: reads come from the cache.
		if _, err := conn.Exec(ctx, `UPDATE `+schema+`.flags SET rules = '{"percentage":100}' WHERE key = 'beta-ui' AND tenant_id = 'acme'`); err != nil {
			t.Fatal(err)
		}
		if v := eval(); v["enabled"] != false || v["version"] != float64(1) {
			t.Fatalf("a database change bypassing the plugin should not be visible while cached: %v", v)
		}
		before := invalidations()
		c.must(200, "PUT", api+"/flags/beta-ui", alice, `{"enabled":true,"rules":{"users":["u-7"]},"version":1}`, "X-Request-ID", "req-flag-update")
		testkit.WaitFor(t, 10*time.Second, "the evaluation to reflect the update", func() bool {
			v := eval()
			return v["enabled"] == true && v["reason"] == "user_targeted" && v["version"] == float64(2)
		})
		// The change event reached the plugin's subscriber, which dropped the cached copy.
		testkit.WaitFor(t, 10*time.Second, "the configuration.changed event to invalidate the cache", func() bool {
			return invalidations() > before
		})
		// Entries are cached the same way.
		p := api + "/entries/prod/feature.limit"
		c.must(200, "GET", p, alice, "")
		if _, err := conn.Exec(ctx, `UPDATE `+schema+`.entries SET value = '"sneaky"' WHERE key = 'feature.limit' AND tenant_id = 'acme'`); err != nil {
			t.Fatal(err)
		}
		if v := jsonBody(t, c.must(200, "GET", p, alice, "")); v["value"] != "x" {
			t.Fatalf("entry read should be cached: %v", v)
		}
		c.must(200, "PUT", p, alice, `{"value":"y"}`)
		testkit.WaitFor(t, 10*time.Second, "the entry read to reflect the update", func() bool {
			return jsonBody(t, c.must(200, "GET", p, alice, ""))["value"] == "y"
		})
		_, m, _ := c.do("GET", "/metrics", "", "")
		if cfgMetricValue(m, `keel_cache_requests_total{op="get",plugin="`+name+`",result="hit"}`) < 1 {
			t.Fatalf("no cache hits recorded for the plugin:\n%s", grep(m, "keel_cache_requests_total"))
		}
	})

	t.Run("audit records", func(t *testing.T) {
		c.t = t
		var n int
		testkit.WaitFor(t, 10*time.Second, "the flag.updated audit record in the outbox", func() bool {
			err := conn.QueryRow(ctx, `SELECT count(*) FROM keel_host.outbox WHERE topic = 'audit.events'
				AND convert_from(payload, 'UTF8')::jsonb->>'type' = 'audit.record'
				AND convert_from(payload, 'UTF8')::jsonb->>'tenant' = 'acme'
				AND convert_from(payload, 'UTF8')::jsonb->'payload' @> '{"action":"flag.updated","actor":"alice","resource":"flag/beta-ui","request_id":"req-flag-update"}'
				AND convert_from(payload, 'UTF8')::jsonb->'payload'->'detail'->'old'->>'enabled' = 'true'`).Scan(&n)
			return err == nil && n == 1
		})
		var changes int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM keel_host.outbox WHERE topic = 'configuration.changes'`).Scan(&changes); err != nil || changes < 10 {
			t.Fatalf("configuration.changed events in the outbox: %d %v", changes, err)
		}
	})

	t.Run("plugin-to-plugin read", func(t *testing.T) {
		c.t = t
		c.must(200, "PUT", api+"/flags/beta-ui", alice, `{"enabled":true,"rules":{"permissions":["beta.access"]}}`)
		// carol is evaluated as herself (the caller's identity travels with the call):
		// her token holds beta.access.
		testkit.WaitFor(t, 10*time.Second, "the reader to see the flag on for carol", func() bool {
			v := jsonBody(t, c.must(200, "GET", "/api/flagreader/flags/beta-ui", carol, ""))
			return v["enabled"] == true && v["reason"] == "permission_targeted" && v["via"] == name
		})
		if v := jsonBody(t, c.must(200, "GET", "/api/flagreader/flags/beta-ui", alice, "")); v["enabled"] != false || v["reason"] != "not_targeted" {
			t.Fatalf("flagreader as alice (no beta.access): %v", v)
		}
		c.must(200, "PUT", api+"/flags/beta-ui", alice, `{"enabled":false}`)
		testkit.WaitFor(t, 10*time.Second, "the reader to see the flag turned off", func() bool {
			v := jsonBody(t, c.must(200, "GET", "/api/flagreader/flags/beta-ui", carol, ""))
			return v["enabled"] == false && v["reason"] == "disabled"
		})
		// The target route's permission applies to the original caller.
		if b := c.must(403, "GET", "/api/flagreader/flags/beta-ui", dave, ""); !strings.Contains(b, "configuration.read") {
			t.Fatalf("reader without configuration.read: %s", b)
		}
		// A public route carries no identity, so it cannot read a protected flag.
		if b := c.must(403, "GET", "/api/flagreader/public/flags/beta-ui", carol, "", "X-Tenant-ID", "acme"); !strings.Contains(b, "authenticated caller") {
			t.Fatalf("public reader: %s", b)
		}
	})

	t.Run("metrics and health", func(t *testing.T) {
		c.t = t
		_, m, _ := c.do("GET", "/plugins/"+name+"/metrics", "", "")
		for _, series := range []string{
			`keel_plugin_flag_evaluations_total{plugin="` + name + `",result="on"}`,
			`keel_plugin_flag_evaluations_total{plugin="` + name + `",result="off"}`,
			`keel_plugin_flag_evaluations_total{plugin="` + name + `",result="not_found"}`,
			`keel_plugin_changes_total{action="updated",kind="flag",plugin="` + name + `"}`,
		} {
			if cfgMetricValue(m, series) < 1 {
				t.Errorf("missing %s in:\n%s", series, grep(m, "keel_plugin_"))
			}
		}
		s, b, _ := c.do("GET", "/readyz", "", "")
		var rep struct {
			Plugins map[string]struct{ Status string }
		}
		if err := json.Unmarshal([]byte(b), &rep); err != nil || s != 200 || rep.Plugins[name].Status != "ok" {
			t.Fatalf("readyz: %d %s", s, b)
		}
	})
}

// cfgMetricValue returns the value of one exact series in Prometheus text, or -1.
func cfgMetricValue(text, series string) float64 {
	for _, l := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(l, series+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return -1
}
