package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

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
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// newCluster starts an in-process Kafka-protocol broker and a bus connected to it.
func newCluster(t *testing.T) (*kfake.Cluster, *Bus) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	b, err := Open(c.ListenAddrs(), WithLogger(testLogger(t)), WithRedeliveryBackoff(50*time.Millisecond, 200*time.Millisecond), WithWriteAttempts(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return c, b
}

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

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func ensure(t *testing.T, b *Bus, topic string, partitions int) {
	t.Helper()
	for range 2 { // idempotent
		if err := b.EnsureTopic(ctxT(t, 5*time.Second), bus.TopicSpec{Name: topic, Partitions: partitions}); err != nil {
			t.Fatal(err)
		}
	}
}

func publish(t *testing.T, b *Bus, topic string, msgs ...bus.Message) {
	t.Helper()
	if err := b.Publish(ctxT(t, 5*time.Second), topic, msgs...); err != nil {
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

// committed returns the sum of the group's committed offsets on topic.
func committed(t *testing.T, b *Bus, topic, group string) int64 {
	t.Helper()
	offs, err := b.client.ConsumerOffsets(ctxT(t, 5*time.Second), kafka.TopicAndGroup{Topic: topic, GroupId: group})
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, o := range offs {
		if o > 0 {
			sum += o
		}
	}
	return sum
}

func TestPublishConsumeCommit(t *testing.T) {
	_, b := newCluster(t)
	if err := b.Ping(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	const topic = "orders.created"
	ensure(t, b, topic, 3)
	md, err := b.client.Metadata(ctxT(t, 5*time.Second), &kafka.MetadataRequest{Topics: []string{topic, topic + ".dlq"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range md.Topics {
		if tp.Error != nil || len(tp.Partitions) != 3 {
			t.Fatalf("topic %s: %d partitions, error %v; want 3 partitions", tp.Name, len(tp.Partitions), tp.Error)
		}
	}

	var msgs []bus.Message
	for i := range 10 {
		msgs = append(msgs, bus.Message{
			ID: fmt.Sprintf("e%d", i), Key: []byte(fmt.Sprintf("cust-%d", i%2)), Value: []byte(fmt.Sprint(i)),
			Headers: map[string]string{"tenant": "t1"},
		})
	}
	publish(t, b, topic, msgs...)

	var billing, audit collector
	subscribe(t, b, topic, "billing", billing.handle)
	subscribe(t, b, topic, "audit.v2", audit.handle) // every group sees every message
	waitFor(t, 15*time.Second, "both groups to get 10 messages", func() bool { return billing.count() == 10 && audit.count() == 10 })
	waitFor(t, 5*time.Second, "billing to commit everything", func() bool { return committed(t, b, topic, "billing") == 10 })

	last := map[string]int{"cust-0": -1, "cust-1": -1}
	for _, d := range billing.snapshot() {
		var n int
		fmt.Sscan(string(d.Value), &n)
		want := msgs[n]
		if d.ID != want.ID || string(d.Key) != string(want.Key) || d.Topic != topic || d.Group != "billing" || d.Attempt != 1 {
			t.Errorf("delivery %+v does not match %+v", d, want)
		}
		if len(d.Headers) != 1 || d.Headers["tenant"] != "t1" {
			t.Errorf("delivery %s headers = %v, want only tenant (keel-id moved to ID)", d.ID, d.Headers)
		}
		if n < last[string(d.Key)] {
			t.Errorf("key %s: %d delivered after %d; want per-key order", d.Key, n, last[string(d.Key)])
		}
		last[string(d.Key)] = n
	}
}

func TestRejects(t *testing.T) {
	_, b := newCluster(t)
	ctx := ctxT(t, 5*time.Second)
	if err := b.EnsureTopic(ctx, bus.TopicSpec{Name: "Bad"}); !errors.Is(err, bus.ErrInvalidName) {
		t.Errorf("EnsureTopic(bad) = %v", err)
	}
	if err := b.Publish(ctx, "never.created", bus.Message{Value: []byte("x")}); err == nil {
		t.Error("Publish to a missing topic succeeded; want an error, not a silent loss")
	} else {
		t.Logf("publish to a missing topic: %v", err)
	}
	ensure(t, b, "rejects", 1)
	if err := b.Publish(ctx, "rejects", bus.Message{Headers: map[string]string{headerID: "x"}}); err == nil {
		t.Error("Publish accepted the reserved keel-id header")
	}
	if _, err := b.Subscribe(ctx, "rejects", "Bad", func(context.Context, bus.Delivery) error { return nil }); !errors.Is(err, bus.ErrInvalidName) {
		t.Errorf("Subscribe(bad group) = %v", err)
	}
	if _, err := Open(nil); err == nil {
		t.Error("Open without brokers succeeded")
	}
}

func TestHandlerErrorRedelivered(t *testing.T) {
	_, b := newCluster(t)
	const topic = "payments"
	ensure(t, b, topic, 1)
	var failed atomic.Bool
	c := collector{fail: func(d bus.Delivery) error {
		if d.ID == "p1" && failed.CompareAndSwap(false, true) {
			return errors.New("database unavailable")
		}
		return nil
	}}
	subscribe(t, b, topic, "ledger", c.handle)
	publish(t, b, topic, bus.Message{ID: "p1", Value: []byte("a")}, bus.Message{ID: "p2", Value: []byte("b")})
	waitFor(t, 15*time.Second, "redelivery and the next message", func() bool { return c.count() == 3 })
	got := c.snapshot()
	if got[0].ID != "p1" || got[0].Attempt != 1 || got[1].ID != "p1" || got[1].Attempt != 2 || got[2].ID != "p2" {
		t.Fatalf("deliveries = %v %d, %v %d, %v; want p1#1, p1#2, p2 (order kept)", got[0].ID, got[0].Attempt, got[1].ID, got[1].Attempt, got[2].ID)
	}
	waitFor(t, 5*time.Second, "both committed", func() bool { return committed(t, b, topic, "ledger") == 2 })
}

func TestPoisonMessageToDLQ(t *testing.T) {
	_, b := newCluster(t)
	const topic = "invoices"
	ensure(t, b, topic, 1)
	var processed, attempts collector
	h := bus.Retrying(func(ctx context.Context, d bus.Delivery) error {
		_ = attempts.handle(ctx, d)
		if string(d.Value) == "poison" {
			return errors.New("cannot parse invoice")
		}
		return processed.handle(ctx, d)
	}, bus.RetryPolicy{MaxAttempts: 3, InitialBackoff: 5 * time.Millisecond}, b)
	subscribe(t, b, topic, "billing", h)
	var dead collector
	subscribe(t, b, bus.DLQTopic(topic), "ops", dead.handle)
	publish(t, b, topic,
		bus.Message{ID: "i0", Key: []byte("k"), Value: []byte("poison"), Headers: map[string]string{"tenant": "t9"}},
		bus.Message{ID: "i1", Value: []byte("ok1")},
		bus.Message{ID: "i2", Value: []byte("ok2")},
		bus.Message{ID: "i3", Value: []byte("ok3")},
	)
	waitFor(t, 15*time.Second, "the good messages after the poison one", func() bool { return processed.count() == 3 })
	waitFor(t, 15*time.Second, "the dead letter", func() bool { return dead.count() == 1 })
	for i, d := range processed.snapshot() {
		if want := fmt.Sprintf("ok%d", i+1); string(d.Value) != want {
			t.Errorf("processed[%d] = %s, want %s (partition order)", i, d.Value, want)
		}
	}
	if n := attempts.count(); n != 6 {
		t.Errorf("handler attempts = %d, want 3 for the poison message and 1 for each good one", n)
	}
	d := dead.snapshot()[0]
	if string(d.Value) != "poison" || string(d.Key) != "k" || d.ID != "i0@billing" || d.Headers["tenant"] != "t9" ||
		d.Headers[bus.HeaderDLQTopic] != topic || d.Headers[bus.HeaderDLQGroup] != "billing" ||
		d.Headers[bus.HeaderDLQAttempts] != "3" || !strings.Contains(d.Headers[bus.HeaderDLQError], "cannot parse invoice") ||
		d.Headers[bus.HeaderDLQTime] == "" {
		t.Errorf("dead letter = %+v", d)
	}
	waitFor(t, 5*time.Second, "everything committed, the poison message included", func() bool { return committed(t, b, topic, "billing") == 4 })
}

// Kafka does not deduplicate by message id: the id travels in the keel-id header and consumers
// filter. This test pins both halves of that contract.
func TestDuplicateID(t *testing.T) {
	_, b := newCluster(t)
	const topic = "dedup"
	ensure(t, b, topic, 1)
	publish(t, b, topic, bus.Message{ID: "same", Value: []byte("first")})
	publish(t, b, topic, bus.Message{ID: "same", Value: []byte("second")}, bus.Message{ID: "other", Value: []byte("third")})
	var raw, filtered collector
	subscribe(t, b, topic, "raw", raw.handle)
	subscribe(t, b, topic, "filtered", bus.Deduplicating(filtered.handle, 100))
	waitFor(t, 15*time.Second, "all deliveries", func() bool { return raw.count() == 3 && filtered.count() == 2 })
	waitFor(t, 5*time.Second, "the dropped duplicate to be committed too", func() bool { return committed(t, b, topic, "filtered") == 3 })
	got := filtered.snapshot()
	if got[0].ID != "same" || string(got[0].Value) != "first" || got[1].ID != "other" {
		t.Fatalf("filtered deliveries = %s/%s, %s; want same/first, other", got[0].ID, got[0].Value, got[1].ID)
	}
	if r := raw.snapshot(); r[1].ID != "same" {
		t.Fatalf("raw deliveries carry id %q, want the duplicate's id preserved", r[1].ID)
	}
}

func TestCloseWaitsForInFlightHandler(t *testing.T) {
	_, b := newCluster(t)
	const topic = "slow"
	ensure(t, b, topic, 1)
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
	case <-time.After(15 * time.Second):
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
	case <-time.After(15 * time.Second):
		t.Fatal("Close did not return after the handler finished")
	}
	if !finished.Load() {
		t.Fatal("Close returned before the handler finished")
	}
	if n := committed(t, b, topic, "g"); n != 1 {
		t.Fatalf("committed offset after Close = %d, want 1 (commit before Close returns)", n)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestCancelledContextLeavesMessageUncommitted(t *testing.T) {
	_, b := newCluster(t)
	const topic = "hardstop"
	ensure(t, b, topic, 1)
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
	select {
	case <-started:
	case <-time.After(15 * time.Second):
		t.Fatal("handler never started")
	}
	cancel()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := committed(t, b, topic, "g"); n != 0 {
		t.Fatalf("committed = %d after a failed handler, want 0", n)
	}
	var c collector
	subscribe(t, b, topic, "g", c.handle)
	waitFor(t, 15*time.Second, "redelivery to the next group member", func() bool { return c.count() == 1 })
	if d := c.snapshot()[0]; d.ID != "h1" {
		t.Fatalf("redelivered %q, want h1", d.ID)
	}
}

func TestBrokerDownAtPublish(t *testing.T) {
	c, b := newCluster(t)
	ensure(t, b, "orders", 1)
	publish(t, b, "orders", bus.Message{ID: "before", Value: []byte("ok")})
	c.Close()

	start := time.Now()
	err := b.Publish(ctxT(t, 5*time.Second), "orders", bus.Message{ID: "after", Value: []byte("lost?")})
	if err == nil {
		t.Fatal("Publish returned nil with the broker down: the message would be silently lost")
	}
	t.Logf("publish with the broker down failed after %v: %v", time.Since(start), err)
	if d := time.Since(start); d > 6*time.Second {
		t.Fatalf("Publish took %v to fail", d)
	}
	if err := b.Ping(ctxT(t, 2*time.Second)); err == nil {
		t.Fatal("Ping succeeded with the broker down")
	}
}

// A topic created by another host must be publishable as soon as EnsureTopic returns here, even
// though kafka-go caches cluster metadata.
func TestEnsureTopicCreatedElsewhere(t *testing.T) {
	c, a := newCluster(t)
	ensure(t, a, "warmup", 1)
	b, err := Open(c.ListenAddrs(), WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	publish(t, b, "warmup", bus.Message{Value: []byte("fills b's metadata cache")})
	ensure(t, a, "created.by.a", 1)
	ensure(t, b, "created.by.a", 1) // already exists
	publish(t, b, "created.by.a", bus.Message{ID: "x", Value: []byte("x")})
}
