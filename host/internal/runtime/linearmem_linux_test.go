//go:build linux

package runtime

import "testing"

// The mapping never grows past the cap it was reserved with (that is how the
// manifest's memory cap holds), keeps its address while growing, and frees once.
func TestMmapLinearMemory(t *testing.T) {
	const max = 4 << 20
	lm := mmapAllocator{}.Allocate(0, max)
	if lm == nil {
		t.Fatal("no mapping")
	}
	a := lm.Reallocate(64 << 10)
	if len(a) != 64<<10 {
		t.Fatalf("len %d", len(a))
	}
	a[len(a)-1] = 7
	b := lm.Reallocate(max)
	if len(b) != max || &a[0] != &b[0] || b[64<<10-1] != 7 {
		t.Fatal("growing moved or lost the memory")
	}
	if lm.Reallocate(max+1) != nil {
		t.Fatal("grew past the reserved cap")
	}
	lm.Free()
	lm.Free() // idempotent
	if lm.Reallocate(1) != nil {
		t.Fatal("usable after Free")
	}
	if (mmapAllocator{}).Allocate(0, 0) != nil {
		t.Fatal("a zero-sized reservation should fall back to wazero")
	}
}
