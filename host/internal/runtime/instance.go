package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// instance is one live wasm instance. It is used by one call at a time.
type instance struct {
	id     uint64
	mod    api.Module
	mem    api.Memory
	fns    [numExports]api.Function
	bufPtr uint32 // guest input buffer (keel_buffer)
	bufCap uint32
	stack  []uint64
	stderr *guestOutput
	out    []byte // reusable host-function result buffer (Call.OutBuf)
	// memBytes is the linear memory size as of the end of the last call, for the pool
	// gauges: reading mem.Size() from another goroutine while a call grows the memory
	// is a data race.
	memBytes atomic.Uint64
}

// Exports of ABI v1.
const (
	exHTTP = iota
	exEvent
	exHealth
	exInit
	exBuffer
	numExports
)

var exportNames = [numExports]string{"keel_http", "keel_event", "keel_health", "keel_init", "keel_buffer"}

// initialBuffer is the input buffer size reserved when an instance starts; most
// requests fit, so keel_buffer is rarely called again.
const initialBuffer = 64 << 10

// call writes input into the guest buffer, runs export ex and returns the output as a
// view into guest memory, valid until the next call on this instance.
func (in *instance) call(ctx context.Context, ex int, input []byte, maxOut int) ([]byte, error) {
	fn := in.fns[ex]
	if fn == nil {
		return nil, fmt.Errorf("module does not export %s", exportNames[ex])
	}
	if uint32(len(input)) > in.bufCap {
		if err := in.reserve(ctx, uint32(len(input))); err != nil {
			return nil, err
		}
	}
	if len(input) > 0 && !in.mem.Write(in.bufPtr, input) {
		return nil, errors.New("input buffer outside guest memory")
	}
	in.stack[0] = uint64(len(input))
	if err := fn.CallWithStack(ctx, in.stack); err != nil {
		return nil, err
	}
	in.memBytes.Store(uint64(in.mem.Size()))
	ptr, n := uint32(in.stack[0]>>32), uint32(in.stack[0])
	if n == 0 {
		return nil, nil
	}
	if int(n) > maxOut {
		return nil, &oversizedError{n: int(n), limit: maxOut}
	}
	out, ok := in.mem.Read(ptr, n)
	if !ok {
		return nil, fmt.Errorf("output range [%d,+%d) outside guest memory", ptr, n)
	}
	return out, nil
}

func (in *instance) reserve(ctx context.Context, n uint32) error {
	in.stack[0] = uint64(n)
	if err := in.fns[exBuffer].CallWithStack(ctx, in.stack); err != nil {
		return fmt.Errorf("keel_buffer(%d): %w", n, err)
	}
	ptr := uint32(in.stack[0])
	if ptr == 0 {
		return fmt.Errorf("keel_buffer(%d) returned a null buffer", n)
	}
	in.bufPtr, in.bufCap = ptr, n
	return nil
}

func (in *instance) close(ctx context.Context) {
	_ = in.mod.Close(ctx)
}

type oversizedError struct{ n, limit int }

func (e *oversizedError) Error() string {
	return fmt.Sprintf("output of %d bytes exceeds the %d byte limit", e.n, e.limit)
}

// classify maps an error from a wasm call to a failure reason.
func classify(ctx context.Context, err error, in *instance) string {
	var oe *oversizedError
	if errors.As(err, &oe) {
		return ReasonOversized
	}
	var ee *sys.ExitError
	if errors.As(err, &ee) {
		switch ee.ExitCode() {
		case sys.ExitCodeDeadlineExceeded:
			return ReasonTimeout
		case sys.ExitCodeContextCanceled:
			return ReasonCanceled
		}
		if in != nil && strings.Contains(in.stderr.fatalError(), "out of memory") {
			return ReasonMemory
		}
		return ReasonExit
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ReasonTimeout
	}
	if ctx.Err() == context.Canceled {
		return ReasonCanceled
	}
	if in != nil && strings.Contains(in.stderr.fatalError(), "out of memory") {
		return ReasonMemory
	}
	return ReasonTrap
}

// guestOutput receives a guest's stdout or stderr and logs it line by line. It keeps
// the first "fatal error:" line the Go runtime prints before it dies, so that a crash
// can be classified (out of memory vs. other fatal errors) even after a long trace.
type guestOutput struct {
	mu    sync.Mutex
	line  bytes.Buffer
	fatal string
	emit  func(line string)
	lines atomic.Uint64
}

const (
	maxGuestLine = 8 << 10
	// maxGuestLines caps what one instance may write to the host log, so a plugin
	// printing in a loop cannot flood it.
	maxGuestLines = 10000
)

func (g *guestOutput) Write(p []byte) (int, error) {
	n := len(p)
	g.mu.Lock()
	defer g.mu.Unlock()
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if g.line.Len() < maxGuestLine {
				g.line.Write(p[:min(len(p), maxGuestLine-g.line.Len())])
			}
			break
		}
		if g.line.Len() < maxGuestLine {
			g.line.Write(p[:min(i, maxGuestLine-g.line.Len())])
		}
		g.flushLocked()
		p = p[i+1:]
	}
	return n, nil
}

func (g *guestOutput) flushLocked() {
	if g.line.Len() == 0 {
		return
	}
	line := g.line.String()
	if g.fatal == "" && strings.HasPrefix(line, "fatal error:") {
		g.fatal = line
	}
	if g.lines.Add(1) <= maxGuestLines {
		g.emit(line)
	}
	g.line.Reset()
}

// fatalError returns the Go runtime's "fatal error:" line, if the guest printed one.
func (g *guestOutput) fatalError() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.flushLocked()
	return g.fatal
}
