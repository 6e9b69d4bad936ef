package cache

import (
	"context"
	"errors"
	"strings"
	"time"
)

// Store is a key-value cache with per-entry expiry.
//
// A ttl of zero or less means the entry does not expire by time; it stays
// until it is deleted or, in a bounded store, evicted. Implementations are
// safe for concurrent use.
type Store interface {
	// Get returns the value stored under key. A missing or expired key is
	// reported as ok == false with a nil error; err is reserved for failures
	// of the store itself.
	Get(ctx context.Context, key string) (val []byte, ok bool, err error)
	// Set stores val under key, replacing any previous value and expiry.
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	// Delete removes keys; keys that do not exist are ignored.
	Delete(ctx context.Context, keys ...string) error
	// Incr adds delta to the integer stored under key and returns the new
	// value. A missing key counts as 0 and is created with ttl; an existing
	// key keeps its expiry, so a fixed-window counter is one call. The value
	// is stored as decimal text, like Redis does, so Get returns "42".
	Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error)
	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
	// Close releases the store's resources. Calls after Close fail.
	Close() error
}

var (
	// ErrUnavailable marks a write that did not reach the cache because the
	// backend is down or the circuit breaker is open. Callers treat a cache
	// as best effort, so they may ignore it (errors.Is(err, ErrUnavailable)).
	ErrUnavailable = errors.New("cache unavailable")
	// ErrNotInteger is returned by Incr when the stored value is not a
	// decimal 64-bit integer, mirroring Redis' "value is not an integer".
	ErrNotInteger = errors.New("cache: value is not an integer")
	// ErrOverflow is returned by Incr when the result would not fit in an
	// int64; the stored value is left unchanged.
	ErrOverflow = errors.New("cache: increment would overflow")
	// ErrValueTooLarge is returned by Set when an entry cannot fit in the
	// store's byte budget at all.
	ErrValueTooLarge = errors.New("cache: value too large")
	// ErrClosed is returned by calls made after Close.
	ErrClosed = errors.New("cache: store closed")
)

// IsCallerError reports whether err was caused by the request rather than by
// the backend, so that a healthy store answering "no" is not mistaken for an
// outage by the circuit breaker.
func IsCallerError(err error) bool {
	return errors.Is(err, ErrNotInteger) || errors.Is(err, ErrOverflow) || errors.Is(err, ErrValueTooLarge)
}

// keyPrefix starts every key the host writes, so that a Redis shared with
// other software can be inspected and flushed by namespace.
const keyPrefix = "keel:"

// Key returns the backend key for a plugin's key in a tenant's namespace,
// "keel:{plugin}:{tenant}:{key}".
//
// The plugin and tenant parts are escaped ('%' as "%25", ':' as "%3A") so
// that they never contain the separator; the key is the remainder and is
// kept verbatim, which keeps plugin keys such as "user:42" readable. Two
// different triples therefore never produce the same string: the first two
// separators after the prefix are always the ones Key wrote, and escaping is
// reversible (see [ParseKey]).
func Key(plugin, tenant, key string) string {
	var b strings.Builder
	b.Grow(len(keyPrefix) + len(plugin) + len(tenant) + len(key) + 2)
	b.WriteString(keyPrefix)
	escapePart(&b, plugin)
	b.WriteByte(':')
	escapePart(&b, tenant)
	b.WriteByte(':')
	b.WriteString(key)
	return b.String()
}

// ParseKey is the inverse of [Key]. It exists so that tools and tests can
// attribute a backend key to its plugin and tenant.
func ParseKey(s string) (plugin, tenant, key string, ok bool) {
	rest, found := strings.CutPrefix(s, keyPrefix)
	if !found {
		return "", "", "", false
	}
	p, rest, found := strings.Cut(rest, ":")
	if !found {
		return "", "", "", false
	}
	t, k, found := strings.Cut(rest, ":")
	if !found {
		return "", "", "", false
	}
	if plugin, ok = unescapePart(p); !ok {
		return "", "", "", false
	}
	if tenant, ok = unescapePart(t); !ok {
		return "", "", "", false
	}
	return plugin, tenant, k, true
}

func escapePart(b *strings.Builder, s string) {
	if !strings.ContainsAny(s, "%:") {
		b.WriteString(s)
		return
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '%':
			b.WriteString("%25")
		case ':':
			b.WriteString("%3A")
		default:
			b.WriteByte(s[i])
		}
	}
}

func unescapePart(s string) (string, bool) {
	if !strings.Contains(s, "%") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "%25"):
			b.WriteByte('%')
		case strings.HasPrefix(s[i:], "%3A"):
			b.WriteByte(':')
		default:
			return "", false // Key never writes any other escape.
		}
		i += 2
	}
	return b.String(), true
}

// DefaultTTL is the expiry of the "default" class, used when a plugin names
// no class.
const DefaultTTL = 10 * time.Minute

var ttlClasses = map[string]time.Duration{
	"session": time.Hour,
	"auth":    15 * time.Minute,
	"user":    5 * time.Minute,
	"config":  24 * time.Hour,
	"short":   time.Minute,
	"default": DefaultTTL,
}

// TTLClass returns the platform default expiry for a named class, so that
// plugins pick a kind of data instead of hard-coding durations and
// operators can reason about how stale each kind can be. The classes are
// session (1h), auth (15m), user (5m), config (24h), short (1m) and default
// (10m). Names are exact and lower case; ok is false for unknown names.
func TTLClass(name string) (ttl time.Duration, ok bool) {
	ttl, ok = ttlClasses[name]
	return ttl, ok
}
