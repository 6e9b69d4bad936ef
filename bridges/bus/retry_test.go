package bus

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// counter reads keel_bus_<name>_total{topic,group} from reg.
func counter(t *testing.T, reg prometheus.Gatherer, name, topic, group string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "keel_bus_"+name+"_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["topic"] == topic && labels["group"] == group {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// recorder is a Publisher that keeps what it is given, or fails with err.
type recorder struct {
	mu   sync.Mutex
	err  error
	got  []Message
	tops []string
}

func (r *recorder) Publish(_ context.Context, topic string, msgs ...Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	for _, m := range msgs {
		r.tops = append(r.tops, topic)
		r.got = append(r.got, m)
	}
	return nil
}

var errBoom = errors.New("boom")

func TestRetrying(t *testing.T) {
	fast := RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond}
	dlqDown := errors.New("dlq down")

	tests := []struct {
		name     string
		policy   RetryPolicy
		attempt  int                          // Delivery.Attempt from the broker
		failures int                          // handler fails this many times, then succeeds; -1 always fails
		handler  func(n int, err error) error // optional override of the handler's error
		dlqErr   error
		cancelAt int // cancel the context during call n (0: never)

		wantErr      error // errors.Is target; nil means success expected
		wantCalls    int
		wantAttempts []int
		wantDLQ      bool
		wantMetrics  [4]float64 // delivered, retried, dead-lettered, failed
	}{
		{
			name: "succeeds on third try", policy: RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Millisecond},
			attempt: 1, failures: 2,
			wantCalls: 3, wantAttempts: []int{1, 2, 3}, wantMetrics: [4]float64{1, 2, 0, 0},
		},
		{
			name: "exhausts and dead-letters", policy: fast, attempt: 1, failures: -1,
			wantCalls: 3, wantAttempts: []int{1, 2, 3}, wantDLQ: true, wantMetrics: [4]float64{0, 2, 1, 0},
		},
		{
			name: "dead-letter publish fails", policy: fast, attempt: 1, failures: -1, dlqErr: dlqDown,
			wantErr: dlqDown, wantCalls: 3, wantAttempts: []int{1, 2, 3}, wantMetrics: [4]float64{0, 2, 0, 1},
		},
		{
			name: "context cancelled stops retrying", policy: RetryPolicy{MaxAttempts: 10, InitialBackoff: time.Hour},
			attempt: 1, failures: -1, cancelAt: 1,
			wantErr: context.Canceled, wantCalls: 1, wantAttempts: []int{1}, wantMetrics: [4]float64{0, 0, 0, 1},
		},
		{
			name: "context cancelled during backoff", policy: RetryPolicy{MaxAttempts: 10, InitialBackoff: time.Hour},
			attempt: 1, failures: -1, cancelAt: -1,
			wantErr: context.Canceled, wantCalls: 1, wantAttempts: []int{1}, wantMetrics: [4]float64{0, 1, 0, 1},
		},
		{
			name: "permanent error skips retries", policy: fast, attempt: 1, failures: -1,
			handler:   func(int, error) error { return Permanent(errBoom) },
			wantCalls: 1, wantAttempts: []int{1}, wantDLQ: true, wantMetrics: [4]float64{0, 0, 1, 0},
		},
		{
			name: "redelivery uses the remaining budget", policy: fast, attempt: 2, failures: -1,
			wantCalls: 2, wantAttempts: []int{2, 3}, wantDLQ: true, wantMetrics: [4]float64{0, 1, 1, 0},
		},
		{
			name: "redelivery past the budget gets one attempt", policy: fast, attempt: 7, failures: -1,
			wantCalls: 1, wantAttempts: []int{7}, wantDLQ: true, wantMetrics: [4]float64{0, 0, 1, 0},
		},
		{
			name: "panic counts as failure", policy: fast, attempt: 1, failures: -1,
			handler:   func(int, error) error { panic("kaboom") },
			wantCalls: 3, wantAttempts: []int{1, 2, 3}, wantDLQ: true, wantMetrics: [4]float64{0, 2, 1, 0},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			reg := prometheus.NewRegistry()
			m, err := NewMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			dlq := &recorder{err: tc.dlqErr}
			var attempts []int
			h := func(ctx context.Context, d Delivery) error {
				attempts = append(attempts, d.Attempt)
				n := len(attempts)
				if tc.cancelAt == n {
					cancel()
				}
				if tc.cancelAt == -1 && n == 1 {
					time.AfterFunc(20*time.Millisecond, cancel)
				}
				if tc.failures >= 0 && n > tc.failures {
					return nil
				}
				if tc.handler != nil {
					return tc.handler(n, errBoom)
				}
				return errBoom
			}
			d := Delivery{
				Topic: "orders.created", Group: "billing", Attempt: tc.attempt,
				Message: Message{ID: "evt-1", Key: []byte("k"), Value: []byte("v"), Headers: map[string]string{"trace": "t1"}},
			}
			start := time.Now()
			err = Retrying(h, tc.policy, dlq, WithMetrics(m))(ctx, d)
			if time.Since(start) > 5*time.Second {
				t.Fatalf("Retrying took %v", time.Since(start))
			}
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("err = %v, want nil", err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil && !errors.Is(err, errBoom) {
				t.Errorf("err = %v, want it to wrap the handler error too", err)
			}
			if len(attempts) != tc.wantCalls {
				t.Fatalf("handler called %d times, want %d", len(attempts), tc.wantCalls)
			}
			for i := range attempts {
				if attempts[i] != tc.wantAttempts[i] {
					t.Fatalf("attempts = %v, want %v", attempts, tc.wantAttempts)
				}
			}
			if !tc.wantDLQ {
				if len(dlq.got) != 0 {
					t.Fatalf("dead letters = %v, want none", dlq.got)
				}
			} else {
				checkDeadLetter(t, dlq, d, tc.wantAttempts[len(tc.wantAttempts)-1])
			}
			got := [4]float64{
				counter(t, reg, "delivered", d.Topic, d.Group),
				counter(t, reg, "retried", d.Topic, d.Group),
				counter(t, reg, "dead_lettered", d.Topic, d.Group),
				counter(t, reg, "failed", d.Topic, d.Group),
			}
			if got != tc.wantMetrics {
				t.Errorf("metrics delivered/retried/dead-lettered/failed = %v, want %v", got, tc.wantMetrics)
			}
		})
	}
}

