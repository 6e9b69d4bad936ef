package cache_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/keelhq/keel/bridges/cache"
	"github.com/keelhq/keel/bridges/cache/cachetest"
)

// fakeClock is a clock tests move by hand, so expiry tests need no sleeps.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newMemory(t testing.TB, opts cache.MemoryOptions) *cache.Memory {
	t.Helper()
	m := cache.NewMemory(opts)
	t.Cleanup(func() { m.Close() })
	return m
}

func TestMemoryConformance(t *testing.T) {
	clock := newFakeClock()
	m := newMemory(t, cache.MemoryOptions{Clock: clock.Now, SweepInterval: -1})
	cachetest.Run(t, cachetest.Harness{Store: m, Advance: clock.Add, Tick: time.Second})
}

func TestMemoryEvictsLeastRecentlyUsedByCount(t *testing.T) {
	ctx := context.Background()
	m := newMemory(t, cache.MemoryOptions{MaxEntries: 3, Shards: 1})
	for _, k := range []string{"a", "b", "c"} {
		m.Set(ctx, k, []byte(k), 0)
	}
	m.Get(ctx, "a") // a is now the most recently used; b the least.
	m.Set(ctx, "d", []byte("d"), 0)

	tests := []struct {
		key  string
		want bool
	}{{"a", true}, {"b", false}, {"c", true}, {"d", true}}
	for _, tt := range tests {
		if _, ok, _ := m.Get(ctx, tt.key); ok != tt.want {
			t.Errorf("Get(%q) present = %v, want %v", tt.key, ok, tt.want)
		}
	}
	st := m.Stats()
	if st.Entries != 3 || st.Evictions != 1 {
		t.Errorf("Stats = %+v, want 3 entries and 1 eviction", st)
	}
}

func TestMemoryEvictsByBytes(t *testing.T) {
	ctx := context.Background()
	const overhead = 96 // entryOverhead
	budget := int64(3 * (1 + 100 + overhead))
	m := newMemory(t, cache.MemoryOptions{MaxBytes: budget, Shards: 1})
	val := make([]byte, 100)
	for _, k := range []string{"a", "b", "c"} {
		if err := m.Set(ctx, k, val, 0); err != nil {
			t.Fatal(err)
		}
	}
	if st := m.Stats(); st.Entries != 3 || st.Bytes != budget || st.Evictions != 0 {
		t.Fatalf("after filling the budget: %+v", st)
	}
	// One byte more than the budget evicts the oldest entry.
	if err := m.Set(ctx, "d", append(val, 0), 0); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := m.Get(ctx, "a"); ok {
		t.Error("a survived although the byte budget was exceeded")
	}
	// A value that alone exceeds the budget is refused, and nothing is lost.
	before := m.Stats()
	err := m.Set(ctx, "huge", make([]byte, budget), 0)
	if !errors.Is(err, cache.ErrValueTooLarge) {
		t.Fatalf("Set(huge) = %v, want ErrValueTooLarge", err)
	}
	if after := m.Stats(); after.Entries != before.Entries {
		t.Errorf("refused Set changed the entries: %d -> %d", before.Entries, after.Entries)
	}
	// Growing an existing entry is accounted too.
	m2 := newMemory(t, cache.MemoryOptions{MaxBytes: budget, Shards: 1})
	for _, k := range []string{"a", "b", "c"} {
		m2.Set(ctx, k, val, 0)
	}
	m2.Set(ctx, "c", make([]byte, 150), 0)
	if st := m2.Stats(); st.Entries != 2 || st.Bytes > budget {
		t.Errorf("after growing c: %+v, want 2 entries within %d bytes", st, budget)
	}
}

func TestMemorySweep(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	m := newMemory(t, cache.MemoryOptions{Clock: clock.Now, SweepInterval: -1, Shards: 4})
	for i := range 10 {
		ttl := time.Minute
		if i%2 == 0 {
			ttl = 0
		}
		m.Set(ctx, strconv.Itoa(i), []byte("v"), ttl)
	}
	if n := m.Sweep(); n != 0 {
		t.Fatalf("Sweep before expiry removed %d", n)
	}
	clock.Add(time.Minute)
	if n := m.Sweep(); n != 5 {
		t.Fatalf("Sweep removed %d, want 5", n)
	}
	if st := m.Stats(); st.Entries != 5 || st.Expirations != 5 || st.Bytes != 5*(1+1+96) {
		t.Fatalf("Stats after sweep = %+v", st)
	}
}

