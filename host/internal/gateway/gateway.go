// Package gateway is the host's HTTP front door: request ids, JSON errors, health and
// metrics endpoints, and the routing of /api/{plugin}/... into plugin generations.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/cors"
	"github.com/valyala/fasthttp"

	"github.com/keelhq/keel/abi/wire"
	"github.com/keelhq/keel/host/internal/health"
	"github.com/keelhq/keel/host/internal/plugins"
	"github.com/keelhq/keel/host/internal/runtime"
	"github.com/keelhq/keel/host/internal/telemetry"
)

// Config configures a Gateway.
type Config struct {
	Plugins *plugins.Manager
	Health  *health.Checker
	Metrics *telemetry.Metrics
	Logger  *slog.Logger
	// MaxBodyBytes bounds any request body, before the plugin's own limit applies.
	MaxBodyBytes int
	// AccessLog logs one line per request at Info level.
	AccessLog bool
	// CORSOrigins are the browser origins allowed to call /api; empty disables CORS.
	CORSOrigins []string
	// TenantRPS limits requests per tenant and second (bursts of twice that); 0: none.
	TenantRPS float64
	// OnDenied is told of every refused credential (401) and permission (403) on a
	// non-public route, for the audit trail. It must not block.
	OnDenied func(c *fiber.Ctx, status int, p *Principal, route, reason string)
	// Authenticate verifies credentials for non-public routes. When nil, such routes
	// answer 401: the host fails closed rather than serving them unauthenticated.
	Authenticate func(c *fiber.Ctx) (*Principal, error)
}

// Principal is an authenticated caller.
type Principal struct {
	Tenant      string
	Subject     string
	Session     string
	Permissions []string
}

// ErrAuthUnavailable is returned by Authenticate when credentials cannot be checked
// right now (the gateway answers 503, not 401).
var ErrAuthUnavailable = errors.New("authentication unavailable")

// Gateway serves HTTP.
type Gateway struct {
	cfg    Config
	app    *fiber.App
	bufs   sync.Pool
	limits *tenantLimits
}

// New builds the gateway and its routes.
func New(cfg Config) *Gateway {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 16 << 20
	}
	g := &Gateway{cfg: cfg}
	g.bufs.New = func() any { b := make([]byte, 0, 8<<10); return &b }
	g.app = fiber.New(fiber.Config{
		// Large enough for a plugin bundle upload; /api requests are held to
		// MaxBodyBytes by the gateway itself.
		BodyLimit:             max(cfg.MaxBodyBytes, MaxUploadBytes),
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          60 * time.Second,
		IdleTimeout:           120 * time.Second,
		DisableStartupMessage: true,
		ErrorHandler:          g.errorHandler,
		ReadBufferSize:        16 << 10,
	})
	// A client that asks before sending (Expect: 100-continue) learns that a body is
	// too large from its Content-Length, instead of having the connection reset mid-upload.
	limit := max(cfg.MaxBodyBytes, MaxUploadBytes)
	g.app.Server().ContinueHandler = func(h *fasthttp.RequestHeader) bool { return h.ContentLength() <= limit }
	g.app.Use(g.requestID)
	if len(cfg.CORSOrigins) > 0 {
		g.app.Use("/api", cors.New(cors.Config{
			AllowOrigins:  strings.Join(cfg.CORSOrigins, ","),
			AllowMethods:  "GET,HEAD,POST,PUT,PATCH,DELETE,OPTIONS",
			AllowHeaders:  "Authorization,Content-Type,X-Request-ID,X-Tenant-ID,If-Match,Idempotency-Key",
			ExposeHeaders: "X-Request-ID,ETag,Retry-After",
			MaxAge:        600,
		}))
	}
	g.limits = newTenantLimits(cfg.TenantRPS)
	g.app.Get("/healthz", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
	g.app.Get("/readyz", g.readyz)
	g.app.Get("/metrics", g.metrics)
	g.app.Get("/plugins/:name/metrics", g.pluginMetrics)
	g.app.All("/api/:plugin", g.api)
	g.app.All("/api/:plugin/*", g.api)
	return g
}

// MaxUploadBytes bounds any request body, a plugin bundle upload included.
const MaxUploadBytes = 65 << 20

// App exposes the fiber app so that the admin API can mount its routes on it and
// tests can call app.Test.
func (g *Gateway) App() *fiber.App { return g.app }

// Serve accepts connections on ln until Shutdown.
func (g *Gateway) Serve(ln net.Listener) error { return g.app.Listener(ln) }

// Shutdown stops accepting connections and waits for in-flight requests to finish,
// at most until ctx is done.
func (g *Gateway) Shutdown(ctx context.Context) error { return g.app.ShutdownWithContext(ctx) }

const headerRequestID = "X-Request-ID"

// requestID accepts a sane X-Request-ID from the client or makes one, and echoes it.
func (g *Gateway) requestID(c *fiber.Ctx) error {
	id := c.Get(headerRequestID)
	if !validRequestID(id) {
		id = newRequestID()
	} else {
		id = strings.Clone(id)
	}
	c.Locals(ridKey{}, id)
	c.Set(headerRequestID, id)
	return c.Next()
}

