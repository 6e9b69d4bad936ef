package sqlguard

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckStatement(t *testing.T) {
	allowed := []string{
		"SELECT * FROM items",
		"select 1;",
		"  (SELECT 1) UNION (SELECT 2)",
		"WITH x AS (SELECT 1) SELECT * FROM x",
		"INSERT INTO t (a) VALUES ($1) RETURNING id",
		"WITH x AS (SELECT 1 AS a) INSERT INTO t SELECT a FROM x",
		"UPDATE t SET role = 'admin' WHERE id = $1",
		"DELETE FROM t WHERE id = $1",
		"SELECT 'set_config(''role'', ''postgres'', true)' AS harmless_text",
		"SELECT $$RESET ROLE$$",
		"SELECT current_setting('app.tenant_id', true)",
		"SELECT 1 -- ; RESET ROLE\n",
		"SELECT /* ; RESET ROLE */ 1",
		"SELECT e'it\\'s ; fine'",
		"SELECT pg_advisory_xact_lock(1)",
		"VALUES (1), (2)",
		"SELECT * FROM t FOR UPDATE SKIP LOCKED",
	}
	for _, sql := range allowed {
		if err := CheckStatement(sql); err != nil {
			t.Errorf("CheckStatement(%q) = %v, want nil", sql, err)
		}
	}
	denied := []string{
		"",
		";",
		"RESET ROLE",
		"SET ROLE postgres",
		"set local role postgres",
		"SET app.tenant_id = 'other'",
		"SET SESSION AUTHORIZATION postgres",
		"COMMIT",
		"ROLLBACK",
		"BEGIN",
		"SELECT 1; RESET ROLE",
		"SELECT 1; SELECT 2",
		"SELECT set_config('app.tenant_id', 'B', true)",
		"SELECT pg_catalog.set_config('role', 'postgres', true)",
		`SELECT "set_config"('role', 'postgres', true)`,
		"SELECT SET_CONFIG('role', 'postgres', true)",
		"SELECT 0=1or set_config('role','postgres',true)",
		"UPDATE pg_settings SET setting = 'B' WHERE name = 'app.tenant_id'",
		"SELECT query_to_xml('select 1', true, true, '')",
		"SELECT * FROM ts_stat('select 1')",
		"SELECT pg_advisory_lock(42)",
		"SELECT * INTO TEMP t2 FROM t",
		"CREATE TEMP TABLE x (a int)",
		"CREATE TABLE public.x (a int)",
		"DROP TABLE t",
		"DO $$ BEGIN RESET ROLE; END $$",
		"COPY t TO STDOUT",
		"LISTEN keel_outbox",
		"PREPARE p AS SELECT 1",
		"DECLARE c CURSOR WITH HOLD FOR SELECT 1",
		"DISCARD ALL",
		"SELECT 'unterminated",
		"SELECT $x$ unterminated",
		"SELECT /* unterminated",
		`SELECT U&"\0073et_config"('role','postgres',true)`,
		"EXPLAIN ANALYZE DELETE FROM t",
	}
	for _, sql := range denied {
		err := CheckStatement(sql)
		if err == nil {
			t.Errorf("CheckStatement(%q) = nil, want denial", sql)
			continue
		}
		if !errors.Is(err, ErrDenied) {
			t.Errorf("CheckStatement(%q) error %v does not wrap ErrDenied", sql, err)
		}
	}
}

