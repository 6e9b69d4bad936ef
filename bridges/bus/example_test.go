package bus_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keelhq/keel/bridges/bus"
)

// printer is a stand-in dead-letter publisher; a real host passes its Bus.
type printer struct{}

func (printer) Publish(_ context.Context, topic string, msgs ...bus.Message) error {
	for _, m := range msgs {
		fmt.Printf("parked %s in %s after %s attempts: %s\n", m.ID, topic, m.Headers[bus.HeaderDLQAttempts], m.Headers[bus.HeaderDLQError])
	}
	return nil
}

// A handler that always fails is retried in-process, then its message is parked in the topic's
// dead-letter topic and acknowledged, so the messages behind it keep flowing.
func ExampleRetrying() {
	policy := bus.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}
	h := bus.Retrying(func(ctx context.Context, d bus.Delivery) error {
		fmt.Println("attempt", d.Attempt)
		return errors.New("customer not found")
	}, policy, printer{})

	err := h(context.Background(), bus.Delivery{Topic: "invoices.created", Group: "billing", Attempt: 1, Message: bus.Message{ID: "evt-42"}})
	fmt.Println("acknowledge:", err == nil)
	// Output:
	// attempt 1
	// attempt 2
	// attempt 3
	// parked evt-42@billing in invoices.created.dlq after 3 attempts: customer not found
	// acknowledge: true
}
