package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
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
	total    int64
	errors   int64
	// cpu is this process's CPU time (user and system, every thread) per request:
	// the host, the guests and the load generator, without PostgreSQL or Redis, which
	// run in their own processes. Throughput on a shared machine swings with the
	// neighbours; CPU per request much less, so it is the figure to compare changes by.
	cpu time.Duration
}

// processCPU returns the CPU time this process has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// load drives POST requests with body at addr+path over conns keep-alive connections
// for dur and fails if any answer is not 200 with the body echoed.
func load(addr, path string, body []byte, dur time.Duration, conns int) (loadResult, error) {
	r, err := drive(addr, "POST", path, body, conns, dur, func(resp *fasthttp.Response) bool {
		return resp.StatusCode() == 200 && bytes.Equal(resp.Body(), body)
	}, nil)
	if err == nil && r.errors > 0 {
		err = fmt.Errorf("%s: %d of %d requests failed", path, r.errors, r.total)
	}
	return r, err
}

// drive is the load generator every HTTP scenario uses: conns workers send method
// requests to addr+path over keep-alive connections (a fasthttp client, cheap enough
// not to be the bottleneck) for dur, while during (if any) runs; ok decides whether
// an answer counts as a success.
func drive(addr, method, path string, body []byte, conns int, dur time.Duration,
	ok func(*fasthttp.Response) bool, during func(stop <-chan struct{}) error, headers ...string) (loadResult, error) {
	client := &fasthttp.HostClient{Addr: addr, MaxConns: conns, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	send := func(req *fasthttp.Request) {
		req.SetRequestURI("http://" + addr + path)
		req.Header.SetMethod(method)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		if body != nil {
			req.Header.SetContentType("application/json")
			req.SetBody(body)
		}
	}
	for i := 0; i < 200; i++ { // warm the connections and the pool before timing
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		send(req)
		_ = client.Do(req, resp)
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
	var (
		wg            sync.WaitGroup
		mu            sync.Mutex
		lats          []time.Duration
		count, failed atomic.Int64
		stop          = make(chan struct{})
	)
	start, cpu0 := time.Now(), processCPU()
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1<<16)
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			send(req)
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
				if err != nil || !ok(resp) {
					failed.Add(1)
				}
			}
		}()
	}
	var derr error
	done := make(chan struct{})
	if during != nil {
		go func() { derr = during(stop); close(done) }()
	} else {
		close(done)
	}
	time.Sleep(dur)
	close(stop)
	wg.Wait()
	<-done
	elapsed, cpu := time.Since(start), processCPU()-cpu0
	sortDurations(lats)
	var perReq time.Duration
	if n := count.Load(); n > 0 {
		perReq = cpu / time.Duration(n)
	}
	return loadResult{rps: float64(count.Load()) / elapsed.Seconds(), p50: percentile(lats, 50), p99: percentile(lats, 99),
		total: count.Load(), errors: failed.Load(), cpu: perReq}, derr
}