func TestCheckMigration(t *testing.T) {
	allowed := []string{
		`CREATE TABLE items (
			id bigserial PRIMARY KEY,
			tenant_id text NOT NULL DEFAULT current_setting('app.tenant_id'),
			role text
		);
		ALTER TABLE items ENABLE ROW LEVEL SECURITY;
		ALTER TABLE items FORCE ROW LEVEL SECURITY;
		CREATE POLICY tenant_isolation ON items USING (tenant_id = current_setting('app.tenant_id', true))
			WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
		CREATE INDEX items_tenant ON items (tenant_id, id);
		ALTER TABLE items ALTER COLUMN role SET DEFAULT 'user';
		INSERT INTO items (tenant_id, role) VALUES ('seed', 'set role please');`,
		`CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			NEW.updated_at := now();
			UPDATE audit SET role = 'x' WHERE id = NEW.id;
			RETURN NEW;
		END $$;`,
		`CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql IMMUTABLE SET search_path = pg_catalog AS 'SELECT a + b'`,
		`DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_class WHERE relname = 'x') THEN CREATE TABLE x (a int); END IF; END $$`,
	}
	for _, sql := range allowed {
		if err := CheckMigration(sql); err != nil {
			t.Errorf("CheckMigration(%q) = %v, want nil", sql, err)
		}
	}
	denied := map[string]string{
		"RESET ROLE; CREATE TABLE keel_host.x (a int)":           "reset",
		"CREATE TABLE a (x int); COMMIT; CREATE TABLE b (x int)": "commit",
		"SET ROLE postgres":                            "set",
		"SELECT set_config('role', 'postgres', false)": "set_config",
		"CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN RESET ROLE; END $$":                                       "reset",
		"CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $f$ BEGIN SET ROLE postgres; END $f$":                              "set",
		"CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN <<l>> SET ROLE x; END $$":                                 "set",
		"CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'RE' || 'SET ROLE'; END $$":                       "EXECUTE",
		"CREATE FUNCTION f() RETURNS text LANGUAGE sql AS 'SELECT set_config(''role'',''postgres'',true)'":                       "set_config",
		"CREATE FUNCTION f() RETURNS int LANGUAGE sql SET role = postgres AS 'SELECT 1'":                                         "role",
		"ALTER FUNCTION f() SET role TO postgres":                                                                                "role",
		"DO $$ BEGIN PERFORM pg_catalog.set_config('app.tenant_id', 'x', false); END $$":                                         "set_config",
		"DO $a$ BEGIN EXECUTE $b$ SELECT 1 $b$; END $a$":                                                                         "EXECUTE",
		"DO $a$ BEGIN CREATE FUNCTION g() RETURNS void LANGUAGE plpgsql AS $b$ BEGIN SET search_path = public; END $b$; END $a$": "set",
		"LISTEN x": "listen",
		"CREATE RULE r AS ON INSERT TO t DO ALSO SELECT set_config('role','postgres',true)": "set_config",
		"CREATE TABLE t (a text DEFAULT set_config('app.tenant_id', 'x', false))":           "set_config",
	}
	for sql, want := range denied {
		err := CheckMigration(sql)
		if err == nil || !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckMigration(%q) = %v, want ErrDenied mentioning %q", sql, err, want)
		}
	}
}

// FuzzLex checks the tokenizer and both guards on arbitrary input: they must not panic or loop, every
// failure must be a tokenizer error, and accepted words must come out lowercased.
func FuzzLex(f *testing.F) {
	for _, s := range []string{
		"SELECT 1", "select $1, 'a''b', \"q\"\"x\", e'\\'', $t$x$t$, /* /* */ */ -- c\n;",
		"DO $$ BEGIN RESET ROLE; END $$", "U&'x'", "1or", "$", "$a", "$$", "'", "/*", "x$y$z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		toks, err := lex(src)
		if err != nil {
			if !errors.Is(err, errLex) {
				t.Fatalf("lex error %v does not wrap errLex", err)
			}
			return
		}
		for _, tk := range toks {
			if tk.kind == kWord && strings.ToLower(tk.text) != tk.text {
				t.Fatalf("word %q not lowercased", tk.text)
			}
			if tk.kind == kSemicolon && tk.text != ";" {
				t.Fatalf("semicolon token %q", tk.text)
			}
		}
		_ = CheckStatement(src)
		_ = CheckMigration(src)
	})
}
