package nats

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keelhq/keel/bridges/bus"
)

// Header names the bridge reserves on NATS messages.
const (
	headerMsgID = jetstream.MsgIDHeader // "Nats-Msg-Id": Message.ID, deduplicated by the server
	headerKey   = "Keel-Key"            // Message.Key, base64 because NATS headers are text
)

// Option configures Open.
type Option func(*config)

type config struct {
	logger        *slog.Logger
	names         naming
	replicas      int
	maxAge        time.Duration
	dupWindow     time.Duration
	ackWait       time.Duration
	maxDeliver    int
	maxAckPending int
	redeliverMin  time.Duration
	redeliverMax  time.Duration
	pollWait      time.Duration
	natsOpts      []nats.Option
	err           error
}

func defaults() config {
	return config{
		logger:        slog.New(slog.DiscardHandler),
		names:         naming{ns: "keel"},
		replicas:      1,
		maxAge:        7 * 24 * time.Hour,
		dupWindow:     2 * time.Minute,
		ackWait:       30 * time.Second,
		maxDeliver:    -1,
		maxAckPending: 1000,
		redeliverMin:  time.Second,
		redeliverMax:  time.Minute,
		pollWait:      time.Second,
	}
}

// WithLogger sets the logger for connection events and consumer errors; the default discards.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithNamespace prefixes every stream ("NS_topic") and subject ("ns.events.topic"), so several
// environments can share one server; the default is "keel". It must match [a-z0-9][a-z0-9-]{0,31}.
func WithNamespace(ns string) Option {
	return func(c *config) {
		if err := validNamespace(ns); err != nil {
			c.err = err
			return
		}
		c.names = naming{ns: ns}
	}
}

// WithReplicas sets the stream replica count for clustered servers; the default is 1.
func WithReplicas(n int) Option { return func(c *config) { c.replicas = max(n, 1) } }

// WithRetention sets how long a stream keeps messages, acknowledged or not; the default is 7
// days. Streams use limits retention so that every consumer group reads every message, and a
// group created later still finds what was published before it.
func WithRetention(d time.Duration) Option { return func(c *config) { c.maxAge = d } }

// WithDuplicateWindow sets how long the server remembers message IDs to drop duplicates; the
// default is 2 minutes, which covers an outbox relay retrying after a lost acknowledgement.
func WithDuplicateWindow(d time.Duration) Option { return func(c *config) { c.dupWindow = d } }

// WithAckWait sets how long the server waits for an acknowledgement before redelivering; the
// default is 30 seconds. A running handler keeps its message alive with progress
// acknowledgements, so AckWait bounds the time to detect a crashed consumer, not the handler time.
func WithAckWait(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.ackWait = d
		}
	}
}

// WithMaxDeliver caps how often the server delivers one message to a group; the default -1 means
// no cap. A capped message is silently dropped from the group's point of view (the server only
// emits an advisory), which would lose it; poison messages are parked by bus.Retrying instead,
// which also counts the server's redeliveries.
func WithMaxDeliver(n int) Option { return func(c *config) { c.maxDeliver = n } }

// WithMaxAckPending caps the unacknowledged messages of one group across all its subscribers;
// the default is 1000. Set it to 1 for strict ordering across hosts, at the cost of throughput.
func WithMaxAckPending(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.maxAckPending = n
		}
	}
}

// WithRedeliveryBackoff sets the delay of a negative acknowledgement after a handler error: initial
// on the first delivery, doubling per delivery up to limit. The defaults are 1s and 1 minute.
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

// WithPollWait sets how long one pull request waits for messages; the default is 1 second. It
// bounds how long Subscription.Close waits when no handler is running.
func WithPollWait(d time.Duration) Option {
	return func(c *config) {
		if d >= 10*time.Millisecond {
			c.pollWait = d
		}
	}
}

