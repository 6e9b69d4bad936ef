package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors an Inspector returns, wrapped.
var (
	// ErrUnsupported means the broker cannot do what was asked, for example remove a message
	// from the middle of a Kafka partition. Callers show it to the operator as it is.
	ErrUnsupported = errors.New("not supported by this broker")
	// ErrNotFound means no message was ever stored at that position: the id is malformed,
	// names a partition that does not exist, or lies beyond the end of the topic.
	ErrNotFound = errors.New("no such message")
	// ErrGone means a message was stored at that position but is not any more: it was removed
	// (replayed or discarded) or retention expired it. Replay and discard treat it as done,
	// which makes both idempotent.
	ErrGone = errors.New("message no longer stored")
)

// Headers a replayed message carries, next to its original headers (the HeaderDLQ* ones are
// dropped when a message is replayed).
const (
	// HeaderReplayedFrom is "<dead-letter topic>/<Stored.ID>" of the parked copy.
	HeaderReplayedFrom = "keel-replayed-from"
	// HeaderReplayGroup is the consumer group that gave up on the message. A replay goes to
	// the original topic, so every group subscribed to it receives the message again; a
	// consumer that wants to spare the groups that had succeeded can skip deliveries whose
	// HeaderReplayGroup is set and names another group.
	HeaderReplayGroup = "keel-replay-group"
)

// Inspector is implemented by buses that let an operator look into topics: how many messages
// they hold, how far behind each consumer group is, and what sits in a dead-letter topic. It is
// optional, separate from Bus, because it serves the admin dashboard rather than the data path,
// and because what a broker can tell differs (see the field comments). Both bridges implement
// it; use a type assertion.
type Inspector interface {
	// TopicStats reports topic's size and, for each of groups, its backlog. A topic that does
	// not exist yet is reported with Exists false rather than as an error.
	TopicStats(ctx context.Context, topic string, groups []string) (TopicStats, error)
	// Peek returns up to limit of the oldest messages still stored in topic, oldest first. It
	// does not consume them: no consumer group's position moves.
	Peek(ctx context.Context, topic string, limit int) ([]Stored, error)
	// Get returns the message stored at id (a Stored.ID from Peek); ErrNotFound or ErrGone
	// when there is none.
	Get(ctx context.Context, topic, id string) (Stored, error)
	// Remove deletes the message stored at id from topic, for dead-letter topics whose
	// messages were replayed or discarded. ErrGone when it was removed already;
	// ErrUnsupported when the broker cannot delete that message (see Stored.Removable).
	Remove(ctx context.Context, topic, id string) error
}

// TopicStats is a topic's size and its consumer groups' backlogs.
type TopicStats struct {
	Topic string
	// Exists is false when the broker does not have the topic (yet).
	Exists bool
	// Messages is the number of messages the broker stores for the topic. Brokers keep
	// messages after they were consumed (for a retention period), so for a normal topic this
	// is history, not backlog; for a dead-letter topic it is what is parked.
	Messages int64
	// Partitions is the Kafka partition count; 1 on JetStream.
	Partitions int
	// Groups has one entry per group asked for, in the order asked.
	Groups []GroupStats
}

// GroupStats is one consumer group's position on a topic.
type GroupStats struct {
	Group string
	// Known is true when the broker has state for the group: a JetStream durable consumer, or
	// committed Kafka offsets. An unknown group starts from the oldest stored message.
	Known bool
	// Lag is the number of stored messages the group has not finished: not delivered yet, or
	// delivered and not acknowledged (JetStream); after the last committed offset (Kafka).
	Lag int64
	// Pending is the part of Lag delivered to a consumer and not acknowledged yet, or -1 when
	// the broker cannot tell (Kafka, which tracks only committed offsets).
	Pending int64
}

// Stored is a message as a broker stores it.
type Stored struct {
	// ID is the broker position, opaque to callers: the stream sequence on JetStream ("42"),
	// partition and offset on Kafka ("0-17").
	ID string
	Message
	// Time is when the broker stored the message.
	Time time.Time
	// Removable reports whether Remove can delete this message: always on JetStream; on Kafka
	// only for the oldest message of its partition, because Kafka deletes records only as a
	// prefix of the partition.
	Removable bool
}

// replayMark separates an event id from the replay suffix ReplayOf adds.
const replayMark = "~replay-"

// ReplayOf returns what to publish to replay s, a message parked in the dead-letter topic
// dlqTopic: the original topic, and the original key, value and headers without the
// HeaderDLQ* ones, marked with HeaderReplayedFrom and HeaderReplayGroup.
//
// The message ID is the original event id with a suffix naming the parked copy. It differs
// from the original ID, because JetStream would drop a replay published within its duplicate
// window of the original as a duplicate; and it is the same for every replay of one parked
// copy, so a replay retried after a failure is dropped as a duplicate by JetStream (Kafka
// delivers it twice: handlers are idempotent anyway). A message parked again after a replay
// does not grow a longer ID on each round.
func ReplayOf(dlqTopic string, s Stored) (topic string, m Message, err error) {
	if !IsDLQ(dlqTopic) {
		return "", Message{}, fmt.Errorf("bus: replay: %q is not a dead-letter topic", dlqTopic)
	}
	group := s.Headers[HeaderDLQGroup]
	h := make(map[string]string, len(s.Headers))
	for k, v := range s.Headers {
		if !strings.HasPrefix(k, "keel-dlq-") && k != HeaderReplayGroup {
			h[k] = v
		}
	}
	h[HeaderReplayedFrom] = dlqTopic + "/" + s.ID
	if group != "" {
		h[HeaderReplayGroup] = group
	}
	base := s.Message.ID
	if group != "" {
		base = strings.TrimSuffix(base, "@"+group)
	}
	if i := strings.Index(base, replayMark); i >= 0 {
		base = base[:i]
	}
	m = Message{ID: base + replayMark + s.ID, Key: s.Key, Value: s.Value, Headers: h}
	return strings.TrimSuffix(dlqTopic, DLQSuffix), m, nil
}
