// Package server wires the host together: configuration, engine, plugin manager,
// health, gateway, and the order in which they start and stop.
package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/bridges/bus"
	"github.com/keelhq/keel/bridges/cache"
	"github.com/keelhq/keel/bridges/httpout"
	"github.com/keelhq/keel/bridges/kafka"
	"github.com/keelhq/keel/bridges/nats"
	"github.com/keelhq/keel/bridges/postgres"
	"github.com/keelhq/keel/bridges/redis"
	"github.com/keelhq/keel/host/internal/admin"
	"github.com/keelhq/keel/host/internal/admin/dashboard"
	"github.com/keelhq/keel/host/internal/authn"
	"github.com/keelhq/keel/host/internal/capabilities"
	"github.com/keelhq/keel/host/internal/config"
	"github.com/keelhq/keel/host/internal/deploy"
	"github.com/keelhq/keel/host/internal/events"
	"github.com/keelhq/keel/host/internal/gateway"
	"github.com/keelhq/keel/host/internal/health"
	"github.com/keelhq/keel/host/internal/hostaudit"
	"github.com/keelhq/keel/host/internal/plugins"
	"github.com/keelhq/keel/host/internal/runtime"
	"github.com/keelhq/keel/host/internal/telemetry"
	hostmigrations "github.com/keelhq/keel/migrations/host"
	"github.com/keelhq/keel/plugin-registry/bundle"
	"github.com/keelhq/keel/plugin-registry/store"
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

	db            *postgres.DB
	hostPool      *pgxpool.Pool
	audit         *hostaudit.Recorder
	verifier      *authn.Verifier
	authenticate  func(c *fiber.Ctx) (*gateway.Principal, error)
	store         *store.Store
	deployer      *deploy.Deployer
	trusted       []ed25519.PublicKey
	stopFollow    func()
	stopHeartbeat func()
	started       time.Time
	data          *capabilities.Data
	events        *events.Events
	config        *capabilities.Config
	pmetrics      *capabilities.Metrics
	http          *capabilities.HTTP
	closers       []func() error
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
	s.data = capabilities.NewData()
	if err := s.openDatabase(ctx, deps); err != nil {
		return nil, err
	}
	var funcs []runtime.HostFunc
	for _, f := range [][]runtime.HostFunc{cacheCap.Funcs(), s.config.Funcs(), s.pmetrics.Funcs(), s.http.Funcs(), calls.Funcs(), s.data.Funcs()} {
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
		Activated: func(g *plugins.Generation) {
			if s.events != nil {
				if err := s.events.Sync(g.Manifest()); err != nil {
					logger.Error("subscriptions", "plugin", g.Plugin.Name(), "err", err)
				}
			}
		},
		Retired: func(man *manifest.Manifest) { s.http.Forget(man.Name, man.Version) },
		Deactivated: func(name string) {
			if s.events != nil {
				s.events.Stop(name)
			}
		},
	})
	calls.SetRouter(mgr)
	if err := s.openEvents(ctx, deps, mgr); err != nil {
		return nil, err
	}
	chk := health.New(func() []health.PluginCheck {
		var out []health.PluginCheck
		for _, g := range mgr.List() {
			out = append(out, health.PluginCheck{Name: g.Plugin.Name(), Version: g.Manifest().Version, Check: g.Plugin.Health})
		}
		return out
	})
	authenticate, err := s.authenticator(ctx)
	if err != nil {
		return nil, err
	}
	s.authenticate = authenticate
	s.audit = hostaudit.New(s.hostPool, logger, m.Registry())
	if s.hostPool != nil {
		if err := s.events.Bus().EnsureTopic(ctx, bus.TopicSpec{Name: hostaudit.Topic, Partitions: 1}); err != nil {
			return nil, fmt.Errorf("audit topic: %w", err)
		}
		actx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); s.audit.Run(actx) }()
		// Registered before the database closes (closers run in reverse): flush first.
		s.closers = append(s.closers, func() error { cancel(); <-done; return nil })
	}
	gw := gateway.New(gateway.Config{
		Plugins: mgr, Health: chk, Metrics: m, Logger: logger,
		MaxBodyBytes: cfg.MaxBodyBytes, AccessLog: cfg.AccessLog, Authenticate: authenticate,
		CORSOrigins: cfg.CORSOrigins, TenantRPS: cfg.TenantRPS,
		OnDenied: func(c *fiber.Ctx, status int, p *gateway.Principal, route, reason string) {
			rec := hostaudit.Record{Action: "access.denied", Actor: "anonymous", Resource: c.Method() + " " + c.Path(),
				RequestID: gateway.RequestID(c), Detail: map[string]any{"status": status, "reason": reason, "route": route, "ip": c.IP()}}
			if p != nil {
				rec.Tenant, rec.Actor = p.Tenant, p.Subject
			}
			s.audit.Record(rec)
		},
	})
	s.plugins, s.health, s.gateway = mgr, chk, gw
	if err := s.openRegistry(ctx, deps); err != nil {
		return nil, err
	}
	for name, check := range deps {
		chk.AddDependency(name, check)
	}
	started := time.Now()
	s.started = started
	adminJWT := s.adminJWT()
	admin.Mount(gw.App(), admin.Config{Token: cfg.AdminToken, Deployer: s.deployer, Store: s.store, Plugins: mgr,
		Logger: logger, HostID: cfg.HostID, Started: started, AdminJWT: adminJWT, Hosts: s.hosts,
		Audit: func(action, actor, resource, requestID string, detail map[string]any) {
			s.audit.Record(hostaudit.Record{Action: action, Actor: actor, Resource: resource, RequestID: requestID, Detail: detail})
		}})
	admin.MountMetrics(gw.App(), admin.MetricsConfig{Token: cfg.AdminToken, AdminJWT: adminJWT, Logger: logger, Gatherer: m.Registry(),
		Readiness: func(ctx context.Context) any { return chk.Report(ctx) }, HostID: cfg.HostID, Started: started})
	admin.MountEvents(gw.App(), admin.EventsConfig{Token: cfg.AdminToken, AdminJWT: adminJWT, Logger: logger, Bus: s.events.Bus(),
		Topics: []string{hostaudit.Topic},
		Manifests: func() []*manifest.Manifest {
			gens := mgr.List()
			out := make([]*manifest.Manifest, 0, len(gens))
			for _, g := range gens {
				out = append(out, g.Manifest())
			}
			return out
		},
		Audit: func(action, actor, resource, requestID string, detail map[string]any) {
			s.audit.Record(hostaudit.Record{Action: action, Actor: actor, Resource: resource, RequestID: requestID, Detail: detail})
		}})
	dashboard.Mount(gw.App())
	ok = true
	return s, nil
}

