package cachetest

import (
	"bytes"
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/keelhq/keel/bridges/cache"
)

// Harness describes the store under test.
type Harness struct {
	// Store is the implementation under test; Run does not close it.
	Store cache.Store
	// Prefix is prepended to every key Run uses, so that tests sharing a
	// real server do not see each other's keys.
	Prefix string
	// Advance moves the store's clock forward: a fake clock's Add, or
	// time.Sleep for a real server.
	Advance func(time.Duration)
	// Tick is the TTL unit used for expiry checks; real servers need it to
	// be a few milliseconds at least so that round trips do not matter.
	Tick time.Duration
}

// Run runs the conformance suite as subtests of t.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.Tick <= 0 {
		h.Tick = 100 * time.Millisecond
	}
	k := func(s string) string { return h.Prefix + s }
	s := h.Store
	ctx := context.Background()

	t.Run("MissingKey", func(t *testing.T) {
		v, ok, err := s.Get(ctx, k("missing"))
		if err != nil || ok || v != nil {
			t.Fatalf("Get(missing) = %q, %v, %v; want nil, false, nil", v, ok, err)
		}
	})

	t.Run("SetGetOverwrite", func(t *testing.T) {
		mustSet(t, s, k("a"), []byte("one"), 0)
		mustGet(t, s, k("a"), "one")
		mustSet(t, s, k("a"), []byte("two"), 0)
		mustGet(t, s, k("a"), "two")
		mustSet(t, s, k("empty"), []byte{}, 0)
		mustGet(t, s, k("empty"), "")
		bin := []byte{0, 1, 0xff, '\n', ':', 0}
		mustSet(t, s, k("bin"), bin, 0)
		mustGet(t, s, k("bin"), string(bin))
	})

	t.Run("ValuesAreCopies", func(t *testing.T) {
		in := []byte("original")
		mustSet(t, s, k("copy"), in, 0)
		in[0] = 'X'
		v := mustGet(t, s, k("copy"), "original")
		v[0] = 'Y'
		mustGet(t, s, k("copy"), "original")
	})

	t.Run("TTLExpiry", func(t *testing.T) {
		mustSet(t, s, k("ttl"), []byte("v"), 4*h.Tick)
		mustSet(t, s, k("forever"), []byte("v"), 0)
		h.Advance(2 * h.Tick)
		mustGet(t, s, k("ttl"), "v")
		h.Advance(3 * h.Tick)
		mustMiss(t, s, k("ttl"))
		mustGet(t, s, k("forever"), "v")
	})

	t.Run("SetReplacesTTL", func(t *testing.T) {
		mustSet(t, s, k("re"), []byte("short"), 2*h.Tick)
		mustSet(t, s, k("re"), []byte("long"), 0)
		h.Advance(3 * h.Tick)
		mustGet(t, s, k("re"), "long")
	})

	t.Run("Delete", func(t *testing.T) {
		mustSet(t, s, k("d1"), []byte("1"), 0)
		mustSet(t, s, k("d2"), []byte("2"), 0)
		mustSet(t, s, k("d3"), []byte("3"), 0)
		if err := s.Delete(ctx, k("d1"), k("d2"), k("never-existed")); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if err := s.Delete(ctx); err != nil {
			t.Fatalf("Delete with no keys: %v", err)
		}
		mustMiss(t, s, k("d1"))
		mustMiss(t, s, k("d2"))
		mustGet(t, s, k("d3"), "3")
	})

	t.Run("Incr", func(t *testing.T) {
		mustIncr(t, s, k("n"), 5, 0, 5)
		mustIncr(t, s, k("n"), 3, 0, 8)
		mustIncr(t, s, k("n"), -10, 0, -2)
		mustIncr(t, s, k("n"), 0, 0, -2)
		mustGet(t, s, k("n"), "-2")
		mustSet(t, s, k("text"), []byte("12"), 0)
		mustIncr(t, s, k("text"), 1, 0, 13)
	})

	t.Run("IncrNotInteger", func(t *testing.T) {
		mustSet(t, s, k("word"), []byte("hello"), 0)
		if _, err := s.Incr(ctx, k("word"), 1, 0); !errors.Is(err, cache.ErrNotInteger) {
			t.Fatalf("Incr(non-integer) error = %v, want ErrNotInteger", err)
		}
		mustGet(t, s, k("word"), "hello")
	})

	t.Run("IncrOverflow", func(t *testing.T) {
		mustIncr(t, s, k("big"), math.MaxInt64, 0, math.MaxInt64)
		if _, err := s.Incr(ctx, k("big"), 1, 0); !errors.Is(err, cache.ErrOverflow) {
			t.Fatalf("Incr past MaxInt64 error = %v, want ErrOverflow", err)
		}
		mustGet(t, s, k("big"), "9223372036854775807")
		mustIncr(t, s, k("small"), math.MinInt64, 0, math.MinInt64)
		if _, err := s.Incr(ctx, k("small"), -1, 0); !errors.Is(err, cache.ErrOverflow) {
			t.Fatalf("Incr past MinInt64 error = %v, want ErrOverflow", err)
		}
	})

	t.Run("IncrTTLOnlyOnCreate", func(t *testing.T) {
		mustIncr(t, s, k("win"), 1, 4*h.Tick, 1)
		h.Advance(2 * h.Tick)
		// A later, longer TTL must not extend the window.
		mustIncr(t, s, k("win"), 1, time.Hour, 2)
		h.Advance(3 * h.Tick)
		mustMiss(t, s, k("win"))
		// After expiry the counter starts again, with the new TTL.
		mustIncr(t, s, k("win"), 1, 4*h.Tick, 1)
		h.Advance(2 * h.Tick)
		mustGet(t, s, k("win"), "1")
	})

	t.Run("Ping", func(t *testing.T) {
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})
}

func mustSet(t *testing.T, s cache.Store, key string, val []byte, ttl time.Duration) {
	t.Helper()
	if err := s.Set(context.Background(), key, val, ttl); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

func mustGet(t *testing.T, s cache.Store, key, want string) []byte {
	t.Helper()
	v, ok, err := s.Get(context.Background(), key)
	if err != nil || !ok || !bytes.Equal(v, []byte(want)) {
		t.Fatalf("Get(%q) = %q, %v, %v; want %q, true, nil", key, v, ok, err, want)
	}
	return v
}

func mustMiss(t *testing.T, s cache.Store, key string) {
	t.Helper()
	v, ok, err := s.Get(context.Background(), key)
	if err != nil || ok {
		t.Fatalf("Get(%q) = %q, %v, %v; want a miss", key, v, ok, err)
	}
}

func mustIncr(t *testing.T, s cache.Store, key string, delta int64, ttl time.Duration, want int64) {
	t.Helper()
	got, err := s.Incr(context.Background(), key, delta, ttl)
	if err != nil || got != want {
		t.Fatalf("Incr(%q, %d) = %d, %v; want %d, nil", key, delta, got, err, want)
	}
}
