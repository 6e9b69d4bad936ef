package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/abi/wire"
	"github.com/keelhq/keel/host/internal/telemetry"
	"github.com/keelhq/keel/host/internal/testkit"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func newEngine(t testing.TB, w io.Writer) *Engine {
	t.Helper()
	if w == nil {
		w = io.Discard
	}
	e, err := NewEngine(Config{CacheDir: testkit.CacheDir(), Logger: slog.New(slog.NewJSONHandler(w, nil)), Metrics: telemetry.New()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e
}

func load(t testing.TB, e *Engine, dir string, edit func(*manifest.Manifest)) *Plugin {
	t.Helper()
	wasm, m := testkit.Build(t, dir)
	if edit != nil {
		edit(m)
		if err := m.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	p, _, err := e.Load(context.Background(), m, wasm)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

func get(p *Plugin, path string) (*wire.HTTPResponse, error) {
	return p.HTTP(context.Background(), &wire.HTTPRequest{Method: "GET", Path: path, Route: path, Ctx: wire.CallContext{RequestID: "t"}}, nil)
}

func TestBadBehaviourFailsOnlyItsCall(t *testing.T) {
	logs := &logBuf{}
	e := newEngine(t, logs)
	bad := load(t, e, "host/testdata/guests/misbehave", nil)
	good := load(t, e, "plugins/example", nil)

	for _, tc := range []struct {
		path, reason string
		status       int
	}{
		{"/loop", ReasonTimeout, 504},
		{"/bomb", ReasonMemory, 500},
		{"/trap", ReasonTrap, 500},
		{"/overflow", ReasonMemory, 500}, // stack growth fails under the 32 MiB cap
		{"/exit", ReasonExit, 500},
		{"/huge", ReasonOversized, 502},
	} {
		t.Run(strings.TrimPrefix(tc.path, "/"), func(t *testing.T) {
			before := testutil.ToFloat64(e.metrics.FailureCounter("misbehave", tc.reason))
			start := time.Now()
			_, err := get(bad, tc.path)
			var ce *CallError
			if !errors.As(err, &ce) {
				t.Fatalf("want a CallError, got %v", err)
			}
			if ce.Reason != tc.reason || ce.Status() != tc.status {
				t.Fatalf("reason %q status %d, want %q %d (err %v)", ce.Reason, ce.Status(), tc.reason, tc.status, err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("failure took %s", d)
			}
			if got := testutil.ToFloat64(e.metrics.FailureCounter("misbehave", tc.reason)); got != before+1 {
				t.Fatalf("failure counter %v, want %v", got, before+1)
			}
			// The same plugin and an unrelated one keep serving.
			if r, err := get(bad, "/ok"); err != nil || string(r.Body) != "ok" {
				t.Fatalf("misbehave /ok after %s: %v %v", tc.path, r, err)
			}
			r, err := good.HTTP(context.Background(), &wire.HTTPRequest{Method: "GET", Path: "/hello/ada", Route: "/hello/:name", Params: []wire.KV{{Name: "name", Value: "ada"}}}, nil)
			if err != nil || r.Status != 200 || !bytes.Contains(r.Body, []byte(`"hello":"ada"`)) {
				t.Fatalf("example after %s: %+v %v", tc.path, r, err)
			}
		})
	}
	if !strings.Contains(logs.String(), "out of memory") {
		t.Error("the guest's out-of-memory message was not routed to the host log")
	}
}

func TestPanicBecomes500AndRetiresInstance(t *testing.T) {
	e := newEngine(t, nil)
	p := load(t, e, "host/testdata/guests/misbehave", nil)
	r, err := get(p, "/panic")
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 500 || !bytes.Contains(r.Body, []byte("plugin_panic")) || r.Flags&wire.FlagPanicked == 0 {
		t.Fatalf("got %d %s flags %d", r.Status, r.Body, r.Flags)
	}
	if got := testutil.ToFloat64(e.metrics.FailureCounter("misbehave", ReasonPanic)); got != 1 {
		t.Fatalf("panic counter %v", got)
	}
	if r, err := get(p, "/ok"); err != nil || r.Status != 200 {
		t.Fatalf("after panic: %v %v", r, err)
	}
}

func TestConcurrentCallsAreIsolated(t *testing.T) {
	e := newEngine(t, nil)
	p := load(t, e, "plugins/example", func(m *manifest.Manifest) { m.Limits.PoolMax = 8 })
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			body := fmt.Sprintf(`{"i":%d,"pad":%q}`, i, strings.Repeat(string(rune('a'+i%26)), i*37))
			r, err := p.HTTP(context.Background(), &wire.HTTPRequest{Method: "POST", Path: "/echo", Route: "/echo", Body: []byte(body)}, nil)
			if err != nil {
				errs <- err
				return
			}
			if r.Status != 200 || string(r.Body) != body {
				errs <- fmt.Errorf("request %d: status %d, body mixed up: %.60q", i, r.Status, r.Body)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s := p.Stats(); s.Instances > 8 || s.InUse != 0 {
		t.Fatalf("pool stats after load: %+v", s)
	}
}

func TestCloseDrainsInFlight(t *testing.T) {
	e := newEngine(t, nil)
	p := load(t, e, "plugins/example", nil)
	done := make(chan error, 1)
	go func() {
		r, err := p.HTTP(context.Background(), &wire.HTTPRequest{Method: "GET", Path: "/slow", Route: "/slow", Query: "ms=300"}, nil)
		if err == nil && r.Status != 200 {
			err = fmt.Errorf("status %d: %s", r.Status, r.Body)
		}
		done <- err
	}()
	testkit.WaitFor(t, 5*time.Second, "the slow call to start", func() bool { return p.Stats().InUse == 1 })
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("in-flight call did not finish cleanly: %v", err)
	}
	if _, err := get(p, "/hello/x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after close: %v", err)
	}
}

func TestHealthExport(t *testing.T) {
	e := newEngine(t, nil)
	if err := load(t, e, "plugins/example", nil).Health(context.Background()); err != nil {
		t.Fatalf("example unhealthy: %v", err)
	}
	p := load(t, e, "host/testdata/guests/unhealthy", nil)
	if err := p.Health(context.Background()); err != nil {
		t.Fatalf("unhealthy guest should start healthy: %v", err)
	}
	if _, err := p.HTTP(context.Background(), &wire.HTTPRequest{Method: "POST", Path: "/sick", Route: "/sick"}, nil); err != nil {
		t.Fatal(err)
	}
	err := p.Health(context.Background())
	if err == nil || !strings.Contains(err.Error(), "database connection lost") {
		t.Fatalf("unhealthy plugin reported %v", err)
	}
}

func TestPoolExhaustion(t *testing.T) {
	e := newEngine(t, nil)
	p := load(t, e, "plugins/example", func(m *manifest.Manifest) { m.Limits.PoolMax = 1; m.Limits.PoolMin = 1 })
	go p.HTTP(context.Background(), &wire.HTTPRequest{Method: "GET", Path: "/slow", Route: "/slow", Query: "ms=500"}, nil)
	testkit.WaitFor(t, 5*time.Second, "the slow call", func() bool { return p.Stats().InUse == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := p.HTTP(ctx, &wire.HTTPRequest{Method: "GET", Path: "/hello/x", Route: "/hello/:name"}, nil)
	var ce *CallError
	if !errors.As(err, &ce) || ce.Reason != ReasonPoolExhausted || ce.Status() != 503 {
		t.Fatalf("got %v", err)
	}
}

func TestLoadRejectsBadModules(t *testing.T) {
	e := newEngine(t, nil)
	_, m := testkit.Build(t, "plugins/example")
	for name, wasm := range map[string][]byte{
		"not wasm": []byte("hello"),
		"empty":    nil,
		"no abi":   {0, 'a', 's', 'm', 1, 0, 0, 0},
	} {
		if _, _, err := e.Load(context.Background(), m, wasm); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}

func TestPluginStdoutIsLogged(t *testing.T) {
	logs := &logBuf{}
	e := newEngine(t, logs)
	p := load(t, e, "host/testdata/guests/misbehave", nil)
	if _, err := get(p, "/print"); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 2*time.Second, "stdout in the log", func() bool {
		return strings.Contains(logs.String(), `"msg":"hello from stdout","plugin":"misbehave"`)
	})
}

func BenchmarkRoundTrip1KB(b *testing.B) {
	e := newEngine(b, nil)
	p := load(b, e, "plugins/example", nil)
	body := []byte(`{"data":"` + strings.Repeat("x", 1024-11) + `"}`)
	req := &wire.HTTPRequest{Method: "POST", Path: "/echo", Route: "/echo", Body: body}
	buf := make([]byte, 0, 4096)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := p.HTTP(ctx, req, buf)
		if err != nil || len(r.Body) != len(body) {
			b.Fatal(err)
		}
	}
}
