//go:build linux

package runtime

import (
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

// mmapAllocator backs each instance's linear memory with its own anonymous mapping,
// reserved at the memory cap, outside the Go heap.
//
// Why: wazero's default is a Go slice that is reallocated and copied each time the
// guest grows its memory, so every instance start leaves megabytes of garbage, and
// every live instance's memory is Go heap the collector must account for. Under hot
// swaps (a pool of fresh instances per activation) that garbage drove collections and
// mark assists into the requests being served. A mapping commits pages only as the
// guest touches them, never moves, and is returned to the kernel when the instance
// closes; reserving the cap for each instance costs address space, not memory.
type mmapAllocator struct{}

func (mmapAllocator) Allocate(_, max uint64) experimental.LinearMemory {
	if max == 0 || max > 1<<32 {
		return nil // wazero falls back to its own allocation
	}
	b, err := syscall.Mmap(-1, 0, int(max), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_NORESERVE)
	if err != nil {
		return nil
	}
	return &mmapMemory{buf: b}
}

type mmapMemory struct{ buf []byte }

// Reallocate grows (or reports) the memory within the reservation; beyond it the
// guest's memory.grow fails, which is how the manifest's memory cap is enforced.
func (m *mmapMemory) Reallocate(size uint64) []byte {
	if m.buf == nil || size > uint64(cap(m.buf)) {
		return nil
	}
	return m.buf[:size]
}

func (m *mmapMemory) Free() {
	if m.buf != nil {
		_ = syscall.Munmap(m.buf) // never resliced: the whole mapping
		m.buf = nil
	}
}

var linearMemory experimental.MemoryAllocator = mmapAllocator{}
