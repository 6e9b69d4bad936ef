package postgres

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// outboxChannel is the NOTIFY channel that wakes relays when events are committed.
const outboxChannel = "keel_outbox"

// Outbox limits. Topic length follows Kafka's limit so every topic the outbox accepts can be published.
const (
	maxTopicLen        = 249
	maxEventIDLen      = 200
	maxEventsPerInsert = 1000 // 5 parameters each, well below the protocol's 65535
)

// OutboxEvent is an event published during an invocation, written to keel_host.outbox when the
// invocation's transaction commits and delivered by a Relay afterwards.
type OutboxEvent struct {
	// ID is the event's unique id, also an idempotency key: an event whose ID is already in the
	// outbox is not written again. Empty means a random id.
	ID    string
	Topic string
	Key   []byte
	// Payload is the message body; nil is stored as empty.
	Payload []byte
	Headers map[string]string
}

// queueOutboxInsert adds the INSERT statements for events to b, in order, so ids follow the order in
// which the plugin published them.
func queueOutboxInsert(b *pgconn.Batch, events []OutboxEvent) error {
	seen := make(map[string]bool, len(events))
	for start := 0; start < len(events); start += maxEventsPerInsert {
		chunk := events[start:min(start+maxEventsPerInsert, len(events))]
		var sql strings.Builder
		sql.WriteString(`INSERT INTO keel_host.outbox (event_id, topic, key, payload, headers) VALUES `)
		values := make([][]byte, 0, 5*len(chunk))
		oids := make([]uint32, 0, 5*len(chunk))
		formats := make([]int16, 0, 5*len(chunk))
		for i, e := range chunk {
			if e.Topic == "" || len(e.Topic) > maxTopicLen {
				return fmt.Errorf("event %d: topic must be 1 to %d bytes", start+i+1, maxTopicLen)
			}
			id := e.ID
			if id == "" {
				id = newEventID()
			}
			if len(id) > maxEventIDLen {
				return fmt.Errorf("event %d: id longer than %d bytes", start+i+1, maxEventIDLen)
			}
			if seen[id] {
				return fmt.Errorf("event %d: id %q used twice in one commit", start+i+1, id)
			}
			seen[id] = true
			headers := []byte("{}")
			if len(e.Headers) > 0 {
				var err error
				if headers, err = json.Marshal(e.Headers); err != nil {
					return fmt.Errorf("event %d: headers: %w", start+i+1, err)
				}
			}
			payload := e.Payload
			if payload == nil {
				payload = []byte{}
			}
			if i > 0 {
				sql.WriteString(", ")
			}
			n := 5 * i
			fmt.Fprintf(&sql, "($%d, $%d, $%d, $%d, $%d)", n+1, n+2, n+3, n+4, n+5)
			values = append(values, []byte(id), []byte(e.Topic), e.Key, payload, headers)
			oids = append(oids, oidText, oidText, oidBytea, oidBytea, oidJSONB)
			formats = append(formats, 0, 0, 1, 1, 0)
		}
		sql.WriteString(` ON CONFLICT (event_id) DO NOTHING`)
		b.ExecParams(sql.String(), values, oids, formats, nil)
	}
	return nil
}

// newEventID returns a random UUID (version 4) in canonical form.
func newEventID() string {
	var u [16]byte
	_, _ = rand.Read(u[:]) // crypto/rand.Read never fails
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
