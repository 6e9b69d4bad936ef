package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/abi/wire"
	"github.com/keelhq/keel/bridges/postgres/pgtest"
	"github.com/keelhq/keel/host/internal/runtime"
	"github.com/keelhq/keel/host/internal/testkit"
)

// authEnv is a host running plugins/auth (under a unique name, so concurrent test runs
// do not share its role) against a throwaway database.
type authEnv struct {
	base, name, schema string
	pub                ed25519.PublicKey
	plugin             *runtime.Plugin
	db                 *pgx.Conn // privileged, like the host's session check
}

// startAuth starts the host; settings are extra plugin settings (key → value), passed
// through the environment as KEEL_PLUGIN_<NAME>_<KEY>.
func startAuth(t *testing.T, settings map[string]string) *authEnv {
	t.Helper()
	name := "auth-" + pgtest.RandomSuffix(6)
	under := strings.ReplaceAll(name, "-", "_")
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		t.Fatal(err)
	}
	// KEEL_PLUGIN_AUTH_SIGNING_SEED for the plugin named "auth".
	t.Setenv("KEEL_PLUGIN_"+strings.ToUpper(under)+"_SIGNING_SEED", base64.StdEncoding.EncodeToString(seed))
	for k, v := range settings {
		t.Setenv("KEEL_PLUGIN_"+strings.ToUpper(under)+"_"+strings.ToUpper(k), v)
	}
	url := database(t, "keel_plg_"+under)
	dir := t.TempDir()
	testkit.AddPlugin(t, dir, "plugins/auth", func(m *manifest.Manifest) { m.Name = name }) // with migrations/auth
	s, base := startIn(t, dir, "--database-url", url)
	gen := s.Plugins().Lookup(name)
	if gen == nil {
		t.Fatalf("plugin %s did not activate", name)
	}
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return &authEnv{base: base, name: name, schema: "plg_" + under,
		pub: ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey), plugin: gen.Plugin, db: conn}
}

// post sends a JSON request through the gateway as the given tenant.
func (e *authEnv) post(t *testing.T, path, tenant, body string, header ...string) (int, map[string]any) {
	t.Helper()
	status, b := e.http(t, "POST", path, tenant, body, header...)
	var v map[string]any
	if b != "" {
		if err := json.Unmarshal([]byte(b), &v); err != nil {
			t.Fatalf("POST %s: %d, body is not JSON: %q", path, status, b)
		}
	}
	return status, v
}

// http sends a request through the gateway; header holds name, value pairs.
func (e *authEnv) http(t *testing.T, method, path, tenant, body string, header ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, e.base+"/api/"+e.name+path, strings.NewReader(body))
	if tenant != "" {
		req.Header.Set("X-Tenant-ID", tenant)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// caller is the identity the gateway would pass for a verified access token.
type caller struct {
	tenant, user, session string
	perms                 []string
}

// call invokes a route through the runtime with an authenticated call context, as the
// gateway does after verifying a token.
func (e *authEnv) call(t *testing.T, who caller, method, route string, params map[string]string, body string) (int, map[string]any) {
	t.Helper()
	path := route
	var kv []wire.KV
	for k, v := range params {
		path = strings.ReplaceAll(path, ":"+k, v)
		kv = append(kv, wire.KV{Name: k, Value: v})
	}
	resp, err := e.plugin.HTTP(context.Background(), &wire.HTTPRequest{Method: method, Path: path, Route: route, Params: kv, Body: []byte(body),
		Ctx: wire.CallContext{RequestID: "rt-" + pgtest.RandomSuffix(8), Tenant: who.tenant, Subject: who.user, Session: who.session, Permissions: who.perms}}, nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, route, err)
	}
	var v map[string]any
	if len(resp.Body) > 0 {
		if err := json.Unmarshal(resp.Body, &v); err != nil {
			t.Fatalf("%s %s: %d, body is not JSON: %q", method, route, resp.Status, resp.Body)
		}
	}
	return resp.Status, v
}

