package runtime

import (
	"context"
	"fmt"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// keepIdleModules is how many compiled modules no loaded plugin uses are kept ready.
//
// Why keep any: even with the compiled code in the on-disk cache, wazero decodes and
// validates the whole module on every CompileModule (about 40 ms of CPU for a 4 MiB
// Go guest). A rollback, or an activation flipping back to a version that served a
// minute ago, then costs a core for that long while requests are being served; with
// the module kept, it costs only the new pool's instances. Each idle module holds its
// machine code (roughly 4× the wasm size) and no instances, so a handful is cheap.
const keepIdleModules = 4

// moduleKey identifies a compiled module: its instrumented code and its memory cap,
// which wazero fixes per runtime.
type moduleKey struct {
	digest string
	pages  uint32
}

// sharedModule is a wazero runtime (with the WASI and Keel host modules) and one
// compiled plugin module in it, shared by every loaded plugin version with the same
// code and memory cap. Instances of all of them live in the runtime under unique
// names.
type sharedModule struct {
	key      moduleKey
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	refs     int // loaded plugins using it; guarded by Engine.mu
}

// acquireModule returns the compiled module for key, compiling code (instrumented)
// only when no loaded or recently used plugin has it. reused reports a hit.
func (e *Engine) acquireModule(ctx context.Context, key moduleKey, code []byte) (sm *sharedModule, reused bool, err error) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, false, ErrClosed
	}
	if sm := e.modules[key]; sm != nil {
		e.take(sm)
		e.mu.Unlock()
		return sm, true, nil
	}
	e.mu.Unlock()

	// Compile outside the lock: other plugins keep loading meanwhile.
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().
		WithCompilationCache(e.cache).
		// Termination is enforced by the preempt instrumentation (a tick every
		// preempt.DefaultInterval loop iterations checks the deadline), not by
		// WithCloseOnContextDone, which costs a trip out of native code on every
		// back-edge.
		WithCloseOnContextDone(false).
		WithMemoryLimitPages(key.pages))
	fail := func(err error) (*sharedModule, bool, error) {
		_ = rt.Close(context.WithoutCancel(ctx))
		return nil, false, err
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return fail(fmt.Errorf("wasi: %w", err))
	}
	if err := instantiateHostModules(ctx, rt, e.funcs); err != nil {
		return fail(err)
	}
	compiled, err := rt.CompileModule(ctx, code)
	if err != nil {
		return fail(fmt.Errorf("compile: %w", err))
	}
	if err := checkModule(compiled); err != nil {
		return fail(err)
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return fail(ErrClosed)
	}
	if other := e.modules[key]; other != nil { // compiled concurrently: use the first
		e.take(other)
		_ = rt.Close(context.WithoutCancel(ctx))
		return other, true, nil
	}
	sm = &sharedModule{key: key, rt: rt, compiled: compiled, refs: 1}
	e.modules[key] = sm
	return sm, false, nil
}

// take adds a reference, removing sm from the idle list. e.mu is held.
func (e *Engine) take(sm *sharedModule) {
	if sm.refs == 0 {
		for i, x := range e.idleModules {
			if x == sm {
				e.idleModules = append(e.idleModules[:i], e.idleModules[i+1:]...)
				break
			}
		}
	}
	sm.refs++
}

// releaseModule drops a plugin's reference. A module nobody uses joins the idle list;
// beyond keepIdleModules the least recently used idle one is closed.
func (e *Engine) releaseModule(ctx context.Context, sm *sharedModule) error {
	e.mu.Lock()
	sm.refs--
	if sm.refs > 0 {
		e.mu.Unlock()
		return nil
	}
	var evict []*sharedModule
	if e.closed {
		evict = append(evict, sm)
		delete(e.modules, sm.key)
	} else {
		e.idleModules = append(e.idleModules, sm)
		for len(e.idleModules) > keepIdleModules {
			old := e.idleModules[0]
			e.idleModules = e.idleModules[1:]
			delete(e.modules, old.key)
			evict = append(evict, old)
		}
	}
	e.mu.Unlock()
	var err error
	for _, old := range evict {
		if cerr := old.rt.Close(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			err = cerr
		}
	}
	return err
}

// closeIdleModules closes every module no plugin uses; Engine.Close calls it.
// e.mu is held.
func (e *Engine) closeIdleModules(ctx context.Context) {
	for _, sm := range e.idleModules {
		delete(e.modules, sm.key)
		_ = sm.rt.Close(context.WithoutCancel(ctx))
	}
	e.idleModules = nil
}
