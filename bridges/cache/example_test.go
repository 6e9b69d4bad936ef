package cache_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/keelhq/keel/bridges/cache"
)

func ExampleKey() {
	fmt.Println(cache.Key("auth", "acme", "session:42"))
	fmt.Println(cache.Key("a:b", "c", "d"))
	// Output:
	// keel:auth:acme:session:42
	// keel:a%3Ab:c:d
}

func ExampleTTLClass() {
	ttl, ok := cache.TTLClass("auth")
	fmt.Println(ttl, ok)
	// Output: 15m0s true
}

func ExampleResilient() {
	ctx := context.Background()
	mem := cache.NewMemory(cache.MemoryOptions{})
	store := cache.Resilient(mem, slog.Default(), cache.ResilientOptions{Name: "memory"})
	defer store.Close()

	key := cache.Key("auth", "acme", "login-attempts:alice")
	n, err := store.Incr(ctx, key, 1, time.Minute)
	if errors.Is(err, cache.ErrUnavailable) {
		n = 0 // the cache is down; carry on without rate limiting
	}
	fmt.Println(n, store.Status().Degraded())
	// Output: 1 false
}
