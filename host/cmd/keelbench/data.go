package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/keelhq/keel/abi/wire"
	"github.com/keelhq/keel/bridges/cache"
	"github.com/keelhq/keel/bridges/postgres/pgtest"
	"github.com/keelhq/keel/host/internal/config"
	"github.com/keelhq/keel/host/internal/server"
	"github.com/keelhq/keel/host/internal/testkit"
)

const benchTenant = "bench"

// dataServer starts a host with the bench-data guest on a throwaway database.
func dataServer(ctx context.Context, logger *slog.Logger, extra ...string) (*server.Server, string, func(), error) {
	db, err := pgtest.Create(ctx)
	if err != nil {
		return nil, "", nil, err
	}
	pdir, err := pluginsDir("bench/guests/data")
	if err != nil {
		return nil, "", nil, err
	}
	// A fresh data directory per run (its embedded NATS must start empty), sharing the
	// compilation cache so that runs measure serving, not compiling.
	dataDir, err := os.MkdirTemp("", "keelbench-data-")
	if err != nil {
		return nil, "", nil, err
	}
	if err := os.MkdirAll(testkit.CacheDir(), 0o755); err != nil {
		return nil, "", nil, err
	}
	if err := os.Symlink(testkit.CacheDir(), filepath.Join(dataDir, "compile-cache")); err != nil {
		return nil, "", nil, err
	}
	args := append([]string{"--http-addr", "127.0.0.1:0", "--data-dir", dataDir,
		"--plugins-dir", pdir, "--access-log=false", "--log-level", "error", "--database-url", db.URL()}, extra...)
	cfg, err := config.Load(nil, args)
	if err != nil {
		return nil, "", nil, err
	}
	srv, err := server.New(ctx, cfg, logger)
	if err != nil {
		return nil, "", nil, err
	}
	if err := srv.Start(ctx); err != nil {
		return nil, "", nil, err
	}
	if srv.Plugins().Lookup("bench-data") == nil {
		return nil, "", nil, fmt.Errorf("bench-data plugin did not activate")
	}
	stop := func() {
		srv.Shutdown(context.Background())
		db.Drop(context.Background(), "keel_plg_bench_data")
		os.RemoveAll(dataDir)
	}
	return srv, db.URL(), stop, nil
}

func pluginCall(ctx context.Context, srv *server.Server, method, path, route string, params []wire.KV) (*wire.HTTPResponse, error) {
	p := srv.Plugins().Lookup("bench-data").Plugin
	return p.HTTP(ctx, &wire.HTTPRequest{Method: method, Path: path, Route: route, Params: params,
		Ctx: wire.CallContext{RequestID: "bench", Tenant: benchTenant, Subject: "bench"}}, nil)
}

// backends lists the PostgreSQL processes serving the benchmark's database: the
// connections of the host's pools and of the native side's pool alike.
func backends(ctx context.Context, pool *pgxpool.Pool) []int {
	rows, err := pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		return nil
	}
	pids, _ := pgx.CollectRows(rows, pgx.RowTo[int])
	return pids
}

// timePair runs a and b alternately n times after a warm-up and returns their
// medians and means. Interleaving makes both see the same machine, which matters on a
// shared, noisy host more than any other precaution.
func timePair(n int, a, b func(i int) error) (ma, mb, meanA, meanB time.Duration, err error) {
	for i := 0; i < n/3; i++ {
		if err := a(i); err != nil {
			return 0, 0, 0, 0, err
		}
		if err := b(i); err != nil {
			return 0, 0, 0, 0, err
		}
	}
	la, lb := make([]time.Duration, n), make([]time.Duration, n)
	var ta, tb time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if err := a(i); err != nil {
			return 0, 0, 0, 0, err
		}
		t1 := time.Now()
		if err := b(i); err != nil {
			return 0, 0, 0, 0, err
		}
		la[i], lb[i] = t1.Sub(t0), time.Since(t1)
		ta, tb = ta+la[i], tb+lb[i]
	}
	sortDurations(la)
	sortDurations(lb)
	return percentile(la, 50), percentile(lb, 50), ta / time.Duration(n), tb / time.Duration(n), nil
}

// timeN runs f n times after a warm-up and returns the median and mean.
func timeN(n int, f func(i int) error) (median, mean time.Duration, err error) {
	for i := 0; i < n/3; i++ {
		if err := f(i); err != nil {
			return 0, 0, err
		}
	}
	lat := make([]time.Duration, n)
	start := time.Now()
	for i := range lat {
		t0 := time.Now()
		if err := f(i); err != nil {
			return 0, 0, err
		}
		lat[i] = time.Since(t0)
	}
	total := time.Since(start)
	sortDurations(lat)
	return percentile(lat, 50), total / time.Duration(n), nil
}

