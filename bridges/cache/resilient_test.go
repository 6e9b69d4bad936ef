package cache_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keelhq/keel/bridges/cache"
)

// flakyStore is a real in-process cache whose backend can be "switched off",
// standing in for a network store in the breaker's unit tests. The outage
// test against real Redis lives in bridges/redis.
type flakyStore struct {
	cache.Store
	down    atomic.Bool
	calls   atomic.Int64
	block   chan struct{} // when non-nil, calls wait on it
	errDown error
}

var errConnRefused = errors.New("dial tcp 127.0.0.1:1: connect: connection refused")

func newFlaky(t *testing.T) *flakyStore {
	return &flakyStore{Store: newMemory(t, cache.MemoryOptions{}), errDown: errConnRefused}
}

func (f *flakyStore) enter() error {
	f.calls.Add(1)
	if f.block != nil {
		<-f.block
	}
	if f.down.Load() {
		return f.errDown
	}
	return nil
}

func (f *flakyStore) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := f.enter(); err != nil {
		return nil, false, err
	}
	return f.Store.Get(ctx, key)
}

func (f *flakyStore) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := f.enter(); err != nil {
		return err
	}
	return f.Store.Set(ctx, key, val, ttl)
}

func (f *flakyStore) Incr(ctx context.Context, key string, d int64, ttl time.Duration) (int64, error) {
	if err := f.enter(); err != nil {
		return 0, err
	}
	return f.Store.Incr(ctx, key, d, ttl)
}

func (f *flakyStore) Delete(ctx context.Context, keys ...string) error {
	if err := f.enter(); err != nil {
		return err
	}
	return f.Store.Delete(ctx, keys...)
}

func (f *flakyStore) Ping(ctx context.Context) error {
	if err := f.enter(); err != nil {
		return err
	}
	return f.Store.Ping(ctx)
}

// syncBuffer lets the logger and the test share a buffer under -race.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newResilient(t *testing.T, store cache.Store, clock *fakeClock) (*cache.ResilientStore, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	r := cache.Resilient(store, logger, cache.ResilientOptions{
		Name: "test", FailureThreshold: 3, CoolDown: time.Second, Clock: clock.Now,
	})
	return r, logs
}

