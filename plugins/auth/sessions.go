package main

import (
	"encoding/json"
	"strconv"
	"time"

	"golang.org/x/crypto/bcrypt"

	keel "github.com/keelhq/keel/abi/sdk"
)

// Login throttling: after maxFailures failed logins for one email in a tenant, further
// attempts are refused with 429 until the window (counted from the first failure) ends.
const (
	maxFailures   = 5
	failureWindow = 15 * time.Minute
)

// tokenResponse is the answer of login and refresh.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
}

func tokens(access, refresh string) *keel.Response {
	return keel.JSON(200, tokenResponse{access, refresh, "Bearer", int(accessTTL / time.Second)}).
		SetHeader("Cache-Control", "no-store")
}

// ---- session cache ------------------------------------------------------------------

// cachedSession is what the cache holds under "session:<id>": the session's user and
// expiry, or the reason it was revoked. Valid entries live for the session class (1 h);
// revocation markers until the session would have expired, so that a revocation is
// honoured by this plugin even where the database write did not commit (see keepWork).
type cachedSession struct {
	User    string `json:"u"`
	Expires int64  `json:"e"`
	Revoked string `json:"r,omitempty"`
}

func sessionKey(sid string) string { return "session:" + sid }

func cacheSession(sid string, s cachedSession) {
	b, _ := json.Marshal(s)
	opt := keel.Class("session")
	if s.Revoked != "" {
		ttl := time.Until(time.Unix(s.Expires, 0))
		opt = keel.TTL(min(max(ttl, time.Minute), maxSessionTTL))
	}
	_ = keel.Cache.Set(sessionKey(sid), b, opt) // best effort: the database stays authoritative
}

func sessionFromCache(sid string) (cachedSession, bool) {
	var s cachedSession
	b, ok, err := keel.Cache.Get(sessionKey(sid))
	if err != nil || !ok || json.Unmarshal(b, &s) != nil {
		return s, false
	}
	return s, true
}

// currentSession checks, behind the gateway, that the caller's session is still live;
// the cache spares most calls a database read.
func currentSession(r *keel.Request) *keel.Response {
	sid, user := r.Call().Session(), r.Call().Subject()
	if sid == "" {
		return nil // a service token without a session: nothing to check
	}
	s, ok := sessionFromCache(sid)
	if !ok {
		rows, err := keel.DB.Query(`SELECT user_id, expires_at, coalesce(revoked_reason, CASE WHEN revoked_at IS NULL THEN '' ELSE 'revoked' END) AS revoked
			FROM sessions WHERE id = $1`, sid)
		if err != nil {
			return internal("read session", err)
		}
		if rows.Len() == 0 {
			return keel.Error(401, "session_revoked", "the session has ended; log in again")
		}
		row := rows.Row(0)
		s = cachedSession{User: row.String("user_id"), Expires: row.Time("expires_at").Unix(), Revoked: row.String("revoked")}
		cacheSession(sid, s)
	}
	if s.Revoked != "" || s.User != user || now().Unix() >= s.Expires {
		return keel.Error(401, "session_revoked", "the session has ended; log in again")
	}
	return nil
}

// ---- issuing --------------------------------------------------------------------------

// permissionsOf returns the union of the permissions of user's roles, sorted.
func permissionsOf(user string) ([]string, error) {
	rows, err := keel.DB.Query(`SELECT DISTINCT p.permission
		FROM user_roles ur
		JOIN roles r ON r.tenant_id = ur.tenant_id AND r.id = ur.role_id AND r.deleted_at IS NULL
		CROSS JOIN LATERAL jsonb_array_elements_text(r.permissions) AS p(permission)
		WHERE ur.user_id = $1
		ORDER BY 1`, user)
	if err != nil {
		return nil, err
	}
	perms := make([]string, 0, rows.Len())
	for i := range rows.Len() {
		perms = append(perms, rows.Row(i).String("permission"))
	}
	return perms, nil
}

