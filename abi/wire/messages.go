package wire

import "encoding/binary"

// KV is one name/value pair (a header, a path parameter, a label).
type KV struct {
	Name, Value string
}

// CallContext travels with every invocation: who is calling, for which tenant, and
// until when. The gateway fills it; plugins read it through the SDK.
type CallContext struct {
	RequestID   string
	Tenant      string
	Subject     string
	Permissions []string
	// Deadline is the call's deadline in Unix nanoseconds; 0 means none was set.
	Deadline int64
	Plugin   string
	Version  string
	// Session is the authenticated session (the token's sid), for logout and audit.
	Session string
}

// Field tags of CallContext.
const (
	ctxRequestID  = 1
	ctxTenant     = 2
	ctxSubject    = 3
	ctxPermission = 4
	ctxDeadline   = 5
	ctxPlugin     = 6
	ctxVersion    = 7
	ctxSession    = 8
)

// AppendCallContext appends c as a nested field with the given tag.
func AppendCallContext(dst []byte, tag byte, c *CallContext) []byte {
	dst, mark := BeginNested(dst, tag)
	dst = AppendCallContextFields(dst, c)
	return EndNested(dst, mark)
}

// AppendCallContextFields appends c's fields as a top-level message (the input of
// keel_init and keel_health).
func AppendCallContextFields(dst []byte, c *CallContext) []byte {
	dst = AppendString(dst, ctxRequestID, c.RequestID)
	if c.Tenant != "" {
		dst = AppendString(dst, ctxTenant, c.Tenant)
	}
	if c.Subject != "" {
		dst = AppendString(dst, ctxSubject, c.Subject)
	}
	for _, p := range c.Permissions {
		dst = AppendString(dst, ctxPermission, p)
	}
	if c.Deadline != 0 {
		dst = AppendInt(dst, ctxDeadline, c.Deadline)
	}
	dst = AppendString(dst, ctxPlugin, c.Plugin)
	dst = AppendString(dst, ctxVersion, c.Version)
	if c.Session != "" {
		dst = AppendString(dst, ctxSession, c.Session)
	}
	return dst
}

// DecodeCallContext decodes a CallContext from a nested field's value.
func DecodeCallContext(b []byte, c *CallContext) error {
	*c = CallContext{}
	r := NewReader(b)
	for tag, v, ok := r.Next(); ok; tag, v, ok = r.Next() {
		switch tag {
		case ctxRequestID:
			c.RequestID = string(v)
		case ctxTenant:
			c.Tenant = string(v)
		case ctxSubject:
			c.Subject = string(v)
		case ctxPermission:
			c.Permissions = append(c.Permissions, string(v))
		case ctxDeadline:
			d, err := Int(v)
			r.Fail(err)
			c.Deadline = d
		case ctxPlugin:
			c.Plugin = string(v)
		case ctxVersion:
			c.Version = string(v)
		case ctxSession:
			c.Session = string(v)
		}
	}
	return wrap("call context", r.Err())
}

// HTTPRequest is the input of the keel_http export.
type HTTPRequest struct {
	Method string
	// Path is the request path below /api/{plugin}, always starting with '/'.
	Path string
	// Route is the manifest route pattern that matched, e.g. "/customers/:id".
	Route string
	// Query is the raw query string without the leading '?'.
	Query   string
	Params  []KV
	Headers []KV
	Body    []byte
	Ctx     CallContext
	// Prefetch is the encoded keel:sql/v1 query request of the route's declared lookup
	// (manifest prefetch) that the host ran before the call, and PrefetchResult its
	// encoded result; both empty when the route declares none or the statement failed.
	Prefetch, PrefetchResult []byte
}

// Field tags of HTTPRequest.
const (
	reqMethod         = 1
	reqPath           = 2
	reqRoute          = 3
	reqQuery          = 4
	reqParam          = 5
	reqHeader         = 6
	reqBody           = 7
	reqCtx            = 8
	reqPrefetch       = 9
	reqPrefetchResult = 10
)