// prepare readies the capabilities a plugin version declares before it is loaded:
// settings, metrics, its schema and migrations, its topics.
func (s *Server) prepare(ctx context.Context, src *plugins.Source) error {
	m := src.Manifest
	if err := s.config.Check(m); err != nil {
		return err
	}
	caps := m.Capabilities
	if (caps.SQL || len(caps.Publish) > 0) && s.db == nil {
		return fmt.Errorf("declares sql or publish, which need a database: set KEEL_DATABASE_URL")
	}
	if src.Migrations != nil && !caps.SQL {
		return fmt.Errorf("ships migrations but does not declare the sql capability")
	}
	if caps.SQL {
		pdb, err := postgres.EnsurePlugin(ctx, s.db, m.Name)
		if err != nil {
			return err
		}
		if src.Migrations != nil {
			applied, err := postgres.Migrate(ctx, s.db, m.Name, src.Migrations, postgres.WithMigrationTimeout(time.Minute))
			if err != nil {
				return fmt.Errorf("migrations: %w", err)
			}
			if len(applied) > 0 {
				s.logger.Info("plugin migrations applied", "plugin", m.Name, "version", m.Version, "files", applied)
			}
		}
		if err := s.db.VerifyTenantTables(ctx, m.Name); err != nil {
			return err
		}
		s.data.Register(m.Name, pdb)
	}
	if len(caps.Publish)+len(caps.Subscribe) > 0 {
		if err := s.events.Provision(ctx, m); err != nil {
			return err
		}
	}
	return s.pmetrics.Register(m)
}