type ridKey struct{}

// RequestID returns the request id assigned to c.
func RequestID(c *fiber.Ctx) string {
	id, _ := c.Locals(ridKey{}).(string)
	return id
}

func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_' || b == '.' || b == ':') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Error writes the platform's JSON error shape.
func Error(c *fiber.Ctx, status int, code, message string) error {
	return c.Status(status).JSON(fiber.Map{"error": fiber.Map{"code": code, "message": message, "request_id": RequestID(c)}})
}

func (g *Gateway) errorHandler(c *fiber.Ctx, err error) error {
	var fe *fiber.Error
	if errors.As(err, &fe) {
		code := strings.ToLower(strings.ReplaceAll(httpStatusText(fe.Code), " ", "_"))
		return Error(c, fe.Code, code, fe.Message)
	}
	g.cfg.Logger.Error("unhandled error", "path", c.Path(), "request_id", RequestID(c), "err", err)
	return Error(c, 500, "internal", "internal error")
}

func httpStatusText(code int) string {
	switch code {
	case 404:
		return "not found"
	case 405:
		return "method not allowed"
	case 413:
		return "payload too large"
	case 400:
		return "bad request"
	case 408:
		return "request timeout"
	case 431:
		return "headers too large"
	}
	return "error " + strconv.Itoa(code)
}

func (g *Gateway) readyz(c *fiber.Ctx) error {
	r := g.cfg.Health.Report(c.UserContext())
	status := 200
	if !r.Ready() {
		status = 503
	}
	return c.Status(status).JSON(r)
}

// hopByHop headers are connection-level and never forwarded either way.
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-authenticate": true, "proxy-authorization": true,
	"te": true, "trailer": true, "transfer-encoding": true, "upgrade": true,
}

// api routes one request into the active generation of its plugin.
func (g *Gateway) api(c *fiber.Ctx) error {
	start := time.Now()
	name := c.Params("plugin")
	gen := g.cfg.Plugins.Lookup(name)
	if gen == nil {
		return Error(c, 404, "plugin_not_found", "no active plugin named "+strconv.Quote(name))
	}
	name = gen.Plugin.Name() // a stable string, not a view into the request buffer
	path := "/" + c.Params("*")
	method := canonicalMethod(c.Method())
	match, found, allowed := gen.Routes.Lookup(method, path)
	if !found {
		g.cfg.Metrics.HTTPRequest(name, "unmatched", method, strconv.Itoa(404), time.Since(start))
		if len(allowed) > 0 {
			c.Set("Allow", strings.Join(allowed, ", "))
			return Error(c, 405, "method_not_allowed", method+" is not allowed on "+path)
		}
		return Error(c, 404, "route_not_found", "plugin "+name+" has no route "+method+" "+path)
	}
	route := match.Route.Path
	inflight := g.cfg.Metrics.InFlight(name)
	inflight.Inc()
	defer inflight.Dec()
	status, err := g.serve(c, gen, match.Route.Public, match.Route.Permission, route, path, match.Params)
	if err != nil {
		return err
	}
	dur := time.Since(start)
	g.cfg.Metrics.HTTPRequest(name, route, method, strconv.Itoa(status), dur)
	if g.cfg.AccessLog {
		g.cfg.Logger.Info("request", "method", method, "path", c.Path(), "status", status, "plugin", name,
			"route", route, "duration_ms", float64(dur.Microseconds())/1000, "request_id", RequestID(c))
	}
	return nil
}

