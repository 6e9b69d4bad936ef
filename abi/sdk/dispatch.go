package keel

import (
	"encoding/json"
	"runtime"
	"strings"
	"time"

	"github.com/keelhq/keel/abi/wire"
)

// HandlerFunc handles one HTTP request.
type HandlerFunc func(*Request) *Response

// Event is one event delivered to a subscriber.
type Event struct {
	ID      string
	Type    string
	Topic   string
	Tenant  string
	Source  string
	Time    time.Time
	Key     []byte
	Payload []byte
	// Attempt is 1 on first delivery and counts redeliveries after failures.
	Attempt int

	raw wire.Event
}

// DecodeJSON unmarshals the payload into v.
func (e *Event) DecodeJSON(v any) error { return json.Unmarshal(e.Payload, v) }

// Call returns the invocation context of the event (tenant, request id of the
// invocation that published it).
func (e *Event) Call() Call { return Call{c: &e.raw.Ctx} }

// EventHandler handles one event. Returning an error makes the host retry the
// delivery with backoff and eventually park the event in the topic's dead-letter topic.
type EventHandler func(*Event) error

// theRequest is reused for every HTTP call of this instance; see Request.
var theRequest Request

// lastRoute is the route of the previous request: most calls of an instance hit the
// route the previous one did, and two map lookups are the dearer path in wasm.
var lastRoute *route

type route struct {
	method, pattern string
	h               HandlerFunc
}

var (
	routes     = map[string]map[string]*route{} // method -> pattern -> route
	patterns   = map[string]string{}            // every registered pattern, for interning
	subs       = map[string]EventHandler{}
	healthFunc func() error
	initFuncs  []func() error
	current    *wire.CallContext // the event or init call being served; instances are single-threaded
	currentReq *Request          // the HTTP request being served
)

// Handle registers h for a route declared in the plugin's manifest. The method and
// pattern must be written exactly as in the manifest ("GET", "/customers/:id").
// Call it from an init function.
func Handle(method, pattern string, h HandlerFunc) {
	method = strings.ToUpper(method)
	if routes[method] == nil {
		routes[method] = map[string]*route{}
	}
	if _, dup := routes[method][pattern]; dup {
		panic("keel: route registered twice: " + method + " " + pattern)
	}
	routes[method][pattern] = &route{method: method, pattern: pattern, h: h}
	patterns[pattern] = pattern
}

// internCache remembers the last string seen for fields that rarely change between
// calls (tenant, subject, plugin, version, session), so decoding them does not allocate.
var internCache [8]string

// Positional caches for the repeated lists of a message: the i-th permission or
// result column of this call is usually the i-th of the previous one (same token,
// same query), and comparing bytes is much cheaper in a wasm
// guest than hashing them for a map lookup (Go's map hash has no hardware path in
// wasm). Each decode resets its positions (Request.callContext, resetColumnPositions).
var permPos, colNamePos, colTypePos posCache

// resetColumnPositions starts the column caches at the beginning of a query result.
func resetColumnPositions() { colNamePos.i, colTypePos.i = 0, 0 }

// posCache is one positional cache; see permPos.
type posCache struct {
	i    int
	last []string
}

// maxPositions bounds a positional cache; later entries go to the interned set alone.
const maxPositions = 128

// get returns b as a string, reusing the previous message's string at this position
// when it is equal, and otherwise the interned set's.
func (c *posCache) get(b []byte) string {
	i := c.i
	c.i++
	if i < len(c.last) && c.last[i] == string(b) {
		return c.last[i]
	}
	s := internSet(b)
	switch {
	case i < len(c.last):
		c.last[i] = s
	case i == len(c.last) && i < maxPositions && len(b) <= 256:
		c.last = append(c.last, s)
	}
	return s
}

