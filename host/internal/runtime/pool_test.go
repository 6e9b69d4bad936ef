package runtime

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/keelhq/keel/abi/manifest"
)

// TestIdleStackLIFO checks that the pool hands out the most recently released
// instance first (the one whose memory is still in the CPU caches) and that avail
// always counts exactly the instances on the stack.
func TestIdleStackLIFO(t *testing.T) {
	s := newIdleStack(3)
	a, b, c := &instance{id: 1}, &instance{id: 2}, &instance{id: 3}
	s.push(a)
	s.push(b)
	<-s.avail
	if got := s.pop(); got != b {
		t.Fatalf("pop = instance %d, want the last pushed (2)", got.id)
	}
	s.push(c)
	s.push(b)
	for _, want := range []*instance{b, c, a} {
		select {
		case <-s.avail:
		default:
			t.Fatalf("avail empty with instance %d still on the stack", want.id)
		}
		if got := s.pop(); got != want {
			t.Fatalf("pop = instance %d, want %d", got.id, want.id)
		}
	}
	select {
	case <-s.avail:
		t.Fatal("avail signalled with an empty stack")
	default:
	}
}

// TestIdleStackConcurrent hammers push/pop from many goroutines: every instance
// comes back exactly once and nothing is lost (run with -race in CI).
func TestIdleStackConcurrent(t *testing.T) {
	const n = 8
	s := newIdleStack(n)
	for i := 0; i < n; i++ {
		s.push(&instance{id: uint64(i)})
	}
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				<-s.avail
				in := s.pop()
				s.push(in)
			}
		}()
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for i := 0; i < n; i++ {
		<-s.avail
		in := s.pop()
		if seen[in.id] {
			t.Fatalf("instance %d returned twice", in.id)
		}
		seen[in.id] = true
	}
	if len(seen) != n {
		t.Fatalf("got %d distinct instances back, want %d", len(seen), n)
	}
}

// TestWarmGrowsPoolToPoolMax: Warm instantiates up to n instances, never past
// pool_max, and the warmed instances serve.
func TestWarmGrowsPoolToPoolMax(t *testing.T) {
	e := newEngine(t, nil)
	p := load(t, e, "plugins/example", func(m *manifest.Manifest) { m.Limits.PoolMin, m.Limits.PoolMax = 1, 3 })
	if n := p.Stats().Instances; n != 1 {
		t.Fatalf("after load: %d instances, want pool_min 1", n)
	}
	if err := p.Warm(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	if n := p.Stats().Instances; n != 2 {
		t.Fatalf("after Warm(2): %d instances", n)
	}
	if err := p.Warm(context.Background(), 10); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.Instances != 3 || s.InUse != 0 || s.MemoryBytes == 0 {
		t.Fatalf("after Warm(10) with pool_max 3: %+v", s)
	}
	for i := 0; i < 6; i++ {
		echo(t, p, fmt.Sprintf(`"call %d"`, i))
	}
}
