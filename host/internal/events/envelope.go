// Package events connects plugins to the event bus: it provisions the topics plugins
// declare (each with its dead-letter topic), runs one consumer group per subscription
// that hands each event to the subscribing plugin's active generation, and defines the
// envelope every event travels in.
package events

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Envelope is the JSON form of an event on the bus. It is what the outbox stores,
// what brokers carry and what a dead-letter topic shows an operator, so it is
// self-describing rather than the ABI's binary encoding.
type Envelope struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Tenant    string          `json:"tenant,omitempty"`
	Source    string          `json:"source"`
	Time      time.Time       `json:"time"`
	RequestID string          `json:"request_id,omitempty"`
	Payload   json.RawMessage `json:"payload"`
}

// MaxEnvelope bounds one event on the bus.
const MaxEnvelope = 1 << 20

// Encode returns the envelope's JSON.
func (e *Envelope) Encode() ([]byte, error) { return json.Marshal(e) }

// DecodeEnvelope parses and validates an envelope read from the bus.
func DecodeEnvelope(b []byte) (*Envelope, error) {
	if len(b) > MaxEnvelope {
		return nil, fmt.Errorf("event envelope of %d bytes exceeds %d", len(b), MaxEnvelope)
	}
	var e Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("event envelope: %w", err)
	}
	switch {
	case e.ID == "" || len(e.ID) > 128:
		return nil, errors.New("event envelope: id missing or longer than 128")
	case e.Type == "" || len(e.Type) > 200:
		return nil, errors.New("event envelope: type missing or longer than 200")
	case e.Source == "":
		return nil, errors.New("event envelope: source missing")
	case len(e.Payload) == 0:
		return nil, errors.New("event envelope: payload missing")
	}
	return &e, nil
}

// NewID returns a time-ordered unique event id (48-bit millisecond time, 80 random
// bits, hex), so ids sort by publication time in logs and dead-letter listings.
func NewID() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	_, _ = rand.Read(b[6:])
	return hex.EncodeToString(b[:])
}
