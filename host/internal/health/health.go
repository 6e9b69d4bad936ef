// Package health computes the host's readiness: one entry per dependency (database,
// cache, broker) and one per active plugin, from the plugin's keel_health export.
//
// Results are cached briefly so that a load balancer polling /readyz cannot turn into
// a load generator against the plugins and the database.
package health

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Status values.
const (
	StatusOK       = "ok"
	StatusDegraded = "degraded" // working with reduced function (e.g. cache down); still ready
	StatusFailing  = "failing"
	StatusStarting = "starting"
)

// Check reports a dependency's health. Returning ErrDegraded (wrapped) marks the
// dependency degraded but keeps the host ready.
type Check func(ctx context.Context) error

// Degraded wraps an error to say the dependency is degraded, not failing.
type Degraded struct{ Err error }

func (d Degraded) Error() string { return d.Err.Error() }
func (d Degraded) Unwrap() error { return d.Err }

// Entry is one line of the report.
type Entry struct {
	Status    string  `json:"status"`
	Error     string  `json:"error,omitempty"`
	Version   string  `json:"version,omitempty"`
	LatencyMS float64 `json:"latency_ms"`
}

// Report is the /readyz body.
type Report struct {
	Status       string           `json:"status"`
	Dependencies map[string]Entry `json:"dependencies"`
	Plugins      map[string]Entry `json:"plugins"`
	CheckedAt    time.Time        `json:"checked_at"`
}

// Ready reports whether the host should receive traffic.
func (r *Report) Ready() bool { return r.Status == StatusOK }

// PluginCheck checks one active plugin.
type PluginCheck struct {
	Name, Version string
	Check         Check
}

// Checker aggregates checks.
type Checker struct {
	mu      sync.Mutex
	deps    map[string]Check
	plugins func() []PluginCheck
	started atomic.Bool
	ttl     time.Duration
	timeout time.Duration
	last    *Report
	running chan struct{}
}

// New creates a checker. plugins lists the active plugins at check time.
func New(plugins func() []PluginCheck) *Checker {
	return &Checker{deps: map[string]Check{}, plugins: plugins, ttl: time.Second, timeout: 2 * time.Second}
}

// AddDependency registers a dependency check under name.
func (c *Checker) AddDependency(name string, check Check) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deps[name] = check
}

// SetStarted marks start-up complete; until then the host is not ready.
func (c *Checker) SetStarted() { c.started.Store(true) }

// Report returns a fresh or recently cached report. Concurrent callers share one run.
func (c *Checker) Report(ctx context.Context) *Report {
	c.mu.Lock()
	if c.last != nil && time.Since(c.last.CheckedAt) < c.ttl {
		r := c.last
		c.mu.Unlock()
		return r
	}
	if c.running != nil {
		ch := c.running
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		c.mu.Lock()
		r := c.last
		c.mu.Unlock()
		if r != nil {
			return r
		}
		return &Report{Status: StatusStarting, CheckedAt: time.Now()}
	}
	ch := make(chan struct{})
	c.running = ch
	deps := make(map[string]Check, len(c.deps))
	for k, v := range c.deps {
		deps[k] = v
	}
	c.mu.Unlock()

	r := c.run(context.WithoutCancel(ctx), deps)

	c.mu.Lock()
	c.last, c.running = r, nil
	c.mu.Unlock()
	close(ch)
	return r
}

func (c *Checker) run(ctx context.Context, deps map[string]Check) *Report {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	r := &Report{Status: StatusOK, Dependencies: map[string]Entry{}, Plugins: map[string]Entry{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	run := func(into map[string]Entry, name, version string, check Check) {
		defer wg.Done()
		t0 := time.Now()
		err := check(ctx)
		e := Entry{Status: StatusOK, Version: version, LatencyMS: float64(time.Since(t0).Microseconds()) / 1000}
		if err != nil {
			e.Error = err.Error()
			e.Status = StatusFailing
			if _, ok := err.(Degraded); ok {
				e.Status = StatusDegraded
			}
		}
		mu.Lock()
		into[name] = e
		mu.Unlock()
	}
	for name, check := range deps {
		wg.Add(1)
		go run(r.Dependencies, name, "", check)
	}
	for _, p := range c.plugins() {
		wg.Add(1)
		go run(r.Plugins, p.Name, p.Version, p.Check)
	}
	wg.Wait()
	for _, m := range []map[string]Entry{r.Dependencies, r.Plugins} {
		for _, e := range m {
			if e.Status == StatusFailing {
				r.Status = StatusFailing
			}
		}
	}
	if !c.started.Load() && r.Status == StatusOK {
		r.Status = StatusStarting
	}
	r.CheckedAt = time.Now()
	return r
}

// Names returns the sorted keys of m, for stable output in logs and tests.
func Names(m map[string]Entry) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
