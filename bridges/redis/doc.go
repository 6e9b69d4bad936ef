// Package redis is the Redis bridge: a cache.Store backed by
// github.com/redis/go-redis/v9, used when KEEL_REDIS_URL is set.
//
// The client is tuned for a cache that must never slow the platform down:
// dial, read, write and pool timeouts default to a couple of hundred
// milliseconds and commands are not retried, so a dead or hung Redis costs
// one short timeout per call until cache.Resilient's breaker opens and then
// nothing at all. Wrap the client with cache.Resilient in the host:
//
//	rc, err := redis.Open(ctx, url, redis.Options{})
//	...
//	store := cache.Resilient(rc, logger, cache.ResilientOptions{Name: "redis"})
//
// One Client is shared by every plugin and survives plugin hot swaps; the
// host namespaces keys with cache.Key.
package redis
