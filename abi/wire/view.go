package wire

// HTTPRequestView is an encoded HTTPRequest checked once and then read where it lies:
// the guest SDK's form of a request. Decoding every field up front runs a decoder's
// whole code on each call, and in a wasm guest under load that code is cold: it was
// about a third of a GET's guest time with cold caches (bench/RESULTS.md, "A fast
// machine, and the guest's cost in place"). A view runs one small walk to check the
// message, and each field a handler reads is found when it reads it.
//
// Everything a view returns aliases the message; the caller must not let it outlive
// the message's bytes.
type HTTPRequestView struct {
	b []byte
	// one holds the last value of each field that appears once in a well-formed
	// request, by tag, as DecodeHTTPRequest keeps the last of repeated ones.
	one [reqPrefetchResult + 1][]byte
}

// ViewHTTPRequest checks b and indexes it into v. It accepts exactly the messages
// DecodeHTTPRequest accepts (FuzzDecode and TestViewHTTPRequest hold the two together).
func ViewHTTPRequest(b []byte, v *HTTPRequestView) error {
	*v = HTTPRequestView{b: b}
	rd := NewReader(b)
	for tag, val, ok := rd.Next(); ok; tag, val, ok = rd.Next() {
		switch tag {
		case reqParam, reqHeader: // repeated: found by walking again (pair)
			if _, _, err := Pair(val); err != nil {
				rd.Fail(err)
			}
			continue
		case reqCtx:
			rd.Fail(checkCallContext(val))
		}
		if int(tag) < len(v.one) {
			v.one[tag] = val
		}
	}
	if err := rd.Err(); err != nil {
		*v = HTTPRequestView{}
		return wrap("http request", err)
	}
	return nil
}

// checkCallContext fails where DecodeCallContext would, without decoding anything.
func checkCallContext(b []byte) error {
	rd := NewReader(b)
	for tag, val, ok := rd.Next(); ok; tag, val, ok = rd.Next() {
		if tag == ctxDeadline {
			_, err := Int(val)
			rd.Fail(err)
		}
	}
	return wrap("call context", rd.Err())
}

// Method, Path, Route, Query, Body, Ctx (the encoded CallContext), Prefetch and
// PrefetchResult return their fields, empty when absent.
func (v *HTTPRequestView) Method() []byte         { return v.one[reqMethod] }
func (v *HTTPRequestView) Path() []byte           { return v.one[reqPath] }
func (v *HTTPRequestView) Route() []byte          { return v.one[reqRoute] }
func (v *HTTPRequestView) Query() []byte          { return v.one[reqQuery] }
func (v *HTTPRequestView) Body() []byte           { return v.one[reqBody] }
func (v *HTTPRequestView) Ctx() []byte            { return v.one[reqCtx] }
func (v *HTTPRequestView) Prefetch() []byte       { return v.one[reqPrefetch] }
func (v *HTTPRequestView) PrefetchResult() []byte { return v.one[reqPrefetchResult] }

// Param returns the value of the first path parameter named name.
func (v *HTTPRequestView) Param(name string) ([]byte, bool) {
	return v.pair(reqParam, name, false)
}

// Header returns the value of the first header named name, ignoring ASCII case.
func (v *HTTPRequestView) Header(name string) ([]byte, bool) {
	return v.pair(reqHeader, name, true)
}

// pair walks the message for the first pair field with tag whose key is name. The
// view was checked, so every field and pair is well-formed.
func (v *HTTPRequestView) pair(tag byte, name string, fold bool) ([]byte, bool) {
	rd := Reader{b: v.b}
	for t, val, ok := rd.Next(); ok; t, val, ok = rd.Next() {
		if t != tag {
			continue
		}
		k, value, _ := Pair(val)
		if fold && equalFold(k, name) || !fold && string(k) == name {
			return value, true
		}
	}
	return nil, false
}

// equalFold reports whether b and s are equal ignoring ASCII case.
func equalFold(b []byte, s string) bool {
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

// HasPermission reports whether an encoded CallContext (a view's Ctx) lists p, without
// decoding it.
func HasPermission(ctx []byte, p string) bool {
	rd := Reader{b: ctx}
	for tag, val, ok := rd.Next(); ok; tag, val, ok = rd.Next() {
		if tag == ctxPermission && string(val) == p {
			return true
		}
	}
	return false
}