// AppendHTTPRequest appends the encoding of r to dst.
func AppendHTTPRequest(dst []byte, r *HTTPRequest) []byte {
	dst = AppendString(dst, reqMethod, r.Method)
	dst = AppendString(dst, reqPath, r.Path)
	dst = AppendString(dst, reqRoute, r.Route)
	if r.Query != "" {
		dst = AppendString(dst, reqQuery, r.Query)
	}
	for _, p := range r.Params {
		dst = AppendPair(dst, reqParam, p.Name, p.Value)
	}
	for _, h := range r.Headers {
		dst = AppendPair(dst, reqHeader, h.Name, h.Value)
	}
	dst = AppendField(dst, reqBody, r.Body)
	if len(r.Prefetch) > 0 {
		dst = AppendField(dst, reqPrefetch, r.Prefetch)
		dst = AppendField(dst, reqPrefetchResult, r.PrefetchResult)
	}
	return AppendCallContext(dst, reqCtx, &r.Ctx)
}

// DecodeHTTPRequest decodes b into r. Strings are copied; Body is copied too, because
// the guest's input buffer is reused by the next call.
func DecodeHTTPRequest(b []byte, r *HTTPRequest) error {
	*r = HTTPRequest{}
	rd := NewReader(b)
	for tag, v, ok := rd.Next(); ok; tag, v, ok = rd.Next() {
		switch tag {
		case reqMethod:
			r.Method = string(v)
		case reqPath:
			r.Path = string(v)
		case reqRoute:
			r.Route = string(v)
		case reqQuery:
			r.Query = string(v)
		case reqParam, reqHeader:
			k, val, err := Pair(v)
			if err != nil {
				rd.Fail(err)
				break
			}
			kv := KV{string(k), string(val)}
			if tag == reqParam {
				r.Params = append(r.Params, kv)
			} else {
				r.Headers = append(r.Headers, kv)
			}
		case reqBody:
			r.Body = append([]byte(nil), v...)
		case reqPrefetch:
			r.Prefetch = append([]byte(nil), v...)
		case reqPrefetchResult:
			r.PrefetchResult = append([]byte(nil), v...)
		case reqCtx:
			rd.Fail(DecodeCallContext(v, &r.Ctx))
		}
	}
	return wrap("http request", rd.Err())
}

// Interner turns decoded bytes into strings, reusing earlier strings where it can.
// The guest SDK passes one that remembers the last tenant, subject, plugin and version
// and the previous call's permissions, so most calls decode without allocating strings.
type Interner func(field byte, b []byte) string

// fieldRun measures the well-formed fields with the given tag at the start of b: how
// many, and how many bytes they take.
func fieldRun(b []byte, tag byte) (n, end int) {
	for len(b)-end >= HeaderSize && b[end] == tag {
		l := binary.LittleEndian.Uint32(b[end+1 : end+HeaderSize])
		if uint64(l) > uint64(len(b)-end-HeaderSize) {
			break
		}
		end += HeaderSize + int(l)
		n++
	}
	return n, end
}

// Interner field ids for CallContext fields.
const (
	InternTenant  = 101
	InternSubject = 102
	InternPlugin  = 103
	InternVersion = 104
	InternPerm    = 105
	// InternPermRun is offered the encoded run of permission fields of a call
	// context before they are decoded one by one. An interner that answers
	// PermRunReuse declares them identical to those of the previous call decoded into
	// the same CallContext, whose Permissions slice still holds them; the decoder then
	// reuses that slice's strings and skips the run.
	InternPermRun = 107
	// InternSession is the session id: the same on every call made with one token.
	InternSession = 109
)

// PermRunReuse is an Interner's answer to InternPermRun; see there.
const PermRunReuse = "\x00reuse"