// openRegistry opens the plugin registry (with a database) and the deployer that
// follows it.
func (s *Server) openRegistry(ctx context.Context, deps map[string]health.Check) error {
	var trusted []ed25519.PublicKey
	if s.cfg.TrustedKeys != "" {
		keys, err := bundle.LoadTrustedKeys(s.cfg.TrustedKeys)
		if err != nil {
			return fmt.Errorf("trusted keys: %w", err)
		}
		trusted = keys
	}
	s.trusted = trusted
	if s.db == nil {
		return nil
	}
	st, err := store.Open(ctx, s.cfg.DatabaseURL, store.WithLogger(s.logger))
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	s.closers = append(s.closers, func() error { st.Close(); return nil })
	s.store = st
	s.deployer = deploy.New(deploy.Config{Store: st, Plugins: s.plugins, Logger: s.logger, TrustedKeys: trusted, AllowUnsigned: s.cfg.DevMode})
	return nil
}

// openDatabase connects to PostgreSQL and applies the host's migrations.
func (s *Server) openDatabase(ctx context.Context, deps map[string]health.Check) error {
	if s.cfg.DatabaseURL == "" {
		return nil
	}
	db, err := postgres.Open(ctx, s.cfg.DatabaseURL, postgres.WithLogger(s.logger))
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	s.closers = append(s.closers, func() error { db.Close(); return nil })
	applied, err := postgres.Migrate(ctx, db, postgres.HostScope, hostmigrations.FS())
	if err != nil {
		return fmt.Errorf("host migrations: %w", err)
	}
	if len(applied) > 0 {
		s.logger.Info("host migrations applied", "files", applied)
	}
	if err := s.metrics.Registry().Register(db.Collector()); err != nil {
		return err
	}
	s.db = db
	deps["postgres"] = db.Ping
	// A small pool of the host's own, for host-level statements (session checks, the
	// host's audit records); the bridge keeps its privileged pool to itself.
	pc, err := pgxpool.ParseConfig(s.cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	pc.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	s.closers = append(s.closers, func() error { pool.Close(); return nil })
	s.hostPool = pool
	return nil
}

// openEvents connects the event bus (Kafka when brokers are configured, else the
// NATS server at KEEL_NATS_URL, else an embedded NATS server with JetStream) and, with
// a database, starts the outbox relay.
func (s *Server) openEvents(ctx context.Context, deps map[string]health.Check, mgr *plugins.Manager) error {
	var b bus.Bus
	var err error
	switch {
	case len(s.cfg.KafkaBrokers) > 0:
		b, err = kafka.Open(s.cfg.KafkaBrokers, kafka.WithLogger(s.logger))
		if err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
	case s.cfg.NATSURL != "":
		b, err = nats.Open(ctx, s.cfg.NATSURL, nats.WithLogger(s.logger))
		if err != nil {
			return fmt.Errorf("nats: %w", err)
		}
	default:
		srv, err := nats.StartEmbedded(s.cfg.DataDir, nats.WithServerLogger(s.logger))
		if err != nil {
			return fmt.Errorf("embedded nats: %w", err)
		}
		s.closers = append(s.closers, func() error { srv.Shutdown(); return nil })
		b, err = nats.Open(ctx, srv.ClientURL(), nats.WithLogger(s.logger))
		if err != nil {
			return fmt.Errorf("embedded nats: %w", err)
		}
	}
	s.closers = append(s.closers, b.Close)
	deps["events"] = b.Ping
	bm, err := bus.NewMetrics(s.metrics.Registry())
	if err != nil {
		return err
	}
	s.events = events.New(b, func(name string) *runtime.Plugin {
		if g := mgr.Lookup(name); g != nil {
			return g.Plugin
		}
		return nil
	}, s.logger, bm, s.cfg.HostID)
	s.closers = append(s.closers, func() error { s.events.Close(); return nil })
	if s.db != nil {
		relay, err := postgres.NewRelay(s.db, func(ctx context.Context, topic string, msgs []postgres.RelayMessage) error {
			out := make([]bus.Message, len(msgs))
			for i, m := range msgs {
				out[i] = bus.Message{ID: m.EventID, Key: m.Key, Value: m.Payload, Headers: m.Headers}
			}
			return b.Publish(ctx, topic, out...)
		})
		if err != nil {
			return err
		}
		if err := s.metrics.Registry().Register(relay.Collector()); err != nil {
			return err
		}
		rctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := relay.Run(rctx); err != nil && rctx.Err() == nil {
				s.logger.Error("outbox relay stopped", "err", err)
			}
		}()
		// Closers run in reverse: the relay stops before the bus and the database close.
		s.closers = append(s.closers, func() error { cancel(); <-done; return nil })
	}
	return nil
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

// Authenticate checks a request's access token as the gateway does for plugin routes
// (signature, claims, revocation) and returns its principal. Routes mounted on App
// beside the gateway's use it, so a native handler is held to the same credentials;
// without a configured verifier it fails closed.
func (s *Server) Authenticate(c *fiber.Ctx) (*gateway.Principal, error) {
	if s.authenticate == nil {
		return nil, errors.New("no access token verifier is configured on this host")
	}
	return s.authenticate(c)
}

// Deployer returns the registry deployer, nil without a database.
func (s *Server) Deployer() *deploy.Deployer { return s.deployer }

// Metrics returns the host's metrics.
func (s *Server) Metrics() *telemetry.Metrics { return s.metrics }

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
		if err := s.bootBundles(ctx); err != nil {
			s.logger.Error("some bundles failed to load; the others are serving", "err", err)
		}
		s.logger.Info("boot plugins loaded", "count", len(s.plugins.List()), "ms", time.Since(t0).Milliseconds())
	}
	if s.hostPool != nil {
		hctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); s.heartbeat(hctx) }()
		s.stopHeartbeat = func() { cancel(); <-done }
	}
	if s.deployer != nil {
		if err := s.deployer.Reconcile(ctx); err != nil {
			s.logger.Error("initial reconcile with the registry", "err", err)
		}
		rctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); s.deployer.Run(rctx) }()
		s.stopFollow = func() { cancel(); <-done }
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
	if s.stopFollow != nil {
		s.stopFollow()
	}
	if s.stopHeartbeat != nil {
		s.stopHeartbeat()
	}
	if s.events != nil {
		s.events.Close() // stop consuming before the plugins that handle events close
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

// bootBundles loads the *.keel bundles of the plugins directory: through the registry
// when there is one (uploaded, and activated if their plugin has no active version),
// otherwise straight into the plugin manager after verification.
func (s *Server) bootBundles(ctx context.Context) error {
	paths, err := filepath.Glob(filepath.Join(s.cfg.PluginsDir, "*"+bundle.Ext))
	if err != nil || len(paths) == 0 {
		return err
	}
	raws := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		raws[p] = b
	}
	if s.deployer != nil {
		return s.deployer.Boot(ctx, raws)
	}
	var errs []error
	for p, raw := range raws {
		b, err := bundle.Read(bytes.NewReader(raw), bundle.ReadOptions{TrustedKeys: s.trusted, AllowUnsigned: s.cfg.DevMode, MaxABI: manifest.CurrentABI})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		if len(b.Migrations()) > 0 {
			errs = append(errs, fmt.Errorf("%s: has migrations, which need KEEL_DATABASE_URL", p))
			continue
		}
		if _, err := s.plugins.Activate(ctx, plugins.Source{Manifest: b.Manifest(), Wasm: b.Wasm(), Origin: p}); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// authenticator builds the gateway's token check from KEEL_JWT_PUBLIC_KEY; without it,
// non-public routes answer 401. Revocation is checked against the auth plugin's
// sessions table through a small pool of the host's own.
func (s *Server) authenticator(ctx context.Context) (func(c *fiber.Ctx) (*gateway.Principal, error), error) {
	if s.cfg.JWTPublicKey == "" {
		return nil, nil
	}
	pub, err := authn.ParsePublicKey(s.cfg.JWTPublicKey)
	if err != nil {
		return nil, fmt.Errorf("KEEL_JWT_PUBLIC_KEY: %w", err)
	}
	var opts authn.Options
	if pool := s.hostPool; pool != nil {
		opts.Sessions = func(ctx context.Context, sid string) (bool, error) {
			var ok bool
			err := pool.QueryRow(ctx, `SELECT revoked_at IS NULL AND expires_at > now() FROM plg_auth.sessions WHERE id = $1`, sid).Scan(&ok)
			if errors.Is(err, pgx.ErrNoRows) {
				return false, nil
			}
			return ok, err
		}
	} else {
		s.logger.Warn("access tokens are verified without revocation checks: no database")
	}
	v, err := authn.New(pub, opts)
	if err != nil {
		return nil, err
	}
	s.verifier = v
	return func(c *fiber.Ctx) (*gateway.Principal, error) {
		tok, ok := strings.CutPrefix(c.Get("Authorization"), "Bearer ")
		if !ok || tok == "" {
			return nil, errors.New("missing bearer access token")
		}
		cl, err := v.Verify(c.UserContext(), tok)
		if errors.Is(err, authn.ErrUnavailable) {
			s.logger.Warn("session check failed", "err", err, "request_id", gateway.RequestID(c))
			return nil, gateway.ErrAuthUnavailable
		}
		if err != nil {
			s.logger.Info("access token refused", "reason", err.Error(), "request_id", gateway.RequestID(c), "ip", c.IP(), "audit", true)
			return nil, err
		}
		return &gateway.Principal{Tenant: cl.Tenant, Subject: cl.Subject, Session: cl.Session, Permissions: cl.Permissions}, nil
	}, nil
}

// AdminTenant and AdminPermission define an admin access token: one issued for the
// platform tenant carrying keel.admin. Tenant administrators elsewhere never operate the
// platform, whatever permissions their tenant hands out.
const (
	AdminTenant     = "platform"
	AdminPermission = "keel.admin"
)

// adminJWT accepts platform administrators' access tokens on the admin API.
func (s *Server) adminJWT() func(ctx context.Context, token string) (string, error) {
	if s.verifier == nil {
		return nil
	}
	return func(ctx context.Context, token string) (string, error) {
		cl, err := s.verifier.Verify(ctx, token)
		if err != nil {
			return "", err
		}
		if cl.Tenant != AdminTenant || !slices.Contains(cl.Permissions, AdminPermission) {
			return "", errors.New("not a platform administrator")
		}
		return "jwt:" + cl.Subject, nil
	}
}

// Version is the host's build version, set by the command from its linker flag.
var Version = "dev"

// heartbeat records this host in keel_host.hosts every 5 s, with the plugin versions
// it serves, and removes the row on a clean shutdown.
func (s *Server) heartbeat(ctx context.Context) {
	beat := func() {
		plugins := map[string]string{}
		for _, g := range s.plugins.List() {
			plugins[g.Plugin.Name()] = g.Manifest().Version
		}
		pj, _ := json.Marshal(plugins)
		bctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if _, err := s.hostPool.Exec(bctx, `INSERT INTO keel_host.hosts (id, started_at, last_seen, version, plugins)
			VALUES ($1, $2, now(), $3, $4) ON CONFLICT (id) DO UPDATE
			SET started_at = EXCLUDED.started_at, last_seen = now(), version = EXCLUDED.version, plugins = EXCLUDED.plugins`,
			s.cfg.HostID, s.started, Version, pj); err != nil {
			s.logger.Warn("host heartbeat", "err", err)
		}
	}
	beat()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if _, err := s.hostPool.Exec(dctx, `DELETE FROM keel_host.hosts WHERE id = $1`, s.cfg.HostID); err != nil {
				s.logger.Warn("removing the host row", "err", err)
			}
			return
		case <-t.C:
			beat()
		}
	}
}

// hosts lists the hosts sharing the database for the admin API.
func (s *Server) hosts(ctx context.Context) ([]admin.HostView, error) {
	if s.hostPool == nil {
		return []admin.HostView{{ID: s.cfg.HostID, Started: s.started, LastSeen: time.Now(), Version: Version, Alive: true, Self: true}}, nil
	}
	rows, err := s.hostPool.Query(ctx, `SELECT id, started_at, last_seen, version, plugins, last_seen > now() - interval '15 seconds'
		FROM keel_host.hosts ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []admin.HostView
	for rows.Next() {
		var h admin.HostView
		var pj []byte
		if err := rows.Scan(&h.ID, &h.Started, &h.LastSeen, &h.Version, &pj, &h.Alive); err != nil {
			return nil, err
		}
		_ = json.Unmarshal(pj, &h.Plugins)
		h.Self = h.ID == s.cfg.HostID
		out = append(out, h)
	}
	return out, rows.Err()
}
