package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/keelhq/keel/bridges/cache"
)

// Defaults for [Options]. They bound what an unreachable or hung Redis can
// add to a request before the circuit breaker opens.
const (
	DefaultDialTimeout  = 200 * time.Millisecond
	DefaultReadTimeout  = 150 * time.Millisecond
	DefaultWriteTimeout = 150 * time.Millisecond
	DefaultPoolTimeout  = 200 * time.Millisecond
)

// Options configures [Open]. Zero fields fall back to the value in the URL's
// query (go-redis parameters such as dial_timeout or pool_size) and then to
// the package defaults.
type Options struct {
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// PoolTimeout bounds the wait for a free connection when all are busy.
	PoolTimeout time.Duration
	// PoolSize is the maximum number of connections; go-redis defaults to
	// 10 per CPU.
	PoolSize int
	// MaxRetries is how often a failed command is retried on a network
	// error. The default, 0, never retries: for a cache a miss is cheaper
	// than a second timeout.
	MaxRetries int
	// SkipPing makes Open return without contacting Redis, for hosts that
	// prefer to start degraded when Redis is down at boot.
	SkipPing bool
}

// Client is a [cache.Store] backed by one Redis server. It is safe for
// concurrent use and is meant to be shared.
type Client struct {
	rdb  *goredis.Client
	addr string
}

var _ cache.Store = (*Client)(nil)

// Open connects to the Redis server at rawURL (redis://, rediss:// or
// unix://, as accepted by go-redis' ParseURL) and, unless opts.SkipPing is
// set, checks that it answers within ctx. Error messages never contain the
// URL's password.
func Open(ctx context.Context, rawURL string, opts Options) (*Client, error) {
	o, err := goredis.ParseURL(rawURL)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // url.Error repeats the URL, password included
		}
		return nil, fmt.Errorf("redis: invalid URL %s: %w", redact(rawURL), err)
	}
	o.DialTimeout = pick(opts.DialTimeout, o.DialTimeout, DefaultDialTimeout)
	o.ReadTimeout = pick(opts.ReadTimeout, o.ReadTimeout, DefaultReadTimeout)
	o.WriteTimeout = pick(opts.WriteTimeout, o.WriteTimeout, DefaultWriteTimeout)
	o.PoolTimeout = pick(opts.PoolTimeout, o.PoolTimeout, DefaultPoolTimeout)
	if opts.PoolSize > 0 {
		o.PoolSize = opts.PoolSize
	}
	switch {
	case opts.MaxRetries > 0:
		o.MaxRetries = opts.MaxRetries
	case o.MaxRetries == 0:
		o.MaxRetries = -1 // go-redis reads 0 as "3 retries"
	}
	// A plugin call's deadline is usually shorter than ReadTimeout; honour
	// whichever ends first.
	o.ContextTimeoutEnabled = true
	// One dial attempt per command; the breaker, not the client, decides
	// when to try again.
	o.DialerRetries = 1
	// The handshake extras cost a round trip per connection and are
	// rejected by servers older than 7.2 or outside Redis Cloud.
	o.DisableIdentity = true
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}

	c := &Client{rdb: goredis.NewClient(o), addr: o.Addr}
	if !opts.SkipPing {
		if err := c.rdb.Ping(ctx).Err(); err != nil {
			c.rdb.Close()
			return nil, fmt.Errorf("redis: ping %s: %w", o.Addr, err)
		}
	}
	return c, nil
}

func pick(explicit, fromURL, def time.Duration) time.Duration {
	switch {
	case explicit != 0:
		return explicit
	case fromURL != 0:
		return fromURL
	}
	return def
}

// redact returns rawURL without its password, for error messages.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparseable)"
	}
	return u.Redacted()
}

// Addr returns the server address, for logs and readiness reports.
func (c *Client) Addr() string { return c.addr }

// Get implements [cache.Store].
func (c *Client) Get(ctx context.Context, key string) ([]byte, bool, error) {
	v, err := c.rdb.Get(ctx, key).Bytes()
	switch {
	case err == nil:
		return v, true, nil
	case errors.Is(err, goredis.Nil):
		return nil, false, nil
	}
	return nil, false, c.wrap("get", err)
}