// DecodeCallContextInto is DecodeCallContext for the guest's hot path: strings go
// through intern (the Intern* ids name the fields), and c's Permissions slice is reused.
func DecodeCallContextInto(b []byte, c *CallContext, intern Interner) error {
	*c = CallContext{Permissions: c.Permissions[:0]}
	r := NewReader(b)
	permRun := false
	for {
		rest := r.b
		tag, v, ok := r.Next()
		if !ok {
			break
		}
		switch tag {
		case ctxRequestID:
			c.RequestID = string(v)
		case ctxTenant:
			c.Tenant = intern(InternTenant, v)
		case ctxSubject:
			c.Subject = intern(InternSubject, v)
		case ctxPermission:
			if !permRun {
				// The first permission: offer the whole run of permission fields to
				// the interner, which may answer that it is the previous call's.
				permRun = true
				n, end := fieldRun(rest, ctxPermission)
				if n <= cap(c.Permissions) && intern(InternPermRun, rest[:end]) == PermRunReuse {
					c.Permissions = c.Permissions[:n]
					r.b = rest[end:]
					continue
				}
			}
			c.Permissions = append(c.Permissions, intern(InternPerm, v))
		case ctxDeadline:
			d, err := Int(v)
			r.Fail(err)
			c.Deadline = d
		case ctxPlugin:
			c.Plugin = intern(InternPlugin, v)
		case ctxVersion:
			c.Version = intern(InternVersion, v)
		case ctxSession:
			c.Session = intern(InternSession, v)
		}
	}
	return wrap("call context", r.Err())
}

// HTTPResponse is the output of the keel_http export.
type HTTPResponse struct {
	Status  int
	Headers []KV
	Body    []byte
	// Flags carries FlagPanicked when the guest recovered from a panic to produce this
	// response; the host then retires the instance because its state may be corrupt.
	Flags uint64
}

// Response and result flags.
const (
	// FlagPanicked marks output produced after the guest recovered from a panic.
	FlagPanicked = 1 << 0
	// FlagCommit (HTTPResponse only) asks the host to commit the invocation's unit of
	// work although the status is 400 or more.
	FlagCommit = 1 << 1
)

// Field tags of HTTPResponse.
const (
	respStatus = 1
	respHeader = 2
	respBody   = 3
	respFlags  = 4
)

// AppendHTTPResponse appends the encoding of r to dst.
func AppendHTTPResponse(dst []byte, r *HTTPResponse) []byte {
	dst = AppendUint(dst, respStatus, uint64(r.Status))
	for _, h := range r.Headers {
		dst = AppendPair(dst, respHeader, h.Name, h.Value)
	}
	if len(r.Body) > 0 {
		dst = AppendField(dst, respBody, r.Body)
	}
	if r.Flags != 0 {
		dst = AppendUint(dst, respFlags, r.Flags)
	}
	return dst
}

// DecodeHTTPResponse decodes b into r. Body aliases b; callers that keep it beyond the
// life of b must copy it. A response must carry a status between 100 and 999.
func DecodeHTTPResponse(b []byte, r *HTTPResponse) error {
	*r = HTTPResponse{}
	rd := NewReader(b)
	for tag, v, ok := rd.Next(); ok; tag, v, ok = rd.Next() {
		switch tag {
		case respStatus:
			s, err := Uint(v)
			if err == nil && (s < 100 || s > 999) {
				err = malformed("status " + itoa(s) + " out of range")
			}
			rd.Fail(err)
			r.Status = int(s)
		case respHeader:
			k, val, err := Pair(v)
			if err != nil {
				rd.Fail(err)
				break
			}
			r.Headers = append(r.Headers, KV{string(k), string(val)})
		case respBody:
			r.Body = v
		case respFlags:
			f, err := Uint(v)
			rd.Fail(err)
			r.Flags = f
		}
	}
	if rd.Err() == nil && r.Status == 0 {
		rd.Fail(malformed("response has no status"))
	}
	return wrap("http response", rd.Err())
}

// Event is the input of the keel_event export and the envelope of every published event.
type Event struct {
	ID      string
	Type    string
	Topic   string
	Tenant  string
	Source  string
	Time    int64 // Unix nanoseconds
	Key     []byte
	Payload []byte
	Attempt int
	Ctx     CallContext
}

