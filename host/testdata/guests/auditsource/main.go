// Command auditsource is a test guest that publishes audit events on the shared trail
// (audit.events) the way every plugin does: in its unit of work, with the shared
// payload schema, for the tenant of the call (X-Tenant-ID on its public route).
package main

import (
	"encoding/json"

	keel "github.com/keelhq/keel/abi/sdk"
)

// event is one audit event to publish; Type defaults to Action.
type event struct {
	Action    string          `json:"action"`
	Actor     string          `json:"actor"`
	Resource  string          `json:"resource"`
	RequestID string          `json:"request_id,omitempty"`
	Detail    json.RawMessage `json:"detail,omitempty"`
	Type      string          `json:"type,omitempty"`
}

func init() {
	// POST /emit with one event or an array of events; answers the event ids.
	keel.Handle("POST", "/emit", func(r *keel.Request) *keel.Response {
		var evs []event
		if err := json.Unmarshal(r.Body, &evs); err != nil {
			var one event
			if err := r.DecodeJSON(&one); err != nil {
				return keel.Error(400, "invalid_json", err.Error())
			}
			evs = []event{one}
		}
		var ids []string
		for _, e := range evs {
			if e.RequestID == "" {
				e.RequestID = r.Call().RequestID()
			}
			typ := e.Type
			if typ == "" {
				typ = e.Action
			}
			e.Type = ""
			id, err := keel.Events.Publish("audit.events", typ, e, keel.Key(r.Call().Tenant()))
			if err != nil {
				return keel.Error(500, "publish_failed", err.Error())
			}
			ids = append(ids, id)
		}
		return keel.JSON(201, map[string]any{"event_ids": ids})
	})
}

func main() {}
