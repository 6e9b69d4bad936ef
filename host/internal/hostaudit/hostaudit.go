// Package hostaudit records the host's own audit events (admin actions, refused
// credentials, permission denials) into the shared audit trail: the topic
// audit.events, through the outbox, so they reach the audit plugin even if the broker
// is down when they happen. Recording never blocks or fails a request: events are
// queued and written in batches; if the queue is full they are counted and logged.
package hostaudit

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keelhq/keel/host/internal/events"
)

// Topic is the audit trail every plugin and the host publish to.
const Topic = "audit.events"

// PlatformTenant is the tenant of events that belong to no tenant (admin actions).
const PlatformTenant = "platform"

// Record is one audit event. Its payload schema is shared by every publisher:
// {"action","actor","resource","request_id","detail"}.
type Record struct {
	Tenant    string         `json:"-"`
	Action    string         `json:"action"`
	Actor     string         `json:"actor"`
	Resource  string         `json:"resource"`
	RequestID string         `json:"request_id,omitempty"`
	Detail    map[string]any `json:"detail,omitempty"`
}

// clone returns rec with its own copy of every string, in Detail too (one level of
// maps and slices of strings, which is what callers put there).
func (rec Record) clone() Record {
	rec.Tenant, rec.Action, rec.Actor = strings.Clone(rec.Tenant), strings.Clone(rec.Action), strings.Clone(rec.Actor)
	rec.Resource, rec.RequestID = strings.Clone(rec.Resource), strings.Clone(rec.RequestID)
	if rec.Detail != nil {
		d := make(map[string]any, len(rec.Detail))
		for k, v := range rec.Detail {
			d[strings.Clone(k)] = cloneValue(v)
		}
		rec.Detail = d
	}
	return rec
}

func cloneValue(v any) any {
	switch v := v.(type) {
	case string:
		return strings.Clone(v)
	case []string:
		out := make([]string, len(v))
		for i, s := range v {
			out[i] = strings.Clone(s)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[strings.Clone(k)] = cloneValue(x)
		}
		return out
	case map[string]string:
		out := make(map[string]string, len(v))
		for k, x := range v {
			out[strings.Clone(k)] = strings.Clone(x)
		}
		return out
	default:
		return v
	}
}

// Recorder writes records to the outbox.
type Recorder struct {
	pool    *pgxpool.Pool
	logger  *slog.Logger
	queue   chan Record
	dropped prometheus.Counter
	written prometheus.Counter
}

// New creates a recorder; pool may be nil (no database: records are only logged).
func New(pool *pgxpool.Pool, logger *slog.Logger, reg prometheus.Registerer) *Recorder {
	r := &Recorder{pool: pool, logger: logger, queue: make(chan Record, 10000),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "keel_host_audit_dropped_total", Help: "Host audit records dropped because the queue was full."}),
		written: prometheus.NewCounter(prometheus.CounterOpts{Name: "keel_host_audit_records_total", Help: "Host audit records written to the outbox."}),
	}
	reg.MustRegister(r.dropped, r.written)
	return r
}

// Record queues one record; it never blocks. The record is copied first: callers
// build it from fiber's zero-copy views (path, parameters, headers), which point into
// request buffers that fasthttp reuses once the handler returns, while the record is
// written later by Run. Found by the race detector in the dashboard test, where
// audited admin requests' strings were being overwritten by the next request.
func (r *Recorder) Record(rec Record) {
	rec = rec.clone()
	if rec.Tenant == "" {
		rec.Tenant = PlatformTenant
	}
	r.logger.Info("audit", "audit", true, "tenant", rec.Tenant, "action", rec.Action, "actor", rec.Actor,
		"resource", rec.Resource, "request_id", rec.RequestID)
	if r.pool == nil {
		return
	}
	select {
	case r.queue <- rec:
	default:
		r.dropped.Inc()
		r.logger.Error("audit queue full; record dropped", "action", rec.Action)
	}
}

// Run writes queued records until ctx ends, then flushes what is left.
func (r *Recorder) Run(ctx context.Context) {
	if r.pool == nil {
		return
	}
	batch := make([]Record, 0, 100)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		for attempt := 0; ; attempt++ {
			err := r.write(fctx, batch)
			if err == nil {
				r.written.Add(float64(len(batch)))
				break
			}
			if attempt >= 2 || fctx.Err() != nil {
				r.dropped.Add(float64(len(batch)))
				r.logger.Error("writing audit records failed; dropped", "records", len(batch), "err", err)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		batch = batch[:0]
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case rec := <-r.queue:
			batch = append(batch, rec)
			if len(batch) == cap(batch) {
				flush()
			}
		case <-t.C:
			flush()
		case <-ctx.Done():
			for {
				select {
				case rec := <-r.queue:
					batch = append(batch, rec)
				default:
					flush()
					return
				}
			}
		}
	}
}

func (r *Recorder) write(ctx context.Context, recs []Record) error {
	b := &pgx.Batch{}
	for _, rec := range recs {
		payload, err := json.Marshal(rec)
		if err != nil {
			continue
		}
		env := events.Envelope{ID: events.NewID(), Type: "audit.record", Tenant: rec.Tenant, Source: "host",
			Time: time.Now().UTC(), RequestID: rec.RequestID, Payload: payload}
		eb, err := env.Encode()
		if err != nil {
			continue
		}
		hdr, _ := json.Marshal(map[string]string{"keel-type": "audit.record", "keel-source": "host"})
		b.Queue(`INSERT INTO keel_host.outbox (event_id, topic, payload, headers) VALUES ($1, $2, $3, $4)`, env.ID, Topic, eb, hdr)
	}
	b.Queue(`SELECT pg_catalog.pg_notify('keel_outbox', '')`)
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
