// Package bus defines the event bus that Keel's brokers implement and the delivery logic that
// does not depend on the broker.
//
// The host provisions one topic per declared event type with EnsureTopic, which also creates the
// topic's dead-letter topic (name + ".dlq"), publishes outbox rows with Publish, and runs one
// consumer group per subscribing plugin with Subscribe. Two implementations exist:
// bridges/nats (JetStream, the embedded default) and bridges/kafka (segmentio/kafka-go, when
// KEEL_KAFKA_BROKERS is set). Code above the bus never sees broker types, so a deployment can
// move between them.
//
// # Delivery guarantees
//
// Delivery is at least once. Publish returns only after the broker has stored every message.
// A message is acknowledged (NATS) or its offset committed (Kafka) only after the handler has
// returned nil; anything else - an error, a panic, a crash, a cancelled context - leaves it
// unacknowledged, and the broker delivers it again. Handlers must therefore be idempotent, or
// deduplicate by Message.ID: NATS drops duplicate IDs at publish time within its duplicate
// window, Kafka does not, and Deduplicating offers a best-effort in-process filter for both.
//
// # Retries and dead letters
//
// Retrying wraps a handler with bounded in-process retries and exponential backoff, then parks
// the message in the dead-letter topic and acknowledges the original, so one poison message
// does not stop its topic. Retries happen in-process, rather than by handing the message back
// to the broker, because that is the only way Kafka keeps a partition's order: a message handed
// back is re-read only after a rebalance, and everything behind it would be processed first.
// A dead letter carries the original key, value and headers plus the Header* headers saying
// what failed, where and when; its ID is the original ID suffixed with "@group", so two groups
// failing on the same event park one copy each. If the dead-letter publish fails, Retrying
// returns the error and the original stays unacknowledged: a message is never dropped.
//
// # Names
//
// Topic and group names match [a-z0-9][a-z0-9._-]{0,200} without empty dot-separated parts,
// the intersection of what Kafka topic names and NATS subjects allow; see ValidateName.
//
// # Lifetimes
//
// The context given to Subscribe bounds the subscription: cancelling it is a hard stop, the
// handler's context is cancelled and its message goes back to the broker. Subscription.Close is
// the graceful stop a hot swap needs: no new messages are taken, the in-flight handler runs to
// completion and is acknowledged, then Close returns.
package bus
