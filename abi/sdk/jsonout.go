package keel

// RawJSON is an encoded JSON value, written as it is by JSONFields and
// Rows.AppendJSON (it must be valid JSON; see ValidJSON).
type RawJSON []byte

// JSONFields returns a JSON object response built from alternating keys and values,
// in the order given:
//
//	keel.JSONFields(200, "id", id, "name", name, "active", true)
//
// It is keel.JSON without reflection: the values may be nil, bool, int, int32, int64,
// uint32, uint64, float64, string, []byte (base64), time.Time (RFC 3339) or RawJSON,
// written as encoding/json writes them (NaN and infinities as strings). A plugin that
// renders its responses this way, and does not import encoding/json or fmt, is about
// half the size, which is what the host's load time depends on (RATIONALE.md, "Small
// guests"). A key that is not a string, a missing value or a value of another type is
// a programming error: the result is a 500 response that names it.
func JSONFields(status int, kv ...any) *Response {
	if len(kv)%2 != 0 {
		return Error(500, "encode_failed", "JSONFields: a key without a value")
	}
	b := make([]byte, 0, 64)
	b = append(b, '{')
	for i := 0; i < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			return Error(500, "encode_failed", "JSONFields: argument "+itoa(i)+" is not a string key")
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		if b, ok = appendJSONScalar(b, kv[i+1]); !ok {
			return Error(500, "encode_failed", "JSONFields: the value of "+k+" has a type JSONFields does not encode (or is invalid RawJSON); use keel.JSON")
		}
	}
	b = append(b, '}')
	return &Response{Status: status, Headers: jsonHeaders, Body: b}
}

// maxJSONDepth is the nesting ValidJSON accepts, encoding/json's limit.
const maxJSONDepth = 10000

// ValidJSON reports whether b is one valid JSON document, with encoding/json.Valid's
// rules (RFC 8259; like it, bytes of invalid UTF-8 inside strings are accepted, and
// nesting deeper than 10 000 is refused). It needs neither reflection nor the
// encoding/json package.
func ValidJSON(b []byte) bool {
	v := jsonValidator{b: b}
	v.space()
	if !v.value(0) {
		return false
	}
	v.space()
	return v.i == len(v.b)
}

type jsonValidator struct {
	b []byte
	i int
}

func (v *jsonValidator) space() {
	for v.i < len(v.b) {
		switch v.b[v.i] {
		case ' ', '\t', '\n', '\r':
			v.i++
		default:
			return
		}
	}
}

func (v *jsonValidator) value(depth int) bool {
	if v.i >= len(v.b) {
		return false
	}
	switch c := v.b[v.i]; {
	case c == '{':
		return v.object(depth + 1)
	case c == '[':
		return v.array(depth + 1)
	case c == '"':
		return v.str()
	case c == '-' || c >= '0' && c <= '9':
		return v.number()
	case c == 't':
		return v.literal("true")
	case c == 'f':
		return v.literal("false")
	case c == 'n':
		return v.literal("null")
	}
	return false
}

func (v *jsonValidator) literal(lit string) bool {
	if len(v.b)-v.i < len(lit) || string(v.b[v.i:v.i+len(lit)]) != lit {
		return false
	}
	v.i += len(lit)
	return true
}

func (v *jsonValidator) object(depth int) bool {
	return v.container(depth, '}', func() bool {
		if v.i >= len(v.b) || v.b[v.i] != '"' || !v.str() {
			return false
		}
		v.space()
		if v.i >= len(v.b) || v.b[v.i] != ':' {
			return false
		}
		v.i++
		v.space()
		return v.value(depth)
	})
}

func (v *jsonValidator) array(depth int) bool {
	return v.container(depth, ']', func() bool { return v.value(depth) })
}

// container consumes an object or array from its opening bracket: elements read by
// elem, separated by commas, up to the closing byte.
func (v *jsonValidator) container(depth int, closing byte, elem func() bool) bool {
	if depth > maxJSONDepth {
		return false
	}
	v.i++ // { or [
	v.space()
	if v.i < len(v.b) && v.b[v.i] == closing {
		v.i++
		return true
	}
	for {
		if !elem() {
			return false
		}
		v.space()
		if v.i >= len(v.b) {
			return false
		}
		switch v.b[v.i] {
		case ',':
			v.i++
			v.space()
		case closing:
			v.i++
			return true
		default:
			return false
		}
	}
}

// str consumes a string starting at its opening quote.
func (v *jsonValidator) str() bool {
	v.i++ // "
	for v.i < len(v.b) {
		c := v.b[v.i]
		switch {
		case c == '"':
			v.i++
			return true
		case c < 0x20:
			return false
		case c == '\\':
			v.i++
			if v.i >= len(v.b) {
				return false
			}
			switch v.b[v.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				v.i++
			case 'u':
				if len(v.b)-v.i < 5 {
					return false
				}
				for _, h := range v.b[v.i+1 : v.i+5] {
					if !isHex(h) {
						return false
					}
				}
				v.i += 5
			default:
				return false
			}
		default:
			v.i++
		}
	}
	return false
}

// number consumes -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (v *jsonValidator) number() bool {
	start := v.i
	if v.b[v.i] == '-' {
		v.i++
	}
	digits := func() int {
		n := 0
		for v.i < len(v.b) && v.b[v.i] >= '0' && v.b[v.i] <= '9' {
			v.i++
			n++
		}
		return n
	}
	if v.i < len(v.b) && v.b[v.i] == '0' {
		v.i++
	} else if digits() == 0 {
		return false
	}
	if v.i < len(v.b) && v.b[v.i] == '.' {
		v.i++
		if digits() == 0 {
			return false
		}
	}
	if v.i < len(v.b) && (v.b[v.i] == 'e' || v.b[v.i] == 'E') {
		v.i++
		if v.i < len(v.b) && (v.b[v.i] == '+' || v.b[v.i] == '-') {
			v.i++
		}
		if digits() == 0 {
			return false
		}
	}
	return v.i > start
}
