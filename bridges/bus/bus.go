package bus

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// DLQSuffix is appended to a topic name to form the name of its dead-letter topic.
const DLQSuffix = ".dlq"

// Message is one event as the bus carries it.
type Message struct {
	// ID is the deduplication key, normally the event id. NATS carries it in the Nats-Msg-Id header
	// (the server drops duplicates within the stream's duplicate window); Kafka carries it in the
	// "keel-id" header (Kafka does not deduplicate, consumers must, see Deduplicating).
	ID string
	// Key is the partition or ordering key; it may be nil.
	Key []byte
	// Value is the encoded event envelope; it is opaque to the bus.
	Value []byte
	// Headers are application headers; the bridges reserve a few names, see their package docs.
	Headers map[string]string
}

// Delivery is a Message as it reaches a Handler.
type Delivery struct {
	// Topic is the topic the message was consumed from.
	Topic string
	// Group is the consumer group the message was delivered to.
	Group string
	Message
	// Attempt is 1 on the first delivery and grows on redeliveries, as far as the broker tells:
	// JetStream counts deliveries on the server, Kafka has no such counter, so the Kafka bridge
	// counts redeliveries within one process only.
	Attempt int
}

// Handler processes one delivery. Returning nil acknowledges (NATS) or commits (Kafka) the
// message; an error means "not processed" and the message will be delivered again.
type Handler func(ctx context.Context, d Delivery) error

// TopicSpec describes a topic to provision.
type TopicSpec struct {
	// Name must satisfy ValidateName.
	Name string
	// Partitions is the number of Kafka partitions; values below 1 mean 1. JetStream has no
	// partitions and ignores it.
	Partitions int
}

// Publisher is the publishing half of a Bus; Retrying needs only this to write dead letters.
type Publisher interface {
	// Publish returns only after the broker has acknowledged every message durably.
	Publish(ctx context.Context, topic string, msgs ...Message) error
}

// Bus is the event bus both brokers implement. Delivery is at least once: handlers must be
// idempotent or deduplicate by Message.ID.
type Bus interface {
	Publisher
	// EnsureTopic creates the topic and its dead-letter topic Name+".dlq"; it is idempotent.
	// A name that already ends in ".dlq" gets no dead-letter topic of its own.
	EnsureTopic(ctx context.Context, spec TopicSpec) error
	// Subscribe starts a consumer-group consumer. The handler is called for one message at a
	// time per subscription, and the message is acknowledged or committed only after the
	// handler returns nil. Cancelling ctx stops the subscription hard: the in-flight handler
	// sees the cancellation, and an unacknowledged message is delivered again later. Close stops
	// it gracefully.
	Subscribe(ctx context.Context, topic, group string, h Handler) (Subscription, error)
	// Ping reports whether the broker is reachable, for readiness checks.
	Ping(ctx context.Context) error
	// Close closes the subscriptions still open, gracefully, then releases connections and
	// shared writers.
	Close() error
}

// Subscription is a running consumer.
type Subscription interface {
	// Close stops consuming and waits for the in-flight handler to return and its message to be
	// acknowledged; it does not cancel the handler's context. It is safe to call more than once.
	Close() error
}

// ErrInvalidName is returned (wrapped) for topic and group names that ValidateName rejects.
var ErrInvalidName = errors.New("invalid name")

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,200}$`)

// ValidateName checks a topic or consumer-group name. Names match [a-z0-9][a-z0-9._-]{0,200}
// and, because NATS subjects cannot have empty tokens, must not end in '.' or contain "..".
// The rule is the intersection of what Kafka and NATS accept, so a deployment can move from
// one broker to the other without renaming anything.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
		return fmt.Errorf("%w %q: want [a-z0-9][a-z0-9._-]{0,200} without empty dot-separated parts", ErrInvalidName, name)
	}
	return nil
}

// DLQTopic returns the dead-letter topic of topic.
func DLQTopic(topic string) string { return topic + DLQSuffix }

// IsDLQ reports whether topic is a dead-letter topic.
func IsDLQ(topic string) bool { return strings.HasSuffix(topic, DLQSuffix) }

// Topics returns the topic names EnsureTopic must create for spec: the topic itself and, unless
// it is a dead-letter topic already, its dead-letter topic. Bridges use it so both brokers agree.
func Topics(spec TopicSpec) ([]string, error) {
	if err := ValidateName(spec.Name); err != nil {
		return nil, err
	}
	if IsDLQ(spec.Name) {
		return []string{spec.Name}, nil
	}
	return []string{spec.Name, DLQTopic(spec.Name)}, nil
}
