package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
)

// Watch timing. A LISTEN connection that silently died (a host's network dropped, a proxy timed it
// out) would wait forever, so Watch pings it after watchKeepalive without a notification.
var (
	watchKeepalive   = 30 * time.Second
	watchPingTimeout = 5 * time.Second
	watchMinBackoff  = 100 * time.Millisecond
	watchMaxBackoff  = 5 * time.Second
)

// watchAppName is the application_name of Watch's connection, so operators (and tests) can find it
// in pg_stat_activity.
const watchAppName = "keel-registry-watch"

// Watch calls fn with the plugin's name each time its active version changes (Activate, Rollback,
// Deactivate, on any host sharing the database), until ctx ends or the Store is closed; then it
// returns nil.
//
// It listens on a dedicated connection outside the pool. When that connection drops, Watch logs it
// and reconnects with exponential backoff. Notifications sent while it is not listening are lost, so
// after every (re)connect, the first included, Watch calls fn("") once LISTEN is in place, meaning
// "anything may have changed": the caller should reconcile everything against Active. Hosts should
// still reconcile on a timer as well; Watch narrows the delay, it is not the only trigger.
//
// fn runs on Watch's goroutine, one call at a time; a slow fn delays later calls (PostgreSQL queues
// the notifications meanwhile) but loses none.
func (s *Store) Watch(ctx context.Context, fn func(name string)) error {
	if fn == nil {
		return errors.New("registry: watch: nil callback")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()

	var backoff time.Duration
	for {
		listened, err := s.listen(ctx, fn)
		if ctx.Err() != nil {
			return nil
		}
		if listened {
			backoff = 0
		}
		backoff = nextBackoff(backoff)
		s.log.Warn("plugin registry: watch connection lost; reconnecting", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
	}
}

// listen runs one LISTEN connection until it fails or ctx ends. listened reports whether LISTEN
// succeeded, which resets the backoff.
func (s *Store) listen(ctx context.Context, fn func(string)) (listened bool, err error) {
	cfg := s.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = watchAppName
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		conn.Close(cctx) //nolint:errcheck // the connection may already be broken
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return false, fmt.Errorf("listen: %w", err)
	}
	fn("")
	for {
		wctx, cancel := context.WithTimeout(ctx, watchKeepalive)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			fn(n.Payload)
		case ctx.Err() != nil:
			return true, ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			// Quiet, not necessarily dead: a timed-out wait leaves the connection usable, so ask.
			pctx, cancel := context.WithTimeout(ctx, watchPingTimeout)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return true, fmt.Errorf("keepalive: %w", err)
			}
		default:
			return true, fmt.Errorf("wait for notification: %w", err)
		}
	}
}

// nextBackoff doubles prev from watchMinBackoff up to watchMaxBackoff, with ±20% jitter so hosts
// that lost the database together do not reconnect in lockstep.
func nextBackoff(prev time.Duration) time.Duration {
	d := watchMinBackoff
	if prev > 0 {
		d = min(prev*2, watchMaxBackoff)
	}
	return d + time.Duration((rand.Float64()*0.4-0.2)*float64(d))
}
