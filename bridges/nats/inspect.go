package nats

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keelhq/keel/bridges/bus"
)

var _ bus.Inspector = (*Bus)(nil)

// maxPeek bounds one Peek: each message is one request to the server.
const maxPeek = 1000

// TopicStats reads the topic's stream and the durable consumer of each group. A group's lag is
// what JetStream counts as not yet delivered plus delivered and not acknowledged; a group
// without a consumer yet would start with every stored message, which is its lag.
func (b *Bus) TopicStats(ctx context.Context, topic string, groups []string) (bus.TopicStats, error) {
	st := bus.TopicStats{Topic: topic, Partitions: 1, Groups: make([]bus.GroupStats, 0, len(groups))}
	s, err := b.stream(ctx, topic)
	if errors.Is(err, bus.ErrNotFound) {
		for _, g := range groups {
			st.Groups = append(st.Groups, bus.GroupStats{Group: g})
		}
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("nats: topic stats %s: %w", topic, err)
	}
	st.Exists = true
	st.Messages = int64(s.CachedInfo().State.Msgs)
	for _, g := range groups {
		gs := bus.GroupStats{Group: g, Lag: st.Messages}
		if err := bus.ValidateName(g); err != nil {
			return st, fmt.Errorf("nats: topic stats %s: group: %w", topic, err)
		}
		c, err := s.Consumer(ctx, b.cfg.names.durable(g))
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
		case err != nil:
			return st, fmt.Errorf("nats: topic stats %s: consumer of group %s: %w", topic, g, err)
		default:
			ci := c.CachedInfo()
			gs.Known = true
			gs.Pending = int64(ci.NumAckPending)
			gs.Lag = int64(ci.NumPending) + gs.Pending
		}
		st.Groups = append(st.Groups, gs)
	}
	return st, nil
}

// Peek reads the oldest messages of the topic's stream with direct message requests, which
// no consumer sees. Messages removed from the middle of the stream are skipped by the server.
func (b *Bus) Peek(ctx context.Context, topic string, limit int) ([]bus.Stored, error) {
	limit = min(limit, maxPeek)
	s, err := b.stream(ctx, topic)
	if errors.Is(err, bus.ErrNotFound) || limit <= 0 {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("nats: peek %s: %w", topic, err)
	}
	state := s.CachedInfo().State
	if state.Msgs == 0 {
		return nil, nil
	}
	subject := b.cfg.names.subject(topic)
	var out []bus.Stored
	for seq := state.FirstSeq; len(out) < limit && seq <= state.LastSeq; {
		raw, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("nats: peek %s at sequence %d: %w", topic, seq, err)
		}
		if raw.Sequence > state.LastSeq { // published after the stream info was read
			break
		}
		out = append(out, stored(raw))
		seq = raw.Sequence + 1
	}
	return out, nil
}

// Get reads the message at a stream sequence.
func (b *Bus) Get(ctx context.Context, topic, id string) (bus.Stored, error) {
	s, seq, err := b.locate(ctx, topic, id)
	if err != nil {
		return bus.Stored{}, fmt.Errorf("nats: get %s/%s: %w", topic, id, err)
	}
	raw, err := s.GetMsg(ctx, seq)
	if err != nil {
		return bus.Stored{}, fmt.Errorf("nats: get %s/%s: %w", topic, id, b.missing(ctx, s, seq, err))
	}
	return stored(raw), nil
}

// Remove deletes the message at a stream sequence. JetStream deletes any message of a stream,
// and consumers that have not reached it yet skip it.
func (b *Bus) Remove(ctx context.Context, topic, id string) error {
	s, seq, err := b.locate(ctx, topic, id)
	if err != nil {
		return fmt.Errorf("nats: remove %s/%s: %w", topic, id, err)
	}
	if err := s.DeleteMsg(ctx, seq); err != nil {
		return fmt.Errorf("nats: remove %s/%s: %w", topic, id, b.missing(ctx, s, seq, err))
	}
	return nil
}

// stream looks up the topic's stream; bus.ErrNotFound when it does not exist.
func (b *Bus) stream(ctx context.Context, topic string) (jetstream.Stream, error) {
	if err := bus.ValidateName(topic); err != nil {
		return nil, err
	}
	s, err := b.js.Stream(ctx, b.cfg.names.stream(topic))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("%w: no stream %s", bus.ErrNotFound, b.cfg.names.stream(topic))
	}
	return s, err
}

// locate parses id as a stream sequence and looks up the stream.
func (b *Bus) locate(ctx context.Context, topic, id string) (jetstream.Stream, uint64, error) {
	seq, err := strconv.ParseUint(id, 10, 64)
	if err != nil || seq == 0 {
		return nil, 0, fmt.Errorf("%w: %q is not a stream sequence", bus.ErrNotFound, id)
	}
	s, err := b.stream(ctx, topic)
	return s, seq, err
}

// missing explains a failed read or delete at seq: ErrGone when the sequence was used and the
// message is not there any more, ErrNotFound when it lies beyond the end of the stream, and
// cause itself for any other failure.
func (b *Bus) missing(ctx context.Context, s jetstream.Stream, seq uint64, cause error) error {
	if !errors.Is(cause, jetstream.ErrMsgNotFound) {
		// A failed delete does not say why; ask whether the message is there.
		if _, err := s.GetMsg(ctx, seq); !errors.Is(err, jetstream.ErrMsgNotFound) {
			return cause
		}
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("%w (and reading the stream: %w)", cause, err)
	}
	if seq <= info.State.LastSeq {
		return fmt.Errorf("%w: sequence %d was removed or expired", bus.ErrGone, seq)
	}
	return fmt.Errorf("%w: sequence %d is past the end of the stream (%d)", bus.ErrNotFound, seq, info.State.LastSeq)
}

// stored converts a message read directly from a stream, the counterpart of fromNATS for
// messages no consumer delivered.
func stored(raw *jetstream.RawStreamMsg) bus.Stored {
	return bus.Stored{ID: strconv.FormatUint(raw.Sequence, 10), Message: fromHeaders(raw.Header, raw.Data), Time: raw.Time, Removable: true}
}

// fromHeaders does what fromNATS does for a header set and a body.
func fromHeaders(h nats.Header, data []byte) bus.Message {
	m := bus.Message{Value: data}
	for k, vs := range h {
		if len(vs) == 0 {
			continue
		}
		switch {
		case k == headerMsgID:
			m.ID = vs[0]
		case k == headerKey:
			if key, err := base64.StdEncoding.DecodeString(vs[0]); err == nil {
				m.Key = key
			}
		case strings.HasPrefix(strings.ToLower(k), "nats-"):
		default:
			if m.Headers == nil {
				m.Headers = make(map[string]string)
			}
			m.Headers[k] = vs[0]
		}
	}
	return m
}
