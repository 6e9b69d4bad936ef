package cache

import (
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for [MemoryOptions]; chosen so that an unconfigured host cannot
// grow its heap by more than a few tens of megabytes through the cache.
const (
	DefaultMaxEntries    = 100_000
	DefaultMaxBytes      = 64 << 20
	DefaultShards        = 32
	DefaultSweepInterval = time.Minute
)

// entryOverhead approximates the memory an entry costs beyond its key and
// value (the entry struct, its map slot and slice headers), so that many tiny
// entries are charged to MaxBytes too.
const entryOverhead = 96

// MemoryOptions configures [NewMemory]. The zero value gives the defaults.
type MemoryOptions struct {
	// MaxEntries bounds the number of entries; the least recently used ones
	// are evicted first. The budget is split evenly across shards, so the
	// bound is exact only with Shards == 1.
	MaxEntries int
	// MaxBytes bounds keys plus values plus a fixed per-entry overhead. It is
	// split across shards like MaxEntries; a single entry larger than one
	// shard's share is refused with ErrValueTooLarge.
	MaxBytes int64
	// Shards is the number of independently locked partitions, rounded up to
	// a power of two. More shards mean less lock contention.
	Shards int
	// SweepInterval is how often a background sweep removes expired entries
	// that nobody reads again. Negative disables the sweep; expired entries
	// are then only removed when read or evicted.
	SweepInterval time.Duration
	// Clock replaces time.Now, so tests can move time without sleeping.
	Clock func() time.Time
}

// MemoryStats is a snapshot of a [Memory] cache's counters, meant for metrics.
// Counters only grow.
type MemoryStats struct {
	Entries     int
	Bytes       int64
	Hits        uint64
	Misses      uint64
	Evictions   uint64 // entries dropped to respect MaxEntries or MaxBytes
	Expirations uint64 // entries removed because their TTL had passed
}

// Memory is an in-process [Store]: a sharded map with an LRU list per shard,
// bounded by entry count and bytes. Expired entries are removed lazily when
// read and periodically by a sweeper goroutine that Close stops.
type Memory struct {
	shards []shard
	mask   uint64
	seed   maphash.Seed
	clock  func() time.Time

	closed    atomic.Bool
	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

type shard struct {
	mu         sync.Mutex
	items      map[string]*entry
	lru        entry // sentinel: lru.next is the most recently used entry
	bytes      int64
	maxEntries int
	maxBytes   int64

	hits, misses, evictions, expirations uint64

	_ [64]byte // keeps neighbouring shards' locks off one cache line
}

type entry struct {
	key        string
	val        []byte // never mutated after being stored, so readers may copy it unlocked
	expires    int64  // Unix nanoseconds; 0 means no expiry
	prev, next *entry
}

func (e *entry) size() int64 { return int64(len(e.key)+len(e.val)) + entryOverhead }

// NewMemory returns an empty in-process cache. Close it to stop the sweeper.
func NewMemory(opts MemoryOptions) *Memory {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Shards <= 0 {
		opts.Shards = DefaultShards
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = DefaultSweepInterval
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	n := 1
	if opts.Shards > 1 {
		n = 1 << bits.Len(uint(opts.Shards-1))
	}
	perEntries := max(1, (opts.MaxEntries+n-1)/n)
	perBytes := max(1, (opts.MaxBytes+int64(n)-1)/int64(n))
	m := &Memory{
		shards: make([]shard, n),
		mask:   uint64(n - 1),
		seed:   maphash.MakeSeed(),
		clock:  opts.Clock,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	for i := range m.shards {
		s := &m.shards[i]
		s.items = make(map[string]*entry)
		s.lru.next, s.lru.prev = &s.lru, &s.lru
		s.maxEntries, s.maxBytes = perEntries, perBytes
	}
	if opts.SweepInterval > 0 {
		go m.sweepLoop(opts.SweepInterval)
	} else {
		close(m.done)
	}
	return m
}

var _ Store = (*Memory)(nil)

func (m *Memory) shardFor(key string) *shard {
	return &m.shards[maphash.String(m.seed, key)&m.mask]
}

func (m *Memory) now() int64 { return m.clock().UnixNano() }

// expiry converts a TTL into an absolute deadline, saturating instead of
// overflowing for absurdly long TTLs.
func (m *Memory) expiry(ttl time.Duration) int64 {
	if ttl <= 0 {
		return 0
	}
	now := m.now()
	if int64(ttl) > math.MaxInt64-now {
		return math.MaxInt64
	}
	return now + int64(ttl)
}

// Get implements [Store]. The returned slice is a copy the caller owns.
func (m *Memory) Get(_ context.Context, key string) ([]byte, bool, error) {
	if m.closed.Load() {
		return nil, false, ErrClosed
	}
	s := m.shardFor(key)
	s.mu.Lock()
	e := s.items[key]
	if e == nil {
		s.misses++
		s.mu.Unlock()
		return nil, false, nil
	}
	if e.expires != 0 && m.now() >= e.expires {
		s.remove(e)
		s.expirations++
		s.misses++
		s.mu.Unlock()
		return nil, false, nil
	}
	s.toFront(e)
	s.hits++
	v := e.val
	s.mu.Unlock()
	if v == nil {
		return []byte{}, true, nil
	}
	return bytes.Clone(v), true, nil
}

// Set implements [Store]. The value is copied, so the caller may reuse val.
func (m *Memory) Set(_ context.Context, key string, val []byte, ttl time.Duration) error {
	if m.closed.Load() {
		return ErrClosed
	}
	s := m.shardFor(key)
	size := int64(len(key)+len(val)) + entryOverhead
	if size > s.maxBytes {
		return fmt.Errorf("%w: %d bytes exceed the per-shard budget of %d", ErrValueTooLarge, size, s.maxBytes)
	}
	v := bytes.Clone(val)
	expires := m.expiry(ttl)
	s.mu.Lock()
	s.put(key, v, expires)
	s.mu.Unlock()
	return nil
}

// Delete implements [Store].
func (m *Memory) Delete(_ context.Context, keys ...string) error {
	if m.closed.Load() {
		return ErrClosed
	}
	for _, k := range keys {
		s := m.shardFor(k)
		s.mu.Lock()
		if e := s.items[k]; e != nil {
			s.remove(e)
		}
		s.mu.Unlock()
	}
	return nil
}

// Incr implements [Store].
func (m *Memory) Incr(_ context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	if m.closed.Load() {
		return 0, ErrClosed
	}
	s := m.shardFor(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.items[key]
	if e != nil && e.expires != 0 && m.now() >= e.expires {
		s.remove(e)
		s.expirations++
		e = nil
	}
	var cur int64
	expires := int64(0)
	if e != nil {
		n, err := strconv.ParseInt(string(e.val), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("incr %q: %w", key, ErrNotInteger)
		}
		cur, expires = n, e.expires
	} else {
		expires = m.expiry(ttl)
	}
	if (delta > 0 && cur > math.MaxInt64-delta) || (delta < 0 && cur < math.MinInt64-delta) {
		return 0, fmt.Errorf("incr %q by %d: %w", key, delta, ErrOverflow)
	}
	cur += delta
	s.put(key, strconv.AppendInt(nil, cur, 10), expires)
	return cur, nil
}

// Ping implements [Store]; an open in-process cache is always reachable.
func (m *Memory) Ping(context.Context) error {
	if m.closed.Load() {
		return ErrClosed
	}
	return nil
}

// Close stops the sweeper and drops every entry. It is safe to call twice.
func (m *Memory) Close() error {
	m.closeOnce.Do(func() {
		m.closed.Store(true)
		close(m.stop)
		<-m.done
		for i := range m.shards {
			s := &m.shards[i]
			s.mu.Lock()
			s.items = make(map[string]*entry)
			s.lru.next, s.lru.prev = &s.lru, &s.lru
			s.bytes = 0
			s.mu.Unlock()
		}
	})
	return nil
}

// Stats returns a snapshot of the counters. Each shard is read under its own
// lock, so the totals are consistent per shard but not across shards.
func (m *Memory) Stats() MemoryStats {
	var st MemoryStats
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		st.Entries += len(s.items)
		st.Bytes += s.bytes
		st.Hits += s.hits
		st.Misses += s.misses
		st.Evictions += s.evictions
		st.Expirations += s.expirations
		s.mu.Unlock()
	}
	return st
}

// Sweep removes every expired entry now and returns how many it removed. The
// background sweeper calls it; tests with a fake clock call it directly.
func (m *Memory) Sweep() int {
	removed := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		now := m.now()
		for _, e := range s.items {
			if e.expires != 0 && now >= e.expires {
				s.remove(e)
				s.expirations++
				removed++
			}
		}
		s.mu.Unlock()
	}
	return removed
}

func (m *Memory) sweepLoop(every time.Duration) {
	defer close(m.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.Sweep()
		}
	}
}

// put stores or replaces key and then evicts from the LRU end until the
// shard fits its budgets again. The caller holds s.mu.
func (s *shard) put(key string, val []byte, expires int64) {
	if e := s.items[key]; e != nil {
		s.bytes += int64(len(val) - len(e.val))
		e.val, e.expires = val, expires
		s.toFront(e)
	} else {
		e = &entry{key: key, val: val, expires: expires}
		s.items[key] = e
		s.bytes += e.size()
		s.pushFront(e)
	}
	for len(s.items) > s.maxEntries || s.bytes > s.maxBytes {
		victim := s.lru.prev
		if victim == &s.lru {
			break
		}
		s.remove(victim)
		s.evictions++
	}
}

func (s *shard) remove(e *entry) {
	delete(s.items, e.key)
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	s.bytes -= e.size()
}

func (s *shard) pushFront(e *entry) {
	e.prev, e.next = &s.lru, s.lru.next
	s.lru.next.prev = e
	s.lru.next = e
}

func (s *shard) toFront(e *entry) {
	if s.lru.next == e {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	s.pushFront(e)
}
