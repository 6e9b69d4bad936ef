package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keelhq/keel/bridges/postgres/pgtest"
	"github.com/keelhq/keel/host/internal/testkit"
)

// TestDatabaseConnectionsKilled has PostgreSQL drop every connection of the test
// database twice (as in a failover, or an operator's pg_terminate_backend) while plugin
// calls write through the unit of work. The calls that lose their connection fail
// with a JSON 5xx and none hangs; the host recovers by itself, without a restart; and
// every write that was answered 201 is in the table afterwards.
func TestDatabaseConnectionsKilled(t *testing.T) {
	_, base, name := ledger(t)
	api := base + "/api/" + name
	client := &http.Client{Timeout: 20 * time.Second}
	post := func(path, body string) (int, string, error) {
		req, _ := http.NewRequest("POST", api+path, strings.NewReader(body))
		req.Header.Set("X-Tenant-ID", "acme")
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	st, body, err := post("/sql", `SELECT current_database() AS db`)
	if err != nil || st != 200 {
		t.Fatalf("database name: %d %s %v", st, body, err)
	}
	var dbs []struct{ DB string }
	if err := json.Unmarshal([]byte(body), &dbs); err != nil || len(dbs) != 1 {
		t.Fatalf("database name: %s", body)
	}
	admin, err := pgx.Connect(context.Background(), pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	kill := func() int {
		var n int
		err := admin.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = $1 AND pid <> pg_backend_pid()`, dbs[0].DB).Scan(&n)
		if err != nil {
			t.Errorf("terminating backends: %v", err)
		}
		return n
	}

	var (
		mu      sync.Mutex
		written []string // notes answered 201
		failed  int
		wg      sync.WaitGroup
	)
	stop := time.Now().Add(3 * time.Second)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				note := fmt.Sprintf("w%d-%d", w, i)
				t0 := time.Now()
				st, body, err := post("/entries", `{"note":"`+note+`"}`)
				mu.Lock()
				switch {
				case err != nil:
					t.Errorf("%s: %v", note, err)
				case time.Since(t0) > 15*time.Second:
					t.Errorf("%s: answered after %s", note, time.Since(t0))
				case st == 201:
					written = append(written, note)
				case st >= 500 && json.Valid([]byte(body)):
					failed++
					// The statement lost its connection (the plugin's report of code
					// unavailable) or the commit did (the host's 503 plugin_commit).
					if !strings.Contains(body, `"code":"unavailable"`) && !(st == 503 && strings.Contains(body, `"code":"plugin_commit"`)) {
						t.Errorf("%s: %d %s, want the database reported unavailable or the commit failed", note, st, body)
					}
				default:
					t.Errorf("%s: %d %s, want 201 or a JSON 5xx", note, st, body)
				}
				mu.Unlock()
			}
		}(w)
	}
	time.Sleep(time.Second)
	killed := kill()
	time.Sleep(time.Second)
	killed += kill()
	wg.Wait()
	if killed == 0 {
		t.Fatal("no backend was terminated; the test did not test anything")
	}

	// Recovery: new calls succeed without anyone restarting the host.
	tries := 0
	testkit.WaitFor(t, 15*time.Second, "a write to succeed after the connections were killed", func() bool {
		tries++
		st, _, err := post("/entries", `{"note":"after"}`)
		return err == nil && st == 201
	})
	st, body, err = post("/sql", `SELECT note FROM entries`)
	if err != nil || st != 200 {
		t.Fatalf("reading back: %d %s %v", st, body, err)
	}
	var rows []struct{ Note string }
	if err := json.Unmarshal([]byte(body), &rows); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, r := range rows {
		have[r.Note] = true
	}
	for _, n := range written {
		if !have[n] {
			t.Errorf("write %s was answered 201 but is not in the table", n)
		}
	}
	// A failed write may still have committed (the connection died after COMMIT reached
	// the server and before its answer came back), but nothing else can appear.
	if len(rows) > len(written)+failed+tries {
		t.Errorf("%d rows from %d acknowledged, %d failed and %d recovery writes", len(rows), len(written), failed, tries)
	}
	t.Logf("%d backends terminated; %d writes answered 201, %d failed with a 5xx, %d rows", killed, len(written), failed, len(rows))
	if len(written) == 0 {
		t.Fatal("no write succeeded during the run")
	}
}
