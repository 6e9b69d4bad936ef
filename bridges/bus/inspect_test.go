package bus

import "testing"

func TestReplayOf(t *testing.T) {
	parked := Stored{ID: "7", Message: Message{ID: "e1@billing", Key: []byte("k"), Value: []byte("v"), Headers: map[string]string{
		"keel-type": "order.created", HeaderDLQError: "boom", HeaderDLQTopic: "orders", HeaderDLQGroup: "billing",
		HeaderDLQAttempts: "3", HeaderDLQTime: "2026-01-01T00:00:00Z",
	}}}
	topic, m, err := ReplayOf("orders.dlq", parked)
	if err != nil || topic != "orders" {
		t.Fatalf("ReplayOf = %q, %v", topic, err)
	}
	want := map[string]string{"keel-type": "order.created", HeaderReplayedFrom: "orders.dlq/7", HeaderReplayGroup: "billing"}
	if m.ID != "e1~replay-7" || string(m.Key) != "k" || string(m.Value) != "v" || len(m.Headers) != len(want) {
		t.Fatalf("replay message %+v", m)
	}
	for k, v := range want {
		if m.Headers[k] != v {
			t.Errorf("header %s = %q, want %q", k, m.Headers[k], v)
		}
	}
	// Parked again after the replay, and replayed again: the id does not grow.
	again := Stored{ID: "9", Message: Message{ID: m.ID + "@billing", Headers: map[string]string{HeaderDLQGroup: "billing", HeaderReplayedFrom: "orders.dlq/7"}}}
	if _, m2, _ := ReplayOf("orders.dlq", again); m2.ID != "e1~replay-9" || m2.Headers[HeaderReplayedFrom] != "orders.dlq/9" {
		t.Errorf("second replay %+v", m2)
	}
	if _, _, err := ReplayOf("orders", parked); err == nil {
		t.Error("ReplayOf accepted a topic that is not a dead-letter topic")
	}
}
