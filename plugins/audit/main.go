// Command audit is the platform's audit trail: it consumes the audit events every
// plugin and the host publish on the topic audit.events and stores them, per tenant,
// as an append-only hash chain that can be searched, verified, archived by age and
// watched for compliance alerts.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugin.wasm .
// See README.md for the routes, settings and the design of the chain.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	keel "github.com/keelhq/keel/abi/sdk"
)

// Topics.
const (
	trailTopic = "audit.events"
	alertTopic = "audit.alerts"
	alertType  = "audit.alert"
)

// Limits on the fields of an audit event; larger ones are refused (and end in the
// dead-letter topic, where an operator can see them) rather than truncated.
const (
	maxAction    = 200
	maxActor     = 500
	maxResource  = 1000
	maxRequestID = 200
)

func init() {
	keel.OnEvent(trailTopic, onAuditEvent)
	keel.Handle("GET", "/records", searchRecords)
	keel.Handle("GET", "/verify", verifyChain)
	keel.Handle("POST", "/retention/run", runRetention)
	keel.OnHealth(health)
}

func main() {}

// payload is the shared audit event schema:
// {"action","actor","resource","request_id","detail"}. "details" is accepted as an
// alias of "detail" for publishers that spell it so.
type payload struct {
	Action    string          `json:"action"`
	Actor     string          `json:"actor"`
	Resource  string          `json:"resource"`
	RequestID string          `json:"request_id"`
	Detail    json.RawMessage `json:"detail"`
	Details   json.RawMessage `json:"details"`
}

// errInvalidEvent marks events no redelivery can fix. They are still refused (the
// host retries, then parks them in audit.events.dlq): an audit trail must not drop or
// rewrite what it was given, and the dead-letter topic keeps the original for an operator.
var errInvalidEvent = errors.New("invalid audit event")

func parseEvent(ev *keel.Event) (*record, error) {
	var p payload
	if err := json.Unmarshal(ev.Payload, &p); err != nil {
		return nil, fmt.Errorf("%w %s: payload: %v", errInvalidEvent, ev.ID, err)
	}
	detail := p.Detail
	if len(detail) == 0 || string(detail) == "null" {
		detail = p.Details
	}
	if len(detail) == 0 || string(detail) == "null" {
		detail = json.RawMessage(`{}`)
	}
	requestID := p.RequestID
	if requestID == "" && ev.Call().RequestID() != ev.ID {
		requestID = ev.Call().RequestID() // the publishing invocation's, from the envelope
	}
	r := &record{
		Tenant: ev.Tenant, EventID: ev.ID, Source: ev.Source,
		Action: p.Action, Actor: p.Actor, Resource: p.Resource, RequestID: requestID,
		Detail: string(detail),
		// PostgreSQL keeps microseconds; the hash must cover what is stored.
		At: ev.Time.UTC().Truncate(time.Microsecond),
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"action", r.Action, maxAction}, {"actor", r.Actor, maxActor}, {"resource", r.Resource, maxResource},
		{"request_id", r.RequestID, maxRequestID}, {"event id", r.EventID, 200}, {"source", r.Source, 200}} {
		if len(f.v) > f.max || strings.IndexByte(f.v, 0) >= 0 {
			return nil, fmt.Errorf("%w %s: %s longer than %d bytes or containing NUL", errInvalidEvent, ev.ID, f.name, f.max)
		}
	}
	if r.Action == "" {
		return nil, fmt.Errorf("%w %s: action missing", errInvalidEvent, ev.ID)
	}
	return r, nil
}

