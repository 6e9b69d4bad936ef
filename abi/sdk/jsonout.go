package keel

import "strconv"

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
// renders its responses this way, and does not import encoding/json or fmt, is
// smaller (the example plugin: 2.6 MB instead of 3.8), and the host's load time grows
// with module size (RATIONALE.md, "Small guests"). A key that is not a string, a missing value or a value of another type is
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
			return Error(500, "encode_failed", "JSONFields: argument "+strconv.Itoa(i)+" is not a string key")
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
//
// The validator passes the input and the position as plain arguments rather than
// through a struct: in a wasm guest they then stay in locals, and profiling the example
// plugin's echo under load showed the struct-based first version as 44 % of its time.
func ValidJSON(b []byte) bool {
	i, ok := validValue(b, skipSpace(b, 0), 0)
	return ok && skipSpace(b, i) == len(b)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// validValue checks the value starting at b[i] and returns the index after it.
func validValue(b []byte, i, depth int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch c := b[i]; {
	case c == '{':
		return validContainer(b, i, depth+1, '}')
	case c == '[':
		return validContainer(b, i, depth+1, ']')
	case c == '"':
		return validString(b, i)
	case c == '-' || c >= '0' && c <= '9':
		return validNumber(b, i)
	case c == 't':
		return validLiteral(b, i, "true")
	case c == 'f':
		return validLiteral(b, i, "false")
	case c == 'n':
		return validLiteral(b, i, "null")
	}
	return i, false
}

func validLiteral(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}

// validContainer checks an object (closing '}': string keys, ':' and values) or an
// array (closing ']': values) from its opening bracket at b[i].
func validContainer(b []byte, i, depth int, closing byte) (int, bool) {
	if depth > maxJSONDepth {
		return i, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == closing {
		return i + 1, true
	}
	var ok bool
	for {
		if closing == '}' {
			if i >= len(b) || b[i] != '"' {
				return i, false
			}
			if i, ok = validString(b, i); !ok {
				return i, false
			}
			i = skipSpace(b, i)
			if i >= len(b) || b[i] != ':' {
				return i, false
			}
			i = skipSpace(b, i+1)
		}
		if i, ok = validValue(b, i, depth); !ok {
			return i, false
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return i, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case closing:
			return i + 1, true
		default:
			return i, false
		}
	}
}

// validString checks the string whose opening quote is at b[i].
func validString(b []byte, i int) (int, bool) {
	for i++; i < len(b); i++ {
		c := b[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		switch {
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return i, false
		}
		// A backslash escape.
		i++
		if i >= len(b) {
			return i, false
		}
		switch b[i] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		case 'u':
			if len(b)-i < 5 || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) {
				return i, false
			}
			i += 4
		default:
			return i, false
		}
	}
	return i, false
}

// validNumber checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at b[i].
func validNumber(b []byte, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = skipDigits(b, i+1)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			return j, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return j, false
		}
		i = j
	}
	return i, true
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}
