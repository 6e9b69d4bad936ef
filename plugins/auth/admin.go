package main

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	keel "github.com/keelhq/keel/abi/sdk"
)

// ---- POST /bootstrap ----------------------------------------------------------------

type bootstrapRequest struct {
	Tenant     string `json:"tenant"`
	TenantName string `json:"tenant_name"`
	Email      string `json:"email"`
	Password   string `json:"password"`
	Name       string `json:"name"`
}

// adminRole is the role the bootstrap administrator gets.
const adminRole = "admin"

// bootstrap creates a tenant that does not exist yet, with an "admin" role holding the
// administrator permissions and a first user holding that role. It is public (nobody
// can log in to a tenant that does not exist); when the bootstrap_token setting is set,
// the caller must present it in X-Bootstrap-Token.
func bootstrap(r *keel.Request) *keel.Response {
	if want := cfg.bootstrapToken; want != "" {
		if subtle.ConstantTimeCompare([]byte(r.Header("x-bootstrap-token")), []byte(want)) != 1 {
			return keel.Error(403, "bootstrap_forbidden", "creating a tenant requires the bootstrap token in X-Bootstrap-Token")
		}
	}
	var in bootstrapRequest
	if resp := decode(r, &in); resp != nil {
		return resp
	}
	tenant, resp := tenantOf(r, in.Tenant)
	if resp != nil {
		return resp
	}
	email := normEmail(in.Email)
	if resp := checkEmail(email); resp != nil {
		return resp
	}
	if resp := checkPassword("password", in.Password); resp != nil {
		return resp
	}
	name := strings.TrimSpace(in.TenantName)
	if name == "" {
		name = tenant
	}
	if len(name) > 200 || len(in.Name) > 200 {
		return invalid("name", "at most 200 characters")
	}
	created, err := keel.DB.Query(`INSERT INTO tenants (name) VALUES ($1) ON CONFLICT (tenant_id) DO NOTHING RETURNING tenant_id`, name)
	if err != nil && !errors.Is(err, keel.ErrConflict) {
		return internal("bootstrap: create tenant", err)
	}
	if err != nil || created.Len() == 0 {
		return keel.Error(409, "tenant_exists", "tenant "+strconv.Quote(tenant)+" already exists")
	}
	perms := cfg.adminPerms
	permsJSON, _ := json.Marshal(perms)
	role, err := keel.DB.Query(`INSERT INTO roles (name, description, permissions) VALUES ($1, $2, $3) RETURNING id`,
		adminRole, "Tenant administrator, created by bootstrap", string(permsJSON))
	if err != nil {
		return internal("bootstrap: create role", err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(in.Password), cfg.bcryptCost)
	if err != nil {
		return internal("bootstrap: hash", err)
	}
	user, err := keel.DB.Query(`INSERT INTO users (email, name, password_hash) VALUES ($1, $2, $3) RETURNING id`,
		email, strings.TrimSpace(in.Name), string(hash))
	if err != nil {
		return internal("bootstrap: create user", err)
	}
	uid, rid := user.Row(0).String("id"), role.Row(0).String("id")
	if _, err := keel.DB.Exec(`INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2)`, uid, rid); err != nil {
		return internal("bootstrap: assign role", err)
	}
	if err := audit(r, "auth.tenant.bootstrapped", uid, "tenant:"+tenant, map[string]any{
		"admin_user": uid, "admin_email": email, "role": rid, "permissions": perms,
	}); err != nil {
		return internal("bootstrap: audit", err)
	}
	count("users_created_total")
	return keel.JSON(201, map[string]any{"tenant": tenant, "user_id": uid, "email": email, "role": adminRole, "permissions": perms})
}

// ---- users --------------------------------------------------------------------------

type createUserRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	Name     string `json:"name"`
}

