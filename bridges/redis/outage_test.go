package redis

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keelhq/keel/bridges/cache"
)

// tcpProxy forwards a local port to the real Redis and can cut the link in
// the two ways Redis fails in production: refusing connections (process
// down) and swallowing traffic (host hung or partitioned).
type tcpProxy struct {
	t      *testing.T
	target string
	addr   string
	hang   atomic.Bool

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{t: t, target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(func() {
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *tcpProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go p.forward(c)
		}
	}()
}

func (p *tcpProxy) forward(client net.Conn) {
	defer p.wg.Done()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(client, server) {
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 && !p.hang.Load() {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-done
	client.Close()
	server.Close()
	<-done
	p.untrack(client, server)
}

func (p *tcpProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil { // cut while dialling
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *tcpProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

// cut closes the listener and every connection: new dials are refused.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

// restore listens on the same address again.
func (p *tcpProxy) restore() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("re-listening on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// outageSetup returns a breaker-wrapped client that reaches Redis through
// a proxy, plus a key that holds a known value.
func outageSetup(t *testing.T) (*tcpProxy, *cache.ResilientStore, string) {
	t.Helper()
	direct := openTest(t, Options{})
	prefix := testPrefix(t, direct)
	p := startProxy(t, direct.Addr())
	ctx := context.Background()
	viaProxy, err := Open(ctx, "redis://"+p.addr, Options{DialTimeout: 100 * time.Millisecond, ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	store := cache.Resilient(viaProxy, slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		cache.ResilientOptions{Name: "redis", FailureThreshold: 3, CoolDown: 300 * time.Millisecond})
	t.Cleanup(func() { store.Close() })
	key := prefix + "k"
	if err := store.Set(ctx, key, []byte("cached"), time.Minute); err != nil {
		t.Fatalf("Set through the proxy: %v", err)
	}
	return p, store, key
}

// testWriter shows the breaker's log lines in the test output.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// driveOutage runs Gets until the breaker opens, then proves that the open
// breaker answers every Get as a fast, error-free miss.
func driveOutage(t *testing.T, store *cache.ResilientStore, key string) {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	for store.State() != cache.StateOpen {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("breaker did not open: %+v", store.Status())
		}
		if _, ok, err := store.Get(ctx, key); ok || err != nil {
			t.Fatalf("Get during the outage = %v, %v; want a silent miss", ok, err)
		}
	}
	t.Logf("breaker opened after %v", time.Since(start).Round(time.Millisecond))

	var worst time.Duration
	for range 200 {
		t0 := time.Now()
		_, ok, err := store.Get(ctx, key)
		worst = max(worst, time.Since(t0))
		if ok || err != nil {
			t.Fatalf("Get with the breaker open = %v, %v; want a silent miss", ok, err)
		}
	}
	if worst >= 50*time.Millisecond {
		t.Fatalf("slowest Get with the breaker open took %v, want < 50ms", worst)
	}
	t.Logf("slowest of 200 Gets with the breaker open: %v", worst)
	if err := store.Set(ctx, key, []byte("x"), time.Minute); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("Set during the outage = %v, want ErrUnavailable", err)
	}
	if _, err := store.Incr(ctx, key+"n", 1, time.Minute); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("Incr during the outage = %v, want ErrUnavailable", err)
	}
	if !store.Status().Degraded() {
		t.Fatal("Status does not report degraded")
	}
}

// awaitHeal keeps serving Gets until the breaker has closed by itself and
// the value written before the outage is readable again.
func awaitHeal(t *testing.T, store *cache.ResilientStore, key string) {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	for {
		v, ok, err := store.Get(ctx, key)
		if err != nil {
			t.Fatalf("Get while healing: %v", err)
		}
		if ok && string(v) == "cached" && store.State() == cache.StateClosed {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("cache did not heal within 5s: %+v", store.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("healed %v after the link came back", time.Since(start).Round(time.Millisecond))
	if err := store.Set(ctx, key, []byte("cached"), time.Minute); err != nil {
		t.Fatalf("Set after healing: %v", err)
	}
}

func TestOutageConnectionRefused(t *testing.T) {
	p, store, key := outageSetup(t)
	p.cut()
	driveOutage(t, store, key)
	p.restore()
	awaitHeal(t, store, key)
}

func TestOutageHungServer(t *testing.T) {
	p, store, key := outageSetup(t)
	p.hang.Store(true)
	driveOutage(t, store, key)
	p.hang.Store(false)
	awaitHeal(t, store, key)
}

// TestOutageNothingListening covers a URL pointing where Redis never ran.
func TestOutageNothingListening(t *testing.T) {
	ctx := context.Background()
	rc, err := Open(ctx, "redis://127.0.0.1:1", Options{SkipPing: true})
	if err != nil {
		t.Fatal(err)
	}
	store := cache.Resilient(rc, slog.New(slog.DiscardHandler), cache.ResilientOptions{FailureThreshold: 3, CoolDown: time.Minute})
	defer store.Close()
	driveOutage(t, store, "keeltest:never")
	if err := store.Ping(ctx); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("Ping = %v, want ErrUnavailable", err)
	}
}