func checkDeadLetter(t *testing.T, dlq *recorder, d Delivery, attempts int) {
	t.Helper()
	if len(dlq.got) != 1 {
		t.Fatalf("dead letters = %d, want 1", len(dlq.got))
	}
	if dlq.tops[0] != "orders.created.dlq" {
		t.Errorf("dead-letter topic = %q", dlq.tops[0])
	}
	m := dlq.got[0]
	if m.ID != "evt-1@billing" || string(m.Key) != "k" || string(m.Value) != "v" {
		t.Errorf("dead letter = id %q key %q value %q", m.ID, m.Key, m.Value)
	}
	h := m.Headers
	if !strings.Contains(h[HeaderDLQError], "boom") && !strings.Contains(h[HeaderDLQError], "kaboom") {
		t.Errorf("%s = %q", HeaderDLQError, h[HeaderDLQError])
	}
	if h[HeaderDLQTopic] != d.Topic || h[HeaderDLQGroup] != d.Group || h["trace"] != "t1" {
		t.Errorf("headers = %v", h)
	}
	if want := []string{"1", "2", "3", "4", "5", "6", "7"}[attempts-1]; h[HeaderDLQAttempts] != want {
		t.Errorf("%s = %q, want %q", HeaderDLQAttempts, h[HeaderDLQAttempts], want)
	}
	ts, err := time.Parse(time.RFC3339Nano, h[HeaderDLQTime])
	if err != nil || time.Since(ts) > time.Minute || time.Since(ts) < 0 {
		t.Errorf("%s = %q (%v)", HeaderDLQTime, h[HeaderDLQTime], err)
	}
	if _, ok := d.Headers[HeaderDLQError]; ok {
		t.Error("Retrying modified the original delivery's headers")
	}
}

