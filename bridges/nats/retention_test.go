package nats

import (
	"context"
	"testing"
	"time"

	"github.com/keelhq/keel/bridges/bus"
)

func TestDeadLetterTopicsKeepMessagesLonger(t *testing.T) {
	srv, err := StartEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	ctx := context.Background()
	b, err := Open(ctx, srv.ClientURL(), WithRetention(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.EnsureTopic(ctx, bus.TopicSpec{Name: "orders.placed"}); err != nil {
		t.Fatal(err)
	}
	age := func(topic string) time.Duration {
		s, err := b.js.Stream(ctx, b.cfg.names.stream(topic))
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.Config.MaxAge
	}
	if got := age("orders.placed"); got != 24*time.Hour {
		t.Fatalf("topic retention %s", got)
	}
	if got := age("orders.placed.dlq"); got != 96*time.Hour {
		t.Fatalf("dead-letter retention %s, want four times the topic's", got)
	}
}