// onAuditEvent appends one event to its tenant's chain, exactly once per event id.
//
// The tenant's chain_heads row is the lock: the first statement creates or
// updates it, which blocks any other append (on any host) for that tenant until this
// invocation commits. Under READ COMMITTED every later statement sees what the
// previous holder committed, so the duplicate check and the predecessor's hash are
// current. Everything (record, head, alert) commits together or not at all.
func onAuditEvent(ev *keel.Event) error {
	r, err := parseEvent(ev)
	if err != nil {
		keel.Log.Warn("refusing audit event", "event_id", ev.ID, "source", ev.Source, "err", err.Error())
		return err
	}
	s, serr := loadSettings()
	if serr != nil {
		// A broken setting must not stop the trail; it makes the plugin unhealthy.
		keel.Log.Error("settings unavailable; no alert evaluated and no automatic retention", "err", serr.Error())
		s = &settings{}
	}
	head, err := keel.DB.Query(`INSERT INTO chain_heads AS h (last_seq) VALUES (0)
		ON CONFLICT (tenant_id) DO UPDATE SET updated_at = now()
		RETURNING h.last_seq, h.last_hash, h.retention_checked_at <= now() - make_interval(secs => $1::float8) AS retention_due`,
		s.retentionEvery.Seconds())
	if err != nil {
		return fmt.Errorf("lock chain head: %w", err)
	}
	prevSeq, prevHash := head.Row(0).Int("last_seq"), head.Row(0).String("last_hash")
	retentionDue := head.Row(0).Bool("retention_due")

	// Duplicate check after the lock, so that a concurrent delivery of the same event
	// has either committed (and is seen) or not started. The detail is normalised by
	// PostgreSQL (jsonb) here, so the hash covers exactly what the column will return.
	q, err := keel.DB.Query(`SELECT EXISTS (SELECT 1 FROM records WHERE event_id = $1)
			OR EXISTS (SELECT 1 FROM archive WHERE event_id = $1) AS dup,
		$2::jsonb::text AS detail`, r.EventID, r.Detail)
	if err != nil {
		var he *keel.HostError
		if errors.As(err, &he) && strings.HasPrefix(he.Detail, "22") { // data exception: not JSON PostgreSQL accepts
			return fmt.Errorf("%w %s: detail: %v", errInvalidEvent, ev.ID, err)
		}
		return fmt.Errorf("duplicate check: %w", err)
	}
	if q.Row(0).Bool("dup") {
		keel.Log.Info("audit event already recorded", "event_id", r.EventID, "attempt", ev.Attempt)
		_ = keel.M("duplicates_total").Inc()
		return nil
	}
	r.Detail = q.Row(0).String("detail")
	r.Seq = prevSeq + 1
	r.PrevHash = prevHash
	if r.Hash, err = r.computeHash(prevHash); err != nil {
		return err
	}
	n, err := keel.DB.Exec(`WITH r AS (
			INSERT INTO records (seq, event_id, source, action, actor, resource, request_id, detail, at, prev_hash, hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			RETURNING seq, hash)
		UPDATE chain_heads SET last_seq = r.seq, last_hash = r.hash, updated_at = now()
		FROM r WHERE chain_heads.last_seq = r.seq - 1`,
		r.Seq, r.EventID, r.Source, r.Action, r.Actor, r.Resource, r.RequestID, r.Detail, r.At, r.PrevHash, r.Hash)
	if err != nil {
		return fmt.Errorf("append record %d: %w", r.Seq, err)
	}
	if n != 1 {
		return fmt.Errorf("append record %d: chain head moved (updated %d rows)", r.Seq, n)
	}

	alerted := false
	if p := firstMatch(s.patterns, r.Action); p != "" {
		if err := publishAlert(r, p); err != nil {
			return fmt.Errorf("publish alert: %w", err)
		}
		alerted = true
	}
	if err := maybeArchive(s, retentionDue, r.EventID); err != nil {
		return err
	}
	_ = keel.M("records_total").Inc(r.Source)
	if alerted {
		_ = keel.M("alerts_total").Inc()
	}
	return nil
}

// alert is the payload of an audit.alert event.
type alert struct {
	Pattern   string          `json:"pattern"`
	Seq       int64           `json:"seq"`
	EventID   string          `json:"event_id"`
	Source    string          `json:"source"`
	Action    string          `json:"action"`
	Actor     string          `json:"actor"`
	Resource  string          `json:"resource"`
	RequestID string          `json:"request_id,omitempty"`
	Detail    json.RawMessage `json:"detail"`
	At        time.Time       `json:"at"`
	Hash      string          `json:"hash"`
}

// publishAlert publishes the alert in the same unit of work as the record, with the
// event id as idempotency key: one alert per record, and none if the record rolls back.
func publishAlert(r *record, pattern string) error {
	_, err := keel.Events.Publish(alertTopic, alertType, alert{
		Pattern: pattern, Seq: r.Seq, EventID: r.EventID, Source: r.Source, Action: r.Action, Actor: r.Actor,
		Resource: r.Resource, RequestID: r.RequestID, Detail: json.RawMessage(r.Detail), At: r.At, Hash: r.Hash,
	}, keel.IdempotencyKey(shortKey("alert", r.EventID)))
	return err
}

// shortKey derives an idempotency key from parts: the host allows 128 characters and
// event ids alone may use them all.
func shortKey(kind string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return kind + ":" + hex.EncodeToString(h.Sum(nil))[:40]
}

// health reports the plugin unhealthy when its settings do not parse. It cannot
// reach the database (a health check acts for no tenant).
func health() error {
	_, err := readSettings()
	return err
}
