package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/keelhq/keel/bridges/bus"
)

// headerID carries Message.ID; Kafka has no native message id.
const headerID = "keel-id"

// Option configures Open.
type Option func(*config)

type config struct {
	logger         *slog.Logger
	replication    int
	writeAttempts  int
	batchTimeout   time.Duration
	redeliverMin   time.Duration
	redeliverMax   time.Duration
	sessionTimeout time.Duration
	dialTimeout    time.Duration
	startOffset    int64
}

func defaults() config {
	return config{
		logger:         slog.New(slog.DiscardHandler),
		replication:    -1,
		writeAttempts:  5,
		batchTimeout:   5 * time.Millisecond,
		redeliverMin:   time.Second,
		redeliverMax:   time.Minute,
		sessionTimeout: 30 * time.Second,
		dialTimeout:    5 * time.Second,
		startOffset:    kafka.FirstOffset,
	}
}

// WithLogger sets the logger for client and consumer errors; the default discards.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithReplicationFactor sets the replication factor of created topics; the default -1 takes
// the broker's default.replication.factor.
func WithReplicationFactor(n int) Option { return func(c *config) { c.replication = n } }

// WithWriteAttempts sets how many times the writer tries a produce request before Publish fails;
// the default is 5. The context passed to Publish bounds the total time as well.
func WithWriteAttempts(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.writeAttempts = n
		}
	}
}

// WithRedeliveryBackoff sets the wait before the same message is handed to a failing handler
// again: initial after the first failure, doubling up to limit. The defaults are 1s and 1 minute.
func WithRedeliveryBackoff(initial, limit time.Duration) Option {
	return func(c *config) {
		if initial > 0 {
			c.redeliverMin = initial
		}
		if limit >= c.redeliverMin {
			c.redeliverMax = limit
		}
	}
}

// WithSessionTimeout sets the consumer-group session timeout, the time after which a silent
// member loses its partitions; the default is 30 seconds.
func WithSessionTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.sessionTimeout = d
		}
	}
}

// WithStartAtEnd makes a consumer group that has no committed offset yet start at the end of the
// topic instead of the beginning. The default is the beginning, so that a group created after
// events were published still sees them.
func WithStartAtEnd() Option { return func(c *config) { c.startOffset = kafka.LastOffset } }

// Bus is the Kafka implementation of bus.Bus.
type Bus struct {
	brokers   []string
	cfg       config
	transport *kafka.Transport
	client    *kafka.Client
	writer    *kafka.Writer

	mu     sync.Mutex
	subs   map[*subscription]struct{}
	closed bool
}

var _ bus.Bus = (*Bus)(nil)

// Open prepares a bus for the given bootstrap brokers ("host:port"). It does not dial: call Ping
// to check the cluster. One writer is shared by every Publish call.
func Open(brokers []string, opts ...Option) (*Bus, error) {
	if len(brokers) == 0 {
		return nil, errors.New("kafka: open: no brokers")
	}
	for _, b := range brokers {
		if strings.TrimSpace(b) == "" || !strings.Contains(b, ":") {
			return nil, fmt.Errorf("kafka: open: broker %q: want host:port", b)
		}
	}
	cfg := defaults()
	for _, o := range opts {
		o(&cfg)
	}
	transport := &kafka.Transport{
		ClientID:    "keel",
		DialTimeout: cfg.dialTimeout,
		MetadataTTL: 10 * time.Second, // bounds how long a topic created by another host is unknown to Publish here
	}
	addr := kafka.TCP(brokers...)
	b := &Bus{
		brokers:   append([]string(nil), brokers...),
		cfg:       cfg,
		transport: transport,
		client:    &kafka.Client{Addr: addr, Timeout: 10 * time.Second, Transport: transport},
		writer: &kafka.Writer{
			Addr:                   addr,
			Balancer:               kafka.Murmur2Balancer{},
			RequiredAcks:           kafka.RequireAll,
			MaxAttempts:            cfg.writeAttempts,
			WriteBackoffMin:        100 * time.Millisecond,
			WriteBackoffMax:        time.Second,
			BatchTimeout:           cfg.batchTimeout,
			Async:                  false,
			AllowAutoTopicCreation: false,
			Transport:              transport,
			ErrorLogger:            kafkaLogger(cfg.logger, slog.LevelWarn),
		},
		subs: make(map[*subscription]struct{}),
	}
	return b, nil
}