func TestMemoryBackgroundSweeper(t *testing.T) {
	ctx := context.Background()
	m := newMemory(t, cache.MemoryOptions{SweepInterval: 5 * time.Millisecond})
	m.Set(ctx, "k", []byte("v"), time.Millisecond)
	deadline := time.Now().Add(2 * time.Second)
	for m.Stats().Entries != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sweeper never removed the expired entry")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := m.Stats(); st.Expirations != 1 {
		t.Fatalf("Stats = %+v, want 1 expiration", st)
	}
}

func TestMemoryStatsCountHitsAndMisses(t *testing.T) {
	ctx := context.Background()
	m := newMemory(t, cache.MemoryOptions{})
	m.Set(ctx, "k", []byte("v"), 0)
	m.Get(ctx, "k")
	m.Get(ctx, "k")
	m.Get(ctx, "nope")
	if st := m.Stats(); st.Hits != 2 || st.Misses != 1 {
		t.Fatalf("Stats = %+v, want 2 hits and 1 miss", st)
	}
}

func TestMemoryClose(t *testing.T) {
	ctx := context.Background()
	m := cache.NewMemory(cache.MemoryOptions{SweepInterval: time.Millisecond})
	m.Set(ctx, "k", []byte("v"), 0)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := m.Get(ctx, "k"); !errors.Is(err, cache.ErrClosed) {
		t.Errorf("Get after Close = %v, want ErrClosed", err)
	}
	if err := m.Set(ctx, "k", nil, 0); !errors.Is(err, cache.ErrClosed) {
		t.Errorf("Set after Close = %v, want ErrClosed", err)
	}
	if _, err := m.Incr(ctx, "k", 1, 0); !errors.Is(err, cache.ErrClosed) {
		t.Errorf("Incr after Close = %v, want ErrClosed", err)
	}
	if err := m.Ping(ctx); !errors.Is(err, cache.ErrClosed) {
		t.Errorf("Ping after Close = %v, want ErrClosed", err)
	}
}

// TestMemoryConcurrency hammers a small cache from many goroutines so that
// eviction, expiry and counters race; run it with -race.
func TestMemoryConcurrency(t *testing.T) {
	ctx := context.Background()
	m := newMemory(t, cache.MemoryOptions{MaxEntries: 500, MaxBytes: 64 << 10, Shards: 8, SweepInterval: time.Millisecond})
	const workers, ops = 8, 5000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range ops {
				k := fmt.Sprintf("k%d", r.IntN(2000))
				switch r.IntN(5) {
				case 0:
					if err := m.Set(ctx, k, make([]byte, r.IntN(200)), time.Duration(r.IntN(3))*time.Millisecond); err != nil {
						t.Error(err)
						return
					}
				case 1:
					m.Delete(ctx, k)
				case 2:
					if _, err := m.Incr(ctx, "counter", 1, 0); err != nil {
						t.Error(err)
						return
					}
				default:
					if _, _, err := m.Get(ctx, k); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	st := m.Stats()
	if st.Entries > 8*((500+7)/8) || st.Bytes > 64<<10 || st.Bytes < 0 {
		t.Fatalf("budgets exceeded: %+v", st)
	}
	// The counter may have been evicted; if it survived it counts exactly.
	if v, ok, _ := m.Get(ctx, "counter"); ok {
		n, _ := strconv.Atoi(string(v))
		if n <= 0 || n > workers*ops {
			t.Fatalf("counter = %d", n)
		}
	}
}

func TestMemoryIncrConcurrentIsExact(t *testing.T) {
	ctx := context.Background()
	m := newMemory(t, cache.MemoryOptions{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				m.Incr(ctx, "c", 1, time.Hour)
			}
		}()
	}
	wg.Wait()
	if n, _ := m.Incr(ctx, "c", 0, 0); n != 8000 {
		t.Fatalf("counter = %d, want 8000", n)
	}
}
