package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/abi/wire"
	"github.com/keelhq/keel/bridges/postgres/pgtest"
	"github.com/keelhq/keel/host/internal/authn"
	"github.com/keelhq/keel/host/internal/events"
	"github.com/keelhq/keel/host/internal/testkit"
)

// addAuditPlugin builds plugins/audit into root/<name>/ with migrations/audit as its
// migrations, as a bundle ships them.
func addAuditPlugin(t *testing.T, root, name string) {
	t.Helper()
	testkit.AddPlugin(t, root, "plugins/audit", func(m *manifest.Manifest) { m.Name = name })
}

// auditEnv is a host running the audit plugin and the auditsource guest (both under
// unique names, so concurrent test runs never share their roles), with access tokens
// verified, and a privileged connection to its database.
type auditEnv struct {
	t      *testing.T
	s      *Server
	base   string
	name   string // the audit plugin
	src    string // the auditsource guest, the events' source
	schema string
	pub    ed25519.PublicKey
	priv   ed25519.PrivateKey
	db     *pgx.Conn
}

func startAudit(t *testing.T, settings map[string]string) *auditEnv {
	t.Helper()
	sfx := pgtest.RandomSuffix(6)
	e := &auditEnv{t: t, name: "audit-" + sfx, src: "audit-" + sfx + "-src", schema: "plg_audit_" + sfx}
	dbURL := database(t, "keel_plg_audit_"+sfx) // drops both plugins' roles
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	e.db = conn
	// The auth plugin's sessions table, which the gateway's revocation check reads.
	if _, err := conn.Exec(ctx, `CREATE SCHEMA plg_auth; CREATE TABLE plg_auth.sessions (id text PRIMARY KEY, tenant_id text, user_id text,
		created_at timestamptz DEFAULT now(), expires_at timestamptz NOT NULL, revoked_at timestamptz);
		INSERT INTO plg_auth.sessions (id, tenant_id, user_id, expires_at) VALUES ('live', 'tenant-a', 'u1', now() + interval '1 hour')`); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addAuditPlugin(t, dir, e.name)
	testkit.AddPlugin(t, dir, "host/testdata/guests/auditsource", func(m *manifest.Manifest) { m.Name = e.src })
	data := t.TempDir()
	if len(settings) > 0 {
		b, _ := json.Marshal(settings)
		if err := os.MkdirAll(filepath.Join(data, "config"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, "config", e.name+".json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.pub, e.priv, _ = ed25519.GenerateKey(rand.Reader)
	e.s, e.base = startIn(t, dir, "--database-url", dbURL, "--jwt-public-key", base64.StdEncoding.EncodeToString(e.pub), "--data-dir", data)
	for _, n := range []string{e.name, e.src} {
		if e.s.Plugins().Lookup(n) == nil {
			t.Fatalf("plugin %s did not activate", n)
		}
	}
	return e
}

// token mints an access token for a user of tenant with perms.
func (e *auditEnv) token(tenant string, perms ...string) string {
	now := time.Now()
	return jwt(e.priv, map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": authn.KeyID(e.pub)}, map[string]any{
		"iss": authn.Issuer, "aud": authn.Audience, "sub": "auditor@" + tenant, "tid": tenant, "sid": "live",
		"jti": pgtest.RandomSuffix(8), "perms": perms, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()})
}

func (e *auditEnv) request(method, path, token, tenant, body string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.base+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if tenant != "" {
		req.Header.Set("X-Tenant-ID", tenant)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// emit publishes audit events for tenant through the auditsource guest.
func (e *auditEnv) emit(tenant string, evs ...map[string]any) []string {
	e.t.Helper()
	b, _ := json.Marshal(evs)
	st, body := e.request("POST", "/api/"+e.src+"/emit", "", tenant, string(b))
	if st != 201 {
		e.t.Fatalf("emit: %d %s", st, body)
	}
	var out struct {
		EventIDs []string `json:"event_ids"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		e.t.Fatal(err)
	}
	return out.EventIDs
}

type auditRecord struct {
	Seq       int64           `json:"seq"`
	EventID   string          `json:"event_id"`
	Source    string          `json:"source"`
	Action    string          `json:"action"`
	Actor     string          `json:"actor"`
	Resource  string          `json:"resource"`
	RequestID string          `json:"request_id"`
	Detail    json.RawMessage `json:"detail"`
	At        string          `json:"at"`
	PrevHash  string          `json:"prev_hash"`
	Hash      string          `json:"hash"`
}

type auditPage struct {
	Records    []auditRecord `json:"records"`
	NextCursor string        `json:"next_cursor"`
}

// search calls GET /records with query and fails the test unless it answers 200.
func (e *auditEnv) search(token, query string) auditPage {
	e.t.Helper()
	st, body := e.request("GET", "/api/"+e.name+"/records?"+query, token, "", "")
	if st != 200 {
		e.t.Fatalf("GET /records?%s: %d %s", query, st, body)
	}
	var p auditPage
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		e.t.Fatalf("GET /records?%s: %v in %s", query, err, body)
	}
	return p
}

type auditVerifyAnswer struct {
	Valid    bool   `json:"valid"`
	Records  int64  `json:"records"`
	BrokenAt int64  `json:"broken_at"`
	Reason   string `json:"reason"`
	FromSeq  int64  `json:"from_seq"`
	HeadSeq  int64  `json:"head_seq"`
}

func (e *auditEnv) verify(token, query string) auditVerifyAnswer {
	e.t.Helper()
	st, body := e.request("GET", "/api/"+e.name+"/verify?"+query, token, "", "")
	if st != 200 {
		e.t.Fatalf("GET /verify: %d %s", st, body)
	}
	var v auditVerifyAnswer
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		e.t.Fatal(err)
	}
	return v
}

// waitRecords waits until tenant's live trail holds n records.
func (e *auditEnv) waitRecords(token string, n int) auditPage {
	e.t.Helper()
	var p auditPage
	testkit.WaitFor(e.t, 30*time.Second, fmt.Sprintf("%d audit records", n), func() bool {
		p = e.search(token, "limit=200")
		return len(p.Records) >= n
	})
	if len(p.Records) != n {
		e.t.Fatalf("want %d records, got %d: %+v", n, len(p.Records), p.Records)
	}
	return p
}

func (e *auditEnv) metrics() string {
	e.t.Helper()
	_, m := e.request("GET", "/plugins/"+e.name+"/metrics", "", "", "")
	return m
}

func (e *auditEnv) exec(sql string, args ...any) error {
	_, err := e.db.Exec(context.Background(), sql, args...)
	return err
}

func auditActors(p auditPage) string {
	var out []string
	for _, r := range p.Records {
		out = append(out, r.Actor)
	}
	return strings.Join(out, ",")
}

func TestAuditTrailSearchVerifyAlerts(t *testing.T) {
	e := startAudit(t, map[string]string{"alert_patterns": "auth.login.failed,*.deleted"})
	readA, readB := e.token("tenant-a", "audit.read"), e.token("tenant-b", "audit.read")
	before := time.Now().UTC().Add(-time.Second)

	idsA := e.emit("tenant-a",
		map[string]any{"action": "customer.created", "actor": "alice", "resource": "customer/1", "request_id": "req-1",
			"detail": map[string]any{"name": "ACME", "limit": json.Number("1.50")}},
		map[string]any{"action": "customer.updated", "actor": "alice", "resource": "customer/1", "request_id": "req-2"},
		map[string]any{"action": "customer.deleted", "actor": "bob", "resource": "customer/2"},
		map[string]any{"action": "auth.login.failed", "actor": "mallory", "resource": "user/mallory"})
	e.emit("tenant-b", map[string]any{"action": "customer.created", "actor": "carol", "resource": "customer/9"})

	all := e.waitRecords(readA, 4)
	e.waitRecords(readB, 1)
	after := time.Now().UTC().Add(time.Second)

	// Newest first, one chain: seq 4..1, each linked to the previous, from the genesis hash.
	for i, r := range all.Records {
		if r.Seq != int64(4-i) || r.Source != e.src {
			t.Fatalf("record %d: %+v", i, r)
		}
		if i+1 < len(all.Records) && r.PrevHash != all.Records[i+1].Hash {
			t.Fatalf("record %d does not link to %d", r.Seq, all.Records[i+1].Seq)
		}
	}
	if first := all.Records[3]; first.PrevHash != strings.Repeat("0", 64) {
		t.Fatalf("first record's prev_hash %s", first.PrevHash)
	}
	byID := map[string]auditRecord{}
	for _, r := range all.Records {
		byID[r.EventID] = r
	}
	if r := byID[idsA[0]]; r.Actor != "alice" || r.Resource != "customer/1" || r.RequestID != "req-1" || string(r.Detail) != `{"name":"ACME","limit":1.50}` {
		t.Fatalf("customer.created as recorded: %+v (detail %s)", r, r.Detail)
	}
	if r := byID[idsA[2]]; r.RequestID == "" || r.RequestID != byID[idsA[3]].RequestID {
		t.Fatalf("events published by one request carry its request id: %+v", r)
	}

	// Tenant B sees only its own record, whatever it asks for.
	if b := e.search(readB, "limit=200"); len(b.Records) != 1 || b.Records[0].Actor != "carol" || b.Records[0].Seq != 1 {
		t.Fatalf("tenant B's trail: %+v", b.Records)
	}
	for _, q := range []string{"actor=alice", "resource=customer/1", "action=customer.deleted", "action=auth.*", "source=" + e.src + "&actor=bob"} {
		if b := e.search(readB, q); len(b.Records) != 0 {
			t.Fatalf("tenant B searching %s sees %+v", q, b.Records)
		}
	}

	for _, tc := range []struct{ query, want string }{
		{"actor=alice", "alice,alice"},
		{"action=customer.deleted", "bob"},
		{"action=customer.*", "bob,alice,alice"},
		{"action=*", "mallory,bob,alice,alice"},
		{"resource=customer/1", "alice,alice"},
		{"resource=customer/*", "bob,alice,alice"},
		{"resource=user/mallory&action=auth.login.failed", "mallory"},
		{"request_id=req-2", "alice"},
		{"source=" + e.src, "mallory,bob,alice,alice"},
		{"source=someone-else", ""},
		{"from=" + url.QueryEscape(before.Format(time.RFC3339Nano)), "mallory,bob,alice,alice"},
		{"from=" + url.QueryEscape(after.Format(time.RFC3339Nano)), ""},
		{"to=" + url.QueryEscape(before.Format(time.RFC3339Nano)), ""},
		{"from=" + url.QueryEscape(before.Format(time.RFC3339)) + "&to=" + url.QueryEscape(after.Format(time.RFC3339)) + "&actor=bob", "bob"},
	} {
		if got := auditActors(e.search(readA, tc.query)); got != tc.want {
			t.Errorf("search %s: %q, want %q", tc.query, got, tc.want)
		}
	}

	// Cursor pagination.
	p1 := e.search(readA, "limit=3")
	if len(p1.Records) != 3 || p1.NextCursor == "" || p1.Records[0].Seq != 4 {
		t.Fatalf("page 1: %+v", p1)
	}
	p2 := e.search(readA, "limit=3&cursor="+p1.NextCursor)
	if len(p2.Records) != 1 || p2.NextCursor != "" || p2.Records[0].Seq != 1 {
		t.Fatalf("page 2: %+v", p2)
	}
	for _, q := range []string{"limit=201", "limit=0", "cursor=abc", "from=yesterday", "actr=alice", "archived=maybe"} {
		if st, body := e.request("GET", "/api/"+e.name+"/records?"+q, readA, "", ""); st != 400 || !strings.Contains(body, `"code":"invalid_query"`) {
			t.Errorf("GET /records?%s: %d %s, want 400 invalid_query", q, st, body)
		}
	}

	// Not public: a token is needed, and the permission. (Another tenant, because the
	// host records refusals in the caller's trail.)
	if st, _ := e.request("GET", "/api/"+e.name+"/records", "", "tenant-x", ""); st != 401 {
		t.Errorf("search without a token: %d, want 401", st)
	}
	for _, path := range []string{"/records", "/verify"} {
		if st, _ := e.request("GET", "/api/"+e.name+path, e.token("tenant-x", "customers.read"), "", ""); st != 403 {
			t.Errorf("%s without audit.read: %d, want 403", path, st)
		}
	}
	// ... and those refusals, published by the host, are in tenant-x's trail.
	readX := e.token("tenant-x", "audit.read")
	testkit.WaitFor(t, 30*time.Second, "the host's access.denied records", func() bool {
		return len(e.search(readX, "source=host&action=access.denied&actor=auditor@tenant-x").Records) >= 2
	})

	if v := e.verify(readA, ""); !v.Valid || v.Records != 4 || v.HeadSeq != 4 {
		t.Fatalf("verify A: %+v", v)
	}
	if v := e.verify(readB, ""); !v.Valid || v.Records != 1 {
		t.Fatalf("verify B: %+v", v)
	}
	if v := e.verify(e.token("tenant-empty", "audit.read"), ""); !v.Valid || v.Records != 0 {
		t.Fatalf("verify of a tenant without records: %+v", v)
	}

	// Alerts: customer.deleted and auth.login.failed of A, in the outbox with the records.
	rows, err := e.db.Query(context.Background(), `SELECT payload, headers->>'keel-type' FROM keel_host.outbox WHERE topic = 'audit.alerts' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var alerts []string
	for rows.Next() {
		var payload []byte
		var typ string
		if err := rows.Scan(&payload, &typ); err != nil {
			t.Fatal(err)
		}
		env, err := events.DecodeEnvelope(payload)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		_ = json.Unmarshal(env.Payload, &m)
		if typ != "audit.alert" || env.Type != "audit.alert" || env.Tenant != "tenant-a" || env.Source != e.name {
			t.Fatalf("alert envelope: type %s, %+v", typ, env)
		}
		alerts = append(alerts, fmt.Sprintf("%s<-%s", m["action"], m["pattern"]))
		if m["event_id"] == "" || m["hash"] == "" || m["seq"] == nil {
			t.Fatalf("alert payload lacks the record: %s", env.Payload)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(alerts, " "); got != "customer.deleted<-*.deleted auth.login.failed<-auth.login.failed" {
		t.Fatalf("alerts: %s", got)
	}

	m := e.metrics()
	for _, want := range []string{
		fmt.Sprintf(`keel_plugin_records_total{plugin=%q,source=%q} 5`, e.name, e.src),
		fmt.Sprintf(`keel_plugin_alerts_total{plugin=%q} 2`, e.name),
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grep(m, "keel_plugin_"))
		}
	}
	if st, body := e.request("GET", "/readyz", "", "", ""); st != 200 || !strings.Contains(body, e.name) {
		t.Errorf("readyz: %d %s", st, body)
	}
}

func TestAuditRedeliveryAppendOnlyAndTamper(t *testing.T) {
	e := startAudit(t, nil)
	readA, readB := e.token("tenant-a", "audit.read"), e.token("tenant-b", "audit.read")
	ids := e.emit("tenant-a",
		map[string]any{"action": "customer.created", "actor": "alice", "resource": "customer/1"},
		map[string]any{"action": "customer.updated", "actor": "alice", "resource": "customer/1"},
		map[string]any{"action": "customer.updated", "actor": "bob", "resource": "customer/1"})
	e.emit("tenant-b", map[string]any{"action": "vendor.created", "actor": "carol", "resource": "vendor/1"})
	e.waitRecords(readA, 3)
	e.waitRecords(readB, 1)

	// Redelivery, twice: the same envelope again on the bus (a copy of its outbox row
	// under another message id, so the broker's deduplication does not drop it), and
	// the host's delivery path called again with a later attempt.
	if err := e.exec(`INSERT INTO keel_host.outbox (event_id, topic, key, payload, headers)
		SELECT event_id || '-again', topic, key, payload, headers FROM keel_host.outbox WHERE event_id = $1`, ids[1]); err != nil {
		t.Fatal(err)
	}
	_ = e.exec(`SELECT pg_notify('keel_outbox', '')`)
	var payload []byte
	if err := e.db.QueryRow(context.Background(), `SELECT payload FROM keel_host.outbox WHERE event_id = $1`, ids[0]).Scan(&payload); err != nil {
		t.Fatal(err)
	}
	env, err := events.DecodeEnvelope(payload)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.s.Plugins().Lookup(e.name).Plugin.Event(context.Background(), &wire.Event{ID: env.ID, Type: env.Type, Topic: "audit.events",
		Tenant: env.Tenant, Source: env.Source, Time: env.Time.UnixNano(), Payload: env.Payload, Attempt: 2,
		Ctx: wire.CallContext{RequestID: env.RequestID, Tenant: env.Tenant}})
	if err != nil || res.Code != 0 {
		t.Fatalf("redelivery: %v %+v", err, res)
	}
	testkit.WaitFor(t, 30*time.Second, "both redeliveries to be acknowledged", func() bool {
		return strings.Contains(e.metrics(), fmt.Sprintf(`keel_plugin_duplicates_total{plugin=%q} 2`, e.name))
	})
	if p := e.search(readA, "limit=200"); len(p.Records) != 3 {
		t.Fatalf("after redeliveries: %d records, want 3", len(p.Records))
	}

	// Append-only in the database: neither the privileged user nor the plugin's role
	// can change or remove a record.
	tbl := e.schema + ".records"
	for _, sql := range []string{
		`UPDATE ` + tbl + ` SET actor = 'x' WHERE tenant_id = 'tenant-a' AND seq = 2`,
		`DELETE FROM ` + tbl + ` WHERE tenant_id = 'tenant-a' AND seq = 3`,
		`TRUNCATE ` + tbl,
		`UPDATE ` + e.schema + `.archive SET actor = 'x'`,
	} {
		if err := e.exec(sql); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("as the privileged user, %s: %v, want refused as append-only", sql, err)
		}
	}
	for _, sql := range []string{
		`UPDATE records SET actor = 'x' WHERE seq = 2`,
		`DELETE FROM records WHERE seq = 3`,
		`INSERT INTO records (seq, event_id, source, action, at, prev_hash, hash) VALUES (2, 'forged', 'x', 'x', now(), repeat('0', 64), repeat('1', 64))`,
		`INSERT INTO records (seq, event_id, source, action, at, prev_hash, hash) VALUES (9, 'forged', 'x', 'x', now(), repeat('0', 64), repeat('1', 64))`,
		`INSERT INTO archive (seq, event_id, source, action, at, prev_hash, hash, created_at) VALUES (1, 'forged', 'x', 'x', now(), repeat('0', 64), repeat('1', 64), now())`,
	} {
		err := func() error {
			ctx := context.Background()
			tx, err := e.db.Begin(ctx)
			if err != nil {
				return err
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, `SELECT set_config('role', $1, true), set_config('search_path', $2, true), set_config('app.tenant_id', 'tenant-a', true)`,
				"keel_plg_"+strings.TrimPrefix(e.schema, "plg_"), e.schema); err != nil {
				t.Fatal(err)
			}
			_, err = tx.Exec(ctx, sql)
			return err
		}()
		if err == nil {
			t.Errorf("as the plugin's role, %s succeeded", sql)
		}
	}

	// Tampering by someone who can disable the trigger is detected by verify.
	if err := e.exec(`ALTER TABLE ` + tbl + ` DISABLE TRIGGER records_no_update;
		UPDATE ` + tbl + ` SET actor = 'x' WHERE tenant_id = 'tenant-a' AND seq = 2;
		ALTER TABLE ` + tbl + ` ENABLE TRIGGER records_no_update`); err != nil {
		t.Fatal(err)
	}
	if v := e.verify(readA, ""); v.Valid || v.BrokenAt != 2 || v.Reason != "hash_mismatch" {
		t.Fatalf("verify after tampering with record 2: %+v", v)
	}
	if v := e.verify(readB, ""); !v.Valid || v.Records != 1 {
		t.Fatalf("tenant B's chain is untouched: %+v", v)
	}
	var n int
	if err := e.db.QueryRow(context.Background(), `SELECT count(*) FROM keel_host.outbox WHERE topic = 'audit.alerts' AND headers->>'keel-type' = 'audit.chain_broken'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("chain_broken alerts: %d %v, want 1", n, err)
	}
	e.verify(readA, "") // once per break
	if err := e.db.QueryRow(context.Background(), `SELECT count(*) FROM keel_host.outbox WHERE topic = 'audit.alerts' AND headers->>'keel-type' = 'audit.chain_broken'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("chain_broken alerts after a second verify: %d %v, want 1", n, err)
	}

	// The trail goes on after the break, and verify keeps pointing at it.
	e.emit("tenant-a", map[string]any{"action": "customer.deleted", "actor": "alice", "resource": "customer/1"})
	e.waitRecords(readA, 4)
	if v := e.verify(readA, ""); v.Valid || v.BrokenAt != 2 || v.HeadSeq != 4 {
		t.Fatalf("verify after a later append: %+v", v)
	}
}

func TestAuditConcurrentDeliveriesKeepOneChain(t *testing.T) {
	e := startAudit(t, nil)
	p := e.s.Plugins().Lookup(e.name).Plugin
	const workers, perWorker = 8, 5
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers*perWorker)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < perWorker; i++ {
				id := fmt.Sprintf("evt-%d-%d", w, i)
				payload, _ := json.Marshal(map[string]any{"action": "item.touched", "actor": fmt.Sprintf("worker-%d", w), "resource": "item/" + id})
				ev := &wire.Event{ID: id, Type: "item.touched", Topic: "audit.events", Tenant: "tenant-c", Source: "loadgen",
					Time: time.Now().UnixNano(), Payload: payload, Attempt: 1, Ctx: wire.CallContext{RequestID: "r-" + id, Tenant: "tenant-c"}}
				// Every event is delivered twice at once, as at-least-once delivery may.
				var inner sync.WaitGroup
				for k := 0; k < 2; k++ {
					inner.Add(1)
					ev := *ev // each delivery its own copy: Event fills in the call context
					go func() {
						defer inner.Done()
						res, err := p.Event(context.Background(), &ev)
						if err == nil && res.Code != 0 {
							err = fmt.Errorf("event %s: %s", id, res.Message)
						}
						if err != nil {
							errs <- err
						}
					}()
				}
				inner.Wait()
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		t.Error(err) // the chain head lock serialises appends: no delivery may fail
		failed++
	}
	read := e.token("tenant-c", "audit.read")
	page := e.search(read, "limit=200")
	if len(page.Records) != workers*perWorker {
		t.Fatalf("%d records for %d distinct events (%d deliveries failed)", len(page.Records), workers*perWorker, failed)
	}
	seen := map[int64]bool{}
	for _, r := range page.Records {
		seen[r.Seq] = true
	}
	for s := int64(1); s <= workers*perWorker; s++ {
		if !seen[s] {
			t.Fatalf("seq %d missing: the chain forked or skipped", s)
		}
	}
	if v := e.verify(read, ""); !v.Valid || v.Records != workers*perWorker {
		t.Fatalf("verify after concurrent deliveries: %+v", v)
	}
}

func TestAuditRetentionArchivesAPrefix(t *testing.T) {
	e := startAudit(t, map[string]string{"retention_days": "30"})
	read, admin := e.token("tenant-a", "audit.read"), e.token("tenant-a", "audit.read", "audit.admin")

	// Three old events (as the host would deliver them late, with their original
	// publication time), then two fresh ones from a plugin.
	for i := 0; i < 3; i++ {
		payload, _ := json.Marshal(map[string]any{"action": "admin.plugin.activated", "actor": "admin-token", "resource": fmt.Sprintf("plugin/p%d", i)})
		env := events.Envelope{ID: events.NewID(), Type: "audit.record", Tenant: "tenant-a", Source: "host",
			Time: time.Now().UTC().Add(-400*24*time.Hour + time.Duration(i)*time.Minute), Payload: payload}
		b, _ := env.Encode()
		if err := e.exec(`INSERT INTO keel_host.outbox (event_id, topic, payload, headers) VALUES ($1, 'audit.events', $2, '{"keel-type":"audit.record","keel-source":"host"}')`, env.ID, b); err != nil {
			t.Fatal(err)
		}
		_ = e.exec(`SELECT pg_notify('keel_outbox', '')`)
		e.waitRecords(read, i+1) // one at a time, to keep their order
	}
	e.emit("tenant-a", map[string]any{"action": "customer.created", "actor": "alice", "resource": "customer/1"})
	e.waitRecords(read, 4)
	e.emit("tenant-a", map[string]any{"action": "customer.updated", "actor": "alice", "resource": "customer/1"})
	e.waitRecords(read, 5)

	run := func(token, query string) (int, map[string]any) {
		st, body := e.request("POST", "/api/"+e.name+"/retention/run?"+query, token, "", "")
		var out map[string]any
		_ = json.Unmarshal([]byte(body), &out)
		if st == 200 && out == nil {
			t.Fatalf("retention: %s", body)
		}
		return st, out
	}
	if st, _ := run(e.token("tenant-z", "audit.read"), ""); st != 403 {
		t.Fatalf("retention without audit.admin: %d", st)
	}
	// In two batches: 2, then the last old one.
	if st, out := run(admin, "limit=2"); st != 200 || out["archived"] != float64(2) || out["more"] != true || out["archived_through_seq"] != float64(2) {
		t.Fatalf("first retention batch: %d %v", st, out)
	}
	if st, out := run(admin, ""); st != 200 || out["archived"] != float64(1) || out["more"] != false || out["archived_through_seq"] != float64(3) {
		t.Fatalf("second retention batch: %d %v", st, out)
	}
	if st, out := run(admin, ""); st != 200 || out["archived"] != float64(0) {
		t.Fatalf("nothing left to archive: %d %v", st, out)
	}

	// Each run with work is itself in the trail (two runs: seq 6 and 7).
	live := e.waitRecords(read, 4)
	if live.Records[0].Action != "audit.archive.run" || live.Records[0].Actor != "auditor@tenant-a" || live.Records[0].Source != e.name {
		t.Fatalf("newest live record: %+v", live.Records[0])
	}
	if live.Records[3].Seq != 4 {
		t.Fatalf("oldest live record: %+v", live.Records[3])
	}
	arch := e.search(read, "archived=true&limit=200")
	if len(arch.Records) != 3 || arch.Records[0].Seq != 3 || arch.Records[2].Seq != 1 || arch.Records[2].Source != "host" {
		t.Fatalf("archive: %+v", arch.Records)
	}
	if v := e.verify(read, ""); !v.Valid || v.Records != 4 || v.FromSeq != 4 {
		t.Fatalf("verify live trail: %+v", v)
	}
	if v := e.verify(read, "scope=all"); !v.Valid || v.Records != 7 {
		t.Fatalf("verify archive and live trail: %+v", v)
	}

	// Only exact copies enter the archive, and only archived records leave the trail.
	for _, sql := range []string{
		`DELETE FROM ` + e.schema + `.records WHERE tenant_id = 'tenant-a' AND seq = 4`,
		`INSERT INTO ` + e.schema + `.archive (tenant_id, seq, event_id, source, action, actor, resource, request_id, detail, at, prev_hash, hash, created_at)
		 SELECT tenant_id, seq, event_id, source, action, 'someone else', resource, request_id, detail, at, prev_hash, hash, created_at
		 FROM ` + e.schema + `.records WHERE tenant_id = 'tenant-a' AND seq = 4`,
		`DELETE FROM ` + e.schema + `.archive WHERE tenant_id = 'tenant-a'`,
	} {
		if err := e.exec(sql); err == nil {
			t.Errorf("%s succeeded", sql)
		}
	}

	// Tampering with the archive is caught by the full verification only.
	tbl := e.schema + ".archive"
	if err := e.exec(`ALTER TABLE ` + tbl + ` DISABLE TRIGGER archive_no_change;
		UPDATE ` + tbl + ` SET resource = 'plugin/other' WHERE tenant_id = 'tenant-a' AND seq = 1;
		ALTER TABLE ` + tbl + ` ENABLE TRIGGER archive_no_change`); err != nil {
		t.Fatal(err)
	}
	if v := e.verify(read, ""); !v.Valid {
		t.Fatalf("live verification starts at the checkpoint: %+v", v)
	}
	if v := e.verify(read, "scope=all"); v.Valid || v.BrokenAt != 1 || v.Reason != "hash_mismatch" {
		t.Fatalf("full verification after tampering with the archive: %+v", v)
	}
	if !strings.Contains(e.metrics(), fmt.Sprintf(`keel_plugin_archived_total{plugin=%q} 3`, e.name)) {
		t.Errorf("archived_total: %s", grep(e.metrics(), "archived"))
	}
}

// TestAuditAutomaticRetention checks that the trail archives by itself once
// retention_every has passed for a tenant, without POST /retention/run: the next
// event's invocation moves the old prefix, records the run and restarts the interval.
func TestAuditAutomaticRetention(t *testing.T) {
	e := startAudit(t, map[string]string{"retention_days": "30", "retention_every": "24h"})
	p := e.s.Plugins().Lookup(e.name).Plugin
	read := e.token("tenant-r", "audit.read")
	deliver := func(id string, at time.Time) {
		t.Helper()
		payload, _ := json.Marshal(map[string]any{"action": "customer.viewed", "actor": "u1", "resource": "customer/" + id})
		res, err := p.Event(context.Background(), &wire.Event{ID: id, Type: "audit.record", Topic: "audit.events",
			Tenant: "tenant-r", Source: "crm", Time: at.UnixNano(), Payload: payload, Attempt: 1,
			Ctx: wire.CallContext{RequestID: "req-" + id, Tenant: "tenant-r"}})
		if err != nil || res.Code != 0 {
			t.Fatalf("deliver %s: %v %+v", id, err, res)
		}
	}
	old := time.Now().Add(-400 * 24 * time.Hour)
	for i := 0; i < 3; i++ {
		deliver(fmt.Sprintf("old-%d", i), old.Add(time.Duration(i)*time.Minute))
	}
	deliver("fresh-0", time.Now())
	deliver("fresh-1", time.Now())
	// A new tenant's interval starts with its first record: nothing archived yet.
	if arch := e.search(read, "archived=true"); len(arch.Records) != 0 {
		t.Fatalf("archived before the interval passed: %+v", arch.Records)
	}

	// A day passes.
	if err := e.exec(`UPDATE ` + e.schema + `.chain_heads SET retention_checked_at = now() - interval '25 hours' WHERE tenant_id = 'tenant-r'`); err != nil {
		t.Fatal(err)
	}
	deliver("fresh-2", time.Now())
	arch := e.search(read, "archived=true")
	if len(arch.Records) != 3 || arch.Records[0].Seq != 3 || arch.Records[2].Seq != 1 {
		t.Fatalf("automatic run did not archive the old prefix: %+v", arch.Records)
	}
	// The run is in the trail (delivered through the bus), by the plugin, caused by fresh-2.
	live := e.waitRecords(read, 4)
	run := live.Records[0]
	if run.Action != "audit.archive.run" || run.Actor != "audit:retention" || run.RequestID != "fresh-2" ||
		!strings.Contains(string(run.Detail), `"trigger":"schedule"`) || !strings.Contains(string(run.Detail), `"archived":3`) {
		t.Fatalf("record of the automatic run: %+v (%s)", run, run.Detail)
	}
	if v := e.verify(read, "scope=all"); !v.Valid || v.Records != 7 {
		t.Fatalf("verify after the automatic run: %+v", v)
	}
	// The interval restarted: the next old-dated event is not archived by itself.
	var recent bool
	if err := e.db.QueryRow(context.Background(), `SELECT retention_checked_at > now() - interval '1 minute' FROM `+e.schema+`.chain_heads WHERE tenant_id = 'tenant-r'`).Scan(&recent); err != nil || !recent {
		t.Fatalf("retention_checked_at not moved forward: %v %v", recent, err)
	}
	deliver("old-late", old)
	if arch := e.search(read, "archived=true"); len(arch.Records) != 3 {
		t.Fatalf("archived again within the interval: %d records", len(arch.Records))
	}
}

// TestAuditLargeDetails checks that search and verify cope with records whose
// details together exceed the host's 16 MiB result limit: pages get shorter, never fail.
func TestAuditLargeDetails(t *testing.T) {
	e := startAudit(t, nil)
	p := e.s.Plugins().Lookup(e.name).Plugin
	const n = 90
	big := strings.Repeat("x", 200<<10)
	for i := 0; i < n; i++ {
		payload, _ := json.Marshal(map[string]any{"action": "file.uploaded", "actor": "u1", "resource": fmt.Sprintf("file/%d", i),
			"detail": map[string]any{"blob": big}})
		res, err := p.Event(context.Background(), &wire.Event{ID: fmt.Sprintf("big-%d", i), Type: "file.uploaded", Topic: "audit.events",
			Tenant: "tenant-l", Source: "files", Time: time.Now().UnixNano(), Payload: payload, Attempt: 1,
			Ctx: wire.CallContext{RequestID: "r", Tenant: "tenant-l"}})
		if err != nil || res.Code != 0 {
			t.Fatalf("event %d: %v %+v", i, err, res)
		}
	}
	read := e.token("tenant-l", "audit.read")
	seen, pages, cursor := 0, 0, ""
	for {
		q := "limit=200"
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		page := e.search(read, q)
		pages++
		seen += len(page.Records)
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if seen != n || pages < 3 {
		t.Fatalf("%d records in %d pages, want %d in at least 3", seen, pages, n)
	}
	if v := e.verify(read, ""); !v.Valid || v.Records != n {
		t.Fatalf("verify: %+v", v)
	}
}