// benchSQL compares reading one customer by id through the SQL capability (a plugin
// call: transaction with the tenant set, query, commit) with the same transaction
// done by pgx in the host.
func benchSQL(ctx context.Context, logger *slog.Logger) error {
	srv, url, stop, err := dataServer(ctx, logger)
	if err != nil {
		return err
	}
	defer stop()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `INSERT INTO plg_bench_data.customers (id, tenant_id, name, email)
		SELECT 'c' || g, $1, 'Customer ' || g, 'c' || g || '@example.com' FROM generate_series(1, 1000) g`, benchTenant); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	const n = 3000
	// byID reads customer i through the plugin route under prefix ("" or "/ro").
	byID := func(prefix string) func(i int) error {
		return func(i int) error {
			id := fmt.Sprintf("c%d", i%1000+1)
			r, err := pluginCall(ctx, srv, "GET", prefix+"/customers/"+id, prefix+"/customers/:id", []wire.KV{{Name: "id", Value: id}})
			if err != nil {
				return err
			}
			if r.Status != 200 {
				return fmt.Errorf("plugin route %s/customers/:id: %d %s", prefix, r.Status, r.Body)
			}
			return nil
		}
	}
	plugin := byID("")
	sameWork := func(i int) error {
		tx, err := pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		b := &pgx.Batch{}
		b.Queue(`SELECT set_config('role', 'keel_plg_bench_data', true), set_config('app.tenant_id', $1, true)`, benchTenant)
		var id, name, email string
		b.Queue(`SELECT id, name, email FROM plg_bench_data.customers WHERE id = $1`, fmt.Sprintf("c%d", i%1000+1)).QueryRow(func(row pgx.Row) error {
			return row.Scan(&id, &name, &email)
		})
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	bare := func(i int) error {
		var id, name, email string
		return pool.QueryRow(ctx, `SELECT id, name, email FROM plg_bench_data.customers WHERE tenant_id = $1 AND id = $2`,
			benchTenant, fmt.Sprintf("c%d", i%1000+1)).Scan(&id, &name, &email)
	}
	// A read_only route: one round trip, the tenant switch travelling with the query in
	// one implicit transaction; the native equivalent pipelines the same two statements.
	roNative := func(i int) error {
		b := &pgx.Batch{}
		b.Queue(`SELECT set_config('role', 'keel_plg_bench_data', true), set_config('app.tenant_id', $1, true), set_config('transaction_read_only', 'on', true)`, benchTenant)
		var id, name, email string
		b.Queue(`SELECT id, name, email FROM plg_bench_data.customers WHERE id = $1`, fmt.Sprintf("c%d", i%1000+1)).QueryRow(func(row pgx.Row) error {
			return row.Scan(&id, &name, &email)
		})
		return pool.SendBatch(ctx, b).Close()
	}
	// The pairs below compare one PostgreSQL round trip with another; warm every path
	// (so that both pools hold their connections), then pin the backends apart from
	// this process (see placement).
	roPlugin := byID("/ro")
	for i := 0; i < 50; i++ {
		for _, f := range []func(int) error{plugin, sameWork, roPlugin, roNative, bare} {
			if err := f(i); err != nil {
				return err
			}
		}
	}
	pl, pinErr := pinApart(backends(ctx, pool))
	defer pl.restore()
	repin := func() {
		if pl != nil {
			if err := pl.pinServers(backends(ctx, pool)); err != nil {
				logger.Warn("pinning a new backend failed", "err", err)
			}
		}
	}
	pm, sm, pmean, smean, err := timePair(n, plugin, sameWork)
	if err != nil {
		return err
	}
	repin()
	rpm, rnm, _, _, err := timePair(n, roPlugin, roNative)
	if err != nil {
		return err
	}
	repin()
	bm, _, err := timeN(n, bare)
	if err != nil {
		return err
	}
	// Per statement inside an open unit of work: 20 reads in one invocation against 20
	// reads in one pgx transaction with the tenant set.
	const per = 20
	batchPlugin := func(int) error {
		r, err := srv.Plugins().Lookup("bench-data").Plugin.HTTP(ctx, &wire.HTTPRequest{Method: "GET", Path: "/batch", Route: "/batch",
			Query: fmt.Sprintf("n=%d", per), Ctx: wire.CallContext{RequestID: "bench", Tenant: benchTenant}}, nil)
		if err != nil {
			return err
		}
		if r.Status != 200 {
			return fmt.Errorf("batch: %d %s", r.Status, r.Body)
		}
		return nil
	}
	batchNative := func(int) error {
		tx, err := pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `SELECT set_config('role', 'keel_plg_bench_data', true), set_config('app.tenant_id', $1, true)`, benchTenant); err != nil {
			return err
		}
		for i := 0; i < per; i++ {
			var id, name, email string
			if err := tx.QueryRow(ctx, `SELECT id, name, email FROM plg_bench_data.customers WHERE id = $1`, fmt.Sprintf("c%d", i%1000+1)).Scan(&id, &name, &email); err != nil {
				return err
			}
		}
		return tx.Commit(ctx)
	}
	repin()
	bpm, bnm, _, _, err := timePair(n/10, batchPlugin, batchNative)
	if err != nil {
		return err
	}
	if pinErr != nil {
		record("SQL placement: not pinned", pinErr.Error(), "", "", "")
	} else {
		record("SQL placement: pinned apart", pl.String(), "", "", "")
	}
	record("SQL by id through the capability, median", us(pm), "pgx same tx "+us(sm), fmt.Sprintf("%.2f×", float64(sm)/float64(pm)), "≥ 0.8×")
	record(fmt.Sprintf("SQL per statement, %d reads in one unit of work", per), us(bpm/per), "pgx "+us(bnm/per), fmt.Sprintf("%.2f×", float64(bnm)/float64(bpm)), "≥ 0.8×")
	record("SQL by id, mean (ops/s)", fmt.Sprintf("%.0f/s", 1/pmean.Seconds()), fmt.Sprintf("%.0f/s", 1/smean.Seconds()), fmt.Sprintf("%.2f×", float64(smean)/float64(pmean)), "")
	record("SQL by id, read_only route (1 round trip), median", us(rpm), "pgx pipelined, implicit tx "+us(rnm), fmt.Sprintf("%.2f×", float64(rnm)/float64(rpm)), "≥ 0.8×")
	record("  (read_only route vs pgx same tx above)", "", "", fmt.Sprintf("%.2f×", float64(sm)/float64(rpm)), "")
	record("  (reference: bare pgx QueryRow, no tx, no RLS)", "", us(bm), fmt.Sprintf("%.2f×", float64(bm)/float64(pm)), "")
	return nil
}