func TestResilientDegradesAndHeals(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	f := newFlaky(t)
	r, logs := newResilient(t, f, clock)

	if err := r.Set(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := r.Get(ctx, "k"); string(v) != "v" || !ok || err != nil {
		t.Fatalf("healthy Get = %q, %v, %v", v, ok, err)
	}

	f.down.Store(true)
	// Below the threshold every call still reaches the store.
	if v, ok, err := r.Get(ctx, "k"); v != nil || ok || err != nil {
		t.Fatalf("Get during outage = %q, %v, %v; want a silent miss", v, ok, err)
	}
	err := r.Set(ctx, "k", []byte("v"), 0)
	if !errors.Is(err, cache.ErrUnavailable) || !errors.Is(err, errConnRefused) {
		t.Fatalf("Set during outage = %v; want ErrUnavailable wrapping the cause", err)
	}
	if r.State() != cache.StateClosed {
		t.Fatalf("breaker opened after 2 failures with threshold 3")
	}
	if _, err := r.Incr(ctx, "n", 1, 0); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("Incr during outage = %v", err)
	}
	if r.State() != cache.StateOpen {
		t.Fatalf("state = %v after 3 failures, want open", r.State())
	}

	// Open: nothing reaches the store.
	before := f.calls.Load()
	for range 100 {
		if _, ok, err := r.Get(ctx, "k"); ok || err != nil {
			t.Fatalf("Get while open = %v, %v", ok, err)
		}
	}
	if err := r.Delete(ctx, "k"); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("Delete while open = %v", err)
	}
	if err := r.Ping(ctx); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("Ping while open = %v", err)
	}
	if n := f.calls.Load() - before; n != 0 {
		t.Fatalf("%d calls reached the store while the breaker was open", n)
	}
	st := r.Status()
	if !st.Degraded() || st.Opens != 1 || st.ShortCircuited != 102 || !strings.Contains(st.LastError, "refused") {
		t.Fatalf("Status = %+v", st)
	}

	// After the cool-down one probe goes through; it fails and reopens.
	clock.Add(time.Second)
	r.Get(ctx, "k")
	if n := f.calls.Load() - before; n != 1 {
		t.Fatalf("%d calls reached the store after the cool-down, want 1 probe", n)
	}
	if r.State() != cache.StateOpen {
		t.Fatalf("state after failed probe = %v, want open", r.State())
	}
	r.Get(ctx, "k")
	if n := f.calls.Load() - before; n != 1 {
		t.Fatalf("a failed probe did not restart the cool-down")
	}

	// The backend comes back: the next probe closes the breaker.
	f.down.Store(false)
	clock.Add(time.Second)
	if err := r.Ping(ctx); err != nil {
		t.Fatalf("Ping as probe after recovery: %v", err)
	}
	if r.State() != cache.StateClosed || r.Status().Degraded() {
		t.Fatalf("state after successful probe = %v", r.State())
	}
	if err := r.Set(ctx, "k", []byte("back"), 0); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := r.Get(ctx, "k"); string(v) != "back" {
		t.Fatalf("Get after recovery = %q", v)
	}

	out := logs.String()
	for _, want := range []string{"breaker opened", "breaker reopened", "breaker closed"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestResilientCallerErrorsPassThrough(t *testing.T) {
	ctx := context.Background()
	f := newFlaky(t)
	r, _ := newResilient(t, f, newFakeClock())
	r.Set(ctx, "word", []byte("hello"), 0)
	for range 10 {
		_, err := r.Incr(ctx, "word", 1, 0)
		if !errors.Is(err, cache.ErrNotInteger) || errors.Is(err, cache.ErrUnavailable) {
			t.Fatalf("Incr(non-integer) = %v; want ErrNotInteger, not ErrUnavailable", err)
		}
	}
	if r.State() != cache.StateClosed {
		t.Fatal("caller errors opened the breaker")
	}
}

// ctxStore waits for the caller's context to end, like a network store
// talking to a hung server with a deadline-aware client.
type ctxStore struct {
	cache.Store
	calls atomic.Int64
}

func (s *ctxStore) Get(ctx context.Context, _ string) ([]byte, bool, error) {
	s.calls.Add(1)
	<-ctx.Done()
	return nil, false, ctx.Err()
}

func TestResilientCallerContext(t *testing.T) {
	s := &ctxStore{Store: newMemory(t, cache.MemoryOptions{})}
	r, _ := newResilient(t, s, newFakeClock())

	// Contexts that ended before the call never reach the store.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for range 10 {
		if _, ok, err := r.Get(done, "k"); ok || err != nil {
			t.Fatalf("Get with a finished ctx = %v, %v", ok, err)
		}
		if err := r.Set(done, "k", nil, 0); !errors.Is(err, context.Canceled) {
			t.Fatalf("Set with a finished ctx = %v", err)
		}
	}
	if n := s.calls.Load(); n != 0 {
		t.Fatalf("%d calls with a finished ctx reached the store", n)
	}

	// Cancellation during the call is the caller's doing, not an outage.
	for range 10 {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Millisecond, cancel)
		if _, ok, err := r.Get(ctx, "k"); ok || err != nil {
			t.Fatalf("cancelled Get = %v, %v", ok, err)
		}
	}
	if r.State() != cache.StateClosed {
		t.Fatal("cancelled calls opened the breaker")
	}

	// Deadlines passing inside the store are how a hung backend looks to
	// callers with short deadlines: they count.
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		r.Get(ctx, "k")
		cancel()
	}
	if r.State() != cache.StateOpen {
		t.Fatalf("state after 3 deadlines = %v, want open", r.State())
	}
}

func TestResilientSingleProbe(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	f := newFlaky(t)
	r, _ := newResilient(t, f, clock)
	f.down.Store(true)
	for range 3 {
		r.Get(ctx, "k")
	}
	if r.State() != cache.StateOpen {
		t.Fatal("breaker did not open")
	}
	clock.Add(time.Second)

	// The probe hangs in the store; concurrent calls must not pile up behind it.
	f.block = make(chan struct{})
	f.down.Store(false)
	before := f.calls.Load()
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		r.Get(ctx, "k")
	}()
	for f.calls.Load() == before {
		time.Sleep(time.Millisecond)
	}
	if r.State() != cache.StateHalfOpen {
		t.Fatalf("state during probe = %v, want half-open", r.State())
	}
	for range 50 {
		if _, ok, err := r.Get(ctx, "k"); ok || err != nil {
			t.Fatal("call during probe was not short-circuited")
		}
	}
	if n := f.calls.Load() - before; n != 1 {
		t.Fatalf("%d calls reached the store during the probe, want 1", n)
	}
	close(f.block)
	<-probeDone
	if r.State() != cache.StateClosed {
		t.Fatalf("state after successful probe = %v", r.State())
	}
}

// TestResilientConcurrent runs the breaker through outages under load; run
// it with -race.
func TestResilientConcurrent(t *testing.T) {
	ctx := context.Background()
	f := newFlaky(t)
	r := cache.Resilient(f, slog.New(slog.DiscardHandler), cache.ResilientOptions{FailureThreshold: 2, CoolDown: time.Millisecond})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := r.Get(ctx, "k"); err != nil {
					t.Error(err)
					return
				}
				if err := r.Set(ctx, "k", []byte("v"), 0); err != nil && !errors.Is(err, cache.ErrUnavailable) {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := range 20 {
		f.down.Store(i%2 == 0)
		time.Sleep(2 * time.Millisecond)
	}
	f.down.Store(false)
	deadline := time.Now().Add(2 * time.Second)
	for r.State() != cache.StateClosed && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if r.State() != cache.StateClosed {
		t.Fatalf("breaker did not heal: %+v", r.Status())
	}
}