// intern returns strings for decoded call contexts and result columns, allocating
// only when needed: repeated context values come from internCache, repeated lists
// from the positional caches.
func intern(field byte, b []byte) string {
	switch field {
	case wire.InternTenant, wire.InternSubject, wire.InternPlugin, wire.InternVersion, wire.InternSession:
		i := field - wire.InternTenant
		if field == wire.InternSession {
			i = 4
		}
		if internCache[i] == string(b) {
			return internCache[i]
		}
		internCache[i] = string(b)
		return internCache[i]
	case wire.InternPermRun:
		if lastPermRun != nil && len(lastPermRun) == len(b) && wire.Equal(lastPermRun, b) {
			return wire.PermRunReuse
		}
		lastPermRun = append(lastPermRun[:0], b...)
		return ""
	case wire.InternPerm:
		return permPos.get(b)
	case wire.InternColumnName:
		return colNamePos.get(b)
	case wire.InternColumnType:
		return colTypePos.get(b)
	}
	return string(b)
}

// internMethod returns a request's method without allocating for the usual ones.
func internMethod(b []byte) string {
	switch string(b) {
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "PATCH":
		return "PATCH"
	case "DELETE":
		return "DELETE"
	case "HEAD":
		return "HEAD"
	}
	return string(b)
}

// internRoute returns a request's route pattern as the registered string, without
// allocating for a registered one.
func internRoute(b []byte) string {
	if lastPattern == string(b) {
		return lastPattern
	}
	if p, ok := patterns[string(b)]; ok {
		lastPattern = p
		return p
	}
	return string(b)
}

// lastPattern is the route pattern of the previous request; see internRoute.
var lastPattern string

// lastPermRun holds the encoded permissions of the request whose call context was last
// decoded into theRequest, whose Permissions slice still holds their strings: a
// token's permissions are the same on every call, and one comparison replaces decoding
// dozens of strings. It is cleared when a decode fails, since the slice may then hold
// a partial list.
var lastPermRun []byte

// internedSet holds the strings seen as permissions and result column names and
// types: a small vocabulary that every call repeats (a token can carry dozens of
// permissions). The lookup by string(b) does not allocate. It is bounded so that a
// stream of unusual names cannot grow it without limit.
var internedSet = map[string]string{}

const maxInterned = 2048

