package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keelhq/keel/bridges/postgres/pgtest"
	"github.com/keelhq/keel/host/internal/authn"
	"github.com/keelhq/keel/host/internal/testkit"
)

// platform drives the first business services end to end, through HTTP only.
type platform struct {
	t    *testing.T
	base string
}

func (p *platform) call(method, path, tenant, token, requestID string, body any) (int, map[string]any, http.Header) {
	p.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, p.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if tenant != "" {
		req.Header.Set("X-Tenant-ID", tenant)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if requestID != "" {
		req.Header.Set("X-Request-ID", requestID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var v map[string]any
	_ = json.Unmarshal(raw, &v)
	if v == nil {
		v = map[string]any{"_raw": string(raw)}
	}
	return resp.StatusCode, v, resp.Header
}

func (p *platform) login(tenant, email, password string) (access, refresh string) {
	p.t.Helper()
	st, v, _ := p.call("POST", "/api/auth/login", tenant, "", "", map[string]string{"email": email, "password": password})
	if st != 200 {
		p.t.Fatalf("login %s/%s: %d %v", tenant, email, st, v)
	}
	return v["access_token"].(string), v["refresh_token"].(string)
}

func TestPlatformEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	ctx := context.Background()
	// Roles are per cluster; drop the platform plugins' roles after the database.
	t.Cleanup(func() {
		if c, err := pgx.Connect(context.Background(), pgtest.AdminURL()); err == nil {
			c.Exec(context.Background(), `DROP ROLE IF EXISTS keel_plg_master_data`)
			c.Exec(context.Background(), `DROP ROLE IF EXISTS keel_plg_audit`)
			c.Close(context.Background())
		}
	})
	url := database(t, "keel_plg_auth")
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	t.Setenv("KEEL_PLUGIN_AUTH_SIGNING_SEED", base64.StdEncoding.EncodeToString(priv.Seed()))
	dir := t.TempDir()
	for _, p := range []string{"plugins/auth", "plugins/master-data", "plugins/audit"} {
		testkit.AddPlugin(t, dir, p, nil)
	}
	_, base := startIn(t, dir, "--database-url", url, "--jwt-public-key", base64.StdEncoding.EncodeToString(pub))
	p := &platform{t: t, base: base}

	// Bootstrap two tenants and log in as their administrators.
	for _, tenant := range []string{"tenant-a", "tenant-b"} {
		if st, v, _ := p.call("POST", "/api/auth/bootstrap", tenant, "", "", map[string]string{"email": "admin@" + tenant + ".test", "password": "correct horse battery"}); st != 201 {
			t.Fatalf("bootstrap %s: %d %v", tenant, st, v)
		}
	}
	adminA, _ := p.login("tenant-a", "admin@tenant-a.test", "correct horse battery")
	adminB, _ := p.login("tenant-b", "admin@tenant-b.test", "correct horse battery")

	// A creates a customer; B can neither read nor list it: 404, not 403.
	st, cust, hdr := p.call("POST", "/api/master-data/customers", "", adminA, "req-create-1", map[string]string{"code": "C-100", "name": "Ada Lovelace", "email": "ada@example.com"})
	if st != 201 {
		t.Fatalf("create customer: %d %v", st, cust)
	}
	id := cust["id"].(string)
	if st, v, _ := p.call("GET", "/api/master-data/customers/"+id, "", adminB, "", nil); st != 404 {
		t.Fatalf("tenant B reading A's customer: %d %v (want 404)", st, v)
	}
	if st, v, _ := p.call("GET", "/api/master-data/customers", "", adminB, "", nil); st != 200 || len(v["items"].([]any)) != 0 {
		t.Fatalf("tenant B listing: %d %v", st, v)
	}
	// GET by id is served from the route's declared lookup (manifest prefetch), run by
	// the host for the caller's tenant before the call: A reads its customer, B's 404
	// above came through it too, and an id PostgreSQL refuses leaves the lookup out
	// (the handler answers 404 itself).
	if st, v, h := p.call("GET", "/api/master-data/customers/"+id, "", adminA, "", nil); st != 200 || v["id"] != id || v["name"] != "Ada Lovelace" || h.Get("ETag") != `"1"` {
		t.Fatalf("tenant A reading its customer: %d %v %v", st, v, h)
	}
	if st, v, _ := p.call("GET", "/api/master-data/customers/not-a-uuid", "", adminA, "", nil); st != 404 {
		t.Fatalf("malformed id: %d %v", st, v)
	}
	_, metrics, _ := do(t, "GET", base+"/metrics", "")
	if !strings.Contains(metrics, `keel_plugin_prefetch_total{outcome="ok",plugin="master-data"}`) ||
		!strings.Contains(metrics, `keel_plugin_prefetch_total{outcome="failed",plugin="master-data"}`) {
		t.Fatalf("prefetch counters missing:\n%s", grep(metrics, "prefetch"))
	}
	etag := hdr.Get("ETag")
	// The current version updates; the same version again is stale: 409.
	req, _ := http.NewRequest("PUT", base+"/api/master-data/customers/"+id, strings.NewReader(`{"name":"Ada King"}`))
	req.Header.Set("Authorization", "Bearer "+adminA)
	req.Header.Set("If-Match", etag)
	req.Header.Set("X-Request-ID", "req-update-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("update with %s: %v %v", etag, resp, err)
	}
	resp.Body.Close()
	if st, v, _ := p.call("PUT", "/api/master-data/customers/"+id, "", adminA, "", map[string]any{"name": "Stale", "version": 1}); st != 409 {
		t.Fatalf("stale update: %d %v, want 409", st, v)
	}

	// A's audit trail shows the create and the update with actor and request id.
	_, me, _ := p.call("GET", "/api/auth/me", "", adminA, "", nil)
	actor := me["id"]
	var records []any
	defer func() {
		if t.Failed() {
			_, all, _ := p.call("GET", "/api/audit/records", "", adminA, "", nil)
			t.Logf("all audit records of A: %v", all)
			_, m, _ := do(t, "GET", base+"/metrics", "")
			t.Logf("bus metrics:\n%s", grep(m, "keel_bus_"))
			t.Logf("outbox: %s", grep(m, "keel_outbox"))
		}
	}()
	testkit.WaitFor(t, 30*time.Second, "the audit trail to show the create and the update", func() bool {
		_, v, _ := p.call("GET", "/api/audit/records?resource=customer/"+id, "", adminA, "", nil)
		records, _ = v["records"].([]any)
		return len(records) >= 2
	})
	seen := map[string]bool{}
	for _, r := range records {
		rec := r.(map[string]any)
		if rec["actor"] != actor {
			t.Errorf("audit record actor %v, want %v: %v", rec["actor"], actor, rec)
		}
		seen[rec["action"].(string)+" "+rec["request_id"].(string)] = true
	}
	if !seen["customer.created req-create-1"] || !seen["customer.updated req-update-1"] {
		t.Fatalf("audit records: %v", records)
	}
	if st, v, _ := p.call("GET", "/api/audit/records?resource=customer/"+id, "", adminB, "", nil); st != 200 || len(v["records"].([]any)) != 0 {
		t.Fatalf("tenant B sees A's audit records: %d %v", st, v)
	}
	if st, v, _ := p.call("GET", "/api/audit/verify", "", adminA, "", nil); st != 200 || v["valid"] != true {
		t.Fatalf("verify: %d %v", st, v)
	}

	// Bad tokens: 401.
	_, forger, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	claims := func(mod map[string]any) map[string]any {
		c := map[string]any{"iss": authn.Issuer, "aud": authn.Audience, "sub": actor, "tid": "tenant-a", "sid": "s", "jti": "j",
			"perms": []string{"master-data.customer.read"}, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}
		for k, v := range mod {
			c[k] = v
		}
		return c
	}
	hdrJWT := map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": authn.KeyID(pub)}
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString(func() []byte { b, _ := json.Marshal(claims(nil)); return b }()) + "."
	for name, tok := range map[string]string{
		"forged":         jwt(forger, hdrJWT, claims(nil)),
		"expired":        jwt(priv, hdrJWT, claims(map[string]any{"exp": now.Add(-time.Hour).Unix()})),
		"alg none":       none,
		"wrong audience": jwt(priv, hdrJWT, claims(map[string]any{"aud": "elsewhere"})),
	} {
		if st, v, _ := p.call("GET", "/api/master-data/customers/"+id, "", tok, "", nil); st != 401 {
			t.Errorf("%s token: %d %v, want 401", name, st, v)
		}
	}

	// A user without the permission: 403.
	if st, v, _ := p.call("POST", "/api/auth/users", "", adminA, "", map[string]string{"email": "clerk@tenant-a.test", "password": "another long secret"}); st != 201 {
		t.Fatalf("create user: %d %v", st, v)
	}
	clerk, clerkRefresh := p.login("tenant-a", "clerk@tenant-a.test", "another long secret")
	if st, v, _ := p.call("GET", "/api/master-data/customers/"+id, "", clerk, "", nil); st != 403 {
		t.Fatalf("user without master-data.customer.read: %d %v, want 403", st, v)
	}

	// A reused refresh token revokes the session: its access tokens stop working.
	st, rotated, _ := p.call("POST", "/api/auth/refresh", "tenant-a", "", "", map[string]string{"refresh_token": clerkRefresh})
	if st != 200 {
		t.Fatalf("refresh: %d %v", st, rotated)
	}
	newAccess := rotated["access_token"].(string)
	if st, v, _ := p.call("GET", "/api/auth/me", "", newAccess, "", nil); st != 200 {
		t.Fatalf("me with the refreshed token: %d %v", st, v)
	}
	if st, v, _ := p.call("POST", "/api/auth/refresh", "tenant-a", "", "", map[string]string{"refresh_token": clerkRefresh}); st != 401 {
		t.Fatalf("reused refresh token: %d %v, want 401", st, v)
	}
	testkit.WaitFor(t, 15*time.Second, "the session to be revoked for the gateway", func() bool {
		st, _, _ := p.call("GET", "/api/auth/me", "", newAccess, "", nil)
		return st == 401
	})
	if st, v, _ := p.call("POST", "/api/auth/refresh", "tenant-a", "", "", map[string]string{"refresh_token": rotated["refresh_token"].(string)}); st != 401 {
		t.Fatalf("the newest refresh token of a revoked session: %d %v, want 401", st, v)
	}
	_ = ctx
}
