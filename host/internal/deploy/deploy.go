// Package deploy connects the plugin registry to the running host: uploading verified
// bundles, activating, rolling back and deactivating versions, and following the
// registry's active set so that every host sharing the database converges.
//
// An activation builds the whole new generation on the host that receives it (verify,
// compile, migrate, warm, health check) before anything changes; only then is the
// switch recorded in the registry, which notifies the other hosts. A version whose
// health fails soon after the switch is rolled back automatically.
package deploy

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing/fstest"
	"time"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/host/internal/plugins"
	"github.com/keelhq/keel/plugin-registry/bundle"
	"github.com/keelhq/keel/plugin-registry/store"
)

// Errors callers map to HTTP statuses.
var (
	ErrBusy       = errors.New("another activation of this plugin is in progress")
	ErrActivation = errors.New("activation failed")
)

// Config configures a Deployer.
type Config struct {
	Store   *store.Store
	Plugins *plugins.Manager
	Logger  *slog.Logger
	// TrustedKeys verify bundle signatures; AllowUnsigned (development only) accepts
	// unsigned bundles and bundles signed by unknown keys.
	TrustedKeys   []ed25519.PublicKey
	AllowUnsigned bool
	// MaxBundleBytes bounds an upload.
	MaxBundleBytes int64
	// Reconcile is the period of the safety-net reconciliation (default 1 s).
	Reconcile time.Duration
	// Probation is how long a new version's health is watched after a switch before
	// it is considered good (default 3 s); a failure rolls it back.
	Probation time.Duration
}

// Deployer runs deployments on one host.
type Deployer struct {
	cfg Config

	mu   sync.Mutex
	busy map[string]*change // plugins with a change in progress on this host
}

// New creates a deployer.
func New(cfg Config) *Deployer {
	if cfg.Reconcile <= 0 {
		cfg.Reconcile = time.Second
	}
	if cfg.Probation <= 0 {
		cfg.Probation = 3 * time.Second
	}
	if cfg.MaxBundleBytes <= 0 {
		cfg.MaxBundleBytes = bundle.DefaultMaxSize
	}
	return &Deployer{cfg: cfg, busy: map[string]*change{}}
}

// Read verifies raw bundle bytes against the host's trust settings.
func (d *Deployer) Read(raw []byte) (*bundle.Bundle, error) {
	return bundle.Read(bytes.NewReader(raw), bundle.ReadOptions{
		MaxSize: d.cfg.MaxBundleBytes, TrustedKeys: d.cfg.TrustedKeys,
		AllowUnsigned: d.cfg.AllowUnsigned, MaxABI: manifest.CurrentABI,
	})
}

// Upload verifies and stores a bundle. A refused bundle leaves the registry unchanged.
func (d *Deployer) Upload(ctx context.Context, raw []byte, actor string) (store.Version, error) {
	b, err := d.Read(raw)
	if err != nil {
		return store.Version{}, err
	}
	return d.cfg.Store.Put(ctx, b, raw, actor)
}

// change is a change of one plugin in progress on this host.
type change struct {
	follow bool          // a background change (following the registry, an automatic rollback), not a request
	done   chan struct{} // closed by unlock
}

// maxFollowWait bounds how long a requested change waits for this host to finish
// following the registry; one follow is one load, normally well under a second.
const maxFollowWait = 30 * time.Second

// lock claims name for a change requested through the API (activate, rollback,
// deactivate). Two requested changes never overlap: the second fails at once with
// ErrBusy, which the API reports as 409. A follow of the registry in progress is
// waited for instead: it is the host catching up with a change that already
// happened, and an operator acting right after seeing it converge must not be refused.
func (d *Deployer) lock(ctx context.Context, name string) bool {
	ctx, cancel := context.WithTimeout(ctx, maxFollowWait)
	defer cancel()
	for {
		d.mu.Lock()
		cur := d.busy[name]
		if cur == nil {
			d.busy[name] = &change{done: make(chan struct{})}
			d.mu.Unlock()
			return true
		}
		d.mu.Unlock()
		if !cur.follow {
			return false
		}
		select {
		case <-cur.done:
		case <-ctx.Done():
			return false
		}
	}
}

// lockFollow claims name for following the registry; it never waits: whatever holds
// the plugin will converge, and the next pass looks again.
func (d *Deployer) lockFollow(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.busy[name] != nil {
		return false
	}
	d.busy[name] = &change{follow: true, done: make(chan struct{})}
	return true
}

func (d *Deployer) unlock(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c := d.busy[name]; c != nil {
		close(c.done)
		delete(d.busy, name)
	}
}