// sessionValid runs the host's revocation check from the token contract.
func (e *authEnv) sessionValid(t *testing.T, sid string) bool {
	t.Helper()
	var ok bool
	err := e.db.QueryRow(context.Background(), `SELECT revoked_at IS NULL AND expires_at > now() FROM `+e.schema+`.sessions WHERE id = $1`, sid).Scan(&ok)
	if err != nil {
		t.Fatalf("session check for %s: %v", sid, err)
	}
	return ok
}

// auditEvents returns the envelopes published on audit.events, oldest first.
func (e *authEnv) auditEvents(t *testing.T) []map[string]any {
	t.Helper()
	rows, err := e.db.Query(context.Background(), `SELECT payload FROM keel_host.outbox WHERE topic = 'audit.events' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, b := range bs {
		var env map[string]any
		if err := json.Unmarshal(b, &env); err != nil {
			t.Fatalf("outbox payload is not a JSON envelope: %q", b)
		}
		out = append(out, env)
	}
	return out
}

func findEvent(evs []map[string]any, typ string, match func(p map[string]any) bool) map[string]any {
	for _, ev := range evs {
		p, _ := ev["payload"].(map[string]any)
		if ev["type"] == typ && p != nil && (match == nil || match(p)) {
			return ev
		}
	}
	return nil
}

type claims struct {
	Iss   string   `json:"iss"`
	Aud   string   `json:"aud"`
	Sub   string   `json:"sub"`
	Tid   string   `json:"tid"`
	Sid   string   `json:"sid"`
	Jti   string   `json:"jti"`
	Perms []string `json:"perms"`
	Iat   int64    `json:"iat"`
	Nbf   int64    `json:"nbf"`
	Exp   int64    `json:"exp"`
}

// verifyAccess checks an access token against the contract with the public key alone.
func verifyAccess(t *testing.T, pub ed25519.PublicKey, tok, tenant, user string) claims {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("access token has %d parts", len(parts))
	}
	for _, p := range parts {
		if strings.ContainsAny(p, "=+/") {
			t.Fatalf("token part %q is not unpadded base64url", p)
		}
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !ed25519.Verify(pub, []byte(parts[0]+"."+parts[1]), sig) {
		t.Fatalf("access token signature does not verify with the public key (%v)", err)
	}
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	var hdr map[string]any
	if err := json.Unmarshal(hb, &hdr); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(pub)
	if want := map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": hex.EncodeToString(sum[:])[:16]}; fmt.Sprint(hdr) != fmt.Sprint(want) {
		t.Fatalf("header %v, want %v", hdr, want)
	}
	cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(cb, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"iss", "aud", "sub", "tid", "sid", "jti", "perms", "iat", "nbf", "exp"} {
		if _, ok := raw[k]; !ok {
			t.Fatalf("claim %s missing from %s", k, cb)
		}
	}
	var c claims
	if err := json.Unmarshal(cb, &c); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	switch {
	case c.Iss != "keel-auth" || c.Aud != "keel":
		t.Fatalf("iss/aud %q/%q", c.Iss, c.Aud)
	case c.Sub != user || c.Tid != tenant:
		t.Fatalf("sub/tid %q/%q, want %q/%q", c.Sub, c.Tid, user, tenant)
	case len(c.Sid) < 32 || len(c.Jti) < 32:
		t.Fatalf("sid %q / jti %q: want 128-bit random ids", c.Sid, c.Jti)
	case c.Iat < now-60 || c.Iat > now+5 || c.Nbf != c.Iat:
		t.Fatalf("iat %d, nbf %d, now %d", c.Iat, c.Nbf, now)
	case c.Exp-c.Iat != 600:
		t.Fatalf("exp - iat = %d, want 600 (10 minutes)", c.Exp-c.Iat)
	}
	return c
}

func str(v map[string]any, k string) string { s, _ := v[k].(string); return s }

func errCode(v map[string]any) string {
	e, _ := v["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func TestAuthPluginEndToEnd(t *testing.T) {
	e := startAuth(t, nil)
	const tenant = "acme"
	pw := "correct horse battery staple"

	// Bootstrap: first tenant and its administrator; a second bootstrap is refused.
	status, boot := e.post(t, "/bootstrap", tenant, `{"tenant":"acme","email":"Admin@Acme.test","password":"`+pw+`","name":"Ada"}`)
	if status != 201 {
		t.Fatalf("bootstrap: %d %v", status, boot)
	}
	admin := str(boot, "user_id")
	if status, v := e.post(t, "/bootstrap", tenant, `{"email":"other@acme.test","password":"`+pw+`"}`); status != 409 || errCode(v) != "tenant_exists" {
		t.Fatalf("second bootstrap: %d %v, want 409", status, v)
	}
	if status, v := e.post(t, "/bootstrap", "", `{"tenant":"x","email":"a@x.test","password":"`+pw+`"}`); status != 400 || errCode(v) != "tenant_required" {
		t.Fatalf("bootstrap without X-Tenant-ID: %d %v", status, v)
	}
	if status, v := e.post(t, "/bootstrap", "globex", `{"tenant":"acme","email":"a@x.test","password":"`+pw+`"}`); status != 400 || errCode(v) != "tenant_mismatch" {
		t.Fatalf("bootstrap with a body tenant differing from the header: %d %v", status, v)
	}

	// Login: tokens; the access token verifies with the public key and carries every claim.
	start := time.Now()
	status, tok := e.post(t, "/login", tenant, `{"email":"admin@acme.test","password":"`+pw+`"}`)
	loginTime := time.Since(start)
	if status != 200 || str(tok, "token_type") != "Bearer" || tok["expires_in"] != float64(600) || str(tok, "refresh_token") == "" {
		t.Fatalf("login: %d %v", status, tok)
	}
	// Login latency through the gateway (bcrypt at the configured cost dominates it).
	times := []time.Duration{loginTime}
	for range 4 {
		start := time.Now()
		if status, v := e.post(t, "/login", tenant, `{"email":"admin@acme.test","password":"`+pw+`"}`); status != 200 {
			t.Fatalf("login: %d %v", status, v)
		}
		times = append(times, time.Since(start))
	}
	slices.Sort(times)
	t.Logf("login through the gateway: min %s, median %s, max %s (5 logins)", times[0], times[2], times[4])
	c1 := verifyAccess(t, e.pub, str(tok, "access_token"), tenant, admin)
	for _, p := range []string{"auth.users.read", "auth.users.write", "auth.roles.read", "auth.roles.write", "auth.roles.assign", "auth.roles.escalate", "master-data.customer.write", "audit.read"} {
		if !slices.Contains(c1.Perms, p) {
			t.Errorf("admin token lacks %s: %v", p, c1.Perms)
		}
	}
	for _, p := range c1.Perms {
		if strings.Contains(p, "*") {
			t.Errorf("wildcard permission %q", p)
		}
	}
	if !e.sessionValid(t, c1.Sid) {
		t.Fatal("fresh session is not valid for the host's check")
	}
	// The published key matches.
	if status, body := e.http(t, "GET", "/keys", "", ""); status != 200 || !strings.Contains(body, base64.StdEncoding.EncodeToString(e.pub)) {
		t.Fatalf("GET /keys: %d %s", status, body)
	}

	// Refresh rotates: a new pair for the same session; the old refresh token is spent.
	r1 := str(tok, "refresh_token")
	status, tok2 := e.post(t, "/refresh", tenant, `{"refresh_token":"`+r1+`"}`)
	if status != 200 {
		t.Fatalf("refresh: %d %v", status, tok2)
	}
	r2 := str(tok2, "refresh_token")
	c2 := verifyAccess(t, e.pub, str(tok2, "access_token"), tenant, admin)
	if r2 == r1 || c2.Sid != c1.Sid || c2.Jti == c1.Jti {
		t.Fatalf("refresh did not rotate: r2==r1 %v, sid %s→%s, jti %s→%s", r2 == r1, c1.Sid, c2.Sid, c1.Jti, c2.Jti)
	}
	if !e.sessionValid(t, c1.Sid) {
		t.Fatal("session invalid after an ordinary refresh")
	}
	var stored int
	if err := e.db.QueryRow(context.Background(), `SELECT count(*) FROM `+e.schema+`.refresh_tokens WHERE token_hash IN ($1, $2)`, r1, r2).Scan(&stored); err != nil || stored != 0 {
		t.Fatalf("refresh tokens stored in clear: %d %v", stored, err)
	}
	// Reuse of the spent token: refused, and the whole family with it.
	if status, v := e.post(t, "/refresh", tenant, `{"refresh_token":"`+r1+`"}`); status != 401 || errCode(v) != "invalid_refresh_token" {
		t.Fatalf("reused refresh token: %d %v, want 401", status, v)
	}
	if status, v := e.post(t, "/refresh", tenant, `{"refresh_token":"`+r2+`"}`); status != 401 {
		t.Fatalf("refresh with the newest token of a revoked family: %d %v, want 401", status, v)
	}
	// The revocation must reach the database, where the gateway checks sessions. This needs
	// the host to commit the work of a 401 answer (see plugins/auth/README.md, Known gaps).
	if e.sessionValid(t, c1.Sid) {
		t.Errorf("KNOWN GAP: after refresh-token reuse the session is still valid for the host's check: " +
			"the plugin revoked it, but the host rolled the revocation back because the answer is a 401")
	}
	if status, v := e.post(t, "/refresh", tenant, `{"refresh_token":"rt_unknown"}`); status != 401 {
		t.Fatalf("unknown refresh token: %d %v", status, v)
	}

	// Logout revokes the caller's session.
	status, tok3 := e.post(t, "/login", tenant, `{"email":"admin@acme.test","password":"`+pw+`"}`)
	if status != 200 {
		t.Fatalf("login: %d %v", status, tok3)
	}
	c3 := verifyAccess(t, e.pub, str(tok3, "access_token"), tenant, admin)
	if c3.Sid == c1.Sid {
		t.Fatal("a new login reused the session id")
	}
	adminCaller := caller{tenant: tenant, user: admin, session: c3.Sid, perms: c3.Perms}
	if status, v := e.call(t, adminCaller, "GET", "/me", nil, ""); status != 200 || str(v, "id") != admin || str(v, "email") != "admin@acme.test" {
		t.Fatalf("GET /me: %d %v", status, v)
	}
	if status, v := e.call(t, adminCaller, "POST", "/logout", nil, ""); status != 204 {
		t.Fatalf("logout: %d %v", status, v)
	}
	if e.sessionValid(t, c3.Sid) {
		t.Fatal("session still valid after logout")
	}
	if status, v := e.post(t, "/refresh", tenant, `{"refresh_token":"`+str(tok3, "refresh_token")+`"}`); status != 401 {
		t.Fatalf("refresh after logout: %d %v", status, v)
	}
	if status, v := e.call(t, adminCaller, "GET", "/me", nil, ""); status != 401 || errCode(v) != "session_revoked" {
		t.Fatalf("GET /me after logout: %d %v", status, v)
	}

	// Wrong credentials: one generic 401 for a wrong password and an unknown email.
	for _, body := range []string{`{"email":"admin@acme.test","password":"wrong password!"}`, `{"email":"nobody@acme.test","password":"` + pw + `"}`} {
		status, v := e.post(t, "/login", tenant, body)
		apiErr, _ := v["error"].(map[string]any)
		if status != 401 || apiErr["code"] != "invalid_credentials" || apiErr["message"] != "invalid email or password" {
			t.Fatalf("bad login %s: %d %v", body, status, v)
		}
	}
	// Another tenant does not know acme's users.
	if status, v := e.post(t, "/login", "globex", `{"email":"admin@acme.test","password":"`+pw+`"}`); status != 401 {
		t.Fatalf("acme's admin logging in to globex: %d %v", status, v)
	}

	// Users and roles, through the runtime with a verified identity.
	s4, tok4 := e.post(t, "/login", tenant, `{"email":"admin@acme.test","password":"`+pw+`"}`)
	if s4 != 200 {
		t.Fatalf("login: %d %v", s4, tok4)
	}
	c4 := verifyAccess(t, e.pub, str(tok4, "access_token"), tenant, admin)
	adminCaller = caller{tenant: tenant, user: admin, session: c4.Sid, perms: c4.Perms}
	status, u := e.call(t, adminCaller, "POST", "/users", nil, `{"email":"bob@acme.test","password":"bob's password","name":"Bob"}`)
	if status != 201 {
		t.Fatalf("create user: %d %v", status, u)
	}
	bob := str(u, "id")
	if status, v := e.call(t, adminCaller, "POST", "/users", nil, `{"email":" BOB@acme.test ","password":"another password"}`); status != 409 || errCode(v) != "email_taken" {
		t.Fatalf("duplicate email: %d %v, want 409", status, v)
	}
	if status, v := e.call(t, adminCaller, "POST", "/users", nil, `{"email":"not-an-email","password":"long enough"}`); status != 400 {
		t.Fatalf("invalid email: %d %v", status, v)
	}
	if status, v := e.call(t, adminCaller, "POST", "/users", nil, `{"email":"c@acme.test","password":"short"}`); status != 400 || errCode(v) != "invalid_password" {
		t.Fatalf("short password: %d %v", status, v)
	}
	status, role := e.call(t, adminCaller, "POST", "/roles", nil, `{"name":"clerk","permissions":["master-data.customer.read","auth.users.read"]}`)
	if status != 201 {
		t.Fatalf("create role: %d %v", status, role)
	}
	if status, v := e.call(t, adminCaller, "POST", "/roles", nil, `{"name":"clerk","permissions":[]}`); status != 409 {
		t.Fatalf("duplicate role: %d %v", status, v)
	}
	if status, v := e.call(t, adminCaller, "POST", "/roles", nil, `{"name":"bad","permissions":["master-data.*"]}`); status != 400 {
		t.Fatalf("wildcard permission accepted: %d %v", status, v)
	}
	if status, v := e.call(t, adminCaller, "PUT", "/users/:id/roles", map[string]string{"id": bob}, `{"roles":["clerk"]}`); status != 200 {
		t.Fatalf("assign roles: %d %v", status, v)
	}
	if status, v := e.call(t, adminCaller, "PUT", "/users/:id/roles", map[string]string{"id": bob}, `{"roles":["nope"]}`); status != 400 {
		t.Fatalf("unknown role: %d %v", status, v)
	}
	status, users := e.call(t, adminCaller, "GET", "/users", nil, "")
	if status != 200 || !strings.Contains(fmt.Sprint(users["items"]), "bob@acme.test") || !strings.Contains(fmt.Sprint(users["items"]), "clerk") {
		t.Fatalf("list users: %d %v", status, users)
	}
	status, bobTok := e.post(t, "/login", tenant, `{"email":"bob@acme.test","password":"bob's password"}`)
	if status != 200 {
		t.Fatalf("bob's login: %d %v", status, bobTok)
	}
	cb := verifyAccess(t, e.pub, str(bobTok, "access_token"), tenant, bob)
	if fmt.Sprint(cb.Perms) != "[auth.users.read master-data.customer.read]" {
		t.Fatalf("bob's permissions %v", cb.Perms)
	}
	bobCaller := caller{tenant: tenant, user: bob, session: cb.Sid, perms: cb.Perms}
	// The plugin's own permission check: no auth.users.write → 403, whatever the gateway did.
	if status, v := e.call(t, bobCaller, "POST", "/users", nil, `{"email":"eve@acme.test","password":"eve's password"}`); status != 403 || errCode(v) != "forbidden" {
		t.Fatalf("create user without auth.users.write: %d %v, want 403", status, v)
	}
	if status, v := e.call(t, bobCaller, "GET", "/users", nil, ""); status != 200 {
		t.Fatalf("bob lists users with auth.users.read: %d %v", status, v)
	}
	// No privilege escalation: granting what one does not hold needs auth.roles.escalate.
	roleWriter := caller{tenant: tenant, user: bob, session: cb.Sid, perms: []string{"auth.roles.write", "auth.users.read"}}
	if status, v := e.call(t, roleWriter, "POST", "/roles", nil, `{"name":"boss","permissions":["auth.users.write"]}`); status != 403 || errCode(v) != "escalation_refused" {
		t.Fatalf("escalating role: %d %v, want 403", status, v)
	}
	// Protected routes through the gateway need a token.
	if status, body := e.http(t, "GET", "/users", tenant, ""); status != 401 {
		t.Fatalf("GET /users without a token through the gateway: %d %s", status, body)
	}

	// Password change: the current password is checked; other sessions are revoked.
	if status, v := e.call(t, bobCaller, "POST", "/password", nil, `{"old_password":"not it at all","new_password":"bob's new password"}`); status != 403 {
		t.Fatalf("password change with a wrong old password: %d %v", status, v)
	}
	_, other := e.post(t, "/login", tenant, `{"email":"bob@acme.test","password":"bob's password"}`)
	co := verifyAccess(t, e.pub, str(other, "access_token"), tenant, bob)
	if status, v := e.call(t, bobCaller, "POST", "/password", nil, `{"old_password":"bob's password","new_password":"bob's new password"}`); status != 200 || v["revoked_sessions"] != float64(1) {
		t.Fatalf("password change: %d %v", status, v)
	}
	if e.sessionValid(t, co.Sid) || !e.sessionValid(t, cb.Sid) {
		t.Fatalf("after the password change: other session valid %v (want false), own session valid %v (want true)", e.sessionValid(t, co.Sid), e.sessionValid(t, cb.Sid))
	}
	if status, _ := e.post(t, "/login", tenant, `{"email":"bob@acme.test","password":"bob's password"}`); status != 401 {
		t.Fatalf("login with the old password: %d", status)
	}
	if status, v := e.post(t, "/login", tenant, `{"email":"bob@acme.test","password":"bob's new password"}`); status != 200 {
		t.Fatalf("login with the new password: %d %v", status, v)
	}

	// Audit trail: every change, with action, actor, resource and request id.
	evs := e.auditEvents(t)
	for _, want := range []struct{ typ, actor, resource string }{
		{"auth.tenant.bootstrapped", admin, "tenant:acme"},
		{"auth.login.succeeded", admin, "session:" + c1.Sid},
		{"auth.session.refreshed", admin, "session:" + c1.Sid},
		{"auth.session.revoked", admin, "session:" + c3.Sid},
		{"auth.user.created", admin, "user:" + bob},
		{"auth.role.created", admin, ""},
		{"auth.user.roles_changed", admin, "user:" + bob},
		{"auth.password.changed", bob, "user:" + bob},
	} {
		ev := findEvent(evs, want.typ, func(p map[string]any) bool {
			return p["actor"] == want.actor && (want.resource == "" || p["resource"] == want.resource)
		})
		if ev == nil {
			t.Errorf("no audit event %s by %s on %s", want.typ, want.actor, want.resource)
			continue
		}
		p := ev["payload"].(map[string]any)
		if p["action"] != want.typ || str(p, "request_id") == "" || p["request_id"] != ev["request_id"] || ev["tenant"] != tenant {
			t.Errorf("audit event %s: %v", want.typ, ev)
		}
	}

	// Metrics.
	_, metrics, _ := do(t, "GET", e.base+"/plugins/"+e.name+"/metrics", "")
	for _, want := range []string{
		`keel_plugin_logins_total{plugin="` + e.name + `",result="success"}`,
		`keel_plugin_logins_total{plugin="` + e.name + `",result="failure"}`,
		`keel_plugin_refreshes_total{plugin="` + e.name + `",result="reuse"} 1`,
		`keel_plugin_sessions_ended_total{plugin="` + e.name + `",reason="logout"} 1`,
		`keel_plugin_login_duration_seconds_count{plugin="` + e.name + `"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Health.
	if status, body, _ := do(t, "GET", e.base+"/readyz", ""); status != 200 {
		t.Errorf("readyz: %d %s", status, body)
	}
}

func TestAuthPluginLoginThrottling(t *testing.T) {
	e := startAuth(t, map[string]string{"bootstrap_token": "let-me-in", "bcrypt_cost": "11"})
	const tenant = "initech"
	pw := "a perfectly fine password"
	// With bootstrap_token set, creating a tenant needs it.
	for _, tok := range []string{"", "wrong"} {
		if status, v := e.post(t, "/bootstrap", tenant, `{"email":"peter@initech.test","password":"`+pw+`"}`, "X-Bootstrap-Token", tok); status != 403 {
			t.Fatalf("bootstrap with token %q: %d %v, want 403", tok, status, v)
		}
	}
	if status, v := e.post(t, "/bootstrap", tenant, `{"email":"peter@initech.test","password":"`+pw+`"}`, "X-Bootstrap-Token", "let-me-in"); status != 201 {
		t.Fatalf("bootstrap: %d %v", status, v)
	}
	var hash string
	if err := e.db.QueryRow(context.Background(), `SELECT password_hash FROM `+e.schema+`.users`).Scan(&hash); err != nil || !strings.HasPrefix(hash, "$2a$11$") {
		t.Fatalf("password hash %q (%v): want bcrypt at the configured cost 11", hash, err)
	}
	for i := 1; i <= 5; i++ {
		if status, v := e.post(t, "/login", tenant, `{"email":"peter@initech.test","password":"guess `+fmt.Sprint(i)+`"}`); status != 401 {
			t.Fatalf("failed login %d: %d %v, want 401", i, status, v)
		}
	}
	// The 6th attempt is throttled, even with the right password.
	status, body := e.http(t, "POST", "/login", tenant, `{"email":"peter@initech.test","password":"`+pw+`"}`)
	if status != 429 || !strings.Contains(body, "too_many_attempts") {
		t.Fatalf("6th login: %d %s, want 429", status, body)
	}
	// Throttling is per tenant and email: another email is unaffected.
	if status, v := e.post(t, "/login", tenant, `{"email":"milton@initech.test","password":"`+pw+`"}`); status != 401 {
		t.Fatalf("other email: %d %v, want 401", status, v)
	}
	_, metrics, _ := do(t, "GET", e.base+"/plugins/"+e.name+"/metrics", "")
	if !strings.Contains(metrics, `keel_plugin_logins_total{plugin="`+e.name+`",result="rate_limited"} 1`) {
		t.Errorf("rate-limited login not counted:\n%s", grep(metrics, "logins_total"))
	}
	// Failed logins are audited. This needs the host to commit the work of a 401 answer
	// (see plugins/auth/README.md, Known gaps).
	if findEvent(e.auditEvents(t), "auth.login.failed", func(p map[string]any) bool { return p["actor"] == "peter@initech.test" }) == nil {
		t.Errorf("KNOWN GAP: no auth.login.failed audit event in the outbox: the plugin published it, " +
			"but the host rolled it back with the rest of the 401 answer's work")
	}
}
