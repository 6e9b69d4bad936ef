package keel

import (
	"bytes"
	"encoding/json"
	"strings"

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

	raw   wire.HTTPRequest
	query Values
}

// Param returns the value of a path parameter declared in the route (":id" → "id").
func (r *Request) Param(name string) string {
	for _, p := range r.raw.Params {
		if p.Name == name {
			return p.Value
		}
	}
	return ""
}

// Header returns the first value of a request header; names are case-insensitive.
func (r *Request) Header(name string) string {
	value, found := "", false
	wire.HeaderFields(rawHeaders, func(k, v []byte) bool {
		if equalFoldASCII(k, name) {
			value, found = string(v), true
			return false
		}
		return true
	})
	if found {
		return value
	}
	for _, h := range r.raw.Headers { // headers the decoder did not leave in rawHeaders
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// equalFoldASCII compares a header name with s, ignoring ASCII case, without
// converting b to a string.
func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Query returns the parsed query string (see ParseQuery; pairs that do not parse are
// left out).
func (r *Request) Query() Values {
	if r.query == nil {
		r.query, _ = ParseQuery(r.raw.Query)
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
func (r *Request) Call() Call { return Call{&r.raw.Ctx} }

// Call describes who invoked the plugin and on whose behalf.
type Call struct{ c *wire.CallContext }

// RequestID is the id the gateway assigned (or accepted from X-Request-ID).
func (c Call) RequestID() string { return c.c.RequestID }

// Tenant is the tenant the call acts for; empty for unauthenticated routes.
func (c Call) Tenant() string { return c.c.Tenant }

// Subject is the authenticated user or service; empty for unauthenticated routes.
func (c Call) Subject() string { return c.c.Subject }

// Plugin and Version name the plugin version serving the call.
func (c Call) Plugin() string { return c.c.Plugin }

// Version is the version of the plugin serving the call.
func (c Call) Version() string { return c.c.Version }

// Session is the authenticated session id (the access token's sid); empty on public routes.
func (c Call) Session() string { return c.c.Session }

// Permissions lists the caller's permissions. The slice is the caller's to keep and
// change: the SDK's own, reused between calls, is not handed out.
func (c Call) Permissions() []string { return append([]string(nil), c.c.Permissions...) }

// HasPermission reports whether the caller holds permission p.
func (c Call) HasPermission(p string) bool {
	for _, q := range c.c.Permissions {
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
	if current != nil && current.RequestID != "" {
		b = append(b, `,"request_id":`...)
		b = appendJSONString(b, current.RequestID)
	}
	b = append(b, "}}"...)
	return &Response{Status: status, Headers: jsonHeaders, Body: b}
}
