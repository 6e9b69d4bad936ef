package health

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestReportStates(t *testing.T) {
	var pluginErr atomic.Pointer[error]
	c := New(func() []PluginCheck {
		return []PluginCheck{{Name: "p", Version: "1.0.0", Check: func(context.Context) error {
			if e := pluginErr.Load(); e != nil {
				return *e
			}
			return nil
		}}}
	})
	c.ttl = 0 // every call runs the checks
	c.AddDependency("db", func(context.Context) error { return nil })
	c.AddDependency("cache", func(context.Context) error { return Degraded{Err: errors.New("redis down")} })

	if r := c.Report(context.Background()); r.Status != StatusStarting || r.Ready() {
		t.Fatalf("before start-up: %+v", r)
	}
	c.SetStarted()
	r := c.Report(context.Background())
	if !r.Ready() || r.Dependencies["cache"].Status != StatusDegraded || r.Plugins["p"].Version != "1.0.0" {
		t.Fatalf("degraded cache must keep the host ready: %+v", r)
	}
	lost := errors.New("lost its database")
	pluginErr.Store(&lost)
	r = c.Report(context.Background())
	if r.Ready() || r.Plugins["p"].Status != StatusFailing || r.Plugins["p"].Error != "lost its database" {
		t.Fatalf("failing plugin: %+v", r)
	}
}

func TestReportIsCachedAndShared(t *testing.T) {
	var runs atomic.Int32
	c := New(func() []PluginCheck { return nil })
	c.AddDependency("slow", func(context.Context) error {
		runs.Add(1)
		time.Sleep(50 * time.Millisecond)
		return nil
	})
	c.SetStarted()
	done := make(chan struct{})
	for i := 0; i < 10; i++ {
		go func() { c.Report(context.Background()); done <- struct{}{} }()
	}
	for i := 0; i < 10; i++ {
		<-done
	}
	c.Report(context.Background()) // within the TTL: cached
	if n := runs.Load(); n != 1 {
		t.Fatalf("11 reports within the TTL ran the check %d times, want 1", n)
	}
}

func TestCheckTimeout(t *testing.T) {
	c := New(func() []PluginCheck { return nil })
	c.timeout = 50 * time.Millisecond
	c.AddDependency("hung", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	c.SetStarted()
	t0 := time.Now()
	r := c.Report(context.Background())
	if r.Ready() || time.Since(t0) > time.Second {
		t.Fatalf("a hung check must fail within the timeout: %+v after %s", r, time.Since(t0))
	}
}