// benchCache compares a cache read through the capability (Redis behind the host)
// with a go-redis GET of the same key from the host.
func benchCache(ctx context.Context, logger *slog.Logger) error {
	srv, _, stop, err := dataServer(ctx, logger, "--redis-url", "redis://127.0.0.1:6379/0")
	if err != nil {
		return err
	}
	defer stop()
	key := "bench-" + pgtest.RandomSuffix(6)
	val := strings.Repeat("v", 1024)
	p := srv.Plugins().Lookup("bench-data").Plugin
	r, err := p.HTTP(ctx, &wire.HTTPRequest{Method: "PUT", Path: "/cache/" + key, Route: "/cache/:key", Params: []wire.KV{{Name: "key", Value: key}},
		Body: []byte(val), Ctx: wire.CallContext{Tenant: benchTenant}}, nil)
	if err != nil || r.Status != 200 {
		return fmt.Errorf("cache set: %v %v", r, err)
	}
	rc := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379"})
	defer rc.Close()
	full := cache.Key("bench-data", benchTenant, key)
	const n = 5000
	// Both sides read through their own connection to the one redis-server process:
	// pin it apart from this process, as the SQL pairs do with PostgreSQL.
	var pids []int
	if info, err := rc.Info(ctx, "server").Result(); err == nil {
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
				if pid, err := strconv.Atoi(v); err == nil {
					pids = append(pids, pid)
				}
			}
		}
	}
	pl, pinErr := pinApart(pids)
	defer pl.restore()
	pm, dm, _, _, err := timePair(n, func(int) error {
		r, err := pluginCall(ctx, srv, "GET", "/cache/"+key, "/cache/:key", []wire.KV{{Name: "key", Value: key}})
		if err != nil {
			return err
		}
		if r.Status != 200 || len(r.Body) != 1024 {
			return fmt.Errorf("cache get through plugin: %d", r.Status)
		}
		return nil
	}, func(int) error {
		v, err := rc.Get(ctx, full).Bytes()
		if err == nil && len(v) != 1024 {
			err = fmt.Errorf("direct get: %d bytes", len(v))
		}
		return err
	})
	if err != nil {
		return err
	}
	// One read inside an invocation: 50 reads per call against 50 go-redis reads, each
	// into a reused buffer (AppendGet) and, second, into a new slice (Get).
	const per = 50
	batch := func(query string) (plugin, direct time.Duration, err error) {
		pm, dm, _, _, err := timePair(n/10, func(int) error {
			r, err := srv.Plugins().Lookup("bench-data").Plugin.HTTP(ctx, &wire.HTTPRequest{Method: "GET", Path: "/cache-batch/" + key, Route: "/cache-batch/:key",
				Params: []wire.KV{{Name: "key", Value: key}}, Query: query, Ctx: wire.CallContext{RequestID: "bench", Tenant: benchTenant}}, nil)
			if err != nil {
				return err
			}
			if r.Status != 200 {
				return fmt.Errorf("cache batch: %d %s", r.Status, r.Body)
			}
			return nil
		}, func(int) error {
			for i := 0; i < per; i++ {
				if v, err := rc.Get(ctx, full).Bytes(); err != nil || len(v) != 1024 {
					return fmt.Errorf("direct get: %d bytes, %v", len(v), err)
				}
			}
			return nil
		})
		return pm / per, dm / per, err
	}
	apm, adm, err := batch(fmt.Sprintf("n=%d", per))
	if err != nil {
		return err
	}
	gpm, gdm, err := batch(fmt.Sprintf("n=%d&alloc=1", per))
	if err != nil {
		return err
	}
	if pinErr != nil {
		record("cache placement: not pinned", pinErr.Error(), "", "", "")
	} else {
		record("cache placement: pinned apart", pl.String(), "", "", "")
	}
	record(fmt.Sprintf("cache GET 1 KiB, per read (%d in one invocation), AppendGet", per), us(apm), "go-redis "+us(adm), fmt.Sprintf("%.2f×", float64(adm)/float64(apm)), "≥ 0.7×")
	record("  same, Get (a new slice per read)", us(gpm), "go-redis "+us(gdm), fmt.Sprintf("%.2f×", float64(gdm)/float64(gpm)), "")
	record("  one invocation doing one Get, median", us(pm), "go-redis "+us(dm), fmt.Sprintf("%.2f×", float64(dm)/float64(pm)), "")
	return nil
}

