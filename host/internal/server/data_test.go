package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/abi/wire"
	"github.com/keelhq/keel/bridges/nats"
	"github.com/keelhq/keel/bridges/postgres/pgtest"
	"github.com/keelhq/keel/host/internal/runtime"
	"github.com/keelhq/keel/host/internal/testkit"
)

// database creates a throwaway database and drops it (and the test's plugin roles)
// at the end.
func database(t *testing.T, rolePrefix string) string {
	t.Helper()
	ctx := context.Background()
	db, err := pgtest.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Drop(context.Background(), rolePrefix); err != nil {
			t.Logf("dropping test database: %v", err)
		}
	})
	return db.URL()
}

// ledger starts a host with the ledger guest under a unique name and returns the
// server, base URL and the plugin's name.
func ledger(t *testing.T, args ...string) (*Server, string, string) {
	t.Helper()
	name := "ledger-" + pgtest.RandomSuffix(6)
	url := database(t, "keel_plg_"+strings.ReplaceAll(name, "-", "_"))
	dir := t.TempDir()
	testkit.AddPlugin(t, dir, "host/testdata/guests/ledger", func(m *manifest.Manifest) { m.Name = name })
	s, base := startIn(t, dir, append([]string{"--database-url", url}, args...)...)
	if s.Plugins().Lookup(name) == nil {
		t.Fatalf("plugin %s did not activate", name)
	}
	return s, base, name
}

func rows(t *testing.T, body string) []map[string]any {
	t.Helper()
	var v []map[string]any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("want a JSON array, got %q", body)
	}
	return v
}

func notes(t *testing.T, base, plugin, path string) []string {
	t.Helper()
	s, b, _ := do(t, "GET", base+"/api/"+plugin+path, "")
	if s != 200 {
		t.Fatalf("GET %s: %d %s", path, s, b)
	}
	var out []string
	for _, r := range rows(t, b) {
		out = append(out, fmt.Sprint(r["note"]))
	}
	return out
}

func TestUnitOfWorkCommitsOrRollsBack(t *testing.T) {
	_, base, name := ledger(t)
	api := base + "/api/" + name

	if s, b, _ := do(t, "POST", api+"/entries", `{"note":"kept","amount":5}`); s != 201 {
		t.Fatalf("insert: %d %s", s, b)
	}
	if s, b, _ := do(t, "POST", api+"/entries", `{"note":"failed","fail":"error"}`); s != 500 || !strings.Contains(b, "forced") {
		t.Fatalf("forced error: %d %s", s, b)
	}
	if s, b, _ := do(t, "POST", api+"/entries", `{"note":"trapped","fail":"trap"}`); s != 500 || !strings.Contains(b, "plugin_trap") {
		t.Fatalf("trap: %d %s", s, b)
	}
	if got := notes(t, base, name, "/entries"); len(got) != 1 || got[0] != "kept" {
		t.Fatalf("rows after commit, error and trap: %v (only 'kept' may exist)", got)
	}
	// The committed event is delivered to the subscriber; the rolled-back ones never.
	testkit.WaitFor(t, 15*time.Second, "the committed event to be delivered", func() bool {
		return len(notes(t, base, name, "/received")) >= 1
	})
	time.Sleep(500 * time.Millisecond) // give a wrongly published event time to show up
	if got := notes(t, base, name, "/received"); len(got) != 1 || got[0] != "kept" {
		t.Fatalf("received events: %v, want only the committed one", got)
	}
}

