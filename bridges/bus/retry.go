package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// Headers Retrying sets on a dead-lettered message, next to the original headers.
const (
	HeaderDLQError    = "keel-dlq-error"    // the last handler error text
	HeaderDLQTopic    = "keel-dlq-topic"    // the topic the message was consumed from
	HeaderDLQGroup    = "keel-dlq-group"    // the consumer group that gave up
	HeaderDLQAttempts = "keel-dlq-attempts" // how many attempts were made, decimal
	HeaderDLQTime     = "keel-dlq-time"     // when the message was parked, RFC 3339 UTC
)

// RetryPolicy says how often and how fast Retrying retries a failing handler.
type RetryPolicy struct {
	// MaxAttempts is the total number of attempts, the first one included, counted from the
	// broker's delivery attempt; values below 1 mean 1.
	MaxAttempts int
	// InitialBackoff is the wait before the second attempt; it doubles for each further one.
	InitialBackoff time.Duration
	// MaxBackoff caps the wait between two attempts.
	MaxBackoff time.Duration
	// Jitter in [0,1] is the fraction of each wait that is randomised downwards, so that many
	// consumers failing together do not retry in lockstep. 0 disables it.
	Jitter float64
}

// DefaultRetryPolicy returns 5 attempts with waits of 200ms, 400ms, 800ms, 1.6s and 20% jitter:
// enough to ride out a deadlock or a brief database fail-over, short enough that one poison
// message holds its partition back by seconds, not minutes.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxAttempts: 5, InitialBackoff: 200 * time.Millisecond, MaxBackoff: 5 * time.Second, Jitter: 0.2}
}

// backoff returns the wait after the given failed attempt (1-based, counted in this process).
func (p RetryPolicy) backoff(n int) time.Duration {
	d := p.InitialBackoff
	if d <= 0 {
		return 0
	}
	for i := 1; i < n && (p.MaxBackoff <= 0 || d < p.MaxBackoff); i++ {
		d *= 2
	}
	if p.MaxBackoff > 0 && d > p.MaxBackoff {
		d = p.MaxBackoff
	}
	if j := min(max(p.Jitter, 0), 1); j > 0 {
		d -= time.Duration(rand.Float64() * j * float64(d))
	}
	return d
}

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying, for example a message that cannot be decoded:
// Retrying then dead-letters the message after the first attempt.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// Invoke calls h and turns a panic into an error, so that one faulty handler cannot kill a
// consumer goroutine and the message is treated as not processed.
func Invoke(ctx context.Context, h Handler, d Delivery) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bus: handler panic on %s: %v\n%s", d.Topic, r, debug.Stack())
		}
	}()
	return h(ctx, d)
}

// RetryOption configures Retrying.
type RetryOption func(*retryConfig)

type retryConfig struct {
	logger  *slog.Logger
	metrics *Metrics
}

