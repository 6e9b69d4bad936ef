package keel

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/keelhq/keel/abi/wire"
)

// ---- keel:cache/v1 -------------------------------------------------------------

// CacheOption sets the expiry of a cache write.
type CacheOption func(*[]byte)

// TTL expires the entry after d.
func TTL(d time.Duration) CacheOption {
	return func(b *[]byte) { *b = wire.AppendInt(*b, 3, d.Milliseconds()) }
}

// Class expires the entry after the TTL of a class: the platform's session (1h), auth
// (15m), user (5m), config (24h), short (1m), default (10m), or one the manifest adds.
func Class(name string) CacheOption {
	return func(b *[]byte) { *b = wire.AppendString(*b, 4, name) }
}

type cacheAPI struct{}

// Cache is the plugin's key/value cache, private to the plugin and to the tenant of
// the call. It is an optimisation: when the cache backend is down, Get misses and
// writes return an error wrapping ErrUnavailable that callers may ignore.
var Cache cacheAPI

// Get returns the value under key and whether it was found.
func (cacheAPI) Get(key string) ([]byte, bool, error) {
	return Cache.AppendGet(nil, key)
}

// AppendGet appends the value under key to dst and returns the extended slice and
// whether the key was found (dst unchanged if not). A handler that reads many values,
// or reads one per request into a buffer it keeps, reuses dst's storage instead of
// allocating a new slice per read: in a Go guest an allocation of a few KiB costs
// about as much as the rest of the read outside the cache server.
func (cacheAPI) AppendGet(dst []byte, key string) ([]byte, bool, error) {
	in := wire.AppendString(request(), 1, key)
	out, err := callHost(fnCacheGet, in)
	sent(in)
	if err != nil {
		return dst, false, err
	}
	v, ok, err := wire.Field(out, 2)
	if err != nil || !ok {
		return dst, false, err
	}
	return append(dst, v...), true, nil
}

// Set stores val under key; without options it expires after the default class.
func (cacheAPI) Set(key string, val []byte, opts ...CacheOption) error {
	b := wire.AppendField(wire.AppendString(nil, 1, key), 2, val)
	for _, o := range opts {
		o(&b)
	}
	_, err := callHost(fnCacheSet, b)
	return err
}

// Delete removes keys.
func (cacheAPI) Delete(keys ...string) error {
	var b []byte
	for _, k := range keys {
		b = wire.AppendString(b, 1, k)
	}
	_, err := callHost(fnCacheDelete, b)
	return err
}

// Incr adds delta to the integer under key (creating it with the given expiry) and
// returns the new value.
func (cacheAPI) Incr(key string, delta int64, opts ...CacheOption) (int64, error) {
	b := wire.AppendInt(wire.AppendString(nil, 1, key), 5, delta)
	for _, o := range opts {
		o(&b)
	}
	out, err := callHost(fnCacheIncr, b)
	if err != nil {
		return 0, err
	}
	f, err := wire.DecodeFields(out)
	if err != nil {
		return 0, err
	}
	return f.Int(2, 0)
}

// Cached is the cache-aside helper: it returns the JSON-decoded value under key, or
// calls load, stores its result and returns it. Cache failures never fail the call;
// load's error does (and nothing is stored).
func Cached[T any](key string, load func() (T, error), opts ...CacheOption) (T, error) {
	var v T
	if b, ok, err := Cache.Get(key); err == nil && ok && json.Unmarshal(b, &v) == nil {
		return v, nil
	}
	v, err := load()
	if err != nil {
		return v, err
	}
	if b, err := json.Marshal(v); err == nil {
		_ = Cache.Set(key, b, opts...)
	}
	return v, nil
}

// ---- keel:config/v1 ------------------------------------------------------------

// Setting returns the value of a setting declared in the manifest. An unset setting
// without a default returns an error matching ErrNotFound.
func Setting(key string) (string, error) {
	out, err := callHost(fnConfigGet, wire.AppendString(nil, 1, key))
	if err != nil {
		return "", err
	}
	f, err := wire.DecodeFields(out)
	if err != nil {
		return "", err
	}
	return f.String(2), nil
}

