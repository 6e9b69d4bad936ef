package capabilities

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/abi/wire"
	"github.com/keelhq/keel/host/internal/runtime"
)

// Field tags of keel:plugin/v1.call (output: an HTTPResponse message).
const (
	callPlugin = 1
	callMethod = 2
	callPath   = 3
	callHeader = 4 // pair, repeated
	callBody   = 5
	callQuery  = 6
)

// maxCallDepth bounds chains of plugin-to-plugin calls (a calls b calls c ...), so a
// cycle fails fast instead of exhausting pools until the deadline.
const maxCallDepth = 4

// Router resolves a route of an active plugin; the plugin manager implements it.
type Router interface {
	Route(plugin, method, path string) (*runtime.Plugin, *manifest.Route, []wire.KV, error)
}

// Calls provides keel:plugin/v1: one plugin calling another's route through the
// host, with the original caller's identity and within the caller's deadline.
type Calls struct {
	router atomic.Pointer[Router]
}

// NewCalls creates the capability; SetRouter must be called before plugins run.
func NewCalls() *Calls { return &Calls{} }

// SetRouter binds the plugin manager (created after the engine that needs these
// functions).
func (c *Calls) SetRouter(r Router) { c.router.Store(&r) }

// Funcs returns the host functions.
func (c *Calls) Funcs() []runtime.HostFunc {
	return []runtime.HostFunc{{Module: "keel:plugin/v1", Name: "call", Fn: c.call}}
}

type depthKey struct{}

// NotFound is implemented by Router errors that mean the plugin or route does not
// exist (as opposed to a failure to reach it).
type NotFound interface{ NotFound() bool }

func (c *Calls) call(ctx context.Context, call *runtime.Call, in []byte) ([]byte, error) {
	f, err := decode(in)
	if err != nil {
		return nil, err
	}
	target := f.String(callPlugin)
	if !call.Manifest().Capabilities.Calls(target) {
		return nil, runtime.Errorf(wire.CodeDenied, "plugin %s does not declare calls to %q", call.Manifest().Name, target)
	}
	depth, _ := ctx.Value(depthKey{}).(int)
	if depth >= maxCallDepth {
		return nil, runtime.Errorf(wire.CodeDenied, "plugin call chain deeper than %d", maxCallDepth)
	}
	rp := c.router.Load()
	if rp == nil {
		return nil, runtime.Errorf(wire.CodeUnavailable, "plugin calls are not wired")
	}
	method, path := f.String(callMethod), f.String(callPath)
	if method == "" {
		method = "GET"
	}
	p, route, params, err := (*rp).Route(target, method, path)
	if err != nil {
		var nf NotFound
		if errors.As(err, &nf) && nf.NotFound() {
			return nil, runtime.Errorf(wire.CodeNotFound, "%v", err)
		}
		return nil, runtime.Errorf(wire.CodeUnavailable, "%v", err)
	}
	cc := *call.Context
	if !route.Public {
		if cc.Subject == "" {
			return nil, runtime.Errorf(wire.CodeDenied, "route %s %s of %s needs an authenticated caller", method, route.Path, target)
		}
		if route.Permission != "" && !contains(cc.Permissions, route.Permission) {
			return nil, runtime.Errorf(wire.CodeDenied, "the caller lacks permission %q for %s %s of %s", route.Permission, method, route.Path, target)
		}
	}
	req := wire.HTTPRequest{Method: method, Path: path, Route: route.Path, Params: params, Query: f.String(callQuery), Body: f.Bytes(callBody), Ctx: cc}
	for _, h := range f.All(callHeader) {
		k, v, err := wire.Pair(h)
		if err != nil {
			return nil, runtime.Errorf(wire.CodeMalformed, "header: %v", err)
		}
		req.Headers = append(req.Headers, wire.KV{Name: string(k), Value: string(v)})
	}
	resp, err := p.HTTP(context.WithValue(ctx, depthKey{}, depth+1), &req, nil)
	if err != nil {
		var ce *runtime.CallError
		if errors.As(err, &ce) && ce.Reason == runtime.ReasonTimeout {
			return nil, runtime.Errorf(wire.CodeDeadline, "%v", err)
		}
		return nil, runtime.Errorf(wire.CodeUnavailable, "%v", err)
	}
	return wire.AppendHTTPResponse(nil, resp), nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