// TestQueryJSONMatchesGuestRendering checks that rows rendered by the host
// (keel:sql/v1.query with json) are byte for byte what the guest SDK renders from
// the typed values, for every kind of column a query returns, and that the tenant's
// rows are still the only ones visible.
func TestQueryJSONMatchesGuestRendering(t *testing.T) {
	s, _, name := ledger(t)
	p := s.Plugins().Lookup(name).Plugin
	call := func(tenant, body string) *wire.HTTPResponse {
		t.Helper()
		resp, err := p.HTTP(context.Background(), &wire.HTTPRequest{Method: "POST", Path: "/sql-json", Route: "/sql-json", Body: []byte(body),
			Ctx: wire.CallContext{RequestID: "t-json", Tenant: tenant, Subject: "tester"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := call("tenant-a", `SELECT 'a"b <&> '||chr(1)||' ü' AS s, 42::int8 AS n, -7::int2 AS small, 12.50::numeric AS price,
		'NaN'::numeric AS nan, 0.1::float8 AS f, 'Infinity'::float8 AS inf, true AS ok, NULL::text AS none,
		'2026-12-02 18:41:08.123456+01'::timestamptz AS at, '2026-12-02 18:41:08'::timestamp AS local,
		'1500-01-01 00:00:00+00'::timestamptz AS old, 'infinity'::timestamptz AS forever, '\x00ff'::bytea AS raw,
		'{"b": [1, null]}'::jsonb AS doc, '2026-12-02'::date AS day, gen_random_uuid() IS NOT NULL AS has_uuid,
		ARRAY[1, 2] AS arr, '1 day'::interval AS span`); r.Status != 200 {
		t.Fatalf("host and guest renderings differ: %d %s", r.Status, r.Body)
	} else if want := `"price":12.50,"nan":"NaN","f":0.1,"inf":"+Inf","ok":true,"none":null,"at":"2026-12-02T17:41:08.123456Z"`; !strings.Contains(string(r.Body), want) {
		t.Fatalf("rendering: %s", r.Body)
	}
	if r := call("tenant-a", `INSERT INTO entries (note) VALUES ('j1'), ('j2') RETURNING note`); r.Status != 200 || string(r.Body) != `[{"note":"j1"},{"note":"j2"}]` {
		t.Fatalf("rows of a write: %d %s", r.Status, r.Body)
	}
	if r := call("tenant-b", `SELECT note FROM entries`); r.Status != 200 || string(r.Body) != `[]` {
		t.Fatalf("tenant B sees A's rows through QueryJSON: %d %s", r.Status, r.Body)
	}
}

func TestTenantIsolationAndSchemaIsolation(t *testing.T) {
	s, base, name := ledger(t)
	p := s.Plugins().Lookup(name).Plugin
	call := func(tenant, method, path, body string) *wire.HTTPResponse {
		t.Helper()
		resp, err := p.HTTP(context.Background(), &wire.HTTPRequest{Method: method, Path: path, Route: path, Body: []byte(body),
			Ctx: wire.CallContext{RequestID: "t-" + tenant, Tenant: tenant, Subject: "tester"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for _, n := range []string{"a1", "a2"} {
		if r := call("tenant-a", "POST", "/entries", `{"note":"`+n+`"}`); r.Status != 201 {
			t.Fatalf("insert for A: %d %s", r.Status, r.Body)
		}
	}
	// B's unfiltered statements see and touch nothing of A's.
	for _, tc := range []struct{ sql, want string }{
		{`SELECT note FROM entries`, `[]`},
		{`WITH d AS (DELETE FROM entries RETURNING 1) SELECT count(*) AS n FROM d`, `[{"n":0}]`},
		{`WITH u AS (UPDATE entries SET note = 'stolen' RETURNING 1) SELECT count(*) AS n FROM u`, `[{"n":0}]`},
	} {
		if r := call("tenant-b", "POST", "/sql", tc.sql); r.Status != 200 || string(r.Body) != tc.want {
			t.Fatalf("as B, %s: %d %s, want %s", tc.sql, r.Status, r.Body, tc.want)
		}
	}
	if r := call("tenant-b", "POST", "/sql", `INSERT INTO entries (tenant_id, note) VALUES ('tenant-a', 'forged') RETURNING id`); r.Status != 500 || !strings.Contains(string(r.Body), "42501") {
		t.Fatalf("B writing a row for A must be refused by the policy: %d %s", r.Status, r.Body)
	}
	if r := call("tenant-a", "GET", "/entries", ""); !strings.Contains(string(r.Body), `"note":"a1"`) || strings.Contains(string(r.Body), "stolen") {
		t.Fatalf("A's rows changed: %s", r.Body)
	}
	// Other schemas and the host's tables are out of reach.
	for _, sql := range []string{`SELECT * FROM keel_host.outbox`, `SELECT * FROM keel_host.schema_migrations`,
		`SELECT set_config('app.tenant_id', 'tenant-a', true)`, `CREATE TABLE public.x (a int)`} {
		r := call("tenant-b", "POST", "/sql", sql)
		if r.Status != 500 || !strings.Contains(string(r.Body), `"code":"denied"`) {
			t.Errorf("%s: %d %s, want denied", sql, r.Status, r.Body)
		}
	}
	_ = base
}

// TestReadOnlyRoutes drives a read_only route's unit of work: it reads the tenant's
// rows only, PostgreSQL refuses its writes, it cannot publish, and the ordinary routes
// on the same connections still write afterwards.
func TestReadOnlyRoutes(t *testing.T) {
	s, base, name := ledger(t)
	p := s.Plugins().Lookup(name).Plugin
	call := func(tenant, path, body string) *wire.HTTPResponse {
		t.Helper()
		resp, err := p.HTTP(context.Background(), &wire.HTTPRequest{Method: "POST", Path: path, Route: path, Body: []byte(body),
			Ctx: wire.CallContext{RequestID: "ro-" + tenant, Tenant: tenant}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := call("tenant-a", "/entries", `{"note":"a1"}`); r.Status != 201 {
		t.Fatalf("insert for A: %d %s", r.Status, r.Body)
	}
	for i := 0; i < 3; i++ { // the first run on a connection prepares; later ones run implicitly
		if r := call("tenant-a", "/ro/sql", `SELECT note, current_setting('transaction_read_only') AS ro FROM entries`); r.Status != 200 || string(r.Body) != `[{"note":"a1","ro":"on"}]` {
			t.Fatalf("read-only read as A: %d %s", r.Status, r.Body)
		}
		if r := call("tenant-b", "/ro/sql", `SELECT note FROM entries`); r.Status != 200 || string(r.Body) != `[]` {
			t.Fatalf("read-only read as B: %d %s", r.Status, r.Body)
		}
		r := call("tenant-a", "/ro/sql", `INSERT INTO entries (note) VALUES ('sneaked') RETURNING id`)
		if r.Status != 500 || !strings.Contains(string(r.Body), `"code":"denied"`) || !strings.Contains(string(r.Body), "25006") {
			t.Fatalf("a write on a read_only route: %d %s, want denied with SQLSTATE 25006", r.Status, r.Body)
		}
	}
	if r := call("tenant-a", "/ro/publish", ""); r.Status != 500 || !strings.Contains(string(r.Body), `"code":"denied"`) || !strings.Contains(string(r.Body), "read_only") {
		t.Fatalf("publishing from a read_only route: %d %s, want denied", r.Status, r.Body)
	}
	if r := call("tenant-a", "/entries", `{"note":"a2"}`); r.Status != 201 {
		t.Fatalf("insert after read-only calls: %d %s", r.Status, r.Body)
	}
	if r := call("tenant-a", "/ro/sql", `SELECT note FROM entries ORDER BY id`); string(r.Body) != `[{"note":"a1"},{"note":"a2"}]` {
		t.Fatalf("entries after the read-only calls: %s, want a1 and a2 only", r.Body)
	}
	_ = base
}

// TestPrefetchedRoute: a read_only route's declared lookup runs for the caller's
// tenant before the call and answers the handler; a lookup PostgreSQL refuses is left
// out (the handler then queries itself); one that uses up the deadline fails the call
// as a timeout without starting the guest.
func TestPrefetchedRoute(t *testing.T) {
	s, base, name := ledger(t)
	p := s.Plugins().Lookup(name).Plugin
	get := func(tenant, note string) (*wire.HTTPResponse, error) {
		return p.HTTP(context.Background(), &wire.HTTPRequest{Method: "GET", Path: "/ro/entries/" + note, Route: "/ro/entries/:note",
			Params: []wire.KV{{Name: "note", Value: note}}, Ctx: wire.CallContext{RequestID: "pf-" + tenant, Tenant: tenant}}, nil)
	}
	for _, tenant := range []string{"tenant-a", "tenant-b"} {
		if r, err := p.HTTP(context.Background(), &wire.HTTPRequest{Method: "POST", Path: "/entries", Route: "/entries",
			Body: []byte(`{"note":"shared","amount":7}`), Ctx: wire.CallContext{RequestID: "ins", Tenant: tenant}}, nil); err != nil || r.Status != 201 {
			t.Fatalf("insert for %s: %v %v", tenant, r, err)
		}
	}
	for i := 0; i < 3; i++ {
		r, err := get("tenant-a", "shared")
		if err != nil || r.Status != 200 || string(r.Body) != `[{"note":"shared","amount":7}]` {
			t.Fatalf("prefetched read as A: %v %v", r, err)
		}
		if r, err := get("tenant-c", "shared"); err != nil || r.Status != 200 || string(r.Body) != `[]` {
			t.Fatalf("prefetched read as C, who has no entries: %v %v", r, err)
		}
	}
	_, m, _ := do(t, "GET", base+"/metrics", "")
	if !strings.Contains(m, `keel_plugin_prefetch_total{outcome="ok",plugin="`+name+`"} 6`) {
		t.Fatalf("prefetch counter:\n%s", grep(m, "prefetch"))
	}

	// A lookup that fails is left out; the handler's own query reports the error.
	bad, err := pgx.Connect(context.Background(), s.cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close(context.Background())
	schema := "plg_" + strings.ReplaceAll(name, "-", "_")
	if _, err := bad.Exec(context.Background(), `ALTER TABLE `+schema+`.entries RENAME COLUMN amount TO amount_gone`); err != nil {
		t.Fatal(err)
	}
	if r, err := get("tenant-a", "shared"); err != nil || r.Status != 500 || !strings.Contains(string(r.Body), "amount") {
		t.Fatalf("after the column went: %v %v, want the handler's own error", r, err)
	}
	if _, m, _ := do(t, "GET", base+"/metrics", ""); !strings.Contains(m, `keel_plugin_prefetch_total{outcome="failed",plugin="`+name+`"} 1`) {
		t.Fatalf("failed prefetch not counted:\n%s", grep(m, "prefetch"))
	}
	bad.Exec(context.Background(), `ALTER TABLE `+schema+`.entries RENAME COLUMN amount_gone TO amount`)

	// A lookup that outlives the deadline fails the call as a timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	tx, err := bad.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), `LOCK TABLE `+schema+`.entries IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	_, err = p.HTTP(ctx, &wire.HTTPRequest{Method: "GET", Path: "/ro/entries/shared", Route: "/ro/entries/:note",
		Params: []wire.KV{{Name: "note", Value: "shared"}}, Ctx: wire.CallContext{RequestID: "pf-slow", Tenant: "tenant-a"}}, nil)
	tx.Rollback(context.Background())
	var ce *runtime.CallError
	if !errors.As(err, &ce) || ce.Reason != runtime.ReasonTimeout || time.Since(t0) > 5*time.Second {
		t.Fatalf("a lookup blocked past the deadline: %v after %v, want a timeout", err, time.Since(t0))
	}
	if r, err := get("tenant-a", "shared"); err != nil || r.Status != 200 {
		t.Fatalf("after the timeout: %v %v", r, err)
	}
}

func TestSQLNotDeclaredIsDenied(t *testing.T) {
	name := "ledger-" + pgtest.RandomSuffix(6)
	url := database(t, "keel_plg_none")
	dir := t.TempDir()
	wasm, m := testkit.Build(t, "host/testdata/guests/ledger")
	m.Name, m.Capabilities = name, manifest.Capabilities{}
	for i := range m.Routes {
		m.Routes[i].Prefetch = nil // a declared lookup needs the capability at load time
	}
	testkit.WritePlugin(t, dir, wasm, m)
	_, base := startIn(t, dir, "--database-url", url)
	s, b, _ := do(t, "GET", base+"/api/"+name+"/entries", "")
	if s != 500 || !strings.Contains(b, `"code":"denied"`) || !strings.Contains(b, "does not declare the sql capability") {
		t.Fatalf("undeclared sql: %d %s", s, b)
	}
}

func TestPoisonEventGoesToDLQWhileOthersFlow(t *testing.T) {
	_, base, name := ledger(t)
	api := base + "/api/" + name
	for _, n := range []string{"first", "poison", "after"} {
		if s, b, _ := do(t, "POST", api+"/entries", `{"note":"`+n+`"}`); s != 201 {
			t.Fatalf("insert %s: %d %s", n, s, b)
		}
	}
	testkit.WaitFor(t, 30*time.Second, "first, after and the dead-lettered poison", func() bool {
		got := strings.Join(notes(t, base, name, "/received"), ",")
		return strings.Contains(got, "first") && strings.Contains(got, "after") && strings.Contains(got, "poison")
	})
	s, b, _ := do(t, "GET", api+"/received", "")
	for _, r := range rows(t, b) {
		if r["note"] == "poison" && r["topic"] != "ledger.entries.dlq" {
			t.Fatalf("poison must only arrive through the DLQ: %v", r)
		}
		if r["note"] != "poison" && r["topic"] != "ledger.entries" {
			t.Fatalf("unexpected delivery %v", r)
		}
	}
	_ = s
	// The subscription group defaults to the manifest's name at validation ("ledger").
	testkit.WaitFor(t, 5*time.Second, "the dead letter to be counted", func() bool {
		_, m, _ := do(t, "GET", base+"/metrics", "")
		return strings.Contains(m, `keel_bus_dead_lettered_total{group="ledger",topic="ledger.entries"} 1`)
	})
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestEventsSurviveBrokerOutage(t *testing.T) {
	ns, err := nats.StartEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	proxy := testkit.NewProxy(t, strings.TrimPrefix(ns.ClientURL(), "nats://"))
	_, base, name := ledger(t, "--nats-url", "nats://"+proxy.Addr())
	api := base + "/api/" + name

	proxy.Cut()
	for _, n := range []string{"during-1", "during-2"} {
		if s, b, _ := do(t, "POST", api+"/entries", `{"note":"`+n+`"}`); s != 201 {
			t.Fatalf("writes must succeed while the broker is down (outbox): %d %s", s, b)
		}
	}
	time.Sleep(time.Second)
	if got := notes(t, base, name, "/received"); len(got) != 0 {
		t.Fatalf("delivered while the broker was down? %v", got)
	}
	proxy.Restore()
	testkit.WaitFor(t, 45*time.Second, "events written during the outage to be delivered", func() bool {
		return len(notes(t, base, name, "/received")) == 2
	})
}

func TestEventsOverKafka(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	addrs := cluster.ListenAddrs()
	if _, _, err := net.SplitHostPort(addrs[0]); err != nil {
		t.Fatal(err)
	}
	_, base, name := ledger(t, "--kafka-brokers", strings.Join(addrs, ","))
	api := base + "/api/" + name
	for _, n := range []string{"k1", "poison", "k2"} {
		if s, b, _ := do(t, "POST", api+"/entries", `{"note":"`+n+`"}`); s != 201 {
			t.Fatalf("insert: %d %s", s, b)
		}
	}
	testkit.WaitFor(t, 45*time.Second, "delivery over Kafka, poison through the DLQ", func() bool {
		got := strings.Join(notes(t, base, name, "/received"), ",")
		return strings.Contains(got, "k1") && strings.Contains(got, "k2") && strings.Contains(got, "poison")
	})
}
