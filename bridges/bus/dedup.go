package bus

import (
	"context"
	"sync"
)

// Deduplicating wraps h so that a message whose ID was already handled successfully by this
// process, on the same topic and group, is acknowledged without calling h again. It remembers the
// last capacity IDs (values below 1 mean 10000).
//
// It is a best-effort filter for brokers that do not deduplicate (Kafka) and for redeliveries
// after a lost acknowledgement: it forgets on restart and does not see what other hosts handled.
// Exactly-once effects still need an idempotent handler or a processed-events table written in
// the handler's own transaction. Messages without an ID always pass.
func Deduplicating(h Handler, capacity int) Handler {
	if capacity < 1 {
		capacity = 10000
	}
	type key struct{ topic, group, id string }
	var (
		mu   sync.Mutex
		seen = make(map[key]struct{}, capacity)
		ring = make([]key, capacity)
		next int
	)
	return func(ctx context.Context, d Delivery) error {
		if d.ID == "" {
			return h(ctx, d)
		}
		k := key{d.Topic, d.Group, d.ID}
		mu.Lock()
		_, dup := seen[k]
		mu.Unlock()
		if dup {
			return nil
		}
		if err := h(ctx, d); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if _, ok := seen[k]; ok {
			return nil
		}
		if old := ring[next]; old != (key{}) {
			delete(seen, old)
		}
		ring[next] = k
		seen[k] = struct{}{}
		next = (next + 1) % capacity
		return nil
	}
}