// createUser adds a user to the caller's tenant; emails are unique per tenant (409).
func createUser(r *keel.Request) *keel.Response {
	if resp := need(r, "auth.users.write"); resp != nil {
		return resp
	}
	var in createUserRequest
	if resp := decode(r, &in); resp != nil {
		return resp
	}
	email := normEmail(in.Email)
	if resp := checkEmail(email); resp != nil {
		return resp
	}
	if resp := checkPassword("password", in.Password); resp != nil {
		return resp
	}
	if len(in.Name) > 200 {
		return invalid("name", "at most 200 characters")
	}
	// Check first, so the common duplicate answers without spending a bcrypt hash; the
	// unique index still decides under concurrency.
	dup, err := keel.DB.Query(`SELECT 1 FROM users WHERE email = $1 AND deleted_at IS NULL`, email)
	if err != nil {
		return internal("create user: check email", err)
	}
	if dup.Len() > 0 {
		return emailTaken()
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(in.Password), cfg.bcryptCost)
	if err != nil {
		return internal("create user: hash", err)
	}
	rows, err := keel.DB.Query(`INSERT INTO users (email, name, password_hash) VALUES ($1, $2, $3) RETURNING id, created_at`,
		email, strings.TrimSpace(in.Name), string(hash))
	if errors.Is(err, keel.ErrConflict) {
		return emailTaken()
	}
	if err != nil {
		return internal("create user", err)
	}
	id := rows.Row(0).String("id")
	if err := audit(r, "auth.user.created", r.Call().Subject(), "user:"+id, map[string]any{"email": email}); err != nil {
		return internal("create user: audit", err)
	}
	count("users_created_total")
	return keel.JSON(201, map[string]any{"id": id, "email": email, "name": strings.TrimSpace(in.Name),
		"roles": []string{}, "created_at": rows.Row(0).Time("created_at").UTC().Format(time.RFC3339)})
}

func emailTaken() *keel.Response {
	return keel.Error(409, "email_taken", "email: a user with this email already exists in the tenant")
}

// listUsers pages through the tenant's users by email: ?limit=50&after=<last email>.
func listUsers(r *keel.Request) *keel.Response {
	if resp := need(r, "auth.users.read"); resp != nil {
		return resp
	}
	limit := 50
	if v := r.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 200 {
			return invalid("limit", "want an integer between 1 and 200")
		}
		limit = n
	}
	rows, err := keel.DB.Query(`SELECT u.id, u.email, u.name, u.disabled_at IS NOT NULL AS disabled, u.created_at, u.last_login_at,
			coalesce(jsonb_agg(r.name ORDER BY r.name) FILTER (WHERE r.id IS NOT NULL), '[]'::jsonb) AS roles
		FROM users u
		LEFT JOIN user_roles ur ON ur.tenant_id = u.tenant_id AND ur.user_id = u.id
		LEFT JOIN roles r ON r.tenant_id = ur.tenant_id AND r.id = ur.role_id AND r.deleted_at IS NULL
		WHERE u.deleted_at IS NULL AND u.email > $1
		GROUP BY u.id
		ORDER BY u.email
		LIMIT $2`, normEmail(r.Query().Get("after")), limit+1)
	if err != nil {
		return internal("list users", err)
	}
	items := make([]map[string]any, 0, min(rows.Len(), limit))
	next := ""
	for i := range min(rows.Len(), limit) {
		row := rows.Row(i)
		item := map[string]any{
			"id": row.String("id"), "email": row.String("email"), "name": row.String("name"),
			"disabled": row.Bool("disabled"), "roles": json.RawMessage(row.String("roles")),
			"created_at": row.Time("created_at").UTC().Format(time.RFC3339),
		}
		if t := row.Time("last_login_at"); !t.IsZero() {
			item["last_login_at"] = t.UTC().Format(time.RFC3339)
		}
		items = append(items, item)
	}
	if rows.Len() > limit {
		next = rows.Row(limit - 1).String("email")
	}
	return keel.JSON(200, map[string]any{"items": items, "next_after": next})
}

// ---- roles --------------------------------------------------------------------------

type createRoleRequest struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Permissions []string `json:"permissions"`
}

