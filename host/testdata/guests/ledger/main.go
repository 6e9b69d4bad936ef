// Command ledger is a test guest for the unit of work: it writes rows and publishes
// events in one invocation, can fail or trap afterwards, and records the events it
// receives (and those parked in the dead-letter topic) in its own tables.
package main

import (
	"errors"
	"unsafe"

	keel "github.com/keelhq/keel/abi/sdk"
)

type entry struct {
	Note   string `json:"note"`
	Amount int64  `json:"amount"`
	Fail   string `json:"fail,omitempty"` // "", "error" or "trap"
}

func report(err error) *keel.Response {
	var he *keel.HostError
	if errors.As(err, &he) {
		return keel.JSON(500, map[string]any{"code": he.Code.String(), "detail": he.Detail, "message": he.Message})
	}
	return keel.JSON(500, map[string]any{"code": "other", "message": err.Error()})
}

func init() {
	keel.Handle("POST", "/entries", func(r *keel.Request) *keel.Response {
		var e entry
		if err := r.DecodeJSON(&e); err != nil {
			return keel.Error(400, "invalid_json", err.Error())
		}
		if _, err := keel.DB.Exec(`INSERT INTO entries (note, amount) VALUES ($1, $2)`, e.Note, e.Amount); err != nil {
			return report(err)
		}
		id, err := keel.Events.Publish("ledger.entries", "ledger.entry.created", map[string]any{"note": e.Note}, keel.Key(e.Note))
		if err != nil {
			return report(err)
		}
		switch e.Fail {
		case "error":
			return keel.Error(500, "forced", "failing after the insert and the publish")
		case "trap":
			*(*byte)(unsafe.Pointer(uintptr(0xfffffff0))) = 1
		}
		return keel.JSON(201, map[string]string{"event_id": id})
	})
	keel.Handle("GET", "/entries", func(r *keel.Request) *keel.Response {
		rows, err := keel.DB.Query(`SELECT note, amount, tenant_id FROM entries ORDER BY id`)
		if err != nil {
			return report(err)
		}
		return keel.JSON(200, rows.Maps())
	})
	// The route's prefetch declares this statement: the host runs it before the call.
	keel.Handle("GET", "/ro/entries/:note", func(r *keel.Request) *keel.Response {
		rows, err := keel.DB.QueryJSON(`SELECT note, amount FROM entries WHERE note = $1 ORDER BY id`, r.Param("note"))
		if err != nil {
			return report(err)
		}
		return keel.Bytes(200, "application/json", rows.AppendArray(nil, 0, rows.Len()))
	})
	keel.Handle("GET", "/received", func(r *keel.Request) *keel.Response {
		rows, err := keel.DB.Query(`SELECT event_id, note, topic, tenant_id FROM received ORDER BY id`)
		if err != nil {
			return report(err)
		}
		return keel.JSON(200, rows.Maps())
	})
	sql := func(r *keel.Request) *keel.Response {
		rows, err := keel.DB.Query(string(r.Body))
		if err != nil {
			return report(err)
		}
		return keel.JSON(200, rows.Maps())
	}
	// /sql-json runs the statement twice, rendered by the host (QueryJSON) and by the
	// guest (Query, Rows.AppendJSONArray), and answers the host's array if both are
	// the same bytes, 500 with both otherwise.
	keel.Handle("POST", "/sql-json", func(r *keel.Request) *keel.Response {
		host, err := keel.DB.QueryJSON(string(r.Body))
		if err != nil {
			return report(err)
		}
		rows, err := keel.DB.Query(string(r.Body))
		if err != nil {
			return report(err)
		}
		h, g := host.AppendArray(nil, 0, host.Len()), rows.AppendJSONArray(nil, 0, rows.Len())
		if string(h) != string(g) {
			return keel.JSON(500, map[string]string{"host": string(h), "guest": string(g)})
		}
		return keel.Bytes(200, "application/json", h)
	})
	keel.Handle("POST", "/sql", sql)
	keel.Handle("POST", "/ro/sql", sql) // declared read_only
	keel.Handle("POST", "/ro/publish", func(r *keel.Request) *keel.Response {
		if _, err := keel.Events.Publish("ledger.entries", "ledger.entry.created", map[string]any{"note": "from a read-only route"}); err != nil {
			return report(err)
		}
		return keel.Text(200, "published")
	})
	record := func(ev *keel.Event) error {
		var p struct{ Note string }
		if err := ev.DecodeJSON(&p); err != nil {
			return err
		}
		if p.Note == "poison" && ev.Topic == "ledger.entries" {
			return errors.New("poison entry refused")
		}
		_, err := keel.DB.Exec(`INSERT INTO received (event_id, note, topic) VALUES ($1, $2, $3)`, ev.ID, p.Note, ev.Topic)
		return err
	}
	keel.OnEvent("ledger.entries", record)
	keel.OnEvent("ledger.entries.dlq", record)
}

func main() {}
