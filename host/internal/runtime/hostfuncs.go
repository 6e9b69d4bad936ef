package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/abi/wire"
)

// MaxImportInput bounds what a guest may pass to one host function.
const MaxImportInput = 16 << 20

// HostFunc is one capability import with the uniform ABI v1 signature
// (in_ptr i32, in_len i32, out_ptr i32, out_cap i32) -> i64.
//
// Fn receives the decoded input bytes (a copy; it may keep them) and returns the output
// payload, or an error. A *CapError keeps its code; any other error becomes
// CodeInternal, so a host bug never looks like a plugin's fault.
type HostFunc struct {
	Module string // e.g. "keel:sql/v1"
	Name   string // e.g. "query"
	Fn     func(ctx context.Context, c *Call, in []byte) ([]byte, error)
}

// Call is the state of one invocation, visible to host functions. It lives exactly as
// long as one export call.
type Call struct {
	Plugin    *Plugin
	Context   *wire.CallContext
	logger    *slog.Logger
	inst      *instance
	pending   []byte
	finishes  []Finisher
	oneFinish [1]Finisher
	values    []callValue
	// deadline is enforced by tick; capabilities see it through Ctx.
	deadline time.Time
	readOnly bool
	outLent  bool // the current host function was handed inst.out (OutBuf)
	ctx      context.Context
	cancel   context.CancelFunc
}

// Logger returns the plugin's logger tagged with the call's request id. It is built
// on first use: most calls never log, and slog.Logger.With allocates.
func (c *Call) Logger() *slog.Logger {
	if c.logger == nil {
		c.logger = c.Plugin.logger.With("request_id", c.Context.RequestID)
	}
	return c.logger
}

// ReadOnly reports whether the call serves a route the manifest declares read_only: its
// database work must run read-only and it may not publish events.
func (c *Call) ReadOnly() bool { return c.readOnly }

// Ctx returns a context bounded by the call's deadline for host functions that
// reach other systems. It is derived on first use, because most calls reach none and
// a timer per call would cost more than the call.
func (c *Call) Ctx(parent context.Context) context.Context {
	if c.ctx == nil {
		c.ctx, c.cancel = context.WithDeadline(parent, c.deadline)
	}
	return c.ctx
}

func (c *Call) release() {
	if c.cancel != nil {
		c.cancel()
	}
}

// maxKeptOut bounds the output buffer an instance keeps between host calls: results
// larger than this are rare and would otherwise pin their size per pooled instance.
const maxKeptOut = 64 << 10

// OutBuf returns an empty slice with room for at least n bytes, for the host function
// being served to build its result in. The storage belongs to the calling instance and
// is reused by its next host call, so a result that is copied into guest memory and
// dropped (the common case) costs no allocation; the runtime takes care of results
// that must outlive the host call (a result too large for the guest's buffer, kept for
// keel:env/v1.take). A host function that calls OutBuf must return what it appended
// to that slice (or an error) and keep no reference to it.
func (c *Call) OutBuf(n int) []byte {
	if c.inst == nil {
		return make([]byte, 0, n)
	}
	if cap(c.inst.out) < n {
		c.inst.out = make([]byte, 0, max(n, 512))
	}
	c.outLent = true
	return c.inst.out[:0]
}

type callValue struct{ key, val any }

// Value returns what a host function attached to this call under key, or nil.
func (c *Call) Value(key any) any {
	for _, v := range c.values {
		if v.key == key {
			return v.val
		}
	}
	return nil
}

// SetValue attaches val to this call under key (a unit of work, a buffer of events).
func (c *Call) SetValue(key, val any) {
	for i := range c.values {
		if c.values[i].key == key {
			c.values[i].val = val
			return
		}
	}
	c.values = append(c.values, callValue{key, val})
}

// Finisher runs after the export returns. success reports whether the guest's result
// counts as success (HTTP status < 400, or result code 0) and the call did not fail.
// A finisher error turns a successful call into a failed one; this is how the unit of
// work commits or rolls back. It is an interface, not a func, so that registering a
// pointer (the unit of work) allocates nothing on the call path.
type Finisher interface {
	Finish(ctx context.Context, success bool) error
}

// OnFinish registers f. Finishers run in registration order.
func (c *Call) OnFinish(f Finisher) {
	if c.finishes == nil {
		c.finishes = c.oneFinish[:0] // the usual single finisher needs no allocation
	}
	c.finishes = append(c.finishes, f)
}

// Manifest returns the calling plugin's manifest.
func (c *Call) Manifest() *manifest.Manifest { return c.Plugin.manifest }

type callKey struct{}

