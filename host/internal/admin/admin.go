// Package admin serves /admin/api: plugin upload, listing, activation, rollback,
// deactivation and deletion, for operators (the keel CLI and the dashboard).
//
// Every request needs the admin bearer token and every request is audited: one log
// line per call with the actor, and a registry history entry per change.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/keelhq/keel/host/internal/deploy"
	"github.com/keelhq/keel/host/internal/gateway"
	"github.com/keelhq/keel/host/internal/plugins"
	"github.com/keelhq/keel/plugin-registry/bundle"
	"github.com/keelhq/keel/plugin-registry/store"
)

// Config configures the admin API.
type Config struct {
	// Token is the bearer token; empty disables the admin API (every call answers 503).
	Token    string
	Deployer *deploy.Deployer // nil without a database: registry calls answer 503
	Store    *store.Store
	Plugins  *plugins.Manager
	Logger   *slog.Logger
	// HostID names this host in listings.
	HostID  string
	Started time.Time
	// Hosts lists the hosts sharing the database (just this one without a database).
	Hosts func(ctx context.Context) ([]HostView, error)
	// AdminJWT accepts an access token as admin credentials; it returns the actor or an
	// error. Nil: only Token is accepted.
	AdminJWT func(ctx context.Context, token string) (actor string, err error)
	// Audit records admin changes and refused admin tokens in the audit trail.
	Audit func(action, actor, resource, requestID string, detail map[string]any)
}

// Mount adds the admin routes to app.
func Mount(app *fiber.App, cfg Config) {
	a := &api{cfg: cfg}
	g := app.Group("/admin/api", a.auth)
	g.Get("/plugins", a.list)
	g.Post("/plugins", a.upload)
	g.Get("/plugins/:name/history", a.history)
	g.Get("/history", a.history) // every plugin
	g.Post("/plugins/:name/versions/:version/activate", a.activate)
	g.Post("/plugins/:name/rollback", a.rollback)
	g.Post("/plugins/:name/deactivate", a.deactivate)
	g.Delete("/plugins/:name/versions/:version", a.del)
	g.Get("/host", a.host)
	g.Get("/hosts", a.hosts)
}

type api struct{ cfg Config }

const actorKey = "admin-actor"

// auth checks the bearer token in constant time and audits the call once it is done.
func (a *api) auth(c *fiber.Ctx) error {
	start := time.Now()
	if a.cfg.Token == "" && a.cfg.AdminJWT == nil {
		return gateway.Error(c, 503, "admin_disabled", "the admin API is disabled: set KEEL_ADMIN_TOKEN (or KEEL_JWT_PUBLIC_KEY for admin access tokens)")
	}
	h := c.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	want := sha256.Sum256([]byte(a.cfg.Token))
	got := sha256.Sum256([]byte(tok))
	who := "admin-token"
	valid := ok && a.cfg.Token != "" && subtle.ConstantTimeCompare(want[:], got[:]) == 1
	if !valid && ok && a.cfg.AdminJWT != nil && strings.Count(tok, ".") == 2 {
		if actor, err := a.cfg.AdminJWT(c.UserContext(), tok); err == nil {
			valid, who = true, actor
		}
	}
	if !valid {
		a.cfg.Logger.Warn("admin call refused", "method", c.Method(), "path", c.Path(), "ip", c.IP(), "request_id", gateway.RequestID(c))
		c.Set("WWW-Authenticate", `Bearer realm="keel-admin"`)
		a.audit("admin.unauthenticated", "anonymous", c.Method()+" "+c.Path(), gateway.RequestID(c), map[string]any{"ip": c.IP()})
		return gateway.Error(c, 401, "unauthenticated", "a valid admin bearer token is required")
	}
	c.Locals(actorKey, who)
	err := c.Next()
	if c.Method() != "GET" {
		a.audit("admin."+strings.ToLower(c.Method()), who, c.Path(), gateway.RequestID(c),
			map[string]any{"status": c.Response().StatusCode()})
	}
	a.cfg.Logger.Info("admin call", "audit", true, "actor", who, "method", c.Method(), "path", c.Path(),
		"status", c.Response().StatusCode(), "ms", time.Since(start).Milliseconds(), "request_id", gateway.RequestID(c))
	return err
}

func (a *api) audit(action, actor, resource, requestID string, detail map[string]any) {
	if a.cfg.Audit != nil {
		a.cfg.Audit(action, actor, resource, requestID, detail)
	}
}

// param returns a route parameter the callee may keep: fiber's c.Params is a view into
// the request buffer, which fasthttp reuses after the handler returns, and the
// deployer keeps names beyond the request (the probation watch after an activation).
func param(c *fiber.Ctx, name string) string { return strings.Clone(c.Params(name)) }

