package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// RelayMessage is one outbox row handed to the publish function.
type RelayMessage struct {
	// ID is the outbox row id. Ids grow in insertion order; within one topic of one batch, messages
	// are in id order.
	ID        int64
	EventID   string
	Topic     string
	Key       []byte
	Payload   []byte
	Headers   map[string]string
	CreatedAt time.Time
	// Attempts counts earlier failed publish attempts of this message.
	Attempts int
}

// PublishFunc delivers msgs, all of one topic and in order, to the event bus. It returns nil only once
// the bus has accepted every message; on error all of them are retried later, so the bus must tolerate
// duplicates (consumers dedupe on EventID).
type PublishFunc func(ctx context.Context, topic string, msgs []RelayMessage) error

// Relay moves committed outbox rows to the event bus, at least once. Several relays (one per host) may
// run against the same database: rows are claimed with FOR UPDATE SKIP LOCKED, so concurrent relays
// share the work instead of publishing the same row.
type Relay struct {
	db      *DB
	publish PublishFunc
	o       relayOptions
	running atomic.Bool

	pending   prometheus.Gauge
	published prometheus.Counter
	failures  prometheus.Counter
	deleted   prometheus.Counter
}

// RelayOption configures NewRelay.
type RelayOption func(*relayOptions)

type relayOptions struct {
	batchSize      int
	pollInterval   time.Duration
	minBackoff     time.Duration
	maxBackoff     time.Duration
	retention      time.Duration
	publishTimeout time.Duration
}

// WithRelayBatchSize sets how many rows one pass claims (default 100).
func WithRelayBatchSize(n int) RelayOption { return func(o *relayOptions) { o.batchSize = n } }

// WithRelayPollInterval sets how often the relay looks for rows without being notified (default 2s).
// Notifications normally wake it at once; polling covers a lost listener connection.
func WithRelayPollInterval(d time.Duration) RelayOption {
	return func(o *relayOptions) { o.pollInterval = d }
}

// WithRelayBackoff sets the first and the longest wait after a failed publish (default 200ms, 30s).
// The wait doubles after each consecutive failure, with jitter so hosts do not retry in step.
func WithRelayBackoff(first, max time.Duration) RelayOption {
	return func(o *relayOptions) { o.minBackoff, o.maxBackoff = first, max }
}

// WithRelayRetention sets how long published rows are kept before deletion (default 24h), for
// debugging and replay by hand.
func WithRelayRetention(d time.Duration) RelayOption {
	return func(o *relayOptions) { o.retention = d }
}

// WithRelayPublishTimeout bounds one call of the publish function (default 10s). Claimed rows stay
// locked while it runs.
func WithRelayPublishTimeout(d time.Duration) RelayOption {
	return func(o *relayOptions) { o.publishTimeout = d }
}

// NewRelay returns a relay that delivers outbox rows of db through publish. Start it with Run.
func NewRelay(db *DB, publish PublishFunc, opts ...RelayOption) (*Relay, error) {
	o := relayOptions{
		batchSize:      100,
		pollInterval:   2 * time.Second,
		minBackoff:     200 * time.Millisecond,
		maxBackoff:     30 * time.Second,
		retention:      24 * time.Hour,
		publishTimeout: 10 * time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case db == nil || publish == nil:
		return nil, errors.New("postgres: relay needs a DB and a publish function")
	case o.batchSize <= 0 || o.batchSize > 10_000:
		return nil, fmt.Errorf("postgres: relay batch size %d outside 1..10000", o.batchSize)
	case o.pollInterval <= 0 || o.minBackoff <= 0 || o.maxBackoff < o.minBackoff || o.retention <= 0 || o.publishTimeout <= 0:
		return nil, errors.New("postgres: relay durations must be positive, with max backoff >= first backoff")
	}
	return &Relay{
		db: db, publish: publish, o: o,
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keel_outbox_pending", Help: "Outbox rows committed but not yet published.",
		}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keel_outbox_published_total", Help: "Outbox rows published and marked as such.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keel_outbox_publish_failures_total", Help: "Failed publish calls (each retried later).",
		}),
		deleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keel_outbox_deleted_total", Help: "Published rows deleted after the retention period.",
		}),
	}, nil
}

