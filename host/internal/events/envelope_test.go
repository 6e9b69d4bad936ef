package events

import (
	"strings"
	"testing"
	"time"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	e := &Envelope{ID: NewID(), Type: "x.created", Tenant: "t1", Source: "x", Time: time.Now().UTC().Truncate(time.Microsecond), Payload: []byte(`{"a":1}`)}
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeEnvelope(b)
	if err != nil || got.ID != e.ID || !got.Time.Equal(e.Time) || string(got.Payload) != `{"a":1}` {
		t.Fatalf("%v %+v", err, got)
	}
	for name, bad := range map[string]string{
		"not json":   `{`,
		"no id":      `{"type":"t","source":"s","payload":{}}`,
		"no payload": `{"id":"1","type":"t","source":"s"}`,
		"long id":    `{"id":"` + strings.Repeat("x", 200) + `","type":"t","source":"s","payload":1}`,
	} {
		if _, err := DecodeEnvelope([]byte(bad)); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestNewIDOrdered(t *testing.T) {
	a := NewID()
	time.Sleep(2 * time.Millisecond)
	b := NewID()
	if len(a) != 32 || a >= b {
		t.Fatalf("ids not time-ordered: %s %s", a, b)
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add([]byte(`{"id":"1","type":"t","source":"s","time":"2026-01-01T00:00:00Z","payload":{"x":1}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEnvelope(b)
		if err == nil && (e.ID == "" || e.Type == "" || len(e.Payload) == 0) {
			t.Fatalf("invalid envelope accepted: %+v", e)
		}
	})
}
