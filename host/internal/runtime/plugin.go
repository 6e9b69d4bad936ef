package runtime

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/abi/wire"
)

// Plugin is one loaded plugin version (a generation): its compiled module, its wazero
// runtime with the version's memory cap, and its instance pool.
type Plugin struct {
	engine   *Engine
	manifest *manifest.Manifest
	digest   string
	logger   *slog.Logger
	module   *sharedModule
	maxOut   int
	timeout  time.Duration

	idle  idleStack     // free instances, most recently used on top
	slots chan struct{} // one token per live instance, capacity pool_max
	inUse atomic.Int64  // instances serving a call
	live  sync.Map      // id -> *instance, for memory accounting and close

	inUseGauge prometheus.Gauge
	observers  [numExports]prometheus.Observer

	gate gate // counts in-flight calls; Close waits for them
	stop chan struct{}

	readOnly map[routeKey]bool // routes the manifest declares read_only
	prefetch map[routeKey]*manifest.Prefetch
}

// routeKey names a manifest route as an HTTP call carries it (method and pattern).
type routeKey struct{ method, path string }

// LoadStats describes how a load went, for logs and benchmarks.
type LoadStats struct {
	Compile     time.Duration // instrumenting and compiling, or finding the module kept in memory
	Reused      bool          // the compiled module was still in memory (a reload or rollback)
	Instantiate time.Duration // the first instance, including keel_init
	Total       time.Duration
}

// Load compiles a plugin version and starts its pool with pool_min instances (at
// least one, to prove the module initialises). On any error everything created so
// far is released: a failed load leaves nothing behind.
func (e *Engine) Load(ctx context.Context, m *manifest.Manifest, wasm []byte) (p *Plugin, stats LoadStats, err error) {
	start := time.Now()
	lim := m.Limits
	// The digest names the build (logs, registry) and keys the instrumentation cache;
	// hashing 4 MiB takes ~3 ms, so it is computed once.
	digest := Digest(wasm)
	instrumented, err := e.instrument(digest, wasm)
	if err != nil {
		return nil, stats, fmt.Errorf("plugin %s@%s: %w", m.Name, m.Version, err)
	}
	sm, reused, err := e.acquireModule(ctx, moduleKey{digest: digest, pages: uint32(lim.MemoryMiB) * 16}, instrumented)
	if err != nil {
		return nil, stats, fmt.Errorf("plugin %s@%s: %w", m.Name, m.Version, err)
	}
	defer func() {
		if err != nil {
			_ = e.releaseModule(ctx, sm)
		}
	}()
	stats.Compile = time.Since(start)
	stats.Reused = reused
	p = &Plugin{
		engine:   e,
		manifest: m,
		digest:   digest,
		logger:   e.logger.With("plugin", m.Name, "version", m.Version),
		module:   sm,
		maxOut:   lim.MaxResponseBytes,
		timeout:  lim.CallTimeout(),
		idle:     newIdleStack(lim.PoolMax),
		slots:    make(chan struct{}, lim.PoolMax),
		stop:     make(chan struct{}),
		readOnly: map[routeKey]bool{},
	}
	for _, r := range m.Routes {
		if r.ReadOnly {
			p.readOnly[routeKey{r.Method, r.Path}] = true
		}
		if r.Prefetch != nil && e.sqlQuery != nil {
			if p.prefetch == nil {
				p.prefetch = map[routeKey]*manifest.Prefetch{}
			}
			p.prefetch[routeKey{r.Method, r.Path}] = r.Prefetch
		}
	}
	p.inUseGauge = e.metrics.PoolInUseGauge(m.Name, m.Version)
	for i, name := range exportNames {
		p.observers[i] = e.metrics.CallObserver(m.Name, name)
	}
	warm := max(lim.PoolMin, 1)
	for i := 0; i < warm; i++ {
		t0 := time.Now()
		p.slots <- struct{}{}
		in, err := p.newInstance(ctx)
		if err != nil {
			<-p.slots
			p.closeInstances(ctx)
			return nil, stats, err
		}
		if i == 0 {
			stats.Instantiate = time.Since(t0)
		}
		p.idle.push(in)
	}
	p.publish()
	stats.Total = time.Since(start)
	p.logger.Info("plugin loaded", "digest", p.digest[:12], "compile", stats.Compile, "first_instance", stats.Instantiate, "pool_min", lim.PoolMin, "pool_max", lim.PoolMax)
	return p, stats, nil
}