// Collector returns the relay's metrics: keel_outbox_pending, keel_outbox_published_total,
// keel_outbox_publish_failures_total and keel_outbox_deleted_total.
func (r *Relay) Collector() prometheus.Collector {
	return relayCollector{r.pending, r.published, r.failures, r.deleted}
}

type relayCollector []prometheus.Collector

func (c relayCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c {
		m.Describe(ch)
	}
}

func (c relayCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c {
		m.Collect(ch)
	}
}

// Run delivers outbox rows until ctx ends, then returns nil. It wakes on NOTIFY keel_outbox (sent by
// Tx.Commit) through a dedicated connection outside the pool, polls as a fallback, backs off
// exponentially while publishing fails, and deletes published rows older than the retention. A Relay
// runs at most once at a time.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("postgres: relay already running")
	}
	defer r.running.Store(false)

	wake := make(chan struct{}, 1)
	lctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.listen(lctx, wake)
	}()
	defer func() {
		stop()
		wg.Wait()
	}()

	timer := time.NewTimer(r.o.pollInterval)
	defer timer.Stop()
	var backoff time.Duration
	var lastCleanup time.Time
	for {
		err := r.drain(ctx)
		r.refreshPending(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait := r.o.pollInterval
		if err != nil {
			backoff = nextBackoff(backoff, r.o.minBackoff, r.o.maxBackoff)
			wait = backoff
			r.db.log.Warn("outbox relay: publish failed; retrying", "err", err, "backoff", backoff)
		} else {
			backoff = 0
			if time.Since(lastCleanup) >= min(r.o.retention, time.Minute) {
				r.cleanup(ctx)
				lastCleanup = time.Now()
			}
		}
		timer.Reset(wait)
		if err != nil {
			// While the bus is failing, notifications must not cut the backoff short.
			select {
			case <-ctx.Done():
				return nil
			case <-timer.C:
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-timer.C:
		}
	}
}

func nextBackoff(prev, first, max time.Duration) time.Duration {
	d := first
	if prev > 0 {
		d = min(prev*2, max)
	}
	// ±20% jitter.
	return d + time.Duration((rand.Float64()*0.4-0.2)*float64(d))
}

// drain publishes full batches until the outbox is empty or a publish fails.
func (r *Relay) drain(ctx context.Context) error {
	for ctx.Err() == nil {
		n, err := r.publishBatch(ctx)
		if err != nil {
			return err
		}
		if n < r.o.batchSize {
			return nil
		}
	}
	return nil
}

const claimSQL = `
SELECT id, event_id, topic, key, payload, headers, created_at, attempts
FROM keel_host.outbox
WHERE published_at IS NULL
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED`

// publishBatch claims up to batchSize unpublished rows, publishes them topic by topic, and in the
// claiming transaction marks the published ones and records the failure on the others. It returns
// how many rows it claimed and the first publish error.
func (r *Relay) publishBatch(ctx context.Context) (int, error) {
	tx, err := r.db.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin claim: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit
	rows, _ := tx.Query(ctx, claimSQL, r.o.batchSize)
	msgs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RelayMessage, error) {
		var m RelayMessage
		var attempts int32
		err := row.Scan(&m.ID, &m.EventID, &m.Topic, &m.Key, &m.Payload, &m.Headers, &m.CreatedAt, &attempts)
		m.Attempts = int(attempts)
		return m, err
	})
	if err != nil {
		return 0, fmt.Errorf("claim outbox rows: %w", err)
	}
	if len(msgs) == 0 {
		return 0, tx.Commit(ctx)
	}

	// Group by topic, keeping id order inside each topic and first-seen order across topics.
	var topics []string
	byTopic := make(map[string][]RelayMessage)
	for _, m := range msgs {
		if _, ok := byTopic[m.Topic]; !ok {
			topics = append(topics, m.Topic)
		}
		byTopic[m.Topic] = append(byTopic[m.Topic], m)
	}
	var done, failed []int64
	var firstErr error
	for _, topic := range topics {
		group := byTopic[topic]
		if err := r.callPublish(ctx, topic, group); err != nil {
			r.failures.Inc()
			if firstErr == nil {
				firstErr = fmt.Errorf("publish %d messages to %q: %w", len(group), topic, err)
			}
			for _, m := range group {
				failed = append(failed, m.ID)
			}
			continue
		}
		for _, m := range group {
			done = append(done, m.ID)
		}
	}
	if len(done) > 0 {
		if _, err := tx.Exec(ctx, `UPDATE keel_host.outbox SET published_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = ANY($1)`, done); err != nil {
			return len(msgs), fmt.Errorf("mark published (they may be published again): %w", err)
		}
	}
	if len(failed) > 0 {
		msg := firstErr.Error()
		if len(msg) > 1000 {
			msg = msg[:1000]
		}
		if _, err := tx.Exec(ctx, `UPDATE keel_host.outbox SET attempts = attempts + 1, last_error = $2 WHERE id = ANY($1)`, failed, msg); err != nil {
			return len(msgs), errors.Join(firstErr, fmt.Errorf("record failure: %w", err))
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return len(msgs), errors.Join(firstErr, fmt.Errorf("commit publish marks (messages may be published again): %w", err))
	}
	r.published.Add(float64(len(done)))
	return len(msgs), firstErr
}