// kafkaLogger adapts slog to kafka-go's Printf-style logger.
func kafkaLogger(l *slog.Logger, level slog.Level) kafka.LoggerFunc {
	return func(format string, args ...any) {
		if l.Enabled(context.Background(), level) {
			l.Log(context.Background(), level, "kafka-go: "+fmt.Sprintf(format, args...))
		}
	}
}

// Ping makes a round trip to a broker. It asks for API versions rather than metadata because
// kafka-go answers metadata requests from a cache that can outlive the broker by a refresh period.
func (b *Bus) Ping(ctx context.Context) error {
	res, err := b.client.ApiVersions(ctx, &kafka.ApiVersionsRequest{})
	if err != nil {
		return fmt.Errorf("kafka: ping: %w", err)
	}
	if res.Error != nil {
		return fmt.Errorf("kafka: ping: %w", res.Error)
	}
	return nil
}

// EnsureTopic creates the topic and its dead-letter topic with spec.Partitions partitions each
// (at least 1). An existing topic is left as it is, including its partition count.
func (b *Bus) EnsureTopic(ctx context.Context, spec bus.TopicSpec) error {
	names, err := bus.Topics(spec)
	if err != nil {
		return fmt.Errorf("kafka: ensure topic: %w", err)
	}
	parts := max(spec.Partitions, 1)
	req := &kafka.CreateTopicsRequest{}
	for _, n := range names {
		tc := kafka.TopicConfig{Topic: n, NumPartitions: parts, ReplicationFactor: b.cfg.replication}
		if bus.IsDLQ(n) {
			// Parked messages wait for a person: keep dead-letter topics 28 days (the
			// broker default for ordinary topics is usually 7).
			tc.ConfigEntries = []kafka.ConfigEntry{{ConfigName: "retention.ms", ConfigValue: "2419200000"}}
		}
		req.Topics = append(req.Topics, tc)
	}
	res, err := b.client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("kafka: ensure topic %s: %w", spec.Name, err)
	}
	for _, n := range names {
		if err := res.Errors[n]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			return fmt.Errorf("kafka: ensure topic %s: %w", n, err)
		}
	}
	return nil
}

// Publish writes msgs to topic and returns after every in-sync replica has acknowledged them.
// Messages with a key go to the partition murmur2(key) selects, as the Java client does, so
// events of one key stay in order; messages without a key are spread at random.
func (b *Bus) Publish(ctx context.Context, topic string, msgs ...bus.Message) error {
	if err := bus.ValidateName(topic); err != nil {
		return fmt.Errorf("kafka: publish: %w", err)
	}
	if len(msgs) == 0 {
		return nil
	}
	km := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		k, err := toKafka(topic, m)
		if err != nil {
			return fmt.Errorf("kafka: publish %s: message %d: %w", topic, i, err)
		}
		km[i] = k
	}
	if err := b.writer.WriteMessages(ctx, km...); err != nil {
		return fmt.Errorf("kafka: publish %s: %w", topic, err)
	}
	return nil
}

func toKafka(topic string, m bus.Message) (kafka.Message, error) {
	k := kafka.Message{Topic: topic, Key: m.Key, Value: m.Value}
	if len(m.Headers) > 0 || m.ID != "" {
		k.Headers = make([]kafka.Header, 0, len(m.Headers)+1)
	}
	for name, v := range m.Headers {
		if name == "" {
			return k, errors.New("empty header name")
		}
		if name == headerID {
			return k, fmt.Errorf("header %q is reserved for Message.ID", name)
		}
		k.Headers = append(k.Headers, kafka.Header{Key: name, Value: []byte(v)})
	}
	if m.ID != "" {
		k.Headers = append(k.Headers, kafka.Header{Key: headerID, Value: []byte(m.ID)})
	}
	return k, nil
}

func fromKafka(k kafka.Message) bus.Message {
	m := bus.Message{Key: k.Key, Value: k.Value}
	for _, h := range k.Headers {
		if h.Key == headerID {
			m.ID = string(h.Value)
			continue
		}
		if m.Headers == nil {
			m.Headers = make(map[string]string, len(k.Headers))
		}
		m.Headers[h.Key] = string(h.Value)
	}
	return m
}

// Close closes the subscriptions still open (gracefully, waiting for their handlers), then
// flushes and closes the shared writer and the idle connections.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	subs := make([]*subscription, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	var errs []error
	for _, s := range subs {
		errs = append(errs, s.Close())
	}
	if err := b.writer.Close(); err != nil {
		errs = append(errs, fmt.Errorf("kafka: close writer: %w", err))
	}
	b.transport.CloseIdleConnections()
	return errors.Join(errs...)
}
