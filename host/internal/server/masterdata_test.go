package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"github.com/keelhq/keel/abi/manifest"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keelhq/keel/bridges/postgres/pgtest"
	"github.com/keelhq/keel/host/internal/authn"
	"github.com/keelhq/keel/host/internal/testkit"
)

// mdHost is a host running the master-data plugin (under a unique name, because
// plugin roles are shared by every database of the cluster) against a throwaway
// database, with a token verifier and the auth plugin's sessions table.
type mdHost struct {
	t     *testing.T
	base  string // http://host:port
	api   string // base + /api/<plugin>
	name  string
	dbURL string
	priv  ed25519.PrivateKey
	pub   ed25519.PublicKey
}

// mdDeploy builds plugins/master-data and writes it, renamed, with the SQL files of
// migrations/master-data into root/<name>/ as KEEL_PLUGINS_DIR expects.
func mdDeploy(t *testing.T, root, name string) {
	t.Helper()
	testkit.AddPlugin(t, root, "plugins/master-data", func(m *manifest.Manifest) { m.Name = name })
}

// sessions every test token may use: sid -> tenant.
var mdSessions = map[string]string{"sa": "tenant-a", "sb": "tenant-b"}

func startMasterData(t *testing.T) *mdHost {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	name := "master-data-" + pgtest.RandomSuffix(6)
	url := database(t, "keel_plg_"+strings.ReplaceAll(name, "-", "_"))
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// The auth plugin's sessions table as its migration creates it: the gateway's
	// revocation check reads it.
	if _, err := conn.Exec(ctx, `CREATE SCHEMA plg_auth; CREATE TABLE plg_auth.sessions (id text PRIMARY KEY, tenant_id text, user_id text,
		created_at timestamptz DEFAULT now(), expires_at timestamptz NOT NULL, revoked_at timestamptz)`); err != nil {
		t.Fatal(err)
	}
	for sid, tenant := range mdSessions {
		if _, err := conn.Exec(ctx, `INSERT INTO plg_auth.sessions (id, tenant_id, user_id, expires_at) VALUES ($1, $2, $3, now() + interval '1 hour')`,
			sid, tenant, "user-"+sid); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	mdDeploy(t, dir, name)
	s, base := startIn(t, dir, "--database-url", url, "--jwt-public-key", base64.StdEncoding.EncodeToString(pub))
	if s.Plugins().Lookup(name) == nil {
		t.Fatalf("plugin %s did not activate", name)
	}
	return &mdHost{t: t, base: base, api: base + "/api/" + name, name: name, dbURL: url, priv: priv, pub: pub}
}

// token mints an access token for user-<sid> of the session's tenant.
func (h *mdHost) token(sid string, perms ...string) string {
	now := time.Now()
	return jwt(h.priv, map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": authn.KeyID(h.pub)}, map[string]any{
		"iss": authn.Issuer, "aud": authn.Audience, "sub": "user-" + sid, "tid": mdSessions[sid], "sid": sid, "jti": pgtest.RandomSuffix(8),
		"perms": perms, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()})
}

// mdPerms returns the read and write permissions of entities.
func mdPerms(entities ...string) []string {
	var ps []string
	for _, e := range entities {
		ps = append(ps, "master-data."+e+".read", "master-data."+e+".write")
	}
	return ps
}

type mdResp struct {
	status int
	body   string
	hdr    http.Header
}

// json decodes the body into a map (failing the test if it is not an object).
func (r mdResp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("want a JSON object, got %d %q", r.status, r.body)
	}
	return m
}

// errorObj returns the "error" member of an error body.
func (r mdResp) errorObj(t *testing.T) map[string]any {
	t.Helper()
	e, _ := r.json(t)["error"].(map[string]any)
	if e == nil {
		t.Fatalf("want an error body, got %d %s", r.status, r.body)
	}
	return e
}

