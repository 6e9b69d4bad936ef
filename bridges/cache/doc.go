// Package cache defines the key-value cache the host offers to plugins and
// the pieces every implementation shares.
//
// Plugins never talk to Redis or to the in-process cache directly: the host
// calls a [Store] on their behalf, with keys built by [Key] so that one
// plugin or tenant can never read or overwrite another's entries. Two
// implementations exist: [NewMemory], an in-process sharded LRU used when
// KEEL_REDIS_URL is unset, and the Redis bridge in
// github.com/keelhq/keel/bridges/redis.
//
// A cache is an optimisation, never a dependency a request may fail on.
// [Resilient] wraps any Store so that an outage turns reads into misses and
// writes into [ErrUnavailable], and a circuit breaker stops calling a dead
// backend so that the outage costs no latency per request. Readiness probes
// report the breaker as degraded rather than failing.
//
// Expiry classes ([TTLClass]) give plugins platform-wide defaults instead of
// magic numbers:
//
//	session  1h   login sessions
//	auth     15m  permission and token lookups
//	user     5m   user profiles and other frequently edited records
//	config   24h  configuration and feature flags (invalidated on change)
//	short    1m   rate limits, de-duplication windows
//	default  10m  anything else
package cache
