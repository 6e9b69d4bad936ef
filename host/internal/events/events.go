package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/abi/wire"
	"github.com/keelhq/keel/bridges/bus"
	"github.com/keelhq/keel/host/internal/runtime"
)

// Target returns the active generation's plugin for a name, or nil; the plugin
// manager provides it, so deliveries follow hot swaps.
type Target func(plugin string) *runtime.Plugin

// Events owns topic provisioning and subscriptions.
type Events struct {
	hostID  string
	bus     bus.Bus
	target  Target
	logger  *slog.Logger
	metrics *bus.Metrics

	mu   sync.Mutex
	subs map[string]*subscription // by plugin + "\x00" + topic
	// ctx is the lifetime of the consumers: cancelled by Close.
	ctx    context.Context
	cancel context.CancelFunc
}

type subscription struct {
	decl manifest.SubscribeCap
	sub  bus.Subscription
}

// New creates the events layer over b. hostID names this host's own consumer groups
// for broadcast subscriptions.
func New(b bus.Bus, target Target, logger *slog.Logger, metrics *bus.Metrics, hostID string) *Events {
	ctx, cancel := context.WithCancel(context.Background())
	return &Events{hostID: hostGroupSuffix(hostID), bus: b, target: target, logger: logger, metrics: metrics, subs: map[string]*subscription{}, ctx: ctx, cancel: cancel}
}

// hostGroupSuffix turns a host id into a valid group-name suffix.
func hostGroupSuffix(id string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(id) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	if b.Len() == 0 {
		return "host"
	}
	s := b.String()
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}

// group is the consumer group of a subscription on this host.
func (e *Events) group(decl manifest.SubscribeCap) string {
	if decl.Broadcast {
		return decl.Group + "-" + e.hostID
	}
	return decl.Group
}

// Bus returns the underlying bus (for the outbox relay and readiness).
func (e *Events) Bus() bus.Bus { return e.bus }

// Provision creates every topic m publishes or subscribes to, each with its
// dead-letter topic. It is idempotent and runs before a version is activated.
func (e *Events) Provision(ctx context.Context, m *manifest.Manifest) error {
	for _, p := range m.Capabilities.Publish {
		parts := p.Partitions
		if parts == 0 {
			parts = 1
		}
		if err := e.bus.EnsureTopic(ctx, bus.TopicSpec{Name: p.Topic, Partitions: parts}); err != nil {
			return fmt.Errorf("plugin %s: provision topic %s: %w", m.Name, p.Topic, err)
		}
	}
	for _, s := range m.Capabilities.Subscribe {
		if bus.IsDLQ(s.Topic) {
			continue // created with its parent topic
		}
		if err := e.bus.EnsureTopic(ctx, bus.TopicSpec{Name: s.Topic, Partitions: 1}); err != nil {
			return fmt.Errorf("plugin %s: provision topic %s: %w", m.Name, s.Topic, err)
		}
	}
	return nil
}

// Sync makes the running subscriptions of m's plugin match m's declarations: it
// starts new ones and stops those no longer declared. Subscriptions whose declaration
// is unchanged keep running across a hot swap; their deliveries reach whichever
// generation is active.
func (e *Events) Sync(m *manifest.Manifest) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	want := map[string]manifest.SubscribeCap{}
	for _, s := range m.Capabilities.Subscribe {
		want[m.Name+"\x00"+s.Topic] = s
	}
	for key, s := range e.subs {
		if len(key) > len(m.Name) && key[:len(m.Name)+1] == m.Name+"\x00" {
			if w, ok := want[key]; !ok || w != s.decl {
				e.stopLocked(key)
			}
		}
	}
	var errs []error
	for key, decl := range want {
		if _, running := e.subs[key]; running {
			continue
		}
		h := bus.Retrying(e.handler(m.Name), bus.RetryPolicy{
			MaxAttempts: decl.MaxAttempts, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 10 * time.Second, Jitter: 0.2,
		}, e.bus, bus.WithLogger(e.logger), bus.WithMetrics(e.metrics))
		sub, err := e.bus.Subscribe(e.ctx, decl.Topic, e.group(decl), h)
		if err != nil {
			errs = append(errs, fmt.Errorf("plugin %s: subscribe %s: %w", m.Name, decl.Topic, err))
			continue
		}
		e.subs[key] = &subscription{decl: decl, sub: sub}
		e.logger.Info("subscribed", "plugin", m.Name, "topic", decl.Topic, "group", e.group(decl))
	}
	return errors.Join(errs...)
}

// Stop ends every subscription of a plugin (on deactivation).
func (e *Events) Stop(plugin string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for key := range e.subs {
		if len(key) > len(plugin) && key[:len(plugin)+1] == plugin+"\x00" {
			e.stopLocked(key)
		}
	}
}

func (e *Events) stopLocked(key string) {
	s := e.subs[key]
	delete(e.subs, key)
	if err := s.sub.Close(); err != nil {
		e.logger.Warn("closing a subscription", "topic", s.decl.Topic, "err", err)
	}
}

// Close stops every subscription. The bus itself is closed by its owner.
func (e *Events) Close() {
	e.cancel()
	e.mu.Lock()
	defer e.mu.Unlock()
	for key := range e.subs {
		e.stopLocked(key)
	}
}

// handler delivers one bus message to the plugin's keel_event export.
func (e *Events) handler(plugin string) bus.Handler {
	return func(ctx context.Context, d bus.Delivery) error {
		// A replay from a dead-letter topic is meant for the group that gave up on it;
		// the groups that handled the original already did their work.
		if g := d.Headers[bus.HeaderReplayGroup]; g != "" && g != d.Group {
			return nil
		}
		env, err := DecodeEnvelope(d.Value)
		if err != nil {
			return bus.Permanent(err) // no retry can fix a malformed envelope
		}
		p := e.target(plugin)
		if p == nil {
			return fmt.Errorf("plugin %s is not active", plugin)
		}
		ev := &wire.Event{
			ID: env.ID, Type: env.Type, Topic: d.Topic, Tenant: env.Tenant, Source: env.Source,
			Time: env.Time.UnixNano(), Key: d.Key, Payload: env.Payload, Attempt: d.Attempt,
			Ctx: wire.CallContext{RequestID: env.RequestID, Tenant: env.Tenant},
		}
		if ev.Ctx.RequestID == "" {
			ev.Ctx.RequestID = env.ID
		}
		res, err := p.Event(ctx, ev)
		if err != nil {
			return err
		}
		if res.Code != 0 {
			return fmt.Errorf("plugin %s rejected event %s (%s): %s", plugin, env.ID, wire.Code(res.Code), res.Message)
		}
		return nil
	}
}