func callFrom(ctx context.Context) *Call {
	c, _ := ctx.Value(callKey{}).(*Call)
	return c
}

// instantiateHostModules registers every host function in rt, grouped by module.
func instantiateHostModules(ctx context.Context, rt wazero.Runtime, funcs []HostFunc) error {
	byModule := map[string][]HostFunc{}
	var order []string
	for _, f := range funcs {
		if _, ok := byModule[f.Module]; !ok {
			order = append(order, f.Module)
		}
		byModule[f.Module] = append(byModule[f.Module], f)
	}
	for _, mod := range order {
		b := rt.NewHostModuleBuilder(mod)
		for _, f := range byModule[mod] {
			if f.Fn == nil { // a raw function such as keel:env/v1.take
				continue
			}
			b.NewFunctionBuilder().
				WithGoModuleFunction(adapt(f), []api.ValueType{api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32}, []api.ValueType{api.ValueTypeI64}).
				WithName(f.Name).Export(f.Name)
		}
		if mod == envModule {
			b.NewFunctionBuilder().
				WithGoModuleFunction(api.GoModuleFunc(take), []api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}).
				WithName("take").Export("take")
			b.NewFunctionBuilder().
				WithGoModuleFunction(api.GoModuleFunc(tick), nil, nil).
				WithName("tick").Export("tick")
		}
		if _, err := b.Instantiate(ctx); err != nil {
			return fmt.Errorf("host module %s: %w", mod, err)
		}
	}
	return nil
}

// adapt turns a HostFunc into a wazero function: read the input from guest memory,
// run Fn, then write the output into the guest's out buffer or keep it pending for
// keel:env/v1.take. The result packs (code << 32 | payload length).
func adapt(f HostFunc) api.GoModuleFunc {
	op := f.Module + "." + f.Name
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		inPtr, inLen := uint32(stack[0]), uint32(stack[1])
		outPtr, outCap := uint32(stack[2]), uint32(stack[3])
		c := callFrom(ctx)
		var out []byte
		var err error
		switch {
		case c == nil:
			err = Errorf(wire.CodeInternal, "%s called outside an invocation", op)
		case inLen > MaxImportInput:
			err = Errorf(wire.CodeTooLarge, "%s: input of %d bytes exceeds %d", op, inLen, MaxImportInput)
		default:
			in, ok := mod.Memory().Read(inPtr, inLen)
			if !ok {
				err = Errorf(wire.CodeMalformed, "%s: input range out of memory bounds", op)
				break
			}
			out, err = f.Fn(c.Ctx(ctx), c, append([]byte(nil), in...))
		}
		code := wire.OK
		if err != nil {
			var ce *CapError
			if !errors.As(err, &ce) {
				if c != nil {
					c.Logger().Error("host function failed", "import", op, "err", err)
				}
				ce = &CapError{Code: wire.CodeInternal, Message: "internal host error in " + op}
			}
			code = ce.Code
			out = wire.AppendResult(nil, &wire.Result{Code: uint32(ce.Code), Message: ce.Message, Detail: ce.Detail})
		}
		if c != nil && c.outLent {
			c.outLent = false
			c.inst.out = keepOut(c.inst.out, out)
		}
		n := uint32(len(out))
		if n <= outCap {
			if n > 0 && !mod.Memory().Write(outPtr, out) {
				stack[0] = uint64(wire.CodeMalformed)<<32 | 0
				return
			}
		} else if c != nil {
			c.pending = out
			if c.inst != nil && len(out) > 0 && cap(c.inst.out) > 0 && &out[:1][0] == &c.inst.out[:1][0] {
				c.inst.out = nil // pending now owns that storage until take
			}
		}
		stack[0] = uint64(code)<<32 | uint64(n)
	}
}

// keepOut returns the buffer an instance keeps for its next OutBuf after a host
// function that called OutBuf returned out, which is the lent storage, a larger one
// append grew from it, or an error result built fresh: out's storage unless it is too
// large to keep.
func keepOut(prev, out []byte) []byte {
	if cap(out) == 0 || cap(out) > maxKeptOut {
		if cap(prev) > maxKeptOut {
			return nil
		}
		return prev
	}
	return out[:0]
}

const (
	envModule = "keel:env/v1"
	logModule = "keel:log/v1"
)

// take copies the pending output of the previous import into guest memory. It
// returns 0 on success and 1 when nothing of that length is pending.
func take(ctx context.Context, mod api.Module, stack []uint64) {
	ptr, n := uint32(stack[0]), uint32(stack[1])
	c := callFrom(ctx)
	if c == nil || c.pending == nil || uint32(len(c.pending)) != n || !mod.Memory().Write(ptr, c.pending) {
		stack[0] = 1
		return
	}
	c.pending = nil
	stack[0] = 0
}