// Set implements [cache.Store].
func (c *Client) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	return c.wrap("set", c.rdb.Set(ctx, key, val, expiry(ttl)).Err())
}

// Delete implements [cache.Store]. It uses UNLINK, so large values are freed
// off Redis' main thread.
func (c *Client) Delete(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	return c.wrap("delete", c.rdb.Unlink(ctx, keys...).Err())
}

// incrScript increments and sets the expiry only if the key did not exist,
// atomically and in one round trip. It returns the value with GET because
// Lua numbers are doubles and would round counters above 2^53.
var incrScript = goredis.NewScript(`
local created = redis.call('EXISTS', KEYS[1]) == 0
redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
if created and ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return redis.call('GET', KEYS[1])
`)

// Incr implements [cache.Store].
func (c *Client) Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	ms := int64(0)
	if ttl > 0 {
		ms = max(1, ttl.Milliseconds())
	}
	s, err := incrScript.Run(ctx, c.rdb, []string{key}, strconv.FormatInt(delta, 10), strconv.FormatInt(ms, 10)).Text()
	if err != nil {
		msg := err.Error()
		switch {
		case strings.Contains(msg, "not an integer"):
			return 0, fmt.Errorf("redis incr %q: %w", key, cache.ErrNotInteger)
		case strings.Contains(msg, "would overflow"):
			return 0, fmt.Errorf("redis incr %q by %d: %w", key, delta, cache.ErrOverflow)
		}
		return 0, c.wrap("incr", err)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("redis incr %q: unexpected reply %q: %w", key, s, err)
	}
	return n, nil
}

// Ping implements [cache.Store].
func (c *Client) Ping(ctx context.Context) error {
	return c.wrap("ping", c.rdb.Ping(ctx).Err())
}

// Close implements [cache.Store]; it closes every pooled connection.
func (c *Client) Close() error {
	if err := c.rdb.Close(); err != nil && !errors.Is(err, goredis.ErrClosed) {
		return fmt.Errorf("redis close %s: %w", c.addr, err)
	}
	return nil
}

// PoolStats is a snapshot of the connection pool, meant for metrics.
type PoolStats struct {
	Hits, Misses, Timeouts uint32 // connection reuse and pool wait outcomes
	TotalConns, IdleConns  uint32
	StaleConns             uint32 // connections closed for being idle too long or broken
}

// PoolStats returns the connection pool's counters.
func (c *Client) PoolStats() PoolStats {
	s := c.rdb.PoolStats()
	return PoolStats{
		Hits: s.Hits, Misses: s.Misses, Timeouts: s.Timeouts,
		TotalConns: s.TotalConns, IdleConns: s.IdleConns, StaleConns: s.StaleConns,
	}
}

// expiry maps the Store's TTL convention onto go-redis': zero or less means
// no expiry (go-redis would read -1 as KEEPTTL), and go-redis logs a warning
// for anything below its 1 ms resolution.
func expiry(ttl time.Duration) time.Duration {
	switch {
	case ttl <= 0:
		return 0
	case ttl < time.Millisecond:
		return time.Millisecond
	}
	return ttl
}

func (c *Client) wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, goredis.ErrClosed):
		return fmt.Errorf("redis %s: %w", op, cache.ErrClosed)
	}
	return fmt.Errorf("redis %s %s: %w", op, c.addr, err)
}

// RouteLibraryLogs sends go-redis' own log lines (dial failures, pool
// events), which it otherwise prints to stderr, to logger at Warn level.
// go-redis keeps one logger per process, so the host calls this once at
// start-up rather than Open doing it behind its back.
func RouteLibraryLogs(logger *slog.Logger) {
	goredis.SetLogger(libraryLogger{logger})
}

type libraryLogger struct{ l *slog.Logger }

func (l libraryLogger) Printf(ctx context.Context, format string, v ...any) {
	l.l.WarnContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}