// checkModule refuses modules that do not speak ABI v1 before any instance runs.
func checkModule(cm wazero.CompiledModule) error {
	ex := cm.ExportedFunctions()
	for _, name := range []string{"keel_abi_version", "keel_buffer", "_initialize"} {
		if _, ok := ex[name]; !ok {
			return fmt.Errorf("module does not export %s: build it with the Keel SDK as a reactor (-buildmode=c-shared)", name)
		}
	}
	if _, ok := ex["_start"]; ok {
		return errors.New("module is a command (exports _start); build it with -buildmode=c-shared")
	}
	for _, imp := range cm.ImportedFunctions() {
		mod, name, _ := imp.Import()
		switch {
		case mod == "wasi_snapshot_preview1":
		case strings.HasPrefix(mod, "keel:"):
			if !knownImport(mod, name) {
				return fmt.Errorf("module imports %s.%s, which this host does not provide (does it need a newer ABI?)", mod, name)
			}
		default:
			return fmt.Errorf("module imports from unknown module %q", mod)
		}
	}
	return nil
}

// newInstance instantiates and initialises one instance. The caller holds a slot.
func (p *Plugin) newInstance(ctx context.Context) (*instance, error) {
	t0 := time.Now()
	id := p.engine.instanceSeq.Add(1)
	out := &guestOutput{emit: func(line string) { p.logger.Info(line, "stream", "stdout", "instance", id) }}
	errOut := &guestOutput{emit: func(line string) { p.logger.Warn(line, "stream", "stderr", "instance", id) }}
	cfg := wazero.NewModuleConfig().
		WithName(fmt.Sprintf("%s@%s#%d", p.manifest.Name, p.manifest.Version, id)).
		WithStartFunctions("_initialize").
		WithSysWalltime().WithSysNanotime().WithSysNanosleep().
		WithRandSource(rand.Reader).
		WithStdout(out).WithStderr(errOut)
	ictx, cancel := context.WithTimeout(ctx, max(p.timeout, 5*time.Second))
	defer cancel()
	mod, err := p.module.rt.InstantiateModule(experimental.WithMemoryAllocator(ictx, linearMemory), p.module.compiled, cfg)
	if err != nil {
		p.engine.metrics.Failure(p.manifest.Name, ReasonInit)
		return nil, fmt.Errorf("plugin %s@%s: instantiate: %w", p.manifest.Name, p.manifest.Version, err)
	}
	in := &instance{id: id, mod: mod, mem: mod.Memory(), stack: make([]uint64, 1), stderr: errOut}
	for i, name := range exportNames {
		in.fns[i] = mod.ExportedFunction(name)
	}
	fail := func(err error) (*instance, error) {
		_ = mod.Close(context.WithoutCancel(ctx))
		p.engine.metrics.Failure(p.manifest.Name, ReasonInit)
		return nil, fmt.Errorf("plugin %s@%s: %w", p.manifest.Name, p.manifest.Version, err)
	}
	if in.mem == nil {
		return fail(errors.New("module has no memory"))
	}
	v, err := mod.ExportedFunction("keel_abi_version").Call(ictx)
	if err != nil {
		return fail(fmt.Errorf("keel_abi_version: %w", err))
	}
	if level := int(int32(v[0])); level < 1 || level > manifest.CurrentABI || level != p.manifest.ABI {
		return fail(fmt.Errorf("module speaks ABI %d but the manifest declares %d (host supports 1..%d)", level, p.manifest.ABI, manifest.CurrentABI))
	}
	if err := in.reserve(ictx, initialBuffer); err != nil {
		return fail(err)
	}
	if in.fns[exInit] != nil {
		cc := wire.CallContext{Plugin: p.manifest.Name, Version: p.manifest.Version}
		res, err := p.invokeOn(ictx, in, exInit, wire.AppendCallContextFields(nil, &cc), &cc)
		if err != nil {
			return fail(fmt.Errorf("keel_init: %w", err))
		}
		if res.Code != 0 {
			return fail(fmt.Errorf("keel_init failed (%s): %s", wire.Code(res.Code), res.Message))
		}
	}
	in.memBytes.Store(uint64(in.mem.Size()))
	p.live.Store(id, in)
	p.engine.metrics.Instantiated(p.manifest.Name, time.Since(t0))
	return in, nil
}

