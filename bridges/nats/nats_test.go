package nats

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keelhq/keel/bridges/bus"
)

// waitFor polls cond every 10ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// testOptions make redelivery and shutdown fast enough for tests.
func testOptions(t *testing.T, ns string) []Option {
	return []Option{
		WithLogger(testLogger(t)),
		WithNamespace(ns),
		WithRedeliveryBackoff(50*time.Millisecond, 200*time.Millisecond),
		WithPollWait(200 * time.Millisecond),
	}
}

func randomNamespace(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "kt" + hex.EncodeToString(b)
}

func TestEmbedded(t *testing.T) {
	dir := t.TempDir()
	srv, err := StartEmbedded(dir, WithServerLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	if !strings.HasPrefix(srv.ClientURL(), "nats://127.0.0.1:") {
		t.Fatalf("embedded server listens on %s, want loopback", srv.ClientURL())
	}
	if _, err := os.Stat(dir + "/nats/jetstream"); err != nil {
		t.Fatalf("jetstream store not under the data dir: %v", err)
	}
	runScenarios(t, func(t *testing.T) *Bus {
		return open(t, srv.ClientURL(), "keel")
	})
}

// TestRealServer runs the same scenarios against the machine's NATS server. Each run uses its
// own namespace and deletes its streams afterwards, so it can share the server.
func TestRealServer(t *testing.T) {
	url := os.Getenv("KEEL_TEST_NATS_URL")
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	probe, err := Open(ctx, url)
	if err != nil {
		t.Fatalf("the real NATS server at %s is not usable: %v\n"+
			"start it (nats-server -js -a 127.0.0.1 -p 4222) or point KEEL_TEST_NATS_URL at one with JetStream enabled", url, err)
	}
	_ = probe.Close()
	ns := randomNamespace(t)
	runScenarios(t, func(t *testing.T) *Bus {
		b := open(t, url, ns)
		t.Cleanup(func() { deleteNamespace(t, b, ns) })
		return b
	})
}

func open(t *testing.T, url, ns string) *Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := Open(ctx, url, testOptions(t, ns)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return b
}

// deleteNamespace removes the streams a test created on a shared server.
func deleteNamespace(t *testing.T, b *Bus, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	prefix := strings.ToUpper(ns) + "_"
	names := b.js.StreamNames(ctx)
	var doomed []string
	for n := range names.Name() {
		if strings.HasPrefix(n, prefix) {
			doomed = append(doomed, n)
		}
	}
	for _, n := range doomed {
		if err := b.js.DeleteStream(ctx, n); err != nil {
			t.Logf("cleanup: delete stream %s: %v", n, err)
		}
	}
}

// collector is a handler that records deliveries.
type collector struct {
	mu   sync.Mutex
	got  []bus.Delivery
	fail func(d bus.Delivery) error
}

func (c *collector) handle(_ context.Context, d bus.Delivery) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, d)
	if c.fail != nil {
		return c.fail(d)
	}
	return nil
}

func (c *collector) snapshot() []bus.Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]bus.Delivery(nil), c.got...)
}

func (c *collector) count() int { return len(c.snapshot()) }

func ensure(t *testing.T, b *Bus, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 2 { // idempotent
		if err := b.EnsureTopic(ctx, bus.TopicSpec{Name: topic, Partitions: 3}); err != nil {
			t.Fatal(err)
		}
	}
}

func publish(t *testing.T, b *Bus, topic string, msgs ...bus.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Publish(ctx, topic, msgs...); err != nil {
		t.Fatal(err)
	}
}