// abiImports lists every capability import of ABI v1 with the uniform signature. A
// host that has no backend for one (no database configured, say) still offers it, so
// that plugins instantiate; calls then fail with "unavailable".
var abiImports = []string{
	"keel:log/v1.write",
	"keel:cache/v1.get", "keel:cache/v1.set", "keel:cache/v1.delete", "keel:cache/v1.incr",
	"keel:config/v1.get",
	"keel:metrics/v1.record",
	"keel:http/v1.fetch",
	"keel:plugin/v1.call",
	"keel:sql/v1.query", "keel:sql/v1.exec",
	"keel:events/v1.publish",
}

// withUnavailable appends an "unavailable" implementation for every ABI import that
// funcs does not implement.
func withUnavailable(funcs []HostFunc) []HostFunc {
	have := map[string]bool{}
	for _, f := range funcs {
		have[f.Module+"."+f.Name] = true
	}
	for _, imp := range abiImports {
		if have[imp] {
			continue
		}
		i := strings.LastIndexByte(imp, '.')
		mod, name := imp[:i], imp[i+1:]
		funcs = append(funcs, HostFunc{Module: mod, Name: name, Fn: func(context.Context, *Call, []byte) ([]byte, error) {
			return nil, Errorf(wire.CodeUnavailable, "%s is not configured on this host", imp)
		}})
	}
	return funcs
}

// knownImport reports whether module.name is offered to plugins.
func knownImport(module, name string) bool {
	if module == envModule && (name == "take" || name == "tick") {
		return true
	}
	for _, imp := range abiImports {
		if imp == module+"."+name {
			return true
		}
	}
	return false
}

// tick is called by the preempt instrumentation every few thousand loop iterations.
// It stops the instance when the call's deadline has passed or its caller went away,
// exactly as wazero's proc_exit does: close the module, then unwind with an exit error.
func tick(ctx context.Context, mod api.Module, _ []uint64) {
	err := ctx.Err()
	if err == nil {
		if c := callFrom(ctx); c != nil && !c.deadline.IsZero() && time.Now().After(c.deadline) {
			err = context.DeadlineExceeded
		} else {
			return
		}
	}
	code := sys.ExitCodeDeadlineExceeded
	if errors.Is(err, context.Canceled) {
		code = sys.ExitCodeContextCanceled
	}
	_ = mod.CloseWithExitCode(context.WithoutCancel(ctx), code)
	panic(sys.NewExitError(code))
}

func builtinFuncs() []HostFunc {
	return []HostFunc{
		{Module: envModule, Name: "take"}, // raw signature, registered specially
		{Module: logModule, Name: "write", Fn: logWrite},
	}
}

// Field tags of a log record, keel:log/v1.write's input.
const (
	logLevel   = 1
	logMessage = 2
	logAttr    = 3
	// maxLogAttrs bounds attributes per record so a plugin cannot flood the log line.
	maxLogAttrs = 64
	maxLogBytes = 64 << 10
)

// logWrite routes a plugin's log record to the host logger, tagged with the plugin,
// version and request id.
func logWrite(ctx context.Context, c *Call, in []byte) ([]byte, error) {
	if len(in) > maxLogBytes {
		return nil, Errorf(wire.CodeTooLarge, "log record of %d bytes exceeds %d", len(in), maxLogBytes)
	}
	level, msg, attrs, err := decodeLog(in)
	if err != nil {
		return nil, &CapError{Code: wire.CodeMalformed, Message: err.Error()}
	}
	c.Plugin.engine.metrics.PluginLog(c.Plugin.manifest.Name, level.String())
	c.Logger().LogAttrs(ctx, level, msg, attrs...)
	return nil, nil
}

func decodeLog(in []byte) (slog.Level, string, []slog.Attr, error) {
	var (
		level slog.Level
		msg   string
		attrs []slog.Attr
	)
	r := wire.NewReader(in)
	for tag, v, ok := r.Next(); ok; tag, v, ok = r.Next() {
		switch tag {
		case logLevel:
			l, err := wire.Int(v)
			r.Fail(err)
			level = slog.Level(max(min(l, 12), -8))
		case logMessage:
			msg = string(v)
		case logAttr:
			k, val, err := wire.Pair(v)
			if err != nil {
				r.Fail(err)
				break
			}
			if len(attrs) < maxLogAttrs {
				attrs = append(attrs, slog.String("plugin."+string(k), string(val)))
			}
		}
	}
	return level, msg, attrs, r.Err()
}