// WithLogger sets the logger for retries and dead letters; the default discards.
func WithLogger(l *slog.Logger) RetryOption {
	return func(c *retryConfig) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithMetrics counts deliveries, retries and dead letters in m.
func WithMetrics(m *Metrics) RetryOption { return func(c *retryConfig) { c.metrics = m } }

// Retrying wraps h with in-process retries and a dead-letter queue.
//
// When h fails, Retrying waits with exponential backoff and calls it again, until it succeeds,
// the policy's attempts are used up, or ctx ends. Retrying in-process, rather than handing the
// message back to the broker, keeps the order of a Kafka partition: nothing behind the failing
// message is processed before it. After the last attempt the message is published to
// topic+".dlq" with the Header* headers describing the failure, and Retrying returns nil so that
// the original is acknowledged and later messages keep flowing. If that publish fails, or ctx
// ends first, the error is returned and the broker delivers the message again: nothing is lost.
//
// A redelivered message (Delivery.Attempt > 1) only gets the attempts the policy has left, so
// a message that keeps coming back is parked eventually rather than retried forever.
func Retrying(h Handler, p RetryPolicy, dlq Publisher, opts ...RetryOption) Handler {
	cfg := retryConfig{logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&cfg)
	}
	if p.MaxAttempts < 1 {
		p.MaxAttempts = 1
	}
	return func(ctx context.Context, d Delivery) error {
		attempt := max(d.Attempt, 1)
		last := max(attempt, p.MaxAttempts)
		local := 0 // attempts made by this call
		for {
			local++
			dd := d
			dd.Attempt = attempt
			err := Invoke(ctx, h, dd)
			if err == nil {
				cfg.metrics.delivered(d)
				return nil
			}
			if ctx.Err() != nil {
				cfg.metrics.failed(d)
				return fmt.Errorf("bus: %s: stopped retrying after attempt %d: %w (last error: %w)", d.Topic, attempt, context.Cause(ctx), err)
			}
			if attempt >= last || IsPermanent(err) {
				return deadLetter(ctx, cfg, dlq, dd, err)
			}
			wait := p.backoff(local)
			cfg.logger.LogAttrs(ctx, slog.LevelWarn, "bus: handler failed, retrying",
				slog.String("topic", d.Topic), slog.String("group", d.Group), slog.String("id", d.ID),
				slog.Int("attempt", attempt), slog.Duration("backoff", wait), slog.Any("error", err))
			cfg.metrics.retried(d)
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				cfg.metrics.failed(d)
				return fmt.Errorf("bus: %s: stopped retrying after attempt %d: %w (last error: %w)", d.Topic, attempt, context.Cause(ctx), err)
			case <-t.C:
			}
			attempt++
		}
	}
}

func deadLetter(ctx context.Context, cfg retryConfig, dlq Publisher, d Delivery, cause error) error {
	topic := DLQTopic(d.Topic)
	if IsDLQ(d.Topic) {
		// A dead-letter topic has no dead-letter topic of its own: give the message back.
		cfg.metrics.failed(d)
		return fmt.Errorf("bus: %s: handler failed on a dead-letter topic after %d attempts: %w", d.Topic, d.Attempt, cause)
	}
	h := make(map[string]string, len(d.Headers)+5)
	for k, v := range d.Headers {
		h[k] = v
	}
	// Header values cannot carry line breaks (NATS refuses them), and a handler's
	// error text may contain some: a refused dead letter would be redelivered forever.
	h[HeaderDLQError] = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(cause.Error())
	h[HeaderDLQTopic] = d.Topic
	h[HeaderDLQGroup] = d.Group
	h[HeaderDLQAttempts] = strconv.Itoa(d.Attempt)
	h[HeaderDLQTime] = time.Now().UTC().Format(time.RFC3339Nano)
	m := Message{ID: dlqID(d), Key: d.Key, Value: d.Value, Headers: h}
	if dlq == nil {
		cfg.metrics.failed(d)
		return fmt.Errorf("bus: %s: no dead-letter publisher after %d attempts: %w", d.Topic, d.Attempt, cause)
	}
	if err := dlq.Publish(ctx, topic, m); err != nil {
		cfg.metrics.failed(d)
		cfg.logger.LogAttrs(ctx, slog.LevelError, "bus: dead-letter publish failed, message stays unacknowledged",
			slog.String("topic", d.Topic), slog.String("group", d.Group), slog.String("id", d.ID), slog.Any("error", err))
		return fmt.Errorf("bus: %s: dead-letter publish to %s failed: %w (handler error: %w)", d.Topic, topic, err, cause)
	}
	cfg.metrics.deadLettered(d)
	cfg.logger.LogAttrs(ctx, slog.LevelError, "bus: message dead-lettered",
		slog.String("topic", d.Topic), slog.String("group", d.Group), slog.String("id", d.ID),
		slog.Int("attempts", d.Attempt), slog.Any("error", cause))
	return nil
}

// dlqID keeps a re-parked message deduplicated while letting two groups that both gave up on the
// same event park one copy each.
func dlqID(d Delivery) string {
	if d.ID == "" {
		return ""
	}
	if d.Group == "" {
		return d.ID
	}
	return d.ID + "@" + d.Group
}
