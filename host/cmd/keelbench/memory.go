package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/abi/wire"
	"github.com/keelhq/keel/host/internal/runtime"
	"github.com/keelhq/keel/host/internal/telemetry"
	"github.com/keelhq/keel/host/internal/testkit"
)

// benchMemory reports the linear memory of a warm example instance: right after
// initialisation and after serving a mixed load.
func benchMemory(ctx context.Context, logger *slog.Logger) error {
	engine, err := runtime.NewEngine(runtime.Config{CacheDir: testkit.CacheDir(), Logger: logger, Metrics: telemetry.New()})
	if err != nil {
		return err
	}
	defer engine.Close(ctx)
	wasm, m, err := testkit.BuildE("plugins/example")
	if err != nil {
		return err
	}
	m.Limits.PoolMin, m.Limits.PoolMax = 4, 4
	p, _, err := engine.Load(ctx, m, wasm)
	if err != nil {
		return err
	}
	defer p.Close(ctx)
	s0 := p.Stats()
	body := []byte(`{"hello":"world","n":[1,2,3]}`)
	for i := 0; i < 5000; i++ {
		if _, err := p.HTTP(ctx, &wire.HTTPRequest{Method: "POST", Path: "/echo", Route: "/echo", Body: body}, nil); err != nil {
			return err
		}
		if _, err := p.HTTP(ctx, &wire.HTTPRequest{Method: "GET", Path: "/hello/x", Route: "/hello/:name", Params: []wire.KV{{Name: "name", Value: "x"}}}, nil); err != nil {
			return err
		}
	}
	s1 := p.Stats()
	per0 := float64(s0.MemoryBytes) / float64(s0.Instances) / (1 << 20)
	per1 := float64(s1.MemoryBytes) / float64(s1.Instances) / (1 << 20)
	record("linear memory per warm instance (example), after init", fmt.Sprintf("%.2f MiB", per0), fmt.Sprintf("module file %.1f MiB", float64(len(wasm))/(1<<20)), "", "≤ 8 MiB")
	record("linear memory per warm instance, after 10k calls", fmt.Sprintf("%.2f MiB", per1), "", "", "≤ 8 MiB")
	return nil
}

// benchLoad measures the time from a plugin file on disk to its first served request:
// cold (empty compilation cache, so wazero compiles) and warm (a new engine, as after a
// restart, finding the compiled code in the on-disk cache).
func benchLoad(ctx context.Context, logger *slog.Logger) error {
	wasm, m, err := testkit.BuildE("plugins/example")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "keelbench-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	mj, _ := json.Marshal(m)
	os.WriteFile(filepath.Join(dir, "manifest.json"), mj, 0o644)
	os.WriteFile(filepath.Join(dir, "plugin.wasm"), wasm, 0o644)
	cache := filepath.Join(dir, "cache")

	once := func() (time.Duration, runtime.LoadStats, error) {
		engine, err := runtime.NewEngine(runtime.Config{CacheDir: cache, Logger: logger, Metrics: telemetry.New()})
		if err != nil {
			return 0, runtime.LoadStats{}, err
		}
		defer engine.Close(ctx)
		t0 := time.Now()
		mf, err := os.Open(filepath.Join(dir, "manifest.json"))
		if err != nil {
			return 0, runtime.LoadStats{}, err
		}
		man, err := manifest.Decode(mf)
		mf.Close()
		if err != nil {
			return 0, runtime.LoadStats{}, err
		}
		code, err := os.ReadFile(filepath.Join(dir, "plugin.wasm"))
		if err != nil {
			return 0, runtime.LoadStats{}, err
		}
		p, stats, err := engine.Load(ctx, man, code)
		if err != nil {
			return 0, stats, err
		}
		defer p.Close(ctx)
		r, err := p.HTTP(ctx, &wire.HTTPRequest{Method: "GET", Path: "/hello/first", Route: "/hello/:name", Params: []wire.KV{{Name: "name", Value: "first"}}}, nil)
		if err != nil {
			return 0, stats, err
		}
		if r.Status != 200 {
			return 0, stats, fmt.Errorf("first request: %d", r.Status)
		}
		return time.Since(t0), stats, nil
	}
	cold, cs, err := once()
	if err != nil {
		return err
	}
	var warm []time.Duration
	var ws runtime.LoadStats
	for i := 0; i < 5; i++ {
		d, s, err := once()
		if err != nil {
			return err
		}
		warm = append(warm, d)
		ws = s
	}
	sortDurations(warm)
	record("plugin file → first served request, cold", ms(cold), fmt.Sprintf("compile %s, instance %s", ms(cs.Compile), ms(cs.Instantiate)), "", "")
	record("plugin file → first served request, warm cache", ms(percentile(warm, 50)), fmt.Sprintf("cache load %s, instance %s", ms(ws.Compile), ms(ws.Instantiate)), "", "≤ 50 ms")

	// A version loaded again by a running host (a rollback, a swap back): the engine
	// still holds the compiled module, so only the instances are made.
	engine, err := runtime.NewEngine(runtime.Config{CacheDir: cache, Logger: logger, Metrics: telemetry.New()})
	if err != nil {
		return err
	}
	defer engine.Close(ctx)
	code, _ := os.ReadFile(filepath.Join(dir, "plugin.wasm"))
	var again []time.Duration
	for i := 0; i < 6; i++ {
		t0 := time.Now()
		p, st, err := engine.Load(ctx, m, code)
		if err != nil {
			return err
		}
		r, err := p.HTTP(ctx, &wire.HTTPRequest{Method: "GET", Path: "/hello/again", Route: "/hello/:name", Params: []wire.KV{{Name: "name", Value: "again"}}}, nil)
		d := time.Since(t0)
		p.Close(ctx)
		if err != nil || r.Status != 200 {
			return fmt.Errorf("reload: %v %v", err, r)
		}
		if i > 0 { // the first load compiles from the disk cache
			if !st.Reused {
				return fmt.Errorf("reload %d did not reuse the compiled module", i)
			}
			again = append(again, d)
		}
	}
	sortDurations(again)
	record("same version loaded again in a running host → first request", ms(percentile(again, 50)), "compiled module kept", "", "")
	return nil
}

// pluginsDir builds the packages into a fresh plugins directory, migrations included.
func pluginsDir(dirs ...string) (string, error) {
	root, err := os.MkdirTemp("", "keelbench-plugins-")
	if err != nil {
		return "", err
	}
	for _, d := range dirs {
		if _, err := testkit.AddPluginE(root, d, nil); err != nil {
			return "", err
		}
	}
	return root, nil
}
