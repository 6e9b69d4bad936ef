// Package nats implements bus.Bus on NATS JetStream, Keel's default event bus, and can run a
// NATS server with JetStream inside the host process when no external server is configured.
//
// # Topics
//
// Each topic is one stream, because a stream is JetStream's unit of storage, retention and
// deduplication, and one stream per topic keeps those settings per topic as Kafka does. With the
// default namespace "keel", topic "orders.created" is stored in stream "KEEL_orders_created" and
// published on subject "keel.events.orders.created". Stream names cannot contain '.', so '.'
// becomes '_' and '_' becomes "_U", a mapping that never makes two topics collide. The namespace
// (WithNamespace) lets several environments share one server. Streams use file storage and
// limits retention (7 days by default): interest or work-queue retention would delete a message
// once the groups present have acknowledged it, and a plugin subscribing later would miss it.
// EnsureTopic creates or updates the topic's stream and its dead-letter topic's stream.
//
// # Partitions and ordering
//
// JetStream has no partitions, and this bridge ignores TopicSpec.Partitions rather than fake
// them. One subscription handles one message at a time in stream order, but a group with
// several subscribers (several hosts) shares the stream without key affinity, and a message
// handed back after an error is redelivered after the ones behind it. Per-key order across hosts
// is therefore not guaranteed; WithMaxAckPending(1) gives strict order per group at the cost of
// throughput. Message.Key travels in the Keel-Key header (base64) so it survives the round trip.
//
// # Consumer groups and acknowledgements
//
// A group is a durable pull consumer named after the group (with the same escaping), with
// explicit acknowledgement and DeliverAll, so a new group starts at the beginning of the
// retained stream. A message is acknowledged with a confirmed (double) ack after the handler
// returns nil; while the handler runs, progress acks every AckWait/3 stop the server from
// redelivering it, so AckWait (30s by default) only bounds how fast a crashed consumer's messages
// come back. After a handler error the message is negatively acknowledged with a delay that
// doubles per delivery (1s up to 1 minute by default). MaxDeliver is unlimited by default,
// because JetStream silently stops delivering a message that reaches it (only an advisory is
// emitted), which would lose it; bus.Retrying parks poison messages instead and uses the server's
// delivery count (Delivery.Attempt), so a message that keeps coming back is parked eventually.
//
// # Deduplication
//
// Message.ID is sent as the Nats-Msg-Id header. The server drops a message whose ID it has seen
// in the stream's duplicate window (2 minutes by default, WithDuplicateWindow), so an outbox
// relay that retries after a lost acknowledgement stores the event once. Duplicates outside the
// window, and redeliveries, still reach handlers.
//
// # Headers
//
// Headers are NATS headers. Names starting with "Nats-" and the name Keel-Key are reserved, and
// names and values must not contain line breaks; Publish rejects them.
//
// # Embedded server
//
// StartEmbedded runs nats-server in-process with JetStream storing under <dir>/nats, listening
// on 127.0.0.1 on a random port by default, so nothing is exposed to the network. Messages
// survive a restart of the host. Tests run against both an embedded server and the machine's
// NATS server (KEEL_TEST_NATS_URL, default nats://127.0.0.1:4222), which may be an older 2.9.
package nats