func (g *Gateway) serve(c *fiber.Ctx, gen *plugins.Generation, public bool, permission, route, path string, params []wire.KV) (int, error) {
	req := wire.HTTPRequest{
		Method: c.Method(), Path: path, Route: route, Params: params,
		Query:   string(c.Request().URI().QueryString()),
		Body:    c.Body(),
		Ctx:     wire.CallContext{RequestID: RequestID(c)},
		Headers: make([]wire.KV, 0, 16),
	}
	if public {
		// Public routes have no authenticated tenant; a caller may name one, which
		// scopes what the route's data access can see to that tenant.
		if t := c.Get("X-Tenant-ID"); t != "" {
			if !validTenant(t) {
				return 400, Error(c, 400, "invalid_tenant", "X-Tenant-ID must be 1 to 64 letters, digits, '-', '_' or '.'")
			}
			req.Ctx.Tenant = strings.Clone(t)
		}
	} else {
		if g.cfg.Authenticate == nil {
			return 401, Error(c, 401, "unauthenticated", "this route requires authentication and no token verifier is configured on this host")
		}
		p, err := g.cfg.Authenticate(c)
		if errors.Is(err, ErrAuthUnavailable) {
			return 503, Error(c, 503, "auth_unavailable", "credentials cannot be checked right now; retry")
		}
		if err != nil || p == nil {
			msg := "missing or invalid access token"
			if err != nil {
				msg = err.Error()
			}
			c.Set("WWW-Authenticate", `Bearer realm="keel"`)
			if g.cfg.OnDenied != nil {
				g.cfg.OnDenied(c, 401, nil, route, msg)
			}
			return 401, Error(c, 401, "unauthenticated", msg)
		}
		if permission != "" && !hasPermission(p.Permissions, permission) {
			if g.cfg.OnDenied != nil {
				g.cfg.OnDenied(c, 403, p, route, "missing permission "+permission)
			}
			return 403, Error(c, 403, "forbidden", "this route requires the permission "+strconv.Quote(permission))
		}
		req.Ctx.Tenant, req.Ctx.Subject, req.Ctx.Permissions, req.Ctx.Session = p.Tenant, p.Subject, p.Permissions, p.Session
	}
	if len(req.Body) > g.cfg.MaxBodyBytes {
		return 413, Error(c, 413, "payload_too_large", "request body of "+strconv.Itoa(len(req.Body))+" bytes exceeds the host's limit of "+strconv.Itoa(g.cfg.MaxBodyBytes))
	}
	if req.Ctx.Tenant != "" && !g.limits.allow(req.Ctx.Tenant) {
		c.Set("Retry-After", "1")
		return 429, Error(c, 429, "rate_limited", "too many requests for this tenant; retry shortly")
	}
	if lim := gen.Manifest().Limits.MaxRequestBytes; len(req.Body) > lim {
		return 413, Error(c, 413, "payload_too_large", "request body of "+strconv.Itoa(len(req.Body))+" bytes exceeds this plugin's limit of "+strconv.Itoa(lim))
	}
	c.Request().Header.VisitAll(func(k, v []byte) {
		lk := lowerHeader(k)
		if hopByHop[lk] || lk == "authorization" {
			return
		}
		req.Headers = append(req.Headers, wire.KV{Name: lk, Value: string(v)})
	})

	bp := g.bufs.Get().(*[]byte)
	defer g.bufs.Put(bp)
	resp, err := gen.Plugin.HTTP(c.UserContext(), &req, *bp)
	if errors.Is(err, runtime.ErrClosed) {
		// The generation was swapped out between lookup and call: use the new one.
		if next := g.cfg.Plugins.Lookup(gen.Plugin.Name()); next != nil && next != gen {
			resp, err = next.Plugin.HTTP(c.UserContext(), &req, *bp)
		}
	}
	if err != nil {
		var ce *runtime.CallError
		if errors.As(err, &ce) {
			return ce.Status(), Error(c, ce.Status(), ce.Code(), pluginFailureMessage(ce))
		}
		if errors.Is(err, runtime.ErrClosed) {
			return 503, Error(c, 503, "plugin_unavailable", "the plugin is being replaced; retry")
		}
		return 500, Error(c, 500, "internal", err.Error())
	}
	for _, h := range resp.Headers {
		lk := strings.ToLower(h.Name)
		if hopByHop[lk] || lk == "content-length" {
			continue
		}
		c.Response().Header.Add(h.Name, h.Value)
	}
	c.Status(resp.Status)
	c.Response().SetBodyRaw(resp.Body)
	return resp.Status, nil
}

func pluginFailureMessage(ce *runtime.CallError) string {
	switch ce.Reason {
	case runtime.ReasonTimeout:
		return "the plugin did not answer within its deadline"
	case runtime.ReasonMemory:
		return "the plugin ran out of memory"
	case runtime.ReasonOversized:
		return "the plugin's response exceeds its size limit"
	case runtime.ReasonPoolExhausted:
		return "the plugin is at capacity; retry later"
	case runtime.ReasonCommit:
		return "the plugin's work could not be committed"
	default:
		return "the plugin failed (" + ce.Reason + ")"
	}
}

func hasPermission(ps []string, want string) bool {
	for _, p := range ps {
		if p == want {
			return true
		}
	}
	return false
}

// canonicalMethod returns a constant string for the method: fiber's strings may alias
// the request buffer, and metric labels outlive the request.
func canonicalMethod(m string) string {
	switch m {
	case "GET":
		return "GET"
	case "HEAD":
		return "HEAD"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "PATCH":
		return "PATCH"
	case "DELETE":
		return "DELETE"
	case "OPTIONS":
		return "OPTIONS"
	}
	return "OTHER"
}

// commonHeaders maps the canonical form of frequent header names to lower case, so
// forwarding them allocates nothing.
var commonHeaders = func() map[string]string {
	m := map[string]string{}
	for _, h := range []string{"Accept", "Accept-Encoding", "Accept-Language", "Content-Type", "Content-Length",
		"User-Agent", "Host", "Origin", "Referer", "X-Request-Id", "X-Forwarded-For", "X-Forwarded-Proto",
		"Cache-Control", "If-Match", "If-None-Match", "Cookie", "Connection", "Authorization", "Idempotency-Key"} {
		m[h] = strings.ToLower(h)
	}
	return m
}()

func lowerHeader(k []byte) string {
	if s, ok := commonHeaders[string(k)]; ok {
		return s
	}
	return strings.ToLower(string(k))
}

func validTenant(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_' || b == '.') {
			return false
		}
	}
	return true
}
