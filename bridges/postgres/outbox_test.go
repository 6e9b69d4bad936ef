package postgres

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

type outboxRow struct {
	EventID   string
	Topic     string
	Key       []byte
	Payload   []byte
	Headers   map[string]string
	Published bool
	Attempts  int32
	LastError *string
}

func outboxRows(t testing.TB, db *DB, topic string) []outboxRow {
	t.Helper()
	rows, err := db.pool.Query(testCtx(t), `SELECT event_id, topic, key, payload, headers, published_at IS NOT NULL, attempts, last_error
		FROM keel_host.outbox WHERE topic = $1 ORDER BY id`, topic)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[outboxRow])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCommitWritesOutbox(t *testing.T) {
	db := openDB(t)
	ctx := testCtx(t)
	p := newNotesPlugin(t, db, "outbox")
	topic := "orders." + p.Name()

	// Wait for the commit's NOTIFY on a separate connection.
	listener, err := pgx.Connect(ctx, testURL)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(context.Background())
	if _, err := listener.Exec(ctx, "LISTEN keel_outbox"); err != nil {
		t.Fatal(err)
	}

	tx := begin(t, p, "A")
	mustExec(t, tx, `INSERT INTO notes (body) VALUES ('with events')`)
	events := []OutboxEvent{
		{ID: "e1-" + p.Name(), Topic: topic, Key: []byte("k1"), Payload: []byte(`{"n":1}`), Headers: map[string]string{"trace": "abc"}},
		{Topic: topic, Payload: []byte(`{"n":2}`)},
	}
	if err := tx.Commit(ctx, events); err != nil {
		t.Fatal(err)
	}
	nctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if n, err := listener.WaitForNotification(nctx); err != nil || n.Channel != "keel_outbox" {
		t.Fatalf("no keel_outbox notification after commit: %v, %v", n, err)
	}

	rows := outboxRows(t, db, topic)
	if len(rows) != 2 {
		t.Fatalf("outbox has %d rows for the commit, want 2", len(rows))
	}
	want := outboxRow{EventID: "e1-" + p.Name(), Topic: topic, Key: []byte("k1"), Payload: []byte(`{"n":1}`), Headers: map[string]string{"trace": "abc"}}
	if !reflect.DeepEqual(rows[0], want) {
		t.Fatalf("row 1 = %+v, want %+v", rows[0], want)
	}
	if len(rows[1].EventID) != 36 || rows[1].Key != nil || string(rows[1].Payload) != `{"n":2}` || len(rows[1].Headers) != 0 {
		t.Fatalf("row 2 = %+v, want a generated uuid, NULL key, empty headers", rows[1])
	}

	// The same event id again is skipped: ids are idempotency keys.
	tx = begin(t, p, "A")
	if err := tx.Commit(ctx, events[:1]); err != nil {
		t.Fatal(err)
	}
	if n := len(outboxRows(t, db, topic)); n != 2 {
		t.Fatalf("duplicate event id: %d rows, want 2", n)
	}

	// Rolled back work publishes nothing, and neither does work that failed.
	tx = begin(t, p, "A")
	mustExec(t, tx, `INSERT INTO notes (body) VALUES ('rolled back')`)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	tx = begin(t, p, "A")
	if _, err := tx.Exec(ctx, `INSERT INTO notes (body) VALUES (NULL)`, nil); pgCode(err) != "23502" {
		t.Fatalf("NULL body: %v", err)
	}
	if err := tx.Commit(ctx, []OutboxEvent{{Topic: topic, Payload: []byte("lost")}}); !errors.Is(err, ErrTxAborted) {
		t.Fatalf("commit with events after a failure = %v, want ErrTxAborted", err)
	}
	if n := len(outboxRows(t, db, topic)); n != 2 {
		t.Fatalf("after rollback and failed commit: %d rows, want 2", n)
	}
	tx = begin(t, p, "A")
	res := mustQuery(t, tx, `SELECT body FROM notes ORDER BY id`)
	tx.Rollback(ctx) //nolint:errcheck // always nil
	if len(res.Rows) != 1 || res.Rows[0][0] != "with events" {
		t.Fatalf("notes = %v, want only the committed one", res.Rows)
	}

	// Invalid events fail the commit, which then writes nothing.
	tx = begin(t, p, "A")
	mustExec(t, tx, `INSERT INTO notes (body) VALUES ('bad event')`)
	if err := tx.Commit(ctx, []OutboxEvent{{Topic: ""}}); err == nil {
		t.Fatal("event without topic accepted")
	}
	if n := len(outboxRows(t, db, topic)); n != 2 {
		t.Fatalf("after invalid event: %d rows, want 2", n)
	}
}

