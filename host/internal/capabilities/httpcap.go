package capabilities

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/keelhq/keel/abi/wire"
	"github.com/keelhq/keel/bridges/httpout"
	"github.com/keelhq/keel/host/internal/runtime"
)

// Field tags of keel:http/v1.fetch.
const (
	httpMethod  = 1
	httpURL     = 2
	httpHeader  = 3 // pair, repeated
	httpBody    = 4
	httpTimeout = 5 // int, milliseconds
	httpStatus  = 1 // output
)

// HTTP provides keel:http/v1: outbound requests through the guard, to the hosts the
// manifest allows. One guarded client per plugin version is kept.
type HTTP struct {
	mu      sync.Mutex
	clients map[string]*httpout.Client // by plugin@version
	opts    httpout.Options
}

// NewHTTP creates the capability. opts carries test hooks (resolver) and defaults.
func NewHTTP(opts httpout.Options) *HTTP {
	return &HTTP{clients: map[string]*httpout.Client{}, opts: opts}
}

// Funcs returns the host functions.
func (h *HTTP) Funcs() []runtime.HostFunc {
	return []runtime.HostFunc{{Module: "keel:http/v1", Name: "fetch", Fn: h.fetch}}
}

func (h *HTTP) client(call *runtime.Call) (*httpout.Client, error) {
	m := call.Manifest()
	hc := m.Capabilities.HTTP
	if hc == nil {
		return nil, runtime.Errorf(wire.CodeDenied, "plugin %s does not declare outbound http", m.Name)
	}
	key := m.Name + "@" + m.Version
	h.mu.Lock()
	defer h.mu.Unlock()
	if c := h.clients[key]; c != nil {
		return c, nil
	}
	schemes := []string{"https"}
	if hc.AllowHTTP {
		schemes = append(schemes, "http")
	}
	c := httpout.New(httpout.Policy{AllowedHosts: hc.Hosts, AllowedSchemes: schemes, AllowPrivate: hc.AllowPrivate}, h.opts)
	h.clients[key] = c
	return c, nil
}

// Forget closes the client of a retired plugin version.
func (h *HTTP) Forget(plugin, version string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c := h.clients[plugin+"@"+version]; c != nil {
		c.Close()
		delete(h.clients, plugin+"@"+version)
	}
}

func (h *HTTP) fetch(ctx context.Context, call *runtime.Call, in []byte) ([]byte, error) {
	c, err := h.client(call)
	if err != nil {
		return nil, err
	}
	f, err := decode(in)
	if err != nil {
		return nil, err
	}
	req := httpout.Request{Method: f.String(httpMethod), URL: f.String(httpURL), Body: f.Bytes(httpBody), Headers: map[string][]string{}}
	if req.Method == "" {
		req.Method = "GET"
	}
	for _, p := range f.All(httpHeader) {
		k, v, err := wire.Pair(p)
		if err != nil {
			return nil, runtime.Errorf(wire.CodeMalformed, "header: %v", err)
		}
		req.Headers[string(k)] = append(req.Headers[string(k)], string(v))
	}
	if ms, err := f.Int(httpTimeout, 0); err != nil {
		return nil, runtime.Errorf(wire.CodeMalformed, "timeout: %v", err)
	} else if ms > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
		defer cancel()
	}
	resp, err := c.Do(ctx, req)
	if err != nil {
		return nil, httpError(err)
	}
	out := wire.AppendUint(nil, httpStatus, uint64(resp.Status))
	for k, vs := range resp.Headers {
		for _, v := range vs {
			out = wire.AppendPair(out, httpHeader, k, v)
		}
	}
	return wire.AppendField(out, httpBody, resp.Body), nil
}

func httpError(err error) error {
	code := wire.CodeRemote
	switch {
	case errors.Is(err, httpout.ErrHostNotAllowed), errors.Is(err, httpout.ErrAddressNotAllowed), errors.Is(err, httpout.ErrSchemeNotAllowed):
		code = wire.CodeDenied
	case errors.Is(err, httpout.ErrTooLarge):
		code = wire.CodeTooLarge
	case errors.Is(err, httpout.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		code = wire.CodeDeadline
	case errors.Is(err, httpout.ErrInvalidRequest):
		code = wire.CodeInvalid
	}
	return &runtime.CapError{Code: code, Message: err.Error()}
}