// WithConnectOptions passes options to nats.Connect, for credentials or TLS.
func WithConnectOptions(opts ...nats.Option) Option {
	return func(c *config) { c.natsOpts = append(c.natsOpts, opts...) }
}

// Bus is the JetStream implementation of bus.Bus.
type Bus struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	cfg config

	mu     sync.Mutex
	subs   map[*subscription]struct{}
	closed bool
}

var _ bus.Bus = (*Bus)(nil)

// Open connects to the NATS server at url (comma-separated URLs for a cluster) and checks that
// JetStream is enabled. The connection reconnects forever; ctx bounds only the initial connect.
func Open(ctx context.Context, url string, opts ...Option) (*Bus, error) {
	cfg := defaults()
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.err != nil {
		return nil, cfg.err
	}
	log := cfg.logger
	nopts := []nats.Option{
		nats.Name("keel"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats: disconnected", slog.Any("error", err))
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("nats: reconnected", slog.String("url", c.ConnectedUrlRedacted()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			subj := ""
			if s != nil {
				subj = s.Subject
			}
			log.Error("nats: async error", slog.String("subject", subj), slog.Any("error", err))
		}),
	}
	if dl, ok := ctx.Deadline(); ok {
		nopts = append(nopts, nats.Timeout(max(time.Until(dl), time.Millisecond)))
	}
	nopts = append(nopts, cfg.natsOpts...)
	nc, err := nats.Connect(url, nopts...)
	if err != nil {
		return nil, fmt.Errorf("nats: connect %s: %w", redact(url), err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats: jetstream: %w", err)
	}
	b := &Bus{nc: nc, js: js, cfg: cfg, subs: make(map[*subscription]struct{})}
	if err := b.Ping(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return b, nil
}

// redact drops user information from a URL list for error messages.
func redact(url string) string {
	parts := strings.Split(url, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if s := strings.Index(p, "://"); s >= 0 && s < at {
				parts[i] = p[:s+3] + "redacted" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}

// Ping checks the connection and that JetStream answers.
func (b *Bus) Ping(ctx context.Context) error {
	if !b.nc.IsConnected() {
		return fmt.Errorf("nats: ping: not connected (status %s)", b.nc.Status())
	}
	if _, err := b.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("nats: ping: jetstream: %w", err)
	}
	return nil
}

// EnsureTopic creates or updates the stream of spec.Name and of its dead-letter topic.
// Partitions are ignored: see the package documentation.
func (b *Bus) EnsureTopic(ctx context.Context, spec bus.TopicSpec) error {
	topics, err := bus.Topics(spec)
	if err != nil {
		return fmt.Errorf("nats: ensure topic: %w", err)
	}
	for _, t := range topics {
		maxAge := b.cfg.maxAge
		if bus.IsDLQ(t) && maxAge > 0 {
			// Parked messages wait for a person to look at them; keep them four times as
			// long as ordinary events (28 days by default) so a holiday does not lose them.
			maxAge *= 4
		}
		cfg := jetstream.StreamConfig{
			Name:        b.cfg.names.stream(t),
			Description: "keel topic " + t,
			Subjects:    []string{b.cfg.names.subject(t)},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    b.cfg.replicas,
			MaxAge:      maxAge,
			Duplicates:  b.cfg.dupWindow,
			Discard:     jetstream.DiscardOld,
		}
		if _, err := b.js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("nats: ensure topic %s (stream %s): %w", t, cfg.Name, err)
		}
	}
	return nil
}

// Publish stores msgs in the topic's stream and waits for every acknowledgement. A message whose
// ID the server has seen within the duplicate window is acknowledged but not stored again.
func (b *Bus) Publish(ctx context.Context, topic string, msgs ...bus.Message) error {
	if err := bus.ValidateName(topic); err != nil {
		return fmt.Errorf("nats: publish: %w", err)
	}
	stream, subject := b.cfg.names.stream(topic), b.cfg.names.subject(topic)
	if len(msgs) == 1 {
		nm, opts, err := b.toNATS(subject, stream, msgs[0])
		if err != nil {
			return fmt.Errorf("nats: publish %s: %w", topic, err)
		}
		if _, err := b.js.PublishMsg(ctx, nm, opts...); err != nil {
			return fmt.Errorf("nats: publish %s: %w", topic, err)
		}
		return nil
	}
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for i, m := range msgs {
		nm, opts, err := b.toNATS(subject, stream, m)
		if err != nil {
			return fmt.Errorf("nats: publish %s: message %d: %w", topic, i, err)
		}
		f, err := b.js.PublishMsgAsync(nm, opts...)
		if err != nil {
			return fmt.Errorf("nats: publish %s: message %d: %w", topic, i, err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("nats: publish %s: message %d: %w", topic, i, err)
		case <-ctx.Done():
			return fmt.Errorf("nats: publish %s: waiting for acknowledgement %d of %d: %w", topic, i+1, len(futures), context.Cause(ctx))
		}
	}
	return nil
}

func (b *Bus) toNATS(subject, stream string, m bus.Message) (*nats.Msg, []jetstream.PublishOpt, error) {
	nm := &nats.Msg{Subject: subject, Data: m.Value}
	if len(m.Headers) > 0 || m.Key != nil {
		nm.Header = make(nats.Header, len(m.Headers)+1)
	}
	for k, v := range m.Headers {
		if err := checkHeader(k, v); err != nil {
			return nil, nil, err
		}
		nm.Header[k] = []string{v}
	}
	if m.Key != nil {
		nm.Header[headerKey] = []string{base64.StdEncoding.EncodeToString(m.Key)}
	}
	opts := []jetstream.PublishOpt{jetstream.WithExpectStream(stream)}
	if m.ID != "" {
		if strings.ContainsAny(m.ID, "\r\n") {
			return nil, nil, errors.New("message id contains a line break")
		}
		opts = append(opts, jetstream.WithMsgID(m.ID))
	}
	return nm, opts, nil
}

// checkHeader rejects headers NATS cannot carry as text and names the server or bridge interpret.
func checkHeader(k, v string) error {
	if k == "" || strings.ContainsAny(k, " \t\r\n:") {
		return fmt.Errorf("invalid header name %q", k)
	}
	if strings.ContainsAny(v, "\r\n") {
		return fmt.Errorf("header %q: value contains a line break", k)
	}
	if strings.HasPrefix(strings.ToLower(k), "nats-") || strings.EqualFold(k, headerKey) {
		return fmt.Errorf("header %q is reserved", k)
	}
	return nil
}

// fromNATS converts a stored message back; reserved headers are moved into their fields.
func fromNATS(msg jetstream.Msg) bus.Message {
	m := bus.Message{Value: msg.Data()}
	for k, vs := range msg.Headers() {
		switch {
		case k == headerMsgID:
			if len(vs) > 0 {
				m.ID = vs[0]
			}
		case k == headerKey:
			if len(vs) > 0 {
				if key, err := base64.StdEncoding.DecodeString(vs[0]); err == nil {
					m.Key = key
				}
			}
		case strings.HasPrefix(strings.ToLower(k), "nats-"):
		default:
			if len(vs) > 0 {
				if m.Headers == nil {
					m.Headers = make(map[string]string)
				}
				m.Headers[k] = vs[0]
			}
		}
	}
	return m
}

// Close closes the subscriptions still open (gracefully, waiting for their handlers), then
// drains the connection so buffered publishes and acknowledgements are flushed.
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
	for _, s := range subs {
		_ = s.Close() // never fails
	}
	done := make(chan struct{})
	b.nc.SetClosedHandler(func(*nats.Conn) { close(done) })
	if err := b.nc.Drain(); err != nil {
		b.nc.Close()
		return fmt.Errorf("nats: close: %w", err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		b.nc.Close()
	}
	return nil
}