// issueRefresh stores a new refresh token of session sid, valid until the session ends.
func issueRefresh(sid string, expires time.Time) (string, error) {
	token, hash := newRefreshToken()
	_, err := keel.DB.Exec(`INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)`, hash, sid, expires)
	return token, err
}

// ---- POST /login --------------------------------------------------------------------

type loginRequest struct {
	Tenant   string `json:"tenant"`
	Email    string `json:"email"`
	Password string `json:"password"`
}

func failureKey(email string) string { return "login-failures:" + hashToken(email)[:32] }

// failures returns the failed logins counted for key in the current window. A cache
// outage reads as zero: throttling fails open rather than locking everyone out.
func failures(key string) int64 {
	b, ok, err := keel.Cache.Get(key)
	if err != nil || !ok {
		return 0
	}
	n, _ := strconv.ParseInt(string(b), 10, 64)
	return n
}

func tooManyAttempts() *keel.Response {
	return keel.Error(429, "too_many_attempts", "too many failed attempts; try again later").
		SetHeader("Retry-After", strconv.Itoa(int(failureWindow/time.Second)))
}

func login(r *keel.Request) *keel.Response {
	start := now()
	defer observe("login_duration_seconds", start)
	var in loginRequest
	if resp := decode(r, &in); resp != nil {
		count("logins_total", "invalid")
		return resp
	}
	tenant, resp := tenantOf(r, in.Tenant)
	if resp != nil {
		count("logins_total", "invalid")
		return resp
	}
	email := normEmail(in.Email)
	if email == "" || in.Password == "" {
		count("logins_total", "invalid")
		return keel.Error(400, "invalid_credentials_format", "email and password are required")
	}
	fkey := failureKey(email)
	if failures(fkey) >= maxFailures {
		count("logins_total", "rate_limited")
		keel.Log.Warn("login throttled", "audit", true, "action", "auth.login.throttled", "tenant", tenant, "email", email)
		return tooManyAttempts()
	}

	rows, err := keel.DB.Query(`SELECT id, password_hash, disabled_at IS NOT NULL AS disabled FROM users WHERE email = $1 AND deleted_at IS NULL`, email)
	if err != nil {
		return internal("login: read user", err)
	}
	user, hash, disabled := "", dummyHash(cfg.bcryptCost), false
	if rows.Len() == 1 {
		row := rows.Row(0)
		user, hash, disabled = row.String("id"), []byte(row.String("password_hash")), row.Bool("disabled")
	}
	// Always run one bcrypt comparison, so unknown emails take as long as wrong passwords.
	match := bcrypt.CompareHashAndPassword(hash, []byte(in.Password)) == nil
	if !match || user == "" || disabled {
		reason := "wrong_password"
		switch {
		case user == "":
			reason = "unknown_user"
		case disabled && match:
			reason = "disabled"
		}
		n, _ := keel.Cache.Incr(fkey, 1, keel.TTL(failureWindow))
		count("logins_total", "failure")
		resource := "user:" + email
		if user != "" {
			resource = "user:" + user
		}
		keel.Log.Warn("login failed", "audit", true, "action", "auth.login.failed", "tenant", tenant, "email", email, "reason", reason, "failures", n)
		if err := audit(r, "auth.login.failed", email, resource, map[string]any{"reason": reason, "failures": n}); err != nil {
			return internal("login: audit", err)
		}
		return keepWork(keel.Error(401, "invalid_credentials", "invalid email or password"))
	}
	_ = keel.Cache.Delete(fkey)

	// Upgrade hashes made with a lower cost than the configured one.
	if c, err := bcrypt.Cost(hash); err == nil && c < cfg.bcryptCost {
		if h, err := bcrypt.GenerateFromPassword([]byte(in.Password), cfg.bcryptCost); err == nil {
			if _, err := keel.DB.Exec(`UPDATE users SET password_hash = $1, updated_at = now() WHERE id = $2`, string(h), user); err != nil {
				return internal("login: rehash", err)
			}
		}
	}

	t := now()
	sid := randomID(16)
	expires := t.Add(cfg.sessionTTL)
	if _, err := keel.DB.Exec(`INSERT INTO sessions (id, user_id, expires_at, user_agent) VALUES ($1, $2, $3, $4)`,
		sid, user, expires, truncate(r.Header("user-agent"), 300)); err != nil {
		return internal("login: create session", err)
	}
	if _, err := keel.DB.Exec(`UPDATE users SET last_login_at = now() WHERE id = $1`, user); err != nil {
		return internal("login: record login", err)
	}
	refreshToken, err := issueRefresh(sid, expires)
	if err != nil {
		return internal("login: issue refresh token", err)
	}
	perms, err := permissionsOf(user)
	if err != nil {
		return internal("login: permissions", err)
	}
	access, err := cfg.signer.accessToken(t, tenant, user, sid, perms)
	if err != nil {
		return internal("login: sign", err)
	}
	if err := audit(r, "auth.login.succeeded", user, "session:"+sid, nil); err != nil {
		return internal("login: audit", err)
	}
	cacheSession(sid, cachedSession{User: user, Expires: expires.Unix()})
	count("logins_total", "success")
	count("sessions_started_total")
	return tokens(access, refreshToken)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// ---- POST /refresh ------------------------------------------------------------------

type refreshRequest struct {
	Tenant       string `json:"tenant"`
	RefreshToken string `json:"refresh_token"`
}

func invalidRefresh() *keel.Response {
	return keel.Error(401, "invalid_refresh_token", "the refresh token is not valid; log in again")
}

// refresh exchanges a refresh token for a new access token and a new refresh token.
// Each refresh token works once: presenting a used one means it was copied, so the
// whole session (every token rotated from the same login) is revoked.
func refresh(r *keel.Request) *keel.Response {
	var in refreshRequest
	if resp := decode(r, &in); resp != nil {
		return resp
	}
	tenant, resp := tenantOf(r, in.Tenant)
	if resp != nil {
		return resp
	}
	if in.RefreshToken == "" || len(in.RefreshToken) > 200 {
		count("refreshes_total", "invalid")
		return invalidRefresh()
	}
	hash := hashToken(in.RefreshToken)
	// Claim the token atomically: of two concurrent exchanges, the second waits for the
	// first and then finds it used, which is a reuse.
	claimed, err := keel.DB.Query(`UPDATE refresh_tokens SET used_at = now(), updated_at = now()
		WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING session_id`, hash)
	if err != nil {
		return internal("refresh: claim token", err)
	}
	if claimed.Len() == 0 {
		rows, err := keel.DB.Query(`SELECT session_id, used_at IS NOT NULL AS used FROM refresh_tokens WHERE token_hash = $1`, hash)
		if err != nil {
			return internal("refresh: read token", err)
		}
		if rows.Len() == 1 && rows.Row(0).Bool("used") {
			return reuse(r, rows.Row(0).String("session_id"))
		}
		count("refreshes_total", "invalid")
		return invalidRefresh()
	}
	sid := claimed.Row(0).String("session_id")
	if c, ok := sessionFromCache(sid); ok && c.Revoked != "" {
		// Revoked, possibly by a reuse whose database write could not commit (keepWork):
		// apply the revocation again and refuse.
		if resp := revokeFamily(r, sid, c.Revoked); resp != nil {
			return resp
		}
		count("refreshes_total", "invalid")
		return keepWork(invalidRefresh())
	}
	rows, err := keel.DB.Query(`SELECT s.user_id, s.expires_at
		FROM sessions s JOIN users u ON u.tenant_id = s.tenant_id AND u.id = s.user_id
		WHERE s.id = $1 AND s.revoked_at IS NULL AND s.expires_at > now()
		  AND u.deleted_at IS NULL AND u.disabled_at IS NULL`, sid)
	if err != nil {
		return internal("refresh: read session", err)
	}
	if rows.Len() == 0 {
		count("refreshes_total", "invalid")
		return invalidRefresh()
	}
	user, expires := rows.Row(0).String("user_id"), rows.Row(0).Time("expires_at")
	if _, err := keel.DB.Exec(`UPDATE sessions SET last_refreshed_at = now(), updated_at = now() WHERE id = $1`, sid); err != nil {
		return internal("refresh: touch session", err)
	}
	next, err := issueRefresh(sid, expires)
	if err != nil {
		return internal("refresh: issue refresh token", err)
	}
	// Permissions are recomputed, so role changes reach a session at its next refresh.
	perms, err := permissionsOf(user)
	if err != nil {
		return internal("refresh: permissions", err)
	}
	access, err := cfg.signer.accessToken(now(), tenant, user, sid, perms)
	if err != nil {
		return internal("refresh: sign", err)
	}
	if err := audit(r, "auth.session.refreshed", user, "session:"+sid, nil); err != nil {
		return internal("refresh: audit", err)
	}
	cacheSession(sid, cachedSession{User: user, Expires: expires.Unix()})
	count("refreshes_total", "success")
	return tokens(access, next)
}

// reuse revokes session sid after one of its refresh tokens was presented twice.
func reuse(r *keel.Request, sid string) *keel.Response {
	count("refreshes_total", "reuse")
	keel.Log.Warn("refresh token reused; session revoked", "audit", true, "action", "auth.session.revoked",
		"tenant", r.Call().Tenant(), "session", sid, "reason", "refresh_token_reuse")
	if resp := revokeFamily(r, sid, "refresh_token_reuse"); resp != nil {
		return resp
	}
	return keepWork(invalidRefresh())
}

// revokeFamily revokes session sid, and with it every refresh token rotated from it, in
// the database and in the cache. Revoking a revoked session changes nothing.
func revokeFamily(r *keel.Request, sid, reason string) *keel.Response {
	rows, err := keel.DB.Query(`UPDATE sessions SET revoked_at = now(), revoked_reason = $2, updated_at = now()
		WHERE id = $1 AND revoked_at IS NULL RETURNING user_id, expires_at`, sid, reason)
	if err != nil {
		return internal("refresh: revoke session", err)
	}
	if rows.Len() == 0 {
		return nil
	}
	user, expires := rows.Row(0).String("user_id"), rows.Row(0).Time("expires_at")
	cacheSession(sid, cachedSession{User: user, Expires: expires.Unix(), Revoked: reason})
	count("sessions_ended_total", reason)
	if err := audit(r, "auth.session.revoked", user, "session:"+sid, map[string]any{"reason": reason}); err != nil {
		return internal("refresh: audit", err)
	}
	return nil
}

// ---- POST /logout -------------------------------------------------------------------

// logout revokes the caller's session: its access tokens stop working at the gateway
// and its refresh tokens at the next exchange.
func logout(r *keel.Request) *keel.Response {
	if resp := need(r, ""); resp != nil {
		return resp
	}
	sid, user := r.Call().Session(), r.Call().Subject()
	if sid == "" {
		return keel.Error(400, "session_required", "this call carries no session to log out of")
	}
	rows, err := keel.DB.Query(`UPDATE sessions SET revoked_at = now(), revoked_reason = 'logout', updated_at = now()
		WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL RETURNING expires_at`, sid, user)
	if err != nil {
		return internal("logout", err)
	}
	if rows.Len() == 1 {
		if err := audit(r, "auth.session.revoked", user, "session:"+sid, map[string]any{"reason": "logout"}); err != nil {
			return internal("logout: audit", err)
		}
		cacheSession(sid, cachedSession{User: user, Expires: rows.Row(0).Time("expires_at").Unix(), Revoked: "logout"})
		count("sessions_ended_total", "logout")
	}
	return &keel.Response{Status: 204}
}

// ---- POST /password -----------------------------------------------------------------

type passwordRequest struct {
	OldPassword string `json:"old_password"`
	NewPassword string `json:"new_password"`
}

// changePassword changes the caller's own password after checking the current one, and
// revokes every other session of the caller.
func changePassword(r *keel.Request) *keel.Response {
	if resp := need(r, ""); resp != nil {
		return resp
	}
	if resp := currentSession(r); resp != nil {
		return resp
	}
	var in passwordRequest
	if resp := decode(r, &in); resp != nil {
		return resp
	}
	if resp := checkPassword("new_password", in.NewPassword); resp != nil {
		return resp
	}
	user, sid := r.Call().Subject(), r.Call().Session()
	rows, err := keel.DB.Query(`SELECT email, password_hash FROM users WHERE id = $1 AND deleted_at IS NULL AND disabled_at IS NULL`, user)
	if err != nil {
		return internal("password: read user", err)
	}
	if rows.Len() == 0 {
		return keel.Error(401, "unauthenticated", "the user no longer exists or is disabled")
	}
	// Wrong current passwords count against the same throttle as failed logins, so a
	// stolen access token cannot be used to guess the password.
	fkey := failureKey(rows.Row(0).String("email"))
	if failures(fkey) >= maxFailures {
		return tooManyAttempts()
	}
	if bcrypt.CompareHashAndPassword([]byte(rows.Row(0).String("password_hash")), []byte(in.OldPassword)) != nil {
		_, _ = keel.Cache.Incr(fkey, 1, keel.TTL(failureWindow))
		return keel.Error(403, "wrong_password", "old_password: the current password is not correct")
	}
	if in.NewPassword == in.OldPassword {
		return invalid("new_password", "must differ from the current password")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(in.NewPassword), cfg.bcryptCost)
	if err != nil {
		return internal("password: hash", err)
	}
	if _, err := keel.DB.Exec(`UPDATE users SET password_hash = $1, password_changed_at = now(), updated_at = now() WHERE id = $2`, string(h), user); err != nil {
		return internal("password: update", err)
	}
	revoked, err := keel.DB.Query(`UPDATE sessions SET revoked_at = now(), revoked_reason = 'password_change', updated_at = now()
		WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL RETURNING id, expires_at`, user, sid)
	if err != nil {
		return internal("password: revoke sessions", err)
	}
	if err := audit(r, "auth.password.changed", user, "user:"+user, map[string]any{"revoked_sessions": revoked.Len()}); err != nil {
		return internal("password: audit", err)
	}
	for i := range revoked.Len() {
		row := revoked.Row(i)
		cacheSession(row.String("id"), cachedSession{User: user, Expires: row.Time("expires_at").Unix(), Revoked: "password_change"})
	}
	if n := revoked.Len(); n > 0 {
		_ = keel.M("sessions_ended_total").Add(float64(n), "password_change")
	}
	return keel.JSON(200, map[string]int{"revoked_sessions": revoked.Len()})
}

// ---- GET /me ------------------------------------------------------------------------

func me(r *keel.Request) *keel.Response {
	if resp := need(r, ""); resp != nil {
		return resp
	}
	if resp := currentSession(r); resp != nil {
		return resp
	}
	rows, err := keel.DB.Query(`SELECT id, email, name FROM users WHERE id = $1 AND deleted_at IS NULL`, r.Call().Subject())
	if err != nil {
		return internal("me", err)
	}
	if rows.Len() == 0 {
		return keel.Error(404, "user_not_found", "the caller is not a user of this tenant")
	}
	perms := r.Call().Permissions()
	if perms == nil {
		perms = []string{}
	}
	row := rows.Row(0)
	return keel.JSON(200, map[string]any{
		"id": row.String("id"), "email": row.String("email"), "name": row.String("name"),
		"tenant": r.Call().Tenant(), "session": r.Call().Session(), "permissions": perms,
	})
}
