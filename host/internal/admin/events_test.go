package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/bridges/bus"
	"github.com/keelhq/keel/bridges/kafka"
	"github.com/keelhq/keel/bridges/nats"
	"github.com/keelhq/keel/host/internal/events"
)

func do(t *testing.T, app *fiber.App, method, path, tok string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s %s: %d, not JSON: %s", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode, v
}

func TestEventsOnNATS(t *testing.T) {
	srv, err := nats.StartEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := nats.Open(ctx, srv.ClientURL(), nats.WithRedeliveryBackoff(20*time.Millisecond, 100*time.Millisecond), nats.WithPollWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	testEvents(t, b)
}

func TestEventsOnKafka(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	b, err := kafka.Open(c.ListenAddrs(), kafka.WithRedeliveryBackoff(20*time.Millisecond, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	testEvents(t, b)
}

// testEvents parks poison events through bus.Retrying, as the host's events layer does, and
// operates them through the admin routes.
func testEvents(t *testing.T, b bus.Bus) {
	const topic = "shop.orders"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.EnsureTopic(ctx, bus.TopicSpec{Name: topic}); err != nil {
		t.Fatal(err)
	}
	var (
		healed atomic.Bool
		mu     sync.Mutex
		seen   []bus.Delivery
	)
	h := bus.Retrying(func(ctx context.Context, d bus.Delivery) error {
		mu.Lock()
		seen = append(seen, d)
		mu.Unlock()
		env, err := events.DecodeEnvelope(d.Value)
		if err != nil {
			return bus.Permanent(err)
		}
		if strings.Contains(string(env.Payload), "poison") && !healed.Load() {
			return errors.New("poison order refused")
		}
		return nil
	}, bus.RetryPolicy{MaxAttempts: 2, InitialBackoff: 5 * time.Millisecond}, b)
	sub, err := b.Subscribe(ctx, topic, "shop", h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	publish := func(note string) string {
		env := events.Envelope{ID: events.NewID(), Type: "order.created", Tenant: "t1", Source: "shop", Time: time.Now().UTC(),
			Payload: json.RawMessage(fmt.Sprintf(`{"note":%q}`, note))}
		raw, _ := env.Encode()
		if err := b.Publish(ctx, topic, bus.Message{ID: env.ID, Key: []byte(note), Value: raw, Headers: map[string]string{"keel-type": env.Type}}); err != nil {
			t.Fatal(err)
		}
		return env.ID
	}
	insp := b.(bus.Inspector)
	parked := func(n int64) func() bool {
		return func() bool {
			st, err := insp.TopicStats(ctx, bus.DLQTopic(topic), nil)
			return err == nil && st.Messages == n
		}
	}

	var audits []string
	app := fiber.New()
	MountEvents(app, EventsConfig{Token: testToken, Logger: slog.New(slog.DiscardHandler), Bus: b, Topics: []string{"keel.audit"},
		Manifests: func() []*manifest.Manifest {
			return []*manifest.Manifest{
				{Name: "shop", Capabilities: manifest.Capabilities{Publish: []manifest.PublishCap{{Topic: topic}},
					Subscribe: []manifest.SubscribeCap{{Topic: topic, Group: "shop", MaxAttempts: 2}}}},
				{Name: "ops", Capabilities: manifest.Capabilities{Subscribe: []manifest.SubscribeCap{{Topic: topic + ".dlq"}}}},
			}
		},
		Audit: func(action, actor, resource, requestID string, detail map[string]any) {
			if strings.HasPrefix(action, "event.") { // next to auth's generic admin.post entries
				audits = append(audits, action+" "+actor+" "+resource)
			}
		}})

	publish("fine")
	poisonID := publish("poison")
	waitUntil(t, "the poison order to be parked", parked(1))
	waitUntil(t, "group shop to finish", func() bool {
		st, err := insp.TopicStats(ctx, topic, []string{"shop"})
		return err == nil && st.Groups[0].Lag == 0
	})

	// The topic list.
	status, body := do(t, app, "GET", "/admin/api/events", testToken)
	if status != 200 || body["inspectable"] != true {
		t.Fatalf("events: %d %v", status, body)
	}
	var list struct{ Topics []TopicView }
	remarshal(t, body, &list)
	if len(list.Topics) != 2 || list.Topics[0].Topic != "keel.audit" || list.Topics[1].Topic != topic {
		t.Fatalf("topics %+v, want keel.audit and %s", list.Topics, topic)
	}
	if a := list.Topics[0]; a.Exists || a.Publishers[0] != "host" {
		t.Errorf("host topic %+v", a)
	}
	v := list.Topics[1]
	if !v.Exists || v.Messages != 2 || v.Error != "" || len(v.Publishers) != 1 || v.Publishers[0] != "shop" {
		t.Errorf("topic %+v", v)
	}
	if len(v.Subscriptions) != 1 || v.Subscriptions[0].Group != "shop" || !v.Subscriptions[0].Known || v.Subscriptions[0].Lag != 0 || v.Subscriptions[0].MaxAttempts != 2 {
		t.Errorf("subscriptions %+v", v.Subscriptions)
	}
	if v.DLQ.Topic != topic+".dlq" || v.DLQ.Messages != 1 || len(v.DLQ.Subscriptions) != 1 || v.DLQ.Subscriptions[0].Group != "ops" || v.DLQ.Subscriptions[0].Lag != 1 {
		t.Errorf("dead-letter topic %+v", v.DLQ)
	}

	// The parked message.
	listDLQ := func() (int64, []ParkedView) {
		t.Helper()
		status, body := do(t, app, "GET", "/admin/api/events/dlq/"+topic+"?limit=10", testToken)
		if status != 200 {
			t.Fatalf("dlq: %d %v", status, body)
		}
		var r struct {
			Total    int64
			Messages []ParkedView
		}
		remarshal(t, body, &r)
		return r.Total, r.Messages
	}
	total, msgs := listDLQ()
	if total != 1 || len(msgs) != 1 {
		t.Fatalf("parked: %d %+v", total, msgs)
	}
	m := msgs[0]
	if m.Topic != topic || m.Group != "shop" || m.Attempts != 2 || !strings.Contains(m.Error, "poison order refused") || !m.Removable ||
		m.Event == nil || m.Event.ID != poisonID || m.Event.Type != "order.created" || m.Event.Tenant != "t1" ||
		string(m.Payload) != `{"note":"poison"}` || m.Key != "poison" || m.Headers["keel-type"] != "order.created" || time.Since(m.ParkedAt) > time.Minute {
		t.Errorf("parked message %+v", m)
	}

	// Refusals.
	if status, _ := do(t, app, "POST", "/admin/api/events/dlq/"+topic+"/"+m.ID+"/replay", ""); status != 401 {
		t.Errorf("replay without a token: %d", status)
	}
	if status, body := do(t, app, "GET", "/admin/api/events/dlq/not.declared", testToken); status != 404 || !strings.Contains(fmt.Sprint(body), "unknown_topic") {
		t.Errorf("undeclared topic: %d %v", status, body)
	}
	if status, body := do(t, app, "POST", "/admin/api/events/dlq/"+topic+"/999999/discard", testToken); status != 404 || !strings.Contains(fmt.Sprint(body), "message_not_found") {
		t.Errorf("unknown id: %d %v", status, body)
	}

	// Replay, then replay again.
	healed.Store(true)
	if status, body := do(t, app, "POST", "/admin/api/events/dlq/"+topic+"/"+m.ID+"/replay", testToken); status != 200 || body["result"] != "replayed" {
		t.Fatalf("replay: %d %v", status, body)
	}
	if status, body := do(t, app, "POST", "/admin/api/events/dlq/"+topic+"/"+m.ID+"/replay", testToken); status != 200 || body["result"] != "gone" {
		t.Fatalf("second replay: %d %v", status, body)
	}
	replays := func() (n int) {
		mu.Lock()
		defer mu.Unlock()
		for _, d := range seen {
			if d.Headers[bus.HeaderReplayedFrom] != "" {
				n++
				if d.Attempt != 1 || !strings.Contains(string(d.Value), poisonID) {
					t.Errorf("replayed delivery %+v", d)
				}
			}
		}
		return n
	}
	waitUntil(t, "the replayed order to be handled", func() bool { return replays() == 1 })
	if total, _ := listDLQ(); total != 0 {
		t.Errorf("%d parked after the replay", total)
	}

	// Discard, then discard again.
	healed.Store(false)
	publish("poison again")
	waitUntil(t, "the second poison order to be parked", parked(1))
	_, msgs = listDLQ()
	if status, body := do(t, app, "POST", "/admin/api/events/dlq/"+topic+"/"+msgs[0].ID+"/discard", testToken); status != 200 || body["result"] != "discarded" {
		t.Fatalf("discard: %d %v", status, body)
	}
	if status, body := do(t, app, "POST", "/admin/api/events/dlq/"+topic+"/"+msgs[0].ID+"/discard", testToken); status != 200 || body["result"] != "gone" {
		t.Fatalf("second discard: %d %v", status, body)
	}
	if total, _ := listDLQ(); total != 0 {
		t.Errorf("%d parked after the discard", total)
	}
	time.Sleep(100 * time.Millisecond)
	if n := replays(); n != 1 {
		t.Errorf("%d replayed deliveries after a discard, want still 1", n)
	}
	want := []string{"event.replay admin-token " + topic + ".dlq/" + m.ID, "event.discard admin-token " + topic + ".dlq/" + msgs[0].ID}
	if fmt.Sprint(audits) != fmt.Sprint(want) {
		t.Errorf("audit %q, want %q", audits, want)
	}
}

func TestEventsWithoutInspector(t *testing.T) {
	app := fiber.New()
	Mount(app, Config{Token: testToken, Logger: slog.New(slog.DiscardHandler)})
	MountEvents(app, EventsConfig{Token: testToken, Bus: struct{ bus.Bus }{}, Manifests: func() []*manifest.Manifest {
		return []*manifest.Manifest{{Name: "shop", Capabilities: manifest.Capabilities{Publish: []manifest.PublishCap{{Topic: "shop.orders"}}}}}
	}})
	if status, _ := do(t, app, "GET", "/admin/api/events", ""); status != 401 {
		t.Fatalf("events without a token: %d", status)
	}
	status, body := do(t, app, "GET", "/admin/api/events", testToken)
	if status != 200 || body["inspectable"] != false || !strings.Contains(fmt.Sprint(body), "shop.orders") {
		t.Fatalf("events: %d %v", status, body)
	}
	if status, _ := do(t, app, "GET", "/admin/api/events/dlq/shop.orders", testToken); status != 501 {
		t.Fatalf("dead letters on a bus without an inspector: %d, want 501", status)
	}
}

func remarshal(t *testing.T, from any, to any) {
	t.Helper()
	b, _ := json.Marshal(from)
	if err := json.Unmarshal(b, to); err != nil {
		t.Fatal(err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