// source loads a stored version as an activatable source, verifying it again: what
// is in the database is not trusted more than an upload.
func (d *Deployer) source(ctx context.Context, name, version string) (*plugins.Source, error) {
	_, raw, err := d.cfg.Store.Get(ctx, name, version)
	if err != nil {
		return nil, err
	}
	b, err := d.Read(raw)
	if err != nil {
		return nil, fmt.Errorf("stored bundle %s@%s: %w", name, version, err)
	}
	src := &plugins.Source{Manifest: b.Manifest(), Wasm: b.Wasm(), Origin: "registry:" + b.Digest()[:12], Digest: b.Digest()}
	if migs := b.Migrations(); len(migs) > 0 {
		fsys := fstest.MapFS{}
		for _, m := range migs {
			fsys[m.Name] = &fstest.MapFile{Data: []byte(m.SQL), Mode: 0o444}
		}
		src.Migrations = fsys
	}
	return src, nil
}

// Activate makes name@version the active version: built and health-checked here
// first, then recorded in the registry (which tells the other hosts). On any failure
// the previous version keeps serving and the failure is recorded. name and version
// are kept after it returns (the probation watch): callers pass strings they own, not
// views into a request buffer (see admin's param).
func (d *Deployer) Activate(ctx context.Context, name, version, actor string) (store.Active, error) {
	if !d.lock(ctx, name) {
		return store.Active{}, fmt.Errorf("plugin %s: %w", name, ErrBusy)
	}
	defer d.unlock(name)
	return d.activateLocked(ctx, name, version, actor, false)
}

func (d *Deployer) activateLocked(ctx context.Context, name, version, actor string, rollback bool) (store.Active, error) {
	start := time.Now()
	src, err := d.source(ctx, name, version)
	if err != nil {
		return store.Active{}, err
	}
	prev := d.cfg.Plugins.Lookup(name)
	if _, err := d.cfg.Plugins.Activate(ctx, *src); err != nil {
		if merr := d.cfg.Store.MarkFailed(context.WithoutCancel(ctx), name, version, err.Error()); merr != nil {
			d.cfg.Logger.Error("recording a failed activation", "plugin", name, "version", version, "err", merr)
		}
		return store.Active{}, fmt.Errorf("%w: %s@%s: %v", ErrActivation, name, version, err)
	}
	var act store.Active
	if rollback {
		act, err = d.cfg.Store.Rollback(ctx, name, actor)
	} else {
		act, err = d.cfg.Store.Activate(ctx, name, version, actor)
	}
	if err != nil {
		// The registry did not record the switch: put the previous version back so
		// this host does not diverge from the others.
		d.restore(context.WithoutCancel(ctx), name, prev)
		return store.Active{}, fmt.Errorf("plugin %s: recording the activation: %w", name, err)
	}
	d.cfg.Logger.Info("activation complete", "plugin", name, "version", version, "actor", actor, "generation", act.Generation,
		"ms", time.Since(start).Milliseconds())
	go d.probation(name, version, act.Generation)
	return act, nil
}

func (d *Deployer) restore(ctx context.Context, name string, prev *plugins.Generation) {
	if prev == nil {
		d.cfg.Plugins.Deactivate(name)
		return
	}
	if prev.Digest == "" {
		d.cfg.Logger.Error("cannot restore a directory-loaded generation; run reconcile", "plugin", name)
		return
	}
	src, err := d.source(ctx, name, prev.Manifest().Version)
	if err == nil {
		_, err = d.cfg.Plugins.Activate(ctx, *src)
	}
	if err != nil {
		d.cfg.Logger.Error("restoring the previous version failed", "plugin", name, "err", err)
	}
}