// fakeBus is the publish side of the relay tests: it can be told to fail, and it logs every message
// it accepted.
type fakeBus struct {
	failing  atomic.Bool
	failures atomic.Int32
	mu       sync.Mutex
	log      []RelayMessage
	orderErr error
}

func (b *fakeBus) publish(ctx context.Context, topic string, msgs []RelayMessage) error {
	if b.failing.Load() {
		b.failures.Add(1)
		return errors.New("broker down")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, m := range msgs {
		if m.Topic != topic {
			b.orderErr = fmt.Errorf("message %d of topic %q handed over for topic %q", m.ID, m.Topic, topic)
		}
		if i > 0 && msgs[i-1].ID >= m.ID {
			b.orderErr = fmt.Errorf("topic %q: id %d after %d in one batch", topic, m.ID, msgs[i-1].ID)
		}
	}
	b.log = append(b.log, msgs...)
	return nil
}

func (b *fakeBus) delivered() []RelayMessage {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.log)
}

// resetOutbox empties the outbox so a relay test sees only its own rows. Relay tests do not run in
// parallel with each other or with TestCommitWritesOutbox.
func resetOutbox(t testing.TB, db *DB) {
	t.Helper()
	if _, err := db.pool.Exec(testCtx(t), `DELETE FROM keel_host.outbox`); err != nil {
		t.Fatal(err)
	}
}

// commitEvents commits n events spread over topics in one plugin transaction.
func commitEvents(t testing.TB, p PluginDB, prefix string, n int, topics ...string) []string {
	t.Helper()
	ctx := testCtx(t)
	tx := begin(t, p, "A")
	var ids []string
	var events []OutboxEvent
	for i := range n {
		id := fmt.Sprintf("%s-%04d", prefix, i)
		ids = append(ids, id)
		events = append(events, OutboxEvent{ID: id, Topic: topics[i%len(topics)], Key: []byte(id), Payload: []byte("payload " + id)})
	}
	if err := tx.Commit(ctx, events); err != nil {
		t.Fatal(err)
	}
	return ids
}