func TestRetryingDeadLetterTopicIsNotReParked(t *testing.T) {
	dlq := &recorder{}
	h := Retrying(func(context.Context, Delivery) error { return errBoom }, RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond}, dlq)
	err := h(context.Background(), Delivery{Topic: "orders.dlq", Group: "ops", Attempt: 1})
	if !errors.Is(err, errBoom) {
		t.Fatalf("err = %v, want the handler error", err)
	}
	if len(dlq.got) != 0 {
		t.Fatalf("a dead letter's dead letter was published: %v", dlq.tops)
	}
}

func TestBackoff(t *testing.T) {
	p := RetryPolicy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 60: time.Second} {
		if got := p.backoff(n); got != want {
			t.Errorf("backoff(%d) = %v, want %v", n, got, want)
		}
	}
	p.Jitter = 0.5
	for range 100 {
		if got := p.backoff(2); got < 100*time.Millisecond || got > 200*time.Millisecond {
			t.Fatalf("jittered backoff(2) = %v, want within [100ms, 200ms]", got)
		}
	}
}

func TestNewMetricsTwiceReusesCollectors(t *testing.T) {
	reg := prometheus.NewRegistry()
	m1, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := NewMetrics(reg)
	if err != nil {
		t.Fatalf("second NewMetrics on the same registry: %v", err)
	}
	m1.delivered(Delivery{Topic: "a", Group: "g"})
	m2.delivered(Delivery{Topic: "a", Group: "g"})
	if got := counter(t, reg, "delivered", "a", "g"); got != 2 {
		t.Fatalf("delivered = %v, want 2 (shared series)", got)
	}
	var nilM *Metrics
	nilM.delivered(Delivery{}) // must not panic
}

func TestDeduplicating(t *testing.T) {
	calls := map[string]int{}
	fail := true
	h := Deduplicating(func(_ context.Context, d Delivery) error {
		calls[d.ID]++
		if d.ID == "flaky" && fail {
			fail = false
			return errBoom
		}
		return nil
	}, 2)
	ctx := context.Background()
	deliver := func(id string) error {
		return h(ctx, Delivery{Topic: "t", Group: "g", Message: Message{ID: id}})
	}
	for _, id := range []string{"a", "a", "", ""} {
		if err := deliver(id); err != nil {
			t.Fatal(err)
		}
	}
	if calls["a"] != 1 || calls[""] != 2 {
		t.Fatalf("calls = %v, want a once and empty ids every time", calls)
	}
	if err := deliver("flaky"); err == nil {
		t.Fatal("first flaky delivery should fail")
	}
	if err := deliver("flaky"); err != nil || calls["flaky"] != 2 {
		t.Fatalf("a failed message must not be remembered: err %v calls %d", err, calls["flaky"])
	}
	// Capacity 2: "a" was evicted by "flaky" and "b".
	_ = deliver("b")
	_ = deliver("a")
	if calls["a"] != 2 {
		t.Fatalf("calls[a] = %d, want 2 after eviction", calls["a"])
	}
}

func TestValidateName(t *testing.T) {
	for name, ok := range map[string]bool{
		"orders":                      true,
		"orders.created":              true,
		"a_b-c.d9":                    true,
		"0":                           true,
		"":                            false,
		"Orders":                      false,
		".orders":                     false,
		"orders.":                     false,
		"orders..created":             false,
		"orders created":              false,
		"orders>":                     false,
		"_x":                          false,
		strings.Repeat("a", 201):      true,
		strings.Repeat("a", 202):      false,
		"orders.*":                    false,
		"tenant/orders":               false,
		"orders.created.dlq":          true,
		"x" + strings.Repeat(".y", 5): true,
	} {
		err := ValidateName(name)
		if (err == nil) != ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", name, err, ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateName(%q) error does not wrap ErrInvalidName", name)
		}
	}
}

func TestTopics(t *testing.T) {
	got, err := Topics(TopicSpec{Name: "orders"})
	if err != nil || len(got) != 2 || got[0] != "orders" || got[1] != "orders.dlq" {
		t.Fatalf("Topics(orders) = %v, %v", got, err)
	}
	got, err = Topics(TopicSpec{Name: "orders.dlq"})
	if err != nil || len(got) != 1 {
		t.Fatalf("Topics(orders.dlq) = %v, %v", got, err)
	}
	if _, err := Topics(TopicSpec{Name: "Bad"}); err == nil {
		t.Fatal("Topics accepted an invalid name")
	}
}