// Field tags of Event.
const (
	evID      = 1
	evType    = 2
	evTopic   = 3
	evTenant  = 4
	evSource  = 5
	evTime    = 6
	evKey     = 7
	evPayload = 8
	evAttempt = 9
	evCtx     = 10
)

// AppendEvent appends the encoding of e to dst.
func AppendEvent(dst []byte, e *Event) []byte {
	dst = AppendString(dst, evID, e.ID)
	dst = AppendString(dst, evType, e.Type)
	dst = AppendString(dst, evTopic, e.Topic)
	dst = AppendString(dst, evTenant, e.Tenant)
	dst = AppendString(dst, evSource, e.Source)
	dst = AppendInt(dst, evTime, e.Time)
	if len(e.Key) > 0 {
		dst = AppendField(dst, evKey, e.Key)
	}
	dst = AppendField(dst, evPayload, e.Payload)
	if e.Attempt != 0 {
		dst = AppendUint(dst, evAttempt, uint64(e.Attempt))
	}
	return AppendCallContext(dst, evCtx, &e.Ctx)
}

// DecodeEvent decodes b into e, copying every byte it keeps.
func DecodeEvent(b []byte, e *Event) error {
	*e = Event{}
	r := NewReader(b)
	for tag, v, ok := r.Next(); ok; tag, v, ok = r.Next() {
		switch tag {
		case evID:
			e.ID = string(v)
		case evType:
			e.Type = string(v)
		case evTopic:
			e.Topic = string(v)
		case evTenant:
			e.Tenant = string(v)
		case evSource:
			e.Source = string(v)
		case evTime:
			t, err := Int(v)
			r.Fail(err)
			e.Time = t
		case evKey:
			e.Key = append([]byte(nil), v...)
		case evPayload:
			e.Payload = append([]byte(nil), v...)
		case evAttempt:
			a, err := Uint(v)
			if err == nil && a > 1<<31 {
				err = malformed("attempt " + itoa(a) + " out of range")
			}
			r.Fail(err)
			e.Attempt = int(a)
		case evCtx:
			r.Fail(DecodeCallContext(v, &e.Ctx))
		}
	}
	return wrap("event", r.Err())
}

// Result is the output of the keel_event, keel_health and keel_init exports, and the
// error payload of a failed host import.
type Result struct {
	Code    uint32 // 0 is success; otherwise one of the stable error codes
	Message string
	Detail  string // optional machine-readable detail, e.g. a SQLSTATE
	Data    []byte
	Flags   uint64
}

// Field tags of Result.
const (
	resCode    = 1
	resMessage = 2
	resDetail  = 3
	resData    = 4
	resFlags   = 5
)

// AppendResult appends the encoding of r to dst.
func AppendResult(dst []byte, r *Result) []byte {
	dst = AppendUint(dst, resCode, uint64(r.Code))
	if r.Message != "" {
		dst = AppendString(dst, resMessage, r.Message)
	}
	if r.Detail != "" {
		dst = AppendString(dst, resDetail, r.Detail)
	}
	if len(r.Data) > 0 {
		dst = AppendField(dst, resData, r.Data)
	}
	if r.Flags != 0 {
		dst = AppendUint(dst, resFlags, r.Flags)
	}
	return dst
}

// DecodeResult decodes b into r. Data aliases b.
func DecodeResult(b []byte, r *Result) error {
	*r = Result{}
	rd := NewReader(b)
	for tag, v, ok := rd.Next(); ok; tag, v, ok = rd.Next() {
		switch tag {
		case resCode:
			c, err := Uint(v)
			if err == nil && c > 0xffff {
				err = malformed("code " + itoa(c) + " out of range")
			}
			rd.Fail(err)
			r.Code = uint32(c)
		case resMessage:
			r.Message = string(v)
		case resDetail:
			r.Detail = string(v)
		case resData:
			r.Data = v
		case resFlags:
			f, err := Uint(v)
			rd.Fail(err)
			r.Flags = f
		}
	}
	return wrap("result", rd.Err())
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return &wrapError{msg: "decode " + what + ": " + err.Error(), cause: err}
}