// callPublish runs the publish function with its timeout and turns a panic into an error, so a bug
// in an event bus adapter cannot take the relay down.
func (r *Relay) callPublish(ctx context.Context, topic string, msgs []RelayMessage) (err error) {
	pctx, cancel := context.WithTimeout(ctx, r.o.publishTimeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("publish panicked: %v", p)
		}
	}()
	return r.publish(pctx, topic, msgs)
}

func (r *Relay) refreshPending(ctx context.Context) {
	var n int64
	if err := r.db.pool.QueryRow(ctx, `SELECT count(*) FROM keel_host.outbox WHERE published_at IS NULL`).Scan(&n); err != nil {
		if ctx.Err() == nil {
			r.db.log.Warn("outbox relay: count pending rows", "err", err)
		}
		return
	}
	r.pending.Set(float64(n))
}

// cleanupChunk bounds each DELETE so retention never holds long locks on a large outbox.
const cleanupChunk = 10_000

func (r *Relay) cleanup(ctx context.Context) {
	for ctx.Err() == nil {
		tag, err := r.db.pool.Exec(ctx, `
DELETE FROM keel_host.outbox WHERE id IN (
	SELECT id FROM keel_host.outbox
	WHERE published_at IS NOT NULL AND published_at < now() - make_interval(secs => $1)
	ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)`, r.o.retention.Seconds(), cleanupChunk)
		if err != nil {
			if ctx.Err() == nil {
				r.db.log.Warn("outbox relay: delete published rows", "err", err)
			}
			return
		}
		r.deleted.Add(float64(tag.RowsAffected()))
		if tag.RowsAffected() < cleanupChunk {
			return
		}
	}
}

// listen keeps a LISTEN connection open and signals wake on every notification and after every
// (re)connect, since rows may have been committed while it was not listening.
func (r *Relay) listen(ctx context.Context, wake chan<- struct{}) {
	signal := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	cfg := r.db.pool.Config().ConnConfig
	var backoff time.Duration
	for ctx.Err() == nil {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			if _, err = conn.Exec(ctx, "LISTEN "+outboxChannel); err == nil {
				backoff = 0
				signal()
				for {
					if _, err = conn.WaitForNotification(ctx); err != nil {
						break
					}
					signal()
				}
			}
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			conn.Close(cctx) //nolint:errcheck // closing a broken connection
			cancel()
		}
		if ctx.Err() != nil {
			return
		}
		backoff = nextBackoff(backoff, r.o.minBackoff, r.o.maxBackoff)
		r.db.log.Warn("outbox relay: listener lost; polling until it reconnects", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}
