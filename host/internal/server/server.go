// Package server wires the host together: configuration, engine, plugin manager,
// health, gateway, and the order in which they start and stop.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/bridges/cache"
	"github.com/keelhq/keel/bridges/httpout"
	"github.com/keelhq/keel/bridges/redis"
	"github.com/keelhq/keel/host/internal/capabilities"
	"github.com/keelhq/keel/host/internal/config"
	"github.com/keelhq/keel/host/internal/gateway"
	"github.com/keelhq/keel/host/internal/health"
	"github.com/keelhq/keel/host/internal/plugins"
	"github.com/keelhq/keel/host/internal/runtime"
	"github.com/keelhq/keel/host/internal/telemetry"
)

// Server is one running host.
type Server struct {
	cfg     *config.Config
	logger  *slog.Logger
	metrics *telemetry.Metrics
	engine  *runtime.Engine
	plugins *plugins.Manager
	health  *health.Checker
	gateway *gateway.Gateway
	ln      net.Listener
	served  chan error

	config   *capabilities.Config
	pmetrics *capabilities.Metrics
	http     *capabilities.HTTP
	closers  []func() error
}

// New builds a server from cfg and connects to its dependencies. Nothing listens
// until Start.
func New(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*Server, error) {
	m := telemetry.New()
	s := &Server{cfg: cfg, logger: logger, metrics: m, served: make(chan error, 1)}
	deps := map[string]health.Check{}
	ok := false
	defer func() {
		if !ok {
			s.closeDeps()
		}
	}()

	// Cache: Redis when configured, else in-process; behind a circuit breaker either way
	// so that a cache outage degrades to misses.
	var store cache.Store
	if cfg.RedisURL != "" {
		rc, err := redis.Open(ctx, cfg.RedisURL, redis.Options{SkipPing: true})
		if err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
		rs := cache.Resilient(rc, logger, cache.ResilientOptions{Name: "redis"})
		s.closers = append(s.closers, rs.Close)
		store = rs
		deps["redis"] = func(ctx context.Context) error {
			err := rs.Ping(ctx)
			if st := rs.Status(); st.Degraded() || err != nil {
				msg := st.LastError
				if err != nil {
					msg = err.Error()
				}
				return health.Degraded{Err: fmt.Errorf("cache degraded to misses: %s", msg)}
			}
			return nil
		}
	} else {
		mem := cache.NewMemory(cache.MemoryOptions{})
		s.closers = append(s.closers, mem.Close)
		store = mem
	}
	cacheCap, err := capabilities.NewCache(store, m.Registry())
	if err != nil {
		return nil, err
	}
	s.config = capabilities.NewConfig(filepath.Join(cfg.DataDir, "config"))
	s.pmetrics = capabilities.NewMetrics(m.Registry())
	s.http = capabilities.NewHTTP(httpout.Options{Logger: logger})
	calls := capabilities.NewCalls()
	var funcs []runtime.HostFunc
	for _, f := range [][]runtime.HostFunc{cacheCap.Funcs(), s.config.Funcs(), s.pmetrics.Funcs(), s.http.Funcs(), calls.Funcs()} {
		funcs = append(funcs, f...)
	}

	engine, err := runtime.NewEngine(runtime.Config{
		CacheDir:  filepath.Join(cfg.DataDir, "compile-cache"),
		Logger:    logger,
		Metrics:   m,
		HostFuncs: funcs,
	})
	if err != nil {
		return nil, err
	}
	s.engine = engine
	mgr := plugins.NewManager(engine, logger, plugins.Hooks{
		Prepare: s.prepare,
		Retired: func(man *manifest.Manifest) { s.http.Forget(man.Name, man.Version) },
	})
	calls.SetRouter(mgr)
	chk := health.New(func() []health.PluginCheck {
		var out []health.PluginCheck
		for _, g := range mgr.List() {
			out = append(out, health.PluginCheck{Name: g.Plugin.Name(), Version: g.Manifest().Version, Check: g.Plugin.Health})
		}
		return out
	})
	for name, check := range deps {
		chk.AddDependency(name, check)
	}
	gw := gateway.New(gateway.Config{
		Plugins: mgr, Health: chk, Metrics: m, Logger: logger,
		MaxBodyBytes: cfg.MaxBodyBytes, AccessLog: cfg.AccessLog,
	})
	s.plugins, s.health, s.gateway = mgr, chk, gw
	ok = true
	return s, nil
}

// prepare readies the capabilities a plugin version declares before it is loaded.
func (s *Server) prepare(ctx context.Context, m *manifest.Manifest) error {
	if err := s.config.Check(m); err != nil {
		return err
	}
	return s.pmetrics.Register(m)
}

func (s *Server) closeDeps() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		if err := s.closers[i](); err != nil {
			s.logger.Warn("closing a dependency", "err", err)
		}
	}
	s.closers = nil
}

// App returns the HTTP app, for mounting further routes (the admin API, benchmarks'
// native baselines).
func (s *Server) App() *fiber.App { return s.gateway.App() }

// Engine returns the wasm engine.
func (s *Server) Engine() *runtime.Engine { return s.engine }

// Plugins returns the plugin manager.
func (s *Server) Plugins() *plugins.Manager { return s.plugins }

// Addr returns the listening address once started.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Start loads the boot plugins and starts serving. It returns once the listener is
// open; readiness turns green when the plugins are loaded.
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.HTTPAddr, err)
	}
	s.ln = ln
	go func() { s.served <- s.gateway.Serve(ln) }()
	if s.cfg.PluginsDir != "" {
		t0 := time.Now()
		if err := s.plugins.LoadDir(ctx, s.cfg.PluginsDir); err != nil {
			s.logger.Error("some plugins failed to load; the others are serving", "err", err)
		}
		s.logger.Info("boot plugins loaded", "count", len(s.plugins.List()), "ms", time.Since(t0).Milliseconds())
	}
	s.health.SetStarted()
	s.logger.Info("keel serving", "addr", ln.Addr().String())
	return nil
}

// Shutdown stops accepting requests, lets in-flight ones finish, then closes every
// plugin generation and the engine. It is bounded by ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.logger.Info("shutting down: draining in-flight requests")
	var errs []error
	if err := s.gateway.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http: %w", err))
	}
	if err := s.plugins.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("plugins: %w", err))
	}
	if err := s.engine.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("engine: %w", err))
	}
	s.closeDeps()
	if s.ln != nil {
		if err := <-s.served; err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("serve: %w", err))
		}
	}
	s.logger.Info("shutdown complete")
	return errors.Join(errs...)
}