func pendingCount(t testing.TB, db *DB) int {
	t.Helper()
	var n int
	if err := db.pool.QueryRow(testCtx(t), `SELECT count(*) FROM keel_host.outbox WHERE published_at IS NULL`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// runRelay starts r and returns a function that stops it and waits for Run to return.
func runRelay(t testing.TB, r *Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func metricValue(t testing.TB, c prometheus.Collector, name string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		m := f.GetMetric()[0]
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

func checkExactlyOnce(t testing.TB, ids []string, log []RelayMessage) {
	t.Helper()
	seen := make(map[string]int, len(log))
	for _, m := range log {
		seen[m.EventID]++
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("event %s published %d times, want exactly once", id, seen[id])
		}
	}
	if len(log) != len(ids) {
		t.Errorf("%d messages published, want %d", len(log), len(ids))
	}
}

func TestRelayFailingBroker(t *testing.T) {
	db := openDB(t)
	p := newNotesPlugin(t, db, "relay-fail")
	resetOutbox(t, db)
	bus := &fakeBus{}
	bus.failing.Store(true)
	ids := commitEvents(t, p, "fail-"+runID, 30, "t1."+runID, "t2."+runID, "t3."+runID)

	r, err := NewRelay(db, bus.publish, WithRelayBatchSize(10), WithRelayBackoff(5*time.Millisecond, 20*time.Millisecond), WithRelayPollInterval(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	stop := runRelay(t, r)
	eventually(t, 5*time.Second, "three failed publish calls", func() bool { return bus.failures.Load() >= 6 })

	// Nothing is lost or marked while the broker is down.
	if n := pendingCount(t, db); n != 30 {
		t.Fatalf("pending while the broker is down = %d, want 30", n)
	}
	if got := bus.delivered(); len(got) != 0 {
		t.Fatalf("%d messages delivered by a failing broker", len(got))
	}
	rows := outboxRows(t, db, "t1."+runID)
	if rows[0].Attempts == 0 || rows[0].LastError == nil || *rows[0].LastError == "" {
		t.Fatalf("failed attempts not recorded: %+v", rows[0])
	}

	bus.failing.Store(false)
	eventually(t, 5*time.Second, "all 30 messages delivered and the pending gauge at 0", func() bool {
		return len(bus.delivered()) >= 30 && metricValue(t, r.Collector(), "keel_outbox_pending") == 0
	})
	stop()
	checkExactlyOnce(t, ids, bus.delivered())
	if bus.orderErr != nil {
		t.Fatal(bus.orderErr)
	}
	if n := pendingCount(t, db); n != 0 {
		t.Fatalf("pending after delivery = %d", n)
	}
	if v := metricValue(t, r.Collector(), "keel_outbox_published_total"); v != 30 {
		t.Errorf("keel_outbox_published_total = %v, want 30", v)
	}
	if v := metricValue(t, r.Collector(), "keel_outbox_publish_failures_total"); v < 6 {
		t.Errorf("keel_outbox_publish_failures_total = %v, want >= 6", v)
	}
}

func TestRelayConcurrentHosts(t *testing.T) {
	db := openDB(t)
	p := newNotesPlugin(t, db, "relay-conc")
	resetOutbox(t, db)
	ids := commitEvents(t, p, "conc-"+runID, 600, "a."+runID, "b."+runID, "c."+runID, "d."+runID)

	// Two hosts: two pools, two relays, one shared publish log.
	bus := &fakeBus{}
	var relays []*Relay
	for range 2 {
		r, err := NewRelay(openDB(t, WithMaxConns(3)), bus.publish, WithRelayBatchSize(20), WithRelayPollInterval(20*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		relays = append(relays, r)
	}
	for _, r := range relays {
		runRelay(t, r)
	}
	eventually(t, 10*time.Second, "600 messages delivered", func() bool { return len(bus.delivered()) >= 600 && pendingCount(t, db) == 0 })
	time.Sleep(50 * time.Millisecond) // a duplicate publish would land now
	checkExactlyOnce(t, ids, bus.delivered())
	if bus.orderErr != nil {
		t.Fatal(bus.orderErr)
	}
	a := metricValue(t, relays[0].Collector(), "keel_outbox_published_total")
	b := metricValue(t, relays[1].Collector(), "keel_outbox_published_total")
	t.Logf("relay 1 published %v, relay 2 published %v", a, b)
	if a+b != 600 {
		t.Errorf("published counters sum to %v, want 600", a+b)
	}
}

func TestRelayWakesOnNotify(t *testing.T) {
	db := openDB(t)
	p := newNotesPlugin(t, db, "relay-wake")
	resetOutbox(t, db)
	bus := &fakeBus{}
	// Polling every minute: only the NOTIFY from Commit can deliver within the deadline below.
	r, err := NewRelay(db, bus.publish, WithRelayPollInterval(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	runRelay(t, r)
	time.Sleep(300 * time.Millisecond) // let the relay finish its first pass and start waiting
	ids := commitEvents(t, p, "wake-"+runID, 1, "wake."+runID)
	eventually(t, 3*time.Second, "delivery woken by NOTIFY", func() bool { return len(bus.delivered()) == 1 })
	checkExactlyOnce(t, ids, bus.delivered())
}

func TestRelayRetention(t *testing.T) {
	db := openDB(t)
	p := newNotesPlugin(t, db, "relay-ret")
	resetOutbox(t, db)
	bus := &fakeBus{}
	r, err := NewRelay(db, bus.publish, WithRelayRetention(time.Millisecond), WithRelayPollInterval(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	commitEvents(t, p, "ret-"+runID, 5, "ret."+runID)
	runRelay(t, r)
	eventually(t, 5*time.Second, "published rows deleted after retention", func() bool {
		return len(bus.delivered()) == 5 && len(outboxRows(t, db, "ret."+runID)) == 0
	})
	if v := metricValue(t, r.Collector(), "keel_outbox_deleted_total"); v != 5 {
		t.Errorf("keel_outbox_deleted_total = %v, want 5", v)
	}
}

func TestNewRelayValidation(t *testing.T) {
	db := openDB(t)
	if _, err := NewRelay(db, nil); err == nil {
		t.Error("nil publish accepted")
	}
	if _, err := NewRelay(db, (&fakeBus{}).publish, WithRelayBatchSize(0)); err == nil {
		t.Error("batch size 0 accepted")
	}
	if _, err := NewRelay(db, (&fakeBus{}).publish, WithRelayBackoff(time.Second, time.Millisecond)); err == nil {
		t.Error("max backoff below first backoff accepted")
	}
	r, err := NewRelay(db, (&fakeBus{}).publish)
	if err != nil {
		t.Fatal(err)
	}
	runRelay(t, r)
	time.Sleep(20 * time.Millisecond)
	if err := r.Run(context.Background()); err == nil {
		t.Error("second concurrent Run accepted")
	}
}

func TestPoolCollector(t *testing.T) {
	db := openDB(t, WithMaxConns(7))
	if err := db.Ping(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if v := metricValue(t, db.Collector(), "keel_postgres_pool_max_conns"); v != 7 {
		t.Errorf("max_conns = %v, want 7", v)
	}
	if v := metricValue(t, db.Collector(), "keel_postgres_pool_total_conns"); v < 1 {
		t.Errorf("total_conns = %v, want >= 1", v)
	}
	if v := metricValue(t, db.Collector(), "keel_postgres_pool_acquires_total"); v < 1 {
		t.Errorf("acquires_total = %v, want >= 1", v)
	}
}