func internSet(b []byte) string {
	if s, ok := internedSet[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(b) > 128 {
		return s // not vocabulary
	}
	if len(internedSet) >= maxInterned {
		clear(internedSet)
	}
	internedSet[s] = s
	return s
}

// OnEvent registers h for a topic the manifest subscribes to.
func OnEvent(topic string, h EventHandler) {
	if _, dup := subs[topic]; dup {
		panic("keel: topic subscribed twice: " + topic)
	}
	subs[topic] = h
}

// OnHealth sets the plugin's health check. The host calls it for /readyz; an error
// marks the plugin not ready. Without one the plugin is healthy while it answers.
func OnHealth(f func() error) { healthFunc = f }

// OnInit registers f to run once when the host has instantiated a fresh instance,
// before it serves anything. An error fails the instance (and an activation).
func OnInit(f func() error) { initFuncs = append(initFuncs, f) }

// dispatchHTTP checks one request, runs the handler and appends the encoded response
// to out. It never panics. The request is read where it lies (wire.HTTPRequestView):
// only the method, path and route are taken out before the handler runs, and the body,
// the declared lookup and whatever the handler reads alias in.
func dispatchHTTP(in, out []byte) []byte {
	// One Request per instance, reused: instances serve one call at a time, and a
	// fresh one per call costs an allocation and its write barriers.
	req := &theRequest
	req.query, req.ctxDecoded = nil, false
	if err := wire.ViewHTTPRequest(in, &req.view); err != nil {
		resp := Error(400, "malformed_request", err.Error())
		return wire.AppendHTTPResponse(out, &wire.HTTPResponse{Status: resp.Status, Headers: resp.Headers, Body: resp.Body})
	}
	v := &req.view
	req.Method, req.Path, req.Route, req.Body = internMethod(v.Method()), string(v.Path()), internRoute(v.Route()), v.Body()
	currentReq = req
	prefetchedReq, prefetchedRes = v.Prefetch(), v.PrefetchResult()
	defer func() { currentReq, prefetchedReq, prefetchedRes = nil, nil, nil }()

	rt := lastRoute
	if rt == nil || rt.method != req.Method || rt.pattern != req.Route {
		rt = routes[req.Method][req.Route]
		lastRoute = rt
	}
	if rt == nil {
		resp := Error(501, "no_handler", "route "+req.Method+" "+req.Route+" is declared in the manifest but the plugin registered no handler")
		return wire.AppendHTTPResponse(out, &wire.HTTPResponse{Status: resp.Status, Headers: resp.Headers, Body: resp.Body})
	}
	resp, panicked := runHandler(rt.h, req)
	wr := wire.HTTPResponse{Status: resp.Status, Headers: resp.Headers, Body: resp.Body}
	if panicked {
		wr.Flags |= wire.FlagPanicked
	} else if resp.commit {
		wr.Flags |= wire.FlagCommit
	}
	if wr.Status == 0 {
		wr.Status = 200
	}
	return wire.AppendHTTPResponse(out, &wr)
}

func runHandler(h HandlerFunc, req *Request) (resp *Response, panicked bool) {
	defer func() {
		if v := recover(); v != nil {
			msg := string(appendText(nil, v))
			Log.Error("handler panicked", "route", req.Route, "panic", msg, "stack", stack())
			resp, panicked = Error(500, "plugin_panic", "the plugin failed: "+msg), true
		}
	}()
	resp = h(req)
	if resp == nil {
		resp = &Response{Status: 204}
	}
	return resp, false
}

// dispatchEvent decodes one event, runs the subscriber and appends the encoded result.
func dispatchEvent(in, out []byte) []byte {
	var ev Event
	if err := wire.DecodeEvent(in, &ev.raw); err != nil {
		return wire.AppendResult(out, &wire.Result{Code: uint32(wire.CodeMalformed), Message: err.Error()})
	}
	r := &ev.raw
	ev.ID, ev.Type, ev.Topic, ev.Tenant, ev.Source = r.ID, r.Type, r.Topic, r.Tenant, r.Source
	ev.Time, ev.Key, ev.Payload, ev.Attempt = time.Unix(0, r.Time).UTC(), r.Key, r.Payload, r.Attempt
	current = &r.Ctx
	defer func() { current = nil }()

	h := subs[ev.Topic]
	if h == nil {
		return wire.AppendResult(out, &wire.Result{Code: uint32(wire.CodeUnsupported), Message: "no handler registered for topic " + ev.Topic})
	}
	return wire.AppendResult(out, guard("event "+ev.Topic, func() error { return h(&ev) }))
}

// dispatchHealth runs the health check and appends the encoded result.
func dispatchHealth(_, out []byte) []byte {
	if healthFunc == nil {
		return wire.AppendResult(out, &wire.Result{})
	}
	return wire.AppendResult(out, guard("health", healthFunc))
}

// dispatchInit runs the init functions in registration order.
func dispatchInit(in, out []byte) []byte {
	var cc wire.CallContext
	if err := wire.DecodeCallContext(in, &cc); err != nil {
		return wire.AppendResult(out, &wire.Result{Code: uint32(wire.CodeMalformed), Message: err.Error()})
	}
	current = &cc
	defer func() { current = nil }()
	for _, f := range initFuncs {
		if r := guard("init", f); r.Code != 0 {
			return wire.AppendResult(out, r)
		}
	}
	return wire.AppendResult(out, &wire.Result{})
}

// guard runs f, turning an error into a guest-failure result and a panic into a
// flagged guest-panic result.
func guard(what string, f func() error) (res *wire.Result) {
	defer func() {
		if v := recover(); v != nil {
			msg := string(appendText(nil, v))
			Log.Error(what+" panicked", "panic", msg, "stack", stack())
			res = &wire.Result{Code: uint32(wire.CodeGuestPanic), Message: what + " panicked: " + msg, Flags: wire.FlagPanicked}
		}
	}()
	if err := f(); err != nil {
		return &wire.Result{Code: uint32(wire.CodeGuestFailure), Message: err.Error()}
	}
	return &wire.Result{}
}

// stack returns the calling goroutine's stack trace (runtime/debug.Stack without the
// package, which brings fmt and os into every plugin).
func stack() string {
	buf := make([]byte, 4096)
	for {
		n := runtime.Stack(buf, false)
		if n < len(buf) || len(buf) >= 1<<20 {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}
