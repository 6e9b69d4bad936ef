package runtime

import (
	"bytes"
	"context"
	"testing"

	"github.com/tetratelabs/wazero/api"
)

// fakeMemory is a guest memory of fixed size; only Read and Write are used by adapt
// and take.
type fakeMemory struct {
	api.Memory
	b []byte
}

func (m *fakeMemory) Read(off, n uint32) ([]byte, bool) {
	if uint64(off)+uint64(n) > uint64(len(m.b)) {
		return nil, false
	}
	return m.b[off : off+n], true
}

func (m *fakeMemory) Write(off uint32, v []byte) bool {
	if uint64(off)+uint64(len(v)) > uint64(len(m.b)) {
		return false
	}
	copy(m.b[off:], v)
	return true
}

type fakeModule struct {
	api.Module
	mem *fakeMemory
}

func (m *fakeModule) Memory() api.Memory { return m.mem }

// TestOutBufPendingKeepsItsBytes drives adapt and take the way a guest does, including
// a guest that makes another host call before taking a pending result: the pending
// bytes must not be overwritten by the next result built in the reused buffer.
func TestOutBufPendingKeepsItsBytes(t *testing.T) {
	// The host function answers with len(in) copies of in[0], built in OutBuf.
	fn := adapt(HostFunc{Module: "keel:test/v1", Name: "fill", Fn: func(_ context.Context, c *Call, in []byte) ([]byte, error) {
		n := int(in[0]) * 100
		out := c.OutBuf(n)
		for range n {
			out = append(out, in[1])
		}
		return out, nil
	}})
	mem := &fakeMemory{b: make([]byte, 1<<16)}
	mod := &fakeModule{mem: mem}
	c := &Call{inst: &instance{}, Context: nil}
	ctx := context.WithValue(context.Background(), callKey{}, c)
	const inPtr, outPtr, outCap, takePtr = 0, 1024, 512, 8192

	call := func(hundreds byte, fill byte) (code, n uint32) {
		mem.b[inPtr], mem.b[inPtr+1] = hundreds, fill
		stack := []uint64{inPtr, 2, outPtr, outCap}
		fn(ctx, mod, stack)
		return uint32(stack[0] >> 32), uint32(stack[0])
	}
	takeInto := func(n uint32) []byte {
		stack := []uint64{takePtr, uint64(n)}
		take(ctx, mod, stack)
		if stack[0] != 0 {
			t.Fatalf("take(%d) failed", n)
		}
		return mem.b[takePtr : takePtr+n]
	}

	// Fits: written in place, and the buffer is kept for the next call.
	if code, n := call(3, 'a'); code != 0 || n != 300 || !bytes.Equal(mem.b[outPtr:outPtr+300], bytes.Repeat([]byte("a"), 300)) {
		t.Fatalf("in-place result: code %d, n %d", code, n)
	}
	if cap(c.inst.out) < 300 {
		t.Fatalf("buffer not kept after an in-place result: cap %d", cap(c.inst.out))
	}
	// Too large: pending. Then another call that fits before the take.
	if code, n := call(9, 'b'); code != 0 || n != 900 {
		t.Fatalf("pending result: code %d, n %d", code, n)
	}
	if code, n := call(2, 'c'); code != 0 || n != 200 || !bytes.Equal(mem.b[outPtr:outPtr+200], bytes.Repeat([]byte("c"), 200)) {
		t.Fatalf("result after a pending one: code %d, n %d", code, n)
	}
	if got := takeInto(900); !bytes.Equal(got, bytes.Repeat([]byte("b"), 900)) {
		t.Fatalf("pending result was overwritten: starts %q", got[:8])
	}
	// A result above maxKeptOut is delivered but not kept.
	if code, n := call(255, 'd'); code != 0 || n != 25500 {
		t.Fatalf("large result: code %d, n %d", code, n)
	}
	if got := takeInto(25500); !bytes.Equal(got, bytes.Repeat([]byte("d"), 25500)) {
		t.Fatal("large result corrupted")
	}
	if keepOut(nil, make([]byte, 0, maxKeptOut+1)) != nil {
		t.Fatal("a buffer above maxKeptOut was kept")
	}
}
