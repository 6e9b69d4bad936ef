package postgres

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"testing/fstest"
)

// notesSQL is a plugin table written to the conventions in migrations/README.md.
const notesSQL = `
CREATE TABLE notes (
	id         bigserial   PRIMARY KEY,
	tenant_id  text        NOT NULL DEFAULT current_setting('app.tenant_id'),
	body       text        NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	deleted_at timestamptz
);
CREATE INDEX notes_tenant_id ON notes (tenant_id, id);
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE notes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON notes
	USING (tenant_id = current_setting('app.tenant_id', true))
	WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
`

// newNotesPlugin provisions a plugin with the notes table.
func newNotesPlugin(t testing.TB, db *DB, suffix string, opts ...PluginOption) PluginDB {
	t.Helper()
	ctx := testCtx(t)
	plugin := pluginName(suffix)
	if _, err := Migrate(ctx, db, plugin, fstest.MapFS{"0001_notes.sql": {Data: []byte(notesSQL)}}); err != nil {
		t.Fatal(err)
	}
	if err := db.VerifyTenantTables(ctx, plugin); err != nil {
		t.Fatal(err)
	}
	p, err := EnsurePlugin(ctx, db, plugin, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type sessionState struct {
	pid                                 int64
	currentUser, sessionUser            string
	tenant, plugin, searchPath, timeout string
}

// outsideTx reads the session state of a pooled connection outside any plugin transaction.
func outsideTx(t testing.TB, db *DB) sessionState {
	t.Helper()
	var s sessionState
	err := db.pool.QueryRow(testCtx(t), `SELECT pg_backend_pid(), current_user, session_user,
		coalesce(current_setting('app.tenant_id', true), ''), coalesce(current_setting('app.plugin', true), ''),
		current_setting('search_path'), current_setting('statement_timeout')`).
		Scan(&s.pid, &s.currentUser, &s.sessionUser, &s.tenant, &s.plugin, &s.searchPath, &s.timeout)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTenantIsolation(t *testing.T) {
	// One connection: every transaction below reuses the same session, so anything leaking past a
	// commit or rollback would be seen by the next one.
	db := openDB(t, WithMaxConns(1))
	ctx := testCtx(t)
	p := newNotesPlugin(t, db, "tenant")
	before := outsideTx(t, db)
	if before.currentUser != before.sessionUser {
		t.Fatalf("outside a transaction current_user %q != session_user %q", before.currentUser, before.sessionUser)
	}

	txA := begin(t, p, "A")
	for _, body := range []string{"a1", "a2"} {
		if n := mustExec(t, txA, `INSERT INTO notes (body) VALUES ($1)`, body); n != 1 {
			t.Fatalf("insert affected %d rows", n)
		}
	}
	st := mustQuery(t, txA, `SELECT current_user, current_setting('app.tenant_id'), current_setting('app.plugin'),
		current_setting('search_path'), current_setting('statement_timeout'), pg_backend_pid()`)
	want := []any{p.Role(), "A", p.Name(), p.Schema() + ", pg_temp", "5s", before.pid}
	for i, w := range want {
		if st.Rows[0][i] != w {
			t.Errorf("inside tx column %s = %#v, want %#v", st.Columns[i].Name, st.Rows[0][i], w)
		}
	}
	if err := txA.Commit(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if after := outsideTx(t, db); after != before {
		t.Fatalf("session state leaked past commit:\n before %+v\n after  %+v", before, after)
	}

	txB := begin(t, p, "B")
	if res := mustQuery(t, txB, `SELECT * FROM notes`); len(res.Rows) != 0 {
		t.Fatalf("tenant B sees %d of tenant A's rows: %v", len(res.Rows), res.Rows)
	}
	if n := mustExec(t, txB, `UPDATE notes SET body = 'hijacked'`); n != 0 {
		t.Fatalf("tenant B updated %d rows of tenant A", n)
	}
	if n := mustExec(t, txB, `DELETE FROM notes`); n != 0 {
		t.Fatalf("tenant B deleted %d rows of tenant A", n)
	}
	_, err := txB.Exec(ctx, `INSERT INTO notes (tenant_id, body) VALUES ('A', 'forged')`, nil)
	if pgCode(err) != "42501" || !strings.Contains(err.Error(), "row-level security") {
		t.Fatalf("tenant B inserting a row for A: err = %v, want a row-level security violation (42501)", err)
	}
	if err := txB.Commit(ctx, nil); !errors.Is(err, ErrTxAborted) {
		t.Fatalf("commit after a failed statement = %v, want ErrTxAborted", err)
	}
	if after := outsideTx(t, db); after != before {
		t.Fatalf("session state leaked past an aborted transaction:\n before %+v\n after  %+v", before, after)
	}

	txA = begin(t, p, "A")
	res := mustQuery(t, txA, `SELECT body, tenant_id FROM notes ORDER BY id`)
	if len(res.Rows) != 2 || res.Rows[0][0] != "a1" || res.Rows[1][0] != "a2" || res.Rows[0][1] != "A" {
		t.Fatalf("tenant A's rows after B's attempts = %v", res.Rows)
	}
	if err := txA.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if after := outsideTx(t, db); after != before {
		t.Fatalf("session state leaked past rollback:\n before %+v\n after  %+v", before, after)
	}

	// A tenant id is a value, never SQL.
	txX := begin(t, p, "x'); RESET ROLE; --")
	if res := mustQuery(t, txX, `SELECT count(*), current_user FROM notes`); res.Rows[0][0] != int64(0) || res.Rows[0][1] != p.Role() {
		t.Fatalf("odd tenant id: %v", res.Rows)
	}
	txX.Rollback(ctx) //nolint:errcheck // always nil
	if _, err := p.Begin(ctx, ""); err == nil {
		t.Fatal("empty tenant accepted")
	}
}

func TestSchemaIsolation(t *testing.T) {
	db := openDB(t)
	ctx := testCtx(t)
	px := newNotesPlugin(t, db, "iso-x")
	py := newNotesPlugin(t, db, "iso-y")
	ty := begin(t, py, "A")
	mustExec(t, ty, `INSERT INTO notes (body) VALUES ('secret of y')`)
	if err := ty.Commit(ctx, nil); err != nil {
		t.Fatal(err)
	}

	// What the database itself refuses to the plugin's role. rawExec bypasses the SQL guard so this
	// checks the grants, not the guard.
	serverDenied := []string{
		`SELECT * FROM ` + py.Schema() + `.notes`,
		`INSERT INTO ` + py.Schema() + `.notes (body) VALUES ('x')`,
		`CREATE TABLE ` + py.Schema() + `.evil (a int)`,
		`SELECT * FROM keel_host.outbox`,
		`INSERT INTO keel_host.outbox (event_id, topic) VALUES ('forged', 't')`,
		`SELECT * FROM keel_host.schema_migrations`,
		`CREATE TABLE public.evil (a int)`,
		`CREATE SCHEMA evil`,
		// EXECUTE on set_config is taken from PUBLIC, whatever the spelling.
		`SELECT set_config('app.tenant_id', 'B', true)`,
		`SELECT pg_catalog.set_config('role', current_setting('is_superuser'), false)`,
		`SELECT * FROM "pg_catalog"."set_config"('search_path', 'public', true)`,
		`UPDATE pg_settings SET setting = 'B' WHERE name = 'app.tenant_id'`,
	}
	var ownerMay, pluginMay bool
	if err := db.pool.QueryRow(ctx, `SELECT has_function_privilege('pg_database_owner', 'pg_catalog.set_config(text, text, boolean)', 'EXECUTE'),
		has_function_privilege($1, 'pg_catalog.set_config(text, text, boolean)', 'EXECUTE')`, px.Role()).Scan(&ownerMay, &pluginMay); err != nil {
		t.Fatal(err)
	}
	if !ownerMay || pluginMay {
		t.Fatalf("set_config EXECUTE: database owner %v (want true), plugin role %v (want false)", ownerMay, pluginMay)
	}
	for _, sql := range serverDenied {
		tx := begin(t, px, "A")
		if err := rawExec(ctx, tx, sql); pgCode(err) != "42501" {
			t.Errorf("plugin %s: %q: err = %v, want permission denied (42501)", px.Name(), sql, err)
		}
		tx.Rollback(ctx) //nolint:errcheck // always nil
	}

	// What the guard refuses before it reaches the server; the transaction stays usable after.
	tx := begin(t, px, "A")
	defer tx.Rollback(context.Background()) //nolint:errcheck // always nil
	guardDenied := []string{
		`RESET ROLE`,
		`SET ROLE postgres`,
		`SELECT set_config('role', 'postgres', true)`,
		`SELECT set_config('app.tenant_id', 'B', true)`,
		`UPDATE pg_settings SET setting = 'B' WHERE name = 'app.tenant_id'`,
		`COMMIT`,
		`SELECT 1; RESET ROLE`,
		`CREATE TABLE public.evil (a int)`,
		`SELECT * INTO TEMP stash FROM notes`,
		`LISTEN keel_outbox`,
		`SELECT pg_advisory_lock(1)`,
	}
	for _, sql := range guardDenied {
		if _, err := tx.Exec(ctx, sql, nil); !errors.Is(err, ErrStatementDenied) {
			t.Errorf("Exec(%q) = %v, want ErrStatementDenied", sql, err)
		}
		if _, err := tx.Query(ctx, sql, nil); !errors.Is(err, ErrStatementDenied) {
			t.Errorf("Query(%q) = %v, want ErrStatementDenied", sql, err)
		}
	}
	res := mustQuery(t, tx, `SELECT current_user, current_setting('app.tenant_id'), count(*) FROM notes GROUP BY 1, 2`)
	if len(res.Rows) != 0 {
		t.Fatalf("plugin x sees rows in its own empty table: %v", res.Rows)
	}
	res = mustQuery(t, tx, `SELECT current_user, current_setting('app.tenant_id')`)
	if res.Rows[0][0] != px.Role() || res.Rows[0][1] != "A" {
		t.Fatalf("after refused statements: user %v tenant %v", res.Rows[0][0], res.Rows[0][1])
	}
	// Unqualified names resolve in the plugin's own schema.
	if _, err := tx.Query(ctx, `SELECT * FROM outbox`, nil); pgCode(err) != "42P01" {
		t.Fatalf("unqualified outbox: err = %v, want undefined table (42P01)", err)
	}
}

func TestEnsurePluginValidation(t *testing.T) {
	db := openDB(t)
	ctx := testCtx(t)
	for _, name := range []string{"", "Upper", "1abc", "a_b", "host", "a.b", strings.Repeat("a", 42), "a b"} {
		if _, err := EnsurePlugin(ctx, db, name); !errors.Is(err, ErrInvalidPluginName) {
			t.Errorf("EnsurePlugin(%q) = %v, want ErrInvalidPluginName", name, err)
		}
	}
	name := pluginName("dash-ed")
	p, err := EnsurePlugin(ctx, db, name)
	if err != nil {
		t.Fatal(err)
	}
	if want := "plg_" + strings.ReplaceAll(name, "-", "_"); p.Schema() != want || !strings.Contains(want, "_dash_ed_") {
		t.Fatalf("schema = %q, want %q", p.Schema(), want)
	}
	if want := "keel_plg_" + strings.ReplaceAll(name, "-", "_"); p.Role() != want {
		t.Fatalf("role = %q, want %q", p.Role(), want)
	}
	var login, super, bypass bool
	var owner string
	if err := db.pool.QueryRow(ctx, `SELECT r.rolcanlogin, r.rolsuper, r.rolbypassrls, pg_get_userbyid(n.nspowner)
		FROM pg_roles r, pg_namespace n WHERE r.rolname = $1 AND n.nspname = $2`, p.Role(), p.Schema()).Scan(&login, &super, &bypass, &owner); err != nil {
		t.Fatal(err)
	}
	if login || super || bypass || owner != p.Role() {
		t.Fatalf("role login=%v super=%v bypassrls=%v, schema owner %s", login, super, bypass, owner)
	}
	// Idempotent.
	if _, err := EnsurePlugin(ctx, db, name); err != nil {
		t.Fatal(err)
	}
	var zero PluginDB
	if _, err := zero.Begin(ctx, "A"); err == nil {
		t.Fatal("zero PluginDB began a transaction")
	}
}

func TestVerifyTenantTables(t *testing.T) {
	db := openDB(t)
	ctx := testCtx(t)
	plugin := pluginName("verify")
	src := fstest.MapFS{"0001_tables.sql": {Data: []byte(notesSQL + `
CREATE TABLE no_rls (tenant_id text NOT NULL DEFAULT current_setting('app.tenant_id'), v int);
CREATE TABLE not_forced (tenant_id text NOT NULL, v int);
ALTER TABLE not_forced ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON not_forced USING (tenant_id = current_setting('app.tenant_id', true));
CREATE TABLE open_policy (tenant_id text NOT NULL, v int);
ALTER TABLE open_policy ENABLE ROW LEVEL SECURITY;
ALTER TABLE open_policy FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON open_policy USING (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY everyone ON open_policy USING (true);
CREATE TABLE lookup (code text PRIMARY KEY);
`)}}
	if _, err := Migrate(ctx, db, plugin, src); err != nil {
		t.Fatal(err)
	}
	err := db.VerifyTenantTables(ctx, plugin)
	if !errors.Is(err, ErrUnprotectedTenantTables) {
		t.Fatalf("VerifyTenantTables = %v, want ErrUnprotectedTenantTables", err)
	}
	msg := err.Error()
	for _, want := range []string{"no_rls (row level security not enabled, row level security not forced, no permissive policy)",
		"not_forced (row level security not forced)", "open_policy (policy everyone does not check app.tenant_id)"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	for _, clean := range []string{".notes", "lookup"} {
		if strings.Contains(msg, clean) {
			t.Errorf("error %q lists %s, which is fine", msg, clean)
		}
	}
}

// TestReadmeExample applies the example migration of migrations/README.md, so the documented
// conventions are known to pass the guard, the database and VerifyTenantTables.
func TestReadmeExample(t *testing.T) {
	readme, err := os.ReadFile("../../migrations/README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "Example, `migrations/master-data/0001_customers.sql`:\n\n```sql\n")
	sql, _, ok2 := strings.Cut(after, "```")
	if !ok || !ok2 {
		t.Fatal("example migration not found in migrations/README.md")
	}
	db := openDB(t)
	ctx := testCtx(t)
	plugin := pluginName("readme")
	if _, err := Migrate(ctx, db, plugin, fstest.MapFS{"0001_customers.sql": {Data: []byte(sql)}}); err != nil {
		t.Fatal(err)
	}
	if err := db.VerifyTenantTables(ctx, plugin); err != nil {
		t.Fatal(err)
	}
	p, err := EnsurePlugin(ctx, db, plugin)
	if err != nil {
		t.Fatal(err)
	}
	tx := begin(t, p, "t1")
	defer tx.Rollback(ctx) //nolint:errcheck // always nil
	res := mustQuery(t, tx, `INSERT INTO customers (code, name) VALUES ($1, $2) RETURNING id, tenant_id`, "C1", "Acme")
	if len(res.Rows) != 1 || res.Rows[0][1] != "t1" || res.Columns[0].Type != "uuid" {
		t.Fatalf("insert returned %v %v", res.Columns, res.Rows)
	}
}
