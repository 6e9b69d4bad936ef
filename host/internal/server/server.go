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
}

// New builds a server from cfg. Nothing listens until Start.
func New(cfg *config.Config, logger *slog.Logger) (*Server, error) {
	m := telemetry.New()
	engine, err := runtime.NewEngine(runtime.Config{
		CacheDir: filepath.Join(cfg.DataDir, "compile-cache"),
		Logger:   logger,
		Metrics:  m,
	})
	if err != nil {
		return nil, err
	}
	mgr := plugins.NewManager(engine, logger)
	chk := health.New(func() []health.PluginCheck {
		var out []health.PluginCheck
		for _, g := range mgr.List() {
			out = append(out, health.PluginCheck{Name: g.Plugin.Name(), Version: g.Manifest().Version, Check: g.Plugin.Health})
		}
		return out
	})
	gw := gateway.New(gateway.Config{
		Plugins: mgr, Health: chk, Metrics: m, Logger: logger,
		MaxBodyBytes: cfg.MaxBodyBytes, AccessLog: cfg.AccessLog,
	})
	return &Server{cfg: cfg, logger: logger, metrics: m, engine: engine, plugins: mgr, health: chk, gateway: gw, served: make(chan error, 1)}, nil
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
	if s.ln != nil {
		if err := <-s.served; err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("serve: %w", err))
		}
	}
	s.logger.Info("shutdown complete")
	return errors.Join(errs...)
}
