package server

import (
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

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5"
	"github.com/valyala/fasthttp"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/host/internal/authn"
	"github.com/keelhq/keel/host/internal/gateway"
	"github.com/keelhq/keel/host/internal/testkit"
)

func jwt(priv ed25519.PrivateKey, hdr, claims map[string]any) string {
	hb, _ := json.Marshal(hdr)
	cb, _ := json.Marshal(claims)
	in := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb)
	return in + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(in)))
}

func TestGatewayVerifiesAccessTokens(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, forger, _ := ed25519.GenerateKey(rand.Reader)
	url := database(t, "keel_plg_auth")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// The auth plugin's sessions table, as its migration creates it (the contract the
	// host's revocation check reads).
	if _, err := conn.Exec(ctx, `CREATE SCHEMA plg_auth; CREATE TABLE plg_auth.sessions (id text PRIMARY KEY, tenant_id text, user_id text,
		created_at timestamptz DEFAULT now(), expires_at timestamptz NOT NULL, revoked_at timestamptz);
		INSERT INTO plg_auth.sessions (id, tenant_id, user_id, expires_at, revoked_at) VALUES
		('live', 'acme', 'u1', now() + interval '1 hour', NULL), ('gone', 'acme', 'u1', now() + interval '1 hour', now())`); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	testkit.AddPlugin(t, dir, "plugins/example", func(m *manifest.Manifest) {
		m.Routes[0] = manifest.Route{Method: "GET", Path: "/hello/:name", Permission: "example.read"}
	})
	srv, base := startIn(t, dir, "--database-url", url, "--jwt-public-key", base64.StdEncoding.EncodeToString(pub))

	now := time.Now()
	claims := func(mod map[string]any) map[string]any {
		c := map[string]any{"iss": authn.Issuer, "aud": authn.Audience, "sub": "u1", "tid": "acme", "sid": "live", "jti": "j",
			"perms": []string{"example.read"}, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}
		for k, v := range mod {
			c[k] = v
		}
		return c
	}
	hdr := map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": authn.KeyID(pub)}
	call := func(token string) (int, string) {
		req, _ := http.NewRequest("GET", base+"/api/example/hello/ada", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." +
		base64.RawURLEncoding.EncodeToString(func() []byte { b, _ := json.Marshal(claims(nil)); return b }()) + "."
	for _, tc := range []struct {
		name, token string
		status      int
	}{
		{"no token", "", 401},
		{"forged", jwt(forger, hdr, claims(nil)), 401},
		{"alg none", none, 401},
		{"expired", jwt(priv, hdr, claims(map[string]any{"exp": now.Add(-time.Hour).Unix()})), 401},
		{"wrong audience", jwt(priv, hdr, claims(map[string]any{"aud": "billing"})), 401},
		{"revoked session", jwt(priv, hdr, claims(map[string]any{"sid": "gone"})), 401},
		{"unknown session", jwt(priv, hdr, claims(map[string]any{"sid": "nope"})), 401},
		{"missing permission", jwt(priv, hdr, claims(map[string]any{"perms": []string{"other"}})), 403},
		{"valid", jwt(priv, hdr, claims(nil)), 200},
	} {
		st, b := call(tc.token)
		if st != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, st, b, tc.status)
		}
		if st == 401 && !strings.Contains(b, `"code":"unauthenticated"`) {
			t.Errorf("%s: 401 without the JSON error: %s", tc.name, b)
		}
		// Server.Authenticate, for routes mounted beside the gateway's, agrees: a
		// principal exactly when the gateway got past authentication.
		p, err := authenticateWith(srv, tc.token)
		if (err == nil) != (tc.status != 401) || err == nil && (p.Tenant != "acme" || p.Subject != "u1" || p.Session != "live") {
			t.Errorf("%s: Server.Authenticate gave %+v, %v; the gateway answered %d", tc.name, p, err, st)
		}
	}
	if p, err := authenticateWith(&Server{}, jwt(priv, hdr, claims(nil))); err == nil {
		t.Errorf("a host without a verifier authenticated %+v", p)
	}
	// Admin access tokens: only the platform tenant's keel.admin holders operate the
	// admin API (this host has no admin token configured).
	adminCall := func(token string) int {
		req, _ := http.NewRequest("GET", base+"/admin/api/plugins", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		name   string
		claims map[string]any
		status int
	}{
		{"platform admin", claims(map[string]any{"tid": "platform", "perms": []string{"keel.admin"}}), 200},
		{"tenant admin with keel.admin", claims(map[string]any{"tid": "acme", "perms": []string{"keel.admin"}}), 401},
		{"platform user without keel.admin", claims(map[string]any{"tid": "platform", "perms": []string{"example.read"}}), 401},
		{"expired platform admin", claims(map[string]any{"tid": "platform", "perms": []string{"keel.admin"}, "exp": now.Add(-time.Hour).Unix()}), 401},
	} {
		if st := adminCall(jwt(priv, hdr, tc.claims)); st != tc.status {
			t.Errorf("admin API with %s: %d, want %d", tc.name, st, tc.status)
		}
	}
	// Refusals are in the audit trail: access.denied records on audit.events, through
	// the outbox (the 403 with the caller's tenant, the 401s under "platform").
	var denied403, denied401 int
	testkit.WaitFor(t, 5*time.Second, "denials in the outbox", func() bool {
		err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE convert_from(payload, 'UTF8')::jsonb->>'tenant' = 'acme'),
			count(*) FILTER (WHERE convert_from(payload, 'UTF8')::jsonb->>'tenant' = 'platform')
			FROM keel_host.outbox WHERE topic = 'audit.events' AND convert_from(payload, 'UTF8') LIKE '%access.denied%'`).Scan(&denied403, &denied401)
		return err == nil && denied403 >= 1 && denied401 >= 7 // (admin refusals are audited under "platform" too)
	})
}

// authenticateWith runs srv.Authenticate on a request carrying token as its bearer.
func authenticateWith(srv *Server, token string) (*gateway.Principal, error) {
	app := fiber.New()
	c := app.AcquireCtx(&fasthttp.RequestCtx{})
	defer app.ReleaseCtx(c)
	if token != "" {
		c.Request().Header.Set("Authorization", "Bearer "+token)
	}
	return srv.Authenticate(c)
}