// probation watches a new version's health for a while after the switch and rolls
// it back if the health check fails, unless something else changed it meanwhile.
func (d *Deployer) probation(name, version string, generation int64) {
	deadline := time.Now().Add(d.cfg.Probation)
	for time.Now().Before(deadline) {
		time.Sleep(d.cfg.Probation / 6)
		g := d.cfg.Plugins.Lookup(name)
		if g == nil || g.Manifest().Version != version {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := g.Plugin.Health(ctx)
		cancel()
		if err == nil {
			continue
		}
		d.cfg.Logger.Warn("new version unhealthy after the switch; rolling back", "plugin", name, "version", version, "err", err)
		ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if active, aerr := d.cfg.Store.Active(ctx); aerr != nil || active[name].Generation != generation {
			return // someone else changed it; leave it
		}
		if !d.lockFollow(name) {
			return
		}
		defer d.unlock(name)
		_ = d.cfg.Store.MarkFailed(ctx, name, version, "unhealthy after the switch: "+err.Error())
		if _, err := d.activateLocked(ctx, name, "", "auto-rollback", true); err != nil {
			d.cfg.Logger.Error("automatic rollback failed", "plugin", name, "err", err)
		}
		return
	}
}

// Rollback activates the version that was active before the current one.
func (d *Deployer) Rollback(ctx context.Context, name, actor string) (store.Active, error) {
	if !d.lock(ctx, name) {
		return store.Active{}, fmt.Errorf("plugin %s: %w", name, ErrBusy)
	}
	defer d.unlock(name)
	active, err := d.cfg.Store.Active(ctx)
	if err != nil {
		return store.Active{}, err
	}
	cur, ok := active[name]
	if !ok || cur.PreviousVersion == "" {
		return store.Active{}, fmt.Errorf("plugin %s: %w", name, store.ErrNoPrevious)
	}
	return d.activateLocked(ctx, name, cur.PreviousVersion, actor, true)
}

// Deactivate stops serving a plugin on every host.
func (d *Deployer) Deactivate(ctx context.Context, name, actor string) error {
	if !d.lock(ctx, name) {
		return fmt.Errorf("plugin %s: %w", name, ErrBusy)
	}
	defer d.unlock(name)
	if err := d.cfg.Store.Deactivate(ctx, name, actor); err != nil {
		return err
	}
	d.cfg.Plugins.Deactivate(name)
	return nil
}

// Reconcile makes this host run exactly the registry's active versions. Failures to
// load a version are logged and retried on the next pass; the host keeps serving what
// it has.
func (d *Deployer) Reconcile(ctx context.Context) error {
	active, err := d.cfg.Store.Active(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for name, a := range active {
		g := d.cfg.Plugins.Lookup(name)
		if g != nil && g.Digest == a.Digest {
			continue
		}
		if !d.lockFollow(name) {
			continue // an activation is running here; it will converge
		}
		src, err := d.source(ctx, name, a.Version)
		if err == nil {
			_, err = d.cfg.Plugins.Activate(ctx, *src)
		}
		d.unlock(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("plugin %s@%s: %w", name, a.Version, err))
			continue
		}
		d.cfg.Logger.Info("followed the registry", "plugin", name, "version", a.Version, "generation", a.Generation)
	}
	for _, g := range d.cfg.Plugins.List() {
		name := g.Plugin.Name()
		if _, ok := active[name]; !ok && g.Digest != "" {
			if d.lockFollow(name) {
				d.cfg.Plugins.Deactivate(name)
				d.unlock(name)
				d.cfg.Logger.Info("followed the registry: deactivated", "plugin", name)
			}
		}
	}
	return errors.Join(errs...)
}

// Run follows the registry until ctx ends: immediately on a notification, and every
// Reconcile period in case a notification was missed.
func (d *Deployer) Run(ctx context.Context) {
	kick := make(chan struct{}, 1)
	go func() {
		if err := d.cfg.Store.Watch(ctx, func(string) {
			select {
			case kick <- struct{}{}:
			default:
			}
		}); err != nil && ctx.Err() == nil {
			d.cfg.Logger.Error("registry watch stopped", "err", err)
		}
	}()
	t := time.NewTicker(d.cfg.Reconcile)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		if err := d.Reconcile(rctx); err != nil && ctx.Err() == nil {
			d.cfg.Logger.Warn("reconcile", "err", err)
		}
		cancel()
	}
}

// Boot uploads the bundles found in a directory and activates each plugin that has
// no active version yet, so a fresh platform starts with its first-party plugins and
// later boots leave operators' choices alone.
func (d *Deployer) Boot(ctx context.Context, raws map[string][]byte) error {
	active, err := d.cfg.Store.Active(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for path, raw := range raws {
		v, err := d.Upload(ctx, raw, "boot")
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			continue
		}
		if a, ok := active[v.Name]; ok {
			if a.Version != v.Version {
				// Say so: after an upgrade of the bundles, a developer otherwise wonders
				// why the old version still answers.
				d.cfg.Logger.Info("boot bundle uploaded; the registry keeps the active version",
					"plugin", v.Name, "bundle", v.Version, "active", a.Version,
					"activate", "keel plugin activate "+v.Name+" "+v.Version)
			}
			continue
		}
		if _, err := d.Activate(ctx, v.Name, v.Version, "boot"); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
		}
	}
	return errors.Join(errs...)
}
