package nats_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/keelhq/keel/bridges/bus"
	"github.com/keelhq/keel/bridges/nats"
)

// The embedded server is the default bus: start it under the data dir, open a bus on it,
// provision a topic and consume it.
func ExampleStartEmbedded() {
	dir, _ := os.MkdirTemp("", "keel-example")
	defer os.RemoveAll(dir)
	srv, err := nats.StartEmbedded(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := nats.Open(ctx, srv.ClientURL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()

	if err := b.EnsureTopic(ctx, bus.TopicSpec{Name: "customers.created"}); err != nil {
		fmt.Println(err)
		return
	}
	got := make(chan bus.Delivery, 1)
	sub, err := b.Subscribe(ctx, "customers.created", "audit", func(_ context.Context, d bus.Delivery) error {
		got <- d
		return nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sub.Close()

	if err := b.Publish(ctx, "customers.created", bus.Message{ID: "evt-1", Value: []byte(`{"name":"ACME"}`)}); err != nil {
		fmt.Println(err)
		return
	}
	d := <-got
	fmt.Println(d.Topic, d.Group, d.ID, string(d.Value), d.Attempt)
	// Output: customers.created audit evt-1 {"name":"ACME"} 1
}
