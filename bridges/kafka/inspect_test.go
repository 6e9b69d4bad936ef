package kafka

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keelhq/keel/bridges/bus"
)

func TestInspectorStats(t *testing.T) {
	_, b := newCluster(t)
	ctx := ctxT(t, 30*time.Second)
	stats := func(topic string, groups ...string) bus.TopicStats {
		t.Helper()
		st, err := b.TopicStats(ctx, topic, groups)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := stats("never.created", "g"); st.Exists || len(st.Groups) != 1 || st.Groups[0].Lag != 0 || st.Groups[0].Pending != -1 {
		t.Fatalf("stats of a missing topic: %+v", st)
	}
	if got, err := b.Peek(ctx, "never.created", 5); err != nil || len(got) != 0 {
		t.Fatalf("peek of a missing topic: %v %v", got, err)
	}

	const topic = "stats.topic"
	ensure(t, b, topic, 3)
	for i := range 9 {
		publish(t, b, topic, bus.Message{ID: fmt.Sprint("s", i), Key: []byte(fmt.Sprint("key", i)), Value: []byte("{}")})
	}
	st := stats(topic, "done", "late")
	if !st.Exists || st.Partitions != 3 || st.Messages != 9 {
		t.Fatalf("stats %+v, want 3 partitions holding 9 messages", st)
	}
	if late := st.Groups[1]; late.Known || late.Lag != 9 || late.Pending != -1 {
		t.Errorf("a group that committed nothing: %+v, want lag 9", late)
	}
	var c collector
	subscribe(t, b, topic, "done", c.handle)
	waitFor(t, 15*time.Second, "group done to commit everything", func() bool { return committed(t, b, topic, "done") == 9 })
	if g := stats(topic, "done").Groups[0]; !g.Known || g.Lag != 0 {
		t.Errorf("a group that committed everything: %+v", g)
	}
}

func TestInspectorDeadLetters(t *testing.T) {
	_, b := newCluster(t)
	ctx := ctxT(t, 60*time.Second)
	const topic = "invoices"
	dlq := bus.DLQTopic(topic)
	ensure(t, b, topic, 1)
	var healed atomic.Bool
	var c collector
	c.fail = func(d bus.Delivery) error {
		if string(d.Value) == "poison" && !healed.Load() {
			return errors.New("cannot parse invoice")
		}
		return nil
	}
	subscribe(t, b, topic, "billing", bus.Retrying(c.handle, bus.RetryPolicy{MaxAttempts: 2}, b))
	publish(t, b, topic,
		bus.Message{ID: "i0", Key: []byte("k"), Value: []byte("poison"), Headers: map[string]string{"keel-type": "invoice.created"}},
		bus.Message{ID: "i1", Value: []byte("ok")},
		bus.Message{ID: "i2", Value: []byte("poison")})
	waitFor(t, 20*time.Second, "two dead letters", func() bool {
		st, err := b.TopicStats(ctx, dlq, nil)
		return err == nil && st.Messages == 2
	})

	parked, err := b.Peek(ctx, dlq, 10)
	if err != nil || len(parked) != 2 {
		t.Fatalf("peek: %+v %v", parked, err)
	}
	first, second := parked[0], parked[1]
	if first.ID != "0-0" || second.ID != "0-1" || !first.Removable || second.Removable {
		t.Fatalf("parked ids %s %v, %s %v; want 0-0 removable and 0-1 not", first.ID, first.Removable, second.ID, second.Removable)
	}
	if first.Message.ID != "i0@billing" || string(first.Key) != "k" || string(first.Value) != "poison" ||
		first.Headers[bus.HeaderDLQGroup] != "billing" || first.Headers["keel-type"] != "invoice.created" || time.Since(first.Time) > time.Minute {
		t.Errorf("parked message %+v", first)
	}
	if got, err := b.Get(ctx, dlq, "0-1"); err != nil || got.Message.ID != "i2@billing" || got.Removable {
		t.Errorf("get 0-1: %+v %v", got, err)
	}
	for id, want := range map[string]error{"0-2": bus.ErrNotFound, "7-0": bus.ErrNotFound, "x": bus.ErrNotFound, "0-": bus.ErrNotFound} {
		if _, err := b.Get(ctx, dlq, id); !errors.Is(err, want) {
			t.Errorf("get %s: %v, want %v", id, err, want)
		}
	}

	// Only the oldest record of a partition can go.
	if err := b.Remove(ctx, dlq, "0-1"); !errors.Is(err, bus.ErrUnsupported) {
		t.Fatalf("removing from the middle: %v, want ErrUnsupported", err)
	} else {
		t.Logf("as expected: %v", err)
	}

	healed.Store(true)
	to, m, err := bus.ReplayOf(dlq, first)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, b, to, m)
	if err := b.Remove(ctx, dlq, first.ID); err != nil {
		t.Fatal(err)
	}
	for _, call := range []func() error{
		func() error { return b.Remove(ctx, dlq, first.ID) },
		func() error { _, err := b.Get(ctx, dlq, first.ID); return err },
	} {
		if err := call(); !errors.Is(err, bus.ErrGone) {
			t.Errorf("after removal: %v, want ErrGone", err)
		}
	}
	left, err := b.Peek(ctx, dlq, 10)
	if err != nil || len(left) != 1 || left[0].ID != "0-1" || !left[0].Removable {
		t.Fatalf("after removing 0-0: %+v %v, want 0-1, now removable", left, err)
	}
	if st, _ := b.TopicStats(ctx, dlq, nil); st.Messages != 1 {
		t.Errorf("the dead-letter topic holds %d messages, want 1", st.Messages)
	}
	if err := b.Remove(ctx, dlq, "0-1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the replay to be handled", func() bool {
		for _, d := range c.snapshot() {
			if d.Headers[bus.HeaderReplayedFrom] == dlq+"/0-0" {
				return d.ID == "i0~replay-0-0" && d.Headers[bus.HeaderReplayGroup] == "billing" && d.Headers[bus.HeaderDLQError] == ""
			}
		}
		return false
	})
}

// The request and response types registered with kafka-go encode as DeleteRecords v0/v1.
func TestDeleteRecordsRegistered(t *testing.T) {
	req := &deleteRecordsRequest{}
	if req.ApiKey().MinVersion() != 0 || req.ApiKey().MaxVersion() != 1 {
		t.Fatalf("DeleteRecords versions %d-%d, want 0-1", req.ApiKey().MinVersion(), req.ApiKey().MaxVersion())
	}
}
