package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// BreakerState is the state of a [ResilientStore]'s circuit breaker.
type BreakerState int32

const (
	// StateClosed is normal operation: every call reaches the store.
	StateClosed BreakerState = iota
	// StateOpen means the store failed repeatedly; calls are answered
	// without touching it until the cool-down has passed.
	StateOpen
	// StateHalfOpen means the cool-down has passed and one probe call is
	// testing the store; other calls are still answered without it.
	StateHalfOpen
)

func (s BreakerState) String() string {
	switch s {
	case StateClosed:
		return "closed"
	case StateOpen:
		return "open"
	case StateHalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("BreakerState(%d)", int32(s))
}

// Defaults for [ResilientOptions].
const (
	DefaultFailureThreshold = 5
	DefaultCoolDown         = 2 * time.Second
)

// ResilientOptions configures [Resilient]. The zero value gives the defaults.
type ResilientOptions struct {
	// Name identifies the backend in logs and status, e.g. "redis".
	Name string
	// FailureThreshold is the number of consecutive failures that opens the
	// breaker.
	FailureThreshold int
	// CoolDown is how long an open breaker answers without the store before
	// letting one probe call through.
	CoolDown time.Duration
	// Clock replaces time.Now, so tests can move time without sleeping.
	Clock func() time.Time
}

// BreakerStatus describes a [ResilientStore] for readiness reports. A store
// whose breaker is not closed is degraded: the platform works, uncached.
type BreakerStatus struct {
	Name                string
	State               BreakerState
	Since               time.Time // when State was entered
	ConsecutiveFailures int
	LastError           string // the last failure seen, empty if none yet
	Opens               uint64 // how often the breaker has opened
	ShortCircuited      uint64 // calls answered without the store
}

// Degraded reports whether the cache is currently bypassed.
func (s BreakerStatus) Degraded() bool { return s.State != StateClosed }

// ResilientStore is a [Store] that never lets a cache outage fail a request;
// see [Resilient].
type ResilientStore struct {
	store     Store
	logger    *slog.Logger
	name      string
	threshold int64
	coolDown  time.Duration
	clock     func() time.Time

	state          atomic.Int32 // mirrors st for the lock-free fast path
	failures       atomic.Int64 // consecutive failures
	shortCircuited atomic.Uint64

	mu       sync.Mutex
	st       BreakerState
	since    time.Time
	openedAt time.Time
	probing  bool
	lastErr  error
	opens    uint64
}

var _ Store = (*ResilientStore)(nil)

// Resilient wraps store so that a cache outage degrades the platform
// instead of failing it.
//
// Errors from the store turn Get into a miss (ok == false, err == nil) and
// are returned from Set, Delete, Incr and Ping wrapped in [ErrUnavailable],
// so callers that treat the cache as best effort can ignore them. Errors
// caused by the request ([IsCallerError]) pass through unchanged and count
// as proof that the store is up. After FailureThreshold consecutive failures
// the breaker opens and calls are answered at once without touching the
// store; after CoolDown one call probes it and closes the breaker again if
// it succeeds, so the cache heals by itself. State changes are logged.
//
// A call whose context is cancelled is not held against the store; one
// whose deadline passes is, because that is how a hung backend looks to
// callers with short deadlines. A call whose context has already ended does
// not reach the store. Close closes the wrapped store.
func Resilient(store Store, logger *slog.Logger, opts ResilientOptions) *ResilientStore {
	if logger == nil {
		logger = slog.Default()
	}
	if opts.Name == "" {
		opts.Name = "cache"
	}
	if opts.FailureThreshold <= 0 {
		opts.FailureThreshold = DefaultFailureThreshold
	}
	if opts.CoolDown <= 0 {
		opts.CoolDown = DefaultCoolDown
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	r := &ResilientStore{
		store:     store,
		logger:    logger.With("cache", opts.Name),
		name:      opts.Name,
		threshold: int64(opts.FailureThreshold),
		coolDown:  opts.CoolDown,
		clock:     opts.Clock,
	}
	r.since = r.clock()
	return r
}

// State returns the breaker's current state.
func (r *ResilientStore) State() BreakerState { return BreakerState(r.state.Load()) }

// Status returns a snapshot for readiness reports and metrics.
func (r *ResilientStore) Status() BreakerStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := BreakerStatus{
		Name:                r.name,
		State:               r.st,
		Since:               r.since,
		ConsecutiveFailures: int(r.failures.Load()),
		Opens:               r.opens,
		ShortCircuited:      r.shortCircuited.Load(),
	}
	if r.lastErr != nil {
		st.LastError = r.lastErr.Error()
	}
	return st
}

// Get implements [Store]; it never returns an error from the backend.
func (r *ResilientStore) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if ctx.Err() != nil {
		return nil, false, nil
	}
	probe, ok := r.acquire()
	if !ok {
		return nil, false, nil
	}
	val, found, err := r.store.Get(ctx, key)
	if r.outcome(ctx, probe, err) != nil {
		return nil, false, nil
	}
	return val, found, err
}

