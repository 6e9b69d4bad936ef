package postgres

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/keelhq/keel/bridges/postgres/internal/migfile"
	hostmigrations "github.com/keelhq/keel/migrations/host"
)

func TestMigrateHostScope(t *testing.T) {
	db := openDB(t)
	ctx := testCtx(t)
	// TestMain applied the host migrations; a second run must find nothing to do.
	applied, err := Migrate(ctx, db, HostScope, hostmigrations.FS())
	if err != nil || len(applied) != 0 {
		t.Fatalf("re-run host migrations = %v, %v; want nothing applied", applied, err)
	}
	var n int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM keel_host.schema_migrations WHERE scope = 'host' AND name = '0001_outbox.sql'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("host migration record count = %d, %v", n, err)
	}
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM keel_host.outbox`).Scan(&n); err != nil {
		t.Fatalf("keel_host.outbox missing: %v", err)
	}
}

func TestMigrateOrderRecordsAndIdempotence(t *testing.T) {
	db := openDB(t)
	ctx := testCtx(t)
	plugin := pluginName("mig")
	src := fstest.MapFS{
		"0010_ten.sql":    {Data: []byte("INSERT INTO steps (n) VALUES (10);")},
		"0002_two.sql":    {Data: []byte("INSERT INTO steps (n) VALUES (2);")},
		"0001_create.sql": {Data: []byte("CREATE TABLE steps (id serial PRIMARY KEY, n int NOT NULL);\nINSERT INTO steps (n) VALUES (1);")},
		"README.md":       {Data: []byte("not a migration")},
	}
	applied, err := Migrate(ctx, db, plugin, src)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"0001_create.sql", "0002_two.sql", "0010_ten.sql"}; !reflect.DeepEqual(applied, want) {
		t.Fatalf("applied = %v, want %v", applied, want)
	}
	p, err := EnsurePlugin(ctx, db, plugin)
	if err != nil {
		t.Fatal(err)
	}

	// Applied in numeric order: the serial ids follow the order the INSERTs ran.
	rows, _ := db.pool.Query(ctx, fmt.Sprintf(`SELECT n FROM %s.steps ORDER BY id`, p.Schema()))
	var order []int
	for rows.Next() {
		var n int
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		order = append(order, n)
	}
	if err := rows.Err(); err != nil || !reflect.DeepEqual(order, []int{1, 2, 10}) {
		t.Fatalf("execution order = %v (%v), want [1 2 10]", order, err)
	}

	// Recorded with version, name and the file's sha256.
	rows, _ = db.pool.Query(ctx, `SELECT version, name, checksum FROM keel_host.schema_migrations WHERE scope = $1 ORDER BY version`, plugin)
	var got []string
	for rows.Next() {
		var v int64
		var name, sum string
		if err := rows.Scan(&v, &name, &sum); err != nil {
			t.Fatal(err)
		}
		if sum != migfile.Checksum(src[name].Data) {
			t.Errorf("%s: recorded checksum %s, want sha256 of the file", name, sum)
		}
		got = append(got, fmt.Sprintf("%d:%s", v, name))
	}
	if want := []string{"1:0001_create.sql", "2:0002_two.sql", "10:0010_ten.sql"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("records = %v, want %v", got, want)
	}

	// Tables belong to the plugin's role and schema.
	var owner, schema string
	if err := db.pool.QueryRow(ctx, `SELECT tableowner, schemaname FROM pg_tables WHERE tablename = 'steps' AND schemaname = $1`, p.Schema()).Scan(&owner, &schema); err != nil {
		t.Fatal(err)
	}
	if owner != p.Role() || schema != p.Schema() {
		t.Fatalf("steps owned by %s in %s, want %s in %s", owner, schema, p.Role(), p.Schema())
	}

	// Idempotent.
	applied, err = Migrate(ctx, db, plugin, src)
	if err != nil || len(applied) != 0 {
		t.Fatalf("re-run = %v, %v; want nothing applied", applied, err)
	}

	// A changed, already-applied file is refused by name, and nothing after it runs.
	src["0002_two.sql"] = &fstest.MapFile{Data: []byte("INSERT INTO steps (n) VALUES (22);")}
	src["0011_next.sql"] = &fstest.MapFile{Data: []byte("INSERT INTO steps (n) VALUES (11);")}
	applied, err = Migrate(ctx, db, plugin, src)
	if !errors.Is(err, ErrChecksumMismatch) || !strings.Contains(err.Error(), "0002_two.sql") || len(applied) != 0 {
		t.Fatalf("changed file: applied %v, err %v; want ErrChecksumMismatch naming 0002_two.sql", applied, err)
	}
	var count int
	if err := db.pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s.steps`, p.Schema())).Scan(&count); err != nil || count != 3 {
		t.Fatalf("rows after refused run = %d, %v; want 3", count, err)
	}

	// A renamed file with the same version is refused too.
	delete(src, "0011_next.sql")
	delete(src, "0002_two.sql")
	src["0002_renamed.sql"] = &fstest.MapFile{Data: []byte("INSERT INTO steps (n) VALUES (2);")}
	if _, err := Migrate(ctx, db, plugin, src); !errors.Is(err, ErrChecksumMismatch) || !strings.Contains(err.Error(), "0002_renamed.sql") {
		t.Fatalf("renamed file: err %v; want ErrChecksumMismatch naming 0002_renamed.sql", err)
	}
}

