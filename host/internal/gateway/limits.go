package gateway

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// tenantLimits keeps one token bucket per tenant, so one tenant's burst cannot starve
// the others on a shared host. Idle buckets are dropped periodically.
type tenantLimits struct {
	rps     rate.Limit
	burst   int
	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

func newTenantLimits(rps float64) *tenantLimits {
	if rps <= 0 {
		return nil
	}
	return &tenantLimits{rps: rate.Limit(rps), burst: max(1, int(2*rps)), buckets: map[string]*bucket{}, swept: time.Now()}
}

// allow reports whether the tenant may make one more request now.
func (t *tenantLimits) allow(tenant string) bool {
	if t == nil {
		return true
	}
	now := time.Now()
	t.mu.Lock()
	b := t.buckets[tenant]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(t.rps, t.burst)}
		t.buckets[tenant] = b
	}
	b.used = now
	if now.Sub(t.swept) > time.Minute {
		for k, v := range t.buckets {
			if now.Sub(v.used) > 5*time.Minute {
				delete(t.buckets, k)
			}
		}
		t.swept = now
	}
	t.mu.Unlock()
	return b.lim.AllowN(now, 1)
}
