// Package plugins keeps the set of active plugin generations and swaps them.
//
// Each plugin name has a slot holding an atomic pointer to its active generation: a
// loaded runtime.Plugin plus its route table. Activation builds the whole new
// generation first (compile, warm the pool, run the health export), then switches the
// pointer, then drains and closes the old generation in the background. Requests
// that picked up the old pointer just before the switch finish on it; a request that
// reaches it after it closed is retried once on the new one by the gateway.
package plugins

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/abi/wire"
	"github.com/keelhq/keel/host/internal/router"
	"github.com/keelhq/keel/host/internal/runtime"
)

// Generation is one active plugin version.
type Generation struct {
	Plugin    *runtime.Plugin
	Routes    *router.Table
	Activated time.Time
	Source    string // where it was loaded from (a path or "upload")
	Digest    string // bundle digest, empty when loaded from a directory
	Stats     runtime.LoadStats
}

// Manifest is a shortcut for g.Plugin.Manifest().
func (g *Generation) Manifest() *manifest.Manifest { return g.Plugin.Manifest() }

type slot struct {
	active atomic.Pointer[Generation]
	mu     sync.Mutex // serialises activations of this plugin
}

// Manager owns the active generations.
type Manager struct {
	engine *runtime.Engine
	logger *slog.Logger

	mu    sync.RWMutex
	slots map[string]*slot

	hooks Hooks

	drains sync.WaitGroup
	// DrainTimeout bounds how long an old generation may take to finish its in-flight
	// calls after a swap.
	drainTimeout time.Duration
}

// Source is one plugin version to activate: its manifest, module and migrations.
type Source struct {
	Manifest *manifest.Manifest
	Wasm     []byte
	// Migrations holds NNNN_name.sql files at its root; nil when the plugin has none.
	Migrations fs.FS
	// Origin says where it came from (a directory, a bundle digest), for logs.
	Origin string
	// Digest identifies the bundle (empty for plugin directories), so that hosts can
	// tell whether they run what the registry says is active.
	Digest string
}

// Hooks let the host prepare capabilities for a version before it takes traffic and
// release them after it is retired.
type Hooks struct {
	// Prepare runs before the new generation is loaded; an error aborts the activation
	// and the previous generation keeps serving.
	Prepare func(ctx context.Context, src *Source) error
	// Activated runs after the switch.
	Activated func(g *Generation)
	// Retired runs after an old generation has drained and closed.
	Retired func(m *manifest.Manifest)
	// Deactivated runs when a plugin stops having an active generation.
	Deactivated func(name string)
}

// NewManager creates an empty manager.
func NewManager(engine *runtime.Engine, logger *slog.Logger, hooks Hooks) *Manager {
	return &Manager{engine: engine, logger: logger, slots: map[string]*slot{}, drainTimeout: time.Minute, hooks: hooks}
}

// Lookup returns the active generation of a plugin, or nil.
func (m *Manager) Lookup(name string) *Generation {
	m.mu.RLock()
	s := m.slots[name]
	m.mu.RUnlock()
	if s == nil {
		return nil
	}
	return s.active.Load()
}

// List returns the active generations sorted by plugin name.
func (m *Manager) List() []*Generation {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*Generation, 0, len(m.slots))
	for _, s := range m.slots {
		if g := s.active.Load(); g != nil {
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Plugin.Name() < out[j].Plugin.Name() })
	return out
}

func (m *Manager) slot(name string) *slot {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.slots[name]
	if s == nil {
		s = &slot{}
		m.slots[name] = s
	}
	return s
}

// Activate loads a plugin version and makes it the active generation of its name.
// If any step fails, the previous generation (if any) keeps serving and nothing of the
// new one remains.
func (m *Manager) Activate(ctx context.Context, src Source) (*Generation, error) {
	man, wasm, source := src.Manifest, src.Wasm, src.Origin
	s := m.slot(man.Name)
	s.mu.Lock()
	defer s.mu.Unlock()

	if m.hooks.Prepare != nil {
		if err := m.hooks.Prepare(ctx, &src); err != nil {
			return nil, fmt.Errorf("plugin %s@%s: %w", man.Name, man.Version, err)
		}
	}
	p, stats, err := m.engine.Load(ctx, man, wasm)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = p.Health(hctx)
	cancel()
	if err != nil {
		_ = p.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("plugin %s@%s: health check before activation: %w", man.Name, man.Version, err)
	}
	// Take over with as many instances as the version being replaced is using, so a swap
	// under load does not make requests wait for instantiation. A failure here is not
	// fatal: the pool grows on demand as before.
	if cur := s.active.Load(); cur != nil {
		if err := p.Warm(ctx, cur.Plugin.Stats().Instances); err != nil {
			m.logger.Warn("pre-warming the new version's pool", "plugin", man.Name, "version", man.Version, "err", err)
		}
	}
	g := &Generation{Plugin: p, Routes: router.New(man.Routes), Activated: time.Now(), Source: source, Digest: src.Digest, Stats: stats}
	old := s.active.Swap(g)
	if old != nil {
		m.retire(old)
	}
	if m.hooks.Activated != nil {
		m.hooks.Activated(g)
	}
	m.logger.Info("plugin activated", "plugin", man.Name, "version", man.Version, "source", source,
		"previous", versionOf(old), "load_ms", stats.Total.Milliseconds())
	return g, nil
}

