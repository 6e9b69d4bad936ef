// Command auth is Keel's identity service: tenants, users, roles and permissions,
// password login, Ed25519-signed JWT access tokens, single-use rotating refresh tokens
// and sessions with revocation. The host's gateway verifies the access tokens it issues
// and checks their sessions in this plugin's sessions table; see README.md for the
// token contract, the routes and the first-tenant bootstrap.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugin.wasm ./plugins/auth
package main

import (
	"errors"
	"regexp"
	"strings"

	keel "github.com/keelhq/keel/abi/sdk"
)

func init() {
	keel.OnInit(func() error {
		s, err := loadSettings()
		if err != nil {
			return err
		}
		cfg = s
		return nil
	})
	keel.OnHealth(health)

	keel.Handle("POST", "/bootstrap", bootstrap)
	keel.Handle("POST", "/login", login)
	keel.Handle("POST", "/refresh", refresh)
	keel.Handle("GET", "/keys", keys)
	keel.Handle("POST", "/logout", logout)
	keel.Handle("POST", "/password", changePassword)
	keel.Handle("GET", "/me", me)
	keel.Handle("GET", "/users", listUsers)
	keel.Handle("POST", "/users", createUser)
	keel.Handle("PUT", "/users/:id/roles", setUserRoles)
	keel.Handle("GET", "/roles", listRoles)
	keel.Handle("POST", "/roles", createRole)
}

func main() {}

// health reports the plugin ready when its settings loaded and its key signs tokens
// that verify. It needs no tenant, so it does not touch the database.
func health() error {
	if cfg == nil {
		return errors.New("settings not loaded")
	}
	_, err := cfg.signer.accessToken(now(), "health", "health", "health", nil)
	return err
}

// keys publishes the verification key: GET /api/auth/keys (public).
func keys(*keel.Request) *keel.Response {
	return keel.JSON(200, cfg.signer.jwks()).SetHeader("Cache-Control", "public, max-age=300")
}

// ---- request helpers --------------------------------------------------------------

// tenantOf returns the tenant a public route acts for. The host scopes the call's
// database transaction to the X-Tenant-ID header, so a tenant in the body is only
// accepted when it names the same tenant.
func tenantOf(r *keel.Request, body string) (string, *keel.Response) {
	t := r.Call().Tenant()
	switch {
	case t == "":
		return "", keel.Error(400, "tenant_required", "send the tenant in the X-Tenant-ID header")
	case body != "" && body != t:
		return "", keel.Error(400, "tenant_mismatch", "the tenant in the body differs from the X-Tenant-ID header")
	}
	return t, nil
}

// need checks, in addition to the gateway, that the caller is authenticated and holds
// perm (defense in depth: the gateway enforces the manifest's permissions first).
func need(r *keel.Request, perm string) *keel.Response {
	if r.Call().Subject() == "" || r.Call().Tenant() == "" {
		return keel.Error(401, "unauthenticated", "this route requires an authenticated caller")
	}
	if perm != "" && !r.Call().HasPermission(perm) {
		return keel.Error(403, "forbidden", "this action requires the permission "+perm)
	}
	return nil
}

// decode reads the JSON body into v, answering 400 when it does not fit.
func decode(r *keel.Request, v any) *keel.Response {
	if err := r.DecodeJSON(v); err != nil {
		return keel.Error(400, "invalid_json", "the body must be a JSON object of the documented shape: "+err.Error())
	}
	return nil
}

// internal logs err and answers a 500 that reveals nothing about it.
func internal(what string, err error) *keel.Response {
	keel.Log.Error(what, "err", err.Error())
	return keel.Error(500, "internal", "internal error")
}

func invalid(field, msg string) *keel.Response {
	return keel.Error(400, "invalid_"+field, field+": "+msg)
}

var (
	emailRE    = regexp.MustCompile(`^[^\s@]{1,64}@[^\s@]{1,189}$`)
	uuidRE     = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	roleNameRE = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,63}$`)
)

// normEmail is the stored form of an email address: trimmed and lower case.
func normEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func checkEmail(email string) *keel.Response {
	if !emailRE.MatchString(email) {
		return invalid("email", "want an email address such as ada@example.com")
	}
	return nil
}

// Password rules: at least 8 characters (NIST SP 800-63B), at most 72 bytes (bcrypt
// ignores anything beyond, so longer passwords are refused rather than truncated).
const (
	minPassword = 8
	maxPassword = 72
)

func checkPassword(field, p string) *keel.Response {
	switch {
	case len([]rune(p)) < minPassword:
		return invalid(field, "must have at least 8 characters")
	case len(p) > maxPassword:
		return invalid(field, "must be at most 72 bytes long")
	case strings.TrimSpace(p) == "":
		return invalid(field, "must not be blank")
	}
	return nil
}
