package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keelhq/keel/bridges/bus"
)

// Subscribe creates or updates the durable pull consumer named after group on the topic's stream
// and starts fetching from it. Each message is passed to h and acknowledged (with a server
// confirmation) after h returns nil; after an error it is negatively acknowledged with a delay
// that grows with the delivery count. While h runs, the message is kept alive with progress
// acknowledgements so a slow handler is not mistaken for a dead one.
func (b *Bus) Subscribe(ctx context.Context, topic, group string, h bus.Handler) (bus.Subscription, error) {
	if err := bus.ValidateName(topic); err != nil {
		return nil, fmt.Errorf("nats: subscribe: %w", err)
	}
	if err := bus.ValidateName(group); err != nil {
		return nil, fmt.Errorf("nats: subscribe %s: group: %w", topic, err)
	}
	if h == nil {
		return nil, fmt.Errorf("nats: subscribe %s: nil handler", topic)
	}
	stream := b.cfg.names.stream(topic)
	cc := jetstream.ConsumerConfig{
		Durable:       b.cfg.names.durable(group),
		Description:   "keel group " + group,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       b.cfg.ackWait,
		MaxDeliver:    b.cfg.maxDeliver,
		MaxAckPending: b.cfg.maxAckPending,
	}
	cons, err := b.js.CreateOrUpdateConsumer(ctx, stream, cc)
	if err != nil {
		return nil, fmt.Errorf("nats: subscribe %s: consumer %s on stream %s: %w", topic, cc.Durable, stream, err)
	}
	s := &subscription{
		b:     b,
		cons:  cons,
		topic: topic,
		group: group,
		h:     h,
		log:   b.cfg.logger.With(slog.String("topic", topic), slog.String("group", group)),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, fmt.Errorf("nats: subscribe %s: bus closed", topic)
	}
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	go s.run(ctx)
	return s, nil
}

type subscription struct {
	b            *Bus
	cons         jetstream.Consumer
	topic, group string
	h            bus.Handler
	log          *slog.Logger

	once sync.Once
	stop chan struct{}
	done chan struct{}
}

// Close stops fetching, waits for the in-flight handler and its acknowledgement, and returns.
// It waits at most one poll interval for an idle pull request to expire; a message that arrives
// with it is handed back at once with a negative acknowledgement.
func (s *subscription) Close() error {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

func (s *subscription) stopping(ctx context.Context) bool {
	select {
	case <-s.stop:
		return true
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

func (s *subscription) run(ctx context.Context) {
	defer func() {
		s.b.mu.Lock()
		delete(s.b.subs, s)
		s.b.mu.Unlock()
		close(s.done)
	}()
	var failures int
	for !s.stopping(ctx) {
		fctx, cancel := context.WithTimeout(ctx, s.b.cfg.pollWait)
		msg, err := s.cons.Next(jetstream.FetchContext(fctx))
		cancel()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
				errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
				failures = 0
				continue
			}
			if errors.Is(err, nats.ErrConnectionClosed) {
				s.log.Warn("nats: connection closed, subscription stops")
				return
			}
			failures++
			s.log.Warn("nats: fetch failed", slog.Any("error", err))
			if !s.sleep(ctx, min(time.Duration(failures)*200*time.Millisecond, 5*time.Second)) {
				return
			}
			continue
		}
		failures = 0
		if s.stopping(ctx) {
			// Closing: hand the message straight back rather than let it wait for AckWait.
			if err := msg.Nak(); err != nil {
				s.log.Warn("nats: nak on close failed", slog.Any("error", err))
			}
			return
		}
		s.handle(ctx, msg)
	}
}

func (s *subscription) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.stop:
		return false
	case <-ctx.Done():
		return false
	}
}

func (s *subscription) handle(ctx context.Context, msg jetstream.Msg) {
	attempt := 1
	if md, err := msg.Metadata(); err == nil && md.NumDelivered > 0 {
		attempt = int(md.NumDelivered)
	}
	d := bus.Delivery{Topic: s.topic, Group: s.group, Message: fromNATS(msg), Attempt: attempt}

	stopKeepalive := keepalive(msg, s.b.cfg.ackWait/3, s.log)
	err := bus.Invoke(ctx, s.h, d)
	stopKeepalive()

	if err == nil {
		// The handler's work is done: confirm the ack even if ctx has just ended.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if aerr := msg.DoubleAck(actx); aerr != nil {
			s.log.Warn("nats: ack failed, message will be redelivered", slog.String("id", d.ID), slog.Any("error", aerr))
		}
		return
	}
	delay := s.redeliveryDelay(attempt)
	s.log.Warn("nats: handler failed, message will be redelivered",
		slog.String("id", d.ID), slog.Int("attempt", attempt), slog.Duration("delay", delay), slog.Any("error", err))
	if nerr := msg.NakWithDelay(delay); nerr != nil {
		s.log.Warn("nats: nak failed, message will be redelivered after the ack wait", slog.String("id", d.ID), slog.Any("error", nerr))
	}
}

func (s *subscription) redeliveryDelay(attempt int) time.Duration {
	d := s.b.cfg.redeliverMin
	for i := 1; i < attempt && d < s.b.cfg.redeliverMax; i++ {
		d *= 2
	}
	return min(d, s.b.cfg.redeliverMax)
}

// keepalive sends progress acknowledgements every interval until the returned function is called;
// that function waits for the goroutine so no progress ack races the final ack.
func keepalive(msg jetstream.Msg, interval time.Duration, log *slog.Logger) func() {
	if interval <= 0 {
		return func() {}
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if err := msg.InProgress(); err != nil {
					log.Warn("nats: progress ack failed", slog.Any("error", err))
				}
			}
		}
	}()
	return func() {
		close(stop)
		<-done
	}
}
