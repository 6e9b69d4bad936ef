package nats

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keelhq/keel/bridges/bus"
)

// TestInspector runs against the embedded server and, in a namespace of its own, against the
// machine's NATS server, like TestRealServer.
func TestInspector(t *testing.T) {
	t.Run("Embedded", func(t *testing.T) {
		srv, err := StartEmbedded(t.TempDir(), WithServerLogger(testLogger(t)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Shutdown)
		inspectorScenarios(t, open(t, srv.ClientURL(), "keel"))
	})
	t.Run("RealServer", func(t *testing.T) {
		url := os.Getenv("KEEL_TEST_NATS_URL")
		if url == "" {
			url = "nats://127.0.0.1:4222"
		}
		ns := randomNamespace(t)
		b := open(t, url, ns)
		t.Cleanup(func() { deleteNamespace(t, b, ns) })
		inspectorScenarios(t, b)
	})
}

func inspectorScenarios(t *testing.T, b *Bus) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stats := func(t *testing.T, topic string, groups ...string) bus.TopicStats {
		t.Helper()
		st, err := b.TopicStats(ctx, topic, groups)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	t.Run("MissingTopic", func(t *testing.T) {
		st := stats(t, "never.created", "g")
		if st.Exists || st.Messages != 0 || len(st.Groups) != 1 || st.Groups[0].Known || st.Groups[0].Lag != 0 {
			t.Fatalf("stats of a missing topic: %+v", st)
		}
		if got, err := b.Peek(ctx, "never.created", 10); err != nil || len(got) != 0 {
			t.Fatalf("peek of a missing topic: %v %v", got, err)
		}
		if _, err := b.Get(ctx, "never.created", "1"); !errors.Is(err, bus.ErrNotFound) {
			t.Fatalf("get on a missing topic: %v, want ErrNotFound", err)
		}
	})

	t.Run("LagAndPending", func(t *testing.T) {
		const topic = "lag.topic"
		ensure(t, b, topic)
		for i := range 3 {
			publish(t, b, topic, bus.Message{ID: fmt.Sprint("m", i), Value: []byte("{}")})
		}
		release := make(chan struct{})
		subscribe(t, b, topic, "slow", func(ctx context.Context, d bus.Delivery) error {
			<-release
			return nil
		})
		waitFor(t, 10*time.Second, "one message in flight", func() bool {
			g := stats(t, topic, "slow").Groups[0]
			return g.Known && g.Pending == 1 && g.Lag == 3
		})
		st := stats(t, topic, "slow", "late")
		if st.Messages != 3 || !st.Exists || st.Partitions != 1 {
			t.Errorf("stats %+v", st)
		}
		if late := st.Groups[1]; late.Group != "late" || late.Known || late.Lag != 3 {
			t.Errorf("a group without a consumer: %+v, want lag 3", late)
		}
		close(release)
		waitFor(t, 10*time.Second, "the slow group to catch up", func() bool {
			g := stats(t, topic, "slow").Groups[0]
			return g.Lag == 0 && g.Pending == 0
		})
	})

	t.Run("PeekSkipsRemoved", func(t *testing.T) {
		const topic = "peek.topic"
		ensure(t, b, topic)
		for i := 1; i <= 5; i++ {
			publish(t, b, topic, bus.Message{ID: fmt.Sprint("p", i), Key: []byte{byte(i)}, Value: []byte(fmt.Sprint(i)), Headers: map[string]string{"n": fmt.Sprint(i)}})
		}
		for _, id := range []string{"2", "4"} {
			if err := b.Remove(ctx, topic, id); err != nil {
				t.Fatal(err)
			}
		}
		got, err := b.Peek(ctx, topic, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || got[0].ID != "1" || got[1].ID != "3" || got[2].ID != "5" {
			t.Fatalf("peek after removing 2 and 4: %+v", got)
		}
		m := got[1]
		if m.Message.ID != "p3" || string(m.Key) != "\x03" || string(m.Value) != "3" || m.Headers["n"] != "3" || len(m.Headers) != 1 || !m.Removable {
			t.Errorf("stored message %+v", m)
		}
		if time.Since(m.Time) > time.Minute || time.Since(m.Time) < 0 {
			t.Errorf("stored at %v", m.Time)
		}
		if got, _ := b.Peek(ctx, topic, 2); len(got) != 2 || got[1].ID != "3" {
			t.Errorf("peek with limit 2: %+v", got)
		}
		if st := stats(t, topic); st.Messages != 3 {
			t.Errorf("%d messages after removing two of five", st.Messages)
		}
		for id, want := range map[string]error{"2": bus.ErrGone, "6": bus.ErrNotFound, "0": bus.ErrNotFound, "x": bus.ErrNotFound} {
			if _, err := b.Get(ctx, topic, id); !errors.Is(err, want) {
				t.Errorf("get %s: %v, want %v", id, err, want)
			}
			if err := b.Remove(ctx, topic, id); !errors.Is(err, want) {
				t.Errorf("remove %s: %v, want %v", id, err, want)
			}
		}
	})

	t.Run("DeadLetterReplay", func(t *testing.T) {
		const topic = "orders.created"
		dlq := bus.DLQTopic(topic)
		ensure(t, b, topic)
		var healed atomic.Bool
		var c collector
		c.fail = func(d bus.Delivery) error {
			if d.ID == "o2" && !healed.Load() {
				return errors.New("refused")
			}
			return nil
		}
		h := bus.Retrying(c.handle, bus.RetryPolicy{MaxAttempts: 2}, b)
		subscribe(t, b, topic, "billing", h)
		publish(t, b, topic,
			bus.Message{ID: "o1", Value: []byte(`{"n":1}`)},
			bus.Message{ID: "o2", Key: []byte("k2"), Value: []byte(`{"n":2}`), Headers: map[string]string{"keel-type": "order.created"}},
			bus.Message{ID: "o3", Value: []byte(`{"n":3}`)})
		waitFor(t, 10*time.Second, "o2 to be parked", func() bool { return stats(t, dlq).Messages == 1 })
		waitFor(t, 10*time.Second, "billing to finish", func() bool { return stats(t, topic, "billing").Groups[0].Lag == 0 })

		parked, err := b.Peek(ctx, dlq, 50)
		if err != nil || len(parked) != 1 {
			t.Fatalf("peek %s: %v %v", dlq, parked, err)
		}
		p := parked[0]
		if p.Message.ID != "o2@billing" || p.Headers[bus.HeaderDLQTopic] != topic || p.Headers[bus.HeaderDLQGroup] != "billing" ||
			p.Headers[bus.HeaderDLQAttempts] != "2" || p.Headers["keel-type"] != "order.created" || string(p.Key) != "k2" {
			t.Fatalf("parked message %+v", p)
		}
		t.Logf("parked error header: %q", p.Headers[bus.HeaderDLQError])

		healed.Store(true)
		to, m, err := bus.ReplayOf(dlq, p)
		if err != nil || to != topic {
			t.Fatalf("replay of: %q %v", to, err)
		}
		for range 2 { // a retried replay is deduplicated by the server
			publish(t, b, to, m)
		}
		if err := b.Remove(ctx, dlq, p.ID); err != nil {
			t.Fatal(err)
		}
		if err := b.Remove(ctx, dlq, p.ID); !errors.Is(err, bus.ErrGone) {
			t.Fatalf("second remove: %v, want ErrGone", err)
		}
		waitFor(t, 10*time.Second, "the replay to be handled", func() bool {
			for _, d := range c.snapshot() {
				if d.Headers[bus.HeaderReplayedFrom] != "" {
					return true
				}
			}
			return false
		})
		waitFor(t, 10*time.Second, "billing to finish", func() bool { return stats(t, topic, "billing").Groups[0].Lag == 0 })
		var replays []bus.Delivery
		for _, d := range c.snapshot() {
			if d.Headers[bus.HeaderReplayedFrom] != "" {
				replays = append(replays, d)
			}
		}
		if len(replays) != 1 {
			t.Fatalf("%d replayed deliveries, want 1 (the second publish is a duplicate)", len(replays))
		}
		r := replays[0]
		if r.Attempt != 1 || r.ID != "o2~replay-"+p.ID || string(r.Value) != `{"n":2}` || r.Headers[bus.HeaderReplayGroup] != "billing" ||
			r.Headers[bus.HeaderReplayedFrom] != dlq+"/"+p.ID || r.Headers[bus.HeaderDLQError] != "" || r.Headers["keel-type"] != "order.created" {
			t.Errorf("replayed delivery %+v", r)
		}
		if st := stats(t, dlq); st.Messages != 0 {
			t.Errorf("the dead-letter topic still holds %d messages", st.Messages)
		}
	})
}