// Set implements [Store].
func (r *ResilientStore) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return r.wrap("set", err)
	}
	probe, ok := r.acquire()
	if !ok {
		return r.rejected("set")
	}
	return r.wrap("set", r.outcome(ctx, probe, r.store.Set(ctx, key, val, ttl)))
}

// Delete implements [Store].
func (r *ResilientStore) Delete(ctx context.Context, keys ...string) error {
	if err := ctx.Err(); err != nil {
		return r.wrap("delete", err)
	}
	probe, ok := r.acquire()
	if !ok {
		return r.rejected("delete")
	}
	return r.wrap("delete", r.outcome(ctx, probe, r.store.Delete(ctx, keys...)))
}

// Incr implements [Store].
func (r *ResilientStore) Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, r.wrap("incr", err)
	}
	probe, ok := r.acquire()
	if !ok {
		return 0, r.rejected("incr")
	}
	n, err := r.store.Incr(ctx, key, delta, ttl)
	if err := r.wrap("incr", r.outcome(ctx, probe, err)); err != nil {
		return 0, err
	}
	return n, err
}

// Ping implements [Store]. While the breaker is open it reports
// ErrUnavailable without touching the store; once the cool-down has passed
// it is the probe, which lets a readiness check heal an idle cache.
func (r *ResilientStore) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return r.wrap("ping", err)
	}
	probe, ok := r.acquire()
	if !ok {
		return r.rejected("ping")
	}
	return r.wrap("ping", r.outcome(ctx, probe, r.store.Ping(ctx)))
}

// Close closes the wrapped store.
func (r *ResilientStore) Close() error { return r.store.Close() }

// acquire decides whether a call may reach the store; probe is true for the
// single call that tests a half-open breaker.
func (r *ResilientStore) acquire() (probe, ok bool) {
	if BreakerState(r.state.Load()) == StateClosed {
		return false, true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch r.st {
	case StateClosed:
		return false, true
	case StateOpen:
		if r.clock().Sub(r.openedAt) >= r.coolDown {
			r.setState(StateHalfOpen)
			r.probing = true
			return true, true
		}
	case StateHalfOpen:
		if !r.probing {
			r.probing = true
			return true, true
		}
	}
	r.shortCircuited.Add(1)
	return false, false
}

// outcome records the result of a call that reached the store and returns
// err if it was a backend failure, nil otherwise.
func (r *ResilientStore) outcome(ctx context.Context, probe bool, err error) error {
	switch {
	case err == nil || IsCallerError(err):
		if probe {
			r.mu.Lock()
			r.failures.Store(0)
			skipped := r.shortCircuited.Load()
			r.setState(StateClosed)
			r.probing = false
			r.mu.Unlock()
			r.logger.Info("cache backend recovered, breaker closed", "short_circuited_total", skipped)
		} else if r.failures.Load() != 0 {
			r.failures.Store(0)
		}
		return nil
	case errors.Is(ctx.Err(), context.Canceled):
		// The caller gave up; that says nothing about the backend. A
		// passed deadline does count: a hung backend shows up as nothing
		// but deadlines when callers' deadlines are shorter than the
		// store's own timeouts.
		if probe {
			r.mu.Lock()
			r.probing = false
			r.mu.Unlock()
		}
		return err
	}
	n := r.failures.Add(1)
	if !probe && n < r.threshold {
		r.mu.Lock()
		r.lastErr = err
		r.mu.Unlock()
		return err
	}
	r.mu.Lock()
	r.lastErr = err
	if probe || r.st == StateClosed {
		wasProbe := r.st == StateHalfOpen
		r.openedAt = r.clock()
		r.opens++
		r.probing = false
		r.setState(StateOpen)
		r.mu.Unlock()
		if wasProbe {
			r.logger.Warn("cache backend still failing, breaker reopened", "error", err, "cool_down", r.coolDown)
		} else {
			r.logger.Warn("cache backend failing, breaker opened: serving without cache",
				"error", err, "consecutive_failures", n, "cool_down", r.coolDown)
		}
		return err
	}
	r.mu.Unlock()
	return err
}

// setState changes state; the caller holds r.mu.
func (r *ResilientStore) setState(s BreakerState) {
	if r.st == s {
		return
	}
	r.st = s
	r.since = r.clock()
	r.state.Store(int32(s))
}

func (r *ResilientStore) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s %s: %w: %w", r.name, op, ErrUnavailable, err)
}

func (r *ResilientStore) rejected(op string) error {
	return fmt.Errorf("%s %s: %w: circuit breaker open", r.name, op, ErrUnavailable)
}
