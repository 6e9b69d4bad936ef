package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/keelhq/keel/bridges/bus"
)

// Subscribe joins the consumer group group on topic with a kafka-go Reader and hands each
// message to h. Offsets are committed synchronously, one message at a time, only after h returns
// nil; the reader never commits on its own.
//
// When h fails, the same message is handed to h again in place, after a growing delay
// (WithRedeliveryBackoff), and nothing behind it in the reader is processed meanwhile. kafka-go
// cannot seek a group reader, and re-creating the reader would trigger a group rebalance per
// failure; retrying in place gives the same result, the message is processed before anything
// after it, and if the subscription stops first the uncommitted offset makes the next owner of
// the partition read it again. Normally bus.Retrying absorbs handler errors before this point.
func (b *Bus) Subscribe(ctx context.Context, topic, group string, h bus.Handler) (bus.Subscription, error) {
	if err := bus.ValidateName(topic); err != nil {
		return nil, fmt.Errorf("kafka: subscribe: %w", err)
	}
	if err := bus.ValidateName(group); err != nil {
		return nil, fmt.Errorf("kafka: subscribe %s: group: %w", topic, err)
	}
	if h == nil {
		return nil, fmt.Errorf("kafka: subscribe %s: nil handler", topic)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("kafka: subscribe %s: %w", topic, err)
	}
	rc := kafka.ReaderConfig{
		Brokers:               b.brokers,
		GroupID:               group,
		Topic:                 topic,
		Dialer:                &kafka.Dialer{ClientID: "keel", Timeout: b.cfg.dialTimeout, DualStack: true},
		QueueCapacity:         100,
		MinBytes:              1,
		MaxBytes:              10 << 20,
		MaxWait:               500 * time.Millisecond,
		CommitInterval:        0, // synchronous commits, and only through CommitMessages
		StartOffset:           b.cfg.startOffset,
		HeartbeatInterval:     3 * time.Second,
		SessionTimeout:        b.cfg.sessionTimeout,
		RebalanceTimeout:      b.cfg.sessionTimeout,
		JoinGroupBackoff:      time.Second,
		WatchPartitionChanges: true,
		ReadBackoffMin:        100 * time.Millisecond,
		ReadBackoffMax:        time.Second,
		IsolationLevel:        kafka.ReadCommitted,
		Logger:                kafkaLogger(b.cfg.logger, slog.LevelDebug),
		ErrorLogger:           kafkaLogger(b.cfg.logger, slog.LevelWarn),
	}
	if err := rc.Validate(); err != nil {
		return nil, fmt.Errorf("kafka: subscribe %s: reader config: %w", topic, err)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, fmt.Errorf("kafka: subscribe %s: bus closed", topic)
	}
	s := &subscription{
		b:     b,
		r:     kafka.NewReader(rc),
		topic: topic,
		group: group,
		h:     h,
		log:   b.cfg.logger.With(slog.String("topic", topic), slog.String("group", group)),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	b.subs[s] = struct{}{}
	b.mu.Unlock()

	fetchCtx, cancel := context.WithCancel(ctx)
	s.cancelFetch = cancel
	go s.run(ctx, fetchCtx)
	return s, nil
}

type subscription struct {
	b            *Bus
	r            *kafka.Reader
	topic, group string
	h            bus.Handler
	log          *slog.Logger
	cancelFetch  context.CancelFunc

	once     sync.Once
	stop     chan struct{}
	done     chan struct{} // closed when run has returned
	closeErr error         // written by run before done is closed
}

// Close stops fetching, waits for the in-flight handler and its commit, then leaves the group.
func (s *subscription) Close() error {
	s.once.Do(func() {
		close(s.stop)
		s.cancelFetch()
	})
	<-s.done
	return s.closeErr
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

// sleep waits d and reports false if the subscription stops first.
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

func (s *subscription) run(ctx, fetchCtx context.Context) {
	defer func() {
		// Runs whether Close or the caller's ctx stopped us, so the reader never leaks.
		s.cancelFetch()
		if err := s.r.Close(); err != nil {
			s.closeErr = fmt.Errorf("kafka: close reader %s/%s: %w", s.topic, s.group, err)
		}
		s.b.mu.Lock()
		delete(s.b.subs, s)
		s.b.mu.Unlock()
		close(s.done)
	}()
	failures := 0
	for !s.stopping(ctx) {
		m, err := s.r.FetchMessage(fetchCtx)
		if err != nil {
			if fetchCtx.Err() != nil || errors.Is(err, io.EOF) {
				return
			}
			failures++
			s.log.Warn("kafka: fetch failed", slog.Any("error", err))
			if !s.sleep(ctx, min(time.Duration(failures)*200*time.Millisecond, 5*time.Second)) {
				return
			}
			continue
		}
		failures = 0
		if !s.process(ctx, m) {
			return
		}
	}
}

// process hands m to the handler until it succeeds, then commits it. It reports false if the
// subscription stopped with m still uncommitted.
func (s *subscription) process(ctx context.Context, m kafka.Message) bool {
	msg := fromKafka(m)
	for attempt := 1; ; attempt++ {
		d := bus.Delivery{Topic: s.topic, Group: s.group, Message: msg, Attempt: attempt}
		err := bus.Invoke(ctx, s.h, d)
		if err == nil {
			s.commit(ctx, m)
			return true
		}
		delay := s.redeliveryDelay(attempt)
		s.log.Warn("kafka: handler failed, message not committed",
			slog.String("id", msg.ID), slog.Int("partition", m.Partition), slog.Int64("offset", m.Offset),
			slog.Int("attempt", attempt), slog.Duration("retry_in", delay), slog.Any("error", err))
		if s.stopping(ctx) || !s.sleep(ctx, delay) {
			return false
		}
	}
}

func (s *subscription) commit(ctx context.Context, m kafka.Message) {
	// The handler's work is done: commit even if ctx has just ended.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.r.CommitMessages(cctx, m); err != nil {
		s.log.Warn("kafka: commit failed, message may be delivered again",
			slog.Int("partition", m.Partition), slog.Int64("offset", m.Offset), slog.Any("error", err))
	}
}

func (s *subscription) redeliveryDelay(attempt int) time.Duration {
	d := s.b.cfg.redeliverMin
	for i := 1; i < attempt && d < s.b.cfg.redeliverMax; i++ {
		d *= 2
	}
	return min(d, s.b.cfg.redeliverMax)
}