// ---- keel:metrics/v1 -----------------------------------------------------------

// Metric is a handle on a metric declared in the manifest.
type Metric struct{ name string }

// M returns the handle of the declared metric name.
func M(name string) Metric { return Metric{name} }

func (m Metric) record(op int64, v float64, labels []string) error {
	b := wire.AppendInt(wire.AppendString(nil, 1, m.name), 2, op)
	b = wire.AppendFloat(b, 3, v)
	for _, l := range labels {
		b = wire.AppendString(b, 4, l)
	}
	_, err := callHost(fnMetricsRecord, b)
	return err
}

// Add adds v to a counter or gauge; labels are values in declaration order.
func (m Metric) Add(v float64, labels ...string) error { return m.record(0, v, labels) }

// Inc adds 1.
func (m Metric) Inc(labels ...string) error { return m.record(0, 1, labels) }

// Set sets a gauge.
func (m Metric) Set(v float64, labels ...string) error { return m.record(1, v, labels) }

// Observe records one observation in a histogram.
func (m Metric) Observe(v float64, labels ...string) error { return m.record(2, v, labels) }

// ---- keel:http/v1 --------------------------------------------------------------

// FetchRequest is an outbound HTTP request, allowed only to hosts the manifest lists.
type FetchRequest struct {
	Method  string
	URL     string
	Headers map[string][]string
	Body    []byte
	Timeout time.Duration // 0: until the call's deadline
}

// FetchResponse is the answer to a FetchRequest.
type FetchResponse struct {
	Status  int
	Headers map[string][]string
	Body    []byte
}

// Fetch performs an outbound HTTP request through the host's guard.
func Fetch(req FetchRequest) (*FetchResponse, error) {
	b := wire.AppendString(wire.AppendString(nil, 1, req.Method), 2, req.URL)
	for k, vs := range req.Headers {
		for _, v := range vs {
			b = wire.AppendPair(b, 3, k, v)
		}
	}
	if len(req.Body) > 0 {
		b = wire.AppendField(b, 4, req.Body)
	}
	if req.Timeout > 0 {
		b = wire.AppendInt(b, 5, req.Timeout.Milliseconds())
	}
	out, err := callHost(fnHTTPFetch, b)
	if err != nil {
		return nil, err
	}
	f, err := wire.DecodeFields(out)
	if err != nil {
		return nil, err
	}
	st, err := wire.Uint(f.Bytes(1))
	if err != nil {
		return nil, err
	}
	resp := &FetchResponse{Status: int(st), Headers: map[string][]string{}, Body: append([]byte(nil), f.Bytes(4)...)}
	for _, p := range f.All(3) {
		k, v, err := wire.Pair(p)
		if err != nil {
			return nil, err
		}
		resp.Headers[string(k)] = append(resp.Headers[string(k)], string(v))
	}
	return resp, nil
}

// ---- keel:plugin/v1 ------------------------------------------------------------

// CallPlugin calls a route of another plugin (declared under capabilities.call) with
// the identity of the current caller and within the current deadline. path may carry
// a query string.
func CallPlugin(plugin, method, path string, body []byte) (*Response, error) {
	p, q, _ := strings.Cut(path, "?")
	b := wire.AppendString(wire.AppendString(wire.AppendString(nil, 1, plugin), 2, method), 3, p)
	if len(body) > 0 {
		b = wire.AppendField(b, 5, body)
	}
	if q != "" {
		if _, err := ParseQuery(q); err != nil {
			return nil, err
		}
		b = wire.AppendString(b, 6, q)
	}
	out, err := callHost(fnPluginCall, b)
	if err != nil {
		return nil, err
	}
	var r wire.HTTPResponse
	if err := wire.DecodeHTTPResponse(out, &r); err != nil {
		return nil, err
	}
	return &Response{Status: r.Status, Headers: r.Headers, Body: append([]byte(nil), r.Body...)}, nil
}