func TestMigrateConcurrentHosts(t *testing.T) {
	ctx := testCtx(t)
	plugin := pluginName("conc")
	// None of these files can run twice: the CREATE, the primary key and the ADD COLUMN would fail.
	src := fstest.MapFS{
		"0001_create.sql": {Data: []byte("CREATE TABLE once (id int PRIMARY KEY);")},
		"0002_one.sql":    {Data: []byte("INSERT INTO once VALUES (1);")},
		"0003_two.sql":    {Data: []byte("INSERT INTO once VALUES (2);")},
		"0004_col.sql":    {Data: []byte("ALTER TABLE once ADD COLUMN note text;")},
		"0005_sleep.sql":  {Data: []byte("SELECT pg_sleep(0.05); INSERT INTO once VALUES (3);")},
	}
	// Four hosts: four pools, started together.
	var dbs []*DB
	for range 4 {
		dbs = append(dbs, openDB(t, WithMaxConns(2)))
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	results := make([][]string, len(dbs))
	errs := make([]error, len(dbs))
	for i, db := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], errs[i] = Migrate(ctx, db, plugin, src)
		}()
	}
	close(start)
	wg.Wait()
	var all []string
	for i := range dbs {
		if errs[i] != nil {
			t.Fatalf("host %d: %v", i, errs[i])
		}
		all = append(all, results[i]...)
	}
	slices.Sort(all)
	if want := []string{"0001_create.sql", "0002_one.sql", "0003_two.sql", "0004_col.sql", "0005_sleep.sql"}; !reflect.DeepEqual(all, want) {
		t.Fatalf("files applied across hosts = %v, want each exactly once: %v", all, want)
	}
	var n int
	if err := dbs[0].pool.QueryRow(ctx, `SELECT count(*) FROM keel_host.schema_migrations WHERE scope = $1`, plugin).Scan(&n); err != nil || n != 5 {
		t.Fatalf("records = %d, %v; want 5", n, err)
	}
}

func TestMigrateRefusals(t *testing.T) {
	db := openDB(t)
	ctx := testCtx(t)
	plugin := pluginName("bad")
	tests := []struct {
		name string
		src  fstest.MapFS
		want []string // substrings of the error
		code string   // SQLSTATE, when the server refuses
	}{
		{"bad file name", fstest.MapFS{"0001_ok.sql": {}, "init.sql": {}}, []string{"init.sql"}, ""},
		{"guard: reset role", fstest.MapFS{"0001_escape.sql": {Data: []byte("RESET ROLE; CREATE TABLE keel_host.evil (a int);")}}, []string{"0001_escape.sql", "reset"}, ""},
		{"guard: commit", fstest.MapFS{"0001_commit.sql": {Data: []byte("CREATE TABLE a (x int); COMMIT;")}}, []string{"0001_commit.sql", "commit"}, ""},
		{"server: table in public", fstest.MapFS{"0001_public.sql": {Data: []byte("CREATE TABLE public.evil (a int);")}}, []string{"0001_public.sql"}, "42501"},
		{"server: table in keel_host", fstest.MapFS{"0001_host.sql": {Data: []byte("CREATE TABLE keel_host.evil (a int);")}}, []string{"0001_host.sql"}, "42501"},
		{"server: new schema", fstest.MapFS{"0001_schema.sql": {Data: []byte("CREATE SCHEMA evil;")}}, []string{"0001_schema.sql"}, "42501"},
		{"server: outbox row", fstest.MapFS{"0001_forge.sql": {Data: []byte("INSERT INTO keel_host.outbox (event_id, topic) VALUES ('forged', 't');")}}, []string{"0001_forge.sql"}, "42501"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Migrate(ctx, db, plugin, tt.src)
			if err == nil {
				t.Fatal("Migrate succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if tt.code != "" && pgCode(err) != tt.code {
				t.Errorf("SQLSTATE = %q, want %s (%v)", pgCode(err), tt.code, err)
			}
			if tt.code == "" && !strings.Contains(tt.name, "file name") && !errors.Is(err, ErrStatementDenied) {
				t.Errorf("error %v does not wrap ErrStatementDenied", err)
			}
		})
	}
	if _, err := Migrate(ctx, db, "Bad_Name", fstest.MapFS{}); !errors.Is(err, ErrInvalidPluginName) {
		t.Fatalf("invalid scope: %v", err)
	}
	var n int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM keel_host.schema_migrations WHERE scope = $1`, plugin).Scan(&n); err != nil || n != 0 {
		t.Fatalf("refused migrations recorded: %d, %v", n, err)
	}
}