func actor(c *fiber.Ctx) string {
	if s, ok := c.Locals(actorKey).(string); ok {
		return s
	}
	return "unknown"
}

func (a *api) needRegistry(c *fiber.Ctx) bool {
	if a.cfg.Deployer == nil {
		_ = gateway.Error(c, 503, "registry_unavailable", "the plugin registry needs a database: set KEEL_DATABASE_URL")
		return false
	}
	return true
}

// PluginView is one plugin in GET /admin/api/plugins.
type PluginView struct {
	Name     string        `json:"name"`
	Active   *store.Active `json:"active,omitempty"`
	Versions []VersionView `json:"versions"`
	Running  *RunningView  `json:"running,omitempty"`
}

// VersionView is one stored version.
type VersionView struct {
	Version    string    `json:"version"`
	Digest     string    `json:"digest"`
	Signer     string    `json:"signer,omitempty"`
	State      string    `json:"state"`
	LastError  string    `json:"last_error,omitempty"`
	Size       int64     `json:"size"`
	UploadedBy string    `json:"uploaded_by"`
	UploadedAt time.Time `json:"uploaded_at"`
	Manifest   any       `json:"manifest,omitempty"`
}

// RunningView is what this host is running for the plugin.
type RunningView struct {
	Version   string    `json:"version"`
	Digest    string    `json:"digest,omitempty"`
	Activated time.Time `json:"activated"`
	Instances int       `json:"instances"`
	InUse     int       `json:"in_use"`
	MemoryMiB float64   `json:"memory_mib"`
	Manifest  any       `json:"manifest"`
	Source    string    `json:"source"`
}

func running(g *plugins.Generation) *RunningView {
	st := g.Plugin.Stats()
	return &RunningView{Version: g.Manifest().Version, Digest: g.Digest, Activated: g.Activated, Instances: st.Instances,
		InUse: st.InUse, MemoryMiB: float64(st.MemoryBytes) / (1 << 20), Manifest: g.Manifest(), Source: g.Source}
}

func (a *api) list(c *fiber.Ctx) error {
	out := []PluginView{}
	seen := map[string]bool{}
	if a.cfg.Store != nil {
		ps, err := a.cfg.Store.List(c.UserContext())
		if err != nil {
			return gateway.Error(c, 503, "registry_unavailable", err.Error())
		}
		for _, p := range ps {
			v := PluginView{Name: p.Name, Active: p.Active, Versions: []VersionView{}}
			for _, ver := range p.Versions {
				v.Versions = append(v.Versions, VersionView{Version: ver.Version, Digest: ver.Digest, Signer: ver.Signer, State: string(ver.State),
					LastError: ver.LastError, Size: ver.Size, UploadedBy: ver.UploadedBy, UploadedAt: ver.UploadedAt})
			}
			if g := a.cfg.Plugins.Lookup(p.Name); g != nil {
				v.Running = running(g)
			}
			seen[p.Name] = true
			out = append(out, v)
		}
	}
	for _, g := range a.cfg.Plugins.List() {
		if !seen[g.Plugin.Name()] {
			out = append(out, PluginView{Name: g.Plugin.Name(), Versions: []VersionView{}, Running: running(g)})
		}
	}
	return c.JSON(fiber.Map{"plugins": out, "host": a.cfg.HostID})
}

// HostView is one host in GET /admin/api/hosts.
type HostView struct {
	ID       string            `json:"id"`
	Started  time.Time         `json:"started"`
	LastSeen time.Time         `json:"last_seen"`
	Version  string            `json:"version"`
	Plugins  map[string]string `json:"plugins"`
	Alive    bool              `json:"alive"` // seen in the last 15 s
	Self     bool              `json:"self"`  // the host answering
}

func (a *api) hosts(c *fiber.Ctx) error {
	if a.cfg.Hosts == nil {
		return c.JSON(fiber.Map{"hosts": []HostView{}})
	}
	hs, err := a.cfg.Hosts(c.UserContext())
	if err != nil {
		return gateway.Error(c, 503, "registry_unavailable", err.Error())
	}
	if hs == nil {
		hs = []HostView{}
	}
	return c.JSON(fiber.Map{"hosts": hs})
}

func (a *api) host(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"host": a.cfg.HostID, "started": a.cfg.Started, "uptime_s": int(time.Since(a.cfg.Started).Seconds()),
		"registry": a.cfg.Deployer != nil})
}

