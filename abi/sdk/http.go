package keel

import (
	"bytes"
	"encoding/json"

	"github.com/keelhq/keel/abi/wire"
)

// Request is one HTTP request routed to the plugin. It, and everything it holds, is
// only valid until the handler returns: the SDK reuses it for the next request.
type Request struct {
	Method string
	// Path is the path below /api/{plugin}, starting with '/'.
	Path string
	// Route is the manifest pattern that matched, e.g. "/customers/:id".
	Route string
	// Body is the request body. It is only valid until the handler returns: the
	// buffer is reused for the next request, so copy it (bytes.Clone) to keep it.
	// DecodeJSON and everything that decodes from it are safe.
	Body []byte

	view       wire.HTTPRequestView // the encoded request, checked; aliases the call's input
	ctx        wire.CallContext     // the call context, once decoded
	ctxDecoded bool
	query      Values
}

// Param returns the value of a path parameter declared in the route (":id" → "id").
func (r *Request) Param(name string) string {
	v, _ := r.view.Param(name)
	return string(v)
}

// Header returns the first value of a request header; names are case-insensitive
// (ASCII).
func (r *Request) Header(name string) string {
	v, _ := r.view.Header(name)
	return string(v)
}

// Query returns the parsed query string (see ParseQuery; pairs that do not parse are
// left out).
func (r *Request) Query() Values {
	if r.query == nil {
		r.query, _ = ParseQuery(string(r.view.Query()))
	}
	return r.query
}

// DecodeJSON unmarshals the body into v, refusing unknown fields so that typos in
// client payloads are reported instead of silently ignored.
func (r *Request) DecodeJSON(v any) error {
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// Call returns the invocation context: request id, tenant, subject and permissions.
func (r *Request) Call() Call { return Call{r: r} }

// callContext decodes the request's call context the first time it is read; a handler
// that only checks a permission never decodes it (Call.HasPermission).
func (r *Request) callContext() *wire.CallContext {
	if !r.ctxDecoded {
		r.ctxDecoded = true
		permPos.i = 0
		if err := wire.DecodeCallContextInto(r.view.Ctx(), &r.ctx, intern); err != nil {
			// Not reached: the view checked the context. A partial list must not be
			// reused, and no caller must see one.
			lastPermRun = nil
			r.ctx = wire.CallContext{}
		}
	}
	return &r.ctx
}

// Call describes who invoked the plugin and on whose behalf.
type Call struct {
	c *wire.CallContext // an event's or an init call's, decoded with it
	r *Request          // a request's, decoded when first read
}

func (c Call) ctx() *wire.CallContext {
	if c.r != nil {
		return c.r.callContext()
	}
	return c.c
}

// RequestID is the id the gateway assigned (or accepted from X-Request-ID).
func (c Call) RequestID() string { return c.ctx().RequestID }

// Tenant is the tenant the call acts for; empty for unauthenticated routes.
func (c Call) Tenant() string { return c.ctx().Tenant }

// Subject is the authenticated user or service; empty for unauthenticated routes.
func (c Call) Subject() string { return c.ctx().Subject }

// Plugin and Version name the plugin version serving the call.
func (c Call) Plugin() string { return c.ctx().Plugin }

// Version is the version of the plugin serving the call.
func (c Call) Version() string { return c.ctx().Version }

// Session is the authenticated session id (the access token's sid); empty on public routes.
func (c Call) Session() string { return c.ctx().Session }

// Permissions lists the caller's permissions. The slice is the caller's to keep and
// change: the SDK's own, reused between calls, is not handed out.
func (c Call) Permissions() []string { return append([]string(nil), c.ctx().Permissions...) }

// HasPermission reports whether the caller holds permission p. On a request whose
// context nothing has read yet it looks in the encoded context instead of decoding it.
func (c Call) HasPermission(p string) bool {
	if c.r != nil && !c.r.ctxDecoded {
		return wire.HasPermission(c.r.view.Ctx(), p)
	}
	for _, q := range c.ctx().Permissions {
		if q == p {
			return true
		}
	}
	return false
}

// Response is what a handler returns.
type Response struct {
	Status  int
	Headers []wire.KV
	Body    []byte

	commit bool
	// hdr holds the first headers SetHeader adds to a shared list (jsonHeaders...),
	// so that a response with an ETag or a Location costs one allocation, not two.
	hdr [3]wire.KV
}

// Commit keeps the invocation's database writes and events although the status is an
// error (400 or more), which otherwise rolls them back: for a refusal that must leave a
// trace, such as a revocation or an audit event of a failed login.
func (r *Response) Commit() *Response { r.commit = true; return r }

// SetHeader adds a response header and returns the response for chaining.
func (r *Response) SetHeader(name, value string) *Response {
	if n := len(r.Headers); n == cap(r.Headers) && n < len(r.hdr) {
		// A full list (the helpers' shared ones are): continue in r's own storage.
		r.Headers = r.hdr[:copy(r.hdr[:], r.Headers)]
	}
	r.Headers = append(r.Headers, wire.KV{Name: name, Value: value})
	return r
}

// JSON returns a response with v encoded as JSON. If v cannot be encoded, the result
// is a 500 error response rather than a panic.
func JSON(status int, v any) *Response {
	b, err := json.Marshal(v)
	if err != nil {
		return Error(500, "encode_failed", "could not encode the response: "+err.Error())
	}
	return &Response{Status: status, Headers: jsonHeaders, Body: b}
}

// Shared header lists of the helpers. Their capacity equals their length, so
// SetHeader's append copies instead of writing into them.
var (
	jsonHeaders  = []wire.KV{{Name: "Content-Type", Value: "application/json"}}[:1:1]
	textHeaders  = []wire.KV{{Name: "Content-Type", Value: "text/plain; charset=utf-8"}}[:1:1]
	octetHeaders = []wire.KV{{Name: "Content-Type", Value: "application/octet-stream"}}[:1:1]
)

// Text returns a plain-text response.
func Text(status int, s string) *Response {
	return &Response{Status: status, Headers: textHeaders, Body: []byte(s)}
}

// Bytes returns a response with the given content type and body.
func Bytes(status int, contentType string, b []byte) *Response {
	var h []wire.KV
	switch contentType {
	case "application/json":
		h = jsonHeaders
	case "application/octet-stream":
		h = octetHeaders
	default:
		h = []wire.KV{{Name: "Content-Type", Value: contentType}}
	}
	return &Response{Status: status, Headers: h, Body: b}
}

// Error returns an error response in the platform's shape:
// {"error":{"code":"...","message":"...","request_id":"..."}}, with the request id of
// the invocation being served.
func Error(status int, code, message string) *Response {
	b := make([]byte, 0, 48+len(code)+len(message))
	b = append(b, `{"error":{"code":`...)
	b = appendJSONString(b, code)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, message)
	if id := servedRequestID(); id != "" {
		b = append(b, `,"request_id":`...)
		b = appendJSONString(b, id)
	}
	b = append(b, "}}"...)
	return &Response{Status: status, Headers: jsonHeaders, Body: b}
}

// servedRequestID is the request id of the invocation being served, "" outside one.
func servedRequestID() string {
	switch {
	case currentReq != nil:
		return currentReq.callContext().RequestID
	case current != nil:
		return current.RequestID
	}
	return ""
}
