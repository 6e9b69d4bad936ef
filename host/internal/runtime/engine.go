package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero"

	"github.com/keelhq/keel/host/internal/preempt"
	"github.com/keelhq/keel/host/internal/telemetry"
)

// Engine compiles and runs plugin versions. It is safe for concurrent use.
type Engine struct {
	cache   wazero.CompilationCache
	logger  *slog.Logger
	metrics *telemetry.Metrics
	funcs   []HostFunc
	// sqlQuery is keel:sql/v1.query, which runs the routes' declared lookups
	// (manifest prefetch) before their calls; nil when no host function offers it.
	sqlQuery func(ctx context.Context, c *Call, in []byte) ([]byte, error)

	cacheDir     string
	mu           sync.Mutex
	closed       bool
	instrumented map[string][]byte // digest -> instrumented module
	modules      map[moduleKey]*sharedModule
	idleModules  []*sharedModule // unused modules kept for a quick reload, oldest first
	instanceSeq  atomic.Uint64   // instance ids: unique in the engine, as the shared runtimes need
}

// Config configures an Engine.
type Config struct {
	// CacheDir holds compiled code across restarts. Empty means an in-memory cache.
	CacheDir string
	Logger   *slog.Logger
	Metrics  *telemetry.Metrics
	// HostFuncs are the capability imports offered to every plugin, on top of the
	// built-in keel:env/v1 and keel:log/v1. Each decides per call whether the calling
	// plugin may use it.
	HostFuncs []HostFunc
}

// NewEngine creates an engine. The cache directory is created if needed.
func NewEngine(cfg Config) (*Engine, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = telemetry.New()
	}
	var cache wazero.CompilationCache
	if cfg.CacheDir != "" {
		if err := os.MkdirAll(cfg.CacheDir, 0o755); err != nil {
			return nil, fmt.Errorf("runtime: compilation cache: %w", err)
		}
		c, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("runtime: compilation cache %s: %w", cfg.CacheDir, err)
		}
		cache = c
	} else {
		cache = wazero.NewCompilationCache()
	}
	funcs := withUnavailable(append(builtinFuncs(), cfg.HostFuncs...))
	seen := map[string]bool{}
	for _, f := range funcs {
		k := f.Module + "." + f.Name
		if seen[k] {
			return nil, fmt.Errorf("runtime: host function %s defined twice", k)
		}
		seen[k] = true
	}
	e := &Engine{cache: cache, cacheDir: cfg.CacheDir, logger: cfg.Logger, metrics: cfg.Metrics, funcs: funcs,
		instrumented: map[string][]byte{}, modules: map[moduleKey]*sharedModule{}}
	for _, f := range cfg.HostFuncs {
		if f.Module == "keel:sql/v1" && f.Name == "query" {
			e.sqlQuery = f.Fn
		}
	}
	return e, nil
}

// Metrics returns the engine's metrics.
func (e *Engine) Metrics() *telemetry.Metrics { return e.metrics }

// Close releases the kept modules and the compilation cache. Plugins must be closed
// first (a plugin closed later releases its own module).
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	e.closeIdleModules(ctx)
	return e.cache.Close(ctx)
}

// instrument returns the module with preemption points, memoised by digest so that
// reloading a version (a restart, a rollback) does not redo the rewrite.
func (e *Engine) instrument(d string, wasm []byte) ([]byte, error) {
	e.mu.Lock()
	if b, ok := e.instrumented[d]; ok {
		e.mu.Unlock()
		return b, nil
	}
	e.mu.Unlock()
	// The instrumented module is kept on disk beside wazero's compilation cache, so a
	// restarted host neither re-instruments nor recompiles.
	var path string
	if e.cacheDir != "" {
		path = filepath.Join(e.cacheDir, "preempt", fmt.Sprintf("%s-%d.wasm", d, preempt.DefaultInterval))
		if b, err := os.ReadFile(path); err == nil {
			e.remember(d, b)
			return b, nil
		}
	}
	b, err := preempt.Instrument(wasm, preempt.DefaultInterval)
	if err != nil {
		return nil, err
	}
	if path != "" {
		if err := writeFileAtomic(path, b); err != nil {
			e.logger.Warn("caching an instrumented module", "err", err)
		}
	}
	e.remember(d, b)
	return b, nil
}

func (e *Engine) remember(d string, b []byte) {
	e.mu.Lock()
	if len(e.instrumented) >= 64 { // bound the memo; versions come and go
		for k := range e.instrumented {
			delete(e.instrumented, k)
			break
		}
	}
	e.instrumented[d] = b
	e.mu.Unlock()
}

func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Digest returns the hex SHA-256 of a module, the identity of a plugin build.
func Digest(wasm []byte) string {
	sum := sha256.Sum256(wasm)
	return hex.EncodeToString(sum[:])
}