// invokeOn runs a Result-returning export on a specific instance; used for keel_init.
func (p *Plugin) invokeOn(ctx context.Context, in *instance, ex int, input []byte, cc *wire.CallContext) (*wire.Result, error) {
	c := &Call{Plugin: p, Context: cc, inst: in}
	if d, ok := ctx.Deadline(); ok {
		c.deadline = d
	}
	defer c.release()
	out, err := in.call(context.WithValue(ctx, callKey{}, c), ex, input, p.maxOut)
	if err != nil {
		return nil, err
	}
	var res wire.Result
	if err := wire.DecodeResult(out, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// Manifest returns the plugin's manifest. Callers must not modify it.
func (p *Plugin) Manifest() *manifest.Manifest { return p.manifest }

// Digest returns the SHA-256 of the plugin's module.
func (p *Plugin) Digest() string { return p.digest }

// Name returns the plugin's name.
func (p *Plugin) Name() string { return p.manifest.Name }

// acquire borrows an instance, creating one if the pool has room, else waiting for one
// to be released until the deadline or ctx is done.
func (p *Plugin) acquire(ctx context.Context, deadline time.Time) (*instance, error) {
	select {
	case <-p.idle.avail:
		return p.idle.pop(), nil
	default:
	}
	ctx, cancel := context.WithDeadline(ctx, deadline) // only on the slow path
	defer cancel()
	for {
		select {
		case <-p.idle.avail:
			return p.idle.pop(), nil
		case p.slots <- struct{}{}:
			in, err := p.newInstance(ctx)
			if err != nil {
				<-p.slots
				return nil, err
			}
			p.publish()
			return in, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-p.stop:
			return nil, ErrClosed
		}
	}
}

// release returns a healthy instance to the pool.
func (p *Plugin) release(in *instance) {
	p.idle.push(in)
}

// discard closes a failed instance and frees its slot; the pool refills to pool_min in
// the background so the next request does not pay for instantiation.
func (p *Plugin) discard(in *instance) {
	p.live.Delete(in.id)
	in.close(context.Background())
	<-p.slots
	p.publish()
	if len(p.slots) < p.manifest.Limits.PoolMin {
		go p.refill()
	}
}

func (p *Plugin) refill() {
	select {
	case <-p.stop:
		return
	case p.slots <- struct{}{}:
	default:
		return
	}
	if !p.gate.enter() {
		<-p.slots
		return
	}
	defer p.gate.leave()
	in, err := p.newInstance(context.Background())
	if err != nil {
		<-p.slots
		p.logger.Error("refilling the pool failed", "err", err)
		return
	}
	p.idle.push(in)
	p.publish()
}

// Warm grows the pool to n instances (at most pool_max). The deployer calls it before
// a new version takes over from an old one, with the old one's pool size, so that
// after a swap under load requests find instances ready instead of each waiting for
// an instantiation (the Go runtime's start-up, several milliseconds) on its own path.
func (p *Plugin) Warm(ctx context.Context, n int) error {
	if !p.gate.enter() {
		return ErrClosed
	}
	defer p.gate.leave()
	defer p.publish()
	for len(p.slots) < min(n, cap(p.slots)) {
		select {
		case p.slots <- struct{}{}:
		default:
			return nil // the pool is full
		}
		in, err := p.newInstance(ctx)
		if err != nil {
			<-p.slots
			return err
		}
		p.idle.push(in)
	}
	return nil
}

// publish updates the pool gauges.
func (p *Plugin) publish() {
	var mem uint64
	p.live.Range(func(_, v any) bool { mem += v.(*instance).memBytes.Load(); return true })
	p.engine.metrics.Pool(p.manifest.Name, p.manifest.Version, len(p.slots), int(p.inUse.Load()), mem)
}

// Stats is a snapshot of the pool.
type Stats struct {
	Instances   int
	InUse       int
	MemoryBytes uint64
}

// Stats returns the pool's current size, in-use count and linear memory.
func (p *Plugin) Stats() Stats {
	var mem uint64
	p.live.Range(func(_, v any) bool { mem += v.(*instance).memBytes.Load(); return true })
	return Stats{Instances: len(p.slots), InUse: int(p.inUse.Load()), MemoryBytes: mem}
}

// Close stops accepting calls, waits for in-flight calls to finish (or ctx to end),
// then closes every instance and the runtime.
func (p *Plugin) Close(ctx context.Context) error {
	if !p.gate.close() {
		return nil
	}
	close(p.stop)
	err := p.gate.wait(ctx)
	p.closeInstances(ctx)
	p.engine.metrics.ForgetPool(p.manifest.Name, p.manifest.Version)
	if cerr := p.engine.releaseModule(ctx, p.module); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("plugin %s@%s: close: %w", p.manifest.Name, p.manifest.Version, err)
	}
	return nil
}

func (p *Plugin) closeInstances(ctx context.Context) {
	for {
		select {
		case <-p.idle.avail:
			in := p.idle.pop()
			p.live.Delete(in.id)
			in.close(context.WithoutCancel(ctx))
		default:
			return
		}
	}
}

// idleStack holds free instances last in, first out: the instance released most
// recently is the next one borrowed, so under light load calls keep landing on the
// same instance, whose linear memory and Go heap are still in the CPU caches, while
// the others stay cold. (A FIFO channel rotated calls through every pooled instance.
// Measured: a guest call is several times slower with cold caches than hot; the gain
// of LIFO alone was within this machine's noise, see RATIONALE.md.)
//
// avail counts the instances on the stack: push adds the instance before signalling,
// and a caller pops only after receiving a signal, so a pop always finds one. Waiting
// on avail composes with the other cases of acquire's select.
type idleStack struct {
	mu    sync.Mutex
	free  []*instance
	avail chan struct{}
}

func newIdleStack(n int) idleStack {
	return idleStack{free: make([]*instance, 0, n), avail: make(chan struct{}, n)}
}

func (s *idleStack) push(in *instance) {
	s.mu.Lock()
	s.free = append(s.free, in)
	s.mu.Unlock()
	s.avail <- struct{}{}
}

// pop takes the top instance; the caller has received from avail.
func (s *idleStack) pop() *instance {
	s.mu.Lock()
	in := s.free[len(s.free)-1]
	s.free[len(s.free)-1] = nil
	s.free = s.free[:len(s.free)-1]
	s.mu.Unlock()
	return in
}

// gate tracks in-flight calls so that Close can drain them.
type gate struct {
	mu     sync.Mutex
	n      int
	closed bool
	done   chan struct{}
}

func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.n++
	return true
}

func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	if g.closed && g.n == 0 && g.done != nil {
		close(g.done)
		g.done = nil
	}
}

// close marks the gate closed; it reports false if it already was.
func (g *gate) close() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.closed = true
	if g.n > 0 {
		g.done = make(chan struct{})
	}
	return true
}

func (g *gate) wait(ctx context.Context) error {
	g.mu.Lock()
	done := g.done
	g.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("draining in-flight calls: %w", ctx.Err())
	}
}
