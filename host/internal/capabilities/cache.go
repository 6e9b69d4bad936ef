package capabilities

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keelhq/keel/abi/wire"
	"github.com/keelhq/keel/bridges/cache"
	"github.com/keelhq/keel/host/internal/runtime"
)

// Field tags of keel:cache/v1 messages (see ABI.md).
const (
	cacheKey   = 1
	cacheValue = 2
	cacheTTLMS = 3
	cacheClass = 4
	cacheDelta = 5
)

// Limits on cache use by one plugin call.
const (
	maxCacheKey   = 512
	maxCacheValue = 1 << 20
)

// Cache provides keel:cache/v1.
type Cache struct {
	store    cache.Store
	requests *prometheus.CounterVec
}

// NewCache wraps store (normally a cache.ResilientStore) and registers the per-plugin
// hit/miss/error counter.
func NewCache(store cache.Store, reg prometheus.Registerer) (*Cache, error) {
	c := &Cache{store: store, requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keel_cache_requests_total", Help: "Cache operations by plugin, operation and result (hit, miss, ok, error).",
	}, []string{"plugin", "op", "result"})}
	if err := reg.Register(c.requests); err != nil {
		return nil, err
	}
	return c, nil
}

// Funcs returns the host functions.
func (c *Cache) Funcs() []runtime.HostFunc {
	return []runtime.HostFunc{
		{Module: "keel:cache/v1", Name: "get", Fn: c.get},
		{Module: "keel:cache/v1", Name: "set", Fn: c.set},
		{Module: "keel:cache/v1", Name: "delete", Fn: c.del},
		{Module: "keel:cache/v1", Name: "incr", Fn: c.incr},
	}
}

// key validates the plugin's key and namespaces it by plugin and tenant.
func (c *Cache) key(call *runtime.Call, raw []byte) (string, error) {
	if call.Manifest().Capabilities.Cache == nil {
		return "", runtime.Errorf(wire.CodeDenied, "plugin %s does not declare the cache capability", call.Manifest().Name)
	}
	if len(raw) == 0 || len(raw) > maxCacheKey {
		return "", runtime.Errorf(wire.CodeInvalid, "cache key must be 1 to %d bytes", maxCacheKey)
	}
	return cache.Key(call.Manifest().Name, call.Context.Tenant, string(raw)), nil
}

func (c *Cache) ttl(call *runtime.Call, f *wire.Fields) (time.Duration, error) {
	if f.Has(cacheTTLMS) {
		ms, err := f.Int(cacheTTLMS, 0)
		if err != nil || ms <= 0 || ms > int64(30*24*time.Hour/time.Millisecond) {
			return 0, runtime.Errorf(wire.CodeInvalid, "ttl_ms must be between 1 and 30 days")
		}
		return time.Duration(ms) * time.Millisecond, nil
	}
	class := "default"
	if f.Has(cacheClass) {
		class = f.String(cacheClass)
	}
	d, ok := call.Manifest().Capabilities.Cache.CacheTTL(class, cache.TTLClass)
	if !ok {
		return 0, runtime.Errorf(wire.CodeInvalid, "unknown cache TTL class %q", class)
	}
	return d, nil
}

func (c *Cache) count(call *runtime.Call, op, result string) {
	c.requests.WithLabelValues(call.Manifest().Name, op, result).Inc()
}

func (c *Cache) get(ctx context.Context, call *runtime.Call, in []byte) ([]byte, error) {
	raw, _, err := wire.Field(in, cacheKey) // the one field of a get: no Fields to build
	if err != nil {
		return nil, runtime.Errorf(wire.CodeMalformed, "%v", err)
	}
	k, err := c.key(call, raw)
	if err != nil {
		return nil, err
	}
	v, ok, err := c.store.Get(ctx, k)
	switch {
	case err != nil:
		// A cache is never a reason to fail a request: report a miss.
		c.count(call, "get", "error")
		return nil, nil
	case !ok:
		c.count(call, "get", "miss")
		return nil, nil
	}
	c.count(call, "get", "hit")
	// 5: the field's tag and length.
	return wire.AppendField(call.OutBuf(5+len(v)), cacheValue, v), nil
}

func (c *Cache) set(ctx context.Context, call *runtime.Call, in []byte) ([]byte, error) {
	f, err := decode(in)
	if err != nil {
		return nil, err
	}
	k, err := c.key(call, f.Bytes(cacheKey))
	if err != nil {
		return nil, err
	}
	v := f.Bytes(cacheValue)
	if len(v) > maxCacheValue {
		return nil, runtime.Errorf(wire.CodeTooLarge, "cache value of %d bytes exceeds %d", len(v), maxCacheValue)
	}
	ttl, err := c.ttl(call, f)
	if err != nil {
		return nil, err
	}
	return nil, c.result(call, "set", c.store.Set(ctx, k, v, ttl))
}

func (c *Cache) del(ctx context.Context, call *runtime.Call, in []byte) ([]byte, error) {
	f, err := decode(in)
	if err != nil {
		return nil, err
	}
	raw := f.All(cacheKey)
	if len(raw) == 0 || len(raw) > 1000 {
		return nil, runtime.Errorf(wire.CodeInvalid, "delete takes 1 to 1000 keys")
	}
	keys := make([]string, 0, len(raw))
	for _, r := range raw {
		k, err := c.key(call, r)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return nil, c.result(call, "delete", c.store.Delete(ctx, keys...))
}

func (c *Cache) incr(ctx context.Context, call *runtime.Call, in []byte) ([]byte, error) {
	f, err := decode(in)
	if err != nil {
		return nil, err
	}
	k, err := c.key(call, f.Bytes(cacheKey))
	if err != nil {
		return nil, err
	}
	delta, err := f.Int(cacheDelta, 1)
	if err != nil {
		return nil, runtime.Errorf(wire.CodeMalformed, "delta: %v", err)
	}
	ttl, err := c.ttl(call, f)
	if err != nil {
		return nil, err
	}
	n, err := c.store.Incr(ctx, k, delta, ttl)
	if err != nil {
		return nil, c.result(call, "incr", err)
	}
	c.count(call, "incr", "ok")
	return wire.AppendInt(nil, cacheValue, n), nil
}

// result maps a store error to an ABI error: an outage is "unavailable" (the SDK lets
// plugins treat it as best effort), a caller mistake is "invalid".
func (c *Cache) result(call *runtime.Call, op string, err error) error {
	switch {
	case err == nil:
		c.count(call, op, "ok")
		return nil
	case cache.IsCallerError(err):
		c.count(call, op, "invalid")
		return runtime.Errorf(wire.CodeInvalid, "%v", err)
	case errors.Is(err, cache.ErrUnavailable):
		c.count(call, op, "error")
		return runtime.Errorf(wire.CodeUnavailable, "cache unavailable")
	default:
		c.count(call, op, "error")
		return runtime.Errorf(wire.CodeUnavailable, "cache: %v", err)
	}
}

func decode(in []byte) (*wire.Fields, error) {
	f, err := wire.DecodeFields(in)
	if err != nil {
		return nil, runtime.Errorf(wire.CodeMalformed, "%v", err)
	}
	return f, nil
}
