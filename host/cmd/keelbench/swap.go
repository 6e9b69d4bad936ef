package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keelhq/keel/bridges/postgres/pgtest"
	"github.com/keelhq/keel/host/internal/config"
	"github.com/keelhq/keel/host/internal/server"
	"github.com/keelhq/keel/host/internal/testkit"
	"github.com/keelhq/keel/plugin-registry/bundle"
)

// benchSwap measures hot swaps: p99 of a plugin route under constant load, steady
// and while v1→v2→v1 swaps run back to back, with every failed request counted; and
// the time from upload to the new version serving, cold and with a warm cache.
func benchSwap(ctx context.Context, logger *slog.Logger, dur time.Duration, conns int) error {
	db, err := pgtest.Create(ctx)
	if err != nil {
		return err
	}
	defer db.Drop(context.Background(), "keel_plg_example")
	dataDir, err := os.MkdirTemp("", "keelbench-swap-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dataDir)
	cfg, err := config.Load(nil, []string{"--http-addr", "127.0.0.1:0", "--data-dir", dataDir, "--access-log=false",
		"--log-level", "error", "--database-url", db.URL(), "--dev-mode=true"})
	if err != nil {
		return err
	}
	srv, err := server.New(ctx, cfg, logger)
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer srv.Shutdown(context.Background())
	dep := srv.Deployer()
	wasm, m, err := testkit.BuildE("plugins/example")
	if err != nil {
		return err
	}
	bundleOf := func(version string, code []byte) ([]byte, error) {
		mm := *m
		mm.Version = version
		mj, _ := json.Marshal(&mm)
		b, err := bundle.Build(mj, code, nil)
		if err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		_, err = b.WriteTo(&buf)
		return buf.Bytes(), err
	}
	// Upload → serving, cold: a module this host has never compiled (a custom section
	// makes the bytes, and so the compilation cache key, new).
	uploadToServe := func(version string, code []byte) (time.Duration, error) {
		raw, err := bundleOf(version, code)
		if err != nil {
			return 0, err
		}
		t0 := time.Now()
		if _, err := dep.Upload(ctx, raw, "bench"); err != nil {
			return 0, err
		}
		if _, err := dep.Activate(ctx, "example", version, "bench"); err != nil {
			return 0, err
		}
		return time.Since(t0), nil
	}
	coldCode := withCustomSection(wasm, "cold")
	cold, err := uploadToServe("1.0.0", coldCode)
	if err != nil {
		return err
	}
	// The same module under a new version: its compiled code is in the cache.
	warm, err := uploadToServe("1.0.1", coldCode)
	if err != nil {
		return err
	}
	record("upload → serving the new version, cold compile", ms(cold), "", "", "")
	record("upload → serving the new version, compilation cache warm", ms(warm), "", "", "")

	for _, v := range []string{"1.1.0", "1.2.0"} {
		raw, err := bundleOf(v, wasm)
		if err != nil {
			return err
		}
		if _, err := dep.Upload(ctx, raw, "bench"); err != nil {
			return err
		}
	}
	if _, err := dep.Activate(ctx, "example", "1.1.0", "bench"); err != nil {
		return err
	}
	steady, err := loadWhile(srv.Addr(), conns, dur, nil)
	if err != nil {
		return err
	}
	swaps := 0
	during, err := loadWhile(srv.Addr(), conns, dur, func(stop <-chan struct{}) error {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return nil
			default:
			}
			if _, err := dep.Activate(ctx, "example", []string{"1.2.0", "1.1.0"}[i%2], "bench"); err != nil {
				return err
			}
			swaps++
		}
	})
	if err != nil {
		return err
	}
	record(fmt.Sprintf("hot swaps under load: %d swaps, failed requests", swaps), fmt.Sprintf("%d of %d", during.errors, during.total), "", "", "0")
	record("p99 during swaps vs steady state", ms(during.p99), "steady "+ms(steady.p99), fmt.Sprintf("%.2f×", float64(during.p99)/float64(steady.p99)), "≤ 3×")
	return nil
}

// loadWhile drives GET /api/example/hello over conns connections for dur while
// during (if any) runs.
func loadWhile(addr string, conns int, dur time.Duration, during func(stop <-chan struct{}) error) (loadResult, error) {
	return drive(addr, "GET", "/api/example/hello/load", nil, conns, dur,
		func(resp *fasthttp.Response) bool { return resp.StatusCode() == 200 }, during)
}

// withCustomSection appends a custom section, changing the module's bytes (and so
// its digest and compilation cache key) without changing what it does.
func withCustomSection(wasm []byte, name string) []byte {
	payload := append([]byte{byte(len(name))}, name...)
	payload = append(payload, []byte(time.Now().String())...)
	out := append([]byte(nil), wasm...)
	out = append(out, 0, byte(len(payload)))
	return append(out, payload...)
}