// benchEvents measures events published through the host (outbox, relay, broker) and
// consumed by a subscribing plugin, per second, end to end.
func benchEvents(ctx context.Context, logger *slog.Logger, name string, extra ...string) error {
	srv, _, stop, err := dataServer(ctx, logger, extra...)
	if err != nil {
		return err
	}
	defer stop()
	delivered := func() float64 {
		mfs, _ := srv.Metrics().Registry().Gather()
		var sum float64
		for _, mf := range mfs {
			if mf.GetName() == "keel_bus_delivered_total" {
				for _, m := range mf.Metric {
					sum += m.GetCounter().GetValue()
				}
			}
		}
		return sum
	}
	const calls, per = 20, 250
	start := time.Now()
	for i := 0; i < calls; i++ {
		r, err := srv.Plugins().Lookup("bench-data").Plugin.HTTP(ctx, &wire.HTTPRequest{Method: "POST", Path: "/publish", Route: "/publish",
			Query: fmt.Sprintf("n=%d", per), Ctx: wire.CallContext{Tenant: benchTenant}}, nil)
		if err != nil || r.Status != 200 {
			return fmt.Errorf("publish: %v %v", r, err)
		}
	}
	published := time.Since(start)
	deadline := time.Now().Add(2 * time.Minute)
	for delivered() < calls*per {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %.0f of %d events delivered", delivered(), calls*per)
		}
		time.Sleep(20 * time.Millisecond)
	}
	total := time.Since(start)
	record(fmt.Sprintf("events published+consumed through the host (%s)", name), fmt.Sprintf("%.0f events/s", calls*per/total.Seconds()),
		fmt.Sprintf("publish alone %.0f/s", calls*per/published.Seconds()), "", "")
	return nil
}

func benchEventsKafka(ctx context.Context, logger *slog.Logger) error {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return err
	}
	defer cluster.Close()
	return benchEvents(ctx, logger, "Kafka, kfake in-process", "--kafka-brokers", strings.Join(cluster.ListenAddrs(), ","))
}
