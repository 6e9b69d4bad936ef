// Package kafka implements bus.Bus on Kafka with segmentio/kafka-go, used when
// KEEL_KAFKA_BROKERS is set.
//
// # Topics
//
// A bus topic is the Kafka topic of the same name, and its dead-letter topic is name + ".dlq"
// with the same partition count. EnsureTopic creates both with CreateTopics and treats "already
// exists" as success; it does not change the partition count of an existing topic. The
// replication factor defaults to the broker's default (-1). Creating a topic also refreshes
// kafka-go's metadata cache, so Publish works as soon as EnsureTopic has returned; a topic
// created by another host without EnsureTopic here becomes visible within 10 seconds.
//
// # Publishing
//
// One kafka.Writer is shared by every Publish call and closed by Close. It writes synchronously
// with acks=all, so Publish returns only when every in-sync replica has the messages, and fails
// (after a few attempts, bounded by the context) when no broker is reachable: nothing is dropped
// silently. Messages with a key are placed with murmur2(key), the Java client's partitioner, so
// producers in other languages put the same key on the same partition and per-key order holds;
// keyless messages are spread at random. kafka-go has no idempotent producer, so a retried
// produce can store a message twice; Message.ID, carried in the "keel-id" header, lets consumers
// recognise the copy.
//
// # Consumer groups and commits
//
// Subscribe runs a kafka-go Reader in the consumer group and reads with FetchMessage, never
// ReadMessage, and with auto-commit off: the offset is committed synchronously, one message at a
// time, only after the handler returns nil. A new group starts at the earliest offset so it sees
// events published before it existed (WithStartAtEnd changes that). kafka-go cannot seek a group
// reader, so after a handler error the same message is retried in place with a growing delay,
// and nothing behind it is processed meanwhile; the partition's order holds. Delivery.Attempt
// counts those in-place retries: Kafka keeps no delivery count, so after a restart or rebalance
// a redelivered message starts again at 1.
//
// # Deduplication
//
// Kafka does not deduplicate. Consumers that must not see a message twice wrap their handler in
// bus.Deduplicating (best effort, in memory) or record processed IDs in their own transaction.
//
// # Known limits
//
// A handler that fails for a long time keeps retrying a message even if a rebalance has moved
// its partition to another member meanwhile; that member processes it too, and the late commit
// can move the group's offset back, which causes duplicates, never loss. One synchronous commit
// per message makes the commit round trip the bound on a subscription's throughput.
package kafka