// grantable refuses to let a caller hand out permissions it does not hold itself,
// unless it holds auth.roles.escalate.
func grantable(r *keel.Request, perms []string) *keel.Response {
	if r.Call().HasPermission("auth.roles.escalate") {
		return nil
	}
	var missing []string
	for _, p := range perms {
		if !r.Call().HasPermission(p) {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return keel.Error(403, "escalation_refused", "granting permissions you do not hold requires auth.roles.escalate: "+strings.Join(missing, ", "))
	}
	return nil
}

func createRole(r *keel.Request) *keel.Response {
	if resp := need(r, "auth.roles.write"); resp != nil {
		return resp
	}
	var in createRoleRequest
	if resp := decode(r, &in); resp != nil {
		return resp
	}
	if !roleNameRE.MatchString(in.Name) {
		return invalid("name", "want 1-64 lower-case letters, digits, '.', '_' or '-', starting with a letter")
	}
	if len(in.Description) > 500 {
		return invalid("description", "at most 500 characters")
	}
	if len(in.Permissions) > 500 {
		return invalid("permissions", "at most 500 permissions")
	}
	perms, err := normPermissions(in.Permissions)
	if err != nil {
		return invalid("permissions", err.Error())
	}
	if resp := grantable(r, perms); resp != nil {
		return resp
	}
	pj, _ := json.Marshal(perms)
	rows, err := keel.DB.Query(`INSERT INTO roles (name, description, permissions) VALUES ($1, $2, $3) RETURNING id`, in.Name, in.Description, string(pj))
	if errors.Is(err, keel.ErrConflict) {
		return keel.Error(409, "role_exists", "name: a role with this name already exists in the tenant")
	}
	if err != nil {
		return internal("create role", err)
	}
	id := rows.Row(0).String("id")
	if err := audit(r, "auth.role.created", r.Call().Subject(), "role:"+id, map[string]any{"name": in.Name, "permissions": perms}); err != nil {
		return internal("create role: audit", err)
	}
	return keel.JSON(201, map[string]any{"id": id, "name": in.Name, "description": in.Description, "permissions": perms})
}

func listRoles(r *keel.Request) *keel.Response {
	if resp := need(r, "auth.roles.read"); resp != nil {
		return resp
	}
	rows, err := keel.DB.Query(`SELECT id, name, description, permissions, created_at FROM roles WHERE deleted_at IS NULL ORDER BY name LIMIT 1000`)
	if err != nil {
		return internal("list roles", err)
	}
	items := make([]map[string]any, 0, rows.Len())
	for i := range rows.Len() {
		row := rows.Row(i)
		items = append(items, map[string]any{
			"id": row.String("id"), "name": row.String("name"), "description": row.String("description"),
			"permissions": json.RawMessage(row.String("permissions")), "created_at": row.Time("created_at").UTC().Format(time.RFC3339),
		})
	}
	return keel.JSON(200, map[string]any{"items": items})
}

type setRolesRequest struct {
	Roles []string `json:"roles"`
}

// setUserRoles replaces a user's roles (by name). The new permissions reach the user's
// sessions at their next refresh, within the access token lifetime (10 minutes).
func setUserRoles(r *keel.Request) *keel.Response {
	if resp := need(r, "auth.roles.assign"); resp != nil {
		return resp
	}
	id := r.Param("id")
	if !uuidRE.MatchString(id) {
		return keel.Error(404, "user_not_found", "no user "+strconv.Quote(id))
	}
	var in setRolesRequest
	if resp := decode(r, &in); resp != nil {
		return resp
	}
	if len(in.Roles) > 100 {
		return invalid("roles", "at most 100 roles")
	}
	names := map[string]bool{}
	for _, n := range in.Roles {
		names[n] = true
	}
	list := make([]string, 0, len(names))
	for n := range names {
		list = append(list, n)
	}
	sort.Strings(list)
	lj, _ := json.Marshal(list)

	user, err := keel.DB.Query(`SELECT 1 FROM users WHERE id = $1 AND deleted_at IS NULL`, id)
	if err != nil {
		return internal("set roles: read user", err)
	}
	if user.Len() == 0 {
		return keel.Error(404, "user_not_found", "no user "+strconv.Quote(id))
	}
	roles, err := keel.DB.Query(`SELECT id, name, permissions FROM roles
		WHERE deleted_at IS NULL AND name IN (SELECT jsonb_array_elements_text($1::jsonb))`, string(lj))
	if err != nil {
		return internal("set roles: read roles", err)
	}
	found := map[string]bool{}
	var perms []string
	for i := range roles.Len() {
		row := roles.Row(i)
		found[row.String("name")] = true
		var ps []string
		if err := json.Unmarshal([]byte(row.String("permissions")), &ps); err != nil {
			return internal("set roles: decode permissions", err)
		}
		perms = append(perms, ps...)
	}
	var unknown []string
	for _, n := range list {
		if !found[n] {
			unknown = append(unknown, strconv.Quote(n))
		}
	}
	if len(unknown) > 0 {
		return invalid("roles", "unknown roles "+strings.Join(unknown, ", "))
	}
	if resp := grantable(r, perms); resp != nil {
		return resp
	}
	if _, err := keel.DB.Exec(`DELETE FROM user_roles WHERE user_id = $1`, id); err != nil {
		return internal("set roles: clear", err)
	}
	if _, err := keel.DB.Exec(`INSERT INTO user_roles (user_id, role_id)
		SELECT $1::uuid, id FROM roles WHERE deleted_at IS NULL AND name IN (SELECT jsonb_array_elements_text($2::jsonb))`, id, string(lj)); err != nil {
		return internal("set roles: assign", err)
	}
	if err := audit(r, "auth.user.roles_changed", r.Call().Subject(), "user:"+id, map[string]any{"roles": list}); err != nil {
		return internal("set roles: audit", err)
	}
	return keel.JSON(200, map[string]any{"id": id, "roles": list})
}