func subscribe(t *testing.T, b *Bus, topic, group string, h bus.Handler) bus.Subscription {
	t.Helper()
	s, err := b.Subscribe(context.Background(), topic, group, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func consumerInfo(t *testing.T, b *Bus, topic, group string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := b.js.Consumer(ctx, b.cfg.names.stream(topic), b.cfg.names.durable(group))
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// allAcked reports whether the group has acknowledged everything in the topic.
func allAcked(t *testing.T, b *Bus, topic, group string) func() bool {
	return func() bool {
		info := consumerInfo(t, b, topic, group)
		return info.NumAckPending == 0 && info.NumPending == 0
	}
}

func runScenarios(t *testing.T, newBus func(t *testing.T) *Bus) {
	t.Run("PublishConsumeAck", func(t *testing.T) {
		b := newBus(t)
		if err := b.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
		const topic = "orders.created"
		ensure(t, b, topic)
		msgs := []bus.Message{
			{ID: "e1", Key: []byte("cust-1"), Value: []byte(`{"n":1}`), Headers: map[string]string{"tenant": "t1", "trace": "abc"}},
			{ID: "e2", Value: []byte(`{"n":2}`)},
			{ID: "e3", Key: []byte{0, 1, 2, 0xff}, Value: []byte(`{"n":3}`)},
		}
		publish(t, b, topic, msgs[0])     // single, synchronous path
		publish(t, b, topic, msgs[1:]...) // batch, asynchronous path
		var billing, audit collector
		subscribe(t, b, topic, "billing", billing.handle)
		subscribe(t, b, topic, "audit.v2", audit.handle) // every group sees every message
		waitFor(t, 10*time.Second, "both groups to get 3 messages", func() bool { return billing.count() == 3 && audit.count() == 3 })
		got := billing.snapshot()
		for i, d := range got {
			want := msgs[i]
			if d.ID != want.ID || string(d.Key) != string(want.Key) || string(d.Value) != string(want.Value) {
				t.Errorf("delivery %d = id %q key %q value %q, want %q %q %q", i, d.ID, d.Key, d.Value, want.ID, want.Key, want.Value)
			}
			if d.Topic != topic || d.Group != "billing" || d.Attempt != 1 {
				t.Errorf("delivery %d = topic %q group %q attempt %d", i, d.Topic, d.Group, d.Attempt)
			}
			if len(d.Headers) != len(want.Headers) {
				t.Errorf("delivery %d headers = %v, want %v (no bridge headers leaking)", i, d.Headers, want.Headers)
			}
			for k, v := range want.Headers {
				if d.Headers[k] != v {
					t.Errorf("delivery %d header %s = %q, want %q", i, k, d.Headers[k], v)
				}
			}
		}
		waitFor(t, 5*time.Second, "billing to ack everything", allAcked(t, b, topic, "billing"))
		waitFor(t, 5*time.Second, "audit to ack everything", allAcked(t, b, topic, "audit.v2"))
	})

	t.Run("Rejects", func(t *testing.T) {
		b := newBus(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.EnsureTopic(ctx, bus.TopicSpec{Name: "Bad Name"}); !errors.Is(err, bus.ErrInvalidName) {
			t.Errorf("EnsureTopic(bad name) = %v", err)
		}
		if err := b.Publish(ctx, "never.created", bus.Message{Value: []byte("x")}); err == nil {
			t.Error("Publish to a topic without a stream succeeded; want an error, not a silent loss")
		}
		ensure(t, b, "rejects")
		if err := b.Publish(ctx, "rejects", bus.Message{Headers: map[string]string{"Nats-Expected-Stream": "x"}}); err == nil {
			t.Error("Publish accepted a reserved Nats- header")
		}
		if err := b.Publish(ctx, "rejects", bus.Message{Headers: map[string]string{"a": "line\r\nbreak"}}); err == nil {
			t.Error("Publish accepted a header value with a line break")
		}
		if _, err := b.Subscribe(ctx, "rejects", "Bad", func(context.Context, bus.Delivery) error { return nil }); !errors.Is(err, bus.ErrInvalidName) {
			t.Errorf("Subscribe(bad group) = %v", err)
		}
	})

	t.Run("HandlerErrorRedelivered", func(t *testing.T) {
		b := newBus(t)
		const topic = "payments"
		ensure(t, b, topic)
		var failed atomic.Bool
		c := collector{fail: func(d bus.Delivery) error {
			if d.ID == "p1" && failed.CompareAndSwap(false, true) {
				return errors.New("database unavailable")
			}
			return nil
		}}
		subscribe(t, b, topic, "ledger", c.handle)
		publish(t, b, topic, bus.Message{ID: "p1", Value: []byte("pay")})
		waitFor(t, 10*time.Second, "the redelivery", func() bool { return c.count() == 2 })
		got := c.snapshot()
		if got[0].ID != "p1" || got[1].ID != "p1" || got[0].Attempt != 1 || got[1].Attempt != 2 {
			t.Fatalf("deliveries = %+v, want p1 attempt 1 then attempt 2", got)
		}
		waitFor(t, 5*time.Second, "the ack after success", allAcked(t, b, topic, "ledger"))
	})

	t.Run("PoisonMessageToDLQ", func(t *testing.T) {
		b := newBus(t)
		const topic = "invoices"
		ensure(t, b, topic)
		var processed, attempts collector
		h := bus.Retrying(func(ctx context.Context, d bus.Delivery) error {
			_ = attempts.handle(ctx, d)
			if string(d.Value) == "poison" {
				return errors.New("cannot parse invoice")
			}
			return processed.handle(ctx, d)
		}, bus.RetryPolicy{MaxAttempts: 3, InitialBackoff: 5 * time.Millisecond}, b)
		subscribe(t, b, topic, "billing", h)
		publish(t, b, topic,
			bus.Message{ID: "i0", Value: []byte("poison"), Headers: map[string]string{"tenant": "t9"}},
			bus.Message{ID: "i1", Value: []byte("ok")},
			bus.Message{ID: "i2", Value: []byte("ok")},
			bus.Message{ID: "i3", Value: []byte("ok")},
		)
		var dead collector
		subscribe(t, b, bus.DLQTopic(topic), "ops", dead.handle)
		waitFor(t, 10*time.Second, "the good messages after the poison one", func() bool { return processed.count() == 3 })
		waitFor(t, 10*time.Second, "the dead letter", func() bool { return dead.count() == 1 })
		if n := attempts.count(); n != 6 {
			t.Errorf("handler attempts = %d, want 3 for the poison message and 1 for each good one", n)
		}
		d := dead.snapshot()[0]
		if string(d.Value) != "poison" || d.ID != "i0@billing" || d.Headers["tenant"] != "t9" ||
			d.Headers[bus.HeaderDLQTopic] != topic || d.Headers[bus.HeaderDLQGroup] != "billing" ||
			d.Headers[bus.HeaderDLQAttempts] != "3" || !strings.Contains(d.Headers[bus.HeaderDLQError], "cannot parse invoice") ||
			d.Headers[bus.HeaderDLQTime] == "" {
			t.Errorf("dead letter = %+v", d)
		}
		waitFor(t, 5*time.Second, "the poison message to be acknowledged", allAcked(t, b, topic, "billing"))
	})

	t.Run("DuplicateMsgIDDropped", func(t *testing.T) {
		b := newBus(t)
		const topic = "dedup"
		ensure(t, b, topic)
		publish(t, b, topic, bus.Message{ID: "same", Value: []byte("first")})
		publish(t, b, topic, bus.Message{ID: "same", Value: []byte("second")}, bus.Message{ID: "other", Value: []byte("third")})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := b.js.Stream(ctx, b.cfg.names.stream(topic))
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs != 2 {
			t.Fatalf("stream holds %d messages, want 2 (duplicate id stored once)", info.State.Msgs)
		}
		var c collector
		subscribe(t, b, topic, "g", c.handle)
		waitFor(t, 10*time.Second, "two deliveries", func() bool { return c.count() == 2 })
		waitFor(t, 5*time.Second, "acks", allAcked(t, b, topic, "g"))
		if got := c.snapshot(); string(got[0].Value) != "first" || string(got[1].Value) != "third" {
			t.Fatalf("deliveries = %q, %q; want first, third", got[0].Value, got[1].Value)
		}
	})

	t.Run("CloseWaitsForInFlightHandler", func(t *testing.T) {
		b := newBus(t)
		const topic = "slow"
		ensure(t, b, topic)
		started, release := make(chan struct{}), make(chan struct{})
		var finished atomic.Bool
		s := subscribe(t, b, topic, "g", func(ctx context.Context, d bus.Delivery) error {
			close(started)
			<-release
			finished.Store(true)
			return nil
		})
		publish(t, b, topic, bus.Message{ID: "s1", Value: []byte("x")})
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("handler never started")
		}
		closed := make(chan error, 1)
		go func() { closed <- s.Close() }()
		select {
		case err := <-closed:
			t.Fatalf("Close returned (%v) while the handler was still running", err)
		case <-time.After(300 * time.Millisecond):
		}
		close(release)
		select {
		case err := <-closed:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not return after the handler finished")
		}
		if !finished.Load() {
			t.Fatal("Close returned before the handler finished")
		}
		// The ack was confirmed before Close returned.
		if info := consumerInfo(t, b, topic, "g"); info.NumAckPending != 0 || info.NumPending != 0 {
			t.Fatalf("after Close: ack pending %d, pending %d; want the message acknowledged", info.NumAckPending, info.NumPending)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})

	t.Run("CancelledContextLeavesMessageUnacked", func(t *testing.T) {
		b := newBus(t)
		const topic = "hardstop"
		ensure(t, b, topic)
		ctx, cancel := context.WithCancel(context.Background())
		started := make(chan struct{})
		s, err := b.Subscribe(ctx, topic, "g", func(ctx context.Context, d bus.Delivery) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		publish(t, b, topic, bus.Message{ID: "h1", Value: []byte("x")})
		<-started
		cancel()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		var c collector
		subscribe(t, b, topic, "g", c.handle)
		waitFor(t, 10*time.Second, "redelivery to the next subscriber", func() bool { return c.count() == 1 })
		if d := c.snapshot()[0]; d.ID != "h1" || d.Attempt != 2 {
			t.Fatalf("redelivery = %q attempt %d, want h1 attempt 2", d.ID, d.Attempt)
		}
	})
}

func TestEmbeddedRestartKeepsMessages(t *testing.T) {
	dir := t.TempDir()
	srv, err := StartEmbedded(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := Open(ctx, srv.ClientURL(), WithPollWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.EnsureTopic(ctx, bus.TopicSpec{Name: "durable"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, "durable", bus.Message{ID: "d1", Value: []byte("kept")}); err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	srv.Shutdown()

	srv, err = StartEmbedded(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	b, err = Open(ctx, srv.ClientURL(), WithPollWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var c collector
	s, err := b.Subscribe(ctx, "durable", "g", c.handle)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	waitFor(t, 10*time.Second, "the message published before the restart", func() bool { return c.count() == 1 })
	if got := string(c.snapshot()[0].Value); got != "kept" {
		t.Fatalf("got %q", got)
	}
}

func TestNames(t *testing.T) {
	n := naming{ns: "keel"}
	if got := n.stream("orders.created"); got != "KEEL_orders_created" {
		t.Errorf("stream = %q", got)
	}
	if got := n.subject("orders.created"); got != "keel.events.orders.created" {
		t.Errorf("subject = %q", got)
	}
	// '.' and '_' must not collide.
	seen := map[string]string{}
	for _, topic := range []string{"a.b", "a_b", "a__b", "a._b", "a_.b", "a..b"} {
		s := escape(topic)
		if prev, ok := seen[s]; ok {
			t.Errorf("escape(%q) = escape(%q) = %q", topic, prev, s)
		}
		seen[s] = topic
		if strings.ContainsAny(s, ".*> ") {
			t.Errorf("escape(%q) = %q is not a valid JetStream name", topic, s)
		}
	}
	if err := validNamespace("Keel"); err == nil {
		t.Error("upper-case namespace accepted")
	}
	if _, err := Open(context.Background(), "nats://127.0.0.1:1", WithNamespace("a.b")); !errors.Is(err, bus.ErrInvalidName) {
		t.Errorf("Open with a bad namespace = %v", err)
	}
}

func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := Open(ctx, "nats://user:secret@127.0.0.1:1")
	if err == nil {
		t.Fatal("Open succeeded against a closed port")
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("error leaks the password: %v", err)
	}
}
