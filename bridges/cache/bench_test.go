package cache_test

import (
	"context"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keelhq/keel/bridges/cache"
)

const benchKeys = 10_000

func benchKeyset() []string {
	keys := make([]string, benchKeys)
	for i := range keys {
		keys[i] = cache.Key("master-data", "tenant-1", "customer:"+strconv.Itoa(i))
	}
	return keys
}

func BenchmarkMemoryGet(b *testing.B) {
	ctx := context.Background()
	m := newMemory(b, cache.MemoryOptions{})
	keys := benchKeyset()
	val := make([]byte, 256)
	for _, k := range keys {
		m.Set(ctx, k, val, time.Hour)
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, ok, _ := m.Get(ctx, keys[i%benchKeys]); !ok {
			b.Fatal("miss")
		}
		i++
	}
}

func BenchmarkMemorySet(b *testing.B) {
	ctx := context.Background()
	m := newMemory(b, cache.MemoryOptions{})
	keys := benchKeyset()
	val := make([]byte, 256)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.Set(ctx, keys[i%benchKeys], val, time.Hour)
		i++
	}
}

func BenchmarkMemoryGetParallel(b *testing.B) {
	ctx := context.Background()
	m := newMemory(b, cache.MemoryOptions{})
	keys := benchKeyset()
	val := make([]byte, 256)
	for _, k := range keys {
		m.Set(ctx, k, val, time.Hour)
	}
	var seq atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1) * 7919)
		for pb.Next() {
			m.Get(ctx, keys[i%benchKeys])
			i++
		}
	})
}

func BenchmarkMemoryMixedParallel(b *testing.B) {
	ctx := context.Background()
	m := newMemory(b, cache.MemoryOptions{MaxEntries: benchKeys / 2})
	keys := benchKeyset()
	val := make([]byte, 256)
	var seq atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1) * 7919)
		for pb.Next() {
			k := keys[i%benchKeys]
			if i%4 == 0 {
				m.Set(ctx, k, val, time.Minute)
			} else {
				m.Get(ctx, k)
			}
			i++
		}
	})
}

func BenchmarkMemoryIncr(b *testing.B) {
	ctx := context.Background()
	m := newMemory(b, cache.MemoryOptions{})
	b.ReportAllocs()
	for b.Loop() {
		m.Incr(ctx, "counter", 1, time.Minute)
	}
}

// BenchmarkResilientGet measures what the breaker adds to a healthy store.
func BenchmarkResilientGet(b *testing.B) {
	ctx := context.Background()
	m := newMemory(b, cache.MemoryOptions{})
	r := cache.Resilient(m, slog.New(slog.DiscardHandler), cache.ResilientOptions{})
	m.Set(ctx, "k", make([]byte, 256), 0)
	b.ReportAllocs()
	for b.Loop() {
		r.Get(ctx, "k")
	}
}