// upload accepts a bundle as multipart field "bundle" or as the raw body.
func (a *api) upload(c *fiber.Ctx) error {
	if !a.needRegistry(c) {
		return nil
	}
	var raw []byte
	if strings.HasPrefix(c.Get("Content-Type"), "multipart/form-data") {
		fh, err := c.FormFile("bundle")
		if err != nil {
			return gateway.Error(c, 400, "bundle_missing", "multipart upload without a \"bundle\" field")
		}
		if fh.Size > bundle.DefaultMaxSize {
			return gateway.Error(c, 413, "bundle_too_large", fmt.Sprintf("bundle of %d bytes exceeds %d", fh.Size, bundle.DefaultMaxSize))
		}
		f, err := fh.Open()
		if err != nil {
			return gateway.Error(c, 400, "bundle_unreadable", err.Error())
		}
		defer f.Close()
		raw, err = io.ReadAll(io.LimitReader(f, bundle.DefaultMaxSize+1))
		if err != nil {
			return gateway.Error(c, 400, "bundle_unreadable", err.Error())
		}
	} else {
		raw = append([]byte(nil), c.Body()...)
	}
	if len(raw) == 0 {
		return gateway.Error(c, 400, "bundle_missing", "the request carries no bundle")
	}
	v, err := a.cfg.Deployer.Upload(c.UserContext(), raw, actor(c))
	if err != nil {
		status, code := bundleError(err)
		return gateway.Error(c, status, code, err.Error())
	}
	return c.Status(201).JSON(fiber.Map{"name": v.Name, "version": v.Version, "digest": v.Digest, "signer": v.Signer, "state": v.State})
}

// bundleError maps a refusal to a status and a stable code.
func bundleError(err error) (int, string) {
	switch {
	case errors.Is(err, bundle.ErrTooLarge):
		return 413, "bundle_too_large"
	case errors.Is(err, bundle.ErrTampered):
		return 422, "bundle_tampered"
	case errors.Is(err, bundle.ErrUnsigned):
		return 422, "bundle_unsigned"
	case errors.Is(err, bundle.ErrUntrusted):
		return 422, "bundle_untrusted"
	case errors.Is(err, bundle.ErrNotWasm):
		return 422, "bundle_not_wasm"
	case errors.Is(err, bundle.ErrABITooNew):
		return 422, "abi_too_new"
	case errors.Is(err, bundle.ErrManifest):
		return 422, "manifest_invalid"
	case errors.Is(err, bundle.ErrMalformed):
		return 400, "bundle_malformed"
	case errors.Is(err, store.ErrConflict):
		return 409, "version_conflict"
	}
	return 500, "registry_error"
}

func (a *api) changeError(c *fiber.Ctx, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return gateway.Error(c, 404, "not_found", err.Error())
	case errors.Is(err, deploy.ErrBusy):
		return gateway.Error(c, 409, "activation_in_progress", err.Error())
	case errors.Is(err, store.ErrActive):
		return gateway.Error(c, 409, "version_active", err.Error())
	case errors.Is(err, store.ErrNoPrevious):
		return gateway.Error(c, 409, "no_previous_version", err.Error())
	case errors.Is(err, deploy.ErrActivation):
		return gateway.Error(c, 422, "activation_failed", err.Error())
	}
	return gateway.Error(c, 500, "registry_error", err.Error())
}

func (a *api) activate(c *fiber.Ctx) error {
	if !a.needRegistry(c) {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), 5*time.Minute)
	defer cancel()
	act, err := a.cfg.Deployer.Activate(ctx, param(c, "name"), param(c, "version"), actor(c))
	if err != nil {
		return a.changeError(c, err)
	}
	return c.JSON(act)
}

func (a *api) rollback(c *fiber.Ctx) error {
	if !a.needRegistry(c) {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), 5*time.Minute)
	defer cancel()
	act, err := a.cfg.Deployer.Rollback(ctx, param(c, "name"), actor(c))
	if err != nil {
		return a.changeError(c, err)
	}
	return c.JSON(act)
}

func (a *api) deactivate(c *fiber.Ctx) error {
	if !a.needRegistry(c) {
		return nil
	}
	if err := a.cfg.Deployer.Deactivate(c.UserContext(), param(c, "name"), actor(c)); err != nil {
		return a.changeError(c, err)
	}
	return c.JSON(fiber.Map{"deactivated": c.Params("name")})
}

func (a *api) del(c *fiber.Ctx) error {
	if !a.needRegistry(c) {
		return nil
	}
	if err := a.cfg.Store.Delete(c.UserContext(), param(c, "name"), param(c, "version"), actor(c)); err != nil {
		return a.changeError(c, err)
	}
	return c.JSON(fiber.Map{"deleted": c.Params("name") + "@" + c.Params("version")})
}

func (a *api) history(c *fiber.Ctx) error {
	if !a.needRegistry(c) {
		return nil
	}
	ev, err := a.cfg.Store.History(c.UserContext(), c.Params("name"), c.QueryInt("limit", 100)) // "" = all plugins
	if err != nil {
		return a.changeError(c, err)
	}
	return c.JSON(fiber.Map{"events": ev})
}