// call sends one request; hdr is name, value pairs.
func (h *mdHost) call(method, path, token, body string, hdr ...string) mdResp {
	h.t.Helper()
	req, err := http.NewRequest(method, h.api+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
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
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return mdResp{resp.StatusCode, string(b), resp.Header}
}

func (h *mdHost) want(r mdResp, status int, what string) mdResp {
	h.t.Helper()
	if r.status != status {
		h.t.Fatalf("%s: %d %s, want %d", what, r.status, r.body, status)
	}
	return r
}

func (h *mdHost) wantError(r mdResp, status int, code, what string) map[string]any {
	h.t.Helper()
	h.want(r, status, what)
	e := r.errorObj(h.t)
	if e["code"] != code {
		h.t.Fatalf("%s: error %v, want code %s", what, e, code)
	}
	if e["request_id"] == "" || e["request_id"] != r.hdr.Get("X-Request-ID") {
		h.t.Fatalf("%s: error %v lacks the request id %q", what, e, r.hdr.Get("X-Request-ID"))
	}
	return e
}

// items lists a page and returns its items and next cursor.
func (h *mdHost) page(path, token string) ([]map[string]any, string) {
	h.t.Helper()
	r := h.want(h.call("GET", path, token, ""), 200, "GET "+path)
	var p struct {
		Items      []map[string]any `json:"items"`
		NextCursor *string          `json:"next_cursor"`
	}
	if err := json.Unmarshal([]byte(r.body), &p); err != nil || p.Items == nil {
		h.t.Fatalf("GET %s: want {items, next_cursor}, got %s", path, r.body)
	}
	if p.NextCursor == nil {
		return p.Items, ""
	}
	return p.Items, *p.NextCursor
}

type mdEvent struct {
	Topic, Type string
	Envelope    struct {
		ID        string          `json:"id"`
		Type      string          `json:"type"`
		Tenant    string          `json:"tenant"`
		Source    string          `json:"source"`
		RequestID string          `json:"request_id"`
		Payload   json.RawMessage `json:"payload"`
	}
}

// outbox reads the events the plugin published, in order, as the host's privileged user.
func (h *mdHost) outbox() []mdEvent {
	h.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, h.dbURL)
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT topic, headers->>'keel-type', payload FROM keel_host.outbox
		WHERE headers->>'keel-source' = $1 ORDER BY id`, h.name)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []mdEvent
	for rows.Next() {
		var ev mdEvent
		var payload []byte
		if err := rows.Scan(&ev.Topic, &ev.Type, &payload); err != nil {
			h.t.Fatal(err)
		}
		if err := json.Unmarshal(payload, &ev.Envelope); err != nil {
			h.t.Fatalf("outbox payload is not an envelope: %s", payload)
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		h.t.Fatal(err)
	}
	return out
}

func TestMasterDataCustomerLifecycle(t *testing.T) {
	h := startMasterData(t)
	tokA := h.token("sa", mdPerms("customer")...)
	tokB := h.token("sb", mdPerms("customer")...)

	// Create in tenant A.
	r := h.want(h.call("POST", "/customers", tokA, `{"code":"C-001","name":"Acme GmbH","email":"billing@acme.example",
		"country":"de","currency":"eur","credit_limit":1000.5,"phone":"+49 30 1234567"}`, "X-Request-ID", "md-create"), 201, "create")
	c := r.json(t)
	id, _ := c["id"].(string)
	if id == "" || c["version"] != 1.0 || c["country"] != "DE" || c["currency"] != "EUR" || c["status"] != "active" ||
		c["credit_limit"] != 1000.5 || r.hdr.Get("ETag") != `"1"` || r.hdr.Get("Location") != "/api/"+h.name+"/customers/"+id {
		t.Fatalf("created: %v %v", c, r.hdr)
	}

	// Read it back with its ETag; If-None-Match with the same ETag is 304.
	r = h.want(h.call("GET", "/customers/"+id, tokA, ""), 200, "read")
	if got := r.json(t); got["name"] != "Acme GmbH" || got["email"] != "billing@acme.example" || got["credit_limit"] != 1000.5 ||
		got["version"] != float64(1) || got["id"] != id || r.hdr.Get("ETag") != `"1"` || r.hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("read: %v %v", got, r.hdr)
	}
	// The read path renders rows without reflection; it must say what create said.
	if got := r.json(t); !reflect.DeepEqual(got, c) {
		t.Fatalf("read differs from create:\n read   %v\n create %v", got, c)
	}
	h.want(h.call("GET", "/customers/"+id, tokA, "", "If-None-Match", `"1"`), 304, "conditional read")

	// Tenant B sees nothing of it: 404 (never 403), an empty list, and cannot change it.
	h.wantError(h.call("GET", "/customers/"+id, tokB, ""), 404, "not_found", "B reads A's customer")
	if items, next := h.page("/customers", tokB); len(items) != 0 || next != "" {
		t.Fatalf("B lists A's customers: %v", items)
	}
	h.wantError(h.call("PUT", "/customers/"+id, tokB, `{"name":"stolen"}`, "If-Match", `"1"`), 404, "not_found", "B updates A's customer")
	h.wantError(h.call("DELETE", "/customers/"+id, tokB, "", "If-Match", `"1"`), 404, "not_found", "B deletes A's customer")

	// Optimistic concurrency: no version 428, a stale one 409, the right one 200 and version+1.
	h.wantError(h.call("PUT", "/customers/"+id, tokA, `{"name":"Acme AG"}`), 428, "precondition_required", "update without If-Match")
	e := h.wantError(h.call("PUT", "/customers/"+id, tokA, `{"name":"Acme AG"}`, "If-Match", `"7"`), 409, "version_conflict", "stale update")
	if e["current_version"] != 1.0 {
		t.Fatalf("conflict body: %v", e)
	}
	r = h.want(h.call("PUT", "/customers/"+id, tokA, `{"name":"Acme AG","status":"blocked"}`, "If-Match", `"1"`, "X-Request-ID", "md-update"), 200, "update")
	if u := r.json(t); u["version"] != 2.0 || u["name"] != "Acme AG" || u["status"] != "blocked" || u["email"] != "billing@acme.example" || r.hdr.Get("ETag") != `"2"` {
		t.Fatalf("updated: %v %v", u, r.hdr)
	}
	h.wantError(h.call("PUT", "/customers/"+id, tokA, `{"name":"Late"}`, "If-Match", `"1"`), 409, "version_conflict", "second stale update")
	// The version may also travel in the body; an update that changes nothing keeps it.
	r = h.want(h.call("PUT", "/customers/"+id, tokA, `{"version":2,"name":"Acme AG"}`), 200, "no-op update")
	if u := r.json(t); u["version"] != 2.0 {
		t.Fatalf("no-op update changed the version: %v", u)
	}

	// Validation: every bad field is named, unknown fields too.
	e = h.wantError(h.call("POST", "/customers", tokA, `{"code":"","name":"  ","email":"not-an-email","country":"XX",
		"credit_limit":-5,"status":"gone","colour":"red"}`), 422, "validation_failed", "invalid create")
	fields, _ := e["fields"].(map[string]any)
	for _, f := range []string{"code", "name", "email", "country", "credit_limit", "status", "colour"} {
		if s, _ := fields[f].(string); s == "" {
			t.Errorf("validation: no message for %s in %v", f, fields)
		}
	}
	if fields["email"] != "must be a valid email address" {
		t.Errorf("email message: %v", fields["email"])
	}
	h.wantError(h.call("POST", "/customers", tokA, `{"code":"X"`), 400, "invalid_json", "broken JSON")
	h.wantError(h.call("PUT", "/customers/"+id, tokA, `{"email":"a@b"}`, "If-Match", `"2"`), 422, "validation_failed", "invalid update")

	// Codes are unique per tenant, ignoring case; another tenant may use the same code.
	e = h.wantError(h.call("POST", "/customers", tokA, `{"code":"c-001","name":"Other"}`), 409, "duplicate_code", "duplicate code")
	if f, _ := e["fields"].(map[string]any); f["code"] == nil {
		t.Fatalf("duplicate without a field message: %v", e)
	}
	idB, _ := h.want(h.call("POST", "/customers", tokB, `{"code":"C-001","name":"Beta Ltd","country":"GB"}`), 201, "B uses the same code").json(t)["id"].(string)

	// Search and filters.
	h.want(h.call("POST", "/customers", tokA, `{"code":"C-002","name":"Globex","email":"ap@globex.example","country":"US"}`), 201, "second customer")
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"?q=acme", []string{"C-001"}},
		{"?q=GLOBEX.EXAMPLE", []string{"C-002"}},
		{"?q=c-00", []string{"C-001", "C-002"}},
		{"?q=%25", nil}, // a literal %, not a wildcard
		{"?country=de", []string{"C-001"}},
		{"?status=blocked", []string{"C-001"}},
		{"?status=active&country=US", []string{"C-002"}},
		{"?sort=name", []string{"C-001", "C-002"}},
	} {
		items, _ := h.page("/customers"+tc.query, tokA)
		var codes []string
		for _, it := range items {
			codes = append(codes, it["code"].(string))
		}
		if !slices.Equal(codes, tc.want) {
			t.Errorf("list %s: %v, want %v", tc.query, codes, tc.want)
		}
	}
	e = h.wantError(h.call("GET", "/customers?status=zombie&colour=red&limit=0", tokA, ""), 400, "invalid_query", "bad list query")
	if f, _ := e["fields"].(map[string]any); f["status"] == nil || f["colour"] == nil || f["limit"] == nil {
		t.Fatalf("invalid query fields: %v", e)
	}

	// Permissions and authentication.
	reader := h.token("sa", "master-data.customer.read")
	h.want(h.call("GET", "/customers/"+id, reader, ""), 200, "reader reads")
	h.wantError(h.call("POST", "/customers", reader, `{"code":"R-1","name":"R"}`), 403, "forbidden", "reader writes")
	h.wantError(h.call("GET", "/customers", h.token("sa", "master-data.vendor.read"), ""), 403, "forbidden", "wrong entity's permission")
	h.wantError(h.call("GET", "/customers/"+id, "", ""), 401, "unauthenticated", "no token")

	// Soft delete: needs the version, then the row is gone from reads and lists, and its code is free.
	h.wantError(h.call("DELETE", "/customers/"+id, tokA, ""), 428, "precondition_required", "delete without If-Match")
	h.wantError(h.call("DELETE", "/customers/"+id, tokA, "", "If-Match", `"1"`), 409, "version_conflict", "stale delete")
	h.want(h.call("DELETE", "/customers/"+id, tokA, "", "If-Match", `W/"2"`, "X-Request-ID", "md-delete"), 204, "delete")
	h.wantError(h.call("GET", "/customers/"+id, tokA, ""), 404, "not_found", "read after delete")
	h.wantError(h.call("DELETE", "/customers/"+id, tokA, "", "If-Match", `"3"`), 404, "not_found", "second delete")
	if items, _ := h.page("/customers?q=acme", tokA); len(items) != 0 {
		t.Fatalf("list shows a deleted customer: %v", items)
	}
	h.want(h.call("POST", "/customers", tokA, `{"code":"C-001","name":"Acme Reborn"}`), 201, "reuse a deleted code")
	if r := h.want(h.call("GET", "/customers/"+idB, tokB, ""), 200, "B's own customer"); r.json(t)["name"] != "Beta Ltd" {
		t.Fatalf("B's customer: %s", r.body)
	}

	// Events: the change events and the audit records of A's customer went to the outbox
	// (with the commits), exactly one per change, none for refused requests.
	var changes, audits []mdEvent
	for _, ev := range h.outbox() {
		switch ev.Topic {
		case "master-data.customer":
			var p map[string]any
			json.Unmarshal(ev.Envelope.Payload, &p)
			if p["id"] == id {
				changes = append(changes, ev)
			}
		case "audit.events":
			var p map[string]any
			json.Unmarshal(ev.Envelope.Payload, &p)
			if p["resource"] == "customer/"+id {
				audits = append(audits, ev)
			}
		default:
			t.Errorf("unexpected topic %s", ev.Topic)
		}
	}
	if len(changes) != 3 || len(audits) != 3 {
		t.Fatalf("outbox: %d change events and %d audit records for %s, want 3 and 3", len(changes), len(audits), id)
	}
	for i, want := range []struct{ action, rid string }{{"created", "md-create"}, {"updated", "md-update"}, {"deleted", "md-delete"}} {
		ch, au := changes[i], audits[i]
		if ch.Type != "master-data.customer."+want.action || ch.Envelope.Type != ch.Type || ch.Envelope.Tenant != "tenant-a" ||
			ch.Envelope.Source != h.name || ch.Envelope.RequestID != want.rid {
			t.Errorf("change event %d: %s %+v", i, ch.Type, ch.Envelope)
		}
		var ent map[string]any
		json.Unmarshal(ch.Envelope.Payload, &ent)
		if ent["code"] != "C-001" || ent["version"] != float64(i+1) {
			t.Errorf("change event %d payload: %s", i, ch.Envelope.Payload)
		}
		if au.Type != "audit.record" || au.Envelope.Tenant != "tenant-a" {
			t.Errorf("audit event %d: %s %+v", i, au.Type, au.Envelope)
		}
		var rec struct {
			Action, Actor, Resource string
			RequestID               string `json:"request_id"`
			Detail                  map[string]any
		}
		if err := json.Unmarshal(au.Envelope.Payload, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Action != "customer."+want.action || rec.Actor != "user-sa" || rec.Resource != "customer/"+id || rec.RequestID != want.rid || rec.Detail == nil {
			t.Errorf("audit record %d: %s", i, au.Envelope.Payload)
		}
	}
	var upd struct {
		Detail struct{ Changes map[string]map[string]any }
	}
	if err := json.Unmarshal(audits[1].Envelope.Payload, &upd); err != nil {
		t.Fatal(err)
	}
	if ch := upd.Detail.Changes; ch["name"]["from"] != "Acme GmbH" || ch["name"]["to"] != "Acme AG" || ch["status"]["to"] != "blocked" || len(ch) != 2 {
		t.Errorf("audit detail of the update: %s", audits[1].Envelope.Payload)
	}

	// Business metrics and health.
	_, m, _ := do(t, "GET", h.base+"/plugins/"+h.name+"/metrics", "")
	for _, want := range []string{`master_data_changes_total{action="created",entity="customer"`, `master_data_rejections_total{entity="customer",reason="version_conflict"`} {
		if !strings.Contains(strings.ReplaceAll(m, `plugin="`+h.name+`",`, ""), want) {
			t.Errorf("metrics lack %s:\n%s", want, grep(m, "master_data"))
		}
	}
	if s, b, _ := do(t, "GET", h.base+"/readyz", ""); s != 200 || !strings.Contains(b, h.name) {
		t.Errorf("readyz: %d %s", s, b)
	}
}

func TestMasterDataPagination(t *testing.T) {
	h := startMasterData(t)
	tokA := h.token("sa", mdPerms("customer")...)
	tokB := h.token("sb", mdPerms("customer")...)
	const n = 120
	var ids []string
	for i := 0; i < n; i++ {
		// Names run backwards so that each sort order differs.
		body := fmt.Sprintf(`{"code":"P-%03d","name":"Name %03d"}`, i, n-1-i)
		ids = append(ids, h.want(h.call("POST", "/customers", tokA, body), 201, "create").json(t)["id"].(string))
	}
	for i := 0; i < 3; i++ {
		h.want(h.call("POST", "/customers", tokB, fmt.Sprintf(`{"code":"P-%03d","name":"B"}`, i)), 201, "create in B")
	}
	// A deleted row is skipped by every page.
	h.want(h.call("DELETE", "/customers/"+ids[60], tokA, "", "If-Match", `"1"`), 204, "delete")
	live := slices.Delete(slices.Clone(ids), 60, 61)

	readAll := func(query string, limit int) []string {
		var got []string
		cursor, pages := "", 0
		for {
			path := fmt.Sprintf("/customers?limit=%d%s", limit, query)
			if cursor != "" {
				path += "&cursor=" + cursor
			}
			items, next := h.page(path, tokA)
			pages++
			if len(items) > limit || next != "" && len(items) != limit {
				t.Fatalf("%s: page of %d with next %q", path, len(items), next)
			}
			for _, it := range items {
				got = append(got, it["id"].(string))
			}
			if next == "" {
				break
			}
			if pages > n {
				t.Fatal("pagination does not end")
			}
			cursor = next
		}
		if want := (len(live) + limit - 1) / limit; pages != want {
			t.Errorf("%s limit %d: %d pages, want %d", query, limit, pages, want)
		}
		return got
	}
	if got := readAll("", 25); !slices.Equal(got, live) {
		t.Fatalf("pages by creation: %d ids, want the %d live ones exactly once in creation order", len(got), len(live))
	}
	if got := readAll("&sort=code", 50); !slices.Equal(got, live) {
		t.Fatalf("pages by code: %d ids, not the live ones in code order", len(got))
	}
	reversed := slices.Clone(live)
	slices.Reverse(reversed)
	if got := readAll("&sort=name", 7); !slices.Equal(got, reversed) {
		t.Fatalf("pages by name: %d ids, not the live ones in name order", len(got))
	}
	// Default and maximum page sizes.
	if items, next := h.page("/customers", tokA); len(items) != 50 || next == "" {
		t.Fatalf("default page: %d items, next %q", len(items), next)
	}
	if items, next := h.page("/customers?limit=1000", tokA); len(items) != len(live) || next != "" {
		t.Fatalf("limit above the maximum: %d items, next %q", len(items), next)
	}
	// A cursor is tied to its sort order; garbage is refused.
	_, next := h.page("/customers?limit=10", tokA)
	h.wantError(h.call("GET", "/customers?sort=code&cursor="+next, tokA, ""), 400, "invalid_query", "cursor of another order")
	h.wantError(h.call("GET", "/customers?cursor=bm9wZQ", tokA, ""), 400, "invalid_query", "garbage cursor")
	// B's three rows are its own.
	if items, _ := h.page("/customers", tokB); len(items) != 3 {
		t.Fatalf("B lists %d customers, want 3", len(items))
	}
}

func TestMasterDataVendorsProductsAccounts(t *testing.T) {
	h := startMasterData(t)
	tok := h.token("sa", mdPerms("vendor", "product", "account")...)
	tokB := h.token("sb", mdPerms("account")...)

	// Vendors and products share the customers' behaviour; check their own fields.
	v := h.want(h.call("POST", "/vendors", tok, `{"code":"V-1","name":"Parts Inc","payment_terms_days":45,"country":"FR"}`), 201, "vendor").json(t)
	if v["payment_terms_days"] != 45.0 || v["status"] != "active" {
		t.Fatalf("vendor: %v", v)
	}
	e := h.wantError(h.call("POST", "/vendors", tok, `{"code":"V-2","name":"x","payment_terms_days":400}`), 422, "validation_failed", "vendor terms")
	if f, _ := e["fields"].(map[string]any); f["payment_terms_days"] != "must be an integer between 0 and 365" {
		t.Fatalf("vendor validation: %v", e)
	}
	p := h.want(h.call("POST", "/products", tok, `{"code":"SKU-1","name":"Bolt","price":"0.125","currency":"usd","category":"hardware"}`), 201, "product").json(t)
	if p["price"] != 0.125 || p["unit"] != "ea" || p["currency"] != "USD" {
		t.Fatalf("product: %v", p)
	}
	h.wantError(h.call("POST", "/products", tok, `{"code":"SKU-2","name":"Nut","price":1.00001}`), 422, "validation_failed", "price scale")
	if items, _ := h.page("/products?category=hardware", tok); len(items) != 1 {
		t.Fatalf("products by category: %v", items)
	}
	h.want(h.call("PUT", "/products/"+p["id"].(string), tok, `{"status":"discontinued"}`, "If-Match", `"1"`), 200, "product update")
	h.want(h.call("DELETE", "/vendors/"+v["id"].(string), tok, `{"version":1}`), 204, "vendor delete with a body version")

	// Accounts form a tree of one type per branch, inside one tenant.
	root := h.want(h.call("POST", "/accounts", tok, `{"code":"1000","name":"Assets","type":"asset"}`), 201, "root").json(t)
	rid := root["id"].(string)
	child := h.want(h.call("POST", "/accounts", tok, `{"code":"1100","name":"Cash","type":"asset","parent_id":"`+rid+`"}`), 201, "child").json(t)
	cid := child["id"].(string)
	for _, tc := range []struct{ what, method, path, body, field string }{
		{"parent of another type", "POST", "/accounts", `{"code":"4000","name":"Sales","type":"revenue","parent_id":"` + rid + `"}`, "parent_id"},
		{"unknown parent", "POST", "/accounts", `{"code":"1200","name":"Bank","type":"asset","parent_id":"00000000-0000-4000-8000-000000000000"}`, "parent_id"},
		{"cycle", "PUT", "/accounts/" + rid, `{"parent_id":"` + cid + `"}`, "parent_id"},
		{"own parent", "PUT", "/accounts/" + rid, `{"parent_id":"` + rid + `"}`, "parent_id"},
		{"type against sub-accounts", "PUT", "/accounts/" + rid, `{"type":"expense"}`, "type"},
		{"missing type", "POST", "/accounts", `{"code":"9","name":"x"}`, "type"},
	} {
		e := h.wantError(h.call(tc.method, tc.path, tok, tc.body, "If-Match", `"1"`), 422, "validation_failed", tc.what)
		if f, _ := e["fields"].(map[string]any); f[tc.field] == nil {
			t.Errorf("%s: %v, want a message for %s", tc.what, e, tc.field)
		}
	}
	// Tenant B cannot hang its accounts under A's.
	e = h.wantError(h.call("POST", "/accounts", tokB, `{"code":"1100","name":"Cash","type":"asset","parent_id":"`+rid+`"}`), 422, "validation_failed", "B uses A's parent")
	if f, _ := e["fields"].(map[string]any); f["parent_id"] != "must be the id of an existing account" {
		t.Fatalf("B's parent: %v", e)
	}
	if items, _ := h.page("/accounts?parent_id="+rid, tok); len(items) != 1 || items[0]["id"] != cid {
		t.Fatalf("children of root: %v", items)
	}
	h.wantError(h.call("DELETE", "/accounts/"+rid, tok, "", "If-Match", `"1"`), 409, "has_sub_accounts", "delete a parent")
	h.want(h.call("GET", "/accounts/"+rid, tok, ""), 200, "parent survives the refused delete")
	h.want(h.call("DELETE", "/accounts/"+cid, tok, "", "If-Match", `"1"`), 204, "delete the child")
	h.want(h.call("DELETE", "/accounts/"+rid, tok, "", "If-Match", `"1"`), 204, "delete the parent")

	// Concurrent writers: of ten updates from the same version exactly one wins, and of
	// ten creates with the same code exactly one succeeds; the others get 409.
	pid := p["id"].(string)
	race := func(what string, send func(i int) mdResp) {
		var wg sync.WaitGroup
		statuses := make([]int, 10)
		for i := range statuses {
			wg.Add(1)
			go func() { defer wg.Done(); statuses[i] = send(i).status }()
		}
		wg.Wait()
		slices.Sort(statuses)
		if statuses[0] != 200 && statuses[0] != 201 || statuses[1] != 409 || statuses[9] != 409 {
			t.Errorf("%s: statuses %v, want one success and nine 409", what, statuses)
		}
	}
	race("concurrent updates", func(i int) mdResp {
		return h.call("PUT", "/products/"+pid, tok, fmt.Sprintf(`{"name":"Bolt %d"}`, i), "If-Match", `"2"`)
	})
	race("concurrent creates", func(i int) mdResp {
		return h.call("POST", "/products", tok, fmt.Sprintf(`{"code":"SKU-RACE","name":"Racer %d"}`, i))
	})

	var types []string
	for _, ev := range h.outbox() {
		if ev.Topic != "audit.events" {
			types = append(types, ev.Type)
		}
	}
	want := []string{"master-data.vendor.created", "master-data.product.created", "master-data.product.updated", "master-data.vendor.deleted",
		"master-data.account.created", "master-data.account.created", "master-data.account.deleted", "master-data.account.deleted",
		"master-data.product.updated", "master-data.product.created"}
	if !slices.Equal(types, want) {
		t.Fatalf("change events %v, want %v", types, want)
	}
}
