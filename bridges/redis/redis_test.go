package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keelhq/keel/bridges/cache"
	"github.com/keelhq/keel/bridges/cache/cachetest"
)

func TestMain(m *testing.M) {
	// The outage tests make go-redis log every refused dial; keep the
	// output readable.
	RouteLibraryLogs(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

// testURL is the real Redis the tests use.
func testURL() string {
	if u := os.Getenv("KEEL_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// openTest connects to the test Redis and fails the test with a hint when it
// is not running, so a missing server is never mistaken for a bug.
func openTest(t testing.TB, opts Options) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := Open(ctx, testURL(), opts)
	if err != nil {
		t.Fatalf("the Redis tests need a real Redis at %s (set KEEL_TEST_REDIS_URL to use another): %v", redact(testURL()), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testPrefix returns a key prefix unique to this test run and deletes every
// key under it when the test ends.
func testPrefix(t testing.TB, c *Client) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	prefix := "keeltest:" + strings.ReplaceAll(t.Name(), "/", "_") + ":" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		iter := c.rdb.Scan(ctx, 0, prefix+"*", 500).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("cleaning up %s*: %v", prefix, err)
			return
		}
		if len(keys) > 0 {
			if err := c.rdb.Del(ctx, keys...).Err(); err != nil {
				t.Errorf("cleaning up %s*: %v", prefix, err)
			}
		}
	})
	return prefix
}

func TestConformance(t *testing.T) {
	c := openTest(t, Options{})
	cachetest.Run(t, cachetest.Harness{
		Store:   c,
		Prefix:  testPrefix(t, c),
		Advance: time.Sleep,
		Tick:    25 * time.Millisecond,
	})
}

func TestIncrSetsTTLOnlyOnCreate(t *testing.T) {
	ctx := context.Background()
	c := openTest(t, Options{})
	p := testPrefix(t, c)

	if _, err := c.Incr(ctx, p+"w", 1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Incr(ctx, p+"w", 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	ttl := c.rdb.PTTL(ctx, p+"w").Val()
	if ttl <= 0 || ttl > 10*time.Second {
		t.Fatalf("PTTL = %v, want the 10s set at creation", ttl)
	}
	// A counter created without TTL keeps having none.
	c.Incr(ctx, p+"forever", 1, 0)
	c.Incr(ctx, p+"forever", 1, time.Minute)
	if ttl := c.rdb.PTTL(ctx, p+"forever").Val(); ttl != -1 {
		t.Fatalf("PTTL = %v, want -1 (no expiry)", ttl)
	}
}

func TestSetTTLRounding(t *testing.T) {
	ctx := context.Background()
	c := openTest(t, Options{})
	p := testPrefix(t, c)
	if err := c.Set(ctx, p+"sub-ms", []byte("v"), time.Microsecond); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, p+"neg", []byte("v"), -time.Second); err != nil {
		t.Fatal(err)
	}
	if ttl := c.rdb.PTTL(ctx, p+"neg").Val(); ttl != -1 {
		t.Fatalf("negative TTL gave PTTL %v, want no expiry", ttl)
	}
}

func TestIncrConcurrentIsExact(t *testing.T) {
	ctx := context.Background()
	c := openTest(t, Options{})
	p := testPrefix(t, c)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if _, err := c.Incr(ctx, p+"c", 1, time.Minute); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n, err := c.Incr(ctx, p+"c", 0, 0); n != 800 || err != nil {
		t.Fatalf("counter = %d, %v; want 800", n, err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	_, err := Open(ctx, "redis://user:s3cret@127.0.0.1:notaport", Options{})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Open(bad port) = %v; want an error without the password", err)
	}
	if _, err := Open(ctx, "http://127.0.0.1:6379", Options{}); err == nil {
		t.Fatal("Open accepted an http:// URL")
	}
	// Nothing listens on port 1: Open fails fast and says where it tried.
	start := time.Now()
	_, err = Open(ctx, "redis://:s3cret@127.0.0.1:1", Options{})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Open(dead port) = %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Open(dead port) took %v", d)
	}
	c, err := Open(ctx, "redis://127.0.0.1:1", Options{SkipPing: true})
	if err != nil {
		t.Fatalf("Open with SkipPing: %v", err)
	}
	c.Close()
}

func TestOptionsPrecedence(t *testing.T) {
	ctx := context.Background()
	c, err := Open(ctx, "redis://127.0.0.1:1/0?dial_timeout=3s&read_timeout=2s", Options{ReadTimeout: time.Second, SkipPing: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	o := c.rdb.Options()
	if o.DialTimeout != 3*time.Second || o.ReadTimeout != time.Second || o.WriteTimeout != DefaultWriteTimeout || o.MaxRetries != 0 { // go-redis stores "no retries" (-1) as 0 after init
		t.Fatalf("dial=%v read=%v write=%v retries=%d", o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries)
	}
}

func TestClosed(t *testing.T) {
	c := openTest(t, Options{})
	c.Close()
	if _, _, err := c.Get(context.Background(), "k"); !errors.Is(err, cache.ErrClosed) {
		t.Fatalf("Get after Close = %v, want cache.ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func ExampleOpen() {
	ctx := context.Background()
	rc, err := Open(ctx, testURL(), Options{})
	if err != nil {
		slog.Error("redis unavailable", "error", err)
		return
	}
	store := cache.Resilient(rc, slog.Default(), cache.ResilientOptions{Name: "redis"})
	defer store.Close()
	key := cache.Key("auth", "acme", "example:"+time.Now().String())
	store.Set(ctx, key, []byte("v"), time.Minute)
	store.Delete(ctx, key)
}
