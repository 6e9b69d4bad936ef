package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keelhq/keel/bench/native"
	"github.com/keelhq/keel/host/internal/config"
	"github.com/keelhq/keel/host/internal/server"
	"github.com/keelhq/keel/host/internal/testkit"
)

// benchHTTP compares the example plugin's POST /echo (JSON echo) with a native fiber
// handler doing the same work, served by the same host process, under the same load.
// Phases alternate native/plugin twice and the better of each is kept, which damps
// the noise of a shared machine.
func benchHTTP(ctx context.Context, logger *slog.Logger, dur time.Duration, conns int) error {
	pdir, err := pluginsDir("plugins/example")
	if err != nil {
		return err
	}
	cfg, err := config.Load(nil, []string{"--http-addr", "127.0.0.1:0", "--data-dir", testkit.CacheDir() + "-data",
		"--plugins-dir", pdir, "--access-log=false", "--log-level", "error"})
	if err != nil {
		return err
	}
	srv, err := server.New(ctx, cfg, logger)
	if err != nil {
		return err
	}
	srv.App().Post("/native/echo", native.JSONEcho)
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer srv.Shutdown(context.Background())
	body := []byte(`{"customer":{"id":"c-1001","name":"Ada Lovelace","email":"ada@example.com","tags":["vip","eu"],` +
		`"address":{"street":"12 Analytical Way","city":"London","zip":"N1 7AA"},"balance":1234.56,"active":true}}`)

	best := map[string]loadResult{}
	for round := 0; round < 2; round++ {
		for _, target := range []string{"/native/echo", "/api/example/echo"} {
			r, err := load(srv.Addr(), target, body, dur, conns)
			if err != nil {
				return err
			}
			if b, ok := best[target]; !ok || r.rps > b.rps {
				best[target] = r
			}
		}
	}
	n, p := best["/native/echo"], best["/api/example/echo"]
	record(fmt.Sprintf("HTTP JSON echo req/s (%d conns)", conns), fmt.Sprintf("%.0f req/s", p.rps), fmt.Sprintf("%.0f req/s", n.rps),
		fmt.Sprintf("%.2f×", p.rps/n.rps), "≥ 0.5×")
	record("HTTP JSON echo p50", ms(p.p50), ms(n.p50), fmt.Sprintf("%.2f×", float64(p.p50)/float64(n.p50)), "")
	record("HTTP JSON echo p99", ms(p.p99), ms(n.p99), fmt.Sprintf("%.2f×", float64(p.p99)/float64(n.p99)), "")
	if p.errors+n.errors > 0 {
		return fmt.Errorf("%d plugin and %d native requests failed", p.errors, n.errors)
	}
	return nil
}

type loadResult struct {
	rps      float64
	p50, p99 time.Duration
	errors   int64
}

// load drives POST requests at addr+path over conns keep-alive connections for dur
// with a fasthttp client (cheap enough that the client is not the bottleneck).
func load(addr, path string, body []byte, dur time.Duration, conns int) (loadResult, error) {
	client := &fasthttp.HostClient{Addr: addr, MaxConns: conns, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		lats   []time.Duration
		errs   atomic.Int64
		count  atomic.Int64
		stop   = make(chan struct{})
		errMsg atomic.Value
	)
	// Warm the connections and the pool before timing.
	for i := 0; i < 200; i++ {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI("http://" + addr + path)
		req.Header.SetMethod("POST")
		req.SetBody(body)
		_ = client.Do(req, resp)
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
	start := time.Now()
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1<<16)
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + addr + path)
			req.Header.SetMethod("POST")
			req.Header.SetContentType("application/json")
			req.SetBody(body)
			for {
				select {
				case <-stop:
					mu.Lock()
					lats = append(lats, local...)
					mu.Unlock()
					return
				default:
				}
				t0 := time.Now()
				err := client.Do(req, resp)
				local = append(local, time.Since(t0))
				count.Add(1)
				if err != nil || resp.StatusCode() != 200 || !bytes.Equal(resp.Body(), body) {
					errs.Add(1)
					if err != nil {
						errMsg.Store(err.Error())
					} else {
						errMsg.Store(fmt.Sprintf("status %d body %.100q", resp.StatusCode(), resp.Body()))
					}
				}
			}
		}()
	}
	time.Sleep(dur)
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)
	sortDurations(lats)
	r := loadResult{rps: float64(count.Load()) / elapsed.Seconds(), p50: percentile(lats, 50), p99: percentile(lats, 99), errors: errs.Load()}
	if r.errors > 0 {
		return r, fmt.Errorf("%s: %d errors, e.g. %v", path, r.errors, errMsg.Load())
	}
	return r, nil
}