// Deactivate removes a plugin's active generation; its routes answer 404 afterwards.
func (m *Manager) Deactivate(name string) bool {
	m.mu.RLock()
	s := m.slots[name]
	m.mu.RUnlock()
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.active.Swap(nil)
	if old == nil {
		return false
	}
	m.retire(old)
	if m.hooks.Deactivated != nil {
		m.hooks.Deactivated(name)
	}
	return true
}

func (m *Manager) retire(g *Generation) {
	m.drains.Add(1)
	go func() {
		defer m.drains.Done()
		ctx, cancel := context.WithTimeout(context.Background(), m.drainTimeout)
		defer cancel()
		if err := g.Plugin.Close(ctx); err != nil {
			m.logger.Error("closing a retired generation", "plugin", g.Plugin.Name(), "version", g.Manifest().Version, "err", err)
		}
		if m.hooks.Retired != nil {
			m.hooks.Retired(g.Manifest())
		}
	}()
}

func versionOf(g *Generation) string {
	if g == nil {
		return ""
	}
	return g.Manifest().Version
}

// Close drains and closes every generation, waiting at most until ctx is done.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	slots := m.slots
	m.slots = map[string]*slot{}
	m.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, s := range slots {
		if g := s.active.Swap(nil); g != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := g.Plugin.Close(ctx); err != nil {
					emu.Lock()
					errs = append(errs, err)
					emu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	m.drains.Wait()
	return errors.Join(errs...)
}

// LoadDir activates every plugin found in dir: each subdirectory holding a
// manifest.json and a plugin.wasm. A plugin that fails to load is reported and
// skipped, so one bad plugin does not keep the others from serving; the returned
// error joins every failure.
func (m *Manager) LoadDir(ctx context.Context, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("plugins dir %s: %w", dir, err)
	}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		pdir := filepath.Join(dir, e.Name())
		src, err := ReadDir(pdir)
		if err != nil {
			errs = append(errs, err)
			m.logger.Error("skipping plugin", "dir", pdir, "err", err)
			continue
		}
		if _, err := m.Activate(ctx, *src); err != nil {
			errs = append(errs, err)
			m.logger.Error("plugin failed to load", "dir", pdir, "err", err)
		}
	}
	return errors.Join(errs...)
}

// MaxModuleSize bounds a plugin module read from disk or upload.
const MaxModuleSize = 64 << 20

// ReadDir reads a plugin directory: manifest.json, plugin.wasm and an optional
// migrations/ directory.
func ReadDir(dir string) (*Source, error) {
	f, err := os.Open(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, fmt.Errorf("plugin dir %s: %w", dir, err)
	}
	defer f.Close()
	man, err := manifest.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("plugin dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, "plugin.wasm")
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("plugin dir %s: %w", dir, err)
	}
	if st.Size() > MaxModuleSize {
		return nil, fmt.Errorf("plugin dir %s: plugin.wasm is %d bytes, over the %d byte limit", dir, st.Size(), MaxModuleSize)
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("plugin dir %s: %w", dir, err)
	}
	src := &Source{Manifest: man, Wasm: wasm, Origin: dir}
	if st, err := os.Stat(filepath.Join(dir, "migrations")); err == nil && st.IsDir() {
		src.Migrations = os.DirFS(filepath.Join(dir, "migrations"))
	}
	return src, nil
}

// Route resolves a route of an active plugin, for calls between plugins.
func (m *Manager) Route(plugin, method, path string) (*runtime.Plugin, *manifest.Route, []wire.KV, error) {
	g := m.Lookup(plugin)
	if g == nil {
		return nil, nil, nil, fmt.Errorf("%w: no active plugin %q", ErrNoRoute, plugin)
	}
	match, found, _ := g.Routes.Lookup(method, path)
	if !found {
		return nil, nil, nil, fmt.Errorf("%w: plugin %s has no route %s %s", ErrNoRoute, plugin, method, path)
	}
	return g.Plugin, match.Route, match.Params, nil
}

// ErrNoRoute reports a plugin or route that does not exist.
var ErrNoRoute = noRoute{}

type noRoute struct{}

func (noRoute) Error() string  { return "no such plugin route" }
func (noRoute) NotFound() bool { return true }
